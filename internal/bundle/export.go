package bundle

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
)

// Export is one bundle being made: planned and signed by Prepare, written
// by WriteTo.
type Export struct {
	Contents *Contents
	// Size is the tar's exact size (-1 when a blob over 8 GiB makes it
	// unknown in advance).
	Size int64

	src           graph.Source
	contents, sig []byte
}

// ExportRequest names what to export.
type ExportRequest struct {
	// Images are resolved to digests; Tag may be empty.
	Images []Image
	Target Target
	// Inventory is what the site holds (nil: a full bundle); Base
	// describes where it came from.
	Inventory *Inventory
	Base      *Base
	Issuer    string
}

// Prepare walks the graph of every image in src (a graph.Copy into a
// Plan: manifests read, blobs listed, not read), leaves out what the
// inventory lists, and signs the contents with key.
func Prepare(ctx context.Context, src graph.Source, key ed25519.PrivateKey, req ExportRequest) (*Export, error) {
	plan := &Plan{Inventory: req.Inventory}
	for _, im := range req.Images {
		if _, err := graph.Copy(ctx, src, im.Repository, plan, im.Repository, v1.Descriptor{Digest: im.Digest}, graph.Options{}); err != nil {
			return nil, fmt.Errorf("plan bundle: image %s: %w", im.Ref(), err)
		}
	}
	blobs, omitted := plan.Result()
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	c := &Contents{
		ID: hex.EncodeToString(raw[:]), Created: time.Now().UTC(), Issuer: req.Issuer,
		Target: req.Target, Base: req.Base, Blobs: blobs, Omitted: omitted,
	}
	byDigest := map[string]Blob{}
	for _, b := range blobs {
		byDigest[string(b.Digest)] = b
	}
	for _, im := range req.Images {
		b := byDigest[string(im.Digest)]
		im.MediaType, im.Size = b.MediaType, b.Size
		c.Images = append(c.Images, im)
	}
	contents, sig, err := Sign(c, key)
	if err != nil {
		return nil, err
	}
	index, err := IndexJSON(c)
	if err != nil {
		return nil, err
	}
	return &Export{Contents: c, Size: tarSize(c, len(contents), len(sig), len(index)), src: src, contents: contents, sig: sig}, nil
}

// WriteTo writes the bundle tar to w: the signed contents first, then
// the layout, each blob streamed from the source and verified (a
// graph.Copy of every image into a Writer). onBytes, when set, is told
// the blob bytes as they flow.
func (e *Export) WriteTo(ctx context.Context, w io.Writer, onBytes func(int64)) error {
	bw, err := NewWriter(w, e.Contents, e.contents, e.sig)
	if err != nil {
		return err
	}
	for _, im := range e.Contents.Images {
		_, err := graph.Copy(ctx, e.src, im.Repository, bw, im.Repository, v1.Descriptor{Digest: im.Digest}, graph.Options{OnBytes: onBytes, Concurrency: 2})
		if err != nil {
			return fmt.Errorf("write bundle: image %s: %w", im.Ref(), err)
		}
	}
	return bw.Close()
}
