/*
 * ops_alert: the alert engine. Once per ops tick it reads the KPI windows (ops_kpi.h) and the
 * SLIs and keeps a small set of alerts, each in the life cycle
 *
 *     (condition true) pending --`for` elapsed--> firing --(condition false)--> resolved
 *                      pending --(condition false before `for`)--> dropped (never notified)
 *
 * Four kinds of rule feed it:
 *   - threshold rules with the platform's defaults (CPU, memory, analysis P95, error rates,
 *     cache hit rate), each with a warning and a critical bound and a `for` duration, so one
 *     spike never fires;
 *   - anomaly detection: per KPI an exponentially weighted mean and variance; a value more than
 *     `anomaly_sigma` standard deviations from the mean, after a warm-up and a minimum sample
 *     count, raises an `anomaly` alert at severity info;
 *   - SLO burn-rate alerts in the multi-window form (1 h and 5 min both over 14.4x: critical
 *     page; 6 h and 30 min over 6x: critical page; 3 d and 6 h over 1x: warning ticket), the
 *     bad-event ratios read through a callback (the ops object's ops_sli_bad_ratio);
 *   - the index sync lag rule (several nodes, docs/SCALING.md): critical while the node's index
 *     has trailed the shared change log by more than its limit (index_max_lag) for `for`, read
 *     through a callback; such a node is not ready and, if it still gets analyses, misses
 *     references other nodes added.
 * Severities are info < warning < critical < emergency. A firing alert that nobody acknowledged
 * for `escalate_after` moves up one severity and is notified again. Silences (label matchers and
 * an end time) mute notifications without hiding the alert. Every transition is an event in a
 * bounded history; resolved alerts are kept in a bounded "recent" list.
 *
 * Time: every call takes now_ms (wall-clock ms; the tick's), so tests drive the engine with a
 * synthetic clock. Durations in ops_alert_config are ops time and are divided by time_scale.
 *
 * Thread-safety: one mutex guards everything; ops_alert_evaluate runs on the ops tick thread,
 * the API calls on network threads. The notify callback runs with that mutex held: it must be
 * quick and must not call back into the engine (the webhook only copies into its queue).
 */
#ifndef VG_OPS_ALERT_H
#define VG_OPS_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops_kpi.h"

struct obs_registry;
typedef struct json_t json_t;

typedef enum {
    OPS_SEV_INFO = 0,
    OPS_SEV_WARNING,
    OPS_SEV_CRITICAL,
    OPS_SEV_EMERGENCY,
    OPS_SEVS
} ops_severity;

typedef enum { OPS_ALERT_PENDING = 0, OPS_ALERT_FIRING, OPS_ALERT_RESOLVED } ops_alert_state;

/* "info" | "warning" | "critical" | "emergency"; "pending" | "firing" | "resolved". */
const char *ops_severity_name(ops_severity s);
const char *ops_alert_state_name(ops_alert_state s);
/* Parses a severity name; VG_EINVAL otherwise. */
int ops_severity_parse(const char *name, ops_severity *out);

/* SLOs the burn-rate rules read, in the order of ops.h's ops_slo (availability, analysis
 * latency, API latency, error rate). */
#define OPS_ALERT_SLOS 4
/* The fraction of bad events of SLO `slo` (an ops_slo value) over the last window_s seconds of
 * ops time; VG_ENOTFOUND when the window holds no events (the rule then stays quiet). */
typedef int (*ops_alert_sli_fn)(void *ctx, int slo, double window_s, int64_t now_ms, double *ratio);
/* The node's index sync lag now (ms: the larger of the oldest unapplied change-log row's age and
 * the time since the log was last read to its head) and its limit (ms). VG_ENOTFOUND when there
 * is nothing to measure (the rule then stays quiet). Called on the tick thread: must be quick. */
typedef int (*ops_alert_lag_fn)(void *ctx, double *lag_ms, double *limit_ms);

#define OPS_ALERT_MAX_LABELS 6
#define OPS_ALERT_LABEL_BYTES 48
#define OPS_ALERT_SUMMARY_BYTES 160
#define OPS_ALERT_ID_BYTES 24
#define OPS_ALERT_FINGERPRINT_BYTES 17 /* 16 hex digits + NUL */

/* A copy of one alert, as notifications and the API see it (plain value, no pointers). Labels
 * always start with alertname and severity; the rest identify the alert (kpi, slo, window). */
typedef struct ops_alert_view {
    char id[OPS_ALERT_ID_BYTES];
    char name[OPS_ALERT_LABEL_BYTES];
    ops_severity severity, initial_severity;
    ops_alert_state state;
    int acknowledged, silenced;
    int64_t acknowledged_at_ms; /* 0 = not */
    int64_t starts_at_ms;       /* fired (pending: became pending) */
    int64_t ends_at_ms;         /* 0 = still open */
    double value, threshold;
    char summary[OPS_ALERT_SUMMARY_BYTES];
    size_t n_labels;
    char label_name[OPS_ALERT_MAX_LABELS][OPS_ALERT_LABEL_BYTES];
    char label_value[OPS_ALERT_MAX_LABELS][OPS_ALERT_LABEL_BYTES];
    char fingerprint[OPS_ALERT_FINGERPRINT_BYTES]; /* hex of SHA-256 of the identity labels */
} ops_alert_view;

/* Why a notification is sent. */
typedef enum { OPS_NOTIFY_FIRING = 0, OPS_NOTIFY_RESOLVED, OPS_NOTIFY_ESCALATED } ops_notify_kind;
/* Called (engine mutex held) when an unsilenced alert fires, escalates, changes severity or
 * resolves. a borrowed for the call. */
typedef void (*ops_alert_notify_fn)(void *ctx, const ops_alert_view *a, ops_notify_kind kind);

/* Limits of the engine's memory. */
#define OPS_ALERT_MAX_ALERTS 64           /* open (pending + firing) alerts */
#define OPS_ALERT_MAX_MATCHERS 8          /* label matchers per silence */
#define OPS_ALERT_MAX_SILENCES_DEFAULT 64 /* active silences */
#define OPS_ALERT_MAX_EVENTS_DEFAULT 256  /* history ring */
#define OPS_ALERT_MAX_RECENT_DEFAULT 50   /* resolved alerts kept */
#define OPS_ALERT_MESSAGE_BYTES 200       /* one event's message */

typedef struct ops_alert_config {
    double time_scale; /* ops_time_scale: every *_ms below is divided by it (>= 1) */
    /* threshold rules: warning and critical bounds; NAN or <= 0 switches one bound off */
    double cpu_warning_pct, cpu_critical_pct;       /* 70, 90 */
    double memory_warning_pct, memory_critical_pct; /* 75, 90 */
    double latency_warning_ms, latency_critical_ms; /* analysis P95 over 1 min: 1500, 2000 */
    double error_rate_warning, error_rate_critical; /* fractions: 0.02, 0.05 */
    double cache_hit_warning, cache_hit_critical;   /* fractions, fire below: 0.60, 0.40 */
    double min_requests; /* error-rate rules need this many answers in the window: 20 */
    double min_lookups;  /* cache-hit rule needs this many analyses in the window: 100 */
    int64_t for_ms;      /* 60000 */
    /* anomaly detection */
    int anomaly;                  /* 1 = on */
    double anomaly_sigma;         /* 2 */
    int64_t anomaly_warmup_ms;    /* 600000: no anomaly in the first 10 min */
    unsigned anomaly_min_samples; /* 30 */
    int64_t anomaly_interval_ms;  /* one sample per KPI every 10 s */
    double anomaly_alpha;         /* EWMA weight of a new sample: 0.05 (~ the last 40 samples) */
    int64_t anomaly_for_ms;       /* 30000 */
    /* burn rate */
    int burn_rate;                     /* 1 = on */
    double slo_target[OPS_ALERT_SLOS]; /* 0.999, 0.999, 0.999, 0.99: budget = 1 - target */
    int64_t burn_interval_ms;          /* evaluate every 30 s */
    ops_alert_sli_fn sli;              /* NULL: no burn-rate rules */
    void *sli_ctx;                     /* borrowed */
    /* index sync lag: fires after for_ms over the limit */
    ops_alert_lag_fn index_lag; /* NULL: no index sync lag rule */
    void *index_lag_ctx;        /* borrowed */
    /* escalation, bounds */
    int64_t escalate_after_ms; /* 900000; 0 = never */
    size_t max_events, max_recent, max_silences;
    ops_alert_notify_fn notify; /* NULL: none */
    void *notify_ctx;           /* borrowed */
} ops_alert_config;

/* The platform's defaults (the values in the comments above). */
void ops_alert_config_default(ops_alert_config *c);

typedef struct ops_alert ops_alert;

/* cfg borrowed (copied). reg borrowed, may be NULL: with it, vigil_alerts_firing{severity} is
 * kept. *out owned (ops_alert_free). VG_EINVAL, VG_ENOMEM. */
int ops_alert_new(const ops_alert_config *cfg, struct obs_registry *reg, ops_alert **out);
void ops_alert_free(ops_alert *e);

/* The evaluate entry point, with the signature of ops.h's ops_tick_fn (ctx is the ops_alert).
 * Windows borrowed for the call; any may be NULL (its rules are skipped). */
void ops_alert_evaluate(void *ctx, const ops_kpis *w1m, const ops_kpis *w5m, const ops_kpis *w1h,
                        int64_t now_ms);

/* Acknowledges an open alert by id: no more escalation. VG_ENOTFOUND. *out (may be NULL) the
 * alert afterwards. */
int ops_alert_ack(ops_alert *e, const char *id, int64_t now_ms, ops_alert_view *out);

/* Adds a silence: names/values borrowed (copied), 1..OPS_ALERT_MAX_MATCHERS pairs, each name
 * and value non-empty and shorter than OPS_ALERT_LABEL_BYTES; ends_ms > now_ms. comment may be
 * NULL. *out_id (OPS_ALERT_ID_BYTES) gets its id. VG_EINVAL (detail names the problem),
 * VG_EBUSY when max_silences are active. */
int ops_alert_silence_add(ops_alert *e, const char *const *names, const char *const *values,
                          size_t n, int64_t ends_ms, const char *comment, int64_t now_ms,
                          char *out_id);
/* VG_ENOTFOUND when no active silence has that id. */
int ops_alert_silence_delete(ops_alert *e, const char *id, int64_t now_ms);

/* Logs an event from another module (self-healing actions: kind "self_heal"). kind and message
 * borrowed (copied, cut to OPS_ALERT_MESSAGE_BYTES); alert_id may be NULL. Thread-safe. */
void ops_alert_event(ops_alert *e, const char *kind, const char *alert_id, ops_severity sev,
                     const char *message, int64_t now_ms);

/* Snapshot of open alerts (pending and firing) into out (cap entries). Returns how many there
 * are (may exceed cap). */
size_t ops_alert_list(ops_alert *e, ops_alert_view *out, size_t cap);

/* JSON views (new references; NULL on out of memory):
 *   ops_alert_view_json: A = {"id","name","severity","initial_severity","state","acknowledged",
 *     "acknowledged_at","silenced","starts_at","ends_at","value","threshold","summary",
 *     "labels":{..},"fingerprint"} (times RFC 3339 UTC or null; NAN as null)
 *   ops_alert_json: {"firing":[A..],"recent":[A..],"silences":[S..],"events":[E..]}, where
 *     "firing" holds pending alerts too (their state says which), recent and events newest
 *     first, S = {"id","matchers":{..},"starts_at","ends_at","comment"} and
 *     E = {"at","kind","alert_id","severity","message"}
 *   ops_alert_silence_json: the S of one silence id (NULL if unknown). */
json_t *ops_alert_view_json(const ops_alert_view *a);
json_t *ops_alert_json(ops_alert *e, int64_t now_ms);
json_t *ops_alert_silence_json(ops_alert *e, const char *id);

#endif /* VG_OPS_ALERT_H */
