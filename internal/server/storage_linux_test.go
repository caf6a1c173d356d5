package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

const testAdminPassword = "admin-password-for-tests"

// serve starts a plain-HTTP server on cfg.Data and returns its base URL
// and log.
func serve(t *testing.T, cfg config.Config) (string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.TLS.Mode = ln.Addr().String(), config.TLSOff
	logs := &syncBuffer{}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(logs, nil)), "test", testAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln); _ = srv.Close() }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + cfg.Addr
	ocitest.Eventually(t, 10*time.Second, "the server answering", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return true
	})
	return base, logs
}

// metric reads one sample of /metrics by its name and labels as written
// there, or -2 when it is absent.
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -2
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestScheduledScrub starts a server whose scrub is due on a data
// directory holding a damaged blob: the scrub quarantines it, logs an
// Error naming its digest and path, counts it, and records when it ran
// and when the next is due.
func TestScheduledScrub(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	st, err := fs.New(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good, bad := ocitest.Random(1, 5000), ocitest.Random(2, 5000)
	for _, b := range [][]byte{good, bad} {
		id, _ := st.StartUpload(ctx, "r")
		if _, err := st.AppendUpload(ctx, "r", id, 0, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CommitUpload(ctx, "r", id, digest.FromBytes(b)); err != nil {
			t.Fatal(err)
		}
	}
	d := digest.FromBytes(bad)
	path := filepath.Join(data, "blobs", "sha256", d.Encoded()[:2], d.Encoded())
	if err := os.WriteFile(path, bad[:4999], 0o640); err != nil {
		t.Fatal(err)
	}
	past, _ := json.Marshal(server.ScrubState{Next: time.Now().Add(-time.Minute)})
	if err := os.WriteFile(filepath.Join(data, "scrub.json"), past, 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = data
	interval := config.Duration(time.Hour)
	cfg.Storage.ScrubInterval = &interval
	base, logs := serve(t, cfg)

	ocitest.Eventually(t, 20*time.Second, "the scrub to finish", func() bool {
		return metric(t, base, "outpost_storage_scrub_last_timestamp_seconds") > 0
	})
	if got := metric(t, base, `outpost_storage_blobs_corrupt_total{trigger="scrub"}`); got != 1 {
		t.Errorf("corrupt blobs found by the scrub: %v, want 1", got)
	}
	if got := metric(t, base, `outpost_storage_blobs_verified_total{trigger="scrub"}`); got != 2 {
		t.Errorf("blobs verified by the scrub: %v, want 2", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the damaged blob is still in the store: %v", err)
	}
	l := logs.String()
	if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "digest="+string(d)) || !strings.Contains(l, "path="+path) {
		t.Errorf("no Error naming the digest and path in the log:\n%s", l)
	}
	var rec server.ScrubState
	b, _ := os.ReadFile(filepath.Join(data, "scrub.json"))
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Blobs != 2 || rec.Corrupt != 1 || time.Until(rec.Next) < 59*time.Minute {
		t.Errorf("scrub record %+v: want 2 blobs, 1 corrupt, next in an hour", rec)
	}
}

// TestReadyzOnFullVolume runs the server on a real 16 MiB tmpfs (root
// only): a push beyond it answers 507, /readyz stays 200 but says writes
// are degraded, pulls work, the free-space gauge is the volume's, and
// freeing space brings writes back to ok.
func TestReadyzOnFullVolume(t *testing.T) {
	t.Parallel()
	data := storagetest.SmallVolume(t, "16m")
	filler := filepath.Join(data, "filler")
	if err := os.WriteFile(filler, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = data
	cfg.Storage.MinFreeBytes = 1 << 20
	base, _ := serve(t, cfg)
	c := ocitest.New(t, base, "admin", testAdminPassword, "")

	readyz := func() (int, string, map[string]any) {
		t.Helper()
		resp, text, err := c.Do(http.MethodGet, "/readyz", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, js, err := c.Do(http.MethodGet, "/readyz", http.Header{"Accept": {"application/json"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatalf("/readyz JSON %q: %v", js, err)
		}
		return resp.StatusCode, string(text), m
	}
	if code, text, _ := readyz(); code != http.StatusOK || text != "ok\n" {
		t.Fatalf("/readyz before: %d %q, want 200 ok", code, text)
	}
	small := c.PushBlob(t, "team/app", "application/octet-stream", ocitest.Random(3, 4096))

	big := ocitest.Random(4, 20<<20)
	resp, body, err := c.Do(http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+string(digest.FromBytes(big)), nil, big)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "data volume is full") {
		t.Fatalf("push beyond the volume: %d %s, want 507 saying the data volume is full", resp.StatusCode, body)
	}

	code, text, js := readyz()
	if code != http.StatusOK || !strings.HasPrefix(text, "degraded: pulls ok; writes degraded: ") {
		t.Errorf("/readyz when full: %d %q, want 200 and degraded writes", code, text)
	}
	if js["status"] != "degraded" || js["writes"] != "degraded" || js["pulls"] != "ok" {
		t.Errorf("/readyz JSON when full: %v", js)
	}
	if got := metric(t, base, "outpost_storage_writes_degraded"); got != 1 {
		t.Errorf("outpost_storage_writes_degraded: %v, want 1", got)
	}
	if got := metric(t, base, "outpost_storage_no_space_errors_total"); got < 1 {
		t.Errorf("outpost_storage_no_space_errors_total: %v, want at least 1", got)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(data, &sfs); err != nil {
		t.Fatal(err)
	}
	want := float64(sfs.Bavail * uint64(sfs.Bsize)) //nolint:gosec // a block size is positive
	if got := metric(t, base, "outpost_storage_free_bytes"); got < want-(64<<10) || got > want+(64<<10) {
		t.Errorf("outpost_storage_free_bytes: %v, want %v as statfs says", got, want)
	}
	if got := metric(t, base, "outpost_storage_size_bytes"); got != 16<<20 {
		t.Errorf("outpost_storage_size_bytes: %v, want %d", got, 16<<20)
	}
	resp, body, err = c.Do(http.MethodGet, "/v2/team/app/blobs/"+string(small.Digest), nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(body) != small.Digest {
		t.Errorf("pull while writes are degraded: %v %v", err, resp.Status)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, text, _ := readyz(); code != http.StatusOK || text != "ok\n" {
		t.Errorf("/readyz after 3 MiB were freed: %d %q, want 200 ok", code, text)
	}
}
