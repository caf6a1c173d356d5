package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/outpost-registry/outpost/internal/storage"
)

// session is the state object of an upload session, uploads/<id>/state.
// Every change to it is a conditional write on the ETag it was read with,
// so replicas serialize on it: the writer that holds Lock (until
// LockUntil) is the only one changing the session's content.
type session struct {
	Repo    string    `json:"repo"`
	Started time.Time `json:"started"`
	// Updated is when content was last appended (PurgeUploads).
	Updated time.Time `json:"updated"`
	// Size is the bytes the session holds: its parts and then its tail.
	Size int64 `json:"size"`
	// MPU is the multipart upload of the session's content at
	// uploads/<id>/data, created with the first full part.
	MPU   string `json:"mpu,omitempty"`
	Parts []part `json:"parts,omitempty"`
	// Tail is the key of the object holding the bytes after the last
	// part (fewer than a part), or empty.
	Tail string `json:"tail,omitempty"`
	// SHA256 is the marshalled state of a SHA-256 of the content so far,
	// so that committing a sha256 blob reads nothing back.
	SHA256 []byte `json:"sha256"`
	// Staged is set once a commit completed the multipart upload: the
	// content is whole at uploads/<id>/data, and the session takes no
	// more appends.
	Staged bool `json:"staged,omitempty"`

	Lock      string    `json:"lock,omitempty"`
	LockUntil time.Time `json:"lockUntil,omitzero"`
}

type part struct {
	N    int32  `json:"n"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

func (st *session) partBytes() int64 {
	var n int64
	for _, p := range st.Parts {
		n += p.Size
	}
	return n
}

func (s *Store) sessionDir(id string) string { return s.prefix + "uploads/" + id + "/" }

// validID reports whether id can name a session: IDs are UUIDs, so that
// no ID reaches outside its session's keys.
func validID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// StartUpload implements storage.Uploads.
func (s *Store) StartUpload(ctx context.Context, repo string) (string, error) {
	id := uuid.NewString()
	now := time.Now().UTC()
	st := &session{Repo: repo, Started: now, Updated: now, SHA256: emptySHA256()}
	b, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("s3: start upload: %w", err)
	}
	key := s.sessionDir(id) + "state"
	if _, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b), IfNoneMatch: aws.String("*")}); err != nil {
		return "", fmt.Errorf("s3: start upload in %s: %w", repo, err)
	}
	return id, nil
}

// load reads the session's state and its ETag, or returns
// ErrUploadUnknown when id is not an open session of repo.
func (s *Store) load(ctx context.Context, repo, id string) (*session, string, error) {
	if !validID(id) {
		return nil, "", fmt.Errorf("%w: %q", storage.ErrUploadUnknown, id)
	}
	st, etag, err := s.loadAny(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if st == nil || st.Repo != repo {
		return nil, "", fmt.Errorf("%w: %s", storage.ErrUploadUnknown, id)
	}
	return st, etag, nil
}

// loadAny reads the state of session id, of any repository; a session
// that does not exist is nil.
func (s *Store) loadAny(ctx context.Context, id string) (*session, string, error) {
	key := s.sessionDir(id) + "state"
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if notFound(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("s3: read upload %s: %w", id, err)
	}
	defer out.Body.Close()
	var st session
	if err := json.NewDecoder(out.Body).Decode(&st); err != nil {
		return nil, "", fmt.Errorf("s3: read upload %s: %w", id, err)
	}
	return &st, aws.ToString(out.ETag), nil
}

// store writes the state if it is still the one read with etag, and
// returns the new ETag; a lost race returns errConflict.
func (s *Store) store(ctx context.Context, id string, st *session, etag string) (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("s3: write upload %s: %w", id, err)
	}
	key := s.sessionDir(id) + "state"
	out, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b), IfMatch: aws.String(etag)})
	if preconditionFailed(err) || notFound(err) {
		return "", errConflict
	}
	if err != nil {
		return "", fmt.Errorf("s3: write upload %s: %w", id, err)
	}
	return aws.ToString(out.ETag), nil
}

var errConflict = errors.New("upload session changed concurrently")

// held is a session locked by this process: its state as of the last
// write, the ETag of that write, and the renewal of the lease.
type held struct {
	s  *Store
	id string
	mu sync.Mutex // guards st.LockUntil and etag against the renewal
	st *session
	// start is the state as locked, for the caller to change.
	start session
	etag  string
	stop  chan struct{}
	done  chan struct{}
}

// lock takes the session for one change, waiting while another writer
// (here or on another replica) holds it and its lease runs. The lease is
// renewed until release.
func (s *Store) lock(ctx context.Context, repo, id string) (*held, error) {
	token := lockToken()
	wait := 5 * time.Millisecond
	for {
		st, etag, err := s.load(ctx, repo, id)
		if err != nil {
			return nil, err
		}
		if st.Lock == "" || time.Now().After(st.LockUntil) {
			st.Lock, st.LockUntil = token, time.Now().Add(s.lease)
			etag, err = s.store(ctx, id, st, etag)
			if err == nil {
				h := &held{s: s, id: id, st: st, start: *st, etag: etag, stop: make(chan struct{}), done: make(chan struct{})}
				go h.renew(context.WithoutCancel(ctx))
				return h, nil
			}
			if !errors.Is(err, errConflict) {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("s3: wait for upload %s: %w", id, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

func lockToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// renew extends the lease every third of it until release.
func (h *held) renew(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.mu.Lock()
			next := *h.st
			next.LockUntil = time.Now().Add(h.s.lease)
			if etag, err := h.s.store(ctx, h.id, &next, h.etag); err == nil {
				h.st.LockUntil, h.etag = next.LockUntil, etag
			}
			h.mu.Unlock()
		}
	}
}

// release stops the renewal and writes st (the session's new state,
// unlocked). A session that is gone (deleted is true) is not written.
func (h *held) release(ctx context.Context, st *session, deleted bool) error {
	close(h.stop)
	<-h.done
	if deleted {
		return nil
	}
	st.Lock, st.LockUntil = "", time.Time{}
	// A request that ended (its client went away) still unlocks, or the
	// session would wait for the lease to run out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := h.s.store(ctx, h.id, st, h.etag); err != nil {
		return fmt.Errorf("s3: release upload %s: %w", h.id, err)
	}
	return nil
}

// UploadSize implements storage.Uploads.
func (s *Store) UploadSize(ctx context.Context, repo, id string) (int64, error) {
	st, _, err := s.load(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	return st.Size, nil
}

// AppendUpload implements storage.Uploads. Full parts go to the
// multipart upload; what is left over, less than a part, becomes the
// session's new tail object, read back in front of the next append.
func (s *Store) AppendUpload(ctx context.Context, repo, id string, offset int64, r io.Reader) (int64, error) {
	h, err := s.lock(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	st := h.start
	if offset >= 0 && offset != st.Size {
		if rerr := h.release(ctx, &st, false); rerr != nil {
			return st.Size, rerr
		}
		return st.Size, fmt.Errorf("%w: offset %d, upload %s holds %d bytes", storage.ErrOffsetMismatch, offset, id, st.Size)
	}
	if st.Staged {
		if rerr := h.release(ctx, &st, false); rerr != nil {
			return st.Size, rerr
		}
		return st.Size, fmt.Errorf("s3: upload %s is being committed and takes no more content", id)
	}
	next, appendErr := s.appendLocked(ctx, id, &st, r)
	if err := h.release(ctx, next, false); err != nil {
		return st.Size, errors.Join(appendErr, err)
	}
	if next.Tail != st.Tail && st.Tail != "" {
		s.deleteKeys(ctx, st.Tail)
	}
	return next.Size, appendErr
}

// appendLocked writes r after the session's content and returns the new
// state. On a read error from r it keeps what arrived and returns the
// error with the state that holds it.
func (s *Store) appendLocked(ctx context.Context, id string, st *session, r io.Reader) (*session, error) {
	next := *st
	next.Parts = append([]part(nil), st.Parts...)
	hs, err := restoreSHA256(st.SHA256)
	if err != nil {
		return st, err
	}
	var in io.Reader = io.TeeReader(r, hs)
	tail := st.Size - st.partBytes()
	if st.Tail != "" && tail > 0 {
		out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &st.Tail})
		if err != nil {
			return st, fmt.Errorf("s3: read tail of upload %s: %w", id, err)
		}
		defer out.Body.Close()
		in = io.MultiReader(io.LimitReader(out.Body, tail), in)
	}
	buf := make([]byte, s.partSize)
	var readErr error
	for {
		n, err := io.ReadFull(in, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = nil
		} else if err != nil {
			readErr = fmt.Errorf("s3: read upload body: %w", err)
		}
		if n == len(buf) && readErr == nil {
			if err := s.uploadPart(ctx, id, &next, buf); err != nil {
				return st, err
			}
			continue
		}
		// The remainder, less than a part, is the new tail.
		if err := s.putTail(ctx, id, &next, buf[:n]); err != nil {
			return st, err
		}
		break
	}
	sum, err := marshalSHA256(hs)
	if err != nil {
		return st, err
	}
	next.SHA256 = sum
	next.Updated = time.Now().UTC()
	return &next, readErr
}

// uploadPart sends p as the session's next part, creating the multipart
// upload with the first one.
func (s *Store) uploadPart(ctx context.Context, id string, st *session, p []byte) error {
	key := s.sessionDir(id) + "data"
	if st.MPU == "" {
		out, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
		if err != nil {
			return fmt.Errorf("s3: create multipart upload for %s: %w", id, err)
		}
		st.MPU = aws.ToString(out.UploadId)
	}
	n := int32(len(st.Parts) + 1) //nolint:gosec // at most 10,000 parts
	out, err := s.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &s.bucket, Key: &key, UploadId: &st.MPU, PartNumber: &n, Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))})
	if err != nil {
		return fmt.Errorf("s3: upload part %d of %s: %w", n, id, err)
	}
	st.Parts = append(st.Parts, part{N: n, ETag: aws.ToString(out.ETag), Size: int64(len(p))})
	st.Size = st.partBytes()
	st.Tail = ""
	return nil
}

// putTail stores p as the session's tail under a key of its own (the
// previous tail stays readable until the new state is written).
func (s *Store) putTail(ctx context.Context, id string, st *session, p []byte) error {
	st.Size = st.partBytes() + int64(len(p))
	if len(p) == 0 {
		st.Tail = ""
		return nil
	}
	key := s.sessionDir(id) + "tail-" + lockToken()
	if _, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))}); err != nil {
		return fmt.Errorf("s3: write tail of upload %s: %w", id, err)
	}
	st.Tail = key
	return nil
}

// CancelUpload implements storage.Uploads.
func (s *Store) CancelUpload(ctx context.Context, repo, id string) error {
	h, err := s.lock(ctx, repo, id)
	if err != nil {
		return err
	}
	st := h.start
	err = s.discard(ctx, id, &st)
	if rerr := h.release(ctx, &st, err == nil); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// discard removes every object of a session, the state last so that a
// failure leaves a session that can be cancelled again.
func (s *Store) discard(ctx context.Context, id string, st *session) error {
	if st.MPU != "" {
		key := s.sessionDir(id) + "data"
		if _, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &st.MPU}); err != nil && !notFound(err) {
			return fmt.Errorf("s3: abort multipart upload of %s: %w", id, err)
		}
	}
	keys := []string{s.sessionDir(id) + "data"}
	if st.Tail != "" {
		keys = append(keys, st.Tail)
	}
	s.deleteKeys(ctx, keys...)
	state := s.sessionDir(id) + "state"
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &state}); err != nil && !notFound(err) {
		return fmt.Errorf("s3: delete upload %s: %w", id, err)
	}
	return nil
}

// deleteKeys removes objects whose loss only leaves garbage behind, so
// errors are not reported: the upload purge finds what stays.
func (s *Store) deleteKeys(ctx context.Context, keys ...string) {
	for _, k := range keys {
		_, _ = s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k})
	}
}
