#!/usr/bin/env bash
# Benchmarks Outpost against the CNCF distribution registry and the
# loopback sendfile limit (docs/benchmarks.md).
#
#   scripts/bench.sh            full run: 1 GiB dataset, 5 s per workload, 3 rounds, profiles (about 10 minutes)
#   scripts/bench.sh --smoke    small dataset, 1 s per workload (under a minute once built), for CI
#   scripts/bench.sh [--smoke] -- [outpost-bench compare flags]   extra flags, e.g. -- --concurrency 8
#
# It installs the pinned distribution registry into .tools/bin, builds
# bin/outpost and bin/outpost-bench, and writes everything to
# bench-results/<UTC time>/: results.jsonl (one JSON line per figure),
# summary.txt (the table), profiles/ (pprof files and their top lists).
# It never fails on a figure: only a broken run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

DISTRIBUTION_VERSION=v3.1.2   # as in scripts/install-tools.sh

smoke=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "bench.sh: unknown argument $1 (want --smoke, or -- followed by outpost-bench flags)" >&2; exit 2 ;;
  esac
  shift
done

registry=.tools/bin/registry
if ! "$registry" --version 2>/dev/null | grep -q " ${DISTRIBUTION_VERSION}"; then
  echo "bench.sh: installing distribution ${DISTRIBUTION_VERSION} into .tools/bin (a few minutes on a cold cache)"
  mkdir -p .tools/bin
  GOBIN="$PWD/.tools/bin" GOFLAGS= go install "github.com/distribution/distribution/v3/cmd/registry@${DISTRIBUTION_VERSION}"
fi

echo "bench.sh: building bin/outpost and bin/outpost-bench"
go build -o bin/outpost ./cmd/outpost
go build -o bin/outpost-bench ./cmd/outpost-bench

stamp=$(date -u +%Y%m%dT%H%M%SZ)
[ "$smoke" -eq 1 ] && stamp="${stamp}-smoke"
out="bench-results/${stamp}"
mkdir -p "$out/profiles"

flags=(--outpost-bin bin/outpost --distribution-bin "$registry" --profile-dir "$out/profiles")
if [ "$smoke" -eq 1 ]; then
  flags+=(--size small --duration 1s --tags 200 --restarts 3 --push-max 16MiB)
else
  # Three rounds of the workload matrix; each ratio uses the median
  # round, which keeps a burst of other work from deciding a figure.
  flags+=(--rounds 3)
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$([ -z "$(git status --porcelain 2>/dev/null)" ] || echo ' (with uncommitted changes)')"
  echo "cores: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -r)"
  echo "go: $(go env GOVERSION)"
  echo "distribution: $("$registry" --version)"
  echo "args: ${flags[*]} ${extra[*]:-}"
} > "$out/meta.txt"
cat "$out/meta.txt"

# The tool bounds every workload in time and count; the timeout only
# guards against a hung server.
timeout 1800 bin/outpost-bench compare "${flags[@]}" "${extra[@]}" 2>&1 > "$out/results.jsonl" | tee "$out/summary.txt" >&2

for p in "$out"/profiles/*.pprof; do
  [ -e "$p" ] || continue
  case "$p" in
    *.allocs.pprof) go tool pprof -top -nodecount=40 -sample_index=alloc_space "$p" > "${p%.pprof}.top.txt" 2>/dev/null || true ;;
    *) go tool pprof -top -nodecount=40 "$p" > "${p%.pprof}.top.txt" 2>/dev/null || true ;;
  esac
done

lines=$(wc -l < "$out/results.jsonl")
echo "bench.sh: ${lines} JSON lines in $out/results.jsonl; summary in $out/summary.txt; profiles in $out/profiles/"
