package edge_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestNestedHierarchy: root → plant (ReadWrite) → line (ReadOnly). plant is
// line's gateway. An image pushed at the root reaches line; images pushed
// at plant reach the root and line, also after plant was cut off from the
// root for a while (with one image pushed at the root meanwhile); line
// keeps syncing from plant during the partition; the root sees both
// Online.
func TestNestedHierarchy(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	img := rc.Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(60, 32<<10))
	pusherPW := root.token(t, "plant-pusher", pushApps)
	pullerPW := root.token(t, "line-puller", pullWebApps)

	proxy, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	csPlant := root.connectedRegistry(t, protocol.CreateRequest{Name: "plant", Mode: "ReadWrite", Repositories: []string{"apps/web"}, ClientTokens: []string{"plant-pusher"}}, proxy.Addr())
	plant := startEdge(t, root, t.TempDir(), csPlant)

	root.admin().JSON(t, "POST", "/api/v1/connected-registries", protocol.CreateRequest{Name: "line1", Parent: "plant", Repositories: []string{"apps/web"}, ClientTokens: []string{"line-puller"}}, nil)
	var s protocol.Settings
	root.admin().JSON(t, "POST", "/api/v1/connected-registries/line1/settings", map[string]any{"parentProtocol": "https", "generatePassword": 1}, &s)
	line := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = s.ConnectionString
		c.Parent.CAFile = plant.ca
	})
	lc := line.client("line-puller", pullerPW)
	pc := plant.client("plant-pusher", pusherPW)

	ocitest.Eventually(t, 30*time.Second, "the root's image at line", func() bool {
		d, _, _ := lc.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	// line1's client token is line1's: its gateway keeps it only to hand
	// it down, and refuses it.
	if resp, _, err := plant.client("line-puller", pullerPW).Do(http.MethodGet, "/v2/apps/web/manifests/v1", nil, nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("line1.s client token at its gateway plant: %v, want 401", statusOf(resp, err))
	}
	fromPlant := pc.Image(t, "apps/web", "plant-1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(61, 16<<10))
	ocitest.Eventually(t, 30*time.Second, "plant's push at the root and at line", func() bool {
		d1, _, _ := rc.ManifestDigest("apps/web", "plant-1")
		d2, _, _ := lc.ManifestDigest("apps/web", "plant-1")
		return d1 == fromPlant.Digest && d2 == fromPlant.Digest
	})
	ocitest.Eventually(t, 20*time.Second, "plant and line1 Online at the root", func() bool {
		p, l := root.crStatus(t, "plant"), root.crStatus(t, "line1")
		return p.ConnectionState != protocol.StateOffline && l.ConnectionState != protocol.StateOffline &&
			p.LastSync != nil && l.LastSync != nil && l.ActivationStatus == protocol.ActivationActive
	})

	// Partition plant from the root; push 20 images at plant and one at
	// the root; line keeps getting plant's pushes from plant.
	proxy.SetDown(true)
	var pushed []v1.Descriptor
	for i := range 20 {
		pushed = append(pushed, pc.Image(t, "apps/web", "offline-"+strconv.Itoa(i), v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(100+i), 4<<10)))
	}
	atRoot := rc.Image(t, "apps/web", "root-during-partition", v1.Platform{OS: "linux", Architecture: "arm64"}, ocitest.Random(200, 4<<10))
	ocitest.Eventually(t, 30*time.Second, "line syncing plant's pushes during the partition", func() bool {
		d, _, _ := lc.ManifestDigest("apps/web", "offline-19")
		return d == pushed[19].Digest
	})
	proxy.SetDown(false)
	ocitest.Eventually(t, 60*time.Second, "all 21 images everywhere after the partition", func() bool {
		for i, p := range pushed {
			if d, _, _ := rc.ManifestDigest("apps/web", "offline-"+strconv.Itoa(i)); d != p.Digest {
				return false
			}
		}
		d1, _, _ := pc.ManifestDigest("apps/web", "root-during-partition")
		d2, _, _ := lc.ManifestDigest("apps/web", "root-during-partition")
		return d1 == atRoot.Digest && d2 == atRoot.Digest
	})
	ocitest.Eventually(t, 20*time.Second, "plant's outbox empty", func() bool {
		var st struct {
			Outbox *struct {
				Pending int64 `json:"pending"`
			} `json:"outbox"`
		}
		plant.admin().JSON(t, "GET", "/api/v1/status", nil, &st)
		return st.Outbox != nil && st.Outbox.Pending == 0
	})
}
