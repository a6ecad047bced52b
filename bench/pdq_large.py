#!/usr/bin/env python3
"""Fast vs compat PDQ distance over a folder of large photos (docs/BENCHMARKS.md, "PDQ fast mode on
large photos"). Runs `vigil hash --json` in both modes on every *.jpg under DIR and prints the
distribution of Hamming distances, split by the compat hash's quality, and the worst files.

usage: bench/pdq_large.py VIGIL DIR [--min-side PX] [--min-quality 80] [--worst 10] [--json OUT]
(--min-side PX: fast mode's DCT-scaled decode, `vigil hash --min-side`; 128 is the old default)
Exit status 1 when any image of quality >= --min-quality is more than --max-bits (10) apart.
"""
import argparse
import json
import os
import subprocess
import sys


def hashes(vigil, mode, files, extra=()):
    out = {}
    # batches keep the command line short; vigil hash prints one JSON line per file
    for i in range(0, len(files), 64):
        p = subprocess.run([vigil, "hash", "--json", "--mode", mode, *extra, "--"] + files[i:i + 64],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        for line in p.stdout.splitlines():
            r = json.loads(line)
            out[r["file"]] = r
        if p.returncode not in (0, 1):
            sys.exit("vigil hash failed: " + p.stderr)
    return out


def distance(a, b):
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vigil")
    ap.add_argument("dir")
    ap.add_argument("--min-side", type=int, default=0)
    ap.add_argument("--min-quality", type=int, default=80)
    ap.add_argument("--max-bits", type=int, default=10)
    ap.add_argument("--worst", type=int, default=10)
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir)
                   if f.lower().endswith((".jpg", ".jpeg")))
    if not files:
        sys.exit("no JPEG files under " + a.dir)
    fast = hashes(a.vigil, "fast", files, ("--min-side", str(a.min_side)))
    compat = hashes(a.vigil, "compat", files)
    rows = []
    for f in files:
        if f in fast and f in compat:
            rows.append((distance(fast[f]["hash"], compat[f]["hash"]), compat[f]["quality"],
                         fast[f]["width"], fast[f]["height"], f))
    buckets = [(0, 2), (3, 5), (6, 8), (9, 10), (11, 12), (13, 15), (16, 256)]
    print(f"{len(rows)} images ({len(files) - len(rows)} failed to hash)")
    print(f"{'bits':>8} {'all':>5} {'q>=' + str(a.min_quality):>6}")
    for lo, hi in buckets:
        n_all = sum(1 for r in rows if lo <= r[0] <= hi)
        n_q = sum(1 for r in rows if lo <= r[0] <= hi and r[1] >= a.min_quality)
        label = f"{lo}-{hi}" if hi < 256 else f">={lo}"
        print(f"{label:>8} {n_all:>5} {n_q:>6}")
    ds = sorted(r[0] for r in rows)
    if ds:
        print(f"median {ds[len(ds) // 2]}, mean {sum(ds) / len(ds):.2f}, max {ds[-1]}")
    print("worst:")
    for r in sorted(rows, reverse=True)[:a.worst]:
        print(f"  {r[0]:3d} bits  q={r[1]:3d}  {r[2]}x{r[3]}  {os.path.basename(r[4])}")
    if a.json_out:
        with open(a.json_out, "w") as fp:
            json.dump([{"file": os.path.basename(r[4]), "bits": r[0], "quality": r[1]}
                       for r in rows], fp, indent=1)
    bad = [r for r in rows if r[1] >= a.min_quality and r[0] > a.max_bits]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
