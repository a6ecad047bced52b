/*
 * PDQ hashing core: luma -> tent filter -> 64x64 -> quality, 16x16 DCT -> median bits, and the
 * dihedral variants. Portable kernels live here; pdq_avx2.c holds the AVX2 ones.
 *
 * Exactness: the C++ reference works in float, with sums in a fixed order. Each function below
 * says which reference step it reproduces and keeps its arithmetic operation for operation
 * (see pdq_int.h). Indices that the reference computes in double are computed in double here.
 */
#include "pdq/pdq_int.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

/* Luma weights, rounded to float as the reference declares them. */
static const float LUMA_R = 0.299f;
static const float LUMA_G = 0.587f;
static const float LUMA_B = 0.114f;

/* Largest |value| accepted by pdq_hash_luma: keeps the quality metric's float->int conversions
 * and its integer sum far from overflow (pixels are 0..255). */
#define PDQ_MAX_ABS_LUMA 1.0e6f

/* ---- context ---------------------------------------------------------------------------- */

static pdq_impl best_impl(void)
{
#ifdef PDQ__HAVE_AVX2
    if (vg_cpu_features() & VG_CPU_AVX2)
        return PDQ_IMPL_AVX2;
#endif
    return PDQ_IMPL_PORTABLE;
}

/* The reference's DCT matrix: scale factor rounded to float first, then the product with the
 * double cosine rounded to float. The cosine argument is ((pi/2/64) * (i+1)) * (2k+1). */
static void init_dct(pdq_ctx *ctx)
{
    const double pi = 3.14159265358979323846;
    const float scale = (float)sqrt(2.0 / (double)PDQ__DS_N);
    for (int i = 0; i < PDQ__DCT_N; i++) {
        for (int k = 0; k < PDQ__DS_N; k++) {
            double arg = (pi / 2.0 / (double)PDQ__DS_N) * (double)(i + 1) * (double)(2 * k + 1);
            float d = (float)((double)scale * cos(arg));
            ctx->dct[i * PDQ__DS_N + k] = d;
            ctx->dct_t[k * PDQ__DCT_N + i] = d;
        }
    }
}

pdq_ctx *pdq_ctx_new(void)
{
    pdq_ctx *ctx = vg_calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->impl = best_impl();
    init_dct(ctx);
    return ctx;
}

void pdq_ctx_free(pdq_ctx *ctx)
{
    if (!ctx)
        return;
    vg_free(ctx->planes);
    vg_free(ctx->strip);
    vg_free(ctx->bytes);
    vg_free(ctx);
}

size_t pdq_ctx_scratch_bytes(const pdq_ctx *ctx)
{
    if (!ctx)
        return 0;
    return 2 * ctx->plane_cap * sizeof(float) + ctx->strip_cap * sizeof(float) + ctx->bytes_cap;
}

int pdq_ctx_set_impl(pdq_ctx *ctx, pdq_impl impl)
{
    if (!ctx)
        return vg_err_set(VG_EINVAL, "pdq_ctx_set_impl: NULL context");
    switch (impl) {
    case PDQ_IMPL_PORTABLE:
        break;
    case PDQ_IMPL_AVX2:
#ifdef PDQ__HAVE_AVX2
        if (vg_cpu_features() & VG_CPU_AVX2)
            break;
#endif
        return vg_err_set(VG_EUNSUPPORTED, "pdq: this CPU has no AVX2");
    default:
        return vg_err_set(VG_EINVAL, "pdq: unknown implementation %d", (int)impl);
    }
    ctx->impl = impl;
    return VG_OK;
}

pdq_impl pdq_ctx_impl(const pdq_ctx *ctx)
{
    return ctx ? ctx->impl : PDQ_IMPL_PORTABLE;
}

/* Grows *buf to hold need bytes (64-byte aligned, contents dropped). */
static int grow(void **buf, size_t *cap_units, size_t need_units, size_t unit)
{
    if (need_units <= *cap_units)
        return VG_OK;
    size_t bytes;
    if (vg_mul_size(need_units, unit, &bytes) != VG_OK)
        return vg_err_set(VG_ETOOBIG, "pdq: scratch of %zu x %zu bytes overflows", need_units,
                          unit);
    void *p = vg_aligned_alloc(64, bytes);
    if (!p)
        return vg_err_set(VG_ENOMEM, "pdq: cannot allocate %zu bytes of scratch", bytes);
    vg_free(*buf);
    *buf = p;
    *cap_units = need_units;
    return VG_OK;
}

int pdq__ctx_bytes(pdq_ctx *ctx, size_t need, uint8_t **out)
{
    void *p = ctx->bytes;
    int rc = grow(&p, &ctx->bytes_cap, need, 1);
    ctx->bytes = p;
    if (rc == VG_OK)
        *out = ctx->bytes;
    return rc;
}

/* Two planes of npix floats, plus the transposed strips the AVX2 row pass needs. */
static int ensure_scratch(pdq_ctx *ctx, size_t npix, uint32_t w)
{
    void *p = ctx->planes;
    size_t cap = ctx->plane_cap, need2;
    if (vg_mul_size(npix, 2, &need2) != VG_OK)
        return vg_err_set(VG_ETOOBIG, "pdq: image too large");
    /* Both planes live in one block; plane_cap is per plane. */
    size_t cap2 = cap * 2;
    int rc = grow(&p, &cap2, need2, sizeof(float));
    ctx->planes = p;
    if (rc != VG_OK)
        return rc;
    ctx->plane_cap = cap2 / 2;
    /* A transposed input strip (16 x w) and an output strip (16 x w, or 16 x 64 picked). */
    void *s = ctx->strip;
    const size_t out_w = w > PDQ__DS_N ? w : PDQ__DS_N;
    rc = grow(&s, &ctx->strip_cap, (size_t)PDQ__STRIP * (w + out_w), sizeof(float));
    ctx->strip = s;
    return rc;
}

/* ---- step 1: luma --------------------------------------------------------------------- */

/* Reference fillFloatLumaFromGrey: the grey value itself. */
static void gray_to_f32(const uint8_t *px, int w, int h, size_t stride, float *out)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * stride;
        float *o = out + (size_t)y * (size_t)w;
        for (int x = 0; x < w; x++)
            o[x] = (float)row[x];
    }
}

/* Reference fillFloatLumaFromRGB: (0.299 R + 0.587 G) + 0.114 B in float, left to right. */
static void rgb_to_f32(const uint8_t *px, int w, int h, size_t stride, float *out)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *p = px + (size_t)y * stride;
        float *o = out + (size_t)y * (size_t)w;
        for (int x = 0; x < w; x++, p += 3)
            o[x] = LUMA_R * (float)p[0] + LUMA_G * (float)p[1] + LUMA_B * (float)p[2];
    }
}

/* ---- step 2: Jarosz tent filter (box filter along rows, then columns, twice) ------------ */

/* The reference's box1DFloat. A window of win samples centred on the output (half = (win+2)/2
 * samples ahead), shrinking at both ends; the sum is a running float sum (add the entering
 * sample, subtract the leaving one) divided by the current window length.
 * With pick == NULL every output o goes to out[o * stride]. Otherwise only outputs listed in
 * pick (npick indices, non-decreasing) are divided and stored, the p-th to out[p * out_stride];
 * the running sum still visits every sample, so each stored value has the same bits. */
static void box_line_impl(const float *in, float *out, int n, ptrdiff_t stride, int win,
                          const int *pick, int npick, ptrdiff_t out_stride)
{
    const int half = (win + 2) / 2;
    const int lead = half - 1;         /* samples summed before the first output */
    const int grow_n = win - half + 1; /* outputs while the window is still growing */
    const int full_n = n - win;        /* outputs with the full window */
    const int shrink_n = half - 1;     /* outputs while the window shrinks at the end */
    ptrdiff_t r = 0, l = 0;
    float sum = 0.0f;
    int len = 0, o = 0, p = 0;
#define EMIT()                                                                                     \
    do {                                                                                           \
        if (!pick)                                                                                 \
            out[(ptrdiff_t)o * stride] = sum / (float)len;                                         \
        else                                                                                       \
            for (; p < npick && pick[p] == o; p++)                                                 \
                out[(ptrdiff_t)p * out_stride] = sum / (float)len;                                 \
        o++;                                                                                       \
    } while (0)
    for (int i = 0; i < lead; i++, r += stride) {
        sum += in[r];
        len++;
    }
    for (int i = 0; i < grow_n; i++, r += stride) {
        sum += in[r];
        len++;
        EMIT();
    }
    for (int i = 0; i < full_n; i++, r += stride, l += stride) {
        sum += in[r];
        sum -= in[l];
        EMIT();
    }
    for (int i = 0; i < shrink_n; i++, l += stride) {
        sum -= in[l];
        len--;
        EMIT();
    }
#undef EMIT
}

void pdq__box_line(const float *in, float *out, int n, ptrdiff_t stride, int win)
{
    box_line_impl(in, out, n, stride, win, NULL, 0, 0);
}

void pdq__box_line_pick(const float *in, int n, ptrdiff_t stride, int win, const int *pick,
                        int npick, float *out, ptrdiff_t out_stride)
{
    box_line_impl(in, out, n, stride, win, pick, npick, out_stride);
}

static void rows_portable(const float *in, float *out, int h, int w, int win)
{
    for (int y = 0; y < h; y++)
        pdq__box_line(in + (size_t)y * (size_t)w, out + (size_t)y * (size_t)w, w, 1, win);
}

static void cols_portable(const float *in, float *out, int h, int w, int win)
{
    for (int x = 0; x < w; x++)
        pdq__box_line(in + x, out + x, h, w, win);
}

/* The second row pass, kept only at the 64 columns the decimation reads: out is h x 64. */
static void rows_pick_portable(const float *in, float *out, int h, int w, int win, const int *cols)
{
    for (int y = 0; y < h; y++)
        pdq__box_line_pick(in + (size_t)y * (size_t)w, w, 1, win, cols, PDQ__DS_N,
                           out + (size_t)y * PDQ__DS_N, 1);
}

/* The second column pass on those 64 columns, kept only at the 64 decimation rows: a64. */
static void cols_pick_portable(const float *in, float *a64, int h, int win, const int *rows)
{
    for (int x = 0; x < PDQ__DS_N; x++)
        pdq__box_line_pick(in + x, h, PDQ__DS_N, win, rows, PDQ__DS_N, a64 + x, PDQ__DS_N);
}

/* ---- step 3: decimation to 64x64 ------------------------------------------------------ */

/* Reference decimateFloat: the sample at each cell centre, index (int)((i + 0.5) * n / 64)
 * computed in double. Only these samples of the last two passes are ever computed. */
static void decimation_indices(int n, int *idx)
{
    for (int i = 0; i < PDQ__DS_N; i++)
        idx[i] = (int)(((i + 0.5) * n) / PDQ__DS_N);
}

/* ---- step 4: quality ------------------------------------------------------------------ */

/* Reference pdqImageDomainQualityMetric: each neighbour difference scaled to percent of 255 in
 * float and truncated to int, absolute values summed (vertical pairs, then horizontal),
 * divided by 90, capped at 100. The sum is 64-bit here; with pixel-range inputs it never
 * exceeds 806400, so the result equals the reference's int sum. */
static int quality_metric(const float *a64)
{
    int64_t sum = 0;
    for (int i = 0; i < PDQ__DS_N - 1; i++) {
        for (int j = 0; j < PDQ__DS_N; j++) {
            float u = a64[i * PDQ__DS_N + j], v = a64[(i + 1) * PDQ__DS_N + j];
            int d = (int)(((u - v) * 100.0f) / 255.0f);
            sum += d < 0 ? -d : d;
        }
    }
    for (int i = 0; i < PDQ__DS_N; i++) {
        for (int j = 0; j < PDQ__DS_N - 1; j++) {
            float u = a64[i * PDQ__DS_N + j], v = a64[i * PDQ__DS_N + j + 1];
            int d = (int)(((u - v) * 100.0f) / 255.0f);
            sum += d < 0 ? -d : d;
        }
    }
    int64_t q = sum / 90;
    return q > 100 ? 100 : (int)q;
}

/* ---- step 5: 16x16 DCT ---------------------------------------------------------------- */

/* Reference dct64To16: T = D A (16x64), then B = T D^T (16x16), each element a float sum over
 * k = 0..63 in increasing order starting from 0. The loops run k outermost so that each
 * element's sum still goes in k order while a row of elements advances together. */
static void dct_portable(const float *dct, const float *dct_t, const float *a64, float *b16)
{
    float t[PDQ__DCT_N * PDQ__DS_N];
    for (int i = 0; i < PDQ__DCT_N; i++) {
        float *ti = t + i * PDQ__DS_N;
        for (int j = 0; j < PDQ__DS_N; j++)
            ti[j] = 0.0f;
        for (int k = 0; k < PDQ__DS_N; k++) {
            const float d = dct[i * PDQ__DS_N + k];
            const float *ak = a64 + k * PDQ__DS_N;
            for (int j = 0; j < PDQ__DS_N; j++)
                ti[j] += d * ak[j];
        }
    }
    for (int i = 0; i < PDQ__DCT_N; i++) {
        float *bi = b16 + i * PDQ__DCT_N;
        for (int j = 0; j < PDQ__DCT_N; j++)
            bi[j] = 0.0f;
        for (int k = 0; k < PDQ__DS_N; k++) {
            const float tv = t[i * PDQ__DS_N + k];
            const float *dk = dct_t + k * PDQ__DCT_N;
            for (int j = 0; j < PDQ__DCT_N; j++)
                bi[j] += tv * dk[j];
        }
    }
}

/* ---- step 6: median threshold --------------------------------------------------------- */

/* The k-th smallest of a[0..n-1] (k 0-based), reordering a. Hoare partition quickselect;
 * terminates on any input, NaN included. */
static float select_kth(float *a, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (i <= hi && a[i] < pivot)
                i++;
            while (j >= lo && a[j] > pivot)
                j--;
            if (i <= j) {
                float tmp = a[i];
                a[i] = a[j];
                a[j] = tmp;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* The reference thresholds at Torben's median of the 256 coefficients, which is the element of
 * rank (n+1)/2 = 128 (the lower median); a bit is set when its coefficient is strictly above. */
static void bits_from_dct(const float *b16, pdq_hash *h)
{
    float tmp[PDQ__DCT_N * PDQ__DCT_N];
    memcpy(tmp, b16, sizeof tmp);
    const float median = select_kth(tmp, PDQ_HASH_BITS, (PDQ_HASH_BITS + 1) / 2 - 1);
    memset(h, 0, sizeof *h);
    for (int k = 0; k < PDQ_HASH_BITS; k++)
        if (b16[k] > median)
            h->w[k >> 6] |= (uint64_t)1 << (k & 63);
}

/* The DCT of a rotated or flipped image, from the original's: for the 64-point DCT-II, mirroring
 * an axis multiplies coefficient u (1-based) by (-1)^u, and a transpose swaps the axes. Row
 * index i holds coefficient i+1, so "i even" means an odd coefficient, negated by a mirror. */
static void dihedral_dct(const float *a, pdq_xform xf, float *b)
{
    for (int i = 0; i < PDQ__DCT_N; i++) {
        for (int j = 0; j < PDQ__DCT_N; j++) {
            const float v = a[i * PDQ__DCT_N + j];
            const int i_odd = i & 1, j_odd = j & 1, ij_odd = (i + j) & 1;
            switch (xf) {
            case PDQ_XF_ORIGINAL:
                b[i * PDQ__DCT_N + j] = v;
                break;
            case PDQ_XF_ROTATE90:
                b[j * PDQ__DCT_N + i] = j_odd ? v : -v;
                break;
            case PDQ_XF_ROTATE180:
                b[i * PDQ__DCT_N + j] = ij_odd ? -v : v;
                break;
            case PDQ_XF_ROTATE270:
                b[j * PDQ__DCT_N + i] = i_odd ? v : -v;
                break;
            case PDQ_XF_FLIPX:
                b[i * PDQ__DCT_N + j] = i_odd ? v : -v;
                break;
            case PDQ_XF_FLIPY:
                b[i * PDQ__DCT_N + j] = j_odd ? v : -v;
                break;
            case PDQ_XF_FLIP_PLUS1:
                b[j * PDQ__DCT_N + i] = v;
                break;
            case PDQ_XF_FLIP_MINUS1:
                b[j * PDQ__DCT_N + i] = ij_odd ? -v : v;
                break;
            default:
                break;
            }
        }
    }
}

/* ---- the whole hash ------------------------------------------------------------------- */

/* SRC_F32_TRUSTED: float luma produced by this module (pixel range by construction). */
typedef enum { SRC_GRAY8, SRC_RGB8, SRC_F32, SRC_F32_TRUSTED } src_kind;

static void zero_result(pdq_result *out, unsigned flags)
{
    memset(out, 0, sizeof *out);
    out->quality = 0;
    out->unreliable = 1;
    out->has_dihedral = (flags & PDQ_WANT_DIHEDRAL) != 0;
}

static int hash_pixels(pdq_ctx *ctx, src_kind kind, const void *px, uint32_t w, uint32_t h,
                       size_t stride, unsigned flags, pdq_result *out)
{
    if (!ctx || !px || !out)
        return vg_err_set(VG_EINVAL, "pdq: NULL argument");
    size_t min_stride = kind == SRC_RGB8 ? (size_t)w * 3 : (size_t)w;
    if ((kind == SRC_GRAY8 || kind == SRC_RGB8) && stride < min_stride)
        return vg_err_set(VG_EINVAL, "pdq: stride %zu < row bytes %zu", stride, min_stride);
    if ((uint64_t)w * h > PDQ_MAX_HASH_PIXELS)
        return vg_err_set(VG_EPIXELS, "pdq: %ux%u is over the %llu pixels one hash accepts", w, h,
                          (unsigned long long)PDQ_MAX_HASH_PIXELS);
    if (kind == SRC_F32) {
        const float *f = px;
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++)
            if (!(f[i] >= -PDQ_MAX_ABS_LUMA && f[i] <= PDQ_MAX_ABS_LUMA))
                return vg_err_set(VG_EINVAL, "pdq: luma[%zu] is not a finite value within 1e6", i);
    }
    /* The reference hashes anything smaller than 5 px on a side to zeros, quality 0. */
    if (w < PDQ_MIN_SIDE_PX || h < PDQ_MIN_SIDE_PX) {
        zero_result(out, flags);
        return VG_OK;
    }
    const int W = (int)w, H = (int)h;
    /* The planes also hold the h x 64 result of the third pass, so at least 64 wide. */
    const size_t npix = (size_t)(w > PDQ__DS_N ? w : PDQ__DS_N) * h;
    int rc = ensure_scratch(ctx, npix, w);
    if (rc != VG_OK)
        return rc;
    float *p0 = ctx->planes, *p1 = ctx->planes + ctx->plane_cap;
    const int avx2 = ctx->impl == PDQ_IMPL_AVX2;

    const float *luma;
    switch (kind) {
    case SRC_GRAY8:
#ifdef PDQ__HAVE_AVX2
        if (avx2)
            pdq__gray_to_f32_avx2(px, W, H, stride, p0);
        else
#endif
            gray_to_f32(px, W, H, stride, p0);
        luma = p0;
        break;
    case SRC_RGB8:
#ifdef PDQ__HAVE_AVX2
        if (avx2)
            pdq__rgb_to_f32_avx2(px, W, H, stride, p0);
        else
#endif
            rgb_to_f32(px, W, H, stride, p0);
        luma = p0;
        break;
    default:
        luma = px;
        break;
    }

    float a64[PDQ__DS_N * PDQ__DS_N];
    /* The reference skips the filter for an image already 64x64, except on its dihedral path,
     * which always filters; both quirks are kept so either output matches. */
    if (W == PDQ__DS_N && H == PDQ__DS_N && !(flags & PDQ_WANT_DIHEDRAL)) {
        memcpy(a64, luma, sizeof a64);
    } else {
        /* rows, columns, rows, columns; the last two only where decimation samples. */
        const int win_rows = pdq__window(W), win_cols = pdq__window(H);
        int pick_cols[PDQ__DS_N], pick_rows[PDQ__DS_N];
        decimation_indices(W, pick_cols);
        decimation_indices(H, pick_rows);
#ifdef PDQ__HAVE_AVX2
        if (avx2) {
            float *strip = ctx->strip;
            pdq__rows_avx2(luma, p1, H, W, win_rows, strip);
            pdq__cols_avx2(p1, p0, H, W, win_cols);
            pdq__rows_pick_avx2(p0, p1, H, W, win_rows, pick_cols, strip);
            pdq__cols_pick_avx2(p1, a64, H, win_cols, pick_rows);
        } else
#endif
        {
            rows_portable(luma, p1, H, W, win_rows);
            cols_portable(p1, p0, H, W, win_cols);
            rows_pick_portable(p0, p1, H, W, win_rows, pick_cols);
            cols_pick_portable(p1, a64, H, win_cols, pick_rows);
        }
    }

    pdq_result r;
    memset(&r, 0, sizeof r);
    r.quality = quality_metric(a64);
    r.unreliable = r.quality < PDQ_MIN_RELIABLE_QUALITY;

    float b16[PDQ__DCT_N * PDQ__DCT_N];
#ifdef PDQ__HAVE_AVX2
    if (avx2)
        pdq__dct_avx2(ctx->dct, ctx->dct_t, a64, b16);
    else
#endif
        dct_portable(ctx->dct, ctx->dct_t, a64, b16);

    bits_from_dct(b16, &r.hash);
    if (flags & PDQ_WANT_DIHEDRAL) {
        float xb[PDQ__DCT_N * PDQ__DCT_N];
        r.dihedral[PDQ_XF_ORIGINAL] = r.hash;
        for (int xf = PDQ_XF_ROTATE90; xf < PDQ_NUM_XFORMS; xf++) {
            dihedral_dct(b16, (pdq_xform)xf, xb);
            bits_from_dct(xb, &r.dihedral[xf]);
        }
        r.has_dihedral = 1;
    }
    *out = r;
    return VG_OK;
}

int pdq_hash_gray8(pdq_ctx *ctx, const uint8_t *px, uint32_t w, uint32_t h, size_t stride,
                   unsigned flags, pdq_result *out)
{
    return hash_pixels(ctx, SRC_GRAY8, px, w, h, stride, flags, out);
}

int pdq_hash_rgb8(pdq_ctx *ctx, const uint8_t *px, uint32_t w, uint32_t h, size_t stride,
                  unsigned flags, pdq_result *out)
{
    return hash_pixels(ctx, SRC_RGB8, px, w, h, stride, flags, out);
}

int pdq_hash_luma(pdq_ctx *ctx, const float *luma, uint32_t w, uint32_t h, unsigned flags,
                  pdq_result *out)
{
    return hash_pixels(ctx, SRC_F32, luma, w, h, 0, flags, out);
}

int pdq__hash_f32_trusted(pdq_ctx *ctx, const float *luma, uint32_t w, uint32_t h, unsigned flags,
                          pdq_result *out)
{
    return hash_pixels(ctx, SRC_F32_TRUSTED, luma, w, h, 0, flags, out);
}
