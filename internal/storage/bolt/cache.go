package bolt

import (
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// recordCache keeps decoded manifest records by digest, so that manifest
// HEAD and GET skip the JSON decode and the body copy. A record depends only
// on the manifest's bytes, which its digest fixes, so entries never go stale;
// whether a repository holds the manifest is still read from the database on
// every lookup. The cache is bounded in bytes and evicts the oldest entry.
type recordCache struct {
	mu    sync.Mutex
	max   int
	size  int
	byKey map[digest.Digest]*storage.ManifestRecord
	order []digest.Digest
}

// recordCacheBytes bounds the manifest bytes the cache holds.
const recordCacheBytes = 8 << 20

func newRecordCache(maxBytes int) *recordCache {
	return &recordCache{max: maxBytes, byKey: map[digest.Digest]*storage.ManifestRecord{}}
}

// get returns a copy of the cached record; callers may change its fields
// but never the bytes of its Body or the elements of its slices.
func (c *recordCache) get(d digest.Digest) (*storage.ManifestRecord, bool) {
	c.mu.Lock()
	m, ok := c.byKey[d]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	cp := *m
	return &cp, true
}

func (c *recordCache) put(m *storage.ManifestRecord) {
	cost := len(m.Body) + 512
	if cost > c.max/8 {
		return
	}
	cp := *m
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[m.Digest]; ok {
		return
	}
	for c.size+cost > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.byKey[old]; ok {
			c.size -= len(e.Body) + 512
			delete(c.byKey, old)
		}
	}
	c.byKey[m.Digest] = &cp
	c.order = append(c.order, m.Digest)
	c.size += cost
}
