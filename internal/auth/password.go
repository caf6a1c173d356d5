package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// bcryptCost is the work factor of stored password hashes.
const bcryptCost = 10

// GeneratePassword returns 32 bytes from the system's cryptographic source,
// base64url-encoded (43 characters).
func GeneratePassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashPassword returns the bcrypt hash of a password.
func HashPassword(pw string) (string, error) {
	if len(pw) > 72 {
		return "", fmt.Errorf("%w: password longer than 72 bytes", ErrInvalid)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// dummyHashes are compared against, one per bcrypt cost, when a name is
// unknown or a token has fewer passwords than slots, so that a failed
// login costs the same whether or not the name exists. Each is made on
// first use: a bcrypt at program start would delay every command.
var dummyHashes sync.Map // cost -> hash

func dummyHash(cost int) string {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.(string)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("outpost-dummy-password"), cost)
	v, _ := dummyHashes.LoadOrStore(cost, string(h))
	return v.(string)
}

// hashCost is the bcrypt cost of hash, or the cost of new hashes when it
// is not a bcrypt hash.
func hashCost(hash string) int {
	if c, err := bcrypt.Cost([]byte(hash)); err == nil {
		return c
	}
	return bcryptCost
}

// verifier checks passwords against bcrypt hashes. A slow hash on every
// registry request (containerd and pull secrets send Basic credentials on
// each one) would cap throughput at a few dozen requests per second, so
// successful verifications are remembered for a short time, keyed by a
// SHA-256 of hash and password. A changed hash never matches a remembered
// entry, so rotation takes effect at once.
type verifier struct {
	mu    sync.Mutex
	ok    map[[32]byte]time.Time
	ttl   time.Duration
	limit int
	// flight shares one bcrypt among concurrent checks of the same hash
	// and password (a client's parallel first requests, or a request
	// arriving while the start-up check of the admin password runs).
	flight singleflight.Group
	// compared counts the bcrypt comparisons run, the dummy ones included;
	// tests read it to check that failed logins cost the same.
	compared atomic.Int64
}

func newVerifier() *verifier {
	return &verifier{ok: map[[32]byte]time.Time{}, ttl: 5 * time.Minute, limit: 10000}
}

func verifierKey(hash, pw string) [32]byte {
	h := sha256.New()
	h.Write([]byte(hash))
	h.Write([]byte{0})
	h.Write([]byte(pw))
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// cached reports whether pw was recently verified against hash.
func (v *verifier) cached(hash, pw string, now time.Time) bool {
	if hash == "" {
		return false
	}
	k := verifierKey(hash, pw)
	v.mu.Lock()
	exp, hit := v.ok[k]
	v.mu.Unlock()
	return hit && now.Before(exp)
}

// dummy compares pw against the dummy hash of a cost, for the time it
// takes; it always fails.
func (v *verifier) dummy(pw string, cost int) {
	v.compared.Add(1)
	_ = bcrypt.CompareHashAndPassword([]byte(dummyHash(cost)), []byte(pw))
}

// verify reports whether pw matches hash; an empty hash costs a dummy
// comparison and fails.
func (v *verifier) verify(hash, pw string, now time.Time) bool {
	if hash == "" {
		v.dummy(pw, bcryptCost)
		return false
	}
	k := verifierKey(hash, pw)
	v.mu.Lock()
	exp, hit := v.ok[k]
	v.mu.Unlock()
	if hit && now.Before(exp) {
		return true
	}
	ok, _, _ := v.flight.Do(string(k[:]), func() (any, error) {
		v.compared.Add(1)
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil, nil
	})
	if !ok.(bool) {
		return false
	}
	v.mu.Lock()
	if len(v.ok) >= v.limit {
		for key, e := range v.ok {
			if !now.Before(e) || len(v.ok) >= v.limit {
				delete(v.ok, key)
			}
		}
	}
	v.ok[k] = now.Add(v.ttl)
	v.mu.Unlock()
	return true
}

// startAdmin is the admin password this start was given (or generated),
// known in the clear: requests that send it are admitted by a constant-time
// comparison instead of a bcrypt, so the first authenticated request after
// a start does not wait for one. It holds only while the stored hash is one
// this start found or wrote.
type startAdmin struct {
	pw      string
	found   string // the stored hash at start
	written string // the hash RecheckAdmin stored, if it stored one
}

// PrimeAdmin records the admin password of this start (explicit, or the
// one BootstrapAdmin generated). Call it before serving, then RecheckAdmin
// in a goroutine.
func (s *Service) PrimeAdmin(pw string) {
	pw = strings.TrimRight(pw, "\r\n")
	if pw == "" {
		return
	}
	s.adminSettled = make(chan struct{})
	s.startAdmin.Store(&startAdmin{pw: pw, found: s.store.AdminHash()})
}

// knownAdmin reports whether pw is this start's admin password and the
// stored hash is still one this start found or wrote.
func (s *Service) knownAdmin(pw string) bool {
	k := s.startAdmin.Load()
	if k == nil {
		return false
	}
	if h := s.store.AdminHash(); h != k.found && (k.written == "" || h != k.written) {
		return false
	}
	return constantTimeEqual(pw, k.pw)
}

// settleAdmin waits (a bcrypt at most) until RecheckAdmin has stored the
// hash of this start's admin password: registry tokens carry a
// fingerprint of the stored hash, so none is issued before it is final.
func (s *Service) settleAdmin(ctx context.Context) {
	if s.adminSettled == nil {
		return
	}
	select {
	case <-s.adminSettled:
	case <-ctx.Done():
	}
}

// RecheckAdmin makes the admin password of this start (explicit or
// generated) the stored one, when it differs or none is stored. The bcrypt
// it costs goes through the verifier, so later requests with a password
// other than PrimeAdmin's find it remembered. Servers run it in a
// goroutine at start, after PrimeAdmin.
func (s *Service) RecheckAdmin(pw string) error {
	if s.adminSettled != nil {
		defer s.settleOnce.Do(func() { close(s.adminSettled) })
	}
	pw = strings.TrimRight(pw, "\r\n")
	if pw == "" {
		return nil
	}
	if cur := s.store.AdminHash(); cur != "" && s.verifier.verify(cur, pw, time.Now()) {
		return nil
	}
	cur := s.store.AdminHash()
	h, err := HashPassword(pw)
	if err != nil {
		return err
	}
	s.noteWritten(pw, h)
	err = s.store.Update(func(tx *Tx) error {
		// Another replica of a shared store may have stored a hash of the
		// same password meanwhile: keep it, so that the tokens it issued
		// (which carry its fingerprint) stay valid.
		if now := tx.st.adminHash; now != "" && now != cur && s.verifier.verify(now, pw, time.Now()) {
			h = now
			return nil
		}
		tx.SetAdminHash(h)
		return nil
	})
	if err != nil {
		return err
	}
	s.noteWritten(pw, h)
	return nil
}

// noteWritten records h as the stored hash of the start's password pw.
func (s *Service) noteWritten(pw, h string) {
	if k := s.startAdmin.Load(); k != nil && k.pw == pw {
		s.startAdmin.Store(&startAdmin{pw: pw, found: k.found, written: h})
	}
}

// constantTimeEqual compares two strings without leaking where they differ.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// AdminUser is the name of the built-in administrator.
const AdminUser = "admin"

// AdminPasswordFile is the file, in the data directory, where a generated
// admin password is written.
const AdminPasswordFile = "admin-password"

// BootstrapAdmin decides the admin password of this start. It comes from
// explicit (the OUTPOST_ADMIN_PASSWORD variable or --admin-password-file);
// without one, a password is generated on first start and written to
// <dataDir>/admin-password with mode 0600. It returns the file written
// ("" when none was) and the password of this start ("" when it is
// neither given nor new: a restart keeps the stored one). Hashing it is
// left to Service.RecheckAdmin, off the start's critical path.
func BootstrapAdmin(s *Store, dataDir, explicit string) (written, password string, err error) {
	explicit = strings.TrimRight(explicit, "\r\n")
	if explicit != "" {
		if err := checkPasswordStrength(explicit); err != nil {
			return "", "", err
		}
		return "", explicit, nil
	}
	if s.AdminHash() != "" {
		return "", "", nil
	}
	pw, err := GeneratePassword()
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dataDir, AdminPasswordFile)
	if err := atomicfile.Write(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write admin password: %w", err)
	}
	return path, pw, nil
}
