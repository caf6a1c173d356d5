package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveTLS runs a TLS server on 127.0.0.1 that completes handshakes with
// cert, and returns its address.
func serveTLS(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// closedAddr is a 127.0.0.1 address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

const configV2 = `version = 2
root = "/var/lib/containerd"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`

const configV3 = `version = 3
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`

// TestDoctor checks a node prepared by install, then broken one way per
// case, against a real TLS server; the report is a golden file.
func TestDoctor(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Test CA")
	other := newTestCA(t, "Other CA")
	addr := serveTLS(t, ca.serverCert(t))
	down := closedAddr(t)
	hostDir := func(root, host string) string { return filepath.Join(root, "etc/containerd/certs.d", host) }
	cases := []struct {
		name   string
		host   string
		caPEM  []byte
		damage func(t *testing.T, root, host string)
	}{
		{name: "good"},
		{name: "good-v3", damage: func(t *testing.T, root, _ string) {
			writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte(configV3))
		}},
		{name: "config-missing", damage: func(t *testing.T, root, _ string) {
			_ = os.Remove(filepath.Join(root, "etc/containerd/config.toml"))
		}},
		{name: "config-bad-toml", damage: func(t *testing.T, root, _ string) {
			writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte("version = 2\n[plugins\n"))
		}},
		{name: "config-path-unset", damage: func(t *testing.T, root, _ string) {
			writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"))
		}},
		{name: "config-path-wrong", damage: func(t *testing.T, root, _ string) {
			writeFile(t, filepath.Join(root, "etc/containerd/config.toml"),
				[]byte(strings.Replace(configV2, "/etc/containerd/certs.d", "/etc/containerd/certs", 1)))
		}},
		{name: "hosts-missing", damage: func(t *testing.T, root, host string) {
			_ = os.Remove(filepath.Join(hostDir(root, host), "hosts.toml"))
		}},
		{name: "hosts-bad-toml", damage: func(t *testing.T, root, host string) {
			writeFile(t, filepath.Join(hostDir(root, host), "hosts.toml"), []byte("server = \"https://x\n"))
		}},
		{name: "hosts-no-host-table", damage: func(t *testing.T, root, host string) {
			writeFile(t, filepath.Join(hostDir(root, host), "hosts.toml"), []byte("server = \"https://"+host+"\"\nca = \"ca.crt\"\n"))
		}},
		{name: "ca-missing", damage: func(t *testing.T, root, host string) {
			_ = os.Remove(filepath.Join(hostDir(root, host), "ca.crt"))
		}},
		{name: "ca-not-pem", damage: func(t *testing.T, root, host string) {
			writeFile(t, filepath.Join(hostDir(root, host), "ca.crt"), []byte("not a certificate\n"))
		}},
		{name: "mirror-missing", damage: func(t *testing.T, root, _ string) {
			_ = os.Remove(filepath.Join(root, "etc/containerd/certs.d/upstream.test:5000/hosts.toml"))
		}},
		{name: "ca-does-not-verify", caPEM: other.pem},
		{name: "host-unreachable", host: down},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host := addr
			if tc.host != "" {
				host = tc.host
			}
			caPEM := ca.pem
			if tc.caPEM != nil {
				caPEM = tc.caPEM
			}
			root := newNode(t)
			writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte(configV2))
			o := installOptions(t, root, caPEM, "upstream.test:5000")
			o.Host = host
			mustInstall(t, o)
			if tc.damage != nil {
				tc.damage(t, root, host)
			}
			rep := Doctor(context.Background(), DoctorOptions{
				Host: host, Root: root, ContainerdConfig: DefaultContainerdConfig,
				ContainerdCertsDir: DefaultContainerdCertsDir, MirrorOf: []string{"upstream.test:5000"},
			})
			var buf bytes.Buffer
			if err := rep.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			if got, want := rep.OK(), strings.HasPrefix(tc.name, "good"); got != want {
				t.Errorf("OK() = %v, want %v\n%s", got, want, buf.String())
			}
			out := strings.ReplaceAll(buf.String(), root, "ROOT")
			out = strings.ReplaceAll(out, host, "127.0.0.1:PORT")
			golden(t, "doctor-"+tc.name+".golden", []byte(out))
		})
	}
}

// TestDoctorDialer: the served-certificate check uses the injected dialer.
func TestDoctorDialer(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Test CA")
	addr := serveTLS(t, ca.serverCert(t))
	root := newNode(t)
	writeFile(t, filepath.Join(root, "etc/containerd/config.toml"), []byte(configV2))
	o := installOptions(t, root, ca.pem)
	o.Host = "127.0.0.1:443"
	mustInstall(t, o)
	var dialed string
	rep := Doctor(context.Background(), DoctorOptions{
		Host: o.Host, Root: root, ContainerdConfig: DefaultContainerdConfig, ContainerdCertsDir: DefaultContainerdCertsDir,
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			dialed = a
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	})
	if !rep.OK() || dialed != "127.0.0.1:443" {
		t.Errorf("dialed %q, report %+v", dialed, rep.Checks)
	}
}
