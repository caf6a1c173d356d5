package edge_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// scrape returns the node's /metrics samples by series ("name{labels}"
// as exposed, or the bare name).
func scrape(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	resp, body, err := n.admin().Do(http.MethodGet, "/metrics", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %v", n.addr, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sumPrefix adds the samples whose series starts with prefix.
func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// TestSyncAndOutboxMetrics: after a sync, the edge's /metrics shows a
// succeeded run, its end as the last success time, the blobs copied and
// the parent's request latencies; with the parent cut off, the outbox's
// pending count follows local pushes; on reconnection a push older than
// the message TTL is counted as dropped, a tag moved on both sides as a
// conflict, and nothing stays pending.
func TestSyncAndOutboxMetrics(t *testing.T) {
	t.Parallel()
	const ttl = 12 * time.Second
	begin := time.Now()
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	base := rc.Image(t, "apps/web", "base", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(500, 64<<10))
	pw := root.token(t, "site-pusher", pushApps)
	proxy, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "plant-metrics", Mode: "ReadWrite", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-pusher"}}, proxy.Addr())
	edge := start(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.Sync.MessageTTL = config.Duration(ttl)
	})
	ec := edge.client("site-pusher", pw)
	ocitest.Eventually(t, 30*time.Second, "base at the edge and a succeeded run", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "base")
		return d == base.Digest && scrape(t, edge)[`outpost_sync_runs_total{result="succeeded"}`] >= 1
	})
	m := scrape(t, edge)
	if got := m["outpost_sync_last_success_timestamp_seconds"]; got < float64(begin.Unix()) || got > float64(time.Now().Unix()+1) {
		t.Errorf("last success time: got %.0f, want between %d and now", got, begin.Unix())
	}
	if got := m[`outpost_sync_blobs_total{unit="blobs"}`]; got < 2 {
		t.Errorf("blobs synced: got %v, want at least 2 (config and layer)", got)
	}
	if got := m[`outpost_sync_blobs_total{unit="bytes"}`]; got < 64<<10 {
		t.Errorf("bytes synced: got %v, want at least %d", got, 64<<10)
	}
	if got := m[`outpost_parent_request_duration_seconds_count{code="200",method="GET"}`]; got < 1 {
		t.Errorf("parent GET latencies observed: got %v, want at least 1", got)
	}
	if got := sumPrefix(m, "outpost_parent_request_duration_seconds_sum"); got <= 0 {
		t.Errorf("parent latency sum: got %v, want > 0", got)
	}
	for _, s := range []string{"outpost_sync_repositories_pending", "outpost_sync_blobs_pending", "outpost_outbox_pending", "outpost_outbox_dropped_total", "outpost_outbox_conflicts_total"} {
		if v, ok := m[s]; !ok || v != 0 {
			t.Errorf("%s: got %v (present %v), want 0", s, v, ok)
		}
	}
	if _, ok := scrape(t, root)["outpost_outbox_pending"]; ok {
		t.Error("the root exposes outpost_outbox_pending; it has no outbox")
	}

	proxy.SetDown(true)
	ocitest.Eventually(t, 20*time.Second, "the edge Offline", func() bool {
		var st outboxStatus
		edge.admin().JSON(t, http.MethodGet, "/api/v1/status", nil, &st)
		return st.State == string(protocol.StateOffline)
	})
	ec.Image(t, "apps/web", "old", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(501, 4<<10))
	time.Sleep(ttl + time.Second)
	ec.Image(t, "apps/web", "shared", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(502, 4<<10))
	rc.Image(t, "apps/web", "shared", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(503, 4<<10))
	ocitest.Eventually(t, 10*time.Second, "the offline pushes pending", func() bool {
		return scrape(t, edge)["outpost_outbox_pending"] >= 2
	})
	proxy.SetDown(false)
	ocitest.Eventually(t, ttl-time.Second, "the outbox drained, one drop and one conflict counted", func() bool {
		m := scrape(t, edge)
		return m["outpost_outbox_pending"] == 0 && m["outpost_outbox_dropped_total"] == 1 && m["outpost_outbox_conflicts_total"] == 1
	})
	if m := scrape(t, edge); m[`outpost_sync_runs_total{result="succeeded"}`] < 2 {
		t.Errorf("succeeded runs after reconnection: got %v, want at least 2", m[`outpost_sync_runs_total{result="succeeded"}`])
	}
}
