package protocol

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/identity"
	"github.com/outpost-registry/outpost/internal/storage"
)

// The routes of the protocol, under the parent's /api/v1/ (docs/api.md):
//
//	POST /api/v1/gateway/{name}/activate   ActivateRequest → EdgeConfig
//	GET  /api/v1/gateway/{name}/config     → EdgeConfig
//	POST /api/v1/gateway/{name}/heartbeat  Heartbeat → EdgeConfig
//	GET  /api/v1/changes?repository=R&since=N&n=M → ChangesResponse

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
	ClientTokens []*identity.Token    `json:"clientTokens"`
	ScopeMaps    []*identity.ScopeMap `json:"scopeMaps"`
	// Resync asks for an immediate sync run.
	Resync bool `json:"resync,omitempty"`
	// Staging lists the staging jobs the registry must carry out.
	Staging []StageTask `json:"staging,omitempty"`
	// Descendants are the connected registries below this one, for which
	// it is the gateway, with the tokens (sync and client) and scope maps
	// they authenticate with. Their repositories are synced too.
	Descendants []*ConnectedRegistry `json:"descendants,omitempty"`
	// GatewayTokens are the descendants' sync and client tokens.
	GatewayTokens []*identity.Token `json:"gatewayTokens,omitempty"`
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
	ActivationID    string          `json:"activationId"`
	ConnectionState ConnectionState `json:"connectionState"`
	LastSyncTime    *time.Time      `json:"lastSyncTime,omitempty"`
	LastSyncResult  *SyncResult     `json:"lastSyncResult,omitempty"`
	Version         string          `json:"version"`
	LoginServer     string          `json:"loginServer,omitempty"`
	IntervalSeconds int             `json:"intervalSeconds"`
	StatusDetails   []string        `json:"statusDetails,omitempty"`
	// Events are local pushes and deletes matching the notification
	// patterns, delivered since the last heartbeat.
	Events []Event `json:"events,omitempty"`
	// Staging reports progress on staging jobs.
	Staging []StageReport `json:"staging,omitempty"`
	// Volume is the registry's data volume.
	Volume *Volume `json:"volume,omitempty"`
	// Descendants carries the status of the registries below a gateway.
	Descendants []*ConnectedRegistry `json:"descendants,omitempty"`
	// DescendantStaging is the staging progress of the registries below a
	// gateway, as they reported it to the gateway.
	DescendantStaging []SiteReport `json:"descendantStaging,omitempty"`
	// Bundles are the air-gap bundles imported since the last heartbeat.
	Bundles []BundleImport `json:"bundles,omitempty"`
}

// EventAction is what a notification reports.
type EventAction string

// The actions of notifications (and of repo:tag:action patterns).
const (
	EventPush   EventAction = "push"
	EventDelete EventAction = "delete"
)

// Event is a notification of a push or delete at a connected registry.
type Event struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest,omitempty"`
	Action     EventAction   `json:"action"`
	Time       time.Time     `json:"time"`
}

// Trigger says why a sync run started.
type Trigger string

// The triggers of sync runs.
const (
	TriggerStartup    Trigger = "startup"    // the edge started
	TriggerReconnect  Trigger = "reconnect"  // the parent answered again
	TriggerResync     Trigger = "resync"     // the operator asked (connected-registry resync)
	TriggerSchedule   Trigger = "schedule"   // the sync schedule fired
	TriggerContinuous Trigger = "continuous" // the every-minute schedule: a quiet run is not logged
)

// SyncState is the outcome of a sync run.
type SyncState string

// The outcomes of sync runs.
const (
	SyncSucceeded SyncState = "Succeeded"
	SyncFailed    SyncState = "Failed"
)

// SyncResult describes one sync run, as reported by the edge.
type SyncResult struct {
	Trigger Trigger   `json:"trigger,omitempty"`
	State   SyncState `json:"state,omitempty"`
	Start   time.Time `json:"startTime,omitzero"`
	End     time.Time `json:"endTime,omitzero"`
	Bytes   int64     `json:"bytes,omitempty"`
	Items   int64     `json:"items,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// ChangesResponse is the answer of the change feed.
type ChangesResponse struct {
	Repository string           `json:"repository"`
	Changes    []storage.Change `json:"changes"`
	// Next is the cursor to ask from next; Head the latest cursor.
	Next uint64 `json:"next"`
	Head uint64 `json:"head"`
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
