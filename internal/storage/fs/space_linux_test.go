package fs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

// statfsFree is the free space of dir's volume as statfs reports it.
func statfsFree(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize) //nolint:gosec // a block size is positive
}

// TestSpaceOnFullVolume fills a real 8 MiB tmpfs: the append that runs
// out of space fails with ErrInsufficientStorage and gives its bytes back,
// the session stays usable, writes read as degraded until space is freed,
// and the free bytes reported are the volume's.
func TestSpaceOnFullVolume(t *testing.T) {
	t.Parallel()
	dir := storagetest.SmallVolume(t, "8m")
	ctx := context.Background()
	s, err := fs.NewWithOptions(dir, fs.Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	if want := statfsFree(t, dir); sp.Free != want || sp.Total != 8<<20 {
		t.Fatalf("Space: free %d of %d, want %d of %d", sp.Free, sp.Total, want, 8<<20)
	}
	if sp.WritesDegraded {
		t.Fatalf("empty volume reported degraded: %s", sp.Reason)
	}
	// A filler the test frees later, so that space recovers.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	id, err := s.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	first := ocitest.Random(1, 1<<20)
	if _, err := s.AppendUpload(ctx, "r", id, 0, bytes.NewReader(first)); err != nil {
		t.Fatal(err)
	}
	freeBefore := statfsFree(t, dir)
	n, err := s.AppendUpload(ctx, "r", id, -1, bytes.NewReader(ocitest.Random(2, 10<<20)))
	if !errors.Is(err, storage.ErrInsufficientStorage) || !storage.NoSpace(err) {
		t.Fatalf("append beyond the volume: got %v, want ErrInsufficientStorage", err)
	}
	if n != int64(len(first)) {
		t.Errorf("append beyond the volume returned size %d, want %d (the size before it)", n, len(first))
	}
	if got, _ := s.UploadSize(ctx, "r", id); got != int64(len(first)) {
		t.Errorf("session holds %d bytes after the failed append, want %d", got, len(first))
	}
	if got := statfsFree(t, dir); got != freeBefore {
		t.Errorf("free bytes after the failed append: %d, want %d as before it (its bytes given back)", got, freeBefore)
	}
	sp, _ = s.Space()
	if !sp.WritesDegraded || !strings.Contains(sp.Reason, "lack of space") {
		t.Errorf("after a write failed for lack of space: degraded %v (%q), want degraded", sp.WritesDegraded, sp.Reason)
	}
	if s.Stats().NoSpace != 1 {
		t.Errorf("no-space failures counted: %d, want 1", s.Stats().NoSpace)
	}

	// The session is still consistent: a chunk that fits completes it.
	second := ocitest.Random(3, 4096)
	if _, err := s.AppendUpload(ctx, "r", id, int64(len(first)), bytes.NewReader(second)); err != nil {
		t.Fatalf("append after the failure: %v", err)
	}
	want := digest.FromBytes(append(append([]byte(nil), first...), second...))
	if _, err := s.CommitUpload(ctx, "r", id, want); err != nil {
		t.Fatalf("commit after the failure: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	sp, _ = s.Space()
	if sp.WritesDegraded {
		t.Errorf("after 2 MiB were freed (minimum 1 MiB): still degraded: %s", sp.Reason)
	}
}

// TestStartUploadOnFullVolume fills a tmpfs to the last byte: opening a
// session fails with ErrInsufficientStorage, and the free space below
// the minimum reads as degraded.
func TestStartUploadOnFullVolume(t *testing.T) {
	t.Parallel()
	dir := storagetest.SmallVolume(t, "2m")
	s, err := fs.NewWithOptions(dir, fs.Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(make([]byte, 4<<20))
	_ = f.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("filling the volume: %v, want ENOSPC", werr)
	}
	sp, _ := s.Space()
	if !sp.WritesDegraded || sp.Free != 0 {
		t.Errorf("full volume: free %d, degraded %v, want 0 and degraded", sp.Free, sp.WritesDegraded)
	}
	// tmpfs needs no block for an empty file: the .repo content is what
	// fails.
	if _, err := s.StartUpload(context.Background(), "r"); !errors.Is(err, storage.ErrInsufficientStorage) {
		t.Fatalf("StartUpload on a full volume: got %v, want ErrInsufficientStorage", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "uploads")); len(entries) != 0 {
		t.Errorf("a failed StartUpload left %d files in uploads/", len(entries))
	}
}

// TestNoSpace checks which errors count as a full volume.
func TestNoSpace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"ENOSPC", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{"EDQUOT", &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, true},
		{"sentinel", storage.ErrInsufficientStorage, true},
		{"EIO", &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}, false},
		{"nil", nil, false},
	} {
		if got := storage.NoSpace(tc.err); got != tc.want {
			t.Errorf("%s: NoSpace = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSpaceOfDataDirectory checks the free space on whatever volume holds
// the test's temporary directory against statfs (no root needed).
func TestSpaceOfDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustStore(t, dir)
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	want := statfsFree(t, dir)
	// Other processes write to the same volume meanwhile.
	diff := int64(sp.Free) - int64(want) //nolint:gosec // sizes far below 2^63
	if diff < -64<<20 || diff > 64<<20 || sp.Total < sp.Free {
		t.Errorf("Space: free %d of %d; statfs says %d free", sp.Free, sp.Total, want)
	}
}
