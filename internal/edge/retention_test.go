package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/cli"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// outpostCLI runs the outpost command against n as the admin (whose
// credentials the caller set in the environment).
func outpostCLI(n *node, args ...string) (string, error) {
	var out bytes.Buffer
	err := cli.Run(context.Background(), append(args, "--server", n.url, "--ca-file", n.ca), &out, &out)
	return out.String(), err
}

func tagList(t *testing.T, c *ocitest.Client, repo string) []string {
	t.Helper()
	var out struct {
		Tags []string `json:"tags"`
	}
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/tags/list", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out.Tags)
	return out.Tags
}

func reportTags(r gc.Report) map[string][]string {
	out := map[string][]string{}
	for _, sw := range r.Removed {
		if len(sw.Tags) > 0 {
			out[sw.Repository] = slices.Sorted(slices.Values(sw.Tags))
		}
	}
	return out
}

// TestRetentionAtTheEdge: a connected registry whose configuration has a
// policy keeping only the newest tag of every repository. A dry run (the
// CLI) lists only the site's own pushes outside the sync scope; synced
// tags and the images of an assigned staging release survive the real
// run, and still pull complete. Once a later installed release retires
// that release at the site, its tags go, and the next collection removes
// its images. The CLI manages policies at the root (create, update,
// show, list, delete), and the root keeps the images of releases not yet
// installed whatever a policy says. Not parallel: the CLI reads its
// credentials from the environment.
func TestRetentionAtTheEdge(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("OUTPOST_USERNAME", "admin")
	t.Setenv("OUTPOST_PASSWORD", adminPW)
	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	for i, tag := range []string{"1", "2", "3"} {
		rc.Image(t, "apps/web", tag, amd, ocitest.Random(uint64(900+i), 8<<10))
	}
	r1 := rc.Image(t, "release/api", "r1", amd, ocitest.Random(910, 8<<10))
	r2 := rc.Image(t, "release/api", "r2", amd, ocitest.Random(911, 8<<10))
	r3 := rc.Image(t, "release/api", "r3", amd, ocitest.Random(912, 8<<10))
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "plant", Mode: "ReadWrite", Repositories: []string{"apps/web"}}, "")
	const grace = 300 * time.Millisecond
	site := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.GC.GracePeriod = config.Duration(grace)
		c.Retention.Policies = []config.RetentionPolicy{{Name: "newest-only", Repositories: []string{"*"}, KeepNewest: 1}}
	})
	sc := site.admin()
	ocitest.Eventually(t, 30*time.Second, "apps/web synced", func() bool {
		return slices.Equal(tagList(t, sc, "apps/web"), []string{"1", "2", "3"})
	})
	rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: "release-1", Targets: []string{"plant"}, Images: []string{"release/api:r1", "release/api:r2"}}, nil)
	staged := func(name string) bool {
		var j protocol.StagingJob
		rc.JSON(t, "GET", "/api/v1/staging/"+name, nil, &j)
		return j.Sites["plant"].State == protocol.StageStaged
	}
	ocitest.Eventually(t, 30*time.Second, "release-1 staged", func() bool { return staged("release-1") })
	for i, tag := range []string{"t1", "t2", "t3"} {
		sc.Image(t, "site/tool", tag, amd, ocitest.Random(uint64(920+i), 8<<10))
	}
	time.Sleep(grace + 100*time.Millisecond)

	out, err := outpostCLI(site, "retention", "list", "-o", "table")
	if err != nil || !strings.Contains(out, "newest-only") || !strings.Contains(out, "config") {
		t.Fatalf("retention list at the site: %v\n%s", err, out)
	}
	out, err = outpostCLI(site, "retention", "run", "--dry-run", "-o", "json")
	if err != nil {
		t.Fatalf("retention run --dry-run: %v\n%s", err, out)
	}
	var dry gc.Report
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string][]string{"site/tool": {"t1", "t2"}}
	if got := reportTags(dry); !equalTags(got, want) {
		t.Errorf("dry run: got tags removed %v, want %v", got, want)
	}
	if got := tagList(t, sc, "site/tool"); !slices.Equal(got, []string{"t1", "t2", "t3"}) {
		t.Fatalf("the dry run removed tags: %v", got)
	}
	out, err = outpostCLI(site, "retention", "run", "-o", "table")
	if err != nil || !strings.Contains(out, "site/tool") || !strings.Contains(out, "t1, t2") {
		t.Fatalf("retention run: %v\n%s", err, out)
	}
	for repo, tags := range map[string][]string{"site/tool": {"t3"}, "apps/web": {"1", "2", "3"}, "release/api": {"r1", "r2"}} {
		if got := tagList(t, sc, repo); !slices.Equal(got, tags) {
			t.Errorf("%s after the run: got %v, want %v", repo, got, tags)
		}
	}
	for _, ref := range []string{"apps/web:1", "release/api:r1", "release/api:r2", "site/tool:t3"} {
		repo, tag, _ := strings.Cut(ref, ":")
		if d, _, err := sc.ManifestDigest(repo, tag); err != nil || d == "" {
			t.Errorf("%s does not pull after the run: %v", ref, err)
		}
	}

	// The root keeps release-1's images from a policy while it is not
	// installed; the CLI manages the policy.
	if out, err := outpostCLI(root, "retention", "create", "--name", "releases", "--repository", "release/*", "--keep-newest", "1", "-o", "none"); err != nil {
		t.Fatalf("retention create: %v\n%s", err, out)
	}
	if out, err := outpostCLI(root, "retention", "create", "--name", "releases", "--repository", "x"); err == nil {
		t.Errorf("a second policy of the same name: got no error\n%s", out)
	}
	if out, err := outpostCLI(root, "retention", "update", "--name", "releases", "--keep-tags", "r9*", "--keep-semver", ">=1", "-o", "none"); err != nil {
		t.Fatalf("retention update: %v\n%s", err, out)
	}
	var p retention.Policy
	out, err = outpostCLI(root, "retention", "show", "--name", "releases")
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.KeepNewest != 1 || !slices.Equal(p.KeepTags, []string{"r9*"}) || p.KeepSemver != ">=1" {
		t.Fatalf("retention show: %v %+v\n%s", err, p, out)
	}
	var rootDry gc.Report
	rc.JSON(t, "POST", "/api/v1/retention/runs", map[string]any{"dryRun": true}, &rootDry)
	if got := reportTags(rootDry); len(got) != 0 {
		t.Errorf("root dry run while release-1 is staging: got tags removed %v, want none (r1 and r2 are staged, r3 the newest)", got)
	}

	// release-2 installed with keep 1 retires release-1 at the site: its
	// tags go there (not at the root: the site is ReadWrite, the removal
	// is not delivered), and a collection takes its images.
	rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: "release-2", Targets: []string{"plant"}, Images: []string{"release/api:r3"}}, nil)
	ocitest.Eventually(t, 30*time.Second, "release-2 staged", func() bool { return staged("release-2") })
	if out, err := stageCLI(root, "mark-installed", "--name", "release-2", "--keep", "1"); err != nil {
		t.Fatalf("mark-installed release-2: %v\n%s", err, out)
	}
	ocitest.Eventually(t, 30*time.Second, "release-1's tags removed at the site", func() bool {
		return slices.Equal(tagList(t, sc, "release/api"), []string{"r3"})
	})
	time.Sleep(grace + 100*time.Millisecond)
	var rep gc.Report
	sc.JSON(t, "POST", "/api/v1/gc/runs", map[string]any{}, &rep)
	var removed []string
	for _, sw := range rep.Removed {
		if sw.Repository == "release/api" {
			for _, d := range sw.Manifests {
				removed = append(removed, string(d))
			}
		}
	}
	slices.Sort(removed)
	if wantGone := slices.Sorted(slices.Values([]string{string(r1.Digest), string(r2.Digest)})); !slices.Equal(removed, wantGone) {
		t.Errorf("site collection removed release/api manifests %v, want release-1's %v", removed, wantGone)
	}
	// r3 stays (and r1 would come back on demand: release/api is still
	// a staged repository).
	if d, _, err := sc.ManifestDigest("release/api", "r3"); err != nil || d != r3.Digest {
		t.Errorf("release/api:r3 at the site: got %s %v", d, err)
	}
	if got := tagList(t, rc, "release/api"); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Errorf("root release/api: got %v, want every tag", got)
	}
	if out, err := outpostCLI(root, "retention", "delete", "--name", "releases", "--yes"); err != nil {
		t.Fatalf("retention delete: %v\n%s", err, out)
	}
	if out, err := outpostCLI(root, "retention", "list", "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("retention list after delete: %v\n%s", err, out)
	}
}

func equalTags(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
