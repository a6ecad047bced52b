/*
 * cache internals shared by the tier files, the tests, the fuzz target and the benchmark: the
 * counters, CRC32C, the on-disk / in-Redis entry format and each tier on its own. Nothing outside
 * src/cache, tests/test_cache*.c, fuzz/fuzz_cache*.c and bench/bench_cache.c includes this.
 */
#ifndef VG_CACHE_INT_H
#define VG_CACHE_INT_H

#include "cache/cache.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- counters ------------------------------------------------------------------------------- */

/* One tier's counters, striped: each thread adds to the stripe its thread id hashes to, so two
 * request threads rarely write the same cache line; a snapshot sums the stripes. Relaxed atomics:
 * they are statistics, not synchronisation. */
#define CACHE_CTR_STRIPES 8

typedef struct cache_ctr_stripe {
    _Alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses, errors, corrupt, puts, evictions, rejected, skipped, dropped, nospace;
    _Atomic uint64_t lat_count, lat_sum_ns;
    _Atomic uint64_t lat_buckets[CACHE_LAT_BUCKETS];
} cache_ctr_stripe;

typedef struct cache_ctr {
    cache_ctr_stripe s[CACHE_CTR_STRIPES];
} cache_ctr;

/* Structs holding a cache_ctr need 64-byte alignment: allocate them with this (zeroed; free
 * with vg_free). NULL on out of memory. */
void *cache__zalloc_aligned(size_t n);

/* The calling thread's stripe (a hash of its pthread id: stable, no shared state). */
unsigned cache__ctr_stripe_of_thread(void);

#define CACHE_CTR_ADD(ctr, field, n)                                                               \
    atomic_fetch_add_explicit(&(ctr)->s[cache__ctr_stripe_of_thread()].field, (uint64_t)(n),       \
                              memory_order_relaxed)
#define CACHE_CTR_INC(ctr, field) CACHE_CTR_ADD(ctr, field, 1)

void cache__ctr_latency(cache_ctr *c, uint64_t ns);
/* Sums the stripes into out (entries and bytes set to 0: the tier fills them). */
void cache__ctr_snapshot(const cache_ctr *c, cache_tier_stats *out);

/* A value of len uninitialised bytes with one reference (returns owned), *data its bytes, for a
 * tier that reads straight into place. VG_ETOOBIG, VG_ENOMEM. */
int cache__val_alloc_uninit(size_t len, cache_val **out, uint8_t **data);

/* ---- CRC32C (Castagnoli, reflected, init/xorout 0xFFFFFFFF) --------------------------------- */

/* crc is the previous return value (0 to start); so crc32c(crc32c(0,a),b) == crc32c(0,a||b).
 * Uses the SSE4.2 crc32 instruction when vg_cpu_features() has it, else a table. */
uint32_t cache__crc32c(uint32_t crc, const void *data, size_t len);
/* The table-driven path, always compiled (tests compare the two). */
uint32_t cache__crc32c_portable(uint32_t crc, const void *data, size_t len);

/* ---- entry format (L2 files and L3 values) -------------------------------------------------- */

/* Little-endian, 56-byte header then the value:
 *    0  magic "VGCE"            4
 *    4  version (1)             u16
 *    6  header bytes (56)       u16
 *    8  flags (0)               u32
 *   12  key                     32
 *   44  value length            u32   <= CACHE_MAX_VALUE_BYTES
 *   48  CRC32C of the value     u32
 *   52  CRC32C of bytes 0..51   u32
 * The header CRC means a flipped length is caught before it is trusted; the key inside the entry
 * means a file renamed or a Redis value written under the wrong key is never served. */
#define CACHE_ENTRY_MAGIC "VGCE"
#define CACHE_ENTRY_VERSION 1
#define CACHE_ENTRY_HEADER_BYTES 56

typedef struct cache_entry_header {
    cache_key key;
    uint32_t value_len;
    uint32_t value_crc;
} cache_entry_header;

/* Writes the header for value (borrowed, len <= CACHE_MAX_VALUE_BYTES) under key. */
void cache__entry_header_encode(const cache_key *key, const void *value, size_t len,
                                uint8_t out[CACHE_ENTRY_HEADER_BYTES]);
/* Validates a header alone: VG_ETRUNC (len < 56), VG_EFORMAT (magic), VG_EUNSUPPORTED (version,
 * header size or flags from another format version), VG_ECHECKSUM (header CRC), VG_ETOOBIG
 * (value length above CACHE_MAX_VALUE_BYTES). */
int cache__entry_header_parse(const uint8_t *hdr, size_t len, cache_entry_header *out);
/* Checks the value against a parsed header: VG_ETRUNC (len differs from the header's),
 * VG_ECORRUPT (expect_key given and different), VG_ECHECKSUM (value CRC). */
int cache__entry_check(const cache_entry_header *h, const cache_key *expect_key,
                       const uint8_t *value, size_t len);
/* Both on one contiguous entry (buf borrowed): on success *value points into buf. expect_key may
 * be NULL (accept any key; *key_out, if not NULL, gets the entry's key). */
int cache__entry_parse(const uint8_t *buf, size_t len, const cache_key *expect_key,
                       cache_key *key_out, const uint8_t **value, size_t *value_len);

/* ---- L1: in-process sharded LRU ------------------------------------------------------------- */

typedef struct cache_l1 cache_l1;

/* max_entries >= 1; max_bytes >= 1; shards is an upper bound (see cache_config). Returns owned. */
int cache__l1_new(size_t max_entries, size_t max_bytes, unsigned shards, cache_l1 **out);
void cache__l1_free(cache_l1 *l1);
/* 0 and a new reference in *out, or VG_ENOTFOUND. Moves the entry to the front of its LRU. */
int cache__l1_get(cache_l1 *l1, const cache_key *key, cache_val **out);
/* 1 if present, without touching the LRU order (tests). */
int cache__l1_contains(cache_l1 *l1, const cache_key *key);
/* Inserts or replaces (v borrowed; the tier takes its own reference), evicting from the tail of the
 * shard until both bounds hold. VG_ETOOBIG if the value alone exceeds a shard's byte bound
 * (counted as rejected), VG_ENOMEM. */
int cache__l1_put(cache_l1 *l1, const cache_key *key, cache_val *v);
void cache__l1_remove(cache_l1 *l1, const cache_key *key);
/* Bytes an entry holding a value of len bytes counts against max_bytes. */
size_t cache__l1_charge(size_t len);
unsigned cache__l1_shard_count(const cache_l1 *l1);
/* New bounds at run time (self-healing). Shrinking evicts least recently used entries at once
 * (counted as evictions, *evicted if not NULL); raising grows the hash tables. Bounds below the
 * shard count are raised to it (every shard keeps room for one entry). VG_EINVAL on 0. */
int cache__l1_set_capacity(cache_l1 *l1, size_t max_entries, size_t max_bytes, uint64_t *evicted);
/* Drops every entry (counted as evictions); returns how many. */
uint64_t cache__l1_clear(cache_l1 *l1);
/* Current bounds (sums of the shards'). */
void cache__l1_capacity(cache_l1 *l1, size_t *max_entries, size_t *max_bytes);
cache_ctr *cache__l1_ctr(cache_l1 *l1);
void cache__l1_stats(cache_l1 *l1, cache_tier_stats *out);

/* ---- L2: on-disk LRU ------------------------------------------------------------------------ */

typedef struct cache_l2 cache_l2;

/* dir borrowed. Layout: dir/<first key byte, 2 hex>/<key hex>.vce, temp files in dir/tmp/. */
int cache__l2_open(const char *dir, uint64_t max_bytes, cache_l2 **out);
void cache__l2_close(cache_l2 *l2);
/* 0 and a new value (owned) in *out, or VG_ENOTFOUND (absent, vanished, or corrupt: a corrupt
 * entry is deleted and counted). */
int cache__l2_get(cache_l2 *l2, const cache_key *key, cache_val **out);
/* Writes temp + rename (no fsync: see cache_l2.c), then evicts LRU entries over max_bytes.
 * v borrowed. VG_ETOOBIG (entry larger than max_bytes, rejected), VG_EIO. */
int cache__l2_put(cache_l2 *l2, const cache_key *key, const cache_val *v);
/* Erases key's entry: overwrites the file's bytes with zeros and syncs them before unlinking
 * it, so the value (face descriptors of deleted data) does not stay in freed disk blocks, then
 * forgets it. */
void cache__l2_remove(cache_l2 *l2, const cache_key *key);
/* The free-space reserve (see cache_config.l2_min_free_bytes); 0 = none. Set before use. */
void cache__l2_set_min_free(cache_l2 *l2, uint64_t min_free_bytes);
/* How L2 learns the free bytes of its file system: statvfs(dir) by default. Tests inject a
 * function to play a filling disk (arg is theirs); NULL restores statvfs. Set before use. */
typedef int (*cache_l2_free_fn)(void *arg, const char *dir, uint64_t *free_bytes);
void cache__l2_set_free_fn(cache_l2 *l2, cache_l2_free_fn fn, void *arg);
/* Path of key's entry file into buf (tests corrupt files through it). VG_EINVAL if too small. */
int cache__l2_entry_path(const cache_l2 *l2, const cache_key *key, char *buf, size_t buflen);
/* Up to max keys of the most recently used entries, most recent first, into keys; returns how
 * many. */
size_t cache__l2_recent(cache_l2 *l2, cache_key *keys, size_t max);
cache_ctr *cache__l2_ctr(cache_l2 *l2);
void cache__l2_stats(cache_l2 *l2, cache_tier_stats *out);

/* ---- L3: Redis ------------------------------------------------------------------------------ */

typedef struct cache_l3_url {
    char host[256];
    int port; /* default 6379 */
    int db;   /* default 0 */
    char user[128];
    char password[256];
} cache_l3_url;

/* redis://[[user]:password@]host[:port][/db]; VG_EINVAL with a detail otherwise. */
int cache__l3_parse_url(const char *url, cache_l3_url *out);

typedef struct cache_l3 cache_l3;

/* Uses the l3_* fields of cfg (borrowed). Does not connect: the first command does. */
int cache__l3_open(const cache_config *cfg, cache_l3 **out);
void cache__l3_close(cache_l3 *l3);
/* 0 and a new value (owned) in *out, or VG_ENOTFOUND (absent, error, skipped by the breaker). */
int cache__l3_get(cache_l3 *l3, const cache_key *key, cache_val **out);
/* SET with the TTL, synchronously (v borrowed). 0, or VG_EUNAVAIL (breaker open, Redis failed or
 * refused). */
int cache__l3_put(cache_l3 *l3, const cache_key *key, cache_val *v);
/* 0 while the breaker is open and its back-off has not passed (a call would be skipped). */
int cache__l3_available(cache_l3 *l3);
void cache__l3_remove(cache_l3 *l3, const cache_key *key);
cache_breaker_state cache__l3_breaker(cache_l3 *l3);
cache_ctr *cache__l3_ctr(cache_l3 *l3);
/* Counters into *t; breaker state, opens and reconnects into *s. */
void cache__l3_stats(cache_l3 *l3, cache_tier_stats *t, cache_stats *s);

#endif /* VG_CACHE_INT_H */
