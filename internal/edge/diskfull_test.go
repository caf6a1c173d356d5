package edge_test

import (
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
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

// TestSyncOnFullVolume runs an edge on a real 8 MiB tmpfs (root only)
// whose parent holds a 12 MiB layer: the sync run fails naming the full
// volume after one transfer of the layer (a full disk is not retried as a
// broken connection), a pull-through of the layer answers 507 rather
// than "unknown", and /readyz says writes are degraded.
func TestSyncOnFullVolume(t *testing.T) {
	t.Parallel()
	data := storagetest.SmallVolume(t, "8m")
	root := start(t, t.TempDir(), nil)
	layer := ocitest.Random(61, 12<<20)
	root.admin().Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layer)
	pw := root.token(t, "site-puller", pullWebApps)
	p, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge-full", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, p.Addr())
	edge, logs := startLogged(t, data, func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.Storage.MinFreeBytes = 1 << 20
	})
	ocitest.Eventually(t, 60*time.Second, "a failed sync run", func() bool {
		return scrape(t, edge)[`outpost_sync_runs_total{result="failed"}`] >= 1
	})
	// Bytes the kernel buffers take from the link besides what the edge
	// reads, and the control calls, come on top of the one transfer.
	if got, limit := p.Downstream.Load(), int64(2*12<<20); got > limit {
		t.Errorf("the parent sent %d bytes for a layer that cannot fit in 8 MiB, want at most %d (one attempt, not retries)", got, limit)
	}
	if l := logs.String(); !strings.Contains(l, "the data volume is full") {
		t.Errorf("no log line saying the data volume is full:\n%s", l)
	}

	ec := edge.client("site-puller", pw)
	resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(digest.FromBytes(layer)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "data volume is full") {
		t.Errorf("pull-through of a layer that cannot fit: %s %s, want 507 saying the volume is full", resp.Status, body)
	}
	resp, body, err = edge.admin().Do(http.MethodGet, "/readyz", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "writes degraded") {
		t.Errorf("/readyz of the full edge: %v %q, want 200 saying writes are degraded", statusOf(resp, err), body)
	}
}
