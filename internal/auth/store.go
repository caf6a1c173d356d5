package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-registry/outpost/internal/identity"
)

var (
	bucketScopeMaps = "scopemaps"
	bucketTokens    = "tokens"
	bucketSettings  = "settings"
	keyAdminHash    = "admin-password-hash"
)

// state is an immutable snapshot of the identity data. Updates copy the
// maps, never the values they point to, and never mutate a value in place.
type state struct {
	scopeMaps map[string]*ScopeMap
	tokens    map[string]*Token
	adminHash string
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
	return &state{scopeMaps: maps.Clone(s.scopeMaps), tokens: maps.Clone(s.tokens), adminHash: s.adminHash, records: recs}
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
}

// OpenStore opens or creates the identity database at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open identity store %s: %w", path, err)
	}
	st := &state{scopeMaps: map[string]*ScopeMap{}, tokens: map[string]*Token{}, records: map[string]map[string][]byte{}}
	for _, m := range BuiltInScopeMaps() {
		st.scopeMaps[m.Name] = m
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range ownBuckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if slices.Contains(ownBuckets, string(name)) {
				return nil
			}
			recs := map[string][]byte{}
			st.records[string(name)] = recs
			return b.ForEach(func(k, v []byte) error {
				recs[string(k)] = bytes.Clone(v)
				return nil
			})
		}); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketScopeMaps)).ForEach(func(k, v []byte) error {
			m := &ScopeMap{}
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("decode scope map %s: %w", k, err)
			}
			st.scopeMaps[m.Name] = m
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketTokens)).ForEach(func(k, v []byte) error {
			t := &Token{}
			if err := json.Unmarshal(v, t); err != nil {
				return fmt.Errorf("decode token %s: %w", k, err)
			}
			st.tokens[t.Name] = t
			return nil
		}); err != nil {
			return err
		}
		st.adminHash = string(tx.Bucket([]byte(bucketSettings)).Get([]byte(keyAdminHash)))
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("load identity store: %w", err)
	}
	s := &Store{db: db, now: time.Now}
	s.cur.Store(st)
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

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
// changes; otherwise every change is written in one bbolt transaction and
// then published to readers.
func (s *Store) Update(fn func(tx *Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
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
			var v any
			switch k[0] {
			case bucketScopeMaps:
				if m, ok := tx.st.scopeMaps[k[1]]; ok {
					v = m
				}
			case bucketTokens:
				if t, ok := tx.st.tokens[k[1]]; ok {
					v = t
				}
			case bucketSettings:
				if err := b.Put([]byte(k[1]), []byte(tx.st.adminHash)); err != nil {
					return err
				}
				continue
			default:
				raw, ok := tx.st.records[k[0]][k[1]]
				if !ok {
					if err := b.Delete([]byte(k[1])); err != nil {
						return err
					}
				} else if err := b.Put([]byte(k[1]), raw); err != nil {
					return err
				}
				continue
			}
			if v == nil {
				if err := b.Delete([]byte(k[1])); err != nil {
					return err
				}
				continue
			}
			data, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k[1]), data); err != nil {
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
