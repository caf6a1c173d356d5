// Package edge runs an Outpost as a connected registry: it activates with
// its parent, refreshes its configuration (mode, repositories, schedule,
// client tokens) with every heartbeat, reports its status, and starts sync
// runs on the cron schedule within the sync window. When the parent is
// unreachable it keeps serving from the local store with the last
// configuration it received.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/outpost-registry/outpost/internal/atomicfile"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/origin"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// Options configure an Edge.
type Options struct {
	// Name is the connected registry's name (empty for a generic parent).
	Name string
	// SyncToken is the sync token's name; it never authenticates clients.
	SyncToken string
	Parent    *syncer.Parent
	Engine    *syncer.Engine
	Identity  *auth.Store
	// Metadata is the local store: the tags of releases no longer
	// assigned are removed there (nil: they stay).
	Metadata storage.Metadata
	DataDir  string
	Logger   *slog.Logger
	Version  string
	// LoginServer is the address local clients use, reported to the parent.
	LoginServer string
	// Heartbeat is the heartbeat interval (default 30 s).
	Heartbeat time.Duration
	// Static is the configuration used with a generic (non-Outpost)
	// parent, which has no control plane.
	Static *protocol.EdgeConfig
	// OutboxCursors persists how far local pushes were delivered.
	OutboxCursors *syncer.Cursors
	// OutboxInterval is how often pending pushes are delivered (default 2 s).
	OutboxInterval time.Duration
	// MessageTTL, when set, overrides the configured sync message TTL
	// (tests use a tiny one).
	MessageTTL time.Duration
	// Fleet is this registry's own control plane: as the gateway of the
	// connected registries below it, it keeps their records (replicated
	// from the parent) and answers their activation and heartbeats.
	Fleet Fleet
	// Volume, when set, reports the data volume for heartbeats.
	Volume func() *protocol.Volume
	// SetLogLevel, when set, applies the log level of the configuration
	// on every refresh (nil when the level was given locally).
	SetLogLevel func(level string) error
	// PrePullNodes is how many node agents may pull at once (default
	// DefaultPrePullNodes).
	PrePullNodes int
}

// Fleet is what a gateway keeps of the connected registries below it:
// the control plane of this registry (controlplane.Service), which
// answers their activation and heartbeats.
type Fleet interface {
	// ReplicateDescendants and ReplicateStaging install what the parent
	// sent about the registries below this one.
	ReplicateDescendants(ds []*protocol.ConnectedRegistry) error
	ReplicateStaging(jobs []*protocol.StagingJob) error
	// DescendantStatus and DescendantStaging are what they reported, for
	// this registry's heartbeat.
	DescendantStatus() []*protocol.ConnectedRegistry
	DescendantStaging() []protocol.SiteReport
	// StagingFinished is signalled when one of them finished a job.
	StagingFinished() <-chan struct{}
	// SetBundleKey hands the root's bundle key down to them.
	SetBundleKey(pem string)
}

// Status is what `outpost status` shows at the edge.
type Status struct {
	Role            string                    `json:"role"`
	Name            string                    `json:"name,omitempty"`
	Parent          string                    `json:"parent"`
	Mode            protocol.Mode             `json:"mode"`
	Repositories    []string                  `json:"repositories"`
	SyncSchedule    string                    `json:"syncSchedule"`
	SyncWindow      string                    `json:"syncWindow,omitempty"`
	ConnectionState protocol.ConnectionState  `json:"connectionState"`
	Activation      protocol.ActivationStatus `json:"activationStatus"`
	LastContact     *time.Time                `json:"lastContactTime,omitempty"`
	LastSyncTime    *time.Time                `json:"lastSyncTime,omitempty"`
	LastSyncResult  *protocol.SyncResult      `json:"lastSyncResult,omitempty"`
	Progress        syncer.Progress           `json:"progress"`
	LastError       string                    `json:"lastError,omitempty"`
	// WindowEnd is when the running sync run's window ends.
	WindowEnd *time.Time `json:"syncWindowEndTime,omitempty"`
	// Outbox describes local pushes waiting for the parent (ReadWrite).
	Outbox *OutboxStatus `json:"outbox,omitempty"`
	// Details are conflicts and dropped messages, also sent to the parent.
	Details []string `json:"statusDetails,omitempty"`
	// Bundles are the last air-gap bundles imported here.
	Bundles []protocol.BundleImport `json:"importedBundles,omitempty"`
}

// OutboxStatus counts the outbox's messages.
type OutboxStatus struct {
	Pending   int64    `json:"pending"`
	Dropped   int64    `json:"droppedExpired"`
	Conflicts []string `json:"conflicts,omitempty"`
}

// Edge is the connected-registry runtime.
type Edge struct {
	o    Options
	log  *slog.Logger
	wake chan protocol.Trigger

	mu           sync.Mutex
	cfg          *protocol.EdgeConfig
	activationID string
	active       bool
	online       bool
	lastContact  *time.Time
	lastSync     *time.Time
	lastResult   *protocol.SyncResult
	lastErr      string
	running      bool
	outbox       *syncer.Outbox
	events       []protocol.Event
	// bundles are the last bundles imported (shown in the status);
	// bundlesOut those not yet reported to the parent.
	bundles, bundlesOut []protocol.BundleImport
	stages              map[string]*protocol.StageReport
	stageWake           chan struct{}
	// nodes is the node stage of pre-pull jobs (its own lock).
	nodes *nodeBoard
	// deactivated is set once the parent refused a heartbeat for a
	// deactivation; nothing talks to the parent again until restart.
	deactivated bool
	// beat asks for a heartbeat now (a staging job ended here or below).
	beat      chan struct{}
	windowEnd time.Time
	// refused holds, by key, the sync settings refused and what is done
	// instead, logged once per value and reported in the status.
	refused map[string]refusal
}

// New prepares an Edge, loading the last configuration received so that
// the registry serves (and authenticates clients) before the parent
// answers.
func New(o Options) (*Edge, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(o.DataDir, "edge")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create edge state directory: %w", err)
	}
	if o.OutboxInterval <= 0 {
		o.OutboxInterval = 2 * time.Second
	}
	e := &Edge{o: o, log: o.Logger, wake: make(chan protocol.Trigger, 4), stages: map[string]*protocol.StageReport{}, stageWake: make(chan struct{}, 1), beat: make(chan struct{}, 1),
		nodes: newNodeBoard(o.PrePullNodes)}
	if o.OutboxCursors != nil {
		e.outbox = syncer.NewOutbox(o.Engine, o.OutboxCursors, e.messageTTL, e.notify)
	}
	id, err := loadOrCreateID(filepath.Join(dir, "activation-id"))
	if err != nil {
		return nil, err
	}
	e.activationID = id
	if o.Static != nil {
		if err := e.apply(o.Static); err != nil {
			return nil, err
		}
	} else if cfg, err := loadConfig(filepath.Join(dir, "config.json")); err != nil {
		return nil, err
	} else if cfg != nil {
		if err := e.apply(cfg); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// loadConfig reads the last configuration received from the parent: nil
// when none was saved yet. A file that cannot be read or decoded is an
// error: starting without it would drop the client tokens and the
// repositories silently.
func loadConfig(path string) (*protocol.EdgeConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the saved edge configuration: %w", err)
	}
	var cfg protocol.EdgeConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("saved edge configuration %s is corrupt (remove it to wait for the parent's): %w", path, err)
	}
	return &cfg, nil
}

func loadOrCreateID(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) >= 16:
		return string(b), nil
	case err == nil:
		return "", fmt.Errorf("activation id %s is corrupt: %d bytes", path, len(b))
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read activation id: %w", err)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("activation id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if err := atomicfile.Write(path, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("save activation id: %w", err)
	}
	return id, nil
}

// ReadOnly reports whether local clients may only pull.
func (e *Edge) ReadOnly() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg == nil || e.cfg.Mode != protocol.ReadWrite
}

// Trigger asks for a sync run now.
func (e *Edge) Trigger(reason protocol.Trigger) {
	select {
	case e.wake <- reason:
	default:
	}
}

// apply installs a configuration: repositories for the sync engine, and
// the client tokens (with their scope maps) as the only tokens that
// authenticate locally.
func (e *Edge) apply(cfg *protocol.EdgeConfig) error {
	scope := append([]string(nil), cfg.Repositories...)
	for _, r := range cfg.DescendantRepositories() {
		if !slices.Contains(scope, r) {
			scope = append(scope, r)
		}
	}
	e.o.Engine.SetScope(scope)
	// Staged images may be fetched on demand too (a child staging through
	// this registry may ask before this registry has staged them), but
	// their repositories are not synced.
	var staged []string
	for _, task := range cfg.Staging {
		for _, im := range task.Images {
			if !slices.Contains(staged, im.Repository) {
				staged = append(staged, im.Repository)
			}
		}
	}
	e.o.Engine.SetStaged(staged)
	err := e.o.Identity.Update(func(tx *auth.Tx) error {
		keep := map[string]bool{}
		for _, m := range cfg.ScopeMaps {
			if m.BuiltIn {
				continue
			}
			m2 := *m
			if err := tx.PutScopeMap(&m2); err != nil {
				return fmt.Errorf("scope map %s: %w", m.Name, err)
			}
		}
		// The descendants' sync tokens authenticate here too: this
		// registry is their gateway. Their client tokens are kept only to
		// be handed down (Relay): they never authenticate here, unless
		// they are this registry's own client tokens as well. Its own
		// sync token never authenticates here.
		own, syncTokens := map[string]bool{}, map[string]bool{}
		for _, t := range cfg.ClientTokens {
			own[t.Name] = true
		}
		for _, d := range cfg.Descendants {
			syncTokens[d.SyncToken] = true
		}
		for _, t := range append(append([]*auth.Token(nil), cfg.ClientTokens...), cfg.GatewayTokens...) {
			if t.Name == e.o.SyncToken || keep[t.Name] {
				continue
			}
			t2 := *t
			t2.Relay = !own[t.Name] && !syncTokens[t.Name]
			if err := tx.PutToken(&t2); err != nil {
				return fmt.Errorf("client token %s: %w", t.Name, err)
			}
			keep[t.Name] = true
		}
		for _, t := range tx.Tokens() {
			if !keep[t.Name] {
				if err := tx.DeleteToken(t.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply configuration: %w", err)
	}
	if e.o.Fleet != nil && cfg.BundleKey != "" {
		e.o.Fleet.SetBundleKey(cfg.BundleKey) // handed down to the registries below
	}
	if e.o.Fleet != nil && e.o.Static == nil {
		if err := e.o.Fleet.ReplicateDescendants(cfg.Descendants); err != nil {
			return fmt.Errorf("apply descendants: %w", err)
		}
		if err := e.o.Fleet.ReplicateStaging(cfg.DescendantJobs); err != nil {
			return fmt.Errorf("apply descendants' staging jobs: %w", err)
		}
	}
	e.mu.Lock()
	prev := e.cfg
	prevLevel := ""
	if e.cfg != nil {
		prevLevel = e.cfg.LogLevel
	}
	e.cfg = cfg
	e.mu.Unlock()
	e.releaseRetired(prev, cfg)
	if e.o.SetLogLevel != nil && cfg.LogLevel != "" && cfg.LogLevel != prevLevel {
		if err := e.o.SetLogLevel(cfg.LogLevel); err != nil {
			e.log.Warn("the configured log level is not valid; keeping the current one", "level", cfg.LogLevel, "err", err)
		} else {
			e.log.Info("log level set by the parent's configuration", "level", cfg.LogLevel)
		}
	}
	if len(cfg.Staging) > 0 {
		select {
		case e.stageWake <- struct{}{}:
		default:
		}
	}
	if e.o.Static == nil {
		b, err := json.Marshal(cfg)
		if err == nil {
			err = atomicfile.Write(filepath.Join(e.o.DataDir, "edge", "config.json"), b, 0o600)
		}
		if err != nil {
			return fmt.Errorf("save the edge configuration: %w", err)
		}
	}
	return nil
}

// BundleKey returns the bundle public key (PEM) the parent sent ("" when
// none: a generic parent, or not yet activated).
func (e *Edge) BundleKey() string {
	if cfg := e.config(); cfg != nil {
		return cfg.BundleKey
	}
	return ""
}

// maxBundles bounds the imported bundles kept for the status and the next
// heartbeat.
const maxBundles = 20

// RecordBundle notes an air-gap bundle imported here: it is reported to
// the parent with the next heartbeat (sent at once), so that the root's
// view of what the site holds stays true.
func (e *Edge) RecordBundle(b protocol.BundleImport) {
	e.mu.Lock()
	e.bundlesOut = append(e.bundlesOut, b)
	if len(e.bundlesOut) > maxBundles {
		e.bundlesOut = e.bundlesOut[len(e.bundlesOut)-maxBundles:]
	}
	e.bundles = append(e.bundles, b)
	if len(e.bundles) > maxBundles {
		e.bundles = e.bundles[len(e.bundles)-maxBundles:]
	}
	e.mu.Unlock()
	select {
	case e.beat <- struct{}{}:
	default:
	}
}

// Keep returns what this registry must keep whatever its retention
// policies say: its sync scope (its own repositories and its
// descendants') and the images of the staging releases assigned to it
// or to a descendant it is the gateway of.
func (e *Edge) Keep() (scope []string, images []protocol.StagedImage) {
	cfg := e.config()
	if cfg == nil {
		return nil, nil
	}
	return append(slices.Clone(cfg.Repositories), cfg.DescendantRepositories()...), stagedImages(cfg)
}

// stagedImages lists the images of the staging releases cfg assigns to
// this registry or its descendants.
func stagedImages(cfg *protocol.EdgeConfig) []protocol.StagedImage {
	var out []protocol.StagedImage
	for _, task := range cfg.Staging {
		out = append(out, task.Images...)
	}
	for _, j := range cfg.DescendantJobs {
		out = append(out, j.Images...)
	}
	return out
}

// releaseRetired hands the images of the releases prev assigned and cfg
// no longer does (retired by a later installed release, or deleted) to
// garbage collection: it removes the tags they published here, where a
// tag still points at the release's image, no release still assigned
// publishes it and the repository is not synced. The removal is marked
// as sync's, so a read-write registry does not deliver it to its parent.
func (e *Edge) releaseRetired(prev, cfg *protocol.EdgeConfig) {
	if prev == nil || e.o.Metadata == nil {
		return
	}
	active := map[string]bool{}
	for _, im := range stagedImages(cfg) {
		active[im.Repository+":"+im.Tag] = true
	}
	scope := append(slices.Clone(cfg.Repositories), cfg.DescendantRepositories()...)
	ctx := storage.WithOrigin(context.Background(), storage.OriginSync)
	for _, im := range stagedImages(prev) {
		if im.Tag == "" || im.Digest == "" || active[im.Repository+":"+im.Tag] ||
			slices.ContainsFunc(scope, func(p string) bool { return oci.MatchRepository(p, im.Repository) }) {
			continue
		}
		m, err := e.o.Metadata.GetManifest(ctx, im.Repository, im.Tag)
		if err != nil || m.Digest != im.Digest {
			continue
		}
		if err := e.o.Metadata.DeleteTag(ctx, im.Repository, im.Tag); err != nil && !errors.Is(err, storage.ErrManifestUnknown) {
			e.log.Warn("tag of a retired release not removed", "repo", im.Repository, "tag", im.Tag, "err", err)
			continue
		}
		e.log.Info("release no longer assigned: its tag goes to garbage collection", "repo", im.Repository, "tag", im.Tag, "digest", string(im.Digest))
	}
}

func (e *Edge) config() *protocol.EdgeConfig {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Run activates and then heartbeats and syncs until ctx ends.
func (e *Edge) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); e.stageLoop(ctx) }()
	go func() { defer wg.Done(); e.control(ctx) }()
	go func() { defer wg.Done(); e.schedule(ctx) }()
	go func() { defer wg.Done(); e.deliverLoop(ctx) }()
	e.Trigger(protocol.TriggerStartup)
	<-ctx.Done()
	wg.Wait()
	return nil
}

// errDeactivated is a heartbeat refused because the parent no longer
// knows this deployment's activation: the connected registry was
// deactivated there (or activated by another deployment since).
var errDeactivated = errors.New("the parent refused this deployment's heartbeat: the connected registry was deactivated there, or activated by another deployment")

// stopDeactivated stops talking to the parent after a deactivation: no
// heartbeat, sync or outbox delivery (pushes stay queued), while local
// content is still served. Activating again takes a restart, so that a
// deactivation meant to move the registry elsewhere is not undone.
func (e *Edge) stopDeactivated(err error) {
	e.mu.Lock()
	e.deactivated = true
	e.mu.Unlock()
	e.setOnline(false, err)
	_, _, pending := e.OutboxCounts()
	e.log.Error("connected registry deactivated at the parent: stopped syncing and delivering; local content is still served. "+
		"To resume here, restart this registry (it activates again and delivers its queued pushes); to move it, run it with the connection string at the new place",
		"name", e.o.Name, "parent", e.o.Parent.URL(), "queued_pushes", pending, "err", err)
}

// control activates, then sends heartbeats; both refresh the config.
func (e *Edge) control(ctx context.Context) {
	if e.o.Static != nil {
		e.setOnline(true, nil)
		return
	}
	t := time.NewTicker(e.o.Heartbeat)
	defer t.Stop()
	for {
		var err error
		if !e.isActive() {
			err = e.activate(ctx)
		} else {
			err = e.heartbeat(ctx)
		}
		if errors.Is(err, errDeactivated) {
			e.stopDeactivated(err)
			return
		}
		e.setOnline(err == nil, err)
		var below <-chan struct{}
		if e.o.Fleet != nil {
			below = e.o.Fleet.StagingFinished()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.beat:
		case <-below:
		}
	}
}

func (e *Edge) isActive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active
}

// logForeign says, once per distinct error, that the parent asked for
// the credentials to go somewhere they must not. It is not an outage: an
// operator must act.
func (e *Edge) logForeign(err error, prevErr string) {
	if err.Error() != prevErr {
		e.log.Error("parent refused: credentials are sent only to the parent's own origin", "parent", e.o.Parent.URL(), "err", err)
	}
}

// noteRun records what a sync run says about the parent: a run refused
// for a foreign token realm becomes the edge's last error (a generic
// parent has no heartbeat to report it), a successful one clears it.
func (e *Edge) noteRun(err error) {
	e.mu.Lock()
	prev := e.lastErr
	switch {
	case errors.Is(err, origin.ErrForeign):
		e.lastErr = err.Error()
	case err == nil && e.o.Static != nil:
		e.lastErr = ""
	}
	e.mu.Unlock()
	if errors.Is(err, origin.ErrForeign) {
		e.logForeign(err, prev)
	}
}

func (e *Edge) setOnline(ok bool, err error) {
	now := time.Now().UTC()
	e.mu.Lock()
	was, prevErr := e.online, e.lastErr
	e.online = ok
	if ok {
		e.lastContact = &now
		e.lastErr = ""
	} else if err != nil {
		e.lastErr = err.Error()
	}
	e.mu.Unlock()
	e.o.Engine.SetOnline(ok)
	if !ok && errors.Is(err, origin.ErrForeign) {
		e.logForeign(err, prevErr)
		return
	}
	if ok && !was {
		e.log.Info("parent reachable", "parent", e.o.Parent.URL())
		e.Trigger(protocol.TriggerReconnect)
	} else if !ok && was {
		e.log.Warn("parent unreachable; serving from the local store", "parent", e.o.Parent.URL(), "err", err)
	}
}

func (e *Edge) activate(ctx context.Context) error {
	var cfg protocol.EdgeConfig
	req := protocol.ActivateRequest{ActivationID: e.activationID, LoginServer: e.o.LoginServer, Version: e.o.Version}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.o.Parent.JSON(cctx, "POST", "/api/v1/gateway/"+e.o.Name+"/activate", req, &cfg); err != nil {
		var se *syncer.StatusError
		if errors.As(err, &se) && se.Status == 409 {
			e.log.Error("activation refused: this connected registry is active in another deployment; deactivate it on the parent first", "name", e.o.Name)
		}
		return fmt.Errorf("activate: %w", err)
	}
	if err := e.apply(&cfg); err != nil {
		return err
	}
	e.mu.Lock()
	e.active = true
	e.mu.Unlock()
	e.log.Info("activated", "name", e.o.Name, "parent", e.o.Parent.URL(), "mode", string(cfg.Mode), "repositories", cfg.Repositories)
	return nil
}

func (e *Edge) heartbeat(ctx context.Context) error {
	st := e.Status()
	e.mu.Lock()
	events, bundles := e.events, e.bundlesOut
	e.events, e.bundlesOut = nil, nil
	e.mu.Unlock()
	hb := protocol.Heartbeat{
		ActivationID: e.activationID, ConnectionState: st.ConnectionState, LastSyncTime: st.LastSyncTime,
		LastSyncResult: st.LastSyncResult, Version: e.o.Version, LoginServer: e.o.LoginServer,
		IntervalSeconds: int(e.o.Heartbeat / time.Second), Events: events, StatusDetails: st.Details,
		Staging: e.stageReports(), Bundles: bundles,
	}
	if e.o.Volume != nil {
		hb.Volume = e.o.Volume()
	}
	if e.o.Fleet != nil {
		hb.Descendants = e.o.Fleet.DescendantStatus()
		hb.DescendantStaging = e.o.Fleet.DescendantStaging()
	}
	if hb.ConnectionState == protocol.StateOffline {
		hb.ConnectionState = protocol.StateOnline
	}
	var cfg protocol.EdgeConfig
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.o.Parent.JSON(cctx, "POST", "/api/v1/gateway/"+e.o.Name+"/heartbeat", hb, &cfg); err != nil {
		e.mu.Lock()
		e.events = append(events, e.events...)
		e.bundlesOut = append(bundles, e.bundlesOut...)
		e.mu.Unlock()
		var se *syncer.StatusError
		if errors.As(err, &se) && se.Status == 409 {
			e.mu.Lock()
			e.active = false
			e.mu.Unlock()
			return fmt.Errorf("%w: %w", errDeactivated, err)
		}
		return fmt.Errorf("heartbeat: %w", err)
	}
	if err := e.apply(&cfg); err != nil {
		return err
	}
	e.log.Debug("heartbeat sent", "parent", e.o.Parent.URL(), "state", hb.ConnectionState, "events", len(events), "resync", cfg.Resync)
	if cfg.Resync {
		e.Trigger(protocol.TriggerResync)
	}
	return nil
}

// Status reports the edge's state.
func (e *Edge) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{Role: "connected-registry", Name: e.o.Name, Parent: e.o.Parent.URL(), LastContact: e.lastContact,
		LastSyncTime: e.lastSync, LastSyncResult: e.lastResult, Progress: e.o.Engine.Progress(), LastError: e.lastErr,
		Bundles: e.bundles}
	if e.cfg != nil {
		st.Mode, st.Repositories, st.SyncSchedule, st.SyncWindow = e.cfg.Mode, e.cfg.Repositories, e.cfg.SyncSchedule, e.cfg.SyncWindow
		// A refused setting is reported while the parent still sends it.
		current := map[string]string{"syncSchedule": e.cfg.SyncSchedule, "syncWindow": e.cfg.SyncWindow}
		for _, key := range []string{"syncSchedule", "syncWindow"} {
			if r, ok := e.refused[key]; ok && r.value == current[key] {
				st.Details = append(st.Details, r.detail)
			}
		}
	}
	if end := e.windowEnd; e.running && time.Now().Before(end) {
		st.WindowEnd = &end
	}
	if e.outbox != nil && e.cfg != nil && e.cfg.Mode == protocol.ReadWrite {
		dropped, conflicts, pending := e.outbox.Stats()
		st.Outbox = &OutboxStatus{Pending: pending, Dropped: dropped, Conflicts: conflicts}
		st.Details = append(st.Details, conflicts...)
		if dropped > 0 {
			st.Details = append(st.Details, fmt.Sprintf("%d outbox messages expired before delivery and were dropped", dropped))
		}
	}
	st.Activation = protocol.ActivationInactive
	if e.active || e.o.Static != nil {
		st.Activation = protocol.ActivationActive
	}
	switch {
	case !e.online:
		st.ConnectionState = protocol.StateOffline
	case e.running:
		st.ConnectionState = protocol.StateSyncing
	case e.lastResult != nil && e.lastResult.State == protocol.SyncFailed:
		st.ConnectionState = protocol.StateUnhealthy
	default:
		st.ConnectionState = protocol.StateOnline
	}
	return st
}

// OutboxCounts returns, for metrics, the outbox messages dropped for age,
// the tag conflicts since start and the messages waiting; all zero
// without an outbox.
func (e *Edge) OutboxCounts() (dropped, conflicts, pending int64) {
	if e.outbox == nil {
		return 0, 0, 0
	}
	return e.outbox.Counts()
}

// messageTTL is the sync message TTL in force.
func (e *Edge) messageTTL() time.Duration {
	if e.o.MessageTTL > 0 {
		return e.o.MessageTTL
	}
	cfg := e.config()
	if cfg == nil {
		return 0
	}
	d, err := protocol.ParseISODuration(cfg.SyncMessageTTL)
	if err != nil {
		return 0
	}
	return d
}

// notify queues a delivered push or delete for the next heartbeat when it
// matches the notification patterns.
func (e *Edge) notify(ev protocol.Event) {
	cfg := e.config()
	if cfg == nil || !protocol.MatchNotification(cfg.Notifications, ev.Repository, ev.Tag, ev.Action) {
		return
	}
	e.mu.Lock()
	e.events = append(e.events, ev)
	if len(e.events) > 1000 {
		e.events = e.events[len(e.events)-1000:]
	}
	e.mu.Unlock()
}

// deliverLoop delivers local pushes of a ReadWrite registry while the
// parent is reachable.
func (e *Edge) deliverLoop(ctx context.Context) {
	if e.outbox == nil {
		return
	}
	t := time.NewTicker(e.o.OutboxInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		rw := e.cfg != nil && e.cfg.Mode == protocol.ReadWrite
		online := e.online && !e.deactivated
		e.mu.Unlock()
		if !rw {
			continue
		}
		if !online {
			// Keep the pending count current while pushes accumulate.
			if err := e.outbox.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.log.Debug("outbox count", "err", err)
			}
			continue
		}
		n, err := e.outbox.Deliver(ctx)
		if n > 0 {
			e.log.Info("outbox delivered", "changes", n)
		}
		if err != nil && ctx.Err() == nil {
			e.log.Warn("outbox delivery paused", "err", err)
		}
	}
}
