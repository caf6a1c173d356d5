package edge_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// stageCLI runs `outpost stage …` against root as the admin and returns
// its output and error.
func stageCLI(root *node, args ...string) (string, error) {
	return outpostCLI(root, append([]string{"stage"}, args...)...)
}

// assigned lists the jobs the root assigns to a site in its configuration.
func assigned(t *testing.T, root *node, site string) []string {
	var cfg struct {
		Staging []protocol.StageTask `json:"staging"`
	}
	root.admin().JSON(t, "GET", "/api/v1/gateway/"+site+"/config", nil, &cfg)
	var out []string
	for _, task := range cfg.Staging {
		out = append(out, task.Job)
	}
	slices.Sort(out)
	return out
}

// TestReleaseLifecycle: stage wait returns when two sites have staged a
// release; fails naming the site and its reason when that site's parent
// no longer has an image; times out cleanly. mark-installed moves the
// release to Installed, refuses a site where it is not Staged, and with
// the keep rule stops assigning the older releases to the site. Not
// parallel: the CLI reads its credentials from the environment.
func TestReleaseLifecycle(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("OUTPOST_USERNAME", "admin")
	t.Setenv("OUTPOST_PASSWORD", adminPW)
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	for i, tag := range []string{"1", "2", "3", "4"} {
		rc.Image(t, "release/web", tag, v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(800+i), 16<<10))
	}
	rc.Image(t, "release/extra", "1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(810, 16<<10))
	cs1 := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory1", Repositories: []string{"apps/web"}}, "")
	cs2 := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory2", Repositories: []string{"apps/web"}}, "")
	startEdge(t, root, t.TempDir(), cs1)
	data2 := t.TempDir()
	e2 := startEdge(t, root, data2, cs2)
	both := []string{"factory1", "factory2"}
	create := func(name string, targets []string, images ...string) {
		rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: name, Targets: targets, Images: images}, nil)
	}

	create("release-1", both, "release/web:1")
	out, err := stageCLI(root, "wait", "--name", "release-1", "--timeout", "60s", "--interval", "200ms")
	if err != nil || !strings.Contains(out, "release release-1 is Staged at factory1, factory2") {
		t.Fatalf("stage wait release-1: %v\n%s", err, out)
	}

	// factory2 is down while release-2 is created and while the root
	// loses release/extra: on its return it cannot stage it.
	e2.stop()
	create("release-2", both, "release/web:2", "release/extra:1")
	if out, err := stageCLI(root, "wait", "--name", "release-2", "--connected-registry", "factory1", "--timeout", "60s", "--interval", "200ms"); err != nil {
		t.Fatalf("stage wait release-2 at factory1: %v\n%s", err, out)
	}
	rc.JSON(t, "DELETE", "/api/v1/repositories/release/extra", nil, nil)
	start(t, data2, func(c *config.Config) { c.ConnectionString = cs2; c.Parent.CAFile = root.ca })
	out, err = stageCLI(root, "wait", "--name", "release-2", "--timeout", "60s", "--interval", "200ms")
	if err == nil || !strings.Contains(err.Error(), "factory2: image release/extra:1 not found on the parent") || strings.Contains(err.Error(), "factory1") {
		t.Fatalf("stage wait release-2: got %v, want factory2 failed naming release/extra:1\n%s", err, out)
	}

	// A site that never reports: a clean timeout naming it.
	var pending protocol.StagingJob
	rc.JSON(t, "POST", "/api/v1/connected-registries", protocol.CreateRequest{Name: "factory3", Repositories: []string{"apps/web"}}, nil)
	create("release-3", []string{"factory1", "factory3"}, "release/web:3")
	began := time.Now()
	out, err = stageCLI(root, "wait", "--name", "release-3", "--timeout", "2s", "--interval", "200ms")
	if err == nil || !strings.Contains(err.Error(), "timed out after 2s") || !strings.Contains(err.Error(), "factory3 (Pending") {
		t.Fatalf("stage wait release-3: got %v, want a timeout naming factory3\n%s", err, out)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("stage wait --timeout 2s took %s", d)
	}
	rc.JSON(t, "GET", "/api/v1/staging/release-3", nil, &pending)
	if pending.State != protocol.StageStaging {
		t.Errorf("release-3 state: got %s, want Staging", pending.State)
	}

	// mark-installed: refused where not Staged; Installed once every
	// site is; the keep rule retires the older releases per site.
	if out, err := stageCLI(root, "mark-installed", "--name", "release-2"); err == nil || !strings.Contains(err.Error(), `"factory2", not Staged`) {
		t.Fatalf("mark-installed release-2 with factory2 Failed: got %v, want refused\n%s", err, out)
	}
	if out, err := stageCLI(root, "mark-installed", "--name", "release-1"); err != nil {
		t.Fatalf("mark-installed release-1: %v\n%s", err, out)
	}
	var job protocol.StagingJob
	rc.JSON(t, "GET", "/api/v1/staging/release-1", nil, &job)
	if job.State != protocol.StageInstalled || job.Sites["factory1"].InstalledAt == nil {
		t.Fatalf("release-1 after mark-installed: state %s, sites %+v", job.State, job.Sites)
	}
	if got := assigned(t, root, "factory1"); !slices.Equal(got, []string{"release-1", "release-2", "release-3"}) {
		t.Fatalf("factory1's jobs before the second install: got %v", got)
	}
	// release-2 installed at factory1 (default keep 2): release-1 stays
	// for rollback.
	if out, err := stageCLI(root, "mark-installed", "--name", "release-2", "--connected-registry", "factory1"); err != nil {
		t.Fatalf("mark-installed release-2 at factory1: %v\n%s", err, out)
	}
	if got := assigned(t, root, "factory1"); !slices.Equal(got, []string{"release-1", "release-2", "release-3"}) {
		t.Errorf("factory1's jobs with keep 2: got %v, want release-1 kept for rollback", got)
	}
	// release-3, once Staged at factory1, installed with keep 1: the
	// releases before it are no longer assigned to factory1, and still
	// to factory2 where nothing newer is installed.
	if out, err := stageCLI(root, "wait", "--name", "release-3", "--connected-registry", "factory1", "--timeout", "60s", "--interval", "200ms"); err != nil {
		t.Fatalf("stage wait release-3 at factory1: %v\n%s", err, out)
	}
	if out, err := stageCLI(root, "mark-installed", "--name", "release-3", "--connected-registry", "factory1", "--keep", "1"); err != nil {
		t.Fatalf("mark-installed release-3 --keep 1: %v\n%s", err, out)
	}
	if got := assigned(t, root, "factory1"); !slices.Equal(got, []string{"release-3"}) {
		t.Errorf("factory1's jobs after release-3 with keep 1: got %v, want only release-3", got)
	}
	if got := assigned(t, root, "factory2"); !slices.Equal(got, []string{"release-1", "release-2"}) {
		t.Errorf("factory2's jobs: got %v, want release-1 and release-2", got)
	}
	list, err := stageCLI(root, "list", "-o", "table")
	if err != nil || !strings.Contains(list, "factory1=Retired@") || !strings.Contains(list, "factory1=Installed@") || !strings.Contains(list, "Failed") {
		t.Errorf("stage list: %v\n%s", err, list)
	}
}
