/*
 * pdq: hashes of parts and true mirrors of an image, for copy detection beyond the whole image
 * (docs/MATCHING.md has the evaluation behind every choice here).
 *
 * A whole-image PDQ hash survives re-encoding, resizing, colour and blur edits, but not a change
 * of what the frame holds: a border, a letterbox, a caption bar or a crop moves every DCT
 * coefficient. So, beside the whole image:
 *   - trimmed: bars on any side are found and the content region is hashed on its own. A bar is
 *     a run of lines (rows or columns from an edge inwards) most of whose pixels are within a
 *     tolerance of the line's median, so JPEG noise and caption text on a plain bar do not end
 *     it; run on both the query and the reference, so either side may be the framed one;
 *   - flip: the mirrored pixels of a small image, hashed anew: the dihedral hashes derived from
 *     one DCT assume the downsampling commutes with a mirror, which holds on the 512 px grid but
 *     not for small images hashed at their own size (a mirrored 150x150 image lands 32-44 bits
 *     from its derived flip);
 *   - centre crops (references): a copy cropped by 10% or 20% meets the matching region.
 * Nothing here is used by the compat pipeline, whose hash stays bit-exact with the reference.
 */
#include "pdq/pdq_int.h"

#include "core/core.h"

#include <string.h>

/* Luma levels a bar pixel may differ from the bar's colour (the median of its edge line): JPEG
 * noise on a flat bar stays within about 8 at quality 50, while sky or a gradient drifts past it
 * within a few lines, so a photo's own smooth edge is seldom taken for a bar. */
#define PDQ__BAR_TOLERANCE 10
/* Share of the edge line's pixels (percent) that must have the bar's colour: a bar is flat. */
#define PDQ__BAR_EDGE_SHARE 95
/* Share of a line's pixels (percent) with the bar's colour for the line to continue the bar:
 * a line through bold caption text is up to 60% ink (at 60 here, 15% captions on 512 px
 * textures lost their bar half the time). Lenient, because the bar must end on a flat line. */
#define PDQ__BAR_LINE_SHARE 40
/* Share of the lines from the edge to a bar's inner end (percent) that must be bar lines: the
 * rows through a caption's letters may fail the line test one by one. */
#define PDQ__BAR_RUN_SHARE 60
/* Rounds of the search: each finds one more bar inside the last one's rectangle (a title bar,
 * then the screenshot's background; a frame, then a caption bar). */
#define PDQ__BAR_ROUNDS 3
/* Rounds of pdq_copy_find_content (rows, then columns, each): a title bar, a canvas, a
 * picture's own flat margin of another colour, and one to spare. */
#define PDQ__CONTENT_ROUNDS 4
/* What strict bars must leave of a side (per mille); lower than the lenient bars' minimum
 * (PDQ_COPY_MIN_CONTENT_PERMILLE), which a bar running through a photo needed: a portrait
 * photo in a 16:9 screenshot at 55% is 17% of its width, and a strict bar does not run through
 * anything. A flat image is still nothing: its content fails the quality gate. */
#define PDQ__CONTENT_MIN_PERMILLE 150
/* Two trims within this many px of each other on every side (at the decode's scale, about a
 * quarter of a 600 px copy's) hash to within a few bits: one set is enough. */
#define PDQ__SAME_TRIM_PX 1
/* A caption strip is at most this share of its side (per mille): the bench's 30% caption is 23%
 * of the copy's height. */
#define PDQ__CAPTION_MAX_PERMILLE 350
/* Lines in a row none of which is flat (per mille of the side) that tell the picture from a
 * caption's text: the bench's text lines are 4-6% of the copy's height (a 30% caption's), a
 * picture goes on. Tried 50 (every 8th photo of the Debian set: caption 30% 79.4% -> 67.5%, a
 * text line taken for the picture), 150 and 200 (captions 0.5-1.9 points lower). */
#define PDQ__CAPTION_PICTURE_PERMILLE 100
/* Luma levels every pixel of a peeled line may differ from the line's median (pdq_copy_peel):
 * a flat canvas or frame after JPEG and DCT scaling stays within a few levels, and a single
 * star, letter stroke or object pixel beyond it keeps the line. Tried: 12 (every 8th photo of
 * the Debian set: border, screenshot and caption 0.5-1.5 points lower). */
#define PDQ__PEEL_TOLERANCE 8

static const char *const region_names[PDQ_REGION_COUNT] = {
    "whole", "trimmed", "flip", "centre90", "centre80", "top", "bottom"};

const char *pdq_region_name(pdq_region r)
{
    return (unsigned)r < PDQ_REGION_COUNT ? region_names[r] : "unknown";
}

/* Median of the n pixels p[0], p[step], ... */
static int line_median(const uint8_t *p, size_t n, size_t step)
{
    uint32_t hist[256] = {0};
    for (size_t i = 0; i < n; i++)
        hist[p[i * step]]++;
    size_t acc = 0;
    int med = 0;
    for (; med < 255; med++) {
        acc += hist[med];
        if (acc > n / 2)
            break;
    }
    return med;
}

/* Percent of the n pixels p[0], p[step], ... within the tolerance of colour. */
static unsigned line_share(const uint8_t *p, size_t n, size_t step, int colour)
{
    size_t near = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)p[i * step] - colour;
        near += d <= PDQ__BAR_TOLERANCE && d >= -PDQ__BAR_TOLERANCE;
    }
    return (unsigned)(near * 100 / n);
}

/* Width of the bar at one edge: lines first + k * line_step (k = 0..max_lines-1), each n pixels
 * apart by px_step. The edge line must be flat; the bar ends at its last flat line (as flat as
 * the edge line must be) such that at least PDQ__BAR_RUN_SHARE % of the lines up to it are bar
 * lines. Only a flat line may end it: a caption's last line is its plain margin, while a bar
 * allowed to end on a mostly-bar line ran on into a photo's own dark or bright rows (a dark
 * canvas around a night sky: docs/MATCHING.md, "Screenshots"). */
static uint32_t edge_bar(const uint8_t *first, ptrdiff_t line_step, size_t n, size_t px_step,
                         uint32_t max_lines)
{
    const int colour = line_median(first, n, px_step);
    if (line_share(first, n, px_step, colour) < PDQ__BAR_EDGE_SHARE)
        return 0;
    uint32_t end = 0, bars = 0;
    for (uint32_t k = 0; k < max_lines; k++) {
        const unsigned share = line_share(first + (ptrdiff_t)k * line_step, n, px_step, colour);
        if (share >= PDQ__BAR_LINE_SHARE) {
            bars++;
            if (share >= PDQ__BAR_EDGE_SHARE && bars * 100 >= (k + 1) * PDQ__BAR_RUN_SHARE)
                end = k + 1;
        }
        if (bars * 100 < (k + 1) * PDQ__BAR_RUN_SHARE / 2)
            break; /* far below the share: no later line can bring it back */
    }
    return end;
}

int pdq_copy_find_bars(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride, uint32_t trim[4])
{
    memset(trim, 0, 4 * sizeof *trim);
    if (!gray || w < PDQ_MIN_SIDE_PX * 4 || h < PDQ_MIN_SIDE_PX * 4)
        return 0;
    uint32_t x0 = 0, y0 = 0, x1 = w, y1 = h;
    for (int round = 0; round < PDQ__BAR_ROUNDS; round++) {
        uint32_t cw = x1 - x0, ch = y1 - y0;
        uint32_t max_x = cw * (1000 - PDQ_COPY_MIN_CONTENT_PERMILLE) / 2000;
        uint32_t max_y = ch * (1000 - PDQ_COPY_MIN_CONTENT_PERMILLE) / 2000;
        const uint8_t *tl = gray + (size_t)y0 * stride + x0;
        const uint8_t *bl = gray + (size_t)(y1 - 1) * stride + x0;
        const uint8_t *tr = gray + (size_t)y0 * stride + (x1 - 1);
        /* twice max: one side may take all the room the other leaves */
        uint32_t t = edge_bar(tl, (ptrdiff_t)stride, cw, 1, 2 * max_y);
        uint32_t b = edge_bar(bl, -(ptrdiff_t)stride, cw, 1, 2 * max_y);
        uint32_t l = edge_bar(tl, 1, ch, stride, 2 * max_x);
        uint32_t r = edge_bar(tr, -1, ch, stride, 2 * max_x);
        const uint32_t min_x = VG_MAX(2u, cw * PDQ_COPY_MIN_TRIM_PERMILLE / 1000);
        const uint32_t min_y = VG_MAX(2u, ch * PDQ_COPY_MIN_TRIM_PERMILLE / 1000);
        t = t >= min_y ? t : 0;
        b = b >= min_y ? b : 0;
        l = l >= min_x ? l : 0;
        r = r >= min_x ? r : 0;
        if ((uint64_t)t + b > 2 * (uint64_t)max_y)
            t = b = 0; /* (nearly) flat top to bottom: nothing to tell content from bar */
        if ((uint64_t)l + r > 2 * (uint64_t)max_x)
            l = r = 0;
        if (!t && !b && !l && !r)
            break;
        x0 += l;
        x1 -= r;
        y0 += t;
        y1 -= b;
    }
    trim[0] = x0;
    trim[1] = y0;
    trim[2] = w - x1;
    trim[3] = h - y1;
    return x0 || y0 || x1 != w || y1 != h;
}

/* Strict bars (docs/MATCHING.md, "Why framed copies are missed"): each line from the edge in is
 * as flat as the edge line must be, in its colour; the bar ends at the first line that is not.
 * The lenient bars above, needed for captions, end wherever the mixed run allows, and that
 * depends on what else the lines cross: with a frame added (longer lines, more bar colour in
 * each) they ran into a picture's own flat margin (a cut-out on white, a black sky) further than
 * on the reference, and the two contents differed by 50-120 bits. A strict bar stops at the
 * first line with anything in it, on the copy and on the original alike. */
static uint32_t edge_bar_strict(const uint8_t *first, ptrdiff_t line_step, size_t n, size_t px_step,
                                uint32_t max_lines)
{
    const int colour = line_median(first, n, px_step);
    uint32_t k = 0;
    while (k < max_lines &&
           line_share(first + (ptrdiff_t)k * line_step, n, px_step, colour) >= PDQ__BAR_EDGE_SHARE)
        k++;
    return k;
}

/* 1 when every pixel of the line p[0], p[step], ... (n pixels) is within PDQ__PEEL_TOLERANCE of
 * the line's median. No share of outliers: the test must hold on any part of a line that holds
 * on the whole, so that peeling a frame first leaves the same lines to peel as the original. */
static int line_flat_all(const uint8_t *p, size_t n, size_t step)
{
    const int med = line_median(p, n, step);
    for (size_t i = 0; i < n; i++) {
        const int d = (int)p[i * step] - med;
        if (d > PDQ__PEEL_TOLERANCE || d < -PDQ__PEEL_TOLERANCE)
            return 0;
    }
    return 1;
}

/* A caption strip at one edge: from a plain edge line (every pixel within PDQ__PEEL_TOLERANCE
 * of its median, as a caption's margin is) to the inner end of the first run of lines as flat as
 * the edge line in its colour (PDQ__BAR_EDGE_SHARE) that is followed by picture_lines lines of
 * which none is: the strip's plain margin, its text lines and the plain lines between them, up
 * to the picture. That run ends within max_lines; where none does, the farthest flat line
 * within max_lines before the first such stretch of picture lines (the cut before this rule).
 * The strict rounds after it go on while the lines stay flat. The text itself may be anything:
 * at the decode's scale (a quarter of a 600 px copy) bold letters blur into grey that no line
 * share passes, which lost 15% and 30% captions on pictures whose own edge is not flat.
 * Taking the farthest flat line ran into a picture's own flat lines (a white background, a
 * dark sky) as far as the band allowed, and the band is a share of the side, longer on the
 * captioned copy than on the original; the end of the run before the picture is where the
 * picture's own flat edge ends on both (docs/MATCHING.md, "Caption strips"). */
static uint32_t edge_caption(const uint8_t *first, ptrdiff_t line_step, size_t n, size_t px_step,
                             uint32_t max_lines, uint32_t look_lines, uint32_t picture_lines)
{
    const int colour = line_median(first, n, px_step);
    if (!line_flat_all(first, n, px_step))
        return 0;
    uint32_t far = 0, run_end = 0, quiet = 0; /* quiet: lines since the last flat one */
    for (uint32_t k = 1; k < look_lines; k++) {
        if (line_share(first + (ptrdiff_t)k * line_step, n, px_step, colour) >=
            PDQ__BAR_EDGE_SHARE) {
            if (k < max_lines)
                far = k;
            run_end = k;
            quiet = 0;
        } else if (++quiet >= picture_lines) {
            break;
        }
    }
    if (quiet >= picture_lines && run_end < max_lines)
        return run_end + 1;
    return far + 1;
}

/* Keeps bars a and b on a side of length len when each is wide enough and they leave the
 * content its minimum share; else none (flat from edge to edge: nothing to tell apart). */
static void keep_bars(uint32_t *a, uint32_t *b, uint32_t len)
{
    const uint32_t min = VG_MAX(2u, len * PDQ_COPY_MIN_TRIM_PERMILLE / 1000);
    const uint32_t max = len * (1000 - PDQ__CONTENT_MIN_PERMILLE) / 1000;
    *a = *a >= min ? *a : 0;
    *b = *b >= min ? *b : 0;
    if ((uint64_t)*a + *b > max)
        *a = *b = 0;
}

int pdq_copy_find_content(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride, int caption,
                          uint32_t trim[4])
{
    memset(trim, 0, 4 * sizeof *trim);
    if (!gray || w < PDQ_MIN_SIDE_PX * 4 || h < PDQ_MIN_SIDE_PX * 4)
        return 0;
    uint32_t x0 = 0, y0 = 0, x1 = w, y1 = h;
    /* The rows first, on the columns left, then the columns on the rows left, round after
     * round: a line is measured only across the content found so far, so a frame's own lines do
     * not count toward (or against) the picture's (a portrait photo in a wide canvas: its rows
     * are mostly canvas, its columns are not once the canvas above and below is gone). */
    for (int round = 0; round < PDQ__CONTENT_ROUNDS; round++) {
        const uint32_t cw = x1 - x0, ch = y1 - y0;
        const uint32_t max_y = ch * (1000 - PDQ__CONTENT_MIN_PERMILLE) / 1000;
        const uint8_t *tl = gray + (size_t)y0 * stride + x0;
        const uint8_t *bl = gray + (size_t)(y1 - 1) * stride + x0;
        uint32_t t, b;
        if (caption && round == 0) {
            const uint32_t max_c = ch * PDQ__CAPTION_MAX_PERMILLE / 1000;
            const uint32_t pic = VG_MAX(2u, ch * PDQ__CAPTION_PICTURE_PERMILLE / 1000);
            t = edge_caption(tl, (ptrdiff_t)stride, cw, 1, max_c, ch, pic);
            b = edge_caption(bl, -(ptrdiff_t)stride, cw, 1, max_c, ch, pic);
        } else {
            t = edge_bar_strict(tl, (ptrdiff_t)stride, cw, 1, max_y);
            b = edge_bar_strict(bl, -(ptrdiff_t)stride, cw, 1, max_y);
        }
        keep_bars(&t, &b, ch);
        y0 += t;
        y1 -= b;
        const uint32_t ch2 = y1 - y0;
        const uint32_t max_x = cw * (1000 - PDQ__CONTENT_MIN_PERMILLE) / 1000;
        const uint8_t *tl2 = gray + (size_t)y0 * stride + x0;
        const uint8_t *tr2 = gray + (size_t)y0 * stride + (x1 - 1);
        uint32_t l = edge_bar_strict(tl2, 1, ch2, stride, max_x);
        uint32_t r = edge_bar_strict(tr2, -1, ch2, stride, max_x);
        keep_bars(&l, &r, cw);
        x0 += l;
        x1 -= r;
        if (!t && !b && !l && !r)
            break;
    }
    trim[0] = x0;
    trim[1] = y0;
    trim[2] = w - x1;
    trim[3] = h - y1;
    return x0 || y0 || x1 != w || y1 != h;
}

int pdq_copy_peel(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride, uint32_t trim[4])
{
    memset(trim, 0, 4 * sizeof *trim);
    if (!gray || w < PDQ_MIN_SIDE_PX * 4 || h < PDQ_MIN_SIDE_PX * 4)
        return 0;
    /* One line at a time from any side whose outermost line, measured across the rectangle
     * left, is flat, until none is. A line flat across a rectangle is flat across any part of
     * it, so the order does not matter: on a framed copy the frame's lines can all go first,
     * and what is left is peeled as the original alone would be. The strict content's 95%
     * share is not so: a frame's own pixels in a line raised its share, and the copy's bar ran
     * into the picture's own nearly flat margin where the original's stopped. */
    const uint32_t min_w = VG_MAX((uint32_t)PDQ_MIN_SIDE_PX, w * PDQ__CONTENT_MIN_PERMILLE / 1000);
    const uint32_t min_h = VG_MAX((uint32_t)PDQ_MIN_SIDE_PX, h * PDQ__CONTENT_MIN_PERMILLE / 1000);
    uint32_t x0 = 0, y0 = 0, x1 = w, y1 = h;
    for (int changed = 1; changed;) {
        changed = 0;
        while (y1 - y0 > min_h && line_flat_all(gray + (size_t)y0 * stride + x0, x1 - x0, 1))
            y0++, changed = 1;
        while (y1 - y0 > min_h && line_flat_all(gray + (size_t)(y1 - 1) * stride + x0, x1 - x0, 1))
            y1--, changed = 1;
        while (x1 - x0 > min_w && line_flat_all(gray + (size_t)y0 * stride + x0, y1 - y0, stride))
            x0++, changed = 1;
        while (x1 - x0 > min_w &&
               line_flat_all(gray + (size_t)y0 * stride + (x1 - 1), y1 - y0, stride))
            x1--, changed = 1;
    }
    if (y1 - y0 <= min_h || x1 - x0 <= min_w)
        return 0; /* flat from edge to edge: nothing to tell content from frame */
    trim[0] = x0;
    trim[1] = y0;
    trim[2] = w - x1;
    trim[3] = h - y1;
    const uint32_t mx = VG_MAX(2u, w * PDQ_COPY_MIN_TRIM_PERMILLE / 1000);
    const uint32_t my = VG_MAX(2u, h * PDQ_COPY_MIN_TRIM_PERMILLE / 1000);
    return trim[0] >= mx || trim[2] >= mx || trim[1] >= my || trim[3] >= my;
}

void pdq__refine_rect(const uint8_t *gray, size_t stride, uint32_t r[4], uint32_t max_lines)
{
    uint32_t x0 = r[0], y0 = r[1], x1 = r[2], y1 = r[3];
    for (uint32_t k = 0; k < max_lines && y1 - y0 > 2 * PDQ_MIN_SIDE_PX &&
                         line_flat_all(gray + (size_t)y0 * stride + x0, x1 - x0, 1);
         k++)
        y0++;
    for (uint32_t k = 0; k < max_lines && y1 - y0 > 2 * PDQ_MIN_SIDE_PX &&
                         line_flat_all(gray + (size_t)(y1 - 1) * stride + x0, x1 - x0, 1);
         k++)
        y1--;
    for (uint32_t k = 0; k < max_lines && x1 - x0 > 2 * PDQ_MIN_SIDE_PX &&
                         line_flat_all(gray + (size_t)y0 * stride + x0, y1 - y0, stride);
         k++)
        x0++;
    for (uint32_t k = 0; k < max_lines && x1 - x0 > 2 * PDQ_MIN_SIDE_PX &&
                         line_flat_all(gray + (size_t)y0 * stride + (x1 - 1), y1 - y0, stride);
         k++)
        x1--;
    r[0] = x0;
    r[1] = y0;
    r[2] = x1;
    r[3] = y1;
}

int pdq__hash_region_as_upload(pdq_ctx *ctx, const uint8_t *gray, size_t stride, uint32_t x,
                               uint32_t y, uint32_t cw, uint32_t ch, uint32_t k, unsigned flags,
                               pdq_result *out)
{
    /* An upload of the region would be hashed by pdq_hash_decoded: a side over 512 px in the
     * file sampled onto the 512 x 512 grid, like the whole image of a reference. Hashed at the
     * decode's own size instead, a framed copy's content was 30-50 bits from its original's
     * whole hash though its bars were found exactly (docs/MATCHING.md, "Why framed copies are
     * missed"): PDQ's box filter is sized from the input, and textures feel the difference. */
    uint8_t *crop = vg_malloc((size_t)cw * ch);
    if (!crop)
        return vg_err_set(VG_ENOMEM, "pdq: out of memory");
    for (uint32_t r = 0; r < ch; r++)
        memcpy(crop + (size_t)r * cw, gray + (size_t)(y + r) * stride + x, cw);
    img_image view;
    memset(&view, 0, sizeof view);
    view.px = crop;
    view.w = cw;
    view.h = ch;
    view.channels = 1;
    view.orientation = 1;
    view.scale_denom = (int)VG_MAX(1u, k);
    view.src_w = cw * VG_MAX(1u, k);
    view.src_h = ch * VG_MAX(1u, k);
    pdq_image_result res;
    int rc = pdq_hash_decoded(ctx, &view, flags, &res);
    vg_free(crop);
    if (rc == VG_OK)
        *out = res.r;
    return rc;
}

/* Hashes the rectangle (x, y, cw, ch) of gray (stride bytes per row, decoded at 1/k of the
 * file's size) into the next slot, as an upload of that rectangle would be hashed. */
static int add_region(pdq_ctx *ctx, const uint8_t *gray, size_t stride, uint32_t k, uint32_t x,
                      uint32_t y, uint32_t cw, uint32_t ch, pdq_region region, pdq_copy_set *out)
{
    if (out->n >= PDQ_COPY_MAX_HASHES || cw < PDQ_MIN_SIDE_PX || ch < PDQ_MIN_SIDE_PX)
        return VG_OK;
    pdq_result r;
    int rc = pdq__hash_region_as_upload(ctx, gray, stride, x, y, cw, ch, k, PDQ_WANT_DIHEDRAL, &r);
    if (rc != VG_OK)
        return rc;
    pdq_copy_hash *c = &out->h[out->n++];
    c->region = region;
    c->quality = r.quality;
    c->rect[0] = x;
    c->rect[1] = y;
    c->rect[2] = cw;
    c->rect[3] = ch;
    memcpy(c->dihedral, r.dihedral, sizeof c->dihedral);
    return VG_OK;
}

/* Hashes the half (top: y0 = 0, bottom: y0 = h / 2) into the next slot as pdq_copy_parts does:
 * variant 0 only, quality at least 1, so the server's halves are the evaluation's. */
static int add_half(pdq_ctx *ctx, const uint8_t *gray, uint32_t w, uint32_t h, pdq_region region,
                    pdq_copy_set *out)
{
    const uint32_t y0 = region == PDQ_REGION_TOP ? 0 : h / 2,
                   y1 = region == PDQ_REGION_TOP ? h / 2 : h;
    if (out->n >= PDQ_COPY_MAX_HASHES || w < PDQ_MIN_SIDE_PX || y1 - y0 < PDQ_MIN_SIDE_PX)
        return VG_OK;
    pdq_result r;
    int rc = pdq_hash_gray8(ctx, gray + (size_t)y0 * w, w, y1 - y0, w, 0, &r);
    if (rc != VG_OK)
        return rc;
    pdq_copy_hash *c = &out->h[out->n++];
    memset(c, 0, sizeof *c);
    c->region = region;
    c->quality = VG_MAX(1, r.quality);
    c->rect[1] = y0;
    c->rect[2] = w;
    c->rect[3] = y1 - y0;
    c->dihedral[0] = r.hash;
    return VG_OK;
}

/* The peeled content (pdq_copy_peel) and, with a caption strip cut first, the caption
 * candidate (pdq_copy_find_content), each hashed as one more trimmed set unless it is the rectangle
 * of a set before (within PDQ__SAME_TRIM_PX on every side, at the decode's scale). */
static int add_content_candidates(pdq_ctx *ctx, const uint8_t *gray, uint32_t w, uint32_t h,
                                  uint32_t k, pdq_copy_set *out)
{
    uint32_t seen[1 + PDQ_COPY_TRIM_CANDIDATES][4];
    size_t n_seen = 0;
    if (out->trim[0] || out->trim[1] || out->trim[2] || out->trim[3])
        memcpy(seen[n_seen++], out->trim, sizeof seen[0]);
    for (int caption = 0; caption < PDQ_COPY_TRIM_CANDIDATES; caption++) {
        uint32_t t[4];
        /* the peeled content in place of the strict one (docs/MATCHING.md, "Peeled content"):
         * the store keeps three trimmed sets per reference */
        if (!(caption ? pdq_copy_find_content(gray, w, h, w, caption, t)
                      : pdq_copy_peel(gray, w, h, w, t)))
            continue;
        int dup = 0;
        for (size_t i = 0; i < n_seen && !dup; i++) {
            dup = 1;
            for (int s = 0; s < 4; s++)
                dup &= t[s] <= seen[i][s] + PDQ__SAME_TRIM_PX &&
                       seen[i][s] <= t[s] + PDQ__SAME_TRIM_PX;
        }
        if (dup)
            continue;
        memcpy(seen[n_seen++], t, sizeof seen[0]);
        int rc = add_region(ctx, gray, w, k, t[0], t[1], w - t[0] - t[2], h - t[1] - t[3],
                            PDQ_REGION_TRIMMED, out);
        if (rc != VG_OK)
            return rc;
    }
    return VG_OK;
}

int pdq_copy_hashes(pdq_ctx *ctx, const img_image *im, unsigned what, pdq_copy_set *out)
{
    if (!ctx || !im || !im->px || !out || (im->channels != 1 && im->channels != 3) || !im->w ||
        !im->h)
        return vg_err_set(VG_EINVAL, "pdq_copy_hashes: bad image");
    memset(out, 0, sizeof *out);
    const uint32_t w = im->w, h = im->h;
    const uint32_t k = im->scale_denom > 0 ? (uint32_t)im->scale_denom : 1;
    const size_t npix = (size_t)w * h;
    const int small = VG_MAX(im->src_w, im->src_h) <= PDQ_COPY_FLIP_MAX_SIDE_PX;
    uint8_t *own = NULL; /* grey plane of an RGB image, then room for the mirror */
    size_t own_n = (im->channels == 3 ? npix : 0) + ((what & PDQ_COPY_FLIP) && small ? npix : 0);
    if (own_n && !(own = vg_malloc(own_n)))
        return vg_err_set(VG_ENOMEM, "pdq_copy_hashes: out of memory");
    const uint8_t *gray = im->px;
    if (im->channels == 3) {
        pdq_rgb_to_luma8(im->px, npix, own);
        gray = own;
    }
    int rc = VG_OK;
    if (what & PDQ_COPY_TRIM) {
        uint32_t *t = out->trim;
        if (pdq_copy_find_bars(gray, w, h, w, t))
            rc = add_region(ctx, gray, w, k, t[0], t[1], w - t[0] - t[2], h - t[1] - t[3],
                            PDQ_REGION_TRIMMED, out);
        if (rc == VG_OK)
            rc = add_content_candidates(ctx, gray, w, h, k, out);
    }
    if (rc == VG_OK && (what & PDQ_COPY_FLIP) && small) {
        uint8_t *m = own + (im->channels == 3 ? npix : 0);
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                m[(size_t)y * w + x] = gray[(size_t)y * w + (w - 1 - x)];
        rc = add_region(ctx, m, w, k, 0, 0, w, h, PDQ_REGION_FLIP, out);
    }
    if (rc == VG_OK && (what & PDQ_COPY_REGIONS)) {
        rc = add_region(ctx, gray, w, k, w / 20, h / 20, w - 2 * (w / 20), h - 2 * (h / 20),
                        PDQ_REGION_CENTRE90, out);
        if (rc == VG_OK)
            rc = add_region(ctx, gray, w, k, w / 10, h / 10, w - 2 * (w / 10), h - 2 * (h / 10),
                            PDQ_REGION_CENTRE80, out);
    }
    if (rc == VG_OK && (what & PDQ_COPY_HALVES))
        rc = add_half(ctx, gray, w, h, PDQ_REGION_TOP, out);
    if (rc == VG_OK && (what & PDQ_COPY_HALVES))
        rc = add_half(ctx, gray, w, h, PDQ_REGION_BOTTOM, out);
    vg_free(own);
    return rc;
}

static const char *const part_names[PDQ_PART_COUNT] = {"top", "bottom", "left", "right"};

const char *pdq_part_name(pdq_part p)
{
    return (unsigned)p < PDQ_PART_COUNT ? part_names[p] : "unknown";
}

int pdq_copy_parts(pdq_ctx *ctx, const img_image *im, pdq_part_set *out)
{
    if (!ctx || !im || !im->px || !out || (im->channels != 1 && im->channels != 3) || !im->w ||
        !im->h)
        return vg_err_set(VG_EINVAL, "pdq_copy_parts: bad image");
    memset(out, 0, sizeof *out);
    const uint32_t w = im->w, h = im->h;
    const size_t npix = (size_t)w * h;
    uint8_t *own = NULL;
    const uint8_t *gray = im->px;
    if (im->channels == 3) {
        if (!(own = vg_malloc(npix)))
            return vg_err_set(VG_ENOMEM, "pdq_copy_parts: out of memory");
        pdq_rgb_to_luma8(im->px, npix, own);
        gray = own;
    }
    /* x0, y0, x1, y1 of each part, in halves of the side */
    static const uint8_t box[PDQ_PART_COUNT][4] = {
        {0, 0, 2, 1}, {0, 1, 2, 2}, {0, 0, 1, 2}, {1, 0, 2, 2}};
    int rc = VG_OK;
    for (int k = 0; k < PDQ_PART_COUNT && rc == VG_OK; k++) {
        const uint32_t x0 = w * box[k][0] / 2, y0 = h * box[k][1] / 2;
        const uint32_t x1 = w * box[k][2] / 2, y1 = h * box[k][3] / 2;
        if (x1 - x0 < PDQ_MIN_SIDE_PX || y1 - y0 < PDQ_MIN_SIDE_PX)
            continue;
        pdq_result r;
        rc = pdq_hash_gray8(ctx, gray + (size_t)y0 * w + x0, x1 - x0, y1 - y0, w, 0, &r);
        if (rc == VG_OK) {
            out->h[k] = r.hash;
            out->quality[k] = VG_MAX(1, r.quality);
        }
    }
    vg_free(own);
    return rc;
}
