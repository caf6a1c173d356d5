package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestInstallDefaultPortAlias: with HTTPS's default port, images may name
// the registry with or without ":443", and containerd and docker look for
// the directory named exactly as the image does, so install writes both,
// each one complete, and uninstall removes both.
func TestInstallDefaultPortAlias(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ host, alias string }{
		{"10.96.0.50:443", "10.96.0.50"},
		{"10.96.0.50", "10.96.0.50:443"},
		{"registry.example.com:443", "registry.example.com"},
		{"[fd00::5]:443", "[fd00::5]"},
		{"[fd00::5]", "[fd00::5]:443"},
	} {
		t.Run(c.host, func(t *testing.T) {
			t.Parallel()
			root := newNode(t)
			before := tree(t, root)
			ca := newTestCA(t, "Test CA")
			o := installOptions(t, root, ca.pem)
			o.Host = c.host
			mustInstall(t, o)
			got := tree(t, root)
			for _, h := range []string{c.host, c.alias} {
				for _, p := range []string{"etc/containerd/certs.d/" + h + "/ca.crt", "etc/docker/certs.d/" + h + "/ca.crt"} {
					if got[p] != string(ca.pem) {
						t.Errorf("%s is not the CA file", p)
					}
				}
				p := "etc/containerd/certs.d/" + h + "/hosts.toml"
				var doc hostsDoc
				if err := toml.Unmarshal([]byte(got[p]), &doc); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				e, ok := doc.Host["https://"+h]
				if doc.Server != "https://"+h || !ok || e.CA != "ca.crt" || !slices.Equal(e.Capabilities, []string{"pull", "resolve"}) {
					t.Errorf("%s: server %q, hosts %+v; want server and host https://%s with ca ca.crt", p, doc.Server, doc.Host, h)
				}
			}
			if res := mustInstall(t, o); res.Changed() {
				t.Errorf("second install changed %+v", res.Changes)
			}
			if _, err := Uninstall(o); err != nil {
				t.Fatal(err)
			}
			if d := diffTrees(tree(t, root), before); d != "" {
				t.Errorf("after uninstall:\n%s", d)
			}
		})
	}
	// Any other port has one spelling only.
	root := newNode(t)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem)
	o.Host = "10.96.0.50:5000"
	mustInstall(t, o)
	entries, err := os.ReadDir(filepath.Join(root, "etc/containerd/certs.d"))
	if err != nil || len(entries) != 1 {
		t.Errorf("port 5000: certs.d holds %v (%v), want only 10.96.0.50:5000", entries, err)
	}
}

// TestInstallAliasLeavesOthersFiles: the alias directory never replaces
// files outpost did not write, nor takes over another install's
// directory; the host's own directory is still installed.
func TestInstallAliasLeavesOthersFiles(t *testing.T) {
	t.Parallel()
	const host, alias = "10.96.0.50:443", "10.96.0.50"
	t.Run("foreign files", func(t *testing.T) {
		t.Parallel()
		root := newNode(t)
		foreign := filepath.Join(root, "etc/containerd/certs.d", alias, "hosts.toml")
		writeFile(t, foreign, []byte("# the operator's\nserver = \"https://10.96.0.50\"\n"))
		dockerForeign := filepath.Join(root, "etc/docker/certs.d", alias, "ca.crt")
		writeFile(t, dockerForeign, newTestCA(t, "Operator CA").pem)
		before := tree(t, root)
		o := installOptions(t, root, newTestCA(t, "Test CA").pem)
		o.Host = host
		res := mustInstall(t, o)
		after := tree(t, root)
		for _, p := range []string{foreign, dockerForeign} {
			rel, _ := filepath.Rel(root, p)
			if after[rel] != before[rel] {
				t.Errorf("%s was replaced", rel)
			}
			if !hasChange(res, Skipped, filepath.Dir(p), "not written by outpost") {
				t.Errorf("no skipped change for %s in %+v", filepath.Dir(p), res.Changes)
			}
		}
		if _, ok := after["etc/containerd/certs.d/"+alias+"/ca.crt"]; ok {
			t.Error("ca.crt written into the operator's directory")
		}
		if _, ok := after["etc/containerd/certs.d/"+host+"/hosts.toml"]; !ok {
			t.Error("the host's own directory was not installed")
		}
		if _, err := Uninstall(o); err != nil {
			t.Fatal(err)
		}
		if d := diffTrees(tree(t, root), before); d != "" {
			t.Errorf("after uninstall:\n%s", d)
		}
		// --force replaces them, keeping the originals for uninstall.
		o.Force = true
		mustInstall(t, o)
		if b, _ := os.ReadFile(foreign + backupSuffix); string(b) != before["etc/containerd/certs.d/"+alias+"/hosts.toml"] {
			t.Errorf("--force: backup holds %q", b)
		}
		if _, err := Uninstall(o); err != nil {
			t.Fatal(err)
		}
		if d := diffTrees(tree(t, root), before); d != "" {
			t.Errorf("after --force and uninstall:\n%s", d)
		}
	})
	t.Run("another install", func(t *testing.T) {
		t.Parallel()
		root := newNode(t)
		// An earlier install for the bare name, with another CA, that
		// owns only its own directory.
		other := installOptions(t, root, newTestCA(t, "Other CA").pem)
		other.Host = alias
		mustInstall(t, other)
		if err := os.RemoveAll(filepath.Join(root, "etc/containerd/certs.d", host)); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(root, "etc/docker/certs.d", host)); err != nil {
			t.Fatal(err)
		}
		before := tree(t, root)
		o := installOptions(t, root, newTestCA(t, "Test CA").pem)
		o.Host = host
		o.Force = true // not even --force takes over another install's files
		res := mustInstall(t, o)
		if !hasChange(res, Skipped, filepath.Join(root, "etc/containerd/certs.d", alias), "written by outpost for "+alias) {
			t.Errorf("no skipped change for the other install's directory in %+v", res.Changes)
		}
		after := tree(t, root)
		for p, v := range before {
			if strings.Contains(p, "/"+alias+"/") && after[p] != v {
				t.Errorf("%s changed", p)
			}
		}
		if _, err := Uninstall(o); err != nil {
			t.Fatal(err)
		}
		if d := diffTrees(tree(t, root), before); d != "" {
			t.Errorf("after uninstall:\n%s", d)
		}
	})
}

func hasChange(res Result, a Action, path, note string) bool {
	for _, c := range res.Changes {
		if c.Action == a && c.Path == path && strings.Contains(c.Note, note) {
			return true
		}
	}
	return false
}
