package graph

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Verifier is a Target that keeps nothing: it reads every blob of the
// graph in full and checks its digest and size, so that a Copy into it
// proves the source holds the whole graph intact (`stage check`).
// Manifests are checked against their digests by Copy itself.
type Verifier struct{}

// HasManifest implements Target: every manifest is visited.
func (Verifier) HasManifest(context.Context, string, digest.Digest) (bool, error) {
	return false, nil
}

// HasBlob implements Target: every blob is read.
func (Verifier) HasBlob(context.Context, string, v1.Descriptor) (bool, error) { return false, nil }

// PushBlob implements Target: it reads the blob and verifies it.
func (Verifier) PushBlob(ctx context.Context, _ string, desc v1.Descriptor, open Opener) error {
	rc, _, err := open(ctx, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	return VerifyContent(rc, desc)
}

// PushManifest implements Target: Copy has checked the manifest already.
func (Verifier) PushManifest(context.Context, string, Node) error { return nil }

// Tag implements Target: a verifier publishes nothing.
func (Verifier) Tag(context.Context, string, v1.Descriptor, string) error { return nil }

// VerifyContent reads r to its end and checks that it hashes to
// desc.Digest and, when desc.Size is set, has that size.
func VerifyContent(r io.Reader, desc v1.Descriptor) error {
	var h hash.Hash
	switch desc.Digest.Algorithm() {
	case digest.SHA256:
		h = sha256.New()
	case digest.SHA512:
		h = sha512.New()
	default:
		return fmt.Errorf("%w: blob %s: unsupported digest algorithm", ErrDigest, desc.Digest)
	}
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("%w: blob %s at byte %d: %w", ErrInterrupted, desc.Digest, n, err)
	}
	got := digest.NewDigest(desc.Digest.Algorithm(), h)
	if got != desc.Digest || (desc.Size >= 0 && n != desc.Size) {
		return fmt.Errorf("%w: blob %s: content is %s (%d bytes, want %d)", ErrDigest, desc.Digest, got, n, desc.Size)
	}
	return nil
}

// Size returns the bytes of the graph of manifest d in repo of src: the
// manifests and the distributable blobs they reference, referrers left
// out (the size a staging job reports for an image).
func Size(ctx context.Context, src Source, repo string, d digest.Digest) (int64, error) {
	var m measure
	_, err := Copy(ctx, src, repo, &m, repo, v1.Descriptor{Digest: d}, Options{NoReferrers: true, Concurrency: 1})
	return m.bytes.Load(), err
}

// measure is a Target that adds up sizes: it reads every manifest and no
// blob.
type measure struct{ bytes atomic.Int64 }

func (*measure) HasManifest(context.Context, string, digest.Digest) (bool, error) { return false, nil }

func (m *measure) HasBlob(_ context.Context, _ string, desc v1.Descriptor) (bool, error) {
	m.bytes.Add(desc.Size)
	return true, nil
}

func (*measure) PushBlob(context.Context, string, v1.Descriptor, Opener) error { return nil }

func (m *measure) PushManifest(_ context.Context, _ string, n Node) error {
	m.bytes.Add(int64(len(n.Body)))
	return nil
}

func (*measure) Tag(context.Context, string, v1.Descriptor, string) error { return nil }
