package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/server"
)

const adminPW = "admin-password-for-tests"

// node is a real Outpost server on 127.0.0.1 with HTTPS from its own CA.
type node struct {
	t      testing.TB
	cfg    config.Config
	addr   string
	url    string
	ca     string
	cancel context.CancelFunc
	done   chan struct{}

	// clients are reused, so that polling loops do not leave a new
	// keep-alive connection behind on each call (the server caps them
	// per client address: limits.connectionsPerClient).
	mu      sync.Mutex
	clients map[[2]string]*ocitest.Client
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// start runs a server with cfg (data dir and address filled in).
func start(t testing.TB, data string, edit func(*config.Config)) *node {
	t.Helper()
	return startWith(t, data, edit, testWriter{t})
}

// startWith is start with the server's warnings written to out.
func startWith(t testing.TB, data string, edit func(*config.Config), out io.Writer) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = data
	cfg.Addr = ln.Addr().String()
	cfg.LoginServer = cfg.Addr
	cfg.Sync.HeartbeatInterval = config.Duration(time.Second)
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(cfg, log, "test", adminPW)
	if err != nil {
		_ = ln.Close()
		t.Fatalf("start server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, cfg: cfg, addr: cfg.Addr, url: "https://" + cfg.Addr, ca: filepath.Join(data, "pki", "ca.crt"), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		_ = srv.Serve(ctx, ln)
		_ = srv.Close()
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(40 * time.Second):
		n.t.Errorf("server %s did not stop", n.addr)
	}
}

func (n *node) client(user, pass string) *ocitest.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := [2]string{user, pass}
	if c, ok := n.clients[k]; ok {
		return c
	}
	c := ocitest.New(n.t, n.url, user, pass, n.ca)
	if n.clients == nil {
		n.clients = map[[2]string]*ocitest.Client{}
	}
	n.clients[k] = c
	return c
}

func (n *node) admin() *ocitest.Client { return n.client("admin", adminPW) }

// token creates a token with repository grants and returns its password.
func (n *node) token(t testing.TB, name string, repos []map[string]any) string {
	var out struct {
		Credentials struct {
			Passwords []struct{ Value string } `json:"passwords"`
		} `json:"credentials"`
	}
	n.admin().JSON(t, "POST", "/api/v1/tokens", map[string]any{"name": name, "repositories": repos}, &out)
	return out.Credentials.Passwords[0].Value
}

// connectedRegistry creates a connected registry and returns its
// connection string, pointing at endpoint (default: n itself).
func (n *node) connectedRegistry(t testing.TB, req protocol.CreateRequest, endpoint string) string {
	n.admin().JSON(t, "POST", "/api/v1/connected-registries", req, nil)
	var s protocol.Settings
	n.admin().JSON(t, "POST", "/api/v1/connected-registries/"+req.Name+"/settings", map[string]any{"parentProtocol": "https", "generatePassword": 1}, &s)
	cs, err := protocol.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	if endpoint != "" {
		cs.ParentGatewayEndpoint = endpoint
	}
	return cs.String()
}

// startEdge runs a connected registry of root and waits until it has
// activated (so its client tokens authenticate).
func startEdge(t testing.TB, root *node, data, connString string) *node {
	n := start(t, data, func(c *config.Config) {
		c.ConnectionString = connString
		c.Parent.CAFile = root.ca
	})
	ocitest.Eventually(t, 60*time.Second, "the edge to activate", func() bool {
		var st struct {
			Activation string `json:"activationStatus"`
		}
		n.admin().JSON(t, "GET", "/api/v1/status", nil, &st)
		return st.Activation == string(protocol.ActivationActive)
	})
	return n
}

func (n *node) crStatus(t testing.TB, name string) protocol.ConnectedRegistry {
	var c protocol.ConnectedRegistry
	n.admin().JSON(t, "GET", "/api/v1/connected-registries/"+name, nil, &c)
	return c
}

// statusOf describes the outcome of a request for a failure message: the
// error when it got no response (a nil response must not be read), else
// the status.
func statusOf(resp *http.Response, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	return resp.Status
}
