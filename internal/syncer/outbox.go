package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
)

// Outbox delivers the pushes made at a ReadWrite connected registry to its
// parent. Its messages are the repository change feed itself: each local
// push or delete is recorded in the same metadata transaction as the write,
// so nothing acknowledged to a client can be lost. Delivery follows the
// feed in order, per repository — blobs first, then manifests, then the tag
// — and advances a persisted cursor only after the parent accepted the
// change; every step is idempotent by digest, so a change replayed after a
// crash has the same effect once.
type Outbox struct {
	engine  *Engine
	cursors *Cursors
	log     *slog.Logger
	ttl     func() time.Duration
	notify  func(protocol.Event)

	mu        sync.Mutex
	dropped   int64
	conflicts []string
	// conflictCount counts every conflict; conflicts keeps the last 20.
	conflictCount int64
	pending       int64

	// local indexes, per repository, the local changes not yet delivered,
	// for Holds; each change of the feed is read once.
	localMu sync.Mutex
	local   map[string]*localChanges
}

// localChanges are a repository's local changes read from its feed up to
// seq.
type localChanges struct {
	seq     uint64
	changes []storage.Change
}

// NewOutbox returns an outbox over the engine's store. ttl gives the
// message TTL in force; notify receives each delivered local push or
// delete, which the edge reports to the parent as a notification.
func NewOutbox(e *Engine, cursors *Cursors, ttl func() time.Duration, notify func(protocol.Event)) *Outbox {
	if notify == nil {
		notify = func(protocol.Event) {}
	}
	o := &Outbox{engine: e, cursors: cursors, log: e.log, ttl: ttl, notify: notify, local: map[string]*localChanges{}}
	var h holder = o
	e.holds.Store(&h)
	return o
}

// Holds reports whether a local change of repo:tag made on top of the
// parent's state d ("" for no tag) waits for delivery. The sync engine
// then leaves the local tag alone: d is the parent's state before that
// push, and applying it would undo the push until the outbox delivers it
// (after which the parent's feed brings the pushed value back).
func (o *Outbox) Holds(ctx context.Context, repo, tag string, d digest.Digest) bool {
	o.localMu.Lock()
	defer o.localMu.Unlock()
	delivered := o.cursors.Get(repo)
	lc := o.local[repo]
	if lc == nil {
		lc = &localChanges{}
		o.local[repo] = lc
	}
	lc.seq = max(lc.seq, delivered)
	for range 10000 {
		changes, _, err := o.engine.o.Metadata.Changes(ctx, repo, lc.seq, 1000)
		if err != nil || len(changes) == 0 {
			break
		}
		for _, c := range changes {
			if c.Origin != storage.OriginSync && c.Tag != "" {
				lc.changes = append(lc.changes, c)
			}
		}
		lc.seq = changes[len(changes)-1].Seq
	}
	held := false
	kept := lc.changes[:0]
	for _, c := range lc.changes {
		if c.Seq <= delivered {
			continue
		}
		kept = append(kept, c)
		if c.Tag == tag && c.Prev == d {
			held = true
		}
	}
	lc.changes = kept
	return held
}

// Stats returns messages dropped for age, recent conflicts and the number
// of messages waiting after the last delivery.
func (o *Outbox) Stats() (dropped int64, conflicts []string, pending int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped, append([]string(nil), o.conflicts...), o.pending
}

// Counts returns, for metrics, the messages dropped for age and the tag
// conflicts since start, and the messages waiting.
func (o *Outbox) Counts() (dropped, conflicts, pending int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped, o.conflictCount, o.pending
}

// Refresh recounts the messages waiting without delivering any, while the
// parent is unreachable (Deliver counts them otherwise). A message is a
// change of the feed past the delivered cursor.
func (o *Outbox) Refresh(ctx context.Context) error {
	repos, err := o.repositories(ctx)
	if err != nil {
		return err
	}
	var pending int64
	for _, repo := range repos {
		cursor := o.cursors.Get(repo)
		_, head, err := o.engine.o.Metadata.Changes(ctx, repo, cursor, 1)
		if err != nil {
			return err
		}
		if head > cursor {
			pending += int64(head - cursor)
		}
	}
	o.mu.Lock()
	o.pending = pending
	o.mu.Unlock()
	return nil
}

// repositories lists the local repositories in scope.
func (o *Outbox) repositories(ctx context.Context) ([]string, error) {
	e := o.engine
	var repos []string
	last := ""
	for range 10000 {
		page, more, err := e.o.Metadata.Repositories(ctx, last, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if e.InScope(r) {
				repos = append(repos, r)
			}
		}
		if !more || len(page) == 0 {
			break
		}
		last = page[len(page)-1]
	}
	return repos, nil
}

// Deliver sends every pending change of every local repository in scope.
// It stops at the first change the parent cannot take (it is retried on the
// next call, keeping the order).
func (o *Outbox) Deliver(ctx context.Context) (int, error) {
	repos, err := o.repositories(ctx)
	if err != nil {
		return 0, err
	}
	delivered := 0
	var pending int64
	var firstErr error
	for _, repo := range repos {
		n, left, err := o.deliverRepo(ctx, repo)
		delivered += n
		pending += left
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", repo, err)
		}
	}
	o.mu.Lock()
	o.pending = pending
	o.mu.Unlock()
	return delivered, firstErr
}

func (o *Outbox) deliverRepo(ctx context.Context, repo string) (int, int64, error) {
	e := o.engine
	cursor := o.cursors.Get(repo)
	delivered := 0
	for range 100000 {
		changes, head, err := e.o.Metadata.Changes(ctx, repo, cursor, 100)
		if err != nil {
			return delivered, 0, err
		}
		if len(changes) == 0 {
			return delivered, 0, nil
		}
		for _, c := range changes {
			if c.Origin != storage.OriginSync {
				if ttl := o.ttl(); ttl > 0 && !c.Time.IsZero() && time.Since(c.Time) > ttl {
					o.mu.Lock()
					o.dropped++
					o.mu.Unlock()
					o.log.Warn("outbox message expired; dropped", "repo", repo, "tag", c.Tag, "digest", string(c.Digest), "op", c.Op, "age", time.Since(c.Time).Round(time.Second).String())
				} else if err := e.retry(ctx, "deliver "+repo, func() error { return o.deliver(ctx, repo, c) }); err != nil {
					return delivered, int64(head - cursor), err
				} else {
					delivered++
				}
			}
			cursor = c.Seq
			if err := o.cursors.Set(repo, cursor); err != nil {
				return delivered, int64(head - cursor), err
			}
		}
	}
	return delivered, 0, nil
}

// deliver applies one change at the parent.
func (o *Outbox) deliver(ctx context.Context, repo string, c storage.Change) error {
	p := o.engine.o.Parent
	switch c.Op {
	case storage.ChangeRefer:
		return o.pushGraph(ctx, repo, c.Digest)
	case storage.ChangeDelete:
		cur, err := p.Resolve(ctx, repo, c.Tag)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.Prev != "" && cur != c.Prev {
			o.conflict(repo, c.Tag, c.Prev, cur, "deleted at the edge but moved at the parent; the parent's tag stays")
			return nil
		}
		if err := p.DeleteTag(ctx, repo, c.Tag); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		o.notify(protocol.Event{Repository: repo, Tag: c.Tag, Digest: c.Prev, Action: protocol.EventDelete, Time: c.Time})
		return nil
	case storage.ChangePut:
		if err := o.pushGraph(ctx, repo, c.Digest); err != nil {
			if errors.Is(err, storage.ErrManifestUnknown) {
				return nil // deleted locally since; a later change says so
			}
			return err
		}
		cur, err := p.Resolve(ctx, repo, c.Tag)
		if errors.Is(err, ErrNotFound) {
			cur, err = "", nil
		}
		if err != nil {
			return err
		}
		if cur == c.Digest {
			o.notify(protocol.Event{Repository: repo, Tag: c.Tag, Digest: c.Digest, Action: protocol.EventPush, Time: c.Time})
			return nil
		}
		if cur != "" && cur != c.Prev {
			o.conflict(repo, c.Tag, c.Digest, cur, "moved at the edge and at the parent; the parent's tag wins, the edge's manifest stays reachable by digest")
			return nil
		}
		rec, err := o.engine.o.Metadata.GetManifest(ctx, repo, string(c.Digest))
		if err != nil {
			return nil
		}
		if err := p.PushManifest(ctx, repo, c.Tag, rec.MediaType, rec.Body); err != nil {
			return err
		}
		o.notify(protocol.Event{Repository: repo, Tag: c.Tag, Digest: c.Digest, Action: protocol.EventPush, Time: c.Time})
		return nil
	}
	return nil
}

func (o *Outbox) conflict(repo, tag string, edge, parent digest.Digest, what string) {
	msg := fmt.Sprintf("conflict on %s:%s: %s (edge %s, parent %s)", repo, tag, what, short(edge), short(parent))
	o.log.Warn("tag conflict", "repo", repo, "tag", tag, "edge_digest", string(edge), "parent_digest", string(parent))
	o.mu.Lock()
	o.conflicts = append(o.conflicts, msg)
	o.conflictCount++
	if len(o.conflicts) > 20 {
		o.conflicts = o.conflicts[len(o.conflicts)-20:]
	}
	o.mu.Unlock()
}

func short(d digest.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

// pushGraph uploads manifest d of repo with everything it references
// (blobs first, then child manifests, then the manifest by digest),
// skipping what the parent has. Referrers travel as changes of their own.
func (o *Outbox) pushGraph(ctx context.Context, repo string, d digest.Digest) error {
	e := o.engine
	_, err := graph.Copy(ctx, e.store, repo, parentTarget{e.o.Parent}, repo, v1.Descriptor{Digest: d}, graph.Options{
		Concurrency:      e.o.Concurrency,
		ManifestMaxBytes: e.o.ManifestMaxBytes,
		NoReferrers:      true,
	})
	return err
}
