package controlplane

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// EdgeConfig is what a connected registry receives from its parent on
// activation and with every heartbeat.
type EdgeConfig struct {
	Name           string   `json:"name"`
	Mode           Mode     `json:"mode"`
	Repositories   []string `json:"repositories"`
	SyncSchedule   string   `json:"syncSchedule"`
	SyncWindow     string   `json:"syncWindow,omitempty"`
	SyncMessageTTL string   `json:"syncMessageTtl"`
	LogLevel       string   `json:"logLevel"`
	Notifications  []string `json:"notifications"`
	// ClientTokens are the tokens local clients use, with their password
	// hashes, and the scope maps they are bound to.
	ClientTokens []*auth.Token    `json:"clientTokens"`
	ScopeMaps    []*auth.ScopeMap `json:"scopeMaps"`
	// Resync asks for an immediate sync run.
	Resync bool `json:"resync,omitempty"`
	// Staging lists the staging jobs the registry must carry out.
	Staging []StageTask `json:"staging,omitempty"`
	// Descendants are the connected registries below this one, for which
	// it is the gateway, with the tokens (sync and client) and scope maps
	// they authenticate with. Their repositories are synced too.
	Descendants []*ConnectedRegistry `json:"descendants,omitempty"`
	// GatewayTokens are the descendants' sync and client tokens.
	GatewayTokens []*auth.Token `json:"gatewayTokens,omitempty"`
	// DescendantJobs are the staging jobs that target a descendant: the
	// gateway hands them down as its children's tasks and reports their
	// progress back up.
	DescendantJobs []*StagingJob `json:"descendantJobs,omitempty"`
	// BundleKey is the root's public key for air-gap bundles (PEM), the
	// key the registry verifies imported bundles with.
	BundleKey string `json:"bundleKey,omitempty"`
}

// DescendantRepositories lists the repositories of every descendant.
func (c *EdgeConfig) DescendantRepositories() []string {
	var out []string
	for _, d := range c.Descendants {
		for _, r := range d.Repositories {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// ActivateRequest is sent by an edge when it starts.
type ActivateRequest struct {
	ActivationID string `json:"activationId"`
	LoginServer  string `json:"loginServer"`
	Version      string `json:"version"`
}

// Heartbeat is the status an edge reports periodically.
type Heartbeat struct {
	ActivationID    string      `json:"activationId"`
	ConnectionState string      `json:"connectionState"`
	LastSyncTime    *time.Time  `json:"lastSyncTime,omitempty"`
	LastSyncResult  *SyncResult `json:"lastSyncResult,omitempty"`
	Version         string      `json:"version"`
	LoginServer     string      `json:"loginServer,omitempty"`
	IntervalSeconds int         `json:"intervalSeconds"`
	StatusDetails   []string    `json:"statusDetails,omitempty"`
	// Events are local pushes and deletes matching the notification
	// patterns, delivered since the last heartbeat.
	Events []Event `json:"events,omitempty"`
	// Staging reports progress on staging jobs.
	Staging []StageReport `json:"staging,omitempty"`
	// Descendants carries the status of the registries below a gateway.
	Descendants []*ConnectedRegistry `json:"descendants,omitempty"`
	// DescendantStaging is the staging progress of the registries below a
	// gateway, as they reported it to the gateway.
	DescendantStaging []SiteReport `json:"descendantStaging,omitempty"`
	// Bundles are the air-gap bundles imported since the last heartbeat.
	Bundles []BundleImport `json:"bundles,omitempty"`
}

// BundleImport is an air-gap bundle a connected registry imported: what
// the root then knows the site holds.
type BundleImport struct {
	ID           string          `json:"id"`
	Time         time.Time       `json:"time"`
	Images       []ImportedImage `json:"images"`
	BlobsWritten int64           `json:"blobsWritten"`
	BytesWritten int64           `json:"bytesWritten"`
}

// ImportedImage is one image a bundle delivered.
type ImportedImage struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
}

// maxBundles is how many imported bundles the root keeps per registry.
const maxBundles = 20

// Event is a notification of a push or delete at a connected registry.
type Event struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	Action     string    `json:"action"`
	Time       time.Time `json:"time"`
}

// maxEvents is how many notifications the root keeps per registry.
const maxEvents = 100

// ErrConflict reports a second live activation.
var ErrConflict = fmt.Errorf("%w: already active", auth.ErrExists)

// gatewayAuthz lets a sync token use the gateway routes of its connected
// registry (and, for a parent gateway, of its descendants).
func gatewayAuthz(svc *auth.Service, op string) adminapi.Authz {
	return func(r *http.Request, p *auth.Principal) error {
		if p == nil {
			return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: `Basic realm="outpost"`}
		}
		if !svc.AllowedGateway(p, auth.Action("gateway/"+r.PathValue("name")+"/"+op)) {
			return &auth.Denial{Status: http.StatusForbidden, Message: fmt.Sprintf("%s may not use gateway/%s/%s", p.Name, r.PathValue("name"), op)}
		}
		return nil
	}
}

// edgeConfig builds the configuration of a connected registry.
func (s *Service) edgeConfig(c *ConnectedRegistry) *EdgeConfig {
	cfg := &EdgeConfig{
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
	children := map[string][]*ConnectedRegistry{}
	for _, o := range all {
		children[o.Parent] = append(children[o.Parent], o)
	}
	queue := append([]*ConnectedRegistry(nil), children[c.Name]...)
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
func recordDescendants(tx *auth.Tx, gateway string, ds []*ConnectedRegistry) error {
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
		c.HeartbeatSeconds = d.HeartbeatSeconds
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
func (s *Service) ReplicateDescendants(ds []*ConnectedRegistry) error {
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
			} else {
				c.ActivationStatus, c.ActivationID, c.ConnectionState = ActivationInactive, "", StateOffline
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
func (s *Service) DescendantStatus() []*ConnectedRegistry {
	var out []*ConnectedRegistry
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
func liveness(c *ConnectedRegistry, interval time.Duration, now time.Time) {
	if c.ConnectionState == StateOffline || c.LastActivity == nil {
		return
	}
	if now.Sub(*c.LastActivity) > 2*interval+5*time.Second {
		c.ConnectionState = StateOffline
	}
}

// Activate records an edge's activation; a second live activation with
// another ID is refused until deactivate.
func (s *Service) Activate(name string, req ActivateRequest) (*EdgeConfig, error) {
	if req.ActivationID == "" {
		return nil, fmt.Errorf("%w: activationId is required", auth.ErrInvalid)
	}
	var out *EdgeConfig
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		if c.ActivationStatus == ActivationActive && c.ActivationID != "" && c.ActivationID != req.ActivationID {
			return fmt.Errorf("%w: connected registry %q is active in another deployment; run `outpost connected-registry deactivate --name %s` first", ErrConflict, name, name)
		}
		now := tx.Now()
		c.ActivationStatus, c.ActivationID = ActivationActive, req.ActivationID
		c.ConnectionState, c.LastActivity = StateOnline, &now
		c.LoginServer, c.Version = req.LoginServer, req.Version
		out = s.edgeConfig(c)
		return tx.PutRecord(bucket, name, c)
	})
	return out, err
}

// RecordHeartbeat stores an edge's status and returns its configuration.
func (s *Service) RecordHeartbeat(name string, hb Heartbeat) (*EdgeConfig, error) {
	var out *EdgeConfig
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
			c.ConnectionState = StateOnline
		}
		if hb.LastSyncTime != nil {
			c.LastSync = hb.LastSyncTime
		}
		if hb.LastSyncResult != nil {
			c.LastSyncResult = hb.LastSyncResult
		}
		if hb.Version != "" {
			c.Version = hb.Version
		}
		if hb.LoginServer != "" {
			c.LoginServer = hb.LoginServer
		}
		c.StatusDetails = hb.StatusDetails
		if err := recordStaging(tx, name, hb.Staging); err != nil {
			return err
		}
		s.noteFinished(hb.Staging)
		if err := recordDescendants(tx, name, hb.Descendants); err != nil {
			return err
		}
		for _, r := range hb.DescendantStaging {
			if isDescendant(tx, r.Site, name) {
				if err := recordStaging(tx, r.Site, []StageReport{r.StageReport}); err != nil {
					return err
				}
				s.noteFinished([]StageReport{r.StageReport})
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

// RegisterGateway adds the routes edges call: activation, configuration and
// heartbeats, authorized by the gateway actions of their sync token.
func RegisterGateway(api *adminapi.API, authSvc *auth.Service, s *Service) {
	api.HandleWith("POST /api/v1/gateway/{name}/activate", gatewayAuthz(authSvc, "config/write"), func(r *http.Request) (int, any, error) {
		var req ActivateRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		cfg, err := s.Activate(r.PathValue("name"), req)
		return http.StatusOK, cfg, err
	})
	api.HandleWith("GET /api/v1/gateway/{name}/config", gatewayAuthz(authSvc, "config/read"), func(r *http.Request) (int, any, error) {
		c, err := s.Get(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, s.edgeConfig(c), nil
	})
	api.HandleWith("POST /api/v1/gateway/{name}/heartbeat", gatewayAuthz(authSvc, "message/write"), func(r *http.Request) (int, any, error) {
		var hb Heartbeat
		if err := adminapi.Decode(r, &hb); err != nil {
			return 0, nil, err
		}
		cfg, err := s.RecordHeartbeat(r.PathValue("name"), hb)
		return http.StatusOK, cfg, err
	})
	api.Handle("POST /api/v1/connected-registries/{name}/resync", func(r *http.Request) (int, any, error) {
		if err := s.RequestResync(r.PathValue("name")); err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, map[string]string{"status": "resync requested; the connected registry starts a run at its next heartbeat"}, nil
	})
}

// ChangesResponse is the answer of the change feed.
type ChangesResponse struct {
	Repository string           `json:"repository"`
	Changes    []storage.Change `json:"changes"`
	// Next is the cursor to ask from next; Head the latest cursor.
	Next uint64 `json:"next"`
	Head uint64 `json:"head"`
}

// RegisterChanges adds GET /api/v1/changes?repository=R&since=N&n=M, the
// ordered tag change feed of a repository, for any caller that may
// metadata/read it.
func RegisterChanges(api *adminapi.API, authSvc *auth.Service, meta storage.Metadata) {
	authz := func(r *http.Request, p *auth.Principal) error {
		repo := r.URL.Query().Get("repository")
		if !authSvc.Allowed(p, repo, auth.MetadataRead) {
			if p == nil {
				return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: `Basic realm="outpost"`}
			}
			return &auth.Denial{Status: http.StatusForbidden, Message: p.Name + " may not read the metadata of " + repo}
		}
		return nil
	}
	api.HandleWith("GET /api/v1/changes", authz, func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		repo := q.Get("repository")
		if err := oci.ValidateName(repo); err != nil {
			return 0, nil, fmt.Errorf("%w: repository: %w", auth.ErrInvalid, err)
		}
		since, n := uint64(0), 1000
		if v := q.Get("since"); v != "" {
			var err error
			if since, err = strconv.ParseUint(v, 10, 64); err != nil {
				return 0, nil, fmt.Errorf("%w: since %q", auth.ErrInvalid, v)
			}
		}
		if v := q.Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
				return 0, nil, fmt.Errorf("%w: n %q: 1 to 10000", auth.ErrInvalid, v)
			}
		}
		changes, head, err := meta.Changes(r.Context(), repo, since, n)
		if errors.Is(err, storage.ErrRepositoryUnknown) {
			return http.StatusOK, ChangesResponse{Repository: repo, Changes: []storage.Change{}, Next: since, Head: 0}, nil
		}
		if err != nil {
			return 0, nil, err
		}
		next := since
		if len(changes) > 0 {
			next = changes[len(changes)-1].Seq
		}
		return http.StatusOK, ChangesResponse{Repository: repo, Changes: changes, Next: next, Head: head}, nil
	})
}
