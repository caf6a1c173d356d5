package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/s3"
	"github.com/outpost-registry/outpost/internal/storage/s3/s3test"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// newStore returns a Store on a fresh bucket of the shared server; with
// bucket set, on that bucket (a second replica of the first).
func newStore(t *testing.T, bucket string, o s3.Options) (*s3.Store, string) {
	t.Helper()
	srv := s3test.Shared(t)
	if bucket == "" {
		bucket = srv.Bucket(t)
	}
	o.Endpoint, o.Bucket, o.PathStyle = srv.Endpoint, bucket, true
	o.AccessKey, o.SecretKey = s3test.AccessKey, s3test.SecretKey
	if o.Prefix == "" {
		o.Prefix = "registry"
	}
	st, err := s3.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return st, bucket
}

func TestConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) (storage.BlobStore, storage.Uploads) {
		st, _ := newStore(t, "", s3.Options{})
		return st, st
	})
}

func data(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31 + i/4099)
	}
	return p
}

// TestMultipartAcrossReplicas pushes a blob of several parts in chunks
// that do not line up with the parts, each chunk through another Store
// on the same bucket, as a push through a load balancer lands on
// different replicas.
func TestMultipartAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, bucket := newStore(t, "", s3.Options{PartSize: s3.MinPartSize})
	b, _ := newStore(t, bucket, s3.Options{PartSize: s3.MinPartSize})
	blob := data(3*s3.MinPartSize + 12345)
	d := digest.FromBytes(blob)
	id, err := a.StartUpload(ctx, "lib/app")
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{0, 1000, s3.MinPartSize + 7, 2*s3.MinPartSize + 3, len(blob)}
	replicas := []*s3.Store{a, b}
	for i := range len(cuts) - 1 {
		r := replicas[i%2]
		n, err := r.AppendUpload(ctx, "lib/app", id, int64(cuts[i]), bytes.NewReader(blob[cuts[i]:cuts[i+1]]))
		if err != nil || n != int64(cuts[i+1]) {
			t.Fatalf("append %d on replica %d = %d, %v; want %d, nil", i, i%2, n, err, cuts[i+1])
		}
		if got, err := replicas[(i+1)%2].UploadSize(ctx, "lib/app", id); err != nil || got != int64(cuts[i+1]) {
			t.Fatalf("UploadSize on the other replica = %d, %v; want %d", got, err, cuts[i+1])
		}
	}
	if _, err := a.Stat(ctx, d); !errors.Is(err, storage.ErrBlobUnknown) {
		t.Fatalf("Stat before commit = %v, want ErrBlobUnknown", err)
	}
	if n, err := b.CommitUpload(ctx, "lib/app", id, d); err != nil || n != int64(len(blob)) {
		t.Fatalf("CommitUpload on replica 1 = %d, %v; want %d, nil", n, err, len(blob))
	}
	rc, size, err := a.Open(ctx, d)
	if err != nil || size != int64(len(blob)) {
		t.Fatalf("Open on replica 0 = %d, %v", size, err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes (%v), digest %s; want %s", len(got), err, digest.FromBytes(got), d)
	}
	// A ranged read across a part boundary.
	rc, _, err = b.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	off := int64(s3.MinPartSize - 10)
	if _, err := rc.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 20)
	if _, err := io.ReadFull(rc, p); err != nil || !bytes.Equal(p, blob[off:off+20]) {
		t.Fatalf("ranged read at %d = %x, %v; want %x", off, p, err, blob[off:off+20])
	}
}

// TestMismatchOfLargeUpload checks that a multipart session whose
// content does not match leaves no blob and no session.
func TestMismatchOfLargeUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t, "", s3.Options{PartSize: s3.MinPartSize})
	blob := data(s3.MinPartSize + 1)
	id, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendUpload(ctx, "r", id, 0, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	claimed := digest.FromString("not this")
	if _, err := st.CommitUpload(ctx, "r", id, claimed); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("CommitUpload(wrong digest) = %v, want ErrDigestMismatch", err)
	}
	for _, d := range []digest.Digest{claimed, digest.FromBytes(blob)} {
		if _, err := st.Stat(ctx, d); !errors.Is(err, storage.ErrBlobUnknown) {
			t.Errorf("Stat(%s) after the mismatch = %v, want ErrBlobUnknown", d, err)
		}
	}
	if _, err := st.UploadSize(ctx, "r", id); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Errorf("UploadSize after the mismatch = %v, want ErrUploadUnknown", err)
	}
}

// TestStaleLock checks that a session whose writer died (its lease ran
// out) can be continued.
func TestStaleLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t, "", s3.Options{LockLease: 300 * time.Millisecond})
	id, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	// A reader that fails stands for a client that went away mid-append:
	// its context ends, but only after the lease would have lapsed were
	// it not renewed. The append is then abandoned without release.
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := st.AppendUpload(actx, "r", id, 0, &blockingReader{ctx: actx}); err == nil {
		t.Fatal("append from a reader that failed returned no error")
	}
	done := make(chan error, 1)
	go func() {
		_, err := st.AppendUpload(ctx, "r", id, -1, bytes.NewReader([]byte("abc")))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("append after the other writer ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append still waits 10s after the other writer ended")
	}
}

type blockingReader struct{ ctx context.Context }

func (r *blockingReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func TestRedirect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t, "", s3.Options{RedirectTTL: time.Minute})
	blob := []byte("presigned content")
	d := digest.FromBytes(blob)
	id, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendUpload(ctx, "r", id, 0, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitUpload(ctx, "r", id, d); err != nil {
		t.Fatal(err)
	}
	u, err := st.BlobURL(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("GET presigned URL = %d %q, want 200 %q", resp.StatusCode, got, blob)
	}
}

// TestPurgeUploads removes the sessions idle since before the cutoff,
// with their content, and keeps the newer one.
func TestPurgeUploads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t, "", s3.Options{})
	var old []string
	for _, n := range []int{0, 3000} {
		id, err := st.StartUpload(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AppendUpload(ctx, "r", id, 0, bytes.NewReader(data(n))); err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}
	time.Sleep(20 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(20 * time.Millisecond)
	fresh, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	n, size, err := st.PurgeUploads(ctx, cutoff, false)
	if err != nil || n != 2 || size != 3000 {
		t.Fatalf("PurgeUploads = %d sessions, %d bytes, %v; want 2, 3000, nil", n, size, err)
	}
	for _, id := range old {
		if _, err := st.UploadSize(ctx, "r", id); !errors.Is(err, storage.ErrUploadUnknown) {
			t.Errorf("UploadSize of purged %s = %v, want ErrUploadUnknown", id, err)
		}
	}
	if _, err := st.UploadSize(ctx, "r", fresh); err != nil {
		t.Errorf("UploadSize of the newer session: %v", err)
	}
}
