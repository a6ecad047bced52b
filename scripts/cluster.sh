#!/usr/bin/env bash
# `make cluster`: a database, Redis, N vigil nodes and nginx in front of them, all on loopback
# ports, as the current user (docs/SCALING.md). Prints the URL and the admin key, then waits;
# Ctrl-C (or SIGTERM) stops every process it started and removes its temporary directory.
#
#   scripts/cluster.sh [--vigil PATH] [--nodes N] [--port P] [--database DB | --sqlite]
#                      [--redis URL] [--state FILE] [--keep] [-- extra vigil serve arguments]
#
#   --database  the database every node opens (VIGIL_CLUSTER_DATABASE): a postgresql:// URL (the
#               server must be running; it is not started here) or a SQLite file path
#   (default)   a throwaway PostgreSQL server (scripts/pg-tmp.sh: temporary directory, loopback
#               port, fsync off; stopped with the rest), its database `vigil`; a shared SQLite
#               file instead when PostgreSQL is not installed (scripts/setup.sh cluster)
#   --sqlite    a SQLite file the nodes share: vigil.db in the temporary directory
#   --redis     an existing Redis for the shared L3 feature cache (VIGIL_CLUSTER_REDIS); default:
#               a throwaway redis-server (scripts/redis-tmp.sh), none if it is not installed
#   --port      nginx's port (default: a free one)
#   --state     write URL=, ADMIN=, NODE_URLS=, NODE_PIDS=, NGINX_PID=, DIR= lines here once all
#               are up (tests read it)
#   --keep      keep the temporary directory (node logs, nginx logs) after stopping
# VIGIL_ADMIN_KEY: the admin key to configure on every node (default: the first node generates
# one at first start and it is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
vigil=build/src/cli/vigil
nodes=3
port=0
database=${VIGIL_CLUSTER_DATABASE:-}
redis=${VIGIL_CLUSTER_REDIS:-}
state=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --vigil) vigil=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    --sqlite) database=sqlite; shift ;;
    --redis) redis=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) echo "cluster: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
extra=("$@")
command -v nginx >/dev/null || { echo "cluster: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
[ -x "$vigil" ] || { echo "cluster: $vigil not built (make build)" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

dir=$(mktemp -d /tmp/vigil-cluster.XXXXXX)
pids=()
nginx_pid=""
stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return 0
  stopping=1
  trap - INT TERM EXIT
  echo "cluster: stopping" >&2
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "$nginx_pid" ] && wait "$nginx_pid" 2>/dev/null || true
  if declare -F redis_tmp_stop >/dev/null; then redis_tmp_stop; fi
  if declare -F pg_tmp_stop >/dev/null; then pg_tmp_stop >/dev/null 2>&1; fi
  if [ "$keep" = 1 ]; then echo "cluster: logs kept in $dir" >&2; else rm -rf "$dir"; fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

# database: by default a throwaway PostgreSQL (each node LISTENs for the change log's
# notifications: a change reaches the other nodes' indexes without waiting for their poll)
if [ -z "$database" ]; then
  # shellcheck source=scripts/pg-tmp.sh
  source scripts/pg-tmp.sh
  unset VIGIL_TEST_PG_URL # ours, not one the caller's environment names
  pg_tmp_start >&2
  trap 'stop_all' EXIT # pg_tmp_start set its own
  if [ -n "${VIGIL_TEST_PG_URL:-}" ]; then
    psql "$VIGIL_TEST_PG_URL" -qc "CREATE DATABASE vigil" >&2
    database="${VIGIL_TEST_PG_URL%/*}/vigil"
  else
    echo "cluster: no PostgreSQL; the nodes share a SQLite file" >&2
  fi
fi
# or a SQLite file the nodes share (WAL: readers never block, one writer at a time across the
# processes, busy waits absorb the contention)
if [ -z "$database" ] || [ "$database" = sqlite ]; then database="$dir/vigil.db"; fi

# Redis: the shared L3 feature cache
if [ -z "$redis" ]; then
  # shellcheck source=scripts/redis-tmp.sh
  source scripts/redis-tmp.sh
  redis_tmp_start >&2
  trap 'stop_all' EXIT # redis_tmp_start set its own
  redis=${VIGIL_TEST_REDIS_URL:-}
fi
redis_args=()
[ -n "$redis" ] && redis_args=(--redis-url "$redis")

# nodes: the first alone (it migrates a new database and generates the admin key), then the rest
admin_args=()
[ -n "${VIGIL_ADMIN_KEY:-}" ] && admin_args=(--admin-key "$VIGIL_ADMIN_KEY")
admin=${VIGIL_ADMIN_KEY:-}
node_urls=()
node_ports=()
start_node() { # index
  local i=$1 p log
  p=$(free_port)
  log="$dir/node$i.log"
  mkdir -p "$dir/node$i"
  # every connection comes from nginx's address: no per-address limit
  "$vigil" serve --listen "127.0.0.1:$p" --data-dir "$dir/node$i" --database "$database" \
    --max-connections-per-ip 0 \
    "${redis_args[@]}" "${admin_args[@]}" "${extra[@]}" >"$log.out" 2>"$log" &
  pids+=($!)
  for _ in $(seq 1200); do
    grep -q "listening on" "$log.out" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "cluster: node $i exited; its log:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.05
  done
  grep -q "listening on" "$log.out" || { echo "cluster: node $i did not start; see $log" >&2; exit 1; }
  node_ports+=("$p")
  node_urls+=("http://127.0.0.1:$p")
  if [ -z "$admin" ]; then
    admin=$(sed -n 's/.*generated admin key (shown once; keep it): \(\S*\).*/\1/p' "$log.out")
  fi
}
for i in $(seq 1 "$nodes"); do start_node "$i"; done

# nginx: deploy/nginx/vigil.conf as written, with its addresses replaced by ours
[ "$port" = 0 ] && port=$(free_port)
mkdir -p "$dir/nginx/tmp"
{
  awk '/^ *server 127\.0\.0\.1:808[1-9] /{ if (!done) { print "@NODES@"; done=1 } next } { print }' \
    deploy/nginx/vigil.conf | sed "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$port;/"
} > "$dir/nginx/vigil.conf.tmp"
servers=""
for p in "${node_ports[@]}"; do servers+="    server 127.0.0.1:$p max_fails=2 fail_timeout=5s;\n"; done
awk -v s="$servers" '{ if ($0 == "@NODES@") printf "%s", s; else print }' \
  "$dir/nginx/vigil.conf.tmp" | sed 's/\\n/\n/g' > "$dir/nginx/vigil.conf"
cat > "$dir/nginx/nginx.conf" <<CONF
# generated by scripts/cluster.sh; runs as $(id -un), everything under $dir/nginx
worker_processes 1;
pid $dir/nginx/nginx.pid;
daemon off;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
    log_format upstream '\$remote_addr "\$request" \$status \$upstream_addr \$upstream_status \$request_time';
    access_log $dir/nginx/access.log upstream;
    client_body_temp_path $dir/nginx/tmp/body;
    proxy_temp_path $dir/nginx/tmp/proxy;
    fastcgi_temp_path $dir/nginx/tmp/fastcgi;
    uwsgi_temp_path $dir/nginx/tmp/uwsgi;
    scgi_temp_path $dir/nginx/tmp/scgi;
    include $dir/nginx/vigil.conf;
}
CONF
nginx -t -q -p "$dir/nginx" -e "$dir/nginx/error.log" -c "$dir/nginx/nginx.conf"
nginx -p "$dir/nginx" -e "$dir/nginx/error.log" -c "$dir/nginx/nginx.conf" &
nginx_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -s -o /dev/null "$url/api/v1/health/live" && break
  kill -0 "$nginx_pid" 2>/dev/null || { echo "cluster: nginx exited; see $dir/nginx/error.log" >&2; exit 1; }
  sleep 0.05
done

if [ -n "$state" ]; then
  {
    echo "URL=$url"
    echo "ADMIN=$admin"
    echo "NODE_URLS=\"${node_urls[*]}\""
    echo "NODE_PIDS=\"${pids[*]}\""
    echo "NGINX_PID=$nginx_pid"
    echo "DATABASE=$database"
    echo "DIR=$dir"
  } > "$state.tmp"
  mv "$state.tmp" "$state"
fi
echo "cluster: $nodes vigil nodes (${node_urls[*]}) behind nginx"
echo "cluster: database $database; Redis ${redis:-none}"
echo "cluster: admin key: ${admin:-(configured earlier: not shown again)}"
echo "cluster: URL $url   (Ctrl-C stops everything)"
wait "$nginx_pid" || true
