/* server: the route table agrees with the OpenAPI document (every route documented, every
 * documented operation routed), and start-up helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/server.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void lower(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = 0;
}

static void test_openapi_matches_routes(void **state)
{
    (void)state;
    size_t len;
    const char *doc = server_openapi_json(&len);
    json_error_t e;
    json_t *api = json_loadb(doc, len, 0, &e);
    if (!api)
        fail_msg("openapi.json: line %d: %s", e.line, e.text);
    assert_string_equal(json_string_value(json_object_get(api, "openapi")), "3.0.3");
    json_t *paths = json_object_get(api, "paths");
    assert_non_null(paths);

    http_router *r;
    assert_int_equal(http_router_new(&r), VG_OK);
    assert_int_equal(server_add_routes(NULL, r), VG_OK);
    size_t n = http_router_count(r);
    assert_true(n >= 30);
    /* every route is documented, with its auth */
    for (size_t i = 0; i < n; i++) {
        const http_route *rt = http_router_at(r, i);
        char m[16];
        lower(http_route_method(rt), m, sizeof(m));
        json_t *op = json_object_get(json_object_get(paths, http_route_pattern(rt)), m);
        if (!op)
            fail_msg("route %s %s is not in openapi.json", http_route_method(rt),
                     http_route_pattern(rt));
        json_t *sec = json_object_get(op, "security");
        int public_route = http_route_auth(rt) == HTTP_AUTH_PUBLIC;
        if (public_route && !(sec && json_array_size(sec) == 0))
            fail_msg("public route %s %s must document security: []", m, http_route_pattern(rt));
        if (!public_route && sec && json_array_size(sec) == 0)
            fail_msg("route %s %s needs a key but is documented public", m, http_route_pattern(rt));
        assert_non_null(json_object_get(op, "responses"));
        assert_non_null(json_object_get(op, "summary"));
    }
    /* every documented operation is routed */
    const char *path;
    json_t *item;
    size_t ops = 0;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            if (strcmp(method, "parameters") == 0)
                continue;
            char up[16];
            size_t k = 0;
            for (; method[k] && k + 1 < sizeof(up); k++)
                up[k] = (char)toupper((unsigned char)method[k]);
            up[k] = 0;
            int found = 0;
            for (size_t i = 0; i < n; i++) {
                const http_route *rt = http_router_at(r, i);
                if (strcmp(http_route_pattern(rt), path) == 0 &&
                    strcmp(http_route_method(rt), up) == 0)
                    found = 1;
            }
            if (!found)
                fail_msg("openapi.json documents %s %s, which no route serves", up, path);
            ops++;
        }
    }
    assert_int_equal(ops, n);
    http_router_free(r);
    json_decref(api);
}

static void test_raise_nofile(void **state)
{
    (void)state;
    uint64_t lim = 0;
    assert_int_equal(server_raise_nofile(&lim), VG_OK);
    assert_true(lim >= 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openapi_matches_routes),
        cmocka_unit_test(test_raise_nofile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
