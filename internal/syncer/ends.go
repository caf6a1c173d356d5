package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/time/rate"

	"github.com/outpost-registry/outpost/internal/graph"
)

// Source returns the parent as the source of a graph.Copy.
func (p *Parent) Source() graph.Source { return parentSource{p: p} }

// parentSource reads graphs from the parent, within the bandwidth limit.
type parentSource struct {
	p       *Parent
	limiter *rate.Limiter
}

func (s parentSource) Manifest(ctx context.Context, repo string, d digest.Digest, maxBytes int64) ([]byte, string, error) {
	body, mt, _, err := s.p.Manifest(ctx, repo, string(d), maxBytes)
	return body, mt, err
}

func (s parentSource) Blob(ctx context.Context, repo string, desc v1.Descriptor, offset int64) (io.ReadCloser, bool, error) {
	rc, ranged, err := s.p.Blob(ctx, repo, desc.Digest, offset)
	if err != nil || s.limiter == nil {
		return rc, ranged, err
	}
	return &limitedReader{ReadCloser: rc, l: s.limiter, ctx: ctx}, ranged, nil
}

func (s parentSource) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	return s.p.Referrers(ctx, repo, d)
}

// limitedReader applies the bandwidth limit.
type limitedReader struct {
	io.ReadCloser
	l   *rate.Limiter
	ctx context.Context
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.l.Burst() {
		p = p[:l.l.Burst()]
	}
	n, err := l.ReadCloser.Read(p)
	if n > 0 {
		if werr := l.l.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// parentTarget writes graphs to the parent (the outbox of a ReadWrite
// registry).
type parentTarget struct{ p *Parent }

func (t parentTarget) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	_, err := t.p.Resolve(ctx, repo, string(d))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (t parentTarget) HasBlob(ctx context.Context, repo string, desc v1.Descriptor) (bool, error) {
	return t.p.HasBlob(ctx, repo, desc.Digest)
}

func (t parentTarget) PushBlob(ctx context.Context, repo string, desc v1.Descriptor, open graph.Opener) error {
	err := t.p.PushBlob(ctx, repo, desc.Digest, desc.Size, func() (io.ReadCloser, error) {
		rc, _, err := open(ctx, 0)
		return rc, err
	})
	if err != nil {
		return fmt.Errorf("push blob %s: %w", desc.Digest, err)
	}
	return nil
}

func (t parentTarget) PushManifest(ctx context.Context, repo string, n graph.Node) error {
	return t.p.PushManifest(ctx, repo, string(n.Descriptor.Digest), n.Descriptor.MediaType, n.Body)
}

// Tag puts the parent's own copy of the manifest under tag.
func (t parentTarget) Tag(ctx context.Context, repo string, desc v1.Descriptor, tag string) error {
	body, mt, _, err := t.p.Manifest(ctx, repo, string(desc.Digest), 4<<20)
	if err != nil {
		return err
	}
	return t.p.PushManifest(ctx, repo, tag, mt, body)
}
