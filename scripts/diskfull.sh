#!/usr/bin/env bash
# Disk full and read-only data directory under a write load (docs/RELIABILITY.md, `make diskfull`).
#   scripts/diskfull.sh path/to/vigil        (root: it mounts a tmpfs)
# The data directory lives on an 8 MiB tmpfs. Phase 1 writes profiles (6 KB of notes each) until
# the disk is full, then keeps writing for a while; phase 2 gives space back (remount at 256 MiB)
# and waits for a write to succeed; phase 3 remounts the filesystem read-only during writes, then
# read-write again. It records the statuses and error bodies, what /api/v1/health says in each
# phase, whether the server stayed up, how long recovery took, and runs SQLite's integrity_check on
# the database after a clean stop. Every loop is bounded in count and time; traffic is loopback only.
# Exit 0 when: every answer was 2xx or a JSON error other than 500, the server never exited, health
# named the disk while it was full, writes recovered within RECOVER_S (30 s) both times, and the
# database is intact.
set -euo pipefail
vigil=$(realpath "${1:?path to vigil}")
[ "$(id -u)" = 0 ] || { echo "diskfull: needs root (mount -t tmpfs)" >&2; exit 2; }
# integrity_check through rel_kill9 (built beside vigil), so the sqlite3 shell is not needed
checker=$(dirname "$vigil")/../../tests/reliability/rel_kill9
[ -x "$checker" ] || { echo "diskfull: $checker not built" >&2; exit 2; }
RECOVER_S=${RECOVER_S:-30}
FILL_MAX=${FILL_MAX:-3000}      # most writes while filling
OVERFLOW=${OVERFLOW:-200}       # writes once full
work=$(mktemp -d /tmp/vigil-diskfull-XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
mount -t tmpfs -o size=8m tmpfs "$mnt"
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
admin=va_reliability_admin_key_0123456789
"$vigil" serve --listen 127.0.0.1:0 --data-dir "$mnt/data" --admin-key "$admin" \
  --log-level warn >"$work/server.log" 2>&1 &
pid=$!
port=
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/server.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/server.log"; echo "diskfull: server did not start" >&2; exit 1; }
base=http://127.0.0.1:$port
fail=0
note() { printf 'diskfull: %s\n' "$*"; }
# curl_json METHOD PATH KEY [BODY] -> "status body" on stdout
call() {
  local m=$1 p=$2 k=$3 b=${4:-}
  if [ -n "$b" ]; then
    curl -s -m 30 -o "$work/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $k" \
      -H 'Content-Type: application/json' --data-binary "$b" "$base$p" || echo -n 000
  else
    curl -s -m 30 -o "$work/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $k" \
      "$base$p" || echo -n 000
  fi
}
alive() { kill -0 "$pid" 2>/dev/null; }
health() {
  local s
  s=$(curl -s -m 10 -o "$work/health" -w '%{http_code}' "$base/api/v1/health" || echo 000)
  note "health $1: $s $(head -c 600 "$work/health")"
}
st=$(call POST /api/v1/tenants "$admin" '{"name":"diskfull","kind":"agency"}')
tid=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$work/body")
st=$(call POST "/api/v1/tenants/$tid/keys" "$admin" '{"name":"d"}')
key=$(sed -n 's/.*"key":"\([^"]*\)".*/\1/p' "$work/body")
[ -n "$key" ] || { echo "diskfull: no tenant key ($st)" >&2; exit 1; }
notes=$(head -c 6000 /dev/zero | tr '\0' 'x')
health "at start (8 MiB tmpfs, $(df -k --output=avail "$mnt" | tail -1) KiB free)"

declare -A seen
tally() { # status, phase: counts statuses, keeps one body per status, checks the error shape
  local s=$1 ph=$2
  seen["$ph $s"]=$(( ${seen["$ph $s"]:-0} + 1 ))
  if [ "$s" != 201 ] && [ "$s" != 200 ]; then
    [ -f "$work/first-$ph-$s" ] || cp "$work/body" "$work/first-$ph-$s"
    if [ "$s" = 500 ] || [ "$s" = 000 ] || ! grep -q '"error":{"code"' "$work/body"; then
      bad_answers=$((bad_answers + 1))
    fi
  fi
}
bad_answers=0
write() { call POST /api/v1/profiles "$key" "{\"name\":\"df-$1\",\"notes\":\"$notes\"}"; }

# phase 1: fill, then keep writing on a full disk
full_at=
for i in $(seq "$FILL_MAX"); do
  s=$(write "$i")
  tally "$s" fill
  if [ "$s" != 201 ]; then full_at=$i; break; fi
done
note "fill: first non-201 after $((${full_at:-$FILL_MAX})) writes; $(df -k --output=avail "$mnt" | tail -1) KiB free"
for i in $(seq "$OVERFLOW"); do tally "$(write "o$i")" full; done
health "while full"
grep -q '"disk"' "$work/health" && grep -q 'failing' "$work/health" || {
  note "health does not say the disk is failing"; fail=1; }
alive || { note "server exited while the disk was full"; fail=1; }

# phase 2: space comes back; writes must succeed by themselves
mount -o remount,size=256m "$mnt"
t0=$(date +%s.%N); rec=
while awk "BEGIN{exit !($(date +%s.%N) - $t0 < $RECOVER_S)}"; do
  s=$(write "r$(date +%s%N)"); tally "$s" refill
  if [ "$s" = 201 ]; then rec=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}"); break; fi
  sleep 0.5
done
note "space back (256 MiB): first 201 after ${rec:-NEVER (>${RECOVER_S}s)} s"
[ -n "$rec" ] || fail=1
sleep 2 # past the health answer's cache
health "after space came back"
grep -q '"disk":{"status":"failing"' "$work/health" && { note "health still says the disk is failing"; fail=1; }

# phase 3: a read-only data dir. Linux refuses to remount a filesystem read-only while a process
# holds files open for writing (EBUSY), so the server is stopped, the filesystem remounted
# read-only, and the server started on it; then writable again and started once more.
for i in $(seq 20); do tally "$(write "b$i")" before-ro; done
kill -TERM "$pid"; wait "$pid" || true
pid=
mount -o remount,ro "$mnt"
start_server() { # $1: phase name; sets pid and port, or leaves pid empty when it exited
  log=$work/server-$1.log
  "$vigil" serve --listen 127.0.0.1:0 --data-dir "$mnt/data" --admin-key "$admin" \
    --log-level warn >"$log" 2>&1 &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    alive || break
    sleep 0.1
  done
  if [ -n "$port" ]; then
    base=http://127.0.0.1:$port
    note "start on $1 data dir: listening"
  else
    st=0; wait "$pid" || st=$?
    note "start on $1 data dir: exit status $st: $(head -c 400 "$log")"
    pid=
  fi
}
start_server read-only
if [ -n "$pid" ]; then
  for i in $(seq 50); do tally "$(write "ro$i")" readonly; done
  s=$(call GET /api/v1/profiles?limit=1 "$key"); note "read on read-only data dir: $s"
  health "read-only"
  kill -TERM "$pid"; wait "$pid" || true
  pid=
fi
mount -o remount,rw "$mnt"
start_server writable-again
[ -n "$pid" ] || fail=1
s=$(write "w-again"); tally "$s" rw-again
note "write after the data dir is writable again: $s"
sleep 2
health "at the end"

while read -r k; do [ -n "$k" ] && note "answers: $k x ${seen[$k]}"; done \
  < <(printf '%s\n' "${!seen[@]}" | sort)
for f in "$work"/first-*; do [ -f "$f" ] && note "first body $(basename "$f"): $(head -c 300 "$f")"; done
[ "$bad_answers" = 0 ] || { note "$bad_answers answers were 500, no answer, or not the JSON error shape"; fail=1; }
if [ -n "$pid" ] && alive; then
  kill -TERM "$pid"; wait "$pid" || { note "server exit status $? after SIGTERM"; fail=1; }
else
  fail=1
fi
pid=
ic=$("$checker" --check-db "$mnt/data" 2>&1 | head -5 || true)
note "integrity_check: $ic"
[ "$ic" = ok ] || fail=1
for f in "$work"/server*.log; do
  note "$(basename "$f") (warnings and errors, first 20 lines):"
  head -20 "$f" | sed 's/^/  /'
done
if [ "$fail" = 0 ]; then note PASS; else note FAIL; fi
exit "$fail"
