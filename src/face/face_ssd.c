/*
 * SSD MobileNet v1 face detector (face-api's SsdMobilenetv1, the accuracy level): a MobileNet v1
 * backbone (relu6 everywhere, batch-norm after each depthwise conv) and an SSD head predicting
 * boxes at six scales for 5118 anchors.
 *
 *   input                                          (512, 512, 3), x/127.5 - 1
 *   conv_0    3x3 s2 SAME + offset, relu6            (256, 256, 32)
 *   conv_1-13 depthwise 3x3 (s2 at 2, 4, 6, 12) + batch-norm + relu6,
 *             pointwise 1x1 + offset + relu6         -> (32, 32, 512) after 11, (16, 16, 1024)
 *   prediction conv_0..7: 1x1 then 3x3 s2, relu6    (8,8,512) (4,4,256) (2,2,256) (1,1,128)
 *   box predictor i: 1x1 conv -> anchors x 4 box encodings, 1x1 conv -> anchors x 3 classes,
 *             on conv11 (3 anchors), the backbone output, conv_1, conv_3, conv_5, conv_7 (6)
 *
 * Graph outputs, in order: box0, class0, box1, class1, ... box5, class5 (NHWC each).
 * Decoding (face-api's outputLayer): anchors (ymin, xmin, ymax, xmax) from Output/extra_dim;
 * centre += enc/10 * size, size *= exp(enc/5); score = sigmoid(class 1); NMS IoU 0.5, score
 * > threshold, at most 100 boxes.
 */
#include "face/face_int.h"

#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SSD_BN_EPS 0.0010000000474974513
#define SSD_ANCHORS 5118
#define SSD_NMS_IOU 0.5f
#define SSD_MAX_RESULTS 100

/* Per-channel batch-norm affine, computed at build time; lives as long as the graph. */
typedef struct ssd_bn {
    float *scale, *shift;
} ssd_bn;

static int pointwise(nn_graph *g, const nn_weights *w, int x, const char *prefix, int idx, int k,
                     int cin, int cout, int stride)
{
    char nf[96], nb[96];
    snprintf(nf, sizeof nf, "%s/Conv2d_%d_pointwise/weights", prefix, idx);
    snprintf(nb, sizeof nb, "%s/Conv2d_%d_pointwise/convolution_bn_offset", prefix, idx);
    const float *f, *b;
    if (nn_weights_get_f32(w, nf, 4, (int[]){k, k, cin, cout}, &f) ||
        nn_weights_get_f32(w, nb, 1, (int[]){cout}, &b))
        return -1;
    nn_conv c = {.kh = k,
                 .kw = k,
                 .cout = cout,
                 .stride = stride,
                 .pad = {.mode = NN_PAD_SAME},
                 .weights = f,
                 .bias = b,
                 .sum = -1,
                 .act = {NN_ACT_CLIP, 6.0f}};
    return nn_graph_conv(g, x, &c);
}

static int depthwise(nn_graph *g, const nn_weights *w, int x, int idx, int c, int stride,
                     float *bn_scale, float *bn_shift)
{
    char n[5][96];
    const char *suffix[5] = {"depthwise_weights", "BatchNorm/gamma", "BatchNorm/beta",
                             "BatchNorm/moving_mean", "BatchNorm/moving_variance"};
    const float *t[5];
    for (int i = 0; i < 5; i++) {
        snprintf(n[i], sizeof n[i], "MobilenetV1/Conv2d_%d_depthwise/%s", idx, suffix[i]);
        if (nn_weights_get_f32(w, n[i], i ? 1 : 4, i ? (int[]){c} : (int[]){3, 3, c, 1}, &t[i]))
            return -1;
    }
    for (int k = 0; k < c; k++) {
        double inv = 1.0 / sqrt((double)t[4][k] + SSD_BN_EPS);
        bn_scale[k] = (float)(t[1][k] * inv);
        bn_shift[k] = (float)(t[2][k] - t[3][k] * t[1][k] * inv);
    }
    nn_conv d = {.kh = 3,
                 .kw = 3,
                 .cout = c,
                 .stride = stride,
                 .depthwise = 1,
                 .pad = {.mode = NN_PAD_SAME},
                 .weights = t[0],
                 .scale = bn_scale,
                 .shift = bn_shift,
                 .sum = -1,
                 .act = {NN_ACT_CLIP, 6.0f}};
    return nn_graph_conv(g, x, &d);
}

static int predictor(nn_graph *g, const nn_weights *w, int x, int idx, int cin, int anchors)
{
    static const char *kinds[2] = {"BoxEncodingPredictor", "ClassPredictor"};
    for (int k = 0; k < 2; k++) {
        int cout = anchors * (k ? 3 : 4);
        char nf[96], nb[96];
        snprintf(nf, sizeof nf, "Prediction/BoxPredictor_%d/%s/weights", idx, kinds[k]);
        snprintf(nb, sizeof nb, "Prediction/BoxPredictor_%d/%s/biases", idx, kinds[k]);
        const float *f, *b;
        if (nn_weights_get_f32(w, nf, 4, (int[]){1, 1, cin, cout}, &f) ||
            nn_weights_get_f32(w, nb, 1, (int[]){cout}, &b))
            return -1;
        nn_conv c = {.kh = 1,
                     .kw = 1,
                     .cout = cout,
                     .stride = 1,
                     .pad = {.mode = NN_PAD_SAME},
                     .weights = f,
                     .bias = b,
                     .sum = -1};
        if (nn_graph_output(g, nn_graph_conv(g, x, &c)) < 0)
            return -1;
    }
    return 0;
}

int face__ssd_build(const nn_weights *w, float *bn, nn_graph **out)
{
    nn_graph *g;
    int rc = nn_graph_new("ssd", &g);
    if (rc)
        return rc;
    int x = nn_graph_input(g, FACE_SSD_SIZE, FACE_SSD_SIZE, 3); /* (512,512,3) */
    x = pointwise(g, w, x, "MobilenetV1", 0, 3, 3, 32, 2);      /* (256,256,32) */
    static const int couts[14] = {32,  64,  128, 128, 256, 256,  512,
                                  512, 512, 512, 512, 512, 1024, 1024};
    int conv11 = -1, c = 32;
    for (int i = 1; i <= 13 && x >= 0; i++) {
        int s = (i == 2 || i == 4 || i == 6 || i == 12) ? 2 : 1;
        x = depthwise(g, w, x, i, c, s, bn, bn + c);
        bn += 2 * c;
        x = pointwise(g, w, x, "MobilenetV1", i, 1, c, couts[i], 1);
        c = couts[i];
        if (i == 11)
            conv11 = x; /* (32,32,512) */
    }                   /* (16,16,1024) */
    int p[8];
    if (x >= 0) {
        p[0] = pointwise(g, w, x, "Prediction", 0, 1, 1024, 256, 1);
        p[1] = pointwise(g, w, p[0], "Prediction", 1, 3, 256, 512, 2); /* (8,8,512) */
        p[2] = pointwise(g, w, p[1], "Prediction", 2, 1, 512, 128, 1);
        p[3] = pointwise(g, w, p[2], "Prediction", 3, 3, 128, 256, 2); /* (4,4,256) */
        p[4] = pointwise(g, w, p[3], "Prediction", 4, 1, 256, 128, 1);
        p[5] = pointwise(g, w, p[4], "Prediction", 5, 3, 128, 256, 2); /* (2,2,256) */
        p[6] = pointwise(g, w, p[5], "Prediction", 6, 1, 256, 64, 1);
        p[7] = pointwise(g, w, p[6], "Prediction", 7, 3, 64, 128, 2); /* (1,1,128) */
        if (p[7] < 0 || predictor(g, w, conv11, 0, 512, 3) || predictor(g, w, x, 1, 1024, 6) ||
            predictor(g, w, p[1], 2, 512, 6) || predictor(g, w, p[3], 3, 256, 6) ||
            predictor(g, w, p[5], 4, 256, 6) || predictor(g, w, p[7], 5, 128, 6))
            x = -1;
    }
    if (x < 0 || (rc = nn_graph_finish(g))) {
        rc = x < 0 ? VG_EFORMAT : rc;
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

int face__ssd_decode(const float *out, const float *anchors, const face_frame *fr,
                     float score_threshold, face_detection *dets, size_t max, size_t *n_out)
{
    static const int grid[6] = {32, 16, 8, 4, 2, 1}, per[6] = {3, 6, 6, 6, 6, 6};
    size_t n = 0, a = 0;
    const float *o = out;
    for (int k = 0; k < 6; k++) {
        size_t cells = (size_t)grid[k] * grid[k] * per[k];
        const float *box = o, *cls = o + cells * 4;
        o += cells * 7;
        for (size_t i = 0; i < cells; i++, a++) {
            double score = sigmoid(cls[i * 3 + 1]);
            if (!(score > score_threshold))
                continue;
            const float *an = &anchors[a * 4];
            const float *e = &box[i * 4];
            double s0 = an[2] - an[0], s1 = an[3] - an[1];
            double c0 = an[0] + s0 / 2, c1 = an[1] + s1 / 2;
            double h2 = exp(e[2] / 5.0) * s0 / 2, w2 = exp(e[3] / 5.0) * s1 / 2;
            double y0 = e[0] / 10.0 * s0 + c0, x0 = e[1] / 10.0 * s1 + c1;
            double ymin = y0 - h2, xmin = x0 - w2, ymax = y0 + h2, xmax = x0 + w2;
            /* NMS runs on the raw relative boxes (min/max normalised); pixels come after. */
            face_detection d = {.box = {(float)fmin(xmin, xmax), (float)fmin(ymin, ymax),
                                        (float)fabs(xmax - xmin), (float)fabs(ymax - ymin)},
                                .score = (float)score};
            if (n < max)
                dets[n++] = d;
        }
    }
    size_t kept = face__nms(dets, n, SSD_NMS_IOU, max < SSD_MAX_RESULTS ? max : SSD_MAX_RESULTS);
    double sc = (double)FACE_SSD_SIZE / (double)(fr->img_w > fr->img_h ? fr->img_w : fr->img_h);
    double rw = floor(fr->img_w * sc + 0.5), rh = floor(fr->img_h * sc + 0.5);
    double pad_x = FACE_SSD_SIZE / (rw < 1 ? 1 : rw), pad_y = FACE_SSD_SIZE / (rh < 1 ? 1 : rh);
    for (size_t i = 0; i < kept; i++) {
        face_box b = dets[i].box;
        double top = fmax(0.0, b.y) * pad_y, bottom = fmin(1.0, (double)b.y + b.h) * pad_y;
        double left = fmax(0.0, b.x) * pad_x, right = fmin(1.0, (double)b.x + b.w) * pad_x;
        dets[i].box =
            (face_box){(float)(left * fr->img_w), (float)(top * fr->img_h),
                       (float)((right - left) * fr->img_w), (float)((bottom - top) * fr->img_h)};
    }
    *n_out = kept;
    return 0;
}
