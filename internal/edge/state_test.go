package edge_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/server"
)

// TestCorruptSavedConfig: a connected registry whose saved configuration
// (edge/config.json) cannot be decoded refuses to start, naming the file,
// rather than starting without its client tokens and repositories.
func TestCorruptSavedConfig(t *testing.T) {
	t.Parallel()
	root := start(t, t.TempDir(), nil)
	cs := root.connectedRegistry(t, protocol.CreateRequest{Name: "edge-corrupt", Repositories: []string{"apps/web"}}, "")
	data := t.TempDir()
	edge := startEdge(t, root, data, cs)
	cfg := edge.cfg
	edge.stop()
	path := filepath.Join(data, "edge", "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the activated edge saved no configuration: %v", err)
	}
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", adminPW)
	if err == nil {
		_ = srv.Close()
		t.Fatal("server.New with a truncated edge/config.json: got no error, want one naming the file")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("server.New with a truncated edge/config.json: got %q, want an error naming %s", err, path)
	}
}
