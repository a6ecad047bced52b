#!/usr/bin/env python3
"""Regenerates the decompression-bomb fixtures of tests/data/img (bomb-*.{jpg,png,webp}).

Needs python3 (zlib), cjpeg (libjpeg-turbo-progs) and cwebp (webp); the tests only read the
committed files. Run from tests/data/img:  python3 tools/make_bombs.py
"""
import os, struct, subprocess, tempfile, zlib


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png(w, h, depth, ctype, extra=b"", fill=b"\0"):
    """A PNG of one colour, rows compressed one at a time (never the whole image in memory)."""
    chans = {0: 1, 2: 3}[ctype]
    rowbytes = (w * chans * depth + 7) // 8
    co = zlib.compressobj(9)
    raw = b"".join(co.compress(b"\0" + fill * rowbytes) for _ in range(h)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", raw) +
            chunk(b"IEND", b""))


def jpeg_segments(b):
    """(marker, bytes) of each segment after SOI up to EOI; an SOS carries its entropy data."""
    out, pos = [], 2
    while True:
        m = b[pos + 1]
        if m == 0xD9:
            return out
        end = pos + 2 + (b[pos + 2] << 8 | b[pos + 3])
        if m == 0xDA:
            while not (b[end] == 0xFF and b[end + 1] != 0 and not 0xD0 <= b[end + 1] <= 0xD7):
                end += 1
        out.append((m, b[pos:end]))
        pos = end


def jpeg_scans(pgm, total):
    """A progressive gray JPEG of `total` scans: one DC scan, then AC bands each sent at Al=7 and
    refined down to 0 (8 scans a band). cjpeg takes at most 100 scans a script, so bands are
    encoded 12 at a time and their scans spliced after the first file's header and DC scan."""
    al, head, ac = 7, None, []
    bands = list(range(1, (total - 1 + al) // (al + 1) + 1))
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as s:
        for i in range(0, len(bands), 12):
            lines = ["0: 0 0 0 0;"]
            for k in bands[i:i + 12]:
                lines.append("0: %d %d 0 %d;" % (k, k, al))
                lines += ["0: %d %d %d %d;" % (k, k, a, a - 1) for a in range(al, 0, -1)]
            s.seek(0), s.truncate(), s.write("\n".join(lines) + "\n"), s.flush()
            b = subprocess.run(["cjpeg", "-quality", "75", "-scans", s.name, pgm], check=True,
                               capture_output=True).stdout
            segs = jpeg_segments(b)
            first = [j for j, x in enumerate(segs) if x[0] == 0xDA][0]
            if head is None:
                head = b"\xff\xd8" + b"".join(x[1] for x in segs[:first + 1])
            ac += [x[1] for x in segs[first + 1:]]
    scans, cur = [], b""
    for x in ac:  # an AC scan is its DHT segment(s) and its SOS
        cur += x
        if x[1] == 0xDA:
            scans.append(cur)
            cur = b""
    return head + b"".join(scans[:total - 1]) + b"\xff\xd9"


def pgm(path, w, h):
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h))
        for _ in range(h):
            f.write(b"\x80" * w)


def main():
    tmp = tempfile.mkdtemp()
    p256, p8192 = os.path.join(tmp, "g256.pgm"), os.path.join(tmp, "g8192.pgm")
    pgm(p256, 256, 256)
    pgm(p8192, 8192, 8192)
    open("bomb-scans.jpg", "wb").write(jpeg_scans(p256, 499))
    open("bomb-work.jpg", "wb").write(jpeg_scans(p8192, 40))
    open("bomb-1bit.png", "wb").write(png(10000, 10000, 1, 0))
    open("bomb-ratio.png", "wb").write(png(8192, 8192, 1, 0))
    ztxt = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 17000000, 9))
    open("bomb-ztxt.png", "wb").write(png(4, 4, 8, 2, ztxt))
    gray = os.path.join(tmp, "g8192.png")
    open(gray, "wb").write(png(8192, 8192, 8, 0, fill=b"\x80"))
    subprocess.run(["cwebp", "-quiet", "-lossless", "-z", "0", gray, "-o", "bomb-lossless.webp"],
                   check=True)


if __name__ == "__main__":
    main()
