package registryapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// getBlob serves GET and HEAD /v2/<name>/blobs/<digest>, with Range
// (spec § "Pulling blobs"). The file goes to http.ServeContent, which hands
// an *os.File to sendfile(2) and answers Range requests with 206. The blob
// store never opens a blob whose content does not hash to its digest: it
// quarantines it and reports it unknown, and then the fallback (a
// connected registry's parent) is asked for it again, as for a miss.
func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionPull); err != nil {
		return err
	}
	d := digest.Digest(rt.Reference)
	recorded, err := h.meta.BlobSize(r.Context(), rt.Name, d)
	if errors.Is(err, storage.ErrBlobUnknown) && h.fallback != nil {
		if err = h.fetchBlob(r, rt, d, err); err == nil {
			recorded, err = h.meta.BlobSize(r.Context(), rt.Name, d)
		}
	}
	if err != nil {
		return err
	}
	if h.redirect != nil && h.fallback == nil && r.Method == http.MethodGet {
		// The repository holds the blob (checked above); the client
		// fetches it from the blob store (storage.redirect).
		u, err := h.redirect.BlobURL(r.Context(), d)
		if err != nil {
			return err
		}
		w.Header().Set("Docker-Content-Digest", string(d))
		http.Redirect(w, r, u, http.StatusTemporaryRedirect)
		return nil
	}
	f, size, err := h.blobs.Open(r.Context(), d)
	if errors.Is(err, storage.ErrBlobUnknown) && h.fallback != nil {
		// Linked here but missing from the store, or found corrupt and
		// quarantined just now: fetch it again.
		if err = h.fetchBlob(r, rt, d, err); err == nil {
			f, size, err = h.blobs.Open(r.Context(), d)
		}
	}
	if errors.Is(err, storage.ErrBlobUnknown) {
		return newError(CodeBlobUnknown, "", fmt.Errorf("blob %s is linked in %s but missing from the store or corrupt: %w", d, rt.Name, err))
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if size != recorded {
		// The content verified against its digest, so it is what is
		// served; the record is what is wrong.
		h.log.WarnContext(r.Context(), "blob size differs from the size recorded for the repository", "repo", rt.Name, "digest", string(d), "size", size, "recorded", recorded)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", string(d))
	hd.Set("Etag", `"`+string(d)+`"`)
	hd.Set("Cache-Control", "max-age=31536000")
	if rng := r.Header.Get("Range"); rng != "" {
		switch {
		case strings.HasPrefix(rng, "bytes="):
		case len(rng) >= len("bytes=") && strings.EqualFold(rng[:len("bytes=")], "bytes="):
			// Range units are case-insensitive (RFC 9110 § 14.1);
			// ServeContent knows only the lowercase spelling.
			r.Header.Set("Range", "bytes="+rng[len("bytes="):])
		default:
			// An unknown unit is ignored (RFC 9110 § 14.2): the
			// whole blob, not ServeContent's 416.
			r.Header.Del("Range")
		}
		if emptySuffixRange(r.Header.Get("Range"), size) {
			r.Header.Del("Range")
		}
	}
	http.ServeContent(&rangeErrorWriter{ResponseWriter: w, r: r, size: size}, r, "", time.Time{}, f)
	return nil
}

// rangeErrorWriter turns the 416 of http.ServeContent (a malformed bytes
// range, or one past the end of the blob) into an OCI error body with
// Content-Range "bytes */<size>" (RFC 9110 § 15.5.17), whatever the cause;
// ServeContent itself sends plain text and names the size only for ranges
// past the end. Every other answer passes through, with io.ReaderFrom kept
// so that the blob still reaches sendfile(2).
type rangeErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	size    int64
	refused bool
}

func (w *rangeErrorWriter) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable || w.refused {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.refused = true
	hd := w.Header()
	msg := fmt.Sprintf("malformed Range %q", w.r.Header.Get("Range"))
	if hd.Get("Content-Range") != "" {
		msg = fmt.Sprintf("Range %q starts past the end of the %d-byte blob", w.r.Header.Get("Range"), w.size)
	}
	// An error is not the blob: no year-long caching, no validator.
	hd.Del("Cache-Control")
	hd.Del("Etag")
	writeError(w.ResponseWriter, w.r, &Error{
		Code:    CodeRangeInvalid,
		Message: msg,
		Header:  http.Header{"Content-Range": {"bytes */" + itoa(w.size)}},
	})
}

func (w *rangeErrorWriter) Write(b []byte) (int, error) {
	if w.refused {
		return len(b), nil // ServeContent's plain-text message
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom lets io.Copy reach the connection's sendfile path.
func (w *rangeErrorWriter) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok && !w.refused {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{w}, src)
}

func (w *rangeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// fetchBlob asks the fallback for blob d after the local lookup failed
// with unknown. It returns nil when the blob came, unknown when the
// fallback does not have it either, and the fallback's failure otherwise.
func (h *Handler) fetchBlob(r *http.Request, rt Route, d digest.Digest, unknown error) error {
	return fallbackResult(h.fallback.FetchBlob(r.Context(), rt.Name, d), unknown)
}

// emptySuffixRange reports whether a Range header holds a suffix range
// that selects no bytes: "-0", or any suffix of an empty blob.
// http.ServeContent answers those with 206 and an inverted Content-Range
// such as "bytes 100-99/100"; RFC 9110 § 14.2 lets a server ignore Range,
// so the caller serves the whole blob instead. The header is split as
// ServeContent splits it.
func emptySuffixRange(header string, size int64) bool {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return false
	}
	for _, ra := range strings.Split(spec, ",") {
		start, end, ok := strings.Cut(textproto.TrimString(ra), "-")
		if !ok || textproto.TrimString(start) != "" {
			continue
		}
		n, err := strconv.ParseInt(textproto.TrimString(end), 10, 64)
		if err == nil && (n == 0 || size == 0) {
			return true
		}
	}
	return false
}

// deleteBlob serves DELETE /v2/<name>/blobs/<digest> (spec § "Deleting
// blobs"). The blob leaves the repository; its content is reclaimed by
// garbage collection once no repository holds it.
func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.authorize(r, rt, ActionDelete); err != nil {
		return err
	}
	if err := h.meta.UnlinkBlob(r.Context(), rt.Name, digest.Digest(rt.Reference)); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
