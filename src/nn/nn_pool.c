/*
 * Max pooling on NHWC buffers of any activation type (f32, bf16, s8, u8), the oneDNN
 * backend's replacement for oneDNN 2.6's pooling primitive on channel-last tensors.
 *
 * Why: oneDNN's nhwc pooling walks one output pixel at a time with a vector of channels, so
 * at the 16-32 channels of the tiny detector's first layers it is bound by per-pixel overhead,
 * not memory: 1.15 ms (int8) and 0.87 ms (f32) for the 414x414x16 -> 207x207 pool, a third of
 * the int8 detector. Here a window's rows are first reduced with long contiguous vector maxima
 * (whole rows of w*c elements), then each output pixel takes the maximum of k adjacent pixels
 * of that row, so the work is a few vector instructions per output pixel.
 *
 * Semantics are TensorFlow's (and nn_ref_maxpool's): padded positions are ignored, a window
 * with no valid position cannot occur for the shapes nn_graph accepts (pad < k). Max is exact
 * in every type, so every tier gives the same values (a tie of -0 and +0 may keep either).
 *
 * Tiers: AVX-512BW (64-byte vectors, masked tails) when vg_cpu_features() has it, else a
 * portable loop. bf16 values are compared as 16-bit integers after an order-preserving
 * transform (negative values get their magnitude bits flipped), the same on both tiers.
 */
#include "nn/nn_int.h"

#include "core/core.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define NN_POOL_X86 1
#endif

int nn__elem_size(nn_elem t)
{
    return t == NN_EL_F32 ? 4 : t == NN_EL_BF16 ? 2 : 1;
}

/* ---- portable tier ---- */

/* bf16 bits -> signed 16-bit key with the same order as the values (NaN aside); the map is
 * its own inverse. */
static inline int16_t bf16_key(uint16_t b)
{
    return (int16_t)(b ^ ((b & 0x8000u) ? 0x7FFFu : 0u));
}

/* dst[i] = max(a[i], b[i]) for n elements (dst may alias a or b). */
static void vmax_c(nn_elem t, void *dst, const void *a, const void *b, size_t n)
{
    switch (t) {
    case NN_EL_F32: {
        float *d = dst;
        const float *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = y[i] > x[i] ? y[i] : x[i];
        break;
    }
    case NN_EL_BF16: {
        uint16_t *d = dst;
        const uint16_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = bf16_key(y[i]) > bf16_key(x[i]) ? y[i] : x[i];
        break;
    }
    case NN_EL_S8: {
        int8_t *d = dst;
        const int8_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = y[i] > x[i] ? y[i] : x[i];
        break;
    }
    case NN_EL_U8: {
        uint8_t *d = dst;
        const uint8_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = y[i] > x[i] ? y[i] : x[i];
        break;
    }
    }
}

/* ---- AVX-512BW tier ---- */

#ifdef NN_POOL_X86
/* The low n bits set (n in 1..64). */
static inline __mmask64 tail_mask(size_t n)
{
    return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
}

__attribute__((target("avx512f,avx512bw"))) static inline __m512i vmax512(nn_elem t, __m512i x,
                                                                          __m512i y)
{
    switch (t) {
    case NN_EL_F32:
        return _mm512_castps_si512(_mm512_max_ps(_mm512_castsi512_ps(x), _mm512_castsi512_ps(y)));
    case NN_EL_BF16: {
        /* key = b ^ (sign ? 0x7FFF : 0): the arithmetic shift spreads the sign bit */
        const __m512i mag = _mm512_set1_epi16(0x7FFF);
        __m512i kx = _mm512_xor_si512(x, _mm512_and_si512(_mm512_srai_epi16(x, 15), mag));
        __m512i ky = _mm512_xor_si512(y, _mm512_and_si512(_mm512_srai_epi16(y, 15), mag));
        __m512i k = _mm512_max_epi16(kx, ky);
        return _mm512_xor_si512(k, _mm512_and_si512(_mm512_srai_epi16(k, 15), mag));
    }
    case NN_EL_S8:
        return _mm512_max_epi8(x, y);
    case NN_EL_U8:
    default:
        return _mm512_max_epu8(x, y);
    }
}

/* The same contract as vmax_c, on bytes: nb = n * element size. */
__attribute__((target("avx512f,avx512bw"))) static void
vmax_512(nn_elem t, void *dst, const void *a, const void *b, size_t nb)
{
    uint8_t *d = dst;
    const uint8_t *x = a, *y = b;
    size_t i = 0;
    for (; i + 64 <= nb; i += 64) {
        __m512i v = vmax512(t, _mm512_loadu_si512(x + i), _mm512_loadu_si512(y + i));
        _mm512_storeu_si512(d + i, v);
    }
    if (i < nb) {
        __mmask64 m = tail_mask(nb - i);
        __m512i v =
            vmax512(t, _mm512_maskz_loadu_epi8(m, x + i), _mm512_maskz_loadu_epi8(m, y + i));
        _mm512_mask_storeu_epi8(d + i, m, v);
    }
}

/* One output row from a row already reduced over the window's rows: out pixel ox is the max
 * of row pixels [x0, x1) (clipped window). pb = bytes per pixel. */
__attribute__((target("avx512f,avx512bw"))) static void hpool_512(nn_elem t, uint8_t *out,
                                                                  const uint8_t *row, int w, int ow,
                                                                  int k, int s, int pl, size_t pb)
{
    if (pb <= 64) {
        __mmask64 m = tail_mask(pb);
        for (int ox = 0; ox < ow; ox++) {
            int x0 = ox * s - pl, x1 = x0 + k;
            x0 = x0 < 0 ? 0 : x0;
            x1 = x1 > w ? w : x1;
            __m512i v = _mm512_maskz_loadu_epi8(m, row + (size_t)x0 * pb);
            for (int x = x0 + 1; x < x1; x++)
                v = vmax512(t, v, _mm512_maskz_loadu_epi8(m, row + (size_t)x * pb));
            _mm512_mask_storeu_epi8(out + (size_t)ox * pb, m, v);
        }
        return;
    }
    for (int ox = 0; ox < ow; ox++) {
        int x0 = ox * s - pl, x1 = x0 + k;
        x0 = x0 < 0 ? 0 : x0;
        x1 = x1 > w ? w : x1;
        uint8_t *o = out + (size_t)ox * pb;
        if (x1 - x0 == 1) {
            memcpy(o, row + (size_t)x0 * pb, pb);
            continue;
        }
        vmax_512(t, o, row + (size_t)x0 * pb, row + (size_t)(x0 + 1) * pb, pb);
        for (int x = x0 + 2; x < x1; x++)
            vmax_512(t, o, o, row + (size_t)x * pb, pb);
    }
}
#endif

static void hpool_c(nn_elem t, uint8_t *out, const uint8_t *row, int w, int ow, int k, int s,
                    int pl, size_t pb, size_t c)
{
    for (int ox = 0; ox < ow; ox++) {
        int x0 = ox * s - pl, x1 = x0 + k;
        x0 = x0 < 0 ? 0 : x0;
        x1 = x1 > w ? w : x1;
        uint8_t *o = out + (size_t)ox * pb;
        memcpy(o, row + (size_t)x0 * pb, pb);
        for (int x = x0 + 1; x < x1; x++)
            vmax_c(t, o, o, row + (size_t)x * pb, c);
    }
}

int nn__maxpool_avx512_ok(void)
{
#ifdef NN_POOL_X86
    unsigned f = vg_cpu_features();
    return (f & (VG_CPU_AVX512F | VG_CPU_AVX512BW)) == (VG_CPU_AVX512F | VG_CPU_AVX512BW);
#else
    return 0;
#endif
}

void nn__maxpool_nhwc(nn_elem t, const void *in, nn_shape is, int k, int s, int pt, int pl,
                      void *out, nn_shape os, void *row_tmp, int use_avx512)
{
    size_t es = (size_t)nn__elem_size(t), c = (size_t)is.c, pb = c * es;
    size_t row_bytes = (size_t)is.w * pb;
    const uint8_t *src = in;
    uint8_t *dst = out, *tmp = row_tmp;
#ifndef NN_POOL_X86
    use_avx512 = 0;
#endif
    for (int n = 0; n < is.n; n++) {
        const uint8_t *img = src + (size_t)n * is.h * row_bytes;
        for (int oy = 0; oy < os.h; oy++) {
            int y0 = oy * s - pt, y1 = y0 + k;
            y0 = y0 < 0 ? 0 : y0;
            y1 = y1 > is.h ? is.h : y1;
            /* the window's rows reduced into one row (or the row itself when there is one) */
            const uint8_t *row = img + (size_t)y0 * row_bytes;
            for (int y = y0 + 1; y < y1; y++) {
                const uint8_t *r = img + (size_t)y * row_bytes;
#ifdef NN_POOL_X86
                if (use_avx512)
                    vmax_512(t, tmp, row, r, row_bytes);
                else
#endif
                    vmax_c(t, tmp, row, r, (size_t)is.w * c);
                row = tmp;
            }
            uint8_t *o = dst + (((size_t)n * os.h + oy) * os.w) * pb;
#ifdef NN_POOL_X86
            if (use_avx512)
                hpool_512(t, o, row, is.w, os.w, k, s, pl, pb);
            else
#endif
                hpool_c(t, o, row, is.w, os.w, k, s, pl, pb, c);
        }
    }
}
