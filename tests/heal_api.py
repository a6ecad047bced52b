#!/usr/bin/env python3
"""GET /api/v1/ops/actions against a real `vigil serve`: admin only, the contract's JSON shape,
the --self-heal mode, and the self_heal settings refused when out of range.

The end-to-end drive of each trigger (memory limit, injected failures, slow stage, cold cache)
needs the ops tick of the ops core; it is added when that is wired (docs/OPERATIONS.md)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
import vgt_server  # noqa: E402


def get(url, key=None):
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p, url, key = vgt_server.start(a.vigil, d, ["--faces", "false", "--self-heal", "dry-run",
                                                    "--self-heal-max-per-hour", "4"])
        try:
            st, _ = get(url + "/api/v1/ops/actions")
            assert st == 401, st
            st, body = get(url + "/api/v1/ops/actions", key)
            assert st == 200, (st, body)
            j = json.loads(body)
            assert j["mode"] == "dry-run", j
            assert j["actions"] == [], j
            names = {"memory_trim", "retune", "add_replica", "replace_replica", "raise_l1"}
            assert set(j["limits"]) == names, j
            for v in j["limits"].values():
                assert v["max_per_hour"] == 4 and v["used_last_hour"] == 0, v
                assert v["cooldown_s"] == 300, v
        finally:
            vgt_server.stop(p)
    r = subprocess.run([a.vigil, "serve", "--self-heal", "sometimes"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "self_heal" in (r.stderr + r.stdout), r
    r = subprocess.run([a.vigil, "serve", "--fault-analysis-error-rate", "2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "fault_analysis_error_rate" in (r.stderr + r.stdout), r
    print("heal_api: ok")


if __name__ == "__main__":
    main()
