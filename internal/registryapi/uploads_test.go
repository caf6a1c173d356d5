package registryapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// startSession opens an upload session in repo and returns its URL path.
func (r *registry) startSession(repo string) string {
	r.t.Helper()
	resp, _ := r.want(http.StatusAccepted, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/"+repo+"/blobs/uploads/") || resp.Header.Get("Docker-Upload-UUID") == "" {
		r.t.Fatalf("POST upload: Location %q, Docker-Upload-UUID %q", loc, resp.Header.Get("Docker-Upload-UUID"))
	}
	if got := resp.Header.Get("Range"); got != "0-0" {
		r.t.Errorf("new session Range = %q, want 0-0", got)
	}
	return loc
}

// chunk returns the headers of a PATCH carrying len(data) bytes at start.
func chunk(start int, data []byte) http.Header {
	return http.Header{
		"Content-Type":  {"application/octet-stream"},
		"Content-Range": {strconv.Itoa(start) + "-" + strconv.Itoa(start+len(data)-1)},
	}
}

// wantRange checks the Range a session reports through GET.
func (r *registry) wantRange(loc, want string) {
	r.t.Helper()
	resp, _ := r.want(http.StatusNoContent, http.MethodGet, loc, nil, nil)
	if got := resp.Header.Get("Range"); got != want {
		r.t.Errorf("GET %s: Range %q, want %q", loc, got, want)
	}
}

func TestChunkedUpload(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("the quick brown fox jumps over the lazy dog")
	d := digest.FromBytes(data)
	loc := r.startSession("lib/app")
	resp, _ := r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(0, data[:10]), data[:10])
	if got := resp.Header.Get("Range"); got != "0-9" {
		t.Errorf("PATCH Range = %q, want 0-9", got)
	}
	if got := resp.Header.Get("Location"); got != loc {
		t.Errorf("PATCH Location = %q, want %q", got, loc)
	}
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(10, data[10:20]), data[10:20])
	r.wantRange(loc, "0-19")
	// The last chunk comes with the PUT.
	resp, _ = r.want(http.StatusCreated, http.MethodPut, loc+"?digest="+string(d), chunk(20, data[20:]), data[20:])
	if got, want := resp.Header.Get("Location"), "/v2/lib/app/blobs/"+string(d); got != want {
		t.Errorf("PUT Location = %q, want %q", got, want)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != string(d) {
		t.Errorf("PUT Docker-Content-Digest = %q, want %s", got, d)
	}
	if _, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/blobs/"+string(d), nil, nil); string(b) != string(data) {
		t.Errorf("blob = %q, want %q", b, data)
	}
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodGet, loc, nil, nil)
}

// TestUploadOutOfOrder sends chunks that do not start where the session
// ends: each is refused with 416, and the Range header tells the client
// where to resume.
func TestUploadOutOfOrder(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("0123456789ABCDEFGHIJ")
	loc := r.startSession("lib/app")
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(0, data[:5]), data[:5])
	for _, start := range []int{0, 3, 6, 10} {
		resp, _ := r.want(http.StatusRequestedRangeNotSatisfiable, http.MethodPatch, loc, chunk(start, data[5:10]), data[5:10])
		if got := resp.Header.Get("Range"); got != "0-4" {
			t.Errorf("PATCH at %d: Range %q, want 0-4", start, got)
		}
		if got := resp.Header.Get("Location"); got != loc {
			t.Errorf("PATCH at %d: Location %q, want %q", start, got, loc)
		}
	}
	r.wantError(http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID", http.MethodPatch, loc, chunk(7, data[5:10]), data[5:10])
	// Malformed ranges, and a range that disagrees with the body length.
	for _, cr := range []string{"5", "a-b", "9-5", "5-20"} {
		hdr := http.Header{"Content-Range": {cr}}
		r.wantError(http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID", http.MethodPatch, loc, hdr, data[5:10])
	}
	r.wantRange(loc, "0-4")
	// Resuming where the session ends completes the blob.
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(5, data[5:]), data[5:])
	r.want(http.StatusCreated, http.MethodPut, loc+"?digest="+string(digest.FromBytes(data)), nil, nil)
}

func TestMonolithicUpload(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("a whole blob in one request")
	d := digest.FromBytes(data)
	resp, _ := r.want(http.StatusCreated, http.MethodPost, "/v2/lib/app/blobs/uploads/?digest="+string(d), octets, data)
	if got, want := resp.Header.Get("Location"), "/v2/lib/app/blobs/"+string(d); got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != string(d) {
		t.Errorf("Docker-Content-Digest = %q, want %s", got, d)
	}
	if _, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/blobs/"+string(d), nil, nil); string(b) != string(data) {
		t.Errorf("blob = %q, want %q", b, data)
	}
	// POST then a single PUT with the whole body.
	data2 := []byte("session then one PUT")
	d2 := digest.FromBytes(data2)
	r.want(http.StatusCreated, http.MethodPut, r.startSession("lib/app")+"?digest="+string(d2), octets, data2)
	if _, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/blobs/"+string(d2), nil, nil); string(b) != string(data2) {
		t.Errorf("blob = %q, want %q", b, data2)
	}
}

// TestUploadWrongDigest closes uploads with a digest that does not match
// their content: 400 DIGEST_INVALID, and neither digest names a blob.
func TestUploadWrongDigest(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("content")
	wrong := digest.FromString("other content")
	blobPaths := []string{"/v2/lib/app/blobs/" + string(wrong), "/v2/lib/app/blobs/" + string(digest.FromBytes(data))}

	loc := r.startSession("lib/app")
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(0, data), data)
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, loc+"?digest="+string(wrong), nil, nil)
	for _, p := range blobPaths {
		r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodHead, p, nil, nil)
	}
	// The session is gone: a retry with the right digest starts over.
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodGet, loc, nil, nil)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodPut, loc+"?digest="+string(digest.FromBytes(data)), nil, nil)

	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPost, "/v2/lib/app/blobs/uploads/?digest="+string(wrong), octets, data)
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, r.startSession("lib/app"), octets, data) // no digest
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, r.startSession("lib/app")+"?digest=sha256:abc", octets, data)
	for _, p := range blobPaths {
		r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodGet, p, nil, nil)
	}
}

func TestUploadCancel(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	loc := r.startSession("lib/app")
	r.want(http.StatusAccepted, http.MethodPatch, loc, chunk(0, []byte("abc")), []byte("abc"))
	r.want(http.StatusNoContent, http.MethodDelete, loc, nil, nil)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodGet, loc, nil, nil)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodPut, loc+"?digest="+string(digest.FromString("abc")), nil, nil)
	// A session belongs to its repository.
	loc = r.startSession("lib/app")
	other := strings.Replace(loc, "/lib/app/", "/lib/other/", 1)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodGet, other, nil, nil)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodDelete, other, nil, nil)
	r.wantRange(loc, "0-0")
}

func TestMount(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("base layer")
	d := digest.FromBytes(data)
	r.pushBlob("lib/base", data)

	for _, c := range []struct{ name, query, repo string }{
		{"from source", "?mount=" + string(d) + "&from=lib/base", "lib/one"},
		{"anonymous", "?mount=" + string(d), "lib/two"},
	} {
		resp, _ := r.want(http.StatusCreated, http.MethodPost, "/v2/"+c.repo+"/blobs/uploads/"+c.query, nil, nil)
		if got, want := resp.Header.Get("Location"), "/v2/"+c.repo+"/blobs/"+string(d); got != want {
			t.Errorf("mount %s: Location %q, want %q", c.name, got, want)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != string(d) {
			t.Errorf("mount %s: Docker-Content-Digest %q, want %s", c.name, got, d)
		}
		if _, b := r.want(http.StatusOK, http.MethodGet, "/v2/"+c.repo+"/blobs/"+string(d), nil, nil); string(b) != string(data) {
			t.Errorf("mount %s: blob = %q, want %q", c.name, b, data)
		}
	}

	// Without the blob at the source the client gets a session instead.
	absent := digest.FromString("absent")
	for _, q := range []string{
		"?mount=" + string(absent) + "&from=lib/base",
		"?mount=" + string(d) + "&from=lib/none",
		"?mount=" + string(absent),
		"?mount=" + string(d) + "&from=Not_A/Name",
	} {
		resp, _ := r.want(http.StatusAccepted, http.MethodPost, "/v2/lib/three/blobs/uploads/"+q, nil, nil)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "/v2/lib/three/blobs/uploads/") {
			t.Fatalf("mount fallback %s: Location %q, want an upload session", q, loc)
		}
		r.wantRange(loc, "0-0")
	}
	r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodGet, "/v2/lib/three/blobs/"+string(d), nil, nil)
}
