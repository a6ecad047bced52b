/*
 * ops_kpi: the key performance indicators every part of the ops layer reads (the performance
 * endpoint, SLA accounting, threshold and anomaly rules, self-healing, the dashboard). One
 * ops_kpis is the state of the server over one window (1 min, 5 min or 1 h of ops time), computed
 * from fixed-memory per-slot aggregates; nothing here stores anything per request.
 *
 * Ops time: every ops duration (windows, rule `for`, cooldowns, escalation, webhook repeat
 * interval, the SLA minute) is divided by the `ops_time_scale` setting (default 1). With scale 60
 * an ops minute lasts one real second, so tests can drive hour-long windows in a minute.
 *
 * A value that has no data in the window (no requests, no cache lookups) is NAN, never 0, so a
 * rule never fires on "hit rate 0%" of an idle server.
 */
#ifndef VG_OPS_KPI_H
#define VG_OPS_KPI_H

#include <stdint.h>

/* Route classes a request is accounted in. */
typedef enum {
    OPS_CLASS_ANALYSIS = 0, /* POST /api/v1/analyze, /analyze/batch, reference uploads */
    OPS_CLASS_API,          /* every other /api/v1 route */
    OPS_CLASS_OTHER,        /* /metrics, /health, /dashboard, static: not in latency KPIs */
    OPS_CLASSES
} ops_class;

/* Analysis stages, as in analyze_timings. */
typedef enum {
    OPS_STAGE_DECODE = 0,
    OPS_STAGE_PDQ,
    OPS_STAGE_DETECT,
    OPS_STAGE_LANDMARKS,
    OPS_STAGE_DESCRIPTORS,
    OPS_STAGE_MATCH,
    OPS_STAGE_STORE,
    OPS_STAGES
} ops_stage;

/* Cache tiers, as cache_tier: [0] = the cache as a whole. */
#define OPS_CACHE_TIERS 4
/* Batch-size distribution buckets: sizes 1, 2-3, 4-7, ..., 128-255, 256. */
#define OPS_BATCH_BUCKETS 9

typedef struct ops_kpis {
    int64_t end_ms;   /* wall-clock end of the window */
    double window_s;  /* ops-time length of the window (60, 300, 3600) */
    double covered_s; /* real seconds of data in it (less just after start) */

    double request_rate;  /* answers/s, all classes */
    double analysis_rate; /* analysis-class answers/s */
    double images_per_s;  /* images analysed (computed or from cache) per second */
    double p50_ms[OPS_CLASSES], p95_ms[OPS_CLASSES], p99_ms[OPS_CLASSES];
    double error_rate;          /* 5xx answers / answers, all classes (0..1) */
    double analysis_error_rate; /* failed analyses (5xx, deadline, decode crash) / analyses */

    double cache_hit_rate[OPS_CACHE_TIERS];       /* [0] overall: hits in any tier / lookups */
    double cache_hit_latency_ms[OPS_CACHE_TIERS]; /* mean latency of a hit in that tier */

    double batch_size_mean;
    double batch_size_dist[OPS_BATCH_BUCKETS]; /* share of batches per bucket (sums to 1) */
    double queue_depth;                        /* mean of the per-second samples */
    double queue_depth_max;
    double replicas;             /* mean */
    double replica_utilisation;  /* busy / live replicas, 0..1 */
    double stage_ms[OPS_STAGES]; /* mean per computed image */

    double cpu_percent;     /* process CPU over the window / online CPUs, 0..100 */
    double memory_percent;  /* RSS / memory limit (cgroup, else MemTotal), 0..100 */
    double rss_bytes;       /* latest */
    double disk_free_bytes; /* latest, data directory's file system */
} ops_kpis;

#endif /* VG_OPS_KPI_H */
