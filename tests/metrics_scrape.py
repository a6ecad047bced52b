#!/usr/bin/env python3
"""/metrics of a live server after real work, checked by promtool and against what we ship.

Starts `vigil serve` (tenant quota 1 image, so a burst of distinct uncached images meets 429),
drives it over HTTP: a tenant, a key, a profile, a reference, analyses at two levels (each image
twice, so the second answer is an L1 hit), a face image, and bursts until one analysis answers
429. Then scrapes /metrics and checks:

- `promtool check metrics` accepts the scrape (format and Prometheus naming lints);
- every family docs/OPERATIONS.md promises for the modules is there (FAMILIES below), and the
  work shows in it: L1 hits, stage times at both levels, model inference, index sizes, store
  query latency, and the 429s counted as tenant_quota rejections, as many as the client saw;
- every metric named in deploy/grafana/vigil.json (parsed as JSON) and in
  deploy/prometheus/vigil-rules.yml exists in the scrape, so the dashboard and rules never
  query a name the server does not export.

Usage: metrics_scrape.py --vigil PATH --repo DIR   (exit 0 pass, 1 fail, one line per failure)
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

# Families the metrics helper exports from each module (section "## Metrics" of OPERATIONS.md).
FAMILIES = {
    "cache": ["vigil_cache_hits_total", "vigil_cache_misses_total", "vigil_cache_errors_total",
              "vigil_cache_corrupt_total", "vigil_cache_evictions_total", "vigil_cache_puts_total",
              "vigil_cache_dropped_writes_total", "vigil_cache_entries", "vigil_cache_bytes",
              "vigil_cache_tier_enabled", "vigil_cache_lookup_duration_seconds",
              "vigil_cache_l3_breaker_state", "vigil_cache_l3_breaker_opens_total",
              "vigil_cache_l3_reconnects_total", "vigil_cache_async_pending"],
    "scheduler": ["vigil_sched_queue_depth", "vigil_sched_admitted_total",
                  "vigil_sched_rejected_total", "vigil_sched_expired_total",
                  "vigil_sched_completed_total", "vigil_sched_batch_size",
                  "vigil_sched_batch_wait_seconds", "vigil_sched_preferred_batch_size"],
    "replicas": ["vigil_replicas", "vigil_replicas_min", "vigil_replicas_max",
                 "vigil_replicas_busy", "vigil_replica_errors_total"],
    "analysis": ["vigil_analysis_stage_duration_seconds", "vigil_analysis_requests_total",
                 "vigil_analysis_queue_depth"],
    "models": ["vigil_model_inference_duration_seconds", "vigil_model_inference_items_total"],
    "index": ["vigil_index_references", "vigil_index_pdq_hashes", "vigil_index_face_descriptors",
              "vigil_index_profiles", "vigil_index_tenants", "vigil_index_dead_entries",
              "vigil_index_memory_bytes", "vigil_index_searches_total",
              "vigil_index_search_duration_seconds"],
    "store": ["vigil_store_query_duration_seconds", "vigil_store_busy_retries_total",
              "vigil_store_commits_total", "vigil_store_queries_total", "vigil_store_errors_total",
              "vigil_store_txn_retries_total", "vigil_store_reconnects_total"],
    "http": ["vigil_http_requests_total", "vigil_http_request_duration_seconds"],
}

failures = []


def fail(msg):
    failures.append(msg)
    print("metrics_scrape: FAIL: " + msg, file=sys.stderr)


def call(url, method="GET", key=None, body=None, ctype=None):
    return vgt_server.call(url, key, method, body, ctype, timeout=60)


def post_json(url, key, obj):
    code, body = call(url, "POST", key, json.dumps(obj).encode(), "application/json")
    if code // 100 != 2:
        raise SystemExit("metrics_scrape: %s answered %d: %s" % (url, code, body[:200]))
    return json.loads(body)


def analyze(base, key, path, level):
    ctype = "image/png" if path.endswith(".png") else "image/jpeg"
    with open(path, "rb") as f:
        data = f.read()
    return call("%s/api/v1/analyze?level=%s" % (base, level), "POST", key, data, ctype)[0]


def parse(text):
    """{family: {"type": t, "samples": [(name, labels dict, value)]}} from exposition text."""
    fams, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams.setdefault(m.group(1), {"type": m.group(2), "samples": []})
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m:
            continue
        name, labels = m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) == "histogram":
                fam = name[: -len(suf)]
        fams.setdefault(fam, {"type": "untyped", "samples": []})["samples"].append(
            (name, labels, float(m.group(4))))
    return fams


def value(fams, name, **labels):
    fam = name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and name[: -len(suf)] in fams:
            fam = name[: -len(suf)]
    return sum(v for n, l, v in fams.get(fam, {}).get("samples", [])
               if n == name and all(l.get(k) == w for k, w in labels.items()))


# PromQL words that are not metric names.
PROMQL_WORDS = {"sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "le",
                "avg", "max", "min", "count", "on", "ignoring", "group_left", "group_right",
                "and", "or", "unless", "bool", "clamp_min", "clamp_max", "abs", "vector",
                "scalar", "time", "offset", "avg_over_time", "max_over_time", "min_over_time",
                "label_replace", "topk", "bottomk", "delta", "deriv", "absent", "changes",
                "resets", "sort", "sort_desc", "quantile", "stddev", "round", "ceil", "floor"}


def metric_names(expr):
    """Metric names an expression reads: identifiers outside strings, label matchers and range
    brackets that look like Vigil or process metrics; recording-rule names (with ':') kept apart."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e)) - PROMQL_WORDS
    return {n for n in names if n.startswith(("vigil_", "process_", "vigil:"))}


def base_family(name, fams):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and name[: -len(suf)] in fams:
            return name[: -len(suf)]
    return name


def check_exprs(where, exprs, fams, recorded):
    for expr in exprs:
        for n in metric_names(expr):
            if ":" in n:
                if n not in recorded:
                    fail("%s: %r reads recording rule %s, which vigil-rules.yml does not define"
                         % (where, expr[:80], n))
            elif base_family(n, fams) not in fams:
                fail("%s: %r reads %s, which /metrics does not export" % (where, expr[:80], n))


def grafana_exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "query") and isinstance(v, str):
                yield v
            else:
                yield from grafana_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from grafana_exprs(v)


def rules_exprs(path):
    """(exprs, recorded names) from the rules YAML without a YAML library: `expr:` values
    (single line or a `|`/`>` block) and `record:` names."""
    exprs, recorded, lines = [], set(), open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:- )?(expr|record):\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, kind, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        if kind == "record":
            recorded.add(rest.strip("'\""))
            i += 1
            continue
        if rest in ("|", ">", "|-", ">-"):
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            exprs.append(" ".join(block))
        else:
            exprs.append(rest.strip("'\""))
            i += 1
    return exprs, recorded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    a = ap.parse_args()
    repo = os.path.abspath(a.repo)
    if not os.access(a.promtool, os.X_OK) and not shutil.which(a.promtool):
        print("metrics_scrape: FAIL: promtool not found (Debian package prometheus; "
              "scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="vigil-metrics-")
    p = None
    try:
        p, base, admin = vgt_server.start(
            a.vigil, os.path.join(tmp, "data"),
            ["--models-dir", os.path.join(repo, "models"), "--tenant-max-analyses", "1",
             "--log-level", "warn"], who="metrics_scrape")
        t = post_json(base + "/api/v1/tenants", admin, {"name": "Metrics", "kind": "agency"})
        key = post_json(base + "/api/v1/tenants/%s/keys" % t["id"], admin, {"name": "m"})["key"]
        prof = post_json(base + "/api/v1/profiles", key,
                         {"name": "Ada", "legal_name": "Ada Ltd", "email": "a@example.com",
                          "address": "1 Main St"})
        with open(os.path.join(repo, "samples", "bridge.jpg"), "rb") as f:
            code, body = call("%s/api/v1/profiles/%s/references?kind=work" % (base, prof["id"]),
                              "POST", key, f.read(), "image/jpeg")
        if code != 201:
            fail("reference upload answered %d: %s" % (code, body[:200]))
        samples = os.path.join(repo, "samples")
        for level in ("speed", "balanced"):
            for _ in range(2):  # the second is an L1 hit
                for img in ("bridge-small.jpg", "person-a2.png"):
                    c = analyze(base, key, os.path.join(samples, img), level)
                    if c // 100 != 2:
                        fail("analysis of %s at %s answered %d" % (img, level, c))
        # Bursts of distinct uncached images: with a quota of 1, concurrent ones answer 429.
        imgs = sorted(os.path.join(repo, "tests", "data", "faces", "images", n)
                      for n in os.listdir(os.path.join(repo, "tests", "data", "faces", "images"))
                      if n.endswith(".png"))[:8]
        seen429 = 0
        for level in ("speed", "accuracy", "memory"):
            with concurrent.futures.ThreadPoolExecutor(len(imgs)) as ex:
                codes = list(ex.map(lambda pth, lv=level: analyze(base, key, pth, lv), imgs))
            seen429 += codes.count(429)
            if any(c // 100 != 2 and c != 429 for c in codes):
                fail("burst answers %s: only 2xx and 429 expected" % codes)
            if seen429:
                break
        code, text = call(base + "/metrics")
        if code != 200:
            fail("/metrics answered %d" % code)
        text = text.decode()
        with open(os.path.join(tmp, "scrape.txt"), "w") as f:
            f.write(text)

        pr = subprocess.run([a.promtool, "check", "metrics"], input=text, text=True,
                            capture_output=True)
        if pr.returncode != 0:
            fail("promtool check metrics: %s%s" % (pr.stdout.strip(), pr.stderr.strip()))

        fams = parse(text)
        for module, names in FAMILIES.items():
            for n in names:
                if n not in fams:
                    fail("%s: family %s missing from /metrics" % (module, n))
        if value(fams, "vigil_cache_hits_total", tier="l1") < 4:
            fail("expected at least 4 L1 hits, got %g" % value(fams, "vigil_cache_hits_total",
                                                                tier="l1"))
        if value(fams, "vigil_cache_lookup_duration_seconds_count", tier="l1") < 4:
            fail("L1 lookup latency histogram is empty")
        for level in ("speed", "balanced"):
            for stage in ("cache", "decode", "pdq", "detect", "match", "store", "total"):
                if value(fams, "vigil_analysis_stage_duration_seconds_count", stage=stage,
                         level=level) < 1:
                    fail("no %s stage observed at level %s" % (stage, level))
        if value(fams, "vigil_model_inference_items_total") < 1:
            fail("no model inference counted")
        if value(fams, "vigil_model_inference_duration_seconds_count", network="recognition") < 1:
            fail("no recognition network call observed")
        if value(fams, "vigil_index_pdq_hashes") < 1:
            fail("index holds no PDQ hash after a reference upload")
        if value(fams, "vigil_index_search_duration_seconds_count", kind="pdq") < 1:
            fail("no PDQ search latency observed")
        if value(fams, "vigil_store_query_duration_seconds_count") < 1:
            fail("no store query latency observed")
        if value(fams, "vigil_sched_batch_size_count", kind="image") < 1:
            fail("no inference batch observed")
        if value(fams, "vigil_replicas") < 1 or value(fams, "vigil_replicas_max") < 1:
            fail("replica gauges are zero")
        quota = value(fams, "vigil_sched_rejected_total", kind="image", reason="tenant_quota")
        if quota != seen429:
            fail("client saw %d answers 429, vigil_sched_rejected_total{reason=tenant_quota} "
                 "says %g" % (seen429, quota))
        if not seen429:
            print("metrics_scrape: note: no burst met the tenant quota; 429 accounting unchecked")

        # The dashboard and the rules read only what is exported.
        rules = os.path.join(repo, "deploy", "prometheus", "vigil-rules.yml")
        rexprs, recorded = rules_exprs(rules)
        if len(rexprs) < 10:
            fail("found only %d expr in %s" % (len(rexprs), rules))
        check_exprs("vigil-rules.yml", rexprs, fams, recorded)
        with open(os.path.join(repo, "deploy", "grafana", "vigil.json"), encoding="utf-8") as f:
            dash = json.load(f)
        gexprs = list(grafana_exprs(dash.get("panels", [])))
        if len(gexprs) < 10:
            fail("vigil.json has only %d PromQL expressions" % len(gexprs))
        check_exprs("vigil.json", gexprs, fams, recorded)
    finally:
        if p is not None:
            vgt_server.stop(p)
        if failures:
            print("metrics_scrape: scrape kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not failures:
        print("metrics_scrape: PASS (%d families)" % len(fams))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
