/*
 * ops_heal: self-healing. Once per ops tick the engine looks at the KPI windows and, when one of
 * four conditions has held long enough, acts through callbacks the server supplies (so src/ops
 * depends on neither the cache nor the scheduler):
 *
 *   memory_trim      memory_percent or RSS over its limit   -> shrink L1 (clear it when far over)
 *                                                              and return freed heap (malloc_trim)
 *   retune           analysis P95 over its threshold        -> smaller batches, shorter batch
 *                                                              delay (bounded), warm L1 from L2
 *   add_replica      analysis error rate over its threshold -> one more replica (up to the max)
 *   replace_replica  same, and a replica failed N batches   -> a fresh replica in its place
 *                    in a row
 *   raise_l1         cache hit rate under its threshold     -> double L1, within a memory budget
 *
 * Each condition has hysteresis (it becomes true at the trigger threshold and false only at the
 * clear threshold, so a KPI hovering at the line neither fires twice nor resets its timer), a
 * `for` duration (it must hold that long, so one bad sample does nothing), and each action a
 * cooldown and a limit per hour. Every decision is logged, kept in a bounded history (newest
 * first), sent to the event hook (the alert history) and counted in
 * vigil_self_heal_actions_total{action,outcome}. Mode dry-run does all of that without acting.
 *
 * Ops time: for, cooldown and the hour of the per-hour limit are ops durations, divided by
 * time_scale (tests run an ops hour in a minute).
 *
 * Thread-safety: ops_heal_tick runs on the ops thread; ops_heal_json and ops_heal_mode may be
 * called from any thread (one mutex).
 */
#ifndef VG_OPS_HEAL_H
#define VG_OPS_HEAL_H

#include "ops/ops_kpi.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { OPS_HEAL_OFF = 0, OPS_HEAL_DRY_RUN, OPS_HEAL_ON } ops_heal_mode;

typedef enum {
    OPS_HEAL_MEMORY_TRIM = 0,
    OPS_HEAL_RETUNE,
    OPS_HEAL_ADD_REPLICA,
    OPS_HEAL_REPLACE_REPLICA,
    OPS_HEAL_RAISE_L1,
    OPS_HEAL_ACTIONS
} ops_heal_action;

/* "memory_trim" | "retune" | "add_replica" | "replace_replica" | "raise_l1" (static). */
const char *ops_heal_action_name(ops_heal_action a);
/* "off" | "dry-run" | "on" (static), and back (VG_EINVAL). */
const char *ops_heal_mode_name(ops_heal_mode m);
int ops_heal_mode_parse(const char *s, ops_heal_mode *out);

/* History entries kept (newest first in ops_heal_json). */
#define OPS_HEAL_HISTORY 64
/* Largest max_per_hour (the per-action ring of action times holds this many). */
#define OPS_HEAL_MAX_PER_HOUR 60

/* What the engine may do to the server. Each returns 0 or a negative VG_E* code; ctx is the
 * server's. A NULL function disables what needs it. Called on the ops thread. */
typedef struct ops_heal_hooks {
    void *ctx;
    int (*l1_get)(void *ctx, uint64_t *max_entries, uint64_t *max_bytes);
    int (*l1_set)(void *ctx, uint64_t max_entries, uint64_t max_bytes);
    uint64_t (*l1_clear)(void *ctx);   /* returns entries dropped */
    void (*memory_release)(void *ctx); /* malloc_trim(0) */
    int (*batching_get)(void *ctx, unsigned *max_batch, uint32_t *max_delay_us);
    int (*batching_set)(void *ctx, unsigned max_batch, uint32_t max_delay_us);
    int (*warm_l1)(void *ctx, size_t n, size_t *loaded);
    /* current and max replicas, and the longest run of failed batches of a live replica */
    int (*replicas_get)(void *ctx, unsigned *current, unsigned *max, unsigned *worst_streak);
    int (*add_replica)(void *ctx);
    /* VG_ENOTFOUND when no replica failed min_streak batches in a row */
    int (*replace_replica)(void *ctx, unsigned min_streak, unsigned *index);
    /* The alert history hook (ops_alert_event once alerts are wired); may be NULL. message is
     * borrowed for the call. */
    void (*event)(void *ctx, int64_t at_ms, const char *action, const char *message, int dry_run);
} ops_heal_hooks;

typedef struct ops_heal_config {
    ops_heal_mode mode;
    double time_scale; /* ops durations are divided by it (1..3600) */
    /* high memory: memory_percent >= memory_percent, or rss_bytes >= rss_limit_bytes (0: none);
     * clears below memory_clear_percent and 90% of the RSS limit. Far over (memory_percent +
     * 10, or 120% of the RSS limit) clears L1 instead of halving it. */
    double memory_percent, memory_clear_percent;
    uint64_t rss_limit_bytes;
    uint64_t l1_min_entries; /* L1 is not shrunk below this */
    /* slow responses: analysis P95 >= p95_ms; clears below p95_clear_ms */
    double p95_ms, p95_clear_ms;
    unsigned min_batch;    /* retune floor for max batch */
    uint32_t min_delay_us; /* retune floor for max batch delay */
    unsigned warm_entries; /* L2 entries loaded into L1 by a retune */
    /* analysis errors: analysis_error_rate >= error_rate (0..1); clears below error_clear_rate */
    double error_rate, error_clear_rate;
    unsigned replace_streak; /* a replica that failed this many batches in a row is replaced */
    /* low hit rate: overall cache hit rate < hit_rate; clears at hit_clear_rate or above */
    double hit_rate, hit_clear_rate;
    uint64_t l1_budget_bytes; /* raise_l1 never sets L1's byte bound above this */
    /* every condition must hold for_s (ops seconds) before its action runs */
    double for_s;
    double cooldown_s;            /* per action, ops seconds */
    unsigned max_per_hour;        /* per action, per ops hour, 1..OPS_HEAL_MAX_PER_HOUR */
    struct obs_registry *metrics; /* borrowed; NULL: no metric */
} ops_heal_config;

/* The defaults (documented in docs/OPERATIONS.md "Self-healing"). */
#define OPS_HEAL_DEFAULT_MEMORY_PERCENT 85.0
#define OPS_HEAL_DEFAULT_MEMORY_CLEAR_PERCENT 75.0
#define OPS_HEAL_DEFAULT_L1_MIN_ENTRIES 64
#define OPS_HEAL_DEFAULT_P95_MS 1500.0
#define OPS_HEAL_DEFAULT_MIN_BATCH 1
#define OPS_HEAL_DEFAULT_MIN_DELAY_US 100
#define OPS_HEAL_DEFAULT_WARM_ENTRIES 256
#define OPS_HEAL_DEFAULT_ERROR_RATE 0.05
#define OPS_HEAL_DEFAULT_REPLACE_STREAK 3
#define OPS_HEAL_DEFAULT_HIT_RATE 0.40
#define OPS_HEAL_DEFAULT_L1_BUDGET_BYTES (512ull * 1024 * 1024)
#define OPS_HEAL_DEFAULT_FOR_S 60.0
#define OPS_HEAL_DEFAULT_COOLDOWN_S 300.0
#define OPS_HEAL_DEFAULT_MAX_PER_HOUR 6

void ops_heal_config_init(ops_heal_config *cfg);

typedef struct ops_heal ops_heal;

/* cfg and hooks borrowed (copied). VG_EINVAL on a bad config (with detail), VG_ENOMEM. */
int ops_heal_new(const ops_heal_config *cfg, const ops_heal_hooks *hooks, ops_heal **out);
void ops_heal_free(ops_heal *h);

/* The evaluate entry point, with the ops_tick_fn signature (ctx is the ops_heal). w1m decides;
 * w5m and w1h are not used yet. now_ms: wall clock (ms since the epoch; tests inject it). */
void ops_heal_tick(void *ctx, const ops_kpis *w1m, const ops_kpis *w5m, const ops_kpis *w1h,
                   int64_t now_ms);

ops_heal_mode ops_heal_mode_get(ops_heal *h);

/* GET /api/v1/ops/actions body (new reference):
 *   {"mode","actions":[{"at","action","trigger","before","after","dry_run","message"}] newest
 *    first, "limits":{"<action>":{"cooldown_s","max_per_hour","used_last_hour"}}} */
json_t *ops_heal_json(ops_heal *h, int64_t now_ms);

/* Actions recorded with each outcome since start (tests): outcome "ok", "failed", "dry_run",
 * "rate_limited", "skipped". */
uint64_t ops_heal_count(ops_heal *h, ops_heal_action a, const char *outcome);

#endif /* VG_OPS_HEAL_H */
