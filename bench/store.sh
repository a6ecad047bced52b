#!/usr/bin/env bash
# Store benchmark: bench_store from the release build -> bench/results/store.md.
# Scan inserts/s (2 matches each) with 1, 8 and 32 concurrent callers at synchronous=FULL and
# NORMAL, and the two most used reads. The database goes to a temporary directory on the same
# disk as the data directory (BENCH_STORE_DIR overrides; it must not be tmpfs for FULL numbers
# to mean anything). Extra arguments go to bench_store (--seconds S --threads 1,8 --sync full).
# BENCH_STORE_PG=1 runs the same again with the store on PostgreSQL: a throwaway server
# (scripts/pg-tmp.sh with fsync on) in a temporary directory on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_store >/dev/null
mkdir -p bench/results
dir=${BENCH_STORE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-store-XXXXXX")}
trap 'rm -rf "$dir"' EXIT
out=bench/results/store.md
{
  echo "# bench_store: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg); SQLite $(pkg-config --modversion sqlite3)."
  echo
  "$build/bench/bench_store" --dir "$dir" --threads 1,8,32 "$@"
  if [ -n "${BENCH_STORE_PG:-}" ]; then
    source scripts/pg-tmp.sh
    PG_TMP_FSYNC=on pg_tmp_start >&2
    echo
    echo "PostgreSQL $(psql --version | awk '{print $3}') (throwaway server on 127.0.0.1, fsync on, synchronous_commit per row):"
    echo
    "$build/bench/bench_store" --database "$VIGIL_TEST_PG_URL" --threads 1,8,32 "$@"
  fi
} > "$out"
cat "$out"
