package edge_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

var pullWebApps = []map[string]any{{"repository": "apps/web", "actions": []string{"content/read", "metadata/read"}}}

// TestSyncEndToEnd: a multi-platform image with a signature pushed to the
// root reaches a ReadOnly edge complete; tag moves and deletions follow;
// the edge serves only its client tokens and refuses pushes.
func TestSyncEndToEnd(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	amd := rc.Image(t, "apps/web", "", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(1, 300<<10))
	arm := rc.Image(t, "apps/web", "", v1.Platform{OS: "linux", Architecture: "arm64"}, ocitest.Random(2, 200<<10))
	multi := rc.Index(t, "apps/web", "multi", amd, arm)
	sig := rc.Referrer(t, "apps/web", "application/vnd.example.signature", multi, []byte("signature"))
	v1img := rc.Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(3, 100<<10))
	rc.Image(t, "apps/other", "x", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(4, 10<<10))

	pw := root.token(t, "site-puller", pullWebApps)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge01", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, "")
	edge := startEdge(t, root, t.TempDir(), cs)
	ec := edge.client("site-puller", pw)

	ocitest.Eventually(t, 20*time.Second, "multi and v1 at the edge", func() bool {
		d1, _, _ := ec.ManifestDigest("apps/web", "multi")
		d2, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d1 == multi.Digest && d2 == v1img.Digest
	})
	// The whole graph is there: every layer byte for byte, and the referrer.
	for i, seed := range []uint64{1, 2, 3} {
		size := []int{300 << 10, 200 << 10, 100 << 10}[i]
		want := ocitest.Random(seed, size)
		resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/blobs/"+string(digest.FromBytes(want)), nil, nil)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("layer %d at the edge: %v, want 200 with the layer", seed, statusOf(resp, err))
		}
	}
	ocitest.Eventually(t, 10*time.Second, "the signature at the edge", func() bool {
		resp, body, err := ec.Do(http.MethodGet, "/v2/apps/web/referrers/"+string(multi.Digest), nil, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		var idx v1.Index
		_ = json.Unmarshal(body, &idx)
		return len(idx.Manifests) == 1 && idx.Manifests[0].Digest == sig.Digest
	})
	// Outside the configured repositories: nothing, and no call upstream.
	if _, code, _ := edge.admin().ManifestDigest("apps/other", "x"); code != http.StatusNotFound {
		t.Errorf("apps/other at the edge: got %d, want 404", code)
	}

	// Tag moved and deleted on the root.
	rc.PushManifest(t, "apps/web", "v1", v1.MediaTypeImageManifest, mustGet(t, rc, "apps/web", string(amd.Digest)))
	if resp, _, err := rc.Do(http.MethodDelete, "/v2/apps/web/manifests/multi", nil, nil); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete tag: %v, want 202", statusOf(resp, err))
	}
	ocitest.Eventually(t, 20*time.Second, "the tag move and delete at the edge", func() bool {
		d1, _, _ := ec.ManifestDigest("apps/web", "v1")
		_, code, _ := ec.ManifestDigest("apps/web", "multi")
		return d1 == amd.Digest && code == http.StatusNotFound
	})

	// Status reaches the root.
	ocitest.Eventually(t, 10*time.Second, "edge01 Active and synced at the root", func() bool {
		c := root.crStatus(t, "edge01")
		return c.ActivationStatus == "Active" && c.LastSync != nil && c.LoginServer == edge.addr
	})

	// ReadOnly: pushes are refused, for client tokens and the admin.
	for _, c := range []*ocitest.Client{ec, edge.admin()} {
		resp, body, err := c.Do(http.MethodPost, "/v2/apps/web/blobs/uploads/", nil, nil)
		if err != nil || resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("DENIED")) {
			t.Errorf("push to a ReadOnly edge as %s: got %v %s, want 403 DENIED", c.Username, statusOf(resp, err), body)
		}
	}
	// The sync token is not a client credential at the edge.
	parsed, _ := protocol.ParseConnectionString(cs)
	sc := edge.client(parsed.SyncTokenName, parsed.SyncTokenPassword)
	if _, code, _ := sc.ManifestDigest("apps/web", "v1"); code != http.StatusUnauthorized {
		t.Errorf("sync token at the edge: got %d, want 401", code)
	}

	// A second deployment with the same connection string is refused.
	second := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
	})
	// Inactive is where the second one starts, so wait for what changes:
	// the parent's refusal reaching its status.
	var st struct {
		Activation string `json:"activationStatus"`
		LastError  string `json:"lastError"`
	}
	ocitest.Eventually(t, 20*time.Second, "the parent's refusal of the second activation", func() bool {
		second.admin().JSON(t, "GET", "/api/v1/status", nil, &st)
		return strings.Contains(st.LastError, "409") && strings.Contains(st.LastError, "active in another deployment")
	})
	if st.Activation != "Inactive" {
		t.Errorf("second activation refused: got activation %q, want Inactive (error %q)", st.Activation, st.LastError)
	}
	if c := root.crStatus(t, "edge01"); c.ActivationStatus != "Active" || c.LoginServer != edge.addr {
		t.Errorf("after the refused second activation the parent shows %s at %s, want Active at the first edge %s", c.ActivationStatus, c.LoginServer, edge.addr)
	}
}

func mustGet(t *testing.T, c *ocitest.Client, repo, ref string) []byte {
	t.Helper()
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s:%s: %v", repo, ref, err)
	}
	return body
}

// TestOffline: with the root gone, synced content keeps serving quickly,
// client tokens work, misses answer 404 fast and the edge says Offline.
func TestOffline(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	img := root.admin().Image(t, "apps/web", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(7, 64<<10))
	pw := root.token(t, "site-puller", pullWebApps)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge-offline", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}}, "")
	edge := startEdge(t, root, t.TempDir(), cs)
	ec := edge.client("site-puller", pw)
	ocitest.Eventually(t, 20*time.Second, "v1 at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "v1")
		return d == img.Digest
	})
	root.stop()
	ocitest.Eventually(t, 10*time.Second, "the edge to report Offline", func() bool {
		var st struct {
			State string `json:"connectionState"`
		}
		edge.admin().JSON(t, "GET", "/api/v1/status", nil, &st)
		return st.State == string(protocol.StateOffline)
	})
	start := time.Now()
	if d, _, err := ec.ManifestDigest("apps/web", "v1"); err != nil || d != img.Digest {
		t.Fatalf("offline pull: %v %s", err, d)
	}
	t.Logf("offline pull took %s", time.Since(start))
	if _, code, _ := ec.ManifestDigest("apps/web", "never-synced"); code != http.StatusNotFound {
		t.Errorf("offline miss: got %d, want 404", code)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("offline answers took %s", el)
	}
}
