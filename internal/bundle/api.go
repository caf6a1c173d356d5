package bundle

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Options wire the bundle routes to a registry.
type Options struct {
	Blobs    storage.BlobStore
	Uploads  storage.Uploads
	Metadata storage.Metadata
	Log      *slog.Logger
	// Walk lists every blob the store holds (the inventory).
	Walk    func(ctx context.Context, fn func(d digest.Digest, size int64) error) error
	DataDir string
	// Name is this registry's connected-registry name ("" with no parent).
	Name string
	// TrustedKey returns the key received from the parent (nil: none).
	TrustedKey func() ed25519.PublicKey
	// Issuer names this registry in the bundles it signs.
	Issuer string
	// Fleet resolves a connected registry's repositories and what the
	// root knows it holds (nil at a registry with no fleet).
	Fleet func(name string) (FleetSite, error)
	// OnImport is told each import committed (the edge reports it).
	OnImport func(Record)
}

// FleetSite is what the root knows of a connected registry.
type FleetSite struct {
	Repositories []string
	// Held are the images the site reported importing.
	Held []Image
}

// API holds the endpoints of /api/v1/bundles/… and /api/v1/pki/bundle.pub.
type API struct {
	o        Options
	sessions Sessions
	siteID   string
	tagLog   *TagLog
}

// NewAPI builds the bundle endpoints, which adminapi serves: export and
// the public key at the root (and any registry with a fleet), inventory
// and import everywhere.
func NewAPI(o Options) (*API, error) {
	id, err := SiteID(o.DataDir)
	if err != nil {
		return nil, err
	}
	tags, err := OpenTagLog(filepath.Join(o.DataDir, "bundle", "tags.json"))
	if err != nil {
		return nil, err
	}
	return &API{o: o, siteID: id, tagLog: tags}, nil
}

// invalid turns a refusal of the request's content into a 400 with its
// message (the one place bundle errors meet the management API's table).
func invalid(err error) error {
	for _, e := range []error{ErrSignature, ErrTarget, ErrBase, ErrFormat, ErrNotListed, ErrNoKey, ErrIncomplete, ErrRollback, graph.ErrDigest, storage.ErrDigestMismatch, storage.ErrBlobUnknown, storage.ErrManifestBlobUnknown, oci.ErrManifestInvalid} {
		if errors.Is(err, e) {
			return refusal{err}
		}
	}
	return err
}

// refusal is an auth.ErrInvalid (400) whose message is the refusal's
// own.
type refusal struct{ err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{auth.ErrInvalid, r.err} }

// PublicKey serves its route (docs/api.md).
func (a *API) PublicKey(w http.ResponseWriter, _ *http.Request) {
	key, err := a.signingKey()
	if err != nil {
		a.o.Log.Error("bundle key unavailable", "err", err)
		http.Error(w, "bundle key unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(EncodePublicKey(key.Public().(ed25519.PublicKey)))
}

// OpenRequest is the body of POST /api/v1/bundles/imports.
type OpenRequest struct {
	Contents  []byte `json:"contents"`
	Signature []byte `json:"signature"`
	// BundleKey is the root's public key (PEM), for a site without one.
	BundleKey string `json:"bundleKey,omitempty"`
}

func (a *API) site() *Site {
	key := a.o.TrustedKey
	if key == nil {
		key = func() ed25519.PublicKey { return nil }
	}
	return &Site{Blobs: a.o.Blobs, Uploads: a.o.Uploads, Metadata: a.o.Metadata, Log: a.o.Log, Name: a.o.Name, SiteID: a.siteID, Key: key, OnImport: a.o.OnImport, Tags: a.tagLog}
}

// Open serves its route (docs/api.md).
func (a *API) Open(r *http.Request) (int, any, error) {
	var req OpenRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 2*maxContentsBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, nil, refusal{fmt.Errorf("request body: %w", err)}
	}
	var supplied ed25519.PublicKey
	if req.BundleKey != "" {
		k, err := ParsePublicKey([]byte(req.BundleKey))
		if err != nil {
			return 0, nil, invalid(err)
		}
		supplied = k
	}
	s, sum, err := a.site().Open(r.Context(), req.Contents, req.Signature, supplied)
	if err != nil {
		a.o.Log.Warn("bundle refused", "err", err)
		return 0, nil, invalid(err)
	}
	a.sessions.Put(s)
	a.o.Log.Info("bundle import opened", "bundle", sum.ID, "images", len(sum.Images), "blobs", sum.Blobs, "present", sum.Present, "bytes_to_write", sum.ToWrite)
	return http.StatusCreated, sum, nil
}

func (a *API) session(r *http.Request) (*Session, digest.Digest, string, error) {
	s, ok := a.sessions.Get(r.PathValue("id"))
	if !ok {
		return nil, "", "", fmt.Errorf("%w: bundle import %q is not open (open it again: run the import again)", auth.ErrNotFound, r.PathValue("id"))
	}
	var d digest.Digest
	if v := r.PathValue("digest"); v != "" {
		var err error
		if d, err = digest.Parse(v); err != nil {
			return nil, "", "", fmt.Errorf("%w: digest %q: %w", auth.ErrInvalid, v, err)
		}
	}
	return s, d, r.URL.Query().Get("repository"), nil
}

// Presence answers the GET routes of an import session.
type Presence struct {
	Present bool `json:"present"`
}

// HasBlob serves its route (docs/api.md).
func (a *API) HasBlob(r *http.Request) (int, any, error) {
	s, d, repo, err := a.session(r)
	if err != nil {
		return 0, nil, err
	}
	size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	ok, err := s.HasBlob(r.Context(), repo, d, size)
	return http.StatusOK, Presence{ok}, invalid(err)
}

// HasManifest serves its route (docs/api.md).
func (a *API) HasManifest(r *http.Request) (int, any, error) {
	s, d, repo, err := a.session(r)
	if err != nil {
		return 0, nil, err
	}
	ok, err := s.HasManifest(r.Context(), repo, d)
	return http.StatusOK, Presence{ok}, invalid(err)
}

// PutBlob serves its route (docs/api.md).
func (a *API) PutBlob(r *http.Request) (int, any, error) {
	s, d, repo, err := a.session(r)
	if err != nil {
		return 0, nil, err
	}
	if err := s.PushBlob(r.Context(), repo, d, r.Body); err != nil {
		a.o.Log.Warn("bundle blob refused", "bundle", s.Contents.ID, "repo", repo, "digest", d, "err", err)
		return 0, nil, invalid(err)
	}
	return http.StatusCreated, nil, nil
}

// PutManifest serves its route (docs/api.md).
func (a *API) PutManifest(r *http.Request) (int, any, error) {
	s, d, repo, err := a.session(r)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	if err := s.PushManifest(r.Context(), repo, d, body); err != nil {
		a.o.Log.Warn("bundle manifest refused", "bundle", s.Contents.ID, "repo", repo, "digest", d, "err", err)
		return 0, nil, invalid(err)
	}
	return http.StatusCreated, nil, nil
}

// Commit serves its route (docs/api.md).
func (a *API) Commit(r *http.Request) (int, any, error) {
	s, _, _, err := a.session(r)
	if err != nil {
		return 0, nil, err
	}
	rep, err := s.Commit(r.Context())
	if err != nil {
		return 0, nil, invalid(err)
	}
	a.o.Log.Info("bundle imported", "bundle", rep.ID, "published", rep.Published, "blobs_written", rep.BlobsWritten, "bytes_written", rep.BytesWritten)
	return http.StatusOK, rep, nil
}
