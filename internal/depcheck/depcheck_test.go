package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/outpost-registry/outpost/"

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath string
	Deps       []string // every package imported, directly or not
}

// listInternal runs `go list -deps`-style listing for every package under
// internal/ and returns each with its transitive dependencies.
func listInternal(t *testing.T) map[string]pkg {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	cmd := exec.Command(gobin, "list", "-json=ImportPath,Deps", module+"internal/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	if _, ok := pkgs["internal/oci"]; !ok {
		t.Fatalf("go list did not report internal/oci; got %d packages", len(pkgs))
	}
	return pkgs
}

// rule forbids packages matching from to depend on packages matching any
// of deny. A pattern ending in "/..." matches the package and those below.
// Patterns starting with "internal/" name this module's packages; others
// name standard-library or third-party packages.
type rule struct {
	from string
	deny []string
	why  string
}

var rules = []rule{
	{"internal/oci", []string{"internal/..."}, "oci holds the leaf types; every other package builds on it"},
	{"internal/oci", []string{"net", "net/http", "os/exec"}, "oci performs no I/O"},
	{"internal/storage/...", []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/syncer/...", "internal/edge/...", "internal/controlplane/...", "internal/auth/...", "internal/cli/..."}, "storage is below every API and the sync engine"},
	{"internal/syncer/...", []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/edge/...", "internal/cli/..."}, "the sync engine is a client; it never imports the HTTP server side"},
	{"internal/graph", []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/syncer/...", "internal/edge/...", "internal/controlplane/...", "internal/client/...", "internal/cli/...", "internal/auth/..."}, "the graph copy is below every end it connects"},
	{"internal/graph", []string{"net", "net/http"}, "the graph copy reaches the network only through a Source or Target"},
	{"internal/bundle", []string{"internal/server/...", "internal/cli/...", "internal/client/...", "internal/edge/...", "internal/syncer/...", "internal/controlplane/...", "internal/registryapi/..."}, "bundles are a format and a copy over the store; the server wires them, the client carries them"},
	{"internal/registryapi/...", []string{"internal/server/...", "internal/syncer/...", "internal/edge/...", "internal/cli/..."}, "the /v2/ surface is assembled by server, not the other way round"},
	{"internal/config/...", []string{"internal/..."}, "config is plain typed data"},
	{"internal/kube/...", []string{"internal/..."}, "kube only reads YAML"},
}

func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func TestImportRules(t *testing.T) {
	pkgs := listInternal(t)
	for _, r := range rules {
		matched := 0
		for name, p := range pkgs {
			if !match(r.from, name) || strings.HasSuffix(name, "test") {
				continue
			}
			matched++
			for _, dep := range p.Deps {
				dep, ours := strings.CutPrefix(dep, module)
				if dep == name {
					continue
				}
				if slices.ContainsFunc(r.deny, func(d string) bool {
					return ours == strings.HasPrefix(d, "internal/") && match(d, dep)
				}) {
					t.Errorf("%s imports %s: %s", name, dep, r.why)
				}
			}
		}
		if matched == 0 {
			t.Errorf("rule for %s matches no package", r.from)
		}
	}
}

// TestRulesCanFail checks the matcher on a dependency that a rule forbids.
func TestRulesCanFail(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"internal/...", "internal/oci", true},
		{"internal/storage/...", "internal/storage", true},
		{"internal/storage/...", "internal/storage/bolt", true},
		{"internal/storage/...", "internal/storagex", false},
		{"net/http", "net/http/httptest", false},
		{"net", "net", true},
	} {
		if got := match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("match(%q, %q): got %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
