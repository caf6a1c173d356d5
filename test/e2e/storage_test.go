package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func blobFile(data string, d digest.Digest) string {
	return filepath.Join(data, "blobs", "sha256", d.Encoded()[:2], d.Encoded())
}

// outpostCmd runs the outpost binary with args and returns its output and
// exit error.
func outpostCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, os.Getenv("OUTPOST_BIN"), args...).CombinedOutput()
	return string(out), err
}

// wantBlobUnknown checks that GET, a ranged GET and HEAD of blob d answer
// 404 BLOB_UNKNOWN, never its bytes.
func wantBlobUnknown(t *testing.T, c *ocitest.Client, repo string, d digest.Digest) {
	t.Helper()
	for _, hdr := range []http.Header{nil, {"Range": {"bytes=0-99"}}} {
		resp, b, err := c.Do(http.MethodGet, "/v2/"+repo+"/blobs/"+string(d), hdr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"BLOB_UNKNOWN"`) {
			t.Errorf("GET %s (Range %q): %s %d bytes, want 404 BLOB_UNKNOWN", d, hdr.Get("Range"), resp.Status, len(b))
		}
	}
	resp, _, err := c.Do(http.MethodHead, "/v2/"+repo+"/blobs/"+string(d), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD %s: %s, want 404", d, resp.Status)
	}
}

// Ways a blob file is damaged.
const (
	truncate0    = "truncated to 0"
	truncate1000 = "truncated to 1000"
	flipByte     = "one byte flipped"
)

// damageFile damages the file at p in one of the ways above.
func damageFile(t *testing.T, p, how string) {
	t.Helper()
	switch how {
	case truncate0, truncate1000:
		n := int64(0)
		if how == truncate1000 {
			n = 1000
		}
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
	case flipByte:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/3] ^= 0x10
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptBlobsNeverServed damages blob files of the built binary's
// data directory while it is stopped (truncated to 0 and to 1000 bytes,
// one byte flipped): after the restart none is served, each is moved to
// quarantine with an Error in the log, and `outpost storage verify` finds
// a blob damaged later.
func TestCorruptBlobsNeverServed(t *testing.T) {
	t.Parallel()
	p := newProc(t)
	r := p.start()
	c, _ := adminClient(t, r)
	layers := [][]byte{ocitest.Random(1, 8192), ocitest.Random(2, 8192), ocitest.Random(3, 8192)}
	img := c.Image(t, "team/app", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layers...)
	var m v1.Manifest
	_, body, _ := c.Do(http.MethodGet, "/v2/team/app/manifests/v1", http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 3 {
		t.Fatalf("manifest of %s: %v %s", img.Digest, err, body)
	}
	if err := checkTag(c, "team/app", "v1", img.Digest); err != nil {
		t.Fatal(err)
	}
	p.stop()
	var paths []string
	for i, l := range m.Layers {
		paths = append(paths, blobFile(p.data, l.Digest))
		damageFile(t, paths[i], []string{truncate0, truncate1000, flipByte}[i])
	}
	r = p.start()
	c, _ = adminClient(t, r)
	for _, l := range m.Layers {
		wantBlobUnknown(t, c, "team/app", l.Digest)
	}
	for _, path := range paths {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still in the blob store: %v", path, err)
		}
	}
	q, _ := os.ReadDir(filepath.Join(p.data, "quarantine"))
	if len(q) != 3 {
		t.Errorf("quarantine holds %d files, want 3", len(q))
	}
	logs := p.logText()
	for _, l := range m.Layers {
		if !regexp.MustCompile(`"level":"ERROR".*"digest":"` + string(l.Digest) + `".*"path":"` + regexp.QuoteMeta(blobFile(p.data, l.Digest)) + `"`).MatchString(logs) {
			t.Errorf("no Error naming %s and its path in the log", l.Digest)
		}
	}
	if got := metricValue(t, c, `outpost_storage_blobs_corrupt_total{trigger="read"}`); got != 3 {
		t.Errorf(`outpost_storage_blobs_corrupt_total{trigger="read"}: %v, want 3`, got)
	}

	// The config blob rots while the registry is stopped; the CLI finds it.
	p.stop()
	damageFile(t, blobFile(p.data, m.Config.Digest), flipByte)
	out, err := outpostCmd(t, "storage", "verify", "--data", p.data)
	if err == nil || !strings.Contains(out, "CORRUPT  "+string(m.Config.Digest)) || !strings.Contains(out, "verified 1 blobs") {
		t.Errorf("storage verify: %v\n%s\nwant a non-zero exit naming %s, the 1 blob left (the layers are quarantined)", err, out, m.Config.Digest)
	}
	out, err = outpostCmd(t, "storage", "verify", "--data", p.data, "-o", "json")
	if err != nil || !strings.Contains(out, `"blobs": 0`) {
		t.Errorf("second storage verify: %v\n%s\nwant success over no blob left", err, out)
	}
	r = p.start()
	c, _ = adminClient(t, r)
	wantBlobUnknown(t, c, "team/app", m.Config.Digest)
	// Pushing the content again makes it whole.
	c.Image(t, "team/app", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, layers...)
	if err := checkTag(c, "team/app", "v1", img.Digest); err != nil {
		t.Errorf("after pushing again: %v", err)
	}
}

// metricValue reads one series from /metrics (-1 when absent).
func metricValue(t *testing.T, c *ocitest.Client, series string) float64 {
	t.Helper()
	_, b, err := c.Do(http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestEdgeRefetchesCorruptBlob: at a connected registry (generic parent)
// a blob found corrupt on its first serve is fetched again from the
// parent and served intact, and `storage verify --repair-from-parent`
// repairs one found by the scrub.
func TestEdgeRefetchesCorruptBlob(t *testing.T) {
	t.Parallel()
	parent := startOutpost(t)
	pc := ocitest.New(t, parent.url, "admin", adminPassword, parent.ca)
	layers := [][]byte{ocitest.Random(11, 20000), ocitest.Random(12, 30000)}
	img := pc.Image(t, "team/app", "v1", v1.Platform{OS: "linux", Architecture: "arm64"}, layers...)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(adminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parentArgs := []string{"--parent", parent.url, "--parent-username", "admin", "--parent-password-file", pwFile,
		"--parent-ca-file", parent.ca, "--repository", "team/*"}
	edge := newProc(t, parentArgs...)
	er := edge.start()
	ec, _ := adminClient(t, er)
	eventually(t, 60*time.Second, "the image at the edge", func() bool { return checkTag(ec, "team/app", "v1", img.Digest) == nil })
	edge.stop()

	l0, l1 := digest.FromBytes(layers[0]), digest.FromBytes(layers[1])
	damageFile(t, blobFile(edge.data, l0), flipByte)
	er = edge.start()
	ec, _ = adminClient(t, er)
	if err := fetchVerified(ec, "team/app", v1.Descriptor{Digest: l0, Size: int64(len(layers[0]))}); err != nil {
		t.Errorf("pull of a blob found corrupt at the edge: %v, want it fetched again from the parent", err)
	}
	if q, _ := os.ReadDir(filepath.Join(edge.data, "quarantine")); len(q) != 1 {
		t.Errorf("edge quarantine holds %d files, want 1", len(q))
	}
	edge.stop()

	damageFile(t, blobFile(edge.data, l1), truncate1000)
	args := append([]string{"storage", "verify", "--data", edge.data, "--repair-from-parent"}, parentArgs...)
	out, err := outpostCmd(t, args...)
	if err != nil || !strings.Contains(out, "CORRUPT  "+string(l1)) || !strings.Contains(out, "fetched again from the parent") {
		t.Errorf("storage verify --repair-from-parent: %v\n%s", err, out)
	}
	stored := storedBlobs(t, edge.data) // fails on any file not matching its name
	if !stored[l0] || !stored[l1] {
		t.Errorf("after repair the edge holds %v, want both layers", stored)
	}
}

// TestDiskFull runs the binary on a real 24 MiB tmpfs (root only): a push
// beyond the volume answers 507 with an OCI body saying it is full,
// /readyz stays 200 and says writes are degraded, pulls go on, the free
// space gauge follows the volume, and freeing space clears the state.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	requireE2E(t)
	vol := storagetest.SmallVolume(t, "24m")
	cfgFile := filepath.Join(t.TempDir(), "outpost.yaml")
	if err := os.WriteFile(cfgFile, []byte("version: 1\nstorage:\n  minFreeBytes: 1MiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProc(t, "--config", cfgFile)
	p.data = filepath.Join(vol, "data")
	for i, a := range p.args {
		if a == "--data" {
			p.args[i+1] = p.data
		}
	}
	r := p.start()
	c, _ := adminClient(t, r)
	small := c.Image(t, "team/app", "v1", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(21, 4096))
	filler := filepath.Join(vol, "filler")
	if err := os.WriteFile(filler, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	big := ocitest.Random(22, 32<<20)
	resp, body, err := c.Do(http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+string(digest.FromBytes(big)), nil, big)
	if err != nil {
		t.Fatal(err)
	}
	var eb struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if resp.StatusCode != http.StatusInsufficientStorage || json.Unmarshal(body, &eb) != nil || len(eb.Errors) != 1 ||
		!strings.Contains(eb.Errors[0].Message, "data volume is full") {
		t.Fatalf("push beyond the volume: %s %s, want 507 with an OCI error saying the data volume is full", resp.Status, body)
	}
	resp, body, _ = c.Do(http.MethodGet, "/readyz", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "writes degraded") {
		t.Errorf("/readyz on a full volume: %s %q, want 200 saying writes are degraded", resp.Status, body)
	}
	if err := checkTag(c, "team/app", "v1", small.Digest); err != nil {
		t.Errorf("pull on a full volume: %v", err)
	}
	if got := metricValue(t, c, "outpost_storage_writes_degraded"); got != 1 {
		t.Errorf("outpost_storage_writes_degraded: %v, want 1", got)
	}
	before := metricValue(t, c, "outpost_storage_free_bytes")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := metricValue(t, c, "outpost_storage_free_bytes")
	if d := after - before; d < 4<<20-(64<<10) || d > 4<<20+(64<<10) {
		t.Errorf("outpost_storage_free_bytes grew by %v after a 4 MiB file was removed (%v -> %v)", d, before, after)
	}
	resp, body, _ = c.Do(http.MethodGet, "/readyz", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/readyz after space was freed: %s %q, want 200 ok", resp.Status, body)
	}
	if p.logText() == "" || !strings.Contains(p.logText(), "the data volume is full") {
		t.Errorf("no log line saying the data volume is full")
	}
}
