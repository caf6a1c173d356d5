package edge

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// continuousPause separates runs in continuous mode (no sync window),
// where a run starts whenever there may be something to do.
const continuousPause = 5 * time.Second

// schedule starts runs on the cron schedule, on demand (start-up,
// reconnect, resync) and, without a sync window, continuously.
func (e *Edge) schedule(ctx context.Context) {
	for {
		cfg := e.config()
		wait := time.Minute
		if cfg != nil {
			if cfg.SyncWindow == "" {
				wait = continuousPause
			} else if sch, err := protocol.ParseSchedule(cfg.SyncSchedule); err == nil {
				now := time.Now()
				wait = sch.Next(now).Sub(now)
			} else {
				e.refuseSetting("syncSchedule", cfg.SyncSchedule, err, "runs start every minute")
			}
		}
		t := time.NewTimer(wait)
		trigger := protocol.TriggerSchedule
		if cfg != nil && cfg.SyncWindow == "" {
			trigger = protocol.TriggerContinuous
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case reason := <-e.wake:
			t.Stop()
			trigger = reason
		case <-t.C:
		}
		if cfg = e.config(); cfg == nil {
			continue
		}
		e.runOnce(ctx, trigger, cfg)
	}
}

// runOnce runs the engine, bounded by the sync window.
func (e *Edge) runOnce(ctx context.Context, trigger protocol.Trigger, cfg *protocol.EdgeConfig) {
	e.mu.Lock()
	online, deactivated := e.online, e.deactivated
	e.running = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}()
	if deactivated || (!online && trigger == protocol.TriggerContinuous) {
		return
	}
	runCtx := ctx
	if cfg.SyncWindow != "" {
		d, err := protocol.ParseSyncWindow(cfg.SyncWindow)
		if err != nil {
			// A window the edge cannot read must not make runs unbounded.
			d = protocol.DefaultSyncWindow
			e.refuseSetting("syncWindow", cfg.SyncWindow, err, "runs last at most "+d.String())
		}
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		e.mu.Lock()
		e.windowEnd = time.Now().Add(d)
		e.mu.Unlock()
		select {
		case e.stageWake <- struct{}{}:
		default:
		}
	}
	res := e.o.Engine.Run(runCtx, trigger)
	if trigger != protocol.TriggerContinuous || res.Items > 0 || res.State != protocol.SyncSucceeded {
		e.log.Info("sync run finished", "trigger", trigger, "state", res.State, "items", res.Items, "bytes", res.Bytes,
			"duration", res.End.Sub(res.Start).String(), "err", res.Error)
	}
	e.noteRun(res.Err)
	r := res.SyncResult
	e.mu.Lock()
	e.lastResult = &r
	if res.State == protocol.SyncSucceeded {
		end := res.End
		e.lastSync = &end
	}
	e.mu.Unlock()
}

// refusal is a sync setting the edge refused.
type refusal struct {
	value  string
	detail string
}

// refuseSetting logs, once per distinct value, a sync setting from the
// parent (or a generic parent's configuration) that the edge refuses, and
// what it does instead; the status reports it while the value stands. The
// operator must fix it on the parent.
func (e *Edge) refuseSetting(key, value string, err error, instead string) {
	detail := fmt.Sprintf("%s %q refused (%v); %s", key, value, err, instead)
	e.mu.Lock()
	if e.refused == nil {
		e.refused = map[string]refusal{}
	}
	seen := e.refused[key].value == value
	e.refused[key] = refusal{value: value, detail: detail}
	e.mu.Unlock()
	if !seen {
		e.log.Error("refused a sync setting from the parent; fix it on the parent", "setting", key, "value", value, "err", err, "instead", instead)
	}
}
