package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/server"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStartupPurgesUploads: a server starting on a data directory left by
// a killed process removes the client upload sessions idle for a day and
// every partial sync download, keeps a recent client session, and logs
// what it removed before it answers requests.
func TestStartupPurgesUploads(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	uploads := filepath.Join(data, "uploads")
	if err := os.MkdirAll(uploads, 0o750); err != nil {
		t.Fatal(err)
	}
	const (
		stale    = "3f1d1c52-5d43-4c53-9b8e-0a4f1f6f2a10"
		recent   = "6a0b8a0e-2c57-4d63-8d3c-5b1c2f2d9e21"
		download = "9c2e6f1a-7b44-4e0d-a1f5-2d3b4c5e6f32"
	)
	write := func(name, content string, mtime time.Time) {
		p := filepath.Join(uploads, name)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	old, now := time.Now().Add(-25*time.Hour), time.Now()
	write(stale, "0123456789", old)
	write(stale+".repo", "apps/web", old)
	write(recent, "abc", now)
	write(recent+".repo", "apps/web", now)
	write(download, "12345", now)
	write(download+".repo", "apps/web", now)
	write(download+".sync", "", now)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data, cfg.Addr, cfg.TLS.Mode = data, ln.Addr().String(), config.TLSOff
	logs := &syncBuffer{}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(logs, nil)), "test", "admin-password-for-tests")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln); _ = srv.Close() }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.Addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	left, err := filepath.Glob(filepath.Join(uploads, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range left {
		names = append(names, filepath.Base(p))
	}
	if got, want := strings.Join(names, " "), recent+" "+recent+".repo"; got != want {
		t.Errorf("uploads after start-up: got %q, want %q", got, want)
	}
	if l := logs.String(); !strings.Contains(l, `msg="removed abandoned upload sessions" sessions=2 bytes=15`) {
		t.Errorf("no Info line with 2 sessions and 15 bytes in the log:\n%s", l)
	}
}
