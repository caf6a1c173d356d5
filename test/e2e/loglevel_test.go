package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestEdgeAppliesParentLogLevel: a connected registry created at the root
// with --log-level Debug logs at Debug at the site, and follows a change
// made at the root on the next refresh; a site started with its own
// --log-level keeps it.
func TestEdgeAppliesParentLogLevel(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	cs := connectionString(t, root, protocol.CreateRequest{Name: "loud-site", Repositories: []string{"apps/web"}, LogLevel: "Debug"}, root.host)
	site := newProc(t, "--connection-string", cs, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	// newProc pins the level for the other tests; this site must not.
	if i := slices.Index(site.args, "--log-level"); i >= 0 {
		site.args = slices.Delete(site.args, i, i+2)
	}
	site.start()
	until(t, 30*time.Second, "Debug records at the site", func() bool {
		return strings.Contains(site.logText(), `"level":"DEBUG"`)
	})

	root.api(t, http.MethodPatch, "/api/v1/connected-registries/loud-site", map[string]any{"logLevel": "Error"}, nil)
	// At Debug the site logs every heartbeat (1 s): two quiet seconds
	// mean the new level is in force.
	until(t, 30*time.Second, "the site to stop logging below Error", func() bool {
		mark := len(site.logText())
		time.Sleep(2 * time.Second)
		tail := site.logText()[mark:]
		return !strings.Contains(tail, `"level":"DEBUG"`) && !strings.Contains(tail, `"level":"INFO"`)
	})

	pinned := newProc(t, "--connection-string", connectionString(t, root, protocol.CreateRequest{Name: "quiet-site", Repositories: []string{"apps/web"}, LogLevel: "Debug"}, root.host),
		"--parent-ca-file", root.ca, "--heartbeat-interval", "1s")
	pinned.start()
	time.Sleep(3 * time.Second)
	if strings.Contains(pinned.logText(), `"level":"DEBUG"`) {
		t.Fatalf("a site started with --log-level Information logged at Debug:\n%s", pinned.logText())
	}
}
