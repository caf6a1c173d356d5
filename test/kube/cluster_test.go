//go:build linux

// Package kube installs the Helm chart deploy/helm/outpost on a real
// Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler) whose nodes are simulated by kwok, all started by the
// test on 127.0.0.1 and stopped at its end.
//
// It runs when OUTPOST_KUBE=1, with the binaries that scripts/k8s-env.sh
// builds (their paths come from .tools/k8s/env, or default to
// .tools/k8s/bin), helm (HELM_BIN, .tools/bin/helm or PATH), and the
// chart's dependency assembled by scripts/helm-deps.sh.
package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// binaries are the programs the test runs.
type binaries struct {
	etcd, apiserver, controllerManager, scheduler, kubectl, kwok, kwokStages, helm string
}

func findBinaries(t *testing.T) binaries {
	t.Helper()
	if os.Getenv("OUTPOST_KUBE") != "1" {
		t.Skip("set OUTPOST_KUBE=1 (after scripts/k8s-env.sh) to install the chart on a real kube-apiserver")
	}
	dir := os.Getenv("KUBE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot, ".tools/k8s/bin")
	}
	path := func(env, name string) string {
		p := os.Getenv(env)
		if p == "" {
			p = filepath.Join(dir, name)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("%s: %v (scripts/k8s-env.sh builds it)", name, err)
		}
		return abs
	}
	b := binaries{
		etcd:              path("ETCD_BIN", "etcd"),
		apiserver:         path("KUBE_APISERVER_BIN", "kube-apiserver"),
		controllerManager: path("KUBE_CONTROLLER_MANAGER_BIN", "kube-controller-manager"),
		scheduler:         path("KUBE_SCHEDULER_BIN", "kube-scheduler"),
		kubectl:           path("KUBECTL_BIN", "kubectl"),
		kwok:              path("KWOK_BIN", "kwok"),
		kwokStages:        path("KWOK_STAGES", "../kwok-stages.yaml"),
	}
	b.helm = os.Getenv("HELM_BIN")
	if b.helm == "" {
		if p := filepath.Join(repoRoot, ".tools/bin/helm"); fileExists(p) {
			b.helm, _ = filepath.Abs(p)
		} else if p, err := exec.LookPath("helm"); err == nil {
			b.helm = p
		} else {
			t.Fatal("helm is required (scripts/install-tools.sh builds it into .tools/bin)")
		}
	}
	return b
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cluster is a running control plane.
type cluster struct {
	bin        binaries
	dir        string // temporary: data, certificates, logs, kubeconfig
	server     string // https://127.0.0.1:port
	token      string // static token of a system:masters user
	ca         string // the API server's certificate, its own CA
	kubeconfig string
	client     *http.Client
	logs       []string
}

// startCluster starts etcd, the API server, the controller manager, the
// scheduler and kwok, and registers their stop (process group by process
// group, in reverse order) with t.Cleanup.
func startCluster(t *testing.T, bin binaries) *cluster {
	t.Helper()
	c := &cluster{bin: bin, dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
	})

	// etcd
	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcd := c.start(t, "etcd", bin.etcd,
		"--name=test", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--unsafe-no-fsync", "--log-level=warn")
	waitFor(t, "etcd healthy", 60*time.Second, etcd, func() error {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(body, []byte(`"health":"true"`)) {
			return fmt.Errorf("health: %s", body)
		}
		return nil
	})

	// kube-apiserver, with a static token of a cluster administrator and
	// RBAC for everyone else.
	saKey, saPub := c.serviceAccountKeys(t)
	c.token = randomHex(t, 16)
	tokens := filepath.Join(c.dir, "tokens.csv")
	writeFile(t, tokens, c.token+`,admin,admin,"system:masters"`+"\n")
	certDir := filepath.Join(c.dir, "certs")
	port := freePort(t)
	c.server = fmt.Sprintf("https://127.0.0.1:%d", port)
	apiserver := c.start(t, "kube-apiserver", bin.apiserver,
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port), "--cert-dir="+certDir,
		// The API server would publish its own endpoints for the
		// kubernetes Service and refuses a loopback address for that.
		"--endpoint-reconciler-type=none",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--authorization-mode=RBAC", "--token-auth-file="+tokens,
		"--service-cluster-ip-range="+serviceRange, "--allow-privileged=true", "--profiling=false")
	caFile := filepath.Join(certDir, "apiserver.crt")
	waitFor(t, "kube-apiserver certificate", 60*time.Second, apiserver, func() error {
		_, err := os.Stat(caFile)
		return err
	})
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("API server certificate %s: %v", caFile, err)
	}
	c.ca = caFile
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitFor(t, "kube-apiserver ready", 120*time.Second, apiserver, func() error {
		_, err := c.api("GET", "/readyz", nil)
		return err
	})
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	writeFile(t, c.kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.server, caFile, c.token))

	// Controllers (service accounts, Deployments, DaemonSets, volume
	// binding, ...) and the scheduler. Port 0: they serve no HTTPS.
	cm := c.start(t, "kube-controller-manager", bin.controllerManager,
		"--kubeconfig="+c.kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--service-account-private-key-file="+saKey, "--root-ca-file="+caFile,
		"--use-service-account-credentials=false",
		// It would publish the API server's self-signed serving
		// certificate, which is no CA, as a trust bundle, and log the
		// refusal again and again.
		"--controllers=*,-kube-apiserver-serving-clustertrustbundle-publisher-controller")
	sched := c.start(t, "kube-scheduler", bin.scheduler,
		"--kubeconfig="+c.kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0")

	// kwok plays the kubelet of every node annotated kwok.x-k8s.io/node=fake.
	kwok := c.start(t, "kwok", bin.kwok,
		"--kubeconfig="+c.kubeconfig, "--config="+bin.kwokStages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=10.0.0.1/24", "--node-ip=10.0.0.1",
		fmt.Sprintf("--server-address=127.0.0.1:%d", freePort(t)))

	for _, n := range nodes {
		labels := map[string]string{
			"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
		}
		if n.labelled {
			labels[trustLabel] = trustLabelValue
		}
		c.create(t, "/api/v1/nodes", map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{
				"name": n.name, "labels": labels,
				"annotations": map[string]string{"kwok.x-k8s.io/node": "fake"},
			},
		})
	}
	waitFor(t, "simulated nodes Ready", 90*time.Second, kwok, func() error {
		var list struct {
			Items []struct {
				Metadata struct{ Name string }
				Status   struct{ Conditions []condition }
			}
		}
		if err := c.get("/api/v1/nodes", &list); err != nil {
			return err
		}
		ready := 0
		for _, n := range list.Items {
			if hasCondition(n.Status.Conditions, "Ready") {
				ready++
			}
		}
		if ready != len(nodes) {
			return fmt.Errorf("%d of %d nodes Ready", ready, len(nodes))
		}
		return nil
	})
	waitFor(t, "default service account (controller manager)", 90*time.Second, cm, func() error {
		_, err := c.api("GET", "/api/v1/namespaces/default/serviceaccounts/default", nil)
		return err
	})
	for _, p := range []*process{etcd, apiserver, cm, sched, kwok} {
		select {
		case <-p.exited:
			t.Fatalf("%s exited: %v", p.name, p.err)
		default:
		}
	}
	return c
}

const (
	serviceRange    = "10.96.0.0/16"
	trustLabel      = "containerd-configured-by"
	trustLabelValue = "connected-registry"
)

// nodes are the simulated nodes; only the first carries the trust label.
var nodes = []struct {
	name     string
	labelled bool
}{
	{"kwok-node-0", true},
	{"kwok-node-1", false},
	{"kwok-node-2", false},
}

type condition struct{ Type, Status, Reason, Message string }

func hasCondition(cs []condition, typ string) bool {
	for _, c := range cs {
		if c.Type == typ && c.Status == "True" {
			return true
		}
	}
	return false
}

// process is a started program; exited is closed when it has exited.
type process struct {
	name   string
	exited chan struct{}
	err    error
}

// start runs a program in its own process group, logging to the cluster's
// directory. Cleanup sends SIGTERM to the group, then SIGKILL after 10 s.
func (c *cluster) start(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.logs = append(c.logs, logPath)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = c.dir
	// etcd reads every ETCD_* variable as a flag.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ETCD_") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		defer logFile.Close()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
			return
		case <-time.After(10 * time.Second):
		}
		t.Logf("%s did not stop within 10 s of SIGTERM; killing its process group", name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) still running after SIGKILL", name, pgid)
		}
	})
	return p
}

// waitFor polls check every 250 ms until it succeeds, the timeout passes
// or proc (if not nil) exits.
func waitFor(t *testing.T, what string, timeout time.Duration, proc *process, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if proc != nil {
			select {
			case <-proc.exited:
				t.Fatalf("waiting for %s: %s exited: %v", what, proc.name, proc.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *cluster) dumpLogs(t *testing.T) {
	for _, p := range c.logs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("last lines of %s:\n%s", filepath.Base(p), strings.Join(lines, "\n"))
	}
}

// errNotFound is returned by api for a 404.
var errNotFound = errors.New("not found")

// api sends one request to the API server as the administrator.
func (c *cluster) api(method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.server+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s %s: %w", method, path, errNotFound)
	case resp.StatusCode >= 300:
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	return data, nil
}

func (c *cluster) get(path string, v any) error {
	data, err := c.api("GET", path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func (c *cluster) create(t *testing.T, path string, obj any) {
	t.Helper()
	if _, err := c.api("POST", path, obj); err != nil {
		t.Fatal(err)
	}
}

// run runs helm, kubectl or go in a temporary directory, against the
// cluster, bounded by a timeout.
func (c *cluster) run(t *testing.T, timeout time.Duration, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	home := t.TempDir()
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig, "KUBECACHEDIR="+filepath.Join(home, "kube"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
	}
	return string(out), err
}

func (c *cluster) serviceAccountKeys(t *testing.T) (keyPath, pubPath string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath = filepath.Join(c.dir, "sa.key"), filepath.Join(c.dir, "sa.pub")
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	writeFile(t, pubPath, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	return keyPath, pubPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
