package gc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/syncer"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

type site struct {
	dir   string
	blobs *fs.Store
	meta  *bolt.Store
	gc    *gc.Collector
	c     *ocitest.Client
}

// newSite serves a real registry API over real stores on 127.0.0.1.
func newSite(t *testing.T) *site {
	t.Helper()
	dir := t.TempDir()
	blobs, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := bolt.Open(filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	col := gc.New(meta, blobs, nil)
	h, err := registryapi.New(registryapi.Options{Blobs: blobs, Uploads: blobs, Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &site{dir: dir, blobs: blobs, meta: meta, gc: col, c: ocitest.New(t, srv.URL, "", "", "")}
}

func (s *site) blobFiles(t *testing.T) map[digest.Digest]bool {
	t.Helper()
	out := map[digest.Digest]bool{}
	if err := s.blobs.WalkBlobs(context.Background(), func(b fs.BlobFile) error { out[b.Digest] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func status(c *ocitest.Client, method, path string) int {
	resp, _, err := c.Do(method, path, http.Header{"Accept": {v1.MediaTypeImageIndex + ", " + v1.MediaTypeImageManifest}}, nil)
	if err != nil {
		return 0
	}
	return resp.StatusCode
}

// TestCollect: what no tag keeps and is older than the grace period goes
// (an untagged image and its unique layer, a blob pushed alone, a
// quarantined file); tagged images, children of a tagged index, referrers
// of kept images, shared layers and content younger than the grace period
// stay, and every tag still pulls complete.
func TestCollect(t *testing.T) {
	s := newSite(t)
	shared := ocitest.Random(1, 4096)
	v1img := s.c.Image(t, "app", "v1", amd64, shared, ocitest.Random(2, 4096))
	uniq := ocitest.Random(3, 4096)
	old := s.c.Image(t, "app", "old", amd64, shared, uniq)
	if resp, _, err := s.c.Do(http.MethodDelete, "/v2/app/manifests/old", nil, nil); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete tag: %v %v", err, resp)
	}
	child := s.c.Image(t, "app", "", amd64, ocitest.Random(4, 4096))
	s.c.Index(t, "app", "multi", child)
	sig := s.c.Referrer(t, "app", "application/vnd.example.sig", v1img, []byte("signature"))
	alone := s.c.PushBlob(t, "app", "application/octet-stream", ocitest.Random(5, 4096))
	if err := os.MkdirAll(filepath.Join(s.dir, "quarantine"), 0o750); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(s.dir, "quarantine", fmt.Sprintf("sha256-%s-%d", digest.FromString("x").Encoded(), time.Now().UnixNano()))
	if err := os.WriteFile(q, []byte("rotten"), 0o640); err != nil {
		t.Fatal(err)
	}
	const grace = 300 * time.Millisecond
	time.Sleep(grace + 50*time.Millisecond)
	young := s.c.Image(t, "app", "", amd64, ocitest.Random(6, 4096))

	dry, err := s.gc.Run(context.Background(), gc.Options{GracePeriod: grace, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Manifests != 1 || dry.Blobs != 2 || dry.Quarantined != 1 {
		t.Fatalf("dry run: %d manifests, %d blobs, %d quarantined; want 1, 2 (the old image's unique layer and the lone blob), 1", dry.Manifests, dry.Blobs, dry.Quarantined)
	}
	if status(s.c, http.MethodHead, "/v2/app/manifests/"+string(old.Digest)) != http.StatusOK {
		t.Fatal("a dry run removed a manifest")
	}
	rep, err := s.gc.Run(context.Background(), gc.Options{GracePeriod: grace})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Manifests != 1 || rep.Blobs != 2 || rep.Quarantined != 1 || rep.BlobBytes != 2*4096 {
		t.Fatalf("run: %+v", rep)
	}
	files := s.blobFiles(t)
	for _, gone := range []digest.Digest{digest.FromBytes(uniq), alone.Digest} {
		if files[gone] {
			t.Errorf("blob %s is still on disk", gone)
		}
	}
	if status(s.c, http.MethodHead, "/v2/app/manifests/"+string(old.Digest)) != http.StatusNotFound {
		t.Error("the untagged manifest is still served")
	}
	if _, err := os.Stat(q); !os.IsNotExist(err) {
		t.Errorf("quarantined file kept: %v", err)
	}
	for _, d := range []digest.Digest{v1img.Digest, child.Digest, sig.Digest, young.Digest} {
		if status(s.c, http.MethodHead, "/v2/app/manifests/"+string(d)) != http.StatusOK {
			t.Errorf("kept manifest %s is gone", d)
		}
	}
	for _, tag := range []string{"v1", "multi"} {
		checkPulls(t, s.c, "app", tag)
	}
	// A second run finds nothing more (young content is still young).
	if rep, err := s.gc.Run(context.Background(), gc.Options{GracePeriod: grace}); err != nil || rep.Manifests+rep.Blobs+rep.Links != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
}

// checkPulls pulls repo:ref and every manifest and blob below it, checking
// that each hashes to its digest.
func checkPulls(t *testing.T, c *ocitest.Client, repo, ref string) {
	t.Helper()
	if err := pullAll(c, repo, ref); err != nil {
		t.Errorf("%s:%s: %v", repo, ref, err)
	}
}

func pullAll(c *ocitest.Client, repo, ref string) error {
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {v1.MediaTypeImageIndex + ", " + v1.MediaTypeImageManifest}}, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manifest %s: %v %v", ref, err, resp)
	}
	if d, err := digest.Parse(ref); err == nil && d != digest.FromBytes(body) {
		return fmt.Errorf("manifest %s: content does not match", ref)
	}
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	for _, child := range m.Manifests {
		if err := pullAll(c, repo, string(child.Digest)); err != nil {
			return err
		}
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range blobs {
		resp, data, err := c.Do(http.MethodGet, "/v2/"+repo+"/blobs/"+string(b.Digest), nil, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blob %s: %v %v", b.Digest, err, resp)
		}
		if digest.FromBytes(data) != b.Digest {
			return fmt.Errorf("blob %s: content does not match", b.Digest)
		}
	}
	return nil
}

// pusher pushes images without testing.T's Fatal, for goroutines.
type pusher struct{ c *ocitest.Client }

func (p pusher) blob(repo string, data []byte, mountFrom string) (v1.Descriptor, error) {
	d := digest.FromBytes(data)
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: d, Size: int64(len(data))}
	if mountFrom != "" {
		resp, _, err := p.c.Do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?mount="+string(d)+"&from="+mountFrom, nil, nil)
		if err == nil && resp.StatusCode == http.StatusCreated {
			return desc, nil
		}
		// Not mounted (collected meanwhile, or not there): upload.
		if err == nil && resp.StatusCode == http.StatusAccepted {
			if loc := resp.Header.Get("Location"); loc != "" {
				_, _, _ = p.c.Do(http.MethodDelete, loc, nil, nil)
			}
		}
	}
	resp, b, err := p.c.Do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+string(d), http.Header{"Content-Type": {"application/octet-stream"}}, data)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return desc, fmt.Errorf("push blob %s to %s: %v %v %s", d, repo, err, resp, b)
	}
	return desc, nil
}

func (p pusher) image(repo, tag string, layers [][]byte, mountFrom string) (digest.Digest, error) {
	cfgBody, _ := json.Marshal(v1.Image{Platform: amd64, RootFS: v1.RootFS{Type: "layers"}, Author: tag + repo})
	cfg, err := p.blob(repo, cfgBody, "")
	if err != nil {
		return "", err
	}
	cfg.MediaType = v1.MediaTypeImageConfig
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cfg}
	for _, l := range layers {
		d, err := p.blob(repo, l, mountFrom)
		if err != nil {
			return "", err
		}
		m.Layers = append(m.Layers, d)
	}
	body, _ := json.Marshal(m)
	resp, b, err := p.c.Do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, http.Header{"Content-Type": {v1.MediaTypeImageManifest}}, body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("push manifest %s:%s: %v %v %s", repo, tag, err, resp, b)
	}
	return digest.FromBytes(body), nil
}

// TestCollectWhilePushing runs collections back to back while clients
// push images whose layers are shared with images being deleted (some
// mounted from another repository), while uploads are mid-way, and while
// a sync engine copies into the same stores a parent's moving tags whose
// layers are shared with the deleted images. Every push and sync run
// succeeds, afterwards every tag (the synced ones at the parent's digest)
// pulls complete, and once the grace
// period has passed a collection leaves nothing unreferenced: a dry run
// finds nothing more and every blob file is part of a tagged image.
func TestCollectWhilePushing(t *testing.T) {
	s := newSite(t)
	parent := newSite(t)
	const grace = 1500 * time.Millisecond
	pool := make([][]byte, 6)
	for i := range pool {
		pool[i] = ocitest.Random(uint64(100+i), 8192)
	}
	ctx, stop := context.WithCancel(context.Background())
	var runs atomic.Int64
	var wg, pushers sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := s.gc.Run(ctx, gc.Options{GracePeriod: grace}); err != nil && ctx.Err() == nil {
				t.Errorf("gc: %v", err)
			}
			runs.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var mu sync.Mutex
	tags := map[string]digest.Digest{} // repo:tag -> digest, of live tags
	deadline := time.Now().Add(4 * time.Second)
	// A sync from a parent into the same stores: the parent moves its
	// tags, with layers shared with what the pushers delete, and the
	// engine copies them, while collections run.
	src, err := syncer.NewParent(syncer.ParentOptions{URL: parent.c.Base})
	if err != nil {
		t.Fatal(err)
	}
	engine := syncer.NewEngine(syncer.Options{Parent: src, Blobs: s.blobs, Uploads: s.blobs, Metadata: s.meta})
	engine.SetScope([]string{"mirror/app"})
	var syncs atomic.Int64
	pushers.Add(1)
	go func() {
		defer pushers.Done()
		pp := pusher{c: parent.c}
		for i := 0; time.Now().Before(deadline) && i < 200; i++ {
			layers := [][]byte{pool[i%len(pool)], ocitest.Random(uint64(9_000_000+i), 2048)}
			if _, err := pp.image("mirror/app", fmt.Sprintf("m%d", i%5), layers, ""); err != nil {
				t.Errorf("push to the parent: %v", err)
				return
			}
			if res := engine.Run(ctx, "test"); res.Err != nil {
				t.Errorf("sync during collections: %v", res.Err)
				return
			}
			syncs.Add(1)
		}
	}()
	for w := range 4 {
		pushers.Add(1)
		go func() {
			defer pushers.Done()
			p := pusher{c: s.c}
			repo := fmt.Sprintf("team/r%d", w)
			other := fmt.Sprintf("team/r%d", (w+1)%4)
			for i := 0; time.Now().Before(deadline) && i < 400; i++ {
				tag := fmt.Sprintf("t%d", i)
				layers := [][]byte{pool[(w+i)%len(pool)], pool[(w+2*i+1)%len(pool)], ocitest.Random(uint64(w*100000+i), 2048)}
				mount := ""
				if i%3 == 0 {
					mount = other
				}
				d, err := p.image(repo, tag, layers, mount)
				if err != nil {
					t.Errorf("push: %v", err)
					return
				}
				mu.Lock()
				tags[repo+":"+tag] = d
				mu.Unlock()
				if i%2 == 1 {
					// Delete the previous image: its shared layers stay
					// in use by others, its unique layer becomes garbage.
					prev := fmt.Sprintf("t%d", i-1)
					mu.Lock()
					pd := tags[repo+":"+prev]
					delete(tags, repo+":"+prev)
					mu.Unlock()
					if resp, _, err := s.c.Do(http.MethodDelete, "/v2/"+repo+"/manifests/"+string(pd), nil, nil); err != nil || resp.StatusCode != http.StatusAccepted {
						t.Errorf("delete %s@%s: %v %v", repo, pd, err, resp)
						return
					}
				}
				if i%10 == 0 {
					// An upload left mid-way, finished a little later.
					resp, _, err := s.c.Do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
					if err != nil || resp.StatusCode != http.StatusAccepted {
						t.Errorf("start upload: %v %v", err, resp)
						return
					}
					loc := resp.Header.Get("Location")
					data := ocitest.Random(uint64(7_000_000+w*1000+i), 4096)
					if resp, _, err := s.c.Do(http.MethodPatch, loc, http.Header{"Content-Type": {"application/octet-stream"}}, data[:2048]); err != nil || resp.StatusCode != http.StatusAccepted {
						t.Errorf("patch upload: %v %v", err, resp)
						return
					}
					time.Sleep(20 * time.Millisecond)
					if u := resp.Header.Get("Location"); u != "" {
						loc = u
					}
					sep := "?"
					if strings.Contains(loc, "?") {
						sep = "&"
					}
					if resp, b, err := s.c.Do(http.MethodPut, loc+sep+"digest="+string(digest.FromBytes(data)), http.Header{"Content-Type": {"application/octet-stream"}}, data[2048:]); err != nil || resp.StatusCode != http.StatusCreated {
						t.Errorf("finish upload: %v %v %s", err, resp, b)
						return
					}
				}
			}
		}()
	}
	pushers.Wait() // each ends by the deadline or after 400 images
	stop()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d collections ran while %d tags were pushed and kept and %d sync runs copied the parent's", runs.Load(), len(tags), syncs.Load())
	if runs.Load() < 3 || syncs.Load() < 3 {
		t.Fatalf("only %d collections and %d sync runs ran during the pushes; the test proves little", runs.Load(), syncs.Load())
	}
	// What the last sync run copied is what the parent tags, complete.
	for i := range 5 {
		tag := fmt.Sprintf("m%d", i)
		want, _, err := parent.c.ManifestDigest("mirror/app", tag)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := s.c.ManifestDigest("mirror/app", tag); got != want {
			t.Errorf("synced mirror/app:%s resolves to %q, want the parent's %s", tag, got, want)
		}
		tags["mirror/app:"+tag] = want
	}
	for ref, d := range tags {
		repo, tag, _ := strings.Cut(ref, ":")
		if got, _, _ := s.c.ManifestDigest(repo, tag); got != d {
			t.Errorf("%s resolves to %q, want %s", ref, got, d)
		}
		checkPulls(t, s.c, repo, tag)
	}
	time.Sleep(grace + 100*time.Millisecond)
	if _, err := s.gc.Run(context.Background(), gc.Options{GracePeriod: grace}); err != nil {
		t.Fatal(err)
	}
	dry, err := s.gc.Run(context.Background(), gc.Options{GracePeriod: time.Nanosecond, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Manifests+dry.Links+dry.Blobs != 0 {
		t.Errorf("after a collection past the grace period, %d manifests, %d links and %d blobs are still unreferenced", dry.Manifests, dry.Links, dry.Blobs)
	}
	for ref := range tags {
		repo, tag, _ := strings.Cut(ref, ":")
		checkPulls(t, s.c, repo, tag)
	}
}
