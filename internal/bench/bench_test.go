package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests check what the tool measures and verifies, never how fast:
// every run is bounded by a small operation count.

func tinySpec() Spec {
	return Spec{Repos: 2, Tags: 2, Layers: 2, TotalBytes: 256 << 10, Spread: 1, Seed: 7}
}

func TestLayerSizes(t *testing.T) {
	t.Parallel()
	for _, size := range []string{"small", "default"} {
		t.Run(size, func(t *testing.T) {
			t.Parallel()
			s, err := SpecFor(size, 1)
			if err != nil {
				t.Fatal(err)
			}
			sizes := s.layerSizes()
			if got, want := len(sizes), s.Repos*s.Tags*s.Layers; got != want {
				t.Fatalf("got %d layers, want %d", got, want)
			}
			var sum int64
			for _, n := range sizes {
				if n <= 0 {
					t.Fatalf("got a layer of %d bytes", n)
				}
				sum += n
			}
			if sum != s.TotalBytes {
				t.Errorf("got %d bytes in all, want %d", sum, s.TotalBytes)
			}
		})
	}
}

func TestGenerateIsReproducible(t *testing.T) {
	t.Parallel()
	a, err := Generate(t.TempDir(), tinySpec())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(t.TempDir(), tinySpec())
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Images {
		if a.Images[i].Digest != b.Images[i].Digest {
			t.Errorf("image %d: got digests %s and %s from the same seed", i, a.Images[i].Digest, b.Images[i].Digest)
		}
	}
	if a.Indexes[0].Digest != b.Indexes[0].Digest {
		t.Errorf("index: got different digests from the same seed")
	}
	for _, m := range a.Images {
		for _, bl := range m.Blobs {
			data, err := os.ReadFile(BlobPath(a.Dir, bl.Digest))
			if err != nil {
				t.Fatal(err)
			}
			if got := digestOf(data); got != bl.Digest || int64(len(data)) != bl.Size {
				t.Errorf("blob %s: got digest %s and %d bytes, want %d", bl.Digest, got, len(data), bl.Size)
			}
		}
	}
	loaded, err := LoadDataset(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(loaded.Images), len(a.Images); got != want {
		t.Errorf("loaded %d images, want %d", got, want)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ds := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for i := range ds {
		ds[i] *= time.Millisecond
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"p50", ds, 50, 5},
		{"p99", ds, 99, 10},
		{"p100", ds, 100, 10},
		{"one", ds[:1], 99, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSizeFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"4MiB", 4 << 20, false}, {"512KiB", 512 << 10, false}, {"1GiB", 1 << 30, false},
		{"100", 100, false}, {"0", 0, true}, {"x", 0, true}, {"-1MiB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			var s sizeFlag
			err := s.Set(tc.in)
			if (err != nil) != tc.wantErr || (err == nil && int64(s) != tc.want) {
				t.Errorf("got %d, %v; want %d, error %v", s, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestPushSourceDigests(t *testing.T) {
	t.Parallel()
	src, err := newPushSource(1, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 3 {
		p, d, err := src.blob()
		if err != nil {
			t.Fatal(err)
		}
		whole, _ := io.ReadAll(p.Section(0, p.Size()))
		if got := digestOf(whole); got != d {
			t.Errorf("got digest %s of the content, want %s", got, d)
		}
		var parts []byte
		for from := int64(0); from < p.Size(); from += 30_000 {
			b, _ := io.ReadAll(p.Section(from, min(from+30_000, p.Size())))
			parts = append(parts, b...)
		}
		if !bytes.Equal(parts, whole) {
			t.Errorf("sections do not add up to the blob")
		}
		if seen[d] {
			t.Errorf("digest %s repeated", d)
		}
		seen[d] = true
	}
}

func fileTarget(t *testing.T, ds *Dataset) *Target {
	t.Helper()
	fs, err := NewFileServer(ds.Dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	tg := NewTarget(TargetSendfile, srv.URL, "", "", 0)
	t.Cleanup(tg.close)
	return tg
}

func TestWorkloadsAgainstFileServer(t *testing.T) {
	t.Parallel()
	ds, err := Generate(t.TempDir(), tinySpec())
	if err != nil {
		t.Fatal(err)
	}
	tg := fileTarget(t, ds)
	rc := RunConfig{Concurrency: 3, Duration: 10 * time.Second, MaxOps: 12}
	p := &puller{t: tg, ds: ds, verifyEvery: 1}
	out := run(context.Background(), rc, p.newOp(rc.Concurrency))
	if out.errs != 0 || out.ops != rc.MaxOps || out.bytes == 0 || out.manifests != rc.MaxOps {
		t.Errorf("pull: got %d errors (%v), %d operations, %d bytes, %d manifests; want 0 errors and %d of each",
			out.errs, out.firstErr, out.ops, out.bytes, out.manifests, rc.MaxOps)
	}
	for _, method := range []string{"HEAD", "GET"} {
		out := run(context.Background(), rc, manifestProbe(tg, ds, method, 1))
		if out.errs != 0 || out.ops != rc.MaxOps {
			t.Errorf("%s: got %d errors (%v) in %d operations, want none in %d", method, out.errs, out.firstErr, out.ops, rc.MaxOps)
		}
	}
}

func TestPullCountsCorruptBlobs(t *testing.T) {
	t.Parallel()
	ds, err := Generate(t.TempDir(), tinySpec())
	if err != nil {
		t.Fatal(err)
	}
	path := BlobPath(ds.Dir, ds.Images[0].Blobs[1].Digest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tg := fileTarget(t, ds)
	p := &puller{t: tg, ds: ds, verifyEvery: 1}
	out := run(context.Background(), RunConfig{Concurrency: 1, Duration: 10 * time.Second, MaxOps: 1}, p.newOp(1))
	if out.errs != 1 || !strings.Contains(out.firstErr.Error(), "mismatch") {
		t.Errorf("got %d errors (%v), want 1 content mismatch", out.errs, out.firstErr)
	}
}

// uploadRegistry is a scripted registry that accepts uploads as the spec
// describes and checks offsets and digests.
type uploadRegistry struct {
	mu       sync.Mutex
	sessions map[string][]byte
	next     int
	blobs    int
}

func (u *uploadRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
		u.next++
		id := fmt.Sprintf("s%d", u.next)
		u.sessions[id] = nil
		w.Header().Set("Location", "/v2/x/blobs/uploads/"+id+"?state=1")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPatch:
		id := filepath.Base(r.URL.Path)
		if r.URL.Query().Get("state") != "1" {
			http.Error(w, "lost query state", http.StatusBadRequest)
			return
		}
		var from, to int
		if _, err := fmt.Sscanf(r.Header.Get("Content-Range"), "%d-%d", &from, &to); err != nil || from != len(u.sessions[id]) || to-from+1 != len(body) {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		u.sessions[id] = append(u.sessions[id], body...)
		w.Header().Set("Location", r.URL.Path+"?state=1")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut:
		id := filepath.Base(r.URL.Path)
		data := append(u.sessions[id], body...)
		sum := sha256.Sum256(data)
		if r.URL.Query().Get("digest") != "sha256:"+hex.EncodeToString(sum[:]) {
			http.Error(w, "digest mismatch", http.StatusBadRequest)
			return
		}
		delete(u.sessions, id)
		u.blobs++
		w.WriteHeader(http.StatusCreated)
	default:
		http.NotFound(w, r)
	}
}

func TestPushModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		chunk int64
	}{{"monolithic", 0}, {"chunked", 40_000}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := &uploadRegistry{sessions: map[string][]byte{}}
			srv := httptest.NewServer(reg)
			defer srv.Close()
			tg := NewTarget("fake", srv.URL, "u", "p", 0)
			defer tg.close()
			src, err := newPushSource(3, 100_000)
			if err != nil {
				t.Fatal(err)
			}
			out := run(context.Background(), RunConfig{Concurrency: 2, Duration: 10 * time.Second, MaxOps: 6}, pushOp(tg, src, "x", tc.chunk))
			if out.errs != 0 || reg.blobs != 6 || out.bytes != 6*100_000 {
				t.Errorf("got %d errors (%v), %d blobs stored, %d bytes; want 0, 6, 600000", out.errs, out.firstErr, reg.blobs, out.bytes)
			}
		})
	}
}
