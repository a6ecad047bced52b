/*
 * PNG through libspng 0.7: the only file that includes spng.h.
 *
 * Safety: spng's image limits are set to our max_dimension and its chunk limits bound what it
 * may inflate or cache for ancillary chunks (zTXt/iCCP bombs, text floods), all before the
 * header is read; a file over the chunk limits is hostile content (VG_ECORRUPT, HTTP 422), not
 * a large upload. The decode work (img.h) is computed from IHDR and checked before spng runs. CRC
 * and Adler-32 checks stay on: a corrupt file is an error, never an image. The stream must reach
 * IEND: a file cut after its last IDAT is reported as truncated.
 *
 * Output: 8-bit RGB or gray. Palette, gray, 16-bit and tRNS are expanded by spng; alpha is then
 * composited here over opts->background with a defined rounding:
 *   8-bit:  out = (a*c + (255-a)*bg + 127) / 255
 *   16-bit: out = round((a*c + (65535-a)*bg*257) / (65535*257))   (one rounding, 16-bit input)
 * Gray output of a composited image is the fixed-point luma of the composited RGB. APNG files
 * decode to their default image (IDAT); the frame count is read from acTL for img_probe.
 * When no conversion is needed (8-bit RGB or gray without alpha) spng writes straight into the
 * output buffer; otherwise rows go through one row buffer (or, for Adam7-interlaced files, one
 * full buffer, because passes revisit rows).
 */
#include "img/img_int.h"

#include "core/core.h"

#include <limits.h>
#include <spng.h>
#include <string.h>

/* Largest inflated size of one compressed ancillary chunk (zTXt, iCCP) we let spng produce. */
#define IMG_PNG_MAX_CHUNK_BYTES ((size_t)16 << 20)
/* Total memory spng may spend on stored ancillary chunks of one file. */
#define IMG_PNG_CHUNK_CACHE_BYTES ((size_t)64 << 20)
#define IMG_PNG_SPNG_MAX_DIM 0x7FFFFFFFu /* PNG's own limit, 2^31-1 */

/* Maps an spng error to a VG_E* code and detail. */
static int img_png_error(int e, const char *what, const img_limits *limits)
{
    int code;
    switch (e) {
    case SPNG_IO_EOF:
    case SPNG_EOF:
    case SPNG_EIDAT_TOO_SHORT:
        code = VG_ETRUNC;
        break;
    case SPNG_EMEM:
        code = VG_ENOMEM;
        break;
    case SPNG_EUSER_WIDTH:
    case SPNG_EUSER_HEIGHT:
        return vg_err_set(VG_EDIM, "PNG %s is more than max_dimension %u",
                          e == SPNG_EUSER_WIDTH ? "width" : "height", limits->max_dimension);
    case SPNG_EWIDTH:
    case SPNG_EHEIGHT:
        code = VG_EDIM;
        break;
    case SPNG_ECHUNK_LIMITS:
        /* A compressed chunk (zTXt, iCCP, ...) that inflates past the bound is a decompression
         * bomb: refused as hostile content, not as a too-large upload. */
        return img__limit_fail(IMG_LIMIT_PNG_CHUNKS, VG_ECORRUPT,
                               "PNG %s: ancillary chunks exceed the chunk limits (%zu bytes per "
                               "chunk, %zu in all, inflated)",
                               what, IMG_PNG_MAX_CHUNK_BYTES, IMG_PNG_CHUNK_CACHE_BYTES);
    case SPNG_ESIGNATURE:
        code = VG_EFORMAT;
        break;
    default:
        code = VG_ECORRUPT;
    }
    return vg_err_set(code, "PNG %s: %s", what, spng_strerror(e));
}

/* A context reading buf with our limits applied. Returns owned ctx or NULL (out of memory). */
static int img_png_open(const uint8_t *buf, size_t len, const img_limits *limits, spng_ctx **out)
{
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx)
        return vg_err_set(VG_ENOMEM, "spng_ctx_new failed");
    uint32_t maxdim =
        limits->max_dimension < IMG_PNG_SPNG_MAX_DIM ? limits->max_dimension : IMG_PNG_SPNG_MAX_DIM;
    size_t chunk = VG_MIN(limits->max_input_bytes, IMG_PNG_MAX_CHUNK_BYTES);
    size_t cache = VG_MAX(chunk, VG_MIN(limits->max_input_bytes, IMG_PNG_CHUNK_CACHE_BYTES));
    int e = spng_set_image_limits(ctx, maxdim == 0 ? 1 : maxdim, maxdim == 0 ? 1 : maxdim);
    if (!e)
        e = spng_set_chunk_limits(ctx, chunk, cache);
    if (!e)
        e = spng_set_png_buffer(ctx, buf, len);
    if (e) {
        spng_ctx_free(ctx);
        return img_png_error(e, "setup", limits);
    }
    *out = ctx;
    return VG_OK;
}

/* Frame count from an APNG acTL chunk before the first IDAT; 1 when absent. Bounded walk over
 * the chunk headers; stops at anything malformed (spng judges the file itself). */
static int img_png_frames(const uint8_t *buf, size_t len)
{
    size_t pos = 8;
    while (len - pos >= 12) {
        uint32_t clen = img__rd32(buf + pos, 1);
        const uint8_t *type = buf + pos + 4;
        if (memcmp(type, "IDAT", 4) == 0 || memcmp(type, "IEND", 4) == 0)
            break;
        if (clen > len - pos - 12)
            break;
        if (memcmp(type, "acTL", 4) == 0 && clen >= 8) {
            uint32_t n = img__rd32(buf + pos + 8, 1);
            return n == 0 ? 1 : (n > INT_MAX ? INT_MAX : (int)n);
        }
        pos += 12 + (size_t)clen;
    }
    return 1;
}

int img__png_orientation(const uint8_t *buf, size_t len)
{
    size_t pos = 8;
    while (len >= 12 && len - pos >= 12) {
        uint32_t clen = img__rd32(buf + pos, 1);
        const uint8_t *type = buf + pos + 4;
        if (memcmp(type, "IEND", 4) == 0 || clen > len - pos - 12)
            break;
        if (memcmp(type, "eXIf", 4) == 0) /* the TIFF structure itself, no "Exif" prefix */
            return img__exif_orientation(buf + pos + 8, clen);
        pos += 12 + (size_t)clen;
    }
    return 1;
}

/* Cost of a full-size RGB decode (see img_limits) of IHDR's w x h, bit depth, colour type and
 * interlace method. Work: the inflated bytes, the expansion to 8-bit (or 16-bit) RGBA, the
 * output; an unknown colour type counts as 4 channels (spng refuses it anyway). Memory: the
 * output, an interlaced image's whole RGBA buffer (passes revisit rows), the copy an EXIF
 * rotation makes (oriented 1: none). */
static img_cost img_png_cost(uint32_t w, uint32_t h, unsigned depth, unsigned ctype,
                             unsigned interlace, int oriented)
{
    static const unsigned channels[7] = {1, 4, 3, 1, 2, 4, 4};
    uint64_t bits = (uint64_t)w * (ctype < 7 ? channels[ctype] : 4) * VG_MAX(depth, 1u);
    uint64_t px = (uint64_t)w * h, rgba = px * (depth == 16 ? 8 : 4);
    img_cost k;
    k.work = (uint64_t)h * (1 + (bits + 7) / 8) + rgba + px * 3;
    k.mem = px * 3 * (oriented != 1 ? 2 : 1) + (interlace ? rgba : 0);
    return k;
}

/* Our own limits check on IHDR (bytes 16..28: IHDR is always the first chunk), before spng's
 * own checks, so that the error names which of our limits was hit. A short or odd file is left
 * to spng, which reports it. */
static int img_png_precheck(const uint8_t *buf, size_t len, const img_limits *limits)
{
    if (len < 29 || memcmp(buf + 12, "IHDR", 4) != 0)
        return VG_OK;
    uint32_t w = img__rd32(buf + 16, 1), h = img__rd32(buf + 20, 1);
    int rc = img__check_dims("PNG", w, h, limits);
    if (rc == VG_OK)
        rc = img__check_cost(
            "PNG", img_png_cost(w, h, buf[24], buf[25], buf[28], img__png_orientation(buf, len)),
            len, limits);
    return rc;
}

/* 1 if a complete IEND chunk (with its CRC) follows a chain of complete chunks. */
static int img_png_has_iend(const uint8_t *buf, size_t len)
{
    size_t pos = 8;
    while (len - pos >= 12) {
        uint32_t clen = img__rd32(buf + pos, 1);
        if (clen > len - pos - 12)
            return 0;
        if (memcmp(buf + pos + 4, "IEND", 4) == 0)
            return 1;
        pos += 12 + (size_t)clen;
    }
    return 0;
}

/* Reads IHDR and whether tRNS is present (this parses the chunks before IDAT). */
static int img_png_header(spng_ctx *ctx, const img_limits *limits, struct spng_ihdr *ihdr,
                          int *has_trns)
{
    int e = spng_get_ihdr(ctx, ihdr);
    if (e)
        return img_png_error(e, "header", limits);
    struct spng_trns trns;
    e = spng_get_trns(ctx, &trns);
    if (e == 0)
        *has_trns = 1;
    else if (e == SPNG_ECHUNKAVAIL)
        *has_trns = 0;
    else
        return img_png_error(e, "chunks before IDAT", limits);
    return VG_OK;
}

int img__png_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out)
{
    spng_ctx *ctx;
    int rc = img_png_precheck(buf, len, limits);
    if (rc == VG_OK)
        rc = img_png_open(buf, len, limits, &ctx);
    if (rc != VG_OK)
        return rc;
    struct spng_ihdr ihdr;
    int has_trns = 0;
    rc = img_png_header(ctx, limits, &ihdr, &has_trns);
    spng_ctx_free(ctx);
    if (rc != VG_OK)
        return rc;
    rc = img__check_dims("PNG", ihdr.width, ihdr.height, limits);
    if (rc != VG_OK)
        return rc;
    out->w = ihdr.width;
    out->h = ihdr.height;
    out->has_alpha = (ihdr.color_type & 4) || has_trns;
    out->frames = img_png_frames(buf, len);
    img_cost k = img_png_cost(ihdr.width, ihdr.height, ihdr.bit_depth, ihdr.color_type,
                              ihdr.interlace_method, img__png_orientation(buf, len));
    out->work = k.work;
    out->mem = k.mem;
    return VG_OK;
}

/* One row of RGBA8 -> out (RGB or gray), composited over bg. */
static void img_png_comp8(const uint8_t *s, uint32_t w, const uint8_t bg[3], int channels,
                          uint8_t *d)
{
    for (uint32_t x = 0; x < w; x++, s += 4) {
        uint32_t a = s[3], na = 255 - a, c[3];
        for (int k = 0; k < 3; k++)
            c[k] = (a * s[k] + na * bg[k] + 127) / 255;
        if (channels == 1) {
            d[x] = img__luma8(c[0], c[1], c[2]);
        } else {
            d[3 * x] = (uint8_t)c[0];
            d[3 * x + 1] = (uint8_t)c[1];
            d[3 * x + 2] = (uint8_t)c[2];
        }
    }
}

/* One row of RGBA16 (host order) -> out, composited at 16-bit precision, one rounding. */
static void img_png_comp16(const uint16_t *s, uint32_t w, const uint8_t bg[3], int channels,
                           uint8_t *d)
{
    const uint64_t den = 65535ull * 257ull;
    for (uint32_t x = 0; x < w; x++, s += 4) {
        uint64_t a = s[3], na = 65535 - a;
        uint32_t c[3];
        for (int k = 0; k < 3; k++)
            c[k] = (uint32_t)((a * s[k] + na * bg[k] * 257ull + den / 2) / den);
        if (channels == 1) {
            d[x] = img__luma8(c[0], c[1], c[2]);
        } else {
            d[3 * x] = (uint8_t)c[0];
            d[3 * x + 1] = (uint8_t)c[1];
            d[3 * x + 2] = (uint8_t)c[2];
        }
    }
}

/* One row of RGB8 -> gray. */
static void img_png_luma_row(const uint8_t *s, uint32_t w, uint8_t *d)
{
    for (uint32_t x = 0; x < w; x++, s += 3)
        d[x] = img__luma8(s[0], s[1], s[2]);
}

/* Converts decoded row y (in fmt) into the output image. */
static void img_png_convert_row(const void *row, int fmt, uint32_t w, const uint8_t bg[3],
                                int channels, uint8_t *dst)
{
    if (fmt == SPNG_FMT_RGBA16)
        img_png_comp16(row, w, bg, channels, dst);
    else if (fmt == SPNG_FMT_RGBA8)
        img_png_comp8(row, w, bg, channels, dst);
    else
        img_png_luma_row(row, w, dst); /* RGB8 -> gray */
}

/* Progressive decode in fmt, converting each row into px. Interlaced images need every pass
 * before a row is final, so they go through one full buffer. */
static int img_png_decode_rows(spng_ctx *ctx, const struct spng_ihdr *ihdr, int fmt, int flags,
                               const img_decode_opts *opts, int channels, uint8_t *px)
{
    size_t rowbytes, total;
    int e = spng_decode_image(ctx, NULL, 0, fmt, flags | SPNG_DECODE_PROGRESSIVE);
    if (e)
        return img_png_error(e, "decode", &opts->limits);
    e = spng_decoded_image_size(ctx, fmt, &total);
    if (e)
        return img_png_error(e, "decode", &opts->limits);
    rowbytes = total / ihdr->height;
    int interlaced = ihdr->interlace_method != 0;
    uint8_t *buf = vg_malloc(interlaced ? total : rowbytes);
    if (!buf)
        return vg_err_set(VG_ENOMEM, "PNG row buffer of %zu bytes", interlaced ? total : rowbytes);
    size_t orow = (size_t)ihdr->width * (size_t)channels;
    int rc = VG_OK;
    for (;;) {
        struct spng_row_info ri;
        e = spng_get_row_info(ctx, &ri);
        if (e)
            break;
        uint8_t *row = interlaced ? buf + (size_t)ri.row_num * rowbytes : buf;
        e = spng_decode_row(ctx, row, rowbytes);
        if (e && e != SPNG_EOI)
            break;
        if (!interlaced)
            img_png_convert_row(row, fmt, ihdr->width, opts->background, channels,
                                px + (size_t)ri.row_num * orow);
        if (e == SPNG_EOI)
            break;
    }
    if (e != SPNG_EOI) {
        rc = img_png_error(e, "decode", &opts->limits);
    } else if (interlaced) {
        for (uint32_t y = 0; y < ihdr->height; y++)
            img_png_convert_row(buf + (size_t)y * rowbytes, fmt, ihdr->width, opts->background,
                                channels, px + (size_t)y * orow);
    }
    vg_free(buf);
    return rc;
}

int img__png_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out)
{
    spng_ctx *ctx;
    int rc = img_png_precheck(buf, len, &opts->limits);
    if (rc == VG_OK)
        rc = img_png_open(buf, len, &opts->limits, &ctx);
    if (rc != VG_OK)
        return rc;
    uint8_t *px = NULL;
    struct spng_ihdr ihdr;
    int has_trns = 0;
    rc = img_png_header(ctx, &opts->limits, &ihdr, &has_trns);
    if (rc == VG_OK)
        rc = img__check_dims("PNG", ihdr.width, ihdr.height, &opts->limits);
    if (rc != VG_OK)
        goto done;

    int channels = opts->pixfmt == IMG_GRAY ? 1 : 3;
    int alpha = (ihdr.color_type & 4) || has_trns;
    int gray_src = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE;
    size_t nbytes;
    rc = img__image_bytes(ihdr.width, ihdr.height, channels, &nbytes);
    if (rc != VG_OK)
        goto done;
    px = vg_malloc(nbytes);
    if (!px) {
        rc = vg_err_set(VG_ENOMEM, "PNG output of %zu bytes", nbytes);
        goto done;
    }
    int direct_fmt = 0; /* spng can write the output format itself */
    if (!alpha && ihdr.bit_depth <= 8) {
        if (channels == 3)
            direct_fmt = SPNG_FMT_RGB8;
        else if (gray_src)
            direct_fmt = SPNG_FMT_G8;
    }
    int e;
    if (direct_fmt) {
        size_t need;
        e = spng_decoded_image_size(ctx, direct_fmt, &need);
        if (!e && need != nbytes)
            e = SPNG_EINTERNAL;
        if (!e)
            e = spng_decode_image(ctx, px, nbytes, direct_fmt, 0);
        if (e) {
            rc = img_png_error(e, "decode", &opts->limits);
            goto done;
        }
    } else {
        int fmt = alpha ? (ihdr.bit_depth == 16 ? SPNG_FMT_RGBA16 : SPNG_FMT_RGBA8)
                        : (ihdr.bit_depth == 16 ? SPNG_FMT_RGBA16 : SPNG_FMT_RGB8);
        rc = img_png_decode_rows(ctx, &ihdr, fmt, SPNG_DECODE_TRNS, opts, channels, px);
        if (rc != VG_OK)
            goto done;
    }
    /* Read on to IEND so a file cut after its pixel data is still reported as truncated. */
    e = spng_decode_chunks(ctx);
    if (e) {
        rc = img_png_error(e, "after image data", &opts->limits);
        goto done;
    }
    if (!img_png_has_iend(buf, len)) {
        rc = vg_err_set(VG_ETRUNC, "PNG ends without a complete IEND chunk");
        goto done;
    }
    out->px = px;
    px = NULL;
    out->w = out->src_w = ihdr.width;
    out->h = out->src_h = ihdr.height;
    out->channels = channels;
    out->orientation = 1;
    out->scale_denom = 1;
done:
    vg_free(px);
    spng_ctx_free(ctx);
    return rc;
}
