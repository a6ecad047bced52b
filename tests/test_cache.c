/* cache: CRC32C, keys, the entry format, L1 (LRU order, both bounds, threads), L2 (restart,
 * byte bound, corruption detected and dropped), the tiered facade and allocation failures.
 * The Redis tier has its own file, test_cache_l3.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "core/core.h"

#define _XOPEN_SOURCE_EXTENDED 1
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static cache_key key_n(uint32_t n)
{
    uint8_t sha[32] = {0};
    memcpy(sha, &n, sizeof n);
    cache_key k;
    assert_int_equal(cache_key_make(sha, "test-model-1", 1, &k), VG_OK);
    return k;
}

/* A value whose bytes are a function of (n, len), so a reader can check it got the right one. */
static void fill_value(uint8_t *buf, size_t len, uint32_t n)
{
    uint32_t x = n * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

static cache_val *val_n(uint32_t n, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    fill_value(buf, len, n);
    cache_val *v;
    assert_int_equal(cache_val_new(buf, len, &v), VG_OK);
    free(buf);
    return v;
}

static int val_is(const cache_val *v, uint32_t n, size_t len)
{
    if (cache_val_len(v) != len)
        return 0;
    uint8_t *buf = malloc(len ? len : 1);
    fill_value(buf, len, n);
    int ok = memcmp(buf, cache_val_data(v), len) == 0;
    free(buf);
    return ok;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void)
{
    char *d = strdup("/tmp/vigil-test-cache.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- CRC32C --------------------------------------------------------------------------------- */

static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c(void **state)
{
    (void)state;
    /* The standard check value of CRC-32C. */
    assert_int_equal(cache__crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(cache__crc32c_portable(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(cache__crc32c(0, "", 0), 0);
    uint8_t buf[1100];
    fill_value(buf, sizeof buf, 7);
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len + off <= sizeof buf; len += 37) {
            uint32_t want = crc_bitwise(buf + off, len);
            assert_int_equal(cache__crc32c(0, buf + off, len), want);
            assert_int_equal(cache__crc32c_portable(0, buf + off, len), want);
        }
    }
    /* Incremental == one shot. */
    uint32_t a = cache__crc32c(0, buf, 500);
    assert_int_equal(cache__crc32c(a, buf + 500, 600), cache__crc32c(0, buf, 1100));
}

/* ---- keys and values ------------------------------------------------------------------------ */

static void test_key_make(void **state)
{
    (void)state;
    uint8_t sha[32];
    fill_value(sha, 32, 1);
    cache_key a, b, c, d;
    assert_int_equal(cache_key_make(sha, "v1", 1, &a), VG_OK);
    assert_int_equal(cache_key_make(sha, "v1", 1, &b), VG_OK);
    assert_memory_equal(a.bytes, b.bytes, 32);
    assert_int_equal(cache_key_make(sha, "v1", 2, &c), VG_OK);
    assert_memory_not_equal(a.bytes, c.bytes, 32);
    assert_int_equal(cache_key_make(sha, "v2", 1, &d), VG_OK);
    assert_memory_not_equal(a.bytes, d.bytes, 32);
    sha[31] ^= 1;
    assert_int_equal(cache_key_make(sha, "v1", 1, &d), VG_OK);
    assert_memory_not_equal(a.bytes, d.bytes, 32);
    char hex[65];
    cache_key_hex(&a, hex);
    assert_int_equal(strlen(hex), 64);

    char longv[CACHE_MAX_MODEL_VERSION_BYTES + 2];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    assert_int_equal(cache_key_make(sha, longv, 1, &d), VG_EINVAL);
    longv[CACHE_MAX_MODEL_VERSION_BYTES] = 0;
    assert_int_equal(cache_key_make(sha, longv, 1, &d), VG_OK);
    assert_int_equal(cache_key_make(NULL, "v", 1, &d), VG_EINVAL);
}

static void test_val_refcount(void **state)
{
    (void)state;
    cache_val *v;
    assert_int_equal(cache_val_new("abc", 3, &v), VG_OK);
    assert_int_equal(cache_val_len(v), 3);
    assert_memory_equal(cache_val_data(v), "abc", 3);
    cache_val_ref(v);
    cache_val_unref(v);
    assert_memory_equal(cache_val_data(v), "abc", 3); /* still one reference */
    cache_val_unref(v);
    cache_val_unref(NULL);
    assert_int_equal(cache_val_new(NULL, 0, &v), VG_OK);
    assert_int_equal(cache_val_len(v), 0);
    cache_val_unref(v);
    assert_int_equal(cache_val_new("x", (size_t)CACHE_MAX_VALUE_BYTES + 1, &v), VG_ETOOBIG);
}

/* ---- entry format --------------------------------------------------------------------------- */

static uint8_t *make_entry(const cache_key *k, const uint8_t *val, size_t len)
{
    uint8_t *e = malloc(CACHE_ENTRY_HEADER_BYTES + len);
    cache__entry_header_encode(k, val, len, e);
    if (len)
        memcpy(e + CACHE_ENTRY_HEADER_BYTES, val, len);
    return e;
}

static void test_entry_roundtrip_and_damage(void **state)
{
    (void)state;
    cache_key k = key_n(1), other = key_n(2);
    uint8_t val[300];
    fill_value(val, sizeof val, 3);
    size_t n = CACHE_ENTRY_HEADER_BYTES + sizeof val;
    uint8_t *e = make_entry(&k, val, sizeof val);
    const uint8_t *v;
    size_t vlen;
    cache_key got;
    assert_int_equal(cache__entry_parse(e, n, &k, &got, &v, &vlen), VG_OK);
    assert_int_equal(vlen, sizeof val);
    assert_memory_equal(v, val, sizeof val);
    assert_memory_equal(got.bytes, k.bytes, 32);
    assert_int_equal(cache__entry_parse(e, n, NULL, NULL, &v, &vlen), VG_OK);
    /* Served under the wrong key: refused. */
    assert_int_equal(cache__entry_parse(e, n, &other, NULL, &v, &vlen), VG_ECORRUPT);
    /* Every truncation is refused. */
    for (size_t len = 0; len < n; len++)
        assert_int_not_equal(cache__entry_parse(e, len, &k, NULL, &v, &vlen), VG_OK);
    /* Trailing garbage is refused too (length mismatch). */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, e, n);
    longer[n] = 0;
    assert_int_equal(cache__entry_parse(longer, n + 1, &k, NULL, &v, &vlen), VG_ETRUNC);
    free(longer);
    /* Every single-bit flip anywhere is refused. */
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            e[i] ^= (uint8_t)(1u << bit);
            assert_int_not_equal(cache__entry_parse(e, n, &k, NULL, &v, &vlen), VG_OK);
            e[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* A header announcing an impossible length is refused before anything trusts it. */
    cache_entry_header h;
    assert_int_equal(cache__entry_header_parse(e, 10, &h), VG_ETRUNC);
    memcpy(e, "XXXX", 4);
    assert_int_equal(cache__entry_header_parse(e, n, &h), VG_EFORMAT);
    free(e);
    /* Empty value round trip. */
    e = make_entry(&k, NULL, 0);
    assert_int_equal(cache__entry_parse(e, CACHE_ENTRY_HEADER_BYTES, &k, NULL, &v, &vlen), VG_OK);
    assert_int_equal(vlen, 0);
    free(e);
}

/* ---- L1 ------------------------------------------------------------------------------------- */

static void test_l1_lru_order(void **state)
{
    (void)state;
    cache_l1 *l1;
    assert_int_equal(cache__l1_new(3, 1 << 20, 1, &l1), VG_OK);
    assert_int_equal(cache__l1_shard_count(l1), 1);
    cache_key k[6];
    for (uint32_t i = 0; i < 6; i++)
        k[i] = key_n(i);
    for (uint32_t i = 0; i < 3; i++) {
        cache_val *v = val_n(i, 10);
        assert_int_equal(cache__l1_put(l1, &k[i], v), VG_OK);
        cache_val_unref(v);
    }
    /* Touch 0: order (recent first) 0, 2, 1. Insert 3: 1 goes. */
    cache_val *got;
    assert_int_equal(cache__l1_get(l1, &k[0], &got), VG_OK);
    assert_true(val_is(got, 0, 10));
    cache_val_unref(got);
    cache_val *v = val_n(3, 10);
    assert_int_equal(cache__l1_put(l1, &k[3], v), VG_OK);
    cache_val_unref(v);
    assert_true(cache__l1_contains(l1, &k[0]));
    assert_false(cache__l1_contains(l1, &k[1]));
    assert_true(cache__l1_contains(l1, &k[2]));
    assert_true(cache__l1_contains(l1, &k[3]));
    /* Order now 3, 0, 2: replacing 2 refreshes it, so 0 goes next. */
    v = val_n(22, 10);
    assert_int_equal(cache__l1_put(l1, &k[2], v), VG_OK);
    cache_val_unref(v);
    v = val_n(4, 10);
    assert_int_equal(cache__l1_put(l1, &k[4], v), VG_OK);
    cache_val_unref(v);
    assert_false(cache__l1_contains(l1, &k[0]));
    assert_int_equal(cache__l1_get(l1, &k[2], &got), VG_OK);
    assert_true(val_is(got, 22, 10)); /* the replacement, not the old value */
    cache_val_unref(got);
    assert_int_equal(cache__l1_get(l1, &k[1], &got), VG_ENOTFOUND);

    cache_tier_stats st;
    cache__l1_stats(l1, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.bytes, 3 * cache__l1_charge(10));
    cache__l1_free(l1);
}

static void test_l1_byte_bound(void **state)
{
    (void)state;
    size_t c100 = cache__l1_charge(100);
    cache_l1 *l1;
    /* Room for three 100-byte values but not four; entries bound out of the way. */
    assert_int_equal(cache__l1_new(1000, 3 * c100 + c100 / 2, 8, &l1), VG_OK);
    assert_int_equal(cache__l1_shard_count(l1), 1); /* small byte bound: one shard */
    cache_key k[8];
    for (uint32_t i = 0; i < 8; i++)
        k[i] = key_n(100 + i);
    for (uint32_t i = 0; i < 4; i++) {
        cache_val *v = val_n(i, 100);
        assert_int_equal(cache__l1_put(l1, &k[i], v), VG_OK);
        cache_val_unref(v);
    }
    cache_tier_stats st;
    cache__l1_stats(l1, &st);
    assert_int_equal(st.entries, 3);
    assert_true(st.bytes <= 3 * c100 + c100 / 2);
    assert_false(cache__l1_contains(l1, &k[0]));
    /* A value worth two small ones pushes out the two oldest. */
    cache_val *big = val_n(9, 100 + c100);
    assert_int_equal(cache__l1_put(l1, &k[4], big), VG_OK);
    cache_val_unref(big);
    assert_false(cache__l1_contains(l1, &k[1]));
    assert_false(cache__l1_contains(l1, &k[2]));
    assert_true(cache__l1_contains(l1, &k[3]));
    assert_true(cache__l1_contains(l1, &k[4]));
    /* Larger than the whole tier: refused, nothing evicted. */
    cache_val *huge = val_n(10, 4 * c100);
    assert_int_equal(cache__l1_put(l1, &k[5], huge), VG_ETOOBIG);
    cache_val_unref(huge);
    assert_true(cache__l1_contains(l1, &k[3]));
    cache__l1_stats(l1, &st);
    assert_int_equal(st.rejected, 1);
    assert_true(st.bytes <= 3 * c100 + c100 / 2);
    cache__l1_free(l1);
}

static void test_l1_value_outlives_eviction(void **state)
{
    (void)state;
    cache_l1 *l1;
    assert_int_equal(cache__l1_new(1, 1 << 20, 1, &l1), VG_OK);
    cache_key a = key_n(1), b = key_n(2);
    cache_val *v = val_n(1, 5000);
    assert_int_equal(cache__l1_put(l1, &a, v), VG_OK);
    cache_val_unref(v);
    cache_val *held;
    assert_int_equal(cache__l1_get(l1, &a, &held), VG_OK);
    v = val_n(2, 10);
    assert_int_equal(cache__l1_put(l1, &b, v), VG_OK); /* evicts a */
    cache_val_unref(v);
    assert_false(cache__l1_contains(l1, &a));
    assert_true(val_is(held, 1, 5000)); /* ASan would flag a use after free here */
    cache_val_unref(held);
    cache__l1_remove(l1, &b);
    assert_false(cache__l1_contains(l1, &b));
    cache__l1_remove(l1, &b);
    cache__l1_free(l1);
}

static void test_l1_shard_sizing(void **state)
{
    (void)state;
    cache_l1 *l1;
    assert_int_equal(cache__l1_new(CACHE_DEFAULT_L1_MAX_ENTRIES, CACHE_DEFAULT_L1_MAX_BYTES,
                                   CACHE_DEFAULT_L1_SHARDS, &l1),
                     VG_OK);
    assert_int_equal(cache__l1_shard_count(l1), 16);
    cache__l1_free(l1);
    assert_int_equal(cache__l1_new(20, CACHE_DEFAULT_L1_MAX_BYTES, 16, &l1), VG_OK);
    assert_int_equal(cache__l1_shard_count(l1), 2); /* >= 8 entries per shard */
    cache__l1_free(l1);
    assert_int_equal(cache__l1_new(1000, 1 << 20, 13, &l1), VG_OK);
    assert_int_equal(cache__l1_shard_count(l1), 1);
    cache__l1_free(l1);
    assert_int_equal(cache__l1_new(0, 100, 1, &l1), VG_EINVAL);
}

typedef struct l1_worker {
    cache_l1 *l1;
    uint32_t seed;
    int ops;
    uint64_t gets, bad;
} l1_worker;

#define L1_THREAD_KEYS 3000
static cache_key l1_thread_keys[L1_THREAD_KEYS]; /* written before the threads start */

static void *l1_worker_main(void *arg)
{
    l1_worker *w = arg;
    uint32_t x = w->seed;
    for (int i = 0; i < w->ops; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t n = (x >> 8) % L1_THREAD_KEYS;
        size_t len = 50 + n % 700;
        if ((x >> 4) % 3 == 0) {
            cache_val *v = val_n(n, len);
            cache__l1_put(w->l1, &l1_thread_keys[n], v);
            cache_val_unref(v);
        } else {
            cache_val *v;
            w->gets++;
            if (cache__l1_get(w->l1, &l1_thread_keys[n], &v) == VG_OK) {
                if (!val_is(v, n, len))
                    w->bad++;
                cache_val_unref(v);
            }
        }
        if ((x >> 20) % 97 == 0)
            cache__l1_remove(w->l1, &l1_thread_keys[n]);
    }
    return NULL;
}

static void test_l1_threads(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < L1_THREAD_KEYS; i++)
        l1_thread_keys[i] = key_n(10000 + i);
    size_t max_entries = 1000, max_bytes = 512 * 1024 * 16;
    cache_l1 *l1;
    assert_int_equal(cache__l1_new(max_entries, max_bytes, 16, &l1), VG_OK);
    assert_true(cache__l1_shard_count(l1) > 1);
    enum { NT = 4 };
    pthread_t t[NT];
    l1_worker w[NT];
    for (int i = 0; i < NT; i++) {
        w[i] = (l1_worker){.l1 = l1, .seed = 1234u + (uint32_t)i * 77u, .ops = 40000};
        assert_int_equal(pthread_create(&t[i], NULL, l1_worker_main, &w[i]), 0);
    }
    uint64_t gets = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
    }
    cache_tier_stats st;
    cache__l1_stats(l1, &st);
    assert_true(st.entries <= max_entries);
    assert_true(st.bytes <= max_bytes);
    assert_true(st.entries > max_entries / 2); /* the workload is larger than the cache */
    assert_int_equal(st.hits + st.misses, gets);
    assert_true(st.hits > 0 && st.evictions > 0);
    cache__l1_free(l1);
}

/* ---- L2 ------------------------------------------------------------------------------------- */

static uint64_t entry_bytes(size_t vlen)
{
    return CACHE_ENTRY_HEADER_BYTES + vlen;
}

static void test_l2_put_get_restart(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    assert_int_equal(cache__l2_open(dir, 1 << 20, &l2), VG_OK);
    cache_key k[4];
    for (uint32_t i = 0; i < 4; i++) {
        k[i] = key_n(200 + i);
        cache_val *v = val_n(i, 1000 + i);
        assert_int_equal(cache__l2_put(l2, &k[i], v), VG_OK);
        cache_val_unref(v);
    }
    cache_val *got;
    assert_int_equal(cache__l2_get(l2, &k[2], &got), VG_OK);
    assert_true(val_is(got, 2, 1002));
    cache_val_unref(got);
    assert_int_equal(cache__l2_get(l2, &(cache_key){{0}}, &got), VG_ENOTFOUND);
    /* Replace keeps one entry and the accounting right. */
    cache_val *v = val_n(33, 10);
    assert_int_equal(cache__l2_put(l2, &k[3], v), VG_OK);
    cache_val_unref(v);
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.bytes,
                     entry_bytes(1000) + entry_bytes(1001) + entry_bytes(1002) + entry_bytes(10));
    cache__l2_close(l2);

    /* A crash leaves temp files behind: the next open removes them. */
    char tmpf[PATH_MAX];
    snprintf(tmpf, sizeof tmpf, "%s/tmp/leftover.tmp", dir);
    FILE *f = fopen(tmpf, "w");
    fputs("half", f);
    fclose(f);

    assert_int_equal(cache__l2_open(dir, 1 << 20, &l2), VG_OK);
    assert_false(file_exists(tmpf));
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 4);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(cache__l2_get(l2, &k[i], &got), VG_OK);
        assert_true(val_is(got, i, 1000 + i));
        cache_val_unref(got);
    }
    assert_int_equal(cache__l2_get(l2, &k[3], &got), VG_OK);
    assert_true(val_is(got, 33, 10));
    cache_val_unref(got);
    cache__l2_close(l2);
    rm_rf(dir);
    free(dir);
}

static void test_l2_lru_survives_restart(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    assert_int_equal(cache__l2_open(dir, 1 << 20, &l2), VG_OK);
    cache_key k[3];
    /* File times have the kernel tick's granularity: space the writes out. */
    for (uint32_t i = 0; i < 3; i++) {
        k[i] = key_n(300 + i);
        cache_val *v = val_n(i, 1000);
        assert_int_equal(cache__l2_put(l2, &k[i], v), VG_OK);
        cache_val_unref(v);
        sleep_ms(30);
    }
    cache_val *got;
    assert_int_equal(cache__l2_get(l2, &k[0], &got), VG_OK); /* 0 is now the most recent */
    cache_val_unref(got);
    cache__l2_close(l2);
    /* Reopen with room for two: the least recently used (1) goes. */
    assert_int_equal(cache__l2_open(dir, 2 * entry_bytes(1000) + 10, &l2), VG_OK);
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(cache__l2_get(l2, &k[1], &got), VG_ENOTFOUND);
    assert_int_equal(cache__l2_get(l2, &k[0], &got), VG_OK);
    cache_val_unref(got);
    assert_int_equal(cache__l2_get(l2, &k[2], &got), VG_OK);
    cache_val_unref(got);
    char path[PATH_MAX];
    assert_int_equal(cache__l2_entry_path(l2, &k[1], path, sizeof path), VG_OK);
    assert_false(file_exists(path));
    cache__l2_close(l2);
    rm_rf(dir);
    free(dir);
}

static void test_l2_size_bound(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    uint64_t max = 5 * entry_bytes(2000) + 100;
    assert_int_equal(cache__l2_open(dir, max, &l2), VG_OK);
    cache_key k[10];
    for (uint32_t i = 0; i < 10; i++) {
        k[i] = key_n(400 + i);
        cache_val *v = val_n(i, 2000);
        assert_int_equal(cache__l2_put(l2, &k[i], v), VG_OK);
        cache_val_unref(v);
        cache_tier_stats st;
        cache__l2_stats(l2, &st);
        assert_true(st.bytes <= max);
    }
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.evictions, 5);
    for (uint32_t i = 0; i < 10; i++) {
        char path[PATH_MAX];
        assert_int_equal(cache__l2_entry_path(l2, &k[i], path, sizeof path), VG_OK);
        assert_int_equal(file_exists(path), i >= 5);
    }
    /* One entry larger than the whole tier is refused. */
    cache_val *v = val_n(99, (size_t)max);
    assert_int_equal(cache__l2_put(l2, &k[0], v), VG_ETOOBIG);
    cache_val_unref(v);
    cache__l2_close(l2);
    rm_rf(dir);
    free(dir);
}

/* Damages key's file with `how`, then checks the entry is a miss, counted, and deleted. */
enum damage { TRUNCATE, FLIP_VALUE, FLIP_HEADER, GARBAGE, EMPTY, OTHER_KEY };

static void damage_file(const char *path, enum damage how, const char *other_path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if (how == TRUNCATE) {
        assert_int_equal(truncate(path, st.st_size - 7), 0);
    } else if (how == EMPTY) {
        assert_int_equal(truncate(path, 0), 0);
    } else if (how == FLIP_VALUE || how == FLIP_HEADER) {
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        off_t at = how == FLIP_VALUE ? st.st_size - 100 : 45; /* 45: inside the length field */
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
        close(fd);
    } else if (how == GARBAGE) {
        FILE *f = fopen(path, "w");
        for (int i = 0; i < 500; i++)
            fputc((i * 7919) & 0xff, f);
        fclose(f);
    } else if (how == OTHER_KEY) {
        assert_int_equal(rename(other_path, path), 0); /* a valid entry, but for another key */
    }
}

static void test_l2_corruption_detected(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    assert_int_equal(cache__l2_open(dir, 1 << 22, &l2), VG_OK);
    const enum damage kinds[] = {TRUNCATE, FLIP_VALUE, FLIP_HEADER, GARBAGE, EMPTY, OTHER_KEY};
    cache_key spare = key_n(599);
    char spare_path[PATH_MAX];
    assert_int_equal(cache__l2_entry_path(l2, &spare, spare_path, sizeof spare_path), VG_OK);
    for (size_t i = 0; i < VG_ARRAY_LEN(kinds); i++) {
        cache_key k = key_n(500 + (uint32_t)i);
        cache_val *v = val_n((uint32_t)i, 3000);
        assert_int_equal(cache__l2_put(l2, &k, v), VG_OK);
        cache_val_unref(v);
        if (kinds[i] == OTHER_KEY) {
            v = val_n(77, 3000);
            assert_int_equal(cache__l2_put(l2, &spare, v), VG_OK);
            cache_val_unref(v);
        }
        char path[PATH_MAX];
        assert_int_equal(cache__l2_entry_path(l2, &k, path, sizeof path), VG_OK);
        damage_file(path, kinds[i], spare_path);

        cache_tier_stats before, after;
        cache__l2_stats(l2, &before);
        cache_val *got = NULL;
        assert_int_equal(cache__l2_get(l2, &k, &got), VG_ENOTFOUND);
        assert_null(got);
        cache__l2_stats(l2, &after);
        assert_int_equal(after.corrupt, before.corrupt + 1);
        assert_false(file_exists(path));
        assert_int_equal(after.entries, before.entries - 1);
        /* Gone for good: the next lookup is a plain miss. */
        assert_int_equal(cache__l2_get(l2, &k, &got), VG_ENOTFOUND);
        cache__l2_stats(l2, &before);
        assert_int_equal(before.corrupt, after.corrupt);
        /* The key can be stored again. */
        v = val_n(5, 10);
        assert_int_equal(cache__l2_put(l2, &k, v), VG_OK);
        cache_val_unref(v);
        assert_int_equal(cache__l2_get(l2, &k, &got), VG_OK);
        assert_true(val_is(got, 5, 10));
        cache_val_unref(got);
    }
    cache__l2_close(l2);

    /* At open: a torn (too short) entry is deleted, foreign files are left alone. */
    char torn[PATH_MAX], foreign[PATH_MAX];
    char hex[65];
    cache_key tk = key_n(600);
    cache_key_hex(&tk, hex);
    snprintf(torn, sizeof torn, "%s/%.2s/%s.vce", dir, hex, hex);
    snprintf(foreign, sizeof foreign, "%s/%.2s/README", dir, hex);
    FILE *f = fopen(torn, "w");
    fputs("VGCE", f);
    fclose(f);
    f = fopen(foreign, "w");
    fputs("not an entry", f);
    fclose(f);
    assert_int_equal(cache__l2_open(dir, 1 << 22, &l2), VG_OK);
    assert_false(file_exists(torn));
    assert_true(file_exists(foreign));
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.corrupt, 1);
    cache__l2_close(l2);
    rm_rf(dir);
    free(dir);
}

static void test_l2_bad_directory(void **state)
{
    (void)state;
    cache_l2 *l2;
    assert_int_equal(cache__l2_open("", 100, &l2), VG_EINVAL);
    /* A regular file where the directory should be. */
    char *dir = make_tmpdir();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_not_equal(cache__l2_open(path, 100, &l2), VG_OK);
    rm_rf(dir);
    free(dir);
}

/* ---- facade --------------------------------------------------------------------------------- */

/* ---- tenant scope and erasure (issue 9) ----------------------------------------------------- */

static void test_key_scoped(void **state)
{
    (void)state;
    uint8_t sha[32] = {7};
    cache_key g, g2, g3, a, a2, b;
    assert_int_equal(cache_key_make(sha, "v1", 1, &g), VG_OK);
    assert_int_equal(cache_key_make_scoped(sha, NULL, "v1", 1, &g2), VG_OK);
    assert_int_equal(cache_key_make_scoped(sha, "", "v1", 1, &g3), VG_OK);
    assert_memory_equal(g.bytes, g2.bytes, CACHE_KEY_BYTES); /* no scope = the global key */
    assert_memory_equal(g.bytes, g3.bytes, CACHE_KEY_BYTES);
    assert_int_equal(cache_key_make_scoped(sha, "ten_a", "v1", 1, &a), VG_OK);
    assert_int_equal(cache_key_make_scoped(sha, "ten_a", "v1", 1, &a2), VG_OK);
    assert_int_equal(cache_key_make_scoped(sha, "ten_b", "v1", 1, &b), VG_OK);
    assert_memory_equal(a.bytes, a2.bytes, CACHE_KEY_BYTES);
    assert_memory_not_equal(a.bytes, b.bytes, CACHE_KEY_BYTES); /* tenants never share a key */
    assert_memory_not_equal(a.bytes, g.bytes, CACHE_KEY_BYTES);
    /* The scope is length-prefixed: "ab" + version "c" is not "a" + version "bc". */
    cache_key x, y;
    assert_int_equal(cache_key_make_scoped(sha, "ab", "c", 1, &x), VG_OK);
    assert_int_equal(cache_key_make_scoped(sha, "a", "bc", 1, &y), VG_OK);
    assert_memory_not_equal(x.bytes, y.bytes, CACHE_KEY_BYTES);
    char longs[CACHE_MAX_SCOPE_BYTES + 2];
    memset(longs, 's', sizeof longs - 1);
    longs[sizeof longs - 1] = 0;
    assert_int_equal(cache_key_make_scoped(sha, longs, "v1", 1, &x), VG_EINVAL);
}

/* Reads a whole open file from offset 0. */
static size_t pread_all(int fd, uint8_t *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap, 0);
    assert_true(n >= 0);
    return (size_t)n;
}

static void test_l2_remove_scrubs_bytes(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    assert_int_equal(cache__l2_open(dir, 1 << 20, &l2), VG_OK);
    cache_key k = key_n(4242);
    cache_val *v = val_n(4242, 2048);
    assert_int_equal(cache__l2_put(l2, &k, v), VG_OK);
    char path[PATH_MAX];
    assert_int_equal(cache__l2_entry_path(l2, &k, path, sizeof path), VG_OK);
    /* An open descriptor keeps the inode: after the removal it shows what the freed blocks held. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t buf[4096];
    size_t n = pread_all(fd, buf, sizeof buf);
    assert_int_equal(n, entry_bytes(2048));
    assert_memory_equal(buf + CACHE_ENTRY_HEADER_BYTES, cache_val_data(v), 2048);
    cache__l2_remove(l2, &k);
    assert_false(file_exists(path));
    n = pread_all(fd, buf, sizeof buf);
    assert_int_equal(n, entry_bytes(2048));
    for (size_t i = 0; i < n; i++)
        if (buf[i] != 0)
            fail_msg("byte %zu of the removed entry is still %u, not 0", i, buf[i]);
    close(fd);
    cache_val *got;
    assert_int_equal(cache__l2_get(l2, &k, &got), VG_ENOTFOUND);
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_val_unref(v);
    cache__l2_close(l2);
    rm_rf(dir);
    free(dir);
}

/* cache_remove is final even while the value's background write is still queued: the write is
 * cancelled (or waited for and then undone), never landing after the removal. */
static void test_remove_beats_queued_write(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l2_dir = dir;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    enum { N = 300 };
    uint8_t buf[4000];
    for (uint32_t i = 0; i < N; i++) {
        fill_value(buf, sizeof buf, i);
        cache_key k = key_n(5000 + i);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
        cache_remove(c, &k); /* usually while its L2 write waits in the queue */
    }
    cache_flush(c);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 0);
    assert_int_equal(st.tier[CACHE_TIER_L2].entries, 0);
    for (uint32_t i = 0; i < N; i++) {
        cache_key k = key_n(5000 + i);
        cache_val *v;
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
    }
    cache_close(c);
    rm_rf(dir);
    free(dir);
}

/* A fake file system: `total` bytes of which the cache's entries (block-rounded) and `other`
 * (the database) are used. */
typedef struct fake_fs {
    uint64_t total, other;
    cache_l2 *l2;
} fake_fs;

static int fake_free(void *arg, const char *dir, uint64_t *free_bytes)
{
    (void)dir;
    fake_fs *fs = arg;
    cache_tier_stats st;
    cache__l2_stats(fs->l2, &st);
    uint64_t used = fs->other + st.entries * 4096; /* entries below one block each */
    *free_bytes = used >= fs->total ? 0 : fs->total - used;
    return VG_OK;
}

static void test_l2_keeps_free_space_reserve(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_l2 *l2;
    assert_int_equal(cache__l2_open(dir, 1 << 20, &l2), VG_OK);
    /* A 3 MiB volume, 1 MiB reserve, the database at 1 MiB. */
    fake_fs fs = {3u << 20, 1u << 20, l2};
    cache__l2_set_free_fn(l2, fake_free, &fs);
    cache__l2_set_min_free(l2, 1u << 20);
    enum { N = 400 }; /* far more than the 256 blocks between the database and the reserve */
    for (uint32_t i = 0; i < N; i++) {
        cache_key k = key_n(7000 + i);
        cache_val *v = val_n(i, 1000);
        assert_int_equal(cache__l2_put(l2, &k, v), VG_OK); /* room made by evicting the oldest */
        cache_val_unref(v);
        uint64_t avail;
        fake_free(&fs, dir, &avail);
        assert_true(avail >= (1u << 20));
    }
    cache_tier_stats st;
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 256);
    assert_true(st.evictions >= N - 256);
    assert_int_equal(st.nospace, 0);
    cache_val *got;
    cache_key newest = key_n(7000 + N - 1), oldest = key_n(7000);
    assert_int_equal(cache__l2_get(l2, &newest, &got), VG_OK);
    cache_val_unref(got);
    assert_int_equal(cache__l2_get(l2, &oldest, &got), VG_ENOTFOUND);

    /* The database grows past the reserve: the cache empties itself and stops writing. */
    fs.other = 3u << 20;
    cache_key k = key_n(9999);
    cache_val *v = val_n(9999, 1000);
    assert_int_equal(cache__l2_put(l2, &k, v), VG_EUNAVAIL);
    cache_val_unref(v);
    cache__l2_stats(l2, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.nospace, 1);
    assert_int_equal(cache__l2_get(l2, &k, &got), VG_ENOTFOUND);
    cache__l2_close(l2);

    /* At open (through the facade) a volume already under the reserve is given back at once. */
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l2_dir = dir;
    cfg.l2_min_free_bytes = UINT64_MAX / 2; /* more than any real volume has free */
    cfg.l2_async_put = 0;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    assert_int_equal(cache_put(c, &k, "x", 1), VG_OK); /* a cache failure is not the caller's */
    cache_stats cs;
    cache_stats_get(c, &cs);
    assert_int_equal(cs.tier[CACHE_TIER_L2].entries, 0);
    assert_int_equal(cs.tier[CACHE_TIER_L2].nospace, 1);
    cache_close(c);
    rm_rf(dir);
    free(dir);
}

static void test_facade_tiers_fill(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_config cfg;
    cache_config_init(&cfg);
    assert_int_equal(cfg.l1_max_entries, 1000);
    assert_int_equal(cfg.l2_max_bytes, 1ull << 30);
    assert_int_equal(cfg.l3_ttl_s, 3600);
    cfg.l2_dir = dir;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(700);
    uint8_t buf[4000];
    fill_value(buf, sizeof buf, 700);
    cache_val *got;
    cache_tier tier;
    assert_int_equal(cache_get(c, &k, &got, &tier), VG_ENOTFOUND);
    assert_int_equal(tier, CACHE_TIER_MISS);
    assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    assert_int_equal(cache_get(c, &k, &got, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L1);
    assert_true(val_is(got, 700, sizeof buf));
    cache_val_unref(got);
    cache_close(c);

    /* After a restart L1 is empty: L2 answers and fills L1. */
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    assert_int_equal(cache_get(c, &k, &got, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L2);
    assert_string_equal(cache_tier_name(tier), "l2");
    cache_val_unref(got);
    assert_int_equal(cache_get(c, &k, &got, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L1);
    cache_val_unref(got);

    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[0].hits, 2);
    assert_int_equal(st.tier[CACHE_TIER_L1].hits, 1);
    assert_int_equal(st.tier[CACHE_TIER_L1].misses, 1);
    assert_int_equal(st.tier[CACHE_TIER_L2].hits, 1);
    assert_int_equal(st.tier[CACHE_TIER_L1].lat_count, 2);
    assert_int_equal(st.tier[CACHE_TIER_L2].lat_count, 1);
    assert_true(st.tier_enabled[CACHE_TIER_L2]);
    assert_false(st.tier_enabled[CACHE_TIER_L3]);
    assert_true(cache_stats_latency_ns(&st.tier[CACHE_TIER_L1], 0.5) > 0);

    cache_remove(c, &k);
    assert_int_equal(cache_get(c, &k, &got, &tier), VG_ENOTFOUND);
    assert_int_equal(cache_put(c, &k, NULL, (size_t)CACHE_MAX_VALUE_BYTES + 1), VG_EINVAL);
    cache_close(c);
    cache_close(NULL);

    /* Everything off still answers (always a miss). */
    cfg.l1_max_entries = 0;
    cfg.l2_dir = NULL;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    assert_int_equal(cache_put(c, &k, buf, 10), VG_OK);
    assert_int_equal(cache_get(c, &k, &got, NULL), VG_ENOTFOUND);
    cache_close(c);
    /* A malformed Redis URL is refused at open. */
    cfg.l3_url = "http://nope";
    assert_int_equal(cache_open(&cfg, &c), VG_EINVAL);
    rm_rf(dir);
    free(dir);
}

/* L2 writes on the background writer: the put returns before the file exists; cache_flush (or
 * close) waits for it. */
static void test_facade_async_l2(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_config cfg;
    cache_config_init(&cfg);
    assert_true(cfg.l2_async_put);
    cfg.l2_dir = dir;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    enum { N = 200 };
    uint8_t buf[1000];
    for (uint32_t i = 0; i < N; i++) {
        fill_value(buf, sizeof buf, i);
        cache_key k = key_n(900 + i);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    }
    cache_flush(c);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.async_pending, 0);
    assert_int_equal(st.tier[CACHE_TIER_L2].puts + st.tier[CACHE_TIER_L2].dropped, N);
    assert_int_equal(st.tier[CACHE_TIER_L2].dropped, 0); /* the queue (1024) was never full */
    assert_int_equal(st.tier[CACHE_TIER_L2].entries, N);
    cache_close(c);
    /* Every entry reached the disk. */
    cfg.l1_max_entries = 0;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    for (uint32_t i = 0; i < N; i++) {
        cache_key k = key_n(900 + i);
        cache_val *v;
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_OK);
        assert_true(val_is(v, i, sizeof buf));
        cache_val_unref(v);
    }
    cache_close(c);
    cfg.async_queue = 0;
    assert_int_equal(cache_open(&cfg, &c), VG_EINVAL);
    rm_rf(dir);
    free(dir);
}

static void test_latency_quantile(void **state)
{
    (void)state;
    cache_ctr ctr;
    memset(&ctr, 0, sizeof ctr);
    for (int i = 0; i < 99; i++)
        cache__ctr_latency(&ctr, 1000); /* bucket 9: [512, 1024) */
    cache__ctr_latency(&ctr, 1u << 20);
    cache_tier_stats st;
    cache__ctr_snapshot(&ctr, &st);
    assert_int_equal(st.lat_count, 100);
    double p50 = cache_stats_latency_ns(&st, 0.5), p100 = cache_stats_latency_ns(&st, 1.0);
    assert_true(p50 >= 512 && p50 < 1024);
    assert_true(p100 >= (1u << 20) && p100 < (1u << 21));
    memset(&st, 0, sizeof st);
    assert_true(cache_stats_latency_ns(&st, 0.5) == 0);
}

/* Allocation failure anywhere in open/put/get: a clean error or a clean degrade, never a leak or
 * a crash (ASan checks both). */
static void test_alloc_failures(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l2_dir = dir;
    cfg.l2_async_put = 0; /* fault injection counts allocations: keep them on this thread */
    cfg.l1_max_entries = 50;
    cache_key k = key_n(800);
    uint8_t buf[256];
    fill_value(buf, sizeof buf, 800);
    int completed = 0;
    for (long n = 1; n < 1000 && !completed; n++) {
        long before = vg_alloc_count();
        vg_alloc_fail_after(n);
        cache *c = NULL;
        int rc = cache_open(&cfg, &c);
        if (rc == VG_OK) {
            int prc = cache_put(c, &k, buf, sizeof buf);
            cache_val *got = NULL;
            int grc = cache_get(c, &k, &got, NULL);
            assert_true(prc == VG_OK || prc == VG_ENOMEM);
            assert_true(grc == VG_OK || grc == VG_ENOTFOUND);
            if (got) {
                assert_true(val_is(got, 800, sizeof buf));
                cache_val_unref(got);
            }
            vg_alloc_fail_after(0);
            cache_remove(c, &k);
            cache_close(c);
        } else {
            assert_int_equal(rc, VG_ENOMEM);
        }
        /* Done once the sequence ran without reaching the failure point. */
        completed = vg_alloc_count() - before < n;
        vg_alloc_fail_after(0);
        if (completed)
            assert_int_equal(rc, VG_OK);
    }
    assert_true(completed);
    rm_rf(dir);
    free(dir);
}

/* ---- run-time knobs (self-healing) ---------------------------------------------------------- */

/* Shrinking L1 evicts at once down to the new bounds (least recent first), raising lets it
 * hold more again, and clear empties it; every removal counts as an eviction. */
static void test_l1_set_capacity(void **state)
{
    (void)state;
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l1_max_entries = 64;
    cfg.l1_shards = 1;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    size_t me, mb;
    cache_l1_capacity(c, &me, &mb);
    assert_int_equal(me, 64);
    assert_int_equal(mb, CACHE_DEFAULT_L1_MAX_BYTES);
    uint8_t buf[100];
    for (int i = 0; i < 64; i++) {
        cache_key k = key_n(i);
        fill_value(buf, sizeof buf, i);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    }
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 64);

    assert_int_equal(cache_l1_set_capacity(c, 16, mb), VG_OK);
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 16);
    assert_int_equal(st.tier[CACHE_TIER_L1].evictions, 48);
    cache_val *v;
    cache_key newest = key_n(63), oldest = key_n(0);
    assert_int_equal(cache_get(c, &newest, &v, NULL), VG_OK);
    cache_val_unref(v);
    assert_int_equal(cache_get(c, &oldest, &v, NULL), VG_ENOTFOUND);

    /* The byte bound shrinks too. */
    size_t one = cache__l1_charge(sizeof buf);
    assert_int_equal(cache_l1_set_capacity(c, 16, 4 * one), VG_OK);
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 4);

    /* Raised: holds 200 again. */
    assert_int_equal(cache_l1_set_capacity(c, 200, mb), VG_OK);
    for (int i = 100; i < 300; i++) {
        cache_key k = key_n(i);
        fill_value(buf, sizeof buf, i);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    }
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 200);
    cache_l1_capacity(c, &me, NULL);
    assert_int_equal(me, 200);

    assert_int_equal(cache_l1_clear(c), 200);
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 0);
    assert_int_equal(st.tier[CACHE_TIER_L1].bytes, 0);
    assert_int_equal(cache_l1_set_capacity(c, 0, mb), VG_EINVAL);
    cache_close(c);

    /* Without L1 the knobs say so. */
    cfg.l1_max_entries = 0;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    assert_int_equal(cache_l1_set_capacity(c, 10, mb), VG_EUNSUPPORTED);
    cache_l1_capacity(c, &me, &mb);
    assert_int_equal(me, 0);
    assert_int_equal(cache_l1_clear(c), 0);
    cache_close(c);
}

/* Warming loads L2's most recently used entries into an empty L1: after it, those keys hit L1
 * and an older one still comes from L2. */
static void test_warm_l1_from_l2(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l2_dir = dir;
    cfg.l2_async_put = 0;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    uint8_t buf[300];
    for (int i = 0; i < 20; i++) {
        cache_key k = key_n(1000 + i);
        fill_value(buf, sizeof buf, 1000 + i);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    }
    assert_int_equal(cache_l1_clear(c), 20);
    size_t loaded = 99;
    assert_int_equal(cache_warm_l1_from_l2(c, 5, &loaded), VG_OK);
    assert_int_equal(loaded, 5);
    cache_val *v;
    cache_tier tier;
    for (int i = 15; i < 20; i++) {
        cache_key k = key_n(1000 + i);
        assert_int_equal(cache_get(c, &k, &v, &tier), VG_OK);
        assert_int_equal(tier, CACHE_TIER_L1);
        assert_true(val_is(v, 1000 + i, sizeof buf));
        cache_val_unref(v);
    }
    cache_key old = key_n(1000);
    assert_int_equal(cache_get(c, &old, &v, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L2);
    cache_val_unref(v);
    /* Entries already in L1 are not loaded again. */
    assert_int_equal(cache_warm_l1_from_l2(c, 5, &loaded), VG_OK);
    assert_int_equal(loaded, 0);
    cache_close(c);

    cfg.l2_dir = NULL;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    assert_int_equal(cache_warm_l1_from_l2(c, 5, &loaded), VG_EUNSUPPORTED);
    cache_close(c);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_key_make),
        cmocka_unit_test(test_val_refcount),
        cmocka_unit_test(test_entry_roundtrip_and_damage),
        cmocka_unit_test(test_l1_lru_order),
        cmocka_unit_test(test_l1_byte_bound),
        cmocka_unit_test(test_l1_value_outlives_eviction),
        cmocka_unit_test(test_l1_shard_sizing),
        cmocka_unit_test(test_l1_threads),
        cmocka_unit_test(test_l2_put_get_restart),
        cmocka_unit_test(test_l2_lru_survives_restart),
        cmocka_unit_test(test_l2_size_bound),
        cmocka_unit_test(test_l2_corruption_detected),
        cmocka_unit_test(test_l2_bad_directory),
        cmocka_unit_test(test_facade_tiers_fill),
        cmocka_unit_test(test_facade_async_l2),
        cmocka_unit_test(test_latency_quantile),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_key_scoped),
        cmocka_unit_test(test_l2_remove_scrubs_bytes),
        cmocka_unit_test(test_remove_beats_queued_write),
        cmocka_unit_test(test_l2_keeps_free_space_reserve),
        cmocka_unit_test(test_l1_set_capacity),
        cmocka_unit_test(test_warm_l1_from_l2),
    };
    vg_log_set_level(VG_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
