/*
 * store_tenants: tenants, tenant API keys and the admin key.
 *
 * Keys are looked up by the SHA-256 of the secret (unique index), then compared again with
 * vg_ct_equal so the decision itself never depends on a data-dependent comparison. last_used is
 * refreshed at most every STORE_KEY_TOUCH_INTERVAL_MS so that authenticating stays a read.
 */
#include <string.h>

#include "store/store_int.h"

#define TENANT_COLS "t.id, t.name, t.kind, t.created_ms"
#define KEY_COLS "t.id, t.tenant_id, t.role, t.name, t.created_ms, t.revoked_ms, t.last_used_ms"

/* ---- tenants -------------------------------------------------------------------------------- */

typedef struct tenant_create_args {
    const char *name;
    store_tenant_kind kind;
    char *out_id;
} tenant_create_args;

static int tenant_create_op(store *st, sq_db *w, void *arg)
{
    tenant_create_args *a = arg;
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "tnt", id, &ms);
    int err = store__run(w, "INSERT INTO tenants(id, name, kind, created_ms) VALUES(?, ?, ?, ?)",
                         "ttti", id, a->name, store_tenant_kind_name(a->kind), ms);
    if (!err)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

int store_tenant_create(store *st, const char *name, store_tenant_kind kind,
                        char out_id[STORE_ID_MAX])
{
    int err = store__check_str("name", name, STORE_NAME_MAX_BYTES, 1);
    if (err)
        return err;
    if (kind != STORE_TENANT_AGENCY && kind != STORE_TENANT_CREATOR)
        return vg_err_set(VG_EINVAL, "kind must be agency or creator");
    tenant_create_args a = {name, kind, out_id};
    return store__write(st, tenant_create_op, &a);
}

static int read_tenant(sq_stmt *s, store_copy *c, void *item)
{
    store_tenant *t = item;
    store__sc_id(s, 0, t->id);
    t->name = store__sc_text(c, s, 1);
    const char *k = store__sq_col_text(s, 2);
    t->kind = k && strcmp(k, "creator") == 0 ? STORE_TENANT_CREATOR : STORE_TENANT_AGENCY;
    t->created_ms = store__sq_col_int64(s, 3);
    return 0;
}

int store_tenant_get(store *st, const char *id, vg_arena *a, store_tenant *out)
{
    if (!store__id_valid(id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    store_tenant t;
    int err = store__get_one(st, a, read_tenant, &t, sizeof t, "tenant",
                             "SELECT " TENANT_COLS " FROM tenants t WHERE t.id = ?", "t", id);
    if (!err)
        *out = t;
    return err;
}

int store_tenant_list(store *st, const store_list_opts *opts, vg_arena *a, store_tenant **items,
                      store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " TENANT_COLS " FROM tenants t WHERE 1 = 1");
    return store__list(st, &q, "tnt", NULL, opts, a, sizeof(store_tenant),
                       offsetof(store_tenant, id), read_tenant, (void **)items, page);
}

/* ---- keys ----------------------------------------------------------------------------------- */

static int read_key(sq_stmt *s, store_copy *c, void *item)
{
    store_key *k = item;
    store__sc_id(s, 0, k->id);
    store__sc_id(s, 1, k->tenant_id);
    const char *role = store__sq_col_text(s, 2);
    k->role = role && strcmp(role, "admin") == 0 ? STORE_ROLE_ADMIN : STORE_ROLE_TENANT;
    k->name = store__sc_text(c, s, 3);
    k->created_ms = store__sq_col_int64(s, 4);
    k->revoked_ms = store__sq_col_int64(s, 5);
    k->last_used_ms = store__sq_col_int64(s, 6);
    return 0;
}

typedef struct key_create_args {
    const char *tenant_id, *name;
    const uint8_t *hash;
    store_role role;
    char *out_id;
} key_create_args;

static int insert_key(store *st, sq_db *w, const key_create_args *a)
{
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "key", id, &ms);
    int err = store__run(w,
                         "INSERT INTO api_keys(id, tenant_id, role, name, key_hash, created_ms) "
                         "VALUES(?, ?, ?, ?, ?, ?)",
                         "ttttbi", id, a->tenant_id, store_role_name(a->role), a->name,
                         (const void *)a->hash, (size_t)VG_SHA256_BYTES, ms);
    if (err == VG_EEXIST)
        err = vg_err_set(VG_EEXIST, "a key with this hash already exists");
    if (!err && a->out_id)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

static int key_create_op(store *st, sq_db *w, void *arg)
{
    key_create_args *a = arg;
    /* The foreign key would refuse an unknown tenant too; asking first gives a clear detail. */
    char found[STORE_ID_MAX];
    int err = store__read_one(w, NULL, store__read_id, found, "tenant",
                              "SELECT id FROM tenants WHERE id = ?", "t", a->tenant_id);
    return err ? err : insert_key(st, w, a);
}

int store_key_create(store *st, const char *tenant_id, const char *name,
                     const uint8_t hash[VG_SHA256_BYTES], char out_id[STORE_ID_MAX])
{
    if (!store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    int err = store__check_str("name", name, STORE_NAME_MAX_BYTES, 1);
    if (err)
        return err;
    if (!hash)
        return vg_err_set(VG_EINVAL, "key hash is required");
    key_create_args a = {tenant_id, name, hash, STORE_ROLE_TENANT, out_id};
    return store__write(st, key_create_op, &a);
}

typedef struct key_revoke_args {
    const char *tenant_id, *key_id;
} key_revoke_args;

static int key_revoke_op(store *st, sq_db *w, void *arg)
{
    key_revoke_args *a = arg;
    sq_stmt *s = NULL;
    int err = store__query(w, "SELECT tenant_id, role, revoked_ms FROM api_keys WHERE id = ?", &s,
                           "t", a->key_id);
    if (err)
        return err;
    int found = 0, revoked = 0;
    char owner[STORE_ID_MAX] = "";
    err = store__sq_step(s);
    if (err == SQ_ROW) {
        const char *tenant = store__sq_col_text(s, 0);
        store__sc_id(s, 0, owner);
        const char *role = store__sq_col_text(s, 1);
        found = role && strcmp(role, "tenant") == 0 && store__scope_ok(a->tenant_id, tenant);
        revoked = !store__sq_col_is_null(s, 2);
        err = 0;
    } else if (err == SQ_DONE) {
        err = 0;
    }
    store__sq_release(s);
    if (err)
        return err;
    if (!found)
        return vg_err_set(VG_ENOTFOUND, "key not found");
    if (revoked)
        return 0;
    err = store__run(w, "UPDATE api_keys SET revoked_ms = ? WHERE id = ?", "it", vg_wall_ms(),
                     a->key_id);
    /* Every node forgets the tenant's cached keys when it applies this row. */
    if (!err)
        err = store__change_append(st, w, owner, STORE_CHANGE_KEY, a->key_id, 0, 1, NULL);
    return err;
}

int store_key_revoke(store *st, const char *tenant_id, const char *key_id)
{
    if (!store__id_valid(key_id, "key"))
        return vg_err_set(VG_ENOTFOUND, "key not found");
    key_revoke_args a = {tenant_id, key_id};
    return store__write(st, key_revoke_op, &a);
}

int store_key_list(store *st, const char *tenant_id, const store_list_opts *opts, vg_arena *a,
                   store_key **items, store_page *page)
{
    qb q;
    store__qb_init(&q, "SELECT " KEY_COLS " FROM api_keys t WHERE t.role = 'tenant'");
    return store__list(st, &q, "key", tenant_id, opts, a, sizeof(store_key),
                       offsetof(store_key, id), read_key, (void **)items, page);
}

typedef struct key_touch_args {
    const char *id;
    int64_t now;
} key_touch_args;

static int key_touch_op(store *st, sq_db *w, void *arg)
{
    key_touch_args *a = arg;
    return store__run(w,
                      "UPDATE api_keys SET last_used_ms = ?1 WHERE id = ?2 AND "
                      "(last_used_ms IS NULL OR last_used_ms < ?1)",
                      "it", a->now, a->id);
}

int store_key_authenticate(store *st, const uint8_t hash[VG_SHA256_BYTES], vg_arena *a,
                           store_key *out)
{
    if (!hash)
        return vg_err_set(VG_EPERM, "no key");
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    store_key k;
    memset(&k, 0, sizeof k);
    int err = store__query(db,
                           "SELECT " KEY_COLS ", t.key_hash FROM api_keys t "
                           "WHERE t.key_hash = ? AND t.revoked_ms IS NULL",
                           &s, "b", (const void *)hash, (size_t)VG_SHA256_BYTES);
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            uint8_t stored[VG_SHA256_BYTES];
            store_copy c = {a, 0};
            read_key(s, &c, &k);
            if (c.oom)
                err = vg_err_set(VG_ENOMEM, "store: key");
            else if (!store__sc_fixed(s, 7, stored, sizeof stored) ||
                     !vg_ct_equal(stored, hash, sizeof stored))
                err = vg_err_set(VG_EPERM, "unknown or revoked key");
            else
                err = 0;
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_EPERM, "unknown or revoked key");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    if (err)
        return err;
    int64_t now = vg_wall_ms();
    if (now - k.last_used_ms >= STORE_KEY_TOUCH_INTERVAL_MS) {
        key_touch_args t = {k.id, now};
        /* Bookkeeping only: a failure here must not fail the request it authenticates. */
        if (store__write(st, key_touch_op, &t) == 0)
            k.last_used_ms = now;
        else
            VG_WARN_LIMITED("store", "cannot record key use: %s", vg_err_msg());
    }
    *out = k;
    return 0;
}

int store_admin_key_exists(store *st, int *out_exists)
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__sq_prepare(
        db, "SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_ms IS NULL LIMIT 1", &s);
    if (!err) {
        err = store__sq_step(s);
        if (err >= 0) {
            *out_exists = err == SQ_ROW;
            err = 0;
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

int store_admin_key_hash(store *st, uint8_t out[VG_SHA256_BYTES])
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__sq_prepare(db,
                                "SELECT key_hash FROM api_keys WHERE role = 'admin' AND revoked_ms "
                                "IS NULL ORDER BY created_ms DESC LIMIT 1",
                                &s);
    if (!err) {
        err = store__sq_step(s);
        if (err == SQ_ROW) {
            size_t n = 0;
            const void *h = store__sq_col_blob(s, 0, &n);
            err = h && n == VG_SHA256_BYTES ? 0 : vg_err_set(VG_ECORRUPT, "admin key hash size");
            if (!err)
                memcpy(out, h, VG_SHA256_BYTES);
        } else if (err == SQ_DONE) {
            err = vg_err_set(VG_ENOTFOUND, "no live admin key");
        }
    }
    store__sq_release(s);
    store__reader_release(st, db);
    return err;
}

static int admin_key_set_op(store *st, sq_db *w, void *arg)
{
    key_create_args *a = arg;
    int64_t now = vg_wall_ms();
    sq_stmt *s = NULL;
    int err = store__query(w, "SELECT id, role, revoked_ms FROM api_keys WHERE key_hash = ?", &s,
                           "b", (const void *)a->hash, (size_t)VG_SHA256_BYTES);
    if (err)
        return err;
    char existing[STORE_ID_MAX] = "";
    int is_admin = 0, revoked = 0;
    err = store__sq_step(s);
    if (err == SQ_ROW) {
        store__sc_id(s, 0, existing);
        const char *role = store__sq_col_text(s, 1);
        is_admin = role && strcmp(role, "admin") == 0;
        revoked = !store__sq_col_is_null(s, 2);
        err = 0;
    } else if (err == SQ_DONE) {
        err = 0;
    }
    store__sq_release(s);
    if (err)
        return err;
    if (existing[0] && !is_admin)
        return vg_err_set(VG_EEXIST, "the admin key must differ from every tenant key");

    /* Revoke every other live admin key; other nodes learn it from the change log (their key
     * caches hold the admin hash they started with). */
    err = store__run(w,
                     "UPDATE api_keys SET revoked_ms = ? WHERE role = 'admin' AND "
                     "revoked_ms IS NULL AND id != ?",
                     "it", now, existing);
    if (!err && store__sq_changes(w) > 0)
        err = store__change_append(st, w, "", STORE_CHANGE_KEY, "admin", 0, 1, NULL);
    if (err)
        return err;

    if (existing[0]) {
        if (revoked) { /* an operator went back to an earlier admin key */
            err =
                store__run(w, "UPDATE api_keys SET revoked_ms = NULL WHERE id = ?", "t", existing);
            if (err)
                return err;
        }
        if (a->out_id)
            memcpy(a->out_id, existing, STORE_ID_MAX);
        return 0;
    }
    return insert_key(st, w, a);
}

int store_admin_key_set(store *st, const uint8_t hash[VG_SHA256_BYTES], char out_id[STORE_ID_MAX])
{
    if (!hash)
        return vg_err_set(VG_EINVAL, "key hash is required");
    key_create_args a = {NULL, "admin", hash, STORE_ROLE_ADMIN, out_id};
    return store__write(st, admin_key_set_op, &a);
}
