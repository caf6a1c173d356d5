package registryapi

import (
	"fmt"
	"strings"

	"github.com/outpost-registry/outpost/internal/oci"
)

// Kind names an endpoint of the distribution API.
type Kind int

// The endpoints of the OCI Distribution Spec (§ "Endpoints").
const (
	KindUnknown     Kind = iota
	KindBase             // /v2/
	KindCatalog          // /v2/_catalog
	KindTags             // /v2/<name>/tags/list
	KindManifest         // /v2/<name>/manifests/<reference>
	KindBlob             // /v2/<name>/blobs/<digest>
	KindUploadStart      // /v2/<name>/blobs/uploads/
	KindUpload           // /v2/<name>/blobs/uploads/<id>
	KindReferrers        // /v2/<name>/referrers/<digest>
	numKinds
)

var kindNames = [numKinds]string{"unknown", "base", "catalog", "tags", "manifest", "blob", "upload_start", "upload", "referrers"}

// String returns the route's name, used as a metrics label.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return "unknown"
	}
	return kindNames[k]
}

// Route is a parsed /v2/ request path.
type Route struct {
	Kind Kind
	// Name is the repository name.
	Name string
	// Reference is a tag or digest (manifests), a digest (blobs, referrers)
	// or an upload ID.
	Reference string
}

// errNotFound is returned for paths outside the API.
var errNotFound = fmt.Errorf("no such endpoint")

// ParseRoute turns a URL path into a Route. It validates the repository
// name, and the digest or tag where the endpoint needs one; it never
// touches storage.
func ParseRoute(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return Route{Kind: KindBase}, nil
		}
		return Route{}, errNotFound
	}
	switch rest {
	case "":
		return Route{Kind: KindBase}, nil
	case "_catalog":
		return Route{Kind: KindCatalog}, nil
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return named(Route{Kind: KindTags, Name: name})
	}
	if name, ok := strings.CutSuffix(rest, "/blobs/uploads/"); ok {
		return named(Route{Kind: KindUploadStart, Name: name})
	}
	if name, ok := strings.CutSuffix(rest, "/blobs/uploads"); ok {
		return named(Route{Kind: KindUploadStart, Name: name})
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return Route{}, errNotFound
	}
	ref := rest[i+1:]
	head := rest[:i]
	j := strings.LastIndexByte(head, '/')
	if j <= 0 {
		return Route{}, errNotFound
	}
	name, verb := head[:j], head[j+1:]
	switch verb {
	case "manifests":
		if oci.IsDigest(ref) {
			if _, err := oci.ParseDigest(ref); err != nil {
				return Route{}, err
			}
		} else if err := oci.ValidateTag(ref); err != nil {
			return Route{}, err
		}
		return named(Route{Kind: KindManifest, Name: name, Reference: ref})
	case "blobs":
		if _, err := oci.ParseDigest(ref); err != nil {
			return Route{}, err
		}
		return named(Route{Kind: KindBlob, Name: name, Reference: ref})
	case "referrers":
		if _, err := oci.ParseDigest(ref); err != nil {
			return Route{}, err
		}
		return named(Route{Kind: KindReferrers, Name: name, Reference: ref})
	case "uploads":
		name, ok := strings.CutSuffix(name, "/blobs")
		if !ok || ref == "" || ref == "." || ref == ".." {
			return Route{}, errNotFound
		}
		return named(Route{Kind: KindUpload, Name: name, Reference: ref})
	}
	return Route{}, errNotFound
}

func named(r Route) (Route, error) {
	if err := oci.ValidateName(r.Name); err != nil {
		return Route{}, err
	}
	return r, nil
}
