/*
 * WebP through libwebp 1.2 (decode.h for still images, demux.h's WebPAnimDecoder for
 * animations): the only file that includes libwebp headers.
 *
 * Still images are decoded with the advanced API (WebPDecode) into our own buffer, so the
 * status code tells truncated from corrupt input. Animated files give their first frame as
 * composited on the canvas by WebPAnimDecoder (after checking with the demuxer that the whole
 * file is present). Alpha is composited over opts->background as in img_png.c:
 * out = (a*c + (255-a)*bg + 127) / 255, gray = fixed-point luma of the composited RGB.
 * Images with alpha are decoded as RGBA and composited in place (each pixel read before its
 * narrower output is written), then the buffer is shrunk: one allocation, no second image.
 *
 * Cost: lossless (VP8L) entropy codes may spend zero bits per pixel, so a 38-byte file can
 * describe 10000 x 10000, and libwebp holds the whole image as 4-byte ARGB besides our output.
 * Lossless images and animations (whose frames may be lossless, and whose decoder keeps two
 * 4-byte canvases) are held to max_lossless_pixels, and every image's work units (img.h) are
 * checked, from the header, before libwebp decodes anything.
 */
#include "img/img_int.h"

#include "core/core.h"

#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

static int img_webp_status(VP8StatusCode st, const char *what)
{
    int code;
    switch (st) {
    case VP8_STATUS_OK:
        return VG_OK;
    case VP8_STATUS_OUT_OF_MEMORY:
        code = VG_ENOMEM;
        break;
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        code = VG_EFORMAT;
        break;
    case VP8_STATUS_SUSPENDED:
    case VP8_STATUS_NOT_ENOUGH_DATA:
        code = VG_ETRUNC;
        break;
    case VP8_STATUS_INVALID_PARAM:
        code = VG_EINTERNAL;
        break;
    default:
        code = VG_ECORRUPT;
    }
    static const char *const names[] = {
        "ok",        "out of memory", "invalid parameter", "bitstream error", "unsupported feature",
        "suspended", "user abort",    "not enough data"};
    unsigned i = (unsigned)st;
    return vg_err_set(code, "WebP %s: %s", what, i < VG_ARRAY_LEN(names) ? names[i] : "error");
}

/* Demuxes the whole file (borrowed): VG_ETRUNC when parts are missing, VG_ECORRUPT when the
 * container is malformed. On success returns an owned demuxer (WebPDemuxDelete). */
static int img_webp_demux(const uint8_t *buf, size_t len, WebPDemuxer **out)
{
    WebPData data = {buf, len};
    WebPDemuxState state;
    WebPDemuxer *d = WebPDemuxPartial(&data, &state);
    if (d && state == WEBP_DEMUX_DONE) {
        *out = d;
        return VG_OK;
    }
    WebPDemuxDelete(d);
    if (state == WEBP_DEMUX_PARSE_ERROR)
        return vg_err_set(VG_ECORRUPT, "WebP container is malformed");
    if (!d && state == WEBP_DEMUX_DONE)
        return vg_err_set(VG_ENOMEM, "WebP demuxer allocation failed");
    return vg_err_set(VG_ETRUNC, "WebP container is incomplete (%zu bytes)", len);
}

int img__webp_orientation(const uint8_t *buf, size_t len)
{
    /* Only the extended format (VP8X) carries metadata, and its flags say whether EXIF is
     * there: RIFF size WEBP, then the VP8X chunk whose first payload byte holds the flags. */
    if (len < 30 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WEBPVP8X", 8) != 0 ||
        !(buf[20] & 0x08))
        return 1;
    size_t pos = 12;
    while (len - pos >= 8) {
        uint32_t clen = img__rd32(buf + pos + 4, 0);
        if (clen > len - pos - 8)
            break;
        if (memcmp(buf + pos, "EXIF", 4) == 0) {
            const uint8_t *p = buf + pos + 8;
            if (clen >= 6 && memcmp(p, "Exif\0\0", 6) == 0)
                return img__exif_orientation(p + 6, clen - 6);
            return img__exif_orientation(p, clen);
        }
        pos += 8 + (size_t)clen + (clen & 1); /* chunks are padded to even sizes */
        if (pos > len)
            break;
    }
    return 1;
}

/* WebPBitstreamFeatures.format: 1 lossy, 2 lossless, 0 mixed/undefined (animations). */
#define IMG_WEBP_FORMAT_LOSSLESS 2

/* Cost of a full-size RGB decode (see img_limits). Work: the YUV 4:2:0 (lossy) or ARGB
 * (lossless, and animations, whose frames may be either) planes, the RGBA conversion, the
 * output. Memory: our RGB(A) buffer, libwebp's lossless ARGB image, an animation decoder's two
 * canvases, the copy an EXIF rotation makes (oriented 1: none). */
static img_cost img_webp_cost(const WebPBitstreamFeatures *f, int oriented)
{
    uint64_t px = (uint64_t)(uint32_t)f->width * (uint32_t)f->height;
    int lossy = f->format == 1 && !f->has_animation;
    img_cost k;
    k.work = (lossy ? px + px / 2 : px * 4) + px * 4 + px * 3;
    k.mem = px * (f->has_alpha || f->has_animation ? 4 : 3) +
            (f->format == IMG_WEBP_FORMAT_LOSSLESS ? px * 4 : 0) + (f->has_animation ? px * 8 : 0) +
            (oriented != 1 ? px * 3 : 0);
    return k;
}

static int img_webp_features(const uint8_t *buf, size_t len, const img_limits *limits,
                             WebPBitstreamFeatures *f)
{
    int rc = img_webp_status(WebPGetFeatures(buf, len, f), "header");
    if (rc != VG_OK)
        return rc;
    if (f->width <= 0 || f->height <= 0)
        return vg_err_set(VG_EDIM, "WebP header says %dx%d", f->width, f->height);
    uint32_t w = (uint32_t)f->width, h = (uint32_t)f->height;
    rc = img__check_dims("WebP", w, h, limits);
    if (rc != VG_OK)
        return rc;
    if ((f->format == IMG_WEBP_FORMAT_LOSSLESS || f->has_animation) &&
        (uint64_t)w * h > limits->max_lossless_pixels)
        return img__limit_fail(IMG_LIMIT_LOSSLESS_PIXELS, VG_EPIXELS,
                               "%s WebP is %ux%u = %llu pixels, more than "
                               "max_lossless_pixels %llu",
                               f->has_animation ? "animated" : "lossless", w, h,
                               (unsigned long long)((uint64_t)w * h),
                               (unsigned long long)limits->max_lossless_pixels);
    return img__check_cost("WebP", img_webp_cost(f, img__webp_orientation(buf, len)), len, limits);
}

int img__webp_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out)
{
    WebPBitstreamFeatures f;
    int rc = img_webp_features(buf, len, limits, &f);
    if (rc != VG_OK)
        return rc;
    out->w = (uint32_t)f.width;
    out->h = (uint32_t)f.height;
    out->has_alpha = f.has_alpha != 0;
    out->frames = 1;
    img_cost k = img_webp_cost(&f, img__webp_orientation(buf, len));
    out->work = k.work;
    out->mem = k.mem;
    if (f.has_animation) {
        WebPDemuxer *d;
        rc = img_webp_demux(buf, len, &d);
        if (rc != VG_OK)
            return rc;
        uint32_t n = WebPDemuxGetI(d, WEBP_FF_FRAME_COUNT);
        WebPDemuxDelete(d);
        out->frames = n > 0 && n < (uint32_t)INT32_MAX ? (int)n : 1;
    }
    return VG_OK;
}

/* In place: n RGBA pixels -> n composited RGB (channels 3) or gray (1) pixels at the front. */
static void img_webp_composite(uint8_t *p, size_t n, const uint8_t bg[3], int channels)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++, s += 4) {
        uint32_t r = s[0], g = s[1], b = s[2], a = s[3], na = 255 - a;
        r = (a * r + na * bg[0] + 127) / 255;
        g = (a * g + na * bg[1] + 127) / 255;
        b = (a * b + na * bg[2] + 127) / 255;
        if (channels == 1) {
            p[i] = img__luma8(r, g, b);
        } else {
            p[3 * i] = (uint8_t)r;
            p[3 * i + 1] = (uint8_t)g;
            p[3 * i + 2] = (uint8_t)b;
        }
    }
}

/* In place: n RGB pixels -> n gray pixels at the front. */
static void img_webp_luma(uint8_t *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++, s += 3)
        p[i] = img__luma8(s[0], s[1], s[2]);
}

/* First frame of an animation, composited, into px (w*h*4 bytes). */
static int img_webp_first_frame(const uint8_t *buf, size_t len, uint32_t w, uint32_t h, uint8_t *px)
{
    WebPDemuxer *d;
    int rc = img_webp_demux(buf, len, &d);
    if (rc != VG_OK)
        return rc;
    WebPDemuxDelete(d);
    WebPAnimDecoderOptions ao;
    if (!WebPAnimDecoderOptionsInit(&ao))
        return vg_err_set(VG_EINTERNAL, "libwebp ABI mismatch (WebPAnimDecoderOptionsInit)");
    ao.color_mode = MODE_RGBA;
    ao.use_threads = 0;
    WebPData data = {buf, len};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &ao);
    if (!dec)
        return vg_err_set(VG_ECORRUPT, "WebP animation could not be opened");
    WebPAnimInfo ai;
    uint8_t *frame = NULL;
    int ts = 0;
    if (!WebPAnimDecoderGetInfo(dec, &ai) || ai.canvas_width != w || ai.canvas_height != h) {
        rc = vg_err_set(VG_ECORRUPT, "WebP animation canvas disagrees with its header");
    } else if (!WebPAnimDecoderGetNext(dec, &frame, &ts) || !frame) {
        rc = vg_err_set(VG_ECORRUPT, "WebP animation: first frame does not decode");
    } else {
        memcpy(px, frame, (size_t)w * h * 4);
    }
    WebPAnimDecoderDelete(dec);
    return rc;
}

int img__webp_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out)
{
    WebPBitstreamFeatures f;
    int rc = img_webp_features(buf, len, &opts->limits, &f);
    if (rc != VG_OK)
        return rc;
    uint32_t w = (uint32_t)f.width, h = (uint32_t)f.height;
    int channels = opts->pixfmt == IMG_GRAY ? 1 : 3;
    int rgba = f.has_alpha || f.has_animation;
    int dec_ch = rgba ? 4 : 3;
    size_t dec_bytes, out_bytes;
    if ((rc = img__image_bytes(w, h, dec_ch, &dec_bytes)) != VG_OK ||
        (rc = img__image_bytes(w, h, channels, &out_bytes)) != VG_OK)
        return rc;
    uint8_t *px = vg_malloc(dec_bytes);
    if (!px)
        return vg_err_set(VG_ENOMEM, "WebP buffer of %zu bytes", dec_bytes);
    if (f.has_animation) {
        rc = img_webp_first_frame(buf, len, w, h, px);
    } else {
        WebPDecoderConfig cfg;
        if (!WebPInitDecoderConfig(&cfg)) {
            vg_free(px);
            return vg_err_set(VG_EINTERNAL, "libwebp ABI mismatch (WebPInitDecoderConfig)");
        }
        cfg.options.use_threads = 0;
        cfg.output.colorspace = rgba ? MODE_RGBA : MODE_RGB;
        cfg.output.is_external_memory = 1;
        cfg.output.u.RGBA.rgba = px;
        cfg.output.u.RGBA.stride = (int)(w * (uint32_t)dec_ch);
        cfg.output.u.RGBA.size = dec_bytes;
        rc = img_webp_status(WebPDecode(buf, len, &cfg), "decode");
        WebPFreeDecBuffer(&cfg.output); /* no-op for external memory, kept for symmetry */
    }
    if (rc != VG_OK) {
        vg_free(px);
        return rc;
    }
    if (rgba)
        img_webp_composite(px, (size_t)w * h, opts->background, channels);
    else if (channels == 1)
        img_webp_luma(px, (size_t)w * h);
    if (out_bytes < dec_bytes) {
        uint8_t *shrunk = vg_realloc(px, out_bytes);
        if (shrunk) /* on failure the larger block still holds the image */
            px = shrunk;
    }
    out->px = px;
    out->w = out->src_w = w;
    out->h = out->src_h = h;
    out->channels = channels;
    out->orientation = 1;
    out->scale_denom = 1;
    return VG_OK;
}
