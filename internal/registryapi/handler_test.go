package registryapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage/memory"
)

// registry is the real handler over real fs and bolt stores, served on
// loopback.
type registry struct {
	t      *testing.T
	url    string
	client *http.Client
}

// newRegistry serves a fresh, empty registry for t.
func newRegistry(t *testing.T) *registry {
	t.Helper()
	return newRegistryLimits(t, registryapi.Limits{})
}

// newRegistryLimits serves a fresh, empty registry with the given limits,
// over a store in memory.
func newRegistryLimits(t *testing.T, limits registryapi.Limits) *registry {
	t.Helper()
	s := memory.New()
	h, err := registryapi.New(registryapi.Options{Blobs: s, Uploads: s, Metadata: s, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &registry{t: t, url: srv.URL, client: srv.Client()}
}

// do sends a request and returns the response with its body read. Every
// response of the API carries the distribution version header, so do
// checks it on every call.
func (r *registry) do(method, path string, hdr http.Header, body []byte) (*http.Response, []byte) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, r.url+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if got := resp.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		r.t.Errorf("%s %s: Docker-Distribution-API-Version = %q, want registry/2.0", method, path, got)
	}
	return resp, b
}

// want sends a request and fails unless it answers status.
func (r *registry) want(status int, method, path string, hdr http.Header, body []byte) (*http.Response, []byte) {
	r.t.Helper()
	resp, b := r.do(method, path, hdr, body)
	if resp.StatusCode != status {
		r.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, status, b)
	}
	return resp, b
}

// wantError sends a request and checks that it fails with status and the
// single OCI error code.
func (r *registry) wantError(status int, code, method, path string, hdr http.Header, body []byte) {
	r.t.Helper()
	resp, b := r.want(status, method, path, hdr, body)
	if method == http.MethodHead {
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		r.t.Errorf("%s %s: error Content-Type = %q, want application/json", method, path, ct)
	}
	var eb struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &eb); err != nil {
		r.t.Fatalf("%s %s: error body %q: %v", method, path, b, err)
	}
	if len(eb.Errors) != 1 || eb.Errors[0].Code != code || eb.Errors[0].Message == "" {
		r.t.Fatalf("%s %s: errors = %+v, want one %s with a message", method, path, eb.Errors, code)
	}
}

// pushBlob uploads data monolithically into repo.
func (r *registry) pushBlob(repo string, data []byte) v1.Descriptor {
	r.t.Helper()
	d := digest.FromBytes(data)
	r.want(http.StatusCreated, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+string(d), octets, data)
	return v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: d, Size: int64(len(data))}
}

// pushManifest puts body under ref and returns its digest.
func (r *registry) pushManifest(repo, ref string, body []byte) digest.Digest {
	r.t.Helper()
	r.want(http.StatusCreated, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, manifestType, body)
	return digest.FromBytes(body)
}

var (
	octets       = http.Header{"Content-Type": {"application/octet-stream"}}
	manifestType = http.Header{"Content-Type": {v1.MediaTypeImageManifest}}
)

// manifest is an image manifest under construction.
type manifest struct {
	config       v1.Descriptor
	layers       []v1.Descriptor
	artifactType string
	subject      *v1.Descriptor
	annotations  map[string]string
}

func (m manifest) body() []byte {
	b, err := json.Marshal(v1.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: m.artifactType,
		Config:       m.config,
		Layers:       m.layers,
		Subject:      m.subject,
		Annotations:  m.annotations,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// pushImage pushes a config and the layers into repo and returns the body
// of an image manifest referencing them (not yet pushed).
func (r *registry) pushImage(repo string, seed string, layers ...string) manifest {
	r.t.Helper()
	cfg := r.pushBlob(repo, []byte(`{"seed":"`+seed+`"}`))
	cfg.MediaType = v1.MediaTypeImageConfig
	m := manifest{config: cfg}
	for _, l := range layers {
		m.layers = append(m.layers, r.pushBlob(repo, []byte(l)))
	}
	return m
}

// TestAPIVersionHeader checks the version header on answers of every kind:
// success, API errors, errors written outside the adapter and unknown
// paths (the check itself is in registry.do).
func TestAPIVersionHeader(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	d := r.pushBlob("lib/app", []byte("0123456789")).Digest
	for _, c := range []struct {
		method, path string
		hdr          http.Header
		status       int
	}{
		{http.MethodGet, "/v2/", nil, http.StatusOK},
		{http.MethodHead, "/v2/", nil, http.StatusOK},
		{http.MethodGet, "/v2/lib/app/blobs/" + string(d), nil, http.StatusOK},
		{http.MethodGet, "/v2/lib/app/blobs/" + string(d), http.Header{"Range": {"bytes=20-"}}, http.StatusRequestedRangeNotSatisfiable},
		{http.MethodGet, "/v2/lib/app/tags/list", nil, http.StatusOK},
		{http.MethodGet, "/v2/lib/app/manifests/latest", nil, http.StatusNotFound},
		{http.MethodGet, "/v2/nothing/here", nil, http.StatusNotFound},
		{http.MethodGet, "/other", nil, http.StatusNotFound},
		{http.MethodPost, "/v2/_catalog", nil, http.StatusMethodNotAllowed},
	} {
		resp, _ := r.do(c.method, c.path, c.hdr, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
}

func TestBase(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	_, b := r.want(http.StatusOK, http.MethodGet, "/v2/", nil, nil)
	if string(b) != "{}" {
		t.Errorf("GET /v2/ body = %q, want {}", b)
	}
}

// TestErrorCodes checks the OCI error bodies of requests for things that
// do not exist or cannot be named.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	r.pushManifest("lib/app", "v1", r.pushImage("lib/app", "x").body())
	absent := string(digest.FromString("absent"))
	for _, c := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"name invalid (upper case)", http.MethodGet, "/v2/Lib/App/tags/list", http.StatusBadRequest, "NAME_INVALID"},
		{"name invalid (manifest)", http.MethodGet, "/v2/lib//app/manifests/v1", http.StatusBadRequest, "NAME_INVALID"},
		{"name invalid (upload)", http.MethodPost, "/v2/-lib/blobs/uploads/", http.StatusBadRequest, "NAME_INVALID"},
		{"name unknown", http.MethodGet, "/v2/lib/none/tags/list", http.StatusNotFound, "NAME_UNKNOWN"},
		{"manifest unknown by tag", http.MethodGet, "/v2/lib/app/manifests/v2", http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{"manifest unknown by digest", http.MethodGet, "/v2/lib/app/manifests/" + absent, http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{"manifest unknown in an unknown repository", http.MethodGet, "/v2/lib/none/manifests/v1", http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{"manifest delete unknown", http.MethodDelete, "/v2/lib/app/manifests/" + absent, http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{"tag delete unknown", http.MethodDelete, "/v2/lib/app/manifests/v9", http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{"blob unknown", http.MethodGet, "/v2/lib/app/blobs/" + absent, http.StatusNotFound, "BLOB_UNKNOWN"},
		{"blob delete unknown", http.MethodDelete, "/v2/lib/app/blobs/" + absent, http.StatusNotFound, "BLOB_UNKNOWN"},
		{"digest invalid", http.MethodGet, "/v2/lib/app/blobs/sha256:1234", http.StatusBadRequest, "DIGEST_INVALID"},
		{"upload unknown (status)", http.MethodGet, "/v2/lib/app/blobs/uploads/7b2b0b0e-4a7c-4b8c-9a36-0d3f4b6b7e11", http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{"upload unknown (patch)", http.MethodPatch, "/v2/lib/app/blobs/uploads/7b2b0b0e-4a7c-4b8c-9a36-0d3f4b6b7e11", http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{"upload unknown (put)", http.MethodPut, "/v2/lib/app/blobs/uploads/7b2b0b0e-4a7c-4b8c-9a36-0d3f4b6b7e11?digest=" + absent, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{"upload unknown (delete)", http.MethodDelete, "/v2/lib/app/blobs/uploads/not-a-session", http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
		{"method not allowed", http.MethodPost, "/v2/lib/app/tags/list", http.StatusMethodNotAllowed, "UNSUPPORTED"},
		{"unknown endpoint", http.MethodGet, "/v2/lib/app/nothing/here", http.StatusNotFound, "UNSUPPORTED"},
		{"unknown endpoint (no repository)", http.MethodGet, "/v2/_nothing", http.StatusNotFound, "UNSUPPORTED"},
		{"pagination invalid", http.MethodGet, "/v2/lib/app/tags/list?n=-1", http.StatusBadRequest, "PAGINATION_NUMBER_INVALID"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := *r
			r.t = t
			r.wantError(c.status, c.code, c.method, c.path, nil, nil)
		})
	}
	// HEAD answers the status without a body.
	resp, b := r.want(http.StatusNotFound, http.MethodHead, "/v2/lib/app/blobs/"+absent, nil, nil)
	if len(b) != 0 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD of an absent blob: %d body bytes, Content-Type %q; want none, application/json", len(b), resp.Header.Get("Content-Type"))
	}
}
