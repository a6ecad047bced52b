"""End to end: the performance and SLA endpoints of a real `vigil serve` under real load, then a
kill -9 and a restart that must show the downtime and keep the history.

Runs the server with --ops-time-scale 60 (an ops minute is one real second, so three seconds of
load fill three SLA minutes), drives analyses (raw JPEG bodies, the same bytes again and again so
the cache answers) and API reads on a few threads, reads GET /api/v1/metrics/performance and
GET /api/v1/metrics/sla, checks their shape and that they saw the load, kill -9s the process,
waits three ops minutes, restarts it on the same data directory and checks that the SLA report
counts the restart and the downtime while the per-minute history from before the kill is still
there. No timing assertions: only counts and presence.

Usage: it_ops.py --vigil PATH --repo DIR   (exit 0 pass, 1 fail, one line per failure)
"""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

SCALE = "60"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


call = vgt_server.call


def get_json(url, key):
    st, body = call(url, key)
    return st, json.loads(body) if body else None


def load(url, key, image, seconds):
    stop = time.time() + seconds
    counts = {"analyze": 0, "api": 0}

    def worker(kind):
        while time.time() < stop:
            if kind == "analyze":
                st, _ = call(url + "/api/v1/analyze?store=false", key, "POST", image, "image/jpeg")
            else:
                st, _ = call(url + "/api/v1/profiles", key)
            if st < 500:
                counts[kind] += 1
    threads = [threading.Thread(target=worker, args=(k,)) for k in ("analyze", "analyze", "api")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(__file__), ".."))
    a = ap.parse_args()
    with open(os.path.join(a.repo, "samples", "bridge-small.jpg"), "rb") as f:
        image = f.read()
    tmp = tempfile.mkdtemp(prefix="it_ops.")
    data = os.path.join(tmp, "data")
    proc = None
    try:
        proc, url, admin = vgt_server.start(a.vigil, data, ("--ops-time-scale", SCALE, "--faces",
                                                            "false"), who="it_ops")
        st, body = call(url + "/api/v1/tenants", admin, "POST",
                        json.dumps({"name": "Ops", "kind": "agency"}).encode(), "application/json")
        check(st == 201, "tenant create answered %d" % st)
        tid = json.loads(body)["id"]
        st, body = call(url + "/api/v1/tenants/%s/keys" % tid, admin, "POST",
                        json.dumps({"name": "load"}).encode(), "application/json")
        key = json.loads(body)["key"]

        # the routes need the admin key
        for path in ("/api/v1/metrics/performance", "/api/v1/metrics/sla"):
            st, _ = call(url + path, None)
            check(st == 401, "%s without a key answered %d, not 401" % (path, st))
            st, _ = call(url + path, key)
            check(st == 403, "%s with a tenant key answered %d, not 403" % (path, st))

        counts = load(url, key, image, 3.0)
        check(counts["analyze"] > 0 and counts["api"] > 0, "no load went through: %s" % counts)
        time.sleep(0.5)  # a few ticks: the windows lag one tick

        st, perf = get_json(url + "/api/v1/metrics/performance", admin)
        check(st == 200, "performance answered %d" % st)
        check(perf["time_scale"] == 60, "time_scale %s" % perf.get("time_scale"))
        check(set(perf["windows"]) == {"1m", "5m", "1h"}, "windows %s" % list(perf["windows"]))
        w = perf["windows"]["5m"]
        for k in ("window_s", "covered_s", "request_rate", "analysis_rate", "images_per_s",
                  "latency_ms", "error_rate", "analysis_error_rate", "cache", "batch",
                  "queue_depth", "queue_depth_max", "replicas", "stage_ms", "cpu_percent",
                  "memory_percent", "rss_bytes", "disk_free_bytes"):
            check(k in w, "KPI %s missing from the 5m window" % k)
        check(w["request_rate"] and w["request_rate"] > 0, "5m request_rate %s" % w["request_rate"])
        check(w["images_per_s"] and w["images_per_s"] > 0, "5m images_per_s %s" % w["images_per_s"])
        for cls in ("analysis", "api"):
            for q in ("p50", "p95", "p99"):
                check(w["latency_ms"][cls][q] is not None, "5m %s %s is null" % (cls, q))
        check(w["cache"]["hit_rate"]["overall"] is not None and w["cache"]["hit_rate"]["overall"] > 0,
              "5m cache hit rate %s (the same image again and again)" % w["cache"]["hit_rate"])
        check(w["cache"]["hit_latency_ms"]["l1"] is not None, "5m L1 latency is null")
        check(w["error_rate"] == 0, "5m error_rate %s" % w["error_rate"])
        check(w["replicas"]["current"] is not None and w["replicas"]["current"] >= 1,
              "replicas %s" % w["replicas"])
        check(w["cpu_percent"] is not None and w["rss_bytes"] > 0, "process KPIs missing")
        check(w["disk_free_bytes"] > 0, "disk_free_bytes %s" % w["disk_free_bytes"])
        s = perf["series"]
        check(s["slot_s"] == 10 and len(s["t"]) > 0 and len(s["t"]) == len(s["request_rate"]),
              "series: slot_s %s, %d points" % (s["slot_s"], len(s["t"])))
        check("4.4%" in perf["percentile_error"], "percentile_error: %s" % perf["percentile_error"])

        st, sla = get_json(url + "/api/v1/metrics/sla", admin)
        check(st == 200, "sla answered %d" % st)
        names = [o["name"] for o in sla["objectives"]]
        check(names == ["availability", "analysis_latency", "api_latency", "error_rate"],
              "objectives %s" % names)
        check(set(sla["windows"]) == {"1h", "24h", "7d", "30d"}, "sla windows")
        check(sla["uptime"]["restarts_30d"] == 0, "restarts before any restart")
        check(sla["windows"]["1h"]["api_latency"]["compliance"] is not None,
              "1h api_latency compliance is null under load")

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = None
        time.sleep(3.0)  # three ops minutes down
        proc, url = vgt_server.restart(
            a.vigil, data, ("--ops-time-scale", SCALE, "--faces", "false"), who="it_ops")
        time.sleep(0.3)
        st, sla = get_json(url + "/api/v1/metrics/sla", admin)
        check(st == 200, "sla after restart answered %d" % st)
        up = sla["uptime"]
        check(up["restarts_30d"] == 1, "restarts_30d after a kill -9: %s" % up["restarts_30d"])
        # down from the last heartbeat (at most one ops minute before the kill) to the restart
        check(up["downtime_s_30d"] >= 3.0, "downtime_s_30d %s < the 3 s stopped" %
              up["downtime_s_30d"])
        w1h = sla["windows"]["1h"]
        check(w1h["api_latency"]["compliance"] is not None,
              "the per-minute history from before the kill is gone (api_latency null)")
        check(w1h["availability"]["compliance"] is not None and
              w1h["availability"]["compliance"] < 1, "availability %s counts no downtime" %
              w1h["availability"]["compliance"])
        check(len(w1h["availability"]["violations"]) >= 1, "no availability violation for the "
              "downtime")
        if not vgt_server.stop(proc):
            check(False, "vigil serve did not stop on SIGTERM")
        proc = None
    finally:
        if proc:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("it_ops: %s (%d failures)" % ("FAIL" if failures else "PASS", len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
