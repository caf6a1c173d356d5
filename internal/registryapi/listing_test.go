package registryapi_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/registryapi"
)

// pageCase is one listing request and its expected answer.
type pageCase struct {
	query string
	want  []string
	link  string // the query of the next page, empty for none
}

func TestTagsPagination(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	body := r.pushImage("lib/app", "a").body()
	for _, tag := range []string{"v3", "a", "v1", "b", "v2"} {
		r.pushManifest("lib/app", tag, body)
	}
	for _, c := range []pageCase{
		{"", []string{"a", "b", "v1", "v2", "v3"}, ""},
		{"?n=2", []string{"a", "b"}, "last=b&n=2"},
		{"?n=2&last=b", []string{"v1", "v2"}, "last=v2&n=2"},
		{"?n=2&last=v2", []string{"v3"}, ""},
		{"?n=5", []string{"a", "b", "v1", "v2", "v3"}, ""},
		{"?last=c", []string{"v1", "v2", "v3"}, ""},
		{"?n=10&last=v3", []string{}, ""},
	} {
		resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/tags/list"+c.query, nil, nil)
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(b, &tl); err != nil {
			t.Fatalf("tags %s: %s: %v", c.query, b, err)
		}
		if tl.Name != "lib/app" || !slices.Equal(tl.Tags, c.want) {
			t.Errorf("tags %s = %s %q, want lib/app %q", c.query, tl.Name, tl.Tags, c.want)
		}
		wantLink(t, resp, "/v2/lib/app/tags/list", c)
	}
}

func TestCatalogPagination(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	for _, repo := range []string{"lib/b", "a", "lib/a", "z/z", "b"} {
		r.pushManifest(repo, "latest", r.pushImage(repo, repo).body())
	}
	all := []string{"a", "b", "lib/a", "lib/b", "z/z"}
	for _, c := range []pageCase{
		{"", all, ""},
		{"?n=2", []string{"a", "b"}, "last=b&n=2"},
		{"?n=2&last=b", []string{"lib/a", "lib/b"}, "last=lib%2Fb&n=2"},
		{"?n=2&last=lib/b", []string{"z/z"}, ""},
		{"?n=3&last=lib", []string{"lib/a", "lib/b", "z/z"}, ""},
		{"?n=1&last=z/z", []string{}, ""},
	} {
		resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/_catalog"+c.query, nil, nil)
		var cat struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.Unmarshal(b, &cat); err != nil {
			t.Fatalf("catalog %s: %s: %v", c.query, b, err)
		}
		if !slices.Equal(cat.Repositories, c.want) {
			t.Errorf("catalog %s = %q, want %q", c.query, cat.Repositories, c.want)
		}
		wantLink(t, resp, "/v2/_catalog", c)
	}
	r.wantError(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", http.MethodGet, "/v2/_catalog?n=x", nil, nil)
}

func wantLink(t *testing.T, resp *http.Response, path string, c pageCase) {
	t.Helper()
	want := ""
	if c.link != "" {
		want = "<" + path + "?" + c.link + `>; rel="next"`
	}
	if got := resp.Header.Get("Link"); got != want {
		t.Errorf("%s%s: Link %q, want %q", path, c.query, got, want)
	}
}

// referrersOf fetches the referrers index of d in repo.
func (r *registry) referrersOf(repo string, d digest.Digest, query string) (*http.Response, []v1.Descriptor) {
	r.t.Helper()
	resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/"+repo+"/referrers/"+string(d)+query, nil, nil)
	if got := resp.Header.Get("Content-Type"); got != v1.MediaTypeImageIndex {
		r.t.Errorf("referrers Content-Type = %q, want %s", got, v1.MediaTypeImageIndex)
	}
	var raw struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     *[]v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		r.t.Fatalf("referrers: %s: %v", b, err)
	}
	if raw.SchemaVersion != 2 || raw.MediaType != v1.MediaTypeImageIndex || raw.Manifests == nil {
		r.t.Fatalf("referrers body %s: want an image index with a manifests list", b)
	}
	out := *raw.Manifests
	slices.SortFunc(out, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	return resp, out
}

func TestReferrers(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	subjectBody := r.pushImage("lib/app", "subject", "layer").body()
	subject := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: r.pushManifest("lib/app", "v1", subjectBody), Size: int64(len(subjectBody))}

	empty := r.pushBlob("lib/app", []byte("{}"))
	empty.MediaType = v1.MediaTypeEmptyJSON
	refer := func(m manifest) v1.Descriptor {
		t.Helper()
		body := m.body()
		d := digest.FromBytes(body)
		resp, _ := r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/"+string(d), manifestType, body)
		if got := resp.Header.Get("OCI-Subject"); got != string(subject.Digest) {
			t.Errorf("PUT with subject: OCI-Subject %q, want %s", got, subject.Digest)
		}
		at := m.artifactType
		if at == "" {
			at = m.config.MediaType
		}
		return v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: at, Annotations: m.annotations}
	}
	sig := refer(manifest{config: empty, artifactType: "application/vnd.example.sig", subject: &subject,
		annotations: map[string]string{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}})
	sbom := refer(manifest{config: empty, artifactType: "application/spdx+json", subject: &subject,
		layers: []v1.Descriptor{r.pushBlob("lib/app", []byte(`{"spdx":true}`))}})
	// Without artifactType, the config's media type stands in for it.
	cfg := r.pushBlob("lib/app", []byte(`{"attestation":1}`))
	cfg.MediaType = "application/vnd.example.attestation.config"
	att := refer(manifest{config: cfg, subject: &subject})

	all := []v1.Descriptor{sig, sbom, att}
	slices.SortFunc(all, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	resp, got := r.referrersOf("lib/app", subject.Digest, "")
	if !reflect.DeepEqual(got, all) {
		t.Errorf("referrers:\n got %+v\nwant %+v", got, all)
	}
	if h := resp.Header.Get("OCI-Filters-Applied"); h != "" {
		t.Errorf("unfiltered OCI-Filters-Applied = %q, want none", h)
	}
	for _, c := range []struct {
		artifactType string
		want         []v1.Descriptor
	}{
		{"application/vnd.example.sig", []v1.Descriptor{sig}},
		{"application/vnd.example.attestation.config", []v1.Descriptor{att}},
		{"application/unknown", []v1.Descriptor{}},
	} {
		resp, got := r.referrersOf("lib/app", subject.Digest, "?artifactType="+c.artifactType)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("referrers of type %s:\n got %+v\nwant %+v", c.artifactType, got, c.want)
		}
		if h := resp.Header.Get("OCI-Filters-Applied"); h != "artifactType" {
			t.Errorf("filtered OCI-Filters-Applied = %q, want artifactType", h)
		}
	}
	// Nothing refers to the signature, and nothing exists in another
	// repository: both are empty indexes, not errors.
	if _, got := r.referrersOf("lib/app", sig.Digest, ""); len(got) != 0 {
		t.Errorf("referrers of the signature = %+v, want none", got)
	}
	if _, got := r.referrersOf("lib/other", subject.Digest, ""); len(got) != 0 {
		t.Errorf("referrers in another repository = %+v, want none", got)
	}
	// Deleting a referrer removes it from the index.
	r.want(http.StatusAccepted, http.MethodDelete, "/v2/lib/app/manifests/"+string(sig.Digest), nil, nil)
	want := []v1.Descriptor{sbom, att}
	slices.SortFunc(want, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest, b.Digest) })
	if _, got := r.referrersOf("lib/app", subject.Digest, ""); !reflect.DeepEqual(got, want) {
		t.Errorf("referrers after deleting the signature:\n got %+v\nwant %+v", got, want)
	}
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodGet, "/v2/lib/app/referrers/sha256:zz", nil, nil)
}

// TestPageSizeCap asks for more than the server's page size: the answer is
// capped and the Link header carries the capped n.
func TestPageSizeCap(t *testing.T) {
	t.Parallel()
	r := newRegistryLimits(t, registryapi.Limits{PageSizeMax: 2})
	body := r.pushImage("lib/app", "a").body()
	for _, tag := range []string{"a", "b", "c"} {
		r.pushManifest("lib/app", tag, body)
	}
	for _, c := range []pageCase{
		{"", []string{"a", "b"}, "last=b&n=2"},
		{"?n=1000", []string{"a", "b"}, "last=b&n=2"},
		{"?n=1000&last=b", []string{"c"}, ""},
	} {
		resp, b := r.want(http.StatusOK, http.MethodGet, "/v2/lib/app/tags/list"+c.query, nil, nil)
		var tl struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(b, &tl); err != nil || !slices.Equal(tl.Tags, c.want) {
			t.Errorf("tags %s = %s, %v; want %q", c.query, b, err, c.want)
		}
		wantLink(t, resp, "/v2/lib/app/tags/list", c)
	}
}

// TestReferrerBeforeSubject pushes a referrer whose subject is not in the
// registry yet, as the spec allows: it is accepted and listed.
func TestReferrerBeforeSubject(t *testing.T) {
	t.Parallel()
	r := newRegistry(t)
	subject := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("pushed later"), Size: 100}
	empty := r.pushBlob("lib/app", []byte("{}"))
	empty.MediaType = v1.MediaTypeEmptyJSON
	body := manifest{config: empty, artifactType: "application/vnd.example.sig", subject: &subject}.body()
	d := digest.FromBytes(body)
	resp, _ := r.want(http.StatusCreated, http.MethodPut, "/v2/lib/app/manifests/"+string(d), manifestType, body)
	if got := resp.Header.Get("OCI-Subject"); got != string(subject.Digest) {
		t.Errorf("OCI-Subject = %q, want %s", got, subject.Digest)
	}
	_, got := r.referrersOf("lib/app", subject.Digest, "")
	want := []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: "application/vnd.example.sig"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("referrers:\n got %+v\nwant %+v", got, want)
	}
}
