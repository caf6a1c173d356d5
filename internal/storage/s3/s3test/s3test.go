// Package s3test runs a real S3-compatible server (versitygw on a
// directory) on 127.0.0.1 for the tests of a package, started once per
// test binary on first use, and hands each test a fresh bucket.
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// The binary is $OUTPOST_VERSITYGW, versitygw on PATH or
// .tools/bin/versitygw (scripts/install-tools.sh builds it). Without it
// the tests that need it are skipped, except under CI=true, where they
// fail.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

// Credentials of the test server.
const (
	AccessKey = "outposttest"
	SecretKey = "outposttest-secret"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is its URL, http://127.0.0.1:PORT.
	Endpoint string
	// Root is the directory that holds its buckets, one directory each.
	Root string
	cmd  *exec.Cmd
	dir  string
}

var shared storagetest.Server[*Server]

// Main runs the package's tests and then stops the server if one was
// started.
func Main(m *testing.M) int { return shared.Main(m) }

// StopShared stops the shared server if it was started, for a TestMain
// that uses more than one kind of server.
func StopShared() { shared.Stop() }

// Binary returns the path of versitygw, or "" when there is none.
func Binary() string {
	if p := os.Getenv("OUTPOST_VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	// The module root is above the package directory the test runs in.
	dir, err := os.Getwd()
	for err == nil {
		p := filepath.Join(dir, ".tools", "bin", "versitygw")
		if _, serr := os.Stat(p); serr == nil {
			return p
		}
		if _, serr := os.Stat(filepath.Join(dir, "go.mod")); serr == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

// Shared returns the test binary's server, starting it on first use; it
// skips (or under CI fails) t when versitygw is not installed.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin, missing := Binary(), ""
	if bin == "" {
		missing = "versitygw is not installed (scripts/install-tools.sh builds it into .tools/bin)"
	}
	return shared.Get(t, missing, func() (*Server, error) { return Start(bin) })
}

// Start runs versitygw on a free port of 127.0.0.1 over a new temporary
// directory and waits until it answers.
func Start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "outpost-s3test-")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		s := &Server{Endpoint: "http://" + addr, Root: root, dir: dir}
		log, err := os.Create(filepath.Join(dir, "versitygw.log"))
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey, "posix", root) //nolint:gosec // the test's own binary
		s.cmd.Stdout, s.cmd.Stderr = log, log
		if err := s.cmd.Start(); err != nil {
			_ = log.Close()
			return nil, fmt.Errorf("run %s: %w", bin, err)
		}
		if lastErr = s.wait(10 * time.Second); lastErr == nil {
			return s, nil
		}
		s.Kill()
		_ = log.Close()
	}
	b, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("%w; log:\n%s", lastErr, b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// wait polls the endpoint until it answers HTTP at all.
func (s *Server) wait(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw at %s did not answer within %s: %w", s.Endpoint, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the server but keeps its buckets, as an outage of the
// service does; Restart brings it back.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart starts the killed server again on the same address and
// directory.
func (s *Server) Restart() error {
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...) //nolint:gosec // the same command as before
	cmd.Stdout, cmd.Stderr = s.cmd.Stdout, s.cmd.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart versitygw: %w", err)
	}
	s.cmd = cmd
	return s.wait(10 * time.Second)
}

// Stop ends the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	if f, ok := s.cmd.Stdout.(*os.File); ok {
		_ = f.Close()
	}
	_ = os.RemoveAll(s.dir)
}

// Bucket creates a new, empty bucket for t (a directory under Root, as
// the posix backend keeps them) and removes it when t ends.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t-" + hex.EncodeToString(b[:])
	dir := filepath.Join(s.Root, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return name
}
