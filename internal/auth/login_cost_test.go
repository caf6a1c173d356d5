package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestLoginCostDoesNotTellNames: a failed login costs the same number of
// password-hash comparisons whether the token name is unknown or the
// password wrong, whatever the number of passwords the token has, so the
// answer's time does not tell which names exist. Logins go through
// /oauth2/token on a real HTTP server; the comparisons are counted by the
// verifier.
func TestLoginCostDoesNotTellNames(t *testing.T) {
	t.Parallel()
	svc, tok := jtService(t, Options{})
	svc.limiter.slowFrom = 1000 // the delays of the limiter are not under test
	now := time.Now().UTC()
	two := &Token{Name: "two-passwords", ScopeMap: ScopeMapPull, Status: StatusEnabled, Passwords: []Password{
		{Name: Password1, Hash: jtHash(t, "first-password-1"), Created: now},
		{Name: Password2, Hash: jtHash(t, "second-password-2"), Created: now},
	}}
	none := &Token{Name: "no-passwords", ScopeMap: ScopeMapPull, Status: StatusEnabled}
	disabled := &Token{Name: "disabled-token", ScopeMap: ScopeMapPull, Status: StatusDisabled,
		Passwords: []Password{{Name: Password1, Hash: jtHash(t, jtPW), Created: now}}}
	if err := svc.store.Update(func(tx *Tx) error {
		for _, tk := range []*Token{two, none, disabled} {
			if err := tx.PutToken(tk); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(svc.TokenHandler())
	t.Cleanup(ts.Close)

	login := func(t *testing.T, user, pw string) (int, int64) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/oauth2/token?service="+jtHost+"&scope=repository:"+jtRepo+":pull", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pw)
		before := svc.verifier.compared.Load()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, svc.verifier.compared.Load() - before
	}

	// Sequential: the counter is shared by the whole service.
	for _, tc := range []struct {
		name, user, pw string
		status         int
	}{
		{"unknown name", "no-such-token", "some-password", http.StatusUnauthorized},
		{"wrong password, one password", tok.Name, "not-" + jtPW, http.StatusUnauthorized},
		{"wrong password, two passwords", two.Name, "not-the-password", http.StatusUnauthorized},
		{"no password at all", none.Name, "some-password", http.StatusUnauthorized},
		{"disabled token", disabled.Name, jtPW, http.StatusUnauthorized},
		{"right password1, first use", two.Name, "first-password-1", http.StatusOK},
		{"right password2, first use", two.Name, "second-password-2", http.StatusOK},
	} {
		status, n := login(t, tc.user, tc.pw)
		if status != tc.status {
			t.Errorf("%s: got status %d, want %d", tc.name, status, tc.status)
		}
		if n != loginComparisons {
			t.Errorf("%s: got %d password-hash comparisons, want %d", tc.name, n, loginComparisons)
		}
	}
	// A remembered right password costs none.
	if status, n := login(t, two.Name, "second-password-2"); status != http.StatusOK || n != 0 {
		t.Errorf("remembered password: got status %d and %d comparisons, want 200 and 0", status, n)
	}
}
