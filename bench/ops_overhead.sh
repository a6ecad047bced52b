#!/usr/bin/env bash
# The operations layer's cost on the cheapest request it watches: a cached analysis over HTTP.
#
# Two vigil binaries side by side (A = a build without the layer, B = with it), each serving its
# own temporary data directory, one image cached in both. Rounds alternate A and B (A B B A ...)
# so drift on this shared machine hits both; each round drives one server with wrk (closed
# loop, CONNS connections, SECONDS s) and reads the server's CPU time (utime + stime from
# /proc/<pid>/stat) before and after. The figure is server CPU microseconds per answered request
# (CPU time, not wall time, so time slicing by other load does not inflate it); the report gives
# the median of each side and the ratio B / A.
#
# Usage: bench/ops_overhead.sh A_VIGIL B_VIGIL [ROUNDS]
# Environment: SECONDS_PER_ROUND (5), CONNS (4), IMG (bench/images/M.jpg), STORE (false),
#              B_ARGS (extra flags for B only, e.g. "--self-heal off").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
a_bin=${1:?usage: ops_overhead.sh A_VIGIL B_VIGIL [ROUNDS]}
b_bin=${2:?usage: ops_overhead.sh A_VIGIL B_VIGIL [ROUNDS]}
rounds=${3:-8}
secs=${SECONDS_PER_ROUND:-5}
conns=${CONNS:-4}
img=${IMG:-$here/bench/images/M.jpg}
store=${STORE:-false}
command -v wrk >/dev/null || { echo "ops_overhead: wrk missing (apt-get install wrk)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/vigil-opsoh-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# start NAME BIN EXTRA...: prints "pid port key"
start() {
  local name=$1 bin=$2; shift 2
  local port admin base tenant key pid
  port=$(free_port)
  admin="va_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$tmp/$name" --admin-key "$admin" \
    --log-level warn "$@" >"$tmp/$name.log" 2>&1 &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 600); do
    curl -fs "$base/api/v1/health/live" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  tenant=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"name":"bench","kind":"agency"}' "$base/api/v1/tenants" | json_field id)
  key=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "$base/api/v1/tenants/$tenant/keys" | json_field key)
  # fill the feature cache
  curl -fsS -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: image/jpeg' \
    --data-binary @"$img" "$base/api/v1/analyze?store=$store"
  echo "$pid $port $key"
}

cat >"$tmp/post.lua" <<'EOF'
local f = assert(io.open(os.getenv("IMG"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
done = function(summary, latency, requests)
  io.write(string.format("REQUESTS %d NON2XX %d\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

read -r a_pid a_port a_key < <(start a "$a_bin")
pids+=("$a_pid")
# shellcheck disable=SC2086
read -r b_pid b_port b_key < <(start b "$b_bin" ${B_ARGS:-})
pids+=("$b_pid")

# round SIDE: prints microseconds of server CPU per request
round() {
  local pid port key t0 t1 out n bad
  if [ "$1" = a ]; then pid=$a_pid port=$a_port key=$a_key; else pid=$b_pid port=$b_port key=$b_key; fi
  t0=$(cpu_ticks "$pid")
  out=$(IMG="$img" KEY="$key" wrk -t1 -c"$conns" -d"${secs}s" -s "$tmp/post.lua" \
    "http://127.0.0.1:$port/api/v1/analyze?store=$store")
  t1=$(cpu_ticks "$pid")
  n=$(echo "$out" | awk '/^REQUESTS/ {print $2}')
  bad=$(echo "$out" | awk '/^REQUESTS/ {print $4}')
  [ "$bad" = 0 ] || { echo "ops_overhead: $bad failed requests on $1" >&2; exit 1; }
  python3 -c "print('%.2f %d' % (($t1 - $t0) * 1e6 / $hz / $n, $n))"
}

echo "ops_overhead: A=$a_bin B=$b_bin, $rounds rounds of ${secs}s, $conns connections," \
  "cached $(basename "$img"), store=$store; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
a_vals=() b_vals=()
for i in $(seq 1 "$rounds"); do
  if [ $((i % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  for side in $order; do
    read -r us n < <(round "$side")
    echo "round $i $side: $us us CPU/request ($n requests)"
    if [ "$side" = a ]; then a_vals+=("$us"); else b_vals+=("$us"); fi
  done
done
python3 - "${a_vals[*]}" "${b_vals[*]}" <<'EOF'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
ratios = sorted(y / x for x, y in zip(a, b))
print("median A %.2f us, median B %.2f us CPU/request: B/A %.4f (overhead %+.2f %%);"
      " per-round ratios %s" % (ma, mb, mb / ma, 100 * (mb / ma - 1),
                               " ".join("%.3f" % r for r in ratios)))
EOF
