package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Repositories lists the repositories p may metadata/read, in lexical
// order; at most top of them when top > 0.
func (c *Catalog) Repositories(ctx context.Context, p *auth.Principal, top int) ([]string, error) {
	out := []string{}
	last := ""
	for {
		names, more, err := c.meta.Repositories(ctx, last, 1000)
		if err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		for _, n := range names {
			if c.auth.Allowed(p, n, auth.MetadataRead) {
				out = append(out, n)
			}
		}
		if !more || len(names) == 0 || (top > 0 && len(out) >= top) {
			break
		}
		last = names[len(names)-1]
	}
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out, nil
}

// Tags describes every tag of repo (digest, size, platforms, referrers,
// push time), in lexical order, if p may metadata/read it.
func (c *Catalog) Tags(ctx context.Context, p *auth.Principal, repo string) (Repository, []Tag, error) {
	if err := c.need(p, repo, auth.MetadataRead); err != nil {
		return Repository{}, nil, err
	}
	h, err := c.history(ctx, repo)
	if err != nil {
		return Repository{}, nil, errNotFound(err)
	}
	tags, err := c.tags(ctx, repo, h, true)
	if err != nil {
		return Repository{}, nil, err
	}
	return Repository{Name: repo, TagCount: len(h.tags), CreatedTime: h.first, LastUpdate: h.last}, tags, nil
}

// Manifest returns the stored manifest repo:ref (a tag or digest) and its
// description, if p may metadata/read the repository.
func (c *Catalog) Manifest(ctx context.Context, p *auth.Principal, repo, ref string) (*storage.ManifestRecord, Image, error) {
	if err := c.need(p, repo, auth.MetadataRead); err != nil {
		return nil, Image{}, err
	}
	m, err := c.meta.GetManifest(ctx, repo, ref)
	if err != nil {
		return nil, Image{}, errNotFound(fmt.Errorf("manifest %s %s: %w", repo, ref, err))
	}
	img, err := c.describe(ctx, repo, m, true)
	return m, img, err
}

// Blob reads at most limit bytes of blob d of repo (an image config), if
// p may content/read the repository and the blob belongs to it.
func (c *Catalog) Blob(ctx context.Context, p *auth.Principal, repo string, d digest.Digest, limit int64) ([]byte, error) {
	if err := c.need(p, repo, auth.ContentRead); err != nil {
		return nil, err
	}
	if _, err := c.meta.BlobSize(ctx, repo, d); err != nil {
		return nil, fmt.Errorf("%w: blob %s@%s: %w", auth.ErrNotFound, repo, d, err)
	}
	rc, _, err := c.blobs.Open(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("open blob %s@%s: %w", repo, d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, fmt.Errorf("read blob %s@%s: %w", repo, d, err)
	}
	return b, nil
}

// Complete checks that the graph of repo@d is whole in the store: the
// manifest, every child manifest, every referrer (recursively), and every
// blob they name, linked to the repository and present (non-distributable
// layers excepted). It reads no blob content; `outpost stage check` does.
func (c *Catalog) Complete(ctx context.Context, repo string, d digest.Digest) error {
	var problems []error
	seen := map[digest.Digest]bool{}
	queue := []digest.Digest{d}
	for len(queue) > 0 && len(seen) < 10000 {
		cur := queue[0]
		queue = queue[1:]
		if seen[cur] {
			continue
		}
		seen[cur] = true
		m, err := c.meta.GetManifest(ctx, repo, cur.String())
		if err != nil {
			problems = append(problems, fmt.Errorf("manifest %s: %w", cur, err))
			continue
		}
		parsed, err := oci.ParseManifest(m.MediaType, m.Body)
		if err != nil {
			problems = append(problems, fmt.Errorf("manifest %s: %w", cur, err))
			continue
		}
		for _, b := range parsed.Blobs {
			if oci.IsNonDistributable(b.MediaType) {
				continue
			}
			if _, err := c.meta.BlobSize(ctx, repo, b.Digest); err != nil {
				problems = append(problems, fmt.Errorf("blob %s of %s: %w", b.Digest, cur, err))
			} else if _, err := c.blobs.Stat(ctx, b.Digest); err != nil {
				problems = append(problems, fmt.Errorf("blob %s of %s: %w", b.Digest, cur, err))
			}
		}
		queue = append(queue, m.Manifests...)
		refs, err := c.meta.Referrers(ctx, repo, cur)
		if err != nil {
			problems = append(problems, fmt.Errorf("referrers of %s: %w", cur, err))
			continue
		}
		for _, r := range refs {
			queue = append(queue, r.Digest)
		}
	}
	return errors.Join(problems...)
}
