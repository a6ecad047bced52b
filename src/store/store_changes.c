/*
 * store_changes: the change log several nodes keep their in-memory index in step from (see
 * store.h "change log" and docs/SCALING.md).
 *
 * Writes append inside the transaction of the change they describe (store__change_append), so
 * the log holds exactly the committed changes. seq is SQLite's AUTOINCREMENT rowid: with one
 * writer at a time (SQLite's database lock, across processes too) rows commit in seq order, and
 * a seq is never reused after a prune. A reader that has applied up to N and asks for > N
 * therefore never skips a row that commits later with a smaller seq.
 */
#include <string.h>

#include "store/store_int.h"

static const char *const KIND_NAMES[] = {"reference", "profile", "key"};

/* Advisory lock key of the change log's commit order, and the NOTIFY channel (PostgreSQL). */
#define STORE__CHANGES_PG_LOCK 0x76696731 /* "vig1" */

int store__change_append(store *st, sq_db *w, const char *tenant_id, store_change_kind kind,
                         const char *object_id, int64_t object_key, int remove,
                         const uint8_t *sha256)
{
    if (st->schema_version < STORE__CHANGES_VERSION)
        return 0;
    if ((unsigned)kind >= VG_ARRAY_LEN(KIND_NAMES))
        return vg_err_set(VG_EINVAL, "store: change kind %d", (int)kind);
    if (store__sq_kind(w) == SQ_PG) {
        /* PostgreSQL lets transactions of several nodes commit in any order, and an identity
         * value is taken at insert time: without a lock held to commit, a reader could see seq
         * 11 before 10 commits and never read 10. The transaction-scoped advisory lock makes
         * change-writing transactions commit in seq order; the NOTIFY, delivered at commit,
         * wakes every node's LISTEN (a node also polls: notifications are not replayed). */
        sq_stmt *lk = NULL;
        int err = store__query(
            w, "SELECT pg_advisory_xact_lock(?), pg_notify('" STORE__CHANGES_PG_CHANNEL "', '')",
            &lk, "i", (int64_t)STORE__CHANGES_PG_LOCK);
        if (!err) {
            err = store__sq_step(lk);
            err = err == SQ_ROW    ? 0
                  : err == SQ_DONE ? vg_err_set(VG_ESTORE, "store: no lock row")
                                   : err;
        }
        store__sq_release(lk);
        if (err)
            return err;
    }
    if (st->schema_version < STORE__KEYS_VERSION)
        return store__run(w,
                          "INSERT INTO changes(tenant_id, kind, object_id, op, sha256, created_ms) "
                          "VALUES(?, ?, ?, ?, ?, ?)",
                          "ttttbi", tenant_id, KIND_NAMES[kind], object_id,
                          remove ? "remove" : "add", (const void *)sha256, (size_t)32,
                          vg_wall_ms());
    /* NULLIF: "no key" is stored as NULL, as in the rows written before schema 8. */
    return store__run(w,
                      "INSERT INTO changes(tenant_id, kind, object_id, op, sha256, created_ms, "
                      "object_key) VALUES(?1, ?2, ?3, ?4, ?5, ?6, NULLIF(?7, 0))",
                      "ttttbii", tenant_id, KIND_NAMES[kind], object_id, remove ? "remove" : "add",
                      (const void *)sha256, (size_t)32, vg_wall_ms(), object_key);
}

int store_changes_head(store *st, int64_t *out_seq)
{
    if (!st || !out_seq)
        return vg_err_set(VG_EINVAL, "store_changes_head: NULL argument");
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db, "SELECT coalesce(max(seq), 0) FROM changes", &s, "");
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            *out_seq = store__sq_col_int64(s, 0);
            err = 0;
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ESTORE, "store: change head returned no row");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

static int parse_kind(const char *k, store_change_kind *out)
{
    for (size_t i = 0; k && i < VG_ARRAY_LEN(KIND_NAMES); i++)
        if (strcmp(k, KIND_NAMES[i]) == 0) {
            *out = (store_change_kind)i;
            return 1;
        }
    return 0;
}

int store_changes_read(store *st, int64_t after, store_change *out, size_t max, size_t *n_out)
{
    if (!st || !out || !n_out || max == 0)
        return vg_err_set(VG_EINVAL, "store_changes_read: bad argument");
    if (max > STORE_CHANGES_MAX_READ)
        max = STORE_CHANGES_MAX_READ;
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    size_t n = 0;
    int err = store__query(db,
                           st->schema_version >= STORE__KEYS_VERSION
                               ? "SELECT seq, tenant_id, kind, object_id, op, sha256, created_ms, "
                                 "object_key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
                               : "SELECT seq, tenant_id, kind, object_id, op, sha256, created_ms, "
                                 "NULL FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                           &s, "ii", after, (int64_t)max);
    while (!err && (err = store__sq_step(s)) == SQ_ROW) {
        store_change *c = &out[n];
        memset(c, 0, sizeof *c);
        c->seq = store__sq_col_int64(s, 0);
        store__sc_id(s, 1, c->tenant_id);
        store__sc_id(s, 3, c->object_id);
        const char *op = store__sq_col_text(s, 4);
        c->remove = op && strcmp(op, "remove") == 0;
        c->has_sha256 = store__sc_fixed(s, 5, c->sha256, 32);
        c->created_ms = store__sq_col_int64(s, 6);
        c->object_key = store__sq_col_int64(s, 7); /* NULL (before schema 8, not a reference): 0 */
        /* A kind this build does not know (a newer node wrote it) is skipped, not fatal: the
         * seq still advances past it. */
        if (!parse_kind(store__sq_col_text(s, 2), &c->kind))
            c->kind = (store_change_kind)-1;
        n++;
        err = 0;
    }
    if (err == SQ_DONE)
        err = 0;
    store__sq_release(s);
    store__reader_release(st, db);
    if (!err)
        *n_out = n;
    return err;
}

typedef struct prune_args {
    int64_t before_ms;
    size_t n;
} prune_args;

static int prune_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    prune_args *a = arg;
    int err = store__run(w, "DELETE FROM changes WHERE created_ms < ?", "i", a->before_ms);
    if (!err)
        a->n = (size_t)store__sq_changes(w);
    return err;
}

int store_changes_prune(store *st, int64_t before_ms, size_t *n_out)
{
    if (!st)
        return vg_err_set(VG_EINVAL, "store_changes_prune: NULL store");
    prune_args a = {before_ms, 0};
    int err = store__write(st, prune_op, &a);
    if (!err && n_out)
        *n_out = a.n;
    return err;
}

void store_set_wake_hook(store *st, store_wake_fn fn, void *arg)
{
    /* PostgreSQL: a store-owned thread LISTENs on its own session and calls fn (store_pg.c).
     * SQLite has no notifications: the nodes poll. */
    store__pg_listen_stop(st->listener);
    st->listener = NULL;
    st->wake = fn;
    st->wake_arg = arg;
    if (fn && store__sq_kind(st->writer) == SQ_PG &&
        store__pg_listen_start(st->cfg.path, st->cfg.connect_timeout_ms, &st->ctr, fn, arg,
                               &st->listener) != 0)
        VG_WARN("store", "no LISTEN thread (%s): changes are seen at the next poll", vg_err_msg());
}
