/*
 * 68-point face landmarks (face-api's FaceLandmark68Net): four densely connected blocks of
 * separable convolutions, average pooling, one fully connected layer.
 *
 *   input                                  (112, 112, 3), mean/255 normalised
 *   dense0  conv0 3x3 s2 SAME + relu        (56, 56, 32)
 *   dense1  sep conv0 s2                    (28, 28, 64)
 *   dense2                                  (14, 14, 128)
 *   dense3                                  (7, 7, 256)
 *   avgpool 7x7 s2 VALID                    (1, 1, 256)
 *   fc      256 -> 136                      x0, y0, x1, y1, ... relative to the 112 square
 *
 * Dense block: o1 = relu(conv0(x)); o2 = sep(o1); o3 = sep(relu(o1+o2));
 * o4 = sep(relu(o1+o2+o3)); out = relu(o1+o2+o3+o4). The running sums are fused into the
 * pointwise convs as residual sums.
 */
#include "face/face_int.h"

#include "core/core.h"

#include <stdio.h>

/* Separable conv (depthwise 3x3 + pointwise + bias), SAME, stride s; adds `sum` if >= 0. */
static int sep(nn_graph *g, const nn_weights *w, int x, const char *blk, int i, int cin, int cout,
               int s, int sum, nn_act act)
{
    char n1[64], n2[64], n3[64];
    snprintf(n1, sizeof n1, "%s/conv%d/depthwise_filter", blk, i);
    snprintf(n2, sizeof n2, "%s/conv%d/pointwise_filter", blk, i);
    snprintf(n3, sizeof n3, "%s/conv%d/bias", blk, i);
    const float *dw, *pw, *b;
    if (nn_weights_get_f32(w, n1, 4, (int[]){3, 3, cin, 1}, &dw) ||
        nn_weights_get_f32(w, n2, 4, (int[]){1, 1, cin, cout}, &pw) ||
        nn_weights_get_f32(w, n3, 1, (int[]){cout}, &b))
        return -1;
    nn_conv d = {.kh = 3,
                 .kw = 3,
                 .cout = cin,
                 .stride = s,
                 .depthwise = 1,
                 .pad = {.mode = NN_PAD_SAME},
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
                 .sum = sum,
                 .act = act};
    return nn_graph_conv(g, x, &p);
}

static int dense_block(nn_graph *g, const nn_weights *w, int x, int idx, int cin, int cout)
{
    char blk[16];
    snprintf(blk, sizeof blk, "dense%d", idx);
    const nn_act relu = {NN_ACT_RELU, 0}, none = {NN_ACT_NONE, 0};
    int o1;
    if (idx == 0) {
        const float *f, *b;
        if (nn_weights_get_f32(w, "dense0/conv0/filters", 4, (int[]){3, 3, 3, 32}, &f) ||
            nn_weights_get_f32(w, "dense0/conv0/bias", 1, (int[]){32}, &b))
            return -1;
        nn_conv c = {.kh = 3,
                     .kw = 3,
                     .cout = cout,
                     .stride = 2,
                     .pad = {.mode = NN_PAD_SAME},
                     .weights = f,
                     .bias = b,
                     .sum = -1,
                     .act = relu};
        o1 = nn_graph_conv(g, x, &c);
    } else {
        o1 = sep(g, w, x, blk, 0, cin, cout, 2, -1, relu);
    }
    if (o1 < 0)
        return -1;
    int s12 = sep(g, w, o1, blk, 1, cout, cout, 1, o1, none); /* o1 + o2 */
    if (s12 < 0)
        return -1;
    int s123 = sep(g, w, nn_graph_act(g, s12, relu), blk, 2, cout, cout, 1, s12, none);
    if (s123 < 0)
        return -1;
    return sep(g, w, nn_graph_act(g, s123, relu), blk, 3, cout, cout, 1, s123, relu);
}

int face__landmarks_build(const nn_weights *w, nn_graph **out)
{
    const float *fw, *fb;
    int rc;
    if ((rc = nn_weights_get_f32(w, "fc/weights", 2, (int[]){256, 136}, &fw)) ||
        (rc = nn_weights_get_f32(w, "fc/bias", 1, (int[]){136}, &fb)))
        return rc;
    nn_graph *g;
    if ((rc = nn_graph_new("landmarks", &g)))
        return rc;
    int x = nn_graph_input(g, FACE_LANDMARK_SIZE, FACE_LANDMARK_SIZE, 3); /* (112,112,3) */
    x = dense_block(g, w, x, 0, 3, 32);                                   /* (56,56,32) */
    if (x >= 0)
        x = dense_block(g, w, x, 1, 32, 64); /* (28,28,64) */
    if (x >= 0)
        x = dense_block(g, w, x, 2, 64, 128); /* (14,14,128) */
    if (x >= 0)
        x = dense_block(g, w, x, 3, 128, 256); /* (7,7,256) */
    if (x >= 0) {
        x = nn_graph_pool(g, x, NN_POOL_AVG, 7, 2, (nn_pad){.mode = NN_PAD_VALID}); /* (1,1,256) */
        x = nn_graph_fc(g, x, fw, 136, fb);                                         /* 136 */
        nn_graph_output(g, x);
    }
    if (x < 0 || (rc = nn_graph_finish(g))) {
        rc = x < 0 ? VG_EFORMAT : rc;
        nn_graph_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void face_decode_landmarks(const float *out, const face_crop *crop,
                           float landmarks[FACE_LANDMARKS][2])
{
    /* postProcess: the crop was padded (centred) to a square and scaled to 112. */
    float w = (float)crop->w, h = (float)crop->h;
    float s = (float)FACE_LANDMARK_SIZE / (w > h ? w : h);
    float sw = w * s, sh = h * s;
    float pad_x = w < h ? (sh - sw) / 2.0f : 0.0f;
    float pad_y = h < w ? (sw - sh) / 2.0f : 0.0f;
    for (int i = 0; i < FACE_LANDMARKS; i++) {
        float rx = (out[2 * i] * (float)FACE_LANDMARK_SIZE - pad_x) / sw;
        float ry = (out[2 * i + 1] * (float)FACE_LANDMARK_SIZE - pad_y) / sh;
        landmarks[i][0] = (float)((double)rx * crop->w + crop->box_x);
        landmarks[i][1] = (float)((double)ry * crop->h + crop->box_y);
    }
}
