package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/cli"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/server"
)

// These tests run the CLI in process against a real server. They set
// environment variables (XDG_CONFIG_HOME, OUTPOST_*), so none of them runs
// in parallel.

// The -update flag rewrites the golden files. It is registered in init,
// after every package-level variable, so that it can share the flag with
// other golden tests of the package.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata")
	}
}

func ctUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const ctAdminPW = "admin-password-for-cli-tests"

// ctHash hashes at bcrypt's minimum cost: under the race detector the
// default cost takes over a second per hash and per verification.
func ctHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// ctServer starts a server whose identity store was seeded by seed, and
// points the CLI at it as the admin through OUTPOST_SERVER,
// OUTPOST_USERNAME and OUTPOST_PASSWORD. It returns the server URL.
func ctServer(t *testing.T, seed func(tx *auth.Tx) error) string {
	t.Helper()
	dir := t.TempDir()
	st, err := auth.OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	adminHash := ctHash(t, ctAdminPW)
	err = st.Update(func(tx *auth.Tx) error {
		tx.SetAdminHash(adminHash)
		if seed != nil {
			return seed(tx)
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("seed identity store: %v", err)
	}
	cfg := config.Default()
	cfg.Data = dir
	cfg.TLS.Mode = config.TLSOff
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler), "test", "")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Close()
	})
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("OUTPOST_SERVER", ts.URL)
	t.Setenv("OUTPOST_USERNAME", auth.AdminUser)
	t.Setenv("OUTPOST_PASSWORD", ctAdminPW)
	return ts.URL
}

// ctRun runs the outpost command line in process.
func ctRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cli.Run(ctx, args, &stdout, &stderr)
	return stdout.String(), err
}

func ctMustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ctRun(t, args...)
	if err != nil {
		t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
	}
	return out
}

var (
	// Server-generated timestamps carry fractions of a second; the seeded
	// ones below and the zero time of built-in scope maps do not.
	ctTimeRE     = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+(Z|[+-]\d{2}:\d{2})`)
	ctPasswordRE = regexp.MustCompile(`(^|[^A-Za-z0-9_-])[A-Za-z0-9_-]{43}($|[^A-Za-z0-9_-])`)
)

// ctNormalise replaces what varies from run to run: generated timestamps
// and passwords.
func ctNormalise(s string) string {
	s = ctTimeRE.ReplaceAllString(s, "<TIME>")
	return ctPasswordRE.ReplaceAllString(s, "${1}<PASSWORD>${2}")
}

// ctGolden compares got with testdata/name.golden, or rewrites the file
// with -update.
func ctGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if ctUpdate() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

var (
	ctCreated = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ctExpiry  = time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
)

// ctSeed creates two scope maps and four tokens with fixed timestamps.
func ctSeed(t *testing.T) func(tx *auth.Tx) error {
	hash := ctHash(t, "seeded-token-password")
	pw := func(n auth.PasswordName, exp *time.Time) auth.Password {
		return auth.Password{Name: n, Hash: hash, Created: ctCreated, Expiry: exp}
	}
	exp := ctExpiry
	return func(tx *auth.Tx) error {
		for _, m := range []*auth.ScopeMap{
			{Name: "team-push", Description: "Team A pushes", Repositories: []auth.RepositoryGrant{
				{Repository: "team/*", Actions: []auth.Action{auth.ContentRead, auth.ContentWrite, auth.MetadataRead}},
				{Repository: "shared/base", Actions: []auth.Action{auth.ContentRead}},
			}},
			{Name: "ops-delete", Repositories: []auth.RepositoryGrant{{Repository: "ops/*", Actions: []auth.Action{auth.ContentDelete}}}},
		} {
			if err := tx.PutScopeMap(m); err != nil {
				return err
			}
		}
		for _, tok := range []*auth.Token{
			{Name: "ci-push", ScopeMap: "team-push", Status: auth.StatusEnabled, Created: ctCreated,
				Passwords: []auth.Password{pw(auth.Password1, nil), pw(auth.Password2, &exp)}},
			{Name: "old-token", ScopeMap: auth.ScopeMapPull, Status: auth.StatusDisabled, Created: ctCreated,
				Passwords: []auth.Password{pw(auth.Password1, nil)}},
			{Name: "site-puller", ScopeMap: auth.ScopeMapPull, Status: auth.StatusEnabled, Created: ctCreated,
				Passwords: []auth.Password{pw(auth.Password1, &exp), pw(auth.Password2, &exp)}},
			{Name: "spare-token", ScopeMap: "ops-delete", Status: auth.StatusEnabled, Created: ctCreated},
		} {
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestOutputGolden renders scope-map and token list and show in every
// output format, and with --query.
func TestOutputGolden(t *testing.T) {
	ctServer(t, ctSeed(t))
	commands := []struct {
		name string
		args []string
	}{
		{"scope-map-list", []string{"scope-map", "list"}},
		{"scope-map-show", []string{"scope-map", "show", "--name", "team-push"}},
		{"token-list", []string{"token", "list"}},
		{"token-show", []string{"token", "show", "--name", "ci-push"}},
	}
	queries := map[string][]string{
		"scope-map-list": {"--query", "[?builtIn==`false`].{name: name, repositories: length(repositories)}", "-o", "table"},
		"scope-map-show": {"--query", "repositories[].repository", "-o", "tsv"},
		"token-list":     {"--query", "[?status=='enabled'].{name: name, map: scopeMapName}", "-o", "table"},
		"token-show":     {"--query", "credentials.passwords[].{name: name, expiry: expiry}", "-o", "json"},
	}
	for _, c := range commands {
		for _, format := range []string{"table", "json", "yaml", "tsv", "query"} {
			t.Run(c.name+"."+format, func(t *testing.T) {
				args := append(append([]string{}, c.args...), "-o", format)
				if format == "query" {
					args = append(append([]string{}, c.args...), queries[c.name]...)
				}
				ctGolden(t, c.name+"."+format, ctNormalise(ctMustRun(t, args...)))
			})
		}
	}
}

type ctTokenView struct {
	Name        string `json:"name"`
	Credentials struct {
		Passwords []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"passwords"`
	} `json:"credentials"`
}

// TestTokenCreateShowsPasswordsOnce: token create prints both generated
// passwords once; nothing else ever shows them.
func TestTokenCreateShowsPasswordsOnce(t *testing.T) {
	ctServer(t, nil)
	out := ctMustRun(t, "token", "create", "--name", "new-token", "--scope-map", auth.ScopeMapPull, "-o", "json")
	var view ctTokenView
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatalf("token create -o json: %v\n%s", err, out)
	}
	if len(view.Credentials.Passwords) != 2 {
		t.Fatalf("token create: got %d passwords, want 2\n%s", len(view.Credentials.Passwords), out)
	}
	var values []string
	for i, p := range view.Credentials.Passwords {
		if want := []string{"password1", "password2"}[i]; p.Name != want {
			t.Errorf("password %d: got name %q, want %q", i, p.Name, want)
		}
		if len(p.Value) != 43 {
			t.Errorf("%s: got a %d-character value, want 43", p.Name, len(p.Value))
		}
		if n := strings.Count(out, p.Value); n != 1 {
			t.Errorf("%s appears %d times in the output, want once", p.Name, n)
		}
		values = append(values, p.Value)
	}
	if values[0] == values[1] {
		t.Error("password1 and password2 are equal")
	}
	ctGolden(t, "token-create.json", ctNormalise(out))

	for _, args := range [][]string{
		{"token", "show", "--name", "new-token"},
		{"token", "list"},
	} {
		for _, format := range []string{"json", "table", "yaml", "tsv"} {
			got := ctMustRun(t, append(args, "-o", format)...)
			for _, v := range values {
				if strings.Contains(got, v) {
					t.Errorf("%s -o %s shows a password value:\n%s", strings.Join(args, " "), format, got)
				}
			}
			if strings.Contains(got, "value") {
				t.Errorf("%s -o %s has a value field:\n%s", strings.Join(args, " "), format, got)
			}
		}
	}
}

// TestScopeMapCreateGroupsValues: each --repository takes the repository
// and the actions that follow it, up to the next flag.
func TestScopeMapCreateGroupsValues(t *testing.T) {
	ctServer(t, nil)
	out := ctMustRun(t, "scope-map", "create", "--name", "multi-map",
		"--repository", "team/*", "content/read", "metadata/read",
		"--description", "two grants",
		"--repository", "x", "content/write", "-o", "json")
	type grant struct {
		Repository string   `json:"repository"`
		Actions    []string `json:"actions"`
	}
	want := []grant{
		{Repository: "team/*", Actions: []string{"content/read", "metadata/read"}},
		{Repository: "x", Actions: []string{"content/write"}},
	}
	for _, got := range []string{out, ctMustRun(t, "scope-map", "show", "--name", "multi-map", "-o", "json")} {
		var m struct {
			Description  string  `json:"description"`
			Repositories []grant `json:"repositories"`
		}
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Fatalf("%v\n%s", err, got)
		}
		if !reflect.DeepEqual(m.Repositories, want) {
			t.Errorf("repositories: got %+v, want %+v", m.Repositories, want)
		}
		if m.Description != "two grants" {
			t.Errorf("description: got %q, want %q", m.Description, "two grants")
		}
	}
}

// TestErrorsNameTheField: a refused command fails (a non-zero exit) with a
// message naming what is wrong.
func TestErrorsNameTheField(t *testing.T) {
	ctServer(t, ctSeed(t))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"scope map name too short", []string{"scope-map", "create", "--name", "ab", "--repository", "x", "content/read"}, []string{"name", `"ab"`}},
		{"unknown action", []string{"scope-map", "create", "--name", "good-name", "--repository", "x", "bogus/action"}, []string{"--repository x", `"bogus/action"`}},
		{"repository without actions", []string{"scope-map", "create", "--name", "good-name", "--repository", "x"}, []string{"--repository x", "actions"}},
		{"invalid repository", []string{"scope-map", "create", "--name", "good-name", "--repository", "Bad/Repo", "content/read"}, []string{"repository", `"Bad/Repo"`}},
		{"missing name", []string{"scope-map", "show"}, []string{`"name"`}},
		{"delete without --yes", []string{"scope-map", "delete", "--name", "team-push"}, []string{"--yes"}},
		{"token without scope map or repositories", []string{"token", "create", "--name", "tok-one"}, []string{"--scope-map", "--repository"}},
		{"token with unknown scope map", []string{"token", "create", "--name", "tok-two", "--scope-map", "no-such-map"}, []string{"scope map", `"no-such-map"`}},
		{"token expiry out of range", []string{"token", "create", "--name", "tok-three", "--scope-map", auth.ScopeMapPull, "--expiration-in-days", "5000"}, []string{"expirationInDays", "5000"}},
		{"token bad status", []string{"token", "update", "--name", "ci-push", "--status", "paused"}, []string{"status", `"paused"`}},
		{"unknown token", []string{"token", "show", "--name", "no-such-token"}, []string{`"no-such-token"`, "404"}},
		{"bad output format", []string{"token", "list", "-o", "xml"}, []string{"--output", `"xml"`}},
		{"bad query", []string{"token", "list", "--query", "[invalid"}, []string{"--query"}},
		{"credential slot", []string{"token", "credential", "generate", "--name", "ci-push"}, []string{"--password1", "--password2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ctRun(t, tc.args...)
			if err == nil {
				t.Fatalf("outpost %s: got success with output %q, want an error", strings.Join(tc.args, " "), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("outpost %s: error %q does not mention %s", strings.Join(tc.args, " "), err, w)
				}
			}
		})
	}
	// Nothing was created by the refused commands.
	out := ctMustRun(t, "token", "list", "--query", "[].name", "-o", "tsv")
	if want := "ci-push\nold-token\nsite-puller\nspare-token\n"; out != want {
		t.Errorf("tokens after refused commands: got %q, want %q", out, want)
	}
}

// TestBadOutputOptionsChangeNothing: a create command whose -o or --query
// is invalid must fail before it changes anything; for token create the
// generated passwords would otherwise be lost.
func TestBadOutputOptionsChangeNothing(t *testing.T) {
	ctServer(t, nil)
	var created []string
	for _, tc := range []struct {
		create, show []string
	}{
		{[]string{"scope-map", "create", "--name", "xml-map", "--repository", "x", "content/read", "-o", "xml"}, []string{"scope-map", "show", "--name", "xml-map"}},
		{[]string{"token", "create", "--name", "query-token", "--scope-map", auth.ScopeMapPull, "--query", "[invalid"}, []string{"token", "show", "--name", "query-token"}},
	} {
		if out, err := ctRun(t, tc.create...); err == nil {
			t.Fatalf("outpost %s: got success %q, want an error", strings.Join(tc.create, " "), out)
		}
		if _, err := ctRun(t, tc.show...); err == nil {
			created = append(created, strings.Join(tc.create, " "))
		}
	}
	if len(created) > 0 {
		t.Errorf("these commands failed but created the resource (token passwords lost): %q", created)
	}
}

// TestLoginSavesConfig: login checks the credential, then saves it with
// mode 0600 and makes the server the default of later commands.
func TestLoginSavesConfig(t *testing.T) {
	url := ctServer(t, nil)
	for _, v := range []string{"OUTPOST_SERVER", "OUTPOST_USERNAME", "OUTPOST_PASSWORD"} {
		t.Setenv(v, "")
	}
	cfgDir := os.Getenv("XDG_CONFIG_HOME")
	path := filepath.Join(cfgDir, "outpost", "config.json")

	if _, err := ctRun(t, "login", url, "-u", auth.AdminUser, "-p", "not-the-password"); err == nil || !strings.Contains(err.Error(), "invalid username or password") {
		t.Fatalf("login with a wrong password: got %v, want an invalid username or password error", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("config after a failed login: got %v, want no file", err)
	}

	out := ctMustRun(t, "login", url, "-u", auth.AdminUser, "-p", ctAdminPW)
	if want := "Login succeeded: " + url + " as admin\n"; out != want {
		t.Errorf("login output: got %q, want %q", out, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: got mode %v, want 0600", path, fi.Mode().Perm())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s: got %v, %v; want a directory only its owner can open", filepath.Dir(path), di.Mode(), err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		Current string `json:"current"`
		Servers map[string]struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatalf("config.json: %v\n%s", err, raw)
	}
	if saved.Current != url || saved.Servers[url].Username != auth.AdminUser || saved.Servers[url].Password != ctAdminPW {
		t.Errorf("config.json: got %s, want the login to %s saved as current", raw, url)
	}

	// Later commands use the saved login.
	if out := ctMustRun(t, "scope-map", "list", "--query", "length(@)", "-o", "tsv"); out != "3\n" {
		t.Errorf("scope-map list with the saved login: got %q, want the 3 built-in scope maps", out)
	}
}
