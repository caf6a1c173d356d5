package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/server"
)

// The limit tests run the built server on a loopback listener, through
// Serve: connection limits, deadlines and the expiry of upload sessions
// live there, not in the handler.

// live is a server serving on 127.0.0.1.
type live struct {
	t      *testing.T
	addr   string
	client *http.Client
}

// startLive seeds a data directory as azStart does, applies edit to a
// plain-HTTP configuration and serves it until the test ends.
func startLive(t *testing.T, seed func(tx *auth.Tx) error, edit func(*config.Config)) *live {
	t.Helper()
	dir := t.TempDir()
	azSeed(t, dir, seed)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data, cfg.Addr, cfg.TLS.Mode = dir, ln.Addr().String(), config.TLSOff
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln); _ = srv.Close() }()
	t.Cleanup(func() { cancel(); <-done })
	// No connection is kept between requests, so that the tests of the
	// connection limit count only their own.
	l := &live{t: t, addr: cfg.Addr, client: &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := l.client.Get("http://" + l.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var liveAdmin = azBasic(auth.AdminUser, azAdminPW)

// do sends one request and returns the response with its body read.
func (l *live) do(method, path string, hdr http.Header, body io.Reader, cred azCred) (*http.Response, []byte) {
	l.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+l.addr+path, body)
	if err != nil {
		l.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	cred.apply(req)
	resp, err := l.client.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		l.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// want sends a request and fails unless it answers status.
func (l *live) want(status int, method, path string, body []byte, cred azCred) *http.Response {
	l.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	resp, b := l.do(method, path, nil, r, cred)
	if resp.StatusCode != status {
		l.t.Fatalf("%s %s: got %d %s, want %d", method, path, resp.StatusCode, b, status)
	}
	return resp
}

// wantOCIError sends a request and checks its status and OCI error code.
func (l *live) wantOCIError(status int, code, method, path string, cred azCred) *http.Response {
	l.t.Helper()
	resp, b := l.do(method, path, nil, nil, cred)
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if resp.StatusCode != status || json.Unmarshal(b, &body) != nil || len(body.Errors) != 1 || body.Errors[0].Code != code || body.Errors[0].Message == "" {
		l.t.Fatalf("%s %s: got %d %s, want %d with one %s error", method, path, resp.StatusCode, b, status, code)
	}
	return resp
}

// startSession opens an upload session and returns its path.
func (l *live) startSession(repo string, cred azCred) string {
	l.t.Helper()
	resp := l.want(http.StatusAccepted, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, cred)
	return resp.Header.Get("Location")
}

// pushBlob uploads data monolithically and returns its blob path.
func (l *live) pushBlob(repo string, data []byte) string {
	l.t.Helper()
	d := azDigest(data)
	l.want(http.StatusCreated, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d, data, liveAdmin)
	return "/v2/" + repo + "/blobs/" + d
}

// metric returns the value of an unlabelled metric on /metrics.
func (l *live) metric(name string) float64 {
	l.t.Helper()
	_, b := l.do(http.MethodGet, "/metrics", nil, nil, azCred{})
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				l.t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	l.t.Fatalf("metric %s not on /metrics", name)
	return 0
}

// dial opens a raw connection and sends the head of a request as the
// admin.
func (l *live) dial(method, path string, extra string) net.Conn {
	l.t.Helper()
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = c.Close() })
	basic := base64.StdEncoding.EncodeToString([]byte(auth.AdminUser + ":" + azAdminPW))
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n%s\r\n", method, path, l.addr, basic, extra); err != nil {
		l.t.Fatal(err)
	}
	return c
}

// idleCfg sets a one-second idle timeout.
func idleCfg(c *config.Config) { c.Limits.IdleTimeout = config.Duration(time.Second) }

// TestStalledUploadClosed: an upload body that stops after 100 bytes is
// answered and its connection closed within the idle timeout (1 s), not
// held open.
func TestStalledUploadClosed(t *testing.T) {
	t.Parallel()
	l := startLive(t, nil, idleCfg)
	loc := l.startSession("stall/app", liveAdmin)
	c := l.dial(http.MethodPatch, loc, "Content-Type: application/octet-stream\r\nContent-Length: 10485760\r\n")
	start := time.Now()
	if _, err := c.Write(bytes.Repeat([]byte{'x'}, 100)); err != nil {
		t.Fatal(err)
	}
	// Read whatever the server answers until it closes; the client
	// deadline is far beyond the server's.
	if err := c.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("after %s: the server held the stalled upload open (%v); read %q", elapsed.Round(time.Millisecond), err, answer)
	}
	if elapsed > 4*time.Second {
		t.Errorf("stalled upload closed after %s, want within about 1s", elapsed.Round(time.Millisecond))
	}
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 400")) || !bytes.Contains(answer, []byte("BLOB_UPLOAD_INVALID")) {
		t.Errorf("answer %q, want 400 BLOB_UPLOAD_INVALID", answer)
	}
	if got := l.metric("outpost_http_idle_timeouts_total"); got < 1 {
		t.Errorf("outpost_http_idle_timeouts_total = %v, want at least 1", got)
	}
}

// TestStalledReaderClosed: a client that stops reading a large blob is cut
// off within the idle timeout; it never gets the rest when it reads again.
func TestStalledReaderClosed(t *testing.T) {
	t.Parallel()
	l := startLive(t, nil, idleCfg)
	blob := make([]byte, 64<<20) // far more than loopback socket buffers hold
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	path := l.pushBlob("stall/reader", blob)
	c := l.dial(http.MethodGet, path, "")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET blob: %v, %v", resp, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Stop reading; the server's write stalls and its deadline fires.
	for l.metric("outpost_http_idle_timeouts_total") < 1 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no idle timeout %s after the client stopped reading", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Errorf("stalled reader cut off after %s, want within about 1s", elapsed.Round(time.Millisecond))
	}
	if err := c.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rest, err := io.Copy(io.Discard, resp.Body)
	if got := 1<<20 + rest; got >= int64(len(blob)) || err == nil {
		t.Errorf("after the stall the client read %d of %d bytes (err %v), want the connection cut short", got, len(blob), err)
	}
}

// throttled passes its reader's bytes at rate bytes per second, and
// pauses once for each duration in pauses (each under the idle timeout)
// after every pauseEvery bytes.
type throttled struct {
	r          io.Reader
	rate       float64
	pauseEvery int64
	pauses     []time.Duration
	start      time.Time
	n          int64
	paused     time.Duration
}

func (t *throttled) Read(p []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	n, err := t.r.Read(p[:min(len(p), 64<<10)])
	before := t.n
	t.n += int64(n)
	if len(t.pauses) > 0 && t.n/t.pauseEvery > before/t.pauseEvery {
		t.paused += t.pauses[0]
		t.pauses = t.pauses[1:]
	}
	due := t.start.Add(time.Duration(float64(t.n)/t.rate*float64(time.Second)) + t.paused)
	time.Sleep(time.Until(due))
	return n, err
}

// TestSlowTransfersSurvive: with a three-second idle timeout, a 12 MiB
// upload and a 12 MiB download moving at about 4 MB/s, with pauses of one
// second, complete intact. (The two seconds between a pause and the
// timeout absorb a busy machine's late wake-ups: TestIdleTimeout checks
// that a stall longer than the timeout is cut.)
func TestSlowTransfersSurvive(t *testing.T) {
	t.Parallel()
	l := startLive(t, nil, func(c *config.Config) { c.Limits.IdleTimeout = config.Duration(3 * time.Second) })
	blob := make([]byte, 12<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	slow := func(r io.Reader) io.Reader {
		return &throttled{r: r, rate: 4e6, pauseEvery: 3 << 20, pauses: []time.Duration{time.Second, time.Second, time.Second}}
	}
	t.Run("upload", func(t *testing.T) {
		t.Parallel()
		d := azDigest(blob)
		loc := l.startSession("slow/up", liveAdmin)
		resp, b := l.do(http.MethodPatch, loc, http.Header{"Content-Type": {"application/octet-stream"}}, slow(bytes.NewReader(blob)), liveAdmin)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("slow PATCH: got %d %s, want 202", resp.StatusCode, b)
		}
		l.want(http.StatusCreated, http.MethodPut, loc+"?digest="+d, nil, liveAdmin)
	})
	t.Run("download", func(t *testing.T) {
		t.Parallel()
		path := l.pushBlob("slow/down", blob)
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+l.addr+path, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		liveAdmin.apply(req)
		resp, err := l.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(slow(resp.Body))
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("slow download: %d of %d bytes, intact %v, err %v", len(got), len(blob), bytes.Equal(got, blob), err)
		}
	})
}

// TestConnectionsPerClient: a client address holding its limit of
// connections has the next one closed at once; closing one lets a new
// one through.
func TestConnectionsPerClient(t *testing.T) {
	t.Parallel()
	l := startLive(t, nil, func(c *config.Config) { c.Limits.ConnectionsPerClient = 3 })
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		held = append(held, c)
	}
	// The 4th is accepted by the kernel, then closed by the server
	// without an answer.
	extra, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	start := time.Now()
	if err := extra.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _ = fmt.Fprintf(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	n, err := extra.Read(make([]byte, 1))
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || n > 0 || time.Since(start) > 4*time.Second {
		t.Fatalf("connection beyond the limit: read %d bytes, %v after %s; want it closed at once", n, err, time.Since(start).Round(time.Millisecond))
	}
	// The connections within the limit work.
	if _, err := fmt.Fprintf(held[0], "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("held connection: %v, %v", resp, err)
	}
	_ = resp.Body.Close()
	// held[0] is closed by the server after its answer: its place frees.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := l.client.Get("http://" + l.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := l.metric("outpost_connections_refused_total"); got < 1 {
		t.Errorf("outpost_connections_refused_total = %v, want at least 1", got)
	}
}

// liveTokens seeds two push tokens, ci-one and ci-two.
func liveTokens(t *testing.T) func(tx *auth.Tx) error {
	return func(tx *auth.Tx) error {
		for _, name := range []string{"ci-one", "ci-two"} {
			if err := tx.PutToken(azToken(t, name, auth.ScopeMapPush)); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestUploadSessionLimits: each token holds at most its limit of open
// sessions across repositories, each repository at most its own, and the
// refusal is 429 TOOMANYREQUESTS with Retry-After.
func TestUploadSessionLimits(t *testing.T) {
	t.Parallel()
	l := startLive(t, liveTokens(t), func(c *config.Config) {
		c.Limits.UploadSessionsPerCredential = 2
		c.Limits.UploadSessionsPerRepository = 3
	})
	one, two := azBasic("ci-one", azPW), azBasic("ci-two", azPW)
	first := l.startSession("team/a", one)
	l.startSession("team/b", one)
	resp := l.wantOCIError(http.StatusTooManyRequests, "TOOMANYREQUESTS", http.MethodPost, "/v2/team/c/blobs/uploads/", one)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Errorf("429 Retry-After %q, want a number of seconds", resp.Header.Get("Retry-After"))
	}
	// Another token is not held back by ci-one's sessions...
	l.startSession("team/a", two)
	l.startSession("team/a", liveAdmin)
	// ...but team/a is now full for everyone.
	l.wantOCIError(http.StatusTooManyRequests, "TOOMANYREQUESTS", http.MethodPost, "/v2/team/a/blobs/uploads/", two)
	l.startSession("team/c", two)
	// ci-one cancels a session and may open another.
	l.want(http.StatusNoContent, http.MethodDelete, first, nil, one)
	l.startSession("team/d", one)
	l.wantOCIError(http.StatusTooManyRequests, "TOOMANYREQUESTS", http.MethodPost, "/v2/team/e/blobs/uploads/", one)
}

// TestUploadMaxAgeWhileRunning: a session idle for limits.uploadMaxAge is
// removed while the server runs, and its place frees.
func TestUploadMaxAgeWhileRunning(t *testing.T) {
	t.Parallel()
	l := startLive(t, liveTokens(t), func(c *config.Config) {
		c.Limits.UploadMaxAge = config.Duration(time.Second)
		c.Limits.UploadSessionsPerCredential = 1
	})
	one := azBasic("ci-one", azPW)
	loc := l.startSession("age/app", one)
	l.wantOCIError(http.StatusTooManyRequests, "TOOMANYREQUESTS", http.MethodPost, "/v2/age/app/blobs/uploads/", one)
	// Nothing touches the session: the purge removes it and the sweep
	// that follows frees its place.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, b := l.do(http.MethodPost, "/v2/age/app/blobs/uploads/", nil, nil, one)
		if resp.StatusCode == http.StatusAccepted {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("new session 10s after the first one's 1s max age: got %d %s, want 202", resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.wantOCIError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodGet, loc, one)
}

// TestUncleanPathsRefused: paths with empty, "." or ".." segments are
// refused, never redirected to their cleaned form.
func TestUncleanPathsRefused(t *testing.T) {
	t.Parallel()
	l := startLive(t, nil, nil)
	l.pushBlob("lib/app", []byte("content"))
	for _, p := range []string{
		"/v2/team/../lib/app/tags/list",
		"/v2/lib//app/tags/list",
		"/v2//lib/app/tags/list",
		"/v2/lib/./app/tags/list",
		"/v2/lib/app/blobs/uploads/../../tags/list",
		"/v2/./",
		"//healthz",
		"/api/v1/../healthz",
		"/./metrics",
		"/api/v1//tokens",
	} {
		resp, b := l.do(http.MethodGet, p, nil, nil, liveAdmin)
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: got %d (Location %q), want 404 or 400", p, resp.StatusCode, resp.Header.Get("Location"))
			continue
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("GET %s: Location %q", p, loc)
		}
		if strings.HasPrefix(p, "/v2/") && !bytes.Contains(b, []byte(`"errors"`)) {
			t.Errorf("GET %s: body %q, want an OCI error", p, b)
		}
	}
	// Clean paths still work.
	l.want(http.StatusOK, http.MethodGet, "/v2/", nil, liveAdmin)
	l.want(http.StatusOK, http.MethodGet, "/v2/lib/app/blobs/"+azDigest([]byte("content")), nil, liveAdmin)
	l.want(http.StatusOK, http.MethodGet, "/healthz", nil, azCred{})
}
