"""End to end: video over the API of a real `vigil serve` (docs/VIDEO.md, "API").

Uploads a protected video (a reference of kind work), analyses an edit of it (a direct answer
with a match, both percentages and segments), an unrelated video (no match) and a disallowed
container (422 naming it); then, with a small --video-sync-max-s, analyses a longer video as a
job (202 + Location, polled to done, its completion callback received, its match in
GET /api/v1/matches with the video fields); then holds a job in `running`
(--fault-video-job-delay-ms), kill -9s the server, restarts it on the same data directory and
polls the job to its end: done after a second attempt, never stuck. No timing assertions.

Usage: it_video.py --vigil PATH --repo DIR   (exit 0 pass, 1 fail, one line per failure)
"""
import argparse
import http.server
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

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)
    return cond


def call(url, key, method="GET", body=None, ctype=None):
    return vgt_server.call(url, key, method, body, ctype, timeout=120, headers=True)


def jcall(url, key, method="GET", body=None, ctype=None):
    st, h, b = call(url, key, method, body, ctype)
    try:
        return st, h, json.loads(b) if b else None
    except ValueError:
        return st, h, None


def poll_job(url, key, job_id, want=("done", "failed"), timeout_s=120):
    deadline = time.time() + timeout_s
    j = None
    while time.time() < deadline:
        st, _, j = jcall(url + "/api/v1/jobs/" + job_id, key)
        if st != 200:
            return st, j
        if j["state"] in want:
            return st, j
        time.sleep(0.1)
    return 0, j


def read_any(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


def ffmpeg_frame(tmp, video, at_s):
    """One frame of video at at_s seconds, as PNG bytes (a thumbnail, a screenshot)."""
    out = os.path.join(tmp, "frame-%s-%d.png" % (os.path.basename(video), at_s))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(at_s), "-i", video, "-frames:v",
                    "1", out], check=True)
    return read_any(out)


def ffmpeg_still(tmp, image, seconds):
    """A video that shows image for seconds (H.264 in MP4), as bytes."""
    out = os.path.join(tmp, "still-%s-%d.mp4" % (os.path.basename(image), seconds))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", image, "-t", str(seconds),
                    "-r", "25", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", out], check=True)
    return read_any(out)


class Hook(http.server.BaseHTTPRequestHandler):
    got = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        Hook.got.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(__file__), ".."))
    a = ap.parse_args()
    vd = os.path.join(a.repo, "tests", "data", "vpdq")

    def read(*p):
        with open(os.path.join(vd, *p), "rb") as f:
            return f.read()
    orig = read("videos", "chair-orig-22-sd-bar.mp4")
    edit = read("videos", "chair-20-sd-bar.mp4")
    edit2 = read("videos", "chair-22-sd-grey-bar.mp4")
    other = read("videos", "doorknob-hd-no-bar.mp4")
    logo = read("videos", "chair-22-with-large-logo-bar.mp4")
    avi = read("fixtures", "h264-in-avi.avi")

    tmp = tempfile.mkdtemp(prefix="it_video.")
    data = os.path.join(tmp, "data")
    base = ("--faces", "false")
    proc = None
    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = "http://127.0.0.1:%d/done" % hook.server_address[1]
    try:
        # 1. direct answers: every chair video is under 60 s
        proc, url, admin = vgt_server.start(a.vigil, data, base + ("--video-sync-max-s", "60"),
                                            who="it_video")
        st, _, t = jcall(url + "/api/v1/tenants", admin, "POST",
                         json.dumps({"name": "Studio", "kind": "creator"}).encode(),
                         "application/json")
        check(st == 201, "tenant create answered %d" % st)
        st, _, k = jcall(url + "/api/v1/tenants/%s/keys" % t["id"], admin, "POST",
                         json.dumps({"name": "k"}).encode(), "application/json")
        key = k["key"]
        st, _, p = jcall(url + "/api/v1/profiles", key, "POST",
                         json.dumps({"name": "Chair Films", "email": "legal@chair.example"})
                         .encode(), "application/json")
        pid = p["id"]
        st, _, ref = jcall(url + "/api/v1/profiles/%s/references?kind=work&title=Chair" % pid, key,
                           "POST", orig, "video/mp4")
        check(st == 201, "video reference upload answered %d %s" % (st, ref))
        check(ref and ref.get("media") == "video" and ref["video"]["frames"] > 0,
              "reference has no video fields: %s" % ref)
        rid = ref["id"] if ref else ""
        # a protected photo, for video -> photo below
        photo_path = os.path.join(a.repo, "tests", "data", "pdq", "reg-test-input",
                                  "pen-and-coaster.png")
        st, _, pref = jcall(url + "/api/v1/profiles/%s/references?kind=work&title=Pen" % pid,
                            key, "POST", read_any(photo_path), "image/png")
        check(st == 201, "photo reference upload answered %d %s" % (st, pref))
        prid = pref["id"] if pref else ""

        st, _, r = jcall(url + "/api/v1/analyze?source_url=https://tube.example/v/1", key, "POST",
                         edit, "application/octet-stream")
        check(st == 201, "edit analysis answered %d %s" % (st, r))
        ms = (r or {}).get("matches", [])
        check(len(ms) == 1 and ms[0]["reference_id"] == rid, "edit did not match: %s" % ms)
        if ms:
            m = ms[0]
            check(m.get("compared_match_percent", 0) >= 80 and "query_match_percent" in m,
                  "percentages: %s" % m)
            segs = m.get("segments", [])
            check(len(segs) >= 1 and segs[0]["query_end"] > segs[0]["query_start"] and
                  segs[0]["reference_end"] > segs[0]["reference_start"], "segments: %s" % segs)

        st, _, r = jcall(url + "/api/v1/analyze", key, "POST", other, "video/mp4")
        check(st == 201 and r["matches"] == [], "unrelated video: %d %s" % (st, r))

        # cross-media, video -> photo: a 3 s video of the protected photo shows it from 0 to ~3 s
        still = ffmpeg_still(tmp, photo_path, 3)
        st, _, r = jcall(url + "/api/v1/analyze", key, "POST", still, "video/mp4")
        pm = [m for m in (r or {}).get("matches", []) if m["reference_id"] == prid]
        check(st == 201 and len(pm) == 1 and pm[0].get("reference_media") == "image" and
              pm[0]["kind"] == "pdq", "photo in a video: %d %s" % (st, r))
        if pm:
            segs = pm[0]["segments"]
            check(len(segs) == 1 and segs[0]["query_start"] <= 0.1 and
                  2 <= segs[0]["query_end"] <= 3.1 and pm[0]["distance"] <= 31,
                  "photo in a video, time range: %s" % pm[0])
            st, _, n = jcall(url + "/api/v1/notices", key, "POST", json.dumps(
                {"match_id": pm[0]["match_id"], "infringing_url": "https://tube.example/v/9",
                 "recipient": {"name": "Tube Inc."}}).encode(), "application/json")
            st, _, n = jcall(url + "/api/v1/notices/" + (n or {}).get("id", "x"), key)
            text = " ".join(((n or {}).get("text") or "").split())
            check(st == 200 and "protected image is shown in the infringing video" in text and
                  "from 0:00 to 0:0" in text, "photo in a video notice: %d %s" % (st, text))

        # cross-media, photo -> video: a frame grab at 10 s (a thumbnail) is found in the video
        frame = ffmpeg_frame(tmp, os.path.join(vd, "videos", "chair-orig-22-sd-bar.mp4"), 10)
        st, _, r = jcall(url + "/api/v1/analyze", key, "POST", frame, "image/png")
        vf = [m for m in (r or {}).get("matches", []) if m.get("mechanism") == "video_frame"]
        check(st == 201 and len(vf) == 1 and vf[0]["reference_id"] == rid and
              vf[0]["kind"] == "pdq", "frame grab: %d %s" % (st, r))
        if vf:
            ts = [f["timestamp"] for f in vf[0]["video_frames"]]
            check(vf[0]["video_frames_matched"] >= 1 and abs(ts[0] - 10) <= 1.5,
                  "frame grab timestamps: %s" % vf[0])
            st, _, n = jcall(url + "/api/v1/notices", key, "POST", json.dumps(
                {"match_id": vf[0]["match_id"], "infringing_url": "https://img.example/t.png",
                 "recipient": {"name": "Img Inc."}}).encode(), "application/json")
            st, _, n = jcall(url + "/api/v1/notices/" + (n or {}).get("id", "x"), key)
            text = " ".join(((n or {}).get("text") or "").split())
            check(st == 200 and "is a frame of the protected video" in text and
                  "protected video at 0:1" in text, "frame grab notice: %d %s" % (st, text))
            st, _, mm = jcall(url + "/api/v1/matches/" + vf[0]["match_id"], key)
            check(st == 200 and mm.get("mechanism") == "video_frame" and
                  mm.get("video_frames"), "frame grab evidence: %d %s" % (st, mm))
        # an unrelated photo, and a frame of an unrelated video, match no video
        for name, img in (("astronaut", read_any(a.repo, "tests", "data", "faces", "images",
                                                 "astronaut.png")),
                          ("doorknob frame", ffmpeg_frame(tmp, os.path.join(
                              vd, "videos", "doorknob-hd-no-bar.mp4"), 3))):
            st, _, r = jcall(url + "/api/v1/analyze", key, "POST", img, "image/png")
            check(st == 201 and not [m for m in r["matches"] if m["reference_id"] == rid],
                  "%s matched the video: %d %s" % (name, st, r))

        st, _, r = jcall(url + "/api/v1/analyze", key, "POST", avi, "video/x-msvideo")
        check(st == 422 and "container" in r["error"]["message"],
              "AVI answered %d %s" % (st, r))
        st, _, r = jcall(url + "/api/v1/analyze", key, "POST", avi, "application/octet-stream")
        check(st == 422 and "container" in r["error"]["message"],
              "sniffed AVI answered %d %s" % (st, r))

        # callback URLs: a non-public address is refused naming the rule (SSRF), a public one
        # is taken
        for cb in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://169.254.169.254/",
                   "http://10.1.2.3/cb", "http://192.168.0.1/", "https://[::1]:8443/",
                   "http://[::ffff:127.0.0.1]/", "http://[fe80::1]/", "http://0.0.0.0/"):
            st, _, r = jcall(url + "/api/v1/analyze?callback_url=" + cb, key, "POST", edit,
                             "video/mp4")
            check(st == 422 and "public address" in r["error"]["message"] and
                  "video_callback_allow_private" in r["error"]["message"],
                  "callback_url %s answered %d %s" % (cb, st, r))
        st, _, r = jcall(url + "/api/v1/analyze?store=false&callback_url=http://93.184.216.34/cb",
                         key, "POST", edit, "video/mp4")
        check(st == 200, "a public callback_url answered %d %s" % (st, r))

        # regions: the large-logo edit meets the original through its halves (issue 12's
        # matrix); with --video-regions false it is hashed whole only and, as under vPDQ's own
        # rule, misses (the reference keeps the regions it was registered with)
        st, _, r = jcall(url + "/api/v1/analyze?store=false", key, "POST", logo, "video/mp4")
        lm = [m for m in (r or {}).get("matches", []) if m["reference_id"] == rid]
        check(st == 200 and len(lm) == 1 and lm[0].get("matched_by", {}).get("half", 0) > 0,
              "large-logo edit with regions: %d %s" % (st, r))
        vgt_server.stop(proc)
        proc, url = vgt_server.restart(a.vigil, data, base + ("--video-regions", "false",
                                                              "--video-sync-max-s", "60"))
        st, _, r = jcall(url + "/api/v1/analyze?store=false", key, "POST", logo, "video/mp4")
        lm = [m for m in (r or {}).get("matches", []) if m["reference_id"] == rid]
        check(st == 200 and lm == [], "large-logo edit, whole frames only: %d %s" % (st, r))
        vgt_server.stop(proc)

        # 2. a job: chair videos are longer than 5 s; the loopback receiver needs the setting
        # that allows non-public callback addresses
        base = base + ("--video-callback-allow-private", "true")
        proc, url = vgt_server.restart(a.vigil, data, base + ("--video-sync-max-s", "5"))
        st, h, j = jcall(url + "/api/v1/analyze?callback_url=" + hook_url, key, "POST", edit2,
                         "video/mp4")
        check(st == 202, "long analysis answered %d %s" % (st, j))
        check(st == 202 and j and j.get("state") in ("queued", "running", "done"),
              "long analysis answered %d %s" % (st, j))
        loc = h.get("Location", "")
        check(j and loc == "/api/v1/jobs/" + j["id"], "Location: %r" % loc)
        st, j = poll_job(url, key, j["id"])
        check(st == 200 and j["state"] == "done", "job ended %d %s" % (st, j))
        res = (j or {}).get("result") or {}
        check(res.get("matches") and res["matches"][0]["reference_id"] == rid and
              res["matches"][0]["segments"], "job result: %s" % res)
        deadline = time.time() + 20
        while time.time() < deadline and not Hook.got:
            time.sleep(0.1)
        check(Hook.got and Hook.got[0]["id"] == j["id"] and Hook.got[0]["state"] == "done",
              "callback: %s" % Hook.got)
        # another tenant cannot read it
        st, _, t2 = jcall(url + "/api/v1/tenants", admin, "POST",
                          json.dumps({"name": "Other", "kind": "agency"}).encode(),
                          "application/json")
        st, _, k2 = jcall(url + "/api/v1/tenants/%s/keys" % t2["id"], admin, "POST",
                          json.dumps({"name": "k"}).encode(), "application/json")
        st, _, _ = jcall(url + "/api/v1/jobs/" + j["id"], k2["key"])
        check(st == 404, "another tenant's job answered %d" % st)
        # evidence: the matches list shows the video fields
        st, _, ml = jcall(url + "/api/v1/matches", key)
        vm = [m for m in ml["items"] if m.get("media") == "video" and
              m.get("reference_media") != "image"]
        check(len(vm) >= 2 and all(m["segments"] and "compared_match_percent" in m for m in vm),
              "matches list: %s" % ml["items"])
        # a DMCA notice describes it with its time ranges
        if vm:
            st, _, n = jcall(url + "/api/v1/notices", key, "POST", json.dumps(
                {"match_id": vm[0]["id"], "infringing_url": "https://tube.example/v/1",
                 "recipient": {"name": "Tube Inc."}}).encode(), "application/json")
            check(st == 201, "notice create answered %d %s" % (st, n))
            st, _, n = jcall(url + "/api/v1/notices/" + (n or {}).get("id", "x"), key)
            text = " ".join(((n or {}).get("text") or "").split())
            check(st == 200 and "video match by vPDQ" in text and
                  "of the infringing video shows 0:" in text, "notice text: %d %s" % (st, text))
        vgt_server.stop(proc)

        # 3. kill -9 while a job runs on node "a"; node "b" (another node id on the same data
        # directory and database) takes it over once a's lease has run out (at its start or at
        # a heartbeat) and runs it to done, on a second attempt, counted as a takeover. Its
        # loopback callback, taken while non-public callbacks were allowed, is refused when it
        # connects after a restart without the setting (the check at connect time, as for DNS
        # rebinding)
        lease = ("--video-job-lease", "1s")
        proc, url = vgt_server.restart(a.vigil, data, base + lease + (
            "--node-id", "a", "--video-sync-max-s", "5", "--fault-video-job-delay-ms", "60000"))
        st, _, j = jcall(url + "/api/v1/analyze?callback_url=" + hook_url, key, "POST", edit2,
                         "video/mp4")
        check(st == 202, "job before the kill answered %d" % st)
        st, j = poll_job(url, key, j["id"], want=("running",), timeout_s=30)
        check(j and j["state"] == "running", "job never ran: %s" % j)
        check(j["node"] == "a" and j["lease_until"], "running job's holder: %s" % j)
        proc.kill()
        proc.wait()
        got = len(Hook.got)
        proc, url = vgt_server.restart(a.vigil, data, lease + ("--node-id", "b", "--faces",
                                                               "false", "--video-sync-max-s", "5"))
        st, j = poll_job(url, key, j["id"])
        check(st == 200 and j["state"] == "done" and j["attempts"] == 2,
              "job after kill -9 and restart: %d %s" % (st, j))
        check(j["node"] is None and j["lease_until"] is None, "ended job's holder: %s" % j)
        m = re.search(rb"^vigil_video_job_takeovers_total (\S+)", call(url + "/metrics", None)[2],
                      re.M)
        check(m and float(m.group(1)) == 1, "takeovers counted: %s" % (m and m.group(0)))
        # (each of the two tries is refused: the count is 1 or 2)
        refused = re.compile(rb'vigil_video_limit_hits_total\{limit="callback_address"\} [12]\b')
        deadline = time.time() + 30
        metrics = b""
        while time.time() < deadline and not refused.search(metrics):
            metrics = call(url + "/metrics", None)[2]
            time.sleep(0.1)
        check(refused.search(metrics) and len(Hook.got) == got,
              "callback to loopback after the restart: %d calls, metrics %s" %
              (len(Hook.got) - got, [ln for ln in metrics.decode().splitlines()
                                     if "limit_hits" in ln]))
        vgt_server.stop(proc)
        proc = None
        jobs_dir = os.path.join(data, "jobs")
        check(os.listdir(jobs_dir) == [], "job files left: %s" % os.listdir(jobs_dir))

        # 4. faces in video (face models on): a likeness reference's person is found in a video
        # of another photo of them, with the time range; a video of someone else is not
        faces_dir = os.path.join(a.repo, "tests", "data", "faces", "images")
        proc, url, admin = vgt_server.start(a.vigil, os.path.join(tmp, "faces"),
                                            ("--video-sync-max-s", "60"), who="it_video")
        st, _, t = jcall(url + "/api/v1/tenants", admin, "POST",
                         json.dumps({"name": "Agency", "kind": "agency"}).encode(),
                         "application/json")
        st, _, k = jcall(url + "/api/v1/tenants/%s/keys" % t["id"], admin, "POST",
                         json.dumps({"name": "k"}).encode(), "application/json")
        key = k["key"]
        st, _, p = jcall(url + "/api/v1/profiles", key, "POST",
                         json.dumps({"name": "Vlad", "email": "vlad@example.com"}).encode(),
                         "application/json")
        st, _, lref = jcall(url + "/api/v1/profiles/%s/references?kind=likeness" % p["id"], key,
                            "POST", read_any(faces_dir, "vlad_tile1.png"), "image/png")
        check(st == 201, "likeness upload answered %d %s" % (st, lref))
        lrid = (lref or {}).get("id", "")
        st, _, r = jcall(url + "/api/v1/analyze", key, "POST",
                         ffmpeg_still(tmp, os.path.join(faces_dir, "vlad_tile2.png"), 5),
                         "video/mp4")
        fm = [m for m in (r or {}).get("matches", []) if m["kind"] == "face"]
        check(st == 201 and len(fm) == 1 and fm[0]["reference_id"] == lrid,
              "person in a video: %d %s" % (st, r))
        if fm:
            segs = fm[0]["segments"]
            # 0.5 frames/s over 5 s: frames at 0, 2, 4, one person, one range
            check(fm[0]["query_frames"] == 3 and fm[0]["query_matched"] == 3 and
                  len(segs) == 1 and segs[0]["query_start"] == 0 and
                  abs(segs[0]["query_end"] - 4) < 0.1 and segs[0]["frames"] == 3 and
                  fm[0]["distance"] < 0.6, "person in a video, range: %s" % fm[0])
            st, _, n = jcall(url + "/api/v1/notices", key, "POST", json.dumps(
                {"match_id": fm[0]["match_id"], "infringing_url": "https://tube.example/v/7",
                 "recipient": {"name": "Tube Inc."}}).encode(), "application/json")
            st, _, n = jcall(url + "/api/v1/notices/" + (n or {}).get("id", "x"), key)
            text = " ".join(((n or {}).get("text") or "").split())
            check(st == 200 and "appears in the infringing video" in text and
                  "shown from 0:00 to 0:04" in text, "person in a video notice: %d %s" % (st, text))
        st, _, r = jcall(url + "/api/v1/analyze", key, "POST",
                         ffmpeg_still(tmp, os.path.join(faces_dir, "messi5.png"), 3), "video/mp4")
        check(st == 201 and r["matches"] == [], "someone else in a video: %d %s" % (st, r))
        vgt_server.stop(proc)
        proc = None
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        hook.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("it_video: %d failure(s)" % len(failures))
        return 1
    print("it_video: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
