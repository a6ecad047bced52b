/*
 * AVX2 kernels of the PDQ hash: the box-filter passes, the two DCT products and the grey->float
 * conversion. Chosen at run time (pdq_ctx picks them when vg_cpu_features() has AVX2).
 *
 * Bit-exactness with the portable kernels (and so with the C++ reference) comes from doing the
 * same float operations per element in the same order: vectors only process several
 * independent elements at once. No FMA (the target is "avx2" alone and the module is compiled
 * with -ffp-contract=off), and divisions stay divisions.
 *
 * Row passes would be a serial running sum along each row; instead a strip of 16 rows is
 * transposed (8x8 register transposes) into a column-major strip, filtered "vertically" with
 * 16 rows advancing together, and transposed back.
 */
#include "pdq/pdq_int.h"

#ifdef PDQ__HAVE_AVX2

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

/* Vertical box filter of window win over nrows rows (row stride `stride` floats) for 8*nv
 * adjacent columns starting at in: the reference's box1DFloat run on every column at once, one
 * running sum per lane. pick == NULL: output row o goes to out + o*stride. Otherwise only the
 * rows listed in pick (npick, non-decreasing) are divided and stored, the p-th at
 * out + p*out_stride. */
INLINE TGT void vbox_block(const float *in, float *out, int nrows, ptrdiff_t stride, int win,
                           int nv, const int *pick, int npick, ptrdiff_t out_stride)
{
    const int half = (win + 2) / 2;
    const int lead = half - 1, grow_n = win - half + 1, full_n = nrows - win, shrink_n = half - 1;
    __m256 s[4];
    for (int v = 0; v < nv; v++)
        s[v] = _mm256_setzero_ps();
    const float *pr = in, *pl = in;
    int len = 0, o = 0, p = 0;
#define EMIT(d)                                                                                    \
    do {                                                                                           \
        if (!pick) {                                                                               \
            for (int v = 0; v < nv; v++)                                                           \
                _mm256_storeu_ps(out + (ptrdiff_t)o * stride + 8 * v, _mm256_div_ps(s[v], d));     \
        } else {                                                                                   \
            for (; p < npick && pick[p] == o; p++)                                                 \
                for (int v = 0; v < nv; v++)                                                       \
                    _mm256_storeu_ps(out + (ptrdiff_t)p * out_stride + 8 * v,                      \
                                     _mm256_div_ps(s[v], d));                                      \
        }                                                                                          \
        o++;                                                                                       \
    } while (0)
    for (int i = 0; i < lead; i++, pr += stride, len++)
        for (int v = 0; v < nv; v++)
            s[v] = _mm256_add_ps(s[v], _mm256_loadu_ps(pr + 8 * v));
    for (int i = 0; i < grow_n; i++, pr += stride) {
        len++;
        const __m256 d = _mm256_set1_ps((float)len);
        for (int v = 0; v < nv; v++)
            s[v] = _mm256_add_ps(s[v], _mm256_loadu_ps(pr + 8 * v));
        EMIT(d);
    }
    const __m256 dfull = _mm256_set1_ps((float)len);
    for (int i = 0; i < full_n; i++, pr += stride, pl += stride) {
        for (int v = 0; v < nv; v++) {
            s[v] = _mm256_add_ps(s[v], _mm256_loadu_ps(pr + 8 * v));
            s[v] = _mm256_sub_ps(s[v], _mm256_loadu_ps(pl + 8 * v));
        }
        EMIT(dfull);
    }
    for (int i = 0; i < shrink_n; i++, pl += stride) {
        len--;
        const __m256 d = _mm256_set1_ps((float)len);
        for (int v = 0; v < nv; v++)
            s[v] = _mm256_sub_ps(s[v], _mm256_loadu_ps(pl + 8 * v));
        EMIT(d);
    }
#undef EMIT
}

TGT void pdq__cols_avx2(const float *in, float *out, int h, int w, int win)
{
    int x = 0;
    for (; x + 32 <= w; x += 32)
        vbox_block(in + x, out + x, h, w, win, 4, NULL, 0, 0);
    for (; x + 8 <= w; x += 8)
        vbox_block(in + x, out + x, h, w, win, 1, NULL, 0, 0);
    for (; x < w; x++)
        pdq__box_line(in + x, out + x, h, w, win);
}

/* In-register transpose of an 8x8 block: r[i] lane j becomes r[j] lane i. */
INLINE TGT void transpose8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* s[c*16 + k] = in[k*w + c] for the 16 rows starting at in. */
INLINE TGT void strip_load(const float *in, int w, float *s)
{
    int c = 0;
    for (; c + 8 <= w; c += 8) {
        for (int half = 0; half < 2; half++) {
            __m256 r[8];
            for (int k = 0; k < 8; k++)
                r[k] = _mm256_loadu_ps(in + (size_t)(8 * half + k) * (size_t)w + c);
            transpose8(r);
            for (int m = 0; m < 8; m++)
                _mm256_storeu_ps(s + (size_t)(c + m) * PDQ__STRIP + 8 * half, r[m]);
        }
    }
    for (; c < w; c++)
        for (int k = 0; k < PDQ__STRIP; k++)
            s[(size_t)c * PDQ__STRIP + k] = in[(size_t)k * (size_t)w + c];
}

/* out[k*w + c] = s[c*16 + k]: the inverse of strip_load. */
INLINE TGT void strip_store(const float *s, int w, float *out)
{
    int c = 0;
    for (; c + 8 <= w; c += 8) {
        for (int half = 0; half < 2; half++) {
            __m256 r[8];
            for (int m = 0; m < 8; m++)
                r[m] = _mm256_loadu_ps(s + (size_t)(c + m) * PDQ__STRIP + 8 * half);
            transpose8(r);
            for (int k = 0; k < 8; k++)
                _mm256_storeu_ps(out + (size_t)(8 * half + k) * (size_t)w + c, r[k]);
        }
    }
    for (; c < w; c++)
        for (int k = 0; k < PDQ__STRIP; k++)
            out[(size_t)k * (size_t)w + c] = s[(size_t)c * PDQ__STRIP + k];
}

/* strip holds 2 * 16 * w floats. */
TGT void pdq__rows_avx2(const float *in, float *out, int h, int w, int win, float *strip)
{
    float *s = strip, *o = strip + (size_t)PDQ__STRIP * (size_t)w;
    int y = 0;
    for (; y + PDQ__STRIP <= h; y += PDQ__STRIP) {
        strip_load(in + (size_t)y * (size_t)w, w, s);
        vbox_block(s, o, w, PDQ__STRIP, win, PDQ__STRIP / 8, NULL, 0, 0);
        strip_store(o, w, out + (size_t)y * (size_t)w);
    }
    for (; y < h; y++)
        pdq__box_line(in + (size_t)y * (size_t)w, out + (size_t)y * (size_t)w, w, 1, win);
}

/* strip holds 16 * w + 16 * 64 floats. */
TGT void pdq__rows_pick_avx2(const float *in, float *out, int h, int w, int win, const int *cols,
                             float *strip)
{
    float *s = strip, *o = strip + (size_t)PDQ__STRIP * (size_t)w;
    int y = 0;
    for (; y + PDQ__STRIP <= h; y += PDQ__STRIP) {
        strip_load(in + (size_t)y * (size_t)w, w, s);
        vbox_block(s, o, w, PDQ__STRIP, win, PDQ__STRIP / 8, cols, PDQ__DS_N, PDQ__STRIP);
        strip_store(o, PDQ__DS_N, out + (size_t)y * PDQ__DS_N);
    }
    for (; y < h; y++)
        pdq__box_line_pick(in + (size_t)y * (size_t)w, w, 1, win, cols, PDQ__DS_N,
                           out + (size_t)y * PDQ__DS_N, 1);
}

TGT void pdq__cols_pick_avx2(const float *in, float *a64, int h, int win, const int *rows)
{
    for (int x = 0; x < PDQ__DS_N; x += 32)
        vbox_block(in + x, a64 + x, h, PDQ__DS_N, win, 4, rows, PDQ__DS_N, PDQ__DS_N);
}

TGT void pdq__lerp_rows_avx2(const float *top, const float *bot, float fy, float *out, int n)
{
    const __m256 f = _mm256_set1_ps(fy);
    int x = 0;
    for (; x + 8 <= n; x += 8) {
        const __m256 t = _mm256_loadu_ps(top + x), b = _mm256_loadu_ps(bot + x);
        _mm256_storeu_ps(out + x, _mm256_add_ps(t, _mm256_mul_ps(_mm256_sub_ps(b, t), f)));
    }
    for (; x < n; x++)
        out[x] = top[x] + (bot[x] - top[x]) * fy;
}

/* T = D A, then B = T D^T; each output element summed over k = 0..63 in order from 0. */
TGT void pdq__dct_avx2(const float *dct, const float *dct_t, const float *a64, float *b16)
{
    float t[PDQ__DCT_N * PDQ__DS_N] __attribute__((aligned(32)));
    for (int i = 0; i < PDQ__DCT_N; i++) {
        __m256 acc[8];
        for (int v = 0; v < 8; v++)
            acc[v] = _mm256_setzero_ps();
        for (int k = 0; k < PDQ__DS_N; k++) {
            const __m256 d = _mm256_set1_ps(dct[i * PDQ__DS_N + k]);
            const float *ak = a64 + k * PDQ__DS_N;
            for (int v = 0; v < 8; v++)
                acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(d, _mm256_loadu_ps(ak + 8 * v)));
        }
        for (int v = 0; v < 8; v++)
            _mm256_store_ps(t + i * PDQ__DS_N + 8 * v, acc[v]);
    }
    for (int i = 0; i < PDQ__DCT_N; i += 4) {
        __m256 acc[4][2];
        for (int r = 0; r < 4; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int k = 0; k < PDQ__DS_N; k++) {
            const __m256 d0 = _mm256_loadu_ps(dct_t + k * PDQ__DCT_N);
            const __m256 d1 = _mm256_loadu_ps(dct_t + k * PDQ__DCT_N + 8);
            for (int r = 0; r < 4; r++) {
                const __m256 tv = _mm256_set1_ps(t[(i + r) * PDQ__DS_N + k]);
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_mul_ps(tv, d0));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_mul_ps(tv, d1));
            }
        }
        for (int r = 0; r < 4; r++) {
            _mm256_storeu_ps(b16 + (i + r) * PDQ__DCT_N, acc[r][0]);
            _mm256_storeu_ps(b16 + (i + r) * PDQ__DCT_N + 8, acc[r][1]);
        }
    }
}

/* (0.299 R + 0.587 G) + 0.114 B per pixel, the reference's operations in its order. Eight
 * pixels per gather: lane i reads the 4 bytes at 3i (R, G, B and the next pixel's R), so the
 * vector loop stops while a whole pixel still follows, and the tail is scalar. */
TGT void pdq__rgb_to_f32_avx2(const uint8_t *px, int w, int h, size_t stride, float *out)
{
    const __m256i idx = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    const __m256i byte = _mm256_set1_epi32(0xff);
    const __m256 cr = _mm256_set1_ps(0.299f), cg = _mm256_set1_ps(0.587f),
                 cb = _mm256_set1_ps(0.114f);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride;
        float *o = out + (size_t)y * (size_t)w;
        int x = 0;
        for (; x + 8 < w; x += 8) {
            const __m256i v =
                _mm256_i32gather_epi32((const int *)(const void *)(row + 3 * x), idx, 1);
            const __m256 r = _mm256_cvtepi32_ps(_mm256_and_si256(v, byte));
            const __m256 g = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 8), byte));
            const __m256 b = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 16), byte));
            _mm256_storeu_ps(
                o + x, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(cr, r), _mm256_mul_ps(cg, g)),
                                     _mm256_mul_ps(cb, b)));
        }
        for (; x < w; x++) {
            const uint8_t *p = row + 3 * x;
            o[x] = 0.299f * (float)p[0] + 0.587f * (float)p[1] + 0.114f * (float)p[2];
        }
    }
}

TGT void pdq__gray_to_f32_avx2(const uint8_t *px, int w, int h, size_t stride, float *out)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride;
        float *o = out + (size_t)y * (size_t)w;
        int x = 0;
        for (; x + 8 <= w; x += 8) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(row + x));
            _mm256_storeu_ps(o + x, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)));
        }
        for (; x < w; x++)
            o[x] = (float)row[x];
    }
}

/* lerp_row of the fast pipeline's grid sampling, 8 grid columns per step: the same float
 * operations per element (convert, subtract, multiply, add; no FMA). The byte gathers read 4
 * bytes at each tap, so the vector loop runs while the right taps (non-decreasing) stay 4 bytes
 * inside the row; the rest is scalar. */
TGT void pdq__lerp_row_avx2(const uint8_t *row, uint32_t w, const uint32_t *x0, const uint32_t *x1,
                            const float *fx, uint32_t gw, float *out)
{
    const __m256i low = _mm256_set1_epi32(0xFF);
    uint32_t x = 0;
    for (; x + 8 <= gw && (uint64_t)x1[x + 7] + 4 <= w; x += 8) {
        const __m256i i0 = _mm256_loadu_si256((const void *)(x0 + x)),
                      i1 = _mm256_loadu_si256((const void *)(x1 + x));
        const __m256 a = _mm256_cvtepi32_ps(
            _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)row, i0, 1), low));
        const __m256 b = _mm256_cvtepi32_ps(
            _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)row, i1, 1), low));
        _mm256_storeu_ps(
            out + x, _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), _mm256_loadu_ps(fx + x))));
    }
    for (; x < gw; x++) {
        const float a = (float)row[x0[x]], b = (float)row[x1[x]];
        out[x] = a + (b - a) * fx[x];
    }
}

/* 8-bit BT.601 luma of interleaved RGB, (19595 R + 38470 G + 7471 B + 32768) >> 16 in 32-bit
 * integers: the same integers as the portable loop, 8 pixels per step. Each 128-bit half loads
 * 16 bytes for its 4 pixels (12 used), so the vector loop stops 4 bytes short of the end. */
TGT void pdq__rgb_to_gray8_avx2(const uint8_t *rgb, size_t npix, uint8_t *gray)
{
    /* R, G or B of pixel k of each 128-bit half into 32-bit lane k */
    const __m256i shuf_r =
        _mm256_setr_epi8(0, -1, -1, -1, 3, -1, -1, -1, 6, -1, -1, -1, 9, -1, -1, -1, 0, -1, -1, -1,
                         3, -1, -1, -1, 6, -1, -1, -1, 9, -1, -1, -1);
    const __m256i shuf_g =
        _mm256_setr_epi8(1, -1, -1, -1, 4, -1, -1, -1, 7, -1, -1, -1, 10, -1, -1, -1, 1, -1, -1, -1,
                         4, -1, -1, -1, 7, -1, -1, -1, 10, -1, -1, -1);
    const __m256i shuf_b =
        _mm256_setr_epi8(2, -1, -1, -1, 5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1, 2, -1, -1, -1,
                         5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1);
    const __m256i kr = _mm256_set1_epi32(19595), kg = _mm256_set1_epi32(38470),
                  kb = _mm256_set1_epi32(7471), half = _mm256_set1_epi32(32768);
    /* byte 2 of each 32-bit sum (the sum is under 2^24, so >> 16 is that byte) to bytes 0-3 */
    const __m256i pick =
        _mm256_setr_epi8(2, 6, 10, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 6, 10, 14,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    size_t i = 0;
    for (; i + 8 + 2 <= npix; i += 8) { /* 2 spare pixels cover the 4 bytes read past pixel 7 */
        const uint8_t *p = rgb + 3 * i;
        const __m256i v =
            _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)p)),
                                    _mm_loadu_si128((const void *)(p + 12)), 1);
        __m256i s = _mm256_mullo_epi32(_mm256_shuffle_epi8(v, shuf_r), kr);
        s = _mm256_add_epi32(s, _mm256_mullo_epi32(_mm256_shuffle_epi8(v, shuf_g), kg));
        s = _mm256_add_epi32(s, _mm256_mullo_epi32(_mm256_shuffle_epi8(v, shuf_b), kb));
        s = _mm256_shuffle_epi8(_mm256_add_epi32(s, half), pick);
        const uint32_t lo = (uint32_t)_mm256_extract_epi32(s, 0),
                       hi = (uint32_t)_mm256_extract_epi32(s, 4);
        memcpy(gray + i, &lo, 4);
        memcpy(gray + i + 4, &hi, 4);
    }
    for (; i < npix; i++) {
        const uint8_t *q = rgb + 3 * i;
        gray[i] = (uint8_t)((19595u * q[0] + 38470u * q[1] + 7471u * q[2] + 32768u) >> 16);
    }
}

#endif /* PDQ__HAVE_AVX2 */
