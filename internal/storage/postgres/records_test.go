package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/identity"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/postgres/pgtest"
)

// TestRecordLog: versions increase in commit order, a writer first sees
// what others wrote, deletions reach a reader that catches up, and Watch
// wakes a watcher at a write.
func TestRecordLog(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).DSN(t)
	a, b := open(t, dsn).Records(), open(t, dsn).Records()
	ctx := context.Background()
	woke := make(chan struct{}, 16)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Watch(wctx, func() { woke <- struct{}{} })
	<-woke // the call after LISTEN

	v1, err := a.Write(ctx, 0, func(changed []storage.Record) ([]storage.Record, error) {
		return []storage.Record{{Bucket: "x", Key: "k1", Value: []byte("1")}, {Bucket: "x", Key: "k2", Value: []byte("2")}}, nil
	})
	if err != nil || v1 == 0 {
		t.Fatalf("first write: version %d, %v", v1, err)
	}
	select {
	case <-woke:
	case <-time.After(time.Second):
		t.Fatal("the watcher was not woken within 1 s of a write")
	}
	// b writes from version 0: it is first given a's records.
	var seen []storage.Record
	v2, err := b.Write(ctx, 0, func(changed []storage.Record) ([]storage.Record, error) {
		seen = changed
		return []storage.Record{{Bucket: "x", Key: "k1", Value: nil}}, nil
	})
	if err != nil || v2 <= v1 || len(seen) != 2 || string(seen[1].Value) != "2" {
		t.Fatalf("second write: version %d after %d, saw %+v, %v", v2, v1, seen, err)
	}
	recs, v, err := a.Since(ctx, v1)
	if err != nil || v != v2 || len(recs) != 1 || recs[0].Key != "k1" || recs[0].Value != nil {
		t.Fatalf("Since(%d) = %+v at %d, %v; want the deletion of k1 at %d", v1, recs, v, err, v2)
	}
	// A failing fn writes nothing.
	boom := errors.New("boom")
	if _, err := a.Write(ctx, v2, func([]storage.Record) ([]storage.Record, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failing write: %v, want boom", err)
	}
	if recs, _, _ := a.Since(ctx, v2); len(recs) != 0 {
		t.Fatalf("a failed write left %+v", recs)
	}
}

// TestSharedIdentity runs auth's identity store on the record log as
// two replicas do: a token created or disabled through one is seen by
// the other within a second, a replica opened later loads the current
// state (deletions included), and of two replicas racing to record an
// activation exactly one wins.
func TestSharedIdentity(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).DSN(t)
	ctx := context.Background()
	openID := func() *auth.Store {
		s, err := auth.OpenShared(ctx, open(t, dsn).Records(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	r1, r3 := openID(), openID()
	within := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen by the other replica within 1 s", what)
			}
		}
	}
	put := func(s *auth.Store, name string, status identity.TokenStatus) {
		t.Helper()
		if err := s.Update(func(tx *auth.Tx) error {
			return tx.PutToken(&auth.Token{Name: name, ScopeMap: identity.ScopeMapPull, Status: status})
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(r1, "site-a", identity.StatusEnabled)
	within("token created", func() bool { tok, err := r3.Token("site-a"); return err == nil && tok.Status == identity.StatusEnabled })
	put(r1, "site-a", identity.StatusDisabled)
	within("token disabled", func() bool {
		tok, err := r3.Token("site-a")
		return err == nil && tok.Status == identity.StatusDisabled
	})
	put(r3, "site-b", identity.StatusEnabled)
	if err := r3.Update(func(tx *auth.Tx) error { return tx.DeleteToken("site-a") }); err != nil {
		t.Fatal(err)
	}
	within("token deleted", func() bool { _, err := r1.Token("site-a"); return errors.Is(err, auth.ErrNotFound) })
	late := openID()
	if _, err := late.Token("site-a"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("a replica opened later has the deleted token: %v", err)
	}
	if _, err := late.Token("site-b"); err != nil {
		t.Errorf("a replica opened later lacks site-b: %v", err)
	}

	// The activation race: each replica records its own activation ID
	// unless one is recorded; decided on the state every replica wrote.
	type activation struct{ ID string }
	var wg sync.WaitGroup
	const racers = 8
	errs := make([]error, racers)
	for i := range racers {
		s := []*auth.Store{r1, r3, late}[i%3]
		wg.Go(func() {
			errs[i] = s.Update(func(tx *auth.Tx) error {
				var cur activation
				if err := tx.Record("activations", "factory1", &cur); err == nil {
					return fmt.Errorf("%w: factory1 is active as %s", auth.ErrExists, cur.ID)
				}
				return tx.PutRecord("activations", "factory1", activation{ID: fmt.Sprint("id-", i)})
			})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, auth.ErrExists):
			t.Fatalf("activation: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d racing activations won, want exactly 1", wins, racers)
	}
	var a1, a3 activation
	within("the winning activation", func() bool {
		return r1.Record("activations", "factory1", &a1) == nil && r3.Record("activations", "factory1", &a3) == nil && a1 == a3
	})
}

// TestExclusive: while one replica runs a job, another's attempt does not
// run it; once it ends, the next attempt does.
func TestExclusive(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan bool)
	go func() {
		ran, err := a.Exclusive(ctx, "purge", func(context.Context) { close(inside); <-release })
		done <- ran && err == nil
	}()
	<-inside
	if ran, err := b.Exclusive(ctx, "purge", func(context.Context) {}); ran || err != nil {
		t.Fatalf("a second replica ran the job while the first held it: ran %v, %v", ran, err)
	}
	if ran, err := b.Exclusive(ctx, "scrub", func(context.Context) {}); !ran || err != nil {
		t.Fatalf("another job did not run beside it: ran %v, %v", ran, err)
	}
	close(release)
	if !<-done {
		t.Fatal("the first replica's run failed")
	}
	if ran, err := b.Exclusive(ctx, "purge", func(context.Context) {}); !ran || err != nil {
		t.Fatalf("the job did not run once the first replica finished: ran %v, %v", ran, err)
	}
}
