package cli_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/server"
)

// ctNode is a real server on 127.0.0.1 with HTTPS from its own CA.
type ctNode struct {
	addr, url, ca string
}

// ctStart runs a server whose admin password is ctAdminPW, with cfg
// edited by edit, until the test ends.
func ctStart(t *testing.T, edit func(*config.Config)) *ctNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cfg := config.Default()
	cfg.Data = data
	cfg.Addr = ln.Addr().String()
	cfg.LoginServer = cfg.Addr
	cfg.Sync.HeartbeatInterval = config.Duration(time.Second)
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler), "test", ctAdminPW)
	if err != nil {
		_ = ln.Close()
		t.Fatalf("start server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
		_ = srv.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			t.Errorf("server %s did not stop", cfg.Addr)
		}
	})
	return &ctNode{addr: cfg.Addr, url: "https://" + cfg.Addr, ca: filepath.Join(data, "pki", "ca.crt")}
}

// ctNoEnv clears the OUTPOST_* variables and gives the CLI an empty
// config directory, as on a new machine.
func ctNoEnv(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, v := range []string{"OUTPOST_SERVER", "OUTPOST_USERNAME", "OUTPOST_PASSWORD"} {
		t.Setenv(v, "")
	}
}

// The site reports this login server, as a chart deployment does with its
// service's cluster IP; images in the manifests are named with it.
const siteLoginServer = "10.96.0.50:443"

// TestStageFromManifestsAndCheckAtSite follows docs/operations.md with a
// root and a site that have different CAs: after outpost login to the root,
// stage create --from-manifests takes the images named with the site's
// login server (with and without :443), a --registry-alias host and bare
// names the root has; stage check --job … --server SITE -u … -p … --ca-file
// SITE-CA reads the job from the root and checks the site.
func TestStageFromManifestsAndCheckAtSite(t *testing.T) {
	ctNoEnv(t)
	root := ctStart(t, nil)
	ctMustRun(t, "login", root.url, "-u", auth.AdminUser, "-p", ctAdminPW, "--ca-file", root.ca)

	rc := ocitest.New(t, root.url, auth.AdminUser, ctAdminPW, root.ca)
	for i, repo := range []string{"release/web", "release/api", "release/base", "release/tools"} {
		rc.Image(t, repo, "4.2", v1.Platform{OS: "linux", Architecture: "amd64"}, ocitest.Random(uint64(60+i), 4096))
	}
	pw := strings.TrimSpace(ctMustRun(t, "token", "create", "--name", "site-puller", "--repository", "release/*", "content/read", "metadata/read",
		"--query", "credentials.passwords[0].value", "-o", "tsv"))
	ctMustRun(t, "connected-registry", "create", "--name", "factory1", "--repository", "apps/web", "--client-tokens", "site-puller", "--yes", "-o", "none")
	cs := strings.TrimSpace(ctMustRun(t, "connected-registry", "get-settings", "--name", "factory1", "--parent-protocol", "https",
		"--generate-password", "1", "--query", "ACR_REGISTRY_CONNECTION_STRING", "--output", "tsv", "--yes"))

	site := ctStart(t, func(c *config.Config) {
		c.ConnectionString = cs
		c.Parent.CAFile = root.ca
		c.LoginServer = siteLoginServer
	})
	ocitest.Eventually(t, 30*time.Second, "factory1 to activate", func() bool {
		out, _ := ctRun(t, "connected-registry", "show", "--name", "factory1", "--query", "loginServer", "-o", "tsv")
		return strings.TrimSpace(out) == siteLoginServer
	})

	manifests := filepath.Join(t.TempDir(), "release.yaml")
	err := os.WriteFile(manifests, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: `+siteLoginServer+`/release/api:4.2}]
      containers:
      - {name: web, image: `+siteLoginServer+`/release/web:4.2}
      - {name: again, image: 10.96.0.50/release/web:4.2}
      - {name: base, image: release/base:4.2}
      - {name: tools, image: registry.factory1.example/release/tools:4.2}
      - {name: sidecar, image: busybox:1.36}
      - {name: hub, image: docker.io/library/nginx:1.27}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := ctRunStderr(t, "stage", "create", "--name", "release-42", "--connected-registry", "factory1",
		"--from-manifests", manifests, "--registry-alias", "registry.factory1.example")
	if err != nil {
		t.Fatalf("stage create --from-manifests: %v\n%s", err, stderr)
	}
	var job protocol.StagingJob
	if err := json.Unmarshal([]byte(stdout), &job); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, im := range job.Images {
		refs = append(refs, im.Reference)
	}
	slices.Sort(refs)
	if want := []string{"release/api:4.2", "release/base:4.2", "release/tools:4.2", "release/web:4.2"}; !slices.Equal(refs, want) {
		t.Errorf("stage create --from-manifests: got images %v, want %v\nwarnings:\n%s", refs, want, stderr)
	}
	for _, skipped := range []string{"busybox:1.36", "docker.io/library/nginx:1.27"} {
		if !strings.Contains(stderr, "skipping "+skipped) {
			t.Errorf("stage create: no warning about %s in %q", skipped, stderr)
		}
	}
	ocitest.Eventually(t, 60*time.Second, "release-42 Staged at factory1", func() bool {
		out, _ := ctRun(t, "stage", "show", "--name", "release-42", "--query", "sites.factory1.state", "-o", "tsv")
		return strings.TrimSpace(out) == string(protocol.StageStaged)
	})

	// docs/operations.md: the job is read from the logged-in root, the
	// site is checked with its own credential and CA.
	out := ctMustRun(t, "stage", "check", "--job", "release-42", "--server", site.url, "-u", "site-puller", "-p", pw, "--ca-file", site.ca)
	if n := strings.Count(out, "ok       release/"); n != 4 {
		t.Errorf("stage check --job: got %d ok lines, want 4:\n%s", n, out)
	}
	out = ctMustRun(t, "stage", "check", "--from-manifests", manifests, "--registry-alias", "registry.factory1.example",
		"--server", site.url, "-u", "site-puller", "-p", pw, "--ca-file", site.ca)
	if n := strings.Count(out, "ok       release/"); n != 4 {
		t.Errorf("stage check --from-manifests: got %d ok lines, want 4:\n%s", n, out)
	}

	// Without a saved login the root is named by flags.
	ctNoEnv(t)
	out = ctMustRun(t, "stage", "check", "--job", "release-42", "--job-server", root.url, "--job-ca-file", root.ca,
		"--job-username", auth.AdminUser, "--job-password", ctAdminPW,
		"--server", site.url, "-u", "site-puller", "-p", pw, "--ca-file", site.ca)
	if n := strings.Count(out, "ok       release/"); n != 4 {
		t.Errorf("stage check --job-server …: got %d ok lines, want 4:\n%s", n, out)
	}
	// With neither, reading the job from the site fails and says what to give.
	_, err = ctRun(t, "stage", "check", "--job", "release-42", "--server", site.url, "-u", "site-puller", "-p", pw, "--ca-file", site.ca)
	if err == nil || !strings.Contains(err.Error(), "--job-server") {
		t.Errorf("stage check --job without a root: got %v, want an error naming --job-server", err)
	}
}
