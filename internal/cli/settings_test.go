package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/cli"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// ctRunStderr runs the command line in process and returns its standard
// output and standard error.
func ctRunStderr(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cli.Run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// syncPasswordWorks reports whether user:pw gets a pull token for repo.
func syncPasswordWorks(t *testing.T, base, user, pw, repo string) bool {
	t.Helper()
	u, _ := url.Parse(base)
	return basicStatus(t, http.MethodGet, base+"/oauth2/token?service="+u.Host+"&scope=repository:"+repo+":pull", user, pw) == http.StatusOK
}

// TestGetSettingsQuery: the tutorial's query (az's field name) prints the
// connection string; a query that selects nothing fails, and when it
// comes with --generate-password it is refused before the password is
// rotated.
func TestGetSettingsQuery(t *testing.T) {
	base := ctServer(t, nil)
	ctMustRun(t, "connected-registry", "create", "--name", "factory", "--repository", "apps/web", "--yes", "-o", "none")

	out := ctMustRun(t, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "https",
		"--generate-password", "1", "--query", "ACR_REGISTRY_CONNECTION_STRING", "--output", "tsv", "--yes")
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("--query ACR_REGISTRY_CONNECTION_STRING -o tsv: got %q, want one line", out)
	}
	cs, err := protocol.ParseConnectionString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("--query ACR_REGISTRY_CONNECTION_STRING -o tsv: %v (output %q)", err, out)
	}
	if !syncPasswordWorks(t, base, cs.SyncTokenName, cs.SyncTokenPassword, "apps/web") {
		t.Fatalf("the password in the connection string does not work")
	}

	for _, tc := range []struct {
		name  string
		query string
		want  string
	}{
		{"misspelt az name", "ACR_REGISTRY_CONNECTION_STRNG", "ACR_REGISTRY_CONNECTION_STRNG"},
		{"wrong case", "connectionstring", "connectionstring"},
		{"field absent when a password is generated", "note", "selects nothing"},
		{"misspelt field inside an expression", "{cs: connectionStrin}", "connectionStrin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ctRun(t, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "https",
				"--generate-password", "1", "--yes", "--query", tc.query, "-o", "tsv")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("--query %s: got %v (output %q), want an error naming %s and saying nothing was changed", tc.query, err, out, tc.want)
			}
			if !syncPasswordWorks(t, base, cs.SyncTokenName, cs.SyncTokenPassword, "apps/web") {
				t.Fatalf("--query %s rotated the password although the command failed", tc.query)
			}
		})
	}

	// Without --generate-password there is no password to select.
	if out, err := ctRun(t, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "https", "--query", "syncTokenPassword", "-o", "tsv"); err == nil {
		t.Errorf("--query syncTokenPassword without a generated password: got success %q, want an error", out)
	}

	// The same guard on other commands with one-time answers.
	if _, err := ctRun(t, "token", "create", "--name", "lost-token", "--scope-map", auth.ScopeMapPull, "--query", "credentials.passwords[0].valu", "-o", "tsv"); err == nil || !strings.Contains(err.Error(), "valu") {
		t.Errorf("token create with a misspelt --query: got %v, want an error naming valu", err)
	}
	if _, err := ctRun(t, "token", "show", "--name", "lost-token"); err == nil {
		t.Error("token create with a misspelt --query created the token (its passwords are lost)")
	}
	for _, c := range []struct{ create, show []string }{
		{[]string{"connected-registry", "create", "--name", "typo-site", "--repository", "a/b", "--yes", "--query", "nmae"}, []string{"connected-registry", "show", "--name", "typo-site"}},
		{[]string{"scope-map", "create", "--name", "typo-map", "--repository", "x", "content/read", "--query", "nmae"}, []string{"scope-map", "show", "--name", "typo-map"}},
	} {
		if _, err := ctRun(t, c.create...); err == nil || !strings.Contains(err.Error(), "nmae") {
			t.Errorf("%s: got %v, want an error naming nmae", strings.Join(c.create, " "), err)
		}
		if _, err := ctRun(t, c.show...); err == nil {
			t.Errorf("%s failed but created the resource", strings.Join(c.create, " "))
		}
	}
	// A correct query with filters and projections is accepted.
	out = ctMustRun(t, "token", "create", "--name", "kept-token", "--scope-map", auth.ScopeMapPull, "--query", "credentials.passwords[?name=='password2'].value | [0]", "-o", "tsv")
	if len(strings.TrimSpace(out)) != 43 {
		t.Errorf("token create --query password2: got %q, want the 43-character password", out)
	}
}

// TestCreateAdoptsExistingSyncToken: a token already named
// <name>-sync-token, bound to another scope map or disabled, becomes the
// sync token (bound and enabled) and the output says so.
func TestCreateAdoptsExistingSyncToken(t *testing.T) {
	base := ctServer(t, nil)
	ctMustRun(t, "scope-map", "create", "--name", "other-map", "--repository", "other/repo", "content/read", "-o", "none")
	ctMustRun(t, "scope-map", "create", "--name", "line2-sync-scope-map", "--repository", "apps/web", "content/read", "-o", "none")
	ctMustRun(t, "token", "create", "--name", "factory-sync-token", "--scope-map", "other-map", "--status", "disabled", "-o", "none")
	ctMustRun(t, "token", "create", "--name", "line2-sync-token", "--scope-map", "line2-sync-scope-map", "--status", "disabled", "-o", "none")

	for _, tc := range []struct {
		name  string
		notes []string
	}{
		{"factory", []string{"bound to scope map other-map: it is now bound to factory-sync-scope-map", "was disabled: it is now enabled", "existing passwords"}},
		{"line2", []string{"was disabled: it is now enabled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := ctRunStderr(t, "connected-registry", "create", "--name", tc.name, "--repository", "apps/web", "--yes")
			if err != nil {
				t.Fatalf("create %s with an existing %s-sync-token: %v", tc.name, tc.name, err)
			}
			var answer struct {
				Name  string   `json:"name"`
				Notes []string `json:"notes"`
			}
			if err := json.Unmarshal([]byte(stdout), &answer); err != nil || answer.Name != tc.name {
				t.Fatalf("create answer: %v\n%s", err, stdout)
			}
			for _, n := range tc.notes {
				if !strings.Contains(stderr, n) || !strings.Contains(strings.Join(answer.Notes, "\n"), n) {
					t.Errorf("create %s: stderr %q and notes %q do not say %q", tc.name, stderr, answer.Notes, n)
				}
			}
			tok := ctMustRun(t, "token", "show", "--name", tc.name+"-sync-token", "--query", "[scopeMapName, status]", "-o", "tsv")
			if want := tc.name + "-sync-scope-map\nenabled\n"; tok != want {
				t.Errorf("%s-sync-token: got %q, want %q", tc.name, tok, want)
			}
			cs := ctMustRun(t, "connected-registry", "get-settings", "--name", tc.name, "--parent-protocol", "https", "--generate-password", "1", "--yes", "--query", "ACR_REGISTRY_CONNECTION_STRING", "-o", "tsv")
			parsed, err := protocol.ParseConnectionString(strings.TrimSpace(cs))
			if err != nil {
				t.Fatal(err)
			}
			if !syncPasswordWorks(t, base, parsed.SyncTokenName, parsed.SyncTokenPassword, "apps/web") {
				t.Errorf("the sync token of %s cannot pull its repository", tc.name)
			}
		})
	}

	// A fresh create says nothing.
	_, stderr, err := ctRunStderr(t, "connected-registry", "create", "--name", "fresh-site", "--repository", "apps/web", "--yes", "-o", "none")
	if err != nil || strings.Contains(stderr, "Note") {
		t.Errorf("create without an existing token: got %v, stderr %q; want success and no note", err, stderr)
	}
}
