/* index: multi-index hashing for PDQ (Norouzi, Punjani, Fleet: "Fast Search in Hamming Space
 * with Multi-Index Hashing", CVPR 2012).
 *
 * A 256-bit hash is cut into m substrings (chunks). If two hashes are within distance T and
 * chunk i is probed at radius r_i, the match is found unless every chunk differs in more than
 * r_i bits, i.e. in sum(r_i + 1) > T bits (the refined pigeonhole bound). So radii with
 * sum(r_i + 1) = T + 1 find every match: with q = (T + 1) / m, the first (T + 1) % m chunks at
 * radius q and the others at q - 1 (-1: not probed). Candidates are verified with the full
 * 256-bit distance.
 *
 * The chunk width follows the tenant's size (index__mih_chunks_for): about log2(n) - 1 bits, so
 * a bucket holds ~2-5 entries. 16 chunks of 16 bits at radius 1 (T = 31) were right up to
 * ~100k entries but at 10M left ~153 entries per bucket, 41.5k candidates per query variant;
 * 12 chunks of 21-22 bits, 8 at radius 2 and 4 at radius 1, verify ~7k from ~2k probed buckets,
 * for 36 bytes of postings per entry instead of 48 and 64 MiB of packed bucket starts (128 MiB
 * as plain 32-bit offsets) instead of 4.
 * The wider chunks come first and so get the larger radius (their buckets are emptier).
 *
 * Each table is direct-addressed (CSR layout), built by a counting sort; the tables are
 * immutable, and index_pdq.c rebuilds them from scratch when enough new entries have piled up in
 * the flat-scanned tail.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <pthread.h>
#include <string.h>

#define PREFETCH_AHEAD 16   /* candidate rows in flight */
#define GATHER_MAX 2048     /* candidate ids gathered per verify pass (8 KiB of stack) */
#define BUILD_LOW_BITS 14   /* buckets per build partition: 64 KiB of counters, in L2 */
#define BUILD_THREADS_MAX 2 /* chunks built in parallel, 8 bytes of scratch per entry each */
#define BUILD_THREADED_MIN ((size_t)1 << 16) /* entries from which a second thread pays */
/* Buckets probed per chunk at radius <= 2: 1 + w + w(w-1)/2 for w <= INDEX__MIH_MAX_BITS. */
#define PROBES_MAX (1 + INDEX__MIH_MAX_BITS + INDEX__MIH_MAX_BITS * (INDEX__MIH_MAX_BITS - 1) / 2)

_Static_assert(INDEX__MIH_MAX_RADIUS == 2, "probe enumeration goes to radius 2");

/* Bits [at, at + width) of the 256-bit value x (width <= 32). */
static inline uint32_t chunk_key(const uint64_t x[4], unsigned at, unsigned width)
{
    unsigned w = at >> 6, s = at & 63;
    uint64_t v = x[w] >> s;
    if (s + width > 64)
        v |= x[w + 1] << (64 - s);
    return (uint32_t)(v & ((1ull << width) - 1));
}

unsigned index__mih_chunks_for(size_t n)
{
    unsigned lg = 0;
    while (lg < 63 && ((size_t)1 << (lg + 1)) <= n)
        lg++;
    unsigned bits = lg > INDEX__MIH_MIN_BITS + 1 ? lg - 1 : INDEX__MIH_MIN_BITS;
    if (bits > INDEX__MIH_MAX_BITS)
        bits = INDEX__MIH_MAX_BITS;
    unsigned m = (256 + bits - 1) / bits;
    return m > INDEX__MIH_MAX_CHUNKS ? INDEX__MIH_MAX_CHUNKS : m;
}

/* Fills chunk c's offsets and ids: a counting sort by the chunk's key, in two levels so that
 * every pass is sequential or stays in cache. A direct counting sort over 2^22 buckets made
 * three random accesses of 16-30 MB tables per entry and chunk (8.5 s CPU for 12 chunks at
 * 10M); instead the entries are first partitioned by the key's high bits into (key, id) pairs
 * (at most 2^8 write streams), then each partition, whose BUILD_LOW_BITS buckets' counters stay
 * in L2, is counted and scattered into its own stretch of offsets and ids. pairs holds n
 * entries, cnt 2^BUILD_LOW_BITS; both scratch. */
static void build_chunk(index__mih *m, unsigned c, const uint64_t *rows, uint64_t *pairs,
                        uint32_t *cnt, uint32_t *off)
{
    size_t n = m->n;
    unsigned w = m->width[c], at = m->bit_at[c], ib = m->id_bytes;
    unsigned hi = w > BUILD_LOW_BITS ? w - BUILD_LOW_BITS : 0, lo = w - hi;
    size_t n_parts = (size_t)1 << hi, part_buckets = (size_t)1 << lo;
    uint32_t part_at[(1u << (INDEX__MIH_MAX_BITS - BUILD_LOW_BITS)) + 1];
    memset(part_at, 0, (n_parts + 1) * sizeof *part_at);
    for (size_t p = 0; p < n; p++)
        part_at[(chunk_key(rows + p * 4, at, w) >> lo) + 1]++;
    for (size_t h = 0; h < n_parts; h++)
        part_at[h + 1] += part_at[h];
    uint32_t cur[1u << (INDEX__MIH_MAX_BITS - BUILD_LOW_BITS)];
    memcpy(cur, part_at, n_parts * sizeof *cur);
    for (size_t p = 0; p < n; p++) {
        uint32_t key = chunk_key(rows + p * 4, at, w);
        pairs[cur[key >> lo]++] = (uint64_t)key << 32 | p;
    }
    uint8_t *ids = m->ids + (size_t)c * n * ib;
    for (size_t h = 0; h < n_parts; h++) {
        memset(cnt, 0, part_buckets * sizeof *cnt);
        for (uint32_t i = part_at[h]; i < part_at[h + 1]; i++)
            cnt[(uint32_t)(pairs[i] >> 32) & (part_buckets - 1)]++;
        uint32_t *o = off + h * part_buckets, run = part_at[h];
        for (size_t k = 0; k < part_buckets; k++) {
            o[k] = run;
            run += cnt[k];
            cnt[k] = o[k];
        }
        for (uint32_t i = part_at[h]; i < part_at[h + 1]; i++) {
            uint32_t id = (uint32_t)pairs[i]; /* little-endian bytes: the low 3 when packed */
            uint8_t le[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16),
                             (uint8_t)(id >> 24)};
            memcpy(ids + (size_t)cnt[(uint32_t)(pairs[i] >> 32) & (part_buckets - 1)]++ * ib, le,
                   ib);
        }
    }
    off[(size_t)1 << w] = (uint32_t)n;
}

/* Stores chunk c's plain starts off[0 .. 2^width] packed (a base per block, 16-bit offsets),
 * or as a plain copy when a block holds 2^16 or more entries. VG_ENOMEM. */
static int pack_starts(index__mih *m, unsigned c, const uint32_t *off)
{
    size_t nb = (size_t)1 << m->width[c];
    uint16_t *rel = m->rel + m->rel_at[c];
    uint32_t *base = m->base + m->base_at[c];
    for (size_t b = 0; b < nb; b += INDEX__MIH_BLOCK) {
        if (off[b + INDEX__MIH_BLOCK] - off[b] > UINT16_MAX) {
            m->plain[c] = vg_malloc((nb + 1) * sizeof *off);
            if (!m->plain[c])
                return VG_ENOMEM;
            memcpy(m->plain[c], off, (nb + 1) * sizeof *off);
            return VG_OK;
        }
        base[b / INDEX__MIH_BLOCK] = off[b];
        for (size_t k = 0; k < INDEX__MIH_BLOCK; k++)
            rel[b + k] = (uint16_t)(off[b + k] - off[b]);
    }
    base[nb / INDEX__MIH_BLOCK] = off[nb];
    rel[nb] = 0;
    return VG_OK;
}

/* Builds chunks first, first + step, ... of m with scratch of its own: (bucket, id) pairs of
 * one chunk, partitioned by the bucket's high bits, the counters of one partition's buckets,
 * and the chunk's plain starts. */
typedef struct build_part {
    index__mih *m;
    const uint64_t *rows;
    unsigned first, step;
    int rc;
} build_part;

static void *build_part_run(void *arg)
{
    build_part *p = arg;
    index__mih *m = p->m;
    if (p->first >= m->n_chunks)
        return NULL;
    size_t n = m->n;
    uint64_t *pairs = n ? vg_malloc(n * sizeof *pairs) : NULL;
    uint32_t *cnt = vg_malloc(((size_t)1 << BUILD_LOW_BITS) * sizeof *cnt);
    uint32_t *off = vg_malloc((((size_t)1 << m->width[0]) + 1) * sizeof *off);
    p->rc = (n && !pairs) || !cnt || !off ? VG_ENOMEM : VG_OK;
    for (unsigned c = p->first; !p->rc && c < m->n_chunks; c += p->step) {
        build_chunk(m, c, p->rows, pairs, cnt, off);
        p->rc = pack_starts(m, c, off);
    }
    vg_free(pairs);
    vg_free(cnt);
    vg_free(off);
    return NULL;
}

int index__mih_build(const uint64_t *rows, size_t n, index__mih **out)
{
    return index__mih_build_with(rows, n, index__mih_chunks_for(n),
                                 n <= INDEX__MIH_PACKED_MAX ? 3 : 4, out);
}

int index__mih_build_with(const uint64_t *rows, size_t n, unsigned n_chunks, unsigned id_bytes,
                          index__mih **out)
{
    if (n >= UINT32_MAX || (id_bytes == 3 && n > INDEX__MIH_PACKED_MAX) ||
        (id_bytes != 3 && id_bytes != 4) || n_chunks < INDEX__MIH_MIN_CHUNKS ||
        n_chunks > INDEX__MIH_MAX_CHUNKS)
        return vg_err_set(VG_ETOOBIG, "multi-index over %zu entries in %u chunks, %u-byte ids", n,
                          n_chunks, id_bytes);
    size_t ids_n, ids_bytes;
    if (vg_mul_size(n, n_chunks, &ids_n) || vg_mul_size(ids_n, id_bytes, &ids_bytes) ||
        vg_add_size(ids_bytes, INDEX__MIH_ID_PAD, &ids_bytes))
        return vg_err_set(VG_ETOOBIG, "multi-index over %zu entries", n);
    index__mih *m = vg_calloc(1, sizeof *m);
    if (!m)
        return vg_err_set(VG_ENOMEM, "multi-index over %zu entries", n);
    m->n = n;
    m->id_bytes = id_bytes;
    m->n_chunks = n_chunks;
    unsigned at = 0, narrow = 256 / n_chunks, wide = 256 % n_chunks;
    for (unsigned c = 0; c < n_chunks; c++) {
        m->bit_at[c] = (uint16_t)at;
        m->width[c] = (uint8_t)(narrow + (c < wide));
        m->rel_at[c] = m->n_rel;
        m->n_rel += ((size_t)1 << m->width[c]) + 1;
        m->base_at[c] = m->n_base;
        m->n_base += ((size_t)1 << m->width[c]) / INDEX__MIH_BLOCK + 1;
        at += m->width[c];
    }
    m->rel = index__alloc_big(m->n_rel * sizeof *m->rel);
    m->base = index__alloc_big(m->n_base * sizeof *m->base);
    m->ids = index__alloc_big(ids_bytes);
    int rc = VG_OK;
    if (!m->rel || !m->base || !m->ids)
        rc = VG_ENOMEM;
    else
        memset(m->ids + ids_bytes - INDEX__MIH_ID_PAD, 0, INDEX__MIH_ID_PAD);
    /* The chunks are independent (each writes its own ids, starts and bases): a large build
     * takes a second thread for every other chunk, halving the longest step of a load at start
     * (2.5-2.9 s of CPU at 10M entries). */
    build_part parts[BUILD_THREADS_MAX];
    unsigned threads = n >= BUILD_THREADED_MIN ? (unsigned)VG_MAX(1, vg_cpu_count()) : 1;
    threads = VG_MIN(threads, (unsigned)BUILD_THREADS_MAX);
    pthread_t th[BUILD_THREADS_MAX];
    unsigned started = 0;
    for (unsigned t = 0; !rc && t < threads; t++) {
        parts[t] = (build_part){m, rows, t, threads, VG_OK};
        if (t > 0 && pthread_create(&th[t], NULL, build_part_run, &parts[t]) == 0)
            started |= 1u << t;
    }
    if (!rc)
        build_part_run(&parts[0]);
    for (unsigned t = 1; !rc && t < threads; t++) {
        if (started >> t & 1)
            pthread_join(th[t], NULL);
        else /* no thread: this one builds that share after its own */
            build_part_run(&parts[t]);
    }
    for (unsigned t = 0; !rc && t < threads; t++)
        if (parts[t].rc)
            rc = parts[t].rc;
    for (unsigned c = 0; c < n_chunks; c++)
        if (m->plain[c])
            m->n_plain += ((size_t)1 << m->width[c]) + 1;
    if (rc) {
        index__mih_free(m);
        return vg_err_set(VG_ENOMEM, "multi-index over %zu entries", n);
    }
    *out = m;
    return VG_OK;
}

void index__mih_free(index__mih *m)
{
    if (!m)
        return;
    vg_free(m->rel);
    vg_free(m->base);
    for (unsigned c = 0; c < INDEX__MIH_MAX_CHUNKS; c++)
        vg_free(m->plain[c]);
    vg_free(m->ids);
    vg_free(m);
}

size_t index__mih_bytes(const index__mih *m)
{
    if (!m)
        return 0;
    return sizeof *m + m->n_rel * sizeof(uint16_t) + m->n_base * sizeof(uint32_t) +
           m->n_plain * sizeof(uint32_t) + m->n_chunks * m->n * m->id_bytes + INDEX__MIH_ID_PAD;
}

int index__mih_max_threshold(const index__mih *m)
{
    return (int)m->n_chunks * (INDEX__MIH_MAX_RADIUS + 1) - 1;
}

typedef struct mih_probe {
    const index__mih *m;
    const uint64_t *rows;
    const uint64_t *q; /* one variant, 4 words */
    int variant;
    int threshold;
    int radius[INDEX__MIH_MAX_CHUNKS]; /* -1: chunk not probed */
    unsigned chunk;
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

/* Verifies candidates c[0..n) of the probe's chunk. They are random rows of an array far larger
 * than the caches, so the loop keeps PREFETCH_AHEAD of them in flight: at 10M entries a query's
 * candidates cost memory latency, not arithmetic. An entry is reported only from the first
 * chunk in which it lies within that chunk's radius, so each (entry, variant) pair comes out
 * once. */
static inline __attribute__((always_inline)) int verify(const mih_probe *pr, const uint32_t *c,
                                                        size_t n, int hw)
{
    const uint64_t *q = pr->q;
    const index__mih *m = pr->m;
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
        for (unsigned s = 0; s < pr->chunk && !seen; s++)
            seen = pop64(chunk_key(x, m->bit_at[s], m->width[s]), hw) <= pr->radius[s];
        if (seen)
            continue;
        if (index__hits_push(pr->out, p, d, pr->variant))
            return VG_ENOMEM;
    }
    return VG_OK;
}

/* Appends the ids of buckets keys[0..nk) of the probe's chunk to the gather buffer (GATHER_MAX),
 * verifying and emptying it whenever it fills: the prefetch window then spans the chunk's
 * buckets instead of restarting cold in each. The buckets' offsets are random reads of a table
 * of up to 16 MiB, so they are all prefetched first. */
static inline __attribute__((always_inline)) int gather(const mih_probe *pr, const uint32_t *keys,
                                                        size_t nk, uint32_t *buf, int hw)
{
    const index__mih *m = pr->m;
    unsigned c = pr->chunk, ib = m->id_bytes;
    const uint8_t *ids = m->ids + (size_t)c * m->n * ib;
    if (m->plain[c]) {
        for (size_t k = 0; k < nk; k++)
            __builtin_prefetch(m->plain[c] + keys[k]);
    } else {
        for (size_t k = 0; k < nk; k++) /* the bases (1/32 of the size) mostly stay cached */
            __builtin_prefetch(m->rel + m->rel_at[c] + keys[k]);
    }
    size_t nb = 0;
    for (size_t k = 0; k < nk; k++) {
        for (uint32_t i = index__mih_start(m, c, keys[k]), e = index__mih_start(m, c, keys[k] + 1);
             i < e; i++) {
            if (nb == GATHER_MAX) {
                int rc = verify(pr, buf, nb, hw);
                nb = 0;
                if (rc)
                    return rc;
            }
            buf[nb++] = index__mih_id(ids, i, ib);
        }
    }
    return verify(pr, buf, nb, hw);
}

static inline __attribute__((always_inline)) int
mih_search_body(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4], size_t nv,
                int threshold, index__hits *out, int hw)
{
    if (threshold < 0 || threshold > index__mih_max_threshold(m))
        return vg_err_set(VG_EINVAL, "threshold %d too large for multi-index search", threshold);
    mih_probe pr = {.m = m, .rows = rows, .threshold = threshold, .out = out};
    /* sum(radius + 1) = threshold + 1: the wider chunks (first) take the larger radius. */
    int per = (threshold + 1) / (int)m->n_chunks, extra = (threshold + 1) % (int)m->n_chunks;
    for (unsigned c = 0; c < m->n_chunks; c++)
        pr.radius[c] = per - 1 + ((int)c < extra);
    uint32_t buf[GATHER_MAX], keys[PROBES_MAX];
    for (size_t v = 0; v < nv; v++) {
        pr.q = q[v];
        pr.variant = (int)v;
        for (unsigned c = 0; c < m->n_chunks; c++) {
            int r = pr.radius[c];
            if (r < 0)
                continue;
            unsigned w = m->width[c];
            uint32_t key = chunk_key(q[v], m->bit_at[c], w);
            size_t nk = 0;
            keys[nk++] = key;
            for (unsigned b1 = 0; r >= 1 && b1 < w; b1++) {
                keys[nk++] = key ^ (1u << b1);
                for (unsigned b2 = b1 + 1; r >= 2 && b2 < w; b2++)
                    keys[nk++] = key ^ (1u << b1) ^ (1u << b2);
            }
            pr.chunk = c;
            int rc = gather(&pr, keys, nk, buf, hw);
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
