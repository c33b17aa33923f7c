#!/usr/bin/env bash
# Re-fetch the console's vendored libraries from the npm registry at the pinned versions
# (`make console-vendor`) and check every file against console/vendor.sha256. Only `npm pack` is
# used: nothing is installed, no build runs. `--update` rewrites the checksums (after changing a
# pinned version on purpose); without it a mismatch fails and the files are left as they were.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vendor="$here/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package@version  destination  file-in-package...
PACKAGES=(
  "leaflet@1.9.4|leaflet|LICENSE dist/leaflet.js dist/leaflet.css dist/images/layers.png dist/images/layers-2x.png dist/images/marker-icon.png dist/images/marker-icon-2x.png dist/images/marker-shadow.png"
  "@geoman-io/leaflet-geoman-free@2.20.2|leaflet-geoman|LICENSE dist/leaflet-geoman.min.js dist/leaflet-geoman.css"
  "h3-js@4.5.0|h3-js|LICENSE NOTICE dist/h3-js.umd.js"
  "uplot@1.6.32|uplot|LICENSE dist/uPlot.iife.min.js dist/uPlot.min.css"
)

stage="$work/vendor"
for entry in "${PACKAGES[@]}"; do
  IFS='|' read -r spec dest files <<<"$entry"
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tarball="$(ls -t "$work"/*.tgz | head -n1)"
  mkdir -p "$work/x" && rm -rf "$work/x/package" && tar xzf "$tarball" -C "$work/x"
  rm -f "$tarball"
  for f in $files; do
    target="$stage/$dest/${f#dist/}"
    mkdir -p "$(dirname "$target")"
    cp "$work/x/package/$f" "$target"
  done
  echo "$spec" > "$stage/$dest/VERSION"
done

if [[ "${1:-}" == "--update" ]]; then
  (cd "$stage" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$here/vendor.sha256"
fi
(cd "$stage" && sha256sum --quiet -c "$here/vendor.sha256")
(cd "$stage" && find . -type f | LC_ALL=C sort) | diff - <(awk '{print $2}' "$here/vendor.sha256")
rm -rf "$vendor" && cp -r "$stage" "$vendor"
echo "console/static/vendor: $(wc -l < "$here/vendor.sha256") files match console/vendor.sha256"
