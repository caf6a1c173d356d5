package registryapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

func uploadLocation(rt Route, id string) string {
	return "/v2/" + rt.Name + "/blobs/uploads/" + id
}

// setUploadHeaders describes an open session (spec § "Pushing a blob in
// chunks"): its URL and the inclusive range of bytes received.
func setUploadHeaders(w http.ResponseWriter, rt Route, id string, size int64) {
	hd := w.Header()
	hd.Set("Location", uploadLocation(rt, id))
	hd.Set("Docker-Upload-UUID", id)
	end := size - 1
	if end < 0 {
		end = 0
	}
	hd.Set("Range", "0-"+itoa(end))
	hd.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/"+string(d))
	hd.Set("Docker-Content-Digest", string(d))
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// startUpload serves POST /v2/<name>/blobs/uploads/: a cross-repository
// mount (mount+from), a monolithic upload (digest), or a new session
// (spec § "Pushing blobs", "Mounting a blob from another repository").
func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	q := r.URL.Query()
	if mount, from := q.Get("mount"), q.Get("from"); mount != "" {
		mounted, err := h.mount(r, rt, mount, from)
		if err != nil || mounted {
			if mounted {
				blobCreated(w, rt.Name, digest.Digest(mount))
			}
			return err
		}
	}
	owner, err := h.authorizeAs(r, rt, ActionPush)
	if err != nil {
		return err
	}
	if ds := q.Get("digest"); ds != "" {
		// A monolithic upload closes its session before answering, so
		// it is not counted against the session limits.
		d, err := oci.ParseDigest(ds)
		if err != nil {
			return err
		}
		id, err := h.uploads.StartUpload(r.Context(), rt.Name)
		if err != nil {
			return err
		}
		if err := h.complete(r, rt, id, d); err != nil {
			_ = h.uploads.CancelUpload(r.Context(), rt.Name, id)
			return err
		}
		blobCreated(w, rt.Name, d)
		return nil
	}
	if err := h.sessions.reserve(owner); err != nil {
		return err
	}
	id, err := h.uploads.StartUpload(r.Context(), rt.Name)
	if err != nil {
		h.sessions.release(owner)
		return err
	}
	h.sessions.bind(id, owner)
	h.observer.UploadStarted()
	setUploadHeaders(w, rt, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mount links a blob of repository from into rt's repository when the
// caller may read it there. Without from (an anonymous mount, spec v1.1),
// any repository holding the blob that the caller may read is a source.
// It reports false, with no error, when the client should fall back to a
// normal upload.
func (h *Handler) mount(r *http.Request, rt Route, mount, from string) (bool, error) {
	d, err := oci.ParseDigest(mount)
	if err != nil {
		return false, err
	}
	sources := []string{from}
	if from == "" {
		if sources, err = h.meta.BlobRepositories(r.Context(), d); err != nil {
			return false, err
		}
	}
	for _, src := range sources {
		if oci.ValidateName(src) != nil {
			continue
		}
		access := []Access{{Repository: rt.Name, Action: ActionPush}, {Repository: src, Action: ActionMountFrom}}
		if h.auth.Authorize(r, access) != nil {
			continue
		}
		size, err := h.meta.BlobSize(r.Context(), src, d)
		if errors.Is(err, storage.ErrBlobUnknown) {
			continue
		}
		if err != nil {
			return false, err
		}
		if err := h.meta.LinkBlob(r.Context(), rt.Name, d, size); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// parseContentRange reads a "<start>-<end>" Content-Range header and
// returns start, or -1 when the header is absent.
func parseContentRange(r *http.Request) (int64, error) {
	v := r.Header.Get("Content-Range")
	if v == "" {
		return -1, nil
	}
	v = strings.TrimPrefix(strings.TrimPrefix(v, "bytes "), "bytes=")
	startS, endS, ok := strings.Cut(v, "-")
	start, err1 := strconv.ParseInt(startS, 10, 64)
	end, err2 := strconv.ParseInt(endS, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, newError(CodeRangeInvalid, fmt.Sprintf("malformed Content-Range %q, want <start>-<end>", r.Header.Get("Content-Range")), nil)
	}
	if r.ContentLength >= 0 && end-start+1 != r.ContentLength {
		return 0, newError(CodeRangeInvalid, fmt.Sprintf("Content-Range %q does not match Content-Length %d", r.Header.Get("Content-Range"), r.ContentLength), nil)
	}
	return start, nil
}

// clientBody wraps a request body and remembers whether reading it failed,
// so that a client that stops sending mid-upload is answered (and logged)
// as a client error rather than a storage failure.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// appendRequest appends the request body to session id at offset (-1 for
// no check).
func (h *Handler) appendRequest(r *http.Request, rt Route, id string, offset int64) (int64, error) {
	body := &clientBody{r: r.Body}
	size, err := h.uploads.AppendUpload(r.Context(), rt.Name, id, offset, body)
	if err != nil && body.err != nil {
		return size, newError(CodeBlobUploadInvalid, "reading the request body failed; the upload holds "+itoa(size)+" bytes", err)
	}
	return size, storage.NeedSpace(err, r.ContentLength)
}

// appendBody appends the request body to the session, checking
// Content-Range. On an offset mismatch the reply carries the session's
// current range so that the client can resume.
func (h *Handler) appendBody(w http.ResponseWriter, r *http.Request, rt Route) (int64, error) {
	offset, err := parseContentRange(r)
	if err != nil {
		return 0, err
	}
	size, err := h.appendRequest(r, rt, rt.Reference, offset)
	if errors.Is(err, storage.ErrOffsetMismatch) {
		setUploadHeaders(w, rt, rt.Reference, size)
	}
	return size, err
}

// patchUpload serves PATCH /v2/<name>/blobs/uploads/<id>: one chunk, in
// order, or the whole blob streamed.
func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	owner, err := h.authorizeAs(r, rt, ActionPush)
	if err != nil {
		return err
	}
	size, err := h.appendBody(w, r, rt)
	if err != nil {
		h.endIfGone(rt, err)
		return err
	}
	h.sessionUsed(rt.Reference, owner)
	setUploadHeaders(w, rt, rt.Reference, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// complete verifies the session against d, stores the blob and links it
// into the repository.
func (h *Handler) complete(r *http.Request, rt Route, id string, d digest.Digest) error {
	if r.ContentLength != 0 {
		if _, err := h.appendRequest(r, rt, id, -1); err != nil {
			return err
		}
	}
	size, err := h.uploads.CommitUpload(r.Context(), rt.Name, id, d)
	if err != nil {
		return err
	}
	return h.meta.LinkBlob(r.Context(), rt.Name, d, size)
}

// finishUpload serves PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>,
// with an optional last chunk.
func (h *Handler) finishUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPush); err != nil {
		return err
	}
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return newError(CodeDigestInvalid, "the digest query parameter is required to close an upload", nil)
	}
	d, err := oci.ParseDigest(ds)
	if err != nil {
		return err
	}
	if r.ContentLength != 0 {
		if _, err := h.appendBody(w, r, rt); err != nil {
			h.endIfGone(rt, err)
			return err
		}
	}
	size, err := h.uploads.CommitUpload(r.Context(), rt.Name, rt.Reference, d)
	if err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrUploadUnknown) {
			// The session is discarded, or gone already.
			h.sessionEnded(rt.Reference, rt.Name)
		}
		return err
	}
	h.sessionEnded(rt.Reference, rt.Name)
	if err := h.meta.LinkBlob(r.Context(), rt.Name, d, size); err != nil {
		return err
	}
	blobCreated(w, rt.Name, d)
	return nil
}

// uploadStatus serves GET /v2/<name>/blobs/uploads/<id>.
func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt Route) error {
	owner, err := h.authorizeAs(r, rt, ActionPush)
	if err != nil {
		return err
	}
	size, err := h.uploads.UploadSize(r.Context(), rt.Name, rt.Reference)
	if err != nil {
		h.endIfGone(rt, err)
		return err
	}
	h.sessionUsed(rt.Reference, owner)
	setUploadHeaders(w, rt, rt.Reference, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cancelUpload serves DELETE /v2/<name>/blobs/uploads/<id>.
func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPush); err != nil {
		return err
	}
	if err := h.uploads.CancelUpload(r.Context(), rt.Name, rt.Reference); err != nil {
		h.endIfGone(rt, err)
		return err
	}
	h.sessionEnded(rt.Reference, rt.Name)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
