/*
 * Shared body of the img fuzz targets (fuzz_img_jpeg.c, fuzz_img_png.c, fuzz_img_webp.c).
 *
 * Each target forces its format's signature onto the input, so the fuzzer spends its time
 * behind one decoder's magic bytes instead of in the sniffer, then runs img_probe + img_decode
 * with small limits so that a crafted header cannot make the fuzzer exceed its 2 GB RSS budget
 * (4 MP: at most 16 MB of output plus the libraries' own working memory). A byte from the middle
 * of the input picks the options (gray/RGB, EXIF, fast DCT, scaled), so seed files are valid as
 * they are. Results are checked for consistency: a decode that succeeds must be complete,
 * within the limits, and agree with the probe; a failed one must leave nothing allocated.
 */
#ifndef FUZZ_IMG_COMMON_H
#define FUZZ_IMG_COMMON_H

#include "core/core.h"
#include "img/img.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_IMG_MAX_PIXELS 4000000u
#define FUZZ_IMG_MAX_INPUT_BYTES ((size_t)4 << 20)

/* Signature bytes to force: len bytes of `bytes` at offset `off` (len 0: none). */
typedef struct fuzz_img_magic {
    const char *bytes;
    size_t off, len;
} fuzz_img_magic;

static int fuzz_img_run(const uint8_t *data, size_t size, fuzz_img_magic m1, fuzz_img_magic m2)
{
    if (size > FUZZ_IMG_MAX_INPUT_BYTES)
        return 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (m1.len && size >= m1.off + m1.len)
        memcpy(buf + m1.off, m1.bytes, m1.len);
    if (m2.len && size >= m2.off + m2.len)
        memcpy(buf + m2.off, m2.bytes, m2.len);

    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_pixels = FUZZ_IMG_MAX_PIXELS;
    o.limits.max_input_bytes = FUZZ_IMG_MAX_INPUT_BYTES;
    uint8_t sel = size ? (uint8_t)(buf[size / 2] ^ size) : 0;
    o.pixfmt = (sel & 1) ? IMG_GRAY : IMG_RGB;
    o.ignore_exif = (sel >> 1) & 1;
    o.fast_dct = (sel >> 2) & 1;
    if (sel & 8)
        o.min_w = o.min_h = 64;

    img_info info;
    int prc = img_probe(buf, size, &o.limits, &info);
    img_image im;
    int rc = img_decode(buf, size, &o, &im);
    if (rc == VG_OK) {
        if (!im.px || im.w == 0 || im.h == 0 || prc != VG_OK || info.w != im.src_w ||
            info.h != im.src_h)
            abort();
        if ((uint64_t)im.src_w * im.src_h > FUZZ_IMG_MAX_PIXELS)
            abort();
        size_t n = (size_t)im.w * im.h * (size_t)im.channels;
        volatile uint8_t sink = (uint8_t)(im.px[0] ^ im.px[n - 1]);
        (void)sink;
        img_image_free(&im);
    } else if (im.px) {
        abort();
    }
    free(buf);
    return 0;
}

#endif /* FUZZ_IMG_COMMON_H */
