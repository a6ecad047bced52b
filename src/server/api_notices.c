/* Tenant routes for DMCA notices: drafting from a match (dmca module), reading as JSON, text or
 * HTML, status transitions (409 on an illegal one, checked atomically by the store against the
 * dmca rule table), and the append-only event history. */
#include "server/server_int.h"

#include <string.h>

#include "dmca/dmca.h"

static json_t *party_json(const store_party *p)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "name", server__str(p->name), "email",
                     server__str(p->email), "address", server__str(p->address), "phone",
                     server__str(p->phone));
}

static json_t *event_json(const store_notice_event *e)
{
    return json_pack("{s:o,s:s,s:o,s:o}", "from",
                     e->has_from ? json_string(store_notice_status_name(e->from)) : json_null(),
                     "to", store_notice_status_name(e->to), "note", server__str(e->note), "at",
                     server__time(e->at_ms));
}

static json_t *notice_json(const store_notice *n)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "id", n->id, "match_id",
                          n->match_id, "profile_id", n->profile_id, "reference_id", n->reference_id,
                          "status", store_notice_status_name(n->status), "infringing_url",
                          server__str(n->infringing_url), "recipient", party_json(&n->recipient),
                          "claimant", party_json(&n->claimant), "signature",
                          server__str(n->signature), "created_at", server__time(n->created_ms),
                          "updated_at", server__time(n->updated_ms));
    if (n->events) {
        json_t *ev = json_array();
        for (size_t i = 0; i < n->n_events; i++)
            json_array_append_new(ev, event_json(&n->events[i]));
        json_object_set_new(o, "events", ev);
    }
    return o;
}

void server__api_notice_list(http_req *req, void *ud)
{
    server *s = ud;
    store_list_opts o;
    if (server__list_opts(req, &o))
        return;
    o.profile_id = http_req_query(req, "profile_id");
    const char *st = http_req_query(req, "status");
    if (st) {
        store_notice_status ns;
        if (store_notice_status_parse(st, &ns) != VG_OK) {
            http_reply_error(req, 422, "invalid_field",
                             "status must be draft, sent, acknowledged, removed, rejected or "
                             "countered");
            return;
        }
        o.statuses = 1u << ns;
    }
    store_notice *items;
    store_page page;
    int rc = store_notice_list(s->st, server__tenant(req), &o, http_req_arena(req), &items, &page);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot list notices");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < page.n; i++)
        json_array_append_new(arr, notice_json(&items[i]));
    server__reply_page(req, arr, &page);
}

static int load_notice(http_req *req, server *s, store_notice *n)
{
    int rc = store_notice_get(s->st, server__tenant(req), http_req_param(req, "notice_id"),
                              http_req_arena(req), n);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "no such notice");
        return -1;
    }
    return 0;
}

void server__api_notice_get(http_req *req, void *ud)
{
    server *s = ud;
    const char *format = http_req_query(req, "format");
    if (format && strcmp(format, "json") != 0 && strcmp(format, "text") != 0 &&
        strcmp(format, "html") != 0) {
        http_reply_error(req, 422, "invalid_field", "format must be json, text or html");
        return;
    }
    store_notice n;
    if (load_notice(req, s, &n))
        return;
    if (format && strcmp(format, "text") == 0) {
        http_reply_data(req, 200, "text/plain; charset=utf-8", n.text, n.text ? strlen(n.text) : 0);
    } else if (format && strcmp(format, "html") == 0) {
        /* The HTML was escaped by dmca at draft time; forbid scripts anyway in case a viewer
         * opens it from the API origin. */
        http_reply_header(req, "Content-Security-Policy",
                          "default-src 'none'; style-src 'unsafe-inline'");
        http_reply_data(req, 200, "text/html; charset=utf-8", n.html, n.html ? strlen(n.html) : 0);
    } else {
        json_t *o = notice_json(&n);
        json_object_set_new(o, "text", server__str(n.text));
        json_object_set_new(o, "html", server__str(n.html));
        http_reply_json(req, 200, o);
    }
}

void server__api_notice_events(http_req *req, void *ud)
{
    server *s = ud;
    store_notice n;
    if (load_notice(req, s, &n))
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < n.n_events; i++)
        json_array_append_new(arr, event_json(&n.events[i]));
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:o}", "id", n.id, "status",
                              store_notice_status_name(n.status), "events", arr));
}

static int party_from(const json_t *b, const char *key, store_party *p)
{
    memset(p, 0, sizeof(*p));
    json_t *o = json_object_get(b, key);
    if (!o || !json_is_object(o))
        return vg_err_set(VG_EINVAL, "field '%s' must be an object with at least a name", key);
    static const char *const allowed[] = {"name", "email", "address", "phone", NULL};
    int rc = http_json_only(o, allowed);
    if (rc == VG_OK)
        rc = http_json_string(o, "name", 1, STORE_NAME_MAX_BYTES - 1, &p->name);
    if (rc == VG_OK)
        rc = http_json_string(o, "email", 0, STORE_NAME_MAX_BYTES - 1, &p->email);
    if (rc == VG_OK)
        rc = http_json_string(o, "address", 0, STORE_TEXT_MAX_BYTES - 1, &p->address);
    if (rc == VG_OK)
        rc = http_json_string(o, "phone", 0, STORE_NAME_MAX_BYTES - 1, &p->phone);
    if (rc != VG_OK)
        return vg_err_set(rc, "%s: %s", key, vg_err_msg());
    return VG_OK;
}

void server__api_notice_create(http_req *req, void *ud)
{
    server *s = ud;
    json_t *b;
    if (server__body_json(req, &b))
        return;
    static const char *const allowed[] = {"match_id", "infringing_url", "recipient", "signer_name",
                                          NULL};
    const char *match_id = NULL;
    dmca_request dr;
    memset(&dr, 0, sizeof(dr));
    int rc = http_json_only(b, allowed);
    if (rc == VG_OK)
        rc = http_json_string(b, "match_id", 1, STORE_ID_MAX - 1, &match_id);
    if (rc == VG_OK)
        rc = http_json_string(b, "infringing_url", 1, STORE_URL_MAX_BYTES - 1, &dr.infringing_url);
    if (rc == VG_OK)
        rc = party_from(b, "recipient", &dr.recipient);
    if (rc == VG_OK)
        rc = http_json_string(b, "signer_name", 0, STORE_NAME_MAX_BYTES - 1, &dr.signer_name);
    if (rc != VG_OK) {
        json_decref(b);
        server__reply_err(req, rc, "bad notice fields");
        return;
    }
    vg_arena *a = http_req_arena(req);
    store_notice_source src;
    store_notice_new nn;
    char id[STORE_ID_MAX];
    rc = store_notice_source_get(s->st, server__tenant(req), match_id, a, &src);
    if (rc == VG_OK)
        rc = dmca_draft(&src, &dr, a, &nn);
    if (rc == VG_OK)
        rc = store_notice_create(s->st, server__tenant(req), &nn, id);
    json_decref(b);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot draft the notice");
        return;
    }
    store_notice n;
    rc = store_notice_get(s->st, server__tenant(req), id, a, &n);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "notice stored but not readable");
        return;
    }
    http_reply_json(req, 201, notice_json(&n));
}

void server__api_notice_status(http_req *req, void *ud)
{
    server *s = ud;
    json_t *b;
    if (server__body_json(req, &b))
        return;
    static const char *const allowed[] = {"status", "note", NULL};
    const char *to_s = NULL, *note = NULL;
    store_notice_status to;
    int rc = http_json_only(b, allowed);
    if (rc == VG_OK)
        rc = http_json_string(b, "status", 1, 32, &to_s);
    if (rc == VG_OK && store_notice_status_parse(to_s, &to) != VG_OK)
        rc = vg_err_set(VG_EINVAL, "field 'status' must be sent, acknowledged, removed, "
                                   "rejected or countered");
    if (rc == VG_OK)
        rc = http_json_string(b, "note", 0, STORE_TEXT_MAX_BYTES - 1, &note);
    const char *id = http_req_param(req, "notice_id");
    if (rc == VG_OK)
        rc = store_notice_set_status(s->st, server__tenant(req), id, to, dmca_allowed_from(to),
                                     note, NULL);
    json_decref(b);
    if (rc != VG_OK) {
        server__reply_err(req, rc, "cannot change the status");
        return;
    }
    store_notice n;
    if (load_notice(req, s, &n))
        return;
    http_reply_json(req, 200, notice_json(&n));
}
