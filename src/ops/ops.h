/*
 * ops: the operations layer's core. The server records every answered request and every analysed
 * image here (hot path: a few relaxed atomic adds into the current slot, no allocation, no lock,
 * nothing stored per request); a tick thread closes one slot per ops second, samples what ops
 * cannot see itself (cache tiers, batches, queue, replicas: a callback the server supplies) and
 * the process (CPU, RSS, memory limit, free disk under the data directory), keeps fixed-memory
 * rings of per-slot aggregates, computes the 1 min / 5 min / 1 h windows (ops_kpis) and hands
 * them to every ops_tick_add callback. It also keeps the SLA accounting (ops_sla.h): per-minute
 * aggregates persisted in <data_dir>/ops.db.
 *
 * Ops time: every ops duration is divided by the time scale (ops_config.time_scale, the
 * `ops_time_scale` setting, 1..3600). One tick is one ops second: 1000 / scale real ms, but never
 * shorter than OPS_TICK_MIN_MS (above scale 100 a tick is then several ops seconds, and the 1 min
 * window holds fewer slots). Rates are per real second (the load is real); window lengths are
 * ops time.
 *
 * Memory: a fine ring of OPS_FINE_SLOTS one-tick aggregates (5 min of ops time) and a coarse ring
 * of OPS_COARSE_SLOTS aggregates of OPS_COARSE_TICKS ticks each (1 h), fixed at ops_new; each
 * aggregate holds one latency histogram per route class.
 *
 * Percentiles: latencies go into log buckets with ratio 2^(1/8) from 8 us to 137 s (below and
 * above clamp into the end buckets). Histograms of slots are merged by adding counts (exact); the
 * q-quantile is the bucket holding the nearest-rank sample, reported as the bucket's geometric
 * midpoint, so the estimate is within 2^(1/16) - 1 = 4.4% (relative) of the exact nearest-rank
 * percentile of the same requests. Windows lag the present by one tick (the slot being written
 * and the one just closed are read one tick later, so a request recorded on a slot just before
 * the tick moved on is never lost).
 *
 * Thread-safety: ops_record_* from any thread at any time between ops_new and ops_free. The
 * ops_tick_add callbacks run on the tick thread. ops_kpis_get, ops_sli_bad_ratio and the JSON
 * renderers from any thread (they take the ops mutex briefly).
 */
#ifndef VG_OPS_H
#define VG_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops_kpi.h"

#define OPS_TIME_SCALE_MIN 1.0
#define OPS_TIME_SCALE_MAX 3600.0
#define OPS_TICK_MIN_MS 10              /* shortest real tick, whatever the time scale */
#define OPS_FINE_SLOTS 300              /* one tick each: 5 min of ops time */
#define OPS_COARSE_TICKS 10             /* ticks per coarse slot: 10 ops seconds */
#define OPS_COARSE_SLOTS 360            /* 1 h of ops time */
#define OPS_MAX_TICK_FNS 16             /* ops_tick_add callbacks */
#define OPS_LAT_BUCKETS 192             /* 24 octaves x 8 */
#define OPS_LAT_MIN_LOG2_NS 13          /* first bucket starts at 2^13 ns = 8.2 us */
#define OPS_LAT_PER_OCTAVE 8            /* bucket ratio 2^(1/8) */
#define OPS_PERCENTILE_REL_ERROR 0.0443 /* 2^(1/16) - 1 */

/* SLO defaults (the platform's): availability 99.9%, analysis P95 < 2 s, API P95 < 500 ms,
 * error rate < 1%. */
#define OPS_SLO_AVAILABILITY_DEFAULT 0.999
#define OPS_SLO_ANALYSIS_P95_MS_DEFAULT 2000
#define OPS_SLO_API_P95_MS_DEFAULT 500
#define OPS_SLO_ERROR_RATE_DEFAULT 0.01
#define OPS_SLO_LATENCY_QUANTILE 0.95 /* the latency objectives are on the P95 */

typedef enum {
    OPS_SLO_AVAILABILITY = 0,
    OPS_SLO_ANALYSIS_LATENCY,
    OPS_SLO_API_LATENCY,
    OPS_SLO_ERROR_RATE,
    OPS_SLOS
} ops_slo;

/* "availability" | "analysis_latency" | "api_latency" | "error_rate" */
const char *ops_slo_name(ops_slo slo);

/* Cumulative counters and current gauges the server samples for ops once per tick (from
 * analyze/cache/sched stats). Counters must only grow (a decrease is taken as a restart of the
 * source and counts 0). A tier that does not exist leaves its counters 0. */
typedef struct ops_sample {
    /* [0] the cache as a whole (every lookup), [1..3] l1, l2, l3 (lookups that reached it) */
    uint64_t cache_hits[OPS_CACHE_TIERS], cache_misses[OPS_CACHE_TIERS];
    uint64_t cache_lat_count[OPS_CACHE_TIERS], cache_lat_sum_ns[OPS_CACHE_TIERS];
    uint64_t batches, batch_images;
    uint64_t batch_dist[OPS_BATCH_BUCKETS]; /* batches by size bucket: 1, 2-3, 4-7, ... */
    uint64_t queue_depth;                   /* now */
    uint32_t replicas, replicas_min, replicas_max, replicas_busy; /* now */
} ops_sample;

/* Fills *out (zeroed by the caller); runs on the tick thread, must be quick. */
typedef void (*ops_sample_fn)(void *ctx, ops_sample *out);

typedef struct ops_config {
    double time_scale;       /* 1..3600; 0 = 1 */
    const char *data_dir;    /* borrowed: <data_dir>/ops.db; NULL = no SLA persistence */
    double slo_availability; /* 0 = default; (0.5, 1) */
    uint32_t slo_analysis_p95_ms, slo_api_p95_ms; /* 0 = default */
    double slo_error_rate;                        /* 0 = default; (0, 0.5] */
    uint64_t memory_limit_bytes; /* for memory_percent; 0 = cgroup v2 memory.max, else MemTotal */
    ops_sample_fn sample;        /* NULL: cache/batch/queue/replica KPIs stay NAN */
    void *sample_ctx;
    struct obs_registry *metrics; /* borrowed, may be NULL: vigil_ops_* metrics */
} ops_config;

typedef struct ops ops;

/* cfg borrowed. Opens the SLA database when data_dir is set (recording the gap since the last
 * heartbeat as downtime). *out owned (ops_free). VG_EINVAL (bad config), VG_ENOMEM, VG_EIO /
 * VG_ESTORE (the SLA database). */
int ops_new(const ops_config *cfg, ops **out);
/* ops_stop, flushes the current SLA minute, marks a clean stop, frees. NULL no-op. */
void ops_free(ops *o);

/* Called once per tick on the tick thread with the three windows; must be quick. */
typedef void (*ops_tick_fn)(void *ctx, const ops_kpis *w1m, const ops_kpis *w5m,
                            const ops_kpis *w1h, int64_t now_ms);
/* Before ops_start. ctx borrowed, must outlive o. VG_ENOMEM past OPS_MAX_TICK_FNS. */
int ops_tick_add(ops *o, ops_tick_fn fn, void *ctx);

/* Starts / stops the tick thread (ops_stop joins it; both idempotent). VG_ENOMEM. */
int ops_start(ops *o);
void ops_stop(ops *o);

/* One tick at the given clocks (monotonic ns, wall ms): what the tick thread does every tick.
 * Public so tests drive ops with a synthetic clock instead of the thread; never call it while
 * the thread runs. */
void ops_tick(ops *o, uint64_t mono_ns, int64_t wall_ms);

double ops_time_scale(const ops *o);
/* The target of an objective: availability 0.999, latency 0.95 (the share of requests under the
 * threshold a P95 objective asks for), error rate 1 - 0.01. Error budget = 1 - target. */
double ops_slo_target(ops *o, ops_slo slo);
/* The latency threshold of a latency objective in ms (0 for the others). */
double ops_slo_threshold_ms(ops *o, ops_slo slo);

/* ---- hot path ------------------------------------------------------------------------------- */

/* One answered request: class, HTTP status (0: the client went away before an answer, not
 * counted), duration from headers to completion. NULL o is a no-op. */
void ops_record_request(ops *o, ops_class cls, int http_status, uint64_t duration_ns);

/* Cache tier that answered an analysis, as analyze_timings.cache_tier. */
typedef enum {
    OPS_TIER_OFF = -1,
    OPS_TIER_MISS = 0,
    OPS_TIER_L1,
    OPS_TIER_L2,
    OPS_TIER_L3
} ops_tier;

/* Analysed images: ok (0: failed on the server's side: 5xx, deadline, shutdown, decoder crash),
 * how many images, the stage times of one image (NULL when unknown; counted only for images
 * computed, i.e. tier miss or off, and ok). NULL o is a no-op. */
void ops_record_analysis(ops *o, int ok, unsigned images, const uint64_t *stage_ns, ops_tier tier);

/* ---- readers -------------------------------------------------------------------------------- */

/* The three windows as of the last tick (zeroed and NAN-filled before the first). */
void ops_kpis_get(ops *o, ops_kpis *w1m, ops_kpis *w5m, ops_kpis *w1h);

/* SLIs for burn-rate alerts: the fraction of bad events of one objective over the last window_s
 * seconds of ops time (from the in-memory ring up to 1 h, the persisted per-minute rows beyond).
 * VG_ENOTFOUND when the window holds no events; VG_EINVAL for a bad slo or window. */
int ops_sli_bad_ratio(ops *o, ops_slo slo, double window_s, int64_t now_ms, double *ratio);

/* The JSON of GET /api/v1/metrics/performance and GET /api/v1/metrics/sla (docs/OPERATIONS.md),
 * as of now_ms. *out owned by the caller (json_decref). VG_ENOMEM. */
struct json_t;
int ops_performance_json(ops *o, int64_t now_ms, struct json_t **out);
int ops_sla_json(ops *o, int64_t now_ms, struct json_t **out);

/* Log-bucket latency histogram helpers, exposed for tests and benchmarks. */
unsigned ops_lat_bucket(uint64_t ns);
/* q-quantile (0..1) in ms from n bucket counts (OPS_LAT_BUCKETS); NAN when empty. */
double ops_lat_quantile_ms(const uint64_t *counts, double q);

#endif /* VG_OPS_H */
