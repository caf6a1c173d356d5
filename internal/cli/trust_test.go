package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/cli"
)

func trustCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Trust CLI CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTrustDaemonSetInvocation runs the exact command line of the Helm
// chart's DaemonSet; cancelling its context (as SIGTERM does) removes the
// files and returns nil.
func TestTrustDaemonSetInvocation(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := trustCA(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- cli.Run(ctx, []string{"trust", "install", "--root", root, "--host", "10.96.0.50:443", "--ca-file", ca,
			"--containerd-certs-dir", "/etc/containerd/certs.d", "--watch", "--uninstall-on-exit"}, &stdout, &stderr)
	}()
	hostDir := filepath.Join(root, "etc/containerd/certs.d/10.96.0.50:443")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(hostDir, "hosts.toml")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hosts.toml:\n%s", stderr.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("install --watch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d")); err == nil {
		t.Errorf("--uninstall-on-exit left files; output:\n%s", stdout.String())
	}
}

func TestTrustFlags(t *testing.T) {
	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"trust", "install", "--host", "r:5000", "--ca-file", "x", "--uninstall-on-exit"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--uninstall-on-exit needs --watch") {
		t.Errorf("got %v, want the --watch error", err)
	}
	root := t.TempDir()
	err = cli.Run(context.Background(), []string{"trust", "doctor", "--root", root, "--host", "127.0.0.1:1"}, &out, &out)
	if err == nil || !strings.Contains(out.String(), "FAIL  containerd config_path") {
		t.Errorf("doctor on an empty node: %v\n%s", err, out.String())
	}
}
