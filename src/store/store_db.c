/*
 * store_db: the sq_* API the store is written against, dispatched per connection to its
 * backend (store_sqlite.c or store_pg.c). A connection's backend is chosen once, at open, from
 * the path: a postgresql:// (or postgres://) URL opens PostgreSQL, anything else is a SQLite
 * file. Nothing here knows either library.
 */
#include <string.h>

#include "store/store_int.h"

int store__is_pg_url(const char *path)
{
    return path &&
           (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

int store__sq_open(const sq_open_opts *o, sq_db **out)
{
    return store__is_pg_url(o->path) ? store__pg_open(o, out) : store__lite_open(o, out);
}

void store__sq_close(sq_db *db)
{
    if (db)
        db->be->close(db);
}

sq_kind store__sq_kind(const sq_db *db)
{
    return db->be->kind;
}

uint64_t store__sq_memory_used(sq_db *db)
{
    return db ? db->be->memory_used(db) : 0;
}

int store__sq_exec(sq_db *db, const char *sql)
{
    return db->be->exec(db, sql);
}

int store__sq_prepare(sq_db *db, const char *sql, sq_stmt **out)
{
    return db->be->prepare(db, sql, out);
}

void store__sq_release(sq_stmt *s)
{
    if (s)
        s->db->be->release(s);
}

int store__sq_bind_text(sq_stmt *s, int i, const char *v)
{
    return s->db->be->bind_text(s, i, v);
}

int store__sq_bind_blob(sq_stmt *s, int i, const void *v, size_t n)
{
    return s->db->be->bind_blob(s, i, v, n);
}

int store__sq_bind_int64(sq_stmt *s, int i, int64_t v)
{
    return s->db->be->bind_int64(s, i, v);
}

int store__sq_bind_double(sq_stmt *s, int i, double v)
{
    return s->db->be->bind_double(s, i, v);
}

int store__sq_bind_null(sq_stmt *s, int i)
{
    return s->db->be->bind_null(s, i);
}

int store__sq_step(sq_stmt *s)
{
    return s->db->be->step(s);
}

int store__sq_run(sq_stmt *s)
{
    int rc = store__sq_step(s);
    while (rc == SQ_ROW)
        rc = store__sq_step(s);
    store__sq_release(s);
    return rc;
}

void store__sq_stream(sq_stmt *s)
{
    if (s->db->be->kind == SQ_PG)
        store__pg_stream(s);
}

int store__sq_col_is_null(sq_stmt *s, int i)
{
    return s->db->be->col_is_null(s, i);
}

int64_t store__sq_col_int64(sq_stmt *s, int i)
{
    return s->db->be->col_int64(s, i);
}

double store__sq_col_double(sq_stmt *s, int i)
{
    return s->db->be->col_double(s, i);
}

const char *store__sq_col_text(sq_stmt *s, int i)
{
    return s->db->be->col_text(s, i);
}

const void *store__sq_col_blob(sq_stmt *s, int i, size_t *len)
{
    return s->db->be->col_blob(s, i, len);
}

int store__sq_changes(sq_db *db)
{
    return db->be->changes(db);
}

int store__sq_in_txn(sq_db *db)
{
    return db->be->in_txn(db);
}

int store__sq_user_version(sq_db *db, int *out)
{
    return db->be->user_version(db, out);
}

int store__sq_set_user_version(sq_db *db, int v)
{
    return db->be->set_user_version(db, v);
}

int store__sq_table_count(sq_db *db, int *out)
{
    return db->be->table_count(db, out);
}

const char *store__sq_library_version(sq_db *db)
{
    return db->be->library_version(db);
}

sq_fail store__sq_fail(sq_db *db)
{
    return db->be->kind == SQ_PG ? store__pg_fail(db) : SQ_FAIL_NONE;
}

void store__sq_fail_clear(sq_db *db)
{
    if (db->be->kind == SQ_PG)
        store__pg_fail_clear(db);
}

int store__sq_reconnect(sq_db *db)
{
    return db->be->kind == SQ_PG ? store__pg_reconnect(db) : 0;
}

int64_t store__sq_txid(sq_db *db)
{
    return db->be->kind == SQ_PG ? store__pg_txid(db) : 0;
}

int store__sq_txid_committed(sq_db *db, int64_t txid)
{
    return db->be->kind == SQ_PG ? store__pg_txid_committed(db, txid)
                                 : vg_err_set(VG_EUNSUPPORTED, "no transaction ids on SQLite");
}
