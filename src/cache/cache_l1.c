/*
 * cache L1: an in-process LRU split into shards, each a chained hash table plus a doubly linked
 * recency list under its own mutex, so concurrent requests rarely meet on a lock.
 *
 * Invariants (per shard, under its mutex): every node is in exactly one bucket chain and in the
 * LRU list (most recent next to the sentinel); entries <= max_entries and bytes <= max_bytes after
 * every put. The shard bounds add up to exactly the configured global bounds, so the tier as a
 * whole never exceeds them; recency is exact within a shard and approximate across shards (keys
 * are SHA-256 output, so shards fill evenly).
 *
 * Values are refcounted: the table holds one reference per entry and a get hands out another,
 * so an eviction racing with a reader frees nothing the reader still uses. Values are released
 * and nodes freed after the shard lock is dropped.
 */
#include "cache/cache_int.h"

#include "core/core.h"

#include <pthread.h>
#include <string.h>

/* Below these per-shard sizes, sharding costs more recency accuracy than it saves contention. */
#define L1_MIN_ENTRIES_PER_SHARD 8
#define L1_MIN_BYTES_PER_SHARD (1u << 20)

typedef struct l1_node {
    cache_key key;
    cache_val *val; /* one reference owned by the node */
    size_t charge;
    struct l1_node *prev, *next; /* LRU: sentinel.next is the most recent */
    struct l1_node *hnext;       /* bucket chain; reused as the victim list after unlinking */
} l1_node;

typedef struct l1_shard {
    _Alignas(64) pthread_mutex_t mu; /* one cache line per shard head: no false sharing */
    l1_node lru;                     /* sentinel */
    l1_node **table;
    size_t mask;
    size_t entries, bytes;
    size_t max_entries, max_bytes;
} l1_shard;

struct cache_l1 {
    unsigned nshards;
    unsigned shard_bits;
    l1_shard *shards;
    cache_ctr ctr;
};

size_t cache__l1_charge(size_t len)
{
    return len + sizeof(l1_node) + 32; /* + value header */
}

static uint64_t key_hash(const cache_key *k)
{
    uint64_t h;
    memcpy(&h, k->bytes, sizeof h);
    return h;
}

static l1_shard *shard_of(cache_l1 *l1, uint64_t h)
{
    return l1->shard_bits ? &l1->shards[h >> (64 - l1->shard_bits)] : &l1->shards[0];
}

int cache__l1_new(size_t max_entries, size_t max_bytes, unsigned shards, cache_l1 **out)
{
    if (!out || max_entries == 0 || max_bytes == 0)
        return vg_err_set(VG_EINVAL, "L1 bounds must be >= 1 (entries %zu, bytes %zu)", max_entries,
                          max_bytes);
    unsigned n = 1, bits = 0;
    while (n * 2 <= shards && n * 2 <= 1024) {
        n *= 2;
        bits++;
    }
    while (n > 1 &&
           (max_entries / n < L1_MIN_ENTRIES_PER_SHARD || max_bytes / n < L1_MIN_BYTES_PER_SHARD)) {
        n /= 2;
        bits--;
    }
    cache_l1 *l1 = cache__zalloc_aligned(sizeof *l1);
    if (!l1)
        return vg_err_set(VG_ENOMEM, "L1 cache");
    l1->shards = vg_aligned_alloc(64, n * sizeof(l1_shard));
    if (!l1->shards) {
        vg_free(l1);
        return vg_err_set(VG_ENOMEM, "L1 shards");
    }
    memset(l1->shards, 0, n * sizeof(l1_shard));
    l1->nshards = n;
    l1->shard_bits = bits;
    for (unsigned i = 0; i < n; i++) {
        l1_shard *s = &l1->shards[i];
        /* Spread the bounds so the shards add up to the global bounds exactly. */
        s->max_entries = max_entries / n + (i < max_entries % n);
        s->max_bytes = max_bytes / n + (i < max_bytes % n);
        size_t buckets = 16;
        while (buckets < s->max_entries && buckets < ((size_t)1 << 30))
            buckets *= 2;
        s->table = vg_calloc(buckets, sizeof *s->table);
        s->mask = buckets - 1;
        s->lru.prev = s->lru.next = &s->lru;
        pthread_mutex_init(&s->mu, NULL);
        if (!s->table) {
            l1->nshards = i + 1;
            cache__l1_free(l1);
            return vg_err_set(VG_ENOMEM, "L1 table of %zu buckets", buckets);
        }
    }
    *out = l1;
    return VG_OK;
}

void cache__l1_free(cache_l1 *l1)
{
    if (!l1)
        return;
    for (unsigned i = 0; i < l1->nshards; i++) {
        l1_shard *s = &l1->shards[i];
        l1_node *n = s->lru.next;
        while (n && n != &s->lru) {
            l1_node *next = n->next;
            cache_val_unref(n->val);
            vg_free(n);
            n = next;
        }
        vg_free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    vg_free(l1->shards);
    vg_free(l1);
}

static l1_node **find_slot(l1_shard *s, const cache_key *key, uint64_t h)
{
    l1_node **pp = &s->table[h & s->mask];
    while (*pp && memcmp((*pp)->key.bytes, key->bytes, CACHE_KEY_BYTES) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(l1_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static void lru_push_front(l1_shard *s, l1_node *n)
{
    n->prev = &s->lru;
    n->next = s->lru.next;
    s->lru.next->prev = n;
    s->lru.next = n;
}

int cache__l1_get(cache_l1 *l1, const cache_key *key, cache_val **out)
{
    uint64_t h = key_hash(key);
    l1_shard *s = shard_of(l1, h);
    cache_val *v = NULL;
    pthread_mutex_lock(&s->mu);
    l1_node *n = *find_slot(s, key, h);
    if (n) {
        if (s->lru.next != n) {
            lru_unlink(n);
            lru_push_front(s, n);
        }
        v = cache_val_ref(n->val);
    }
    pthread_mutex_unlock(&s->mu);
    if (!v) {
        CACHE_CTR_INC(&l1->ctr, misses);
        return VG_ENOTFOUND;
    }
    CACHE_CTR_INC(&l1->ctr, hits);
    *out = v;
    return VG_OK;
}

int cache__l1_contains(cache_l1 *l1, const cache_key *key)
{
    uint64_t h = key_hash(key);
    l1_shard *s = shard_of(l1, h);
    pthread_mutex_lock(&s->mu);
    int found = *find_slot(s, key, h) != NULL;
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* Removes n from its chain and the LRU list; the caller owns it afterwards. */
static void shard_detach(l1_shard *s, l1_node *n)
{
    l1_node **pp = find_slot(s, &n->key, key_hash(&n->key));
    *pp = n->hnext;
    lru_unlink(n);
    s->entries--;
    s->bytes -= n->charge;
}

static void release_victims(l1_node *victims)
{
    while (victims) {
        l1_node *next = victims->hnext;
        cache_val_unref(victims->val);
        vg_free(victims);
        victims = next;
    }
}

int cache__l1_put(cache_l1 *l1, const cache_key *key, cache_val *v)
{
    uint64_t h = key_hash(key);
    l1_shard *s = shard_of(l1, h);
    size_t charge = cache__l1_charge(cache_val_len(v));
    if (charge > s->max_bytes) {
        CACHE_CTR_INC(&l1->ctr, rejected);
        return vg_err_set(VG_ETOOBIG, "value of %zu bytes exceeds the L1 shard bound %zu",
                          cache_val_len(v), s->max_bytes);
    }
    l1_node *fresh = vg_malloc(sizeof *fresh);
    if (!fresh) {
        CACHE_CTR_INC(&l1->ctr, errors);
        return vg_err_set(VG_ENOMEM, "L1 node");
    }
    cache_val *old = NULL;
    l1_node *victims = NULL;
    uint64_t evicted = 0;

    pthread_mutex_lock(&s->mu);
    l1_node **slot = find_slot(s, key, h);
    l1_node *n = *slot;
    if (n) {
        old = n->val;
        n->val = cache_val_ref(v);
        s->bytes = s->bytes - n->charge + charge;
        n->charge = charge;
        lru_unlink(n);
        lru_push_front(s, n);
    } else {
        n = fresh;
        fresh = NULL;
        n->key = *key;
        n->val = cache_val_ref(v);
        n->charge = charge;
        n->hnext = NULL;
        *slot = n;
        lru_push_front(s, n);
        s->entries++;
        s->bytes += charge;
    }
    /* charge <= max_bytes and max_entries >= 1, so stopping at n always satisfies both bounds. */
    while ((s->entries > s->max_entries || s->bytes > s->max_bytes) && s->lru.prev != n) {
        l1_node *tail = s->lru.prev;
        shard_detach(s, tail);
        tail->hnext = victims;
        victims = tail;
        evicted++;
    }
    pthread_mutex_unlock(&s->mu);

    cache_val_unref(old);
    vg_free(fresh);
    release_victims(victims);
    if (evicted)
        CACHE_CTR_ADD(&l1->ctr, evictions, evicted);
    CACHE_CTR_INC(&l1->ctr, puts);
    return VG_OK;
}

void cache__l1_remove(cache_l1 *l1, const cache_key *key)
{
    uint64_t h = key_hash(key);
    l1_shard *s = shard_of(l1, h);
    pthread_mutex_lock(&s->mu);
    l1_node *n = *find_slot(s, key, h);
    if (n)
        shard_detach(s, n);
    pthread_mutex_unlock(&s->mu);
    if (n) {
        n->hnext = NULL;
        release_victims(n);
    }
}

unsigned cache__l1_shard_count(const cache_l1 *l1)
{
    return l1->nshards;
}
cache_ctr *cache__l1_ctr(cache_l1 *l1)
{
    return &l1->ctr;
}

void cache__l1_stats(cache_l1 *l1, cache_tier_stats *out)
{
    cache__ctr_snapshot(&l1->ctr, out);
    out->entries = out->bytes = 0;
    for (unsigned i = 0; i < l1->nshards; i++) {
        l1_shard *s = &l1->shards[i];
        pthread_mutex_lock(&s->mu);
        out->entries += s->entries;
        out->bytes += s->bytes;
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---- run-time capacity ---------------------------------------------------------------------- */

/* Evicts from the shard's tail until both bounds hold (caller holds mu); victims chained on
 * *victims for release after the unlock. */
static uint64_t shard_trim(l1_shard *s, l1_node **victims)
{
    uint64_t evicted = 0;
    while ((s->entries > s->max_entries || s->bytes > s->max_bytes) && s->lru.prev != &s->lru) {
        l1_node *tail = s->lru.prev;
        shard_detach(s, tail);
        tail->hnext = *victims;
        *victims = tail;
        evicted++;
    }
    return evicted;
}

/* Rehashes into a table of `buckets` (caller holds mu); a failed allocation keeps the old table
 * (longer chains, still correct). */
static void shard_rehash(l1_shard *s, size_t buckets)
{
    l1_node **t = vg_calloc(buckets, sizeof *t);
    if (!t)
        return;
    for (size_t i = 0; i <= s->mask; i++) {
        l1_node *n = s->table[i];
        while (n) {
            l1_node *next = n->hnext;
            size_t b = key_hash(&n->key) & (buckets - 1);
            n->hnext = t[b];
            t[b] = n;
            n = next;
        }
    }
    vg_free(s->table);
    s->table = t;
    s->mask = buckets - 1;
}

int cache__l1_set_capacity(cache_l1 *l1, size_t max_entries, size_t max_bytes, uint64_t *evicted)
{
    if (max_entries == 0 || max_bytes == 0)
        return vg_err_set(VG_EINVAL, "L1 bounds must be >= 1 (entries %zu, bytes %zu)", max_entries,
                          max_bytes);
    unsigned n = l1->nshards;
    /* The shard count is fixed at creation: every shard keeps room for one entry. */
    if (max_entries < n)
        max_entries = n;
    if (max_bytes < n)
        max_bytes = n;
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        l1_shard *s = &l1->shards[i];
        l1_node *victims = NULL;
        pthread_mutex_lock(&s->mu);
        s->max_entries = max_entries / n + (i < max_entries % n);
        s->max_bytes = max_bytes / n + (i < max_bytes % n);
        size_t buckets = s->mask + 1;
        while (buckets < s->max_entries && buckets < ((size_t)1 << 30))
            buckets *= 2;
        if (buckets > s->mask + 1)
            shard_rehash(s, buckets);
        total += shard_trim(s, &victims);
        pthread_mutex_unlock(&s->mu);
        release_victims(victims);
    }
    if (total)
        CACHE_CTR_ADD(&l1->ctr, evictions, total);
    if (evicted)
        *evicted = total;
    return VG_OK;
}

uint64_t cache__l1_clear(cache_l1 *l1)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < l1->nshards; i++) {
        l1_shard *s = &l1->shards[i];
        l1_node *victims = NULL;
        pthread_mutex_lock(&s->mu);
        while (s->lru.prev != &s->lru) {
            l1_node *tail = s->lru.prev;
            shard_detach(s, tail);
            tail->hnext = victims;
            victims = tail;
            total++;
        }
        pthread_mutex_unlock(&s->mu);
        release_victims(victims);
    }
    if (total)
        CACHE_CTR_ADD(&l1->ctr, evictions, total);
    return total;
}

void cache__l1_capacity(cache_l1 *l1, size_t *max_entries, size_t *max_bytes)
{
    size_t e = 0, b = 0;
    for (unsigned i = 0; i < l1->nshards; i++) {
        l1_shard *s = &l1->shards[i];
        pthread_mutex_lock(&s->mu);
        e += s->max_entries;
        b += s->max_bytes;
        pthread_mutex_unlock(&s->mu);
    }
    if (max_entries)
        *max_entries = e;
    if (max_bytes)
        *max_bytes = b;
}
