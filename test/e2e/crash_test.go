package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// graphOf returns the blobs (config and layers) of repo:tag at c.
func graphOf(t *testing.T, c *ocitest.Client, repo, tag string) []v1.Descriptor {
	t.Helper()
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/manifests/"+tag, http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest %s:%s: %v", repo, tag, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...)
}

// until polls cond every 20 ms for up to timeout.
func until(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// TestKillEdgeMidSync: the edge process is SIGKILLed while blobs are
// downloading (the bandwidth limit keeps the run going for seconds).
// Restarted with the same data directory while the parent is unreachable,
// it serves only complete tags: every tag it lists pulls and verifies,
// including the one published before the kill, and every blob file on
// disk matches its name. With the parent back, the run finishes with
// every tag equal to the root's, fetching only what was not verified
// before the kill (at most 1.1x the missing bytes, plus control traffic),
// and the partial downloads left by the kill are never served.
func TestKillEdgeMidSync(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	rc, err := adminClient(t, root)
	if err != nil {
		t.Fatal(err)
	}
	repos := []string{"crash/r0", "crash/r1", "crash/r2", "crash/r3"}
	want := map[string]digest.Digest{}
	size := map[digest.Digest]int64{}
	for i, repo := range repos {
		// The first repository's layers are small, so that its tag is
		// published while the others still download (repositories sync
		// in parallel).
		n := 2 << 20
		if i == 0 {
			n = 256 << 10
		}
		img := rc.Image(t, repo, "v1", amd64, ocitest.Random(uint64(1000+2*i), n), ocitest.Random(uint64(1001+2*i), n))
		want[repo] = img.Digest
		for _, b := range graphOf(t, rc, repo, "v1") {
			size[b.Digest] = b.Size
		}
	}

	l := newLink(t, root.host)
	cs := connectionString(t, root, protocol.CreateRequest{Name: "crash-sync", Repositories: repos}, l.addr())
	edge := newProc(t, "--connection-string", cs, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s", "--sync-bandwidth-limit", "2MiB")
	er := edge.start()
	ec, _ := adminClient(t, er)

	// Kill once a repository's tag is published and another blob is
	// partly downloaded (repositories sync in parallel: any may be first).
	published := ""
	until(t, 60*time.Second, "a tag published and a download in progress", func() bool {
		for _, repo := range repos {
			if d, _, _ := ec.ManifestDigest(repo, "v1"); d == want[repo] {
				published = repo
				break
			}
		}
		if published == "" {
			return false
		}
		for _, n := range uploadFiles(t, edge.data) {
			if n > 0 {
				return true
			}
		}
		return false
	})
	edge.kill()

	verified := storedBlobs(t, edge.data)
	partial := uploadFiles(t, edge.data)
	var missing int64
	for d, n := range size {
		if !verified[d] {
			missing += n
		}
	}
	t.Logf("at the SIGKILL: %d of %d blobs verified on disk, %d partial uploads, %d bytes missing", len(verified), len(size), len(partial), missing)
	if missing == 0 {
		t.Fatal("the sync finished before the SIGKILL; the test proves nothing (lower --sync-bandwidth-limit)")
	}

	// Restart with the parent unreachable: only what is on disk serves.
	l.setDown(true)
	er = edge.start()
	ec, _ = adminClient(t, er)
	until(t, 30*time.Second, "the restarted edge to report Offline", func() bool {
		st, ok := readStatus(ec)
		return ok && st.ConnectionState == string(protocol.StateOffline)
	})
	visible := 0
	for _, repo := range repos {
		for _, tag := range listTags(t, ec, repo) {
			visible++
			if err := checkTag(ec, repo, tag, want[repo]); err != nil {
				t.Errorf("a tag with an incomplete or wrong graph is visible after the SIGKILL: %v", err)
			}
		}
	}
	if err := checkTag(ec, published, "v1", want[published]); err != nil {
		t.Errorf("the tag published before the SIGKILL: %v", err)
	}
	t.Logf("after the restart, offline: %d tags visible, all complete", visible)
	// The partial downloads are not served, not even under their own
	// content's digest.
	for id := range partial {
		b, err := os.ReadFile(filepath.Join(edge.data, "uploads", id))
		if err != nil {
			continue
		}
		repo, _ := os.ReadFile(filepath.Join(edge.data, "uploads", id+".repo"))
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		if resp, _, err := ec.Do(http.MethodGet, "/v2/"+string(repo)+"/blobs/"+d, nil, nil); err == nil && resp.StatusCode == http.StatusOK {
			t.Errorf("the partial download %s is served as %s", id, d)
		}
	}

	// The parent returns: the run finishes, fetching only what was missing.
	l.Downstream.Store(0)
	l.setDown(false)
	until(t, 90*time.Second, "every tag at the edge equal to the root's", func() bool {
		for _, repo := range repos {
			if d, _, _ := ec.ManifestDigest(repo, "v1"); d != want[repo] {
				return false
			}
		}
		return true
	})
	got := l.Downstream.Load()
	for _, repo := range repos {
		if err := checkTag(ec, repo, "v1", want[repo]); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	}
	if limit := missing*11/10 + 1<<20; got > limit {
		t.Errorf("after the restart the edge fetched %d bytes for %d missing, want at most %d (verified blobs refetched?)", got, missing, limit)
	}
	t.Logf("after the restart the edge fetched %d bytes for %d missing", got, missing)
	stored := storedBlobs(t, edge.data)
	for d := range size {
		if !stored[d] {
			t.Errorf("blob %s is not stored at the edge", d)
		}
	}
	if left := uploadFiles(t, edge.data); len(left) > 0 {
		t.Logf("upload session files left in the edge's data directory: %d (from the killed process)", len(left))
	}
}

// TestKillEdgeMidOutbox: a ReadWrite edge takes 20 pushes and a tag pushed
// twice while its parent is unreachable; the link returns slowed down and
// the edge is SIGKILLed in the middle of delivering its outbox. Restarted,
// it delivers the rest: every push is at the root with the digest pushed,
// the tag pushed twice ends at its second value, the root's change feed
// holds each edge push exactly once (nothing applied twice, in order),
// every layer pulls from the root, and the outbox is empty.
func TestKillEdgeMidOutbox(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	rc, err := adminClient(t, root)
	if err != nil {
		t.Fatal(err)
	}
	const repo = "crash/rw"
	base := rc.Image(t, repo, "base", amd64, ocitest.Random(2000, 4<<10))
	l := newLink(t, root.host)
	cs := connectionString(t, root, protocol.CreateRequest{Name: "crash-plant", Mode: "ReadWrite", Repositories: []string{repo}}, l.addr())
	edge := newProc(t, "--connection-string", cs, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	er := edge.start()
	ec, _ := adminClient(t, er)
	until(t, 60*time.Second, "base at the edge", func() bool {
		d, _, _ := ec.ManifestDigest(repo, "base")
		return d == base.Digest
	})

	l.setDown(true)
	until(t, 30*time.Second, "the edge to report Offline", func() bool {
		st, ok := readStatus(ec)
		return ok && st.ConnectionState == string(protocol.StateOffline)
	})
	tag := func(i int) string { return fmt.Sprintf("p%02d", i) }
	twiceA := ec.Image(t, repo, "twice", amd64, ocitest.Random(2100, 64<<10))
	var pushed []v1.Descriptor
	for i := range 20 {
		pushed = append(pushed, ec.Image(t, repo, tag(i), amd64, ocitest.Random(uint64(2200+i), 256<<10)))
	}
	twiceB := ec.Image(t, repo, "twice", amd64, ocitest.Random(2101, 64<<10))

	delivered := func() int {
		n := 0
		for i, p := range pushed {
			if d, _, _ := rc.ManifestDigest(repo, tag(i)); d == p.Digest {
				n++
			}
		}
		return n
	}
	// About 5.5 MiB to upload at 1 MiB/s: several seconds of delivery.
	l.setUploadRate(1 << 20)
	l.setDown(false)
	until(t, 60*time.Second, "the outbox delivery under way", func() bool { return delivered() >= 3 })
	edge.kill()
	n := delivered()
	if d, _, _ := rc.ManifestDigest(repo, "twice"); n == len(pushed) && d == twiceB.Digest {
		t.Fatal("the outbox was delivered completely before the SIGKILL; the test proves nothing (slow the link)")
	}
	t.Logf("SIGKILL with %d of %d pushes delivered", n, len(pushed))

	l.setUploadRate(0)
	er = edge.start()
	ec, _ = adminClient(t, er)
	// Meanwhile the edge keeps its own latest push: the root's older value
	// (its first push, delivered before the kill) must not come back.
	reverted := digest.Digest("")
	until(t, 90*time.Second, "every edge push at the root", func() bool {
		if d, _, _ := ec.ManifestDigest(repo, "twice"); d != twiceB.Digest && d != "" {
			reverted = d
		}
		d, _, _ := rc.ManifestDigest(repo, "twice")
		return delivered() == len(pushed) && d == twiceB.Digest
	})
	if reverted != "" {
		t.Errorf("twice at the edge went back to %s while its push of %s waited for delivery", reverted, twiceB.Digest)
	}
	until(t, 30*time.Second, "the outbox empty", func() bool {
		st, ok := readStatus(ec)
		return ok && st.Outbox != nil && st.Outbox.Pending == 0
	})
	for i, p := range pushed {
		if err := checkTag(rc, repo, tag(i), p.Digest); err != nil {
			t.Errorf("at the root: %v", err)
		}
	}
	if err := checkTag(rc, repo, "twice", twiceB.Digest); err != nil {
		t.Errorf("at the root: %v", err)
	}
	if d, _, _ := ec.ManifestDigest(repo, "twice"); d != twiceB.Digest {
		t.Errorf("twice at the edge: got %s, want %s", d, twiceB.Digest)
	}

	// The root's change feed: each push applied once, in order.
	var feed struct {
		Changes []struct {
			Tag    string        `json:"tag"`
			Digest digest.Digest `json:"digest"`
			Op     string        `json:"op"`
		} `json:"changes"`
	}
	root.api(t, http.MethodGet, "/api/v1/changes?repository="+repo+"&since=0&n=10000", nil, &feed)
	puts := map[string][]digest.Digest{}
	for _, c := range feed.Changes {
		if c.Op != "put" {
			t.Errorf("unexpected change at the root: %+v", c)
			continue
		}
		puts[c.Tag] = append(puts[c.Tag], c.Digest)
	}
	for i, p := range pushed {
		if got := puts[tag(i)]; !slices.Equal(got, []digest.Digest{p.Digest}) {
			t.Errorf("root's changes of %s: got %v, want [%s]", tag(i), got, p.Digest)
		}
	}
	if got, want := puts["twice"], []digest.Digest{twiceA.Digest, twiceB.Digest}; !slices.Equal(got, want) {
		t.Errorf("root's changes of twice: got %v, want %v", got, want)
	}
	if got := len(feed.Changes); got != 2+len(pushed)+1 {
		var lines []string
		for _, c := range feed.Changes {
			lines = append(lines, c.Op+" "+c.Tag+" "+string(c.Digest))
		}
		t.Errorf("root's change feed has %d changes, want %d:\n%s", got, 2+len(pushed)+1, strings.Join(lines, "\n"))
	}
}

// TestKillRootForGood: the root process is SIGKILLed and never returns.
// The edge says Offline (`outpost status`), and every synced tag still
// pulls and verifies quickly with a client token, whose password is
// checked locally; a wrong password is refused and unsynced content
// answers 404 fast.
func TestKillRootForGood(t *testing.T) {
	t.Parallel()
	rootProc := newProc(t)
	root := rootProc.start()
	rc, _ := adminClient(t, root)
	const repo = "apps/web"
	img := rc.Image(t, repo, "v1", amd64, ocitest.Random(3000, 1<<20))
	var tok struct {
		Credentials struct {
			Passwords []struct{ Value string } `json:"passwords"`
		} `json:"credentials"`
	}
	root.api(t, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "site-puller",
		"repositories": []map[string]any{{"repository": repo, "actions": []string{"content/read", "metadata/read"}}}}, &tok)
	pw := tok.Credentials.Passwords[0].Value
	cs := connectionString(t, root, protocol.CreateRequest{Name: "orphan", Repositories: []string{repo}, ClientTokens: []string{"site-puller"}}, root.host)
	edge := newProc(t, "--connection-string", cs, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	er := edge.start()
	ec := ocitest.New(t, er.url, "site-puller", pw, er.ca)
	until(t, 60*time.Second, "v1 at the edge for the client token", func() bool {
		d, _, _ := ec.ManifestDigest(repo, "v1")
		return d == img.Digest
	})

	rootProc.kill()
	ea, _ := adminClient(t, er)
	until(t, 30*time.Second, "the edge to report Offline", func() bool {
		st, ok := readStatus(ea)
		return ok && st.ConnectionState == string(protocol.StateOffline)
	})
	out := outpostCLI(t, []string{"HOME=" + t.TempDir(), "OUTPOST_SERVER=https://" + er.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD=" + adminPassword},
		"status", "--ca-file", er.ca, "-o", "json")
	var st edgeStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ConnectionState != string(protocol.StateOffline) {
		t.Errorf("outpost status with the root gone: got %q (%v), want connectionState Offline", out, err)
	}
	begin := time.Now()
	if err := checkTag(ec, repo, "v1", img.Digest); err != nil {
		t.Errorf("synced pull with the root gone: %v", err)
	}
	if _, code, _ := ec.ManifestDigest(repo, "never-synced"); code != http.StatusNotFound {
		t.Errorf("unsynced tag with the root gone: got %d, want 404", code)
	}
	if el := time.Since(begin); el > 5*time.Second {
		t.Errorf("offline answers took %s", el)
	}
	bad := ocitest.New(t, er.url, "site-puller", pw+"x", er.ca)
	if _, code, _ := bad.ManifestDigest(repo, "v1"); code != http.StatusUnauthorized {
		t.Errorf("wrong client password with the root gone: got %d, want 401", code)
	}
}
