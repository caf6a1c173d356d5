package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/catalog"
	"github.com/outpost-registry/outpost/internal/oci"
)

type reposData struct {
	Query       string
	Names       []string
	Total       int
	Truncated   bool
	LoginServer string
}

// maxListed bounds the repositories one page lists.
const maxListed = 500

func (u *UI) repositories(w http.ResponseWriter, r *http.Request, s *session) {
	all, err := u.o.Catalog.Repositories(r.Context(), s.principal(), 0)
	if err != nil {
		u.internal(w, r, s, err)
		return
	}
	d := reposData{Query: strings.TrimSpace(r.URL.Query().Get("q")), LoginServer: u.loginServer(r)}
	q := strings.ToLower(d.Query)
	for _, n := range all {
		if q == "" || strings.Contains(strings.ToLower(n), q) {
			d.Total++
			if len(d.Names) < maxListed {
				d.Names = append(d.Names, n)
			}
		}
	}
	d.Truncated = d.Total > len(d.Names)
	if r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "repo-list" {
		u.renderPart(w, s, "repositories", "list", d)
		return
	}
	u.render(w, r, s, http.StatusOK, "repositories", d)
}

type repoData struct {
	Repo        catalog.Repository
	Tags        []catalog.Tag
	Query       string
	LoginServer string
}

// repository serves /ui/repositories/{repo} (its tags) and
// /ui/repositories/{repo}/_manifests/{ref} (an image).
func (u *UI) repository(w http.ResponseWriter, r *http.Request, s *session) {
	p := r.PathValue("path")
	if repo, ref, ok := strings.Cut(p, "/_manifests/"); ok {
		u.image(w, r, s, repo, ref)
		return
	}
	if err := oci.ValidateName(p); err != nil {
		u.fail(w, r, s, http.StatusNotFound, "No repository "+p+".")
		return
	}
	info, tags, err := u.o.Catalog.Tags(r.Context(), s.principal(), p)
	if err != nil {
		u.catalogError(w, r, s, err, "repository "+p)
		return
	}
	d := repoData{Repo: info, Query: strings.TrimSpace(r.URL.Query().Get("q")), LoginServer: u.loginServer(r)}
	for _, t := range tags {
		if d.Query == "" || strings.Contains(t.Name, d.Query) {
			d.Tags = append(d.Tags, t)
		}
	}
	u.render(w, r, s, http.StatusOK, "repository", d)
}

// catalogError shows a catalog refusal: 403 for a repository outside the
// caller's scope map, 404 for one that does not exist.
func (u *UI) catalogError(w http.ResponseWriter, r *http.Request, s *session, err error, what string) {
	var d *auth.Denial
	switch {
	case errors.As(err, &d):
		u.fail(w, r, s, d.Status, "Your scope map does not allow reading "+what+".")
	case errors.Is(err, auth.ErrNotFound):
		u.fail(w, r, s, http.StatusNotFound, "No "+what+".")
	default:
		u.internal(w, r, s, err)
	}
}

type imageData struct {
	Repo, Ref   string
	Image       catalog.Image
	Tagged      bool
	Manifest    string
	Config      string
	Layers      []v1.Descriptor
	Children    []v1.Descriptor
	ConfigDesc  *v1.Descriptor
	Subject     *v1.Descriptor
	Annotations map[string]string
	PullCommand string
}

// maxConfig bounds the image config shown.
const maxConfig = 256 << 10

func (u *UI) image(w http.ResponseWriter, r *http.Request, s *session, repo, ref string) {
	if oci.ValidateName(repo) != nil || (oci.ValidateTag(ref) != nil && !isDigest(ref)) {
		u.fail(w, r, s, http.StatusNotFound, "No image "+repo+" "+ref+".")
		return
	}
	p := s.principal()
	rec, img, err := u.o.Catalog.Manifest(r.Context(), p, repo, ref)
	if err != nil {
		u.catalogError(w, r, s, err, "image "+repo+" "+ref)
		return
	}
	d := imageData{Repo: repo, Ref: ref, Image: img, Tagged: !isDigest(ref), Annotations: rec.Annotations}
	d.Manifest = indentJSON(rec.Body)
	host := u.loginServer(r)
	if d.Tagged {
		d.PullCommand = "docker pull " + host + "/" + repo + ":" + ref
	} else {
		d.PullCommand = "docker pull " + host + "/" + repo + "@" + ref
	}
	m, err := oci.ParseManifest(rec.MediaType, rec.Body)
	if err != nil {
		u.internal(w, r, s, err)
		return
	}
	d.Children, d.Subject = m.Manifests, m.Subject
	if !oci.IsIndex(rec.MediaType) && len(m.Blobs) > 0 {
		cfg := m.Blobs[0]
		d.ConfigDesc, d.Layers = &cfg, m.Blobs[1:]
		if cfg.Size <= maxConfig {
			if b, err := u.o.Catalog.Blob(r.Context(), p, repo, cfg.Digest, maxConfig); err == nil {
				d.Config = indentJSON(b)
			}
		}
	}
	u.render(w, r, s, http.StatusOK, "image", d)
}

func isDigest(ref string) bool {
	_, err := digest.Parse(ref)
	return err == nil
}

// indentJSON pretty-prints JSON, or returns it as it is.
func indentJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}
