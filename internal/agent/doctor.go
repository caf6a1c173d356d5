package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DoctorOptions say which registry a node should trust and where to look.
type DoctorOptions struct {
	Host               string
	Root               string
	ContainerdConfig   string // node path of containerd's config.toml
	ContainerdCertsDir string // the certs directory config_path must name
	MirrorOf           []string
	// CRISocket, when set, is checked too: the pre-pull agent pulls
	// through it (a path in the agent's own filesystem, not under Root).
	CRISocket string
	// Dial opens the connection for the served-certificate check; nil
	// uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds the TLS check (5 s when zero).
	Timeout time.Duration
}

// Status is the outcome of one check.
type Status string

// Statuses of a Check; a skipped check depends on one that failed.
const (
	OK   Status = "ok"
	Fail Status = "FAIL"
	Skip Status = "skip"
)

// Check is one line of a doctor report.
type Check struct {
	Status Status
	Name   string
	Detail string
	Fix    string // set when Status is Fail
}

// Report is the outcome of Doctor.
type Report struct {
	Checks []Check
}

// OK reports whether no check failed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if c.Status != OK {
			return false
		}
	}
	return true
}

// WriteText prints one line per check and a "fix:" line under each
// failure.
func (r Report) WriteText(w io.Writer) error {
	for _, c := range r.Checks {
		if _, err := fmt.Fprintf(w, "%-4s  %s: %s\n", c.Status, c.Name, c.Detail); err != nil {
			return err
		}
		if c.Fix != "" {
			if _, err := fmt.Fprintf(w, "      fix: %s\n", c.Fix); err != nil {
				return err
			}
		}
	}
	return nil
}

// hostsDoc is the part of a hosts.toml the doctor reads.
type hostsDoc struct {
	Server string               `toml:"server"`
	Host   map[string]hostEntry `toml:"host"`
}

type hostEntry struct {
	Capabilities []string `toml:"capabilities"`
	CA           any      `toml:"ca"` // a path or a list of paths
}

// doctor carries the state shared by the checks.
type doctor struct {
	o    DoctorOptions
	r    Report
	pool *x509.CertPool // the installed CA, when it loaded
}

// Doctor checks that containerd on the node trusts o.Host: config_path,
// hosts.toml, the CA file, each mirror, and that the CA verifies the
// certificate the host serves. It never changes the node.
func Doctor(ctx context.Context, o DoctorOptions) Report {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	d := &doctor{o: o}
	d.configPath()
	caPath := d.hostsTOML()
	d.caFile(caPath)
	for _, up := range o.MirrorOf {
		d.mirror(up)
	}
	d.served(ctx)
	if o.CRISocket != "" {
		d.cri(ctx)
	}
	return d.r
}

// cri checks that the CRI socket answers a Version call.
func (d *doctor) cri(ctx context.Context) {
	name := "CRI socket " + d.o.CRISocket
	fix := "mount the runtime's socket into the agent (chart: prePull.criSocket) or give --cri-socket the socket's path"
	c, err := DialCRI(d.o.CRISocket)
	if err != nil {
		d.add(Fail, name, err.Error(), fix)
		return
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	v, err := c.Version(cctx)
	if err != nil {
		d.add(Fail, name, err.Error(), fix)
		return
	}
	d.add(OK, name, "reachable: "+v, "")
}

func (d *doctor) add(s Status, name, detail, fix string) {
	d.r.Checks = append(d.r.Checks, Check{Status: s, Name: name, Detail: detail, Fix: fix})
}

func (d *doctor) node(p string) string {
	if d.o.Root == "" {
		return p
	}
	return filepath.Join(d.o.Root, p)
}

// installCommand is the command that repairs the node's files.
func (d *doctor) installCommand() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run: outpost trust install --host %s --ca-file <CA of the Outpost at %s>", d.o.Host, d.o.Host)
	if d.o.Root != "" {
		fmt.Fprintf(&b, " --root %s", d.o.Root)
	}
	if d.o.ContainerdCertsDir != DefaultContainerdCertsDir {
		fmt.Fprintf(&b, " --containerd-certs-dir %s", d.o.ContainerdCertsDir)
	}
	for _, m := range d.o.MirrorOf {
		fmt.Fprintf(&b, " --mirror-of %s", m)
	}
	return b.String()
}

// registryTables are, per config version, the table holding config_path.
var registryTables = map[int64][]string{
	1: {"plugins", "cri", "registry"},
	2: {"plugins", "io.containerd.grpc.v1.cri", "registry"},
	3: {"plugins", "io.containerd.cri.v1.images", "registry"},
}

func tableName(path []string) string {
	return fmt.Sprintf("[plugins.%q.registry]", path[1])
}

// configPath checks that containerd's config names the certs directory.
func (d *doctor) configPath() {
	const name = "containerd config_path"
	cfg, want := d.o.ContainerdConfig, filepath.Clean(d.o.ContainerdCertsDir)
	fix := fmt.Sprintf("set config_path = %q in %s of %s, then restart containerd", want, tableName(registryTables[2]), cfg)
	b, err := os.ReadFile(d.node(cfg))
	if err != nil {
		d.add(Fail, name, fmt.Sprintf("cannot read %s: %v", cfg, unwrapPath(err)), fix)
		return
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		d.add(Fail, name, fmt.Sprintf("%s is not valid TOML: %v", cfg, err), "repair "+cfg+", then restart containerd")
		return
	}
	version, _ := doc["version"].(int64)
	if version == 0 {
		version = 1
	}
	path, ok := registryTables[version]
	if !ok {
		d.add(Fail, name, fmt.Sprintf("%s has unknown config version %d", cfg, version), fix)
		return
	}
	if version == 3 {
		fix = fmt.Sprintf("set config_path = %q in [plugins.'io.containerd.cri.v1.images'.registry] of %s, then restart containerd", want, cfg)
	} else {
		fix = fmt.Sprintf("set config_path = %q in %s of %s, then restart containerd", want, tableName(path), cfg)
	}
	var v any = doc
	for _, k := range path {
		t, _ := v.(map[string]any)
		v = t[k]
	}
	reg, _ := v.(map[string]any)
	got, _ := reg["config_path"].(string)
	if got == "" {
		d.add(Fail, name, fmt.Sprintf("config_path is not set in %s of %s (version %d)", tableName(path), cfg, version), fix)
		return
	}
	for _, p := range filepath.SplitList(got) {
		if filepath.Clean(p) == want {
			d.add(OK, name, fmt.Sprintf("%s (version %d) points at %s", cfg, version, want), "")
			return
		}
	}
	d.add(Fail, name, fmt.Sprintf("config_path in %s is %q, not %s", cfg, got, want), fix)
}

// hostsTOML checks Outpost's own hosts.toml and returns the node path of
// the CA it names (the directory's ca.crt when it names none).
func (d *doctor) hostsTOML() string {
	const name = "hosts.toml"
	dir := filepath.Join(d.o.ContainerdCertsDir, d.o.Host)
	path := filepath.Join(dir, hostsFile)
	caPath := filepath.Join(dir, caFile)
	doc, err := readHostsDoc(d.node(path))
	if err != nil {
		fix := d.installCommand()
		if !errors.Is(err, fs.ErrNotExist) {
			fix = "repair or remove " + path + ", then " + fix
		}
		d.add(Fail, name, fmt.Sprintf("%s: %v", path, err), fix)
		return caPath
	}
	e, ok := doc.hostEntry(d.o.Host)
	if !ok {
		d.add(Fail, name, fmt.Sprintf("%s has no [host.%q] table", path, "https://"+d.o.Host), d.installCommand()+" --force")
		return caPath
	}
	if !slices.Contains(e.Capabilities, "pull") || !slices.Contains(e.Capabilities, "resolve") {
		d.add(Fail, name, fmt.Sprintf("%s: host https://%s lacks the pull and resolve capabilities (has %q)", path, d.o.Host, e.Capabilities),
			d.installCommand()+" --force")
		return caPath
	}
	ca := e.caPaths(dir)
	if len(ca) == 0 {
		d.add(Fail, name, fmt.Sprintf("%s: host https://%s has no ca, so containerd does not trust the Outpost CA", path, d.o.Host),
			d.installCommand()+" --force")
		return caPath
	}
	d.add(OK, name, fmt.Sprintf("%s has [host.%q] with ca %s", path, "https://"+d.o.Host, ca[0]), "")
	return ca[0]
}

// caFile checks that the CA named by hosts.toml is a PEM CA certificate.
func (d *doctor) caFile(path string) {
	const name = "ca.crt"
	b, err := os.ReadFile(d.node(path))
	if err != nil {
		d.add(Fail, name, fmt.Sprintf("cannot read %s: %v", path, unwrapPath(err)), d.installCommand())
		return
	}
	certs, err := parseCerts(b)
	if err != nil {
		d.add(Fail, name, fmt.Sprintf("%s: %v", path, err), d.installCommand())
		return
	}
	pool := x509.NewCertPool()
	var subjects []string
	for _, c := range certs {
		if c.IsCA {
			pool.AddCert(c)
			subjects = append(subjects, c.Subject.CommonName)
		}
	}
	if len(subjects) == 0 {
		d.add(Fail, name, fmt.Sprintf("%s holds no CA certificate (only %q)", path, certs[0].Subject.CommonName), d.installCommand())
		return
	}
	d.pool = pool
	d.add(OK, name, fmt.Sprintf("%s holds CA %q", path, strings.Join(subjects, `", "`)), "")
}

// mirror checks that containerd asks Outpost first for upstream images.
func (d *doctor) mirror(up string) {
	name := "mirror " + up
	path := filepath.Join(d.o.ContainerdCertsDir, up, hostsFile)
	doc, err := readHostsDoc(d.node(path))
	if err != nil {
		d.add(Fail, name, fmt.Sprintf("%s: %v", path, err), d.installCommand())
		return
	}
	if _, ok := doc.hostEntry(d.o.Host); !ok {
		d.add(Fail, name, fmt.Sprintf("%s has no [host.%q] table", path, "https://"+d.o.Host), d.installCommand()+" --force")
		return
	}
	d.add(OK, name, fmt.Sprintf("%s sends pulls to https://%s first, then %s", path, d.o.Host, doc.Server), "")
}

// served dials the host and verifies the certificate it serves against
// the installed CA, for the host's name or IP address.
func (d *doctor) served(ctx context.Context) {
	const name = "served certificate"
	if d.pool == nil {
		d.add(Skip, name, "no CA to verify it with (see ca.crt)", "")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	dial := d.o.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	addr := d.o.Host
	serverName := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		serverName = h
	} else {
		addr = net.JoinHostPort(addr, "443")
	}
	serverName = strings.Trim(serverName, "[]")
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		d.add(Fail, name, fmt.Sprintf("cannot connect to %s: %v", d.o.Host, err),
			fmt.Sprintf("check that Outpost is running and that this node reaches %s (address, port, firewall)", d.o.Host))
		return
	}
	conn := tls.Client(raw, &tls.Config{RootCAs: d.pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		d.add(Fail, name, fmt.Sprintf("the certificate %s serves does not verify against the installed CA: %v", d.o.Host, err),
			fmt.Sprintf("install the CA that issued the certificate of %s (`outpost pki ca` on the server prints it); %s", d.o.Host, d.installCommand()))
		return
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	d.add(OK, name, fmt.Sprintf("%s serves %q, which verifies against the installed CA", d.o.Host, leaf.Subject.CommonName), "")
}

func readHostsDoc(path string) (*hostsDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	var doc hostsDoc
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not valid TOML: %w", err)
	}
	return &doc, nil
}

// hostEntry finds the table of host; containerd reads a key without a
// scheme as https.
func (h *hostsDoc) hostEntry(host string) (hostEntry, bool) {
	for _, k := range []string{"https://" + host, host} {
		if e, ok := h.Host[k]; ok {
			return e, true
		}
	}
	return hostEntry{}, false
}

// caPaths returns the node paths of the CA files; containerd resolves a
// relative path against the host directory.
func (e hostEntry) caPaths(dir string) []string {
	var list []string
	switch v := e.CA.(type) {
	case string:
		list = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				list = append(list, s)
			}
		}
	}
	for i, p := range list {
		if !filepath.IsAbs(p) {
			list[i] = filepath.Join(dir, p)
		}
	}
	return list
}

// unwrapPath drops the path from an fs error: reports name node paths,
// not the agent's (Root-prefixed) ones.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
