package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serve runs an HTTPS server with the source on 127.0.0.1.
func serve(t *testing.T, s *Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(ln, s.TLSConfig())) }()
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	t.Cleanup(func() { cancel(); _ = srv.Close() })
	return ln.Addr().String()
}

// get makes one request on a new connection and returns the serial of the
// certificate the server presented.
func get(t *testing.T, addr string, roots *x509.CertPool) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

func pool(t *testing.T, pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in PEM")
	}
	return p
}

// TestAutoRenewal: a short-lived certificate is renewed at two thirds of
// its life while a client keeps connecting, with no failed request.
func TestAutoRenewal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := NewAuto(AutoOptions{Dir: dir, Hosts: []string{"localhost", "127.0.0.1"}, Lifetime: 9 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	ca := s.Leaf()
	if ca == nil || len(ca.IPAddresses) != 1 || ca.DNSNames[0] != "localhost" {
		t.Fatalf("server certificate names: %+v", ca)
	}
	addr := serve(t, s)
	roots := pool(t, s.CAPEM())
	serials := map[string]bool{}
	started := time.Now()
	deadline := started.Add(12 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline) && len(serials) < 2; i++ {
		serial, err := get(t, addr, roots)
		if err != nil {
			t.Fatalf("request %d during renewal: %v", i, err)
		}
		serials[serial] = true
		time.Sleep(100 * time.Millisecond)
	}
	if len(serials) < 2 {
		t.Fatalf("the certificate was not renewed within its life: serials %v", serials)
	}
	if el := time.Since(started); el < 4*time.Second {
		t.Errorf("renewed after %s, before two thirds of a 9 s life", el)
	}
	// The CA survives a restart: a new source loads the same CA.
	again, err := NewAuto(AutoOptions{Dir: dir, Hosts: []string{"127.0.0.1"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || string(again.CAPEM()) != string(s.CAPEM()) {
		t.Fatalf("CA after restart: %v", err)
	}
}

// issue writes a certificate and key for 127.0.0.1 signed by ca.
func issue(t *testing.T, ca *CA, certPath, keyPath string) {
	t.Helper()
	c, k, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, k, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFilesReload: replaced certificate files are picked up; a key that
// does not match is refused and the previous pair keeps serving.
func TestFilesReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue(t, ca, certPath, keyPath)
	s, err := NewFiles(FilesOptions{CertFile: certPath, KeyFile: keyPath, Poll: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	roots := pool(t, ca.CertPEM)
	first, err := get(t, addr, roots)
	if err != nil {
		t.Fatal(err)
	}
	issue(t, ca, certPath, keyPath)
	var second string
	for i := 0; i < 100; i++ {
		if second, err = get(t, addr, roots); err == nil && second != first {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A failed request leaves second empty: that is no new certificate.
	if err != nil || second == first {
		t.Fatalf("the replaced certificate was not picked up: serial %q (first %s), last request: %v", second, first, err)
	}
	// A key from another pair: refused, the current pair keeps serving.
	otherKey := filepath.Join(dir, "other.key")
	issue(t, ca, filepath.Join(dir, "other.crt"), otherKey)
	b, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, err := get(t, addr, roots); err != nil || got != second {
		t.Fatalf("after a mismatched key: serial %s, %v; want the previous %s", got, err, second)
	}
	// Starting with a mismatched pair is an error that says so.
	if _, err := NewFiles(FilesOptions{CertFile: certPath, KeyFile: keyPath}); err == nil {
		t.Fatal("a mismatched certificate and key were accepted at start")
	}
}
