/*
 * PDQ from encoded image bytes: the two pipelines.
 *
 * compat reproduces Meta's pdq-photo-hasher, whose default build decodes through ImageMagick
 * (`convert FILE pnm:-`, which is libjpeg with default settings for JPEG, EXIF ignored) and CImg:
 *   - full-resolution decode to 8-bit RGB;
 *   - ImageMagick writes a greyscale PNM (P5, or P4 when only black and white) whenever every
 *     pixel has R == G == B, and CImg then hashes the grey value itself rather than
 *     0.299 R + 0.587 G + 0.114 B, which differs from it by a float ulp for some levels; so an
 *     all-grey image is hashed as grey here too;
 *   - a side over 512 px: CImg's nearest-neighbour resize to 512x512 (img_resize_nearest).
 *
 * fast asks img for the luma plane alone (libjpeg-turbo then skips the chroma IDCT, upsampling
 * and colour conversion), with EXIF orientation applied, and samples it at the reference's own
 * 512x512 nearest-neighbour grid (see axis_taps), so the tent filter and decimation see the
 * reference's geometry. By default the plane is full resolution, so the grid picks exactly the
 * reference's pixels: that grid aliases fine detail (stripes, ripples, stars, wood grain, the
 * texture of a q100 photo), and a DCT-scaled decode, being an area average, cannot reproduce
 * the aliasing; at 1/8 scale a 1920x1280 photo's pixel (8 px) is coarser than the grid's pitch
 * (2.5-3.75 px) and large photos drifted 12-40 bits (issue 13; 1/2 scale still 36). Y instead
 * of the reference's float luma of RGB costs at most 8 bits. fast_min_side > 0 brings the DCT
 * scaling back for callers that prefer half the decode work to that accuracy, and
 * pdq_hash_image_copies keeps it by default (PDQ_FAST_MIN_SIDE_PX): its copy hashes (bars,
 * flips, crops) on a full-resolution plane cost 2-4x (Storm 1920x1280: 21.7M -> 78.9M
 * instructions) and find other bars, a change for the copy-detection work to weigh.
 */
#include "pdq/pdq_int.h"

#include "core/core.h"

#include <string.h>

void pdq_image_opts_default(pdq_image_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = PDQ_MODE_FAST;
    o->flags = 0;
    img_limits_default(&o->limits);
    o->fast_min_side = 0;
}

const char *pdq_mode_name(pdq_mode m)
{
    return m == PDQ_MODE_COMPAT ? "compat" : "fast";
}

int pdq_mode_parse(const char *s, pdq_mode *out)
{
    if (s && strcmp(s, "fast") == 0) {
        *out = PDQ_MODE_FAST;
        return VG_OK;
    }
    if (s && strcmp(s, "compat") == 0) {
        *out = PDQ_MODE_COMPAT;
        return VG_OK;
    }
    return vg_err_set(VG_EINVAL, "unknown PDQ mode '%s' (fast or compat)", s ? s : "(null)");
}

/* 1 when every pixel of an interleaved RGB image has R == G == B. */
static int all_grey(const uint8_t *rgb, size_t npix)
{
    for (size_t i = 0; i < npix; i++, rgb += 3)
        if (rgb[0] != rgb[1] || rgb[1] != rgb[2])
            return 0;
    return 1;
}

static int hash_compat(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                       pdq_image_result *res)
{
    const uint64_t t0 = vg_now_ns();
    img_decode_opts d;
    img_decode_opts_default(&d);
    d.limits = opts->limits;
    d.pixfmt = IMG_RGB;
    d.ignore_exif = 1;
    img_image im;
    int rc = img_decode(buf, len, &d, &im);
    if (rc != VG_OK)
        return rc;

    uint8_t *px = im.px;
    uint32_t w = im.w, h = im.h;
    const int grey = all_grey(im.px, (size_t)w * h);
    if (w > PDQ_COMPAT_MAX_SIDE_PX || h > PDQ_COMPAT_MAX_SIDE_PX) {
        const uint32_t side = PDQ_COMPAT_MAX_SIDE_PX;
        uint8_t *dst;
        rc = pdq__ctx_bytes(ctx, (size_t)side * side * 3, &dst);
        if (rc != VG_OK)
            goto done;
        img_resize_nearest(im.px, w, h, 3, dst, side, side);
        px = dst;
        w = h = side;
    }
    if (grey) {
        /* Keep one channel, compacting in place: px is either our decoded image or our
         * scratch, and each read (3i) is at or ahead of its write (i). */
        const size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++)
            px[i] = px[3 * i];
    }
    const uint64_t t1 = vg_now_ns();
    rc = grey ? pdq_hash_gray8(ctx, px, w, h, w, opts->flags, &res->r)
              : pdq_hash_rgb8(ctx, px, w, h, (size_t)w * 3, opts->flags, &res->r);
    if (rc != VG_OK)
        goto done;
    const uint64_t t2 = vg_now_ns();
    res->width = im.src_w;
    res->height = im.src_h;
    res->hashed_w = w;
    res->hashed_h = h;
    res->format = im.format;
    res->decode_ns = t1 - t0;
    res->hash_ns = t2 - t1;
done:
    img_image_free(&im);
    return rc;
}

/* The reference's sampling grid, rebuilt on a DCT-scaled decode. pdq-photo-hasher hashes the
 * full-resolution image resized by nearest neighbour to tw x th (512x512 when a side is over
 * 512, else the image's own size): grid pixel x is source pixel floor(x * W / tw), whose centre
 * is at full-resolution coordinate floor(x * W / tw) + 0.5. A 1/k-scaled decode has pixel j
 * centred at j*k + k/2, so that point is at scaled coordinate (floor(x W / tw) + 0.5) / k - 0.5,
 * interpolated linearly between its two neighbours (k = 1 gives the reference's own pixel).
 * Keeping the grid, and so the tent filter's window and the decimation positions, exactly the
 * reference's is what keeps the fast hash close to it; the sample values differ only by the
 * k x k averaging the scaled IDCT does. */
static void axis_taps(uint32_t full, uint32_t scaled, uint32_t k, uint32_t grid, uint32_t *i0,
                      uint32_t *i1, float *frac)
{
    for (uint32_t x = 0; x < grid; x++) {
        uint64_t src = (uint64_t)x * full / grid; /* floor, exact in integers */
        double u = ((double)src + 0.5) / k - 0.5;
        if (u < 0)
            u = 0;
        if (u > (double)(scaled - 1))
            u = (double)(scaled - 1);
        uint32_t j = (uint32_t)u;
        i0[x] = j;
        i1[x] = j + 1 < scaled ? j + 1 : j; /* the last pixel's right tap has weight 0 */
        frac[x] = (float)(u - j);
    }
}

/* One source row (w bytes) interpolated along x at the grid's columns. */
static void lerp_row(pdq_impl impl, const uint8_t *row, uint32_t w, const uint32_t *x0,
                     const uint32_t *x1, const float *fx, uint32_t gw, float *out)
{
#ifdef PDQ__HAVE_AVX2
    if (impl == PDQ_IMPL_AVX2) {
        pdq__lerp_row_avx2(row, w, x0, x1, fx, gw, out);
        return;
    }
#endif
    (void)impl;
    (void)w;
    for (uint32_t x = 0; x < gw; x++) {
        const float a = (float)row[x0[x]], b = (float)row[x1[x]];
        out[x] = a + (b - a) * fx[x];
    }
}

/* Samples gray (w x h, tightly packed) at the grid given by the taps into out (gw x gh floats):
 * rows are interpolated along x once each (two row buffers, reused while the grid's rows walk
 * down the image), then blended along y. */
static void sample_grid(pdq_impl impl, const uint8_t *gray, uint32_t w, const uint32_t *x0,
                        const uint32_t *x1, const float *fx, uint32_t gw, const uint32_t *y0,
                        const uint32_t *y1, const float *fy, uint32_t gh, float *rowbuf, float *out)
{
    float *top = rowbuf, *bot = rowbuf + gw;
    int64_t have_top = -1, have_bot = -1; /* source rows now in top / bot */
    for (uint32_t y = 0; y < gh; y++) {
        if (have_top != y0[y]) {
            if (have_bot == y0[y]) { /* moved down one row: the old bottom is the new top */
                float *t = top;
                top = bot;
                bot = t;
                have_top = have_bot;
                have_bot = -1;
            } else {
                lerp_row(impl, gray + (size_t)y0[y] * w, w, x0, x1, fx, gw, top);
                have_top = y0[y];
            }
        }
        if (have_bot != y1[y]) {
            if (y1[y] == y0[y]) {
                memcpy(bot, top, gw * sizeof *bot);
            } else {
                lerp_row(impl, gray + (size_t)y1[y] * w, w, x0, x1, fx, gw, bot);
            }
            have_bot = y1[y];
        }
        float *o = out + (size_t)y * gw;
#ifdef PDQ__HAVE_AVX2
        if (impl == PDQ_IMPL_AVX2) {
            pdq__lerp_rows_avx2(top, bot, fy[y], o, (int)gw);
            continue;
        }
#endif
        for (uint32_t x = 0; x < gw; x++)
            o[x] = top[x] + (bot[x] - top[x]) * fy[y];
    }
    (void)impl;
}

void pdq_rgb_to_luma8(const uint8_t *rgb, size_t npix, uint8_t *gray)
{
#ifdef PDQ__HAVE_AVX2
    if (vg_cpu_features() & VG_CPU_AVX2) {
        pdq__rgb_to_gray8_avx2(rgb, npix, gray);
        return;
    }
#endif
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *p = rgb + 3 * i;
        gray[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
    }
}

int pdq_hash_decoded(pdq_ctx *ctx, const img_image *im, unsigned flags, pdq_image_result *res)
{
    if (!ctx || !im || !im->px || !res || (im->channels != 1 && im->channels != 3) || !im->w ||
        !im->h)
        return vg_err_set(VG_EINVAL, "pdq_hash_decoded: bad image");
    const uint64_t t0 = vg_now_ns();
    const int swap = im->orientation >= 5 && im->orientation <= 8;
    const uint32_t W = swap ? im->src_h : im->src_w, H = swap ? im->src_w : im->src_h;
    const int big = W > PDQ_COMPAT_MAX_SIDE_PX || H > PDQ_COMPAT_MAX_SIDE_PX;
    const uint32_t gw = big ? PDQ_COMPAT_MAX_SIDE_PX : W, gh = big ? PDQ_COMPAT_MAX_SIDE_PX : H;
    const uint32_t k = im->scale_denom > 0 ? (uint32_t)im->scale_denom : 1;
    const size_t npix = (size_t)im->w * im->h;
    const int direct = im->w == gw && im->h == gh;
    const uint8_t *gray = im->px;
    uint8_t *scratch = NULL;
    /* byte scratch: the luma plane of an RGB image, then (resampling) the grid floats, two
     * interpolated rows and the per-axis taps (all 4-byte items) */
    size_t luma_bytes = im->channels == 3 ? (npix + 63) / 64 * 64 : 0;
    size_t grid_n = (size_t)gw * gh, row_n = 2 * (size_t)gw, taps_n = 3 * ((size_t)gw + gh);
    int rc =
        pdq__ctx_bytes(ctx, luma_bytes + (direct ? 0 : (grid_n + row_n + taps_n) * 4), &scratch);
    if (rc != VG_OK)
        return rc;
    if (im->channels == 3) {
        pdq_rgb_to_luma8(im->px, npix, scratch);
        gray = scratch;
    }
    uint64_t t1;
    if (direct) {
        t1 = vg_now_ns();
        rc = pdq_hash_gray8(ctx, gray, im->w, im->h, im->w, flags, &res->r);
    } else {
        float *grid = (float *)(void *)(scratch + luma_bytes), *rowbuf = grid + grid_n;
        uint32_t *x0 = (uint32_t *)(void *)(rowbuf + row_n), *x1 = x0 + gw, *y0 = x1 + gw,
                 *y1 = y0 + gh;
        float *fx = (float *)(void *)(y1 + gh), *fy = fx + gw;
        axis_taps(W, im->w, k, gw, x0, x1, fx);
        axis_taps(H, im->h, k, gh, y0, y1, fy);
        sample_grid(pdq_ctx_impl(ctx), gray, im->w, x0, x1, fx, gw, y0, y1, fy, gh, rowbuf, grid);
        t1 = vg_now_ns();
        rc = pdq__hash_f32_trusted(ctx, grid, gw, gh, flags, &res->r);
    }
    if (rc != VG_OK)
        return rc;
    const uint64_t t2 = vg_now_ns();
    res->width = W;
    res->height = H;
    res->hashed_w = gw;
    res->hashed_h = gh;
    res->format = im->format;
    res->decode_ns = t1 - t0; /* the caller adds its own decode time */
    res->hash_ns = t2 - t1;
    return VG_OK;
}

/* The decode is sized for the whole image (short side at least min_side), so the content of a
 * letterboxed screenshot, half the canvas or less, was hashed from under 100 px: the DCT
 * scaling's blur and a 1 px error in the bars (4 px of the original) cost it up to 30 bits
 * (docs/MATCHING.md). When the trimmed content's short side is under min_side, the image is
 * decoded again at the scale that gives the content that side (or in full) and the content
 * hashed from it, so it gets the resolution a whole image gets. Only framed large images with
 * small content pay the second decode. */
static int rehash_small_content(pdq_ctx *ctx, const uint8_t *buf, size_t len,
                                const img_decode_opts *d0, uint32_t min_side, const img_image *im,
                                pdq_copy_set *copies, pdq_image_result *res)
{
    /* the smallest trimmed content (the lenient bars', the peeled one, the caption candidate)
     * sets the scale; each of them under min_side is hashed anew from the one larger decode */
    uint32_t content = 0;
    for (size_t k = 0; k < copies->n; k++)
        if (copies->h[k].region == PDQ_REGION_TRIMMED) {
            const uint32_t c = VG_MIN(copies->h[k].rect[2], copies->h[k].rect[3]);
            content = content && content < c ? content : c;
        }
    if (content >= min_side || !content)
        return VG_OK;
    const uint64_t t0 = vg_now_ns();
    img_decode_opts d = *d0;
    /* the same scale on both axes: the short side of the image grows as the content's does */
    const uint64_t want = ((uint64_t)VG_MIN(im->w, im->h) * min_side + content - 1) / content;
    d.min_w = d.min_h = (uint32_t)VG_MIN(want, (uint64_t)UINT32_MAX);
    img_image big;
    int rc = img_decode(buf, len, &d, &big);
    if (rc != VG_OK)
        return rc;
    res->decode_ns += vg_now_ns() - t0;
    const uint64_t t1 = vg_now_ns();
    for (size_t k = 0; rc == VG_OK && k < copies->n; k++) {
        pdq_copy_hash *c = &copies->h[k];
        if (c->region != PDQ_REGION_TRIMMED || VG_MIN(c->rect[2], c->rect[3]) >= min_side)
            continue;
        /* The first decode's rectangle, scaled: finding the bars again at this size is no
         * better (the larger decode shows more of the content's own dark edges, which then
         * join the bar). */
        const uint32_t bx = (uint32_t)(((uint64_t)c->rect[0] * big.w + im->w / 2) / im->w);
        const uint32_t by = (uint32_t)(((uint64_t)c->rect[1] * big.h + im->h / 2) / im->h);
        const uint32_t bx1 =
            (uint32_t)(((uint64_t)(c->rect[0] + c->rect[2]) * big.w + im->w / 2) / im->w);
        const uint32_t by1 =
            (uint32_t)(((uint64_t)(c->rect[1] + c->rect[3]) * big.h + im->h / 2) / im->h);
        if (bx1 > big.w || by1 > big.h || bx1 < bx + PDQ_MIN_SIDE_PX || by1 < by + PDQ_MIN_SIDE_PX)
            continue;
        /* The line the scaled rectangle's rounding left of a frame (a 1 px sliver of black
         * at the first decode's quarter scale, 4 px here) is peeled off: up to one first-decode
         * pixel's worth of lines flat across the rectangle. */
        uint32_t rr[4] = {bx, by, bx1, by1};
        pdq__refine_rect(big.px, big.w, rr, big.w / im->w + 1);
        pdq_result r;
        rc = pdq__hash_region_as_upload(
            ctx, big.px, big.w, rr[0], rr[1], rr[2] - rr[0], rr[3] - rr[1],
            big.scale_denom > 0 ? (uint32_t)big.scale_denom : 1, PDQ_WANT_DIHEDRAL, &r);
        if (rc == VG_OK) {
            c->quality = r.quality;
            memcpy(c->dihedral, r.dihedral, sizeof c->dihedral);
        }
    }
    img_image_free(&big);
    res->hash_ns += vg_now_ns() - t1;
    return rc;
}

static int hash_fast(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                     pdq_image_result *res, unsigned copy_what, pdq_copy_set *copies)
{
    const uint64_t t0 = vg_now_ns();
    const uint32_t min_side =
        opts->fast_min_side ? opts->fast_min_side : (copies ? PDQ_FAST_MIN_SIDE_PX : 0);
    /* The header first: an image the reference hashes at its own size (no side over 512) is
     * decoded in full, every pixel hashed; a larger one is DCT-scaled when min_side asks for
     * it (by default it is not: see the top of this file). (A probe costs a few
     * microseconds, about 1% of decoding even a 256x256 JPEG.) */
    img_info info;
    int rc = img_probe(buf, len, &opts->limits, &info);
    if (rc != VG_OK)
        return rc;
    const int big = info.w > PDQ_COMPAT_MAX_SIDE_PX || info.h > PDQ_COMPAT_MAX_SIDE_PX;
    img_decode_opts d;
    img_decode_opts_default(&d);
    d.limits = opts->limits;
    d.pixfmt = IMG_GRAY;
    d.min_w = d.min_h = big ? min_side : 0;
    d.ignore_exif = 0;
    img_image im;
    rc = img_decode(buf, len, &d, &im);
    if (rc != VG_OK)
        return rc;
    const uint64_t decoded = vg_now_ns();
    rc = pdq_hash_decoded(ctx, &im, opts->flags, res);
    if (rc == VG_OK)
        res->decode_ns += decoded - t0;
    if (rc == VG_OK && copies) {
        const uint64_t t1 = vg_now_ns();
        rc = pdq_copy_hashes(ctx, &im, copy_what, copies);
        res->hash_ns += vg_now_ns() - t1;
        if (rc == VG_OK && big && min_side)
            rc = rehash_small_content(ctx, buf, len, &d, min_side, &im, copies, res);
    }
    img_image_free(&im);
    return rc;
}

int pdq_hash_image(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                   pdq_image_result *out)
{
    if (!ctx || !buf || !out)
        return vg_err_set(VG_EINVAL, "pdq_hash_image: NULL argument");
    pdq_image_opts defaults;
    if (!opts) {
        pdq_image_opts_default(&defaults);
        opts = &defaults;
    }
    pdq_image_result res;
    memset(&res, 0, sizeof res);
    int rc;
    switch (opts->mode) {
    case PDQ_MODE_FAST:
        rc = hash_fast(ctx, buf, len, opts, &res, 0, NULL);
        break;
    case PDQ_MODE_COMPAT:
        rc = hash_compat(ctx, buf, len, opts, &res);
        break;
    default:
        return vg_err_set(VG_EINVAL, "pdq_hash_image: unknown mode %d", (int)opts->mode);
    }
    if (rc == VG_OK)
        *out = res;
    return rc;
}

int pdq_hash_image_copies(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                          unsigned what, pdq_image_result *out, pdq_copy_set *copies)
{
    if (!ctx || !buf || !out || !copies)
        return vg_err_set(VG_EINVAL, "pdq_hash_image_copies: NULL argument");
    pdq_image_opts defaults;
    if (!opts) {
        pdq_image_opts_default(&defaults);
        opts = &defaults;
    }
    if (opts->mode != PDQ_MODE_FAST)
        return vg_err_set(VG_EINVAL, "pdq_hash_image_copies: fast mode only");
    pdq_image_result res;
    memset(&res, 0, sizeof res);
    int rc = hash_fast(ctx, buf, len, opts, &res, what, copies);
    if (rc == VG_OK)
        *out = res;
    return rc;
}
