package fs

import (
	"crypto/sha256"
	"encoding"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/outpost-registry/outpost/internal/storage"
)

// spaceState remembers the last write that failed for lack of space.
type spaceState struct {
	mu sync.Mutex
	// at is when it failed (zero: no failure since space recovered), and
	// free the bytes available just after.
	at   time.Time
	free uint64
}

// noSpace wraps err in storage.ErrInsufficientStorage when it is ENOSPC
// or EDQUOT, and records the failure so that Space reports writes as
// degraded.
func (s *Store) noSpace(err error) error {
	if err == nil || !storage.NoSpace(err) {
		return err
	}
	s.stats.noSpace.Add(1)
	free, total, _ := volumeSpace(s.root)
	s.space.mu.Lock()
	first := s.space.at.IsZero()
	s.space.at, s.space.free = time.Now(), free
	s.space.mu.Unlock()
	if first {
		s.log.Error("the data volume is full: writes fail until space is freed; pulls are still served", "data", s.root, "free_bytes", free, "err", err)
	}
	return &storage.SpaceError{Volume: s.root, Free: free, Total: total, Err: err}
}

// undoAppend handles an append that ran out of space: it gives the bytes
// of this append back to the volume by truncating the session to the
// size it had before, so that a full disk is not kept full by the
// sessions that filled it, and the client may retry the same chunk.
func (s *Store) undoAppend(f *os.File, st *session, id string, before int64, state []byte, cause error) (int64, error) {
	st.hash = nil
	if err := f.Truncate(before); err != nil {
		st.size = -1
		return before, s.noSpace(fmt.Errorf("append to upload %s: %w (and truncating it back failed: %v)", id, cause, err))
	}
	st.size = before
	if state != nil {
		h := sha256.New()
		if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state) == nil {
			st.hash = h
		}
	}
	return before, s.noSpace(fmt.Errorf("append to upload %s: %w", id, cause))
}

// Space describes the volume holding the store.
type Space struct {
	// Free is the number of bytes available to this process, Total the
	// size of the volume.
	Free, Total uint64
	// WritesDegraded is set while free space is below the minimum
	// (Options.MinFreeBytes), and from a write that failed for lack of
	// space until free space has grown by that minimum.
	WritesDegraded bool
	// Reason says why writes are degraded.
	Reason string
}

// Space reports the free space of the data volume and whether writes are
// degraded.
func (s *Store) Space() (Space, error) {
	free, total, err := volumeSpace(s.root)
	if err != nil {
		return Space{}, err
	}
	sp := Space{Free: free, Total: total}
	s.space.mu.Lock()
	at, freeThen := s.space.at, s.space.free
	recovered := !at.IsZero() && free >= freeThen+s.minFree
	if recovered {
		s.space.at = time.Time{}
	}
	s.space.mu.Unlock()
	switch {
	case recovered:
		s.log.Info("free space recovered on the data volume: writes are reported ok again", "data", s.root, "free_bytes", free)
	case !at.IsZero():
		sp.WritesDegraded = true
		sp.Reason = fmt.Sprintf("a write failed for lack of space at %s (%d bytes free then, %d now; writes are reported ok again once %d more bytes are free)",
			at.UTC().Format(time.RFC3339), freeThen, free, freeThen+s.minFree-free)
	}
	if free < s.minFree && !sp.WritesDegraded {
		sp.WritesDegraded = true
		sp.Reason = fmt.Sprintf("%d bytes free on the data volume, below the minimum of %d (storage.minFreeBytes)", free, s.minFree)
	}
	return sp, nil
}
