// Package e2e tests the built outpost binary with real clients: crane,
// skopeo, oras, regctl, containerd's ctr and kubectl. The tests run only
// with OUTPOST_E2E=1 (scripts/test.sh sets it, with OUTPOST_BIN); then a
// missing tool is a failure, not a skip. All traffic stays on 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const adminPassword = "e2e-admin-password"

func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("OUTPOST_E2E") != "1" {
		t.Skip("set OUTPOST_E2E=1 (and OUTPOST_BIN) to run the end-to-end tests")
	}
}

// tool returns the path of a client, failing the test when it is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for the e2e tests (scripts/install-tools.sh installs it): %v", name, err)
	}
	return p
}

// registry is a running outpost binary.
type registry struct {
	host string // 127.0.0.1:port
	dir  string
	ca   string // CA certificate file (TLS on)
	url  string
	http *http.Client
	kill func() // SIGKILL, for registries started by startOutpost
	pid  int    // the process, for registries started by startOutpost
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startOutpost runs `outpost serve` with HTTPS (built-in CA) and extra
// arguments, and waits until /v2/ answers.
func startOutpost(t *testing.T, extra ...string) *registry {
	t.Helper()
	requireE2E(t)
	bin := os.Getenv("OUTPOST_BIN")
	if bin == "" {
		t.Fatal("OUTPOST_BIN must name the built outpost binary")
	}
	r := &registry{host: freePort(t), dir: t.TempDir()}
	// An --addr among extra (given after the default, so it wins) is the
	// registry's address.
	for i, a := range extra {
		if a == "--addr" && i+1 < len(extra) {
			r.host = extra[i+1]
		}
	}
	args := append([]string{"serve", "--addr", r.host, "--data", filepath.Join(r.dir, "data"), "--log-level", "Warning"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "OUTPOST_ADMIN_PASSWORD="+adminPassword)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start outpost: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() {
			t.Logf("outpost log:\n%s", logs.String())
		}
	})
	r.kill, r.pid = func() { _ = cmd.Process.Kill() }, cmd.Process.Pid
	tlsOn := !strings.Contains(strings.Join(extra, " "), "--tls-mode off")
	r.url = "http://" + r.host
	r.http = &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if tlsOn && r.ca == "" {
			ca := filepath.Join(r.dir, "data", "pki", "ca.crt")
			if pem, err := os.ReadFile(ca); err == nil {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pem)
				r.ca, r.url = ca, "https://"+r.host
				r.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
			}
		}
		if r.ca != "" || !tlsOn {
			req, _ := http.NewRequest(http.MethodGet, r.url+"/v2/", nil)
			req.SetBasicAuth("admin", adminPassword)
			if resp, err := r.http.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return r
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("outpost on %s did not become ready:\n%s", r.host, logs.String())
	return nil
}

// api calls the management API as the admin.
func (r *registry) api(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	req, _ := http.NewRequest(method, r.url+path, bytes.NewReader(body))
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, b.String())
	}
	if out != nil {
		if err := json.Unmarshal(b.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// token creates a token bound to a scope map and returns its password.
func (r *registry) token(t *testing.T, name, scopeMap string) string {
	t.Helper()
	var out struct {
		Credentials struct {
			Passwords []struct{ Value string } `json:"passwords"`
		} `json:"credentials"`
	}
	r.api(t, http.MethodPost, "/api/v1/tokens", map[string]any{"name": name, "scopeMapName": scopeMap}, &out)
	return out.Credentials.Passwords[0].Value
}

// run executes a client with a timeout and returns its combined output;
// a non-zero exit fails the test unless allowFail. An E2E_DIR=… entry in
// env sets the working directory.
func run(t *testing.T, env []string, allowFail bool, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, name), args...)
	cmd.Env = append(os.Environ(), env...)
	for _, e := range env {
		if d, ok := strings.CutPrefix(e, "E2E_DIR="); ok {
			cmd.Dir = d
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !allowFail {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), err
}

// clientEnv isolates a client's configuration in a temporary HOME and
// DOCKER_CONFIG, trusting the registry's CA.
func clientEnv(t *testing.T, r *registry) []string {
	home := t.TempDir()
	env := []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	if r.ca != "" {
		env = append(env, "SSL_CERT_FILE="+r.ca)
	}
	return env
}

// craneLogin stores a credential for crane in env's DOCKER_CONFIG.
func craneLogin(t *testing.T, env []string, r *registry, user, pass string) {
	run(t, env, false, "crane", "auth", "login", r.host, "-u", user, "-p", pass)
}

// testImage pushes a two-platform index (and its platform images) to
// repo:multi with crane and returns the index digest.
func testImage(t *testing.T, env []string, r *registry, repo string) string {
	t.Helper()
	layer := tarLayer(t, "hello.txt", []byte("hello from "+repo+"\n"))
	ref := r.host + "/" + repo
	run(t, env, false, "crane", "append", "--oci-empty-base", "-f", layer, "-t", ref+":base")
	run(t, env, false, "crane", "mutate", ref+":base", "--set-platform", "linux/amd64", "-t", ref+":amd64")
	run(t, env, false, "crane", "mutate", ref+":base", "--set-platform", "linux/arm64", "-t", ref+":arm64")
	run(t, env, false, "crane", "index", "append", "-m", ref+":amd64", "-m", ref+":arm64", "-t", ref+":multi")
	out, _ := run(t, env, false, "crane", "digest", ref+":multi")
	return strings.TrimSpace(out)
}

// tarLayer writes a layer tarball holding one file and returns its path.
func tarLayer(t *testing.T, name string, content []byte) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layer.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", layer, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	return layer
}

func must(t *testing.T, cond bool, format string, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf(format, args...)
	}
}
