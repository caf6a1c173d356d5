package gc

import (
	"context"
	"testing"
	"time"
)

func TestPacerKeepsItsDutyCycle(t *testing.T) {
	t.Parallel()
	p := newPacer(0.25)
	if p.yield(context.Background()) != nil {
		t.Fatal("yield after no work returned an error")
	}
	// 20 ms of work at a duty of 1/4 owes a pause of 60 ms.
	p.since = time.Now().Add(-20 * time.Millisecond)
	t0 := time.Now()
	if err := p.yield(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 55*time.Millisecond || d > 2*time.Second {
		t.Errorf("paused %v after 20 ms of work at duty 1/4, want about 60 ms", d)
	}
	// The pause starts a new slice: no second pause right after it.
	t0 = time.Now()
	_ = p.yield(context.Background())
	if d := time.Since(t0); d > 5*time.Millisecond {
		t.Errorf("paused %v right after a pause, want none", d)
	}
}

func TestPacerFlatOutAndCancelled(t *testing.T) {
	t.Parallel()
	full := newPacer(1)
	full.since = time.Now().Add(-time.Second)
	t0 := time.Now()
	if err := full.yield(context.Background()); err != nil || time.Since(t0) > 5*time.Millisecond {
		t.Errorf("duty 1 paused %v (err %v), want no pause", time.Since(t0), err)
	}
	p := newPacer(0)
	if p.duty != DefaultDuty {
		t.Errorf("duty 0 means %v, want DefaultDuty %v", p.duty, DefaultDuty)
	}
	p.since = time.Now().Add(-time.Minute) // owes two minutes
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	if err := p.yield(ctx); err == nil || time.Since(t0) > time.Second {
		t.Errorf("a cancelled pause returned %v after %v, want the context's error at once", err, time.Since(t0))
	}
}
