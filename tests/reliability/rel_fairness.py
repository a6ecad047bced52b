#!/usr/bin/env python3
"""One tenant's flood against another tenant's analyses (docs/RELIABILITY.md, `make fairness`).

The adversarial review's scenario: tenant A keeps two connections busy sending decompression
bombs (files within the byte limit that cost seconds and hundreds of MB to decode) while tenant B
analyses ordinary photos one at a time; B got 0 successes in 20 s. This runs that scenario, and a
second one where A floods with more ordinary HD photos (each with unique bytes, so never a cache
hit) than the server can analyse, on connections enough to fill the queue. For B it reports
successes, errors and latency percentiles; for A the statuses it got.

Usage: rel_fairness.py --vigil PATH [--seconds 20] [--flood-connections 8]
Loopback only; every loop is bounded by --seconds. Exit 0 when, in both scenarios, every B
request succeeded within the request deadline (2 s) and A got only its own errors (422 for
bombs, 2xx/429/503 for the flood).
"""
import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import vgt_server  # noqa: E402
BOMBS = ["bomb-scans.jpg", "bomb-1bit.png", "bomb-lossless.webp", "bomb-work.jpg"]


def call(conn, method, path, key, body=None, ctype="application/json"):
    h = {"Authorization": "Bearer " + key}
    if body is not None:
        h["Content-Type"] = ctype
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def tenant(port, admin, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, b = call(c, "POST", "/api/v1/tenants", admin, json.dumps({"name": name, "kind": "agency"}))
    tid = json.loads(b)["id"]
    st, b = call(c, "POST", "/api/v1/tenants/%s/keys" % tid, admin, json.dumps({"name": "k"}))
    return json.loads(b)["key"]


def unique(img, n):
    # Bytes after a JPEG's end-of-image marker are ignored by decoders and change the SHA-256.
    return img + b"vigil-fairness-%012d" % n


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def scenario(port, key_a, key_b, seconds, a_bodies, a_conns):
    stop = time.time() + seconds
    a_status = {}
    lock = threading.Lock()

    def flood(idx):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = 0
        while time.time() < stop:
            body, ctype = a_bodies(idx, n)
            n += 1
            try:
                st, _ = call(c, "POST", "/api/v1/analyze", key_a, body, ctype)
            except (OSError, http.client.HTTPException):
                st = "conn-error"
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                a_status[st] = a_status.get(st, 0) + 1

    ths = [threading.Thread(target=flood, args=(i,)) for i in range(a_conns)]
    for t in ths:
        t.start()
    time.sleep(0.5)  # the flood is under way before B starts
    small = open(os.path.join(REPO, "bench", "images", "S.jpg"), "rb").read()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, b_status, n = [], {}, 0
    while time.time() < stop:
        body = unique(small, 10_000_000 + n)
        n += 1
        t0 = time.time()
        try:
            st, _ = call(c, "POST", "/api/v1/analyze", key_b, body, "image/jpeg")
        except (OSError, http.client.HTTPException):
            st = "conn-error"
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        dt = time.time() - t0
        b_status[st] = b_status.get(st, 0) + 1
        if st == 200 or st == 201:
            lat.append(dt * 1000)
        time.sleep(0.05)
    for t in ths:
        t.join()
    return a_status, b_status, lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--flood-connections", type=int, default=8)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vigil-fairness.")
    proc, url, admin = vgt_server.start(a.vigil, os.path.join(tmp, "data"),
                                        ("--log-level", "error"), who="rel_fairness")
    port = int(url.rsplit(":", 1)[1])
    ok = True
    try:
        key_a, key_b = tenant(port, admin, "Flooder"), tenant(port, admin, "Bystander")
        bombs = [open(os.path.join(REPO, "tests", "data", "img", f), "rb").read() for f in BOMBS]
        types = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
        btypes = [types[f.rsplit(".", 1)[1]] for f in BOMBS]
        hd = open(os.path.join(REPO, "bench", "images", "HD.jpg"), "rb").read()
        runs = [
            ("bombs, 2 connections", 2,
             lambda i, n: (bombs[(i + n) % len(bombs)], btypes[(i + n) % len(bombs)]), {422}),
            ("unique HD photos, %d connections" % a.flood_connections, a.flood_connections,
             lambda i, n: (unique(hd, i * 1_000_000 + n), "image/jpeg"), {200, 201, 429, 503}),
        ]
        print("| tenant A sends | A's answers | B: requests | B: ok | B: errors | "
              "B latency p50 / p95 / max (ms) |")
        print("|---|---|---|---|---|---|")
        for name, conns, bodies, a_allowed in runs:
            a_st, b_st, lat = scenario(port, key_a, key_b, a.seconds, bodies, conns)
            b_ok = b_st.get(200, 0) + b_st.get(201, 0)
            b_n = sum(b_st.values())
            b_err = {k: v for k, v in b_st.items() if k not in (200, 201)}
            print("| %s | %s | %d | %d | %s | %.0f / %.0f / %.0f |" % (
                name, ", ".join("%s x %d" % (k, v) for k, v in sorted(a_st.items(), key=str)),
                b_n, b_ok, b_err or "none", pct(lat, 0.5), pct(lat, 0.95), max(lat or [0])))
            if b_err or not lat or max(lat) > 2000 or set(a_st) - a_allowed:
                ok = False
    finally:
        vgt_server.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print("rel_fairness: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
