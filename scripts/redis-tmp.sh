# Sourced by test scripts: starts a throwaway redis-server on a free loopback port and exports
# VIGIL_TEST_REDIS_URL (redis://127.0.0.1:PORT) and VIGIL_TEST_REDIS_PORT. Stopped on EXIT.
# Tests that stop and restart Redis mid-test use VIGIL_TEST_REDIS_CTL (a script: stop|start).
redis_tmp_start() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-tmp: redis-server not installed; Redis-tier tests will be skipped" >&2
    return 0
  fi
  local port dir
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  dir=$(mktemp -d /tmp/vigil-redis.XXXXXX)
  cat > "$dir/ctl" <<CTL
#!/usr/bin/env bash
# stop|start the test Redis on port $port
case "\$1" in
  stop) redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
        for i in \$(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1 ;;
  start) redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
           --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
         for i in \$(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1 ;;
  *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
CTL
  chmod +x "$dir/ctl"
  "$dir/ctl" start
  export VIGIL_TEST_REDIS_URL="redis://127.0.0.1:$port"
  export VIGIL_TEST_REDIS_PORT=$port
  export VIGIL_TEST_REDIS_CTL="$dir/ctl"
  REDIS_TMP_DIR=$dir
  trap 'redis_tmp_stop' EXIT
  echo "redis-tmp: redis-server on 127.0.0.1:$port"
}
redis_tmp_stop() {
  [ -n "${REDIS_TMP_DIR:-}" ] || return 0
  "$REDIS_TMP_DIR/ctl" stop || true
  rm -rf "$REDIS_TMP_DIR"
  REDIS_TMP_DIR=""
}
