package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Dump reads everything the store holds about repo in one read
// transaction, change feed included.
func (s *Store) Dump(_ context.Context, repo string) (*storage.RepositoryDump, error) {
	d := &storage.RepositoryDump{Blobs: map[digest.Digest]int64{}, Tags: map[string]digest.Digest{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
		}
		err := rb.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			if len(v) >= 8 {
				d.Blobs[digest.Digest(k)] = int64(binary.BigEndian.Uint64(v[:8])) //nolint:gosec // sizes are written from int64
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = rb.Bucket(bucketManifests).ForEach(func(_, v []byte) error {
			m, err := decodeRecord(v)
			if err == nil {
				d.Manifests = append(d.Manifests, m)
			}
			return err
		})
		if err != nil {
			return err
		}
		if err := rb.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			d.Tags[string(k)] = digest.Digest(v)
			return nil
		}); err != nil {
			return err
		}
		b := rb.Bucket(bucketChanges)
		if b == nil {
			return nil
		}
		d.Head = b.Sequence()
		return b.ForEach(func(_, v []byte) error {
			var c storage.Change
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode change: %w", err)
			}
			d.Changes = append(d.Changes, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", repo, err)
	}
	return d, nil
}
