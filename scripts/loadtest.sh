#!/usr/bin/env bash
# `make loadtest`: a short locust run (load/locustfile.py) against a local `vigil serve` with a
# temporary data directory. Bootstraps an admin key and a tenant with its key, runs locust
# headless (default 50 users, 20 s ramp, 60 s in all), prints the SLA summary and exits non-zero
# when the SLA fails. Usage: scripts/loadtest.sh [path/to/vigil]
# Environment: VIGIL_LOAD_USERS, VIGIL_LOAD_RAMP_S, VIGIL_LOAD_DURATION_S (see load/README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${1:-$here/build/src/cli/vigil}
locust_bin=${LOCUST:-/usr/bin/locust}
[ -x "$vigil" ] || { echo "loadtest: no vigil binary at $vigil (build first)" >&2; exit 2; }
[ -x "$locust_bin" ] || { echo "loadtest: $locust_bin missing (apt-get install python3-locust)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/vigil-loadtest-XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin="va_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$vigil" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" --admin-key "$admin" \
  --log-level warn >"$tmp/server.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -fs "$base/api/v1/health/live" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "loadtest: server exited:" >&2; cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.1
done
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
tenant=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name":"loadtest","kind":"agency"}' "$base/api/v1/tenants" | json_field id)
key=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name":"locust"}' "$base/api/v1/tenants/$tenant/keys" | json_field key)

echo "loadtest: vigil on $base (data in $tmp), tenant $tenant;" \
  "${VIGIL_LOAD_USERS:-50} users, ramp ${VIGIL_LOAD_RAMP_S:-20} s, ${VIGIL_LOAD_DURATION_S:-60} s"
rc=0
VIGIL_TENANT_KEY="$key" VIGIL_ADMIN_KEY="$admin" VIGIL_LOAD_IMAGES="$here/bench/images" \
  "$locust_bin" -f "$here/load/locustfile.py" --headless --host "$base" --only-summary \
  --loglevel WARNING --csv "$tmp/locust" || rc=$?
echo "loadtest: server peak RSS $(grep VmHWM /proc/$pid/status | awk '{print $2/1024 " MB"}')"
exit $rc
