package fs_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func newStore(t *testing.T) *fs.Store {
	t.Helper()
	s, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.TestBlobStore(t, func(t *testing.T) (storage.BlobStore, storage.Uploads) {
		s := newStore(t)
		return s, s
	})
}

// TestOpenReturnsFile checks the promise the HTTP server relies on for
// sendfile: Open hands out an *os.File.
func TestOpenReturnsFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	id, err := s.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, "r", id, 0, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("hello")
	if _, err := s.CommitUpload(ctx, "r", id, d); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*os.File); !ok {
		t.Fatalf("Open returned %T, want *os.File", rc)
	}
}

// TestSessionSurvivesRestart reopens the store between appends, so that
// the running hash is lost and the commit hashes the content from disk.
func TestSessionSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s1, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s1.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.AppendUpload(ctx, "r", id, 0, strings.NewReader("first ")); err != nil {
		t.Fatal(err)
	}
	s2, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s2.AppendUpload(ctx, "r", id, 6, strings.NewReader("second")); err != nil || n != 12 {
		t.Fatalf("AppendUpload after restart = %d, %v; want 12, nil", n, err)
	}
	if _, err := s2.CommitUpload(ctx, "r", id, digest.FromString("first wrong")); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("CommitUpload with a wrong digest after restart = %v, want ErrDigestMismatch", err)
	}
	id, err = s2.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.AppendUpload(ctx, "r", id, 0, strings.NewReader("first ")); err != nil {
		t.Fatal(err)
	}
	s3, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.AppendUpload(ctx, "r", id, 6, strings.NewReader("second")); err != nil {
		t.Fatal(err)
	}
	if n, err := s3.CommitUpload(ctx, "r", id, digest.FromString("first second")); err != nil || n != 12 {
		t.Fatalf("CommitUpload after restart = %d, %v; want 12, nil", n, err)
	}
}
