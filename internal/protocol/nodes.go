package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/identity"
)

// NodeState is a node's state on a pre-pull job, as `stage show --nodes`
// lists it.
type NodeState string

// Node states.
const (
	NodePending NodeState = "Pending"
	NodePulling NodeState = "Pulling"
	NodePulled  NodeState = "Pulled"
	NodeFailed  NodeState = "Failed"
)

// ParseNodeState accepts the four node states.
func ParseNodeState(s NodeState) error {
	switch s {
	case NodePending, NodePulling, NodePulled, NodeFailed:
		return nil
	}
	return fmt.Errorf("%w: state %q: want Pending, Pulling, Pulled or Failed", identity.ErrInvalid, s)
}

// MaxReportedNodes bounds the per-node list a site sends up with each
// heartbeat: the failing nodes first, then the others; the counts always
// cover every node.
const MaxReportedNodes = 500

// NodeProgress is one node's state on a pre-pull job.
type NodeProgress struct {
	Node        string     `json:"node"`
	State       NodeState  `json:"state"`
	ImagesDone  int        `json:"imagesDone"`
	ImagesTotal int        `json:"imagesTotal"`
	Reason      string     `json:"reason,omitempty"`
	Updated     *time.Time `json:"lastUpdate,omitempty"`
}

// NodeRollup is a site's node stage of a job: how many nodes report the
// job pulled of how many report at all, and the nodes themselves.
type NodeRollup struct {
	Done    int            `json:"done"`
	Total   int            `json:"total"`
	Pulling int            `json:"pulling"`
	Failed  int            `json:"failed"`
	Nodes   []NodeProgress `json:"list,omitempty"`
}

// Rollup counts nodes by state and keeps at most MaxReportedNodes of
// them, failing ones first, each group sorted by name.
func Rollup(nodes []NodeProgress) *NodeRollup {
	r := &NodeRollup{Total: len(nodes)}
	list := slices.Clone(nodes)
	for _, n := range list {
		switch n.State {
		case NodePulled:
			r.Done++
		case NodePulling:
			r.Pulling++
		case NodeFailed:
			r.Failed++
		}
	}
	slices.SortFunc(list, func(a, b NodeProgress) int {
		af, bf := a.State == NodeFailed, b.State == NodeFailed
		switch {
		case af && !bf:
			return -1
		case bf && !af:
			return 1
		}
		return strings.Compare(a.Node, b.Node)
	})
	if len(list) > MaxReportedNodes {
		list = list[:MaxReportedNodes]
	}
	r.Nodes = list
	return r
}

// NodeJob is a pre-pull job as a node agent receives it from its site:
// the images by digest, the job's node selector, and whether the node may
// pull now (false outside the site's sync window for a job with
// respectWindow).
type NodeJob struct {
	Job          string            `json:"job"`
	Images       []StagedImage     `json:"images"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	PullNow      bool              `json:"pullNow"`
}

// NodeReport is a node agent's progress on one job, sent to its site.
type NodeReport struct {
	Job string `json:"job"`
	NodeProgress
}

// Lease is the answer to a node asking for one of the site's pull slots:
// granted, or refused while Limit nodes hold one. A granted lease expires
// after TTLSeconds unless the node renews it.
type Lease struct {
	Granted    bool `json:"granted"`
	Holders    int  `json:"holders"`
	Limit      int  `json:"limit"`
	TTLSeconds int  `json:"ttlSeconds"`
}

// ValidNodeName checks a node name as Kubernetes spells them (a DNS
// subdomain), which is also safe in a URL path.
func ValidNodeName(n string) error {
	if n == "" || len(n) > 253 {
		return fmt.Errorf("%w: node name %q: 1 to 253 characters", identity.ErrInvalid, n)
	}
	for _, c := range n {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return fmt.Errorf("%w: node name %q: lowercase letters, digits, '-' and '.'", identity.ErrInvalid, n)
		}
	}
	return nil
}

// ValidateNodeSelector checks label keys and values as Kubernetes allows
// them: a key is an optional DNS prefix and a name of at most 63
// characters; a value at most 63 characters.
func ValidateNodeSelector(sel map[string]string) error {
	for k, v := range sel {
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if i == 0 || i > 253 {
				return fmt.Errorf("%w: nodeSelector key %q: bad prefix", identity.ErrInvalid, k)
			}
			name = k[i+1:]
		}
		if !labelPart(name, false) {
			return fmt.Errorf("%w: nodeSelector key %q: want [prefix/]name of letters, digits, '-', '_', '.' (63 at most)", identity.ErrInvalid, k)
		}
		if !labelPart(v, true) {
			return fmt.Errorf("%w: nodeSelector value %q of %q: letters, digits, '-', '_', '.' (63 at most)", identity.ErrInvalid, v, k)
		}
	}
	return nil
}

func labelPart(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	if len(s) > 63 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// MatchNodeSelector reports whether a node's labels satisfy a selector
// (every key present with the value).
func MatchNodeSelector(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
