#!/usr/bin/env python3
"""`vigil bench openloop` (issue 13) against a real server, briefly and at a low rate: no timing
assertions, only that it does what it says.

- it sets up its own tenant, key, profile, reference, match and notice from the admin key, runs
  two rates of the full mix, and its JSON report is well formed: every step has its rate, counts
  and percentiles; for every step and every class, due = ok + errors and the error kinds add up;
  requests are never reported sent more often than due; the percentiles are ordered;
- against the server, nothing fails at this rate (200s only), and each class got requests;
- against a port nobody listens on, every request is a connect error (none ok, none sent), and
  the tool still exits 0 with a report;
- bad arguments are usage errors (exit 2).

Usage: it_openloop.py --vigil PATH   (exit 0 pass, 1 fail)
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

KINDS = ("connect", "timeout", "io", "status")
PCTS = ("p50", "p95", "p99", "p999", "max")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("it_openloop: FAIL: " + msg, file=sys.stderr)


def check_counts(where, c):
    for k in ("due", "ok", "errors") + KINDS:
        check(isinstance(c.get(k), int) and c[k] >= 0, "%s: count %s missing or negative" % (where, k))
    if all(isinstance(c.get(k), int) for k in ("due", "ok", "errors") + KINDS):
        check(c["due"] == c["ok"] + c["errors"], "%s: due %d != ok %d + errors %d" %
              (where, c["due"], c["ok"], c["errors"]))
        check(c["errors"] == sum(c[k] for k in KINDS), "%s: error kinds do not add up" % where)


def check_latency(where, lat, ok):
    vals = [lat.get(p) for p in PCTS]
    check(all(isinstance(v, (int, float)) and v >= 0 for v in vals), "%s: bad percentiles" % where)
    if ok and all(isinstance(v, (int, float)) for v in vals):
        check(vals == sorted(vals), "%s: percentiles not ordered: %s" % (where, vals))
        check(vals[-1] > 0, "%s: max latency 0 with %d answers" % (where, ok))


def check_report(path, rates, classes):
    with open(path) as f:
        r = json.load(f)
    steps = r.get("steps")
    check(isinstance(steps, list) and len(steps) == len(rates), "steps: %r" % (steps,))
    for want, s in zip(rates, steps or []):
        where = "rate %g" % want
        check(s.get("rate") == want, "%s: rate %r" % (where, s.get("rate")))
        check_counts(where, s)
        check(s.get("sent", -1) <= s.get("due", 0), "%s: sent %r > due" % (where, s.get("sent")))
        check(s.get("due") == int(want * r["duration_s"]), "%s: due %r for %g s" %
              (where, s.get("due"), r["duration_s"]))
        check_latency(where, s.get("latency_ms", {}), s.get("ok", 0))
        check(sorted(s.get("classes", {})) == sorted(classes), "%s: classes %r" %
              (where, sorted(s.get("classes", {}))))
        total = {k: 0 for k in ("due", "ok", "errors") + KINDS}
        for name, c in s.get("classes", {}).items():
            check_counts("%s %s" % (where, name), c)
            check_latency("%s %s" % (where, name), c.get("latency_ms", {}), c.get("ok", 0))
            for k in total:
                total[k] += c.get(k, 0)
        for k in total:
            check(total[k] == s.get(k), "%s: classes' %s sum %d != %r" % (where, k, total[k], s.get(k)))
        check(sum(s.get("status_codes", {}).values()) == s.get("status"),
              "%s: status codes do not add up" % where)
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens on it now
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vigil-openloop.")
    proc, url, admin = vgt_server.start(a.vigil, os.path.join(tmp, "data"), who="it_openloop")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        out = os.path.join(tmp, "run.json")
        p = subprocess.run([a.vigil, "bench", "openloop", "--port", str(port), "--admin-key", admin,
                            "--rates", "5,10", "--duration", "2", "--connections", "3",
                            "--mix", "api=2,cached=1,new=1", "--pause-ms", "100", "--json", out],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        check(p.returncode == 0, "run against the server exited %d: %s" % (p.returncode, p.stderr))
        if p.returncode == 0:
            r = check_report(out, [5, 10], ["api", "cached", "new"])
            for s in r["steps"]:
                check(s["errors"] == 0, "rate %g: %d errors at a low rate: %r" %
                      (s["rate"], s["errors"], s.get("status_codes")))
                check(s["sent"] == s["due"], "rate %g: sent %d of %d" % (s["rate"], s["sent"], s["due"]))
                for name, c in s["classes"].items():
                    check(c["due"] > 0, "rate %g: no %s requests" % (s["rate"], name))
            check("highest rate holding" in p.stdout, "no summary line: %r" % p.stdout)

        dead = free_port()
        out2 = os.path.join(tmp, "dead.json")
        p = subprocess.run([a.vigil, "bench", "openloop", "--port", str(dead), "--key", "vk_none",
                            "--rates", "20", "--duration", "1", "--connections", "2", "--mix",
                            "api=1", "--json", out2],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        check(p.returncode == 0, "run against a dead port exited %d: %s" % (p.returncode, p.stderr))
        if p.returncode == 0:
            r = check_report(out2, [20], ["api"])
            s = r["steps"][0]
            check(s["due"] == 20 and s["connect"] == 20 and s["ok"] == 0 and s["sent"] == 0,
                  "dead port: due %d, connect errors %d, ok %d, sent %d" %
                  (s["due"], s["connect"], s["ok"], s["sent"]))
            check(r["best_rate_holding"] == 0, "dead port: a rate holds")

        for bad in (["--port", "0", "--key", "k"], ["--port", str(port)],
                    ["--port", str(port), "--key", "k", "--mix", "api=0"],
                    ["--port", str(port), "--key", "k", "--rates", "5,-1"],
                    ["--port", str(port), "--key", "k", "--frobnicate", "1"]):
            p = subprocess.run([a.vigil, "bench", "openloop"] + bad, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
            check(p.returncode == 2 and p.stderr.startswith("vigil bench openloop: "),
                  "%r: exit %d, stderr %r" % (bad, p.returncode, p.stderr))
    finally:
        vgt_server.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        return 1
    print("it_openloop: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
