package registryapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// manifestBudget is how many manifest body bytes the handler holds at
// once: one manifest of the largest size allowed, or many small ones.
// Parsing, validating and storing a manifest costs a few times its size
// in memory, so the budget keeps the total near ten times the limit
// however many clients push at once.
func manifestBudget(maxBytes int64) int64 { return maxBytes }

// minManifestWeight is what a manifest of unknown or tiny size counts
// against the budget while it is read.
const minManifestWeight = 4 << 10

// readManifest reads a manifest request body into one buffer of its exact
// size, within the manifest budget: a request whose Content-Length is
// known reserves that many bytes before reading (waiting for others to
// finish when the budget is spent), one without a length reserves the
// limit. release must be called once the body is no longer needed.
func (h *Handler) readManifest(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	limit := h.limits.ManifestMaxBytes
	if r.ContentLength > limit {
		return nil, nil, tooLarge(limit)
	}
	weight := limit
	if r.ContentLength >= 0 {
		weight = max(r.ContentLength, minManifestWeight)
	}
	weight = min(weight, manifestBudget(limit))
	if err := h.manifestBytes.Acquire(r.Context(), weight); err != nil {
		return nil, nil, newError(CodeManifestInvalid, "the request ended while waiting to read the manifest", err)
	}
	release = func() { h.manifestBytes.Release(weight) }
	body, err = readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if err != nil {
		release()
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, nil, tooLarge(limit)
		}
		return nil, nil, newError(CodeManifestInvalid, "reading the manifest body failed", err)
	}
	return body, release, nil
}

// readBody reads all of rd into a buffer allocated once when length is
// known, growing up to limit+1 bytes otherwise.
func readBody(rd io.Reader, length, limit int64) ([]byte, error) {
	if length < 0 {
		return io.ReadAll(rd)
	}
	buf := make([]byte, length)
	if _, err := io.ReadFull(rd, buf); err != nil {
		return nil, fmt.Errorf("body shorter than its Content-Length %d: %w", length, err)
	}
	// The body must end here: a longer one than announced is refused.
	var one [1]byte
	if n, _ := rd.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("body longer than its Content-Length %d", length)
	}
	return buf, nil
}
