package migrate_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
	"github.com/outpost-registry/outpost/internal/storage/migrate"
	"github.com/outpost-registry/outpost/internal/storage/postgres"
	"github.com/outpost-registry/outpost/internal/storage/postgres/pgtest"
	"github.com/outpost-registry/outpost/internal/storage/s3"
	"github.com/outpost-registry/outpost/internal/storage/s3/s3test"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(storagetest.Main(m, s3test.StopShared, pgtest.StopShared))
}

func push(t *testing.T, u storage.Uploads, m storage.Metadata, repo string, content []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	d := digest.FromBytes(content)
	id, err := u.StartUpload(ctx, repo)
	if err == nil {
		_, err = u.AppendUpload(ctx, repo, id, 0, bytes.NewReader(content))
	}
	if err == nil {
		_, err = u.CommitUpload(ctx, repo, id, d)
	}
	if err == nil {
		err = m.LinkBlob(ctx, repo, d, int64(len(content)))
	}
	if err != nil {
		t.Fatalf("push blob to %s: %v", repo, err)
	}
	return d
}

func manifest(t *testing.T, m storage.Metadata, repo, name string, layer digest.Digest, tags ...string) *storage.ManifestRecord {
	t.Helper()
	body := fmt.Appendf(nil, `{"schemaVersion":2,"name":%q,"layer":%q}`, name, layer)
	rec := &storage.ManifestRecord{Digest: digest.FromBytes(body), MediaType: v1.MediaTypeImageManifest, Blobs: []digest.Digest{layer}, Body: body}
	if err := m.PutManifest(context.Background(), repo, rec, tags, nil); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestMigrateEmbeddedToRemote moves two repositories from the data
// directory into S3 and PostgreSQL, twice (the second run copies
// nothing), and checks content, tags and the change feed's cursors.
func TestMigrateEmbeddedToRemote(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srcBlobs, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	srcMeta, err := bolt.Open(filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Closing(t, srcMeta)
	shared := bytes.Repeat([]byte("base layer "), 1000)
	own := []byte("app layer")
	base := push(t, srcBlobs, srcMeta, "lib/a", shared)
	push(t, srcBlobs, srcMeta, "lib/b", shared)
	app := push(t, srcBlobs, srcMeta, "lib/b", own)
	manifest(t, srcMeta, "lib/a", "a1", base, "v1", "latest")
	manifest(t, srcMeta, "lib/a", "a2", base, "latest")
	manifest(t, srcMeta, "lib/b", "b1", app, "v1")
	if err := srcMeta.DeleteTag(ctx, "lib/b", "v1"); err != nil {
		t.Fatal(err)
	}
	manifest(t, srcMeta, "lib/b", "b2", app, "v2")

	srv := s3test.Shared(t)
	dst, err := s3.New(s3.Options{Endpoint: srv.Endpoint, Bucket: srv.Bucket(t), PathStyle: true, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	dstMeta, err := postgres.Open(ctx, pgtest.Shared(t).DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Closing(t, dstMeta)
	from := migrate.Stores{Blobs: srcBlobs, Meta: srcMeta}
	to := migrate.Stores{Blobs: dst, Uploads: dst, Meta: dstMeta}
	rep, err := migrate.Run(ctx, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := migrate.Report{Repositories: 2, Blobs: 3, BlobsCopied: 2, BytesCopied: int64(len(shared) + len(own))}
	if rep != want {
		t.Fatalf("first run: %+v, want %+v", rep, want)
	}
	if rep, err = migrate.Run(ctx, from, to, nil); err != nil || rep.BlobsCopied != 0 || rep.Repositories != 2 {
		t.Fatalf("second run: %+v, %v; want 2 repositories and no blob copied", rep, err)
	}
	for _, repo := range []string{"lib/a", "lib/b"} {
		wantFeed, wantHead, _ := srcMeta.Changes(ctx, repo, 0, 100)
		for i := range wantFeed {
			// PostgreSQL keeps microseconds.
			wantFeed[i].Time = wantFeed[i].Time.Truncate(time.Microsecond)
		}
		gotFeed, gotHead, err := dstMeta.Changes(ctx, repo, 0, 100)
		if err != nil || gotHead != wantHead || !reflect.DeepEqual(gotFeed, wantFeed) {
			t.Errorf("%s feed: head %d %+v, %v; want head %d %+v", repo, gotHead, gotFeed, err, wantHead, wantFeed)
		}
		for _, tag := range []string{"v1", "latest", "v2"} {
			w, werr := srcMeta.GetManifest(ctx, repo, tag)
			g, gerr := dstMeta.GetManifest(ctx, repo, tag)
			if (werr == nil) != (gerr == nil) || (werr == nil && !bytes.Equal(w.Body, g.Body)) {
				t.Errorf("%s:%s = %v; want %v", repo, tag, gerr, werr)
			}
		}
	}
	rc, _, err := dst.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	_ = rc.Close()
	if !bytes.Equal(got, shared) {
		t.Fatalf("migrated base layer: %d bytes, want %d", len(got), len(shared))
	}
	// The feed goes on from the migrated head.
	_, head, _ := dstMeta.Changes(ctx, "lib/a", 0, 1)
	manifest(t, dstMeta, "lib/a", "a3", base, "v3")
	changes, _, _ := dstMeta.Changes(ctx, "lib/a", head, 10)
	if len(changes) != 1 || changes[0].Seq != head+1 {
		t.Fatalf("first change after the migration: %+v, want seq %d", changes, head+1)
	}
}
