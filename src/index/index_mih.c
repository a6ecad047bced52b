/* index: multi-index hashing for PDQ (Norouzi, Punjani, Fleet: "Fast Search in Hamming Space
 * with Multi-Index Hashing", CVPR 2012).
 *
 * A 256-bit hash is cut into 16 substrings of 16 bits. If two hashes are within distance T, then
 * by pigeonhole at least one substring pair differs in at most floor(T / 16) bits (16 substrings
 * each differing in > floor(T/16) bits would add up to > T). So probing, in each of the 16
 * tables, every bucket within radius r = floor(T / 16) of the query's substring finds every
 * match: r = 1 (17 buckets per table) for the default T = 31. Candidates are verified with the
 * full 256-bit distance.
 *
 * Each table is direct-addressed (65536 buckets, CSR layout), built by a counting sort; the
 * tables are immutable, and index_pdq.c rebuilds them from scratch when enough new entries have
 * piled up in the flat-scanned tail.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

#define OFFSETS_PER_SLOT ((size_t)INDEX__MIH_BUCKETS + 1)
#define PREFETCH_AHEAD 16 /* candidate rows in flight */
#define GATHER_MAX 2048   /* candidate ids gathered per verify pass (8 KiB of stack) */

static inline unsigned slot_key(uint64_t word, int s)
{
    return (unsigned)(word >> ((s % 4) * 16)) & 0xffffu;
}

int index__mih_build(const uint64_t *rows, size_t n, index__mih **out)
{
    return index__mih_build_width(rows, n, n <= INDEX__MIH_PACKED_MAX ? 3 : 4, out);
}

int index__mih_build_width(const uint64_t *rows, size_t n, unsigned id_bytes, index__mih **out)
{
    if (n >= UINT32_MAX || (id_bytes == 3 && n > INDEX__MIH_PACKED_MAX) ||
        (id_bytes != 3 && id_bytes != 4))
        return vg_err_set(VG_ETOOBIG, "multi-index over %zu entries in %u-byte ids", n, id_bytes);
    size_t ids_n, ids_bytes;
    if (vg_mul_size(n, INDEX__MIH_SLOTS, &ids_n) || vg_mul_size(ids_n, id_bytes, &ids_bytes) ||
        vg_add_size(ids_bytes, INDEX__MIH_ID_PAD, &ids_bytes))
        return vg_err_set(VG_ETOOBIG, "multi-index over %zu entries", n);
    index__mih *m = vg_calloc(1, sizeof *m);
    /* cursors for the 4 slots of one word */
    uint32_t *cursor = vg_malloc(4 * (size_t)INDEX__MIH_BUCKETS * sizeof(uint32_t));
    if (m) {
        m->offsets = index__alloc_big(INDEX__MIH_SLOTS * OFFSETS_PER_SLOT * sizeof(uint32_t));
        m->ids = index__alloc_big(ids_bytes);
    }
    if (!m || !cursor || !m->offsets || !m->ids) {
        vg_free(cursor);
        index__mih_free(m);
        return vg_err_set(VG_ENOMEM, "multi-index over %zu entries", n);
    }
    m->n = n;
    m->id_bytes = id_bytes;
    memset(m->ids + ids_bytes - INDEX__MIH_ID_PAD, 0, INDEX__MIH_ID_PAD);
    memset(m->offsets, 0, INDEX__MIH_SLOTS * OFFSETS_PER_SLOT * sizeof(uint32_t));
    /* Counting sort, word by word: a word holds 4 slots, whose counters (4 x 256 KiB) fit in
     * L2 while one pass counts them, and whose id arrays take one more pass to fill; the rows
     * are read 8 times instead of 32. */
    for (int w = 0; w < 4; w++) {
        uint32_t *off = m->offsets + (size_t)w * 4 * OFFSETS_PER_SLOT;
        for (size_t p = 0; p < n; p++) {
            uint64_t word = rows[p * 4 + (size_t)w];
            for (int j = 0; j < 4; j++)
                off[(size_t)j * OFFSETS_PER_SLOT + ((word >> (16 * j)) & 0xffffu) + 1]++;
        }
        for (int j = 0; j < 4; j++) {
            uint32_t *o = off + (size_t)j * OFFSETS_PER_SLOT;
            for (size_t k = 0; k < INDEX__MIH_BUCKETS; k++)
                o[k + 1] += o[k];
            memcpy(cursor + (size_t)j * INDEX__MIH_BUCKETS, o,
                   INDEX__MIH_BUCKETS * sizeof(uint32_t));
        }
        for (size_t p = 0; p < n; p++) {
            uint64_t word = rows[p * 4 + (size_t)w];
            for (int j = 0; j < 4; j++) {
                uint8_t *ids = m->ids + (size_t)(w * 4 + j) * n * id_bytes;
                uint32_t at =
                    cursor[(size_t)j * INDEX__MIH_BUCKETS + ((word >> (16 * j)) & 0xffffu)]++;
                uint32_t id = (uint32_t)p; /* little-endian bytes: the low 3 when packed */
                uint8_t le[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16),
                                 (uint8_t)(id >> 24)};
                memcpy(ids + (size_t)at * id_bytes, le, id_bytes);
            }
        }
    }
    vg_free(cursor);
    *out = m;
    return VG_OK;
}

void index__mih_free(index__mih *m)
{
    if (!m)
        return;
    vg_free(m->offsets);
    vg_free(m->ids);
    vg_free(m);
}

size_t index__mih_bytes(const index__mih *m)
{
    if (!m)
        return 0;
    return sizeof *m + INDEX__MIH_SLOTS * OFFSETS_PER_SLOT * sizeof(uint32_t) +
           INDEX__MIH_SLOTS * m->n * m->id_bytes + INDEX__MIH_ID_PAD;
}

typedef struct mih_probe {
    const index__mih *m;
    const uint64_t *rows;
    const uint64_t *q; /* one variant, 4 words */
    int variant;
    int threshold;
    int radius;
    int slot;
    index__hits *out;
} mih_probe;

static inline __attribute__((always_inline)) int pop64(uint64_t x, int hw)
{
    if (hw)
        return __builtin_popcountll(x);
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

/* Verifies candidates c[0..n) of the probe's slot. They are random rows of an array far larger
 * than the caches, so the loop keeps PREFETCH_AHEAD of them in flight: at 10M entries a query's
 * ~330k candidates cost memory latency, not arithmetic. An entry is reported only from the first
 * slot in which it lies within the radius, so each (entry, variant) pair comes out once. */
static inline __attribute__((always_inline)) int verify(const mih_probe *pr, const uint32_t *c,
                                                        size_t n, int hw)
{
    const uint64_t *q = pr->q;
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
        __builtin_prefetch(index__row(pr->rows, c[i]));
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch(index__row(pr->rows, c[i + PREFETCH_AHEAD]));
        uint32_t p = c[i];
        const uint64_t *b = index__row(pr->rows, p);
        uint64_t x[4] = {b[0] ^ q[0], b[1] ^ q[1], b[2] ^ q[2], b[3] ^ q[3]};
        int d = pop64(x[0], hw) + pop64(x[1], hw) + pop64(x[2], hw) + pop64(x[3], hw);
        if (d > pr->threshold)
            continue;
        int seen = 0;
        for (int s = 0; s < pr->slot && !seen; s++)
            seen = pop64(slot_key(x[s / 4], s), hw) <= pr->radius;
        if (seen)
            continue;
        if (index__hits_push(pr->out, p, d, pr->variant))
            return VG_ENOMEM;
    }
    return VG_OK;
}

/* Appends the ids of bucket `key` of the probe's slot to the gather buffer (GATHER_MAX), verifying
 * and emptying it whenever it fills: the prefetch window then spans the slot's buckets (17 at
 * radius 1) instead of restarting cold in each. */
static inline __attribute__((always_inline)) int gather(const mih_probe *pr, unsigned key,
                                                        uint32_t *buf, size_t *nb, int hw)
{
    const uint32_t *off = pr->m->offsets + (size_t)pr->slot * OFFSETS_PER_SLOT;
    unsigned ib = pr->m->id_bytes;
    const uint8_t *ids = pr->m->ids + (size_t)pr->slot * pr->m->n * ib;
    for (uint32_t i = off[key], e = off[key + 1]; i < e; i++) {
        if (*nb == GATHER_MAX) {
            int rc = verify(pr, buf, *nb, hw);
            *nb = 0;
            if (rc)
                return rc;
        }
        buf[(*nb)++] = index__mih_id(ids, i, ib);
    }
    return VG_OK;
}

static inline __attribute__((always_inline)) int
mih_search_body(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4], size_t nv,
                int threshold, index__hits *out, int hw)
{
    mih_probe pr = {.m = m, .rows = rows, .threshold = threshold, .out = out};
    pr.radius = threshold / INDEX__MIH_SLOTS;
    if (threshold < 0 || pr.radius > INDEX__MIH_MAX_RADIUS)
        return vg_err_set(VG_EINVAL, "threshold %d too large for multi-index search", threshold);
    uint32_t buf[GATHER_MAX];
    for (size_t v = 0; v < nv; v++) {
        pr.q = q[v];
        pr.variant = (int)v;
        for (int s = 0; s < INDEX__MIH_SLOTS; s++) {
            pr.slot = s;
            unsigned key = slot_key(q[v][s / 4], s);
            size_t nb = 0;
            int rc = gather(&pr, key, buf, &nb, hw);
            for (int b1 = 0; rc == VG_OK && pr.radius >= 1 && b1 < 16; b1++) {
                rc = gather(&pr, key ^ (1u << b1), buf, &nb, hw);
                for (int b2 = b1 + 1; rc == VG_OK && pr.radius >= 2 && b2 < 16; b2++)
                    rc = gather(&pr, key ^ (1u << b1) ^ (1u << b2), buf, &nb, hw);
            }
            if (rc == VG_OK)
                rc = verify(&pr, buf, nb, hw);
            if (rc)
                return vg_err_set(rc, "multi-index candidates");
        }
    }
    return VG_OK;
}

static int mih_search_portable(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4],
                               size_t nv, int threshold, index__hits *out)
{
    return mih_search_body(m, rows, q, nv, threshold, out, 0);
}

__attribute__((target("popcnt"))) static int mih_search_popcnt(const index__mih *m,
                                                               const uint64_t *rows,
                                                               const uint64_t (*q)[4], size_t nv,
                                                               int threshold, index__hits *out)
{
    return mih_search_body(m, rows, q, nv, threshold, out, 1);
}

int index__mih_search(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4], size_t nv,
                      int threshold, int use_popcnt, index__hits *out)
{
    return use_popcnt ? mih_search_popcnt(m, rows, q, nv, threshold, out)
                      : mih_search_portable(m, rows, q, nv, threshold, out);
}
