"""Starting and stopping a throwaway `vigil serve` from Python test and reliability scripts.

start() runs it on a free loopback port with a fresh data directory and returns the process, its
base URL and the admin key it prints once at first start; restart() starts it again on an existing
data directory (no key is printed then) and returns the process and its URL; stop() sends SIGTERM
and returns whether it exited in time (it is killed otherwise).

call() is the one HTTP client of the Python tests and benches: it never raises on an HTTP error
status, so a test can assert on the status and the JSON error body the server sent.
"""
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request


def call(url, key=None, method="GET", body=None, ctype=None, timeout=30, headers=False):
    """One request; returns (status, body bytes), or (status, headers dict, body) with headers.

    key goes in `Authorization: Bearer`, ctype in Content-Type when given. Connection errors
    (refused, reset, timeout) still raise: a test that expects a node to be down catches them.
    """
    req = urllib.request.Request(url, data=body, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, data = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, data = e.code, dict(e.headers), e.read()
    return (status, hdrs, data) if headers else (status, data)


def _serve(vigil, data_dir, extra, who, timeout_s, want_key):
    p = subprocess.Popen([vigil, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                          *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    box = {}

    def reader():
        for line in p.stdout:
            m = re.search(r"generated admin key \(shown once; keep it\): (\S+)", line)
            if m:
                box["key"] = m.group(1)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                box["url"] = m.group(1)
    threading.Thread(target=reader, daemon=True).start()

    def ready():
        return "url" in box and (not want_key or "key" in box)
    deadline = time.time() + timeout_s
    while time.time() < deadline and not ready():
        if p.poll() is not None:
            raise SystemExit("%s: vigil serve exited with %d" % (who, p.returncode))
        time.sleep(0.05)
    if not ready():
        p.kill()
        raise SystemExit("%s: no %slisten line from vigil serve" %
                         (who, "admin key or " if want_key else ""))
    return p, box["url"], box.get("key")


def start(vigil, data_dir, extra=(), who="vgt_server", timeout_s=60):
    return _serve(vigil, data_dir, extra, who, timeout_s, want_key=True)


def restart(vigil, data_dir, extra=(), who="vgt_server", timeout_s=60):
    p, url, _ = _serve(vigil, data_dir, extra, who, timeout_s, want_key=False)
    return p, url


def stop(p, timeout_s=30):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        return False
