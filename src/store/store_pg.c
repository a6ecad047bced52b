/*
 * store_pg: the one file that talks to PostgreSQL through libpq (STYLE rule 14). It offers the
 * same calls as store_sqlite.c (see store_int.h), so the store's SQL runs on either backend.
 *
 * Invariants:
 *   - a connection is used by one thread at a time (the read pool or the write queue), like a
 *     SQLite one; it is a blocking libpq connection;
 *   - every statement lives in its connection's cache keyed by its SQL text. Its `?` / `?N`
 *     placeholders become `$n` once, when it enters the cache; it is PQprepare'd on the first
 *     execution (so parameter types come from the first binding: int64 -> int8, double ->
 *     float8, blob -> bytea, text -> text, NULL left to the server but for "?N IS NULL",
 *     where it is text) and again after a reconnect
 *     (the connection generation changed);
 *   - parameters go as text, blobs as binary; results come back as text and are parsed here
 *     (bytea from its hex form), which keeps this file free of per-type binary decoding;
 *   - a whole result is fetched at the first step (the store's reads are bounded pages);
 *   - a statement that fails because the server went away (SQLSTATE class 08, 57P01..57P03 or
 *     a dead socket) outside a transaction on a read-only connection, or a BEGIN, is run again
 *     once after a reconnect: nothing was written, so nothing can be written twice. Inside a
 *     write transaction the failure is reported (store__sq_fail = SQ_FAIL_CONN) and store.c
 *     decides, since only it knows whether COMMIT had been sent;
 *   - the circuit: a reconnect that gives up (reconnect_timeout_ms) marks the database down for
 *     all the store's connections; from then on a statement outside a transaction fails at once
 *     with VG_EUNAVAIL "database unavailable" (503) instead of waiting out its own reconnect,
 *     and only the first statement after the backoff tries to reconnect (one attempt). Nothing
 *     was sent for a statement refused so, so no acknowledged write is at stake: a write fails
 *     before its BEGIN, and a transaction already under way runs on (and fails as before).
 *
 * Transactions: "BEGIN IMMEDIATE" (the store's write transaction) becomes BEGIN ISOLATION LEVEL
 * SERIALIZABLE, which gives several nodes writing one database the single-writer semantics the
 * store was written for; a serialization failure or deadlock is reported as SQ_FAIL_RETRY and
 * store.c runs the transaction again. A plain "BEGIN" (a multi-statement read) is REPEATABLE
 * READ: one snapshot, like a SQLite read transaction.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

/* Most statements one connection caches (as store_sqlite.c). */
#define PG_CACHE_MAX_STMTS 256
/* Most parameters one statement takes (the largest insert has 17). */
#define PG_MAX_PARAMS 64
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 5000
/* A lost connection is re-established with these waits between attempts, for at most the
 * store's reconnect_timeout_ms in all (a PostgreSQL restart takes about a second). */
static const unsigned PG_RECONNECT_DELAYS_MS[] = {0, 50, 100, 200, 400, 800, 1000};
/* The circuit's first wait before a probe once the database is down; doubled per failed probe up
 * to the store's retry_max_ms. */
#define PG_PROBE_FIRST_MS 100
/* The advisory lock key that serialises schema migrations between nodes ("vigil" in ASCII). */
#define PG_MIGRATION_LOCK_KEY 0x766967696cLL

typedef struct pg_db pg_db;
typedef struct pg_stmt pg_stmt;

struct pg_stmt {
    sq_stmt base; /* first: the backend-neutral handle */
    pg_db *db;
    char *sql;    /* the store's text (cache key), owned */
    char *pg_sql; /* with $n placeholders, owned */
    uint64_t hash;
    char name[16];             /* server-side prepared statement name; "" for a transient one */
    unsigned gen;              /* connection generation it was prepared on; 0 = not yet */
    int n_params;              /* highest placeholder number */
    int in_use;                /* between prepare and release */
    int transient;             /* not cached: freed by release */
    uint64_t t0_ns;            /* first step of the current execution (query latency) */
    char kinds[PG_MAX_PARAMS]; /* per parameter: 0 unbound/NULL, 't','b','i','d' */
    const char *vals[PG_MAX_PARAMS]; /* borrowed (text, blob) or numbuf */
    int lens[PG_MAX_PARAMS];
    int fmts[PG_MAX_PARAMS];
    char numbuf[PG_MAX_PARAMS][32];
    PGresult *res;      /* the current execution's result (streaming: the current row's) */
    int row, n_rows;    /* current row (-1 before the first), rows in res */
    int executed;       /* sent to the server in this execution */
    int stream;         /* store__sq_stream: rows come one at a time (single-row mode) */
    int streaming;      /* more rows may come from the server */
    unsigned char **bl; /* decoded bytea of the current row, per column (vg_malloc'ed) */
    size_t *bl_len;
    int n_cols;
};

struct pg_db {
    sq_db base; /* first */
    PGconn *conn;
    store_counters *ctr;
    int read_only;
    unsigned gen; /* bumped at each (re)connect: prepared statements are per server session */
    unsigned next_name;
    pg_stmt **stmts; /* the cache, PG_CACHE_MAX_STMTS slots, linear search on hash */
    size_t n;
    int changes;
    sq_fail fail;
    int lost_in_txn; /* the session died inside a transaction the caller has not ended yet */
    int64_t txid;
    char version[64];
};

static const sq_backend PG_BACKEND;
static void drain(pg_stmt *s);

/* ---- errors --------------------------------------------------------------------------------- */

static int counted_err(pg_db *d, int code, const char *text)
{
    atomic_fetch_add(&d->ctr->errors, 1);
    store__counters_error(d->ctr, text);
    return vg_err_set(code, "%s", text);
}

static int conn_lost_state(const char *state)
{
    return state && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                     strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0);
}

/* Maps a failed result (or NULL: no result at all) to a VG_E* code, as store_sqlite.c's
 * map_err does, and records what it means for the transaction in d->fail. */
static int map_err(pg_db *d, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(d->conn);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", msg && *msg ? msg : "no result");
    size_t bl = strlen(buf);
    while (bl && (buf[bl - 1] == '\n' || buf[bl - 1] == ' '))
        buf[--bl] = '\0';
    for (char *c = buf; *c; c++) /* one line for last_error and the logs */
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    if (!r || PQstatus(d->conn) == CONNECTION_BAD || conn_lost_state(state)) {
        d->fail = SQ_FAIL_CONN;
        char m[300];
        snprintf(m, sizeof m, "postgresql connection lost: %s", buf);
        /* Unavailable (503 + Retry-After): the database is away, not broken. */
        return counted_err(d, VG_EUNAVAIL, m);
    }
    if (state) {
        if (!strcmp(state, "23505"))
            return vg_err_set(VG_EEXIST, "already exists (%s)", buf);
        if (!strcmp(state, "23503"))
            return vg_err_set(VG_ENOTFOUND, "a referenced row does not exist (%s)", buf);
        if (!strcmp(state, "23514") || !strcmp(state, "23502"))
            return vg_err_set(VG_EINVAL, "invalid value (%s)", buf);
        if (!strcmp(state, "40001") || !strcmp(state, "40P01")) {
            d->fail = SQ_FAIL_RETRY;
            return counted_err(d, VG_EBUSY, buf);
        }
        if (!strcmp(state, "55P03")) { /* lock_timeout: the busy timeout ran out */
            char m[300];
            atomic_fetch_add(&d->ctr->busy_retries, 1);
            snprintf(m, sizeof m, "database is locked (%s)", buf);
            return counted_err(d, VG_EBUSY, m);
        }
        if (!strcmp(state, "57014")) /* statement_timeout */
            return counted_err(d, VG_EBUSY, buf);
        if (!strcmp(state, "53100"))
            return counted_err(d, VG_ENOSPC, buf);
        if (!strcmp(state, "53200"))
            return counted_err(d, VG_ENOMEM, "postgresql: out of memory");
    }
    char m[300];
    snprintf(m, sizeof m, "postgresql error %s: %s", state ? state : "?", buf);
    return counted_err(d, VG_ESTORE, m);
}

/* ---- connections ---------------------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_version(pg_db *d)
{
    int lib = PQlibVersion(), srv = PQserverVersion(d->conn);
    snprintf(d->version, sizeof d->version, "libpq %d.%d, server %d.%d", lib / 10000, lib % 10000,
             srv / 10000, srv % 10000);
}

/* Server notices (and the FATAL a restarting server sends to idle sessions) go to the debug
 * log rather than libpq's default, stderr. */
static void notice_cb(void *arg, const char *msg)
{
    (void)arg;
    VG_DEBUG("store", "postgresql: %s", msg);
}

int store__pg_open(const sq_open_opts *o, sq_db **out)
{
    pg_db *d = vg_calloc(1, sizeof *d);
    if (!d)
        return vg_err_set(VG_ENOMEM, "store: connection");
    d->stmts = vg_calloc(PG_CACHE_MAX_STMTS, sizeof *d->stmts);
    if (!d->stmts) {
        vg_free(d);
        return vg_err_set(VG_ENOMEM, "store: statement cache");
    }
    d->base.be = &PG_BACKEND;
    d->ctr = o->ctr;
    d->read_only = o->read_only;
    uint32_t cto = o->connect_timeout_ms ? o->connect_timeout_ms : PG_DEFAULT_CONNECT_TIMEOUT_MS;
    char ct[16], opts[256];
    /* libpq's connect_timeout is in whole seconds (and at least 2). */
    snprintf(ct, sizeof ct, "%u", (unsigned)((cto + 999) / 1000 < 2 ? 2 : (cto + 999) / 1000));
    /* Session settings: the lock wait (the busy timeout), the statement timeout, the
     * durability level, and read-only sessions for the read pool. */
    snprintf(opts, sizeof opts,
             "-c lock_timeout=%u -c statement_timeout=%u -c synchronous_commit=%s "
             "-c default_transaction_read_only=%s -c client_min_messages=warning",
             (unsigned)o->busy_timeout_ms, (unsigned)o->statement_timeout_ms,
             o->sync_full ? "on" : "off", o->read_only ? "on" : "off");
    const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *vals[] = {o->path, ct, opts, "vigil", NULL};
    d->conn = PQconnectdbParams(keys, vals, 1);
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        char m[300];
        snprintf(m, sizeof m, "cannot connect to postgresql: %s",
                 d->conn ? PQerrorMessage(d->conn) : "out of memory");
        size_t l = strlen(m);
        while (l && m[l - 1] == '\n')
            m[--l] = '\0';
        for (char *c = m; *c; c++) /* libpq's text spans lines: one line for the log */
            if (*c == '\n' || *c == '\t')
                *c = ' ';
        int err = counted_err(d, d->conn ? VG_ESTORE : VG_ENOMEM, m);
        PQfinish(d->conn);
        vg_free(d->stmts);
        vg_free(d);
        return err;
    }
    PQsetNoticeProcessor(d->conn, notice_cb, NULL);
    d->gen = 1;
    set_version(d);
    *out = &d->base;
    return 0;
}

static void stmt_clear_result(pg_stmt *s)
{
    if (s->bl) {
        for (int i = 0; i < s->n_cols; i++)
            vg_free(s->bl[i]);
        vg_free(s->bl);
        vg_free(s->bl_len);
        s->bl = NULL;
        s->bl_len = NULL;
    }
    PQclear(s->res);
    s->res = NULL;
    s->row = -1;
    s->n_rows = 0;
    s->n_cols = 0;
}

static void stmt_free(pg_stmt *s)
{
    stmt_clear_result(s);
    vg_free(s->sql);
    vg_free(s->pg_sql);
    vg_free(s);
}

static void pg_close(sq_db *db)
{
    pg_db *d = (pg_db *)db;
    for (size_t i = 0; i < d->n; i++)
        stmt_free(d->stmts[i]);
    vg_free(d->stmts);
    PQfinish(d->conn);
    vg_free(d);
}

static int circuit_open(const pg_db *d)
{
    return atomic_load(&d->ctr->db_down_since_ms) != 0;
}

/* A statement refused while the database is known down: counted apart from the database errors
 * (one per refused call would flood last_error), marked as a lost connection so store.c's write
 * path ends the transaction attempt without sending anything. */
static int fail_fast(pg_db *d, const char *why)
{
    store_counters *c = d->ctr;
    atomic_fetch_add(&c->db_fast_fails, 1);
    d->fail = SQ_FAIL_CONN;
    int64_t now = vg_wall_ms(), since = atomic_load(&c->db_down_since_ms);
    int64_t next = atomic_load(&c->db_next_probe_ms);
    return vg_err_set(VG_EUNAVAIL,
                      "database unavailable for %lld ms%s%s; next reconnect attempt in %lld ms",
                      (long long)(since ? now - since : 0), why ? ": " : "", why ? why : "",
                      (long long)(next > now ? next - now : 0));
}

static void reconnected(pg_db *d, uint64_t t0)
{
    d->gen++;
    d->fail = SQ_FAIL_NONE;
    d->lost_in_txn = 0;
    atomic_fetch_add(&d->ctr->reconnects, 1);
    VG_INFO("store", "reconnected to postgresql after %llu ms",
            (unsigned long long)((vg_now_ns() - t0) / 1000000));
}

/* One line of libpq's error text. */
static void conn_error(pg_db *d, char *m, size_t n)
{
    snprintf(m, n, "cannot reconnect to postgresql: %s", PQerrorMessage(d->conn));
    for (char *p = m; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    size_t l = strlen(m);
    while (l && m[l - 1] == ' ')
        m[--l] = '\0';
}

/* The database is known down: one call per backoff (the one that wins the compare-and-swap on
 * the probe time) tries once to reconnect; every other fails at once. */
static int probe(pg_db *d)
{
    store_counters *c = d->ctr;
    int64_t now = vg_wall_ms(), next = atomic_load(&c->db_next_probe_ms);
    int64_t backoff = atomic_load(&c->db_backoff_ms);
    if (now < next || !atomic_compare_exchange_strong(&c->db_next_probe_ms, &next, now + backoff))
        return fail_fast(d, NULL);
    uint64_t t0 = vg_now_ns();
    PQreset(d->conn);
    if (PQstatus(d->conn) == CONNECTION_OK) {
        int64_t since = atomic_exchange(&c->db_down_since_ms, 0);
        atomic_store(&c->db_backoff_ms, PG_PROBE_FIRST_MS);
        VG_INFO("store", "postgresql answers again after %lld ms unavailable",
                (long long)(since ? vg_wall_ms() - since : 0));
        reconnected(d, t0);
        return 0;
    }
    backoff = backoff * 2 > (int64_t)c->retry_max_ms ? (int64_t)c->retry_max_ms : backoff * 2;
    atomic_store(&c->db_backoff_ms, backoff);
    atomic_store(&c->db_next_probe_ms, vg_wall_ms() + backoff);
    char m[300];
    conn_error(d, m, sizeof m);
    return fail_fast(d, m);
}

/* Re-establishes the session (same parameters), with backoff, for up to reconnect_timeout_ms;
 * then opens the circuit. Prepared statements died with the old session: the generation bump
 * re-prepares them. While the circuit is open: probe(). A wait that another connection's
 * failure turned into a known outage stops at once. */
int store__pg_reconnect(sq_db *db)
{
    pg_db *d = (pg_db *)db;
    store_counters *c = d->ctr;
    if (circuit_open(d))
        return probe(d);
    uint64_t t0 = vg_now_ns();
    size_t nd = VG_ARRAY_LEN(PG_RECONNECT_DELAYS_MS);
    for (size_t i = 0;; i++) {
        sleep_ms(PG_RECONNECT_DELAYS_MS[i < nd ? i : nd - 1]);
        if (circuit_open(d))
            return fail_fast(d, NULL);
        PQreset(d->conn);
        if (PQstatus(d->conn) == CONNECTION_OK) {
            reconnected(d, t0);
            return 0;
        }
        if ((vg_now_ns() - t0) / 1000000 >= c->reconnect_timeout_ms)
            break;
    }
    char m[300];
    conn_error(d, m, sizeof m);
    /* next probe and backoff first: a thread that sees the circuit open reads valid ones */
    atomic_store(&c->db_backoff_ms, PG_PROBE_FIRST_MS);
    atomic_store(&c->db_next_probe_ms, vg_wall_ms() + PG_PROBE_FIRST_MS);
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&c->db_down_since_ms, &zero, vg_wall_ms()))
        VG_ERROR("store",
                 "postgresql unavailable for %u ms (%s): calls fail at once until a reconnect "
                 "succeeds",
                 (unsigned)c->reconnect_timeout_ms, m);
    d->fail = SQ_FAIL_CONN;
    char e[400];
    snprintf(e, sizeof e, "database unavailable: %s", m);
    return counted_err(d, VG_EUNAVAIL, e);
}

sq_fail store__pg_fail(sq_db *db)
{
    return ((pg_db *)db)->fail;
}

void store__pg_fail_clear(sq_db *db)
{
    ((pg_db *)db)->fail = SQ_FAIL_NONE;
}

int64_t store__pg_txid(sq_db *db)
{
    return ((pg_db *)db)->txid;
}

/* Whether transaction txid committed, asked on a new session after its own was lost while its
 * COMMIT was in flight (txid_status, PostgreSQL 10+). */
int store__pg_txid_committed(sq_db *db, int64_t txid)
{
    pg_db *d = (pg_db *)db;
    char q[96];
    snprintf(q, sizeof q, "SELECT txid_status(%lld)", (long long)txid);
    PGresult *r = PQexec(d->conn, q);
    int rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        rc = map_err(d, r);
    else if (PQgetisnull(r, 0, 0))
        rc = vg_err_set(VG_ESTORE, "transaction %lld is too old to check", (long long)txid);
    else if (!strcmp(PQgetvalue(r, 0, 0), "committed"))
        rc = 1;
    else if (!strcmp(PQgetvalue(r, 0, 0), "aborted"))
        rc = 0;
    else
        rc = vg_err_set(VG_ESTORE, "transaction %lld is still %s", (long long)txid,
                        PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* ---- exec ----------------------------------------------------------------------------------- */

static int lost(pg_db *d)
{
    return d->fail == SQ_FAIL_CONN;
}

/* Before each statement. A session that died inside a transaction stays failed until the
 * caller ends that transaction (ROLLBACK, COMMIT, or the BEGIN of the next one), so the rest of
 * the transaction never runs in autocommit on a new session. A session found dead outside a
 * transaction is re-established first. Returns 0 to go on, 1 for a ROLLBACK with nothing left
 * to roll back, or a negative VG_E*. sql: the statement's text (NULL: a prepared statement). */
static int session_ready(pg_db *d, const char *sql)
{
    if (d->lost_in_txn) {
        int ends = sql && (!strcmp(sql, "ROLLBACK") || !strcmp(sql, "COMMIT") ||
                           !strncmp(sql, "BEGIN", 5));
        if (!ends || !strcmp(sql, "COMMIT")) {
            if (ends)
                d->lost_in_txn = 0;
            d->fail = SQ_FAIL_CONN;
            return vg_err_set(VG_EUNAVAIL, "postgresql connection lost during this transaction");
        }
        d->lost_in_txn = 0;
        if (!strcmp(sql, "ROLLBACK"))
            return 1;
    }
    /* Known down: outside a transaction, refuse (or probe) before sending anything. Inside one,
     * the statement goes on and fails or not by itself: store.c ends the transaction. */
    PGTransactionStatusType ts = PQtransactionStatus(d->conn);
    if (circuit_open(d) && ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return store__pg_reconnect(&d->base);
    if (PQstatus(d->conn) == CONNECTION_BAD)
        return store__pg_reconnect(&d->base);
    return 0;
}

static int pg_exec(sq_db *db, const char *sql)
{
    pg_db *d = (pg_db *)db;
    const char *q = sql;
    int is_begin = 0, want_txid = 0;
    if (!strcmp(sql, "BEGIN IMMEDIATE")) {
        q = "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT txid_current()";
        is_begin = want_txid = 1;
    } else if (!strcmp(sql, "BEGIN")) {
        q = "BEGIN ISOLATION LEVEL REPEATABLE READ";
        is_begin = 1;
    }
    int ready = session_ready(d, sql);
    if (ready)
        return ready > 0 ? 0 : ready;
    int idle = PQtransactionStatus(d->conn) == PQTRANS_IDLE;
    for (int attempt = 0;; attempt++) {
        uint64_t t0 = vg_now_ns();
        d->fail = SQ_FAIL_NONE;
        PGresult *r = PQexec(d->conn, q);
        vg_lat_record(&d->ctr->query_latency, vg_now_ns() - t0);
        ExecStatusType st = PQresultStatus(r);
        if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
            /* COMMIT of a transaction that had failed answers "ROLLBACK". */
            if (!strcmp(sql, "COMMIT") && !strcmp(PQcmdStatus(r), "ROLLBACK")) {
                PQclear(r);
                return counted_err(d, VG_ESTORE, "transaction was rolled back by the server");
            }
            if (want_txid && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
                d->txid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            d->changes = atoi(PQcmdTuples(r));
            PQclear(r);
            atomic_fetch_add(&d->ctr->queries, 1);
            return 0;
        }
        int err = map_err(d, r);
        PQclear(r);
        if (lost(d) && !idle)
            d->lost_in_txn = 1;
        if (!(lost(d) && idle && attempt == 0 && (is_begin || d->read_only)))
            return err;
        if (store__pg_reconnect(db))
            return err;
    }
}

/* ---- statements ----------------------------------------------------------------------------- */

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* `?` -> `$k` (k counting), `?N` -> `$N`, outside quoted strings and identifiers. Returns the
 * new text (vg_malloc'ed) and the highest parameter number, or NULL on allocation failure. */
static char *translate(const char *sql, int *n_params)
{
    size_t n = strlen(sql);
    char *out = vg_malloc(n * 4 + 1); /* each '?' grows to at most "$NN" */
    if (!out)
        return NULL;
    size_t o = 0;
    int next = 0, max = 0;
    char quote = 0;
    for (size_t i = 0; i < n; i++) {
        char c = sql[i];
        if (quote) {
            out[o++] = c;
            if (c == quote)
                quote = 0;
            continue;
        }
        if (c == '\'' || c == '"') {
            quote = c;
            out[o++] = c;
            continue;
        }
        if (c != '?') {
            out[o++] = c;
            continue;
        }
        int num;
        if (sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            num = 0;
            while (sql[i + 1] >= '0' && sql[i + 1] <= '9')
                num = num * 10 + (sql[++i] - '0');
        } else {
            num = ++next;
        }
        if (num > max)
            max = num;
        o += (size_t)snprintf(out + o, 16, "$%d", num);
    }
    out[o] = '\0';
    *n_params = max;
    return out;
}

static int pg_prepare(sq_db *db, const char *sql, sq_stmt **out)
{
    pg_db *d = (pg_db *)db;
    uint64_t h = text_hash(sql);
    for (size_t i = 0; i < d->n; i++) {
        pg_stmt *e = d->stmts[i];
        if (e->hash == h && strcmp(e->sql, sql) == 0) {
            if (e->in_use)
                return vg_err_set(VG_EINTERNAL, "store: statement prepared twice: %.60s", sql);
            e->in_use = 1;
            *out = &e->base;
            return 0;
        }
    }
    pg_stmt *e = vg_calloc(1, sizeof *e);
    if (!e)
        return vg_err_set(VG_ENOMEM, "store: statement");
    e->sql = vg_malloc(strlen(sql) + 1);
    e->pg_sql = translate(sql, &e->n_params);
    if (!e->sql || !e->pg_sql) {
        stmt_free(e);
        return vg_err_set(VG_ENOMEM, "store: statement");
    }
    memcpy(e->sql, sql, strlen(sql) + 1);
    if (e->n_params > PG_MAX_PARAMS) {
        stmt_free(e);
        return vg_err_set(VG_EINTERNAL, "store: more than %d parameters", PG_MAX_PARAMS);
    }
    e->base.db = db;
    e->db = d;
    e->hash = h;
    e->row = -1;
    e->in_use = 1;
    if (d->n < PG_CACHE_MAX_STMTS) {
        snprintf(e->name, sizeof e->name, "vg%u", d->next_name++);
        d->stmts[d->n++] = e;
    } else {
        e->transient = 1; /* the unnamed statement, prepared at each execution */
    }
    *out = &e->base;
    return 0;
}

static void latency_end(pg_stmt *s)
{
    if (s->t0_ns) {
        vg_lat_record(&s->db->ctr->query_latency, vg_now_ns() - s->t0_ns);
        s->t0_ns = 0;
    }
}

static void pg_release(sq_stmt *ss)
{
    pg_stmt *s = (pg_stmt *)ss;
    latency_end(s);
    stmt_clear_result(s);
    if (s->streaming)
        drain(s); /* released before its last row: the rest is read and dropped */
    s->executed = 0;
    s->stream = 0;
    if (s->transient) {
        stmt_free(s);
        return;
    }
    memset(s->kinds, 0, sizeof s->kinds);
    memset(s->vals, 0, sizeof s->vals);
    s->in_use = 0;
}

static int bind_check(pg_stmt *s, int i)
{
    if (i < 1 || i > s->n_params)
        return vg_err_set(VG_EINTERNAL, "store: parameter %d out of range in %.60s", i, s->sql);
    return 0;
}

static int pg_bind_null(sq_stmt *ss, int i)
{
    pg_stmt *s = (pg_stmt *)ss;
    int err = bind_check(s, i);
    if (err)
        return err;
    s->kinds[i - 1] = 0;
    s->vals[i - 1] = NULL;
    s->lens[i - 1] = 0;
    s->fmts[i - 1] = 0;
    return 0;
}

static int pg_bind_text(sq_stmt *ss, int i, const char *v)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (!v)
        return pg_bind_null(ss, i);
    int err = bind_check(s, i);
    if (err)
        return err;
    s->kinds[i - 1] = 't';
    s->vals[i - 1] = v;
    s->lens[i - 1] = 0;
    s->fmts[i - 1] = 0;
    return 0;
}

static int pg_bind_blob(sq_stmt *ss, int i, const void *v, size_t n)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (!v)
        return pg_bind_null(ss, i);
    int err = bind_check(s, i);
    if (err)
        return err;
    if (n > (size_t)0x7fffffff)
        return vg_err_set(VG_ETOOBIG, "store: blob of %zu bytes", n);
    s->kinds[i - 1] = 'b';
    s->vals[i - 1] = v;
    s->lens[i - 1] = (int)n;
    s->fmts[i - 1] = 1; /* binary: bytea as is */
    return 0;
}

static int pg_bind_int64(sq_stmt *ss, int i, int64_t v)
{
    pg_stmt *s = (pg_stmt *)ss;
    int err = bind_check(s, i);
    if (err)
        return err;
    snprintf(s->numbuf[i - 1], sizeof s->numbuf[i - 1], "%lld", (long long)v);
    s->kinds[i - 1] = 'i';
    s->vals[i - 1] = s->numbuf[i - 1];
    s->lens[i - 1] = 0;
    s->fmts[i - 1] = 0;
    return 0;
}

static int pg_bind_double(sq_stmt *ss, int i, double v)
{
    pg_stmt *s = (pg_stmt *)ss;
    int err = bind_check(s, i);
    if (err)
        return err;
    snprintf(s->numbuf[i - 1], sizeof s->numbuf[i - 1], "%.17g", v);
    s->kinds[i - 1] = 'd';
    s->vals[i - 1] = s->numbuf[i - 1];
    s->lens[i - 1] = 0;
    s->fmts[i - 1] = 0;
    return 0;
}

/* 1 when $n appears in sql as "$n IS NULL" (and nowhere that would fix its type). */
static int null_test_param(const char *sql, int n)
{
    char pat[24];
    int pl = snprintf(pat, sizeof pat, "$%d", n);
    for (const char *p = strstr(sql, pat); p; p = strstr(p + 1, pat)) {
        if (p[pl] >= '0' && p[pl] <= '9')
            continue; /* $12 when looking for $1 */
        if (strncmp(p + pl, " IS NULL", 8) == 0)
            return 1;
    }
    return 0;
}

/* Prepares s on the current session if it is not yet: parameter types from this binding. */
static int ensure_prepared(pg_stmt *s)
{
    pg_db *d = s->db;
    if (!s->transient && s->gen == d->gen)
        return 0;
    Oid types[PG_MAX_PARAMS];
    for (int i = 0; i < s->n_params; i++) {
        switch (s->kinds[i]) {
        case 'i':
            types[i] = 20; /* int8 */
            break;
        case 'd':
            types[i] = 701; /* float8 */
            break;
        case 'b':
            types[i] = 17; /* bytea */
            break;
        case 't':
            types[i] = 25; /* text */
            break;
        default:
            /* NULL: the server infers the type from the other uses, except in "?N IS NULL",
             * the store's "optional filter" idiom, which says nothing about it: text, the
             * type of every optional filter the store has. */
            types[i] = null_test_param(s->pg_sql, i + 1) ? 25 : 0;
        }
    }
    PGresult *r = PQprepare(d->conn, s->name, s->pg_sql, s->n_params, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int err = map_err(d, r);
        PQclear(r);
        return err;
    }
    PQclear(r);
    s->gen = d->gen;
    return 0;
}

/* Reads and drops what is left of a single-row-mode result, so the session can take the next
 * command. */
static void drain(pg_stmt *s)
{
    PGresult *r;
    while ((r = PQgetResult(s->db->conn)))
        PQclear(r);
    s->streaming = 0;
}

/* Sends a streamed statement (single-row mode) and takes its first result. */
static PGresult *send_stream(pg_stmt *s)
{
    pg_db *d = s->db;
    if (!PQsendQueryPrepared(d->conn, s->name, s->n_params, s->vals, s->lens, s->fmts, 0))
        return NULL;
    if (!PQsetSingleRowMode(d->conn))
        VG_WARN("store", "postgresql: single-row mode refused; the result comes whole");
    s->streaming = 1;
    PGresult *r = PQgetResult(d->conn);
    if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
        /* The end (no rows) or an error: nothing more comes but the terminating NULL. */
        PGresult *keep = r;
        drain(s);
        return keep;
    }
    return r;
}

static int execute(pg_stmt *s)
{
    pg_db *d = s->db;
    int ready = session_ready(d, NULL);
    if (ready)
        return ready;
    int idle = PQtransactionStatus(d->conn) == PQTRANS_IDLE;
    for (int attempt = 0;; attempt++) {
        d->fail = SQ_FAIL_NONE;
        int err = ensure_prepared(s);
        if (!err) {
            PGresult *r = s->stream ? send_stream(s)
                                    : PQexecPrepared(d->conn, s->name, s->n_params, s->vals,
                                                     s->lens, s->fmts, 0);
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_SINGLE_TUPLE) {
                s->res = r;
                s->n_rows = st == PGRES_COMMAND_OK ? 0 : PQntuples(r);
                s->n_cols = PQnfields(r);
                s->row = -1;
                d->changes = atoi(PQcmdTuples(r));
                return 0;
            }
            err = map_err(d, r);
            PQclear(r);
        }
        if (lost(d) && !idle)
            d->lost_in_txn = 1;
        /* A read outside a transaction on a read-only session may simply run again on a new
         * session: nothing was written. */
        if (!(lost(d) && idle && d->read_only && attempt == 0))
            return err;
        if (store__pg_reconnect(&d->base))
            return err;
    }
}

static int pg_step(sq_stmt *ss)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (!s->executed) {
        s->t0_ns = vg_now_ns();
        int err = execute(s);
        if (err) {
            latency_end(s);
            return err;
        }
        s->executed = 1;
    }
    if (s->bl) {
        for (int i = 0; i < s->n_cols; i++) {
            vg_free(s->bl[i]);
            s->bl[i] = NULL;
        }
    }
    if (s->streaming && s->row >= 0) {
        /* The current row was read: the next one comes from the server. */
        stmt_clear_result(s);
        PGresult *r = PQgetResult(s->db->conn);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            s->res = r;
            s->n_rows = 1;
            s->n_cols = PQnfields(r);
        } else if (st == PGRES_TUPLES_OK) {
            PQclear(r);
            drain(s);
        } else {
            int err = map_err(s->db, r);
            PQclear(r);
            drain(s);
            if (lost(s->db) && PQtransactionStatus(s->db->conn) != PQTRANS_IDLE)
                s->db->lost_in_txn = 1;
            latency_end(s);
            return err;
        }
    }
    if (s->row + 1 < s->n_rows) {
        s->row++;
        return SQ_ROW;
    }
    s->row = s->n_rows;
    latency_end(s);
    atomic_fetch_add(&s->db->ctr->queries, 1);
    return SQ_DONE;
}

static int cur_ok(pg_stmt *s, int i)
{
    return s->res && s->row >= 0 && s->row < s->n_rows && i >= 0 && i < s->n_cols;
}

static int pg_col_is_null(sq_stmt *ss, int i)
{
    pg_stmt *s = (pg_stmt *)ss;
    return !cur_ok(s, i) || PQgetisnull(s->res, s->row, i);
}

static int64_t pg_col_int64(sq_stmt *ss, int i)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (pg_col_is_null(ss, i))
        return 0;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (v[0] == 't' && v[1] == '\0')
        return 1; /* boolean */
    if (v[0] == 'f' && v[1] == '\0')
        return 0;
    return (int64_t)strtoll(v, NULL, 10);
}

static double pg_col_double(sq_stmt *ss, int i)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (pg_col_is_null(ss, i))
        return 0;
    return strtod(PQgetvalue(s->res, s->row, i), NULL);
}

static const char *pg_col_text(sq_stmt *ss, int i)
{
    pg_stmt *s = (pg_stmt *)ss;
    if (pg_col_is_null(ss, i))
        return NULL;
    return PQgetvalue(s->res, s->row, i);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* bytea comes back as text "\x0a1b..." (bytea_output=hex, the default since 9.0); decoded
 * once per row and column into a buffer valid until the next step, like SQLite's. A column
 * of another type is returned as its text bytes. */
static const void *pg_col_blob(sq_stmt *ss, int i, size_t *len)
{
    pg_stmt *s = (pg_stmt *)ss;
    *len = 0;
    if (pg_col_is_null(ss, i))
        return NULL;
    const char *v = PQgetvalue(s->res, s->row, i);
    size_t vl = (size_t)PQgetlength(s->res, s->row, i);
    if (PQftype(s->res, i) != 17 || vl < 2 || v[0] != '\\' || v[1] != 'x') {
        *len = vl;
        return v;
    }
    if (!s->bl) {
        s->bl = vg_calloc((size_t)s->n_cols, sizeof *s->bl);
        s->bl_len = vg_calloc((size_t)s->n_cols, sizeof *s->bl_len);
        if (!s->bl || !s->bl_len) {
            vg_free(s->bl);
            vg_free(s->bl_len);
            s->bl = NULL;
            s->bl_len = NULL;
            return NULL;
        }
    }
    if (!s->bl[i]) {
        size_t n = (vl - 2) / 2;
        unsigned char *b = vg_malloc(n ? n : 1);
        if (!b)
            return NULL;
        for (size_t k = 0; k < n; k++) {
            int hi = hexval(v[2 + 2 * k]), lo = hexval(v[3 + 2 * k]);
            b[k] = (unsigned char)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
        }
        s->bl[i] = b;
        s->bl_len[i] = n;
    }
    *len = s->bl_len[i];
    return s->bl[i];
}

static int pg_changes(sq_db *db)
{
    return ((pg_db *)db)->changes;
}

static int pg_in_txn(sq_db *db)
{
    PGTransactionStatusType t = PQtransactionStatus(((pg_db *)db)->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* ---- schema version ------------------------------------------------------------------------- */

static int query_int(pg_db *d, const char *sql, int *out)
{
    PGresult *r = PQexec(d->conn, sql);
    int err = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        err = map_err(d, r);
    else if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
        *out = 0;
    else
        *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!err)
        atomic_fetch_add(&d->ctr->queries, 1);
    return err;
}

/* PostgreSQL has no user_version: the schema version is the one row of schema_version, a
 * table created with the first migration. The caller (store__migrate) holds the migration
 * advisory lock, so two nodes never create it at once. */
static int pg_user_version(sq_db *db, int *out)
{
    pg_db *d = (pg_db *)db;
    int exists = 0;
    int err = query_int(d,
                        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename = 'schema_version'",
                        &exists);
    if (err)
        return err;
    if (!exists) {
        *out = 0;
        return 0;
    }
    return query_int(d, "SELECT max(version) FROM schema_version", out);
}

static int pg_set_user_version(sq_db *db, int v)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL); "
             "DELETE FROM schema_version; INSERT INTO schema_version VALUES(%d)",
             v);
    return pg_exec(db, sql);
}

static int pg_table_count(sq_db *db, int *out)
{
    return query_int((pg_db *)db,
                     "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                     "AND tablename <> 'schema_version'",
                     out);
}

/* Serialises migrations between nodes that start at once: held until the transaction ends. */
int store__pg_migration_lock(sq_db *db)
{
    char sql[80];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)",
             (long long)PG_MIGRATION_LOCK_KEY);
    return pg_exec(db, sql);
}

static uint64_t pg_memory_used(sq_db *db)
{
    (void)db;
    return 0; /* the server holds the memory, not this process */
}

static const char *pg_library_version(sq_db *db)
{
    return ((pg_db *)db)->version;
}

static const sq_backend PG_BACKEND = {
    .kind = SQ_PG,
    .close = pg_close,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .release = pg_release,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .col_is_null = pg_col_is_null,
    .col_int64 = pg_col_int64,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .changes = pg_changes,
    .in_txn = pg_in_txn,
    .user_version = pg_user_version,
    .set_user_version = pg_set_user_version,
    .table_count = pg_table_count,
    .memory_used = pg_memory_used,
    .library_version = pg_library_version,
};

/* Rows of s come from the server one at a time (libpq single-row mode) instead of as one
 * result: for the walks over every reference, whose whole result would not fit in memory. No
 * other statement may run on the connection until s is released. */
void store__pg_stream(sq_stmt *ss)
{
    ((pg_stmt *)ss)->stream = 1;
}

/* ---- LISTEN: the change-log wake-up --------------------------------------------------------- */

/* How long the listener waits on its socket before it looks at its stop flag: the most
 * store_close waits for it (plus a connect attempt in progress, bounded by connect_timeout). */
#define PG_LISTEN_POLL_MS 100

struct store_pg_listener {
    char *url; /* owned */
    uint32_t connect_timeout_ms;
    store_counters *ctr;
    void (*wake)(void *arg);
    void *wake_arg;
    pthread_t thread;
    atomic_int stop;
    PGconn *conn; /* the listener thread's own */
};

/* libpq's error text of c on one line, for the log. */
static const char *conn_error_line(PGconn *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s", c ? PQerrorMessage(c) : "out of memory");
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
        buf[--l] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}

/* Sleeps ms in PG_LISTEN_POLL_MS steps; 1 when asked to stop meanwhile. */
static int listen_sleep(store_pg_listener *l, unsigned ms)
{
    for (unsigned done = 0; done < ms; done += PG_LISTEN_POLL_MS) {
        if (atomic_load(&l->stop))
            return 1;
        sleep_ms(ms - done < PG_LISTEN_POLL_MS ? ms - done : PG_LISTEN_POLL_MS);
    }
    return atomic_load(&l->stop);
}

/* A fresh session that has run LISTEN; retried with backoff (the last delay repeats) until it
 * works or the listener is stopped (then 1). */
static int listen_connect(store_pg_listener *l)
{
    char ct[16];
    uint32_t cto = l->connect_timeout_ms ? l->connect_timeout_ms : PG_DEFAULT_CONNECT_TIMEOUT_MS;
    snprintf(ct, sizeof ct, "%u", (unsigned)((cto + 999) / 1000 < 2 ? 2 : (cto + 999) / 1000));
    /* Its own application_name: operators (and the tests) tell it from the pool's sessions. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {l->url, ct, "vigil-listen", NULL};
    size_t nd = VG_ARRAY_LEN(PG_RECONNECT_DELAYS_MS);
    for (size_t i = 0;; i++) {
        if (listen_sleep(l, PG_RECONNECT_DELAYS_MS[i < nd ? i : nd - 1]))
            return 1;
        PQfinish(l->conn);
        l->conn = PQconnectdbParams(keys, vals, 1);
        if (l->conn && PQstatus(l->conn) == CONNECTION_OK) {
            PQsetNoticeProcessor(l->conn, notice_cb, NULL);
            PGresult *r = PQexec(l->conn, "LISTEN " STORE__CHANGES_PG_CHANNEL);
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (ok)
                return 0;
        }
        if (i == 0) { /* once per outage, not per attempt */
            char m[256];
            VG_WARN("store", "postgresql LISTEN session: %s; retrying",
                    conn_error_line(l->conn, m, sizeof m));
        }
    }
}

static void *listen_main(void *arg)
{
    store_pg_listener *l = arg;
    for (int first = 1; !atomic_load(&l->stop); first = 0) {
        if (listen_connect(l))
            break;
        if (!first)
            atomic_fetch_add(&l->ctr->reconnects, 1);
        /* Notifications sent while no session listened are not replayed: the sync reads the
         * log from its last applied seq, so one wake-up after each (re)connect catches up. */
        l->wake(l->wake_arg);
        while (!atomic_load(&l->stop)) {
            struct pollfd pfd = {.fd = PQsocket(l->conn), .events = POLLIN};
            if (pfd.fd < 0)
                break;
            int pr = poll(&pfd, 1, PG_LISTEN_POLL_MS);
            if (pr < 0 && errno != EINTR)
                break;
            if (pr <= 0)
                continue;
            if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK)
                break; /* the session is gone: reconnect */
            unsigned n = 0;
            PGnotify *nt;
            while ((nt = PQnotifies(l->conn))) {
                n++;
                PQfreemem(nt);
            }
            if (n) {
                atomic_fetch_add(&l->ctr->change_notifies, n);
                l->wake(l->wake_arg);
            }
        }
        if (!atomic_load(&l->stop)) {
            char m[256];
            VG_WARN("store", "postgresql LISTEN session lost (%s); reconnecting",
                    conn_error_line(l->conn, m, sizeof m));
        }
    }
    PQfinish(l->conn);
    l->conn = NULL;
    return NULL;
}

int store__pg_listen_start(const char *url, uint32_t connect_timeout_ms, store_counters *ctr,
                           void (*wake)(void *arg), void *wake_arg, store_pg_listener **out)
{
    store_pg_listener *l = vg_calloc(1, sizeof *l);
    if (!l || !(l->url = vg_strdup(url))) {
        vg_free(l);
        return vg_err_set(VG_ENOMEM, "store: listener");
    }
    l->connect_timeout_ms = connect_timeout_ms;
    l->ctr = ctr;
    l->wake = wake;
    l->wake_arg = wake_arg;
    atomic_init(&l->stop, 0);
    if (pthread_create(&l->thread, NULL, listen_main, l) != 0) {
        vg_free(l->url);
        vg_free(l);
        return vg_err_set(VG_ENOMEM, "store: cannot start the LISTEN thread");
    }
    *out = l;
    return 0;
}

void store__pg_listen_stop(store_pg_listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    vg_free(l->url);
    vg_free(l);
}
