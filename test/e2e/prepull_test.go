package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/outpost-registry/outpost/internal/agent"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// singleImage pushes a linux/amd64 image with one layer of size random
// bytes to repo:tag and returns its digest.
func singleImage(t *testing.T, env []string, r *registry, repo, tag string, size int) string {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	layer := tarLayer(t, "data.bin", b)
	ref := r.host + "/" + repo
	run(t, env, false, "crane", "append", "--oci-empty-base", "-f", layer, "-t", ref+":base-"+tag)
	run(t, env, false, "crane", "mutate", ref+":base-"+tag, "--set-platform", "linux/amd64", "-t", ref+":"+tag)
	out, _ := run(t, env, false, "crane", "digest", ref+":"+tag)
	return strings.TrimSpace(out)
}

// agentProc runs `outpost trust pre-pull` for one node until the test ends.
type agentProc struct {
	mu   sync.Mutex
	logs bytes.Buffer
}

func (a *agentProc) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Getenv("OUTPOST_BIN"), append([]string{"trust", "pre-pull", "--interval", "1s"}, args...)...)
	w := &lockedWriter{mu: &a.mu, w: &a.logs}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start the pre-pull agent: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent %v log:\n%s", args, tail(a.text(), 4000))
		}
	})
	return a
}

// siteNodes reads a job's node stage at a site as the root reports it.
func siteNodes(t *testing.T, root *registry, job, site string) *protocol.NodeRollup {
	t.Helper()
	var j protocol.StagingJob
	root.api(t, http.MethodGet, "/api/v1/staging/"+job, nil, &j)
	return j.Sites[site].Nodes
}

func nodeState(r *protocol.NodeRollup, node string) protocol.NodeProgress {
	if r == nil {
		return protocol.NodeProgress{}
	}
	for _, n := range r.Nodes {
		if n.Node == node {
			return n
		}
	}
	return protocol.NodeProgress{}
}

// TestPrePull: a --pre-pull staging job (a two-platform index and a
// second image) staged at a site reaches a real containerd through CRI:
// the agent pulls both by digest, ctr lists them with the staged
// digests, and the root shows the node Pulled and 1/1. A second agent
// whose CRI socket does not exist reports Failed with the reason. A
// second job, whose pull loses the site's registry midway, is retried and
// completes when the registry is back. Then 20 simulated agents pull
// against the site's limit of 5, never more than 5 at once by the site's
// own count.
func TestPrePull(t *testing.T) {
	t.Parallel()
	root := startOutpost(t)
	env := clientEnv(t, root)
	craneLogin(t, env, root, "admin", adminPassword)
	web := testImage(t, env, root, "apps/web")
	api := singleImage(t, env, root, "apps/api", "v1", 1<<10)
	db := singleImage(t, env, root, "apps/db", "v1", 12<<20)

	cs := connectionString(t, root, protocol.CreateRequest{Name: "factory", Repositories: []string{"apps/base"}}, root.host)
	var nt protocol.NodeToken
	root.api(t, http.MethodPost, "/api/v1/connected-registries/factory/node-token", protocol.NodeTokenRequest{}, &nt)
	dir := t.TempDir()
	csFile, pwFile := filepath.Join(dir, "cs"), filepath.Join(dir, "node-pw")
	if err := os.WriteFile(csFile, []byte(cs), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(nt.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := newProc(t, "--connection-string-file", csFile, "--parent-ca-file", root.ca, "--heartbeat-interval", "1s", "--pre-pull-nodes", "5")
	edge := site.start()

	// The node reaches the site through a link the test can cut.
	l := newLink(t, edge.host)
	via := &registry{host: l.addr(), ca: edge.ca}
	c := startContainerd(t)
	c.trustHost(t, via)

	cli := append(clientEnv(t, root), "OUTPOST_SERVER=https://"+root.host, "OUTPOST_USERNAME=admin", "OUTPOST_PASSWORD="+adminPassword)
	outpostCLI(t, cli, "stage", "create", "--ca-file", root.ca, "--name", "release-1", "--connected-registry", "factory",
		"--image", "apps/web:multi", "apps/api:v1", "--pre-pull", "-o", "none")
	agentArgs := []string{"--server", "https://" + l.addr(), "--ca-file", edge.ca, "--username", nt.TokenName, "--password-file", pwFile}
	a := startAgent(t, append(agentArgs, "--node-name", "node-a", "--cri-socket", c.sock)...)

	eventually(t, 60*time.Second, "node-a Pulled release-1, 1/1 at the root", func() bool {
		n := siteNodes(t, root, "release-1", "factory")
		return n != nil && n.Done == 1 && n.Total == 1 && nodeState(n, "node-a").State == protocol.NodePulled
	})
	out, _ := run(t, nil, false, "ctr", append(c.address, "-n", "k8s.io", "images", "ls")...)
	for _, want := range []string{via.host + "/apps/web@" + web, via.host + "/apps/api@" + api} {
		must(t, strings.Contains(out, want), "ctr -n k8s.io images ls lacks %s:\n%s", want, out)
	}
	show := outpostCLI(t, cli, "stage", "show", "--ca-file", root.ca, "--name", "release-1", "-o", "table")
	must(t, strings.Contains(show, "1/1"), "stage show lacks NODES 1/1:\n%s", show)
	wait := outpostCLI(t, cli, "stage", "wait", "--ca-file", root.ca, "--name", "release-1", "--nodes", "--timeout", "20s")
	must(t, strings.Contains(wait, "pulled by the nodes"), "stage wait --nodes:\n%s", wait)

	// Another node whose runtime socket is not there.
	startAgent(t, append(agentArgs, "--node-name", "node-b", "--cri-socket", filepath.Join(dir, "no-such.sock"))...)
	eventually(t, 30*time.Second, "node-b Failed with the reason", func() bool {
		n := siteNodes(t, root, "release-1", "factory")
		b := nodeState(n, "node-b")
		return n.Failed == 1 && n.Done == 1 && n.Total == 2 && b.State == protocol.NodeFailed && strings.Contains(b.Reason, "no-such.sock")
	})
	failing, err := run(t, cli, true, os.Getenv("OUTPOST_BIN"), "stage", "wait", "--ca-file", root.ca, "--name", "release-1", "--nodes", "--timeout", "3s")
	must(t, err != nil && strings.Contains(failing, "node-b: ") && strings.Contains(failing, "timed out"), "stage wait --nodes with node-b failing: %v\n%s", err, failing)
	nodes := outpostCLI(t, cli, "stage", "show", "--ca-file", root.ca, "--name", "release-1", "--nodes", "-o", "table")
	must(t, strings.Contains(nodes, "node-b") && strings.Contains(nodes, "Failed") && strings.Contains(nodes, "node-a") && strings.Contains(nodes, "Pulled"),
		"stage show --nodes:\n%s", nodes)

	// trust doctor reports whether the CRI socket answers.
	doc, _ := run(t, nil, true, os.Getenv("OUTPOST_BIN"), "trust", "doctor", "--host", via.host, "--cri-socket", c.sock)
	must(t, strings.Contains(doc, "ok    CRI socket "+c.sock+": reachable: containerd"), "trust doctor with containerd's socket:\n%s", doc)
	doc, _ = run(t, nil, true, os.Getenv("OUTPOST_BIN"), "trust", "doctor", "--host", via.host, "--cri-socket", filepath.Join(dir, "no-such.sock"))
	must(t, strings.Contains(doc, "FAIL  CRI socket "+filepath.Join(dir, "no-such.sock")), "trust doctor with no socket:\n%s", doc)

	// The site's registry goes away in the middle of node-a's pull.
	cut := l.cutAfter(4 << 20)
	outpostCLI(t, cli, "stage", "create", "--ca-file", root.ca, "--name", "release-2", "--connected-registry", "factory",
		"--image", "apps/db:v1", "--pre-pull", "-o", "none")
	select {
	case <-cut:
	case <-time.After(60 * time.Second):
		t.Fatal("the pull of release-2 never started through the link")
	}
	must(t, nodeState(siteNodes(t, root, "release-2", "factory"), "node-a").State != protocol.NodePulled, "release-2 pulled before the cut")
	time.Sleep(2 * time.Second)
	l.setDown(false)
	eventually(t, 60*time.Second, "node-a Pulled release-2 after the registry came back", func() bool {
		return nodeState(siteNodes(t, root, "release-2", "factory"), "node-a").State == protocol.NodePulled
	})
	out, _ = run(t, nil, false, "ctr", append(c.address, "-n", "k8s.io", "images", "ls")...)
	must(t, strings.Contains(out, via.host+"/apps/db@"+db), "ctr lacks apps/db@%s:\n%s", db, out)
	must(t, strings.Contains(a.text(), "retrying"), "node-a's log shows no retry:\n%s", a.text())

	// Deleting a job stops the pulls still running (release-3, slowed by
	// the link) and takes it off the nodes' list; images already pulled
	// (release-2's) stay.
	big := singleImage(t, env, root, "apps/big", "v1", 16<<20)
	outpostCLI(t, cli, "stage", "create", "--ca-file", root.ca, "--name", "release-3", "--connected-registry", "factory",
		"--image", "apps/big:v1", "--pre-pull", "-o", "none")
	eventually(t, 60*time.Second, "release-3 staged at the site", func() bool {
		var j protocol.StagingJob
		root.api(t, http.MethodGet, "/api/v1/staging/release-3", nil, &j)
		return j.Sites["factory"].State == protocol.StageStaged
	})
	l.setDownloadRate(512 << 10)
	eventually(t, 30*time.Second, "node-a Pulling release-3", func() bool {
		return nodeState(siteNodes(t, root, "release-3", "factory"), "node-a").State == protocol.NodePulling
	})
	for _, job := range []string{"release-2", "release-3"} {
		root.api(t, http.MethodDelete, "/api/v1/staging/"+job, nil, nil)
	}
	eventually(t, 20*time.Second, "node-a stopping release-3's pull", func() bool {
		return strings.Contains(a.text(), "job no longer listed by the site; pulls stopped")
	})
	l.setDownloadRate(0)
	out, _ = run(t, nil, false, "ctr", append(c.address, "-n", "k8s.io", "images", "ls")...)
	must(t, !strings.Contains(out, big), "release-3's image was pulled although its job was deleted:\n%s", out)
	must(t, strings.Contains(out, via.host+"/apps/db@"+db), "release-2's image is gone after its job was deleted:\n%s", out)
	eventually(t, 30*time.Second, "release-2 and release-3 gone from the site's node jobs", func() bool {
		var jobs []protocol.NodeJob
		edge.api(t, http.MethodGet, "/api/v1/nodes/jobs", nil, &jobs)
		return len(jobs) == 1 && jobs[0].Job == "release-1"
	})
	throttle(t, root, edge, nt)
}

// throttle runs 20 simulated node agents (each its own node name, pulling
// into its own throwaway OCI layout) against the site, whose limit is 5,
// and checks by the site's count that never more than 5 pulled at once.
func throttle(t *testing.T, root, edge *registry, nt protocol.NodeToken) {
	t.Helper()
	hc := edge.http // trusts the site's CA, sends no credentials of its own
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 20 {
		rt := &layoutRuntime{dir: t.TempDir(), http: hc, hold: 400 * time.Millisecond, have: map[string]bool{}}
		o := agent.PrePullOptions{Server: "https://" + edge.host, CAFile: edge.ca, Username: nt.TokenName, Password: nt.Password,
			Node: fmt.Sprintf("sim-%02d", i), Interval: time.Second, SlotRetry: 300 * time.Millisecond, Runtime: rt}
		wg.Add(1)
		go func() { defer wg.Done(); _ = agent.PrePull(ctx, o, slog.New(slog.DiscardHandler)) }()
	}
	defer wg.Wait()
	defer cancel()
	eventually(t, 80*time.Second, "the 20 simulated nodes Pulled release-1", func() bool {
		n := siteNodes(t, root, "release-1", "factory")
		return n != nil && n.Done == 21
	})
	mc, err := adminClient(t, edge)
	if err != nil {
		t.Fatal(err)
	}
	peak := metricValue(t, mc, "outpost_prepull_leases_peak")
	granted := metricValue(t, mc, "outpost_prepull_leases_granted_total")
	refused := metricValue(t, mc, "outpost_prepull_leases_refused_total")
	t.Logf("site pull slots: peak %v, granted %v, refused %v", peak, granted, refused)
	must(t, peak <= 5, "got a peak of %v nodes pulling at once, want at most 5 (the limit)", peak)
	must(t, peak >= 3 && granted >= 21 && refused > 0, "got a peak of %v, %v slots granted and %v refused; want the nodes to contend: >= 21 granted (node-a and 20 nodes), some refused", peak, granted, refused)
}

// layoutRuntime stands for a node's runtime in the throttling test: it
// copies an image's whole graph from the site into an OCI layout (oras
// verifies every digest) and holds the slot a little longer, so that
// nodes overlap.
type layoutRuntime struct {
	dir  string
	http *http.Client
	hold time.Duration
	mu   sync.Mutex
	have map[string]bool
}

func (r *layoutRuntime) Pull(ctx context.Context, ref, username, password string) error {
	name, dgst, ok := strings.Cut(ref, "@")
	if !ok {
		return fmt.Errorf("%s: not a digest reference", ref)
	}
	repo, err := remote.NewRepository(name)
	if err != nil {
		return err
	}
	host, _, _ := strings.Cut(name, "/")
	repo.Client = &auth.Client{Client: r.http, Credential: auth.StaticCredential(host, auth.Credential{Username: username, Password: password})}
	store, err := oci.New(r.dir)
	if err != nil {
		return err
	}
	if _, err := oras.Copy(ctx, repo, dgst, store, "", oras.DefaultCopyOptions); err != nil {
		return err
	}
	if _, err := digest.Parse(dgst); err != nil {
		return err
	}
	time.Sleep(r.hold)
	r.mu.Lock()
	r.have[ref] = true
	r.mu.Unlock()
	return nil
}

func (r *layoutRuntime) Has(_ context.Context, ref string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.have[ref], nil
}
