package edge_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func storageUsage(t *testing.T, n *node) server.StorageUsage {
	t.Helper()
	var u server.StorageUsage
	n.admin().JSON(t, http.MethodGet, "/api/v1/storage", nil, &u)
	return u
}

// TestDiskPressure runs a read-write connected registry on a real 64 MiB
// tmpfs (root only) with watermarks at 60 % and 40 %. It syncs apps/web,
// stages release/api:keep, and pulls eight other release/api images
// through from its parent, the first again last. Above the high
// watermark it evicts the pull-through copies least recently pulled first
// down to the low one, never the synced, staged or most recently pulled
// ones, and says so in GET /api/v1/storage and metrics. Then pushes of
// its own (never evicted) fill the volume: a push that does not fit is
// refused with 507 DENIED naming the volume and the bytes needed, nothing
// partial is visible, pulls go on, and the state reads full.
func TestDiskPressure(t *testing.T) {
	t.Parallel()
	data := storagetest.SmallVolume(t, "64m")
	amd := v1.Platform{OS: "linux", Architecture: "amd64"}
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	const mib = 1 << 20
	web := rc.Image(t, "apps/web", "1", amd, ocitest.Random(700, 4*mib))
	rc.Image(t, "release/api", "keep", amd, ocitest.Random(701, 4*mib))
	var pulled []string
	for i := range 8 {
		tag := "p" + string(rune('1'+i))
		rc.Image(t, "release/api", tag, amd, ocitest.Random(uint64(710+i), 4*mib))
		pulled = append(pulled, tag)
	}
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "tiny-site", Mode: "ReadWrite", Repositories: []string{"apps/web"}}, "")
	site, logs := startLogged(t, data, func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.GC.GracePeriod = config.Duration(200 * time.Millisecond)
		c.Storage.HighWatermark, c.Storage.LowWatermark = 60, 40
		c.Storage.MinFreeBytes = 1 << 20
	})
	sc := site.admin()
	ocitest.Eventually(t, 30*time.Second, "apps/web synced", func() bool { d, _, _ := sc.ManifestDigest("apps/web", "1"); return d == web.Digest })
	rc.JSON(t, http.MethodPost, "/api/v1/staging", protocol.StagingRequest{Name: "release-keep", Targets: []string{"tiny-site"}, Images: []string{"release/api:keep"}}, nil)
	ocitest.Eventually(t, 30*time.Second, "release staged", func() bool {
		var j protocol.StagingJob
		rc.JSON(t, http.MethodGet, "/api/v1/staging/release-keep", nil, &j)
		return j.Sites["tiny-site"].State == protocol.StageStaged
	})
	// p1 is pulled again after each other pull: it is always the most
	// recently pulled, whenever the check runs.
	for _, tag := range pulled {
		for _, ref := range []string{tag, "p1"} {
			if err := pullAll(sc, "release/api", ref); err != nil {
				t.Fatalf("pull-through of release/api:%s: %v", ref, err)
			}
		}
	}
	ocitest.Eventually(t, 60*time.Second, "an eviction", func() bool { return storageUsage(t, site).Pressure.LastEviction != nil })
	u := storageUsage(t, site)
	ev := u.Pressure.LastEviction
	if ev.UsedBefore < 60 || ev.UsedAfter >= 60 || ev.Bytes <= 0 {
		t.Errorf("eviction: %+v, want from above 60%% to below it, bytes reclaimed", ev)
	}
	// Least recently pulled first: p2, p3… (p1 was pulled last).
	for i, tag := range ev.Tags {
		if want := "release/api:p" + string(rune('2'+i)); tag != want {
			t.Errorf("evicted[%d]: got %s, want %s (least recently pulled first)", i, tag, want)
		}
	}
	tags := tagList(t, sc, "release/api")
	for _, keep := range []string{"keep", "p1"} {
		if !slices.Contains(tags, keep) {
			t.Errorf("release/api:%s evicted; tags left %v", keep, tags)
		}
	}
	if m := scrape(t, site); m["outpost_storage_evicted_tags_total"] != float64(len(ev.Tags)) {
		t.Errorf("outpost_storage_evicted_tags_total: got %v, want %d", m["outpost_storage_evicted_tags_total"], len(ev.Tags))
	}
	// An evicted copy comes back on demand.
	if err := pullAll(sc, "release/api", "p2"); err != nil {
		t.Errorf("pull of the evicted release/api:p2: %v", err)
	}

	// Pushes of the site's own fill the volume; the one that does not
	// fit is refused and leaves nothing.
	var refused string
	var refusedLayer []byte
	for i := range 20 {
		layer := ocitest.Random(uint64(800+i), 4*mib)
		status, body := pushImage(t, sc, "site/local", "t"+string(rune('a'+i)), layer)
		if status == http.StatusInsufficientStorage {
			refused, refusedLayer = body, layer
			break
		}
		if status != http.StatusCreated {
			t.Fatalf("push %d: %d %s", i, status, body)
		}
	}
	var eb struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal([]byte(refused), &eb); err != nil || len(eb.Errors) != 1 || eb.Errors[0].Code != "DENIED" ||
		!strings.Contains(eb.Errors[0].Message, data) || !strings.Contains(eb.Errors[0].Message, "4194304 bytes needed") {
		t.Errorf("507 body: %s, want DENIED naming the volume %s and the 4194304 bytes needed", refused, data)
	}
	if resp, _, err := sc.Do(http.MethodHead, "/v2/site/local/blobs/"+string(digest.FromBytes(refusedLayer)), nil, nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the refused blob: got %s, want 404", statusOf(resp, err))
	}
	for _, ref := range [][2]string{{"apps/web", "1"}, {"release/api", "keep"}} {
		if err := pullAll(sc, ref[0], ref[1]); err != nil {
			t.Errorf("pull of %s:%s on the full volume: %v", ref[0], ref[1], err)
		}
	}
	ocitest.Eventually(t, 60*time.Second, "the state to read full", func() bool { return storageUsage(t, site).Pressure.Full })
	if r := storageUsage(t, site).Pressure.Reason; !strings.Contains(r, data) || !strings.Contains(r, "must keep") {
		t.Errorf("full reason: %q, want it to name the volume and what fills it", r)
	}
	if l := logs.String(); !strings.Contains(l, "evicted pull-through copies") {
		t.Errorf("no log line of the eviction:\n%s", l)
	}
}

// pushImage pushes a one-layer image and returns the status and body of
// the first request not answered 201 (or of the manifest's).
func pushImage(t *testing.T, c *ocitest.Client, repo, tag string, layer []byte) (int, string) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","tag":"` + tag + `"}`)
	for _, b := range [][]byte{layer, cfg} {
		resp, body, err := c.Do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+string(digest.FromBytes(b)), http.Header{"Content-Type": {"application/octet-stream"}}, b)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusCreated {
			return resp.StatusCode, string(body)
		}
	}
	m, err := json.Marshal(v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body, err := c.Do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, http.Header{"Content-Type": {v1.MediaTypeImageManifest}}, m)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// pullAll pulls repo:ref with its config and layers, checking digests.
func pullAll(c *ocitest.Client, repo, ref string) error {
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &pullErr{what: "manifest " + ref, status: resp.Status + " " + string(body)}
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	for _, b := range append(m.Layers, m.Config) {
		resp, data, err := c.Do(http.MethodGet, "/v2/"+repo+"/blobs/"+string(b.Digest), nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || digest.FromBytes(data) != b.Digest {
			return &pullErr{what: "blob " + string(b.Digest), status: resp.Status}
		}
	}
	return nil
}

type pullErr struct{ what, status string }

func (e *pullErr) Error() string { return e.what + ": " + e.status }
