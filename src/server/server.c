/* Server lifecycle: open (store, admin key, index, routes, HTTP), run (wait for a signal), and a
 * graceful shutdown. */
#include "server/server_int.h"
#include "ops/ops_heal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "obs/obs.h"
#include "analyze/analyze.h"
#include "cache/cache.h"
#include "face/face.h"
#include "ops/ops.h"
#include "sched/sched.h"

/* Descriptors kept for the store, logs, the listener and model files, not for connections. */
#define SERVER_RESERVED_FDS 64
/* Shutdown: the last part of the grace period (at most half of it) is kept for answering the
 * analyses still queued with 503, so that they are answered within the grace period; replies
 * made after the grace (a batch that was running) still get SERVER_SHUTDOWN_FLUSH_MIN_MS to go
 * out before requests count as unanswered. */
#define SERVER_SHUTDOWN_ANSWER_MS 500
#define SERVER_SHUTDOWN_FLUSH_MIN_MS 1000

void server_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A client that hangs up mid-response must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
}

int server_raise_nofile(uint64_t *out_limit)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return vg_err_set(VG_EIO, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            VG_WARN("server", "cannot raise the open-files limit to %llu: %s",
                    (unsigned long long)want, strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    *out_limit = (uint64_t)rl.rlim_cur;
    return VG_OK;
}

/* ---- key lookups for the HTTP key cache ------------------------------------------------------ */

static int key_lookup(void *ud, const uint8_t hash[VG_SHA256_BYTES], http_principal *out)
{
    server *s = ud;
    vg_arena *a = vg_arena_new(1024);
    if (!a)
        return VG_ENOMEM;
    store_key k;
    int rc = store_key_authenticate(s->st, hash, a, &k);
    if (rc == VG_OK) {
        memset(out, 0, sizeof(*out));
        out->role = k.role == STORE_ROLE_ADMIN ? HTTP_ROLE_ADMIN : HTTP_ROLE_TENANT;
        snprintf(out->tenant_id, sizeof(out->tenant_id), "%s", k.tenant_id);
        snprintf(out->key_id, sizeof(out->key_id), "%s", k.id);
    }
    vg_arena_free(a);
    return rc == VG_EPERM ? VG_ENOTFOUND : rc;
}

/* The admin key: configured (hash stored at every start; idempotent), or generated once. */
static int bootstrap_admin(server *s)
{
    const char *configured = s->cfg->admin_key;
    uint8_t h[VG_SHA256_BYTES];
    if (configured && *configured) {
        int rc = vg_sha256(configured, strlen(configured), h);
        if (rc == VG_OK)
            rc = store_admin_key_set(s->st, h, NULL);
        if (rc != VG_OK)
            return rc;
        http_keycache_set_admin(s->kc, h);
        return VG_OK;
    }
    int exists = 0;
    int rc = store_admin_key_exists(s->st, &exists);
    if (rc != VG_OK || exists)
        return rc;
    uint8_t raw[SERVER_KEY_RANDOM_BYTES];
    char key[sizeof(SERVER_ADMIN_KEY_PREFIX) + 2 * SERVER_KEY_RANDOM_BYTES];
    if ((rc = vg_random_bytes(raw, sizeof(raw))) != VG_OK)
        return rc;
    memcpy(key, SERVER_ADMIN_KEY_PREFIX, sizeof(SERVER_ADMIN_KEY_PREFIX) - 1);
    vg_hex_encode(raw, sizeof(raw), key + sizeof(SERVER_ADMIN_KEY_PREFIX) - 1);
    if ((rc = vg_sha256(key, strlen(key), h)) != VG_OK)
        return rc;
    if ((rc = store_admin_key_set(s->st, h, NULL)) != VG_OK)
        return rc;
    http_keycache_set_admin(s->kc, h);
    /* stdout, once: the only place the key ever appears. Only its hash is stored. */
    printf("vigil: generated admin key (shown once; keep it): %s\n", key);
    fflush(stdout);
    VG_INFO("server", "generated an admin key and stored its hash (printed once on stdout)");
    return VG_OK;
}

/* ---- index ----------------------------------------------------------------------------------- */

uint64_t server__index_references(server *s)
{
    index_stats st;
    if (!s->ix || index_stats_get(s->ix, NULL, &st) != VG_OK)
        return 0;
    return st.references;
}

/* The catalog's erase hook: a deleted reference's features leave every feature-cache tier. */
static void cache_purge(void *arg, const char *tenant, const uint8_t sha256[32])
{
    server *s = arg;
    analyze_cache_purge(s->an, tenant, sha256);
}

/* The catalog's key hook: a key revoked on any node is forgotten here within one sync poll (the
 * revoking node already forgot it before answering). tenant "" is the admin key rotated by a
 * node that started with another admin_key: the live one is read back and replaces the hash
 * this node started with, and admin entries the cache took from the store are dropped. */
static void sync_key_revoked(void *arg, const char *tenant, const char *key_id)
{
    server *s = arg;
    (void)key_id;
    if (!tenant[0]) {
        uint8_t h[VG_SHA256_BYTES];
        if (store_admin_key_hash(s->st, h) == VG_OK)
            http_keycache_set_admin(s->kc, h);
        else
            VG_WARN("server", "admin key rotated elsewhere, but it cannot be read: %s",
                    vg_err_msg());
    }
    http_keycache_forget_tenant(s->kc, tenant);
}

/* ---- observation: request metrics (the access log line is the http module's) ---------------- */

/* The ops route class of a route template: analysis (images in), monitoring and static (not in
 * the latency objectives: probes and scrapes would dilute them), or the rest of the API. */
static ops_class route_class(const char *method, const char *route)
{
    static const char api[] = "/api/v1/";
    if (strncmp(route, api, sizeof api - 1) != 0)
        return OPS_CLASS_OTHER; /* /metrics, /dashboard, unmatched */
    const char *r = route + sizeof api - 1;
    if (method[0] == 'P' && method[1] == 'O' &&
        (strncmp(r, "analyze", 7) == 0 || strcmp(r, "profiles/{profile_id}/references") == 0))
        return OPS_CLASS_ANALYSIS;
    if (strncmp(r, "health", 6) == 0 || strncmp(r, "openapi", 7) == 0 ||
        strncmp(r, "metrics", 7) == 0)
        return OPS_CLASS_OTHER;
    return OPS_CLASS_API;
}

static void observe(void *ud, const char *method, const char *route, int status, uint64_t ns)
{
    server *s = ud;
    ops_record_request(s->ops, route_class(method, route), status, ns);
    char code[8];
    snprintf(code, sizeof(code), "%d", status); /* 0: the client went away before an answer */
    obs_inc(s->m_requests, OBS_LABELS(route, code));
    obs_observe(s->m_duration, OBS_LABELS(route), (double)ns / 1e9);
    (void)method;
}

/* Adds to a counter what a monotonic count gained since the last render; *seen remembers it. A
 * count read apart from its parts (analysis "failed" less expired and canceled) may lag for a
 * moment: it is never taken back. */
static void add_delta(obs_metric *m, const char *const *labels, uint64_t now, uint64_t *seen)
{
    if (now > *seen) {
        obs_add(m, labels, now - *seen);
        *seen = now;
    }
}

/* The HTTP layer's refusal counts, as deltas since the last render (rendering thread). */
static void collect_http_refusals(server *s)
{
    if (!s->http)
        return;
    uint64_t refused[HTTP_REFUSE__COUNT];
    http_server_refusals(s->http, refused);
    for (size_t i = 0; i < HTTP_REFUSE__COUNT; i++)
        add_delta(s->m_http_refused, OBS_LABELS(http_refusal_name((http_refusal)i)), refused[i],
                  &s->http_refused_seen[i]);
}

/* Values cheaper to read at scrape time than to maintain (runs on the rendering thread). */
static void collect(void *ctx)
{
    server *s = ctx;
    collect_http_refusals(s);
    if (s->http)
        obs_set(s->m_inflight, NULL, (double)http_server_inflight(s->http));
    obs_set(s->m_index_refs, NULL, (double)server__index_references(s));
    store_stats st;
    store_stats_get(s->st, &st);
    add_delta(s->m_store_errors, NULL, st.errors, &s->store_errors_seen);
    add_delta(s->m_store_queries, NULL, st.queries, &s->store_queries_seen);
    obs_set(s->m_store_memory, NULL, (double)st.sqlite_memory_bytes);
    uint64_t hits, misses;
    http_keycache_stats(s->kc, &hits, &misses);
    add_delta(s->m_keycache, OBS_LABELS("hit"), hits, &s->kc_hits_seen);
    add_delta(s->m_keycache, OBS_LABELS("miss"), misses, &s->kc_misses_seen);
    if (s->cache) {
        cache_stats cs;
        cache_stats_get(s->cache, &cs);
        add_delta(s->m_cache_nospace, NULL, cs.tier[CACHE_TIER_L2].nospace, &s->cache_nospace_seen);
    }
    if (s->an) {
        analyze_stats as;
        analyze_stats_get(s->an, &as);
        /* The cache tier that answered is reported here, to the operator, never to tenants. */
        static const char *const tiers[4] = {"miss", "l1", "l2", "l3"};
        for (int i = 0; i < 4; i++)
            add_delta(s->m_cache_lookups, OBS_LABELS(tiers[i]), as.cache_hits[i],
                      &s->cache_lookups_seen[i]);
        static const char *const outcome[SERVER_ANALYSIS_OUTCOMES] = {
            "ok", "failed", "expired", "canceled", "queue_full", "tenant_quota"};
        /* failed counts expired and canceled too */
        uint64_t other =
            as.failed > as.expired + as.canceled ? as.failed - as.expired - as.canceled : 0;
        uint64_t now[SERVER_ANALYSIS_OUTCOMES] = {as.ok,       other,       as.expired,
                                                  as.canceled, as.rejected, as.quota_rejected};
        for (int i = 0; i < SERVER_ANALYSIS_OUTCOMES; i++)
            add_delta(s->m_analysis, OBS_LABELS(outcome[i]), now[i], &s->analysis_seen[i]);
        obs_set(s->m_analysis_queue, NULL, (double)as.queue_depth);
        for (int k = 0; k < IMG_LIMIT_COUNT; k++)
            add_delta(s->m_img_limits, OBS_LABELS(img_limit_name((img_limit_kind)k)),
                      as.img_limit_hits[k], &s->img_limits_seen[k]);
        add_delta(s->m_lone_splits, NULL, as.lone_splits, &s->lone_splits_seen);
    }
}

static obs_health_status check_database(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    vg_err_clear();
    if (store_ping(s->st) != VG_OK) {
        snprintf(msg, n, "%s", vg_err_msg());
        return OBS_HEALTH_FAILING;
    }
    snprintf(msg, n, "schema v%d", store_schema_version(s->st));
    return OBS_HEALTH_OK;
}

static obs_health_status check_index(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    snprintf(msg, n, "%llu references", (unsigned long long)server__index_references(s));
    return s->ix ? OBS_HEALTH_OK : OBS_HEALTH_FAILING;
}

/* Not ready while this node's index trails the shared change log by more than index_max_lag
 * (or cannot read it): a load balancer then sends its requests to nodes that would match a
 * reference added elsewhere. */
static obs_health_status check_index_sync(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    if (!s->cat) {
        snprintf(msg, n, "no catalog");
        return OBS_HEALTH_FAILING;
    }
    catalog_sync_stats ss;
    catalog_sync_stats_get(s->cat, &ss);
    long long behind = ss.head_seq > ss.applied_seq ? (long long)(ss.head_seq - ss.applied_seq) : 0;
    snprintf(msg, n, "seq %lld, lag %lld ms, %lld entries behind, log read %lld ms ago",
             (long long)ss.applied_seq, (long long)ss.lag_ms, behind, (long long)ss.since_poll_ms);
    uint64_t limit = s->cfg->index_max_lag_ms;
    if ((uint64_t)ss.lag_ms > limit || (uint64_t)ss.since_poll_ms > limit)
        return OBS_HEALTH_FAILING;
    return OBS_HEALTH_OK;
}

static obs_health_status check_analysis(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    if (!s->an) {
        snprintf(msg, n, "the analysis pipeline is not built into this server");
        return OBS_HEALTH_FAILING;
    }
    snprintf(msg, n, "ready");
    return OBS_HEALTH_OK;
}

static obs_health_status check_models(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    if (!s->cfg->faces) {
        snprintf(msg, n, "face analysis is off (faces = false)");
        return OBS_HEALTH_OK;
    }
    if (!s->models) {
        snprintf(msg, n, "%s",
                 s->models_error[0] ? s->models_error
                                    : "not loaded (the analysis pipeline is not built in)");
        return OBS_HEALTH_FAILING;
    }
    snprintf(msg, n, "loaded");
    return OBS_HEALTH_OK;
}

static obs_health_status check_cache(void *ctx, char *msg, size_t n)
{
    server *s = ctx;
    snprintf(msg, n, "%s", s->cache ? "open" : "not built in (every analysis computes)");
    return s->cache ? OBS_HEALTH_OK : OBS_HEALTH_DEGRADED;
}

/* Free disk under the data directory below which writes are about to fail / get close. */
#define SERVER_DISK_FAIL_BYTES (64ull << 20)
#define SERVER_DISK_WARN_BYTES (512ull << 20)
#define SERVER_HEALTH_CACHE_MS 1000

static int open_obs(server *s)
{
    int rc = obs_registry_new(NULL, &s->reg);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_http_requests_total",
                                  "HTTP requests by route template and status (0: no answer)",
                                  "route,status", &s->m_requests);
    if (rc == VG_OK)
        rc = obs_histogram_register(s->reg, "vigil_http_request_duration_seconds",
                                    "HTTP request duration from headers to completion", "route",
                                    NULL, 0, &s->m_duration);
    if (rc == VG_OK)
        rc = obs_gauge_register(s->reg, "vigil_http_requests_in_flight",
                                "HTTP requests between their headers and their completion", NULL,
                                &s->m_inflight);
    if (rc == VG_OK)
        rc =
            obs_counter_register(s->reg, "vigil_http_refused_total",
                                 "requests refused or connections cut by the HTTP layer, by reason",
                                 "reason", &s->m_http_refused);
    if (rc == VG_OK)
        rc = obs_gauge_register(s->reg, "vigil_index_references",
                                "references mirrored into the match index", NULL, &s->m_index_refs);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_store_errors_total",
                                  "store calls that failed (database, busy, memory)", NULL,
                                  &s->m_store_errors);
    if (rc == VG_OK)
        rc = obs_gauge_register(s->reg, "vigil_store_sqlite_memory_bytes",
                                "SQLite's heap: page caches (bounded per connection), schemas and "
                                "prepared statements",
                                NULL, &s->m_store_memory);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_store_queries_total",
                                  "SQLite statements run to completion", NULL, &s->m_store_queries);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_auth_key_lookups_total",
                                  "bearer-key lookups served from memory (hit) or the store",
                                  "result", &s->m_keycache);
    if (rc == VG_OK)
        rc = obs_counter_register(
            s->reg, "vigil_analysis_requests_total",
            "images through the analysis pipeline by outcome: ok, failed, expired (deadline "
            "passed while queued: 503), canceled (shutdown: 503), queue_full (503), tenant_quota "
            "(429)",
            "outcome", &s->m_analysis);
    if (rc == VG_OK)
        rc = obs_gauge_register(s->reg, "vigil_analysis_queue_depth",
                                "images waiting for an inference worker", NULL,
                                &s->m_analysis_queue);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_cache_lookups_total",
                                  "feature-cache lookups by the tier that answered (miss: none)",
                                  "tier", &s->m_cache_lookups);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_cache_l2_nospace_total",
                                  "on-disk cache writes skipped to keep cache_l2_min_free free",
                                  NULL, &s->m_cache_nospace);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_img_limit_hits_total",
                                  "images refused by a decode limit, before decoding", "limit",
                                  &s->m_img_limits);
    if (rc == VG_OK)
        rc = obs_counter_register(s->reg, "vigil_analysis_lone_splits_total",
                                  "lone images hashed on the helper thread beside their face "
                                  "networks (batch_lone_split)",
                                  NULL, &s->m_lone_splits);
    if (rc == VG_OK)
        rc = obs_collector_add(s->reg, collect, s);
    if (rc == VG_OK)
        rc = server__metrics_open(s);
    if (rc == VG_OK)
        rc = obs_health_new(s->reg, SERVER_HEALTH_CACHE_MS, &s->health);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "database", check_database, s);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "index", check_index, s);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "index_sync", check_index_sync, s);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "analysis", check_analysis, s);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "models", check_models, s);
    if (rc == VG_OK)
        rc = obs_health_register(s->health, "cache", check_cache, s);
    if (rc == VG_OK)
        rc = obs_health_add_disk(s->health, "disk", s->cfg->data_dir, SERVER_DISK_FAIL_BYTES,
                                 SERVER_DISK_WARN_BYTES);
    if (rc == VG_OK) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        uint64_t phys = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 1ull << 34;
        rc = obs_health_add_memory(s->health, "memory", phys, 0.8);
    }
    return rc;
}

/* ---- operations (src/ops) ------------------------------------------------------------------- */

/* Batch sizes into the ops buckets 1, 2-3, 4-7, ...: a sched bucket by its smallest size. */
static unsigned ops_batch_bucket(unsigned size)
{
    unsigned b = 0;
    while (size > 1 && b + 1 < OPS_BATCH_BUCKETS) {
        size >>= 1;
        b++;
    }
    return b;
}

/* The ops sampler (tick thread): what ops cannot see itself, as cumulative counters. */
static void ops_sample_fill(void *ctx, ops_sample *o)
{
    server *s = ctx;
    if (s->cache) {
        cache_stats cs;
        cache_stats_get(s->cache, &cs);
        for (int t = 0; t < OPS_CACHE_TIERS && t < CACHE_TIERS; t++) {
            if (t && !cs.tier_enabled[t])
                continue;
            o->cache_hits[t] = cs.tier[t].hits;
            o->cache_misses[t] = cs.tier[t].misses;
            o->cache_lat_count[t] = cs.tier[t].lat_count;
            o->cache_lat_sum_ns[t] = cs.tier[t].lat_sum_ns;
        }
    }
    if (s->an) {
        sched_stats ss;
        analyze_sched_stats_get(s->an, &ss);
        const sched_kind_stats *k = &ss.kinds[0];
        o->batches = k->batches;
        o->batch_images = k->batch_items;
        for (unsigned b = 0; b < k->n_buckets && b < SCHED_SIZE_BUCKETS; b++)
            o->batch_dist[ops_batch_bucket(k->bucket_size[b])] += k->bucket_batches[b];
        o->queue_depth = k->queue_depth;
        o->replicas = ss.replicas;
        o->replicas_min = ss.min_replicas;
        o->replicas_max = ss.max_replicas;
        o->replicas_busy = ss.replicas_busy;
    }
}

static int open_ops(server *s)
{
    const conf_settings *c = s->cfg;
    ops_config oc = {
        .time_scale = c->ops_time_scale,
        .data_dir = c->data_dir,
        .slo_availability = c->ops_slo_availability,
        .slo_analysis_p95_ms = (uint32_t)c->ops_slo_analysis_p95_ms,
        .slo_api_p95_ms = (uint32_t)c->ops_slo_api_p95_ms,
        .slo_error_rate = c->ops_slo_error_rate,
        .memory_limit_bytes = c->ops_memory_limit,
        .sample = ops_sample_fill,
        .sample_ctx = s,
        .metrics = s->reg,
    };
    return ops_new(&oc, &s->ops);
}

/* ---- analysis pipeline ----------------------------------------------------------------------- */

/* Face models (when enabled), the feature cache and the analysis context. A face model that
 * cannot be loaded is not fatal: the server runs without faces and health says why. */
static int open_analysis(server *s)
{
    const conf_settings *c = s->cfg;
    int rc;
    if (c->faces) {
        vg_err_clear();
        /* SSD too: the accuracy level detects with it (evidence for notices). */
        face_models_opts mo = {.load_ssd = 1};
        rc = face_models_open(c->models_dir, &mo, &s->models);
        if (rc != VG_OK) {
            snprintf(s->models_error, sizeof(s->models_error), "%s", vg_err_msg());
            VG_WARN("server", "face models unavailable (%s): analysing without faces",
                    s->models_error);
            s->models = NULL;
        }
    }
    cache_config cc;
    cache_config_init(&cc);
    cc.l1_max_entries = (size_t)c->cache_l1_entries;
    cc.l1_max_bytes = (size_t)c->cache_l1_bytes;
    char l2[4096];
    snprintf(l2, sizeof(l2), "%s/cache", c->data_dir);
    cc.l2_dir = c->cache_l2_bytes ? l2 : NULL;
    cc.l2_max_bytes = c->cache_l2_bytes;
    cc.l2_min_free_bytes = c->cache_l2_min_free;
    cc.l3_url = c->redis_url;
    cc.l3_ttl_s = (uint32_t)(c->cache_redis_ttl_ms / 1000);
    cc.l3_connect_timeout_ms = (uint32_t)c->redis_timeout_ms;
    cc.l3_command_timeout_ms = (uint32_t)c->redis_timeout_ms;
    if ((rc = cache_open(&cc, &s->cache)) != VG_OK)
        return rc;
    analyze_config ac;
    analyze_config_default(&ac);
    ac.default_level = (vg_level)c->default_level;
    ac.pdq_threshold = (int)c->pdq_threshold;
    ac.pdq_min_quality = (int)c->pdq_quality_min;
    ac.face_threshold = (float)c->face_threshold;
    ac.min_workers = (unsigned)c->replicas_min;
    ac.max_workers = (unsigned)c->replicas_max;
    ac.max_batch = (unsigned)c->batch_max_size;
    ac.max_delay_us = (uint32_t)c->batch_max_delay_us;
    ac.lone_split = c->batch_lone_split && vg_cpu_count() >= 2; /* one CPU: nothing to gain */
    ac.lone_threads = (unsigned)c->batch_lone_threads;
    ac.queue_capacity = (unsigned)c->queue_depth;
    ac.tenant_quota = (unsigned)c->tenant_max_analyses;
    ac.deadline_ms = (uint32_t)c->request_deadline_ms;
    ac.max_input_bytes = (size_t)c->max_body_bytes;
    ac.cache_global = c->cache_scope == CONF_CACHE_SCOPE_GLOBAL;
    ac.max_pixels = (uint64_t)c->max_image_pixels;
    ac.max_jpeg_scans = (uint32_t)c->max_jpeg_scans;
    ac.max_lossless_pixels = (uint64_t)c->max_lossless_pixels;
    ac.max_decode_work = (uint64_t)c->max_decode_work;
    ac.max_decode_ratio = (uint32_t)c->max_decode_ratio;
    ac.fault_error_rate = c->fault_analysis_error_rate;
    ac.fault_stage_delay_ms = (uint32_t)c->fault_stage_delay_ms;
    if (ac.fault_error_rate > 0 || ac.fault_stage_delay_ms)
        VG_WARN("server", "TEST-ONLY fault injection on: analysis error rate %g, stage delay %u ms",
                ac.fault_error_rate, ac.fault_stage_delay_ms);
    analyze_deps deps = {s->ix, s->cache, s->models, catalog_resolve, s->cat};
    if ((rc = analyze_ctx_new(&ac, &deps, &s->an)) != VG_OK)
        return rc;
    catalog_set_erase_hook(s->cat, cache_purge, s);
    if ((rc = server__heal_open(s)) != VG_OK)
        return rc;
    VG_INFO("server", "analysis: faces %s, cache l1 %lld entries, l2 %s, l3 %s, model %s",
            s->models ? "on" : "off", (long long)c->cache_l1_entries, cc.l2_dir ? "on" : "off",
            c->redis_url[0] ? "on" : "off", analyze_model_version(s->an));
    return VG_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

/* A data directory made by an earlier version or by hand may be group- or world-readable, and
 * so may the database files in it: take them back to the owner. Failures are logged, not fatal
 * (a read-only mount, a directory owned by another user the operator chose on purpose). */
static void tighten_data_dir(const char *dir)
{
    static const char *const files[] = {SERVER_DB_FILE, SERVER_DB_FILE "-wal",
                                        SERVER_DB_FILE "-shm", "cache"};
    if (chmod(dir, SERVER_DATA_DIR_MODE) != 0)
        VG_WARN("server", "chmod %s: %s", dir, strerror(errno));
    char path[4096];
    for (size_t i = 0; i < VG_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        struct stat st;
        if (lstat(path, &st) != 0 || S_ISLNK(st.st_mode))
            continue;
        mode_t want = S_ISDIR(st.st_mode) ? SERVER_DATA_DIR_MODE : SERVER_DATA_FILE_MODE;
        if ((st.st_mode & 07777) != want && chmod(path, want) != 0)
            VG_WARN("server", "chmod %s: %s", path, strerror(errno));
    }
}

int server_open(const conf_settings *cfg, server **out)
{
    /* A short admin key can be guessed; refuse it before anything is created. */
    if (cfg->admin_key && *cfg->admin_key && strlen(cfg->admin_key) < SERVER_ADMIN_KEY_MIN_CHARS)
        return vg_err_set(VG_EINVAL, "admin_key is %zu characters; at least %d are required",
                          strlen(cfg->admin_key), SERVER_ADMIN_KEY_MIN_CHARS);
    /* An idle node reads the log once per interval: a lag limit under two intervals would turn
     * it not-ready between two polls with nothing to apply. */
    if (cfg->index_max_lag_ms < 2 * cfg->index_sync_interval_ms)
        return vg_err_set(VG_EINVAL,
                          "index_max_lag (%llu ms) must be at least twice index_sync_interval "
                          "(%llu ms)",
                          (unsigned long long)cfg->index_max_lag_ms,
                          (unsigned long long)cfg->index_sync_interval_ms);
    server *s = vg_calloc(1, sizeof(*s));
    if (!s)
        return VG_ENOMEM;
    s->cfg = cfg;
    s->started_ms = vg_wall_ms();
    int rc;
    uint16_t port;
    if ((rc = conf_parse_listen(cfg->listen, s->host, sizeof(s->host), &port)) != VG_OK)
        goto fail;
    server_raise_nofile(&s->nofile);
    size_t conns = (size_t)cfg->max_connections;
    if (s->nofile > SERVER_RESERVED_FDS && conns > s->nofile - SERVER_RESERVED_FDS) {
        VG_WARN("server", "max_connections %zu exceeds the open-files limit; using %llu", conns,
                (unsigned long long)(s->nofile - SERVER_RESERVED_FDS));
        conns = (size_t)(s->nofile - SERVER_RESERVED_FDS);
    }
    VG_INFO("server", "open-files limit %llu: room for %zu concurrent connections",
            (unsigned long long)s->nofile, conns);

    /* store */
    /* Everything the server creates is the owner's alone: SQLite creates vigil.db and its -wal
     * and -shm files under the umask, the cache its directories and files. */
    umask(077);
    if ((rc = vg_mkdir_p(cfg->data_dir)) != VG_OK)
        goto fail;
    char path[4096];
    tighten_data_dir(cfg->data_dir);
    /* SQLite would only say "unable to open database file"; the operator needs the reason. */
    if (access(cfg->data_dir, W_OK | X_OK) != 0) {
        rc = vg_err_set(VG_EIO, "data directory %s is not writable: %s", cfg->data_dir,
                        strerror(errno));
        goto fail;
    }
    /* database: a PostgreSQL URL or a file path; the SQLite file in data_dir by default */
    if (cfg->database && *cfg->database)
        snprintf(path, sizeof(path), "%s", cfg->database);
    else
        snprintf(path, sizeof(path), "%s/%s", cfg->data_dir, SERVER_DB_FILE);
    store_config sc;
    store_config_default(&sc);
    sc.path = path;
    sc.read_connections = (unsigned)cfg->db_read_connections;
    sc.connect_timeout_ms = (uint32_t)cfg->db_connect_timeout_ms;
    sc.statement_timeout_ms = (uint32_t)cfg->db_statement_timeout_ms;
    sc.txn_max_attempts = (unsigned)cfg->db_txn_attempts;
    sc.reconnect_timeout_ms = (uint32_t)cfg->db_reconnect_timeout_ms;
    sc.retry_max_ms = (uint32_t)cfg->db_retry_max_ms;
    if ((rc = store_open(&sc, &s->st)) != VG_OK)
        goto fail;

    /* keys */
    if ((rc = http_keycache_new(key_lookup, s, SERVER_KEYCACHE_ENTRIES, &s->kc)) != VG_OK)
        goto fail;
    if ((rc = bootstrap_admin(s)) != VG_OK)
        goto fail;

    if ((rc = open_obs(s)) != VG_OK)
        goto fail;

    /* index, from every live reference: the catalog builds it and keeps it in step */
    uint64_t t0 = vg_now_ns();
    if ((rc = index_new(NULL, &s->ix)) != VG_OK)
        goto fail;
    if ((rc = catalog_open(s->st, s->ix, &s->cat)) != VG_OK)
        goto fail;
    VG_INFO("server", "index: %llu references loaded in %.1f ms (pdq kernel %s, face kernel %s)",
            (unsigned long long)server__index_references(s), (double)(vg_now_ns() - t0) / 1e6,
            index_kernel_name(index_pdq_kernel(s->ix)),
            index_kernel_name(index_face_kernel(s->ix)));

    if ((rc = open_analysis(s)) != VG_OK)
        goto fail;
    /* After the analysis (and its erase hook): other nodes' writes: revoked keys are forgotten here
     * too, and the index follows the change log (the store wakes the sync where its backend can
     * notify). */
    catalog_set_key_hook(s->cat, sync_key_revoked, s);
    store_set_wake_hook(s->st, catalog_sync_wake, s->cat);
    if ((rc = catalog_sync_start(s->cat, cfg->index_sync_interval_ms)) != VG_OK)
        goto fail;
    if ((rc = server__video_open(s)) != VG_OK)
        goto fail;
    if ((rc = open_ops(s)) != VG_OK)
        goto fail;
    /* Engines that act on the KPI windows run on the ops thread, once per tick. */
    if (s->heal && (rc = ops_tick_add(s->ops, ops_heal_tick, s->heal)) != VG_OK)
        goto fail;
    /* The alert engine (and its webhook thread) evaluates on the same tick. */
    if ((rc = server__alerts_open(s)) != VG_OK)
        goto fail;

    /* routes and HTTP */
    if ((rc = http_router_new(&s->router)) != VG_OK)
        goto fail;
    if ((rc = server_add_routes(s, s->router)) != VG_OK)
        goto fail;
    /* Left at its default, the per-address limit is also held to a quarter of the connection
     * limit, so that one address cannot take every slot of a small server. Set explicitly (0
     * behind a load balancer, whose connections all come from one address), it is as given. */
    size_t per_ip = (size_t)cfg->max_connections_per_ip, quarter = conns / 4 ? conns / 4 : 1;
    if (conf_source_of(cfg, "max_connections_per_ip") == CONF_SRC_DEFAULT && per_ip > quarter)
        per_ip = quarter;
    http_config hc = {
        .host = s->host,
        .port = port,
        .threads = (unsigned)cfg->http_threads,
        .max_connections = (unsigned)conns,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .header_timeout_ms = (unsigned)cfg->header_timeout_ms,
        .body_timeout_ms = (unsigned)cfg->body_timeout_ms,
        .body_deadline_ms = (unsigned)cfg->body_deadline_ms,
        .retry_after_ms = (unsigned)cfg->retry_after_ms,
        .max_connections_per_ip = (unsigned)per_ip,
        .head_deadline_ms = (unsigned)cfg->head_deadline_ms,
        .max_json_body_bytes = (size_t)cfg->max_json_body_bytes,
        .max_inflight_body_bytes = (size_t)cfg->max_inflight_body_bytes,
        .max_query_params = (unsigned)cfg->max_query_params,
        .auth = http_keycache_auth,
        .auth_ud = s->kc,
        .observe = observe,
        .observe_ud = s,
    };
    if ((rc = http_server_open(&hc, s->router, &s->http)) != VG_OK)
        goto fail;
    s->port = http_server_port(s->http);
    if ((rc = ops_start(s->ops)) != VG_OK)
        goto fail;
    unsigned threads = hc.threads ? hc.threads : (unsigned)vg_cpu_count();
    VG_INFO("server", "listening on http://%s:%u (%u threads, cpu: %s)", s->host, (unsigned)s->port,
            threads, vg_cpu_describe());
    /* The same line on stdout, for scripts and tests that start the server on port 0. */
    printf("vigil: listening on http://%s:%u\n", s->host, (unsigned)s->port);
    fflush(stdout);
    *out = s;
    return VG_OK;
fail:
    server_close(s);
    return rc;
}

uint16_t server_port(const server *s)
{
    return s->port;
}

int server_run(server *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    VG_INFO("server", "%s: stopping (grace %llu ms, %zu requests in flight)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)s->cfg->shutdown_grace_ms,
            http_server_inflight(s->http));
    http_server_quiesce(s->http);
    uint64_t grace = s->cfg->shutdown_grace_ms;
    uint64_t reserve =
        grace / 2 < SERVER_SHUTDOWN_ANSWER_MS ? grace / 2 : SERVER_SHUTDOWN_ANSWER_MS;
    uint64_t end = vg_now_ns() + grace * 1000000ull;
    int rc = http_server_drain(s->http, grace - reserve);
    if (rc != VG_OK && s->an) {
        /* Grace (nearly) over: whatever still waits for analysis is answered 503 + Retry-After
         * now instead of holding the exit; batches already running finish and answer. */
        VG_INFO("server", "%zu requests in flight after %llu ms: cancelling queued analyses",
                http_server_inflight(s->http), (unsigned long long)(grace - reserve));
        analyze_shutdown(s->an);
        uint64_t now = vg_now_ns(), left_ms = now < end ? (end - now) / 1000000u : 0;
        rc = http_server_drain(s->http, left_ms > SERVER_SHUTDOWN_FLUSH_MIN_MS
                                            ? left_ms
                                            : SERVER_SHUTDOWN_FLUSH_MIN_MS);
    }
    if (rc != VG_OK)
        VG_WARN("server", "%s", vg_err_msg());
    return rc;
}

void server_close(server *s)
{
    if (!s)
        return;
    /* The store's LISTEN thread calls into the catalog: stopped before it goes. */
    if (s->st)
        store_set_wake_hook(s->st, NULL, NULL);
    /* The sync thread calls the erase hook into the analysis context: stopped first. */
    catalog_sync_stop(s->cat);
    /* The ops sampler reads the analysis context: no tick past this point. */
    ops_stop(s->ops);
    ops_heal_free(s->heal); /* before the analysis its hooks act on */
    s->heal = NULL;
    /* Queued analyses finish and resume their requests before the HTTP server goes away. */
    analyze_ctx_free(s->an);
    s->an = NULL;
    server__video_close(s); /* its waiting requests answered before the HTTP server goes */
    http_server_close(s->http);
    s->http = NULL;
    /* last SLA minute and the clean-stop heartbeat, after the last answer was recorded */
    ops_free(s->ops);
    s->ops = NULL;
    server__alerts_close(s); /* the tick is stopped: nothing evaluates any more */
    cache_close(s->cache);
    face_models_free(s->models);
    http_router_free(s->router);
    catalog_close(s->cat);
    index_free(s->ix);
    http_keycache_free(s->kc);
    store_close(s->st); /* checkpoints the WAL */
    obs_health_free(s->health);
    obs_registry_free(s->reg);
    server__metrics_free(s);
    VG_INFO("server", "stopped");
    vg_free(s);
}
