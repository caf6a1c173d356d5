package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

// startWith opens an upload session of repo holding content.
func startWith(t *testing.T, ctx context.Context, s *fs.Store, content string) string {
	t.Helper()
	id, err := s.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, "r", id, 0, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	return id
}

// age sets the modification time of every file of session id.
func age(t *testing.T, dir, id string, when time.Time) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "uploads", id+"*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("files of upload %s: %v %v", id, files, err)
	}
	for _, f := range files {
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPurgeUploads: sessions idle since before the cutoff are removed with
// their files, and their bytes counted; sessions written since stay and
// resume; sync-engine sessions go regardless of age only when asked;
// files that are not sessions are left alone.
func TestPurgeUploads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	syncCtx := storage.WithOrigin(ctx, storage.OriginSync)
	dir := t.TempDir()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	stale := startWith(t, ctx, s, "abandoned by a client")
	age(t, dir, stale, now.Add(-25*time.Hour))
	// Only the .repo file is old: the content was written lately.
	active := startWith(t, ctx, s, "still going")
	if err := os.Chtimes(filepath.Join(dir, "uploads", active+".repo"), now.Add(-48*time.Hour), now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	syncFresh := startWith(t, syncCtx, s, "partial download")
	syncStale := startWith(t, syncCtx, s, "old partial download")
	age(t, dir, syncStale, now.Add(-30*time.Hour))
	// A crash between creating the content and its .repo file.
	orphan := "0b7c1f3e-6f7a-4d55-9a57-0c9bd3c8d4a1"
	if err := os.WriteFile(filepath.Join(dir, "uploads", orphan), []byte("xy"), 0o640); err != nil {
		t.Fatal(err)
	}
	age(t, dir, orphan, now.Add(-25*time.Hour))
	other := filepath.Join(dir, "uploads", "README")
	if err := os.WriteFile(other, []byte("not a session"), 0o640); err != nil {
		t.Fatal(err)
	}
	age(t, dir, "README", now.Add(-100*time.Hour))

	n, bytes, err := s.PurgeUploads(ctx, now.Add(-24*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("abandoned by a client") + len("old partial download") + 2); n != 3 || bytes != want {
		t.Errorf("purge by age: got %d sessions, %d bytes; want 3, %d", n, bytes, want)
	}
	for _, id := range []string{stale, syncStale, orphan} {
		if files, _ := filepath.Glob(filepath.Join(dir, "uploads", id+"*")); len(files) != 0 {
			t.Errorf("files left of purged upload %s: %v", id, files)
		}
	}
	if _, err := s.UploadSize(ctx, "r", stale); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("UploadSize of a purged session: got %v, want ErrUploadUnknown", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not a session was removed: %v", err)
	}
	// The active client session resumes and commits.
	if got, err := s.AppendUpload(ctx, "r", active, int64(len("still going")), strings.NewReader("!")); err != nil || got != int64(len("still going!")) {
		t.Fatalf("resume the active session: got %d, %v", got, err)
	}
	if _, err := s.CommitUpload(ctx, "r", active, digest.FromString("still going!")); err != nil {
		t.Fatalf("commit the active session: %v", err)
	}

	// At start-up: every sync session goes, however recent.
	client := startWith(t, ctx, s, "client")
	n, bytes, err = s.PurgeUploads(ctx, now.Add(-24*time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || bytes != int64(len("partial download")) {
		t.Errorf("start-up purge: got %d sessions, %d bytes; want 1, %d", n, bytes, len("partial download"))
	}
	if _, err := s.UploadSize(ctx, "r", syncFresh); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("sync session after the start-up purge: got %v, want ErrUploadUnknown", err)
	}
	if got, err := s.UploadSize(ctx, "r", client); err != nil || got != int64(len("client")) {
		t.Errorf("client session after the start-up purge: got %d, %v; want %d", got, err, len("client"))
	}
	// A committed or cancelled sync session leaves no marker behind.
	id := startWith(t, syncCtx, s, "done")
	if _, err := s.CommitUpload(ctx, "r", id, digest.FromString("done")); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "uploads", id+"*")); len(files) != 0 {
		t.Errorf("files left of a committed sync session: %v", files)
	}
}
