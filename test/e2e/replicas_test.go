package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/ocitest"
	"github.com/outpost-registry/outpost/internal/protocol"
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
	// Nothing is copied between the replicas' data directories: they share
	// the identity and fleet records, the token signing key and the admin
	// password's hash through PostgreSQL. They start together.
	out := make([]*registry, n)
	var wg sync.WaitGroup
	for i := range out {
		data := filepath.Join(dir, fmt.Sprintf("replica%d", i))
		wg.Go(func() { out[i] = startOutpost(t, "--config", cfgFile, "--data", data, "--tls-mode", "off") })
	}
	wg.Wait()
	for i, r := range out {
		if r == nil {
			t.Fatalf("replica %d did not start", i)
		}
	}
	return out
}

// TestReplicatedRootIdentity: the replicas share one identity store. A
// token created through replica 0 works on replica 2, a registry token
// issued by one replica is accepted by another, a token disabled through
// replica 1 is refused by replica 2 within a second, and of two
// activations of one connected registry sent to two replicas at once
// exactly one wins.
func TestReplicatedRootIdentity(t *testing.T) {
	rs := replicatedRoot(t, 3)
	pw := rs[0].token(t, "site-puller", "_repositories_pull")
	// do sends GET path to r with basic credentials, or with a bearer
	// token when user is empty, and returns the status and body. Every
	// request names replica 2 as its host, as every request through a
	// balancer names the balancer.
	do := func(r *registry, path, user, secret string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, r.url+path, nil)
		req.Host = rs[2].host
		if user == "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		} else {
			req.SetBasicAuth(user, secret)
		}
		resp, err := r.http.Do(req)
		if err != nil {
			t.Fatalf("GET %s on %s: %v", path, r.host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	status := func(r *registry, path, user, secret string) int { code, _ := do(r, path, user, secret); return code }
	deadline := time.Now().Add(5 * time.Second)
	for status(rs[2], "/v2/", "site-puller", pw) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a token created through replica 0 is not accepted by replica 2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A registry token issued by replica 1 is valid at replica 2: one
	// signing key.
	code, body := do(rs[1], "/oauth2/token?service="+rs[2].host+"&scope=repository:ci/app:pull", "site-puller", pw)
	var tok struct{ Token string }
	must(t, code == http.StatusOK && json.Unmarshal(body, &tok) == nil && tok.Token != "", "registry token from replica 1: %d %s", code, body)
	code, body = do(rs[2], "/v2/", "", tok.Token)
	must(t, code == http.StatusOK, "replica 2 answered %d %s to the registry token replica 1 issued, want 200", code, body)

	// Disabled through replica 1, refused by replica 2 within a second.
	resp, body := adminDo(t, rs[1], http.MethodPatch, "/api/v1/tokens/site-puller", strings.NewReader(`{"status":"disabled"}`))
	must(t, resp.StatusCode == http.StatusOK, "disable through replica 1: %d %s", resp.StatusCode, body)
	disabled := time.Now()
	for status(rs[2], "/v2/", "site-puller", pw) != http.StatusUnauthorized {
		if time.Since(disabled) > time.Second {
			t.Fatal("replica 2 still accepts the token 1 s after replica 1 disabled it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the disabled token was refused by replica 2 %v after replica 1 disabled it", time.Since(disabled).Round(time.Millisecond))

	// Two activations of one connected registry, through two replicas at
	// once: exactly one wins.
	rs[0].api(t, http.MethodPost, "/api/v1/connected-registries", protocol.CreateRequest{Name: "factory1", Repositories: []string{"ci/*"}}, nil)
	for round := range 5 {
		if round > 0 {
			rs[0].api(t, http.MethodPost, "/api/v1/connected-registries/factory1/deactivate", nil, nil)
		}
		codes := make([]int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				b, _ := json.Marshal(protocol.ActivateRequest{ActivationID: fmt.Sprintf("deployment-%d-%d", round, i), Version: "test"})
				resp, _ := adminDo(t, rs[i+1], http.MethodPost, "/api/v1/gateway/factory1/activate", bytes.NewReader(b))
				codes[i] = resp.StatusCode
			})
		}
		wg.Wait()
		slices.Sort(codes)
		if codes[0] != http.StatusOK || codes[1] != http.StatusConflict {
			t.Fatalf("round %d: two simultaneous activations through replicas 1 and 2 answered %v, want one 200 and one 409", round, codes)
		}
	}
}

// balance starts an HAProxy in front of rs that sends each request to a
// random replica, without stickiness, and takes a replica out of the
// rotation while its /readyz fails or it does not answer; it returns the
// balancer as a registry.
func balance(t *testing.T, rs []*registry) *registry {
	t.Helper()
	haproxy := tool(t, "haproxy")
	front := freePort(t)
	var servers strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&servers, "  server r%d %s check inter 250ms fall 1 rise 2\n", i, r.host)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	body := fmt.Sprintf(`global
  maxconn 512
defaults
  mode http
  # The server side closes after each response, so that every request
  # of a kept-alive client connection is balanced anew.
  option http-server-close
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  # A request that could not reach a replica that just died goes to
  # another.
  retries 3
  option redispatch
  retry-on conn-failure empty-response
frontend registry
  bind %s
  default_backend replicas
backend replicas
  balance random
  option httpchk GET /readyz
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
				return balanced
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy on %s did not answer: %v\n%s", front, err, lbLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	conf := os.Getenv("CONFORMANCE_BIN")
	if conf == "" {
		conf = tool(t, "conformance")
	}
	front := balance(t, rs).host
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
	// Tokens move too: the identity store goes into PostgreSQL.
	pusherPW := r.token(t, "ci-pusher", "_repositories_push")
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
	// The second run copies nothing again, blobs or records.
	for i, wantCopied := range [][]string{{" identity and fleet records copied, 0 "}, {" 0 blobs", "\n0 identity and fleet records copied"}} {
		out, err := exec.Command(os.Getenv("OUTPOST_BIN"), "storage", "migrate", "--from", fromCfg, "--to", toCfg).CombinedOutput()
		ok := err == nil && strings.Contains(string(out), "migrated lib/moved")
		for _, w := range wantCopied {
			ok = ok && strings.Contains(string(out), w)
		}
		must(t, ok, "storage migrate run %d: %v\n%s", i+1, err, out)
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
	req, _ := http.NewRequest(http.MethodGet, r2.url+"/v2/", nil)
	req.SetBasicAuth("ci-pusher", pusherPW)
	resp, err := r2.http.Do(req)
	must(t, err == nil && resp.StatusCode == http.StatusOK, "the token ci-pusher on the migrated registry: %v %v", err, resp)
	resp.Body.Close()
}

// TestReplicatedRootSyncSurvivesReplicaKill: a connected registry syncs
// from three replicas behind HAProxy; one replica is SIGKILLed in the
// middle of the sync. The sync completes through the two left: every tag
// at the site has the root's digest and a complete graph, and the site
// holds exactly the root's tags (none lost, none extra).
func TestReplicatedRootSyncSurvivesReplicaKill(t *testing.T) {
	rs := replicatedRoot(t, 3)
	lb := balance(t, rs)
	rc := ocitest.New(t, lb.url, "admin", adminPassword, "")
	rc.HTTP.Timeout = 20 * time.Second
	repos := []string{"ha/r0", "ha/r1", "ha/r2", "ha/r3"}
	want := map[string]digest.Digest{}
	for i, repo := range repos {
		n := 2 << 20
		if i == 0 {
			n = 256 << 10 // published first, while the others download
		}
		img := rc.Image(t, repo, "v1", amd64, ocitest.Random(uint64(3000+2*i), n), ocitest.Random(uint64(3001+2*i), n))
		want[repo] = img.Digest
	}
	lb.api(t, http.MethodPost, "/api/v1/connected-registries", protocol.CreateRequest{Name: "ha-site", Repositories: repos}, nil)
	var set protocol.Settings
	lb.api(t, http.MethodPost, "/api/v1/connected-registries/ha-site/settings", protocol.SettingsRequest{ParentProtocol: "http", GeneratePassword: 1}, &set)
	edge := newProc(t, "--connection-string", set.ConnectionString, "--heartbeat-interval", "1s", "--sync-bandwidth-limit", "2MiB")
	er := edge.start()
	ec, err := adminClient(t, er)
	if err != nil {
		t.Fatal(err)
	}
	// The blobs arrive at 2 MiB/s: kill once some are stored at the site
	// and others are not.
	total := map[digest.Digest]bool{}
	for _, repo := range repos {
		for _, b := range graphOf(t, rc, repo, "v1") {
			total[b.Digest] = true
		}
	}
	stored := 0
	until(t, 60*time.Second, "the first blobs stored at the site", func() bool {
		stored = len(storedBlobs(t, edge.data))
		return stored >= 2
	})
	if stored >= len(total) {
		t.Fatal("the sync finished before the SIGKILL; the test proves nothing (lower --sync-bandwidth-limit)")
	}
	rs[1].kill()
	t.Logf("replica 1 SIGKILLed with %d of the site's %d blobs stored", stored, len(total))
	until(t, 120*time.Second, "every tag at the site equal to the root's", func() bool {
		for _, repo := range repos {
			if d, _, _ := ec.ManifestDigest(repo, "v1"); d != want[repo] {
				return false
			}
		}
		return true
	})
	for _, repo := range repos {
		if err := checkTag(ec, repo, "v1", want[repo]); err != nil {
			t.Errorf("after the replica's loss: %v", err)
		}
		if tags := listTags(t, ec, repo); !slices.Equal(tags, []string{"v1"}) {
			t.Errorf("%s at the site has tags %v, want [v1]", repo, tags)
		}
	}
	// The survivors go on serving the fleet: the site's heartbeats reach
	// the root through the balancer.
	until(t, 30*time.Second, "the site Online at the root", func() bool {
		var c protocol.ConnectedRegistry
		lb.api(t, http.MethodGet, "/api/v1/connected-registries/ha-site", nil, &c)
		return c.ConnectionState == protocol.StateOnline && c.LastSyncResult != nil
	})
}
