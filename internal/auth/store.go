package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-registry/outpost/internal/identity"
	"github.com/outpost-registry/outpost/internal/storage"
)

var (
	bucketScopeMaps = "scopemaps"
	bucketTokens    = "tokens"
	bucketSettings  = "settings"
	keyAdminHash    = "admin-password-hash"
	// keySigningKey holds the registry token signing key of a shared
	// store (a single process keeps it in a file of its data directory).
	keySigningKey = "token-signing-key"
)

// state is an immutable snapshot of the identity data. Updates copy the
// maps, never the values they point to, and never mutate a value in place.
type state struct {
	scopeMaps map[string]*ScopeMap
	tokens    map[string]*Token
	adminHash string
	// signingKey is the PEM of the token signing key in a shared store.
	signingKey string
	// records holds other packages' resources (such as connected
	// registries) as JSON, by bucket and key, so that they change in the
	// same transactions as the tokens and scope maps they own.
	records map[string]map[string][]byte
}

func (s *state) clone() *state {
	recs := make(map[string]map[string][]byte, len(s.records))
	for b, m := range s.records {
		recs[b] = maps.Clone(m)
	}
	return &state{scopeMaps: maps.Clone(s.scopeMaps), tokens: maps.Clone(s.tokens), adminHash: s.adminHash, signingKey: s.signingKey, records: recs}
}

// ownBuckets are the buckets of the identity data itself; every other
// bucket of the database holds records of another package, which names it
// (auth knows none of those names).
var ownBuckets = []string{bucketScopeMaps, bucketTokens, bucketSettings}

// Store keeps scope maps, tokens and the admin credential in an embedded
// bbolt database, with an in-memory snapshot that serves every read
// without I/O. Writes go through Update, one transaction at a time.
type Store struct {
	db  *bolt.DB
	cur atomic.Pointer[state]
	wmu sync.Mutex
	now func() time.Time

	// A shared store (OpenShared) keeps its data in log instead of db;
	// version is the log's version that cur holds (guarded by wmu).
	log     storage.RecordLog
	version int64
	stop    context.CancelFunc
	watched chan struct{}
}

// newState is the identity data before anything is stored: the built-in
// scope maps.
func newState() *state {
	st := &state{scopeMaps: map[string]*ScopeMap{}, tokens: map[string]*Token{}, records: map[string]map[string][]byte{}}
	for _, m := range BuiltInScopeMaps() {
		st.scopeMaps[m.Name] = m
	}
	return st
}

// apply sets the stored value of bucket and key in st; a nil raw deletes
// it. st must not be published yet.
func (st *state) apply(bucket, key string, raw []byte) error {
	switch bucket {
	case bucketScopeMaps:
		if raw == nil {
			delete(st.scopeMaps, key)
			return nil
		}
		m := &ScopeMap{}
		if err := json.Unmarshal(raw, m); err != nil {
			return fmt.Errorf("decode scope map %s: %w", key, err)
		}
		st.scopeMaps[m.Name] = m
	case bucketTokens:
		if raw == nil {
			delete(st.tokens, key)
			return nil
		}
		t := &Token{}
		if err := json.Unmarshal(raw, t); err != nil {
			return fmt.Errorf("decode token %s: %w", key, err)
		}
		st.tokens[t.Name] = t
	case bucketSettings:
		switch key {
		case keyAdminHash:
			st.adminHash = string(raw)
		case keySigningKey:
			st.signingKey = string(raw)
		}
	default:
		if raw == nil {
			delete(st.records[bucket], key)
			return nil
		}
		if st.records[bucket] == nil {
			st.records[bucket] = map[string][]byte{}
		}
		st.records[bucket][key] = bytes.Clone(raw)
	}
	return nil
}

// raw is the stored form of bucket and key in st, nil when it is absent.
func (st *state) raw(bucket, key string) ([]byte, error) {
	var v any
	switch bucket {
	case bucketScopeMaps:
		if m, ok := st.scopeMaps[key]; ok {
			v = m
		}
	case bucketTokens:
		if t, ok := st.tokens[key]; ok {
			v = t
		}
	case bucketSettings:
		v := st.adminHash
		if key == keySigningKey {
			v = st.signingKey
		}
		if v == "" {
			return nil, nil
		}
		return []byte(v), nil
	default:
		return st.records[bucket][key], nil
	}
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// OpenStore opens or creates the identity database at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open identity store %s: %w", path, err)
	}
	st := newState()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range ownBuckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if string(name) == bucketSettings && string(k) == keyAdminHash && len(v) == 0 {
					return nil
				}
				return st.apply(string(name), string(k), v)
			})
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("load identity store: %w", err)
	}
	s := &Store{db: db, now: time.Now}
	s.cur.Store(st)
	return s, nil
}

// Close closes the database, or stops following a shared log.
func (s *Store) Close() error {
	if s.log != nil {
		s.stop()
		<-s.watched
		return nil
	}
	return s.db.Close()
}

func (s *Store) snap() *state { return s.cur.Load() }

// ScopeMap returns a scope map by name.
func (s *Store) ScopeMap(name string) (*ScopeMap, error) {
	m, ok := s.snap().scopeMaps[name]
	if !ok {
		return nil, fmt.Errorf("%w: scope map %q", ErrNotFound, name)
	}
	return m, nil
}

// ScopeMaps lists every scope map by name.
func (s *Store) ScopeMaps() []*ScopeMap {
	st := s.snap()
	out := slices.Collect(maps.Values(st.scopeMaps))
	slices.SortFunc(out, func(a, b *ScopeMap) int { return compareStrings(a.Name, b.Name) })
	return out
}

// Token returns a token by name.
func (s *Store) Token(name string) (*Token, error) {
	t, ok := s.snap().tokens[name]
	if !ok {
		return nil, fmt.Errorf("%w: token %q", ErrNotFound, name)
	}
	return t, nil
}

// Tokens lists every token by name.
func (s *Store) Tokens() []*Token {
	st := s.snap()
	out := slices.Collect(maps.Values(st.tokens))
	slices.SortFunc(out, func(a, b *Token) int { return compareStrings(a.Name, b.Name) })
	return out
}

// Record decodes the record key of bucket into out.
func (s *Store) Record(bucket, key string, out any) error {
	return getRecord(s.snap(), bucket, key, out)
}

// Records decodes every record of bucket, by key, calling fn for each in
// key order.
func (s *Store) Records(bucket string, fn func(key string, raw []byte) error) error {
	return eachRecord(s.snap(), bucket, fn)
}

func getRecord(st *state, bucket, key string, out any) error {
	raw, ok := st.records[bucket][key]
	if !ok {
		return fmt.Errorf("%w: %s %q", ErrNotFound, bucket, key)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s %q: %w", bucket, key, err)
	}
	return nil
}

func eachRecord(st *state, bucket string, fn func(key string, raw []byte) error) error {
	keys := slices.Sorted(maps.Keys(st.records[bucket]))
	for _, k := range keys {
		if err := fn(k, st.records[bucket][k]); err != nil {
			return err
		}
	}
	return nil
}

// AdminHash returns the admin password hash, empty before bootstrap.
func (s *Store) AdminHash() string { return s.snap().adminHash }

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Tx is a write transaction over the identity data: every change made
// through it becomes visible, and durable, together or not at all.
type Tx struct {
	st    *state
	now   time.Time
	dirty map[[2]string]bool
}

// Now is the transaction's timestamp.
func (tx *Tx) Now() time.Time { return tx.now }

// ScopeMap returns a scope map by name.
func (tx *Tx) ScopeMap(name string) (*ScopeMap, error) {
	m, ok := tx.st.scopeMaps[name]
	if !ok {
		return nil, fmt.Errorf("%w: scope map %q", ErrNotFound, name)
	}
	return m, nil
}

// Token returns a token by name.
func (tx *Tx) Token(name string) (*Token, error) {
	t, ok := tx.st.tokens[name]
	if !ok {
		return nil, fmt.Errorf("%w: token %q", ErrNotFound, name)
	}
	return t, nil
}

// Tokens lists the tokens.
func (tx *Tx) Tokens() []*Token { return slices.Collect(maps.Values(tx.st.tokens)) }

// PutScopeMap creates or replaces a scope map after validating it.
// Built-in scope maps cannot be replaced.
func (tx *Tx) PutScopeMap(m *ScopeMap) error {
	if old, ok := tx.st.scopeMaps[m.Name]; ok && old.BuiltIn {
		return fmt.Errorf("%w: scope map %q is built in", ErrReadOnly, m.Name)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	m.BuiltIn = false
	m.Modified = tx.now
	if m.Created.IsZero() {
		m.Created = tx.now
	}
	tx.st.scopeMaps[m.Name] = m
	tx.dirty[[2]string{bucketScopeMaps, m.Name}] = true
	return nil
}

// DeleteScopeMap removes a scope map that no token uses.
func (tx *Tx) DeleteScopeMap(name string) error {
	m, err := tx.ScopeMap(name)
	if err != nil {
		return err
	}
	if m.BuiltIn {
		return fmt.Errorf("%w: scope map %q is built in", ErrReadOnly, name)
	}
	for _, t := range tx.st.tokens {
		if t.ScopeMap == name {
			return fmt.Errorf("%w: scope map %q is used by token %q", ErrInUse, name, t.Name)
		}
	}
	delete(tx.st.scopeMaps, name)
	tx.dirty[[2]string{bucketScopeMaps, name}] = true
	return nil
}

// PutToken creates or replaces a token; its scope map must exist.
func (tx *Tx) PutToken(t *Token) error {
	if err := identity.ValidateResourceName(t.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if _, err := tx.ScopeMap(t.ScopeMap); err != nil {
		return fmt.Errorf("scope map: %w", err)
	}
	if t.Status != StatusEnabled && t.Status != StatusDisabled {
		return fmt.Errorf("%w: status %q", ErrInvalid, t.Status)
	}
	if t.Created.IsZero() {
		t.Created = tx.now
	}
	tx.st.tokens[t.Name] = t
	tx.dirty[[2]string{bucketTokens, t.Name}] = true
	return nil
}

// DeleteToken removes a token.
func (tx *Tx) DeleteToken(name string) error {
	if _, err := tx.Token(name); err != nil {
		return err
	}
	delete(tx.st.tokens, name)
	tx.dirty[[2]string{bucketTokens, name}] = true
	return nil
}

// Record decodes a record into out, or returns ErrNotFound.
func (tx *Tx) Record(bucket, key string, out any) error { return getRecord(tx.st, bucket, key, out) }

// Records calls fn for each record of bucket in key order.
func (tx *Tx) Records(bucket string, fn func(key string, raw []byte) error) error {
	return eachRecord(tx.st, bucket, fn)
}

// PutRecord stores v as JSON under bucket and key. The bucket belongs to
// the caller's package and is created on first use; the identity data's own
// buckets are refused.
func (tx *Tx) PutRecord(bucket, key string, v any) error {
	if bucket == "" || slices.Contains(ownBuckets, bucket) {
		return fmt.Errorf("%w: record bucket %q", ErrInvalid, bucket)
	}
	m, ok := tx.st.records[bucket]
	if !ok {
		m = map[string][]byte{}
		tx.st.records[bucket] = m
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", bucket, key, err)
	}
	m[key] = raw
	tx.dirty[[2]string{bucket, key}] = true
	return nil
}

// DeleteRecord removes a record.
func (tx *Tx) DeleteRecord(bucket, key string) error {
	m := tx.st.records[bucket]
	if _, ok := m[key]; !ok {
		return fmt.Errorf("%w: %s %q", ErrNotFound, bucket, key)
	}
	delete(m, key)
	tx.dirty[[2]string{bucket, key}] = true
	return nil
}

// SetAdminHash replaces the admin password hash.
func (tx *Tx) SetAdminHash(h string) {
	tx.st.adminHash = h
	tx.dirty[[2]string{bucketSettings, keyAdminHash}] = true
}

// Update runs fn in a write transaction. If fn returns an error nothing
// changes; otherwise every change is written in one transaction of the
// database and then published to readers. On a shared store (OpenShared)
// fn runs under the log's lock across replicas, on the state that every
// replica's earlier writes made.
func (s *Store) Update(fn func(tx *Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.log != nil {
		return s.updateShared(fn)
	}
	tx := &Tx{st: s.snap().clone(), now: s.now().UTC(), dirty: map[[2]string]bool{}}
	if err := fn(tx); err != nil {
		return err
	}
	err := s.db.Update(func(btx *bolt.Tx) error {
		for k := range tx.dirty {
			b, err := btx.CreateBucketIfNotExists([]byte(k[0]))
			if err != nil {
				return err
			}
			raw, err := tx.st.raw(k[0], k[1])
			if err != nil {
				return err
			}
			if raw == nil {
				err = b.Delete([]byte(k[1]))
			} else {
				err = b.Put([]byte(k[1]), raw)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write identity store: %w", err)
	}
	s.cur.Store(tx.st)
	return nil
}
