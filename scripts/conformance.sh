#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (every API and data
# setting at its OCI_VERSION=1.1 default, plus the optional upload-cancel and
# tag-parameter checks) against the built bin/outpost, twice:
#   1. HTTPS with the built-in CA, as a token bound to _repositories_admin
#      (the Docker token protocol);
#   2. plain HTTP (--tls-mode off), as the admin with Basic credentials.
# Prints pass/fail/skip counts and the name of every failed check; exits
# non-zero on any failure. Writes the totals to results/conformance.counts.
# OCI_DATA_SPARSE stays off: Outpost refuses, by design, manifests whose
# blobs or child manifests are missing (MANIFEST_BLOB_UNKNOWN).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${OUTPOST_BIN:-$PWD/bin/outpost}
CONF=${CONFORMANCE_BIN:-$PWD/.tools/bin/conformance}
RESULTS=${RESULTS_DIR:-$PWD/results}
mkdir -p "$RESULTS"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
ADMIN_PW=conformance-admin-password

start_server() { # name port extra-args...
  local name=$1 port=$2; shift 2
  OUTPOST_ADMIN_PASSWORD=$ADMIN_PW "$BIN" serve --addr "127.0.0.1:$port" --data "$WORK/$name" --log-level Warning "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}

wait_ready() { # url curl-args...
  local url=$1; shift
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null -u "admin:$ADMIN_PW" "$@" "$url/v2/"; then return 0; fi
    sleep 0.1
  done
  echo "conformance: server at $url did not become ready" >&2
  return 1
}

TOTAL_PASS=0 TOTAL_FAIL=0 TOTAL_SKIP=0
run_suite() { # label registry tls user password
  local label=$1 reg=$2 tls=$3 user=$4 pass=$5 dir="$RESULTS/conformance-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  echo "--- conformance ($label): $reg tls=$tls user=$user"
  local rc=0
  OCI_REGISTRY=$reg OCI_TLS=$tls OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
    OCI_USERNAME=$user OCI_PASSWORD=$pass OCI_RESULTS_DIR=$dir \
    OCI_API_BLOBS_UPLOAD_CANCEL=true OCI_API_MANIFESTS_TAG_PARAM=true \
    timeout 600 "$CONF" >"$dir/output.txt" 2>&1 || rc=$?
  local tests skipped failed
  tests=$(grep -o '<testsuites[^>]*' "$dir/junit.xml" | grep -o 'tests="[0-9]*"' | head -1 | tr -dc 0-9)
  skipped=$(grep -c 'status="skipped"' "$dir/junit.xml" || true)
  failed=$(grep -c 'status="failed"' "$dir/junit.xml" || true)
  tests=${tests:-0}
  local passed=$((tests - skipped - failed))
  echo "conformance ($label): $tests checks: $passed passed, $failed failed, $skipped skipped (exit $rc)"
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    grep -o 'testcase name="[^"]*"[^>]*status="failed"' "$dir/junit.xml" | sed 's/testcase name="\([^"]*\)".*/  FAILED: \1/' | sort -u
    grep 'failed test' "$dir/output.txt" | head -40 || true
    [ "$failed" -gt 0 ] || failed=1
  fi
  if [ "$skipped" -gt 0 ]; then
    grep -o 'testcase name="[^"]*"[^>]*status="skipped"' "$dir/junit.xml" | sed 's/testcase name="\([^"]*\)".*/  skipped: \1/' | sort -u
  fi
  TOTAL_PASS=$((TOTAL_PASS + passed)); TOTAL_FAIL=$((TOTAL_FAIL + failed)); TOTAL_SKIP=$((TOTAL_SKIP + skipped))
}

# 1. HTTPS (built-in CA) with a token bound to _repositories_admin.
P1=$(free_port)
start_server tls "$P1"
wait_ready "https://127.0.0.1:$P1" --cacert "$WORK/tls/pki/ca.crt"
TOKEN_PW=$(curl -sf --cacert "$WORK/tls/pki/ca.crt" -u "admin:$ADMIN_PW" -H 'Content-Type: application/json' \
  -d '{"name":"conformance","scopeMapName":"_repositories_admin"}' "https://127.0.0.1:$P1/api/v1/tokens" |
  sed -n 's/.*"value": *"\([^"]*\)".*/\1/p' | head -1)
[ -n "$TOKEN_PW" ] || { echo "conformance: could not create the token" >&2; exit 1; }
SSL_CERT_FILE="$WORK/tls/pki/ca.crt" run_suite https-token "127.0.0.1:$P1" enabled conformance "$TOKEN_PW"

# 2. Plain HTTP with the admin's Basic credentials.
P2=$(free_port)
start_server plain "$P2" --tls-mode off
wait_ready "http://127.0.0.1:$P2"
run_suite http-admin "127.0.0.1:$P2" disabled admin "$ADMIN_PW"

echo "$TOTAL_PASS $TOTAL_FAIL $TOTAL_SKIP" > "$RESULTS/conformance.counts"
echo "conformance total: $TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
[ "$TOTAL_FAIL" -eq 0 ]
