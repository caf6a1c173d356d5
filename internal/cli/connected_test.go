package cli_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// crScopeMap reads a scope map as JSON through the CLI.
func crScopeMap(t *testing.T, name string) auth.ScopeMap {
	t.Helper()
	var m auth.ScopeMap
	if err := json.Unmarshal([]byte(ctMustRun(t, "scope-map", "show", "--name", name)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func repoNames(m auth.ScopeMap) []string {
	var out []string
	for _, g := range m.Repositories {
		out = append(out, g.Repository)
	}
	slices.Sort(out)
	return out
}

// basicStatus sends a request with Basic credentials and returns the status.
func basicStatus(t *testing.T, method, u, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConnectedRegistryHierarchy: root → factory (ReadWrite) → line1
// (ReadOnly); ancestors' sync scope maps follow the hierarchy; get-settings
// rotates the sync token's password; list and show have golden output; the
// sync token of line1 reaches only line1's repositories and no admin route.
func TestConnectedRegistryHierarchy(t *testing.T) {
	base := ctServer(t, nil)
	ctMustRun(t, "token", "create", "--name", "line1-puller", "--scope-map", auth.ScopeMapPull, "-o", "none")
	ctMustRun(t, "connected-registry", "create", "--name", "factory", "--mode", "ReadWrite", "--repository", "apps/web", "apps/api", "--yes", "-o", "none")
	ctMustRun(t, "connected-registry", "create", "--name", "line1", "--parent", "factory", "--repository", "apps/web", "line/tools",
		"--sync-schedule", "0 2 * * *", "--sync-window", "PT3H", "--client-tokens", "line1-puller", "--yes", "-o", "none")

	factory := crScopeMap(t, "factory-sync-scope-map")
	if got, want := repoNames(factory), []string{"apps/api", "apps/web", "line/tools"}; !slices.Equal(got, want) {
		t.Errorf("factory sync scope map repositories: got %v, want %v", got, want)
	}
	if !factory.AllowsGateway("gateway/line1/config/read") || !factory.AllowsGateway("gateway/factory/message/write") {
		t.Errorf("factory sync scope map gateway actions: %v", factory.Gateway)
	}
	if !factory.Allows("apps/api", auth.ContentWrite) {
		t.Error("factory (ReadWrite) sync scope map: no content/write on apps/api")
	}
	line1 := crScopeMap(t, "line1-sync-scope-map")
	if line1.Allows("apps/web", auth.ContentWrite) || !line1.Allows("line/tools", auth.ContentRead) || line1.AllowsGateway("gateway/factory/config/read") {
		t.Errorf("line1 (ReadOnly) sync scope map: %+v", line1)
	}

	ctGolden(t, "cr-list-table", ctNormalise(ctMustRun(t, "connected-registry", "list", "-o", "table")))
	ctGolden(t, "cr-show-table", ctNormalise(ctMustRun(t, "connected-registry", "show", "--name", "line1", "-o", "table")))
	ctGolden(t, "cr-list-children-tsv", ctNormalise(ctMustRun(t, "connected-registry", "list", "--parent", "factory", "-o", "tsv", "--query", "[].[name,mode,parent,syncSchedule,syncWindow]")))

	// get-settings twice with --generate-password 1: the first password
	// stops working at the token endpoint, the second works.
	settings := func() protocol.ConnectionString {
		out := ctMustRun(t, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "https", "--generate-password", "1", "--yes")
		var s protocol.Settings
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		cs, err := protocol.ParseConnectionString(s.ConnectionString)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	first, second := settings(), settings()
	if first.SyncTokenPassword == second.SyncTokenPassword || first.SyncTokenName != "factory-sync-token" {
		t.Fatalf("get-settings: %+v then %+v", first, second)
	}
	u, _ := url.Parse(base)
	tokenURL := base + "/oauth2/token?service=" + u.Host + "&scope=repository:apps/web:pull"
	if got := basicStatus(t, http.MethodGet, tokenURL, first.SyncTokenName, first.SyncTokenPassword); got != http.StatusUnauthorized {
		t.Errorf("old sync password at /oauth2/token: got %d, want 401", got)
	}
	if got := basicStatus(t, http.MethodGet, tokenURL, second.SyncTokenName, second.SyncTokenPassword); got != http.StatusOK {
		t.Errorf("new sync password at /oauth2/token: got %d, want 200", got)
	}
	// Without --generate-password the password is omitted, and said so.
	out := ctMustRun(t, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "http")
	if !strings.Contains(out, "<password>") || strings.Contains(out, second.SyncTokenPassword) {
		t.Errorf("get-settings without a password: %s", out)
	}
	// line1's parent has not activated, so its endpoint is unknown.
	if _, err := ctRun(t, "connected-registry", "get-settings", "--name", "line1", "--parent-protocol", "https"); err == nil || !strings.Contains(err.Error(), "not been activated") {
		t.Errorf("get-settings of line1 before factory activated: %v", err)
	}

	// The sync token of line1 pulls line1's repositories and nothing else.
	var s protocol.Settings
	if err := json.Unmarshal([]byte(ctMustRun(t, "token", "credential", "generate", "--name", "line1-sync-token", "--password1", "--query", "{connectionString: credentials.passwords[0].value}")), &s); err != nil {
		t.Fatal(err)
	}
	pw := s.ConnectionString
	for _, c := range []struct {
		path string
		want int
	}{
		{"/v2/apps/web/tags/list", http.StatusNotFound}, // allowed; the repository is empty
		{"/v2/line/tools/manifests/latest", http.StatusNotFound},
		{"/v2/apps/api/tags/list", http.StatusForbidden},
		{"/v2/other/repo/manifests/latest", http.StatusForbidden},
		{"/api/v1/tokens", http.StatusForbidden},
		{"/api/v1/connected-registries", http.StatusForbidden},
	} {
		if got := basicStatus(t, http.MethodGet, base+c.path, "line1-sync-token", pw); got != c.want {
			t.Errorf("line1 sync token GET %s: got %d, want %d", c.path, got, c.want)
		}
	}

	// Deleting a parent with children is refused; deleting the child
	// shrinks the ancestor's scope map; --cleanup removes its identity.
	if _, err := ctRun(t, "connected-registry", "delete", "--name", "factory", "--yes"); err == nil || !strings.Contains(err.Error(), "line1") {
		t.Errorf("delete of a parent with children: %v", err)
	}
	ctMustRun(t, "connected-registry", "delete", "--name", "line1", "--cleanup", "--yes")
	factory = crScopeMap(t, "factory-sync-scope-map")
	if got, want := repoNames(factory), []string{"apps/api", "apps/web"}; !slices.Equal(got, want) || factory.AllowsGateway("gateway/line1/config/read") {
		t.Errorf("factory sync scope map after line1 was deleted: %v %v", got, factory.Gateway)
	}
	if _, err := ctRun(t, "token", "show", "--name", "line1-sync-token"); err == nil {
		t.Error("line1-sync-token still exists after delete --cleanup")
	}
}

// TestConnectedRegistryValidation: every bad input is refused with a
// message naming the field, and nothing is created.
func TestConnectedRegistryValidation(t *testing.T) {
	ctServer(t, nil)
	ctMustRun(t, "connected-registry", "create", "--name", "readonly-parent", "--repository", "a/b", "--yes", "-o", "none")
	tokens := []string{"--client-tokens"}
	for i := range 21 {
		name := "client-token-" + string(rune('a'+i))
		ctMustRun(t, "token", "create", "--name", name, "--scope-map", auth.ScopeMapPull, "-o", "none")
		tokens = append(tokens, name)
	}
	before := ctMustRun(t, "connected-registry", "list", "-o", "json")
	for _, c := range []struct {
		name  string
		args  []string
		field string
	}{
		{"bad cron", []string{"--sync-schedule", "61 * * * *"}, "syncSchedule"},
		{"four cron fields", []string{"--sync-schedule", "* * * *"}, "syncSchedule"},
		{"window too short", []string{"--sync-window", "PT30M"}, "syncWindow"},
		{"window too long", []string{"--sync-window", "P8D"}, "syncWindow"},
		{"window not ISO", []string{"--sync-window", "3h"}, "syncWindow"},
		{"ttl out of range", []string{"--sync-message-ttl", "P91D"}, "syncMessageTtl"},
		{"unknown parent", []string{"--parent", "nowhere"}, "parent"},
		{"ReadWrite under ReadOnly", []string{"--parent", "readonly-parent", "--mode", "ReadWrite"}, "mode"},
		{"bad mode", []string{"--mode", "Sometimes"}, "mode"},
		{"too many client tokens", tokens, "clientTokens"},
		{"unknown client token", []string{"--client-tokens", "ghost-token"}, "clientTokens"},
		{"bad log level", []string{"--log-level", "Loud"}, "logLevel"},
		{"bad notification", []string{"--notifications", "a/b:v1:build"}, "notification"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"connected-registry", "create", "--name", "valid-name", "--repository", "x/y", "--yes"}, c.args...)
			_, err := ctRun(t, args...)
			if !namesField(err, c.field) {
				t.Errorf("got %v, want an error naming %s", err, c.field)
			}
		})
	}
	for _, c := range []struct{ name, repo, field string }{
		{"Bad_Name", "x/y", "name"},
		{"abc", "x/y", "name"},
		{"valid-name", "Upper/Case", "repositories"},
	} {
		if _, err := ctRun(t, "connected-registry", "create", "--name", c.name, "--repository", c.repo, "--yes"); !namesField(err, c.field) {
			t.Errorf("create %s %s: got %v, want an error naming %s", c.name, c.repo, err, c.field)
		}
	}
	if after := ctMustRun(t, "connected-registry", "list", "-o", "json"); after != before {
		t.Errorf("a refused command changed the connected registries:\nbefore %s\nafter %s", before, after)
	}
	if _, err := ctRun(t, "token", "show", "--name", "valid-name-sync-token"); err == nil {
		t.Error("a refused create left its sync token behind")
	}
}

// invalidField finds the fields that a validation error names: each
// problem reads "invalid: <field> ...", one per line when joined.
var invalidField = regexp.MustCompile(`(?m)invalid[^:\n]*: ([A-Za-z]+)\b`)

// namesField reports whether err is a validation error naming field as
// the field refused, not merely containing the word somewhere (a message
// about a missing parent or a name would contain "parent" or "name").
func namesField(err error, field string) bool {
	if err == nil {
		return false
	}
	for _, m := range invalidField.FindAllStringSubmatch(err.Error(), -1) {
		if m[1] == field {
			return true
		}
	}
	return false
}
