/*
 * obs: metrics and health. A registry of counters, gauges and histograms with labels, rendered
 * as Prometheus text (exposition format 0.0.4) and as a JSON snapshot; process metrics read
 * from /proc at render time; a health registry of component checks. Nothing here knows about
 * HTTP: the server serves the strings these functions render.
 *
 * Adding a metric is one registration line at start-up and one call where it happens:
 *
 *     obs_counter_register(reg, "vigil_http_requests_total", "HTTP requests by route and status",
 *                          "route,status", &m->http_requests);
 *     ...
 *     obs_inc(m->http_requests, OBS_LABELS(route, status));
 *
 * Hot path: a metric's label children ("series") are created on first use and cached in a
 * fixed-size lock-free table, so obs_inc is a hash, a probe with atomic loads and one relaxed
 * atomic add. On hosts with more than 2 CPUs counter and histogram values are sharded per CPU
 * (the shard picked with sched_getcpu), so threads on different cores never write the same
 * cache line; on the 2-CPU target one shared atomic measured as fast or faster
 * (bench/results/index.md). Hot callers can also resolve a series once (obs_series_get) and
 * skip the lookup.
 *
 * Cardinality: each metric holds at most max_series label combinations; values for any further
 * combination go to one series whose label values are all "__overflow__", and
 * vigil_obs_series_overflow_total{metric} counts them.
 *
 * Thread-safety: everything is thread-safe. Registration and first use of a label combination
 * take the metric's mutex; updates are lock-free; rendering takes the registry's mutex (one
 * render at a time) and reads values with atomic loads, so a render concurrent with updates
 * sees each value either before or after an update, never torn. Metric and series pointers
 * stay valid until obs_registry_free. One registry per process, created at start and passed
 * to whoever needs it.
 *
 * Misuse (a value for the wrong metric type, a wrong number of label values, a NULL metric) is
 * never fatal: the update is dropped and counted in vigil_obs_misuse_total. A NULL metric is
 * a silent no-op, so code can run without a registry.
 */
#ifndef VG_OBS_H
#define VG_OBS_H

#include <stddef.h>
#include <stdint.h>

#define OBS_MAX_SERIES_DEFAULT 1000   /* label combinations per metric */
#define OBS_MAX_LABELS 8              /* label names per metric */
#define OBS_MAX_BUCKETS 64            /* histogram bucket bounds (+Inf is implicit) */
#define OBS_NAME_MAX_BYTES 128        /* metric and label names, incl. NUL */
#define OBS_HELP_MAX_BYTES 1024       /* help text, incl. NUL */
#define OBS_LABEL_VALUE_MAX_BYTES 256 /* longer values are cut (at a UTF-8 boundary) */
#define OBS_OVERFLOW_VALUE "__overflow__"

/* A NULL-terminated array of label values, in the order the metric declared its names. */
#define OBS_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Prometheus-style latency buckets in seconds, from 0.5 ms (Vigil's fast paths) to 10 s. */
#define OBS_LATENCY_BUCKETS                                                                        \
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
extern const double obs_latency_buckets[];
extern const size_t obs_latency_buckets_len;

typedef struct obs_config {
    size_t max_series;      /* per metric; 0 = OBS_MAX_SERIES_DEFAULT */
    unsigned shards;        /* value shards per counter/histogram series, rounded up to a power
                             * of two, at most 64: 0 = auto (1 on <= 2 CPUs, else one per CPU);
                             * 1 = one atomic */
    int no_process_metrics; /* 1: do not render process_* metrics (golden tests) */
} obs_config;

typedef struct obs_registry obs_registry;
typedef struct obs_metric obs_metric; /* a metric family (owned by the registry) */
typedef struct obs_series obs_series; /* one label combination of a metric (owned by it) */

typedef enum { OBS_COUNTER = 0, OBS_GAUGE, OBS_HISTOGRAM } obs_type;

/* cfg borrowed (NULL = defaults). *out owned, release with obs_registry_free (which frees every
 * metric and series; no update may run concurrently with it). VG_EINVAL, VG_ENOMEM. */
int obs_registry_new(const obs_config *cfg, obs_registry **out);
void obs_registry_free(obs_registry *r);

/* ---- registration --------------------------------------------------------------------------- */

/* Registers a metric (or returns the existing one when name, type, labels and buckets are the
 * same, so independent modules may register the same metric). name: [a-zA-Z_:][a-zA-Z0-9_:]*;
 * labels: comma-separated label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", not
 * "le" for histograms), or NULL/"" for none. All strings borrowed and copied. *out is owned by
 * the registry. Errors: VG_EINVAL (bad name, label or bucket list), VG_EEXIST (same name,
 * different definition), VG_ENOMEM. */
int obs_counter_register(obs_registry *r, const char *name, const char *help, const char *labels,
                         obs_metric **out);
int obs_gauge_register(obs_registry *r, const char *name, const char *help, const char *labels,
                       obs_metric **out);
/* buckets: strictly increasing finite upper bounds (borrowed, copied), 1..OBS_MAX_BUCKETS of
 * them; NULL = obs_latency_buckets. */
int obs_histogram_register(obs_registry *r, const char *name, const char *help, const char *labels,
                           const double *buckets, size_t n_buckets, obs_metric **out);

/* Called at every render and snapshot, before values are read, on the rendering thread (one at
 * a time): the place to set gauges that are cheaper to read than to maintain (index sizes,
 * cache bytes). ctx borrowed; must outlive the registry. VG_ENOMEM. */
typedef void (*obs_collect_fn)(void *ctx);
int obs_collector_add(obs_registry *r, obs_collect_fn fn, void *ctx);

/* ---- updates (hot path; values: OBS_LABELS(...) or NULL for a metric without labels) -------- */

void obs_inc(obs_metric *m, const char *const *values);                 /* counter += 1 */
void obs_add(obs_metric *m, const char *const *values, uint64_t n);     /* counter += n */
void obs_set(obs_metric *m, const char *const *values, double v);       /* gauge = v */
void obs_gauge_add(obs_metric *m, const char *const *values, double v); /* gauge += v */
void obs_observe(obs_metric *m, const char *const *values, double v);   /* histogram */

/* The series for these label values (created on first use; the overflow series past
 * max_series). Returns NULL only for misuse or out of memory; the obs_series_* calls accept
 * NULL as a no-op. The pointer stays valid until obs_registry_free. */
obs_series *obs_series_get(obs_metric *m, const char *const *values);
void obs_series_inc(obs_series *s);
void obs_series_add(obs_series *s, uint64_t n);
void obs_series_set(obs_series *s, double v);
void obs_series_gauge_add(obs_series *s, double v);
void obs_series_observe(obs_series *s, double v);

/* A histogram another module keeps (a store, index or cache latency histogram read at scrape
 * time): replaces the series' values with counts[0..n) per bucket (not cumulative; n must be
 * the metric's bound count + 1, the last for +Inf) and sum. Meant for a collector; a series fed
 * this way must not also be observed. Misuse (wrong type or n) is counted and dropped. */
void obs_series_histogram_set(obs_series *s, const uint64_t *counts, size_t n, double sum);
void obs_histogram_set(obs_metric *m, const char *const *values, const uint64_t *counts, size_t n,
                       double sum);

/* Current values, for tests and in-process readers (SLA views): a counter's total, a gauge's
 * value, a histogram's count (and sum through *sum when not NULL). Missing series read 0.
 * Does not create the series. */
double obs_value(obs_metric *m, const char *const *values, double *sum);

/* ---- rendering ------------------------------------------------------------------------------ */

/* Prometheus text format 0.0.4 (Content-Type: text/plain; version=0.0.4): families in
 * registration order (then the obs_* and process_* families), series sorted by label values.
 * *out owned (vg_free), NUL-terminated, *out_len without the NUL. VG_ENOMEM. */
int obs_render_prometheus(obs_registry *r, char **out, size_t *out_len);

/* JSON snapshot:
 *   {"time_ms":<wall ms>,"metrics":[{"name":..,"type":"counter|gauge|histogram","help":..,
 *     "labels":[names],"series":[{"labels":{name:value},"value":v}]}, ...],
 *    "process":{"resident_memory_bytes":..,...}}
 * A histogram family also has "buckets":[bounds], and each of its series
 * {"labels":{..},"count":n,"sum":s,"counts":[cumulative count per bound..., count]}.
 * Non-finite numbers are written as null. Same ownership as obs_render_prometheus. */
int obs_render_json(obs_registry *r, char **out, size_t *out_len);

/* ---- process -------------------------------------------------------------------------------- */

typedef struct obs_process {
    uint64_t resident_bytes, virtual_bytes;
    uint64_t open_fds, max_fds;
    uint64_t threads;
    double cpu_seconds;        /* user + system */
    double start_time_seconds; /* Unix time the process started */
} obs_process;

/* Reads /proc/self (and getrusage/getrlimit). VG_EIO if /proc is unreadable. */
int obs_process_read(obs_process *out);

/* ---- health --------------------------------------------------------------------------------- */

typedef enum { OBS_HEALTH_OK = 0, OBS_HEALTH_DEGRADED, OBS_HEALTH_FAILING } obs_health_status;

/* "ok" | "degraded" | "failing" */
const char *obs_health_status_name(obs_health_status s);

/* A component check: must be quick (it runs on the caller of obs_health_run) and thread-safe
 * if obs_health_run may run concurrently with other uses of ctx. Writes a short human message
 * (NUL-terminated, may be cut at msg_size) into msg. */
typedef obs_health_status (*obs_health_fn)(void *ctx, char *msg, size_t msg_size);

typedef struct obs_health obs_health;

/* metrics borrowed, may be NULL: with it, runs also set vigil_health_status{component}
 * (0 ok, 1 degraded, 2 failing) and vigil_health_check_seconds{component}. cache_ms: a run
 * within cache_ms of the previous one returns the previous report (protects the database from
 * health-check storms); 0 = always run. *out owned (obs_health_free). VG_ENOMEM. */
int obs_health_new(obs_registry *metrics, uint64_t cache_ms, obs_health **out);
void obs_health_free(obs_health *h);

/* Adds a component (name [a-z0-9_.-]{1,63}, unique; ctx borrowed, must outlive h).
 * VG_EINVAL, VG_EEXIST, VG_ENOMEM. */
int obs_health_register(obs_health *h, const char *component_name, obs_health_fn fn, void *ctx);

/* Built-in checks. Disk: free space (statvfs f_bavail) of the filesystem holding dir (borrowed,
 * copied): failing below min_free_bytes, degraded below warn_free_bytes, failing if dir cannot
 * be examined. Memory: this process's resident set against limit_bytes: failing above it,
 * degraded above warn_fraction * limit (0 < warn_fraction <= 1). */
int obs_health_add_disk(obs_health *h, const char *component_name, const char *dir,
                        uint64_t min_free_bytes, uint64_t warn_free_bytes);
int obs_health_add_memory(obs_health *h, const char *component_name, uint64_t limit_bytes,
                          double warn_fraction);

/* Runs every check in registration order. *overall is the worst component status (ok with no
 * components). *json (owned, vg_free; may be NULL if unwanted):
 *   {"status":"ok|degraded|failing","checked_at":"<RFC 3339>","duration_ms":d,
 *    "failing":["component",...],
 *    "components":{"<name>":{"status":..,"message":..,"duration_ms":d},...}}
 * Thread-safe (runs are serialized). VG_ENOMEM. */
int obs_health_run(obs_health *h, obs_health_status *overall, char **json, size_t *json_len);

#endif /* VG_OBS_H */
