package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/memory"
)

// store is a local store in memory (it passes the same conformance
// suites as the fs and bolt stores).
type store struct {
	blobs *memory.Blobs
	meta  storage.Metadata
}

func newStore(*testing.T) store {
	s := memory.New()
	return store{blobs: s.Blobs, meta: s.Metadata}
}

func (s store) target() *graph.Store {
	return &graph.Store{Blobs: s.blobs, Uploads: s.blobs, Metadata: s.meta}
}

// parent is the registry API over a real store, served on loopback: the
// source of the copies.
type parent struct {
	store
	url  string
	push *ocitest.Client
}

func newParent(t *testing.T) *parent {
	t.Helper()
	s := newStore(t)
	h, err := registryapi.New(registryapi.Options{Blobs: s.blobs, Uploads: s.blobs, Metadata: s.meta})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &parent{store: s, url: srv.URL, push: ocitest.New(t, srv.URL, "", "", "")}
}

// source reads from the parent at addr (its own address, or a fault
// proxy's in front of it).
func source(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(addr, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// retry tries fn up to 4 times while the failure is a transfer worth
// retrying.
func retry(_ context.Context, _ string, fn func() error) error {
	var err error
	for range 4 {
		if err = fn(); err == nil || !(errors.Is(err, graph.ErrDigest) || errors.Is(err, graph.ErrInterrupted)) {
			return err
		}
	}
	return err
}

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

// multiPlatform pushes an index of two images to repo:tag, with a
// signature on the index and an SBOM on the amd64 image; it returns the
// index and every blob of the graph.
func multiPlatform(t *testing.T, p *parent, repo, tag string, seed uint64, layerSize int) (v1.Descriptor, [][]byte) {
	t.Helper()
	l1, l2 := ocitest.Random(seed, layerSize), ocitest.Random(seed+1, layerSize)
	a := p.push.Image(t, repo, "", amd64, l1)
	b := p.push.Image(t, repo, "", arm64, l2)
	idx := p.push.Index(t, repo, tag, a, b)
	p.push.Referrer(t, repo, "application/vnd.example.signature", idx, []byte("signature of "+tag))
	p.push.Referrer(t, repo, "application/spdx+json", a, []byte("sbom of "+tag))
	return idx, [][]byte{l1, l2}
}

// complete checks that dst holds the graph of d in repo, every blob
// hashing to its name, and returns the manifests it holds.
func complete(t *testing.T, dst store, repo string, d digest.Digest) int {
	t.Helper()
	var walk func(d digest.Digest) int
	walk = func(d digest.Digest) int {
		rec, err := dst.meta.GetManifest(context.Background(), repo, string(d))
		if err != nil {
			t.Fatalf("manifest %s at the target: %v", d, err)
		}
		n := 1
		for _, b := range rec.Blobs {
			f, _, err := dst.blobs.Open(context.Background(), b)
			if err != nil {
				t.Fatalf("blob %s at the target: %v", b, err)
			}
			data, err := io.ReadAll(f)
			_ = f.Close()
			if err != nil || digest.FromBytes(data) != b {
				t.Fatalf("blob %s at the target holds %s (%v)", b, digest.FromBytes(data), err)
			}
			if _, err := dst.meta.BlobSize(context.Background(), repo, b); err != nil {
				t.Fatalf("blob %s is not part of %s at the target: %v", b, repo, err)
			}
		}
		for _, c := range rec.Manifests {
			n += walk(c)
		}
		refs, err := dst.meta.Referrers(context.Background(), repo, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			n += walk(r.Digest)
		}
		return n
	}
	return walk(d)
}

func tagged(t *testing.T, s store, repo, tag string) digest.Digest {
	t.Helper()
	rec, err := s.meta.GetManifest(context.Background(), repo, tag)
	if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrRepositoryUnknown) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.Digest
}

func TestCopy(t *testing.T) {
	const layerSize = 256 << 10
	for _, tc := range []struct {
		name string
		// setup prepares the parent and returns the root and where the
		// copy reads from.
		setup func(t *testing.T, p *parent) (root v1.Descriptor, addr string)
		opts  graph.Options
		// wantErr, when set, is the error the copy must fail with; the tag
		// must then not be published.
		wantErr error
		// check runs on a successful copy.
		check func(t *testing.T, p *parent, dst store, root v1.Descriptor, st graph.Stats)
	}{
		{
			name: "index with platforms and referrers",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, _ := multiPlatform(t, p, "apps/web", "v1", 1, layerSize)
				return idx, p.url
			},
			check: func(t *testing.T, _ *parent, dst store, root v1.Descriptor, st graph.Stats) {
				if n := complete(t, dst, "apps/web", root.Digest); n != 5 {
					t.Errorf("manifests at the target: %d, want 5 (index, two images, two referrers)", n)
				}
				// Blobs: 2 configs + 2 layers + the empty config of the
				// referrers (shared) + 2 payloads.
				if st.Manifests != 5 || st.Blobs != 7 {
					t.Errorf("stats %+v, want 5 manifests and 7 blobs", st)
				}
			},
		},
		{
			name: "second copy skips what the target has and brings new referrers",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, _ := multiPlatform(t, p, "apps/web", "v1", 2, layerSize)
				return idx, p.url
			},
			check: func(t *testing.T, p *parent, dst store, root v1.Descriptor, _ graph.Stats) {
				p.push.Referrer(t, "apps/web", "application/vnd.example.attestation", root, []byte("late attestation"))
				st, err := graph.Copy(context.Background(), source(t, p.url), "apps/web", dst.target(), "apps/web", root, graph.Options{Tags: []string{"v1"}})
				if err != nil {
					t.Fatal(err)
				}
				if st.Manifests != 1 || st.Bytes > 64 {
					t.Errorf("second copy: %+v, want only the new referrer (1 manifest, a few bytes)", st)
				}
				if n := complete(t, dst, "apps/web", root.Digest); n != 6 {
					t.Errorf("manifests at the target: %d, want 6", n)
				}
			},
		},
		{
			name: "missing blob at the source",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, layers := multiPlatform(t, p, "apps/web", "v1", 3, layerSize)
				if err := p.blobs.Delete(context.Background(), digest.FromBytes(layers[1])); err != nil {
					t.Fatal(err)
				}
				return idx, p.url
			},
			wantErr: graph.ErrNotFound,
		},
		{
			name: "digest mismatch in transit is fetched again",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, _ := multiPlatform(t, p, "apps/web", "v1", 4, layerSize)
				return idx, corrupting(t, p, layerSize/2)
			},
			opts: graph.Options{Retry: retry, Concurrency: 1},
			check: func(t *testing.T, _ *parent, dst store, root v1.Descriptor, _ graph.Stats) {
				complete(t, dst, "apps/web", root.Digest)
			},
		},
		{
			name: "digest mismatch without a retry fails",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, _ := multiPlatform(t, p, "apps/web", "v1", 5, layerSize)
				return idx, corrupting(t, p, layerSize/2)
			},
			opts:    graph.Options{Concurrency: 1},
			wantErr: graph.ErrDigest,
		},
		{
			name: "interrupted blob resumes with Range",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				l := ocitest.Random(6, 4<<20)
				img := p.push.Image(t, "apps/big", "v1", amd64, l)
				px, err := faultproxy.New(strings.TrimPrefix(p.url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = px.Close() })
				px.CutOnceAfter(3 << 20)
				return img, "http://" + px.Addr()
			},
			opts: graph.Options{Retry: retry},
			check: func(t *testing.T, _ *parent, dst store, root v1.Descriptor, st graph.Stats) {
				complete(t, dst, "apps/big", root.Digest)
				if st.Bytes > 5<<20 {
					t.Errorf("read %d bytes from the source for a 4 MiB layer cut at 3 MiB: restarted instead of resumed", st.Bytes)
				}
			},
		},
		{
			name: "tag moved at the source during the copy",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				idx, _ := multiPlatform(t, p, "apps/web", "v1", 7, layerSize)
				return idx, p.url
			},
			check: func(t *testing.T, _ *parent, dst store, root v1.Descriptor, _ graph.Stats) {
				if got := tagged(t, dst, "apps/web", "v1"); got != root.Digest {
					t.Errorf("v1 at the target: %s, want the root copied %s", got, root.Digest)
				}
				complete(t, dst, "apps/web", root.Digest)
			},
		},
		{
			name: "nesting deeper than the limit",
			setup: func(t *testing.T, p *parent) (v1.Descriptor, string) {
				d := p.push.Image(t, "apps/deep", "", amd64, []byte("leaf"))
				for i := range 4 {
					tag := ""
					if i == 3 {
						tag = "v1"
					}
					idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{d},
						Annotations: map[string]string{"level": fmt.Sprint(i)}}
					body, _ := json.Marshal(idx)
					ref := tag
					if ref == "" {
						ref = string(digest.FromBytes(body))
					}
					d = p.push.PushManifest(t, "apps/deep", ref, v1.MediaTypeImageIndex, body)
				}
				return d, p.url
			},
			opts:    graph.Options{MaxDepth: 3},
			wantErr: graph.ErrTooDeep,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newParent(t)
			root, addr := tc.setup(t, p)
			repo := repoOf(t, p, root)
			dst := newStore(t)
			o := tc.opts
			o.Tags = []string{"v1"}
			if tc.name == "tag moved at the source during the copy" {
				var moved atomic.Bool
				o.OnBlob = func(v1.Descriptor) {
					if moved.CompareAndSwap(false, true) {
						p.push.Image(t, repo, "v1", amd64, []byte("the new v1"))
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, err := graph.Copy(ctx, source(t, addr), repo, dst.target(), repo, root, o)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("copy: %v, want an error wrapping %q", err, tc.wantErr)
				}
				if got := tagged(t, dst, repo, "v1"); got != "" {
					t.Errorf("v1 published at the target (%s) though the copy failed", got)
				}
				if _, err := dst.meta.GetManifest(context.Background(), repo, string(root.Digest)); err == nil {
					t.Errorf("root manifest stored at the target though its graph is incomplete")
				}
				return
			}
			if err != nil {
				t.Fatalf("copy: %v", err)
			}
			if got := tagged(t, dst, repo, "v1"); got != root.Digest {
				t.Errorf("v1 at the target: %q, want %s", got, root.Digest)
			}
			if tc.check != nil {
				tc.check(t, p, dst, root, st)
			}
		})
	}
}

// repoOf finds the parent's repository holding root.
func repoOf(t *testing.T, p *parent, root v1.Descriptor) string {
	t.Helper()
	for _, r := range []string{"apps/web", "apps/big", "apps/deep"} {
		if _, err := p.meta.GetManifest(context.Background(), r, string(root.Digest)); err == nil {
			return r
		}
	}
	t.Fatalf("root %s is in no repository of the parent", root.Digest)
	return ""
}

// corrupting returns the address of a proxy to p that flips one byte of
// the first connection's answers at offset n.
func corrupting(t *testing.T, p *parent, n int64) string {
	t.Helper()
	px, err := faultproxy.New(strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	px.CorruptOnceAt(n)
	return "http://" + px.Addr()
}

// TestCheck: a copy into the Verifier reads every blob and reports each
// missing one, and goes on with the rest of the graph.
func TestCheck(t *testing.T) {
	p := newParent(t)
	idx, layers := multiPlatform(t, p, "apps/web", "v1", 9, 4096)
	c := source(t, p.url)
	r := c.CheckImage(context.Background(), "apps/web", "v1")
	if !r.OK || r.Manifests != 5 || r.Blobs != 7 {
		t.Fatalf("check of a complete image: %+v, want OK with 5 manifests and 7 blobs", r)
	}
	for _, l := range layers {
		if err := p.blobs.Delete(context.Background(), digest.FromBytes(l)); err != nil {
			t.Fatal(err)
		}
	}
	r = c.CheckImage(context.Background(), "apps/web", string(idx.Digest))
	if r.OK || len(r.Problems) != 2 {
		t.Fatalf("check with both layers gone: %+v, want two problems", r)
	}
	for i, l := range layers {
		if !strings.Contains(r.Problems[0]+r.Problems[1], string(digest.FromBytes(l))) || !strings.Contains(r.Problems[i], "missing") {
			t.Errorf("problems %q do not name missing layer %s", r.Problems, digest.FromBytes(l))
		}
	}
	size, err := graph.Size(context.Background(), &graph.Store{Blobs: p.blobs, Uploads: p.blobs, Metadata: p.meta}, "apps/web", idx.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if size < 2*4096 || size > 2*4096+4096 {
		t.Errorf("graph size %d, want the two 4 KiB layers plus configs and manifests", size)
	}
	if !bytes.Contains([]byte(r.Image), []byte("apps/web@")) {
		t.Errorf("image %q", r.Image)
	}
}
