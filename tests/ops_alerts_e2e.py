#!/usr/bin/env python3
"""End-to-end alerting: a real `vigil serve` driven into analysis errors reaches a webhook.

A small HTTP receiver (http.server, on a free loopback port) stands in for Alertmanager. The server
runs with --ops-time-scale 60 (an ops minute is one real second), --fault-analysis-error-rate 0.2
(a fifth of the computed images fail; the feature cache is off so that every analysis is computed)
and the receiver as --alert-webhook with a
secret. The test posts analyses until the receiver gets `analysis_error_rate_high` firing, stops the
traffic (no requests: the error-rate rules have nothing to judge, so the alert resolves) and waits
for the resolved notification. It checks the Alertmanager v4 body, the X-Vigil-Signature HMAC of
every POST, GET /api/v1/alerts (the alert among the recent ones, its events) and the delivery
metric.

    ops_alerts_e2e.py --vigil build/src/cli/vigil --repo .
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

SECRET = "e2e-webhook-secret"
ALERT = "analysis_error_rate_high"
DEADLINE_S = 120  # generous: a bound on a hung test, not a timing assertion


class Receiver(http.server.BaseHTTPRequestHandler):
    posts = []
    lock = threading.Lock()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with Receiver.lock:
            Receiver.posts.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def call(url, key, method="GET", body=None, ctype="application/json"):
    return vgt_server.call(url, key, method, body, ctype if body is not None else None)


def notifications(status):
    """Alerts named ALERT with this status across every POST so far."""
    out = []
    with Receiver.lock:
        posts = list(Receiver.posts)
    for _, body in posts:
        doc = json.loads(body)
        for a in doc["alerts"]:
            if a["labels"].get("alertname") == ALERT and a["status"] == status:
                out.append((doc, a))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", required=True)
    args = ap.parse_args()
    image = open(os.path.join(args.repo, "tests", "data", "img", "exif-rotn-1-small.jpg"),
                 "rb").read()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % srv.server_address[1]

    data = tempfile.mkdtemp(prefix="vigil-alerts-e2e-")
    p, base, admin = vgt_server.start(args.vigil, data, [
        "--faces", "false", "--ops-time-scale", "60", "--fault-analysis-error-rate", "0.2",
        "--cache-l1-entries", "0", "--cache-l2-bytes", "0",
        "--alert-webhook", hook, "--alert-webhook-secret", SECRET, "--alert-anomaly", "false",
        "--alert-external-url", "http://vigil.test:8080"], who="ops_alerts_e2e")
    failures = []
    try:
        st, b = call(base + "/api/v1/tenants", admin, "POST",
                     json.dumps({"name": "e2e", "kind": "agency"}).encode())
        assert st == 201, (st, b)
        tenant = json.loads(b)["id"]
        st, b = call(base + "/api/v1/tenants/%s/keys" % tenant, admin, "POST", b"{}")
        assert st == 201, (st, b)
        key = json.loads(b)["key"]

        # 1. errors until the firing notification arrives
        codes = {}
        t0 = time.time()
        while not notifications("firing") and time.time() - t0 < DEADLINE_S:
            st, _ = call(base + "/api/v1/analyze?store=false", key, "POST", image, "image/jpeg")
            codes[st] = codes.get(st, 0) + 1
            time.sleep(0.01)
        print("analyses by status: %s" % codes)
        if codes.get(500, 0) == 0:
            failures.append("no analysis failed: fault injection did not work")
        fired = notifications("firing")
        if not fired:
            failures.append("no firing %s notification within %d s" % (ALERT, DEADLINE_S))
        else:
            doc, a = fired[0]
            print("firing after %.1f s: %s" % (time.time() - t0, a["annotations"]["summary"]))
            for k in ("version", "status", "receiver", "groupLabels", "commonLabels",
                      "commonAnnotations", "externalURL", "alerts", "groupKey",
                      "truncatedAlerts"):
                if k not in doc:
                    failures.append("body lacks %s" % k)
            if doc.get("version") != "4" or doc.get("receiver") != "vigil":
                failures.append("version/receiver: %s/%s" % (doc.get("version"),
                                                             doc.get("receiver")))
            if a["labels"].get("severity") != "critical":
                failures.append("severity %s, want critical" % a["labels"].get("severity"))
            for k in ("startsAt", "endsAt", "generatorURL", "fingerprint", "annotations"):
                if k not in a:
                    failures.append("alert lacks %s" % k)
            if a.get("generatorURL") != "http://vigil.test:8080/api/v1/alerts":
                failures.append("generatorURL %s" % a.get("generatorURL"))

        # 2. traffic stops: the rule has nothing to judge, the alert resolves
        t1 = time.time()
        while not notifications("resolved") and time.time() - t1 < DEADLINE_S:
            time.sleep(0.1)
        if not notifications("resolved"):
            failures.append("no resolved %s notification within %d s" % (ALERT, DEADLINE_S))
        else:
            _, a = notifications("resolved")[0]
            print("resolved after %.1f s, endsAt %s" % (time.time() - t1, a["endsAt"]))
            if a["endsAt"].startswith("0001"):
                failures.append("resolved alert without endsAt")

        # 3. every POST signed
        with Receiver.lock:
            posts = list(Receiver.posts)
        for headers, body in posts:
            want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            got = {k.lower(): v for k, v in headers.items()}.get("x-vigil-signature")
            if got != want:
                failures.append("bad signature %r (want %s)" % (got, want))

        # 4. the API and the metrics agree
        st, b = call(base + "/api/v1/alerts", admin)
        doc = json.loads(b)
        recent = [x for x in doc["recent"] if x["name"] == ALERT]
        if st != 200 or not recent or recent[0]["state"] != "resolved":
            failures.append("GET /api/v1/alerts: %s not among the recent resolved alerts" % ALERT)
        if not any(e["kind"] == "alert" and ALERT in e["message"] for e in doc["events"]):
            failures.append("no alert event for %s" % ALERT)
        st, b = call(base + "/api/v1/alerts/404/ack", admin, "POST")
        if st != 404 or "error" not in json.loads(b):
            failures.append("ack of an unknown alert: %d %s" % (st, b))
        st, b = call(base + "/metrics", admin)
        text = b.decode()
        if 'vigil_alert_webhook_deliveries_total{receiver_severity="critical",outcome="success"}' \
                not in text:
            failures.append("no successful delivery in /metrics")
    finally:
        if not vgt_server.stop(p):
            failures.append("vigil serve did not stop in time")
        srv.shutdown()
        shutil.rmtree(data, ignore_errors=True)
    for f in failures:
        print("FAIL: " + f)
    print("%d POSTs received; %s" % (len(Receiver.posts), "FAIL" if failures else "PASS"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
