package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Store is the local store as both ends of a copy: a Source (the outbox
// reads from it) and a Target (sync, pull-through and staging write into
// it). Blobs stream into an upload session that commits only once the
// digest verifies; a transfer that breaks off resumes where it stopped
// (with a Range request), within one PushBlob and across the retries of
// Copy. Concurrent pushes of one blob share one transfer.
type Store struct {
	Blobs    storage.BlobStore
	Uploads  storage.Uploads
	Metadata storage.Metadata
	// OnCommit, when set, is told the size of each blob committed.
	OnCommit func(size int64)
	// Log receives a warning for each transfer resumed or fetched again;
	// From names the source in it ("the parent").
	Log  *slog.Logger
	From string

	flight singleflight.Group
	mu     sync.Mutex
	// partial holds the upload session of a blob whose transfer broke
	// off, by repository and digest, for the next attempt to resume.
	partial map[string]string
}

// resumeLimit bounds the resumptions of one transfer within one PushBlob
// call that make no progress; beyond it the error goes to Copy's retry
// (with its backoff), and the next call resumes the same session.
const resumeLimit = 3

// Manifest implements Source.
func (s *Store) Manifest(ctx context.Context, repo string, d digest.Digest, _ int64) ([]byte, string, error) {
	rec, err := s.Metadata.GetManifest(ctx, repo, string(d))
	if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrRepositoryUnknown) {
		return nil, "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, "", err
	}
	return rec.Body, rec.MediaType, nil
}

// Blob implements Source.
func (s *Store) Blob(ctx context.Context, repo string, desc v1.Descriptor, offset int64) (io.ReadCloser, bool, error) {
	if _, err := s.Metadata.BlobSize(ctx, repo, desc.Digest); err != nil {
		return nil, false, fmt.Errorf("%w: blob %s in %s: %w", ErrNotFound, desc.Digest, repo, err)
	}
	f, _, err := s.Blobs.Open(ctx, desc.Digest)
	if errors.Is(err, storage.ErrBlobUnknown) {
		return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, false, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			_ = f.Close()
			return nil, false, fmt.Errorf("blob %s: seek to %d: %w", desc.Digest, offset, err)
		}
	}
	return f, true, nil
}

// Referrers implements Source.
func (s *Store) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	return s.Metadata.Referrers(ctx, repo, d)
}

// HasManifest implements Target.
func (s *Store) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	_, err := s.Metadata.GetManifest(ctx, repo, string(d))
	if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrRepositoryUnknown) {
		return false, nil
	}
	return err == nil, err
}

// HasBlob implements Target: a blob the store holds for another
// repository is linked into repo (the store shares blobs).
func (s *Store) HasBlob(ctx context.Context, repo string, desc v1.Descriptor) (bool, error) {
	n, err := s.Blobs.Stat(ctx, desc.Digest)
	if errors.Is(err, storage.ErrBlobUnknown) {
		// Not held, or linked but gone (quarantined as corrupt, or
		// lost): it must be fetched again.
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := s.Metadata.BlobSize(ctx, repo, desc.Digest); err == nil {
		return true, nil
	}
	return true, s.Metadata.LinkBlob(ctx, repo, desc.Digest, n)
}

// PushBlob implements Target.
func (s *Store) PushBlob(ctx context.Context, repo string, desc v1.Descriptor, open Opener) error {
	var err error
	for range maxJoins {
		var shared bool
		_, err, shared = s.flight.Do(string(desc.Digest), func() (any, error) {
			if _, err := s.Blobs.Stat(ctx, desc.Digest); err == nil {
				return nil, nil
			}
			return nil, s.transfer(ctx, repo, desc, open)
		})
		// A transfer shared with a copy that gave up (its context
		// cancelled: another blob of its graph failed) ends for that copy
		// only; this one starts or joins another.
		if !shared || ctx.Err() != nil || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			break
		}
	}
	if err != nil {
		return err
	}
	n, err := s.Blobs.Stat(ctx, desc.Digest)
	if err != nil {
		return err
	}
	return s.Metadata.LinkBlob(ctx, repo, desc.Digest, n)
}

// maxJoins bounds how often PushBlob joins a shared transfer that another
// copy abandoned before it runs one itself.
const maxJoins = 8

func partialKey(repo string, d digest.Digest) string { return repo + "@" + string(d) }

// session returns the upload session to write blob d into: the one a
// broken transfer left, or a new one.
func (s *Store) session(ctx context.Context, repo string, d digest.Digest) (string, error) {
	s.mu.Lock()
	id, ok := s.partial[partialKey(repo, d)]
	delete(s.partial, partialKey(repo, d))
	s.mu.Unlock()
	if ok {
		if _, err := s.Uploads.UploadSize(ctx, repo, id); err == nil {
			return id, nil
		}
	}
	return s.Uploads.StartUpload(ctx, repo)
}

// keep leaves session id for the next attempt at blob d.
func (s *Store) keep(repo string, d digest.Digest, id string) {
	s.mu.Lock()
	if s.partial == nil {
		s.partial = map[string]string{}
	}
	s.partial[partialKey(repo, d)] = id
	s.mu.Unlock()
}

// AbortBlob implements BlobAborter: the partial content is discarded.
func (s *Store) AbortBlob(ctx context.Context, repo string, desc v1.Descriptor) {
	s.mu.Lock()
	id, ok := s.partial[partialKey(repo, desc.Digest)]
	delete(s.partial, partialKey(repo, desc.Digest))
	s.mu.Unlock()
	if ok {
		_ = s.Uploads.CancelUpload(ctx, repo, id)
	}
}

// transfer streams the blob into an upload session and commits it once
// its size and digest verify. A stream that breaks off is resumed at the
// session's size while each resumption makes progress.
func (s *Store) transfer(ctx context.Context, repo string, desc v1.Descriptor, open Opener) (err error) {
	id, err := s.session(ctx, repo, desc.Digest)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		switch {
		case done:
		case errors.Is(err, ErrInterrupted) && ctx.Err() == nil:
			s.keep(repo, desc.Digest, id) // resumed by the next attempt
		default:
			_ = s.Uploads.CancelUpload(context.WithoutCancel(ctx), repo, id)
		}
	}()
	stalls := 0
	for {
		offset, err := s.Uploads.UploadSize(ctx, repo, id)
		if err != nil {
			return err
		}
		n, err := s.append(ctx, repo, &id, desc, offset, open)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrInterrupted) || ctx.Err() != nil {
			return err
		}
		if n <= offset {
			if stalls++; stalls >= resumeLimit {
				return err
			}
		} else {
			stalls = 0
		}
		s.warn("blob transfer interrupted; resuming", repo, desc.Digest, "offset", n, "err", err)
	}
	got, err := s.Uploads.CommitUpload(ctx, repo, id, desc.Digest)
	if errors.Is(err, storage.ErrDigestMismatch) {
		s.warn("blob digest mismatch from "+s.from()+"; fetching again", repo, desc.Digest)
		done = true // the store discarded the session
		return fmt.Errorf("%w: blob %s: %w", ErrDigest, desc.Digest, err)
	}
	if err != nil {
		return err
	}
	done = true
	if s.OnCommit != nil {
		s.OnCommit(got)
	}
	return nil
}

func (s *Store) from() string {
	if s.From == "" {
		return "the source"
	}
	return s.From
}

func (s *Store) warn(msg, repo string, d digest.Digest, args ...any) {
	if s.Log != nil {
		s.Log.Warn(msg, append([]any{"repo", repo, "digest", string(d), "source", s.from()}, args...)...)
	}
}

// append writes the source's content from offset into session *id and
// returns the session's size. A source that ignores the offset restarts
// the session.
func (s *Store) append(ctx context.Context, repo string, id *string, desc v1.Descriptor, offset int64, open Opener) (int64, error) {
	body, ranged, err := open(ctx, offset)
	if err != nil {
		return offset, err
	}
	defer body.Close()
	if offset > 0 && !ranged {
		_ = s.Uploads.CancelUpload(ctx, repo, *id)
		if *id, err = s.Uploads.StartUpload(ctx, repo); err != nil {
			return 0, err
		}
		offset = 0
	}
	var r io.Reader = body
	if desc.Size >= 0 {
		r = io.LimitReader(body, desc.Size-offset+1)
	}
	n, err := s.Uploads.AppendUpload(ctx, repo, *id, offset, r)
	if storage.NoSpace(err) {
		// Retrying cannot help until space is freed.
		return n, storage.NeedSpace(err, desc.Size-offset)
	}
	if err != nil {
		return n, fmt.Errorf("%w: blob %s at byte %d: %w", ErrInterrupted, desc.Digest, n, err)
	}
	if desc.Size >= 0 && n < desc.Size {
		return n, fmt.Errorf("%w: blob %s: transfer ended at %d of %d bytes", ErrInterrupted, desc.Digest, n, desc.Size)
	}
	if desc.Size >= 0 && n > desc.Size {
		return n, fmt.Errorf("%w: blob %s: the source sent more than the %d bytes its descriptor declares", ErrDigest, desc.Digest, desc.Size)
	}
	return n, nil
}

// PushManifest implements Target.
func (s *Store) PushManifest(ctx context.Context, repo string, n Node) error {
	return s.PushManifestTagged(ctx, repo, n, nil)
}

// PushManifestTagged implements TaggedPusher.
func (s *Store) PushManifestTagged(ctx context.Context, repo string, n Node, tags []string) error {
	rec, optional := storage.NewManifestRecord(n.Descriptor.Digest, n.Manifest, n.Body)
	return s.Metadata.PutManifest(ctx, repo, rec, tags, optional)
}

// Tag implements Target.
func (s *Store) Tag(ctx context.Context, repo string, desc v1.Descriptor, tag string) error {
	rec, err := s.Metadata.GetManifest(ctx, repo, string(desc.Digest))
	if err != nil {
		return err
	}
	return s.Metadata.PutManifest(ctx, repo, rec, []string{tag}, nil)
}
