/*
 * Bearer-key cache: SHA-256(key) -> principal, so authenticating a request costs one hash and a
 * table probe instead of a database query. Keys are never kept, only their hashes.
 *
 * The admin hash is compared in constant time first. Table lookups index by the hash's first
 * bytes (which reveal nothing about the key: an attacker would need a preimage) and confirm with
 * vg_ct_equal over all 32 bytes. Revocation calls http_keycache_forget_* before it answers, so a
 * revoked key stops working with the revoke's 2xx.
 *
 * Threads: one rwlock; lookups take it shared, misses fill under the exclusive lock. The store
 * lookup runs outside the lock, with a generation counter so that a fill racing a revoke cannot
 * resurrect the revoked key.
 */
#include "http/http_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

typedef struct kc_entry {
    uint8_t hash[VG_SHA256_BYTES];
    http_principal p;
    struct kc_entry *next;
} kc_entry;

struct http_keycache {
    http_key_lookup_fn lookup;
    void *ud;
    size_t max_entries;
    pthread_rwlock_t lock;
    uint8_t admin_hash[VG_SHA256_BYTES];
    int has_admin;
    size_t n_buckets; /* power of two */
    kc_entry **buckets;
    size_t n;
    uint64_t generation; /* bumped by every forget/clear, under the write lock */
    _Atomic uint64_t hits, misses;
};

int http_keycache_new(http_key_lookup_fn lookup, void *ud, size_t max_entries, http_keycache **out)
{
    http_keycache *kc = vg_calloc(1, sizeof(*kc));
    if (!kc)
        return VG_ENOMEM;
    kc->lookup = lookup;
    kc->ud = ud;
    kc->max_entries = max_entries ? max_entries : 4096;
    kc->n_buckets = 256;
    while (kc->n_buckets < kc->max_entries && kc->n_buckets < (1u << 20))
        kc->n_buckets <<= 1;
    kc->buckets = vg_calloc(kc->n_buckets, sizeof(*kc->buckets));
    if (!kc->buckets) {
        vg_free(kc);
        return VG_ENOMEM;
    }
    pthread_rwlock_init(&kc->lock, NULL);
    *out = kc;
    return VG_OK;
}

static void clear_locked(http_keycache *kc)
{
    for (size_t i = 0; i < kc->n_buckets; i++) {
        kc_entry *e = kc->buckets[i];
        while (e) {
            kc_entry *next = e->next;
            vg_free(e);
            e = next;
        }
        kc->buckets[i] = NULL;
    }
    kc->n = 0;
}

void http_keycache_free(http_keycache *kc)
{
    if (!kc)
        return;
    clear_locked(kc);
    pthread_rwlock_destroy(&kc->lock);
    vg_free(kc->buckets);
    vg_free(kc);
}

void http_keycache_set_admin(http_keycache *kc, const uint8_t hash[VG_SHA256_BYTES])
{
    pthread_rwlock_wrlock(&kc->lock);
    memcpy(kc->admin_hash, hash, VG_SHA256_BYTES);
    kc->has_admin = 1;
    pthread_rwlock_unlock(&kc->lock);
}

static size_t bucket_of(const http_keycache *kc, const uint8_t *hash)
{
    uint64_t x;
    memcpy(&x, hash, sizeof(x));
    return (size_t)(x & (kc->n_buckets - 1));
}

int http_keycache_auth(void *ctx, const char *token, http_principal *out)
{
    http_keycache *kc = ctx;
    uint8_t h[VG_SHA256_BYTES];
    int rc = vg_sha256(token, strlen(token), h);
    if (rc != VG_OK)
        return rc;
    pthread_rwlock_rdlock(&kc->lock);
    if (kc->has_admin && vg_ct_equal(h, kc->admin_hash, VG_SHA256_BYTES)) {
        pthread_rwlock_unlock(&kc->lock);
        memset(out, 0, sizeof(*out));
        out->role = HTTP_ROLE_ADMIN;
        strcpy(out->key_id, "admin");
        return VG_OK;
    }
    for (kc_entry *e = kc->buckets[bucket_of(kc, h)]; e; e = e->next) {
        if (vg_ct_equal(e->hash, h, VG_SHA256_BYTES)) {
            *out = e->p;
            pthread_rwlock_unlock(&kc->lock);
            atomic_fetch_add_explicit(&kc->hits, 1, memory_order_relaxed);
            return VG_OK;
        }
    }
    uint64_t gen = kc->generation;
    pthread_rwlock_unlock(&kc->lock);
    atomic_fetch_add_explicit(&kc->misses, 1, memory_order_relaxed);
    if (!kc->lookup)
        return VG_ENOTFOUND;
    http_principal p;
    memset(&p, 0, sizeof(p));
    rc = kc->lookup(kc->ud, h, &p);
    if (rc != VG_OK)
        return rc;
    kc_entry *e = vg_malloc(sizeof(*e));
    if (e) {
        memcpy(e->hash, h, VG_SHA256_BYTES);
        e->p = p;
        pthread_rwlock_wrlock(&kc->lock);
        if (kc->generation != gen) {
            vg_free(e); /* a revoke ran meanwhile: answer from the lookup, cache nothing */
        } else {
            if (kc->n >= kc->max_entries)
                clear_locked(kc);
            size_t b = bucket_of(kc, h);
            kc_entry *dup = kc->buckets[b];
            while (dup && memcmp(dup->hash, h, VG_SHA256_BYTES) != 0)
                dup = dup->next;
            if (dup) {
                vg_free(e); /* another thread filled it first */
            } else {
                e->next = kc->buckets[b];
                kc->buckets[b] = e;
                kc->n++;
            }
        }
        pthread_rwlock_unlock(&kc->lock);
    }
    *out = p;
    return VG_OK;
}

void http_keycache_forget_key(http_keycache *kc, const uint8_t hash[VG_SHA256_BYTES])
{
    pthread_rwlock_wrlock(&kc->lock);
    kc->generation++;
    kc_entry **pp = &kc->buckets[bucket_of(kc, hash)];
    while (*pp) {
        if (memcmp((*pp)->hash, hash, VG_SHA256_BYTES) == 0) {
            kc_entry *dead = *pp;
            *pp = dead->next;
            vg_free(dead);
            kc->n--;
        } else {
            pp = &(*pp)->next;
        }
    }
    pthread_rwlock_unlock(&kc->lock);
}

void http_keycache_forget_tenant(http_keycache *kc, const char *tenant_id)
{
    pthread_rwlock_wrlock(&kc->lock);
    kc->generation++;
    for (size_t i = 0; i < kc->n_buckets; i++) {
        kc_entry **pp = &kc->buckets[i];
        while (*pp) {
            if (strcmp((*pp)->p.tenant_id, tenant_id) == 0) {
                kc_entry *dead = *pp;
                *pp = dead->next;
                vg_free(dead);
                kc->n--;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    pthread_rwlock_unlock(&kc->lock);
}

void http_keycache_clear(http_keycache *kc)
{
    pthread_rwlock_wrlock(&kc->lock);
    kc->generation++;
    clear_locked(kc);
    pthread_rwlock_unlock(&kc->lock);
}

size_t http_keycache_size(http_keycache *kc)
{
    pthread_rwlock_rdlock(&kc->lock);
    size_t n = kc->n;
    pthread_rwlock_unlock(&kc->lock);
    return n;
}

void http_keycache_stats(http_keycache *kc, uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&kc->hits);
    *misses = atomic_load(&kc->misses);
}
