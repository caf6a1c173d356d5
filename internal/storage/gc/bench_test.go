package gc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/gc"
)

// BenchmarkCollect: a collection of a store of 100,000 blob files and
// 10,000 tags (12,000 images of 8 blobs, 10,000 of them tagged, plus 4,000
// lone blobs), in OUTPOST_BENCH_DIR (default a temporary directory; use a
// tmpfs such as /dev/shm to build the store faster). The first iteration
// removes the 2,000 untagged images and the lone blobs (20,000 blob files);
// later ones find nothing. Run it with -benchtime=1x for the first figure.
func BenchmarkCollect(b *testing.B) {
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
	col := gc.New(meta, blobs, nil)
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
	for i := range 12000 {
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
		if i < 10000 {
			tags = []string{fmt.Sprintf("t%d", i)}
		}
		if err := meta.PutManifest(ctx, repo, rec, tags, nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 4000 {
		put(fmt.Sprintf("bench/r%02d", i%50), []byte(fmt.Sprintf("lone %d", i)))
	}
	b.Logf("store of 100,000 blobs and 10,000 tags built in %s", time.Since(start).Round(time.Second))
	time.Sleep(20 * time.Millisecond)
	var rss0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &rss0)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rep, err := col.Run(ctx, gc.Options{GracePeriod: 10 * time.Millisecond})
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
