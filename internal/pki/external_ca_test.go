package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeRSACA writes a self-signed RSA CA with a PKCS #1 key, the shape a
// Helm chart's genCA produces, and returns its directory.
func writeRSACA(t *testing.T, isCA bool) (string, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "site-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600))
	return dir, key
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// An RSA CA made elsewhere, in a read-only directory, issues the server
// certificate, and clients that trust it verify the server.
func TestAutoWithExternalRSACA(t *testing.T) {
	dir, _ := writeRSACA(t, true)
	must(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	s, err := NewAuto(AutoOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Lifetime: time.Hour})
	if err != nil {
		t.Fatalf("NewAuto with an external CA: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	must(t, err)
	if string(s.CAPEM()) != string(caPEM) {
		t.Fatal("the published CA is not the external CA")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	if _, err := get(t, serve(t, s), roots); err != nil {
		t.Fatalf("request verified by the external CA: %v", err)
	}
}

func TestExternalCARefusals(t *testing.T) {
	dir, _ := writeRSACA(t, false)
	if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "not a CA certificate") {
		t.Fatalf("leaf certificate as CA: got %v", err)
	}
	dir, _ = writeRSACA(t, true)
	_, other := writeRSACA(t, true)
	must(t, os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}), 0o600))
	if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: got %v", err)
	}
}
