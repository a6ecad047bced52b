/*
 * img dispatcher: sniffing by magic bytes, the limits every format shares, option defaults and
 * dispatch to the per-library wrappers. The format is decided from the leading bytes only, never
 * from a file name or a declared MIME type, so a mislabelled upload is still decoded by the right
 * library (or refused), and a crafted name cannot route bytes to the wrong parser.
 */
#include "img/img_int.h"

#include "core/core.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint8_t IMG_JPEG_MAGIC[3] = {0xFF, 0xD8, 0xFF};
static const uint8_t IMG_PNG_MAGIC[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
/* WebP: "RIFF" <u32 size> "WEBP". */
#define IMG_WEBP_MAGIC_BYTES 12

/* The limit that refused this thread's last probe or decode (img_last_limit), beside the
 * thread's vg_err detail it belongs to. Thread-local: img functions stay reentrant. */
static _Thread_local img_limit_kind img_last_limit_hit = IMG_LIMIT_NONE;

void img_limits_default(img_limits *l)
{
    l->max_input_bytes = IMG_DEFAULT_MAX_INPUT_BYTES;
    l->max_pixels = IMG_DEFAULT_MAX_PIXELS;
    l->max_dimension = IMG_DEFAULT_MAX_DIMENSION;
    l->max_jpeg_scans = IMG_DEFAULT_MAX_JPEG_SCANS;
    l->max_lossless_pixels = IMG_DEFAULT_MAX_LOSSLESS_PIXELS;
    l->max_decode_work = IMG_DEFAULT_MAX_DECODE_WORK;
    l->max_decode_ratio = IMG_DEFAULT_MAX_DECODE_RATIO;
}

img_limit_kind img_last_limit(void)
{
    return img_last_limit_hit;
}

const char *img_limit_name(img_limit_kind k)
{
    static const char *const names[IMG_LIMIT_COUNT] = {
        "input_bytes",     "pixels",      "dimension",  "jpeg_scans",
        "lossless_pixels", "decode_work", "png_chunks", "decode_ratio"};
    return k >= 0 && k < IMG_LIMIT_COUNT ? names[k] : "none";
}

int img__limit_fail(img_limit_kind k, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    img_last_limit_hit = k;
    return vg_err_set(code, "%s", msg);
}

int img__check_cost(const char *fmt, img_cost cost, size_t len, const img_limits *limits)
{
    if (cost.work > limits->max_decode_work)
        return img__limit_fail(IMG_LIMIT_DECODE_WORK, VG_EPIXELS,
                               "%s decode needs %" PRIu64
                               " work units (samples x passes), more than max_decode_work %" PRIu64,
                               fmt, cost.work, limits->max_decode_work);
    /* mem > len * ratio, in the division form that cannot overflow. */
    uint64_t ratio = limits->max_decode_ratio;
    if (ratio && cost.mem > IMG_DECODE_FREE_BYTES && (cost.mem - 1) / ratio >= (uint64_t)len)
        return img__limit_fail(IMG_LIMIT_DECODE_RATIO, VG_EPIXELS,
                               "%s decode needs %" PRIu64 " bytes of memory for %zu encoded bytes, "
                               "more than max_decode_ratio %" PRIu64
                               " bytes per encoded byte (beyond the first %" PRIu64 " bytes)",
                               fmt, cost.mem, len, ratio, IMG_DECODE_FREE_BYTES);
    return VG_OK;
}

void img_decode_opts_default(img_decode_opts *o)
{
    memset(o, 0, sizeof(*o));
    img_limits_default(&o->limits);
    o->pixfmt = IMG_RGB;
    o->min_w = 0;
    o->min_h = 0;
    o->ignore_exif = 0;
    o->background[0] = o->background[1] = o->background[2] = 255;
    o->fast_dct = 0;
}

img_format img_sniff(const uint8_t *buf, size_t len)
{
    if (!buf)
        return IMG_FMT_UNKNOWN;
    if (len >= sizeof(IMG_JPEG_MAGIC) && memcmp(buf, IMG_JPEG_MAGIC, sizeof(IMG_JPEG_MAGIC)) == 0)
        return IMG_FMT_JPEG;
    if (len >= sizeof(IMG_PNG_MAGIC) && memcmp(buf, IMG_PNG_MAGIC, sizeof(IMG_PNG_MAGIC)) == 0)
        return IMG_FMT_PNG;
    if (len >= IMG_WEBP_MAGIC_BYTES && memcmp(buf, "RIFF", 4) == 0 &&
        memcmp(buf + 8, "WEBP", 4) == 0)
        return IMG_FMT_WEBP;
    return IMG_FMT_UNKNOWN;
}

const char *img_format_name(img_format f)
{
    switch (f) {
    case IMG_FMT_JPEG:
        return "jpeg";
    case IMG_FMT_PNG:
        return "png";
    case IMG_FMT_WEBP:
        return "webp";
    default:
        return "unknown";
    }
}

/* 1 if buf (len shorter than the magic) could still be the start of a known signature: such an
 * input is a truncated image, not an unknown format. */
static int img_is_magic_prefix(const uint8_t *buf, size_t len)
{
    if (len < sizeof(IMG_JPEG_MAGIC) && memcmp(buf, IMG_JPEG_MAGIC, len) == 0)
        return 1;
    if (len < sizeof(IMG_PNG_MAGIC) && memcmp(buf, IMG_PNG_MAGIC, len) == 0)
        return 1;
    if (len < IMG_WEBP_MAGIC_BYTES) {
        if (len <= 4)
            return memcmp(buf, "RIFF", len) == 0;
        if (memcmp(buf, "RIFF", 4) != 0)
            return 0;
        if (len <= 8)
            return 1;
        return memcmp(buf + 8, "WEBP", len - 8) == 0;
    }
    return 0;
}

/* Shared front door of probe and decode: argument checks, the byte limit, the format. */
static int img_front(const uint8_t *buf, size_t len, const img_limits *limits, img_format *fmt)
{
    if (!buf && len > 0)
        return vg_err_set(VG_EINVAL, "image buffer is NULL but length is %zu", len);
    if (len == 0)
        return vg_err_set(VG_ETRUNC, "empty input (0 bytes)");
    if (len > limits->max_input_bytes)
        return img__limit_fail(IMG_LIMIT_INPUT_BYTES, VG_ETOOBIG,
                               "input is %zu bytes, more than max_input_bytes %zu", len,
                               limits->max_input_bytes);
    *fmt = img_sniff(buf, len);
    if (*fmt == IMG_FMT_UNKNOWN) {
        if (img_is_magic_prefix(buf, len))
            return vg_err_set(VG_ETRUNC, "input is %zu bytes, shorter than an image signature",
                              len);
        return vg_err_set(VG_EFORMAT,
                          "unknown image format (leading bytes %02x %02x %02x %02x); "
                          "JPEG, PNG and WebP are supported",
                          buf[0], len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
    }
    return VG_OK;
}

int img__check_dims(const char *fmt, uint32_t w, uint32_t h, const img_limits *limits)
{
    if (w == 0 || h == 0)
        return vg_err_set(VG_EDIM, "%s header says %" PRIu32 "x%" PRIu32 ": zero dimension", fmt, w,
                          h);
    uint64_t px = (uint64_t)w * h;
    if (px > limits->max_pixels)
        return img__limit_fail(IMG_LIMIT_PIXELS, VG_EPIXELS,
                               "image is %" PRIu32 "x%" PRIu32 " = %" PRIu64
                               " pixels, more than max_pixels %" PRIu64,
                               w, h, px, limits->max_pixels);
    if (w > limits->max_dimension || h > limits->max_dimension)
        return img__limit_fail(IMG_LIMIT_DIMENSION, VG_EDIM,
                               "image is %" PRIu32 "x%" PRIu32 ", %s %" PRIu32
                               " is more than max_dimension %" PRIu32,
                               w, h, w > limits->max_dimension ? "width" : "height",
                               w > limits->max_dimension ? w : h, limits->max_dimension);
    return VG_OK;
}

int img__image_bytes(uint32_t w, uint32_t h, int channels, size_t *out)
{
    size_t n;
    if (vg_mul_size(w, h, &n) != VG_OK || vg_mul_size(n, (size_t)channels, &n) != VG_OK)
        return vg_err_set(VG_ETOOBIG, "image %" PRIu32 "x%" PRIu32 "x%d overflows size_t", w, h,
                          channels);
    *out = n;
    return VG_OK;
}

int img_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out)
{
    img_limits defaults;
    img_last_limit_hit = IMG_LIMIT_NONE;
    if (!out)
        return vg_err_set(VG_EINVAL, "img_probe: out is NULL");
    memset(out, 0, sizeof(*out));
    if (!limits) {
        img_limits_default(&defaults);
        limits = &defaults;
    }
    img_format fmt;
    int rc = img_front(buf, len, limits, &fmt);
    if (rc != VG_OK)
        return rc;
    img_info info;
    memset(&info, 0, sizeof(info));
    info.format = fmt;
    info.orientation = 1;
    info.frames = 1;
    switch (fmt) {
    case IMG_FMT_JPEG:
        rc = img__jpeg_probe(buf, len, limits, &info);
        break;
    case IMG_FMT_PNG:
        rc = img__png_probe(buf, len, limits, &info);
        info.orientation = img__png_orientation(buf, len);
        break;
    case IMG_FMT_WEBP:
        rc = img__webp_probe(buf, len, limits, &info);
        info.orientation = img__webp_orientation(buf, len);
        break;
    default:
        rc = vg_err_set(VG_EINTERNAL, "img_probe: unhandled format %d", (int)fmt);
    }
    if (rc == VG_OK)
        *out = info;
    return rc;
}

int img_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out)
{
    img_decode_opts defaults;
    img_last_limit_hit = IMG_LIMIT_NONE;
    if (!out)
        return vg_err_set(VG_EINVAL, "img_decode: out is NULL");
    memset(out, 0, sizeof(*out));
    if (!opts) {
        img_decode_opts_default(&defaults);
        opts = &defaults;
    }
    if (opts->pixfmt != IMG_RGB && opts->pixfmt != IMG_GRAY)
        return vg_err_set(VG_EINVAL, "img_decode: pixfmt %d is neither IMG_RGB nor IMG_GRAY",
                          (int)opts->pixfmt);
    img_format fmt;
    int rc = img_front(buf, len, &opts->limits, &fmt);
    if (rc != VG_OK)
        return rc;
    img_image im;
    memset(&im, 0, sizeof(im));
    im.format = fmt;
    im.orientation = 1;
    im.scale_denom = 1;
    switch (fmt) {
    case IMG_FMT_JPEG:
        rc = img__jpeg_decode(buf, len, opts, &im);
        break;
    case IMG_FMT_PNG:
        rc = img__png_decode(buf, len, opts, &im);
        if (rc == VG_OK)
            im.orientation = img__png_orientation(buf, len);
        break;
    case IMG_FMT_WEBP:
        rc = img__webp_decode(buf, len, opts, &im);
        if (rc == VG_OK)
            im.orientation = img__webp_orientation(buf, len);
        break;
    default:
        rc = vg_err_set(VG_EINTERNAL, "img_decode: unhandled format %d", (int)fmt);
    }
    if (rc != VG_OK)
        return rc;
    /* JPEG orients while it decodes (in its scaled frame); PNG and WebP are never scaled, so
     * their orientation is applied to the whole image here. */
    if (fmt != IMG_FMT_JPEG && im.orientation != 1 && !opts->ignore_exif &&
        (rc = img_apply_orientation(&im, im.orientation)) != VG_OK) {
        img_image_free(&im);
        return rc;
    }
    *out = im;
    return VG_OK;
}

void img_image_free(img_image *im)
{
    if (!im)
        return;
    vg_free(im->px);
    memset(im, 0, sizeof(*im));
}
