#!/usr/bin/env bash
# The benchmark suite of issue 5: `vigil bench` from the release build -> bench/results/suite/
# (bench.md with SVG charts beside it, bench.json, server.log). scripts/bench.sh (make bench) runs
# it with the other bench/*.sh wrappers; `BENCH=suite make bench` runs only it.
# SUITE_ARGS adds flags (e.g. SUITE_ARGS=--quick, or --only sweep,memory); extra arguments too.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
vigil=${VIGIL:-$build/src/cli/vigil}
cmake --build "$build" --target vigil >/dev/null
out=bench/results/suite
rm -rf "$out"
# shellcheck disable=SC2086
"$vigil" bench --out "$out" ${SUITE_ARGS:-} "$@"
cat "$out/bench.md"
