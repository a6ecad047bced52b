/*
 * index: the in-memory match index. Tenant-scoped PDQ hashes and face descriptors of protected
 * references, searched on every analysis.
 *
 *   - PDQ: 256-bit hashes searched by Hamming distance (<= threshold, 31 by default) against a
 *     query and its dihedral variants. Flat scan with hardware popcount (AVX-512 VPOPCNTDQ, AVX2
 *     nibble lookup, POPCNT, or plain C), chosen at run time; multi-index hashing (12 to 16
 *     chunks of ~log2(entries) - 1 bits, 16 to 22, probed at radii by the refined pigeonhole
 *     bound) for tenants large enough that it wins.
 *   - Faces: 128-d float descriptors in 64-byte aligned rows, flat SIMD scan of squared L2
 *     distances (strictly < threshold^2, 0.6 by default), top-k references.
 *
 * The caller (the catalog) builds the index from its store at start and mirrors every insert and
 * delete into it. Tenants and profiles are named by opaque string ids of at most VG_ID_MAX - 1
 * bytes; a reference by its key, the caller's integer name for it (1 .. 2^40 - 1; the store's
 * refs.ikey), unique within its tenant, belonging to one profile; a tenant has fewer than 2^24
 * profiles in the index. A reference may have several
 * PDQ hashes and several face descriptors; its entries of one kind are added one after the
 * other. Matches are reported once per reference, with the best distance over its entries and
 * the query variants, by key: the index keeps no reference ids or SHA-256s (at 10M hashes they
 * were over half of its memory), the caller resolves the few keys a search returns.
 *
 * Concurrency: every function is thread-safe. Each tenant is a shard. A query pins the shard's
 * current view (its arrays and published entry counts) under a read lock held for microseconds,
 * then scans without a lock; it never sees a torn entry because entries are written past the
 * published counts and published under the write lock. A delete marks the reference's entries
 * dead under the write lock, so every query that starts after it returns misses them. Writers of
 * one tenant are serialized by a mutex and never wait for scans in progress; array growth,
 * multi-index rebuilds and compaction swap in a new view, and the arrays it replaced are freed when
 * the last query pinning them ends. Deletes leave tombstones; a tenant is compacted once its dead
 * entries reach a quarter of its entries (amortised O(1) per deleted entry). docs/ARCHITECTURE.md
 * and docs/BENCHMARKS.md give the measurements behind this design.
 *
 * Query cost is independent of other tenants' sizes; a tenant with no entries (or unknown)
 * answers with zero matches, not an error.
 */
#ifndef VG_INDEX_H
#define VG_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/vg_types.h"

/* Hashes one query may carry: several hash sets of an image (whole, trimmed, mirrored: see
 * analyze) with their dihedral variants, searched in one pass (one pin, one scan or multi-index
 * probe, one best-per-reference reduction) instead of one search per set. */
#define INDEX_PDQ_MAX_VARIANTS 32
/* Largest tag of a PDQ entry (index_pdq_add): it is stored in one byte. */
#define INDEX_PDQ_MAX_TAG 255
#define INDEX_PDQ_THRESHOLD_DEFAULT 31 /* inclusive: distance <= 31 matches */
#define INDEX_PDQ_MAX_RESULTS_DEFAULT 1000
#define INDEX_FACE_THRESHOLD_DEFAULT 0.6f /* strict: L2 distance < 0.6 matches */
#define INDEX_FACE_TOP_K_DEFAULT 10
#define INDEX_FACE_TOP_K_MAX 10000
/* Entries per tenant (PDQ and face together) before adds fail with VG_ETOOBIG. */
#define INDEX_MAX_ENTRIES_PER_TENANT_DEFAULT ((size_t)64 << 20)
/* INDEX_SEARCH_AUTO builds multi-index tables for tenants with at least this many live PDQ
 * entries, and a query with v variants uses them from mih_min_entries * max(1, min(v, 8)^2 / 2)
 * entries on (32k for 1 variant, 262k for 4, 1M for 8 and more): below that the flat scan is faster
 * (bench/results/index.md measures the crossover). */
#define INDEX_MIH_MIN_ENTRIES_DEFAULT ((size_t)32768)
/* Entries appended since the last multi-index build that are scanned flat before a rebuild; the
 * tail may also grow to 1/8 of the tenant, so a bulk load rebuilds O(log n) times and O(n)
 * work in total. */
#define INDEX_MIH_TAIL_MIN_DEFAULT ((size_t)4096)

/* Scan kernels. AUTO picks the best the CPU has (vg_cpu_features(), so VIGIL_CPU_MASK applies);
 * naming one the CPU lacks fails with VG_EUNSUPPORTED. Face scans have no POPCNT kernel and use
 * the portable one when POPCNT is asked for. */
typedef enum {
    INDEX_KERNEL_AUTO = 0,
    INDEX_KERNEL_PORTABLE, /* plain C */
    INDEX_KERNEL_POPCNT,   /* scalar with the POPCNT instruction */
    INDEX_KERNEL_AVX2,     /* AVX2 (+FMA for faces) */
    INDEX_KERNEL_AVX512,   /* AVX-512F + VPOPCNTDQ (PDQ); AVX-512F (faces) */
} index_kernel;

/* "auto" | "portable" | "popcnt" | "avx2" | "avx512". */
const char *index_kernel_name(index_kernel k);

typedef enum {
    INDEX_SEARCH_AUTO = 0, /* multi-index hashing where it wins (see mih_min_entries) */
    INDEX_SEARCH_FLAT,     /* always scan every hash */
    INDEX_SEARCH_MIH,      /* multi-index hashing whenever the threshold allows (<= 3 x the
                            * chunk count - 1: 47 below 2^19 entries, 35 from 2^23) */
} index_search;

typedef struct index_config {
    index_kernel pdq_kernel;       /* AUTO by default */
    index_kernel face_kernel;      /* AUTO by default */
    index_search pdq_search;       /* AUTO by default */
    size_t mih_min_entries;        /* 0 = INDEX_MIH_MIN_ENTRIES_DEFAULT */
    size_t mih_tail_min;           /* 0 = INDEX_MIH_TAIL_MIN_DEFAULT */
    size_t max_entries_per_tenant; /* 0 = INDEX_MAX_ENTRIES_PER_TENANT_DEFAULT */
} index_config;

typedef struct index_db index_db;

/* cfg is borrowed (NULL = all defaults). *out is owned; release with index_free.
 * Errors: VG_EINVAL (bad config), VG_EUNSUPPORTED (kernel missing on this CPU), VG_ENOMEM. */
int index_new(const index_config *cfg, index_db **out);
/* No other call on ix may be running or start. NULL is a no-op. */
void index_free(index_db *ix);

/* The kernels actually in use (never AUTO). */
index_kernel index_pdq_kernel(const index_db *ix);
index_kernel index_face_kernel(const index_db *ix);

/* ---- updates (all ids borrowed, copied) ----------------------------------------------------- */

/* Adds one PDQ hash (quality 0..100) of reference `ref` with a tag (0..INDEX_PDQ_MAX_TAG)
 * reported back in index_pdq_match.tag when that entry is the reference's best: the caller's
 * name for which part of the reference image the hash is of (analyze uses pdq_region; 0 for the
 * whole image). The reference is created on its first entry. A reference's PDQ entries are
 * added one after the other: another entry for a reference that is not the one of the tenant's
 * last PDQ entry is VG_ECONFLICT, as is an entry under another profile than its first.
 * Errors: VG_EINVAL (empty or over-long id, key out of range, quality or tag out of range),
 * VG_ECONFLICT, VG_ETOOBIG (tenant full: entries or profiles), VG_ENOMEM. On error nothing is
 * modified. */
int index_pdq_add(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                  const uint8_t hash[VG_PDQ_BYTES], int quality, int tag);

/* Adds one face descriptor of a reference (copied; every component must be finite). Same rules
 * and errors as index_pdq_add, for the tenant's face entries. */
int index_face_add(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                   const float descriptor[VG_DESCRIPTOR_DIM]);

/* 1 when the tenant has this live reference in the index, else 0 (also for bad ids). The
 * catalog's change-log sync asks it to skip a change the node already applied itself. */
int index_has_reference(index_db *ix, const char *tenant, uint64_t ref);
/* Remove every entry of a reference / of every reference of a profile / everything of a tenant.
 * Visible to every query that starts after the call returns. VG_ENOTFOUND when absent. A
 * profile's removal passes over the tenant's entries once (there is no per-profile list). */
int index_remove_reference(index_db *ix, const char *tenant, uint64_t ref);
int index_remove_profile(index_db *ix, const char *tenant, const char *profile);
int index_remove_tenant(index_db *ix, const char *tenant);

/* ---- bulk load ------------------------------------------------------------------------------ */

/* Between index_bulk_begin and index_bulk_end (the catalog's build from the store at start),
 * adds build no multi-index tables: the entries they append are scanned flat until
 * index_bulk_end builds each tenant's tables once, over all of its entries. Searches stay
 * correct (only slower) meanwhile. Without it, a tenant growing by adds rebuilds its tables
 * whenever the flat tail passes 1/8 of it, ~9 builds of the final size in all (a 10M-hash load
 * spent most of its time there). index_bulk_end errors: VG_ENOMEM (that tenant's entries stay
 * in the flat tail; the index is still correct). Not nested; other calls may run meanwhile. */
void index_bulk_begin(index_db *ix);
int index_bulk_end(index_db *ix);

/* ---- PDQ search ----------------------------------------------------------------------------- */

typedef struct index_pdq_query {
    /* borrowed; variants[0] is the hash as computed, [1..] its dihedral variants, in the order
     * the caller wants reported back in index_pdq_match.dihedral */
    const uint8_t (*variants)[VG_PDQ_BYTES];
    size_t n_variants;      /* 1..INDEX_PDQ_MAX_VARIANTS */
    int threshold;          /* inclusive max distance, 0..256 (0 = exact hashes only) */
    const char *profile_id; /* borrowed; NULL = every profile of the tenant */
    int min_quality;        /* skip entries with a lower quality; 0 = none skipped */
    size_t max_results;     /* 0 = INDEX_PDQ_MAX_RESULTS_DEFAULT; the best are kept */
    uint64_t tags; /* 0: entries of every tag; else only entries whose tag t is under 64 with
                    * bit t set (a part of an image compared only with the same part) */
} index_pdq_query;

/* A query with the defaults (threshold 31); set variants/n_variants and what else you need. */
index_pdq_query index_pdq_query_defaults(void);

typedef struct index_pdq_match {
    char profile_id[VG_ID_MAX];
    uint64_t reference; /* its key */
    int distance;       /* Hamming bits, best over the reference's hashes and the variants */
    int dihedral;       /* index into the query's variants of the best (lowest index on ties; among
                         * a reference's entries at the same distance and variant, the lowest tag) */
    int quality;        /* quality of the matching entry */
    int tag;            /* tag of the matching entry */
} index_pdq_match;

typedef struct index_pdq_result {
    index_pdq_match *matches; /* owned; by ascending distance, then reference key */
    size_t n;
    int truncated; /* 1 when more than max_results references matched */
} index_pdq_result;

/* Every reference of the tenant within the threshold. An unknown tenant or profile gives zero
 * matches. *out is overwritten (release with index_pdq_result_free). Errors: VG_EINVAL,
 * VG_ENOMEM (then *out is empty). */
int index_pdq_search(index_db *ix, const char *tenant, const index_pdq_query *q,
                     index_pdq_result *out);
void index_pdq_result_free(index_pdq_result *r);

/* ---- face search ---------------------------------------------------------------------------- */

typedef struct index_face_query {
    const float *descriptor; /* borrowed, VG_DESCRIPTOR_DIM finite floats */
    float threshold;         /* strict max L2 distance; <= 0 = INDEX_FACE_THRESHOLD_DEFAULT */
    size_t top_k;            /* 0 = INDEX_FACE_TOP_K_DEFAULT; at most INDEX_FACE_TOP_K_MAX */
    const char *profile_id;  /* borrowed; NULL = every profile of the tenant */
} index_face_query;

typedef struct index_face_match {
    char profile_id[VG_ID_MAX];
    uint64_t reference; /* its key */
    float distance;     /* L2, best over the reference's descriptors */
} index_face_match;

typedef struct index_face_result {
    index_face_match *matches; /* owned; by ascending distance, then reference key */
    size_t n;
} index_face_result;

/* The top_k references whose best descriptor is strictly closer than the threshold. Same
 * conventions as index_pdq_search. */
int index_face_search(index_db *ix, const char *tenant, const index_face_query *q,
                      index_face_result *out);
void index_face_result_free(index_face_result *r);

/* ---- accounting ----------------------------------------------------------------------------- */

typedef struct index_stats {
    size_t tenants;
    size_t pdq_entries;  /* live */
    size_t face_entries; /* live */
    size_t references;   /* live */
    size_t profiles;     /* live */
    size_t dead_entries; /* tombstones awaiting compaction */
    size_t mih_tenants;  /* tenants currently searched with multi-index hashing */
    size_t bytes;        /* heap bytes held (capacities, tables, maps, arrays retired but still
                          * pinned by queries) */
    uint64_t pdq_flat_searches, pdq_mih_searches, face_searches; /* since index_new */
    /* Search latency of the whole index (also when stats are asked for one tenant): from taking
     * the tenant's view to releasing it; searches of a tenant without entries are not timed. */
    vg_lat_snapshot pdq_search_latency, face_search_latency;
} index_stats;

/* Whole index (tenant = NULL) or one tenant (VG_ENOTFOUND if unknown). A consistent view per
 * tenant; tenants are visited one after the other. */
int index_stats_get(index_db *ix, const char *tenant, index_stats *out);

#endif /* VG_INDEX_H */
