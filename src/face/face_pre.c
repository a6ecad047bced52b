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

/* Value of channel c at (sy, sx) of the padded square: the crop shifted by (py, px). */
static inline float px_at(const face_image *img, int x0, int y0, int cw, int ch, int py, int px,
                          int sy, int sx, int c)
{
    int yy = sy - py, xx = sx - px;
    if (yy < 0 || xx < 0 || yy >= ch || xx >= cw)
        return 0.0f;
    return (float)img->rgb[((size_t)(y0 + yy) * img->w + (size_t)(x0 + xx)) * 3 + c];
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
    if (side == size) {
        for (int oy = 0; oy < size; oy++)
            for (int ox = 0; ox < size; ox++)
                for (int c = 0; c < 3; c++) {
                    float v = px_at(img, x, y, cw, ch, py, pxo, oy, ox, c);
                    dst[((size_t)oy * size + ox) * 3 + c] = (v - mean[c]) / div + offset;
                }
        return;
    }
    const float scale = (float)side / (float)size;
    for (int oy = 0; oy < size; oy++) {
        float in_y = (float)oy * scale;
        int top = (int)floorf(in_y);
        int bottom = (int)ceilf(in_y);
        if (bottom > side - 1)
            bottom = side - 1;
        float ly = in_y - (float)top;
        for (int ox = 0; ox < size; ox++) {
            float in_x = (float)ox * scale;
            int left = (int)floorf(in_x);
            int right = (int)ceilf(in_x);
            if (right > side - 1)
                right = side - 1;
            float lx = in_x - (float)left;
            for (int c = 0; c < 3; c++) {
                float tl = px_at(img, x, y, cw, ch, py, pxo, top, left, c);
                float tr = px_at(img, x, y, cw, ch, py, pxo, top, right, c);
                float bl = px_at(img, x, y, cw, ch, py, pxo, bottom, left, c);
                float br = px_at(img, x, y, cw, ch, py, pxo, bottom, right, c);
                float t = tl + (tr - tl) * lx;
                float b = bl + (br - bl) * lx;
                float v = t + (b - t) * ly;
                dst[((size_t)oy * size + ox) * 3 + c] = (v - mean[c]) / div + offset;
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
