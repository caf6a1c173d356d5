// Package postgres keeps Outpost's metadata in PostgreSQL, so that the
// replicas of a root registry share one consistent store. The schema is
// in migrations/ and is brought up to date at Open, under an advisory
// lock. Every write to a repository takes its row's lock first, which
// orders the writes to one repository (and its change feed) across
// replicas while writes to different repositories run in parallel.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Store is a PostgreSQL-backed storage.Metadata.
type Store struct {
	pool *pgxpool.Pool
}

var _ storage.Metadata = (*Store)(nil)

// Open connects to the database dsn names (a libpq connection string or
// URL) and migrates its schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("postgres: the DSN does not parse")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Ping connects to the database dsn names and closes the connection,
// without touching the schema (`outpost config validate`).
func Ping(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return errors.New("postgres: the DSN does not parse")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	return conn.Close(ctx)
}

// Close implements storage.Metadata.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Check reports whether the database answers: it backs /readyz and
// `outpost config validate`.
func (s *Store) Check(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// inTx runs fn in a transaction and commits it when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// lockRepo returns the ID of repo, creating it, and holds its row lock
// until the transaction ends.
func lockRepo(ctx context.Context, tx pgx.Tx, repo string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO repositories (name) VALUES ($1)
		ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id`, repo).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("postgres: repository %s: %w", repo, err)
	}
	return id, nil
}

// findRepo returns the ID of repo, locking its row, or ok false.
func findRepo(ctx context.Context, tx pgx.Tx, repo string) (id int64, ok bool, err error) {
	err = tx.QueryRow(ctx, "SELECT id FROM repositories WHERE name = $1 FOR UPDATE", repo).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres: repository %s: %w", repo, err)
	}
	return id, true, nil
}

// LinkBlob implements storage.Metadata.
func (s *Store) LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64) error {
	_, err := s.pool.Exec(ctx, `WITH r AS (
			INSERT INTO repositories (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id)
		INSERT INTO blobs (repo_id, digest, size) SELECT id, $2, $3 FROM r
		ON CONFLICT (repo_id, digest) DO UPDATE SET size = excluded.size, linked_at = now()`, repo, string(d), size)
	if err != nil {
		return fmt.Errorf("postgres: link blob %s in %s: %w", d, repo, err)
	}
	return nil
}

// BlobSize implements storage.Metadata.
func (s *Store) BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	var size int64
	err := s.pool.QueryRow(ctx, `SELECT b.size FROM blobs b JOIN repositories r ON r.id = b.repo_id
		WHERE r.name = $1 AND b.digest = $2`, repo, string(d)).Scan(&size)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: blob %s in %s: %w", d, repo, err)
	}
	return size, nil
}

// BlobRepositories implements storage.Metadata.
func (s *Store) BlobRepositories(ctx context.Context, d digest.Digest) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.name FROM blobs b JOIN repositories r ON r.id = b.repo_id
		WHERE b.digest = $1 ORDER BY r.name`, string(d))
	if err != nil {
		return nil, fmt.Errorf("postgres: repositories of blob %s: %w", d, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: repositories of blob %s: %w", d, err)
	}
	return out, nil
}

// UnlinkBlob implements storage.Metadata.
func (s *Store) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM blobs b USING repositories r
		WHERE r.id = b.repo_id AND r.name = $1 AND b.digest = $2`, repo, string(d))
	if err != nil {
		return fmt.Errorf("postgres: unlink blob %s in %s: %w", d, repo, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
	}
	return nil
}

func digestStrings(ds []digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d)
	}
	return out
}

// missing returns the first of want not in column col (blobs.digest or
// manifests.digest) of the repository, or "".
func missing(ctx context.Context, tx pgx.Tx, table string, repoID int64, want []string) (string, error) {
	if len(want) == 0 {
		return "", nil
	}
	var d *string
	// table is one of two constants, never input.
	err := tx.QueryRow(ctx, `SELECT w FROM unnest($2::text[]) w
		WHERE NOT EXISTS (SELECT 1 FROM `+table+` t WHERE t.repo_id = $1 AND t.digest = w) LIMIT 1`, repoID, want).Scan(&d)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("postgres: check references: %w", err)
	}
	return *d, nil
}

// PutManifest implements storage.Metadata.
func (s *Store) PutManifest(ctx context.Context, repo string, m *storage.ManifestRecord, tags []string, optional map[digest.Digest]bool) error {
	origin := storage.OriginFrom(ctx)
	var required []string
	for _, d := range m.Blobs {
		if !optional[d] {
			required = append(required, string(d))
		}
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		if d, err := missing(ctx, tx, "blobs", id, required); err != nil || d != "" {
			if err == nil {
				err = fmt.Errorf("%w: blob %s", storage.ErrManifestBlobUnknown, d)
			}
			return err
		}
		if d, err := missing(ctx, tx, "manifests", id, digestStrings(m.Manifests)); err != nil || d != "" {
			if err == nil {
				err = fmt.Errorf("%w: manifest %s", storage.ErrManifestBlobUnknown, d)
			}
			return err
		}
		var subject *string
		if m.Subject != "" {
			subject = new(string(m.Subject))
		}
		var inserted bool
		err = tx.QueryRow(ctx, `INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, blobs, children, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (repo_id, digest) DO UPDATE SET media_type = excluded.media_type, artifact_type = excluded.artifact_type,
				subject = excluded.subject, annotations = excluded.annotations, blobs = excluded.blobs,
				children = excluded.children, body = excluded.body, put_at = now()
			RETURNING xmax = 0`,
			id, string(m.Digest), m.MediaType, m.ArtifactType, subject, m.Annotations, digestStrings(m.Blobs), digestStrings(m.Manifests), m.Body).Scan(&inserted)
		if err != nil {
			return fmt.Errorf("postgres: store manifest %s: %w", m.Digest, err)
		}
		for _, t := range tags {
			var prev *string
			err := tx.QueryRow(ctx, "SELECT digest FROM tags WHERE repo_id = $1 AND name = $2", id, t).Scan(&prev)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: tag %s: %w", t, err)
			}
			if prev != nil && *prev == string(m.Digest) {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tags (repo_id, name, digest) VALUES ($1, $2, $3)
				ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest`, id, t, string(m.Digest)); err != nil {
				return fmt.Errorf("postgres: store tag %s: %w", t, err)
			}
			c := storage.Change{Tag: t, Digest: m.Digest, Op: "put", Origin: origin}
			if prev != nil {
				c.Prev = digest.Digest(*prev)
			}
			if err := recordChange(ctx, tx, id, c); err != nil {
				return err
			}
		}
		if m.Subject != "" && inserted {
			return recordChange(ctx, tx, id, storage.Change{Digest: m.Digest, Op: "refer", Origin: origin})
		}
		return nil
	})
}

// recordChange appends c to the feed of the repository whose row the
// transaction holds locked.
func recordChange(ctx context.Context, tx pgx.Tx, repoID int64, c storage.Change) error {
	_, err := tx.Exec(ctx, `WITH s AS (UPDATE repositories SET change_seq = change_seq + 1 WHERE id = $1 RETURNING change_seq)
		INSERT INTO changes (repo_id, seq, op, tag, digest, prev, origin, at)
		SELECT $1, change_seq, $2, $3, $4, $5, $6, $7 FROM s`,
		repoID, c.Op, c.Tag, string(c.Digest), string(c.Prev), c.Origin, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("postgres: change feed: %w", err)
	}
	return nil
}

// GetManifest implements storage.Metadata.
func (s *Store) GetManifest(ctx context.Context, repo, ref string) (*storage.ManifestRecord, error) {
	q := `SELECT m.digest, m.media_type, m.artifact_type, coalesce(m.subject, ''), m.annotations, m.blobs, m.children, m.body
		FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = $1 AND m.digest = $2`
	if !oci.IsDigest(ref) {
		q = `SELECT m.digest, m.media_type, m.artifact_type, coalesce(m.subject, ''), m.annotations, m.blobs, m.children, m.body
			FROM tags t JOIN repositories r ON r.id = t.repo_id JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
			WHERE r.name = $1 AND t.name = $2`
	}
	m, err := scanManifest(s.pool.QueryRow(ctx, q, repo, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: manifest %s:%s: %w", repo, ref, err)
	}
	return m, nil
}

func scanManifest(row pgx.Row) (*storage.ManifestRecord, error) {
	var (
		m               storage.ManifestRecord
		dg, subject     string
		blobs, children []string
		annotations     map[string]string
	)
	if err := row.Scan(&dg, &m.MediaType, &m.ArtifactType, &subject, &annotations, &blobs, &children, &m.Body); err != nil {
		return nil, err
	}
	m.Digest, m.Subject, m.Annotations = digest.Digest(dg), digest.Digest(subject), annotations
	for _, b := range blobs {
		m.Blobs = append(m.Blobs, digest.Digest(b))
	}
	for _, c := range children {
		m.Manifests = append(m.Manifests, digest.Digest(c))
	}
	return &m, nil
}

// DeleteManifest implements storage.Metadata.
func (s *Store) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	origin := storage.OriginFrom(ctx)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		id, ok, err := findRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		if ok {
			var tag pgconn.CommandTag
			tag, err = tx.Exec(ctx, "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2", id, string(d))
			ok = err == nil && tag.RowsAffected() > 0
		}
		if err != nil {
			return fmt.Errorf("postgres: delete manifest %s: %w", d, err)
		}
		if !ok {
			return fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, d)
		}
		rows, err := tx.Query(ctx, "DELETE FROM tags WHERE repo_id = $1 AND digest = $2 RETURNING name", id, string(d))
		if err != nil {
			return fmt.Errorf("postgres: delete tags of %s: %w", d, err)
		}
		stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("postgres: delete tags of %s: %w", d, err)
		}
		for _, t := range stale {
			if err := recordChange(ctx, tx, id, storage.Change{Tag: t, Prev: d, Op: "delete", Origin: origin}); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteTag implements storage.Metadata.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		id, ok, err := findRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		var prev string
		if ok {
			err = tx.QueryRow(ctx, "DELETE FROM tags WHERE repo_id = $1 AND name = $2 RETURNING digest", id, tag).Scan(&prev)
		}
		if !ok || errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, tag)
		}
		if err != nil {
			return fmt.Errorf("postgres: delete tag %s: %w", tag, err)
		}
		return recordChange(ctx, tx, id, storage.Change{Tag: tag, Prev: digest.Digest(prev), Op: "delete", Origin: storage.OriginFrom(ctx)})
	})
}

// Changes implements storage.Metadata.
func (s *Store) Changes(ctx context.Context, repo string, since uint64, n int) ([]storage.Change, uint64, error) {
	var id, head int64
	err := s.pool.QueryRow(ctx, "SELECT id, change_seq FROM repositories WHERE name = $1", repo).Scan(&id, &head)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: change feed of %s: %w", repo, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, op, tag, digest, prev, origin, at FROM changes
		WHERE repo_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`, id, int64(since), head, n) //nolint:gosec // cursors stay far below 2^63
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: change feed of %s: %w", repo, err)
	}
	out := []storage.Change{}
	defer rows.Close()
	for rows.Next() {
		var (
			c        storage.Change
			seq      int64
			dg, prev string
		)
		if err := rows.Scan(&seq, &c.Op, &c.Tag, &dg, &prev, &c.Origin, &c.Time); err != nil {
			return nil, 0, fmt.Errorf("postgres: change feed of %s: %w", repo, err)
		}
		c.Seq, c.Digest, c.Prev, c.Time = uint64(seq), digest.Digest(dg), digest.Digest(prev), c.Time.UTC() //nolint:gosec // sequences are positive
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("postgres: change feed of %s: %w", repo, err)
	}
	return out, uint64(head), nil //nolint:gosec // sequences are positive
}

// page returns up to n names from query (which takes last and a limit)
// and whether more follow.
func (s *Store) page(ctx context.Context, query string, args []any, n int) ([]string, bool, error) {
	rows, err := s.pool.Query(ctx, query, append(args, n+1)...)
	if err != nil {
		return nil, false, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, err
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	if out == nil {
		out = []string{}
	}
	return out, false, nil
}

// Tags implements storage.Metadata.
func (s *Store) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	var id int64
	err := s.pool.QueryRow(ctx, "SELECT id FROM repositories WHERE name = $1", repo).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
	}
	if err != nil {
		return nil, false, fmt.Errorf("postgres: tags of %s: %w", repo, err)
	}
	out, more, err := s.page(ctx, "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3", []any{id, last}, n)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: tags of %s: %w", repo, err)
	}
	return out, more, nil
}

// Repositories implements storage.Metadata.
func (s *Store) Repositories(ctx context.Context, last string, n int) ([]string, bool, error) {
	out, more, err := s.page(ctx, "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2", []any{last}, n)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: repositories: %w", err)
	}
	return out, more, nil
}

// Referrers implements storage.Metadata.
func (s *Store) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.digest, m.media_type, m.artifact_type, m.annotations, octet_length(m.body)
		FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = $1 AND m.subject = $2 ORDER BY m.digest`, repo, string(d))
	if err != nil {
		return nil, fmt.Errorf("postgres: referrers of %s: %w", d, err)
	}
	defer rows.Close()
	out := []v1.Descriptor{}
	for rows.Next() {
		var (
			desc v1.Descriptor
			dg   string
		)
		if err := rows.Scan(&dg, &desc.MediaType, &desc.ArtifactType, &desc.Annotations, &desc.Size); err != nil {
			return nil, fmt.Errorf("postgres: referrers of %s: %w", d, err)
		}
		desc.Digest = digest.Digest(dg)
		out = append(out, desc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: referrers of %s: %w", d, err)
	}
	return out, nil
}
