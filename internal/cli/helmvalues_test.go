package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outpost-registry/outpost/internal/cli"
)

// TestHelmValues runs the documented command on the tutorial's settings
// files: the values are nested, typed and written owner-only.
func TestHelmValues(t *testing.T) {
	dir := t.TempDir()
	settings := filepath.Join(dir, "settings.json")
	protected := filepath.Join(dir, "protected-settings-extension.json")
	out := filepath.Join(dir, "values.yaml")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(settings, `{"service.clusterIP": "192.100.100.1", "cert-manager.enabled": "false", "cert-manager.install": "false"}`)
	write(protected, `{"connectionString": "ConnectedRegistryName=f;SyncTokenName=f-sync-token;SyncTokenPassword=pw;ParentGatewayEndpoint=p;ParentEndpointProtocol=https",
  "tls.crt": "Y2VydA==", "tls.key": "a2V5", "tls.cacrt": "Y2E="}`)
	// An existing, world-readable file is replaced by an owner-only one.
	write(out, "old\n")
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), []string{"helm-values", "--settings", settings, "--protected-settings", protected, "--out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("helm-values: %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if stdout.Len() != 0 || strings.Contains(stderr.String(), "pw") {
		t.Errorf("with --out: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ConnectionString string `yaml:"connectionString"`
		Service          struct {
			ClusterIP string `yaml:"clusterIP"`
		} `yaml:"service"`
		CertManager struct {
			Enabled *bool `yaml:"enabled"`
			Install *bool `yaml:"install"`
		} `yaml:"cert-manager"`
		TLS map[string]string `yaml:"tls"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if v.Service.ClusterIP != "192.100.100.1" || !strings.Contains(v.ConnectionString, "SyncTokenPassword=pw") ||
		v.CertManager.Enabled == nil || *v.CertManager.Enabled || v.CertManager.Install == nil || *v.CertManager.Install ||
		v.TLS["crt"] != "Y2VydA==" || v.TLS["key"] != "a2V5" || v.TLS["cacrt"] != "Y2E=" {
		t.Errorf("values:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("temporary files left: %v", entries)
	}

	// Without --out the values go to standard output.
	stdout.Reset()
	if err := cli.Run(context.Background(), []string{"helm-values", "--settings", settings}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "clusterIP: 192.100.100.1") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
}

func TestHelmValuesRefusesUnknownKey(t *testing.T) {
	dir := t.TempDir()
	settings := filepath.Join(dir, "settings.json")
	if err := os.WriteFile(settings, []byte(`{"service.clusterIP": "192.100.100.1", "service.clusterIp": "192.100.100.2"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "values.yaml")
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), []string{"helm-values", "--settings", settings, "--out", out}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "service.clusterIp") || !strings.Contains(err.Error(), "not a value of the outpost chart") {
		t.Fatalf("got %v, want an error naming service.clusterIp", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("values written despite the error")
	}
	if err := cli.Run(context.Background(), []string{"helm-values"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "--settings") {
		t.Errorf("no files: got %v", err)
	}
}
