package registryapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// getManifest serves GET and HEAD /v2/<name>/manifests/<reference>
// (spec § "Pulling manifests"). The stored bytes are returned unchanged.
func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPull); err != nil {
		return err
	}
	m, err := h.meta.GetManifest(r.Context(), rt.Name, rt.Reference)
	if errors.Is(err, storage.ErrManifestUnknown) && h.fallback != nil {
		ferr := h.fallback.FetchManifest(r.Context(), rt.Name, rt.Reference)
		switch {
		case ferr == nil:
			m, err = h.meta.GetManifest(r.Context(), rt.Name, rt.Reference)
		case storage.NoSpace(ferr):
			err = ferr // not unknown: the parent has it and this volume is full
		}
	}
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", m.MediaType)
	hd.Set("Docker-Content-Digest", string(m.Digest))
	hd.Set("Etag", `"`+string(m.Digest)+`"`)
	hd.Set("Content-Length", itoa(m.Size()))
	if match := r.Header.Get("If-None-Match"); match != "" && match == hd.Get("Etag") {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Body)
	}
	return nil
}

// putManifest serves PUT /v2/<name>/manifests/<reference>
// (spec § "Pushing manifests", and "Pushing manifests with subject").
func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPush); err != nil {
		return err
	}
	if r.ContentLength > h.limits.ManifestMaxBytes {
		return tooLarge(h.limits.ManifestMaxBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.limits.ManifestMaxBytes))
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return tooLarge(h.limits.ManifestMaxBytes)
	}
	if err != nil {
		return newError(CodeManifestInvalid, "reading the manifest body failed", err)
	}
	parsed, err := oci.ParseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	var (
		d    digest.Digest
		tags []string
	)
	if oci.IsDigest(rt.Reference) {
		want := digest.Digest(rt.Reference)
		d = oci.Digester(want, body)
		if d != want {
			return newError(CodeDigestInvalid, fmt.Sprintf("manifest content has digest %s, not %s", d, want), nil)
		}
	} else {
		d = oci.Digester("", body)
		tags = append(tags, rt.Reference)
	}
	for _, t := range r.URL.Query()["tag"] {
		if err := oci.ValidateTag(t); err != nil {
			return err
		}
		tags = append(tags, t)
	}
	rec := &storage.ManifestRecord{
		Digest:       d,
		MediaType:    parsed.MediaType,
		ArtifactType: parsed.ArtifactType,
		Annotations:  parsed.Annotations,
		Body:         body,
	}
	var optional map[digest.Digest]bool
	for _, b := range parsed.Blobs {
		rec.Blobs = append(rec.Blobs, b.Digest)
		if oci.IsNonDistributable(b.MediaType) {
			if optional == nil {
				optional = map[digest.Digest]bool{}
			}
			optional[b.Digest] = true
		}
	}
	for _, c := range parsed.Manifests {
		rec.Manifests = append(rec.Manifests, c.Digest)
	}
	if parsed.Subject != nil {
		rec.Subject = parsed.Subject.Digest
	}
	if err := h.meta.PutManifest(r.Context(), rt.Name, rec, tags, optional); err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.Name+"/manifests/"+string(d))
	hd.Set("Docker-Content-Digest", string(d))
	if rec.Subject != "" {
		hd.Set("OCI-Subject", string(rec.Subject))
	}
	for _, t := range tags {
		hd.Add("OCI-Tag", t)
	}
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func tooLarge(limit int64) *Error {
	return &Error{
		Code:    CodeSizeInvalid,
		Message: fmt.Sprintf("manifest is larger than the %d-byte limit", limit),
		Status:  http.StatusRequestEntityTooLarge,
	}
}

// deleteManifest serves DELETE /v2/<name>/manifests/<reference>: by digest
// it removes the manifest and its tags, by tag only the tag
// (spec § "Deleting tags", "Deleting manifests").
func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionDelete); err != nil {
		return err
	}
	var err error
	if oci.IsDigest(rt.Reference) {
		err = h.meta.DeleteManifest(r.Context(), rt.Name, digest.Digest(rt.Reference))
	} else {
		err = h.meta.DeleteTag(r.Context(), rt.Name, rt.Reference)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
