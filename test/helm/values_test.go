package helm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-registry/outpost/internal/helmvalues"
)

// object is one rendered manifest.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Type        string   `yaml:"type"`
		ClusterIP   string   `yaml:"clusterIP"`
		DNSNames    []string `yaml:"dnsNames"`
		IPAddresses []string `yaml:"ipAddresses"`
		Template    struct {
			Spec struct {
				NodeSelector map[string]string `yaml:"nodeSelector"`
				Tolerations  []map[string]any  `yaml:"tolerations"`
				Containers   []struct {
					Name            string   `yaml:"name"`
					Args            []string `yaml:"args"`
					SecurityContext struct {
						ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
						Capabilities           struct {
							Drop []string `yaml:"drop"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// render runs helm template with args and decodes this chart's objects.
func render(t *testing.T, args ...string) (map[string]object, error) {
	t.Helper()
	out, err := helm(t, append([]string{"template", "outpost", chart, "--namespace", "connected-registry"}, args...)...)
	if err != nil {
		return nil, errors.New(out)
	}
	var docs []string
	for _, doc := range strings.Split(out, "\n---\n") {
		if strings.Contains(doc, "# Source: outpost/templates/") {
			docs = append(docs, doc)
		}
	}
	objs := map[string]object{}
	dec := yaml.NewDecoder(strings.NewReader(strings.Join(docs, "\n---\n")))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode rendered manifests: %v", err)
		}
		if o.Kind != "" {
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	return objs, nil
}

func mustRender(t *testing.T, args ...string) map[string]object {
	t.Helper()
	objs, err := render(t, args...)
	if err != nil {
		t.Fatalf("helm template %q: %v", args, err)
	}
	return objs
}

func (o object) args() []string {
	if len(o.Spec.Template.Spec.Containers) == 0 {
		return nil
	}
	return o.Spec.Template.Spec.Containers[0].Args
}

func (o object) volumeSecret(name string) string {
	for _, v := range o.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v.Secret.SecretName
		}
	}
	return ""
}

// TestTrustReachesEveryNode: by default the trust DaemonSet has no node
// selector and tolerates every taint; the label is an opt-in restriction,
// under the extension's name and its inverse.
func TestTrustReachesEveryNode(t *testing.T) {
	base := []string{"--set", "connectionString=" + cs, "--set", "service.clusterIP=192.100.100.1", "--set", "cert-manager.install=false"}
	for _, c := range []struct {
		name     string
		set      []string
		selector bool
	}{
		{"default", nil, false},
		{"skipNodeSelector=false", []string{"trustDistribution.skipNodeSelector=false"}, true},
		{"useNodeSelector=true", []string{"trustDistribution.useNodeSelector=true"}, true},
		{"useNodeSelector wins", []string{"trustDistribution.skipNodeSelector=false", "trustDistribution.useNodeSelector=false"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := slices.Clone(base)
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			ds, ok := mustRender(t, args...)["DaemonSet/outpost-trust"]
			if !ok {
				t.Fatal("no trust DaemonSet")
			}
			spec := ds.Spec.Template.Spec
			want := map[string]string(nil)
			if c.selector {
				want = map[string]string{"containerd-configured-by": "connected-registry"}
			}
			if !mapsEqual(spec.NodeSelector, want) {
				t.Errorf("nodeSelector %v, want %v", spec.NodeSelector, want)
			}
			if len(spec.Tolerations) != 1 || spec.Tolerations[0]["operator"] != "Exists" {
				t.Errorf("tolerations %v, want every taint tolerated", spec.Tolerations)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// userCert is a CA and a server certificate for the cluster IP, as a user
// brings them, base64-encoded as the tutorial does (base64 -w0).
type userCert struct{ crt, key, cacrt string }

func newUserCert(t *testing.T, ip string) userCert {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "User CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(ip)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(typ string, der []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	return userCert{crt: b64("CERTIFICATE", der), key: b64("EC PRIVATE KEY", keyDER), cacrt: b64("CERTIFICATE", caDER)}
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "protected-settings-extension.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// convert runs the documented conversion on a settings file and returns
// the values file.
func convert(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	values, err := helmvalues.Convert(helmvalues.File{Name: path, Data: b})
	if err != nil {
		t.Fatalf("helm-values: %v", err)
	}
	out, err := helmvalues.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTutorialSettingsFile: the tutorial's protected settings file, with
// dotted keys, given to the chart as is and converted by helm-values,
// renders the user's certificate in files mode: not cert-manager's, not
// the built-in CA's.
func TestTutorialSettingsFile(t *testing.T) {
	const ip = "192.100.100.1"
	user := newUserCert(t, ip)
	file := writeJSON(t, map[string]string{
		"connectionString":  cs,
		"service.clusterIP": ip,
		"tls.crt":           user.crt,
		"tls.key":           user.key,
		"tls.cacrt":         user.cacrt,
	})
	for _, c := range []struct {
		name string
		args []string
	}{
		{"as is", []string{"-f", file}},
		{"as is, cert-manager not installed", []string{"-f", file, "--set", "cert-manager.install=false"}},
		{"converted", []string{"-f", convert(t, file)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, c.args...)
			dep := objs["Deployment/outpost"]
			args := dep.args()
			for _, want := range []string{"--tls-mode=files", "--tls-cert=/etc/outpost/tls/tls.crt", "--tls-key=/etc/outpost/tls/tls.key",
				"--login-server=" + ip + ":443", "--connection-string-file=/etc/outpost/connection/connectionString"} {
				if !slices.Contains(args, want) {
					t.Errorf("registry args %q lack %q", args, want)
				}
			}
			if slices.Contains(args, "--tls-mode=auto") {
				t.Error("auto TLS mode despite the user's certificate")
			}
			if dep.volumeSecret("tls") != "outpost-tls" {
				t.Errorf("tls volume from %q, want outpost-tls", dep.volumeSecret("tls"))
			}
			sec := objs["Secret/outpost-tls"]
			if sec.Data["tls.crt"] != user.crt || sec.Data["tls.key"] != user.key || sec.Data["ca.crt"] != user.cacrt {
				t.Errorf("TLS Secret does not hold the user's certificate, key and CA: %v", sec.Data)
			}
			for k := range objs {
				if strings.HasPrefix(k, "Certificate/") || strings.HasPrefix(k, "Issuer/") || k == "Secret/outpost-ca-key" {
					t.Errorf("%s rendered beside the user's certificate", k)
				}
			}
			if got := objs["Service/outpost"].Spec.ClusterIP; got != ip {
				t.Errorf("service clusterIP %q, want %q", got, ip)
			}
			ds := objs["DaemonSet/outpost-trust"]
			if ds.volumeSecret("ca") != "outpost-tls" || !slices.Contains(ds.args(), "--host="+ip+":443") {
				t.Errorf("trust DaemonSet: CA from %q, args %q", ds.volumeSecret("ca"), ds.args())
			}
		})
	}

	// The tutorial's Kubernetes Secret variant.
	secretFile := writeJSON(t, map[string]string{"connectionString": cs, "service.clusterIP": ip, "tls.secret": "k8secret"})
	for _, args := range [][]string{{"-f", secretFile}, {"-f", convert(t, secretFile)}} {
		objs := mustRender(t, args...)
		dep := objs["Deployment/outpost"]
		if !slices.Contains(dep.args(), "--tls-mode=files") || dep.volumeSecret("tls") != "k8secret" {
			t.Errorf("tls.secret: args %q, tls volume from %q", dep.args(), dep.volumeSecret("tls"))
		}
		if _, ok := objs["Secret/outpost-tls"]; ok {
			t.Error("tls.secret: the chart made a TLS Secret of its own")
		}
	}

	// Extension-style strings for booleans and numbers.
	arc := writeJSON(t, map[string]string{"connectionString": cs, "service.clusterIP": ip, "service.port": "8443",
		"cert-manager.enabled": "false", "trustDistribution.skipNodeSelector": "false", "pvc.storageRequest": "20Gi"})
	for _, args := range [][]string{{"-f", arc}, {"-f", convert(t, arc)}} {
		objs := mustRender(t, args...)
		if !slices.Contains(objs["Deployment/outpost"].args(), "--tls-mode=auto") {
			t.Errorf("cert-manager.enabled \"false\": args %q", objs["Deployment/outpost"].args())
		}
		ds := objs["DaemonSet/outpost-trust"]
		if ds.Spec.Template.Spec.NodeSelector == nil || !slices.Contains(ds.args(), "--host="+ip+":8443") {
			t.Errorf("trustDistribution.skipNodeSelector \"false\" / service.port \"8443\": %+v %q", ds.Spec.Template.Spec.NodeSelector, ds.args())
		}
	}
}

// TestUnknownValues: a value the chart does not know fails rendering and
// conversion with a message naming it, in dotted and nested form.
func TestUnknownValues(t *testing.T) {
	base := []string{"--set", "connectionString=" + cs, "--set", "service.clusterIP=192.100.100.1"}
	for _, c := range []struct {
		name string
		file map[string]any
		want string
	}{
		{"dotted typo", map[string]any{"tls.crtt": "Y2VydA=="}, "'tls.crtt' not allowed"},
		{"nested typo", map[string]any{"tls": map[string]any{"crtt": "Y2VydA=="}}, "'crtt' not allowed"},
		{"unknown top level", map[string]any{"clusterIP": "192.100.100.1"}, "'clusterIP' not allowed"},
		{"bad boolean", map[string]any{"cert-manager.enabled": "no"}, "cert-manager.enabled"},
		{"bad mode", map[string]any{"mode": "ReadOnly"}, "'connected', 'root'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeJSON(t, c.file)
			_, err := render(t, append(slices.Clone(base), "-f", path)...)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "schema") {
				t.Errorf("helm template: got %v, want a schema error saying %q", err, c.want)
			}
		})
	}
	// helm-values refuses what it cannot map, naming the key.
	b, _ := json.Marshal(map[string]string{"tls.crtt": "Y2VydA=="})
	_, err := helmvalues.Convert(helmvalues.File{Name: "settings.json", Data: b})
	if !errors.Is(err, helmvalues.ErrUnknownKey) || !strings.Contains(err.Error(), "tls.crtt") {
		t.Errorf("helm-values: got %v, want the unknown key named", err)
	}
	// A dotted cert-manager.install cannot switch the dependency chart:
	// the chart says so instead of installing cert-manager anyway.
	path := writeJSON(t, map[string]any{"cert-manager.install": "false"})
	if _, err := render(t, append(slices.Clone(base), "-f", path)...); err == nil || !strings.Contains(err.Error(), "--set cert-manager.install=false") {
		t.Errorf("dotted cert-manager.install: got %v", err)
	}
}

// TestRootMode: mode root deploys the top of the hierarchy: no connection
// string (refused if given), the admin password from a Secret, the
// address sites use in the certificate.
func TestRootMode(t *testing.T) {
	base := []string{"--set", "mode=root", "--set", "service.clusterIP=192.100.100.1", "--set", "cert-manager.install=false"}
	objs := mustRender(t, base...)
	dep := objs["Deployment/outpost"]
	args := dep.args()
	for _, a := range args {
		if strings.Contains(a, "connection-string") {
			t.Errorf("root registry started with %q", a)
		}
	}
	if dep.volumeSecret("connection") != "" {
		t.Error("root registry mounts a connection string")
	}
	for k := range objs {
		if strings.Contains(k, "connection-string") {
			t.Errorf("root mode rendered %s", k)
		}
	}
	if !slices.Contains(args, "--admin-password-file=/etc/outpost/admin/password") || dep.volumeSecret("admin") != "outpost-admin" {
		t.Errorf("admin password: args %q, volume from %q", args, dep.volumeSecret("admin"))
	}
	if _, ok := objs["Secret/outpost-admin"]; !ok {
		t.Error("no generated admin Secret")
	}

	// An existing admin Secret, an address for the sites outside the
	// cluster, and the chart's own certificate naming it (built-in CA and
	// cert-manager).
	objs = mustRender(t, append(slices.Clone(base), "--set", "admin.existingSecret=root-admin", "--set", "loginServer=registry.example.com:443",
		"--set", "service.type=LoadBalancer", "--set", "cert-manager.enabled=false")...)
	dep = objs["Deployment/outpost"]
	if dep.volumeSecret("admin") != "root-admin" {
		t.Errorf("admin volume from %q, want root-admin", dep.volumeSecret("admin"))
	}
	if _, ok := objs["Secret/outpost-admin"]; ok {
		t.Error("admin Secret generated despite admin.existingSecret")
	}
	if !slices.Contains(dep.args(), "--login-server=registry.example.com:443") || !slices.Contains(dep.args(), "--tls-host=registry.example.com") {
		t.Errorf("args %q lack the login server and its certificate name", dep.args())
	}
	if objs["Service/outpost"].Spec.Type != "LoadBalancer" {
		t.Errorf("service type %q", objs["Service/outpost"].Spec.Type)
	}
	for login, want := range map[string][]string{"registry.example.com": {"outpost", "outpost.connected-registry.svc", "registry.example.com"}, "203.0.113.7:443": nil} {
		objs = mustRender(t, append(slices.Clone(base), "--set", "loginServer="+login)...)
		crt := objs["Certificate/outpost-tls"].Spec
		if want != nil && !slices.Equal(crt.DNSNames, want) {
			t.Errorf("loginServer %s: certificate DNS names %q, want %q", login, crt.DNSNames, want)
		}
		if want == nil && !slices.Equal(crt.IPAddresses, []string{"192.100.100.1", "203.0.113.7"}) {
			t.Errorf("loginServer %s: certificate IP addresses %q", login, crt.IPAddresses)
		}
	}

	out, err := helm(t, append([]string{"template", "outpost", chart}, append(slices.Clone(base), "--set", "service.type=NodePort", "--set", "service.nodePort=30443")...)...)
	if err != nil || !strings.Contains(out, "  type: NodePort\n") || !strings.Contains(out, "      nodePort: 30443\n") {
		t.Errorf("NodePort service: %v\n%s", err, out)
	}

	for _, set := range []string{"connectionString=" + cs, "existingConnectionStringSecret=site-connection"} {
		_, err := render(t, append(slices.Clone(base), "--set", set)...)
		if err == nil || !strings.Contains(err.Error(), "mode root takes no connection string") {
			t.Errorf("root with %s: got %v, want a refusal", strings.SplitN(set, "=", 2)[0], err)
		}
		if err != nil && strings.Contains(err.Error(), "SyncTokenPassword") {
			t.Error("the refusal shows the connection string")
		}
	}
	// Still a connected registry by default, with a message naming mode root.
	if _, err := render(t, "--set", "service.clusterIP=192.100.100.1"); err == nil || !strings.Contains(err.Error(), "mode: root") {
		t.Errorf("no connection string: got %v", err)
	}
}

// TestPrePullContainer: prePull.enabled adds the pre-pull container to the
// trust DaemonSet, pointed at the CRI socket and the node token Secret,
// with every capability dropped; it is off by default, and refused
// without the node token Secret.
func TestPrePullContainer(t *testing.T) {
	base := []string{"--set", "connectionString=" + cs, "--set", "service.clusterIP=192.100.100.1", "--set", "cert-manager.install=false"}
	ds := mustRender(t, base...)["DaemonSet/outpost-trust"]
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("default: %d containers in the trust DaemonSet, want 1 (pre-pull off)", n)
	}
	if _, err := render(t, append(base, "--set", "prePull.enabled=true")...); err == nil || !strings.Contains(err.Error(), "prePull.nodeTokenSecret") {
		t.Fatalf("prePull without nodeTokenSecret: got %v, want an error naming prePull.nodeTokenSecret", err)
	}
	ds = mustRender(t, append(base, "--set", "prePull.enabled=true", "--set", "prePull.nodeTokenSecret=factory-node-token",
		"--set", "prePull.criSocket=/run/k3s/containerd/containerd.sock")...)["DaemonSet/outpost-trust"]
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 2 || spec.Containers[1].Name != "pre-pull" {
		t.Fatalf("containers %+v, want trust and pre-pull", spec.Containers)
	}
	c := spec.Containers[1]
	for _, want := range []string{"pre-pull", "--server=https://192.100.100.1:443", "--cri-socket=/run/k3s/containerd/containerd.sock", "--password-file=/node-token/password", "--node-name=$(NODE_NAME)"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("pre-pull args %q lack %q", c.Args, want)
		}
	}
	if !c.SecurityContext.ReadOnlyRootFilesystem || !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("pre-pull securityContext %+v, want a read-only root and every capability dropped", c.SecurityContext)
	}
	if ds.volumeSecret("node-token") != "factory-node-token" {
		t.Errorf("node-token volume from %q, want factory-node-token", ds.volumeSecret("node-token"))
	}

	// Node labels from the Kubernetes API: a service account that may get
	// nodes, only with prePull.nodeLabels.
	rbac := []string{"ServiceAccount/outpost-trust-pre-pull", "ClusterRole/outpost-trust-pre-pull-connected-registry", "ClusterRoleBinding/outpost-trust-pre-pull-connected-registry"}
	objs := mustRender(t, append(base, "--set", "prePull.enabled=true", "--set", "prePull.nodeTokenSecret=factory-node-token")...)
	for _, k := range rbac {
		if _, ok := objs[k]; ok {
			t.Errorf("%s rendered without prePull.nodeLabels", k)
		}
	}
	objs = mustRender(t, append(base, "--set", "prePull.enabled=true", "--set", "prePull.nodeTokenSecret=factory-node-token", "--set", "prePull.nodeLabels=true")...)
	for _, k := range rbac {
		if _, ok := objs[k]; !ok {
			t.Errorf("%s not rendered with prePull.nodeLabels", k)
		}
	}
	if args := objs["DaemonSet/outpost-trust"].Spec.Template.Spec.Containers[1].Args; !slices.Contains(args, "--node-labels-from-api") {
		t.Errorf("pre-pull args %q lack --node-labels-from-api", args)
	}
}
