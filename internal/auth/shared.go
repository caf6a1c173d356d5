package auth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/outpost-registry/outpost/internal/storage"
)

// sharedTimeout bounds one write or catch-up of a shared store.
const sharedTimeout = 30 * time.Second

// OpenShared opens the identity data kept in log, which the replicas of a
// root share (PostgreSQL). Reads are served from an in-memory snapshot as
// with OpenStore; the store follows the other replicas' writes as log
// signals them (within a second), and every Update first applies what
// they wrote, under the log's lock, so that decisions such as "one live
// activation" hold across replicas.
func OpenShared(ctx context.Context, log storage.RecordLog, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st := newState()
	recs, v, err := log.Since(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("load identity store: %w", err)
	}
	for _, r := range recs {
		if err := st.apply(r.Bucket, r.Key, r.Value); err != nil {
			return nil, fmt.Errorf("load identity store: %w", err)
		}
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Store{now: time.Now, log: log, version: v, stop: stop, watched: make(chan struct{})}
	s.cur.Store(st)
	go func() {
		defer close(s.watched)
		log.Watch(wctx, func() {
			if err := s.refresh(wctx); err != nil && wctx.Err() == nil {
				logger.Warn("identity store: catching up with other replicas", "err", err)
			}
		})
	}()
	return s, nil
}

// refresh applies what other replicas wrote since the snapshot.
func (s *Store) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	recs, v, err := s.log.Since(ctx, s.version)
	if err != nil || len(recs) == 0 {
		return err
	}
	st, err := s.caughtUp(recs)
	if err != nil {
		return err
	}
	s.cur.Store(st)
	s.version = v
	return nil
}

// caughtUp is the snapshot with recs applied. The caller holds wmu.
func (s *Store) caughtUp(recs []storage.Record) (*state, error) {
	st := s.snap().clone()
	for _, r := range recs {
		if err := st.apply(r.Bucket, r.Key, r.Value); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// updateShared is Update on a shared store. The caller holds wmu.
func (s *Store) updateShared(fn func(tx *Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	var (
		caught  *state
		caughtV int64
		tx      *Tx
		fnErr   error
	)
	v, err := s.log.Write(ctx, s.version, func(changed []storage.Record) ([]storage.Record, error) {
		caught, caughtV = s.snap(), s.version
		if len(changed) > 0 {
			st, err := s.caughtUp(changed)
			if err != nil {
				return nil, err
			}
			caught, caughtV = st, changed[len(changed)-1].Version
		}
		tx = &Tx{st: caught.clone(), now: s.now().UTC(), dirty: map[[2]string]bool{}}
		if fnErr = fn(tx); fnErr != nil {
			return nil, fnErr
		}
		out := make([]storage.Record, 0, len(tx.dirty))
		for k := range tx.dirty {
			raw, err := tx.st.raw(k[0], k[1])
			if err != nil {
				return nil, err
			}
			out = append(out, storage.Record{Bucket: k[0], Key: k[1], Value: raw})
		}
		return out, nil
	})
	if err != nil {
		// What other replicas wrote is committed: keep it.
		if caught != nil && caughtV > s.version {
			s.cur.Store(caught)
			s.version = caughtV
		}
		if fnErr != nil {
			return fnErr
		}
		return fmt.Errorf("write identity store: %w", err)
	}
	s.cur.Store(tx.st)
	s.version = v
	return nil
}

// CopyRecords copies the identity data of from (an embedded store) into a
// shared record log, for `outpost storage migrate`: every record the log
// lacks is written, with signingKey (the PEM of the embedded store's token
// signing key file, when there is one) as the shared key; a record the log
// already holds is kept, so that a migration run again, or into a root
// already in use, never undoes a later change. It returns how many records
// were copied and kept.
func CopyRecords(ctx context.Context, from *Store, to storage.RecordLog, signingKey []byte) (copied, kept int, err error) {
	st := from.snap()
	var all []storage.Record
	add := func(bucket, key string) error {
		raw, err := st.raw(bucket, key)
		if err == nil && raw != nil {
			all = append(all, storage.Record{Bucket: bucket, Key: key, Value: raw})
		}
		return err
	}
	for name, m := range st.scopeMaps {
		if !m.BuiltIn {
			if err := add(bucketScopeMaps, name); err != nil {
				return 0, 0, err
			}
		}
	}
	for name := range st.tokens {
		if err := add(bucketTokens, name); err != nil {
			return 0, 0, err
		}
	}
	if err := add(bucketSettings, keyAdminHash); err != nil {
		return 0, 0, err
	}
	if len(signingKey) > 0 {
		all = append(all, storage.Record{Bucket: bucketSettings, Key: keySigningKey, Value: signingKey})
	}
	for bucket, m := range st.records {
		for key, raw := range m {
			all = append(all, storage.Record{Bucket: bucket, Key: key, Value: raw})
		}
	}
	_, err = to.Write(ctx, 0, func(changed []storage.Record) ([]storage.Record, error) {
		held := map[[2]string]bool{}
		for _, r := range changed {
			held[[2]string{r.Bucket, r.Key}] = true // a deletion too is a later change
		}
		var out []storage.Record
		for _, r := range all {
			if held[[2]string{r.Bucket, r.Key}] {
				kept++
				continue
			}
			out = append(out, r)
		}
		copied = len(out)
		return out, nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("copy identity records: %w", err)
	}
	return copied, kept, nil
}
