package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// BlobFile is a blob file found by WalkBlobs.
type BlobFile struct {
	Digest digest.Digest
	Size   int64
	// Time is when the blob was committed (its file's modification time).
	Time time.Time
}

// WalkBlobs calls fn for each blob file, in no particular order, until fn
// returns an error or ctx ends.
func (s *Store) WalkBlobs(ctx context.Context, fn func(BlobFile) error) error {
	root := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, alg := range algs {
		prefixes, err := os.ReadDir(filepath.Join(root, alg.Name()))
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, pre := range prefixes {
			dir := filepath.Join(root, alg.Name(), pre.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("list blobs: %w", err)
			}
			for _, e := range files {
				if err := ctx.Err(); err != nil {
					return err
				}
				d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
				if d.Validate() != nil || e.IsDir() {
					continue
				}
				fi, err := e.Info()
				if err != nil {
					continue // removed meanwhile
				}
				if err := fn(BlobFile{Digest: d, Size: fi.Size(), Time: fi.ModTime()}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Present reports whether blob d's file exists (nil) or not
// (ErrBlobUnknown), without verifying its content. It is the check
// bolt.Store.SetBlobCheck wants.
func (s *Store) Present(d digest.Digest) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s (collected)", storage.ErrBlobUnknown, d)
		}
		return fmt.Errorf("stat blob %s: %w", d, err)
	}
	return nil
}

// RemoveIfOlder deletes blob d's file when it was committed before
// cutoff, and reports whether it did: a blob committed again meanwhile
// (a new file) is young and stays.
func (s *Store) RemoveIfOlder(d digest.Digest, cutoff time.Time) (bool, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return false, err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if !fi.ModTime().Before(cutoff) {
		return false, nil
	}
	s.forgetVerified(d)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("delete blob %s: %w", d, err)
	}
	return true, nil
}

// PurgeQuarantine removes quarantined files moved aside before cutoff
// and returns how many and their bytes.
func (s *Store) PurgeQuarantine(cutoff time.Time, dry bool) (files int, bytes int64, err error) {
	dir := filepath.Join(s.root, "quarantine")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("list quarantine: %w", err)
	}
	var errs []error
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || e.IsDir() || !quarantinedAt(e.Name(), fi.ModTime()).Before(cutoff) {
			continue
		}
		if !dry {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("purge quarantine: %w", err))
				continue
			}
		}
		files++
		bytes += fi.Size()
	}
	return files, bytes, errors.Join(errs...)
}

// quarantinedAt is when a quarantine file was moved aside: the Unix
// nanoseconds its name ends with, or else its modification time.
func quarantinedAt(name string, mtime time.Time) time.Time {
	i := strings.LastIndexByte(name, '-')
	if n, err := strconv.ParseInt(name[i+1:], 10, 64); i >= 0 && err == nil {
		return time.Unix(0, n)
	}
	return mtime
}
