package registryapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/oci"
)

const (
	sha256A = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	sha512A = "sha512:1f40fc92da241694750979ee6cf582f2d5d7d28e18335de05abc54d0560e0f5302860c652bf08d560252aa5e74210546f369fbbbce8c12cfc7957b2652fe9a75"
	uuidA   = "8d7f3c1e-5b2a-4c6d-9e0f-1a2b3c4d5e6f"
)

var routeCases = []struct {
	name    string
	path    string
	want    Route
	wantErr error // nil for success
}{
	{name: "base", path: "/v2/", want: Route{Kind: KindBase}},
	{name: "base without slash", path: "/v2", want: Route{Kind: KindBase}},
	{name: "catalog", path: "/v2/_catalog", want: Route{Kind: KindCatalog}},
	{name: "tags", path: "/v2/alpine/tags/list", want: Route{Kind: KindTags, Name: "alpine"}},
	{name: "tags nested", path: "/v2/library/alpine/tags/list", want: Route{Kind: KindTags, Name: "library/alpine"}},
	{name: "manifest by tag", path: "/v2/library/alpine/manifests/3.19", want: Route{Kind: KindManifest, Name: "library/alpine", Reference: "3.19"}},
	{name: "manifest by sha256", path: "/v2/alpine/manifests/" + sha256A, want: Route{Kind: KindManifest, Name: "alpine", Reference: sha256A}},
	{name: "manifest by sha512", path: "/v2/alpine/manifests/" + sha512A, want: Route{Kind: KindManifest, Name: "alpine", Reference: sha512A}},
	{name: "blob", path: "/v2/alpine/blobs/" + sha256A, want: Route{Kind: KindBlob, Name: "alpine", Reference: sha256A}},
	{name: "upload start", path: "/v2/alpine/blobs/uploads/", want: Route{Kind: KindUploadStart, Name: "alpine"}},
	{name: "upload start without slash", path: "/v2/alpine/blobs/uploads", want: Route{Kind: KindUploadStart, Name: "alpine"}},
	{name: "upload session", path: "/v2/alpine/blobs/uploads/" + uuidA, want: Route{Kind: KindUpload, Name: "alpine", Reference: uuidA}},
	{name: "referrers", path: "/v2/alpine/referrers/" + sha256A, want: Route{Kind: KindReferrers, Name: "alpine", Reference: sha256A}},
	{name: "many components", path: "/v2/a/b/c/d/e/f/g/h/manifests/latest", want: Route{Kind: KindManifest, Name: "a/b/c/d/e/f/g/h", Reference: "latest"}},
	{name: "name ending in blobs", path: "/v2/team/blobs/manifests/v1", want: Route{Kind: KindManifest, Name: "team/blobs", Reference: "v1"}},
	{name: "name ending in manifests", path: "/v2/team/manifests/blobs/" + sha256A, want: Route{Kind: KindBlob, Name: "team/manifests", Reference: sha256A}},
	{name: "name ending in tags", path: "/v2/tags/tags/list", want: Route{Kind: KindTags, Name: "tags"}},
	{name: "name with path words", path: "/v2/blobs/manifests/tags/uploads/referrers/tags/list", want: Route{Kind: KindTags, Name: "blobs/manifests/tags/uploads/referrers"}},
	{name: "name blobs/uploads", path: "/v2/blobs/uploads/blobs/uploads/", want: Route{Kind: KindUploadStart, Name: "blobs/uploads"}},
	{name: "upload session under name blobs", path: "/v2/blobs/blobs/uploads/" + uuidA, want: Route{Kind: KindUpload, Name: "blobs", Reference: uuidA}},
	{name: "tag named list", path: "/v2/alpine/manifests/list", want: Route{Kind: KindManifest, Name: "alpine", Reference: "list"}},
	{name: "tag named uploads", path: "/v2/alpine/manifests/uploads", want: Route{Kind: KindManifest, Name: "alpine", Reference: "uploads"}},
	{name: "name with separators", path: "/v2/my.org/my_team/my--app/tags/list", want: Route{Kind: KindTags, Name: "my.org/my_team/my--app"}},

	{name: "not v2", path: "/v1/alpine/tags/list", wantErr: errNotFound},
	{name: "root", path: "/", wantErr: errNotFound},
	{name: "empty", path: "", wantErr: errNotFound},
	{name: "no leading slash", path: "v2/alpine/tags/list", wantErr: errNotFound},
	{name: "v2 prefix of a word", path: "/v2alpine/tags/list", wantErr: errNotFound},
	{name: "catalog trailing slash", path: "/v2/_catalog/", wantErr: errNotFound},
	{name: "tags trailing slash", path: "/v2/alpine/tags/list/", wantErr: errNotFound},
	{name: "manifest trailing slash", path: "/v2/alpine/manifests/latest/", wantErr: errNotFound},
	{name: "blob trailing slash", path: "/v2/alpine/blobs/" + sha256A + "/", wantErr: errNotFound},
	{name: "manifest without reference", path: "/v2/alpine/manifests/", wantErr: oci.ErrTagInvalid},
	{name: "unknown verb", path: "/v2/alpine/layers/" + sha256A, wantErr: errNotFound},
	{name: "only a name", path: "/v2/alpine", wantErr: errNotFound},
	{name: "verb without name", path: "/v2/manifests/latest", wantErr: errNotFound},
	{name: "empty name", path: "/v2//manifests/latest", wantErr: errNotFound},
	{name: "dot segment", path: "/v2/./alpine/tags/list", wantErr: oci.ErrNameInvalid},
	{name: "dot-dot in the middle", path: "/v2/team/../alpine/manifests/latest", wantErr: oci.ErrNameInvalid},
	{name: "dot-dot upload ID", path: "/v2/alpine/blobs/uploads/..", wantErr: errNotFound},
	{name: "dot upload ID", path: "/v2/alpine/blobs/uploads/.", wantErr: errNotFound},
	{name: "dot-dot verb", path: "/v2/alpine/blobs/uploads/../x", wantErr: errNotFound},
	{name: "uploads without blobs", path: "/v2/alpine/uploads/" + uuidA, wantErr: errNotFound},
	{name: "tags without list", path: "/v2/alpine/tags/", wantErr: errNotFound},
	{name: "uppercase name", path: "/v2/Alpine/tags/list", wantErr: oci.ErrNameInvalid},
	{name: "dot-dot name", path: "/v2/../etc/manifests/latest", wantErr: oci.ErrNameInvalid},
	{name: "double slash in name", path: "/v2/library//alpine/tags/list", wantErr: oci.ErrNameInvalid},
	{name: "name too long", path: "/v2/" + strings.Repeat("a", oci.MaxNameLength+1) + "/tags/list", wantErr: oci.ErrNameInvalid},
	{name: "escaped slash", path: "/v2/library%2Falpine/tags/list", wantErr: oci.ErrNameInvalid},
	{name: "escaped tag", path: "/v2/alpine/manifests/v1%2E0", wantErr: oci.ErrTagInvalid},
	{name: "escaped digest colon", path: "/v2/alpine/blobs/sha256%3A" + sha256A[7:], wantErr: oci.ErrDigestInvalid},
	{name: "upload start invalid name", path: "/v2/-x/blobs/uploads/", wantErr: oci.ErrNameInvalid},
	{name: "upload invalid name", path: "/v2/A/blobs/uploads/" + uuidA, wantErr: oci.ErrNameInvalid},
	{name: "invalid tag", path: "/v2/alpine/manifests/-latest", wantErr: oci.ErrTagInvalid},
	{name: "tag too long", path: "/v2/alpine/manifests/" + strings.Repeat("t", oci.MaxTagLength+1), wantErr: oci.ErrTagInvalid},
	{name: "manifest bad digest", path: "/v2/alpine/manifests/sha256:abc", wantErr: oci.ErrDigestInvalid},
	{name: "manifest uppercase digest", path: "/v2/alpine/manifests/" + strings.ToUpper(sha256A), wantErr: oci.ErrDigestInvalid},
	{name: "blob by tag", path: "/v2/alpine/blobs/latest", wantErr: oci.ErrDigestInvalid},
	{name: "blob unknown algorithm", path: "/v2/alpine/blobs/md5:" + strings.Repeat("a", 32), wantErr: oci.ErrDigestInvalid},
	{name: "referrers by tag", path: "/v2/alpine/referrers/latest", wantErr: oci.ErrDigestInvalid},
	{name: "valid digest, invalid name", path: "/v2/Alpine/blobs/" + sha256A, wantErr: oci.ErrNameInvalid},
}

func TestParseRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRoute(tc.path)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParseRoute(%q): got (%+v, %v), want error %v", tc.path, got, err, tc.wantErr)
				}
				if got != (Route{}) {
					t.Errorf("ParseRoute(%q): got %+v with an error, want the zero Route", tc.path, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRoute(%q): got error %v", tc.path, err)
			}
			if got != tc.want {
				t.Errorf("ParseRoute(%q): got %+v, want %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind]string{
		KindUnknown: "unknown", KindBase: "base", KindCatalog: "catalog", KindTags: "tags",
		KindManifest: "manifest", KindBlob: "blob", KindUploadStart: "upload_start",
		KindUpload: "upload", KindReferrers: "referrers", numKinds: "unknown", -1: "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String(): got %q, want %q", int(k), got, want)
		}
	}
}

func TestRouteLabel(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v2/":                                 "base",
		"/v2/alpine/manifests/latest":          "manifest",
		"/v2/alpine/blobs/uploads/":            "upload_start",
		"/v2/Alpine/manifests/latest":          "invalid",
		"/metrics":                             "invalid",
		"/v2/alpine/referrers/" + sha256A:      "referrers",
		"/v2/alpine/blobs/uploads/" + uuidA:    "upload",
		"/v2/library/alpine/blobs/" + sha256A:  "blob",
		"/v2/library/alpine/tags/list":         "tags",
		"/v2/_catalog":                         "catalog",
		"/v2/library/alpine/manifests/bad tag": "invalid",
	} {
		if got := RouteLabel(path); got != want {
			t.Errorf("RouteLabel(%q): got %q, want %q", path, got, want)
		}
	}
}

// routePath renders a route as the canonical path that names it.
func routePath(r Route) string {
	switch r.Kind {
	case KindBase:
		return "/v2/"
	case KindCatalog:
		return "/v2/_catalog"
	case KindTags:
		return "/v2/" + r.Name + "/tags/list"
	case KindManifest:
		return "/v2/" + r.Name + "/manifests/" + r.Reference
	case KindBlob:
		return "/v2/" + r.Name + "/blobs/" + r.Reference
	case KindUploadStart:
		return "/v2/" + r.Name + "/blobs/uploads/"
	case KindUpload:
		return "/v2/" + r.Name + "/blobs/uploads/" + r.Reference
	case KindReferrers:
		return "/v2/" + r.Name + "/referrers/" + r.Reference
	}
	return ""
}

// FuzzParseRoute checks that a parsed route carries a valid name and
// reference for its kind, and that its canonical path parses back to the
// same route.
func FuzzParseRoute(f *testing.F) {
	for _, tc := range routeCases {
		f.Add(tc.path)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := ParseRoute(path)
		if err != nil {
			if r != (Route{}) {
				t.Fatalf("ParseRoute(%q): got %+v with error %v", path, r, err)
			}
			if !errors.Is(err, errNotFound) && !errors.Is(err, oci.ErrNameInvalid) &&
				!errors.Is(err, oci.ErrTagInvalid) && !errors.Is(err, oci.ErrDigestInvalid) {
				t.Fatalf("ParseRoute(%q): unexpected error %v", path, err)
			}
			return
		}
		switch r.Kind {
		case KindBase, KindCatalog:
			if r.Name != "" || r.Reference != "" {
				t.Fatalf("ParseRoute(%q): got %+v", path, r)
			}
		case KindTags, KindUploadStart, KindManifest, KindBlob, KindReferrers, KindUpload:
			if err := oci.ValidateName(r.Name); err != nil {
				t.Fatalf("ParseRoute(%q): name %q: %v", path, r.Name, err)
			}
		default:
			t.Fatalf("ParseRoute(%q): kind %v", path, r.Kind)
		}
		switch r.Kind {
		case KindBlob, KindReferrers:
			if _, err := oci.ParseDigest(r.Reference); err != nil {
				t.Fatalf("ParseRoute(%q): reference: %v", path, err)
			}
		case KindManifest:
			_, derr := oci.ParseDigest(r.Reference)
			if derr != nil && oci.ValidateTag(r.Reference) != nil {
				t.Fatalf("ParseRoute(%q): reference %q is neither tag nor digest", path, r.Reference)
			}
		case KindUpload:
			if r.Reference == "" || r.Reference == "." || r.Reference == ".." || strings.Contains(r.Reference, "/") {
				t.Fatalf("ParseRoute(%q): upload ID %q", path, r.Reference)
			}
		case KindTags, KindUploadStart:
			if r.Reference != "" {
				t.Fatalf("ParseRoute(%q): got reference %q", path, r.Reference)
			}
		}
		canonical := routePath(r)
		again, err := ParseRoute(canonical)
		if err != nil || again != r {
			t.Fatalf("ParseRoute(%q) = %+v, but its path %q parses to (%+v, %v)", path, r, canonical, again, err)
		}
	})
}

func BenchmarkParseRoute(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"base", "/v2/"},
		{"tags", "/v2/library/alpine/tags/list"},
		{"manifest_tag", "/v2/library/alpine/manifests/3.19"},
		{"manifest_digest", "/v2/library/alpine/manifests/" + sha256A},
		{"blob_deep", "/v2/org/team/project/service/blobs/" + sha256A},
		{"upload", "/v2/library/alpine/blobs/uploads/" + uuidA},
		{"invalid", "/v2/Library/alpine/manifests/latest"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ParseRoute(bc.path)
			}
		})
	}
}
