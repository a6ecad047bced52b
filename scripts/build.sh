#!/usr/bin/env bash
# Configures and builds one tree.  scripts/build.sh release|asan DIR
#   release: the default compiler (gcc), -O2 -g, warnings are errors
#   asan:    clang, ASan + UBSan without recovery, libFuzzer targets, warnings are errors
set -euo pipefail
kind=${1:?release|asan}
dir=${2:?build directory}
jobs=${JOBS:-$(nproc)}
case "$kind" in
  release) cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
  asan) CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DVG_SANITIZE=ON -DVG_FUZZ=ON \
          -DCMAKE_C_COMPILER=clang >/dev/null ;;
  *) echo "build.sh: unknown kind '$kind'" >&2; exit 2 ;;
esac
cmake --build "$dir" -j "$jobs" -- --no-print-directory 2>&1 |
  grep -v -E '^\[ *[0-9]+%\] (Building|Linking|Built)|^Consolidate|^Scanning|^g?make\[[0-9]+\]: (Entering|Leaving)' || true
# grep swallowed cmake's status; ask again so a failed build fails this script.
cmake --build "$dir" -j "$jobs" >/dev/null
