/*
 * cache: the tiered facade. get walks L1 -> L2 -> L3 and fills the tiers above a hit; put writes
 * L1 at once and L2/L3 either at once or through one background writer thread. Tier failures are
 * counted and become misses; only bad arguments and out-of-memory surface as errors. Per-tier
 * lookup latency is recorded here, around each tier call, so the tiers stay free of clock reads.
 *
 * The writer: a bounded ring of (key, value reference, tiers) guarded by qmu; put pushes, the
 * writer thread pops and performs the L2 file write and/or the Redis SET. Measured on the shared
 * 2-core host (docs/BENCHMARKS.md), both cost 0.1-1 ms per put that a request would otherwise
 * wait for. A full ring drops the async writes of that put (counted): a cache may forget.
 */
#include "cache/cache_int.h"

#include "core/core.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>

#define JOB_L2 (1u << CACHE_TIER_L2)
#define JOB_L3 (1u << CACHE_TIER_L3)

typedef struct cache_job {
    cache_key key;
    cache_val *v;   /* one reference owned by the queue */
    unsigned tiers; /* JOB_L2 | JOB_L3 */
} cache_job;

/* Shared by every request thread; the tier pointers and flags are immutable after cache_open,
 * the queue fields are guarded by qmu. */
struct cache {
    cache_l1 *l1;
    cache_l2 *l2;
    cache_l3 *l3;
    int l2_async, l3_async;
    pthread_t writer;
    int writer_started;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;   /* the writer waits for jobs */
    pthread_cond_t qidle; /* cache_flush waits for an empty queue */
    cache_job *q;
    unsigned qcap, qhead, qcount;
    int qbusy, qstop;
    cache_key qcur; /* key of the job the writer is performing (valid while qbusy) */
    cache_ctr all;  /* whole cache_get: hits (any tier), misses, latency */
};

void cache_config_init(cache_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->l1_max_entries = CACHE_DEFAULT_L1_MAX_ENTRIES;
    cfg->l1_max_bytes = CACHE_DEFAULT_L1_MAX_BYTES;
    cfg->l1_shards = CACHE_DEFAULT_L1_SHARDS;
    cfg->l2_dir = NULL;
    cfg->l2_max_bytes = CACHE_DEFAULT_L2_MAX_BYTES;
    cfg->l2_min_free_bytes = 0; /* `vigil serve` sets its own (cache_l2_min_free) */
    cfg->l3_url = NULL;
    cfg->l3_prefix = NULL;
    cfg->l3_ttl_s = CACHE_DEFAULT_L3_TTL_S;
    cfg->l3_connect_timeout_ms = CACHE_DEFAULT_L3_CONNECT_TIMEOUT_MS;
    cfg->l3_command_timeout_ms = CACHE_DEFAULT_L3_COMMAND_TIMEOUT_MS;
    cfg->l3_pool_size = CACHE_DEFAULT_L3_POOL_SIZE;
    cfg->l3_breaker_failures = CACHE_DEFAULT_L3_BREAKER_FAILURES;
    cfg->l3_breaker_backoff_ms = CACHE_DEFAULT_L3_BREAKER_BACKOFF_MS;
    cfg->l3_breaker_backoff_max_ms = CACHE_DEFAULT_L3_BREAKER_BACKOFF_MAX_MS;
    cfg->l2_async_put = 1;
    cfg->l3_async_put = 1;
    cfg->async_queue = CACHE_DEFAULT_ASYNC_QUEUE;
}

/* ---- background writer ---------------------------------------------------------------------- */

static void *writer_main(void *arg)
{
    cache *c = arg;
    /* SCHED_BATCH: a waking writer does not preempt the request thread that just queued work
     * for it. On the loaded 2-core host that preemption put the P99 of a background put at
     * 2-11 ms; with SCHED_BATCH it was 0.04-0.26 ms (same P50). Linux applies the policy to
     * this thread only; if it fails the writer keeps the default policy. */
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    pthread_mutex_lock(&c->qmu);
    for (;;) {
        while (c->qcount == 0 && !c->qstop)
            pthread_cond_wait(&c->qcv, &c->qmu);
        if (c->qcount == 0)
            break; /* stopping and drained */
        cache_job job = c->q[c->qhead];
        c->qhead = c->qhead + 1 == c->qcap ? 0 : c->qhead + 1;
        c->qcount--;
        c->qbusy = 1;
        c->qcur = job.key;
        pthread_mutex_unlock(&c->qmu);
        if (job.tiers & JOB_L2)
            cache__l2_put(c->l2, &job.key, job.v);
        if (job.tiers & JOB_L3)
            cache__l3_put(c->l3, &job.key, job.v);
        cache_val_unref(job.v);
        pthread_mutex_lock(&c->qmu);
        c->qbusy = 0;
        /* Every job, not only the last: cache_remove waits for the one job of its key. */
        pthread_cond_broadcast(&c->qidle);
    }
    c->qbusy = 0;
    pthread_cond_broadcast(&c->qidle);
    pthread_mutex_unlock(&c->qmu);
    return NULL;
}

/* Queues the async writes of one put; never blocks. */
static void enqueue(cache *c, const cache_key *key, cache_val *v, unsigned tiers)
{
    /* While the breaker is open an L3 write would only be skipped later: skip it now. */
    if ((tiers & JOB_L3) && !cache__l3_available(c->l3)) {
        CACHE_CTR_INC(cache__l3_ctr(c->l3), skipped);
        tiers &= ~JOB_L3;
    }
    if (!tiers)
        return;
    pthread_mutex_lock(&c->qmu);
    if (c->qcount == c->qcap) {
        pthread_mutex_unlock(&c->qmu);
        if (tiers & JOB_L2)
            CACHE_CTR_INC(cache__l2_ctr(c->l2), dropped);
        if (tiers & JOB_L3)
            CACHE_CTR_INC(cache__l3_ctr(c->l3), dropped);
        return;
    }
    unsigned at = c->qhead + c->qcount;
    if (at >= c->qcap)
        at -= c->qcap;
    c->q[at] = (cache_job){*key, cache_val_ref(v), tiers};
    c->qcount++;
    pthread_cond_signal(&c->qcv);
    pthread_mutex_unlock(&c->qmu);
}

void cache_flush(cache *c)
{
    if (!c || !c->writer_started)
        return;
    pthread_mutex_lock(&c->qmu);
    while (c->qcount > 0 || c->qbusy)
        pthread_cond_wait(&c->qidle, &c->qmu);
    pthread_mutex_unlock(&c->qmu);
}

/* ---- open / close --------------------------------------------------------------------------- */

int cache_open(const cache_config *cfg, cache **out)
{
    if (!cfg || !out)
        return vg_err_set(VG_EINVAL, "cache_open: NULL argument");
    cache *c = cache__zalloc_aligned(sizeof *c);
    if (!c)
        return vg_err_set(VG_ENOMEM, "cache");
    pthread_mutex_init(&c->qmu, NULL);
    pthread_cond_init(&c->qcv, NULL);
    pthread_cond_init(&c->qidle, NULL);
    int rc = VG_OK;
    if (cfg->l1_max_entries > 0)
        rc = cache__l1_new(cfg->l1_max_entries, cfg->l1_max_bytes, cfg->l1_shards, &c->l1);
    if (rc == VG_OK && cfg->l2_dir && *cfg->l2_dir)
        rc = cache__l2_open(cfg->l2_dir, cfg->l2_max_bytes, &c->l2);
    if (rc == VG_OK && c->l2)
        cache__l2_set_min_free(c->l2, cfg->l2_min_free_bytes);
    if (rc == VG_OK && cfg->l3_url && *cfg->l3_url)
        rc = cache__l3_open(cfg, &c->l3);
    c->l2_async = c->l2 && cfg->l2_async_put;
    c->l3_async = c->l3 && cfg->l3_async_put;
    if (rc == VG_OK && (c->l2_async || c->l3_async)) {
        if (cfg->async_queue < 1 || cfg->async_queue > CACHE_MAX_ASYNC_QUEUE) {
            rc = vg_err_set(VG_EINVAL, "cache async_queue %u not in 1..%u", cfg->async_queue,
                            CACHE_MAX_ASYNC_QUEUE);
        } else if (!(c->q = vg_calloc(cfg->async_queue, sizeof *c->q))) {
            rc = vg_err_set(VG_ENOMEM, "cache writer queue");
        } else {
            c->qcap = cfg->async_queue;
            if (pthread_create(&c->writer, NULL, writer_main, c) != 0)
                rc = vg_err_set(VG_ENOMEM, "cache writer thread");
            else
                c->writer_started = 1;
        }
    }
    if (rc != VG_OK) {
        cache_close(c);
        return rc;
    }
    *out = c;
    return VG_OK;
}

void cache_close(cache *c)
{
    if (!c)
        return;
    if (c->writer_started) {
        pthread_mutex_lock(&c->qmu);
        c->qstop = 1;
        pthread_cond_signal(&c->qcv);
        pthread_mutex_unlock(&c->qmu);
        pthread_join(c->writer, NULL);
    }
    vg_free(c->q);
    pthread_mutex_destroy(&c->qmu);
    pthread_cond_destroy(&c->qcv);
    pthread_cond_destroy(&c->qidle);
    cache__l3_close(c->l3);
    cache__l2_close(c->l2);
    cache__l1_free(c->l1);
    vg_free(c);
}

int cache_get(cache *c, const cache_key *key, cache_val **out, cache_tier *tier)
{
    if (tier)
        *tier = CACHE_TIER_MISS;
    if (!c || !key || !out)
        return vg_err_set(VG_EINVAL, "cache_get: NULL argument");
    /* One clock read per tier visited plus the first: each tier's lookup time is the gap between
     * two reads, and the whole lookup is the last read minus the first. */
    uint64_t t0 = vg_now_ns(), t = t0, t1;
    cache_val *v = NULL;
    cache_tier hit = CACHE_TIER_MISS;

    if (c->l1) {
        int rc = cache__l1_get(c->l1, key, &v);
        t1 = vg_now_ns();
        cache__ctr_latency(cache__l1_ctr(c->l1), t1 - t);
        t = t1;
        if (rc == VG_OK)
            hit = CACHE_TIER_L1;
    }
    if (hit == CACHE_TIER_MISS && c->l2) {
        int rc = cache__l2_get(c->l2, key, &v);
        t1 = vg_now_ns();
        cache__ctr_latency(cache__l2_ctr(c->l2), t1 - t);
        t = t1;
        if (rc == VG_OK) {
            hit = CACHE_TIER_L2;
            if (c->l1)
                cache__l1_put(c->l1, key, v);
        }
    }
    if (hit == CACHE_TIER_MISS && c->l3) {
        int rc = cache__l3_get(c->l3, key, &v);
        t1 = vg_now_ns();
        cache__ctr_latency(cache__l3_ctr(c->l3), t1 - t);
        t = t1;
        if (rc == VG_OK) {
            hit = CACHE_TIER_L3;
            if (c->l1)
                cache__l1_put(c->l1, key, v);
            if (c->l2_async)
                enqueue(c, key, v, JOB_L2);
            else if (c->l2)
                cache__l2_put(c->l2, key, v);
        }
    }
    cache__ctr_latency(&c->all, t - t0);
    if (tier)
        *tier = hit;
    if (hit == CACHE_TIER_MISS) {
        CACHE_CTR_INC(&c->all, misses);
        return VG_ENOTFOUND;
    }
    CACHE_CTR_INC(&c->all, hits);
    *out = v;
    return VG_OK;
}

int cache_put_val(cache *c, const cache_key *key, cache_val *v)
{
    if (!c || !key || !v)
        return vg_err_set(VG_EINVAL, "cache_put: NULL argument");
    unsigned later = 0;
    if (c->l1)
        cache__l1_put(c->l1, key, v);
    if (c->l2_async)
        later |= JOB_L2;
    else if (c->l2)
        cache__l2_put(c->l2, key, v);
    if (c->l3_async)
        later |= JOB_L3;
    else if (c->l3)
        cache__l3_put(c->l3, key, v);
    if (later)
        enqueue(c, key, v, later);
    CACHE_CTR_INC(&c->all, puts);
    return VG_OK;
}

int cache_put(cache *c, const cache_key *key, const void *data, size_t len)
{
    if (!c || !key)
        return vg_err_set(VG_EINVAL, "cache_put: NULL argument");
    cache_val *v;
    int rc = cache_val_new(data, len, &v);
    if (rc != VG_OK)
        return rc;
    rc = cache_put_val(c, key, v);
    cache_val_unref(v);
    return rc;
}

/* Cancels the queued background writes of key and waits for the one in progress, so that the
 * removal below is not undone by a write that lands after it (erasure must be final). */
static void cancel_queued(cache *c, const cache_key *key)
{
    if (!c->writer_started)
        return;
    pthread_mutex_lock(&c->qmu);
    for (unsigned i = 0, at = c->qhead; i < c->qcount; i++, at = at + 1 == c->qcap ? 0 : at + 1)
        if (memcmp(c->q[at].key.bytes, key->bytes, CACHE_KEY_BYTES) == 0)
            c->q[at].tiers = 0; /* the writer skips it and drops its reference */
    while (c->qbusy && memcmp(c->qcur.bytes, key->bytes, CACHE_KEY_BYTES) == 0)
        pthread_cond_wait(&c->qidle, &c->qmu);
    pthread_mutex_unlock(&c->qmu);
}

void cache_remove(cache *c, const cache_key *key)
{
    if (!c || !key)
        return;
    cancel_queued(c, key);
    if (c->l1)
        cache__l1_remove(c->l1, key);
    if (c->l2)
        cache__l2_remove(c->l2, key);
    if (c->l3)
        cache__l3_remove(c->l3, key);
}

void cache_stats_get(cache *c, cache_stats *out)
{
    memset(out, 0, sizeof *out);
    cache__ctr_snapshot(&c->all, &out->tier[CACHE_TIER_MISS]);
    out->tier_enabled[CACHE_TIER_MISS] = 1;
    if (c->l1) {
        cache__l1_stats(c->l1, &out->tier[CACHE_TIER_L1]);
        out->tier_enabled[CACHE_TIER_L1] = 1;
        out->l1_shards = cache__l1_shard_count(c->l1);
    }
    if (c->l2) {
        cache__l2_stats(c->l2, &out->tier[CACHE_TIER_L2]);
        out->tier_enabled[CACHE_TIER_L2] = 1;
    }
    if (c->l3) {
        cache__l3_stats(c->l3, &out->tier[CACHE_TIER_L3], out);
        out->tier_enabled[CACHE_TIER_L3] = 1;
    }
    if (c->writer_started) {
        pthread_mutex_lock(&c->qmu);
        out->async_pending = c->qcount + (unsigned)c->qbusy;
        pthread_mutex_unlock(&c->qmu);
    }
}

/* ---- run-time knobs ------------------------------------------------------------------------- */

int cache_l1_set_capacity(cache *c, size_t max_entries, size_t max_bytes)
{
    if (!c)
        return vg_err_set(VG_EINVAL, "cache is NULL");
    if (!c->l1)
        return vg_err_set(VG_EUNSUPPORTED, "the cache has no L1 tier");
    return cache__l1_set_capacity(c->l1, max_entries, max_bytes, NULL);
}

void cache_l1_capacity(cache *c, size_t *max_entries, size_t *max_bytes)
{
    if (c && c->l1) {
        cache__l1_capacity(c->l1, max_entries, max_bytes);
        return;
    }
    if (max_entries)
        *max_entries = 0;
    if (max_bytes)
        *max_bytes = 0;
}

uint64_t cache_l1_clear(cache *c)
{
    return c && c->l1 ? cache__l1_clear(c->l1) : 0;
}

int cache_warm_l1_from_l2(cache *c, size_t n, size_t *loaded)
{
    if (loaded)
        *loaded = 0;
    if (!c)
        return vg_err_set(VG_EINVAL, "cache is NULL");
    if (!c->l1 || !c->l2)
        return vg_err_set(VG_EUNSUPPORTED, "warming needs both L1 and L2");
    if (n > CACHE_MAX_WARM_ENTRIES)
        n = CACHE_MAX_WARM_ENTRIES;
    if (n == 0)
        return VG_OK;
    cache_key *keys = vg_malloc(n * sizeof *keys);
    if (!keys)
        return vg_err_set(VG_ENOMEM, "warm key buffer of %zu keys", n);
    size_t got = cache__l2_recent(c->l2, keys, n), done = 0;
    /* Least recent first, so the most recent L2 entry ends up the most recent in L1. */
    for (size_t i = got; i-- > 0;) {
        if (cache__l1_contains(c->l1, &keys[i]))
            continue;
        cache_val *v = NULL;
        if (cache__l2_get(c->l2, &keys[i], &v) != VG_OK)
            continue;
        if (cache__l1_put(c->l1, &keys[i], v) == VG_OK)
            done++;
        cache_val_unref(v);
    }
    vg_free(keys);
    if (loaded)
        *loaded = done;
    return VG_OK;
}
