/* ops: the record path, the tick, the KPI rings and windows, the process readers and the
 * performance JSON. Invariants (see ops.h for the contract):
 *  - live[] is written by the hot path only through the slot `cur` points at; the tick thread
 *    moves `cur` on, and harvests a live slot one tick after it stopped being current (stragglers
 *    that loaded `cur` just before the move still land in it), then zeroes it three ticks later
 *    before it becomes current again;
 *  - fine[], coarse[], the running window sums and the SLA minute are the tick thread's; readers
 *    take `mu`, which the tick holds while it changes them. */
#include "ops/ops.h"
#include "ops/ops_int.h"
#include "ops/ops_sla.h"

#include "core/core.h"
#include "obs/obs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define OPS_LIVE_SLOTS 4

/* Hot-path counters of one tick. */
typedef struct ops__live {
    _Atomic uint64_t answers[OPS_CLASSES], e5xx[OPS_CLASSES], over[OPS_CLASSES];
    _Atomic uint64_t analyses, analyses_failed, computed, stage_ns[OPS_STAGES];
    _Atomic uint64_t hist[OPS_CLASSES][OPS_LAT_BUCKETS];
} ops__live;

/* Everything known about a span of ticks; plain integers so window sums add and subtract
 * exactly. Gauges are sums over samples (_n of them), max and latest values are kept apart. */
typedef struct ops__agg {
    uint64_t real_ns, ticks;
    int64_t end_ms;
    uint64_t answers[OPS_CLASSES], e5xx[OPS_CLASSES], over[OPS_CLASSES];
    uint64_t analyses, analyses_failed, computed, stage_ns[OPS_STAGES];
    uint64_t hist[OPS_CLASSES][OPS_LAT_BUCKETS];
    uint64_t cache_hits[OPS_CACHE_TIERS], cache_misses[OPS_CACHE_TIERS];
    uint64_t cache_lat_count[OPS_CACHE_TIERS], cache_lat_sum_ns[OPS_CACHE_TIERS];
    uint64_t batches, batch_images, batch_dist[OPS_BATCH_BUCKETS];
    uint64_t samples, queue_sum, replicas_sum, busy_sum;
    uint64_t cpu_ns;
    /* not summed: max over the span, latest of the span */
    uint64_t queue_max, rss_bytes, disk_free_bytes;
    uint32_t replicas_min, replicas_max;
} ops__agg;

/* What the tick measured for one live slot (tick thread only). */
typedef struct ops__meta {
    uint64_t start_ns, end_ns;
    int64_t end_ms;
    int sampled;
    ops_sample delta; /* counters: growth over the slot; gauges: value at its end */
    uint64_t cpu_ns, rss_bytes, disk_free_bytes;
} ops__meta;

struct ops {
    ops_config cfg;
    char *data_dir;
    double scale;
    uint64_t tick_ns;  /* real */
    double tick_ops_s; /* ops seconds per tick */
    uint64_t threshold_ns[OPS_CLASSES];
    double target[OPS_SLOS];
    uint64_t mem_limit;
    int ncpu;
    int64_t started_ms;

    ops__live live[OPS_LIVE_SLOTS];
    _Atomic unsigned cur;
    ops__meta meta[OPS_LIVE_SLOTS];
    uint64_t ticks;
    ops_sample last_sample;
    int have_sample;
    uint64_t last_cpu_ns;

    pthread_mutex_t mu; /* guards everything below and sla */
    ops__agg *fine, *coarse;
    uint64_t n_fine, n_coarse;
    unsigned n1, n5, n1h; /* slots per window: fine, fine, coarse */
    ops__agg w1, w5, w1h_c, cpart, tmp;
    ops_kpis k1, k5, k1h;
    double rmin[3], rmax[3]; /* replicas min/max of each window (latest sample; NAN: none) */
    ops_sla *sla;
    ops_sla_minute min;
    uint64_t min_hist[2][OPS_LAT_BUCKETS]; /* analysis, api: the minute's P95 */

    ops_tick_fn fns[OPS_MAX_TICK_FNS];
    void *fn_ctx[OPS_MAX_TICK_FNS];
    size_t n_fns;

    pthread_t thread;
    int running;
    pthread_mutex_t run_mu;
    pthread_cond_t run_cv;
    int stop;

    obs_metric *m_ticks, *m_lag, *m_rows, *m_row_errors;
};

/* ---- histogram ------------------------------------------------------------------------------ */

/* ceil(2^(63 + j/8)): a duration normalised to its top bit at bit 63 is in sub-bucket j of its
 * octave when it is at least oct_thr[j] (exact: no rounding but that of the constants' last bit).
 */
static const uint64_t oct_thr[OPS_LAT_PER_OCTAVE] = {
    0x8000000000000000ull, 0x8b95c1e3ea8bd6e7ull, 0x9837f0518db8a970ull, 0xa5fed6a9b15138ebull,
    0xb504f333f9de6485ull, 0xc5672a115506dadeull, 0xd744fccad69d6af5ull, 0xeac0c6e7dd24392full};

unsigned ops_lat_bucket(uint64_t ns)
{
    if (ns < (1ull << OPS_LAT_MIN_LOG2_NS))
        return 0;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* 2^e <= ns < 2^(e+1) */
    if (e >= OPS_LAT_MIN_LOG2_NS + OPS_LAT_BUCKETS / OPS_LAT_PER_OCTAVE)
        return OPS_LAT_BUCKETS - 1;
    uint64_t x = ns << (63 - e);
    unsigned j = 0;
    for (unsigned step = 4; step; step >>= 1) /* binary search of the 8 sub-buckets */
        if (x >= oct_thr[j + step])
            j += step;
    return (e - OPS_LAT_MIN_LOG2_NS) * OPS_LAT_PER_OCTAVE + j;
}

double ops_lat_quantile_ms(const uint64_t *counts, double q)
{
    uint64_t n = 0;
    for (unsigned b = 0; b < OPS_LAT_BUCKETS; b++)
        n += counts[b];
    if (n == 0)
        return NAN;
    /* nearest rank: the ceil(q n)-th smallest sample */
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    unsigned b = 0;
    for (; b < OPS_LAT_BUCKETS; b++) {
        seen += counts[b];
        if (seen >= rank)
            break;
    }
    double g = (double)(b + OPS_LAT_MIN_LOG2_NS * OPS_LAT_PER_OCTAVE) + 0.5;
    return exp2(g / OPS_LAT_PER_OCTAVE) / 1e6;
}

/* ---- helpers -------------------------------------------------------------------------------- */

json_t *ops__time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[32];
    return json_string(vg_format_time(ms, buf, sizeof(buf)));
}

json_t *ops__num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

const char *ops_slo_name(ops_slo slo)
{
    static const char *const names[OPS_SLOS] = {"availability", "analysis_latency", "api_latency",
                                                "error_rate"};
    return (unsigned)slo < OPS_SLOS ? names[slo] : "unknown";
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : NAN;
}

/* ---- process readers ------------------------------------------------------------------------ */

static uint64_t read_u64_file(const char *path, int *ok)
{
    char buf[128];
    *ok = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return 0;
    *ok = 1;
    return (uint64_t)v;
}

/* The memory limit memory_percent is against: the cgroup v2 limit of this process's group when
 * one is set ("max" means none), else the machine's MemTotal. */
static uint64_t memory_limit(void)
{
    char line[4096], path[4200];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) != 0)
                continue;
            line[strcspn(line, "\n")] = '\0';
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", line + 3);
            int ok;
            uint64_t v = read_u64_file(path, &ok);
            if (ok && v > 0) {
                fclose(f);
                return v;
            }
        }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "r");
    if (f) {
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
                fclose(f);
                return (uint64_t)kb * 1024;
            }
        fclose(f);
    }
    return 0;
}

static uint64_t process_rss(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size, res;
    if (sscanf(buf, "%llu %llu", &size, &res) != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)res * (uint64_t)(page > 0 ? page : 4096);
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t disk_free(const char *dir)
{
    struct statvfs sv;
    if (!dir || statvfs(dir, &sv) != 0)
        return 0;
    return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int register_metrics(ops *o)
{
    obs_registry *r = o->cfg.metrics;
    if (!r)
        return VG_OK;
    int rc = obs_counter_register(r, "vigil_ops_ticks_total",
                                  "ops ticks run (one per ops second: KPI windows, SLA minutes)",
                                  NULL, &o->m_ticks);
    if (rc == VG_OK)
        rc = obs_gauge_register(r, "vigil_ops_tick_lag_seconds",
                                "how late the last ops tick ran against its schedule", NULL,
                                &o->m_lag);
    if (rc == VG_OK)
        rc = obs_counter_register(r, "vigil_ops_sla_rows_total",
                                  "per-minute SLA rows written to ops.db", NULL, &o->m_rows);
    if (rc == VG_OK)
        rc = obs_counter_register(r, "vigil_ops_sla_write_errors_total",
                                  "per-minute SLA rows that could not be written (kept in memory)",
                                  NULL, &o->m_row_errors);
    return rc;
}

static void kpis_empty(ops_kpis *k, double window_s)
{
    memset(k, 0, sizeof *k);
    double *d = &k->request_rate;
    /* every double after covered_s */
    for (double *p = d; p <= &k->disk_free_bytes; p++)
        *p = NAN;
    k->window_s = window_s;
}

static unsigned clamp_slots(double n, unsigned max)
{
    if (!(n >= 1))
        return 1;
    return n > max ? max : (unsigned)llround(n);
}

int ops_new(const ops_config *cfg, ops **out)
{
    *out = NULL;
    ops_config c = *cfg;
    if (c.time_scale == 0)
        c.time_scale = 1;
    if (!(c.time_scale >= OPS_TIME_SCALE_MIN && c.time_scale <= OPS_TIME_SCALE_MAX))
        return vg_err_set(VG_EINVAL, "ops: time scale %g is outside 1..3600", c.time_scale);
    if (c.slo_availability == 0)
        c.slo_availability = OPS_SLO_AVAILABILITY_DEFAULT;
    if (c.slo_error_rate == 0)
        c.slo_error_rate = OPS_SLO_ERROR_RATE_DEFAULT;
    if (!c.slo_analysis_p95_ms)
        c.slo_analysis_p95_ms = OPS_SLO_ANALYSIS_P95_MS_DEFAULT;
    if (!c.slo_api_p95_ms)
        c.slo_api_p95_ms = OPS_SLO_API_P95_MS_DEFAULT;
    if (!(c.slo_availability > 0.5 && c.slo_availability < 1) ||
        !(c.slo_error_rate > 0 && c.slo_error_rate <= 0.5))
        return vg_err_set(VG_EINVAL, "ops: availability target must be in (0.5, 1), error rate "
                                     "objective in (0, 0.5]");
    ops *o = vg_calloc(1, sizeof *o);
    if (!o)
        return VG_ENOMEM;
    o->cfg = c;
    o->scale = c.time_scale;
    double tick_ms = 1000.0 / o->scale;
    if (tick_ms < OPS_TICK_MIN_MS)
        tick_ms = OPS_TICK_MIN_MS;
    o->tick_ns = (uint64_t)(tick_ms * 1e6);
    o->tick_ops_s = tick_ms / 1000.0 * o->scale;
    o->n1 = clamp_slots(60.0 / o->tick_ops_s, OPS_FINE_SLOTS);
    o->n5 = clamp_slots(300.0 / o->tick_ops_s, OPS_FINE_SLOTS);
    o->n1h = clamp_slots(3600.0 / (o->tick_ops_s * OPS_COARSE_TICKS), OPS_COARSE_SLOTS);
    o->threshold_ns[OPS_CLASS_ANALYSIS] = (uint64_t)c.slo_analysis_p95_ms * 1000000ull;
    o->threshold_ns[OPS_CLASS_API] = (uint64_t)c.slo_api_p95_ms * 1000000ull;
    o->threshold_ns[OPS_CLASS_OTHER] = UINT64_MAX;
    o->target[OPS_SLO_AVAILABILITY] = c.slo_availability;
    o->target[OPS_SLO_ANALYSIS_LATENCY] = OPS_SLO_LATENCY_QUANTILE;
    o->target[OPS_SLO_API_LATENCY] = OPS_SLO_LATENCY_QUANTILE;
    o->target[OPS_SLO_ERROR_RATE] = 1 - c.slo_error_rate;
    o->mem_limit = c.memory_limit_bytes ? c.memory_limit_bytes : memory_limit();
    o->ncpu = vg_cpu_count() > 0 ? vg_cpu_count() : 1;
    o->started_ms = vg_wall_ms();
    o->fine = vg_calloc(OPS_FINE_SLOTS, sizeof(ops__agg));
    o->coarse = vg_calloc(OPS_COARSE_SLOTS, sizeof(ops__agg));
    o->data_dir = c.data_dir ? vg_strdup(c.data_dir) : NULL;
    o->cfg.data_dir = o->data_dir;
    int rc = VG_OK;
    if (!o->fine || !o->coarse || (c.data_dir && !o->data_dir))
        rc = VG_ENOMEM;
    if (rc == VG_OK &&
        (pthread_mutex_init(&o->mu, NULL) != 0 || pthread_mutex_init(&o->run_mu, NULL) != 0)) {
        rc = VG_ENOMEM;
    }
    if (rc == VG_OK) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (pthread_cond_init(&o->run_cv, &ca) != 0)
            rc = VG_ENOMEM;
        pthread_condattr_destroy(&ca);
    }
    if (rc == VG_OK)
        rc = register_metrics(o);
    if (rc == VG_OK) {
        ops_sla_config sc = {.dir = o->data_dir, .time_scale = o->scale, .now_ms = o->started_ms};
        for (int i = 0; i < OPS_SLOS; i++)
            sc.target[i] = o->target[i];
        sc.threshold_ms[OPS_SLO_ANALYSIS_LATENCY] = c.slo_analysis_p95_ms;
        sc.threshold_ms[OPS_SLO_API_LATENCY] = c.slo_api_p95_ms;
        rc = ops_sla_open(&sc, &o->sla);
    }
    if (rc != VG_OK) {
        vg_free(o->fine);
        vg_free(o->coarse);
        vg_free(o->data_dir);
        vg_free(o);
        return rc;
    }
    kpis_empty(&o->k1, 60);
    kpis_empty(&o->k5, 300);
    kpis_empty(&o->k1h, 3600);
    for (int w = 0; w < 3; w++)
        o->rmin[w] = o->rmax[w] = NAN;
    o->min.t_ms = -1;
    o->last_cpu_ns = process_cpu_ns();
    *out = o;
    return VG_OK;
}

double ops_time_scale(const ops *o)
{
    return o ? o->scale : 1;
}

double ops_slo_target(ops *o, ops_slo slo)
{
    return (unsigned)slo < OPS_SLOS ? o->target[slo] : NAN;
}

double ops_slo_threshold_ms(ops *o, ops_slo slo)
{
    if (slo == OPS_SLO_ANALYSIS_LATENCY)
        return o->cfg.slo_analysis_p95_ms;
    if (slo == OPS_SLO_API_LATENCY)
        return o->cfg.slo_api_p95_ms;
    return 0;
}

int ops_tick_add(ops *o, ops_tick_fn fn, void *ctx)
{
    if (o->n_fns >= OPS_MAX_TICK_FNS)
        return vg_err_set(VG_ENOMEM, "ops: more than %d tick callbacks", OPS_MAX_TICK_FNS);
    o->fns[o->n_fns] = fn;
    o->fn_ctx[o->n_fns] = ctx;
    o->n_fns++;
    return VG_OK;
}

/* ---- record path ---------------------------------------------------------------------------- */

void ops_record_request(ops *o, ops_class cls, int http_status, uint64_t duration_ns)
{
    if (!o || http_status <= 0 || (unsigned)cls >= OPS_CLASSES)
        return;
    ops__live *s = &o->live[atomic_load_explicit(&o->cur, memory_order_acquire)];
    atomic_fetch_add_explicit(&s->answers[cls], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->hist[cls][ops_lat_bucket(duration_ns)], 1, memory_order_relaxed);
    if (http_status >= 500)
        atomic_fetch_add_explicit(&s->e5xx[cls], 1, memory_order_relaxed);
    if (duration_ns > o->threshold_ns[cls])
        atomic_fetch_add_explicit(&s->over[cls], 1, memory_order_relaxed);
}

void ops_record_analysis(ops *o, int ok, unsigned images, const uint64_t *stage_ns, ops_tier tier)
{
    if (!o || images == 0)
        return;
    ops__live *s = &o->live[atomic_load_explicit(&o->cur, memory_order_acquire)];
    atomic_fetch_add_explicit(&s->analyses, images, memory_order_relaxed);
    if (!ok) {
        atomic_fetch_add_explicit(&s->analyses_failed, images, memory_order_relaxed);
        return;
    }
    if (stage_ns && tier <= OPS_TIER_MISS) {
        atomic_fetch_add_explicit(&s->computed, images, memory_order_relaxed);
        for (int i = 0; i < OPS_STAGES; i++)
            if (stage_ns[i])
                atomic_fetch_add_explicit(&s->stage_ns[i], stage_ns[i] * images,
                                          memory_order_relaxed);
    }
}

/* ---- aggregation ---------------------------------------------------------------------------- */

/* clang-format off */
#define OPS_SUM_FIELDS(X)                                                                          \
    X(answers, OPS_CLASSES) X(e5xx, OPS_CLASSES) X(over, OPS_CLASSES) X(stage_ns, OPS_STAGES)      \
    X(cache_hits, OPS_CACHE_TIERS) X(cache_misses, OPS_CACHE_TIERS)                                \
    X(cache_lat_count, OPS_CACHE_TIERS) X(cache_lat_sum_ns, OPS_CACHE_TIERS)                       \
    X(batch_dist, OPS_BATCH_BUCKETS)
/* clang-format on */

/* dst += src (sign 1) or dst -= src (sign -1) for every summed field; the span's latest values
 * follow src when adding (src is newer). */
static void agg_add(ops__agg *dst, const ops__agg *src, int sign)
{
    uint64_t m = sign > 0 ? 1 : (uint64_t)-1; /* wrapping multiply: exact add/subtract */
#define ADD_ARR(f, n)                                                                              \
    for (int i = 0; i < (n); i++)                                                                  \
        dst->f[i] += m * src->f[i];
    OPS_SUM_FIELDS(ADD_ARR)
#undef ADD_ARR
    for (int c = 0; c < OPS_CLASSES; c++)
        for (int b = 0; b < OPS_LAT_BUCKETS; b++)
            dst->hist[c][b] += m * src->hist[c][b];
    dst->real_ns += m * src->real_ns;
    dst->ticks += m * src->ticks;
    dst->analyses += m * src->analyses;
    dst->analyses_failed += m * src->analyses_failed;
    dst->computed += m * src->computed;
    dst->batches += m * src->batches;
    dst->batch_images += m * src->batch_images;
    dst->samples += m * src->samples;
    dst->queue_sum += m * src->queue_sum;
    dst->replicas_sum += m * src->replicas_sum;
    dst->busy_sum += m * src->busy_sum;
    dst->cpu_ns += m * src->cpu_ns;
    if (sign > 0) {
        if (src->end_ms > dst->end_ms) {
            dst->end_ms = src->end_ms;
            dst->rss_bytes = src->rss_bytes;
            dst->disk_free_bytes = src->disk_free_bytes;
            dst->replicas_min = src->replicas_min;
            dst->replicas_max = src->replicas_max;
        }
        if (src->queue_max > dst->queue_max)
            dst->queue_max = src->queue_max;
    }
}

static uint64_t grow(uint64_t now, uint64_t before)
{
    return now >= before ? now - before : 0;
}

/* Sample the server and the process at the end of the slot that just stopped being current. */
static void sample(ops *o, ops__meta *m)
{
    m->sampled = 0;
    memset(&m->delta, 0, sizeof m->delta);
    if (o->cfg.sample) {
        ops_sample now;
        memset(&now, 0, sizeof now);
        o->cfg.sample(o->cfg.sample_ctx, &now);
        if (o->have_sample) {
            ops_sample *d = &m->delta, *b = &o->last_sample;
            for (int t = 0; t < OPS_CACHE_TIERS; t++) {
                d->cache_hits[t] = grow(now.cache_hits[t], b->cache_hits[t]);
                d->cache_misses[t] = grow(now.cache_misses[t], b->cache_misses[t]);
                d->cache_lat_count[t] = grow(now.cache_lat_count[t], b->cache_lat_count[t]);
                d->cache_lat_sum_ns[t] = grow(now.cache_lat_sum_ns[t], b->cache_lat_sum_ns[t]);
            }
            d->batches = grow(now.batches, b->batches);
            d->batch_images = grow(now.batch_images, b->batch_images);
            for (int i = 0; i < OPS_BATCH_BUCKETS; i++)
                d->batch_dist[i] = grow(now.batch_dist[i], b->batch_dist[i]);
        }
        m->delta.queue_depth = now.queue_depth;
        m->delta.replicas = now.replicas;
        m->delta.replicas_min = now.replicas_min;
        m->delta.replicas_max = now.replicas_max;
        m->delta.replicas_busy = now.replicas_busy;
        m->sampled = 1;
        o->last_sample = now;
        o->have_sample = 1;
    }
    uint64_t cpu = process_cpu_ns();
    m->cpu_ns = grow(cpu, o->last_cpu_ns);
    o->last_cpu_ns = cpu;
    m->rss_bytes = process_rss();
    m->disk_free_bytes = disk_free(o->data_dir);
}

/* Live slot + its meta -> a fresh aggregate. */
static void harvest(ops *o, unsigned idx, ops__agg *a)
{
    ops__live *l = &o->live[idx];
    ops__meta *m = &o->meta[idx];
    memset(a, 0, sizeof *a);
    /* the slot before the first tick has no known start: one tick */
    a->real_ns = !m->start_ns ? o->tick_ns : m->end_ns > m->start_ns ? m->end_ns - m->start_ns : 0;
    a->ticks = 1;
    a->end_ms = m->end_ms;
    for (int c = 0; c < OPS_CLASSES; c++) {
        a->answers[c] = atomic_load_explicit(&l->answers[c], memory_order_relaxed);
        a->e5xx[c] = atomic_load_explicit(&l->e5xx[c], memory_order_relaxed);
        a->over[c] = atomic_load_explicit(&l->over[c], memory_order_relaxed);
        for (int b = 0; b < OPS_LAT_BUCKETS; b++)
            a->hist[c][b] = atomic_load_explicit(&l->hist[c][b], memory_order_relaxed);
    }
    a->analyses = atomic_load_explicit(&l->analyses, memory_order_relaxed);
    a->analyses_failed = atomic_load_explicit(&l->analyses_failed, memory_order_relaxed);
    a->computed = atomic_load_explicit(&l->computed, memory_order_relaxed);
    for (int i = 0; i < OPS_STAGES; i++)
        a->stage_ns[i] = atomic_load_explicit(&l->stage_ns[i], memory_order_relaxed);
    if (m->sampled) {
        const ops_sample *d = &m->delta;
        for (int t = 0; t < OPS_CACHE_TIERS; t++) {
            a->cache_hits[t] = d->cache_hits[t];
            a->cache_misses[t] = d->cache_misses[t];
            a->cache_lat_count[t] = d->cache_lat_count[t];
            a->cache_lat_sum_ns[t] = d->cache_lat_sum_ns[t];
        }
        a->batches = d->batches;
        a->batch_images = d->batch_images;
        memcpy(a->batch_dist, d->batch_dist, sizeof a->batch_dist);
        a->samples = 1;
        a->queue_sum = a->queue_max = d->queue_depth;
        a->replicas_sum = d->replicas;
        a->busy_sum = d->replicas_busy;
        a->replicas_min = d->replicas_min;
        a->replicas_max = d->replicas_max;
    }
    a->cpu_ns = m->cpu_ns;
    a->rss_bytes = m->rss_bytes;
    a->disk_free_bytes = m->disk_free_bytes;
}

static void kpis_from(const ops *o, const ops__agg *a, uint64_t queue_max, double window_s,
                      ops_kpis *k)
{
    kpis_empty(k, window_s);
    k->end_ms = a->end_ms;
    k->covered_s = (double)a->real_ns / 1e9;
    double secs = k->covered_s > 0 ? k->covered_s : NAN;
    uint64_t answers = 0, e5xx = 0;
    for (int c = 0; c < OPS_CLASSES; c++) {
        answers += a->answers[c];
        e5xx += a->e5xx[c];
        k->p50_ms[c] = ops_lat_quantile_ms(a->hist[c], 0.50);
        k->p95_ms[c] = ops_lat_quantile_ms(a->hist[c], 0.95);
        k->p99_ms[c] = ops_lat_quantile_ms(a->hist[c], 0.99);
    }
    k->request_rate = (double)answers / secs;
    k->analysis_rate = (double)a->answers[OPS_CLASS_ANALYSIS] / secs;
    k->images_per_s = (double)a->analyses / secs;
    k->error_rate = ratio(e5xx, answers);
    k->analysis_error_rate = ratio(a->analyses_failed, a->analyses);
    for (int t = 0; t < OPS_CACHE_TIERS; t++) {
        k->cache_hit_rate[t] = ratio(a->cache_hits[t], a->cache_hits[t] + a->cache_misses[t]);
        k->cache_hit_latency_ms[t] = ratio(a->cache_lat_sum_ns[t], a->cache_lat_count[t]) / 1e6;
    }
    k->batch_size_mean = ratio(a->batch_images, a->batches);
    uint64_t nb = 0;
    for (int i = 0; i < OPS_BATCH_BUCKETS; i++)
        nb += a->batch_dist[i];
    for (int i = 0; i < OPS_BATCH_BUCKETS; i++)
        k->batch_size_dist[i] = ratio(a->batch_dist[i], nb);
    if (a->samples) {
        k->queue_depth = (double)a->queue_sum / (double)a->samples;
        k->queue_depth_max = (double)queue_max;
        k->replicas = (double)a->replicas_sum / (double)a->samples;
        k->replica_utilisation = ratio(a->busy_sum, a->replicas_sum);
    }
    for (int i = 0; i < OPS_STAGES; i++)
        k->stage_ms[i] = ratio(a->stage_ns[i], a->computed) / 1e6;
    if (a->real_ns)
        k->cpu_percent = 100.0 * (double)a->cpu_ns / (double)a->real_ns / o->ncpu;
    if (a->end_ms) {
        k->rss_bytes = (double)a->rss_bytes;
        k->memory_percent =
            o->mem_limit ? 100.0 * (double)a->rss_bytes / (double)o->mem_limit : NAN;
        k->disk_free_bytes = o->data_dir ? (double)a->disk_free_bytes : NAN;
    }
}

static uint64_t queue_max_fine(const ops *o, unsigned n)
{
    uint64_t mx = 0;
    for (unsigned i = 1; i <= n && i <= o->n_fine; i++) {
        const ops__agg *a = &o->fine[(o->n_fine - i) % OPS_FINE_SLOTS];
        if (a->queue_max > mx)
            mx = a->queue_max;
    }
    return mx;
}

static void sla_flush_minute(ops *o)
{
    if (o->min.t_ms < 0)
        return;
    o->min.analysis_p95_ms = ops_lat_quantile_ms(o->min_hist[0], 0.95);
    o->min.api_p95_ms = ops_lat_quantile_ms(o->min_hist[1], 0.95);
    o->min.errors = o->min.answers_5xx + o->min.analyses_failed;
    int rc = ops_sla_append(o->sla, &o->min);
    if (rc == VG_OK)
        obs_inc(o->m_rows, NULL);
    else
        obs_inc(o->m_row_errors, NULL);
}

/* Adds one closed tick to the current SLA minute (flushing the previous one on roll-over). */
static void sla_account(ops *o, const ops__agg *a)
{
    int64_t mm = ops_sla_minute_ms(o->sla);
    int64_t t = a->end_ms - a->end_ms % mm;
    if (t != o->min.t_ms) {
        sla_flush_minute(o);
        memset(&o->min, 0, sizeof o->min);
        memset(o->min_hist, 0, sizeof o->min_hist);
        o->min.t_ms = t;
        o->min.minute_ms = (uint32_t)mm;
    }
    ops_sla_minute *m = &o->min;
    uint64_t up = m->up_ms + a->real_ns / 1000000u;
    m->up_ms = (uint32_t)(up > (uint64_t)mm ? (uint64_t)mm : up);
    for (int c = 0; c < OPS_CLASSES; c++) {
        m->answers += a->answers[c];
        m->answers_5xx += a->e5xx[c];
    }
    m->analyses += a->analyses;
    m->analyses_failed += a->analyses_failed;
    m->analysis_n += a->answers[OPS_CLASS_ANALYSIS];
    m->analysis_over += a->over[OPS_CLASS_ANALYSIS];
    m->api_n += a->answers[OPS_CLASS_API];
    m->api_over += a->over[OPS_CLASS_API];
    m->errors = m->answers_5xx + m->analyses_failed;
    for (int b = 0; b < OPS_LAT_BUCKETS; b++) {
        o->min_hist[0][b] += a->hist[OPS_CLASS_ANALYSIS][b];
        o->min_hist[1][b] += a->hist[OPS_CLASS_API][b];
    }
}

/* A closed tick into the rings, the running window sums and the SLA minute (o->mu held). */
static void push(ops *o, const ops__agg *f)
{
    if (o->n_fine >= o->n1)
        agg_add(&o->w1, &o->fine[(o->n_fine - o->n1) % OPS_FINE_SLOTS], -1);
    if (o->n_fine >= o->n5)
        agg_add(&o->w5, &o->fine[(o->n_fine - o->n5) % OPS_FINE_SLOTS], -1);
    agg_add(&o->w1, f, 1);
    agg_add(&o->w5, f, 1);
    o->fine[o->n_fine % OPS_FINE_SLOTS] = *f;
    o->n_fine++;
    agg_add(&o->cpart, f, 1);
    if (o->cpart.ticks >= OPS_COARSE_TICKS) {
        if (o->n_coarse >= o->n1h)
            agg_add(&o->w1h_c, &o->coarse[(o->n_coarse - o->n1h) % OPS_COARSE_SLOTS], -1);
        agg_add(&o->w1h_c, &o->cpart, 1);
        o->coarse[o->n_coarse % OPS_COARSE_SLOTS] = o->cpart;
        o->n_coarse++;
        memset(&o->cpart, 0, sizeof o->cpart);
    }
    sla_account(o, f);
}

static void replica_bounds(ops *o, int w, const ops__agg *a)
{
    o->rmin[w] = a->samples ? (double)a->replicas_min : NAN;
    o->rmax[w] = a->samples ? (double)a->replicas_max : NAN;
}

static void compute_windows(ops *o)
{
    kpis_from(o, &o->w1, queue_max_fine(o, o->n1), 60, &o->k1);
    replica_bounds(o, 0, &o->w1);
    kpis_from(o, &o->w5, queue_max_fine(o, o->n5), 300, &o->k5);
    replica_bounds(o, 1, &o->w5);
    o->tmp = o->w1h_c;
    agg_add(&o->tmp, &o->cpart, 1);
    replica_bounds(o, 2, &o->tmp);
    uint64_t mx = o->cpart.queue_max;
    for (unsigned i = 1; i <= o->n1h && i <= o->n_coarse; i++) {
        const ops__agg *a = &o->coarse[(o->n_coarse - i) % OPS_COARSE_SLOTS];
        if (a->queue_max > mx)
            mx = a->queue_max;
    }
    kpis_from(o, &o->tmp, mx, 3600, &o->k1h);
}

void ops_tick(ops *o, uint64_t mono_ns, int64_t wall_ms)
{
    unsigned cur = atomic_load_explicit(&o->cur, memory_order_relaxed);
    unsigned next = (cur + 1) % OPS_LIVE_SLOTS;
    unsigned closed = (cur + OPS_LIVE_SLOTS - 1) % OPS_LIVE_SLOTS; /* left current last tick */
    /* the slot about to become current was harvested two ticks ago: nobody writes it now */
    memset(&o->live[next], 0, sizeof o->live[next]);
    o->meta[next].start_ns = mono_ns;
    atomic_store_explicit(&o->cur, next, memory_order_release);
    o->meta[cur].end_ns = mono_ns;
    o->meta[cur].end_ms = wall_ms;
    sample(o, &o->meta[cur]);

    pthread_mutex_lock(&o->mu);
    if (o->ticks >= 1) {
        ops__agg *a = &o->tmp;
        harvest(o, closed, a);
        ops__agg f = *a;
        push(o, &f);
        compute_windows(o);
    }
    o->ticks++;
    ops_kpis k1 = o->k1, k5 = o->k5, k1h = o->k1h;
    pthread_mutex_unlock(&o->mu);
    obs_inc(o->m_ticks, NULL);
    for (size_t i = 0; i < o->n_fns; i++)
        o->fns[i](o->fn_ctx[i], &k1, &k5, &k1h, wall_ms);
}

void ops_kpis_get(ops *o, ops_kpis *w1m, ops_kpis *w5m, ops_kpis *w1h)
{
    pthread_mutex_lock(&o->mu);
    if (w1m)
        *w1m = o->k1;
    if (w5m)
        *w5m = o->k5;
    if (w1h)
        *w1h = o->k1h;
    pthread_mutex_unlock(&o->mu);
}

/* ---- tick thread ---------------------------------------------------------------------------- */

static void *tick_main(void *arg)
{
    ops *o = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t next = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + o->tick_ns;
    pthread_mutex_lock(&o->run_mu);
    while (!o->stop) {
        struct timespec dl = {.tv_sec = (time_t)(next / 1000000000ull),
                              .tv_nsec = (long)(next % 1000000000ull)};
        int rc = pthread_cond_timedwait(&o->run_cv, &o->run_mu, &dl);
        if (o->stop)
            break;
        if (rc != ETIMEDOUT)
            continue;
        pthread_mutex_unlock(&o->run_mu);
        uint64_t now = vg_now_ns();
        obs_set(o->m_lag, NULL, (double)(now - next) / 1e9);
        ops_tick(o, now, vg_wall_ms());
        next += o->tick_ns;
        if (now > next) /* fell behind (suspended, overloaded): no burst of catch-up ticks */
            next = now + o->tick_ns;
        pthread_mutex_lock(&o->run_mu);
    }
    pthread_mutex_unlock(&o->run_mu);
    return NULL;
}

int ops_start(ops *o)
{
    if (o->running)
        return VG_OK;
    o->stop = 0;
    if (pthread_create(&o->thread, NULL, tick_main, o) != 0)
        return vg_err_set(VG_ENOMEM, "ops: cannot start the tick thread");
    o->running = 1;
    return VG_OK;
}

void ops_stop(ops *o)
{
    if (!o || !o->running)
        return;
    pthread_mutex_lock(&o->run_mu);
    o->stop = 1;
    pthread_cond_signal(&o->run_cv);
    pthread_mutex_unlock(&o->run_mu);
    pthread_join(o->thread, NULL);
    o->running = 0;
}

void ops_free(ops *o)
{
    if (!o)
        return;
    ops_stop(o);
    int64_t now = vg_wall_ms();
    pthread_mutex_lock(&o->mu);
    sla_flush_minute(o);
    pthread_mutex_unlock(&o->mu);
    ops_sla_close(o->sla, now);
    pthread_cond_destroy(&o->run_cv);
    pthread_mutex_destroy(&o->run_mu);
    pthread_mutex_destroy(&o->mu);
    vg_free(o->fine);
    vg_free(o->coarse);
    vg_free(o->data_dir);
    vg_free(o);
}

/* ---- SLIs ----------------------------------------------------------------------------------- */

/* The ring's counters over the newest window_s of ops time, as one SLA minute (o->mu held). */
static void ring_counts(ops *o, double window_s, ops_sla_minute *sum)
{
    memset(sum, 0, sizeof *sum);
    ops__agg acc;
    memset(&acc, 0, sizeof acc);
    double ticks = window_s / o->tick_ops_s;
    if (ticks <= OPS_FINE_SLOTS) {
        unsigned n = clamp_slots(ticks, OPS_FINE_SLOTS);
        for (unsigned i = 1; i <= n && i <= o->n_fine; i++) {
            const ops__agg *a = &o->fine[(o->n_fine - i) % OPS_FINE_SLOTS];
            for (int c = 0; c < OPS_CLASSES; c++) {
                acc.answers[c] += a->answers[c];
                acc.e5xx[c] += a->e5xx[c];
                acc.over[c] += a->over[c];
            }
            acc.analyses += a->analyses;
            acc.analyses_failed += a->analyses_failed;
        }
    } else {
        unsigned n = clamp_slots(ticks / OPS_COARSE_TICKS, OPS_COARSE_SLOTS);
        const ops__agg *p = &o->cpart;
        for (unsigned i = 0; i <= n && i <= o->n_coarse; i++) {
            const ops__agg *a = i == 0 ? p : &o->coarse[(o->n_coarse - i) % OPS_COARSE_SLOTS];
            for (int c = 0; c < OPS_CLASSES; c++) {
                acc.answers[c] += a->answers[c];
                acc.e5xx[c] += a->e5xx[c];
                acc.over[c] += a->over[c];
            }
            acc.analyses += a->analyses;
            acc.analyses_failed += a->analyses_failed;
        }
    }
    for (int c = 0; c < OPS_CLASSES; c++) {
        sum->answers += acc.answers[c];
        sum->answers_5xx += acc.e5xx[c];
    }
    sum->analyses = acc.analyses;
    sum->analyses_failed = acc.analyses_failed;
    sum->analysis_n = acc.answers[OPS_CLASS_ANALYSIS];
    sum->analysis_over = acc.over[OPS_CLASS_ANALYSIS];
    sum->api_n = acc.answers[OPS_CLASS_API];
    sum->api_over = acc.over[OPS_CLASS_API];
    sum->errors = sum->answers_5xx + sum->analyses_failed;
}

int ops_sli_bad_ratio(ops *o, ops_slo slo, double window_s, int64_t now_ms, double *out)
{
    if ((unsigned)slo >= OPS_SLOS || !(window_s > 0))
        return vg_err_set(VG_EINVAL, "ops: bad objective or window");
    int64_t real_ms = (int64_t)(window_s * 1000.0 / o->scale);
    pthread_mutex_lock(&o->mu);
    int rc;
    if (window_s <= 3600.0) {
        ops_sla_minute sum;
        ring_counts(o, window_s, &sum);
        /* the ring's counters with the SLA's downtime accounting for the same span */
        rc = ops_sla_bad_ratio(o->sla, slo, real_ms, now_ms, NULL, &sum, out);
    } else {
        rc = ops_sla_bad_ratio(o->sla, slo, real_ms, now_ms, o->min.t_ms >= 0 ? &o->min : NULL,
                               NULL, out);
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static json_t *pct_json(const ops_kpis *k, ops_class c)
{
    return json_pack("{s:o,s:o,s:o}", "p50", ops__num(k->p50_ms[c]), "p95", ops__num(k->p95_ms[c]),
                     "p99", ops__num(k->p99_ms[c]));
}

static const char *const batch_labels[OPS_BATCH_BUCKETS] = {
    "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127", "128-255", "256"};
static const char *const stage_names[OPS_STAGES] = {"decode",      "pdq",   "detect", "landmarks",
                                                    "descriptors", "match", "store"};

static json_t *kpis_json(const ops_kpis *k, double rmin, double rmax)
{
    json_t *dist = json_object();
    for (int i = 0; i < OPS_BATCH_BUCKETS; i++)
        json_object_set_new(dist, batch_labels[i], ops__num(k->batch_size_dist[i]));
    json_t *stages = json_object();
    for (int i = 0; i < OPS_STAGES; i++)
        json_object_set_new(stages, stage_names[i], ops__num(k->stage_ms[i]));
    double live = k->replicas;
    json_t *j = json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o},s:o,s:o,"
        "s:{s:{s:o,s:o,s:o,s:o},s:{s:o,s:o,s:o}},s:{s:o,s:o},s:o,s:o}",
        "window_s", ops__num(k->window_s), "covered_s", ops__num(k->covered_s), "request_rate",
        ops__num(k->request_rate), "analysis_rate", ops__num(k->analysis_rate), "images_per_s",
        ops__num(k->images_per_s), "latency_ms", "analysis", pct_json(k, OPS_CLASS_ANALYSIS), "api",
        pct_json(k, OPS_CLASS_API), "error_rate", ops__num(k->error_rate), "analysis_error_rate",
        ops__num(k->analysis_error_rate), "cache", "hit_rate", "overall",
        ops__num(k->cache_hit_rate[0]), "l1", ops__num(k->cache_hit_rate[1]), "l2",
        ops__num(k->cache_hit_rate[2]), "l3", ops__num(k->cache_hit_rate[3]), "hit_latency_ms",
        "l1", ops__num(k->cache_hit_latency_ms[1]), "l2", ops__num(k->cache_hit_latency_ms[2]),
        "l3", ops__num(k->cache_hit_latency_ms[3]), "batch", "size_mean",
        ops__num(k->batch_size_mean), "size_distribution", dist, "queue_depth",
        ops__num(k->queue_depth), "queue_depth_max", ops__num(k->queue_depth_max));
    if (!j)
        return NULL;
    json_object_set_new(j, "replicas",
                        json_pack("{s:o,s:o,s:o,s:o,s:o}", "current", ops__num(live), "min",
                                  ops__num(rmin), "max", ops__num(rmax), "busy",
                                  ops__num(live * k->replica_utilisation), "utilisation",
                                  ops__num(k->replica_utilisation)));
    json_object_set_new(j, "stage_ms", stages);
    json_object_set_new(j, "cpu_percent", ops__num(k->cpu_percent));
    json_object_set_new(j, "memory_percent", ops__num(k->memory_percent));
    json_object_set_new(j, "rss_bytes", ops__num(k->rss_bytes));
    json_object_set_new(j, "disk_free_bytes", ops__num(k->disk_free_bytes));
    return j;
}

static const char percentile_error[] =
    "Percentiles are nearest-rank over log-bucket histograms (bucket ratio 2^(1/8), 8 us to "
    "137 s) merged exactly across 1-tick and 10-tick slots; each is the bucket's geometric "
    "midpoint, within 4.4% (relative) of the exact percentile of the same requests.";

int ops_performance_json(ops *o, int64_t now_ms, json_t **out)
{
    *out = NULL;
    json_t *t = json_array(), *rate = json_array(), *ap95 = json_array(), *pp95 = json_array(),
           *err = json_array(), *hit = json_array(), *ips = json_array(), *qd = json_array(),
           *rep = json_array(), *cpu = json_array(), *rss = json_array();
    pthread_mutex_lock(&o->mu);
    json_t *windows = json_pack("{s:o,s:o,s:o}", "1m", kpis_json(&o->k1, o->rmin[0], o->rmax[0]),
                                "5m", kpis_json(&o->k5, o->rmin[1], o->rmax[1]), "1h",
                                kpis_json(&o->k1h, o->rmin[2], o->rmax[2]));
    uint64_t n = o->n_coarse < o->n1h ? o->n_coarse : o->n1h;
    ops_kpis k;
    for (uint64_t i = n; i >= 1; i--) {
        const ops__agg *a = &o->coarse[(o->n_coarse - i) % OPS_COARSE_SLOTS];
        kpis_from(o, a, a->queue_max, OPS_COARSE_TICKS * o->tick_ops_s, &k);
        json_array_append_new(t, json_integer(a->end_ms));
        json_array_append_new(rate, ops__num(k.request_rate));
        json_array_append_new(ap95, ops__num(k.p95_ms[OPS_CLASS_ANALYSIS]));
        json_array_append_new(pp95, ops__num(k.p95_ms[OPS_CLASS_API]));
        json_array_append_new(err, ops__num(k.error_rate));
        json_array_append_new(hit, ops__num(k.cache_hit_rate[0]));
        json_array_append_new(ips, ops__num(k.images_per_s));
        json_array_append_new(qd, ops__num(k.queue_depth));
        json_array_append_new(rep, ops__num(k.replicas));
        json_array_append_new(cpu, ops__num(k.cpu_percent));
        json_array_append_new(rss, ops__num(k.rss_bytes));
    }
    double slot_s = OPS_COARSE_TICKS * o->tick_ops_s;
    pthread_mutex_unlock(&o->mu);
    json_t *series =
        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "slot_s", ops__num(slot_s),
                  "t", t, "request_rate", rate, "analysis_p95_ms", ap95, "api_p95_ms", pp95,
                  "error_rate", err, "cache_hit_rate", hit, "images_per_s", ips, "queue_depth", qd,
                  "replicas", rep, "cpu_percent", cpu, "rss_bytes", rss);
    json_t *j = json_pack("{s:o,s:o,s:o,s:o,s:o,s:s}", "generated_at", ops__time(now_ms),
                          "time_scale", ops__num(o->scale), "uptime_s",
                          ops__num((double)(now_ms - o->started_ms) / 1000.0), "windows", windows,
                          "series", series, "percentile_error", percentile_error);
    if (!j)
        return VG_ENOMEM;
    *out = j;
    return VG_OK;
}

int ops_sla_json(ops *o, int64_t now_ms, json_t **out)
{
    pthread_mutex_lock(&o->mu);
    int rc = ops_sla_render(o->sla, now_ms, o->min.t_ms >= 0 ? &o->min : NULL, out);
    pthread_mutex_unlock(&o->mu);
    return rc;
}
