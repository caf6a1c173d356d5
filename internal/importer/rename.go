package importer

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/storage"
)

// renamed is the metadata store seen through a name change: the engine
// copies repository from at the source, and writes and reads to at here.
type renamed struct {
	storage.Metadata
	from, to string
}

func (r renamed) name(repo string) string {
	if repo == r.from {
		return r.to
	}
	return repo
}

func (r renamed) LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64) error {
	return r.Metadata.LinkBlob(ctx, r.name(repo), d, size)
}

func (r renamed) BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	return r.Metadata.BlobSize(ctx, r.name(repo), d)
}

func (r renamed) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	return r.Metadata.UnlinkBlob(ctx, r.name(repo), d)
}

func (r renamed) PutManifest(ctx context.Context, repo string, m *storage.ManifestRecord, tags []string, optional map[digest.Digest]bool) error {
	return r.Metadata.PutManifest(ctx, r.name(repo), m, tags, optional)
}

func (r renamed) GetManifest(ctx context.Context, repo, ref string) (*storage.ManifestRecord, error) {
	return r.Metadata.GetManifest(ctx, r.name(repo), ref)
}

func (r renamed) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	return r.Metadata.DeleteManifest(ctx, r.name(repo), d)
}

func (r renamed) DeleteTag(ctx context.Context, repo, tag string) error {
	return r.Metadata.DeleteTag(ctx, r.name(repo), tag)
}

func (r renamed) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	return r.Metadata.Tags(ctx, r.name(repo), last, n)
}

func (r renamed) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	return r.Metadata.Referrers(ctx, r.name(repo), d)
}

func (r renamed) Changes(ctx context.Context, repo string, since uint64, n int) ([]storage.Change, uint64, error) {
	return r.Metadata.Changes(ctx, r.name(repo), since, n)
}

// renamedUploads is the upload store under the same name change.
type renamedUploads struct {
	storage.Uploads
	from, to string
}

func (r renamedUploads) name(repo string) string {
	if repo == r.from {
		return r.to
	}
	return repo
}

func (r renamedUploads) StartUpload(ctx context.Context, repo string) (string, error) {
	return r.Uploads.StartUpload(ctx, r.name(repo))
}

func (r renamedUploads) UploadSize(ctx context.Context, repo, id string) (int64, error) {
	return r.Uploads.UploadSize(ctx, r.name(repo), id)
}

func (r renamedUploads) AppendUpload(ctx context.Context, repo, id string, offset int64, body io.Reader) (int64, error) {
	return r.Uploads.AppendUpload(ctx, r.name(repo), id, offset, body)
}

func (r renamedUploads) CommitUpload(ctx context.Context, repo, id string, want digest.Digest) (int64, error) {
	return r.Uploads.CommitUpload(ctx, r.name(repo), id, want)
}

func (r renamedUploads) CancelUpload(ctx context.Context, repo, id string) error {
	return r.Uploads.CancelUpload(ctx, r.name(repo), id)
}
