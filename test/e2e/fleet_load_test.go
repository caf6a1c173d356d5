package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-registry/outpost/internal/bench"
)

// fleetLoad runs `outpost-bench fleet` against target with args and
// returns its report.
func fleetLoad(t *testing.T, target string, pids []int, args ...string) bench.FleetReport {
	t.Helper()
	bin := os.Getenv("OUTPOST_BENCH_BIN")
	if bin == "" {
		t.Skip("needs OUTPOST_BENCH_BIN (scripts/test.sh builds bin/outpost-bench)")
	}
	var ps []string
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	all := append([]string{"fleet", "--target", target, "--password", adminPassword, "--pids", strings.Join(ps, ",")}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, all...)
	var out, progress bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &progress
	err := cmd.Run()
	t.Logf("outpost-bench %s\n%s", strings.Join(all, " "), progress.String())
	var rep bench.FleetReport
	if err != nil || json.Unmarshal(out.Bytes(), &rep) != nil {
		t.Fatalf("outpost-bench fleet: %v\n%s", err, out.String())
	}
	return rep
}

// TestFleetLoadSmoke: the load tool's fleet simulation against one root:
// 20 sites heartbeat and poll the change feed every second for 3 s, with
// no error, and each site is seen Online at the root.
func TestFleetLoadSmoke(t *testing.T) {
	t.Parallel()
	root := startOutpost(t, "--tls-mode", "off")
	rep := fleetLoad(t, root.url, []int{root.pid}, "--sites", "20", "--interval", "1s", "--duration", "3s")
	if rep.Errors != 0 || rep.Heartbeats < 40 || rep.FeedPolls < 40 {
		t.Fatalf("fleet smoke: %d errors (%s), %d heartbeats and %d feed polls, want 0 errors and at least 40 of each", rep.Errors, rep.FirstError, rep.Heartbeats, rep.FeedPolls)
	}
	var list []struct {
		Name            string `json:"name"`
		ConnectionState string `json:"connectionState"`
	}
	root.api(t, "GET", "/api/v1/connected-registries", nil, &list)
	online := 0
	for _, c := range list {
		if strings.HasPrefix(c.Name, "load-") && c.ConnectionState == "Online" {
			online++
		}
	}
	if online != 20 {
		t.Errorf("%d of the 20 simulated sites are Online at the root", online)
	}
}

// TestReplicatedRootFleetLoad is no test but a driver of the load tool
// (it asserts no timing): 1,000 simulated connected registries heartbeat
// and poll the change feed every 30 s for 2 minutes against three
// replicas behind HAProxy. Figures in docs/benchmarks.md. Run with
// OUTPOST_BENCH_FLEET=1 (and OUTPOST_E2E, OUTPOST_BIN, OUTPOST_BENCH_BIN);
// OUTPOST_BENCH_FLEET_ARGS replaces the tool's arguments.
func TestReplicatedRootFleetLoad(t *testing.T) {
	if os.Getenv("OUTPOST_BENCH_FLEET") != "1" {
		t.Skip("a benchmark driver: set OUTPOST_BENCH_FLEET=1")
	}
	rs := replicatedRoot(t, 3)
	lb := balance(t, rs)
	var warm []string
	var pids []int
	for _, r := range rs {
		warm = append(warm, r.url)
		pids = append(pids, r.pid)
	}
	args := strings.Fields(os.Getenv("OUTPOST_BENCH_FLEET_ARGS"))
	if len(args) == 0 {
		args = []string{"--sites", "1000", "--interval", "30s", "--duration", "2m"}
	}
	rep := fleetLoad(t, lb.url, pids, append(args, "--warm", strings.Join(warm, ","))...)
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("fleet load through 3 replicas:\n%s", b)
	if rep.Errors != 0 {
		t.Errorf("%d errors, the first: %s", rep.Errors, rep.FirstError)
	}
	fmt.Fprintln(os.Stderr, string(b))
}
