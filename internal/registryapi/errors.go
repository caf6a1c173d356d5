package registryapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Code is an error code of the OCI Distribution Spec (§ "Error Codes").
type Code string

// The error codes of the spec, plus RANGE_INVALID, TOOMANYREQUESTS and
// UNAVAILABLE, which registries commonly use.
const (
	CodeBlobUnknown         Code = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       Code = "DIGEST_INVALID"
	CodeManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     Code = "MANIFEST_INVALID"
	CodeManifestUnknown     Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid         Code = "NAME_INVALID"
	CodeNameUnknown         Code = "NAME_UNKNOWN"
	CodeSizeInvalid         Code = "SIZE_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeDenied              Code = "DENIED"
	CodeUnsupported         Code = "UNSUPPORTED"
	CodeTooManyRequests     Code = "TOOMANYREQUESTS"
	CodeRangeInvalid        Code = "RANGE_INVALID"
	CodeUnavailable         Code = "UNAVAILABLE"
	CodeUnknown             Code = "UNKNOWN"
	// CodePaginationInvalid reports a bad n parameter. It is not in the
	// OCI table; the name is the one distribution uses, so clients
	// recognise it.
	CodePaginationInvalid Code = "PAGINATION_NUMBER_INVALID"
)

// codeInfo is the single table mapping each code to its HTTP status and the
// default message.
var codeInfo = map[Code]struct {
	status  int
	message string
}{
	CodeBlobUnknown:         {http.StatusNotFound, "blob unknown to registry"},
	CodeBlobUploadInvalid:   {http.StatusBadRequest, "blob upload invalid"},
	CodeBlobUploadUnknown:   {http.StatusNotFound, "blob upload unknown to registry"},
	CodeDigestInvalid:       {http.StatusBadRequest, "provided digest did not match uploaded content"},
	CodeManifestBlobUnknown: {http.StatusBadRequest, "manifest references a manifest or blob unknown to registry"},
	CodeManifestInvalid:     {http.StatusBadRequest, "manifest invalid"},
	CodeManifestUnknown:     {http.StatusNotFound, "manifest unknown to registry"},
	CodeNameInvalid:         {http.StatusBadRequest, "invalid repository name"},
	CodeNameUnknown:         {http.StatusNotFound, "repository name not known to registry"},
	CodeSizeInvalid:         {http.StatusBadRequest, "provided length did not match content length"},
	CodeUnauthorized:        {http.StatusUnauthorized, "authentication required"},
	CodeDenied:              {http.StatusForbidden, "requested access to the resource is denied"},
	CodeUnsupported:         {http.StatusMethodNotAllowed, "the operation is unsupported"},
	CodeTooManyRequests:     {http.StatusTooManyRequests, "too many requests"},
	CodeRangeInvalid:        {http.StatusRequestedRangeNotSatisfiable, "invalid content range"},
	CodeUnavailable:         {http.StatusServiceUnavailable, "service unavailable"},
	CodeUnknown:             {http.StatusInternalServerError, "unknown error"},
	CodePaginationInvalid:   {http.StatusBadRequest, "invalid number of results requested"},
}

// Error is an API error: an OCI code, a message and an optional detail.
// Status overrides the code's default HTTP status when set.
type Error struct {
	Code    Code
	Message string
	Detail  any
	Status  int
	// Header carries extra response headers, such as a challenge.
	Header http.Header
	// Err is the underlying cause, logged but never sent to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus returns the status the error is sent with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	if info, ok := codeInfo[e.Code]; ok {
		return info.status
	}
	return http.StatusInternalServerError
}

// newError builds an Error with the code's default message unless msg is given.
func newError(code Code, msg string, cause error) *Error {
	if msg == "" {
		msg = codeInfo[code].message
	}
	return &Error{Code: code, Message: msg, Err: cause}
}

// toAPIError is the one place where domain errors become OCI codes.
func toAPIError(err error) *Error {
	var apiErr *Error
	var denial *auth.Denial
	var pull *pullError
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &pull) && !storage.NoSpace(err):
		// A full volume here is not the parent's failure: 507 below.
		if pull.unavailable() {
			return &Error{Code: CodeUnavailable, Message: "the parent registry could not be reached to fetch the content; retry later", Err: err}
		}
		return &Error{Code: CodeUnknown, Message: "the parent registry failed to send the content; retry later", Status: http.StatusBadGateway, Err: err}
	case errors.Is(err, errNotFound):
		// The path names no endpoint of the API. The spec has no code for
		// it; NAME_UNKNOWN would tell the client a repository is missing.
		return &Error{Code: CodeUnsupported, Message: err.Error(), Status: http.StatusNotFound}
	case errors.As(err, &denial):
		return &Error{Code: denialCode(denial.Status), Message: denial.Message, Status: denial.Status, Header: denial.Header()}
	case errors.Is(err, oci.ErrNameInvalid):
		return newError(CodeNameInvalid, err.Error(), nil)
	case errors.Is(err, oci.ErrTagInvalid):
		return newError(CodeManifestInvalid, err.Error(), nil)
	case errors.Is(err, oci.ErrDigestInvalid), errors.Is(err, storage.ErrDigestMismatch):
		return newError(CodeDigestInvalid, err.Error(), nil)
	case errors.Is(err, oci.ErrManifestInvalid):
		return newError(CodeManifestInvalid, err.Error(), nil)
	case errors.Is(err, storage.ErrManifestBlobUnknown):
		return newError(CodeManifestBlobUnknown, err.Error(), nil)
	case errors.Is(err, storage.ErrBlobUnknown):
		return newError(CodeBlobUnknown, "", err)
	case errors.Is(err, storage.ErrManifestUnknown):
		return newError(CodeManifestUnknown, "", err)
	case errors.Is(err, storage.ErrRepositoryUnknown):
		return newError(CodeNameUnknown, "", err)
	case errors.Is(err, storage.ErrUploadUnknown):
		return newError(CodeBlobUploadUnknown, "", err)
	case errors.Is(err, storage.ErrOffsetMismatch):
		return newError(CodeRangeInvalid, err.Error(), nil)
	case storage.NoSpace(err):
		// RFC 4918 § 11.5. The spec has no code for it; DENIED (the
		// request is refused as made) with a message naming the cause.
		return &Error{Code: CodeDenied, Message: insufficientStorage(err), Status: http.StatusInsufficientStorage, Err: err}
	default:
		return newError(CodeUnknown, "", err)
	}
}

// pullError is a pull-through that the Fallback could not complete for a
// reason other than the content missing at the source.
type pullError struct{ err error }

func (e *pullError) Error() string { return "pull-through: " + e.err.Error() }
func (e *pullError) Unwrap() error { return e.err }

// unavailable reports a source that could not be reached.
func (e *pullError) unavailable() bool {
	var u interface{ Unavailable() bool }
	return errors.As(e.err, &u) && u.Unavailable()
}

// fallbackResult classifies the error of a Fallback fetch made after the
// local lookup failed with unknown: nil when the content came, unknown
// when the source does not have it either, and the source's failure
// otherwise, which is never answered as unknown.
func fallbackResult(err, unknown error) error {
	if err == nil {
		return nil
	}
	var nf interface{ NotFound() bool }
	if errors.As(err, &nf) && nf.NotFound() {
		return unknown
	}
	return &pullError{err: err}
}

// denialCode is the code of an authorization denial answered with status:
// 401 UNAUTHORIZED, 403 DENIED or 429 TOOMANYREQUESTS.
func denialCode(status int) Code {
	switch status {
	case http.StatusForbidden:
		return CodeDenied
	case http.StatusTooManyRequests:
		return CodeTooManyRequests
	}
	return CodeUnauthorized
}

// WriteInternalError answers 500 UNKNOWN with an OCI error body, for a
// request whose handler failed before answering (a recovered panic).
func WriteInternalError(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, newError(CodeUnknown, "internal error", nil))
}

// insufficientStorageMessage is the message of a write refused because
// the registry's data volume is full.
const insufficientStorageMessage = "insufficient storage: the registry's data volume is full (no space left on device or quota exceeded); the data of this request was not stored; retry once space is freed"

// insufficientStorage names the volume, its free space and what the write
// needed, when the store said.
func insufficientStorage(err error) string {
	var se *storage.SpaceError
	if !errors.As(err, &se) {
		return insufficientStorageMessage
	}
	need := ""
	if se.Need > 0 {
		need = fmt.Sprintf(", %d bytes needed", se.Need)
	}
	return fmt.Sprintf("insufficient storage: the registry's data volume is full (%s: %d of %d bytes free%s); the data of this request was not stored; retry once space is freed",
		se.Volume, se.Free, se.Total, need)
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError sends e as an OCI error body.
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	status := e.HTTPStatus()
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h.Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
