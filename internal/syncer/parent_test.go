package syncer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/origin"
	"github.com/outpost-registry/outpost/internal/pki"
)

// testPKI is a CA whose certificate covers both loopback hosts the test
// listens on, so that an https sink on 127.0.0.2 could really receive
// what a client sends it: only the credential rule keeps it out.
type testPKI struct {
	caFile string
	cert   tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue([]string{"127.0.0.1", "127.0.0.2", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{caFile: filepath.Join(dir, "ca.crt"), cert: cert}
}

// serve starts h on host (127.0.0.1 or 127.0.0.2), over TLS when tlsOn.
func (p testPKI) serve(t *testing.T, host string, tlsOn bool, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	if tlsOn {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// sink records every request and every credential it receives.
type sink struct {
	requests, credentials atomic.Int64
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Header.Get("Authorization") != "" || r.URL.Query().Get("password") != "" {
		s.credentials.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"token":"stolen","access_token":"stolen"}`)
}

// hostileParent answers every request with a Bearer challenge whose realm
// is realm.
func hostileParent(realm *string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="parent"`, *realm))
		w.WriteHeader(http.StatusUnauthorized)
	})
}

// TestParentCredentialsStayOnItsOrigin is the hostile-parent case: a
// parent over http or https names a token realm on another loopback host
// or on another port of its own host. Neither sink may see a credential,
// whether the call is the OCI API (a generic parent) or the control API
// (a connection-string parent), and the error names the realm and the
// setting rather than "parent unreachable".
func TestParentCredentialsStayOnItsOrigin(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	for _, parentTLS := range []bool{false, true} {
		for _, sinkTLS := range []bool{false, true} {
			for _, sinkHost := range []string{"127.0.0.2", "127.0.0.1"} {
				name := fmt.Sprintf("parent_tls=%v/sink_tls=%v/sink=%s", parentTLS, sinkTLS, sinkHost)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					s := &sink{}
					sinkSrv := p.serve(t, sinkHost, sinkTLS, s)
					realm := sinkSrv.URL + "/token"
					parentSrv := p.serve(t, "127.0.0.1", parentTLS, hostileParent(&realm))
					parent, err := NewParent(ParentOptions{URL: parentSrv.URL, Username: "sync-token", Password: "s3cret-password", CAFile: p.caFile, Timeout: 5 * time.Second})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					calls := map[string]func() error{
						"manifest": func() error { _, _, _, err := parent.Manifest(ctx, "apps/web", "1", 1<<20); return err },
						"tags":     func() error { _, err := parent.Tags(ctx, "apps/web"); return err },
						"control": func() error {
							return parent.JSON(ctx, http.MethodGet, "/api/v1/connected-registries/x/config", nil, nil)
						},
					}
					for call, f := range calls {
						err := f()
						if !errors.Is(err, origin.ErrForeign) {
							t.Errorf("%s: got %v, want origin.ErrForeign", call, err)
							continue
						}
						if errors.Is(err, ErrConnection) || Temporary(err) {
							t.Errorf("%s: %v reported as a connection problem", call, err)
						}
						if !strings.Contains(err.Error(), realm) || !strings.Contains(err.Error(), "parent.tokenRealmHosts") {
							t.Errorf("%s: message %q: want the realm %s and the setting", call, err, realm)
						}
					}
					if n := s.credentials.Load(); n != 0 {
						t.Fatalf("sink on %s received %d credentials, want 0", sinkSrv.URL, n)
					}
				})
			}
		}
	}
}

// TestParentCredentialsReachAllowedRealms: a realm on the parent's own
// origin, and a realm host the operator listed, receive the credentials
// (so the rule does not simply break token auth).
func TestParentCredentialsReachAllowedRealms(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	t.Run("same origin", func(t *testing.T) {
		t.Parallel()
		var realm string
		var creds atomic.Int64
		mux := http.NewServeMux()
		mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
			if u, pw, ok := r.BasicAuth(); ok && u == "sync-token" && pw == "s3cret-password" {
				creds.Add(1)
			}
			fmt.Fprint(w, `{"token":"t"}`)
		})
		mux.Handle("/", hostileParent(&realm))
		srv := p.serve(t, "127.0.0.1", true, mux)
		realm = srv.URL + "/token"
		parent, err := NewParent(ParentOptions{URL: srv.URL, Username: "sync-token", Password: "s3cret-password", CAFile: p.caFile})
		if err != nil {
			t.Fatal(err)
		}
		if err := parent.JSON(context.Background(), http.MethodGet, "/api/v1/x", nil, nil); err != nil {
			t.Fatalf("got %v, want the call to succeed with a token", err)
		}
		if creds.Load() != 1 {
			t.Fatalf("realm got %d credentials, want 1", creds.Load())
		}
	})
	t.Run("listed realm host", func(t *testing.T) {
		t.Parallel()
		s := &sink{}
		sinkSrv := p.serve(t, "127.0.0.2", true, s)
		realm := sinkSrv.URL + "/token"
		parentSrv := p.serve(t, "127.0.0.1", true, hostileParent(&realm))
		parent, err := NewParent(ParentOptions{URL: parentSrv.URL, Username: "u", Password: "p", CAFile: p.caFile,
			TokenRealmHosts: []string{strings.TrimPrefix(sinkSrv.URL, "https://")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := parent.JSON(context.Background(), http.MethodGet, "/api/v1/x", nil, nil); err != nil {
			t.Fatalf("got %v, want success through the listed realm", err)
		}
		if s.credentials.Load() != 1 {
			t.Fatalf("listed realm got %d credentials, want 1", s.credentials.Load())
		}
	})
}

// TestParentRedirectDropsCredentials: a parent that redirects a blob GET
// to another port of its own host (a storage backend, or an attacker)
// must not forward the credentials there.
func TestParentRedirectDropsCredentials(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	s := &sink{}
	sinkSrv := p.serve(t, "127.0.0.1", false, s)
	parentSrv := p.serve(t, "127.0.0.1", false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="parent"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, sinkSrv.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	parent, err := NewParent(ParentOptions{URL: parentSrv.URL, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := parent.Blob(context.Background(), "apps/web", digest.Digest("sha256:"+strings.Repeat("a", 64)), 0)
	if err == nil {
		body.Close()
	}
	if s.requests.Load() == 0 {
		t.Fatalf("the redirect was not followed (err %v): the test checks nothing", err)
	}
	if n := s.credentials.Load(); n != 0 {
		t.Fatalf("redirect target received %d credentials, want 0", n)
	}
}

func TestMain(m *testing.M) {
	// The tests talk only to loopback; no proxy must stand in between.
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		_ = os.Unsetenv(k)
	}
	os.Exit(m.Run())
}
