package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// benchTags is the number of tags in the benchmark repository, spread
// over benchManifests manifests.
const (
	benchTags      = 10000
	benchManifests = 100
)

// openBenchStore returns a store whose repository "bench/app" holds
// benchTags tags "v00000".."v09999", and the digest tag i points at.
func openBenchStore(b *testing.B) (*Store, func(i int) digest.Digest) {
	b.Helper()
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "metadata.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	digests := make([]digest.Digest, benchManifests)
	per := benchTags / benchManifests
	for m := range benchManifests {
		body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064x","size":%d},"layers":[]}`,
			oci.MediaTypeImageManifest, m, 100+m)
		rec := &storage.ManifestRecord{Digest: digest.FromBytes(body), MediaType: oci.MediaTypeImageManifest, Body: body}
		tags := make([]string, per)
		for i := range tags {
			tags[i] = fmt.Sprintf("v%05d", m*per+i)
		}
		if err := s.PutManifest(ctx, "bench/app", rec, tags, nil); err != nil {
			b.Fatal(err)
		}
		digests[m] = rec.Digest
	}
	return s, func(i int) digest.Digest { return digests[i/per] }
}

// BenchmarkGetManifestByTag measures the lookup behind a manifest GET by
// tag in a repository of 10,000 tags.
func BenchmarkGetManifestByTag(b *testing.B) {
	s, digestOf := openBenchStore(b)
	ctx := context.Background()
	tags := make([]string, benchTags)
	for i := range tags {
		tags[i] = fmt.Sprintf("v%05d", i)
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i = (i + 7919) % benchTags // a stride that visits every tag
			m, err := s.GetManifest(ctx, "bench/app", tags[i])
			if err != nil {
				b.Fatal(err)
			}
			if m.Digest != digestOf(i) {
				b.Fatalf("tag %s: got %s, want %s", tags[i], m.Digest, digestOf(i))
			}
		}
	})
	b.Run("by_digest", func(b *testing.B) {
		b.ReportAllocs()
		d := digestOf(0)
		for b.Loop() {
			if _, err := s.GetManifest(ctx, "bench/app", string(d)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetManifest(ctx, "bench/app", "absent"); err == nil {
				b.Fatal("found a tag that was never put")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i = (i + 7919) % benchTags
				if _, err := s.GetManifest(ctx, "bench/app", tags[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkTags measures one page of a tag listing.
func BenchmarkTags(b *testing.B) {
	s, _ := openBenchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tags, more, err := s.Tags(ctx, "bench/app", "v05000", 100)
		if err != nil || len(tags) != 100 || !more || tags[0] != "v05001" {
			b.Fatalf("got %d tags from %v, more %v, err %v", len(tags), tags[:min(1, len(tags))], more, err)
		}
	}
}
