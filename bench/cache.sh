#!/usr/bin/env bash
# Cache tier benchmark: bench_cache from the release build -> bench/results/cache.md.
# Uses VIGIL_TEST_REDIS_URL if set, else starts a throwaway redis-server (scripts/redis-tmp.sh);
# without redis-server the L3 rows are skipped. Extra arguments go to bench_cache.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_cache >/dev/null
if [ -z "${VIGIL_TEST_REDIS_URL:-}" ]; then
  source scripts/redis-tmp.sh
  redis_tmp_start >&2
fi
mkdir -p bench/results
out=bench/results/cache.md
{
  echo "# bench_cache: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  "$build/bench/bench_cache" "$@"
} > "$out"
cat "$out"
