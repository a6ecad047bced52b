/* server_metrics: what every module counts, exported in /metrics. The modules keep their own
 * counters and latency histograms (cache, sched, index, store, face: none of them depends on obs);
 * a collector copies them into the registry at scrape time, so the request path pays nothing for
 * them here. The one thing observed on the request path is the analysis stage times, from the
 * analysis completion (server__metrics_analysis), through series resolved once at start.
 *
 * Naming follows Prometheus practice: vigil_ prefix, _total counters, _seconds and _bytes in base
 * units, labels from closed sets only (tier, kind, reason, outcome, stage, level, network,
 * precision). Module latency histograms count durations in [2^i, 2^(i+1)) ns buckets
 * (vg_lat_hist); they are exported with every other power of two as bounds (128 ns .. 8.6 s),
 * which is exact: every module bucket falls wholly under one bound. docs/OPERATIONS.md lists every
 * family.
 *
 * Thread-safety: server__metrics_open/free at start and stop; collect runs on the rendering
 * thread (one render at a time) and owns the `seen` state; server__metrics_analysis runs on any
 * analysis thread (series updates are lock-free). */
#include "server/server_int.h"

#include <string.h>
#include <unistd.h>

#include "analyze/analyze.h"
#include "cache/cache.h"
#include "face/face.h"
#include "obs/obs.h"
#include "sched/sched.h"

/* Module latency histograms: bound j is 2^(SRV_LAT_FIRST_LOG2 + SRV_LAT_STEP_LOG2 * j) ns. */
#define SRV_LAT_FIRST_LOG2 7
#define SRV_LAT_STEP_LOG2 2
#define SRV_LAT_BOUNDS 14 /* 2^7 ns = 128 ns .. 2^33 ns = 8.6 s */
/* Batch sizes: bound b is 2^(b+1) - 1 (sched's size buckets [2^b, 2^(b+1))), the last bucket
 * (256) is +Inf. */
#define SRV_BATCH_BOUNDS (SCHED_SIZE_BUCKETS - 2)
#define SRV_TIERS 3        /* l1, l2, l3 */
#define SRV_STAGES 9       /* see stage_names */
#define SRV_SEARCH_KINDS 2 /* pdq, face */

/* Analysis stages span microseconds (a cache lookup, a match) to seconds (a large decode with
 * the SSD detector): finer at the bottom than obs_latency_buckets. */
static const double stage_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                      0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                      0.5,     1,      2.5,     5,      10};

typedef enum {
    STAGE_CACHE = 0,
    STAGE_DECODE,
    STAGE_PDQ,
    STAGE_DETECT,
    STAGE_LANDMARKS,
    STAGE_DESCRIPTORS,
    STAGE_MATCH,
    STAGE_STORE,
    STAGE_TOTAL
} srv_stage;
static const char *const stage_names[SRV_STAGES] = {
    "cache", "decode", "pdq", "detect", "landmarks", "descriptors", "match", "store", "total"};
static const char *const tier_names[SRV_TIERS] = {"l1", "l2", "l3"};
static const char *const search_kinds[SRV_SEARCH_KINDS] = {"pdq", "face"};

/* Counters copied from module stats: the last value added, per series (collector state). */
typedef struct srv_seen {
    uint64_t cache[SRV_TIERS][8];
    uint64_t cache_opens, cache_reconnects;
    uint64_t sched[8];
    uint64_t replica_errors;
    uint64_t searches[3];
    uint64_t store_busy, store_commits;
    uint64_t sync_applied, sync_skipped, sync_errors;
    uint64_t store_txn_retries, store_reconnects, store_unavailable_fails;
    uint64_t log_dropped;
    uint64_t model_items[FACE_NET_COUNT][FACE_PRECISIONS];
} srv_seen;

struct server_metrics {
    server *s;
    double lat_bounds[SRV_LAT_BOUNDS];
    double batch_bounds[SRV_BATCH_BOUNDS];
    /* cache */
    obs_metric *cache_hits, *cache_misses, *cache_errors, *cache_corrupt, *cache_evictions,
        *cache_puts, *cache_dropped, *cache_entries, *cache_bytes, *cache_latency, *cache_enabled,
        *l3_state, *l3_opens, *l3_reconnects, *cache_pending;
    /* scheduler and replicas */
    obs_metric *sched_queue, *sched_admitted, *sched_rejected, *sched_expired, *sched_completed,
        *sched_batch_size, *sched_batch_wait, *sched_preferred;
    obs_metric *replicas, *replicas_min, *replicas_max, *replicas_busy, *replica_errors;
    /* analysis stages: series resolved at open, [level][stage] */
    obs_metric *stages;
    obs_series *stage_series[VG_LEVEL_COUNT][SRV_STAGES];
    /* models */
    obs_metric *model_latency, *model_items;
    /* index */
    obs_metric *ix_pdq, *ix_faces, *ix_profiles, *ix_tenants, *ix_dead, *ix_bytes, *ix_searches,
        *ix_latency;
    /* store */
    obs_metric *store_latency, *store_busy, *store_commits;
    /* change-log sync (several nodes, docs/SCALING.md) */
    obs_metric *sync_applied, *sync_errors, *sync_lag, *sync_lag_entries, *sync_since;
    obs_metric *sync_max_lag; /* the index_max_lag setting: the alert rule compares against it */
    obs_metric *store_txn_retries, *store_reconnects, *store_unavailable_fails, *store_unavailable;
    /* host: the denominators of CPU % and memory % in the Prometheus rules */
    obs_metric *host_cpus, *host_memory;
    obs_metric *log_dropped;
    srv_seen seen;
};

/* Adds what a monotonic count gained since the last scrape (as server.c's add_delta). */
static void delta(obs_metric *m, const char *const *labels, uint64_t now, uint64_t *seen)
{
    if (now > *seen) {
        obs_add(m, labels, now - *seen);
        *seen = now;
    }
}

/* A module's log2-ns histogram as the Prometheus histogram with lat_bounds. Module bucket i
 * ([2^i, 2^(i+1)) ns) goes under the first bound 2^k with k >= i + 1; past the last, +Inf. */
static void set_lat(obs_metric *m, const char *const *labels, const vg_lat_snapshot *h)
{
    uint64_t counts[SRV_LAT_BOUNDS + 1] = {0};
    for (unsigned i = 0; i < VG_LAT_BUCKETS; i++) {
        if (!h->buckets[i])
            continue;
        unsigned j = 0;
        while (j < SRV_LAT_BOUNDS && SRV_LAT_FIRST_LOG2 + SRV_LAT_STEP_LOG2 * j < i + 1)
            j++;
        /* The module's last bucket is open-ended: only +Inf holds it. */
        if (i == VG_LAT_BUCKETS - 1)
            j = SRV_LAT_BOUNDS;
        counts[j] += h->buckets[i];
    }
    obs_histogram_set(m, labels, counts, SRV_LAT_BOUNDS + 1, (double)h->sum_ns / 1e9);
}

/* ---- collector ------------------------------------------------------------------------------ */

static void collect_cache(server_metrics *sm, cache *c)
{
    cache_stats cs;
    cache_stats_get(c, &cs);
    for (int t = 0; t < SRV_TIERS; t++) {
        const cache_tier_stats *ts = &cs.tier[t + 1];
        const char *const *l = OBS_LABELS(tier_names[t]);
        uint64_t *seen = sm->seen.cache[t];
        delta(sm->cache_hits, l, ts->hits, &seen[0]);
        delta(sm->cache_misses, l, ts->misses, &seen[1]);
        delta(sm->cache_errors, l, ts->errors, &seen[2]);
        delta(sm->cache_corrupt, l, ts->corrupt, &seen[3]);
        delta(sm->cache_evictions, l, ts->evictions, &seen[4]);
        delta(sm->cache_puts, l, ts->puts, &seen[5]);
        delta(sm->cache_dropped, l, ts->dropped, &seen[6]);
        obs_set(sm->cache_entries, l, (double)ts->entries);
        obs_set(sm->cache_bytes, l, (double)ts->bytes);
        obs_set(sm->cache_enabled, l, cs.tier_enabled[t + 1] ? 1 : 0);
        vg_lat_snapshot h = {.count = ts->lat_count, .sum_ns = ts->lat_sum_ns};
        /* cache.h's layout is vg_lat_hist's: [2^i, 2^(i+1)) ns, 40 buckets. */
        _Static_assert(CACHE_LAT_BUCKETS == VG_LAT_BUCKETS, "cache and core latency buckets");
        memcpy(h.buckets, ts->lat_buckets, sizeof(h.buckets));
        set_lat(sm->cache_latency, l, &h);
    }
    obs_set(sm->l3_state, NULL, (double)cs.l3_breaker);
    delta(sm->l3_opens, NULL, cs.l3_breaker_opens, &sm->seen.cache_opens);
    delta(sm->l3_reconnects, NULL, cs.l3_reconnects, &sm->seen.cache_reconnects);
    obs_set(sm->cache_pending, NULL, (double)cs.async_pending);
}

static void collect_sched(server_metrics *sm, analyze_ctx *an)
{
    sched_stats ss;
    analyze_sched_stats_get(an, &ss);
    /* analyze runs one kind ("image"); a label keeps room for more. */
    for (size_t k = 0; k < ss.n_kinds && k < 1; k++) {
        const sched_kind_stats *ks = &ss.kinds[k];
        const char *kn = ks->name ? ks->name : "image";
        uint64_t *seen = sm->seen.sched;
        obs_set(sm->sched_queue, OBS_LABELS(kn), (double)ks->queue_depth);
        obs_set(sm->sched_preferred, OBS_LABELS(kn), (double)ks->preferred_batch);
        delta(sm->sched_admitted, OBS_LABELS(kn), ks->submitted, &seen[0]);
        delta(sm->sched_rejected, OBS_LABELS(kn, "queue_full"), ks->rejected, &seen[1]);
        delta(sm->sched_rejected, OBS_LABELS(kn, "tenant_quota"), ks->quota_rejected, &seen[2]);
        delta(sm->sched_expired, OBS_LABELS(kn), ks->expired, &seen[3]);
        delta(sm->sched_completed, OBS_LABELS(kn, "ok"), ks->completed, &seen[4]);
        delta(sm->sched_completed, OBS_LABELS(kn, "failed"), ks->failed, &seen[5]);
        delta(sm->sched_completed, OBS_LABELS(kn, "canceled"), ks->canceled, &seen[6]);
        /* sizes [2^b, 2^(b+1)) -> bound 2^(b+1) - 1; the buckets past the last bound -> +Inf */
        uint64_t counts[SRV_BATCH_BOUNDS + 1] = {0};
        for (unsigned b = 0; b < SCHED_SIZE_BUCKETS; b++)
            counts[b < SRV_BATCH_BOUNDS ? b : SRV_BATCH_BOUNDS] += ks->size_batches[b];
        obs_histogram_set(sm->sched_batch_size, OBS_LABELS(kn), counts, SRV_BATCH_BOUNDS + 1,
                          (double)ks->batch_items);
        set_lat(sm->sched_batch_wait, OBS_LABELS(kn), &ks->wait);
    }
    obs_set(sm->replicas, NULL, (double)ss.replicas);
    obs_set(sm->replicas_min, NULL, (double)ss.min_replicas);
    obs_set(sm->replicas_max, NULL, (double)ss.max_replicas);
    obs_set(sm->replicas_busy, NULL, (double)ss.replicas_busy);
    delta(sm->replica_errors, NULL, ss.replica_errors, &sm->seen.replica_errors);
}

static void collect_models(server_metrics *sm, const struct face_models *m)
{
    face_inference_stats fs;
    face_models_inference_stats(m, &fs);
    for (int n = 0; n < FACE_NET_COUNT; n++)
        for (int p = 0; p < FACE_PRECISIONS; p++) {
            if (!fs.latency[n][p].count)
                continue; /* a series appears on the first call, as obs series do */
            const char *const *l =
                OBS_LABELS(face_net_name((face_net)n), nn_precision_name((nn_precision)p));
            set_lat(sm->model_latency, l, &fs.latency[n][p]);
            delta(sm->model_items, l, fs.items[n][p], &sm->seen.model_items[n][p]);
        }
}

static void collect_index(server_metrics *sm, index_db *ix)
{
    index_stats st;
    if (index_stats_get(ix, NULL, &st) != VG_OK)
        return;
    obs_set(sm->ix_pdq, NULL, (double)st.pdq_entries);
    obs_set(sm->ix_faces, NULL, (double)st.face_entries);
    obs_set(sm->ix_profiles, NULL, (double)st.profiles);
    obs_set(sm->ix_tenants, NULL, (double)st.tenants);
    obs_set(sm->ix_dead, NULL, (double)st.dead_entries);
    obs_set(sm->ix_bytes, NULL, (double)st.bytes);
    delta(sm->ix_searches, OBS_LABELS("pdq_flat"), st.pdq_flat_searches, &sm->seen.searches[0]);
    delta(sm->ix_searches, OBS_LABELS("pdq_mih"), st.pdq_mih_searches, &sm->seen.searches[1]);
    delta(sm->ix_searches, OBS_LABELS("face"), st.face_searches, &sm->seen.searches[2]);
    set_lat(sm->ix_latency, OBS_LABELS(search_kinds[0]), &st.pdq_search_latency);
    set_lat(sm->ix_latency, OBS_LABELS(search_kinds[1]), &st.face_search_latency);
}

static void collect_store(server_metrics *sm, store *st)
{
    store_stats ss;
    store_stats_get(st, &ss);
    set_lat(sm->store_latency, NULL, &ss.query_latency);
    delta(sm->store_busy, NULL, ss.busy_retries, &sm->seen.store_busy);
    delta(sm->store_commits, NULL, ss.commits, &sm->seen.store_commits);
    delta(sm->store_txn_retries, NULL, ss.txn_retries, &sm->seen.store_txn_retries);
    delta(sm->store_reconnects, NULL, ss.reconnects, &sm->seen.store_reconnects);
    delta(sm->store_unavailable_fails, NULL, ss.unavailable_fails,
          &sm->seen.store_unavailable_fails);
    obs_set(sm->store_unavailable, NULL, ss.unavailable_since_ms ? 1 : 0);
}

static void collect_sync(server_metrics *sm, catalog *c)
{
    catalog_sync_stats ss;
    catalog_sync_stats_get(c, &ss);
    delta(sm->sync_applied, OBS_LABELS("applied"), ss.applied - ss.skipped, &sm->seen.sync_applied);
    delta(sm->sync_applied, OBS_LABELS("own"), ss.skipped, &sm->seen.sync_skipped);
    delta(sm->sync_errors, NULL, ss.errors, &sm->seen.sync_errors);
    obs_set(sm->sync_lag, NULL, (double)ss.lag_ms / 1e3);
    obs_set(sm->sync_lag_entries, NULL,
            (double)(ss.head_seq > ss.applied_seq ? ss.head_seq - ss.applied_seq : 0));
    obs_set(sm->sync_since, NULL, (double)ss.since_poll_ms / 1e3);
    obs_set(sm->sync_max_lag, NULL, (double)sm->s->cfg->index_max_lag_ms / 1e3);
}

static void collect(void *ctx)
{
    server_metrics *sm = ctx;
    server *s = sm->s;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
        obs_set(sm->host_memory, NULL, (double)pages * (double)page);
    obs_set(sm->host_cpus, NULL, (double)vg_cpu_count());
    delta(sm->log_dropped, NULL, vg_log_dropped_total(), &sm->seen.log_dropped);
    if (s->cache)
        collect_cache(sm, s->cache);
    if (s->an)
        collect_sched(sm, s->an);
    if (s->models)
        collect_models(sm, s->models);
    if (s->ix)
        collect_index(sm, s->ix);
    if (s->st)
        collect_store(sm, s->st);
    if (s->cat)
        collect_sync(sm, s->cat);
}

/* ---- analysis stages (request path) --------------------------------------------------------- */

void server__metrics_analysis(server *s, vg_level level, const analyze_result *r, int matched,
                              int stored)
{
    server_metrics *sm = s->metrics;
    if (!sm || !r || (unsigned)level >= VG_LEVEL_COUNT)
        return;
    obs_series *const *ser = sm->stage_series[level];
    const analyze_timings *t = &r->timings;
    const char *tier = t->cache_tier ? t->cache_tier : "off";
    /* Only the stages that ran: a cache hit decodes nothing, and an observed 0 would pull every
     * percentile of the stage down. */
    int computed = !strcmp(tier, "miss") || !strcmp(tier, "off");
    if (strcmp(tier, "off"))
        obs_series_observe(ser[STAGE_CACHE], (double)t->cache_us / 1e6);
    if (computed) {
        obs_series_observe(ser[STAGE_DECODE], (double)t->decode_us / 1e6);
        obs_series_observe(ser[STAGE_PDQ], (double)t->pdq_us / 1e6);
        if (r->features.faces_enabled) {
            obs_series_observe(ser[STAGE_DETECT], (double)t->detect_us / 1e6);
            if (r->features.n_faces) {
                obs_series_observe(ser[STAGE_LANDMARKS], (double)t->landmarks_us / 1e6);
                obs_series_observe(ser[STAGE_DESCRIPTORS], (double)t->descriptors_us / 1e6);
            }
        }
    }
    if (matched)
        obs_series_observe(ser[STAGE_MATCH], (double)t->match_us / 1e6);
    if (stored)
        obs_series_observe(ser[STAGE_STORE], (double)t->store_us / 1e6);
    obs_series_observe(ser[STAGE_TOTAL], (double)t->total_us / 1e6);
}

/* ---- registration --------------------------------------------------------------------------- */

#define C(name, help, labels, out)                                                                 \
    if (rc == VG_OK)                                                                               \
    rc = obs_counter_register(s->reg, name, help, labels, out)
#define G(name, help, labels, out)                                                                 \
    if (rc == VG_OK)                                                                               \
    rc = obs_gauge_register(s->reg, name, help, labels, out)
#define H(name, help, labels, bounds, n, out)                                                      \
    if (rc == VG_OK)                                                                               \
    rc = obs_histogram_register(s->reg, name, help, labels, bounds, n, out)

int server__metrics_open(server *s)
{
    if (!s->reg)
        return VG_OK;
    server_metrics *sm = vg_calloc(1, sizeof(*sm));
    if (!sm)
        return VG_ENOMEM;
    s->metrics = sm;
    sm->s = s;
    for (int j = 0; j < SRV_LAT_BOUNDS; j++)
        sm->lat_bounds[j] = (double)(1ull << (SRV_LAT_FIRST_LOG2 + SRV_LAT_STEP_LOG2 * j)) / 1e9;
    for (int b = 0; b < SRV_BATCH_BOUNDS; b++)
        sm->batch_bounds[b] = (double)((1u << (b + 1)) - 1);
    const double *lb = sm->lat_bounds;
    int rc = VG_OK;

    C("vigil_cache_hits_total", "feature-cache lookups answered by this tier", "tier",
      &sm->cache_hits);
    C("vigil_cache_misses_total", "feature-cache lookups that reached this tier and missed", "tier",
      &sm->cache_misses);
    C("vigil_cache_errors_total",
      "feature-cache tier failures (I/O, Redis protocol or timeout), each turned into a miss",
      "tier", &sm->cache_errors);
    C("vigil_cache_corrupt_total",
      "feature-cache entries that failed validation (magic, key, CRC): deleted, never served",
      "tier", &sm->cache_corrupt);
    C("vigil_cache_evictions_total", "feature-cache entries removed to respect the tier's bounds",
      "tier", &sm->cache_evictions);
    C("vigil_cache_puts_total", "feature-cache entries stored in this tier", "tier",
      &sm->cache_puts);
    C("vigil_cache_dropped_writes_total",
      "feature-cache background writes dropped because the writer queue was full", "tier",
      &sm->cache_dropped);
    G("vigil_cache_entries", "feature-cache entries held now (l3: unknown, 0)", "tier",
      &sm->cache_entries);
    G("vigil_cache_bytes", "feature-cache bytes held now (l3: unknown, 0)", "tier",
      &sm->cache_bytes);
    G("vigil_cache_tier_enabled", "1 when the tier is configured", "tier", &sm->cache_enabled);
    H("vigil_cache_lookup_duration_seconds",
      "feature-cache lookup time per tier, hit or miss (every lookup that reached the tier)",
      "tier", lb, SRV_LAT_BOUNDS, &sm->cache_latency);
    G("vigil_cache_l3_breaker_state", "Redis circuit breaker: 0 closed, 1 open, 2 half-open", NULL,
      &sm->l3_state);
    C("vigil_cache_l3_breaker_opens_total", "times the Redis circuit breaker opened", NULL,
      &sm->l3_opens);
    C("vigil_cache_l3_reconnects_total", "successful (re)connections to Redis", NULL,
      &sm->l3_reconnects);
    G("vigil_cache_async_pending", "feature-cache puts waiting for the background writer", NULL,
      &sm->cache_pending);

    G("vigil_sched_queue_depth", "items queued for an inference replica, by kind", "kind",
      &sm->sched_queue);
    C("vigil_sched_admitted_total", "items accepted into the inference queue", "kind",
      &sm->sched_admitted);
    C("vigil_sched_rejected_total",
      "items refused at submit: queue_full (503) or tenant_quota (429)", "kind,reason",
      &sm->sched_rejected);
    C("vigil_sched_expired_total",
      "items whose deadline passed before a replica started them (503), never computed", "kind",
      &sm->sched_expired);
    C("vigil_sched_completed_total",
      "items completed by a replica (ok, failed) or at shutdown (canceled)", "kind,outcome",
      &sm->sched_completed);
    H("vigil_sched_batch_size", "items per inference batch", "kind", sm->batch_bounds,
      SRV_BATCH_BOUNDS, &sm->sched_batch_size);
    H("vigil_sched_batch_wait_seconds", "time an item waited from submit to its batch's start",
      "kind", lb, SRV_LAT_BOUNDS, &sm->sched_batch_wait);
    G("vigil_sched_preferred_batch_size", "batch size the adaptive batcher prefers now", "kind",
      &sm->sched_preferred);
    G("vigil_replicas", "inference replicas (worker threads with a model context) running now",
      NULL, &sm->replicas);
    G("vigil_replicas_min", "configured minimum of inference replicas (replicas_min)", NULL,
      &sm->replicas_min);
    G("vigil_replicas_max", "configured maximum of inference replicas (replicas_max)", NULL,
      &sm->replicas_max);
    G("vigil_replicas_busy", "inference replicas running a batch now", NULL, &sm->replicas_busy);
    C("vigil_replica_errors_total", "inference replicas that failed to start", NULL,
      &sm->replica_errors);

    H("vigil_analysis_stage_duration_seconds",
      "time of each analysis stage that ran, by level (cache lookup; decode, pdq, detect, "
      "landmarks, descriptors on a cache miss; match; store; total)",
      "stage,level", stage_bounds, VG_ARRAY_LEN(stage_bounds), &sm->stages);

    H("vigil_model_inference_duration_seconds",
      "time of one network call (a batch) by network and precision", "network,precision", lb,
      SRV_LAT_BOUNDS, &sm->model_latency);
    C("vigil_model_inference_items_total",
      "inputs (images or face crops) run through a network, by network and precision",
      "network,precision", &sm->model_items);

    G("vigil_index_pdq_hashes", "PDQ hashes in the match index (live)", NULL, &sm->ix_pdq);
    G("vigil_index_face_descriptors", "face descriptors in the match index (live)", NULL,
      &sm->ix_faces);
    G("vigil_index_profiles", "profiles with entries in the match index", NULL, &sm->ix_profiles);
    G("vigil_index_tenants", "tenants with entries in the match index", NULL, &sm->ix_tenants);
    G("vigil_index_dead_entries", "deleted index entries awaiting compaction", NULL, &sm->ix_dead);
    G("vigil_index_memory_bytes", "heap bytes the match index holds", NULL, &sm->ix_bytes);
    C("vigil_index_searches_total", "index searches by kind (pdq_flat, pdq_mih, face)", "kind",
      &sm->ix_searches);
    H("vigil_index_search_duration_seconds", "index search time by kind (pdq, face)", "kind", lb,
      SRV_LAT_BOUNDS, &sm->ix_latency);

    H("vigil_store_query_duration_seconds",
      "SQLite statement time, first step to completion (lock waits included)", NULL, lb,
      SRV_LAT_BOUNDS, &sm->store_latency);
    C("vigil_store_busy_retries_total", "times a store connection waited for a SQLite lock (busy)",
      NULL, &sm->store_busy);
    C("vigil_store_commits_total", "store write transactions committed", NULL, &sm->store_commits);
    C("vigil_store_txn_retries_total",
      "PostgreSQL write transactions run again (serialization failure, deadlock, lost connection)",
      NULL, &sm->store_txn_retries);
    C("vigil_store_reconnects_total", "PostgreSQL connections re-established after a loss", NULL,
      &sm->store_reconnects);
    C("vigil_log_lines_dropped_total",
      "log lines a client can trigger per request (refusals, failed lookups) dropped past their "
      "rate limit of 10 lines per 10 s per call site",
      NULL, &sm->log_dropped);
    C("vigil_store_unavailable_fails_total",
      "store calls failed at once (503 database unavailable) while PostgreSQL was known down", NULL,
      &sm->store_unavailable_fails);
    G("vigil_store_unavailable",
      "1 while PostgreSQL is known down (a reconnect gave up) and store calls fail at once", NULL,
      &sm->store_unavailable);

    C("vigil_index_sync_entries_total",
      "change-log rows this node applied to its index (applied: other nodes' writes; own: its "
      "own, already applied, or already undone)",
      "result", &sm->sync_applied);
    C("vigil_index_sync_errors_total", "change-log polls stopped by a store error (retried)", NULL,
      &sm->sync_errors);
    G("vigil_index_sync_lag_seconds", "age of the oldest change-log row not applied yet (0: none)",
      NULL, &sm->sync_lag);
    G("vigil_index_sync_lag_entries", "change-log rows seen and not applied yet", NULL,
      &sm->sync_lag_entries);
    G("vigil_index_sync_last_poll_age_seconds",
      "time since this node last read the change log up to its head", NULL, &sm->sync_since);
    G("vigil_index_sync_max_lag_seconds",
      "the index_max_lag setting: past it the node is not ready and VigilIndexSyncLag fires", NULL,
      &sm->sync_max_lag);

    G("vigil_host_cpus", "CPUs this process may run on (the denominator of CPU %)", NULL,
      &sm->host_cpus);
    G("vigil_host_memory_bytes", "physical memory of the host (the denominator of memory %)", NULL,
      &sm->host_memory);

    for (int l = 0; rc == VG_OK && l < VG_LEVEL_COUNT; l++)
        for (int st = 0; st < SRV_STAGES; st++) {
            sm->stage_series[l][st] =
                obs_series_get(sm->stages, OBS_LABELS(stage_names[st], vg_level_name(l)));
            if (!sm->stage_series[l][st])
                rc = VG_ENOMEM;
        }
    if (rc == VG_OK)
        rc = obs_collector_add(s->reg, collect, sm);
    return rc;
}

void server__metrics_free(server *s)
{
    vg_free(s->metrics);
    s->metrics = NULL;
}
