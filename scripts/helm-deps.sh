#!/usr/bin/env bash
# Assembles the chart's cert-manager dependency offline from the
# cert-manager Go module (which ships its chart sources) into
# deploy/helm/outpost/charts/, instead of `helm dependency build`, which
# needs the chart repository on the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n '/name: cert-manager/,/repository/s/^ *version: *//p' deploy/helm/outpost/Chart.yaml | head -1)
dest=deploy/helm/outpost/charts/cert-manager
if [ -f "$dest/Chart.yaml" ] && grep -q "^version: ${version}$" "$dest/Chart.yaml"; then
  exit 0
fi
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/cert-manager/cert-manager@${version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir/deploy/charts/cert-manager" ] || { echo "helm-deps: no chart in cert-manager ${version}" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$dir/deploy/charts/cert-manager" "$dest"
chmod -R u+w "$dest"
sed -e "s/^version: .*/version: ${version}/" -e "s/^appVersion: .*/appVersion: ${version}/" -e 's/{{IS_PRERELEASE}}/false/' \
  "$dest/Chart.template.yaml" > "$dest/Chart.yaml"
# The chart passes its own switches (cert-manager.install, .enabled) in the
# subchart's values scope, which cert-manager's strict schema refuses.
rm -f "$dest/Chart.template.yaml" "$dest/README.template.md" "$dest/values.schema.json"
echo "helm-deps: cert-manager ${version} chart in $dest"
