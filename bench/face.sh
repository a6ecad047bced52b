#!/usr/bin/env bash
# Face benchmark: bench_face from the release build, and face-api 1.7.15 (tfjs 4.22, wasm
# backend, node) on the same photos and model files, side by side -> bench/results/face.md.
#
#   BUILD_DIR=build-x bench/face.sh [bench_face arguments]   (e.g. --runs 100 --seconds 5)
#   FACEAPI=0 bench/face.sh      skips the node side (no npm needed)
#
# The node side installs bench/faceapi's pinned packages with `npm ci` on first use (the npm
# registry must be reachable then; never part of `make test`). Both programs time every call by
# wall clock and by CPU time; on a shared host compare the CPU columns.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_face >/dev/null
mkdir -p bench/results
out=bench/results/face.md
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-face-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

faceapi=${FACEAPI:-1}
if [ "$faceapi" != 0 ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "face.sh: node/npm not found; running without the face-api side (FACEAPI=0)" >&2
    faceapi=0
  elif [ ! -d bench/faceapi/node_modules/@vladmandic/face-api ]; then
    (cd bench/faceapi && npm ci --no-audit --no-fund >&2)
  fi
fi

{
  echo "# bench_face: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Host: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(grep -o -w -E 'avx512_vnni|avx512_bf16|avx512bw|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/ $//')); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Command: \`BUILD_DIR=$build bench/face.sh $*\`"
  echo
  "$build/bench/bench_face" --summary "$tmp/vigil.tsv" "$@"
  if [ "$faceapi" != 0 ]; then
    node bench/faceapi/bench.js --summary "$tmp/faceapi.tsv"
  fi
} > "$tmp/report.md"

# Side by side: face-api's calls against the same calls in Vigil, by median CPU time (and wall).
side_by_side() {
  echo "## Side by side, one thread, same photos and weights (median CPU ms; wall ms in brackets)"
  echo
  echo "| call | face-api (wasm, f32) | Vigil f32 | Vigil bf16 | Vigil int8 | speed-up f32 | best speed-up |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '
    FNR == NR { fa[$2] = $5; faw[$2] = $4; next }
    { v[$2 "/" $3] = $5; vw[$2 "/" $3] = $4 }
    END {
      n = split("tiny320 tiny416 ssd landmarks descriptor", keys, " ");
      for (i = 1; i <= n; i++) {
        k = keys[i];
        if (!(k in fa)) continue;
        line = sprintf("| %s | %.1f (%.1f) |", k, fa[k], faw[k]);
        best = 0;
        split("f32 bf16 int8", ps, " ");
        for (j = 1; j <= 3; j++) {
          key = k "/" ps[j];
          if (key in v) {
            line = line sprintf(" %.2f (%.2f) |", v[key], vw[key]);
            if (best == 0 || v[key] < best) best = v[key];
          } else line = line " - |";
        }
        f32 = (k "/f32") in v ? sprintf("%.0fx", fa[k] / v[k "/f32"]) : "-";
        line = line sprintf(" %s | %s |", f32, best > 0 ? sprintf("%.0fx", fa[k] / best) : "-");
        print line;
      }
      if ("pipeline" in fa) {
        print "";
        print "| whole pipeline per photo (mean of per-photo medians) | face-api, tiny 416, f32 | Vigil | speed-up |";
        print "|---|---|---|---|";
        split("pipeline-balanced-f32 pipeline-balanced pipeline-speed", pk, " ");
        split("balanced level, all f32 (tiny 416)|balanced level (tiny 416 f32, recogniser int8)|speed level (tiny 320 bf16, recogniser int8)", pn, "|");
        for (j = 1; j <= 3; j++) {
          key = pk[j] "/-";
          if (key in v)
            printf("| Vigil %s | %.1f (%.1f) | %.1f (%.1f) | %.0fx |\n",
                   pn[j], fa["pipeline"], faw["pipeline"], v[key], vw[key], fa["pipeline"] / v[key]);
        }
      }
    }' "$tmp/faceapi.tsv" "$tmp/vigil.tsv"
  echo
}

{
  cat "$tmp/report.md"
  if [ "$faceapi" != 0 ] && [ -s "$tmp/faceapi.tsv" ]; then
    side_by_side
  fi
} > "$out"
cat "$out"
