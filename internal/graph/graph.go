// Package graph copies an OCI descriptor graph — an index, its manifests,
// their config and layers, and the referrers (signatures, SBOMs) of each —
// from a Source to a Target. Sync (parent to local store), pull-through,
// staging, the ReadWrite outbox (local store to parent) and `stage check`
// (a remote registry into a verifying sink) are all one Copy with
// different ends and hooks.
//
// The walk has one depth rule: every edge (index to child, subject to
// referrer) adds one level, and a graph deeper than Options.MaxDepth is
// refused. What the target already holds is skipped: a manifest the target
// holds is complete (a Target must refuse manifests whose references it
// lacks), so its children are not visited again, though its referrers are,
// since new ones may have appeared. Blobs are copied in parallel, bounded
// by a Pool that several copies may share; a manifest is pushed only after
// everything it references, and tags are published last, once the whole
// graph is in place. Manifests are verified against their digests here;
// blobs are verified by the Target while they stream (a Target never
// commits a blob whose content does not hash to its digest).
package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/outpost-registry/outpost/internal/oci"
)

// Sentinel errors. Sources and Targets wrap them (or errors that wrap
// them) so that Copy and its callers can tell missing content from a
// transfer to retry.
var (
	// ErrNotFound marks content the source does not hold.
	ErrNotFound = errors.New("not found")
	// ErrDigest marks content that does not hash to its digest, or is
	// longer or shorter than its descriptor says.
	ErrDigest = errors.New("digest mismatch")
	// ErrInterrupted marks a transfer that broke off and may be resumed
	// or tried again.
	ErrInterrupted = errors.New("transfer interrupted")
	// ErrTooDeep marks a graph nested deeper than Options.MaxDepth.
	ErrTooDeep = errors.New("graph nested too deep")
)

// Source is where a graph is read from.
type Source interface {
	// Manifest returns the body and media type of manifest d of repo,
	// reading at most maxBytes; missing content wraps ErrNotFound.
	Manifest(ctx context.Context, repo string, d digest.Digest, maxBytes int64) ([]byte, string, error)
	// Blob opens blob desc of repo at offset. ranged reports whether the
	// content starts at offset; false means the source sent it from the
	// start.
	Blob(ctx context.Context, repo string, desc v1.Descriptor, offset int64) (rc io.ReadCloser, ranged bool, err error)
	// Referrers lists the manifests of repo whose subject is d.
	Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error)
}

// Opener opens the content of the blob being pushed at offset; ranged
// reports whether it starts there (false: from the start).
type Opener func(ctx context.Context, offset int64) (rc io.ReadCloser, ranged bool, err error)

// Node is a manifest read from the source: its descriptor, its body
// byte for byte, and what it references.
type Node struct {
	Descriptor v1.Descriptor
	Body       []byte
	Manifest   oci.Manifest
}

// Target is where a graph is written to.
type Target interface {
	// HasManifest reports whether repo holds manifest d, complete.
	HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error)
	// HasBlob reports whether repo holds blob desc. A target that holds
	// the content elsewhere may make it part of repo and report true.
	HasBlob(ctx context.Context, repo string, desc v1.Descriptor) (bool, error)
	// PushBlob writes blob desc into repo from open, verifying its digest
	// and size (unless desc.Size is -1: unknown) before it commits it.
	PushBlob(ctx context.Context, repo string, desc v1.Descriptor, open Opener) error
	// PushManifest stores a manifest by digest; everything it references
	// is already in repo.
	PushManifest(ctx context.Context, repo string, n Node) error
	// Tag points tag at manifest desc, which repo holds.
	Tag(ctx context.Context, repo string, desc v1.Descriptor, tag string) error
}

// TaggedPusher is a Target that can store a manifest and point tags at
// it in one write. Copy uses it for the root of a copy with tags, after
// everything below the root and the root's referrers are in.
type TaggedPusher interface {
	PushManifestTagged(ctx context.Context, repo string, n Node, tags []string) error
}

// BlobAborter is a Target that keeps a partial blob between PushBlob
// calls (to resume it) and is told when Copy gives the blob up.
type BlobAborter interface {
	AbortBlob(ctx context.Context, repo string, desc v1.Descriptor)
}

// Pool bounds the blob transfers running at once, across every copy that
// shares it.
type Pool struct{ sem chan struct{} }

// NewPool returns a pool of n transfer slots (at least 1).
func NewPool(n int) *Pool { return &Pool{sem: make(chan struct{}, max(n, 1))} }

func (p *Pool) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pool) release() { <-p.sem }

// Options tune a Copy. The zero value copies with 4 parallel blob
// transfers, depth 8, manifests up to 4 MiB and no retries.
type Options struct {
	// Pool bounds parallel blob transfers; nil makes a pool of
	// Concurrency slots for this copy.
	Pool        *Pool
	Concurrency int
	// MaxDepth bounds the nesting of the graph (default 8).
	MaxDepth int
	// ManifestMaxBytes bounds each manifest read (default 4 MiB).
	ManifestMaxBytes int64
	// Tags are pointed at the root once the whole graph is in place.
	Tags []string
	// NoReferrers leaves referrers out of the copy.
	NoReferrers bool
	// Retry runs fn until it succeeds or is not worth retrying; what
	// names the operation. Nil runs fn once.
	Retry func(ctx context.Context, what string, fn func() error) error
	// OnError, when set, is told each manifest or blob that could not be
	// copied; returning nil goes on with the rest of the graph (a check
	// lists every problem), returning an error stops the copy with it.
	OnError func(desc v1.Descriptor, err error) error
	// OnManifest is told each manifest copied (not those skipped).
	OnManifest func(desc v1.Descriptor)
	// OnBlob is told each blob copied (not those the target had).
	OnBlob func(desc v1.Descriptor)
	// OnBytes is told the blob bytes read from the source as they flow.
	OnBytes func(n int64)
	// OnQueue is told +1 when a blob transfer is queued and -1 when it
	// ends.
	OnQueue func(delta int64)
}

// Stats count what a Copy did.
type Stats struct {
	// Manifests and Blobs count what was copied; Skipped counts manifests
	// and blobs the target already held.
	Manifests, Blobs, Skipped int64
	// Bytes counts blob bytes read from the source.
	Bytes int64
}

// Copy copies the graph of root (only its digest is needed) from repo
// srcRepo of src into repo dstRepo of dst, then points o.Tags at it.
func Copy(ctx context.Context, src Source, srcRepo string, dst Target, dstRepo string, root v1.Descriptor, o Options) (Stats, error) {
	c := newCopier(src, srcRepo, dst, dstRepo, o)
	n, err := c.node(ctx, root.Digest, 0)
	if err != nil {
		return c.stats(), err
	}
	if n != nil {
		root = n.Descriptor
	}
	if c.rootTagged {
		return c.stats(), nil
	}
	for _, tag := range c.o.Tags {
		err := c.o.Retry(ctx, "tag "+dstRepo+":"+tag, func() error { return dst.Tag(ctx, dstRepo, root, tag) })
		if err != nil {
			return c.stats(), fmt.Errorf("publish tag %s:%s: %w", dstRepo, tag, err)
		}
	}
	return c.stats(), nil
}

// CopyBlob copies one blob unless the target has it (a pull-through of a
// layer, a repair); desc.Size may be -1 when it is not known.
func CopyBlob(ctx context.Context, src Source, srcRepo string, dst Target, dstRepo string, desc v1.Descriptor, o Options) error {
	return newCopier(src, srcRepo, dst, dstRepo, o).blob(ctx, desc)
}

func newCopier(src Source, srcRepo string, dst Target, dstRepo string, o Options) *copier {
	if o.MaxDepth <= 0 {
		o.MaxDepth = 8
	}
	if o.ManifestMaxBytes <= 0 {
		o.ManifestMaxBytes = 4 << 20
	}
	if o.Pool == nil {
		o.Pool = NewPool(max(o.Concurrency, 4))
	}
	if o.Retry == nil {
		o.Retry = func(_ context.Context, _ string, fn func() error) error { return fn() }
	}
	return &copier{src: src, dst: dst, srcRepo: srcRepo, dstRepo: dstRepo, o: o, done: map[digest.Digest]*visit{}, blobSeen: map[digest.Digest]*visit{}}
}

type copier struct {
	src              Source
	dst              Target
	srcRepo, dstRepo string
	o                Options

	manifests, blobs, skipped, bytes atomic.Int64

	// rootTagged is set when the root was pushed with the tags.
	rootTagged bool

	mu       sync.Mutex
	done     map[digest.Digest]*visit
	blobSeen map[digest.Digest]*visit
}

// visit is one manifest's copy, shared by every path of the graph that
// reaches it (a layer or a child listed twice, a referrer of two nodes).
type visit struct {
	once sync.Once
	node *Node
	err  error
}

func (c *copier) stats() Stats {
	return Stats{Manifests: c.manifests.Load(), Blobs: c.blobs.Load(), Skipped: c.skipped.Load(), Bytes: c.bytes.Load()}
}

// failed hands a problem to OnError, which decides whether the copy goes on.
func (c *copier) failed(desc v1.Descriptor, err error) error {
	if err == nil || c.o.OnError == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return c.o.OnError(desc, err)
}

// node copies manifest d and what hangs below it, once per Copy. It
// returns the node read from the source, or nil when the target had it.
func (c *copier) node(ctx context.Context, d digest.Digest, depth int) (*Node, error) {
	c.mu.Lock()
	v := c.done[d]
	if v == nil {
		v = &visit{}
		c.done[d] = v
	}
	c.mu.Unlock()
	v.once.Do(func() {
		v.node, v.err = c.copyNode(ctx, d, depth)
		if v.err != nil {
			v.err = c.failed(v1.Descriptor{Digest: d}, v.err)
		}
	})
	return v.node, v.err
}

func (c *copier) copyNode(ctx context.Context, d digest.Digest, depth int) (*Node, error) {
	if depth > c.o.MaxDepth {
		return nil, fmt.Errorf("manifest %s: %w (more than %d levels)", d, ErrTooDeep, c.o.MaxDepth)
	}
	var has bool
	err := c.o.Retry(ctx, "manifest "+c.dstRepo+"@"+string(d), func() error {
		var err error
		has, err = c.dst.HasManifest(ctx, c.dstRepo, d)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("manifest %s at the target: %w", d, err)
	}
	if has {
		c.skipped.Add(1)
		return nil, c.referrers(ctx, d, depth)
	}
	n, err := c.fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(cap(c.o.Pool.sem), 2))
	for _, child := range n.Manifest.Manifests {
		g.Go(func() error {
			_, err := c.node(gctx, child.Digest, depth+1)
			return err
		})
	}
	for _, b := range n.Manifest.Blobs {
		if oci.IsNonDistributable(b.MediaType) {
			continue // fetched from elsewhere by whoever runs the image
		}
		g.Go(func() error { return c.blobOnce(gctx, b) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if tp, ok := c.dst.(TaggedPusher); ok && depth == 0 && len(c.o.Tags) > 0 {
		// The root and its tags in one write, once its referrers are in
		// too: the graph is complete when the tags appear.
		if err := c.referrers(ctx, d, depth); err != nil {
			return nil, err
		}
		err = c.o.Retry(ctx, "push manifest "+c.dstRepo+"@"+string(d), func() error { return tp.PushManifestTagged(ctx, c.dstRepo, *n, c.o.Tags) })
		if err != nil {
			return nil, fmt.Errorf("store manifest %s: %w", d, err)
		}
		c.rootTagged = true
		c.pushed(n)
		return n, nil
	}
	err = c.o.Retry(ctx, "push manifest "+c.dstRepo+"@"+string(d), func() error { return c.dst.PushManifest(ctx, c.dstRepo, *n) })
	if err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", d, err)
	}
	c.pushed(n)
	return n, c.referrers(ctx, d, depth)
}

// pushed counts a manifest written to the target.
func (c *copier) pushed(n *Node) {
	c.manifests.Add(1)
	if c.o.OnManifest != nil {
		c.o.OnManifest(n.Descriptor)
	}
}

// fetch reads manifest d from the source and checks it against d.
func (c *copier) fetch(ctx context.Context, d digest.Digest) (*Node, error) {
	var (
		body []byte
		mt   string
	)
	err := c.o.Retry(ctx, "manifest "+c.srcRepo+"@"+string(d), func() error {
		var err error
		body, mt, err = c.src.Manifest(ctx, c.srcRepo, d, c.o.ManifestMaxBytes)
		if err == nil && oci.Digester(d, body) != d {
			err = fmt.Errorf("%w: manifest %s has content %s", ErrDigest, d, oci.Digester(d, body))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	m, err := oci.ParseManifest("", body)
	if err != nil && mt != "" {
		m, err = oci.ParseManifest(mt, body)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	desc := v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(body)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	return &Node{Descriptor: desc, Body: body, Manifest: m}, nil
}

// referrers copies the manifests whose subject is d.
func (c *copier) referrers(ctx context.Context, d digest.Digest, depth int) error {
	if c.o.NoReferrers || depth >= c.o.MaxDepth {
		return nil
	}
	var refs []v1.Descriptor
	err := c.o.Retry(ctx, "referrers "+c.srcRepo+"@"+string(d), func() error {
		var err error
		refs, err = c.src.Referrers(ctx, c.srcRepo, d)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return c.failed(v1.Descriptor{Digest: d}, fmt.Errorf("list referrers of %s: %w", d, err))
	}
	for _, r := range refs {
		if _, err := c.node(ctx, r.Digest, depth+1); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// blobOnce copies blob desc once per Copy, however many manifests list it.
func (c *copier) blobOnce(ctx context.Context, desc v1.Descriptor) error {
	c.mu.Lock()
	v := c.blobSeen[desc.Digest]
	if v == nil {
		v = &visit{}
		c.blobSeen[desc.Digest] = v
	}
	c.mu.Unlock()
	v.once.Do(func() { v.err = c.failed(desc, c.blob(ctx, desc)) })
	return v.err
}

// blob copies one blob unless the target has it.
func (c *copier) blob(ctx context.Context, desc v1.Descriptor) error {
	if c.o.OnQueue != nil {
		c.o.OnQueue(1)
		defer c.o.OnQueue(-1)
	}
	if err := c.o.Pool.acquire(ctx); err != nil {
		return err
	}
	defer c.o.Pool.release()
	var has bool
	err := c.o.Retry(ctx, "blob "+c.dstRepo+"@"+string(desc.Digest), func() error {
		var err error
		has, err = c.dst.HasBlob(ctx, c.dstRepo, desc)
		return err
	})
	if err != nil {
		return fmt.Errorf("blob %s at the target: %w", desc.Digest, err)
	}
	if has {
		c.skipped.Add(1)
		return nil
	}
	open := func(ctx context.Context, offset int64) (io.ReadCloser, bool, error) {
		rc, ranged, err := c.src.Blob(ctx, c.srcRepo, desc, offset)
		if err != nil {
			return nil, false, err
		}
		return &counted{ReadCloser: rc, c: c}, ranged, nil
	}
	err = c.o.Retry(ctx, "blob "+c.srcRepo+"@"+string(desc.Digest), func() error {
		return c.dst.PushBlob(ctx, c.dstRepo, desc, open)
	})
	if err != nil {
		if a, ok := c.dst.(BlobAborter); ok {
			a.AbortBlob(context.WithoutCancel(ctx), c.dstRepo, desc)
		}
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	c.blobs.Add(1)
	if c.o.OnBlob != nil {
		c.o.OnBlob(desc)
	}
	return nil
}

// counted reports the bytes read from the source.
type counted struct {
	io.ReadCloser
	c *copier
}

func (r *counted) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.c.bytes.Add(int64(n))
		if r.c.o.OnBytes != nil {
			r.c.o.OnBytes(int64(n))
		}
	}
	return n, err
}
