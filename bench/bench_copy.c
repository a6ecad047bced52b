/*
 * bench_copy: copy-detection evaluation (issue 14, docs/MATCHING.md).
 *
 * Every photo of --photos becomes a protected reference (its prepared pixels, JPEG quality 90,
 * hashed as the server hashes an upload); every image of --distractors is one more, unrelated,
 * reference. Each photo is then edited as a pirate would (26 edits: 13 kinds x 2 strengths, made
 * here in C so the set needs no image tool), each edit encoded as JPEG and searched like an
 * analysis request. Per edit: recall (the photo found within the threshold) and false matches
 * (any other reference found), over queries x (references - 1) unrelated pairs.
 *
 *   bench_copy --photos DIR [--distractors DIR] [--mech whole|all] [--max-side PX]
 *              [--floors FILE] [--write-floors FILE] [--export DIR --export-n N [--export-edits
 * K,K..]] [--scale N] [--edits K,K..] [--every N]
 *
 * --mech whole is the server before issue 14 (whole-image hash, 8 derived dihedral variants);
 * all adds trimming, true flips and the reference centre crops. --floors fails (exit 1) when any
 * edit's recall is below its floor (the ctest); --scale N times searches in an index of N
 * random references carrying the same number of hashes per reference as the run's. --edits
 * runs only the edits numbered (0-based, in EDITS order) and --every N queries only every Nth
 * photo (all stay references): quicker experiments on the large set. BC_DIAG=1 prints why each
 * missed border, screenshot or caption edit was missed and a table of the causes
 * (docs/MATCHING.md, "Why framed copies are missed").
 */
#include "core/core.h"
#include "img/img.h"
#include "index/index.h"
#include "pdq/pdq.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#define BC_MAX_FILES 4096
#define BC_THRESHOLD 31   /* the server's default (ANALYZE_DEFAULT_PDQ_THRESHOLD) */
#define BC_MIN_QUALITY 50 /* the server's default quality gate */
#define BC_SMALL_SIDE 150 /* the "small image" of the issue */

typedef struct {
    uint8_t *px;
    uint32_t w, h;
} rgb;

static void rgb_free(rgb *r)
{
    free(r->px);
    r->px = NULL;
}

static rgb rgb_new(uint32_t w, uint32_t h)
{
    rgb r = {calloc((size_t)w * h * 3, 1), w, h};
    if (!r.px) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return r;
}

static rgb resize(const rgb *s, uint32_t w, uint32_t h)
{
    rgb d = rgb_new(w, h);
    float *f = malloc((size_t)w * h * 3 * sizeof *f);
    img_resize_bilinear_f32(s->px, s->w, s->h, 3, f, w, h, 1);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        d.px[i] = (uint8_t)VG_MIN(255.f, VG_MAX(0.f, f[i] + 0.5f));
    free(f);
    return d;
}

/* Long side to at most side px (never up). */
static rgb fit(const rgb *s, uint32_t side)
{
    uint32_t m = VG_MAX(s->w, s->h);
    if (m <= side)
        return resize(s, s->w, s->h);
    return resize(s, VG_MAX(1u, (uint32_t)((uint64_t)s->w * side / m)),
                  VG_MAX(1u, (uint32_t)((uint64_t)s->h * side / m)));
}

static uint8_t *jpeg(const rgb *r, int q, unsigned long *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *out = NULL;
    *len = 0;
    if (tjCompress2(tj, r->px, (int)r->w, 0, (int)r->h, TJPF_RGB, &out, len, TJSAMP_420, q, 0)) {
        fprintf(stderr, "tjCompress2: %s\n", tjGetErrorStr2(tj));
        exit(2);
    }
    tjDestroy(tj);
    return out;
}

static int load_src(const char *path, uint32_t side, rgb *out, uint32_t *src_w, uint32_t *src_h)
{
    size_t len;
    uint8_t *buf;
    if (vg_read_file(path, 1u << 30, &buf, &len) != VG_OK)
        return -1;
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits.max_pixels = (uint64_t)1 << 28;
    o.limits.max_dimension = 1u << 15;
    o.limits.max_decode_work = UINT64_MAX / 4;
    o.limits.max_input_bytes = (size_t)1 << 30;
    o.background[0] = o.background[1] = o.background[2] = 255;
    o.min_w = o.min_h = side;
    img_image im;
    int rc = img_decode(buf, len, &o, &im);
    vg_free(buf);
    if (rc)
        return rc;
    rgb s = {im.px, im.w, im.h};
    *src_w = im.src_w;
    *src_h = im.src_h;
    *out = fit(&s, side);
    img_image_free(&im);
    return 0;
}

static int load(const char *path, uint32_t side, rgb *out)
{
    uint32_t sw, sh;
    return load_src(path, side, out, &sw, &sh);
}

/* ---- edits ------------------------------------------------------------------------------------
 */

static uint8_t *px(rgb *r, uint32_t x, uint32_t y)
{
    return r->px + ((size_t)y * r->w + x) * 3;
}

static rgb ed_mirror(const rgb *s)
{
    rgb d = rgb_new(s->w, s->h);
    for (uint32_t y = 0; y < s->h; y++)
        for (uint32_t x = 0; x < s->w; x++)
            memcpy(px(&d, x, y), px((rgb *)s, s->w - 1 - x, y), 3);
    return d;
}

static rgb ed_rot90(const rgb *s)
{
    rgb d = rgb_new(s->h, s->w);
    for (uint32_t y = 0; y < d.h; y++)
        for (uint32_t x = 0; x < d.w; x++)
            memcpy(px(&d, x, y), px((rgb *)s, s->w - 1 - y, x), 3);
    return d;
}

static rgb ed_grey(const rgb *s)
{
    rgb d = rgb_new(s->w, s->h);
    for (size_t i = 0; i < (size_t)s->w * s->h; i++) {
        const uint8_t *p = s->px + 3 * i;
        uint8_t g = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2] + 128) >> 8);
        memset(d.px + 3 * i, g, 3);
    }
    return d;
}

static rgb ed_bright(const rgb *s, int add)
{
    rgb d = rgb_new(s->w, s->h);
    for (size_t i = 0; i < (size_t)s->w * s->h * 3; i++)
        d.px[i] = (uint8_t)VG_MIN(255, VG_MAX(0, s->px[i] + add));
    return d;
}

static rgb ed_blur(const rgb *s, int r)
{
    rgb a = rgb_new(s->w, s->h), b = rgb_new(s->w, s->h);
    memcpy(a.px, s->px, (size_t)s->w * s->h * 3);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t y = 0; y < s->h; y++)
            for (uint32_t x = 0; x < s->w; x++)
                for (int c = 0; c < 3; c++) {
                    int sum = 0, n = 0;
                    for (int k = -r; k <= r; k++) {
                        int xx = (int)x + k;
                        if (xx >= 0 && xx < (int)s->w) {
                            sum += px(&a, (uint32_t)xx, y)[c];
                            n++;
                        }
                    }
                    px(&b, x, y)[c] = (uint8_t)((sum + n / 2) / n);
                }
        for (uint32_t y = 0; y < s->h; y++)
            for (uint32_t x = 0; x < s->w; x++)
                for (int c = 0; c < 3; c++) {
                    int sum = 0, n = 0;
                    for (int k = -r; k <= r; k++) {
                        int yy = (int)y + k;
                        if (yy >= 0 && yy < (int)s->h) {
                            sum += px(&b, x, (uint32_t)yy)[c];
                            n++;
                        }
                    }
                    px(&a, x, y)[c] = (uint8_t)((sum + n / 2) / n);
                }
    }
    rgb_free(&b);
    return a;
}

static void blit(rgb *d, const rgb *s, uint32_t x0, uint32_t y0)
{
    for (uint32_t y = 0; y < s->h && y0 + y < d->h; y++)
        memcpy(px(d, x0, y0 + y), px((rgb *)s, 0, y), (size_t)VG_MIN(s->w, d->w - x0) * 3);
}

static void fill(rgb *d, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h, const uint8_t c[3])
{
    for (uint32_t y = y0; y < y0 + h && y < d->h; y++)
        for (uint32_t x = x0; x < x0 + w && x < d->w; x++)
            memcpy(px(d, x, y), c, 3);
}

static rgb ed_border(const rgb *s, int permille, const uint8_t c[3])
{
    uint32_t b = VG_MAX(s->w, s->h) * (uint32_t)permille / 1000;
    rgb d = rgb_new(s->w + 2 * b, s->h + 2 * b);
    fill(&d, 0, 0, d.w, d.h, c);
    blit(&d, s, b, b);
    return d;
}

/* The photo scaled to pct % of a 1280x720 dark canvas's height (or width), centred: a
 * screenshot of it in a viewer, with a title bar. */
static rgb ed_letterbox(const rgb *s, int pct)
{
    rgb d = rgb_new(1280, 720);
    const uint8_t bg[3] = {18, 18, 20}, bar[3] = {60, 62, 66};
    fill(&d, 0, 0, d.w, d.h, bg);
    fill(&d, 0, 0, d.w, 28, bar);
    double k = VG_MIN(720.0 * pct / 100 / s->h, 1280.0 * pct / 100 / s->w);
    rgb sc = resize(s, (uint32_t)(s->w * k), (uint32_t)(s->h * k));
    blit(&d, &sc, (d.w - sc.w) / 2, 28 + (d.h - 28 - sc.h) / 2);
    rgb_free(&sc);
    return d;
}

/* Deterministic "letters": blocks of ink on a line of text. */
static void text_line(rgb *d, uint32_t x0, uint32_t y0, uint32_t width, uint32_t lh,
                      const uint8_t ink[3], unsigned seed)
{
    uint32_t x = x0, cw = VG_MAX(2u, lh * 6 / 10);
    while (x + cw < x0 + width) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 6 == 0) { /* a space */
            x += cw;
            continue;
        }
        uint32_t hh = lh * (5 + (seed >> 8) % 5) / 10;
        fill(d, x, y0 + lh - hh, cw - VG_MAX(1u, cw / 4), hh / 5 + 1, ink);
        fill(d, x, y0 + lh - hh, VG_MAX(1u, cw / 4), hh, ink);
        fill(d, x + cw / 2, y0 + lh - hh, VG_MAX(1u, cw / 4), hh, ink);
        x += cw;
    }
}

static rgb ed_caption(const rgb *s, int pct)
{
    uint32_t bh = s->h * (uint32_t)pct / 100;
    rgb d = rgb_new(s->w, s->h + bh);
    const uint8_t white[3] = {255, 255, 255}, ink[3] = {10, 10, 10};
    fill(&d, 0, 0, d.w, d.h, white);
    blit(&d, s, 0, 0);
    uint32_t lh = VG_MAX(6u, bh / 4);
    text_line(&d, d.w / 20, s->h + bh / 8, d.w * 9 / 10, lh, ink, 7);
    if (bh >= 3 * lh)
        text_line(&d, d.w / 20, s->h + bh / 8 + lh * 3 / 2, d.w * 6 / 10, lh, ink, 11);
    return d;
}

static rgb ed_crop(const rgb *s, int pct)
{
    uint32_t cx = s->w * (uint32_t)pct / 200, cy = s->h * (uint32_t)pct / 200;
    rgb d = rgb_new(s->w - 2 * cx, s->h - 2 * cy);
    for (uint32_t y = 0; y < d.h; y++)
        memcpy(px(&d, 0, y), px((rgb *)s, cx, cy + y), (size_t)d.w * 3);
    return d;
}

static rgb ed_rotate(const rgb *s, double deg)
{
    rgb d = rgb_new(s->w, s->h);
    double a = deg * M_PI / 180, ca = cos(a), sa = sin(a);
    double cx = (s->w - 1) / 2.0, cy = (s->h - 1) / 2.0;
    for (uint32_t y = 0; y < d.h; y++)
        for (uint32_t x = 0; x < d.w; x++) {
            double sx = ca * (x - cx) + sa * (y - cy) + cx,
                   sy = -sa * (x - cx) + ca * (y - cy) + cy;
            if (sx < 0 || sy < 0 || sx > s->w - 1 || sy > s->h - 1)
                continue; /* black corner */
            uint32_t x0 = (uint32_t)sx, y0 = (uint32_t)sy;
            uint32_t x1 = VG_MIN(x0 + 1, s->w - 1), y1 = VG_MIN(y0 + 1, s->h - 1);
            double fx = sx - x0, fy = sy - y0;
            for (int c = 0; c < 3; c++) {
                double v =
                    (1 - fy) * ((1 - fx) * px((rgb *)s, x0, y0)[c] + fx * px((rgb *)s, x1, y0)[c]) +
                    fy * ((1 - fx) * px((rgb *)s, x0, y1)[c] + fx * px((rgb *)s, x1, y1)[c]);
                px(&d, x, y)[c] = (uint8_t)(v + 0.5);
            }
        }
    return d;
}

/* The largest axis-aligned rectangle of s's aspect ratio inside s rotated by deg about its
 * centre, cropped out of the rotated image (what a "straighten" tool keeps). */
static rgb ed_rotate_inscribed(const rgb *s, double deg)
{
    rgb r = ed_rotate(s, deg);
    double a = fabs(deg) * M_PI / 180, ca = cos(a), sa = sin(a);
    double k = VG_MIN(s->w / (s->w * ca + s->h * sa), s->h / (s->w * sa + s->h * ca));
    uint32_t cw = (uint32_t)(s->w * k), ch = (uint32_t)(s->h * k);
    cw -= cw > 2 ? 2 : 0; /* bilinear rim at the corners */
    ch -= ch > 2 ? 2 : 0;
    rgb d = rgb_new(cw, ch);
    uint32_t x0 = (s->w - cw) / 2, y0 = (s->h - ch) / 2;
    for (uint32_t y = 0; y < ch; y++)
        memcpy(px(&d, 0, y), px(&r, x0, y0 + y), (size_t)cw * 3);
    rgb_free(&r);
    return d;
}

/* Rotation experiments (docs/MATCHING.md, small rotations): BC_ROT_EDIT="A,B" replaces the
 * angles of the two rotate edits (degrees), BC_ROT_EDIT_CROP=1 crops them to the inscribed
 * rectangle; BC_ROT_REF="3,6" indexes every reference also rotated by +/- each angle,
 * BC_ROT_MODE=inscribed|canvas (cropped to the inscribed rectangle, or on its own canvas with
 * black corners). */
static double g_rot_edit[2] = {3, 6};
static int g_rot_edit_crop;
static double g_rot_ref[8];
static size_t g_n_rot_ref;
static int g_rot_ref_canvas;

/* strength 1: an opaque logo in the bottom right corner; 2: a half-transparent text watermark
 * across the middle. */
static rgb ed_overlay(const rgb *s, int strength)
{
    rgb d = rgb_new(s->w, s->h);
    memcpy(d.px, s->px, (size_t)s->w * s->h * 3);
    if (strength == 1) {
        uint32_t lw = s->w / 6, lh = lw / 2;
        const uint8_t red[3] = {200, 30, 40}, white[3] = {255, 255, 255};
        fill(&d, s->w - lw - s->w / 30, s->h - lh - s->h / 30, lw, lh, red);
        text_line(&d, s->w - lw - s->w / 30 + lw / 10, s->h - lh - s->h / 30 + lh / 4, lw * 8 / 10,
                  lh / 2, white, 3);
    } else {
        rgb t = rgb_new(s->w, s->h);
        const uint8_t ink[3] = {255, 255, 255};
        uint32_t lh = s->h / 10;
        text_line(&t, s->w / 10, s->h / 2 - lh, s->w * 8 / 10, lh, ink, 5);
        for (size_t i = 0; i < (size_t)s->w * s->h * 3; i++)
            if (t.px[i])
                d.px[i] = (uint8_t)((d.px[i] + 255) / 2);
        rgb_free(&t);
    }
    return d;
}

typedef struct {
    const char *name;
    int quality; /* JPEG quality of the copy */
} edit_desc;

static const edit_desc EDITS[] = {
    {"reencode q70", 70},
    {"reencode q40", 40},
    {"resize 50%", 85},
    {"resize 25%", 85},
    {"mirror", 85},
    {"mirror small", 85},
    {"rotate 90", 85},
    {"rotate 90 small", 85},
    {"greyscale", 85},
    {"greyscale q50", 50},
    {"brightness +25", 85},
    {"brightness +50", 85},
    {"blur r2", 85},
    {"blur r5", 85},
    {"border 4% white", 85},
    {"border 12% black", 85},
    {"screenshot 85%", 85},
    {"screenshot 55%", 85},
    {"caption 15%", 85},
    {"caption 30%", 85},
    {"crop 10%", 85},
    {"crop 20%", 85},
    {"rotate 3deg", 85},
    {"rotate 6deg", 85},
    {"logo", 85},
    {"text overlay", 85},
};
#define N_EDITS (sizeof EDITS / sizeof EDITS[0])

static rgb make_edit(size_t e, const rgb *s)
{
    const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    switch (e) {
    case 0:
    case 1:
        return resize(s, s->w, s->h);
    case 2:
        return resize(s, s->w / 2, s->h / 2);
    case 3:
        return resize(s, s->w / 4, s->h / 4);
    case 4:
        return ed_mirror(s);
    case 6:
        return ed_rot90(s);
    case 5:
    case 7: {
        rgb sm = fit(s, BC_SMALL_SIDE);
        rgb d = e == 5 ? ed_mirror(&sm) : ed_rot90(&sm);
        rgb_free(&sm);
        return d;
    }
    case 8:
    case 9:
        return ed_grey(s);
    case 10:
        return ed_bright(s, 25);
    case 11:
        return ed_bright(s, 50);
    case 12:
        return ed_blur(s, 2);
    case 13:
        return ed_blur(s, 5);
    case 14:
        return ed_border(s, 40, white);
    case 15:
        return ed_border(s, 120, black);
    case 16:
        return ed_letterbox(s, 85);
    case 17:
        return ed_letterbox(s, 55);
    case 18:
        return ed_caption(s, 15);
    case 19:
        return ed_caption(s, 30);
    case 20:
        return ed_crop(s, 10);
    case 21:
        return ed_crop(s, 20);
    case 22:
    case 23:
        return g_rot_edit_crop ? ed_rotate_inscribed(s, g_rot_edit[e - 22])
                               : ed_rotate(s, g_rot_edit[e - 22]);
    case 24:
        return ed_overlay(s, 1);
    default:
        return ed_overlay(s, 2);
    }
}

/* ---- hashing and matching ---------------------------------------------------------------------
 */

typedef struct {
    int quality;
    pdq_hash whole[8];
    pdq_copy_set copies;
} hashes;

static unsigned g_query_what, g_ref_what;
/* the bench's own region number for rotated references (not a pdq_region of the server) */
#define BC_REGION_ROT PDQ_REGION_COUNT
#define BC_REGION_PART (PDQ_REGION_COUNT + 1) /* and for the parts of BC_PARTS */
#define BC_REGIONS (PDQ_REGION_COUNT + 2)
static int g_region_threshold[BC_REGIONS];
/* BC_SWEEP=T: every search also reaches distance T, and each query's best distance to its
 * original and to every other reference is kept, so one run gives recall and false matches at
 * every threshold up to T (the table after the main one) */
#define BC_SWEEP_MAX 64
static int g_sweep;
static int g_true_d;                    /* the query's best distance to its original */
static int g_false_d[BC_MAX_FILES * 2]; /* ... and to each other reference */

static int hash_bytes(pdq_ctx *ctx, const uint8_t *buf, size_t len, unsigned what, hashes *h)
{
    pdq_image_opts po;
    pdq_image_opts_default(&po);
    po.flags = PDQ_WANT_DIHEDRAL;
    po.limits.max_pixels = (uint64_t)1 << 28;
    pdq_image_result pr;
    int rc = pdq_hash_image_copies(ctx, buf, len, &po, what, &pr, &h->copies);
    if (rc)
        return rc;
    h->quality = pr.r.quality;
    memcpy(h->whole, pr.r.dihedral, sizeof h->whole);
    return 0;
}

/* Reference keys: kind 'p' (photo) or 'd' (distractor), index and region packed, so that a
 * match says which photo and which of its regions it met. */
static uint64_t bc_key(char kind, size_t i, int region)
{
    return 1 + ((uint64_t)(kind == 'd') << 62 | (uint64_t)i << 8 | (uint64_t)region);
}

static void bc_key_parts(uint64_t key, char *kind, long *idx, int *region)
{
    key--;
    *kind = key >> 62 ? 'd' : 'p';
    *idx = (long)((key & ((1ull << 62) - 1)) >> 8);
    if (region)
        *region = (int)(key & 0xff);
}

static int add_ref(index_db *ix, char kind, size_t i, const hashes *h, size_t *entries)
{
    int rc = index_pdq_add(ix, "t", "p", bc_key(kind, i, PDQ_REGION_WHOLE),
                           (const uint8_t *)h->whole[0].w, h->quality, 0);
    (*entries)++;
    for (size_t k = 0; !rc && k < h->copies.n; k++) {
        rc =
            index_pdq_add(ix, "t", "p", bc_key(kind, i, (int)h->copies.h[k].region),
                          (const uint8_t *)h->copies.h[k].dihedral[0].w, h->copies.h[k].quality, 0);
        (*entries)++;
    }
    return rc;
}

/* The rotated copies of a reference (BC_ROT_REF), one entry each, whole hash only. */
static int add_rot_refs(pdq_ctx *ctx, index_db *ix, char kind, size_t i, const rgb *im, int quality,
                        size_t *entries)
{
    /* a flat reference under the gate must stay unmatchable: its rotation on a black canvas is
     * all corners, of good "quality", and alike for every flat image */
    for (size_t a = 0; a < 2 * g_n_rot_ref; a++) {
        double deg = a % 2 ? -g_rot_ref[a / 2] : g_rot_ref[a / 2];
        rgb r = g_rot_ref_canvas ? ed_rotate(im, deg) : ed_rotate_inscribed(im, deg);
        unsigned long len;
        uint8_t *b = jpeg(&r, 90, &len);
        hashes h;
        int rc = hash_bytes(ctx, b, len, 0, &h);
        tjFree(b);
        rgb_free(&r);
        if (rc)
            return rc;
        if ((rc = index_pdq_add(ix, "t", "p", bc_key(kind, i, BC_REGION_ROT),
                                (const uint8_t *)h.whole[0].w, VG_MIN(quality, h.quality), 0)))
            return rc;
        (*entries)++;
    }
    return 0;
}

/* BC_DIAG=1: why a framing edit (border, screenshot, caption) is missed (docs/MATCHING.md, "Why
 * framed copies are missed"). The edit's true content rectangle is known here; the query's bars
 * are compared with it (in shares of the content's side), the reference's own bars with the
 * query's, and the true content cut out of the copy and hashed alone (as if uploaded so) tells
 * whether right bars would have been enough. One line per miss, counts at the end. */
#define BC_DIAG_TOL 0.02 /* a bar edge within 2% of the content's side is right */
enum {
    DIAG_NO_BARS,    /* no bars found (or the content under the quality gate) */
    DIAG_RIGHT_FAR,  /* bars right, the content's hash over the threshold */
    DIAG_INTO_SAME,  /* bars ran into the picture's own flat edge, as the reference's did */
    DIAG_INTO_OTHER, /* bars ran into the picture, the reference trims otherwise */
    DIAG_SHORT,      /* bars short of the content (part of the frame left) */
    DIAG_N
};
static const char *const diag_names[DIAG_N] = {
    "no bars found", "bars right, hash too far", "bars into the own flat edge as the reference's",
    "bars into the picture, reference trims otherwise", "bars short of the content"};
static size_t g_diag[DIAG_N], g_diag_alone_ok[DIAG_N], g_diag_kind[N_EDITS][DIAG_N];

/* The true bars (left, top, right, bottom, px of the copy) of framing edit e of s. */
static int truth_bars(size_t e, const rgb *s, uint32_t t[4])
{
    if (e == 14 || e == 15) {
        uint32_t b = VG_MAX(s->w, s->h) * (e == 14 ? 40u : 120u) / 1000;
        t[0] = t[1] = t[2] = t[3] = b;
    } else if (e == 16 || e == 17) {
        int pct = e == 16 ? 85 : 55;
        double k = VG_MIN(720.0 * pct / 100 / s->h, 1280.0 * pct / 100 / s->w);
        uint32_t w = (uint32_t)(s->w * k), h = (uint32_t)(s->h * k);
        t[0] = (1280 - w) / 2;
        t[1] = 28 + (720 - 28 - h) / 2;
        t[2] = 1280 - t[0] - w;
        t[3] = 720 - t[1] - h;
    } else if (e == 18 || e == 19) {
        t[0] = t[1] = t[2] = 0;
        t[3] = s->h * (e == 18 ? 15u : 30u) / 100;
    } else {
        return 0;
    }
    return 1;
}

static int best_dist(const pdq_hash *a, const pdq_hash *b8)
{
    int best = 256;
    for (int v = 0; v < 8; v++)
        best = VG_MIN(best, pdq_distance(a, &b8[v]));
    return best;
}

/* Size of the decode the copy hashes' trim is in px of (pdq_image.c hash_fast's). */
static void decode_size(const uint8_t *buf, size_t len, uint32_t *w, uint32_t *h)
{
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.pixfmt = IMG_GRAY;
    o.limits.max_pixels = (uint64_t)1 << 28;
    img_info info;
    *w = *h = 1;
    if (img_probe(buf, len, &o.limits, &info))
        return;
    if (info.w > PDQ_COMPAT_MAX_SIDE_PX || info.h > PDQ_COMPAT_MAX_SIDE_PX)
        o.min_w = o.min_h = PDQ_FAST_MIN_SIDE_PX;
    img_image im;
    if (img_decode(buf, len, &o, &im))
        return;
    *w = im.w;
    *h = im.h;
    img_image_free(&im);
}

static void diagnose(pdq_ctx *ctx, size_t i, size_t e, const rgb *s, const rgb *d, const hashes *q,
                     const uint8_t *qb, size_t ql)
{
    uint32_t t[4], qw, qh, rw, rh_;
    if (!truth_bars(e, s, t))
        return;
    decode_size(qb, ql, &qw, &qh);
    hashes rh;
    unsigned long rl;
    uint8_t *rb = jpeg(s, 90, &rl);
    hash_bytes(ctx, rb, rl, g_ref_what, &rh);
    decode_size(rb, rl, &rw, &rh_);
    tjFree(rb);
    const double cw = d->w - t[0] - t[2], ch = d->h - t[1] - t[3];
    /* the query's bars beyond the true ones, in shares of the content's side (> 0: into it) */
    double qc[4], rc[4];
    const pdq_copy_hash *qt = NULL, *rt = NULL;
    for (size_t k = 0; k < q->copies.n; k++)
        if (q->copies.h[k].region == PDQ_REGION_TRIMMED)
            qt = &q->copies.h[k];
    for (size_t k = 0; k < rh.copies.n; k++)
        if (rh.copies.h[k].region == PDQ_REGION_TRIMMED)
            rt = &rh.copies.h[k];
    int into = 0, shrt = 0, same = 1;
    for (int k = 0; k < 4; k++) {
        const double qd = k % 2 ? qh : qw, dd = k % 2 ? d->h : d->w;
        qc[k] = (q->copies.trim[k] * dd / qd - t[k]) / (k % 2 ? ch : cw);
        rc[k] = rt ? (double)rh.copies.trim[k] / (k % 2 ? rh_ : rw) : 0;
        into |= qc[k] > BC_DIAG_TOL;
        shrt |= qc[k] < -BC_DIAG_TOL;
        same &= fabs(qc[k] - rc[k]) <= BC_DIAG_TOL;
    }
    int c = !qt || qt->quality < BC_MIN_QUALITY ? DIAG_NO_BARS
            : shrt                              ? DIAG_SHORT
            : into                              ? (same && rt ? DIAG_INTO_SAME : DIAG_INTO_OTHER)
                                                : DIAG_RIGHT_FAR;
    /* the true content cut out and hashed alone, as an upload of it would be */
    rgb a = rgb_new((uint32_t)cw, (uint32_t)ch);
    for (uint32_t y = 0; y < a.h; y++)
        memcpy(px(&a, 0, y), px((rgb *)d, t[0], t[1] + y), (size_t)a.w * 3);
    unsigned long al;
    uint8_t *ab = jpeg(&a, 95, &al);
    hashes ah;
    hash_bytes(ctx, ab, al, 0, &ah);
    tjFree(ab);
    rgb_free(&a);
    const int alone = best_dist(&ah.whole[0], rh.whole);
    /* every trimmed set of the query: its sides beyond the true ones, its best distance */
    for (size_t k = 0; k < q->copies.n; k++) {
        const pdq_copy_hash *cc = &q->copies.h[k];
        if (cc->region != PDQ_REGION_TRIMMED)
            continue;
        const uint32_t cr[4] = {cc->rect[0], cc->rect[1], qw - cc->rect[0] - cc->rect[2],
                                qh - cc->rect[1] - cc->rect[3]};
        int dmin = best_dist(&cc->dihedral[0], rh.whole);
        for (size_t j = 0; j < rh.copies.n; j++)
            if (rh.copies.h[j].region == PDQ_REGION_TRIMMED)
                dmin = VG_MIN(dmin, best_dist(&cc->dihedral[0], rh.copies.h[j].dihedral));
        printf("  cand %zu q=%d", k, cc->quality);
        for (int s2 = 0; s2 < 4; s2++) {
            const double qd = s2 % 2 ? qh : qw, dd = s2 % 2 ? d->h : d->w;
            printf(" %+.3f", (cr[s2] * dd / qd - t[s2]) / (s2 % 2 ? ch : cw));
        }
        printf(" d=%d\n", dmin);
    }
    g_diag[c]++;
    g_diag_kind[e][c]++;
    g_diag_alone_ok[c] += alone <= BC_THRESHOLD;
    printf("diag %s photo %zu %ux%u: %s; query %ux%u dec %ux%u bars+%.3f/%.3f/%.3f/%.3f ref bars "
           "%.3f/%.3f/%.3f/%.3f; d(qtrim,rwhole)=%d d(qtrim,rtrim)=%d d(alone,rwhole)=%d\n",
           EDITS[e].name, i, s->w, s->h, diag_names[c], d->w, d->h, qw, qh, qc[0], qc[1], qc[2],
           qc[3], rc[0], rc[1], rc[2], rc[3], qt ? best_dist(&qt->dihedral[0], rh.whole) : -1,
           qt && rt ? best_dist(&qt->dihedral[0], rt->dihedral) : -1, alone);
}

static void diag_report(void)
{
    size_t all = 0;
    for (int c = 0; c < DIAG_N; c++)
        all += g_diag[c];
    if (!all)
        return;
    printf("\nmisses of the framing edits by cause (BC_DIAG): %zu\n| cause | misses | share | "
           "border 4%% / 12%% | screenshot 85%% / 55%% | caption 15%% / 30%% | true content "
           "hashed alone within %d |\n|---|---|---|---|---|---|---|\n",
           all, BC_THRESHOLD);
    for (int c = 0; c < DIAG_N; c++)
        printf("| %s | %zu | %.0f%% | %zu / %zu | %zu / %zu | %zu / %zu | %zu |\n", diag_names[c],
               g_diag[c], 100.0 * g_diag[c] / all, g_diag_kind[14][c], g_diag_kind[15][c],
               g_diag_kind[16][c], g_diag_kind[17][c], g_diag_kind[18][c], g_diag_kind[19][c],
               g_diag_alone_ok[c]);
}

typedef struct {
    size_t queries, found, false_matches, unreliable;
    size_t by_mech[BC_REGIONS];
} kind_stats;

static void sweep_note(char kind, long idx, long want, int d)
{
    if (kind == 'p' && idx == want) {
        g_true_d = VG_MIN(g_true_d, d);
        return;
    }
    size_t key = (size_t)idx * 2 + (kind == 'd');
    if (key < BC_MAX_FILES * 2)
        g_false_d[key] = VG_MIN(g_false_d[key], d);
}

/* Searches every hash set of the query; *found: the photo `want` was found (mechanism in *mech),
 * returns the number of other images matched. */
static size_t query(index_db *ix, const hashes *q, long want, int *found, int *mech, char *seen)
{
    *found = 0;
    *mech = -1;
    if (q->quality < BC_MIN_QUALITY)
        return 0;
    int best = 999;
    size_t falses = 0, trimmed = 0;
    for (size_t s = 0; s <= q->copies.n; s++) {
        const pdq_hash *v = s == 0 ? q->whole : q->copies.h[s - 1].dihedral;
        int qreg = s == 0 ? PDQ_REGION_WHOLE : (int)q->copies.h[s - 1].region;
        if (s > 0 && q->copies.h[s - 1].quality < BC_MIN_QUALITY)
            continue;
        index_pdq_query iq = index_pdq_query_defaults();
        iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)v;
        /* as the server (analyze_match.c add_copy_sets): trimmed sets after the first, the
         * strict and caption candidates, are searched as they are */
        iq.n_variants = qreg == PDQ_REGION_TRIMMED && trimmed++ ? 1 : 8;
        iq.threshold = VG_MAX(BC_THRESHOLD, g_sweep);
        iq.min_quality = BC_MIN_QUALITY;
        index_pdq_result r;
        if (index_pdq_search(ix, "t", &iq, &r))
            exit(2);
        for (size_t i = 0; i < r.n; i++) {
            char kind;
            long idx;
            int rreg;
            bc_key_parts(r.matches[i].reference, &kind, &idx, &rreg);
            sweep_note(kind, idx, want, r.matches[i].distance);
            int thr = VG_MIN(g_region_threshold[rreg], g_region_threshold[qreg]);
            if (r.matches[i].distance > thr)
                continue;
            if (kind == 'p' && idx == want) {
                *found = 1;
                if (r.matches[i].distance < best) {
                    best = r.matches[i].distance;
                    *mech = rreg != PDQ_REGION_WHOLE ? rreg : qreg;
                }
            } else {
                size_t key = (size_t)idx * 2 + (kind == 'd');
                if (key < BC_MAX_FILES * 2 && !seen[key]) {
                    seen[key] = 1;
                    falses++;
                    if (getenv("BC_DEBUG_FALSE"))
                        printf("false match: photo %ld's set %zu (region %d) met %c%ld region %d "
                               "at %d\n",
                               want, s, qreg, kind, idx, rreg, r.matches[i].distance);
                }
            }
        }
        index_pdq_result_free(&r);
    }
    return falses;
}

/* BC_PARTS=1: the halves of every reference and every query (pdq_copy_parts, on the decode
 * the fast pipeline hashes), each kind of half in an index of its own, so a query's half meets
 * only the same half of the references: what a logo or a caption in one corner or band leaves
 * intact (docs/MATCHING.md, "Logos and text"). */
#define BC_N_PARTS PDQ_PART_COUNT
static int g_part_on[BC_N_PARTS];
static int g_any_part;
static int g_part_threshold = BC_THRESHOLD;

typedef pdq_part_set part_hashes;

static int hash_parts(pdq_ctx *ctx, const uint8_t *buf, size_t len, part_hashes *ph)
{
    memset(ph, 0, sizeof *ph);
    if (!g_any_part)
        return 0;
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.pixfmt = IMG_GRAY;
    /* the decode the fast pipeline hashes (pdq_image.c hash_fast): DCT-scaled to a short side
     * of PDQ_FAST_MIN_SIDE_PX when a side is over 512 px; BC_PARTS_FULL=1 decodes in full */
    img_info info;
    if (img_probe(buf, len, &o.limits, &info))
        return -1;
    if ((info.w > PDQ_COMPAT_MAX_SIDE_PX || info.h > PDQ_COMPAT_MAX_SIDE_PX) &&
        !getenv("BC_PARTS_FULL"))
        o.min_w = o.min_h = PDQ_FAST_MIN_SIDE_PX;
    img_image im;
    if (img_decode(buf, len, &o, &im))
        return -1;
    int rc = pdq_copy_parts(ctx, &im, ph);
    img_image_free(&im);
    return rc;
}

static int add_parts(index_db *ix, char kind, size_t i, const part_hashes *ph, size_t *entries)
{
    for (size_t k = 0; k < BC_N_PARTS; k++) {
        if (!g_part_on[k] || !ph->quality[k])
            continue;
        char tenant[16];
        snprintf(tenant, sizeof tenant, "part%zu", k);
        if (index_pdq_add(ix, tenant, "p", bc_key(kind, i, BC_REGION_PART),
                          (const uint8_t *)ph->h[k].w, ph->quality[k], 0))
            return -1;
        (*entries)++;
    }
    return 0;
}

/* Searches the query's parts; as query(), adding to *found / *mech and to seen. */
static size_t query_parts(index_db *ix, const part_hashes *ph, long want, int *found, int *mech,
                          char *seen, size_t seen_n)
{
    size_t falses = 0;
    for (size_t k = 0; k < BC_N_PARTS; k++) {
        if (!g_part_on[k] || ph->quality[k] < BC_MIN_QUALITY)
            continue;
        char tenant[16];
        snprintf(tenant, sizeof tenant, "part%zu", k);
        index_pdq_query iq = index_pdq_query_defaults();
        iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)&ph->h[k];
        iq.n_variants = 1;
        iq.threshold = VG_MAX(g_part_threshold, g_sweep);
        iq.min_quality = BC_MIN_QUALITY;
        index_pdq_result r;
        if (index_pdq_search(ix, tenant, &iq, &r))
            continue; /* no such tenant yet */
        for (size_t i = 0; i < r.n; i++) {
            char kind;
            long idx;
            bc_key_parts(r.matches[i].reference, &kind, &idx, NULL);
            sweep_note(kind, idx, want, r.matches[i].distance);
            if (r.matches[i].distance > g_part_threshold)
                continue;
            if (kind == 'p' && idx == want) {
                if (!*found)
                    *mech = BC_REGION_PART;
                *found = 1;
            } else {
                size_t key = (size_t)idx * 2 + (kind == 'd');
                if (getenv("BC_DEBUG_FALSE"))
                    printf("false part match: photo %ld part %zu meets %c%ld at %d\n", want, k,
                           kind, idx, r.matches[i].distance);
                if (key < seen_n && !seen[key]) {
                    seen[key] = 1;
                    falses++;
                }
            }
        }
        index_pdq_result_free(&r);
    }
    return falses;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_dir(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **v = calloc(BC_MAX_FILES, sizeof *v);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < BC_MAX_FILES) {
        const char *x = strrchr(e->d_name, '.');
        if (!x || (strcasecmp(x, ".jpg") && strcasecmp(x, ".jpeg") && strcasecmp(x, ".png") &&
                   strcasecmp(x, ".webp")))
            continue;
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        v[n] = malloc(l);
        snprintf(v[n++], l, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static double now_us(void)
{
    return (double)vg_now_ns() / 1000.0;
}

/* Search time in an index of n random references with per_ref hashes each (one whole + extras),
 * for sets hash sets per query: what a production-size tenant pays. */
static void scale_run(size_t n, double per_ref, size_t sets)
{
    index_db *ix;
    if (index_new(NULL, &ix))
        exit(2);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    size_t entries = 0;
    index_bulk_begin(ix);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)per_ref + ((double)(i % 100) < (per_ref - (size_t)per_ref) * 100);
        for (size_t j = 0; j < k; j++) {
            uint8_t h[32];
            for (int b = 0; b < 32; b++) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                h[b] = (uint8_t)s;
            }
            index_pdq_add(ix, "t", "p", i + 1, h, 80, 0);
            entries++;
        }
    }
    /* BC_PARTS: each part an index of its own (one entry per reference), searched with one
     * variant */
    size_t n_parts = 0;
    for (size_t k = 0; k < BC_N_PARTS; k++) {
        if (!g_part_on[k])
            continue;
        char tenant[16];
        snprintf(tenant, sizeof tenant, "part%zu", k);
        for (size_t i = 0; i < n; i++) {
            uint8_t h[32];
            for (int b = 0; b < 32; b++) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                h[b] = (uint8_t)s;
            }
            index_pdq_add(ix, tenant, "p", i + 1, h, 80, 0);
        }
        n_parts++;
    }
    index_bulk_end(ix);
    index_stats st;
    index_stats_get(ix, NULL, &st);
    const int reps = 200;
    /* before: one search per hash set, 8 variants each; after: the server's one pass over all
     * of them (whole 8 + trimmed 8 + strict 1 + caption 1 + mirror 1: analyze_match.c), and
     * the common case of a
     * query without bars that is not small (whole 8) */
    struct {
        const char *name;
        size_t searches, nv;
    } modes[] = {{"separate searches of 8 variants", sets, 8},
                 {"one pass, whole + trimmed + strict + caption + mirror", 1, sets > 1 ? 19 : 8},
                 {"one pass, whole only", 1, 8},
                 /* the server's pass for a query's top or bottom half: one variant over the
                  * same index (BC_SCALE_PER_REF counting the halves' entries), tag-filtered */
                 {"one variant (a half's pass)", 1, 1}};
    for (size_t mi = 0; mi < VG_ARRAY_LEN(modes) + (n_parts > 0); mi++) {
        if (mi == VG_ARRAY_LEN(modes)) { /* the parts' searches, on top of the one pass */
            double t0 = now_us();
            for (int r = 0; r < reps; r++)
                for (size_t k = 0; k < BC_N_PARTS; k++) {
                    if (!g_part_on[k])
                        continue;
                    char tenant[16];
                    snprintf(tenant, sizeof tenant, "part%zu", k);
                    uint64_t v[4];
                    for (int b = 0; b < 4; b++) {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        v[b] = s;
                    }
                    index_pdq_query iq = index_pdq_query_defaults();
                    iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)v;
                    iq.n_variants = 1;
                    index_pdq_result res;
                    index_pdq_search(ix, tenant, &iq, &res);
                    index_pdq_result_free(&res);
                }
            printf("scale: %zu parts of %zu references each, one variant each: %.0f us per query "
                   "(on top of the one pass)\n",
                   n_parts, n, (now_us() - t0) / reps);
            break;
        }
        double t0 = now_us();
        for (int r = 0; r < reps; r++) {
            for (size_t q = 0; q < modes[mi].searches; q++) {
                uint64_t v[INDEX_PDQ_MAX_VARIANTS][4];
                for (size_t a = 0; a < modes[mi].nv; a++)
                    for (int b = 0; b < 4; b++) {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        v[a][b] = s;
                    }
                index_pdq_query iq = index_pdq_query_defaults();
                iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)v;
                iq.n_variants = modes[mi].nv;
                index_pdq_result res;
                index_pdq_search(ix, "t", &iq, &res);
                index_pdq_result_free(&res);
            }
        }
        double per = (now_us() - t0) / reps;
        printf("scale: %zu references, %zu hashes, %.1f MiB index, %s (%zu x %zu variants): %.0f "
               "us per query\n",
               n, entries, st.bytes / 1048576.0, modes[mi].name, modes[mi].searches, modes[mi].nv,
               per);
    }
    index_free(ix);
}

/* Hash distance under which two candidates of --select are the same picture (another resolution,
 * crop, frame or mirror of it): well over the match threshold, so no edit of one photo meets
 * another in the evaluation because the two are copies; unrelated pictures lie near 128. */
#define BC_DEDUPE_DISTANCE 56
/* Short side (px, as stored in the file) under which a candidate is an icon, not a photo. */
#define BC_SELECT_MIN_SIDE_PX 256

/* --select LIST --out DIR: the evaluation set from candidate files (bench/copy_eval_set.sh).
 * LIST holds one path a line, the preferred version of a picture first. A candidate is kept when
 * it decodes, its short side is at least BC_SELECT_MIN_SIDE_PX, its quality passes the gate (a
 * flat picture is never matchable) and no hash of it (whole, trimmed, mirror, centre crops; 8
 * variants each; and each half, with quality over the gate, against the same half) lies within
 * BC_DEDUPE_DISTANCE of any hash of one kept before. Kept pictures
 * are written prepared (long side `side`, JPEG q92) as DIR/NNNN.jpg; stdout gets
 * "NNNN.jpg<TAB>path" for each, stderr why each other was dropped. */
static int select_run(const char *list, const char *out_dir, uint32_t side)
{
    FILE *lf = fopen(list, "r");
    pdq_ctx *ctx = pdq_ctx_new();
    index_db *ix;
    if (!lf || !ctx || index_new(NULL, &ix))
        return 2;
    char line[4096];
    size_t kept = 0, small = 0, flat = 0, dup = 0, bad = 0, entries = 0;
    while (fgets(line, sizeof line, lf)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        rgb im;
        uint32_t sw, sh;
        if (load_src(line, side, &im, &sw, &sh)) {
            fprintf(stderr, "drop (decode) %s\n", line);
            bad++;
            continue;
        }
        if (VG_MIN(sw, sh) < BC_SELECT_MIN_SIDE_PX) {
            small++;
            rgb_free(&im);
            continue;
        }
        unsigned long len;
        uint8_t *b = jpeg(&im, 92, &len);
        hashes h;
        if (hash_bytes(ctx, b, len, PDQ_COPY_TRIM | PDQ_COPY_FLIP | PDQ_COPY_REGIONS, &h))
            return 2;
        if (h.quality < BC_MIN_QUALITY) {
            fprintf(stderr, "drop (quality %d) %s\n", h.quality, line);
            flat++;
            tjFree(b);
            rgb_free(&im);
            continue;
        }
        int near = 0;
        for (size_t s = 0; s <= h.copies.n && !near; s++) {
            const pdq_hash *v = s == 0 ? h.whole : h.copies.h[s - 1].dihedral;
            index_pdq_query iq = index_pdq_query_defaults();
            iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)v;
            iq.n_variants = 8;
            iq.threshold = BC_DEDUPE_DISTANCE;
            iq.min_quality = 0;
            index_pdq_result r;
            if (index_pdq_search(ix, "t", &iq, &r))
                return 2;
            if (r.n) {
                near = 1;
                fprintf(stderr, "drop (near %04llu.jpg, distance %d) %s\n",
                        (unsigned long long)r.matches[0].reference - 1, r.matches[0].distance,
                        line);
            }
            index_pdq_result_free(&r);
        }
        part_hashes ph; /* a picture sharing half of one kept (tree atlases) is a copy too */
        if (hash_parts(ctx, b, len, &ph))
            return 2;
        for (size_t k = 0; k < BC_N_PARTS && !near; k++) {
            if (ph.quality[k] < BC_MIN_QUALITY)
                continue;
            char tenant[16];
            snprintf(tenant, sizeof tenant, "part%zu", k);
            index_pdq_query iq = index_pdq_query_defaults();
            iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])(const void *)&ph.h[k];
            iq.n_variants = 1;
            iq.threshold = BC_DEDUPE_DISTANCE;
            iq.min_quality = BC_MIN_QUALITY;
            index_pdq_result r;
            if (index_pdq_search(ix, tenant, &iq, &r))
                continue; /* no such tenant yet */
            if (r.n) {
                near = 1;
                fprintf(stderr, "drop (%s half near %04llu.jpg, distance %d) %s\n",
                        pdq_part_name((pdq_part)k), (unsigned long long)r.matches[0].reference - 1,
                        r.matches[0].distance, line);
            }
            index_pdq_result_free(&r);
        }
        if (near) {
            dup++;
        } else {
            char p[4096];
            uint64_t id = kept + 1; /* the kept file's number + 1 */
            if (index_pdq_add(ix, "t", "p", id, (const uint8_t *)h.whole[0].w, 100, 0))
                return 2;
            for (size_t k = 0; k < h.copies.n; k++)
                if (index_pdq_add(ix, "t", "p", id, (const uint8_t *)h.copies.h[k].dihedral[0].w,
                                  100, 0))
                    return 2;
            entries += 1 + h.copies.n;
            for (size_t k = 0; k < BC_N_PARTS; k++) {
                char tenant[16];
                snprintf(tenant, sizeof tenant, "part%zu", k);
                if (ph.quality[k] && index_pdq_add(ix, tenant, "p", id, (const uint8_t *)ph.h[k].w,
                                                   ph.quality[k], 0))
                    return 2;
            }
            char name[32];
            snprintf(name, sizeof name, "%04zu.jpg", kept);
            snprintf(p, sizeof p, "%s/%s", out_dir, name);
            FILE *f = fopen(p, "wb");
            if (!f || fwrite(b, 1, len, f) != len)
                return 2;
            fclose(f);
            printf("%s\t%s\n", name, line);
            kept++;
        }
        tjFree(b);
        rgb_free(&im);
    }
    fclose(lf);
    fprintf(stderr,
            "select: kept %zu (%zu index entries); dropped %zu near duplicates, %zu under the "
            "quality gate, %zu with a short side under %d px, %zu undecodable\n",
            kept, entries, dup, flat, small, BC_SELECT_MIN_SIDE_PX, bad);
    index_free(ix);
    pdq_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    const char *photos = NULL, *distractors = NULL, *mech = "all", *floors = NULL,
               *write_floors = NULL, *export_dir = NULL, *export_edits = NULL, *select = NULL,
               *out_dir = NULL, *only_edits = NULL;
    uint32_t side = 640;
    size_t export_n = 40, scale = 0, every = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_copy: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--photos"))
            photos = v;
        else if (!strcmp(a, "--distractors"))
            distractors = v;
        else if (!strcmp(a, "--mech"))
            mech = v;
        else if (!strcmp(a, "--max-side"))
            side = (uint32_t)atoi(v);
        else if (!strcmp(a, "--floors"))
            floors = v;
        else if (!strcmp(a, "--write-floors"))
            write_floors = v;
        else if (!strcmp(a, "--export"))
            export_dir = v;
        else if (!strcmp(a, "--export-edits"))
            export_edits = v;
        else if (!strcmp(a, "--export-n"))
            export_n = (size_t)atoi(v);
        else if (!strcmp(a, "--edits"))
            only_edits = v;
        else if (!strcmp(a, "--every"))
            every = (size_t)atol(v);
        else if (!strcmp(a, "--select"))
            select = v;
        else if (!strcmp(a, "--out"))
            out_dir = v;
        else if (!strcmp(a, "--scale"))
            scale = (size_t)atol(v);
        else {
            fprintf(stderr, "bench_copy: unknown option %s\n", a);
            return 2;
        }
    }
    if (select && out_dir) {
        g_any_part = 1; /* halves too: hash_parts */
        return select_run(select, out_dir, side);
    }
    if (!photos) {
        fprintf(stderr, "usage: bench_copy --photos DIR [--distractors DIR] [--mech whole|all] "
                        "[--max-side PX] [--floors FILE] [--write-floors FILE] [--export DIR "
                        "--export-n N] [--scale N]\n");
        return 2;
    }
    for (int r = 0; r < BC_REGIONS; r++)
        g_region_threshold[r] = BC_THRESHOLD;
    if (!strcmp(mech, "all")) {
        g_query_what = PDQ_COPY_TRIM | PDQ_COPY_FLIP;
        g_ref_what = PDQ_COPY_TRIM | PDQ_COPY_REGIONS;
    } else if (!strcmp(mech, "trim")) {
        g_query_what = g_ref_what = PDQ_COPY_TRIM;
    } else if (!strcmp(mech, "trimflip")) {
        g_query_what = PDQ_COPY_TRIM | PDQ_COPY_FLIP;
        g_ref_what = PDQ_COPY_TRIM;
    } else if (strcmp(mech, "whole")) {
        fprintf(stderr, "bench_copy: --mech whole|trim|trimflip|all\n");
        return 2;
    }
    for (const char *e = getenv("BC_ROT_EDIT"); e && *e;) { /* rotation experiments */
        static size_t k;
        char *end;
        double v = strtod(e, &end);
        if (end == e || k >= 2)
            break;
        g_rot_edit[k++] = v;
        e = end + (*end == ',');
    }
    g_rot_edit_crop = getenv("BC_ROT_EDIT_CROP") && atoi(getenv("BC_ROT_EDIT_CROP"));
    for (const char *e = getenv("BC_ROT_REF"); e && *e;) {
        char *end;
        double v = strtod(e, &end);
        if (end == e || g_n_rot_ref >= VG_ARRAY_LEN(g_rot_ref))
            break;
        g_rot_ref[g_n_rot_ref++] = v;
        e = end + (*end == ',');
    }
    g_rot_ref_canvas = getenv("BC_ROT_MODE") && !strcmp(getenv("BC_ROT_MODE"), "canvas");
    for (const char *e = getenv("BC_PARTS"); e && *e;) { /* "1": all, or "p,p..": those */
        size_t k = (size_t)strtoul(e, (char **)&e, 10);
        e += *e == ',';
        if (k < BC_N_PARTS)
            g_part_on[k] = g_any_part = 1;
    }
    if (getenv("BC_PARTS") && !strcmp(getenv("BC_PARTS"), "1"))
        for (size_t k = 0; k < BC_N_PARTS; k++)
            g_part_on[k] = g_any_part = 1;
    if (getenv("BC_SWEEP"))
        g_sweep = VG_MIN(BC_SWEEP_MAX, atoi(getenv("BC_SWEEP")));
    if (getenv("BC_PART_THRESHOLD"))
        g_part_threshold = atoi(getenv("BC_PART_THRESHOLD"));
    const char *rt = getenv("BC_REGION_THRESHOLD"); /* experiments: stricter centre crops */
    if (rt)
        g_region_threshold[PDQ_REGION_CENTRE90] = g_region_threshold[PDQ_REGION_CENTRE80] =
            atoi(rt);

    char **files;
    size_t n = list_dir(photos, &files);
    if (n == 0) {
        fprintf(stderr, "bench_copy: no images in %s\n", photos);
        return 2;
    }
    rgb *img = calloc(n, sizeof *img);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (load(files[i], side, &img[ok]) == 0)
            ok++;
        else
            fprintf(stderr, "bench_copy: skipped %s: %s\n", files[i], vg_err_msg());
    }
    n = ok;
    if (export_dir) {
        for (size_t i = 0; i < n && i < export_n; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%03zu.jpg", export_dir, i);
            unsigned long len;
            uint8_t *b = jpeg(&img[i], 88, &len);
            FILE *f = fopen(p, "wb");
            if (!f || fwrite(b, 1, len, f) != len)
                return 2;
            fclose(f);
            tjFree(b);
            /* --export-edits 14,16: those edits of the photo too, as the evaluation makes them
             * (the end-to-end test's copies in tests/data/copy/it were made so) */
            for (const char *e = export_edits; e && *e;) {
                size_t k = (size_t)strtoul(e, (char **)&e, 10);
                e += *e == ',';
                if (k >= N_EDITS)
                    return 2;
                rgb d = make_edit(k, &img[i]);
                b = jpeg(&d, EDITS[k].quality, &len);
                snprintf(p, sizeof p, "%s/%03zu-e%02zu.jpg", export_dir, i, k);
                if (!(f = fopen(p, "wb")) || fwrite(b, 1, len, f) != len)
                    return 2;
                fclose(f);
                tjFree(b);
                rgb_free(&d);
            }
        }
        printf("exported %zu photos to %s\n", VG_MIN(n, export_n), export_dir);
        return 0;
    }

    pdq_ctx *ctx = pdq_ctx_new();
    index_db *ix;
    if (!ctx || index_new(NULL, &ix))
        return 2;
    size_t entries = 0, refs = 0, low_quality_refs = 0;
    /* A reference under the quality gate is never matched (flat renderings, gradients): PDQ
     * cannot protect it, so its edits are left out of the recall (and counted in the header). */
    char *gated = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned long len;
        uint8_t *b = jpeg(&img[i], 90, &len);
        hashes h;
        part_hashes ph;
        if (hash_bytes(ctx, b, len, g_ref_what, &h) || add_ref(ix, 'p', i, &h, &entries) ||
            add_rot_refs(ctx, ix, 'p', i, &img[i], h.quality, &entries) ||
            hash_parts(ctx, b, len, &ph) || add_parts(ix, 'p', i, &ph, &entries))
            return 2;
        low_quality_refs += h.quality < BC_MIN_QUALITY;
        gated[i] = h.quality < BC_MIN_QUALITY;
        tjFree(b);
        refs++;
    }
    char **dfiles = NULL;
    size_t nd = distractors ? list_dir(distractors, &dfiles) : 0, dok = 0;
    for (size_t i = 0; i < nd; i++) {
        rgb d;
        if (load(dfiles[i], side, &d))
            continue;
        unsigned long len;
        uint8_t *b = jpeg(&d, 90, &len);
        hashes h;
        part_hashes ph;
        if (!hash_bytes(ctx, b, len, g_ref_what, &h) && !add_ref(ix, 'd', dok, &h, &entries) &&
            !add_rot_refs(ctx, ix, 'd', dok, &d, h.quality, &entries) &&
            !hash_parts(ctx, b, len, &ph) && !add_parts(ix, 'd', dok, &ph, &entries))
            dok++;
        tjFree(b);
        rgb_free(&d);
    }
    refs += dok;

    static size_t true_hist[N_EDITS][BC_SWEEP_MAX + 1], false_hist[N_EDITS][BC_SWEEP_MAX + 1];
    kind_stats ks[N_EDITS];
    memset(ks, 0, sizeof ks);
    char run_edit[N_EDITS]; /* --edits K,K..: only those edits (quicker experiments) */
    memset(run_edit, !only_edits, sizeof run_edit);
    for (const char *e = only_edits; e && *e;) {
        size_t k = (size_t)strtoul(e, (char **)&e, 10);
        e += *e == ',';
        if (k < N_EDITS)
            run_edit[k] = 1;
    }
    double q_us = 0, hash_us = 0;
    size_t nq = 0;
    for (size_t i = 0; i < n; i++) {
        if (getenv("BC_PROGRESS") && i % 100 == 0)
            fprintf(stderr, "bench_copy: photo %zu of %zu\n", i, n);
        for (size_t e = 0; e < N_EDITS && !gated[i] && i % every == 0; e++) {
            if (!run_edit[e])
                continue;
            rgb d = make_edit(e, &img[i]);
            unsigned long len;
            uint8_t *b = jpeg(&d, EDITS[e].quality, &len);
            double t0 = now_us();
            hashes h;
            part_hashes ph;
            if (hash_bytes(ctx, b, len, g_query_what, &h) || hash_parts(ctx, b, len, &ph))
                return 2;
            double t1 = now_us();
            int found, mech_i;
            static char seen[BC_MAX_FILES * 2];
            memset(seen, 0, sizeof seen);
            g_true_d = 999;
            for (size_t k = 0; k < BC_MAX_FILES * 2; k++)
                g_false_d[k] = 999;
            size_t falses = query(ix, &h, (long)i, &found, &mech_i, seen);
            if (h.quality >= BC_MIN_QUALITY)
                falses += query_parts(ix, &ph, (long)i, &found, &mech_i, seen, sizeof seen);
            if (getenv("BC_DEBUG") && e == (size_t)atoi(getenv("BC_DEBUG"))) {
                hashes rh;
                unsigned long rl;
                uint8_t *rb = jpeg(&img[i], 90, &rl);
                hash_bytes(ctx, rb, rl, g_ref_what, &rh);
                tjFree(rb);
                printf(
                    "photo %zu %ux%u found=%d ref trim %u %u %u %u (n=%zu) query %ux%u trim %u %u "
                    "%u %u (n=%zu) d(qtrim,rwhole)=%d\n",
                    i, img[i].w, img[i].h, found, rh.copies.trim[0], rh.copies.trim[1],
                    rh.copies.trim[2], rh.copies.trim[3], rh.copies.n, d.w, d.h, h.copies.trim[0],
                    h.copies.trim[1], h.copies.trim[2], h.copies.trim[3], h.copies.n,
                    h.copies.n ? pdq_distance(&h.copies.h[0].dihedral[0], &rh.whole[0]) : -1);
            }
            if (getenv("BC_DIAG") && !found && h.quality >= BC_MIN_QUALITY)
                diagnose(ctx, i, e, &img[i], &d, &h, b, len);
            if (h.quality >= BC_MIN_QUALITY) {
                if (g_true_d <= BC_SWEEP_MAX)
                    true_hist[e][g_true_d]++;
                for (size_t k = 0; k < BC_MAX_FILES * 2; k++)
                    if (g_false_d[k] <= BC_SWEEP_MAX)
                        false_hist[e][g_false_d[k]]++;
            }
            q_us += now_us() - t1;
            hash_us += t1 - t0;
            nq++;
            ks[e].queries++;
            ks[e].found += found;
            ks[e].false_matches += falses;
            ks[e].unreliable += h.quality < BC_MIN_QUALITY;
            if (found)
                ks[e].by_mech[mech_i]++;
            tjFree(b);
            rgb_free(&d);
        }
    }

    size_t pairs = nq * (refs - 1), falses = 0, found = 0;
    printf(
        "bench_copy: mech=%s, %zu photos + %zu distractors (%zu low-quality references), "
        "%zu index entries, %zu queries (edits of the others), %zu unrelated pairs, threshold %d\n",
        mech, n, dok, low_quality_refs, entries, nq, pairs, BC_THRESHOLD);
    printf("| edit | recall | false matches | found by "
           "(whole/trimmed/flip/centre90/centre80/rot/part) |\n");
    printf("|---|---|---|---|\n");
    int fail = 0;
    FILE *ff = floors ? fopen(floors, "r") : NULL;
    FILE *wf = write_floors ? fopen(write_floors, "w") : NULL;
    for (size_t e = 0; e < N_EDITS; e++) {
        if (!ks[e].queries)
            continue;
        double rec = 100.0 * ks[e].found / ks[e].queries;
        falses += ks[e].false_matches;
        found += ks[e].found;
        printf("| %s | %.1f%% | %zu | %zu/%zu/%zu/%zu/%zu/%zu/%zu |\n", EDITS[e].name, rec,
               ks[e].false_matches, ks[e].by_mech[0], ks[e].by_mech[1], ks[e].by_mech[2],
               ks[e].by_mech[3], ks[e].by_mech[4], ks[e].by_mech[BC_REGION_ROT],
               ks[e].by_mech[BC_REGION_PART]);
        if (wf)
            fprintf(wf, "%s\t%.1f\n", EDITS[e].name, rec);
        if (ff) {
            char line[256];
            rewind(ff);
            while (fgets(line, sizeof line, ff)) {
                char *tab = strchr(line, '\t');
                if (!tab)
                    continue;
                *tab = 0;
                if (!strcmp(line, EDITS[e].name) && rec + 1e-9 < atof(tab + 1)) {
                    printf("FAIL: %s recall %.1f%% below its floor %.1f%%\n", line, rec,
                           atof(tab + 1));
                    fail = 1;
                }
            }
        }
    }
    printf("overall recall %.1f%%, false matches %zu in %zu pairs (%.2e per pair); per query: "
           "hashing %.0f us, search %.0f us\n",
           100.0 * found / nq, falses, pairs, (double)falses / (double)pairs, hash_us / nq,
           q_us / nq);
    if (g_sweep) { /* recall and false matches by threshold (parts at the same threshold) */
        static const int T[] = {31, 34, 37, 40, 43, 46, 50, 54, 58, 64};
        printf("\nsweep: recall by threshold (whole, trimmed, flip, regions%s)\n| edit |",
               g_any_part ? ", parts" : "");
        for (size_t t = 0; t < VG_ARRAY_LEN(T) && T[t] <= g_sweep; t++)
            printf(" %d |", T[t]);
        printf("\n|---|");
        for (size_t t = 0; t < VG_ARRAY_LEN(T) && T[t] <= g_sweep; t++)
            printf("---|");
        printf("\n");
        size_t all_true[BC_SWEEP_MAX + 1] = {0}, all_false[BC_SWEEP_MAX + 1] = {0};
        for (size_t e = 0; e < N_EDITS; e++) {
            if (!ks[e].queries)
                continue;
            printf("| %s |", EDITS[e].name);
            size_t acc = 0;
            size_t t = 0;
            for (int d = 0; d <= g_sweep; d++) {
                acc += true_hist[e][d];
                all_true[d] += true_hist[e][d];
                all_false[d] += false_hist[e][d];
                if (t < VG_ARRAY_LEN(T) && d == T[t]) {
                    printf(" %.1f%% |", 100.0 * acc / ks[e].queries);
                    t++;
                }
            }
            printf("\n");
        }
        printf("| **overall** |");
        size_t acc_t = 0, t = 0;
        for (int d = 0; d <= g_sweep; d++) {
            acc_t += all_true[d];
            if (t < VG_ARRAY_LEN(T) && d == T[t]) {
                printf(" %.1f%% |", 100.0 * acc_t / nq);
                t++;
            }
        }
        printf("\n| **false matches** |");
        size_t acc_f = 0;
        t = 0;
        for (int d = 0; d <= g_sweep; d++) {
            acc_f += all_false[d];
            if (t < VG_ARRAY_LEN(T) && d == T[t]) {
                printf(" %zu (%.1e) |", acc_f, (double)acc_f / (double)pairs);
                t++;
            }
        }
        printf("\n");
    }
    diag_report();
    if (ff)
        fclose(ff);
    if (wf)
        fclose(wf);
    if (scale) /* BC_SCALE_PER_REF: hashes per reference of the index, in place of the run's */
        scale_run(scale,
                  getenv("BC_SCALE_PER_REF") ? atof(getenv("BC_SCALE_PER_REF"))
                                             : (double)entries / refs,
                  1 + (g_query_what ? 2 : 0));
    index_free(ix);
    pdq_ctx_free(ctx);
    for (size_t i = 0; i < n; i++)
        rgb_free(&img[i]);
    free(img);
    free(gated);
    for (size_t i = 0; i < BC_MAX_FILES && files[i]; i++)
        free(files[i]);
    free(files);
    for (size_t i = 0; dfiles && i < BC_MAX_FILES && dfiles[i]; i++)
        free(dfiles[i]);
    free(dfiles);
    return fail;
}
