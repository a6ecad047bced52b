/*
 * store_profiles: profiles and their references, and the walk the match index is built from.
 *
 * Soft deletion: a deleted profile or reference keeps its row (deleted_ms) so evidence and
 * notices that cite it still resolve; it leaves every live query at once. Deleting a reference
 * also erases its face descriptors and stored image (biometric data should not outlive a
 * request to delete it); hashes and descriptive fields stay for the notices.
 *
 * Face descriptors and boxes are stored as little-endian IEEE-754 float32 blobs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define PROFILE_COLS                                                                               \
    "t.id, t.tenant_id, t.name, t.legal_name, t.email, t.address, t.phone, t.notes, "              \
    "t.created_ms, t.updated_ms, t.deleted_ms"

/* Columns of a reference; the _LITE form leaves out the face blobs (notice sources, lists do
 * include them: the index and the API both want them). */
#define REF_COLS_HEAD                                                                              \
    "t.id, t.tenant_id, t.profile_id, t.kind, t.title, t.description, t.original_url, "            \
    "t.copyright_holder, t.sha256, t.pdq, t.pdq_quality, t.pdq_dihedral, t.n_faces, "
#define REF_COLS_TAIL                                                                              \
    ", (SELECT length(i.bytes) FROM ref_images i WHERE i.ref_id = t.id), t.created_ms, "           \
    "t.deleted_ms, t.pdq_regions, "                                                                \
    "(SELECT v.n_frames FROM ref_videos v WHERE v.ref_id = t.id), "                                \
    "(SELECT v.duration_s FROM ref_videos v WHERE v.ref_id = t.id), t.ikey"
#define REF_COLS REF_COLS_HEAD "t.descriptors, t.boxes" REF_COLS_TAIL
#define REF_COLS_LITE REF_COLS_HEAD "NULL, NULL" REF_COLS_TAIL

/* ---- float blobs ---------------------------------------------------------------------------- */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STORE_HOST_LE 1
#else
#define STORE_HOST_LE 0
#endif

/* Host floats -> little-endian bytes. Returns src itself on little-endian hosts (no copy), else
 * a vg_malloc'ed buffer in *tmp (free it). NULL on OOM. */
static const void *floats_le(const float *src, size_t n, void **tmp)
{
    *tmp = NULL;
    if (STORE_HOST_LE)
        return src;
    uint8_t *d = vg_malloc(n * 4);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        d[4 * i] = (uint8_t)u;
        d[4 * i + 1] = (uint8_t)(u >> 8);
        d[4 * i + 2] = (uint8_t)(u >> 16);
        d[4 * i + 3] = (uint8_t)(u >> 24);
    }
    *tmp = d;
    return d;
}

/* Little-endian blob of n floats -> arena floats; NULL if the blob is absent or the wrong size. */
static const float *sc_floats(store_copy *c, sq_stmt *s, int col, size_t n)
{
    size_t len;
    const uint8_t *p = store__sq_col_blob(s, col, &len);
    if (!p || n == 0 || len != n * 4)
        return NULL;
    float *d = vg_arena_alloc(c->a, len);
    if (!d) {
        c->oom = 1;
        return NULL;
    }
    if (STORE_HOST_LE) {
        memcpy(d, p, len);
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&d[i], &u, 4);
        }
    }
    return d;
}

/* ---- profiles ------------------------------------------------------------------------------- */

static int read_profile(sq_stmt *s, store_copy *c, void *item)
{
    store_profile *p = item;
    store__sc_id(s, 0, p->id);
    store__sc_id(s, 1, p->tenant_id);
    p->f.name = store__sc_text(c, s, 2);
    p->f.legal_name = store__sc_text(c, s, 3);
    p->f.email = store__sc_text(c, s, 4);
    p->f.address = store__sc_text(c, s, 5);
    p->f.phone = store__sc_text(c, s, 6);
    p->f.notes = store__sc_text(c, s, 7);
    p->created_ms = store__sq_col_int64(s, 8);
    p->updated_ms = store__sq_col_int64(s, 9);
    p->deleted_ms = store__sq_col_int64(s, 10);
    return 0;
}

/* The fields' limits; `creating` makes name required. */
static int check_profile_fields(const store_profile_fields *f, int creating)
{
    if (!f)
        return vg_err_set(VG_EINVAL, "profile fields are required");
    int err;
    if (!creating && f->name && !*f->name)
        return vg_err_set(VG_EINVAL, "name must not be empty");
    if ((err = store__check_str("name", f->name, STORE_NAME_MAX_BYTES, creating)) ||
        (err = store__check_str("legal_name", f->legal_name, STORE_NAME_MAX_BYTES, 0)) ||
        (err = store__check_str("email", f->email, STORE_NAME_MAX_BYTES, 0)) ||
        (err = store__check_str("address", f->address, STORE_TEXT_MAX_BYTES, 0)) ||
        (err = store__check_str("phone", f->phone, STORE_NAME_MAX_BYTES, 0)) ||
        (err = store__check_str("notes", f->notes, STORE_TEXT_MAX_BYTES, 0)))
        return err;
    return 0;
}

typedef struct profile_create_args {
    const char *tenant_id;
    const store_profile_fields *f;
    char *out_id;
} profile_create_args;

static int profile_create_op(store *st, sq_db *w, void *arg)
{
    profile_create_args *a = arg;
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "prf", id, &ms);
    int err =
        store__run(w,
                   "INSERT INTO profiles(id, tenant_id, name, legal_name, email, address, "
                   "phone, notes, created_ms, updated_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   "ttttttttii", id, a->tenant_id, a->f->name, store__opt(a->f->legal_name),
                   store__opt(a->f->email), store__opt(a->f->address), store__opt(a->f->phone),
                   store__opt(a->f->notes), ms, ms);
    if (err == VG_ENOTFOUND)
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    if (!err)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

int store_profile_create(store *st, const char *tenant_id, const store_profile_fields *f,
                         char out_id[STORE_ID_MAX])
{
    if (!tenant_id)
        return vg_err_set(VG_EINVAL, "a profile needs a tenant");
    if (!store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    int err = check_profile_fields(f, 1);
    if (err)
        return err;
    profile_create_args a = {tenant_id, f, out_id};
    return store__write(st, profile_create_op, &a);
}

int store_profile_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                      store_profile *out)
{
    if (!store__id_valid(id, "prf"))
        return vg_err_set(VG_ENOTFOUND, "profile not found");
    store_profile p;
    int err = store__get_one(st, a, read_profile, &p, sizeof p, "profile",
                             "SELECT " PROFILE_COLS " FROM profiles t WHERE t.id = ?1 AND "
                             "t.deleted_ms IS NULL AND (?2 IS NULL OR t.tenant_id = ?2)",
                             "tt", id, tenant_id);
    if (!err)
        *out = p;
    return err;
}

typedef struct profile_update_args {
    const char *tenant_id, *id;
    const store_profile_fields *f;
} profile_update_args;

static int profile_update_op(store *st, sq_db *w, void *arg)
{
    profile_update_args *a = arg;
    (void)st;
    /* NULL keeps a field, "" clears it (NULLIF), anything else replaces it. */
    int err =
        store__run(w,
                   "UPDATE profiles SET name = coalesce(?1, name), "
                   "legal_name = CASE WHEN ?2 IS NULL THEN legal_name ELSE NULLIF(?2, '') END, "
                   "email = CASE WHEN ?3 IS NULL THEN email ELSE NULLIF(?3, '') END, "
                   "address = CASE WHEN ?4 IS NULL THEN address ELSE NULLIF(?4, '') END, "
                   "phone = CASE WHEN ?5 IS NULL THEN phone ELSE NULLIF(?5, '') END, "
                   "notes = CASE WHEN ?6 IS NULL THEN notes ELSE NULLIF(?6, '') END, "
                   "updated_ms = CASE WHEN updated_ms > ?7 THEN updated_ms ELSE ?7 END "
                   "WHERE id = ?8 AND deleted_ms IS NULL AND (?9 IS NULL OR tenant_id = ?9)",
                   "ttttttitt", a->f->name, a->f->legal_name, a->f->email, a->f->address,
                   a->f->phone, a->f->notes, vg_wall_ms(), a->id, a->tenant_id);
    if (!err && store__sq_changes(w) == 0)
        err = vg_err_set(VG_ENOTFOUND, "profile not found");
    return err;
}

int store_profile_update(store *st, const char *tenant_id, const char *id,
                         const store_profile_fields *f)
{
    if (!store__id_valid(id, "prf"))
        return vg_err_set(VG_ENOTFOUND, "profile not found");
    int err = check_profile_fields(f, 0);
    if (err)
        return err;
    profile_update_args a = {tenant_id, id, f};
    return store__write(st, profile_update_op, &a);
}

typedef struct profile_delete_args {
    const char *tenant_id, *id;
    vg_arena *a; /* the caller's; it is blocked in store__write while the leader fills it */
    char (*ref_ids)[STORE_ID_MAX];
    size_t n_refs;
} profile_delete_args;

static int profile_delete_op(store *st, sq_db *w, void *arg)
{
    profile_delete_args *a = arg;
    int64_t now = vg_wall_ms();
    int err = store__run(w,
                         "UPDATE profiles SET deleted_ms = ?1, updated_ms = CASE WHEN updated_ms > "
                         "?1 THEN updated_ms ELSE ?1 END "
                         "WHERE id = ?2 AND deleted_ms IS NULL AND (?3 IS NULL OR tenant_id = ?3)",
                         "itt", now, a->id, a->tenant_id);
    if (!err && store__sq_changes(w) == 0)
        err = vg_err_set(VG_ENOTFOUND, "profile not found");
    if (err)
        return err;

    if (a->a) {
        sq_stmt *s = NULL;
        err =
            store__query(w, "SELECT count(*) FROM refs WHERE profile_id = ? AND deleted_ms IS NULL",
                         &s, "t", a->id);
        size_t n = 0;
        if (!err) {
            err = store__sq_step(s);
            if (err == SQ_ROW) {
                n = (size_t)store__sq_col_int64(s, 0);
                err = 0;
            }
            store__sq_release(s);
        }
        if (!err && n) {
            a->ref_ids = vg_arena_alloc(a->a, n * STORE_ID_MAX);
            if (!a->ref_ids)
                err = vg_err_set(VG_ENOMEM, "store: profile delete");
        }
        if (!err)
            err = store__query(
                w, "SELECT id FROM refs WHERE profile_id = ? AND deleted_ms IS NULL ORDER BY id",
                &s, "t", a->id);
        if (!err) {
            a->n_refs = 0;
            while ((err = store__sq_step(s)) == SQ_ROW && a->n_refs < n)
                store__sc_id(s, 0, a->ref_ids[a->n_refs++]);
            if (err > 0)
                err = 0;
            store__sq_release(s);
        }
        if (err)
            return err;
    }
    /* One change-log row per reference (with its image hash, the key of its cached features)
     * and one for the profile, in this transaction. */
    if (st->schema_version >= STORE__KEYS_VERSION)
        err = store__run(w,
                         "INSERT INTO changes(tenant_id, kind, object_id, op, sha256, created_ms, "
                         "object_key) SELECT tenant_id, 'reference', id, 'remove', sha256, ?1, "
                         "ikey FROM refs WHERE profile_id = ?2 AND deleted_ms IS NULL ORDER BY id",
                         "it", now, a->id);
    else if (st->schema_version >= STORE__CHANGES_VERSION)
        err = store__run(w,
                         "INSERT INTO changes(tenant_id, kind, object_id, op, sha256, created_ms) "
                         "SELECT tenant_id, 'reference', id, 'remove', sha256, ?1 FROM refs "
                         "WHERE profile_id = ?2 AND deleted_ms IS NULL ORDER BY id",
                         "it", now, a->id);
    if (!err && st->schema_version >= STORE__CHANGES_VERSION)
        err =
            store__run(w,
                       "INSERT INTO changes(tenant_id, kind, object_id, op, created_ms) "
                       "SELECT tenant_id, 'profile', id, 'remove', ?1 FROM profiles WHERE id = ?2",
                       "it", now, a->id);
    if (!err)
        err = store__run(w,
                         "DELETE FROM ref_images WHERE ref_id IN "
                         "(SELECT id FROM refs WHERE profile_id = ? AND deleted_ms IS NULL)",
                         "t", a->id);
    if (!err)
        err = store__run(w,
                         "UPDATE refs SET deleted_ms = ?1, descriptors = NULL, boxes = NULL, "
                         "n_faces = 0 WHERE profile_id = ?2 AND deleted_ms IS NULL",
                         "it", now, a->id);
    return err;
}

int store_profile_delete(store *st, const char *tenant_id, const char *id, vg_arena *a,
                         char (**out_ref_ids)[STORE_ID_MAX], size_t *out_n)
{
    if (!store__id_valid(id, "prf"))
        return vg_err_set(VG_ENOTFOUND, "profile not found");
    if (out_ref_ids && (!a || !out_n))
        return vg_err_set(VG_EINVAL, "out_ref_ids needs an arena and out_n");
    profile_delete_args args = {tenant_id, id, out_ref_ids ? a : NULL, NULL, 0};
    int err = store__write(st, profile_delete_op, &args);
    if (!err && out_ref_ids) {
        *out_ref_ids = args.ref_ids;
        *out_n = args.n_refs;
    }
    return err;
}

int store_profile_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                       store_profile **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " PROFILE_COLS " FROM profiles t WHERE t.deleted_ms IS NULL");
    return store__list(st, &q, "prf", tenant_id, opts, a, sizeof(store_profile),
                       offsetof(store_profile, id), read_profile, (void **)items, page);
}

int store__profile_read_any(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                            store_profile *out)
{
    return store__read_one(db, c, read_profile, out, "profile",
                           "SELECT " PROFILE_COLS " FROM profiles t WHERE t.id = ?1 AND "
                           "(?2 IS NULL OR t.tenant_id = ?2)",
                           "tt", id, tenant_id);
}

/* ---- references ----------------------------------------------------------------------------- */

/* The pdq_regions blob of column col into r (none when NULL, damaged or without a PDQ hash). */
static void read_pdq_regions(sq_stmt *s, int col, store_reference *r)
{
    r->n_pdq_regions = 0;
    size_t len = 0;
    const uint8_t *b = store__sq_col_blob(s, col, &len);
    if (!b || !r->has_pdq)
        return;
    if (len % STORE_PDQ_REGION_BYTES || len / STORE_PDQ_REGION_BYTES > STORE_MAX_PDQ_REGIONS) {
        VG_WARN("store", "reference %s: PDQ region blob of %zu bytes; ignored", r->id, len);
        return;
    }
    for (size_t i = 0; i < len / STORE_PDQ_REGION_BYTES; i++) {
        const uint8_t *e = b + i * STORE_PDQ_REGION_BYTES;
        if (e[0] == 0 || e[1] > 100)
            continue; /* a whole-image or out-of-range entry is not a region: skipped */
        store_pdq_region *g = &r->pdq_regions[r->n_pdq_regions++];
        g->region = e[0];
        g->quality = e[1];
        memcpy(g->hash, e + 2, 32);
    }
}

static int read_ref(sq_stmt *s, store_copy *c, void *item)
{
    store_reference *r = item;
    store__sc_id(s, 0, r->id);
    store__sc_id(s, 1, r->tenant_id);
    store__sc_id(s, 2, r->profile_id);
    const char *k = store__sq_col_text(s, 3);
    r->kind = k && strcmp(k, "likeness") == 0 ? STORE_REF_LIKENESS : STORE_REF_WORK;
    r->title = store__sc_text(c, s, 4);
    r->description = store__sc_text(c, s, 5);
    r->original_url = store__sc_text(c, s, 6);
    r->copyright_holder = store__sc_text(c, s, 7);
    store__sc_fixed(s, 8, r->sha256, 32);
    r->has_pdq = store__sc_fixed(s, 9, r->pdq, 32);
    r->pdq_quality = r->has_pdq ? (int)store__sq_col_int64(s, 10) : 0;
    r->has_dihedral = store__sc_fixed(s, 11, r->pdq_dihedral, sizeof r->pdq_dihedral);
    int64_t nf = store__sq_col_int64(s, 12);
    r->n_faces = nf > 0 && nf <= STORE_MAX_FACES_PER_REF ? (size_t)nf : 0;
    r->descriptors = sc_floats(c, s, 13, r->n_faces * VG_DESCRIPTOR_DIM);
    r->boxes = r->descriptors ? sc_floats(c, s, 14, r->n_faces * 4) : NULL;
    if (!r->descriptors && !store__sq_col_is_null(s, 13)) {
        VG_WARN("store", "reference %s: descriptor blob does not match n_faces; ignored", r->id);
        r->n_faces = 0;
    }
    r->has_image = !store__sq_col_is_null(s, 15);
    r->image_len = r->has_image ? (size_t)store__sq_col_int64(s, 15) : 0;
    r->created_ms = store__sq_col_int64(s, 16);
    r->deleted_ms = store__sq_col_int64(s, 17);
    read_pdq_regions(s, 18, r);
    r->is_video = !store__sq_col_is_null(s, 19);
    r->video_n_frames = r->is_video ? (size_t)store__sq_col_int64(s, 19) : 0;
    r->video_duration_s = r->is_video ? store__sq_col_double(s, 20) : 0;
    r->key = store__sq_col_int64(s, 21);
    return 0;
}

/* A lite read (no face blobs: n_faces is still set). */
static int read_ref_lite(sq_stmt *s, store_copy *c, void *item)
{
    int err = read_ref(s, c, item);
    store_reference *r = item;
    r->n_faces = (size_t)store__sq_col_int64(s, 12);
    return err;
}

static int check_reference(const store_reference_new *r)
{
    if (!r)
        return vg_err_set(VG_EINVAL, "reference is required");
    if (r->kind != STORE_REF_WORK && r->kind != STORE_REF_LIKENESS)
        return vg_err_set(VG_EINVAL, "kind must be work or likeness");
    if (!r->sha256)
        return vg_err_set(VG_EINVAL, "sha256 is required");
    if (r->kind == STORE_REF_LIKENESS &&
        (r->title || r->description || r->original_url || r->copyright_holder))
        return vg_err_set(VG_EINVAL, "title, description, original_url and copyright_holder "
                                     "belong to a work, not a likeness");
    int err;
    if ((err = store__check_str("title", r->title, STORE_NAME_MAX_BYTES, 0)) ||
        (err = store__check_str("description", r->description, STORE_TEXT_MAX_BYTES, 0)) ||
        (err = store__check_str("original_url", r->original_url, STORE_URL_MAX_BYTES, 0)) ||
        (err = store__check_str("copyright_holder", r->copyright_holder, STORE_NAME_MAX_BYTES, 0)))
        return err;
    if (r->pdq && (r->pdq_quality < 0 || r->pdq_quality > 100))
        return vg_err_set(VG_EINVAL, "pdq_quality must be 0..100");
    if (r->pdq && r->n_pdq_regions) {
        if (r->n_pdq_regions > STORE_MAX_PDQ_REGIONS || !r->pdq_regions)
            return vg_err_set(VG_EINVAL, "%zu PDQ regions, at most %d per reference",
                              r->n_pdq_regions, STORE_MAX_PDQ_REGIONS);
        for (size_t i = 0; i < r->n_pdq_regions; i++) {
            const store_pdq_region *g = &r->pdq_regions[i];
            if (g->region < 1 || g->region > 255 || g->quality < 0 || g->quality > 100)
                return vg_err_set(VG_EINVAL, "PDQ region %zu: region 1..255, quality 0..100", i);
        }
    }
    if (r->n_faces > STORE_MAX_FACES_PER_REF)
        return vg_err_set(VG_EINVAL, "%zu faces, at most %d per reference", r->n_faces,
                          STORE_MAX_FACES_PER_REF);
    if (r->n_faces && !r->descriptors)
        return vg_err_set(VG_EINVAL, "n_faces without descriptors");
    for (size_t i = 0; i < r->n_faces * VG_DESCRIPTOR_DIM; i++) {
        if (!isfinite(r->descriptors[i]))
            return vg_err_set(VG_EINVAL, "face %zu has a non-finite descriptor value",
                              i / VG_DESCRIPTOR_DIM);
    }
    if (r->video_frames && (r->video_frames_len > STORE_VIDEO_MAX_BYTES ||
                            !isfinite(r->video_duration_s) || r->video_duration_s < 0))
        return vg_err_set(VG_EINVAL, "video frames: %zu bytes (at most %u), duration %g s",
                          r->video_frames_len, STORE_VIDEO_MAX_BYTES, r->video_duration_s);
    if (r->image && r->image_len > STORE_IMAGE_MAX_BYTES)
        return vg_err_set(VG_EINVAL, "image is %zu bytes, at most %u are stored", r->image_len,
                          STORE_IMAGE_MAX_BYTES);
    return 0;
}

typedef struct ref_create_args {
    const char *tenant_id;
    const store_reference_new *r;
    char *out_id;
    int64_t key; /* out */
} ref_create_args;

/* The key of the reference being created (schema 8; see migration 8 for why it is never
 * reused). SQLite: one writer at a time holds the database lock from this read to the commit,
 * and refs rows are never deleted, so MAX + 1 (a seek to the end of refs_ikey) is new.
 * PostgreSQL: writers of several nodes run at once, so the column's sequence, which never
 * hands out a value twice. */
static int ref_key_next(sq_db *w, int64_t *out)
{
    sq_stmt *s = NULL;
    int err =
        store__query(w,
                     store__sq_kind(w) == SQ_PG ? "SELECT nextval('refs_ikey_seq')"
                                                : "SELECT coalesce(max(ikey), 0) + 1 FROM refs",
                     &s, "");
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            *out = store__sq_col_int64(s, 0);
            err =
                *out > 0 ? 0 : vg_err_set(VG_ESTORE, "store: reference key %lld", (long long)*out);
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ESTORE, "store: no reference key");
        }
    }
    store__sq_release(s);
    return err;
}

static int ref_create_op(store *st, sq_db *w, void *arg)
{
    ref_create_args *a = arg;
    const store_reference_new *r = a->r;
    char tenant[STORE_ID_MAX] = "";
    int err = store__read_one(w, NULL, store__read_id, tenant, "profile",
                              "SELECT tenant_id FROM profiles WHERE id = ?1 AND deleted_ms IS NULL "
                              "AND (?2 IS NULL OR tenant_id = ?2)",
                              "tt", r->profile_id, a->tenant_id);
    int64_t key = 0;
    int keyed = st->schema_version >= STORE__KEYS_VERSION;
    if (!err && keyed)
        err = ref_key_next(w, &key);
    if (err)
        return err;

    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "ref", id, &ms);
    void *tmp_d = NULL, *tmp_b = NULL;
    const void *desc = NULL, *boxes = NULL;
    size_t nd = r->n_faces * VG_DESCRIPTOR_DIM;
    if (r->n_faces) {
        desc = floats_le(r->descriptors, nd, &tmp_d);
        if (r->boxes)
            boxes = floats_le(r->boxes, r->n_faces * 4, &tmp_b);
        if (!desc || (r->boxes && !boxes)) {
            vg_free(tmp_d);
            vg_free(tmp_b);
            return vg_err_set(VG_ENOMEM, "store: descriptors");
        }
    }
    uint8_t regions[STORE_MAX_PDQ_REGIONS * STORE_PDQ_REGION_BYTES];
    size_t n_regions = r->pdq ? r->n_pdq_regions : 0;
    for (size_t i = 0; i < n_regions; i++) {
        uint8_t *e = regions + i * STORE_PDQ_REGION_BYTES;
        e[0] = (uint8_t)r->pdq_regions[i].region;
        e[1] = (uint8_t)r->pdq_regions[i].quality;
        memcpy(e + 2, r->pdq_regions[i].hash, 32);
    }
    /* Below schema 8 (tests of older schemas) the column is not there; ?18 is then unused. */
    err = store__run(
        w,
        keyed ? "INSERT INTO refs(id, tenant_id, profile_id, kind, title, description, "
                "original_url, copyright_holder, sha256, pdq, pdq_quality, "
                "pdq_dihedral, n_faces, descriptors, boxes, created_ms, pdq_regions, "
                "ikey) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                "?14, ?15, ?16, ?17, ?18)"
              : "INSERT INTO refs(id, tenant_id, profile_id, kind, title, description, "
                "original_url, copyright_holder, sha256, pdq, pdq_quality, "
                "pdq_dihedral, n_faces, descriptors, boxes, created_ms, pdq_regions) "
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                "?15, ?16, ?17)",
        keyed ? "ttttttttbbibibbibi" : "ttttttttbbibibbib", id, tenant, r->profile_id,
        store_ref_kind_name(r->kind), store__opt(r->title), store__opt(r->description),
        store__opt(r->original_url), store__opt(r->copyright_holder), (const void *)r->sha256,
        (size_t)32, (const void *)r->pdq, (size_t)32, (int64_t)(r->pdq ? r->pdq_quality : 0),
        (const void *)(r->pdq ? r->pdq_dihedral : NULL), (size_t)256, (int64_t)r->n_faces, desc,
        nd * 4, boxes, r->n_faces * 16, ms, (const void *)(n_regions ? regions : NULL),
        n_regions * STORE_PDQ_REGION_BYTES, key);
    vg_free(tmp_d);
    vg_free(tmp_b);
    if (err == VG_EEXIST)
        return vg_err_set(VG_EEXIST, "this profile already has a reference with this image");
    if (!err && r->image)
        err = store__run(w, "INSERT INTO ref_images(ref_id, bytes) VALUES(?, ?)", "tb", id,
                         (const void *)r->image, r->image_len);
    if (!err && r->video_frames)
        err = store__run(w,
                         "INSERT INTO ref_videos(ref_id, n_frames, duration_s, frames) "
                         "VALUES(?, ?, ?, ?)",
                         "tidb", id, (int64_t)r->video_n_frames, r->video_duration_s,
                         (const void *)r->video_frames, r->video_frames_len);
    if (!err)
        err = store__change_append(st, w, tenant, STORE_CHANGE_REFERENCE, id, key, 0, r->sha256);
    if (!err) {
        memcpy(a->out_id, id, STORE_ID_MAX);
        a->key = key;
    }
    return err;
}

int store_reference_create(store *st, const char *tenant_id, const store_reference_new *r,
                           char out_id[STORE_ID_MAX], int64_t *out_key)
{
    int err = check_reference(r);
    if (err)
        return err;
    if (!store__id_valid(r->profile_id, "prf"))
        return vg_err_set(VG_ENOTFOUND, "profile not found");
    ref_create_args a = {tenant_id, r, out_id, 0};
    err = store__write(st, ref_create_op, &a);
    if (!err && out_key)
        *out_key = a.key;
    return err;
}

int store_reference_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                        store_reference *out)
{
    if (!store__id_valid(id, "ref"))
        return vg_err_set(VG_ENOTFOUND, "reference not found");
    store_reference r;
    int err = store__get_one(st, a, read_ref, &r, sizeof r, "reference",
                             "SELECT " REF_COLS " FROM refs t WHERE t.id = ?1 AND "
                             "t.deleted_ms IS NULL AND (?2 IS NULL OR t.tenant_id = ?2)",
                             "tt", id, tenant_id);
    if (!err)
        *out = r;
    return err;
}

int store__reference_read_any(sq_db *db, const char *tenant_id, const char *id, store_copy *c,
                              store_reference *out)
{
    return store__read_one(db, c, read_ref_lite, out, "reference",
                           "SELECT " REF_COLS_LITE " FROM refs t WHERE t.id = ?1 AND "
                           "(?2 IS NULL OR t.tenant_id = ?2)",
                           "tt", id, tenant_id);
}

int store_reference_image_get(store *st, const char *tenant_id, const char *id, vg_arena *a,
                              const uint8_t **out_bytes, size_t *out_len)
{
    if (!store__id_valid(id, "ref"))
        return vg_err_set(VG_ENOTFOUND, "reference not found");
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db,
                           "SELECT i.bytes FROM refs t JOIN ref_images i ON i.ref_id = t.id "
                           "WHERE t.id = ?1 AND t.deleted_ms IS NULL AND "
                           "(?2 IS NULL OR t.tenant_id = ?2)",
                           &s, "tt", id, tenant_id);
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            store_copy c = {a, 0};
            size_t n = 0;
            const uint8_t *p = store__sc_blob(&c, s, 0, &n);
            if (c.oom) {
                err = vg_err_set(VG_ENOMEM, "store: image");
            } else {
                *out_bytes = p;
                *out_len = n;
                err = 0;
            }
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ENOTFOUND, "no stored image for this reference");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

typedef struct ref_delete_args {
    const char *tenant_id, *id;
} ref_delete_args;

static int ref_delete_op(store *st, sq_db *w, void *arg)
{
    ref_delete_args *a = arg;
    /* Its owner and image hash for the change log (the rows other nodes apply). */
    sq_stmt *q = NULL;
    char tenant[STORE_ID_MAX] = "";
    uint8_t sha[32];
    int has_sha = 0;
    int64_t key = 0;
    int err = store__query(w,
                           st->schema_version >= STORE__KEYS_VERSION
                               ? "SELECT tenant_id, sha256, ikey FROM refs WHERE id = ?1 AND "
                                 "deleted_ms IS NULL AND (?2 IS NULL OR tenant_id = ?2)"
                               : "SELECT tenant_id, sha256, 0 FROM refs WHERE id = ?1 AND "
                                 "deleted_ms IS NULL AND (?2 IS NULL OR tenant_id = ?2)",
                           &q, "tt", a->id, a->tenant_id);
    if (!err) {
        err = store__sq_step(q);
        if (err == SQ_ROW) {
            store__sc_id(q, 0, tenant);
            has_sha = store__sc_fixed(q, 1, sha, sizeof sha);
            key = store__sq_col_int64(q, 2);
            err = 0;
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ENOTFOUND, "reference not found");
        }
    }
    store__sq_release(q);
    if (!err)
        err = store__run(w,
                         "UPDATE refs SET deleted_ms = ?1, descriptors = NULL, boxes = NULL, "
                         "n_faces = 0 WHERE id = ?2 AND deleted_ms IS NULL AND "
                         "(?3 IS NULL OR tenant_id = ?3)",
                         "itt", vg_wall_ms(), a->id, a->tenant_id);
    if (!err && store__sq_changes(w) == 0)
        err = vg_err_set(VG_ENOTFOUND, "reference not found");
    if (!err)
        err = store__run(w, "DELETE FROM ref_images WHERE ref_id = ?", "t", a->id);
    if (!err)
        err = store__change_append(st, w, tenant, STORE_CHANGE_REFERENCE, a->id, key, 1,
                                   has_sha ? sha : NULL);
    return err;
}

int store_reference_delete(store *st, const char *tenant_id, const char *id)
{
    if (!store__id_valid(id, "ref"))
        return vg_err_set(VG_ENOTFOUND, "reference not found");
    ref_delete_args a = {tenant_id, id};
    return store__write(st, ref_delete_op, &a);
}

int store_reference_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                         store_reference **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " REF_COLS " FROM refs t WHERE t.deleted_ms IS NULL");
    if (opts && opts->profile_id)
        store__qb_text(&q, " AND t.profile_id = ?", opts->profile_id);
    return store__list(st, &q, "ref", tenant_id, opts, a, sizeof(store_reference),
                       offsetof(store_reference, id), read_ref, (void **)items, page);
}

/* The index's columns only: no texts, boxes or image-length subquery per row. */
/* What the match index is built from, and the id: no kind or SHA-256 (the index names
 * references by key and the analysis resolves the few it returns), fewer columns for SQLite to
 * decode on the walk that is most of a 10M-reference start. */
#define REF_INDEX_COLS                                                                             \
    "t.id, t.tenant_id, t.profile_id, t.pdq, t.pdq_quality, t.n_faces, t.descriptors, "            \
    "t.pdq_regions, t.ikey"

static int read_ref_index(sq_stmt *s, store_copy *c, void *item)
{
    store_reference *r = item;
    store__sc_id(s, 0, r->id);
    store__sc_id(s, 1, r->tenant_id);
    store__sc_id(s, 2, r->profile_id);
    r->has_pdq = store__sc_fixed(s, 3, r->pdq, 32);
    r->pdq_quality = r->has_pdq ? (int)store__sq_col_int64(s, 4) : 0;
    int64_t nf = store__sq_col_int64(s, 5);
    r->n_faces = nf > 0 && nf <= STORE_MAX_FACES_PER_REF ? (size_t)nf : 0;
    r->descriptors = r->n_faces ? sc_floats(c, s, 6, r->n_faces * VG_DESCRIPTOR_DIM) : NULL;
    if (!r->descriptors && r->n_faces) {
        VG_WARN("store", "reference %s: descriptor blob does not match n_faces; ignored", r->id);
        r->n_faces = 0;
    }
    read_pdq_regions(s, 7, r);
    r->key = store__sq_col_int64(s, 8);
    return 0;
}

#define REF_WALK_SQL(cols)                                                                         \
    "SELECT " cols " FROM refs t JOIN profiles p ON p.id = t.profile_id "                          \
    "WHERE t.deleted_ms IS NULL AND p.deleted_ms IS NULL AND (?1 IS NULL OR t.tenant_id = ?1) "    \
    "ORDER BY t.id"

/* One statement is one read transaction: the walk sees one snapshot. The arena is reset per row
 * (only face descriptors use it), so the walk's memory does not grow with the store. */
static int ref_walk(store *st, const char *tenant_id, const char *sql,
                    int (*read)(sq_stmt *s, store_copy *c, void *item),
                    int (*cb)(void *ctx, const store_reference *r), void *ctx)
{
    vg_arena *a = vg_arena_new(0);
    if (!a)
        return vg_err_set(VG_ENOMEM, "store: reference walk");
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db, sql, &s, "t", tenant_id);
    if (!err)
        store__sq_stream(s); /* every reference: one row in memory at a time */
    while (!err) {
        int rc = store__sq_step(s);
        if (rc <= 0) {
            err = rc;
            break;
        }
        vg_arena_reset(a);
        store_copy c = {a, 0};
        store_reference r;
        memset(&r, 0, sizeof r);
        read(s, &c, &r);
        if (c.oom) {
            err = vg_err_set(VG_ENOMEM, "store: reference walk");
            break;
        }
        err = cb(ctx, &r);
    }
    store__sq_release(s);
    store__reader_release(st, db);
    vg_arena_free(a);
    return err;
}

int store_reference_foreach(store *st, const char *tenant_id,
                            int (*cb)(void *ctx, const store_reference *r), void *ctx)
{
    return ref_walk(st, tenant_id, REF_WALK_SQL(REF_COLS), read_ref, cb, ctx);
}

int store_reference_foreach_index(store *st, const char *tenant_id,
                                  int (*cb)(void *ctx, const store_reference *r), void *ctx)
{
    /* No ORDER BY and no join. All tenants: one scan of the table in storage order, the live
     * profiles looked up in a list SQLite builds once, instead of a seek from the id index to
     * every row and to its profile (10M references in the sqlite3 shell: 2.8 instead of 5.0 s
     * of CPU; walking refs_live_sha256 instead took 3.4, and seeks rows at random, which a
     * bounded page cache pays for). One tenant: its index, as before. */
    return ref_walk(st, tenant_id,
                    tenant_id ? "SELECT " REF_INDEX_COLS " FROM refs t WHERE t.deleted_ms IS NULL "
                                "AND t.tenant_id = ?1 AND t.profile_id IN "
                                "(SELECT id FROM profiles WHERE deleted_ms IS NULL)"
                    /* NOT INDEXED is SQLite's; PostgreSQL's planner picks the scan itself. */
                    : store__is_pg_url(st->cfg.path)
                        ? "SELECT " REF_INDEX_COLS " FROM refs t WHERE "
                          "t.deleted_ms IS NULL AND CAST(?1 AS TEXT) IS NULL AND t.profile_id IN "
                          "(SELECT id FROM profiles WHERE deleted_ms IS NULL)"
                        /* SQLite, all tenants: no profile check. A profile's delete has
                         * soft-deleted its references in the same transaction since the first
                         * schema, so a live reference has a live profile (test_store's walk
                         * test deletes a profile); the IN list's lookup and compare of every
                         * row's profile id was ~20% of this walk at 10M references. */
                        : "SELECT " REF_INDEX_COLS " FROM refs t NOT INDEXED WHERE "
                          "t.deleted_ms IS NULL AND ?1 IS NULL",
                    read_ref_index, cb, ctx);
}

int store_reference_video_foreach(store *st, const char *tenant_id, store_video_fn cb, void *ctx)
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db,
                           /* From the videos (few) to their references: joined the other
                            * way, SQLite scanned every reference in id order to avoid a sort
                            * and probed ref_videos for each (3.1 s at 10M references, part of
                            * every start); CROSS JOIN fixes SQLite's order, PostgreSQL's
                            * planner still chooses its own. */
                           "SELECT t.tenant_id, t.profile_id, t.id, v.frames FROM ref_videos v "
                           "CROSS JOIN refs t CROSS JOIN profiles p "
                           "WHERE t.id = v.ref_id AND p.id = t.profile_id "
                           "AND t.deleted_ms IS NULL AND p.deleted_ms IS NULL "
                           "AND (?1 IS NULL OR t.tenant_id = ?1) ORDER BY t.id",
                           &s, "t", tenant_id);
    if (!err)
        store__sq_stream(s);
    while (!err) {
        int rc = store__sq_step(s);
        if (rc <= 0) {
            err = rc;
            break;
        }
        char tenant[STORE_ID_MAX], prof[STORE_ID_MAX], ref[STORE_ID_MAX];
        store__sc_id(s, 0, tenant);
        store__sc_id(s, 1, prof);
        store__sc_id(s, 2, ref);
        size_t len = 0;
        const uint8_t *frames = store__sq_col_blob(s, 3, &len);
        err = cb(ctx, tenant, prof, ref, frames, len);
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

int store_reference_count(store *st, const char *tenant_id, size_t *out_n)
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db,
                           "SELECT count(*) FROM refs t JOIN profiles p ON p.id = t.profile_id "
                           "WHERE t.deleted_ms IS NULL AND p.deleted_ms IS NULL AND "
                           "(?1 IS NULL OR t.tenant_id = ?1)",
                           &s, "t", tenant_id);
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            *out_n = (size_t)store__sq_col_int64(s, 0);
            err = 0;
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ESTORE, "count returned no row");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

/* ---- reference keys ------------------------------------------------------------------------- */

int store_reference_key_get(store *st, const char *tenant_id, const char *id, int64_t *out_key)
{
    if (!st || !out_key)
        return vg_err_set(VG_EINVAL, "store_reference_key_get: NULL argument");
    if (!store__id_valid(id, "ref"))
        return vg_err_set(VG_ENOTFOUND, "reference not found");
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__query(db,
                           "SELECT ikey FROM refs WHERE id = ?1 AND deleted_ms IS NULL AND "
                           "(?2 IS NULL OR tenant_id = ?2)",
                           &s, "tt", id, tenant_id);
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            *out_key = store__sq_col_int64(s, 0);
            err = 0;
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ENOTFOUND, "reference not found");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

/* Bytes of one key in the list parameter: a sign, 19 digits and a comma. */
#define RESOLVE_KEY_TEXT_BYTES 21

/* Writes v in decimal at p; returns the byte after it (snprintf costs ~10x more, and a resolve
 * of 1000 keys writes 1000 of them). */
static char *put_int64(char *p, int64_t v)
{
    char tmp[20];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* keys[i] with its position i, sorted by key, to place the rows (which come in any order). */
typedef struct resolve_slot {
    int64_t key;
    size_t i;
} resolve_slot;

static int resolve_slot_cmp(const void *a, const void *b)
{
    const resolve_slot *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

int store_reference_resolve(store *st, const char *tenant_id, const int64_t *keys, size_t n,
                            store_ref_brief *out)
{
    if (!st || !store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_EINVAL, "store_reference_resolve: a valid tenant id is required");
    if (n > STORE_RESOLVE_MAX)
        return vg_err_set(VG_EINVAL, "%zu reference keys, at most %d per call", n,
                          STORE_RESOLVE_MAX);
    if (n == 0)
        return 0;
    if (!keys || !out)
        return vg_err_set(VG_EINVAL, "store_reference_resolve: NULL argument");

    /* The keys as one parameter: "[k,k,...]" for SQLite's json_each, "{k,k,...}" for a
     * PostgreSQL BIGINT[]. One statement text whatever n is: prepared once per connection, and
     * no per-key round trip. */
    char *list = vg_malloc(n * RESOLVE_KEY_TEXT_BYTES + 3);
    resolve_slot *slots = vg_malloc(n * sizeof *slots);
    if (!list || !slots) {
        vg_free(list);
        vg_free(slots);
        return vg_err_set(VG_ENOMEM, "store: resolve");
    }
    sq_db *db = store__reader_acquire(st);
    int pg = store__sq_kind(db) == SQ_PG;
    char *p = list;
    *p++ = pg ? '{' : '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        p = put_int64(p, keys[i]);
        slots[i] = (resolve_slot){keys[i], i};
        memset(&out[i], 0, sizeof out[i]);
        out[i].key = keys[i];
    }
    *p++ = pg ? '}' : ']';
    *p = '\0';
    qsort(slots, n, sizeof *slots, resolve_slot_cmp);

    /* SQLite: "+t.tenant_id" keeps the planner off refs_tenant (a scan of the tenant's
     * references): the keys are looked up in refs_ikey, one seek each. */
    sq_stmt *s = NULL;
    int err = store__query(db,
                           pg ? "SELECT t.ikey, t.id, t.profile_id, t.sha256 FROM refs t "
                                "WHERE t.ikey = ANY(CAST(?1 AS BIGINT[])) AND t.tenant_id = ?2 "
                                "AND t.deleted_ms IS NULL"
                              : "SELECT t.ikey, t.id, t.profile_id, t.sha256 FROM refs t "
                                "WHERE t.ikey IN (SELECT value FROM json_each(?1)) AND "
                                "+t.tenant_id = ?2 AND t.deleted_ms IS NULL",
                           &s, "tt", list, tenant_id);
    while (!err && (err = store__sq_step(s)) == SQ_ROW) {
        err = 0;
        int64_t key = store__sq_col_int64(s, 0);
        size_t lo = 0, hi = n; /* the first slot with this key */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (slots[mid].key < key)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n && slots[lo].key == key; lo++) {
            store_ref_brief *b = &out[slots[lo].i];
            b->found = 1;
            store__sc_id(s, 1, b->id);
            store__sc_id(s, 2, b->profile_id);
            store__sc_fixed(s, 3, b->sha256, sizeof b->sha256);
        }
    }
    if (err == SQ_DONE)
        err = 0;
    store__sq_release(s);
    store__reader_release(st, db);
    vg_free(list);
    vg_free(slots);
    return err;
}
