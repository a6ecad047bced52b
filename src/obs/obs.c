/* obs: the metrics registry, lock-free updates and the two renderers. See obs.h.
 *
 * Layout of a series' values: counters and histograms keep `shards` copies of their cells, one
 * stride (a multiple of 64 bytes) apart, so that threads on different CPUs add to different
 * cache lines; a reader sums the shards. With one shard (the default on <= 2 CPUs) every
 * update is one relaxed atomic add on a shared line. Cells are 64-bit atomics: a counter has one
 * (the count); a histogram has n_bounds + 1 bucket counts (the last for +Inf, not cumulative) and
 * the bits of its double sum. A gauge has a single double (as bits), set or CAS-added.
 *
 * Series lookup: an open-addressing table of atomic series pointers, sized at registration to
 * twice max_series so it never fills or grows; entries are only ever added (with a release
 * store, under the metric's mutex) and readers probe with acquire loads, so lookups take no
 * lock. The overflow series lives outside the table.
 */
#include "obs/obs.h"
#include "obs/obs_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64
#define MAX_SHARDS 64
#define MAX_SERIES_LIMIT ((size_t)1 << 20)

const double obs_latency_buckets[] = {OBS_LATENCY_BUCKETS};
const size_t obs_latency_buckets_len = VG_ARRAY_LEN(obs_latency_buckets);

struct obs_series {
    obs_metric *m;
    uint32_t hash;
    char *values[OBS_MAX_LABELS]; /* point into the same allocation, after the struct */
    _Atomic uint64_t gauge;       /* gauge value as double bits */
    _Atomic uint64_t *cells;      /* counters/histograms: shards * stride bytes, aligned */
};

struct obs_metric {
    obs_registry *reg;
    obs_type type;
    int internal; /* rendered after the user's metrics */
    char name[OBS_NAME_MAX_BYTES];
    char *help;
    size_t n_labels;
    char label_names[OBS_MAX_LABELS][OBS_NAME_MAX_BYTES];
    double *bounds;
    size_t n_bounds;
    size_t n_cells;      /* per shard */
    size_t stride_cells; /* per shard, rounded to whole cache lines */
    pthread_mutex_t mu;  /* series creation */
    _Atomic(obs_series *) *table;
    size_t table_mask;
    size_t n_series; /* under mu */
    _Atomic(obs_series *) overflow;
    obs_series *single; /* the only series of a metric without labels */
};

typedef struct collector {
    obs_collect_fn fn;
    void *ctx;
} collector;

struct obs_registry {
    size_t max_series;
    unsigned shards; /* power of two */
    int process_metrics;
    pthread_mutex_t mu;        /* metrics and collectors lists */
    pthread_mutex_t render_mu; /* one render (and collector run) at a time */
    obs_metric **metrics;
    size_t n_metrics, cap_metrics;
    collector *collectors;
    size_t n_collectors, cap_collectors;
    obs_metric *misuse;   /* vigil_obs_misuse_total */
    obs_metric *overflow; /* vigil_obs_series_overflow_total{metric} */
};

/* ---- helpers -------------------------------------------------------------------------------- */

static inline double bits_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline uint64_t double_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static inline void atomic_add_double(_Atomic uint64_t *cell, double v)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(cell, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static inline unsigned shard_of(const obs_registry *r)
{
    if (r->shards == 1)
        return 0;
    int cpu = sched_getcpu(); /* glibc reads it from rseq: no system call */
    return cpu < 0 ? 0 : (unsigned)cpu & (r->shards - 1);
}

static void misuse(obs_registry *r)
{
    if (r && r->misuse)
        obs_series_inc(r->misuse->single);
}

static uint32_t hash_values(const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        for (const char *s = values[i]; *s; s++) {
            h ^= (uint8_t)*s;
            h *= 16777619u;
        }
        h ^= 0xff; /* separator: ("ab","c") != ("a","bc") */
        h *= 16777619u;
    }
    return h;
}

static int valid_name(const char *s, int metric)
{
    if (!s || !*s || strlen(s) >= OBS_NAME_MAX_BYTES)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* ---- registry ------------------------------------------------------------------------------- */

static int metric_register(obs_registry *r, obs_type type, const char *name, const char *help,
                           const char *labels, const double *bounds, size_t n_bounds, int internal,
                           obs_metric **out);

int obs_registry_new(const obs_config *cfg, obs_registry **out)
{
    obs_config c = cfg ? *cfg : (obs_config){0};
    size_t max_series = c.max_series ? c.max_series : OBS_MAX_SERIES_DEFAULT;
    if (max_series > MAX_SERIES_LIMIT)
        return vg_err_set(VG_EINVAL, "max_series %zu > %zu", max_series, MAX_SERIES_LIMIT);
    unsigned shards = c.shards;
    if (shards == 0) {
        /* Measured on the 2-vCPU target (bench/results/index.md): two threads hitting one
         * atomic cost ~1 ns/op more than separate lines, while picking a shard costs ~2 ns, so
         * small hosts use one atomic. Larger hosts, where a contended line costs tens of ns
         * per update, get one shard per CPU. */
        int ncpu = vg_cpu_count();
        shards = ncpu <= 2 ? 1 : (unsigned)VG_MIN(ncpu, MAX_SHARDS);
    }
    if (shards > MAX_SHARDS)
        return vg_err_set(VG_EINVAL, "shards %u > %d", shards, MAX_SHARDS);
    unsigned p2 = 1;
    while (p2 < shards)
        p2 *= 2;

    obs_registry *r = vg_calloc(1, sizeof *r);
    if (!r)
        return vg_err_set(VG_ENOMEM, "metrics registry");
    r->max_series = max_series;
    r->shards = p2;
    r->process_metrics = !c.no_process_metrics;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->render_mu, NULL);
    int rc = metric_register(r, OBS_COUNTER, "vigil_obs_misuse_total",
                             "Metric updates dropped: wrong type, wrong label count, bad value.",
                             NULL, NULL, 0, 1, &r->misuse);
    if (!rc)
        rc = metric_register(r, OBS_COUNTER, "vigil_obs_series_overflow_total",
                             "Updates sent to the __overflow__ series because the metric "
                             "already had max_series label combinations.",
                             "metric", NULL, 0, 1, &r->overflow);
    if (rc) {
        obs_registry_free(r);
        return rc;
    }
    *out = r;
    return VG_OK;
}

static void series_free(obs_series *s)
{
    if (!s)
        return;
    vg_free(s->cells);
    vg_free(s);
}

static void metric_free(obs_metric *m)
{
    if (!m)
        return;
    if (m->table)
        for (size_t i = 0; i <= m->table_mask; i++)
            series_free(atomic_load(&m->table[i]));
    series_free(atomic_load(&m->overflow));
    series_free(m->single);
    vg_free((void *)m->table);
    vg_free(m->bounds);
    vg_free(m->help);
    pthread_mutex_destroy(&m->mu);
    vg_free(m);
}

void obs_registry_free(obs_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_metrics; i++)
        metric_free(r->metrics[i]);
    vg_free(r->metrics);
    vg_free(r->collectors);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->render_mu);
    vg_free(r);
}

/* A series with its values copied behind the struct and its cells allocated. */
static obs_series *series_new(obs_metric *m, const char *const *values, uint32_t hash)
{
    size_t len = sizeof(obs_series);
    for (size_t i = 0; i < m->n_labels; i++)
        len += strlen(values[i]) + 1;
    obs_series *s = vg_calloc(1, len);
    if (!s)
        return NULL;
    s->m = m;
    s->hash = hash;
    char *p = (char *)(s + 1);
    for (size_t i = 0; i < m->n_labels; i++) {
        size_t n = strlen(values[i]) + 1;
        memcpy(p, values[i], n);
        s->values[i] = p;
        p += n;
    }
    if (m->type != OBS_GAUGE) {
        size_t bytes = m->stride_cells * sizeof(uint64_t) * m->reg->shards;
        s->cells = vg_aligned_alloc(CACHE_LINE, bytes);
        if (!s->cells) {
            vg_free(s);
            return NULL;
        }
        memset((void *)s->cells, 0, bytes);
    }
    return s;
}

static int same_definition(const obs_metric *m, obs_type type, size_t n_labels,
                           char names[][OBS_NAME_MAX_BYTES], const double *bounds, size_t n_bounds)
{
    if (m->type != type || m->n_labels != n_labels || m->n_bounds != n_bounds)
        return 0;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(m->label_names[i], names[i]))
            return 0;
    for (size_t i = 0; i < n_bounds; i++)
        if (m->bounds[i] != bounds[i])
            return 0;
    return 1;
}

static int parse_labels(const char *labels, obs_type type, char names[][OBS_NAME_MAX_BYTES],
                        size_t *n_out)
{
    size_t n = 0;
    if (labels && *labels) {
        const char *p = labels;
        for (;;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (n == OBS_MAX_LABELS)
                return vg_err_set(VG_EINVAL, "more than %d labels", OBS_MAX_LABELS);
            if (len == 0 || len >= OBS_NAME_MAX_BYTES)
                return vg_err_set(VG_EINVAL, "bad label list \"%s\"", labels);
            memcpy(names[n], p, len);
            names[n][len] = '\0';
            if (!valid_name(names[n], 0) || !strncmp(names[n], "__", 2) ||
                (type == OBS_HISTOGRAM && !strcmp(names[n], "le")))
                return vg_err_set(VG_EINVAL, "bad label name \"%s\"", names[n]);
            for (size_t i = 0; i < n; i++)
                if (!strcmp(names[i], names[n]))
                    return vg_err_set(VG_EINVAL, "label \"%s\" twice", names[n]);
            n++;
            if (!e)
                break;
            p = e + 1;
        }
    }
    *n_out = n;
    return VG_OK;
}

static int metric_register(obs_registry *r, obs_type type, const char *name, const char *help,
                           const char *labels, const double *bounds, size_t n_bounds, int internal,
                           obs_metric **out)
{
    if (!r || !out)
        return vg_err_set(VG_EINVAL, "no registry");
    if (!valid_name(name, 1))
        return vg_err_set(VG_EINVAL, "bad metric name \"%s\"", name ? name : "(null)");
    if (help && strlen(help) >= OBS_HELP_MAX_BYTES)
        return vg_err_set(VG_EINVAL, "help of %s longer than %d bytes", name,
                          OBS_HELP_MAX_BYTES - 1);
    char names[OBS_MAX_LABELS][OBS_NAME_MAX_BYTES];
    size_t n_labels = 0;
    int rc = parse_labels(labels, type, names, &n_labels);
    if (rc)
        return rc;
    if (type == OBS_HISTOGRAM) {
        if (!bounds) {
            bounds = obs_latency_buckets;
            n_bounds = obs_latency_buckets_len;
        }
        if (n_bounds < 1 || n_bounds > OBS_MAX_BUCKETS)
            return vg_err_set(VG_EINVAL, "%s: %zu buckets (1..%d)", name, n_bounds,
                              OBS_MAX_BUCKETS);
        for (size_t i = 0; i < n_bounds; i++)
            if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
                return vg_err_set(VG_EINVAL, "%s: buckets must be finite and increasing", name);
    } else {
        bounds = NULL;
        n_bounds = 0;
    }

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_metrics; i++) {
        obs_metric *m = r->metrics[i];
        if (strcmp(m->name, name))
            continue;
        if (same_definition(m, type, n_labels, names, bounds, n_bounds)) {
            *out = m;
            rc = VG_OK;
        } else {
            rc = vg_err_set(VG_EEXIST, "metric %s already registered differently", name);
        }
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    rc = VG_ENOMEM;
    obs_metric *m = vg_calloc(1, sizeof *m);
    if (!m)
        goto fail;
    pthread_mutex_init(&m->mu, NULL);
    m->reg = r;
    m->type = type;
    m->internal = internal;
    strcpy(m->name, name);
    m->help = vg_malloc(help ? strlen(help) + 1 : 1);
    if (!m->help)
        goto fail;
    obs__utf8_clean(help ? help : "", m->help, help ? strlen(help) + 1 : 1);
    m->n_labels = n_labels;
    memcpy(m->label_names, names, sizeof names);
    if (n_bounds) {
        m->bounds = vg_malloc(n_bounds * sizeof(double));
        if (!m->bounds)
            goto fail;
        memcpy(m->bounds, bounds, n_bounds * sizeof(double));
        m->n_bounds = n_bounds;
    }
    m->n_cells = type == OBS_HISTOGRAM ? n_bounds + 2 : 1;
    size_t per_line = CACHE_LINE / sizeof(uint64_t);
    m->stride_cells = (m->n_cells + per_line - 1) / per_line * per_line;
    if (n_labels) {
        size_t cap = 16;
        while (cap < 2 * (r->max_series + 1))
            cap *= 2;
        m->table = vg_calloc(cap, sizeof *m->table);
        if (!m->table)
            goto fail;
        m->table_mask = cap - 1;
    } else {
        m->single = series_new(m, NULL, 0);
        if (!m->single)
            goto fail;
    }
    if (r->n_metrics == r->cap_metrics) {
        size_t cap = r->cap_metrics ? r->cap_metrics * 2 : 32;
        obs_metric **v = vg_realloc(r->metrics, cap * sizeof *v);
        if (!v)
            goto fail;
        r->metrics = v;
        r->cap_metrics = cap;
    }
    r->metrics[r->n_metrics++] = m;
    pthread_mutex_unlock(&r->mu);
    *out = m;
    return VG_OK;
fail:
    pthread_mutex_unlock(&r->mu);
    metric_free(m);
    return vg_err_set(rc, "registering %s", name);
}

int obs_counter_register(obs_registry *r, const char *name, const char *help, const char *labels,
                         obs_metric **out)
{
    return metric_register(r, OBS_COUNTER, name, help, labels, NULL, 0, 0, out);
}

int obs_gauge_register(obs_registry *r, const char *name, const char *help, const char *labels,
                       obs_metric **out)
{
    return metric_register(r, OBS_GAUGE, name, help, labels, NULL, 0, 0, out);
}

int obs_histogram_register(obs_registry *r, const char *name, const char *help, const char *labels,
                           const double *buckets, size_t n_buckets, obs_metric **out)
{
    return metric_register(r, OBS_HISTOGRAM, name, help, labels, buckets, n_buckets, 0, out);
}

int obs_collector_add(obs_registry *r, obs_collect_fn fn, void *ctx)
{
    if (!r || !fn)
        return vg_err_set(VG_EINVAL, "no collector");
    int rc = VG_OK;
    pthread_mutex_lock(&r->mu);
    if (r->n_collectors == r->cap_collectors) {
        size_t cap = r->cap_collectors ? r->cap_collectors * 2 : 8;
        collector *v = vg_realloc(r->collectors, cap * sizeof *v);
        if (!v) {
            rc = vg_err_set(VG_ENOMEM, "collector list");
            goto done;
        }
        r->collectors = v;
        r->cap_collectors = cap;
    }
    r->collectors[r->n_collectors++] = (collector){fn, ctx};
done:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- series lookup -------------------------------------------------------------------------- */

static int values_equal(const obs_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]))
            return 0;
    return 1;
}

static obs_series *table_find(obs_metric *m, const char *const *values, uint32_t hash)
{
    for (size_t i = hash & m->table_mask;; i = (i + 1) & m->table_mask) {
        obs_series *s = atomic_load_explicit(&m->table[i], memory_order_acquire);
        if (!s)
            return NULL;
        if (s->hash == hash && values_equal(s, values, m->n_labels))
            return s;
    }
}

static obs_series *overflow_series(obs_metric *m)
{
    obs_series *s = atomic_load_explicit(&m->overflow, memory_order_acquire);
    if (s)
        return s;
    const char *vals[OBS_MAX_LABELS];
    for (size_t i = 0; i < m->n_labels; i++)
        vals[i] = OBS_OVERFLOW_VALUE;
    s = series_new(m, vals, 0);
    if (s)
        atomic_store_explicit(&m->overflow, s, memory_order_release);
    return s;
}

/* Slow path, under the metric's mutex: clean the values, look again, create or overflow. */
static obs_series *series_create(obs_metric *m, const char *const *values)
{
    char clean[OBS_MAX_LABELS][OBS_LABEL_VALUE_MAX_BYTES];
    const char *vals[OBS_MAX_LABELS + 1];
    for (size_t i = 0; i < m->n_labels; i++) {
        obs__utf8_clean(values[i], clean[i], sizeof clean[i]);
        vals[i] = clean[i];
    }
    uint32_t hash = hash_values(vals, m->n_labels);
    pthread_mutex_lock(&m->mu);
    obs_series *s = table_find(m, vals, hash);
    int overflowed = 0;
    if (!s) {
        if (m->n_series >= m->reg->max_series) {
            s = overflow_series(m);
            overflowed = 1;
        } else if ((s = series_new(m, vals, hash))) {
            size_t i = hash & m->table_mask;
            while (atomic_load_explicit(&m->table[i], memory_order_relaxed))
                i = (i + 1) & m->table_mask;
            atomic_store_explicit(&m->table[i], s, memory_order_release);
            m->n_series++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    /* Counted outside the mutex. The overflow counter's own overflow is not counted (it would
     * recurse); it still lands in its __overflow__ series. */
    if (overflowed && m != m->reg->overflow)
        obs_inc(m->reg->overflow, OBS_LABELS(m->name));
    return s;
}

static size_t count_values(const char *const *values)
{
    size_t n = 0;
    if (values)
        while (n <= OBS_MAX_LABELS && values[n])
            n++;
    return n;
}

obs_series *obs_series_get(obs_metric *m, const char *const *values)
{
    if (!m)
        return NULL;
    if (!m->n_labels) {
        if (count_values(values)) {
            misuse(m->reg);
            return NULL;
        }
        return m->single;
    }
    if (count_values(values) != m->n_labels) {
        misuse(m->reg);
        return NULL;
    }
    obs_series *s = table_find(m, values, hash_values(values, m->n_labels));
    return s ? s : series_create(m, values);
}

/* ---- updates -------------------------------------------------------------------------------- */

static inline _Atomic uint64_t *shard_cells(obs_series *s)
{
    return s->cells + (size_t)shard_of(s->m->reg) * s->m->stride_cells;
}

void obs_series_add(obs_series *s, uint64_t n)
{
    if (!s)
        return;
    if (s->m->type != OBS_COUNTER) {
        misuse(s->m->reg);
        return;
    }
    atomic_fetch_add_explicit(shard_cells(s), n, memory_order_relaxed);
}

void obs_series_inc(obs_series *s)
{
    obs_series_add(s, 1);
}

void obs_series_set(obs_series *s, double v)
{
    if (!s)
        return;
    if (s->m->type != OBS_GAUGE) {
        misuse(s->m->reg);
        return;
    }
    atomic_store_explicit(&s->gauge, double_bits(v), memory_order_relaxed);
}

void obs_series_gauge_add(obs_series *s, double v)
{
    if (!s)
        return;
    if (s->m->type != OBS_GAUGE) {
        misuse(s->m->reg);
        return;
    }
    atomic_add_double(&s->gauge, v);
}

void obs_series_observe(obs_series *s, double v)
{
    if (!s)
        return;
    const obs_metric *m = s->m;
    if (m->type != OBS_HISTOGRAM || isnan(v)) {
        misuse(m->reg);
        return;
    }
    size_t b = 0;
    if (m->n_bounds <= 16) {
        while (b < m->n_bounds && v > m->bounds[b])
            b++;
    } else {
        size_t lo = 0, hi = m->n_bounds; /* first bound >= v */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v > m->bounds[mid])
                lo = mid + 1;
            else
                hi = mid;
        }
        b = lo;
    }
    _Atomic uint64_t *c = shard_cells(s);
    atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
    atomic_add_double(&c[m->n_bounds + 1], v);
}

void obs_series_histogram_set(obs_series *s, const uint64_t *counts, size_t n, double sum)
{
    if (!s)
        return;
    const obs_metric *m = s->m;
    if (m->type != OBS_HISTOGRAM || !counts || n != m->n_bounds + 1 || isnan(sum)) {
        misuse(m->reg);
        return;
    }
    /* Everything in shard 0, the other shards zero: readers sum the shards. */
    for (unsigned k = 0; k < m->reg->shards; k++) {
        _Atomic uint64_t *c = s->cells + (size_t)k * m->stride_cells;
        for (size_t b = 0; b < n; b++)
            atomic_store_explicit(&c[b], k ? 0 : counts[b], memory_order_relaxed);
        atomic_store_explicit(&c[n], double_bits(k ? 0.0 : sum), memory_order_relaxed);
    }
}

void obs_histogram_set(obs_metric *m, const char *const *values, const uint64_t *counts, size_t n,
                       double sum)
{
    obs_series_histogram_set(obs_series_get(m, values), counts, n, sum);
}

void obs_inc(obs_metric *m, const char *const *values)
{
    obs_series_add(obs_series_get(m, values), 1);
}

void obs_add(obs_metric *m, const char *const *values, uint64_t n)
{
    obs_series_add(obs_series_get(m, values), n);
}

void obs_set(obs_metric *m, const char *const *values, double v)
{
    obs_series_set(obs_series_get(m, values), v);
}

void obs_gauge_add(obs_metric *m, const char *const *values, double v)
{
    obs_series_gauge_add(obs_series_get(m, values), v);
}

void obs_observe(obs_metric *m, const char *const *values, double v)
{
    obs_series_observe(obs_series_get(m, values), v);
}

/* ---- reading -------------------------------------------------------------------------------- */

static uint64_t cell_sum(const obs_series *s, size_t cell)
{
    uint64_t t = 0;
    for (unsigned k = 0; k < s->m->reg->shards; k++)
        t += atomic_load_explicit(&s->cells[k * s->m->stride_cells + cell], memory_order_relaxed);
    return t;
}

static double hist_sum(const obs_series *s)
{
    double t = 0;
    for (unsigned k = 0; k < s->m->reg->shards; k++)
        t += bits_double(atomic_load_explicit(
            &s->cells[k * s->m->stride_cells + s->m->n_bounds + 1], memory_order_relaxed));
    return t;
}

static double series_value(const obs_series *s)
{
    if (s->m->type == OBS_GAUGE)
        return bits_double(atomic_load_explicit(&s->gauge, memory_order_relaxed));
    if (s->m->type == OBS_COUNTER)
        return (double)cell_sum(s, 0);
    uint64_t n = 0;
    for (size_t b = 0; b <= s->m->n_bounds; b++)
        n += cell_sum(s, b);
    return (double)n;
}

double obs_value(obs_metric *m, const char *const *values, double *sum)
{
    if (sum)
        *sum = 0;
    if (!m || count_values(values) != m->n_labels)
        return 0;
    obs_series *s =
        m->n_labels ? table_find(m, values, hash_values(values, m->n_labels)) : m->single;
    if (!s && m->n_labels) {
        int all_overflow = 1;
        for (size_t i = 0; i < m->n_labels; i++)
            all_overflow &= !strcmp(values[i], OBS_OVERFLOW_VALUE);
        if (all_overflow)
            s = atomic_load_explicit(&m->overflow, memory_order_acquire);
    }
    if (!s)
        return 0;
    if (sum && m->type == OBS_HISTOGRAM)
        *sum = hist_sum(s);
    return series_value(s);
}

/* ---- rendering ------------------------------------------------------------------------------ */

/* The registry's metrics, user metrics first, and each metric's series sorted by values. */
typedef struct snapshot {
    obs_metric **metrics;
    size_t n;
} snapshot;

static int snapshot_take(obs_registry *r, snapshot *snap)
{
    pthread_mutex_lock(&r->mu);
    size_t nc = r->n_collectors;
    collector *cs = nc ? vg_malloc(nc * sizeof *cs) : NULL;
    if (cs)
        memcpy(cs, r->collectors, nc * sizeof *cs);
    pthread_mutex_unlock(&r->mu);
    if (nc && !cs)
        return vg_err_set(VG_ENOMEM, "collectors");
    /* Collectors run without r->mu, so they may register metrics themselves. */
    for (size_t i = 0; i < nc; i++)
        cs[i].fn(cs[i].ctx);
    vg_free(cs);

    pthread_mutex_lock(&r->mu);
    snap->n = r->n_metrics;
    snap->metrics = vg_malloc(snap->n * sizeof *snap->metrics);
    if (snap->metrics) {
        size_t k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < r->n_metrics; i++)
                if (r->metrics[i]->internal == pass)
                    snap->metrics[k++] = r->metrics[i];
    }
    pthread_mutex_unlock(&r->mu);
    return snap->metrics ? VG_OK : vg_err_set(VG_ENOMEM, "metrics snapshot");
}

static int series_cmp(const void *a, const void *b)
{
    const obs_series *x = *(obs_series *const *)a, *y = *(obs_series *const *)b;
    for (size_t i = 0; i < x->m->n_labels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c)
            return c;
    }
    return 0;
}

/* The metric's series, sorted (overflow series last). *out owned. */
static int series_list(obs_metric *m, obs_series ***out, size_t *n_out)
{
    if (!m->n_labels) {
        obs_series **v = vg_malloc(sizeof *v);
        if (!v)
            return VG_ENOMEM;
        v[0] = m->single;
        *out = v;
        *n_out = 1;
        return VG_OK;
    }
    pthread_mutex_lock(&m->mu); /* a stable count; creation is rare */
    size_t n = m->n_series + 1;
    obs_series **v = vg_malloc(n * sizeof *v);
    size_t k = 0;
    if (v)
        for (size_t i = 0; i <= m->table_mask && k < m->n_series; i++) {
            obs_series *s = atomic_load_explicit(&m->table[i], memory_order_acquire);
            if (s)
                v[k++] = s;
        }
    pthread_mutex_unlock(&m->mu);
    if (!v)
        return VG_ENOMEM;
    qsort(v, k, sizeof *v, series_cmp);
    obs_series *o = atomic_load_explicit(&m->overflow, memory_order_acquire);
    if (o)
        v[k++] = o;
    *out = v;
    *n_out = k;
    return VG_OK;
}

static const char *type_name(obs_type t)
{
    return t == OBS_COUNTER ? "counter" : t == OBS_GAUGE ? "gauge" : "histogram";
}

static void prom_escape(obs__buf *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : 0;
        if (!rep)
            continue;
        obs__buf_put(b, run, (size_t)(s - run));
        obs__buf_puts(b, rep);
        run = s + 1;
    }
    obs__buf_put(b, run, (size_t)(s - run));
}

/* name{l1="v1",l2="v2"[,le="x"]} */
static void prom_series_name(obs__buf *b, const obs_metric *m, const char *suffix,
                             const obs_series *s, const char *le)
{
    obs__buf_puts(b, m->name);
    obs__buf_puts(b, suffix);
    if (!m->n_labels && !le)
        return;
    obs__buf_put(b, "{", 1);
    for (size_t i = 0; i < m->n_labels; i++) {
        obs__buf_printf(b, "%s%s=\"", i ? "," : "", m->label_names[i]);
        prom_escape(b, s->values[i], 1);
        obs__buf_put(b, "\"", 1);
    }
    if (le)
        obs__buf_printf(b, "%sle=\"%s\"", m->n_labels ? "," : "", le);
    obs__buf_put(b, "}", 1);
}

static void prom_family_header(obs__buf *b, const char *name, const char *help, const char *type)
{
    obs__buf_printf(b, "# HELP %s ", name);
    prom_escape(b, help, 0);
    obs__buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void prom_metric(obs__buf *b, obs_metric *m)
{
    prom_family_header(b, m->name, m->help, type_name(m->type));
    obs_series **ss;
    size_t n;
    if (series_list(m, &ss, &n)) {
        b->oom = 1;
        return;
    }
    char num[32];
    for (size_t i = 0; i < n; i++) {
        const obs_series *s = ss[i];
        if (m->type != OBS_HISTOGRAM) {
            prom_series_name(b, m, "", s, NULL);
            obs__fmt_double(series_value(s), num);
            obs__buf_printf(b, " %s\n", num);
            continue;
        }
        uint64_t cum = 0;
        for (size_t k = 0; k <= m->n_bounds; k++) {
            char le[32];
            if (k < m->n_bounds)
                obs__fmt_double(m->bounds[k], le);
            else
                strcpy(le, "+Inf");
            cum += cell_sum(s, k);
            prom_series_name(b, m, "_bucket", s, le);
            obs__buf_printf(b, " %llu\n", (unsigned long long)cum);
        }
        prom_series_name(b, m, "_sum", s, NULL);
        obs__fmt_double(hist_sum(s), num);
        obs__buf_printf(b, " %s\n", num);
        prom_series_name(b, m, "_count", s, NULL);
        obs__buf_printf(b, " %llu\n", (unsigned long long)cum);
    }
    vg_free(ss);
}

typedef struct proc_metric {
    const char *name, *help, *type;
    double value;
} proc_metric;

static size_t process_metrics(const obs_process *p, proc_metric out[7])
{
    proc_metric v[] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
         p->cpu_seconds},
        {"process_open_fds", "Number of open file descriptors.", "gauge", (double)p->open_fds},
        {"process_max_fds", "Maximum number of open file descriptors.", "gauge",
         (double)p->max_fds},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
         (double)p->resident_bytes},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
         (double)p->virtual_bytes},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         "gauge", p->start_time_seconds},
        {"process_threads", "Number of OS threads in the process.", "gauge", (double)p->threads},
    };
    memcpy(out, v, sizeof v);
    return VG_ARRAY_LEN(v);
}

int obs_render_prometheus(obs_registry *r, char **out, size_t *out_len)
{
    pthread_mutex_lock(&r->render_mu);
    snapshot snap;
    int rc = snapshot_take(r, &snap);
    if (rc) {
        pthread_mutex_unlock(&r->render_mu);
        return rc;
    }
    obs__buf b = {0};
    for (size_t i = 0; i < snap.n; i++)
        prom_metric(&b, snap.metrics[i]);
    vg_free(snap.metrics);
    obs_process p;
    if (r->process_metrics && obs_process_read(&p) == VG_OK) {
        proc_metric pm[7];
        size_t n = process_metrics(&p, pm);
        char num[32];
        for (size_t i = 0; i < n; i++) {
            prom_family_header(&b, pm[i].name, pm[i].help, pm[i].type);
            obs__fmt_double(pm[i].value, num);
            obs__buf_printf(&b, "%s %s\n", pm[i].name, num);
        }
    }
    pthread_mutex_unlock(&r->render_mu);
    return obs__buf_finish(&b, out, out_len);
}

static void json_labels(obs__buf *b, const obs_metric *m, const obs_series *s)
{
    obs__buf_puts(b, "{\"labels\":{");
    for (size_t i = 0; i < m->n_labels; i++) {
        if (i)
            obs__buf_put(b, ",", 1);
        obs__buf_json_str(b, m->label_names[i]);
        obs__buf_put(b, ":", 1);
        obs__buf_json_str(b, s->values[i]);
    }
    obs__buf_put(b, "}", 1);
}

static void json_metric(obs__buf *b, obs_metric *m)
{
    obs__buf_puts(b, "{\"name\":");
    obs__buf_json_str(b, m->name);
    obs__buf_printf(b, ",\"type\":\"%s\",\"help\":", type_name(m->type));
    obs__buf_json_str(b, m->help);
    obs__buf_puts(b, ",\"labels\":[");
    for (size_t i = 0; i < m->n_labels; i++) {
        if (i)
            obs__buf_put(b, ",", 1);
        obs__buf_json_str(b, m->label_names[i]);
    }
    obs__buf_put(b, "]", 1);
    if (m->type == OBS_HISTOGRAM) {
        obs__buf_puts(b, ",\"buckets\":[");
        for (size_t k = 0; k < m->n_bounds; k++) {
            if (k)
                obs__buf_put(b, ",", 1);
            obs__buf_json_num(b, m->bounds[k]);
        }
        obs__buf_put(b, "]", 1);
    }
    obs__buf_puts(b, ",\"series\":[");
    obs_series **ss;
    size_t n;
    if (series_list(m, &ss, &n)) {
        b->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const obs_series *s = ss[i];
        if (i)
            obs__buf_put(b, ",", 1);
        json_labels(b, m, s);
        if (m->type != OBS_HISTOGRAM) {
            obs__buf_puts(b, ",\"value\":");
            obs__buf_json_num(b, series_value(s));
            obs__buf_put(b, "}", 1);
            continue;
        }
        obs__buf_puts(b, ",\"counts\":[");
        uint64_t cum = 0;
        for (size_t k = 0; k <= m->n_bounds; k++) {
            cum += cell_sum(s, k);
            obs__buf_printf(b, "%s%llu", k ? "," : "", (unsigned long long)cum);
        }
        obs__buf_printf(b, "],\"count\":%llu,\"sum\":", (unsigned long long)cum);
        obs__buf_json_num(b, hist_sum(s));
        obs__buf_put(b, "}", 1);
    }
    vg_free(ss);
    obs__buf_puts(b, "]}");
}

int obs_render_json(obs_registry *r, char **out, size_t *out_len)
{
    pthread_mutex_lock(&r->render_mu);
    snapshot snap;
    int rc = snapshot_take(r, &snap);
    if (rc) {
        pthread_mutex_unlock(&r->render_mu);
        return rc;
    }
    obs__buf b = {0};
    obs__buf_printf(&b, "{\"time_ms\":%lld,\"metrics\":[", (long long)vg_wall_ms());
    for (size_t i = 0; i < snap.n; i++) {
        if (i)
            obs__buf_put(&b, ",", 1);
        json_metric(&b, snap.metrics[i]);
    }
    vg_free(snap.metrics);
    obs__buf_put(&b, "]", 1);
    obs_process p;
    if (r->process_metrics && obs_process_read(&p) == VG_OK) {
        proc_metric pm[7];
        size_t n = process_metrics(&p, pm);
        obs__buf_puts(&b, ",\"process\":{");
        for (size_t i = 0; i < n; i++) {
            /* Keys are the Prometheus names without "process_" ("resident_memory_bytes"). */
            obs__buf_printf(&b, "%s\"%s\":", i ? "," : "", pm[i].name + strlen("process_"));
            obs__buf_json_num(&b, pm[i].value);
        }
        obs__buf_put(&b, "}", 1);
    }
    obs__buf_put(&b, "}", 1);
    pthread_mutex_unlock(&r->render_mu);
    return obs__buf_finish(&b, out, out_len);
}
