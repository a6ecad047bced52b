/*
 * cache: the tiered feature cache between `analyze` and the expensive part of the pipeline
 * (decode, PDQ, faces). It stores opaque values (the caller serialises the features) under a
 * 32-byte key derived from the image's SHA-256, the model version and the optimisation level.
 * Features are cached, never matches, so a hit can never hide a newly protected work.
 *
 *   get:  L1 (memory, sharded LRU) -> L2 (disk, LRU by bytes) -> L3 (Redis, TTL)
 *         a hit fills the tiers above it;
 *   put:  L1 synchronously; L2 and L3 on one background writer thread (each configurable), so
 *         neither a busy disk nor a slow or dead Redis sits on the request path.
 *
 * A cache never fails a request: tier errors (disk full, corrupt entry, Redis down) are counted
 * in the stats and turn into misses. Corrupt or torn entries (L2 files, L3 values) carry a
 * header with magic, version, key and CRC32C; they are detected on read, deleted, counted and
 * never served. When Redis keeps failing a circuit breaker stops paying its timeouts, then
 * probes it again after a back-off and reconnects when it is back.
 *
 * Thread-safety: a `cache` is shared by every request thread; all functions except
 * cache_open/cache_close may be called concurrently. Values are immutable refcounted handles, so a
 * value returned by cache_get stays valid after a concurrent eviction until the caller releases
 * it.
 */
#ifndef VG_CACHE_H
#define VG_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* ---- keys ----------------------------------------------------------------------------------- */

#define CACHE_KEY_BYTES 32
/* Largest value any tier stores (a features blob is a few hundred bytes to ~70 KB with many faces);
 * bigger puts are refused with VG_ETOOBIG, bigger entries on disk or in Redis are corrupt. */
#define CACHE_MAX_VALUE_BYTES (16u * 1024u * 1024u)
/* Longest model version string accepted in a key. */
#define CACHE_MAX_MODEL_VERSION_BYTES 256

typedef struct cache_key {
    uint8_t bytes[CACHE_KEY_BYTES];
} cache_key;

/* key = SHA-256("vigil.cache.key.v1" NUL || image_sha256[32] || u32le(len(model_version)) ||
 *               model_version || u32le(level))
 * Length-prefixing the version makes the encoding unambiguous; hashing gives a fixed-size,
 * uniformly distributed key that shards evenly and names files and Redis keys safely.
 * image_sha256 and model_version are borrowed. VG_EINVAL on NULL or an over-long version. */
int cache_key_make(const uint8_t image_sha256[32], const char *model_version, uint32_t level,
                   cache_key *out);
/* Longest scope string accepted in a key (tenant ids are far shorter). */
#define CACHE_MAX_SCOPE_BYTES 256
/* The same key inside a scope (a tenant id): scope NULL or "" gives cache_key_make's key, any
 * other scope hashes a separate preimage,
 *   SHA-256("vigil.cache.key.scoped.v1" NUL || u32le(len(scope)) || scope || image_sha256[32] ||
 *           u32le(len(model_version)) || model_version || u32le(level))
 * so one tenant's entries are never found under another tenant's keys: a hit would tell the
 * asker that someone else uploaded exactly these bytes. Borrowed inputs; VG_EINVAL on NULL or an
 * over-long scope or version. */
int cache_key_make_scoped(const uint8_t image_sha256[32], const char *scope,
                          const char *model_version, uint32_t level, cache_key *out);
/* 64 lower-case hex digits + NUL into out (65 bytes). */
void cache_key_hex(const cache_key *key, char out[65]);

/* ---- values --------------------------------------------------------------------------------- */

/* An immutable, reference-counted byte string. Every tier and every reader holds its own
 * reference; the last cache_val_unref frees it. */
typedef struct cache_val cache_val;

/* Copies len bytes from data (borrowed) into a new value with one reference (returns owned).
 * VG_ETOOBIG above CACHE_MAX_VALUE_BYTES, VG_ENOMEM. len 0 is allowed. */
int cache_val_new(const void *data, size_t len, cache_val **out);
/* Borrowed pointer to the bytes, valid while the caller holds a reference. */
const uint8_t *cache_val_data(const cache_val *v);
size_t cache_val_len(const cache_val *v);
/* Adds a reference; returns v. Thread-safe. */
cache_val *cache_val_ref(cache_val *v);
/* Drops a reference (NULL is a no-op). Thread-safe. */
void cache_val_unref(cache_val *v);

/* ---- configuration -------------------------------------------------------------------------- */

#define CACHE_DEFAULT_L1_MAX_ENTRIES 1000 /* the reference product's figure */
#define CACHE_DEFAULT_L1_MAX_BYTES (64u * 1024u * 1024u)
#define CACHE_DEFAULT_L1_SHARDS 16
#define CACHE_DEFAULT_L2_MAX_BYTES (1024ull * 1024ull * 1024ull)
#define CACHE_DEFAULT_L3_TTL_S 3600
#define CACHE_DEFAULT_L3_CONNECT_TIMEOUT_MS 50
#define CACHE_DEFAULT_L3_COMMAND_TIMEOUT_MS 20
#define CACHE_DEFAULT_L3_POOL_SIZE 4
#define CACHE_DEFAULT_L3_BREAKER_FAILURES 5
#define CACHE_DEFAULT_L3_BREAKER_BACKOFF_MS 1000
#define CACHE_DEFAULT_L3_BREAKER_BACKOFF_MAX_MS 30000
#define CACHE_DEFAULT_ASYNC_QUEUE 1024
#define CACHE_MAX_ASYNC_QUEUE 65536
#define CACHE_DEFAULT_L3_PREFIX "vigil:fc:1:"

typedef struct cache_config {
    /* L1: 0 entries disables it. Both bounds hold for the whole tier at every moment. */
    size_t l1_max_entries;
    size_t l1_max_bytes; /* value bytes + per-entry bookkeeping */
    unsigned l1_shards;  /* upper bound; rounded down to a power of two, fewer for small bounds */
    /* L2: NULL disables it. Borrowed during cache_open only. Created (0700) if absent. */
    const char *l2_dir;
    uint64_t l2_max_bytes; /* sum of entry file sizes */
    /* Free bytes L2 leaves on its file system for everything else (the database first): when a
     * write would go below it, L2 evicts its oldest entries to make room and, if that is not
     * enough, skips the write (counted as nospace). 0 = no reserve. */
    uint64_t l2_min_free_bytes;
    int l2_async_put; /* 1: L2 writes go through the background writer */
    /* L3: NULL or "" disables it. redis://[[user]:password@]host[:port][/db]. Borrowed during
     * cache_open only. */
    const char *l3_url;
    const char *l3_prefix; /* key prefix in Redis (borrowed during open); NULL = default */
    uint32_t l3_ttl_s;
    uint32_t l3_connect_timeout_ms;
    uint32_t l3_command_timeout_ms;
    unsigned l3_pool_size;          /* connections shared by all threads */
    unsigned l3_breaker_failures;   /* consecutive failures that open the breaker */
    uint32_t l3_breaker_backoff_ms; /* first open period; doubles after each failed probe */
    uint32_t l3_breaker_backoff_max_ms;
    int l3_async_put; /* 1: L3 writes go through the background writer */
    /* Background writer: puts waiting for it (the L2 and L3 writes of one value count once);
     * beyond it a put's async writes are dropped and counted (a cache may forget). */
    unsigned async_queue;
} cache_config;

/* Fills every field with the defaults above (async L2 and L3 writes); L2 and L3 disabled
 * (NULL dir / url). */
void cache_config_init(cache_config *cfg);

/* ---- statistics ----------------------------------------------------------------------------- */

typedef enum {
    CACHE_TIER_MISS = 0, /* in stats: the facade as a whole (every cache_get) */
    CACHE_TIER_L1 = 1,
    CACHE_TIER_L2 = 2,
    CACHE_TIER_L3 = 3,
} cache_tier;
#define CACHE_TIERS 4
/* "miss" | "l1" | "l2" | "l3" (static strings, the names analyze_timings.cache_tier uses). */
const char *cache_tier_name(cache_tier t);

/* Latency histogram: bucket i counts lookups that took [2^i, 2^(i+1)) ns (bucket 0 also 0 ns,
 * the last bucket everything above). */
#define CACHE_LAT_BUCKETS 40

typedef struct cache_tier_stats {
    uint64_t hits, misses;
    uint64_t errors;                /* I/O or protocol failures (the lookup turned into a miss) */
    uint64_t corrupt;               /* entries that failed validation: deleted, never served */
    uint64_t puts;                  /* successful stores */
    uint64_t evictions;             /* entries removed to respect the bounds */
    uint64_t rejected;              /* values larger than the tier can hold */
    uint64_t skipped;               /* L3: calls not made because the breaker was open */
    uint64_t dropped;               /* async writes dropped because the writer queue was full */
    uint64_t nospace;               /* L2: writes skipped to keep the free-space reserve */
    uint64_t entries, bytes;        /* current contents (L3: unknown, 0) */
    uint64_t lat_count, lat_sum_ns; /* every lookup that reached this tier, hit or miss */
    uint64_t lat_buckets[CACHE_LAT_BUCKETS];
} cache_tier_stats;

typedef enum {
    CACHE_BREAKER_CLOSED = 0,
    CACHE_BREAKER_OPEN = 1,
    CACHE_BREAKER_HALF_OPEN = 2,
} cache_breaker_state;

typedef struct cache_stats {
    cache_tier_stats tier[CACHE_TIERS]; /* indexed by cache_tier; [0] = whole cache_get */
    int tier_enabled[CACHE_TIERS];
    cache_breaker_state l3_breaker;
    uint64_t l3_breaker_opens; /* times the breaker opened */
    uint64_t l3_reconnects;    /* successful (re)connections */
    uint64_t async_pending;    /* puts waiting for the background writer */
    unsigned l1_shards;
} cache_stats;

/* Estimated q-quantile (0..1) of a tier's lookup latency in ns from its histogram (geometric
 * midpoint of the bucket); 0 when nothing was recorded. */
double cache_stats_latency_ns(const cache_tier_stats *t, double q);

/* ---- the cache ------------------------------------------------------------------------------ */

typedef struct cache cache;

/* Opens the configured tiers (cfg borrowed). L2 rebuilds its index from the directory (LRU order
 * from file mtimes), deletes leftover temp files and torn (too short) entries. L3 does not need
 * Redis to be up: an unreachable Redis is a miss until it comes back. Errors: VG_EINVAL (bad
 * bounds, bad URL), VG_EIO (directory unusable), VG_ENOMEM. */
int cache_open(const cache_config *cfg, cache **out);
/* Stops the background writer after it drained its queue (each pending L3 write bounded by the
 * timeouts or skipped by the breaker), frees everything. NULL is a no-op. No other call may run
 * concurrently. */
void cache_close(cache *c);
/* Blocks until the background writer has nothing pending (tests, benchmarks, orderly stops). */
void cache_flush(cache *c);

/* Looks key (borrowed) up, L1 then L2 then L3; a hit fills the tiers above it. Returns 0 and a
 * new reference in *out (release with cache_val_unref), with the tier that answered in *tier
 * (may be NULL); VG_ENOTFOUND on a miss (*tier = CACHE_TIER_MISS). Tier failures are misses. */
int cache_get(cache *c, const cache_key *key, cache_val **out, cache_tier *tier);

/* Stores a copy of data (borrowed) in every tier: L1 before returning, L2 and L3 before returning
 * or on the background writer, per the configuration. Returns 0 even when a tier failed (counted
 * in its stats): a cache failure must not fail the request. Errors: VG_EINVAL, VG_ETOOBIG,
 * VG_ENOMEM (nothing stored). */
int cache_put(cache *c, const cache_key *key, const void *data, size_t len);
/* Same with a value the caller already holds (v borrowed; tiers take their own references). */
int cache_put_val(cache *c, const cache_key *key, cache_val *v);

/* Removes key from every tier (best effort, synchronous): queued background writes of key are
 * cancelled and one in progress is waited for, L1 drops the entry, L2 overwrites the entry's
 * bytes on disk before unlinking the file, L3 deletes the Redis key (unless Redis is down or the
 * breaker is open: then the copy there lives until its TTL). Erasure of deleted data uses this. */
void cache_remove(cache *c, const cache_key *key);

/* ---- run-time knobs (self-healing) --------------------------------------------------------- */

/* Most entries one cache_warm_l1_from_l2 call loads (bounds its key buffer and its disk reads). */
#define CACHE_MAX_WARM_ENTRIES 4096

/* New L1 bounds while serving. Shrinking evicts the least recently used entries at once (counted
 * as L1 evictions); raising takes effect for the next puts. Bounds below the shard count are
 * raised to it. VG_EINVAL (0 or NULL), VG_EUNSUPPORTED (the cache has no L1). Thread-safe. */
int cache_l1_set_capacity(cache *c, size_t max_entries, size_t max_bytes);
/* Current L1 bounds (0, 0 without L1). */
void cache_l1_capacity(cache *c, size_t *max_entries, size_t *max_bytes);
/* Drops every L1 entry (counted as evictions); returns how many. The lower tiers keep theirs. */
uint64_t cache_l1_clear(cache *c);
/* Loads L2's n most recently used entries (at most CACHE_MAX_WARM_ENTRIES) into L1, most recent
 * last so they are the freshest in L1; entries already in L1 are skipped. Reads count as L2 hits.
 * *loaded (may be NULL) gets how many were loaded. VG_EUNSUPPORTED without L1 or L2, VG_ENOMEM. */
int cache_warm_l1_from_l2(cache *c, size_t n, size_t *loaded);

/* Snapshot of the counters (each read atomically; the set is not one consistent instant). */
void cache_stats_get(cache *c, cache_stats *out);

#endif /* VG_CACHE_H */
