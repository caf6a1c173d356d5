package ui_test

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/ui"
	"github.com/outpost-registry/outpost/internal/ui/uitest"
)

const adminPassword = "Zq7-vortex-Plum-41"

// dash is a real server with the dashboard, on plain HTTP or TLS.
type dash struct {
	t   testing.TB
	ts  *httptest.Server
	reg *ocitest.Client
}

func start(t testing.TB, tlsOn bool, edit func(*config.Config)) *dash {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.TLS.Mode = config.TLSOff
	if edit != nil {
		edit(&cfg)
	}
	return serve(t, cfg, tlsOn)
}

// seeded runs a server (plain HTTP) on a data directory seeded with a
// fleet of sites and tags (uitest.SeedFleet).
func seeded(t testing.TB, sites, tags int) *dash {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.TLS.Mode = config.TLSOff
	uitest.SeedFleet(t, cfg.Data, sites, tags)
	return serve(t, cfg, false)
}

// serve runs a server on cfg's data directory, as it is.
func serve(t testing.TB, cfg config.Config, tlsOn bool) *dash {
	t.Helper()
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler), "test", adminPassword)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	var ts *httptest.Server
	if tlsOn {
		ts = httptest.NewTLSServer(srv.Handler())
	} else {
		ts = httptest.NewServer(srv.Handler())
	}
	t.Cleanup(ts.Close)
	reg := ocitest.New(t, ts.URL, "admin", adminPassword, "")
	reg.HTTP = ts.Client()
	return &dash{t: t, ts: ts, reg: reg}
}

// browser is a client with a cookie jar that does not follow redirects.
func (d *dash) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *d.ts.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (d *dash) get(c *http.Client, path string) (*http.Response, string) {
	d.t.Helper()
	resp, err := c.Get(d.ts.URL + path)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (d *dash) post(c *http.Client, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	d.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (d *dash) signIn(c *http.Client, user, pw string) *http.Response {
	d.t.Helper()
	resp, _ := d.post(c, "/ui/login", url.Values{"username": {user}, "password": {pw}, "next": {"/ui/fleet"}}, nil)
	return resp
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page")
	}
	return m[1]
}

func TestSignInSessionCookie(t *testing.T) {
	t.Parallel()
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := start(t, tlsOn, nil)
			c := d.browser()
			if resp, _ := d.get(c, "/ui/fleet"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
				t.Fatalf("signed out GET /ui/fleet: got %d to %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp := d.signIn(c, "admin", "wrong-password-x"); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
				t.Fatalf("wrong password: got %d with %d cookies, want 401 and none", resp.StatusCode, len(resp.Cookies()))
			}
			resp := d.signIn(c, "admin", adminPassword)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/fleet" {
				t.Fatalf("sign-in: got %d to %q, want 303 to /ui/fleet", resp.StatusCode, resp.Header.Get("Location"))
			}
			cookies := resp.Cookies()
			if len(cookies) != 1 {
				t.Fatalf("sign-in set %d cookies, want 1", len(cookies))
			}
			ck := cookies[0]
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != tlsOn || ck.MaxAge <= 0 || ck.Path != "/ui/" {
				t.Errorf("session cookie: got HttpOnly=%v SameSite=%v Secure=%v MaxAge=%d Path=%q, want HttpOnly, Strict, Secure=%v, expiring, /ui/",
					ck.HttpOnly, ck.SameSite, ck.Secure, ck.MaxAge, ck.Path, tlsOn)
			}
			resp, page := d.get(c, "/ui/fleet")
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<h1>Fleet</h1>") {
				t.Fatalf("GET /ui/fleet signed in: got %d, want 200 with the fleet", resp.StatusCode)
			}
			if resp, _ := d.post(c, "/ui/logout", url.Values{"csrf": {csrfOf(t, page)}}, nil); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-out: got %d, want 303", resp.StatusCode)
			}
			if resp, _ := d.get(c, "/ui/fleet"); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("GET /ui/fleet after sign-out: got %d, want 303 to sign in", resp.StatusCode)
			}
		})
	}
}

func TestCSRFAndCrossOrigin(t *testing.T) {
	t.Parallel()
	d := start(t, false, nil)
	c := d.browser()
	d.signIn(c, "admin", adminPassword)
	_, page := d.get(c, "/ui/access")
	token := csrfOf(t, page)
	form := url.Values{"name": {"team-reader"}, "repositories": {"team/*"}, "action": {"content/read"}}
	tests := []struct {
		name   string
		csrf   string
		hdr    http.Header
		status int
	}{
		{name: "no token", status: http.StatusForbidden},
		{name: "wrong token", csrf: "x" + token, status: http.StatusForbidden},
		{name: "cross-site with the token", csrf: token, hdr: http.Header{"Sec-Fetch-Site": {"cross-site"}}, status: http.StatusForbidden},
		{name: "other origin with the token", csrf: token, hdr: http.Header{"Origin": {"https://evil.example"}}, status: http.StatusForbidden},
		{name: "same origin with the token", csrf: token, hdr: http.Header{"Sec-Fetch-Site": {"same-origin"}}, status: http.StatusOK},
	}
	for _, tt := range tests {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tt.csrf != "" {
			f.Set("csrf", tt.csrf)
		}
		resp, body := d.post(c, "/ui/access/scope-maps", f, tt.hdr)
		if tt.status == http.StatusOK {
			// Created: the answer is a redirect to the access page.
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("%s: got %d, want 303 (created)", tt.name, resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != tt.status {
			t.Errorf("%s: got %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
		_ = body
	}
	// Only the accepted form created the scope map: the others changed nothing.
	_, page = d.get(c, "/ui/access")
	if n := strings.Count(page, `<th scope="row">team-reader</th>`); n != 1 {
		t.Errorf("scope map rows named team-reader: got %d, want 1", n)
	}
}

func TestScopeMapFiltering(t *testing.T) {
	t.Parallel()
	d := start(t, false, nil)
	img := d.reg.Image(t, "apps/web", "1.0", v1.Platform{OS: "linux", Architecture: "amd64"}, []byte("layer-of-web"))
	d.reg.Referrer(t, "apps/web", "application/vnd.example.sbom", img, []byte("sbom"))
	d.reg.Image(t, "secret/db", "1.0", v1.Platform{OS: "linux", Architecture: "arm64"}, []byte("layer-of-db"))
	var tok auth.TokenView
	d.reg.JSON(t, http.MethodPost, "/api/v1/tokens", auth.TokenRequest{Name: "web-puller",
		Repositories: []auth.RepositoryGrant{{Repository: "apps/web", Actions: []auth.Action{"content/read", "metadata/read"}}}}, &tok)
	pw := tok.Credentials.Passwords[0].Value

	c := d.browser()
	if resp := d.signIn(c, "web-puller", pw); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/repositories" {
		t.Fatalf("token sign-in: got %d to %q, want 303 to /ui/repositories", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := d.get(c, "/ui/repositories")
	if !strings.Contains(page, ">apps/web</a>") || strings.Contains(page, "secret/db") {
		t.Errorf("a pull-only token's repository list: want apps/web and not secret/db, got:\n%s", page)
	}
	for _, p := range []string{"/ui/access", "/ui/fleet", "/ui/releases", "/ui/repositories/secret/db", "/ui/repositories/secret/db/_manifests/1.0"} {
		if resp, _ := d.get(c, p); resp.StatusCode != http.StatusForbidden {
			t.Errorf("token GET %s: got %d, want 403", p, resp.StatusCode)
		}
	}
	resp, page := d.get(c, "/ui/repositories/apps/web/_manifests/1.0")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "application/vnd.example.sbom") || !strings.Contains(page, img.Digest.String()) {
		t.Errorf("image page for the token: got %d, want 200 with its digest and its SBOM referrer", resp.StatusCode)
	}
	if !strings.Contains(page, "docker pull "+strings.TrimPrefix(d.ts.URL, "http://")+"/apps/web:1.0") {
		t.Errorf("image page: no pull command for the login server")
	}
	// Disabling the token ends its session at once.
	admin := d.browser()
	d.signIn(admin, "admin", adminPassword)
	_, apage := d.get(admin, "/ui/access")
	if resp, _ := d.post(admin, "/ui/access/tokens/web-puller/status", url.Values{"csrf": {csrfOf(t, apage)}, "status": {"disabled"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable token: got %d, want 303", resp.StatusCode)
	}
	if resp, _ := d.get(c, "/ui/repositories"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("disabled token's session: got %d, want 303 to sign in again", resp.StatusCode)
	}
}

// inlineRe finds what a strict CSP would block: inline scripts, style
// elements and attributes, event handler attributes.
var inlineRe = regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]|<script>|<style|\sstyle=|\son[a-z]+=`)

func TestCSPAndAssets(t *testing.T) {
	t.Parallel()
	d := start(t, false, nil)
	d.reg.Image(t, "apps/web", "1.0", v1.Platform{OS: "linux", Architecture: "amd64"}, []byte("layer"))
	c := d.browser()
	_, login := d.get(c, "/ui/login")
	d.signIn(c, "admin", adminPassword)
	total := 0
	for _, p := range []string{"/ui/fleet", "/ui/repositories", "/ui/repositories/apps/web", "/ui/repositories/apps/web/_manifests/1.0", "/ui/releases", "/ui/access"} {
		resp, page := d.get(c, p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: got %d, want 200", p, resp.StatusCode)
		}
		if resp.Header.Get("Content-Security-Policy") != ui.CSP {
			t.Errorf("GET %s: CSP %q, want %q", p, resp.Header.Get("Content-Security-Policy"), ui.CSP)
		}
		if m := inlineRe.FindString(page); m != "" {
			t.Errorf("GET %s: inline code %q, which the CSP blocks", p, m)
		}
	}
	if m := inlineRe.FindString(login); m != "" {
		t.Errorf("sign-in page: inline code %q", m)
	}
	// The assets as a browser fetches them (gzip): within the page weight.
	for _, a := range []string{"/ui/static/htmx.min.js", "/ui/static/app.js", "/ui/static/app.css"} {
		req, _ := http.NewRequest(http.MethodGet, d.ts.URL+a, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wire, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("GET %s: got %d %q, want 200 gzip", a, resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(strings.NewReader(string(wire)))
		if err != nil {
			t.Fatalf("GET %s: %v", a, err)
		}
		if _, err := io.ReadAll(zr); err != nil {
			t.Fatalf("GET %s: %v", a, err)
		}
		total += len(wire)
	}
	if total > 100<<10 {
		t.Errorf("assets weigh %d bytes on the wire, want under 100 KiB", total)
	}
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	d := start(t, false, func(c *config.Config) { off := false; c.UI.Enabled = &off })
	if resp, _ := d.get(d.browser(), "/ui/login"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("ui.enabled false: GET /ui/login got %d, want 404", resp.StatusCode)
	}
}

// TestFleetTree: the tree places children under their gateway, shows
// the first 50 rows unless asked for all, and filters by health.
func TestFleetTree(t *testing.T) {
	t.Parallel()
	d := seeded(t, 250, 0)
	c := d.browser()
	d.signIn(c, "admin", adminPassword)
	rows := func(page string) int { return strings.Count(page, " data-site=") }
	_, page := d.get(c, "/ui/fleet")
	if n := rows(page); n != 50 || !strings.Contains(page, "200 more rows of the tree") {
		t.Errorf("fleet of 250: %d rows shown, want 50 and a note of the 200 more", n)
	}
	// site-0011 is a child of the gateway site-0010: right after it, deeper.
	gw, child := strings.Index(page, `data-site="site-0010"`), strings.Index(page, `data-site="site-0011"`)
	if gw < 0 || child < gw || !strings.Contains(page[child:], `class="node d2"`) {
		t.Errorf("site-0011 is not shown under its gateway site-0010 at depth 2")
	}
	if _, all := d.get(c, "/ui/fleet?all=1"); rows(all) != 250 {
		t.Errorf("fleet?all=1: %d rows, want 250", rows(all))
	}
	_, off := d.get(c, "/ui/fleet/rows?filter=offline")
	// SeedFleet makes every 13th site Offline; their gateways come along, dimmed.
	if n := strings.Count(off, `data-health="offline"`); n != 19 {
		t.Errorf("offline filter: %d offline rows, want 19", n)
	}
	// Every tenth site (i%10 == 9) has its volume 90 % used.
	if _, disk := d.get(c, "/ui/fleet/rows?filter=disk&all=1"); strings.Count(disk, `class="" data-site=`) != 25 || !strings.Contains(disk, "450 GiB of 500 GiB") {
		t.Errorf("disk filter: %d matching rows, want the 25 sites at 90 %% with their use shown", strings.Count(disk, `class="" data-site=`))
	}
	if strings.Contains(off, `class="" data-site="site-0001"`) {
		t.Errorf("offline filter shows site-0001, which is online")
	}
}
