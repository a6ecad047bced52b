#!/usr/bin/env python3
"""Gathers large wallpapers for bench/pdq_large.sh: every JPEG/PNG/WebP of 1920x1080 or more under
SRC (plasma ships one wallpaper in several sizes: the largest is kept), re-encoded as JPEG
quality 100 without chroma subsampling into DST. Usage: pdq_large_prep.py SRC DST (needs PIL)."""
import os, sys, hashlib
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
best = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.lower().endswith(('.jpg', '.jpeg', '.png', '.webp')):
            continue
        p = os.path.join(root, f)
        try:
            with Image.open(p) as im:
                w, h = im.size
        except Exception:
            continue
        if max(w, h) < 1920 or min(w, h) < 1080:
            continue
        # plasma ships one wallpaper in many sizes: keep the largest per directory of sizes
        key = root if '/contents/images' in root else p
        if key not in best or w * h > best[key][1]:
            best[key] = (p, w * h)
n = 0
for key, (p, _) in sorted(best.items()):
    im = Image.open(p).convert('RGB')
    name = hashlib.sha1(p.encode()).hexdigest()[:8] + '_' + os.path.splitext(os.path.basename(p if '/contents/' not in p else key.split('/wallpapers/')[1].split('/')[0]))[0]
    out = os.path.join(dst, name + '.jpg')
    im.save(out, quality=100, subsampling=0)
    n += 1
    print(out, im.size, p)
print(n, 'images', file=sys.stderr)
