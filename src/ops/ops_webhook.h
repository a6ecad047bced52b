/*
 * ops_webhook: delivers alert notifications to HTTP receivers in Alertmanager's webhook format
 * (version "4"), so receivers written for Alertmanager work unchanged.
 *
 * The alert engine calls ops_webhook_notify (its ops_alert_notify_fn) with the engine's lock
 * held; that only copies the alert into a bounded queue and signals the delivery thread, so a
 * dead or slow receiver never slows the engine or a request. The thread
 *   - groups notifications by severity and alertname for group_wait (one POST carries every
 *     alert of the group: firing and resolved),
 *   - sends the group to the receivers of its severity: `url_all` (every severity) and
 *     `url_sev[severity]` (duplicates sent once),
 *   - re-sends still-firing alerts every repeat_interval,
 *   - signs the body (X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>)
 *     when a secret is set,
 *   - POSTs with a timeout, retries failures with exponential backoff, and keeps at most
 *     max_queue notifications and max_queue deliveries (dropping the oldest, counted).
 * Metrics: vigil_alert_webhook_deliveries_total{receiver_severity,outcome} with outcome
 * success | retry | failure (retries exhausted) | dropped (queue full).
 */
#ifndef VG_OPS_WEBHOOK_H
#define VG_OPS_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops_alert.h"

struct obs_registry;

#define OPS_WEBHOOK_GROUP_MAX_ALERTS                                                               \
    32 /* alerts in one body; more are counted in truncatedAlerts */
#define OPS_WEBHOOK_MAX_QUEUE_DEFAULT 256
#define OPS_WEBHOOK_URL_MAX_BYTES 2048
#define OPS_WEBHOOK_SIGNATURE_BYTES 72 /* "sha256=" + 64 hex + NUL */

typedef struct ops_webhook_config {
    const char *url_all;           /* every severity; NULL or "" = none (borrowed, copied) */
    const char *url_sev[OPS_SEVS]; /* per severity; NULL or "" = none */
    const char *secret;            /* HMAC key; NULL or "" = no signature header */
    const char *external_url;      /* externalURL and generatorURL base; "" = none */
    double time_scale;             /* group_wait and repeat_interval are ops time */
    int64_t group_wait_ms;         /* 10000 */
    int64_t repeat_interval_ms;    /* 14400000 (4 h, Alertmanager's default) */
    int64_t timeout_ms;            /* per POST, connect included: 5000 */
    unsigned max_retries;          /* after the first try: 5 */
    int64_t backoff_ms;            /* first retry delay, doubled each time: 1000 */
    int64_t backoff_max_ms;        /* 60000 */
    size_t max_queue;              /* OPS_WEBHOOK_MAX_QUEUE_DEFAULT */
} ops_webhook_config;

void ops_webhook_config_default(ops_webhook_config *c);

typedef struct ops_webhook ops_webhook;

/* Starts the delivery thread (even with no receiver: notifications are then only counted as
 * nothing). cfg borrowed (strings copied). reg borrowed, may be NULL. *out owned
 * (ops_webhook_free, which stops the thread; deliveries still queued are abandoned).
 * VG_EINVAL (a URL that is not http:// or https://, too long), VG_ENOMEM, VG_EINTERNAL. */
int ops_webhook_new(const ops_webhook_config *cfg, struct obs_registry *reg, ops_webhook **out);
void ops_webhook_free(ops_webhook *w);

/* ops_alert_notify_fn: ctx is the ops_webhook. Copies a, never blocks on I/O. */
void ops_webhook_notify(void *ctx, const ops_alert_view *a, ops_notify_kind kind);

/* Deliveries finished (success or final failure) since start, for tests. */
uint64_t ops_webhook_delivered(ops_webhook *w);

/* The Alertmanager v4 body for one group (alerts borrowed, n >= 1, all of one alertname):
 * status "firing" when any alert fires, else "resolved". truncated: alerts left out.
 * *out owned (vg_free), NUL-terminated. VG_ENOMEM, VG_EINVAL. */
int ops_webhook_body(const ops_alert_view *alerts, size_t n, size_t truncated, const char *receiver,
                     const char *external_url, char **out, size_t *out_len);

/* "sha256=<hex HMAC-SHA256 of body under secret>" into out (OPS_WEBHOOK_SIGNATURE_BYTES). */
int ops_webhook_sign(const char *secret, const char *body, size_t len,
                     char out[OPS_WEBHOOK_SIGNATURE_BYTES]);

#endif /* VG_OPS_WEBHOOK_H */
