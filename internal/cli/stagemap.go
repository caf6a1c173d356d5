package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/reference"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/kube"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// imageMapper turns the image names of Kubernetes manifests into
// repositories of the root. A name counts when its registry host is one
// that serves the root's repositories: the root's own address, the login
// server of any connected registry (sites name their images with their
// own address), or an alias the user gives. A name without a registry
// host ("apps/web:1", "nginx:1") counts when the root has that image
// under the repository a docker.io mirror would ask for
// ("library/nginx"), since it then reaches the site through the mirror.
type imageMapper struct {
	hosts map[string]bool // by hostKey
	names []string        // the hosts as given, for messages
	// bare reports whether the root has repo:ref; nil skips names
	// without a registry host, for the reason in bareNote.
	bare     func(repo, ref string) (bool, error)
	bareNote string
}

// hostKey normalizes a registry host: lower case, and without the port
// 443 that a name may leave out (10.0.0.5 and 10.0.0.5:443 are one host).
func hostKey(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if strings.Contains(h, "://") {
		if u, err := url.Parse(h); err == nil {
			h = u.Host
		}
	}
	if host, port, err := net.SplitHostPort(h); err == nil && port == "443" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return h
}

func newImageMapper(hosts []string) *imageMapper {
	m := &imageMapper{hosts: map[string]bool{}}
	for _, h := range hosts {
		if h == "" || m.hosts[hostKey(h)] {
			continue
		}
		m.hosts[hostKey(h)] = true
		m.names = append(m.names, h)
	}
	return m
}

// rootMapper maps names to the repositories of root: its address, every
// connected registry's login server, and extra hosts (aliases).
func rootMapper(ctx context.Context, root *client.Client, extra []string) (*imageMapper, error) {
	var crs []protocol.ConnectedRegistry
	if err := root.Do(ctx, http.MethodGet, "/api/v1/connected-registries", nil, &crs); err != nil {
		return nil, fmt.Errorf("--from-manifests: read the connected registries' login servers from %s: %w", root.Server(), err)
	}
	hosts := []string{serverHost(root)}
	for _, c := range crs {
		hosts = append(hosts, c.LoginServer)
	}
	m := newImageMapper(append(hosts, extra...))
	m.bare = func(repo, ref string) (bool, error) { return root.HasManifest(ctx, repo, ref) }
	return m, nil
}

// bareName reports whether an image name has no registry host: its first
// component is no host (no '.' or ':', not localhost, lower case), the
// rule of container runtimes.
func bareName(img string) bool {
	first, _, found := strings.Cut(img, "/")
	if !found {
		return true
	}
	return !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first
}

// resolve returns the root's repository:tag or repository@digest for img,
// or a reason to skip it.
func (m *imageMapper) resolve(img string) (ref, skip string, err error) {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return "", "not an image reference", nil
	}
	path := reference.Path(named)
	tagOrDigest := "latest"
	ref = path + ":latest"
	if d, ok := named.(reference.Digested); ok {
		tagOrDigest, ref = d.Digest().String(), path+"@"+d.Digest().String()
	} else if t, ok := named.(reference.Tagged); ok {
		tagOrDigest, ref = t.Tag(), path+":"+t.Tag()
	}
	if !bareName(img) {
		if !m.hosts[hostKey(reference.Domain(named))] {
			return "", "not hosted by " + strings.Join(m.names, ", ") + " (add --registry-alias " + reference.Domain(named) + " if it is)", nil
		}
		return ref, "", nil
	}
	if m.bare == nil {
		return "", m.bareNote, nil
	}
	has, err := m.bare(path, tagOrDigest)
	if err != nil {
		return "", "", fmt.Errorf("--from-manifests: %s: %w", img, err)
	}
	if !has {
		return "", "a name without a registry host, and the root has no " + ref, nil
	}
	return ref, "", nil
}

// manifestImages reads Kubernetes YAML files or directories and returns
// the images m maps to the root's repositories, warning about the others.
func manifestImages(paths []string, m *imageMapper, warn io.Writer) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
	}
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
		imgs, err := kube.Images(fh)
		_ = fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, img := range imgs {
			ref, skip, err := m.resolve(img)
			if err != nil {
				return nil, err
			}
			if skip != "" {
				fmt.Fprintf(warn, "skipping %s (in %s): %s\n", img, f, skip)
				continue
			}
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

func serverHost(c *client.Client) string {
	u, err := url.Parse(c.Server())
	if err != nil {
		return ""
	}
	return u.Host
}
