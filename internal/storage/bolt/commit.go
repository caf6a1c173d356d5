package bolt

import (
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commit. Every bbolt write transaction ends with an fsync, and
// bbolt runs one writer at a time, so concurrent writers (a sync copying
// many tags at once, parallel pushes) would each wait for the others'
// fsyncs in turn. update instead runs the updates that queue up while a
// commit is in progress together in the next transaction: one fsync for
// all of them. A lone update is committed at once, as db.Update would:
// unlike bbolt's own Batch, nothing ever waits for a timer.
//
// The first caller that finds no commit in progress leads: it takes the
// queue, commits it, and hands the lead to the first update that queued
// meanwhile, so that no caller waits for more than the commit before its
// own and its own.

// maxGroup bounds the updates of one transaction, and maxGroupBytes the
// values they write (bbolt writes a transaction's dirty pages from
// buffers it allocates at commit, so a group of large manifests costs
// their sum at once).
const (
	maxGroup      = 128
	maxGroupBytes = 4 << 20
)

// pendingUpdate is one caller's update in the queue.
type pendingUpdate struct {
	fn   func(*bolt.Tx) error
	size int
	err  error
	// wake says "done" (false: err is the result) or "lead" (true).
	wake chan bool
}

// committer queues updates for the group commit.
type committer struct {
	mu      sync.Mutex
	queue   []*pendingUpdate
	leading bool
}

// update runs fn in a read-write transaction, grouped with concurrent
// updates. fn may run more than once (when another update of its group
// fails, the group is rolled back and run again without it), so it must
// keep its effects inside the transaction, as bbolt's Batch requires.
func (s *Store) update(fn func(*bolt.Tx) error) error { return s.updateSized(0, fn) }

// updateSized is update for an fn that writes about size bytes of values.
func (s *Store) updateSized(size int, fn func(*bolt.Tx) error) error {
	p := &pendingUpdate{fn: fn, size: size, wake: make(chan bool, 1)}
	c := &s.commits
	c.mu.Lock()
	c.queue = append(c.queue, p)
	if !c.leading {
		c.leading = true
		c.mu.Unlock()
		s.lead(p)
		return p.err
	}
	c.mu.Unlock()
	if <-p.wake {
		s.lead(p)
	}
	return p.err
}

// lead commits the head of the queue (which holds self) and passes the
// lead on.
func (s *Store) lead(self *pendingUpdate) {
	c := &s.commits
	c.mu.Lock()
	n, bytes := 1, c.queue[0].size
	for n < len(c.queue) && n < maxGroup && bytes+c.queue[n].size <= maxGroupBytes {
		bytes += c.queue[n].size
		n++
	}
	group := slices.Clone(c.queue[:n])
	c.queue = slices.Delete(c.queue, 0, n)
	c.mu.Unlock()

	s.commitGroup(group, self)

	c.mu.Lock()
	if len(c.queue) == 0 {
		c.leading = false
		c.mu.Unlock()
		return
	}
	next := c.queue[0]
	c.mu.Unlock()
	next.wake <- true
}

// commitGroup runs group in one transaction and tells each update its
// result. An update that fails is run alone, so that its error is its
// own and the others do not fail with it.
func (s *Store) commitGroup(group []*pendingUpdate, self *pendingUpdate) {
	done := func(p *pendingUpdate) {
		if p != self {
			p.wake <- false
		}
	}
	for len(group) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, p := range group {
				if err := runUpdate(p.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 || len(group) == 1 {
			for _, p := range group {
				p.err = err
				done(p)
			}
			return
		}
		f := group[failed]
		f.err = s.db.Update(func(tx *bolt.Tx) error { return runUpdate(f.fn, tx) })
		done(f)
		group = slices.Delete(group, failed, failed+1)
	}
}

// runUpdate calls fn, turning a panic into an error: a panicking update
// must not leave the others of its group waiting for ever.
func runUpdate(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("metadata update panicked: %v", r)
		}
	}()
	return fn(tx)
}
