package controlplane_test

import (
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/controlplane"
)

// TestStagingFinished: a gateway's heartbeat relays a descendant's
// progress into the job at the root, only for a real descendant, and a
// finished job signals StagingFinished (so a gateway relays it up at
// once); progress that is not an end does not.
func TestStagingFinished(t *testing.T) {
	store, err := auth.OpenStore(filepath.Join(t.TempDir(), "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	svc := controlplane.NewService(store)
	for _, c := range []*controlplane.ConnectedRegistry{{Name: "factory", Repositories: []string{"apps/web"}}, {Name: "line1", Parent: "factory", Repositories: []string{"apps/web"}}, {Name: "other", Repositories: []string{"apps/web"}}} {
		if _, _, err := svc.Create(c); err != nil {
			t.Fatal(err)
		}
	}
	resolve := func(string, string) (digest.Digest, error) { return digest.FromString("app"), nil }
	if _, err := svc.CreateStaging(controlplane.StagingRequest{Name: "release-1", Targets: []string{"line1", "other"}, Images: []string{"release/app:1.0"}}, resolve); err != nil {
		t.Fatal(err)
	}
	cfg, err := svc.Activate("factory", controlplane.ActivateRequest{ActivationID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DescendantJobs) != 1 || len(cfg.Staging) != 1 {
		t.Fatalf("factory's configuration: %d descendant jobs, %d tasks; want the job for line1 as both", len(cfg.DescendantJobs), len(cfg.Staging))
	}
	report := func(site, state string) controlplane.SiteReport {
		return controlplane.SiteReport{Site: site, StageReport: controlplane.StageReport{Job: "release-1", SiteProgress: controlplane.SiteProgress{State: state, ImagesTotal: 1}}}
	}
	beat := func(rs ...controlplane.SiteReport) {
		t.Helper()
		if _, err := svc.RecordHeartbeat("factory", controlplane.Heartbeat{ActivationID: "a1", DescendantStaging: rs}); err != nil {
			t.Fatal(err)
		}
	}
	signalled := func() bool {
		select {
		case <-svc.StagingFinished():
			return true
		default:
			return false
		}
	}
	beat(report("line1", controlplane.StageStaging), report("other", controlplane.StageStaged))
	if signalled() {
		t.Fatal("signalled for progress that is not an end (and for a site that is not below the gateway)")
	}
	job, _ := svc.Job("release-1")
	if job.Sites["line1"].State != controlplane.StageStaging || job.Sites["other"].State != controlplane.StagePending {
		t.Fatalf("sites after the first heartbeat: %+v; want line1 Staging and other untouched", job.Sites)
	}
	beat(report("line1", controlplane.StageStaged))
	if !signalled() {
		t.Fatal("a descendant's finished job did not signal StagingFinished")
	}
	if job, _ := svc.Job("release-1"); job.Sites["line1"].State != controlplane.StageStaged {
		t.Fatalf("line1 at the root: %+v", job.Sites["line1"])
	}
}
