#!/usr/bin/env bash
# Builds the Outpost container image without a Docker engine: a static
# outpost binary in one layer on an empty base, entrypoint /outpost,
# user 65532, for linux/amd64 and linux/arm64, pushed as a multi-platform
# index to REF (any registry, Outpost included). With --oci-layout DIR it
# also saves the image as an OCI layout, to carry to a site and load there
# (`crane push DIR REF`, or `skopeo copy oci:DIR docker://REF`).
#
#   scripts/image.sh REF [--oci-layout DIR]
# crane reads credentials from DOCKER_CONFIG and a private CA from SSL_CERT_FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/image.sh REF [--oci-layout DIR]" >&2; exit 2; }
ref=$1; shift
layout=""
if [ "${1:-}" = "--oci-layout" ]; then layout=$2; fi
crane=${CRANE:-$PWD/.tools/bin/crane}
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
manifests=()
for arch in amd64 arm64; do
  mkdir -p "$work/$arch/root"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X github.com/outpost-registry/outpost/internal/cli.version=$version -X github.com/outpost-registry/outpost/internal/cli.commit=$commit" \
    -o "$work/$arch/root/outpost" ./cmd/outpost
  tar --owner=0 --group=0 --numeric-owner --mtime='2000-01-01' -C "$work/$arch/root" -cf "$work/$arch/layer.tar" outpost
  "$crane" append --oci-empty-base --platform "linux/$arch" -f "$work/$arch/layer.tar" -t "$ref-$arch" >/dev/null
  "$crane" mutate "$ref-$arch" --entrypoint /outpost --cmd serve --user 65532:65532 \
    --label org.opencontainers.image.version="$version" --label org.opencontainers.image.revision="$commit" \
    --set-platform "linux/$arch" -t "$ref-$arch" >/dev/null
  manifests+=(-m "$ref-$arch")
done
"$crane" index append "${manifests[@]}" -t "$ref" >/dev/null
digest=$("$crane" digest "$ref")
echo "image: $ref@$digest"
if [ -n "$layout" ]; then
  "$crane" pull --format oci "$ref" "$layout"
  echo "OCI layout: $layout"
fi
