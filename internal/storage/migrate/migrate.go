// Package migrate copies a registry's content from one set of stores to
// another (outpost storage migrate): every repository's blobs through the
// destination's upload sessions, which verify each digest, then its
// metadata and change feed in one transaction of the destination. It can
// be run again after an interruption: blobs already copied and
// repositories already written are not copied twice.
package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Dumper is a metadata store that can read out a whole repository.
type Dumper interface {
	Dump(ctx context.Context, repo string) (*storage.RepositoryDump, error)
}

// Restorer is a metadata store that can write a dumped repository.
type Restorer interface {
	Restore(ctx context.Context, repo string, d *storage.RepositoryDump) error
}

// Stores are one end of a migration.
type Stores struct {
	Blobs   storage.BlobStore
	Uploads storage.Uploads // the destination's
	Meta    storage.Metadata
}

// Report counts what a migration did.
type Report struct {
	Repositories int   `json:"repositories"`
	Blobs        int   `json:"blobs"`
	BlobsCopied  int   `json:"blobsCopied"`
	BytesCopied  int64 `json:"bytesCopied"`
	// Records are the identity and fleet records (tokens, scope maps,
	// connected registries…) copied, and those the destination already
	// held and kept.
	Records     int `json:"records"`
	RecordsKept int `json:"recordsKept"`
}

// Run copies every repository of from into to. progress, when not nil,
// is told of each repository once it is done.
func Run(ctx context.Context, from, to Stores, progress func(repo string, r Report)) (Report, error) {
	var rep Report
	dump, ok := from.Meta.(Dumper)
	if !ok {
		return rep, errors.New("migrate: the source metadata store cannot be read out (use storage.metadata.type bolt)")
	}
	restore, ok := to.Meta.(Restorer)
	if !ok {
		return rep, errors.New("migrate: the destination metadata store cannot be written in bulk (use storage.metadata.type postgres)")
	}
	copied := map[digest.Digest]bool{}
	last := ""
	for {
		repos, more, err := from.Meta.Repositories(ctx, last, 1000)
		if err != nil {
			return rep, fmt.Errorf("migrate: list repositories: %w", err)
		}
		for _, repo := range repos {
			d, err := dump.Dump(ctx, repo)
			if err != nil {
				return rep, fmt.Errorf("migrate: %w", err)
			}
			for dg, size := range d.Blobs {
				rep.Blobs++
				if copied[dg] {
					continue
				}
				n, err := copyBlob(ctx, from, to, repo, dg, size)
				if err != nil {
					return rep, fmt.Errorf("migrate %s: %w", repo, err)
				}
				copied[dg] = true
				if n > 0 {
					rep.BlobsCopied++
					rep.BytesCopied += n
				}
			}
			if err := restore.Restore(ctx, repo, d); err != nil {
				return rep, fmt.Errorf("migrate %s: %w", repo, err)
			}
			rep.Repositories++
			if progress != nil {
				progress(repo, rep)
			}
		}
		if !more || len(repos) == 0 {
			return rep, nil
		}
		last = repos[len(repos)-1]
	}
}

// copyBlob puts blob d into the destination unless it holds it already
// (then it returns 0). The destination's commit checks the digest.
func copyBlob(ctx context.Context, from, to Stores, repo string, d digest.Digest, size int64) (int64, error) {
	if n, err := to.Blobs.Stat(ctx, d); err == nil && n == size {
		return 0, nil
	}
	rc, n, err := from.Blobs.Open(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("open blob %s: %w", d, err)
	}
	defer rc.Close()
	id, err := to.Uploads.StartUpload(ctx, repo)
	if err != nil {
		return 0, fmt.Errorf("copy blob %s: %w", d, err)
	}
	if _, err := to.Uploads.AppendUpload(ctx, repo, id, 0, rc); err != nil {
		_ = to.Uploads.CancelUpload(ctx, repo, id)
		return 0, fmt.Errorf("copy blob %s: %w", d, err)
	}
	if _, err := to.Uploads.CommitUpload(ctx, repo, id, d); err != nil {
		return 0, fmt.Errorf("copy blob %s: %w", d, err)
	}
	return n, nil
}
