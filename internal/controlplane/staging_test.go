package controlplane_test

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestStagingFinished: a gateway's heartbeat relays a descendant's
// progress into the job at the root, only for a real descendant, and a
// finished job signals StagingFinished (so a gateway relays it up at
// once); progress that is not an end does not.
func TestStagingFinished(t *testing.T) {
	svc, _ := newService(t)
	for _, c := range []*protocol.ConnectedRegistry{{Name: "factory", Repositories: []string{"apps/web"}}, {Name: "line1", Parent: "factory", Repositories: []string{"apps/web"}}, {Name: "other", Repositories: []string{"apps/web"}}} {
		if _, _, err := svc.Create(c); err != nil {
			t.Fatal(err)
		}
	}
	resolve := func(string, string) (digest.Digest, error) { return digest.FromString("app"), nil }
	if _, err := svc.CreateStaging(protocol.StagingRequest{Name: "release-1", Targets: []string{"line1", "other"}, Images: []string{"release/app:1.0"}}, resolve); err != nil {
		t.Fatal(err)
	}
	cfg, err := svc.Activate("factory", protocol.ActivateRequest{ActivationID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DescendantJobs) != 1 || len(cfg.Staging) != 1 {
		t.Fatalf("factory's configuration: %d descendant jobs, %d tasks; want the job for line1 as both", len(cfg.DescendantJobs), len(cfg.Staging))
	}
	report := func(site string, state protocol.StageState) protocol.SiteReport {
		return protocol.SiteReport{Site: site, StageReport: protocol.StageReport{Job: "release-1", SiteProgress: protocol.SiteProgress{State: state, ImagesTotal: 1}}}
	}
	beat := func(rs ...protocol.SiteReport) {
		t.Helper()
		if _, err := svc.RecordHeartbeat("factory", protocol.Heartbeat{ActivationID: "a1", DescendantStaging: rs}); err != nil {
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
	beat(report("line1", protocol.StageStaging), report("other", protocol.StageStaged))
	if signalled() {
		t.Fatal("signalled for progress that is not an end (and for a site that is not below the gateway)")
	}
	job, _ := svc.Job("release-1")
	if job.Sites["line1"].State != protocol.StageStaging || job.Sites["other"].State != protocol.StagePending {
		t.Fatalf("sites after the first heartbeat: %+v; want line1 Staging and other untouched", job.Sites)
	}
	beat(report("line1", protocol.StageStaged))
	if !signalled() {
		t.Fatal("a descendant's finished job did not signal StagingFinished")
	}
	if job, _ := svc.Job("release-1"); job.Sites["line1"].State != protocol.StageStaged {
		t.Fatalf("line1 at the root: %+v", job.Sites["line1"])
	}
}
