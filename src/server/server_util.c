/* Small helpers every handler file uses: JSON value builders, list options from the query
 * string, the page envelope, JSON bodies, error mapping. */
#include "server/server_int.h"
#include "pdq/pdq.h"
#include "analyze/analyze.h"
#include "ops/ops.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *server__tenant(http_req *req)
{
    return http_req_principal(req)->tenant_id;
}

json_t *server__time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[32];
    return json_string(vg_format_time(ms, buf, sizeof(buf)));
}

json_t *server__str(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    /* Not UTF-8 (a value stored before input was checked): show it with '?' for bad bytes. */
    size_t n = strlen(s);
    char *clean = vg_malloc(n + 1);
    if (!clean)
        return json_null();
    j = json_string(vg_utf8_sanitize(s, n, clean, n + 1));
    vg_free(clean);
    return j ? j : json_null();
}

json_t *server__hex(const uint8_t *bytes, size_t n)
{
    char buf[2 * 64 + 1];
    if (n > 64)
        return json_null();
    vg_hex_encode(bytes, n, buf);
    return json_string(buf);
}

json_t *server__pdq_hex(const uint8_t bytes[VG_PDQ_BYTES])
{
    pdq_hash h;
    char hex[PDQ_HEX_BYTES];
    memcpy(h.w, bytes, sizeof h.w);
    return json_string(pdq_hash_to_hex(&h, hex));
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

int server__parse_time(const char *s, int64_t *out_ms)
{
    if (all_digits(s)) {
        if (strlen(s) > 15)
            return vg_err_set(VG_EINVAL, "time '%s' is out of range", s);
        *out_ms = strtoll(s, NULL, 10);
        return VG_OK;
    }
    int y, mo, d, h, mi, sec, ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return vg_err_set(VG_EINVAL, "time '%s' is neither ms since the epoch nor RFC 3339", s);
    const char *p = s + n;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return vg_err_set(VG_EINVAL, "time '%s': empty fraction", s);
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return vg_err_set(VG_EINVAL, "time '%s': only UTC (Z) is accepted", s);
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return vg_err_set(VG_EINVAL, "time '%s' is out of range", s);
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *out_ms = (int64_t)t * 1000 + ms;
    return VG_OK;
}

int server__list_opts(http_req *req, store_list_opts *o)
{
    memset(o, 0, sizeof(*o));
    const char *v = http_req_query(req, "limit");
    if (v) {
        char *end = NULL;
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 1 || n > STORE_LIST_MAX_LIMIT) {
            http_reply_error(req, 422, "invalid_field", "limit must be 1..%d",
                             STORE_LIST_MAX_LIMIT);
            return -1;
        }
        o->limit = (unsigned)n;
    }
    v = http_req_query(req, "cursor");
    if (v && *v) {
        if (strlen(v) >= STORE_ID_MAX) {
            http_reply_error(req, 422, "invalid_field", "malformed cursor");
            return -1;
        }
        o->cursor = v;
    }
    const char *names[2] = {"since", "until"};
    int64_t *dst[2] = {&o->since_ms, &o->until_ms};
    for (int i = 0; i < 2; i++) {
        v = http_req_query(req, names[i]);
        if (v && server__parse_time(v, dst[i]) != VG_OK) {
            http_reply_error(req, 422, "invalid_field", "%s: %s", names[i], vg_err_msg());
            return -1;
        }
    }
    return 0;
}

void server__reply_page(http_req *req, json_t *items, const store_page *page)
{
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "next_cursor",
                        page->next_cursor[0] ? json_string(page->next_cursor) : json_null());
    http_reply_json(req, 200, o);
}

int server__body_json(http_req *req, json_t **out)
{
    const char *ct = http_req_header(req, "Content-Type");
    if (!http_content_type_is(ct, "application/json")) {
        http_reply_error(req, 415, NULL, "expected Content-Type: application/json");
        return -1;
    }
    size_t len;
    const uint8_t *b = http_req_body(req, &len);
    int rc = http_json_parse_object(b, len, out);
    if (rc != VG_OK) {
        http_reply_error(req, 400, NULL, "%s", vg_err_msg());
        return -1;
    }
    return 0;
}

void server__reply_err(http_req *req, int rc, const char *what)
{
    if (rc == VG_EPERM) /* the store's "no such key" is an auth failure */
        rc = VG_ENOTFOUND;
    http_reply_vg(req, rc, what);
}

void server__reply_detail(http_req *req, int rc, const char *detail)
{
    /* Through vg_err_set so the one mapping (status, code, internal errors hidden) applies. */
    vg_err_set(rc, "%s", detail && *detail ? detail : vg_strerror(rc));
    server__reply_err(req, rc, vg_strerror(rc));
}

void server__unavailable(http_req *req, void *ud)
{
    http_reply_error(req, 503, NULL, "the %s module is not built into this server",
                     ud ? (const char *)ud : "required");
}

/* Content types accepted as a raw image body; the decoder sniffs the real format, so this is
 * only a guard against clients posting JSON or forms by mistake. */
static int image_content_type(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, "image/", 6) == 0 ||
           http_content_type_is(ct, "application/octet-stream");
}

int server__input_parse(http_req *req, size_t max_images, srv_input *in)
{
    memset(in, 0, sizeof(*in));
    in->req = req;
    const char *ct = http_req_header(req, "Content-Type");
    size_t len;
    const uint8_t *body = http_req_body(req, &len);
    vg_arena *a = http_req_arena(req);
    if (http_content_type_is(ct, "multipart/form-data")) {
        in->multipart = 1;
        /* fields + images; a bound on parts keeps hostile bodies cheap */
        size_t max_parts = max_images + 64;
        int rc = http_multipart_parse(body, len, ct, a, max_parts, &in->parts, &in->n_parts);
        if (rc != VG_OK) {
            http_reply_error(req, rc == VG_ETOOBIG ? 422 : 400, NULL, "%s", vg_err_msg());
            return -1;
        }
        size_t n = 0;
        for (size_t i = 0; i < in->n_parts; i++)
            if (strcmp(in->parts[i].name, "image") == 0)
                n++;
        if (n == 0) {
            http_reply_error(req, 422, "invalid_field", "multipart body has no 'image' part");
            return -1;
        }
        if (n > max_images) {
            http_reply_error(req, 422, "invalid_field", "%zu images; at most %zu per request", n,
                             max_images);
            return -1;
        }
        in->images = vg_arena_alloc(a, n * sizeof(*in->images));
        if (!in->images) {
            http_reply_error(req, 503, NULL, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < in->n_parts; i++) {
            const http_part *p = &in->parts[i];
            if (strcmp(p->name, "image") != 0)
                continue;
            if (p->len == 0) {
                http_reply_error(req, 422, "invalid_field", "image part %zu is empty",
                                 in->n_images);
                return -1;
            }
            in->images[in->n_images++] = (srv_image){p->data, p->len, p->filename};
        }
        return 0;
    }
    if (!image_content_type(ct)) {
        http_reply_error(req, 415, NULL,
                         "expected an image body (image/jpeg, image/png, image/webp) or "
                         "multipart/form-data with an 'image' part");
        return -1;
    }
    if (len == 0) {
        http_reply_error(req, 422, "invalid_field", "empty image body");
        return -1;
    }
    in->images = vg_arena_alloc(a, sizeof(*in->images));
    if (!in->images) {
        http_reply_error(req, 503, NULL, "out of memory");
        return -1;
    }
    in->images[0] = (srv_image){body, len, NULL};
    in->n_images = 1;
    return 0;
}

const char *server__input_field(srv_input *in, const char *name)
{
    if (in->multipart) {
        const http_part *p = http_multipart_find(in->parts, in->n_parts, name);
        if (!p || p->len == 0 || memchr(p->data, 0, p->len))
            return NULL;
        char *s = vg_arena_alloc(http_req_arena(in->req), p->len + 1);
        if (!s)
            return NULL;
        /* Text fields are stored and echoed in JSON: keep them UTF-8 ('?' for bad bytes). */
        return vg_utf8_sanitize((const char *)p->data, p->len, s, p->len + 1);
    }
    const char *v = http_req_query(in->req, name);
    if (!v || !*v)
        return NULL;
    if (vg_utf8_valid(v, strlen(v)))
        return v;
    size_t n = strlen(v);
    char *s = vg_arena_alloc(http_req_arena(in->req), n + 1);
    return s ? vg_utf8_sanitize(v, n, s, n + 1) : NULL;
}

void server__ops_analysis(server *s, int status, const analyze_timings *t)
{
    if (!s->ops)
        return;
    if (status != VG_OK || !t) {
        ops_record_analysis(s->ops, http_status_of(status) < 500, 1, NULL, OPS_TIER_OFF);
        return;
    }
    const uint64_t stage_ns[OPS_STAGES] = {
        [OPS_STAGE_DECODE] = t->decode_us * 1000,
        [OPS_STAGE_PDQ] = t->pdq_us * 1000,
        [OPS_STAGE_DETECT] = t->detect_us * 1000,
        [OPS_STAGE_LANDMARKS] = t->landmarks_us * 1000,
        [OPS_STAGE_DESCRIPTORS] = t->descriptors_us * 1000,
        [OPS_STAGE_MATCH] = t->match_us * 1000,
        [OPS_STAGE_STORE] = t->store_us * 1000,
    };
    ops_tier tier = OPS_TIER_OFF;
    const char *n = t->cache_tier ? t->cache_tier : "off";
    if (strcmp(n, "miss") == 0)
        tier = OPS_TIER_MISS;
    else if (strcmp(n, "l1") == 0)
        tier = OPS_TIER_L1;
    else if (strcmp(n, "l2") == 0)
        tier = OPS_TIER_L2;
    else if (strcmp(n, "l3") == 0)
        tier = OPS_TIER_L3;
    ops_record_analysis(s->ops, 1, 1, stage_ns, tier);
}
