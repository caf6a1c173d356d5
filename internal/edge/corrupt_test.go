package edge_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestCorruptionReported: a byte flipped in transit on the HTTPS link is
// caught (by TLS record integrity, before the digest check sees it),
// reported with a warning naming the blob, and the download resumes (at
// most about twice the blob crosses the link); the layer served
// afterwards is the root's, byte for byte.
func TestCorruptionReported(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	layer := ocitest.Random(43, bigBlob)
	img := root.admin().Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layer)
	pw := root.token(t, "site-puller", pullWebApps)
	p, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.CorruptOnceAt(bigBlob / 2)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge-corrupt-report", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, p.Addr())
	edge, logs := startLogged(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
	})
	ec := edge.client("site-puller", pw)
	ocitest.Eventually(t, 60*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	ld := digest.FromBytes(layer)
	resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(ld), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, layer) {
		t.Fatalf("layer at the edge after a corrupted transfer: %v, want 200 with the layer", statusOf(resp, err))
	}
	if l := logs.String(); !strings.Contains(l, "blob "+string(ld)) || !strings.Contains(l, "level=WARN") {
		t.Errorf("no warning naming %s in the edge's log:\n%s", ld, l)
	}
	if got, limit := p.Downstream.Load(), int64(bigBlob)*21/10; got > limit {
		t.Errorf("transferred %d bytes for a %d-byte blob fetched twice, want at most %d", got, bigBlob, limit)
	}
}
