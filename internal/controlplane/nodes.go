package controlplane

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
)

// Node states of a pre-pull job's node stage, as `stage show --nodes`
// lists them.
const (
	NodePending = "Pending"
	NodePulling = "Pulling"
	NodePulled  = "Pulled"
	NodeFailed  = "Failed"
)

// MaxReportedNodes bounds the per-node list a site sends up with each
// heartbeat: the failing nodes first, then the others; the counts always
// cover every node.
const MaxReportedNodes = 500

// NodeProgress is one node's state on a pre-pull job.
type NodeProgress struct {
	Node        string     `json:"node"`
	State       string     `json:"state"`
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
		return fmt.Errorf("%w: node name %q: 1 to 253 characters", auth.ErrInvalid, n)
	}
	for _, c := range n {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return fmt.Errorf("%w: node name %q: lowercase letters, digits, '-' and '.'", auth.ErrInvalid, n)
		}
	}
	return nil
}

// validNodeSelector checks label keys and values as Kubernetes allows
// them: a key is an optional DNS prefix and a name of at most 63
// characters; a value at most 63 characters.
func validNodeSelector(sel map[string]string) error {
	for k, v := range sel {
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if i == 0 || i > 253 {
				return fmt.Errorf("%w: nodeSelector key %q: bad prefix", auth.ErrInvalid, k)
			}
			name = k[i+1:]
		}
		if !labelPart(name, false) {
			return fmt.Errorf("%w: nodeSelector key %q: want [prefix/]name of letters, digits, '-', '_', '.' (63 at most)", auth.ErrInvalid, k)
		}
		if !labelPart(v, true) {
			return fmt.Errorf("%w: nodeSelector value %q of %q: letters, digits, '-', '_', '.' (63 at most)", auth.ErrInvalid, v, k)
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

// NodeTokenRequest is the body of POST …/{name}/node-token.
type NodeTokenRequest struct {
	// GeneratePassword is the password slot to (re)generate, 1 or 2.
	GeneratePassword int `json:"generatePassword"`
}

// NodeToken is the answer of POST …/{name}/node-token.
type NodeToken struct {
	TokenName string `json:"tokenName"`
	Password  string `json:"password"`
	ScopeMap  string `json:"scopeMap"`
}

// nodeScopeMapName and nodeTokenName name a site's node identity.
func nodeScopeMapName(site string) string { return site + "-node-scope-map" }
func nodeTokenName(site string) string    { return site + "-node-token" }

// CreateNodeToken makes (or, when it exists, generates a new password of)
// the node token of a connected registry: <name>-node-token, bound to
// <name>-node-scope-map, which grants gateway/<name>/nodes/write and
// content/read and metadata/read on the repositories the site serves and
// stages, and nothing else. It becomes a client token of the site, so the
// site authenticates it (the node agents pull and report with it).
func (s *Service) CreateNodeToken(name string, req NodeTokenRequest) (*NodeToken, error) {
	if req.GeneratePassword == 0 {
		req.GeneratePassword = 1
	}
	if req.GeneratePassword != 1 && req.GeneratePassword != 2 {
		return nil, fmt.Errorf("%w: generatePassword %d: want 1 or 2", auth.ErrInvalid, req.GeneratePassword)
	}
	var out *NodeToken
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		tok, sm := nodeTokenName(name), nodeScopeMapName(name)
		if _, err := tx.ScopeMap(sm); err != nil {
			if err := tx.PutScopeMap(&auth.ScopeMap{Name: sm}); err != nil {
				return err
			}
		}
		if _, err := tx.Token(tok); err != nil {
			if err := tx.PutToken(&auth.Token{Name: tok, ScopeMap: sm, Status: auth.StatusEnabled}); err != nil {
				return err
			}
		}
		if !slices.Contains(c.ClientTokens, tok) {
			c.ClientTokens = append(c.ClientTokens, tok)
			if err := tx.PutRecord(bucket, c.Name, c); err != nil {
				return err
			}
		}
		if err := rebuildSyncScopeMaps(tx); err != nil {
			return err
		}
		slot := auth.Password1
		if req.GeneratePassword == 2 {
			slot = auth.Password2
		}
		view, err := adminapi.GenerateCredential(tx, tok, slot, 0)
		if err != nil {
			return err
		}
		out = &NodeToken{TokenName: tok, ScopeMap: sm, Password: view.Credentials.Passwords[0].Value}
		return nil
	})
	return out, err
}

// nodeScopeMap rewrites a site's node scope map, when the site has one:
// read access to what the site serves and stages, and its node actions.
func nodeScopeMap(tx *auth.Tx, c *ConnectedRegistry, jobs []*StagingJob) error {
	old, err := tx.ScopeMap(nodeScopeMapName(c.Name))
	if err != nil {
		return nil //nolint:nilerr // no node token made for this site
	}
	m := &auth.ScopeMap{Name: old.Name, Created: old.Created, Description: "Node agents of connected registry " + c.Name + " (pre-pull)",
		Gateway: []auth.Action{auth.Action("gateway/" + c.Name + "/nodes/write")}}
	read := []auth.Action{auth.ContentRead, auth.MetadataRead}
	var add []auth.RepositoryGrant
	for _, r := range append(slices.Clone(c.Repositories), stagedRepos(jobs, c.Name)...) {
		add = append(add, auth.RepositoryGrant{Repository: r, Actions: read})
	}
	m.Repositories = adminapi.MergeGrants(nil, add, nil)
	if err := tx.PutScopeMap(m); err != nil {
		return fmt.Errorf("node scope map of %s: %w", c.Name, err)
	}
	return nil
}
