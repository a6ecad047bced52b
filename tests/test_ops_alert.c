/* Alert engine and webhook: rules driven with synthetic KPI windows, SLIs and a synthetic clock;
 * the webhook body parsed back with jansson; delivery to a tiny HTTP receiver on a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "obs/obs.h"
#include "ops/ops_alert.h"
#include "ops/ops_webhook.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define SEC 1000LL
#define MIN (60 * SEC)

/* ---- fixtures -------------------------------------------------------------------------------- */

typedef struct sent {
    int n;
    ops_alert_view last;
    ops_notify_kind kinds[64];
    ops_severity sevs[64];
} sent;

static void record(void *ctx, const ops_alert_view *a, ops_notify_kind kind)
{
    sent *s = ctx;
    if (s->n < 64) {
        s->kinds[s->n] = kind;
        s->sevs[s->n] = a->severity;
    }
    s->n++;
    s->last = *a;
}

/* An idle server's window: every KPI without data is NAN. */
static ops_kpis idle(void)
{
    ops_kpis k;
    memset(&k, 0, sizeof(k));
    k.window_s = 60;
    k.covered_s = 60;
    k.p50_ms[0] = k.p95_ms[0] = k.p99_ms[0] = NAN;
    k.p95_ms[OPS_CLASS_API] = NAN;
    k.error_rate = k.analysis_error_rate = NAN;
    for (int i = 0; i < OPS_CACHE_TIERS; i++)
        k.cache_hit_rate[i] = NAN;
    k.cpu_percent = 10;
    k.memory_percent = 20;
    return k;
}

static ops_kpis busy(double analysis_error_rate)
{
    ops_kpis k = idle();
    k.request_rate = k.analysis_rate = 10;
    k.error_rate = k.analysis_error_rate = analysis_error_rate;
    return k;
}

static ops_alert *engine(sent *s, ops_alert_config *c)
{
    ops_alert_config d;
    if (!c) {
        ops_alert_config_default(&d);
        d.anomaly = 0;
        c = &d;
    }
    c->notify = record;
    c->notify_ctx = s;
    ops_alert *e = NULL;
    assert_int_equal(ops_alert_new(c, NULL, &e), VG_OK);
    return e;
}

static void tick(ops_alert *e, const ops_kpis *k, int64_t t)
{
    ops_alert_evaluate(e, k, k, k, t);
}

static size_t open_alerts(ops_alert *e, ops_alert_view *v)
{
    return ops_alert_list(e, v, 1);
}

/* ---- threshold rules ------------------------------------------------------------------------- */

static void test_for_duration(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_kpis k = busy(0.10);
    ops_alert_view v;
    for (int64_t t = 0; t < MIN; t += SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 0);                /* pending for 59 s */
    assert_int_equal(open_alerts(e, &v), 2); /* error_rate_high and analysis_error_rate_high */
    assert_int_equal(v.state, OPS_ALERT_PENDING);
    tick(e, &k, T0 + MIN);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kinds[0], OPS_NOTIFY_FIRING);
    assert_int_equal(s.last.severity, OPS_SEV_CRITICAL);
    assert_int_equal(s.last.state, OPS_ALERT_FIRING);
    assert_true(s.last.threshold == 0.05);
    /* resolves at once when the condition clears, with a resolved notification */
    ops_kpis ok = busy(0.0);
    tick(e, &ok, T0 + MIN + SEC);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.kinds[3], OPS_NOTIFY_RESOLVED);
    assert_int_equal(s.last.state, OPS_ALERT_RESOLVED);
    assert_int_equal(open_alerts(e, &v), 0);
    json_t *j = ops_alert_json(e, T0 + MIN + 2 * SEC);
    assert_int_equal(json_array_size(json_object_get(j, "recent")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "firing")), 0);
    json_decref(j);
    ops_alert_free(e);
}

static void test_single_spike_does_not_fire(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_kpis spike = busy(0.5), ok = busy(0.0);
    ops_kpis cpu = idle();
    cpu.cpu_percent = 99;
    for (int64_t t = 0; t < 10 * MIN; t += SEC) {
        /* one bad tick every 30 s: never sustained for `for` */
        int bad = (t / SEC) % 30 == 0;
        tick(e, bad ? &spike : &ok, T0 + t);
        if (bad)
            tick(e, &cpu, T0 + t + 500);
    }
    assert_int_equal(s.n, 0);
    json_t *j = ops_alert_json(e, T0 + 10 * MIN);
    assert_int_equal(json_array_size(json_object_get(j, "recent")), 0);
    json_decref(j);
    ops_alert_free(e);
}

static void test_warning_then_critical_and_min_requests(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_kpis k = idle();
    k.cpu_percent = 75;
    for (int64_t t = 0; t <= MIN; t += SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.last.name, "cpu_high");
    assert_int_equal(s.last.severity, OPS_SEV_WARNING);
    k.cpu_percent = 95; /* worse while firing: re-notified at critical, same alert */
    tick(e, &k, T0 + MIN + SEC);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.last.severity, OPS_SEV_CRITICAL);
    assert_int_equal(s.last.initial_severity, OPS_SEV_WARNING);
    ops_alert_free(e);

    /* 100% errors on 5 answers is not an alert (min_requests 20) */
    sent s2 = {0};
    e = engine(&s2, NULL);
    ops_kpis few = busy(1.0);
    few.request_rate = few.analysis_rate = 5.0 / 60;
    for (int64_t t = 0; t <= 2 * MIN; t += SEC)
        tick(e, &few, T0 + t);
    assert_int_equal(s2.n, 0);
    ops_alert_free(e);
}

static void test_time_scale(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert_config c;
    ops_alert_config_default(&c);
    c.anomaly = 0;
    c.time_scale = 60; /* the 1 min `for` lasts one real second */
    ops_alert *e = engine(&s, &c);
    ops_kpis k = busy(0.10);
    tick(e, &k, T0);
    tick(e, &k, T0 + 900);
    assert_int_equal(s.n, 0);
    tick(e, &k, T0 + 1000);
    assert_int_equal(s.n, 2);
    ops_alert_free(e);
}

/* ---- index sync lag ------------------------------------------------------------------------- */

typedef struct lag_reading {
    double lag_ms, limit_ms;
    int rc;
} lag_reading;

static int fake_lag(void *ctx, double *lag_ms, double *limit_ms)
{
    lag_reading *r = ctx;
    *lag_ms = r->lag_ms;
    *limit_ms = r->limit_ms;
    return r->rc;
}

/* The node's index lag over its own limit: pending, critical after `for` (a lag that clears
 * before it never fires), resolved when the lag is back under; a lag at the limit, or nothing to
 * measure, never fires. */
static void test_index_sync_lag(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert_config c;
    ops_alert_config_default(&c);
    c.anomaly = 0;
    lag_reading r = {.lag_ms = 5000, .limit_ms = 5000, .rc = VG_OK};
    c.index_lag = fake_lag;
    c.index_lag_ctx = &r;
    ops_alert *e = engine(&s, &c);
    ops_kpis k = idle();
    ops_alert_view v;
    int64_t t = 0;
    for (; t < 2 * MIN; t += SEC)
        tick(e, &k, T0 + t); /* at the limit: not over it */
    assert_int_equal(open_alerts(e, &v), 0);
    r.lag_ms = 9000; /* a short blip: pending, then dropped */
    for (int i = 0; i < 30; i++, t += SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(open_alerts(e, &v), 1);
    assert_int_equal(v.state, OPS_ALERT_PENDING);
    r.lag_ms = 100;
    tick(e, &k, T0 + t);
    t += SEC;
    assert_int_equal(open_alerts(e, &v), 0);
    assert_int_equal(s.n, 0);
    r.lag_ms = 12000; /* stays over: fires after the 1 min `for` */
    int64_t t1 = t;
    for (; t - t1 < MIN; t += SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 0);
    tick(e, &k, T0 + t);
    t += SEC;
    assert_int_equal(s.n, 1);
    assert_int_equal(s.last.severity, OPS_SEV_CRITICAL);
    assert_string_equal(s.last.name, "index_sync_lag_high");
    assert_string_equal(s.last.label_value[2], "index_sync_lag_ms");
    assert_true(s.last.value == 12000 && s.last.threshold == 5000);
    assert_non_null(strstr(s.last.summary, "index_max_lag"));
    r.rc = VG_ENOTFOUND; /* nothing to measure: the rule no longer reports it */
    tick(e, &k, T0 + t);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kinds[1], OPS_NOTIFY_RESOLVED);
    ops_alert_free(e);
}

/* ---- anomalies ------------------------------------------------------------------------------- */

static void test_anomaly_warmup(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert_config c;
    ops_alert_config_default(&c);
    c.cpu_warning_pct = c.cpu_critical_pct = NAN; /* only the anomaly rule sees CPU */
    ops_alert *e = engine(&s, &c);
    ops_kpis k = idle();
    int64_t t = 0;
    /* 5 min of CPU around 20% (+-1), then a jump to 60%: inside the 10 min warm-up, ignored */
    for (; t < 5 * MIN; t += 10 * SEC) {
        k.cpu_percent = 20 + ((t / (10 * SEC)) % 2 ? 1 : -1);
        tick(e, &k, T0 + t);
    }
    k.cpu_percent = 60;
    for (int i = 0; i < 6; i++, t += 10 * SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 0);
    /* back to normal until warm-up and the sample count are reached; the 60s get absorbed */
    for (; t < 30 * MIN; t += 10 * SEC) {
        k.cpu_percent = 20 + ((t / (10 * SEC)) % 2 ? 1 : -1);
        tick(e, &k, T0 + t);
    }
    assert_int_equal(s.n, 0);
    k.cpu_percent = 60; /* now an anomaly: info, after anomaly_for (30 s) */
    tick(e, &k, T0 + t);
    ops_alert_view v;
    assert_int_equal(open_alerts(e, &v), 1);
    assert_int_equal(v.state, OPS_ALERT_PENDING);
    assert_string_equal(v.name, "anomaly");
    for (int i = 1; i <= 3; i++)
        tick(e, &k, T0 + t + i * 10 * SEC);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.last.severity, OPS_SEV_INFO);
    assert_string_equal(s.last.label_value[2], "cpu_percent");
    ops_alert_free(e);
}

/* ---- burn rate ------------------------------------------------------------------------------- */

typedef struct sli_table {
    double ratio[4][8]; /* [slo][window index] */
    int calls;
} sli_table;

static int window_index(double w)
{
    static const double ws[] = {300, 1800, 3600, 21600, 259200};
    for (int i = 0; i < 5; i++)
        if (w == ws[i])
            return i;
    return 7;
}

static int fake_sli(void *ctx, int slo, double window_s, int64_t now_ms, double *ratio)
{
    (void)now_ms;
    sli_table *t = ctx;
    t->calls++;
    double r = t->ratio[slo][window_index(window_s)];
    if (isnan(r))
        return VG_ENOTFOUND;
    *ratio = r;
    return VG_OK;
}

static void test_burn_rate_windows(void **state)
{
    (void)state;
    sli_table t;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            t.ratio[i][j] = 0;
    t.calls = 0;
    sent s = {0};
    ops_alert_config c;
    ops_alert_config_default(&c);
    c.anomaly = 0;
    c.sli = fake_sli;
    c.sli_ctx = &t;
    ops_alert *e = engine(&s, &c);
    ops_kpis k = idle();
    /* availability (budget 0.001): 1 h at 15x but 5 min recovered -> no page */
    t.ratio[0][2] = 0.015, t.ratio[0][0] = 0.0005;
    tick(e, &k, T0);
    assert_true(t.calls > 0);
    assert_int_equal(s.n, 0);
    /* both over 14.4x -> critical page at the next evaluation (30 s) */
    t.ratio[0][0] = 0.02;
    tick(e, &k, T0 + 10 * SEC);
    assert_int_equal(s.n, 0); /* not evaluated yet */
    tick(e, &k, T0 + 30 * SEC);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.last.name, "slo_burn_rate");
    assert_int_equal(s.last.severity, OPS_SEV_CRITICAL);
    assert_string_equal(s.last.label_value[2], "availability");
    assert_string_equal(s.last.label_value[3], "1h/5m");
    assert_string_equal(s.last.label_value[4], "page");
    /* error_rate (budget 0.01): 3 d and 6 h at 1.5x -> warning ticket */
    t.ratio[3][4] = 0.015, t.ratio[3][3] = 0.015;
    tick(e, &k, T0 + 60 * SEC);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.last.severity, OPS_SEV_WARNING);
    assert_string_equal(s.last.label_value[3], "3d/6h");
    /* no data in a window: quiet, and the alerts resolve */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            t.ratio[i][j] = NAN;
    tick(e, &k, T0 + 90 * SEC);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.kinds[3], OPS_NOTIFY_RESOLVED);
    ops_alert_free(e);
}

/* ---- escalation, ack, silences --------------------------------------------------------------- */

static void test_escalation_and_ack(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_kpis k = idle();
    k.memory_percent = 95;
    int64_t t = 0;
    for (; t <= MIN; t += 10 * SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.last.severity, OPS_SEV_CRITICAL);
    int64_t fired = T0 + MIN;
    for (; T0 + t < fired + 15 * MIN; t += 10 * SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 1); /* not yet */
    tick(e, &k, fired + 15 * MIN);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.kinds[1], OPS_NOTIFY_ESCALATED);
    assert_int_equal(s.last.severity, OPS_SEV_EMERGENCY);
    assert_int_equal(s.last.initial_severity, OPS_SEV_CRITICAL);
    /* emergency is the top: no further escalation */
    tick(e, &k, fired + 31 * MIN);
    assert_int_equal(s.n, 2);

    /* ack stops escalation of a fresh alert */
    sent s2 = {0};
    ops_alert *e2 = engine(&s2, NULL);
    ops_kpis c = idle();
    c.cpu_percent = 80;
    for (t = 0; t <= MIN; t += 10 * SEC)
        tick(e2, &c, T0 + t);
    assert_int_equal(s2.n, 1);
    ops_alert_view v;
    assert_int_equal(ops_alert_ack(e2, "nope", T0 + t, &v), VG_ENOTFOUND);
    assert_int_equal(ops_alert_ack(e2, s2.last.id, T0 + t, &v), VG_OK);
    assert_true(v.acknowledged);
    assert_true(v.acknowledged_at_ms == T0 + t);
    tick(e2, &c, T0 + 60 * MIN);
    assert_int_equal(s2.n, 1);
    json_t *j = ops_alert_json(e2, T0 + 60 * MIN);
    json_t *ev = json_array_get(json_object_get(j, "events"), 0); /* newest first */
    assert_string_equal(json_string_value(json_object_get(ev, "kind")), "ack");
    json_t *a = json_array_get(json_object_get(j, "firing"), 0);
    assert_true(json_is_true(json_object_get(a, "acknowledged")));
    assert_string_equal(json_string_value(json_object_get(a, "severity")), "warning");
    json_decref(j);
    ops_alert_free(e);
    ops_alert_free(e2);
}

static void test_silences(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    const char *names[] = {"alertname"}, *values[] = {"cpu_high"};
    char id[OPS_ALERT_ID_BYTES];
    assert_int_equal(ops_alert_silence_add(e, names, values, 1, T0 - 1, NULL, T0, id),
                     VG_EINVAL); /* ends in the past */
    assert_int_equal(ops_alert_silence_add(e, names, values, 0, T0 + MIN, NULL, T0, id), VG_EINVAL);
    assert_int_equal(
        ops_alert_silence_add(e, names, values, 1, T0 + 10 * MIN, "maintenance", T0, id), VG_OK);
    ops_kpis k = idle();
    k.cpu_percent = 95;
    int64_t t = 0;
    for (; t <= 2 * MIN; t += 10 * SEC)
        tick(e, &k, T0 + t);
    assert_int_equal(s.n, 0); /* silenced, but visible */
    ops_alert_view v;
    assert_int_equal(open_alerts(e, &v), 1);
    assert_true(v.silenced);
    assert_int_equal(v.state, OPS_ALERT_FIRING);
    json_t *sj = ops_alert_silence_json(e, id);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(sj, "matchers"), "alertname")),
        "cpu_high");
    json_decref(sj);
    /* deleting the silence: the firing alert is notified on the next evaluation */
    assert_int_equal(ops_alert_silence_delete(e, "s999", T0 + t), VG_ENOTFOUND);
    assert_int_equal(ops_alert_silence_delete(e, id, T0 + t), VG_OK);
    tick(e, &k, T0 + t);
    assert_int_equal(s.n, 1);
    assert_false(s.last.silenced);
    ops_alert_free(e);
}

static void test_event_hook(void **state)
{
    (void)state;
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_alert_event(e, "self_heal", NULL, OPS_SEV_INFO, "memory_trim: freed 12 MiB", T0);
    json_t *j = ops_alert_json(e, T0);
    json_t *ev = json_array_get(json_object_get(j, "events"), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "kind")), "self_heal");
    assert_true(json_is_null(json_object_get(ev, "alert_id")));
    assert_string_equal(json_string_value(json_object_get(ev, "at")), "2026-01-01T00:00:00.000Z");
    json_decref(j);
    ops_alert_free(e);
}

/* ---- webhook --------------------------------------------------------------------------------- */

static ops_alert_view firing_view(void)
{
    sent s = {0};
    ops_alert *e = engine(&s, NULL);
    ops_kpis k = busy(0.10);
    for (int64_t t = 0; t <= MIN; t += SEC)
        tick(e, &k, T0 + t);
    ops_alert_free(e);
    assert_int_equal(s.n, 2);
    return s.last;
}

static void test_webhook_body(void **state)
{
    (void)state;
    ops_alert_view v[2];
    v[0] = firing_view();
    v[1] = v[0];
    v[1].state = OPS_ALERT_RESOLVED;
    v[1].ends_at_ms = T0 + 2 * MIN;
    snprintf(v[1].fingerprint, sizeof(v[1].fingerprint), "00000000000000ff");
    v[1].severity = OPS_SEV_WARNING;
    snprintf(v[1].label_value[1], OPS_ALERT_LABEL_BYTES, "warning");
    char *body;
    size_t len;
    assert_int_equal(
        ops_webhook_body(v, 2, 3, "vigil-critical", "http://vigil.example:8080", &body, &len),
        VG_OK);
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "version")), "4");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "firing");
    assert_string_equal(json_string_value(json_object_get(j, "receiver")), "vigil-critical");
    assert_string_equal(json_string_value(json_object_get(j, "externalURL")),
                        "http://vigil.example:8080");
    assert_int_equal(json_integer_value(json_object_get(j, "truncatedAlerts")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "groupKey")),
                        "{}:{alertname=\"analysis_error_rate_high\"}");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "groupLabels"), "alertname")),
        "analysis_error_rate_high");
    json_t *cl = json_object_get(j, "commonLabels");
    assert_string_equal(json_string_value(json_object_get(cl, "alertname")),
                        "analysis_error_rate_high");
    assert_null(json_object_get(cl, "severity")); /* differs between the two */
    assert_non_null(json_object_get(j, "commonAnnotations"));
    json_t *alerts = json_object_get(j, "alerts");
    assert_int_equal(json_array_size(alerts), 2);
    json_t *a0 = json_array_get(alerts, 0), *a1 = json_array_get(alerts, 1);
    assert_string_equal(json_string_value(json_object_get(a0, "status")), "firing");
    assert_string_equal(json_string_value(json_object_get(a0, "startsAt")),
                        "2026-01-01T00:01:00.000Z");
    assert_string_equal(json_string_value(json_object_get(a0, "endsAt")), "0001-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(a0, "generatorURL")),
                        "http://vigil.example:8080/api/v1/alerts");
    assert_int_equal(strlen(json_string_value(json_object_get(a0, "fingerprint"))), 16);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(a0, "labels"), "severity")), "critical");
    assert_non_null(json_object_get(json_object_get(a0, "annotations"), "summary"));
    assert_string_equal(json_string_value(json_object_get(a1, "status")), "resolved");
    assert_string_equal(json_string_value(json_object_get(a1, "endsAt")),
                        "2026-01-01T00:02:00.000Z");
    json_decref(j);
    vg_free(body);
    /* all resolved: the group is resolved */
    v[0].state = OPS_ALERT_RESOLVED;
    assert_int_equal(ops_webhook_body(v, 2, 0, "vigil", "", &body, &len), VG_OK);
    j = json_loadb(body, len, 0, &err);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "resolved");
    json_decref(j);
    vg_free(body);
}

static void test_hmac(void **state)
{
    (void)state;
    /* RFC 4231 test case 2 */
    char sig[OPS_WEBHOOK_SIGNATURE_BYTES];
    const char *data = "what do ya want for nothing?";
    assert_int_equal(ops_webhook_sign("Jefe", data, strlen(data), sig), VG_OK);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* A receiver on 127.0.0.1: answers the first `fail` requests 500, then 200; keeps the last
 * request. */
typedef struct receiver {
    int fd, port, fail, served;
    char req[65536];
    size_t len;
} receiver;

static void *receiver_main(void *arg)
{
    receiver *r = arg;
    for (;;) {
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[65536];
        size_t n = 0;
        ssize_t k;
        /* read until the whole body (Content-Length) is in */
        for (;;) {
            k = read(c, buf + n, sizeof(buf) - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
            buf[n] = 0;
            char *end = strstr(buf, "\r\n\r\n");
            char *cl = strcasestr(buf, "Content-Length:");
            if (end && cl && n >= (size_t)(end + 4 - buf) + (size_t)atoi(cl + 15))
                break;
        }
        int fail = r->served < r->fail;
        const char *resp =
            fail ? "HTTP/1.1 500 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                 : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (write(c, resp, strlen(resp)) < 0)
            n = 0;
        close(c);
        memcpy(r->req, buf, n);
        r->len = n;
        r->req[n] = 0;
        __atomic_add_fetch(&r->served, 1, __ATOMIC_SEQ_CST);
    }
}

static void test_webhook_delivery_retry_and_signature(void **state)
{
    (void)state;
    receiver *r = calloc(1, sizeof(*r));
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(r->fd, (struct sockaddr *)&sa, &sl);
    r->port = ntohs(sa.sin_port);
    assert_int_equal(listen(r->fd, 8), 0);
    r->fail = 1;
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, r);

    obs_registry *reg;
    assert_int_equal(obs_registry_new(NULL, &reg), VG_OK);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", r->port);
    ops_webhook_config c;
    ops_webhook_config_default(&c);
    c.url_sev[OPS_SEV_CRITICAL] = url;
    c.secret = "s3cret";
    c.group_wait_ms = 50;
    c.backoff_ms = 50;
    ops_webhook *w;
    assert_int_equal(ops_webhook_new(&c, reg, &w), VG_OK);
    ops_alert_view v = firing_view();
    ops_webhook_notify(w, &v, OPS_NOTIFY_FIRING);
    for (int i = 0; i < 500 && ops_webhook_delivered(w) < 1; i++)
        usleep(10000);
    assert_int_equal(ops_webhook_delivered(w), 1);
    assert_int_equal(r->served, 2); /* one 500, one retry */
    ops_webhook_free(w);

    char *body = strstr(r->req, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    char want[OPS_WEBHOOK_SIGNATURE_BYTES], hdr[128];
    assert_int_equal(ops_webhook_sign("s3cret", body, strlen(body), want), VG_OK);
    snprintf(hdr, sizeof(hdr), "X-Vigil-Signature: %s\r\n", want);
    assert_non_null(strcasestr(r->req, hdr));
    json_error_t err;
    json_t *j = json_loads(body, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "receiver")), "vigil-critical");
    json_decref(j);

    char *text;
    size_t tl;
    assert_int_equal(obs_render_prometheus(reg, &text, &tl), VG_OK);
    assert_non_null(strstr(text, "vigil_alert_webhook_deliveries_total{receiver_severity="
                                 "\"critical\",outcome=\"retry\"} 1"));
    assert_non_null(strstr(text, "vigil_alert_webhook_deliveries_total{receiver_severity="
                                 "\"critical\",outcome=\"success\"} 1"));
    vg_free(text);
    obs_registry_free(reg);
    shutdown(r->fd, SHUT_RDWR);
    close(r->fd);
    pthread_join(th, NULL);
    free(r);
}

static void test_webhook_bad_url(void **state)
{
    (void)state;
    ops_webhook_config c;
    ops_webhook_config_default(&c);
    c.url_all = "ftp://example.com/x";
    ops_webhook *w = NULL;
    assert_int_equal(ops_webhook_new(&c, NULL, &w), VG_EINVAL);
    assert_null(w);
}

int main(void)
{
    vg_log_set_level(VG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_duration),
        cmocka_unit_test(test_single_spike_does_not_fire),
        cmocka_unit_test(test_warning_then_critical_and_min_requests),
        cmocka_unit_test(test_time_scale),
        cmocka_unit_test(test_index_sync_lag),
        cmocka_unit_test(test_anomaly_warmup),
        cmocka_unit_test(test_burn_rate_windows),
        cmocka_unit_test(test_escalation_and_ack),
        cmocka_unit_test(test_silences),
        cmocka_unit_test(test_event_hook),
        cmocka_unit_test(test_webhook_body),
        cmocka_unit_test(test_hmac),
        cmocka_unit_test(test_webhook_delivery_retry_and_signature),
        cmocka_unit_test(test_webhook_bad_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
