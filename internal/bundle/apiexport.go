package bundle

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/pki"
	"github.com/outpost-registry/outpost/internal/storage"
)

var keyMu sync.Mutex

func (a *API) signingKey() (ed25519.PrivateKey, error) {
	keyMu.Lock()
	defer keyMu.Unlock()
	return pki.LoadOrCreateBundleKey(a.o.DataDir)
}

// Export answer headers: the summary of the bundle being streamed.
const (
	HeaderID      = "Outpost-Bundle-Id"
	HeaderBlobs   = "Outpost-Bundle-Blobs"
	HeaderOmitted = "Outpost-Bundle-Omitted"
)

// Export streams a bundle: POST /api/v1/bundles/export?connectedRegistry=
// &repository=&image=&full=true, the site's inventory file as the body
// (optional).
func (a *API) Export(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query()
	key, err := a.signingKey()
	if err != nil {
		return err
	}
	req := ExportRequest{Issuer: a.o.Issuer}
	site := q.Get("connectedRegistry")
	var fs FleetSite
	if site != "" {
		if a.o.Fleet == nil {
			return fmt.Errorf("%w: connected registry %s: this registry has no fleet", auth.ErrNotFound, site)
		}
		if fs, err = a.o.Fleet(site); err != nil {
			return err
		}
		req.Target.Name = site
	}
	full := q.Get("full") == "true"
	inv, invDigest, err := ReadInventory(r.Body)
	switch {
	case errors.Is(err, ErrFormat) && r.ContentLength == 0:
		inv = nil // no inventory sent
	case err != nil:
		return invalid(fmt.Errorf("inventory: %w", err))
	}
	if inv != nil && !full {
		if site != "" && inv.Name != "" && inv.Name != site {
			return invalid(fmt.Errorf("%w: the inventory is from %s, not %s", ErrTarget, inv.Name, site))
		}
		req.Inventory, req.Target.SiteID = inv, inv.SiteID
		req.Base = &Base{Inventory: invDigest, Source: "inventory", Blobs: inv.Count}
		if req.Target.Name == "" {
			req.Target.Name = inv.Name
		}
	}
	src := &graph.Store{Blobs: a.o.Blobs, Uploads: a.o.Uploads, Metadata: a.o.Metadata}
	if req.Images, err = a.resolve(ctx, q["image"], q["repository"], fs.Repositories); err != nil {
		return err
	}
	if len(req.Images) == 0 {
		return fmt.Errorf("%w: nothing to export: give --image, --repository or a --connected-registry with repositories that hold tags", auth.ErrInvalid)
	}
	if req.Inventory == nil && !full && len(fs.Held) > 0 {
		if req.Inventory, err = heldInventory(ctx, src, fs.Held); err != nil {
			return err
		}
		req.Base = &Base{Source: "fleet", Blobs: req.Inventory.Count}
	}
	ex, err := Prepare(ctx, src, key, req)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set(HeaderID, ex.Contents.ID)
	w.Header().Set(HeaderBlobs, strconv.Itoa(len(ex.Contents.Blobs)))
	w.Header().Set(HeaderOmitted, strconv.Itoa(len(ex.Contents.Omitted)))
	if ex.Size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(ex.Size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if err := ex.WriteTo(ctx, w, nil); err != nil {
		return err
	}
	a.o.Log.Info("bundle exported", "bundle", ex.Contents.ID, "target", site, "images", len(ex.Contents.Images), "blobs", len(ex.Contents.Blobs), "bytes", ex.Contents.Bytes(), "omitted", len(ex.Contents.Omitted))
	return nil
}

// heldInventory is the inventory the root infers from the images a site
// reported holding: their blobs in the root's store.
func heldInventory(ctx context.Context, src graph.Source, held []Image) (*Inventory, error) {
	plan := &Plan{}
	for _, im := range held {
		_, err := graph.Copy(ctx, src, im.Repository, plan, im.Repository, v1.Descriptor{Digest: im.Digest}, graph.Options{})
		if errors.Is(err, graph.ErrNotFound) {
			continue // gone from the root: not counted as held
		}
		if err != nil {
			return nil, fmt.Errorf("site holdings: %s: %w", im.Ref(), err)
		}
	}
	blobs, _ := plan.Result()
	return NewInventory(ctx, "", "", func(_ context.Context, fn func(digest.Digest, int64) error) error {
		for _, b := range blobs {
			if !isManifest(b) {
				_ = fn(b.Digest, b.Size)
			}
		}
		return nil
	})
}

// resolve turns --image, --repository and a site's repository patterns
// into images with digests, each once.
func (a *API) resolve(ctx context.Context, images, repos, patterns []string) ([]Image, error) {
	var out []Image
	add := func(im Image) {
		if !slices.ContainsFunc(out, func(o Image) bool { return o.Repository == im.Repository && o.Tag == im.Tag && o.Digest == im.Digest }) {
			out = append(out, im)
		}
	}
	for _, ref := range images {
		repo, tag, ok := strings.Cut(ref, "@")
		var d digest.Digest
		if ok {
			var err error
			if d, err = digest.Parse(tag); err != nil {
				return nil, fmt.Errorf("%w: image %q: %w", auth.ErrInvalid, ref, err)
			}
			tag = ""
		} else if i := strings.LastIndexByte(ref, ':'); i > 0 && !strings.Contains(ref[i:], "/") {
			repo, tag = ref[:i], ref[i+1:]
		} else {
			return nil, fmt.Errorf("%w: image %q: want repository:tag or repository@digest", auth.ErrInvalid, ref)
		}
		rec, err := a.o.Metadata.GetManifest(ctx, repo, cmpOr(tag, string(d)))
		if err != nil {
			return nil, notFound(fmt.Errorf("image %s: %w", ref, err))
		}
		add(Image{Repository: repo, Tag: tag, Digest: rec.Digest})
	}
	if len(patterns) > 0 && len(images) == 0 && len(repos) == 0 {
		all, err := a.repositories(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range all {
			if slices.ContainsFunc(patterns, func(p string) bool { return oci.MatchRepository(p, r) }) {
				repos = append(repos, r)
			}
		}
	}
	for _, repo := range repos {
		tags, err := a.tags(ctx, repo)
		if err != nil {
			return nil, notFound(fmt.Errorf("repository %s: %w", repo, err))
		}
		for _, t := range tags {
			rec, err := a.o.Metadata.GetManifest(ctx, repo, t)
			if err != nil {
				return nil, notFound(fmt.Errorf("image %s:%s: %w", repo, t, err))
			}
			add(Image{Repository: repo, Tag: t, Digest: rec.Digest})
		}
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func notFound(err error) error {
	if errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrRepositoryUnknown) {
		return fmt.Errorf("%w: %w", auth.ErrNotFound, err)
	}
	return err
}

func (a *API) repositories(ctx context.Context) ([]string, error) {
	var out []string
	last := ""
	for range 10000 {
		page, more, err := a.o.Metadata.Repositories(ctx, last, 1000)
		if err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			break
		}
		last = page[len(page)-1]
	}
	return out, nil
}

func (a *API) tags(ctx context.Context, repo string) ([]string, error) {
	var out []string
	last := ""
	for range 10000 {
		page, more, err := a.o.Metadata.Tags(ctx, repo, last, 1000)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			break
		}
		last = page[len(page)-1]
	}
	return out, nil
}

// Inventory streams the site's inventory: GET /api/v1/bundles/inventory.
func (a *API) Inventory(w http.ResponseWriter, r *http.Request) error {
	inv, err := NewInventory(r.Context(), a.siteID, a.o.Name, a.o.Walk)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = inv.WriteTo(w)
	return err
}
