package pki

import (
	"crypto/x509"
	"fmt"
	"os"
)

// RootsWithCA returns the system's root CAs (none where the system has no
// pool) plus the PEM certificates of caFile, for a client of a server
// whose certificate a private CA issued (Outpost's built-in one).
func RootsWithCA(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", caFile)
	}
	return pool, nil
}
