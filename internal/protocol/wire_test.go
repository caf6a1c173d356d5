package protocol_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/identity"
	p "github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
)

var update = flag.Bool("update", false, "rewrite testdata/wire/*.json from the wire types")

// wireValues are every wire type with every field set, so that a renamed
// or retyped field changes its golden file. The goldens were written by
// the types as they stood in controlplane before they moved here: an
// older edge and a newer parent (or the reverse) still understand each
// other only while these files stay the same.
func wireValues() map[string]any {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(90 * time.Second)
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	result := &p.SyncResult{Trigger: "schedule", State: p.SyncFailed, Start: t0, End: t1, Bytes: 1 << 20, Items: 3, Error: "apps/web: parent unreachable"}
	event := p.Event{Repository: "apps/web", Tag: "v1", Digest: d1, Action: "push", Time: t0}
	cr := &p.ConnectedRegistry{
		Name: "site-one", Mode: p.ReadWrite, Parent: "gateway-1", Repositories: []string{"apps/web", "tools/*"},
		ClientTokens: []string{"site-puller"}, SyncSchedule: "0 2 * * *", SyncWindow: "PT3H", SyncMessageTTL: "P2D",
		LogLevel: "Information", Notifications: []string{"apps/*:*:push"}, SyncToken: "site-one-sync-token",
		SyncScopeMap: "site-one-sync-scope-map", Created: t0, ActivationStatus: p.ActivationActive,
		ConnectionState: p.StateSyncing, LastActivity: &t1, LastSync: &t0, LoginServer: "site-one.example:5000",
		Version: "1.4.0", StatusDetails: []string{"conflict: apps/web:v1"}, LastSyncResult: result,
		ActivationID: "6f1c", HeartbeatSeconds: 30, ResyncRequested: true, Events: []p.Event{event},
	}
	progress := p.SiteProgress{State: p.StageStaged, ImagesDone: 2, ImagesTotal: 2, Bytes: 4096, Reason: "none",
		Updated: &t1, StagedAt: &t1, InstalledAt: &t1, RetiredAt: &t1}
	image := p.StagedImage{Reference: "apps/web:v1", Repository: "apps/web", Tag: "v1", Digest: d1}
	job := &p.StagingJob{Name: "release-1", Targets: []string{"site-one"}, Images: []p.StagedImage{image},
		RespectWindow: true, Created: t0, Sites: map[string]p.SiteProgress{"site-one": progress}, State: p.StageStaged}
	report := p.StageReport{Job: "release-1", SiteProgress: progress}
	token := &identity.Token{Name: "site-puller", ScopeMap: "_repositories_pull", Status: identity.StatusEnabled, Created: t0,
		Passwords: []identity.Password{{Name: identity.Password1, Hash: "$2a$04$hash", Created: t0, Expiry: &t1}}, Relay: true}
	scopeMap := &identity.ScopeMap{Name: "site-scope", Description: "d", Repositories: []identity.RepositoryGrant{{Repository: "apps/*", Actions: []identity.Action{identity.ContentRead}}},
		Gateway: []identity.Action{"gateway/site-one/config/read"}, Created: t0, Modified: t1}
	window := "PT2H"
	nodes := &p.NodeRollup{Done: 1, Total: 2, Pulling: 0, Failed: 1, Nodes: []p.NodeProgress{
		{Node: "node-b", State: p.NodeFailed, ImagesDone: 0, ImagesTotal: 1, Reason: "cri socket gone", Updated: &t1},
		{Node: "node-a", State: p.NodePulled, ImagesDone: 1, ImagesTotal: 1, Updated: &t0}}}
	return map[string]any{
		"connected-registry": cr,
		"edge-config": &p.EdgeConfig{
			Name: "site-one", Mode: p.ReadOnly, Repositories: []string{"apps/web"}, SyncSchedule: "* * * * *", SyncWindow: "PT1H",
			SyncMessageTTL: "P2D", LogLevel: "Debug", Notifications: []string{"*:*:*"}, ClientTokens: []*identity.Token{token},
			ScopeMaps: []*identity.ScopeMap{scopeMap}, Resync: true,
			Staging:     []p.StageTask{{Job: "release-1", Images: []p.StagedImage{image}, RespectWindow: true}},
			Descendants: []*p.ConnectedRegistry{cr}, GatewayTokens: []*identity.Token{token}, DescendantJobs: []*p.StagingJob{job},
		},
		"activate-request": p.ActivateRequest{ActivationID: "6f1c", LoginServer: "site-one.example:5000", Version: "1.4.0"},
		"heartbeat": p.Heartbeat{
			ActivationID: "6f1c", ConnectionState: p.StateOnline, LastSyncTime: &t1, LastSyncResult: result, Version: "1.4.0",
			LoginServer: "site-one.example:5000", IntervalSeconds: 30, StatusDetails: []string{"dropped 1 expired message"},
			Events:  []p.Event{event, {Repository: "apps/web", Tag: "v0", Digest: d2, Action: "delete", Time: t1}},
			Staging: []p.StageReport{report}, Descendants: []*p.ConnectedRegistry{cr},
			DescendantStaging: []p.SiteReport{{Site: "site-two", StageReport: report}},
		},
		"changes": p.ChangesResponse{Repository: "apps/web", Next: 3, Head: 4, Changes: []storage.Change{
			{Seq: 1, Tag: "v1", Digest: d1, Time: t0, Op: "put"},
			{Seq: 2, Tag: "v1", Digest: d2, Prev: d1, Time: t0, Origin: storage.OriginSync, Op: "put"},
			{Seq: 3, Digest: d2, Time: t1, Op: "refer"},
			{Seq: 4, Tag: "v1", Prev: d2, Time: t1, Op: "delete"},
		}},
		"sync-result":   result,
		"staging-job":   job,
		"create":        p.CreateRequest{Name: "site-one", Mode: "ReadWrite", Parent: "gateway-1", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-puller"}, SyncSchedule: "0 2 * * *", SyncWindow: "PT3H", SyncMessageTTL: "P2D", LogLevel: "Warning", Notifications: []string{"apps/web:v1:delete"}},
		"create-answer": p.CreateAnswer{ConnectedRegistry: cr, Notes: []string{"the existing token site-one-sync-token was disabled: it is now enabled"}},
		"update": p.Update{Mode: "ReadOnly", SyncSchedule: "*/5 * * * *", SyncWindow: &window, SyncMessageTTL: "P3D", LogLevel: "Error",
			AddClientTokens: []string{"a"}, RemoveClientTokens: []string{"b"}, AddNotifications: []string{"c:d:push"}, RemoveNotif: []string{"e:f:push"},
			AddRepositories: []string{"g"}, RemoveRepositories: []string{"h"}},
		"settings-request": p.SettingsRequest{ParentProtocol: "https", GeneratePassword: 1},
		"settings":         p.Settings{ConnectionString: "ConnectedRegistryName=site-one;…", SyncTokenName: "site-one-sync-token", Password: "secret", Note: "n"},
		"staging-request":  p.StagingRequest{Name: "release-1", Targets: []string{"site-one"}, Images: []string{"apps/web:v1"}, RespectWindow: true},
		"install-request":  p.InstallRequest{Targets: []string{"site-one"}, Keep: 3},
		// The node stage of a pre-pull job (fields an older peer omits).
		"staging-job-pre-pull": &p.StagingJob{Name: "release-2", Targets: []string{"site-one"}, Images: []p.StagedImage{image},
			PrePull: true, NodeSelector: map[string]string{"pool": "line-1"}, Created: t0, State: p.StageStaged,
			Sites: map[string]p.SiteProgress{"site-one": {State: p.StageStaged, ImagesDone: 1, ImagesTotal: 1, Updated: &t1, Nodes: nodes}}},
		"stage-task-pre-pull": p.StageTask{Job: "release-2", Images: []p.StagedImage{image}, PrePull: true, NodeSelector: map[string]string{"pool": "line-1"}},
		"staging-request-pre-pull": p.StagingRequest{Name: "release-2", Targets: []string{"site-one"}, Images: []string{"apps/web:v1"},
			PrePull: true, NodeSelector: map[string]string{"pool": "line-1"}},
		"node-job":           p.NodeJob{Job: "release-2", Images: []p.StagedImage{image}, NodeSelector: map[string]string{"pool": "line-1"}, PullNow: true},
		"node-report":        p.NodeReport{Job: "release-2", NodeProgress: nodes.Nodes[0]},
		"lease":              p.Lease{Granted: true, Holders: 3, Limit: 10, TTLSeconds: 30},
		"node-token-request": p.NodeTokenRequest{GeneratePassword: 2},
		"node-token":         p.NodeToken{TokenName: "site-one-node-token", Password: "secret", ScopeMap: "site-one-node-scope-map"},
		// Air-gap bundles: the key a root hands out, and the imports a
		// site reports (new golden files: the older ones stay as they were).
		"edge-config-bundle-key": p.EdgeConfig{BundleKey: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n"},
		"heartbeat-bundles": p.Heartbeat{ActivationID: "6f1c", Bundles: []p.BundleImport{{ID: "6bca6a54", Time: t0,
			Images: []p.ImportedImage{{Repository: "apps/web", Tag: "v1", Digest: d1}}, BlobsWritten: 3, BytesWritten: 1 << 20}}},
		"connected-registry-bundles": &p.ConnectedRegistry{Name: "site-one", Bundles: []p.BundleImport{{ID: "6bca6a54", Time: t0,
			Images: []p.ImportedImage{{Repository: "apps/web", Digest: d1}}}}},
		// The zero values: which fields an older peer sees omitted.
		"heartbeat-empty":   p.Heartbeat{},
		"edge-config-empty": p.EdgeConfig{},
		"sync-result-empty": p.SyncResult{},
	}
}

func TestWireFormat(t *testing.T) {
	for name, v := range wireValues() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "wire", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON of %s changed (an older peer would not understand it):\ngot:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}
