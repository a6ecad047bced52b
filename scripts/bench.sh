#!/usr/bin/env bash
# `make bench`: runs every benchmark; each writes its report under bench/results/.
set -euo pipefail
vigil=${1:?path to vigil}
cd "$(dirname "$0")/.."
mkdir -p bench/results
for b in bench/*.sh; do
  [ -e "$b" ] || continue
  echo "=== $b"
  VIGIL="$vigil" bash "$b"
done
