package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/kube"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestStaging: a job naming a multi-platform image and a signed image (read
// from a Deployment) stages on two edges, outside their configured
// repositories; an edge that is down completes when it returns; a missing
// image fails that image with a reason; stage check reads every blob and
// names a corrupted one.
func TestStaging(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	amd := rc.Image(t, "release/web", "", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(50, 64<<10))
	arm := rc.Image(t, "release/web", "", v1.Platform{OS: "linux", Architecture: "arm64"}, ocitest.Random(51, 64<<10))
	rc.Index(t, "release/web", "4.2", amd, arm)
	api := rc.Image(t, "release/api", "4.2", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(52, 32<<10))
	rc.Referrer(t, "release/api", "application/vnd.example.signature", api, []byte("signed"))

	deployment := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: ` + root.addr + `/release/api:4.2}]
      containers:
      - {name: web, image: ` + root.addr + `/release/web:4.2}
      - {name: sidecar, image: docker.io/library/busybox:1}
`
	imgs, err := kube.Images(strings.NewReader(deployment))
	if err != nil || len(imgs) != 3 {
		t.Fatalf("images of the deployment: %v %v", imgs, err)
	}
	var refs []string
	for _, img := range imgs {
		if after, ok := strings.CutPrefix(img, root.addr+"/"); ok {
			refs = append(refs, after)
		}
	}

	pw := root.token(t, "site-puller", []map[string]any{{"repository": "release/*", "actions": []string{"content/read", "metadata/read"}}})
	cs1 := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory1", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}, SyncSchedule: "0 0 1 1 *", SyncWindow: "PT1H"}, "")
	cs2 := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory2", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}, SyncSchedule: "0 0 1 1 *", SyncWindow: "PT1H"}, "")
	e1 := startEdge(t, root, t.TempDir(), cs1)
	data2 := t.TempDir()
	e2 := startEdge(t, root, data2, cs2)
	e2.stop() // factory2 is down when the job is created

	var job protocol.StagingJob
	rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: "release-42", Targets: []string{"factory1", "factory2"}, Images: refs}, &job)
	if job.Images[0].Digest == "" || job.Images[1].Digest == "" {
		t.Fatalf("images not resolved at creation: %+v", job.Images)
	}
	site := func(name string) protocol.SiteProgress {
		var j protocol.StagingJob
		rc.JSON(t, "GET", "/api/v1/staging/release-42", nil, &j)
		return j.Sites[name]
	}
	ocitest.Eventually(t, 30*time.Second, "factory1 Staged", func() bool { return site("factory1").State == protocol.StageStaged })
	if s := site("factory2"); s.State != protocol.StagePending {
		t.Errorf("factory2 while down: got %s, want Pending", s.State)
	}
	check := func(n *node) []client.CheckResult {
		c, err := client.New(n.url, "site-puller", pw, n.ca)
		if err != nil {
			t.Fatal(err)
		}
		var out []client.CheckResult
		for _, ref := range refs {
			repo, r, _ := protocol.ParseImageRef(ref)
			out = append(out, c.CheckImage(context.Background(), repo, r))
		}
		return out
	}
	for _, r := range check(e1) {
		if !r.OK || r.Blobs == 0 {
			t.Errorf("check at factory1: %+v", r)
		}
	}

	// factory2 comes back and completes by itself.
	e2 = start(t, data2, func(c *config.Config) { c.ConnectionString = cs2; c.Parent.CAFile = root.ca })
	ocitest.Eventually(t, 30*time.Second, "factory2 Staged after its return", func() bool { return site("factory2").State == protocol.StageStaged })
	for _, r := range check(e2) {
		if !r.OK {
			t.Errorf("check at factory2: %+v", r)
		}
	}

	// A blob corrupted on disk is never served: the site quarantines it
	// and fetches it again from its parent, so the check still passes
	// and the file is whole again.
	layer := ocitest.Digest(ocitest.Random(52, 32<<10))
	path := filepath.Join(data2, "blobs", "sha256", layer.Encoded()[:2], layer.Encoded())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good := append([]byte(nil), b...)
	b[100] ^= 0xff
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, r := range check(e2) {
		if !r.OK {
			t.Errorf("check after corruption: got %+v, want the blob fetched again", r)
		}
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, good) {
		t.Errorf("the corrupted blob file was not replaced by a good copy: %v", err)
	}

	// A job with an image the root does not have is refused at once,
	// naming it, and nothing is created.
	resp, body, err := rc.Do(http.MethodPost, "/api/v1/staging", nil, mustJSON(t, protocol.StagingRequest{Name: "release-43", Targets: []string{"factory1"}, Images: []string{"release/web:4.2", "release/web:nope"}}))
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "release/web:nope") || strings.Contains(string(body), "release/web:4.2") {
		t.Fatalf("job with a missing image: %v %s; want 400 naming release/web:nope only", statusOf(resp, err), body)
	}
	if resp, _, err := rc.Do(http.MethodGet, "/api/v1/staging/release-43", nil, nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused job exists: %v, want 404", statusOf(resp, err))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
