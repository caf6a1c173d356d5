package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// A cached record is served only while the repository still holds the
// manifest, and by tag only while the tag points at it.
func TestRecordCacheFollowsTheDatabase(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	put := func(repo, tag, body string) digest.Digest {
		t.Helper()
		m := &storage.ManifestRecord{Digest: digest.FromString(body), MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte(body)}
		if err := s.PutManifest(ctx, repo, m, []string{tag}, nil); err != nil {
			t.Fatal(err)
		}
		return m.Digest
	}
	d1 := put("a", "v1", `{"n":1}`)
	put("b", "v1", `{"n":1}`)
	for range 2 { // the second read comes from the cache
		m, err := s.GetManifest(ctx, "a", "v1")
		if err != nil || m.Digest != d1 || string(m.Body) != `{"n":1}` {
			t.Fatalf("GetManifest a:v1 = %v, %v", m, err)
		}
	}
	if err := s.DeleteManifest(ctx, "a", d1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetManifest(ctx, "a", string(d1)); !errors.Is(err, storage.ErrManifestUnknown) {
		t.Fatalf("deleted manifest from a: %v", err)
	}
	if m, err := s.GetManifest(ctx, "b", "v1"); err != nil || m.Digest != d1 {
		t.Fatalf("b still holds it: %v, %v", m, err)
	}
	d2 := put("b", "v1", `{"n":2}`)
	if m, err := s.GetManifest(ctx, "b", "v1"); err != nil || m.Digest != d2 {
		t.Fatalf("moved tag b:v1 = %v, %v; want %s", m, err, d2)
	}
	// Changing the returned copy does not change the cache.
	m, _ := s.GetManifest(ctx, "b", "v1")
	m.MediaType = "changed"
	if m, _ := s.GetManifest(ctx, "b", "v1"); m.MediaType == "changed" {
		t.Fatal("the cache handed out its own record")
	}
}

func TestRecordCacheBound(t *testing.T) {
	c := newRecordCache(64 << 10)
	for i := range 1000 {
		body := fmt.Appendf(nil, `{"i":%d}`, i)
		c.put(&storage.ManifestRecord{Digest: digest.FromBytes(body), Body: body}, nil)
	}
	if c.size > c.max || len(c.byKey) != len(c.order) || len(c.byKey) == 0 {
		t.Fatalf("size %d of max %d, %d entries, %d in order", c.size, c.max, len(c.byKey), len(c.order))
	}
	last := fmt.Appendf(nil, `{"i":%d}`, 999)
	if _, ok := c.get(digest.FromBytes(last), nil); !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, ok := c.get(digest.FromBytes([]byte(`{"i":0}`)), nil); ok {
		t.Fatal("the oldest entry survived beyond the bound")
	}
	big := &storage.ManifestRecord{Digest: "sha256:big", Body: make([]byte, 32<<10)}
	c.put(big, nil)
	if _, ok := c.get(big.Digest, nil); ok {
		t.Fatal("an entry larger than an eighth of the bound was cached")
	}
}
