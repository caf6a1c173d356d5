package adminapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
)

func TestMergeGrants(t *testing.T) {
	t.Parallel()
	g := func(repo string, acts ...auth.Action) auth.RepositoryGrant {
		return auth.RepositoryGrant{Repository: repo, Actions: acts}
	}
	type grants = []auth.RepositoryGrant
	base := func() grants {
		return grants{g("team/*", auth.ContentRead, auth.MetadataRead), g("x", auth.ContentWrite)}
	}
	tests := []struct {
		name        string
		add, remove grants
		want        grants
	}{
		{"nothing", nil, nil, base()},
		{"add actions to a repository", grants{g("x", auth.ContentRead, auth.ContentWrite)}, nil,
			grants{g("team/*", auth.ContentRead, auth.MetadataRead), g("x", auth.ContentWrite, auth.ContentRead)}},
		{"add a repository", grants{g("y", auth.ContentDelete)}, nil,
			append(base(), g("y", auth.ContentDelete))},
		{"remove an action", nil, grants{g("team/*", auth.MetadataRead)},
			grants{g("team/*", auth.ContentRead), g("x", auth.ContentWrite)}},
		{"remove the last action drops the repository", nil, grants{g("x", auth.ContentWrite)},
			grants{g("team/*", auth.ContentRead, auth.MetadataRead)}},
		{"remove a repository without listing actions", nil, grants{g("team/*")},
			grants{g("x", auth.ContentWrite)}},
		{"remove an unknown repository", nil, grants{g("nope", auth.ContentRead)}, base()},
		{"add then remove", grants{g("y", auth.ContentRead)}, grants{g("y")}, base()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := base()
			got := auth.MergeGrants(in, tc.add, tc.remove)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MergeGrants: got %+v, want %+v", got, tc.want)
			}
			if !reflect.DeepEqual(in, base()) {
				t.Errorf("MergeGrants changed its input: got %+v, want %+v", in, base())
			}
		})
	}
}

const meAdminPW = "admin-password-for-management-tests"

// meAPI builds the management API on a fresh identity store. The admin
// hash has bcrypt's minimum cost, so that verifications are cheap under
// the race detector.
func meAPI(t *testing.T) http.Handler {
	t.Helper()
	dir := t.TempDir()
	st, err := auth.OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h, err := bcrypt.GenerateFromPassword([]byte(meAdminPW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *auth.Tx) error { tx.SetAdminHash(string(h)); return nil }); err != nil {
		t.Fatal(err)
	}
	svc, err := auth.NewService(st, auth.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return adminapi.New(svc, slog.New(slog.DiscardHandler))
}

// meResults are the answers some successful steps must give.
var meResults = map[string]struct {
	Repositories []auth.RepositoryGrant
	Status       string
}{
	"create scope map": {Repositories: []auth.RepositoryGrant{{Repository: "team/*", Actions: []auth.Action{auth.ContentRead}}}},
	"create token":     {Status: "enabled"},
	"disable token":    {Status: "disabled"},
	"update scope map": {Repositories: []auth.RepositoryGrant{{Repository: "x", Actions: []auth.Action{auth.ContentWrite}}}},
}

// TestManagementAPIAnswers walks scope maps and tokens through the API and
// checks each status and error code of docs/api.md. The steps depend on
// each other and run in order.
func TestManagementAPIAnswers(t *testing.T) {
	t.Parallel()
	api := meAPI(t)
	steps := []struct {
		name, method, path, body string
		status                   int
		code                     string // error code, for errors
		mention                  string // the error message names it
	}{
		{"create scope map", http.MethodPost, "/api/v1/scope-maps", `{"name":"team-map","repositories":[{"repository":"team/*","actions":["content/read"]}]}`, 201, "", ""},
		{"create it again", http.MethodPost, "/api/v1/scope-maps", `{"name":"team-map","repositories":[{"repository":"team/*","actions":["content/read"]}]}`, 409, "AlreadyExists", `"team-map"`},
		{"unknown field", http.MethodPost, "/api/v1/scope-maps", `{"name":"other-map","repos":[]}`, 400, "InvalidArgument", `"repos"`},
		{"malformed body", http.MethodPost, "/api/v1/scope-maps", `{"name":`, 400, "InvalidArgument", "request body"},
		{"short name", http.MethodPost, "/api/v1/scope-maps", `{"name":"ab","repositories":[{"repository":"x","actions":["content/read"]}]}`, 400, "InvalidArgument", "name"},
		{"unknown action", http.MethodPost, "/api/v1/scope-maps", `{"name":"other-map","repositories":[{"repository":"x","actions":["content/everything"]}]}`, 400, "InvalidArgument", `"content/everything"`},
		{"repository listed twice", http.MethodPost, "/api/v1/scope-maps", `{"name":"other-map","repositories":[{"repository":"x","actions":["content/read"]},{"repository":"x","actions":["content/write"]}]}`, 400, "InvalidArgument", `"x"`},
		{"update a built-in scope map", http.MethodPatch, "/api/v1/scope-maps/_repositories_pull", `{"description":"mine"}`, 409, "ReadOnly", "_repositories_pull"},
		{"delete a built-in scope map", http.MethodDelete, "/api/v1/scope-maps/_repositories_pull", "", 409, "ReadOnly", "_repositories_pull"},
		{"unknown scope map", http.MethodGet, "/api/v1/scope-maps/no-such-map", "", 404, "NotFound", `"no-such-map"`},
		{"token with scope map and repositories", http.MethodPost, "/api/v1/tokens", `{"name":"team-token","scopeMapName":"team-map","repositories":[{"repository":"x","actions":["content/read"]}]}`, 400, "InvalidArgument", "scopeMapName"},
		{"token with bad status", http.MethodPost, "/api/v1/tokens", `{"name":"team-token","scopeMapName":"team-map","status":"paused","noPasswords":true}`, 400, "InvalidArgument", `"paused"`},
		{"create token", http.MethodPost, "/api/v1/tokens", `{"name":"team-token","scopeMapName":"team-map","noPasswords":true}`, 201, "", ""},
		{"create token again", http.MethodPost, "/api/v1/tokens", `{"name":"team-token","scopeMapName":"team-map","noPasswords":true}`, 409, "AlreadyExists", `"team-token"`},
		{"delete a scope map in use", http.MethodDelete, "/api/v1/scope-maps/team-map", "", 409, "InUse", `"team-token"`},
		{"unknown password slot", http.MethodPost, "/api/v1/tokens/team-token/credentials", `{"password":"password3"}`, 400, "InvalidArgument", `"password3"`},
		{"expiry out of range", http.MethodPost, "/api/v1/tokens/team-token/credentials", `{"password":"password1","expirationInDays":-1}`, 400, "InvalidArgument", "expirationInDays"},
		{"credentials of an unknown token", http.MethodPost, "/api/v1/tokens/no-such-token/credentials", `{"password":"password1"}`, 404, "NotFound", `"no-such-token"`},
		{"disable token", http.MethodPatch, "/api/v1/tokens/team-token", `{"status":"disabled"}`, 200, "", ""},
		{"update scope map", http.MethodPatch, "/api/v1/scope-maps/team-map", `{"addRepositories":[{"repository":"x","actions":["content/write"]}],"removeRepositories":[{"repository":"team/*"}]}`, 200, "", ""},
		{"update leaves an invalid scope map", http.MethodPatch, "/api/v1/scope-maps/team-map", `{"addRepositories":[{"repository":"Bad","actions":["content/write"]}]}`, 400, "InvalidArgument", `"Bad"`},
		{"delete token", http.MethodDelete, "/api/v1/tokens/team-token", "", 204, "", ""},
		{"delete it again", http.MethodDelete, "/api/v1/tokens/team-token", "", 404, "NotFound", `"team-token"`},
		{"delete the scope map no longer in use", http.MethodDelete, "/api/v1/scope-maps/team-map", "", 204, "", ""},
	}
	for _, st := range steps {
		var body *bytes.Reader
		if st.body != "" {
			body = bytes.NewReader([]byte(st.body))
		} else {
			body = bytes.NewReader(nil)
		}
		req := httptest.NewRequest(st.method, "http://outpost.test"+st.path, body)
		req.SetBasicAuth(auth.AdminUser, meAdminPW)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != st.status {
			t.Fatalf("%s: %s %s: got %d %s, want %d", st.name, st.method, st.path, rec.Code, rec.Body, st.status)
		}
		if st.code == "" {
			if want, ok := meResults[st.name]; ok {
				var got struct {
					Repositories []auth.RepositoryGrant `json:"repositories"`
					Status       string                 `json:"status"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || !reflect.DeepEqual(got.Repositories, want.Repositories) || got.Status != want.Status {
					t.Errorf("%s: got %s, want repositories %+v and status %q", st.name, rec.Body, want.Repositories, want.Status)
				}
			}
			continue
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s: body %s: %v", st.name, rec.Body, err)
		}
		if e.Error.Code != st.code {
			t.Errorf("%s: code: got %q, want %q", st.name, e.Error.Code, st.code)
		}
		if !strings.Contains(e.Error.Message, st.mention) {
			t.Errorf("%s: message %q does not mention %s", st.name, e.Error.Message, st.mention)
		}
	}
}
