package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-registry/outpost/internal/storage"
)

// stampPut records that manifest d was put in rb at t.
func stampPut(rb *bolt.Bucket, d digest.Digest, t time.Time) error {
	pt, err := rb.CreateBucketIfNotExists(bucketPutTimes)
	if err != nil {
		return fmt.Errorf("record put time: %w", err)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(t.UnixNano()))
	return pt.Put([]byte(d), v[:])
}

// stamp decodes a time stored as Unix nanoseconds at v[off:]; content
// stored before times were recorded reads as the zero time (old).
func stamp(v []byte, off int) time.Time {
	if len(v) < off+8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[off:off+8])))
}

// RepoSweep is what a garbage collection removed (or, dry, would remove)
// from one repository.
type RepoSweep struct {
	Repository    string          `json:"repository"`
	Manifests     []digest.Digest `json:"manifests,omitempty"`
	ManifestBytes int64           `json:"manifestBytes"`
	// Links are the blob links removed; LinkBytes their sizes summed
	// (the bytes only come back when no repository links a blob).
	Links     []digest.Digest `json:"links,omitempty"`
	LinkBytes int64           `json:"linkBytes"`
	// Tags are the tags a retention policy removed.
	Tags []string `json:"tags,omitempty"`
	// Live counts the manifests and blob links kept.
	LiveManifests int `json:"liveManifests"`
	LiveLinks     int `json:"liveLinks"`
}

// refs is the part of a manifest record the collector follows.
type refs struct {
	Subject   digest.Digest   `json:"subject,omitempty"`
	Blobs     []digest.Digest `json:"blobs,omitempty"`
	Manifests []digest.Digest `json:"manifests,omitempty"`
}

// TagTime is a tag as a retention decision sees it.
type TagTime struct {
	Tag    string
	Digest digest.Digest
	// Pushed is when the manifest was last put (zero: unknown).
	Pushed time.Time
}

// SweepOptions configure SweepRepository.
type SweepOptions struct {
	// Cutoff: manifests put, and blob links made, at or after it are live.
	Cutoff time.Time
	// UntaggedCutoff, when before Cutoff, is the cutoff of manifests
	// instead (a retention policy keeping untagged manifests longer).
	UntaggedCutoff time.Time
	// Dry reports and changes nothing.
	Dry bool
	// Keep are manifests live whatever their tags (staged by digest).
	Keep []digest.Digest
	// Retain, when set, is given the repository's tags and returns those
	// to remove, inside the sweep's transaction. A tag naming a referrer
	// of live content (by subject, or a sha256-HEX.sig/.att/.sbom tag of
	// a live digest) is kept all the same.
	Retain func(tags []TagTime) []string
}

// SweepRepository collects garbage in repo, marking and sweeping inside
// one write transaction (one read transaction when dry), so that no push,
// tag move or link interleaves with the decision. It first removes the
// tags o.Retain names. Live are then: the manifests tags point at, those
// put at or after the cutoff, o.Keep, what they reference (index
// children, blobs), recursively, and the referrers of live manifests;
// and blob links made at or after the cutoff. The rest is removed:
// manifest records with their referrer entries, and blob links. Blob
// files are not touched here (see DeleteUnlinkedBlobs).
func (s *Store) SweepRepository(ctx context.Context, repo string, o SweepOptions) (RepoSweep, error) {
	res := RepoSweep{Repository: repo}
	cutoff, dry := o.Cutoff, o.Dry
	mcutoff := cutoff
	if !o.UntaggedCutoff.IsZero() && o.UntaggedCutoff.Before(cutoff) {
		mcutoff = o.UntaggedCutoff
	}
	fn := func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rb := repoBucket(tx, repo)
		if rb == nil {
			return nil
		}
		manifests := rb.Bucket(bucketManifests)
		puts := rb.Bucket(bucketPutTimes)
		all := map[digest.Digest]refs{}
		sizes := map[digest.Digest]int64{}
		referrers := map[digest.Digest][]digest.Digest{}
		roots := slices.Clone(o.Keep)
		err := manifests.ForEach(func(k, v []byte) error {
			meta, err := recordMeta(v)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", k, err)
			}
			var r refs
			if err := json.Unmarshal(meta, &r); err != nil {
				return fmt.Errorf("manifest %s: %w", k, err)
			}
			d := digest.Digest(k)
			all[d] = r
			sizes[d] = int64(len(v) - 4 - len(meta))
			if r.Subject != "" {
				referrers[r.Subject] = append(referrers[r.Subject], d)
			}
			if puts != nil && !stamp(puts.Get(k), 0).Before(mcutoff) {
				roots = append(roots, d)
			}
			return nil
		})
		if err != nil {
			return err
		}
		tags := map[string]digest.Digest{}
		err = rb.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			tags[string(k)] = digest.Digest(bytes.Clone(v))
			return nil
		})
		if err != nil {
			return err
		}
		if o.Retain != nil {
			drop := retainTags(tags, puts, all, roots, o.Retain)
			for _, t := range drop {
				res.Tags = append(res.Tags, t)
				if !dry {
					if err := rb.Bucket(bucketTags).Delete([]byte(t)); err != nil {
						return fmt.Errorf("remove tag %s: %w", t, err)
					}
					if err := recordChange(rb, storage.Change{Tag: t, Prev: tags[t], Op: "delete", Origin: storage.OriginFrom(ctx)}); err != nil {
						return err
					}
				}
				delete(tags, t)
			}
		}
		for _, d := range tags {
			roots = append(roots, d)
		}
		live, liveBlobs := mark(all, referrers, roots)
		res.LiveManifests = len(live)
		for d, r := range all {
			if live[d] {
				continue
			}
			res.Manifests = append(res.Manifests, d)
			res.ManifestBytes += sizes[d]
			if dry {
				continue
			}
			if r.Subject != "" {
				if err := rb.Bucket(bucketReferrers).Delete(referrerKey(r.Subject, d)); err != nil {
					return fmt.Errorf("unindex referrer %s: %w", d, err)
				}
			}
			if puts != nil {
				if err := puts.Delete([]byte(d)); err != nil {
					return fmt.Errorf("delete manifest %s: %w", d, err)
				}
			}
			if err := manifests.Delete([]byte(d)); err != nil {
				return fmt.Errorf("delete manifest %s: %w", d, err)
			}
		}
		blobs := rb.Bucket(bucketBlobs)
		var dead [][]byte
		err = blobs.ForEach(func(k, v []byte) error {
			d := digest.Digest(k)
			if liveBlobs[d] || !stamp(v, 8).Before(cutoff) {
				res.LiveLinks++
				return nil
			}
			res.Links = append(res.Links, d)
			if len(v) >= 8 {
				res.LinkBytes += int64(binary.BigEndian.Uint64(v[:8]))
			}
			dead = append(dead, bytes.Clone(k))
			return nil
		})
		if err != nil || dry {
			return err
		}
		for _, k := range dead {
			if err := tx.Bucket(bucketBlobRepos).Delete(referrerKey(digest.Digest(k), digest.Digest(repo))); err != nil {
				return fmt.Errorf("unindex blob %s: %w", k, err)
			}
			if err := blobs.Delete(k); err != nil {
				return fmt.Errorf("unlink blob %s: %w", k, err)
			}
		}
		return nil
	}
	var err error
	if dry {
		err = s.db.View(fn)
	} else {
		err = s.db.Update(fn)
	}
	if err != nil {
		return RepoSweep{Repository: repo}, fmt.Errorf("collect %s: %w", repo, err)
	}
	return res, nil
}

// mark returns the manifests reachable from roots (index children and
// referrers, recursively) and the blobs they name.
func mark(all map[digest.Digest]refs, referrers map[digest.Digest][]digest.Digest, roots []digest.Digest) (live, liveBlobs map[digest.Digest]bool) {
	live, liveBlobs = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	roots = slices.Clone(roots)
	for len(roots) > 0 {
		d := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if live[d] {
			continue
		}
		r, ok := all[d]
		if !ok {
			continue
		}
		live[d] = true
		for _, b := range r.Blobs {
			liveBlobs[b] = true
		}
		roots = append(roots, r.Manifests...)
		roots = append(roots, referrers[d]...)
	}
	return live, liveBlobs
}

// retainTags asks retain which tags to remove, then gives back those that
// name a referrer of what stays live: a manifest whose subject is live,
// or a tag sha256-HEX.sig (.att, .sbom, any suffix) of a live digest, as
// cosign and older tools tag signatures and attestations.
func retainTags(tags map[string]digest.Digest, puts *bolt.Bucket, all map[digest.Digest]refs, roots []digest.Digest, retain func([]TagTime) []string) []string {
	list := make([]TagTime, 0, len(tags))
	for t, d := range tags {
		tt := TagTime{Tag: t, Digest: d}
		if puts != nil {
			tt.Pushed = stamp(puts.Get([]byte(d)), 0)
		}
		list = append(list, tt)
	}
	slices.SortFunc(list, func(a, b TagTime) int { return strings.Compare(a.Tag, b.Tag) })
	drop := map[string]bool{}
	for _, t := range retain(list) {
		if _, ok := tags[t]; ok {
			drop[t] = true
		}
	}
	referrers := map[digest.Digest][]digest.Digest{}
	for d, r := range all {
		if r.Subject != "" {
			referrers[r.Subject] = append(referrers[r.Subject], d)
		}
	}
	// Each pass gives back at least one tag, or ends.
	for range len(drop) + 1 {
		kept := slices.Clone(roots)
		for t, d := range tags {
			if !drop[t] {
				kept = append(kept, d)
			}
		}
		live, _ := mark(all, referrers, kept)
		back := false
		for t := range drop {
			d := tags[t]
			if live[all[d].Subject] || live[tagSubject(t)] {
				delete(drop, t)
				back = true
			}
		}
		if !back {
			break
		}
	}
	return slices.Sorted(maps.Keys(drop))
}

// tagSubject returns the digest a tag such as sha256-HEX.sig names, or "".
func tagSubject(tag string) digest.Digest {
	alg, rest, ok := strings.Cut(tag, "-")
	if !ok {
		return ""
	}
	hex, _, _ := strings.Cut(rest, ".")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if d.Validate() != nil {
		return ""
	}
	return d
}

// linked reports whether any repository links blob d, not counting the
// repositories in unlinked.
func linked(tx *bolt.Tx, d digest.Digest, unlinked map[string]bool) bool {
	prefix := append([]byte(d), 0)
	c := tx.Bucket(bucketBlobRepos).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if !unlinked[string(k[len(prefix):])] {
			return true
		}
	}
	return false
}

// DeleteUnlinkedBlobs calls del, inside one write transaction, for each
// of candidates that no repository links, and returns those del reports
// deleted. Because LinkBlob checks for the blob's file inside its own
// write transaction (SetBlobCheck), a blob deleted here cannot gain a link
// to a missing file. With dry set nothing is called and the unlinked
// candidates are returned; dryUnlinked then names, per blob, the
// repositories whose links a dry sweep would have removed.
func (s *Store) DeleteUnlinkedBlobs(ctx context.Context, candidates []digest.Digest, dry bool, dryUnlinked map[digest.Digest]map[string]bool, del func(digest.Digest) (bool, error)) ([]digest.Digest, error) {
	var out []digest.Digest
	fn := func(tx *bolt.Tx) error {
		for _, d := range candidates {
			if err := ctx.Err(); err != nil {
				return err
			}
			var unlinked map[string]bool
			if dry {
				unlinked = dryUnlinked[d]
			}
			if linked(tx, d, unlinked) {
				continue
			}
			if !dry {
				gone, err := del(d)
				if err != nil {
					return err
				}
				if !gone {
					continue
				}
			}
			out = append(out, d)
		}
		return nil
	}
	var err error
	if dry {
		err = s.db.View(fn)
	} else {
		err = s.db.Update(fn)
	}
	return out, err
}

// RepoUsage is what one repository holds.
type RepoUsage struct {
	Repository    string `json:"repository"`
	Blobs         int    `json:"blobs"`
	BlobBytes     int64  `json:"blobBytes"`
	Manifests     int    `json:"manifests"`
	ManifestBytes int64  `json:"manifestBytes"`
	Tags          int    `json:"tags"`
}

// Usage is what the metadata store holds: per repository (a blob shared
// by several counts in each) and in total (each blob once).
type Usage struct {
	Repositories []RepoUsage `json:"repositories"`
	// Blobs and BlobBytes count each linked blob once.
	Blobs         int   `json:"blobs"`
	BlobBytes     int64 `json:"blobBytes"`
	ManifestBytes int64 `json:"manifestBytes"`
}

// Usage sums what each repository links and stores, in one read
// transaction.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	u := Usage{Repositories: []RepoUsage{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		seen := map[string]bool{}
		return tx.Bucket(bucketRepos).ForEach(func(name, _ []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			rb := tx.Bucket(bucketRepos).Bucket(name)
			if rb == nil {
				return nil
			}
			r := RepoUsage{Repository: string(name)}
			err := rb.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
				var n int64
				if len(v) >= 8 {
					n = int64(binary.BigEndian.Uint64(v[:8]))
				}
				r.Blobs++
				r.BlobBytes += n
				if !seen[string(k)] {
					seen[string(k)] = true
					u.Blobs++
					u.BlobBytes += n
				}
				return nil
			})
			if err != nil {
				return err
			}
			err = rb.Bucket(bucketManifests).ForEach(func(_, v []byte) error {
				meta, err := recordMeta(v)
				if err != nil {
					return err
				}
				r.Manifests++
				r.ManifestBytes += int64(len(v) - 4 - len(meta))
				return nil
			})
			if err != nil {
				return err
			}
			r.Tags = rb.Bucket(bucketTags).Stats().KeyN
			u.ManifestBytes += r.ManifestBytes
			u.Repositories = append(u.Repositories, r)
			return nil
		})
	})
	if err != nil {
		return Usage{}, fmt.Errorf("storage usage: %w", err)
	}
	return u, nil
}
