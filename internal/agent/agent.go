// Package agent is the node agent behind `outpost trust`: it makes a
// node's container runtimes trust an Outpost registry by writing
// containerd's certs.d/<host:port>/hosts.toml and ca.crt and docker's
// certs.d/<host:port>/ca.crt (and the same under the host's other
// spelling when the port is 443), optionally makes Outpost a transparent
// mirror of upstream registry hosts, removes exactly what it wrote, and
// checks a node (doctor).
//
// Every path on the node is joined to Options.Root, so the agent can run
// in a DaemonSet with the host's filesystem mounted at, say, /host. The
// paths written into hosts.toml are the node's own paths, without Root,
// because containerd reads them on the host.
//
// containerd's hosts.toml format is described in
// https://github.com/containerd/containerd/blob/main/docs/hosts.md.
package agent

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Sentinel errors; wrapped with the path or host they concern.
var (
	// ErrForeignFile: a file that outpost did not write is in the way.
	ErrForeignFile = errors.New("file not written by outpost")
	// ErrInvalidOptions: a flag value cannot be used.
	ErrInvalidOptions = errors.New("invalid trust options")
	// ErrBadCA: the CA file is not a PEM certificate.
	ErrBadCA = errors.New("bad CA file")
	// ErrNothingToDo: no certs directory exists on the node.
	ErrNothingToDo = errors.New("no certs directory to write")
)

// Default node paths.
const (
	DefaultContainerdCertsDir = "/etc/containerd/certs.d"
	DefaultDockerCertsDir     = "/etc/docker/certs.d"
	DefaultContainerdConfig   = "/etc/containerd/config.toml"
)

// File names inside a certs.d host directory.
const (
	hostsFile  = "hosts.toml"
	caFile     = "ca.crt"
	markerFile = ".outpost-trust"
	// backupSuffix names the copy of a foreign file replaced with --force;
	// uninstall puts it back.
	backupSuffix = ".outpost-orig"
)

// Options say which registry a node trusts and where the runtimes look.
type Options struct {
	// Host is the registry as images name it: <ip-or-name>[:<port>].
	Host string
	// CAFile is the CA certificate (PEM) to install. It is read in the
	// agent's own filesystem, not under Root.
	CAFile string
	// Root prefixes every node path ("" or "/" for the agent's own root).
	Root string
	// ContainerdCertsDir is containerd's config_path on the node; empty
	// skips containerd.
	ContainerdCertsDir string
	// DockerCertsDir is docker's certs.d on the node; empty skips docker.
	DockerCertsDir string
	// MirrorOf lists upstream registry hosts (e.g. docker.io,
	// registry.example.com) for which containerd asks Outpost first.
	MirrorOf []string
	// Force replaces foreign files (keeping a copy that uninstall restores).
	Force bool
}

// validate checks the host and directory options and cleans the paths.
func (o *Options) validate() error {
	if err := validHost(o.Host); err != nil {
		return fmt.Errorf("%w: --host %q: %w", ErrInvalidOptions, o.Host, err)
	}
	for _, m := range o.MirrorOf {
		if err := validHost(m); err != nil {
			return fmt.Errorf("%w: --mirror-of %q: %w", ErrInvalidOptions, m, err)
		}
		if m == o.Host || (m != "" && m == o.alias()) {
			return fmt.Errorf("%w: --mirror-of %q is the Outpost host itself", ErrInvalidOptions, m)
		}
	}
	for _, d := range []*string{&o.ContainerdCertsDir, &o.DockerCertsDir} {
		if *d == "" {
			continue
		}
		if !filepath.IsAbs(*d) {
			if o.Root != "" {
				return fmt.Errorf("%w: %q must be absolute with --root", ErrInvalidOptions, *d)
			}
			abs, err := filepath.Abs(*d)
			if err != nil {
				return fmt.Errorf("%w: %q: %w", ErrInvalidOptions, *d, err)
			}
			*d = abs
		}
		*d = filepath.Clean(*d)
	}
	return nil
}

// validHost accepts <name-or-ip>[:<port>] as an image reference's
// registry part, which is also the certs.d directory name.
func validHost(h string) error {
	if h == "" {
		return errors.New("empty")
	}
	if strings.Contains(h, "://") {
		return errors.New("give host[:port] without a scheme")
	}
	if strings.ContainsAny(h, "/\\ \t\"") || h == "." || h == ".." {
		return errors.New("not a registry host")
	}
	name := h
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		var port string
		var err error
		name, port, err = net.SplitHostPort(h)
		if err != nil {
			return err
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	if name == "" {
		return errors.New("empty host name")
	}
	return nil
}

// alias returns the other spelling of Host when its port is HTTPS's
// default: "10.0.0.5" for "10.0.0.5:443" and the reverse. Images named
// either way reach the same registry, and containerd and docker look for
// the directory named exactly as the image's registry part, so both are
// written. It returns "" for any other port.
func (o *Options) alias() string {
	h := o.Host
	if name, port, err := net.SplitHostPort(h); err == nil {
		if port != "443" || name == "" {
			return ""
		}
		if strings.Contains(name, ":") {
			return "[" + name + "]"
		}
		return name
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		return h + ":443"
	}
	if strings.Contains(h, ":") {
		return ""
	}
	return h + ":443"
}

// onNode returns a node path under Root.
func (o *Options) onNode(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

// upstreamServer is the URL containerd falls back to for a mirrored host;
// docker.io's registry API lives at registry-1.docker.io.
func upstreamServer(host string) string {
	if host == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + host
}
