#!/usr/bin/env bash
# Vendors htmx, the dashboard's one script library, from the npm registry
# into internal/ui/static/htmx.min.js (committed: the binary embeds it and
# nothing is fetched at build or run time). The version and the package's
# integrity (sha512, as npm records it) are pinned here; a tarball that
# does not match is refused. To upgrade: change both, run this script,
# review the diff and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX_VERSION=2.0.11
HTMX_INTEGRITY=sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "htmx.org@${HTMX_VERSION}" >/dev/null)
tgz="$tmp/htmx.org-${HTMX_VERSION}.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$HTMX_INTEGRITY" ]; then
  echo "vendor-htmx: integrity mismatch for htmx.org@${HTMX_VERSION}: got $got, want $HTMX_INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/dist/htmx.min.js package/LICENSE
{
  echo "/* htmx.org@${HTMX_VERSION} (${HTMX_INTEGRITY}), vendored by scripts/vendor-htmx.sh; BSD Zero Clause License */"
  cat "$tmp/package/dist/htmx.min.js"
} > internal/ui/static/htmx.min.js
echo "vendor-htmx: internal/ui/static/htmx.min.js is htmx.org@${HTMX_VERSION} ($(wc -c < internal/ui/static/htmx.min.js) bytes)"
