#!/usr/bin/env bash
# Installs everything the tests need on a bare Debian machine with Go:
# Debian packages (skopeo, containerd, kubectl, headless Chromium, postgresql-15, haproxy) and the Go tools pinned in
# tools/go.mod, built into .tools/bin (the Go build cache keeps warm runs fast).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local missing=()
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  # The dashboard's browser test (test/e2e/dashboard_test.go).
  command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || missing+=(chromium-headless-shell)
  # The PostgreSQL metadata store's tests start their own server
  # (internal/storage/postgres/pgtest); no cluster is configured.
  [ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
  # The load balancer in front of the replicated-root e2e test.
  command -v haproxy >/dev/null || missing+=(haproxy)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install-tools: Debian packages present"
    return 0
  fi
  echo "install-tools: apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

go_tools() {
  mkdir -p .tools/bin
  local pkgs
  pkgs=$(cd tools && sed -n '/^tool (/,/^)/p' go.mod | grep -v '^tool (\|^)' | tr -d '\t')
  echo "install-tools: go build $(echo "$pkgs" | wc -l) tools into .tools/bin"
  (cd tools && GOFLAGS=-mod=mod go build -o ../.tools/bin/ $pkgs)
}

# distribution, the registry the load tool compares Outpost with
# (scripts/bench.sh); a module of its own, so built apart from tools/.
DISTRIBUTION_VERSION=v3.1.2
distribution() {
  if .tools/bin/registry --version 2>/dev/null | grep -q " ${DISTRIBUTION_VERSION}"; then
    echo "install-tools: distribution ${DISTRIBUTION_VERSION} present"
    return 0
  fi
  mkdir -p .tools/bin
  GOBIN="$PWD/.tools/bin" GOFLAGS= go install "github.com/distribution/distribution/v3/cmd/registry@${DISTRIBUTION_VERSION}"
  echo "install-tools: built distribution ${DISTRIBUTION_VERSION}"
}

# versitygw, the S3-compatible server the tests of the S3 blob store run
# against (internal/storage/s3/s3test); a module of its own as well.
VERSITYGW_VERSION=v1.8.0
versitygw() {
  if [ -x .tools/bin/versitygw ] && grep -qx "${VERSITYGW_VERSION}" .tools/bin/.versitygw-version 2>/dev/null; then
    echo "install-tools: versitygw ${VERSITYGW_VERSION} present"
    return 0
  fi
  mkdir -p .tools/bin
  GOBIN="$PWD/.tools/bin" GOFLAGS= go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
  echo "${VERSITYGW_VERSION}" > .tools/bin/.versitygw-version
  echo "install-tools: built versitygw ${VERSITYGW_VERSION}"
}

start=$(date +%s)
apt_install > .tools-apt.log 2>&1 &
apt_pid=$!
distribution > .tools-distribution.log 2>&1 &
dist_pid=$!
versitygw > .tools-versitygw.log 2>&1 &
vgw_pid=$!
go_tools
if ! wait "$apt_pid"; then
  cat .tools-apt.log
  echo "install-tools: apt-get failed" >&2
  exit 1
fi
cat .tools-apt.log; rm -f .tools-apt.log
if ! wait "$dist_pid"; then
  cat .tools-distribution.log
  echo "install-tools: building distribution failed" >&2
  exit 1
fi
cat .tools-distribution.log; rm -f .tools-distribution.log
if ! wait "$vgw_pid"; then
  cat .tools-versitygw.log
  echo "install-tools: building versitygw failed" >&2
  exit 1
fi
cat .tools-versitygw.log; rm -f .tools-versitygw.log
echo "install-tools: done in $(( $(date +%s) - start ))s"
