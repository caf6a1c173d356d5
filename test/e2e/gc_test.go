package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/gc"
)

// gcCLI runs `outpost ARGS -o json` against r and decodes the answer.
func gcCLI(t *testing.T, r *registry, out any, args ...string) {
	t.Helper()
	args = append(args, "--server", r.url, "--ca-file", r.ca, "-o", "json")
	cmd := exec.Command(os.Getenv("OUTPOST_BIN"), args...)
	cmd.Env = append(os.Environ(), "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword, "HOME="+t.TempDir())
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("outpost %v: %v\n%s", args, err, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("outpost %v: %v\n%s", args, err, b)
	}
}

// checkGraph pulls repo:tag and every blob it names, each hashing to its
// digest.
func checkGraph(t *testing.T, c *ocitest.Client, repo, tag string) {
	t.Helper()
	for _, b := range graphOf(t, c, repo, tag) {
		resp, data, err := c.Do(http.MethodGet, "/v2/"+repo+"/blobs/"+string(b.Digest), nil, nil)
		if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(data) != b.Digest {
			t.Errorf("%s:%s blob %s: %v %v", repo, tag, b.Digest, err, resp)
		}
	}
}

// TestGCKilled: a garbage collection of a few thousand unreferenced blobs
// is SIGKILLed at several points (by timing: early in the manifest sweep,
// during blob deletion, near the end); after each restart every tagged
// image pulls complete and every blob file matches its name, and the next
// collection (outpost gc run) completes and leaves nothing unreferenced.
func TestGCKilled(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "outpost.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\ngc:\n  schedule: \"off\"\n  gracePeriod: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProc(t, "--config", cfg, "--log-level", "Warning")
	r := p.start()
	c, err := adminClient(t, r)
	if err != nil {
		t.Fatal(err)
	}
	shared := ocitest.Random(1, 16<<10)
	kept := map[string]v1.Descriptor{}
	for i := range 10 {
		repo := fmt.Sprintf("gc/keep%d", i%3)
		tag := fmt.Sprintf("v%d", i)
		kept[repo+":"+tag] = c.Image(t, repo, tag, amd64, shared, ocitest.Random(uint64(10+i), 8<<10))
	}
	// Garbage: untagged images sharing a layer with kept ones, and lone
	// blobs, 3000 blob files in all.
	for i := range 100 {
		repo := fmt.Sprintf("gc/junk%d", i%4)
		d := c.Image(t, repo, "x", amd64, shared, ocitest.Random(uint64(1000+i), 1024))
		if resp, _, err := c.Do(http.MethodDelete, "/v2/"+repo+"/manifests/"+string(d.Digest), nil, nil); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("delete: %v %v", err, resp)
		}
	}
	for i := range 2800 {
		c.PushBlob(t, fmt.Sprintf("gc/junk%d", i%4), "application/octet-stream", ocitest.Random(uint64(100000+i), 512))
	}
	before := len(storedBlobs(t, p.data))
	time.Sleep(1200 * time.Millisecond) // past the grace period
	for _, delay := range []time.Duration{0, 40 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		go func() {
			// The answer never comes: the server is killed.
			req, _ := http.NewRequest(http.MethodPost, r.url+"/api/v1/gc/runs", nil)
			req.SetBasicAuth("admin", adminPassword)
			if resp, err := r.http.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(delay)
		p.kill()
		left := len(storedBlobs(t, p.data)) // also checks every file's content
		t.Logf("SIGKILL %s into a collection: %d of %d blob files left", delay, left, before)
		r = p.start()
		if c, err = adminClient(t, r); err != nil {
			t.Fatal(err)
		}
		for ref, d := range kept {
			repo, tag := ref[:len("gc/keep0")], ref[len("gc/keep0")+1:]
			if got, _, _ := c.ManifestDigest(repo, tag); got != d.Digest {
				t.Fatalf("after SIGKILL %s: %s resolves to %q, want %s", delay, ref, got, d.Digest)
			}
			checkGraph(t, c, repo, tag)
		}
	}
	var rep gc.Report
	gcCLI(t, r, &rep, "gc", "run")
	if rep.Error != "" || rep.Finished.IsZero() {
		t.Fatalf("the collection after the kills did not complete: %+v", rep)
	}
	var dry gc.Report
	gcCLI(t, r, &dry, "gc", "run", "--dry-run")
	if dry.Manifests+dry.Links+dry.Blobs != 0 {
		t.Errorf("after a complete collection a dry run still finds %d manifests, %d links, %d blobs", dry.Manifests, dry.Links, dry.Blobs)
	}
	want := map[digest.Digest]bool{}
	for ref := range kept {
		for _, b := range graphOf(t, c, ref[:len("gc/keep0")], ref[len("gc/keep0")+1:]) {
			want[b.Digest] = true
		}
	}
	if n := len(storedBlobs(t, p.data)); n != len(want) {
		t.Errorf("%d blob files left, want the %d of the tagged images", n, len(want))
	}
	var st struct {
		Last *gc.Report `json:"last"`
	}
	gcCLI(t, r, &st, "gc", "status")
	if st.Last == nil || !st.Last.Started.Equal(rep.Started) {
		t.Errorf("gc status: last %+v, want the run started %s", st.Last, rep.Started)
	}
	for ref := range kept {
		checkGraph(t, c, ref[:len("gc/keep0")], ref[len("gc/keep0")+1:])
	}
	var u server.StorageUsage
	gcCLI(t, r, &u, "storage", "usage", "--reclaimable")
	if u.Blobs != len(want) || u.ReclaimableBytes == nil || *u.ReclaimableBytes != 0 || u.Volume.Total == 0 || u.Volume.Used == 0 {
		t.Errorf("storage usage: %d blobs (want %d), reclaimable %v (want 0), volume %+v", u.Blobs, len(want), u.ReclaimableBytes, u.Volume)
	}
	var perRepo int
	for _, ru := range u.Repositories {
		perRepo += ru.Blobs
	}
	if perRepo <= u.Blobs {
		t.Errorf("storage usage: %d blobs over repositories, want more than the %d in total (shared blobs count in each)", perRepo, u.Blobs)
	}
}
