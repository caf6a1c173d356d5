package storagetest

import (
	"os"
	"sync"
	"testing"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Server is a real server (an S3 service, a database) that the tests of
// one test binary share: started on first use, stopped by Main.
type Server[T interface{ Stop() }] struct {
	once    sync.Once
	started bool
	v       T
	err     error
}

// Get returns the server, starting it with start on first use. When
// missing is not empty the server's software is not installed: t is
// skipped with that message, or fails under CI=true, where everything the
// tests need must be there.
func (s *Server[T]) Get(t testing.TB, missing string, start func() (T, error)) T {
	t.Helper()
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	s.once.Do(func() {
		s.v, s.err = start()
		s.started = s.err == nil
	})
	if s.err != nil {
		t.Fatalf("start test server: %v", s.err)
	}
	return s.v
}

// Main runs the package's tests, then stops the server if it started.
func (s *Server[T]) Main(m *testing.M) int {
	code := m.Run()
	s.Stop()
	return code
}

// Stop stops the server if it started.
func (s *Server[T]) Stop() {
	if s.started {
		s.v.Stop()
		s.started = false
	}
}

// Closing registers m's Close with t, failing t if it fails, and returns
// m.
func Closing[M storage.Metadata](t testing.TB, m M) M {
	t.Helper()
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// Main runs a package's tests, then calls each stop (such as the
// StopShared of s3test and pgtest), for a TestMain that shares more than
// one kind of server.
func Main(m *testing.M, stops ...func()) int {
	code := m.Run()
	for _, stop := range stops {
		stop()
	}
	return code
}
