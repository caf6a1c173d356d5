package controlplane

import (
	"fmt"
	"slices"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// maxEvents is how many notifications the root keeps per registry.
const maxEvents = 100

// maxBundles is how many imported bundles the root keeps per registry.
const maxBundles = 20

// ErrConflict reports a second live activation.
var ErrConflict = fmt.Errorf("%w: already active", auth.ErrExists)

// edgeConfig builds the configuration of a connected registry.
func (s *Service) edgeConfig(c *protocol.ConnectedRegistry) *protocol.EdgeConfig {
	cfg := &protocol.EdgeConfig{
		Name: c.Name, Mode: c.Mode, Repositories: c.Repositories, SyncSchedule: c.SyncSchedule,
		SyncWindow: c.SyncWindow, SyncMessageTTL: c.SyncMessageTTL, LogLevel: c.LogLevel,
		Notifications: c.Notifications, ClientTokens: []*auth.Token{}, ScopeMaps: []*auth.ScopeMap{},
		BundleKey: s.BundleKey(),
	}
	addScopeMap := func(t *auth.Token) {
		if m, err := s.store.ScopeMap(t.ScopeMap); err == nil && !slices.ContainsFunc(cfg.ScopeMaps, func(x *auth.ScopeMap) bool { return x.Name == m.Name }) {
			cfg.ScopeMaps = append(cfg.ScopeMaps, m)
		}
	}
	for _, n := range c.ClientTokens {
		t, err := s.store.Token(n)
		if err != nil {
			continue
		}
		// A gateway keeps its children's tokens marked Relay; at the
		// child they are its own. (A copy: t is the store's.)
		own := *t
		own.Relay = false
		cfg.ClientTokens = append(cfg.ClientTokens, &own)
		addScopeMap(t)
	}
	// A gateway gets its descendants, their tokens and scope maps.
	all, _ := s.List("")
	children := map[string][]*protocol.ConnectedRegistry{}
	for _, o := range all {
		children[o.Parent] = append(children[o.Parent], o)
	}
	queue := append([]*protocol.ConnectedRegistry(nil), children[c.Name]...)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		v := *d
		v.ActivationID = ""
		cfg.Descendants = append(cfg.Descendants, &v)
		for _, n := range append([]string{d.SyncToken}, d.ClientTokens...) {
			if t, err := s.store.Token(n); err == nil && !slices.ContainsFunc(cfg.GatewayTokens, func(x *auth.Token) bool { return x.Name == n }) {
				cfg.GatewayTokens = append(cfg.GatewayTokens, t)
				addScopeMap(t)
			}
		}
		queue = append(queue, children[d.Name]...)
	}
	// A gateway stages what its descendants must stage (it is their
	// source), and hands the jobs down.
	names := []string{c.Name}
	for _, d := range cfg.Descendants {
		names = append(names, d.Name)
	}
	cfg.Staging = s.tasksFor(names...)
	cfg.DescendantJobs = s.jobsFor(names[1:]...)
	return cfg
}

// isDescendant reports whether name is below ancestor.
func isDescendant(tx *auth.Tx, name, ancestor string) bool {
	for i := 0; i < 64 && name != ""; i++ {
		c, err := getCR(tx, name)
		if err != nil {
			return false
		}
		if c.Parent == ancestor {
			return true
		}
		name = c.Parent
	}
	return false
}

// recordDescendants stores the status a gateway reports for the registries
// below it (only those really below it).
func recordDescendants(tx *auth.Tx, gateway string, ds []*protocol.ConnectedRegistry) error {
	for _, d := range ds {
		if !isDescendant(tx, d.Name, gateway) {
			continue
		}
		c, err := getCR(tx, d.Name)
		if err != nil {
			continue
		}
		c.ActivationStatus, c.ConnectionState, c.LastActivity, c.LastSync = d.ActivationStatus, d.ConnectionState, d.LastActivity, d.LastSync
		c.LastSyncResult, c.LoginServer, c.Version, c.StatusDetails = d.LastSyncResult, d.LoginServer, d.Version, d.StatusDetails
		c.HeartbeatSeconds, c.Volume = d.HeartbeatSeconds, d.Volume
		c.ResyncRequested = false // passed down with this exchange
		if len(d.Bundles) > 0 {
			c.Bundles = d.Bundles // the gateway keeps the last ones in full
		}
		c.Events = append(c.Events, d.Events...)
		if len(c.Events) > maxEvents {
			c.Events = c.Events[len(c.Events)-maxEvents:]
		}
		if err := tx.PutRecord(bucket, c.Name, c); err != nil {
			return err
		}
	}
	return nil
}

// ReplicateDescendants installs, at a gateway, the descendants it received
// from its parent, keeping the status it tracks itself (activation,
// heartbeats) and removing descendants its parent no longer lists. Events
// reported upward are cleared.
func (s *Service) ReplicateDescendants(ds []*protocol.ConnectedRegistry) error {
	return s.store.Update(func(tx *auth.Tx) error {
		keep := map[string]bool{}
		for _, d := range ds {
			keep[d.Name] = true
			c := *d
			if old, err := getCR(tx, d.Name); err == nil {
				c.ActivationStatus, c.ActivationID, c.ConnectionState, c.LastActivity = old.ActivationStatus, old.ActivationID, old.ConnectionState, old.LastActivity
				c.LastSync, c.LastSyncResult, c.LoginServer, c.Version, c.StatusDetails = old.LastSync, old.LastSyncResult, old.LoginServer, old.Version, old.StatusDetails
				c.HeartbeatSeconds, c.Events, c.ResyncRequested = old.HeartbeatSeconds, old.Events, old.ResyncRequested || d.ResyncRequested
				c.Bundles = old.Bundles
				c.Volume = old.Volume
			} else {
				c.ActivationStatus, c.ActivationID, c.ConnectionState = protocol.ActivationInactive, "", protocol.StateOffline
				c.LastActivity, c.Events = nil, nil
			}
			if err := tx.PutRecord(bucket, c.Name, &c); err != nil {
				return err
			}
		}
		all, err := allCRs(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			if !keep[c.Name] {
				if err := tx.DeleteRecord(bucket, c.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// DescendantStatus returns the local records of the registries below this
// gateway, for its heartbeat, and clears the events it reports.
func (s *Service) DescendantStatus() []*protocol.ConnectedRegistry {
	var out []*protocol.ConnectedRegistry
	_ = s.store.Update(func(tx *auth.Tx) error {
		all, err := allCRs(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			v := *c
			v.ActivationID = ""
			liveness(&v, time.Duration(max(v.HeartbeatSeconds, 30))*time.Second, time.Now())
			out = append(out, &v)
			if len(c.Events) > 0 {
				c.Events = nil
				if err := tx.PutRecord(bucket, c.Name, c); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out
}

// liveness marks a registry Offline when it missed two heartbeats.
func liveness(c *protocol.ConnectedRegistry, interval time.Duration, now time.Time) {
	if c.ConnectionState == protocol.StateOffline || c.LastActivity == nil {
		return
	}
	if now.Sub(*c.LastActivity) > 2*interval+5*time.Second {
		c.ConnectionState = protocol.StateOffline
	}
}

// Activate records an edge's activation; a second live activation with
// another ID is refused until deactivate.
func (s *Service) Activate(name string, req protocol.ActivateRequest) (*protocol.EdgeConfig, error) {
	if req.ActivationID == "" {
		return nil, fmt.Errorf("%w: activationId is required", auth.ErrInvalid)
	}
	var out *protocol.EdgeConfig
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		if c.ActivationStatus == protocol.ActivationActive && c.ActivationID != "" && c.ActivationID != req.ActivationID {
			return fmt.Errorf("%w: connected registry %q is active in another deployment; run `outpost connected-registry deactivate --name %s` first", ErrConflict, name, name)
		}
		now := tx.Now()
		c.ActivationStatus, c.ActivationID = protocol.ActivationActive, req.ActivationID
		c.ConnectionState, c.LastActivity = protocol.StateOnline, &now
		c.LoginServer, c.Version = req.LoginServer, req.Version
		out = s.edgeConfig(c)
		return tx.PutRecord(bucket, name, c)
	})
	return out, err
}

// RecordHeartbeat stores an edge's status and returns its configuration.
func (s *Service) RecordHeartbeat(name string, hb protocol.Heartbeat) (*protocol.EdgeConfig, error) {
	var out *protocol.EdgeConfig
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		if c.ActivationID != hb.ActivationID {
			return fmt.Errorf("%w: connected registry %q is not activated by this deployment", ErrConflict, name)
		}
		now := tx.Now()
		c.LastActivity = &now
		c.ConnectionState = hb.ConnectionState
		if c.ConnectionState == "" {
			c.ConnectionState = protocol.StateOnline
		}
		if hb.LastSyncTime != nil {
			c.LastSync = hb.LastSyncTime
		}
		if hb.LastSyncResult != nil {
			c.LastSyncResult = hb.LastSyncResult
			if err := recordRun(tx, name, hb.LastSyncResult); err != nil {
				return err
			}
		}
		if hb.Version != "" {
			c.Version = hb.Version
		}
		if hb.LoginServer != "" {
			c.LoginServer = hb.LoginServer
		}
		c.StatusDetails = hb.StatusDetails
		if hb.Volume != nil {
			c.Volume = hb.Volume
		}
		if err := recordStaging(tx, name, hb.Staging); err != nil {
			return err
		}
		s.noteFinished(hb.Staging)
		if err := recordDescendants(tx, name, hb.Descendants); err != nil {
			return err
		}
		for _, r := range hb.DescendantStaging {
			if isDescendant(tx, r.Site, name) {
				if err := recordStaging(tx, r.Site, []protocol.StageReport{r.StageReport}); err != nil {
					return err
				}
				s.noteFinished([]protocol.StageReport{r.StageReport})
			}
		}
		c.Bundles = append(c.Bundles, hb.Bundles...)
		if len(c.Bundles) > maxBundles {
			c.Bundles = c.Bundles[len(c.Bundles)-maxBundles:]
		}
		c.Events = append(c.Events, hb.Events...)
		if len(c.Events) > maxEvents {
			c.Events = c.Events[len(c.Events)-maxEvents:]
		}
		if hb.IntervalSeconds > 0 {
			c.HeartbeatSeconds = hb.IntervalSeconds
		}
		out = s.edgeConfig(c)
		out.Resync, c.ResyncRequested = c.ResyncRequested, false
		return tx.PutRecord(bucket, name, c)
	})
	return out, err
}

// RequestResync asks the edge to run a sync at its next heartbeat.
func (s *Service) RequestResync(name string) error {
	return s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		c.ResyncRequested = true
		return tx.PutRecord(bucket, name, c)
	})
}

// Config returns the configuration of a connected registry, as its edge
// reads it.
func (s *Service) Config(name string) (*protocol.EdgeConfig, error) {
	c, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	return s.edgeConfig(c), nil
}
