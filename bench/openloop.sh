#!/usr/bin/env bash
# Open-loop load curves of issue 13 (docs/BENCHMARKS.md, "Open-loop load"): `vigil bench openloop`
# against a fresh release `vigil serve` per curve, P50/P95/P99/P99.9 and errors against offered
# load for (a) API reads, (b) cached analyses, (c) uncached analyses of new images, and (d) the
# realistic mix of 90% API reads and cached analyses, 10% new images (the target: 12,000 users
# at one request per second each, P95 <= 50 ms, no errors). Writes <curve>.json and <curve>.txt
# per curve into $OUT (default docs/bench/openloop-<UTC date>) and prints the tables.
# Usage: bench/openloop.sh [path/to/vigil]   (VIGIL also works; bench.sh passes it)
# Environment (defaults in brackets): OL_CONNECTIONS [1000], OL_DURATION seconds per rate [20],
#   OL_RATES_API [1000,2000,5000,10000,15000,20000], OL_RATES_CACHED [250,500,1000,2000,4000],
#   OL_RATES_NEW [5,10,20,40,80], OL_RATES_MIX [1200,2400,4800,7200,9600,12000],
#   OL_CURVES [api cached new mix], OL_SERVE_ARGS (extra `vigil serve` flags).
# Run it on an otherwise idle machine: the generator (one thread) shares it with the server.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${1:-${VIGIL:-$here/build/src/cli/vigil}}
[ -x "$vigil" ] || { echo "openloop: no vigil binary at $vigil (build first)" >&2; exit 2; }
out=${OUT:-$here/docs/bench/openloop-$(date -u +%Y-%m-%d)}
conns=${OL_CONNECTIONS:-1000}
dur=${OL_DURATION:-20}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d /tmp/vigil-openloop-XXXXXX)
pid=""
stop_server() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  fi
  pid=""
}
cleanup() { stop_server; rm -rf "$tmp"; }
trap cleanup EXIT

# A fresh server per curve (so the new-image curve's cache and evidence do not carry over):
# release build, warn logs, no per-address connection cap (every connection comes from
# 127.0.0.1 here), otherwise the defaults an operator gets.
start_server() {
  rm -rf "$tmp/data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  admin="va_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  # shellcheck disable=SC2086
  "$vigil" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" --admin-key "$admin" \
    --log-level warn --max-connections-per-ip 0 ${OL_SERVE_ARGS:-} >"$tmp/server-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/api/v1/health/live" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "openloop: server exited:" >&2; cat "$tmp/server-$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "openloop: server never answered" >&2; exit 1
}

run_curve() { # name mix rates
  start_server "$1"
  echo "=== $1: --mix $2, --rates $3, $conns connections, $dur s per rate"
  "$vigil" bench openloop --port "$port" --admin-key "$admin" --mix "$2" --rates "$3" \
    --connections "$conns" --duration "$dur" --label "$1" --json "$out/$1.json" | tee "$out/$1.txt"
  echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MB"}')" | tee -a "$out/$1.txt"
  stop_server
}

for curve in ${OL_CURVES:-api cached new mix}; do
  case "$curve" in
    api) run_curve api api=1 "${OL_RATES_API:-1000,2000,5000,10000,15000,20000}" ;;
    cached) run_curve cached cached=1 "${OL_RATES_CACHED:-250,500,1000,2000,4000}" ;;
    new) run_curve new new=1 "${OL_RATES_NEW:-5,10,20,40,80}" ;;
    mix) run_curve mix api=45,cached=45,new=10 "${OL_RATES_MIX:-1200,2400,4800,7200,9600,12000}" ;;
    *) echo "openloop: unknown curve '$curve' (api cached new mix)" >&2; exit 2 ;;
  esac
done
echo "openloop: results in $out"
