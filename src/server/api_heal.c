/* Self-healing in the server: the hooks through which the ops_heal engine acts on the analysis
 * pipeline (analyze's pass-throughs to its cache and scheduler), the engine's creation from the
 * self_heal_* settings, and GET /api/v1/ops/actions. */
#include "server/server_int.h"

#include "analyze/analyze.h"
#include "obs/obs.h"
#include "ops/ops_alert.h"
#include "ops/ops_heal.h"

static int h_l1_get(void *ctx, uint64_t *entries, uint64_t *bytes)
{
    server *s = ctx;
    size_t e = 0, b = 0;
    analyze_cache_l1_capacity(s->an, &e, &b);
    if (e == 0)
        return VG_EUNSUPPORTED;
    *entries = e;
    *bytes = b;
    return VG_OK;
}

static int h_l1_set(void *ctx, uint64_t entries, uint64_t bytes)
{
    server *s = ctx;
    return analyze_cache_l1_set_capacity(s->an, (size_t)entries, (size_t)bytes);
}

static uint64_t h_l1_clear(void *ctx)
{
    return analyze_cache_l1_clear(((server *)ctx)->an);
}

static void h_release(void *ctx)
{
    (void)ctx;
    vg_malloc_trim();
}

static int h_batch_get(void *ctx, unsigned *mb, uint32_t *md)
{
    analyze_batching(((server *)ctx)->an, mb, md);
    return VG_OK;
}

static int h_batch_set(void *ctx, unsigned mb, uint32_t md)
{
    return analyze_batching_tune(((server *)ctx)->an, mb, md);
}

static int h_warm(void *ctx, size_t n, size_t *loaded)
{
    return analyze_cache_warm(((server *)ctx)->an, n, loaded);
}

static int h_rep_get(void *ctx, unsigned *cur, unsigned *max, unsigned *streak)
{
    analyze_replica_info ri;
    analyze_replicas(((server *)ctx)->an, &ri);
    *cur = ri.current;
    *max = ri.max;
    *streak = ri.worst_fail_streak;
    return VG_OK;
}

static int h_add(void *ctx)
{
    return analyze_add_replica(((server *)ctx)->an);
}

static int h_replace(void *ctx, unsigned min_streak, unsigned *index)
{
    return analyze_replace_failing_replica(((server *)ctx)->an, min_streak, index);
}

/* Self-healing actions in the alert history (GET /api/v1/alerts "events", kind self_heal). On the
 * ops thread; s->alerts is set before the tick starts (NULL: nothing is logged). */
static void h_event(void *ctx, int64_t at_ms, const char *action, const char *message, int dry_run)
{
    server *s = ctx;
    char msg[OPS_ALERT_MESSAGE_BYTES];
    snprintf(msg, sizeof(msg), "%s%s: %s", action, dry_run ? " (dry run)" : "", message);
    ops_alert_event(s->alerts, "self_heal", NULL, OPS_SEV_INFO, msg, at_ms);
}

int server__heal_open(server *s)
{
    const conf_settings *c = s->cfg;
    ops_heal_config hc;
    ops_heal_config_init(&hc);
    hc.mode = c->self_heal == 0 ? OPS_HEAL_OFF : c->self_heal == 1 ? OPS_HEAL_DRY_RUN : OPS_HEAL_ON;
    hc.time_scale = c->ops_time_scale;
    hc.memory_percent = c->self_heal_memory_percent;
    hc.memory_clear_percent = hc.memory_percent > 10 ? hc.memory_percent - 10 : 0;
    hc.rss_limit_bytes = c->self_heal_memory_limit;
    hc.p95_ms = c->self_heal_p95_ms;
    hc.p95_clear_ms = 0.8 * hc.p95_ms;
    hc.error_rate = c->self_heal_error_rate;
    hc.error_clear_rate = 0.5 * hc.error_rate;
    hc.hit_rate = c->self_heal_hit_rate;
    hc.hit_clear_rate = hc.hit_rate + 0.1 > 1 ? 1 : hc.hit_rate + 0.1;
    hc.l1_budget_bytes = c->self_heal_l1_budget;
    hc.for_s = (double)c->self_heal_for_ms / 1000.0;
    hc.cooldown_s = (double)c->self_heal_cooldown_ms / 1000.0;
    hc.max_per_hour = (unsigned)c->self_heal_max_per_hour;
    hc.metrics = s->reg;
    ops_heal_hooks hk = {.ctx = s,
                         .l1_get = h_l1_get,
                         .l1_set = h_l1_set,
                         .l1_clear = h_l1_clear,
                         .memory_release = h_release,
                         .batching_get = h_batch_get,
                         .batching_set = h_batch_set,
                         .warm_l1 = h_warm,
                         .replicas_get = h_rep_get,
                         .add_replica = h_add,
                         .replace_replica = h_replace,
                         .event = h_event};
    return ops_heal_new(&hc, &hk, &s->heal);
}

void server__api_ops_actions(http_req *req, void *ud)
{
    server *s = ud;
    if (!s->heal) {
        http_reply_error(req, 503, NULL, "self-healing is not running");
        return;
    }
    http_reply_json(req, 200, ops_heal_json(s->heal, vg_wall_ms()));
}
