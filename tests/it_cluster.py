#!/usr/bin/env python3
"""Several nodes, one data set (docs/SCALING.md): `scripts/cluster.sh` (the `make cluster` script)
starts a shared database, Redis, three `vigil serve` nodes and nginx with deploy/nginx/vigil.conf;
then, through that nginx and against the nodes directly:

1. the README's curl walkthrough runs as written through nginx (tests/readme_walkthrough.py
   --url), and nginx's access log shows its requests spread over more than one node;
2. a reference added through node A matches an analysis sent to node B, and, once deleted
   through node A, no longer matches on node B; every node's index converges to the log's head;
3. a key used on every node (so each caches it) and revoked through node A is refused (401) on
   every node;
4. a stream of analyses through nginx while one node is killed with SIGKILL: the stream goes on
   on the other nodes, only requests in flight at the kill may fail (at most one per client
   thread, each a 502), and every scan that was acknowledged (201) is in the store afterwards.

No timing assertions: waits are bounded only to catch hangs; the times it measured are printed.

With --pg the nodes share a fresh database on the PostgreSQL server VIGIL_TEST_PG_URL names
(scripts/pg-tmp.sh, `make test`; they LISTEN for the change log's notifications); without --pg a
SQLite file (cluster.sh --sqlite).

Usage: it_cluster.py --vigil PATH [--repo DIR] [--pg]
       (exit 0 pass, 1 fail, 77 skip: no nginx, or --pg without VIGIL_TEST_PG_URL)
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

HANG_S = 30  # a convergence that takes this long is a hang, not slowness
STREAM_THREADS = 4
STREAM_BEFORE_KILL_S = 2.0
STREAM_AFTER_KILL_S = 4.0
# A request nginx sent to the node just before it died may fail a little after: the kernel's
# resets reach nginx's keep-alive connections to the node as the process is torn down.
DEATH_NOTICE_S = 0.1
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("it_cluster: FAIL: " + what, file=sys.stderr)
    return cond


call = vgt_server.call


def jcall(url, key=None, method="GET", obj=None):
    body = json.dumps(obj).encode() if obj is not None else None
    st, b = call(url, key, method, body, "application/json" if body else None)
    try:
        return st, json.loads(b) if b else None
    except ValueError:
        return st, None


def read_state(path):
    out = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        out[k] = v.strip('"')
    return out


def start_cluster(vigil, repo, tmp, database):
    state = os.path.join(tmp, "cluster.state")
    log = open(os.path.join(tmp, "cluster.log"), "w")
    db_args = ["--database", database] if database else ["--sqlite"]
    # Its own session: the SIGTERM at the end reaches the script, which stops what it started.
    p = subprocess.Popen([os.path.join(repo, "scripts", "cluster.sh"), "--vigil", vigil,
                          "--state", state, "--keep"] + db_args, cwd=repo, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(state):
        if p.poll() is not None:
            raise SystemExit("it_cluster: cluster.sh exited with %d:\n%s" % (
                p.returncode, open(log.name).read()[-3000:]))
        time.sleep(0.2)
    if not os.path.exists(state):
        p.kill()
        raise SystemExit("it_cluster: the cluster did not come up within 120 s")
    return p, read_state(state), log.name


def stop_cluster(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        check(False, "cluster.sh did not stop within 60 s of SIGTERM")


def health(url):
    st, j = jcall(url + "/api/v1/health")
    return st, j or {}


def wait_converged(node_urls):
    """Waits until every node applied the change log up to the highest head any node saw."""
    t0 = time.time()
    while time.time() - t0 < HANG_S:
        hs = [health(u)[1].get("index_sync", {}) for u in node_urls]
        head = max(h.get("head_seq", 0) for h in hs)
        if all(h.get("applied_seq", -1) >= head for h in hs):
            return time.time() - t0
        time.sleep(0.05)
    check(False, "the nodes did not converge on the change log within %d s" % HANG_S)
    return None


def analyze(url, key, image, ctype="image/jpeg", timeout=30):
    return call(url + "/api/v1/analyze", key, "POST", image, ctype, timeout)


def matched(body, ref_id):
    try:
        return any(m.get("reference_id") == ref_id for m in json.loads(body).get("matches", []))
    except ValueError:
        return False


def step_walkthrough(repo, st):
    r = subprocess.run([sys.executable, os.path.join(repo, "tests", "readme_walkthrough.py"),
                        "--url", st["URL"], "--admin-key", st["ADMIN"], "--repo", repo],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    check(r.returncode == 0, "README walkthrough through nginx: " + r.stdout.strip()[-1500:])
    ups = set()
    for line in open(os.path.join(st["DIR"], "nginx", "access.log")):
        parts = line.split()
        if len(parts) >= 3 and parts[-3].startswith("127.0.0.1:"):
            ups.add(parts[-3])
    check(len(ups) >= 2, "nginx sent the walkthrough to %d node(s), not spread: %s" % (
        len(ups), sorted(ups)))
    print("it_cluster: walkthrough through nginx passed, served by %d nodes" % len(ups))


def step_cross_node(repo, st, nodes):
    admin, a, b = st["ADMIN"], nodes[0], nodes[1]
    _, t = jcall(a + "/api/v1/tenants", admin, "POST", {"name": "Cluster", "kind": "agency"})
    _, k = jcall(b + "/api/v1/tenants/%s/keys" % t["id"], admin, "POST", {"name": "it"})
    key = k["key"]
    _, p = jcall(b + "/api/v1/profiles", key, "POST", {"name": "Owner"})
    work = open(os.path.join(repo, "samples", "bridge.jpg"), "rb").read()
    copy = open(os.path.join(repo, "samples", "bridge-small.jpg"), "rb").read()
    code, body = call(a + "/api/v1/profiles/%s/references?kind=work" % p["id"], key, "POST",
                      work, "image/jpeg")
    if not check(code == 201, "reference add on node A answered %d: %s" % (code, body[:200])):
        return t["id"], key
    ref = json.loads(body)["id"]
    code, body = analyze(b, key, copy)
    check(code == 201 and matched(body, ref),
          "a reference added on node A does not match on node B (%d: %s)" % (code, body[:300]))
    took = wait_converged(nodes)
    if took is not None:
        print("it_cluster: all nodes applied the add within %.0f ms of the check" % (took * 1e3))
    code, _ = call(a + "/api/v1/references/" + ref, key, "DELETE")
    check(code in (200, 204), "reference delete on node A answered %d" % code)
    code, body = analyze(b, key, copy)
    check(code == 201 and not matched(body, ref),
          "a reference deleted on node A still matches on node B (%d: %s)" % (code, body[:300]))
    wait_converged(nodes)
    return t["id"], key


def step_revoke(st, nodes, tenant):
    admin = st["ADMIN"]
    _, k = jcall(nodes[0] + "/api/v1/tenants/%s/keys" % tenant, admin, "POST", {"name": "doomed"})
    for u in nodes:  # each node authenticates it once, so each caches it
        code, _ = call(u + "/api/v1/profiles", k["key"])
        check(code == 200, "a fresh key answered %d on %s" % (code, u))
    code, _ = call(nodes[0] + "/api/v1/tenants/%s/keys/%s" % (tenant, k["id"]), admin, "DELETE")
    check(code in (200, 204), "key revoke answered %d" % code)
    t0 = time.time()
    pending = set(nodes)
    while pending and time.time() - t0 < HANG_S:
        for u in list(pending):
            if call(u + "/api/v1/profiles", k["key"])[0] == 401:
                pending.discard(u)
        time.sleep(0.02)
    check(not pending, "a revoked key still works on %s after %d s" % (sorted(pending), HANG_S))
    if not pending:
        print("it_cluster: revoked key refused on every node within %.0f ms" %
              ((time.time() - t0) * 1e3))


def step_admin_rotate(st, nodes, vigil, tmp):
    """A node started with another --admin-key rotates the admin key (the old one is revoked in
    the store): every running node, whose key cache holds the admin hash it started with, refuses
    the old key and takes the new one within one sync poll (the change log). The new key goes on
    in st["ADMIN"] for the later steps."""
    old, new = st["ADMIN"], "vigil_admin_rotated_" + "k" * 40
    for u in nodes:
        check(call(u + "/api/v1/tenants", old)[0] == 200, "the admin key failed on %s" % u)
    p = subprocess.Popen([vigil, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                          os.path.join(tmp, "rotator"), "--database", st["DATABASE"],
                          "--faces", "false", "--admin-key", new],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:
            if "listening on" in line:
                break
        t0 = time.time()
        pending = set(nodes)
        while pending and time.time() - t0 < HANG_S:
            for u in list(pending):
                if (call(u + "/api/v1/tenants", old)[0] == 401 and
                        call(u + "/api/v1/tenants", new)[0] == 200):
                    pending.discard(u)
            time.sleep(0.02)
        check(not pending, "the rotated admin key did not reach %s after %d s" %
              (sorted(pending), HANG_S))
        if not pending:
            print("it_cluster: rotated admin key in force on every node within %.0f ms" %
                  ((time.time() - t0) * 1e3))
    finally:
        p.terminate()
        p.wait(timeout=60)
    st["ADMIN"] = new


def wait_dead(pid):
    """When the killed process is gone (a zombie of cluster.sh, or reaped): its sockets are
    closed from then on."""
    while True:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] in ("Z", "X"):
                    return time.time()
        except OSError:
            return time.time()
        time.sleep(0.001)


def step_sigkill(repo, st, nodes, key):
    url = st["URL"]
    pids = [int(x) for x in st["NODE_PIDS"].split()]
    image = open(os.path.join(repo, "samples", "bridge-small.jpg"), "rb").read()
    results = []  # (t_start, t_end, status, scan_id or detail)
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            t_start = time.time()
            try:
                code, body = analyze(url, key, image, timeout=30)
                detail = json.loads(body).get("scan_id") if code == 201 else body[:120]
            except (OSError, ValueError) as e:  # connection reset by nginx, bad JSON
                code, detail = 0, str(e)
            with lock:
                results.append((t_start, time.time(), code, detail))

    threads = [threading.Thread(target=client) for _ in range(STREAM_THREADS)]
    for t in threads:
        t.start()
    time.sleep(STREAM_BEFORE_KILL_S)
    victim = pids[1]
    t_kill = time.time()
    os.kill(victim, signal.SIGKILL)
    t_dead = wait_dead(victim)
    time.sleep(STREAM_AFTER_KILL_S)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    ok = [r for r in results if r[2] == 201]
    bad = [r for r in results if r[2] != 201]
    after = [r for r in ok if r[0] > t_kill + 0.5]
    print("it_cluster: stream of %d analyses, %d acknowledged, %d failed, %d acknowledged after "
          "the kill" % (len(results), len(ok), len(bad), len(after)))
    check(len(after) > 0, "the stream stopped after one node was killed")
    # Only requests in flight on the dead node may fail: one per client thread at most, each
    # started before the kill and answered 502 by nginx.
    check(len(bad) <= STREAM_THREADS, "%d analyses failed (at most %d were in flight): %s" % (
        len(bad), STREAM_THREADS, bad[:5]))
    for r in bad:
        check(r[0] <= t_dead + DEATH_NOTICE_S and r[1] >= t_kill and r[2] == 502,
              "an analysis not in flight at the kill failed: status %d, started %.3f s after the "
              "node died: %s" % (r[2], r[0] - t_dead, r[3]))
    # Every acknowledged write is in the store.
    missing = []
    for r in ok:
        code, _ = call(url + "/api/v1/scans/" + str(r[3]), key)
        if code != 200:
            missing.append((r[3], code))
    check(not missing, "%d acknowledged scans are not in the store: %s" % (
        len(missing), missing[:5]))
    # The survivors still answer; nginx left the dead one out.
    for u in nodes[:1] + nodes[2:]:
        check(health(u)[0] == 200, "surviving node %s is not ready" % u)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--pg", action="store_true", help="share a PostgreSQL database "
                    "(VIGIL_TEST_PG_URL) instead of a SQLite file")
    a = ap.parse_args()
    if not shutil.which("nginx"):
        print("it_cluster: SKIP: nginx is not installed (scripts/setup.sh test)")
        return 77
    if not a.pg:
        return run(a, None)
    base = os.environ.get("VIGIL_TEST_PG_URL", "")
    if not base:
        print("it_cluster --pg: SKIP: no VIGIL_TEST_PG_URL (scripts/pg-tmp.sh)")
        return 77
    db = "cluster_%d" % os.getpid()
    subprocess.run(["psql", base, "-qc", "CREATE DATABASE " + db], check=True)
    try:
        return run(a, base.rsplit("/", 1)[0] + "/" + db)
    finally:
        subprocess.run(["psql", base, "-qc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db])


def run(a, database):
    vigil = os.path.abspath(a.vigil)
    tmp = tempfile.mkdtemp(prefix="vigil-it-cluster.")
    # A lag limit an idle node would cross between two polls is refused at start, by name.
    r = subprocess.run([vigil, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                        os.path.join(tmp, "bad"), "--log-level", "error",
                        "--index-sync-interval", "1s", "--index-max-lag", "1500ms"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    check(r.returncode != 0 and "index_max_lag" in r.stdout,
          "index_max_lag under two sync intervals was not refused: %d %s" % (
              r.returncode, r.stdout[-300:]))
    p, st, log = start_cluster(vigil, a.repo, tmp, database)
    nodes = st["NODE_URLS"].split()
    try:
        step_walkthrough(a.repo, st)
        tenant, key = step_cross_node(a.repo, st, nodes)
        step_revoke(st, nodes, tenant)
        step_admin_rotate(st, nodes, vigil, tmp)
        step_sigkill(a.repo, st, nodes, key)
    finally:
        stop_cluster(p)
        # A sanitizer build reports at exit into the node's log (the killed node has none).
        for name in sorted(os.listdir(st["DIR"])):
            if name.startswith("node") and name.endswith(".log"):
                text = open(os.path.join(st["DIR"], name), errors="replace").read()
                for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                               "runtime error:"):
                    check(marker not in text, "%s reports '%s'" % (name, marker))
        if failures:
            print("it_cluster: logs kept in %s and %s" % (st["DIR"], log), file=sys.stderr)
        else:
            shutil.rmtree(st["DIR"], ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        return 1
    print("it_cluster: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
