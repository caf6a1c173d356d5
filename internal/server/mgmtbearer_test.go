package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outpost-registry/outpost/internal/auth"
)

// TestManagementAPIRefusesRegistryTokens: a registry token from
// /oauth2/token is not a management credential, whatever its
// subject. One obtained by the admin for repository:teama/app:pull cannot
// create a token on /api/v1; one obtained by a sync token cannot read its
// gateway configuration; one obtained by a token with metadata/read cannot
// read the change feed. The same identities with Basic credentials can.
func TestManagementAPIRefusesRegistryTokens(t *testing.T) {
	t.Parallel()
	s := azStart(t, func(tx *auth.Tx) error {
		m := &auth.ScopeMap{
			Name:         "sync-edge1-map",
			Repositories: []auth.RepositoryGrant{{Repository: "teama/app", Actions: []auth.Action{auth.ContentRead, auth.MetadataRead}}},
			Gateway:      []auth.Action{"gateway/edge1/config/read"},
		}
		if err := tx.PutScopeMap(m); err != nil {
			return err
		}
		return tx.PutToken(azToken(t, "sync-edge1", m.Name))
	}, nil)
	ts := httptest.NewServer(s.srv.Handler())
	t.Cleanup(ts.Close)
	host := ts.Listener.Addr().String()
	admin := azBasic(auth.AdminUser, azAdminPW)
	syncTok := azBasic("sync-edge1", azPW)

	getToken := func(t *testing.T, endpoint string, cred azCred) string {
		t.Helper()
		resp, b := azHTTP(t, http.MethodGet, ts.URL+endpoint+"?service="+host+"&scope=repository:teama/app:pull", nil, cred)
		var out struct{ Token string }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.Token == "" {
			t.Fatalf("GET %s: got %d %s, want 200 with a token", endpoint, resp.StatusCode, b)
		}
		return out.Token
	}
	wantRefused := func(t *testing.T, what string, resp *http.Response, b []byte) {
		t.Helper()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Error.Code != "Unauthorized" {
			t.Errorf("%s: got %d %s, want 401 Unauthorized", what, resp.StatusCode, b)
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != auth.BasicChallenge {
			t.Errorf("%s: WWW-Authenticate: got %q, want %q", what, got, auth.BasicChallenge)
		}
	}

	for _, endpoint := range []string{"/oauth2/token"} {
		t.Run(endpoint, func(t *testing.T) {
			adminBearer := azBearer(getToken(t, endpoint, admin))
			create := []byte(`{"name":"minted-by-bearer","scopeMapName":"_repositories_admin"}`)
			resp, b := azHTTP(t, http.MethodPost, ts.URL+"/api/v1/tokens", create, adminBearer)
			wantRefused(t, "admin's registry token creating a token", resp, b)
			resp, b = azHTTP(t, http.MethodGet, ts.URL+"/api/v1/tokens/minted-by-bearer", nil, admin)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("the token after the refused creation: got %d %s, want 404", resp.StatusCode, b)
			}
			resp, b = azHTTP(t, http.MethodGet, ts.URL+"/api/v1/status", nil, adminBearer)
			wantRefused(t, "admin's registry token on /api/v1/status", resp, b)

			syncBearer := azBearer(getToken(t, endpoint, syncTok))
			resp, b = azHTTP(t, http.MethodGet, ts.URL+"/api/v1/gateway/edge1/config", nil, syncBearer)
			wantRefused(t, "sync token's registry token on its gateway configuration", resp, b)
			resp, b = azHTTP(t, http.MethodGet, ts.URL+"/api/v1/changes?repository=teama/app", nil, syncBearer)
			wantRefused(t, "registry token on the change feed", resp, b)
		})
	}

	// The same identities with Basic credentials are served.
	resp, b := azHTTP(t, http.MethodGet, ts.URL+"/api/v1/changes?repository=teama/app", nil, syncTok)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Basic on the change feed: got %d %s, want 200", resp.StatusCode, b)
	}
	resp, b = azHTTP(t, http.MethodGet, ts.URL+"/api/v1/gateway/edge1/config", nil, syncTok)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		t.Errorf("Basic on the gateway configuration: got %d %s, want it authorized", resp.StatusCode, b)
	}
	resp, b = azHTTP(t, http.MethodPost, ts.URL+"/api/v1/tokens", []byte(`{"name":"minted-by-basic","scopeMapName":"_repositories_pull"}`), admin)
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("Basic admin creating a token: got %d %s, want 201", resp.StatusCode, b)
	}
}
