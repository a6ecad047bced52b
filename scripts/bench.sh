#!/usr/bin/env bash
# `make bench`: runs every bench/*.sh wrapper (each drives a bench_<name> program from the release
# build and writes its report under bench/results/). BENCH=<name> runs one.
set -euo pipefail
vigil=${1:?path to vigil}
cd "$(dirname "$0")/.."
mkdir -p bench/results
for b in bench/${BENCH:-*}.sh; do
  [ -e "$b" ] || continue
  echo "=== $b"
  VIGIL="$vigil" BUILD_DIR="$(dirname "$(dirname "$(dirname "$vigil")")")" bash "$b"
done
