#!/usr/bin/env bash
# Scheduler benchmark: bench_sched from the release build -> bench/results/sched.md.
# Extra arguments go to bench_sched (--seconds S --a-us A --b-us B --replicas R).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_sched >/dev/null
mkdir -p bench/results
out=bench/results/sched.md
{
  echo "# bench_sched: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
  echo
  echo "Host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  "$build/bench/bench_sched" "$@"
} > "$out"
cat "$out"
