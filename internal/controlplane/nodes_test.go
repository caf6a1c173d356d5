package controlplane_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// newService is a control plane on a fresh identity store.
func newService(t *testing.T) (*controlplane.Service, *auth.Store) {
	t.Helper()
	store, err := auth.OpenStore(filepath.Join(t.TempDir(), "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return controlplane.NewService(store), store
}

// TestPrePullRequest: a node selector is checked as Kubernetes labels and
// only accepted on a pre-pull job; the job carries both down to its
// site's task.
func TestPrePullRequest(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	if _, _, err := svc.Create(&protocol.ConnectedRegistry{Name: "factory", Repositories: []string{"apps/web"}}); err != nil {
		t.Fatal(err)
	}
	resolve := func(string, string) (digest.Digest, error) { return digest.FromString("app"), nil }
	for _, c := range []struct {
		name    string
		prePull bool
		sel     map[string]string
		ok      bool
	}{
		{"plain", false, nil, true},
		{"pre-pull", true, nil, true},
		{"selector", true, map[string]string{"node-role.kubernetes.io/worker": "", "pool": "line-1"}, true},
		{"selector without pre-pull", false, map[string]string{"pool": "a"}, false},
		{"bad key", true, map[string]string{"po ol": "a"}, false},
		{"bad value", true, map[string]string{"pool": "a/b"}, false},
		{"long value", true, map[string]string{"pool": fmt.Sprintf("%064d", 0)}, false},
	} {
		_, err := svc.CreateStaging(protocol.StagingRequest{Name: "job-" + fmt.Sprint(len(c.name)) + "-" + c.name[:2], Targets: []string{"factory"},
			Images: []string{"apps/web:1"}, PrePull: c.prePull, NodeSelector: c.sel}, resolve)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, auth.ErrInvalid)) {
			t.Errorf("%s: got %v, want ok %v", c.name, err, c.ok)
		}
	}
	cfg, err := svc.Activate("factory", protocol.ActivateRequest{ActivationID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, task := range cfg.Staging {
		if task.NodeSelector["pool"] == "line-1" {
			found = task.PrePull
		}
	}
	if !found {
		t.Errorf("factory's tasks %+v lack the pre-pull job with its selector", cfg.Staging)
	}
}

// TestNodeToken: the node token is a client token of its site, bound to a
// scope map that reads the site's repositories and those its jobs stage
// (following the jobs), grants the site's node action and nothing else;
// asking again rotates the password.
func TestNodeToken(t *testing.T) {
	t.Parallel()
	svc, store := newService(t)
	if _, _, err := svc.Create(&protocol.ConnectedRegistry{Name: "factory", Repositories: []string{"apps/web"}}); err != nil {
		t.Fatal(err)
	}
	nt, err := svc.CreateNodeToken("factory", protocol.NodeTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cr, _ := svc.Get("factory")
	if !slices.Contains(cr.ClientTokens, nt.TokenName) {
		t.Errorf("client tokens %v lack %s", cr.ClientTokens, nt.TokenName)
	}
	repos := func() []string {
		m, err := store.ScopeMap(nt.ScopeMap)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(m.Gateway, []auth.Action{"gateway/factory/nodes/write"}) {
			t.Errorf("gateway actions %v, want only gateway/factory/nodes/write", m.Gateway)
		}
		var out []string
		for _, g := range m.Repositories {
			if !slices.Equal(g.Actions, []auth.Action{auth.ContentRead, auth.MetadataRead}) {
				t.Errorf("%s: actions %v, want read only", g.Repository, g.Actions)
			}
			out = append(out, g.Repository)
		}
		return out
	}
	if got := repos(); !slices.Equal(got, []string{"apps/web"}) {
		t.Errorf("before a job: %v, want [apps/web]", got)
	}
	resolve := func(string, string) (digest.Digest, error) { return digest.FromString("app"), nil }
	if _, err := svc.CreateStaging(protocol.StagingRequest{Name: "release-1", Targets: []string{"factory"}, Images: []string{"release/app:1"}, PrePull: true}, resolve); err != nil {
		t.Fatal(err)
	}
	if got := repos(); !slices.Equal(got, []string{"apps/web", "release/app"}) {
		t.Errorf("with the job: %v, want [apps/web release/app]", got)
	}
	if err := svc.DeleteStaging("release-1"); err != nil {
		t.Fatal(err)
	}
	if got := repos(); !slices.Equal(got, []string{"apps/web"}) {
		t.Errorf("after the job: %v, want [apps/web]", got)
	}
	again, err := svc.CreateNodeToken("factory", protocol.NodeTokenRequest{})
	if err != nil || again.Password == nt.Password || again.TokenName != nt.TokenName {
		t.Errorf("second call: %+v %v, want the same token with a new password", again, err)
	}
	if _, err := svc.CreateNodeToken("nowhere", protocol.NodeTokenRequest{}); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("unknown site: got %v, want not found", err)
	}
}
