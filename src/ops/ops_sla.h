/*
 * ops_sla: SLA accounting over per-minute aggregates (minutes of ops time), kept in memory for
 * 30 days and persisted in its own SQLite file <data_dir>/ops.db (WAL, mode 0600), node-local
 * because uptime is the process's own. No dependency on src/store: the file is not the evidence
 * database and its loss only loses SLA history.
 *
 * Liveness: every minute row carries up_ms, the real time the process was up in it; the end of
 * the newest row is the last heartbeat. On open, the gap between the last heartbeat and now is
 * downtime (a clean stop flushes the current minute first, so the gap is exactly the time
 * stopped; a crash or kill -9 loses the unflushed minute, which then counts as down: at most one
 * ops minute too much downtime, never too little). Time before the first open ever is not in any
 * window (a new server is not 30 days down).
 *
 * Objectives (targets configurable):
 *   availability      (up time / known time) x (non-5xx answers / answers)
 *   analysis_latency  share of analysis-class answers within the threshold; met when >= 0.95,
 *                     i.e. exactly when the window's P95 is within the threshold
 *   api_latency       the same for the API class
 *   error_rate        1 - errors / events, events = answers + analysed images, errors = 5xx
 *                     answers + images failed on the server's side (a failed image inside a
 *                     200 batch answer is an error that availability does not see)
 * Compliance is over good events, not good minutes: a quiet minute must not weigh as much as a
 * busy one, event compliance of a latency objective is the window's own P95 test, and burn-rate
 * alerts (SRE practice) are defined over events. Burn rate = bad ratio / (1 - target); error
 * budget remaining = 1 - burn rate (negative once overspent). Violations are runs of minutes that
 * break the objective on their own (availability below target, over-threshold share above
 * 1 - target, error ratio above its bound), with start, end (null while ongoing) and the worst
 * minute (availability, P95 ms, error ratio).
 *
 * Thread-safety: none; the ops object serialises calls with its mutex.
 */
#ifndef VG_OPS_SLA_H
#define VG_OPS_SLA_H

#include <stdint.h>

#include "ops/ops.h"

#define OPS_SLA_FILE "ops.db"
#define OPS_SLA_RETENTION_DAYS 30  /* ops days of minutes kept (and pruned beyond, +1 day) */
#define OPS_SLA_MAX_VIOLATIONS 100 /* per objective and window, newest kept */
#define OPS_SLA_FILE_MODE 0600

typedef struct ops_sla_minute {
    int64_t t_ms;       /* wall-clock start of the minute */
    uint32_t minute_ms; /* real length of the minute (60000 / time scale) */
    uint32_t up_ms;     /* real time the process was up in it */
    uint64_t answers, answers_5xx;
    uint64_t analyses, analyses_failed; /* images */
    uint64_t analysis_n, analysis_over; /* analysis-class answers, over the threshold */
    uint64_t api_n, api_over;
    uint64_t errors;                    /* answers_5xx + analyses_failed */
    double analysis_p95_ms, api_p95_ms; /* NAN without answers */
} ops_sla_minute;

typedef struct ops_sla ops_sla;

typedef struct ops_sla_config {
    const char *dir;   /* borrowed; NULL: in memory only (nothing persisted) */
    double time_scale; /* as ops */
    double target[OPS_SLOS];
    double threshold_ms[OPS_SLOS];
    int64_t now_ms; /* wall clock of the open (the start of this run) */
} ops_sla_config;

/* Opens (creating) the database, loads the retained minutes, records this start and the
 * downtime since the last heartbeat. *out owned (ops_sla_close). VG_EIO, VG_ESTORE, VG_ENOMEM. */
int ops_sla_open(const ops_sla_config *cfg, ops_sla **out);
/* Marks a clean stop at now_ms and closes. NULL no-op. */
void ops_sla_close(ops_sla *s, int64_t now_ms);

/* Appends (or replaces, same t_ms) one minute, in memory and in the database; prunes minutes
 * past the retention. A database failure is logged and counted, the minute stays in memory.
 * Returns VG_OK or the database error. */
int ops_sla_append(ops_sla *s, const ops_sla_minute *m);

/* The real length of one ops minute in ms. */
int64_t ops_sla_minute_ms(const ops_sla *s);
/* Rows written and write failures since open (vigil_ops_* metrics). */
void ops_sla_counts(const ops_sla *s, uint64_t *rows_written, uint64_t *write_errors);

/* Bad ratio of one objective over the last window_real_ms before now_ms (events before the
 * first open ever are not in it). Counts: from `events` when given (the caller's own sums for the
 * window, e.g. the ops ring's), else from the minutes plus `current` (the minute being
 * accumulated; may be NULL). Availability always adds the downtime in the window. VG_ENOTFOUND
 * without events. */
int ops_sla_bad_ratio(ops_sla *s, ops_slo slo, int64_t window_real_ms, int64_t now_ms,
                      const ops_sla_minute *current, const ops_sla_minute *events, double *ratio);

/* Downtime in ms between from_ms and to_ms (gaps between a heartbeat and the next start). */
int64_t ops_sla_downtime_ms(const ops_sla *s, int64_t from_ms, int64_t to_ms);

/* The JSON of GET /api/v1/metrics/sla. current as above. *out owned (json_decref). */
int ops_sla_render(ops_sla *s, int64_t now_ms, const ops_sla_minute *current, struct json_t **out);

#endif /* VG_OPS_SLA_H */
