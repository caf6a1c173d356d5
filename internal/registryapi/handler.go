// Package registryapi implements the /v2/ surface of the OCI Distribution
// Spec v1.1: a pure route parser, one small method per endpoint, and a
// single adapter that turns errors into OCI error bodies.
package registryapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/semaphore"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Action is what a request does to a repository, for authorization.
type Action string

// The actions a request may need.
const (
	ActionPull   Action = "pull"   // read blobs and manifests
	ActionPush   Action = "push"   // upload blobs, put manifests and tags
	ActionDelete Action = "delete" // delete blobs, manifests and tags
	ActionList   Action = "list"   // list tags and referrers
	// ActionMountFrom reads a blob of the source repository of a
	// cross-repository mount. Clients rarely ask a registry token for the
	// source's scope, so it is checked against the caller's permissions
	// rather than the token's scopes.
	ActionMountFrom Action = "mount-from"
)

// Access is one permission a request needs: an action on a repository.
type Access struct {
	Repository string
	Action     Action
}

// Authorizer decides whether a request may perform every access listed. It
// is the one place where authorization happens; it returns an *auth.Denial
// (which carries its challenge) or an *Error to deny.
type Authorizer interface {
	Authorize(r *http.Request, access []Access) error
}

// CatalogFilter is an optional ability of an Authorizer: it authorizes a
// catalog request and returns a predicate telling which repositories the
// caller may see.
type CatalogFilter interface {
	CatalogFilter(r *http.Request) (func(repository string) bool, error)
}

// AllowAll authorizes every request.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(*http.Request, []Access) error { return nil }

// Limits bound what a client may send or ask for.
type Limits struct {
	// ManifestMaxBytes is the largest manifest body accepted.
	ManifestMaxBytes int64
	// PageSizeMax caps the n parameter of tag and catalog listings.
	PageSizeMax int
	// UploadSessionsPerCredential and UploadSessionsPerRepository cap the
	// open upload sessions; a new session beyond either gets 429.
	UploadSessionsPerCredential int
	UploadSessionsPerRepository int
}

// DefaultLimits are used for zero fields of Limits.
var DefaultLimits = Limits{ManifestMaxBytes: 4 << 20, PageSizeMax: 1000, UploadSessionsPerCredential: 1000, UploadSessionsPerRepository: 1000}

// UploadObserver is told when upload sessions open and close, for metrics.
type UploadObserver interface {
	UploadStarted()
	UploadEnded()
}

// Fallback fetches content missing locally from elsewhere (a connected
// registry's parent) before a pull answers "unknown". It returns an error
// when it could not bring the content: one whose chain holds a value with
// a NotFound() bool method answering true when the source does not have
// it (the pull answers unknown), with an Unavailable() bool method
// answering true when the source could not be reached (503), and any
// other error when the source failed (502); see toAPIError.
type Fallback interface {
	FetchManifest(ctx context.Context, repo, ref string) error
	FetchBlob(ctx context.Context, repo string, d digest.Digest) error
}

// Options configure a Handler.
type Options struct {
	Fallback   Fallback
	Blobs      storage.BlobStore
	Uploads    storage.Uploads
	Metadata   storage.Metadata
	Authorizer Authorizer
	Limits     Limits
	Logger     *slog.Logger
	Observer   UploadObserver
	// Redirect answers blob GETs with a redirect to the blob store's URL
	// for the blob, when the store is a storage.Redirector.
	Redirect bool
	// Pulls, when set, is told of each manifest served.
	Pulls PullObserver
}

// PullObserver is told of each manifest pull (GET or HEAD answered with
// the manifest), to know what was pulled last.
type PullObserver interface {
	ManifestPulled(repo string, d digest.Digest)
}

// Handler serves the registry API.
type Handler struct {
	blobs    storage.BlobStore
	uploads  storage.Uploads
	meta     storage.Metadata
	auth     Authorizer
	limits   Limits
	log      *slog.Logger
	observer UploadObserver
	pulls    PullObserver
	fallback Fallback
	// redirect is the blob store when blob GETs are redirected to it.
	redirect storage.Redirector
	// manifestBytes bounds the manifest bodies held at once (see
	// readManifest), so that memory stays bounded whatever the
	// concurrency.
	manifestBytes *semaphore.Weighted
	sessions      *sessionCounter
}

type noObserver struct{}

func (noObserver) UploadStarted() {}
func (noObserver) UploadEnded()   {}

// New returns a Handler. Blobs, Uploads and Metadata are required.
func New(o Options) (*Handler, error) {
	if o.Blobs == nil || o.Uploads == nil || o.Metadata == nil {
		return nil, errors.New("registryapi: blob store, uploads and metadata are required")
	}
	h := &Handler{blobs: o.Blobs, uploads: o.Uploads, meta: o.Metadata, auth: o.Authorizer, limits: o.Limits, log: o.Logger, observer: o.Observer, pulls: o.Pulls, fallback: o.Fallback}
	if r, ok := o.Blobs.(storage.Redirector); ok && o.Redirect {
		h.redirect = r
	}
	if h.auth == nil {
		h.auth = AllowAll{}
	}
	if h.limits.ManifestMaxBytes <= 0 {
		h.limits.ManifestMaxBytes = DefaultLimits.ManifestMaxBytes
	}
	if h.limits.PageSizeMax <= 0 {
		h.limits.PageSizeMax = DefaultLimits.PageSizeMax
	}
	h.manifestBytes = semaphore.NewWeighted(manifestBudget(h.limits.ManifestMaxBytes))
	if h.limits.UploadSessionsPerCredential <= 0 {
		h.limits.UploadSessionsPerCredential = DefaultLimits.UploadSessionsPerCredential
	}
	if h.limits.UploadSessionsPerRepository <= 0 {
		h.limits.UploadSessionsPerRepository = DefaultLimits.UploadSessionsPerRepository
	}
	h.sessions = newSessionCounter(h.limits.UploadSessionsPerCredential, h.limits.UploadSessionsPerRepository)
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.observer == nil {
		h.observer = noObserver{}
	}
	return h, nil
}

// RouteLabel names the endpoint of a request path, for metrics.
func RouteLabel(path string) string {
	r, err := ParseRoute(path)
	if err != nil {
		return "invalid"
	}
	return r.Kind.String()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	route, err := ParseRoute(r.URL.Path)
	if errors.Is(err, errNotFound) {
		err = fmt.Errorf("%w: %s", err, r.URL.Path)
	}
	if err == nil {
		err = h.dispatch(w, r, route)
	}
	if err == nil {
		return
	}
	apiErr := toAPIError(err)
	if apiErr.HTTPStatus() >= 500 {
		h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if apiErr.Err != nil {
		h.log.DebugContext(r.Context(), "request refused", "method", r.Method, "path", r.URL.Path, "code", string(apiErr.Code), "err", apiErr.Err)
	}
	writeError(w, r, apiErr)
}

func (h *Handler) dispatch(w http.ResponseWriter, r *http.Request, rt Route) error {
	m := r.Method
	switch rt.Kind {
	case KindBase:
		if m == http.MethodGet || m == http.MethodHead {
			return h.base(w, r)
		}
	case KindCatalog:
		if m == http.MethodGet {
			return h.catalog(w, r)
		}
	case KindTags:
		if m == http.MethodGet {
			return h.tags(w, r, rt)
		}
	case KindManifest:
		switch m {
		case http.MethodGet, http.MethodHead:
			return h.getManifest(w, r, rt)
		case http.MethodPut:
			return h.putManifest(w, r, rt)
		case http.MethodDelete:
			return h.deleteManifest(w, r, rt)
		}
	case KindBlob:
		switch m {
		case http.MethodGet, http.MethodHead:
			return h.getBlob(w, r, rt)
		case http.MethodDelete:
			return h.deleteBlob(w, r, rt)
		}
	case KindUploadStart:
		if m == http.MethodPost {
			return h.startUpload(w, r, rt)
		}
	case KindUpload:
		switch m {
		case http.MethodGet:
			return h.uploadStatus(w, r, rt)
		case http.MethodPatch:
			return h.patchUpload(w, r, rt)
		case http.MethodPut:
			return h.finishUpload(w, r, rt)
		case http.MethodDelete:
			return h.cancelUpload(w, r, rt)
		}
	case KindReferrers:
		if m == http.MethodGet {
			return h.referrers(w, r, rt)
		}
	}
	return &Error{Code: CodeUnsupported, Message: "method " + m + " is not allowed on the " + rt.Kind.String() + " endpoint"}
}

// authorize asks the Authorizer for one action on the route's repository.
func (h *Handler) authorize(r *http.Request, rt Route, a Action) error {
	return h.auth.Authorize(r, []Access{{Repository: rt.Name, Action: a}})
}

func (h *Handler) base(w http.ResponseWriter, r *http.Request) error {
	if err := h.auth.Authorize(r, nil); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte("{}"))
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
