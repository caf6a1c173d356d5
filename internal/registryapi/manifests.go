package registryapi

import (
	"context"
	"errors"
	"fmt"
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
		err = fallbackResult(h.fallback.FetchManifest(r.Context(), rt.Name, rt.Reference), err)
		if err == nil {
			m, err = h.meta.GetManifest(r.Context(), rt.Name, rt.Reference)
		}
	}
	if err != nil {
		return err
	}
	if h.pulls != nil {
		h.pulls.ManifestPulled(rt.Name, m.Digest)
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
	body, release, err := h.readManifest(w, r)
	if err != nil {
		return err
	}
	defer release()
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
	rec, optional := storage.NewManifestRecord(d, parsed, body)
	if err := h.checkSizes(r.Context(), rt.Name, parsed); err != nil {
		return err
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

// checkSizes refuses a manifest whose descriptors give a size other than
// that of the blob or child manifest stored under the digest (image spec §
// "Descriptor": size must be the exact byte count): a client trusting the
// descriptor would read short or wait for bytes that never come. Content
// not stored yet is left to PutManifest, which answers
// MANIFEST_BLOB_UNKNOWN unless it is optional.
func (h *Handler) checkSizes(ctx context.Context, repo string, m oci.Manifest) error {
	for _, b := range m.Blobs {
		size, err := h.meta.BlobSize(ctx, repo, b.Digest)
		if errors.Is(err, storage.ErrBlobUnknown) {
			continue
		}
		if err != nil {
			return err
		}
		if size != b.Size {
			return sizeMismatch("blob", b.Digest, b.Size, size)
		}
	}
	for _, c := range m.Manifests {
		child, err := h.meta.GetManifest(ctx, repo, string(c.Digest))
		if errors.Is(err, storage.ErrManifestUnknown) {
			continue
		}
		if err != nil {
			return err
		}
		if child.Size() != c.Size {
			return sizeMismatch("manifest", c.Digest, c.Size, child.Size())
		}
	}
	return nil
}

func sizeMismatch(kind string, d digest.Digest, claimed, stored int64) *Error {
	return &Error{
		Code:    CodeManifestInvalid,
		Message: fmt.Sprintf("the descriptor of %s %s gives size %d, the stored %s has %d bytes", kind, d, claimed, kind, stored),
		Detail:  map[string]any{"digest": d, "size": claimed, "storedSize": stored},
	}
}
