/* ops_sla: per-minute SLA rows in memory and in <data_dir>/ops.db, downtime from heartbeats,
 * compliance, burn rate and violations (see ops_sla.h for the definitions). The only file of ops
 * that includes <sqlite3.h>. Writes: one small transaction per ops minute (the minute, the
 * heartbeat), WAL with synchronous=NORMAL: a process crash loses nothing committed, a power loss
 * at most the last commits. */
#include "ops/ops_sla.h"
#include "ops/ops_int.h"

#include "core/core.h"

#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPS_SLA_DAY_MS 86400000.0
#define OPS_SLA_KEEP_DAYS (OPS_SLA_RETENTION_DAYS + 1) /* one day of slack before pruning */
#define OPS_SLA_PRUNE_EVERY 60                         /* appends (ops minutes) between prunes */
#define OPS_SLA_BUSY_TIMEOUT_MS 1000

typedef struct sla_run {
    int64_t start_ms, prev_hb_ms; /* prev_hb_ms 0: the first start ever */
} sla_run;

struct ops_sla {
    ops_sla_config cfg;
    sqlite3 *db;
    sqlite3_stmt *ins, *hb;
    int64_t minute_ms, keep_ms, retention_ms;
    int64_t first_seen_ms, started_ms;
    ops_sla_minute *min; /* ring, oldest at head */
    size_t cap, head, n;
    sla_run *runs;
    size_t n_runs, cap_runs;
    uint64_t rows, errors, appends;
};

/* ---- database ------------------------------------------------------------------------------- */

static int db_err(ops_sla *s, const char *what)
{
    return vg_err_set(VG_ESTORE, "ops.db: %s: %s", what, s->db ? sqlite3_errmsg(s->db) : "?");
}

static int exec(ops_sla *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = vg_err_set(VG_ESTORE, "ops.db: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    return VG_OK;
}

static int64_t meta_get(ops_sla *s, const char *key, int64_t def)
{
    sqlite3_stmt *st;
    int64_t v = def;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return def;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int meta_set(ops_sla *s, const char *key, int64_t v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(s, "meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    int rc = sqlite3_step(st) == SQLITE_DONE ? VG_OK : db_err(s, "meta");
    sqlite3_finalize(st);
    return rc;
}

static const char schema[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS minutes(t_ms INTEGER PRIMARY KEY, minute_ms INTEGER NOT NULL,"
    " up_ms INTEGER NOT NULL, answers INTEGER NOT NULL, answers_5xx INTEGER NOT NULL,"
    " analyses INTEGER NOT NULL, analyses_failed INTEGER NOT NULL, analysis_n INTEGER NOT NULL,"
    " analysis_over INTEGER NOT NULL, api_n INTEGER NOT NULL, api_over INTEGER NOT NULL,"
    " errors INTEGER NOT NULL, analysis_p95_ms REAL, api_p95_ms REAL);"
    "CREATE TABLE IF NOT EXISTS runs(start_ms INTEGER PRIMARY KEY, prev_heartbeat_ms INTEGER,"
    " prev_clean INTEGER);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);";

static void ring_put(ops_sla *s, const ops_sla_minute *m)
{
    if (s->n) {
        ops_sla_minute *last = &s->min[(s->head + s->n - 1) % s->cap];
        if (m->t_ms == last->t_ms) {
            *last = *m;
            return;
        }
        if (m->t_ms < last->t_ms) /* clock stepped back: the database keeps it, memory not */
            return;
    }
    if (s->n == s->cap) {
        s->head = (s->head + 1) % s->cap;
        s->n--;
    }
    s->min[(s->head + s->n) % s->cap] = *m;
    s->n++;
}

static int runs_add(ops_sla *s, int64_t start, int64_t prev_hb)
{
    if (s->n_runs == s->cap_runs) {
        size_t cap = s->cap_runs ? 2 * s->cap_runs : 16;
        sla_run *r = vg_realloc(s->runs, cap * sizeof *r);
        if (!r)
            return VG_ENOMEM;
        s->runs = r;
        s->cap_runs = cap;
    }
    s->runs[s->n_runs++] = (sla_run){start, prev_hb};
    return VG_OK;
}

static double col_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static int load(ops_sla *s, int64_t now)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT t_ms, minute_ms, up_ms, answers, answers_5xx, analyses, "
                           "analyses_failed, analysis_n, analysis_over, api_n, api_over, errors, "
                           "analysis_p95_ms, api_p95_ms FROM minutes WHERE t_ms >= ? ORDER BY t_ms",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, "load minutes");
    sqlite3_bind_int64(st, 1, now - s->keep_ms);
    while (sqlite3_step(st) == SQLITE_ROW) {
        ops_sla_minute m = {
            .t_ms = sqlite3_column_int64(st, 0),
            .minute_ms = (uint32_t)sqlite3_column_int64(st, 1),
            .up_ms = (uint32_t)sqlite3_column_int64(st, 2),
            .answers = (uint64_t)sqlite3_column_int64(st, 3),
            .answers_5xx = (uint64_t)sqlite3_column_int64(st, 4),
            .analyses = (uint64_t)sqlite3_column_int64(st, 5),
            .analyses_failed = (uint64_t)sqlite3_column_int64(st, 6),
            .analysis_n = (uint64_t)sqlite3_column_int64(st, 7),
            .analysis_over = (uint64_t)sqlite3_column_int64(st, 8),
            .api_n = (uint64_t)sqlite3_column_int64(st, 9),
            .api_over = (uint64_t)sqlite3_column_int64(st, 10),
            .errors = (uint64_t)sqlite3_column_int64(st, 11),
            .analysis_p95_ms = col_real(st, 12),
            .api_p95_ms = col_real(st, 13),
        };
        ring_put(s, &m);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT start_ms, prev_heartbeat_ms FROM runs WHERE start_ms >= ? "
                           "ORDER BY start_ms",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(s, "load runs");
    sqlite3_bind_int64(st, 1, now - s->keep_ms);
    int rc = VG_OK;
    while (rc == VG_OK && sqlite3_step(st) == SQLITE_ROW)
        rc = runs_add(s, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    return rc;
}

static int open_db(ops_sla *s, int64_t now)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s->cfg.dir, OPS_SLA_FILE);
    /* SLA history is operator data: owner only, whatever the umask */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, OPS_SLA_FILE_MODE);
    if (fd < 0)
        return vg_err_set(VG_EIO, "ops.db: cannot open %s", path);
    fchmod(fd, OPS_SLA_FILE_MODE);
    close(fd);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK)
        return db_err(s, "open");
    sqlite3_busy_timeout(s->db, OPS_SLA_BUSY_TIMEOUT_MS);
    int rc = exec(s, schema);
    if (rc != VG_OK)
        return rc;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO minutes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO meta(key, value) VALUES "
                           "('heartbeat_ms', ?)",
                           -1, &s->hb, NULL) != SQLITE_OK)
        return db_err(s, "prepare");
    if ((rc = load(s, now)) != VG_OK)
        return rc;
    /* this start: the gap since the last heartbeat is downtime */
    int64_t first = meta_get(s, "first_seen_ms", 0);
    int64_t hb = meta_get(s, "heartbeat_ms", 0);
    int64_t clean = meta_get(s, "clean_stop", 0);
    s->first_seen_ms = first ? first : now;
    if (hb > now)
        hb = now;
    if ((rc = exec(s, "BEGIN")) != VG_OK)
        return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", -1, &st, NULL) !=
        SQLITE_OK) {
        exec(s, "ROLLBACK");
        return db_err(s, "runs");
    }
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, first ? hb : 0);
    sqlite3_bind_int64(st, 3, clean);
    rc = sqlite3_step(st) == SQLITE_DONE ? VG_OK : db_err(s, "runs");
    sqlite3_finalize(st);
    if (rc == VG_OK && !first)
        rc = meta_set(s, "first_seen_ms", now);
    if (rc == VG_OK)
        rc = meta_set(s, "clean_stop", 0);
    if (rc == VG_OK)
        rc = meta_set(s, "heartbeat_ms", now);
    if (rc == VG_OK)
        rc = exec(s, "COMMIT");
    else
        exec(s, "ROLLBACK");
    if (rc == VG_OK)
        rc = runs_add(s, now, first ? hb : 0);
    if (rc == VG_OK && first && now > hb)
        VG_INFO("ops", "SLA: %.1f s down since the last heartbeat (%s stop)",
                (double)(now - hb) / 1000.0, clean ? "clean" : "unclean");
    return rc;
}

int ops_sla_open(const ops_sla_config *cfg, ops_sla **out)
{
    *out = NULL;
    ops_sla *s = vg_calloc(1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->cfg = *cfg;
    double scale = cfg->time_scale >= 1 ? cfg->time_scale : 1;
    s->minute_ms = (int64_t)llround(60000.0 / scale);
    if (s->minute_ms < 1)
        s->minute_ms = 1;
    s->retention_ms = (int64_t)(OPS_SLA_RETENTION_DAYS * OPS_SLA_DAY_MS / scale);
    s->keep_ms = (int64_t)(OPS_SLA_KEEP_DAYS * OPS_SLA_DAY_MS / scale);
    s->cap = (size_t)(OPS_SLA_KEEP_DAYS * 1440);
    s->min = vg_calloc(s->cap, sizeof *s->min);
    s->started_ms = cfg->now_ms;
    s->first_seen_ms = cfg->now_ms;
    int rc = s->min ? VG_OK : VG_ENOMEM;
    if (rc == VG_OK) {
        s->cfg.dir = NULL; /* not kept: borrowed */
        if (cfg->dir) {
            s->cfg.dir = cfg->dir;
            rc = open_db(s, cfg->now_ms);
            s->cfg.dir = NULL;
        } else {
            rc = runs_add(s, cfg->now_ms, 0);
        }
    }
    if (rc != VG_OK) {
        sqlite3_finalize(s->ins);
        sqlite3_finalize(s->hb);
        if (s->db)
            sqlite3_close(s->db);
        vg_free(s->runs);
        vg_free(s->min);
        vg_free(s);
        return rc;
    }
    *out = s;
    return VG_OK;
}

void ops_sla_close(ops_sla *s, int64_t now_ms)
{
    if (!s)
        return;
    if (s->db) {
        if (exec(s, "BEGIN") == VG_OK) {
            int rc = meta_set(s, "heartbeat_ms", now_ms);
            if (rc == VG_OK)
                rc = meta_set(s, "clean_stop", 1);
            exec(s, rc == VG_OK ? "COMMIT" : "ROLLBACK");
        }
        sqlite3_finalize(s->ins);
        sqlite3_finalize(s->hb);
        sqlite3_close(s->db);
    }
    vg_free(s->runs);
    vg_free(s->min);
    vg_free(s);
}

int64_t ops_sla_minute_ms(const ops_sla *s)
{
    return s->minute_ms;
}

void ops_sla_counts(const ops_sla *s, uint64_t *rows_written, uint64_t *write_errors)
{
    *rows_written = s->rows;
    *write_errors = s->errors;
}

static void bind_real(sqlite3_stmt *st, int i, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void prune(ops_sla *s, int64_t now)
{
    sqlite3_stmt *st;
    static const char *const sql[] = {"DELETE FROM minutes WHERE t_ms < ?",
                                      "DELETE FROM runs WHERE start_ms < ?"};
    for (int i = 0; i < 2; i++) {
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &st, NULL) != SQLITE_OK)
            continue;
        sqlite3_bind_int64(st, 1, now - s->keep_ms);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    size_t drop = 0;
    while (drop < s->n_runs && s->runs[drop].start_ms < now - s->keep_ms && s->n_runs - drop > 1)
        drop++;
    if (drop) {
        memmove(s->runs, s->runs + drop, (s->n_runs - drop) * sizeof *s->runs);
        s->n_runs -= drop;
    }
}

int ops_sla_append(ops_sla *s, const ops_sla_minute *m)
{
    ring_put(s, m);
    if (!s->db)
        return VG_OK;
    int64_t hb = m->t_ms + m->minute_ms;
    int rc = exec(s, "BEGIN");
    if (rc == VG_OK) {
        sqlite3_stmt *st = s->ins;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, m->t_ms);
        sqlite3_bind_int64(st, 2, m->minute_ms);
        sqlite3_bind_int64(st, 3, m->up_ms);
        const uint64_t v[] = {m->answers,         m->answers_5xx, m->analyses,
                              m->analyses_failed, m->analysis_n,  m->analysis_over,
                              m->api_n,           m->api_over,    m->errors};
        for (int i = 0; i < 9; i++)
            sqlite3_bind_int64(st, 4 + i, (sqlite3_int64)v[i]);
        bind_real(st, 13, m->analysis_p95_ms);
        bind_real(st, 14, m->api_p95_ms);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(s, "write minute");
        sqlite3_reset(s->hb);
        sqlite3_bind_int64(s->hb, 1, hb);
        if (rc == VG_OK && sqlite3_step(s->hb) != SQLITE_DONE)
            rc = db_err(s, "heartbeat");
        int rc2 = exec(s, rc == VG_OK ? "COMMIT" : "ROLLBACK");
        if (rc == VG_OK)
            rc = rc2;
    }
    if (rc == VG_OK) {
        s->rows++;
        if (++s->appends % OPS_SLA_PRUNE_EVERY == 0)
            prune(s, hb);
    } else {
        s->errors++;
        VG_WARN("ops", "SLA minute not persisted: %s", vg_err_msg());
    }
    return rc;
}

/* ---- arithmetic ----------------------------------------------------------------------------- */

static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
    int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

int64_t ops_sla_downtime_ms(const ops_sla *s, int64_t from_ms, int64_t to_ms)
{
    int64_t d = 0;
    for (size_t i = 0; i < s->n_runs; i++)
        if (s->runs[i].prev_hb_ms > 0)
            d += overlap(s->runs[i].prev_hb_ms, s->runs[i].start_ms, from_ms, to_ms);
    return d;
}

static void minute_add(ops_sla_minute *d, const ops_sla_minute *m)
{
    d->answers += m->answers;
    d->answers_5xx += m->answers_5xx;
    d->analyses += m->analyses;
    d->analyses_failed += m->analyses_failed;
    d->analysis_n += m->analysis_n;
    d->analysis_over += m->analysis_over;
    d->api_n += m->api_n;
    d->api_over += m->api_over;
    d->errors += m->errors;
    d->up_ms += m->up_ms;
}

static const ops_sla_minute *ring_at(const ops_sla *s, size_t i)
{
    return &s->min[(s->head + i) % s->cap];
}

/* The minutes overlapping [from, now] plus current. */
static void window_sum(const ops_sla *s, int64_t from, const ops_sla_minute *current,
                       ops_sla_minute *sum)
{
    memset(sum, 0, sizeof *sum);
    int64_t last_t = INT64_MIN;
    for (size_t i = s->n; i-- > 0;) {
        const ops_sla_minute *m = ring_at(s, i);
        if (i == s->n - 1)
            last_t = m->t_ms;
        if (m->t_ms + (int64_t)m->minute_ms <= from)
            break;
        minute_add(sum, m);
    }
    if (current && current->t_ms > last_t)
        minute_add(sum, current);
}

/* Bad ratio of slo from window sums; availability also from the downtime in [from, now]. */
static int bad_from(const ops_sla *s, ops_slo slo, const ops_sla_minute *w, int64_t from,
                    int64_t now, double *out)
{
    switch (slo) {
    case OPS_SLO_AVAILABILITY: {
        if (from < s->first_seen_ms)
            from = s->first_seen_ms;
        int64_t known = now - from;
        if (known <= 0 && !w->answers)
            return VG_ENOTFOUND;
        double up = known > 0 ? 1.0 - (double)ops_sla_downtime_ms(s, from, now) / (double)known : 1;
        if (up < 0)
            up = 0;
        double ok = w->answers ? 1.0 - (double)w->answers_5xx / (double)w->answers : 1;
        *out = 1.0 - up * ok;
        return VG_OK;
    }
    case OPS_SLO_ANALYSIS_LATENCY:
        if (!w->analysis_n)
            return VG_ENOTFOUND;
        *out = (double)w->analysis_over / (double)w->analysis_n;
        return VG_OK;
    case OPS_SLO_API_LATENCY:
        if (!w->api_n)
            return VG_ENOTFOUND;
        *out = (double)w->api_over / (double)w->api_n;
        return VG_OK;
    case OPS_SLO_ERROR_RATE: {
        uint64_t events = w->answers + w->analyses;
        if (!events)
            return VG_ENOTFOUND;
        *out = (double)w->errors / (double)events;
        if (*out > 1)
            *out = 1;
        return VG_OK;
    }
    default:
        return VG_EINVAL;
    }
}

int ops_sla_bad_ratio(ops_sla *s, ops_slo slo, int64_t window_real_ms, int64_t now_ms,
                      const ops_sla_minute *current, const ops_sla_minute *events, double *ratio)
{
    if ((unsigned)slo >= OPS_SLOS || window_real_ms <= 0)
        return vg_err_set(VG_EINVAL, "ops: bad objective or window");
    int64_t from = now_ms - window_real_ms;
    ops_sla_minute w;
    if (events)
        w = *events;
    else
        window_sum(s, from, current, &w);
    return bad_from(s, slo, &w, from, now_ms, ratio);
}

/* ---- violations and the JSON ---------------------------------------------------------------- */

typedef struct viol {
    int64_t start, end; /* end -1: ongoing */
    double worst;
} viol;

typedef struct viol_list {
    viol v[OPS_SLA_MAX_VIOLATIONS]; /* ring: the newest kept */
    size_t n, head;
    int open;
    viol cur;
} viol_list;

static void viol_close(viol_list *l)
{
    if (!l->open)
        return;
    if (l->n == OPS_SLA_MAX_VIOLATIONS) {
        l->head = (l->head + 1) % OPS_SLA_MAX_VIOLATIONS;
        l->n--;
    }
    l->v[(l->head + l->n) % OPS_SLA_MAX_VIOLATIONS] = l->cur;
    l->n++;
    l->open = 0;
}

/* One minute for one objective: bad or not, with its value; higher_worse: latency, errors. */
static void viol_step(viol_list *l, int bad, int64_t t, int64_t mm, double v, int higher_worse)
{
    if (!bad) {
        viol_close(l);
        return;
    }
    if (!l->open) {
        l->open = 1;
        l->cur = (viol){t, t + mm, v};
        return;
    }
    l->cur.end = t + mm;
    if (isnan(l->cur.worst) || (higher_worse ? v > l->cur.worst : v < l->cur.worst))
        l->cur.worst = v;
}

static json_t *viol_json(viol_list *l, int64_t now)
{
    if (l->open && l->cur.end > now)
        l->cur.end = -1; /* the current minute is still breaking it */
    viol_close(l);
    json_t *a = json_array();
    for (size_t i = l->n; i-- > 0;) { /* newest first */
        const viol *v = &l->v[(l->head + i) % OPS_SLA_MAX_VIOLATIONS];
        json_array_append_new(a, json_pack("{s:o,s:o,s:o}", "start", ops__time(v->start), "end",
                                           v->end < 0 ? json_null() : ops__time(v->end), "worst",
                                           ops__num(v->worst)));
    }
    return a;
}

/* Walks the minute grid of [from, now] once and collects every objective's violations. */
static void violations(const ops_sla *s, int64_t from, int64_t now, const ops_sla_minute *current,
                       viol_list *lists)
{
    int64_t mm = s->minute_ms;
    if (from < s->first_seen_ms)
        from = s->first_seen_ms;
    int64_t g = from - from % mm;
    size_t i = 0;
    while (i < s->n && ring_at(s, i)->t_ms < g)
        i++;
    int used_current = 0;
    for (; g < now; g += mm) {
        ops_sla_minute m;
        memset(&m, 0, sizeof m);
        double ap95 = NAN, pp95 = NAN;
        int64_t last_t = INT64_MIN;
        while (i < s->n && ring_at(s, i)->t_ms < g + mm) {
            const ops_sla_minute *r = ring_at(s, i);
            minute_add(&m, r);
            last_t = r->t_ms;
            if (isnan(ap95) || r->analysis_p95_ms > ap95)
                ap95 = r->analysis_p95_ms;
            if (isnan(pp95) || r->api_p95_ms > pp95)
                pp95 = r->api_p95_ms;
            i++;
        }
        if (current && !used_current && current->t_ms >= g && current->t_ms < g + mm &&
            current->t_ms > last_t && (s->n == 0 || current->t_ms > ring_at(s, s->n - 1)->t_ms)) {
            minute_add(&m, current);
            ap95 = current->analysis_p95_ms;
            pp95 = current->api_p95_ms;
            used_current = 1;
        }
        /* availability: the downtime and the 5xx of this minute, over the part of it known */
        int64_t k0 = g > s->first_seen_ms ? g : s->first_seen_ms, k1 = g + mm < now ? g + mm : now;
        double known = (double)(k1 - k0);
        double up = known > 0 ? 1.0 - (double)ops_sla_downtime_ms(s, k0, k1) / known : 1;
        double ok = m.answers ? 1.0 - (double)m.answers_5xx / (double)m.answers : 1;
        double avail = up * ok;
        viol_step(&lists[OPS_SLO_AVAILABILITY], avail < s->cfg.target[OPS_SLO_AVAILABILITY], g, mm,
                  avail, 0);
        double lat_bound = 1 - OPS_SLO_LATENCY_QUANTILE;
        viol_step(&lists[OPS_SLO_ANALYSIS_LATENCY],
                  m.analysis_n && (double)m.analysis_over / (double)m.analysis_n > lat_bound, g, mm,
                  ap95, 1);
        viol_step(&lists[OPS_SLO_API_LATENCY],
                  m.api_n && (double)m.api_over / (double)m.api_n > lat_bound, g, mm, pp95, 1);
        uint64_t events = m.answers + m.analyses;
        double er = events ? (double)m.errors / (double)events : 0;
        viol_step(&lists[OPS_SLO_ERROR_RATE], events && er > 1 - s->cfg.target[OPS_SLO_ERROR_RATE],
                  g, mm, er, 1);
    }
}

static json_t *window_json(ops_sla *s, int64_t window_ms, int64_t now,
                           const ops_sla_minute *current, viol_list *lists)
{
    int64_t from = now - window_ms;
    ops_sla_minute w;
    window_sum(s, from, current, &w);
    memset(lists, 0, OPS_SLOS * sizeof *lists);
    violations(s, from, now, current, lists);
    json_t *o = json_object();
    for (int slo = 0; slo < OPS_SLOS; slo++) {
        double bad = NAN;
        int have = bad_from(s, (ops_slo)slo, &w, from, now, &bad) == VG_OK;
        double budget = 1 - s->cfg.target[slo];
        double burn = have ? bad / budget : NAN;
        json_object_set_new(
            o, ops_slo_name((ops_slo)slo),
            json_pack("{s:o,s:b,s:o,s:o,s:o}", "compliance", ops__num(have ? 1 - bad : NAN), "met",
                      !have || 1 - bad >= s->cfg.target[slo] - 1e-12, "error_budget_remaining",
                      ops__num(have ? 1 - burn : 1), "burn_rate", ops__num(have ? burn : 0),
                      "violations", viol_json(&lists[slo], now)));
    }
    return o;
}

int ops_sla_render(ops_sla *s, int64_t now_ms, const ops_sla_minute *current, json_t **out)
{
    *out = NULL;
    static const char *const descriptions[OPS_SLOS] = {
        "share of time up (process liveness) times the share of non-5xx answers",
        "share of analysis answers within the threshold (P95 objective: at least 95%)",
        "share of API answers within the threshold (P95 objective: at least 95%)",
        "1 - (5xx answers + failed images) / (answers + analysed images)"};
    json_t *objs = json_array();
    for (int slo = 0; slo < OPS_SLOS; slo++) {
        json_t *o = json_pack("{s:s,s:s,s:o}", "name", ops_slo_name((ops_slo)slo), "description",
                              descriptions[slo], "target", ops__num(s->cfg.target[slo]));
        if (s->cfg.threshold_ms[slo] > 0)
            json_object_set_new(o, "threshold_ms", json_real(s->cfg.threshold_ms[slo]));
        json_array_append_new(objs, o);
    }
    viol_list *lists = vg_malloc(OPS_SLOS * sizeof *lists);
    if (!lists) {
        json_decref(objs);
        return VG_ENOMEM;
    }
    double scale = s->cfg.time_scale >= 1 ? s->cfg.time_scale : 1;
    static const char *const names[4] = {"1h", "24h", "7d", "30d"};
    static const double hours[4] = {1, 24, 24 * 7, 24 * 30};
    json_t *windows = json_object();
    for (int i = 0; i < 4; i++)
        json_object_set_new(
            windows, names[i],
            window_json(s, (int64_t)(hours[i] * 3600000.0 / scale), now_ms, current, lists));
    vg_free(lists);
    int64_t from30 = now_ms - s->retention_ms;
    int restarts = 0;
    for (size_t i = 0; i < s->n_runs; i++)
        if (s->runs[i].prev_hb_ms > 0 && s->runs[i].start_ms >= from30)
            restarts++;
    json_t *uptime =
        json_pack("{s:o,s:o,s:o,s:i}", "started_at", ops__time(s->started_ms), "uptime_s",
                  ops__num((double)(now_ms - s->started_ms) / 1000.0), "downtime_s_30d",
                  ops__num((double)ops_sla_downtime_ms(s, from30, now_ms) / 1000.0), "restarts_30d",
                  restarts);
    json_t *j =
        json_pack("{s:o,s:o,s:o,s:o,s:o}", "generated_at", ops__time(now_ms), "time_scale",
                  ops__num(scale), "objectives", objs, "windows", windows, "uptime", uptime);
    if (!j)
        return VG_ENOMEM;
    *out = j;
    return VG_OK;
}
