#!/usr/bin/env bash
# Re-fetches the vendored browser libraries of the web UI from the npm registry.
# Development-time only: the app and the tests never run this; they use the committed
# files under src/lightsoc/web/static/vendor/ (the UI must work offline, no CDN).
# Versions are pinned exactly; bump them here, run this, update vendor/README.md with the
# printed sha256 sums, and re-run tests/web/test_browser_harness.py.
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX_VERSION=2.0.11
CHARTJS_VERSION=4.6.1
DEST=src/lightsoc/web/static/vendor

command -v npm >/dev/null || { echo "vendor_static: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d /tmp/vendor-npm.XXXXXX)
trap 'rm -rf "$work"' EXIT

# `npm pack` fetches the published tarball (checked against the registry's integrity hash)
# without installing anything or running package scripts.
(cd "$work" && npm pack --silent "htmx.org@$HTMX_VERSION" "chart.js@$CHARTJS_VERSION" >/dev/null)
mkdir -p "$work/htmx" "$work/chartjs" "$DEST"
tar -xzf "$work/htmx.org-$HTMX_VERSION.tgz" -C "$work/htmx"
tar -xzf "$work/chart.js-$CHARTJS_VERSION.tgz" -C "$work/chartjs"

# Only the minified browser builds, byte for byte as published, with their licences.
install -m 0644 "$work/htmx/package/dist/htmx.min.js" "$DEST/htmx.min.js"
install -m 0644 "$work/htmx/package/LICENSE" "$DEST/htmx.LICENSE"
install -m 0644 "$work/chartjs/package/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
install -m 0644 "$work/chartjs/package/LICENSE.md" "$DEST/chart.js.LICENSE"

echo "htmx.org $HTMX_VERSION, chart.js $CHARTJS_VERSION -> $DEST"
(cd "$DEST" && sha256sum htmx.min.js htmx.LICENSE chart.umd.min.js chart.js.LICENSE)
