package registryapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

// diskRegistry is a registry over stores in a directory the test can
// reach into, and restart over the same blobs.
type diskRegistry struct {
	*registry
	data   string
	meta   *bolt.Store
	srv    *httptest.Server
	limits registryapi.Limits
}

func newDiskRegistry(t *testing.T, dir string, o fs.Options) *diskRegistry {
	t.Helper()
	return newDiskRegistryLimits(t, dir, o, registryapi.Limits{})
}

// newDiskRegistryLimits serves the handler with limits over fs and bolt
// stores in dir.
func newDiskRegistryLimits(t *testing.T, dir string, o fs.Options, limits registryapi.Limits) *diskRegistry {
	t.Helper()
	meta, err := bolt.Open(filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	r := &diskRegistry{data: filepath.Join(dir, "data"), meta: meta, limits: limits}
	r.start(t, o)
	return r
}

// start serves the handler over a new blob store (as after a restart:
// nothing is verified yet) and the same metadata.
func (r *diskRegistry) start(t *testing.T, o fs.Options) {
	t.Helper()
	if r.srv != nil {
		r.srv.Close()
	}
	blobs, err := fs.NewWithOptions(r.data, o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := registryapi.New(registryapi.Options{Blobs: blobs, Uploads: blobs, Metadata: r.meta, Limits: r.limits})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	r.registry = &registry{t: t, url: r.srv.URL, client: r.srv.Client()}
}

func (r *diskRegistry) blobFile(d digest.Digest) string {
	return filepath.Join(r.data, "blobs", "sha256", d.Encoded()[:2], d.Encoded())
}

// damageBlob is one way a blob file goes bad on disk.
var damageBlob = []struct {
	name string
	do   func(t *testing.T, path string)
}{
	{"truncated to 0", func(t *testing.T, p string) {
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
	}},
	{"truncated to 1000", func(t *testing.T, p string) {
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatal(err)
		}
	}},
	{"one byte flipped", func(t *testing.T, p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x04
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b[len(b)/2:len(b)/2+1], int64(len(b)/2)); err != nil {
			t.Fatal(err)
		}
	}},
}

// TestCorruptBlobNeverServed damages a pushed blob's file and checks
// that no GET, ranged GET or HEAD answers with its bytes: each answers
// 404 BLOB_UNKNOWN, after a restart (first serve since start) and, for
// the damage that changes the size, in the same process.
func TestCorruptBlobNeverServed(t *testing.T) {
	t.Parallel()
	data := ocitest.Random(7, 8192)
	for _, dm := range damageBlob {
		for _, restart := range []bool{true, false} {
			if !restart && dm.name == "one byte flipped" {
				continue // in place, in the same clock tick: the scrub's job (fs tests)
			}
			name := dm.name + "/same process"
			if restart {
				name = dm.name + "/after restart"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := newDiskRegistry(t, t.TempDir(), fs.Options{})
				desc := r.pushBlob("team/app", data)
				path := "/v2/team/app/blobs/" + string(desc.Digest)
				r.want(http.StatusOK, http.MethodGet, path, nil, nil)
				dm.do(t, r.blobFile(desc.Digest))
				if restart {
					r.start(t, fs.Options{})
				}
				for _, req := range []struct {
					method string
					hdr    http.Header
				}{
					{http.MethodGet, http.Header{"Range": {"bytes=0-99"}}},
					{http.MethodGet, nil},
					{http.MethodHead, nil},
				} {
					r.wantError(http.StatusNotFound, "BLOB_UNKNOWN", req.method, path, req.hdr, nil)
				}
				if _, err := os.Stat(r.blobFile(desc.Digest)); !os.IsNotExist(err) {
					t.Errorf("the corrupt file is still in the blob store: %v", err)
				}
				// Pushing the blob again repairs it.
				r.pushBlob("team/app", data)
				_, b := r.want(http.StatusOK, http.MethodGet, path, nil, nil)
				if !bytes.Equal(b, data) {
					t.Errorf("after a new push: got %d bytes, want the %d pushed", len(b), len(data))
				}
			})
		}
	}
}

// TestPushOnFullVolume fills a real tmpfs (root only) and checks that a
// push beyond it answers 507 with an OCI error body saying the volume is
// full, in each upload style, while pulls of stored content still work.
func TestPushOnFullVolume(t *testing.T) {
	t.Parallel()
	dir := storagetest.SmallVolume(t, "8m")
	r := newDiskRegistry(t, dir, fs.Options{MinFreeBytes: 1 << 20})
	small := r.pushBlob("team/app", ocitest.Random(1, 4096))
	big := ocitest.Random(2, 12<<20)
	bigDigest := string(digest.FromBytes(big))

	check := func(what string, resp *http.Response, body []byte) {
		t.Helper()
		if resp.StatusCode != http.StatusInsufficientStorage {
			t.Fatalf("%s: status %d, want 507; body %s", what, resp.StatusCode, body)
		}
		var eb struct {
			Errors []struct{ Code, Message string } `json:"errors"`
		}
		if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
			t.Fatalf("%s: body %q is not one OCI error (%v)", what, body, err)
		}
		if e := eb.Errors[0]; e.Code != "DENIED" || !strings.Contains(e.Message, "data volume is full") {
			t.Errorf("%s: error %+v, want DENIED saying the data volume is full", what, e)
		}
	}
	// Monolithic POST.
	resp, b := r.do(http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+bigDigest, octets, big)
	check("monolithic POST", resp, b)
	// Session, then a streamed PATCH.
	resp, _ = r.want(http.StatusAccepted, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, nil)
	loc := resp.Header.Get("Location")
	resp, b = r.do(http.MethodPatch, loc, octets, big)
	check("PATCH", resp, b)
	// The session survived with what it held before (nothing), so the
	// client can go on once space is freed.
	resp, _ = r.want(http.StatusNoContent, http.MethodGet, loc, nil, nil)
	if got := resp.Header.Get("Range"); got != "0-0" {
		t.Errorf("session after the failed PATCH: Range %q, want 0-0", got)
	}
	// PUT with the whole body.
	resp, b = r.do(http.MethodPut, loc+"?digest="+bigDigest, octets, big)
	check("PUT", resp, b)

	// Pulls still work.
	r.want(http.StatusOK, http.MethodGet, "/v2/team/app/blobs/"+string(small.Digest), nil, nil)
}
