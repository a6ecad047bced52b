#!/usr/bin/env python3
"""The README's "Five minutes with curl" walkthrough, run as written against a real server.

Starts `vigil serve` on a free loopback port with a throwaway data directory, takes the sh blocks
of that README section verbatim, changes only the two placeholders a reader fills in (the URL's
port and the admin key printed at first start), and runs them with bash from the repository root.
A `curl` shell function in front of the real one records every exchange (arguments, status, body)
without changing what the commands see. Then each answer is checked:

- every request answers 2xx, except where its README line ends with a comment naming the status
  (`# 409`), which must then be that status;
- the numbers the README's prose promises (PDQ distance and confidence of the resized copy, the
  face descriptor distance of the second photo) are the numbers the server answered;
- the evidence, notice and operations steps answer what the text says they do.

Usage: readme_walkthrough.py --vigil PATH [--repo DIR] [--pg]   (exit 0 pass, 1 fail, one line per failure)
       readme_walkthrough.py --url URL --admin-key KEY [--repo DIR]
                             (against a running server or cluster, e.g. nginx of `make cluster`)

With --pg the server keeps its store in a fresh database on the PostgreSQL server that
VIGIL_TEST_PG_URL names (scripts/pg-tmp.sh, `make test`), through VIGIL_DATABASE; without that
variable it says SKIPPED and passes.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
import vgt_server  # noqa: E402

SECTION = "## Five minutes with curl"
URL_LINE = "U=http://127.0.0.1:8080"
KEY_RE = re.compile(r"^ADMIN=va_\.\.\.(\s.*)?$")

# Bash in front of the README: records each curl exchange as files in $WALK_LOG, in time order.
PRELUDE = r'''
set -u
curl() {
  # Named by time and process: calls inside $(...) run in subshells, so no shared counter.
  local f="$WALK_LOG/$(date +%s%N)-$BASHPID"
  printf '%s\n' "${BASH_LINENO[0]}" > "$f.line"
  printf '%s\n' "$@" > "$f.args"
  command curl -o "$f.body" -w '%{http_code}' "$@" > "$f.code"
  local rc=$?
  echo "$rc" > "$f.rc"
  cat "$f.body"
  return $rc
}
'''


def fail(msg):
    print("readme_walkthrough: FAIL: " + msg, file=sys.stderr)
    return 1


def section_blocks(readme):
    text = open(readme, encoding="utf-8").read()
    start = text.find("\n" + SECTION + "\n")
    if start < 0:
        raise SystemExit("readme_walkthrough: README has no '%s' section" % SECTION)
    end = text.find("\n## ", start + len(SECTION) + 2)
    sec = text[start:end if end > 0 else len(text)]
    blocks = re.findall(r"```sh\n(.*?)```", sec, re.S)
    prose = re.sub(r"```sh\n.*?```", "", sec, flags=re.S)
    return blocks, prose


def exchanges(logdir):
    out = []
    for name in sorted(os.listdir(logdir)):
        if not name.endswith(".args"):
            continue
        base = os.path.join(logdir, name[:-5])
        args = open(base + ".args").read().splitlines()
        code = open(base + ".code").read().strip() if os.path.exists(base + ".code") else ""
        body = open(base + ".body", "rb").read() if os.path.exists(base + ".body") else b""
        line = int(open(base + ".line").read().strip())
        out.append({"args": args, "code": int(code) if code.isdigit() else 0, "body": body,
                    "line": line})
    return out


def url_of(x):
    for a in x["args"]:
        if a.startswith("http://") or a.startswith("$U") or "/api/v1" in a or a.endswith("/metrics"):
            return a
    return ""


def body_json(x):
    try:
        return json.loads(x["body"].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def logical_commands(lines):
    """Maps each script line number (1-based) to the status named by a trailing `# NNN` comment
    anywhere in the logical command it belongs to (backslash continuations), and lists the line
    numbers where a curl command starts."""
    expect, curl_lines = {}, []
    i = 0
    while i < len(lines):
        j = i
        while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
        group = lines[i:j + 1]
        code = None
        for line in group:
            m = re.search(r"#\s*(\d{3})\b", line)
            if m and code is None:
                code = int(m.group(1))
        for k in range(i, j + 1):
            expect[k + 1] = code
            if re.search(r"(?<![\w-])curl\s", lines[k].split("#", 1)[0]):
                curl_lines.append(k + 1)
        i = j + 1
    return expect, curl_lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil")
    ap.add_argument("--url")
    ap.add_argument("--admin-key")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--pg", action="store_true", help="store in PostgreSQL (VIGIL_TEST_PG_URL)")
    a = ap.parse_args()
    if not a.vigil and not (a.url and a.admin_key):
        ap.error("--vigil, or --url with --admin-key")
    if a.pg:
        base = os.environ.get("VIGIL_TEST_PG_URL", "")
        if not base:
            print("readme_walkthrough --pg: SKIPPED: no VIGIL_TEST_PG_URL")
            return 0
        db = "walk_%d" % os.getpid()
        subprocess.run(["psql", base, "-qc", "CREATE DATABASE " + db], check=True)
        os.environ["VIGIL_DATABASE"] = base.rsplit("/", 1)[0] + "/" + db
        try:
            return walk(a)
        finally:
            os.environ.pop("VIGIL_DATABASE", None)
            subprocess.run(["psql", base, "-qc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db])
    return walk(a)


def walk(a):
    blocks, prose = section_blocks(os.path.join(a.repo, "README.md"))
    script = "\n".join(blocks)
    if script.count(URL_LINE) != 1:
        return fail("README walkthrough must set %s exactly once" % URL_LINE)
    if sum(1 for line in script.splitlines() if KEY_RE.match(line)) != 1:
        return fail("README walkthrough must set ADMIN=va_... exactly once")

    tmp = tempfile.mkdtemp(prefix="vigil-readme.")
    logdir = os.path.join(tmp, "log")
    os.mkdir(logdir)
    if a.url:
        proc, url, key = None, a.url, a.admin_key
    else:
        proc, url, key = vgt_server.start(a.vigil, os.path.join(tmp, "data"),
                                          who="readme_walkthrough")
    errors = []
    try:
        lines = []
        for line in script.splitlines():
            if line == URL_LINE:
                line = "U=" + url
            elif KEY_RE.match(line):
                line = "ADMIN=" + key
            lines.append(line)
        env = dict(os.environ, WALK_LOG=logdir)
        body = "\n".join(lines)
        offset = PRELUDE.count("\n")
        r = subprocess.run(["bash", "-c", PRELUDE + body], cwd=a.repo, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if r.stderr.strip():
            errors.append("the walkthrough wrote to stderr: " + r.stderr.strip()[:400])
        xs = exchanges(logdir)
        expect, curl_lines = logical_commands(lines)
        ran = set(x["line"] - offset for x in xs)
        for ln in curl_lines:
            if not any(abs(ln - r_) <= 3 for r_ in ran):
                errors.append("README line '%s' sent no request" % lines[ln - 1].strip()[:80])
        for i, x in enumerate(xs):
            want = expect.get(x["line"] - offset)
            ok = (x["code"] == want) if want else 200 <= x["code"] < 300
            if not ok:
                errors.append("request %d (%s) answered %d, README expects %s: %s" % (
                    i + 1, url_of(x), x["code"], want or "2xx", x["body"][:200]))
        errors += check_claims(xs, prose)
    finally:
        if proc and not vgt_server.stop(proc):
            errors.append("vigil serve did not stop within 30 s of SIGTERM")
        shutil.rmtree(tmp, ignore_errors=True)
    for e in errors:
        fail(e)
    if errors:
        return 1
    print("readme_walkthrough: %d requests as written in README.md, every answer as it says" % len(xs))
    return 0


def check_claims(xs, prose):
    errs = []
    analyses = [x for x in xs if url_of(x).endswith("/api/v1/analyze")]
    if len(analyses) != 2:
        return ["expected the two /analyze calls of step 4, found %d" % len(analyses)]
    m = re.search(r"Hamming distance (\d+) of 256, confidence ([0-9.]+)", prose)
    if not m:
        errs.append("README prose no longer states the PDQ distance and confidence")
    else:
        dist, conf = int(m.group(1)), m.group(2)
        j = body_json(analyses[0]) or {}
        pdq = [mm for mm in j.get("matches", []) if mm.get("kind") == "pdq"]
        if not pdq:
            errs.append("first analysis has no pdq match: %s" % analyses[0]["body"][:300])
        else:
            got_d, got_c = pdq[0].get("distance"), pdq[0].get("confidence")
            if got_d is None or int(got_d) != dist:
                errs.append("README says PDQ distance %d, the server answered %s" % (dist, got_d))
            if got_c is None or "%.*f" % (len(conf.split(".")[1]), got_c) != conf:
                errs.append("README says confidence %s, the server answered %s" % (conf, got_c))
    m = re.search(r"descriptor distance ~([0-9.]+)", prose)
    if not m:
        errs.append("README prose no longer states the face descriptor distance")
    else:
        claimed = float(m.group(1))
        j = body_json(analyses[1]) or {}
        face = [mm for mm in j.get("matches", []) if mm.get("kind") == "face"]
        if not face:
            errs.append("second analysis has no face match: %s" % analyses[1]["body"][:300])
        elif abs(face[0].get("distance", 9) - claimed) > 0.005 + 10 ** -len(m.group(1).split(".")[1]):
            errs.append("README says face distance ~%s, the server answered %s" % (
                m.group(1), face[0].get("distance")))
    lists = [x for x in xs if "/api/v1/matches?kind=pdq" in url_of(x)]
    if not lists or not (body_json(lists[0]) or {}).get("items"):
        errs.append("the pdq match was not listed as stored evidence")
    texts = [x for x in xs if "format=text" in url_of(x)]
    if not texts or b"512(c)" not in texts[0]["body"] and b"DMCA" not in texts[0]["body"]:
        errs.append("the notice text is not a DMCA notice")
    events = [x for x in xs if url_of(x).endswith("/events")]
    if events:
        items = (body_json(events[0]) or {}).get("events", [])
        statuses = [e.get("to") for e in items]
        for s in ("sent", "acknowledged", "removed"):
            if s not in statuses:
                errs.append("notice history lacks '%s': %s" % (s, events[0]["body"][:300]))
    else:
        errs.append("no notice events request")
    metrics = [x for x in xs if url_of(x).endswith("/metrics")]
    if not metrics or b"# TYPE" not in metrics[0]["body"]:
        errs.append("/metrics did not answer Prometheus text")
    return errs


if __name__ == "__main__":
    sys.exit(main())
