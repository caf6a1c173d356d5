package registryapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/oci"
)

// pageParams reads n and last. A missing n means the server's maximum
// page; larger values are capped and the Link header tells how to go on.
func (h *Handler) pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	last = q.Get("last")
	n = h.limits.PageSizeMax
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", newError(CodePaginationInvalid, "n must be a non-negative integer, got "+strconv.Quote(s), nil)
		}
		n = min(v, h.limits.PageSizeMax)
	}
	return n, last, nil
}

// setNextLink adds the RFC 5988 Link header pointing at the next page.
func setNextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// tags serves GET /v2/<name>/tags/list (spec § "Listing tags").
func (h *Handler) tags(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionList); err != nil {
		return err
	}
	n, last, err := h.pageParams(r)
	if err != nil {
		return err
	}
	tags, more, err := h.meta.Tags(r.Context(), rt.Name, last, n)
	if err != nil {
		return err
	}
	if more && len(tags) > 0 {
		setNextLink(w, "/v2/"+rt.Name+"/tags/list", n, tags[len(tags)-1])
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.Name, tags})
}

// catalog serves GET /v2/_catalog, listing only the repositories the
// caller may list.
func (h *Handler) catalog(w http.ResponseWriter, r *http.Request) error {
	var visible func(string) bool
	if f, ok := h.auth.(CatalogFilter); ok {
		var err error
		if visible, err = f.CatalogFilter(r); err != nil {
			return err
		}
	} else if err := h.auth.Authorize(r, nil); err != nil {
		return err
	}
	n, last, err := h.pageParams(r)
	if err != nil {
		return err
	}
	repos := []string{}
	more := false
	for len(repos) < n {
		page, pageMore, err := h.meta.Repositories(r.Context(), last, n-len(repos))
		if err != nil {
			return err
		}
		for _, name := range page {
			if visible == nil || visible(name) {
				repos = append(repos, name)
			}
			last = name
		}
		more = pageMore
		if !pageMore {
			break
		}
	}
	if more && len(repos) > 0 {
		setNextLink(w, "/v2/_catalog", n, repos[len(repos)-1])
	}
	return writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

// referrers serves GET /v2/<name>/referrers/<digest> (spec § "Listing
// referrers"), with the artifactType filter.
func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPull); err != nil {
		return err
	}
	descs, err := h.meta.Referrers(r.Context(), rt.Name, digest.Digest(rt.Reference))
	if err != nil {
		return err
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		kept := descs[:0]
		for _, d := range descs {
			if d.ArtifactType == at {
				kept = append(kept, d)
			}
		}
		descs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, oci.MediaTypeImageIndex, v1.Index{
		Versioned: specsVersioned,
		MediaType: oci.MediaTypeImageIndex,
		Manifests: descs,
	})
}

var specsVersioned = specs.Versioned{SchemaVersion: 2}
