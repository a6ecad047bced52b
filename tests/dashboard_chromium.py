#!/usr/bin/env python3
"""GET /dashboard opened in headless Chromium against a real `vigil serve` under load.

Starts `vigil serve` on a free loopback port with a throwaway data directory, creates a tenant and
keeps a thread posting analyses (the sample images in turn, so both computed and cached answers)
and listing scans. Then:

- the page is public and served with the strict headers: a Content-Security-Policy whose script and
  style hashes are the SHA-256 of the inline blocks of the bytes served (so the policy admits
  exactly this page's code and nothing inline besides), no 'unsafe-inline', frame-ancestors 'none',
  nosniff, Referrer-Policy no-referrer, Cache-Control no-store;
- Chromium (--dump-dom, virtual time long enough for several refresh rounds) opens
  /dashboard#key=<admin key>; the page must take the key from the fragment and clear it, and every
  panel must end in the state its endpoint warrants: "ok" with counts matching what the endpoint
  answers when it answers 200, "error" saying "endpoint unavailable (HTTP 404)" when the route is
  not there. With --require-all (how CTest runs it) every endpoint must answer and every panel
  show data: health components, >= 15 KPI values and chart points, 4 SLA objectives, a firing
  alert with its Ack button and a self-healing action (real ones: the server runs with 1 ms
  latency thresholds the load crosses), cache tiers, replicas;
- a silence whose comment is markup shows as text in the alerts panel, and no element from it;
- a wrong key in the fragment brings up the key form with the 401, and no panel data;
- --screenshot PATH also writes a 1280x900 PNG of the loaded page (docs/img/dashboard.png).

Chromium missing: exit 77 (CTest SKIP) with a message, except under CI (env CI set), where
scripts/setup.sh installs it and its absence is a failure.

Usage: dashboard_chromium.py --vigil PATH [--repo DIR] [--require-all] [--screenshot PNG]
       [--chromium PATH] [--load-s N]
"""
import argparse
import base64
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

SKIP = 77
# Virtual time Chromium gives the page before dumping: the page refreshes every REFRESH_S, so this
# is several rounds (fetches pause virtual time, so a slow server does not eat the budget).
REFRESH_S = 2
# Ops time runs this much faster than real time (vigil serve --ops-time-scale): the 1-min KPI
# window is 6 real seconds and a chart point (a ten-tick slot) one, so a few seconds of load fill
# the charts.
OPS_TIME_SCALE = 10
# Real alert and self-healing thresholds the load crosses, so those panels show a firing alert
# with its Ack button and an action taken: an analysis P95 above 1 ms (every computed image takes
# longer: decode, PDQ, face detection) fires `response_time_high` and triggers `retune`.
SERVE_ARGS = ["--ops-time-scale", str(OPS_TIME_SCALE), "--alert-latency-warning", "1ms",
              "--alert-latency-critical", "1h", "--self-heal-p95-ms", "1"]
READY_WAIT_S = 60  # for the alert and the action to appear (a wait, not an assertion on speed)
VIRTUAL_TIME_MS = 9000
CHROMIUM_TIMEOUT_S = 120
SAMPLES = ["bridge-small.jpg", "person-a2.png", "bridge.jpg", "astronaut.png", "group.png",
           "person-a1.png"]
# panel -> the endpoint whose answer it shows
PANELS = {"health": "/api/v1/health", "kpis": "/api/v1/metrics/performance",
          "cache": "/api/v1/metrics/performance", "capacity": "/api/v1/metrics/performance",
          "sla": "/api/v1/metrics/sla", "alerts": "/api/v1/alerts",
          "actions": "/api/v1/ops/actions"}

failures = []
# A silence whose comment and matcher are markup: the alerts panel must show them as text.
HOSTILE = '<img src=x id="vg-xss-img"><b id="vg-xss">x</b>'


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("dashboard_chromium: FAIL: " + msg, file=sys.stderr)
    return cond


def call(url, method="GET", key=None, body=None, ctype=None):
    return vgt_server.call(url, key, method, body, ctype, headers=True)


def find_chromium(given):
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Panels(html.parser.HTMLParser):
    """Collects each <section data-panel>'s attributes and text, and <body>'s attributes."""

    def __init__(self):
        super().__init__()
        self.panels, self.body, self.stack, self.acks, self.injected = {}, {}, [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if a.get("id", "").startswith("vg-xss"):
            self.injected += 1
        if tag == "button" and "data-ack" in a:
            self.acks += 1
        if tag == "section" and "data-panel" in a:
            self.panels[a["data-panel"]] = {"attrs": a, "text": ""}
            self.stack.append(a["data-panel"])
        elif tag == "section":
            self.stack.append(None)

    def handle_endtag(self, tag):
        if tag == "section" and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for name in self.stack:
            if name:
                self.panels[name]["text"] += data


def chromium_run(chromium, url, tmp, extra):
    """Runs headless Chromium on url; returns its stdout (the DOM with --dump-dom)."""
    home = tempfile.mkdtemp(dir=tmp, prefix="home-")
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home)
    # --no-sandbox: CI runs as root in a chroot, where Chromium's sandbox cannot start (it refuses
    # root, and user namespaces are often off); the page is our own, loaded from loopback.
    # --disable-dev-shm-usage: a chroot may have a tiny or no /dev/shm. The rest keeps Chromium
    # from reaching the network or the desktop on its own.
    args = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
            "--user-data-dir=" + os.path.join(home, "profile"), "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            "--hide-scrollbars", "--virtual-time-budget=%d" % VIRTUAL_TIME_MS, *extra, url]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=CHROMIUM_TIMEOUT_S, cwd=home)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode("utf-8", "replace")[-3000:])
        raise SystemExit("dashboard_chromium: FAIL: chromium exited with %d" % p.returncode)
    return p.stdout.decode("utf-8", "replace")


def load(base, key, stop, counts):
    images = []
    for n in SAMPLES:
        with open(os.path.join(REPO, "samples", n), "rb") as f:
            images.append((f.read(), "image/png" if n.endswith(".png") else "image/jpeg"))
    fresh = images[0][0]  # bridge-small.jpg: bytes after its EOI marker change the SHA-256 only
    i = 0
    while not stop.is_set():
        data, ctype = images[i % len(images)]
        if i % 2:  # every other one is computed (a cache miss), the rest come from the cache
            data, ctype = fresh + b"vigil-dashboard-%d" % i, "image/jpeg"
        st, _, _ = call(base + "/api/v1/analyze?source_url=https://example.com/%d.jpg" % i, "POST",
                        key, data, ctype)
        counts[st] = counts.get(st, 0) + 1
        st, _, _ = call(base + "/api/v1/scans?limit=5", key=key)
        counts[st] = counts.get(st, 0) + 1
        i += 1
        stop.wait(0.05)


def check_headers(base):
    st, h, body = call(base + "/dashboard")
    check(st == 200, "GET /dashboard without a key answers %d, not 200" % st)
    h = {k.lower(): v for k, v in h.items()}
    check(h.get("content-type", "").startswith("text/html"), "content type " + h.get("content-type", ""))
    csp = h.get("content-security-policy", "")
    for tag in ("script", "style"):
        m = re.search(rb"<" + tag.encode() + rb">(.*?)</" + tag.encode() + rb">", body, re.S)
        if not check(m, "page has no inline <%s>" % tag):
            continue
        want = "'sha256-%s'" % base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()
        check("%s-src %s" % (tag, want) in csp, "CSP %s-src is not %s: %s" % (tag, want, csp))
        check(len(re.findall(rb"<" + tag.encode() + rb"[\s>]", body)) == 1,
              "more than one <%s> in the page" % tag)
    check("unsafe-inline" not in csp and "unsafe-eval" not in csp, "CSP allows unsafe-*: " + csp)
    check("default-src 'none'" in csp, "CSP default-src is not 'none': " + csp)
    check("connect-src 'self'" in csp, "CSP connect-src is not 'self': " + csp)
    check("frame-ancestors 'none'" in csp, "CSP lacks frame-ancestors 'none': " + csp)
    check(h.get("x-content-type-options") == "nosniff", "X-Content-Type-Options")
    check(h.get("referrer-policy") == "no-referrer", "Referrer-Policy")
    check(h.get("cache-control") == "no-store", "Cache-Control")
    check(b"innerHTML" not in body and b"outerHTML" not in body and b"insertAdjacentHTML" not in body
          and b"document.write" not in body, "page uses an HTML-parsing sink")
    check(b' style="' not in body and b" onclick=" not in body, "page has inline style/handlers")


def check_panels(dom, base, key, require_all):
    doc = Panels()
    doc.feed(dom)
    check(doc.body.get("data-fragment-cleared") == "yes", "the key fragment stayed in the URL")
    rounds = int(doc.body.get("data-refreshes", "0"))
    check(rounds >= 2, "only %d refresh rounds completed" % rounds)
    probes = {}
    for panel, path in PANELS.items():
        if path not in probes:
            st, _, body = call(base + path, key=key)
            try:
                probes[path] = (st, json.loads(body))
            except ValueError:
                probes[path] = (st, None)
        st, js = probes[path]
        got = doc.panels.get(panel)
        if not check(got is not None, "panel %s missing from the page" % panel):
            continue
        a, text = got["attrs"], " ".join(got["text"].split())
        state = a.get("data-state")
        print("dashboard_chromium: %-8s %-5s HTTP %s %s" % (
            panel, state, a.get("data-http"),
            " ".join("%s=%s" % (k[5:], v) for k, v in sorted(a.items())
                     if k.startswith("data-") and k not in ("data-panel", "data-state", "data-http"))))
        answered = st == 200 or (path == "/api/v1/health" and st == 503)
        if require_all:
            check(answered, "%s answers %d (--require-all)" % (path, st))
        if not answered:
            check(state == "error", "panel %s is %s while %s answers %d" % (panel, state, path, st))
            check("endpoint unavailable (HTTP %d)" % st in text,
                  "panel %s does not say 'endpoint unavailable (HTTP %d)': %s" % (panel, st, text[:200]))
            continue
        if not check(state == "ok", "panel %s is %s: %s" % (panel, state, text[:300])):
            continue
        count = int(a.get("data-count", "-1"))
        if panel == "health":
            check(count == len(js.get("components", {})) and count >= 5,
                  "health shows %d components, endpoint has %d" % (count, len(js.get("components", {}))))
        elif panel == "kpis":
            check(int(a.get("data-values", 0)) >= 15, "fewer than 15 KPI values: %s" % a.get("data-values"))
            check(int(a.get("data-points", 0)) >= 1, "no series points")
            check(int(a.get("data-charts", 0)) >= 5, "fewer than 5 charts with data: %s" % a.get("data-charts"))
        elif panel == "cache":
            check(count == 3, "cache panel shows %d tiers" % count)
        elif panel == "capacity":
            check(count >= 1, "capacity panel shows %d replicas" % count)
        elif panel == "sla":
            n = len(js.get("objectives", []))
            check(count == n and n >= 4, "SLA panel shows %d objectives, endpoint has %d" % (count, n))
        elif panel == "alerts":
            check(count >= 0 and int(a.get("data-events", -1)) >= 0, "alerts panel counts")
            check(doc.acks <= count, "%d ack buttons for %d firing alerts" % (doc.acks, count))
            if require_all:
                check(count >= 1 and doc.acks >= 1, "no firing alert with an Ack button (%d, %d)"
                      % (count, doc.acks))
        elif panel == "actions":
            check(a.get("data-mode") == js.get("mode"), "actions mode %s, endpoint %s" % (
                a.get("data-mode"), js.get("mode")))
            if require_all:
                check(count >= 1, "no self-healing action shown")


def main():
    global REPO
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--chromium")
    ap.add_argument("--require-all", action="store_true")
    ap.add_argument("--screenshot")
    ap.add_argument("--load-s", type=float, default=6.0, help="load before the page opens")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `vigil serve` argument")
    args = ap.parse_args()
    REPO = args.repo

    chromium = find_chromium(args.chromium)
    if not chromium:
        if os.environ.get("CI"):
            print("dashboard_chromium: FAIL: chromium not installed under CI (scripts/setup.sh test "
                  "installs it)", file=sys.stderr)
            return 1
        print("dashboard_chromium: SKIP: chromium not installed (scripts/setup.sh test installs "
              "Debian's chromium)")
        return SKIP

    tmp = tempfile.mkdtemp(prefix="vigil-dash-")
    p = None
    stop = threading.Event()
    try:
        serve = [*SERVE_ARGS, *args.serve_arg]
        p, base, admin = vgt_server.start(args.vigil, os.path.join(tmp, "data"), serve,
                                          who="dashboard_chromium")
        check_headers(base)

        st, _, b = call(base + "/api/v1/tenants", "POST", admin,
                        json.dumps({"name": "Dashboard load", "kind": "agency"}).encode(),
                        "application/json")
        tenant = json.loads(b)["id"]
        st, _, b = call(base + "/api/v1/tenants/%s/keys" % tenant, "POST", admin, b"{}",
                        "application/json")
        tkey = json.loads(b)["key"]
        counts = {}
        loader = threading.Thread(target=load, args=(base, tkey, stop, counts), daemon=True)
        loader.start()
        time.sleep(args.load_s)
        deadline = time.time() + READY_WAIT_S
        while time.time() < deadline:
            _, _, a = call(base + "/api/v1/alerts", key=admin)
            _, _, h = call(base + "/api/v1/ops/actions", key=admin)
            try:
                if json.loads(a).get("firing") and json.loads(h).get("actions"):
                    break
            except ValueError:
                break  # a route missing: the panel checks below say what that means
            time.sleep(0.5)

        # A wrong key: the form comes up with the 401 and no panel shows data.
        dom = chromium_run(chromium, base + "/dashboard#key=va_wrong", tmp, ["--dump-dom"])
        doc = Panels()
        doc.feed(dom)
        login = doc.panels.get("login", {"attrs": {}, "text": ""})
        check("hidden" not in login["attrs"].get("class", ""), "wrong key: no key form")
        check("HTTP 401" in login["text"], "wrong key: the form does not say HTTP 401")
        check(all(doc.panels[n]["attrs"].get("data-state") == "loading" for n in PANELS),
              "wrong key: a panel was loaded")

        url = base + "/dashboard#key=%s&refresh=%d" % (admin, REFRESH_S)
        # The screenshot before the hostile silence below, so the docs show ordinary data.
        if args.screenshot:
            shot = os.path.abspath(args.screenshot)
            chromium_run(chromium, url, tmp, ["--window-size=1280,900", "--screenshot=" + shot])
            check(os.path.getsize(shot) > 10000, "screenshot %s is empty" % shot)
            print("dashboard_chromium: screenshot %s (%d bytes)" % (shot, os.path.getsize(shot)))

        silence = {"matchers": {"alertname": HOSTILE}, "comment": HOSTILE,
                   "ends_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))}
        st, _, _ = call(base + "/api/v1/alerts/silences", "POST", admin,
                        json.dumps(silence).encode(), "application/json")
        silenced = st == 201
        if args.require_all:
            check(silenced, "POST /api/v1/alerts/silences answers %d" % st)

        dom = chromium_run(chromium, url, tmp, ["--dump-dom"])
        check(admin not in dom, "the admin key appears in the page's DOM")
        doc = Panels()
        doc.feed(dom)
        check(doc.injected == 0, "server strings became %d elements in the page" % doc.injected)
        if silenced:
            text = doc.panels.get("alerts", {"text": ""})["text"]
            check(HOSTILE in text, "the silence comment is not shown as text in the alerts panel")
        check_panels(dom, base, admin, args.require_all)
        stop.set()
        loader.join(timeout=30)
        print("dashboard_chromium: load answers by status: %s" % json.dumps(counts, sort_keys=True))
        check(counts.get(201, 0) + counts.get(200, 0) > 10, "the load thread got few answers")
        check(not any(s >= 500 for s in counts if s != 503), "5xx under load: %s" % counts)
    finally:
        stop.set()
        if p:
            vgt_server.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        return 1
    print("dashboard_chromium: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
