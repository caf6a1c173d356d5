// Package helm tests the Helm chart deploy/helm/outpost: lint, and the
// rendered manifests of each TLS setup against golden files (-update
// rewrites them). It needs helm (HELM_BIN, or helm on PATH) and runs when
// OUTPOST_E2E=1, as scripts/test.sh sets it.
package helm

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const chart = "../../deploy/helm/outpost"

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if os.Getenv("OUTPOST_E2E") != "1" {
		t.Skip("set OUTPOST_E2E=1 to run the chart tests")
	}
	bin := os.Getenv("HELM_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("helm"); err != nil {
			t.Fatalf("helm is required (scripts/install-tools.sh builds it): %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var (
	randomPassword = regexp.MustCompile(`(?m)^(  password: )"[A-Za-z0-9+/=]+"$`)
	// generatedCA matches the CA certificate and key made by genCA.
	generatedCA = regexp.MustCompile(`(?m)^(  ca\.(?:crt|key): )"[A-Za-z0-9+/=]{100,}"$`)
)

// ours keeps the documents of this chart (not of the cert-manager
// dependency) and replaces the generated admin password.
func ours(rendered string) string {
	var keep []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "# Source: outpost/templates/") {
			keep = append(keep, strings.TrimSpace(doc))
		}
	}
	out := randomPassword.ReplaceAllString(strings.Join(keep, "\n---\n"), `$1"<generated>"`)
	return generatedCA.ReplaceAllString(out, `$1"<generated>"`) + "\n"
}

const cs = "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token;SyncTokenPassword=secret=value;ParentGatewayEndpoint=registry.example.com;ParentEndpointProtocol=https"

func TestLint(t *testing.T) {
	out, err := helm(t, "lint", "--strict", chart, "--set", "service.clusterIP=10.96.0.50", "--set", "connectionString="+cs)
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// TestTemplates renders each setup of docs/kubernetes.md.
func TestTemplates(t *testing.T) {
	const (
		noTrust  = iota // no trust DaemonSet
		labelled        // on labelled nodes only
		every           // on every node
	)
	for _, c := range []struct {
		name  string
		set   []string
		trust int
		ca    string // the Secret the DaemonSet takes ca.crt from
	}{
		{"quickstart", []string{"service.clusterIP=192.100.100.1", "pvc.storageRequest=20Gi", "cert-manager.install=false", "cert-manager.enabled=false", "trustDistribution.enabled=false"}, noTrust, ""},
		{"cert-manager-installed", []string{"service.clusterIP=192.100.100.1"}, every, "outpost-tls"},
		{"cert-manager-preinstalled", []string{"service.clusterIP=192.100.100.1", "cert-manager.install=false", "trustDistribution.skipNodeSelector=true"}, every, "outpost-tls"},
		{"built-in-ca", []string{"service.clusterIP=192.100.100.1", "cert-manager.install=false", "cert-manager.enabled=false"}, every, "outpost-ca-cert"},
		{"own-certificate", []string{"service.clusterIP=192.100.100.1", "cert-manager.install=false", "cert-manager.enabled=false",
			"tls.crt=Y2VydA==", "tls.key=a2V5", "tls.cacrt=Y2E=", "pvc.storageClassName=fast", "trustDistribution.skipNodeSelector=false"}, labelled, "outpost-tls"},
		{"tls-secret", []string{"service.clusterIP=192.100.100.1", "cert-manager.install=false", "cert-manager.enabled=false", "tls.secret=site-tls",
			"existingConnectionStringSecret=site-connection", "trustDistribution.useNodeSelector=true"}, labelled, "site-tls"},
		{"root", []string{"mode=root", "service.clusterIP=192.100.100.1", "cert-manager.install=false", "cert-manager.enabled=false",
			"loginServer=registry.example.com:443", "service.type=LoadBalancer", "admin.existingSecret=root-admin"}, every, "outpost-ca-cert"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"template", "outpost", chart, "--namespace", "connected-registry"}
			if c.name != "root" {
				args = append(args, "--set", "connectionString="+cs)
			}
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			got := ours(out)
			checkTrust(t, got, c.trust != noTrust, c.trust == labelled, c.ca)
			path := filepath.Join("testdata", c.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("rendered %s differs from %s (go test -update if intended):\n%s", c.name, path, got)
			}
			if strings.Contains(got, "SyncTokenPassword") {
				t.Error("the connection string appears in clear in a rendered manifest")
			}
		})
	}
}

// checkTrust asserts the trust DaemonSet's presence, node selector, CA
// Secret and command.
func checkTrust(t *testing.T, rendered string, present, selector bool, caSecret string) {
	t.Helper()
	var ds string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "\nkind: DaemonSet\n") {
			ds = doc
		}
	}
	if (ds != "") != present {
		t.Fatalf("trust DaemonSet rendered: %v, want %v", ds != "", present)
	}
	if !present {
		return
	}
	if got := strings.Contains(ds, "containerd-configured-by: connected-registry"); got != selector {
		t.Errorf("trust DaemonSet node selector: %v, want %v", got, selector)
	}
	// Tainted nodes are nodes too.
	if !strings.Contains(ds, "tolerations:\n        - operator: Exists\n") {
		t.Errorf("trust DaemonSet does not tolerate every taint:\n%s", ds)
	}
	for _, want := range []string{"secretName: " + caSecret + "\n", "- --host=192.100.100.1:443\n", "- --root=/host\n", "- --uninstall-on-exit\n",
		"mountPath: /host/etc/containerd/certs.d}", "hostPath: {path: /etc/containerd/certs.d, type: DirectoryOrCreate}"} {
		if !strings.Contains(ds, want) {
			t.Errorf("trust DaemonSet lacks %q:\n%s", want, ds)
		}
	}
}

// TestRequiredValues: missing required values fail rendering with a clear
// message.
func TestRequiredValues(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"connectionString=x"}, "service.clusterIP is required"},
		{[]string{"service.clusterIP=10.96.0.5"}, "connectionString is required"},
		{[]string{"service.clusterIP=10.96.0.5", "connectionString=x", "tls.key=a2V5"}, "tls.crt is required"},
		{[]string{"service.clusterIP=10.96.0.5", "connectionString=x", "tls.crt=Y2VydA==", "tls.key=a2V5", "tls.secret=site-tls"}, "two ways of giving your certificate"},
		{[]string{"service.clusterIP=10.96.0.5", "connectionString=x", "tls.crt=-----BEGIN CERTIFICATE-----", "tls.key=a2V5"}, "tls.crt must be base64-encoded"},
	} {
		args := []string{"template", "outpost", chart}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		out, err := helm(t, args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("helm template --set %v: got %v %s, want an error saying %q", c.set, err, out, c.want)
		}
	}
}
