#!/usr/bin/env bash
# The test command: installs what the tests need, then runs formatting and
# static checks, the unit and integration tests (race detector on), the OCI
# conformance suite against the built binary, and the end-to-end tests
# with real clients. Exits non-zero on any failure; the last line is the
# total "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
mkdir -p results
section() { printf '\n==== %s\n' "$*"; }

# The Kubernetes control plane for the chart test (about 14 min of CPU
# cold, seconds warm) builds in the background while the other phases run.
bash scripts/k8s-env.sh > results/k8s-env.log 2>&1 &
K8S_ENV_PID=$!

section "install tools"
bash scripts/install-tools.sh

section "gofmt"
unformatted=$(gofmt -l cmd internal test 2>/dev/null || true)
if [ -n "$unformatted" ]; then echo "not gofmt'd:"; echo "$unformatted"; exit 1; fi
echo ok

section "go vet"
go vet ./...

section "staticcheck"
staticcheck ./...

section "build"
go build -ldflags "-X github.com/outpost-registry/outpost/internal/cli.commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)" -o bin/outpost ./cmd/outpost
go build -o bin/outpost-bench ./cmd/outpost-bench
bin/outpost version

# count_go LOG: prints "passed failed" for a go test -v log.
count_go() {
  local p f
  p=$(grep -cE '^\s*--- PASS' "$1" || true)
  f=$(grep -cE '^\s*--- FAIL' "$1" || true)
  echo "$p $f"
}

section "unit and integration tests (go test -race ./...)"
rc=0
go test -race -count=1 -v ./... >results/unit.log 2>&1 || rc=$?
grep -E '^(ok|FAIL|---|panic:|\s+--- FAIL)|^\s+\S+_test.go:[0-9]+:' results/unit.log | grep -v -- '--- PASS' | grep -v '^=== ' | tail -200 || true
read -r UNIT_PASS UNIT_FAIL < <(count_go results/unit.log)
echo "unit: $UNIT_PASS passed, $UNIT_FAIL failed"
[ "$rc" -eq 0 ] || { echo "unit tests failed (exit $rc); see results/unit.log"; UNIT_FAIL=$((UNIT_FAIL > 0 ? UNIT_FAIL : 1)); }

section "fuzz smoke (5 s per target)"
fuzz_fail=0
while read -r pkg target; do
  [ -n "$target" ] || continue
  ok=0
  for attempt in 1 2; do
    if go test -run='^$' -fuzz="^${target}\$" -fuzztime=5s "$pkg" >results/fuzz.log 2>&1; then ok=1; break; fi
    # A new failing input is a real failure; anything else (the fuzz
    # engine's own deadline on a loaded machine) gets one more try.
    grep -q 'Failing input written to' results/fuzz.log && break
    echo "fuzz $pkg $target: engine error without a failing input, retrying"
  done
  if [ "$ok" -ne 1 ]; then
    echo "fuzz $pkg $target FAILED"; tail -20 results/fuzz.log; fuzz_fail=$((fuzz_fail + 1))
  else
    echo "fuzz $pkg $target ok"
  fi
done < <(grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
  for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do echo "./$(dirname "$f") $t"; done
done)

section "benchmarks smoke (-benchtime=1x)"
go test -run='^$' -bench=. -benchtime=1x ./internal/... >results/bench-smoke.log 2>&1 || { tail -30 results/bench-smoke.log; echo "benchmark smoke failed"; exit 1; }
echo "benchmarks run: $(grep -c '^Benchmark' results/bench-smoke.log || true)"

section "OCI conformance"
conf_rc=0
bash scripts/conformance.sh || conf_rc=$?
read -r CONF_PASS CONF_FAIL _ < results/conformance.counts || { CONF_PASS=0; CONF_FAIL=1; }
[ "$conf_rc" -eq 0 ] || CONF_FAIL=$((CONF_FAIL > 0 ? CONF_FAIL : 1))

section "load tool smoke (scripts/bench.sh --smoke: figures are printed, never asserted)"
BENCH_FAIL=0
if bash scripts/bench.sh --smoke >results/bench.log 2>&1; then
  grep -A40 '^workload' results/bench.log | head -60 || true
  echo "load tool smoke: ok"
else
  tail -40 results/bench.log; echo "load tool smoke FAILED"; BENCH_FAIL=1
fi

section "end-to-end tests with real clients, and the Helm chart"
e2e_rc=0
bash scripts/helm-deps.sh
OUTPOST_E2E=1 OUTPOST_BIN="$PWD/bin/outpost" OUTPOST_BENCH_BIN="$PWD/bin/outpost-bench" HELM_BIN="$PWD/.tools/bin/helm" go test -race -count=1 -v ./test/... >results/e2e.log 2>&1 || e2e_rc=$?
grep -E '^(ok|FAIL|\s*--- (PASS|FAIL|SKIP)|panic:)|^\s+\S+_test.go:[0-9]+:' results/e2e.log | tail -200 || true
read -r E2E_PASS E2E_FAIL < <(count_go results/e2e.log)
[ "$e2e_rc" -eq 0 ] || E2E_FAIL=$((E2E_FAIL > 0 ? E2E_FAIL : 1))

section "Helm chart on a real kube-apiserver with simulated nodes"
kube_rc=0
if wait "$K8S_ENV_PID"; then
  tail -5 results/k8s-env.log
  # shellcheck disable=SC1091
  . .tools/k8s/env
  OUTPOST_KUBE=1 HELM_BIN="$PWD/.tools/bin/helm" go test -count=1 -timeout 15m -v ./test/kube/ >results/kube.log 2>&1 || kube_rc=$?
else
  cat results/k8s-env.log; echo "scripts/k8s-env.sh failed"; : >results/kube.log; kube_rc=1
fi
grep -E '^(ok|FAIL|\s*--- (PASS|FAIL|SKIP)|panic:)|^\s+\S+_test.go:[0-9]+:' results/kube.log | tail -100 || true
read -r KUBE_PASS KUBE_FAIL < <(count_go results/kube.log)
[ "$kube_rc" -eq 0 ] || KUBE_FAIL=$((KUBE_FAIL > 0 ? KUBE_FAIL : 1))

section "summary"
echo "unit/integration: $UNIT_PASS passed, $UNIT_FAIL failed"
echo "fuzz targets failed: $fuzz_fail"
echo "load tool smoke failed: $BENCH_FAIL"
echo "conformance: $CONF_PASS passed, $CONF_FAIL failed"
echo "e2e: $E2E_PASS passed, $E2E_FAIL failed"
echo "kube: $KUBE_PASS passed, $KUBE_FAIL failed"
PASS=$((UNIT_PASS + CONF_PASS + E2E_PASS + KUBE_PASS))
FAIL=$((UNIT_FAIL + CONF_FAIL + E2E_FAIL + fuzz_fail + BENCH_FAIL + KUBE_FAIL))
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
