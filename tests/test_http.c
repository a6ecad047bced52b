/* http: router, multipart, JSON helpers, key cache, and a live server on a free loopback port
 * (libcurl and raw sockets): error statuses, auth, body limits, async defer/resume, timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- router ---------------------------------------------------------------------------------- */

static void h_nop(http_req *req, void *ud)
{
    (void)ud;
    http_reply_json(req, 200, json_object());
}

static void test_router_patterns(void **state)
{
    (void)state;
    http_router *r;
    assert_int_equal(http_router_new(&r), VG_OK);
    assert_int_equal(
        http_router_add(r, "GET", "/api/v1/profiles", HTTP_AUTH_TENANT, 0, h_nop, NULL), VG_OK);
    assert_int_equal(
        http_router_add(r, "POST", "/api/v1/profiles", HTTP_AUTH_TENANT, 0, h_nop, NULL), VG_OK);
    assert_int_equal(
        http_router_add(r, "GET", "/api/v1/profiles/{id}", HTTP_AUTH_TENANT, 0, h_nop, NULL),
        VG_OK);
    assert_int_equal(
        http_router_add(r, "DELETE", "/api/v1/profiles/{id}", HTTP_AUTH_TENANT, 0, h_nop, NULL),
        VG_OK);
    assert_int_equal(http_router_add(r, "GET", "/api/v1/profiles/{pid}/references/{rid}",
                                     HTTP_AUTH_TENANT, 0, h_nop, NULL),
                     VG_OK);
    assert_int_equal(http_router_add(r, "GET", "/", HTTP_AUTH_PUBLIC, 0, h_nop, NULL), VG_OK);
    /* bad patterns and duplicates */
    assert_int_equal(http_router_add(r, "GET", "/api/v1/profiles", 0, 0, h_nop, NULL), VG_EEXIST);
    assert_int_equal(http_router_add(r, "GET", "nope", 0, 0, h_nop, NULL), VG_EINVAL);
    assert_int_equal(http_router_add(r, "GET", "/a//b", 0, 0, h_nop, NULL), VG_EINVAL);
    assert_int_equal(http_router_add(r, "GET", "/a/{}", 0, 0, h_nop, NULL), VG_EINVAL);
    assert_int_equal(http_router_add(r, "GET", "/a/x{y}", 0, 0, h_nop, NULL), VG_EINVAL);
    assert_int_equal(http_router_add(r, "BREW", "/a", 0, 0, h_nop, NULL), VG_EINVAL);
    assert_int_equal(http_router_add(r, "GET", "/{a}/{b}/{c}/{d}/{e}", 0, 0, h_nop, NULL),
                     VG_EINVAL);
    assert_int_equal(http_router_count(r), 6);

    http_match m;
    http_router_match(r, "GET", "/api/v1/profiles/p_42", &m);
    assert_int_equal(m.status, 200);
    assert_string_equal(http_route_pattern(m.route), "/api/v1/profiles/{id}");
    assert_int_equal(m.n_params, 1);
    assert_int_equal(m.param_len[0], 4);
    assert_memory_equal(m.param_value[0], "p_42", 4);
    assert_int_equal(m.param_name_len[0], 2);
    assert_memory_equal(m.param_name[0], "id", 2);

    http_router_match(r, "GET", "/api/v1/profiles/p1/references/r2", &m);
    assert_int_equal(m.status, 200);
    assert_int_equal(m.n_params, 2);
    assert_memory_equal(m.param_value[1], "r2", 2);

    http_router_match(r, "PUT", "/api/v1/profiles/p_42", &m);
    assert_int_equal(m.status, 405);
    assert_string_equal(m.allow, "GET, DELETE");
    http_router_match(r, "PATCH", "/api/v1/profiles", &m);
    assert_int_equal(m.status, 405);
    assert_string_equal(m.allow, "GET, POST");

    http_router_match(r, "HEAD", "/api/v1/profiles", &m);
    assert_int_equal(m.status, 200);
    http_router_match(r, "GET", "/", &m);
    assert_int_equal(m.status, 200);

    const char *misses[] = {"/api/v1/profile",
                            "/api/v1/profiles/",
                            "/api/v1/profiles/a/b",
                            "",
                            "api",
                            "//",
                            "/api//v1",
                            "/api/v1/profiles/p1/references"};
    for (size_t i = 0; i < VG_ARRAY_LEN(misses); i++) {
        http_router_match(r, "GET", misses[i], &m);
        assert_int_equal(m.status, 404);
    }
    http_router_free(r);
    http_router_free(NULL);
}

/* ---- multipart --------------------------------------------------------------------------------
 */

static void test_header_params(void **state)
{
    (void)state;
    char buf[80];
    assert_int_equal(
        http_header_param("multipart/form-data; boundary=abc123", "boundary", buf, sizeof(buf)),
        VG_OK);
    assert_string_equal(buf, "abc123");
    assert_int_equal(http_header_param("multipart/form-data; charset=x; BOUNDARY=\"a b;c\"",
                                       "boundary", buf, sizeof(buf)),
                     VG_OK);
    assert_string_equal(buf, "a b;c");
    assert_int_equal(
        http_header_param("form-data; x=\"q;name=no\"; name=yes", "name", buf, sizeof(buf)), VG_OK);
    assert_string_equal(buf, "yes");
    assert_int_equal(http_header_param("text/plain", "boundary", buf, sizeof(buf)), VG_ENOTFOUND);
    assert_int_equal(http_header_param("a; boundary=0123456789", "boundary", buf, 4), VG_ETOOBIG);
    assert_true(http_content_type_is("Multipart/Form-Data; boundary=x", "multipart/form-data"));
    assert_true(http_content_type_is("application/json", "application/json"));
    assert_false(http_content_type_is("application/jsonx", "application/json"));
    assert_false(http_content_type_is(NULL, "application/json"));
}

static const char MP_BODY[] = "preamble to ignore\r\n"
                              "--XyZ\r\n"
                              "Content-Disposition: form-data; name=\"title\"\r\n"
                              "\r\n"
                              "Bridge at dusk\r\n"
                              "--XyZ\r\n"
                              "Content-Disposition: form-data; name=\"image\"; "
                              "filename=\"a.jpg\"\r\n"
                              "Content-Type: image/jpeg\r\n"
                              "\r\n"
                              "\xff\xd8\r\n--X not a boundary\xff\xd9\r\n"
                              "--XyZ\r\n"
                              "content-disposition: form-data; name=empty\r\n"
                              "\r\n"
                              "\r\n"
                              "--XyZ--\r\n"
                              "epilogue";

static void test_multipart_parse(void **state)
{
    (void)state;
    vg_arena *a = vg_arena_new(0);
    http_part *parts;
    size_t n;
    size_t len = sizeof(MP_BODY) - 1;
    assert_int_equal(http_multipart_parse((const uint8_t *)MP_BODY, len,
                                          "multipart/form-data; boundary=XyZ", a, 8, &parts, &n),
                     VG_OK);
    assert_int_equal(n, 3);
    assert_string_equal(parts[0].name, "title");
    assert_null(parts[0].filename);
    assert_int_equal(parts[0].len, 14);
    assert_memory_equal(parts[0].data, "Bridge at dusk", 14);
    const http_part *img = http_multipart_find(parts, n, "image");
    assert_non_null(img);
    assert_string_equal(img->filename, "a.jpg");
    assert_string_equal(img->content_type, "image/jpeg");
    assert_int_equal(img->len, 24);
    assert_memory_equal(img->data, "\xff\xd8\r\n--X not a boundary\xff\xd9", 24);
    assert_string_equal(parts[2].name, "empty");
    assert_int_equal(parts[2].len, 0);
    assert_null(http_multipart_find(parts, n, "nope"));

    /* too many parts */
    assert_int_equal(http_multipart_parse((const uint8_t *)MP_BODY, len,
                                          "multipart/form-data; boundary=XyZ", a, 2, &parts, &n),
                     VG_ETOOBIG);
    vg_arena_free(a);
}

static void expect_mp_error(const char *body, const char *ctype, int code)
{
    vg_arena *a = vg_arena_new(0);
    http_part *parts;
    size_t n;
    int rc = http_multipart_parse((const uint8_t *)body, strlen(body), ctype, a, 16, &parts, &n);
    if (rc != code)
        fail_msg("body %s: got %d want %d (%s)", body, rc, code, vg_err_msg());
    vg_arena_free(a);
}

static void test_multipart_malformed(void **state)
{
    (void)state;
    const char *ct = "multipart/form-data; boundary=b";
    expect_mp_error("--b\r\nContent-Disposition: form-data; name=x\r\n\r\nabc", ct, VG_EINVAL);
    expect_mp_error("no boundary at all", ct, VG_EINVAL);
    expect_mp_error("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--", ct, VG_EINVAL);
    expect_mp_error("--b\r\nContent-Disposition: attachment; name=x\r\n\r\nv\r\n--b--", ct,
                    VG_EINVAL);
    expect_mp_error("--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--", ct, VG_EINVAL);
    expect_mp_error("--b\r\nContent-Disposition: form-data; name=x\r\nno colon\r\n\r\nv\r\n--b--",
                    ct, VG_EINVAL);
    expect_mp_error("--bX\r\n", ct, VG_EINVAL);
    expect_mp_error("--b\r\n\r\nv\r\n--b--", ct, VG_EINVAL);
    expect_mp_error("--b--", "multipart/form-data", VG_EINVAL);
    expect_mp_error("--b--", "application/json; boundary=b", VG_EINVAL);
    expect_mp_error("--b--", "multipart/form-data; boundary=\"b", VG_EINVAL);
    /* boundary longer than RFC 2046 allows */
    char longct[200];
    snprintf(longct, sizeof(longct), "multipart/form-data; boundary=%080d", 1);
    expect_mp_error("--b--", longct, VG_EINVAL);
    /* an unterminated huge header block */
    size_t big = HTTP_MULTIPART_MAX_HEADER_BYTES + 100;
    char *body = malloc(big + 64);
    strcpy(body, "--b\r\nContent-Disposition: form-data; name=\"");
    size_t l = strlen(body);
    memset(body + l, 'a', big);
    strcpy(body + l + big, "\"\r\n\r\nv\r\n--b--");
    expect_mp_error(body, ct, VG_EINVAL);
    free(body);
    /* an empty multipart body with only the close delimiter is fine: zero parts */
    expect_mp_error("--b--\r\n", ct, VG_OK);
}

/* ---- JSON ---------------------------------------------------------------------------------------
 */

static void test_json_helpers(void **state)
{
    (void)state;
    json_t *o = NULL;
    const char *good = "{\"name\":\"Ann\",\"n\":5,\"b\":true,\"nul\":null}";
    assert_int_equal(http_json_parse_object((const uint8_t *)good, strlen(good), &o), VG_OK);
    const char *s = NULL;
    assert_int_equal(http_json_string(o, "name", 1, 10, &s), VG_OK);
    assert_string_equal(s, "Ann");
    assert_int_equal(http_json_string(o, "name", 1, 2, &s), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "'name'"));
    assert_int_equal(http_json_string(o, "n", 1, 10, &s), VG_EINVAL);
    assert_int_equal(http_json_string(o, "missing", 1, 10, &s), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "required"));
    s = "untouched";
    assert_int_equal(http_json_string(o, "nul", 0, 10, &s), VG_OK);
    assert_string_equal(s, "untouched");
    int64_t n = 0;
    assert_int_equal(http_json_int(o, "n", 1, 0, 10, &n), VG_OK);
    assert_int_equal(n, 5);
    assert_int_equal(http_json_int(o, "n", 1, 6, 10, &n), VG_EINVAL);
    assert_int_equal(http_json_int(o, "name", 1, 0, 10, &n), VG_EINVAL);
    int b = 0;
    assert_int_equal(http_json_bool(o, "b", 1, &b), VG_OK);
    assert_int_equal(b, 1);
    assert_int_equal(http_json_bool(o, "n", 1, &b), VG_EINVAL);
    const char *allowed[] = {"name", "n", "b", "nul", NULL};
    assert_int_equal(http_json_only(o, allowed), VG_OK);
    const char *fewer[] = {"name", NULL};
    assert_int_equal(http_json_only(o, fewer), VG_EINVAL);
    json_decref(o);

    const char *bad[] = {"", "[1,2]", "{\"a\":", "{\"a\":1,\"a\":2}", "\"str\"", "{} trailing"};
    for (size_t i = 0; i < VG_ARRAY_LEN(bad); i++)
        assert_int_equal(http_json_parse_object((const uint8_t *)bad[i], strlen(bad[i]), &o),
                         VG_EINVAL);
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    assert_int_equal(http_json_parse_object((const uint8_t *)deep, strlen(deep), &o), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "nested"));

    json_t *e = http_error_body("not_found", "no profile 'x'");
    char *txt = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(txt, "{\"error\":{\"code\":\"not_found\",\"message\":\"no profile 'x'\"}}");
    free(txt);
    json_decref(e);

    assert_int_equal(http_status_of(VG_ENOTFOUND), 404);
    assert_int_equal(http_status_of(VG_ECONFLICT), 409);
    assert_int_equal(http_status_of(VG_EFORMAT), 415);
    assert_int_equal(http_status_of(VG_ECORRUPT), 422);
    assert_int_equal(http_status_of(VG_ENOFACE), 422);
    assert_int_equal(http_status_of(VG_ETOOBIG), 413);
    assert_int_equal(http_status_of(VG_EBUSY), 503);
    assert_int_equal(http_status_of(VG_ECANCELED), 503); /* dropped at shutdown: retry */
    assert_int_equal(http_status_of(VG_EQUOTA), 429);
    assert_int_equal(http_status_of(VG_ENOSPC), 503); /* data disk full: retry later */
    assert_int_equal(http_status_of(VG_ESTORE), 500);
    assert_string_equal(http_status_code(405), "method_not_allowed");
    assert_string_equal(http_status_code(413), "payload_too_large");
}

/* ---- key cache
 * ----------------------------------------------------------------------------------- */

typedef struct key_db {
    uint8_t tenant_hash[VG_SHA256_BYTES];
    int revoked;
    int lookups;
} key_db;

static int db_lookup(void *ud, const uint8_t hash[VG_SHA256_BYTES], http_principal *out)
{
    key_db *db = ud;
    db->lookups++;
    if (db->revoked || memcmp(hash, db->tenant_hash, VG_SHA256_BYTES) != 0)
        return VG_ENOTFOUND;
    out->role = HTTP_ROLE_TENANT;
    strcpy(out->tenant_id, "t_1");
    strcpy(out->key_id, "k_1");
    return VG_OK;
}

static void test_keycache(void **state)
{
    (void)state;
    key_db db = {{0}, 0, 0};
    vg_sha256("tenant-key", 10, db.tenant_hash);
    http_keycache *kc;
    assert_int_equal(http_keycache_new(db_lookup, &db, 4, &kc), VG_OK);
    uint8_t admin[32];
    vg_sha256("admin-key", 9, admin);
    http_keycache_set_admin(kc, admin);
    http_principal p;
    assert_int_equal(http_keycache_auth(kc, "admin-key", &p), VG_OK);
    assert_int_equal(p.role, HTTP_ROLE_ADMIN);
    assert_int_equal(db.lookups, 0);
    assert_int_equal(http_keycache_auth(kc, "tenant-key", &p), VG_OK);
    assert_int_equal(p.role, HTTP_ROLE_TENANT);
    assert_string_equal(p.tenant_id, "t_1");
    assert_int_equal(db.lookups, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(http_keycache_auth(kc, "tenant-key", &p), VG_OK);
    assert_int_equal(db.lookups, 1); /* served from memory */
    uint64_t hits, misses;
    http_keycache_stats(kc, &hits, &misses);
    assert_int_equal(hits, 10);
    assert_int_equal(http_keycache_size(kc), 1);
    assert_int_equal(http_keycache_auth(kc, "wrong", &p), VG_ENOTFOUND);
    /* revoke: forget, then the store says no */
    db.revoked = 1;
    http_keycache_forget_key(kc, db.tenant_hash);
    assert_int_equal(http_keycache_auth(kc, "tenant-key", &p), VG_ENOTFOUND);
    db.revoked = 0;
    assert_int_equal(http_keycache_auth(kc, "tenant-key", &p), VG_OK);
    db.revoked = 1;
    http_keycache_forget_tenant(kc, "t_1");
    assert_int_equal(http_keycache_size(kc), 0);
    assert_int_equal(http_keycache_auth(kc, "tenant-key", &p), VG_ENOTFOUND);
    http_keycache_clear(kc);
    http_keycache_free(kc);
    http_keycache_free(NULL);
}

/* ---- live server ----------------------------------------------------------------------------- */

static key_db g_db;

static void h_echo(http_req *req, void *ud)
{
    (void)ud;
    const char *q = http_req_query(req, "q");
    json_t *o = json_pack("{s:s,s:s,s:s?,s:s}", "a", http_req_param(req, "a"), "b",
                          http_req_param(req, "b"), "q", q, "route", http_req_route(req));
    http_reply_json(req, 200, o);
}

static void h_body(http_req *req, void *ud)
{
    (void)ud;
    size_t len;
    const uint8_t *b = http_req_body(req, &len);
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += b[i];
    char thread[32] = "";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    http_reply_json(req, 200,
                    json_pack("{s:I,s:I,s:s}", "len", (json_int_t)len, "sum", (json_int_t)sum,
                              "thread", thread));
}

static void h_whoami(http_req *req, void *ud)
{
    (void)ud;
    const http_principal *p = http_req_principal(req);
    http_reply_json(req, 200, json_pack("{s:i,s:s}", "role", (int)p->role, "tenant", p->tenant_id));
}

static void *async_worker(void *arg)
{
    http_req *req = arg;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    size_t len;
    http_req_body(req, &len);
    http_reply_json(req, 202, json_pack("{s:b,s:I}", "async", 1, "len", (json_int_t)len));
    http_req_resume(req);
    return NULL;
}

static void h_async(http_req *req, void *ud)
{
    (void)ud;
    http_req_defer(req);
    pthread_t t;
    pthread_create(&t, NULL, async_worker, req);
    pthread_detach(t);
}

static void *fast_worker(void *arg)
{
    http_req *req = arg;
    http_reply_error(req, 503, NULL, "queue full");
    http_req_resume(req);
    return NULL;
}

/* Resumes before the handler even returns: the reply must go out without a suspend. */
static void h_async_fast(http_req *req, void *ud)
{
    (void)ud;
    http_req_defer(req);
    pthread_t t;
    pthread_create(&t, NULL, fast_worker, req);
    pthread_join(t, NULL);
}

static void h_noreply(http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static void h_vg(http_req *req, void *ud)
{
    (void)ud;
    vg_err_clear();
    http_reply_vg(req, vg_err_set(VG_ECONFLICT, "notice is 'removed'; cannot become 'sent'"),
                  "conflict");
}

typedef struct observed {
    pthread_mutex_t mu;
    int count;
    char last_route[64];
    int last_status;
    int echo_ok; /* GET 200s reported under the echo route's template */
} observed;
static observed g_obs = {PTHREAD_MUTEX_INITIALIZER, 0, "", 0, 0};

static void observe(void *ud, const char *method, const char *route, int status, uint64_t ns)
{
    observed *o = ud;
    pthread_mutex_lock(&o->mu);
    o->count++;
    snprintf(o->last_route, sizeof(o->last_route), "%s", route);
    o->last_status = status;
    if (strcmp(method, "GET") == 0 && strcmp(route, "/echo/{a}/x/{b}") == 0 && status == 200)
        o->echo_ok++;
    pthread_mutex_unlock(&o->mu);
}

#define TEST_MAX_BODY (256u * 1024)
#define TEST_JSON_BODY 4096u
#define TEST_BODY_BUDGET (300u * 1024)
#define TEST_QUERY_PARAMS 64u
#define TEST_PER_IP 16u

typedef struct live {
    http_router *router;
    http_keycache *kc;
    http_server *srv;
    uint16_t port;
} live;

static int live_setup(void **state)
{
    live *L = calloc(1, sizeof(*L));
    vg_sha256("tenant-key", 10, g_db.tenant_hash);
    assert_int_equal(http_keycache_new(db_lookup, &g_db, 16, &L->kc), VG_OK);
    uint8_t admin[32];
    vg_sha256("admin-key", 9, admin);
    http_keycache_set_admin(L->kc, admin);
    assert_int_equal(http_router_new(&L->router), VG_OK);
    http_router *r = L->router;
    assert_int_equal(
        http_router_add(r, "GET", "/echo/{a}/x/{b}", HTTP_AUTH_PUBLIC, 0, h_echo, NULL), VG_OK);
    http_router_add(r, "DELETE", "/echo/{a}/x/{b}", HTTP_AUTH_ADMIN, 0, h_echo, NULL);
    http_router_add(r, "POST", "/body", HTTP_AUTH_PUBLIC, HTTP_ROUTE_BODY, h_body, NULL);
    http_router_add(r, "POST", "/small", HTTP_AUTH_PUBLIC, 0, h_body, NULL);
    http_router_add(r, "POST", "/tenant-small", HTTP_AUTH_TENANT, 0, h_body, NULL);
    http_router_add(r, "POST", "/json", HTTP_AUTH_PUBLIC, HTTP_ROUTE_BODY | HTTP_ROUTE_JSON, h_body,
                    NULL);
    http_router_add(r, "GET", "/admin", HTTP_AUTH_ADMIN, 0, h_whoami, NULL);
    http_router_add(r, "GET", "/tenant", HTTP_AUTH_TENANT, 0, h_whoami, NULL);
    http_router_add(r, "GET", "/any", HTTP_AUTH_ANY, 0, h_whoami, NULL);
    http_router_add(r, "POST", "/async", HTTP_AUTH_PUBLIC, HTTP_ROUTE_BODY, h_async, NULL);
    http_router_add(r, "GET", "/async-fast", HTTP_AUTH_PUBLIC, 0, h_async_fast, NULL);
    http_router_add(r, "GET", "/noreply", HTTP_AUTH_PUBLIC, 0, h_noreply, NULL);
    http_router_add(r, "GET", "/conflict", HTTP_AUTH_PUBLIC, 0, h_vg, NULL);
    http_config cfg = {
        .host = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .max_connections = 64,
        .max_body_bytes = TEST_MAX_BODY,
        .header_timeout_ms = 1000,
        .body_timeout_ms = 2000,
        .body_deadline_ms = 3000,
        .retry_after_ms = 3000,
        .max_connections_per_ip = TEST_PER_IP,
        .head_deadline_ms = 2500,
        .max_json_body_bytes = TEST_JSON_BODY,
        .max_query_params = TEST_QUERY_PARAMS,
        .auth = http_keycache_auth,
        .auth_ud = L->kc,
        .observe = observe,
        .observe_ud = &g_obs,
    };
    assert_int_equal(http_server_open(&cfg, L->router, &L->srv), VG_OK);
    L->port = http_server_port(L->srv);
    assert_true(L->port > 0);
    *state = L;
    return 0;
}

static int live_teardown(void **state)
{
    live *L = *state;
    http_server_quiesce(L->srv);
    assert_int_equal(http_server_drain(L->srv, 5000), VG_OK);
    http_server_close(L->srv);
    http_router_free(L->router);
    http_keycache_free(L->kc);
    free(L);
    return 0;
}

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char headers[2048];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t add = sz * n;
    r->body = realloc(r->body, r->len + add + 1);
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = 0;
    return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t add = sz * n, have = strlen(r->headers);
    if (have + add < sizeof(r->headers)) {
        memcpy(r->headers + have, p, add);
        r->headers[have + add] = 0;
    }
    return add;
}

typedef struct chunked_src {
    size_t left;
} chunked_src;

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
    chunked_src *s = ud;
    size_t k = VG_MIN(s->left, sz * n);
    memset(buf, 'z', k);
    s->left -= k;
    return k;
}

/* Performs one request. chunked_len > 0 sends a chunked body of that many bytes instead. */
static void request(uint16_t port, const char *method, const char *path, const char *key,
                    const void *body, size_t body_len, size_t chunked_len, resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    struct curl_slist *h = NULL;
    char auth[256];
    if (key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    chunked_src src = {chunked_len};
    if (chunked_len) {
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    else
        out->status = -(long)rc;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void expect_error(const resp *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("status %ld, want %ld (body %s)", r->status, status, r->body ? r->body : "");
    json_error_t e;
    json_t *j = json_loads(r->body ? r->body : "", 0, &e);
    assert_non_null(j);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(c);
    assert_non_null(m);
    assert_true(strlen(m) > 0);
    if (code)
        assert_string_equal(c, code);
    json_decref(j);
    assert_non_null(strstr(r->headers, "Content-Type: application/json"));
}

static void test_live_routing_and_errors(void **state)
{
    live *L = *state;
    resp r;
    pthread_mutex_lock(&g_obs.mu);
    int echo_ok_before = g_obs.echo_ok;
    pthread_mutex_unlock(&g_obs.mu);
    request(L->port, "GET", "/echo/one/x/two?q=hello%20there", NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"a\":\"one\""));
    assert_non_null(strstr(r.body, "\"b\":\"two\""));
    assert_non_null(strstr(r.body, "\"q\":\"hello there\""));
    assert_non_null(strstr(r.body, "\"route\":\"/echo/{a}/x/{b}\""));
    free(r.body);

    request(L->port, "GET", "/nope", NULL, NULL, 0, 0, &r);
    expect_error(&r, 404, "not_found");
    free(r.body);

    request(L->port, "PUT", "/echo/one/x/two", NULL, NULL, 0, 0, &r);
    expect_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.headers, "Allow: GET, DELETE"));
    free(r.body);

    request(L->port, "GET", "/noreply", NULL, NULL, 0, 0, &r);
    expect_error(&r, 500, "internal");
    free(r.body);

    request(L->port, "GET", "/conflict", NULL, NULL, 0, 0, &r);
    expect_error(&r, 409, "conflict");
    assert_non_null(strstr(r.body, "cannot become 'sent'"));
    free(r.body);

    /* The observer saw the route template, not the raw path: both echo GETs of this test are
     * counted under "/echo/{a}/x/{b}". It runs on the network thread after the response went
     * out, so the client can be ahead of it: wait (bounded) for it to catch up, and assert
     * outside the lock (a failed assertion must not leave the server's observer blocked). */
    request(L->port, "GET", "/echo/zzz/x/yyy", NULL, NULL, 0, 0, &r);
    free(r.body);
    int echo_ok = 0, count = 0;
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&g_obs.mu);
        echo_ok = g_obs.echo_ok - echo_ok_before;
        count = g_obs.count;
        pthread_mutex_unlock(&g_obs.mu);
        if (echo_ok >= 2 && count >= 6)
            break;
        usleep(10000);
    }
    assert_int_equal(echo_ok, 2);
    assert_true(count >= 6);
}

static void test_live_auth(void **state)
{
    live *L = *state;
    resp r;
    request(L->port, "GET", "/tenant", NULL, NULL, 0, 0, &r);
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
    free(r.body);
    request(L->port, "GET", "/tenant", "bogus", NULL, 0, 0, &r);
    expect_error(&r, 401, "unauthorized");
    free(r.body);
    request(L->port, "GET", "/tenant", "admin-key", NULL, 0, 0, &r);
    expect_error(&r, 403, "forbidden");
    free(r.body);
    request(L->port, "GET", "/admin", "tenant-key", NULL, 0, 0, &r);
    expect_error(&r, 403, "forbidden");
    free(r.body);
    request(L->port, "DELETE", "/echo/a/x/b", "tenant-key", NULL, 0, 0, &r);
    expect_error(&r, 403, "forbidden");
    free(r.body);
    request(L->port, "GET", "/tenant", "tenant-key", NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"tenant\":\"t_1\""));
    free(r.body);
    request(L->port, "GET", "/admin", "admin-key", NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    request(L->port, "GET", "/any", "admin-key", NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    request(L->port, "GET", "/any", "tenant-key", NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_live_bodies(void **state)
{
    live *L = *state;
    resp r;
    size_t n = 200000;
    uint8_t *big = malloc(n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        big[i] = (uint8_t)(i * 7);
        sum += big[i];
    }
    request(L->port, "POST", "/body", NULL, big, n, 0, &r);
    assert_int_equal(r.status, 200);
    char want[96];
    snprintf(want, sizeof(want), "{\"len\":%zu,\"sum\":%llu,", n, (unsigned long long)sum);
    assert_true(strncmp(r.body, want, strlen(want)) == 0); /* then the handler's thread name */
    free(r.body);
    free(big);

    /* chunked within and beyond the limit */
    request(L->port, "POST", "/body", NULL, NULL, 0, 100000, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"len\":100000"));
    free(r.body);
    request(L->port, "POST", "/body", NULL, NULL, 0, TEST_MAX_BODY + 1, &r);
    expect_error(&r, 413, "payload_too_large");
    free(r.body);

    /* routes without a body flag take at most 64 KiB, and public ones (no key shown) 1 KiB */
    char *mid = calloc(1, 70000);
    request(L->port, "POST", "/tenant-small", "tenant-key", mid, 70000, 0, &r);
    expect_error(&r, 413, "payload_too_large");
    free(r.body);
    request(L->port, "POST", "/tenant-small", "tenant-key", mid, 60000, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    request(L->port, "POST", "/small", NULL, mid, 2000, 0, &r);
    expect_error(&r, 413, "payload_too_large");
    free(r.body);
    request(L->port, "POST", "/small", NULL, mid, 1000, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    /* JSON routes have their own, small limit */
    request(L->port, "POST", "/json", NULL, mid, TEST_JSON_BODY + 1, 0, &r);
    expect_error(&r, 413, "payload_too_large");
    free(r.body);
    request(L->port, "POST", "/json", NULL, mid, TEST_JSON_BODY, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    free(mid);
}

/* Raw socket helpers for what curl will not do (lie about Content-Length, stall). */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Reads until the peer closes or timeout_ms passes; returns bytes read, -1 on timeout. */
static long raw_read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    uint64_t deadline = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (1) {
        int left = (int)((deadline - vg_now_ns()) / 1000000ull);
        if (vg_now_ns() >= deadline)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return -1;
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n + 1 >= cap)
            break;
    }
    buf[n] = 0;
    return (long)n;
}

static void test_live_content_length_checked_first(void **state)
{
    live *L = *state;
    int fd = raw_connect(L->port);
    const char *hdr = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                      "Expect: 100-continue\r\n\r\n";
    assert_int_equal(send(fd, hdr, strlen(hdr), 0), (ssize_t)strlen(hdr));
    char buf[4096];
    long n = raw_read_all(fd, buf, sizeof(buf), 5000);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    assert_null(strstr(buf, "100 Continue"));
    assert_non_null(strstr(buf, "payload_too_large"));
    close(fd);
}

static void test_live_slow_clients(void **state)
{
    live *L = *state;
    /* headers that never finish: closed after the header timeout (1 s) */
    int fd = raw_connect(L->port);
    const char *part = "GET /echo/a/x/b HTTP/1.1\r\nHost: x\r\n";
    send(fd, part, strlen(part), 0);
    uint64_t t0 = vg_now_ns();
    char buf[1024];
    long n = raw_read_all(fd, buf, sizeof(buf), 6000);
    double secs = (double)(vg_now_ns() - t0) / 1e9;
    assert_true(n >= 0); /* closed, not our timeout */
    assert_true(secs >= 0.5 && secs < 5.0);
    close(fd);

    /* a body that stalls: closed after the body timeout (2 s) */
    fd = raw_connect(L->port);
    const char *hdr = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    send(fd, hdr, strlen(hdr), 0);
    t0 = vg_now_ns();
    n = raw_read_all(fd, buf, sizeof(buf), 8000);
    secs = (double)(vg_now_ns() - t0) / 1e9;
    assert_true(n >= 0);
    assert_true(secs >= 1.5 && secs < 7.0);
    close(fd);

    /* a body trickled a byte every 400 ms never stalls for the 2 s idle timeout, but is cut
     * at the 3 s whole-body deadline: closed without an answer, long before its 100 bytes */
    fd = raw_connect(L->port);
    hdr = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    send(fd, hdr, strlen(hdr), 0);
    t0 = vg_now_ns();
    int closed = 0;
    for (int i = 0; i < 40 && !closed; i++) {
        if (send(fd, "z", 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 400) > 0)
            closed = recv(fd, buf, sizeof(buf) - 1, 0) <= 0;
    }
    secs = (double)(vg_now_ns() - t0) / 1e9;
    assert_true(closed);
    assert_true(secs >= 2.5 && secs < 10.0);
    close(fd);

    /* the server still answers afterwards */
    resp r;
    request(L->port, "GET", "/echo/a/x/b", NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

/* ---- hardening: framing, head, limits (raw bytes; every refusal is one JSON reply, then the
 *      close) -----------------------------------------------------------------------------------
 */

static uint64_t refusals(live *L, http_refusal r)
{
    uint64_t v[HTTP_REFUSE__COUNT];
    http_server_refusals(L->srv, v);
    return v[r];
}

/* Sends raw bytes on a new connection and reads until the server closes it. Fails the test when
 * it neither answers nor closes within 5 s (a hang). Returns the bytes read into buf. */
static size_t raw_exchange(uint16_t port, const char *req, size_t len, char *buf, size_t cap)
{
    int fd = raw_connect(port);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    long n = raw_read_all(fd, buf, cap, 5000);
    close(fd);
    if (n < 0)
        fail_msg("no answer and no close within 5 s for: %.80s", req);
    return (size_t)n;
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* buf holds exactly one response: status, our JSON error body with this code, Connection: close
 * (and the caller saw the server close the connection). */
static void expect_raw_error(const char *buf, int status, const char *code)
{
    char want[32];
    snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
    if (strncmp(buf, want, strlen(want)) != 0)
        fail_msg("want %s, got: %.300s", want, buf);
    if (count_str(buf, "\nHTTP/1.") != 0)
        fail_msg("more than one status line: %.600s", buf);
    assert_non_null(strstr(buf, "Content-Type: application/json"));
    assert_non_null(strstr(buf, "Connection: close"));
    const char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    json_t *j = json_loads(body + 4, 0, NULL);
    if (!j)
        fail_msg("body is not JSON: %.300s", body + 4);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(c);
    assert_non_null(m);
    assert_string_equal(c, code);
    json_decref(j);
}

static void raw_expect(live *L, const char *req, int status, const char *code)
{
    char buf[8192];
    raw_exchange(L->port, req, strlen(req), buf, sizeof(buf));
    expect_raw_error(buf, status, code);
}

static void test_live_framing(void **state)
{
    live *L = *state;
    uint64_t framing = refusals(L, HTTP_REFUSE_FRAMING);
    /* two Content-Lengths: the server used the first and ran the rest of the body as a second
     * request (201 then 200); now one 400, and nothing after it */
    char buf[8192];
    const char *dup = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "Content-Length: 41\r\n\r\nhelloGET /echo/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_exchange(L->port, dup, strlen(dup), buf, sizeof(buf));
    expect_raw_error(buf, 400, "bad_request");
    assert_null(strstr(buf, "\"route\""));
    /* Content-Length with Transfer-Encoding kept the connection open */
    raw_expect(L,
               "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
               400, "bad_request");
    /* codings other than chunked alone hung until the idle timeout */
    raw_expect(L,
               "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n",
               400, "bad_request");
    raw_expect(L,
               "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n",
               400, "bad_request");
    raw_expect(L,
               "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
               400, "bad_request");
    assert_int_equal(refusals(L, HTTP_REFUSE_FRAMING), framing + 5);
    /* still a plain chunked body is fine */
    const char *ok = "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n"
                     "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    raw_exchange(L->port, ok, strlen(ok), buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 "));
    assert_non_null(strstr(buf, "\"len\":5"));

    /* A malformed Content-Length is refused by libmicrohttpd 0.9.75 before any access call,
     * which sent its status line and headers twice, then an HTML page: now one JSON 400 (and
     * 413 for a length past 64 bits) */
    raw_expect(L, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400,
               "bad_request");
    raw_expect(L, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400,
               "bad_request");
    raw_expect(L,
               "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
               413, "payload_too_large");
    assert_int_equal(refusals(L, HTTP_REFUSE_FRAMING), framing + 7);
}

static void test_live_host_nul_auth(void **state)
{
    live *L = *state;
    char buf[8192];
    uint64_t host = refusals(L, HTTP_REFUSE_HOST), nul = refusals(L, HTTP_REFUSE_NUL);
    raw_expect(L, "GET /echo/a/x/b HTTP/1.1\r\n\r\n", 400, "bad_request");
    raw_expect(L, "GET /echo/a/x/b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request");
    assert_int_equal(refusals(L, HTTP_REFUSE_HOST), host + 2);
    const char *v10 = "GET /echo/a/x/b HTTP/1.0\r\n\r\n"; /* HTTP/1.0 needs no Host */
    raw_exchange(L->port, v10, strlen(v10), buf, sizeof(buf));
    assert_non_null(strstr(buf, " 200 "));

    /* %00 cut a path id (or a query value) short and the rest was ignored */
    raw_expect(L, "GET /echo/a%00zz/x/b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request");
    raw_expect(L, "GET /echo/a/x/b?q=v%00zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request");
    assert_int_equal(refusals(L, HTTP_REFUSE_NUL), nul + 2);

    /* optional whitespace after the key is not part of it (RFC 9110 5.5) */
    const char *ows = "GET /tenant HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tenant-key \t\r\n"
                      "Connection: close\r\n\r\n";
    raw_exchange(L->port, ows, strlen(ows), buf, sizeof(buf));
    if (!strstr(buf, "HTTP/1.1 200 "))
        fail_msg("trailing OWS after the key: %.300s", buf);
    /* a control byte inside is not a key */
    raw_expect(L,
               "GET /tenant HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tenant\x01key\r\n"
               "Connection: close\r\n\r\n",
               401, "unauthorized");
}

static void test_live_query_params(void **state)
{
    live *L = *state;
    char buf[8192];
    char req[4096];
    uint64_t before = refusals(L, HTTP_REFUSE_QUERY_PARAMS);
    /* 250 parameters (1.8 KB, no key needed) got no answer and a close after 10 s */
    size_t n = (size_t)snprintf(req, sizeof(req), "GET /echo/a/x/b?");
    for (int i = 0; i < 250; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "%sp%d=1", i ? "&" : "", i);
    snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_expect(L, req, 400, "bad_request");
    assert_int_equal(refusals(L, HTTP_REFUSE_QUERY_PARAMS), before + 1);
    /* exactly the limit is fine */
    n = (size_t)snprintf(req, sizeof(req), "GET /echo/a/x/b?q=ok");
    for (unsigned i = 1; i < TEST_QUERY_PARAMS; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "&p%u=1", i);
    snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw_exchange(L->port, req, strlen(req), buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 200 "));
    assert_non_null(strstr(buf, "\"q\":\"ok\""));
}

static void test_live_head_deadline(void **state)
{
    live *L = *state;
    uint64_t before = refusals(L, HTTP_REFUSE_HEAD_DEADLINE);
    /* a header line every 400 ms never trips the 1 s idle timeout; the 2.5 s deadline on the
     * whole head cuts the connection long before this client's 40 lines are done */
    int fd = raw_connect(L->port);
    const char *line = "GET /echo/a/x/b HTTP/1.1\r\n";
    send(fd, line, strlen(line), MSG_NOSIGNAL);
    char buf[256];
    int closed = 0, sent = 0;
    for (; sent < 40 && !closed; sent++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 400) > 0) {
            closed = recv(fd, buf, sizeof(buf), 0) <= 0;
            break;
        }
        if (send(fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) != 11)
            closed = 1;
    }
    close(fd);
    assert_true(closed);
    assert_true(sent < 30);
    assert_true(refusals(L, HTTP_REFUSE_HEAD_DEADLINE) > before);
    /* the server still answers */
    resp r;
    request(L->port, "GET", "/echo/a/x/b", NULL, NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void wait_inflight(http_server *s, size_t want)
{
    for (int i = 0; i < 400 && http_server_inflight(s) != want; i++)
        usleep(10000);
    assert_int_equal(http_server_inflight(s), want);
}

static void test_live_body_budget(void **state)
{
    live *L = *state;
    /* its own server, so that no other test's body shares the small budget */
    http_config cfg = {.host = "127.0.0.1",
                       .threads = 2,
                       .max_connections = 64,
                       .max_body_bytes = TEST_MAX_BODY,
                       .header_timeout_ms = 5000,
                       .retry_after_ms = 3000,
                       .max_inflight_body_bytes = TEST_BODY_BUDGET};
    http_server *s;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_OK);
    uint16_t port = http_server_port(s);
    /* one body of 200,000 bytes under way holds that much of the 300 KiB budget ... */
    int a = raw_connect(port);
    const char *ha = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\nabc";
    send(a, ha, strlen(ha), MSG_NOSIGNAL);
    wait_inflight(s, 1);
    /* ... so a second one is 503 + Retry-After, before any of its bytes are read */
    char buf[8192];
    const char *hb = "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n";
    raw_exchange(port, hb, strlen(hb), buf, sizeof(buf));
    expect_raw_error(buf, 503, "unavailable");
    assert_non_null(strstr(buf, "Retry-After: 3"));
    uint64_t v[HTTP_REFUSE__COUNT];
    http_server_refusals(s, v);
    assert_int_equal(v[HTTP_REFUSE_BODY_BUDGET], 1);
    /* a chunked body runs into it while it grows: 503 at its end */
    const char *hc = "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    int c = raw_connect(port);
    send(c, hc, strlen(hc), MSG_NOSIGNAL);
    char chunk[8 + 65536 + 2];
    int k = snprintf(chunk, sizeof(chunk), "%x\r\n", 65536);
    memset(chunk + k, 'z', 65536);
    memcpy(chunk + k + 65536, "\r\n", 2);
    for (int i = 0; i < 3; i++)
        send(c, chunk, (size_t)k + 65536 + 2, MSG_NOSIGNAL);
    send(c, "0\r\n\r\n", 5, MSG_NOSIGNAL);
    long n = raw_read_all(c, buf, sizeof(buf), 5000);
    close(c);
    assert_true(n > 0);
    expect_raw_error(buf, 503, "unavailable");
    close(a);
    wait_inflight(s, 0);
    /* and once the first is gone, the budget is back */
    uint8_t *big = calloc(1, 200000);
    resp r;
    request(port, "POST", "/body", NULL, big, 200000, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    free(big);
    http_server_quiesce(s);
    assert_int_equal(http_server_drain(s, 5000), VG_OK);
    http_server_close(s);
}

static void test_live_chunked_far_over_limit(void **state)
{
    live *L = *state;
    /* a chunked body past twice the limit was reset with no answer: now the 413 */
    int fd = raw_connect(L->port);
    const char *h = "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    send(fd, h, strlen(h), MSG_NOSIGNAL);
    size_t chunk = 65536;
    char *c = malloc(chunk + 16);
    int k = snprintf(c, 16, "%zx\r\n", chunk);
    memset(c + k, 'z', chunk);
    memcpy(c + k + chunk, "\r\n", 2);
    size_t total = 0;
    while (total <= 2 * TEST_MAX_BODY + chunk) {
        assert_int_equal(send(fd, c, (size_t)k + chunk + 2, MSG_NOSIGNAL),
                         (ssize_t)((size_t)k + chunk + 2));
        total += chunk;
    }
    free(c);
    char buf[8192];
    long n = raw_read_all(fd, buf, sizeof(buf), 5000);
    close(fd);
    if (n <= 0)
        fail_msg("no 413 (read %ld)", n);
    expect_raw_error(buf, 413, "payload_too_large");
}

static void test_live_per_ip_limit(void **state)
{
    live *L = *state;
    /* its own server: a long idle timeout keeps the first connections open meanwhile */
    http_config cfg = {.host = "127.0.0.1",
                       .threads = 1,
                       .max_connections = 64,
                       .header_timeout_ms = 30000,
                       .max_connections_per_ip = 4};
    http_server *s;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_OK);
    uint16_t port = http_server_port(s);
    int fds[4];
    char buf[4096];
    const char *get = "GET /echo/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 4; i++) { /* each accepted and answered, kept alive */
        fds[i] = raw_connect(port);
        send(fds[i], get, strlen(get), MSG_NOSIGNAL);
        struct pollfd p = {fds[i], POLLIN, 0};
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t k = recv(fds[i], buf, sizeof(buf) - 1, 0);
        assert_true(k > 0);
        buf[k] = 0;
        assert_non_null(strstr(buf, "HTTP/1.1 200 "));
    }
    uint64_t v[HTTP_REFUSE__COUNT];
    http_server_refusals(s, v);
    uint64_t before = v[HTTP_REFUSE_CONN_LIMIT];
    int extra = raw_connect(port); /* the fifth from this address is closed at once */
    send(extra, get, strlen(get), MSG_NOSIGNAL);
    long n = raw_read_all(extra, buf, sizeof(buf), 5000);
    close(extra);
    assert_int_equal(n, 0);
    http_server_refusals(s, v);
    assert_int_equal(v[HTTP_REFUSE_CONN_LIMIT], before + 1);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    http_server_quiesce(s);
    assert_int_equal(http_server_drain(s, 5000), VG_OK);
    http_server_close(s);
}

/* Shutdown: a request whose head arrives on a kept-alive connection after quiesce is answered
 * 503 + Retry-After + close and never reaches its handler (what handlers use is torn down once
 * the requests in flight are answered). */
static void test_live_request_after_quiesce(void **state)
{
    live *L = *state;
    http_config cfg = {.host = "127.0.0.1",
                       .threads = 1,
                       .max_connections = 8,
                       .header_timeout_ms = 30000,
                       .retry_after_ms = 2000};
    http_server *s;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_OK);
    int fd = raw_connect(http_server_port(s));
    char buf[4096];
    const char *get = "GET /echo/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, get, strlen(get), MSG_NOSIGNAL);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 5000), 1);
    ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(k > 0);
    buf[k] = 0;
    assert_non_null(strstr(buf, "HTTP/1.1 200 "));
    http_server_quiesce(s);
    send(fd, get, strlen(get), MSG_NOSIGNAL); /* same connection, after shutdown began */
    long n = raw_read_all(fd, buf, sizeof(buf), 5000);
    close(fd);
    assert_true(n > 0); /* answered, and the connection closed (raw_read_all saw EOF) */
    expect_raw_error(buf, 503, "unavailable");
    assert_non_null(strstr(buf, "server shutting down"));
    assert_non_null(strstr(buf, "Retry-After: 2"));
    assert_non_null(strstr(buf, "Connection: close"));
    assert_null(strstr(buf, "HTTP/1.1 200")); /* the echo handler never ran */
    /* a new connection is closed at once, unanswered */
    fd = raw_connect(http_server_port(s));
    send(fd, get, strlen(get), MSG_NOSIGNAL);
    assert_int_equal(raw_read_all(fd, buf, sizeof(buf), 5000), 0);
    close(fd);
    assert_int_equal(http_server_drain(s, 5000), VG_OK);
    http_server_close(s);
}

/* JSON bodies over 8 KiB are handled on the JSON workers, not the network threads (a client
 * posting large JSON cannot hold the threads every connection needs); small ones stay inline. */
static void test_live_large_json_off_network_threads(void **state)
{
    live *L = *state;
    http_config cfg = {.host = "127.0.0.1",
                       .threads = 1,
                       .max_connections = 8,
                       .max_body_bytes = 1 << 20,
                       .max_json_body_bytes = 64 * 1024};
    http_server *s;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_OK);
    size_t big = 20 * 1024;
    char *doc = malloc(big + 1);
    memset(doc, ' ', big);
    memcpy(doc, "[1]", 3);
    doc[big] = 0;
    for (int round = 0; round < 3; round++) {
        resp r;
        request(http_server_port(s), "POST", "/json", NULL, doc, big, 0, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"thread\":\"" HTTP_JSON_WORKER_NAME "\""));
        assert_non_null(strstr(r.body, "\"len\":20480"));
        free(r.body);
        request(http_server_port(s), "POST", "/json", NULL, "[1]", 3, 0, &r);
        assert_int_equal(r.status, 200);
        assert_null(strstr(r.body, HTTP_JSON_WORKER_NAME));
        free(r.body);
    }
    free(doc);
    http_server_quiesce(s);
    assert_int_equal(http_server_drain(s, 5000), VG_OK);
    http_server_close(s);
}

/* Shutdown while connections arrive, many times over: libmicrohttpd 0.9.75's own quiesce raced
 * its epoll worker threads and aborted the process now and then (MHD_PANIC "Failed to remove
 * listen FD from epoll set"); ours must never. */
typedef struct quiesce_client {
    uint16_t port;
    _Atomic int stop;
} quiesce_client;

static void *quiesce_client_run(void *arg)
{
    quiesce_client *q = arg;
    while (!atomic_load(&q->stop)) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(q->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            send(fd, "GET /echo/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n", 37, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

static void test_live_quiesce_under_connections(void **state)
{
    live *L = *state;
    for (int round = 0; round < 150; round++) {
        http_config cfg = {.host = "127.0.0.1", .threads = 2, .max_connections = 64};
        http_server *s;
        assert_int_equal(http_server_open(&cfg, L->router, &s), VG_OK);
        quiesce_client q = {.port = http_server_port(s)};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, quiesce_client_run, &q);
        struct timespec ts = {0, 2000000L};
        nanosleep(&ts, NULL);
        http_server_quiesce(s);
        atomic_store(&q.stop, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(http_server_drain(s, 5000), VG_OK);
        http_server_close(s);
    }
}

typedef struct async_client {
    uint16_t port;
    int ok;
} async_client;

static void *async_client_run(void *arg)
{
    async_client *c = arg;
    for (int i = 0; i < 15; i++) {
        resp r;
        request(c->port, "POST", "/async", NULL, "abcdef", 6, 0, &r);
        if (r.status == 202 && r.body && strstr(r.body, "\"len\":6"))
            c->ok++;
        free(r.body);
    }
    return NULL;
}

static void test_live_async(void **state)
{
    live *L = *state;
    resp r;
    request(L->port, "GET", "/async-fast", NULL, NULL, 0, 0, &r);
    expect_error(&r, 503, "unavailable");
    assert_non_null(strstr(r.headers, "Retry-After: 3"));
    free(r.body);

    /* deferred requests from several clients at once, while the network threads stay free */
    async_client cl[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        cl[i] = (async_client){L->port, 0};
        pthread_create(&t[i], NULL, async_client_run, &cl[i]);
    }
    uint64_t t0 = vg_now_ns();
    request(L->port, "GET", "/echo/a/x/b", NULL, NULL, 0, 0, &r);
    uint64_t sync_ns = vg_now_ns() - t0;
    assert_int_equal(r.status, 200);
    free(r.body);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(cl[i].ok, 15);
    }
    /* not a timing assertion on speed: a synchronous request must not wait behind 60 deferred
     * ones (20 ms each) on 2 network threads, which would take >= 600 ms */
    assert_true(sync_ns < 500000000ull);
}

static void test_server_bind_error(void **state)
{
    live *L = *state;
    http_config cfg = {.host = "127.0.0.1", .port = L->port, .threads = 1};
    http_server *s = NULL;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_EIO);
    assert_non_null(strstr(vg_err_msg(), "cannot listen"));
    cfg.host = "no.such.host.invalid";
    cfg.port = 0;
    assert_int_equal(http_server_open(&cfg, L->router, &s), VG_EINVAL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_router_patterns), cmocka_unit_test(test_header_params),
        cmocka_unit_test(test_multipart_parse), cmocka_unit_test(test_multipart_malformed),
        cmocka_unit_test(test_json_helpers),    cmocka_unit_test(test_keycache),
    };
    const struct CMUnitTest livetests[] = {
        cmocka_unit_test(test_live_routing_and_errors),
        cmocka_unit_test(test_live_auth),
        cmocka_unit_test(test_live_bodies),
        cmocka_unit_test(test_live_content_length_checked_first),
        cmocka_unit_test(test_live_async),
        cmocka_unit_test(test_live_slow_clients),
        cmocka_unit_test(test_live_framing),
        cmocka_unit_test(test_live_host_nul_auth),
        cmocka_unit_test(test_live_query_params),
        cmocka_unit_test(test_live_head_deadline),
        cmocka_unit_test(test_live_body_budget),
        cmocka_unit_test(test_live_chunked_far_over_limit),
        cmocka_unit_test(test_live_per_ip_limit),
        cmocka_unit_test(test_live_request_after_quiesce),
        cmocka_unit_test(test_live_quiesce_under_connections),
        cmocka_unit_test(test_live_large_json_off_network_threads),
        cmocka_unit_test(test_server_bind_error),
    };
    int rc = cmocka_run_group_tests_name("http_unit", unit, NULL, NULL);
    rc |= cmocka_run_group_tests_name("http_live", livetests, live_setup, live_teardown);
    curl_global_cleanup();
    return rc;
}
