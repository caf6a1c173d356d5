package gc

import (
	"context"
	"time"
)

// DefaultDuty is the share of its wall time an online collection spends
// working: after each slice of work it pauses twice as long, so that the
// requests being served get the CPU and the disk first (on a 2-core site
// a collection running flat out would take one of them). A collection for
// disk pressure runs flat out.
const DefaultDuty = 1.0 / 3

// paceSlice is the least work between two pauses, so that pauses are few
// and a small store is collected without any.
const paceSlice = 5 * time.Millisecond

// pacer keeps a run to its duty cycle.
type pacer struct {
	duty  float64
	since time.Time
}

func newPacer(duty float64) *pacer {
	if duty <= 0 {
		duty = DefaultDuty
	}
	return &pacer{duty: duty, since: time.Now()}
}

// yield pauses once the work since the last pause exceeds paceSlice, for
// as long as keeps the run at its duty cycle; it returns early with ctx's
// error when ctx ends.
func (p *pacer) yield(ctx context.Context) error {
	if p.duty >= 1 {
		return ctx.Err()
	}
	worked := time.Since(p.since)
	if worked < paceSlice {
		return ctx.Err()
	}
	t := time.NewTimer(time.Duration(float64(worked) * (1 - p.duty) / p.duty))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	p.since = time.Now()
	return nil
}
