package bundle_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/ocitest"
)

// benchBytes is the release size: 64 MiB in CI's benchmark smoke run,
// OUTPOST_BUNDLE_BENCH_MIB=1024 for the figures in docs/benchmarks.md.
func benchBytes() int64 {
	if v, err := strconv.Atoi(os.Getenv("OUTPOST_BUNDLE_BENCH_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 64 << 20
}

const benchLayers = 16

// pushRelease stores an image of benchLayers layers of total size
// straight into r's store; layer changed (-1: none) gets other content.
func pushRelease(b *testing.B, r *registry, tag string, total int64, changed int) bundle.Image {
	b.Helper()
	ctx := context.Background()
	st := r.store()
	put := func(mt string, data []byte) v1.Descriptor {
		d := v1.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
		open := func(context.Context, int64) (io.ReadCloser, bool, error) {
			return io.NopCloser(&sliceReader{b: data}), false, nil
		}
		if err := st.PushBlob(ctx, "apps/big", d, open); err != nil {
			b.Fatal(err)
		}
		return d
	}
	cfg, _ := json.Marshal(v1.Image{Platform: amd64, RootFS: v1.RootFS{Type: "layers"}})
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: put(v1.MediaTypeImageConfig, cfg)}
	for i := range benchLayers {
		seed := uint64(1000 + i)
		if i == changed {
			seed += 500
		}
		m.Layers = append(m.Layers, put(v1.MediaTypeImageLayer, ocitest.Random(seed, int(total/benchLayers))))
	}
	body, _ := json.Marshal(m)
	mm, err := oci.ParseManifest(v1.MediaTypeImageManifest, body)
	if err != nil {
		b.Fatal(err)
	}
	d := digest.FromBytes(body)
	n := graph.Node{Descriptor: v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body))}, Body: body, Manifest: mm}
	if err := st.PushManifest(ctx, "apps/big", n); err != nil {
		b.Fatal(err)
	}
	if err := st.Tag(ctx, "apps/big", n.Descriptor, tag); err != nil {
		b.Fatal(err)
	}
	return bundle.Image{Repository: "apps/big", Tag: tag, Digest: d}
}

type sliceReader struct {
	b   []byte
	off int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// BenchmarkFloor is what any verified copy of the release must cost: read
// it, SHA-256 it, write it to a file and sync.
func BenchmarkFloor(b *testing.B) {
	total := benchBytes()
	data := ocitest.Random(1, int(total/benchLayers))
	b.SetBytes(total)
	for b.Loop() {
		f, err := os.Create(filepath.Join(b.TempDir(), "floor"))
		if err != nil {
			b.Fatal(err)
		}
		for range benchLayers {
			h := sha256.New()
			_, _ = h.Write(data)
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			_ = h.Sum(nil)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}
}

// BenchmarkExport writes a full bundle of the release from a real store.
func BenchmarkExport(b *testing.B) {
	root := newRegistry(b)
	im := pushRelease(b, root, "1", benchBytes(), -1)
	key := newKey(b)
	b.SetBytes(benchBytes())
	for b.Loop() {
		p, _ := export(b, root, key, bundle.ExportRequest{Images: []bundle.Image{im}})
		syncFile(b, p)
	}
}

// BenchmarkImport imports a full bundle of the release into an empty
// store (through the import session, without HTTP).
func BenchmarkImport(b *testing.B) {
	root := newRegistry(b)
	im := pushRelease(b, root, "1", benchBytes(), -1)
	key := newKey(b)
	p, _ := export(b, root, key, bundle.ExportRequest{Images: []bundle.Image{im}})
	b.SetBytes(benchBytes())
	for b.Loop() {
		b.StopTimer()
		site := newRegistry(b)
		b.StartTimer()
		if _, err := importFile(b, site.site("", "s", pub(key)), p, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDelta reports the size of a bundle for a release with one of
// its 16 layers changed, against the site's inventory, beside the full
// bundle's.
func BenchmarkDelta(b *testing.B) {
	root, site := newRegistry(b), newRegistry(b)
	key := newKey(b)
	im1 := pushRelease(b, root, "1", benchBytes(), -1)
	full, _ := export(b, root, key, bundle.ExportRequest{Images: []bundle.Image{im1}})
	if _, err := importFile(b, site.site("", "s", pub(key)), full, nil); err != nil {
		b.Fatal(err)
	}
	im2 := pushRelease(b, root, "2", benchBytes(), 7)
	inv := site.inventory(b, "s")
	for b.Loop() {
		delta, _ := export(b, root, key, bundle.ExportRequest{Images: []bundle.Image{im2}, Inventory: inv})
		fi, _ := os.Stat(full)
		di, _ := os.Stat(delta)
		b.ReportMetric(float64(fi.Size()), "full-bytes")
		b.ReportMetric(float64(di.Size()), "delta-bytes")
		b.ReportMetric(float64(di.Size())/float64(fi.Size()), "delta/full")
	}
}

func syncFile(b *testing.B, p string) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	_ = f.Sync()
	_ = f.Close()
}
