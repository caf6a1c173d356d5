package cli_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// crJSON runs a connected-registry command and decodes its JSON answer.
func crJSON(t *testing.T, args ...string) protocol.ConnectedRegistry {
	t.Helper()
	var c protocol.ConnectedRegistry
	out := ctMustRun(t, args...)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return c
}

// TestListFlagsAsDocumented runs the commands of docs/operations.md and
// the az spellings: several values after one list flag, commas, repeated
// flags and the singular aliases all give the same lists.
func TestListFlagsAsDocumented(t *testing.T) {
	base := ctServer(t, nil)
	for _, tok := range []string{"line1-puller", "other-puller", "third-puller"} {
		ctMustRun(t, "token", "create", "--name", tok, "--scope-map", auth.ScopeMapPull, "-o", "none")
	}

	// docs/operations.md, Connected registries.
	f1 := crJSON(t, "connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "apps/web", "apps/api", "--yes")
	if want := []string{"apps/web", "apps/api"}; !slices.Equal(f1.Repositories, want) {
		t.Errorf("--repository apps/web apps/api: got %v, want %v", f1.Repositories, want)
	}
	f2 := crJSON(t, "connected-registry", "create", "--name", "factory2", "--repository", "apps/web", "apps/api",
		"--client-tokens", "line1-puller", "other-puller", "--notifications", "apps/*:*:push", "apps/web:*:delete", "--yes")
	if want := []string{"line1-puller", "other-puller"}; !slices.Equal(f2.ClientTokens, want) {
		t.Errorf("--client-tokens line1-puller other-puller: got %v, want %v", f2.ClientTokens, want)
	}
	if want := []string{"apps/*:*:push", "apps/web:*:delete"}; !slices.Equal(f2.Notifications, want) {
		t.Errorf("--notifications: got %v, want %v", f2.Notifications, want)
	}

	// docs/operations.md, Staging (the root has both images).
	rc := ocitest.New(t, base, auth.AdminUser, ctAdminPW, "")
	for _, repo := range []string{"apps/web", "apps/api"} {
		rc.Image(t, repo, "4.2", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(len(repo)), 1024))
	}
	var job protocol.StagingJob
	out := ctMustRun(t, "stage", "create", "--name", "release-42", "--connected-registry", "factory1", "factory2", "--image", "apps/web:4.2", "apps/api:4.2")
	if err := json.Unmarshal([]byte(out), &job); err != nil {
		t.Fatalf("stage create: %v\n%s", err, out)
	}
	if want := []string{"factory1", "factory2"}; !slices.Equal(job.Targets, want) {
		t.Errorf("stage create --connected-registry factory1 factory2: got %v, want %v", job.Targets, want)
	}
	var refs []string
	for _, im := range job.Images {
		refs = append(refs, im.Reference)
	}
	if want := []string{"apps/web:4.2", "apps/api:4.2"}; !slices.Equal(refs, want) {
		t.Errorf("stage create --image apps/web:4.2 apps/api:4.2: got %v, want %v", refs, want)
	}

	// az's singular spellings are aliases.
	f2 = crJSON(t, "connected-registry", "update", "--name", "factory2", "--remove-client-token", "other-puller", "--add-client-token", "third-puller")
	if want := []string{"line1-puller", "third-puller"}; !slices.Equal(f2.ClientTokens, want) {
		t.Errorf("--remove-client-token / --add-client-token: got %v, want %v", f2.ClientTokens, want)
	}

	// permissions update --add/--remove take lists too.
	ctMustRun(t, "connected-registry", "permissions", "update", "--name", "factory1", "--add", "line/tools", "line/base", "--remove", "apps/api", "-o", "none")
	if got, want := crJSON(t, "connected-registry", "show", "--name", "factory1").Repositories, []string{"apps/web", "line/tools", "line/base"}; !slices.Equal(got, want) {
		t.Errorf("permissions update --add line/tools line/base --remove apps/api: got %v, want %v", got, want)
	}
}

// TestListFlagSpellings: every spelling of a list gives the same values,
// and the flags around a list are still parsed.
func TestListFlagSpellings(t *testing.T) {
	ctServer(t, nil)
	want := []string{"apps/web", "apps/api", "line/tools"}
	for i, spelling := range [][]string{
		{"--repository", "apps/web", "apps/api", "line/tools"},
		{"--repository", "apps/web", "--repository", "apps/api", "--repository", "line/tools"},
		{"--repository", "apps/web,apps/api,line/tools"},
		{"--repository", "apps/web,", "apps/api", "line/tools"},
		{"--repository=apps/web", "apps/api", "--repository", "line/tools"},
		{"--repository", "apps/web apps/api", "line/tools"},
	} {
		name := "spelling-" + string(rune('a'+i))
		args := append([]string{"connected-registry", "create", "--name", name}, spelling...)
		args = append(args, "--sync-window", "PT2H", "--yes")
		c := crJSON(t, args...)
		if !slices.Equal(c.Repositories, want) || c.SyncWindow != "PT2H" {
			t.Errorf("%s: got repositories %v and window %q, want %v and PT2H", strings.Join(spelling, " "), c.Repositories, c.SyncWindow, want)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"list flag without a value", []string{"connected-registry", "create", "--name", "no-value", "--repository", "--yes"}, "--repository"},
		{"empty inline value", []string{"connected-registry", "create", "--name", "no-value", "--repository=", "--yes"}, "--repository"},
		{"a word after a plain flag", []string{"connected-registry", "show", "--name", "spelling-a", "extra"}, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ctRun(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("outpost %s: got %v (output %q), want an error naming %s", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
	if _, err := ctRun(t, "connected-registry", "show", "--name", "no-value"); err == nil {
		t.Error("a refused create left no-value behind")
	}
}
