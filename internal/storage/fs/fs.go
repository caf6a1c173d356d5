// Package fs stores blobs and upload sessions on the local filesystem.
//
// Layout under the root directory:
//
//	blobs/<algorithm>/<first two hex digits>/<hex>   complete, verified blobs
//	uploads/<id>                                     session content
//	uploads/<id>.repo                                the session's repository
//	uploads/<id>.sync                                marks a session of the sync engine
//	quarantine/<algorithm>-<hex>-<time>              blobs found corrupt, moved aside
//
// A blob appears under blobs/ only by rename(2) after its content has been
// verified and fsynced, so a reader never sees a partial blob. A file
// damaged later (truncated, overwritten, rotted) is caught before it is
// served: Open hashes each blob the first time it is opened after start
// and compares the file's size and change time with the verified ones on
// every later open; Scrub re-reads them all. A blob that fails is moved
// to quarantine/ and is unknown from then on.
package fs

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Store is a filesystem blob store with resumable uploads.
type Store struct {
	root    string
	log     *slog.Logger
	minFree uint64

	mu       sync.Mutex
	sessions map[string]*session

	// commitMu orders the renames that put a blob in place (commit) and
	// take it away (quarantine), so that a corrupt copy found by one
	// goroutine is never confused with a good copy just committed.
	commitMu sync.Mutex
	// verified maps each blob whose content was hashed since start to the
	// identity of the file that held it.
	vmu      sync.RWMutex
	verified map[digest.Digest]fileID
	flight   singleflight.Group
	stats    counters
	space    spaceState
}

// Options configure a Store.
type Options struct {
	// Logger receives the errors an operator must act on: blobs found
	// corrupt and quarantined, the data volume running full.
	Logger *slog.Logger
	// MinFreeBytes is the free space on the data volume below which
	// writes are reported degraded (default 64 MiB).
	MinFreeBytes uint64
}

// Root returns the store's directory, on the data volume.
func (s *Store) Root() string { return s.root }

// DefaultMinFreeBytes is the default of Options.MinFreeBytes.
const DefaultMinFreeBytes = 64 << 20

// session tracks the running hash of an upload so that committing does not
// read the content again. It is lost on restart; the content is then
// hashed once more at commit time.
type session struct {
	mu   sync.Mutex
	hash hash.Hash // sha256 of the first size bytes, or nil when unknown
	size int64
}

var (
	_ storage.BlobStore = (*Store)(nil)
	_ storage.Uploads   = (*Store)(nil)
)

// New opens (creating if needed) a store rooted at dir, with default
// options.
func New(dir string) (*Store, error) { return NewWithOptions(dir, Options{}) }

// NewWithOptions opens (creating if needed) a store rooted at dir.
func NewWithOptions(dir string, o Options) (*Store, error) {
	for _, sub := range []string{"blobs", "uploads"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("create storage directory: %w", err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	return &Store{root: dir, log: o.Logger, minFree: o.MinFreeBytes, sessions: map[string]*session{}, verified: map[digest.Digest]fileID{}}, nil
}

func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("%w: %s: %w", storage.ErrBlobUnknown, d, err)
	}
	hex := d.Encoded()
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), hex[:2], hex), nil
}

// Stat implements storage.BlobStore.
func (s *Store) Stat(_ context.Context, d digest.Digest) (int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if _, err := s.checkSize(d, p, fi, TriggerRead); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Open implements storage.BlobStore. The reader is an *os.File. A blob
// not yet verified since start is hashed first (once, however many open
// it at the same time); a blob that fails is quarantined and reported as
// ErrBlobUnknown wrapped with ErrBlobCorrupt.
func (s *Store) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if err := s.check(d, p, f, fi); err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// Delete implements storage.BlobStore.
func (s *Store) Delete(_ context.Context, d digest.Digest) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.forgetVerified(d)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// uploadPath validates id (a canonical UUID, so it can never name a path
// outside uploads/) and returns its content path.
func (s *Store) uploadPath(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return "", fmt.Errorf("%w: %q", storage.ErrUploadUnknown, id)
	}
	return filepath.Join(s.root, "uploads", id), nil
}

// checkSession verifies that upload id exists and belongs to repo.
func (s *Store) checkSession(repo, id string) (string, error) {
	p, err := s.uploadPath(id)
	if err != nil {
		return "", err
	}
	owner, err := os.ReadFile(p + ".repo")
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", storage.ErrUploadUnknown, id)
	}
	if err != nil {
		return "", fmt.Errorf("read upload %s: %w", id, err)
	}
	if string(owner) != repo {
		return "", fmt.Errorf("%w: %s belongs to another repository", storage.ErrUploadUnknown, id)
	}
	return p, nil
}

func (s *Store) session(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sessions[id]
	if !ok {
		st = &session{size: -1}
		s.sessions[id] = st
	}
	return st
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

// StartUpload implements storage.Uploads.
func (s *Store) StartUpload(ctx context.Context, repo string) (string, error) {
	id := uuid.NewString()
	p := filepath.Join(s.root, "uploads", id)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return "", s.noSpace(fmt.Errorf("create upload: %w", err))
	}
	if err := f.Close(); err != nil {
		return "", s.noSpace(fmt.Errorf("create upload: %w", err))
	}
	if err := os.WriteFile(p+".repo", []byte(repo), 0o640); err != nil {
		// WriteFile may have created the file before the write failed.
		_ = os.Remove(p + ".repo")
		_ = os.Remove(p)
		return "", s.noSpace(fmt.Errorf("create upload: %w", err))
	}
	if storage.OriginFrom(ctx) == storage.OriginSync {
		// The sync engine keeps a session's ID in memory only: after a
		// restart nothing resumes it, and PurgeUploads may remove it.
		if err := os.WriteFile(p+".sync", nil, 0o640); err != nil {
			_ = os.Remove(p + ".sync")
			_ = os.Remove(p + ".repo")
			_ = os.Remove(p)
			return "", s.noSpace(fmt.Errorf("create upload: %w", err))
		}
	}
	s.mu.Lock()
	s.sessions[id] = &session{hash: sha256.New()}
	s.mu.Unlock()
	return id, nil
}

// UploadSize implements storage.Uploads.
func (s *Store) UploadSize(_ context.Context, repo, id string) (int64, error) {
	p, err := s.checkSession(repo, id)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", storage.ErrUploadUnknown, id)
	}
	return fi.Size(), nil
}

// AppendUpload implements storage.Uploads.
func (s *Store) AppendUpload(_ context.Context, repo, id string, offset int64, r io.Reader) (int64, error) {
	p, err := s.checkSession(repo, id)
	if err != nil {
		return 0, err
	}
	st := s.session(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", storage.ErrUploadUnknown, id)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat upload %s: %w", id, err)
	}
	size := fi.Size()
	if offset >= 0 && offset != size {
		return size, fmt.Errorf("%w: got offset %d, upload holds %d bytes", storage.ErrOffsetMismatch, offset, size)
	}
	if st.hash == nil || st.size != size {
		// The running hash is lost (restart) or out of step: hash at commit.
		st.hash = nil
	}
	var w io.Writer = f
	var state []byte // the running hash before this append
	if st.hash != nil {
		w = io.MultiWriter(f, st.hash)
		state, _ = st.hash.(encoding.BinaryMarshaler).MarshalBinary()
	}
	buf := copyBuffers.Get().(*[]byte)
	n, copyErr := io.CopyBuffer(w, r, *buf)
	copyBuffers.Put(buf)
	if copyErr != nil && storage.NoSpace(copyErr) {
		return s.undoAppend(f, st, id, size, state, copyErr)
	}
	size += n
	st.size = size
	if copyErr != nil {
		// A short write may have left the file and the hash out of step.
		st.hash = nil
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		return size, fmt.Errorf("append to upload %s: %w", id, copyErr)
	}
	return size, nil
}

// copyBuffers hold the buffers uploads are copied through: 256 KiB
// instead of io.Copy's 32 KiB means an eighth of the read and write system
// calls for large blobs, pushed or synced.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// CommitUpload implements storage.Uploads.
func (s *Store) CommitUpload(ctx context.Context, repo, id string, want digest.Digest) (int64, error) {
	p, err := s.checkSession(repo, id)
	if err != nil {
		return 0, err
	}
	dst, err := s.blobPath(want)
	if err != nil {
		// No content has a malformed digest: a mismatch, which discards
		// the session as the contract says.
		_ = s.CancelUpload(ctx, repo, id)
		return 0, fmt.Errorf("%w: %w", storage.ErrDigestMismatch, err)
	}
	st := s.session(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", storage.ErrUploadUnknown, id)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return 0, fmt.Errorf("stat upload %s: %w", id, err)
	}
	got, err := s.sum(f, st, fi.Size(), want.Algorithm())
	if err != nil {
		_ = f.Close()
		if errors.Is(err, storage.ErrDigestMismatch) {
			_ = s.CancelUpload(ctx, repo, id)
		}
		return 0, err
	}
	if got != want {
		_ = f.Close()
		_ = s.CancelUpload(ctx, repo, id)
		return 0, fmt.Errorf("%w: content is %s, expected %s", storage.ErrDigestMismatch, got, want)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return 0, s.noSpace(fmt.Errorf("sync upload %s: %w", id, err))
	}
	if err := f.Close(); err != nil {
		return 0, s.noSpace(fmt.Errorf("close upload %s: %w", id, err))
	}
	if err := s.place(p, dst, want); err != nil {
		return 0, err
	}
	_ = os.Remove(p + ".repo")
	_ = os.Remove(p + ".sync")
	s.forget(id)
	return fi.Size(), nil
}

// place renames verified content at p to blob path dst and remembers it
// as verified.
func (s *Store) place(p, dst string, d digest.Digest) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return s.noSpace(fmt.Errorf("create blob directory: %w", err))
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := os.Rename(p, dst); err != nil {
		return s.noSpace(fmt.Errorf("commit blob %s: %w", d, err))
	}
	// The file's time is the commit's, so that garbage collection counts
	// its grace period from when the blob appeared, not from the upload's
	// last write.
	now := time.Now()
	_ = os.Chtimes(dst, now, now)
	if fi, err := os.Stat(dst); err == nil {
		s.markVerified(d, idOf(fi))
	}
	return nil
}

// sum returns the digest of the upload's content, from the running hash
// when it is valid, by reading the file otherwise.
func (s *Store) sum(f *os.File, st *session, size int64, alg digest.Algorithm) (digest.Digest, error) {
	if alg == digest.SHA256 && st.hash != nil && st.size == size {
		// Sum on a copy so that a failed commit keeps the running state.
		if m, ok := st.hash.(encoding.BinaryMarshaler); ok {
			state, err := m.MarshalBinary()
			if err == nil {
				h := sha256.New()
				if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err == nil {
					return digest.NewDigest(alg, h), nil
				}
			}
		}
	}
	if !alg.Available() {
		return "", fmt.Errorf("%w: algorithm %s unavailable", storage.ErrDigestMismatch, alg)
	}
	h := alg.Hash()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", fmt.Errorf("hash upload: %w", err)
	}
	return digest.NewDigest(alg, h), nil
}

// CancelUpload implements storage.Uploads.
func (s *Store) CancelUpload(_ context.Context, repo, id string) error {
	p, err := s.checkSession(repo, id)
	if err != nil {
		return err
	}
	s.forget(id)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cancel upload %s: %w", id, err)
	}
	if err := os.Remove(p + ".repo"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cancel upload %s: %w", id, err)
	}
	if err := os.Remove(p + ".sync"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cancel upload %s: %w", id, err)
	}
	return nil
}

// PurgeUploads removes abandoned upload sessions: each session last
// written before cutoff (the OCI distribution spec lets a registry expire
// upload sessions) and, when syncToo is set, each session the sync engine
// opened, which nothing resumes after a restart. It returns the number of
// sessions removed and the bytes of content they held.
func (s *Store) PurgeUploads(_ context.Context, cutoff time.Time, syncToo bool) (sessions int, bytes int64, err error) {
	dir := filepath.Join(s.root, "uploads")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("list uploads: %w", err)
	}
	type upload struct {
		newest time.Time
		size   int64
		sync   bool
		files  []string
	}
	byID := map[string]*upload{}
	for _, e := range entries {
		id, _, _ := strings.Cut(e.Name(), ".")
		if u, err := uuid.Parse(id); err != nil || u.String() != id {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		u := byID[id]
		if u == nil {
			u = &upload{}
			byID[id] = u
		}
		if fi.ModTime().After(u.newest) {
			u.newest = fi.ModTime()
		}
		switch e.Name() {
		case id:
			u.size = fi.Size()
		case id + ".sync":
			u.sync = true
		}
		u.files = append(u.files, e.Name())
	}
	var errs []error
	for id, u := range byID {
		if !u.newest.Before(cutoff) && !(syncToo && u.sync) {
			continue
		}
		s.forget(id)
		// Content first: a .repo file left by a crash here is purged next
		// time, as it is older than the cutoff.
		slices.SortFunc(u.files, func(a, b string) int { return len(a) - len(b) })
		removed := true
		for _, f := range u.files {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("purge upload %s: %w", id, err))
				removed = false
			}
		}
		if removed {
			sessions++
			bytes += u.size
		}
	}
	return sessions, bytes, errors.Join(errs...)
}
