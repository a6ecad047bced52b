/* Alert API (admin): the engine's alerts, history and silences (ops_alert.h), and
 * acknowledgements. The engine does the work; these handlers parse and answer. */
#include "server/server_int.h"

#include <string.h>

#include "ops/ops.h"
#include "ops/ops_alert.h"
#include "ops/ops_webhook.h"

static int have_engine(http_req *req, server *s)
{
    if (s->alerts)
        return 1;
    server__unavailable(req, "ops");
    return 0;
}

void server__api_alerts(http_req *req, void *ud)
{
    server *s = ud;
    if (!have_engine(req, s))
        return;
    json_t *o = ops_alert_json(s->alerts, vg_wall_ms());
    if (!o) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    http_reply_json(req, 200, o);
}

void server__api_alert_ack(http_req *req, void *ud)
{
    server *s = ud;
    if (!have_engine(req, s))
        return;
    ops_alert_view v;
    int rc = ops_alert_ack(s->alerts, http_req_param(req, "alert_id"), vg_wall_ms(), &v);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot acknowledge");
        return;
    }
    http_reply_json(req, 200, ops_alert_view_json(&v));
}

void server__api_silence_list(http_req *req, void *ud)
{
    server *s = ud;
    if (!have_engine(req, s))
        return;
    json_t *o = ops_alert_json(s->alerts, vg_wall_ms());
    json_t *sil = o ? json_incref(json_object_get(o, "silences")) : NULL;
    json_decref(o);
    if (!sil) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    json_t *r = json_object();
    json_object_set_new(r, "items", sil);
    http_reply_json(req, 200, r);
}

/* {"matchers":{"label":"value",...},"ends_at":RFC 3339 | ms,"comment":".."} -> 201 S */
void server__api_silence_create(http_req *req, void *ud)
{
    server *s = ud;
    if (!have_engine(req, s))
        return;
    json_t *body;
    if (server__body_json(req, &body))
        return;
    json_t *m = json_object_get(body, "matchers"), *ends = json_object_get(body, "ends_at"),
           *comment = json_object_get(body, "comment");
    const char *names[OPS_ALERT_MAX_MATCHERS], *values[OPS_ALERT_MAX_MATCHERS];
    size_t n = 0;
    int64_t ends_ms = 0;
    const char *bad = NULL;
    if (!json_is_object(m) || json_object_size(m) == 0 ||
        json_object_size(m) > OPS_ALERT_MAX_MATCHERS)
        bad = "matchers: an object of 1 to 8 label names and values is required";
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (bad || n == OPS_ALERT_MAX_MATCHERS)
            break;
        if (!json_is_string(v)) {
            bad = "matchers: every value must be a string";
            break;
        }
        names[n] = k;
        values[n++] = json_string_value(v);
    }
    if (!bad) {
        if (json_is_integer(ends))
            ends_ms = (int64_t)json_integer_value(ends);
        else if (!json_is_string(ends) ||
                 server__parse_time(json_string_value(ends), &ends_ms) != VG_OK)
            bad = "ends_at: an RFC 3339 UTC time or milliseconds since the epoch is required";
    }
    if (!bad && comment && !json_is_string(comment))
        bad = "comment: must be a string";
    if (bad) {
        http_reply_error(req, 422, "invalid_field", "%s", bad);
        json_decref(body);
        return;
    }
    char id[OPS_ALERT_ID_BYTES];
    vg_err_clear();
    int rc = ops_alert_silence_add(s->alerts, names, values, n, ends_ms,
                                   comment ? json_string_value(comment) : NULL, vg_wall_ms(), id);
    json_decref(body);
    if (rc == VG_EBUSY) { /* the silence table is full: the request cannot be met as sent */
        http_reply_error(req, 422, "limit", "%s", vg_err_msg());
        return;
    }
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot add the silence");
        return;
    }
    json_t *o = ops_alert_silence_json(s->alerts, id);
    if (!o) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    http_reply_json(req, 201, o);
}

void server__api_silence_delete(http_req *req, void *ud)
{
    server *s = ud;
    if (!have_engine(req, s))
        return;
    int rc = ops_alert_silence_delete(s->alerts, http_req_param(req, "silence_id"), vg_wall_ms());
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot delete the silence");
        return;
    }
    http_reply_data(req, 204, "text/plain", "", 0);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

/* SLIs of the burn-rate rules: the ops object's (ctx), on the ops thread. */
static int alerts_sli(void *ctx, int slo, double window_s, int64_t now_ms, double *ratio)
{
    return ops_sli_bad_ratio(ctx, (ops_slo)slo, window_s, now_ms, ratio);
}

/* The index sync lag rule's reading: the same two ages and limit as the index_sync health
 * check (server.c), from the catalog's sync counters. */
static int alerts_index_lag(void *ctx, double *lag_ms, double *limit_ms)
{
    server *s = ctx;
    if (!s->cat)
        return VG_ENOTFOUND;
    catalog_sync_stats ss;
    catalog_sync_stats_get(s->cat, &ss);
    *lag_ms = (double)(ss.lag_ms > ss.since_poll_ms ? ss.lag_ms : ss.since_poll_ms);
    *limit_ms = (double)s->cfg->index_max_lag_ms;
    return VG_OK;
}

int server__alerts_open(server *s)
{
    const conf_settings *c = s->cfg;
    double time_scale = s->ops ? ops_time_scale(s->ops) : 1;
    ops_webhook_config wc;
    ops_webhook_config_default(&wc);
    wc.url_all = c->alert_webhook;
    wc.url_sev[OPS_SEV_INFO] = c->alert_webhook_info;
    wc.url_sev[OPS_SEV_WARNING] = c->alert_webhook_warning;
    wc.url_sev[OPS_SEV_CRITICAL] = c->alert_webhook_critical;
    wc.url_sev[OPS_SEV_EMERGENCY] = c->alert_webhook_emergency;
    wc.secret = c->alert_webhook_secret;
    wc.external_url = c->alert_external_url;
    wc.time_scale = time_scale;
    wc.group_wait_ms = (int64_t)c->alert_group_wait_ms;
    wc.repeat_interval_ms = (int64_t)c->alert_repeat_interval_ms;
    wc.timeout_ms = (int64_t)c->alert_webhook_timeout_ms;
    wc.max_retries = (unsigned)c->alert_webhook_retries;
    wc.max_queue = (size_t)c->alert_webhook_queue;
    int rc = ops_webhook_new(&wc, s->reg, &s->webhook);
    if (rc != VG_OK)
        return rc;

    ops_alert_config ac;
    ops_alert_config_default(&ac);
    ac.time_scale = time_scale;
    ac.cpu_warning_pct = c->alert_cpu_warning;
    ac.cpu_critical_pct = c->alert_cpu_critical;
    ac.memory_warning_pct = c->alert_memory_warning;
    ac.memory_critical_pct = c->alert_memory_critical;
    ac.latency_warning_ms = (double)c->alert_latency_warning_ms;
    ac.latency_critical_ms = (double)c->alert_latency_critical_ms;
    ac.error_rate_warning = c->alert_error_rate_warning / 100;
    ac.error_rate_critical = c->alert_error_rate_critical / 100;
    ac.cache_hit_warning = c->alert_cache_hit_warning / 100;
    ac.cache_hit_critical = c->alert_cache_hit_critical / 100;
    ac.min_requests = (double)c->alert_min_requests;
    ac.min_lookups = (double)c->alert_min_lookups;
    ac.for_ms = (int64_t)c->alert_for_ms;
    ac.anomaly = c->alert_anomaly;
    ac.anomaly_sigma = c->alert_anomaly_sigma;
    ac.anomaly_warmup_ms = (int64_t)c->alert_anomaly_warmup_ms;
    ac.anomaly_min_samples = (unsigned)c->alert_anomaly_min_samples;
    ac.burn_rate = c->alert_burn_rate;
    ac.escalate_after_ms = (int64_t)c->alert_escalate_after_ms;
    ac.max_events = (size_t)c->alert_max_events;
    ac.max_recent = (size_t)c->alert_max_recent;
    ac.max_silences = (size_t)c->alert_max_silences;
    if (s->ops) {
        _Static_assert(OPS_ALERT_SLOS == OPS_SLOS, "the burn-rate rules cover every ops_slo");
        for (int i = 0; i < OPS_ALERT_SLOS; i++)
            ac.slo_target[i] = ops_slo_target(s->ops, (ops_slo)i);
        ac.sli = alerts_sli;
        ac.sli_ctx = s->ops;
    }
    ac.index_lag = alerts_index_lag;
    ac.index_lag_ctx = s;
    ac.notify = ops_webhook_notify;
    ac.notify_ctx = s->webhook;
    rc = ops_alert_new(&ac, s->reg, &s->alerts);
    if (rc == VG_OK && s->ops)
        rc = ops_tick_add(s->ops, ops_alert_evaluate, s->alerts);
    return rc;
}

void server__alerts_close(server *s)
{
    ops_alert_free(s->alerts);
    s->alerts = NULL;
    ops_webhook_free(s->webhook);
    s->webhook = NULL;
}
