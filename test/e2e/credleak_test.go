package e2e

import (
	"crypto/tls"
	"encoding/json"
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

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/pki"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// credSink stands for a foreign token service: it counts the requests
// and the credentials it receives.
type credSink struct{ requests, credentials atomic.Int64 }

func (s *credSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Header.Get("Authorization") != "" {
		s.credentials.Add(1)
	}
	fmt.Fprint(w, `{"token":"stolen"}`)
}

// listenOn starts h on host, over TLS with cert when cert is not nil.
func listenOn(t *testing.T, host string, cert *tls.Certificate, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	if cert != nil {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// TestParentCredentialsNeverReachForeignRealm runs the built binary as a
// connected registry of a hostile parent — generic (--parent-username,
// --parent-password-file) and connection-string modes, over http and
// https — whose Bearer challenges name a token realm on 127.0.0.2 or on
// another port of 127.0.0.1, both real servers that could receive the
// credentials (the https ones with a certificate the edge trusts). Neither
// sink may see a credential, and the edge says why it is not syncing.
func TestParentCredentialsNeverReachForeignRealm(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	caDir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue([]string{"127.0.0.1", "127.0.0.2"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(caDir, "ca.crt")

	for _, mode := range []string{"generic", "connection-string"} {
		for _, parentTLS := range []bool{false, true} {
			name := fmt.Sprintf("%s/parent_tls=%v", mode, parentTLS)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var pc *tls.Certificate
				if parentTLS {
					pc = &cert
				}
				other, otherPort := &credSink{}, &credSink{}
				otherSrv := listenOn(t, "127.0.0.2", pc, other)
				portSrv := listenOn(t, "127.0.0.1", pc, otherPort)
				var n atomic.Int64
				parent := listenOn(t, "127.0.0.1", pc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Alternate the realm between the two sinks.
					realm := otherSrv.URL + "/token"
					if n.Add(1)%2 == 0 {
						realm = portSrv.URL + "/token"
					}
					w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="parent"`, realm))
					w.WriteHeader(http.StatusUnauthorized)
				}))
				args := []string{"--parent-ca-file", caFile}
				if mode == "generic" {
					pw := filepath.Join(t.TempDir(), "pw")
					if err := os.WriteFile(pw, []byte("parent-secret-password\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					args = append(args, "--parent", parent.URL, "--parent-username", "site", "--parent-password-file", pw, "--repository", "apps/web")
				} else {
					proto := "http"
					if parentTLS {
						proto = "https"
					}
					cs := protocol.ConnectionString{ConnectedRegistryName: "site-one", SyncTokenName: "site-one-sync-token",
						SyncTokenPassword: "parent-secret-password", ParentGatewayEndpoint: strings.TrimPrefix(strings.TrimPrefix(parent.URL, "http://"), "https://"), ParentEndpointProtocol: proto}
					args = append(args, "--connection-string", cs.String())
				}
				p := newProc(t, args...)
				edge := p.start()
				c := ocitest.New(t, edge.url, "admin", adminPassword, edge.ca)
				ocitest.Eventually(t, 60*time.Second, "the edge to report the refused realm", func() bool {
					// A pull-through miss talks to the parent too.
					_, _, _ = c.Do(http.MethodGet, "/v2/apps/web/manifests/1", nil, nil)
					resp, b, err := c.Do(http.MethodGet, "/api/v1/status", nil, nil)
					if err != nil || resp.StatusCode != http.StatusOK {
						return false
					}
					var st struct {
						LastError string `json:"lastError"`
					}
					_ = json.Unmarshal(b, &st)
					return strings.Contains(st.LastError, "token realm") && strings.Contains(st.LastError, "parent.tokenRealmHosts") &&
						n.Load() >= 2 && strings.Contains(p.logText(), "credentials are sent only to the parent's own origin")
				})
				if n.Load() < 2 {
					t.Fatalf("the parent was asked %d times: both sinks were not named", n.Load())
				}
				if a, b := other.credentials.Load(), otherPort.credentials.Load(); a != 0 || b != 0 {
					t.Fatalf("credentials received: %d by %s, %d by %s; want none", a, otherSrv.URL, b, portSrv.URL)
				}
			})
		}
	}
}
