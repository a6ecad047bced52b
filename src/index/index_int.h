/*
 * index internals shared by the files of the module:
 *
 *   index.c          lifecycle, tenants (the tenant map), profile records, the add protocol
 *                    shared by both kinds, stats;
 *   index_view.c     pinned views: publish, retire, reclaim, pins, array growth;
 *   index_pdq.c      PDQ adds, flat and multi-index search, multi-index rebuilds;
 *   index_face.c     face descriptor adds and search;
 *   index_compact.c  removals (tombstones) and compaction;
 *   index_topk.c     best candidate per reference, then the k best: shared by both searches;
 *   index_kernels.c  the scan kernels; index_mih.c the multi-index tables; index_map.c the
 *                    string -> handle maps and the reference key sets.
 *
 * Names: public ones carry index_, the ones shared between these files index__, file-local ones
 * are static and unprefixed.
 *
 * PDQ hashes are stored as rows of 4 64-bit words (32 bytes, 32-byte aligned), so that a
 * multi-index candidate is verified with one cache line. The SIMD kernels load 8 (AVX-512) or 4
 * (AVX2) rows and transpose them in registers to word-major order, after which a group's
 * distances to a query are 4 XORs, 4 popcounts and 3 adds per variant with no shuffles; the
 * transpose is paid once per group, not per variant. Capacities are multiples of
 * INDEX__GROUP; the SIMD kernels are only given whole groups of published rows (a partial last
 * group goes to a scalar kernel), so rows past the last entry are never read.
 *
 * Face descriptors are rows of VG_DESCRIPTOR_DIM floats; the array is 64-byte aligned, so every row
 * (512 bytes) is too.
 *
 * References have no records: each entry carries its reference's key (the caller's integer
 * name, the store's refs.ikey) and its profile's handle in one word, and a removal marks the
 * entries dead (INDEX__DEAD in the quality byte, or face_alive cleared). A reference's entries of
 * one kind are contiguous (adds of one reference come together, compaction keeps the order), so a
 * per-kind key set, key -> the position of its first entry, finds all of them. At 10M entries
 * the reference records (a 48-byte id, the 32-byte SHA-256, links, counts: 104 bytes) and their
 * string map were over half of the index's 2 GB; an entry now costs its 32-byte row, 10 bytes
 * of reference word (key and profile), quality and tag, the multi-index's postings and offsets, and
 * ~7 bytes of key set per reference. Ids and SHA-256s are resolved from the store for the few
 * references a search returns (analyze's resolver).
 *
 * Concurrency design: pinned views.
 *   A shard's arrays (PDQ rows, face rows, entry keys, profiles and flags, profile records,
 *   multi-index tables) are described by a view. A query takes the shard's read lock
 *   only long enough to pin the current view (a reference count) and copy its published entry
 *   counts, then scans without any lock and unpins. Writers (one at a time per shard, under
 *   write_mutex) append rows and records past the published counts, where no query looks, and
 *   publish them by raising the counts under the write lock; deletes mark the reference's entries
 *   dead (atomic byte stores) under the write lock. So the write lock is held for nanoseconds and
 * waits only for pins in progress, never for a scan: a write is not delayed by long queries, and
 * queries are not delayed by writes (bench/results/index.md compares this with holding the read
 * lock for the whole scan). A delete is visible to every query that starts after it returns,
 *   because that query's read lock acquisition is ordered after the delete's write lock release.
 *   Growth, multi-index rebuilds and compaction build new arrays on the side and swap in a new
 *   view; the old view is retired, and its replaced arrays are freed once no query pins it or
 *   any older view (retired views are reclaimed oldest first).
 *
 * Invariants:
 *   - rows and records below the published counts never change while a view is current, except
 *     the atomic dead marks;
 *   - a reference is live iff its key is in pdq_keys or face_keys; the set holds the position of
 *     its first entry of that kind, and its entries of that kind are the live run of positions
 *     from there with its key; dead entries are never alive again (compaction drops them);
 *   - a profile is alive iff it is in profile_map, iff it has at least one live entry (n_live);
 *   - mih, when present, covers the PDQ entries [0, mih->n); [mih->n, pdq_n) is the flat tail.
 */
#ifndef VG_INDEX_INT_H
#define VG_INDEX_INT_H

#include "index/index.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define INDEX__NONE UINT32_MAX
#define INDEX__GROUP 8           /* PDQ rows per kernel step; capacities are multiples of it */
#define INDEX__PDQ_MIN_CAP 64    /* entries; a multiple of INDEX__GROUP */
#define INDEX__FACE_MIN_CAP 16   /* entries */
#define INDEX__RECORD_MIN_CAP 16 /* profiles or tenants */
#define INDEX__DEAD 0xff         /* pdq_quality of a removed entry (qualities are 0..100) */
#define INDEX__VIEW_ARRAYS 8     /* arrays a view owns, besides the multi-index */

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
void index__pdq_words(const uint8_t hash[VG_PDQ_BYTES], uint64_t out[4]);

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

/* ---- kernel hits ---------------------------------------------------------------------------- */

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

int index__hits_push(index__hits *h, uint32_t pos, int distance, int variant); /* VG_ENOMEM */

/* ---- multi-index hashing -------------------------------------------------------------------- */

/* A 256-bit hash is cut into n_chunks substrings (chunks) of about log2(entries) - 1 bits, 16 to
 * 22 (16 chunks of 16 bits below 2^19 entries, 12 of 21-22 bits at 10M), so that a bucket holds
 * a few entries whatever the tenant's size; the wider chunks come first. */
#define INDEX__MIH_MAX_CHUNKS 16 /* of 16 bits: tenants below 2^19 entries */
#define INDEX__MIH_MIN_CHUNKS 12 /* of 21-22 bits: 128 MiB of bucket offsets */
#define INDEX__MIH_MIN_BITS 16
#define INDEX__MIH_MAX_BITS 22
#define INDEX__MIH_MAX_RADIUS 2 /* thresholds up to n_chunks * 3 - 1 (47 with 16 chunks) */

/* Immutable once built: for each chunk c, the entries [0, n) bucketed by their substring in that
 * chunk (CSR: the ids of bucket `key` are ids[c * n + start(key) .. start(key + 1))). The ids
 * take n_chunks postings per entry, the biggest part of the index after the rows, so they are
 * packed in 3 little-endian bytes while n <= 2^24 (36 bytes per entry with 12 chunks), 4 above.
 * The bucket starts are packed too: a 32-bit base per block of INDEX__MIH_BLOCK buckets and a
 * 16-bit offset from it per bucket, 2.06 bytes per bucket instead of 4 (64 instead of 128 MiB
 * at 10M entries, 12 chunks of 2^21-2^22 buckets); a chunk whose block would hold 2^16 or more
 * entries (a tenant of many identical hashes) keeps plain 32-bit starts instead. */
#define INDEX__MIH_BLOCK 64
typedef struct index__mih {
    size_t n;
    unsigned n_chunks;
    uint16_t bit_at[INDEX__MIH_MAX_CHUNKS]; /* first bit of chunk c (bit b: word b / 64) */
    uint8_t width[INDEX__MIH_MAX_CHUNKS];   /* bits of chunk c, non-increasing in c */
    /* chunk c: packed, rel + rel_at[c] (2^width + 1) and base + base_at[c] (2^width / BLOCK +
     * 1), or plain[c] (2^width + 1 starts) when it is not NULL */
    size_t rel_at[INDEX__MIH_MAX_CHUNKS], base_at[INDEX__MIH_MAX_CHUNKS];
    uint16_t *rel;
    uint32_t *base;
    uint32_t *plain[INDEX__MIH_MAX_CHUNKS];
    size_t n_rel, n_base, n_plain; /* entries allocated (n_plain: over every plain chunk) */
    uint8_t *ids;                  /* n_chunks * n ids of id_bytes each, + INDEX__MIH_ID_PAD */
    unsigned id_bytes;             /* 3 or 4 */
} index__mih;

/* Where bucket `key` of chunk c starts in the chunk's ids (key <= 2^width[c]). */
static inline uint32_t index__mih_start(const index__mih *m, unsigned c, uint32_t key)
{
    if (m->plain[c])
        return m->plain[c][key];
    return m->base[m->base_at[c] + key / INDEX__MIH_BLOCK] + m->rel[m->rel_at[c] + key];
}

/* Bytes past the last packed id, so that every id is read with one 4-byte load. */
#define INDEX__MIH_ID_PAD 1
/* Entries up to which ids are packed in 3 bytes. */
#define INDEX__MIH_PACKED_MAX ((size_t)1 << 24)

/* Id i of a packed or plain id array. */
static inline uint32_t index__mih_id(const uint8_t *ids, size_t i, unsigned id_bytes)
{
    uint32_t x;
    memcpy(&x, ids + i * id_bytes, sizeof x);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap32(x);
#endif
    return id_bytes == 4 ? x : x & 0xffffffu;
}

/* The chunk count the tables over n entries use: ceil(256 / clamp(floor(log2 n) - 1, 16, 22)). */
unsigned index__mih_chunks_for(size_t n);
/* Builds the tables over entries [0, n) (n < 2^32) with index__mih_chunks_for(n) chunks. *out
 * owned (index__mih_free). VG_ENOMEM, VG_ETOOBIG. */
int index__mih_build(const uint64_t *rows, size_t n, index__mih **out);
/* The same with the chunk count (INDEX__MIH_MIN_CHUNKS..INDEX__MIH_MAX_CHUNKS) and the id width
 * (3: n <= INDEX__MIH_PACKED_MAX, or 4) forced, for tests of every layout. */
int index__mih_build_with(const uint64_t *rows, size_t n, unsigned n_chunks, unsigned id_bytes,
                          index__mih **out);
void index__mih_free(index__mih *m);
size_t index__mih_bytes(const index__mih *m);
/* The largest threshold the tables answer exactly: n_chunks * (INDEX__MIH_MAX_RADIUS + 1) - 1. */
int index__mih_max_threshold(const index__mih *m);
/* Appends to out every (entry, variant) pair with entry < m->n and distance <= threshold
 * (0 <= threshold <= index__mih_max_threshold(m), else VG_EINVAL), each pair once.
 * use_popcnt selects the POPCNT instruction for verification. VG_ENOMEM. */
int index__mih_search(const index__mih *m, const uint64_t *rows, const uint64_t (*q)[4], size_t nv,
                      int threshold, int use_popcnt, index__hits *out);

/* ---- string -> handle maps ------------------------------------------------------------------ */

/* Open addressing with linear probing and backward-shift deletion; a slot holds the key's hash
 * (high 32 bits) and handle + 1 (low 32 bits, 0 = empty). Keys live in the caller's records and
 * are read through key_fn, so the map never owns strings. Load factor <= 3/4. */
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

/* Key sets: reference key -> position of its first entry of one kind. Open addressing with
 * linear probing and backward-shift deletion; a slot holds position + 1 (0 = empty) and the
 * key is read back from the kind's reference words (keys), so a slot is 4 bytes (at 10M references,
 * 64 MiB instead of the 128 MiB that key and position would take). Load factor <= 3/4. Writer only.
 */
typedef struct index__keyset {
    uint32_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
} index__keyset;

/* Position of key's first entry, or INDEX__NONE. keys: the kind's entry keys (borrowed). */
uint32_t index__keyset_find(const index__keyset *s, uint64_t key, const uint64_t *keys);
/* Makes room for n_more inserts. VG_ENOMEM (set unchanged). */
int index__keyset_reserve(index__keyset *s, size_t n_more, const uint64_t *keys);
/* The key of keys[pos] must be absent and room reserved. */
void index__keyset_insert(index__keyset *s, uint32_t pos, const uint64_t *keys);
/* Removes key; returns its position or INDEX__NONE. */
uint32_t index__keyset_remove(index__keyset *s, uint64_t key, const uint64_t *keys);
void index__keyset_free(index__keyset *s);
size_t index__keyset_bytes(const index__keyset *s);

/* ---- best candidate per reference, top k ---------------------------------------------------- */

/* One matching entry of the reference keyed `ref`: dist orders matches (PDQ: Hamming bits;
 * faces: squared L2), tie orders one reference's candidates at equal dist (PDQ: the query
 * variant, lowest first), aux and profile ride along (PDQ: aux is the entry's quality | its tag
 * << 8). */
typedef struct index__cand {
    uint64_t ref;
    float dist;
    uint16_t tie;
    uint16_t aux;
    uint32_t profile; /* the reference's profile handle, reported with it */
} index__cand;

/* Growable, owned by one query; free v with vg_free. */
typedef struct index__cands {
    index__cand *v;
    size_t n, cap;
} index__cands;

int index__cands_push(index__cands *c, index__cand x); /* VG_ENOMEM (c unchanged) */

/* Reduces c[0..n) to the best candidate of each reference (lowest dist, then lowest tie), and
 * moves the k best of those, by ascending dist, then reference key, to c[0..k'), in that order;
 * returns k' = min(k, references). *n_refs (may be NULL) gets the number of distinct
 * references. c is reordered in place; n and k may be 0. No allocation. */
size_t index__topk(index__cand *c, size_t n, size_t k, size_t *n_refs);

/* ---- shards, views and records -------------------------------------------------------------- */

typedef struct index__profile {
    char id[VG_ID_MAX]; /* immutable */
    size_t n_live;      /* writer only: live entries of both kinds */
    uint8_t alive;      /* writer only */
} index__profile;

/* What a query pins. The arrays are owned by the shard's current view; a retired view owns the
 * arrays its successor replaced (garbage) and frees them when reclaimed. */
typedef struct index__view {
    _Atomic long pins;    /* +1 while current, +1 per query using it */
    size_t pdq_n, face_n; /* published counts; changed under the write lock */
    uint64_t *pdq_rows;   /* pdq_cap rows, 64-byte aligned */
    uint64_t *pdq_ref;    /* the entry's reference key and profile (index__ref_word) */
    uint8_t *pdq_quality; /* 0..100, or INDEX__DEAD (index__dead_*: atomic byte accesses) */
    uint8_t *pdq_tag;     /* index_pdq_add's tag of each entry */
    float *face_rows;     /* face_cap rows, 64-byte aligned */
    uint64_t *face_ref;
    uint8_t *face_alive; /* 1, or 0 once removed (atomic byte accesses) */
    index__profile *profiles;
    size_t pdq_cap, face_cap, profiles_cap;
    index__mih *mih;
    void *garbage[INDEX__VIEW_ARRAYS];
    size_t n_garbage, garbage_bytes;
    index__mih *garbage_mih;
    struct index__view *next_retired;
} index__view;

/* One tenant. Queries: pin under `lock` (shared). Writers: hold write_mutex throughout, which
 * guards every field below `cur` and lets them read the current view's arrays freely; they
 * take `lock` exclusively only to publish (counts, flags, profile_map, cur). Freed only by
 * index_free. */
typedef struct index__shard {
    char id[VG_ID_MAX];
    pthread_rwlock_t lock;
    pthread_mutex_t write_mutex;
    index__view *cur;                  /* replaced under lock */
    index__map profile_map;            /* queries look up under lock (shared); changed under lock */
    index__keyset pdq_keys, face_keys; /* writer only: live references' first entries */
    /* The sets cover the runs that start below pdq_keyed / face_keyed; a bulk load appends
     * past them (the tail, searched linearly) and index_bulk_end catches them up at once: one
     * insert per reference at random into up to 64 MiB was 10% of a 10M load. */
    size_t pdq_keyed, face_keyed;
    size_t pdq_n, dead_pdq; /* pdq_n: rows written (== cur->pdq_n between calls) */
    size_t face_n, dead_face;
    size_t live_refs; /* keys in pdq_keys or face_keys */
    uint64_t max_key; /* the largest key ever added: a larger one is new */
    size_t n_profiles, live_profiles;
    index__view *retired_head, *retired_tail; /* oldest first */
    size_t retired_bytes;
    /* searches by path, for stats; relaxed atomics (queries share the shard) */
    _Atomic uint64_t pdq_flat_searches, pdq_mih_searches, face_searches;
} index__shard;

struct index_db {
    index_config cfg; /* resolved: no zero fields */
    index_kernel pdq_kernel, face_kernel;
    index__pdq_scan_fn pdq_scan;
    index__pdq_scan_fn pdq_scan_scalar; /* for partial groups at the published end */
    index__face_dist_fn face_dist;
    int mih_popcnt;
    _Atomic int bulk; /* index_bulk_begin .. index_bulk_end: adds defer multi-index builds */
    pthread_rwlock_t tenants_lock; /* guards shards, n_shards, tenant_map */
    index__shard **shards;
    size_t n_shards, shards_cap;
    index__map tenant_map;
    /* Search latency over every tenant (pin to release: the scan itself), for the metrics. */
    vg_lat_hist pdq_search_latency, face_search_latency;
};

static inline size_t index__pdq_row_bytes(size_t cap)
{
    return cap * 4 * sizeof(uint64_t);
}

static inline size_t index__face_row_bytes(size_t cap)
{
    return cap * VG_DESCRIPTOR_DIM * sizeof(float);
}

/* Bytes per entry of every per-entry array: row, reference word, quality and tag / alive. */
#define INDEX__PDQ_ENTRY_BYTES (4 * sizeof(uint64_t) + sizeof(uint64_t) + 2)
#define INDEX__FACE_ENTRY_BYTES (VG_DESCRIPTOR_DIM * sizeof(float) + sizeof(uint64_t) + 1)

/* An entry's reference word: the reference's key (< 2^INDEX__KEY_BITS) over its profile's handle
 * (< 2^INDEX__PROFILE_BITS), 8 bytes instead of 12 (38 MiB at 10M entries). */
#define INDEX__KEY_BITS 40
#define INDEX__PROFILE_BITS 24
static inline uint64_t index__ref_word(uint64_t key, uint32_t profile)
{
    return key << INDEX__PROFILE_BITS | profile;
}

static inline uint64_t index__ref_key(uint64_t word)
{
    return word >> INDEX__PROFILE_BITS;
}

static inline uint32_t index__ref_profile(uint64_t word)
{
    return (uint32_t)(word & ((1u << INDEX__PROFILE_BITS) - 1));
}

/* Dead marks are written under the write lock while queries read them without a lock: relaxed
 * atomic byte accesses (a query that starts after the removal returns is ordered after it by
 * the lock; one already scanning may see either value). */
static inline int index__pdq_live(const uint8_t *quality, size_t p)
{
    return __atomic_load_n(&quality[p], __ATOMIC_RELAXED) != INDEX__DEAD;
}

static inline void index__pdq_kill(uint8_t *quality, size_t p)
{
    __atomic_store_n(&quality[p], (uint8_t)INDEX__DEAD, __ATOMIC_RELAXED);
}

static inline int index__face_live(const uint8_t *alive, size_t p)
{
    return __atomic_load_n(&alive[p], __ATOMIC_RELAXED) != 0;
}

static inline void index__face_kill(uint8_t *alive, size_t p)
{
    __atomic_store_n(&alive[p], (uint8_t)0, __ATOMIC_RELAXED);
}

static inline void index__wrlock(index__shard *sh)
{
    pthread_rwlock_wrlock(&sh->lock);
}

static inline void index__unlock(index__shard *sh)
{
    pthread_rwlock_unlock(&sh->lock);
}

/* ---- index.c: ids, tenants, profiles, the add protocol ------------------------------------ */

/* VG_EINVAL (with a message naming `what`) unless id is a non-empty string < VG_ID_MAX. */
int index__check_id(const char *what, const char *id);
/* VG_EINVAL unless tenant and profile are valid ids and ref > 0. */
int index__check_add(const char *tenant, const char *profile, uint64_t ref);
/* Map keys, read from the records of the view (ctx) the map belongs with. */
const char *index__profile_key(const void *ctx, uint32_t handle);
/* The tenant's shard, or NULL. Shards live until index_free. */
index__shard *index__shard_find(index_db *ix, const char *tenant);

typedef enum { INDEX__KIND_PDQ, INDEX__KIND_FACE } index__kind;

/* A kind's reference words, entry count and dead marks. */
static inline uint64_t *index__kind_refs(const index__view *v, index__kind k)
{
    return k == INDEX__KIND_PDQ ? v->pdq_ref : v->face_ref;
}

static inline size_t index__kind_n(const index__shard *sh, index__kind k)
{
    return k == INDEX__KIND_PDQ ? sh->pdq_n : sh->face_n;
}

static inline int index__kind_live(const index__view *v, index__kind k, size_t p)
{
    return k == INDEX__KIND_PDQ ? index__pdq_live(v->pdq_quality, p)
                                : index__face_live(v->face_alive, p);
}

static inline void index__kind_kill(index__view *v, index__kind k, size_t p)
{
    if (k == INDEX__KIND_PDQ)
        index__pdq_kill(v->pdq_quality, p);
    else
        index__face_kill(v->face_alive, p);
}

/* An add between index__add_begin and index__add_end. */
typedef struct index__add {
    index__shard *sh;
    uint32_t profile; /* the profile handle; its record is written, maybe not yet published */
    int new_profile;
    uint32_t phash;  /* the profile id's hash, when new_profile */
    int new_ref;     /* the key is new in this kind's set (its first entry of the kind) */
    int counted_ref; /* the key is new in both sets: live_refs goes up */
    int bulk;        /* the key set is not kept up (bulk load, or a tail before it) */
} index__add;

/* Ids checked by the caller. Takes the shard's write_mutex (creating the shard), checks the
 * tenant's limit and that `ref` is new or the reference of the kind's last entry under the same
 * profile (VG_ECONFLICT otherwise), makes room for one entry of `kind` and writes a new profile
 * record past the published ones if needed. On success the mutex is held and the caller writes
 * its row at sh->pdq_n or sh->face_n (with key and a->profile) and calls index__add_end, then
 * unlocks. On
 * error nothing is modified and the mutex is not held. */
int index__add_begin(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                     index__kind kind, index__add *a);
/* Counts the written row, publishes it and the profile under the write lock and records a new
 * key (unless a bulk load defers it). The caller still holds write_mutex and unlocks it. Cannot
 * fail. */
void index__add_end(index__add *a, index__kind kind, uint64_t ref);

/* The position of the first entry of ref's live run of a kind, or INDEX__NONE. Puts a bulk
 * load's tail into the key sets first (or, out of memory, searches it). write_mutex held. */
uint32_t index__run_find(index__shard *sh, index__kind kind, uint64_t ref);
/* index__run_find, and out of the key set (the caller kills the run). */
uint32_t index__run_forget(index__shard *sh, index__kind kind, uint64_t ref);
/* Puts the tail's runs into the key sets. VG_ENOMEM (they stay in the tail: still found). */
int index__keys_catch_up(index__shard *sh);

/* ---- index_view.c: pinned views (writer functions: write_mutex held) ------------------------ */

/* Bytes of a view and every array it owns. */
size_t index__view_bytes(const index__view *v);
/* Frees a view with every array it owns (a current or never published view). NULL is a no-op. */
void index__view_free_all(index__view *v);
/* Frees a shard's current and retired views (index_free: nothing pins them). */
void index__views_free(index__shard *sh);
/* A new view over the same arrays, pinned once (current). NULL on out of memory. */
index__view *index__view_clone(const index__view *v);
/* Frees retired views from the oldest while nothing pins them. */
void index__reclaim(index__shard *sh);
/* Makes nv current (with new_profiles, if not NULL, as profile_map) and retires the old view,
 * which takes the listed garbage (at most INDEX__VIEW_ARRAYS arrays, and garbage_mih). */
void index__view_publish(index__shard *sh, index__view *nv, void **garbage, size_t n_garbage,
                         size_t garbage_bytes, index__mih *garbage_mih, index__map *new_profiles);
/* Room for `need` entries / one more profile record: the arrays are replaced, not realloc'd
 * (queries may be scanning the old ones, which go to the retired view).
 * VG_ETOOBIG, VG_ENOMEM (nothing changed). */
int index__grow_pdq(index__shard *sh, size_t need);
int index__grow_face(index__shard *sh, size_t need);
int index__grow_profiles(index__shard *sh);
/* A view's per-entry arrays of one kind, of cap entries (v's pointers for that kind must be
 * NULL or already owned elsewhere); VG_ENOMEM leaves them NULL. _free frees them. */
int index__pdq_arrays_alloc(index__view *v, size_t cap);
void index__pdq_arrays_free(index__view *v);
int index__face_arrays_alloc(index__view *v, size_t cap);
void index__face_arrays_free(index__view *v);

/* A query's hold on a shard. */
typedef struct index__pin {
    index__shard *sh;
    index__view *v;
    size_t pdq_n, face_n;
    uint32_t profile; /* the filter's handle, INDEX__NONE for none */
    int unknown_profile;
} index__pin;

/* profile_id borrowed (NULL = no filter). Thread-safe; never blocks on a scan. */
void index__pin_take(index__shard *sh, const char *profile_id, index__pin *p);
void index__pin_release(index__pin *p);

/* ---- index_pdq.c ---------------------------------------------------------------------------- */

/* Whether a tenant with live_pdq live PDQ entries should have multi-index tables. */
int index__want_mih(const index_db *ix, size_t live_pdq);

#endif /* VG_INDEX_INT_H */
