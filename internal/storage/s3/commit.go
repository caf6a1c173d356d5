package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// maxCopySize is the largest object CopyObject copies in one request;
// larger ones are copied part by part.
const maxCopySize = 5 << 30

// copyPartSize is the part size of a multipart copy.
const copyPartSize = 1 << 30

func emptySHA256() []byte {
	b, _ := marshalSHA256(sha256.New())
	return b
}

func marshalSHA256(h hash.Hash) ([]byte, error) {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("s3: save upload digest state: %w", err)
	}
	return b, nil
}

func restoreSHA256(b []byte) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("s3: restore upload digest state: %w", err)
	}
	return h, nil
}

// CommitUpload implements storage.Uploads. The session's content is
// assembled at uploads/<id>/data (its tail sent as the last part), its
// digest checked, and only then copied to the blob's key: a blob key
// never holds content that was not verified.
func (s *Store) CommitUpload(ctx context.Context, repo, id string, want digest.Digest) (int64, error) {
	h, err := s.lock(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	st := h.start
	size, staged, err := s.assemble(ctx, id, &st)
	if err == nil {
		err = s.verify(ctx, id, &st, staged, want)
	}
	if err == nil {
		err = s.publish(ctx, staged, size, want)
	}
	if err != nil && !errors.Is(err, storage.ErrDigestMismatch) {
		// The session stays for another try.
		if rerr := h.release(ctx, &st, false); rerr != nil {
			return 0, errors.Join(err, rerr)
		}
		return 0, err
	}
	derr := s.discard(ctx, id, &st)
	if rerr := h.release(ctx, &st, derr == nil); rerr != nil {
		derr = errors.Join(derr, rerr)
	}
	if err != nil {
		return 0, errors.Join(err, derr)
	}
	if derr != nil {
		return size, fmt.Errorf("s3: clean up upload %s after its commit: %w", id, derr)
	}
	return size, nil
}

// assemble returns the key that holds the session's whole content: its
// tail when it has no parts, or the completed multipart upload.
func (s *Store) assemble(ctx context.Context, id string, st *session) (int64, string, error) {
	if st.Staged {
		return st.Size, s.sessionDir(id) + "data", nil
	}
	if st.MPU == "" {
		if st.Tail == "" {
			// An empty session: stage an empty object.
			key := s.sessionDir(id) + "data"
			if _, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(nil), ContentLength: aws.Int64(0)}); err != nil {
				return 0, "", fmt.Errorf("s3: stage empty upload %s: %w", id, err)
			}
			return 0, key, nil
		}
		return st.Size, st.Tail, nil
	}
	key := s.sessionDir(id) + "data"
	parts := st.Parts
	if tail := st.Size - st.partBytes(); tail > 0 {
		out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &st.Tail})
		if err != nil {
			return 0, "", fmt.Errorf("s3: read tail of upload %s: %w", id, err)
		}
		p, err := io.ReadAll(io.LimitReader(out.Body, tail))
		_ = out.Body.Close()
		if err != nil {
			return 0, "", fmt.Errorf("s3: read tail of upload %s: %w", id, err)
		}
		n := int32(len(parts) + 1) //nolint:gosec // at most 10,000 parts
		up, err := s.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &s.bucket, Key: &key, UploadId: &st.MPU, PartNumber: &n, Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))})
		if err != nil {
			return 0, "", fmt.Errorf("s3: upload last part of %s: %w", id, err)
		}
		parts = append(parts[:len(parts):len(parts)], part{N: n, ETag: aws.ToString(up.ETag), Size: int64(len(p))})
	}
	done := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = types.CompletedPart{PartNumber: aws.Int32(p.N), ETag: aws.String(p.ETag)}
	}
	if _, err := s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &st.MPU, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		return 0, "", fmt.Errorf("s3: complete upload %s: %w", id, err)
	}
	// The multipart upload is gone; the staged object is what remains.
	st.MPU, st.Parts, st.Staged = "", nil, true
	return st.Size, key, nil
}

// verify checks that the staged content has digest want: sha256 from the
// state saved with each append, other algorithms by reading it back.
func (s *Store) verify(ctx context.Context, id string, st *session, staged string, want digest.Digest) error {
	if want.Validate() != nil {
		return fmt.Errorf("%w: %q is not a valid digest", storage.ErrDigestMismatch, want)
	}
	var got digest.Digest
	if want.Algorithm() == digest.SHA256 {
		h, err := restoreSHA256(st.SHA256)
		if err != nil {
			return err
		}
		got = digest.NewDigest(digest.SHA256, h)
	} else {
		out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &staged})
		if err != nil {
			return fmt.Errorf("s3: read upload %s back: %w", id, err)
		}
		dg := want.Algorithm().Digester()
		_, err = io.Copy(dg.Hash(), out.Body)
		_ = out.Body.Close()
		if err != nil {
			return fmt.Errorf("s3: read upload %s back: %w", id, err)
		}
		got = dg.Digest()
	}
	if got != want {
		return fmt.Errorf("%w: upload %s has %s, want %s", storage.ErrDigestMismatch, id, got, want)
	}
	return nil
}

// publish copies the verified staged object to the blob's key, unless a
// blob of that size is there already.
func (s *Store) publish(ctx context.Context, staged string, size int64, d digest.Digest) error {
	key, err := s.blobKey(d)
	if err != nil {
		return err
	}
	if n, err := s.Stat(ctx, d); err == nil && n == size {
		return nil
	}
	src := s.bucket + "/" + (&url.URL{Path: staged}).EscapedPath()
	if size <= maxCopySize {
		if _, err := s.c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.bucket, Key: &key, CopySource: &src}); err != nil {
			return fmt.Errorf("s3: publish blob %s: %w", d, err)
		}
		return nil
	}
	return s.copyLarge(ctx, src, key, size, d)
}

// copyLarge copies an object over 5 GiB part by part (CopyObject's
// limit).
func (s *Store) copyLarge(ctx context.Context, src, key string, size int64, d digest.Digest) error {
	mpu, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("s3: publish blob %s: %w", d, err)
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+copyPartSize, n+1 {
		end := min(off+copyPartSize, size) - 1
		rng := fmt.Sprintf("bytes=%d-%d", off, end)
		out, err := s.c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: &s.bucket, Key: &key, UploadId: mpu.UploadId, PartNumber: aws.Int32(n), CopySource: &src, CopySourceRange: &rng})
		if err != nil {
			_, _ = s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: mpu.UploadId})
			return fmt.Errorf("s3: publish blob %s, part %d: %w", d, n, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.CopyPartResult.ETag})
	}
	if _, err := s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: mpu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		return fmt.Errorf("s3: publish blob %s: %w", d, err)
	}
	return nil
}
