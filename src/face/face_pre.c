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

void face_to_square_tensor(const face_image *img, int x, int y, int cw, int ch, int size,
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
    for (int oy = 0; oy < size; oy++) {
        const uint8_t *rt = ya[oy] >= 0 ? base + (size_t)ya[oy] * stride : NULL;
        const uint8_t *rb = yb[oy] >= 0 ? base + (size_t)yb[oy] * stride : NULL;
        float ly = lys[oy];
        float *o = dst + (size_t)oy * size * 3;
        for (int ox = 0; ox < size; ox++) {
            int l = xa[ox], r = xb[ox];
            float lx = lxs[ox];
            for (int c = 0; c < 3; c++) {
                float tl = rt && l >= 0 ? (float)rt[l * 3 + c] : 0.0f;
                float tr = rt && r >= 0 ? (float)rt[r * 3 + c] : 0.0f;
                float bl = rb && l >= 0 ? (float)rb[l * 3 + c] : 0.0f;
                float br = rb && r >= 0 ? (float)rb[r * 3 + c] : 0.0f;
                float v;
                if (side == size) {
                    v = tl; /* no resize: the padded square itself */
                } else {
                    float t = tl + (tr - tl) * lx;
                    float b = bl + (br - bl) * lx;
                    v = t + (b - t) * ly;
                }
                o[ox * 3 + c] = (v - mean[c]) / div + offset;
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

size_t face_nms(face_detection *dets, size_t n, float iou_max, size_t max)
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
