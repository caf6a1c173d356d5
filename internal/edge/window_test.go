package edge_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestBadSyncWindowFromParent: a parent that sends a sync window the edge
// cannot read does not get unbounded runs: the edge logs an error once,
// reports the refused window in its status, and bounds the run to the
// default window. The parent is a scripted one on 127.0.0.1 that answers
// activation and heartbeats and never answers sync requests, so the run
// stays in progress.
func TestBadSyncWindowFromParent(t *testing.T) {
	t.Parallel()
	const name = "edge-window"
	release := make(chan struct{})
	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/gateway/" + name + "/activate", "/api/v1/gateway/" + name + "/heartbeat":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(protocol.EdgeConfig{
				Name: name, Mode: protocol.ReadOnly, Repositories: []string{"apps/web"},
				SyncSchedule: "* * * * *", SyncWindow: "3h", SyncMessageTTL: "P1D", LogLevel: "Information",
			})
		default:
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(parent.Close)
	t.Cleanup(func() { close(release) })
	cs := protocol.ConnectionString{
		ConnectedRegistryName: name, SyncTokenName: name + "-sync", SyncTokenPassword: "sync-token-password",
		ParentGatewayEndpoint: parent.Listener.Addr().String(), ParentEndpointProtocol: "http",
	}
	edge, logs := startLogged(t, t.TempDir(), func(c *config.Config) { c.ConnectionString = cs.String() })

	var st struct {
		State     string     `json:"connectionState"`
		WindowEnd *time.Time `json:"syncWindowEndTime"`
		Details   []string   `json:"statusDetails"`
	}
	ocitest.Eventually(t, 30*time.Second, "a sync run in a bounded window", func() bool {
		edge.admin().JSON(t, http.MethodGet, "/api/v1/status", nil, &st)
		return st.State == string(protocol.StateSyncing) && st.WindowEnd != nil
	})
	if left := time.Until(*st.WindowEnd); left < protocol.DefaultSyncWindow-5*time.Minute || left > protocol.DefaultSyncWindow {
		t.Errorf("the run's window ends in %s, want about %s", left, protocol.DefaultSyncWindow)
	}
	found := false
	for _, d := range st.Details {
		found = found || strings.Contains(d, `syncWindow "3h" refused`)
	}
	if !found {
		t.Errorf("status details %q do not report the refused window", st.Details)
	}
	if n := strings.Count(logs.String(), "refused a sync setting from the parent"); n != 1 {
		t.Errorf("the refused window was logged %d times, want once:\n%s", n, logs)
	}
}
