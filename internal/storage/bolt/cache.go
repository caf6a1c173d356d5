package bolt

import (
	"bytes"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// recordCache keeps decoded manifest records by digest, so that manifest
// HEAD and GET skip the JSON decode and the body copy. The digest fixes the
// body but not the whole record: a body without a mediaType field takes its
// type from the Content-Type it was pushed with, so one digest can be stored
// as different records, in two repositories or in one after a delete and a
// new push. An entry therefore keeps the stored JSON it was decoded from and
// serves only lookups of that same JSON. Whether a repository holds the
// manifest is still read from the database on every lookup. The cache is
// bounded in bytes and evicts the oldest entry.
type recordCache struct {
	mu    sync.Mutex
	max   int
	size  int
	byKey map[digest.Digest]cacheEntry
	order []digest.Digest
}

// cacheEntry is a decoded record and the stored JSON it came from.
type cacheEntry struct {
	rec  *storage.ManifestRecord
	meta []byte
}

func (e cacheEntry) cost() int { return len(e.rec.Body) + len(e.meta) + 512 }

// recordCacheBytes bounds the manifest bytes the cache holds.
const recordCacheBytes = 8 << 20

func newRecordCache(maxBytes int) *recordCache {
	return &recordCache{max: maxBytes, byKey: map[digest.Digest]cacheEntry{}}
}

// get returns a copy of the record cached for d if it was decoded from the
// stored JSON meta; callers may change its fields but never the bytes of
// its Body or the elements of its slices.
func (c *recordCache) get(d digest.Digest, meta []byte) (*storage.ManifestRecord, bool) {
	c.mu.Lock()
	e, ok := c.byKey[d]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.meta, meta) {
		return nil, false
	}
	cp := *e.rec
	return &cp, true
}

// put caches m, decoded from meta (which the cache keeps: it must not be
// memory bbolt owns), replacing another record of the same digest.
func (c *recordCache) put(m *storage.ManifestRecord, meta []byte) {
	cp := *m
	e := cacheEntry{rec: &cp, meta: meta}
	cost := e.cost()
	if cost > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byKey[m.Digest]; ok {
		if bytes.Equal(old.meta, meta) {
			return
		}
		c.size -= old.cost()
		delete(c.byKey, m.Digest)
		c.order = slices.DeleteFunc(c.order, func(k digest.Digest) bool { return k == m.Digest })
	}
	for c.size+cost > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.byKey[old]; ok {
			c.size -= e.cost()
			delete(c.byKey, old)
		}
	}
	c.byKey[m.Digest] = e
	c.order = append(c.order, m.Digest)
	c.size += cost
}
