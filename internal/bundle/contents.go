// Package bundle carries images to registries that never see the network:
// an air-gap bundle is an OCI image layout in a tar (oci-layout,
// index.json, blobs/sha256/…), readable by standard tools when it is full,
// plus a contents manifest signed by the root that names the target site,
// the inventory the bundle is a delta against, every image and every blob
// it carries, and the blobs it leaves out because the site holds them.
//
// Export is a graph.Copy from the root's store into a layout-tar Target
// (Writer) that skips the blobs the site's inventory lists; import is a
// graph.Copy from the layout (Reader, a Source) into the site's store,
// through an import session that admits only what the signed contents
// name (Session). docs/bundles.md describes the format.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Sentinel errors; each refusal wraps one.
var (
	// ErrSignature marks contents whose signature does not verify with
	// the trusted key (edited, or signed by another root).
	ErrSignature = errors.New("bundle signature invalid")
	// ErrTarget marks a bundle made for another site.
	ErrTarget = errors.New("bundle is for another site")
	// ErrBase marks a delta whose base the site does not hold.
	ErrBase = errors.New("bundle base missing")
	// ErrFormat marks a file that is not a well-formed bundle.
	ErrFormat = errors.New("malformed bundle")
	// ErrNotListed marks content the signed contents do not name.
	ErrNotListed = errors.New("content not listed in the bundle's signed contents")
	// ErrNoKey marks a site that has no key to verify bundles with.
	ErrNoKey = errors.New("no bundle key")
)

// File names inside the bundle tar, beside the OCI layout's.
const (
	ContentsFile  = "outpost-bundle.json"
	SignatureFile = "outpost-bundle.sig"
	// ContentsMediaType is the contents manifest's mediaType.
	ContentsMediaType = "application/vnd.outpost.bundle.contents.v1+json"
)

// Contents is the bundle's contents manifest: what the root signs.
type Contents struct {
	SchemaVersion int       `json:"schemaVersion"`
	MediaType     string    `json:"mediaType"`
	ID            string    `json:"id"`
	Created       time.Time `json:"created"`
	// Issuer is the root that made the bundle (its login server).
	Issuer string `json:"issuer,omitempty"`
	// KeyID names the key that signed it (KeyID of the public key).
	KeyID  string `json:"keyId"`
	Target Target `json:"target"`
	// Base is what a delta was computed against; nil for a full bundle.
	Base   *Base   `json:"base,omitempty"`
	Images []Image `json:"images"`
	// Blobs are the manifests and blobs the bundle carries, in the order
	// they appear in the tar.
	Blobs []Blob `json:"blobs"`
	// Omitted are the blobs the images need and the bundle leaves out
	// because the site holds them.
	Omitted []Blob `json:"omitted,omitempty"`
}

// Target names the site a bundle is for; empty fields match any site.
type Target struct {
	// Name is the connected registry's name.
	Name string `json:"name,omitempty"`
	// SiteID is the site's identity from its inventory.
	SiteID string `json:"siteId,omitempty"`
}

// Base is the inventory a delta was computed against.
type Base struct {
	// Inventory is the inventory file's digest ("" when the root used
	// what it knows of the site instead).
	Inventory digest.Digest `json:"inventory,omitempty"`
	Source    string        `json:"source"`
	Blobs     int           `json:"blobs"`
}

// Image is one image the bundle delivers, tagged at the site once its
// whole graph is present.
type Image struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType,omitempty"`
	Size       int64         `json:"size"`
}

// Ref is repository:tag, or repository@digest for an untagged image.
func (im Image) Ref() string {
	if im.Tag == "" {
		return im.Repository + "@" + string(im.Digest)
	}
	return im.Repository + ":" + im.Tag
}

// Blob is one blob or manifest, by digest and size.
type Blob struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType,omitempty"`
}

// Bytes is the total size of the blobs the bundle carries.
func (c *Contents) Bytes() int64 {
	var n int64
	for _, b := range c.Blobs {
		n += b.Size
	}
	return n
}

// OmittedBytes is the total size of the blobs left out.
func (c *Contents) OmittedBytes() int64 {
	var n int64
	for _, b := range c.Omitted {
		n += b.Size
	}
	return n
}

// Signature is the detached signature of the contents file's bytes.
type Signature struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"keyId"`
	Signature []byte `json:"signature"`
}

// KeyID names a public key: sha256 of its PKIX encoding.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// EncodePublicKey returns pub as a PEM "PUBLIC KEY" (bundle.pub).
func EncodePublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey reads a PEM "PUBLIC KEY" holding an ed25519 key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(bytes.TrimSpace(b))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: bundle key: not a PEM public key", ErrFormat)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: bundle key: %w", ErrFormat, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: bundle key: not an ed25519 key", ErrFormat)
	}
	return pub, nil
}

// Sign encodes c and signs the encoding; it returns the contents file and
// the signature file.
func Sign(c *Contents, key ed25519.PrivateKey) (contents, sig []byte, err error) {
	pub, _ := key.Public().(ed25519.PublicKey)
	c.SchemaVersion, c.MediaType, c.KeyID = 1, ContentsMediaType, KeyID(pub)
	contents, err = json.MarshalIndent(c, "", " ")
	if err != nil {
		return nil, nil, fmt.Errorf("encode bundle contents: %w", err)
	}
	contents = append(contents, '\n')
	sig, err = json.Marshal(Signature{Algorithm: "ed25519", KeyID: c.KeyID, Signature: ed25519.Sign(key, contents)})
	if err != nil {
		return nil, nil, fmt.Errorf("encode bundle signature: %w", err)
	}
	return contents, append(sig, '\n'), nil
}

// Verify checks the signature of the contents file with pub and decodes
// it. Nothing in the contents is trusted before this succeeds.
func Verify(contents, sig []byte, pub ed25519.PublicKey) (*Contents, error) {
	var s Signature
	if err := json.Unmarshal(sig, &s); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, SignatureFile, err)
	}
	if s.Algorithm != "ed25519" {
		return nil, fmt.Errorf("%w: algorithm %q, want ed25519", ErrSignature, s.Algorithm)
	}
	if want := KeyID(pub); s.KeyID != want {
		return nil, fmt.Errorf("%w: signed by key %s, this site trusts %s (a bundle of another root?)", ErrSignature, s.KeyID, want)
	}
	if !ed25519.Verify(pub, contents, s.Signature) {
		return nil, fmt.Errorf("%w: the contents manifest does not match its signature (edited or damaged)", ErrSignature)
	}
	c, err := Decode(contents)
	if err != nil {
		return nil, err
	}
	if c.KeyID != s.KeyID {
		return nil, fmt.Errorf("%w: contents name key %s, signature %s", ErrSignature, c.KeyID, s.KeyID)
	}
	return c, nil
}

// Decode reads a contents file without verifying it: for the client's
// walk and its report, never for a decision (the site verifies).
func Decode(contents []byte) (*Contents, error) {
	var c Contents
	dec := json.NewDecoder(bytes.NewReader(contents))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, ContentsFile, err)
	}
	if c.SchemaVersion != 1 || c.MediaType != ContentsMediaType {
		return nil, fmt.Errorf("%w: contents schema %d %q, want 1 %q", ErrFormat, c.SchemaVersion, c.MediaType, ContentsMediaType)
	}
	return &c, c.validate()
}

// validate checks what the rest of the import relies on: valid digests,
// sizes, image references, no blob both carried and omitted.
func (c *Contents) validate() error {
	seen := map[digest.Digest]bool{}
	for _, list := range [][]Blob{c.Blobs, c.Omitted} {
		for _, b := range list {
			if err := b.Digest.Validate(); err != nil || b.Digest.Algorithm() != digest.SHA256 || b.Size < 0 {
				return fmt.Errorf("%w: blob %q size %d", ErrFormat, b.Digest, b.Size)
			}
			if seen[b.Digest] {
				return fmt.Errorf("%w: blob %s listed twice", ErrFormat, b.Digest)
			}
			seen[b.Digest] = true
		}
	}
	if len(c.Images) == 0 {
		return fmt.Errorf("%w: no images", ErrFormat)
	}
	for _, im := range c.Images {
		if err := im.Digest.Validate(); err != nil || im.Repository == "" {
			return fmt.Errorf("%w: image %q", ErrFormat, im.Ref())
		}
	}
	return nil
}

// Accepts checks that a bundle for t may be imported at the site named
// name with identity siteID (either may be empty: a registry with no
// parent has no name).
func (t Target) Accepts(name, siteID string) error {
	switch {
	case t.SiteID != "" && t.SiteID != siteID:
		return fmt.Errorf("%w: made for site %s (%s), this is %s (%s)", ErrTarget, t.SiteID, orNone(t.Name), siteID, orNone(name))
	case t.SiteID == "" && t.Name != "" && t.Name != name:
		return fmt.Errorf("%w: made for connected registry %s, this is %s", ErrTarget, t.Name, orNone(name))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no name"
	}
	return s
}
