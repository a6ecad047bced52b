#!/usr/bin/env bash
# PDQ fast mode against compat on large photos (issue 13; docs/BENCHMARKS.md, "PDQ fast mode on
# large photos"). Gathers the JPEG/PNG/WebP wallpapers of five Debian 12 packages into
# $PDQ_LARGE_DIR (default /work/cache/pdq-large, outside the repository), re-encodes those of
# 1920x1080 and more as JPEG quality 100 (4:4:4) into $PDQ_LARGE_DIR/q100, then prints the
# distribution of fast-vs-compat distances for fast mode as it is (full-resolution Y plane) and
# with the old 1/8-scale decode (--min-side 128). Needs apt-get download and python3-pil.
# Usage: bench/pdq_large.sh [path/to/vigil]   (VIGIL also works; bench.sh passes it)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${1:-${VIGIL:-$here/build/src/cli/vigil}}
dir=${PDQ_LARGE_DIR:-/work/cache/pdq-large}
py=${PYTHON_PIL:-/usr/bin/python3}
pkgs=(gnome-backgrounds mate-backgrounds ukui-wallpapers lomiri-wallpapers-20.04 plasma-workspace-wallpapers)
mkdir -p "$dir/debs" "$dir/x"
if [ ! -d "$dir/q100" ]; then
  (cd "$dir/debs" && apt-get download "${pkgs[@]}")
  for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/x"; done
  "$py" "$here/bench/pdq_large_prep.py" "$dir/x" "$dir/q100" > "$dir/prep.log"
fi
echo "=== fast (default: full-resolution Y plane) vs compat, $(find "$dir/q100" -name "*.jpg" | wc -l) images"
"$py" "$here/bench/pdq_large.py" "$vigil" "$dir/q100" || true
echo "=== fast --min-side 128 (1/8-scale decode, the default before issue 13) vs compat"
"$py" "$here/bench/pdq_large.py" "$vigil" "$dir/q100" --min-side 128 || true
