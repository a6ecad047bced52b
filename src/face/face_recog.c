/*
 * Face recognition (dlib's dlib_face_recognition_resnet_model_v1 as ported by face-api): a
 * ResNet with 29 conv layers on a 150x150 crop, global average pool, 256 -> 128 projection.
 * No L2 normalisation: descriptors have norms of about 1.25-1.5 and are compared by euclidean
 * distance (< 0.6: same person).
 *
 *   input                                       (150, 150, 3), mean/255 normalised
 *   conv32_down  7x7 s2 VALID + scale + relu    (72, 72, 32)
 *   maxpool      3x3 s2 VALID                   (35, 35, 32)
 *   conv32_1..3  residual                       (35, 35, 32)
 *   conv64_down  residualDown                   (17, 17, 64)
 *   conv64_1..3  residual                       (17, 17, 64)
 *   conv128_down residualDown                   (8, 8, 128)
 *   conv128_1..2 residual                       (8, 8, 128)
 *   conv256_down residualDown (conv 8->3, pool 8->4: zero-pad the conv to 4x4)   (4, 4, 256)
 *   conv256_1..2 residual                       (4, 4, 256)
 *   conv256_down_out residualDown (conv 4->1, pool 4->2)                          (2, 2, 256)
 *   mean over h, w                              (1, 1, 256)
 *   fc           256 -> 128, no bias            descriptor
 *
 * convLayer = conv + bias, then x*scale + shift per channel (an affine batch-norm), then
 * optionally relu. residual(x) = relu(convNoRelu(conv(x)) + x). residualDown(x) =
 * relu(avgpool2x2(x) zero-extended in channels + convNoRelu(convDown(x)) zero-extended at the
 * bottom/right).
 */
#include "face/face_int.h"

#include "core/core.h"

#include <stdio.h>

/* Fills c with layer `name`'s conv + scale tensors (3x3 unless k given); -1 if missing. */
static int conv_params(const nn_weights *w, const char *name, int k, int cin, int cout, nn_conv *c)
{
    char n[4][96];
    snprintf(n[0], sizeof n[0], "%s/conv/filters", name);
    snprintf(n[1], sizeof n[1], "%s/conv/bias", name);
    snprintf(n[2], sizeof n[2], "%s/scale/weights", name);
    snprintf(n[3], sizeof n[3], "%s/scale/biases", name);
    const float *f, *b, *sw, *sb;
    if (nn_weights_get_f32(w, n[0], 4, (int[]){k, k, cin, cout}, &f) ||
        nn_weights_get_f32(w, n[1], 1, (int[]){cout}, &b) ||
        nn_weights_get_f32(w, n[2], 1, (int[]){cout}, &sw) ||
        nn_weights_get_f32(w, n[3], 1, (int[]){cout}, &sb))
        return -1;
    *c = (nn_conv){.kh = k,
                   .kw = k,
                   .cout = cout,
                   .stride = 1,
                   .pad = {.mode = NN_PAD_SAME},
                   .weights = f,
                   .bias = b,
                   .scale = sw,
                   .shift = sb,
                   .sum = -1,
                   .act = {NN_ACT_RELU, 0}};
    return 0;
}

static int residual(nn_graph *g, const nn_weights *w, int x, const char *layer, int c)
{
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "%s/conv1", layer);
    snprintf(n2, sizeof n2, "%s/conv2", layer);
    nn_conv c1, c2;
    if (conv_params(w, n1, 3, c, c, &c1) || conv_params(w, n2, 3, c, c, &c2))
        return -1;
    int y = nn_graph_conv(g, x, &c1); /* conv: 3x3 SAME + relu */
    c2.sum = x;                       /* convNoRelu, + x, then relu */
    return nn_graph_conv(g, y, &c2);
}

static int residual_down(nn_graph *g, const nn_weights *w, int x, const char *layer, int cin,
                         int cout)
{
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "%s/conv1", layer);
    snprintf(n2, sizeof n2, "%s/conv2", layer);
    nn_conv c1, c2;
    if (conv_params(w, n1, 3, cin, cout, &c1) || conv_params(w, n2, 3, cout, cout, &c2))
        return -1;
    c1.stride = 2; /* convDown: 3x3 s2 VALID + relu */
    c1.pad.mode = NN_PAD_VALID;
    c2.act.kind = NN_ACT_NONE; /* convNoRelu */
    int y = nn_graph_conv(g, nn_graph_conv(g, x, &c1), &c2);
    int p = nn_graph_pool(g, x, NN_POOL_AVG, 2, 2, (nn_pad){.mode = NN_PAD_VALID});
    return nn_graph_add_padded(g, p, y, (nn_act){NN_ACT_RELU, 0});
}

int face__recog_build(const nn_weights *w, nn_graph **out)
{
    const float *fc;
    nn_conv c0;
    int rc;
    if ((rc = nn_weights_get_f32(w, "fc", 2, (int[]){256, 128}, &fc)))
        return rc;
    if (conv_params(w, "conv32_down", 7, 3, 32, &c0))
        return VG_EFORMAT;
    nn_graph *g;
    if ((rc = nn_graph_new("recognition", &g)))
        return rc;
    c0.stride = 2;
    c0.pad.mode = NN_PAD_VALID;
    int x = nn_graph_input(g, FACE_RECOG_SIZE, FACE_RECOG_SIZE, 3);             /* (150,150,3) */
    x = nn_graph_conv(g, x, &c0);                                               /* (72,72,32) */
    x = nn_graph_pool(g, x, NN_POOL_MAX, 3, 2, (nn_pad){.mode = NN_PAD_VALID}); /* (35,35,32) */
    static const struct {
        const char *name;
        int down, cin, cout;
    } layers[] = {
        {"conv32_1", 0, 32, 32},           {"conv32_2", 0, 32, 32},
        {"conv32_3", 0, 32, 32},           {"conv64_down", 1, 32, 64}, /* (17,17,64) */
        {"conv64_1", 0, 64, 64},           {"conv64_2", 0, 64, 64},
        {"conv64_3", 0, 64, 64},           {"conv128_down", 1, 64, 128}, /* (8,8,128) */
        {"conv128_1", 0, 128, 128},        {"conv128_2", 0, 128, 128},
        {"conv256_down", 1, 128, 256}, /* (4,4,256) */
        {"conv256_1", 0, 256, 256},        {"conv256_2", 0, 256, 256},
        {"conv256_down_out", 1, 256, 256}, /* (2,2,256) */
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(layers) && x >= 0; i++)
        x = layers[i].down ? residual_down(g, w, x, layers[i].name, layers[i].cin, layers[i].cout)
                           : residual(g, w, x, layers[i].name, layers[i].cin);
    if (x >= 0) {
        x = nn_graph_mean(g, x);              /* (1,1,256) */
        x = nn_graph_fc(g, x, fc, 128, NULL); /* (1,1,128) */
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
