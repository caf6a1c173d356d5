// Package oci holds the leaf types of the OCI Distribution and Image
// specifications that the rest of Outpost builds on: repository names, tags,
// digests and media types. It performs no I/O.
package oci

import (
	"errors"
	"fmt"
)

// MaxNameLength is the longest repository name accepted. The distribution
// spec leaves the limit to registries; 255 matches common practice and keeps
// every name safely usable as a metadata key.
const MaxNameLength = 255

// MaxTagLength is the longest tag allowed by the spec's tag grammar.
const MaxTagLength = 128

// Sentinel errors returned by the validators.
var (
	ErrNameInvalid   = errors.New("invalid repository name")
	ErrTagInvalid    = errors.New("invalid tag")
	ErrDigestInvalid = errors.New("invalid digest")
)

// ValidateName checks a repository name against the grammar of the OCI
// Distribution Spec (§ "Pulling manifests", <name>):
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// The grammar forbids "..", empty components and leading or trailing
// separators, so a valid name can never escape a directory it is joined to.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrNameInvalid)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrNameInvalid, len(name), MaxNameLength)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			if !validComponent(name[start:i]) {
				return fmt.Errorf("%w: %q: each path component must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*", ErrNameInvalid, name)
			}
			start = i + 1
		}
	}
	return nil
}

func isAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// validComponent reports whether c matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func validComponent(c string) bool {
	if c == "" || !isAlnum(c[0]) || !isAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isAlnum(c[i]) {
			i++
			continue
		}
		// A separator run: ".", "_", "__" or one or more "-".
		j := i
		switch c[i] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		if j >= len(c) || !isAlnum(c[j]) {
			return false
		}
		i = j
	}
	return true
}

// ValidateTag checks a tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return fmt.Errorf("%w: %q: length must be 1 to %d", ErrTagInvalid, tag, MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
		if i > 0 {
			ok = ok || c == '.' || c == '-'
		}
		if !ok {
			return fmt.Errorf("%w: %q: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", ErrTagInvalid, tag)
		}
	}
	return nil
}
