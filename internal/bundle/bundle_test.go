package bundle_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

// registry is a real store (fs blobs, bolt metadata) with the registry
// API on loopback to push content into it.
type registry struct {
	blobs *fs.Store
	meta  storage.Metadata
	push  *ocitest.Client
}

func newRegistry(t testing.TB) *registry {
	t.Helper()
	dir := t.TempDir()
	blobs, err := fs.New(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := bolt.Open(filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	h, err := registryapi.New(registryapi.Options{Blobs: blobs, Uploads: blobs, Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &registry{blobs: blobs, meta: meta, push: ocitest.New(t, srv.URL, "", "", "")}
}

func (r *registry) store() *graph.Store {
	return &graph.Store{Blobs: r.blobs, Uploads: r.blobs, Metadata: r.meta}
}

func (r *registry) site(name, id string, key ed25519.PublicKey) *bundle.Site {
	return &bundle.Site{Blobs: r.blobs, Uploads: r.blobs, Metadata: r.meta, Name: name, SiteID: id, Key: func() ed25519.PublicKey { return key }}
}

func (r *registry) inventory(t testing.TB, id string) *bundle.Inventory {
	t.Helper()
	inv, err := bundle.NewInventory(context.Background(), id, "", func(ctx context.Context, fn func(digest.Digest, int64) error) error {
		return r.blobs.WalkBlobs(ctx, func(b fs.BlobFile) error { return fn(b.Digest, b.Size) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// export writes a bundle of images from r to a file and returns its path
// and the export.
func export(t testing.TB, r *registry, key ed25519.PrivateKey, req bundle.ExportRequest) (string, *bundle.Export) {
	t.Helper()
	ctx := context.Background()
	ex, err := bundle.Prepare(ctx, r.store(), key, req)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "b.bundle")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.WriteTo(ctx, f, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, ex
}

// sessionTarget is the import session as a graph.Target, as the client's
// ImportTarget is over HTTP.
type sessionTarget struct{ s *bundle.Session }

func (st sessionTarget) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	return st.s.HasManifest(ctx, repo, d)
}

func (st sessionTarget) HasBlob(ctx context.Context, repo string, desc v1.Descriptor) (bool, error) {
	return st.s.HasBlob(ctx, repo, desc.Digest, desc.Size)
}

func (st sessionTarget) PushBlob(ctx context.Context, repo string, desc v1.Descriptor, open graph.Opener) error {
	rc, _, err := open(ctx, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	return st.s.PushBlob(ctx, repo, desc.Digest, rc)
}

func (st sessionTarget) PushManifest(ctx context.Context, repo string, n graph.Node) error {
	return st.s.PushManifest(ctx, repo, n.Descriptor.Digest, n.Body)
}

func (sessionTarget) Tag(context.Context, string, v1.Descriptor, string) error { return nil }

// importFile imports the bundle at path into site, as the CLI does.
func importFile(t testing.TB, site *bundle.Site, path string, key ed25519.PublicKey) (bundle.Report, error) {
	t.Helper()
	ctx := context.Background()
	r, err := bundle.Open(path)
	if err != nil {
		return bundle.Report{}, err
	}
	defer r.Close()
	s, _, err := site.Open(ctx, r.Contents, r.Signature, key)
	if err != nil {
		return bundle.Report{}, err
	}
	if err := r.IndexReferrers(ctx, s.Contents); err != nil {
		return bundle.Report{}, err
	}
	for _, im := range s.Contents.Images {
		if _, err := graph.Copy(ctx, r, im.Repository, sessionTarget{s}, im.Repository, v1.Descriptor{Digest: im.Digest}, graph.Options{}); err != nil {
			return bundle.Report{}, err
		}
	}
	return s.Commit(ctx)
}

var amd64, arm64 = v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}

// release pushes a two-platform index with a signature on it; the layers
// are seeded so that releases overlap.
func release(t testing.TB, r *registry, tag string, seeds ...uint64) v1.Descriptor {
	t.Helper()
	var layers [][]byte
	for _, s := range seeds {
		layers = append(layers, ocitest.Random(s, 64<<10))
	}
	a := r.push.Image(t, "apps/web", "", amd64, layers...)
	b := r.push.Image(t, "apps/web", "", arm64, layers[0])
	idx := r.push.Index(t, "apps/web", tag, a, b)
	r.push.Referrer(t, "apps/web", "application/vnd.example.sig", idx, []byte("sig-"+tag))
	return idx
}

func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root, site := newRegistry(t), newRegistry(t)
	key := newKey(t)
	idx1 := release(t, root, "1", 1, 2)

	p1, ex1 := export(t, root, key, bundle.ExportRequest{Images: []bundle.Image{{Repository: "apps/web", Tag: "1", Digest: idx1.Digest}}})
	fi, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != ex1.Size {
		t.Errorf("tar size: got %d, want the %d Prepare computed", fi.Size(), ex1.Size)
	}
	rep, err := importFile(t, site.site("", "s1", pub(key)), p1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Published) != 1 || rep.Published[0] != "apps/web:1" {
		t.Errorf("published: got %v, want [apps/web:1]", rep.Published)
	}
	if _, err := graph.Copy(ctx, site.store(), "apps/web", graph.Verifier{}, "apps/web", v1.Descriptor{Digest: idx1.Digest}, graph.Options{}); err != nil {
		t.Errorf("imported graph incomplete: %v", err)
	}
	refs, err := site.meta.Referrers(ctx, "apps/web", idx1.Digest)
	if err != nil || len(refs) != 1 {
		t.Errorf("referrers at the site: got %v %v, want the signature", refs, err)
	}
	again, err := importFile(t, site.site("", "s1", pub(key)), p1, nil)
	if err != nil || len(again.Published) != 0 || again.BlobsWritten != 0 {
		t.Errorf("second import: got %+v %v, want a no-op", again, err)
	}

	// Release 2 shares layer 1: the delta against the site's inventory
	// carries only layer 3 and the manifests.
	idx2 := release(t, root, "2", 1, 3)
	inv := site.inventory(t, "s1")
	p2, ex2 := export(t, root, key, bundle.ExportRequest{Images: []bundle.Image{{Repository: "apps/web", Tag: "2", Digest: idx2.Digest}}, Inventory: inv, Target: bundle.Target{SiteID: "s1"}})
	var layers int
	for _, b := range ex2.Contents.Blobs {
		if b.MediaType == v1.MediaTypeImageLayer {
			layers++
		}
	}
	if layers != 1 || len(ex2.Contents.Omitted) != 4 {
		t.Errorf("delta: got %d layers carried and %d blobs omitted, want 1 (layer 3) and 4 (layer 1, two image configs, the signature's config)", layers, len(ex2.Contents.Omitted))
	}
	if _, err := importFile(t, site.site("", "s1", pub(key)), p2, nil); err != nil {
		t.Fatalf("import delta: %v", err)
	}
	if rec, err := site.meta.GetManifest(ctx, "apps/web", "2"); err != nil || rec.Digest != idx2.Digest {
		t.Errorf("apps/web:2 at the site: %v", err)
	}
}

func TestImportRefusals(t *testing.T) {
	t.Parallel()
	root := newRegistry(t)
	key, otherKey := newKey(t), newKey(t)
	idx := release(t, root, "1", 1, 2)
	images := []bundle.Image{{Repository: "apps/web", Tag: "1", Digest: idx.Digest}}
	full, _ := export(t, root, key, bundle.ExportRequest{Images: images})
	forB, _ := export(t, root, key, bundle.ExportRequest{Images: images, Target: bundle.Target{SiteID: "site-b", Name: "plant-b"}})
	other, _ := export(t, root, otherKey, bundle.ExportRequest{Images: images})
	// A delta against an inventory listing blobs the importing site lacks.
	holder := newRegistry(t)
	if _, err := importFile(t, holder.site("", "h", pub(key)), full, nil); err != nil {
		t.Fatal(err)
	}
	delta, _ := export(t, root, key, bundle.ExportRequest{Images: images, Inventory: holder.inventory(t, "h")})

	for _, tc := range []struct {
		name     string
		file     string
		siteKey  ed25519.PublicKey
		supplied ed25519.PublicKey
		want     error
	}{
		{"another root", other, pub(key), nil, bundle.ErrSignature},
		{"another site", forB, pub(key), nil, bundle.ErrTarget},
		{"base missing", delta, pub(key), nil, bundle.ErrBase},
		{"no key", full, nil, nil, bundle.ErrNoKey},
		{"supplied key differs from the parent's", full, pub(key), pub(otherKey), bundle.ErrSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := newRegistry(t)
			_, err := importFile(t, site.site("plant-a", "site-a", tc.siteKey), tc.file, tc.supplied)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, err := site.meta.GetManifest(context.Background(), "apps/web", "1"); err == nil {
				t.Error("apps/web:1 published by a refused bundle")
			}
			n := 0
			_ = site.blobs.WalkBlobs(context.Background(), func(fs.BlobFile) error { n++; return nil })
			if n != 0 {
				t.Errorf("a refused bundle wrote %d blobs", n)
			}
		})
	}

	// A session admits nothing the contents do not list.
	site := newRegistry(t)
	r, err := bundle.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, _, err := site.site("", "x", pub(key)).Open(context.Background(), r.Contents, r.Signature, nil)
	if err != nil {
		t.Fatal(err)
	}
	stray := []byte("not in the bundle")
	if err := s.PushBlob(context.Background(), "apps/web", digest.FromBytes(stray), bytes.NewReader(stray)); !errors.Is(err, bundle.ErrNotListed) {
		t.Errorf("unlisted blob: got %v, want ErrNotListed", err)
	}
	if _, err := s.Commit(context.Background()); !errors.Is(err, bundle.ErrIncomplete) {
		t.Errorf("commit before the content: got %v, want ErrIncomplete", err)
	}
}

func TestSignatureCoversEveryByte(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := &bundle.Contents{ID: "x", Images: []bundle.Image{{Repository: "a", Tag: "1", Digest: digest.FromString("m")}}}
	contents, sig, err := bundle.Sign(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Verify(contents, sig, pub(key)); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for i := range contents {
		edited := bytes.Clone(contents)
		edited[i] ^= 0x20
		if _, err := bundle.Verify(edited, sig, pub(key)); err == nil {
			t.Fatalf("byte %d edited: verified", i)
		}
	}
}

func TestInventoryFile(t *testing.T) {
	t.Parallel()
	const n = 100_000
	digests := make([]digest.Digest, n)
	for i := range digests {
		digests[i] = digest.FromBytes(ocitest.Random(uint64(i), 16))
	}
	inv, err := bundle.NewInventory(context.Background(), "site", "plant-a", func(_ context.Context, fn func(digest.Digest, int64) error) error {
		for _, d := range digests {
			if err := fn(d, 10); err != nil {
				return err
			}
		}
		return fn(digests[0], 10) // listed twice: counted once
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := inv.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if max := int64(32*n + 512); int64(buf.Len()) > max {
		t.Errorf("inventory of %d blobs: %d bytes, want at most %d", n, buf.Len(), max)
	}
	t.Logf("inventory of %d blobs: %d bytes", n, buf.Len())
	got, d, err := bundle.ReadInventory(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if d != digest.FromBytes(buf.Bytes()) || got.Count != n || got.SiteID != "site" || got.Name != "plant-a" {
		t.Errorf("read back: %+v %s", got, d)
	}
	if !got.Has(digests[n/2]) || got.Has(digest.FromString("absent")) {
		t.Error("Has: wrong answer for a listed or an absent digest")
	}
	damaged := bytes.Clone(buf.Bytes())
	damaged[len(damaged)/2] ^= 1
	if _, _, err := bundle.ReadInventory(bytes.NewReader(damaged)); !errors.Is(err, bundle.ErrFormat) {
		t.Errorf("damaged inventory: got %v, want ErrFormat", err)
	}
}

func FuzzReadInventory(f *testing.F) {
	inv, _ := bundle.NewInventory(context.Background(), "s", "n", func(_ context.Context, fn func(digest.Digest, int64) error) error {
		_ = fn(digest.FromString("a"), 1)
		return fn(digest.FromString("b"), 2)
	})
	var buf bytes.Buffer
	_, _ = inv.WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte("OUTPOST-INVENTORY 1\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, _, err := bundle.ReadInventory(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Property: what reads back writes back byte for byte.
		var out bytes.Buffer
		if _, err := got.WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("inventory did not round-trip: %v", err)
		}
	})
}

func FuzzDecodeContents(f *testing.F) {
	key := newKey(f)
	contents, _, _ := bundle.Sign(&bundle.Contents{ID: "x", Images: []bundle.Image{{Repository: "a", Tag: "1", Digest: digest.FromString("m")}},
		Blobs: []bundle.Blob{{Digest: digest.FromString("m"), Size: 1}}}, key)
	f.Add(contents)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := bundle.Decode(b)
		if err != nil {
			return
		}
		// Property: decoded contents are internally consistent.
		seen := map[digest.Digest]bool{}
		for _, bl := range append(c.Blobs, c.Omitted...) {
			if seen[bl.Digest] || bl.Size < 0 || bl.Digest.Validate() != nil {
				t.Fatalf("decoded contents hold a bad blob entry %+v", bl)
			}
			seen[bl.Digest] = true
		}
		if len(c.Images) == 0 {
			t.Fatal("decoded contents without images")
		}
	})
}

func TestReaderServesEntriesInPlace(t *testing.T) {
	t.Parallel()
	root := newRegistry(t)
	key := newKey(t)
	idx := release(t, root, "1", 1, 2)
	p, ex := export(t, root, key, bundle.ExportRequest{Images: []bundle.Image{{Repository: "apps/web", Tag: "1", Digest: idx.Digest}}})
	r, err := bundle.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, b := range ex.Contents.Blobs {
		rc, _, err := r.Blob(context.Background(), "", v1.Descriptor{Digest: b.Digest, Size: b.Size}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := graph.VerifyContent(rc, v1.Descriptor{Digest: b.Digest, Size: b.Size}); err != nil {
			t.Errorf("entry %s: %v", b.Digest, err)
		}
		rc, _, _ = r.Blob(context.Background(), "", v1.Descriptor{Digest: b.Digest, Size: b.Size}, b.Size/2)
		tail, _ := io.ReadAll(rc)
		if int64(len(tail)) != b.Size-b.Size/2 {
			t.Errorf("entry %s from its middle: %d bytes, want %d", b.Digest, len(tail), b.Size-b.Size/2)
		}
	}
	if _, err := bundle.Open(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "open bundle") {
		t.Errorf("missing file: %v", err)
	}
}

// TestReplayedBundleCannotRollBack: once a newer bundle moved a tag, an
// older one (replayed, or imported out of order) is refused and moves
// nothing, also after a restart (the log is on disk).
func TestReplayedBundleCannotRollBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root, site := newRegistry(t), newRegistry(t)
	key := newKey(t)
	idx1 := release(t, root, "latest", 1)
	old, _ := export(t, root, key, bundle.ExportRequest{Images: []bundle.Image{{Repository: "apps/web", Tag: "latest", Digest: idx1.Digest}}})
	idx2 := release(t, root, "latest", 2)
	newer, _ := export(t, root, key, bundle.ExportRequest{Images: []bundle.Image{{Repository: "apps/web", Tag: "latest", Digest: idx2.Digest}}})
	logPath := filepath.Join(t.TempDir(), "tags.json")
	withLog := func() *bundle.Site {
		l, err := bundle.OpenTagLog(logPath)
		if err != nil {
			t.Fatal(err)
		}
		s := site.site("", "s", pub(key))
		s.Tags = l
		return s
	}
	if _, err := importFile(t, withLog(), old, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := importFile(t, withLog(), newer, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := importFile(t, withLog(), old, nil); !errors.Is(err, bundle.ErrRollback) {
		t.Fatalf("older bundle after a newer one: got %v, want ErrRollback", err)
	}
	if rec, err := site.meta.GetManifest(ctx, "apps/web", "latest"); err != nil || rec.Digest != idx2.Digest {
		t.Errorf("apps/web:latest after the refused replay: %v, want %s", err, idx2.Digest)
	}
}
