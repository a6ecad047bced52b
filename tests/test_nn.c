/* nn: reference kernels against hand-computed values, the tfjs weight loader (golden checksums
 * from face-api's own decoder, refusal of missing/truncated/altered files), graphs and plans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "nn/nn.h"
#include "nn/nn_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLOSE(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

/* ---- kernels ---- */

static void test_same_pad(void **state)
{
    (void)state;
    int o, b, a;
    nn_same_pad(207, 2, 2, &o, &b, &a); /* tiny detector maxpool */
    assert_int_equal(o, 104);
    assert_int_equal(b, 0);
    assert_int_equal(a, 1);
    nn_same_pad(13, 2, 1, &o, &b, &a); /* the stride-1 pool after conv5: pad at the end */
    assert_int_equal(o, 13);
    assert_int_equal(b, 0);
    assert_int_equal(a, 1);
    nn_same_pad(112, 3, 2, &o, &b, &a); /* landmark dense blocks */
    assert_int_equal(o, 56);
    assert_int_equal(b, 0);
    assert_int_equal(a, 1);
    nn_same_pad(7, 3, 1, &o, &b, &a);
    assert_int_equal(o, 7);
    assert_int_equal(b, 1);
    assert_int_equal(a, 1);
    assert_int_equal(nn_conv_out_size(150, 7, 2, 0, 0), 72); /* recognition conv32_down */
    assert_int_equal(nn_conv_out_size(72, 3, 2, 0, 0), 35);
    assert_int_equal(nn_conv_out_size(2, 3, 1, 0, 0), 0);
}

static void test_conv2d_hand(void **state)
{
    (void)state;
    /* 1x3x3x1 input 1..9, 2x2 kernel [[1,0],[0,-1]] (HWIO, cout 1), stride 1 VALID:
     * out[y][x] = in[y][x] - in[y+1][x+1] = -4 everywhere. */
    float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float w[4] = {1, 0, 0, -1};
    float out[4];
    nn_ref_conv2d(in, (nn_shape){1, 3, 3, 1}, w, 2, 2, 1, 1, 0, 0, out, (nn_shape){1, 2, 2, 1});
    for (int i = 0; i < 4; i++)
        CLOSE(out[i], -4, 0);
    /* SAME 3x3 all-ones kernel, stride 2: out (2x2), pads (1,1) each side for in=3:
     * (0,0): 1+2+4+5 = 12; (0,1): 2+3+5+6 = 16; (1,0): 4+5+7+8 = 24; (1,1): 5+6+8+9 = 28. */
    float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int o, b, a;
    nn_same_pad(3, 3, 2, &o, &b, &a);
    assert_int_equal(o, 2);
    nn_ref_conv2d(in, (nn_shape){1, 3, 3, 1}, ones, 3, 3, 1, 2, b, b, out, (nn_shape){1, 2, 2, 1});
    CLOSE(out[0], 12, 0);
    CLOSE(out[1], 16, 0);
    CLOSE(out[2], 24, 0);
    CLOSE(out[3], 28, 0);
    /* Two input and two output channels, 1x1: out = [x0*1 + x1*3, x0*2 + x1*4]. */
    float in2[2] = {10, 100};
    float w2[4] = {1, 2, 3, 4};
    float out2[2];
    nn_ref_conv2d(in2, (nn_shape){1, 1, 1, 2}, w2, 1, 1, 2, 1, 0, 0, out2, (nn_shape){1, 1, 1, 2});
    CLOSE(out2[0], 310, 0);
    CLOSE(out2[1], 420, 0);
}

static void test_depthwise_hand(void **state)
{
    (void)state;
    /* 2 channels, 2x2 input, 2x2 kernel per channel VALID -> 1x1x2. */
    float in[8] = {1, 10, 2, 20, 3, 30, 4, 40};
    float w[8] = {1, 0, 1, 0, 1, 0, 1, 1}; /* ch0: all ones; ch1: only the last tap */
    float out[2];
    nn_ref_depthwise2d(in, (nn_shape){1, 2, 2, 2}, w, 2, 2, 1, 0, 0, out, (nn_shape){1, 1, 1, 2});
    CLOSE(out[0], 10, 0);
    CLOSE(out[1], 40, 0);
}

static void test_pointwise_ops(void **state)
{
    (void)state;
    float x[4] = {-2, -1, 1, 2};
    nn_ref_bias(x, 4, 2, (float[]){1, -1}); /* -1 -2 2 1 */
    CLOSE(x[0], -1, 0);
    CLOSE(x[1], -2, 0);
    nn_ref_scale(x, 4, 2, (float[]){2, 3}, (float[]){0.5f, 0}); /* -1.5 -6 4.5 3 */
    CLOSE(x[0], -1.5, 0);
    CLOSE(x[1], -6, 0);
    CLOSE(x[2], 4.5, 0);
    float l[3] = {-10, 0, 5};
    nn_ref_leaky_relu(l, 3, 0.1f);
    CLOSE(l[0], -1, 1e-6);
    CLOSE(l[2], 5, 0);
    float r[2] = {-3, 3};
    nn_ref_relu(r, 2);
    CLOSE(r[0], 0, 0);
    float c[3] = {-1, 3, 9};
    nn_ref_clip(c, 3, 0, 6);
    CLOSE(c[0], 0, 0);
    CLOSE(c[1], 3, 0);
    CLOSE(c[2], 6, 0);
    float s[2];
    nn_ref_add((float[]){1, 2}, (float[]){10, 20}, s, 2);
    CLOSE(s[1], 22, 0);
}

static void test_pools(void **state)
{
    (void)state;
    /* 3x3 single channel, maxpool 2x2 s2 SAME -> 2x2 with pad at the end; padded cells are
     * ignored, so negative values survive. */
    float in[9] = {-1, -2, -3, -4, -5, -6, -7, -8, -9};
    float out[4];
    nn_ref_maxpool(in, (nn_shape){1, 3, 3, 1}, 2, 2, 0, 0, out, (nn_shape){1, 2, 2, 1});
    CLOSE(out[0], -1, 0);
    CLOSE(out[1], -3, 0);
    CLOSE(out[2], -7, 0);
    CLOSE(out[3], -9, 0);
    float a[4] = {1, 2, 3, 6};
    float avg;
    nn_ref_avgpool(a, (nn_shape){1, 2, 2, 1}, 2, 2, 0, 0, &avg, (nn_shape){1, 1, 1, 1});
    CLOSE(avg, 3, 0);
    /* avg pool with padding counts only real cells: 3x3 k3 s1 pad 1, corner = mean(1,2,4,5) */
    float b[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, ob[9];
    nn_ref_avgpool(b, (nn_shape){1, 3, 3, 1}, 3, 1, 1, 1, ob, (nn_shape){1, 3, 3, 1});
    CLOSE(ob[0], 3, 1e-6);
    CLOSE(ob[4], 5, 1e-6);
}

static void test_pad_mean_fc(void **state)
{
    (void)state;
    /* 1x1x2 -> 2x2x4 zero padded: value at (0,0) channels 0..1, zeros elsewhere. */
    float in[2] = {7, 8}, out[16];
    nn_ref_pad(in, (nn_shape){1, 1, 1, 2}, 0, 0, out, (nn_shape){1, 2, 2, 4});
    CLOSE(out[0], 7, 0);
    CLOSE(out[1], 8, 0);
    for (int i = 2; i < 16; i++)
        CLOSE(out[i], 0, 0);
    float m[8] = {1, 10, 2, 20, 3, 30, 4, 40}, mo[2];
    nn_ref_mean(m, (nn_shape){1, 2, 2, 2}, mo);
    CLOSE(mo[0], 2.5, 1e-6);
    CLOSE(mo[1], 25, 1e-6);
    /* fc: [1,2] x [[1,2,3],[4,5,6]] + [0.5,0,0] = [9.5, 12, 15] */
    float fo[3];
    nn_ref_fc((float[]){1, 2}, 1, 2, (float[]){1, 2, 3, 4, 5, 6}, (float[]){0.5f, 0, 0}, 3, fo);
    CLOSE(fo[0], 9.5, 0);
    CLOSE(fo[1], 12, 0);
    CLOSE(fo[2], 15, 0);
}

/* ---- weights ---- */

static const char *k_manifest =
    "[{\"paths\":[\"a.bin\"],\"weights\":["
    "{\"name\":\"q\",\"shape\":[2,2],\"dtype\":\"float32\","
    "\"quantization\":{\"dtype\":\"uint8\",\"scale\":0.5,\"min\":-1}},"
    "{\"name\":\"f\",\"shape\":[1],\"dtype\":\"float32\"},"
    "{\"name\":\"i\",\"shape\":[2],\"dtype\":\"int32\","
    "\"quantization\":{\"dtype\":\"uint8\",\"scale\":0.5,\"min\":-1}}]}]";

static void test_weights_parse(void **state)
{
    (void)state;
    uint8_t bin[4 + 4 + 2];
    bin[0] = 0, bin[1] = 1, bin[2] = 2, bin[3] = 255; /* -1, -0.5, 0, 126.5 */
    float one = 1.25f;
    memcpy(bin + 4, &one, 4);
    bin[8] = 3, bin[9] = 4; /* round(0.5) = 1 (half up, as Math.round), round(1) = 1 */
    nn_weights *w = NULL;
    assert_int_equal(nn_weights_parse(k_manifest, strlen(k_manifest), bin, sizeof bin, &w), 0);
    assert_int_equal(nn_weights_count(w), 3);
    const float *q;
    assert_int_equal(nn_weights_get_f32(w, "q", 2, (int[]){2, 2}, &q), 0);
    CLOSE(q[0], -1, 0);
    CLOSE(q[1], -0.5, 0);
    CLOSE(q[2], 0, 0);
    CLOSE(q[3], 126.5, 0);
    assert_int_equal(nn_weights_get_f32(w, "q", 2, (int[]){4, 1}, &q), VG_EFORMAT);
    assert_int_equal(nn_weights_get_f32(w, "nope", 0, NULL, &q), VG_ENOTFOUND);
    const nn_param *f = nn_weights_find(w, "f");
    CLOSE(f->f[0], 1.25, 0);
    const nn_param *i = nn_weights_find(w, "i");
    assert_int_equal(i->dtype, NN_DT_I32);
    assert_int_equal(i->i[0], 1);
    assert_int_equal(i->i[1], 1);
    nn_weights_free(w);
    /* shards shorter or longer than the manifest says */
    assert_int_equal(nn_weights_parse(k_manifest, strlen(k_manifest), bin, 9, &w), VG_ECORRUPT);
    uint8_t big[11] = {0};
    assert_int_equal(nn_weights_parse(k_manifest, strlen(k_manifest), big, 11, &w), VG_ECORRUPT);
    /* not JSON, wrong structure, duplicate, bad dtype */
    assert_int_equal(nn_weights_parse("[{", 2, bin, 0, &w), VG_EFORMAT);
    const char *m2 = "{\"paths\":[]}";
    assert_int_equal(nn_weights_parse(m2, strlen(m2), bin, 0, &w), VG_EFORMAT);
    const char *m3 = "[{\"paths\":[\"a\"],\"weights\":[{\"name\":\"x\",\"shape\":[1],\"dtype\":"
                     "\"float32\"},{\"name\":\"x\",\"shape\":[1],\"dtype\":\"float32\"}]}]";
    assert_int_equal(nn_weights_parse(m3, strlen(m3), big, 8, &w), VG_EFORMAT);
    const char *m4 = "[{\"paths\":[\"a\"],\"weights\":[{\"name\":\"x\",\"shape\":[1],\"dtype\":"
                     "\"complex64\"}]}]";
    assert_int_equal(nn_weights_parse(m4, strlen(m4), big, 8, &w), VG_EFORMAT);
    const char *m5 = "[{\"paths\":[\"a\"],\"weights\":[{\"name\":\"x\",\"shape\":[100000,100000,"
                     "100000],\"dtype\":\"float32\"}]}]";
    assert_int_equal(nn_weights_parse(m5, strlen(m5), big, 8, &w), VG_ETOOBIG);
}

static void test_weights_parse_alloc_failures(void **state)
{
    (void)state;
    uint8_t bin[10] = {0};
    for (long k = 1; k < 64; k++) {
        nn_weights *w = NULL;
        vg_alloc_fail_after(k);
        int rc = nn_weights_parse(k_manifest, strlen(k_manifest), bin, sizeof bin, &w);
        vg_alloc_fail_after(0);
        if (rc == 0) {
            nn_weights_free(w);
            return;
        }
        assert_int_equal(rc, VG_ENOMEM);
    }
    fail_msg("parse never succeeded");
}

/* Golden values from face-api's own decoder (weights_summary.json in the shared oracle). */
static double sum_of(const nn_param *p)
{
    double s = 0;
    for (size_t k = 0; k < p->count; k++)
        s += p->dtype == NN_DT_F32 ? p->f[k] : p->i[k];
    return s;
}

static void test_weights_open_real(void **state)
{
    (void)state;
    nn_weights *w = NULL;
    assert_int_equal(nn_weights_open(VG_MODELS_DIR, "tiny_face_detector_model", &w), 0);
    assert_int_equal(nn_weights_count(w), 19);
    const nn_param *p = nn_weights_find(w, "conv0/filters");
    assert_non_null(p);
    CLOSE(sum_of(p), -5.152029775083065, 1e-4);
    CLOSE(p->f[0], 0.2882254123687744, 0);
    CLOSE(p->f[1], 0.0090070441365242, 0);
    p = nn_weights_find(w, "conv8/bias");
    CLOSE(sum_of(p), -1.626252087764442, 1e-5);
    CLOSE(p->f[3], -0.20866833627223969, 0);
    nn_weights_free(w);

    assert_int_equal(nn_weights_open(VG_MODELS_DIR, "face_recognition_model", &w), 0);
    assert_int_equal(nn_weights_count(w), 117);
    p = nn_weights_find(w, "conv64_down/conv1/conv/filters"); /* raw float32 */
    CLOSE(sum_of(p), -5.728654723729846, 1e-4);
    CLOSE(p->f[0], -0.004492271691560745, 0);
    p = nn_weights_find(w, "fc");
    CLOSE(sum_of(p), -0.09192569681908935, 1e-4);
    CLOSE(p->f[3], -0.000357687909854576, 0);
    nn_weights_free(w);

    assert_int_equal(nn_weights_open(VG_MODELS_DIR, "ssd_mobilenetv1_model", &w), 0);
    assert_int_equal(nn_weights_count(w), 151);
    p = nn_weights_find(w, "Postprocessor/Slice/size"); /* int32, uint8-quantised */
    assert_int_equal(p->dtype, NN_DT_I32);
    assert_int_equal(p->i[0], -1);
    p = nn_weights_find(w, "Output/extra_dim");
    CLOSE(sum_of(p), 10235.999983757734, 1e-2);
    nn_weights_free(w);
}

/* A scratch copy of the models directory that tests may damage. */
static void copy_file(const char *from, const char *to, size_t truncate_to, int flip_byte)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(from, (size_t)64 << 20, &buf, &len), 0);
    if (truncate_to && truncate_to < len)
        len = truncate_to;
    if (flip_byte >= 0)
        buf[flip_byte] ^= 0x01;
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    vg_free(buf);
}

static void make_models(const char *dir, size_t trunc_bin, int flip_bin, int flip_manifest,
                        int drop_bin)
{
    char a[512], b[512];
    vg_mkdir_p(dir);
    snprintf(a, sizeof a, "%s/SHA256SUMS", VG_MODELS_DIR);
    snprintf(b, sizeof b, "%s/SHA256SUMS", dir);
    copy_file(a, b, 0, -1);
    snprintf(a, sizeof a, "%s/tiny_face_detector_model-weights_manifest.json", VG_MODELS_DIR);
    snprintf(b, sizeof b, "%s/tiny_face_detector_model-weights_manifest.json", dir);
    copy_file(a, b, 0, flip_manifest);
    snprintf(a, sizeof a, "%s/tiny_face_detector_model.bin", VG_MODELS_DIR);
    snprintf(b, sizeof b, "%s/tiny_face_detector_model.bin", dir);
    unlink(b);
    if (!drop_bin)
        copy_file(a, b, trunc_bin, flip_bin);
}

static void test_weights_refuse_damaged(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/test_nn_models_%d", VG_BINARY_DIR, (int)getpid());
    nn_weights *w = NULL;

    make_models(dir, 0, -1, -1, 0);
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), 0);
    nn_weights_free(w);

    make_models(dir, 1000, -1, -1, 0); /* truncated shard */
    vg_err_clear();
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), VG_ECHECKSUM);
    assert_non_null(strstr(vg_err_msg(), "tiny_face_detector_model.bin"));

    make_models(dir, 0, 5000, -1, 0); /* one bit flipped */
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), VG_ECHECKSUM);
    assert_non_null(strstr(vg_err_msg(), "tiny_face_detector_model.bin"));

    make_models(dir, 0, -1, 10, 0); /* altered manifest */
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), VG_ECHECKSUM);
    assert_non_null(strstr(vg_err_msg(), "weights_manifest.json"));

    make_models(dir, 0, -1, -1, 1); /* missing shard */
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), VG_ENOTFOUND);
    assert_non_null(strstr(vg_err_msg(), "tiny_face_detector_model.bin"));

    /* a model the pinned list does not name */
    assert_int_equal(nn_weights_open(dir, "age_gender_model", &w), VG_ENOTFOUND);
    assert_non_null(strstr(vg_err_msg(), "age_gender_model"));

    char p[512];
    snprintf(p, sizeof p, "%s/SHA256SUMS", dir); /* no pinned sums at all */
    unlink(p);
    assert_int_equal(nn_weights_open(dir, "tiny_face_detector_model", &w), VG_ENOTFOUND);
    assert_non_null(strstr(vg_err_msg(), "SHA256SUMS"));
    snprintf(p, sizeof p, "%s/tiny_face_detector_model-weights_manifest.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/tiny_face_detector_model.bin", dir);
    unlink(p);
    rmdir(dir);
}

static void verify_cb(void *ctx, const char *file, int status)
{
    (void)file;
    int *n = ctx;
    if (status == 0)
        (*n)++;
}

static void test_models_verify(void **state)
{
    (void)state;
    int ok = 0;
    assert_int_equal(nn_models_verify(VG_MODELS_DIR, verify_cb, &ok), 0);
    assert_int_equal(ok, 8);
}

/* ---- graphs and plans ---- */

/* conv(2x2 VALID, bias, scale) -> +input-sized sum? A small graph exercising every op kind,
 * checked against the kernels called by hand. */
static void test_graph_ref_plan(void **state)
{
    (void)state;
    nn_graph *g;
    assert_int_equal(nn_graph_new("t", &g), 0);
    float w[2 * 2 * 1 * 2] = {1, -1, 0, 1, 0, 1, 1, 0};
    float b[2] = {0.5f, -0.5f}, sc[2] = {2, 1}, sh[2] = {0, 1};
    int x = nn_graph_input(g, 3, 3, 1);
    nn_conv c = {.kh = 2,
                 .kw = 2,
                 .cout = 2,
                 .stride = 1,
                 .pad = {.mode = NN_PAD_VALID},
                 .weights = w,
                 .bias = b,
                 .scale = sc,
                 .shift = sh,
                 .sum = -1,
                 .act = {NN_ACT_RELU, 0}};
    int y = nn_graph_conv(g, x, &c);                                               /* 2x2x2 */
    int p = nn_graph_pool(g, y, NN_POOL_MAX, 2, 2, (nn_pad){.mode = NN_PAD_SAME}); /* 1x1x2 */
    int m = nn_graph_mean(g, y);                                                   /* 1x1x2 */
    int s = nn_graph_add(g, p, m, (nn_act){NN_ACT_NONE, 0});
    int z = nn_graph_add_padded(g, s, x, (nn_act){NN_ACT_NONE, 0}); /* 3x3x2 */
    float fw[2 * 3] = {1, 0, 1, 0, 1, 1};
    int f = nn_graph_fc(g, s, fw, 3, NULL);
    nn_graph_output(g, z);
    nn_graph_output(g, f);
    assert_int_equal(nn_graph_finish(g), 0);
    nn_shape zs = nn_graph_output_shape(g, 0);
    assert_int_equal(zs.h, 3);
    assert_int_equal(zs.c, 2);
    assert_int_equal(nn_graph_macs(g), 2 * 2 * 2 * 4 + 6);

    float in[2 * 9];
    for (int i = 0; i < 18; i++)
        in[i] = (float)(i % 9) - 3.0f + (i >= 9 ? 0.5f : 0.0f);
    nn_plan *plan;
    nn_plan_opts o = {.backend = NN_BACKEND_REF, .precision = NN_PREC_F32, .batch = 2};
    assert_int_equal(nn_plan_new(g, &o, &plan), 0);
    float zo[2 * 18], fo[2 * 3];
    float *outs[2] = {zo, fo};
    assert_int_equal(nn_plan_run(plan, in, 2, outs), 0);
    for (int n = 0; n < 2; n++) {
        const float *xi = in + 9 * n;
        float yv[8];
        nn_ref_conv2d(xi, (nn_shape){1, 3, 3, 1}, w, 2, 2, 2, 1, 0, 0, yv, (nn_shape){1, 2, 2, 2});
        nn_ref_bias(yv, 8, 2, b);
        nn_ref_scale(yv, 8, 2, sc, sh);
        nn_ref_relu(yv, 8);
        float pv[2], mv[2], sv[2];
        nn_ref_maxpool(yv, (nn_shape){1, 2, 2, 2}, 2, 2, 0, 0, pv, (nn_shape){1, 1, 1, 2});
        nn_ref_mean(yv, (nn_shape){1, 2, 2, 2}, mv);
        nn_ref_add(pv, mv, sv, 2);
        /* z: s at (0,0) plus x in channel 0 everywhere */
        for (int k = 0; k < 9; k++) {
            float e0 = xi[k] + (k == 0 ? sv[0] : 0), e1 = k == 0 ? sv[1] : 0;
            CLOSE(zo[18 * n + 2 * k], e0, 1e-5);
            CLOSE(zo[18 * n + 2 * k + 1], e1, 1e-5);
        }
        CLOSE(fo[3 * n + 0], sv[0], 1e-5);
        CLOSE(fo[3 * n + 1], sv[1], 1e-5);
        CLOSE(fo[3 * n + 2], sv[0] + sv[1], 1e-5);
    }
    assert_int_equal(nn_plan_run(plan, in, 3, outs), VG_EINVAL); /* over the plan's batch */
    nn_plan_free(plan);
    nn_graph_free(g);
}

static void test_graph_sticky_error(void **state)
{
    (void)state;
    nn_graph *g;
    assert_int_equal(nn_graph_new("bad", &g), 0);
    int x = nn_graph_input(g, 4, 4, 3);
    float w[27 * 2];
    nn_conv c = {.kh = 3,
                 .kw = 3,
                 .cout = 2,
                 .stride = 1,
                 .pad = {.mode = NN_PAD_VALID},
                 .weights = w,
                 .sum = 7}; /* unknown sum tensor */
    assert_int_equal(nn_graph_conv(g, x, &c), -1);
    assert_int_equal(nn_graph_mean(g, x), -1); /* sticky */
    assert_int_equal(nn_graph_finish(g), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "sum tensor"));
    nn_graph_free(g);
}

static void test_calib_roundtrip(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/test_nn_calib_%d.txt", VG_BINARY_DIR, (int)getpid());
    float v[3] = {1.5f, 0.25f, 100};
    unsigned char keep[3] = {1, 0, 1};
    nn_calib c = {3, v, keep};
    assert_int_equal(nn_calib_save(path, &c, "test\nsecond line"), 0);
    nn_calib r;
    assert_int_equal(nn_calib_load(path, 3, &r), 0);
    CLOSE(r.amax[0], 1.5, 0);
    CLOSE(r.amax[2], 100, 0);
    assert_non_null(r.f32_ops); /* the mixed-precision choice survives the round trip */
    assert_memory_equal(r.f32_ops, keep, 3);
    nn_calib_deinit(&r);
    c.f32_ops = NULL; /* none kept: none read back */
    assert_int_equal(nn_calib_save(path, &c, NULL), 0);
    assert_int_equal(nn_calib_load(path, 3, &r), 0);
    assert_null(r.f32_ops);
    nn_calib_deinit(&r);
    assert_int_equal(nn_calib_load(path, 4, &r), VG_EFORMAT); /* stale for another graph */
    unlink(path);
    assert_int_equal(nn_calib_load(path, 3, &r), VG_ENOTFOUND);
}

static void test_precision_names(void **state)
{
    (void)state;
    nn_precision p;
    assert_int_equal(nn_precision_parse("int8", &p), 0);
    assert_int_equal(p, NN_PREC_INT8);
    assert_string_equal(nn_precision_name(NN_PREC_BF16), "bf16");
    assert_int_equal(nn_precision_parse("fp64", &p), VG_EINVAL);
    assert_int_equal(nn_precision_check(NN_PREC_F32), 0);
}

/* ---- the oneDNN backend's own max pool kernel (nn_pool.c) ---- */

static float frand(uint32_t *st);

static float bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every element type, both tiers (portable and AVX-512BW where the CPU has it), odd channel
 * counts around the 64-byte vector, windows clipped by SAME padding at the end, VALID and
 * explicit padding at the start, overlapping windows, batch 2: the same values as
 * nn_ref_maxpool (max is exact; only a tie of -0 and +0 may pick either). */
static void test_maxpool_kernel(void **state)
{
    (void)state;
    static const int chans[] = {1, 3, 16, 33, 64, 70};
    static const struct {
        int k, s, pt, pl, pb, pr;
    } wins[] = {{2, 2, 0, 0, 1, 1},
                {2, 1, 0, 0, 1, 1},
                {3, 2, 0, 0, 0, 0},
                {3, 2, 1, 1, 1, 1},
                {2, 2, 0, 0, 0, 0}};
    uint32_t seed = 5;
    int tiers = nn__maxpool_avx512_ok() ? 2 : 1;
    for (int el = NN_EL_F32; el <= NN_EL_U8; el++)
        for (size_t ci = 0; ci < VG_ARRAY_LEN(chans); ci++)
            for (size_t wi = 0; wi < VG_ARRAY_LEN(wins); wi++) {
                nn_shape is = {2, 7, 9, chans[ci]};
                int k = wins[wi].k, st = wins[wi].s;
                nn_shape os = {2, nn_conv_out_size(is.h, k, st, wins[wi].pt, wins[wi].pb),
                               nn_conv_out_size(is.w, k, st, wins[wi].pl, wins[wi].pr), is.c};
                size_t ni = nn_shape_count(is), no = nn_shape_count(os);
                size_t es = (size_t)nn__elem_size((nn_elem)el);
                uint8_t *in = malloc(ni * es), *out = malloc(no * es);
                uint8_t *tmp = malloc((size_t)is.w * is.c * es);
                float *fin = malloc(ni * sizeof(float)), *want = malloc(no * sizeof(float));
                for (size_t i = 0; i < ni; i++) {
                    float r = frand(&seed);
                    switch ((nn_elem)el) {
                    case NN_EL_F32:
                        memcpy(in + 4 * i, &r, 4);
                        fin[i] = r;
                        break;
                    case NN_EL_BF16: { /* any sign, zeros of both signs included */
                        uint16_t b = (uint16_t)(seed >> 9);
                        if (i % 17 == 0)
                            b = (uint16_t)(i % 2 ? 0x8000 : 0);
                        b &= 0xFF7F; /* keep exponents finite */
                        memcpy(in + 2 * i, &b, 2);
                        fin[i] = bf16_to_f32(b);
                        break;
                    }
                    case NN_EL_S8:
                        ((int8_t *)in)[i] = (int8_t)(seed >> 17);
                        fin[i] = ((int8_t *)in)[i];
                        break;
                    case NN_EL_U8:
                        in[i] = (uint8_t)(seed >> 17);
                        fin[i] = in[i];
                        break;
                    }
                }
                nn_ref_maxpool(fin, is, k, st, wins[wi].pt, wins[wi].pl, want, os);
                for (int tier = 0; tier < tiers; tier++) {
                    memset(out, 0x5a, no * es);
                    nn__maxpool_nhwc((nn_elem)el, in, is, k, st, wins[wi].pt, wins[wi].pl, out, os,
                                     tmp, tier);
                    for (size_t i = 0; i < no; i++) {
                        float got = el == NN_EL_F32    ? ((float *)out)[i]
                                    : el == NN_EL_BF16 ? bf16_to_f32(((uint16_t *)out)[i])
                                    : el == NN_EL_S8   ? (float)((int8_t *)out)[i]
                                                       : (float)out[i];
                        if (!(got == want[i]))
                            fail_msg("type %d c %d window %zu tier %d: [%zu] %g != %g", el, is.c,
                                     wi, tier, i, got, want[i]);
                    }
                }
                free(in);
                free(out);
                free(tmp);
                free(fin);
                free(want);
            }
}

/* ---- oneDNN backend against the reference, op by op ---- */

static float frand(uint32_t *st)
{
    *st = *st * 1664525u + 1013904223u;
    return (float)((*st >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *rand_buf(size_t n, uint32_t seed)
{
    float *b = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        b[i] = frand(&seed);
    return b;
}

/* Runs graph g with both backends (batch 3, run with 2 and 3) and compares every output. */
static void compare_backends(nn_graph *g, nn_precision prec, const nn_calib *calib, double tol)
{
    assert_int_equal(nn_graph_finish(g), 0);
    nn_shape is = nn_graph_input_shape(g);
    size_t in_n = nn_shape_count(is) * 3;
    float *in = rand_buf(in_n, 77);
    nn_plan *ref, *fast;
    nn_plan_opts ro = {.backend = NN_BACKEND_REF, .precision = NN_PREC_F32, .batch = 3};
    nn_plan_opts fo = {.backend = NN_BACKEND_DNNL, .precision = prec, .batch = 3, .calib = calib};
    assert_int_equal(nn_plan_new(g, &ro, &ref), 0);
    int rc = nn_plan_new(g, &fo, &fast);
    if (rc)
        fail_msg("%s: %s", nn_graph_name(g), vg_err_msg());
    for (int n = 2; n <= 3; n++) {
        float *ro_[NN_MAX_OUTPUTS], *fo_[NN_MAX_OUTPUTS];
        int no = nn_graph_n_outputs(g);
        for (int k = 0; k < no; k++) {
            size_t c = nn_shape_count(nn_graph_output_shape(g, k)) * 3;
            ro_[k] = calloc(c, sizeof(float));
            fo_[k] = calloc(c, sizeof(float));
        }
        assert_int_equal(nn_plan_run(ref, in, n, ro_), 0);
        assert_int_equal(nn_plan_run(fast, in, n, fo_), 0);
        for (int k = 0; k < no; k++) {
            size_t c = nn_shape_count(nn_graph_output_shape(g, k)) * n;
            double maxd = 0, maxv = 0;
            for (size_t i = 0; i < c; i++) {
                maxd = fmax(maxd, fabs(ro_[k][i] - fo_[k][i]));
                maxv = fmax(maxv, fabs(ro_[k][i]));
            }
            if (maxd > tol * fmax(1.0, maxv))
                fail_msg("%s output %d batch %d: max |diff| %g (max |ref| %g) [%s]",
                         nn_graph_name(g), k, n, maxd, maxv, nn_plan_impl(fast));
            free(ro_[k]);
            free(fo_[k]);
        }
    }
    nn_plan_free(ref);
    nn_plan_free(fast);
    nn_graph_free(g);
    free(in);
}

static void test_dnnl_ops(void **state)
{
    (void)state;
    float *w = rand_buf(5 * 5 * 24 * 40, 1), *b = rand_buf(64, 2), *sc = rand_buf(64, 3),
          *sh = rand_buf(64, 4);
    const nn_act acts[4] = {
        {NN_ACT_NONE, 0}, {NN_ACT_RELU, 0}, {NN_ACT_LEAKY, 0.1f}, {NN_ACT_CLIP, 0.5f}};
    /* conv: kernels, strides, paddings, bias/scale folding, activations */
    static const struct {
        int k, s, cout;
        nn_pad_mode pad;
    } convs[] = {{3, 1, 16, NN_PAD_SAME},  {3, 2, 24, NN_PAD_SAME},  {7, 2, 32, NN_PAD_VALID},
                 {1, 1, 40, NN_PAD_VALID}, {3, 2, 17, NN_PAD_VALID}, {2, 1, 8, NN_PAD_SAME}};
    for (size_t t = 0; t < VG_ARRAY_LEN(convs); t++) {
        nn_graph *g;
        nn_graph_new("conv", &g);
        int x = nn_graph_input(g, 13, 11, 5);
        nn_conv c = {.kh = convs[t].k,
                     .kw = convs[t].k,
                     .cout = convs[t].cout,
                     .stride = convs[t].s,
                     .pad = {.mode = convs[t].pad},
                     .weights = w,
                     .bias = t % 2 ? b : NULL,
                     .scale = t % 3 ? sc : NULL,
                     .shift = t % 3 == 1 ? sh : NULL,
                     .sum = -1,
                     .act = acts[t % 4]};
        nn_graph_output(g, nn_graph_conv(g, x, &c));
        compare_backends(g, NN_PREC_F32, NULL, 1e-5);
    }
    /* depthwise with explicit padding, then pointwise with a residual sum and relu */
    {
        nn_graph *g;
        nn_graph_new("dw+pw+sum", &g);
        int x = nn_graph_input(g, 16, 16, 16);
        nn_conv d = {.kh = 3,
                     .kw = 3,
                     .cout = 16,
                     .stride = 1,
                     .depthwise = 1,
                     .pad = {.mode = NN_PAD_EXPLICIT, .t = 1, .l = 1, .b = 1, .r = 1},
                     .weights = w,
                     .sum = -1};
        int y = nn_graph_conv(g, x, &d);
        nn_conv pw = {.kh = 1,
                      .kw = 1,
                      .cout = 16,
                      .stride = 1,
                      .pad = {.mode = NN_PAD_VALID},
                      .weights = w + 100,
                      .bias = b,
                      .sum = x,
                      .act = acts[1]};
        nn_graph_output(g, nn_graph_conv(g, y, &pw));
        compare_backends(g, NN_PREC_F32, NULL, 1e-5);
    }
    /* pools (SAME with end padding, VALID avg), add, act, add_padded, mean, fc */
    {
        nn_graph *g;
        nn_graph_new("pool+add+act", &g);
        int x = nn_graph_input(g, 15, 15, 16);
        int p1 = nn_graph_pool(g, x, NN_POOL_MAX, 2, 2, (nn_pad){.mode = NN_PAD_SAME});
        int p2 = nn_graph_pool(g, x, NN_POOL_AVG, 2, 2, (nn_pad){.mode = NN_PAD_VALID});
        int p3 = nn_graph_pool(g, p1, NN_POOL_MAX, 2, 1, (nn_pad){.mode = NN_PAD_SAME});
        int a = nn_graph_add(g, p3, p1, acts[2]);
        int r = nn_graph_act(g, a, acts[1]);
        nn_graph_output(g, r);
        nn_graph_output(g, p2);
        compare_backends(g, NN_PREC_F32, NULL, 1e-5);
    }
    {
        nn_graph *g;
        nn_graph_new("add_padded+mean+fc", &g);
        int x = nn_graph_input(g, 8, 8, 16);
        nn_conv c = {.kh = 3,
                     .kw = 3,
                     .cout = 32,
                     .stride = 2,
                     .pad = {.mode = NN_PAD_VALID},
                     .weights = w,
                     .sum = -1};
        int y = nn_graph_conv(g, x, &c);                                                /* 3x3x32 */
        int p = nn_graph_pool(g, x, NN_POOL_AVG, 2, 2, (nn_pad){.mode = NN_PAD_VALID}); /* 4x4x16 */
        int z = nn_graph_add_padded(g, p, y, acts[1]);                                  /* 4x4x32 */
        int m = nn_graph_mean(g, z);
        int f = nn_graph_fc(g, m, w, 24, b);
        nn_graph_output(g, z);
        nn_graph_output(g, f);
        compare_backends(g, NN_PREC_F32, NULL, 1e-5);
    }
    free(w);
    free(b);
    free(sc);
    free(sh);
}

/* Mixed precision (nn_calib.f32_ops): a tiny-detector-like chain (conv, max pool, depthwise,
 * pointwise, output conv) in an int8 or bf16 plan with every op kept in f32 is the f32 result;
 * with the first and last convs kept, the reduced-precision ops in between run and the answer
 * stays within their error. */
static nn_graph *mixed_graph(const float *w, const float *b)
{
    nn_graph *g;
    nn_graph_new("mixed", &g);
    nn_act leaky = {NN_ACT_LEAKY, 0.1f};
    int x = nn_graph_input(g, 18, 18, 3);
    nn_conv c0 = {.kh = 3,
                  .kw = 3,
                  .cout = 16,
                  .stride = 1,
                  .pad = {.mode = NN_PAD_VALID},
                  .weights = w,
                  .bias = b,
                  .sum = -1,
                  .act = leaky};
    x = nn_graph_conv(g, x, &c0);                                              /* 1: 16x16x16 */
    x = nn_graph_pool(g, x, NN_POOL_MAX, 2, 2, (nn_pad){.mode = NN_PAD_SAME}); /* 2: 8x8 */
    nn_conv dw = {.kh = 3,
                  .kw = 3,
                  .cout = 16,
                  .stride = 1,
                  .depthwise = 1,
                  .pad = {.mode = NN_PAD_EXPLICIT, .t = 1, .l = 1, .b = 1, .r = 1},
                  .weights = w + 500,
                  .sum = -1};
    x = nn_graph_conv(g, x, &dw); /* 3 */
    nn_conv pw = {.kh = 1,
                  .kw = 1,
                  .cout = 32,
                  .stride = 1,
                  .pad = {.mode = NN_PAD_VALID},
                  .weights = w + 700,
                  .bias = b,
                  .sum = -1,
                  .act = leaky};
    x = nn_graph_conv(g, x, &pw); /* 4 */
    nn_conv c8 = {.kh = 1,
                  .kw = 1,
                  .cout = 10,
                  .stride = 1,
                  .pad = {.mode = NN_PAD_VALID},
                  .weights = w + 1300,
                  .bias = b,
                  .sum = -1};
    nn_graph_output(g, nn_graph_conv(g, x, &c8)); /* 5 */
    return g;
}

static void test_dnnl_mixed_precision(void **state)
{
    (void)state;
    float *w = rand_buf(2000, 11), *b = rand_buf(64, 12);
    /* ranges from the reference backend over the test input, as `vigil models calibrate` does */
    nn_graph *g = mixed_graph(w, b);
    assert_int_equal(nn_graph_finish(g), 0);
    int nt = nn_graph_n_tensors(g);
    assert_int_equal(nt, 6);
    float amax[6] = {0}, *in = rand_buf(18 * 18 * 3 * 3, 77);
    float *out = calloc(10 * 8 * 8 * 3, sizeof(float));
    nn_plan *ref;
    nn_plan_opts ro = {.backend = NN_BACKEND_REF, .precision = NN_PREC_F32, .batch = 3};
    assert_int_equal(nn_plan_new(g, &ro, &ref), 0);
    assert_int_equal(nn_plan_run_observe(ref, in, 3, &out, amax), 0);
    nn_plan_free(ref);
    nn_graph_free(g);
    free(in);
    free(out);
    unsigned char all[6] = {1, 1, 1, 1, 1, 1}, ends[6] = {0, 1, 0, 0, 0, 1};
    nn_calib c = {6, amax, all};
    if (nn_precision_check(NN_PREC_INT8) == 0) {
        compare_backends(mixed_graph(w, b), NN_PREC_INT8, &c, 1e-5); /* every op f32: exact */
        c.f32_ops = ends;
        compare_backends(mixed_graph(w, b), NN_PREC_INT8, &c, 0.1);
        c.f32_ops = all;
    }
    if (nn_precision_check(NN_PREC_BF16) == 0) {
        compare_backends(mixed_graph(w, b), NN_PREC_BF16, &c, 1e-5);
        c.f32_ops = ends;
        compare_backends(mixed_graph(w, b), NN_PREC_BF16, &c, 0.05);
    }
    free(w);
    free(b);
}

int main(void)
{
    nn_set_threads(1); /* see test_face.c: tests run side by side */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_pad),
        cmocka_unit_test(test_conv2d_hand),
        cmocka_unit_test(test_depthwise_hand),
        cmocka_unit_test(test_pointwise_ops),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_pad_mean_fc),
        cmocka_unit_test(test_weights_parse),
        cmocka_unit_test(test_weights_parse_alloc_failures),
        cmocka_unit_test(test_weights_open_real),
        cmocka_unit_test(test_weights_refuse_damaged),
        cmocka_unit_test(test_models_verify),
        cmocka_unit_test(test_graph_ref_plan),
        cmocka_unit_test(test_graph_sticky_error),
        cmocka_unit_test(test_calib_roundtrip),
        cmocka_unit_test(test_precision_names),
        cmocka_unit_test(test_maxpool_kernel),
        cmocka_unit_test(test_dnnl_ops),
        cmocka_unit_test(test_dnnl_mixed_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
