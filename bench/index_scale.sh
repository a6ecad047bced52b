#!/usr/bin/env bash
# Match index at scale (issue 11 section 4): bench_index_scale from the release build ->
# bench/results/index_scale.md. Builds a SQLite store of N references (one PDQ hash each), then
# measures the load from it (store_open + catalog_open), the index's bytes and the process RSS,
# query latency (8 dihedral variants, threshold 31) and the RSS across 20 full reloads.
#
#   BUILD_DIR        release build tree (default: build)
#   BENCH_INDEX_DIR  where the database is written (default: a temp dir, removed at exit);
#                    set it and pass --keep to reuse a database between runs
#   Extra arguments go to bench_index_scale: --hashes N (default 1000000; 10000000 for the
#   target: ~3 GB of database, ~4 GB of memory while the store is written), --tenants T,
#   --queries Q, --reloads R, --keep.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_index_scale >/dev/null
mkdir -p bench/results
out=bench/results/index_scale.md
args=("$@")
if [ -n "${BENCH_INDEX_DIR:-}" ]; then
  mkdir -p "$BENCH_INDEX_DIR"
  args=(--dir "$BENCH_INDEX_DIR" "${args[@]}")
fi
{
  echo "<!-- bench/index_scale.sh $*: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') -->"
  echo
  "$build/bench/bench_index_scale" "${args[@]}"
} > "$out"
cat "$out"
