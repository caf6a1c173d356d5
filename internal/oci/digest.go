package oci

import (
	// Register the hash functions that go-digest looks up by algorithm.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// ParseDigest parses and validates a digest string such as "sha256:…".
// Only sha256 and sha512 are accepted, the algorithms the image spec
// registers for content addressing.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrDigestInvalid, s, err)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	default:
		return "", fmt.Errorf("%w: %q: unsupported algorithm %q", ErrDigestInvalid, s, d.Algorithm())
	}
}

// IsDigest reports whether a manifest reference looks like a digest rather
// than a tag. Tags cannot contain ':', digests always do.
func IsDigest(ref string) bool {
	for i := 0; i < len(ref); i++ {
		if ref[i] == ':' {
			return true
		}
	}
	return false
}
