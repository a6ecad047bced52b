/* ops_heal: each trigger and its action through fake server hooks, the `for` duration, cooldown,
 * the per-hour limit, dry-run, off, hysteresis (no flapping) and the JSON of
 * GET /api/v1/ops/actions. Time is injected: every tick passes its own now_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "obs/obs.h"
#include "ops/ops_heal.h"

#include <math.h>
#include <string.h>

typedef struct fake {
    uint64_t l1_entries, l1_bytes, cleared;
    int released;
    unsigned max_batch;
    uint32_t delay_us;
    int warmed;
    unsigned replicas, max_replicas, streak, replaced;
    int events;
} fake;

static int f_l1_get(void *c, uint64_t *e, uint64_t *b)
{
    fake *f = c;
    *e = f->l1_entries;
    *b = f->l1_bytes;
    return VG_OK;
}
static int f_l1_set(void *c, uint64_t e, uint64_t b)
{
    fake *f = c;
    f->l1_entries = e;
    f->l1_bytes = b;
    return VG_OK;
}
static uint64_t f_l1_clear(void *c)
{
    fake *f = c;
    f->cleared++;
    return 42;
}
static void f_release(void *c)
{
    ((fake *)c)->released++;
}
static int f_batch_get(void *c, unsigned *mb, uint32_t *md)
{
    fake *f = c;
    *mb = f->max_batch;
    *md = f->delay_us;
    return VG_OK;
}
static int f_batch_set(void *c, unsigned mb, uint32_t md)
{
    fake *f = c;
    f->max_batch = mb;
    f->delay_us = md;
    return VG_OK;
}
static int f_warm(void *c, size_t n, size_t *loaded)
{
    ((fake *)c)->warmed++;
    *loaded = n;
    return VG_OK;
}
static int f_rep_get(void *c, unsigned *cur, unsigned *max, unsigned *streak)
{
    fake *f = c;
    *cur = f->replicas;
    *max = f->max_replicas;
    *streak = f->streak;
    return VG_OK;
}
static int f_add(void *c)
{
    fake *f = c;
    if (f->replicas >= f->max_replicas)
        return VG_ECONFLICT;
    f->replicas++;
    return VG_OK;
}
static int f_replace(void *c, unsigned min_streak, unsigned *idx)
{
    fake *f = c;
    if (f->streak < min_streak)
        return VG_ENOTFOUND;
    f->streak = 0;
    f->replaced++;
    *idx = 0;
    return VG_OK;
}
static void f_event(void *c, int64_t at, const char *action, const char *msg, int dry)
{
    (void)at;
    (void)action;
    (void)msg;
    (void)dry;
    ((fake *)c)->events++;
}

static void fake_init(fake *f)
{
    memset(f, 0, sizeof *f);
    f->l1_entries = 1000;
    f->l1_bytes = 64u << 20;
    f->max_batch = 32;
    f->delay_us = 2000;
    f->replicas = 1;
    f->max_replicas = 3;
}

static ops_heal *make(fake *f, ops_heal_config *cfg)
{
    ops_heal_hooks hk = {.ctx = f,
                         .l1_get = f_l1_get,
                         .l1_set = f_l1_set,
                         .l1_clear = f_l1_clear,
                         .memory_release = f_release,
                         .batching_get = f_batch_get,
                         .batching_set = f_batch_set,
                         .warm_l1 = f_warm,
                         .replicas_get = f_rep_get,
                         .add_replica = f_add,
                         .replace_replica = f_replace,
                         .event = f_event};
    ops_heal *h = NULL;
    assert_int_equal(ops_heal_new(cfg, &hk, &h), VG_OK);
    return h;
}

/* A healthy window: every KPI fine. */
static ops_kpis healthy(void)
{
    ops_kpis k;
    memset(&k, 0, sizeof k);
    k.window_s = 60;
    k.memory_percent = 40;
    k.rss_bytes = 100e6;
    for (int i = 0; i < OPS_CLASSES; i++)
        k.p50_ms[i] = k.p95_ms[i] = k.p99_ms[i] = 50;
    k.analysis_error_rate = 0;
    k.error_rate = 0;
    for (int i = 0; i < OPS_CACHE_TIERS; i++)
        k.cache_hit_rate[i] = 0.9;
    return k;
}

#define T0 1700000000000LL
static void tick(ops_heal *h, const ops_kpis *k, int64_t ms)
{
    ops_heal_tick(h, k, k, k, ms);
}

/* Runs ticks every second from `from` for `secs` seconds with k. */
static void run(ops_heal *h, const ops_kpis *k, int64_t from, int secs)
{
    for (int i = 0; i < secs; i++)
        tick(h, k, from + (int64_t)i * 1000);
}

static void test_memory_trigger_for_and_cooldown(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.memory_percent = 88;
    run(h, &k, T0, 59); /* for 60 s: not yet */
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 0);
    tick(h, &k, T0 + 60000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    assert_int_equal(f.l1_entries, 500);
    assert_int_equal(f.l1_bytes, 32u << 20);
    assert_int_equal(f.released, 1);
    assert_int_equal(f.events, 1);
    /* Cooldown 300 s: still high, nothing more until it passed. */
    run(h, &k, T0 + 61000, 298);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    tick(h, &k, T0 + 360000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 2);
    assert_int_equal(f.l1_entries, 250);
    /* Far over (+10 points): clears L1. */
    k.memory_percent = 96;
    tick(h, &k, T0 + 660000);
    assert_int_equal(f.cleared, 1);
    assert_int_equal(f.released, 3);
    /* The RSS limit alone triggers too. */
    ops_heal_free(h);
    fake_init(&f);
    cfg.rss_limit_bytes = 200000000;
    cfg.for_s = 0;
    h = make(&f, &cfg);
    k = healthy();
    k.rss_bytes = 210e6;
    tick(h, &k, T0);
    assert_int_equal(f.l1_entries, 500);
    ops_heal_free(h);
}

/* Regression: the action counter's label values were passed without the NULL terminator
 * obs expects, so obs read past them (ASan: stack-buffer-overflow on the ops thread) and the
 * update was dropped as misuse. */
static void test_action_metric(void **state)
{
    (void)state;
    obs_registry *reg = NULL;
    assert_int_equal(obs_registry_new(NULL, &reg), VG_OK);
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.metrics = reg;
    cfg.for_s = 0;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.memory_percent = 88;
    tick(h, &k, T0);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    obs_metric *m = NULL;
    assert_int_equal(obs_counter_register(reg, "vigil_self_heal_actions_total",
                                          "self-healing actions by action and outcome",
                                          "action,outcome", &m),
                     VG_OK);
    assert_true(obs_value(m, OBS_LABELS("memory_trim", "ok"), NULL) == 1.0);
    ops_heal_free(h);
    obs_registry_free(reg);
}

static void test_per_hour_limit(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    f.l1_entries = 1u << 20;
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.for_s = 0;
    cfg.cooldown_s = 60;
    cfg.max_per_hour = 3;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.memory_percent = 90;
    run(h, &k, T0, 3600); /* one hour of ticks */
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 3);
    /* Rate-limited records come at most once per cooldown. */
    uint64_t rl = ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "rate_limited");
    assert_true(rl >= 1 && rl <= 60);
    json_t *j = ops_heal_json(h, T0 + 3599000);
    json_t *lim = json_object_get(json_object_get(j, "limits"), "memory_trim");
    assert_int_equal(json_integer_value(json_object_get(lim, "used_last_hour")), 3);
    assert_int_equal(json_integer_value(json_object_get(lim, "max_per_hour")), 3);
    json_decref(j);
    /* An hour after the first, the budget is back. */
    run(h, &k, T0 + 3600000, 30); /* sliding: the first run left the hour */
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 4);
    ops_heal_free(h);
}

static void test_dry_run_and_off(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.mode = OPS_HEAL_DRY_RUN;
    cfg.for_s = 0;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.memory_percent = 90;
    k.p95_ms[OPS_CLASS_ANALYSIS] = 3000;
    k.analysis_error_rate = 0.2;
    k.cache_hit_rate[0] = 0.1;
    tick(h, &k, T0);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "dry_run"), 1);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_RETUNE, "dry_run"), 1);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_ADD_REPLICA, "dry_run"), 1);
    /* Nothing changed. */
    assert_int_equal(f.l1_entries, 1000);
    assert_int_equal(f.released, 0);
    assert_int_equal(f.max_batch, 32);
    assert_int_equal(f.warmed, 0);
    assert_int_equal(f.replicas, 1);
    json_t *j = ops_heal_json(h, T0);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "dry-run");
    json_t *first = json_array_get(json_object_get(j, "actions"), 0);
    assert_true(json_is_true(json_object_get(first, "dry_run")));
    json_decref(j);
    ops_heal_free(h);

    cfg.mode = OPS_HEAL_OFF;
    h = make(&f, &cfg);
    run(h, &k, T0, 600);
    j = ops_heal_json(h, T0);
    assert_int_equal(json_array_size(json_object_get(j, "actions")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "off");
    json_decref(j);
    ops_heal_free(h);
    ops_heal_mode m;
    assert_int_equal(ops_heal_mode_parse("dry-run", &m), VG_OK);
    assert_int_equal(m, OPS_HEAL_DRY_RUN);
    assert_int_equal(ops_heal_mode_parse("maybe", &m), VG_EINVAL);
}

/* Hysteresis: a KPI that dips below the trigger but stays above the clear threshold keeps the
 * condition (and its `for` timer); one that hovers at the line does not fire more than once per
 * cooldown; and raise_l1 never fights memory_trim. */
static void test_hysteresis_no_flapping(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    for (int i = 0; i < 60; i++) { /* 86, 80, 86, 80, ...: 80 is above the 75 clear line */
        k.memory_percent = i % 2 ? 80 : 86;
        tick(h, &k, T0 + i * 1000);
    }
    k.memory_percent = 80;
    tick(h, &k, T0 + 60000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    ops_heal_free(h);

    /* Hovering at 84.9 / 85.1 for an hour with a 300 s cooldown: at most 12 actions, and
     * never two within a cooldown. Memory high and hit rate low at once: L1 is never raised. */
    fake_init(&f);
    f.l1_entries = 1u << 30;
    cfg.max_per_hour = 60;
    h = make(&f, &cfg);
    k = healthy();
    k.cache_hit_rate[0] = 0.1;
    for (int i = 0; i < 3600; i++) {
        k.memory_percent = i % 2 ? 84.9 : 85.1;
        tick(h, &k, T0 + (int64_t)i * 1000);
    }
    uint64_t n = ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok");
    assert_true(n >= 1 && n <= 12);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_RAISE_L1, "ok"), 0);
    json_t *j = ops_heal_json(h, T0 + 3600000);
    json_t *acts = json_object_get(j, "actions");
    assert_int_equal(json_array_size(acts), n);
    json_decref(j);
    ops_heal_free(h);

    /* Once it clears (below 75) and comes back, the `for` starts over. */
    fake_init(&f);
    h = make(&f, &cfg);
    k = healthy();
    k.memory_percent = 90;
    run(h, &k, T0, 61);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    k.memory_percent = 70;
    tick(h, &k, T0 + 400000);
    k.memory_percent = 90;
    run(h, &k, T0 + 401000, 59);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 1);
    tick(h, &k, T0 + 461000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 2);
    ops_heal_free(h);
}

static void test_slow_retune_and_warm(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.for_s = 0;
    cfg.cooldown_s = 10;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.p95_ms[OPS_CLASS_ANALYSIS] = 1600;
    tick(h, &k, T0);
    assert_int_equal(f.max_batch, 16);
    assert_int_equal(f.delay_us, 1000);
    assert_int_equal(f.warmed, 1);
    /* Toward the floors, never below them (batch 1, delay 100 us). */
    for (int i = 1; i <= 6; i++)
        tick(h, &k, T0 + i * 10000);
    assert_int_equal(f.max_batch, 1);
    assert_int_equal(f.delay_us, 100);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_RETUNE, "ok"), 6); /* max 6 per hour */
    /* API P95 alone does not count. */
    ops_heal_free(h);
    fake_init(&f);
    h = make(&f, &cfg);
    k = healthy();
    k.p95_ms[OPS_CLASS_API] = 5000;
    k.p95_ms[OPS_CLASS_ANALYSIS] = NAN;
    run(h, &k, T0, 100);
    assert_int_equal(f.max_batch, 32);
    ops_heal_free(h);
}

static void test_errors_add_and_replace(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.for_s = 30;
    cfg.cooldown_s = 60;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.analysis_error_rate = 0.04; /* under 5%: nothing */
    run(h, &k, T0, 120);
    assert_int_equal(f.replicas, 1);
    k.analysis_error_rate = 0.10;
    f.streak = 5;
    run(h, &k, T0 + 120000, 31);
    assert_int_equal(f.replaced, 1);
    assert_int_equal(f.replicas, 2);
    run(h, &k, T0 + 151000, 60);
    assert_int_equal(f.replicas, 3);
    assert_int_equal(f.replaced, 1); /* streak reset by the replacement */
    run(h, &k, T0 + 211000, 61);
    assert_int_equal(f.replicas, 3); /* at max: skipped */
    assert_true(ops_heal_count(h, OPS_HEAL_ADD_REPLICA, "skipped") >= 1);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_ADD_REPLICA, "ok"), 2);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_REPLACE_REPLICA, "ok"), 1);
    ops_heal_free(h);
}

static void test_low_hit_raise_within_budget(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.for_s = 0;
    cfg.cooldown_s = 1;
    cfg.l1_budget_bytes = 100u << 20;
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.cache_hit_rate[0] = NAN; /* no lookups: nothing */
    tick(h, &k, T0);
    assert_int_equal(f.l1_entries, 1000);
    k.cache_hit_rate[0] = 0.2;
    tick(h, &k, T0 + 1000);
    assert_int_equal(f.l1_entries, 2000);
    assert_int_equal(f.l1_bytes, 100u << 20); /* 128 MiB capped at the budget */
    tick(h, &k, T0 + 2000);
    assert_int_equal(f.l1_entries, 2000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_RAISE_L1, "skipped"), 1);
    ops_heal_free(h);
}

static void test_json_and_config(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    ops_heal_config cfg;
    ops_heal_config_init(&cfg);
    cfg.for_s = 0;
    cfg.time_scale = 60; /* cooldown 300 ops s = 5 real s */
    ops_heal *h = make(&f, &cfg);
    ops_kpis k = healthy();
    k.memory_percent = 90;
    tick(h, &k, T0);
    tick(h, &k, T0 + 4000);
    tick(h, &k, T0 + 5000);
    assert_int_equal(ops_heal_count(h, OPS_HEAL_MEMORY_TRIM, "ok"), 2);
    json_t *j = ops_heal_json(h, T0 + 5000);
    json_t *a = json_array_get(json_object_get(j, "actions"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "action")), "memory_trim");
    assert_string_equal(json_string_value(json_object_get(a, "at")), "2023-11-14T22:13:25.000Z");
    assert_non_null(strstr(json_string_value(json_object_get(a, "before")), "500 entries"));
    assert_non_null(strstr(json_string_value(json_object_get(a, "after")), "250 entries"));
    assert_non_null(json_string_value(json_object_get(a, "trigger")));
    assert_non_null(json_string_value(json_object_get(a, "message")));
    json_t *lim = json_object_get(j, "limits");
    assert_int_equal(json_object_size(lim), OPS_HEAL_ACTIONS);
    assert_true(json_real_value(json_object_get(json_object_get(lim, "raise_l1"), "cooldown_s")) ==
                300.0);
    json_decref(j);
    ops_heal_free(h);

    ops_heal *bad = NULL;
    cfg.memory_clear_percent = 95; /* above the trigger: no hysteresis */
    assert_int_equal(ops_heal_new(&cfg, NULL, &bad), VG_EINVAL);
    ops_heal_config_init(&cfg);
    cfg.max_per_hour = 0;
    assert_int_equal(ops_heal_new(&cfg, NULL, &bad), VG_EINVAL);
    ops_heal_config_init(&cfg);
    cfg.time_scale = 0.5;
    assert_int_equal(ops_heal_new(&cfg, NULL, &bad), VG_EINVAL);
    ops_heal_free(NULL);
}

int main(void)
{
    vg_log_set_level(VG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_trigger_for_and_cooldown),
        cmocka_unit_test(test_action_metric),
        cmocka_unit_test(test_per_hour_limit),
        cmocka_unit_test(test_dry_run_and_off),
        cmocka_unit_test(test_hysteresis_no_flapping),
        cmocka_unit_test(test_slow_retune_and_warm),
        cmocka_unit_test(test_errors_add_and_replace),
        cmocka_unit_test(test_low_hit_raise_within_budget),
        cmocka_unit_test(test_json_and_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
