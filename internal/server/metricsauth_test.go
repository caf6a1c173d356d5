package server_test

import (
	"net/http"
	"testing"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
)

// TestMetricsAuth: with metrics.auth on (the default for a listener that
// is not loopback only), /metrics answers 401 with a Basic challenge
// without credentials or with wrong ones, and serves the admin and a
// scrape token; with off it is open.
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	seed := func(tx *auth.Tx) error {
		m := &auth.ScopeMap{Name: "scrape-map", Repositories: []auth.RepositoryGrant{{Repository: "metrics/none", Actions: []auth.Action{auth.MetadataRead}}}}
		if err := tx.PutScopeMap(m); err != nil {
			return err
		}
		return tx.PutToken(azToken(t, "prometheus", m.Name))
	}
	s := azStart(t, seed, func(c *config.Config) { c.Addr = ":5000" })
	for _, c := range []struct {
		name string
		cred azCred
		want int
	}{
		{"anonymous", azCred{}, http.StatusUnauthorized},
		{"wrong password", azBasic("prometheus", "not-the-password"), http.StatusUnauthorized},
		{"admin", azBasic("admin", azAdminPW), http.StatusOK},
		{"scrape token", azBasic("prometheus", azPW), http.StatusOK},
	} {
		rec := s.do(http.MethodGet, "/metrics", nil, nil, c.cred)
		if rec.Code != c.want {
			t.Errorf("%s: /metrics %d, want %d", c.name, rec.Code, c.want)
		}
		if c.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != auth.BasicChallenge {
			t.Errorf("%s: challenge %q", c.name, rec.Header().Get("WWW-Authenticate"))
		}
	}
	open := azStart(t, seed, func(c *config.Config) { c.Addr = ":5000"; c.Metrics.Auth = "off" })
	if rec := open.do(http.MethodGet, "/metrics", nil, nil, azCred{}); rec.Code != http.StatusOK {
		t.Errorf("metrics.auth off: /metrics %d, want 200", rec.Code)
	}
}

func TestMetricsAuthDefault(t *testing.T) {
	for addr, want := range map[string]bool{":5000": true, "0.0.0.0:443": true, "10.0.0.5:5000": true, "myhost:5000": true,
		"127.0.0.1:5000": false, "[::1]:5000": false, "localhost:5000": false} {
		c := config.Config{Addr: addr}
		if got := c.MetricsAuthRequired(); got != want {
			t.Errorf("%s: auth required %v, want %v", addr, got, want)
		}
	}
	c := config.Config{Addr: "127.0.0.1:5000", Metrics: config.Metrics{Auth: "on"}}
	if !c.MetricsAuthRequired() {
		t.Error("metrics.auth on is not honoured on loopback")
	}
}
