package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// Source hands the current server certificate to the TLS listener and
// replaces it, without a restart, when it is renewed (auto mode) or its
// files change (files mode). New connections get the new certificate.
type Source struct {
	cur atomic.Pointer[tls.Certificate]
	ca  atomic.Pointer[[]byte]
	log *slog.Logger
	run func(ctx context.Context)
}

// GetCertificate implements tls.Config.GetCertificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cur.Load()
	if c == nil {
		return nil, errors.New("no server certificate")
	}
	return c, nil
}

// Leaf returns the certificate being served.
func (s *Source) Leaf() *x509.Certificate {
	if c := s.cur.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// CAPEM returns the CA certificate clients should trust, if known.
func (s *Source) CAPEM() []byte {
	if p := s.ca.Load(); p != nil {
		return *p
	}
	return nil
}

// TLSConfig returns a server TLS configuration using the source.
func (s *Source) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}

// Run keeps the certificate fresh until ctx ends.
func (s *Source) Run(ctx context.Context) {
	if s.run != nil {
		s.run(ctx)
	}
}

func (s *Source) install(certPEM, keyPEM []byte) error {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("certificate and key do not form a pair: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
	}
	s.cur.Store(&c)
	return nil
}

// AutoOptions configure the built-in CA mode.
type AutoOptions struct {
	// Dir keeps the CA (<data>/pki).
	Dir   string
	Hosts []string
	// Lifetime of server certificates (default 90 days); they are renewed
	// at two thirds of it.
	Lifetime time.Duration
	Logger   *slog.Logger
}

// NewAuto creates (or loads) the CA and issues the server certificate.
func NewAuto(o AutoOptions) (*Source, error) {
	if o.Lifetime <= 0 {
		o.Lifetime = 90 * 24 * time.Hour
	}
	ca, err := LoadOrCreateCA(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Source{log: o.Logger}
	s.ca.Store(&ca.CertPEM)
	issue := func() error {
		certPEM, keyPEM, err := ca.Issue(o.Hosts, o.Lifetime)
		if err != nil {
			return err
		}
		if err := s.install(certPEM, keyPEM); err != nil {
			return err
		}
		_ = atomicfile.Write(filepath.Join(o.Dir, "server.crt"), certPEM, 0o644)
		return nil
	}
	if err := issue(); err != nil {
		return nil, err
	}
	s.run = func(ctx context.Context) {
		for {
			// NotBefore is back-dated for clock skew, so count the life from
			// the requested lifetime: renew when a third of it is left.
			renewAt := s.Leaf().NotAfter.Add(-o.Lifetime / 3)
			wait := time.Until(renewAt)
			t := time.NewTimer(max(wait, time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if err := issue(); err != nil {
				s.log.Error("renew server certificate", "err", err)
				continue
			}
			s.log.Info("server certificate renewed", "not_after", s.Leaf().NotAfter)
		}
	}
	return s, nil
}

// FilesOptions configure bring-your-own-certificate mode.
type FilesOptions struct {
	CertFile, KeyFile, CAFile string
	// Poll is how often the files are checked (default 5 s).
	Poll   time.Duration
	Logger *slog.Logger
}

// NewFiles loads a certificate and key from files and reloads them when
// they change (as a Kubernetes TLS secret or cert-manager rotation does).
// A key that does not match its certificate is refused and the previous
// pair keeps serving.
func NewFiles(o FilesOptions) (*Source, error) {
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	s := &Source{log: o.Logger}
	load := func() ([]byte, []byte, error) {
		c, err := os.ReadFile(o.CertFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read TLS certificate: %w", err)
		}
		k, err := os.ReadFile(o.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read TLS key: %w", err)
		}
		return c, k, nil
	}
	c, k, err := load()
	if err != nil {
		return nil, err
	}
	if err := s.install(c, k); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", o.CertFile, o.KeyFile, err)
	}
	if o.CAFile != "" {
		ca, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA: %w", err)
		}
		s.ca.Store(&ca)
	}
	lastC, lastK := c, k
	s.run = func(ctx context.Context) {
		t := time.NewTicker(o.Poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			c, k, err := load()
			if err != nil || (bytes.Equal(c, lastC) && bytes.Equal(k, lastK)) {
				continue
			}
			if err := s.install(c, k); err != nil {
				s.log.Error("new TLS files refused; the previous certificate keeps serving", "cert", o.CertFile, "key", o.KeyFile, "err", err)
				lastC, lastK = c, k
				continue
			}
			lastC, lastK = c, k
			s.log.Info("TLS certificate reloaded", "cert", o.CertFile, "not_after", s.Leaf().NotAfter)
			if o.CAFile != "" {
				if ca, err := os.ReadFile(o.CAFile); err == nil {
					s.ca.Store(&ca)
				}
			}
		}
	}
	return s, nil
}
