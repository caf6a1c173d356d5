package protocol_test

import (
	"fmt"
	"testing"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestRollup: counts cover every node; the list puts failing nodes first
// and is capped.
func TestRollup(t *testing.T) {
	t.Parallel()
	var nodes []protocol.NodeProgress
	for i := range protocol.MaxReportedNodes + 10 {
		st := protocol.NodePulled
		switch {
		case i%100 == 7:
			st = protocol.NodeFailed
		case i%10 == 3:
			st = protocol.NodePulling
		}
		nodes = append(nodes, protocol.NodeProgress{Node: fmt.Sprintf("n%04d", i), State: st})
	}
	r := protocol.Rollup(nodes)
	if r.Total != len(nodes) || r.Failed != 6 || r.Pulling != 51 || r.Done != len(nodes)-57 {
		t.Errorf("counts %d total, %d failed, %d pulling, %d done", r.Total, r.Failed, r.Pulling, r.Done)
	}
	if len(r.Nodes) != protocol.MaxReportedNodes || r.Nodes[0].Node != "n0007" || r.Nodes[5].State != protocol.NodeFailed || r.Nodes[6].Node != "n0000" {
		t.Errorf("list: %d nodes, first %+v, sixth %+v, seventh %+v", len(r.Nodes), r.Nodes[0], r.Nodes[5], r.Nodes[6])
	}
}
