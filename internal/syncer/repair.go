package syncer

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// RepairBlob downloads blob d again after the store lost it (found
// corrupt and quarantined), from the first of repos the parent serves it
// for, whatever the sync scope; repos are the local repositories that
// link it. Each download is verified as any other.
func (e *Engine) RepairBlob(ctx context.Context, repos []string, d digest.Digest) error {
	ctx = storage.WithOrigin(ctx, storage.OriginSync)
	var errs []error
	for _, repo := range repos {
		size, err := e.o.Metadata.BlobSize(ctx, repo, d)
		if err != nil {
			size = -1
		}
		err = e.copyBlob(ctx, repo, d, size)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("from %s: %w", repo, err))
		if storage.NoSpace(err) || ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("repair blob %s: no repository links it", d)
	}
	return fmt.Errorf("repair blob %s: %w", d, errors.Join(errs...))
}
