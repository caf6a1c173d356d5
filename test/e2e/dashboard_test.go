package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/ui"
)

// chromium finds Debian's headless Chromium (scripts/install-tools.sh
// installs chromium-headless-shell), or "" when there is none.
func chromium() string {
	for _, name := range []string{"chromium-headless-shell", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserLog collects what the page reports: console errors, uncaught
// exceptions, browser log errors (a CSP violation is one), and the status
// and headers of every document the browser loads.
type browserLog struct {
	mu     sync.Mutex
	errors []string
	docs   map[string]*network.Response
}

func (b *browserLog) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value))
			}
			b.errors = append(b.errors, "console.error: "+strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		b.errors = append(b.errors, "exception: "+e.ExceptionDetails.Text)
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError {
			b.errors = append(b.errors, "log: "+e.Entry.Text+" "+e.Entry.URL)
		}
	case *network.EventResponseReceived:
		if e.Type == network.ResourceTypeDocument {
			b.docs[e.Response.URL] = e.Response
		}
	}
}

// take returns and clears the errors seen so far.
func (b *browserLog) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errors
	b.errors = nil
	return out
}

func (b *browserLog) doc(url string) *network.Response {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.docs[url]
}

// TestDashboardInBrowser drives the dashboard of a real root in headless
// Chromium: two connected registries (one stopped, so Offline) and a
// staging job; sign in, the tree's states, a site, an image with its
// referrer, the release's progress bar reaching 100 %, sign out; a
// pull-only token sees only its repository and gets 403 on the access
// page; a forged cross-site POST is refused; no console errors; the CSP is
// sent. It saves screenshots of the pages into docs/dashboard/.
func TestDashboardInBrowser(t *testing.T) {
	requireE2E(t)
	chrome := chromium()
	if chrome == "" {
		t.Skip("no headless Chromium found (chromium-headless-shell or chromium): scripts/install-tools.sh installs it; the dashboard browser test cannot run without it")
	}
	t.Parallel()
	root := newProc(t).start()
	admin, err := adminClient(t, root)
	if err != nil {
		t.Fatal(err)
	}
	img := admin.Image(t, "apps/web", "1.4.2", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(1, 3<<20), ocitest.Random(2, 1<<20))
	admin.Referrer(t, "apps/web", "application/spdx+json", img, []byte(`{"spdxVersion":"SPDX-2.3"}`))
	admin.Image(t, "team/secret-tool", "2.0", v1.Platform{OS: "linux", Architecture: "arm64"}, ocitest.Random(3, 4096))

	north := newProc(t, "--connection-string", connectionString(t, root, protocol.CreateRequest{Name: "plant-north", Repositories: []string{"apps/web"}}, root.host),
		"--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	south := newProc(t, "--connection-string", connectionString(t, root, protocol.CreateRequest{Name: "plant-south", Repositories: []string{"apps/web"}}, root.host),
		"--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	south.start()
	state := func(name string) protocol.ConnectionState {
		var c protocol.ConnectedRegistry
		root.api(t, http.MethodGet, "/api/v1/connected-registries/"+name, nil, &c)
		return c.ConnectionState
	}
	eventually(t, 30*time.Second, "plant-south Online", func() bool { return state("plant-south") == protocol.StateOnline })
	south.stop()
	// The release: north starts only once the browser watches it, so the
	// bar has to move.
	root.api(t, http.MethodPost, "/api/v1/staging", protocol.StagingRequest{Name: "release-42", Targets: []string{"plant-north", "plant-south"}, Images: []string{"apps/web:1.4.2"}}, nil)
	var tok struct {
		Credentials struct {
			Passwords []struct{ Value string } `json:"passwords"`
		} `json:"credentials"`
	}
	root.api(t, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "web-puller",
		"repositories": []map[string]any{{"repository": "apps/web", "actions": []string{"content/read", "metadata/read"}}}}, &tok)
	pullerPassword := tok.Credentials.Passwords[0].Value

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bl := &browserLog{docs: map[string]*network.Response{}}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(bl.listen))
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	// One bound for the browser's part of the test, from a context that
	// has run once (a timeout on the first would stop the browser).
	ctx, cancelT := context.WithTimeout(ctx, 120*time.Second)
	defer cancelT()
	began := time.Now()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%5.1fs %s", time.Since(began).Seconds(), what)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	base := root.url + "/ui/"
	shots := screenshotDir(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noErrors := func(where string) {
		t.Helper()
		if errs := bl.take(); len(errs) > 0 {
			t.Errorf("%s: the browser reported errors:\n%s", where, strings.Join(errs, "\n"))
		}
	}

	signIn(t, run, base, "admin", adminPassword)
	if r := bl.doc(base + "fleet"); r == nil || header(r, "Content-Security-Policy") != ui.CSP {
		t.Fatalf("fleet page: CSP header %v, want %q", r, ui.CSP)
	}
	// Keyboard: the first Tab reaches the skip link.
	run("tab to the skip link", chromedp.KeyEvent("\t"))
	if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || focused != "skip" {
		t.Errorf("first Tab focuses %q (%v), want the skip link", focused, err)
	}

	// The release, watched while north starts: 0 % to 100 %.
	run("open the release", chromedp.Navigate(base+"releases/release-42"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-north"] span.pct[data-pct="0"]`)))
	site := north.start()
	run("progress bar to 100 %", chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-north"] span.pct[data-pct="100"]`)))
	bar, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`tr[data-site="plant-north"] progress.images`), "value"))
	if err != nil || bar.Value != "1" {
		t.Errorf("plant-north's images bar: value %q (%v), want 1 (of 1)", bar.Value, err)
	}
	shot("release")
	noErrors("release page")
	// A connected registry serves its own dashboard too.
	if resp, err := site.http.Get(site.url + "/ui/login"); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != ui.CSP {
		t.Errorf("GET /ui/login at the connected registry: %v %v, want 200 with the CSP", resp, err)
	} else {
		resp.Body.Close()
	}

	// The tree: north Online, south Offline (two missed heartbeats).
	run("fleet", chromedp.Navigate(base+"fleet"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-north"][data-health="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-south"][data-health="offline"]`)))
	if southState := text(`tr[data-site="plant-south"] .badge[class*="state-"]`); southState != "Offline" {
		t.Errorf("plant-south's connection: %q, want Offline", southState)
	}
	run("filter offline", chromedp.Click(chromedp.CSS(`input[name="filter"][value="offline"]`)), chromedp.WaitNotPresent(chromedp.CSS(`tr[data-site="plant-north"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-south"]`)), chromedp.Click(chromedp.CSS(`input[name="filter"][value=""]`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-site="plant-north"]`)))
	shot("fleet")
	noErrors("fleet page")

	run("open a site", chromedp.Click(chromedp.CSS(`tr[data-site="plant-north"] a`)), chromedp.WaitVisible(chromedp.CSS(`.cards`)))
	if h1 := text(`h1`); !strings.HasPrefix(h1, "plant-north") {
		t.Errorf("site page heading %q, want plant-north", h1)
	}
	shot("site")
	run("resync", chromedp.Click(chromedp.CSS(`form[action$="/resync"] button`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	noErrors("site page")

	run("open the image", chromedp.Navigate(base+"repositories"), chromedp.Click(chromedp.CSS(`a[href="/ui/repositories/apps/web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/repositories/apps/web/_manifests/1.4.2"]`)), chromedp.Click(chromedp.CSS(`a[href="/ui/repositories/apps/web/_manifests/1.4.2"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.json`)))
	if refs := text(`main`); !strings.Contains(refs, "application/spdx+json") || !strings.Contains(refs, img.Digest.String()) {
		t.Errorf("image page: want its digest and the SBOM referrer, got:\n%s", refs)
	}
	shot("image")
	noErrors("image page")

	run("sign out", chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`#username`)))
	run("fleet after sign-out", chromedp.Navigate(base+"fleet"), chromedp.WaitVisible(chromedp.CSS(`#username`)))

	// A pull-only token: its repository only; 403 on access.
	signIn(t, run, base, "web-puller", pullerPassword)
	run("token's repositories", chromedp.WaitVisible(chromedp.CSS(`ul.repos`)))
	if list := text(`ul.repos`); !strings.Contains(list, "apps/web") || strings.Contains(list, "team/secret-tool") {
		t.Errorf("pull-only token's repositories: %q, want apps/web and not team/secret-tool", list)
	}
	navLinks, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`header nav a`)))
	if err != nil || len(navLinks) != 1 {
		t.Errorf("pull-only token sees %d navigation links, want 1 (Repositories)", len(navLinks))
	}
	noErrors("token's repositories")
	run("token on access", chromedp.Navigate(base+"access"), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	if r, h1 := bl.doc(base+"access"), text(`h1`); r == nil || r.Status != http.StatusForbidden || h1 != "403 Forbidden" {
		t.Errorf("pull-only token on /ui/access: status %v, heading %q; want 403", r, h1)
	}
	bl.take() // the browser logs the 403 it was shown

	// A forged POST from another site, with the victim's session.
	run("token signs out", chromedp.Navigate(base+"repositories"), chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`#username`)))
	signIn(t, run, base, "admin", adminPassword)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%saccess/scope-maps">
<input name="name" value="forged-map"><input name="repositories" value="*"><input name="action" value="content/delete"></form>
<script>document.getElementById("f").submit()</script>`, base)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	run("forged POST", chromedp.Navigate(evilURL), chromedp.WaitVisible(chromedp.CSS(`h1`)))
	if r := bl.doc(base + "access/scope-maps"); r == nil || r.Status != http.StatusForbidden {
		t.Errorf("forged cross-site POST: response %v, want 403", r)
	}
	resp, _, err := admin.Do(http.MethodGet, "/api/v1/scope-maps/forged-map", nil, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("after the forged POST, GET the scope map: %v %v, want 404 (not created)", resp, err)
	}
	bl.take()
}

// header is a response header as the browser saw it (HTTP/2 names are
// lowercase).
func header(r *network.Response, name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// signIn fills the sign-in form.
func signIn(t *testing.T, run func(string, ...chromedp.Action[chromedp.Void]), base, user, pw string) {
	t.Helper()
	run("sign in as "+user, chromedp.Navigate(base+"login"), chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), user), chromedp.SendKeys(chromedp.CSS(`#password`), pw), chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`header nav`)))
}

// screenshotDir is docs/dashboard in the source tree, where the pages'
// pictures for docs/dashboard.md live.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "docs", "dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
