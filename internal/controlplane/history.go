package controlplane

import (
	"errors"
	"slices"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// historyBucket keeps each connected registry's last sync runs, apart
// from its record so that the record (a wire type) stays as edges and
// gateways exchange it.
const historyBucket = "sync-history"

// maxHistory is how many runs are kept per registry.
const maxHistory = 20

// recordRun appends the run an edge reported to its history, once: a
// heartbeat repeats the last run until the next one ends. A quiet run of
// the continuous schedule (nothing copied, no error) is not kept, as the
// edge does not log it: it would push every real run out.
func recordRun(tx *auth.Tx, name string, r *protocol.SyncResult) error {
	if r == nil || r.Start.IsZero() {
		return nil
	}
	if r.Trigger == protocol.TriggerContinuous && r.Items == 0 && r.Bytes == 0 && r.Error == "" {
		return nil
	}
	var h []protocol.SyncResult
	if err := tx.Record(historyBucket, name, &h); err != nil && !errors.Is(err, auth.ErrNotFound) {
		return err
	}
	if len(h) > 0 && h[len(h)-1].Start.Equal(r.Start) {
		return nil
	}
	h = append(h, *r)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	return tx.PutRecord(historyBucket, name, h)
}

// SyncHistory returns the last sync runs a connected registry reported,
// newest first (at most 20).
func (s *Service) SyncHistory(name string) ([]protocol.SyncResult, error) {
	var h []protocol.SyncResult
	if err := s.store.Record(historyBucket, name, &h); err != nil && !errors.Is(err, auth.ErrNotFound) {
		return nil, err
	}
	slices.Reverse(h)
	return h, nil
}
