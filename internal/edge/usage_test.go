package edge_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/server"
)

// TestUsageVisible: a connected registry's heartbeat carries its volume,
// which the root's `connected-registry list -o table` shows as DISK
// (used/total); `outpost status` at the site shows its sync state, then
// bytes per repository, the total, the volume's used, total and free
// bytes and, with --reclaimable, what a collection would reclaim. Not
// parallel: the CLI reads its credentials from the environment.
func TestUsageVisible(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("OUTPOST_USERNAME", "admin")
	t.Setenv("OUTPOST_PASSWORD", adminPW)
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	web := rc.Image(t, "apps/web", "1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(600, 64<<10))
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "usage-site", Repositories: []string{"apps/web"}}, "")
	site := startEdge(t, root, t.TempDir(), cs)
	ocitest.Eventually(t, 30*time.Second, "apps/web synced", func() bool {
		d, _, _ := site.admin().ManifestDigest("apps/web", "1")
		return d == web.Digest
	})
	ocitest.Eventually(t, 30*time.Second, "a heartbeat with the volume", func() bool {
		v := root.crStatus(t, "usage-site").Volume
		return v != nil && v.TotalBytes > 0 && v.UsedBytes > 0 && v.UsedBytes+v.FreeBytes <= v.TotalBytes
	})
	out, err := outpostCLI(root, "connected-registry", "list", "-o", "table")
	if err != nil {
		t.Fatalf("connected-registry list: %v\n%s", err, out)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasSuffix(strings.TrimSpace(lines[0]), "DISK") {
		t.Errorf("no DISK column:\n%s", out)
	}
	if i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "usage-site") }); i < 0 ||
		!regexp.MustCompile(`[0-9.]+[KMGTP]?i?B/[0-9.]+[KMGTP]?i?B \([0-9]+%\)`).MatchString(lines[i]) {
		t.Errorf("the site's row has no used/total:\n%s", out)
	}

	out, err = outpostCLI(site, "status", "--reclaimable", "-o", "table")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"CONNECTION STATE", "apps/web", "TOTAL (shared blobs once)", "VOLUME used/total", "VOLUME free", "RECLAIMABLE"} {
		if !strings.Contains(out, want) {
			t.Errorf("status -o table lacks %q:\n%s", want, out)
		}
	}
	out, err = outpostCLI(site, "status", "-o", "json")
	var st struct {
		Role    string `json:"role"`
		Storage struct {
			Repositories []struct {
				Repository string `json:"repository"`
				BlobBytes  int64  `json:"blobBytes"`
			} `json:"repositories"`
			Volume struct{ Total, Free, Used uint64 } `json:"volume"`
		} `json:"storage"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(st.Storage.Repositories) != 1 || st.Storage.Repositories[0].BlobBytes < 64<<10 || st.Storage.Volume.Total == 0 || st.Storage.Volume.Free == 0 {
		t.Errorf("status -o json storage: %+v", st.Storage)
	}
}

// TestCollectAfterDeletions: once deletions pause, a dry collection runs
// and, finding at least gc.reclaimableThreshold bytes, a real one follows
// (trigger "deletions"); below the threshold nothing is collected.
func TestCollectAfterDeletions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		threshold config.ByteSize
		collected bool
	}{{"above the threshold", 32 << 10, true}, {"below it", 1 << 30, false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := start(t, t.TempDir(), func(cfg *config.Config) {
				cfg.GC.GracePeriod = config.Duration(300 * time.Millisecond)
				cfg.GC.ReclaimableThreshold = &c.threshold
			})
			ac := n.admin()
			img := ac.Image(t, "apps/gone", "1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(650, 64<<10))
			time.Sleep(400 * time.Millisecond)
			resp, _, err := ac.Do(http.MethodDelete, "/v2/apps/gone/manifests/"+string(img.Digest), nil, nil)
			if err != nil || resp.StatusCode != http.StatusAccepted {
				t.Fatalf("delete: %s", statusOf(resp, err))
			}
			var st server.GCStatus
			collected := func() bool {
				ac.JSON(t, http.MethodGet, "/api/v1/gc", nil, &st)
				return st.Last != nil && st.Last.Trigger == "deletions"
			}
			if c.collected {
				ocitest.Eventually(t, 20*time.Second, "a collection after the deletion", collected)
				if st.Last.Blobs < 1 || st.Last.BlobBytes < 64<<10 {
					t.Errorf("collection after the deletion: %+v, want the deleted layer reclaimed", st.Last)
				}
				return
			}
			time.Sleep(2 * time.Second)
			if collected() {
				t.Errorf("a collection ran below the threshold: %+v", st.Last)
			}
			if m := scrape(t, n); m["outpost_storage_reclaimable_bytes"] < 64<<10 {
				t.Errorf("outpost_storage_reclaimable_bytes: got %v, want the dry run's figure (at least the layer)", m["outpost_storage_reclaimable_bytes"])
			}
		})
	}
}
