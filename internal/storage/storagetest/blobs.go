// Package storagetest holds the conformance suites every implementation of
// the storage roles must pass. An implementation's own test calls them with
// a constructor of fresh, empty stores:
//
//	func TestConformance(t *testing.T) {
//		storagetest.TestBlobStore(t, func(t *testing.T) (storage.BlobStore, storage.Uploads) { … })
//	}
//
// The suites check what the interface comments in package storage promise,
// and nothing an implementation is free to choose (such as list order where
// none is documented).
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// NewBlobStore returns a fresh, empty blob store and the upload sessions
// that commit into it. It registers its own cleanup with t.
type NewBlobStore func(t *testing.T) (storage.BlobStore, storage.Uploads)

// TestBlobStore runs the BlobStore and Uploads conformance suite.
func TestBlobStore(t *testing.T, newStore NewBlobStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.BlobStore, u storage.Uploads)
	}{
		{"UnknownBlob", testUnknownBlob},
		{"ChunkedUpload", testChunkedUpload},
		{"UnsizedAppend", testUnsizedAppend},
		{"EmptyBlob", testEmptyBlob},
		{"SHA512", testSHA512},
		{"OffsetMismatch", testOffsetMismatch},
		{"DigestMismatch", testDigestMismatch},
		{"Cancel", testCancel},
		{"UnknownUpload", testUnknownUpload},
		{"UploadOfAnotherRepository", testUploadOtherRepo},
		{"InterleavedSessions", testInterleavedSessions},
		{"Delete", testDelete},
		{"CommitExistingBlob", testCommitExisting},
		{"ConcurrentCommits", testConcurrentCommits},
		{"ConcurrentAppends", testConcurrentAppends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, u := newStore(t)
			tc.fn(t, b, u)
		})
	}
}

// content returns n bytes that differ with seed.
func content(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7+i/251)
	}
	return p
}

// upload starts a session in repo, appends every chunk at its offset and
// returns the session ID.
func upload(t *testing.T, u storage.Uploads, repo string, chunks ...[]byte) string {
	t.Helper()
	ctx := context.Background()
	id, err := u.StartUpload(ctx, repo)
	if err != nil {
		t.Fatalf("StartUpload(%q): %v", repo, err)
	}
	var off int64
	for _, c := range chunks {
		got, err := u.AppendUpload(ctx, repo, id, off, bytes.NewReader(c))
		if err != nil {
			t.Fatalf("AppendUpload(offset %d): %v", off, err)
		}
		off += int64(len(c))
		if got != off {
			t.Fatalf("AppendUpload returned size %d, want %d", got, off)
		}
	}
	return id
}

// wantBlob checks that blob d holds exactly want, through Stat and Open.
func wantBlob(t *testing.T, b storage.BlobStore, d digest.Digest, want []byte) {
	t.Helper()
	ctx := context.Background()
	size, err := b.Stat(ctx, d)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("Stat(%s) = %d, %v; want %d, nil", d, size, err, len(want))
	}
	rc, size, err := b.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer rc.Close()
	if size != int64(len(want)) {
		t.Errorf("Open(%s) size = %d, want %d", d, size, len(want))
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s: got %d bytes (digest %s), want %d bytes", d, len(got), digest.FromBytes(got), len(want))
	}
}

// wantNoBlob checks that Stat and Open report ErrBlobUnknown for d.
func wantNoBlob(t *testing.T, b storage.BlobStore, d digest.Digest) {
	t.Helper()
	ctx := context.Background()
	if size, err := b.Stat(ctx, d); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("Stat(%s) = %d, %v; want ErrBlobUnknown", d, size, err)
	}
	rc, _, err := b.Open(ctx, d)
	if !errors.Is(err, storage.ErrBlobUnknown) {
		t.Errorf("Open(%s) error = %v, want ErrBlobUnknown", d, err)
	}
	if rc != nil && err == nil {
		_ = rc.Close()
	}
}

// wantNoUpload checks that every session method reports ErrUploadUnknown
// for id in repo.
func wantNoUpload(t *testing.T, u storage.Uploads, repo, id string) {
	t.Helper()
	ctx := context.Background()
	if n, err := u.UploadSize(ctx, repo, id); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("UploadSize(%q, %q) = %d, %v; want ErrUploadUnknown", repo, id, n, err)
	}
	if n, err := u.AppendUpload(ctx, repo, id, -1, strings.NewReader("x")); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("AppendUpload(%q, %q) = %d, %v; want ErrUploadUnknown", repo, id, n, err)
	}
	if n, err := u.CommitUpload(ctx, repo, id, digest.FromString("x")); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("CommitUpload(%q, %q) = %d, %v; want ErrUploadUnknown", repo, id, n, err)
	}
	if err := u.CancelUpload(ctx, repo, id); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("CancelUpload(%q, %q) = %v, want ErrUploadUnknown", repo, id, err)
	}
}

func testUnknownBlob(t *testing.T, b storage.BlobStore, _ storage.Uploads) {
	wantNoBlob(t, b, digest.FromString("never stored"))
}

func testChunkedUpload(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(1, 300_000)
	d := digest.FromBytes(data)
	id := upload(t, u, "lib/app", data[:1], data[1:100_000], data[100_000:])
	if n, err := u.UploadSize(ctx, "lib/app", id); err != nil || n != int64(len(data)) {
		t.Fatalf("UploadSize = %d, %v; want %d, nil", n, err, len(data))
	}
	wantNoBlob(t, b, d)
	size, err := u.CommitUpload(ctx, "lib/app", id, d)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("CommitUpload = %d, %v; want %d, nil", size, err, len(data))
	}
	wantBlob(t, b, d, data)
	wantNoUpload(t, u, "lib/app", id)

	// The reader seeks, which is how ranged GETs are served.
	rc, _, err := b.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if pos, err := rc.Seek(250_000, io.SeekStart); err != nil || pos != 250_000 {
		t.Fatalf("Seek = %d, %v; want 250000, nil", pos, err)
	}
	tail, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(tail, data[250_000:]) {
		t.Fatalf("read after Seek: %d bytes, %v; want the last 50000 bytes", len(tail), err)
	}
}

func testUnsizedAppend(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(2, 5000)
	id := upload(t, u, "r", data[:1000])
	// A negative offset skips the check.
	if n, err := u.AppendUpload(ctx, "r", id, -1, bytes.NewReader(data[1000:])); err != nil || n != 5000 {
		t.Fatalf("AppendUpload(offset -1) = %d, %v; want 5000, nil", n, err)
	}
	if _, err := u.CommitUpload(ctx, "r", id, digest.FromBytes(data)); err != nil {
		t.Fatalf("CommitUpload: %v", err)
	}
	wantBlob(t, b, digest.FromBytes(data), data)
}

func testEmptyBlob(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	id := upload(t, u, "r")
	if n, err := u.UploadSize(ctx, "r", id); err != nil || n != 0 {
		t.Fatalf("UploadSize of a new session = %d, %v; want 0, nil", n, err)
	}
	size, err := u.CommitUpload(ctx, "r", id, digest.FromBytes(nil))
	if err != nil || size != 0 {
		t.Fatalf("CommitUpload(empty) = %d, %v; want 0, nil", size, err)
	}
	wantBlob(t, b, digest.FromBytes(nil), nil)
}

func testSHA512(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(3, 70_000)
	sum := sha512.Sum512(data)
	d := digest.NewDigestFromBytes(digest.SHA512, sum[:])
	id := upload(t, u, "r", data[:10], data[10:])
	if size, err := u.CommitUpload(ctx, "r", id, d); err != nil || size != int64(len(data)) {
		t.Fatalf("CommitUpload(%s) = %d, %v; want %d, nil", d, size, err, len(data))
	}
	wantBlob(t, b, d, data)
	// The same content under the other algorithm is another blob.
	wantNoBlob(t, b, digest.FromBytes(data))
}

func testOffsetMismatch(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(4, 3000)
	id := upload(t, u, "r", data[:1000])
	for _, off := range []int64{0, 999, 1001, 5000} {
		n, err := u.AppendUpload(ctx, "r", id, off, bytes.NewReader(data[1000:]))
		if !errors.Is(err, storage.ErrOffsetMismatch) {
			t.Errorf("AppendUpload(offset %d) error = %v, want ErrOffsetMismatch", off, err)
		}
		if n != 1000 {
			t.Errorf("AppendUpload(offset %d) size = %d, want the current size 1000", off, n)
		}
	}
	if n, err := u.UploadSize(ctx, "r", id); err != nil || n != 1000 {
		t.Fatalf("UploadSize after refused appends = %d, %v; want 1000, nil", n, err)
	}
	// The refused chunks left no trace: resuming at the right offset works.
	if n, err := u.AppendUpload(ctx, "r", id, 1000, bytes.NewReader(data[1000:])); err != nil || n != 3000 {
		t.Fatalf("AppendUpload(offset 1000) = %d, %v; want 3000, nil", n, err)
	}
	if _, err := u.CommitUpload(ctx, "r", id, digest.FromBytes(data)); err != nil {
		t.Fatalf("CommitUpload: %v", err)
	}
	wantBlob(t, b, digest.FromBytes(data), data)
}

func testDigestMismatch(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(5, 2000)
	wrong := digest.FromString("something else")
	id := upload(t, u, "r", data)
	n, err := u.CommitUpload(ctx, "r", id, wrong)
	if !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("CommitUpload(wrong digest) = %d, %v; want ErrDigestMismatch", n, err)
	}
	wantNoBlob(t, b, wrong)
	wantNoBlob(t, b, digest.FromBytes(data))
	// The session is discarded: not even the right digest commits it now.
	if _, err := u.CommitUpload(ctx, "r", id, digest.FromBytes(data)); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("CommitUpload after a mismatch error = %v, want ErrUploadUnknown", err)
	}
	wantNoUpload(t, u, "r", id)
	wantNoBlob(t, b, digest.FromBytes(data))

	// A digest that no content can have is a mismatch too.
	for _, bad := range []digest.Digest{"sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "", "sha256"} {
		id := upload(t, u, "r", data)
		if n, err := u.CommitUpload(ctx, "r", id, bad); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Errorf("CommitUpload(%q) = %d, %v; want ErrDigestMismatch", bad, n, err)
		}
		wantNoUpload(t, u, "r", id)
	}
}

func testCancel(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(6, 100)
	id := upload(t, u, "r", data)
	if err := u.CancelUpload(ctx, "r", id); err != nil {
		t.Fatalf("CancelUpload: %v", err)
	}
	wantNoUpload(t, u, "r", id)
	wantNoBlob(t, b, digest.FromBytes(data))
}

func testUnknownUpload(t *testing.T, _ storage.BlobStore, u storage.Uploads) {
	for _, id := range []string{uuid.NewString(), "", "not-an-id", "../../blobs", "/etc/passwd"} {
		wantNoUpload(t, u, "r", id)
	}
}

func testUploadOtherRepo(t *testing.T, _ storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	id := upload(t, u, "team/a", []byte("abc"))
	wantNoUpload(t, u, "team/b", id)
	// The owner's session is untouched by the attempts.
	if n, err := u.UploadSize(ctx, "team/a", id); err != nil || n != 3 {
		t.Fatalf("UploadSize in the owning repository = %d, %v; want 3, nil", n, err)
	}
}

func testInterleavedSessions(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	x, y := content(7, 4000), content(8, 6000)
	ix := upload(t, u, "r", x[:2000])
	iy := upload(t, u, "r", y[:3000])
	if _, err := u.AppendUpload(ctx, "r", ix, 2000, bytes.NewReader(x[2000:])); err != nil {
		t.Fatal(err)
	}
	if _, err := u.AppendUpload(ctx, "r", iy, 3000, bytes.NewReader(y[3000:])); err != nil {
		t.Fatal(err)
	}
	if ix == iy {
		t.Fatalf("two sessions share the ID %q", ix)
	}
	for _, c := range []struct {
		id   string
		data []byte
	}{{iy, y}, {ix, x}} {
		if _, err := u.CommitUpload(ctx, "r", c.id, digest.FromBytes(c.data)); err != nil {
			t.Fatalf("CommitUpload(%s): %v", c.id, err)
		}
		wantBlob(t, b, digest.FromBytes(c.data), c.data)
	}
}

func testDelete(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	keep, gone := content(9, 10), content(10, 20)
	for _, data := range [][]byte{keep, gone} {
		if _, err := u.CommitUpload(ctx, "r", upload(t, u, "r", data), digest.FromBytes(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, digest.FromBytes(gone)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNoBlob(t, b, digest.FromBytes(gone))
	wantBlob(t, b, digest.FromBytes(keep), keep)
	// Deleting an absent blob is not an error, whether it existed or not.
	for _, d := range []digest.Digest{digest.FromBytes(gone), digest.FromString("never stored")} {
		if err := b.Delete(ctx, d); err != nil {
			t.Errorf("Delete(absent %s) = %v, want nil", d, err)
		}
	}
}

func testCommitExisting(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(11, 512)
	d := digest.FromBytes(data)
	for i := range 2 {
		if n, err := u.CommitUpload(ctx, "r", upload(t, u, "r", data), d); err != nil || n != 512 {
			t.Fatalf("commit %d of the same blob = %d, %v; want 512, nil", i+1, n, err)
		}
	}
	wantBlob(t, b, d, data)
}

// testConcurrentCommits commits the same content from many sessions at
// once, as parallel pushes of a shared base layer do.
func testConcurrentCommits(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(12, 256<<10)
	d := digest.FromBytes(data)
	const n = 8
	ids := make([]string, n)
	for i := range ids {
		ids[i] = upload(t, u, fmt.Sprintf("r%d", i), data[:1000], data[1000:])
	}
	errs := make([]error, n)
	sizes := make([]int64, n)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			sizes[i], errs[i] = u.CommitUpload(ctx, fmt.Sprintf("r%d", i), ids[i], d)
			if errs[i] != nil {
				return
			}
			// Once committed, the blob is whole while the other commits
			// still replace it.
			rc, size, err := b.Open(ctx, d)
			if err != nil {
				errs[i] = fmt.Errorf("open during commits: %w", err)
				return
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close()
			if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
				errs[i] = fmt.Errorf("read during commits: %d bytes, size %d, %v", len(got), size, err)
			}
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || sizes[i] != int64(len(data)) {
			t.Errorf("commit %d = %d, %v; want %d, nil", i, sizes[i], errs[i], len(data))
		}
	}
	wantBlob(t, b, d, data)
}

// testConcurrentAppends sends the same chunk at the same offset from many
// writers, as a client retrying a timed-out PATCH does: exactly one append
// wins, the others learn the new size.
func testConcurrentAppends(t *testing.T, b storage.BlobStore, u storage.Uploads) {
	ctx := context.Background()
	data := content(13, 64<<10)
	id := upload(t, u, "r", data[:100])
	const n = 8
	errs := make([]error, n)
	sizes := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sizes[i], errs[i] = u.AppendUpload(ctx, "r", id, 100, bytes.NewReader(data[100:]))
		})
	}
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			won++
		case !errors.Is(errs[i], storage.ErrOffsetMismatch):
			t.Errorf("append %d: %v, want nil or ErrOffsetMismatch", i, errs[i])
		}
		if sizes[i] != int64(len(data)) {
			t.Errorf("append %d returned size %d, want %d", i, sizes[i], len(data))
		}
	}
	if won != 1 {
		t.Fatalf("%d appends at offset 100 succeeded, want 1", won)
	}
	if _, err := u.CommitUpload(ctx, "r", id, digest.FromBytes(data)); err != nil {
		t.Fatalf("CommitUpload: %v", err)
	}
	wantBlob(t, b, digest.FromBytes(data), data)
}
