package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// containerd is a containerd daemon of the test's own, with its own root,
// state, socket and registry config_path.
type containerd struct {
	sock    string
	certsD  string
	address []string
}

// startContainerd runs Debian's containerd with a short socket path (unix
// socket paths are limited to 108 bytes).
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	bin := tool(t, "containerd")
	tool(t, "ctr")
	dir, err := os.MkdirTemp("/tmp", "ctd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &containerd{sock: filepath.Join(dir, "c.sock"), certsD: filepath.Join(dir, "certs.d")}
	if err := os.MkdirAll(c.certsD, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version = 2
root = "%[1]s/root"
state = "%[1]s/state"
[grpc]
  address = "%[1]s/c.sock"
[ttrpc]
  address = "%[1]s/c.sock.ttrpc"
[debug]
  address = "%[1]s/d.sock"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "%[2]s"
`, dir, c.certsD)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config", cfgPath)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("containerd log (tail):\n%s", tail(logs.String(), 3000))
		}
	})
	c.address = []string{"--address", c.sock}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := run(t, nil, true, "ctr", append(c.address, "version")...); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("containerd did not start:\n%s", tail(logs.String(), 3000))
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// trustHost writes certs.d/<host>/hosts.toml and ca.crt (as `outpost trust
// install` does) so that containerd verifies the registry with its CA.
func (c *containerd) trustHost(t *testing.T, r *registry) {
	t.Helper()
	d := filepath.Join(c.certsD, r.host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(r.ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = \"https://%[1]s\"\n\n[host.\"https://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"%[2]s\"\n", r.host, filepath.Join(d, "ca.crt"))
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *containerd) pull(t *testing.T, ref, user string) {
	t.Helper()
	run(t, nil, false, "ctr", append(c.address, "images", "pull", "--hosts-dir", c.certsD, "--user", user, ref)...)
}

// TestContainerd: ctr pulls an image by tag and by digest over HTTPS with a
// client token, and lists it.
func TestContainerd(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	digest := testImage(t, env, r, "test/ctr")
	pw := r.token(t, "node-puller", "_repositories_pull")
	c := startContainerd(t)
	c.trustHost(t, r)
	c.pull(t, r.host+"/test/ctr:multi", "node-puller:"+pw)
	c.pull(t, r.host+"/test/ctr@"+digest, "node-puller:"+pw)
	ls, _ := run(t, nil, false, "ctr", append(c.address, "images", "ls")...)
	must(t, strings.Contains(ls, r.host+"/test/ctr:multi") && strings.Contains(ls, digest), "ctr images ls:\n%s", ls)
	// A wrong password is refused.
	if out, err := run(t, nil, true, "ctr", append(c.address, "images", "pull", "--hosts-dir", c.certsD, "--user", "node-puller:wrong", r.host+"/test/ctr:amd64")...); err == nil {
		t.Fatalf("pull with a wrong password succeeded: %s", out)
	}
}

// TestKubernetesPullSecret: the credentials of a docker-registry secret made
// by kubectl pull with crane.
func TestKubernetesPullSecret(t *testing.T) {
	t.Parallel()
	r := startOutpost(t)
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	digest := testImage(t, env, r, "test/k8s")
	pw := r.token(t, "k8s-puller", "_repositories_pull")
	out, _ := run(t, env, false, "kubectl", "create", "secret", "docker-registry", "outpost-pull", "--docker-server="+r.host,
		"--docker-username=k8s-puller", "--docker-password="+pw, "--dry-run=client", "-o", "json")
	var secret struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &secret); err != nil {
		t.Fatalf("kubectl output: %v\n%s", err, out)
	}
	cfg, err := base64.StdEncoding.DecodeString(secret.Data[".dockerconfigjson"])
	if err != nil {
		t.Fatal(err)
	}
	dockerDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := run(t, []string{"DOCKER_CONFIG=" + dockerDir, "SSL_CERT_FILE=" + r.ca}, false, "crane", "digest", r.host+"/test/k8s:multi")
	must(t, strings.TrimSpace(got) == digest, "pull with the secret's credentials: %s", got)
}
