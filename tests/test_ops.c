/* ops: log buckets and the percentile bound, windows and slot roll-over on a synthetic clock,
 * NAN without data, SLIs, and the SLA: minutes persisted, the 30-day window kept across a
 * restart, downtime after a clean stop and after a crash (a child that exits without closing),
 * violations and burn-rate arithmetic. No timing assertions: every clock here is synthetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "ops/ops.h"
#include "ops/ops_sla.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC 1000000000ull
#define MIN_MS 60000

static uint64_t rng = 88172645463325252ull;
static uint64_t xs(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static ops *new_ops(void)
{
    ops_config c = {.time_scale = 1, .memory_limit_bytes = 1ull << 30};
    ops *o;
    assert_int_equal(ops_new(&c, &o), VG_OK);
    return o;
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/test_ops.XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_all(char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

/* ---- buckets -------------------------------------------------------------------------------- */

static void test_bucket_bound(void **state)
{
    (void)state;
    uint64_t counts[OPS_LAT_BUCKETS];
    unsigned prev = 0;
    for (uint64_t ns = 8192; ns < 100 * SEC; ns = ns * 1009 / 1000 + 1) {
        unsigned b = ops_lat_bucket(ns);
        assert_true(b >= prev); /* monotonic */
        prev = b;
        memset(counts, 0, sizeof counts);
        counts[b] = 1;
        double est = ops_lat_quantile_ms(counts, 0.5) * 1e6;
        assert_true(fabs(est - (double)ns) / (double)ns <= OPS_PERCENTILE_REL_ERROR + 1e-9);
    }
    assert_int_equal(ops_lat_bucket(0), 0);
    assert_int_equal(ops_lat_bucket(UINT64_MAX), OPS_LAT_BUCKETS - 1);
    memset(counts, 0, sizeof counts);
    assert_true(isnan(ops_lat_quantile_ms(counts, 0.95)));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double exact_ms(uint64_t *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t rank = (size_t)ceil(q * (double)n);
    return (double)v[rank ? rank - 1 : 0] / 1e6;
}

/* Percentiles of a window merged from many slots against the exact nearest-rank percentiles. */
static void test_percentile_merge(void **state)
{
    (void)state;
    ops *o = new_ops();
    enum { TICKS = 50, PER = 97 };
    static uint64_t v[TICKS * PER];
    size_t n = 0;
    uint64_t t = 1000 * SEC;
    int64_t w = 1700000000000;
    ops_tick(o, t, w);
    for (int k = 0; k < TICKS; k++) {
        for (int i = 0; i < PER; i++) {
            /* log-uniform 50 us .. 5 s */
            double e = log(50e3) + (double)(xs() % 1000000) / 1e6 * (log(5e9) - log(50e3));
            uint64_t ns = (uint64_t)exp(e);
            v[n++] = ns;
            ops_record_request(o, OPS_CLASS_API, 200, ns);
        }
        t += SEC;
        w += 1000;
        ops_tick(o, t, w);
    }
    t += SEC;
    ops_tick(o, t, w + 1000); /* the last slot is harvested one tick later */
    ops_kpis k1, k5, k1h;
    ops_kpis_get(o, &k1, &k5, &k1h);
    const double qs[3] = {0.5, 0.95, 0.99};
    const double got5[3] = {k5.p50_ms[OPS_CLASS_API], k5.p95_ms[OPS_CLASS_API],
                            k5.p99_ms[OPS_CLASS_API]};
    const double got1h[3] = {k1h.p50_ms[OPS_CLASS_API], k1h.p95_ms[OPS_CLASS_API],
                             k1h.p99_ms[OPS_CLASS_API]};
    for (int i = 0; i < 3; i++) {
        double ex = exact_ms(v, n, qs[i]);
        assert_true(fabs(got5[i] - ex) / ex <= OPS_PERCENTILE_REL_ERROR + 1e-9);
        assert_true(fabs(got1h[i] - ex) / ex <= OPS_PERCENTILE_REL_ERROR + 1e-9);
    }
    assert_true(isnan(k5.p95_ms[OPS_CLASS_ANALYSIS])); /* no analysis requests */
    ops_free(o);
}

/* ---- windows -------------------------------------------------------------------------------- */

static void test_nan_without_data(void **state)
{
    (void)state;
    ops *o = new_ops();
    uint64_t t = 5 * SEC;
    for (int i = 0; i < 5; i++, t += SEC)
        ops_tick(o, t, 1700000000000 + i * 1000);
    ops_kpis k1;
    ops_kpis_get(o, &k1, NULL, NULL);
    assert_true(k1.covered_s > 0);
    assert_true(k1.request_rate == 0);
    assert_true(isnan(k1.error_rate));
    assert_true(isnan(k1.analysis_error_rate));
    assert_true(isnan(k1.p95_ms[OPS_CLASS_API]));
    assert_true(isnan(k1.cache_hit_rate[0])); /* no sampler */
    assert_true(isnan(k1.queue_depth));
    assert_true(isnan(k1.batch_size_mean));
    assert_true(isnan(k1.stage_ms[OPS_STAGE_DECODE]));
    assert_true(k1.memory_percent >= 0); /* the process is always there */
    double r;
    assert_int_equal(ops_sli_bad_ratio(o, OPS_SLO_API_LATENCY, 300, 1700000005000, &r),
                     VG_ENOTFOUND);
    ops_free(o);
}

/* One request per tick for 100 ticks: the 1 min window holds the newest 60, 5 min all of them;
 * rates are per real second of covered data. */
static void test_slot_rollover(void **state)
{
    (void)state;
    ops *o = new_ops();
    uint64_t t = 10 * SEC;
    int64_t w = 1700000000000;
    ops_tick(o, t, w);
    for (int i = 0; i < 100; i++) {
        ops_record_request(o, OPS_CLASS_API, i < 30 ? 503 : 200, 1000000);
        ops_record_analysis(o, i % 2, 1, (const uint64_t[OPS_STAGES]){[OPS_STAGE_DECODE] = 4000000},
                            OPS_TIER_MISS);
        t += SEC;
        w += 1000;
        ops_tick(o, t, w);
    }
    ops_tick(o, t + SEC, w + 1000);
    ops_kpis k1, k5, k1h;
    ops_kpis_get(o, &k1, &k5, &k1h);
    assert_true(fabs(k1.covered_s - 60) < 1e-9);
    assert_true(fabs(k1.request_rate - 1.0) < 1e-9);
    assert_true(fabs(k1.error_rate - 0.0) < 1e-9); /* the 5xx were the first 30 */
    assert_true(fabs(k5.covered_s - 101) < 1e-9);  /* + the slot before the first tick */
    assert_true(fabs(k5.error_rate - 0.3) < 1e-9);
    assert_true(fabs(k1h.error_rate - 0.3) < 1e-9);
    assert_true(fabs(k5.analysis_error_rate - 0.5) < 1e-9);
    assert_true(fabs(k5.stage_ms[OPS_STAGE_DECODE] - 4.0) < 1e-9); /* ok images only */
    assert_true(fabs(k5.images_per_s - 100.0 / 101.0) < 1e-9);
    double r;
    assert_int_equal(ops_sli_bad_ratio(o, OPS_SLO_ERROR_RATE, 300, w, &r), VG_OK);
    /* errors: 30 5xx + 50 failed images; events: 100 answers + 100 images */
    assert_true(fabs(r - 80.0 / 200.0) < 1e-9);
    ops_free(o);
}

static void sample_fn(void *ctx, ops_sample *s)
{
    uint64_t *n = ctx;
    (*n)++;
    s->cache_hits[0] = s->cache_hits[1] = 3 * *n;
    s->cache_misses[0] = s->cache_misses[1] = *n;
    s->cache_lat_count[1] = 4 * *n;
    s->cache_lat_sum_ns[1] = 4000 * *n;
    s->batches = *n;
    s->batch_images = 4 * *n;
    s->batch_dist[2] = *n;
    s->queue_depth = *n % 2 ? 6 : 2;
    s->replicas = 2;
    s->replicas_busy = 1;
}

static void test_sampler(void **state)
{
    (void)state;
    uint64_t n = 0;
    ops_config c = {.time_scale = 1, .sample = sample_fn, .sample_ctx = &n};
    ops *o;
    assert_int_equal(ops_new(&c, &o), VG_OK);
    for (int i = 0; i < 20; i++)
        ops_tick(o, (uint64_t)(i + 1) * SEC, 1700000000000 + i * 1000);
    ops_kpis k1;
    ops_kpis_get(o, &k1, NULL, NULL);
    assert_true(fabs(k1.cache_hit_rate[0] - 0.75) < 1e-9);
    assert_true(fabs(k1.cache_hit_latency_ms[1] - 0.001) < 1e-12);
    assert_true(fabs(k1.batch_size_mean - 4) < 1e-9);
    assert_true(fabs(k1.batch_size_dist[2] - 1) < 1e-9);
    assert_true(fabs(k1.queue_depth_max - 6) < 1e-9);
    assert_true(k1.queue_depth > 2 && k1.queue_depth < 6);
    assert_true(fabs(k1.replica_utilisation - 0.5) < 1e-9);
    ops_free(o);
}

/* ---- SLA ------------------------------------------------------------------------------------ */

static ops_sla *sla_open(const char *dir, int64_t now)
{
    ops_sla_config c = {.dir = dir, .time_scale = 1, .now_ms = now};
    c.target[OPS_SLO_AVAILABILITY] = 0.999;
    c.target[OPS_SLO_ANALYSIS_LATENCY] = c.target[OPS_SLO_API_LATENCY] = 0.95;
    c.target[OPS_SLO_ERROR_RATE] = 0.99;
    c.threshold_ms[OPS_SLO_ANALYSIS_LATENCY] = 2000;
    c.threshold_ms[OPS_SLO_API_LATENCY] = 500;
    ops_sla *s;
    assert_int_equal(ops_sla_open(&c, &s), VG_OK);
    return s;
}

static ops_sla_minute minute(int64_t t, uint64_t api, uint64_t api_over, uint64_t e5xx)
{
    ops_sla_minute m = {.t_ms = t,
                        .minute_ms = MIN_MS,
                        .up_ms = MIN_MS,
                        .answers = api,
                        .answers_5xx = e5xx,
                        .api_n = api,
                        .api_over = api_over,
                        .errors = e5xx,
                        .analysis_p95_ms = NAN,
                        .api_p95_ms = 100};
    return m;
}

static json_t *sla_json(ops_sla *s, int64_t now)
{
    json_t *j;
    assert_int_equal(ops_sla_render(s, now, NULL, &j), VG_OK);
    return j;
}

static double jnum(json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = j;
    for (char *save, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    assert_non_null(cur);
    return json_is_null(cur) ? NAN : json_number_value(cur);
}

/* Ten minutes, a clean stop, five minutes down, a restart: the minutes come back from the file,
 * the gap is downtime and the restart is counted. */
static void test_sla_persist_and_clean_restart(void **state)
{
    (void)state;
    char *d = tmpdir();
    const int64_t T = 1700000040000 - 1700000040000 % MIN_MS;
    ops_sla *s = sla_open(d, T);
    for (int i = 0; i < 10; i++) {
        ops_sla_minute m = minute(T + i * MIN_MS, 100, 0, 0);
        assert_int_equal(ops_sla_append(s, &m), VG_OK);
    }
    ops_sla_close(s, T + 10 * MIN_MS);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", d, OPS_SLA_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    int64_t now = T + 15 * MIN_MS;
    s = sla_open(d, now);
    assert_int_equal(ops_sla_downtime_ms(s, T, now), 5 * MIN_MS);
    json_t *j = sla_json(s, now);
    assert_true(fabs(jnum(j, "uptime.downtime_s_30d") - 300) < 1e-9);
    assert_int_equal((int)jnum(j, "uptime.restarts_30d"), 1);
    /* 1000 API answers persisted and reloaded; availability = 10/15 of the time up */
    assert_true(fabs(jnum(j, "windows.1h.api_latency.compliance") - 1) < 1e-12);
    assert_true(fabs(jnum(j, "windows.1h.availability.compliance") - 10.0 / 15.0) < 1e-9);
    json_t *v = json_object_get(
        json_object_get(json_object_get(json_object_get(j, "windows"), "1h"), "availability"),
        "violations");
    assert_int_equal(json_array_size(v), 1);
    json_decref(j);
    double r;
    assert_int_equal(ops_sla_bad_ratio(s, OPS_SLO_API_LATENCY, 3600000, now, NULL, NULL, &r),
                     VG_OK);
    assert_true(r == 0);
    ops_sla_close(s, now);
    rmdir_all(d);
}

/* A process that appends minutes and dies without closing: the restart counts the time from its
 * last heartbeat (the end of its last persisted minute) as downtime. */
static void test_sla_crash_downtime(void **state)
{
    (void)state;
    char *d = tmpdir();
    const int64_t T = 1700000100000 - 1700000100000 % MIN_MS;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ops_sla *s = sla_open(d, T);
        for (int i = 0; i < 3; i++) {
            ops_sla_minute m = minute(T + i * MIN_MS, 10, 0, 0);
            ops_sla_append(s, &m);
        }
        _exit(0); /* kill -9: nothing closed, the fourth minute never flushed */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    int64_t now = T + 7 * MIN_MS + 30000;
    ops_sla *s = sla_open(d, now);
    assert_int_equal(ops_sla_downtime_ms(s, T, now), now - (T + 3 * MIN_MS));
    json_t *j = sla_json(s, now);
    assert_true(fabs(jnum(j, "uptime.downtime_s_30d") - 270) < 1e-9);
    assert_int_equal((int)jnum(j, "uptime.restarts_30d"), 1);
    json_decref(j);
    ops_sla_close(s, now);
    rmdir_all(d);
}

/* Minutes 29 days old stay in the 30-day window across a restart; 30.5 days old leave it, and
 * the file no longer returns what is past the retention (+1 day) at all. */
static void test_sla_keeps_30_days(void **state)
{
    (void)state;
    char *d = tmpdir();
    const int64_t DAY = 86400000;
    const int64_t T = 1700000000000 - 1700000000000 % MIN_MS;
    ops_sla *s = sla_open(d, T);
    ops_sla_minute old = minute(T - 60 * MIN_MS, 100, 100, 0); /* all slow */
    ops_sla_minute mid = minute(T + DAY / 2, 100, 50, 0);      /* half slow */
    ops_sla_minute recent = minute(T + 2 * DAY, 100, 0, 0);    /* fine */
    assert_int_equal(ops_sla_append(s, &old), VG_OK);
    assert_int_equal(ops_sla_append(s, &mid), VG_OK);
    assert_int_equal(ops_sla_append(s, &recent), VG_OK);
    ops_sla_close(s, T + 2 * DAY + MIN_MS);
    int64_t now = T + 31 * DAY;
    s = sla_open(d, now);
    double r;
    /* 30 d: mid (30.5 d old) is out, old (31 d) out; recent only -> nothing slow */
    assert_int_equal(ops_sla_bad_ratio(s, OPS_SLO_API_LATENCY, 30 * DAY, now, NULL, NULL, &r),
                     VG_OK);
    assert_true(r == 0);
    /* 30.6 d reaches mid (loaded: within retention + 1 day) */
    assert_int_equal(
        ops_sla_bad_ratio(s, OPS_SLO_API_LATENCY, 30 * DAY + DAY * 6 / 10, now, NULL, NULL, &r),
        VG_OK);
    assert_true(fabs(r - 0.25) < 1e-9);
    /* 32 d would reach old, but it was not loaded (past retention + 1 day) */
    assert_int_equal(ops_sla_bad_ratio(s, OPS_SLO_API_LATENCY, 32 * DAY, now, NULL, NULL, &r),
                     VG_OK);
    assert_true(fabs(r - 0.25) < 1e-9);
    ops_sla_close(s, now);
    rmdir_all(d);
}

/* Violations, compliance, burn rate and budget by hand. In memory (no directory). */
static void test_sla_arithmetic(void **state)
{
    (void)state;
    const int64_t T = 1700000000000 - 1700000000000 % MIN_MS;
    ops_sla *s = sla_open(NULL, T);
    for (int i = 0; i < 10; i++) {
        ops_sla_minute m = minute(T + i * MIN_MS, 100, i == 3 || i == 4 ? 10 : 0, i == 5 ? 5 : 0);
        if (i == 3)
            m.api_p95_ms = 600;
        if (i == 4)
            m.api_p95_ms = 700;
        assert_int_equal(ops_sla_append(s, &m), VG_OK);
    }
    int64_t now = T + 10 * MIN_MS;
    json_t *j = sla_json(s, now);
    /* API latency: 20 of 1000 over -> 0.98; burn 0.02 / 0.05 */
    assert_true(fabs(jnum(j, "windows.1h.api_latency.compliance") - 0.98) < 1e-9);
    assert_true(fabs(jnum(j, "windows.1h.api_latency.burn_rate") - 0.4) < 1e-9);
    assert_true(fabs(jnum(j, "windows.1h.api_latency.error_budget_remaining") - 0.6) < 1e-9);
    json_t *w = json_object_get(json_object_get(j, "windows"), "1h");
    json_t *v = json_object_get(json_object_get(w, "api_latency"), "violations");
    assert_int_equal(json_array_size(v), 1);
    json_t *v0 = json_array_get(v, 0);
    char buf[32];
    assert_string_equal(json_string_value(json_object_get(v0, "start")),
                        vg_format_time(T + 3 * MIN_MS, buf, sizeof buf));
    assert_string_equal(json_string_value(json_object_get(v0, "end")),
                        vg_format_time(T + 5 * MIN_MS, buf, sizeof buf));
    assert_true(fabs(json_number_value(json_object_get(v0, "worst")) - 700) < 1e-9);
    /* error rate: 5 of 1000 -> 0.995 met, burn 0.5; minute 5 alone (5%) is a violation */
    assert_true(fabs(jnum(j, "windows.1h.error_rate.compliance") - 0.995) < 1e-9);
    assert_true(json_is_true(json_object_get(json_object_get(w, "error_rate"), "met")));
    assert_true(fabs(jnum(j, "windows.1h.error_rate.burn_rate") - 0.5) < 1e-9);
    v = json_object_get(json_object_get(w, "error_rate"), "violations");
    assert_int_equal(json_array_size(v), 1);
    assert_true(fabs(json_number_value(json_object_get(json_array_get(v, 0), "worst")) - 0.05) <
                1e-9);
    /* availability: 0.995 < 0.999, not met, burn 5, budget -4 */
    assert_true(json_is_false(json_object_get(json_object_get(w, "availability"), "met")));
    assert_true(fabs(jnum(j, "windows.1h.availability.burn_rate") - 5) < 1e-9);
    assert_true(fabs(jnum(j, "windows.1h.availability.error_budget_remaining") + 4) < 1e-9);
    /* no analysis answers: null compliance, met */
    assert_true(isnan(jnum(j, "windows.1h.analysis_latency.compliance")));
    json_decref(j);
    /* an ongoing violation has no end */
    ops_sla_minute cur = minute(now, 10, 5, 0);
    assert_int_equal(ops_sla_render(s, now + 30000, &cur, &j), VG_OK);
    w = json_object_get(json_object_get(j, "windows"), "1h");
    v = json_object_get(json_object_get(w, "api_latency"), "violations");
    assert_int_equal(json_array_size(v), 2);
    assert_true(json_is_null(json_object_get(json_array_get(v, 0), "end"))); /* newest first */
    json_decref(j);
    ops_sla_close(s, now);
}

/* The ops object end to end on a synthetic clock: ticks roll SLA minutes into ops.db, and the
 * SLI beyond an hour comes from them. */
static void test_ops_minutes_reach_sla(void **state)
{
    (void)state;
    char *d = tmpdir();
    ops_config c = {.time_scale = 60, .data_dir = d};
    ops *o;
    assert_int_equal(ops_new(&c, &o), VG_OK);
    int64_t w = vg_wall_ms();
    uint64_t t = SEC;
    ops_tick(o, t, w);
    /* 3 real seconds = 3 ops minutes at scale 60; 60 ticks of 1/60 s each */
    for (int i = 0; i < 180; i++) {
        ops_record_request(o, OPS_CLASS_API, i % 10 == 0 ? 500 : 200, 1000000);
        t += SEC / 60;
        ops_tick(o, t, w + (i + 1) * 1000 / 60);
    }
    double r;
    int64_t now = w + 3000;
    assert_int_equal(ops_sli_bad_ratio(o, OPS_SLO_ERROR_RATE, 2 * 3600, now, &r), VG_OK);
    assert_true(r > 0.05 && r < 0.15);
    ops_free(o);
    rmdir_all(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bound),
        cmocka_unit_test(test_percentile_merge),
        cmocka_unit_test(test_nan_without_data),
        cmocka_unit_test(test_slot_rollover),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_sla_persist_and_clean_restart),
        cmocka_unit_test(test_sla_crash_downtime),
        cmocka_unit_test(test_sla_keeps_30_days),
        cmocka_unit_test(test_sla_arithmetic),
        cmocka_unit_test(test_ops_minutes_reach_sla),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
