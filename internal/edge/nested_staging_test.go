package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestNestedStaging: root → factory → line1, three levels. A staging job
// created at the root for line1 (whose repositories do not include the
// release, and whose gateway is factory) reaches line1 through factory:
// the job flows down, factory fetches the images from the root, line1
// stages them from factory, and line1's progress flows back up to the
// root, where the job ends Staged; every blob is present at line1.
func TestNestedStaging(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	img := rc.Image(t, "release/app", "1.0", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(700, 64<<10))
	pw := root.token(t, "line-puller", []map[string]any{{"repository": "release/*", "actions": []string{"content/read", "metadata/read"}}})

	// line1 heartbeats once a minute; the job is created before it starts
	// (it learns of the job when it activates at factory), and its
	// completion must reach factory at once, not a minute later. (factory
	// relays it at once too: see controlplane's TestStagingFinished.)
	csFactory := root.connectedRegistry(t, protocol.CreateRequest{Name: "factory", Repositories: []string{"apps/web"}}, "")
	rc.JSON(t, "POST", "/api/v1/connected-registries", protocol.CreateRequest{Name: "line1", Parent: "factory", Repositories: []string{"apps/web"}, ClientTokens: []string{"line-puller"}}, nil)
	rc.JSON(t, "POST", "/api/v1/staging", protocol.StagingRequest{Name: "release-1", Targets: []string{"line1"}, Images: []string{"release/app:1.0"}}, nil)
	factory := startEdge(t, root, t.TempDir(), csFactory)
	var s protocol.Settings
	rc.JSON(t, "POST", "/api/v1/connected-registries/line1/settings", map[string]any{"parentProtocol": "https", "generatePassword": 1}, &s)
	// factory's next refresh brings line1's new password: wait for it
	// (line1 heartbeats once a minute, so a refused first activation
	// would be retried only then).
	passwords := func(n *node) string {
		var tok struct {
			Credentials struct {
				Passwords []struct {
					Name    string `json:"name"`
					Created string `json:"creationTime"`
				} `json:"passwords"`
			} `json:"credentials"`
		}
		resp, b, err := n.admin().Do("GET", "/api/v1/tokens/line1-sync-token", nil, nil)
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(b, &tok) != nil {
			return ""
		}
		return fmt.Sprint(tok.Credentials.Passwords)
	}
	want := passwords(root)
	ocitest.Eventually(t, 30*time.Second, "line1's new sync password at factory", func() bool {
		return want != "" && passwords(factory) == want
	})
	line := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString, c.Parent.CAFile = s.ConnectionString, factory.ca
		c.Sync.HeartbeatInterval = config.Duration(time.Minute)
	})
	site := func() protocol.SiteProgress {
		var j protocol.StagingJob
		rc.JSON(t, "GET", "/api/v1/staging/release-1", nil, &j)
		return j.Sites["line1"]
	}
	ocitest.Eventually(t, 40*time.Second, "line1 Staged at the root", func() bool { return site().State == protocol.StageStaged })
	if p := site(); p.ImagesDone != 1 || p.ImagesTotal != 1 || p.Bytes == 0 {
		t.Errorf("line1's progress at the root: %+v", p)
	}
	c, err := client.New(line.url, "line-puller", pw, line.ca)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.CheckImage(context.Background(), "release/app", "1.0"); !r.OK || r.Blobs == 0 {
		t.Fatalf("check at line1: %+v", r)
	}
	if d, _, _ := line.admin().ManifestDigest("release/app", "1.0"); d != img.Digest {
		t.Fatalf("release/app:1.0 at line1 is %q, want %s", d, img.Digest)
	}
}
