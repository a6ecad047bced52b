/*
 * store_notices: DMCA notices and their append-only status history.
 *
 * A notice is frozen at draft time: recipient, claimant details (copied from the profile), the
 * signature and the rendered text and HTML are stored as drafted, and the schema refuses to
 * change any of them later (trigger notices_frozen). Why frozen rather than rendered on read:
 * a notice is a legal document that is sent; the record must show exactly what was sent, even
 * after the profile is edited, the reference deleted, or a later build words notices
 * differently. Only `status` and `updated_ms` change, each change appending one event.
 *
 * The workflow rule itself belongs to the dmca module; store_notice_set_status applies the
 * caller's allowed-from set inside the write transaction, so two concurrent transitions cannot
 * both succeed from the same state.
 */
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define NOTICE_COLS_HEAD                                                                           \
    "t.id, t.tenant_id, t.match_id, m.profile_id, m.reference_id, t.status, t.infringing_url, "    \
    "t.recipient_name, t.recipient_email, t.recipient_address, t.recipient_phone, "                \
    "t.claimant_name, t.claimant_email, t.claimant_address, t.claimant_phone, t.signature, "
#define NOTICE_COLS_TAIL ", t.created_ms, t.updated_ms"
#define NOTICE_COLS NOTICE_COLS_HEAD "t.body_text, t.body_html" NOTICE_COLS_TAIL
#define NOTICE_COLS_LITE NOTICE_COLS_HEAD "NULL, NULL" NOTICE_COLS_TAIL
#define NOTICE_FROM " FROM notices t JOIN matches m ON m.id = t.match_id"

static store_notice_status parse_status(const char *s)
{
    store_notice_status st = STORE_NOTICE_DRAFT;
    if (s)
        store_notice_status_parse(s, &st);
    return st;
}

static int read_notice(sq_stmt *s, store_copy *c, void *item)
{
    store_notice *n = item;
    store__sc_id(s, 0, n->id);
    store__sc_id(s, 1, n->tenant_id);
    store__sc_id(s, 2, n->match_id);
    store__sc_id(s, 3, n->profile_id);
    store__sc_id(s, 4, n->reference_id);
    n->status = parse_status(store__sq_col_text(s, 5));
    n->infringing_url = store__sc_text(c, s, 6);
    n->recipient.name = store__sc_text(c, s, 7);
    n->recipient.email = store__sc_text(c, s, 8);
    n->recipient.address = store__sc_text(c, s, 9);
    n->recipient.phone = store__sc_text(c, s, 10);
    n->claimant.name = store__sc_text(c, s, 11);
    n->claimant.email = store__sc_text(c, s, 12);
    n->claimant.address = store__sc_text(c, s, 13);
    n->claimant.phone = store__sc_text(c, s, 14);
    n->signature = store__sc_text(c, s, 15);
    n->text = store__sc_text(c, s, 16);
    n->html = store__sc_text(c, s, 17);
    n->created_ms = store__sq_col_int64(s, 18);
    n->updated_ms = store__sq_col_int64(s, 19);
    n->n_events = 0;
    n->events = NULL;
    return 0;
}

/* ---- source --------------------------------------------------------------------------------- */

int store_notice_source_get(store *st, const char *tenant_id, const char *match_id, vg_arena *a,
                            store_notice_source *out)
{
    if (!store__id_valid(match_id, "mat"))
        return vg_err_set(VG_ENOTFOUND, "match not found");
    sq_db *db = store__reader_acquire(st);
    store_copy c = {a, 0};
    store_notice_source src;
    memset(&src, 0, sizeof src);
    /* Scope is checked on the match; what it points to belongs to the same tenant by
     * construction (scan_insert checks it), and may have been soft-deleted since. */
    int err = store__sq_exec(db, "BEGIN");
    if (!err) {
        err = store__match_read(db, tenant_id, match_id, &c, &src.match);
        if (!err)
            err = store__scan_read(db, NULL, src.match.scan_id, &c, &src.scan);
        if (!err)
            err = store__reference_read_any(db, NULL, src.match.reference_id, &c, &src.reference);
        if (!err)
            err = store__profile_read_any(db, NULL, src.match.profile_id, &c, &src.profile);
        if (!err && c.oom)
            err = vg_err_set(VG_ENOMEM, "store: notice source");
        store__sq_exec(db, err ? "ROLLBACK" : "COMMIT");
    }
    store__reader_release(st, db);
    if (!err)
        *out = src;
    return err;
}

/* ---- create --------------------------------------------------------------------------------- */

static int check_party(const char *what, const store_party *p)
{
    char field[48];
    int err;
    snprintf(field, sizeof field, "%s.name", what);
    if ((err = store__check_str(field, p->name, STORE_NAME_MAX_BYTES, 1)))
        return err;
    snprintf(field, sizeof field, "%s.email", what);
    if ((err = store__check_str(field, p->email, STORE_NAME_MAX_BYTES, 0)))
        return err;
    snprintf(field, sizeof field, "%s.address", what);
    if ((err = store__check_str(field, p->address, STORE_TEXT_MAX_BYTES, 0)))
        return err;
    snprintf(field, sizeof field, "%s.phone", what);
    return store__check_str(field, p->phone, STORE_NAME_MAX_BYTES, 0);
}

typedef struct notice_create_args {
    const char *tenant_id;
    const store_notice_new *n;
    char *out_id;
} notice_create_args;

static int notice_create_op(store *st, sq_db *w, void *arg)
{
    notice_create_args *a = arg;
    const store_notice_new *n = a->n;
    char tenant[STORE_ID_MAX] = "";
    int err = store__read_one(w, NULL, store__read_id, tenant, "match",
                              "SELECT tenant_id FROM matches WHERE id = ?1 AND "
                              "(?2 IS NULL OR tenant_id = ?2)",
                              "tt", n->match_id, a->tenant_id);
    if (err)
        return err;

    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "ntc", id, &ms);
    err =
        store__run(w,
                   "INSERT INTO notices(id, tenant_id, match_id, status, infringing_url, "
                   "recipient_name, recipient_email, recipient_address, recipient_phone, "
                   "claimant_name, claimant_email, claimant_address, claimant_phone, signature, "
                   "body_text, body_html, created_ms, updated_ms) "
                   "VALUES(?, ?, ?, 'draft', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   "tttttttttttttttii", id, tenant, n->match_id, n->infringing_url,
                   n->recipient.name, store__opt(n->recipient.email),
                   store__opt(n->recipient.address), store__opt(n->recipient.phone),
                   n->claimant.name, store__opt(n->claimant.email), store__opt(n->claimant.address),
                   store__opt(n->claimant.phone), n->signature, n->text, n->html, ms, ms);
    if (!err)
        err =
            store__run(w,
                       "INSERT INTO notice_events(notice_id, from_status, to_status, note, at_ms) "
                       "VALUES(?, NULL, 'draft', 'drafted', ?)",
                       "ti", id, ms);
    if (!err)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

int store_notice_create(store *st, const char *tenant_id, const store_notice_new *n,
                        char out_id[STORE_ID_MAX])
{
    if (!n)
        return vg_err_set(VG_EINVAL, "notice is required");
    if (!store__id_valid(n->match_id, "mat"))
        return vg_err_set(VG_ENOTFOUND, "match not found");
    int err;
    if ((err = store__check_str("infringing_url", n->infringing_url, STORE_URL_MAX_BYTES, 1)) ||
        (err = check_party("recipient", &n->recipient)) ||
        (err = check_party("claimant", &n->claimant)) ||
        (err = store__check_str("signature", n->signature, STORE_NAME_MAX_BYTES, 1)) ||
        (err = store__check_str("text", n->text, STORE_NOTICE_MAX_BYTES, 1)) ||
        (err = store__check_str("html", n->html, STORE_NOTICE_MAX_BYTES, 1)))
        return err;
    notice_create_args a = {tenant_id, n, out_id};
    return store__write(st, notice_create_op, &a);
}

/* ---- reads ---------------------------------------------------------------------------------- */

static int read_events(sq_db *db, const char *id, store_copy *c, store_notice *n)
{
    sq_stmt *s = NULL;
    int err =
        store__query(db, "SELECT count(*) FROM notice_events WHERE notice_id = ?", &s, "t", id);
    if (err)
        return err;
    size_t count = 0;
    err = store__sq_step(s);
    if (err == SQ_ROW) {
        count = (size_t)store__sq_col_int64(s, 0);
        err = 0;
    }
    store__sq_release(s);
    if (err || !count)
        return err;
    size_t bytes;
    if (vg_mul_size(count, sizeof *n->events, &bytes))
        return vg_err_set(VG_ETOOBIG, "notice history too long");
    n->events = vg_arena_alloc(c->a, bytes);
    if (!n->events)
        return vg_err_set(VG_ENOMEM, "store: notice events");
    err = store__query(db,
                       "SELECT from_status, to_status, note, at_ms FROM notice_events "
                       "WHERE notice_id = ? ORDER BY id",
                       &s, "t", id);
    if (err)
        return err;
    size_t i = 0;
    for (;;) {
        int rc = store__sq_step(s);
        if (rc <= 0) {
            err = rc;
            break;
        }
        if (i == count)
            break;
        store_notice_event *e = &n->events[i++];
        memset(e, 0, sizeof *e);
        e->has_from = !store__sq_col_is_null(s, 0);
        e->from = parse_status(store__sq_col_text(s, 0));
        e->to = parse_status(store__sq_col_text(s, 1));
        e->note = store__sc_text(c, s, 2);
        e->at_ms = store__sq_col_int64(s, 3);
    }
    store__sq_release(s);
    n->n_events = i;
    return err;
}

int store_notice_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                     store_notice *out)
{
    if (!store__id_valid(id, "ntc"))
        return vg_err_set(VG_ENOTFOUND, "notice not found");
    sq_db *db = store__reader_acquire(st);
    store_copy c = {a, 0};
    store_notice n;
    memset(&n, 0, sizeof n);
    /* One read transaction: the status and the history agree. */
    int err = store__sq_exec(db, "BEGIN");
    if (!err) {
        err = store__read_one(db, &c, read_notice, &n, "notice",
                              "SELECT " NOTICE_COLS NOTICE_FROM " WHERE t.id = ?1 AND "
                              "(?2 IS NULL OR t.tenant_id = ?2)",
                              "tt", id, tenant_id);
        if (!err)
            err = read_events(db, id, &c, &n);
        if (!err && c.oom)
            err = vg_err_set(VG_ENOMEM, "store: notice");
        store__sq_exec(db, err ? "ROLLBACK" : "COMMIT");
    }
    store__reader_release(st, db);
    if (!err)
        *out = n;
    return err;
}

/* store_notice_status_name for store__qb_in_mask, which walks values as unsigned. */
static const char *status_name(unsigned k)
{
    return store_notice_status_name((store_notice_status)k);
}

int store_notice_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                      store_notice **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " NOTICE_COLS_LITE NOTICE_FROM " WHERE 1 = 1");
    if (opts && opts->profile_id)
        store__qb_text(&q, " AND m.profile_id = ?", opts->profile_id);
    if (opts) {
        int err = store__qb_in_mask(&q, "t.status", opts->statuses, STORE_NOTICE_STATUS_COUNT,
                                    status_name, "notice status");
        if (err)
            return err;
    }
    return store__list(st, &q, "ntc", tenant_id, opts, a, sizeof(store_notice),
                       offsetof(store_notice, id), read_notice, (void **)items, page);
}

/* ---- status --------------------------------------------------------------------------------- */

/* A store_row_fn for "SELECT status": row is a store_notice_status. */
static int read_status(sq_stmt *s, store_copy *c, void *row)
{
    (void)c;
    *(store_notice_status *)row = parse_status(store__sq_col_text(s, 0));
    return 0;
}

typedef struct notice_status_args {
    const char *tenant_id, *id, *note;
    store_notice_status to;
    unsigned allowed_from;
    store_notice_status from;
} notice_status_args;

static int notice_status_op(store *st, sq_db *w, void *arg)
{
    notice_status_args *a = arg;
    (void)st;
    store_notice_status cur = STORE_NOTICE_DRAFT;
    int err = store__read_one(w, NULL, read_status, &cur, "notice",
                              "SELECT status FROM notices WHERE id = ?1 AND "
                              "(?2 IS NULL OR tenant_id = ?2)",
                              "tt", a->id, a->tenant_id);
    if (err)
        return err;
    if (!(a->allowed_from & (1u << cur)))
        return vg_err_set(VG_ECONFLICT, "notice is '%s'; it cannot move to '%s'",
                          store_notice_status_name(cur), store_notice_status_name(a->to));
    int64_t now = vg_wall_ms();
    err = store__run(w,
                     "UPDATE notices SET status = ?1, updated_ms = CASE WHEN updated_ms > ?2 THEN "
                     "updated_ms ELSE ?2 END WHERE id = ?3",
                     "tit", store_notice_status_name(a->to), now, a->id);
    if (!err)
        err =
            store__run(w,
                       "INSERT INTO notice_events(notice_id, from_status, to_status, note, at_ms) "
                       "VALUES(?, ?, ?, ?, ?)",
                       "tttti", a->id, store_notice_status_name(cur),
                       store_notice_status_name(a->to), store__opt(a->note), now);
    if (!err)
        a->from = cur;
    return err;
}

int store_notice_set_status(store *st, const char *tenant_id, const char *id,
                            store_notice_status to, unsigned allowed_from, const char *note,
                            store_notice_status *out_from)
{
    if (!store__id_valid(id, "ntc"))
        return vg_err_set(VG_ENOTFOUND, "notice not found");
    if ((unsigned)to >= STORE_NOTICE_STATUS_COUNT)
        return vg_err_set(VG_EINVAL, "unknown notice status");
    int err = store__check_str("note", note, STORE_TEXT_MAX_BYTES, 0);
    if (err)
        return err;
    notice_status_args a = {tenant_id, id, note, to, allowed_from, STORE_NOTICE_DRAFT};
    err = store__write(st, notice_status_op, &a);
    if (!err && out_from)
        *out_from = a.from;
    return err;
}
