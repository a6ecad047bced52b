#!/usr/bin/env bash
# Installs the Debian 12 packages Vigil needs (only the missing ones) and fetches the face models.
# Usage: scripts/setup.sh [run|cluster|test|bench]   (the package set grows with the purpose)
# Idempotent and quiet when everything is already there, so every make target can call it.
set -euo pipefail
purpose=${1:-run}
here=$(cd "$(dirname "$0")/.." && pwd)

# Every package a build or test step calls, named here: a fresh Debian 12 (debootstrap minbase plus
# make) has none of them, and .ci/run proves that list in such a root. python3 and curl serve the
# README walkthrough and the test scripts; git and clang-format the format check.
build_pkgs="build-essential cmake clang pkg-config libturbojpeg0-dev libspng-dev libwebp-dev
  libdnnl-dev libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libssl-dev
  libcurl4-openssl-dev libcmocka-dev libclang-rt-14-dev libavformat-dev libavcodec-dev
  libswscale-dev libavutil-dev nodejs npm curl ca-certificates python3"
# prometheus: its promtool checks /metrics and the rules in deploy/prometheus; chromium (with a
# font for its screenshots) opens the dashboard in tests/dashboard_chromium.py; ffmpeg makes the
# edited videos of tests/video_robustness.py (and bench/video.sh's 1080p input); postgresql
# serves the store suite's PostgreSQL run (scripts/pg-tmp.sh: a throwaway server per test run);
# nginx-light is the load balancer of `make cluster` and tests/it_cluster.py.
test_pkgs="redis-server postgresql git clang-format prometheus chromium fonts-dejavu-core ffmpeg nginx-light"
bench_pkgs="redis-server postgresql wrk hyperfine libjpeg-turbo-progs imagemagick python3-locust ffmpeg"

want="$build_pkgs"
case "$purpose" in
  run) ;;
  cluster) want="$want redis-server postgresql nginx-light" ;;
  test) want="$want $test_pkgs" ;;
  bench) want="$want $test_pkgs $bench_pkgs" ;;
  *) echo "setup.sh: unknown purpose '$purpose' (run|cluster|test|bench)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  # node/npm may come from outside Debian (nodesource, nvm): accept the commands if present.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp /tmp/vigil-setup.XXXXXX)
  # apt's progress goes to a log, shown only when a step fails.
  # shellcheck disable=SC2086
  if ! { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends $missing; } \
      >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "setup: apt-get failed (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
  echo "setup: installed$missing"
fi

"$here/scripts/fetch-models.sh"
