package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// outpostCLI runs a client command of the outpost binary.
func outpostCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("OUTPOST_BIN"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("outpost %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// eventually polls cond for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// TestConnectedRegistry: the CLI declares a connected registry at a root;
// an edge started with its connection string syncs a multi-platform image;
// crane and containerd pull it from the edge with a client token; a
// signature attached with oras, a moved tag and a deleted tag at the root
// reach the edge; the root lists the edge Online.
func TestConnectedRegistry(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	env := clientEnv(t, root)
	craneLogin(t, env, root, "admin", adminPassword)
	digest := testImage(t, env, root, "apps/web")

	cli := append(clientEnv(t, root), "OUTPOST_PASSWORD=")
	outpostCLI(t, cli, "login", root.host, "-u", "admin", "-p", adminPassword, "--ca-file", root.ca)
	var pw string
	pwOut := outpostCLI(t, cli, "token", "create", "--name", "site-puller", "--repository", "apps/web", "content/read", "metadata/read", "--query", "credentials.passwords[0].value", "-o", "tsv")
	pw = strings.TrimSpace(pwOut)
	outpostCLI(t, cli, "connected-registry", "create", "--name", "factory", "--repository", "apps/web", "--client-tokens", "site-puller", "--yes", "-o", "none")
	cs := strings.TrimSpace(outpostCLI(t, cli, "connected-registry", "get-settings", "--name", "factory", "--parent-protocol", "https",
		"--generate-password", "1", "--yes", "--query", "connectionString", "-o", "tsv"))
	csFile := filepath.Join(t.TempDir(), "cs")
	if err := os.WriteFile(csFile, []byte(cs), 0o600); err != nil {
		t.Fatal(err)
	}
	edge := startOutpost(t, "--connection-string-file", csFile, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s")

	eenv := clientEnv(t, edge)
	craneLogin(t, eenv, edge, "site-puller", pw)
	eventually(t, 30*time.Second, "the image at the edge", func() bool {
		out, err := run(t, eenv, true, "crane", "digest", edge.host+"/apps/web:multi")
		return err == nil && strings.TrimSpace(out) == digest
	})
	c := startContainerd(t)
	c.trustHost(t, edge)
	c.pull(t, edge.host+"/apps/web:multi", "site-puller:"+pw)

	// At the root: attach a signature with oras, move a tag and delete
	// one; the edge follows.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sig.txt"), []byte("signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oenv := append(env, "E2E_DIR="+dir)
	run(t, oenv, false, "oras", "attach", root.host+"/apps/web:multi", "--artifact-type", "application/vnd.example.signature",
		"sig.txt:text/plain", "--ca-file", root.ca, "-u", "admin", "-p", adminPassword)
	arm, _ := run(t, env, false, "crane", "digest", root.host+"/apps/web:arm64")
	run(t, env, false, "crane", "tag", root.host+"/apps/web:arm64", "base")
	run(t, env, false, "crane", "delete", root.host+"/apps/web:amd64")
	eventually(t, 30*time.Second, "the signature, the moved tag and the deleted tag at the edge", func() bool {
		found, err := run(t, eenv, true, "oras", "discover", edge.host+"/apps/web:multi", "--format", "json",
			"--ca-file", edge.ca, "-u", "site-puller", "-p", pw)
		if err != nil || !strings.Contains(found, "application/vnd.example.signature") {
			return false
		}
		base, err := run(t, eenv, true, "crane", "digest", edge.host+"/apps/web:base")
		if err != nil || strings.TrimSpace(base) != strings.TrimSpace(arm) {
			return false
		}
		_, err = run(t, eenv, true, "crane", "digest", edge.host+"/apps/web:amd64")
		return err != nil
	})

	eventually(t, 20*time.Second, "factory Online at the root", func() bool {
		list := outpostCLI(t, cli, "connected-registry", "list", "-o", "table")
		return strings.Contains(list, "factory") && strings.Contains(list, "Online") && strings.Contains(list, edge.host)
	})
	status := outpostCLI(t, append(clientEnv(t, edge), "OUTPOST_SERVER=https://"+edge.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword),
		"status", "--ca-file", edge.ca, "-o", "json")
	must(t, strings.Contains(status, `"connectionState"`) && strings.Contains(status, "factory"), "outpost status: %s", status)
}

// TestGenericParentCrane: an edge syncs from crane's toy registry (plain
// HTTP, anonymous), a registry that is not an Outpost.
func TestGenericParentCrane(t *testing.T) {
	t.Parallel()
	requireE2E(t)
	parent := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, tool(t, "crane"), "registry", "serve", "--address", parent)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	penv := []string{"HOME=" + t.TempDir()}
	pr := &registry{host: parent}
	eventually(t, 10*time.Second, "crane registry", func() bool {
		_, err := run(t, penv, true, "crane", "catalog", parent, "--insecure")
		return err == nil
	})
	digest := testImage(t, penv, pr, "mirror/app")
	edge := startOutpost(t, "--parent", "http://"+parent, "--repository", "mirror/app", "--mode", "ReadOnly")
	eenv := clientEnv(t, edge)
	craneLogin(t, eenv, edge, "admin", adminPassword)
	eventually(t, 30*time.Second, "the image mirrored from crane", func() bool {
		out, err := run(t, eenv, true, "crane", "digest", edge.host+"/mirror/app:multi")
		return err == nil && strings.TrimSpace(out) == digest
	})
}

// TestGenericParentBasic: an edge syncs from a registry that needs Basic
// credentials (an Outpost used as a plain OCI registry).
func TestGenericParentBasic(t *testing.T) {
	t.Parallel()
	parent := startOutpost(t)
	env := clientEnv(t, parent)
	craneLogin(t, env, parent, "admin", adminPassword)
	digest := testImage(t, env, parent, "vendor/app")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(adminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	edge := startOutpost(t, "--parent", "https://"+parent.host, "--parent-username", "admin", "--parent-password-file", pwFile,
		"--parent-ca-file", parent.ca, "--repository", "vendor/*")
	eenv := clientEnv(t, edge)
	craneLogin(t, eenv, edge, "admin", adminPassword)
	eventually(t, 30*time.Second, "the image mirrored with Basic auth", func() bool {
		out, err := run(t, eenv, true, "crane", "digest", edge.host+"/vendor/app:multi")
		return err == nil && strings.TrimSpace(out) == digest
	})
}
