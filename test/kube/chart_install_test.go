//go:build linux

package kube

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/agent"
)

// chart is the chart's directory; helm and kubectl run in temporary
// directories, so TestChartInstall makes it absolute.
var chart = repoRoot + "/deploy/helm/outpost"

const (
	release = "outpost" // the chart names its objects after the release: "outpost"
	cs      = "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token;SyncTokenPassword=secret=value;ParentGatewayEndpoint=registry.example.com;ParentEndpointProtocol=https"
)

// setup is one way of installing the chart, as in test/helm and
// docs/kubernetes.md.
type setup struct {
	name string
	set  []string
	// storageClass is the PVC's class: the test creates a matching
	// PersistentVolume so that the claim binds and the pod can be scheduled.
	storageClass string
	// trust: the trust DaemonSet is enabled; allNodes: without the node
	// selector; prePull: with the pre-pull container.
	trust, allNodes, prePull bool
	// prepare creates what the setup expects to exist in its namespace.
	prepare func(t *testing.T, c *cluster, ns string)
	// certManager: the cert-manager CRDs must be installed first.
	certManager bool
	skip        string
}

var setups = []setup{
	{name: "quickstart", set: []string{"pvc.storageRequest=20Gi", "cert-manager.install=false", "cert-manager.enabled=false", "trustDistribution.enabled=false"}},
	{name: "builtin-ca", set: []string{"cert-manager.install=false", "cert-manager.enabled=false"}, trust: true, allNodes: true},
	{name: "own-certificate", set: []string{"cert-manager.install=false", "cert-manager.enabled=false",
		"tls.crt=Y2VydA==", "tls.key=a2V5", "tls.cacrt=Y2E=", "pvc.storageClassName=fast", "trustDistribution.skipNodeSelector=false"},
		storageClass: "fast", trust: true},
	{name: "tls-secret", set: []string{"cert-manager.install=false", "cert-manager.enabled=false", "tls.secret=site-tls",
		"existingConnectionStringSecret=site-connection", "trustDistribution.useNodeSelector=false",
		"prePull.enabled=true", "prePull.nodeTokenSecret=site-node-token", "prePull.nodeLabels=true"}, trust: true, allNodes: true, prePull: true,
		prepare: func(t *testing.T, c *cluster, ns string) {
			c.create(t, "/api/v1/namespaces/"+ns+"/secrets", map[string]any{
				"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "site-tls"},
				"type": "kubernetes.io/tls",
				"data": map[string]string{"tls.crt": b64("cert"), "tls.key": b64("key"), "ca.crt": b64("ca")},
			})
			c.create(t, "/api/v1/namespaces/"+ns+"/secrets", map[string]any{
				"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "site-connection"},
				"data": map[string]string{"connectionString": b64(cs)},
			})
			c.create(t, "/api/v1/namespaces/"+ns+"/secrets", map[string]any{
				"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "site-node-token"},
				"data": map[string]string{"username": b64("factory-node-token"), "password": b64("node-password")},
			})
		}},
	{name: "cert-manager-preinstalled", set: []string{"cert-manager.install=false", "trustDistribution.skipNodeSelector=true"},
		trust: true, allNodes: true, certManager: true},
	{name: "cert-manager-installed", skip: "installs cert-manager itself, whose admission webhook the API server must call " +
		"for every Issuer and Certificate; simulated nodes run no containers, so nothing answers it " +
		"(test/helm renders this setup)"},
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestChartInstall installs each setup of the chart into a namespace of its
// own on one control plane, checks what the API server and the simulated
// nodes made of it, and uninstalls it.
func TestChartInstall(t *testing.T) {
	bin := findBinaries(t)
	abs, err := filepath.Abs(chart)
	if err != nil {
		t.Fatal(err)
	}
	chart = abs
	if !fileExists(filepath.Join(chart, "charts/cert-manager/Chart.yaml")) {
		t.Fatal("the chart's cert-manager dependency is missing: run scripts/helm-deps.sh")
	}
	start := time.Now()
	c := startCluster(t, bin)
	t.Logf("control plane and %d simulated nodes ready in %s", len(nodes), time.Since(start).Round(time.Millisecond))

	crds := sync.OnceValue(func() error { return c.installCertManagerCRDs(t) })
	t.Run("setups", func(t *testing.T) {
		for i, s := range setups {
			clusterIP := fmt.Sprintf("10.96.100.%d", i+1)
			t.Run(s.name, func(t *testing.T) {
				if s.skip != "" {
					t.Skip(s.skip)
				}
				t.Parallel()
				if s.certManager {
					if err := crds(); err != nil {
						t.Fatalf("cert-manager CRDs: %v", err)
					}
				}
				c.installAndCheck(t, s, clusterIP)
			})
		}
	})
}

func (c *cluster) installAndCheck(t *testing.T, s setup, clusterIP string) {
	ns := "outpost-" + s.name
	c.create(t, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	if s.prepare != nil {
		s.prepare(t, c, ns)
	}
	// A volume for the registry's claim (the cluster has no provisioner),
	// reserved for it by claimRef.
	pv := map[string]any{
		"apiVersion": "v1", "kind": "PersistentVolume",
		"metadata": map[string]any{"name": ns + "-data"},
		"spec": map[string]any{
			"capacity":                      map[string]string{"storage": "250Gi"},
			"accessModes":                   []string{"ReadWriteOnce"},
			"persistentVolumeReclaimPolicy": "Retain",
			"storageClassName":              s.storageClass,
			"hostPath":                      map[string]string{"path": "/var/lib/outpost-test/" + ns},
			"claimRef":                      map[string]string{"namespace": ns, "name": release + "-data"},
		},
	}
	c.create(t, "/api/v1/persistentvolumes", pv)

	args := []string{"install", release, chart, "--namespace", ns, "--timeout", "2m",
		"--set", "connectionString=" + cs, "--set", "service.clusterIP=" + clusterIP}
	for _, v := range s.set {
		args = append(args, "--set", v)
	}
	start := time.Now()
	out, err := c.run(t, 3*time.Minute, c.bin.helm, args...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install: %s", time.Since(start).Round(time.Millisecond))

	// The Service has the requested cluster IP.
	var svc struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
		}
	}
	if err := c.get("/api/v1/namespaces/"+ns+"/services/"+release, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != clusterIP {
		t.Errorf("Service %s has clusterIP %q, want %q", release, svc.Spec.ClusterIP, clusterIP)
	}

	// The registry's Deployment (or StatefulSet) gets a pod scheduled on a
	// node and Ready.
	var workloadPod string
	waitFor(t, "the registry's pod scheduled and Ready", 2*time.Minute, nil, func() error {
		workloads := c.workloads(t, ns)
		if len(workloads) != 1 {
			return fmt.Errorf("want one Deployment or StatefulSet, have %v", workloads)
		}
		pods, err := c.pods(ns)
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.ownerKind() == "DaemonSet" {
				continue
			}
			if p.Spec.NodeName == "" {
				return fmt.Errorf("pod %s not scheduled: %s", p.Metadata.Name, p.reasons())
			}
			if !hasCondition(p.Status.Conditions, "Ready") {
				return fmt.Errorf("pod %s on %s not Ready (%s)", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase)
			}
			workloadPod = p.Metadata.Name + " on " + p.Spec.NodeName
			return nil
		}
		return fmt.Errorf("no pod yet for %v; events: %s", workloads, c.events(ns))
	})
	t.Logf("registry pod %s", workloadPod)

	// The trust DaemonSet runs on the labelled node only, or on every
	// node without the node selector.
	var daemonSets struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	if err := c.get("/apis/apps/v1/namespaces/"+ns+"/daemonsets", &daemonSets); err != nil {
		t.Fatal(err)
	}
	// The chart's trust-daemonset.yaml must be there whenever trust is on:
	// a chart that lost it fails here rather than skipping the checks.
	wantDaemonSet := s.trust
	switch {
	case !wantDaemonSet && len(daemonSets.Items) > 0:
		t.Errorf("trust distribution disabled, yet DaemonSet %s was installed", daemonSets.Items[0].Metadata.Name)
	case wantDaemonSet && len(daemonSets.Items) != 1:
		t.Errorf("want one trust DaemonSet, have %d", len(daemonSets.Items))
	case wantDaemonSet:
		want := []string{}
		for _, n := range nodes {
			if n.labelled || s.allNodes {
				want = append(want, n.name)
			}
		}
		var got []string
		waitFor(t, fmt.Sprintf("trust DaemonSet pods Running on %v", want), 2*time.Minute, nil, func() error {
			pods, err := c.pods(ns)
			if err != nil {
				return err
			}
			got = got[:0]
			for _, p := range pods {
				if p.ownerKind() != "DaemonSet" {
					continue
				}
				if p.Status.Phase != "Running" {
					return fmt.Errorf("pod %s on %q is %s: %s", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.reasons())
				}
				got = append(got, p.Spec.NodeName)
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("DaemonSet pods on %v", got)
			}
			return nil
		})
		// The controller placed every pod it wanted to: nothing more comes.
		var ds struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers         []struct{ Name string }
						ServiceAccountName string `json:"serviceAccountName"`
					}
				}
			}
			Status struct {
				DesiredNumberScheduled int `json:"desiredNumberScheduled"`
			}
		}
		if err := c.get("/apis/apps/v1/namespaces/"+ns+"/daemonsets/"+daemonSets.Items[0].Metadata.Name, &ds); err != nil {
			t.Fatal(err)
		}
		if ds.Status.DesiredNumberScheduled != len(want) {
			t.Errorf("DaemonSet wants %d pods, want %d (%v)", ds.Status.DesiredNumberScheduled, len(want), want)
		}
		var containers []string
		for _, c := range ds.Spec.Template.Spec.Containers {
			containers = append(containers, c.Name)
		}
		if wantC := map[bool][]string{false: {"trust"}, true: {"trust", "pre-pull"}}[s.prePull]; !slices.Equal(containers, wantC) {
			t.Errorf("DaemonSet containers %v, want %v", containers, wantC)
		}
		if s.prePull {
			checkPrePullIdentity(t, c, ns, ds.Spec.Template.Spec.ServiceAccountName)
		}
		t.Logf("trust DaemonSet pods on %v", got)
	}

	out, err = c.run(t, 3*time.Minute, c.bin.helm, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m")
	if err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	waitFor(t, "the release's Service and workload deleted", time.Minute, nil, func() error {
		if _, err := c.api("GET", "/api/v1/namespaces/"+ns+"/services/"+release, nil); !errors.Is(err, errNotFound) {
			return fmt.Errorf("Service %s still there (%v)", release, err)
		}
		if w := c.workloads(t, ns); len(w) > 0 {
			return fmt.Errorf("still there: %v", w)
		}
		return nil
	})
}

// workloads lists the release's Deployments and StatefulSets.
func (c *cluster) workloads(t *testing.T, ns string) []string {
	t.Helper()
	var names []string
	for _, kind := range []string{"deployments", "statefulsets"} {
		var list struct {
			Items []struct{ Metadata struct{ Name string } }
		}
		if err := c.get("/apis/apps/v1/namespaces/"+ns+"/"+kind+"?labelSelector="+url.QueryEscape("app.kubernetes.io/instance="+release), &list); err != nil {
			t.Fatal(err)
		}
		for _, i := range list.Items {
			names = append(names, kind+"/"+i.Metadata.Name)
		}
	}
	return names
}

type pod struct {
	Metadata struct {
		Name            string
		OwnerReferences []struct{ Kind string } `json:"ownerReferences"`
	}
	Spec struct {
		NodeName string `json:"nodeName"`
	}
	Status struct {
		Phase      string
		Conditions []condition
	}
}

func (p pod) ownerKind() string {
	if len(p.Metadata.OwnerReferences) == 0 {
		return ""
	}
	return p.Metadata.OwnerReferences[0].Kind
}

func (p pod) reasons() string {
	var r []string
	for _, c := range p.Status.Conditions {
		if c.Message != "" {
			r = append(r, c.Type+": "+c.Message)
		}
	}
	return strings.Join(r, "; ")
}

func (c *cluster) pods(ns string) ([]pod, error) {
	var list struct{ Items []pod }
	if err := c.get("/api/v1/namespaces/"+ns+"/pods", &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// events summarises a namespace's warning events, to explain a wait.
func (c *cluster) events(ns string) string {
	var list struct {
		Items []struct {
			Type, Reason, Message string
			InvolvedObject        struct{ Kind, Name string } `json:"involvedObject"`
		}
	}
	if err := c.get("/api/v1/namespaces/"+ns+"/events", &list); err != nil {
		return err.Error()
	}
	var r []string
	for _, e := range list.Items {
		if e.Type == "Warning" {
			r = append(r, fmt.Sprintf("%s/%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message))
		}
	}
	return strings.Join(r, "; ")
}

// installCertManagerCRDs installs the CRDs of the cert-manager release that
// the chart depends on, as a cluster with cert-manager has them. The
// chart's copy of cert-manager has none (its release build adds them), so
// they come from the same version's Go module, rendered by helm as part of
// a copy of that chart, and applied with kubectl.
func (c *cluster) installCertManagerCRDs(t *testing.T) error {
	sub := filepath.Join(chart, "charts/cert-manager")
	chartYAML, err := os.ReadFile(filepath.Join(sub, "Chart.yaml"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^version:\s*(\S+)`).FindSubmatch(chartYAML)
	if m == nil {
		return fmt.Errorf("no version in %s/Chart.yaml", sub)
	}
	version := string(m[1])
	dl := c.goModDownload(t, "github.com/cert-manager/cert-manager@"+version)
	if dl.err != nil {
		return dl.err
	}
	crdFiles, err := filepath.Glob(filepath.Join(dl.dir, "deploy/crds/crd-*.yaml"))
	if err != nil || len(crdFiles) == 0 {
		return fmt.Errorf("no CRDs in cert-manager %s (%s): %v", version, dl.dir, err)
	}
	tmp := filepath.Join(t.TempDir(), "cert-manager")
	if err := os.CopyFS(tmp, os.DirFS(sub)); err != nil {
		return err
	}
	var server struct{ GitVersion string }
	if err := c.get("/version", &server); err != nil {
		return err
	}
	args := []string{"template", "cert-manager", tmp, "--namespace", "cert-manager", "--set", "crds.enabled=true",
		"--kube-version", server.GitVersion}
	var names []string
	for _, f := range crdFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "templates", filepath.Base(f)), data, 0o644); err != nil {
			return err
		}
		args = append(args, "--show-only", "templates/"+filepath.Base(f))
		plural := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "crd-"), ".yaml")
		group := "cert-manager.io"
		if plural == "challenges" || plural == "orders" {
			group = "acme.cert-manager.io"
		}
		names = append(names, "crd/"+plural+"."+group)
	}
	rendered, err := c.run(t, time.Minute, c.bin.helm, args...)
	if err != nil {
		return fmt.Errorf("helm template the CRDs: %v\n%s", err, rendered)
	}
	file := filepath.Join(t.TempDir(), "crds.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o644); err != nil {
		return err
	}
	if out, err := c.run(t, 2*time.Minute, c.bin.kubectl, "apply", "--server-side", "-f", file); err != nil {
		return fmt.Errorf("kubectl apply the CRDs: %v\n%s", err, out)
	}
	if out, err := c.run(t, 2*time.Minute, c.bin.kubectl, append([]string{"wait", "--for=condition=Established", "--timeout=90s"}, names...)...); err != nil {
		return fmt.Errorf("kubectl wait for the CRDs: %v\n%s", err, out)
	}
	t.Logf("cert-manager %s CRDs installed: %v", version, names)
	return nil
}

type download struct {
	dir string
	err error
}

// goModDownload finds a module in the Go module cache, downloading it if
// needed (as scripts/helm-deps.sh did for the same version).
func (c *cluster) goModDownload(t *testing.T, module string) download {
	out, err := c.run(t, 3*time.Minute, "go", "mod", "download", "-json", module)
	if err != nil {
		return download{err: fmt.Errorf("go mod download %s: %v\n%s", module, err, out)}
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return download{err: fmt.Errorf("go mod download %s: %v\n%s", module, err, out)}
	}
	if info.Error != "" {
		return download{err: fmt.Errorf("go mod download %s: %s", module, info.Error)}
	}
	return download{dir: info.Dir}
}

// checkPrePullIdentity: the pre-pull agent's service account reads a
// node's labels through the agent's own reader, and may not read the
// namespace's Secrets.
func checkPrePullIdentity(t *testing.T, c *cluster, ns, sa string) {
	t.Helper()
	if sa == "" {
		t.Fatal("the pre-pull DaemonSet has no service account (prePull.nodeLabels)")
	}
	var tr struct {
		Status struct{ Token string }
	}
	b, err := c.api("POST", "/api/v1/namespaces/"+ns+"/serviceaccounts/"+sa+"/token", map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{"expirationSeconds": 600}})
	if err != nil || json.Unmarshal(b, &tr) != nil || tr.Status.Token == "" {
		t.Fatalf("token of %s: %v %s", sa, err, b)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, tr.Status.Token)
	k, err := agent.NewKubeNode(c.server, tokenFile, c.ca)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := k.Labels(context.Background(), nodes[0].name)
	if err != nil || labels[trustLabel] != trustLabelValue || labels["kubernetes.io/hostname"] != nodes[0].name {
		t.Errorf("labels of %s read as %s: %v %v", nodes[0].name, sa, labels, err)
	}
	req, _ := http.NewRequest("GET", c.server+"/api/v1/namespaces/"+ns+"/secrets", nil)
	req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("%s listing Secrets: %s, want 403", sa, resp.Status)
	}
}
