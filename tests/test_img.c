/*
 * img: sniffing, limits, every decoder path (JPEG incl. scaling, EXIF, CMYK; PNG all colour
 * types and depths, tRNS, interlace, APNG; WebP lossy, lossless+alpha, animated), every error
 * path with crafted inputs, allocation fault injection, and the pixel operations.
 *
 * Inputs are either encoded here with the libraries' own encoders (tiny, exact, deterministic)
 * or read from tests/data/img (crops of real photographs, see tests/data/LICENSES.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "img/img.h"
#include "img/img_int.h"
#include "support/vgt_jpeg.h"

#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/encode.h>

#define DATA(name) VG_TEST_DATA_DIR "/img/" name

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t *read_data(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    int rc = vg_read_file(path, (size_t)64 << 20, &buf, len);
    if (rc != VG_OK)
        fail_msg("cannot read %s: %s", path, vg_err_msg());
    return buf;
}

/* Smooth gradients plus a coarse texture: compresses like a photo, not like noise. */
static uint8_t *pattern_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(w > 1 ? x * 255 / (w - 1) : 128);
            q[1] = (uint8_t)(h > 1 ? y * 255 / (h - 1) : 128);
            q[2] = (uint8_t)((((x / 16) + (y / 16)) & 1) ? 200 : 60);
        }
    return p;
}

/* Four flat quadrants TL red, TR green, BL blue, BR white: orientation is visible at corners. */
static const uint8_t QUAD[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
static uint8_t *pattern_quad(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(p + ((size_t)y * w + x) * 3, QUAD[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    return p;
}

static uint8_t *jpeg_pattern(int w, int h, int subsamp, int quality, size_t *len)
{
    uint8_t *px = pattern_rgb(w, h);
    uint8_t *j = vgt_jpeg_make(px, w, h, TJPF_RGB, subsamp, quality, 0, len);
    free(px);
    return j;
}

/* Inserts `seg` (a whole marker segment) right after SOI. Returns malloc'ed. */
static uint8_t *jpeg_insert(const uint8_t *j, size_t len, const uint8_t *seg, size_t seglen,
                            size_t *outlen)
{
    uint8_t *o = malloc(len + seglen);
    assert_non_null(o);
    memcpy(o, j, 2);
    memcpy(o + 2, seg, seglen);
    memcpy(o + 2 + seglen, j + 2, len - 2);
    *outlen = len + seglen;
    return o;
}

static void put16(uint8_t *p, unsigned v, int big)
{
    if (big) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    } else {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
    }
}

static void put32(uint8_t *p, uint32_t v, int big)
{
    if (big) {
        put16(p, v >> 16, 1);
        put16(p + 2, v & 0xFFFF, 1);
    } else {
        put16(p, v & 0xFFFF, 0);
        put16(p + 2, v >> 16, 0);
    }
}

/* An APP1 EXIF segment with IFD0 = {Make "abc", Orientation = orient}; returns its length. */
static size_t exif_segment(uint8_t *seg, int orient, int big)
{
    uint8_t *t = seg + 10; /* TIFF header after FF E1 len(2) "Exif\0\0" */
    memcpy(seg,
           "\xFF\xE1\x00\x00"
           "Exif\0\0",
           10);
    memcpy(t, big ? "MM" : "II", 2);
    put16(t + 2, 42, big);
    put32(t + 4, 8, big);
    put16(t + 8, 2, big); /* two entries */
    uint8_t *e = t + 10;
    put16(e, 0x010F, big); /* Make, ASCII, 4 bytes inline */
    put16(e + 2, 2, big);
    put32(e + 4, 4, big);
    memcpy(e + 8, "abc", 4);
    e += 12;
    put16(e, 0x0112, big); /* Orientation, SHORT, 1 */
    put16(e + 2, 3, big);
    put32(e + 4, 1, big);
    put16(e + 8, (unsigned)orient, big);
    put16(e + 10, 0, big);
    e += 12;
    put32(e, 0, big); /* no next IFD */
    size_t tiff_len = (size_t)(e + 4 - t);
    size_t seglen = 10 + tiff_len;
    put16(seg + 2, (unsigned)(seglen - 2), 1);
    return seglen;
}

static int decode_with(const uint8_t *b, size_t n, img_pixfmt pf, int ignore_exif, img_image *im)
{
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.pixfmt = pf;
    o.ignore_exif = ignore_exif;
    return img_decode(b, n, &o, im);
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* PNG via spng's encoder from raw PNG-layout rows (16-bit samples host-endian). malloc'ed. */
static uint8_t *png_make(uint32_t w, uint32_t h, int ctype, int depth, int interlace,
                         const void *raw, size_t rawlen, struct spng_plte *plte,
                         struct spng_trns *trns, size_t *len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(ctx);
    assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
    struct spng_ihdr ih = {w, h, (uint8_t)depth, (uint8_t)ctype, 0, 0, (uint8_t)interlace};
    assert_int_equal(spng_set_ihdr(ctx, &ih), 0);
    if (plte)
        assert_int_equal(spng_set_plte(ctx, plte), 0);
    if (trns)
        assert_int_equal(spng_set_trns(ctx, trns), 0);
    int e = spng_encode_image(ctx, raw, rawlen, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    if (e)
        fail_msg("spng_encode_image: %s", spng_strerror(e));
    int err = 0;
    uint8_t *buf = spng_get_png_buffer(ctx, len, &err);
    assert_int_equal(err, 0);
    assert_non_null(buf);
    spng_ctx_free(ctx);
    return buf;
}

static uint8_t *png_rgb8(uint32_t w, uint32_t h, const uint8_t *rgb, size_t *len)
{
    return png_make(w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, rgb, (size_t)w * h * 3, NULL, NULL, len);
}

/* Rewrites the CRC of the PNG chunk starting at off (length field). */
static void png_fix_crc(uint8_t *png, size_t off)
{
    uint32_t n = (uint32_t)png[off] << 24 | (uint32_t)png[off + 1] << 16 |
                 (uint32_t)png[off + 2] << 8 | png[off + 3];
    put32(png + off + 8 + n, crc32_of(png + off + 4, 4 + (size_t)n), 1);
}

static uint8_t *webp_lossy(const uint8_t *rgb, int w, int h, float q, size_t *len)
{
    uint8_t *out = NULL;
    *len = WebPEncodeRGB(rgb, w, h, w * 3, q, &out);
    assert_true(*len > 0);
    uint8_t *copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, out, *len);
    WebPFree(out);
    return copy;
}

static uint8_t *webp_lossless_rgba(const uint8_t *rgba, int w, int h, size_t *len)
{
    uint8_t *out = NULL;
    *len = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out);
    assert_true(*len > 0);
    uint8_t *copy = malloc(*len);
    assert_non_null(copy);
    memcpy(copy, out, *len);
    WebPFree(out);
    return copy;
}

static long lround_div(double num, double den)
{
    return lround(num / den);
}

/* Independent float luma with a tolerance of 1 against the fixed-point implementation. */
static void assert_luma_close(uint8_t got, double r, double g, double b)
{
    double y = 0.299 * r + 0.587 * g + 0.114 * b;
    assert_true(fabs((double)got - y) <= 1.0);
}

static size_t find_scan_data(const uint8_t *j, size_t n);

/* ---- sniffing and options ----------------------------------------------------------------- */

static void test_sniff(void **state)
{
    (void)state;
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0};
    static const uint8_t webp[] = "RIFF\x10\0\0\0WEBPVP8 ";
    assert_int_equal(img_sniff(jpg, sizeof(jpg)), IMG_FMT_JPEG);
    assert_int_equal(img_sniff(png, sizeof(png)), IMG_FMT_PNG);
    assert_int_equal(img_sniff(webp, 16), IMG_FMT_WEBP);
    assert_int_equal(img_sniff(jpg, 2), IMG_FMT_UNKNOWN);
    assert_int_equal(img_sniff((const uint8_t *)"GIF89a", 6), IMG_FMT_UNKNOWN);
    assert_int_equal(img_sniff((const uint8_t *)"RIFF\x10\0\0\0WAVE", 12), IMG_FMT_UNKNOWN);
    assert_int_equal(img_sniff(NULL, 10), IMG_FMT_UNKNOWN);
    assert_string_equal(img_format_name(IMG_FMT_JPEG), "jpeg");
    assert_string_equal(img_format_name(IMG_FMT_PNG), "png");
    assert_string_equal(img_format_name(IMG_FMT_WEBP), "webp");
    assert_string_equal(img_format_name(IMG_FMT_UNKNOWN), "unknown");
}

static void test_defaults(void **state)
{
    (void)state;
    img_decode_opts o;
    memset(&o, 0xAB, sizeof(o));
    img_decode_opts_default(&o);
    assert_int_equal(o.limits.max_input_bytes, IMG_DEFAULT_MAX_INPUT_BYTES);
    assert_true(o.limits.max_pixels == IMG_DEFAULT_MAX_PIXELS);
    assert_int_equal(o.limits.max_dimension, IMG_DEFAULT_MAX_DIMENSION);
    assert_int_equal(o.limits.max_jpeg_scans, IMG_DEFAULT_MAX_JPEG_SCANS);
    assert_true(o.limits.max_lossless_pixels == IMG_DEFAULT_MAX_LOSSLESS_PIXELS);
    assert_true(o.limits.max_decode_work == IMG_DEFAULT_MAX_DECODE_WORK);
    assert_int_equal(o.limits.max_decode_ratio, IMG_DEFAULT_MAX_DECODE_RATIO);
    /* A phone's HD photo and a 50 MP frame are within the pixel limit. */
    assert_true((uint64_t)4000 * 3000 <= IMG_DEFAULT_MAX_PIXELS);
    assert_true((uint64_t)8160 * 6144 <= IMG_DEFAULT_MAX_PIXELS);
    assert_int_equal(o.pixfmt, IMG_RGB);
    assert_int_equal(o.min_w, 0);
    assert_int_equal(o.min_h, 0);
    assert_int_equal(o.ignore_exif, 0);
    assert_int_equal(o.fast_dct, 0);
    assert_int_equal(o.background[0], 255);
    assert_int_equal(o.background[2], 255);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(16, 16, TJSAMP_444, 90, &n);
    img_image im;
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.pixfmt = (img_pixfmt)2;
    assert_int_equal(img_decode(j, n, &o, &im), VG_EINVAL);
    assert_null(im.px);
    assert_int_equal(img_decode(j, n, NULL, NULL), VG_EINVAL);
    assert_int_equal(img_probe(j, n, NULL, NULL), VG_EINVAL);
    assert_int_equal(img_decode(NULL, 5, NULL, &im), VG_EINVAL);
    img_image_free(NULL);
    img_image_free(&im); /* zeroed by the failed decode: a no-op */
    free(j);
}

/* ---- JPEG ------------------------------------------------------------------------------- */

static void test_jpeg_rgb_and_gray(void **state)
{
    (void)state;
    const int w = 96, h = 64;
    uint8_t *px = pattern_rgb(w, h);
    size_t n;
    uint8_t *j = vgt_jpeg_make(px, w, h, TJPF_RGB, TJSAMP_444, 100, 0, &n);
    img_image rgb, gray;
    assert_int_equal(img_decode(j, n, NULL, &rgb), VG_OK);
    assert_int_equal(rgb.w, w);
    assert_int_equal(rgb.h, h);
    assert_int_equal(rgb.channels, 3);
    assert_int_equal(rgb.src_w, w);
    assert_int_equal(rgb.format, IMG_FMT_JPEG);
    assert_int_equal(rgb.orientation, 1);
    assert_int_equal(rgb.scale_denom, 1);
    assert_true(mean_abs_diff(rgb.px, px, (size_t)w * h * 3) < 1.5);

    assert_int_equal(decode_with(j, n, IMG_GRAY, 0, &gray), VG_OK);
    assert_int_equal(gray.channels, 1);
    /* Gray comes straight from the Y plane: it must equal the luma of the RGB decode. */
    double s = 0;
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = rgb.px + 3 * i;
        s += fabs(gray.px[i] - (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
    }
    assert_true(s / (w * h) < 1.0);

    img_info info;
    assert_int_equal(img_probe(j, n, NULL, &info), VG_OK);
    assert_int_equal(info.format, IMG_FMT_JPEG);
    assert_int_equal(info.w, w);
    assert_int_equal(info.h, h);
    assert_int_equal(info.orientation, 1);
    assert_int_equal(info.has_alpha, 0);
    assert_int_equal(info.frames, 1);
    img_image_free(&rgb);
    img_image_free(&gray);
    assert_null(rgb.px);
    img_image_free(&rgb); /* twice: no-op */
    free(j);
    free(px);
}

static void test_jpeg_gray_source(void **state)
{
    (void)state;
    const int w = 40, h = 30;
    uint8_t g[40 * 30];
    for (int i = 0; i < w * h; i++)
        g[i] = (uint8_t)(i * 7);
    size_t n;
    uint8_t *j = vgt_jpeg_make(g, w, h, TJPF_GRAY, TJSAMP_GRAY, 100, 0, &n);
    img_image rgb, gray;
    assert_int_equal(img_decode(j, n, NULL, &rgb), VG_OK);
    assert_int_equal(decode_with(j, n, IMG_GRAY, 0, &gray), VG_OK);
    for (int i = 0; i < w * h; i++) {
        assert_int_equal(rgb.px[3 * i], gray.px[i]);
        assert_int_equal(rgb.px[3 * i + 1], gray.px[i]);
        assert_int_equal(rgb.px[3 * i + 2], gray.px[i]);
    }
    img_image_free(&rgb);
    img_image_free(&gray);
    free(j);
}

static void test_jpeg_scaling(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(800, 600, TJSAMP_420, 90, &n);
    img_decode_opts o;
    img_decode_opts_default(&o);
    img_image im;
    static const struct {
        uint32_t min_w, min_h, denom, w, h;
    } cases[] = {
        {0, 0, 1, 800, 600},     /* full size */
        {100, 75, 8, 100, 75},   /* exactly 1/8 */
        {101, 75, 4, 200, 150},  /* one more pixel: 1/4 */
        {100, 100, 4, 200, 150}, /* height decides */
        {300, 0, 2, 400, 300},   /* one side only */
        {0, 76, 4, 200, 150},      {401, 1, 1, 800, 600},
        {5000, 5000, 1, 800, 600}, /* bigger than the image: full size, never upscaled */
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(cases); i++) {
        o.min_w = cases[i].min_w;
        o.min_h = cases[i].min_h;
        o.pixfmt = (i & 1) ? IMG_GRAY : IMG_RGB;
        assert_int_equal(img_decode(j, n, &o, &im), VG_OK);
        assert_int_equal(im.scale_denom, cases[i].denom);
        assert_int_equal(im.w, cases[i].w);
        assert_int_equal(im.h, cases[i].h);
        assert_int_equal(im.src_w, 800);
        assert_int_equal(im.src_h, 600);
        img_image_free(&im);
    }
    /* Scaled pixels resemble the full decode sampled down (DCT scaling is an average). */
    img_image full, eighth;
    o.pixfmt = IMG_GRAY;
    o.min_w = o.min_h = 0;
    assert_int_equal(img_decode(j, n, &o, &full), VG_OK);
    o.min_w = 100;
    o.min_h = 75;
    assert_int_equal(img_decode(j, n, &o, &eighth), VG_OK);
    double s = 0;
    for (uint32_t y = 0; y < 75; y++)
        for (uint32_t x = 0; x < 100; x++) {
            double m = 0;
            for (int dy = 0; dy < 8; dy++)
                for (int dx = 0; dx < 8; dx++)
                    m += full.px[(y * 8 + dy) * 800 + x * 8 + dx];
            s += fabs(m / 64 - eighth.px[y * 100 + x]);
        }
    assert_true(s / (100 * 75) < 3.0);
    img_image_free(&full);
    img_image_free(&eighth);
    free(j);
}

static void test_jpeg_fast_dct(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(256, 192, TJSAMP_420, 90, &n);
    img_decode_opts o;
    img_decode_opts_default(&o);
    img_image a, b;
    assert_int_equal(img_decode(j, n, &o, &a), VG_OK);
    o.fast_dct = 1;
    assert_int_equal(img_decode(j, n, &o, &b), VG_OK);
    assert_int_equal(a.w, b.w);
    double d = mean_abs_diff(a.px, b.px, (size_t)a.w * a.h * 3);
    print_message("fast_dct: mean abs diff %.3f\n", d);
    assert_true(d < 6.0); /* measured 3.7 on this sharp-edged 4:2:0 pattern */
    img_image_free(&a);
    img_image_free(&b);
    free(j);
}

/* Display-corner colours for each orientation, as indices into QUAD (TL, TR, BL, BR). */
static const int CORNERS[9][4] = {
    {0},          {0, 1, 2, 3}, {1, 0, 3, 2}, {3, 2, 1, 0}, {2, 3, 0, 1},
    {0, 2, 1, 3}, {2, 0, 3, 1}, {3, 1, 2, 0}, {1, 3, 0, 2},
};

static void assert_corner(const img_image *im, uint32_t x, uint32_t y, int quad)
{
    const uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
    for (int k = 0; k < 3; k++)
        assert_true(abs((int)p[k] - QUAD[quad][k]) <= 8);
}

static void test_jpeg_exif_all_orientations(void **state)
{
    (void)state;
    const int w = 48, h = 32;
    uint8_t *px = pattern_quad(w, h);
    size_t n;
    uint8_t *base = vgt_jpeg_make(px, w, h, TJPF_RGB, TJSAMP_444, 95, 0, &n);
    img_image stored;
    assert_int_equal(img_decode(base, n, NULL, &stored), VG_OK);
    for (int big = 0; big <= 1; big++) {
        for (int o = 1; o <= 8; o++) {
            uint8_t seg[64];
            size_t sl = exif_segment(seg, o, big), jl;
            uint8_t *j = jpeg_insert(base, n, seg, sl, &jl);
            img_info info;
            assert_int_equal(img_probe(j, jl, NULL, &info), VG_OK);
            assert_int_equal(info.orientation, o);
            assert_int_equal(info.w, w); /* probe reports the stored size */

            img_image im, raw;
            assert_int_equal(img_decode(j, jl, NULL, &im), VG_OK);
            assert_int_equal(im.orientation, o);
            assert_int_equal(im.w, o >= 5 ? h : w);
            assert_int_equal(im.h, o >= 5 ? w : h);
            assert_corner(&im, 0, 0, CORNERS[o][0]);
            assert_corner(&im, im.w - 1, 0, CORNERS[o][1]);
            assert_corner(&im, 0, im.h - 1, CORNERS[o][2]);
            assert_corner(&im, im.w - 1, im.h - 1, CORNERS[o][3]);

            /* ignore_exif gives the stored pixels; applying the orientation gives im exactly. */
            assert_int_equal(decode_with(j, jl, IMG_RGB, 1, &raw), VG_OK);
            assert_int_equal(raw.orientation, o);
            assert_int_equal(raw.w, w);
            assert_memory_equal(raw.px, stored.px, (size_t)w * h * 3);
            assert_int_equal(img_apply_orientation(&raw, o), VG_OK);
            assert_int_equal(raw.w, im.w);
            assert_memory_equal(raw.px, im.px, (size_t)w * h * 3);
            img_image_free(&raw);
            img_image_free(&im);

            /* Gray output goes through the same orientation. */
            assert_int_equal(decode_with(j, jl, IMG_GRAY, 0, &im), VG_OK);
            assert_int_equal(im.w, o >= 5 ? h : w);
            img_image_free(&im);
            free(j);
        }
    }
    img_image_free(&stored);
    free(base);
    free(px);
}

static void test_jpeg_scaling_in_oriented_frame(void **state)
{
    (void)state;
    size_t n, jl;
    uint8_t *base = jpeg_pattern(800, 600, TJSAMP_420, 90, &n);
    uint8_t seg[64];
    size_t sl = exif_segment(seg, 6, 1);
    uint8_t *j = jpeg_insert(base, n, seg, sl, &jl);
    img_decode_opts o;
    img_decode_opts_default(&o);
    /* Displayed 600x800. 150x100 displayed = 100 wide x 150 high stored: 1/8 gives 100x75
     * stored (too short), 1/4 gives 200x150 stored = 150x200 displayed. */
    o.min_w = 150;
    o.min_h = 100;
    img_image im;
    assert_int_equal(img_decode(j, jl, &o, &im), VG_OK);
    assert_int_equal(im.scale_denom, 4);
    assert_int_equal(im.w, 150);
    assert_int_equal(im.h, 200);
    img_image_free(&im);
    /* With EXIF ignored the request is in the stored frame: 1/4 as well but 200x150 out. */
    o.ignore_exif = 1;
    assert_int_equal(img_decode(j, jl, &o, &im), VG_OK);
    assert_int_equal(im.w, 200);
    assert_int_equal(im.h, 150);
    img_image_free(&im);
    free(j);
    free(base);
}

static void test_exif_parser_malformed(void **state)
{
    (void)state;
    uint8_t seg[64];
    size_t sl = exif_segment(seg, 6, 0);
    uint8_t *t = seg + 10;
    size_t tl = sl - 10;
    assert_int_equal(img__exif_orientation(t, tl), 6);
    assert_int_equal(img__exif_orientation(NULL, 0), 1);
    assert_int_equal(img__exif_orientation(t, 7), 1);
    /* every truncation of the TIFF block is handled (orientation is found only when whole) */
    for (size_t cut = 0; cut < tl; cut++) {
        int o = img__exif_orientation(t, cut);
        assert_true(o == 1 || o == 6);
    }
    uint8_t bad[64];
    memcpy(bad, t, tl);
    bad[0] = 'X'; /* byte order */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put16(bad + 2, 43, 0); /* magic */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put32(bad + 4, 0xFFFFFFF0u, 0); /* IFD offset past the end (and overflowing) */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put32(bad + 4, 4, 0); /* IFD offset inside the header */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put16(bad + 8, 0xFFFF, 0);                           /* entry count far beyond the data */
    assert_int_equal(img__exif_orientation(bad, tl), 6); /* found before running out */
    memcpy(bad, t, tl);
    put16(bad + 8, 1, 0); /* only the first entry (Make) counted */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put16(bad + 10 + 12 + 8, 9, 0); /* value out of range */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put16(bad + 10 + 12 + 2, 2, 0); /* type ASCII */
    assert_int_equal(img__exif_orientation(bad, tl), 1);
    memcpy(bad, t, tl);
    put16(bad + 10 + 12 + 2, 4, 0); /* type LONG, value 6 little-endian in 4 bytes */
    put32(bad + 10 + 12 + 8, 6, 0);
    assert_int_equal(img__exif_orientation(bad, tl), 6);

    /* A JPEG whose EXIF is garbage still decodes, as orientation 1. */
    size_t n, jl;
    uint8_t *base = jpeg_pattern(32, 16, TJSAMP_444, 90, &n);
    memcpy(seg + 10, "MX", 2);
    uint8_t *j = jpeg_insert(base, n, seg, sl, &jl);
    img_image im;
    assert_int_equal(img_decode(j, jl, NULL, &im), VG_OK);
    assert_int_equal(im.orientation, 1);
    assert_int_equal(im.w, 32);
    img_image_free(&im);
    free(j);
    free(base);
}

/* Mean 16x16 gray thumbnail of a decoded gray image. */
static void thumb16(const img_image *im, double t[256])
{
    for (int i = 0; i < 256; i++)
        t[i] = 0;
    for (uint32_t y = 0; y < im->h; y++)
        for (uint32_t x = 0; x < im->w; x++)
            t[(y * 16 / im->h) * 16 + x * 16 / im->w] += im->px[(size_t)y * im->w + x];
    for (int i = 0; i < 256; i++)
        t[i] /= ((double)im->w * im->h / 256.0);
}

static double thumb_dist(const double *a, const double *b)
{
    double s = 0;
    for (int i = 0; i < 256; i++)
        s += fabs(a[i] - b[i]);
    return s / 256;
}

static void test_jpeg_exif_rotn_photos(void **state)
{
    (void)state;
    /* Four phone photos of one scene (shrunk copies, EXIF kept): stored 504x378 each; 1 and 3
     * display landscape, 6 and 8 portrait. */
    static const char *const files[4] = {
        DATA("exif-rotn-1-small.jpg"), DATA("exif-rotn-3-small.jpg"), DATA("exif-rotn-6-small.jpg"),
        DATA("exif-rotn-8-small.jpg")};
    static const int orient[4] = {1, 3, 6, 8};
    double oriented[4][256], stored[4][256];
    for (int i = 0; i < 4; i++) {
        size_t n;
        uint8_t *b = read_data(files[i], &n);
        img_image im, raw;
        assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &im), VG_OK);
        assert_int_equal(decode_with(b, n, IMG_GRAY, 1, &raw), VG_OK);
        assert_int_equal(im.orientation, orient[i]);
        assert_int_equal(raw.w, 504);
        assert_int_equal(raw.h, 378);
        assert_int_equal(im.w, orient[i] >= 5 ? 378 : 504);
        assert_int_equal(im.h, orient[i] >= 5 ? 504 : 378);
        thumb16(&im, oriented[i]);
        thumb16(&raw, stored[i]);
        img_image_free(&im);
        img_image_free(&raw);
        free(b);
    }
    /* Same display shape: the oriented pictures agree much better than the stored ones. */
    double d13 = thumb_dist(oriented[0], oriented[1]), s13 = thumb_dist(stored[0], stored[1]);
    double d68 = thumb_dist(oriented[2], oriented[3]), s68 = thumb_dist(stored[2], stored[3]);
    print_message("exif-rotn: 1-3 oriented %.2f stored %.2f; 6-8 oriented %.2f stored %.2f\n", d13,
                  s13, d68, s68);
    for (int i = 1; i < 4; i++)
        print_message("exif-rotn: %d-1 oriented %.2f stored %.2f\n", orient[i],
                      thumb_dist(oriented[i], oriented[0]), thumb_dist(stored[i], oriented[0]));
    assert_true(d13 * 2 < s13);
    assert_true(d68 < s68);
    /* Across shapes, every oriented photo is nearer the upright 1 than its stored pixels are. */
    for (int i = 1; i < 4; i++)
        assert_true(thumb_dist(oriented[i], oriented[0]) < thumb_dist(stored[i], oriented[0]));
}

static void test_jpeg_modes(void **state)
{
    (void)state;
    /* Crops (lossless, jpegtran) of the same photo stored as YCbCr, RGB-colourspace and Adobe
     * CMYK JPEGs: all decode close to the original. Thresholds are ~2x what was measured. */
    static const struct {
        const char *file;
        double max_rgb, max_gray;
    } cases[] = {
        {DATA("mode-YCbCr.jpg"), 4.0, 3.5},
        {DATA("mode-RGB.jpg"), 4.0, 3.5},
        {DATA("mode-CMYK.jpg"), 3.0, 3.0},
    };
    size_t n;
    uint8_t *b = read_data(DATA("mode-original.jpg"), &n);
    img_image ref, refg;
    assert_int_equal(decode_with(b, n, IMG_RGB, 0, &ref), VG_OK);
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &refg), VG_OK);
    free(b);
    for (size_t i = 0; i < VG_ARRAY_LEN(cases); i++) {
        b = read_data(cases[i].file, &n);
        img_image im, g;
        assert_int_equal(decode_with(b, n, IMG_RGB, 0, &im), VG_OK);
        assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &g), VG_OK);
        assert_int_equal(im.w, ref.w);
        assert_int_equal(im.h, ref.h);
        double d = mean_abs_diff(im.px, ref.px, (size_t)im.w * im.h * 3);
        double dg = mean_abs_diff(g.px, refg.px, (size_t)im.w * im.h);
        print_message("%s: mean abs diff rgb %.3f gray %.3f\n", cases[i].file, d, dg);
        assert_true(d < cases[i].max_rgb);
        assert_true(dg < cases[i].max_gray);
        img_image_free(&im);
        img_image_free(&g);
        free(b);
    }
    img_image_free(&ref);
    img_image_free(&refg);
}

static void test_jpeg_cmyk_synthetic(void **state)
{
    (void)state;
    /* TurboJPEG writes CMYK as YCCK with an Adobe marker, values in Adobe's inverted
     * convention. Inverted (C,M,Y,K) = (r,g,b,k) must decode to RGB = (r,g,b)*k/255. */
    const int w = 32, h = 16;
    uint8_t cmyk[32 * 16 * 4];
    for (int i = 0; i < w * h; i++) {
        int x = i % w, y = i / w;
        uint8_t *p = cmyk + 4 * i;
        p[0] = (uint8_t)(x < 16 ? 200 : 40);
        p[1] = (uint8_t)(y < 8 ? 100 : 220);
        p[2] = 150;
        p[3] = (uint8_t)(x < 8 ? 255 : 128);
    }
    size_t n;
    uint8_t *j = vgt_jpeg_make(cmyk, w, h, TJPF_CMYK, TJSAMP_444, 100, 0, &n);
    img_image im, g;
    assert_int_equal(img_decode(j, n, NULL, &im), VG_OK);
    assert_int_equal(decode_with(j, n, IMG_GRAY, 0, &g), VG_OK);
    /* sample the middle of flat regions (away from DCT ringing) */
    static const int pts[][2] = {{3, 3}, {12, 3}, {20, 3}, {28, 12}, {3, 12}, {12, 12}};
    for (size_t k = 0; k < VG_ARRAY_LEN(pts); k++) {
        int i = pts[k][1] * w + pts[k][0];
        const uint8_t *p = cmyk + 4 * i;
        double e[3];
        for (int c = 0; c < 3; c++) {
            e[c] = p[c] * p[3] / 255.0;
            assert_true(fabs(im.px[3 * i + c] - e[c]) <= 4.0);
        }
        assert_true(fabs(g.px[i] - (0.299 * e[0] + 0.587 * e[1] + 0.114 * e[2])) <= 4.0);
    }
    img_image_free(&im);
    img_image_free(&g);
    free(j);
}

static void test_jpeg_restart_markers(void **state)
{
    (void)state;
    /* RSTn markers inside the entropy data must not end the marker walk; truncation right
     * after one is still truncation. */
    uint8_t *px = pattern_rgb(64, 64);
    size_t n;
    setenv("TJ_RESTART", "1", 1); /* a restart interval of one MCU row */
    uint8_t *j = vgt_jpeg_make(px, 64, 64, TJPF_RGB, TJSAMP_420, 90, 0, &n);
    unsetenv("TJ_RESTART");
    size_t rst = 0;
    for (size_t i = find_scan_data(j, n); i + 1 < n; i++)
        if (j[i] == 0xFF && j[i + 1] >= 0xD0 && j[i + 1] <= 0xD7) {
            rst = i;
            break;
        }
    assert_true(rst > 0);
    img_image im;
    assert_int_equal(img_decode(j, n, NULL, &im), VG_OK);
    assert_true(mean_abs_diff(im.px, px, 64 * 64 * 3) < 12.0);
    img_image_free(&im);
    assert_int_equal(img_decode(j, rst + 2, NULL, &im), VG_ETRUNC);
    free(j);
    free(px);
}

static void test_jpeg_unsupported_process(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(16, 16, TJSAMP_444, 90, &n);
    img_image im;
    for (size_t i = 2; i + 4 < n; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xC0) {
            j[i + 4] = 12; /* sample precision 12: not in this libjpeg-turbo build */
            assert_int_equal(img_decode(j, n, NULL, &im), VG_EFORMAT);
            j[i + 4] = 8;
            j[i + 1] = 0xC3; /* lossless process */
            assert_int_equal(img_decode(j, n, NULL, &im), VG_EFORMAT);
            assert_null(im.px);
            free(j);
            return;
        }
    fail_msg("no SOF0");
}

static void test_jpeg_benign_warning_accepted(void **state)
{
    (void)state;
    /* Stray bytes before a marker: libjpeg warns "extraneous bytes" and loses nothing. */
    size_t n;
    uint8_t *base = jpeg_pattern(64, 48, TJSAMP_420, 90, &n);
    static const uint8_t junk[] = {0x00, 0x11, 0x22};
    size_t at = 4 + ((size_t)base[4] << 8 | base[5]); /* after the APP0 segment */
    size_t jl = n + sizeof(junk);
    uint8_t *j = malloc(jl);
    assert_non_null(j);
    memcpy(j, base, at);
    memcpy(j + at, junk, sizeof(junk));
    memcpy(j + at + sizeof(junk), base + at, n - at);
    img_image a, b;
    assert_int_equal(img_decode(base, n, NULL, &a), VG_OK);
    int rc = img_decode(j, jl, NULL, &b);
    if (rc != VG_OK)
        fail_msg("%s: %s", vg_errname(rc), vg_err_msg());
    assert_memory_equal(a.px, b.px, (size_t)64 * 48 * 3);
    img_image_free(&a);
    img_image_free(&b);
    free(j);
    free(base);
}

static size_t find_scan_data(const uint8_t *j, size_t n)
{
    for (size_t i = 2; i + 3 < n; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xDA)
            return i + 2 + ((size_t)j[i + 2] << 8 | j[i + 3]);
    fail_msg("no SOS");
    return 0;
}

static void test_jpeg_truncated(void **state)
{
    (void)state;
    for (int progressive = 0; progressive <= 1; progressive++) {
        uint8_t *px = pattern_rgb(120, 90);
        size_t n;
        uint8_t *j = vgt_jpeg_make(px, 120, 90, TJPF_RGB, TJSAMP_420, 90,
                                   progressive ? TJFLAG_PROGRESSIVE : 0, &n);
        size_t scan = find_scan_data(j, n);
        const size_t cuts[] = {3,    4,         6,     20,    100,   scan - 1,
                               scan, scan + 10, n / 2, n - 3, n - 2, n - 1};
        for (size_t i = 0; i < VG_ARRAY_LEN(cuts); i++) {
            img_image im;
            img_info info;
            int rc = img_decode(j, cuts[i], NULL, &im);
            if (rc != VG_ETRUNC)
                fail_msg("cut at %zu of %zu: %s (%s)", cuts[i], n, vg_errname(rc), vg_err_msg());
            assert_null(im.px);
            assert_int_equal(img_probe(j, cuts[i], NULL, &info), VG_ETRUNC);
        }
        free(j);
        free(px);
    }
}

static void test_jpeg_corrupt(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(120, 90, TJSAMP_420, 90, &n);
    size_t scan = find_scan_data(j, n);
    /* An EOI in the middle of the entropy data: libjpeg would pad the rest with grey and warn
     * ("premature end of data segment"); we must refuse. */
    size_t mid = scan + (n - scan) / 2;
    j[mid] = 0xFF;
    j[mid + 1] = 0xD9;
    img_image im;
    int rc = img_decode(j, n, NULL, &im);
    assert_true(rc == VG_ECORRUPT || rc == VG_ETRUNC);
    assert_null(im.px);
    /* A segment length that runs backwards. */
    uint8_t *k = jpeg_pattern(16, 16, TJSAMP_444, 90, &n);
    k[4] = 0;
    k[5] = 1; /* APP0 length 1 < 2 */
    assert_int_equal(img_decode(k, n, NULL, &im), VG_ECORRUPT);
    /* An EOI before any scan. */
    static const uint8_t eoi_only[] = {0xFF, 0xD8, 0xFF, 0xD9};
    assert_int_equal(img_decode(eoi_only, sizeof(eoi_only), NULL, &im), VG_ECORRUPT);
    free(k);
    free(j);
}

/* Patches the first SOF's height and width. */
static void jpeg_set_sof_dims(uint8_t *j, size_t n, unsigned w, unsigned h)
{
    for (size_t i = 2; i + 9 < n; i++)
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) {
            put16(j + i + 5, h, 1);
            put16(j + i + 7, w, 1);
            return;
        }
    fail_msg("no SOF");
}

static void test_jpeg_huge_and_zero_header(void **state)
{
    (void)state;
    size_t n;
    uint8_t *j = jpeg_pattern(16, 16, TJSAMP_444, 90, &n);
    jpeg_set_sof_dims(j, n, 65535, 65535);
    img_image im;
    img_info info;
    long before = vg_alloc_count();
    vg_err_clear();
    assert_int_equal(img_decode(j, n, NULL, &im), VG_EPIXELS);
    assert_non_null(strstr(vg_err_msg(), "65535x65535 = 4294836225 pixels"));
    assert_non_null(strstr(vg_err_msg(), "max_pixels 67108864"));
    assert_int_equal(img_last_limit(), IMG_LIMIT_PIXELS);
    assert_int_equal(vg_alloc_count(), before); /* refused before any pixel allocation */
    assert_int_equal(img_probe(j, n, NULL, &info), VG_EPIXELS);
    /* With a pixel budget that allows it, the dimension limit names itself. */
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_pixels = UINT64_MAX;
    assert_int_equal(img_decode(j, n, &o, &im), VG_EDIM);
    assert_non_null(strstr(vg_err_msg(), "max_dimension 65500"));
    jpeg_set_sof_dims(j, n, 16, 0);
    assert_int_equal(img_decode(j, n, NULL, &im), VG_EDIM);
    jpeg_set_sof_dims(j, n, 0, 16);
    assert_int_equal(img_probe(j, n, NULL, &info), VG_EDIM);
    free(j);
}

/* ---- PNG -------------------------------------------------------------------------------- */

static void check_png_pixels(const uint8_t *png, size_t n, const double *expect_rgb, uint32_t npx,
                             const char *what)
{
    img_image im, g;
    int rc = img_decode(png, n, NULL, &im);
    if (rc != VG_OK)
        fail_msg("%s: %s (%s)", what, vg_errname(rc), vg_err_msg());
    assert_int_equal(decode_with(png, n, IMG_GRAY, 0, &g), VG_OK);
    assert_int_equal(im.format, IMG_FMT_PNG);
    for (uint32_t i = 0; i < npx; i++) {
        for (int c = 0; c < 3; c++)
            if (im.px[3 * i + c] != (uint8_t)lround(expect_rgb[3 * i + c]))
                fail_msg("%s: pixel %u channel %d = %u, expected %.2f", what, i, c,
                         im.px[3 * i + c], expect_rgb[3 * i + c]);
        assert_luma_close(g.px[i], im.px[3 * i], im.px[3 * i + 1], im.px[3 * i + 2]);
    }
    img_image_free(&im);
    img_image_free(&g);
}

static void test_png_gray_depths(void **state)
{
    (void)state;
    for (int depth = 1; depth <= 16; depth *= 2) {
        const uint32_t w = 16, h = 3;
        uint32_t maxv = (1u << depth) - 1;
        uint8_t raw[16 * 3 * 2];
        double expect[16 * 3 * 3];
        size_t rowbytes = (w * (size_t)depth + 7) / 8;
        memset(raw, 0, sizeof(raw));
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint32_t v = (x * 37 + y * 11) & maxv;
                if (depth == 16) {
                    v = (x * 4099 + y * 12345) & 0xFFFF;
                    uint16_t s = (uint16_t)v;
                    memcpy(raw + y * rowbytes + 2 * x, &s, 2); /* host order */
                } else if (depth == 8) {
                    raw[y * rowbytes + x] = (uint8_t)v;
                } else {
                    size_t bit = (size_t)x * depth;
                    raw[y * rowbytes + bit / 8] |= (uint8_t)(v << (8 - depth - bit % 8));
                }
                double e = depth == 16 ? v / 257.0 : v * 255.0 / maxv;
                for (int c = 0; c < 3; c++)
                    expect[3 * (y * w + x) + c] = e;
            }
        size_t n;
        uint8_t *png =
            png_make(w, h, SPNG_COLOR_TYPE_GRAYSCALE, depth, 0, raw, rowbytes * h, NULL, NULL, &n);
        char what[32];
        snprintf(what, sizeof(what), "gray%d", depth);
        check_png_pixels(png, n, expect, w * h, what);
        free(png);
    }
}

static void test_png_rgb_and_16bit(void **state)
{
    (void)state;
    const uint32_t w = 20, h = 4;
    uint8_t rgb[20 * 4 * 3];
    uint16_t rgb16[20 * 4 * 3];
    double e8[20 * 4 * 3], e16[20 * 4 * 3];
    for (uint32_t i = 0; i < w * h * 3; i++) {
        rgb[i] = (uint8_t)(i * 13);
        rgb16[i] = (uint16_t)(i * 3001 + 7);
        e8[i] = rgb[i];
        e16[i] = rgb16[i] / 257.0;
    }
    size_t n;
    uint8_t *png = png_rgb8(w, h, rgb, &n);
    check_png_pixels(png, n, e8, w * h, "rgb8");
    img_image im;
    assert_int_equal(img_decode(png, n, NULL, &im), VG_OK);
    assert_memory_equal(im.px, rgb, sizeof(rgb));
    img_image_free(&im);
    free(png);
    png = png_make(w, h, SPNG_COLOR_TYPE_TRUECOLOR, 16, 0, rgb16, sizeof(rgb16), NULL, NULL, &n);
    check_png_pixels(png, n, e16, w * h, "rgb16");
    free(png);
}

static void test_png_alpha_compositing(void **state)
{
    (void)state;
    const uint32_t w = 16, h = 16;
    const uint8_t bg[3] = {10, 200, 90};
    /* RGBA8 and GA8 */
    uint8_t rgba[16 * 16 * 4], ga[16 * 16 * 2];
    uint16_t rgba16[16 * 16 * 4];
    double e_rgba[16 * 16 * 3], e_ga[16 * 16 * 3], e_16[16 * 16 * 3];
    for (uint32_t i = 0; i < w * h; i++) {
        uint8_t a = (uint8_t)(i * 255 / (w * h - 1));
        rgba[4 * i] = (uint8_t)(i * 7);
        rgba[4 * i + 1] = (uint8_t)(255 - i);
        rgba[4 * i + 2] = (uint8_t)(i * 31);
        rgba[4 * i + 3] = a;
        ga[2 * i] = (uint8_t)(i * 5);
        ga[2 * i + 1] = (uint8_t)(255 - a);
        uint16_t a16 = (uint16_t)(i * 65535 / (w * h - 1));
        for (int c = 0; c < 3; c++) {
            rgba16[4 * i + c] = (uint16_t)(i * 251 * (c + 1) + 99);
            e_rgba[3 * i + c] =
                (double)lround_div((double)a * rgba[4 * i + c] + (255.0 - a) * bg[c], 255.0);
            e_ga[3 * i + c] =
                (double)lround_div((double)(255 - a) * ga[2 * i] + (double)a * bg[c], 255.0);
            e_16[3 * i + c] = (double)lround_div(
                (double)a16 * rgba16[4 * i + c] + (65535.0 - a16) * bg[c] * 257.0, 65535.0 * 257.0);
        }
        rgba16[4 * i + 3] = a16;
    }
    struct {
        const char *what;
        int ctype, depth;
        const void *raw;
        size_t rawlen;
        const double *expect;
    } cases[] = {
        {"rgba8", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, rgba, sizeof(rgba), e_rgba},
        {"ga8", SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, ga, sizeof(ga), e_ga},
        {"rgba16", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 16, rgba16, sizeof(rgba16), e_16},
    };
    for (size_t k = 0; k < VG_ARRAY_LEN(cases); k++) {
        for (int interlace = 0; interlace <= 1; interlace++) {
            size_t n;
            uint8_t *png = png_make(w, h, cases[k].ctype, cases[k].depth, interlace, cases[k].raw,
                                    cases[k].rawlen, NULL, NULL, &n);
            img_decode_opts o;
            img_decode_opts_default(&o);
            memcpy(o.background, bg, 3);
            img_image im, g;
            assert_int_equal(img_decode(png, n, &o, &im), VG_OK);
            o.pixfmt = IMG_GRAY;
            assert_int_equal(img_decode(png, n, &o, &g), VG_OK);
            for (uint32_t i = 0; i < w * h; i++) {
                for (int c = 0; c < 3; c++)
                    if (im.px[3 * i + c] != (uint8_t)cases[k].expect[3 * i + c])
                        fail_msg("%s interlace %d: pixel %u ch %d = %u, expected %.0f",
                                 cases[k].what, interlace, i, c, im.px[3 * i + c],
                                 cases[k].expect[3 * i + c]);
                assert_luma_close(g.px[i], im.px[3 * i], im.px[3 * i + 1], im.px[3 * i + 2]);
            }
            img_info info;
            assert_int_equal(img_probe(png, n, NULL, &info), VG_OK);
            assert_int_equal(info.has_alpha, 1);
            img_image_free(&im);
            img_image_free(&g);
            free(png);
        }
    }
}

static void test_png_palette_and_trns(void **state)
{
    (void)state;
    const uint32_t w = 8, h = 2;
    struct spng_plte plte;
    memset(&plte, 0, sizeof(plte));
    plte.n_entries = 4;
    const uint8_t pal[4][3] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}, {200, 200, 200}};
    for (int i = 0; i < 4; i++) {
        plte.entries[i].red = pal[i][0];
        plte.entries[i].green = pal[i][1];
        plte.entries[i].blue = pal[i][2];
        plte.entries[i].alpha = 255;
    }
    uint8_t idx[16];
    for (int i = 0; i < 16; i++)
        idx[i] = (uint8_t)(i % 4);
    double e[16 * 3], et[16 * 3];
    const uint8_t alpha[4] = {255, 0, 128, 255};
    for (int i = 0; i < 16; i++)
        for (int c = 0; c < 3; c++) {
            e[3 * i + c] = pal[i % 4][c];
            et[3 * i + c] = (double)lround_div(
                alpha[i % 4] * (double)pal[i % 4][c] + (255.0 - alpha[i % 4]) * 255.0, 255.0);
        }
    size_t n;
    uint8_t *png = png_make(w, h, SPNG_COLOR_TYPE_INDEXED, 8, 0, idx, sizeof(idx), &plte, NULL, &n);
    check_png_pixels(png, n, e, 16, "palette");
    free(png);
    struct spng_trns trns;
    memset(&trns, 0, sizeof(trns));
    trns.n_type3_entries = 3;
    memcpy(trns.type3_alpha, alpha, 3);
    png = png_make(w, h, SPNG_COLOR_TYPE_INDEXED, 8, 0, idx, sizeof(idx), &plte, &trns, &n);
    check_png_pixels(png, n, et, 16, "palette+tRNS");
    img_info info;
    assert_int_equal(img_probe(png, n, NULL, &info), VG_OK);
    assert_int_equal(info.has_alpha, 1);
    free(png);

    /* tRNS on RGB: the key colour becomes the background (white by default). */
    uint8_t rgb[16 * 3];
    for (int i = 0; i < 16; i++) {
        memcpy(rgb + 3 * i, pal[i % 4], 3);
        for (int c = 0; c < 3; c++)
            et[3 * i + c] = (i % 4 == 2) ? 255 : pal[i % 4][c];
    }
    memset(&trns, 0, sizeof(trns));
    trns.red = 10;
    trns.green = 20;
    trns.blue = 30;
    png = png_make(w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, rgb, sizeof(rgb), NULL, &trns, &n);
    check_png_pixels(png, n, et, 16, "rgb+tRNS");
    free(png);

    /* tRNS on 8-bit gray. */
    uint8_t gray[16];
    for (int i = 0; i < 16; i++) {
        gray[i] = (uint8_t)(i * 16);
        for (int c = 0; c < 3; c++)
            et[3 * i + c] = (i == 3) ? 255 : gray[i];
    }
    memset(&trns, 0, sizeof(trns));
    trns.gray = 48;
    png = png_make(w, h, SPNG_COLOR_TYPE_GRAYSCALE, 8, 0, gray, sizeof(gray), NULL, &trns, &n);
    check_png_pixels(png, n, et, 16, "gray+tRNS");
    free(png);
}

static void test_png_interlaced_rgb(void **state)
{
    (void)state;
    uint8_t *rgb = pattern_rgb(37, 23);
    size_t n;
    uint8_t *png =
        png_make(37, 23, SPNG_COLOR_TYPE_TRUECOLOR, 8, 1, rgb, 37 * 23 * 3, NULL, NULL, &n);
    img_image im, g;
    assert_int_equal(img_decode(png, n, NULL, &im), VG_OK);
    assert_memory_equal(im.px, rgb, 37 * 23 * 3);
    assert_int_equal(decode_with(png, n, IMG_GRAY, 0, &g), VG_OK);
    for (int i = 0; i < 37 * 23; i++)
        assert_luma_close(g.px[i], rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
    img_image_free(&im);
    img_image_free(&g);
    free(png);
    free(rgb);
}

/* Builds a chunk (length, type, data, CRC) at out; returns bytes written. */
static size_t png_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len)
{
    put32(out, len, 1);
    memcpy(out + 4, type, 4);
    if (len)
        memcpy(out + 8, data, len);
    put32(out + 8 + len, crc32_of(out + 4, 4 + (size_t)len), 1);
    return 12 + (size_t)len;
}

/* Offset of the first chunk of the given type. */
static size_t png_find(const uint8_t *png, size_t n, const char *type)
{
    size_t pos = 8;
    while (pos + 8 <= n) {
        uint32_t l = (uint32_t)png[pos] << 24 | (uint32_t)png[pos + 1] << 16 |
                     (uint32_t)png[pos + 2] << 8 | png[pos + 3];
        if (memcmp(png + pos + 4, type, 4) == 0)
            return pos;
        pos += 12 + (size_t)l;
    }
    fail_msg("no %s chunk", type);
    return 0;
}

/* Checks one container carrying EXIF orientation o: probe and decode report it, decode
 * displays it (corners, swapped size for 5..8), ignore_exif keeps the stored pixels. */
static void check_oriented(const uint8_t *b, size_t n, int o, int w, int h)
{
    img_info info;
    assert_int_equal(img_probe(b, n, NULL, &info), VG_OK);
    assert_int_equal(info.orientation, o);
    assert_int_equal(info.w, w);
    img_image im;
    assert_int_equal(img_decode(b, n, NULL, &im), VG_OK);
    assert_int_equal(im.orientation, o);
    assert_int_equal(im.w, o >= 5 ? h : w);
    assert_int_equal(im.h, o >= 5 ? w : h);
    assert_int_equal(im.src_w, w);
    assert_corner(&im, 0, 0, CORNERS[o][0]);
    assert_corner(&im, im.w - 1, 0, CORNERS[o][1]);
    assert_corner(&im, 0, im.h - 1, CORNERS[o][2]);
    assert_corner(&im, im.w - 1, im.h - 1, CORNERS[o][3]);
    img_image_free(&im);
    img_image raw;
    assert_int_equal(decode_with(b, n, IMG_RGB, 1, &raw), VG_OK);
    assert_int_equal(raw.w, w);
    assert_corner(&raw, 0, 0, CORNERS[1][0]);
    assert_corner(&raw, raw.w - 1, raw.h - 1, CORNERS[1][3]);
    img_image_free(&raw);
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &im), VG_OK);
    assert_int_equal(im.w, o >= 5 ? h : w);
    img_image_free(&im);
}

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* PNG's eXIf chunk and WebP's EXIF chunk orient the image as JPEG's APP1 does. */
static void test_png_webp_exif_orientation(void **state)
{
    (void)state;
    const int w = 48, h = 32;
    uint8_t *px = pattern_quad(w, h);
    size_t pn, wn;
    uint8_t *png = png_rgb8(w, h, px, &pn);
    uint8_t *vp8 = webp_lossy(px, w, h, 100, &wn); /* RIFF size WEBP VP8 ... */
    assert_memory_equal(vp8 + 12, "VP8 ", 4);
    size_t after_ihdr = png_find(png, pn, "IHDR") + 12 + 13;
    for (int big = 0; big <= 1; big++) {
        for (int o = 1; o <= 8; o++) {
            uint8_t seg[64];
            size_t sl = exif_segment(seg, o, big);
            const uint8_t *tiff = seg + 10; /* after FF E1 len "Exif\0\0" */
            size_t tl = sl - 10;

            /* PNG: IHDR, eXIf, the rest */
            uint8_t *p = malloc(pn + 12 + tl);
            memcpy(p, png, after_ihdr);
            size_t k = after_ihdr + png_chunk(p + after_ihdr, "eXIf", tiff, (uint32_t)tl);
            memcpy(p + k, png + after_ihdr, pn - after_ihdr);
            check_oriented(p, k + pn - after_ihdr, o, w, h);
            free(p);

            /* WebP: the extended format, VP8X (EXIF flag), the VP8 chunk, EXIF; with and
             * without the "Exif\0\0" prefix some writers keep */
            for (int prefix = 0; prefix <= 1; prefix++) {
                size_t el = tl + (prefix ? 6 : 0), epad = el & 1, vl = wn - 12;
                size_t n = 12 + 18 + vl + 8 + el + epad;
                uint8_t *b = calloc(1, n);
                memcpy(b, "RIFF", 4);
                put32le(b + 4, (uint32_t)(n - 8));
                memcpy(b + 8, "WEBPVP8X", 8);
                put32le(b + 16, 10);
                b[20] = 0x08;                       /* EXIF present */
                put32le(b + 24, (uint32_t)(w - 1)); /* 3 bytes each; the 4th is overwritten */
                put32le(b + 27, (uint32_t)(h - 1));
                memcpy(b + 30, vp8 + 12, vl);
                uint8_t *e = b + 30 + vl;
                memcpy(e, "EXIF", 4);
                put32le(e + 4, (uint32_t)el);
                if (prefix)
                    memcpy(e + 8, "Exif\0\0", 6);
                memcpy(e + 8 + (prefix ? 6 : 0), tiff, tl);
                check_oriented(b, n, o, w, h);
                free(b);
            }
        }
    }
    /* a malformed eXIf (cut TIFF) is no orientation, not an error */
    uint8_t seg[64];
    size_t sl = exif_segment(seg, 6, 0);
    uint8_t *p = malloc(pn + 12 + sl);
    memcpy(p, png, after_ihdr);
    size_t k = after_ihdr + png_chunk(p + after_ihdr, "eXIf", seg + 10, 12);
    memcpy(p + k, png + after_ihdr, pn - after_ihdr);
    check_oriented(p, k + pn - after_ihdr, 1, w, h);
    free(p);
    free(vp8);
    free(png);
    free(px);
}

static void test_png_apng_default_image(void **state)
{
    (void)state;
    const uint32_t w = 8, h = 8;
    uint8_t red[8 * 8 * 3], blue[8 * 8 * 3];
    for (int i = 0; i < 64; i++) {
        memcpy(red + 3 * i, "\xFF\x00\x00", 3);
        memcpy(blue + 3 * i, "\x00\x00\xFF", 3);
    }
    size_t na, nb;
    uint8_t *a = png_rgb8(w, h, red, &na), *b = png_rgb8(w, h, blue, &nb);
    size_t idat_a = png_find(a, na, "IDAT"), idat_b = png_find(b, nb, "IDAT");
    uint32_t lb = (uint32_t)b[idat_b] << 24 | (uint32_t)b[idat_b + 1] << 16 |
                  (uint32_t)b[idat_b + 2] << 8 | b[idat_b + 3];
    uint8_t *apng = malloc(na + nb + 256);
    assert_non_null(apng);
    size_t pos = idat_a; /* signature + IHDR (+ anything before IDAT) */
    memcpy(apng, a, pos);
    uint8_t actl[8], fctl[26], *fdat = malloc(4 + (size_t)lb);
    assert_non_null(fdat);
    put32(actl, 2, 1); /* two frames */
    put32(actl + 4, 0, 1);
    memset(fctl, 0, sizeof(fctl));
    put32(fctl + 4, w, 1);
    put32(fctl + 8, h, 1);
    put16(fctl + 20, 1, 1);
    put16(fctl + 22, 10, 1);
    pos += png_chunk(apng + pos, "acTL", actl, 8);
    put32(fctl, 0, 1); /* sequence 0: frame 0 is the default image */
    pos += png_chunk(apng + pos, "fcTL", fctl, 26);
    size_t la = na - idat_a - 12; /* IDAT through the end minus IEND */
    memcpy(apng + pos, a + idat_a, la);
    pos += la;
    put32(fctl, 1, 1);
    pos += png_chunk(apng + pos, "fcTL", fctl, 26);
    put32(fdat, 2, 1);
    memcpy(fdat + 4, b + idat_b + 8, lb);
    pos += png_chunk(apng + pos, "fdAT", fdat, 4 + lb);
    pos += png_chunk(apng + pos, "IEND", NULL, 0);

    img_info info;
    assert_int_equal(img_probe(apng, pos, NULL, &info), VG_OK);
    assert_int_equal(info.frames, 2);
    img_image im;
    assert_int_equal(img_decode(apng, pos, NULL, &im), VG_OK);
    assert_memory_equal(im.px, red, sizeof(red));
    img_image_free(&im);
    free(fdat);
    free(apng);
    free(a);
    free(b);
}

static void test_png_modes(void **state)
{
    (void)state;
    /* Crops of the same photo saved by PIL as L, LA, RGBA, P and 1-bit PNGs (converted from
     * the JPEG original). Gray modes are compared in gray, colour modes in RGB. */
    size_t n;
    uint8_t *b = read_data(DATA("mode-RGBA.png"), &n);
    img_image ref, refg;
    assert_int_equal(decode_with(b, n, IMG_RGB, 0, &ref), VG_OK);
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &refg), VG_OK);
    free(b);
    /* RGBA (opaque) equals the JPEG original's decode up to the crop edge. */
    b = read_data(DATA("mode-original.jpg"), &n);
    img_image jp;
    assert_int_equal(img_decode(b, n, NULL, &jp), VG_OK);
    assert_true(mean_abs_diff(jp.px, ref.px, (size_t)ref.w * ref.h * 3) < 0.1);
    img_image_free(&jp);
    free(b);
    static const struct {
        const char *file;
        img_pixfmt pf;
        double max;
    } cases[] = {
        {DATA("mode-L.png"), IMG_GRAY, 0.1},
        {DATA("mode-LA.png"), IMG_GRAY, 0.1},
        {DATA("mode-P.png"), IMG_RGB, 25.0},
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(cases); i++) {
        b = read_data(cases[i].file, &n);
        img_image im;
        assert_int_equal(decode_with(b, n, cases[i].pf, 0, &im), VG_OK);
        const img_image *r = cases[i].pf == IMG_GRAY ? &refg : &ref;
        assert_int_equal(im.w, r->w);
        double d = mean_abs_diff(im.px, r->px, (size_t)im.w * im.h * im.channels);
        print_message("%s: mean abs diff %.3f\n", cases[i].file, d);
        assert_true(d < cases[i].max);
        img_image_free(&im);
        free(b);
    }
    /* 1-bit: dithered, so compare 8x8 block means. */
    b = read_data(DATA("mode-1.png"), &n);
    img_image bw;
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &bw), VG_OK);
    double s = 0;
    int blocks = 0;
    for (uint32_t y = 0; y + 8 <= bw.h; y += 8)
        for (uint32_t x = 0; x + 8 <= bw.w; x += 8, blocks++) {
            double m1 = 0, m2 = 0;
            for (int dy = 0; dy < 8; dy++)
                for (int dx = 0; dx < 8; dx++) {
                    size_t k = (size_t)(y + dy) * bw.w + x + dx;
                    assert_true(bw.px[k] == 0 || bw.px[k] == 255);
                    m1 += bw.px[k];
                    m2 += refg.px[k];
                }
            s += fabs(m1 - m2) / 64;
        }
    print_message("mode-1.png: 8x8 block mean abs diff %.3f\n", s / blocks);
    assert_true(s / blocks < 20.0);
    img_image_free(&bw);
    free(b);
    img_image_free(&ref);
    img_image_free(&refg);
}

static void test_png_truncated_and_corrupt(void **state)
{
    (void)state;
    uint8_t *rgb = pattern_rgb(64, 64);
    size_t n;
    uint8_t *png = png_rgb8(64, 64, rgb, &n);
    size_t idat = png_find(png, n, "IDAT");
    const size_t cuts[] = {4,         8,     12,     20,     33,    idat + 4,
                           idat + 20, n / 2, n - 13, n - 12, n - 5, n - 1};
    for (size_t i = 0; i < VG_ARRAY_LEN(cuts); i++) {
        img_image im;
        int rc = img_decode(png, cuts[i], NULL, &im);
        if (rc != VG_ETRUNC)
            fail_msg("cut at %zu of %zu: %s (%s)", cuts[i], n, vg_errname(rc), vg_err_msg());
        assert_null(im.px);
    }
    /* A flipped bit in IDAT: the CRC catches it. */
    uint8_t *bad = malloc(n);
    assert_non_null(bad);
    memcpy(bad, png, n);
    bad[idat + 8 + 30] ^= 0x10;
    img_image im;
    assert_int_equal(img_decode(bad, n, NULL, &im), VG_ECORRUPT);
    /* The same flip with a recomputed CRC: zlib's Adler-32 or the filter bytes catch it. */
    png_fix_crc(bad, idat);
    int rc = img_decode(bad, n, NULL, &im);
    assert_int_equal(rc, VG_ECORRUPT);
    free(bad);
    free(png);
    free(rgb);
}

static void test_png_huge_chunk_and_header(void **state)
{
    (void)state;
    uint8_t rgb[4 * 4 * 3] = {0};
    size_t n;
    uint8_t *png = png_rgb8(4, 4, rgb, &n);
    /* A tEXt chunk claiming 2 GiB - 1 right after IHDR, then the rest of the file. */
    uint8_t *big = malloc(n + 64);
    assert_non_null(big);
    size_t pos = 33;
    memcpy(big, png, pos);
    put32(big + pos, 0x7FFFFFFFu, 1);
    memcpy(big + pos + 4, "tEXt", 4);
    memcpy(big + pos + 8, "key\0value", 9);
    memcpy(big + pos + 17, png + 33, n - 33);
    img_image im;
    int rc = img_decode(big, n + 17, NULL, &im);
    assert_true(rc == VG_ETRUNC || rc == VG_ECORRUPT || rc == VG_ETOOBIG);
    assert_null(im.px);
    /* Over PNG's 2^31-1 chunk length limit. */
    put32(big + pos, 0xFFFFFFF0u, 1);
    rc = img_decode(big, n + 17, NULL, &im);
    assert_true(rc == VG_ETRUNC || rc == VG_ECORRUPT || rc == VG_ETOOBIG);
    free(big);

    /* IHDR claiming 65535x65535 (valid CRC). */
    put32(png + 16, 65535, 1);
    put32(png + 20, 65535, 1);
    png_fix_crc(png, 8);
    long before = vg_alloc_count();
    assert_int_equal(img_decode(png, n, NULL, &im), VG_EPIXELS);
    assert_non_null(strstr(vg_err_msg(), "65535x65535 = 4294836225 pixels, more than max_pixels"));
    assert_int_equal(vg_alloc_count(), before);
    img_info info;
    assert_int_equal(img_probe(png, n, NULL, &info), VG_EPIXELS);
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_pixels = UINT64_MAX;
    rc = img_decode(png, n, &o, &im);
    assert_int_equal(rc, VG_EDIM);
    assert_non_null(strstr(vg_err_msg(), "max_dimension"));
    /* Zero width. */
    put32(png + 16, 0, 1);
    png_fix_crc(png, 8);
    assert_int_equal(img_decode(png, n, NULL, &im), VG_EDIM);
    free(png);
}

/* ---- decompression bombs (issue 9) -------------------------------------------------------- */

/* A bomb fixture under default options: refused by decode and probe with `code`, the detail
 * naming the limit, img_last_limit() saying which, and no pixel buffer allocated (refused from
 * the headers, before the library decoded anything). */
static void assert_bomb_refused(const char *path, int code, img_limit_kind kind, const char *detail)
{
    size_t n;
    uint8_t *b = read_data(path, &n);
    img_image im;
    img_info info;
    long before = vg_alloc_count();
    vg_err_clear();
    assert_int_equal(img_decode(b, n, NULL, &im), code);
    if (!strstr(vg_err_msg(), detail))
        fail_msg("%s: detail '%s' lacks '%s'", path, vg_err_msg(), detail);
    assert_int_equal(img_last_limit(), kind);
    assert_null(im.px);
    assert_int_equal(vg_alloc_count(), before);
    assert_int_equal(img_probe(b, n, NULL, &info), code);
    assert_int_equal(img_last_limit(), kind);
    free(b);
}

/* Limits all raised, for reading a bomb's work units with img_probe. */
static void limits_unbounded(img_limits *l)
{
    img_limits_default(l);
    l->max_pixels = UINT64_MAX;
    l->max_jpeg_scans = UINT32_MAX;
    l->max_lossless_pixels = UINT64_MAX;
    l->max_decode_work = UINT64_MAX;
    l->max_decode_ratio = 0;
}

static void test_bomb_jpeg_scans(void **state)
{
    (void)state;
    /* 499 scans of a 256x256 frame: libjpeg-turbo's own cap (500) let it through. */
    assert_bomb_refused(DATA("bomb-scans.jpg"), VG_ECORRUPT, IMG_LIMIT_JPEG_SCANS,
                        "JPEG has 499 scans, more than max_jpeg_scans 64");
    size_t n;
    uint8_t *b = read_data(DATA("bomb-scans.jpg"), &n);
    img_limits l;
    limits_unbounded(&l);
    img_info info;
    assert_int_equal(img_probe(b, n, &l, &info), VG_OK);
    /* 499 scans x 65536 samples, one IDCT pass over them, 256*256*3 outputs. */
    assert_true(info.work == 499ull * 65536 + 65536 + 196608);
    /* The scan limit is what refused it: raised, the (small) image decodes. */
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_jpeg_scans = 499;
    img_image im;
    assert_int_equal(img_decode(b, n, &o, &im), VG_OK);
    assert_int_equal(im.w, 256);
    assert_int_equal(img_last_limit(), IMG_LIMIT_NONE);
    img_image_free(&im);
    /* And the work budget refuses it on its own when set below its cost. */
    o.limits.max_decode_work = info.work - 1;
    assert_int_equal(img_decode(b, n, &o, &im), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_WORK);
    assert_non_null(strstr(vg_err_msg(), "more than max_decode_work"));
    free(b);
}

static void test_bomb_jpeg_work(void **state)
{
    (void)state;
    /* 8192x8192 (within max_pixels) and 40 scans (within max_jpeg_scans), 136 KB: each scan
     * passes over 67 M coefficients. */
    assert_bomb_refused(DATA("bomb-work.jpg"), VG_EPIXELS, IMG_LIMIT_DECODE_WORK,
                        "JPEG decode needs 2952790016 work units (samples x passes), more than "
                        "max_decode_work 2000000000");
    size_t n;
    uint8_t *b = read_data(DATA("bomb-work.jpg"), &n);
    img_limits l;
    limits_unbounded(&l);
    img_info info;
    assert_int_equal(img_probe(b, n, &l, &info), VG_OK);
    assert_true(info.work == 40ull * 8192 * 8192 + 8192ull * 8192 + 3ull * 8192 * 8192);
    assert_true(info.work > IMG_DEFAULT_MAX_DECODE_WORK);
    free(b);
}

/* Normal photos stay within every default limit: the fixtures, the bench images, and a
 * 64 Mpx 4:4:4 progressive header (libjpeg's 10-scan script, the costliest common layout). */
static void test_bomb_limits_admit_photos(void **state)
{
    (void)state;
    static const char *const files[] = {DATA("mode-original.jpg"),
                                        DATA("mode-CMYK.jpg"),
                                        DATA("exif-rotn-6-small.jpg"),
                                        DATA("mode-1.png"),
                                        DATA("mode-RGBA.png"),
                                        DATA("mode-F.webp"),
                                        DATA("anim.webp"),
                                        VG_TEST_DATA_DIR "/../../bench/images/HD.jpg",
                                        VG_TEST_DATA_DIR "/../../bench/images/L.jpg"};
    for (size_t i = 0; i < VG_ARRAY_LEN(files); i++) {
        size_t n;
        uint8_t *b = read_data(files[i], &n);
        img_info info;
        img_image im;
        assert_int_equal(img_probe(b, n, NULL, &info), VG_OK);
        assert_true(info.work > 0 && info.work <= IMG_DEFAULT_MAX_DECODE_WORK);
        assert_true(info.mem > 0 && info.mem <= IMG_DECODE_FREE_BYTES);
        if (img_decode(b, n, NULL, &im) != VG_OK)
            fail_msg("%s: %s", files[i], vg_err_msg());
        img_image_free(&im);
        free(b);
    }
    uint8_t *px = pattern_rgb(64, 48);
    size_t n;
    uint8_t *j = vgt_jpeg_make(px, 64, 48, TJPF_RGB, TJSAMP_444, 90, TJFLAG_PROGRESSIVE, &n);
    jpeg_set_sof_dims(j, n, 8192, 8192);
    img_info info;
    /* A real 64 Mpx photo is megabytes; this header is 64x48's few KB, so the ratio rule is off
     * here (it is what would refuse such a file). */
    img_limits l;
    img_limits_default(&l);
    l.max_decode_ratio = 0;
    assert_int_equal(img_probe(j, n, &l, &info), VG_OK);
    /* 14 component passes over 64 Mi samples (DC first and refine over 3 components, 8 AC
     * scans over one), one IDCT pass over the 3 components, 3 outputs per pixel. */
    assert_true(info.work == 20ull * 8192 * 8192);
    assert_true(info.work <= IMG_DEFAULT_MAX_DECODE_WORK);
    /* RGB output and 2-byte coefficients of 3 components: 576 MiB, a ratio of 1024 from 576 KB
     * of JPEG (a 64 Mpx photo is 10 MB or more). */
    assert_true(info.mem == 9ull * 8192 * 8192);
    assert_true(info.mem / IMG_DEFAULT_MAX_DECODE_RATIO < 600000);
    assert_int_equal(img_probe(j, n, NULL, &info), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_RATIO);
    free(j);
    free(px);
}

static void test_bomb_png(void **state)
{
    (void)state;
    /* 12 KB of 1-bit zeros saying 10000x10000: 300 MB of RGB. */
    assert_bomb_refused(DATA("bomb-1bit.png"), VG_EPIXELS, IMG_LIMIT_PIXELS,
                        "10000x10000 = 100000000 pixels, more than max_pixels 67108864");
    size_t n;
    uint8_t *b = read_data(DATA("bomb-1bit.png"), &n);
    img_limits l;
    limits_unbounded(&l);
    img_info info;
    assert_int_equal(img_probe(b, n, &l, &info), VG_OK);
    /* Inflated rows (1 + 1250 bytes each), RGBA8 expansion, RGB output. */
    assert_true(info.work == 10000ull * 1251 + 100000000ull * 4 + 100000000ull * 3);
    assert_true(info.mem == 100000000ull * 3);
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_pixels = UINT64_MAX;
    img_image im;
    /* Pixels allowed: 300 MB of RGB from 12 KB is over the decode ratio. */
    assert_int_equal(img_decode(b, n, &o, &im), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_RATIO);
    assert_non_null(strstr(vg_err_msg(), "PNG decode needs 300000000 bytes of memory for 12227 "
                                         "encoded bytes, more than max_decode_ratio 1024"));
    o.limits.max_decode_work = info.work - 1;
    assert_int_equal(img_decode(b, n, &o, &im), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_WORK);
    free(b);
    /* 8 KB saying 8192x8192, within max_pixels: 192 MiB of RGB, refused by the ratio. */
    assert_bomb_refused(DATA("bomb-ratio.png"), VG_EPIXELS, IMG_LIMIT_DECODE_RATIO,
                        "PNG decode needs 201326592 bytes of memory for 8229 encoded bytes");
    /* The ratio rule spares what IMG_DECODE_FREE_BYTES covers: a 12 MP phone frame, rotated. */
    assert_true(4000ull * 3000 * 3 * 2 <= IMG_DECODE_FREE_BYTES);
    /* A zTXt chunk inflating to 17 MB: hostile content (422), not a large upload (413). */
    assert_bomb_refused(DATA("bomb-ztxt.png"), VG_ECORRUPT, IMG_LIMIT_PNG_CHUNKS,
                        "ancillary chunks exceed the chunk limits");
}

static void test_bomb_webp_lossless(void **state)
{
    (void)state;
    /* 38 bytes saying 8192x8192 lossless: 256 MiB of ARGB inside libwebp plus our output. */
    assert_bomb_refused(DATA("bomb-lossless.webp"), VG_EPIXELS, IMG_LIMIT_LOSSLESS_PIXELS,
                        "lossless WebP is 8192x8192 = 67108864 pixels, more than "
                        "max_lossless_pixels 16777216");
    size_t n;
    uint8_t *b = read_data(DATA("bomb-lossless.webp"), &n);
    img_limits l;
    limits_unbounded(&l);
    img_info info;
    assert_int_equal(img_probe(b, n, &l, &info), VG_OK);
    assert_true(info.work == 11ull * 8192 * 8192); /* ARGB, RGBA, RGB */
    assert_true(info.mem == 7ull * 8192 * 8192);   /* our RGB, libwebp's ARGB */
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_lossless_pixels = UINT64_MAX;
    img_image im;
    assert_int_equal(img_decode(b, n, &o, &im), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_RATIO);
    o.limits.max_decode_work = info.work - 1;
    assert_int_equal(img_decode(b, n, &o, &im), VG_EPIXELS);
    assert_int_equal(img_last_limit(), IMG_LIMIT_DECODE_WORK);
    free(b);
    /* A lossy WebP is not held to the lossless limit. */
    b = read_data(DATA("mode-F.webp"), &n);
    img_decode_opts_default(&o);
    o.limits.max_lossless_pixels = 1;
    assert_int_equal(img_decode(b, n, &o, &im), VG_OK);
    img_image_free(&im);
    free(b);
}

/* ---- WebP ------------------------------------------------------------------------------- */

static void test_webp_lossy_and_lossless(void **state)
{
    (void)state;
    const int w = 64, h = 48;
    uint8_t *rgb = pattern_rgb(w, h);
    size_t n;
    uint8_t *wp = webp_lossy(rgb, w, h, 95, &n);
    img_image im, g;
    assert_int_equal(img_decode(wp, n, NULL, &im), VG_OK);
    assert_int_equal(im.format, IMG_FMT_WEBP);
    assert_int_equal(im.w, w);
    assert_int_equal(im.h, h);
    assert_true(mean_abs_diff(im.px, rgb, (size_t)w * h * 3) < 6.0);
    assert_int_equal(decode_with(wp, n, IMG_GRAY, 0, &g), VG_OK);
    for (int i = 0; i < w * h; i++)
        assert_luma_close(g.px[i], im.px[3 * i], im.px[3 * i + 1], im.px[3 * i + 2]);
    img_info info;
    assert_int_equal(img_probe(wp, n, NULL, &info), VG_OK);
    assert_int_equal(info.has_alpha, 0);
    assert_int_equal(info.frames, 1);
    img_image_free(&im);
    img_image_free(&g);
    free(wp);

    /* Lossless RGBA: exact compositing over a chosen background. */
    uint8_t *rgba = malloc((size_t)w * h * 4);
    assert_non_null(rgba);
    for (int i = 0; i < w * h; i++) {
        memcpy(rgba + 4 * i, rgb + 3 * i, 3);
        rgba[4 * i + 3] = (uint8_t)(i * 255 / (w * h - 1));
    }
    wp = webp_lossless_rgba(rgba, w, h, &n);
    img_decode_opts o;
    img_decode_opts_default(&o);
    const uint8_t bg[3] = {0, 64, 255};
    memcpy(o.background, bg, 3);
    assert_int_equal(img_decode(wp, n, &o, &im), VG_OK);
    o.pixfmt = IMG_GRAY;
    assert_int_equal(img_decode(wp, n, &o, &g), VG_OK);
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = rgba + 4 * i;
        for (int c = 0; c < 3; c++)
            assert_int_equal(im.px[3 * i + c],
                             lround_div((double)p[3] * p[c] + (255.0 - p[3]) * bg[c], 255.0));
        assert_luma_close(g.px[i], im.px[3 * i], im.px[3 * i + 1], im.px[3 * i + 2]);
    }
    assert_int_equal(img_probe(wp, n, NULL, &info), VG_OK);
    assert_int_equal(info.has_alpha, 1);
    img_image_free(&im);
    img_image_free(&g);
    free(wp);
    free(rgba);
    free(rgb);
}

static void test_webp_photo_and_animation(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = read_data(DATA("mode-F.webp"), &n);
    img_image im;
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &im), VG_OK);
    free(b);
    b = read_data(DATA("mode-original.jpg"), &n);
    img_image ref;
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &ref), VG_OK);
    free(b);
    double d = mean_abs_diff(im.px, ref.px, (size_t)ref.w * ref.h);
    print_message("mode-F.webp: gray mean abs diff %.3f\n", d);
    assert_true(d < 5.0);
    img_image_free(&im);

    /* Two frames: the photo halved, then mirrored. The first must come out, upright. */
    b = read_data(DATA("anim.webp"), &n);
    img_info info;
    assert_int_equal(img_probe(b, n, NULL, &info), VG_OK);
    assert_int_equal(info.frames, 2);
    assert_int_equal(info.w, ref.w / 2);
    assert_int_equal(decode_with(b, n, IMG_GRAY, 0, &im), VG_OK);
    assert_int_equal(im.w, ref.w / 2);
    assert_int_equal(im.h, ref.h / 2);
    double same = 0, mirrored = 0;
    for (uint32_t y = 0; y < im.h; y++)
        for (uint32_t x = 0; x < im.w; x++) {
            double r =
                (ref.px[(2 * y) * ref.w + 2 * x] + ref.px[(2 * y) * ref.w + 2 * x + 1] +
                 ref.px[(2 * y + 1) * ref.w + 2 * x] + ref.px[(2 * y + 1) * ref.w + 2 * x + 1]) /
                4.0;
            same += fabs(im.px[y * im.w + x] - r);
            mirrored += fabs(im.px[y * im.w + (im.w - 1 - x)] - r);
        }
    same /= (double)im.w * im.h;
    mirrored /= (double)im.w * im.h;
    print_message("anim.webp: first frame vs halved photo %.3f, vs mirrored %.3f\n", same,
                  mirrored);
    assert_true(same < 6.0);
    assert_true(same * 3 < mirrored);
    img_image_free(&im);
    img_image_free(&ref);

    /* Truncated animation: an error, never the frames that happen to be there. */
    assert_int_equal(img_decode(b, n - 100, NULL, &im), VG_ETRUNC);
    assert_null(im.px);
    free(b);
}

static void test_webp_truncated_corrupt_huge(void **state)
{
    (void)state;
    uint8_t *rgb = pattern_rgb(64, 48);
    size_t n;
    uint8_t *wp = webp_lossy(rgb, 64, 48, 90, &n);
    const size_t cuts[] = {4, 10, 12, 16, 20, 25, 30, n / 2, n - 10, n - 1};
    for (size_t i = 0; i < VG_ARRAY_LEN(cuts); i++) {
        img_image im;
        int rc = img_decode(wp, cuts[i], NULL, &im);
        if (rc != VG_ETRUNC)
            fail_msg("cut at %zu of %zu: %s (%s)", cuts[i], n, vg_errname(rc), vg_err_msg());
        assert_null(im.px);
    }
    /* Damaged VP8 frame header (start code). */
    uint8_t *bad = malloc(n);
    assert_non_null(bad);
    memcpy(bad, wp, n);
    bad[23] ^= 0xFF;
    img_image im;
    assert_int_equal(img_decode(bad, n, NULL, &im), VG_ECORRUPT);
    free(bad);

    /* VP8X header claiming a 65535x65535 canvas (animated, so the header is all it needs). */
    uint8_t vp8x[30];
    memcpy(vp8x, "RIFF", 4);
    put32(vp8x + 4, 22, 0);
    memcpy(vp8x + 8, "WEBPVP8X", 8);
    put32(vp8x + 16, 10, 0);
    vp8x[20] = 0x02; /* animation flag */
    vp8x[21] = vp8x[22] = vp8x[23] = 0;
    vp8x[24] = 0xFE; /* width-1 = 65534, 24-bit little-endian */
    vp8x[25] = 0xFF;
    vp8x[26] = 0x00;
    vp8x[27] = 0xFE;
    vp8x[28] = 0xFF;
    vp8x[29] = 0x00;
    long before = vg_alloc_count();
    assert_int_equal(img_decode(vp8x, sizeof(vp8x), NULL, &im), VG_EPIXELS);
    assert_non_null(strstr(vg_err_msg(), "65535x65535 = 4294836225 pixels, more than max_pixels"));
    assert_int_equal(vg_alloc_count(), before);
    img_info info;
    assert_int_equal(img_probe(vp8x, sizeof(vp8x), NULL, &info), VG_EPIXELS);
    free(wp);
    free(rgb);
}

/* ---- shared error paths ----------------------------------------------------------------- */

static void test_empty_and_unknown(void **state)
{
    (void)state;
    img_image im;
    img_info info;
    static const uint8_t one = 0xFF;
    assert_int_equal(img_decode(&one, 0, NULL, &im), VG_ETRUNC);
    assert_non_null(strstr(vg_err_msg(), "empty"));
    assert_int_equal(img_decode(NULL, 0, NULL, &im), VG_ETRUNC);
    assert_int_equal(img_probe(NULL, 0, NULL, &info), VG_ETRUNC);
    /* prefixes of a signature are truncated images */
    assert_int_equal(img_decode(&one, 1, NULL, &im), VG_ETRUNC);
    assert_int_equal(img_decode((const uint8_t *)"\x89PNG", 4, NULL, &im), VG_ETRUNC);
    assert_int_equal(img_decode((const uint8_t *)"RIFF\0\0\0\0WE", 10, NULL, &im), VG_ETRUNC);
    /* anything else is an unknown format */
    static const struct {
        const char *b;
        size_t n;
    } others[] = {
        {"GIF89a\x01\x00\x01\x00", 10}, {"BM\x3a\0\0\0\0\0\0\0", 10}, {"<svg xmlns=", 11},
        {"II*\0\x08\0\0\0", 8},         {"RIFF\0\0\0\0WAVEfmt ", 16}, {"\xFF\xD8\x00\x00", 4},
        {"\x89PNG\r\n\x1a\x00", 8}};
    for (size_t i = 0; i < VG_ARRAY_LEN(others); i++) {
        const uint8_t *b = (const uint8_t *)others[i].b;
        assert_int_equal(img_decode(b, others[i].n, NULL, &im), VG_EFORMAT);
        assert_int_equal(img_probe(b, others[i].n, NULL, &info), VG_EFORMAT);
        assert_null(im.px);
    }
}

static void test_limits_name_themselves(void **state)
{
    (void)state;
    uint8_t *rgb = pattern_rgb(100, 80);
    size_t nj, np, nw;
    uint8_t *j = vgt_jpeg_make(rgb, 100, 80, TJPF_RGB, TJSAMP_420, 90, 0, &nj);
    uint8_t *p = png_rgb8(100, 80, rgb, &np);
    uint8_t *w = webp_lossy(rgb, 100, 80, 90, &nw);
    const struct {
        const uint8_t *b;
        size_t n;
    } files[] = {{j, nj}, {p, np}, {w, nw}};
    for (size_t i = 0; i < 3; i++) {
        img_decode_opts o;
        img_image im;
        img_info info;
        img_decode_opts_default(&o);
        o.limits.max_input_bytes = files[i].n - 1;
        assert_int_equal(img_decode(files[i].b, files[i].n, &o, &im), VG_ETOOBIG);
        assert_non_null(strstr(vg_err_msg(), "max_input_bytes"));
        assert_int_equal(img_probe(files[i].b, files[i].n, &o.limits, &info), VG_ETOOBIG);
        img_decode_opts_default(&o);
        o.limits.max_pixels = 100 * 80 - 1;
        assert_int_equal(img_decode(files[i].b, files[i].n, &o, &im), VG_EPIXELS);
        assert_non_null(strstr(vg_err_msg(), "100x80 = 8000 pixels, more than max_pixels 7999"));
        img_decode_opts_default(&o);
        o.limits.max_dimension = 99;
        assert_int_equal(img_decode(files[i].b, files[i].n, &o, &im), VG_EDIM);
        assert_non_null(strstr(vg_err_msg(), "max_dimension 99"));
        o.limits.max_dimension = 100;
        assert_int_equal(img_decode(files[i].b, files[i].n, &o, &im), VG_OK);
        img_image_free(&im);
    }
    free(j);
    free(p);
    free(w);
    free(rgb);
}

static void test_extreme_shapes(void **state)
{
    (void)state;
    static const int shapes[][2] = {{1, 1}, {10000, 50}, {50, 10000}, {2, 1}};
    for (size_t s = 0; s < VG_ARRAY_LEN(shapes); s++) {
        int w = shapes[s][0], h = shapes[s][1];
        uint8_t *rgb = pattern_rgb(w, h);
        size_t n[3];
        uint8_t *f[3];
        f[0] = vgt_jpeg_make(rgb, w, h, TJPF_RGB, TJSAMP_444, 95, 0, &n[0]);
        f[1] = png_rgb8((uint32_t)w, (uint32_t)h, rgb, &n[1]);
        uint8_t *lw = NULL;
        n[2] = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &lw);
        assert_true(n[2] > 0);
        f[2] = malloc(n[2]);
        assert_non_null(f[2]);
        memcpy(f[2], lw, n[2]);
        WebPFree(lw);
        for (int k = 0; k < 3; k++) {
            img_image im;
            int rc = img_decode(f[k], n[k], NULL, &im);
            if (rc != VG_OK)
                fail_msg("%dx%d format %d: %s", w, h, k, vg_err_msg());
            assert_int_equal(im.w, w);
            assert_int_equal(im.h, h);
            if (k >= 1) { /* PNG and lossless WebP are exact */
                assert_memory_equal(im.px, rgb, (size_t)w * h * 3);
            } else {
                double d = mean_abs_diff(im.px, rgb, (size_t)w * h * 3);
                if (d >= 12.0)
                    fail_msg("%dx%d format %d: mean abs diff %.2f", w, h, k, d);
            }
            img_image_free(&im);
            /* and the smallest scaled JPEG */
            img_decode_opts o;
            img_decode_opts_default(&o);
            o.min_w = o.min_h = 1;
            assert_int_equal(img_decode(f[k], n[k], &o, &im), VG_OK);
            assert_true(im.w >= 1 && im.h >= 1);
            if (k == 0) /* JPEG: the finest scale among those giving the same (tiny) size */
                assert_int_equal(im.scale_denom, w == 1 && h == 1 ? 1 : (w == 2 ? 2 : 8));
            img_image_free(&im);
            free(f[k]);
        }
        free(rgb);
    }
}

/* ---- fault injection -------------------------------------------------------------------- */

static void walk_alloc_failures(const uint8_t *b, size_t n, img_pixfmt pf, const char *what)
{
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.pixfmt = pf;
    int failures = 0;
    for (long k = 1; k < 64; k++) {
        img_image im;
        vg_alloc_fail_after(k);
        int rc = img_decode(b, n, &o, &im);
        vg_alloc_fail_after(0);
        if (rc == VG_OK) {
            img_image_free(&im);
            assert_true(failures > 0);
            return;
        }
        if (rc != VG_ENOMEM)
            fail_msg("%s: failing allocation %ld gave %s", what, k, vg_errname(rc));
        assert_null(im.px);
        failures++;
    }
    fail_msg("%s: never succeeded", what);
}

static void test_fault_injection(void **state)
{
    (void)state;
    size_t n, jl;
    /* CMYK + EXIF orientation: output, CMYK and orientation buffers */
    uint8_t cmyk[24 * 16 * 4];
    for (size_t i = 0; i < sizeof(cmyk); i++)
        cmyk[i] = (uint8_t)(i * 3);
    uint8_t *j = vgt_jpeg_make(cmyk, 24, 16, TJPF_CMYK, TJSAMP_444, 90, 0, &n);
    uint8_t seg[64];
    size_t sl = exif_segment(seg, 8, 0);
    uint8_t *je = jpeg_insert(j, n, seg, sl, &jl);
    walk_alloc_failures(je, jl, IMG_RGB, "jpeg cmyk+exif");
    walk_alloc_failures(je, jl, IMG_GRAY, "jpeg cmyk+exif gray");
    free(je);
    free(j);
    /* PNG with alpha through the row path, interlaced through the full buffer */
    uint8_t rgba[20 * 10 * 4];
    for (size_t i = 0; i < sizeof(rgba); i++)
        rgba[i] = (uint8_t)(i * 5);
    for (int il = 0; il <= 1; il++) {
        uint8_t *p = png_make(20, 10, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, il, rgba, sizeof(rgba),
                              NULL, NULL, &n);
        walk_alloc_failures(p, n, IMG_RGB, "png rgba");
        walk_alloc_failures(p, n, IMG_GRAY, "png rgba gray");
        free(p);
    }
    /* WebP with alpha, and animated */
    uint8_t *w = webp_lossless_rgba(rgba, 20, 10, &n);
    walk_alloc_failures(w, n, IMG_RGB, "webp rgba");
    free(w);
    uint8_t *a = read_data(DATA("anim.webp"), &n);
    walk_alloc_failures(a, n, IMG_GRAY, "webp anim");
    free(a);
    /* img_apply_orientation and img_crop leave the image untouched on failure. */
    uint8_t *rgb = pattern_rgb(8, 4);
    img_image im = {0};
    im.px = vg_malloc(8 * 4 * 3);
    assert_non_null(im.px);
    memcpy(im.px, rgb, 8 * 4 * 3);
    im.w = 8;
    im.h = 4;
    im.channels = 3;
    img_image c;
    vg_alloc_fail_after(1);
    assert_int_equal(img_apply_orientation(&im, 6), VG_ENOMEM);
    assert_int_equal(img_crop(&im, 0, 0, 2, 2, &c), VG_ENOMEM);
    vg_alloc_fail_after(0);
    assert_int_equal(im.w, 8);
    assert_memory_equal(im.px, rgb, 8 * 4 * 3);
    img_image_free(&im);
    free(rgb);
}

/* ---- pixel operations ------------------------------------------------------------------- */

static void test_apply_orientation_exact(void **state)
{
    (void)state;
    /* 3x2 gray image: a b c / d e f */
    static const uint8_t src[6] = {'a', 'b', 'c', 'd', 'e', 'f'};
    static const char *const want[9] = {NULL,     "abcdef", "cbafed", "fedcba", "defabc",
                                        "adbecf", "daebfc", "fcebda", "cfbead"};
    for (int o = 1; o <= 8; o++) {
        img_image im = {0};
        im.px = vg_malloc(6);
        assert_non_null(im.px);
        memcpy(im.px, src, 6);
        im.w = 3;
        im.h = 2;
        im.channels = 1;
        assert_int_equal(img_apply_orientation(&im, o), VG_OK);
        assert_memory_equal(im.px, want[o], 6);
        assert_int_equal(im.w, o >= 5 ? 2 : 3);
        assert_int_equal(im.h, o >= 5 ? 3 : 2);
        img_image_free(&im);
    }
    img_image im = {0};
    im.px = vg_malloc(6);
    im.w = 3;
    im.h = 2;
    im.channels = 1;
    assert_int_equal(img_apply_orientation(&im, 0), VG_EINVAL);
    assert_int_equal(img_apply_orientation(&im, 9), VG_EINVAL);
    assert_int_equal(img_apply_orientation(NULL, 1), VG_EINVAL);
    img_image_free(&im);
}

static void test_resize_nearest(void **state)
{
    (void)state;
    /* Against the formula, computed naively, for shrinking and enlarging, 1 and 3 channels. */
    static const uint32_t sizes[][4] = {{1600, 1004, 512, 512}, {7, 5, 3, 2},    {3, 2, 7, 5},
                                        {1, 1, 4, 4},           {640, 1, 33, 1}, {5, 5, 5, 5}};
    for (size_t s = 0; s < VG_ARRAY_LEN(sizes); s++) {
        uint32_t sw = sizes[s][0], sh = sizes[s][1], dw = sizes[s][2], dh = sizes[s][3];
        for (int ch = 1; ch <= 4; ch++) {
            size_t sn = (size_t)sw * sh * ch, dn = (size_t)dw * dh * ch;
            uint8_t *src = malloc(sn), *dst = malloc(dn);
            assert_non_null(src);
            assert_non_null(dst);
            for (size_t i = 0; i < sn; i++)
                src[i] = (uint8_t)(i * 2654435761u >> 13);
            img_resize_nearest(src, sw, sh, ch, dst, dw, dh);
            for (uint32_t y = 0; y < dh; y++)
                for (uint32_t x = 0; x < dw; x++) {
                    uint32_t sx = (uint32_t)((uint64_t)x * sw / dw);
                    uint32_t sy = (uint32_t)((uint64_t)y * sh / dh);
                    assert_memory_equal(dst + ((size_t)y * dw + x) * ch,
                                        src + ((size_t)sy * sw + sx) * ch, (size_t)ch);
                }
            free(src);
            free(dst);
        }
    }
}

static void test_luma_f32(void **state)
{
    (void)state;
    static const uint8_t rgb[] = {0, 0,   0, 255, 255, 255, 255, 0,  0,
                                  0, 255, 0, 0,   0,   255, 12,  34, 56};
    float y[6];
    img_rgb_to_luma_f32(rgb, 6, y);
    assert_true(y[0] == 0.0f);
    assert_true(fabsf(y[1] - 255.0f) < 1e-3f);
    assert_true(y[2] == 0.299f * 255.0f);
    assert_true(y[3] == 0.587f * 255.0f);
    assert_true(y[4] == 0.114f * 255.0f);
    float e = 0.299f * 12.0f;
    e = e + 0.587f * 34.0f;
    e = e + 0.114f * 56.0f;
    assert_true(y[5] == e);
}

static void test_crop(void **state)
{
    (void)state;
    uint8_t *rgb = pattern_rgb(10, 6);
    img_image im = {0};
    im.px = vg_malloc(10 * 6 * 3);
    memcpy(im.px, rgb, 10 * 6 * 3);
    im.w = 10;
    im.h = 6;
    im.channels = 3;
    im.format = IMG_FMT_PNG;
    img_image c;
    assert_int_equal(img_crop(&im, 3, 2, 4, 3, &c), VG_OK);
    assert_int_equal(c.w, 4);
    assert_int_equal(c.h, 3);
    assert_int_equal(c.format, IMG_FMT_PNG);
    for (int y = 0; y < 3; y++)
        assert_memory_equal(c.px + y * 12, rgb + ((2 + y) * 10 + 3) * 3, 12);
    img_image_free(&c);
    assert_int_equal(img_crop(&im, 0, 0, 10, 6, &c), VG_OK);
    assert_memory_equal(c.px, rgb, 180);
    img_image_free(&c);
    assert_int_equal(img_crop(&im, 7, 0, 4, 1, &c), VG_EINVAL);
    assert_int_equal(img_crop(&im, 0, 6, 1, 1, &c), VG_EINVAL);
    assert_int_equal(img_crop(&im, 0, 0, 0, 1, &c), VG_EINVAL);
    assert_int_equal(img_crop(&im, 0xFFFFFFFFu, 0, 2, 1, &c), VG_EINVAL);
    img_image_free(&im);
    free(rgb);
}

static void test_resize_bilinear(void **state)
{
    (void)state;
    /* 2x1 -> 4x1, legacy: s = x*0.5: taps (0,1) w 0, (0,1) .5, (1,1) 0, (1,1) .5 */
    static const uint8_t src[2] = {10, 30};
    float d[4];
    assert_int_equal(img_resize_bilinear_f32(src, 2, 1, 1, d, 4, 1, 0), VG_OK);
    assert_true(d[0] == 10.0f && d[1] == 20.0f && d[2] == 30.0f && d[3] == 30.0f);
    /* half-pixel centres: s = (x+.5)*.5-.5 = -.25, .25, .75, 1.25 */
    assert_int_equal(img_resize_bilinear_f32(src, 2, 1, 1, d, 4, 1, 1), VG_OK);
    assert_true(fabsf(d[0] - 10.0f) < 1e-5f); /* floor(-.25) = -1 clamps to 0, ceil 0 */
    assert_true(fabsf(d[1] - 15.0f) < 1e-5f);
    assert_true(fabsf(d[2] - 25.0f) < 1e-5f);
    assert_true(fabsf(d[3] - 30.0f) < 1e-5f);
    /* identity size copies; 2-D against a hand computation on 3 channels */
    uint8_t *rgb = pattern_rgb(9, 7);
    float *o = malloc(9 * 7 * 3 * sizeof(float));
    assert_int_equal(img_resize_bilinear_f32(rgb, 9, 7, 3, o, 9, 7, 0), VG_OK);
    for (int i = 0; i < 9 * 7 * 3; i++)
        assert_true(o[i] == (float)rgb[i]);
    float *s = malloc(4 * 3 * 3 * sizeof(float));
    assert_int_equal(img_resize_bilinear_f32(rgb, 9, 7, 3, s, 4, 3, 0), VG_OK);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++) {
                double sx = x * 9.0 / 4, sy = y * 7.0 / 3;
                int x0 = (int)sx, y0 = (int)sy, x1 = VG_MIN(x0 + 1, 8), y1 = VG_MIN(y0 + 1, 6);
                double fx = sx - x0, fy = sy - y0;
#define P(xx, yy) ((double)rgb[((yy)*9 + (xx)) * 3 + c])
                double top = P(x0, y0) + (P(x1, y0) - P(x0, y0)) * fx;
                double bot = P(x0, y1) + (P(x1, y1) - P(x0, y1)) * fx;
#undef P
                assert_true(fabs(s[(y * 4 + x) * 3 + c] - (top + (bot - top) * fy)) < 1e-3);
            }
    assert_int_equal(img_resize_bilinear_f32(rgb, 0, 7, 3, s, 4, 3, 0), VG_EINVAL);
    free(s);
    free(o);
    free(rgb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_jpeg_rgb_and_gray),
        cmocka_unit_test(test_jpeg_gray_source),
        cmocka_unit_test(test_jpeg_scaling),
        cmocka_unit_test(test_jpeg_fast_dct),
        cmocka_unit_test(test_jpeg_exif_all_orientations),
        cmocka_unit_test(test_png_webp_exif_orientation),
        cmocka_unit_test(test_jpeg_scaling_in_oriented_frame),
        cmocka_unit_test(test_exif_parser_malformed),
        cmocka_unit_test(test_jpeg_exif_rotn_photos),
        cmocka_unit_test(test_jpeg_modes),
        cmocka_unit_test(test_jpeg_cmyk_synthetic),
        cmocka_unit_test(test_jpeg_restart_markers),
        cmocka_unit_test(test_jpeg_unsupported_process),
        cmocka_unit_test(test_jpeg_benign_warning_accepted),
        cmocka_unit_test(test_jpeg_truncated),
        cmocka_unit_test(test_jpeg_corrupt),
        cmocka_unit_test(test_jpeg_huge_and_zero_header),
        cmocka_unit_test(test_png_gray_depths),
        cmocka_unit_test(test_png_rgb_and_16bit),
        cmocka_unit_test(test_png_alpha_compositing),
        cmocka_unit_test(test_png_palette_and_trns),
        cmocka_unit_test(test_png_interlaced_rgb),
        cmocka_unit_test(test_png_apng_default_image),
        cmocka_unit_test(test_png_modes),
        cmocka_unit_test(test_png_truncated_and_corrupt),
        cmocka_unit_test(test_png_huge_chunk_and_header),
        cmocka_unit_test(test_bomb_jpeg_scans),
        cmocka_unit_test(test_bomb_jpeg_work),
        cmocka_unit_test(test_bomb_limits_admit_photos),
        cmocka_unit_test(test_bomb_png),
        cmocka_unit_test(test_bomb_webp_lossless),
        cmocka_unit_test(test_webp_lossy_and_lossless),
        cmocka_unit_test(test_webp_photo_and_animation),
        cmocka_unit_test(test_webp_truncated_corrupt_huge),
        cmocka_unit_test(test_empty_and_unknown),
        cmocka_unit_test(test_limits_name_themselves),
        cmocka_unit_test(test_extreme_shapes),
        cmocka_unit_test(test_fault_injection),
        cmocka_unit_test(test_apply_orientation_exact),
        cmocka_unit_test(test_resize_nearest),
        cmocka_unit_test(test_luma_f32),
        cmocka_unit_test(test_crop),
        cmocka_unit_test(test_resize_bilinear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
