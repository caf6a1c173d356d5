package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-registry/outpost/internal/storage"
)

// recordsLock, with the schema's hash, is the advisory lock key that orders writes to
// identity_records across replicas ("recd" as a number).
const recordsLock = 0x72656364

// recordsChannel is the NOTIFY channel a write to identity_records
// signals, with the version it reached as payload.
const recordsChannel = "outpost_records"

// recordsPoll is how often Watch looks for changes when no notification
// came (a lost connection, a notification dropped by a restart).
const recordsPoll = 5 * time.Second

// Records is the store's storage.RecordLog: the identity and fleet data
// every replica of a root shares (migrations/0002_identity.sql).
func (s *Store) Records() storage.RecordLog { return records{s} }

type records struct{ s *Store }

var _ storage.RecordLog = records{}

// Since implements storage.RecordLog.
func (r records) Since(ctx context.Context, since int64) ([]storage.Record, int64, error) {
	return recordsSince(ctx, r.s.pool, since)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// recordsSince reads the rows written after since, in version order;
// deletions come too (a deletion applied to a state without the key is
// harmless, and the rows of deleted keys are few).
func recordsSince(ctx context.Context, q querier, since int64) ([]storage.Record, int64, error) {
	rows, err := q.Query(ctx, `SELECT bucket, key, value, version FROM identity_records WHERE version > $1 ORDER BY version`, since)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: read records: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Record, error) {
		var rec storage.Record
		err := row.Scan(&rec.Bucket, &rec.Key, &rec.Value, &rec.Version)
		return rec, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: read records: %w", err)
	}
	v := since
	if len(out) > 0 {
		v = out[len(out)-1].Version
	}
	return out, v, nil
}

// Write implements storage.RecordLog: one transaction that takes the
// advisory lock, reads what was written after since, and writes fn's
// records, each with a new version, then notifies the other replicas.
func (r records) Write(ctx context.Context, since int64, fn func(changed []storage.Record) ([]storage.Record, error)) (int64, error) {
	var v int64
	err := r.s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", int32(recordsLock)); err != nil {
			return fmt.Errorf("postgres: lock records: %w", err)
		}
		changed, cv, err := recordsSince(ctx, tx, since)
		if err != nil {
			return err
		}
		out, err := fn(changed)
		if err != nil {
			return err
		}
		v = cv
		for _, rec := range out {
			if err := tx.QueryRow(ctx, `INSERT INTO identity_records (bucket, key, value, version)
				VALUES ($1, $2, $3, nextval('identity_version'))
				ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, version = excluded.version
				RETURNING version`, rec.Bucket, rec.Key, rec.Value).Scan(&v); err != nil {
				return fmt.Errorf("postgres: write record %s %q: %w", rec.Bucket, rec.Key, err)
			}
		}
		if len(out) > 0 {
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", recordsChannel, strconv.FormatInt(v, 10)); err != nil {
				return fmt.Errorf("postgres: notify: %w", err)
			}
		}
		return nil
	})
	return v, err
}

// Watch implements storage.RecordLog: it LISTENs on one connection of
// its own, calling fn on each notification and every recordsPoll, and
// reconnects after an error.
func (r records) Watch(ctx context.Context, fn func()) {
	for ctx.Err() == nil {
		err := r.listen(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		_ = err // the poll below keeps the store current while the connection is down
		fn()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r records) listen(ctx context.Context, fn func()) error {
	pooled, err := r.s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool: it is LISTENing.
	conn := pooled.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+recordsChannel); err != nil {
		return err
	}
	fn() // what was written before LISTEN took effect
	for {
		wctx, cancel := context.WithTimeout(ctx, recordsPoll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		fn()
	}
}
