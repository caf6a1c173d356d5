// Package storage declares the roles Outpost's persistence plays: a
// content-addressed blob store shared by all repositories, resumable upload
// sessions, and a transactional metadata store for repositories, tags,
// manifests and the referrers index. Implementations live in sub-packages
// (fs for blobs on local disk, bolt for embedded metadata, memory for
// tests) and must pass the conformance suites in storagetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/oci"
)

// Sentinel errors. Implementations wrap them with the digest or reference
// concerned; callers compare with errors.Is.
var (
	ErrBlobUnknown         = errors.New("blob unknown")
	ErrManifestUnknown     = errors.New("manifest unknown")
	ErrRepositoryUnknown   = errors.New("repository unknown")
	ErrUploadUnknown       = errors.New("upload unknown")
	ErrDigestMismatch      = errors.New("digest mismatch")
	ErrOffsetMismatch      = errors.New("upload offset mismatch")
	ErrManifestBlobUnknown = errors.New("manifest references unknown content")
	// ErrBlobCorrupt marks a stored blob whose content does not hash to
	// its digest. It comes wrapped together with ErrBlobUnknown: the store
	// has moved the content aside and no longer holds the blob.
	ErrBlobCorrupt = errors.New("blob corrupt")
	// ErrInsufficientStorage marks a write that failed because the volume
	// holding the store is full (ENOSPC) or its quota is exhausted
	// (EDQUOT).
	ErrInsufficientStorage = errors.New("insufficient storage: the data volume is full")
)

// SpaceError is a write refused for lack of space, with what is known of
// the volume: it matches ErrInsufficientStorage with errors.Is.
type SpaceError struct {
	// Volume is the directory of the data volume.
	Volume string
	// Free and Total are the volume's bytes available and size just after
	// the failure.
	Free, Total uint64
	// Need is the number of bytes the refused write wanted to store, when
	// the caller knows it (0: unknown).
	Need int64
	Err  error
}

func (e *SpaceError) Error() string {
	msg := fmt.Sprintf("insufficient storage: the data volume %s is full (%d of %d bytes free)", e.Volume, e.Free, e.Total)
	if e.Need > 0 {
		msg += fmt.Sprintf("; %d bytes are needed", e.Need)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes a SpaceError match ErrInsufficientStorage.
func (e *SpaceError) Is(target error) bool { return target == ErrInsufficientStorage }

func (e *SpaceError) Unwrap() error { return e.Err }

// NeedSpace records on a SpaceError in err's chain that the refused write
// wanted n bytes (when not known already), and returns err.
func NeedSpace(err error, n int64) error {
	var se *SpaceError
	if n > 0 && errors.As(err, &se) && se.Need == 0 {
		se.Need = n
	}
	return err
}

// NoSpace reports whether err is a write that failed for lack of space:
// ErrInsufficientStorage, or ENOSPC or EDQUOT from the operating system
// not yet wrapped in it (as a metadata store may return them).
func NoSpace(err error) bool {
	return errors.Is(err, ErrInsufficientStorage) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// BlobStore holds immutable blobs addressed by digest.
type BlobStore interface {
	// Stat returns the size of a blob, or ErrBlobUnknown.
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	// Open returns the blob's content and size. It never returns content
	// known not to hash to d: a blob found corrupt is reported as
	// ErrBlobUnknown wrapped with ErrBlobCorrupt. The local filesystem
	// implementation returns an *os.File so that the HTTP server can hand
	// it to sendfile.
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error)
	// Delete removes a blob; deleting an absent blob is not an error.
	Delete(ctx context.Context, d digest.Digest) error
}

// Redirector is an optional ability of a BlobStore whose content clients
// can fetch without the registry: BlobURL returns a URL, valid for a
// while, from which a GET returns blob d.
type Redirector interface {
	BlobURL(ctx context.Context, d digest.Digest) (string, error)
}

// Uploads manages resumable upload sessions whose content becomes a blob
// only when it is complete and its digest verified. A session belongs to
// the repository it was started for: every method but StartUpload returns
// ErrUploadUnknown for an ID that is not an open session of repo (never
// started, committed, cancelled, or started for another repository).
type Uploads interface {
	// StartUpload opens a session for repo and returns its ID.
	StartUpload(ctx context.Context, repo string) (string, error)
	// UploadSize returns how many bytes the session holds.
	UploadSize(ctx context.Context, repo, id string) (int64, error)
	// AppendUpload appends r to the session. When offset is not negative it
	// must equal the session's current size, or ErrOffsetMismatch is
	// returned. It returns the new size, also on error.
	AppendUpload(ctx context.Context, repo, id string, offset int64, r io.Reader) (int64, error)
	// CommitUpload verifies that the session's content has digest want and
	// moves it into the blob store atomically. It returns the blob size.
	// A mismatch returns ErrDigestMismatch and discards the session.
	CommitUpload(ctx context.Context, repo, id string, want digest.Digest) (int64, error)
	// CancelUpload discards a session.
	CancelUpload(ctx context.Context, repo, id string) error
}

// ManifestRecord is a stored manifest: its body byte-for-byte and what the
// registry API needs to answer without parsing it again.
type ManifestRecord struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	// Blobs and Manifests are the digests the manifest references.
	Blobs     []digest.Digest `json:"blobs,omitempty"`
	Manifests []digest.Digest `json:"manifests,omitempty"`
	Body      []byte          `json:"-"`
}

// NewManifestRecord builds the record of manifest body, parsed as m, with
// digest d. optional lists the non-distributable layers it references:
// their content is fetched from elsewhere, so the store need not hold it
// (see Metadata.PutManifest).
func NewManifestRecord(d digest.Digest, m oci.Manifest, body []byte) (rec *ManifestRecord, optional map[digest.Digest]bool) {
	rec = &ManifestRecord{Digest: d, MediaType: m.MediaType, ArtifactType: m.ArtifactType, Annotations: m.Annotations, Body: body}
	if len(m.Blobs) > 0 {
		rec.Blobs = make([]digest.Digest, 0, len(m.Blobs))
	}
	for _, b := range m.Blobs {
		rec.Blobs = append(rec.Blobs, b.Digest)
		if oci.IsNonDistributable(b.MediaType) {
			if optional == nil {
				optional = map[digest.Digest]bool{}
			}
			optional[b.Digest] = true
		}
	}
	for _, c := range m.Manifests {
		rec.Manifests = append(rec.Manifests, c.Digest)
	}
	if m.Subject != nil {
		rec.Subject = m.Subject.Digest
	}
	return rec, optional
}

// Size is the length of the manifest body.
func (m *ManifestRecord) Size() int64 { return int64(len(m.Body)) }

// Descriptor describes the manifest for an index or the referrers API.
func (m *ManifestRecord) Descriptor() v1.Descriptor {
	return v1.Descriptor{
		MediaType:    m.MediaType,
		Digest:       m.Digest,
		Size:         m.Size(),
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	}
}

// Metadata is the transactional store of repositories, blob membership,
// manifests, tags and the referrers index.
type Metadata interface {
	// LinkBlob makes blob d, already in the blob store, part of repo.
	LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64) error
	// BlobSize returns the size of blob d if it is part of repo, or
	// ErrBlobUnknown.
	BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error)
	// BlobRepositories lists the repositories that hold blob d.
	BlobRepositories(ctx context.Context, d digest.Digest) ([]string, error)
	// UnlinkBlob removes blob d from repo, or returns ErrBlobUnknown.
	UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error
	// PutManifest stores m in repo and points tags at it, in one
	// transaction. Every blob in m.Blobs (except those listed in optional)
	// and every manifest in m.Manifests must already be part of repo, or
	// ErrManifestBlobUnknown is returned and nothing changes.
	PutManifest(ctx context.Context, repo string, m *ManifestRecord, tags []string, optional map[digest.Digest]bool) error
	// GetManifest resolves a tag or digest in repo, or returns
	// ErrManifestUnknown. It returns the record stored in repo, even when
	// another repository holds the same digest as a different record. The
	// record may share memory with the store: callers may change its
	// fields but not the bytes of Body, the elements of its slices or the
	// Annotations map.
	GetManifest(ctx context.Context, repo, ref string) (*ManifestRecord, error)
	// DeleteManifest removes manifest d from repo with every tag pointing
	// at it and its referrers index entry, or returns ErrManifestUnknown.
	DeleteManifest(ctx context.Context, repo string, d digest.Digest) error
	// DeleteTag removes one tag; the manifest stays. A tag that does not
	// exist returns ErrManifestUnknown.
	DeleteTag(ctx context.Context, repo, tag string) error
	// Tags lists up to n tags of repo in lexical order after last, and
	// reports whether more follow. A repository that does not exist returns
	// ErrRepositoryUnknown.
	Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error)
	// Repositories lists up to n repository names after last in lexical
	// order, and reports whether more follow.
	Repositories(ctx context.Context, last string, n int) ([]string, bool, error)
	// Referrers lists the manifests in repo whose subject is d. The subject
	// need not be stored; an unknown repository has no referrers.
	Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error)
	// Changes lists, in order, up to n tag changes of repo recorded after
	// cursor since, and the repository's latest cursor; cursors grow, so 0
	// lists the feed from its start. Every tag moved or removed, and every
	// referrer added, is recorded (putting a tag where it already points is
	// no change), so a mirror can follow a repository at a cost
	// proportional to what changed. A repository that does not exist
	// returns ErrRepositoryUnknown.
	Changes(ctx context.Context, repo string, since uint64, n int) ([]Change, uint64, error)
	// Close releases the store.
	Close() error
}

// Change is one entry of a repository's change feed.
type Change struct {
	Seq    uint64        `json:"seq"`
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest,omitempty"`
	// Prev is the digest the tag pointed at before (empty if none).
	Prev digest.Digest `json:"prev,omitempty"`
	// Time is when the change was made.
	Time time.Time `json:"time,omitzero"`
	// Origin is "sync" for changes copied from the parent, empty for
	// changes made by clients of this registry.
	Origin string `json:"origin,omitempty"`
	// Op says what changed.
	Op ChangeOp `json:"op"`
}

// ChangeOp is the operation of a change (its JSON is part of the change
// feed of the edge↔parent protocol).
type ChangeOp string

// The operations of the change feed.
const (
	// ChangePut: the tag now points at Digest.
	ChangePut ChangeOp = "put"
	// ChangeDelete: the tag is gone.
	ChangeDelete ChangeOp = "delete"
	// ChangeRefer: manifest Digest, which has a subject, was added.
	ChangeRefer ChangeOp = "refer"
)

// RepositoryDump is everything a metadata store holds about one
// repository, to move it to another store (outpost storage migrate).
type RepositoryDump struct {
	// Blobs are the linked blobs and their sizes.
	Blobs     map[digest.Digest]int64
	Manifests []*ManifestRecord
	Tags      map[string]digest.Digest
	// Changes is the whole change feed, in order; Head its last cursor.
	Changes []Change
	Head    uint64
}

// OriginSync marks writes made by synchronization from the parent.
const OriginSync = "sync"

type originKey struct{}

// WithOrigin tags the writes made with ctx, so that the change feed tells
// local pushes from content copied from the parent.
func WithOrigin(ctx context.Context, origin string) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// OriginFrom returns the origin set with WithOrigin.
func OriginFrom(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}
