"""Vigil load test for Debian's python3-locust (2.12).

Four kinds of users, weighted like real use:
  crawler (5): machines analysing images found on the web, one by one and in batches; most
               images are new (unique bytes), some come back (cache hits);
  desktop (2): creators and agency staff at a desk: dashboard views (profiles, matches, scans,
               notices), analysis of large photos, works, DMCA drafting and status work;
  mobile  (2): the same on a phone: short lists, small photos, longer pauses;
  admin   (1): the operator: the ops dashboard and the JSON it polls (performance, SLA, alerts,
               self-healing), tenants, health and /metrics.

The load ramps up to VIGIL_LOAD_USERS over VIGIL_LOAD_RAMP_S seconds, holds, and stops after
VIGIL_LOAD_DURATION_S seconds. At the end a pass/fail summary against the SLA is printed and
the exit status is non-zero on a fail:
  API requests       P95 < 500 ms   (VIGIL_SLA_API_P95_MS)
  analysis requests  P95 < 2000 ms  (VIGIL_SLA_ANALYZE_P95_MS): analyze, batch, reference upload
  error rate         < 1 %          (VIGIL_SLA_ERROR_PCT), every request together

Environment:
  VIGIL_TENANT_KEY  a tenant key (vk_...), required
  VIGIL_ADMIN_KEY   the admin key, optional: without it admins only poll the public routes
  VIGIL_LOAD_IMAGES directory with S.jpg M.jpg L.jpg HD.jpg (default: ../bench/images)
  VIGIL_LOAD_HD     1: crawlers also send the 3840x2160 image (default 0: S, M, L)

Run: see load/README.md and scripts/loadtest.sh (which starts a local server and sets the keys).
"""

import itertools
import json
import os
import random
import threading
import time

from locust import HttpUser, LoadTestShape, between, events, task

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES_DIR = os.environ.get("VIGIL_LOAD_IMAGES", os.path.join(HERE, "..", "bench", "images"))
TENANT_KEY = os.environ.get("VIGIL_TENANT_KEY", "")
ADMIN_KEY = os.environ.get("VIGIL_ADMIN_KEY", "")
USERS = int(os.environ.get("VIGIL_LOAD_USERS", "50"))
RAMP_S = float(os.environ.get("VIGIL_LOAD_RAMP_S", "20"))
DURATION_S = float(os.environ.get("VIGIL_LOAD_DURATION_S", "60"))
SLA_API_P95_MS = float(os.environ.get("VIGIL_SLA_API_P95_MS", "500"))
SLA_ANALYZE_P95_MS = float(os.environ.get("VIGIL_SLA_ANALYZE_P95_MS", "2000"))
SLA_ERROR_PCT = float(os.environ.get("VIGIL_SLA_ERROR_PCT", "1"))

CLASSES = ["S", "M", "L"] + (["HD"] if os.environ.get("VIGIL_LOAD_HD") == "1" else [])


def _load_images():
    images = {}
    for name in CLASSES:
        with open(os.path.join(IMAGES_DIR, name + ".jpg"), "rb") as f:
            images[name] = f.read()
    return images


IMAGES = _load_images()
_counter = itertools.count()
_counter_lock = threading.Lock()
_run_tag = "%08x" % (int(time.time()) & 0xFFFFFFFF)


def unique_jpeg(data):
    """The same picture with a 16-byte JPEG comment after SOI: new bytes, a new SHA-256, so no
    cache tier can answer and a reference upload is never a duplicate."""
    with _counter_lock:
        n = next(_counter)
    tag = ("%s%08x" % (_run_tag, n & 0xFFFFFFFF)).encode()
    return data[:2] + b"\xff\xfe\x00\x12" + tag + data[2:]


def auth():
    return {"Authorization": "Bearer " + TENANT_KEY}


def is_analysis(name, method):
    """Requests that run the image pipeline (decode, PDQ, faces) get the analysis SLA: analyze
    and batch, and reference uploads, which compute the same features."""
    return "/analyze" in name or (method == "POST" and name.endswith("/references"))


class CrawlerUser(HttpUser):
    """Finds images on the web and asks whether they infringe."""

    weight = 5
    wait_time = between(0.2, 1.0)

    def on_start(self):
        if not TENANT_KEY:
            raise RuntimeError("VIGIL_TENANT_KEY is not set (see load/README.md)")

    @task(8)
    def analyze_one(self):
        cls = random.choice(CLASSES)
        # 3 in 4 images are new; the rest were seen before (served by the feature cache)
        body = unique_jpeg(IMAGES[cls]) if random.random() < 0.75 else IMAGES[cls]
        headers = dict(auth(), **{"Content-Type": "image/jpeg"})
        url = "/api/v1/analyze?source_url=https://example.com/found/%d.jpg" % random.randint(
            0, 10**9)
        with self.client.post(url, data=body, headers=headers, name="/api/v1/analyze",
                              catch_response=True) as r:
            if r.status_code not in (200, 201):
                r.failure("status %d: %s" % (r.status_code, r.text[:200]))

    @task(1)
    def analyze_batch(self):
        n = random.randint(2, 6)
        files = [("image", ("img%d.jpg" % i, unique_jpeg(IMAGES[random.choice(CLASSES)]),
                            "image/jpeg")) for i in range(n)]
        with self.client.post("/api/v1/analyze/batch", files=files, data={"store": "true"},
                              headers=auth(), name="/api/v1/analyze/batch",
                              catch_response=True) as r:
            if r.status_code not in (200, 201):
                r.failure("status %d: %s" % (r.status_code, r.text[:200]))


class _WebUser(HttpUser):
    """Shared behaviour of the people using Vigil's web app: creators and agency staff who look
    at their dashboard (profiles, newest matches and scans, notices), check images they found,
    register works and follow DMCA notices through their workflow. Desktop and mobile users do
    the same things in different proportions, with different page sizes and think times."""

    abstract = True
    page = 50       # rows per list view
    images = CLASSES  # which images they upload

    def on_start(self):
        if not TENANT_KEY:
            raise RuntimeError("VIGIL_TENANT_KEY is not set (see load/README.md)")
        self.profile_id = None
        self.notices = []
        r = self.client.post("/api/v1/profiles", headers=auth(), name="/api/v1/profiles",
                             json={"name": "Creator %d" % random.randint(0, 10**6),
                                   "legal_name": "Load Test Creator",
                                   "email": "creator@example.com"})
        if r.status_code == 201:
            self.profile_id = r.json()["id"]
            self.upload_work()

    def upload_work(self):
        if not self.profile_id:
            return
        headers = dict(auth(), **{"Content-Type": "image/jpeg"})
        self.client.post(
            "/api/v1/profiles/%s/references?kind=work&title=Work%%20%d"
            % (self.profile_id, random.randint(0, 10**6)),
            data=unique_jpeg(IMAGES[random.choice(self.images)]), headers=headers,
            name="/api/v1/profiles/{id}/references")

    def dashboard_view(self):
        """The app's home screen: four list calls, as the page makes them on load."""
        self.client.get("/api/v1/profiles?limit=%d" % self.page, headers=auth(),
                        name="/api/v1/profiles")
        url = "/api/v1/matches?limit=%d" % self.page
        if self.profile_id and random.random() < 0.5:
            url += "&profile_id=" + self.profile_id
        self.client.get(url, headers=auth(), name="/api/v1/matches")
        self.client.get("/api/v1/scans?limit=%d" % self.page, headers=auth(),
                        name="/api/v1/scans")
        self.client.get("/api/v1/notices?limit=%d" % self.page, headers=auth(),
                        name="/api/v1/notices")

    def check_image(self):
        """A user checks one image they found (new bytes: the full pipeline runs)."""
        headers = dict(auth(), **{"Content-Type": "image/jpeg"})
        with self.client.post("/api/v1/analyze?source_url=https://example.com/seen/%d.jpg"
                              % random.randint(0, 10**9),
                              data=unique_jpeg(IMAGES[random.choice(self.images)]),
                              headers=headers, name="/api/v1/analyze",
                              catch_response=True) as r:
            if r.status_code not in (200, 201):
                r.failure("status %d: %s" % (r.status_code, r.text[:200]))

    def draft_notice(self):
        r = self.client.get("/api/v1/matches?limit=1", headers=auth(), name="/api/v1/matches")
        if r.status_code != 200:
            return
        items = r.json().get("items") or []
        if not items:
            return
        body = {"match_id": items[0]["id"],
                "infringing_url": "https://example.com/copy/%d" % random.randint(0, 10**9),
                "recipient": {"name": "Hosting Abuse Desk", "email": "abuse@example.com",
                              "address": "1 Example Street", "phone": "+1 555 0100"},
                "signer_name": "Load Test Agent"}
        r = self.client.post("/api/v1/notices", headers=auth(), json=body,
                             name="/api/v1/notices")
        if r.status_code == 201:
            self.notices.append([r.json()["id"], 0])

    def advance_notice(self):
        """Moves one of this user's notices one step along draft -> sent -> acknowledged ->
        removed, reading it and its history first, as someone working the queue does."""
        if not self.notices:
            return
        entry = random.choice(self.notices)
        nid, step = entry
        self.client.get("/api/v1/notices/%s?format=text" % nid, headers=auth(),
                        name="/api/v1/notices/{id}")
        self.client.get("/api/v1/notices/%s/events" % nid, headers=auth(),
                        name="/api/v1/notices/{id}/events")
        flow = ["sent", "acknowledged", "removed"]
        if step >= len(flow):
            self.notices.remove(entry)
            return
        r = self.client.post("/api/v1/notices/%s/status" % nid, headers=auth(),
                             json={"status": flow[step], "note": "load test"},
                             name="/api/v1/notices/{id}/status")
        if r.status_code == 200:
            entry[1] = step + 1


class DesktopUser(_WebUser):
    """A creator or agency member at a desk: full pages, uploads large photos, works notices."""

    weight = 2
    wait_time = between(1.0, 3.0)
    page = 50
    images = ["M", "L"]

    @task(4)
    def dashboard(self):
        self.dashboard_view()

    @task(2)
    def analysis(self):
        self.check_image()

    @task(1)
    def add_work(self):
        self.upload_work()

    @task(1)
    def edit_profile(self):
        if self.profile_id:
            self.client.patch("/api/v1/profiles/" + self.profile_id, headers=auth(),
                              json={"notes": "updated %d" % random.randint(0, 10**6)},
                              name="/api/v1/profiles/{id}")

    @task(2)
    def references(self):
        if self.profile_id:
            self.client.get("/api/v1/profiles/%s/references" % self.profile_id, headers=auth(),
                            name="/api/v1/profiles/{id}/references")

    @task(1)
    def dmca_draft(self):
        self.draft_notice()

    @task(2)
    def dmca_work(self):
        self.advance_notice()


class MobileUser(_WebUser):
    """The same person on a phone: short lists, small photos from the camera roll, quick checks
    of a notice's status, longer pauses between screens."""

    weight = 2
    wait_time = between(2.0, 6.0)
    page = 10
    images = ["S"]

    @task(5)
    def dashboard(self):
        self.dashboard_view()

    @task(2)
    def analysis(self):
        self.check_image()

    @task(1)
    def read_profile(self):
        if self.profile_id:
            self.client.get("/api/v1/profiles/" + self.profile_id, headers=auth(),
                            name="/api/v1/profiles/{id}")

    @task(1)
    def dmca_draft(self):
        self.draft_notice()

    @task(1)
    def dmca_work(self):
        self.advance_notice()


class AdminUser(HttpUser):
    """The operator: the ops dashboard (/dashboard and the JSON it polls), SLA and alerts,
    tenants, health and /metrics. With VIGIL_ADMIN_KEY unset only the public routes are used."""

    weight = 1
    wait_time = between(2.0, 5.0)

    def admin(self):
        return {"Authorization": "Bearer " + ADMIN_KEY}

    @task(1)
    def dashboard_page(self):
        self.client.get("/dashboard", name="/dashboard")

    @task(4)
    def dashboard_poll(self):
        """One refresh of the dashboard: what the page fetches every few seconds."""
        self.client.get("/api/v1/health", name="/api/v1/health")
        if not ADMIN_KEY:
            return
        for path in ("/api/v1/metrics/performance", "/api/v1/metrics/sla", "/api/v1/alerts",
                     "/api/v1/ops/actions"):
            self.client.get(path, headers=self.admin(), name=path)

    @task(1)
    def tenants(self):
        if ADMIN_KEY:
            self.client.get("/api/v1/tenants", headers=self.admin(), name="/api/v1/tenants")

    @task(2)
    def metrics(self):
        self.client.get("/metrics", name="/metrics")


class RampShape(LoadTestShape):
    """Linear ramp to USERS over RAMP_S seconds, hold, stop at DURATION_S."""

    def tick(self):
        t = self.get_run_time()
        if t >= DURATION_S:
            return None
        if t < RAMP_S:
            users = max(1, int(USERS * t / RAMP_S) + 1)
            return (min(users, USERS), max(1.0, USERS / max(RAMP_S, 1.0)))
        return (USERS, max(1.0, USERS / max(RAMP_S, 1.0)))


def sla_summary(stats):
    """Returns (lines, passed) for the SLA checks over the finished run's stats."""
    lines = []
    ok = True
    total = stats.total
    header = "%-44s %8s %8s %9s %9s  %s" % ("request", "count", "fails", "p50 ms", "p95 ms",
                                           "SLA")
    lines.append(header)
    lines.append("-" * len(header))
    for (name, method), e in sorted(stats.entries.items()):
        if e.num_requests == 0:
            continue
        label = "%s %s" % (method, name)
        limit = SLA_ANALYZE_P95_MS if is_analysis(name, method) else SLA_API_P95_MS
        p95 = e.get_response_time_percentile(0.95) or 0
        p50 = e.get_response_time_percentile(0.50) or 0
        good = p95 < limit
        ok = ok and good
        lines.append("%-44s %8d %8d %9.0f %9.0f  %s (P95 < %.0f ms)" % (
            label[:44], e.num_requests, e.num_failures, p50, p95, "pass" if good else "FAIL",
            limit))
    err_pct = 100.0 * total.fail_ratio
    good = total.num_requests > 0 and err_pct < SLA_ERROR_PCT
    ok = ok and good
    lines.append("-" * len(header))
    lines.append("%d requests, %d failures: error rate %.2f %% (SLA < %.1f %%): %s" % (
        total.num_requests, total.num_failures, err_pct, SLA_ERROR_PCT,
        "pass" if good else "FAIL"))
    if total.num_requests == 0:
        lines.append("no request was made: FAIL")
    lines.append("SLA: %s" % ("PASS" if ok else "FAIL"))
    return lines, ok


def server_sla_lines(host):
    """The server's own view (GET /api/v1/metrics/sla, last hour) beside the client's, when the
    admin key is known: the two disagree only by network time and by what the server never saw
    (refused connections). Informational; the pass/fail above is the client's."""
    if not ADMIN_KEY or not host:
        return []
    import urllib.request
    try:
        req = urllib.request.Request(host.rstrip("/") + "/api/v1/metrics/sla",
                                     headers={"Authorization": "Bearer " + ADMIN_KEY})
        with urllib.request.urlopen(req, timeout=5) as r:
            doc = json.load(r)
    except Exception as e:  # noqa: BLE001 - a missing endpoint must not fail the run
        return ["server SLA view unavailable: %s" % e]
    out = ["server's SLA view (last hour):"]
    for name, o in sorted((doc.get("windows") or {}).get("1h", {}).items()):
        if not isinstance(o, dict):
            continue
        comp = o.get("compliance")
        out.append("  %-18s compliance %s  budget left %s  burn rate %s  %s" % (
            name, "n/a" if comp is None else "%.4f" % comp,
            o.get("error_budget_remaining"), o.get("burn_rate"),
            "met" if o.get("met") else "NOT met"))
    return out


@events.quitting.add_listener
def _print_sla(environment, **_kwargs):
    lines, ok = sla_summary(environment.stats)
    lines += server_sla_lines(environment.host)
    print("\n=== Vigil SLA summary ===")
    print("\n".join(lines))
    summary_path = os.environ.get("VIGIL_SLA_JSON")
    if summary_path:
        with open(summary_path, "w") as f:
            json.dump({"passed": ok, "lines": lines}, f, indent=1)
    if not ok:
        environment.process_exit_code = 1
