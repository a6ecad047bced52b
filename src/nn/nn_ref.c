/*
 * Reference kernels: one plain loop nest per op, NHWC float32, no tricks. They define what the
 * fast path must compute, so they favour obviousness over speed (the only concession is the
 * loop order, innermost over contiguous output channels, so release builds vectorise them and
 * the full networks stay testable).
 */
#include "nn/nn.h"

#include <float.h>
#include <string.h>

void nn_same_pad(int in, int k, int stride, int *out, int *pad_before, int *pad_after)
{
    int o = (in + stride - 1) / stride;
    int total = (o - 1) * stride + k - in;
    if (total < 0)
        total = 0;
    *out = o;
    *pad_before = total / 2;
    *pad_after = total - total / 2;
}

int nn_conv_out_size(int in, int k, int stride, int pad_before, int pad_after)
{
    int span = in + pad_before + pad_after - k;
    if (span < 0 || stride <= 0)
        return 0;
    return span / stride + 1;
}

/* Index of element (n, y, x, c) in an NHWC tensor of shape s. */
static inline size_t at(nn_shape s, int n, int y, int x, int c)
{
    return (((size_t)n * s.h + y) * s.w + x) * s.c + c;
}

void nn_ref_conv2d(const float *in, nn_shape is, const float *w, int kh, int kw, int cout,
                   int stride, int pt, int pl, float *out, nn_shape os)
{
    for (int n = 0; n < os.n; n++)
        for (int oy = 0; oy < os.h; oy++)
            for (int ox = 0; ox < os.w; ox++) {
                float *o = &out[at(os, n, oy, ox, 0)];
                for (int co = 0; co < cout; co++)
                    o[co] = 0.0f;
                for (int ky = 0; ky < kh; ky++) {
                    int iy = oy * stride + ky - pt;
                    if (iy < 0 || iy >= is.h)
                        continue;
                    for (int kx = 0; kx < kw; kx++) {
                        int ix = ox * stride + kx - pl;
                        if (ix < 0 || ix >= is.w)
                            continue;
                        const float *x = &in[at(is, n, iy, ix, 0)];
                        const float *wk = &w[((size_t)ky * kw + kx) * is.c * cout];
                        for (int ci = 0; ci < is.c; ci++) {
                            float v = x[ci];
                            const float *wr = &wk[(size_t)ci * cout];
                            for (int co = 0; co < cout; co++)
                                o[co] += v * wr[co];
                        }
                    }
                }
            }
}

void nn_ref_depthwise2d(const float *in, nn_shape is, const float *w, int kh, int kw, int stride,
                        int pt, int pl, float *out, nn_shape os)
{
    int c = is.c;
    for (int n = 0; n < os.n; n++)
        for (int oy = 0; oy < os.h; oy++)
            for (int ox = 0; ox < os.w; ox++) {
                float *o = &out[at(os, n, oy, ox, 0)];
                for (int ch = 0; ch < c; ch++)
                    o[ch] = 0.0f;
                for (int ky = 0; ky < kh; ky++) {
                    int iy = oy * stride + ky - pt;
                    if (iy < 0 || iy >= is.h)
                        continue;
                    for (int kx = 0; kx < kw; kx++) {
                        int ix = ox * stride + kx - pl;
                        if (ix < 0 || ix >= is.w)
                            continue;
                        const float *x = &in[at(is, n, iy, ix, 0)];
                        const float *wk = &w[((size_t)ky * kw + kx) * c];
                        for (int ch = 0; ch < c; ch++)
                            o[ch] += x[ch] * wk[ch];
                    }
                }
            }
}

void nn_ref_bias(float *x, size_t count, int c, const float *b)
{
    for (size_t i = 0; i < count; i++)
        x[i] += b[i % (size_t)c];
}

void nn_ref_scale(float *x, size_t count, int c, const float *scale, const float *shift)
{
    for (size_t i = 0; i < count; i++)
        x[i] = x[i] * scale[i % (size_t)c] + (shift ? shift[i % (size_t)c] : 0.0f);
}

void nn_ref_relu(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void nn_ref_leaky_relu(float *x, size_t count, float alpha)
{
    for (size_t i = 0; i < count; i++)
        x[i] = x[i] >= 0.0f ? x[i] : alpha * x[i];
}

void nn_ref_clip(float *x, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++)
        x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

static void pool(const float *in, nn_shape is, int k, int s, int pt, int pl, float *out,
                 nn_shape os, int is_max)
{
    for (int n = 0; n < os.n; n++)
        for (int oy = 0; oy < os.h; oy++)
            for (int ox = 0; ox < os.w; ox++)
                for (int c = 0; c < os.c; c++) {
                    float acc = is_max ? -FLT_MAX : 0.0f;
                    int cnt = 0;
                    for (int ky = 0; ky < k; ky++) {
                        int iy = oy * s + ky - pt;
                        if (iy < 0 || iy >= is.h)
                            continue;
                        for (int kx = 0; kx < k; kx++) {
                            int ix = ox * s + kx - pl;
                            if (ix < 0 || ix >= is.w)
                                continue;
                            float v = in[at(is, n, iy, ix, c)];
                            if (is_max)
                                acc = v > acc ? v : acc;
                            else
                                acc += v;
                            cnt++;
                        }
                    }
                    out[at(os, n, oy, ox, c)] = is_max ? acc : (cnt ? acc / (float)cnt : 0.0f);
                }
}

void nn_ref_maxpool(const float *in, nn_shape is, int k, int s, int pt, int pl, float *out,
                    nn_shape os)
{
    pool(in, is, k, s, pt, pl, out, os, 1);
}

void nn_ref_avgpool(const float *in, nn_shape is, int k, int s, int pt, int pl, float *out,
                    nn_shape os)
{
    pool(in, is, k, s, pt, pl, out, os, 0);
}

void nn_ref_add(const float *a, const float *b, float *out, size_t count)
{
    for (size_t i = 0; i < count; i++)
        out[i] = a[i] + b[i];
}

void nn_ref_pad(const float *in, nn_shape is, int pt, int pl, float *out, nn_shape os)
{
    memset(out, 0, nn_shape_count(os) * sizeof(float));
    for (int n = 0; n < is.n; n++)
        for (int y = 0; y < is.h; y++)
            for (int x = 0; x < is.w; x++)
                memcpy(&out[at(os, n, y + pt, x + pl, 0)], &in[at(is, n, y, x, 0)],
                       (size_t)is.c * sizeof(float));
}

void nn_ref_mean(const float *in, nn_shape is, float *out)
{
    for (int n = 0; n < is.n; n++)
        for (int c = 0; c < is.c; c++) {
            float acc = 0.0f;
            for (int y = 0; y < is.h; y++)
                for (int x = 0; x < is.w; x++)
                    acc += in[at(is, n, y, x, c)];
            out[(size_t)n * is.c + c] = acc / (float)(is.h * is.w);
        }
}

void nn_ref_fc(const float *in, int n, int cin, const float *w, const float *b, int cout,
               float *out)
{
    for (int i = 0; i < n; i++) {
        float *o = &out[(size_t)i * cout];
        for (int j = 0; j < cout; j++)
            o[j] = b ? b[j] : 0.0f;
        for (int k = 0; k < cin; k++) {
            float v = in[(size_t)i * cin + k];
            for (int j = 0; j < cout; j++)
                o[j] += v * w[(size_t)k * cout + j];
        }
    }
}
