package edge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestPrePullNested: root → factory → line1. A --pre-pull job for line1
// reaches line1's node routes once line1 has staged it, and only there
// (factory stages it as line1's source, not for its own nodes). line1's
// node token, made at the root, authenticates at line1 only: it reads the
// staged image, leases at most sync.prePullNodes slots, and its node
// reports reach the root through factory; it cannot push, use an admin
// route, or report on a job that is not a pre-pull job of line1.
func TestPrePullNested(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	img := rc.Image(t, "release/app", "1.0", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(900, 32<<10))
	csFactory := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory", Repositories: []string{"apps/web"}}, "")
	rc.JSON(t, "POST", "/api/v1/connected-registries", protocol.CreateRequest{Name: "line1", Parent: "factory", Repositories: []string{"apps/web"}}, nil)
	var nt protocol.NodeToken
	rc.JSON(t, "POST", "/api/v1/connected-registries/line1/node-token", protocol.NodeTokenRequest{}, &nt)
	if nt.TokenName != "line1-node-token" || nt.Password == "" {
		t.Fatalf("node token: %+v", nt)
	}
	rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: "release-1", Targets: []string{"line1"}, Images: []string{"release/app:1.0"},
		PrePull: true, NodeSelector: map[string]string{"pool": "line1"}}, nil)
	factory := startEdge(t, root, t.TempDir(), csFactory)
	var s protocol.Settings
	rc.JSON(t, "POST", "/api/v1/connected-registries/line1/settings", map[string]any{"parentProtocol": "https", "generatePassword": 1}, &s)
	// line1 activates at factory once factory has line1's new password.
	line := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString, c.Parent.CAFile = s.ConnectionString, factory.ca
		c.Sync.PrePullNodes = 2
	})
	nodes := line.client(nt.TokenName, nt.Password)
	var jobs []protocol.NodeJob
	ocitest.Eventually(t, 60*time.Second, "release-1 on line1's node routes", func() bool {
		resp, b, err := nodes.Do(http.MethodGet, "/api/v1/nodes/jobs", nil, nil)
		return err == nil && resp.StatusCode == http.StatusOK && json.Unmarshal(b, &jobs) == nil && len(jobs) == 1
	})
	if j := jobs[0]; j.Job != "release-1" || !j.PullNow || j.NodeSelector["pool"] != "line1" || len(j.Images) != 1 || j.Images[0].Digest != img.Digest {
		t.Fatalf("line1's node job: %+v", j)
	}
	var atFactory []protocol.NodeJob
	factory.admin().JSON(t, http.MethodGet, "/api/v1/nodes/jobs", nil, &atFactory)
	if len(atFactory) != 0 {
		t.Errorf("factory's nodes got %+v, want nothing: factory stages release-1 only as line1's source", atFactory)
	}
	if resp, _, err := factory.client(nt.TokenName, nt.Password).Do(http.MethodGet, "/api/v1/nodes/jobs", nil, nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("line1's node token at factory: %s, want 401", statusOf(resp, err))
	}

	// What the node token may do at line1, and what not.
	if d, _, err := nodes.ManifestDigest("release/app", string(img.Digest)); err != nil || d != img.Digest {
		t.Errorf("node token pulls the staged manifest: %q %v", d, err)
	}
	for _, c := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{http.MethodPut, "/v2/release/app/manifests/other", []byte("{}"), http.StatusForbidden},
		{http.MethodGet, "/api/v1/tokens", nil, http.StatusForbidden},
		{http.MethodPut, "/api/v1/nodes/node-a/jobs/no-such-job", []byte(`{"state":"Pulled"}`), http.StatusNotFound},
		{http.MethodPut, "/api/v1/nodes/node-a/jobs/release-1", []byte(`{"state":"Done"}`), http.StatusBadRequest},
		{http.MethodPost, "/api/v1/nodes/Not_A_Node/lease", nil, http.StatusBadRequest},
	} {
		hdr := http.Header{"Content-Type": {"application/json"}}
		if resp, _, err := nodes.Do(c.method, c.path, hdr, c.body); err != nil || resp.StatusCode != c.want {
			t.Errorf("%s %s with the node token: %s, want %d", c.method, c.path, statusOf(resp, err), c.want)
		}
	}

	// Two slots: a and b get one, c waits until a gives its back; a
	// renews its own.
	lease := func(node string) protocol.Lease {
		var l protocol.Lease
		nodes.JSON(t, http.MethodPost, "/api/v1/nodes/"+node+"/lease", nil, &l)
		return l
	}
	for i, c := range []struct {
		node    string
		release bool
		granted bool
	}{{"node-a", false, true}, {"node-b", false, true}, {"node-c", false, false}, {"node-a", false, true}, {"node-a", true, false}, {"node-c", false, true}} {
		if c.release {
			nodes.JSON(t, http.MethodDelete, "/api/v1/nodes/"+c.node+"/lease", nil, nil)
			continue
		}
		if l := lease(c.node); l.Granted != c.granted || l.Limit != 2 || l.Holders > 2 {
			t.Errorf("step %d: lease for %s: %+v, want granted %v, limit 2", i, c.node, l, c.granted)
		}
	}

	// Node reports reach the root through factory.
	for node, p := range map[string]protocol.NodeProgress{
		"node-a": {State: protocol.NodePulled, ImagesDone: 1, ImagesTotal: 1},
		"node-b": {State: protocol.NodeFailed, ImagesTotal: 1, Reason: "cri socket gone"},
		"node-c": {State: protocol.NodePulling, ImagesTotal: 1},
	} {
		nodes.JSON(t, http.MethodPut, "/api/v1/nodes/"+node+"/jobs/release-1", p, nil)
	}
	var got *protocol.NodeRollup
	ocitest.Eventually(t, 30*time.Second, "line1's nodes at the root", func() bool {
		var j protocol.StagingJob
		rc.JSON(t, http.MethodGet, "/api/v1/staging/release-1", nil, &j)
		got = j.Sites["line1"].Nodes
		return got != nil && got.Total == 3
	})
	if got.Done != 1 || got.Failed != 1 || got.Pulling != 1 || len(got.Nodes) != 3 || got.Nodes[0].Node != "node-b" || got.Nodes[0].Reason != "cri socket gone" {
		t.Errorf("line1's nodes at the root: %s, want 1 done, 1 failed (listed first, with its reason), 1 pulling", fmt.Sprintf("%+v", *got))
	}
}
