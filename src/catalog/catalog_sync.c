/*
 * catalog_sync: keeps this node's index in step with the store's change log (catalog.h
 * "several nodes", docs/SCALING.md).
 *
 * Every row after the last applied one is applied in seq order under its tenant's write stripe
 * (taken exclusively), so an apply never interleaves with this node's own add or removal of the
 * same tenant. That makes the own-write check exact: a reference add holds the stripe (shared)
 * from its store commit to its index insert, so when the sync holds the stripe the node's own
 * add is either complete (the index has the reference: skip) or was rolled back (the store no
 * longer has it: skip).
 *
 * Apply rules (each idempotent, so a row applied twice, or a row of this node's own write,
 * changes nothing):
 *   reference add     skip if indexed; else read it from the store (gone: skip) and index it;
 *                     a video reloads the tenant's video index
 *   reference remove  index remove (absent is fine), video reload if the tenant has videos,
 *                     then the erase hook with the row's image hash
 *   profile remove    index remove of the profile, video reload if the tenant has videos
 *   key revoke        the key hook (the server forgets the tenant's cached keys)
 *
 * Threads: one sync thread (catalog_sync_start) and any caller of catalog_sync_poll; polls are
 * serialised by poll_mu. Counters are under mu; the thread waits on cv for a wake-up or its
 * interval.
 */
#include "catalog/catalog_int.h"

#include "index/index.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Rows read per query: one poll loops until a short read. */
#define CATALOG__SYNC_BATCH 256
/* How often one node prunes log rows older than STORE_CHANGES_KEEP_MS. */
#define CATALOG__SYNC_PRUNE_INTERVAL_MS (3600ll * 1000)
/* While polls keep failing (the database is down: the store then fails each at once), the first
 * failure is logged and then one line per this interval, with the count, not one per poll. */
#define CATALOG__SYNC_WARN_INTERVAL_MS (10ll * 1000)

struct catalog__sync {
    catalog *c;              /* borrowed: the owner */
    pthread_mutex_t poll_mu; /* one poll at a time; guards applied_seq's advance */
    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop, wake;
    uint64_t interval_ms;
    catalog_key_fn key_hook; /* set before start; read-only afterwards */
    void *key_arg;
    int64_t applied_seq, head_seq;
    int64_t pending_oldest_ms; /* created_ms of the first unapplied row seen; 0 if none */
    int64_t last_poll_ms;      /* wall clock of the last poll that reached the head; 0 before */
    int64_t last_prune_ms;
    int64_t last_warn_ms; /* a failed poll was last logged then */
    uint64_t failed_run;  /* polls failed in a row */
    uint64_t applied, skipped, polls, wakeups, errors, catch_ups;
    store_change batch[CATALOG__SYNC_BATCH]; /* poll_mu */
};

int catalog__sync_new(catalog *c, int64_t from_seq, catalog__sync **out)
{
    catalog__sync *s = vg_calloc(1, sizeof *s);
    if (!s)
        return vg_err_set(VG_ENOMEM, "catalog: out of memory");
    s->c = c;
    s->applied_seq = s->head_seq = from_seq;
    s->last_poll_ms = vg_wall_ms(); /* the build just read everything up to from_seq */
    s->last_prune_ms = 0;
    pthread_mutex_init(&s->poll_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = s;
    return VG_OK;
}

static void sync__stop(catalog__sync *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = 0;
}

void catalog_sync_stop(catalog *c)
{
    if (c)
        sync__stop(catalog__sync_of(c));
}

void catalog__sync_free(catalog__sync *s)
{
    if (!s)
        return;
    sync__stop(s);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->poll_mu);
    vg_free(s);
}

void catalog_set_key_hook(catalog *c, catalog_key_fn fn, void *arg)
{
    catalog__sync *s = catalog__sync_of(c);
    s->key_hook = fn;
    s->key_arg = arg;
}

/* ---- applying one row ----------------------------------------------------------------------- */

/* Reloads the tenant's video index when it holds videos (or always, with force). */
static void sync__videos(catalog *c, const char *tenant, int force)
{
    size_t videos = 0, frames = 0;
    if (!force)
        catalog_video_stats(c, tenant, &videos, &frames);
    if ((force || videos) &&
        catalog__videos_reload(catalog__videos_of(c), catalog__store_of(c), tenant) != VG_OK)
        VG_ERROR("catalog",
                 "sync: video index of %s: %s (its videos match nothing until the "
                 "next change or start)",
                 tenant, vg_err_msg());
}

/* Applies a reference add. VG_OK (applied or skipped, *skipped says which) or a store error
 * to retry at the next poll. */
static int sync__ref_add(catalog *c, const store_change *ch, vg_arena *a, int *skipped)
{
    index_db *ix = catalog__index_of(c);
    /* A row written before schema 8 has no key: the reference's own row has it. */
    if ((ch->object_key && index_has_reference(ix, ch->tenant_id, (uint64_t)ch->object_key)) ||
        catalog__videos_has(catalog__videos_of(c), ch->tenant_id, ch->object_id)) {
        *skipped = 1;
        return VG_OK;
    }
    store_reference r;
    int rc = store_reference_get(catalog__store_of(c), ch->tenant_id, ch->object_id, a, &r);
    if (rc == VG_ENOTFOUND) { /* removed since (its remove row follows) or rolled back */
        *skipped = 1;
        return VG_OK;
    }
    if (rc != VG_OK)
        return rc;
    if (!ch->object_key && index_has_reference(ix, r.tenant_id, (uint64_t)r.key)) {
        *skipped = 1;
        return VG_OK;
    }
    rc = catalog__index_add(ix, &r);
    if (rc != VG_OK) {
        /* Not retried: memory or the tenant's entry limit will not change by the next poll,
         * and retrying would hold every later row back. The next start indexes it. */
        VG_ERROR("catalog", "sync: reference %s not indexed on this node: %s", r.id, vg_err_msg());
        index_remove_reference(ix, r.tenant_id, (uint64_t)r.key);
        return VG_OK;
    }
    if (r.is_video)
        sync__videos(c, ch->tenant_id, 1);
    return VG_OK;
}

static int sync__apply(catalog *c, catalog__sync *s, const store_change *ch, vg_arena *a,
                       int *skipped)
{
    *skipped = 0;
    index_db *ix = catalog__index_of(c);
    if (ch->kind == STORE_CHANGE_KEY) {
        if (s->key_hook)
            s->key_hook(s->key_arg, ch->tenant_id, ch->object_id);
        return VG_OK;
    }
    if (ch->kind != STORE_CHANGE_REFERENCE && ch->kind != STORE_CHANGE_PROFILE) {
        *skipped = 1; /* a kind a newer build writes */
        return VG_OK;
    }
    pthread_rwlock_t *lock = catalog__stripe(c, ch->tenant_id);
    pthread_rwlock_wrlock(lock);
    int rc = VG_OK;
    if (ch->kind == STORE_CHANGE_REFERENCE && !ch->remove) {
        rc = sync__ref_add(c, ch, a, skipped);
    } else if (ch->kind == STORE_CHANGE_REFERENCE) {
        int irc = VG_ENOTFOUND;
        if (ch->object_key)
            irc = index_remove_reference(ix, ch->tenant_id, (uint64_t)ch->object_key);
        else /* a row from before schema 8, which no node of this build writes */
            VG_WARN("catalog",
                    "sync: removal of %s has no reference key; this node matches it until "
                    "its next start",
                    ch->object_id);
        if (irc == VG_ENOTFOUND)
            *skipped = 1;
        if (catalog__videos_has(catalog__videos_of(c), ch->tenant_id, ch->object_id))
            sync__videos(c, ch->tenant_id, 0);
    } else if (ch->remove) {
        index_remove_profile(ix, ch->tenant_id, ch->object_id);
        sync__videos(c, ch->tenant_id, 0);
    }
    pthread_rwlock_unlock(lock);
    /* Erasure on every node: a feature cache anywhere may hold the removed image's features. */
    if (rc == VG_OK && ch->kind == STORE_CHANGE_REFERENCE && ch->remove && ch->has_sha256)
        catalog__erase(c, ch->tenant_id, ch->sha256);
    return rc;
}

/* ---- polling -------------------------------------------------------------------------------- */

int catalog_sync_poll(catalog *c, size_t *n_applied)
{
    if (!c)
        return vg_err_set(VG_EINVAL, "catalog_sync_poll: NULL catalog");
    catalog__sync *s = catalog__sync_of(c);
    store *st = catalog__store_of(c);
    vg_arena *a = vg_arena_new(0);
    if (!a)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_mutex_lock(&s->poll_mu);
    pthread_mutex_lock(&s->mu);
    int64_t from = s->applied_seq;
    s->polls++;
    pthread_mutex_unlock(&s->mu);
    size_t total = 0;
    int rc = VG_OK;
    for (;;) {
        size_t n = 0;
        if ((rc = store_changes_read(st, from, s->batch, CATALOG__SYNC_BATCH, &n)) != VG_OK)
            break;
        if (n) {
            pthread_mutex_lock(&s->mu);
            if (!s->pending_oldest_ms)
                s->pending_oldest_ms = s->batch[0].created_ms;
            if (s->batch[n - 1].seq > s->head_seq)
                s->head_seq = s->batch[n - 1].seq;
            pthread_mutex_unlock(&s->mu);
        }
        size_t i = 0;
        for (; i < n; i++) {
            int skipped = 0;
            vg_arena_reset(a);
            if ((rc = sync__apply(c, s, &s->batch[i], a, &skipped)) != VG_OK)
                break;
            pthread_mutex_lock(&s->mu);
            s->applied_seq = from = s->batch[i].seq;
            s->applied++;
            s->skipped += (uint64_t)skipped;
            s->pending_oldest_ms = i + 1 < n ? s->batch[i + 1].created_ms : 0;
            pthread_mutex_unlock(&s->mu);
            total++;
        }
        if (rc != VG_OK || n < CATALOG__SYNC_BATCH)
            break;
    }
    int64_t now = vg_wall_ms();
    pthread_mutex_lock(&s->mu);
    int warn = 0;
    uint64_t failed_run = 0;
    if (rc == VG_OK) {
        s->last_poll_ms = now;
        s->failed_run = 0;
    } else {
        s->errors++;
        failed_run = ++s->failed_run;
        if (failed_run == 1 || now - s->last_warn_ms >= CATALOG__SYNC_WARN_INTERVAL_MS) {
            warn = 1;
            s->last_warn_ms = now;
        }
    }
    int prune = rc == VG_OK && now - s->last_prune_ms >= CATALOG__SYNC_PRUNE_INTERVAL_MS;
    if (prune)
        s->last_prune_ms = now;
    pthread_mutex_unlock(&s->mu);
    if (rc != VG_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", vg_err_msg());
        if (warn)
            VG_WARN("catalog",
                    "sync: stopped after seq %lld: %s (retried at the next poll; %llu failed "
                    "in a row)",
                    (long long)from, detail, (unsigned long long)failed_run);
        vg_err_set(rc, "%s", detail);
    }
    pthread_mutex_unlock(&s->poll_mu);
    vg_arena_free(a);
    /* Every node prunes; deleting rows another node already deleted is a no-op. */
    if (prune && store_changes_prune(st, now - STORE_CHANGES_KEEP_MS, NULL) != VG_OK)
        VG_WARN("catalog", "sync: pruning the change log: %s", vg_err_msg());
    if (n_applied)
        *n_applied = total;
    return rc;
}

int catalog_sync_catch_up(catalog *c)
{
    if (!c)
        return vg_err_set(VG_EINVAL, "catalog_sync_catch_up: NULL catalog");
    catalog__sync *s = catalog__sync_of(c);
    int64_t head = 0;
    int rc = store_changes_head(catalog__store_of(c), &head);
    if (rc != VG_OK)
        return rc;
    pthread_mutex_lock(&s->mu);
    int behind = head > s->applied_seq;
    if (behind) {
        s->catch_ups++;
        if (head > s->head_seq)
            s->head_seq = head;
    }
    pthread_mutex_unlock(&s->mu);
    return behind ? catalog_sync_poll(c, NULL) : VG_OK;
}

static void *sync__thread(void *arg)
{
    catalog__sync *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (!s->wake) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + s->interval_ms * 1000000ull;
            ts.tv_sec += (time_t)(ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        if (s->stop)
            break;
        s->wake = 0;
        pthread_mutex_unlock(&s->mu);
        catalog_sync_poll(s->c, NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int catalog_sync_start(catalog *c, uint64_t interval_ms)
{
    if (!c)
        return vg_err_set(VG_EINVAL, "catalog_sync_start: NULL catalog");
    catalog__sync *s = catalog__sync_of(c);
    if (s->started || s->stop)
        return vg_err_set(VG_EINVAL, "catalog: the sync thread is running or was stopped");
    s->interval_ms =
        interval_ms < CATALOG_SYNC_MIN_INTERVAL_MS ? CATALOG_SYNC_MIN_INTERVAL_MS : interval_ms;
    if (pthread_create(&s->thread, NULL, sync__thread, s) != 0)
        return vg_err_set(VG_ENOMEM, "catalog: cannot start the sync thread");
    s->started = 1;
    return VG_OK;
}

void catalog_sync_wake(void *catalog_ptr)
{
    catalog__sync *s = catalog__sync_of(catalog_ptr);
    pthread_mutex_lock(&s->mu);
    s->wake = 1;
    s->wakeups++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void catalog_sync_stats_get(catalog *c, catalog_sync_stats *out)
{
    catalog__sync *s = catalog__sync_of(c);
    int64_t now = vg_wall_ms();
    pthread_mutex_lock(&s->mu);
    out->applied_seq = s->applied_seq;
    out->head_seq = s->head_seq;
    out->applied = s->applied;
    out->skipped = s->skipped;
    out->polls = s->polls;
    out->wakeups = s->wakeups;
    out->errors = s->errors;
    out->catch_ups = s->catch_ups;
    out->lag_ms =
        s->pending_oldest_ms && now > s->pending_oldest_ms ? now - s->pending_oldest_ms : 0;
    out->since_poll_ms = s->last_poll_ms ? (now > s->last_poll_ms ? now - s->last_poll_ms : 0) : -1;
    pthread_mutex_unlock(&s->mu);
}
