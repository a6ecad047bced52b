/* obs: exposition format exactness (golden strings), escaping, JSON snapshot, histogram bucket
 * edges, cardinality bound, exact totals under concurrency, misuse, process metrics, health,
 * allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "obs/obs.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static obs_registry *new_reg(size_t max_series, unsigned shards)
{
    obs_config c = {.max_series = max_series, .shards = shards, .no_process_metrics = 1};
    obs_registry *r;
    assert_int_equal(obs_registry_new(&c, &r), VG_OK);
    return r;
}

static char *render(obs_registry *r)
{
    char *text;
    size_t len;
    assert_int_equal(obs_render_prometheus(r, &text, &len), VG_OK);
    assert_int_equal(strlen(text), len);
    return text;
}

static const char internal_tail[] =
    "# HELP vigil_obs_misuse_total Metric updates dropped: wrong type, wrong label count, bad "
    "value.\n"
    "# TYPE vigil_obs_misuse_total counter\n"
    "vigil_obs_misuse_total 0\n"
    "# HELP vigil_obs_series_overflow_total Updates sent to the __overflow__ series because the "
    "metric already had max_series label combinations.\n"
    "# TYPE vigil_obs_series_overflow_total counter\n";

/* ---- exposition format ---------------------------------------------------------------------- */

static void test_prometheus_golden(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_metric *req, *bytes, *stage, *empty;
    assert_int_equal(obs_counter_register(r, "vigil_http_requests_total",
                                          "HTTP requests by route and status.", "route,status",
                                          &req),
                     VG_OK);
    assert_int_equal(
        obs_gauge_register(r, "vigil_index_bytes", "Bytes held by the match index.", NULL, &bytes),
        VG_OK);
    static const double b[] = {0.1, 0.5, 1};
    assert_int_equal(
        obs_histogram_register(r, "vigil_stage_seconds", "Stage durations.", "stage", b, 3, &stage),
        VG_OK);
    assert_int_equal(obs_counter_register(r, "vigil_unused_total", "Never used.", "kind", &empty),
                     VG_OK);
    obs_inc(req, OBS_LABELS("/api/v1/scans", "200"));
    obs_add(req, OBS_LABELS("/api/v1/scans", "200"), 2);
    obs_inc(req, OBS_LABELS("/api/v1/analyze", "422"));
    obs_set(bytes, NULL, 1536);
    /* Dyadic values: the sum is exact whatever shard order it is added in. */
    obs_observe(stage, OBS_LABELS("decode"), 0.0625);
    obs_observe(stage, OBS_LABELS("decode"), 0.5); /* on the bound: le is inclusive */
    obs_observe(stage, OBS_LABELS("decode"), 0.75);
    obs_observe(stage, OBS_LABELS("decode"), 3);
    char *text = render(r);
    char want[4096];
    snprintf(want, sizeof want, "%s%s",
             "# HELP vigil_http_requests_total HTTP requests by route and status.\n"
             "# TYPE vigil_http_requests_total counter\n"
             "vigil_http_requests_total{route=\"/api/v1/analyze\",status=\"422\"} 1\n"
             "vigil_http_requests_total{route=\"/api/v1/scans\",status=\"200\"} 3\n"
             "# HELP vigil_index_bytes Bytes held by the match index.\n"
             "# TYPE vigil_index_bytes gauge\n"
             "vigil_index_bytes 1536\n"
             "# HELP vigil_stage_seconds Stage durations.\n"
             "# TYPE vigil_stage_seconds histogram\n"
             "vigil_stage_seconds_bucket{stage=\"decode\",le=\"0.1\"} 1\n"
             "vigil_stage_seconds_bucket{stage=\"decode\",le=\"0.5\"} 2\n"
             "vigil_stage_seconds_bucket{stage=\"decode\",le=\"1\"} 3\n"
             "vigil_stage_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 4\n"
             "vigil_stage_seconds_sum{stage=\"decode\"} 4.3125\n"
             "vigil_stage_seconds_count{stage=\"decode\"} 4\n"
             "# HELP vigil_unused_total Never used.\n"
             "# TYPE vigil_unused_total counter\n",
             internal_tail);
    assert_string_equal(text, want);
    vg_free(text);
    obs_registry_free(r);
}

static void test_escaping_and_numbers(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 1);
    obs_metric *g, *h;
    assert_int_equal(
        obs_gauge_register(r, "x:ratio", "Back\\slash and\nnewline \"quoted\".", "path", &g),
        VG_OK);
    obs_set(g, OBS_LABELS("a\\b\"c\nd"), 0.1);
    obs_set(g, OBS_LABELS("bad\xff utf8"), -2.5e-7);
    obs_set(g, OBS_LABELS("inf"), INFINITY);
    obs_set(g, OBS_LABELS("nan"), NAN);
    obs_set(g, OBS_LABELS("big"), 1e21);
    obs_set(g, OBS_LABELS("neg"), -3);
    obs_set(g, OBS_LABELS("third"), 1.0 / 3);
    static const double b[] = {1e-05, 2.5};
    assert_int_equal(obs_histogram_register(r, "h", "", NULL, b, 2, &h), VG_OK);
    char *text = render(r);
    const char *want = "# HELP x:ratio Back\\\\slash and\\nnewline \"quoted\".\n"
                       "# TYPE x:ratio gauge\n"
                       "x:ratio{path=\"a\\\\b\\\"c\\nd\"} 0.1\n"
                       "x:ratio{path=\"bad\xef\xbf\xbd utf8\"} -2.5e-07\n"
                       "x:ratio{path=\"big\"} 1e+21\n"
                       "x:ratio{path=\"inf\"} +Inf\n"
                       "x:ratio{path=\"nan\"} NaN\n"
                       "x:ratio{path=\"neg\"} -3\n"
                       "x:ratio{path=\"third\"} 0.3333333333333333\n"
                       "# HELP h \n"
                       "# TYPE h histogram\n"
                       "h_bucket{le=\"1e-05\"} 0\n"
                       "h_bucket{le=\"2.5\"} 0\n"
                       "h_bucket{le=\"+Inf\"} 0\n"
                       "h_sum 0\n"
                       "h_count 0\n";
    assert_memory_equal(text, want, strlen(want));
    vg_free(text);
    obs_registry_free(r);
}

static void test_histogram_bucket_edges(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_metric *h;
    static const double b[] = {-1, 0, 0.25, 1};
    assert_int_equal(obs_histogram_register(r, "edges", "e", NULL, b, 4, &h), VG_OK);
    static const double obs[] = {-5,        -1, -0.5,      0,     1e-300,  0.25,
                                 0.2500001, 1,  1.0000001, 1e300, INFINITY};
    for (size_t i = 0; i < VG_ARRAY_LEN(obs); i++)
        obs_observe(h, NULL, obs[i]);
    obs_observe(h, NULL, NAN); /* dropped, counted as misuse */
    char *text = render(r);
    const char *want = "# HELP edges e\n# TYPE edges histogram\n"
                       "edges_bucket{le=\"-1\"} 2\n"
                       "edges_bucket{le=\"0\"} 4\n"
                       "edges_bucket{le=\"0.25\"} 6\n"
                       "edges_bucket{le=\"1\"} 8\n"
                       "edges_bucket{le=\"+Inf\"} 11\n"
                       "edges_sum +Inf\n"
                       "edges_count 11\n"
                       "# HELP vigil_obs_misuse_total";
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "\nvigil_obs_misuse_total 1\n"));
    vg_free(text);
    double sum;
    assert_float_equal(obs_value(h, NULL, &sum), 11, 0);
    assert_true(isinf(sum));

    /* Many buckets: the binary search path agrees with the definition. */
    double many[40];
    for (int i = 0; i < 40; i++)
        many[i] = i * 0.5;
    obs_metric *m;
    assert_int_equal(obs_histogram_register(r, "many", "m", "k", many, 40, &m), VG_OK);
    for (int i = 0; i <= 80; i++)
        obs_observe(m, OBS_LABELS("x"), i * 0.25);
    json_error_t err;
    char *js;
    assert_int_equal(obs_render_json(r, &js, NULL), VG_OK);
    json_t *root = json_loads(js, 0, &err);
    assert_non_null(root);
    json_t *metrics = json_object_get(root, "metrics"), *mm = NULL;
    for (size_t i = 0; i < json_array_size(metrics); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(metrics, i), "name")), "many"))
            mm = json_array_get(metrics, i);
    assert_non_null(mm);
    json_t *counts = json_object_get(json_array_get(json_object_get(mm, "series"), 0), "counts");
    assert_int_equal(json_array_size(counts), 41);
    for (int k = 0; k < 40; k++) /* values i*0.25 <= k*0.5  <=>  i <= 2k */
        assert_int_equal(json_integer_value(json_array_get(counts, (size_t)k)), 2 * k + 1);
    assert_int_equal(json_integer_value(json_array_get(counts, 40)), 81);
    json_decref(root);
    vg_free(js);
    obs_registry_free(r);
}

/* A histogram a module keeps (set at scrape time) renders the counts given, replaces the previous
 * set (it is not added to it), wins over every shard, and a wrong bucket count is misuse. */
static void test_histogram_set(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 4);
    obs_metric *h;
    static const double b[] = {0.001, 0.01};
    assert_int_equal(obs_histogram_register(r, "kept", "k", "tier", b, 2, &h), VG_OK);
    obs_observe(h, OBS_LABELS("l1"), 0.5); /* overwritten by the set below */
    const uint64_t c1[] = {1, 2, 3};
    obs_histogram_set(h, OBS_LABELS("l1"), c1, 3, 0.25);
    const uint64_t c2[] = {4, 5, 6};
    obs_histogram_set(h, OBS_LABELS("l1"), c2, 3, 1.5);
    obs_histogram_set(h, OBS_LABELS("l1"), c2, 2, 9); /* wrong n: dropped */
    char *text = render(r);
    const char *want = "# HELP kept k\n# TYPE kept histogram\n"
                       "kept_bucket{tier=\"l1\",le=\"0.001\"} 4\n"
                       "kept_bucket{tier=\"l1\",le=\"0.01\"} 9\n"
                       "kept_bucket{tier=\"l1\",le=\"+Inf\"} 15\n"
                       "kept_sum{tier=\"l1\"} 1.5\n"
                       "kept_count{tier=\"l1\"} 15\n";
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "\nvigil_obs_misuse_total 1\n"));
    vg_free(text);
    obs_registry_free(r);
}

static void test_json_snapshot(void **state)
{
    (void)state;
    obs_config c = {0}; /* process metrics on */
    obs_registry *r;
    assert_int_equal(obs_registry_new(&c, &r), VG_OK);
    obs_metric *req, *g, *h;
    assert_int_equal(obs_counter_register(r, "req_total", "Requests \"quoted\"", "route", &req),
                     VG_OK);
    assert_int_equal(obs_gauge_register(r, "g", "gauge", NULL, &g), VG_OK);
    assert_int_equal(obs_histogram_register(r, "lat_seconds", "latency", "stage", NULL, 0, &h),
                     VG_OK);
    obs_inc(req, OBS_LABELS("a\"\n\x01"));
    obs_add(req, OBS_LABELS("b"), 41);
    obs_set(g, NULL, NAN);
    obs_observe(h, OBS_LABELS("pdq"), 0.002);
    obs_observe(h, OBS_LABELS("pdq"), 0.004);
    char *js;
    size_t len;
    assert_int_equal(obs_render_json(r, &js, &len), VG_OK);
    json_error_t err;
    json_t *root = json_loadb(js, len, 0, &err);
    if (!root)
        fail_msg("invalid JSON (%s): %s", err.text, js);
    assert_true(json_integer_value(json_object_get(root, "time_ms")) > 0);
    json_t *ms = json_object_get(root, "metrics");
    assert_int_equal(json_array_size(ms), 5); /* 3 + the 2 internal ones */
    json_t *m0 = json_array_get(ms, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "name")), "req_total");
    assert_string_equal(json_string_value(json_object_get(m0, "type")), "counter");
    assert_string_equal(json_string_value(json_object_get(m0, "help")), "Requests \"quoted\"");
    json_t *s0 = json_array_get(json_object_get(m0, "series"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(s0, "labels"), "route")),
                        "a\"\n\x01");
    assert_int_equal(json_integer_value(json_object_get(s0, "value")), 1);
    json_t *s1 = json_array_get(json_object_get(m0, "series"), 1);
    assert_int_equal(json_integer_value(json_object_get(s1, "value")), 41);
    json_t *m1 = json_array_get(ms, 1);
    assert_true(
        json_is_null(json_object_get(json_array_get(json_object_get(m1, "series"), 0), "value")));
    json_t *m2 = json_array_get(ms, 2);
    assert_string_equal(json_string_value(json_object_get(m2, "type")), "histogram");
    assert_int_equal(json_array_size(json_object_get(m2, "buckets")), obs_latency_buckets_len);
    json_t *hs = json_array_get(json_object_get(m2, "series"), 0);
    assert_int_equal(json_integer_value(json_object_get(hs, "count")), 2);
    assert_float_equal(json_real_value(json_object_get(hs, "sum")), 0.006, 1e-12);
    json_t *counts = json_object_get(hs, "counts");
    assert_int_equal(json_array_size(counts), obs_latency_buckets_len + 1);
    assert_int_equal(json_integer_value(json_array_get(counts, 1)), 0); /* le 0.001 */
    assert_int_equal(json_integer_value(json_array_get(counts, 2)), 1); /* le 0.0025 */
    assert_int_equal(json_integer_value(json_array_get(counts, 3)), 2); /* le 0.005 */
    json_t *proc = json_object_get(root, "process");
    assert_true(json_number_value(json_object_get(proc, "resident_memory_bytes")) > 0);
    assert_true(json_number_value(json_object_get(proc, "threads")) >= 1);
    json_decref(root);
    vg_free(js);

    char *text = render(r);
    assert_non_null(strstr(text, "\n# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_non_null(strstr(text, "\n# TYPE process_cpu_seconds_total counter\n"));
    vg_free(text);
    obs_registry_free(r);
}

/* ---- registration and misuse ---------------------------------------------------------------- */

static void test_registration_rules(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_metric *a, *b;
    assert_int_equal(obs_counter_register(r, "ok_total", "h", "x,y", &a), VG_OK);
    assert_int_equal(obs_counter_register(r, "ok_total", "other help", "x,y", &b), VG_OK);
    assert_ptr_equal(a, b); /* idempotent: modules may register independently */
    assert_int_equal(obs_counter_register(r, "ok_total", "h", "x", &b), VG_EEXIST);
    assert_int_equal(obs_gauge_register(r, "ok_total", "h", "x,y", &b), VG_EEXIST);
    assert_int_equal(obs_counter_register(r, "9bad", "h", NULL, &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "bad-name", "h", NULL, &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "", "h", NULL, &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "a,,b", &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "a:b", &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "__reserved", &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "a,a", &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "a,b,c,d,e,f,g,h,i", &b), VG_EINVAL);
    assert_int_equal(obs_counter_register(r, "c", "h", "le", &b), VG_OK); /* fine off histograms */
    assert_int_equal(obs_histogram_register(r, "h1", "h", "le", NULL, 0, &b), VG_EINVAL);
    static const double dec[] = {1, 0.5}, inf[] = {1, INFINITY};
    assert_int_equal(obs_histogram_register(r, "h2", "h", NULL, dec, 2, &b), VG_EINVAL);
    assert_int_equal(obs_histogram_register(r, "h3", "h", NULL, inf, 2, &b), VG_EINVAL);
    assert_int_equal(obs_histogram_register(r, "h4", "h", NULL, dec, 0, &b), VG_EINVAL);
    char long_name[OBS_NAME_MAX_BYTES + 1];
    memset(long_name, 'a', OBS_NAME_MAX_BYTES);
    long_name[OBS_NAME_MAX_BYTES] = '\0';
    assert_int_equal(obs_counter_register(r, long_name, "h", NULL, &b), VG_EINVAL);
    obs_config bad = {.shards = 1000};
    obs_registry *x;
    assert_int_equal(obs_registry_new(&bad, &x), VG_EINVAL);
    obs_registry_free(r);
    obs_registry_free(NULL);
}

static void test_misuse_counted(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_metric *c, *g, *misuse;
    assert_int_equal(obs_counter_register(r, "c_total", "c", "a,b", &c), VG_OK);
    assert_int_equal(obs_gauge_register(r, "g", "g", NULL, &g), VG_OK);
    assert_int_equal(obs_counter_register(r, "vigil_obs_misuse_total",
                                          "Metric updates dropped: wrong type, wrong label count, "
                                          "bad value.",
                                          NULL, &misuse),
                     VG_OK);
    obs_inc(c, OBS_LABELS("only-one"));    /* too few values */
    obs_inc(c, OBS_LABELS("1", "2", "3")); /* too many */
    obs_inc(c, NULL);                      /* none */
    obs_set(c, OBS_LABELS("1", "2"), 5);   /* gauge op on a counter */
    obs_observe(g, NULL, 1);               /* histogram op on a gauge */
    obs_inc(g, OBS_LABELS("x"));           /* labels on a label-less metric */
    obs_inc(NULL, NULL);                   /* no metric: silent */
    obs_series_inc(NULL);
    assert_float_equal(obs_value(misuse, NULL, NULL), 6, 0);
    obs_inc(c, OBS_LABELS("1", "2"));
    assert_float_equal(obs_value(c, OBS_LABELS("1", "2"), NULL), 1, 0);
    assert_float_equal(obs_value(c, OBS_LABELS("1", "3"), NULL), 0, 0);
    obs_gauge_add(g, NULL, 2.5);
    obs_gauge_add(g, NULL, -1);
    assert_float_equal(obs_value(g, NULL, NULL), 1.5, 0);
    obs_registry_free(r);
}

static void test_cardinality_bound(void **state)
{
    (void)state;
    obs_registry *r = new_reg(3, 0);
    obs_metric *c;
    assert_int_equal(obs_counter_register(r, "req_total", "r", "route", &c), VG_OK);
    const char *routes[] = {"/a", "/b", "/c", "/d", "/e", "/a", "/e", "/f"};
    for (size_t i = 0; i < VG_ARRAY_LEN(routes); i++)
        obs_inc(c, OBS_LABELS(routes[i]));
    char *text = render(r);
    const char *want = "# HELP req_total r\n# TYPE req_total counter\n"
                       "req_total{route=\"/a\"} 2\n"
                       "req_total{route=\"/b\"} 1\n"
                       "req_total{route=\"/c\"} 1\n"
                       "req_total{route=\"__overflow__\"} 4\n";
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "\nvigil_obs_series_overflow_total{metric=\"req_total\"} 4\n"));
    vg_free(text);
    assert_float_equal(obs_value(c, OBS_LABELS(OBS_OVERFLOW_VALUE), NULL), 4, 0);
    /* A cached series handle keeps working; new combinations keep overflowing. */
    obs_series *s = obs_series_get(c, OBS_LABELS("/b"));
    obs_series_add(s, 10);
    assert_float_equal(obs_value(c, OBS_LABELS("/b"), NULL), 11, 0);
    obs_registry_free(r);

    /* Overlong and invalid values are cleaned, and map to one series. */
    r = new_reg(0, 0);
    assert_int_equal(obs_counter_register(r, "v_total", "v", "k", &c), VG_OK);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    obs_inc(c, OBS_LABELS(big));
    big[500] = 'y'; /* differs after the cut */
    obs_inc(c, OBS_LABELS(big));
    text = render(r);
    char line[400];
    snprintf(line, sizeof line, "{k=\"%.*s\"} 2\n", OBS_LABEL_VALUE_MAX_BYTES - 1, big);
    assert_non_null(strstr(text, line));
    vg_free(text);
    obs_registry_free(r);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

enum { THREADS = 4, ITERS = 100000 };

typedef struct conc {
    obs_metric *c, *h, *g;
    int id;
} conc;

static void *conc_worker(void *arg)
{
    conc *w = arg;
    char own[16];
    snprintf(own, sizeof own, "t%d", w->id);
    obs_series *hot = obs_series_get(w->c, OBS_LABELS("shared"));
    for (int i = 0; i < ITERS; i++) {
        obs_inc(w->c, OBS_LABELS("shared"));
        obs_series_inc(hot);
        obs_add(w->c, OBS_LABELS(own), 2);
        obs_observe(w->h, OBS_LABELS(i % 2 ? "odd" : "even"), (double)(i % 4) * 0.25);
        obs_gauge_add(w->g, NULL, 1);
        char fresh[16]; /* series created concurrently by every thread */
        snprintf(fresh, sizeof fresh, "n%d", i % 50);
        obs_inc(w->c, OBS_LABELS(fresh));
    }
    return NULL;
}

static void run_concurrency(unsigned shards)
{
    obs_registry *r = new_reg(0, shards);
    conc w[THREADS];
    obs_metric *c, *h, *g;
    assert_int_equal(obs_counter_register(r, "c_total", "c", "who", &c), VG_OK);
    assert_int_equal(obs_histogram_register(r, "h", "h", "parity", NULL, 0, &h), VG_OK);
    assert_int_equal(obs_gauge_register(r, "g", "g", NULL, &g), VG_OK);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (conc){c, h, g, i};
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &w[i]), 0);
    }
    for (int k = 0; k < 20; k++) { /* renders while the workers run */
        char *t = render(r);
        vg_free(t);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_float_equal(obs_value(c, OBS_LABELS("shared"), NULL), 2.0 * THREADS * ITERS, 0);
    for (int i = 0; i < THREADS; i++) {
        char own[16];
        snprintf(own, sizeof own, "t%d", i);
        assert_float_equal(obs_value(c, OBS_LABELS(own), NULL), 2.0 * ITERS, 0);
    }
    for (int i = 0; i < 50; i++) {
        char fresh[16];
        snprintf(fresh, sizeof fresh, "n%d", i);
        assert_float_equal(obs_value(c, OBS_LABELS(fresh), NULL), (double)THREADS * ITERS / 50, 0);
    }
    double sum;
    assert_float_equal(obs_value(h, OBS_LABELS("even"), &sum), THREADS * ITERS / 2, 0);
    assert_float_equal(sum, THREADS * (ITERS / 4) * (0 + 0.5), 0); /* exact: dyadic */
    assert_float_equal(obs_value(h, OBS_LABELS("odd"), &sum), THREADS * ITERS / 2, 0);
    assert_float_equal(sum, THREADS * (ITERS / 4) * (0.25 + 0.75), 0);
    assert_float_equal(obs_value(g, NULL, NULL), (double)THREADS * ITERS, 0);
    char *t = render(r);
    assert_non_null(strstr(t, "c_total{who=\"shared\"} 800000\n"));
    assert_non_null(strstr(t, "h_count{parity=\"odd\"} 200000\n"));
    vg_free(t);
    obs_registry_free(r);
}

static void test_concurrent_exact_totals(void **state)
{
    (void)state;
    run_concurrency(0);  /* auto */
    run_concurrency(1);  /* one atomic */
    run_concurrency(2);  /* per-CPU shards, even on a 2-CPU host */
    run_concurrency(64); /* more shards than CPUs */
}

/* ---- collectors and process ----------------------------------------------------------------- */

static void collect(void *ctx)
{
    obs_metric *g = ctx;
    obs_gauge_add(g, NULL, 1); /* counts renders */
}

static void test_collector_and_process(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_metric *g;
    assert_int_equal(obs_gauge_register(r, "renders", "r", NULL, &g), VG_OK);
    assert_int_equal(obs_collector_add(r, collect, g), VG_OK);
    char *t = render(r);
    assert_non_null(strstr(t, "\nrenders 1\n"));
    vg_free(t);
    t = render(r);
    assert_non_null(strstr(t, "\nrenders 2\n"));
    vg_free(t);
    obs_registry_free(r);

    obs_process p;
    assert_int_equal(obs_process_read(&p), VG_OK);
    assert_true(p.resident_bytes > 1 << 20);
    assert_true(p.virtual_bytes >= p.resident_bytes);
    assert_true(p.threads >= 1);
    assert_true(p.open_fds >= 3 && p.open_fds < p.max_fds);
    double now = (double)time(NULL);
    assert_true(p.start_time_seconds > now - 3600 && p.start_time_seconds <= now + 1);
    assert_true(p.cpu_seconds >= 0);
    int fd = dup(0);
    obs_process q;
    assert_int_equal(obs_process_read(&q), VG_OK);
    assert_int_equal(q.open_fds, p.open_fds + 1);
    close(fd);
}

/* ---- health --------------------------------------------------------------------------------- */

typedef struct fake {
    obs_health_status status;
    const char *msg;
    int calls;
} fake;

static obs_health_status fake_check(void *ctx, char *msg, size_t n)
{
    fake *f = ctx;
    f->calls++;
    snprintf(msg, n, "%s", f->msg);
    return f->status;
}

static json_t *run_health(obs_health *h, obs_health_status *st)
{
    char *js;
    size_t len;
    assert_int_equal(obs_health_run(h, st, &js, &len), VG_OK);
    json_error_t err;
    json_t *root = json_loadb(js, len, 0, &err);
    if (!root)
        fail_msg("invalid health JSON (%s): %s", err.text, js);
    vg_free(js);
    return root;
}

static void test_health(void **state)
{
    (void)state;
    obs_registry *r = new_reg(0, 0);
    obs_health *h;
    assert_int_equal(obs_health_new(r, 0, &h), VG_OK);
    obs_health_status st;
    json_t *j = run_health(h, &st);
    assert_int_equal(st, OBS_HEALTH_OK); /* nothing registered */
    json_decref(j);

    fake api = {OBS_HEALTH_OK, "serving", 0}, db = {OBS_HEALTH_DEGRADED, "slow \"wal\"", 0};
    assert_int_equal(obs_health_register(h, "api", fake_check, &api), VG_OK);
    assert_int_equal(obs_health_register(h, "database", fake_check, &db), VG_OK);
    assert_int_equal(obs_health_register(h, "api", fake_check, &api), VG_EEXIST);
    assert_int_equal(obs_health_register(h, "Bad Name", fake_check, &api), VG_EINVAL);
    assert_int_equal(obs_health_register(h, "x", NULL, &api), VG_EINVAL);
    assert_int_equal(obs_health_add_disk(h, "disk", "/tmp", 0, 0), VG_OK);
    assert_int_equal(obs_health_add_memory(h, "memory", (uint64_t)1 << 40, 0.9), VG_OK);
    assert_int_equal(obs_health_add_memory(h, "m2", 0, 0.9), VG_EINVAL);
    assert_int_equal(obs_health_add_memory(h, "m2", 1, 1.5), VG_EINVAL);

    j = run_health(h, &st);
    assert_int_equal(st, OBS_HEALTH_DEGRADED);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "degraded");
    assert_int_equal(json_array_size(json_object_get(j, "failing")), 0);
    json_t *comps = json_object_get(j, "components");
    assert_int_equal(json_object_size(comps), 4);
    json_t *d = json_object_get(comps, "database");
    assert_string_equal(json_string_value(json_object_get(d, "status")), "degraded");
    assert_string_equal(json_string_value(json_object_get(d, "message")), "slow \"wal\"");
    assert_true(json_number_value(json_object_get(d, "duration_ms")) >= 0);
    json_t *disk = json_object_get(comps, "disk");
    assert_string_equal(json_string_value(json_object_get(disk, "status")), "ok");
    assert_non_null(strstr(json_string_value(json_object_get(disk, "message")), "free of"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(comps, "memory"), "status")), "ok");
    const char *when = json_string_value(json_object_get(j, "checked_at"));
    assert_int_equal(strlen(when), 24); /* 2026-11-26T23:40:01.123Z */
    assert_int_equal(when[23], 'Z');
    json_decref(j);

    /* Failing components are listed; the gauges follow. */
    db.status = OBS_HEALTH_FAILING;
    api.status = (obs_health_status)42; /* garbage from a check counts as failing */
    j = run_health(h, &st);
    assert_int_equal(st, OBS_HEALTH_FAILING);
    json_t *failing = json_object_get(j, "failing");
    assert_int_equal(json_array_size(failing), 2);
    assert_string_equal(json_string_value(json_array_get(failing, 0)), "api");
    assert_string_equal(json_string_value(json_array_get(failing, 1)), "database");
    json_decref(j);
    char *text = render(r);
    assert_non_null(strstr(text, "vigil_health_status{component=\"database\"} 2\n"));
    assert_non_null(strstr(text, "vigil_health_status{component=\"disk\"} 0\n"));
    assert_non_null(strstr(text, "vigil_health_check_seconds{component=\"memory\"} "));
    vg_free(text);
    assert_int_equal(obs_health_run(h, &st, NULL, NULL), VG_OK); /* no JSON wanted */
    obs_health_free(h);

    /* Built-ins failing; caching. */
    assert_int_equal(obs_health_new(NULL, 60000, &h), VG_OK);
    assert_int_equal(obs_health_add_disk(h, "disk", "/tmp", UINT64_MAX, UINT64_MAX), VG_OK);
    assert_int_equal(obs_health_add_disk(h, "disk2", "/nonexistent/dir", 0, 0), VG_OK);
    assert_int_equal(obs_health_add_memory(h, "memory", 1, 0.5), VG_OK);
    fake counted = {OBS_HEALTH_OK, "", 0};
    assert_int_equal(obs_health_register(h, "counted", fake_check, &counted), VG_OK);
    j = run_health(h, &st);
    assert_int_equal(st, OBS_HEALTH_FAILING);
    assert_int_equal(json_array_size(json_object_get(j, "failing")), 3);
    json_decref(j);
    j = run_health(h, &st); /* within cache_ms: the same report, checks not called again */
    assert_int_equal(st, OBS_HEALTH_FAILING);
    assert_int_equal(counted.calls, 1);
    json_decref(j);
    obs_health_free(h);
    obs_health_free(NULL);
    obs_registry_free(r);
}

/* ---- allocation failures -------------------------------------------------------------------- */

static void test_alloc_failures(void **state)
{
    (void)state;
    for (long fail = 1;; fail++) {
        long before = vg_alloc_count();
        vg_alloc_fail_after(fail);
        int failed = 0;
        obs_config c = {.max_series = 2};
        obs_registry *r = NULL;
        int rc = obs_registry_new(&c, &r);
        assert_true(rc == VG_OK || rc == VG_ENOMEM);
        if (rc == VG_OK) {
            obs_metric *m = NULL, *h = NULL;
            rc = obs_counter_register(r, "a_total", "a", "k", &m);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            failed |= rc != VG_OK;
            rc = obs_histogram_register(r, "h", "h", NULL, NULL, 0, &h);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            failed |= rc != VG_OK;
            for (int i = 0; i < 4; i++) {
                char v[8];
                snprintf(v, sizeof v, "v%d", i);
                obs_inc(rc == VG_OK ? m : NULL, OBS_LABELS(v)); /* may silently drop */
            }
            obs_observe(h, NULL, 0.1);
            char *text;
            rc = obs_render_prometheus(r, &text, NULL);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            failed |= rc != VG_OK;
            if (!rc)
                vg_free(text);
            rc = obs_render_json(r, &text, NULL);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            failed |= rc != VG_OK;
            if (!rc)
                vg_free(text);
            obs_health *hl;
            rc = obs_health_new(r, 0, &hl);
            assert_true(rc == VG_OK || rc == VG_ENOMEM);
            failed |= rc != VG_OK;
            if (!rc) {
                rc = obs_health_add_memory(hl, "memory", 1 << 30, 0.9);
                failed |= rc != VG_OK;
                obs_health_status st;
                rc = obs_health_run(hl, &st, &text, NULL);
                assert_true(rc == VG_OK || rc == VG_ENOMEM);
                failed |= rc != VG_OK;
                if (!rc)
                    vg_free(text);
                obs_health_free(hl);
            }
        } else {
            failed = 1;
        }
        long used = vg_alloc_count() - before;
        vg_alloc_fail_after(0);
        obs_registry_free(r);
        if (!failed && fail > used)
            break;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prometheus_golden),
        cmocka_unit_test(test_escaping_and_numbers),
        cmocka_unit_test(test_histogram_bucket_edges),
        cmocka_unit_test(test_histogram_set),
        cmocka_unit_test(test_json_snapshot),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_misuse_counted),
        cmocka_unit_test(test_cardinality_bound),
        cmocka_unit_test(test_concurrent_exact_totals),
        cmocka_unit_test(test_collector_and_process),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
