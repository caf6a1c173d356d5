// Package controlplane manages the fleet of connected registries that a
// root (or gateway) Outpost declares: the connected-registry resources,
// their sync scope maps and tokens, activation and heartbeats, the status
// that edges report, and staging jobs with their release lifecycle. Its
// records live in the identity store, in buckets it names, so that each
// change commits together with the tokens and scope maps it touches. The
// types it stores and answers are protocol's; adminapi serves it, and
// only server wires it.
package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// bucket is where connected registries are kept in the identity store,
// so that each change commits together with its tokens and scope maps.
const bucket = "connected-registries"

// Service manages connected registries.
type Service struct {
	store *auth.Store
	now   func() time.Time
	// staged is signalled when a site reports a job finished, so that a
	// gateway relays it up at once rather than with its next heartbeat.
	staged chan struct{}
	// loginServer is the address this registry's children use (empty:
	// the address a get-settings request reached).
	loginServer string
	// bundleKey is the root's bundle public key (PEM) handed to children.
	bundleKey atomic.Pointer[string]
}

// SetBundleKey sets the bundle public key (PEM) sent to this registry's
// children: the root's own, or at a gateway the one its parent sent.
func (s *Service) SetBundleKey(pem string) { s.bundleKey.Store(&pem) }

// BundleKey returns the key SetBundleKey set ("" when none).
func (s *Service) BundleKey() string {
	if p := s.bundleKey.Load(); p != nil {
		return *p
	}
	return ""
}

// SetLoginServer sets the address written into the connection strings of
// this registry's children.
func (s *Service) SetLoginServer(addr string) { s.loginServer = addr }

// NewService returns a Service on the identity store.
func NewService(store *auth.Store) *Service {
	return &Service{store: store, now: time.Now, staged: make(chan struct{}, 1)}
}

// StagingFinished is signalled (coalesced) when a site reports that a
// staging job ended, Staged or Failed.
func (s *Service) StagingFinished() <-chan struct{} { return s.staged }

func decodeCR(raw []byte) (*protocol.ConnectedRegistry, error) {
	c := &protocol.ConnectedRegistry{}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, fmt.Errorf("decode connected registry: %w", err)
	}
	return c, nil
}

func getCR(tx *auth.Tx, name string) (*protocol.ConnectedRegistry, error) {
	c := &protocol.ConnectedRegistry{}
	if err := tx.Record(bucket, name, c); err != nil {
		return nil, fmt.Errorf("connected registry %q: %w", name, auth.ErrNotFound)
	}
	return c, nil
}

func allCRs(tx *auth.Tx) ([]*protocol.ConnectedRegistry, error) {
	var out []*protocol.ConnectedRegistry
	err := tx.Records(bucket, func(_ string, raw []byte) error {
		c, err := decodeCR(raw)
		if err == nil {
			out = append(out, c)
		}
		return err
	})
	return out, err
}

// List returns the connected registries, those under parent only when
// parent is set.
func (s *Service) List(parent string) ([]*protocol.ConnectedRegistry, error) {
	var out []*protocol.ConnectedRegistry
	err := s.store.Records(bucket, func(_ string, raw []byte) error {
		c, err := decodeCR(raw)
		if err != nil {
			return err
		}
		if parent == "" || c.Parent == parent {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// Get returns one connected registry.
func (s *Service) Get(name string) (*protocol.ConnectedRegistry, error) {
	c := &protocol.ConnectedRegistry{}
	if err := s.store.Record(bucket, name, c); err != nil {
		return nil, fmt.Errorf("connected registry %q: %w", name, auth.ErrNotFound)
	}
	return c, nil
}

// checkRelations validates what depends on other resources: the parent
// (exists, no cycle, a ReadOnly parent only has ReadOnly children, a
// ReadOnly registry cannot keep ReadWrite children) and the client tokens.
func checkRelations(tx *auth.Tx, c *protocol.ConnectedRegistry, all []*protocol.ConnectedRegistry) error {
	byName := map[string]*protocol.ConnectedRegistry{}
	for _, o := range all {
		byName[o.Name] = o
	}
	byName[c.Name] = c
	if c.Parent != "" {
		p, ok := byName[c.Parent]
		if !ok || c.Parent == c.Name {
			return fmt.Errorf("%w: parent %q: no such connected registry", auth.ErrInvalid, c.Parent)
		}
		if p.Mode == protocol.ReadOnly && c.Mode == protocol.ReadWrite {
			return fmt.Errorf("%w: mode: a ReadOnly parent (%s) accepts only ReadOnly children", auth.ErrInvalid, p.Name)
		}
		seen := map[string]bool{c.Name: true}
		for cur := p; cur != nil && cur.Parent != ""; cur = byName[cur.Parent] {
			if seen[cur.Parent] {
				return fmt.Errorf("%w: parent %q: the parents would form a cycle", auth.ErrInvalid, c.Parent)
			}
			seen[cur.Name] = true
		}
	}
	if c.Mode == protocol.ReadOnly {
		for _, o := range all {
			if o.Parent == c.Name && o.Mode == protocol.ReadWrite {
				return fmt.Errorf("%w: mode: %s has the ReadWrite child %s", auth.ErrInvalid, c.Name, o.Name)
			}
		}
	}
	for _, t := range c.ClientTokens {
		if _, err := tx.Token(t); err != nil {
			return fmt.Errorf("%w: clientTokens: token %q does not exist", auth.ErrInvalid, t)
		}
	}
	return nil
}

// actionsFor returns the repository actions a sync token needs in a mode.
func actionsFor(m protocol.Mode) []auth.Action {
	if m == protocol.ReadWrite {
		return slices.Clone(auth.RepositoryActions)
	}
	return []auth.Action{auth.ContentRead, auth.MetadataRead}
}

// gatewayActions are the control actions of a connected registry.
func gatewayActions(name string) []auth.Action {
	var out []auth.Action
	for _, k := range []string{"config", "message"} {
		for _, op := range []string{"read", "write"} {
			out = append(out, auth.Action("gateway/"+name+"/"+k+"/"+op))
		}
	}
	return out
}

// rebuildSyncScopeMaps rewrites every sync scope map from the hierarchy:
// each grants its registry's repositories and gateway actions, plus those
// of every descendant.
func rebuildSyncScopeMaps(tx *auth.Tx) error {
	all, err := allCRs(tx)
	if err != nil {
		return err
	}
	children := map[string][]*protocol.ConnectedRegistry{}
	for _, c := range all {
		children[c.Parent] = append(children[c.Parent], c)
	}
	jobs, err := allJobs(tx)
	if err != nil {
		return err
	}
	for _, c := range all {
		m := &auth.ScopeMap{Name: c.SyncScopeMap, Description: "Sync scope map of connected registry " + c.Name}
		if old, err := tx.ScopeMap(c.SyncScopeMap); err == nil {
			m.Created = old.Created
		}
		var add []auth.RepositoryGrant
		queue := []*protocol.ConnectedRegistry{c}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			for _, r := range cur.Repositories {
				add = append(add, auth.RepositoryGrant{Repository: r, Actions: actionsFor(cur.Mode)})
			}
			// Staging jobs widen the scope for as long as they exist.
			for _, r := range stagedRepos(jobs, cur.Name) {
				add = append(add, auth.RepositoryGrant{Repository: r, Actions: []auth.Action{auth.ContentRead, auth.MetadataRead}})
			}
			m.Gateway = append(m.Gateway, gatewayActions(cur.Name)...)
			queue = append(queue, children[cur.Name]...)
		}
		m.Repositories = auth.MergeGrants(nil, add, nil)
		if err := tx.PutScopeMap(m); err != nil {
			return fmt.Errorf("sync scope map of %s: %w", c.Name, err)
		}
		if err := nodeScopeMap(tx, c, jobs); err != nil {
			return err
		}
	}
	return nil
}

// Create adds a connected registry with its sync scope map and sync token
// (without passwords: get-settings generates them), in one transaction.
// A token already named <name>-sync-token (left by a deleted connected
// registry, or made by hand) becomes the sync token, as in az: it is bound
// to the sync scope map and enabled. The notes say what was changed.
func (s *Service) Create(c *protocol.ConnectedRegistry) (*protocol.ConnectedRegistry, []string, error) {
	c.ApplyDefaults()
	c.ActivationStatus, c.ConnectionState = protocol.ActivationInactive, protocol.StateOffline
	c.LastActivity, c.LastSync, c.LoginServer, c.Version, c.StatusDetails, c.LastSyncResult, c.ActivationID = nil, nil, "", "", nil, nil, ""
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	c.SyncToken = c.Name + "-sync-token"
	c.SyncScopeMap = c.Name + "-sync-scope-map"
	var notes []string
	err := s.store.Update(func(tx *auth.Tx) error {
		notes = nil
		if _, err := getCR(tx, c.Name); err == nil {
			return fmt.Errorf("%w: connected registry %q", auth.ErrExists, c.Name)
		}
		all, err := allCRs(tx)
		if err != nil {
			return err
		}
		if err := checkRelations(tx, c, all); err != nil {
			return err
		}
		c.Created = tx.Now()
		if err := tx.PutRecord(bucket, c.Name, c); err != nil {
			return err
		}
		if _, err := tx.ScopeMap(c.SyncScopeMap); err != nil {
			if err := tx.PutScopeMap(&auth.ScopeMap{Name: c.SyncScopeMap}); err != nil {
				return err
			}
		}
		if err := rebuildSyncScopeMaps(tx); err != nil {
			return err
		}
		t, err := tx.Token(c.SyncToken)
		if err != nil {
			return tx.PutToken(&auth.Token{Name: c.SyncToken, ScopeMap: c.SyncScopeMap, Status: auth.StatusEnabled})
		}
		changed := false
		if t.ScopeMap != c.SyncScopeMap {
			notes = append(notes, fmt.Sprintf("the existing token %s was bound to scope map %s: it is now bound to %s", t.Name, t.ScopeMap, c.SyncScopeMap))
			t.ScopeMap, changed = c.SyncScopeMap, true
		}
		if t.Status != auth.StatusEnabled {
			notes = append(notes, fmt.Sprintf("the existing token %s was %s: it is now enabled", t.Name, t.Status))
			t.Status, changed = auth.StatusEnabled, true
		}
		if len(t.Passwords) > 0 {
			notes = append(notes, fmt.Sprintf("the existing passwords of %s still work: get-settings --generate-password 1 and 2 replace them", t.Name))
		}
		if !changed {
			return nil
		}
		return tx.PutToken(t)
	})
	if err != nil {
		return nil, nil, err
	}
	return c, notes, nil
}

func addRemove(list, add, remove []string) []string {
	out := slices.Clone(list)
	for _, a := range add {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return slices.DeleteFunc(out, func(v string) bool { return slices.Contains(remove, v) })
}

// UpdateSettings applies u to a connected registry in one transaction,
// rewriting the sync scope maps when repositories or mode change.
func (s *Service) UpdateSettings(name string, u protocol.Update) (*protocol.ConnectedRegistry, error) {
	var out *protocol.ConnectedRegistry
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		if u.Mode != "" {
			if c.Mode, err = protocol.ParseMode(u.Mode); err != nil {
				return err
			}
		}
		if u.SyncSchedule != "" {
			c.SyncSchedule = u.SyncSchedule
		}
		if u.SyncWindow != nil {
			c.SyncWindow = *u.SyncWindow
		}
		if u.SyncMessageTTL != "" {
			c.SyncMessageTTL = u.SyncMessageTTL
		}
		if u.LogLevel != "" {
			c.LogLevel = u.LogLevel
		}
		c.ClientTokens = addRemove(c.ClientTokens, u.AddClientTokens, u.RemoveClientTokens)
		c.Notifications = addRemove(c.Notifications, u.AddNotifications, u.RemoveNotif)
		c.Repositories = addRemove(c.Repositories, u.AddRepositories, u.RemoveRepositories)
		if err := c.Validate(); err != nil {
			return err
		}
		all, err := allCRs(tx)
		if err != nil {
			return err
		}
		others := slices.DeleteFunc(all, func(o *protocol.ConnectedRegistry) bool { return o.Name == c.Name })
		if err := checkRelations(tx, c, others); err != nil {
			return err
		}
		if err := tx.PutRecord(bucket, c.Name, c); err != nil {
			return err
		}
		out = c
		return rebuildSyncScopeMaps(tx)
	})
	return out, err
}

// Delete removes a connected registry that has no children; with cleanup
// its sync token and sync scope map go too.
func (s *Service) Delete(name string, cleanup bool) error {
	return s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		all, err := allCRs(tx)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Parent == name {
				return fmt.Errorf("%w: connected registry %q has the child %q; delete the children first", auth.ErrInUse, name, o.Name)
			}
		}
		if err := tx.DeleteRecord(bucket, name); err != nil {
			return err
		}
		if err := tx.DeleteRecord(historyBucket, name); err != nil && !errors.Is(err, auth.ErrNotFound) {
			return err
		}
		if cleanup {
			if _, err := tx.Token(c.SyncToken); err == nil {
				if err := tx.DeleteToken(c.SyncToken); err != nil {
					return err
				}
			}
			if _, err := tx.ScopeMap(c.SyncScopeMap); err == nil {
				if err := tx.DeleteScopeMap(c.SyncScopeMap); err != nil {
					return err
				}
			}
		}
		return rebuildSyncScopeMaps(tx)
	})
}

// Deactivate returns a connected registry to Inactive so that a new
// deployment can activate it.
func (s *Service) Deactivate(name string) (*protocol.ConnectedRegistry, error) {
	var out *protocol.ConnectedRegistry
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		c.ActivationStatus, c.ActivationID, c.ConnectionState = protocol.ActivationInactive, "", protocol.StateOffline
		out = c
		return tx.PutRecord(bucket, name, c)
	})
	return out, err
}

// GetSettings builds the connection string of a connected registry. Its
// parent endpoint is, for a child of the root, the configured login server
// (SetLoginServer) or else rootEndpoint (the address the caller used); for
// other registries the
// parent's login server. With generate 1 or 2 that password of the sync
// token is regenerated (the old value stops working) and included.
func (s *Service) GetSettings(name, proto string, generate int, rootEndpoint string) (*protocol.Settings, error) {
	if proto != "https" && proto != "http" {
		return nil, fmt.Errorf("%w: parentProtocol %q: want https or http", auth.ErrInvalid, proto)
	}
	if generate < 0 || generate > 2 {
		return nil, fmt.Errorf("%w: generatePassword %d: want 1 or 2", auth.ErrInvalid, generate)
	}
	if s.loginServer != "" {
		rootEndpoint = s.loginServer
	}
	var out *protocol.Settings
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		endpoint := rootEndpoint
		if c.Parent != "" {
			p, err := getCR(tx, c.Parent)
			if err != nil {
				return err
			}
			if p.LoginServer == "" {
				return fmt.Errorf("%w: parent %q has not been activated yet, so its endpoint is unknown", auth.ErrInvalid, c.Parent)
			}
			endpoint = p.LoginServer
		}
		cs := protocol.ConnectionString{
			ConnectedRegistryName: c.Name, SyncTokenName: c.SyncToken, SyncTokenPassword: "<password>",
			ParentGatewayEndpoint: endpoint, ParentEndpointProtocol: proto,
		}
		out = &protocol.Settings{SyncTokenName: c.SyncToken}
		if generate == 0 {
			out.Note = "No password was generated: the connection string holds the placeholder <password>. Use --generate-password 1 or 2 to get a usable connection string (this rotates that password)."
			out.ConnectionString = cs.String()
			return nil
		}
		slot := auth.Password1
		if generate == 2 {
			slot = auth.Password2
		}
		view, err := tx.GenerateCredential(c.SyncToken, slot, 0)
		if err != nil {
			return err
		}
		cs.SyncTokenPassword = view.Credentials.Passwords[0].Value
		out.Password = cs.SyncTokenPassword
		out.ConnectionString = cs.String()
		return nil
	})
	return out, err
}

// ClientTokens returns the client tokens of a connected registry.
func (s *Service) ClientTokens(name string) ([]*auth.Token, error) {
	c, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	var out []*auth.Token
	for _, n := range c.ClientTokens {
		t, err := s.store.Token(n)
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}
