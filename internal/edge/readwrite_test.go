package edge_test

import (
	"net/http"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

var pushApps = []map[string]any{{"repository": "apps/web", "actions": []string{"content/read", "content/write", "content/delete", "metadata/read"}}}

// TestReadWriteOutbox: pushes at a ReadWrite edge reach the root (tag and
// whole graph), are reported as notifications, and a tag moved on both
// sides resolves with the parent's tag winning and a reported conflict.
func TestReadWriteOutbox(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	base := rc.Image(t, "apps/web", "shared", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(20, 32<<10))
	pw := root.token(t, "site-pusher", pushApps)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "plant", Mode: "ReadWrite", Repositories: []string{"apps/web"},
		ClientTokens: []string{"site-pusher"}, Notifications: []string{"apps/web:*:push"}}, "")
	edge := startEdge(t, root, t.TempDir(), cs)
	ec := edge.client("site-pusher", pw)
	ocitest.Eventually(t, 20*time.Second, "the edge to sync shared and accept pushes", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "shared")
		return d == base.Digest
	})

	// Push at the edge: it reaches the root.
	var pushed []v1.Descriptor
	for i := range 3 {
		pushed = append(pushed, ec.Image(t, "apps/web", "edge-"+string(rune('a'+i)), v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(30+i), 16<<10)))
	}
	ocitest.Eventually(t, 20*time.Second, "edge pushes at the root", func() bool {
		for i, d := range pushed {
			got, _, _ := rc.ManifestDigest("apps/web", "edge-"+string(rune('a'+i)))
			if got != d.Digest {
				return false
			}
		}
		return true
	})
	// The graph is complete at the root: a layer pulls.
	resp, _, err := rc.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(ocitestDigest(ocitest.Random(31, 16<<10))), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("edge layer at the root: %v, want 200", statusOf(resp, err))
	}
	ocitest.Eventually(t, 20*time.Second, "notifications at the root", func() bool {
		return len(root.crStatus(t, "plant").Events) >= 3
	})

	// Conflict: stop delivery by moving the tag on both sides quickly is
	// racy; instead move "shared" at the root, then at the edge before the
	// edge has synced the move (the edge's previous value is the old one).
	rootMove := rc.Image(t, "apps/web", "", v1.Platform{OS: "linux", Architecture: "arm64"}, ocitest.Random(40, 8<<10))
	edgeMove := ec.Image(t, "apps/web", "", v1.Platform{OS: "linux", Architecture: "s390x"}, ocitest.Random(41, 8<<10))
	rc.PushManifest(t, "apps/web", "shared", v1.MediaTypeImageManifest, mustGet(t, rc, "apps/web", string(rootMove.Digest)))
	ec.PushManifest(t, "apps/web", "shared", v1.MediaTypeImageManifest, mustGet(t, ec, "apps/web", string(edgeMove.Digest)))
	ocitest.Eventually(t, 30*time.Second, "the conflict resolved for the parent", func() bool {
		rd, _, _ := rc.ManifestDigest("apps/web", "shared")
		ed, _, _ := ec.ManifestDigest("apps/web", "shared")
		return rd == rootMove.Digest && ed == rootMove.Digest
	})
	// The edge can take the parent's tag by syncing before its outbox has
	// delivered its own move, so the resolution above says nothing about
	// delivery. The conflict is recorded only after the outbox has copied
	// the edge's graph to the parent: once it is reported, the edge's
	// version must be reachable there by digest.
	ocitest.Eventually(t, 30*time.Second, "the conflict reported at the root", func() bool {
		for _, d := range root.crStatus(t, "plant").StatusDetails {
			if len(d) > 8 && d[:8] == "conflict" {
				return true
			}
		}
		return false
	})
	if d, code, _ := rc.ManifestDigest("apps/web", string(edgeMove.Digest)); d != edgeMove.Digest {
		t.Errorf("edge's manifest at the root by digest after the conflict was reported: %d", code)
	}
}

func ocitestDigest(b []byte) string {
	return string(ocitest.Digest(b))
}
