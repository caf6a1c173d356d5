package bundle

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// ErrIncomplete marks a commit before every image's graph is present.
var ErrIncomplete = errors.New("bundle import incomplete")

// Site is the registry a bundle is imported into: its store (written
// through graph.Store, which verifies every blob while it streams and
// refuses a manifest whose references it lacks), its identity and the
// key it trusts.
type Site struct {
	Blobs    storage.BlobStore
	Uploads  storage.Uploads
	Metadata storage.Metadata
	Log      *slog.Logger
	// Name is the connected registry's name ("" with no parent); SiteID
	// its identity (SiteID).
	Name, SiteID string
	// Key returns the bundle key the site received at activation (nil
	// when it has none).
	Key func() ed25519.PublicKey
	// OnImport, when set, is told each import committed.
	OnImport func(Record)
	// Tags, when set, keeps an older bundle from moving a tag back.
	Tags *TagLog
}

// Record is an import committed, as the site reports it to its parent.
type Record struct {
	ID      string    `json:"id"`
	Issuer  string    `json:"issuer,omitempty"`
	Time    time.Time `json:"time"`
	Images  []Image   `json:"images"`
	Blobs   int64     `json:"blobsWritten"`
	Bytes   int64     `json:"bytesWritten"`
	Omitted int       `json:"omitted"`
}

// Session is one bundle being imported, opened with verified contents:
// it admits only the blobs and manifests those contents list, into the
// repositories of their images, and publishes the tags once every
// image's graph is present.
type Session struct {
	site     *Site
	store    *graph.Store
	Contents *Contents
	listed   map[digest.Digest]Blob
	repos    map[string]bool
	started  time.Time

	blobs, bytes atomic.Int64
}

// Summary is what opening a session reports.
type Summary struct {
	ID        string  `json:"id"`
	Issuer    string  `json:"issuer,omitempty"`
	Target    Target  `json:"target"`
	Base      *Base   `json:"base,omitempty"`
	Images    []Image `json:"images"`
	Blobs     int     `json:"blobs"`
	Bytes     int64   `json:"bytes"`
	Omitted   int     `json:"omitted"`
	Present   int     `json:"present"`
	ToWrite   int64   `json:"bytesToWrite"`
	KeyID     string  `json:"keyId"`
	Resumable bool    `json:"resumed"`
}

// Open verifies a bundle's contents before anything is written: the
// signature with the site's key (or, on a site that has none, with
// suppliedKey: `--bundle-key`), the target, and the base (every blob the
// bundle leaves out must be held here; the refusal names the missing
// ones).
func (s *Site) Open(ctx context.Context, contents, sig []byte, suppliedKey ed25519.PublicKey) (*Session, Summary, error) {
	key := s.Key()
	switch {
	case key == nil && suppliedKey == nil:
		return nil, Summary{}, fmt.Errorf("%w: this registry has no bundle key from a parent; give the root's public key (GET /api/v1/pki/bundle.pub at the root) with --bundle-key", ErrNoKey)
	case key != nil && suppliedKey != nil && !key.Equal(suppliedKey):
		return nil, Summary{}, fmt.Errorf("%w: --bundle-key %s is not the key this site received from its parent (%s)", ErrSignature, KeyID(suppliedKey), KeyID(key))
	case key == nil:
		key = suppliedKey
	}
	c, err := Verify(contents, sig, key)
	if err != nil {
		return nil, Summary{}, err
	}
	if err := c.Target.Accepts(s.Name, s.SiteID); err != nil {
		return nil, Summary{}, err
	}
	var missing []string
	var missingBytes int64
	for _, b := range c.Omitted {
		if _, err := s.Blobs.Stat(ctx, b.Digest); errors.Is(err, storage.ErrBlobUnknown) {
			missing = append(missing, string(b.Digest))
			missingBytes += b.Size
		} else if err != nil {
			return nil, Summary{}, fmt.Errorf("check bundle base: %w", err)
		}
	}
	if len(missing) > 0 {
		return nil, Summary{}, fmt.Errorf("%w: the bundle is a delta against inventory %s and leaves out %d blobs (%d bytes) this site does not hold: %s; import the bundle it builds on first, or export again from a fresh inventory (or --full)",
			ErrBase, baseName(c.Base), len(missing), missingBytes, listSome(missing, 5))
	}
	sess := &Session{site: s, Contents: c, listed: map[digest.Digest]Blob{}, repos: map[string]bool{}, started: time.Now()}
	sum := Summary{ID: c.ID, Issuer: c.Issuer, Target: c.Target, Base: c.Base, Images: c.Images, Blobs: len(c.Blobs), Bytes: c.Bytes(), Omitted: len(c.Omitted), KeyID: c.KeyID}
	for _, b := range c.Blobs {
		sess.listed[b.Digest] = b
		if _, err := s.Blobs.Stat(ctx, b.Digest); err == nil {
			sum.Present++
		} else {
			sum.ToWrite += b.Size
		}
	}
	sum.Resumable = sum.Present > 0
	sess.store = &graph.Store{Blobs: s.Blobs, Uploads: s.Uploads, Metadata: s.Metadata, Log: s.Log, From: "bundle " + c.ID,
		OnCommit: func(n int64) { sess.blobs.Add(1); sess.bytes.Add(n) }}
	for _, im := range c.Images {
		sess.repos[im.Repository] = true
	}
	return sess, sum, nil
}

func baseName(b *Base) string {
	if b == nil {
		return "(none: a full bundle)"
	}
	if b.Inventory == "" {
		return "(the root's record of the site)"
	}
	return string(b.Inventory)
}

func listSome(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
}

// check admits content d into repo.
func (s *Session) check(repo string, d digest.Digest, manifest bool) (Blob, error) {
	if !s.repos[repo] {
		return Blob{}, fmt.Errorf("%w: repository %s", ErrNotListed, repo)
	}
	b, ok := s.listed[d]
	if !ok || manifest != isManifest(b) {
		return Blob{}, fmt.Errorf("%w: %s in %s", ErrNotListed, d, repo)
	}
	return b, nil
}

// HasBlob reports whether repo holds blob d; a blob held elsewhere in the
// store is linked into repo (the bundle left it out for that reason).
func (s *Session) HasBlob(ctx context.Context, repo string, d digest.Digest, size int64) (bool, error) {
	if !s.repos[repo] {
		return false, fmt.Errorf("%w: repository %s", ErrNotListed, repo)
	}
	return s.store.HasBlob(ctx, repo, v1.Descriptor{Digest: d, Size: size})
}

// HasManifest reports whether repo holds manifest d, complete.
func (s *Session) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	if !s.repos[repo] {
		return false, fmt.Errorf("%w: repository %s", ErrNotListed, repo)
	}
	return s.store.HasManifest(ctx, repo, d)
}

// PushBlob writes blob d into repo from body, which must hold exactly
// the listed size and hash to d; the store commits nothing else.
func (s *Session) PushBlob(ctx context.Context, repo string, d digest.Digest, body io.Reader) error {
	b, err := s.check(repo, d, false)
	if err != nil {
		return err
	}
	used := false
	open := func(context.Context, int64) (io.ReadCloser, bool, error) {
		if used {
			return nil, false, fmt.Errorf("%w: blob %s: the upload broke off", graph.ErrInterrupted, d)
		}
		used = true
		return io.NopCloser(body), true, nil
	}
	err = s.store.PushBlob(ctx, repo, v1.Descriptor{Digest: d, Size: b.Size, MediaType: b.MediaType}, open)
	if err != nil {
		return fmt.Errorf("import blob %s: %w", d, err)
	}
	return nil
}

// PushManifest stores manifest d into repo; everything it references
// must be there already.
func (s *Session) PushManifest(ctx context.Context, repo string, d digest.Digest, body []byte) error {
	b, err := s.check(repo, d, true)
	if err != nil {
		return err
	}
	if got := oci.Digester(d, body); got != d || int64(len(body)) != b.Size {
		return fmt.Errorf("%w: manifest %s: content is %s (%d bytes, want %d)", graph.ErrDigest, d, got, len(body), b.Size)
	}
	m, err := oci.ParseManifest(b.MediaType, body)
	if err != nil {
		return fmt.Errorf("import manifest %s: %w", d, err)
	}
	n := graph.Node{Descriptor: v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: b.Size, ArtifactType: m.ArtifactType}, Body: body, Manifest: m}
	if err := s.store.PushManifest(ctx, repo, n); err != nil {
		return fmt.Errorf("import manifest %s: %w", d, err)
	}
	return nil
}

// Report is the outcome of a committed import.
type Report struct {
	ID        string   `json:"id"`
	Published []string `json:"published"`
	// Unchanged are images whose tags already pointed at the bundle's
	// digests.
	Unchanged    []string `json:"unchanged,omitempty"`
	BlobsWritten int64    `json:"blobsWritten"`
	BytesWritten int64    `json:"bytesWritten"`
	Seconds      float64  `json:"seconds"`
}

// Commit publishes the bundle's tags once every image's graph is present
// (a manifest the store holds is complete); if one is missing nothing is
// published.
func (s *Session) Commit(ctx context.Context) (Report, error) {
	var missing []string
	for _, im := range s.Contents.Images {
		ok, err := s.store.HasManifest(ctx, im.Repository, im.Digest)
		if err != nil {
			return Report{}, fmt.Errorf("commit bundle: %w", err)
		}
		if !ok {
			missing = append(missing, im.Ref()+"@"+string(im.Digest))
		}
	}
	if len(missing) > 0 {
		return Report{}, fmt.Errorf("%w: not every image is present, nothing published: %s", ErrIncomplete, listSome(missing, 5))
	}
	rep := Report{ID: s.Contents.ID}
	var move []Image
	for _, im := range s.Contents.Images {
		if im.Tag == "" {
			rep.Unchanged = append(rep.Unchanged, im.Ref())
			continue
		}
		cur, err := s.store.Metadata.GetManifest(ctx, im.Repository, im.Tag)
		if err == nil && cur.Digest == im.Digest {
			rep.Unchanged = append(rep.Unchanged, im.Ref())
			continue
		}
		if err := s.site.Tags.check(im.Ref(), s.Contents.Created); err != nil {
			return Report{}, fmt.Errorf("nothing published: %w", err)
		}
		move = append(move, im)
	}
	for _, im := range move {
		if err := s.store.Tag(ctx, im.Repository, v1.Descriptor{Digest: im.Digest}, im.Tag); err != nil {
			return rep, fmt.Errorf("publish %s: %w", im.Ref(), err)
		}
		rep.Published = append(rep.Published, im.Ref())
	}
	if err := s.site.Tags.record(append(slices.Clone(rep.Published), rep.Unchanged...), s.Contents.Created); err != nil {
		return rep, err
	}
	slices.Sort(rep.Published)
	rep.BlobsWritten, rep.BytesWritten = s.blobs.Load(), s.bytes.Load()
	rep.Seconds = time.Since(s.started).Seconds()
	if s.site.OnImport != nil {
		s.site.OnImport(Record{ID: s.Contents.ID, Issuer: s.Contents.Issuer, Time: time.Now().UTC(), Images: s.Contents.Images, Blobs: rep.BlobsWritten, Bytes: rep.BytesWritten, Omitted: len(s.Contents.Omitted)})
	}
	return rep, nil
}

// Sessions keeps the import sessions a site has open, by bundle id (a
// second open of the same bundle, after a crash, replaces the first).
type Sessions struct {
	mu   sync.Mutex
	open map[string]*Session
}

// maxSessions bounds the sessions kept; the oldest goes first.
const maxSessions = 16

// Put keeps s.
func (ss *Sessions) Put(s *Session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.open == nil {
		ss.open = map[string]*Session{}
	}
	for len(ss.open) >= maxSessions {
		var oldest *Session
		for _, o := range ss.open {
			if oldest == nil || o.started.Before(oldest.started) {
				oldest = o
			}
		}
		delete(ss.open, oldest.Contents.ID)
	}
	ss.open[s.Contents.ID] = s
}

// Get returns the open session of bundle id.
func (ss *Sessions) Get(id string) (*Session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.open[id]
	return s, ok
}
