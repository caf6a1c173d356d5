// Package pgtest runs a real PostgreSQL server for the tests of a
// package: initdb into a temporary directory and postgres listening only
// on a unix socket there, started once per test binary on first use.
// Each test gets a schema of its own in one database.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// The server binaries are taken from $OUTPOST_PG_BIN, else from
// /usr/lib/postgresql/15/bin (Debian's postgresql-15). PostgreSQL refuses
// to run as root, so as root the server runs as the postgres user. Without
// the binaries the tests that need them are skipped, except under
// CI=true, where they fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

// Server is a running PostgreSQL.
type Server struct {
	dir    string // holds data/, the socket and the log
	bin    string
	cred   *syscall.Credential
	socket string
	port   int
	opts   string // the server options of pg_ctl start
}

var shared storagetest.Server[*Server]

// Main runs the package's tests and then stops the server if one was
// started.
func Main(m *testing.M) int { return shared.Main(m) }

// StopShared stops the shared server if it was started, for a TestMain
// that uses more than one kind of server.
func StopShared() { shared.Stop() }

// BinDir returns the directory of initdb and postgres, or "".
func BinDir() string {
	for _, d := range []string{os.Getenv("OUTPOST_PG_BIN"), "/usr/lib/postgresql/15/bin"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	return ""
}

// Shared returns the test binary's server, starting it on first use.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin, missing := BinDir(), ""
	if bin == "" {
		missing = "PostgreSQL 15 is not installed (scripts/install-tools.sh installs postgresql-15)"
	}
	return shared.Get(t, missing, func() (*Server, error) { return Start(bin) })
}

// Start runs initdb and postgres from bin in a new temporary directory.
func Start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "outpost-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, socket: dir, port: 5432}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)} //nolint:gosec // IDs from the user database
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := s.command("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// fsync off: a killed server loses no commit (the kernel has it),
	// only a crash of the machine would, which a test never sees.
	s.opts = fmt.Sprintf("-k %s -c listen_addresses= -c fsync=off -c full_page_writes=off -c max_connections=200", dir)
	if err := s.Restart(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dsn("postgres", ""))
	if err != nil {
		s.Stop()
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE outpost"); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...) //nolint:gosec // the test's own binaries
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (s *Server) dsn(db, schema string) string {
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.socket, s.port, db)
	if schema != "" {
		dsn += " search_path=" + schema
	}
	return dsn
}

// Restart starts the server (again, after Kill) on the same socket and
// data.
func (s *Server) Restart() error {
	if out, err := s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "log"), "-o", s.opts, "-w", "-t", "30", "start").CombinedOutput(); err != nil {
		b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, b)
	}
	return nil
}

// Kill stops the server at once, as a crash or an outage does; Restart
// brings it back with its data.
func (s *Server) Kill() {
	_ = s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").Run()
}

// Stop ends the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	_ = os.RemoveAll(s.dir)
}

// DSN returns a connection string to an empty schema of its own for t
// (dropped when t ends), in the server's database outpost.
func (s *Server) DSN(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dsn("outpost", ""))
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, s.dsn("outpost", ""))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	return s.dsn("outpost", schema)
}
