#!/usr/bin/env bash
# Copy-detection evaluation of issue 14 on the Debian set (docs/MATCHING.md): builds the set
# with bench/copy_eval_set.sh into COPY_EVAL_CACHE (default ~/.cache/vigil-copy-eval; apt-get
# download of 20 Debian 12 packages, about 3.5 GB, once), then bench_copy from the release build
# with the halves and a threshold sweep -> bench/results/copy.md (`make bench` runs it;
# BENCH=copy runs only this one). About 11-20 minutes on 2 shared cores, 1.5 GiB of memory.
#
#   BUILD_DIR        release build tree (default: build)
#   COPY_EVAL_CACHE  where the packages and the prepared set live
#   Extra arguments go to bench_copy (e.g. --every 4 for a quarter of the queries).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cache=${COPY_EVAL_CACHE:-$HOME/.cache/vigil-copy-eval}
cmake --build "$build" --target bench_copy >/dev/null
[ -d "$cache/set" ] || bench/copy_eval_set.sh "$cache" "$build/bench/bench_copy"
mkdir -p bench/results
out=bench/results/copy.md
{
  echo "<!-- bench/copy.sh: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') -->"
  echo
  BC_PARTS=1 BC_SWEEP=64 "$build/bench/bench_copy" --photos "$cache/set" --mech all "$@"
} > "$out"
cat "$out"
