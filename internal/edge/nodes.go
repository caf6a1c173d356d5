package edge

import (
	"fmt"
	"sync"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// DefaultPrePullNodes is how many node agents may pull at once when
// Options.PrePullNodes is zero.
const DefaultPrePullNodes = 10

// LeaseTTL is how long a pull slot stays held without renewal: a node
// agent that dies mid-pull gives its slot back after this long.
const LeaseTTL = 30 * time.Second

// nodeBoard is the site's side of the node stage: the pull slots it
// leases to node agents, counted here so that no more than limit nodes
// pull from this registry at once, and the progress each node reports.
type nodeBoard struct {
	mu     sync.Mutex
	limit  int
	now    func() time.Time
	leases map[string]time.Time // node -> expiry
	// peak is the most slots ever held at once (for tests and metrics).
	peak int
	// granted and refused count lease answers since start.
	granted, refused int64
	// progress is job -> node -> the node's last report.
	progress map[string]map[string]protocol.NodeProgress
	// reports counts node reports by the state they report.
	reports map[protocol.NodeState]int64
}

func newNodeBoard(limit int) *nodeBoard {
	if limit <= 0 {
		limit = DefaultPrePullNodes
	}
	return &nodeBoard{limit: limit, now: time.Now, leases: map[string]time.Time{},
		progress: map[string]map[string]protocol.NodeProgress{}, reports: map[protocol.NodeState]int64{}}
}

// expire drops leases past their expiry (b.mu held).
func (b *nodeBoard) expire(now time.Time) {
	for n, exp := range b.leases {
		if !now.Before(exp) {
			delete(b.leases, n)
		}
	}
}

// acquire grants node a slot, or renews the one it holds; it refuses
// while limit other nodes hold one.
func (b *nodeBoard) acquire(node string) protocol.Lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	_, held := b.leases[node]
	if !held && len(b.leases) >= b.limit {
		b.refused++
		return protocol.Lease{Granted: false, Holders: len(b.leases), Limit: b.limit, TTLSeconds: int(LeaseTTL / time.Second)}
	}
	b.leases[node] = now.Add(LeaseTTL)
	if !held {
		b.granted++
	}
	b.peak = max(b.peak, len(b.leases))
	return protocol.Lease{Granted: true, Holders: len(b.leases), Limit: b.limit, TTLSeconds: int(LeaseTTL / time.Second)}
}

// release gives node's slot back (nothing when it holds none).
func (b *nodeBoard) release(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.leases, node)
}

// report records a node's progress on a job and reports whether its
// state changed.
func (b *nodeBoard) report(r protocol.NodeReport) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.progress[r.Job]
	if m == nil {
		m = map[string]protocol.NodeProgress{}
		b.progress[r.Job] = m
	}
	now := b.now().UTC()
	r.Updated = &now
	old, ok := m[r.Node]
	changed := !ok || old.State != r.State
	if changed {
		b.reports[r.State]++
	}
	m[r.Node] = r.NodeProgress
	return changed
}

// rollup is a job's node stage for the heartbeat.
func (b *nodeBoard) rollup(job string) *protocol.NodeRollup {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := make([]protocol.NodeProgress, 0, len(b.progress[job]))
	for _, p := range b.progress[job] {
		list = append(list, p)
	}
	return protocol.Rollup(list)
}

// forget drops the progress of jobs not in keep.
func (b *nodeBoard) forget(keep func(job string) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for j := range b.progress {
		if !keep(j) {
			delete(b.progress, j)
		}
	}
}

// NodeStats are the node stage's counters, for metrics.
type NodeStats struct {
	Held, Peak, Limit int
	Granted, Refused  int64
	// Transitions counts node reports that changed a node's state, by
	// the new state.
	Transitions map[protocol.NodeState]int64
}

// NodeStats returns the node stage's counters.
func (e *Edge) NodeStats() NodeStats {
	b := e.nodes
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(b.now())
	t := make(map[protocol.NodeState]int64, len(b.reports))
	for k, v := range b.reports {
		t[k] = v
	}
	return NodeStats{Held: len(b.leases), Peak: b.peak, Limit: b.limit, Granted: b.granted, Refused: b.refused, Transitions: t}
}

// NodeJobs returns the pre-pull jobs that this site has staged, for its
// node agents; PullNow is false outside the sync window for a job that
// respects it.
func (e *Edge) NodeJobs() []protocol.NodeJob {
	cfg := e.config()
	out := []protocol.NodeJob{}
	if cfg == nil {
		return out
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	inWindow := time.Now().Before(e.windowEnd)
	for _, task := range cfg.Staging {
		cur, ok := e.stages[task.Job]
		if !task.PrePull || !ok || cur.State != protocol.StageStaged {
			continue
		}
		now := !task.RespectWindow || cfg.SyncWindow == "" || inWindow
		out = append(out, protocol.NodeJob{Job: task.Job, Images: task.Images, NodeSelector: task.NodeSelector, PullNow: now})
	}
	return out
}

// AcquireNodeLease grants node one of the site's pull slots (or renews
// it), or refuses while every slot is held.
func (e *Edge) AcquireNodeLease(node string) (protocol.Lease, error) {
	if err := protocol.ValidNodeName(node); err != nil {
		return protocol.Lease{}, err
	}
	return e.nodes.acquire(node), nil
}

// ReleaseNodeLease gives node's slot back.
func (e *Edge) ReleaseNodeLease(node string) error {
	if err := protocol.ValidNodeName(node); err != nil {
		return err
	}
	e.nodes.release(node)
	return nil
}

// ReportNode records a node's progress on a pre-pull job of this site;
// the counts go up with the next heartbeat.
func (e *Edge) ReportNode(r protocol.NodeReport) error {
	if err := protocol.ValidNodeName(r.Node); err != nil {
		return err
	}
	if err := protocol.ParseNodeState(r.State); err != nil {
		return err
	}
	cfg := e.config()
	found := false
	if cfg != nil {
		for _, t := range cfg.Staging {
			found = found || (t.Job == r.Job && t.PrePull)
		}
	}
	if !found {
		return fmt.Errorf("pre-pull job %q: %w", r.Job, auth.ErrNotFound)
	}
	if e.nodes.report(r) && (r.State == protocol.NodePulled || r.State == protocol.NodeFailed) {
		// The root shows nodes done / total: send it without waiting for
		// the next heartbeat (coalesced).
		select {
		case e.beat <- struct{}{}:
		default:
		}
	}
	return nil
}

// Name is the connected registry's name ("" with a generic parent).
func (e *Edge) Name() string { return e.o.Name }
