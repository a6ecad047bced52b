# Sourced by test scripts: starts a throwaway PostgreSQL server on a free loopback port in a temp
# dir (Debian's `postgresql` package: initdb/pg_ctl from /usr/lib/postgresql/<v>/bin) and exports
# VIGIL_TEST_PG_URL (postgresql://vigil@127.0.0.1:PORT/postgres) and VIGIL_TEST_PG_PORT. Stopped on
# EXIT. Tests that restart the server mid-test use VIGIL_TEST_PG_CTL (a script: stop|start|restart).
# postgres refuses to run as root: under root the cluster belongs to `nobody` (runuser), in a temp
# dir it owns. Trust authentication, TCP on 127.0.0.1 only, no Unix socket; fsync off (a clean
# `pg_ctl restart -m fast` still writes everything; the tests are not about power loss).
# PG_TMP_FSYNC=on keeps fsync on (bench/store.sh, whose FULL numbers must pay for it).
pg_tmp_start() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ] && command -v pg_ctl >/dev/null 2>&1; then bin=$(dirname "$(command -v pg_ctl)"); fi
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg-tmp: PostgreSQL (initdb, pg_ctl) not installed; PostgreSQL-backend tests will be skipped" >&2
    return 0
  fi
  local port dir as=""
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  dir=$(mktemp -d /tmp/vigil-pg.XXXXXX)
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown nobody "$dir"
    as="runuser -u nobody --"
  fi
  if ! $as "$bin/initdb" -D "$dir/data" -U vigil --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    echo "pg-tmp: initdb failed (see $dir/initdb.log); PostgreSQL-backend tests will be skipped" >&2
    cat "$dir/initdb.log" >&2
    return 0
  fi
  cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = ${PG_TMP_FSYNC:-off}
full_page_writes = ${PG_TMP_FSYNC:-off}
max_connections = 200
shared_buffers = 32MB
logging_collector = off
CONF
  cat > "$dir/ctl" <<CTL
#!/usr/bin/env bash
# stop|start|restart the test PostgreSQL on port $port
case "\$1" in
  stop) $as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true ;;
  start) $as "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 30 start >/dev/null ;;
  restart) $as "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -m fast -w -t 30 restart >/dev/null ;;
  *) echo "usage: \$0 stop|start|restart" >&2; exit 2 ;;
esac
CTL
  chmod +x "$dir/ctl"
  if ! "$dir/ctl" start; then
    echo "pg-tmp: postgres did not start (see $dir/data/server.log); PostgreSQL-backend tests will be skipped" >&2
    return 0
  fi
  export VIGIL_TEST_PG_URL="postgresql://vigil@127.0.0.1:$port/postgres"
  export VIGIL_TEST_PG_PORT=$port
  export VIGIL_TEST_PG_CTL="$dir/ctl"
  PG_TMP_DIR=$dir
  # Chain onto an EXIT trap already set (redis-tmp.sh sets one).
  local prev
  prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
  trap "pg_tmp_stop; ${prev:-:}" EXIT
  echo "pg-tmp: postgres on 127.0.0.1:$port"
}
pg_tmp_stop() {
  [ -n "${PG_TMP_DIR:-}" ] || return 0
  "$PG_TMP_DIR/ctl" stop || true
  rm -rf "$PG_TMP_DIR"
  PG_TMP_DIR=""
}
