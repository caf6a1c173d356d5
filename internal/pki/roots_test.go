package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootsWithCA: the pool verifies a certificate of the given CA, and a
// missing file or one without a PEM certificate is an error naming it.
func TestRootsWithCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mustFiles(t, ca, dir))
	roots, err := RootsWithCA(caFile)
	if err != nil {
		t.Fatalf("RootsWithCA(%s): %v", caFile, err)
	}
	if _, err := get(t, addr, roots); err != nil {
		t.Errorf("request verified by the pool: %v", err)
	}
	junk := filepath.Join(dir, "junk.crt")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{junk, filepath.Join(dir, "absent.crt")} {
		if _, err := RootsWithCA(f); err == nil || !strings.Contains(err.Error(), "CA file") {
			t.Errorf("RootsWithCA(%s): got %v, want a CA file error", f, err)
		}
	}
}

// mustFiles serves a certificate for 127.0.0.1 issued by ca.
func mustFiles(t *testing.T, ca *CA, dir string) *Source {
	t.Helper()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue(t, ca, certPath, keyPath)
	s, err := NewFiles(FilesOptions{CertFile: certPath, KeyFile: keyPath})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
