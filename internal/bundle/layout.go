package bundle

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
)

// blobPath is a blob's name in the layout.
func blobPath(d digest.Digest) string {
	return "blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// ustarMax is the largest file a ustar header can describe (8 GiB − 1);
// larger blobs get a PAX header, whose size is not computed in advance.
const ustarMax = 1<<33 - 1

// tarSize returns the exact size of the tar the Writer writes for c with
// contents and signature files of those sizes, or -1 when a blob needs a
// PAX header.
func tarSize(c *Contents, contents, sig, index int) int64 {
	entry := func(n int64) int64 { return 512 + (n+511)/512*512 }
	total := 2*512 + entry(int64(contents)) + entry(int64(sig)) + entry(int64(len(layoutFile))) + entry(int64(index)) + 1024
	for _, b := range c.Blobs {
		if b.Size > ustarMax {
			return -1
		}
		total += entry(b.Size)
	}
	return total
}

const layoutFile = `{"imageLayoutVersion":"1.0.0"}` + "\n"

// IndexJSON is the layout's index.json for c: one descriptor per image,
// named repository:tag (org.opencontainers.image.ref.name).
func IndexJSON(c *Contents) ([]byte, error) {
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	idx.SchemaVersion = 2
	for _, im := range c.Images {
		d := v1.Descriptor{MediaType: im.MediaType, Digest: im.Digest, Size: im.Size}
		if im.Tag != "" {
			d.Annotations = map[string]string{v1.AnnotationRefName: im.Repository + ":" + im.Tag}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return nil, fmt.Errorf("encode index.json: %w", err)
	}
	return append(b, '\n'), nil
}

// Writer writes a bundle tar. It is the Target of an export's second
// copy: the contents (decided by the first, a Plan) are signed and written
// first, then every blob the plan lists as graph.Copy delivers it,
// verified while it streams. Content the plan does not list (a referrer
// pushed since) is reported as held, so it is skipped.
type Writer struct {
	tw    *tar.Writer
	mtime time.Time

	mu      sync.Mutex
	planned map[digest.Digest]bool
	written map[digest.Digest]bool
}

// NewWriter starts the bundle on w: the contents and signature files, the
// oci-layout file and index.json.
func NewWriter(w io.Writer, c *Contents, contents, sig []byte) (*Writer, error) {
	bw := &Writer{tw: tar.NewWriter(w), mtime: c.Created, planned: map[digest.Digest]bool{}, written: map[digest.Digest]bool{}}
	for _, b := range c.Blobs {
		bw.planned[b.Digest] = true
	}
	index, err := IndexJSON(c)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{ContentsFile, contents}, {SignatureFile, sig}, {"oci-layout", []byte(layoutFile)}, {"index.json", index}} {
		if err := bw.file(f.name, int64(len(f.body)), strings.NewReader(string(f.body))); err != nil {
			return nil, err
		}
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := bw.tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: bw.mtime, Format: tar.FormatUSTAR}); err != nil {
			return nil, fmt.Errorf("write bundle: %w", err)
		}
	}
	return bw, nil
}

func (w *Writer) file(name string, size int64, r io.Reader) error {
	h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: w.mtime, Format: tar.FormatUSTAR}
	if size > ustarMax {
		h.Format = tar.FormatPAX
	}
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write bundle %s: %w", name, err)
	}
	n, err := io.Copy(w.tw, r)
	if err != nil {
		return fmt.Errorf("write bundle %s at byte %d: %w", name, n, err)
	}
	return nil
}

// Close ends the tar; every planned blob must have been written.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.planned {
		if !w.written[d] {
			return fmt.Errorf("bundle incomplete: %s was planned and not written", d)
		}
	}
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

func (w *Writer) holds(d digest.Digest) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.planned[d] || w.written[d]
}

// HasManifest implements graph.Target.
func (w *Writer) HasManifest(_ context.Context, _ string, d digest.Digest) (bool, error) {
	return w.holds(d), nil
}

// HasBlob implements graph.Target.
func (w *Writer) HasBlob(_ context.Context, _ string, desc v1.Descriptor) (bool, error) {
	return w.holds(desc.Digest), nil
}

// PushBlob implements graph.Target: the blob is written as one tar entry
// while its digest is checked; a mismatch fails the export (the tar
// cannot take the entry back).
func (w *Writer) PushBlob(ctx context.Context, _ string, desc v1.Descriptor, open graph.Opener) error {
	rc, _, err := open(ctx, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written[desc.Digest] {
		return nil
	}
	h := sha256.New()
	if err := w.file(blobPath(desc.Digest), desc.Size, io.TeeReader(io.LimitReader(rc, desc.Size), h)); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != desc.Digest {
		return fmt.Errorf("%w: export blob %s: the store's content is %s", graph.ErrDigest, desc.Digest, got)
	}
	w.written[desc.Digest] = true
	return nil
}

// PushManifest implements graph.Target.
func (w *Writer) PushManifest(_ context.Context, _ string, n graph.Node) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := n.Descriptor.Digest
	if w.written[d] {
		return nil
	}
	if err := w.file(blobPath(d), int64(len(n.Body)), strings.NewReader(string(n.Body))); err != nil {
		return err
	}
	w.written[d] = true
	return nil
}

// Tag implements graph.Target: index.json, written first, names the
// images.
func (w *Writer) Tag(context.Context, string, v1.Descriptor, string) error { return nil }

// Plan is the Target of an export's first copy: it reads the manifests,
// no blob, and decides what the bundle carries: every manifest, and every
// blob the site's inventory does not list.
type Plan struct {
	Inventory *Inventory

	mu      sync.Mutex
	seen    map[digest.Digest]bool
	blobs   []Blob
	omitted []Blob
}

func (p *Plan) mark(d digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[digest.Digest]bool{}
	}
	if p.seen[d] {
		return false
	}
	p.seen[d] = true
	return true
}

// HasManifest implements graph.Target: manifests are always carried
// (small, and the site needs them in the repository they are imported
// into), each once.
func (p *Plan) HasManifest(_ context.Context, _ string, d digest.Digest) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[d], nil
}

// HasBlob implements graph.Target: a blob in the inventory is omitted.
func (p *Plan) HasBlob(_ context.Context, _ string, desc v1.Descriptor) (bool, error) {
	if !p.Inventory.Has(desc.Digest) {
		return false, nil
	}
	if p.mark(desc.Digest) {
		p.mu.Lock()
		p.omitted = append(p.omitted, Blob{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType})
		p.mu.Unlock()
	}
	return true, nil
}

// PushBlob implements graph.Target: the blob is listed, not read.
func (p *Plan) PushBlob(_ context.Context, _ string, desc v1.Descriptor, _ graph.Opener) error {
	if desc.Size < 0 || desc.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: blob %s (size %d): a bundle carries sha256 blobs of known size", ErrFormat, desc.Digest, desc.Size)
	}
	if p.mark(desc.Digest) {
		p.mu.Lock()
		p.blobs = append(p.blobs, Blob{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType})
		p.mu.Unlock()
	}
	return nil
}

// PushManifest implements graph.Target.
func (p *Plan) PushManifest(_ context.Context, _ string, n graph.Node) error {
	if p.mark(n.Descriptor.Digest) {
		p.mu.Lock()
		p.blobs = append(p.blobs, Blob{Digest: n.Descriptor.Digest, Size: int64(len(n.Body)), MediaType: n.Descriptor.MediaType})
		p.mu.Unlock()
	}
	return nil
}

// Tag implements graph.Target.
func (*Plan) Tag(context.Context, string, v1.Descriptor, string) error { return nil }

// Result returns the blobs carried and omitted.
func (p *Plan) Result() (blobs, omitted []Blob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Blob{}, p.blobs...), append([]Blob{}, p.omitted...)
}

// isManifest reports whether a blob of the contents is a manifest.
func isManifest(b Blob) bool { return oci.IsManifestMediaType(b.MediaType) }
