#!/usr/bin/env python3
"""Cross-node freshness (docs/SCALING.md, docs/BENCHMARKS.md): how long after a reference add
answered by node A an analysis on node B matches it, and how long after a delete answered by
node A it stops matching.

Starts scripts/cluster.sh (two nodes are enough; --nodes 3 by default) with
--index-sync-before-analysis off, so what is measured is the background sync (poll interval
index_sync_interval), not the read-your-writes catch-up; then, N times: a new profile on node A,
bridge.jpg added to it on node A (t0 = its 201), analyses of bridge-small.jpg on node B
(store=false, profile_id=that profile) every POLL_MS until it matches (t1); delete on node A
(t2 = its 2xx), analyses on node B until it no longer matches (t3). Prints P50/P95/P99/max of
t1-t0 and t3-t2 in ms. A second pass with the catch-up on (the default) counts how often the
first analysis on B after the add already matched.

--database: sqlite (default: one SQLite file, the nodes poll), pg (cluster.sh's throwaway
PostgreSQL: the nodes also LISTEN, so a change wakes them before their next poll) or a
postgresql:// URL (an existing, empty database).

Usage: bench/cluster_freshness.py [--vigil PATH] [--n 100] [--interval 100ms] [--nodes 3]
                                  [--database sqlite|pg|URL]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))
import vgt_server  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL_MS = 2


call = vgt_server.call


def jcall(url, key, method="GET", obj=None):
    st, b = call(url, key, method, json.dumps(obj).encode() if obj is not None else None,
                 "application/json" if obj is not None else None)
    return st, json.loads(b) if b else None


def start(vigil, nodes, database, extra):
    tmp = tempfile.mkdtemp(prefix="vigil-fresh.")
    state = os.path.join(tmp, "state")
    db_args = {"sqlite": ["--sqlite"], "pg": []}.get(database, ["--database", database])
    p = subprocess.Popen([os.path.join(REPO, "scripts", "cluster.sh"), "--vigil", vigil,
                          "--nodes", str(nodes), "--state", state, *db_args, "--", *extra],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    while not os.path.exists(state):
        if p.poll() is not None:
            raise SystemExit("cluster.sh exited with %d" % p.returncode)
        time.sleep(0.2)
    st = {}
    for line in open(state):
        k, _, v = line.strip().partition("=")
        st[k] = v.strip('"')
    return p, st, tmp


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


def matches(b, key, pid, ref, copy):
    code, body = call(b + "/api/v1/analyze?store=false&profile_id=" + pid, key, "POST", copy,
                      "image/jpeg")
    if code != 200:
        raise SystemExit("analysis on node B answered %d: %s" % (code, body[:200]))
    return any(m.get("reference_id") == ref for m in json.loads(body).get("matches", []))


def run(vigil, n, nodes, catch_up, interval, database):
    extra = ["--index-sync-interval", interval,
             "--index-sync-before-analysis", "true" if catch_up else "false"]
    p, st, tmp = start(vigil, nodes, database, extra)
    try:
        urls = st["NODE_URLS"].split()
        a, b = urls[0], urls[1]
        work = open(os.path.join(REPO, "samples", "bridge.jpg"), "rb").read()
        copy = open(os.path.join(REPO, "samples", "bridge-small.jpg"), "rb").read()
        _, t = jcall(a + "/api/v1/tenants", st["ADMIN"], "POST", {"name": "F", "kind": "agency"})
        _, k = jcall(a + "/api/v1/tenants/%s/keys" % t["id"], st["ADMIN"], "POST", {"name": "f"})
        key = k["key"]
        adds, dels, first = [], [], 0
        for i in range(n):
            _, prof = jcall(a + "/api/v1/profiles", key, "POST", {"name": "P%d" % i})
            pid = prof["id"]
            code, body = call(a + "/api/v1/profiles/%s/references?kind=work" % pid, key, "POST",
                              work, "image/jpeg")
            t0 = time.time()
            ref = json.loads(body)["id"]
            polls = 0
            while not matches(b, key, pid, ref, copy):
                polls += 1
                time.sleep(POLL_MS / 1e3)
            adds.append((time.time() - t0) * 1e3)
            first += polls == 0
            call(a + "/api/v1/references/" + ref, key, "DELETE")
            t2 = time.time()
            while matches(b, key, pid, ref, copy):
                time.sleep(POLL_MS / 1e3)
            dels.append((time.time() - t2) * 1e3)
        return adds, dels, first
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", default=os.path.join(REPO, "build", "src", "cli", "vigil"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--interval", default="100ms")
    ap.add_argument("--database", default="sqlite", help="sqlite, pg or a postgresql:// URL")
    a = ap.parse_args()
    vigil = os.path.abspath(a.vigil)
    adds, dels, _ = run(vigil, a.n, a.nodes, False, a.interval, a.database)
    for name, xs in (("add -> matches on B", adds), ("delete -> stops matching on B", dels)):
        print("%-32s n=%d  P50 %.1f ms  P95 %.1f ms  P99 %.1f ms  max %.1f ms" % (
            name, len(xs), pct(xs, 50), pct(xs, 95), pct(xs, 99), max(xs)))
    adds, dels, first = run(vigil, a.n, a.nodes, True, a.interval, a.database)
    print("with index_sync_before_analysis: the first analysis on B after the add matched %d/%d; "
          "after the delete, P99 %.1f ms until it stopped" % (first, len(adds), pct(dels, 99)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
