package bundle

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
)

// maxContentsBytes bounds the contents and signature files.
const maxContentsBytes = 256 << 20

// Reader is a bundle file opened for import: a graph.Source reading the
// layout's blobs in place (the tar is indexed once, by seeking past each
// entry, so opening a 100 GB bundle reads only its headers).
type Reader struct {
	f       *os.File
	entries map[string]entry
	// Contents and Signature are the raw contents and signature files;
	// nothing in them is trusted before Verify.
	Contents, Signature []byte

	mu        sync.Mutex
	referrers map[digest.Digest][]v1.Descriptor
}

type entry struct{ off, size int64 }

// Open indexes the bundle at path.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	r, err := newReader(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return r, nil
}

func newReader(f *os.File) (*Reader, error) {
	r := &Reader{f: f, entries: map[string]entry{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: not a tar: %w", ErrFormat, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// tar.Reader reads headers exactly, so the file offset is where
		// the entry's content starts.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("index bundle: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		r.entries[name] = entry{off: off, size: h.Size}
	}
	var err error
	if r.Contents, err = r.read(ContentsFile); err != nil {
		return nil, err
	}
	if r.Signature, err = r.read(SignatureFile); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reader) read(name string) ([]byte, error) {
	e, ok := r.entries[name]
	if !ok {
		return nil, fmt.Errorf("%w: no %s (an OCI layout without Outpost's signed contents is not a bundle)", ErrFormat, name)
	}
	if e.size > maxContentsBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrFormat, name, e.size)
	}
	b := make([]byte, e.size)
	if _, err := r.f.ReadAt(b, e.off); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Has reports whether the tar holds blob d (of any size).
func (r *Reader) Has(d digest.Digest) bool {
	_, ok := r.entries[blobPath(d)]
	return ok
}

// Manifest implements graph.Source.
func (r *Reader) Manifest(_ context.Context, _ string, d digest.Digest, maxBytes int64) ([]byte, string, error) {
	e, ok := r.entries[blobPath(d)]
	if !ok {
		return nil, "", fmt.Errorf("%w: manifest %s is not in the bundle", graph.ErrNotFound, d)
	}
	if e.size > maxBytes {
		return nil, "", fmt.Errorf("manifest %s is larger than %d bytes", d, maxBytes)
	}
	b := make([]byte, e.size)
	if _, err := r.f.ReadAt(b, e.off); err != nil {
		return nil, "", fmt.Errorf("%w: read manifest %s: %w", graph.ErrInterrupted, d, err)
	}
	return b, "", nil
}

// Blob implements graph.Source: the content is read in place, from
// offset.
func (r *Reader) Blob(_ context.Context, _ string, desc v1.Descriptor, offset int64) (io.ReadCloser, bool, error) {
	e, ok := r.entries[blobPath(desc.Digest)]
	if !ok {
		return nil, false, fmt.Errorf("%w: blob %s is not in the bundle", graph.ErrNotFound, desc.Digest)
	}
	if offset > e.size {
		offset = e.size
	}
	return io.NopCloser(io.NewSectionReader(r.f, e.off+offset, e.size-offset)), true, nil
}

// Referrers implements graph.Source: the manifests of the bundle whose
// subject is d (the contents say which blobs are manifests).
func (r *Reader) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.referrers[d], nil
}

// IndexReferrers reads the manifests c lists and records which refer to
// which subject; Import calls it once the contents are verified.
func (r *Reader) IndexReferrers(ctx context.Context, c *Contents) error {
	refs := map[digest.Digest][]v1.Descriptor{}
	for _, b := range c.Blobs {
		if !isManifest(b) {
			continue
		}
		body, _, err := r.Manifest(ctx, "", b.Digest, 4<<20)
		if err != nil {
			return err
		}
		m, err := oci.ParseManifest(b.MediaType, body)
		if err != nil || m.Subject == nil {
			continue // a damaged manifest fails its digest check in the copy
		}
		refs[m.Subject.Digest] = append(refs[m.Subject.Digest], v1.Descriptor{MediaType: m.MediaType, Digest: b.Digest, Size: b.Size, ArtifactType: m.ArtifactType})
	}
	r.mu.Lock()
	r.referrers = refs
	r.mu.Unlock()
	return nil
}

// Check reads every blob c lists from the file and verifies its size and
// digest: what `outpost bundle verify` does before a disk is carried.
// onBytes, when set, is told the bytes read as they flow.
func (r *Reader) Check(ctx context.Context, c *Contents, onBytes func(int64)) error {
	var problems []error
	for _, b := range c.Blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, ok := r.entries[blobPath(b.Digest)]
		if !ok {
			problems = append(problems, fmt.Errorf("%w: blob %s is listed and not in the file", ErrFormat, b.Digest))
			continue
		}
		if e.size != b.Size {
			problems = append(problems, fmt.Errorf("%w: blob %s is %d bytes in the file, %d in the contents", graph.ErrDigest, b.Digest, e.size, b.Size))
			continue
		}
		var src io.Reader = io.NewSectionReader(r.f, e.off, e.size)
		if onBytes != nil {
			src = io.TeeReader(src, progressWriter(onBytes))
		}
		if err := graph.VerifyContent(src, v1.Descriptor{Digest: b.Digest, Size: b.Size}); err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) { p(int64(len(b))); return len(b), nil }
