#!/usr/bin/env bash
# Builds the Kubernetes control plane that test/kube installs the Helm chart
# on: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# and kwok (simulated nodes), at the versions pinned in
# test/kube/controlplane/go.mod, into .tools/k8s/bin. Then writes
# .tools/k8s/env, which exports their paths:
#
#   bash scripts/k8s-env.sh && . .tools/k8s/env
#
# Idempotent: a second run with the same pins returns at once. Safe to run
# beside other installs and other runs of itself (a lock file serialises
# runs; the Go caches are safe for concurrent use). A cold build takes
# minutes (kube-apiserver dominates); the Go build cache makes a rebuild
# after a pin change fast.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mod=test/kube/controlplane
dir=$repo/.tools/k8s
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

mkdir -p "$dir"
exec 9>"$dir/.lock"
if ! flock -w 3600 9; then
  echo "k8s-env: $dir/.lock still held after an hour" >&2
  exit 1
fi

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
# kubectl and Helm read the server's version, which the release build
# stamps into k8s.io/component-base/version.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
stamp=$( (cat "$mod/go.mod" "$mod/go.sum"; echo "$ldflags"; go env GOVERSION) | sha256sum | cut -c1-16)

write_env() {
  {
    echo "# Written by scripts/k8s-env.sh: the control plane that test/kube starts."
    echo "export KUBE_BIN_DIR='$dir/bin'"
    echo "export ETCD_BIN='$dir/bin/etcd'"
    echo "export KUBE_APISERVER_BIN='$dir/bin/kube-apiserver'"
    echo "export KUBE_CONTROLLER_MANAGER_BIN='$dir/bin/kube-controller-manager'"
    echo "export KUBE_SCHEDULER_BIN='$dir/bin/kube-scheduler'"
    echo "export KUBECTL_BIN='$dir/bin/kubectl'"
    echo "export KWOK_BIN='$dir/bin/kwok'"
    echo "export KWOK_STAGES='$dir/kwok-stages.yaml'"
  } > "$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}

complete() {
  [ "$(cat "$dir/bin/.stamp" 2>/dev/null)" = "$stamp" ] || return 1
  [ -s "$dir/kwok-stages.yaml" ] || return 1
  local t
  for t in "${tools[@]}"; do [ -x "$dir/bin/$t" ] || return 1; done
}

if complete; then
  write_env
  echo "k8s-env: Kubernetes $k8s_version tools present in $dir/bin"
  exit 0
fi

start=$(date +%s)
echo "k8s-env: building Kubernetes $k8s_version tools (${tools[*]}) into $dir/bin"
new=$dir/bin.new.$$
rm -rf "$new"
mkdir -p "$new"
trap 'rm -rf "$new"' EXIT
# One go build of every tool in the module: the packages they share
# (client-go, apimachinery, grpc, etcd's client) compile once, and the
# compiler keeps both cores busy. -mod=readonly: go.sum is the pin.
(cd "$mod" && GOFLAGS=-mod=readonly go build -ldflags "$ldflags" -o "$new/" tool)
# A tool whose module path ends in a major version is named after the
# element before it: go.etcd.io/etcd/server/v3 builds as "server".
mv "$new/server" "$new/etcd"

# kwok moves its simulated nodes and pods through stages it reads from its
# configuration: nodes become Ready and keep a heartbeat, pods start, get
# Ready, complete and are deleted, as a fast kubelet would do.
kwok_dir=$(cd "$mod" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
  pod/general/pod-create.yaml pod/general/pod-ready.yaml pod/general/pod-complete.yaml pod/general/pod-delete.yaml; do
  echo "---"
  cat "$kwok_dir/kustomize/stage/$f"
done > "$new/kwok-stages.yaml"

for t in "${tools[@]}"; do [ -x "$new/$t" ] || { echo "k8s-env: $t was not built" >&2; exit 1; }; done
echo "$stamp" > "$new/.stamp"
mv "$new/kwok-stages.yaml" "$dir/kwok-stages.yaml"
rm -rf "$dir/bin"
mv "$new" "$dir/bin"
trap - EXIT
write_env
echo "k8s-env: built in $(( $(date +%s) - start ))s: $("$dir/bin/kube-apiserver" --version), etcd $("$dir/bin/etcd" --version | sed -n 's/^etcd Version: //p'), kwok $("$dir/bin/kwok" --version 2>/dev/null | head -1)"
