package edge_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/config"
)

// silentParent is a parent on 127.0.0.1 that accepts connections and
// reads requests but never finishes an answer. With headersFirst it
// answers a manifest HEAD at once, and a GET with its headers and the
// first bytes of the body, then stalls.
type silentParent struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	requests int
}

func newSilentParent(t *testing.T, headersFirst bool) *silentParent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentParent{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go p.serve(c, headersFirst)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	return p
}

func (p *silentParent) serve(c net.Conn, headersFirst bool) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.requests++
		p.mu.Unlock()
		if !headersFirst || !strings.Contains(req.URL.Path, "/manifests/") {
			continue // read the next request, if any; never answer this one
		}
		body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}`)
		d := digest.FromBytes(body)
		hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: %s\r\nContent-Length: %d\r\n\r\n", d, len(body))
		if req.Method == http.MethodHead {
			_, _ = c.Write([]byte(hdr))
			continue
		}
		_, _ = c.Write([]byte(hdr))
		_, _ = c.Write(body[:10])
		return // the rest never comes; the connection stays open
	}
}

func (p *silentParent) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// TestPullThroughSilentParent: with a parent that never answers (or that
// stalls in the middle of a manifest), the first miss at the edge answers
// 503 UNAVAILABLE within about sync.onDemandTimeout, and the next misses, manifests
// and blobs, answer at once without asking the parent.
func TestPullThroughSilentParent(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	for _, tc := range []struct {
		name         string
		headersFirst bool
	}{{"no answer", false}, {"stalled body", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent := newSilentParent(t, tc.headersFirst)
			edge := start(t, t.TempDir(), func(c *config.Config) {
				c.Parent.URL = "http://" + parent.ln.Addr().String()
				c.Parent.Repositories = []string{"apps/web"}
				c.Sync.OnDemandTimeout = config.Duration(timeout)
				c.ApplyDefaults() // the mode and schedule of a generic parent
			})
			ec := edge.admin()
			miss := func(path string, status int, code string) time.Duration {
				t.Helper()
				start := time.Now()
				resp, body, err := ec.Do(http.MethodGet, path, nil, nil)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				wantOCIError(t, "GET "+path, resp.StatusCode, body, status, code)
				return took
			}
			// The parent failed to answer: that is not "unknown".
			if took := miss("/v2/apps/web/manifests/v1", http.StatusServiceUnavailable, "UNAVAILABLE"); took < timeout || took > timeout+4*time.Second {
				t.Errorf("first miss took %s, want about the on-demand timeout %s", took, timeout)
			}
			asked := parent.count()
			for _, m := range []struct{ path, code string }{
				{"/v2/apps/web/manifests/v2", "MANIFEST_UNKNOWN"},
				{"/v2/apps/web/manifests/" + string(digest.FromString("other")), "MANIFEST_UNKNOWN"},
				{"/v2/apps/web/blobs/" + string(digest.FromString("layer")), "BLOB_UNKNOWN"},
			} {
				if took := miss(m.path, http.StatusNotFound, m.code); took > 500*time.Millisecond {
					t.Errorf("GET %s after the parent stayed silent took %s, want an answer at once", m.path, took)
				}
			}
			if got := parent.count(); got != asked {
				t.Errorf("the parent was asked %d more times after it stayed silent, want 0", got-asked)
			}
		})
	}
}

// wantOCIError fails t unless an answer has the given status and an OCI
// error body whose first code is code.
func wantOCIError(t *testing.T, what string, status int, body []byte, wantStatus int, code string) {
	t.Helper()
	var e struct{ Errors []struct{ Code string } }
	if status != wantStatus || json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 || e.Errors[0].Code != code {
		t.Fatalf("%s: got %d %s, want %d %s", what, status, body, wantStatus, code)
	}
}

// TestPullThroughFailingParent: a pull-through miss at the edge whose
// parent answers 500 is answered 502 with an OCI error body and logged,
// not 404; one the parent does not have is answered 404 unknown.
func TestPullThroughFailingParent(t *testing.T) {
	t.Parallel()
	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			_, _ = w.Write([]byte("{}"))
		case strings.Contains(r.URL.Path, "/absent"):
			http.NotFound(w, r)
		default:
			http.Error(w, "backend down", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(parent.Close)
	edge, log := startLogged(t, t.TempDir(), func(c *config.Config) {
		c.Parent.URL = parent.URL
		c.Parent.Repositories = []string{"apps/web"}
		c.ApplyDefaults()
	})
	ec := edge.admin()
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/v2/apps/web/manifests/v1", http.StatusBadGateway, "UNKNOWN"},
		{"/v2/apps/web/blobs/" + string(digest.FromString("layer")), http.StatusBadGateway, "UNKNOWN"},
		{"/v2/apps/web/manifests/absent", http.StatusNotFound, "MANIFEST_UNKNOWN"},
	} {
		resp, body, err := ec.Do(http.MethodGet, tc.path, nil, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		wantOCIError(t, "GET "+tc.path, resp.StatusCode, body, tc.status, tc.code)
	}
	if l := log.String(); !strings.Contains(l, `msg="request failed" method=GET path=/v2/apps/web/manifests/v1`) || !strings.Contains(l, "500") {
		t.Errorf("the edge did not log the failed pull-through of /v2/apps/web/manifests/v1 with the parent's 500:\n%s", l)
	}
}
