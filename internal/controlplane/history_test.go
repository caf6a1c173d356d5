package controlplane_test

import (
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestSyncHistory: each run an edge reports is kept once (heartbeats
// repeat the last run), newest first, at most 20, quiet continuous runs
// not at all, and the history goes with the connected registry.
func TestSyncHistory(t *testing.T) {
	svc, _ := newService(t)
	if _, _, err := svc.Create(&protocol.ConnectedRegistry{Name: "plant-a", Repositories: []string{"apps/web"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Activate("plant-a", protocol.ActivateRequest{ActivationID: "a1"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	beat := func(run int) {
		t.Helper()
		r := &protocol.SyncResult{State: protocol.SyncSucceeded, Start: t0.Add(time.Duration(run) * time.Minute), Items: int64(run), Bytes: int64(run) << 10}
		if _, err := svc.RecordHeartbeat("plant-a", protocol.Heartbeat{ActivationID: "a1", LastSyncResult: r}); err != nil {
			t.Fatal(err)
		}
	}
	beat(1)
	beat(1) // the same run, reported again
	quiet := &protocol.SyncResult{Trigger: protocol.TriggerContinuous, State: protocol.SyncSucceeded, Start: t0.Add(90 * time.Second)}
	if _, err := svc.RecordHeartbeat("plant-a", protocol.Heartbeat{ActivationID: "a1", LastSyncResult: quiet}); err != nil {
		t.Fatal(err)
	}
	beat(2)
	h, err := svc.SyncHistory("plant-a")
	if err != nil || len(h) != 2 || h[0].Items != 2 || h[1].Items != 1 {
		t.Fatalf("history after runs 1, 1, a quiet one, 2: %+v %v; want runs 2 then 1", h, err)
	}
	for run := 3; run <= 30; run++ {
		beat(run)
	}
	if h, _ = svc.SyncHistory("plant-a"); len(h) != 20 || h[0].Items != 30 || h[19].Items != 11 {
		t.Fatalf("history after 30 runs: %d runs, newest %d, oldest %d; want 20, 30, 11", len(h), h[0].Items, h[len(h)-1].Items)
	}
	if _, err := svc.Deactivate("plant-a"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete("plant-a", true); err != nil {
		t.Fatal(err)
	}
	if h, err = svc.SyncHistory("plant-a"); err != nil || len(h) != 0 {
		t.Fatalf("history of a deleted registry: %d runs (%v), want none", len(h), err)
	}
}
