package registryapi_test

import (
	"net/http"
	"strconv"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestBlobGet(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("0123456789abcdefghij")
	d := r.pushBlob("lib/app", data).Digest
	path := "/v2/lib/app/blobs/" + string(d)

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, b := r.want(http.StatusOK, method, path, nil, nil)
		want := string(data)
		if method == http.MethodHead {
			want = ""
		}
		if string(b) != want {
			t.Errorf("%s body = %q, want %q", method, b, want)
		}
		for k, v := range map[string]string{
			"Docker-Content-Digest": string(d),
			"Content-Length":        strconv.Itoa(len(data)),
			"Content-Type":          "application/octet-stream",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s %s = %q, want %q", method, k, got, v)
			}
		}
	}
	// The blob is known only in the repository it was pushed to.
	r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodGet, "/v2/lib/other/blobs/"+string(d), nil, nil)
}

func TestBlobRange(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("0123456789abcdefghij")
	path := "/v2/lib/app/blobs/" + string(r.pushBlob("lib/app", data).Digest)
	for _, c := range []struct {
		method, rng  string
		body, cRange string
		length       int
	}{
		{http.MethodGet, "bytes=2-5", "2345", "bytes 2-5/20", 4},
		{http.MethodGet, "bytes=15-", "fghij", "bytes 15-19/20", 5},
		{http.MethodGet, "bytes=-3", "hij", "bytes 17-19/20", 3},
		{http.MethodGet, "bytes=18-100", "ij", "bytes 18-19/20", 2},
		{http.MethodHead, "bytes=2-5", "", "bytes 2-5/20", 4},
	} {
		resp, b := r.want(http.StatusPartialContent, c.method, path, http.Header{"Range": {c.rng}}, nil)
		if string(b) != c.body {
			t.Errorf("%s Range %s: body %q, want %q", c.method, c.rng, b, c.body)
		}
		if got := resp.Header.Get("Content-Range"); got != c.cRange {
			t.Errorf("%s Range %s: Content-Range %q, want %q", c.method, c.rng, got, c.cRange)
		}
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(c.length) {
			t.Errorf("%s Range %s: Content-Length %q, want %d", c.method, c.rng, got, c.length)
		}
	}
	for _, rng := range []string{"bytes=20-", "bytes=100-200"} {
		resp, _ := r.want(http.StatusRequestedRangeNotSatisfiable, http.MethodGet, path, http.Header{"Range": {rng}}, nil)
		if got := resp.Header.Get("Content-Range"); got != "bytes */20" {
			t.Errorf("Range %s: Content-Range %q, want bytes */20", rng, got)
		}
	}
}

func TestBlobDelete(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	data := []byte("shared layer")
	d := r.pushBlob("lib/one", data).Digest
	r.pushBlob("lib/two", data)
	path := "/v2/lib/one/blobs/" + string(d)
	resp, _ := r.want(http.StatusAccepted, http.MethodDelete, path, nil, nil)
	if resp.Header.Get("Content-Length") != "0" {
		t.Errorf("DELETE Content-Length = %q, want 0", resp.Header.Get("Content-Length"))
	}
	r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodGet, path, nil, nil)
	r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", http.MethodDelete, path, nil, nil)
	// The other repository keeps its copy.
	if _, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/two/blobs/"+string(d), nil, nil); string(b) != string(data) {
		t.Errorf("blob in the other repository = %q, want %q", b, data)
	}
	// A manifest can no longer reference the deleted blob.
	m := manifest{config: r.pushBlob("lib/one", []byte("{}"))}
	m.layers = []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: d, Size: int64(len(data))}}
	r.wantError(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", http.MethodPut, "/v2/lib/one/manifests/v1", manifestType, m.body())
}
