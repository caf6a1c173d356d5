package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
)

// TestGroupCommit writes from many goroutines at once, some of them
// updates that must fail: each caller gets its own result, every
// successful write is stored, and the change feed has one entry per tag
// in one gapless sequence.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	const writers, each = 32, 8
	errs := make([]error, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := w*each + i
				blob := digest.FromString(fmt.Sprintf("blob %d", n))
				if n%5 != 0 { // every fifth manifest names a blob never linked
					if err := s.LinkBlob(ctx, "repo", blob, 10); err != nil {
						errs[n] = fmt.Errorf("link: %w", err)
						continue
					}
				}
				body := fmt.Sprintf(`{"n":%d}`, n)
				rec := &storage.ManifestRecord{Digest: digest.FromString(body), MediaType: "application/vnd.oci.image.manifest.v1+json",
					Blobs: []digest.Digest{blob}, Body: []byte(body)}
				errs[n] = s.PutManifest(ctx, "repo", rec, []string{fmt.Sprintf("t%d", n)}, nil)
			}
		}()
	}
	wg.Wait()
	puts := 0
	for n, err := range errs {
		tag := fmt.Sprintf("t%d", n)
		_, getErr := s.GetManifest(ctx, "repo", tag)
		if n%5 == 0 {
			if !errors.Is(err, storage.ErrManifestBlobUnknown) {
				t.Errorf("manifest %d names an unknown blob: error %v, want ErrManifestBlobUnknown", n, err)
			}
			if getErr == nil {
				t.Errorf("tag %s of a refused manifest exists", tag)
			}
			continue
		}
		if err != nil {
			t.Errorf("manifest %d: %v", n, err)
		}
		if getErr != nil {
			t.Errorf("tag %s: %v", tag, getErr)
		}
		puts++
	}
	changes, _, err := s.Changes(ctx, "repo", 0, 10*writers*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != puts {
		t.Fatalf("change feed has %d entries, want %d", len(changes), puts)
	}
	for i, c := range changes {
		if c.Seq != uint64(i+1) {
			t.Fatalf("change %d has sequence %d: the feed has a gap or a duplicate", i, c.Seq)
		}
	}
}

// BenchmarkConcurrentPut measures manifest writes from 32 goroutines,
// which the group commit turns into a few transactions per fsync.
func BenchmarkConcurrentPut(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "metadata.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	b.SetParallelism(16)
	var n sync.Mutex
	i := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			i++
			k := i
			n.Unlock()
			body := fmt.Sprintf(`{"n":%d}`, k)
			rec := &storage.ManifestRecord{Digest: digest.FromString(body), MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte(body)}
			if err := s.PutManifest(ctx, "repo", rec, []string{fmt.Sprintf("t%d", k)}, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
