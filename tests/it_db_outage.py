#!/usr/bin/env python3
"""PostgreSQL down under a real `vigil serve`: fail fast, say so, alert, come back.

The server runs on a fresh database of the throwaway PostgreSQL (VIGIL_TEST_PG_URL, from
scripts/pg-tmp.sh) with a 4 s reconnect timeout, ops time x60 and a webhook receiver. The outage
is of this test's database only (ALLOW_CONNECTIONS false and its sessions terminated), so tests
running beside it keep their server. Checked:
  - once the store has given up reconnecting, requests that need the database answer 503
    "database unavailable" without waiting out the reconnect (each under half of the 4 s: a
    generous bound, the point being that none waits the whole timeout), and
    GET /api/v1/health answers 503 with the database component failing and saying so;
  - vigil_store_unavailable is 1 and the index_sync_lag_high alert reaches the webhook (the node
    cannot read the change log for longer than its index_max_lag);
  - with the database back, the node answers again by itself, the tenant written (acknowledged)
    before the outage is there, and the health is 200.

    it_db_outage.py --vigil build/src/cli/vigil
(exit 0 pass, 1 fail, 77 skip: no VIGIL_TEST_PG_URL)
"""
import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

RECONNECT_S = 4  # over a server restart (about 1 s) that a parallel test may cause
DEADLINE_S = 60  # a bound on a hung test, not a timing assertion


class Receiver(http.server.BaseHTTPRequestHandler):
    alerts = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Receiver.lock:
            Receiver.alerts.extend(json.loads(body).get("alerts", []))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def call(url, key=None, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def psql(base, sql):
    """Retried: test_store_pg restarts the shared server while other tests run beside it."""
    t0 = time.time()
    while True:
        r = subprocess.run(["psql", base, "-qc", sql], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            return
        if time.time() - t0 > DEADLINE_S:
            raise SystemExit("it_db_outage: psql %s: %s" % (sql, r.stderr.strip()))
        time.sleep(0.2)


def alert(name, status):
    with Receiver.lock:
        return [a for a in Receiver.alerts
                if a["labels"].get("alertname") == name and a["status"] == status]


def wait(cond):
    t0 = time.time()
    while time.time() - t0 < DEADLINE_S:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    a = ap.parse_args()
    base = os.environ.get("VIGIL_TEST_PG_URL", "")
    if not base or not shutil.which("psql"):
        print("it_db_outage: SKIP: no VIGIL_TEST_PG_URL (scripts/pg-tmp.sh) or no psql")
        return 77
    db = "vigil_outage_%d" % os.getpid()
    psql(base, "CREATE DATABASE " + db)
    url = base.rsplit("/", 1)[0] + "/" + db
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % srv.server_address[1]
    data = tempfile.mkdtemp(prefix="vigil-db-outage-")
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print("it_db_outage: FAIL: " + what)

    p = None
    try:
        p, u, admin = vgt_server.start(a.vigil, data, [
            "--database", url, "--faces", "false", "--db-reconnect-timeout", "%ds" % RECONNECT_S,
            "--db-retry-max", "200ms", "--index-sync-interval", "50ms", "--index-max-lag",
            "500ms", "--ops-time-scale", "60", "--alert-webhook", hook, "--alert-group-wait",
            "0s", "--alert-anomaly", "false"], who="it_db_outage")
        # retried on 503 only: a restart of the shared server by a parallel test
        t0 = time.time()
        while True:
            st, b = call(u + "/api/v1/tenants", admin, "POST",
                         json.dumps({"name": "acked", "kind": "agency"}).encode())
            if st != 503 or time.time() - t0 > DEADLINE_S:
                break
            time.sleep(0.2)
        check(st == 201, "tenant before the outage: %d %s" % (st, b))
        tenant = json.loads(b)["id"]

        psql(base, "ALTER DATABASE %s ALLOW_CONNECTIONS false" % db)
        psql(base, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
             % db)

        # the first calls may wait out the reconnect; then the store knows the database is down
        def health_down():
            st, b = call(u + "/api/v1/health")
            comp = json.loads(b).get("components", {}).get("database", {})
            return st == 503 and "unavailable" in comp.get("message", "") and comp
        comp = wait(health_down)
        check(comp and comp.get("status") == "failing",
              "health never reported the database unavailable: %s" % comp)
        slowest = 0
        for _ in range(5):
            t0 = time.monotonic()
            st, b = call(u + "/api/v1/tenants/" + tenant, admin)
            took = time.monotonic() - t0
            slowest = max(slowest, took)
            check(st == 503 and b"database unavailable" in b,
                  "a read while the database is down: %d %s" % (st, b))
            t0 = time.monotonic()
            st, b = call(u + "/api/v1/tenants", admin, "POST",
                         json.dumps({"name": "lost", "kind": "agency"}).encode())
            took = time.monotonic() - t0
            slowest = max(slowest, took)
            check(st == 503 and b"database unavailable" in b,
                  "a write while the database is down: %d %s" % (st, b))
        print("it_db_outage: slowest of 10 requests while down: %.3f s (reconnect timeout %d s)"
              % (slowest, RECONNECT_S))
        check(slowest < RECONNECT_S / 2, "a request waited %.3f s while the database was down"
              % slowest)
        _, m = call(u + "/metrics")
        check(b"\nvigil_store_unavailable 1" in m, "vigil_store_unavailable is not 1")
        check(wait(lambda: alert("index_sync_lag_high", "firing")),
              "no index_sync_lag_high firing at the webhook")

        psql(base, "ALTER DATABASE %s ALLOW_CONNECTIONS true" % db)
        back = wait(lambda: call(u + "/api/v1/tenants/" + tenant, admin)[0] == 200)
        check(back, "the node did not come back with the database")
        st, b = call(u + "/api/v1/health")
        check(wait(lambda: call(u + "/api/v1/health")[0] == 200),
              "health after the outage: %d %s" % (st, b))
        check(wait(lambda: alert("index_sync_lag_high", "resolved")),
              "index_sync_lag_high never resolved")
    finally:
        if p:
            vgt_server.stop(p)
        srv.shutdown()
        psql(base, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        shutil.rmtree(data, ignore_errors=True)
    print("it_db_outage: %s" % ("FAIL" if failures else "PASS"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
