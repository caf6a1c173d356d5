package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/cli"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// TestConnectionStringFileBOM: a connection-string file saved with a
// UTF-8 byte order mark (as Windows editors do) works, with a warning.
func TestConnectionStringFileBOM(t *testing.T) {
	cs := protocol.ConnectionString{ConnectedRegistryName: "site-one", SyncTokenName: "site-one-sync-token",
		SyncTokenPassword: "a-long-sync-password", ParentGatewayEndpoint: "root.example:443", ParentEndpointProtocol: "https"}
	f := filepath.Join(t.TempDir(), "cs.txt")
	if err := os.WriteFile(f, []byte("\ufeff"+cs.String()+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := cli.Run(context.Background(), []string{"config", "validate", "--data", t.TempDir(), "--connection-string-file", f}, &stdout, &stderr); err != nil {
		t.Fatalf("config validate: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "byte order mark") {
		t.Errorf("no warning about the byte order mark: %q", stderr.String())
	}
	if strings.Contains(stdout.String(), "\ufeff") {
		t.Errorf("the byte order mark is still in the configuration:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), "ConnectedRegistryName=site-one;") {
		t.Errorf("the connection string does not start with its first field:\n%s", stdout.String())
	}
}
