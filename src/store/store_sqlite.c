/*
 * store_sqlite: the one file that talks to SQLite (STYLE rule 14). Everything else in the store
 * sees connections (lite_db), cached prepared statements (lite_stmt) and VG_E* codes.
 *
 * Invariants:
 *   - connections are opened SQLITE_OPEN_NOMUTEX: the store guarantees one thread per
 *     connection at a time (the read pool or the write queue), so SQLite's own per-connection
 *     mutex would only cost time;
 *   - every prepared statement lives in its connection's cache, keyed by its SQL text, prepared
 *     once with SQLITE_PREPARE_PERSISTENT and reset after each use; lite_stmt pointers are stable
 *     (the cache table holds pointers) so a rehash never moves a statement in use;
 *   - lock waits go through our busy handler, which counts each wait (store_stats.busy_retries)
 *     and gives up after busy_timeout_ms with SQLITE_BUSY -> VG_EBUSY.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

typedef struct lite_db lite_db;
typedef struct lite_stmt lite_stmt;

struct lite_stmt {
    sq_stmt base; /* first: the backend-neutral handle */
    sqlite3_stmt *st;
    lite_db *db;
    uint64_t hash;
    int in_use;     /* between lite_prepare and lite_release; a second prepare of the same
                       text is a bug */
    int transient;  /* not cached (the cache is full): finalized by lite_release */
    uint64_t t0_ns; /* first step of the current execution; 0 = not started (query latency) */
};

static void stmt_latency_end(lite_stmt *s);

/* Most statements one connection caches. The store's fixed SQL needs about 60; list filters
 * combine into more texts, rarely used ones beyond this bound are prepared per call. */
#define SQ_CACHE_MAX_STMTS 256

/* The WAL hook's target (store.c's checkpoint trigger). */
typedef struct wal_hook_ctx {
    void (*cb)(void *ctx, int wal_pages);
    void *ctx;
} wal_hook_ctx;

struct lite_db {
    sq_db base; /* first: the backend-neutral handle */
    sqlite3 *db;
    store_counters *ctr;
    uint32_t busy_timeout_ms;
    lite_stmt **slots; /* open addressing on hash, NULL = empty */
    size_t cap, n;
    wal_hook_ctx wal_hook;
};

static const sq_backend LITE_BACKEND;
static int lite_prepare(lite_db *d, const char *sql, lite_stmt **out);
static void lite_release(lite_stmt *s);
static int lite_step(lite_stmt *s);
static int lite_exec(lite_db *d, const char *sql);
static void lite_close(lite_db *d);
static int64_t lite_col_int64(lite_stmt *s, int i);
static const char *lite_col_text(lite_stmt *s, int i);

/* ---- errors --------------------------------------------------------------------------------- */

/* A database failure (not the caller's fault): counted, kept as the store's last error, and
 * returned as code with the text. */
static int counted_err(lite_db *d, int code, const char *text)
{
    atomic_fetch_add(&d->ctr->errors, 1);
    store__counters_error(d->ctr, text);
    return vg_err_set(code, "%s", text);
}

static int map_err(lite_db *d, int rc)
{
    int ext = sqlite3_extended_errcode(d->db);
    const char *msg = sqlite3_errmsg(d->db);
    char buf[256];
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            return vg_err_set(VG_EEXIST, "already exists (%s)", msg);
        if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            return vg_err_set(VG_ENOTFOUND, "a referenced row does not exist (%s)", msg);
        if (ext == SQLITE_CONSTRAINT_CHECK || ext == SQLITE_CONSTRAINT_NOTNULL)
            return vg_err_set(VG_EINVAL, "invalid value (%s)", msg);
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        snprintf(buf, sizeof buf, "database is locked (%s)", msg);
        return counted_err(d, VG_EBUSY, buf);
    case SQLITE_FULL:
        /* The disk (or its quota) is full: a condition of the machine, not a bug, and one that
         * clears by itself when space returns; callers answer 503 + Retry-After, not 500. */
        snprintf(buf, sizeof buf, "the database disk is full (%s)", msg);
        return counted_err(d, VG_ENOSPC, buf);
    case SQLITE_NOMEM:
        return counted_err(d, VG_ENOMEM, "sqlite: out of memory");
    default:
        break;
    }
    /* The operating system's reason says what an operator must fix ("Read-only file system",
     * "Permission denied") where SQLite's text ("unable to open database file") does not. */
    int sys = sqlite3_system_errno(d->db);
    if (sys && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR ||
                (rc & 0xff) == SQLITE_READONLY))
        snprintf(buf, sizeof buf, "sqlite error %d: %s (%s)", ext, msg, strerror(sys));
    else
        snprintf(buf, sizeof buf, "sqlite error %d: %s", ext, msg);
    return counted_err(d, VG_ESTORE, buf);
}

/* ---- busy handler --------------------------------------------------------------------------- */

/* Backoff in ms for the Nth wait of one lock attempt; the total is capped by busy_timeout_ms. */
static const unsigned BUSY_DELAYS_MS[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};

static int busy_cb(void *arg, int count)
{
    lite_db *d = arg;
    uint64_t waited = 0;
    size_t nd = VG_ARRAY_LEN(BUSY_DELAYS_MS);
    for (int i = 0; i < count; i++)
        waited += BUSY_DELAYS_MS[(size_t)i < nd ? (size_t)i : nd - 1];
    if (waited >= d->busy_timeout_ms)
        return 0;
    unsigned delay = BUSY_DELAYS_MS[(size_t)count < nd ? (size_t)count : nd - 1];
    if (waited + delay > d->busy_timeout_ms)
        delay = (unsigned)(d->busy_timeout_ms - waited);
    atomic_fetch_add(&d->ctr->busy_retries, 1);
    struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* ---- open / close --------------------------------------------------------------------------- */

static uint64_t lite_memory_used(void)
{
    sqlite3_int64 n = sqlite3_memory_used();
    return n > 0 ? (uint64_t)n : 0;
}

static int lite_open(const sq_open_opts *o, lite_db **out)
{
    lite_db *d = vg_calloc(1, sizeof *d);
    if (!d)
        return vg_err_set(VG_ENOMEM, "store: connection");
    d->base.be = &LITE_BACKEND;
    d->ctr = o->ctr;
    d->busy_timeout_ms = o->busy_timeout_ms;
    d->cap = 64;
    d->slots = vg_calloc(d->cap, sizeof *d->slots);
    if (!d->slots) {
        vg_free(d);
        return vg_err_set(VG_ENOMEM, "store: statement cache");
    }
    int flags = SQLITE_OPEN_NOMUTEX |
                (o->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(o->path, &d->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int err;
        if (!d->db) {
            err = vg_err_set(VG_ENOMEM, "store: sqlite3_open_v2");
        } else {
            err = vg_err_set(VG_ESTORE, "cannot open database %s: %s", o->path,
                             sqlite3_errmsg(d->db));
            atomic_fetch_add(&d->ctr->errors, 1);
            store__counters_error(d->ctr, vg_err_msg());
        }
        sqlite3_close(d->db);
        vg_free(d->slots);
        vg_free(d);
        return err;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_handler(d->db, busy_cb, d);

    /* journal_mode=WAL is persistent in the file, but asking on every connection also makes
     * a foreign file fail here (SQLITE_NOTADB) rather than on the first query. */
    int err = 0;
    if (!o->read_only) {
        /* Two processes opening a new file at once both switch it to WAL; the switch needs an
         * exclusive lock and SQLite answers SQLITE_BUSY at once, without the busy handler. So
         * the switch itself is retried (1, 2, 4 ... 16 ms) within busy_timeout_ms. */
        for (unsigned waited = 0, delay = 1;; delay = delay < 16 ? delay * 2 : 16) {
            lite_stmt *s = NULL;
            err = lite_prepare(d, "PRAGMA journal_mode=WAL", &s);
            if (!err) {
                err = lite_step(s);
                if (err == SQ_ROW) {
                    const char *mode = lite_col_text(s, 0);
                    err = mode && strcmp(mode, "wal") == 0
                              ? 0
                              : vg_err_set(VG_ESTORE, "cannot switch %s to WAL mode (got %s)",
                                           o->path, mode ? mode : "nothing");
                } else if (err == SQ_DONE) {
                    err = vg_err_set(VG_ESTORE, "PRAGMA journal_mode returned no row");
                }
                lite_release(s);
            }
            if (err != VG_EBUSY || waited >= o->busy_timeout_ms)
                break;
            struct timespec ts = {0, (long)delay * 1000000L};
            nanosleep(&ts, NULL);
            waited += delay;
        }
        if (!err)
            err = lite_exec(d,
                            o->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        /* When a checkpoint resets the WAL, truncate it back to this size, so a burst of writes
         * does not leave a huge WAL file behind for good. */
        if (!err)
            err = lite_exec(d, "PRAGMA journal_size_limit=67108864");
    } else {
        /* Touch the schema so a foreign file fails at open for readers too. */
        err = lite_exec(d, "SELECT count(*) FROM sqlite_schema");
    }
    if (!err)
        err = lite_exec(d, "PRAGMA foreign_keys=ON");
    if (!err && o->max_db_bytes) {
        lite_stmt *s = NULL;
        err = lite_prepare(d, "PRAGMA page_size", &s);
        int64_t page = 4096;
        if (!err) {
            if (lite_step(s) == SQ_ROW)
                page = lite_col_int64(s, 0);
            lite_release(s);
        }
        if (!err) {
            uint64_t pages = o->max_db_bytes / (uint64_t)(page > 0 ? page : 4096);
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
                     (unsigned long long)(pages ? pages : 1));
            err = lite_exec(d, sql);
        }
    }
    if (err) {
        lite_close(d);
        return err;
    }
    *out = d;
    return 0;
}

static void lite_close(lite_db *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->cap; i++) {
        if (d->slots[i]) {
            sqlite3_finalize(d->slots[i]->st);
            vg_free(d->slots[i]);
        }
    }
    vg_free(d->slots);
    /* The last connection to close checkpoints the WAL and removes it. */
    if (sqlite3_close(d->db) != SQLITE_OK)
        VG_WARN("store", "sqlite3_close: %s", sqlite3_errmsg(d->db));
    vg_free(d);
}

static const char *lite_library_version(void)
{
    return sqlite3_libversion();
}

/* ---- statements ----------------------------------------------------------------------------- */

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int cache_grow(lite_db *d)
{
    size_t ncap = d->cap * 2;
    lite_stmt **ns = vg_calloc(ncap, sizeof *ns);
    if (!ns)
        return vg_err_set(VG_ENOMEM, "store: statement cache");
    for (size_t i = 0; i < d->cap; i++) {
        lite_stmt *e = d->slots[i];
        if (!e)
            continue;
        size_t j = (size_t)e->hash & (ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = e;
    }
    vg_free(d->slots);
    d->slots = ns;
    d->cap = ncap;
    return 0;
}

static int lite_prepare(lite_db *d, const char *sql, lite_stmt **out)
{
    uint64_t h = text_hash(sql);
    size_t j = (size_t)h & (d->cap - 1);
    while (d->slots[j]) {
        lite_stmt *e = d->slots[j];
        if (e->hash == h && strcmp(sqlite3_sql(e->st), sql) == 0) {
            if (e->in_use)
                return vg_err_set(VG_EINTERNAL, "store: statement prepared twice: %.60s", sql);
            e->in_use = 1;
            *out = e;
            return 0;
        }
        j = (j + 1) & (d->cap - 1);
    }
    int cache = d->n < SQ_CACHE_MAX_STMTS;
    if (cache && (d->n + 1) * 2 > d->cap) {
        int err = cache_grow(d);
        if (err)
            return err;
        j = (size_t)h & (d->cap - 1);
        while (d->slots[j])
            j = (j + 1) & (d->cap - 1);
    }
    lite_stmt *e = vg_calloc(1, sizeof *e);
    if (!e)
        return vg_err_set(VG_ENOMEM, "store: statement");
    int rc =
        sqlite3_prepare_v3(d->db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &e->st, NULL);
    if (rc != SQLITE_OK) {
        int err = map_err(d, rc);
        sqlite3_finalize(e->st);
        vg_free(e);
        return err;
    }
    if (!e->st) { /* empty statement */
        vg_free(e);
        return vg_err_set(VG_EINTERNAL, "store: empty SQL");
    }
    e->db = d;
    e->base.db = &d->base;
    e->hash = h;
    e->in_use = 1;
    if (cache) {
        d->slots[j] = e;
        d->n++;
    } else {
        e->transient = 1;
    }
    *out = e;
    return 0;
}

static void lite_release(lite_stmt *s)
{
    if (!s)
        return;
    stmt_latency_end(s);
    if (s->transient) {
        sqlite3_finalize(s->st);
        vg_free(s);
        return;
    }
    sqlite3_reset(s->st);
    sqlite3_clear_bindings(s->st);
    s->in_use = 0;
}

static int bind_rc(lite_stmt *s, int rc)
{
    return rc == SQLITE_OK ? 0 : map_err(s->db, rc);
}

static int lite_bind_text(lite_stmt *s, int i, const char *v)
{
    if (!v)
        return bind_rc(s, sqlite3_bind_null(s->st, i));
    return bind_rc(s, sqlite3_bind_text(s->st, i, v, -1, SQLITE_STATIC));
}

static int lite_bind_blob(lite_stmt *s, int i, const void *v, size_t n)
{
    if (!v)
        return bind_rc(s, sqlite3_bind_null(s->st, i));
    return bind_rc(s, sqlite3_bind_blob64(s->st, i, v, (sqlite3_uint64)n, SQLITE_STATIC));
}

static int lite_bind_int64(lite_stmt *s, int i, int64_t v)
{
    return bind_rc(s, sqlite3_bind_int64(s->st, i, (sqlite3_int64)v));
}

static int lite_bind_double(lite_stmt *s, int i, double v)
{
    return bind_rc(s, sqlite3_bind_double(s->st, i, v));
}

static int lite_bind_null(lite_stmt *s, int i)
{
    return bind_rc(s, sqlite3_bind_null(s->st, i));
}

/* A statement's latency runs from its first step to SQLITE_DONE, an error, or its release (a
 * read that stops after the rows it wanted): what the caller waited for, busy waits included. */
static void stmt_latency_end(lite_stmt *s)
{
    if (s->t0_ns) {
        vg_lat_record(&s->db->ctr->query_latency, vg_now_ns() - s->t0_ns);
        s->t0_ns = 0;
    }
}

static int lite_step(lite_stmt *s)
{
    if (!s->t0_ns)
        s->t0_ns = vg_now_ns();
    int rc = sqlite3_step(s->st);
    if (rc == SQLITE_ROW)
        return SQ_ROW;
    stmt_latency_end(s);
    if (rc == SQLITE_DONE) {
        atomic_fetch_add(&s->db->ctr->queries, 1);
        return SQ_DONE;
    }
    return map_err(s->db, rc);
}

static int lite_col_is_null(lite_stmt *s, int i)
{
    return sqlite3_column_type(s->st, i) == SQLITE_NULL;
}

static int64_t lite_col_int64(lite_stmt *s, int i)
{
    return (int64_t)sqlite3_column_int64(s->st, i);
}

static double lite_col_double(lite_stmt *s, int i)
{
    return sqlite3_column_double(s->st, i);
}

static const char *lite_col_text(lite_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s->st, i);
}

static const void *lite_col_blob(lite_stmt *s, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(s->st, i);
    *len = p ? (size_t)sqlite3_column_bytes(s->st, i) : 0;
    return p;
}

static int lite_changes(lite_db *d)
{
    return sqlite3_changes(d->db);
}

static int lite_in_txn(lite_db *d)
{
    return !sqlite3_get_autocommit(d->db);
}

static int lite_exec(lite_db *d, const char *sql)
{
    uint64_t t0 = vg_now_ns();
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    vg_lat_record(&d->ctr->query_latency, vg_now_ns() - t0);
    if (rc != SQLITE_OK)
        return map_err(d, rc);
    atomic_fetch_add(&d->ctr->queries, 1);
    return 0;
}

static int lite_wal_autocheckpoint_off(lite_db *d)
{
    return lite_exec(d, "PRAGMA wal_autocheckpoint=0");
}

static int wal_hook_tramp(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    lite_db *d = arg;
    d->wal_hook.cb(d->wal_hook.ctx, pages);
    return SQLITE_OK;
}

static void lite_wal_hook(lite_db *d, void (*cb)(void *ctx, int wal_pages), void *ctx)
{
    d->wal_hook.cb = cb;
    d->wal_hook.ctx = ctx;
    sqlite3_wal_hook(d->db, cb ? wal_hook_tramp : NULL, d);
}

static int lite_checkpoint_passive(lite_db *d, int *wal_pages, int *done_pages)
{
    int rc =
        sqlite3_wal_checkpoint_v2(d->db, NULL, SQLITE_CHECKPOINT_PASSIVE, wal_pages, done_pages);
    /* Another connection holds the checkpoint lock (a closing connection checkpoints too):
     * nothing is wrong, the next trigger tries again. Not an error for the stats. */
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        return vg_err_set(VG_EBUSY, "checkpoint lock held elsewhere");
    if (rc != SQLITE_OK)
        return map_err(d, rc);
    return 0;
}

static int pragma_int(lite_db *d, const char *sql, int *out)
{
    lite_stmt *s = NULL;
    int err = lite_prepare(d, sql, &s);
    if (err)
        return err;
    err = lite_step(s);
    if (err == SQ_ROW) {
        *out = (int)lite_col_int64(s, 0);
        err = 0;
    } else if (err == SQ_DONE) {
        err = vg_err_set(VG_ESTORE, "%s returned no row", sql);
    }
    lite_release(s);
    return err;
}

static int lite_user_version(lite_db *d, int *out)
{
    return pragma_int(d, "PRAGMA user_version", out);
}

static int lite_set_user_version(lite_db *d, int v)
{
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v);
    return lite_exec(d, sql);
}

static int lite_table_count(lite_db *d, int *out)
{
    return pragma_int(d, "SELECT count(*) FROM sqlite_schema WHERE type='table'", out);
}

/* ---- the backend table (store_db.c dispatches through it) ---------------------------------- */

#define LD(x) ((lite_db *)(x))
#define LS(x) ((lite_stmt *)(x))

static void v_close(sq_db *d)
{
    lite_close(LD(d));
}
static int v_exec(sq_db *d, const char *sql)
{
    return lite_exec(LD(d), sql);
}
static int v_prepare(sq_db *d, const char *sql, sq_stmt **out)
{
    lite_stmt *s = NULL;
    int err = lite_prepare(LD(d), sql, &s);
    if (!err)
        *out = &s->base;
    return err;
}
static void v_release(sq_stmt *s)
{
    lite_release(LS(s));
}
static int v_bind_text(sq_stmt *s, int i, const char *v)
{
    return lite_bind_text(LS(s), i, v);
}
static int v_bind_blob(sq_stmt *s, int i, const void *v, size_t n)
{
    return lite_bind_blob(LS(s), i, v, n);
}
static int v_bind_int64(sq_stmt *s, int i, int64_t v)
{
    return lite_bind_int64(LS(s), i, v);
}
static int v_bind_double(sq_stmt *s, int i, double v)
{
    return lite_bind_double(LS(s), i, v);
}
static int v_bind_null(sq_stmt *s, int i)
{
    return lite_bind_null(LS(s), i);
}
static int v_step(sq_stmt *s)
{
    return lite_step(LS(s));
}
static int v_col_is_null(sq_stmt *s, int i)
{
    return lite_col_is_null(LS(s), i);
}
static int64_t v_col_int64(sq_stmt *s, int i)
{
    return lite_col_int64(LS(s), i);
}
static double v_col_double(sq_stmt *s, int i)
{
    return lite_col_double(LS(s), i);
}
static const char *v_col_text(sq_stmt *s, int i)
{
    return lite_col_text(LS(s), i);
}
static const void *v_col_blob(sq_stmt *s, int i, size_t *len)
{
    return lite_col_blob(LS(s), i, len);
}
static int v_changes(sq_db *d)
{
    return lite_changes(LD(d));
}
static int v_in_txn(sq_db *d)
{
    return lite_in_txn(LD(d));
}
static int v_user_version(sq_db *d, int *out)
{
    return lite_user_version(LD(d), out);
}
static int v_set_user_version(sq_db *d, int v)
{
    return lite_set_user_version(LD(d), v);
}
static int v_table_count(sq_db *d, int *out)
{
    return lite_table_count(LD(d), out);
}
static uint64_t v_memory_used(sq_db *d)
{
    (void)d;
    return lite_memory_used();
}
static const char *v_library_version(sq_db *d)
{
    (void)d;
    return lite_library_version();
}

static const sq_backend LITE_BACKEND = {
    .kind = SQ_SQLITE,
    .close = v_close,
    .exec = v_exec,
    .prepare = v_prepare,
    .release = v_release,
    .bind_text = v_bind_text,
    .bind_blob = v_bind_blob,
    .bind_int64 = v_bind_int64,
    .bind_double = v_bind_double,
    .bind_null = v_bind_null,
    .step = v_step,
    .col_is_null = v_col_is_null,
    .col_int64 = v_col_int64,
    .col_double = v_col_double,
    .col_text = v_col_text,
    .col_blob = v_col_blob,
    .changes = v_changes,
    .in_txn = v_in_txn,
    .user_version = v_user_version,
    .set_user_version = v_set_user_version,
    .table_count = v_table_count,
    .memory_used = v_memory_used,
    .library_version = v_library_version,
};

int store__lite_open(const sq_open_opts *o, sq_db **out)
{
    lite_db *d = NULL;
    int err = lite_open(o, &d);
    if (!err)
        *out = &d->base;
    return err;
}

/* The WAL entry points exist on SQLite connections only; store.c calls them after checking
 * the backend. */
int store__sq_wal_autocheckpoint_off(sq_db *d)
{
    return lite_wal_autocheckpoint_off(LD(d));
}

void store__sq_wal_hook(sq_db *d, void (*cb)(void *ctx, int wal_pages), void *ctx)
{
    lite_wal_hook(LD(d), cb, ctx);
}

int store__sq_checkpoint_passive(sq_db *d, int *wal_pages, int *done_pages)
{
    return lite_checkpoint_passive(LD(d), wal_pages, done_pages);
}
