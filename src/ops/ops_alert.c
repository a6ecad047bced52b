/* The alert engine: threshold, anomaly and burn-rate rules -> pending/firing/resolved alerts,
 * escalation, acknowledgements, silences and the event history (see ops_alert.h).
 *
 * Invariants: an alert slot is open (pending or firing) or free; resolved alerts live only as
 * copies in the `recent` ring. An alert's identity is its fingerprint (name + identity labels,
 * never the severity), so one rule condition is one alert however its severity moves. Every
 * open alert was observed by its rule on the last evaluation of that rule's source; an alert its
 * source did not report is resolved (firing) or dropped (pending) at once. */
#include "ops/ops_alert.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "obs/obs.h"

/* Sources of alerts: each is evaluated on its own schedule, and only the sources evaluated on a
 * tick may resolve their alerts on it. */
enum { SRC_THRESHOLD = 0, SRC_ANOMALY, SRC_BURN, SRCS };

/* KPIs watched by anomaly detection, with the smallest deviation that counts (in the KPI's
 * unit): a flat series has a standard deviation near 0, and a change of 0.1% CPU from it is
 * not an anomaly. */
#define ANOMALY_KPIS 8
#define ANOMALY_REL_FLOOR 0.02 /* deviations under 2% of the mean never count */

typedef struct anomaly_kpi {
    double mean, var;
    unsigned n;
    int64_t first_ms;
} anomaly_kpi;

typedef struct alert_slot {
    int used;
    int src;
    int seen;     /* observed by its source on this evaluation */
    int notified; /* a firing notification went out (so a resolved one follows) */
    int64_t pending_since_ms, last_escalation_ms, for_ms;
    ops_alert_view v;
} alert_slot;

typedef struct silence {
    int used;
    char id[OPS_ALERT_ID_BYTES];
    size_t n;
    char name[OPS_ALERT_MAX_MATCHERS][OPS_ALERT_LABEL_BYTES];
    char value[OPS_ALERT_MAX_MATCHERS][OPS_ALERT_LABEL_BYTES];
    int64_t starts_ms, ends_ms;
    char comment[OPS_ALERT_MESSAGE_BYTES];
} silence;

typedef struct event {
    int64_t at_ms;
    char kind[16];
    char alert_id[OPS_ALERT_ID_BYTES]; /* "" = none */
    ops_severity sev;
    char message[OPS_ALERT_MESSAGE_BYTES];
} event;

/* Owned by whoever created it; all fields under mu. */
struct ops_alert {
    ops_alert_config cfg;
    pthread_mutex_t mu;
    uint64_t next_id;
    alert_slot alerts[OPS_ALERT_MAX_ALERTS];
    silence *silences; /* cfg.max_silences */
    event *events;     /* ring of cfg.max_events */
    size_t ev_head, ev_count;
    ops_alert_view *recent; /* ring of cfg.max_recent */
    size_t rc_head, rc_count;
    anomaly_kpi anomaly[ANOMALY_KPIS];
    int64_t last_anomaly_ms, last_burn_ms;
    obs_metric *m_firing, *m_limit;
};

static const char *const sev_names[OPS_SEVS] = {"info", "warning", "critical", "emergency"};
static const char *const slo_names[OPS_ALERT_SLOS] = {"availability", "analysis_latency",
                                                      "api_latency", "error_rate"};

const char *ops_severity_name(ops_severity s)
{
    return (unsigned)s < OPS_SEVS ? sev_names[s] : "unknown";
}

const char *ops_alert_state_name(ops_alert_state s)
{
    switch (s) {
    case OPS_ALERT_PENDING:
        return "pending";
    case OPS_ALERT_FIRING:
        return "firing";
    default:
        return "resolved";
    }
}

int ops_severity_parse(const char *name, ops_severity *out)
{
    for (int i = 0; i < OPS_SEVS; i++)
        if (name && strcmp(name, sev_names[i]) == 0) {
            *out = (ops_severity)i;
            return VG_OK;
        }
    return VG_EINVAL;
}

void ops_alert_config_default(ops_alert_config *c)
{
    memset(c, 0, sizeof(*c));
    c->time_scale = 1;
    c->cpu_warning_pct = 70, c->cpu_critical_pct = 90;
    c->memory_warning_pct = 75, c->memory_critical_pct = 90;
    c->latency_warning_ms = 1500, c->latency_critical_ms = 2000;
    c->error_rate_warning = 0.02, c->error_rate_critical = 0.05;
    c->cache_hit_warning = 0.60, c->cache_hit_critical = 0.40;
    c->min_requests = 20;
    c->min_lookups = 100;
    c->for_ms = 60000;
    c->anomaly = 1;
    c->anomaly_sigma = 2;
    c->anomaly_warmup_ms = 600000;
    c->anomaly_min_samples = 30;
    c->anomaly_interval_ms = 10000;
    c->anomaly_alpha = 0.05;
    c->anomaly_for_ms = 30000;
    c->burn_rate = 1;
    c->slo_target[0] = 0.999, c->slo_target[1] = 0.999, c->slo_target[2] = 0.999;
    c->slo_target[3] = 0.99;
    c->burn_interval_ms = 30000;
    c->escalate_after_ms = 900000;
    c->max_events = OPS_ALERT_MAX_EVENTS_DEFAULT;
    c->max_recent = OPS_ALERT_MAX_RECENT_DEFAULT;
    c->max_silences = OPS_ALERT_MAX_SILENCES_DEFAULT;
}

/* An ops-time duration in real ms. */
static int64_t scaled(const ops_alert *e, int64_t ops_ms)
{
    return (int64_t)((double)ops_ms / e->cfg.time_scale);
}

int ops_alert_new(const ops_alert_config *cfg, struct obs_registry *reg, ops_alert **out)
{
    if (!cfg || !out || !(cfg->time_scale >= 1) || cfg->max_events == 0 || cfg->max_recent == 0 ||
        cfg->max_silences == 0 || !(cfg->anomaly_alpha > 0 && cfg->anomaly_alpha <= 1))
        return vg_err_set(VG_EINVAL, "alert engine: bad configuration");
    ops_alert *e = vg_calloc(1, sizeof(*e));
    if (!e)
        return VG_ENOMEM;
    e->cfg = *cfg;
    e->next_id = 1;
    e->silences = vg_calloc(cfg->max_silences, sizeof(*e->silences));
    e->events = vg_calloc(cfg->max_events, sizeof(*e->events));
    e->recent = vg_calloc(cfg->max_recent, sizeof(*e->recent));
    int rc = (e->silences && e->events && e->recent) ? VG_OK : VG_ENOMEM;
    if (rc == VG_OK && reg) {
        rc = obs_gauge_register(reg, "vigil_alerts_firing", "Alerts firing now, by severity",
                                "severity", &e->m_firing);
        if (rc == VG_OK)
            rc = obs_counter_register(reg, "vigil_alert_limit_hits_total",
                                      "Alerts or silences refused because the engine's table "
                                      "was full, by limit",
                                      "limit", &e->m_limit);
        for (int s = 0; rc == VG_OK && s < OPS_SEVS; s++)
            obs_set(e->m_firing, OBS_LABELS(sev_names[s]), 0);
    }
    if (rc != VG_OK) {
        vg_free(e->silences);
        vg_free(e->events);
        vg_free(e->recent);
        vg_free(e);
        return rc;
    }
    pthread_mutex_init(&e->mu, NULL);
    *out = e;
    return VG_OK;
}

void ops_alert_free(ops_alert *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->mu);
    vg_free(e->silences);
    vg_free(e->events);
    vg_free(e->recent);
    vg_free(e);
}

/* ---- events, silences ------------------------------------------------------------------------ */

static void event_add(ops_alert *e, const char *kind, const char *alert_id, ops_severity sev,
                      int64_t now_ms, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void event_add(ops_alert *e, const char *kind, const char *alert_id, ops_severity sev,
                      int64_t now_ms, const char *fmt, ...)
{
    size_t i = (e->ev_head + e->ev_count) % e->cfg.max_events;
    if (e->ev_count == e->cfg.max_events)
        e->ev_head = (e->ev_head + 1) % e->cfg.max_events; /* drop the oldest */
    else
        e->ev_count++;
    event *ev = &e->events[i];
    ev->at_ms = now_ms;
    snprintf(ev->kind, sizeof(ev->kind), "%s", kind);
    snprintf(ev->alert_id, sizeof(ev->alert_id), "%s", alert_id ? alert_id : "");
    ev->sev = sev;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->message, sizeof(ev->message), fmt, ap);
    va_end(ap);
}

void ops_alert_event(ops_alert *e, const char *kind, const char *alert_id, ops_severity sev,
                     const char *message, int64_t now_ms)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    event_add(e, kind ? kind : "event", alert_id, sev, now_ms, "%s", message ? message : "");
    pthread_mutex_unlock(&e->mu);
}

static const char *label_get(const ops_alert_view *v, const char *name)
{
    for (size_t i = 0; i < v->n_labels; i++)
        if (strcmp(v->label_name[i], name) == 0)
            return v->label_value[i];
    return NULL;
}

static int silence_matches(const silence *s, const ops_alert_view *v)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *have = label_get(v, s->name[i]);
        if (!have || strcmp(have, s->value[i]) != 0)
            return 0;
    }
    return 1;
}

static void silences_expire(ops_alert *e, int64_t now_ms)
{
    for (size_t i = 0; i < e->cfg.max_silences; i++)
        if (e->silences[i].used && e->silences[i].ends_ms <= now_ms) {
            e->silences[i].used = 0;
            event_add(e, "silence", NULL, OPS_SEV_INFO, now_ms, "silence %s expired",
                      e->silences[i].id);
        }
}

static int is_silenced(const ops_alert *e, const ops_alert_view *v)
{
    for (size_t i = 0; i < e->cfg.max_silences; i++)
        if (e->silences[i].used && silence_matches(&e->silences[i], v))
            return 1;
    return 0;
}

/* ---- alert life cycle ------------------------------------------------------------------------ */

static void set_severity(ops_alert_view *v, ops_severity sev)
{
    v->severity = sev;
    for (size_t i = 0; i < v->n_labels; i++)
        if (strcmp(v->label_name[i], "severity") == 0)
            snprintf(v->label_value[i], sizeof(v->label_value[i]), "%s", sev_names[sev]);
}

static void notify(ops_alert *e, alert_slot *a, ops_notify_kind kind)
{
    a->v.silenced = is_silenced(e, &a->v);
    if (a->v.silenced || !e->cfg.notify)
        return;
    if (kind != OPS_NOTIFY_RESOLVED)
        a->notified = 1;
    e->cfg.notify(e->cfg.notify_ctx, &a->v, kind);
}

static void recent_push(ops_alert *e, const ops_alert_view *v)
{
    size_t i = (e->rc_head + e->rc_count) % e->cfg.max_recent;
    if (e->rc_count == e->cfg.max_recent)
        e->rc_head = (e->rc_head + 1) % e->cfg.max_recent;
    else
        e->rc_count++;
    e->recent[i] = *v;
}

/* What a rule reports for one alert on one evaluation. */
typedef struct observation {
    int src;
    const char *name;
    const char *kv[2 * (OPS_ALERT_MAX_LABELS - 2)]; /* identity labels: name, value, ... */
    size_t n_kv;                                    /* pairs */
    ops_severity sev;
    double value, threshold;
    int64_t for_ms; /* ops time */
    char summary[OPS_ALERT_SUMMARY_BYTES];
} observation;

static void fingerprint(const observation *o, char out[OPS_ALERT_FINGERPRINT_BYTES])
{
    char buf[512];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", o->name);
    for (size_t i = 0; i < o->n_kv && n < sizeof(buf); i++)
        n +=
            (size_t)snprintf(buf + n, sizeof(buf) - n, "\x1f%s=%s", o->kv[2 * i], o->kv[2 * i + 1]);
    if (n > sizeof(buf))
        n = sizeof(buf);
    uint8_t h[VG_SHA256_BYTES] = {0};
    vg_sha256(buf, n, h);
    vg_hex_encode(h, 8, out);
}

static void fire(ops_alert *e, alert_slot *a, int64_t now_ms)
{
    a->v.state = OPS_ALERT_FIRING;
    a->v.starts_at_ms = now_ms;
    a->last_escalation_ms = now_ms;
    event_add(e, "alert", a->v.id, a->v.severity, now_ms, "%s firing: %s", a->v.name, a->v.summary);
    VG_WARN("ops", "alert %s %s (%s): %s", a->v.id, a->v.name, sev_names[a->v.severity],
            a->v.summary);
    notify(e, a, OPS_NOTIFY_FIRING);
}

static void observe(ops_alert *e, const observation *o, int64_t now_ms)
{
    char fp[OPS_ALERT_FINGERPRINT_BYTES];
    fingerprint(o, fp);
    alert_slot *a = NULL, *free_slot = NULL;
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++) {
        alert_slot *s = &e->alerts[i];
        if (s->used && strcmp(s->v.fingerprint, fp) == 0) {
            a = s;
            break;
        }
        if (!s->used && !free_slot)
            free_slot = s;
    }
    if (!a) {
        if (!free_slot) {
            obs_inc(e->m_limit, OBS_LABELS("alerts"));
            return;
        }
        a = free_slot;
        memset(a, 0, sizeof(*a));
        a->used = 1;
        a->src = o->src;
        a->pending_since_ms = now_ms;
        ops_alert_view *v = &a->v;
        snprintf(v->id, sizeof(v->id), "%llu", (unsigned long long)e->next_id++);
        snprintf(v->name, sizeof(v->name), "%s", o->name);
        memcpy(v->fingerprint, fp, sizeof(fp));
        v->state = OPS_ALERT_PENDING;
        v->starts_at_ms = now_ms;
        v->initial_severity = v->severity = o->sev;
        snprintf(v->label_name[0], OPS_ALERT_LABEL_BYTES, "alertname");
        snprintf(v->label_value[0], OPS_ALERT_LABEL_BYTES, "%s", o->name);
        snprintf(v->label_name[1], OPS_ALERT_LABEL_BYTES, "severity");
        v->n_labels = 2;
        for (size_t i = 0; i < o->n_kv && v->n_labels < OPS_ALERT_MAX_LABELS; i++, v->n_labels++) {
            snprintf(v->label_name[v->n_labels], OPS_ALERT_LABEL_BYTES, "%s", o->kv[2 * i]);
            snprintf(v->label_value[v->n_labels], OPS_ALERT_LABEL_BYTES, "%s", o->kv[2 * i + 1]);
        }
        set_severity(v, o->sev);
    }
    a->seen = 1;
    a->for_ms = o->for_ms;
    a->v.value = o->value;
    a->v.threshold = o->threshold;
    snprintf(a->v.summary, sizeof(a->v.summary), "%s", o->summary);
    if (a->v.state == OPS_ALERT_PENDING) {
        /* The severity of a pending alert follows the condition; it starts as that. */
        a->v.initial_severity = o->sev;
        set_severity(&a->v, o->sev);
    } else if (o->sev > a->v.severity) {
        /* Worse while firing (warning -> critical): notify the new severity's receivers. A
         * milder condition never lowers the severity of a firing alert (escalation may have
         * raised it on purpose). */
        set_severity(&a->v, o->sev);
        event_add(e, "alert", a->v.id, o->sev, now_ms, "%s now %s: %s", a->v.name,
                  sev_names[o->sev], a->v.summary);
        notify(e, a, OPS_NOTIFY_FIRING);
    }
}

/* After the rules of the sources in `done` ran: fire pending alerts whose `for` elapsed,
 * resolve or drop the ones their source no longer reports, escalate. */
static void advance(ops_alert *e, const int done[SRCS], int64_t now_ms)
{
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++) {
        alert_slot *a = &e->alerts[i];
        if (!a->used)
            continue;
        if (done[a->src] && !a->seen) {
            if (a->v.state == OPS_ALERT_FIRING) {
                a->v.state = OPS_ALERT_RESOLVED;
                a->v.ends_at_ms = now_ms;
                event_add(e, "alert", a->v.id, a->v.severity, now_ms, "%s resolved", a->v.name);
                VG_INFO("ops", "alert %s %s resolved", a->v.id, a->v.name);
                if (a->notified) {
                    a->v.silenced = is_silenced(e, &a->v);
                    if (e->cfg.notify)
                        e->cfg.notify(e->cfg.notify_ctx, &a->v, OPS_NOTIFY_RESOLVED);
                }
                recent_push(e, &a->v);
            }
            a->used = 0; /* a pending alert that cleared before `for` never existed */
            continue;
        }
        if (a->v.state == OPS_ALERT_PENDING && now_ms - a->pending_since_ms >= scaled(e, a->for_ms))
            fire(e, a, now_ms);
        if (a->v.state == OPS_ALERT_FIRING) {
            a->v.silenced = is_silenced(e, &a->v);
            if (!a->v.silenced && !a->notified)
                notify(e, a, OPS_NOTIFY_FIRING); /* a silence ended on a firing alert */
        }
        if (a->v.state == OPS_ALERT_FIRING && !a->v.acknowledged && e->cfg.escalate_after_ms > 0 &&
            a->v.severity < OPS_SEV_EMERGENCY &&
            now_ms - a->last_escalation_ms >= scaled(e, e->cfg.escalate_after_ms)) {
            set_severity(&a->v, (ops_severity)(a->v.severity + 1));
            a->last_escalation_ms = now_ms;
            event_add(e, "escalation", a->v.id, a->v.severity, now_ms,
                      "%s unacknowledged, escalated to %s", a->v.name, sev_names[a->v.severity]);
            VG_WARN("ops", "alert %s %s escalated to %s", a->v.id, a->v.name,
                    sev_names[a->v.severity]);
            notify(e, a, OPS_NOTIFY_ESCALATED);
        }
    }
}

/* ---- rules ----------------------------------------------------------------------------------- */

/* 0 = below both bounds, else the severity + 1. Bounds that are NAN or <= 0 are off. */
static int level_of(double v, double warn, double crit, int below)
{
    if (isnan(v))
        return 0;
    if (crit > 0 && (below ? v < crit : v > crit))
        return OPS_SEV_CRITICAL + 1;
    if (warn > 0 && (below ? v < warn : v > warn))
        return OPS_SEV_WARNING + 1;
    return 0;
}

static void threshold_rule(ops_alert *e, const char *name, const char *kpi, double v, double warn,
                           double crit, int below, const char *unit, double show_factor,
                           int64_t now_ms)
{
    int lv = level_of(v, warn, crit, below);
    if (!lv)
        return;
    observation o = {
        .src = SRC_THRESHOLD, .name = name, .n_kv = 1, .value = v, .for_ms = e->cfg.for_ms};
    o.kv[0] = "kpi", o.kv[1] = kpi;
    o.sev = (ops_severity)(lv - 1);
    o.threshold = o.sev == OPS_SEV_CRITICAL ? crit : warn;
    snprintf(o.summary, sizeof(o.summary), "%s %.4g%s over 1m (%s %s %.4g%s)", kpi, v * show_factor,
             unit, sev_names[o.sev], below ? "<" : ">", o.threshold * show_factor, unit);
    observe(e, &o, now_ms);
}

static void eval_thresholds(ops_alert *e, const ops_kpis *w1m, const ops_kpis *w5m, int64_t now_ms)
{
    const ops_alert_config *c = &e->cfg;
    if (w1m) {
        threshold_rule(e, "cpu_high", "cpu_percent", w1m->cpu_percent, c->cpu_warning_pct,
                       c->cpu_critical_pct, 0, "%", 1, now_ms);
        threshold_rule(e, "memory_high", "memory_percent", w1m->memory_percent,
                       c->memory_warning_pct, c->memory_critical_pct, 0, "%", 1, now_ms);
        threshold_rule(e, "response_time_high", "analysis_p95_ms", w1m->p95_ms[OPS_CLASS_ANALYSIS],
                       c->latency_warning_ms, c->latency_critical_ms, 0, " ms", 1, now_ms);
        /* A rate over three answers is noise: the error rules wait for min_requests. */
        if (w1m->request_rate * w1m->covered_s >= c->min_requests)
            threshold_rule(e, "error_rate_high", "error_rate", w1m->error_rate,
                           c->error_rate_warning, c->error_rate_critical, 0, "%", 100, now_ms);
        if (w1m->analysis_rate * w1m->covered_s >= c->min_requests)
            threshold_rule(e, "analysis_error_rate_high", "analysis_error_rate",
                           w1m->analysis_error_rate, c->error_rate_warning, c->error_rate_critical,
                           0, "%", 100, now_ms);
    }
    /* Hit rate over 5 min: every analysis is one lookup, so analyses stand for lookups. */
    if (w5m && w5m->analysis_rate * w5m->covered_s >= c->min_lookups)
        threshold_rule(e, "cache_hit_rate_low", "cache_hit_rate", w5m->cache_hit_rate[0],
                       c->cache_hit_warning, c->cache_hit_critical, 1, "%", 100, now_ms);
}

typedef struct anomaly_def {
    const char *kpi;
    double abs_floor; /* smallest deviation that counts, in the KPI's unit */
} anomaly_def;

static const anomaly_def anomaly_defs[ANOMALY_KPIS] = {
    {"request_rate", 0.5},    {"analysis_p95_ms", 5}, {"api_p95_ms", 5},     {"error_rate", 0.005},
    {"cache_hit_rate", 0.02}, {"cpu_percent", 2},     {"memory_percent", 1}, {"queue_depth", 1},
};

static double anomaly_value(const ops_kpis *w, int k)
{
    switch (k) {
    case 0:
        return w->request_rate;
    case 1:
        return w->p95_ms[OPS_CLASS_ANALYSIS];
    case 2:
        return w->p95_ms[OPS_CLASS_API];
    case 3:
        return w->error_rate;
    case 4:
        return w->cache_hit_rate[0];
    case 5:
        return w->cpu_percent;
    case 6:
        return w->memory_percent;
    default:
        return w->queue_depth;
    }
}

/* One sample per KPI: test it against the baseline so far, then fold it in (an anomaly that
 * lasts becomes the new normal, which is what "rolling" means: seasonality-free). */
static void eval_anomalies(ops_alert *e, const ops_kpis *w1m, int64_t now_ms)
{
    const ops_alert_config *c = &e->cfg;
    for (int k = 0; k < ANOMALY_KPIS; k++) {
        double x = anomaly_value(w1m, k);
        if (!isfinite(x))
            continue;
        anomaly_kpi *s = &e->anomaly[k];
        if (s->n == 0)
            s->first_ms = now_ms;
        if (s->n >= c->anomaly_min_samples &&
            now_ms - s->first_ms >= scaled(e, c->anomaly_warmup_ms)) {
            double sd = sqrt(s->var);
            double dev = fabs(x - s->mean);
            double floor = fmax(anomaly_defs[k].abs_floor, ANOMALY_REL_FLOOR * fabs(s->mean));
            if (dev > c->anomaly_sigma * sd && dev > floor) {
                observation o = {.src = SRC_ANOMALY,
                                 .name = "anomaly",
                                 .n_kv = 1,
                                 .value = x,
                                 .sev = OPS_SEV_INFO,
                                 .for_ms = c->anomaly_for_ms};
                o.kv[0] = "kpi", o.kv[1] = anomaly_defs[k].kpi;
                o.threshold =
                    x > s->mean ? s->mean + c->anomaly_sigma * sd : s->mean - c->anomaly_sigma * sd;
                snprintf(o.summary, sizeof(o.summary),
                         "%s %.4g is %.1f standard deviations from its rolling mean %.4g",
                         anomaly_defs[k].kpi, x, sd > 0 ? dev / sd : INFINITY, s->mean);
                observe(e, &o, now_ms);
            }
        }
        /* Welford for the first samples (an exact mean to start from), EWMA after. */
        double a = fmax(c->anomaly_alpha, 1.0 / (s->n + 1));
        double diff = x - s->mean;
        double incr = a * diff;
        s->mean += incr;
        s->var = (1 - a) * (s->var + diff * incr);
        if (s->n < UINT32_MAX)
            s->n++;
    }
}

typedef struct burn_def {
    double long_s, short_s, factor;
    ops_severity sev;
    const char *window, *kind;
} burn_def;

/* The SRE workbook's multi-window, multi-burn-rate alerts for a 30-day budget: 2% of the
 * budget in 1 h, 5% in 6 h (page), 10% in 3 d (ticket). */
static const burn_def burn_defs[] = {
    {3600, 300, 14.4, OPS_SEV_CRITICAL, "1h/5m", "page"},
    {21600, 1800, 6, OPS_SEV_CRITICAL, "6h/30m", "page"},
    {259200, 21600, 1, OPS_SEV_WARNING, "3d/6h", "ticket"},
};

static void eval_burn(ops_alert *e, int64_t now_ms)
{
    const ops_alert_config *c = &e->cfg;
    for (int slo = 0; slo < OPS_ALERT_SLOS; slo++) {
        double budget = 1 - c->slo_target[slo];
        if (!(budget > 0))
            continue;
        for (size_t d = 0; d < VG_ARRAY_LEN(burn_defs); d++) {
            const burn_def *b = &burn_defs[d];
            double rl, rs;
            if (c->sli(c->sli_ctx, slo, b->long_s, now_ms, &rl) != VG_OK ||
                c->sli(c->sli_ctx, slo, b->short_s, now_ms, &rs) != VG_OK)
                continue;
            double bl = rl / budget, bs = rs / budget;
            if (!(bl > b->factor && bs > b->factor))
                continue;
            observation o = {.src = SRC_BURN,
                             .name = "slo_burn_rate",
                             .n_kv = 3,
                             .sev = b->sev,
                             .value = bl,
                             .threshold = b->factor};
            o.kv[0] = "slo", o.kv[1] = slo_names[slo];
            o.kv[2] = "window", o.kv[3] = b->window;
            o.kv[4] = "page", o.kv[5] = b->kind;
            snprintf(o.summary, sizeof(o.summary),
                     "%s error budget burning at %.3gx over %s (%.3gx short), threshold %.3gx (%s)",
                     slo_names[slo], bl, b->window, bs, b->factor, b->kind);
            observe(e, &o, now_ms);
        }
    }
}

/* One severity: a lagging node misses references added elsewhere, and nginx's passive checks do
 * not read the health route, so it may go on answering. The limit is the node's own setting, so
 * the rule and the readiness check agree. */
static void eval_index_lag(ops_alert *e, int64_t now_ms)
{
    double lag_ms, limit_ms;
    if (e->cfg.index_lag(e->cfg.index_lag_ctx, &lag_ms, &limit_ms) != VG_OK || !(lag_ms > limit_ms))
        return;
    observation o = {.src = SRC_THRESHOLD,
                     .name = "index_sync_lag_high",
                     .n_kv = 1,
                     .sev = OPS_SEV_CRITICAL,
                     .value = lag_ms,
                     .threshold = limit_ms,
                     .for_ms = e->cfg.for_ms};
    o.kv[0] = "kpi", o.kv[1] = "index_sync_lag_ms";
    snprintf(o.summary, sizeof(o.summary),
             "index sync lag %.0f ms over its limit %.0f ms (index_max_lag): the node is not "
             "ready and misses other nodes' changes",
             lag_ms, limit_ms);
    observe(e, &o, now_ms);
}

void ops_alert_evaluate(void *ctx, const ops_kpis *w1m, const ops_kpis *w5m, const ops_kpis *w1h,
                        int64_t now_ms)
{
    (void)w1h;
    ops_alert *e = ctx;
    pthread_mutex_lock(&e->mu);
    silences_expire(e, now_ms);
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++)
        e->alerts[i].seen = 0;
    int done[SRCS] = {0};
    eval_thresholds(e, w1m, w5m, now_ms);
    if (e->cfg.index_lag)
        eval_index_lag(e, now_ms);
    done[SRC_THRESHOLD] = 1;
    if (e->cfg.anomaly && w1m &&
        (e->last_anomaly_ms == 0 ||
         now_ms - e->last_anomaly_ms >= scaled(e, e->cfg.anomaly_interval_ms))) {
        eval_anomalies(e, w1m, now_ms);
        e->last_anomaly_ms = now_ms;
        done[SRC_ANOMALY] = 1;
    }
    if (e->cfg.burn_rate && e->cfg.sli &&
        (e->last_burn_ms == 0 || now_ms - e->last_burn_ms >= scaled(e, e->cfg.burn_interval_ms))) {
        eval_burn(e, now_ms);
        e->last_burn_ms = now_ms;
        done[SRC_BURN] = 1;
    }
    advance(e, done, now_ms);
    if (e->m_firing) {
        unsigned firing[OPS_SEVS] = {0};
        for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++)
            if (e->alerts[i].used && e->alerts[i].v.state == OPS_ALERT_FIRING)
                firing[e->alerts[i].v.severity]++;
        for (int s = 0; s < OPS_SEVS; s++)
            obs_set(e->m_firing, OBS_LABELS(sev_names[s]), firing[s]);
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- API ------------------------------------------------------------------------------------- */

static alert_slot *find_alert(ops_alert *e, const char *id)
{
    for (size_t i = 0; id && i < OPS_ALERT_MAX_ALERTS; i++)
        if (e->alerts[i].used && strcmp(e->alerts[i].v.id, id) == 0)
            return &e->alerts[i];
    return NULL;
}

int ops_alert_ack(ops_alert *e, const char *id, int64_t now_ms, ops_alert_view *out)
{
    pthread_mutex_lock(&e->mu);
    alert_slot *a = find_alert(e, id);
    if (!a) {
        pthread_mutex_unlock(&e->mu);
        return vg_err_set(VG_ENOTFOUND, "no open alert with id '%s'", id ? id : "");
    }
    if (!a->v.acknowledged) {
        a->v.acknowledged = 1;
        a->v.acknowledged_at_ms = now_ms;
        event_add(e, "ack", a->v.id, a->v.severity, now_ms, "%s acknowledged", a->v.name);
    }
    if (out)
        *out = a->v;
    pthread_mutex_unlock(&e->mu);
    return VG_OK;
}

int ops_alert_silence_add(ops_alert *e, const char *const *names, const char *const *values,
                          size_t n, int64_t ends_ms, const char *comment, int64_t now_ms,
                          char *out_id)
{
    if (n == 0 || n > OPS_ALERT_MAX_MATCHERS)
        return vg_err_set(VG_EINVAL, "a silence needs 1 to %d matchers", OPS_ALERT_MAX_MATCHERS);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !values[i] || !*names[i] || !*values[i])
            return vg_err_set(VG_EINVAL, "matcher %zu: name and value must be non-empty", i);
        if (strlen(names[i]) >= OPS_ALERT_LABEL_BYTES || strlen(values[i]) >= OPS_ALERT_LABEL_BYTES)
            return vg_err_set(VG_EINVAL, "matcher '%.32s': names and values are at most %d bytes",
                              names[i], OPS_ALERT_LABEL_BYTES - 1);
    }
    if (ends_ms <= now_ms)
        return vg_err_set(VG_EINVAL, "ends_at must be in the future");
    pthread_mutex_lock(&e->mu);
    silences_expire(e, now_ms);
    silence *s = NULL;
    for (size_t i = 0; i < e->cfg.max_silences && !s; i++)
        if (!e->silences[i].used)
            s = &e->silences[i];
    if (!s) {
        obs_inc(e->m_limit, OBS_LABELS("silences"));
        pthread_mutex_unlock(&e->mu);
        return vg_err_set(VG_EBUSY, "%zu silences are active (alert_max_silences)",
                          e->cfg.max_silences);
    }
    memset(s, 0, sizeof(*s));
    s->used = 1;
    snprintf(s->id, sizeof(s->id), "s%llu", (unsigned long long)e->next_id++);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(s->name[i], sizeof(s->name[i]), "%s", names[i]);
        snprintf(s->value[i], sizeof(s->value[i]), "%s", values[i]);
    }
    s->starts_ms = now_ms;
    s->ends_ms = ends_ms;
    snprintf(s->comment, sizeof(s->comment), "%s", comment ? comment : "");
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++)
        if (e->alerts[i].used)
            e->alerts[i].v.silenced = is_silenced(e, &e->alerts[i].v);
    char tb[32];
    event_add(e, "silence", NULL, OPS_SEV_INFO, now_ms, "silence %s added until %s: %s", s->id,
              vg_format_time(ends_ms, tb, sizeof(tb)), s->comment);
    snprintf(out_id, OPS_ALERT_ID_BYTES, "%s", s->id);
    pthread_mutex_unlock(&e->mu);
    return VG_OK;
}

int ops_alert_silence_delete(ops_alert *e, const char *id, int64_t now_ms)
{
    pthread_mutex_lock(&e->mu);
    silences_expire(e, now_ms);
    int rc = vg_err_set(VG_ENOTFOUND, "no active silence with id '%s'", id ? id : "");
    for (size_t i = 0; id && i < e->cfg.max_silences; i++)
        if (e->silences[i].used && strcmp(e->silences[i].id, id) == 0) {
            e->silences[i].used = 0;
            event_add(e, "silence", NULL, OPS_SEV_INFO, now_ms, "silence %s deleted", id);
            rc = VG_OK;
        }
    for (size_t i = 0; rc == VG_OK && i < OPS_ALERT_MAX_ALERTS; i++)
        if (e->alerts[i].used)
            e->alerts[i].v.silenced = is_silenced(e, &e->alerts[i].v);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

size_t ops_alert_list(ops_alert *e, ops_alert_view *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++)
        if (e->alerts[i].used) {
            if (n < cap)
                out[n] = e->alerts[i].v;
            n++;
        }
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static json_t *jtime(int64_t ms)
{
    if (ms == 0)
        return json_null();
    char b[32];
    return json_string(vg_format_time(ms, b, sizeof(b)));
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *ops_alert_view_json(const ops_alert_view *a)
{
    json_t *labels = json_object();
    for (size_t i = 0; labels && i < a->n_labels; i++)
        json_object_set_new(labels, a->label_name[i], json_string(a->label_value[i]));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:o,s:b,s:o,s:o,s:o,s:o,s:s,s:o,s:s}", "id", a->id,
                     "name", a->name, "severity", ops_severity_name(a->severity),
                     "initial_severity", ops_severity_name(a->initial_severity), "state",
                     ops_alert_state_name(a->state), "acknowledged", a->acknowledged,
                     "acknowledged_at", jtime(a->acknowledged_at_ms), "silenced", a->silenced,
                     "starts_at", jtime(a->starts_at_ms), "ends_at", jtime(a->ends_at_ms), "value",
                     jnum(a->value), "threshold", jnum(a->threshold), "summary", a->summary,
                     "labels", labels ? labels : json_null(), "fingerprint", a->fingerprint);
}

static json_t *silence_json(const silence *s)
{
    json_t *m = json_object();
    for (size_t i = 0; m && i < s->n; i++)
        json_object_set_new(m, s->name[i], json_string(s->value[i]));
    return json_pack("{s:s,s:o,s:o,s:o,s:s}", "id", s->id, "matchers", m ? m : json_null(),
                     "starts_at", jtime(s->starts_ms), "ends_at", jtime(s->ends_ms), "comment",
                     s->comment);
}

json_t *ops_alert_silence_json(ops_alert *e, const char *id)
{
    json_t *out = NULL;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; id && i < e->cfg.max_silences && !out; i++)
        if (e->silences[i].used && strcmp(e->silences[i].id, id) == 0)
            out = silence_json(&e->silences[i]);
    pthread_mutex_unlock(&e->mu);
    return out;
}

json_t *ops_alert_json(ops_alert *e, int64_t now_ms)
{
    json_t *firing = json_array(), *recent = json_array(), *sil = json_array(),
           *events = json_array();
    json_t *root = json_pack("{s:o,s:o,s:o,s:o}", "firing", firing, "recent", recent, "silences",
                             sil, "events", events);
    if (!root)
        return NULL;
    pthread_mutex_lock(&e->mu);
    silences_expire(e, now_ms);
    /* Open alerts, oldest first (slot order is reuse order, so sort by numeric id). */
    const alert_slot *order[OPS_ALERT_MAX_ALERTS];
    size_t n = 0;
    for (size_t i = 0; i < OPS_ALERT_MAX_ALERTS; i++)
        if (e->alerts[i].used) {
            size_t j = n++;
            unsigned long long id = strtoull(e->alerts[i].v.id, NULL, 10);
            while (j > 0 && strtoull(order[j - 1]->v.id, NULL, 10) > id) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = &e->alerts[i];
        }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(firing, ops_alert_view_json(&order[i]->v));
    for (size_t k = 0; k < e->rc_count; k++) {
        size_t i = (e->rc_head + e->rc_count - 1 - k) % e->cfg.max_recent;
        json_array_append_new(recent, ops_alert_view_json(&e->recent[i]));
    }
    for (size_t i = 0; i < e->cfg.max_silences; i++)
        if (e->silences[i].used)
            json_array_append_new(sil, silence_json(&e->silences[i]));
    for (size_t k = 0; k < e->ev_count; k++) {
        const event *ev = &e->events[(e->ev_head + e->ev_count - 1 - k) % e->cfg.max_events];
        json_array_append_new(
            events, json_pack("{s:o,s:s,s:o,s:s,s:s}", "at", jtime(ev->at_ms), "kind", ev->kind,
                              "alert_id", ev->alert_id[0] ? json_string(ev->alert_id) : json_null(),
                              "severity", ops_severity_name(ev->sev), "message", ev->message));
    }
    pthread_mutex_unlock(&e->mu);
    return root;
}
