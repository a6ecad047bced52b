/* Tenant routes for profiles and their references. A reference upload computes the image's
 * features through the analysis pipeline and registers them through the catalog (stored and
 * indexed) before answering, so the next analysis already matches against it; deletes go
 * through the catalog too and leave the index and the feature cache before answering. */
#include "server/server_int.h"

#include <string.h>

#include "analyze/analyze.h"

/* ---- profiles -------------------------------------------------------------------------------- */

static json_t *profile_json(const store_profile *p)
{
    const store_profile_fields *f = &p->f;
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", p->id, "name", f->name,
                     "legal_name", server__str(f->legal_name), "email", server__str(f->email),
                     "address", server__str(f->address), "phone", server__str(f->phone), "notes",
                     server__str(f->notes), "created_at", server__time(p->created_ms), "updated_at",
                     server__time(p->updated_ms));
}

/* An optional field: on update (`clearable`) "" is kept as "" (the store clears the field, as
 * docs/API.md promises: personal data must be erasable without deleting the profile); otherwise
 * the usual string rules (non-empty, bounded, no NUL). */
static int optional_field(const json_t *b, const char *key, int clearable, size_t max_len,
                          const char **out)
{
    const json_t *v = json_object_get(b, key);
    if (clearable && json_is_string(v) && json_string_length(v) == 0) {
        *out = "";
        return VG_OK;
    }
    return http_json_string(b, key, 0, max_len, out);
}

/* Reads profile fields from a JSON body; `create`: name required, no field may be "";
 * otherwise (PATCH) "" clears an optional field and name cannot be cleared. */
static int profile_fields(const json_t *b, int create, store_profile_fields *f)
{
    static const char *const allowed[] = {"name",  "legal_name", "email", "address",
                                          "phone", "notes",      NULL};
    int clr = !create;
    memset(f, 0, sizeof(*f));
    int rc = http_json_only(b, allowed);
    if (rc == VG_OK)
        rc = http_json_string(b, "name", create, STORE_NAME_MAX_BYTES - 1, &f->name);
    if (rc == VG_OK)
        rc = optional_field(b, "legal_name", clr, STORE_NAME_MAX_BYTES - 1, &f->legal_name);
    if (rc == VG_OK)
        rc = optional_field(b, "email", clr, STORE_NAME_MAX_BYTES - 1, &f->email);
    if (rc == VG_OK)
        rc = optional_field(b, "address", clr, STORE_TEXT_MAX_BYTES - 1, &f->address);
    if (rc == VG_OK)
        rc = optional_field(b, "phone", clr, STORE_NAME_MAX_BYTES - 1, &f->phone);
    if (rc == VG_OK)
        rc = optional_field(b, "notes", clr, STORE_TEXT_MAX_BYTES - 1, &f->notes);
    return rc;
}

static void reply_profile(http_req *req, server *s, const char *id, int status)
{
    store_profile p;
    int rc = store_profile_get(s->st, server__tenant(req), id, http_req_arena(req), &p);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such profile");
        return;
    }
    http_reply_json(req, status, profile_json(&p));
}

void server__api_profile_create(http_req *req, void *ud)
{
    server *s = ud;
    json_t *b;
    if (server__body_json(req, &b))
        return;
    store_profile_fields f;
    char id[STORE_ID_MAX];
    int rc = profile_fields(b, 1, &f);
    if (rc == VG_OK)
        rc = store_profile_create(s->st, server__tenant(req), &f, id);
    json_decref(b);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot create the profile");
        return;
    }
    reply_profile(req, s, id, 201);
}

void server__api_profile_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    store_profile *items;
    store_page page;
    int rc = store_profile_list(s->st, server__tenant(req), &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list profiles");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, profile_json(&items[i]));
    server__reply_page(req, arr, &page);
}

void server__api_profile_get(http_req *req, void *ud)
{
    reply_profile(req, ud, http_req_param(req, "profile_id"), 200);
}

void server__api_profile_update(http_req *req, void *ud)
{
    server *s = ud;
    json_t *b;
    if (server__body_json(req, &b))
        return;
    store_profile_fields f;
    const char *id = http_req_param(req, "profile_id");
    int rc = profile_fields(b, 0, &f);
    if (rc == VG_OK)
        rc = store_profile_update(s->st, server__tenant(req), id, &f);
    json_decref(b);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot update the profile");
        return;
    }
    reply_profile(req, s, id, 200);
}

void server__api_profile_delete(http_req *req, void *ud)
{
    server *s = ud;
    const char *id = http_req_param(req, "profile_id");
    size_t n = 0;
    /* Out of the store, out of matching and out of the feature cache before the answer. */
    int rc = catalog_profile_remove(s->cat, server__tenant(req), id, &n);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such profile");
        return;
    }
    http_reply_json(
        req, 200,
        json_pack("{s:s,s:b,s:I}", "id", id, "deleted", 1, "references_deleted", (json_int_t)n));
}

/* ---- references ------------------------------------------------------------------------------ */

json_t *server__reference_json(const store_reference *r)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:b,s:o}", "id", r->id,
                          "profile_id", r->profile_id, "kind", store_ref_kind_name(r->kind),
                          "title", server__str(r->title), "description",
                          server__str(r->description), "original_url", server__str(r->original_url),
                          "copyright_holder", server__str(r->copyright_holder), "sha256",
                          server__hex(r->sha256, 32), "faces", (json_int_t)r->n_faces,
                          "image_stored", r->has_image, "created_at", server__time(r->created_ms));
    json_object_set_new(o, "pdq",
                        r->has_pdq ? json_pack("{s:o,s:i}", "hash", server__pdq_hex(r->pdq),
                                               "quality", r->pdq_quality)
                                   : json_null());
    if (r->is_video) /* a video work (schema 5): new fields only */
        json_object_set_new(o, "media", json_string("video"));
    if (r->is_video)
        json_object_set_new(o, "video",
                            json_pack("{s:I,s:f}", "frames", (json_int_t)r->video_n_frames,
                                      "duration_s", r->video_duration_s));
    return o;
}

void server__api_reference_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    const char *pid = http_req_param(req, "profile_id");
    store_profile p; /* 404 for an unknown (or another tenant's) profile, not an empty list */
    int rc = store_profile_get(s->st, server__tenant(req), pid, http_req_arena(req), &p);
    store_reference *items = NULL;
    store_page page;
    o.profile_id = pid;
    if (rc == VG_OK)
        rc = store_reference_list(s->st, server__tenant(req), &o, http_req_arena(req), &items,
                                  &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such profile");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, server__reference_json(&items[i]));
    server__reply_page(req, arr, &page);
}

void server__api_reference_get(http_req *req, void *ud)
{
    server *s = ud;
    store_reference r;
    int rc = store_reference_get(s->st, server__tenant(req), http_req_param(req, "reference_id"),
                                 http_req_arena(req), &r);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such reference");
        return;
    }
    http_reply_json(req, 200, server__reference_json(&r));
}

void server__api_reference_image(http_req *req, void *ud)
{
    server *s = ud;
    const uint8_t *bytes;
    size_t len;
    int rc =
        store_reference_image_get(s->st, server__tenant(req), http_req_param(req, "reference_id"),
                                  http_req_arena(req), &bytes, &len);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no stored image for this reference");
        return;
    }
    const char *ct = "application/octet-stream";
    if (len >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8)
        ct = "image/jpeg";
    else if (len >= 8 && memcmp(bytes, "\x89PNG", 4) == 0)
        ct = "image/png";
    else if (len >= 12 && memcmp(bytes, "RIFF", 4) == 0 && memcmp(bytes + 8, "WEBP", 4) == 0)
        ct = "image/webp";
    http_reply_data(req, 200, ct, bytes, len);
}

void server__api_reference_delete(http_req *req, void *ud)
{
    server *s = ud;
    const char *id = http_req_param(req, "reference_id");
    /* Out of the store, out of matching and out of the feature cache before the answer. */
    int rc = catalog_reference_remove(s->cat, server__tenant(req), id);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such reference");
        return;
    }
    http_reply_json(req, 200, json_pack("{s:s,s:b}", "id", id, "deleted", 1));
}

/* A reference upload in flight: features are computed on the analysis threads; the completion
 * registers it through the catalog (stored and indexed) and answers. Lives in the request arena,
 * which the handler no longer touches once it has submitted (see api_evidence.c). */
typedef struct ref_job {
    server *s;
    http_req *req;
    char tenant[STORE_ID_MAX];
    catalog_reference_new nr;
    analyze_request ar;
    analyze_result res;
} ref_job;

static void ref_store(ref_job *j)
{
    http_req *req = j->req;
    server *s = j->s;
    j->nr.features = &j->res.features;
    if (s->cfg->store_images) {
        j->nr.image = j->ar.bytes;
        j->nr.image_len = j->ar.len;
    }
    store_reference r;
    vg_err_clear();
    /* Indexed before the answer, so the next analysis already matches against it. */
    int rc = catalog_reference_add(s->cat, j->tenant, &j->nr, http_req_arena(req), &r);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot store the reference");
        return;
    }
    http_reply_json(req, 201, server__reference_json(&r));
}

static void ref_done(void *arg, int status, const char *detail)
{
    ref_job *j = arg;
    server__ops_analysis(j->s, status, status == VG_OK ? &j->res.timings : NULL);
    if (status == VG_OK) {
        server__metrics_analysis(j->s, j->ar.level, &j->res, 0, 0);
        ref_store(j);
        analyze_result_free(&j->res);
    } else {
        server__reply_detail(j->req, status, detail);
    }
    http_req_resume(j->req);
}

void server__api_reference_create(http_req *req, void *ud)
{
    server *s = ud;
    if (!s->an) {
        server__unavailable(req, "analyze");
        return;
    }
    const char *pid = http_req_param(req, "profile_id");
    if (server__video_reference(s, req, pid) != 0) /* a video work */
        return;
    srv_input in;
    if (server__input_parse(req, 1, &in))
        return;
    store_profile p;
    int rc = store_profile_get(s->st, server__tenant(req), pid, http_req_arena(req), &p);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such profile");
        return;
    }
    ref_job *j = vg_arena_alloc(http_req_arena(req), sizeof(*j));
    if (!j) {
        http_reply_error(req, 503, NULL, "out of memory");
        return;
    }
    memset(j, 0, sizeof(*j));
    j->s = s;
    j->req = req;
    snprintf(j->tenant, sizeof(j->tenant), "%s", server__tenant(req));
    catalog_reference_new *nr = &j->nr;
    nr->profile_id = pid;
    const char *kind = server__input_field(&in, "kind");
    if (!kind || store_ref_kind_parse(kind, &nr->kind) != VG_OK) {
        http_reply_error(req, 422, "invalid_field", "field 'kind' must be 'work' or 'likeness'");
        return;
    }
    nr->title = server__input_field(&in, "title");
    nr->description = server__input_field(&in, "description");
    nr->original_url = server__input_field(&in, "original_url");
    nr->copyright_holder = server__input_field(&in, "copyright_holder");
    if (nr->kind == STORE_REF_LIKENESS &&
        (nr->title || nr->description || nr->original_url || nr->copyright_holder)) {
        http_reply_error(req, 422, "invalid_field",
                         "title, description, original_url and copyright_holder describe a "
                         "work, not a likeness");
        return;
    }
    j->ar.bytes = in.images[0].data;
    j->ar.len = in.images[0].len;
    j->ar.tenant_id = j->tenant;
    j->ar.level = (vg_level)s->cfg->default_level;
    j->ar.deadline_ns = http_req_start_ns(req) + s->cfg->request_deadline_ms * 1000000ull;
    http_req_defer(req);
    rc = analyze_submit(s->an, &j->ar, 1, &j->res, ref_done, j);
    if (rc != VG_OK) {
        server__ops_analysis(s, rc, NULL);
        server__reply_err(req, rc,
                          rc == VG_EBUSY ? "the analysis queue is full" : "cannot analyse");
        http_req_resume(req);
    }
}
