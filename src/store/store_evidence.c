/*
 * store_evidence: scans and their matches, the immutable record of what was analysed and what it
 * matched. The insert is the analyze hot path: one write op per scan (grouped with concurrent
 * ones by the write queue), cached statements, and a match row is inserted only if its
 * reference belongs to the scan's tenant and to the match's profile (INSERT ... SELECT), so a
 * bug upstream can never attach evidence to another tenant's data.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define SCAN_COLS                                                                                  \
    "t.id, t.tenant_id, t.created_ms, t.sha256, t.source_url, t.pdq, t.pdq_quality, "              \
    "t.faces_json, t.timings_json, t.level, t.n_matches"
#define MATCH_COLS                                                                                 \
    "t.id, t.scan_id, t.tenant_id, t.profile_id, t.reference_id, t.kind, t.distance, "             \
    "t.confidence, t.dihedral, t.face_index, t.created_ms, s.sha256, s.source_url, t.mechanism, "  \
    "t.region, t.video"

/* ---- insert --------------------------------------------------------------------------------- */

static int check_scan(const char *tenant_id, const store_scan_new *s)
{
    if (!tenant_id)
        return vg_err_set(VG_EINVAL, "a scan needs a tenant");
    if (!store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    if (!s || !s->sha256)
        return vg_err_set(VG_EINVAL, "sha256 is required");
    int err;
    if ((err = store__check_str("source_url", s->source_url, STORE_URL_MAX_BYTES, 0)) ||
        (err = store__check_str("faces_json", s->faces_json, STORE_JSON_MAX_BYTES, 0)) ||
        (err = store__check_str("timings_json", s->timings_json, STORE_JSON_MAX_BYTES, 0)) ||
        (err = store__check_str("level", s->level, STORE_NAME_MAX_BYTES, 0)))
        return err;
    if (s->pdq && (s->pdq_quality < 0 || s->pdq_quality > 100))
        return vg_err_set(VG_EINVAL, "pdq_quality must be 0..100");
    if (s->n_matches > STORE_MAX_MATCHES_PER_SCAN)
        return vg_err_set(VG_EINVAL, "%zu matches, at most %d per scan", s->n_matches,
                          STORE_MAX_MATCHES_PER_SCAN);
    if (s->n_matches && !s->matches)
        return vg_err_set(VG_EINVAL, "n_matches without matches");
    for (size_t i = 0; i < s->n_matches; i++) {
        const store_match_new *m = &s->matches[i];
        if (!store__id_valid(m->reference_id, "ref") || !store__id_valid(m->profile_id, "prf"))
            return vg_err_set(VG_ENOTFOUND, "match %zu: reference not found", i);
        if ((unsigned)m->kind > VG_MATCH_FACE)
            return vg_err_set(VG_EINVAL, "match %zu: bad kind", i);
        if (!isfinite(m->distance) || m->distance < 0)
            return vg_err_set(VG_EINVAL, "match %zu: distance must be finite and >= 0", i);
        if (!isfinite(m->confidence) || m->confidence < 0 || m->confidence > 1)
            return vg_err_set(VG_EINVAL, "match %zu: confidence must be in 0..1", i);
        if (m->dihedral < -1 || m->dihedral > 7)
            return vg_err_set(VG_EINVAL, "match %zu: dihedral must be -1..7", i);
        if (m->face_index < -1)
            return vg_err_set(VG_EINVAL, "match %zu: face_index must be >= -1", i);
        if ((m->mechanism && strlen(m->mechanism) >= STORE_MECH_MAX) ||
            (m->region && strlen(m->region) >= STORE_MECH_MAX))
            return vg_err_set(VG_EINVAL, "match %zu: mechanism or region name too long", i);
        int err2 = store__check_str("video", m->video_json, STORE_JSON_MAX_BYTES, 0);
        if (err2)
            return err2;
    }
    return 0;
}

typedef struct scan_insert_args {
    const char *tenant_id;
    const store_scan_new *s;
    char *scan_id;
    char (*match_ids)[STORE_ID_MAX];
} scan_insert_args;

static int scan_insert_op(store *st, sq_db *w, void *arg)
{
    scan_insert_args *a = arg;
    const store_scan_new *s = a->s;
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "scn", id, &ms);
    int err = store__run(w,
                         "INSERT INTO scans(id, tenant_id, created_ms, sha256, source_url, pdq, "
                         "pdq_quality, faces_json, timings_json, level, n_matches) "
                         "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         "ttibtbittti", id, a->tenant_id, ms, (const void *)s->sha256, (size_t)32,
                         s->source_url, (const void *)s->pdq, (size_t)32,
                         (int64_t)(s->pdq ? s->pdq_quality : 0), s->faces_json, s->timings_json,
                         s->level, (int64_t)s->n_matches);
    if (err == VG_ENOTFOUND)
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    for (size_t i = 0; !err && i < s->n_matches; i++) {
        const store_match_new *m = &s->matches[i];
        char mid[STORE_ID_MAX];
        store__id_next(st, "mat", mid);
        err =
            store__run(w,
                       "INSERT INTO matches(id, scan_id, tenant_id, profile_id, reference_id, "
                       "kind, distance, confidence, dihedral, face_index, created_ms, "
                       "mechanism, region, video) "
                       "SELECT ?1, ?2, ?3, r.profile_id, r.id, ?4, ?5, ?6, ?7, ?8, ?9, ?12, ?13, "
                       "?14 FROM refs r WHERE r.id = ?10 AND r.tenant_id = ?3 AND "
                       "r.profile_id = ?11",
                       "ttttddiiittttt", mid, id, a->tenant_id, vg_match_kind_name(m->kind),
                       m->distance, m->confidence, (int64_t)m->dihedral, (int64_t)m->face_index, ms,
                       m->reference_id, m->profile_id, m->mechanism, m->region, m->video_json);
        if (!err && store__sq_changes(w) == 0)
            err = vg_err_set(VG_ENOTFOUND, "match %zu: reference %s not found in profile %s", i,
                             m->reference_id, m->profile_id);
        if (!err && a->match_ids)
            memcpy(a->match_ids[i], mid, STORE_ID_MAX);
    }
    if (!err)
        memcpy(a->scan_id, id, STORE_ID_MAX);
    return err;
}

int store_scan_insert(store *st, const char *tenant_id, const store_scan_new *s,
                      char scan_id_out[STORE_ID_MAX], char (*match_ids_out)[STORE_ID_MAX])
{
    int err = check_scan(tenant_id, s);
    if (err)
        return err;
    scan_insert_args a = {tenant_id, s, scan_id_out, match_ids_out};
    err = store__write(st, scan_insert_op, &a);
    if (!err)
        atomic_fetch_add(&st->ctr.scans_inserted, 1);
    return err;
}

/* ---- reads ---------------------------------------------------------------------------------- */

static int read_scan(sq_stmt *s, store_copy *c, void *item)
{
    store_scan *r = item;
    store__sc_id(s, 0, r->id);
    store__sc_id(s, 1, r->tenant_id);
    r->created_ms = store__sq_col_int64(s, 2);
    store__sc_fixed(s, 3, r->sha256, 32);
    r->source_url = store__sc_text(c, s, 4);
    r->has_pdq = store__sc_fixed(s, 5, r->pdq, 32);
    r->pdq_quality = r->has_pdq ? (int)store__sq_col_int64(s, 6) : 0;
    r->faces_json = store__sc_text(c, s, 7);
    r->timings_json = store__sc_text(c, s, 8);
    r->level = store__sc_text(c, s, 9);
    r->n_matches = (size_t)store__sq_col_int64(s, 10);
    r->matches = NULL;
    return 0;
}

static int read_match(sq_stmt *s, store_copy *c, void *item)
{
    store_match *m = item;
    store__sc_id(s, 0, m->id);
    store__sc_id(s, 1, m->scan_id);
    store__sc_id(s, 2, m->tenant_id);
    store__sc_id(s, 3, m->profile_id);
    store__sc_id(s, 4, m->reference_id);
    const char *k = store__sq_col_text(s, 5);
    m->kind = VG_MATCH_EXACT;
    if (k && strcmp(k, "pdq") == 0)
        m->kind = VG_MATCH_PDQ;
    else if (k && strcmp(k, "face") == 0)
        m->kind = VG_MATCH_FACE;
    m->distance = store__sq_col_double(s, 6);
    m->confidence = store__sq_col_double(s, 7);
    m->dihedral = (int)store__sq_col_int64(s, 8);
    m->face_index = (int)store__sq_col_int64(s, 9);
    m->created_ms = store__sq_col_int64(s, 10);
    store__sc_fixed(s, 11, m->scan_sha256, 32);
    m->scan_source_url = store__sc_text(c, s, 12);
    const char *mech = store__sq_col_text(s, 13), *region = store__sq_col_text(s, 14);
    snprintf(m->mechanism, sizeof m->mechanism, "%s", mech ? mech : "");
    snprintf(m->region, sizeof m->region, "%s", region ? region : "");
    m->video_json = store__sc_text(c, s, 15);
    return 0;
}

int store__scan_read(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                     store_scan *out)
{
    return store__read_one(db, c, read_scan, out, "scan",
                           "SELECT " SCAN_COLS " FROM scans t WHERE t.id = ?1 AND "
                           "(?2 IS NULL OR t.tenant_id = ?2)",
                           "tt", id, tenant_id);
}

/* A match by id in scope: store__match_read (notice sources) and store_match_get. */
#define MATCH_BY_ID_SQL                                                                            \
    "SELECT " MATCH_COLS " FROM matches t JOIN scans s ON s.id = t.scan_id "                       \
    "WHERE t.id = ?1 AND (?2 IS NULL OR t.tenant_id = ?2)"

int store__match_read(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                      store_match *out)
{
    return store__read_one(db, c, read_match, out, "match", MATCH_BY_ID_SQL, "tt", id, tenant_id);
}

int store_scan_get(store *st, const char *tenant_id, const char *id, vg_arena *a, store_scan *out)
{
    if (!store__id_valid(id, "scn"))
        return vg_err_set(VG_ENOTFOUND, "scan not found");
    sq_db *db = store__reader_acquire(st);
    store_copy c = {a, 0};
    store_scan sc;
    memset(&sc, 0, sizeof sc);
    /* A scan and its matches commit together, so a second statement (a newer snapshot) sees all
     * the matches of a scan the first one saw. */
    int err = store__scan_read(db, tenant_id, id, &c, &sc);
    if (!err && sc.n_matches) {
        if (sc.n_matches > STORE_MAX_MATCHES_PER_SCAN)
            err = vg_err_set(VG_ESTORE, "scan %s: n_matches %zu out of range", id, sc.n_matches);
        if (!err) {
            sc.matches = vg_arena_alloc(a, sc.n_matches * sizeof *sc.matches);
            if (!sc.matches)
                err = vg_err_set(VG_ENOMEM, "store: scan");
        }
        sq_stmt *s = NULL;
        if (!err)
            err = store__query(db,
                               "SELECT " MATCH_COLS " FROM matches t JOIN scans s ON "
                               "s.id = t.scan_id WHERE t.scan_id = ? ORDER BY t.id",
                               &s, "t", id);
        size_t n = 0;
        while (!err) {
            int rc = store__sq_step(s);
            if (rc <= 0) {
                err = rc;
                break;
            }
            if (n == sc.n_matches)
                break;
            memset(&sc.matches[n], 0, sizeof sc.matches[n]);
            read_match(s, &c, &sc.matches[n++]);
        }
        store__sq_release(s);
        sc.n_matches = n;
    }
    if (!err && c.oom)
        err = vg_err_set(VG_ENOMEM, "store: scan");
    store__reader_release(st, db);
    if (!err)
        *out = sc;
    return err;
}

int store_scan_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                    store_scan **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " SCAN_COLS " FROM scans t WHERE 1 = 1");
    if (opts && opts->sha256)
        store__qb_blob(&q, " AND t.sha256 = ?", opts->sha256, 32);
    return store__list(st, &q, "scn", tenant_id, opts, a, sizeof(store_scan),
                       offsetof(store_scan, id), read_scan, (void **)items, page);
}

int store_match_get(store *st, const char *tenant_id, const char *id, vg_arena *a, store_match *out)
{
    if (!store__id_valid(id, "mat"))
        return vg_err_set(VG_ENOTFOUND, "match not found");
    store_match m;
    int err = store__get_one(st, a, read_match, &m, sizeof m, "match", MATCH_BY_ID_SQL, "tt", id,
                             tenant_id);
    if (!err)
        *out = m;
    return err;
}

/* vg_match_kind_name for store__qb_in_mask, which walks values as unsigned. */
static const char *kind_name(unsigned k)
{
    return vg_match_kind_name((vg_match_kind)k);
}

int store_match_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                     store_match **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " MATCH_COLS
                       " FROM matches t JOIN scans s ON s.id = t.scan_id WHERE 1 = 1");
    if (opts && opts->profile_id)
        store__qb_text(&q, " AND t.profile_id = ?", opts->profile_id);
    if (opts && opts->scan_id)
        store__qb_text(&q, " AND t.scan_id = ?", opts->scan_id);
    if (opts) {
        int err = store__qb_in_mask(&q, "t.kind", opts->kinds, VG_MATCH_FACE + 1, kind_name,
                                    "match kind");
        if (err)
            return err;
    }
    return store__list(st, &q, "mat", tenant_id, opts, a, sizeof(store_match),
                       offsetof(store_match, id), read_match, (void **)items, page);
}
