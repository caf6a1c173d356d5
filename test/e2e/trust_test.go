package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trustCLI runs the built binary with args and returns its combined
// output; a non-zero exit fails the test unless allowFail.
func trustCLI(t *testing.T, allowFail bool, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(os.Getenv("OUTPOST_BIN"), args...).CombinedOutput()
	if err != nil && !allowFail {
		t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), err
}

// ctrPull pulls ref through the hosts directory and returns the output
// and error, without failing the test.
func (c *containerd) ctrPull(t *testing.T, ref, user string) (string, error) {
	t.Helper()
	return run(t, nil, true, "ctr", append(c.address, "images", "pull", "--hosts-dir", c.certsD, "--user", user, ref)...)
}

// TestTrust: containerd cannot pull from Outpost over HTTPS until `outpost
// trust install` writes hosts.toml and ca.crt, and cannot after `outpost
// trust uninstall`; --mirror-of makes an upstream image name come from
// Outpost; `outpost trust doctor` passes on that node.
func TestTrust(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	testImage(t, env, r, "app")
	run(t, env, false, "crane", "tag", r.host+"/app:multi", "1")
	user := "trust-puller:" + r.token(t, "trust-puller", "_repositories_pull")
	c := startContainerd(t)
	ref := r.host + "/app:1"

	if out, err := c.ctrPull(t, ref, user); err == nil {
		t.Fatalf("pull without trust succeeded:\n%s", out)
	}

	dockerDir := filepath.Join(t.TempDir(), "docker")
	if err := os.MkdirAll(dockerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	node := []string{"--host", r.host, "--containerd-certs-dir", c.certsD, "--docker-certs-dir", filepath.Join(dockerDir, "certs.d")}
	out, _ := trustCLI(t, false, append([]string{"trust", "install", "--ca-file", r.ca}, node...)...)
	must(t, strings.Contains(out, "wrote") && strings.Contains(out, "hosts.toml"), "install output:\n%s", out)
	ca, _ := os.ReadFile(r.ca)
	docker, _ := os.ReadFile(filepath.Join(dockerDir, "certs.d", r.host, "ca.crt"))
	must(t, bytes.Equal(ca, docker), "docker's ca.crt is not the Outpost CA")
	if out, err := c.ctrPull(t, ref, user); err != nil {
		t.Fatalf("pull after trust install: %v\n%s", err, out)
	}
	out, _ = trustCLI(t, false, append([]string{"trust", "install", "--ca-file", r.ca}, node...)...)
	must(t, !strings.Contains(out, "wrote"), "a second install wrote files:\n%s", out)

	trustCLI(t, false, append([]string{"trust", "uninstall"}, node...)...)
	out, err := c.ctrPull(t, ref, user)
	must(t, err != nil, "pull after trust uninstall succeeded:\n%s", out)
	// Without hosts.toml containerd speaks plain HTTP to a loopback host,
	// which the HTTPS port answers with 400.
	must(t, strings.Contains(out, "400 Bad Request") || strings.Contains(out, "certificate"),
		"pull after uninstall failed, but not with an HTTP or certificate error:\n%s", out)

	// Outpost as a mirror of an upstream host that does not even resolve.
	mirror := append(node, "--mirror-of", "upstream.test:5000")
	trustCLI(t, false, append([]string{"trust", "install", "--ca-file", r.ca}, mirror...)...)
	if out, err := c.ctrPull(t, "upstream.test:5000/app:1", user); err != nil {
		t.Fatalf("pull through the mirror: %v\n%s", err, out)
	}
	ls, _ := run(t, nil, false, "ctr", append(c.address, "images", "ls", "-q")...)
	must(t, strings.Contains(ls, "upstream.test:5000/app:1"), "ctr images ls:\n%s", ls)

	cfg := filepath.Join(filepath.Dir(c.certsD), "config.toml")
	out, _ = trustCLI(t, false, "trust", "doctor", "--host", r.host, "--containerd-config", cfg,
		"--containerd-certs-dir", c.certsD, "--mirror-of", "upstream.test:5000")
	must(t, strings.Count(out, "ok ") == 5 && !strings.Contains(out, "FAIL"), "doctor on a good node:\n%s", out)

	trustCLI(t, false, append([]string{"trust", "uninstall"}, mirror...)...)
	entries, _ := os.ReadDir(c.certsD)
	must(t, len(entries) == 0, "certs.d after uninstall: %v", entries)
	out, err = trustCLI(t, true, "trust", "doctor", "--host", r.host, "--containerd-config", cfg, "--containerd-certs-dir", c.certsD)
	must(t, err != nil && strings.Contains(out, "FAIL  hosts.toml") && strings.Contains(out, "run: outpost trust install"),
		"doctor after uninstall: %v\n%s", err, out)
}

// TestTrustDefaultPort: for a registry on port 443, `outpost trust
// install --host <ip>:443` (as the chart's DaemonSet runs it) makes
// containerd pull images named with and without the port, and uninstall
// removes both directories.
func TestTrustDefaultPort(t *testing.T) {
	t.Parallel()
	const host = "127.0.0.1:443"
	ln, err := net.Listen("tcp", host)
	if err != nil {
		t.Skipf("cannot listen on %s (busy, or binding port 443 is not allowed): %v", host, err)
	}
	_ = ln.Close()
	r := startOutpost(t, "--addr", host)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	testImage(t, env, r, "app")
	run(t, env, false, "crane", "tag", r.host+"/app:multi", "1")
	user := "port-puller:" + r.token(t, "port-puller", "_repositories_pull")
	c := startContainerd(t)
	node := []string{"--host", host, "--containerd-certs-dir", c.certsD, "--docker-certs-dir", ""}

	if out, err := c.ctrPull(t, "127.0.0.1/app:1", user); err == nil {
		t.Fatalf("pull without trust succeeded:\n%s", out)
	}
	trustCLI(t, false, append([]string{"trust", "install", "--ca-file", r.ca}, node...)...)
	for _, ref := range []string{"127.0.0.1:443/app:1", "127.0.0.1/app:1"} {
		if out, err := c.ctrPull(t, ref, user); err != nil {
			t.Fatalf("pull %s after trust install --host %s: %v\n%s", ref, host, err, out)
		}
	}
	trustCLI(t, false, append([]string{"trust", "uninstall"}, node...)...)
	entries, _ := os.ReadDir(c.certsD)
	must(t, len(entries) == 0, "certs.d after uninstall: %v", entries)
	out, err := c.ctrPull(t, "127.0.0.1/app:1", user)
	must(t, err != nil, "pull after trust uninstall succeeded:\n%s", out)
}

// chartTrustArgs renders the Helm chart for a registry at host and
// returns the trust DaemonSet's container arguments.
func chartTrustArgs(t *testing.T, host string) []string {
	t.Helper()
	helm := os.Getenv("HELM_BIN")
	if helm == "" {
		helm = tool(t, "helm")
	}
	ip, port, _ := strings.Cut(host, ":")
	out, err := exec.Command(helm, "template", "outpost", "../../deploy/helm/outpost", "--namespace", "connected-registry",
		"--set", "connectionString=ConnectedRegistryName=site;SyncTokenName=site-sync-token;SyncTokenPassword=x;ParentGatewayEndpoint=parent.example;ParentEndpointProtocol=https",
		"--set", "service.clusterIP="+ip, "--set", "service.port="+port,
		"--set", "cert-manager.enabled=false", "--set", "cert-manager.install=false").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if !strings.Contains(doc, "\nkind: DaemonSet\n") {
			continue
		}
		_, rest, ok := strings.Cut(doc, "          args:\n")
		if !ok {
			break
		}
		var args []string
		for _, line := range strings.Split(rest, "\n") {
			a, ok := strings.CutPrefix(line, "            - ")
			if !ok {
				break
			}
			args = append(args, a)
		}
		return args
	}
	t.Fatalf("no trust DaemonSet with args in the rendered chart:\n%s", out)
	return nil
}

// TestTrustDaemonSet runs the Helm chart's trust DaemonSet command, as
// the chart renders it, against a node directory (--root) whose
// containerd certs.d a real containerd reads: the pull works while it
// runs, and SIGTERM removes the files and exits 0.
func TestTrustDaemonSet(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	testImage(t, env, r, "app")
	run(t, env, false, "crane", "tag", r.host+"/app:multi", "1")
	user := "ds-puller:" + r.token(t, "ds-puller", "_repositories_pull")
	c := startContainerd(t)

	args := chartTrustArgs(t, r.host)
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755) == nil, "mkdir")
	for i, a := range args {
		switch {
		case a == "--root=/host":
			args[i] = "--root=" + root
		case a == "--ca-file=/ca/ca.crt":
			args[i] = "--ca-file=" + r.ca // the Secret's ca.crt, mounted at /ca in the pod
		}
	}
	must(t, slices.Contains(args, "--root="+root) && slices.Contains(args, "--ca-file="+r.ca) &&
		slices.Contains(args, "--host="+r.host) && slices.Contains(args, "--uninstall-on-exit"), "chart arguments: %q", args)
	cmd := exec.Command(os.Getenv("OUTPOST_BIN"), args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	certsD := filepath.Join(root, "etc/containerd/certs.d")
	hosts := filepath.Join(certsD, r.host, "hosts.toml")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(hosts); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hosts.toml after 10 s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := run(t, nil, true, "ctr", append(c.address, "images", "pull", "--hosts-dir", certsD, "--user", user, r.host+"/app:1")...)
	must(t, err == nil, "pull with the files the DaemonSet wrote: %v\n%s", err, out)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		must(t, err == nil, "exit after SIGTERM: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit 10 s after SIGTERM:\n%s", logs.String())
	}
	entries, _ := os.ReadDir(filepath.Join(root, "etc/containerd"))
	must(t, len(entries) == 0, "files left under --root after SIGTERM: %v\n%s", entries, logs.String())
	out, err = run(t, nil, true, "ctr", append(c.address, "images", "pull", "--hosts-dir", certsD, "--user", user, r.host+"/app:1")...)
	must(t, err != nil, "pull after the DaemonSet stopped succeeded:\n%s", out)
}
