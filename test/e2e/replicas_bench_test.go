package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/storage/s3/s3test"
)

// TestReplicatedRootBenchmark is no test but a driver of the load tool
// (it asserts no timing): it starts, side by side on one S3 server and
// one PostgreSQL, Outpost on S3 + PostgreSQL as 1 replica and as 3
// behind HAProxy, distribution on the same S3 server, and the embedded
// default, and runs outpost-bench against all four in one run. Figures
// in docs/benchmarks.md ("Replicated root"). Run with
//
//	OUTPOST_E2E=1 OUTPOST_BIN=$PWD/bin/outpost OUTPOST_BENCH_BIN=$PWD/bin/outpost-bench \
//	OUTPOST_BENCH_REPLICATED=1 go test -run TestReplicatedRootBenchmark -v -timeout 60m ./test/e2e/
//
// OUTPOST_BENCH_ARGS adds arguments (default: the pull, push and
// small (manifest HEAD and GET) workloads at 1 and 8 clients for 5 s
// each).
func TestReplicatedRootBenchmark(t *testing.T) {
	if os.Getenv("OUTPOST_BENCH_REPLICATED") != "1" || os.Getenv("OUTPOST_BENCH_BIN") == "" {
		t.Skip("a benchmark driver: set OUTPOST_BENCH_REPLICATED=1 and OUTPOST_BENCH_BIN")
	}
	embedded := startOutpost(t, "--tls-mode", "off")
	one := replicatedRoot(t, 1)[0]
	three := balance(t, replicatedRoot(t, 3))
	dist := startDistributionOnS3(t)
	args := []string{"run", "--password", adminPassword,
		"--target", "embedded=" + embedded.url, "--target", "s3pg-1=" + one.url,
		"--target", "s3pg-3=" + three.url, "--target", "distribution-s3=" + dist}
	extra := strings.Fields(os.Getenv("OUTPOST_BENCH_ARGS"))
	if len(extra) == 0 {
		extra = []string{"--workloads", "pull,push,small", "--concurrency", "1,8", "--duration", "5s"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("OUTPOST_BENCH_BIN"), append(args, extra...)...)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("outpost-bench %s\n%s", strings.Join(append(args, extra...), " "), out.String())
	if err != nil {
		t.Fatalf("outpost-bench: %v", err)
	}
}

// startDistributionOnS3 runs distribution with its S3 driver on a bucket
// of the shared S3 server and returns its URL.
func startDistributionOnS3(t *testing.T) string {
	t.Helper()
	s3srv := s3test.Shared(t)
	addr := freePort(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: %s
    secretkey: %s
    region: us-east-1
    regionendpoint: %s
    bucket: %s
    forcepathstyle: true
    secure: false
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  # Blobs stream through the registry, as Outpost's do without
  # storage.redirect (the load tool does not follow redirects).
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: outpost-bench-secret
`, s3test.AccessKey, s3test.SecretKey, s3srv.Endpoint, s3srv.Bucket(t), addr)
	path := filepath.Join(t.TempDir(), "distribution.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "registry"), "serve", path)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution on S3 did not start:\n%s", logs.String())
		}
	}
}
