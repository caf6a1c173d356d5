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
	Imports    []string // the packages imported directly
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
	cmd := exec.Command(gobin, "list", "-json=ImportPath,Imports,Deps", module+"internal/...")
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

// rule forbids packages matching from (except those matching except) to
// depend on packages matching any of deny, unless they match allow. With
// direct, only direct imports count. A pattern ending in "/..." matches
// the package and those below. Patterns starting with "internal/" name
// this module's packages; others name standard-library or third-party
// packages.
type rule struct {
	from   string
	deny   []string
	why    string
	except []string
	allow  []string
	direct bool
}

var rules = []rule{
	{from: "internal/oci", deny: []string{"internal/..."}, why: "oci holds the leaf types; every other package builds on it"},
	{from: "internal/oci", deny: []string{"net", "net/http", "os/exec"}, why: "oci performs no I/O"},
	{from: "internal/storage/...", deny: []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/syncer/...", "internal/edge/...", "internal/controlplane/...", "internal/auth/...", "internal/cli/..."}, why: "storage is below every API and the sync engine"},
	{from: "internal/syncer/...", deny: []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/edge/...", "internal/cli/..."}, why: "the sync engine is a client; it never imports the HTTP server side"},
	{from: "internal/graph", deny: []string{"internal/registryapi/...", "internal/server/...", "internal/adminapi/...", "internal/syncer/...", "internal/edge/...", "internal/controlplane/...", "internal/client/...", "internal/cli/...", "internal/auth/..."}, why: "the graph copy is below every end it connects"},
	{from: "internal/graph", deny: []string{"net", "net/http"}, why: "the graph copy reaches the network only through a Source or Target"},
	{from: "internal/bundle", deny: []string{"internal/server/...", "internal/adminapi/...", "internal/cli/...", "internal/client/...", "internal/edge/...", "internal/syncer/...", "internal/registryapi/..."}, why: "bundles are a format and a copy over the store; adminapi serves them, server wires them, the client carries them"},
	{from: "internal/registryapi/...", deny: []string{"internal/server/...", "internal/syncer/...", "internal/edge/...", "internal/cli/..."}, why: "the /v2/ surface is assembled by server, not the other way round"},
	{from: "internal/config/...", deny: []string{"internal/..."}, why: "config is plain typed data"},
	{from: "internal/ui", deny: []string{"internal/server/...", "internal/adminapi/...", "internal/cli/...", "internal/client/...", "internal/registryapi/...", "internal/syncer/...", "internal/edge/..."}, why: "the dashboard calls the control plane, catalog and auth in process, never the server's HTTP API"},
	{from: "internal/kube/...", deny: []string{"internal/..."}, why: "kube only reads YAML"},
	{from: "internal/identity", deny: []string{"internal/..."}, allow: []string{"internal/oci"}, why: "identity is the plain data of tokens and scope maps, which the protocol carries"},
	{from: "internal/identity", deny: []string{"net", "net/http"}, why: "identity performs no I/O"},
	{from: "internal/protocol", deny: []string{"internal/..."}, allow: []string{"internal/oci", "internal/identity", "internal/storage"}, why: "protocol holds the edge↔parent wire types, a leaf that both ends import"},
	{from: "internal/protocol", deny: []string{"net", "net/http"}, why: "protocol is plain data; the clients and servers of its routes do the I/O"},
	{from: "internal/...", except: []string{"internal/server", "internal/adminapi", "internal/controlplane", "internal/ui", "internal/ui/uitest"}, deny: []string{"internal/controlplane"}, direct: true,
		why: "controlplane is the parent's fleet service, wired by server and served by adminapi and the dashboard; the wire types are protocol's"},
	{from: "internal/controlplane", deny: []string{"internal/adminapi/...", "internal/server/...", "internal/edge/...", "internal/syncer/...", "internal/cli/..."}, why: "controlplane is below the management API that serves it"},
	{from: "internal/...", except: []string{"internal/server", "internal/adminapi"}, deny: []string{"internal/adminapi"}, direct: true,
		why: "the management API is assembled by server; the bodies it takes and answers are auth's and protocol's"},
	{from: "internal/catalog", deny: []string{"internal/adminapi/...", "internal/server/..."}, why: "the management API's routes live in adminapi, which serves the catalog"},
	{from: "internal/importer", deny: []string{"internal/adminapi/...", "internal/server/..."}, why: "the management API's routes live in adminapi, which serves the importer"},
	{from: "internal/auth", deny: []string{"internal/controlplane/...", "internal/adminapi/...", "internal/protocol"}, why: "auth knows no other package's records or routes"},
	{from: "internal/bench/...", deny: []string{"internal/cli/...", "internal/server/..."}, why: "the load tool measures the outpost binary from outside; its main hands it the command line to profile"},
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
			if !match(r.from, name) || strings.HasSuffix(name, "test") || slices.ContainsFunc(r.except, func(e string) bool { return match(e, name) }) {
				continue
			}
			matched++
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, dep := range deps {
				dep, ours := strings.CutPrefix(dep, module)
				if dep == name {
					continue
				}
				hit := func(d string) bool { return ours == strings.HasPrefix(d, "internal/") && match(d, dep) }
				if slices.ContainsFunc(r.deny, hit) && !slices.ContainsFunc(r.allow, hit) {
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
