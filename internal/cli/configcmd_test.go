package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/cli"
)

const (
	cfgSecret = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"
	cfgConn   = "ConnectedRegistryName=edge-01;SyncTokenName=edge-01-sync;SyncTokenPassword=" + cfgSecret + ";ParentGatewayEndpoint=registry.example.com:5000;ParentEndpointProtocol=https"
)

// cfgRun runs the command line with its own deadline, returning what it
// printed on stdout and stderr.
func cfgRun(t *testing.T, timeout time.Duration, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("OUTPOST_CONNECTION_STRING", "")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := cli.Run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func cfgWrite(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigValidateRedacts: the effective configuration printed by
// config validate never shows the sync token password of the connection
// string (from a flag, a file or the environment) nor a password in the
// parent URL.
func TestConfigValidateRedacts(t *testing.T) {
	pwFile := cfgWrite(t, "parent-password", "parent-"+cfgSecret+"\n")
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"connection string flag", "", []string{"--connection-string", cfgConn}},
		{"connection string file", "", []string{"--connection-string-file", cfgWrite(t, "cs", cfgConn+"\n")}},
		{"connection string variable", cfgConn, nil},
		{"config file", "", []string{"--config", cfgWrite(t, "outpost.yaml", "version: 1\nconnectionString: \""+cfgConn+"\"\n")}},
		{"parent URL with a password", "", []string{"--parent", "https://mirror:" + cfgSecret + "@registry.example.com", "--repository", "library/alpine",
			"--parent-username", "mirror", "--parent-password-file", pwFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OUTPOST_CONNECTION_STRING", tc.env)
			var stdout, stderr bytes.Buffer
			err := cli.Run(context.Background(), append([]string{"config", "validate"}, tc.args...), &stdout, &stderr)
			if err != nil {
				t.Fatalf("config validate: %v", err)
			}
			out := stdout.String() + stderr.String()
			if strings.Contains(out, cfgSecret[:12]) {
				t.Errorf("the output shows the password:\n%s", out)
			}
			if !strings.Contains(out, "<redacted>") {
				t.Errorf("the output does not say <redacted>:\n%s", out)
			}
			if !strings.Contains(out, "registry.example.com") {
				t.Errorf("the output lost the parent:\n%s", out)
			}
		})
	}
}

// cfgBad are configurations that serve refuses, each with the keys the
// error must name.
type cfgCase struct {
	name string
	args []string
	keys []string
}

// problems are the entries of keys that are configuration keys: the
// error has one line for each (the others are words of a message).
func (c cfgCase) problems() []string {
	var out []string
	for _, k := range c.keys {
		if k == "connectionString" || strings.HasPrefix(k, "parent.") || k == "parent:" {
			out = append(out, k)
		}
	}
	return out
}

var cfgBad = []cfgCase{
	{"connection string missing keys", []string{"--connection-string", "ConnectedRegistryName=edge-01;SyncTokenPassword=" + cfgSecret}, []string{"connectionString", "missing SyncTokenName"}},
	{"connection string damaged around the password", []string{"--connection-string", strings.Replace(cfgConn, "SyncTokenPassword=", "", 1)}, []string{"connectionString"}},
	{"connection string with a bad protocol", []string{"--connection-string", strings.Replace(cfgConn, "=https", "=ftp", 1)}, []string{"connectionString", "ParentEndpointProtocol"}},
	{"sync window not ISO 8601", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--sync-window", "3h"}, []string{"parent.syncWindow"}},
	{"sync window too short", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--sync-window", "PT30M"}, []string{"parent.syncWindow"}},
	{"sync schedule", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--sync-schedule", "every hour"}, []string{"parent.syncSchedule"}},
	{"mode", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--mode", "ReadMostly"}, []string{"parent.mode"}},
	{"parent URL", []string{"--parent", "ftp://mirror:" + cfgSecret + "@registry.example.com", "--repository", "a/b"}, []string{"parent:", "parent URL"}},
	{"parent password file", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--parent-password-file", "/nonexistent/parent-password"}, []string{"parent.passwordFile"}},
	{"every problem at once", []string{"--parent", "https://registry.example.com", "--repository", "a/b", "--sync-window", "3h", "--sync-schedule", "x", "--mode", "x"},
		[]string{"parent.syncWindow", "parent.syncSchedule", "parent.mode"}},
}

// TestConfigValidateRefuses: config validate fails, printing nothing but
// the error, on the configurations serve refuses, and the error names
// each bad key without showing the password.
func TestConfigValidateRefuses(t *testing.T) {
	for _, tc := range cfgBad {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := cfgRun(t, 20*time.Second, append([]string{"config", "validate"}, tc.args...)...)
			if err == nil {
				t.Fatalf("config validate: got success, want an error naming %q; printed:\n%s", tc.keys, stdout)
			}
			for _, k := range tc.keys {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("got %q, want it to name %q", err, k)
				}
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 1+len(tc.problems()) {
				t.Errorf("got %d problems (%q), want %d", len(lines)-1, err, len(tc.problems()))
			}
			if strings.Contains(err.Error()+stdout, cfgSecret[:8]) {
				t.Errorf("the error or output shows the password: %v\n%s", err, stdout)
			}
			if stdout != "" {
				t.Errorf("printed a configuration for an invalid one:\n%s", stdout)
			}
		})
	}
}

// TestServeRefusesWhatValidateRefuses: serve refuses the same
// configurations, with the same error, before it listens; in particular a
// sync window it cannot read is not ignored (which made runs unbounded).
func TestServeRefusesWhatValidateRefuses(t *testing.T) {
	t.Setenv("OUTPOST_ADMIN_PASSWORD", "admin-password-for-cli-tests")
	for _, tc := range cfgBad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, verr := cfgRun(t, 20*time.Second, append([]string{"config", "validate"}, tc.args...)...)
			args := append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--tls-mode", "off"}, tc.args...)
			start := time.Now()
			_, _, err := cfgRun(t, 10*time.Second, args...)
			if err == nil || time.Since(start) > 5*time.Second {
				t.Fatalf("serve: got %v after %s, want it refused at once", err, time.Since(start))
			}
			if verr == nil || err.Error() != verr.Error() {
				t.Errorf("serve and config validate disagree:\nserve:    %v\nvalidate: %v", err, verr)
			}
		})
	}
}

// TestConfigValidateConnects: with remote storage configured, config
// validate connects to it and fails, naming each engine, when neither
// answers (nothing listens on the addresses); --offline skips that. The
// DSN's password is not shown.
func TestConfigValidateConnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	host, port, _ := net.SplitHostPort(dead)
	cfg := cfgWrite(t, "remote.yaml", fmt.Sprintf(`version: 1
data: %s
storage:
  blobs: {type: s3, endpoint: "http://%s", bucket: b, pathStyle: true}
  metadata: {type: postgres, dsn: "host=%s port=%s user=u password=pg-secret-word dbname=d connect_timeout=2"}
`, dir, dead, host, port))
	_, _, err = cfgRun(t, 30*time.Second, "config", "validate", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "storage.blobs") || !strings.Contains(err.Error(), "storage.metadata") {
		t.Fatalf("config validate with nothing listening: %v; want an error naming storage.blobs and storage.metadata", err)
	}
	stdout, _, err := cfgRun(t, 30*time.Second, "config", "validate", "--offline", "--config", cfg)
	if err != nil {
		t.Fatalf("config validate --offline: %v", err)
	}
	if strings.Contains(stdout, "pg-secret-word") || !strings.Contains(stdout, "type: postgres") {
		t.Errorf("config validate --offline printed:\n%s\nwant the postgres engine with its password redacted", stdout)
	}
}
