package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/storage/postgres/pgtest"
	"github.com/outpost-registry/outpost/internal/storage/s3/s3test"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(storagetest.Main(m, s3test.StopShared, pgtest.StopShared))
}

// The tests of this file are not parallel: they start servers of their
// own (versitygw, PostgreSQL), and run before the parallel tests so that
// this load does not skew the timing-sensitive ones (limits_test.go).

// remoteStorage returns a config edit that puts blobs in a new bucket of
// srv and metadata in a new schema of the test PostgreSQL, with the
// credentials in files, as a replicated root is configured.
func remoteStorage(t *testing.T, srv *s3test.Server) func(*config.Config) {
	t.Helper()
	bucket, dsn := srv.Bucket(t), pgtest.Shared(t).DSN(t)
	keys := t.TempDir()
	for name, v := range map[string]string{"access": s3test.AccessKey, "secret": s3test.SecretKey} {
		if err := os.WriteFile(filepath.Join(keys, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return func(c *config.Config) {
		c.Storage.Blobs = config.Blobs{
			Type: config.BlobsS3, Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "root", PathStyle: true,
			AccessKeyFile: filepath.Join(keys, "access"), SecretKeyFile: filepath.Join(keys, "secret"),
		}
		c.Storage.Metadata = config.Metadata{Type: config.MetadataPostgres, DSN: dsn}
	}
}

// TestReplicasShareStorage runs two servers on one bucket and one
// database: a chunked upload started on one continues and completes on
// the other, a manifest pushed to one is served by the other, with Range.
func TestReplicasShareStorage(t *testing.T) {
	edit := remoteStorage(t, s3test.Shared(t))
	a, b := azStart(t, nil, edit), azStart(t, nil, edit)
	admin := azBasic(auth.AdminUser, azAdminPW)
	layer := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	img := buildAzImage([]byte(`{"architecture":"amd64","os":"linux"}`), layer)

	rec := a.do(http.MethodPost, "/v2/lib/app/blobs/uploads/", nil, nil, admin)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST upload on replica a: %d %s", rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")
	cuts := []int{0, 10_000, 40_000, len(layer)}
	for i, r := range []*azServer{a, b, a} {
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", cuts[i], cuts[i+1]-1)},
		}
		rec = r.do(http.MethodPatch, loc, hdr, layer[cuts[i]:cuts[i+1]], admin)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("PATCH chunk %d: %d %s", i, rec.Code, rec.Body)
		}
		loc = rec.Header().Get("Location")
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if rec = b.do(http.MethodPut, loc+sep+"digest="+azDigest(layer), nil, nil, admin); rec.Code != http.StatusCreated {
		t.Fatalf("PUT to close the upload on replica b: %d %s", rec.Code, rec.Body)
	}
	if rec = b.do(http.MethodPost, "/v2/lib/app/blobs/uploads/?digest="+azDigest(img.config), nil, img.config, admin); rec.Code != http.StatusCreated {
		t.Fatalf("monolithic config upload on replica b: %d %s", rec.Code, rec.Body)
	}
	hdr := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	if rec = a.do(http.MethodPut, "/v2/lib/app/manifests/v1", hdr, img.manifest, admin); rec.Code != http.StatusCreated {
		t.Fatalf("PUT manifest on replica a: %d %s", rec.Code, rec.Body)
	}
	if rec = b.do(http.MethodGet, "/v2/lib/app/manifests/v1", nil, nil, admin); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), img.manifest) {
		t.Fatalf("GET manifest on replica b: %d %s", rec.Code, rec.Body)
	}
	rng := http.Header{"Range": {"bytes=65000-65099"}}
	if rec = b.do(http.MethodGet, "/v2/lib/app/blobs/"+azDigest(layer), rng, nil, admin); rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), layer[65000:65100]) {
		t.Fatalf("ranged GET of the layer on replica b: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec = a.do(http.MethodGet, "/v2/lib/app/tags/list", nil, nil, admin); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"v1"`) {
		t.Fatalf("tags on replica a: %d %s", rec.Code, rec.Body)
	}
}

// TestRedirectToBucket: with storage.redirect a blob GET answers 307 to
// a presigned URL that serves the blob; HEAD is still answered here.
func TestRedirectToBucket(t *testing.T) {
	edit := remoteStorage(t, s3test.Shared(t))
	s := azStart(t, nil, func(c *config.Config) { edit(c); c.Storage.Redirect = true })
	img := s.push(t, "lib/redirect", "v1")
	admin := azBasic(auth.AdminUser, azAdminPW)
	rec := s.do(http.MethodGet, "/v2/lib/redirect/blobs/"+azDigest(img.layer), nil, nil, admin)
	if rec.Code != http.StatusTemporaryRedirect {
		t.Fatalf("GET blob: %d, want 307", rec.Code)
	}
	resp, err := http.Get(rec.Header().Get("Location")) //nolint:noctx // a test against the loopback server
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	_, _ = got.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got.Bytes(), img.layer) {
		t.Fatalf("GET presigned URL: %d %q, want 200 %q", resp.StatusCode, got.Bytes(), img.layer)
	}
	if rec = s.do(http.MethodHead, "/v2/lib/redirect/blobs/"+azDigest(img.layer), nil, nil, admin); rec.Code != http.StatusOK {
		t.Fatalf("HEAD blob: %d, want 200", rec.Code)
	}
	// A blob the repository does not hold is refused here, not redirected.
	if rec = s.do(http.MethodGet, "/v2/lib/redirect/blobs/"+azDigest([]byte("absent")), nil, nil, admin); rec.Code != http.StatusNotFound {
		t.Fatalf("GET absent blob: %d, want 404", rec.Code)
	}
}

// TestReadyzFollowsTheBucket: /readyz turns 503 while the S3 service is
// down and pulls fail with a 5xx; when it returns, both recover without
// a restart of the registry.
func TestReadyzFollowsTheBucket(t *testing.T) {
	if s3test.Binary() == "" {
		s3test.Shared(t) // skips, or fails under CI
	}
	// A server of its own: this test stops it.
	srv, err := s3test.Start(s3test.Binary())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s := azStart(t, nil, remoteStorage(t, srv))
	img := s.push(t, "lib/outage", "v1")
	admin := azBasic(auth.AdminUser, azAdminPW)
	if rec := s.do(http.MethodGet, "/readyz", nil, nil, azCred{}); rec.Code != http.StatusOK {
		t.Fatalf("/readyz with the bucket up: %d %s", rec.Code, rec.Body)
	}
	srv.Kill()
	rec := s.do(http.MethodGet, "/readyz", nil, nil, azCred{})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "blob store") {
		t.Fatalf("/readyz with the bucket down: %d %s, want 503 naming the blob store", rec.Code, rec.Body)
	}
	if rec = s.do(http.MethodGet, "/v2/lib/outage/blobs/"+azDigest(img.layer), nil, nil, admin); rec.Code < 500 {
		t.Fatalf("pull with the bucket down: %d, want a 5xx", rec.Code)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec = s.do(http.MethodGet, "/readyz", nil, nil, azCred{})
		if rec.Code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 10s after the bucket returned: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec = s.do(http.MethodGet, "/v2/lib/outage/blobs/"+azDigest(img.layer), nil, nil, admin); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), img.layer) {
		t.Fatalf("pull after the bucket returned: %d", rec.Code)
	}
}

// TestReadyzFollowsTheDatabase: while PostgreSQL is down /readyz answers
// 503, reads fail with a 5xx and a manifest push fails without leaving
// anything behind; when it returns, everything works without a restart.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	if pgtest.BinDir() == "" {
		pgtest.Shared(t) // skips, or fails under CI
	}
	// A server of its own: this test stops it.
	pg, err := pgtest.Start(pgtest.BinDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	s3srv := s3test.Shared(t)
	edit := remoteStorage(t, s3srv)
	dsn := pg.DSN(t)
	s := azStart(t, nil, func(c *config.Config) { edit(c); c.Storage.Metadata.DSN = dsn })
	s.push(t, "lib/db", "v1")
	admin := azBasic(auth.AdminUser, azAdminPW)
	img := newAzImage("lib/db-outage")
	for _, b := range [][]byte{img.config, img.layer} {
		if rec := s.do(http.MethodPost, "/v2/lib/db/blobs/uploads/?digest="+azDigest(b), nil, b, admin); rec.Code != http.StatusCreated {
			t.Fatalf("push blob: %d %s", rec.Code, rec.Body)
		}
	}
	pg.Kill()
	rec := s.do(http.MethodGet, "/readyz", nil, nil, azCred{})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "metadata store") {
		t.Fatalf("/readyz with the database down: %d %s, want 503 naming the metadata store", rec.Code, rec.Body)
	}
	if rec = s.do(http.MethodGet, "/v2/lib/db/manifests/v1", nil, nil, admin); rec.Code < 500 {
		t.Fatalf("GET manifest with the database down: %d, want a 5xx", rec.Code)
	}
	hdr := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	if rec = s.do(http.MethodPut, "/v2/lib/db/manifests/v2", hdr, img.manifest, admin); rec.Code < 500 {
		t.Fatalf("PUT manifest with the database down: %d, want a 5xx", rec.Code)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rec = s.do(http.MethodGet, "/readyz", nil, nil, azCred{}); rec.Code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 10s after the database returned: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec = s.do(http.MethodGet, "/v2/lib/db/manifests/v2", nil, nil, admin); rec.Code != http.StatusNotFound {
		t.Fatalf("the manifest refused during the outage: GET %d, want 404", rec.Code)
	}
	if rec = s.do(http.MethodPut, "/v2/lib/db/manifests/v2", hdr, img.manifest, admin); rec.Code != http.StatusCreated {
		t.Fatalf("PUT manifest after the database returned: %d %s", rec.Code, rec.Body)
	}
	if rec = s.do(http.MethodGet, "/v2/lib/db/manifests/v1", nil, nil, admin); rec.Code != http.StatusOK {
		t.Fatalf("GET manifest after the database returned: %d", rec.Code)
	}
}
