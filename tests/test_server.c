/* server: the route table agrees with the OpenAPI document (every route documented, every
 * documented operation routed), start-up helpers, and the analysis answer's text writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/server.h"
#include "server/server_int.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
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

/* The analysis answer written as text is, byte for byte, the jansson tree's compact dump (the
 * tree is what answers said before): reals of every shape, nulls, every match kind and
 * mechanism, no PDQ; where only the tree can write a value (a string to escape, a non-finite
 * real) the writer declines. */
static void expect_same_text(const analyze_result *r)
{
    json_t *tree = server__result_json(r);
    assert_non_null(tree);
    char *want = json_dumps(tree, JSON_COMPACT);
    json_decref(tree);
    char *got;
    size_t len;
    assert_int_equal(server__result_text(r, &got, &len), VG_OK);
    assert_int_equal(len, strlen(got));
    assert_string_equal(got, want);
    vg_free(got);
    free(want);
}

static void test_result_text_equals_tree(void **state)
{
    (void)state;
    analyze_face faces[3];
    memset(faces, 0, sizeof faces);
    const float boxes[3][4] = {{12.5f, 0.0f, 100.0f, 1e-7f},
                               {3.14159274f, 1e20f, -0.0f, 123456.789f},
                               {0.1f, 0.2f, 0.3f, 7.0f}};
    for (int i = 0; i < 3; i++) {
        memcpy(faces[i].box, boxes[i], sizeof boxes[i]);
        faces[i].score = 0.9f / (float)(i + 1);
    }
    analyze_match m[4];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 4; i++) {
        snprintf(m[i].profile_id, sizeof m[i].profile_id, "pr_%d0a1b2c3d", i);
        snprintf(m[i].reference_id, sizeof m[i].reference_id, "rf_%d9e8f7a6b", i);
        m[i].dihedral = -1;
        m[i].face_index = -1;
        m[i].query_region = m[i].ref_region = -1;
    }
    m[0].kind = VG_MATCH_EXACT;
    m[0].confidence = 1.0;
    m[1].kind = VG_MATCH_PDQ;
    m[1].distance = 12;
    m[1].confidence = 0.61290322580645162;
    m[1].dihedral = 3;
    m[1].query_region = PDQ_REGION_WHOLE;
    m[1].ref_region = PDQ_REGION_CENTRE80;
    snprintf(m[1].match_id, sizeof m[1].match_id, "mt_0123456789");
    m[2].kind = VG_MATCH_PDQ;
    m[2].distance = 0;
    m[2].confidence = 1e-5;
    m[2].dihedral = 0;
    m[2].query_region = m[2].ref_region = PDQ_REGION_WHOLE;
    m[3].kind = VG_MATCH_FACE;
    m[3].distance = 0.41234567890123457;
    m[3].confidence = 2.5e-300;
    m[3].face_index = 2;
    analyze_result r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 32; i++)
        r.features.sha256[i] = (uint8_t)(i * 37);
    r.features.width = 4032;
    r.features.height = 3024;
    snprintf(r.features.format, sizeof r.features.format, "jpeg");
    r.features.has_pdq = 1;
    r.features.pdq_quality = 100;
    memset(r.features.pdq, 0xa5, sizeof r.features.pdq);
    r.features.faces_enabled = 1;
    r.features.n_faces = 3;
    r.features.faces = faces;
    r.n_matches = 4;
    r.matches = m;
    r.timings = (analyze_timings){.cache_us = 3, .decode_us = 0, .total_us = 18446744073ull};
    expect_same_text(&r);
    snprintf(r.scan_id, sizeof r.scan_id, "sc_5f6e7d8c9b");
    r.features.has_pdq = 0;
    r.features.faces_enabled = 0;
    expect_same_text(&r);
    r.n_matches = 0;
    r.features.n_faces = 0;
    expect_same_text(&r);
    /* declined: the tree escapes, or refuses, what the writer does not write */
    char *text;
    size_t len;
    r.n_matches = 4;
    snprintf(m[0].profile_id, sizeof m[0].profile_id, "a\"b");
    assert_int_equal(server__result_text(&r, &text, &len), VG_EUNSUPPORTED);
    snprintf(m[0].profile_id, sizeof m[0].profile_id, "pr_ok");
    expect_same_text(&r);
    m[3].distance = NAN;
    assert_int_equal(server__result_text(&r, &text, &len), VG_EUNSUPPORTED);
    /* a photo found in a protected video: its frame list is the catalog's to write (the
     * tree), never dropped by the text writer */
    m[3].distance = 0.25;
    m[1].video_frames = 2;
    m[1].n_video_ts = 1;
    m[1].video_ts[0] = 10.0;
    assert_int_equal(server__result_text(&r, &text, &len), VG_EUNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openapi_matches_routes),
        cmocka_unit_test(test_raise_nofile),
        cmocka_unit_test(test_result_text_equals_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
