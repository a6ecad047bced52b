/*
 * Tiny face detector (face-api's TinyFaceDetector, a Tiny YOLOv2 with separable convolutions,
 * batch-norm folded into the weights). One 3x3 conv, five depthwise-separable convs with
 * leaky ReLU and max pooling, a 1x1 head predicting 5 anchors per cell.
 *
 *   input                         (s, s, 3)         s = 320 | 416 | 608, mean/255 normalised
 *   conv0   3x3 VALID, leaky       (s-2, s-2, 16)
 *   pool    2x2 s2 SAME            ((s-2)/2 up)
 *   conv1-5 pad 1, dw 3x3, pw 1x1, +bias, leaky; pool 2x2 s2 SAME (s1 after conv5)
 *                                  16 -> 32 -> 64 -> 128 -> 256 -> 512 channels, s/32 cells
 *   conv8   1x1 -> 25              (s/32, s/32, 5 anchors x (tx, ty, tw, th, to))
 */
#include "face/face_int.h"

#include "core/core.h"

#include <math.h>
#include <stdio.h>

#define TINY_LEAK 0.1f
#define TINY_ANCHORS 5
#define TINY_NMS_IOU 0.4f

static const float k_anchors[TINY_ANCHORS][2] = {
    {1.603231f, 2.094468f}, {6.041143f, 7.080126f}, {2.882459f, 3.518061f},
    {4.266906f, 5.178857f}, {9.041765f, 10.66308f},
};

/* conv_i: zero pad 1, depthwise 3x3, pointwise 1x1 + bias, leaky relu. */
static int separable(nn_graph *g, const nn_weights *w, int x, int i, int cin, int cout)
{
    char n1[64], n2[64], n3[64];
    snprintf(n1, sizeof n1, "conv%d/depthwise_filter", i);
    snprintf(n2, sizeof n2, "conv%d/pointwise_filter", i);
    snprintf(n3, sizeof n3, "conv%d/bias", i);
    const float *dw, *pw, *b;
    if (nn_weights_get_f32(w, n1, 4, (int[]){3, 3, cin, 1}, &dw) ||
        nn_weights_get_f32(w, n2, 4, (int[]){1, 1, cin, cout}, &pw) ||
        nn_weights_get_f32(w, n3, 1, (int[]){cout}, &b))
        return -1;
    nn_conv d = {.kh = 3,
                 .kw = 3,
                 .cout = cin,
                 .stride = 1,
                 .depthwise = 1,
                 .pad = {.mode = NN_PAD_EXPLICIT, .t = 1, .l = 1, .b = 1, .r = 1},
                 .weights = dw,
                 .sum = -1};
    x = nn_graph_conv(g, x, &d);
    nn_conv p = {.kh = 1,
                 .kw = 1,
                 .cout = cout,
                 .stride = 1,
                 .pad = {.mode = NN_PAD_VALID},
                 .weights = pw,
                 .bias = b,
                 .sum = -1,
                 .act = {NN_ACT_LEAKY, TINY_LEAK}};
    return nn_graph_conv(g, x, &p);
}

int face__tiny_build(const nn_weights *w, int s, nn_graph **out)
{
    if (s < 32 || s > 1024 || s % 32)
        return vg_err_set(VG_EINVAL,
                          "tiny detector input size %d is not a multiple of 32 in "
                          "32..1024",
                          s);
    const float *f0, *b0, *f8, *b8;
    int rc;
    if ((rc = nn_weights_get_f32(w, "conv0/filters", 4, (int[]){3, 3, 3, 16}, &f0)) ||
        (rc = nn_weights_get_f32(w, "conv0/bias", 1, (int[]){16}, &b0)) ||
        (rc = nn_weights_get_f32(w, "conv8/filters", 4, (int[]){1, 1, 512, 25}, &f8)) ||
        (rc = nn_weights_get_f32(w, "conv8/bias", 1, (int[]){25}, &b8)))
        return rc;
    char name[32];
    snprintf(name, sizeof name, "tiny%d", s);
    nn_graph *g;
    if ((rc = nn_graph_new(name, &g)))
        return rc;
    const nn_pad same = {.mode = NN_PAD_SAME};
    int x = nn_graph_input(g, s, s, 3); /* (s, s, 3) */
    nn_conv c0 = {.kh = 3,
                  .kw = 3,
                  .cout = 16,
                  .stride = 1,
                  .pad = {.mode = NN_PAD_VALID},
                  .weights = f0,
                  .bias = b0,
                  .sum = -1,
                  .act = {NN_ACT_LEAKY, TINY_LEAK}};
    x = nn_graph_conv(g, x, &c0);                     /* (s-2, s-2, 16) */
    x = nn_graph_pool(g, x, NN_POOL_MAX, 2, 2, same); /* 416: 207 */
    int ch = 16;
    for (int i = 1; i <= 5; i++) {
        rc = separable(g, w, x, i, ch, ch * 2);
        if (rc < 0) {
            nn_graph_free(g);
            return VG_EFORMAT;
        }
        x = rc;
        ch *= 2;                                                      /* 32, 64, 128, 256, 512 */
        x = nn_graph_pool(g, x, NN_POOL_MAX, 2, i < 5 ? 2 : 1, same); /* 104,52,26,13,13 */
    }
    nn_conv c8 = {.kh = 1,
                  .kw = 1,
                  .cout = 25,
                  .stride = 1,
                  .pad = {.mode = NN_PAD_VALID},
                  .weights = f8,
                  .bias = b8,
                  .sum = -1};
    x = nn_graph_conv(g, x, &c8); /* (s/32, s/32, 25) */
    nn_graph_output(g, x);
    if ((rc = nn_graph_finish(g))) {
        nn_graph_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

static double sigmoid(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

int face__tiny_decode(const float *out, const face_frame *fr, float score_threshold,
                      face_detection *dets, size_t max, size_t *n_out)
{
    int s = fr->input_size, g = s / 32;
    /* getReshapedInputDimensions: the image's size once its longer side is s (Math.round). */
    double sc = (double)s / (double)(fr->img_w > fr->img_h ? fr->img_w : fr->img_h);
    double rw = floor(fr->img_w * sc + 0.5), rh = floor(fr->img_h * sc + 0.5);
    if (rw < 1)
        rw = 1;
    if (rh < 1)
        rh = 1;
    double cx_f = s / rw, cy_f = s / rh;
    size_t n = 0;
    /* Candidates are collected into dets (bounded by max * 4 would drop some before NMS, so
     * the caller's array bounds the candidates; overflow keeps the best by replacing the
     * lowest). */
    for (int row = 0; row < g; row++)
        for (int col = 0; col < g; col++)
            for (int a = 0; a < TINY_ANCHORS; a++) {
                const float *v = &out[((size_t)row * g + col) * 25 + a * 5];
                double score = sigmoid(v[4]);
                if (!(score > score_threshold))
                    continue;
                double cx = (col + sigmoid(v[0])) / g * cx_f;
                double cy = (row + sigmoid(v[1])) / g * cy_f;
                double w = exp(v[2]) * k_anchors[a][0] / g * cx_f;
                double h = exp(v[3]) * k_anchors[a][1] / g * cy_f;
                face_detection d = {.box = {(float)((cx - w / 2) * fr->img_w),
                                            (float)((cy - h / 2) * fr->img_h),
                                            (float)(w * fr->img_w), (float)(h * fr->img_h)},
                                    .score = (float)score};
                if (n < max) {
                    dets[n++] = d;
                } else {
                    size_t lo = 0;
                    for (size_t k = 1; k < n; k++)
                        if (dets[k].score < dets[lo].score)
                            lo = k;
                    if (dets[lo].score < d.score)
                        dets[lo] = d;
                }
            }
    *n_out = face__nms(dets, n, TINY_NMS_IOU, max);
    return 0;
}
