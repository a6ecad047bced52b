/*
 * JPEG through libturbojpeg (TurboJPEG v2 API, libjpeg-turbo 2.1): the only file that includes
 * turbojpeg.h.
 *
 * What this wrapper adds on top of the library:
 *   - a bounded marker walk of our own (img_jpeg_walk) before the library sees the bytes. It
 *     finds the EXIF APP1 segment (orientation), the Adobe APP14 segment (CMYK inversion) and,
 *     above all, checks that the scans end in an EOI marker: libjpeg pads a truncated stream
 *     with grey and reports only a warning, and TurboJPEG keeps only the first warning's text,
 *     so a missing end is detected here, independently of the library's messages;
 *   - DCT-domain scaling: the smallest 1/8, 1/4, 1/2 or 1/1 scale whose output still covers the
 *     caller's min_w x min_h (in the EXIF-oriented frame). Only these power-of-two factors are
 *     used: they have SIMD IDCTs and keep scale_denom an integer;
 *   - libjpeg warnings are errors, except a short list of harmless ones (stray bytes between
 *     markers, an unknown JFIF version, ...), so damaged entropy data is never passed on as good;
 *   - CMYK/YCCK: decoded as CMYK and converted here (Adobe files store inverted CMYK);
 *   - decode cost bounded before the library runs: the walk counts every scan (SOS) and the
 *     samples each one codes, from the frame's sampling factors; more scans than
 *     max_jpeg_scans or more work units than max_decode_work (see img.h) is refused. A
 *     progressive decode passes over the whole coefficient buffer once per scan, so a small file
 *     of many scans over a large frame (499 scans, 8192 x 8192, 192 KB) would otherwise cost
 *     seconds. TJFLAG_LIMITSCANS (libjpeg-turbo's own 500-scan cap) stays as a second line.
 * Default IDCT and fancy upsampling are kept unless opts->fast_dct, so full-size decodes match
 * any libjpeg-based reference decoder bit for bit.
 */
#include "img/img_int.h"

#include "core/core.h"

#include <string.h>
#include <turbojpeg.h>

#define IMG_JPEG_MARKER_SOI 0xD8
#define IMG_JPEG_MARKER_EOI 0xD9
#define IMG_JPEG_MARKER_SOS 0xDA
#define IMG_JPEG_MARKER_APP1 0xE1
#define IMG_JPEG_MARKER_APP14 0xEE
#define IMG_JPEG_MARKER_TEM 0x01
#define IMG_JPEG_MAX_DENOM 8
/* Components a frame may declare that we track for the work count (libjpeg's MAX_COMPONENTS;
 * it refuses more itself). */
#define IMG_JPEG_MAX_COMPONENTS 10
#define IMG_JPEG_BLOCK_SAMPLES 64 /* one 8x8 DCT block */

/* What the marker walk learned. */
typedef struct img_jpeg_markers {
    int orientation;       /* 1..8 from the first EXIF APP1, 1 if none */
    int adobe;             /* 1 if an Adobe APP14 segment was seen: CMYK is stored inverted */
    uint32_t sof_w, sof_h; /* from the first start-of-frame segment; 0 if none */
    uint32_t scans;        /* SOS segments before EOI */
    int progressive;       /* the first frame is progressive (SOF2, 6, 10, 14) */
    int ncomp;             /* components of the first frame (up to IMG_JPEG_MAX_COMPONENTS) */
    uint8_t comp_id[IMG_JPEG_MAX_COMPONENTS];
    uint64_t comp_samples[IMG_JPEG_MAX_COMPONENTS]; /* block-padded samples of each component */
    uint64_t scan_samples; /* sum over scans of the samples of the components each codes */
} img_jpeg_markers;

/* Per-component sample counts of a frame (SOF payload pl of plen bytes, size w x h checked
 * non-zero), as libjpeg lays them out: ceil(w * H / Hmax) x ceil(h * V / Vmax), padded to whole
 * 8x8 blocks. A malformed frame leaves ncomp 0 (libjpeg reports it). */
static void img_jpeg_frame(const uint8_t *pl, size_t plen, unsigned w, unsigned h,
                           img_jpeg_markers *mk)
{
    unsigned n = plen >= 6 ? pl[5] : 0, hmax = 1, vmax = 1;
    if (n == 0 || n > IMG_JPEG_MAX_COMPONENTS || plen < 6 + 3 * (size_t)n)
        return;
    for (unsigned i = 0; i < n; i++) {
        unsigned hv = pl[6 + 3 * i + 1];
        hmax = VG_MAX(hmax, hv >> 4);
        vmax = VG_MAX(vmax, hv & 15u);
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned hv = pl[6 + 3 * i + 1], hi = VG_MAX(hv >> 4, 1u), vi = VG_MAX(hv & 15u, 1u);
        uint64_t cw = ((uint64_t)w * hi + hmax - 1) / hmax,
                 ch = ((uint64_t)h * vi + vmax - 1) / vmax;
        mk->comp_id[i] = pl[6 + 3 * i];
        mk->comp_samples[i] = ((cw + 7) / 8) * ((ch + 7) / 8) * IMG_JPEG_BLOCK_SAMPLES;
    }
    mk->ncomp = (int)n;
}

/* Adds the samples of the components a scan (SOS payload) codes to mk->scan_samples. */
static void img_jpeg_scan(const uint8_t *pl, size_t plen, img_jpeg_markers *mk)
{
    unsigned ns = plen >= 1 ? pl[0] : 0;
    for (unsigned i = 0; i < ns && 1 + 2 * (size_t)i < plen; i++)
        for (int c = 0; c < mk->ncomp; c++)
            if (mk->comp_id[c] == pl[1 + 2 * i]) {
                mk->scan_samples += mk->comp_samples[c];
                break;
            }
}

static int img_is_rst(uint8_t m)
{
    return m >= 0xD0 && m <= 0xD7;
}

/* Start-of-frame markers C0..CF, except DHT (C4), JPG (C8) and DAC (CC). */
static int img_is_sof(uint8_t m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Walks the marker segments of buf (borrowed) from SOI to EOI. Returns VG_ETRUNC when the data
 * ends before an EOI that follows at least one scan, VG_ECORRUPT for an impossible segment
 * length or an EOI before any scan. Stray bytes between segments are skipped as libjpeg does. */
static int img_jpeg_walk(const uint8_t *buf, size_t len, img_jpeg_markers *mk)
{
    int seen_exif = 0, seen_sos = 0;
    size_t pos = 2; /* after SOI, which the sniffer checked */
    memset(mk, 0, sizeof(*mk));
    mk->orientation = 1;
    for (;;) {
        if (pos >= len)
            break;
        if (buf[pos] != 0xFF) {
            const uint8_t *ff = memchr(buf + pos, 0xFF, len - pos);
            if (!ff)
                break;
            pos = (size_t)(ff - buf);
        }
        while (pos < len && buf[pos] == 0xFF)
            pos++; /* fill bytes */
        if (pos >= len)
            break;
        uint8_t m = buf[pos++];
        if (m == IMG_JPEG_MARKER_EOI) {
            if (!seen_sos)
                return vg_err_set(VG_ECORRUPT, "JPEG ends (EOI) before any image scan");
            return VG_OK;
        }
        if (m == 0x00 || m == IMG_JPEG_MARKER_TEM || img_is_rst(m) || m == IMG_JPEG_MARKER_SOI)
            continue; /* no length field; libjpeg judges misplaced ones */
        if (len - pos < 2)
            break;
        size_t seglen = (size_t)buf[pos] << 8 | buf[pos + 1];
        if (seglen < 2)
            return vg_err_set(VG_ECORRUPT, "JPEG marker 0x%02X at byte %zu has length %zu", m,
                              pos - 2, seglen);
        if (seglen > len - pos)
            break;
        const uint8_t *pl = buf + pos + 2; /* payload */
        size_t plen = seglen - 2;
        if (m == IMG_JPEG_MARKER_APP1 && !seen_exif && plen >= 6 &&
            memcmp(pl, "Exif\0\0", 6) == 0) {
            seen_exif = 1;
            mk->orientation = img__exif_orientation(pl + 6, plen - 6);
        } else if (m == IMG_JPEG_MARKER_APP14 && plen >= 12 && memcmp(pl, "Adobe", 5) == 0) {
            mk->adobe = 1;
        } else if (img_is_sof(m) && plen >= 5 && mk->sof_w == 0) {
            /* Checked against our limits before libjpeg sees them: libjpeg refuses zero height
             * (DNL) and sides over 65500 with generic messages that name no limit. */
            unsigned h = (unsigned)pl[1] << 8 | pl[2], w = (unsigned)pl[3] << 8 | pl[4];
            if (w == 0 || h == 0)
                return vg_err_set(VG_EDIM, "JPEG header says %ux%u: zero dimension", w, h);
            mk->sof_w = w;
            mk->sof_h = h;
            mk->progressive = (m & 3) == 2; /* C2, C6, CA, CE */
            img_jpeg_frame(pl, plen, w, h, mk);
        } else if (m == IMG_JPEG_MARKER_SOS) {
            mk->scans++;
            img_jpeg_scan(pl, plen, mk);
        }
        pos += seglen;
        if (m != IMG_JPEG_MARKER_SOS)
            continue;
        /* Entropy-coded data: 0xFF is always followed by 0x00 (stuffing), an RSTn or more 0xFF
         * fill; anything else is the next marker. */
        seen_sos = 1;
        for (;;) {
            const uint8_t *ff = pos < len ? memchr(buf + pos, 0xFF, len - pos) : NULL;
            if (!ff || (size_t)(ff - buf) + 1 >= len) {
                pos = len;
                break;
            }
            pos = (size_t)(ff - buf);
            uint8_t nx = buf[pos + 1];
            if (nx == 0x00 || img_is_rst(nx))
                pos += 2;
            else if (nx == 0xFF)
                pos += 1;
            else
                break; /* marker at pos */
        }
    }
    return vg_err_set(VG_ETRUNC, "JPEG data ends after %zu bytes without an end-of-image marker",
                      len);
}

/* Cost of a full-size RGB decode (see img_limits). Work: every scan's samples, then the IDCT
 * and upsampling of every component's samples and the colour conversion of w*h*3 outputs.
 * Memory: the output, a progressive frame's whole coefficient buffer (2 bytes a sample; a
 * sequential one streams), a CMYK intermediate, the copy an EXIF rotation makes. */
static img_cost img_jpeg_cost(const img_jpeg_markers *mk)
{
    uint64_t samples = 0, px = (uint64_t)mk->sof_w * mk->sof_h;
    for (int c = 0; c < mk->ncomp; c++)
        samples += mk->comp_samples[c];
    img_cost k;
    k.work = mk->scan_samples + samples + px * 3;
    k.mem = px * 3 * (mk->orientation != 1 ? 2 : 1) + (mk->ncomp == 4 ? px * 4 : 0) +
            (mk->progressive ? samples * 2 : 0);
    return k;
}

/* The walk and the checks of every limit it allows, before libjpeg sees the bytes. */
static int img_jpeg_precheck(const uint8_t *buf, size_t len, const img_limits *limits,
                             img_jpeg_markers *mk)
{
    int rc = img_jpeg_walk(buf, len, mk);
    if (rc != VG_OK || !mk->sof_w)
        return rc; /* no frame: libjpeg's header read reports it */
    rc = img__check_dims("JPEG", mk->sof_w, mk->sof_h, limits);
    if (rc != VG_OK)
        return rc;
    if (mk->scans > limits->max_jpeg_scans)
        return img__limit_fail(IMG_LIMIT_JPEG_SCANS, VG_ECORRUPT,
                               "JPEG has %u scans, more than max_jpeg_scans %u", mk->scans,
                               limits->max_jpeg_scans);
    return img__check_cost("JPEG", img_jpeg_cost(mk), len, limits);
}

/* Warnings libjpeg recovers from without losing pixels: stray bytes before a marker, version
 * and parameter oddities in headers, a bad ICC profile we never read. Anything else (bad Huffman
 * code, premature end of a segment, lost restart sync, inconsistent progression) means damaged
 * pixels and is an error. */
static const char *const IMG_JPEG_BENIGN_WARNINGS[] = {
    "extraneous bytes before marker",
    "unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Unknown Adobe color transform code",
    "bad ICC marker",
};

static int img_jpeg_benign(const char *msg)
{
    for (size_t i = 0; i < VG_ARRAY_LEN(IMG_JPEG_BENIGN_WARNINGS); i++)
        if (strstr(msg, IMG_JPEG_BENIGN_WARNINGS[i]))
            return 1;
    return 0;
}

/* After a call returned -1: 1 if all that happened was a harmless warning. TurboJPEG keeps the
 * text of the first warning only (or of the fatal error that followed it). */
static int img_jpeg_only_benign(tjhandle tj)
{
    if (tjGetErrorCode(tj) != TJERR_WARNING)
        return 0;
    const char *msg = tjGetErrorStr2(tj);
    return msg && img_jpeg_benign(msg);
}

/* Maps the library's last error on tj to a VG_E* code with its message as detail. */
static int img_jpeg_error(tjhandle tj, const char *what)
{
    const char *msg = tjGetErrorStr2(tj);
    if (!msg)
        msg = "unknown libjpeg error";
    int code = VG_ECORRUPT;
    if (strstr(msg, "Premature end of JPEG file"))
        code = VG_ETRUNC;
    else if (strstr(msg, "Unsupported JPEG process") ||
             strstr(msg, "Unsupported JPEG data precision") ||
             strstr(msg, "Unsupported color conversion"))
        code = VG_EFORMAT;
    else if (strstr(msg, "Insufficient memory") || strstr(msg, "Memory allocation failure"))
        code = VG_ENOMEM;
    return vg_err_set(code, "JPEG %s: %s", what, msg);
}

static int img_jpeg_header(tjhandle tj, const uint8_t *buf, size_t len, int *w, int *h, int *cs)
{
    int subsamp = -1;
    *w = *h = 0;
    *cs = -1;
    if (len > (size_t)(unsigned long)-1)
        return vg_err_set(VG_ETOOBIG, "JPEG of %zu bytes is too large for libturbojpeg", len);
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &subsamp, cs) != 0 &&
        !img_jpeg_only_benign(tj))
        return img_jpeg_error(tj, "header");
    /* A tables-only stream "succeeds" without filling anything in. */
    if (*w <= 0 || *h <= 0 || *cs < 0)
        return vg_err_set(VG_ECORRUPT, "JPEG header has no usable frame");
    return VG_OK;
}

int img__jpeg_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out)
{
    img_jpeg_markers mk;
    int rc = img_jpeg_precheck(buf, len, limits, &mk);
    if (rc != VG_OK)
        return rc;
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return vg_err_set(VG_ENOMEM, "tjInitDecompress failed");
    int w, h, cs;
    rc = img_jpeg_header(tj, buf, len, &w, &h, &cs);
    tjDestroy(tj);
    if (rc != VG_OK)
        return rc;
    rc = img__check_dims("JPEG", (uint32_t)w, (uint32_t)h, limits);
    if (rc != VG_OK)
        return rc;
    out->w = (uint32_t)w;
    out->h = (uint32_t)h;
    out->orientation = mk.orientation;
    out->has_alpha = 0;
    out->frames = 1;
    img_cost k = img_jpeg_cost(&mk);
    out->work = k.work;
    out->mem = k.mem;
    return VG_OK;
}

static uint32_t img_jpeg_scaled(int dim, int denom)
{
    return (uint32_t)(((long)dim + denom - 1) / denom); /* = TJSCALED(dim, 1/denom) */
}

static int img_jpeg_has_factor(int denom)
{
    int n = 0;
    const tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf && i < n; i++)
        if (sf[i].num == 1 && sf[i].denom == denom)
            return 1;
    return denom == 1;
}

/* Largest power-of-two denominator (8, 4, 2, 1) whose scaled w x h still covers need_w x
 * need_h (a 0 side is unconstrained; 0 x 0 asks for full size). */
static int img_jpeg_pick_denom(int w, int h, uint32_t need_w, uint32_t need_h)
{
    if (need_w == 0 && need_h == 0)
        return 1;
    int d = IMG_JPEG_MAX_DENOM;
    for (; d > 1; d /= 2) {
        if (img_jpeg_scaled(w, d) >= need_w && img_jpeg_scaled(h, d) >= need_h &&
            img_jpeg_has_factor(d))
            break;
    }
    /* Tiny images round several scales to the same size: take the finest of those (same
     * output, better pixels), which is also the one TurboJPEG itself settles on. */
    while (d > 1 && img_jpeg_scaled(w, d / 2) == img_jpeg_scaled(w, d) &&
           img_jpeg_scaled(h, d / 2) == img_jpeg_scaled(h, d))
        d /= 2;
    return d;
}

/* CMYK (4 bytes per pixel, as stored) -> RGB or gray. Adobe writers store inverted values
 * (0 = full ink), so channel = C*K/255; plain CMYK is (255-C)(255-K)/255. Rounded to nearest. */
static void img_jpeg_cmyk_convert(const uint8_t *cmyk, size_t n, int inverted, int channels,
                                  uint8_t *dst)
{
    for (size_t i = 0; i < n; i++, cmyk += 4) {
        uint32_t c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        uint32_t r = (c * k + 127) / 255, g = (m * k + 127) / 255, b = (y * k + 127) / 255;
        if (channels == 1) {
            dst[i] = img__luma8(r, g, b);
        } else {
            dst[3 * i] = (uint8_t)r;
            dst[3 * i + 1] = (uint8_t)g;
            dst[3 * i + 2] = (uint8_t)b;
        }
    }
}

/* Runs tjDecompress2 into dst (dw x dh, pixel format pf) and sorts warnings from errors. */
static int img_jpeg_run(tjhandle tj, const uint8_t *buf, size_t len, uint8_t *dst, uint32_t dw,
                        uint32_t dh, int pf, int flags)
{
    if (tjDecompress2(tj, buf, (unsigned long)len, dst, (int)dw, 0, (int)dh, pf, flags) == 0 ||
        img_jpeg_only_benign(tj))
        return VG_OK;
    return img_jpeg_error(tj, "decode");
}

int img__jpeg_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out)
{
    img_jpeg_markers mk;
    int rc = img_jpeg_precheck(buf, len, &opts->limits, &mk);
    if (rc != VG_OK)
        return rc;
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return vg_err_set(VG_ENOMEM, "tjInitDecompress failed");
    uint8_t *px = NULL, *tmp = NULL;
    int w, h, cs;
    rc = img_jpeg_header(tj, buf, len, &w, &h, &cs);
    if (rc == VG_OK)
        rc = img__check_dims("JPEG", (uint32_t)w, (uint32_t)h, &opts->limits);
    if (rc != VG_OK)
        goto done;

    int orient = opts->ignore_exif ? 1 : mk.orientation;
    int swap = orient >= 5; /* 5..8 exchange width and height */
    int denom = img_jpeg_pick_denom(w, h, swap ? opts->min_h : opts->min_w,
                                    swap ? opts->min_w : opts->min_h);
    uint32_t sw = img_jpeg_scaled(w, denom), sh = img_jpeg_scaled(h, denom);
    int channels = opts->pixfmt == IMG_GRAY ? 1 : 3;
    int flags = TJFLAG_LIMITSCANS | (opts->fast_dct ? TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE : 0);
    size_t nbytes;
    rc = img__image_bytes(sw, sh, channels, &nbytes);
    if (rc != VG_OK)
        goto done;
    px = vg_malloc(nbytes);
    if (!px) {
        rc = vg_err_set(VG_ENOMEM, "JPEG output %ux%ux%d", sw, sh, channels);
        goto done;
    }
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        size_t cbytes;
        rc = img__image_bytes(sw, sh, 4, &cbytes);
        if (rc != VG_OK)
            goto done;
        tmp = vg_malloc(cbytes);
        if (!tmp) {
            rc = vg_err_set(VG_ENOMEM, "JPEG CMYK buffer %ux%u", sw, sh);
            goto done;
        }
        rc = img_jpeg_run(tj, buf, len, tmp, sw, sh, TJPF_CMYK, flags);
        if (rc != VG_OK)
            goto done;
        /* YCCK is only defined by Adobe's APP14, whose convention is inverted CMYK. */
        img_jpeg_cmyk_convert(tmp, (size_t)sw * sh, mk.adobe || cs == TJCS_YCCK, channels, px);
        vg_free(tmp);
        tmp = NULL;
    } else {
        rc = img_jpeg_run(tj, buf, len, px, sw, sh, channels == 1 ? TJPF_GRAY : TJPF_RGB, flags);
        if (rc != VG_OK)
            goto done;
    }
    if (orient != 1) {
        tmp = vg_malloc(nbytes);
        if (!tmp) {
            rc = vg_err_set(VG_ENOMEM, "JPEG orientation buffer %ux%ux%d", sw, sh, channels);
            goto done;
        }
        img__orient_copy(px, sw, sh, channels, orient, tmp);
        vg_free(px);
        px = tmp;
        tmp = NULL;
    }
    out->px = px;
    px = NULL;
    out->w = swap ? sh : sw;
    out->h = swap ? sw : sh;
    out->channels = channels;
    out->src_w = (uint32_t)w;
    out->src_h = (uint32_t)h;
    out->orientation = mk.orientation;
    out->scale_denom = denom;
done:
    vg_free(tmp);
    vg_free(px);
    tjDestroy(tj);
    return rc;
}
