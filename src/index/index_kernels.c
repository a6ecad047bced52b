/* index: the flat-scan kernels and their run-time dispatch.
 *
 * PDQ (rows of 4 words; see index_int.h): per entry, the minimum over the query variants of
 * popcount(entry ^ variant) summed over 4 words, compared with the threshold.
 *   - portable: SWAR popcount in plain C (any x86-64 or other CPU);
 *   - popcnt:   the same loop with the POPCNT instruction;
 *   - avx2:     4 rows transposed into 4 registers (one word of 4 entries each), byte popcount
 *               by nibble lookup (VPSHUFB), byte counts of the 4 words summed (<= 32 per byte,
 *               no overflow) and reduced once per variant with VPSADBW;
 *   - avx512:   8 rows transposed into 4 registers, VPOPCNTQ.
 * Faces: squared L2 over 128 floats per row, with 8 (portable), 32 (AVX2+FMA) or 64 (AVX-512)
 * partial sums. Summation order differs between kernels, so distances agree to float rounding
 * (tests allow 1e-5), not bit for bit.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <immintrin.h>
#include <string.h>

/* ---- PDQ: scalar kernels -------------------------------------------------------------------- */

static inline int popcount_swar(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

/* One body for both scalar kernels; hw selects the popcount after inlining. */
static inline __attribute__((always_inline)) size_t
pdq_scan_scalar(const uint64_t *rows, size_t begin, size_t end, const uint64_t (*q)[4], size_t nv,
                int threshold, uint32_t *hits, int hw)
{
    size_t n = 0;
    for (size_t p = begin; p < end; p++) {
        const uint64_t *r = index__row(rows, p);
        uint64_t w0 = r[0], w1 = r[1], w2 = r[2], w3 = r[3];
        for (size_t v = 0; v < nv; v++) {
            int d;
            if (hw)
                d = __builtin_popcountll(w0 ^ q[v][0]) + __builtin_popcountll(w1 ^ q[v][1]) +
                    __builtin_popcountll(w2 ^ q[v][2]) + __builtin_popcountll(w3 ^ q[v][3]);
            else
                d = popcount_swar(w0 ^ q[v][0]) + popcount_swar(w1 ^ q[v][1]) +
                    popcount_swar(w2 ^ q[v][2]) + popcount_swar(w3 ^ q[v][3]);
            if (d <= threshold) {
                hits[n++] = (uint32_t)p;
                break;
            }
        }
    }
    return n;
}

static size_t pdq_scan_portable(const uint64_t *rows, size_t begin, size_t end,
                                const uint64_t (*q)[4], size_t nv, int threshold, uint32_t *hits)
{
    return pdq_scan_scalar(rows, begin, end, q, nv, threshold, hits, 0);
}

__attribute__((target("popcnt"))) static size_t pdq_scan_popcnt(const uint64_t *rows, size_t begin,
                                                                size_t end, const uint64_t (*q)[4],
                                                                size_t nv, int threshold,
                                                                uint32_t *hits)
{
    return pdq_scan_scalar(rows, begin, end, q, nv, threshold, hits, 1);
}

/* ---- PDQ: AVX2 ------------------------------------------------------------------------------ */

__attribute__((target("avx2"))) static size_t pdq_scan_avx2(const uint64_t *rows, size_t begin,
                                                            size_t end, const uint64_t (*q)[4],
                                                            size_t nv, int threshold,
                                                            uint32_t *hits)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                         1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i thr = _mm256_set1_epi64x(threshold);
    __m256i qv[INDEX_PDQ_MAX_VARIANTS][4];
    for (size_t v = 0; v < nv; v++)
        for (int w = 0; w < 4; w++)
            qv[v][w] = _mm256_set1_epi64x((long long)q[v][w]);

    size_t n = 0;
    for (size_t g = begin; g < end; g += 4) {
        /* 4 rows -> word-major: w[k] holds word k of rows g..g+3, in order. */
        const __m256i *r = (const __m256i *)index__row(rows, g);
        __m256i a = _mm256_load_si256(r), b = _mm256_load_si256(r + 1);
        __m256i c = _mm256_load_si256(r + 2), d = _mm256_load_si256(r + 3);
        __m256i lab = _mm256_unpacklo_epi64(a, b), hab = _mm256_unpackhi_epi64(a, b);
        __m256i lcd = _mm256_unpacklo_epi64(c, d), hcd = _mm256_unpackhi_epi64(c, d);
        __m256i w[4] = {
            _mm256_permute2x128_si256(lab, lcd, 0x20), _mm256_permute2x128_si256(hab, hcd, 0x20),
            _mm256_permute2x128_si256(lab, lcd, 0x31), _mm256_permute2x128_si256(hab, hcd, 0x31)};
        /* Stage 1 (words 0-1, a lower bound; see the AVX-512 kernel), then all 4 words. */
        __m256i dmin = zero;
        for (int stage = 0; stage < 2; stage++) {
            int words = stage ? 4 : 2;
            dmin = _mm256_set1_epi64x(1000);
            for (size_t v = 0; v < nv; v++) {
                __m256i acc = zero;
                for (int k = 0; k < words; k++) {
                    __m256i x = _mm256_xor_si256(w[k], qv[v][k]);
                    __m256i lo = _mm256_and_si256(x, low);
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
                    acc = _mm256_add_epi8(acc, _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                                                               _mm256_shuffle_epi8(lut, hi)));
                }
                /* Bytes hold <= 32 each; VPSADBW sums each row's 8 bytes (<= 256). */
                dmin = _mm256_min_epu32(dmin, _mm256_sad_epu8(acc, zero));
            }
            if (_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(dmin, thr))) == 0xf)
                break; /* every row is out already */
        }
        __m256i gt = _mm256_cmpgt_epi64(dmin, thr);
        unsigned m = ~(unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(gt)) & 0xfu;
        if (end - g < 4)
            m &= (1u << (end - g)) - 1;
        while (m) {
            hits[n++] = (uint32_t)(g + (size_t)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    return n;
}

/* ---- PDQ: AVX-512 VPOPCNTDQ ----------------------------------------------------------------- */

__attribute__((target("avx512f,avx512vpopcntdq"))) static size_t
pdq_scan_avx512(const uint64_t *rows, size_t begin, size_t end, const uint64_t (*q)[4], size_t nv,
                int threshold, uint32_t *hits)
{
    const __m512i thr = _mm512_set1_epi64(threshold);
    const __m512i even = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);
    const __m512i odd = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);
    __m512i qv[INDEX_PDQ_MAX_VARIANTS][4];
    for (size_t v = 0; v < nv; v++)
        for (int w = 0; w < 4; w++)
            qv[v][w] = _mm512_set1_epi64((long long)q[v][w]);

    size_t n = 0;
    for (size_t g = begin; g < end; g += INDEX__GROUP) {
        /* 8 rows (2 per register) -> word-major. After the unpacks and the two-source permutes
         * lane k of every w[] holds row g + {0,2,1,3,4,6,5,7}[k]; the mask is put back in order
         * below. */
        const uint64_t *r = index__row(rows, g);
        __m512i a = _mm512_load_si512(r), b = _mm512_load_si512(r + 8);
        __m512i c = _mm512_load_si512(r + 16), d = _mm512_load_si512(r + 24);
        __m512i lab = _mm512_unpacklo_epi64(a, b), hab = _mm512_unpackhi_epi64(a, b);
        __m512i lcd = _mm512_unpacklo_epi64(c, d), hcd = _mm512_unpackhi_epi64(c, d);
        __m512i w0 = _mm512_permutex2var_epi64(lab, even, lcd);
        __m512i w1 = _mm512_permutex2var_epi64(hab, even, hcd);
        /* Stage 1: distance over words 0-1 is a lower bound of the full one. For unrelated
         * hashes it is ~64 > threshold, so most groups stop here at half the work. */
        __m512i pmin = _mm512_set1_epi64(1000);
        for (size_t v = 0; v < nv; v++)
            pmin = _mm512_min_epu64(
                pmin, _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(w0, qv[v][0])),
                                       _mm512_popcnt_epi64(_mm512_xor_si512(w1, qv[v][1]))));
        if (!_mm512_cmple_epu64_mask(pmin, thr))
            continue;
        __m512i w2 = _mm512_permutex2var_epi64(lab, odd, lcd);
        __m512i w3 = _mm512_permutex2var_epi64(hab, odd, hcd);
        __m512i dmin = _mm512_set1_epi64(1000);
        for (size_t v = 0; v < nv; v++) {
            __m512i d01 = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(w0, qv[v][0])),
                                           _mm512_popcnt_epi64(_mm512_xor_si512(w1, qv[v][1])));
            __m512i d23 = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(w2, qv[v][2])),
                                           _mm512_popcnt_epi64(_mm512_xor_si512(w3, qv[v][3])));
            dmin = _mm512_min_epu64(dmin, _mm512_add_epi64(d01, d23));
        }
        unsigned m = _mm512_cmple_epu64_mask(dmin, thr);
        m = (m & 0x99u) | ((m & 0x22u) << 1) | ((m & 0x44u) >> 1); /* lanes -> row order */
        if (end - g < INDEX__GROUP)
            m &= (1u << (end - g)) - 1;
        while (m) {
            hits[n++] = (uint32_t)(g + (size_t)__builtin_ctz(m));
            m &= m - 1;
        }
    }
    return n;
}

/* ---- faces ---------------------------------------------------------------------------------- */

static void face_dist_portable(const float *rows, size_t n, const float *q, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = rows + i * VG_DESCRIPTOR_DIM;
        float acc[8] = {0};
        for (size_t j = 0; j < VG_DESCRIPTOR_DIM; j += 8)
            for (size_t k = 0; k < 8; k++) {
                float d = r[j + k] - q[j + k];
                acc[k] += d * d;
            }
        out[i] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
}

__attribute__((target("avx2,fma"))) static void face_dist_avx2(const float *rows, size_t n,
                                                               const float *q, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = rows + i * VG_DESCRIPTOR_DIM;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t j = 0; j < VG_DESCRIPTOR_DIM; j += 32) {
            __m256 d0 = _mm256_sub_ps(_mm256_load_ps(r + j), _mm256_load_ps(q + j));
            __m256 d1 = _mm256_sub_ps(_mm256_load_ps(r + j + 8), _mm256_load_ps(q + j + 8));
            __m256 d2 = _mm256_sub_ps(_mm256_load_ps(r + j + 16), _mm256_load_ps(q + j + 16));
            __m256 d3 = _mm256_sub_ps(_mm256_load_ps(r + j + 24), _mm256_load_ps(q + j + 24));
            a0 = _mm256_fmadd_ps(d0, d0, a0);
            a1 = _mm256_fmadd_ps(d1, d1, a1);
            a2 = _mm256_fmadd_ps(d2, d2, a2);
            a3 = _mm256_fmadd_ps(d3, d3, a3);
        }
        __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        out[i] = _mm_cvtss_f32(h);
    }
}

__attribute__((target("avx512f"))) static void face_dist_avx512(const float *rows, size_t n,
                                                                const float *q, float *out)
{
    __m512 qv[8];
    for (int j = 0; j < 8; j++)
        qv[j] = _mm512_load_ps(q + 16 * j);
    for (size_t i = 0; i < n; i++) {
        const float *r = rows + i * VG_DESCRIPTOR_DIM;
        __m512 a[4];
        for (int j = 0; j < 4; j++) {
            __m512 d = _mm512_sub_ps(_mm512_load_ps(r + 16 * j), qv[j]);
            a[j] = _mm512_mul_ps(d, d);
        }
        for (int j = 4; j < 8; j++) {
            __m512 d = _mm512_sub_ps(_mm512_load_ps(r + 16 * j), qv[j]);
            a[j - 4] = _mm512_fmadd_ps(d, d, a[j - 4]);
        }
        out[i] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
    }
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static int pdq_kernel_supported(index_kernel k, unsigned f)
{
    switch (k) {
    case INDEX_KERNEL_PORTABLE:
        return 1;
    case INDEX_KERNEL_POPCNT:
        return (f & VG_CPU_POPCNT) != 0;
    case INDEX_KERNEL_AVX2:
        return (f & VG_CPU_AVX2) != 0;
    case INDEX_KERNEL_AVX512:
        return (f & VG_CPU_AVX512F) && (f & VG_CPU_AVX512VPOPCNTDQ);
    default:
        return 0;
    }
}

int index__pdq_kernel_get(index_kernel want, index_kernel *chosen, index__pdq_scan_fn *fn)
{
    unsigned f = vg_cpu_features();
    index_kernel k = want;
    if (k == INDEX_KERNEL_AUTO) {
        static const index_kernel pref[] = {INDEX_KERNEL_AVX512, INDEX_KERNEL_AVX2,
                                            INDEX_KERNEL_POPCNT, INDEX_KERNEL_PORTABLE};
        for (size_t i = 0; i < VG_ARRAY_LEN(pref); i++)
            if (pdq_kernel_supported(pref[i], f)) {
                k = pref[i];
                break;
            }
    }
    if (!pdq_kernel_supported(k, f))
        return vg_err_set(VG_EUNSUPPORTED, "PDQ kernel %s not available on this CPU (%s)",
                          index_kernel_name(k), vg_cpu_describe());
    static const index__pdq_scan_fn fns[] = {
        [INDEX_KERNEL_PORTABLE] = pdq_scan_portable,
        [INDEX_KERNEL_POPCNT] = pdq_scan_popcnt,
        [INDEX_KERNEL_AVX2] = pdq_scan_avx2,
        [INDEX_KERNEL_AVX512] = pdq_scan_avx512,
    };
    *chosen = k;
    *fn = fns[k];
    return VG_OK;
}

int index__face_kernel_get(index_kernel want, index_kernel *chosen, index__face_dist_fn *fn)
{
    unsigned f = vg_cpu_features();
    int avx512 = (f & VG_CPU_AVX512F) != 0;
    int avx2 = (f & VG_CPU_AVX2) && (f & VG_CPU_FMA);
    index_kernel k = want;
    if (k == INDEX_KERNEL_AUTO)
        k = avx512 ? INDEX_KERNEL_AVX512 : avx2 ? INDEX_KERNEL_AVX2 : INDEX_KERNEL_PORTABLE;
    if (k == INDEX_KERNEL_POPCNT)
        k = INDEX_KERNEL_PORTABLE;
    if ((k == INDEX_KERNEL_AVX512 && !avx512) || (k == INDEX_KERNEL_AVX2 && !avx2) ||
        (k != INDEX_KERNEL_PORTABLE && k != INDEX_KERNEL_AVX2 && k != INDEX_KERNEL_AVX512))
        return vg_err_set(VG_EUNSUPPORTED, "face kernel %s not available on this CPU (%s)",
                          index_kernel_name(k), vg_cpu_describe());
    *chosen = k;
    *fn = k == INDEX_KERNEL_AVX512 ? face_dist_avx512
          : k == INDEX_KERNEL_AVX2 ? face_dist_avx2
                                   : face_dist_portable;
    return VG_OK;
}

const char *index_kernel_name(index_kernel k)
{
    switch (k) {
    case INDEX_KERNEL_AUTO:
        return "auto";
    case INDEX_KERNEL_PORTABLE:
        return "portable";
    case INDEX_KERNEL_POPCNT:
        return "popcnt";
    case INDEX_KERNEL_AVX2:
        return "avx2";
    case INDEX_KERNEL_AVX512:
        return "avx512";
    }
    return "unknown";
}

void index__pdq_words(const uint8_t hash[VG_PDQ_BYTES], uint64_t out[4])
{
    for (int w = 0; w < 4; w++) {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = (x << 8) | hash[w * 8 + i];
        out[w] = x;
    }
}
