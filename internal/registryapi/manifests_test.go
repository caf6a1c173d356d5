package registryapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/registryapi"
)

// tagList returns the tags of repo.
func (r *registry) tagList(repo string) []string {
	r.t.Helper()
	_, b := r.want(http.StatusOK, http.MethodGet, "/v2/"+repo+"/tags/list", nil, nil)
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &tl); err != nil || tl.Name != repo {
		r.t.Fatalf("tags list %s: %s, %v", repo, b, err)
	}
	return tl.Tags
}

func TestManifestPutGet(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	body := r.pushImage("lib/app", "a", "layer one", "layer two").body()
	d := digest.FromBytes(body)
	resp, _ := r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/v1?tag=latest", manifestType, body)
	for k, want := range map[string]string{
		"Location":              "/v2/lib/app/manifests/" + string(d),
		"Docker-Content-Digest": string(d),
		"OCI-Subject":           "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("PUT %s = %q, want %q", k, got, want)
		}
	}
	if got := resp.Header.Values("OCI-Tag"); !slices.Equal(got, []string{"v1", "latest"}) {
		t.Errorf("PUT OCI-Tag = %q, want [v1 latest]", got)
	}
	for _, ref := range []string{"v1", "latest", string(d)} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, b := r.want(http.StatusOK, method, "/v2/lib/app/manifests/"+ref, nil, nil)
			want := string(body)
			if method == http.MethodHead {
				want = ""
			}
			if string(b) != want {
				t.Errorf("%s %s: body %q, want %q", method, ref, b, want)
			}
			for k, v := range map[string]string{
				"Docker-Content-Digest": string(d),
				"Content-Type":          v1.MediaTypeImageManifest,
				"Content-Length":        strconv.Itoa(len(body)),
			} {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s: %s = %q, want %q", method, ref, k, got, v)
				}
			}
		}
	}
	if got := r.tagList("lib/app"); !slices.Equal(got, []string{"latest", "v1"}) {
		t.Errorf("tags = %q, want [latest v1]", got)
	}
	// A tag moves to the manifest pushed last.
	body2 := r.pushImage("lib/app", "b").body()
	d2 := r.pushManifest("lib/app", "latest", body2)
	for ref, want := range map[string]digest.Digest{"latest": d2, "v1": d, string(d): d} {
		resp, _ := r.want(http.StatusOK, http.MethodHead, "/v2/lib/app/manifests/"+ref, nil, nil)
		if got := resp.Header.Get("Docker-Content-Digest"); got != string(want) {
			t.Errorf("after the move, %s = %s, want %s", ref, got, want)
		}
	}
}

// TestManifestDigestMismatch pushes by digest a body that does not hash to
// it: the registry never stores content under a digest it does not have.
func TestManifestDigestMismatch(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	body := r.pushImage("lib/app", "a", "layer").body()
	claimed := digest.FromString("some other manifest")
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/"+string(claimed)+"?tag=v1", manifestType, body)
	for _, ref := range []string{string(claimed), string(digest.FromBytes(body)), "v1"} {
		r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+ref, nil, nil)
	}
	// The right digest is accepted.
	r.pushManifest("lib/app", string(digest.FromBytes(body)), body)
}

func TestManifestBlobUnknown(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	m := r.pushImage("lib/app", "a", "present")
	m.layers = append(m.layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromString("never pushed"), Size: 12})
	r.wantError(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", http.MethodPut, "/v2/lib/app/manifests/v1", manifestType, m.body())
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/v1", nil, nil)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+string(digest.FromBytes(m.body())), nil, nil)

	// A blob pushed to another repository only does not count either.
	other := r.pushBlob("lib/other", []byte("elsewhere"))
	m.layers = append(m.layers[:1], other)
	r.wantError(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", http.MethodPut, "/v2/lib/app/manifests/v1", manifestType, m.body())

	// Non-distributable layers are not pushed, so they may be absent.
	m.layers = append(m.layers[:1], v1.Descriptor{
		MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		Digest:    digest.FromString("foreign layer"), Size: 100, URLs: []string{"https://example.com/layer"},
	})
	r.pushManifest("lib/app", "v1", m.body())

	// An index whose child is not in the repository.
	idx, _ := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("no child"), Size: 10}},
	})
	r.wantError(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", http.MethodPut, "/v2/lib/app/manifests/multi", http.Header{"Content-Type": {v1.MediaTypeImageIndex}}, idx)
}

func TestManifestInvalid(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	body := r.pushImage("lib/app", "a").body()
	for _, c := range []struct {
		name, contentType string
		body              []byte
	}{
		{"not JSON", v1.MediaTypeImageManifest, []byte("not json")},
		{"Content-Type differs from mediaType", v1.MediaTypeImageIndex, body},
		{"unsupported media type", "application/octet-stream", body},
	} {
		r.wantError(http.StatusBadRequest, "MANIFEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/v1", http.Header{"Content-Type": {c.contentType}}, c.body)
	}
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/v1", nil, nil)
}

func TestManifestDelete(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	keep := r.pushManifest("lib/app", "keep", r.pushImage("lib/app", "keep").body())
	body := r.pushImage("lib/app", "gone").body()
	d := digest.FromBytes(body)
	r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/a?tag=b", manifestType, body)

	// By tag: the tag goes, the manifest stays.
	r.want(http.StatusAccepted, http.MethodDelete, "/v2/lib/app/manifests/a", nil, nil)
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/a", nil, nil)
	r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/manifests/b", nil, nil)
	if got := r.tagList("lib/app"); !slices.Equal(got, []string{"b", "keep"}) {
		t.Errorf("tags after deleting a = %q, want [b keep]", got)
	}

	// By digest: the manifest and every tag on it go.
	r.want(http.StatusAccepted, http.MethodDelete, "/v2/lib/app/manifests/"+string(d), nil, nil)
	for _, ref := range []string{string(d), "b"} {
		r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+ref, nil, nil)
	}
	if got := r.tagList("lib/app"); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("tags after deleting the manifest = %q, want [keep]", got)
	}
	resp, _ := r.want(http.StatusOK, http.MethodHead, "/v2/lib/app/manifests/keep", nil, nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != string(keep) {
		t.Errorf("keep = %s, want %s", got, keep)
	}
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodDelete, "/v2/lib/app/manifests/"+string(d), nil, nil)
}

func TestManifestLimitsAndConditionalGet(t *testing.T) {
	t.Parallel()
	r := newRegistryLimits(t, registryapi.Limits{ManifestMaxBytes: 600})
	m := r.pushImage("lib/app", "a")
	d := r.pushManifest("lib/app", "v1", m.body())

	etag := `"` + string(d) + `"`
	resp, b := r.want(http.StatusNotModified, http.MethodGet, "/v2/lib/app/manifests/v1", http.Header{"If-None-Match": {etag}}, nil)
	if len(b) != 0 || resp.Header.Get("Docker-Content-Digest") != string(d) {
		t.Errorf("304: %d body bytes, digest %q; want none, %s", len(b), resp.Header.Get("Docker-Content-Digest"), d)
	}
	r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/manifests/v1", http.Header{"If-None-Match": {`"sha256:other"`}}, nil)

	m.annotations = map[string]string{"padding": strings.Repeat("x", 600)}
	r.wantError(http.StatusRequestEntityTooLarge, "SIZE_INVALID", http.MethodPut, "/v2/lib/app/manifests/big", manifestType, m.body())
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/big", nil, nil)
	r.wantError(http.StatusBadRequest, "MANIFEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/v2?tag=bad:tag", manifestType, r.pushImage("lib/app", "b").body())
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/v2", nil, nil)
}

// TestIndex pushes an index whose children are in the repository, by tag
// and by digest with extra tags.
func TestIndex(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	var children []v1.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		body := r.pushImage("lib/app", arch, "layer "+arch).body()
		d := r.pushManifest("lib/app", string(digest.FromBytes(body)), body)
		children = append(children, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body)),
			Platform: &v1.Platform{OS: "linux", Architecture: arch}})
	}
	idx, err := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: children})
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(idx)
	hdr := http.Header{"Content-Type": {v1.MediaTypeImageIndex}}
	resp, _ := r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/"+string(d)+"?tag=latest&tag=1.0", hdr, idx)
	if got := resp.Header.Values("OCI-Tag"); !slices.Equal(got, []string{"latest", "1.0"}) {
		t.Errorf("OCI-Tag = %q, want [latest 1.0]", got)
	}
	for _, ref := range []string{"latest", "1.0", string(d)} {
		resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/manifests/"+ref, nil, nil)
		if string(b) != string(idx) || resp.Header.Get("Content-Type") != v1.MediaTypeImageIndex || resp.Header.Get("Docker-Content-Digest") != string(d) {
			t.Errorf("GET %s: %s %s %q; want the index", ref, resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), b)
		}
	}
	if got := r.tagList("lib/app"); !slices.Equal(got, []string{"1.0", "latest"}) {
		t.Errorf("tags = %q, want [1.0 latest]", got)
	}
}

// TestManifestTypeFromContentType pushes one body without a mediaType
// field to two repositories under two Content-Types: each repository
// serves it with the type it was pushed with.
func TestManifestTypeFromContentType(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	const docker = "application/vnd.docker.distribution.manifest.v2+json"
	var body []byte
	for _, repo := range []string{"lib/oci", "lib/docker"} {
		cfg := r.pushBlob(repo, []byte(`{"architecture":"amd64"}`))
		layer := r.pushBlob(repo, []byte("layer"))
		body = fmt.Appendf(nil, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
			cfg.Digest, cfg.Size, layer.Digest, layer.Size)
	}
	r.want(http.StatusCreated, http.MethodPut, "/v2/lib/oci/manifests/v1", manifestType, body)
	r.want(http.StatusCreated, http.MethodPut, "/v2/lib/docker/manifests/v1", http.Header{"Content-Type": {docker}}, body)
	for range 2 { // the second round is served from any cache
		for repo, want := range map[string]string{"lib/oci": v1.MediaTypeImageManifest, "lib/docker": docker} {
			for _, ref := range []string{"v1", string(digest.FromBytes(body))} {
				resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, nil)
				if got := resp.Header.Get("Content-Type"); got != want || string(b) != string(body) {
					t.Errorf("GET %s:%s: Content-Type %q, want %q", repo, ref, got, want)
				}
			}
		}
	}
}

// TestManifestSizeMismatch: a descriptor whose size differs from that of
// the stored blob or child manifest is refused with MANIFEST_INVALID and
// nothing is stored; the right sizes are accepted.
func TestManifestSizeMismatch(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	m := r.pushImage("lib/app", "a", "layer one")
	for name, mutate := range map[string]func(*manifest){
		"layer larger": func(m *manifest) { m.layers[0].Size++ },
		"layer zero":   func(m *manifest) { m.layers[0].Size = 0 },
		"config short": func(m *manifest) { m.config.Size-- },
	} {
		bad := m
		bad.layers = slices.Clone(m.layers)
		mutate(&bad)
		r.wantError(http.StatusBadRequest, "MANIFEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/"+strings.ReplaceAll(name, " ", "-"), manifestType, bad.body())
		r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/"+string(digest.FromBytes(bad.body())), nil, nil)
	}
	body := m.body()
	d := r.pushManifest("lib/app", "v1", body)

	index := func(size int64) []byte {
		b, err := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex,
			Manifests: []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: size}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hdr := http.Header{"Content-Type": {v1.MediaTypeImageIndex}}
	r.wantError(http.StatusBadRequest, "MANIFEST_INVALID", http.MethodPut, "/v2/lib/app/manifests/multi", hdr, index(int64(len(body))+1))
	r.wantError(http.StatusNotFound, "MANIFEST_UNKNOWN", http.MethodGet, "/v2/lib/app/manifests/multi", nil, nil)
	r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/multi", hdr, index(int64(len(body))))
}
