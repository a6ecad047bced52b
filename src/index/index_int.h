/*
 * index internals shared by index.c, the scan kernels, the multi-index tables and the id maps.
 *
 * PDQ hashes are stored as rows of 4 64-bit words (32 bytes, 32-byte aligned), so that a
 * multi-index candidate is verified with one cache line. The SIMD kernels load 8 (AVX-512) or 4
 * (AVX2) rows and transpose them in registers to word-major order, after which a group's
 * distances to a query are 4 XORs, 4 popcounts and 3 adds per variant with no shuffles; the
 * transpose is paid once per group, not per variant. Capacities are multiples of
 * INDEX__GROUP; the SIMD kernels are only given whole groups of published rows (a partial last
 * group goes to a scalar kernel), so rows past the last entry are never read.
 *
 * Face descriptors are rows of INDEX_FACE_DIM floats; the array is 64-byte aligned, so every row
 * (512 bytes) is too.
 */
#ifndef VG_INDEX_INT_H
#define VG_INDEX_INT_H

#include "index/index.h"

#include <stddef.h>
#include <stdint.h>

#define INDEX__NONE UINT32_MAX
#define INDEX__GROUP 8      /* PDQ rows per kernel step; capacities are multiples of it */
#define INDEX__MIH_SLOTS 16 /* 16-bit substrings of a 256-bit hash */
#define INDEX__MIH_BUCKETS 65536
#define INDEX__MIH_MAX_RADIUS 2 /* thresholds up to 16 * 3 - 1 = 47 */

static inline const uint64_t *index__row(const uint64_t *rows, size_t pos)
{
    return rows + pos * 4;
}

/* Allocation for the big arrays (rows, multi-index tables): 64-byte aligned; from 4 MiB up,
 * 2 MiB aligned and marked for transparent huge pages, which cuts page faults when the array
 * is first filled and TLB misses when it is scanned or probed at random. Free with vg_free.
 * NULL on out of memory. */
void *index__alloc_big(size_t bytes);

/* Hash bytes -> 4 words (little-endian loads; any fixed mapping keeps Hamming distances). */
void index__pdq_words(const uint8_t hash[INDEX_PDQ_BYTES], uint64_t out[4]);

/* ---- kernels -------------------------------------------------------------------------------- */

/* Writes to hits the positions p in [begin, end) whose distance to some variant q[0..nv) is
 * <= threshold, ascending; returns how many. begin is a multiple of INDEX__GROUP; hits holds at
 * least end - begin entries. rows, q and hits are borrowed. */
typedef size_t (*index__pdq_scan_fn)(const uint64_t *rows, size_t begin, size_t end,
                                     const uint64_t (*q)[4], size_t nv, int threshold,
                                     uint32_t *hits);

/* out[i] = squared L2 distance between rows[i] and q, for i < n. All borrowed; rows and q
 * 64-byte aligned. */
typedef void (*index__face_dist_fn)(const float *rows, size_t n, const float *q, float *out);

/* Resolve a kernel request: *chosen is never AUTO. VG_EUNSUPPORTED when the CPU lacks it. */
int index__pdq_kernel_get(index_kernel want, index_kernel *chosen, index__pdq_scan_fn *fn);
int index__face_kernel_get(index_kernel want, index_kernel *chosen, index__face_dist_fn *fn);

/* ---- candidate buffer ----------------------------------------------------------------------- */

typedef struct index__hit {
    uint32_t pos;
    uint16_t distance;
    uint16_t variant;
} index__hit;

/* Growable, owned by one query. */
typedef struct index__hits {
    index__hit *v;
    size_t n, cap;
} index__hits;

int index__hits_push(index__hits *h, uint32_t pos, int distance, int variant);

/* ---- multi-index hashing -------------------------------------------------------------------- */

/* Immutable once built: for each of the 16 slots, the entries [0, n) bucketed by their 16-bit
 * substring in that slot (CSR: offsets[s * (65536 + 1) + key] .. next is the range of ids). */
typedef struct index__mih {
    size_t n;
    uint32_t *offsets; /* INDEX__MIH_SLOTS * (INDEX__MIH_BUCKETS + 1) */
    uint32_t *ids;     /* INDEX__MIH_SLOTS * n */
} index__mih;

/* Builds the tables over entries [0, n) (n < 2^32). *out owned (index__mih_free). VG_ENOMEM. */
int index__mih_build(const uint64_t *rows, size_t n, index__mih **out);
void index__mih_free(index__mih *m);
size_t index__mih_bytes(const index__mih *m);
/* Appends to out every (entry, variant) pair with entry < m->n and distance <= threshold
 * (threshold <= 16 * (INDEX__MIH_MAX_RADIUS + 1) - 1). A pair may appear more than once.
 * use_popcnt selects the POPCNT instruction for verification. VG_ENOMEM. */
int index__mih_search(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4], size_t nv,
                      int threshold, int use_popcnt, index__hits *out);

/* ---- string -> handle maps ------------------------------------------------------------------ */

/* Open addressing with linear probing and backward-shift deletion; a slot holds the key's hash
 * (high 32 bits) and handle + 1 (low 32 bits, 0 = empty). Keys live in the caller's records and
 * are read through key_fn, so the map never owns strings. Load factor <= 1/2. */
typedef const char *(*index__key_fn)(const void *ctx, uint32_t handle);

typedef struct index__map {
    uint64_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
} index__map;

uint32_t index__hash_str(const char *s);
/* Handle of key, or INDEX__NONE. */
uint32_t index__map_find(const index__map *m, const char *key, uint32_t hash, index__key_fn kf,
                         const void *ctx);
/* Makes room for n_more inserts, so that index__map_insert cannot fail. VG_ENOMEM (map unchanged).
 */
int index__map_reserve(index__map *m, size_t n_more);
/* Key must be absent and room reserved. */
void index__map_insert(index__map *m, uint32_t hash, uint32_t handle);
/* Removes key; returns its handle or INDEX__NONE. */
uint32_t index__map_remove(index__map *m, const char *key, uint32_t hash, index__key_fn kf,
                           const void *ctx);
void index__map_free(index__map *m);
size_t index__map_bytes(const index__map *m);

#endif /* VG_INDEX_INT_H */
