// Package memory implements the storage roles in memory: blobs, upload
// sessions and metadata (with the change feed) in maps behind one lock
// each. It passes the storagetest suites, so tests of the layers above
// storage (the graph copy, the sync engine, the registry API) run on it
// without a disk; nothing survives the process.
package memory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Blobs is a storage.BlobStore and storage.Uploads in memory.
type Blobs struct {
	mu       sync.Mutex
	blobs    map[digest.Digest][]byte
	sessions map[string]*session
}

type session struct {
	repo string
	buf  []byte
}

var (
	_ storage.BlobStore = (*Blobs)(nil)
	_ storage.Uploads   = (*Blobs)(nil)
)

// NewBlobs returns an empty blob store.
func NewBlobs() *Blobs {
	return &Blobs{blobs: map[digest.Digest][]byte{}, sessions: map[string]*session{}}
}

// Stat implements storage.BlobStore.
func (b *Blobs) Stat(_ context.Context, d digest.Digest) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.blobs[d]
	if !ok {
		return 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	return int64(len(p)), nil
}

type readSeekCloser struct{ *bytes.Reader }

func (readSeekCloser) Close() error { return nil }

// Open implements storage.BlobStore. Blobs are never changed in place, so
// the reader shares the stored bytes.
func (b *Blobs) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.blobs[d]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	return readSeekCloser{bytes.NewReader(p)}, int64(len(p)), nil
}

// Delete implements storage.BlobStore.
func (b *Blobs) Delete(_ context.Context, d digest.Digest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.blobs, d)
	return nil
}

// StartUpload implements storage.Uploads.
func (b *Blobs) StartUpload(_ context.Context, repo string) (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("upload ID: %w", err)
	}
	s := hex.EncodeToString(id[:])
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sessions[s] = &session{repo: repo}
	return s, nil
}

// sessionOf returns the open session id of repo; the caller holds b.mu.
func (b *Blobs) sessionOf(repo, id string) (*session, error) {
	s, ok := b.sessions[id]
	if !ok || s.repo != repo {
		return nil, fmt.Errorf("%w: %s in %s", storage.ErrUploadUnknown, id, repo)
	}
	return s, nil
}

// UploadSize implements storage.Uploads.
func (b *Blobs) UploadSize(_ context.Context, repo, id string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.sessionOf(repo, id)
	if err != nil {
		return 0, err
	}
	return int64(len(s.buf)), nil
}

// AppendUpload implements storage.Uploads. The body is read outside the
// lock and appended in one step, so that concurrent appends to one session
// never interleave their bytes.
func (b *Blobs) AppendUpload(ctx context.Context, repo, id string, offset int64, r io.Reader) (int64, error) {
	size, err := b.UploadSize(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	if offset >= 0 && offset != size {
		return size, fmt.Errorf("%w: at %d, session holds %d", storage.ErrOffsetMismatch, offset, size)
	}
	p, rerr := io.ReadAll(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.sessionOf(repo, id)
	if err != nil {
		return 0, err
	}
	if offset >= 0 && int64(len(s.buf)) != offset {
		return int64(len(s.buf)), fmt.Errorf("%w: at %d, session holds %d", storage.ErrOffsetMismatch, offset, len(s.buf))
	}
	s.buf = append(s.buf, p...)
	if rerr != nil {
		return int64(len(s.buf)), fmt.Errorf("upload %s: %w", id, rerr)
	}
	return int64(len(s.buf)), nil
}

// CommitUpload implements storage.Uploads.
func (b *Blobs) CommitUpload(_ context.Context, repo, id string, want digest.Digest) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.sessionOf(repo, id)
	if err != nil {
		return 0, err
	}
	delete(b.sessions, id)
	if err := want.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %s: %w", storage.ErrDigestMismatch, want, err)
	}
	if got := want.Algorithm().FromBytes(s.buf); got != want {
		return 0, fmt.Errorf("%w: upload is %s, expected %s", storage.ErrDigestMismatch, got, want)
	}
	if _, ok := b.blobs[want]; !ok {
		b.blobs[want] = s.buf
	}
	return int64(len(s.buf)), nil
}

// CancelUpload implements storage.Uploads.
func (b *Blobs) CancelUpload(_ context.Context, repo, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.sessionOf(repo, id); err != nil {
		return err
	}
	delete(b.sessions, id)
	return nil
}

// Metadata is a storage.Metadata in memory.
type Metadata struct {
	mu    sync.RWMutex
	repos map[string]*repository
}

type repository struct {
	blobs     map[digest.Digest]int64
	manifests map[digest.Digest]*storage.ManifestRecord
	tags      map[string]digest.Digest
	// referrers holds, by subject, the manifests that refer to it.
	referrers map[digest.Digest]map[digest.Digest]bool
	changes   []storage.Change
}

var _ storage.Metadata = (*Metadata)(nil)

// NewMetadata returns an empty metadata store.
func NewMetadata() *Metadata { return &Metadata{repos: map[string]*repository{}} }

// repo returns repo's record, creating it; the caller holds the write lock.
func (m *Metadata) repo(name string) *repository {
	r, ok := m.repos[name]
	if !ok {
		r = &repository{blobs: map[digest.Digest]int64{}, manifests: map[digest.Digest]*storage.ManifestRecord{},
			tags: map[string]digest.Digest{}, referrers: map[digest.Digest]map[digest.Digest]bool{}}
		m.repos[name] = r
	}
	return r
}

// record appends c to the repository's change feed.
func (r *repository) record(c storage.Change) {
	c.Seq = uint64(len(r.changes)) + 1
	c.Time = time.Now().UTC()
	r.changes = append(r.changes, c)
}

// LinkBlob implements storage.Metadata.
func (m *Metadata) LinkBlob(_ context.Context, repo string, d digest.Digest, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.repo(repo).blobs[d] = size
	return nil
}

// BlobSize implements storage.Metadata.
func (m *Metadata) BlobSize(_ context.Context, repo string, d digest.Digest) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r, ok := m.repos[repo]; ok {
		if size, ok := r.blobs[d]; ok {
			return size, nil
		}
	}
	return 0, fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
}

// BlobRepositories implements storage.Metadata.
func (m *Metadata) BlobRepositories(_ context.Context, d digest.Digest) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for _, name := range slices.Sorted(maps.Keys(m.repos)) {
		if _, ok := m.repos[name].blobs[d]; ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// UnlinkBlob implements storage.Metadata.
func (m *Metadata) UnlinkBlob(_ context.Context, repo string, d digest.Digest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.repos[repo]
	if _, linked := r.blobsOf()[d]; !ok || !linked {
		return fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
	}
	delete(r.blobs, d)
	return nil
}

// blobsOf is r's blob links (none for a nil repository).
func (r *repository) blobsOf() map[digest.Digest]int64 {
	if r == nil {
		return nil
	}
	return r.blobs
}

// PutManifest implements storage.Metadata.
func (m *Metadata) PutManifest(ctx context.Context, repo string, rec *storage.ManifestRecord, tags []string, optional map[digest.Digest]bool) error {
	origin := storage.OriginFrom(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	existing := m.repos[repo]
	for _, d := range rec.Blobs {
		if _, ok := existing.blobsOf()[d]; !ok && !optional[d] {
			return fmt.Errorf("%w: blob %s", storage.ErrManifestBlobUnknown, d)
		}
	}
	for _, d := range rec.Manifests {
		if existing == nil || existing.manifests[d] == nil {
			return fmt.Errorf("%w: manifest %s", storage.ErrManifestBlobUnknown, d)
		}
	}
	r := m.repo(repo)
	stored := *rec
	stored.Body = bytes.Clone(rec.Body)
	r.manifests[rec.Digest] = &stored
	for _, t := range tags {
		prev, ok := r.tags[t]
		if ok && prev == rec.Digest {
			continue
		}
		r.tags[t] = rec.Digest
		r.record(storage.Change{Tag: t, Digest: rec.Digest, Prev: prev, Op: storage.ChangePut, Origin: origin})
	}
	if rec.Subject != "" && !r.referrers[rec.Subject][rec.Digest] {
		if r.referrers[rec.Subject] == nil {
			r.referrers[rec.Subject] = map[digest.Digest]bool{}
		}
		r.referrers[rec.Subject][rec.Digest] = true
		r.record(storage.Change{Digest: rec.Digest, Op: storage.ChangeRefer, Origin: origin})
	}
	return nil
}

// GetManifest implements storage.Metadata. The record returned is a copy
// of the stored one's fields, sharing its body and slices.
func (m *Metadata) GetManifest(_ context.Context, repo, ref string) (*storage.ManifestRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.repos[repo]
	if !ok {
		return nil, fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, ref)
	}
	d := digest.Digest(ref)
	if !oci.IsDigest(ref) {
		if d, ok = r.tags[ref]; !ok {
			return nil, fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, ref)
		}
	}
	rec, ok := r.manifests[d]
	if !ok {
		return nil, fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, ref)
	}
	out := *rec
	return &out, nil
}

// DeleteManifest implements storage.Metadata.
func (m *Metadata) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.repos[repo]
	if !ok || r.manifests[d] == nil {
		return fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, d)
	}
	if s := r.manifests[d].Subject; s != "" {
		delete(r.referrers[s], d)
	}
	for _, t := range slices.Sorted(maps.Keys(r.tags)) {
		if r.tags[t] == d {
			delete(r.tags, t)
			r.record(storage.Change{Tag: t, Prev: d, Op: storage.ChangeDelete, Origin: storage.OriginFrom(ctx)})
		}
	}
	delete(r.manifests, d)
	return nil
}

// DeleteTag implements storage.Metadata.
func (m *Metadata) DeleteTag(ctx context.Context, repo, tag string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.repos[repo]
	if !ok {
		return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, tag)
	}
	prev, ok := r.tags[tag]
	if !ok {
		return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, tag)
	}
	delete(r.tags, tag)
	r.record(storage.Change{Tag: tag, Prev: prev, Op: storage.ChangeDelete, Origin: storage.OriginFrom(ctx)})
	return nil
}

// page returns up to n of the sorted keys after last, and whether more
// follow.
func page(keys []string, last string, n int) ([]string, bool) {
	i := 0
	if last != "" {
		i = sort.SearchStrings(keys, last)
		if i < len(keys) && keys[i] == last {
			i++
		}
	}
	out := []string{}
	for ; i < len(keys); i++ {
		if len(out) == n {
			return out, true
		}
		out = append(out, keys[i])
	}
	return out, false
}

// Tags implements storage.Metadata.
func (m *Metadata) Tags(_ context.Context, repo, last string, n int) ([]string, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.repos[repo]
	if !ok {
		return nil, false, fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
	}
	out, more := page(slices.Sorted(maps.Keys(r.tags)), last, n)
	return out, more, nil
}

// Repositories implements storage.Metadata.
func (m *Metadata) Repositories(_ context.Context, last string, n int) ([]string, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out, more := page(slices.Sorted(maps.Keys(m.repos)), last, n)
	return out, more, nil
}

// Referrers implements storage.Metadata.
func (m *Metadata) Referrers(_ context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []v1.Descriptor{}
	r, ok := m.repos[repo]
	if !ok {
		return out, nil
	}
	for _, ref := range slices.Sorted(maps.Keys(r.referrers[d])) {
		if rec, ok := r.manifests[ref]; ok {
			out = append(out, rec.Descriptor())
		}
	}
	return out, nil
}

// Changes implements storage.Metadata.
func (m *Metadata) Changes(_ context.Context, repo string, since uint64, n int) ([]storage.Change, uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.repos[repo]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
	}
	head := uint64(len(r.changes))
	out := []storage.Change{}
	for i := since; i < head && len(out) < n; i++ {
		out = append(out, r.changes[i])
	}
	return out, head, nil
}

// Close implements storage.Metadata.
func (m *Metadata) Close() error { return nil }

// Store is a whole local store in memory: blobs, upload sessions and
// metadata, for tests that need all three roles.
type Store struct {
	*Blobs
	*Metadata
}

// New returns an empty Store.
func New() Store { return Store{Blobs: NewBlobs(), Metadata: NewMetadata()} }
