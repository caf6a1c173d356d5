package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Triggers of a verification, for Stats.
const (
	TriggerRead  = "read"  // a blob opened (served) for the first time since start
	TriggerScrub = "scrub" // a pass of Scrub
)

// fileID tells versions of a blob file apart: a file truncated, rewritten
// in place or replaced gets another one. Where the platform offers them
// the inode and change time are part of it, which a write cannot set back.
type fileID struct {
	size  int64
	mtime int64
	ctime int64
	ino   uint64
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	sysID(fi, &id)
	return id
}

func (s *Store) verifiedID(d digest.Digest) (fileID, bool) {
	s.vmu.RLock()
	defer s.vmu.RUnlock()
	id, ok := s.verified[d]
	return id, ok
}

func (s *Store) markVerified(d digest.Digest, id fileID) {
	s.vmu.Lock()
	s.verified[d] = id
	s.vmu.Unlock()
}

func (s *Store) forgetVerified(d digest.Digest) {
	s.vmu.Lock()
	delete(s.verified, d)
	s.vmu.Unlock()
}

// checkSize is the cheap check made on every Stat and Open: a blob whose
// file no longer has the size it had when its content was verified is
// corrupt, without reading it.
func (s *Store) checkSize(d digest.Digest, p string, fi os.FileInfo, trigger string) (*Corruption, error) {
	known, ok := s.verifiedID(d)
	if !ok || known.size == fi.Size() {
		return nil, nil
	}
	return s.corrupt(d, p, fi, fmt.Sprintf("the file holds %d bytes, %d when its content was verified", fi.Size(), known.size), trigger)
}

// check makes sure that f, opened at p with info fi, holds blob d before
// it is served: a file verified since start and unchanged passes at once;
// any other is hashed, once however many requests open it together.
func (s *Store) check(d digest.Digest, p string, f *os.File, fi os.FileInfo) error {
	id := idOf(fi)
	if known, ok := s.verifiedID(d); ok && known == id {
		return nil
	}
	if _, err := s.checkSize(d, p, fi, TriggerRead); err != nil {
		return err
	}
	_, err, _ := s.flight.Do(string(d), func() (any, error) {
		if known, ok := s.verifiedID(d); ok && known == id {
			return nil, nil // verified by a flight that just ended
		}
		_, err := s.hash(context.Background(), d, p, f, fi, TriggerRead)
		return nil, err
	})
	if err != nil {
		return err
	}
	if known, ok := s.verifiedID(d); ok && known == id {
		return nil
	}
	// The shared hash read another version of the file (it was replaced
	// meanwhile): hash this one.
	_, err = s.hash(context.Background(), d, p, f, fi, TriggerRead)
	return err
}

// hash reads f, opened at p with info fi, and compares its content with
// digest d: it remembers a match and quarantines a mismatch. A read error
// is returned as it is: the blob may be intact on a disk that failed to
// read once.
func (s *Store) hash(ctx context.Context, d digest.Digest, p string, f *os.File, fi os.FileInfo, trigger string) (*Corruption, error) {
	h := d.Algorithm().Hash()
	buf := copyBuffers.Get().(*[]byte)
	_, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: io.NewSectionReader(f, 0, fi.Size())}, *buf)
	copyBuffers.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("verify blob %s: read %s: %w", d, p, err)
	}
	s.stats.verified[triggerIndex(trigger)].Add(1)
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return s.corrupt(d, p, fi, "its content hashes to "+string(got), trigger)
	}
	s.markVerified(d, idOf(fi))
	return nil, nil
}

// ctxReader stops a long read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Corruption describes a blob found corrupt.
type Corruption struct {
	Digest digest.Digest `json:"digest"`
	// Path is where the blob was.
	Path string `json:"path"`
	// Quarantine is where its content went ("" when it could not be
	// moved, or when a good copy had replaced it meanwhile).
	Quarantine string `json:"quarantine,omitempty"`
	Reason     string `json:"reason"`
}

// corrupt moves the blob file at p (the one described by fi) to
// quarantine/, logs it for the operator and returns the error callers
// see: ErrBlobUnknown wrapped with ErrBlobCorrupt.
func (s *Store) corrupt(d digest.Digest, p string, fi os.FileInfo, reason, trigger string) (*Corruption, error) {
	s.stats.corrupt[triggerIndex(trigger)].Add(1)
	c := Corruption{Digest: d, Path: p, Reason: reason}
	q, err := s.quarantine(d, p, fi)
	c.Quarantine = q
	switch {
	case err != nil:
		s.log.Error("corrupt blob found; moving it to quarantine failed", "digest", string(d), "path", p, "reason", reason, "found_by", trigger, "err", err)
	case q != "":
		s.log.Error("corrupt blob found and moved to quarantine; it is unknown until fetched or pushed again", "digest", string(d), "path", p, "quarantine", q, "reason", reason, "found_by", trigger)
	}
	return &c, fmt.Errorf("%w: %w: %s at %s: %s", storage.ErrBlobUnknown, storage.ErrBlobCorrupt, d, p, reason)
}

// quarantine renames the blob file at p, if it still is the file fi
// describes, into quarantine/, and returns its new path.
func (s *Store) quarantine(d digest.Digest, p string, fi os.FileInfo) (string, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	cur, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		s.forgetVerified(d)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", p, err)
	}
	if !os.SameFile(cur, fi) {
		return "", nil // a good copy was committed meanwhile
	}
	s.forgetVerified(d)
	dir := filepath.Join(s.root, "quarantine")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("create quarantine directory: %w", err)
	}
	q := filepath.Join(dir, string(d.Algorithm())+"-"+d.Encoded()+"-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Rename(p, q); err != nil {
		// Leaving the file in place would let the next Open serve it
		// after a restart; removing it keeps the promise.
		if rerr := os.Remove(p); rerr != nil {
			return "", fmt.Errorf("quarantine %s: %w; remove: %w", p, err, rerr)
		}
		return "", fmt.Errorf("quarantine %s: %w (removed instead)", p, err)
	}
	return q, nil
}

// ScrubReport sums up a pass of Scrub.
type ScrubReport struct {
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Blobs    int64        `json:"blobs"`
	Bytes    int64        `json:"bytes"`
	Corrupt  []Corruption `json:"corrupt,omitempty"`
}

// Scrub reads every blob, checks its digest and quarantines each that
// fails. found, when not nil, is called for each corrupt blob as it is
// found. A blob that cannot be read is reported in the error and the pass
// goes on; a cancelled ctx ends it.
func (s *Store) Scrub(ctx context.Context, found func(Corruption)) (ScrubReport, error) {
	rep := ScrubReport{Started: time.Now()}
	var errs []error
	root := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(root)
	if err != nil {
		return rep, fmt.Errorf("list blobs: %w", err)
	}
	for _, alg := range algs {
		prefixes, err := os.ReadDir(filepath.Join(root, alg.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("list blobs: %w", err))
			continue
		}
		for _, pre := range prefixes {
			dir := filepath.Join(root, alg.Name(), pre.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("list blobs: %w", err))
				continue
			}
			for _, e := range files {
				if err := ctx.Err(); err != nil {
					rep.Finished = time.Now()
					return rep, errors.Join(append(errs, err)...)
				}
				d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
				if d.Validate() != nil || e.IsDir() {
					continue // not a blob file
				}
				n, c, err := s.scrubOne(ctx, d, filepath.Join(dir, e.Name()))
				rep.Blobs++
				rep.Bytes += n
				if c != nil {
					rep.Corrupt = append(rep.Corrupt, *c)
					if found != nil {
						found(*c)
					}
				} else if err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	rep.Finished = time.Now()
	return rep, errors.Join(errs...)
}

// scrubOne hashes the blob file at p and returns its size and, when it is
// corrupt, what was found.
func (s *Store) scrubOne(ctx context.Context, d digest.Digest, p string) (int64, *Corruption, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil // deleted meanwhile
	}
	if err != nil {
		return 0, nil, fmt.Errorf("verify blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("verify blob %s: %w", d, err)
	}
	c, err := s.checkSize(d, p, fi, TriggerScrub)
	if c == nil && err == nil {
		c, err = s.hash(ctx, d, p, f, fi, TriggerScrub)
	}
	return fi.Size(), c, err
}

// counters are the store's event counts, read by Stats.
type counters struct {
	verified [2]atomic.Int64 // by trigger index
	corrupt  [2]atomic.Int64
	noSpace  atomic.Int64
}

func triggerIndex(trigger string) int {
	if trigger == TriggerScrub {
		return 1
	}
	return 0
}

// Stats are counts since start, for metrics.
type Stats struct {
	// Verified and Corrupt count blobs hashed and found corrupt, by
	// trigger (TriggerRead, TriggerScrub).
	Verified map[string]int64
	Corrupt  map[string]int64
	// NoSpace counts writes that failed for lack of space.
	NoSpace int64
}

// Stats returns the counts since start.
func (s *Store) Stats() Stats {
	return Stats{
		Verified: map[string]int64{TriggerRead: s.stats.verified[0].Load(), TriggerScrub: s.stats.verified[1].Load()},
		Corrupt:  map[string]int64{TriggerRead: s.stats.corrupt[0].Load(), TriggerScrub: s.stats.corrupt[1].Load()},
		NoSpace:  s.stats.noSpace.Load(),
	}
}
