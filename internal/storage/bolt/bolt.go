// Package bolt keeps Outpost's metadata in an embedded bbolt database: one
// file, ACID transactions, no server, and reads served from a memory map,
// which makes a manifest lookup by tag a couple of B+tree descents.
//
// Layout: a top-level bucket "repos" holds one bucket per repository, each
// with the sub-buckets
//
//	blobs      digest  -> size, link time (8 bytes each, big endian; Unix ns)
//	manifests  digest  -> record (4-byte JSON length, JSON, body)
//	puttimes   digest  -> when the manifest was last put (8 bytes, Unix ns)
//	tags       tag     -> digest
//	referrers  subject "\x00" referrer -> empty
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

var (
	bucketRepos     = []byte("repos")
	bucketBlobs     = []byte("blobs")
	bucketManifests = []byte("manifests")
	bucketTags      = []byte("tags")
	bucketReferrers = []byte("referrers")
	bucketChanges   = []byte("changes")
	// bucketBlobRepos indexes blob links the other way round:
	// digest "\x00" repository -> empty. It answers anonymous mounts and
	// tells garbage collection whether any repository holds a blob.
	bucketBlobRepos = []byte("blobrepos")
	// bucketPutTimes holds, per repository, when each manifest was last
	// put: garbage collection keeps untagged manifests younger than its
	// grace period.
	bucketPutTimes = []byte("puttimes")
)

// Store is a bbolt-backed storage.Metadata.
type Store struct {
	db      *bolt.DB
	records *recordCache
	// blobPresent, when set, is asked inside LinkBlob's write transaction
	// whether the blob is in the blob store (see SetBlobCheck).
	blobPresent func(digest.Digest) error
	// commits groups concurrent write transactions (commit.go).
	commits committer
	// onDelete, when set, is called after each committed deletion.
	onDelete func()
}

// SetOnDelete makes every committed DeleteManifest, DeleteTag and
// UnlinkBlob call fn (garbage collection's own removals do not). Call it
// before serving; fn must not block.
func (s *Store) SetOnDelete(fn func()) { s.onDelete = fn }

// deleted calls the deletion hook after a committed deletion.
func (s *Store) deleted(err error) error {
	if err == nil && s.onDelete != nil {
		s.onDelete()
	}
	return err
}

// SetBlobCheck makes LinkBlob verify, inside its write transaction, that
// the blob is in the blob store: present returns nil when it is. Garbage
// collection deletes blob files inside write transactions too
// (DeleteUnlinkedBlobs), so a link is either committed before a
// collection looks for links (which then keeps the blob) or finds the file
// gone and fails with ErrBlobUnknown. Call it before serving.
func (s *Store) SetBlobCheck(present func(digest.Digest) error) { s.blobPresent = present }

var _ storage.Metadata = (*Store)(nil)

// Open opens or creates the database file at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, InitialMmapSize: initialMmapSize})
	if err != nil {
		return nil, fmt.Errorf("open metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRepos, bucketBlobRepos} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init metadata: %w", err)
	}
	return &Store{db: db, records: newRecordCache(recordCacheBytes)}, nil
}

// Close implements storage.Metadata.
func (s *Store) Close() error { return s.db.Close() }

// repoBucket returns the bucket of repo, or nil.
func repoBucket(tx *bolt.Tx, repo string) *bolt.Bucket {
	return tx.Bucket(bucketRepos).Bucket([]byte(repo))
}

// ensureRepo returns the bucket of repo, creating it and its sub-buckets.
func ensureRepo(tx *bolt.Tx, repo string) (*bolt.Bucket, error) {
	rb, err := tx.Bucket(bucketRepos).CreateBucketIfNotExists([]byte(repo))
	if err != nil {
		return nil, fmt.Errorf("create repository %s: %w", repo, err)
	}
	for _, name := range [][]byte{bucketBlobs, bucketManifests, bucketTags, bucketReferrers, bucketChanges} {
		if _, err := rb.CreateBucketIfNotExists(name); err != nil {
			return nil, fmt.Errorf("create repository %s: %w", repo, err)
		}
	}
	return rb, nil
}

// LinkBlob implements storage.Metadata.
func (s *Store) LinkBlob(_ context.Context, repo string, d digest.Digest, size int64) error {
	return s.update(func(tx *bolt.Tx) error {
		rb, err := ensureRepo(tx, repo)
		if err != nil {
			return err
		}
		if s.blobPresent != nil {
			if err := s.blobPresent(d); err != nil {
				return fmt.Errorf("link blob %s in %s: %w", d, repo, err)
			}
		}
		var v [16]byte
		binary.BigEndian.PutUint64(v[:8], uint64(size))
		binary.BigEndian.PutUint64(v[8:], uint64(time.Now().UnixNano()))
		if err := tx.Bucket(bucketBlobRepos).Put(referrerKey(d, digest.Digest(repo)), nil); err != nil {
			return fmt.Errorf("index blob %s: %w", d, err)
		}
		return rb.Bucket(bucketBlobs).Put([]byte(d), v[:])
	})
}

// BlobSize implements storage.Metadata.
func (s *Store) BlobSize(_ context.Context, repo string, d digest.Digest) (int64, error) {
	var size int64
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
		}
		v := rb.Bucket(bucketBlobs).Get([]byte(d))
		if len(v) < 8 {
			return fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
		}
		size = int64(binary.BigEndian.Uint64(v[:8]))
		return nil
	})
	return size, err
}

// BlobRepositories implements storage.Metadata.
func (s *Store) BlobRepositories(_ context.Context, d digest.Digest) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(d), 0)
		c := tx.Bucket(bucketBlobRepos).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// UnlinkBlob implements storage.Metadata.
func (s *Store) UnlinkBlob(_ context.Context, repo string, d digest.Digest) error {
	return s.deleted(s.update(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil || rb.Bucket(bucketBlobs).Get([]byte(d)) == nil {
			return fmt.Errorf("%w: %s in %s", storage.ErrBlobUnknown, d, repo)
		}
		if err := tx.Bucket(bucketBlobRepos).Delete(referrerKey(d, digest.Digest(repo))); err != nil {
			return fmt.Errorf("unindex blob %s: %w", d, err)
		}
		return rb.Bucket(bucketBlobs).Delete([]byte(d))
	}))
}

func encodeRecord(m *storage.ManifestRecord) ([]byte, error) {
	// One buffer sized for the whole record: encoding a large manifest's
	// record must not cost several times its size.
	buf := bytes.NewBuffer(make([]byte, 4, 4+metaSizeHint(m)+len(m.Body)))
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.Digest, err)
	}
	rec := buf.Bytes()
	binary.BigEndian.PutUint32(rec, uint32(len(rec)-4))
	return append(rec, m.Body...), nil
}

// metaSizeHint is about the length of m's JSON encoding: its fixed
// fields and the strings of its annotations and references.
func metaSizeHint(m *storage.ManifestRecord) int {
	n := 256 + len(m.Digest) + len(m.MediaType) + len(m.ArtifactType) + len(m.Subject)
	for k, v := range m.Annotations {
		n += len(k) + len(v) + 6
	}
	for _, d := range m.Blobs {
		n += len(d) + 3
	}
	for _, d := range m.Manifests {
		n += len(d) + 3
	}
	return n
}

// recordMeta returns the JSON part of an encoded record.
func recordMeta(v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, errors.New("decode manifest: short record")
	}
	n := int(binary.BigEndian.Uint32(v))
	if len(v) < 4+n {
		return nil, errors.New("decode manifest: short record")
	}
	return v[4 : 4+n], nil
}

// decodeRecord copies v (which bbolt owns) into a new record.
func decodeRecord(v []byte) (*storage.ManifestRecord, error) {
	meta, err := recordMeta(v)
	if err != nil {
		return nil, err
	}
	m := &storage.ManifestRecord{}
	if err := json.Unmarshal(meta, m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	m.Body = bytes.Clone(v[4+len(meta):])
	return m, nil
}

// referrerKey joins two keys with a NUL byte, which neither digests nor
// repository names contain, so a prefix scan on the first finds all pairs.
func referrerKey(subject, referrer digest.Digest) []byte {
	k := make([]byte, 0, len(subject)+1+len(referrer))
	k = append(k, subject...)
	k = append(k, 0)
	return append(k, referrer...)
}

// initialMmapSize is the address space bbolt maps at open. Growing the
// map later makes bbolt copy every value of the open transaction onto
// the heap (a large manifest then costs its size again), so the map
// starts large; it is virtual memory, not resident memory or disk.
const initialMmapSize = 1 << 30

// PutManifest implements storage.Metadata.
func (s *Store) PutManifest(ctx context.Context, repo string, m *storage.ManifestRecord, tags []string, optional map[digest.Digest]bool) error {
	origin := storage.OriginFrom(ctx)
	rec, err := encodeRecord(m)
	if err != nil {
		return err
	}
	return s.updateSized(len(rec), func(tx *bolt.Tx) error {
		rb, err := ensureRepo(tx, repo)
		if err != nil {
			return err
		}
		blobs, manifests := rb.Bucket(bucketBlobs), rb.Bucket(bucketManifests)
		for _, d := range m.Blobs {
			if !optional[d] && blobs.Get([]byte(d)) == nil {
				return fmt.Errorf("%w: blob %s", storage.ErrManifestBlobUnknown, d)
			}
		}
		for _, d := range m.Manifests {
			if manifests.Get([]byte(d)) == nil {
				return fmt.Errorf("%w: manifest %s", storage.ErrManifestBlobUnknown, d)
			}
		}
		if err := manifests.Put([]byte(m.Digest), rec); err != nil {
			return fmt.Errorf("store manifest %s: %w", m.Digest, err)
		}
		if err := stampPut(rb, m.Digest, time.Now()); err != nil {
			return err
		}
		for _, t := range tags {
			old := rb.Bucket(bucketTags).Get([]byte(t))
			if string(old) == string(m.Digest) {
				continue
			}
			prev := digest.Digest(old)
			if err := rb.Bucket(bucketTags).Put([]byte(t), []byte(m.Digest)); err != nil {
				return fmt.Errorf("store tag %s: %w", t, err)
			}
			if err := recordChange(rb, storage.Change{Tag: t, Digest: m.Digest, Prev: prev, Op: storage.ChangePut, Origin: origin}); err != nil {
				return err
			}
		}
		if m.Subject != "" {
			key := referrerKey(m.Subject, m.Digest)
			if rb.Bucket(bucketReferrers).Get(key) == nil {
				if err := rb.Bucket(bucketReferrers).Put(key, nil); err != nil {
					return fmt.Errorf("index referrer %s: %w", m.Digest, err)
				}
				if err := recordChange(rb, storage.Change{Digest: m.Digest, Op: storage.ChangeRefer, Origin: origin}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// GetManifest implements storage.Metadata.
func (s *Store) GetManifest(_ context.Context, repo, ref string) (*storage.ManifestRecord, error) {
	var m *storage.ManifestRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, ref)
		}
		key := []byte(ref)
		if !oci.IsDigest(ref) {
			key = rb.Bucket(bucketTags).Get(key)
			if key == nil {
				return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, ref)
			}
		}
		v := rb.Bucket(bucketManifests).Get(key)
		if v == nil {
			return fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, ref)
		}
		meta, err := recordMeta(v)
		if err != nil {
			return err
		}
		var ok bool
		if m, ok = s.records.get(digest.Digest(key), meta); ok {
			return nil
		}
		if m, err = decodeRecord(v); err != nil {
			return err
		}
		s.records.put(m, bytes.Clone(meta))
		return nil
	})
	return m, err
}

// DeleteManifest implements storage.Metadata.
func (s *Store) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	origin := storage.OriginFrom(ctx)
	return s.deleted(s.update(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, d)
		}
		if rb.Bucket(bucketManifests).Get([]byte(d)) == nil {
			return fmt.Errorf("%w: %s@%s", storage.ErrManifestUnknown, repo, d)
		}
		return deleteManifestTx(rb, d, origin)
	}))
}

// deleteManifestTx removes manifest d, present in rb, with its tags, its
// referrers index entry and its put time.
func deleteManifestTx(rb *bolt.Bucket, d digest.Digest, origin string) error {
	manifests := rb.Bucket(bucketManifests)
	v := manifests.Get([]byte(d))
	m, err := decodeRecord(v)
	if err != nil {
		return err
	}
	if m.Subject != "" {
		if err := rb.Bucket(bucketReferrers).Delete(referrerKey(m.Subject, d)); err != nil {
			return fmt.Errorf("unindex referrer %s: %w", d, err)
		}
	}
	tags := rb.Bucket(bucketTags)
	var stale [][]byte
	err = tags.ForEach(func(k, v []byte) error {
		if string(v) == string(d) {
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := tags.Delete(k); err != nil {
			return fmt.Errorf("delete tag %s: %w", k, err)
		}
		if err := recordChange(rb, storage.Change{Tag: string(k), Prev: d, Op: storage.ChangeDelete, Origin: origin}); err != nil {
			return err
		}
	}
	if pt := rb.Bucket(bucketPutTimes); pt != nil {
		if err := pt.Delete([]byte(d)); err != nil {
			return fmt.Errorf("delete manifest %s: %w", d, err)
		}
	}
	return manifests.Delete([]byte(d))
}

// DeleteTag implements storage.Metadata.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) error {
	return s.deleted(s.update(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil || rb.Bucket(bucketTags).Get([]byte(tag)) == nil {
			return fmt.Errorf("%w: %s:%s", storage.ErrManifestUnknown, repo, tag)
		}
		prev := digest.Digest(rb.Bucket(bucketTags).Get([]byte(tag)))
		if err := rb.Bucket(bucketTags).Delete([]byte(tag)); err != nil {
			return err
		}
		return recordChange(rb, storage.Change{Tag: tag, Prev: prev, Op: storage.ChangeDelete, Origin: storage.OriginFrom(ctx)})
	}))
}

// recordChange appends c to the repository's change feed.
func recordChange(rb *bolt.Bucket, c storage.Change) error {
	b, err := rb.CreateBucketIfNotExists(bucketChanges)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	c.Seq = seq
	c.Time = time.Now().UTC()
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("change feed: %w", err)
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return b.Put(k[:], v)
}

// Changes implements storage.Metadata.
func (s *Store) Changes(_ context.Context, repo string, since uint64, n int) ([]storage.Change, uint64, error) {
	out := []storage.Change{}
	var head uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
		}
		b := rb.Bucket(bucketChanges)
		if b == nil {
			return nil
		}
		head = b.Sequence()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], since+1)
		c := b.Cursor()
		for key, v := c.Seek(k[:]); key != nil && len(out) < n; key, v = c.Next() {
			var ch storage.Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("decode change: %w", err)
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, head, err
}

// page walks the keys of b after last and returns up to n of them.
func page(b *bolt.Bucket, last string, n int) ([]string, bool) {
	out := []string{}
	c := b.Cursor()
	var k []byte
	if last == "" {
		k, _ = c.First()
	} else {
		k, _ = c.Seek([]byte(last))
		if k != nil && string(k) == last {
			k, _ = c.Next()
		}
	}
	for ; k != nil; k, _ = c.Next() {
		if len(out) == n {
			return out, true
		}
		out = append(out, string(k))
	}
	return out, false
}

// Tags implements storage.Metadata.
func (s *Store) Tags(_ context.Context, repo, last string, n int) ([]string, bool, error) {
	var (
		out  []string
		more bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return fmt.Errorf("%w: %s", storage.ErrRepositoryUnknown, repo)
		}
		out, more = page(rb.Bucket(bucketTags), last, n)
		return nil
	})
	return out, more, err
}

// Repositories implements storage.Metadata.
func (s *Store) Repositories(_ context.Context, last string, n int) ([]string, bool, error) {
	var (
		out  []string
		more bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		out, more = page(tx.Bucket(bucketRepos), last, n)
		return nil
	})
	return out, more, err
}

// Referrers implements storage.Metadata.
func (s *Store) Referrers(_ context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	out := []v1.Descriptor{}
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return nil
		}
		manifests := rb.Bucket(bucketManifests)
		prefix := append([]byte(d), 0)
		c := rb.Bucket(bucketReferrers).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := manifests.Get(k[len(prefix):])
			if v == nil {
				continue
			}
			m, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out = append(out, m.Descriptor())
		}
		return nil
	})
	return out, err
}
