#!/usr/bin/env bash
# The reliability runs behind `make soak`, `make fuzz-http`, `make soak-api`, `make overload` and
# `make diskfull` (docs/RELIABILITY.md). Each builds what it needs and runs one bounded tool
# against a `vigil serve` it starts itself on 127.0.0.1; heavy runs are niced (the machine is
# shared). Knobs (environment):
#   SOAK_CYCLES=1000          kill -9 cycles                       (make soak)
#   FUZZ_HTTP_REQUESTS=1000000 fuzzed requests, ASan+UBSan server  (make fuzz-http)
#   SOAK_API_REQUESTS=1000000 mixed API requests, release server   (make soak-api)
#   OVERLOAD_SECONDS=60       overload duration at 3x capacity     (make overload)
#   REL_SEED=1                seed of every generator (a run is reproducible from it)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?kill9|fuzz-http|soak-api|overload|diskfull|fairness}
seed=${REL_SEED:-1}
jobs=${JOBS:-$(nproc)}
nice_run() { nice -n 10 "$@"; }

case "$what" in
  kill9)
    JOBS=$jobs scripts/build.sh release build
    nice_run build/tests/reliability/rel_kill9 --vigil build/src/cli/vigil \
      --cycles "${SOAK_CYCLES:-1000}" --seed "$seed" --max-seconds 14400 ;;
  fuzz-http)
    JOBS=$jobs scripts/build.sh asan build-asan
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    mkdir -p fuzz/crashes/http
    nice_run build-asan/tests/reliability/rel_httpfuzz --vigil build-asan/src/cli/vigil \
      --requests "${FUZZ_HTTP_REQUESTS:-1000000}" --seed "$seed" --max-seconds 7200 \
      --crash-dir fuzz/crashes/http ;;
  soak-api)
    JOBS=$jobs scripts/build.sh release build
    nice_run build/tests/reliability/rel_soak --vigil build/src/cli/vigil \
      --requests "${SOAK_API_REQUESTS:-1000000}" --seed "$seed" --max-seconds 7200 ;;
  overload)
    JOBS=$jobs scripts/build.sh release build
    nice_run build/tests/reliability/rel_soak --vigil build/src/cli/vigil --overload \
      --seconds "${OVERLOAD_SECONDS:-60}" --seed "$seed" ;;
  diskfull)
    JOBS=$jobs scripts/build.sh release build
    scripts/diskfull.sh build/src/cli/vigil ;;
  fairness)
    JOBS=$jobs scripts/build.sh release build
    nice_run python3 tests/reliability/rel_fairness.py --vigil build/src/cli/vigil \
      --seconds "${FAIRNESS_SECONDS:-20}" ;;
  *) echo "reliability.sh: unknown run '$what'" >&2; exit 2 ;;
esac
