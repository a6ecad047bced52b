/* Admin routes: tenants and their API keys. A key's secret is generated here, returned once in
 * the creation response and stored only as its SHA-256. */
#include "server/server_int.h"

#include <string.h>

static json_t *tenant_json(const store_tenant *t)
{
    return json_pack("{s:s,s:s,s:s,s:o}", "id", t->id, "name", t->name, "kind",
                     store_tenant_kind_name(t->kind), "created_at", server__time(t->created_ms));
}

static json_t *key_json(const store_key *k)
{
    return json_pack("{s:s,s:s,s:s,s:s?,s:o,s:o,s:o}", "id", k->id, "tenant_id", k->tenant_id,
                     "role", store_role_name(k->role), "name", k->name, "created_at",
                     server__time(k->created_ms), "revoked_at", server__time(k->revoked_ms),
                     "last_used_at", server__time(k->last_used_ms));
}

void server__api_tenant_create(http_req *req, void *ud)
{
    server *s = ud;
    json_t *b;
    if (server__body_json(req, &b))
        return;
    static const char *const allowed[] = {"name", "kind", NULL};
    const char *name = NULL, *kind = "agency";
    store_tenant_kind k;
    int rc = http_json_only(b, allowed);
    if (rc == VG_OK)
        rc = http_json_string(b, "name", 1, STORE_NAME_MAX_BYTES - 1, &name);
    if (rc == VG_OK)
        rc = http_json_string(b, "kind", 0, 32, &kind);
    if (rc == VG_OK && store_tenant_kind_parse(kind, &k) != VG_OK)
        rc = vg_err_set(VG_EINVAL, "field 'kind' must be 'agency' or 'creator'");
    char id[STORE_ID_MAX];
    if (rc == VG_OK)
        rc = store_tenant_create(s->st, name, k, id);
    if (rc != VG_OK) {
        json_decref(b);
        server__reply_err(req, rc, "cannot create the tenant");
        return;
    }
    json_decref(b);
    store_tenant t;
    rc = store_tenant_get(s->st, id, http_req_arena(req), &t);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "tenant created but not readable");
        return;
    }
    http_reply_json(req, 201, tenant_json(&t));
}

void server__api_tenant_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    store_tenant *items;
    store_page page;
    int rc = store_tenant_list(s->st, &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list tenants");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, tenant_json(&items[i]));
    server__reply_page(req, arr, &page);
}

void server__api_tenant_get(http_req *req, void *ud)
{
    server *s = ud;
    store_tenant t;
    int rc = store_tenant_get(s->st, http_req_param(req, "tenant_id"), http_req_arena(req), &t);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such tenant");
        return;
    }
    http_reply_json(req, 200, tenant_json(&t));
}

void server__api_key_create(http_req *req, void *ud)
{
    server *s = ud;
    const char *tenant = http_req_param(req, "tenant_id");
    json_t *b = NULL;
    const char *name = "default";
    size_t len;
    http_req_body(req, &len);
    if (len > 0) { /* the body is optional: {"name": "..."} */
        if (server__body_json(req, &b))
            return;
        static const char *const allowed[] = {"name", NULL};
        int rc = http_json_only(b, allowed);
        if (rc == VG_OK)
            rc = http_json_string(b, "name", 0, STORE_NAME_MAX_BYTES - 1, &name);
        if (rc != VG_OK) {
            json_decref(b);
            server__reply_err(req, rc, "bad key fields");
            return;
        }
    }
    uint8_t raw[SERVER_KEY_RANDOM_BYTES], h[VG_SHA256_BYTES];
    char secret[sizeof(SERVER_KEY_PREFIX) + 2 * SERVER_KEY_RANDOM_BYTES];
    int rc = vg_random_bytes(raw, sizeof(raw));
    if (rc == VG_OK) {
        memcpy(secret, SERVER_KEY_PREFIX, sizeof(SERVER_KEY_PREFIX) - 1);
        vg_hex_encode(raw, sizeof(raw), secret + sizeof(SERVER_KEY_PREFIX) - 1);
        rc = vg_sha256(secret, strlen(secret), h);
    }
    char id[STORE_ID_MAX];
    if (rc == VG_OK)
        rc = store_key_create(s->st, tenant, name, h, id);
    if (rc != VG_OK) {
        json_decref(b);
        server__reply_err(req, rc, "cannot create the key");
        return;
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "tenant_id", tenant, "role", "tenant",
                          "name", name, "key", secret);
    json_decref(b); /* name may point into b: packed (copied) above first */
    http_reply_json(req, 201, o);
}

void server__api_key_list(http_req *req, void *ud)
{
    server *s = ud;
    const char *tenant = http_req_param(req, "tenant_id");
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    store_tenant t;
    int rc = store_tenant_get(s->st, tenant, http_req_arena(req), &t);
    store_key *items = NULL;
    store_page page;
    if (rc == VG_OK)
        rc = store_key_list(s->st, tenant, &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list keys");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, key_json(&items[i]));
    server__reply_page(req, arr, &page);
}

void server__api_key_revoke(http_req *req, void *ud)
{
    server *s = ud;
    const char *tenant = http_req_param(req, "tenant_id");
    const char *key_id = http_req_param(req, "key_id");
    int rc = store_key_revoke(s->st, tenant, key_id);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such key");
        return;
    }
    /* The cache holds hashes, not key ids: forget the tenant's entries so the revoked key
     * misses and is looked up (and refused) by the store; its live keys refill on next use. */
    http_keycache_forget_tenant(s->kc, tenant);
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:b}", "id", key_id, "tenant_id", tenant, "revoked", 1));
}
