package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// issuer is the iss claim of Outpost's registry tokens.
const issuer = "outpost"

// ResourceActions is one entry of the access claim of the Docker registry
// token specification: a resource and the actions granted on it.
type ResourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are the registry token's claims.
type claims struct {
	jwt.RegisteredClaims
	Access []ResourceActions `json:"access"`
	// Password is the credential the token was issued for (password1,
	// password2 or admin) and PasswordHash a fingerprint of its hash, so
	// that rotating or expiring it revokes the token.
	Password     string `json:"pwd"`
	PasswordHash string `json:"pwh"`
}

// fingerprint identifies a password hash without revealing it.
func fingerprint(hash string) string {
	s := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(s[:8])
}

// loadOrCreateKey reads the token signing key, creating an ECDSA P-256
// key (mode 0600) on first start.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("token signing key %s: no PEM block", path)
		}
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token signing key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read token signing key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode token signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write token signing key: %w", err)
	}
	return k, nil
}

// sharedKey returns the token signing key kept in a shared store,
// creating it when the store has none: the first replica's key wins, as
// the creation runs under the store's lock across replicas.
func sharedKey(store *Store) (*ecdsa.PrivateKey, error) {
	var pemKey string
	err := store.Update(func(tx *Tx) error {
		if pemKey = tx.st.signingKey; pemKey != "" {
			return nil
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("generate token signing key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return fmt.Errorf("encode token signing key: %w", err)
		}
		pemKey = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		tx.st.signingKey = pemKey
		tx.dirty[[2]string{bucketSettings, keySigningKey}] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(pemKey))
	if block == nil {
		return nil, errors.New("token signing key in the shared store: no PEM block")
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token signing key in the shared store: %w", err)
	}
	return k, nil
}

// sign issues a registry token.
func (s *Service) sign(subject, service, password, hash string, access []ResourceActions, now time.Time) (string, error) {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("token id: %w", err)
	}
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{service},
			ExpiresAt: jwt.NewNumericDate(now.Add(s.tokenTTL)),
			NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(id[:]),
		},
		Access:       access,
		Password:     password,
		PasswordHash: fingerprint(hash),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = s.keyID
	out, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return out, nil
}

// parse verifies a registry token's signature, algorithm, issuer,
// audience and lifetime.
func (s *Service) parse(raw, service string, now time.Time) (*claims, error) {
	c := &claims{}
	_, err := jwt.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		return &s.key.PublicKey, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(service),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: registry token: %w", ErrUnauthorized, err)
	}
	return c, nil
}

// grants reports whether the token's access claim holds action on the
// repository.
func (c *claims) grants(typ, name, action string) bool {
	for _, ra := range c.Access {
		if ra.Type == typ && ra.Name == name && (slices.Contains(ra.Actions, action) || slices.Contains(ra.Actions, "*")) {
			return true
		}
	}
	return false
}

// keyID derives a key ID from the public key, as the Docker token spec's
// libtrust-style kid is opaque to clients.
func keyID(k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:10])
}
