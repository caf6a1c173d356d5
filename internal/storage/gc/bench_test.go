package gc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/gc"
)

// buildStore builds, in OUTPOST_BENCH_DIR (default a temporary
// directory), a store of images of 8 blobs in 50 repositories, the first
// tagged of them tagged, plus lone blobs, and says how long it took.
func buildStore(b *testing.B, images, tagged, lone int) (*fs.Store, *bolt.Store) {
	b.Helper()
	dir := b.TempDir()
	if d := os.Getenv("OUTPOST_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "gcbench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	ctx := context.Background()
	blobs, err := fs.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	meta, err := bolt.Open(filepath.Join(dir, "metadata.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = meta.Close() })
	put := func(repo string, content []byte) digest.Digest {
		id, err := blobs.StartUpload(ctx, repo)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := blobs.AppendUpload(ctx, repo, id, 0, bytes.NewReader(content)); err != nil {
			b.Fatal(err)
		}
		d := digest.FromBytes(content)
		if _, err := blobs.CommitUpload(ctx, repo, id, d); err != nil {
			b.Fatal(err)
		}
		if err := meta.LinkBlob(ctx, repo, d, int64(len(content))); err != nil {
			b.Fatal(err)
		}
		return d
	}
	start := time.Now()
	var buf [16]byte
	for i := range images {
		repo := fmt.Sprintf("bench/r%02d", i%50)
		rec := &storage.ManifestRecord{MediaType: "application/vnd.oci.image.manifest.v1+json"}
		for j := range 8 {
			binary.BigEndian.PutUint64(buf[:8], uint64(i))
			binary.BigEndian.PutUint64(buf[8:], uint64(j))
			rec.Blobs = append(rec.Blobs, put(repo, buf[:]))
		}
		rec.Body = []byte(fmt.Sprintf(`{"schemaVersion":2,"n":%d}`, i))
		rec.Digest = digest.FromBytes(rec.Body)
		var tags []string
		if i < tagged {
			tags = []string{fmt.Sprintf("t%d", i)}
		}
		if err := meta.PutManifest(ctx, repo, rec, tags, nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := range lone {
		put(fmt.Sprintf("bench/r%02d", i%50), []byte(fmt.Sprintf("lone %d", i)))
	}
	b.Logf("store of %d blobs and %d tags built in %s", images*8+lone, tagged, time.Since(start).Round(time.Second))
	return blobs, meta
}

// BenchmarkCollect: a collection of a store of 100,000 blob files and
// 10,000 tags (12,000 images of 8 blobs, 10,000 of them tagged, plus 4,000
// lone blobs), in OUTPOST_BENCH_DIR (default a temporary directory; use a
// tmpfs such as /dev/shm to build the store faster). The first iteration
// removes the 2,000 untagged images and the lone blobs (20,000 blob files);
// later ones find nothing. Run it with -benchtime=1x for the first figure.
func BenchmarkCollect(b *testing.B) {
	ctx := context.Background()
	blobs, meta := buildStore(b, 12000, 10000, 4000)
	col := gc.New(meta, blobs, nil)
	time.Sleep(20 * time.Millisecond)
	var rss0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &rss0)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rep, err := col.Run(ctx, gc.Options{GracePeriod: 10 * time.Millisecond, Duty: 1})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 && (rep.Manifests != 2000 || rep.Blobs != 20000) {
			b.Fatalf("first run removed %d manifests and %d blobs, want 2000 and 20000", rep.Manifests, rep.Blobs)
		}
		if i == 0 {
			b.ReportMetric(float64(rep.Blobs), "blobs-removed")
		}
	}
	b.StopTimer()
	var rss syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &rss)
	b.ReportMetric(float64(rss.Maxrss)/1024, "peak-RSS-MiB")
}

// BenchmarkPullDuringCollect: the p99 latency of pulls (a manifest by tag
// and one of its blobs, 4 clients over HTTP on 127.0.0.1) from a store of
// 24,000 blob files and 2,500 tags, for 5 s without a collection and 5 s
// with collections running back to back (the first removes 500 untagged
// images and 1,000 lone blobs, later ones mark everything again). Issue
// 17's goal: p99 during at most 1.5x p99 without.
func BenchmarkPullDuringCollect(b *testing.B) {
	ctx := context.Background()
	blobs, meta := buildStore(b, 3000, 2500, 1000)
	col := gc.New(meta, blobs, nil)
	h, err := registryapi.New(registryapi.Options{Blobs: blobs, Uploads: blobs, Metadata: meta})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	get := func(path string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	pull := func(i int) error {
		repo := fmt.Sprintf("bench/r%02d", i%50)
		resp, _, err := get(fmt.Sprintf("/v2/%s/manifests/t%d", repo, i))
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("manifest t%d: %v %v", i, err, resp)
		}
		// The record names the blobs (the benchmark's bodies do not).
		rec, err := meta.GetManifest(ctx, repo, fmt.Sprintf("t%d", i))
		if err != nil {
			return err
		}
		resp, _, err = get("/v2/" + repo + "/blobs/" + string(rec.Blobs[i%8]))
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blob of t%d: %v %v", i, err, resp)
		}
		return nil
	}
	measure := func(d time.Duration) (p99 time.Duration, n int) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; time.Now().Before(end); k += 4 {
					t0 := time.Now()
					if err := pull((k * 7919) % 2500); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		if len(lat) == 0 {
			return 0, 0
		}
		return lat[len(lat)*99/100], len(lat)
	}
	time.Sleep(20 * time.Millisecond)
	b.ResetTimer()
	for b.Loop() {
		base, n0 := measure(5 * time.Second)
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			runs := 0
			for {
				select {
				case <-stop:
					done <- runs
					return
				default:
				}
				if _, err := col.Run(ctx, gc.Options{GracePeriod: 10 * time.Millisecond}); err != nil {
					b.Error(err)
				}
				runs++
			}
		}()
		during, n1 := measure(5 * time.Second)
		close(stop)
		runs := <-done
		b.ReportMetric(float64(base.Microseconds())/1000, "p99-ms-without")
		b.ReportMetric(float64(during.Microseconds())/1000, "p99-ms-during")
		b.ReportMetric(float64(during)/float64(base), "ratio")
		b.ReportMetric(float64(runs), "collections")
		b.Logf("pulls: %d without, %d during %d collections", n0, n1, runs)
	}
}
