package controlplane_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestBundleReports: the root hands its bundle key out at activation;
// the bundles a registry reports importing are kept on its record (the
// last 20), directly and, for a registry below a gateway, through the
// gateway's heartbeat, without doubling on every heartbeat.
func TestBundleReports(t *testing.T) {
	store, err := auth.OpenStore(filepath.Join(t.TempDir(), "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	svc := controlplane.NewService(store)
	svc.SetBundleKey("PEM")
	for _, c := range []*protocol.ConnectedRegistry{{Name: "factory", Repositories: []string{"apps/web"}}, {Name: "line1", Parent: "factory", Repositories: []string{"apps/web"}}} {
		if _, _, err := svc.Create(c); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := svc.Activate("factory", protocol.ActivateRequest{ActivationID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BundleKey != "PEM" {
		t.Errorf("bundle key in the configuration: got %q, want the root's", cfg.BundleKey)
	}
	imp := func(id string) protocol.BundleImport {
		return protocol.BundleImport{ID: id, Time: time.Now(), Images: []protocol.ImportedImage{{Repository: "apps/web", Tag: "1", Digest: "sha256:x"}}}
	}
	var own []protocol.BundleImport
	for i := range 25 {
		own = append(own, imp(string(rune('a'+i))))
	}
	child := &protocol.ConnectedRegistry{Name: "line1", Bundles: []protocol.BundleImport{imp("child-1")}}
	for range 2 { // the gateway repeats its descendant's list
		if _, err := svc.RecordHeartbeat("factory", protocol.Heartbeat{ActivationID: "a1", Bundles: own, Descendants: []*protocol.ConnectedRegistry{child}}); err != nil {
			t.Fatal(err)
		}
		own = nil
	}
	f, err := svc.Get("factory")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Bundles) != 20 || f.Bundles[19].ID != string(rune('a'+24)) {
		t.Errorf("factory's bundles: got %d ending %q, want the last 20", len(f.Bundles), f.Bundles[len(f.Bundles)-1].ID)
	}
	l, err := svc.Get("line1")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Bundles) != 1 || l.Bundles[0].ID != "child-1" {
		t.Errorf("line1's bundles: got %+v, want child-1 once", l.Bundles)
	}
}
