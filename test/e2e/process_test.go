package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/time/rate"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// proc is an outpost binary that the test can SIGKILL and start again
// with the same data directory and arguments.
type proc struct {
	t     *testing.T
	args  []string
	host  string
	data  string
	cmd   *exec.Cmd
	done  chan struct{}
	logs  *bytes.Buffer
	logMu sync.Mutex // guards logs while the process writes to it
	runs  int
}

// logText is what the process has logged so far; safe while it runs.
func (p *proc) logText() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.logs == nil {
		return ""
	}
	return p.logs.String()
}

// newProc prepares `outpost serve` on a free port with its own data
// directory and extra arguments; start runs it.
func newProc(t *testing.T, extra ...string) *proc {
	t.Helper()
	requireE2E(t)
	if os.Getenv("OUTPOST_BIN") == "" {
		t.Fatal("OUTPOST_BIN must name the built outpost binary")
	}
	p := &proc{t: t, host: freePort(t), data: filepath.Join(t.TempDir(), "data")}
	p.args = append([]string{"serve", "--addr", p.host, "--data", p.data, "--log-level", "Information"}, extra...)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("outpost %s log:\n%s", p.host, p.logText())
		}
	})
	return p
}

// start runs the binary and waits (30 s at most) until /v2/ answers the
// admin over HTTPS, returning a registry handle for API calls.
func (p *proc) start() *registry {
	t := p.t
	t.Helper()
	p.runs++
	if p.logs == nil {
		p.logs = &bytes.Buffer{}
	}
	p.logMu.Lock()
	_, _ = p.logs.WriteString("---- start " + time.Now().Format(time.RFC3339Nano) + "\n")
	p.logMu.Unlock()
	cmd := exec.Command(os.Getenv("OUTPOST_BIN"), p.args...)
	cmd.Env = append(os.Environ(), "OUTPOST_ADMIN_PASSWORD="+adminPassword)
	w := &lockedWriter{mu: &p.logMu, w: p.logs}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start outpost: %v", err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	r := &registry{host: p.host, dir: filepath.Dir(p.data), ca: filepath.Join(p.data, "pki", "ca.crt"), url: "https://" + p.host}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("outpost %s exited at start:\n%s", p.host, p.logText())
		default:
		}
		if c, err := adminClient(t, r); err == nil {
			resp, _, err := c.Do(http.MethodGet, "/v2/", nil, nil)
			if err == nil && resp.StatusCode == http.StatusOK {
				r.http = c.HTTP
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("outpost on %s did not become ready:\n%s", p.host, p.logText())
	return nil
}

// adminClient is an ocitest client for r as the admin, once r's CA exists.
func adminClient(t *testing.T, r *registry) (*ocitest.Client, error) {
	if _, err := os.Stat(r.ca); err != nil {
		return nil, err
	}
	c := ocitest.New(t, r.url, "admin", adminPassword, r.ca)
	c.HTTP.Timeout = 20 * time.Second
	return c, nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("SIGKILL outpost: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatal("outpost did not exit after SIGKILL")
	}
	p.logMu.Lock()
	_, _ = p.logs.WriteString("---- SIGKILL " + time.Now().Format(time.RFC3339Nano) + "\n")
	p.logMu.Unlock()
}

// stop ends a running process gracefully (SIGKILL after 15 s).
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// edgeStatus is the part of the edge's GET /api/v1/status the tests read.
type edgeStatus struct {
	ConnectionState string `json:"connectionState"`
	Activation      string `json:"activationStatus"`
	Progress        struct {
		Running bool `json:"running"`
	} `json:"progress"`
	Outbox *struct {
		Pending int64 `json:"pending"`
		Dropped int64 `json:"droppedExpired"`
	} `json:"outbox"`
}

func readStatus(c *ocitest.Client) (edgeStatus, bool) {
	var st edgeStatus
	resp, b, err := c.Do(http.MethodGet, "/api/v1/status", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return st, false
	}
	return st, json.Unmarshal(b, &st) == nil
}

// connectionString declares a connected registry at root and returns its
// connection string with the parent endpoint replaced by endpoint.
func connectionString(t *testing.T, root *registry, req protocol.CreateRequest, endpoint string) string {
	t.Helper()
	root.api(t, http.MethodPost, "/api/v1/connected-registries", req, nil)
	var s protocol.Settings
	root.api(t, http.MethodPost, "/api/v1/connected-registries/"+req.Name+"/settings", protocol.SettingsRequest{ParentProtocol: "https", GeneratePassword: 1}, &s)
	cs, err := protocol.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	cs.ParentGatewayEndpoint = endpoint
	return cs.String()
}

// fetchVerified pulls blob d of repo and checks its size and digest.
func fetchVerified(c *ocitest.Client, repo string, d v1.Descriptor) error {
	resp, b, err := c.Do(http.MethodGet, "/v2/"+repo+"/blobs/"+string(d.Digest), nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(repo + "@" + string(d.Digest) + ": " + resp.Status)
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		return errors.New(repo + "@" + string(d.Digest) + ": content does not verify")
	}
	return nil
}

// checkTag verifies that repo:tag at c resolves to want and that its whole
// graph (config and layers) pulls and verifies.
func checkTag(c *ocitest.Client, repo, tag string, want digest.Digest) error {
	resp, body, err := c.Do(http.MethodGet, "/v2/"+repo+"/manifests/"+tag, http.Header{"Accept": {v1.MediaTypeImageManifest}}, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(repo + ":" + tag + ": " + resp.Status)
	}
	if got := digest.FromBytes(body); got != want {
		return errors.New(repo + ":" + tag + ": got " + string(got) + ", want " + string(want))
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if err := fetchVerified(c, repo, d); err != nil {
			return errors.New(repo + ":" + tag + ": " + err.Error())
		}
	}
	return nil
}

// listTags returns the tags of repo at c (none for an unknown repository).
func listTags(t *testing.T, c *ocitest.Client, repo string) []string {
	t.Helper()
	resp, b, err := c.Do(http.MethodGet, "/v2/"+repo+"/tags/list", nil, nil)
	if err != nil {
		t.Fatalf("list tags of %s: %v", repo, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var out struct {
		Tags []string `json:"tags"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
		t.Fatalf("list tags of %s: %s %s", repo, resp.Status, b)
	}
	return out.Tags
}

// storedBlobs hashes every file under data/blobs and returns the verified
// blob digests; a file whose content does not match its name fails t.
func storedBlobs(t *testing.T, data string) map[digest.Digest]bool {
	t.Helper()
	out := map[digest.Digest]bool{}
	root := filepath.Join(data, "blobs", "sha256")
	err := filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != de.Name() {
			t.Errorf("blob file %s holds content %s: a partial or corrupt blob under a digest name", path, got)
			return nil
		}
		out[digest.NewDigestFromEncoded(digest.SHA256, de.Name())] = true
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// uploadFiles returns the upload session files (content, not .repo) in
// data/uploads with their size.
func uploadFiles(t *testing.T, data string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	entries, err := os.ReadDir(filepath.Join(data, "uploads"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".repo") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

// link is a TCP proxy on 127.0.0.1 between an edge and its parent that can
// be taken down and can slow the edge's uploads (bytes towards the
// parent), so that an outbox delivery lasts long enough to be interrupted.
type link struct {
	ln       net.Listener
	upstream string
	limiter  *rate.Limiter
	// downLimiter paces bytes towards the edge (setDownloadRate).
	downLimiter *rate.Limiter
	down        atomic.Bool
	// Downstream counts bytes sent from the parent to the edge.
	Downstream atomic.Int64
	// cutAt, when above zero, takes the link down once Downstream
	// reaches it (cutAfter), and cut is closed then.
	cutAt atomic.Int64
	cut   chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newLink(t *testing.T, upstream string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, upstream: upstream, limiter: rate.NewLimiter(rate.Inf, 16<<10), downLimiter: rate.NewLimiter(rate.Inf, 64<<10), conns: map[net.Conn]bool{}}
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(l.close)
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

// setDownloadRate limits bytes towards the edge per second (0: unlimited).
func (l *link) setDownloadRate(bps int) {
	if bps <= 0 {
		l.downLimiter.SetLimit(rate.Inf)
		return
	}
	l.downLimiter.SetLimit(rate.Limit(bps))
}

// cutAfter takes the link down (setDown) once n more bytes went
// downstream, in the middle of a transfer; the returned channel is
// closed then.
func (l *link) cutAfter(n int64) <-chan struct{} {
	l.cut = make(chan struct{})
	l.cutAt.Store(l.Downstream.Load() + n)
	return l.cut
}

// noteDownstream counts bytes sent downstream and cuts the link when
// cutAfter asked for it.
func (l *link) noteDownstream(n int) {
	total := l.Downstream.Add(int64(n))
	if at := l.cutAt.Load(); at > 0 && total >= at && l.cutAt.CompareAndSwap(at, 0) {
		l.setDown(true)
		close(l.cut)
	}
}

// setUploadRate limits bytes towards the parent per second (0: unlimited).
func (l *link) setUploadRate(bps int) {
	if bps <= 0 {
		l.limiter.SetLimit(rate.Inf)
		return
	}
	l.limiter.SetLimit(rate.Limit(bps))
}

// setDown refuses new connections and closes the open ones.
func (l *link) setDown(v bool) {
	l.down.Store(v)
	if v {
		l.mu.Lock()
		for c := range l.conns {
			_ = c.Close()
		}
		l.mu.Unlock()
	}
}

func (l *link) close() {
	_ = l.ln.Close()
	l.setDown(true)
	l.wg.Wait()
}

func (l *link) track(c net.Conn, add bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		l.conns[c] = true
	} else {
		delete(l.conns, c)
	}
}

func (l *link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if l.down.Load() {
			_ = c.Close()
			continue
		}
		l.wg.Add(1)
		go l.serve(c)
	}
}

func (l *link) serve(client net.Conn) {
	defer l.wg.Done()
	up, err := net.DialTimeout("tcp", l.upstream, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	l.track(client, true)
	l.track(up, true)
	defer func() {
		_ = client.Close()
		_ = up.Close()
		l.track(client, false)
		l.track(up, false)
	}()
	done := make(chan struct{}, 2)
	go func() {
		buf := make([]byte, 16<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if werr := l.limiter.WaitN(context.Background(), n); werr != nil {
					break
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = up.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(linkWriter{client, l}, up)
		_ = client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// linkWriter counts the bytes written downstream through a link.
type linkWriter struct {
	w io.Writer
	l *link
}

func (c linkWriter) Write(b []byte) (int, error) {
	for rest := b; len(rest) > 0; {
		n := min(len(rest), c.l.downLimiter.Burst())
		if err := c.l.downLimiter.WaitN(context.Background(), n); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	n, err := c.w.Write(b)
	c.l.noteDownstream(n)
	return n, err
}
