package auth

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Service.
type Options struct {
	// DataDir holds the token signing key (auth/token-key.pem).
	DataDir string
	// AnonymousPull lets unauthenticated clients pull and list.
	AnonymousPull bool
	// TokenTTL is the lifetime of registry tokens; default 5 minutes.
	TokenTTL time.Duration
	Logger   *slog.Logger
}

// Service authenticates requests and issues registry tokens.
type Service struct {
	store         *Store
	verifier      *verifier
	limiter       *limiter
	key           *ecdsa.PrivateKey
	keyID         string
	anonymousPull bool
	tokenTTL      time.Duration
	log           *slog.Logger
	now           func() time.Time

	// parsed remembers registry tokens whose signature was verified, by a
	// SHA-256 of the token and the service, until they expire: verifying an
	// ECDSA signature on every request would dominate small requests.
	parsedMu sync.Mutex
	parsed   map[[32]byte]*claims

	// startAdmin and adminSettled: the admin password of this start
	// (PrimeAdmin, RecheckAdmin).
	startAdmin   atomic.Pointer[startAdmin]
	adminSettled chan struct{}
	settleOnce   sync.Once
}

// NewService loads (or creates) the signing key and returns a Service.
func NewService(store *Store, o Options) (*Service, error) {
	var key *ecdsa.PrivateKey
	var err error
	path := filepath.Join(o.DataDir, "auth", "token-key.pem")
	if _, serr := os.Stat(path); store.log != nil && errors.Is(serr, os.ErrNotExist) {
		// Replicas share the signing key through the shared store, unless
		// a key file is given (mounted from a Secret).
		key, err = sharedKey(store)
	} else {
		key, err = loadOrCreateKey(path)
	}
	if err != nil {
		return nil, err
	}
	s := &Service{
		store: store, verifier: newVerifier(), limiter: newLimiter(), key: key, keyID: keyID(key),
		anonymousPull: o.AnonymousPull, tokenTTL: o.TokenTTL, log: o.Logger, now: time.Now,
		parsed: map[[32]byte]*claims{},
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = 5 * time.Minute
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Store returns the identity store.
func (s *Service) Store() *Store { return s.store }

// Principal is an authenticated caller.
type Principal struct {
	// Name is the token name, or "admin".
	Name  string
	Admin bool
	// anon marks a registry token issued to an anonymous caller.
	anon bool
	// claims is set when the caller presented a registry token.
	claims *claims
}

// Anonymous reports a caller without credentials.
func (p *Principal) Anonymous() bool { return p == nil || p.anon }

// Need is one permission a request requires.
type Need struct {
	Repository string
	// Action is the scope-map action required.
	Action Action
	// Scope is the Docker token action a registry token must carry:
	// pull, push or delete; empty when the caller's permissions suffice.
	Scope string
}

// Denial is a refused request: the status (401, 403 or 429), a message,
// and the challenge or Retry-After headers to send.
type Denial struct {
	Status     int
	Message    string
	Challenge  string
	RetryAfter time.Duration
}

func (d *Denial) Error() string { return d.Message }

// Header returns the response headers of the denial.
func (d *Denial) Header() http.Header {
	h := http.Header{}
	if d.Challenge != "" {
		h.Set("WWW-Authenticate", d.Challenge)
	}
	if d.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((d.RetryAfter+time.Second-1)/time.Second)))
	}
	return h
}

// clientAddr is the key for per-client failure counting.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "ip:" + r.RemoteAddr
	}
	return "ip:" + host
}

// serviceName is the service the registry announces: its host.
func serviceName(r *http.Request) string { return r.Host }

// Challenge builds the Bearer challenge for a request needing scopes.
func Challenge(r *http.Request, needs []Need, errCode string) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `Bearer realm="%s://%s/oauth2/token",service="%s"`, scheme, r.Host, serviceName(r))
	scopes := map[string][]string{}
	var order []string
	for _, n := range needs {
		if n.Repository == "" || n.Scope == "" {
			continue
		}
		if _, ok := scopes[n.Repository]; !ok {
			order = append(order, n.Repository)
		}
		if !contains(scopes[n.Repository], n.Scope) {
			scopes[n.Repository] = append(scopes[n.Repository], n.Scope)
		}
	}
	if len(order) > 0 {
		parts := make([]string, 0, len(order))
		for _, repo := range order {
			parts = append(parts, "repository:"+repo+":"+strings.Join(scopes[repo], ","))
		}
		fmt.Fprintf(&b, `,scope="%s"`, strings.Join(parts, " "))
	}
	if errCode != "" {
		fmt.Fprintf(&b, `,error="%s"`, errCode)
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Authenticate identifies the caller from Basic credentials or a registry
// token. It returns nil and no error for a request without credentials.
func (s *Service) Authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		user, pw, ok := r.BasicAuth()
		if !ok {
			return nil, &Denial{Status: http.StatusUnauthorized, Message: "malformed Basic credentials"}
		}
		return s.login(r, user, pw)
	case "bearer":
		return s.bearer(r, strings.TrimSpace(rest))
	}
	return nil, &Denial{Status: http.StatusUnauthorized, Message: "unsupported authorization scheme " + strconv.Quote(scheme)}
}

// AuthenticateBasic identifies the caller of the management API, which
// takes only Basic credentials (docs/api.md). A registry token is refused
// whatever its subject or scopes: it was issued for the registry API, for
// a set of repository actions, and must not stand in for the password that
// obtained it. It returns nil and no error for a request without
// credentials.
func (s *Service) AuthenticateBasic(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil
	}
	scheme, _, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "basic") {
		return nil, &Denial{Status: http.StatusUnauthorized, Message: "the management API takes Basic credentials only, not " + strconv.Quote(scheme), Challenge: BasicChallenge}
	}
	p, err := s.Authenticate(r)
	var d *Denial
	if errors.As(err, &d) && d.Status == http.StatusUnauthorized && d.Challenge == "" {
		d.Challenge = BasicChallenge
	}
	return p, err
}

// BasicChallenge is the challenge of the management API.
const BasicChallenge = `Basic realm="outpost"`

// login checks a name and password, with failure limits. The answer is
// the same whether the name is unknown or the password wrong.
func (s *Service) login(r *http.Request, user, pw string) (*Principal, error) {
	now := s.now()
	keys := []string{clientAddr(r), "user:" + user}
	if wait := s.limiter.check(now, keys...); wait > 0 {
		return nil, &Denial{Status: http.StatusTooManyRequests, Message: "too many failed logins; retry later", RetryAfter: wait}
	}
	p := s.verifyPassword(user, pw, now)
	if p == nil {
		delay := s.limiter.fail(now, keys...)
		s.log.Warn("failed login", "user", user, "peer", r.RemoteAddr)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		}
		return nil, &Denial{Status: http.StatusUnauthorized, Message: "invalid username or password"}
	}
	s.limiter.succeed("user:" + user)
	return p, nil
}

// loginComparisons is the number of password-hash comparisons a login by
// token name costs when no remembered verification answers it: one per
// password slot (password1, password2). An unknown name, a token with one
// or no password, and a wrong password all cost this many, so the time of
// a failed login does not tell which token names exist.
const loginComparisons = 2

// verifyPassword returns the principal for valid credentials, or nil.
func (s *Service) verifyPassword(user, pw string, now time.Time) *Principal {
	if user == AdminUser {
		// The admin always exists: its timing tells nothing about names.
		if s.knownAdmin(pw) || s.verifier.verify(s.store.AdminHash(), pw, now) {
			return &Principal{Name: AdminUser, Admin: true}
		}
		return nil
	}
	t, err := s.store.Token(user)
	if err != nil {
		t = &Token{}
	}
	matched := false
	// A recently verified password skips bcrypt altogether (only a right
	// password is remembered, so a wrong one never takes this path).
	for i := range t.Passwords {
		p := &t.Passwords[i]
		if s.verifier.cached(p.Hash, pw, now) && !p.Expired(now) {
			matched = true
		}
	}
	if !matched {
		// Every slot is compared, and missing slots against a dummy hash of
		// the same cost as the token's own (the cost of new hashes for an
		// unknown name), so that neither the name nor which slot matched
		// shows in the time.
		compared, cost := 0, bcryptCost
		for i := range t.Passwords {
			p := &t.Passwords[i]
			if s.verifier.verify(p.Hash, pw, now) && !p.Expired(now) {
				matched = true
			}
			compared, cost = compared+1, hashCost(p.Hash)
		}
		for ; compared < loginComparisons; compared++ {
			s.verifier.dummy(pw, cost)
		}
	}
	if !matched || t.Status != StatusEnabled || t.Relay {
		return nil
	}
	return &Principal{Name: t.Name}
}

// bearer validates a registry token and checks that the credential it was
// issued for is still valid.
func (s *Service) bearer(r *http.Request, raw string) (*Principal, error) {
	now := s.now()
	c, err := s.parseCached(raw, serviceName(r), now)
	if err != nil {
		return nil, &Denial{Status: http.StatusUnauthorized, Message: "invalid or expired registry token"}
	}
	if c.Subject == "" {
		if !s.anonymousPull {
			return nil, &Denial{Status: http.StatusUnauthorized, Message: "anonymous access is disabled"}
		}
		return &Principal{anon: true, claims: c}, nil
	}
	revoked := &Denial{Status: http.StatusUnauthorized, Message: "the credential of this registry token is no longer valid"}
	if c.Subject == AdminUser && c.Password == AdminUser {
		if !constantTimeEqual(fingerprint(s.store.AdminHash()), c.PasswordHash) {
			return nil, revoked
		}
		return &Principal{Name: AdminUser, Admin: true, claims: c}, nil
	}
	t, err := s.store.Token(c.Subject)
	if err != nil || t.Status != StatusEnabled {
		return nil, revoked
	}
	p := t.Password(PasswordName(c.Password))
	if p == nil || p.Expired(now) || !constantTimeEqual(fingerprint(p.Hash), c.PasswordHash) {
		return nil, revoked
	}
	return &Principal{Name: t.Name, claims: c}, nil
}

// Allowed reports whether the principal's scope map (not its registry
// token) grants action on repo. Admin is allowed everything.
func (s *Service) Allowed(p *Principal, repo string, a Action) bool {
	if p.Anonymous() {
		return s.anonymousPull && (a == ContentRead || a == MetadataRead)
	}
	if p.Admin {
		return true
	}
	t, err := s.store.Token(p.Name)
	if err != nil || t.Status != StatusEnabled {
		return false
	}
	m, err := s.store.ScopeMap(t.ScopeMap)
	if err != nil {
		return false
	}
	return m.Allows(repo, a)
}

// AllowedGateway reports whether the principal may perform a gateway
// action (connected-registry sync).
func (s *Service) AllowedGateway(p *Principal, a Action) bool {
	if p.Anonymous() {
		return false
	}
	if p.Admin {
		return true
	}
	t, err := s.store.Token(p.Name)
	if err != nil || t.Status != StatusEnabled {
		return false
	}
	m, err := s.store.ScopeMap(t.ScopeMap)
	return err == nil && m.AllowsGateway(a)
}

// Check authenticates r and verifies every need. It returns the principal
// (nil for an anonymous caller) or a *Denial: 401 with a challenge when
// credentials are missing, bad, or the registry token lacks a scope the
// caller could get; 403 when the caller is not allowed; 429 when locked out.
// With no needs it only requires an authenticated caller (or anonymous
// pull).
func (s *Service) Check(r *http.Request, needs []Need) (*Principal, error) {
	p, err := s.Authenticate(r)
	if err != nil {
		var d *Denial
		if errors.As(err, &d) && d.Status == http.StatusUnauthorized {
			d.Challenge = Challenge(r, needs, "invalid_token")
		}
		return nil, err
	}
	if p == nil {
		for _, n := range needs {
			if !s.Allowed(nil, n.Repository, n.Action) {
				return nil, &Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: Challenge(r, needs, "")}
			}
		}
		if len(needs) == 0 && !s.anonymousPull {
			return nil, &Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: Challenge(r, nil, "")}
		}
		return nil, nil
	}
	for _, n := range needs {
		if !s.Allowed(p, n.Repository, n.Action) && p.Anonymous() {
			return nil, &Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: Challenge(r, needs, "insufficient_scope")}
		}
		if !s.Allowed(p, n.Repository, n.Action) {
			return p, &Denial{Status: http.StatusForbidden, Message: fmt.Sprintf("%s is not allowed %s on repository %s", p.Name, n.Action, n.Repository), Challenge: Challenge(r, needs, "insufficient_scope")}
		}
		if p.claims != nil && n.Scope != "" && !p.claims.grants("repository", n.Repository, n.Scope) {
			return p, &Denial{Status: http.StatusUnauthorized, Message: "the registry token does not grant " + n.Scope + " on " + n.Repository, Challenge: Challenge(r, needs, "insufficient_scope")}
		}
	}
	return p, nil
}

// CheckCatalog authenticates a catalog request. A registry token must carry
// the registry:catalog:* scope; the caller then sees the repositories it
// may metadata/read, which ListFilter tells.
func (s *Service) CheckCatalog(r *http.Request) (*Principal, error) {
	p, err := s.Check(r, nil)
	if err != nil {
		return p, err
	}
	if p != nil && p.claims != nil && !p.claims.grants("registry", "catalog", "*") {
		ch := Challenge(r, nil, "insufficient_scope")
		ch = strings.Replace(ch, `,error=`, `,scope="registry:catalog:*",error=`, 1)
		return p, &Denial{Status: http.StatusUnauthorized, Message: "the registry token does not grant registry:catalog:*", Challenge: ch}
	}
	return p, nil
}

// parseCached is parse with a cache of verified tokens. A cached token is
// still checked for expiry; revocation is checked by the caller each time.
func (s *Service) parseCached(raw, service string, now time.Time) (*claims, error) {
	key := sha256.Sum256([]byte(service + "\x00" + raw))
	s.parsedMu.Lock()
	c, ok := s.parsed[key]
	s.parsedMu.Unlock()
	if ok {
		if c.ExpiresAt != nil && now.Before(c.ExpiresAt.Time) {
			return c, nil
		}
		s.parsedMu.Lock()
		delete(s.parsed, key)
		s.parsedMu.Unlock()
	}
	c, err := s.parse(raw, service, now)
	if err != nil {
		return nil, err
	}
	s.parsedMu.Lock()
	if len(s.parsed) >= 10000 {
		for k, v := range s.parsed {
			if v.ExpiresAt == nil || !now.Before(v.ExpiresAt.Time) || len(s.parsed) >= 10000 {
				delete(s.parsed, k)
			}
		}
	}
	s.parsed[key] = c
	s.parsedMu.Unlock()
	return c, nil
}
