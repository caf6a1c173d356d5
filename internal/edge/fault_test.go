package edge_test

import (
	"bytes"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

const bigBlob = 4 << 20

// faultSetup pushes one image with a 4 MiB layer to a root and starts an
// edge that reaches the root through a fault-injecting proxy, configured
// by arm before the edge starts.
func faultSetup(t *testing.T, name string, arm func(p *faultproxy.Proxy)) (*node, *faultproxy.Proxy, *ocitest.Client, v1.Descriptor, []byte) {
	root := start(t, t.TempDir(), nil)
	layer := ocitest.Random(42, bigBlob)
	img := root.admin().Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layer)
	pw := root.token(t, "site-puller", pullWebApps)
	p, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	arm(p)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: name, Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, p.Addr())
	edge := startEdge(t, root, t.TempDir(), cs)
	return edge, p, edge.client("site-puller", pw), img, layer
}

// TestResumeAfterCut: the connection breaks in the middle of the blob; the
// download resumes with Range and fetches at most 1.1x the blob.
func TestResumeAfterCut(t *testing.T) {
	t.Parallel()
	_, p, ec, img, layer := faultSetup(t, "edge-cut", func(p *faultproxy.Proxy) { p.CutOnceAfter(bigBlob / 2) })
	ocitest.Eventually(t, 30*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(digest.FromBytes(layer)), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, layer) {
		t.Fatalf("layer at the edge: %v, want 200 with the layer", statusOf(resp, err))
	}
	// Everything that crossed the proxy: the blob, manifests, control calls.
	if got, limit := p.Downstream.Load(), int64(bigBlob)*11/10; got > limit {
		t.Errorf("transferred %d bytes for a %d-byte blob, want at most %d", got, bigBlob, limit)
	}
}

// TestCorruptedTransfer: a flipped byte fails verification; nothing is
// published until a clean transfer succeeds.
func TestCorruptedTransfer(t *testing.T) {
	t.Parallel()
	_, _, ec, img, layer := faultSetup(t, "edge-corrupt", func(p *faultproxy.Proxy) { p.CorruptOnceAt(bigBlob / 3) })
	ocitest.Eventually(t, 30*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(digest.FromBytes(layer)), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, layer) {
		t.Fatalf("layer at the edge after a corrupted transfer: %v, want 200 with the layer", statusOf(resp, err))
	}
}

// TestHangingParent: a parent that stops answering does not slow local
// pulls of synced content.
func TestHangingParent(t *testing.T) {
	t.Parallel()
	_, p, ec, img, _ := faultSetup(t, "edge-hang", func(*faultproxy.Proxy) {})
	ocitest.Eventually(t, 30*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	p.SetHang(true)
	defer p.SetHang(false)
	for range 20 {
		start := time.Now()
		if d, _, err := ec.ManifestDigest("apps/web", "v1"); err != nil || d != img.Digest {
			t.Fatalf("pull with a hanging parent: %v %s", err, d)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("pull with a hanging parent took %s", el)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var manifestRequests = regexp.MustCompile(`outpost_http_requests_total\{code="\d+",method="(?:GET|HEAD)",route="manifest"\} (\d+)`)

// countManifestRequests sums the root's manifest GET and HEAD requests.
func countManifestRequests(t *testing.T, root *node) int {
	resp, body, err := root.admin().Do(http.MethodGet, "/metrics", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %v", err)
	}
	n := 0
	for _, m := range manifestRequests.FindAllSubmatch(body, -1) {
		v, _ := strconv.Atoi(string(m[1]))
		n += v
	}
	return n
}

// TestIncrementalSync: with 2,000 tags synced, one tag changed on the root
// reaches the edge with O(1) manifest requests, through the change feed.
//
// It is not parallel: seeding 2,000 tags under the race detector competes
// for the CPU with the timing checks of the other tests.
func TestIncrementalSync(t *testing.T) {
	const tags = 2000
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	cfg := rc.PushBlob(t, "many/app", v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`))
	manifest := func(i int, gen string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
			string(cfg.Digest) + `","size":` + strconv.FormatInt(cfg.Size, 10) + `},"layers":[],"annotations":{"n":"` + strconv.Itoa(i) + gen + `"}}`)
	}
	for i := range tags {
		rc.PushManifest(t, "many/app", "t"+strconv.Itoa(i), v1.MediaTypeImageManifest, manifest(i, ""))
	}
	pw := root.token(t, "many-puller", []map[string]any{{"repository": "many/app", "actions": []string{"content/read", "metadata/read"}}})
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge-many", Repositories: []string{"many/app"}, ClientTokens: []string{"many-puller"}}, "")
	edge := startEdge(t, root, t.TempDir(), cs)
	ec := edge.client("many-puller", pw)
	// Tags sync in lexical order: t999 is the last one.
	last := digest.FromBytes(manifest(999, ""))
	ocitest.Eventually(t, 120*time.Second, "2,000 tags at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("many/app", "t999")
		var st struct {
			Progress struct {
				Running bool `json:"running"`
			} `json:"progress"`
		}
		edge.admin().JSON(t, "GET", "/api/v1/status", nil, &st)
		return d == last && !st.Progress.Running
	})
	before := countManifestRequests(t, root)
	changed := rc.PushManifest(t, "many/app", "t7", v1.MediaTypeImageManifest, manifest(7, "-changed"))
	after := 0
	ocitest.Eventually(t, 20*time.Second, "the changed tag at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("many/app", "t7")
		return d == changed.Digest
	})
	after = countManifestRequests(t, root)
	// One PUT by the test is not counted (GET/HEAD only): the edge needs one
	// GET of the changed manifest; allow a little for a concurrent run.
	if n := after - before; n > 5 {
		t.Errorf("one changed tag among %d cost %d manifest requests, want O(1) (at most 5)", tags, n)
	}
}
