package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage/postgres/pgtest"
	"github.com/outpost-registry/outpost/internal/storage/s3/s3test"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestMain(m *testing.M) {
	os.Exit(storagetest.Main(m, s3test.StopShared, pgtest.StopShared))
}

// replicatedRoot starts n outpost binaries on one versitygw bucket and
// one PostgreSQL schema, over plain HTTP, with the same admin password,
// and the others' data directories seeded with the first one's token
// signing key and identity database, as docs/operations.md describes.
func replicatedRoot(t *testing.T, n int) []*registry {
	t.Helper()
	requireE2E(t)
	s3srv := s3test.Shared(t)
	bucket, dsn := s3srv.Bucket(t), pgtest.Shared(t).DSN(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 1
storage:
  blobs: {type: s3, endpoint: %q, bucket: %q, prefix: root, pathStyle: true}
  metadata: {type: postgres, dsn: %q}
`, s3srv.Endpoint, bucket, dsn)
	cfgFile := filepath.Join(dir, "root.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	if out, err := exec.Command(os.Getenv("OUTPOST_BIN"), "config", "validate", "--config", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("config validate: %v\n%s", err, out)
	}
	seed := []string{filepath.Join("auth", "token-key.pem"), "identity.db"}
	out := make([]*registry, n)
	for i := range out {
		data := filepath.Join(dir, fmt.Sprintf("replica%d", i))
		for _, f := range seed {
			if i == 0 {
				break
			}
			b, err := os.ReadFile(filepath.Join(dir, "replica0", f))
			if err == nil {
				err = os.MkdirAll(filepath.Dir(filepath.Join(data, f)), 0o700)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(data, f), b, 0o600)
			}
			if err != nil {
				t.Fatalf("seed replica %d with %s: %v", i, f, err)
			}
		}
		out[i] = startOutpost(t, "--config", cfgFile, "--data", data, "--tls-mode", "off")
		if i == 0 {
			// A token is issued only once the admin password's hash is
			// stored: after this, identity.db holds the hash the others
			// must share (registry tokens carry its fingerprint).
			resp, _ := adminDo(t, out[0], http.MethodGet, "/oauth2/token?service="+out[0].host+"&scope=repository:ci/app:pull", nil)
			must(t, resp.StatusCode == http.StatusOK, "token from replica 0: %d", resp.StatusCode)
		}
	}
	return out
}

// TestReplicatedRootChunkedPush sends each request of a chunked push to
// another of three replicas, then pulls the blob through each with crane.
func TestReplicatedRootChunkedPush(t *testing.T) {
	rs := replicatedRoot(t, 3)
	layer := bytes.Repeat([]byte("replicated "), 600_000) // 6.6 MB: a full S3 part and a tail
	d := digest.FromBytes(layer).String()
	resp, _ := adminDo(t, rs[0], http.MethodPost, "/v2/ci/app/blobs/uploads/", nil)
	must(t, resp.StatusCode == http.StatusAccepted, "POST on replica 0: %d", resp.StatusCode)
	loc := resp.Header.Get("Location")
	cuts := []int{0, 1 << 20, 6 << 20, len(layer)}
	for i := range 3 {
		r := rs[(i+1)%3]
		resp, _ = adminDo(t, r, http.MethodPatch, loc, bytes.NewReader(layer[cuts[i]:cuts[i+1]]))
		must(t, resp.StatusCode == http.StatusAccepted, "PATCH %d on replica %d: %d", i, (i+1)%3, resp.StatusCode)
		loc = resp.Header.Get("Location")
	}
	// Another replica reports the session's progress.
	resp, _ = adminDo(t, rs[2], http.MethodGet, loc, nil)
	must(t, resp.StatusCode == http.StatusNoContent && resp.Header.Get("Range") == fmt.Sprintf("0-%d", len(layer)-1),
		"GET upload status on replica 2: %d Range %q", resp.StatusCode, resp.Header.Get("Range"))
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, _ = adminDo(t, rs[0], http.MethodPut, loc+sep+"digest="+d, nil)
	must(t, resp.StatusCode == http.StatusCreated, "PUT on replica 0: %d", resp.StatusCode)

	for i, r := range rs {
		env := clientEnv(t, r)
		craneLogin(t, env, r, "admin", adminPassword)
		got, _ := run(t, env, false, "crane", "blob", "--insecure", r.host+"/ci/app@"+d)
		if got != string(layer) {
			t.Fatalf("crane blob from replica %d: %d bytes, want the %d pushed", i, len(got), len(layer))
		}
	}
}

// TestReplicatedRootConformance runs the OCI conformance suite through an
// HAProxy that balances each request to a random one of three replicas,
// so that the requests of every push and pull land on different replicas.
// (Round robin would alias with the suite's request pattern: a push of
// three requests can send every upload request to the same two replicas.)
func TestReplicatedRootConformance(t *testing.T) {
	rs := replicatedRoot(t, 3)
	haproxy := tool(t, "haproxy")
	conf := os.Getenv("CONFORMANCE_BIN")
	if conf == "" {
		conf = tool(t, "conformance")
	}
	front := freePort(t)
	var servers strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&servers, "  server r%d %s\n", i, r.host)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	body := fmt.Sprintf(`global
  maxconn 512
defaults
  mode http
  # The server side closes after each response, so that every request
  # of a kept-alive client connection is balanced anew.
  option http-server-close
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend registry
  bind %s
  default_backend replicas
backend replicas
  balance random
%s`, front, servers.String())
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := exec.Command(haproxy, "-db", "-f", cfg)
	var lbLog bytes.Buffer
	lb.Stdout, lb.Stderr = &lbLog, &lbLog
	if err := lb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Process.Kill(); _ = lb.Wait() })
	balanced := &registry{host: front, url: "http://" + front, http: &http.Client{Timeout: 30 * time.Second}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := func() (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodGet, balanced.url+"/v2/", nil)
			req.SetBasicAuth("admin", adminPassword)
			return balanced.http.Do(req)
		}()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy on %s did not answer: %v\n%s", front, err, lbLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	results := t.TempDir()
	cmd := exec.Command(conf)
	// As scripts/conformance.sh runs it, as the admin over plain HTTP.
	cmd.Env = append(os.Environ(), "OCI_REGISTRY="+front, "OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2", "OCI_USERNAME=admin", "OCI_PASSWORD="+adminPassword,
		"OCI_RESULTS_DIR="+results, "OCI_API_BLOBS_UPLOAD_CANCEL=true", "OCI_API_MANIFESTS_TAG_PARAM=true")
	out, err := cmd.CombinedOutput()
	junit, _ := os.ReadFile(filepath.Join(results, "junit.xml"))
	failed := strings.Count(string(junit), `status="failed"`)
	if err != nil || failed > 0 || len(junit) == 0 {
		t.Fatalf("conformance through HAProxy: %v, %d failed checks\n%s", err, failed, out[:min(len(out), 3000)])
	}
	// The suite's upload requests were spread over the replicas (a random
	// replica per request gives each about a third of several hundred).
	serving := 0
	for i, r := range rs {
		resp, body := adminDo(t, r, http.MethodGet, "/metrics", nil)
		uploads := 0
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "outpost_http_requests_total{") && strings.Contains(line, `route="upload`) {
				var n float64
				if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err == nil {
					uploads += int(n)
				}
			}
		}
		must(t, resp.StatusCode == http.StatusOK, "GET /metrics of replica %d: %d", i, resp.StatusCode)
		t.Logf("replica %d served %d upload requests", i, uploads)
		if uploads > 0 {
			serving++
		}
	}
	must(t, serving == len(rs), "%d of %d replicas served upload requests, want all", serving, len(rs))
	t.Logf("conformance through HAProxy over 3 replicas: %d checks, 0 failed", strings.Count(string(junit), "<testcase"))
}

// TestStorageMigrate pushes a multi-platform image to an embedded
// Outpost, stops it, migrates its data directory into S3 and PostgreSQL
// with `outpost storage migrate`, and pulls the image back whole from an
// Outpost on the remote engines; a second run copies no blob.
func TestStorageMigrate(t *testing.T) {
	src := newProc(t)
	r := src.start()
	env := clientEnv(t, r)
	craneLogin(t, env, r, "admin", adminPassword)
	want := testImage(t, env, r, "lib/moved")
	src.stop()

	s3srv := s3test.Shared(t)
	dir := t.TempDir()
	fromCfg, toCfg := filepath.Join(dir, "from.yaml"), filepath.Join(dir, "to.yaml")
	must(t, os.WriteFile(fromCfg, fmt.Appendf(nil, "version: 1\ndata: %s\n", src.data), 0o600) == nil, "write from.yaml")
	to := fmt.Sprintf(`version: 1
storage:
  blobs: {type: s3, endpoint: %q, bucket: %q, pathStyle: true}
  metadata: {type: postgres, dsn: %q}
`, s3srv.Endpoint, s3srv.Bucket(t), pgtest.Shared(t).DSN(t))
	must(t, os.WriteFile(toCfg, []byte(to), 0o600) == nil, "write to.yaml")
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	for i, wantCopied := range []string{"", " 0 blobs"} {
		out, err := exec.Command(os.Getenv("OUTPOST_BIN"), "storage", "migrate", "--from", fromCfg, "--to", toCfg).CombinedOutput()
		must(t, err == nil && strings.Contains(string(out), "migrated lib/moved") && strings.Contains(string(out), wantCopied),
			"storage migrate run %d: %v\n%s", i+1, err, out)
	}

	dst := newProc(t, "--config", toCfg)
	r2 := dst.start()
	env2 := clientEnv(t, r2)
	craneLogin(t, env2, r2, "admin", adminPassword)
	got, _ := run(t, env2, false, "crane", "digest", r2.host+"/lib/moved:multi")
	must(t, strings.TrimSpace(got) == want, "lib/moved:multi on the migrated registry = %q, want %q", strings.TrimSpace(got), want)
	for _, tag := range []string{"amd64", "arm64"} {
		run(t, env2, false, "crane", "validate", "--remote", r2.host+"/lib/moved:"+tag)
	}
}
