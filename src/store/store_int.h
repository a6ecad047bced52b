/*
 * store internals shared by the store_*.c files.
 *
 * Layers:
 *   store_db.c      the sq_* API below: dispatches each call to its connection's backend;
 *   store_sqlite.c  the only file that includes <sqlite3.h> (STYLE rule 14): connections,
 *                   cached prepared statements, binds, steps, columns, error mapping, pragmas;
 *   store_pg.c      the only file that includes <libpq-fe.h>: the same calls over libpq
 *                   (`?` placeholders become `$n`, statements prepared once per connection);
 *   store.c         open/close, schema migrations, the read-connection pool, the write queue
 *                   with group commit, id generation, stats;
 *   store_query.c   a small SQL builder for the list queries and shared row/arena helpers;
 *   store_tenants.c, store_profiles.c, store_evidence.c, store_notices.c: one resource family
 *                   each, written against the sq_* API below.
 */
#ifndef VG_STORE_INT_H
#define VG_STORE_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "store/store.h"

/* ---- counters shared by every connection of one store --------------------------------------- */

typedef struct store_counters {
    _Atomic uint64_t queries, errors, busy_retries, commits, write_ops, scans_inserted, checkpoints;
    /* PostgreSQL: transactions run again after a serialization failure or deadlock, and
     * connections re-established after a loss (both 0 on SQLite). */
    _Atomic uint64_t txn_retries, reconnects;
    /* PostgreSQL: change-log notifications received by the LISTEN thread. */
    _Atomic uint64_t change_notifies;
    /* PostgreSQL circuit (store_pg.c), shared by the store's connections: once a reconnect gave
     * up after reconnect_timeout_ms, the database is known down (db_down_since_ms != 0) and
     * every statement outside a transaction fails at once with VG_EUNAVAIL, counted in
     * db_fast_fails, instead of waiting out its own reconnect; the first statement after
     * db_next_probe_ms makes one reconnect attempt (the probe), which closes the circuit or
     * doubles db_backoff_ms up to retry_max_ms. The two limits are set at open. */
    _Atomic int64_t db_down_since_ms, db_next_probe_ms, db_backoff_ms;
    _Atomic uint64_t db_fast_fails;
    uint32_t reconnect_timeout_ms, retry_max_ms;
    vg_lat_hist query_latency; /* first step to completion (or release) of each statement */
    pthread_mutex_t err_mu;    /* guards last_error / last_error_ms */
    char last_error[256];
    int64_t last_error_ms;
} store_counters;

/* ---- the database layer: store_db.c dispatches to store_sqlite.c or store_pg.c ------------- */

typedef struct sq_db sq_db;     /* one connection; used by one thread at a time */
typedef struct sq_stmt sq_stmt; /* a prepared statement owned by its connection's cache */

#define SQ_ROW 1
#define SQ_DONE 0

/* Which backend a connection talks to. The SQL the store writes is the subset both accept
 * (see docs/OPERATIONS.md, "Storage backends"); where they differ a caller asks
 * store__sq_kind and picks its text. */
typedef enum sq_kind { SQ_SQLITE, SQ_PG } sq_kind;
/* What a failed statement means for its transaction (see store__sq_fail). */
typedef enum sq_fail { SQ_FAIL_NONE, SQ_FAIL_RETRY, SQ_FAIL_CONN } sq_fail;

typedef struct sq_open_opts {
    const char *path;            /* a file path (SQLite) or a postgresql:// URL (PostgreSQL) */
    int read_only;               /* open SQLITE_OPEN_READONLY (pool readers) / read-only sessions */
    int sync_full;               /* synchronous=FULL (else NORMAL); PG: synchronous_commit */
    uint32_t busy_timeout_ms;    /* total wait for a lock before VG_EBUSY (PG: lock_timeout) */
    uint64_t max_db_bytes;       /* 0 = unlimited; else max_page_count (SQLite only) */
    uint32_t connect_timeout_ms; /* PG: connect_timeout; 0 = STORE_DEFAULT_CONNECT_TIMEOUT_MS */
    uint32_t statement_timeout_ms; /* PG: statement_timeout; 0 = none */
    store_counters *ctr;           /* borrowed; outlives the connection */
} sq_open_opts;

/* A backend's entry points; every connection and statement starts with a pointer to them. */
typedef struct sq_backend {
    sq_kind kind;
    void (*close)(sq_db *db);
    int (*exec)(sq_db *db, const char *sql);
    int (*prepare)(sq_db *db, const char *sql, sq_stmt **out);
    void (*release)(sq_stmt *s);
    int (*bind_text)(sq_stmt *s, int i, const char *v);
    int (*bind_blob)(sq_stmt *s, int i, const void *v, size_t n);
    int (*bind_int64)(sq_stmt *s, int i, int64_t v);
    int (*bind_double)(sq_stmt *s, int i, double v);
    int (*bind_null)(sq_stmt *s, int i);
    int (*step)(sq_stmt *s);
    int (*col_is_null)(sq_stmt *s, int i);
    int64_t (*col_int64)(sq_stmt *s, int i);
    double (*col_double)(sq_stmt *s, int i);
    const char *(*col_text)(sq_stmt *s, int i);
    const void *(*col_blob)(sq_stmt *s, int i, size_t *len);
    int (*changes)(sq_db *db);
    int (*in_txn)(sq_db *db);
    int (*user_version)(sq_db *db, int *out);
    int (*set_user_version)(sq_db *db, int v);
    int (*table_count)(sq_db *db, int *out);
    uint64_t (*memory_used)(sq_db *db);
    const char *(*library_version)(sq_db *db);
} sq_backend;

/* The head of every backend's connection / statement struct. */
struct sq_db {
    const sq_backend *be;
};
struct sq_stmt {
    sq_db *db;
};

/* Backend constructors (store_sqlite.c, store_pg.c). */
int store__lite_open(const sq_open_opts *o, sq_db **out);
int store__pg_open(const sq_open_opts *o, sq_db **out);
/* PostgreSQL-only entry points behind the store__sq_fail/reconnect/txid calls below, and the
 * migration lock (pg_advisory_xact_lock, held until the transaction ends). */
sq_fail store__pg_fail(sq_db *db);
void store__pg_fail_clear(sq_db *db);
int store__pg_reconnect(sq_db *db);
int64_t store__pg_txid(sq_db *db);
int store__pg_txid_committed(sq_db *db, int64_t txid);
int store__pg_migration_lock(sq_db *db);
/* The change-log channel: store__change_append NOTIFYs it, the LISTEN thread listens. */
#define STORE__CHANGES_PG_CHANNEL "vigil_changes"
/* The LISTEN thread: its own session on url (not a pool connection, which would miss
 * notifications while it does other work) LISTENs on STORE__CHANGES_PG_CHANNEL and calls
 * wake(wake_arg) once per batch of notifications and once after each (re)connect (a lost
 * session is re-established with backoff, counted in ctr->reconnects). Stop joins the thread
 * (within about PG_LISTEN_POLL_MS, longer while a connect attempt is in progress);
 * stop(NULL) is a no-op. */
typedef struct store_pg_listener store_pg_listener;
int store__pg_listen_start(const char *url, uint32_t connect_timeout_ms, store_counters *ctr,
                           void (*wake)(void *arg), void *wake_arg, store_pg_listener **out);
void store__pg_listen_stop(store_pg_listener *l);
void store__pg_stream(sq_stmt *s);
/* 1 when path names a PostgreSQL database (postgresql:// or postgres://). */
int store__is_pg_url(const char *path);

/* Opens one connection on the backend that o->path names. SQLite: WAL, foreign keys on, our
 * busy handler and the sync level. PostgreSQL: see store_pg.c. */
int store__sq_open(const sq_open_opts *o, sq_db **out);
void store__sq_close(sq_db *db);
sq_kind store__sq_kind(const sq_db *db);
/* Bytes the database library holds in this process (SQLite: page caches, schemas, statements,
 * all connections; PostgreSQL: 0, the server holds its memory). */
uint64_t store__sq_memory_used(sq_db *db);
/* Runs a script of statements without results (DDL, BEGIN/COMMIT). */
int store__sq_exec(sq_db *db, const char *sql);
/* A cached prepared statement for `sql` (keyed by its text). Release with store__sq_release before
 * preparing the same text again on this connection. Parameters are written `?` or `?N`. */
int store__sq_prepare(sq_db *db, const char *sql, sq_stmt **out);
/* Resets the statement and clears its bindings. store__sq_release(NULL) is a no-op. */
void store__sq_release(sq_stmt *s);
/* Binds (1-based). Pointers are borrowed until the statement is stepped to completion or
 * released. A NULL text/blob binds SQL NULL. */
int store__sq_bind_text(sq_stmt *s, int i, const char *v);
int store__sq_bind_blob(sq_stmt *s, int i, const void *v, size_t n);
int store__sq_bind_int64(sq_stmt *s, int i, int64_t v);
int store__sq_bind_double(sq_stmt *s, int i, double v);
int store__sq_bind_null(sq_stmt *s, int i);
/* SQ_ROW, SQ_DONE, or a negative VG_E*: constraint violations map to VG_EEXIST (unique),
 * VG_ENOTFOUND (foreign key), VG_EINVAL (check / not null); locks to VG_EBUSY; a lost
 * PostgreSQL connection to VG_EUNAVAIL; the rest to VG_ESTORE (counted as errors, detail
 * recorded as last_error). */
int store__sq_step(sq_stmt *s);
/* Steps a statement that returns no rows, then releases it. */
int store__sq_run(sq_stmt *s);
/* Asks for s's rows one at a time rather than as a whole result (PostgreSQL; SQLite always
 * steps row by row): for walks over a whole table. Call before the first step; until s is
 * released no other statement may run on its connection. */
void store__sq_stream(sq_stmt *s);
int store__sq_col_is_null(sq_stmt *s, int i);
int64_t store__sq_col_int64(sq_stmt *s, int i);
double store__sq_col_double(sq_stmt *s, int i);
const char *store__sq_col_text(sq_stmt *s,
                               int i); /* NULL for SQL NULL; valid until the next step */
const void *store__sq_col_blob(sq_stmt *s, int i, size_t *len);
/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int store__sq_changes(sq_db *db);
/* 1 while a transaction is open on db. */
int store__sq_in_txn(sq_db *db);
/* WAL management for the background checkpointer (SQLite connections only): turn off the
 * committing connection's own checkpoints and get called after each commit with the number of
 * frames in the WAL; run a PASSIVE checkpoint (never blocks writers or readers). */
int store__sq_wal_autocheckpoint_off(sq_db *db);
void store__sq_wal_hook(sq_db *db, void (*cb)(void *ctx, int wal_pages), void *ctx);
int store__sq_checkpoint_passive(sq_db *db, int *wal_pages, int *done_pages);
/* The schema version (SQLite: PRAGMA user_version; PostgreSQL: the schema_version table). */
int store__sq_user_version(sq_db *db, int *out);
int store__sq_set_user_version(sq_db *db, int v);
/* Number of user tables in the schema (to recognise a foreign database). */
int store__sq_table_count(sq_db *db, int *out);
/* Library version string, for logs. */
const char *store__sq_library_version(sq_db *db);

/* PostgreSQL write transactions (store.c's run_group): what the last failure on db means.
 * SQ_FAIL_NONE: an ordinary error (or none); SQ_FAIL_RETRY: a serialization failure or deadlock
 * (SQLSTATE 40001, 40P01), the transaction was rolled back and may be run again;
 * SQ_FAIL_CONN: the connection is gone (class 08, 57P01...). Cleared by store__sq_fail_clear.
 * Always SQ_FAIL_NONE on SQLite. */
sq_fail store__sq_fail(sq_db *db);
void store__sq_fail_clear(sq_db *db);
/* Re-establishes a lost PostgreSQL connection (statement cache dropped). 0 when it answers. */
int store__sq_reconnect(sq_db *db);
/* The current transaction's id (PostgreSQL txid_current(), taken with BEGIN) and, after a
 * reconnect, whether it committed: 1 committed, 0 not, negative VG_E* when unknown. */
int64_t store__sq_txid(sq_db *db);
int store__sq_txid_committed(sq_db *db, int64_t txid);

/* ---- store.c: the store object -------------------------------------------------------------- */

typedef struct store_wop store_wop; /* one queued write; lives on its caller's stack */

struct store {
    store_config cfg;
    int schema_version;
    store_counters ctr;

    /* Readers: a fixed pool; a thread takes one for the duration of one read call. */
    pthread_mutex_t rp_mu;
    pthread_cond_t rp_cv;
    sq_db **readers;
    unsigned n_readers;
    unsigned *rp_free; /* stack of free reader indexes */
    unsigned n_free;

    /* Writer: one connection, used only by the current group-commit leader (the thread at the
     * head of the write queue). Everything below wq_mu that says "leader" is owned by it. */
    pthread_mutex_t wq_mu;
    store_wop *wq_head, *wq_tail;
    sq_db *writer;
    /* Id generator state (leader): last millisecond used and its 80-bit counter. */
    int64_t id_ms;
    uint8_t id_ctr[10];

    /* Checkpointer: its own connection and thread (owned by that thread); the writer's WAL
     * hook sets ck_pending under ck_mu. */
    sq_db *ckpt_db;
    pthread_t ckpt_thread;
    int ckpt_started;
    pthread_mutex_t ck_mu;
    pthread_cond_t ck_cv;
    int ck_pending, ck_stop;
    unsigned ck_mark; /* WAL size at the last trigger (leader only, in the WAL hook) */

    /* Change-log wake-up (store_set_wake_hook): set before sharing, read-only afterwards. */
    store_wake_fn wake;
    void *wake_arg;
    store_pg_listener *listener; /* PostgreSQL with a wake hook: the LISTEN thread */
    /* Tests only (fault injection): called by the leader right before each COMMIT. */
    void (*test_before_commit)(store *st, sq_db *w, void *ctx);
    void *test_ctx;
};

/* A write operation body: runs on the writer inside a transaction (and a savepoint when
 * grouped). Returns 0 or a VG_E* with a detail; on error everything it did is rolled back. */
typedef int (*store_write_fn)(store *st, sq_db *w, void *arg);
/* Queues fn and returns when it has committed (or failed). Thread-safe. */
int store__write(store *st, store_write_fn fn, void *arg);

/* store_open at schema version `target` instead of the latest (tests migrate step by step). */
int store__open_at(const store_config *cfg, int target, store **out);

/* Takes a read connection from the pool (waits if all are busy) / gives it back. */
sq_db *store__reader_acquire(store *st);
void store__reader_release(store *st, sq_db *db);

/* New id "<prefix>_<26>" (leader only, i.e. inside a store_write_fn) and its millisecond. */
void store__id_new(store *st, const char *prefix, char out[STORE_ID_MAX], int64_t *out_ms);
/* The next id in the same millisecond as the last store__id_new (rows created together, such as
 * a scan's matches, share their creation time and still get increasing ids). Leader only. */
void store__id_next(store *st, const char *prefix, char out[STORE_ID_MAX]);
/* 1 when id is a well-formed id with this prefix ("prf"). */
int store__id_valid(const char *id, const char *prefix);
/* The smallest id of `prefix` at millisecond ms (for since/until bounds). */
void store__id_floor(const char *prefix, int64_t ms, char out[STORE_ID_MAX]);

/* Records a failure detail as last_error (called by the wrapper). */
void store__counters_error(store_counters *c, const char *msg);

/* ---- store_schema.c ------------------------------------------------------------------------- */

typedef struct store_migration {
    int version;
    const char *description;
    const char *sql;
} store_migration;
/* The migrations in order; version i+1 at index i. */
const store_migration *store__migrations(size_t *n);
/* The PostgreSQL text of migration `version` (store_schema_pg.c), NULL if it has none. */
const char *store__pg_migration_sql(int version);
/* Brings db from its user_version up to `target` in one IMMEDIATE transaction (tests use a
 * target below the latest). VG_EUNSUPPORTED if the database is newer than target. */
int store__migrate(sq_db *db, int target, int *out_version);

/* ---- store_query.c: list-query builder and row helpers -------------------------------------- */

#define QB_MAX_SQL 2048
#define QB_MAX_BINDS 16

typedef struct qb {
    char sql[QB_MAX_SQL];
    size_t len;
    int n, overflow;
    struct {
        int type; /* 't' text, 'b' blob, 'i' int64 */
        const void *p;
        size_t len;
        int64_t i;
    } b[QB_MAX_BINDS];
    char bound[2][STORE_ID_MAX]; /* since/until id floors bound by store__qb_list_tail */
} qb;

void store__qb_init(qb *q, const char *sql);
void store__qb_sql(qb *q, const char *frag);
/* Appends frag (containing exactly one '?') and its value. */
void store__qb_text(qb *q, const char *frag, const char *v);
void store__qb_blob(qb *q, const char *frag, const void *v, size_t n);
void store__qb_int(qb *q, const char *frag, int64_t v);
/* Prepares q on db and binds its values. */
int store__qb_prepare(qb *q, sq_db *db, sq_stmt **out);

/* Appends " AND <col> IN (?, ...)" with the name_of(v) of every value v set in mask, for the
 * enum filters of the lists; nothing when mask is 0 (all values). VG_EINVAL "unknown <what> in
 * filter" when mask has a bit at or above n_values. col, what: borrowed string literals. */
int store__qb_in_mask(qb *q, const char *col, unsigned mask, unsigned n_values,
                      const char *(*name_of)(unsigned v), const char *what);

/* Appends the tenant scope, cursor, time bounds, ORDER BY id DESC and LIMIT limit+1 for a list
 * over the table aliased `t` (always), whose ids have `prefix`; the caller appends its own
 * filters before. VG_EINVAL for a bad cursor. *limit_out gets the effective page size. */
int store__qb_list_tail(qb *q, const char *prefix, const char *tenant_id, const store_list_opts *o,
                        unsigned *limit_out);

/* Arena copy helpers with a sticky out-of-memory flag: copies NULL as NULL. */
typedef struct store_copy {
    vg_arena *a;
    int oom;
} store_copy;
const char *store__sc_text(store_copy *c, sq_stmt *s, int col);
void store__sc_id(sq_stmt *s, int col, char out[STORE_ID_MAX]);
void *store__sc_blob(store_copy *c, sq_stmt *s, int col, size_t *len);
/* Copies a blob column of exactly n bytes into out; 0 if it is NULL or another size. */
int store__sc_fixed(sq_stmt *s, int col, void *out, size_t n);

/* Input validation: VG_EINVAL naming `field` when s is required and NULL/empty, or when its
 * length is >= max_bytes. */
int store__check_str(const char *field, const char *s, size_t max_bytes, int required);
/* Runs the page-collection loop shared by every list: steps s, growing an arena array of
 * item_size via read_row(row), stopping after `limit` items and setting next_cursor from the
 * last item's id (at offset id_off inside the item) when one more row exists. Takes ownership
 * of s: it is released on every path. */
int store__collect(sq_stmt *s, vg_arena *a, size_t item_size, size_t id_off, unsigned limit,
                   int (*read_row)(sq_stmt *s, store_copy *c, void *item), void **items,
                   store_page *page);

/* Parameter binding ("binds as store__run" below): parameters 1..strlen(types) come from the
 * variadic list, one per type letter:
 *   't' const char * (NULL binds NULL)   'b' const void *, size_t (NULL binds NULL)
 *   'i' int64_t                           'd' double
 * Pass exactly these C types (cast int64_t literals).
 * Prepares sql on db, binds, steps it to completion and releases it. */
int store__run(sq_db *db, const char *sql, const char *types, ...);
/* Prepares sql on db and binds as store__run; *out must be released with store__sq_release. */
int store__query(sq_db *db, const char *sql, sq_stmt **out, const char *types, ...);

/* Reads the current row of s into *row (a store_tenant, store_profile ...), copying strings and
 * blobs through c. The readers of the list queries serve the read-one helpers too, so a row
 * looks the same whether it came from a list or from a get. */
typedef int (*store_row_fn)(sq_stmt *s, store_copy *c, void *row);

/* The "row by id, or VG_ENOTFOUND" read every family does: prepares sql on db, binds as
 * store__run, steps once and hands the row to read_row(s, c, row), else VG_ENOTFOUND
 * "<what> not found"; always releases the statement. db, c, row, what, sql: borrowed. Does not
 * look at c->oom: callers that read several rows into one arena check it once at the end, with
 * their own detail. */
int store__read_one(sq_db *db, store_copy *c, store_row_fn read_row, void *row, const char *what,
                    const char *sql, const char *types, ...);
/* store__read_one on a pooled reader into the arena a, for the public *_get calls: zeroes the
 * row_size bytes at row first, and turns an arena failure into VG_ENOMEM "store: <what>". row is
 * the caller's scratch (borrowed), left partly written on error, so that the caller copies it to
 * its out-parameter only on success and the public contract "out untouched on error" holds. */
int store__get_one(store *st, vg_arena *a, store_row_fn read_row, void *row, size_t row_size,
                   const char *what, const char *sql, const char *types, ...);
/* A store_row_fn for queries whose column 0 is an id: copies it into row, a
 * char[STORE_ID_MAX] (the owner lookups of a parent row inside a write). */
int store__read_id(sq_stmt *s, store_copy *c, void *row);
/* The tail every list call shares: store__qb_list_tail, then prepares q on a pooled reader and
 * collects the page as store__collect (item_size, id_off, read_row, items, page likewise). q,
 * prefix, tenant_id, opts: borrowed; a: the caller's arena for the items. */
int store__list(store *st, qb *q, const char *prefix, const char *tenant_id,
                const store_list_opts *opts, vg_arena *a, size_t item_size, size_t id_off,
                store_row_fn read_row, void **items, store_page *page);

/* Rows by id in scope (tenant_id NULL = any), soft-deleted or not, for notice sources:
 * store_profiles.c. The reference comes without face blobs (n_faces still set). */
int store__profile_read_any(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                            store_profile *out);
int store__reference_read_any(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                              store_reference *out);
/* store_evidence.c: a match / a scan (without its matches) by id in scope. */
int store__match_read(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                      store_match *out);
int store__scan_read(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                     store_scan *out);

/* store_changes.c: appends one change-log row on the writer, inside the caller's write
 * transaction (so it commits or rolls back with the change). sha256 may be NULL. A store
 * opened below STORE__CHANGES_VERSION (store__open_at: tests of older schemas) has no log:
 * nothing is appended. */
#define STORE__CHANGES_VERSION 6
/* Schema version that added reference keys (refs.ikey, changes.object_key): below it (tests of
 * older schemas) references are created without a key and object_key is not written. */
#define STORE__KEYS_VERSION 8
/* object_key: a reference row's key (0 for other kinds: stored as NULL). */
int store__change_append(store *st, sq_db *w, const char *tenant_id, store_change_kind kind,
                         const char *object_id, int64_t object_key, int remove,
                         const uint8_t *sha256);

/* "" is stored as NULL: an optional field is either set or absent. Returns s or NULL. */
const char *store__opt(const char *s);

/* Scope check: 1 if tenant_id is NULL (admin) or equals row_tenant. */
int store__scope_ok(const char *tenant_id, const char *row_tenant);

#endif /* VG_STORE_INT_H */
