// Package catalog serves the repository browser of the management API
// under /api/v1/repositories: repositories, their tags and manifests in
// the shape of `az acr repository …`, with digests, sizes, platforms, push
// times and referrers by artifact type, and deleting or untagging images.
// Every route is open to any authenticated caller and authorized per
// repository by the caller's scope map (auth.Service.Allowed, as the
// registry API): a pull-only token sees only what it may read. docs/api.md
// documents it.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Catalog answers the repository routes from the registry's stores.
type Catalog struct {
	auth  *auth.Service
	meta  storage.Metadata
	blobs storage.BlobStore
	// readOnly refuses deletes when set and true, with its denial (a
	// ReadOnly connected registry).
	readOnly func() error
}

// New returns the repository browser over the local store, which the
// management API serves under /api/v1/repositories. readOnly, when not
// nil, returns a denial while deletes are refused (a ReadOnly connected
// registry), as the registry API refuses them.
func New(svc *auth.Service, meta storage.Metadata, blobs storage.BlobStore, readOnly func() error) *Catalog {
	return &Catalog{auth: svc, meta: meta, blobs: blobs, readOnly: readOnly}
}

// Repository is the answer of `repository show`.
type Repository struct {
	Name          string    `json:"name"`
	TagCount      int       `json:"tagCount"`
	ManifestCount int       `json:"manifestCount"`
	CreatedTime   time.Time `json:"createdTime,omitzero"`
	LastUpdate    time.Time `json:"lastUpdateTime,omitzero"`
}

// Tag is a tag with the image it points at (`show-tags --detail`).
type Tag struct {
	Name       string    `json:"name"`
	LastUpdate time.Time `json:"lastUpdateTime,omitzero"`
	Image
}

// Image describes one manifest: its digest and media type, its size
// (the manifest and every blob it or its children reference), the
// platforms it holds, and its referrers grouped by artifact type.
type Image struct {
	Digest       digest.Digest   `json:"digest"`
	MediaType    string          `json:"mediaType"`
	ArtifactType string          `json:"artifactType,omitempty"`
	Size         int64           `json:"size"`
	Platforms    []string        `json:"platforms,omitempty"`
	Subject      digest.Digest   `json:"subject,omitempty"`
	Referrers    []ReferrerGroup `json:"referrers,omitempty"`
}

// ReferrerGroup lists the referrers of one artifact type.
type ReferrerGroup struct {
	ArtifactType string          `json:"artifactType"`
	Digests      []digest.Digest `json:"digests"`
}

// Manifest is a manifest of a repository (`show-manifests`).
type Manifest struct {
	Tags       []string  `json:"tags"`
	LastUpdate time.Time `json:"lastUpdateTime,omitzero"`
	Image
}

// errNotFound wraps a storage miss as the management API's not-found.
func errNotFound(err error) error {
	if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrRepositoryUnknown) {
		return fmt.Errorf("%w: %w", auth.ErrNotFound, err)
	}
	return err
}

// need refuses the caller without action on repo.
func (c *Catalog) need(p *auth.Principal, repo string, a auth.Action) error {
	if c.auth.Allowed(p, repo, a) {
		return nil
	}
	return &auth.Denial{Status: http.StatusForbidden, Message: fmt.Sprintf("%s is not allowed %s on repository %s", p.Name, a, repo)}
}

// List answers GET /api/v1/repositories: the repositories the caller may
// read.
func (c *Catalog) List(r *http.Request, p *auth.Principal) (int, any, error) {
	top, err := topParam(r)
	if err != nil {
		return 0, nil, err
	}
	out, err := c.Repositories(r.Context(), p, top)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// split parses "{repo}", "{repo}/_tags[/{tag}]" and
// "{repo}/_manifests[/{ref}]": a name component never starts with "_", so
// the markers cannot be part of a repository name.
func split(path string) (repo, kind, ref string, err error) {
	repo, kind = path, ""
	for _, k := range []string{"_tags", "_manifests"} {
		if i := strings.Index(path, "/"+k); i >= 0 && (len(path) == i+len(k)+1 || path[i+len(k)+1] == '/') {
			repo, kind, ref = path[:i], k, strings.TrimPrefix(path[i+len(k)+1:], "/")
			break
		}
	}
	if err := oci.ValidateName(repo); err != nil {
		return "", "", "", fmt.Errorf("%w: repository: %w", auth.ErrInvalid, err)
	}
	return repo, kind, ref, nil
}

// Get answers GET /api/v1/repositories/{path...}: a repository, its tags
// or its manifests.
func (c *Catalog) Get(r *http.Request, p *auth.Principal) (int, any, error) {
	repo, kind, ref, err := split(r.PathValue("path"))
	if err != nil {
		return 0, nil, err
	}
	if err := c.need(p, repo, auth.MetadataRead); err != nil {
		return 0, nil, err
	}
	if ref != "" {
		return 0, nil, fmt.Errorf("%w: GET takes no reference after %s", auth.ErrInvalid, kind)
	}
	q := r.URL.Query()
	detail := q.Get("detail") == "true"
	top, err := topParam(r)
	if err != nil {
		return 0, nil, err
	}
	orderby := q.Get("orderby")
	if orderby != "" && orderby != "time_desc" && orderby != "time_asc" {
		return 0, nil, fmt.Errorf("%w: orderby %q: want time_desc or time_asc", auth.ErrInvalid, orderby)
	}
	ctx := r.Context()
	h, err := c.history(ctx, repo)
	if err != nil {
		return 0, nil, errNotFound(err)
	}
	switch kind {
	case "":
		ms, err := c.manifests(ctx, repo, h, false)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, Repository{Name: repo, TagCount: len(h.tags), ManifestCount: len(ms), CreatedTime: h.first, LastUpdate: h.last}, nil
	case "_tags":
		tags, err := c.tags(ctx, repo, h, detail || orderby != "")
		if err != nil {
			return 0, nil, err
		}
		order(tags, orderby, func(t Tag) time.Time { return t.LastUpdate })
		if top > 0 && len(tags) > top {
			tags = tags[:top]
		}
		if !detail {
			names := make([]string, len(tags))
			for i, t := range tags {
				names[i] = t.Name
			}
			return http.StatusOK, names, nil
		}
		return http.StatusOK, tags, nil
	default:
		ms, err := c.manifests(ctx, repo, h, detail)
		if err != nil {
			return 0, nil, err
		}
		order(ms, orderby, func(m Manifest) time.Time { return m.LastUpdate })
		if top > 0 && len(ms) > top {
			ms = ms[:top]
		}
		return http.StatusOK, ms, nil
	}
}

// delete removes a whole repository's manifests (DELETE {repo}), one
// manifest with every tag on it (DELETE {repo}/_manifests/{tag|digest}),
// or one tag (DELETE {repo}/_tags/{tag}); all need content/delete. Blobs
// no manifest references any more are left to garbage collection.
// Delete answers DELETE /api/v1/repositories/{path...}: a repository, a
// tag or a manifest.
func (c *Catalog) Delete(r *http.Request, p *auth.Principal) (int, any, error) {
	repo, kind, ref, err := split(r.PathValue("path"))
	if err != nil {
		return 0, nil, err
	}
	if err := c.need(p, repo, auth.ContentDelete); err != nil {
		return 0, nil, err
	}
	if c.readOnly != nil {
		if err := c.readOnly(); err != nil {
			return 0, nil, err
		}
	}
	ctx := r.Context()
	switch kind {
	case "_tags":
		if err := oci.ValidateTag(ref); err != nil {
			return 0, nil, fmt.Errorf("%w: tag: %w", auth.ErrInvalid, err)
		}
		if err := c.meta.DeleteTag(ctx, repo, ref); err != nil {
			return 0, nil, errNotFound(fmt.Errorf("untag %s:%s: %w", repo, ref, err))
		}
	case "_manifests":
		m, err := c.meta.GetManifest(ctx, repo, ref)
		if err != nil {
			return 0, nil, errNotFound(fmt.Errorf("delete %s %s: %w", repo, ref, err))
		}
		if err := c.meta.DeleteManifest(ctx, repo, m.Digest); err != nil {
			return 0, nil, errNotFound(fmt.Errorf("delete %s@%s: %w", repo, m.Digest, err))
		}
	default:
		h, err := c.history(ctx, repo)
		if err != nil {
			return 0, nil, errNotFound(err)
		}
		ms, err := c.manifests(ctx, repo, h, false)
		if err != nil {
			return 0, nil, err
		}
		// Referrers and indexes first, so that nothing left points at a
		// manifest already gone.
		slices.SortStableFunc(ms, func(a, b Manifest) int { return rank(b) - rank(a) })
		for _, m := range ms {
			if err := c.meta.DeleteManifest(ctx, repo, m.Digest); err != nil && !errors.Is(err, storage.ErrManifestUnknown) {
				return 0, nil, fmt.Errorf("delete %s@%s: %w", repo, m.Digest, err)
			}
		}
	}
	return http.StatusNoContent, nil, nil
}

func rank(m Manifest) int {
	switch {
	case m.Subject != "":
		return 2
	case oci.IsIndex(m.MediaType):
		return 1
	}
	return 0
}

func topParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("top")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: top %q: a positive number", auth.ErrInvalid, v)
	}
	return n, nil
}

// order sorts by time (newest first for time_desc), else leaves the
// lexical order.
func order[T any](list []T, orderby string, at func(T) time.Time) {
	switch orderby {
	case "time_desc":
		slices.SortStableFunc(list, func(a, b T) int { return at(b).Compare(at(a)) })
	case "time_asc":
		slices.SortStableFunc(list, func(a, b T) int { return at(a).Compare(at(b)) })
	}
}

// history is what a repository's change feed tells: when each tag and
// manifest was last written, and every manifest digest ever recorded.
type history struct {
	tags        map[string]time.Time
	manifests   map[digest.Digest]time.Time
	first, last time.Time
}

// maxChanges bounds the change feed read for one answer.
const maxChanges = 1_000_000

func (c *Catalog) history(ctx context.Context, repo string) (*history, error) {
	h := &history{tags: map[string]time.Time{}, manifests: map[digest.Digest]time.Time{}}
	var since uint64
	for read := 0; read < maxChanges; {
		changes, _, err := c.meta.Changes(ctx, repo, since, 1000)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		}
		for _, ch := range changes {
			if h.first.IsZero() {
				h.first = ch.Time
			}
			h.last = ch.Time
			switch ch.Op {
			case storage.ChangePut:
				h.tags[ch.Tag] = ch.Time
				h.manifests[ch.Digest] = ch.Time
			case storage.ChangeDelete:
				delete(h.tags, ch.Tag)
			case storage.ChangeRefer:
				h.manifests[ch.Digest] = ch.Time
			}
		}
		if len(changes) == 0 {
			break
		}
		read += len(changes)
		since = changes[len(changes)-1].Seq
	}
	// The feed says which tags were put; the store says which still are.
	for t := range h.tags {
		if _, err := c.meta.GetManifest(ctx, repo, t); err != nil {
			delete(h.tags, t)
		}
	}
	return h, nil
}

func (c *Catalog) tags(ctx context.Context, repo string, h *history, detail bool) ([]Tag, error) {
	names := slices.Sorted(maps.Keys(h.tags))
	out := make([]Tag, 0, len(names))
	for _, n := range names {
		t := Tag{Name: n, LastUpdate: h.tags[n]}
		if detail {
			m, err := c.meta.GetManifest(ctx, repo, n)
			if err != nil {
				continue // untagged since the feed was read
			}
			if t.Image, err = c.describe(ctx, repo, m, true); err != nil {
				return nil, err
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// manifests lists the manifests of the repository that are still stored:
// those ever tagged or referring, and the children of indexes among them.
func (c *Catalog) manifests(ctx context.Context, repo string, h *history, detail bool) ([]Manifest, error) {
	tagsOf := map[digest.Digest][]string{}
	for t := range h.tags {
		if m, err := c.meta.GetManifest(ctx, repo, t); err == nil {
			tagsOf[m.Digest] = append(tagsOf[m.Digest], t)
		}
	}
	seen := map[digest.Digest]bool{}
	out := []Manifest{}
	queue := slices.Sorted(maps.Keys(h.manifests))
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d] {
			continue
		}
		seen[d] = true
		m, err := c.meta.GetManifest(ctx, repo, d.String())
		if errors.Is(err, storage.ErrManifestUnknown) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
		}
		queue = append(queue, m.Manifests...)
		img, err := c.describe(ctx, repo, m, detail)
		if err != nil {
			return nil, err
		}
		tags := tagsOf[d]
		slices.Sort(tags)
		out = append(out, Manifest{Tags: append([]string{}, tags...), LastUpdate: h.manifests[d], Image: img})
	}
	return out, nil
}

// describe fills an Image from a manifest; with full, also its size,
// platforms and referrers.
func (c *Catalog) describe(ctx context.Context, repo string, m *storage.ManifestRecord, full bool) (Image, error) {
	img := Image{Digest: m.Digest, MediaType: m.MediaType, ArtifactType: m.ArtifactType, Subject: m.Subject, Size: m.Size()}
	if !full {
		return img, nil
	}
	parsed, err := oci.ParseManifest(m.MediaType, m.Body)
	if err != nil {
		return img, fmt.Errorf("manifest %s@%s: %w", repo, m.Digest, err)
	}
	if oci.IsIndex(m.MediaType) {
		for _, child := range parsed.Manifests {
			img.Size += child.Size
			if cm, err := c.meta.GetManifest(ctx, repo, child.Digest.String()); err == nil {
				if cp, err := oci.ParseManifest(cm.MediaType, cm.Body); err == nil {
					img.Size += blobSize(cp)
				}
			}
			if child.Platform != nil {
				img.Platforms = append(img.Platforms, platform(*child.Platform))
			}
		}
	} else {
		img.Size += blobSize(parsed)
		if p := c.configPlatform(ctx, parsed); p != "" {
			img.Platforms = []string{p}
		}
	}
	refs, err := c.meta.Referrers(ctx, repo, m.Digest)
	if err != nil {
		return img, fmt.Errorf("referrers of %s@%s: %w", repo, m.Digest, err)
	}
	groups := map[string][]digest.Digest{}
	for _, r := range refs {
		groups[r.ArtifactType] = append(groups[r.ArtifactType], r.Digest)
	}
	for _, at := range slices.Sorted(maps.Keys(groups)) {
		img.Referrers = append(img.Referrers, ReferrerGroup{ArtifactType: at, Digests: groups[at]})
	}
	return img, nil
}

func blobSize(m oci.Manifest) int64 {
	var n int64
	for _, b := range m.Blobs {
		n += b.Size
	}
	return n
}

func platform(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// configPlatform reads os/architecture from an image config (small JSON,
// at most 1 MiB read); "" for artifacts and unreadable configs.
func (c *Catalog) configPlatform(ctx context.Context, m oci.Manifest) string {
	if len(m.Blobs) == 0 || c.blobs == nil || m.Blobs[0].Size > 1<<20 || m.ArtifactType != "" && !isImageConfig(m.ArtifactType) {
		return ""
	}
	rc, _, err := c.blobs.Open(ctx, m.Blobs[0].Digest)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var p v1.Platform
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&p); err != nil || p.OS == "" {
		return ""
	}
	return platform(p)
}

func isImageConfig(mt string) bool {
	return mt == v1.MediaTypeImageConfig || mt == "application/vnd.docker.container.image.v1+json"
}
