package fs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

// commit stores data as a blob through an upload session.
func commit(t *testing.T, s *fs.Store, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	id, err := s.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, "r", id, 0, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	if _, err := s.CommitUpload(ctx, "r", id, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func blobFile(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

// damage is one way a blob file goes bad on disk.
type damage struct {
	name string
	do   func(t *testing.T, path string)
}

var damages = []damage{
	{"truncated to 0", func(t *testing.T, p string) { truncate(t, p, 0) }},
	{"truncated to 1000", func(t *testing.T, p string) { truncate(t, p, 1000) }},
	{"one byte flipped", func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, 2000); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x01
		if _, err := f.WriteAt(b, 2000); err != nil {
			t.Fatal(err)
		}
	}},
}

func truncate(t *testing.T, p string, n int64) {
	t.Helper()
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

// wantCorrupt checks that d no longer opens and that its file went to
// quarantine/.
func wantCorrupt(t *testing.T, s *fs.Store, dir string, d digest.Digest) {
	t.Helper()
	ctx := context.Background()
	rc, _, err := s.Open(ctx, d)
	if err == nil {
		rc.Close()
		t.Fatalf("Open of a corrupt blob succeeded, want an error")
	}
	if !errors.Is(err, storage.ErrBlobUnknown) || !errors.Is(err, storage.ErrBlobCorrupt) {
		t.Fatalf("Open: got %v, want ErrBlobUnknown and ErrBlobCorrupt", err)
	}
	if _, err := os.Stat(blobFile(dir, d)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the corrupt file is still in blobs/ (stat: %v)", err)
	}
	q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "sha256-"+d.Encoded()+"-*"))
	if len(q) != 1 {
		t.Errorf("quarantine holds %d copies of %s, want 1", len(q), d)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("Stat after quarantine: got %v, want ErrBlobUnknown", err)
	}
	if _, _, err := s.Open(ctx, d); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("second Open: got %v, want ErrBlobUnknown", err)
	}
}

// TestCorruptBlobNeverOpens damages blob files and checks that Open never
// hands them out: after a restart (first open since start, which hashes),
// and in the process that verified them (the size and file identity
// recorded at verification).
func TestCorruptBlobNeverOpens(t *testing.T) {
	t.Parallel()
	data := ocitest.Random(16, 4096)
	for _, dm := range damages {
		t.Run("after restart/"+dm.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			d := commit(t, mustStore(t, dir), data)
			dm.do(t, blobFile(dir, d))
			s := mustStore(t, dir)
			wantCorrupt(t, s, dir, d)
			if got := s.Stats().Corrupt[fs.TriggerRead]; got != 1 {
				t.Errorf("corrupt blobs counted: got %d, want 1", got)
			}
		})
	}
	for _, dm := range damages[:2] {
		t.Run("same process/"+dm.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := mustStore(t, dir)
			d := commit(t, s, data)
			wantIntact(t, s, d, data)
			dm.do(t, blobFile(dir, d))
			wantCorrupt(t, s, dir, d)
		})
	}
	t.Run("same process/Stat after truncation", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := mustStore(t, dir)
		d := commit(t, s, data)
		truncate(t, blobFile(dir, d), 1000)
		// Stat is what sync asks before skipping a download: it must
		// not report the blob as present.
		if _, err := s.Stat(context.Background(), d); !errors.Is(err, storage.ErrBlobUnknown) || !errors.Is(err, storage.ErrBlobCorrupt) {
			t.Errorf("Stat of a blob whose size changed: got %v, want ErrBlobUnknown and ErrBlobCorrupt", err)
		}
		if _, err := os.Stat(blobFile(dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the truncated file is still in blobs/ (stat: %v)", err)
		}
	})
	t.Run("same process/file replaced", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := mustStore(t, dir)
		d := commit(t, s, data)
		bad := append([]byte(nil), data...)
		bad[100] ^= 0x80
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, bad, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, blobFile(dir, d)); err != nil {
			t.Fatal(err)
		}
		wantCorrupt(t, s, dir, d)
	})
}

func mustStore(t *testing.T, dir string) *fs.Store {
	t.Helper()
	s, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantIntact(t *testing.T, s *fs.Store, d digest.Digest, data []byte) {
	t.Helper()
	rc, size, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatalf("Open %s: %v", d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) || digest.FromBytes(b) != d {
		t.Fatalf("Open %s: got %d bytes hashing to %s, want %d bytes", d, size, digest.FromBytes(b), len(data))
	}
}

// TestFirstOpenHashesOnce opens a blob not verified since start from
// many goroutines: it is hashed once, and every open gets it.
func TestFirstOpenHashesOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := ocitest.Random(17, 1<<20)
	d := commit(t, mustStore(t, dir), data)
	s := mustStore(t, dir)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { wantIntact(t, s, d, data) })
	}
	wg.Wait()
	if got := s.Stats().Verified[fs.TriggerRead]; got != 1 {
		t.Errorf("hashes on first open: got %d, want 1", got)
	}
	wantIntact(t, s, d, data)
	if got := s.Stats().Verified[fs.TriggerRead]; got != 1 {
		t.Errorf("hashes after a later open: got %d, want still 1", got)
	}
}

// TestCommittedBlobIsNotHashedAgain checks that content verified while
// it was uploaded is served without reading it once more.
func TestCommittedBlobIsNotHashedAgain(t *testing.T) {
	t.Parallel()
	s := mustStore(t, t.TempDir())
	data := ocitest.Random(18, 8192)
	d := commit(t, s, data)
	wantIntact(t, s, d, data)
	if got := s.Stats().Verified[fs.TriggerRead]; got != 0 {
		t.Errorf("hashes of a blob committed by this process: got %d, want 0", got)
	}
}

// TestScrub damages two of five blobs in place (which Open in the same
// process may not notice: a write in the same clock tick can leave the
// file's times as they were) and checks that a scrub finds exactly those,
// quarantines them and leaves the others served.
func TestScrub(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustStore(t, dir)
	var ds []digest.Digest
	var blobs [][]byte
	for i := range 5 {
		b := ocitest.Random(uint64(100+i), 3000+i)
		blobs = append(blobs, b)
		ds = append(ds, commit(t, s, b))
	}
	damages[2].do(t, blobFile(dir, ds[1])) // flipped byte
	damages[1].do(t, blobFile(dir, ds[3])) // truncated to 1000
	var found []digest.Digest
	rep, err := s.Scrub(context.Background(), func(c fs.Corruption) { found = append(found, c.Digest) })
	if err != nil {
		t.Fatalf("Scrub: %v", err)
	}
	if rep.Blobs != 5 {
		t.Errorf("blobs scrubbed: got %d, want 5", rep.Blobs)
	}
	if len(rep.Corrupt) != 2 || len(found) != 2 {
		t.Fatalf("corrupt blobs: got %v (reported %v), want %s and %s", rep.Corrupt, found, ds[1], ds[3])
	}
	for _, c := range rep.Corrupt {
		if c.Digest != ds[1] && c.Digest != ds[3] {
			t.Errorf("intact blob %s reported corrupt", c.Digest)
		}
		if c.Quarantine == "" {
			t.Errorf("%s: no quarantine path", c.Digest)
		} else if _, err := os.Stat(c.Quarantine); err != nil {
			t.Errorf("%s: quarantined copy: %v", c.Digest, err)
		}
	}
	for _, i := range []int{0, 2, 4} {
		wantIntact(t, s, ds[i], blobs[i])
	}
	for _, i := range []int{1, 3} {
		if _, _, err := s.Open(context.Background(), ds[i]); !errors.Is(err, storage.ErrBlobUnknown) {
			t.Errorf("Open of scrubbed-out blob %d: got %v, want ErrBlobUnknown", i, err)
		}
	}
	st := s.Stats()
	if st.Verified[fs.TriggerScrub] != 4 || st.Corrupt[fs.TriggerScrub] != 2 {
		t.Errorf("scrub counts: verified %d, corrupt %d; want 4 (3 intact, 1 flipped; the truncated one fails on size) and 2",
			st.Verified[fs.TriggerScrub], st.Corrupt[fs.TriggerScrub])
	}
	// A good copy committed again takes the corrupt one's place.
	if got := commit(t, s, blobs[1]); got != ds[1] {
		t.Fatal(got)
	}
	wantIntact(t, s, ds[1], blobs[1])
}

// TestScrubStopsWithContext checks that a cancelled scrub ends.
func TestScrubStopsWithContext(t *testing.T) {
	t.Parallel()
	s := mustStore(t, t.TempDir())
	commit(t, s, []byte("a"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Scrub(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Scrub with a cancelled context: got %v, want context.Canceled", err)
	}
}
