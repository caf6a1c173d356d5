package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-registry/outpost/internal/oci"
)

const (
	jtHost  = "outpost.test"
	jtToken = "jwt-token"
	jtPW    = "jwt-token-password"
	jtRepo  = "team/app"
)

// jtHash hashes at bcrypt's minimum cost: the race detector makes the
// default cost take over a second, and the stored hash sets the cost of
// every verification.
func jtHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// jtService builds a Service on a fresh store holding one token,
// jwt-token, whose password1 is jtPW, bound to the built-in pull scope map.
func jtService(t testing.TB, o Options) (*Service, *Token) {
	t.Helper()
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	o.DataDir = dir
	svc, err := NewService(st, o)
	if err != nil {
		t.Fatal(err)
	}
	tok := &Token{Name: jtToken, ScopeMap: ScopeMapPull, Status: StatusEnabled,
		Passwords: []Password{{Name: Password1, Hash: jtHash(t, jtPW), Created: time.Now().UTC()}}}
	if err := st.Update(func(tx *Tx) error { return tx.PutToken(tok) }); err != nil {
		t.Fatal(err)
	}
	return svc, tok
}

// jtRequest is a registry request carrying an Authorization header.
func jtRequest(authz string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://"+jtHost+"/v2/"+jtRepo+"/manifests/v1", nil)
	r.Host = jtHost
	r.RemoteAddr = "192.0.2.10:40000"
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	return r
}

// jtClaims are the claims the service would issue to jwt-token at now
// for pull on team/app.
func jtClaims(tok *Token, now time.Time) *claims {
	return &claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   tok.Name,
			Audience:  jwt.ClaimStrings{jtHost},
			ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
			NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        "0123456789abcdef01234567",
		},
		Access:       []ResourceActions{{Type: "repository", Name: jtRepo, Actions: []string{"pull"}}},
		Password:     string(Password1),
		PasswordHash: fingerprint(tok.Passwords[0].Hash),
	}
}

func jtSign(t testing.TB, m jwt.SigningMethod, key any, kid string, c *claims) string {
	t.Helper()
	tk := jwt.NewWithClaims(m, c)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	s, err := tk.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// jtTamper replaces the payload of a signed token, keeping its header and
// signature.
func jtTamper(t testing.TB, tok string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload := map[string]any{}
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	edit(payload)
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

var jtPull = []Need{{Repository: jtRepo, Action: ContentRead, Scope: "pull"}}

// jtWantRejected checks that a registry token is refused by Authenticate
// and by Check, with a 401 and an invalid_token challenge.
func jtWantRejected(t *testing.T, svc *Service, tok string) {
	t.Helper()
	p, err := svc.Authenticate(jtRequest("Bearer " + tok))
	var d *Denial
	if !errors.As(err, &d) || d.Status != http.StatusUnauthorized || p != nil {
		t.Fatalf("Authenticate: got %+v, %v; want no principal and a 401 denial", p, err)
	}
	p, err = svc.Check(jtRequest("Bearer "+tok), jtPull)
	if !errors.As(err, &d) || d.Status != http.StatusUnauthorized || p != nil {
		t.Fatalf("Check: got %+v, %v; want no principal and a 401 denial", p, err)
	}
	if !strings.Contains(d.Challenge, `error="invalid_token"`) {
		t.Errorf("Check challenge: got %q, want error=\"invalid_token\"", d.Challenge)
	}
}

func TestBearerForgeriesRejected(t *testing.T) {
	t.Parallel()
	svc, tok := jtService(t, Options{})
	now := time.Now()
	valid := func() *claims { return jtClaims(tok, now) }
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&svc.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	with := func(edit func(c *claims)) *claims { c := valid(); edit(c); return c }
	genuine := jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, valid())

	// The genuine token is accepted, so each forgery below is refused for
	// the one thing it changes.
	p, err := svc.Check(jtRequest("Bearer "+genuine), jtPull)
	if err != nil || p == nil || p.Name != jtToken {
		t.Fatalf("genuine token: got %+v, %v; want principal %s", p, err, jtToken)
	}

	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"alg none", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, svc.keyID, valid())
		}},
		{"alg none with the genuine signature", func(t *testing.T) string {
			parts := strings.Split(genuine, ".")
			parts[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			return strings.Join(parts, ".")
		}},
		{"HS256 keyed with the public key (DER)", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodHS256, pubDER, svc.keyID, valid())
		}},
		{"HS256 keyed with the public key (PEM)", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodHS256, pubPEM, svc.keyID, valid())
		}},
		{"ES256 signed by another key", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, other, svc.keyID, valid())
		}},
		{"ES384 signed by another key", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES384, other384, svc.keyID, valid())
		}},
		{"signature removed", func(t *testing.T) string {
			return strings.Join(strings.Split(genuine, ".")[:2], ".") + "."
		}},
		{"wrong audience", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Audience = jwt.ClaimStrings{"other.test"} }))
		}},
		{"no audience", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Audience = nil }))
		}},
		{"wrong issuer", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Issuer = "evil" }))
		}},
		{"no issuer", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Issuer = "" }))
		}},
		{"expired", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second)) }))
		}},
		{"no exp", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.ExpiresAt = nil }))
		}},
		{"not yet valid", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }))
		}},
		{"access claim tampered", func(t *testing.T) string {
			return jtTamper(t, genuine, func(m map[string]any) {
				m["access"] = []any{map[string]any{"type": "repository", "name": "*", "actions": []any{"pull", "push", "delete"}}}
			})
		}},
		{"subject tampered to admin", func(t *testing.T) string {
			return jtTamper(t, genuine, func(m map[string]any) { m["sub"] = AdminUser; m["pwd"] = AdminUser })
		}},
		{"exp tampered", func(t *testing.T) string {
			return jtTamper(t, genuine, func(m map[string]any) { m["exp"] = now.Add(24 * time.Hour).Unix() })
		}},
		{"unknown token name, genuinely signed", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Subject = "no-such-token" }))
		}},
		{"stale password fingerprint, genuinely signed", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.PasswordHash = fingerprint("another hash") }))
		}},
		{"admin without the admin fingerprint, genuinely signed", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Subject, c.Password = AdminUser, AdminUser }))
		}},
		{"anonymous with anonymous pull off, genuinely signed", func(t *testing.T) string {
			return jtSign(t, jwt.SigningMethodES256, svc.key, svc.keyID, with(func(c *claims) { c.Subject, c.Password, c.PasswordHash = "", "", "" }))
		}},
		{"not a JWT", func(*testing.T) string { return "not-a-jwt" }},
		{"empty", func(*testing.T) string { return "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jtWantRejected(t, svc, tc.token(t))
		})
	}
}

// TestBearerLifetime: a registry token stops working when it expires, when
// the password it was issued for expires, and for another service, even
// after it was accepted (and so possibly remembered) once.
func TestBearerLifetime(t *testing.T) {
	t.Parallel()
	svc, tok := jtService(t, Options{TokenTTL: 2 * time.Minute})
	start := time.Now()
	svc.now = func() time.Time { return start }
	raw, err := svc.sign(jtToken, jtHost, string(Password1), tok.Passwords[0].Hash, []ResourceActions{{Type: "repository", Name: jtRepo, Actions: []string{"pull"}}}, start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Check(jtRequest("Bearer "+raw), jtPull); err != nil {
		t.Fatalf("fresh token: %v", err)
	}

	other := jtRequest("Bearer " + raw)
	other.Host = "other.test"
	var d *Denial
	if _, err := svc.Authenticate(other); !errors.As(err, &d) || d.Status != http.StatusUnauthorized {
		t.Errorf("token for %s presented to other.test: got %v, want 401", jtHost, err)
	}

	svc.now = func() time.Time { return start.Add(2*time.Minute + time.Second) }
	jtWantRejected(t, svc, raw)

	// A password that expires revokes the registry tokens issued for it.
	svc.now = func() time.Time { return start }
	exp := start.Add(time.Minute)
	err = svc.store.Update(func(tx *Tx) error {
		c := *tok
		c.Passwords = []Password{tok.Passwords[0]}
		c.Passwords[0].Expiry = &exp
		return tx.PutToken(&c)
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err = svc.sign(jtToken, jtHost, string(Password1), tok.Passwords[0].Hash, []ResourceActions{{Type: "repository", Name: jtRepo, Actions: []string{"pull"}}}, start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Check(jtRequest("Bearer "+raw), jtPull); err != nil {
		t.Fatalf("token before its password expires: %v", err)
	}
	svc.now = func() time.Time { return exp }
	jtWantRejected(t, svc, raw)
}

// TestBasicExpiredPassword: an expired password is refused like a wrong
// one.
func TestBasicExpiredPassword(t *testing.T) {
	t.Parallel()
	svc, tok := jtService(t, Options{})
	now := time.Now()
	svc.now = func() time.Time { return now }
	basic := func() *http.Request {
		r := jtRequest("")
		r.SetBasicAuth(jtToken, jtPW)
		return r
	}
	if p, err := svc.Authenticate(basic()); err != nil || p == nil {
		t.Fatalf("valid password: got %v, %v", p, err)
	}
	past := now.Add(-time.Second)
	if err := svc.store.Update(func(tx *Tx) error {
		c := *tok
		c.Passwords = []Password{tok.Passwords[0]}
		c.Passwords[0].Expiry = &past
		return tx.PutToken(&c)
	}); err != nil {
		t.Fatal(err)
	}
	var d *Denial
	if p, err := svc.Authenticate(basic()); !errors.As(err, &d) || d.Status != http.StatusUnauthorized || p != nil {
		t.Fatalf("expired password: got %v, %v; want a 401 denial", p, err)
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in   string
		want ResourceActions
	}{
		{"repository:team/app:pull", ResourceActions{Type: "repository", Name: "team/app", Actions: []string{"pull"}}},
		{"repository:team/app:pull,push", ResourceActions{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}},
		{"repository:team/app:push,pull,push", ResourceActions{Type: "repository", Name: "team/app", Actions: []string{"push", "pull"}}},
		{"repository:a:pull,,delete", ResourceActions{Type: "repository", Name: "a", Actions: []string{"pull", "delete"}}},
		{"repository:team/app:*", ResourceActions{Type: "repository", Name: "team/app", Actions: []string{"*"}}},
		{"repository:team/app:", ResourceActions{Type: "repository", Name: "team/app"}},
		{"repository:a.b/c-d/e__f:pull", ResourceActions{Type: "repository", Name: "a.b/c-d/e__f", Actions: []string{"pull"}}},
		{"registry:catalog:*", ResourceActions{Type: "registry", Name: "catalog", Actions: []string{"*"}}},
	}
	for _, tc := range valid {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseScope(tc.in)
			if err != nil {
				t.Fatalf("ParseScope(%q): got error %v, want %+v", tc.in, err, tc.want)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseScope(%q): got %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	for _, in := range []string{
		"",
		"repository",
		"repository:team/app",
		"repository::pull",
		"repository:Team/App:pull",
		"repository:localhost:5000/app:pull",
		"repository:team//app:pull",
		"repository:../etc:pull",
		"repository:/app:pull",
		"repository:team/app/:pull",
		"repository:team/app:pull:push",
		"registry:catalog",
		"registry:other:*",
		"image:team/app:pull",
		":team/app:pull",
	} {
		t.Run("invalid "+in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseScope(in)
			if !errors.Is(err, ErrScopeInvalid) {
				t.Errorf("ParseScope(%q): got %+v, %v; want ErrScopeInvalid", in, got, err)
			}
		})
	}
}

// FuzzParseScope: ParseScope never panics; what it accepts is a known
// resource with a valid name and distinct non-empty actions, and it
// survives a round trip.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"repository:team/app:pull", "repository:team/app:pull,push,delete", "repository:a:pull,,pull",
		"repository:team/app:*", "repository:team/app:", "registry:catalog:*", "registry:catalog:pull",
		"repository:localhost:5000/app:pull", "repository:Team:pull", "repository::", ":::", "repository",
		"repository:a/b/c:pull,push:extra", "repository:a\x00b:pull", "repository:a:pu ll",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ra, err := ParseScope(s)
		if err != nil {
			if !errors.Is(err, ErrScopeInvalid) {
				t.Fatalf("ParseScope(%q): error %v does not wrap ErrScopeInvalid", s, err)
			}
			return
		}
		switch ra.Type {
		case "repository":
			if err := oci.ValidateName(ra.Name); err != nil {
				t.Fatalf("ParseScope(%q) accepted repository name %q: %v", s, ra.Name, err)
			}
		case "registry":
			if ra.Name != "catalog" {
				t.Fatalf("ParseScope(%q) accepted registry resource %q", s, ra.Name)
			}
		default:
			t.Fatalf("ParseScope(%q) accepted resource type %q", s, ra.Type)
		}
		seen := map[string]bool{}
		for _, a := range ra.Actions {
			if a == "" || strings.ContainsAny(a, ",:") || seen[a] {
				t.Fatalf("ParseScope(%q): bad action list %q", s, ra.Actions)
			}
			seen[a] = true
		}
		again, err := ParseScope(ra.Type + ":" + ra.Name + ":" + strings.Join(ra.Actions, ","))
		if err != nil || !reflect.DeepEqual(again, ra) {
			t.Fatalf("round trip of %q: got %+v, %v; want %+v", s, again, err, ra)
		}
	})
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("slows down then locks", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		keys := []string{"ip:192.0.2.1", "user:u"}
		for n := 1; n <= 13; n++ {
			want := time.Duration(0)
			if n > 3 {
				want = min(time.Duration(n-3)*200*time.Millisecond, 2*time.Second)
			}
			if n == 10 {
				if wait := l.check(t0, keys...); wait != 0 {
					t.Fatalf("check before the 10th failure: got %v, want 0", wait)
				}
			}
			if got := l.fail(t0, keys...); got != want {
				t.Errorf("delay after failure %d: got %v, want %v", n, got, want)
			}
		}
		if got := l.check(t0, keys...); got != time.Minute {
			t.Errorf("check when locked: got %v, want 1m", got)
		}
		if got := l.check(t0.Add(20*time.Second), "user:u"); got != 40*time.Second {
			t.Errorf("check 20s later: got %v, want 40s", got)
		}
		if got := l.check(t0, "ip:192.0.2.2", "user:v"); got != 0 {
			t.Errorf("check of other keys: got %v, want 0", got)
		}
		if got := l.check(t0, "ip:192.0.2.2", "user:u"); got != time.Minute {
			t.Errorf("check of a locked name from another address: got %v, want 1m", got)
		}
		if got := l.check(t0.Add(time.Minute)); got != 0 {
			t.Errorf("check with no keys: got %v, want 0", got)
		}
		if got := l.check(t0.Add(time.Minute), keys...); got != 0 {
			t.Errorf("check after the lockout: got %v, want 0", got)
		}
	})

	t.Run("an address alone is locked too, eventually", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		n := 0
		for n < 1000 && l.check(t0, "ip:192.0.2.9") == 0 {
			l.fail(t0, "ip:192.0.2.9")
			n++
		}
		if got := l.check(t0, "ip:192.0.2.9"); got != l.lockout {
			t.Fatalf("check after %d failures of one address: got %v, want %v", n, got, l.lockout)
		}
		if n < l.lockFrom {
			t.Errorf("address locked after %d failures, want at least %d", n, l.lockFrom)
		}
	})

	t.Run("success forgets failures of an unlocked name", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		for range 3 {
			l.fail(t0, "user:u")
		}
		l.succeed("user:u")
		if got := l.fail(t0, "user:u"); got != 0 {
			t.Errorf("delay of the first failure after a success: got %v, want 0", got)
		}
	})

	t.Run("success does not lift a lockout", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		for range 10 {
			l.fail(t0, "user:u")
		}
		l.succeed("user:u")
		if got := l.check(t0, "user:u"); got != time.Minute {
			t.Errorf("check after success while locked: got %v, want 1m", got)
		}
	})

	t.Run("old failures are forgotten", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		for range 9 {
			l.fail(t0, "user:u")
		}
		later := t0.Add(10*time.Minute + time.Second)
		if got := l.fail(later, "user:u"); got != 0 {
			t.Errorf("delay of a failure after the window: got %v, want 0", got)
		}
		if got := l.check(later, "user:u"); got != 0 {
			t.Errorf("check after the window: got %v, want 0", got)
		}
	})

	t.Run("table of keys is bounded", func(t *testing.T) {
		t.Parallel()
		l := newLimiter()
		l.maxKeys = 4
		for i := range 8 {
			l.fail(t0, "ip:"+string(rune('a'+i)))
		}
		l.fail(t0.Add(11*time.Minute), "ip:z")
		if len(l.entries) > l.maxKeys {
			t.Errorf("entries after pruning: got %d, want at most %d", len(l.entries), l.maxKeys)
		}
	})
}

// TestLoginLockout drives the limiter through Service.login. The requests'
// contexts are cancelled so that the delays imposed on failures end at
// once; the failures still count.
func TestLoginLockout(t *testing.T) {
	t.Parallel()
	svc, _ := jtService(t, Options{})
	second := &Token{Name: "second-token", ScopeMap: ScopeMapPull, Status: StatusEnabled,
		Passwords: []Password{{Name: Password1, Hash: jtHash(t, jtPW), Created: time.Now().UTC()}}}
	if err := svc.store.Update(func(tx *Tx) error { return tx.PutToken(second) }); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	svc.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	from := func(addr string) *http.Request {
		r := jtRequest("").WithContext(ctx)
		r.RemoteAddr = addr
		return r
	}
	status := func(err error) int {
		var d *Denial
		if errors.As(err, &d) {
			return d.Status
		}
		if err != nil {
			return -1
		}
		return http.StatusOK
	}
	for i := 1; i <= 10; i++ {
		if _, err := svc.login(from("192.0.2.1:1"), jtToken, "wrong"); status(err) != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %v, want 401", i, err)
		}
	}
	_, err := svc.login(from("192.0.2.1:1"), jtToken, jtPW)
	var d *Denial
	if !errors.As(err, &d) || d.Status != http.StatusTooManyRequests {
		t.Fatalf("right password while locked: got %v, want 429", err)
	}
	if got := d.Header().Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After: got %q, want 60", got)
	}
	if _, err := svc.login(from("192.0.2.2:1"), jtToken, jtPW); status(err) != http.StatusTooManyRequests {
		t.Errorf("locked name from another address: got %v, want 429", err)
	}
	if p, err := svc.login(from("192.0.2.3:1"), "second-token", jtPW); err != nil || p == nil {
		t.Errorf("another name from another address: got %v, %v; want it let in", p, err)
	}
	now = now.Add(time.Minute + time.Second)
	if p, err := svc.login(from("192.0.2.1:1"), jtToken, jtPW); err != nil || p == nil {
		t.Errorf("right password after the lockout: got %v, %v; want it let in", p, err)
	}
}

func TestVerifierCache(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	h1, h2 := jtHash(t, "first-password"), jtHash(t, "second-password")

	t.Run("changed hash is never served from the cache", func(t *testing.T) {
		t.Parallel()
		v := newVerifier()
		if !v.verify(h1, "first-password", now) {
			t.Fatal("verify of the right password: got false, want true")
		}
		if !v.cached(h1, "first-password", now) || !v.verify(h1, "first-password", now) {
			t.Fatal("second verify of the right password (from the cache): got false, want true")
		}
		if v.verify(h2, "first-password", now) {
			t.Error("verify of the old password against a new hash: got true, want false")
		}
		if !v.verify(h2, "second-password", now) {
			t.Error("verify of the new password: got false, want true")
		}
	})

	t.Run("failures are not remembered", func(t *testing.T) {
		t.Parallel()
		v := newVerifier()
		if v.verify(h1, "wrong", now) || v.verify("", "", now) || v.verify("", "first-password", now) {
			t.Fatal("verify of a wrong or empty credential: got true, want false")
		}
		if len(v.ok) != 0 {
			t.Errorf("cache after failures: got %d entries, want 0", len(v.ok))
		}
	})

	t.Run("entries expire", func(t *testing.T) {
		t.Parallel()
		v := newVerifier()
		// An entry the cache holds is served until its time runs out, then
		// the password is checked against the hash again.
		v.ok[verifierKey(h1, "planted")] = now.Add(v.ttl)
		if !v.verify(h1, "planted", now) {
			t.Fatal("verify of a remembered entry: got false, want true")
		}
		if v.verify(h1, "planted", now.Add(v.ttl)) {
			t.Error("verify of an expired entry that does not match the hash: got true, want false")
		}
	})

	t.Run("size is bounded", func(t *testing.T) {
		t.Parallel()
		v := newVerifier()
		v.limit = 2
		for _, pw := range []string{"p1", "p2", "p3", "p4"} {
			if !v.verify(jtHash(t, pw), pw, now) {
				t.Fatalf("verify %s: got false", pw)
			}
			if len(v.ok) > v.limit {
				t.Fatalf("cache size: got %d, want at most %d", len(v.ok), v.limit)
			}
		}
	})

	t.Run("regenerated token password is refused at once", func(t *testing.T) {
		t.Parallel()
		svc, tok := jtService(t, Options{})
		basic := func(pw string) *http.Request {
			r := jtRequest("")
			r.SetBasicAuth(jtToken, pw)
			return r
		}
		if p, err := svc.Authenticate(basic(jtPW)); err != nil || p == nil {
			t.Fatalf("password before rotation: got %v, %v", p, err)
		}
		if err := svc.store.Update(func(tx *Tx) error {
			c := *tok
			c.Passwords = []Password{{Name: Password1, Hash: jtHash(t, "rotated-password"), Created: time.Now().UTC()}}
			return tx.PutToken(&c)
		}); err != nil {
			t.Fatal(err)
		}
		var d *Denial
		if p, err := svc.Authenticate(basic(jtPW)); !errors.As(err, &d) || d.Status != http.StatusUnauthorized {
			t.Errorf("old password after rotation: got %v, %v; want 401", p, err)
		}
		if p, err := svc.Authenticate(basic("rotated-password")); err != nil || p == nil {
			t.Errorf("new password: got %v, %v", p, err)
		}
	})
}
