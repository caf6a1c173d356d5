package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifests Outpost understands.
const (
	MediaTypeImageManifest      = v1.MediaTypeImageManifest
	MediaTypeImageIndex         = v1.MediaTypeImageIndex
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeEmptyJSON          = v1.MediaTypeEmptyJSON
)

// ManifestAccept is the Accept header of a manifest request: every
// manifest type Outpost stores (IsManifestMediaType), indexes first.
const ManifestAccept = MediaTypeImageIndex + ", " + MediaTypeImageManifest + ", " + MediaTypeDockerManifestList + ", " + MediaTypeDockerManifest

// ErrManifestInvalid reports a manifest body that cannot be accepted.
var ErrManifestInvalid = errors.New("manifest invalid")

// Manifest is what the registry needs to know about a manifest body: what
// it references and how it presents itself to the referrers API.
type Manifest struct {
	MediaType    string
	ArtifactType string
	Subject      *v1.Descriptor
	// Blobs are the config and layers of an image manifest.
	Blobs []v1.Descriptor
	// Manifests are the children of an index.
	Manifests   []v1.Descriptor
	Annotations map[string]string
}

// IsIndex reports whether the media type is an index or manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifestMediaType reports whether Outpost stores manifests of this type.
func IsManifestMediaType(mediaType string) bool {
	switch mediaType {
	case MediaTypeImageManifest, MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// IsNonDistributable reports layers whose content is fetched from elsewhere
// (their URLs) and so is never pushed to a registry.
func IsNonDistributable(mediaType string) bool {
	return strings.HasPrefix(mediaType, "application/vnd.oci.image.layer.nondistributable.") ||
		strings.HasPrefix(mediaType, "application/vnd.docker.image.rootfs.foreign.")
}

// rawManifest covers the fields of every supported manifest type.
type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// ParseManifest validates a manifest body sent with the given Content-Type
// and returns its references. An empty contentType falls back to the
// body's own mediaType field.
func ParseManifest(contentType string, body []byte) (Manifest, error) {
	var raw rawManifest
	if err := json.Unmarshal(body, &raw); err != nil {
		return Manifest{}, fmt.Errorf("%w: body is not a JSON manifest: %w", ErrManifestInvalid, err)
	}
	mt := contentType
	if mt != "" {
		parsed, _, err := mime.ParseMediaType(mt)
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: Content-Type %q: %w", ErrManifestInvalid, contentType, err)
		}
		mt = parsed
	}
	if mt == "" {
		mt = raw.MediaType
	}
	if raw.MediaType != "" && raw.MediaType != mt {
		return Manifest{}, fmt.Errorf("%w: mediaType %q in the body does not match Content-Type %q", ErrManifestInvalid, raw.MediaType, mt)
	}
	if !IsManifestMediaType(mt) {
		return Manifest{}, fmt.Errorf("%w: unsupported manifest media type %q", ErrManifestInvalid, mt)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return Manifest{}, fmt.Errorf("%w: schemaVersion must be 2", ErrManifestInvalid)
	}
	m := Manifest{MediaType: mt, ArtifactType: raw.ArtifactType, Subject: raw.Subject, Annotations: raw.Annotations}
	if IsIndex(mt) {
		if raw.Config != nil || raw.Layers != nil {
			return Manifest{}, fmt.Errorf("%w: an index has no config or layers", ErrManifestInvalid)
		}
		if raw.Manifests == nil {
			return Manifest{}, fmt.Errorf("%w: an index needs a manifests list", ErrManifestInvalid)
		}
		m.Manifests = raw.Manifests
	} else {
		if raw.Config == nil {
			return Manifest{}, fmt.Errorf("%w: an image manifest needs a config descriptor", ErrManifestInvalid)
		}
		if raw.Manifests != nil {
			return Manifest{}, fmt.Errorf("%w: an image manifest has no manifests list", ErrManifestInvalid)
		}
		// In place when the decoded slice has room (it usually has):
		// a large manifest's layers are not copied again.
		m.Blobs = slices.Insert(raw.Layers, 0, *raw.Config)
		if m.ArtifactType == "" && raw.Config.MediaType != MediaTypeEmptyJSON {
			// Image spec: artifactType is implied by the config media type.
			m.ArtifactType = raw.Config.MediaType
		}
	}
	for _, list := range [][]v1.Descriptor{m.Blobs, m.Manifests} {
		for i := range list {
			if err := validateDescriptor(list[i]); err != nil {
				return Manifest{}, err
			}
		}
	}
	if m.Subject != nil {
		if err := validateDescriptor(*m.Subject); err != nil {
			return Manifest{}, fmt.Errorf("subject: %w", err)
		}
	}
	return m, nil
}

func validateDescriptor(d v1.Descriptor) error {
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("%w: descriptor digest: %w", ErrManifestInvalid, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: descriptor %s has a negative size", ErrManifestInvalid, d.Digest)
	}
	if d.MediaType == "" {
		return fmt.Errorf("%w: descriptor %s has no mediaType", ErrManifestInvalid, d.Digest)
	}
	return nil
}

// Digester returns the digest of body with the algorithm of want, or sha256
// when want is empty.
func Digester(want digest.Digest, body []byte) digest.Digest {
	alg := digest.SHA256
	if want != "" {
		alg = want.Algorithm()
	}
	return alg.FromBytes(body)
}
