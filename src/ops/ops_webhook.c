/* Alert webhooks: the bounded notification queue, grouping, repeat, signing and the libcurl
 * delivery thread (see ops_webhook.h). libcurl is reached only from this file.
 *
 * Invariants: `inbox` is written by notifying threads and drained by the delivery thread under
 * mu; groups, the firing table and deliveries belong to the delivery thread alone. */
#include "ops/ops_webhook.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "obs/obs.h"

#define WEBHOOK_MAX_GROUPS 64     /* (severity, alertname) groups waiting for group_wait */
#define WEBHOOK_MAX_FIRING 128    /* firing alerts remembered for the repeat interval */
#define WEBHOOK_IDLE_WAIT_MS 1000 /* longest sleep of the thread with nothing due */
#define WEBHOOK_RECEIVERS 2       /* url_all and url_sev[severity] */

typedef struct note {
    ops_alert_view v;
    ops_notify_kind kind;
} note;

typedef struct group {
    int used;
    ops_severity sev;
    char name[OPS_ALERT_LABEL_BYTES];
    int64_t flush_ms;
    size_t n, truncated;
    ops_alert_view alerts[OPS_WEBHOOK_GROUP_MAX_ALERTS];
} group;

typedef struct firing {
    int used;
    ops_alert_view v;
    int64_t last_sent_ms;
} firing;

typedef struct delivery {
    char *url, *body; /* owned */
    size_t len;
    ops_severity sev;
    unsigned attempts;
    int64_t next_ms;
} delivery;

struct ops_webhook {
    ops_webhook_config cfg;
    char *url_all, *url_sev[OPS_SEVS], *secret, *external_url; /* owned copies */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int stop; /* set under mu; read without it by the transfer's progress check */
    pthread_t thread;
    note *inbox; /* ring of cfg.max_queue, under mu */
    size_t in_head, in_count;
    /* delivery thread only */
    group groups[WEBHOOK_MAX_GROUPS];
    firing firing[WEBHOOK_MAX_FIRING];
    delivery *dq; /* ring of cfg.max_queue */
    size_t dq_head, dq_count;
    CURL *curl;
    _Atomic uint64_t delivered;
    obs_metric *m_deliveries;
};

static const char *const sev_label[OPS_SEVS] = {"info", "warning", "critical", "emergency"};

void ops_webhook_config_default(ops_webhook_config *c)
{
    memset(c, 0, sizeof(*c));
    c->time_scale = 1;
    c->group_wait_ms = 10000;
    c->repeat_interval_ms = 4 * 3600 * 1000LL;
    c->timeout_ms = 5000;
    c->max_retries = 5;
    c->backoff_ms = 1000;
    c->backoff_max_ms = 60000;
    c->max_queue = OPS_WEBHOOK_MAX_QUEUE_DEFAULT;
}

static int64_t mono_ms(void)
{
    return (int64_t)(vg_now_ns() / 1000000u);
}

static int64_t scaled(const ops_webhook *w, int64_t ops_ms)
{
    return (int64_t)((double)ops_ms / w->cfg.time_scale);
}

static void count(ops_webhook *w, ops_severity sev, const char *outcome)
{
    obs_inc(w->m_deliveries, OBS_LABELS(sev_label[sev], outcome));
}

/* ---- body and signature ---------------------------------------------------------------------- */

static json_t *rfc3339(int64_t ms)
{
    if (ms == 0)
        return json_string("0001-01-01T00:00:00Z"); /* Alertmanager's "not ended" */
    char b[32];
    return json_string(vg_format_time(ms, b, sizeof(b)));
}

static json_t *labels_json(const ops_alert_view *a)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < a->n_labels; i++)
        json_object_set_new(o, a->label_name[i], json_string(a->label_value[i]));
    return o;
}

static json_t *annotations_json(const ops_alert_view *a)
{
    char v[64], t[64];
    snprintf(v, sizeof(v), "%.6g", a->value);
    snprintf(t, sizeof(t), "%.6g", a->threshold);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "summary", a->summary, "value", v, "threshold", t,
                     "alert_id", a->id, "initial_severity", ops_severity_name(a->initial_severity));
}

/* Keys of `acc` whose value differs in `o` (or is missing there) are removed. */
static void intersect(json_t *acc, json_t *o)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(acc, tmp, k, v)
    {
        json_t *x = json_object_get(o, k);
        if (!x || !json_equal(x, v))
            json_object_del(acc, k);
    }
}

int ops_webhook_body(const ops_alert_view *alerts, size_t n, size_t truncated, const char *receiver,
                     const char *external_url, char **out, size_t *out_len)
{
    if (!alerts || n == 0)
        return VG_EINVAL;
    const char *ext = external_url ? external_url : "";
    char gen[OPS_WEBHOOK_URL_MAX_BYTES + 32];
    snprintf(gen, sizeof(gen), "%s%s", ext, ext[0] ? "/api/v1/alerts" : "");
    json_t *arr = json_array(), *common_l = NULL, *common_a = NULL;
    int any_firing = 0;
    for (size_t i = 0; arr && i < n; i++) {
        const ops_alert_view *a = &alerts[i];
        int fir = a->state != OPS_ALERT_RESOLVED;
        any_firing |= fir;
        json_t *l = labels_json(a), *an = annotations_json(a);
        if (!l || !an) {
            json_decref(l), json_decref(an);
            continue;
        }
        if (!common_l) {
            common_l = json_deep_copy(l);
            common_a = json_deep_copy(an);
        } else {
            intersect(common_l, l);
            intersect(common_a, an);
        }
        json_array_append_new(
            arr, json_pack("{s:s,s:o,s:o,s:o,s:o,s:s,s:s}", "status", fir ? "firing" : "resolved",
                           "labels", l, "annotations", an, "startsAt", rfc3339(a->starts_at_ms),
                           "endsAt", rfc3339(fir ? 0 : a->ends_at_ms), "generatorURL", gen,
                           "fingerprint", a->fingerprint));
    }
    char gk[OPS_ALERT_LABEL_BYTES + 32];
    snprintf(gk, sizeof(gk), "{}:{alertname=\"%s\"}", alerts[0].name);
    json_t *root = json_pack("{s:s,s:s,s:s,s:{s:s},s:o,s:o,s:s,s:o,s:s,s:I}", "version", "4",
                             "status", any_firing ? "firing" : "resolved", "receiver",
                             receiver ? receiver : "vigil", "groupLabels", "alertname",
                             alerts[0].name, "commonLabels", common_l ? common_l : json_object(),
                             "commonAnnotations", common_a ? common_a : json_object(),
                             "externalURL", ext, "alerts", arr ? arr : json_array(), "groupKey", gk,
                             "truncatedAlerts", (json_int_t)truncated);
    if (!root)
        return VG_ENOMEM;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        return VG_ENOMEM;
    size_t len = strlen(s);
    char *copy = vg_malloc(len + 1);
    if (copy)
        memcpy(copy, s, len + 1);
    free(s);
    if (!copy)
        return VG_ENOMEM;
    *out = copy;
    *out_len = len;
    return VG_OK;
}

int ops_webhook_sign(const char *secret, const char *body, size_t len,
                     char out[OPS_WEBHOOK_SIGNATURE_BYTES])
{
    uint8_t mac[VG_SHA256_BYTES];
    int rc = vg_hmac_sha256(secret, strlen(secret), body, len, mac);
    if (rc != VG_OK)
        return rc;
    memcpy(out, "sha256=", 7);
    vg_hex_encode(mac, sizeof(mac), out + 7);
    return VG_OK;
}

/* ---- queueing (any thread) ------------------------------------------------------------------- */

void ops_webhook_notify(void *ctx, const ops_alert_view *a, ops_notify_kind kind)
{
    ops_webhook *w = ctx;
    pthread_mutex_lock(&w->mu);
    if (w->in_count == w->cfg.max_queue) {
        count(w, w->inbox[w->in_head].v.severity, "dropped");
        w->in_head = (w->in_head + 1) % w->cfg.max_queue;
        w->in_count--;
    }
    note *n = &w->inbox[(w->in_head + w->in_count++) % w->cfg.max_queue];
    n->v = *a;
    n->kind = kind;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

uint64_t ops_webhook_delivered(ops_webhook *w)
{
    return w->delivered;
}

/* ---- delivery thread ------------------------------------------------------------------------- */

static void group_add(ops_webhook *w, const ops_alert_view *a, int64_t now)
{
    group *g = NULL, *free_g = NULL;
    for (size_t i = 0; i < WEBHOOK_MAX_GROUPS; i++) {
        group *x = &w->groups[i];
        if (x->used && x->sev == a->severity && strcmp(x->name, a->name) == 0) {
            g = x;
            break;
        }
        if (!x->used && !free_g)
            free_g = x;
    }
    if (!g) {
        if (!free_g) {
            count(w, a->severity, "dropped");
            return;
        }
        g = free_g;
        memset(g, 0, sizeof(*g));
        g->used = 1;
        g->sev = a->severity;
        snprintf(g->name, sizeof(g->name), "%s", a->name);
        g->flush_ms = now + scaled(w, w->cfg.group_wait_ms);
    }
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->alerts[i].fingerprint, a->fingerprint) == 0) {
            g->alerts[i] = *a; /* the newest state of the same alert */
            return;
        }
    if (g->n < OPS_WEBHOOK_GROUP_MAX_ALERTS)
        g->alerts[g->n++] = *a;
    else
        g->truncated++;
}

static firing *firing_find(ops_webhook *w, const char *fp)
{
    for (size_t i = 0; i < WEBHOOK_MAX_FIRING; i++)
        if (w->firing[i].used && strcmp(w->firing[i].v.fingerprint, fp) == 0)
            return &w->firing[i];
    return NULL;
}

static void firing_note(ops_webhook *w, const ops_alert_view *a, int64_t now)
{
    firing *f = firing_find(w, a->fingerprint);
    if (a->state == OPS_ALERT_RESOLVED) {
        if (f)
            f->used = 0;
        return;
    }
    for (size_t i = 0; !f && i < WEBHOOK_MAX_FIRING; i++)
        if (!w->firing[i].used)
            f = &w->firing[i];
    if (!f)
        return; /* no repeat for this one; its first notification still goes out */
    f->used = 1;
    f->v = *a;
    f->last_sent_ms = now;
}

static void delivery_push(ops_webhook *w, const char *url, char *body, size_t len, ops_severity sev,
                          int64_t now)
{
    char *u = vg_strdup(url);
    if (!u) {
        vg_free(body);
        count(w, sev, "dropped");
        return;
    }
    if (w->dq_count == w->cfg.max_queue) {
        delivery *old = &w->dq[w->dq_head];
        count(w, old->sev, "dropped");
        vg_free(old->url);
        vg_free(old->body);
        w->dq_head = (w->dq_head + 1) % w->cfg.max_queue;
        w->dq_count--;
    }
    delivery *d = &w->dq[(w->dq_head + w->dq_count++) % w->cfg.max_queue];
    *d = (delivery){.url = u, .body = body, .len = len, .sev = sev, .next_ms = now};
}

static void group_flush(ops_webhook *w, group *g, int64_t now)
{
    const char *urls[WEBHOOK_RECEIVERS] = {w->url_all, w->url_sev[g->sev]};
    const char *names[WEBHOOK_RECEIVERS] = {"vigil", NULL};
    char sev_name[32];
    snprintf(sev_name, sizeof(sev_name), "vigil-%s", sev_label[g->sev]);
    names[1] = sev_name;
    for (int r = 0; r < WEBHOOK_RECEIVERS; r++) {
        if (!urls[r] || (r == 1 && urls[0] && strcmp(urls[0], urls[1]) == 0))
            continue;
        char *body;
        size_t len;
        if (ops_webhook_body(g->alerts, g->n, g->truncated, names[r], w->external_url, &body,
                             &len) != VG_OK) {
            count(w, g->sev, "dropped");
            continue;
        }
        delivery_push(w, urls[r], body, len, g->sev, now);
    }
    for (size_t i = 0; i < g->n; i++)
        firing_note(w, &g->alerts[i], now);
    g->used = 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

/* One POST. 0 when the receiver answered 2xx. */
static int abort_on_stop(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    return ((ops_webhook *)ud)->stop; /* nonzero aborts: shutdown never waits for a timeout */
}

static int post(ops_webhook *w, const delivery *d)
{
    if (!w->curl && !(w->curl = curl_easy_init()))
        return -1;
    CURL *c = w->curl;
    curl_easy_reset(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char sig_header[32 + OPS_WEBHOOK_SIGNATURE_BYTES];
    if (w->secret) {
        char sig[OPS_WEBHOOK_SIGNATURE_BYTES];
        if (ops_webhook_sign(w->secret, d->body, d->len, sig) == VG_OK) {
            snprintf(sig_header, sizeof(sig_header), "X-Vigil-Signature: %s", sig);
            h = curl_slist_append(h, sig_header);
        }
    }
    h = curl_slist_append(h, "User-Agent: vigil/" VG_VERSION);
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)w->cfg.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode cr = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    if (cr != CURLE_OK) {
        VG_WARN("ops", "webhook %s: %s", d->url, curl_easy_strerror(cr));
        return -1;
    }
    if (code < 200 || code > 299) {
        VG_WARN("ops", "webhook %s: HTTP %ld", d->url, code);
        return -1;
    }
    return 0;
}

/* Runs the first due delivery (the queue is FIFO by first try; a delivery waiting for its
 * backoff does not hold back younger ones that are due). Returns 1 if one ran. */
static int deliver_one(ops_webhook *w, int64_t now)
{
    for (size_t k = 0; k < w->dq_count; k++) {
        size_t i = (w->dq_head + k) % w->cfg.max_queue;
        delivery *d = &w->dq[i];
        if (d->next_ms > now)
            continue;
        int ok = post(w, d) == 0;
        d->attempts++;
        if (!ok && d->attempts <= w->cfg.max_retries) {
            count(w, d->sev, "retry");
            int64_t delay = w->cfg.backoff_ms;
            for (unsigned a = 1; a < d->attempts && delay < w->cfg.backoff_max_ms; a++)
                delay *= 2;
            d->next_ms =
                mono_ms() + (delay < w->cfg.backoff_max_ms ? delay : w->cfg.backoff_max_ms);
            return 1;
        }
        count(w, d->sev, ok ? "success" : "failure");
        w->delivered++;
        vg_free(d->url);
        vg_free(d->body);
        /* remove slot i: shift the ones after it down (the ring stays contiguous) */
        for (size_t m = k; m + 1 < w->dq_count; m++)
            w->dq[(w->dq_head + m) % w->cfg.max_queue] =
                w->dq[(w->dq_head + m + 1) % w->cfg.max_queue];
        w->dq_count--;
        return 1;
    }
    return 0;
}

static void *webhook_thread(void *arg)
{
    ops_webhook *w = arg;
    for (;;) {
        /* take the inbox */
        pthread_mutex_lock(&w->mu);
        if (w->stop) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        note batch[16];
        size_t nb = 0;
        while (w->in_count > 0 && nb < VG_ARRAY_LEN(batch)) {
            batch[nb++] = w->inbox[w->in_head];
            w->in_head = (w->in_head + 1) % w->cfg.max_queue;
            w->in_count--;
        }
        pthread_mutex_unlock(&w->mu);
        int64_t now = mono_ms();
        for (size_t i = 0; i < nb; i++)
            group_add(w, &batch[i].v, now);
        /* repeats of alerts still firing */
        int64_t repeat = scaled(w, w->cfg.repeat_interval_ms);
        for (size_t i = 0; repeat > 0 && i < WEBHOOK_MAX_FIRING; i++)
            if (w->firing[i].used && now - w->firing[i].last_sent_ms >= repeat) {
                w->firing[i].last_sent_ms = now;
                group_add(w, &w->firing[i].v, now);
            }
        int64_t next = now + WEBHOOK_IDLE_WAIT_MS;
        for (size_t i = 0; i < WEBHOOK_MAX_GROUPS; i++) {
            group *g = &w->groups[i];
            if (!g->used)
                continue;
            if (g->flush_ms <= now)
                group_flush(w, g, now);
            else if (g->flush_ms < next)
                next = g->flush_ms;
        }
        if (deliver_one(w, now))
            continue;
        for (size_t k = 0; k < w->dq_count; k++) {
            int64_t t = w->dq[(w->dq_head + k) % w->cfg.max_queue].next_ms;
            if (t < next)
                next = t;
        }
        if (nb == VG_ARRAY_LEN(batch))
            continue;
        /* sleep until something is due or notified */
        pthread_mutex_lock(&w->mu);
        if (!w->stop && w->in_count == 0) {
            int64_t wait = next - mono_ms();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (long)(wait % 1000) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            }
        }
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static int copy_url(const char *in, char **out)
{
    *out = NULL;
    if (!in || !*in)
        return VG_OK;
    if (strlen(in) >= OPS_WEBHOOK_URL_MAX_BYTES)
        return vg_err_set(VG_EINVAL, "webhook URL longer than %d bytes", OPS_WEBHOOK_URL_MAX_BYTES);
    if (strncmp(in, "http://", 7) != 0 && strncmp(in, "https://", 8) != 0)
        return vg_err_set(VG_EINVAL, "webhook URL '%.64s' is not http:// or https://", in);
    return (*out = vg_strdup(in)) ? VG_OK : VG_ENOMEM;
}

static void release(ops_webhook *w)
{
    vg_free(w->url_all);
    for (int s = 0; s < OPS_SEVS; s++)
        vg_free(w->url_sev[s]);
    vg_free(w->secret);
    vg_free(w->external_url);
    for (size_t k = 0; w->dq && k < w->dq_count; k++) {
        delivery *d = &w->dq[(w->dq_head + k) % w->cfg.max_queue];
        vg_free(d->url);
        vg_free(d->body);
    }
    vg_free(w->dq);
    vg_free(w->inbox);
    if (w->curl)
        curl_easy_cleanup(w->curl);
    vg_free(w);
}

int ops_webhook_new(const ops_webhook_config *cfg, struct obs_registry *reg, ops_webhook **out)
{
    if (!cfg || !out || !(cfg->time_scale >= 1) || cfg->max_queue == 0 || cfg->timeout_ms <= 0)
        return vg_err_set(VG_EINVAL, "webhook: bad configuration");
    ops_webhook *w = vg_calloc(1, sizeof(*w));
    if (!w)
        return VG_ENOMEM;
    w->cfg = *cfg;
    int rc = copy_url(cfg->url_all, &w->url_all);
    for (int s = 0; rc == VG_OK && s < OPS_SEVS; s++)
        rc = copy_url(cfg->url_sev[s], &w->url_sev[s]);
    if (rc == VG_OK && cfg->secret && *cfg->secret && !(w->secret = vg_strdup(cfg->secret)))
        rc = VG_ENOMEM;
    if (rc == VG_OK && !(w->external_url = vg_strdup(cfg->external_url ? cfg->external_url : "")))
        rc = VG_ENOMEM;
    if (rc == VG_OK) {
        w->inbox = vg_calloc(cfg->max_queue, sizeof(*w->inbox));
        w->dq = vg_calloc(cfg->max_queue, sizeof(*w->dq));
        if (!w->inbox || !w->dq)
            rc = VG_ENOMEM;
    }
    if (rc == VG_OK && reg)
        rc = obs_counter_register(reg, "vigil_alert_webhook_deliveries_total",
                                  "Alert webhook deliveries by the severity routed and outcome "
                                  "(success, retry, failure after the last retry, dropped from a "
                                  "full queue)",
                                  "receiver_severity,outcome", &w->m_deliveries);
    if (rc == VG_OK && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        rc = vg_err_set(VG_EINTERNAL, "curl_global_init failed");
    if (rc != VG_OK) {
        release(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, webhook_thread, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        release(w);
        return vg_err_set(VG_EINTERNAL, "cannot start the webhook thread");
    }
    *out = w;
    return VG_OK;
}

void ops_webhook_free(ops_webhook *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    release(w);
}
