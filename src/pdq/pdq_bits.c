/*
 * PDQ hashes as values: 64-hex text, bit counts, the reference's ordering, and Hamming distance
 * with the best popcount the CPU offers (chosen per call from vg_cpu_features(), which is a
 * cached load, so there is no dispatch state of our own).
 */
#include "pdq/pdq.h"

#include "core/core.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define PDQ_X86 1
#include <immintrin.h>
#endif

/* ---- text ----------------------------------------------------------------------------- */

char *pdq_hash_to_hex(const pdq_hash *h, char out[PDQ_HEX_BYTES])
{
    static const char digits[] = "0123456789abcdef";
    char *p = out;
    for (int word = 3; word >= 0; word--)
        for (int shift = 60; shift >= 0; shift -= 4)
            *p++ = digits[(h->w[word] >> shift) & 0xf];
    *p = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pdq_hash_from_hex(const char *hex, pdq_hash *out)
{
    if (!hex || !out)
        return vg_err_set(VG_EINVAL, "pdq: NULL hash text");
    pdq_hash h = {{0, 0, 0, 0}};
    for (int i = 0; i < PDQ_HEX_CHARS; i++) {
        int v = hex_value(hex[i]); /* stops at the NUL of a short string: -1 */
        if (v < 0)
            return vg_err_set(VG_EINVAL, "pdq: hash text must be 64 hex digits (bad char at %d)",
                              i);
        int word = 3 - i / 16;
        h.w[word] = (h.w[word] << 4) | (uint64_t)v;
    }
    if (hex[PDQ_HEX_CHARS] != '\0')
        return vg_err_set(VG_EINVAL, "pdq: hash text longer than 64 hex digits");
    *out = h;
    return VG_OK;
}

/* ---- counts and order ----------------------------------------------------------------- */

/* Bit-parallel popcount, for CPUs without the instruction (and as the tests' yardstick). */
static int popcount64_swar(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

int pdq_hash_norm(const pdq_hash *h)
{
    return popcount64_swar(h->w[0]) + popcount64_swar(h->w[1]) + popcount64_swar(h->w[2]) +
           popcount64_swar(h->w[3]);
}

int pdq_hash_compare(const pdq_hash *a, const pdq_hash *b)
{
    for (int i = 0; i < 16; i++) {
        unsigned wa = (unsigned)(a->w[i >> 2] >> (16 * (i & 3))) & 0xffffu;
        unsigned wb = (unsigned)(b->w[i >> 2] >> (16 * (i & 3))) & 0xffffu;
        if (wa != wb)
            return wa < wb ? -1 : 1;
    }
    return 0;
}

/* ---- distance ------------------------------------------------------------------------- */

static int distance_swar(const pdq_hash *a, const pdq_hash *b)
{
    return popcount64_swar(a->w[0] ^ b->w[0]) + popcount64_swar(a->w[1] ^ b->w[1]) +
           popcount64_swar(a->w[2] ^ b->w[2]) + popcount64_swar(a->w[3] ^ b->w[3]);
}

static void many_portable(const pdq_hash *q, const pdq_hash *hs, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint16_t)distance_swar(q, &hs[i]);
}

#ifdef PDQ_X86
/* pdq_distance_inline compiled for POPCNT: four popcnt instructions. */
__attribute__((target("popcnt"))) static int distance_popcnt(const pdq_hash *a, const pdq_hash *b)
{
    return pdq_distance_inline(a, b);
}

__attribute__((target("popcnt"))) static void many_popcnt(const pdq_hash *q, const pdq_hash *hs,
                                                          size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint16_t)pdq_distance_inline(q, &hs[i]);
}

/* Eight hashes per step: each 512-bit load holds two hashes; VPOPCNTQ counts the 64-bit words,
 * two shuffles add each hash's four counts into every one of its lanes, and two permutes gather
 * the eight totals into one vector that is narrowed to 16 bits and stored. */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void
many_avx512(const pdq_hash *q, const pdq_hash *hs, size_t n, uint16_t *out)
{
    const __m256i q256 = _mm256_loadu_si256((const __m256i *)(const void *)q);
    const __m512i qq = _mm512_inserti64x4(_mm512_castsi256_si512(q256), q256, 1);
    const __m512i pick_pairs = _mm512_setr_epi64(0, 4, 8, 12, 0, 0, 0, 0);
    const __m512i pick_final = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i c[4];
        for (int k = 0; k < 4; k++) {
            __m512i v = _mm512_loadu_si512((const void *)(hs + i + 2 * k));
            __m512i x = _mm512_popcnt_epi64(_mm512_xor_si512(v, qq));
            x = _mm512_add_epi64(x, _mm512_shuffle_epi32(x, _MM_PERM_BADC));
            x = _mm512_add_epi64(x, _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
            c[k] = x; /* lane 0: total of hash 2k, lane 4: total of hash 2k+1 */
        }
        __m512i lo = _mm512_permutex2var_epi64(c[0], pick_pairs, c[1]); /* h0 h1 h2 h3 . . . . */
        __m512i hi = _mm512_permutex2var_epi64(c[2], pick_pairs, c[3]); /* h4 h5 h6 h7 . . . . */
        __m512i all = _mm512_permutex2var_epi64(lo, pick_final, hi);
        _mm_storeu_si128((__m128i *)(void *)(out + i), _mm512_cvtepi64_epi16(all));
    }
    for (; i < n; i++)
        out[i] = (uint16_t)distance_popcnt(q, &hs[i]);
}
#endif

int pdq_distance(const pdq_hash *a, const pdq_hash *b)
{
#ifdef PDQ_X86
    if (vg_cpu_features() & VG_CPU_POPCNT)
        return distance_popcnt(a, b);
#endif
    return distance_swar(a, b);
}

int pdq_popcnt_available(pdq_popcnt_impl impl)
{
    unsigned f = vg_cpu_features();
    switch (impl) {
    case PDQ_POPCNT_PORTABLE:
        return 1;
#ifdef PDQ_X86
    case PDQ_POPCNT_HW:
        return (f & VG_CPU_POPCNT) != 0;
    case PDQ_POPCNT_AVX512:
        return (f & VG_CPU_POPCNT) && (f & VG_CPU_AVX512F) && (f & VG_CPU_AVX512VPOPCNTDQ);
#endif
    default:
        (void)f;
        return 0;
    }
}

int pdq_distance_many_impl(pdq_popcnt_impl impl, const pdq_hash *q, const pdq_hash *hs, size_t n,
                           uint16_t *out)
{
    if (!pdq_popcnt_available(impl))
        return vg_err_set(VG_EUNSUPPORTED, "pdq: popcount tier %d not available on this CPU",
                          (int)impl);
    switch (impl) {
#ifdef PDQ_X86
    case PDQ_POPCNT_AVX512:
        many_avx512(q, hs, n, out);
        break;
    case PDQ_POPCNT_HW:
        many_popcnt(q, hs, n, out);
        break;
#endif
    default:
        many_portable(q, hs, n, out);
        break;
    }
    return VG_OK;
}

void pdq_distance_many(const pdq_hash *q, const pdq_hash *hs, size_t n, uint16_t *out)
{
    pdq_popcnt_impl impl = PDQ_POPCNT_PORTABLE;
    if (pdq_popcnt_available(PDQ_POPCNT_AVX512))
        impl = PDQ_POPCNT_AVX512;
    else if (pdq_popcnt_available(PDQ_POPCNT_HW))
        impl = PDQ_POPCNT_HW;
    (void)pdq_distance_many_impl(impl, q, hs, n, out);
}
