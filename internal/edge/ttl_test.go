package edge_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/faultproxy"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// logBuffer keeps a server's log lines for assertions, and passes them to
// the test log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged is start with the server's warnings kept in the returned
// buffer.
func startLogged(t testing.TB, data string, edit func(*config.Config)) (*node, *logBuffer) {
	t.Helper()
	logs := &logBuffer{t: t}
	return startWith(t, data, edit, logs), logs
}

type outboxStatus struct {
	State  string `json:"connectionState"`
	Outbox *struct {
		Pending int64 `json:"pending"`
		Dropped int64 `json:"droppedExpired"`
	} `json:"outbox"`
	Details []string `json:"statusDetails"`
}

// TestOutboxMessageTTL: with a short message TTL (the test setting
// sync.messageTTL), pushes that waited longer than the TTL for an
// unreachable parent are dropped, not delivered, each with a logged
// warning, and counted in the edge's status and in the statusDetails the
// root shows; a push made after the parent returned is delivered.
func TestOutboxMessageTTL(t *testing.T) {
	t.Parallel()
	// Long enough for a fresh push to be delivered on a loaded machine
	// (heartbeat 1 s, outbox tick 2 s), short enough for a test.
	const ttl = 15 * time.Second
	root := start(t, t.TempDir(), nil)
	rc := root.admin()
	base := rc.Image(t, "apps/web", "base", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(300, 8<<10))
	pw := root.token(t, "site-pusher", pushApps)
	proxy, err := faultproxy.New(root.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "plant-ttl", Mode: "ReadWrite", Repositories: []string{"apps/web"}, ClientTokens: []string{"site-pusher"}}, proxy.Addr())
	edge, logs := startLogged(t, t.TempDir(), func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.Sync.MessageTTL = config.Duration(ttl)
	})
	ec := edge.client("site-pusher", pw)
	status := func() outboxStatus {
		var st outboxStatus
		edge.admin().JSON(t, http.MethodGet, "/api/v1/status", nil, &st)
		return st
	}
	ocitest.Eventually(t, 30*time.Second, "base at the edge", func() bool {
		d, _, _ := ec.ManifestDigest("apps/web", "base")
		return d == base.Digest
	})

	proxy.SetDown(true)
	ocitest.Eventually(t, 20*time.Second, "the edge Offline", func() bool { return status().State == string(protocol.StateOffline) })
	old := []string{"old-0", "old-1", "old-2"}
	for i, tag := range old {
		ec.Image(t, "apps/web", tag, v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(310+i), 4<<10))
	}
	// The messages' age is measured from the push: let the TTL pass.
	time.Sleep(ttl + time.Second)
	proxy.SetDown(false)

	ocitest.Eventually(t, 30*time.Second, "the expired messages dropped and counted", func() bool {
		st := status()
		return st.Outbox != nil && st.Outbox.Dropped == int64(len(old)) && st.Outbox.Pending == 0
	})
	fresh := ec.Image(t, "apps/web", "fresh", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(320, 4<<10))
	ocitest.Eventually(t, ttl, "the fresh push at the root", func() bool {
		d, _, _ := rc.ManifestDigest("apps/web", "fresh")
		return d == fresh.Digest
	})
	for _, tag := range old {
		if _, code, _ := rc.ManifestDigest("apps/web", tag); code != http.StatusNotFound {
			t.Errorf("expired push %s at the root: got %d, want 404", tag, code)
		}
		if !strings.Contains(logs.String(), "tag="+tag) {
			t.Errorf("no warning logged for the expired push %s", tag)
		}
	}
	if got := strings.Count(logs.String(), "outbox message expired; dropped"); got != len(old) {
		t.Errorf("expiry warnings logged: got %d, want %d", got, len(old))
	}
	if st := status(); st.Outbox.Dropped != int64(len(old)) {
		t.Errorf("dropped after the fresh delivery: got %d, want %d", st.Outbox.Dropped, len(old))
	}
	ocitest.Eventually(t, 20*time.Second, "the drop reported at the root", func() bool {
		for _, d := range root.crStatus(t, "plant-ttl").StatusDetails {
			if strings.Contains(d, "3 outbox messages expired") {
				return true
			}
		}
		return false
	})
}
