package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/migrate"
	"github.com/outpost-registry/outpost/internal/storage/postgres"
	"github.com/outpost-registry/outpost/internal/storage/s3"
)

// redirectTTL is how long a presigned blob URL (storage.redirect) stays
// valid: long enough for a slow pull to start, short enough that a
// leaked URL soon stops working.
const redirectTTL = 20 * time.Minute

// engines are the stores the configuration selects. The embedded ones
// (local, embedded) also do what only they can: garbage collection,
// scrubs, free-space reporting and the purge of upload sessions.
type engines struct {
	blobs    storage.BlobStore
	uploads  storage.Uploads
	meta     storage.Metadata
	local    *fs.Store   // set when blobs is the data directory
	embedded *bolt.Store // set when meta is the embedded database
	// purger removes abandoned upload sessions (both kinds of blob
	// store can).
	purger uploadPurger
	// probes check the remote engines for /readyz.
	probes []probe
	// records is where a root on PostgreSQL keeps its identity and fleet
	// records (nil with the embedded metadata store).
	records storage.RecordLog
	// exclusive runs a periodic job on one replica at a time (nil: this
	// process is the only one).
	exclusive func(ctx context.Context, name string, fn func(context.Context)) (bool, error)
}

// runJob runs the periodic job name now, unless another replica of a
// shared root is running it; it reports whether it ran.
func (e *engines) runJob(ctx context.Context, name string, fn func(context.Context)) (bool, error) {
	if e.exclusive == nil {
		fn(ctx)
		return true, nil
	}
	return e.exclusive(ctx, name, fn)
}

// uploadPurger is a blob store that removes upload sessions idle since
// before cutoff and, with syncToo, the sync engine's sessions.
type uploadPurger interface {
	PurgeUploads(ctx context.Context, cutoff time.Time, syncToo bool) (sessions int, bytes int64, err error)
}

// probe names a remote engine and checks that it answers.
type probe struct {
	name  string
	check func(context.Context) error
}

// openEngines opens the blob store and the metadata store of cfg.
func openEngines(ctx context.Context, cfg config.Config, log *slog.Logger) (*engines, error) {
	e := &engines{}
	switch cfg.Storage.Blobs.Type {
	case config.BlobsS3:
		st, err := openS3(cfg)
		if err != nil {
			return nil, err
		}
		e.blobs, e.uploads, e.purger = st, st, st
		e.probes = append(e.probes, probe{"blob store (s3)", st.Check})
	default:
		st, err := fs.NewWithOptions(cfg.Data, fs.Options{Logger: log, MinFreeBytes: uint64(cfg.Storage.MinFreeBytes)}) //nolint:gosec // validated non-negative
		if err != nil {
			return nil, err
		}
		e.blobs, e.uploads, e.local, e.purger = st, st, st, st
	}
	switch cfg.Storage.Metadata.Type {
	case config.MetadataPostgres:
		dsn, err := cfg.Storage.Metadata.PostgresDSN()
		if err != nil {
			return nil, err
		}
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		e.meta, e.records, e.exclusive = st, st.Records(), st.Exclusive
		e.probes = append(e.probes, probe{"metadata store (postgres)", st.Check})
	default:
		st, err := bolt.Open(filepath.Join(cfg.Data, "metadata.db"))
		if err != nil {
			return nil, err
		}
		e.meta, e.embedded = st, st
	}
	return e, nil
}

func openS3(cfg config.Config) (*s3.Store, error) {
	b := cfg.Storage.Blobs
	access, secret, err := b.Credentials()
	if err != nil {
		return nil, err
	}
	o := s3.Options{
		Endpoint: b.Endpoint, Region: b.Region, Bucket: b.Bucket, Prefix: b.Prefix, PathStyle: b.PathStyle,
		CAFile: b.CAFile, AccessKey: access, SecretKey: secret,
	}
	if cfg.Storage.Redirect {
		o.RedirectTTL = redirectTTL
	}
	return s3.New(o)
}

// check runs every probe with a short deadline and reports the engines
// that do not answer.
func (e *engines) check(ctx context.Context) error {
	var errs []error
	for _, p := range e.probes {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := p.check(pctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}

// MigrateStorage copies every repository of the stores cfg from selects
// into those of cfg to (outpost storage migrate): from must use the
// embedded metadata store, to PostgreSQL. Neither may be served while it
// runs from an embedded store, whose lock serve holds. progress is told
// of each repository done.
func MigrateStorage(ctx context.Context, from, to config.Config, log *slog.Logger, progress func(repo string, r migrate.Report)) (migrate.Report, error) {
	src, err := openEngines(ctx, from, log)
	if err != nil {
		return migrate.Report{}, fmt.Errorf("open the source stores: %w", err)
	}
	defer src.meta.Close()
	dst, err := openEngines(ctx, to, log)
	if err != nil {
		return migrate.Report{}, fmt.Errorf("open the destination stores: %w", err)
	}
	defer dst.meta.Close()
	rep, err := migrate.Run(ctx, migrate.Stores{Blobs: src.blobs, Meta: src.meta},
		migrate.Stores{Blobs: dst.blobs, Uploads: dst.uploads, Meta: dst.meta}, progress)
	if err != nil || dst.records == nil {
		return rep, err
	}
	// The identity and fleet records go along: a root on PostgreSQL keeps
	// them there.
	rep.Records, rep.RecordsKept, err = copyIdentity(ctx, from.Data, dst.records)
	return rep, err
}

// copyIdentity copies the identity store of the data directory data, if
// it has one, and its token signing key into records.
func copyIdentity(ctx context.Context, data string, records storage.RecordLog) (copied, kept int, err error) {
	path := filepath.Join(data, "identity.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	id, err := auth.OpenStore(path)
	if err != nil {
		return 0, 0, err
	}
	defer id.Close()
	key, err := os.ReadFile(filepath.Join(data, "auth", "token-key.pem"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, fmt.Errorf("read the token signing key: %w", err)
	}
	return auth.CopyRecords(ctx, id, records, key)
}

// CheckStorage opens the stores cfg selects and checks that the remote
// ones answer (`outpost config validate`). The embedded stores are not
// opened: a running server holds their lock.
func CheckStorage(ctx context.Context, cfg config.Config) error {
	var errs []error
	if cfg.Storage.Blobs.Type == config.BlobsS3 {
		st, err := openS3(cfg)
		if err == nil {
			err = st.Check(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("storage.blobs: %w", err))
		}
	}
	if cfg.Storage.Metadata.Type == config.MetadataPostgres {
		dsn, err := cfg.Storage.Metadata.PostgresDSN()
		if err == nil {
			err = postgres.Ping(ctx, dsn)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("storage.metadata: %w", err))
		}
	}
	return errors.Join(errs...)
}
