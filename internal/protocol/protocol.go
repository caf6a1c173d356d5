// Package protocol holds the wire types of the edge↔parent protocol and of
// the connected-registry management API: activation, configuration,
// heartbeats, the change feed, sync results and staging jobs, with typed
// constants for their states and operations, and the grammar of their
// fields (names, schedules, ISO 8601 durations, notification patterns,
// connection strings). It is plain data: the edge, the control plane, the
// management API and the CLI all import it, and it imports only leaves.
// Field names are the JSON an older edge or parent sends and expects;
// wire_test.go pins them.
package protocol

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/outpost-registry/outpost/internal/identity"
	"github.com/outpost-registry/outpost/internal/oci"
)

// Mode is ReadOnly or ReadWrite.
type Mode string

// The modes of a connected registry.
const (
	ReadOnly  Mode = "ReadOnly"
	ReadWrite Mode = "ReadWrite"
)

// ParseMode accepts ReadOnly or ReadWrite, case-insensitively.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ReadOnly, ReadWrite} {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w: mode %q: want ReadOnly or ReadWrite", identity.ErrInvalid, s)
}

// ConnectionState is the connection state an edge reports (and the
// parent derives: Offline after two missed heartbeats).
type ConnectionState string

// Connection states.
const (
	StateOnline    ConnectionState = "Online"
	StateOffline   ConnectionState = "Offline"
	StateSyncing   ConnectionState = "Syncing"
	StateUnhealthy ConnectionState = "Unhealthy"
)

// ActivationStatus tells whether a deployment activated the connected
// registry.
type ActivationStatus string

// Activation statuses.
const (
	ActivationActive   ActivationStatus = "Active"
	ActivationInactive ActivationStatus = "Inactive"
)

// Log levels of a connected registry.
var logLevels = []string{"Debug", "Information", "Warning", "Error", "None"}

// Limits and defaults of the resource.
const (
	maxClientTokens = 20
	DefaultSchedule = "* * * * *"
	DefaultTTL      = "P2D"
)

// ConnectedRegistry is the resource, as the management API shows it and
// as a gateway relays it between its parent and its descendants.
type ConnectedRegistry struct {
	Name           string    `json:"name"`
	Mode           Mode      `json:"mode"`
	Parent         string    `json:"parent,omitempty"`
	Repositories   []string  `json:"repositories"`
	ClientTokens   []string  `json:"clientTokens"`
	SyncSchedule   string    `json:"syncSchedule"`
	SyncWindow     string    `json:"syncWindow,omitempty"`
	SyncMessageTTL string    `json:"syncMessageTtl"`
	LogLevel       string    `json:"logLevel"`
	Notifications  []string  `json:"notifications"`
	SyncToken      string    `json:"syncTokenName"`
	SyncScopeMap   string    `json:"syncScopeMapName"`
	Created        time.Time `json:"creationDate"`

	// Status, written by the edge through activation and heartbeats.
	ActivationStatus ActivationStatus `json:"activationStatus"`
	ConnectionState  ConnectionState  `json:"connectionState"`
	LastActivity     *time.Time       `json:"lastActivityTime,omitempty"`
	LastSync         *time.Time       `json:"lastSyncTime,omitempty"`
	LoginServer      string           `json:"loginServer,omitempty"`
	Version          string           `json:"version,omitempty"`
	StatusDetails    []string         `json:"statusDetails,omitempty"`
	LastSyncResult   *SyncResult      `json:"lastSyncResult,omitempty"`
	// ActivationID identifies the live activation (the deployment); it is
	// stored but never shown.
	ActivationID string `json:"activationId,omitempty"`
	// HeartbeatSeconds is the edge's heartbeat interval.
	HeartbeatSeconds int `json:"heartbeatIntervalSeconds,omitempty"`
	// ResyncRequested asks for a run at the next heartbeat.
	ResyncRequested bool `json:"resyncRequested,omitempty"`
	// Events are the last notifications (push/delete) the edge reported.
	Events []Event `json:"events,omitempty"`
	// Bundles are the last air-gap bundles the registry imported.
	Bundles []BundleImport `json:"importedBundles,omitempty"`
	// Volume is the data volume the edge reported with its last heartbeat.
	Volume *Volume `json:"volume,omitempty"`
}

// Volume is a registry's data volume as its heartbeat reports it.
type Volume struct {
	TotalBytes uint64 `json:"totalBytes"`
	UsedBytes  uint64 `json:"usedBytes"`
	FreeBytes  uint64 `json:"freeBytes"`
	// Full is set while the volume is above storage.highWatermark with
	// nothing left to evict.
	Full   bool   `json:"full,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// MatchNotification reports whether a push or delete of repo:tag matches
// one of the repo:tag:action patterns ("*" matches anything in a field, and
// a repository pattern may end in "/*").
func MatchNotification(patterns []string, repo, tag string, action EventAction) bool {
	for _, p := range patterns {
		parts := strings.Split(p, ":")
		if len(parts) != 3 {
			continue
		}
		r, t, a := parts[0], parts[1], parts[2]
		if oci.MatchRepository(r, repo) && (t == "*" || t == tag) && (a == "*" || a == string(action)) {
			return true
		}
	}
	return false
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9-]{5,50}$`)

// ValidateName checks a connected-registry name.
func ValidateName(n string) error {
	if !nameRe.MatchString(n) {
		return fmt.Errorf("%w: name %q: 5 to 50 letters, digits and '-'", identity.ErrInvalid, n)
	}
	return nil
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseSchedule parses a 5-field cron expression.
func ParseSchedule(s string) (cron.Schedule, error) {
	if len(strings.Fields(s)) != 5 {
		return nil, fmt.Errorf("%w: syncSchedule %q: want 5 cron fields (minute hour day-of-month month day-of-week)", identity.ErrInvalid, s)
	}
	sch, err := cronParser.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: syncSchedule %q: %w", identity.ErrInvalid, s, err)
	}
	return sch, nil
}

var isoRe = regexp.MustCompile(`^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// ErrDuration reports a malformed ISO 8601 duration.
var ErrDuration = errors.New("invalid ISO 8601 duration")

// ParseISODuration parses the day-time subset of ISO 8601 durations:
// PnW, PnDTnHnMnS (years and months, whose length varies, are refused).
func ParseISODuration(s string) (time.Duration, error) {
	m := isoRe.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("%w: %q (want e.g. PT3H, P1D, P2DT12H)", ErrDuration, s)
	}
	units := []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("%w: %q: number out of range", ErrDuration, s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}

// The bounds of a sync window.
const (
	MinSyncWindow = time.Hour
	MaxSyncWindow = 7 * 24 * time.Hour
)

// DefaultSyncWindow bounds a run whose configured window is not valid: a
// bad window must not make runs unbounded.
const DefaultSyncWindow = MinSyncWindow

// ParseSyncWindow parses a sync window: an ISO 8601 duration from PT1H to
// P7D. The parent checks it when a connected registry is created or
// updated, serve and config validate check a generic parent's, and an
// edge checks the one its parent sends.
func ParseSyncWindow(s string) (time.Duration, error) {
	if err := checkDuration("syncWindow", s, MinSyncWindow, MaxSyncWindow, "PT1H", "P7D"); err != nil {
		return 0, err
	}
	return ParseISODuration(s)
}

func checkDuration(field, s string, lo, hi time.Duration, loS, hiS string) error {
	d, err := ParseISODuration(s)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", identity.ErrInvalid, field, err)
	}
	if d < lo || d > hi {
		return fmt.Errorf("%w: %s %q: must be from %s to %s", identity.ErrInvalid, field, s, loS, hiS)
	}
	return nil
}

// ValidateNotification checks a repo:tag:action pattern.
func ValidateNotification(p string) error {
	parts := strings.Split(p, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("%w: notification %q: want repository:tag:action", identity.ErrInvalid, p)
	}
	if !slices.Contains([]string{string(EventPush), string(EventDelete), "*"}, parts[2]) {
		return fmt.Errorf("%w: notification %q: action must be push, delete or *", identity.ErrInvalid, p)
	}
	if parts[0] != "*" {
		if err := oci.ValidateName(strings.TrimSuffix(parts[0], "/*")); err != nil {
			return fmt.Errorf("%w: notification %q: %w", identity.ErrInvalid, p, err)
		}
	}
	if parts[1] != "*" {
		if err := oci.ValidateTag(parts[1]); err != nil {
			return fmt.Errorf("%w: notification %q: %w", identity.ErrInvalid, p, err)
		}
	}
	return nil
}

// validateRepository checks a repository name or trailing-wildcard pattern.
func validateRepository(r string) error {
	if err := oci.ValidateName(strings.TrimSuffix(r, "/*")); err != nil {
		return fmt.Errorf("%w: repositories: %w", identity.ErrInvalid, err)
	}
	return nil
}

// ApplyDefaults fills unset settings.
func (c *ConnectedRegistry) ApplyDefaults() {
	if c.Mode == "" {
		c.Mode = ReadOnly
	}
	if c.SyncSchedule == "" {
		c.SyncSchedule = DefaultSchedule
	}
	if c.SyncMessageTTL == "" {
		c.SyncMessageTTL = DefaultTTL
	}
	if c.LogLevel == "" {
		c.LogLevel = "Information"
	}
	if c.ActivationStatus == "" {
		c.ActivationStatus = ActivationInactive
	}
	if c.ConnectionState == "" {
		c.ConnectionState = StateOffline
	}
	if c.Repositories == nil {
		c.Repositories = []string{}
	}
	if c.ClientTokens == nil {
		c.ClientTokens = []string{}
	}
	if c.Notifications == nil {
		c.Notifications = []string{}
	}
}

// Validate checks the settings that do not depend on other resources,
// returning every problem, each naming its field.
func (c *ConnectedRegistry) Validate() error {
	var errs []error
	if err := ValidateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Mode != ReadOnly && c.Mode != ReadWrite {
		errs = append(errs, fmt.Errorf("%w: mode %q: want ReadOnly or ReadWrite", identity.ErrInvalid, c.Mode))
	}
	if len(c.Repositories) == 0 {
		errs = append(errs, fmt.Errorf("%w: repositories: at least one repository is required", identity.ErrInvalid))
	}
	for _, r := range c.Repositories {
		if err := validateRepository(r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.ClientTokens) > maxClientTokens {
		errs = append(errs, fmt.Errorf("%w: clientTokens: %d tokens, at most %d", identity.ErrInvalid, len(c.ClientTokens), maxClientTokens))
	}
	if _, err := ParseSchedule(c.SyncSchedule); err != nil {
		errs = append(errs, err)
	}
	if c.SyncWindow != "" {
		if _, err := ParseSyncWindow(c.SyncWindow); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkDuration("syncMessageTtl", c.SyncMessageTTL, 24*time.Hour, 90*24*time.Hour, "P1D", "P90D"); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		errs = append(errs, fmt.Errorf("%w: logLevel %q: want one of %s", identity.ErrInvalid, c.LogLevel, strings.Join(logLevels, ", ")))
	}
	for _, n := range c.Notifications {
		if err := ValidateNotification(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
