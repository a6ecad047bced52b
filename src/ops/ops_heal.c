/*
 * ops_heal: the self-healing engine (contract in ops_heal.h).
 *
 * Per condition a small state machine: inactive -> active when the KPI crosses the trigger
 * threshold (since_ms = then), active -> inactive only when it crosses the clear threshold.
 * While active and held for `for`, each action of the condition runs when its cooldown has
 * passed and its per-hour budget is not spent; a spent budget is recorded once per cooldown as
 * rate_limited, so the history shows it without filling up.
 *
 * Invariants (under mu): history is a ring of the last OPS_HEAL_HISTORY records; times[a] holds
 * the ops times of action a's last max_per_hour runs (ok, failed or dry-run).
 */
#include "ops/ops_heal.h"

#include "core/core.h"
#include "obs/obs.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HEAL_TEXT 160
/* Far over the memory limit: clear L1 instead of halving it. */
#define HEAL_MEMORY_FAR_POINTS 10.0
#define HEAL_RSS_FAR_FACTOR 1.2
#define HEAL_RSS_CLEAR_FACTOR 0.9

enum { COND_MEMORY = 0, COND_SLOW, COND_ERRORS, COND_HIT, CONDS };

static const char *const action_names[OPS_HEAL_ACTIONS] = {"memory_trim", "retune", "add_replica",
                                                           "replace_replica", "raise_l1"};
static const char *const outcomes[] = {"ok", "failed", "dry_run", "rate_limited", "skipped"};
#define HEAL_OUTCOMES 5
enum { OUT_OK = 0, OUT_FAILED, OUT_DRY_RUN, OUT_RATE_LIMITED, OUT_SKIPPED };

typedef struct heal_record {
    int64_t at_ms;
    ops_heal_action action;
    int dry_run;
    char trigger[HEAL_TEXT], before[HEAL_TEXT], after[HEAL_TEXT], message[HEAL_TEXT];
} heal_record;

typedef struct heal_cond {
    int active;
    int64_t since_ms;
} heal_cond;

/* Owned by the server; ticked on the ops thread, read by HTTP threads under mu. */
struct ops_heal {
    ops_heal_config cfg;
    ops_heal_hooks hooks;
    pthread_mutex_t mu;
    heal_cond cond[CONDS];
    int64_t last_ms[OPS_HEAL_ACTIONS]; /* last run or rate-limit record; 0 = never */
    int64_t times[OPS_HEAL_ACTIONS][OPS_HEAL_MAX_PER_HOUR];
    unsigned ntimes[OPS_HEAL_ACTIONS], tpos[OPS_HEAL_ACTIONS];
    uint64_t counts[OPS_HEAL_ACTIONS][HEAL_OUTCOMES];
    heal_record hist[OPS_HEAL_HISTORY];
    unsigned hpos, hcount;
    struct obs_metric *metric;
};

const char *ops_heal_action_name(ops_heal_action a)
{
    return (unsigned)a < OPS_HEAL_ACTIONS ? action_names[a] : "unknown";
}

const char *ops_heal_mode_name(ops_heal_mode m)
{
    return m == OPS_HEAL_ON ? "on" : m == OPS_HEAL_DRY_RUN ? "dry-run" : "off";
}

int ops_heal_mode_parse(const char *s, ops_heal_mode *out)
{
    if (s && strcmp(s, "on") == 0)
        *out = OPS_HEAL_ON;
    else if (s && (strcmp(s, "dry-run") == 0 || strcmp(s, "dry_run") == 0))
        *out = OPS_HEAL_DRY_RUN;
    else if (s && strcmp(s, "off") == 0)
        *out = OPS_HEAL_OFF;
    else
        return vg_err_set(VG_EINVAL, "self_heal must be off, dry-run or on");
    return VG_OK;
}

void ops_heal_config_init(ops_heal_config *c)
{
    memset(c, 0, sizeof *c);
    c->mode = OPS_HEAL_ON;
    c->time_scale = 1;
    c->memory_percent = OPS_HEAL_DEFAULT_MEMORY_PERCENT;
    c->memory_clear_percent = OPS_HEAL_DEFAULT_MEMORY_CLEAR_PERCENT;
    c->l1_min_entries = OPS_HEAL_DEFAULT_L1_MIN_ENTRIES;
    c->p95_ms = OPS_HEAL_DEFAULT_P95_MS;
    c->p95_clear_ms = 0.8 * OPS_HEAL_DEFAULT_P95_MS;
    c->min_batch = OPS_HEAL_DEFAULT_MIN_BATCH;
    c->min_delay_us = OPS_HEAL_DEFAULT_MIN_DELAY_US;
    c->warm_entries = OPS_HEAL_DEFAULT_WARM_ENTRIES;
    c->error_rate = OPS_HEAL_DEFAULT_ERROR_RATE;
    c->error_clear_rate = 0.5 * OPS_HEAL_DEFAULT_ERROR_RATE;
    c->replace_streak = OPS_HEAL_DEFAULT_REPLACE_STREAK;
    c->hit_rate = OPS_HEAL_DEFAULT_HIT_RATE;
    c->hit_clear_rate = OPS_HEAL_DEFAULT_HIT_RATE + 0.1;
    c->l1_budget_bytes = OPS_HEAL_DEFAULT_L1_BUDGET_BYTES;
    c->for_s = OPS_HEAL_DEFAULT_FOR_S;
    c->cooldown_s = OPS_HEAL_DEFAULT_COOLDOWN_S;
    c->max_per_hour = OPS_HEAL_DEFAULT_MAX_PER_HOUR;
}

int ops_heal_new(const ops_heal_config *cfg, const ops_heal_hooks *hooks, ops_heal **out)
{
    if (!cfg || !out)
        return vg_err_set(VG_EINVAL, "ops_heal_new: NULL argument");
    if (!(cfg->time_scale >= 1 && cfg->time_scale <= 3600))
        return vg_err_set(VG_EINVAL, "self_heal: time scale %g not in 1..3600", cfg->time_scale);
    if (cfg->max_per_hour < 1 || cfg->max_per_hour > OPS_HEAL_MAX_PER_HOUR)
        return vg_err_set(VG_EINVAL, "self_heal_max_per_hour %u not in 1..%d", cfg->max_per_hour,
                          OPS_HEAL_MAX_PER_HOUR);
    if (cfg->memory_clear_percent > cfg->memory_percent || cfg->p95_clear_ms > cfg->p95_ms ||
        cfg->error_clear_rate > cfg->error_rate || cfg->hit_clear_rate < cfg->hit_rate)
        return vg_err_set(VG_EINVAL, "self_heal: a clear threshold is on the wrong side of its "
                                     "trigger (no hysteresis)");
    if (cfg->for_s < 0 || cfg->cooldown_s < 0)
        return vg_err_set(VG_EINVAL, "self_heal: negative duration");
    ops_heal *h = vg_calloc(1, sizeof *h);
    if (!h)
        return vg_err_set(VG_ENOMEM, "ops_heal");
    h->cfg = *cfg;
    if (hooks)
        h->hooks = *hooks;
    pthread_mutex_init(&h->mu, NULL);
    if (cfg->metrics) {
        int rc = obs_counter_register(cfg->metrics, "vigil_self_heal_actions_total",
                                      "self-healing actions by action and outcome (ok, failed, "
                                      "dry_run, rate_limited, skipped)",
                                      "action,outcome", &h->metric);
        if (rc != VG_OK) {
            ops_heal_free(h);
            return rc;
        }
    }
    *out = h;
    return VG_OK;
}

void ops_heal_free(ops_heal *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->mu);
    vg_free(h);
}

ops_heal_mode ops_heal_mode_get(ops_heal *h)
{
    return h->cfg.mode;
}

/* ---- time and limits (caller holds mu) ------------------------------------------------------ */

static int64_t ops_ms(const ops_heal *h, double ops_s)
{
    return (int64_t)(ops_s * 1000.0 / h->cfg.time_scale);
}

static unsigned used_last_hour(const ops_heal *h, ops_heal_action a, int64_t now_ms)
{
    int64_t hour = ops_ms(h, 3600);
    unsigned n = 0;
    for (unsigned i = 0; i < h->ntimes[a]; i++)
        if (now_ms - h->times[a][i] < hour)
            n++;
    return n;
}

static void note_run(ops_heal *h, ops_heal_action a, int64_t now_ms)
{
    h->times[a][h->tpos[a]] = now_ms;
    h->tpos[a] = (h->tpos[a] + 1) % h->cfg.max_per_hour;
    if (h->ntimes[a] < h->cfg.max_per_hour)
        h->ntimes[a]++;
    h->last_ms[a] = now_ms;
}

/* Records one decision: history, log line, metric, event hook. */
static void record(ops_heal *h, int64_t now_ms, ops_heal_action a, int outcome, const char *trigger,
                   const char *before, const char *after, const char *message)
{
    heal_record *r = &h->hist[h->hpos];
    h->hpos = (h->hpos + 1) % OPS_HEAL_HISTORY;
    if (h->hcount < OPS_HEAL_HISTORY)
        h->hcount++;
    r->at_ms = now_ms;
    r->action = a;
    r->dry_run = outcome == OUT_DRY_RUN;
    snprintf(r->trigger, sizeof r->trigger, "%s", trigger);
    snprintf(r->before, sizeof r->before, "%s", before);
    snprintf(r->after, sizeof r->after, "%s", after);
    snprintf(r->message, sizeof r->message, "%s", message);
    h->counts[a][outcome]++;
    obs_inc(h->metric, OBS_LABELS(action_names[a], outcomes[outcome]));
    vg_log(outcome == OUT_FAILED ? VG_LOG_WARN : VG_LOG_INFO, "ops",
           "self-heal %s%s (%s): %s -> %s: %s", action_names[a], r->dry_run ? " [dry-run]" : "",
           trigger, before, after, message);
    if (h->hooks.event)
        h->hooks.event(h->hooks.ctx, now_ms, action_names[a], r->message, r->dry_run);
}

/* May action a run now? Records rate_limited (once per cooldown) when the hourly budget is
 * spent. */
static int may_run(ops_heal *h, ops_heal_action a, int64_t now_ms, const char *trigger)
{
    if (h->last_ms[a] && now_ms - h->last_ms[a] < ops_ms(h, h->cfg.cooldown_s))
        return 0;
    if (used_last_hour(h, a, now_ms) >= h->cfg.max_per_hour) {
        h->last_ms[a] = now_ms;
        record(h, now_ms, a, OUT_RATE_LIMITED, trigger, "-", "-",
               "limit per hour reached; not acting");
        return 0;
    }
    return 1;
}

/* Updates a condition with hysteresis; returns 1 when it is active and has held for `for`. */
static int cond_update(ops_heal *h, int c, int over, int clear, int64_t now_ms)
{
    heal_cond *st = &h->cond[c];
    if (!st->active && over) {
        st->active = 1;
        st->since_ms = now_ms;
    } else if (st->active && clear) {
        st->active = 0;
    }
    return st->active && now_ms - st->since_ms >= ops_ms(h, h->cfg.for_s);
}

static void fmt_l1(char *buf, size_t n, uint64_t entries, uint64_t bytes)
{
    snprintf(buf, n, "L1 %llu entries / %.1f MiB", (unsigned long long)entries,
             (double)bytes / 1048576.0);
}

/* ---- the actions (caller holds mu) ---------------------------------------------------------- */

static void act_memory(ops_heal *h, const ops_kpis *k, int64_t now_ms)
{
    ops_heal_action a = OPS_HEAL_MEMORY_TRIM;
    char trig[HEAL_TEXT], before[HEAL_TEXT], after[HEAL_TEXT] = "-", msg[HEAL_TEXT];
    snprintf(trig, sizeof trig, "memory %.1f%% (threshold %.1f%%), RSS %.1f MiB (limit %.1f MiB)",
             k->memory_percent, h->cfg.memory_percent, k->rss_bytes / 1048576.0,
             (double)h->cfg.rss_limit_bytes / 1048576.0);
    if (!may_run(h, a, now_ms, trig))
        return;
    uint64_t e = 0, b = 0;
    if (!h->hooks.l1_get || h->hooks.l1_get(h->hooks.ctx, &e, &b) != VG_OK) {
        record(h, now_ms, a, OUT_SKIPPED, trig, "-", "-", "no L1 cache to shrink");
        h->last_ms[a] = now_ms;
        return;
    }
    fmt_l1(before, sizeof before, e, b);
    int far = (!isnan(k->memory_percent) &&
               k->memory_percent >= h->cfg.memory_percent + HEAL_MEMORY_FAR_POINTS) ||
              (h->cfg.rss_limit_bytes &&
               k->rss_bytes >= HEAL_RSS_FAR_FACTOR * (double)h->cfg.rss_limit_bytes) ||
              e <= h->cfg.l1_min_entries;
    uint64_t ne = far ? e : e / 2 > h->cfg.l1_min_entries ? e / 2 : h->cfg.l1_min_entries;
    uint64_t nb = far ? b : b / 2;
    if (far)
        snprintf(after, sizeof after, "L1 cleared (bounds kept), heap trimmed");
    else
        fmt_l1(after, sizeof after, ne, nb);
    note_run(h, a, now_ms);
    if (h->cfg.mode == OPS_HEAL_DRY_RUN) {
        snprintf(msg, sizeof msg, "would %s L1 and trim the heap", far ? "clear" : "halve");
        record(h, now_ms, a, OUT_DRY_RUN, trig, before, after, msg);
        return;
    }
    int rc = VG_OK;
    uint64_t dropped = 0;
    if (far)
        dropped = h->hooks.l1_clear ? h->hooks.l1_clear(h->hooks.ctx) : 0;
    else
        rc = h->hooks.l1_set ? h->hooks.l1_set(h->hooks.ctx, ne, nb) : VG_EUNSUPPORTED;
    if (h->hooks.memory_release)
        h->hooks.memory_release(h->hooks.ctx);
    if (rc != VG_OK) {
        snprintf(msg, sizeof msg, "shrinking L1 failed: %s", vg_strerror(rc));
        record(h, now_ms, a, OUT_FAILED, trig, before, after, msg);
        return;
    }
    if (far)
        snprintf(msg, sizeof msg, "cleared L1 (%llu entries) and trimmed the heap",
                 (unsigned long long)dropped);
    else
        snprintf(msg, sizeof msg, "halved L1 and trimmed the heap");
    record(h, now_ms, a, OUT_OK, trig, before, after, msg);
}

static void act_retune(ops_heal *h, const ops_kpis *k, int64_t now_ms)
{
    ops_heal_action a = OPS_HEAL_RETUNE;
    char trig[HEAL_TEXT], before[HEAL_TEXT], after[HEAL_TEXT], msg[HEAL_TEXT];
    snprintf(trig, sizeof trig, "analysis P95 %.0f ms (threshold %.0f ms)",
             k->p95_ms[OPS_CLASS_ANALYSIS], h->cfg.p95_ms);
    if (!may_run(h, a, now_ms, trig))
        return;
    unsigned mb = 0;
    uint32_t md = 0;
    if (!h->hooks.batching_get || h->hooks.batching_get(h->hooks.ctx, &mb, &md) != VG_OK) {
        record(h, now_ms, a, OUT_SKIPPED, trig, "-", "-", "batching not available");
        h->last_ms[a] = now_ms;
        return;
    }
    unsigned nmb = mb / 2 > h->cfg.min_batch ? mb / 2 : h->cfg.min_batch;
    uint32_t nmd = md / 2 > h->cfg.min_delay_us ? md / 2 : h->cfg.min_delay_us;
    if (nmb > mb)
        nmb = mb;
    if (nmd > md)
        nmd = md;
    snprintf(before, sizeof before, "max_batch %u, max_delay %u us", mb, md);
    snprintf(after, sizeof after, "max_batch %u, max_delay %u us, warm L1 with %u", nmb, nmd,
             h->cfg.warm_entries);
    note_run(h, a, now_ms);
    if (h->cfg.mode == OPS_HEAL_DRY_RUN) {
        record(h, now_ms, a, OUT_DRY_RUN, trig, before, after,
               "would retune batching and warm L1 from L2");
        return;
    }
    int rc = VG_OK;
    if ((nmb != mb || nmd != md) && h->hooks.batching_set)
        rc = h->hooks.batching_set(h->hooks.ctx, nmb, nmd);
    size_t loaded = 0;
    if (h->hooks.warm_l1 && h->cfg.warm_entries)
        h->hooks.warm_l1(h->hooks.ctx, h->cfg.warm_entries, &loaded); /* best effort */
    if (rc != VG_OK) {
        snprintf(msg, sizeof msg, "retune failed: %s", vg_strerror(rc));
        record(h, now_ms, a, OUT_FAILED, trig, before, after, msg);
        return;
    }
    snprintf(msg, sizeof msg, "%s; warmed L1 with %zu L2 entries",
             nmb == mb && nmd == md ? "batching already at its floor" : "retuned batching", loaded);
    record(h, now_ms, a, OUT_OK, trig, before, after, msg);
}

static void act_replicas(ops_heal *h, const ops_kpis *k, int64_t now_ms)
{
    char trig[HEAL_TEXT], before[HEAL_TEXT], after[HEAL_TEXT], msg[HEAL_TEXT];
    snprintf(trig, sizeof trig, "analysis error rate %.1f%% (threshold %.1f%%)",
             100 * k->analysis_error_rate, 100 * h->cfg.error_rate);
    unsigned cur = 0, max = 0, streak = 0;
    if (!h->hooks.replicas_get || h->hooks.replicas_get(h->hooks.ctx, &cur, &max, &streak) != VG_OK)
        return;
    /* Replace first: a replica failing every batch is the likelier cause than too few. */
    ops_heal_action a = OPS_HEAL_REPLACE_REPLICA;
    if (streak >= h->cfg.replace_streak && may_run(h, a, now_ms, trig)) {
        snprintf(before, sizeof before, "a replica failed %u batches in a row", streak);
        snprintf(after, sizeof after, "fresh replica in its place");
        note_run(h, a, now_ms);
        if (h->cfg.mode == OPS_HEAL_DRY_RUN) {
            record(h, now_ms, a, OUT_DRY_RUN, trig, before, after, "would replace the replica");
        } else {
            unsigned idx = 0;
            int rc = h->hooks.replace_replica
                         ? h->hooks.replace_replica(h->hooks.ctx, h->cfg.replace_streak, &idx)
                         : VG_EUNSUPPORTED;
            if (rc == VG_OK)
                snprintf(msg, sizeof msg, "replaced replica %u", idx);
            else
                snprintf(msg, sizeof msg, "replace failed: %s", vg_strerror(rc));
            record(h, now_ms, a, rc == VG_OK ? OUT_OK : OUT_FAILED, trig, before, after, msg);
        }
    }
    a = OPS_HEAL_ADD_REPLICA;
    if (!may_run(h, a, now_ms, trig))
        return;
    snprintf(before, sizeof before, "%u replicas (max %u)", cur, max);
    if (cur >= max) {
        h->last_ms[a] = now_ms;
        record(h, now_ms, a, OUT_SKIPPED, trig, before, before, "already at the most replicas");
        return;
    }
    snprintf(after, sizeof after, "%u replicas (max %u)", cur + 1, max);
    note_run(h, a, now_ms);
    if (h->cfg.mode == OPS_HEAL_DRY_RUN) {
        record(h, now_ms, a, OUT_DRY_RUN, trig, before, after, "would add a replica");
        return;
    }
    int rc = h->hooks.add_replica ? h->hooks.add_replica(h->hooks.ctx) : VG_EUNSUPPORTED;
    if (rc == VG_OK)
        snprintf(msg, sizeof msg, "added a replica");
    else
        snprintf(msg, sizeof msg, "add failed: %s", vg_strerror(rc));
    record(h, now_ms, a, rc == VG_OK ? OUT_OK : OUT_FAILED, trig, before, after, msg);
}

static void act_raise_l1(ops_heal *h, const ops_kpis *k, int64_t now_ms)
{
    ops_heal_action a = OPS_HEAL_RAISE_L1;
    char trig[HEAL_TEXT], before[HEAL_TEXT], after[HEAL_TEXT], msg[HEAL_TEXT];
    snprintf(trig, sizeof trig, "cache hit rate %.1f%% (threshold %.1f%%)",
             100 * k->cache_hit_rate[0], 100 * h->cfg.hit_rate);
    /* Never grow L1 while memory is high: that is the other action's job, and they would flap. */
    if (h->cond[COND_MEMORY].active)
        return;
    if (!may_run(h, a, now_ms, trig))
        return;
    uint64_t e = 0, b = 0;
    if (!h->hooks.l1_get || h->hooks.l1_get(h->hooks.ctx, &e, &b) != VG_OK) {
        h->last_ms[a] = now_ms;
        record(h, now_ms, a, OUT_SKIPPED, trig, "-", "-", "no L1 cache to raise");
        return;
    }
    fmt_l1(before, sizeof before, e, b);
    uint64_t nb = b * 2 < h->cfg.l1_budget_bytes ? b * 2 : h->cfg.l1_budget_bytes;
    uint64_t ne = e * 2;
    if (nb <= b) {
        h->last_ms[a] = now_ms;
        record(h, now_ms, a, OUT_SKIPPED, trig, before, before,
               "L1 already at its memory budget (self_heal_l1_budget)");
        return;
    }
    fmt_l1(after, sizeof after, ne, nb);
    note_run(h, a, now_ms);
    if (h->cfg.mode == OPS_HEAL_DRY_RUN) {
        record(h, now_ms, a, OUT_DRY_RUN, trig, before, after, "would raise L1");
        return;
    }
    int rc = h->hooks.l1_set ? h->hooks.l1_set(h->hooks.ctx, ne, nb) : VG_EUNSUPPORTED;
    if (rc == VG_OK)
        snprintf(msg, sizeof msg, "raised L1 within the %.0f MiB budget",
                 (double)h->cfg.l1_budget_bytes / 1048576.0);
    else
        snprintf(msg, sizeof msg, "raise failed: %s", vg_strerror(rc));
    record(h, now_ms, a, rc == VG_OK ? OUT_OK : OUT_FAILED, trig, before, after, msg);
}

/* ---- the tick ------------------------------------------------------------------------------- */

void ops_heal_tick(void *ctx, const ops_kpis *w1m, const ops_kpis *w5m, const ops_kpis *w1h,
                   int64_t now_ms)
{
    ops_heal *h = ctx;
    (void)w5m;
    (void)w1h;
    if (!h || !w1m || h->cfg.mode == OPS_HEAL_OFF)
        return;
    const ops_kpis *k = w1m;
    const ops_heal_config *c = &h->cfg;
    pthread_mutex_lock(&h->mu);

    /* NAN (no data) is neither over nor clear: the state stays as it is. */
    double mp = k->memory_percent, rss = k->rss_bytes, lim = (double)c->rss_limit_bytes;
    int mem_over =
        (!isnan(mp) && mp >= c->memory_percent) || (lim > 0 && !isnan(rss) && rss >= lim);
    int mem_clear = (isnan(mp) || mp < c->memory_clear_percent) &&
                    (lim == 0 || isnan(rss) || rss < HEAL_RSS_CLEAR_FACTOR * lim);
    if (isnan(mp) && (lim == 0 || isnan(rss)))
        mem_clear = 0;
    if (cond_update(h, COND_MEMORY, mem_over, mem_clear, now_ms))
        act_memory(h, k, now_ms);

    double p95 = k->p95_ms[OPS_CLASS_ANALYSIS];
    if (cond_update(h, COND_SLOW, !isnan(p95) && p95 >= c->p95_ms,
                    !isnan(p95) && p95 < c->p95_clear_ms, now_ms))
        act_retune(h, k, now_ms);

    double er = k->analysis_error_rate;
    if (cond_update(h, COND_ERRORS, !isnan(er) && er >= c->error_rate,
                    !isnan(er) && er < c->error_clear_rate, now_ms))
        act_replicas(h, k, now_ms);

    double hr = k->cache_hit_rate[0];
    if (cond_update(h, COND_HIT, !isnan(hr) && hr < c->hit_rate,
                    !isnan(hr) && hr >= c->hit_clear_rate, now_ms))
        act_raise_l1(h, k, now_ms);

    pthread_mutex_unlock(&h->mu);
}

/* ---- reading -------------------------------------------------------------------------------- */

static json_t *rfc3339(int64_t ms)
{
    char buf[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

json_t *ops_heal_json(ops_heal *h, int64_t now_ms)
{
    json_t *root = json_object(), *acts = json_array(), *lim = json_object();
    pthread_mutex_lock(&h->mu);
    json_object_set_new(root, "mode", json_string(ops_heal_mode_name(h->cfg.mode)));
    for (unsigned i = 0; i < h->hcount; i++) {
        const heal_record *r = &h->hist[(h->hpos + OPS_HEAL_HISTORY - 1 - i) % OPS_HEAL_HISTORY];
        json_t *o = json_object();
        json_object_set_new(o, "at", rfc3339(r->at_ms));
        json_object_set_new(o, "action", json_string(action_names[r->action]));
        json_object_set_new(o, "trigger", json_string(r->trigger));
        json_object_set_new(o, "before", json_string(r->before));
        json_object_set_new(o, "after", json_string(r->after));
        json_object_set_new(o, "dry_run", json_boolean(r->dry_run));
        json_object_set_new(o, "message", json_string(r->message));
        json_array_append_new(acts, o);
    }
    for (int a = 0; a < OPS_HEAL_ACTIONS; a++) {
        json_t *o = json_object();
        json_object_set_new(o, "cooldown_s", json_real(h->cfg.cooldown_s));
        json_object_set_new(o, "max_per_hour", json_integer(h->cfg.max_per_hour));
        json_object_set_new(o, "used_last_hour",
                            json_integer(used_last_hour(h, (ops_heal_action)a, now_ms)));
        json_object_set_new(lim, action_names[a], o);
    }
    pthread_mutex_unlock(&h->mu);
    json_object_set_new(root, "actions", acts);
    json_object_set_new(root, "limits", lim);
    return root;
}

uint64_t ops_heal_count(ops_heal *h, ops_heal_action a, const char *outcome)
{
    if ((unsigned)a >= OPS_HEAL_ACTIONS || !outcome)
        return 0;
    uint64_t n = 0;
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < HEAL_OUTCOMES; i++)
        if (strcmp(outcomes[i], outcome) == 0)
            n = h->counts[a][i];
    pthread_mutex_unlock(&h->mu);
    return n;
}
