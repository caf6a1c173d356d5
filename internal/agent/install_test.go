package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

const testHost = "registry.local:5000"

// installOptions are the options of a node at root with a CA file.
func installOptions(t *testing.T, root string, ca []byte, mirrors ...string) Options {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, caFile, ca)
	return Options{
		Host: testHost, CAFile: caFile, Root: root,
		ContainerdCertsDir: DefaultContainerdCertsDir, DockerCertsDir: DefaultDockerCertsDir,
		MirrorOf: mirrors,
	}
}

func mustInstall(t *testing.T, o Options) Result {
	t.Helper()
	res, err := Install(o)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	return res
}

func TestInstallWritesExpectedFiles(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	ca := newTestCA(t, "Test CA")
	mustInstall(t, installOptions(t, root, ca.pem, "registry.example.com", "docker.io"))
	got := tree(t, root)
	var names []string
	for k := range got {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{
		"etc/", "etc/containerd/", "etc/containerd/certs.d/",
		"etc/containerd/certs.d/docker.io/",
		"etc/containerd/certs.d/docker.io/.outpost-trust",
		"etc/containerd/certs.d/docker.io/hosts.toml",
		"etc/containerd/certs.d/registry.example.com/",
		"etc/containerd/certs.d/registry.example.com/.outpost-trust",
		"etc/containerd/certs.d/registry.example.com/hosts.toml",
		"etc/containerd/certs.d/registry.local:5000/",
		"etc/containerd/certs.d/registry.local:5000/.outpost-trust",
		"etc/containerd/certs.d/registry.local:5000/ca.crt",
		"etc/containerd/certs.d/registry.local:5000/hosts.toml",
		"etc/docker/", "etc/docker/certs.d/",
		"etc/docker/certs.d/registry.local:5000/",
		"etc/docker/certs.d/registry.local:5000/.outpost-trust",
		"etc/docker/certs.d/registry.local:5000/ca.crt",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("files:\ngot  %q\nwant %q", names, want)
	}
	for _, p := range []string{"etc/containerd/certs.d/registry.local:5000/ca.crt", "etc/docker/certs.d/registry.local:5000/ca.crt"} {
		if got[p] != string(ca.pem) {
			t.Errorf("%s is not the CA file", p)
		}
	}
	for name, p := range map[string]string{
		"hosts-own.toml":           "etc/containerd/certs.d/registry.local:5000/hosts.toml",
		"hosts-mirror.toml":        "etc/containerd/certs.d/registry.example.com/hosts.toml",
		"hosts-mirror-docker.toml": "etc/containerd/certs.d/docker.io/hosts.toml",
	} {
		golden(t, name, []byte(got[p]))
		// Every file is TOML with the [host."https://…"] table that
		// containerd 1.6 requires.
		var doc hostsDoc
		if err := toml.Unmarshal([]byte(got[p]), &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		e, ok := doc.Host["https://"+testHost]
		// The ca path is relative to the host directory and names the
		// installed ca.crt.
		ca, _ := e.CA.(string)
		if !ok || !slices.Equal(e.Capabilities, []string{"pull", "resolve"}) ||
			filepath.Join(filepath.Dir(p), ca) != filepath.Join("etc/containerd/certs.d", testHost, "ca.crt") {
			t.Errorf("%s: host table %+v", p, doc.Host)
		}
	}
}

func TestInstallIsIdempotent(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem, "registry.example.com")
	mustInstall(t, o)
	before := tree(t, root)
	mtimes := map[string]time.Time{}
	for p := range before {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		mtimes[p] = fi.ModTime()
	}
	time.Sleep(20 * time.Millisecond)
	res := mustInstall(t, o)
	if res.Changed() {
		t.Errorf("second install changed %+v", res.Changes)
	}
	if d := diffTrees(tree(t, root), before); d != "" {
		t.Errorf("second install:\n%s", d)
	}
	for p, m := range mtimes {
		if fi, _ := os.Stat(filepath.Join(root, p)); !fi.ModTime().Equal(m) && !strings.HasSuffix(p, "/") {
			t.Errorf("%s: mtime changed", p)
		}
	}
}

func TestUninstallRemovesOnlyItsFiles(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	// Files of the operator's, in and beside the directories outpost uses.
	writeFile(t, filepath.Join(root, "etc/containerd/certs.d/other.example:443/hosts.toml"), []byte("server = \"https://other\"\n"))
	writeFile(t, filepath.Join(root, "etc/docker/certs.d/registry.local:5000/client.cert"), []byte("client"))
	writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte("version = 2\n"))
	before := tree(t, root)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem, "registry.example.com")
	mustInstall(t, o)
	// uninstall finds the mirror in the marker even without --mirror-of.
	o.MirrorOf = nil
	res, err := Uninstall(o)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(tree(t, root), before); d != "" {
		t.Errorf("after uninstall:\n%s\nresult %+v", d, res.Changes)
	}
	// A second uninstall has nothing to do.
	res, err = Uninstall(o)
	if err != nil || res.Changed() {
		t.Errorf("second uninstall: %+v, %v", res.Changes, err)
	}
}

func TestInstallRefusesForeignHostsTOML(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	foreign := []byte("# mine\nserver = \"https://registry.example.com\"\n[host.\"https://cache.internal\"]\n  capabilities = [\"pull\"]\n")
	foreignPath := filepath.Join(root, "etc/containerd/certs.d/registry.example.com/hosts.toml")
	writeFile(t, foreignPath, foreign)
	before := tree(t, root)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem, "registry.example.com")
	_, err := Install(o)
	if !errors.Is(err, ErrForeignFile) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), foreignPath) {
		t.Fatalf("got %v, want ErrForeignFile naming the file and --force", err)
	}
	if d := diffTrees(tree(t, root), before); d != "" {
		t.Fatalf("a refused install wrote:\n%s", d)
	}
	// With --force the original is kept aside and uninstall restores it.
	o.Force = true
	mustInstall(t, o)
	if b, _ := os.ReadFile(foreignPath + backupSuffix); string(b) != string(foreign) {
		t.Fatalf("backup holds %q", b)
	}
	if b, _ := os.ReadFile(foreignPath); string(b) == string(foreign) {
		t.Fatal("--force did not replace the file")
	}
	o.Force = false
	mustInstall(t, o) // now ours: no refusal
	if _, err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(tree(t, root), before); d != "" {
		t.Errorf("after uninstall:\n%s", d)
	}
}

func TestUninstallKeepsChangedFiles(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem)
	mustInstall(t, o)
	hosts := filepath.Join(root, "etc/containerd/certs.d", testHost, "hosts.toml")
	writeFile(t, hosts, []byte("# edited by hand\n"))
	if _, err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(hosts); err != nil || string(b) != "# edited by hand\n" {
		t.Errorf("edited hosts.toml: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d", testHost, "ca.crt")); err == nil {
		t.Error("ca.crt was not removed")
	}
}

func TestInstallDropsStaleMirrors(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	o := installOptions(t, root, newTestCA(t, "Test CA").pem, "a.example", "b.example")
	mustInstall(t, o)
	o.MirrorOf = []string{"b.example"}
	mustInstall(t, o)
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d/a.example")); err == nil {
		t.Error("the mirror dropped from --mirror-of is still there")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d/b.example/hosts.toml")); err != nil {
		t.Errorf("mirror b: %v", err)
	}
}

func TestInstallCARotation(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	before := tree(t, root)
	o := installOptions(t, root, newTestCA(t, "Old CA").pem)
	mustInstall(t, o)
	next := newTestCA(t, "New CA")
	writeFile(t, o.CAFile, next.pem)
	res := mustInstall(t, o)
	if !res.Changed() {
		t.Fatal("a new CA changed nothing")
	}
	for _, d := range []string{"etc/containerd/certs.d", "etc/docker/certs.d"} {
		if b, _ := os.ReadFile(filepath.Join(root, d, testHost, "ca.crt")); string(b) != string(next.pem) {
			t.Errorf("%s: old CA", d)
		}
	}
	if _, err := Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(tree(t, root), before); d != "" {
		t.Errorf("after uninstall:\n%s", d)
	}
}

func TestInstallSkipsMissingRuntime(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	o := installOptions(t, root, newTestCA(t, "Test CA").pem)
	if _, err := Install(o); !errors.Is(err, ErrNothingToDo) {
		t.Fatalf("no runtime: got %v, want ErrNothingToDo", err)
	}
	writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte("version = 2\n"))
	res := mustInstall(t, o)
	if res.Changes[0].Action != Skipped || !strings.Contains(res.Changes[0].Note, "docker") {
		t.Errorf("got %+v, want docker skipped first", res.Changes)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/docker")); err == nil {
		t.Error("install created /etc/docker")
	}
}

func TestInstallRejectsBadOptions(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	good := installOptions(t, root, newTestCA(t, "Test CA").pem)
	for name, tc := range map[string]struct {
		edit func(*Options)
		want error
	}{
		"scheme":        {func(o *Options) { o.Host = "https://r:5000" }, ErrInvalidOptions},
		"path":          {func(o *Options) { o.Host = "r:5000/x" }, ErrInvalidOptions},
		"dotdot":        {func(o *Options) { o.Host = ".." }, ErrInvalidOptions},
		"port":          {func(o *Options) { o.Host = "r:99999" }, ErrInvalidOptions},
		"mirror self":   {func(o *Options) { o.MirrorOf = []string{testHost} }, ErrInvalidOptions},
		"mirror path":   {func(o *Options) { o.MirrorOf = []string{"../etc"} }, ErrInvalidOptions},
		"relative root": {func(o *Options) { o.ContainerdCertsDir = "certs.d" }, ErrInvalidOptions},
		"no CA":         {func(o *Options) { o.CAFile = "" }, ErrInvalidOptions},
		"not PEM": {func(o *Options) {
			o.CAFile = filepath.Join(t.TempDir(), "x")
			writeFile(t, o.CAFile, []byte("hello"))
		}, ErrBadCA},
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if _, err := Install(o); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d")); err == nil {
		t.Error("a rejected install wrote files")
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	root := newNode(t)
	o := installOptions(t, root, newTestCA(t, "Old CA").pem)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- Watch(ctx, o, WatchOptions{Interval: 10 * time.Millisecond, UninstallOnExit: true}, log)
	}()
	caPath := filepath.Join(root, "etc/containerd/certs.d", testHost, "ca.crt")
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s", what)
	}
	waitFor("install", func() bool { _, err := os.Stat(caPath); return err == nil })
	next := newTestCA(t, "New CA")
	writeFile(t, o.CAFile, next.pem)
	waitFor("the new CA", func() bool { b, _ := os.ReadFile(caPath); return string(b) == string(next.pem) })
	if err := os.Remove(caPath); err != nil {
		t.Fatal(err)
	}
	waitFor("the deleted file to come back", func() bool { _, err := os.Stat(caPath); return err == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(caPath)); err == nil {
		t.Error("--uninstall-on-exit left the host directory")
	}
}
