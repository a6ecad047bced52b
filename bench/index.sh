#!/usr/bin/env bash
# Match index and metrics hot-path benchmark: bench_index from the release build ->
# bench/results/index.md (`make bench` runs it; BENCH=index runs only this one).
#
#   BUILD_DIR  release build tree (default: build)
#   Extra arguments go to bench_index: --quick (1/10 sizes) and/or section names
#   (pdq cross face rates conc obs; default all). The full run takes ~10 minutes on 2 cores and
#   ~2 GiB of memory.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_index >/dev/null
mkdir -p bench/results
out=bench/results/index.md
{
  echo "<!-- bench/index.sh: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') -->"
  echo
  "$build/bench/bench_index" "$@"
} > "$out"
cat "$out"
