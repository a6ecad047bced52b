#!/usr/bin/env bash
# Instructions per cached analysis over HTTP, two vigil binaries (A without the operations layer,
# B with it), counted by callgrind: repeatable where wall-clock CPU time on this shared machine is
# not. Each binary runs under callgrind twice, serving N1 and then N2 cached analyses on one
# keep-alive connection (after one uncached request that fills the cache); the per-request figure
# is (Ir(N2) - Ir(N1)) / (N2 - N1), every thread of the server counted, so start-up and
# shutdown cancel out. Time-driven work (the ops tick, WAL checkpoints) is counted for as long as
# each run lasts, which favours neither side much; the ratio B / A is the figure.
#
# Usage: bench/ops_callgrind.sh A_VIGIL B_VIGIL [N1 N2]
# Environment: IMG (bench/images/M.jpg), STORE (false), EXTRA (flags for both servers), KEEP (a
# folder: each run's callgrind.out is copied there as A-N.out / B-N.out for callgrind_annotate).
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")/.." && pwd)
a_bin=${1:?usage: ops_callgrind.sh A_VIGIL B_VIGIL [N1 N2]}
b_bin=${2:?usage: ops_callgrind.sh A_VIGIL B_VIGIL [N1 N2]}
n1=${3:-50}
n2=${4:-550}
img=${IMG:-$here/bench/images/M.jpg}
store=${STORE:-false}
command -v valgrind >/dev/null || { echo "ops_callgrind: valgrind missing" >&2; exit 2; }
tmp=$(mktemp -d /tmp/vigil-opscg-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# run BIN N -> total Ir of the server process
run() {
  local bin=$1 n=$2 dir port admin pid
  dir=$(mktemp -d "$tmp/run-XXXX")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  admin="va_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" -q "$bin" serve \
    --listen "127.0.0.1:$port" --data-dir "$dir/data" --admin-key "$admin" --log-level warn \
    --http-threads 1 --faces false ${EXTRA:-} >"$dir/log" 2>&1 &
  pid=$!
  python3 - "$port" "$admin" "$img" "$store" "$n" <<'EOF'
import http.client, json, sys, time
port, admin, img, store, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
body = open(img, "rb").read()
deadline = time.time() + 300
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
        c.request("GET", "/api/v1/health/live")
        r = c.getresponse()
        r.read()
        if r.status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("server did not start")
    time.sleep(0.5)
def call(method, path, data=None, headers=None):
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    out = r.read()
    if r.status >= 300:
        sys.exit("%s %s: %d %s" % (method, path, r.status, out[:200]))
    return json.loads(out) if out else None
adm = {"Authorization": "Bearer " + admin, "Content-Type": "application/json"}
t = call("POST", "/api/v1/tenants", json.dumps({"name": "cg", "kind": "agency"}), adm)
k = call("POST", "/api/v1/tenants/%s/keys" % t["id"], json.dumps({"name": "cg"}), adm)
h = {"Authorization": "Bearer " + k["key"], "Content-Type": "image/jpeg"}
for _ in range(n + 1):  # the first fills the cache
    call("POST", "/api/v1/analyze?store=" + store, body, h)
EOF
  [ $? = 0 ] || { kill -TERM "$pid"; echo "ops_callgrind: client failed" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  [ -z "${KEEP:-}" ] || cp "$dir/cg.out" "$KEEP/$3-$n.out"
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out"
}

echo "ops_callgrind: A=$a_bin B=$b_bin, cached $(basename "$img"), store=$store, N=$n1/$n2"
[ -z "${KEEP:-}" ] || mkdir -p "$KEEP"
a1=$(run "$a_bin" "$n1" A); a2=$(run "$a_bin" "$n2" A)
b1=$(run "$b_bin" "$n1" B); b2=$(run "$b_bin" "$n2" B)
python3 - "$a1" "$a2" "$b1" "$b2" "$n1" "$n2" <<'EOF'
import sys
a1, a2, b1, b2, n1, n2 = (int(x) for x in sys.argv[1:])
a = (a2 - a1) / (n2 - n1)
b = (b2 - b1) / (n2 - n1)
print("A: %d / %d Ir total -> %.0f Ir/request" % (a1, a2, a))
print("B: %d / %d Ir total -> %.0f Ir/request" % (b1, b2, b))
print("B - A = %+.0f Ir/request (%+.2f %%)" % (b - a, 100 * (b / a - 1)))
EOF
