/*
 * cache L3: Redis through hiredis 0.14 (the only file that includes hiredis). Values are stored as
 * the same self-checking entries as L2 files (header with key and CRC32C), with SET ... EX ttl.
 *
 * Availability, not consistency, is the goal: every call is bounded by the connect timeout
 * (50 ms) plus the command timeout (20 ms), failures are misses, and a circuit breaker stops
 * paying those timeouts while Redis is down:
 *   CLOSED    calls go through; `breaker_failures` consecutive failures -> OPEN;
 *   OPEN      calls are skipped (counted) until the back-off has passed, then one caller becomes
 *             the probe -> HALF_OPEN;
 *   HALF_OPEN the probe's call decides: success -> CLOSED (back-off reset), failure -> OPEN with
 *             the back-off doubled (up to the maximum). Other callers skip meanwhile.
 * Opening the breaker bumps a generation number; pooled connections from an older generation are
 * dropped and reconnected before use, so the probe does not trip over a socket to a Redis that
 * has since restarted.
 *
 * Connections: a small pool, each slot a hiredis context under its own mutex (hiredis contexts
 * are not thread-safe). A caller takes the first free slot, or waits on one (each holder is
 * bounded by the timeouts). A failed context is freed; the next use reconnects.
 *
 * Puts are synchronous here; the facade (cache.c) runs them on its background writer when
 * l3_async_put is set, so a request never waits on Redis to store.
 *
 * SIGPIPE: hiredis writes with write(2); a write to a connection Redis has just closed would
 * raise SIGPIPE and kill a process that did not ignore it. Each command runs with SIGPIPE
 * blocked in the calling thread and a pending one is consumed, so this tier is safe whatever the
 * process's signal disposition.
 */
#include "cache/cache_int.h"

#include "core/core.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define L3_MAX_PREFIX_BYTES 64
#define L3_MAX_POOL 64

/* ---- URL ------------------------------------------------------------------------------------ */

static int copy_part(char *dst, size_t cap, const char *src, size_t len, const char *what)
{
    if (len >= cap)
        return vg_err_set(VG_EINVAL, "redis URL: %s too long", what);
    memcpy(dst, src, len);
    dst[len] = 0;
    return VG_OK;
}

static int parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    if (len == 0 || len > 10)
        return VG_EINVAL;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return VG_EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return VG_EINVAL;
    *out = v;
    return VG_OK;
}

int cache__l3_parse_url(const char *url, cache_l3_url *out)
{
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof scheme - 1) != 0)
        return vg_err_set(VG_EINVAL, "redis URL must start with redis:// (TLS is not supported)");
    cache_l3_url u;
    memset(&u, 0, sizeof u);
    u.port = 6379;
    const char *p = url + sizeof scheme - 1;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    /* userinfo: the last '@' before the path (a password may contain '@'). */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    int rc;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if ((rc = copy_part(u.user, sizeof u.user, p, (size_t)(colon - p), "user")) ||
                (rc = copy_part(u.password, sizeof u.password, colon + 1, (size_t)(at - colon - 1),
                                "password")))
                return rc;
        } else if ((rc = copy_part(u.password, sizeof u.password, p, (size_t)(at - p),
                                   "password"))) {
            return rc; /* redis://secret@host: the whole userinfo is the password */
        }
        p = at + 1;
    }
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') { /* [IPv6] */
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end)
            return vg_err_set(VG_EINVAL, "redis URL: unterminated [ in host");
        if (host_end + 1 < end) {
            if (host_end[1] != ':')
                return vg_err_set(VG_EINVAL, "redis URL: junk after ]");
            port = host_end + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        host_end = colon ? colon : end;
        if (colon)
            port = colon + 1;
    }
    if (host_end == host)
        return vg_err_set(VG_EINVAL, "redis URL: empty host");
    if ((rc = copy_part(u.host, sizeof u.host, host, (size_t)(host_end - host), "host")))
        return rc;
    unsigned long v;
    if (port) {
        if (parse_uint(port, (size_t)(end - port), 65535, &v) != VG_OK || v == 0)
            return vg_err_set(VG_EINVAL, "redis URL: bad port");
        u.port = (int)v;
    }
    if (slash && slash[1]) {
        if (parse_uint(slash + 1, strlen(slash + 1), 1000000, &v) != VG_OK)
            return vg_err_set(VG_EINVAL, "redis URL: bad database number");
        u.db = (int)v;
    }
    *out = u;
    return VG_OK;
}

/* ---- the tier ------------------------------------------------------------------------------- */

typedef struct l3_conn {
    pthread_mutex_t mu;
    redisContext *ctx; /* NULL until the first use or after a failure */
    uint64_t gen;      /* breaker generation it was opened in */
} l3_conn;

/* Shared by all threads. Breaker transitions other than the CLOSED fast path are guarded by
 * bmu; each connection by its own mutex. */
struct cache_l3 {
    cache_l3_url url;
    char prefix[L3_MAX_PREFIX_BYTES + 1];
    size_t prefix_len;
    uint32_t ttl_s, connect_ms, command_ms;
    unsigned nconns;
    l3_conn *conns;
    _Atomic unsigned rr;

    unsigned breaker_failures;
    uint32_t backoff_ms, backoff_max_ms;
    pthread_mutex_t bmu;
    _Atomic int state;
    _Atomic unsigned fails;
    _Atomic uint64_t open_until_ns;
    uint32_t cur_backoff_ms; /* under bmu */
    _Atomic uint64_t gen;
    _Atomic uint64_t opens, reconnects;

    cache_ctr ctr;
};

static struct timeval ms_to_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- breaker -------------------------------------------------------------------------------- */

static int breaker_allow(cache_l3 *l3)
{
    int s = atomic_load_explicit(&l3->state, memory_order_acquire);
    if (s == CACHE_BREAKER_CLOSED)
        return 1;
    if (s == CACHE_BREAKER_HALF_OPEN)
        return 0;
    if (vg_now_ns() < atomic_load_explicit(&l3->open_until_ns, memory_order_acquire))
        return 0;
    int expected = CACHE_BREAKER_OPEN;
    return atomic_compare_exchange_strong(&l3->state, &expected, CACHE_BREAKER_HALF_OPEN);
}

static void breaker_success(cache_l3 *l3)
{
    atomic_store_explicit(&l3->fails, 0, memory_order_relaxed);
    if (atomic_load_explicit(&l3->state, memory_order_acquire) == CACHE_BREAKER_CLOSED)
        return;
    pthread_mutex_lock(&l3->bmu);
    if (atomic_load(&l3->state) != CACHE_BREAKER_CLOSED) {
        atomic_store(&l3->state, CACHE_BREAKER_CLOSED);
        l3->cur_backoff_ms = l3->backoff_ms;
        VG_INFO("cache", "redis %s:%d reachable again: L3 back on", l3->url.host, l3->url.port);
    }
    pthread_mutex_unlock(&l3->bmu);
}

static void breaker_open_locked(cache_l3 *l3)
{
    atomic_store(&l3->open_until_ns, vg_now_ns() + (uint64_t)l3->cur_backoff_ms * 1000000u);
    atomic_fetch_add(&l3->gen, 1);
    atomic_store(&l3->state, CACHE_BREAKER_OPEN);
}

static void breaker_failure(cache_l3 *l3)
{
    pthread_mutex_lock(&l3->bmu);
    int s = atomic_load(&l3->state);
    if (s == CACHE_BREAKER_HALF_OPEN) {
        uint64_t next = (uint64_t)l3->cur_backoff_ms * 2;
        l3->cur_backoff_ms = (uint32_t)(next > l3->backoff_max_ms ? l3->backoff_max_ms : next);
        breaker_open_locked(l3);
    } else if (s == CACHE_BREAKER_CLOSED &&
               atomic_fetch_add(&l3->fails, 1) + 1 >= l3->breaker_failures) {
        breaker_open_locked(l3);
        atomic_fetch_add(&l3->opens, 1);
        VG_WARN("cache", "redis %s:%d failing: L3 circuit open, next try in %u ms", l3->url.host,
                l3->url.port, (unsigned)l3->cur_backoff_ms);
    }
    pthread_mutex_unlock(&l3->bmu);
}

cache_breaker_state cache__l3_breaker(cache_l3 *l3)
{
    return (cache_breaker_state)atomic_load(&l3->state);
}

/* ---- connections and commands --------------------------------------------------------------- */

static l3_conn *conn_acquire(cache_l3 *l3)
{
    unsigned start = atomic_fetch_add_explicit(&l3->rr, 1, memory_order_relaxed) % l3->nconns;
    for (unsigned i = 0; i < l3->nconns; i++) {
        l3_conn *c = &l3->conns[(start + i) % l3->nconns];
        if (pthread_mutex_trylock(&c->mu) == 0)
            return c;
    }
    l3_conn *c = &l3->conns[start];
    pthread_mutex_lock(&c->mu);
    return c;
}

static void conn_drop(l3_conn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
}

/* Runs one command on a connected context; NULL reply means the context is broken. */
static redisReply *run_argv(redisContext *ctx, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(ctx, argc, argv, lens);
}

/* Connects c (caller holds c->mu): TCP with the connect timeout, then the command timeout,
 * AUTH and SELECT as configured. 0 or -1 (c->ctx left NULL). */
static int conn_open(cache_l3 *l3, l3_conn *c)
{
    redisContext *ctx =
        redisConnectWithTimeout(l3->url.host, l3->url.port, ms_to_tv(l3->connect_ms));
    if (!ctx)
        return -1;
    if (ctx->err || redisSetTimeout(ctx, ms_to_tv(l3->command_ms)) != REDIS_OK) {
        redisFree(ctx);
        return -1;
    }
    if (l3->url.password[0]) {
        const char *argv[3] = {"AUTH", l3->url.user, l3->url.password};
        size_t lens[3] = {4, strlen(l3->url.user), strlen(l3->url.password)};
        int argc = l3->url.user[0] ? 3 : 2;
        if (argc == 2) {
            argv[1] = l3->url.password;
            lens[1] = lens[2];
        }
        redisReply *r = run_argv(ctx, argc, argv, lens);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r && !ok)
            VG_WARN("cache", "redis AUTH refused: %.*s", (int)r->len, r->str ? r->str : "");
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(ctx);
            return -1;
        }
    }
    if (l3->url.db) {
        char db[16];
        int n = snprintf(db, sizeof db, "%d", l3->url.db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        redisReply *r = run_argv(ctx, 2, argv, lens);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(ctx);
            return -1;
        }
    }
    c->ctx = ctx;
    c->gen = atomic_load(&l3->gen);
    atomic_fetch_add(&l3->reconnects, 1);
    return 0;
}

/* Runs a command under the breaker. Returns the reply (owned, freeReplyObject), or NULL with
 * *skipped set when the breaker refused, clear when the call failed (counted as an error). */
static redisReply *l3_command(cache_l3 *l3, int argc, const char **argv, const size_t *lens,
                              int *skipped)
{
    *skipped = 0;
    if (!breaker_allow(l3)) {
        *skipped = 1;
        CACHE_CTR_INC(&l3->ctr, skipped);
        return NULL;
    }
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);

    l3_conn *c = conn_acquire(l3);
    if (c->ctx && c->gen != atomic_load(&l3->gen))
        conn_drop(c);
    redisReply *r = NULL;
    if (c->ctx || conn_open(l3, c) == 0) {
        r = run_argv(c->ctx, argc, argv, lens);
        if (!r)
            conn_drop(c); /* timeout, EOF or reset: this context is unusable now */
    }
    pthread_mutex_unlock(&c->mu);

    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);

    if (!r) {
        CACHE_CTR_INC(&l3->ctr, errors);
        breaker_failure(l3);
        return NULL;
    }
    breaker_success(l3);
    return r;
}

static size_t make_key(const cache_l3 *l3, const cache_key *key, char *out)
{
    memcpy(out, l3->prefix, l3->prefix_len);
    cache_key_hex(key, out + l3->prefix_len);
    return l3->prefix_len + 2 * CACHE_KEY_BYTES;
}

static void l3_del(cache_l3 *l3, const cache_key *key)
{
    char k[L3_MAX_PREFIX_BYTES + 65];
    const char *argv[2] = {"DEL", k};
    size_t lens[2] = {3, make_key(l3, key, k)};
    int skipped;
    redisReply *r = l3_command(l3, 2, argv, lens, &skipped);
    if (r)
        freeReplyObject(r);
}

int cache__l3_get(cache_l3 *l3, const cache_key *key, cache_val **out)
{
    char k[L3_MAX_PREFIX_BYTES + 65];
    const char *argv[2] = {"GET", k};
    size_t lens[2] = {3, make_key(l3, key, k)};
    int skipped;
    redisReply *r = l3_command(l3, 2, argv, lens, &skipped);
    if (!r) {
        CACHE_CTR_INC(&l3->ctr, misses);
        return VG_ENOTFOUND;
    }
    int rc = VG_ENOTFOUND, corrupt = 0;
    if (r->type == REDIS_REPLY_STRING) {
        const uint8_t *v;
        size_t vlen;
        if (cache__entry_parse((const uint8_t *)r->str, r->len, key, NULL, &v, &vlen) == VG_OK) {
            rc = cache_val_new(v, vlen, out);
            if (rc != VG_OK) {
                CACHE_CTR_INC(&l3->ctr, errors);
                rc = VG_ENOTFOUND;
            }
        } else {
            corrupt = 1;
            VG_WARN("cache", "L3 value for %s is corrupt (%s): deleted", k, vg_err_msg());
        }
    } else if (r->type != REDIS_REPLY_NIL) {
        CACHE_CTR_INC(&l3->ctr, errors); /* an error reply: Redis is up but refused */
    }
    freeReplyObject(r);
    if (corrupt) {
        CACHE_CTR_INC(&l3->ctr, corrupt);
        l3_del(l3, key);
    }
    if (rc == VG_OK)
        CACHE_CTR_INC(&l3->ctr, hits);
    else
        CACHE_CTR_INC(&l3->ctr, misses);
    return rc;
}

static int l3_set(cache_l3 *l3, const cache_key *key, const cache_val *v)
{
    size_t vlen = cache_val_len(v);
    uint8_t *entry = vg_malloc(CACHE_ENTRY_HEADER_BYTES + vlen);
    if (!entry) {
        CACHE_CTR_INC(&l3->ctr, errors);
        return vg_err_set(VG_ENOMEM, "L3 entry of %zu bytes", vlen);
    }
    cache__entry_header_encode(key, cache_val_data(v), vlen, entry);
    memcpy(entry + CACHE_ENTRY_HEADER_BYTES, cache_val_data(v), vlen);
    char k[L3_MAX_PREFIX_BYTES + 65], ttl[16];
    int tn = snprintf(ttl, sizeof ttl, "%u", (unsigned)l3->ttl_s);
    const char *argv[5] = {"SET", k, (const char *)entry, "EX", ttl};
    size_t lens[5] = {3, make_key(l3, key, k), CACHE_ENTRY_HEADER_BYTES + vlen, 2, (size_t)tn};
    int skipped;
    redisReply *r = l3_command(l3, 5, argv, lens, &skipped);
    vg_free(entry);
    if (!r)
        return vg_err_set(VG_EUNAVAIL, skipped ? "redis circuit open" : "redis unavailable");
    int ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!ok) {
        CACHE_CTR_INC(&l3->ctr, errors);
        return vg_err_set(VG_EUNAVAIL, "redis refused SET");
    }
    CACHE_CTR_INC(&l3->ctr, puts);
    return VG_OK;
}

int cache__l3_put(cache_l3 *l3, const cache_key *key, cache_val *v)
{
    return l3_set(l3, key, v);
}

int cache__l3_available(cache_l3 *l3)
{
    return atomic_load_explicit(&l3->state, memory_order_relaxed) == CACHE_BREAKER_CLOSED ||
           vg_now_ns() >= atomic_load_explicit(&l3->open_until_ns, memory_order_relaxed);
}

void cache__l3_remove(cache_l3 *l3, const cache_key *key)
{
    l3_del(l3, key);
}

/* ---- open / close --------------------------------------------------------------------------- */

int cache__l3_open(const cache_config *cfg, cache_l3 **out)
{
    cache_l3_url url;
    int rc = cache__l3_parse_url(cfg->l3_url, &url);
    if (rc != VG_OK)
        return rc;
    const char *prefix = cfg->l3_prefix ? cfg->l3_prefix : CACHE_DEFAULT_L3_PREFIX;
    size_t plen = strlen(prefix);
    if (plen > L3_MAX_PREFIX_BYTES)
        return vg_err_set(VG_EINVAL, "L3 prefix longer than %d bytes", L3_MAX_PREFIX_BYTES);
    if (cfg->l3_pool_size < 1 || cfg->l3_pool_size > L3_MAX_POOL || cfg->l3_ttl_s < 1 ||
        cfg->l3_connect_timeout_ms < 1 || cfg->l3_command_timeout_ms < 1 ||
        cfg->l3_breaker_failures < 1 || cfg->l3_breaker_backoff_ms < 1 ||
        cfg->l3_breaker_backoff_max_ms < cfg->l3_breaker_backoff_ms)
        return vg_err_set(VG_EINVAL,
                          "L3 settings out of range (pool 1..%d, timeouts, ttl, breaker >= 1)",
                          L3_MAX_POOL);
    cache_l3 *l3 = cache__zalloc_aligned(sizeof *l3);
    if (!l3)
        return vg_err_set(VG_ENOMEM, "L3 cache");
    l3->url = url;
    memcpy(l3->prefix, prefix, plen + 1);
    l3->prefix_len = plen;
    l3->ttl_s = cfg->l3_ttl_s;
    l3->connect_ms = cfg->l3_connect_timeout_ms;
    l3->command_ms = cfg->l3_command_timeout_ms;
    l3->breaker_failures = cfg->l3_breaker_failures;
    l3->backoff_ms = l3->cur_backoff_ms = cfg->l3_breaker_backoff_ms;
    l3->backoff_max_ms = cfg->l3_breaker_backoff_max_ms;
    pthread_mutex_init(&l3->bmu, NULL);
    l3->conns = vg_calloc(cfg->l3_pool_size, sizeof *l3->conns);
    if (!l3->conns) {
        cache__l3_close(l3);
        return vg_err_set(VG_ENOMEM, "L3 pool");
    }
    l3->nconns = cfg->l3_pool_size;
    for (unsigned i = 0; i < l3->nconns; i++)
        pthread_mutex_init(&l3->conns[i].mu, NULL);
    VG_INFO("cache", "L3 redis %s:%d db %d (ttl %us, timeouts %u/%u ms, pool %u)", url.host,
            url.port, url.db, (unsigned)l3->ttl_s, (unsigned)l3->connect_ms,
            (unsigned)l3->command_ms, l3->nconns);
    *out = l3;
    return VG_OK;
}

void cache__l3_close(cache_l3 *l3)
{
    if (!l3)
        return;
    for (unsigned i = 0; i < l3->nconns; i++) {
        conn_drop(&l3->conns[i]);
        pthread_mutex_destroy(&l3->conns[i].mu);
    }
    vg_free(l3->conns);
    pthread_mutex_destroy(&l3->bmu);
    vg_free(l3);
}

cache_ctr *cache__l3_ctr(cache_l3 *l3)
{
    return &l3->ctr;
}

void cache__l3_stats(cache_l3 *l3, cache_tier_stats *t, cache_stats *s)
{
    cache__ctr_snapshot(&l3->ctr, t);
    t->entries = t->bytes = 0;
    s->l3_breaker = cache__l3_breaker(l3);
    s->l3_breaker_opens = atomic_load(&l3->opens);
    s->l3_reconnects = atomic_load(&l3->reconnects);
}
