/*
 * Pre-processing shared by every network: face-api's NetInput.toBatchTensor, without building
 * the padded square. A padded pixel is 0 before the mean is subtracted, exactly as tfjs pads
 * the float image with zeros and then resizes and normalises it.
 *
 * Resize: TensorFlow's legacy bilinear (alignCorners = false, halfPixelCenters = false), as
 * tfjs-backend-wasm computes it in float: src = dst * in/out, top = floor(src),
 * bottom = min(ceil(src), in-1), then lerp along x and y.
 */
#include "face/face_int.h"

#include <math.h>
#include <string.h>

/* Largest output side (the tiny detector's input is at most 1024). */
#define PRE_MAX_SIDE 1024

/* For output coordinate o of `size` along one axis of a padded square of `side` samples, the
 * two source taps (offsets into the crop along that axis, or -1 where the tap falls in the
 * zero padding) and the lerp weight, computed exactly as the per-pixel formula would. */
static void taps(int size, int side, int pad, int len, int *a, int *b, float *w)
{
    const float scale = (float)side / (float)size;
    for (int o = 0; o < size; o++) {
        int lo, hi;
        float wt = 0.0f;
        if (side == size) {
            lo = hi = o;
        } else {
            float in = (float)o * scale;
            lo = (int)floorf(in);
            hi = (int)ceilf(in);
            if (hi > side - 1)
                hi = side - 1;
            wt = in - (float)lo;
        }
        lo -= pad;
        hi -= pad;
        a[o] = lo >= 0 && lo < len ? lo : -1;
        b[o] = hi >= 0 && hi < len ? hi : -1;
        w[o] = wt;
    }
}

/* One source row (NULL: a padding row of zeros) resampled along x into h[size * 3]:
 * tl + (tr - tl) * lx per channel, as TF computes the top and bottom lerps; copy = 1 takes the
 * left tap only (no resize). */
static void hresample(const uint8_t *row, const int *xa, const int *xb, const float *lxs, int size,
                      int copy, float *h)
{
    if (!row) {
        memset(h, 0, (size_t)size * 3 * sizeof *h);
        return;
    }
    for (int ox = 0; ox < size; ox++) {
        int l = xa[ox], r = xb[ox];
        float lx = lxs[ox];
        for (int c = 0; c < 3; c++) {
            float tl = l >= 0 ? (float)row[l * 3 + c] : 0.0f;
            float tr = r >= 0 ? (float)row[r * 3 + c] : 0.0f;
            h[ox * 3 + c] = copy ? tl : tl + (tr - tl) * lx;
        }
    }
}

void face__to_square_tensor(const face_image *img, int x, int y, int cw, int ch, int size,
                            int center, const float mean[3], float div, float offset, float *dst)
{
    int side = cw > ch ? cw : ch;
    int diff = side - (cw > ch ? ch : cw);
    /* Math.round(diff * 0.5) zeros appended, the rest prepended (center); else all appended. */
    int append = center ? (diff + 1) / 2 : diff;
    int prepend = diff - append;
    int py = ch < cw ? prepend : 0, pxo = cw < ch ? prepend : 0;
    if (size > PRE_MAX_SIDE)
        size = PRE_MAX_SIDE; /* callers check their sizes; this only guards the tables */
    /* Column and row taps once, not per pixel: the values are the same floats the per-pixel
     * formula gives, so the result is unchanged bit for bit. */
    int xa[PRE_MAX_SIDE], xb[PRE_MAX_SIDE], ya[PRE_MAX_SIDE], yb[PRE_MAX_SIDE];
    float lxs[PRE_MAX_SIDE], lys[PRE_MAX_SIDE];
    taps(size, side, pxo, cw, xa, xb, lxs);
    taps(size, side, py, ch, ya, yb, lys);
    const size_t stride = (size_t)img->w * 3;
    const uint8_t *base = img->rgb + (size_t)y * stride + (size_t)x * 3;
    /* Each output row is the vertical lerp of two horizontally resampled source rows; a source
     * row's resampling is kept while the next output row uses it again (upscaled crops). */
    float hbuf[2][PRE_MAX_SIDE * 3];
    float *ht = hbuf[0], *hb = hbuf[1];
    int ht_row = -2, hb_row = -2; /* source row held in ht / hb (-1: padding, -2: none) */
    const int n3 = size * 3;
    for (int oy = 0; oy < size; oy++) {
        int want_t = ya[oy], want_b = side == size ? ya[oy] : yb[oy];
        if (want_t != ht_row && want_t == hb_row) { /* the previous bottom row is the new top */
            float *tmp = ht;
            ht = hb;
            hb = tmp;
            ht_row = hb_row;
            hb_row = -2;
        }
        if (want_t != ht_row) {
            hresample(want_t >= 0 ? base + (size_t)want_t * stride : NULL, xa, xb, lxs, size,
                      side == size, ht);
            ht_row = want_t;
        }
        if (want_b != hb_row && want_b != ht_row) {
            hresample(want_b >= 0 ? base + (size_t)want_b * stride : NULL, xa, xb, lxs, size,
                      side == size, hb);
            hb_row = want_b;
        }
        const float *bot = want_b == ht_row ? ht : hb;
        float ly = lys[oy];
        float *o = dst + (size_t)oy * n3;
        const float m0 = mean[0], m1 = mean[1], m2 = mean[2];
        if (side == size) { /* no resize: the padded square itself */
            for (int k = 0; k < n3; k += 3) {
                o[k] = (ht[k] - m0) / div + offset;
                o[k + 1] = (ht[k + 1] - m1) / div + offset;
                o[k + 2] = (ht[k + 2] - m2) / div + offset;
            }
        } else {
            for (int k = 0; k < n3; k += 3) {
                float t0 = ht[k], t1 = ht[k + 1], t2 = ht[k + 2];
                o[k] = (t0 + (bot[k] - t0) * ly - m0) / div + offset;
                o[k + 1] = (t1 + (bot[k + 1] - t1) * ly - m1) / div + offset;
                o[k + 2] = (t2 + (bot[k + 2] - t2) * ly - m2) / div + offset;
            }
        }
    }
}

static float iou(const face_box *a, const face_box *b)
{
    float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
    float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
    float inter = fmaxf(0.0f, x1 - x0) * fmaxf(0.0f, y1 - y0);
    float uni = a->w * a->h + b->w * b->h - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

static int by_score_desc(const void *pa, const void *pb)
{
    const face_detection *a = pa, *b = pb;
    return a->score < b->score ? 1 : a->score > b->score ? -1 : 0;
}

#include <stdlib.h>

size_t face__nms(face_detection *dets, size_t n, float iou_max, size_t max)
{
    qsort(dets, n, sizeof *dets, by_score_desc);
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        int keep = 1;
        for (size_t j = 0; j < kept && keep; j++)
            if (iou(&dets[i].box, &dets[j].box) > iou_max)
                keep = 0;
        if (keep)
            dets[kept++] = dets[i];
    }
    return kept;
}
