package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Restore writes a repository dumped from another store in one
// transaction: blob links, manifests, tags and the change feed with its
// sequence numbers, so that mirrors following the feed keep their
// cursors. It is idempotent, so an interrupted migration is run again.
// The blobs must already be in the blob store.
func (s *Store) Restore(ctx context.Context, repo string, d *storage.RepositoryDump) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		for dg, size := range d.Blobs {
			if _, err := tx.Exec(ctx, `INSERT INTO blobs (repo_id, digest, size) VALUES ($1, $2, $3)
				ON CONFLICT (repo_id, digest) DO UPDATE SET size = excluded.size`, id, string(dg), size); err != nil {
				return fmt.Errorf("postgres: restore blob %s: %w", dg, err)
			}
		}
		for _, m := range d.Manifests {
			var subject *string
			if m.Subject != "" {
				subject = new(string(m.Subject))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, blobs, children, body)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING`,
				id, string(m.Digest), m.MediaType, m.ArtifactType, subject, m.Annotations, digestStrings(m.Blobs), digestStrings(m.Manifests), m.Body); err != nil {
				return fmt.Errorf("postgres: restore manifest %s: %w", m.Digest, err)
			}
		}
		for tag, dg := range d.Tags {
			if _, err := tx.Exec(ctx, `INSERT INTO tags (repo_id, name, digest) VALUES ($1, $2, $3)
				ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest`, id, tag, string(dg)); err != nil {
				return fmt.Errorf("postgres: restore tag %s: %w", tag, err)
			}
		}
		for _, c := range d.Changes {
			if _, err := tx.Exec(ctx, `INSERT INTO changes (repo_id, seq, op, tag, digest, prev, origin, at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (repo_id, seq) DO NOTHING`,
				id, int64(c.Seq), c.Op, c.Tag, string(c.Digest), string(c.Prev), c.Origin, c.Time.UTC()); err != nil { //nolint:gosec // sequences stay far below 2^63
				return fmt.Errorf("postgres: restore change %d: %w", c.Seq, err)
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE repositories SET change_seq = greatest(change_seq, $2) WHERE id = $1", id, int64(d.Head)); err != nil { //nolint:gosec // as above
			return fmt.Errorf("postgres: restore change feed head: %w", err)
		}
		return nil
	})
}
