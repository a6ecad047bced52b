/*
 * store__query: the list-query builder, row-copy helpers, input checks and enum names shared by
 * the resource files. Every list query has the same shape:
 *   SELECT <cols> FROM <table> t [JOIN ...] WHERE 1 <filters>
 *     [AND t.tenant_id = ?] [AND t.id < cursor] [AND t.id >= floor(since)] [AND t.id <
 * floor(until)] ORDER BY t.id DESC LIMIT page+1 Time bounds become id bounds because an id starts
 * with its creation millisecond (store.h), so every filter in that tail is one index range. Only
 * fixed SQL fragments are concatenated; every value is bound, and the set of distinct texts is
 * small, so the per-connection statement cache holds them all.
 */
#include <string.h>

#include "store/store_int.h"

/* ---- builder -------------------------------------------------------------------------------- */

void store__qb_init(qb *q, const char *sql)
{
    q->len = 0;
    q->n = 0;
    q->overflow = 0;
    q->sql[0] = '\0';
    store__qb_sql(q, sql);
}

void store__qb_sql(qb *q, const char *frag)
{
    size_t fl = strlen(frag);
    if (q->len + fl + 1 > sizeof q->sql) {
        q->overflow = 1;
        return;
    }
    memcpy(q->sql + q->len, frag, fl + 1);
    q->len += fl;
}

static int qb_slot(qb *q, int type)
{
    if (q->n >= QB_MAX_BINDS) {
        q->overflow = 1;
        return -1;
    }
    q->b[q->n].type = type;
    return q->n++;
}

void store__qb_text(qb *q, const char *frag, const char *v)
{
    store__qb_sql(q, frag);
    int i = qb_slot(q, 't');
    if (i >= 0)
        q->b[i].p = v;
}

void store__qb_blob(qb *q, const char *frag, const void *v, size_t n)
{
    store__qb_sql(q, frag);
    int i = qb_slot(q, 'b');
    if (i >= 0) {
        q->b[i].p = v;
        q->b[i].len = n;
    }
}

void store__qb_int(qb *q, const char *frag, int64_t v)
{
    store__qb_sql(q, frag);
    int i = qb_slot(q, 'i');
    if (i >= 0)
        q->b[i].i = v;
}

int store__qb_prepare(qb *q, sq_db *db, sq_stmt **out)
{
    if (q->overflow)
        return vg_err_set(VG_EINTERNAL, "store: query builder overflow");
    sq_stmt *s = NULL;
    int err = store__sq_prepare(db, q->sql, &s);
    for (int i = 0; !err && i < q->n; i++) {
        switch (q->b[i].type) {
        case 't':
            err = store__sq_bind_text(s, i + 1, q->b[i].p);
            break;
        case 'b':
            err = store__sq_bind_blob(s, i + 1, q->b[i].p, q->b[i].len);
            break;
        default:
            err = store__sq_bind_int64(s, i + 1, q->b[i].i);
            break;
        }
    }
    if (err) {
        store__sq_release(s);
        return err;
    }
    *out = s;
    return 0;
}

int store__qb_in_mask(qb *q, const char *col, unsigned mask, unsigned n_values,
                      const char *(*name_of)(unsigned v), const char *what)
{
    if (!mask)
        return 0;
    if (n_values < 32 && mask >> n_values)
        return vg_err_set(VG_EINVAL, "unknown %s in filter", what);
    store__qb_sql(q, " AND ");
    store__qb_sql(q, col);
    store__qb_sql(q, " IN (");
    int n = 0;
    for (unsigned v = 0; v < n_values; v++) {
        if (mask & (1u << v))
            store__qb_text(q, n++ ? ", ?" : "?", name_of(v));
    }
    store__qb_sql(q, ")");
    return 0;
}

int store__qb_list_tail(qb *q, const char *prefix, const char *tenant_id, const store_list_opts *o,
                        unsigned *limit_out)
{
    unsigned limit = o && o->limit ? o->limit : STORE_LIST_DEFAULT_LIMIT;
    if (limit > STORE_LIST_MAX_LIMIT)
        limit = STORE_LIST_MAX_LIMIT;
    if (tenant_id)
        store__qb_text(q, " AND t.tenant_id = ?", tenant_id);
    if (o && o->cursor && *o->cursor) {
        if (!store__id_valid(o->cursor, prefix))
            return vg_err_set(VG_EINVAL, "cursor is not a valid cursor for this list");
        store__qb_text(q, " AND t.id < ?", o->cursor);
    }
    if (o && o->since_ms > 0) {
        store__id_floor(prefix, o->since_ms, q->bound[0]);
        store__qb_text(q, " AND t.id >= ?", q->bound[0]);
    }
    if (o && o->until_ms > 0) {
        store__id_floor(prefix, o->until_ms, q->bound[1]);
        store__qb_text(q, " AND t.id < ?", q->bound[1]);
    }
    store__qb_int(q, " ORDER BY t.id DESC LIMIT ?", (int64_t)limit + 1);
    *limit_out = limit;
    return 0;
}

int store__collect(sq_stmt *s, vg_arena *a, size_t item_size, size_t id_off, unsigned limit,
                   int (*read_row)(sq_stmt *s, store_copy *c, void *item), void **items,
                   store_page *page)
{
    store_copy c = {a, 0};
    /* Rows are collected in a heap buffer grown geometrically (a page of 1,000 rows is rare,
     * reserving it for every call would waste the arena), then copied to the arena once. */
    size_t cap = limit < 64 ? limit : 64;
    uint8_t *buf = vg_malloc((cap ? cap : 1) * item_size);
    if (!buf) {
        store__sq_release(s); /* the statement is ours to release on every path */
        return vg_err_set(VG_ENOMEM, "store: list");
    }
    size_t n = 0;
    int more = 0, err = 0;
    for (;;) {
        int rc = store__sq_step(s);
        if (rc < 0) {
            err = rc;
            break;
        }
        if (rc == SQ_DONE)
            break;
        if (n == limit) {
            more = 1;
            break;
        }
        if (n == cap) {
            size_t ncap = cap * 2 > limit ? limit : cap * 2;
            uint8_t *nb = vg_realloc(buf, ncap * item_size);
            if (!nb) {
                err = vg_err_set(VG_ENOMEM, "store: list");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        memset(buf + n * item_size, 0, item_size);
        err = read_row(s, &c, buf + n * item_size);
        if (!err && c.oom)
            err = vg_err_set(VG_ENOMEM, "store: list row");
        if (err)
            break;
        n++;
    }
    store__sq_release(s);
    void *out = NULL;
    if (!err && n) {
        out = vg_arena_alloc(a, n * item_size);
        if (!out)
            err = vg_err_set(VG_ENOMEM, "store: list");
        else
            memcpy(out, buf, n * item_size);
    }
    if (!err) {
        page->n = n;
        page->next_cursor[0] = '\0';
        if (more && n)
            memcpy(page->next_cursor, buf + (n - 1) * item_size + id_off, STORE_ID_MAX);
        *items = out;
    }
    vg_free(buf);
    return err;
}

static int vbind(sq_stmt *s, const char *types, va_list *ap)
{
    int err = 0;
    for (int i = 0; !err && types[i]; i++) {
        switch (types[i]) {
        case 't':
            err = store__sq_bind_text(s, i + 1, va_arg(*ap, const char *));
            break;
        case 'b': {
            const void *p = va_arg(*ap, const void *);
            size_t n = va_arg(*ap, size_t);
            err = store__sq_bind_blob(s, i + 1, p, n);
            break;
        }
        case 'i':
            err = store__sq_bind_int64(s, i + 1, va_arg(*ap, int64_t));
            break;
        case 'd':
            err = store__sq_bind_double(s, i + 1, va_arg(*ap, double));
            break;
        default:
            err = vg_err_set(VG_EINTERNAL, "store: bad bind type '%c'", types[i]);
            break;
        }
    }
    return err;
}

/* The one place that prepares and binds, so store__run, store__query and the read-one helpers
 * below cannot drift apart in how they release a statement whose bind failed. */
static int vquery(sq_db *db, const char *sql, sq_stmt **out, const char *types, va_list *ap)
{
    sq_stmt *s = NULL;
    int err = store__sq_prepare(db, sql, &s);
    if (err)
        return err;
    err = vbind(s, types, ap);
    if (err) {
        store__sq_release(s);
        return err;
    }
    *out = s;
    return 0;
}

int store__run(sq_db *db, const char *sql, const char *types, ...)
{
    sq_stmt *s = NULL;
    va_list ap;
    va_start(ap, types);
    int err = vquery(db, sql, &s, types, &ap);
    va_end(ap);
    return err ? err : store__sq_run(s);
}

int store__query(sq_db *db, const char *sql, sq_stmt **out, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int err = vquery(db, sql, out, types, &ap);
    va_end(ap);
    return err;
}

static int vread_one(sq_db *db, store_copy *c, store_row_fn read_row, void *row, const char *what,
                     const char *sql, const char *types, va_list *ap)
{
    sq_stmt *s = NULL;
    int err = vquery(db, sql, &s, types, ap);
    if (err)
        return err;
    err = store__sq_step(s);
    if (err == SQ_ROW)
        err = read_row(s, c, row);
    else if (err == SQ_DONE)
        err = vg_err_set(VG_ENOTFOUND, "%s not found", what);
    store__sq_release(s);
    return err;
}

int store__read_one(sq_db *db, store_copy *c, store_row_fn read_row, void *row, const char *what,
                    const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int err = vread_one(db, c, read_row, row, what, sql, types, &ap);
    va_end(ap);
    return err;
}

int store__get_one(store *st, vg_arena *a, store_row_fn read_row, void *row, size_t row_size,
                   const char *what, const char *sql, const char *types, ...)
{
    memset(row, 0, row_size);
    store_copy c = {a, 0};
    sq_db *db = store__reader_acquire(st);
    va_list ap;
    va_start(ap, types);
    int err = vread_one(db, &c, read_row, row, what, sql, types, &ap);
    va_end(ap);
    store__reader_release(st, db);
    if (!err && c.oom)
        err = vg_err_set(VG_ENOMEM, "store: %s", what);
    return err;
}

int store__read_id(sq_stmt *s, store_copy *c, void *row)
{
    (void)c;
    store__sc_id(s, 0, row);
    return 0;
}

int store__list(store *st, qb *q, const char *prefix, const char *tenant_id,
                const store_list_opts *opts, vg_arena *a, size_t item_size, size_t id_off,
                store_row_fn read_row, void **items, store_page *page)
{
    unsigned limit;
    int err = store__qb_list_tail(q, prefix, tenant_id, opts, &limit);
    if (err)
        return err;
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    err = store__qb_prepare(q, db, &s);
    if (!err)
        err = store__collect(s, a, item_size, id_off, limit, read_row, items, page);
    store__reader_release(st, db);
    return err;
}

/* ---- row copies ----------------------------------------------------------------------------- */

const char *store__sc_text(store_copy *c, sq_stmt *s, int col)
{
    const char *t = store__sq_col_text(s, col);
    if (!t)
        return NULL;
    char *d = vg_arena_strdup(c->a, t);
    if (!d)
        c->oom = 1;
    return d;
}

void store__sc_id(sq_stmt *s, int col, char out[STORE_ID_MAX])
{
    const char *t = store__sq_col_text(s, col);
    size_t n = t ? strlen(t) : 0;
    if (n >= STORE_ID_MAX)
        n = STORE_ID_MAX - 1;
    if (n)
        memcpy(out, t, n);
    out[n] = '\0';
}

void *store__sc_blob(store_copy *c, sq_stmt *s, int col, size_t *len)
{
    size_t n;
    const void *p = store__sq_col_blob(s, col, &n);
    *len = 0;
    if (!p || !n)
        return NULL;
    void *d = vg_arena_alloc(c->a, n);
    if (!d) {
        c->oom = 1;
        return NULL;
    }
    memcpy(d, p, n);
    *len = n;
    return d;
}

int store__sc_fixed(sq_stmt *s, int col, void *out, size_t n)
{
    size_t len;
    const void *p = store__sq_col_blob(s, col, &len);
    if (!p || len != n)
        return 0;
    memcpy(out, p, n);
    return 1;
}

/* ---- checks --------------------------------------------------------------------------------- */

int store__check_str(const char *field, const char *s, size_t max_bytes, int required)
{
    if (!s || !*s) {
        if (required)
            return vg_err_set(VG_EINVAL, "%s is required", field);
        return 0;
    }
    size_t n = strnlen(s, max_bytes);
    if (n >= max_bytes)
        return vg_err_set(VG_EINVAL, "%s is longer than %zu bytes", field, max_bytes - 1);
    return 0;
}

const char *store__opt(const char *s)
{
    return s && *s ? s : NULL;
}

int store__scope_ok(const char *tenant_id, const char *row_tenant)
{
    return !tenant_id || (row_tenant && strcmp(tenant_id, row_tenant) == 0);
}

/* ---- enum names ----------------------------------------------------------------------------- */

static int parse_name(const char *s, const char *const *names, int n, const char *what, int *out)
{
    for (int i = 0; s && i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return vg_err_set(VG_EINVAL, "unknown %s '%.40s'", what, s ? s : "(null)");
}

static const char *const TENANT_KINDS[] = {"agency", "creator"};
static const char *const ROLES[] = {"tenant", "admin"};
static const char *const REF_KINDS[] = {"work", "likeness"};
static const char *const NOTICE_STATUSES[] = {"draft",   "sent",     "acknowledged",
                                              "removed", "rejected", "countered"};

#define NAME_OF(arr, v) ((unsigned)(v) < VG_ARRAY_LEN(arr) ? arr[(unsigned)(v)] : "unknown")

const char *store_tenant_kind_name(store_tenant_kind k)
{
    return NAME_OF(TENANT_KINDS, k);
}

int store_tenant_kind_parse(const char *s, store_tenant_kind *out)
{
    int v;
    int err = parse_name(s, TENANT_KINDS, (int)VG_ARRAY_LEN(TENANT_KINDS), "tenant kind", &v);
    if (!err)
        *out = (store_tenant_kind)v;
    return err;
}

const char *store_role_name(store_role r)
{
    return NAME_OF(ROLES, r);
}

const char *store_ref_kind_name(store_ref_kind k)
{
    return NAME_OF(REF_KINDS, k);
}

int store_ref_kind_parse(const char *s, store_ref_kind *out)
{
    int v;
    int err = parse_name(s, REF_KINDS, (int)VG_ARRAY_LEN(REF_KINDS), "reference kind", &v);
    if (!err)
        *out = (store_ref_kind)v;
    return err;
}

const char *store_notice_status_name(store_notice_status s)
{
    return NAME_OF(NOTICE_STATUSES, s);
}

int store_notice_status_parse(const char *s, store_notice_status *out)
{
    int v;
    int err =
        parse_name(s, NOTICE_STATUSES, (int)VG_ARRAY_LEN(NOTICE_STATUSES), "notice status", &v);
    if (!err)
        *out = (store_notice_status)v;
    return err;
}
