/* conf: defaults, layering file < env < flags, validation errors that name the key, help text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "core/core.h"
#include "img/img.h" /* the decode limits' defaults (macros only) */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_defaults(void **state)
{
    (void)state;
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.admin_key, "");
    assert_int_equal(c.log_level, CONF_LOG_INFO);
    assert_int_equal(c.pdq_threshold, 31);
    assert_true(c.face_threshold > 0.599 && c.face_threshold < 0.601);
    assert_int_equal(c.max_body_bytes, 32u << 20);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.store_images, 0);
    assert_int_equal(c.default_level, 1);
    assert_int_equal(c.cache_l1_entries, 1000);
    assert_int_equal(c.cache_l2_bytes, 1ull << 30);
    assert_int_equal(c.request_deadline_ms, 2000);
    assert_int_equal(c.source[0], CONF_SRC_DEFAULT);
    conf_deinit(&c);
    conf_deinit(&c); /* idempotent */
}

/* The image decoding limits of `vigil serve` default to img's own defaults. */
static void test_image_limit_defaults(void **state)
{
    (void)state;
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    assert_true((uint64_t)c.max_image_pixels == IMG_DEFAULT_MAX_PIXELS);
    assert_true((uint32_t)c.max_jpeg_scans == IMG_DEFAULT_MAX_JPEG_SCANS);
    assert_true((uint64_t)c.max_lossless_pixels == IMG_DEFAULT_MAX_LOSSLESS_PIXELS);
    assert_true((uint64_t)c.max_decode_work == IMG_DEFAULT_MAX_DECODE_WORK);
    assert_true((uint32_t)c.max_decode_ratio == IMG_DEFAULT_MAX_DECODE_RATIO);
    assert_int_equal(conf_set(&c, "max-jpeg-scans", "0", CONF_SRC_FLAG, NULL), VG_EINVAL);
    assert_int_equal(conf_set(&c, "max-decode-work", "5000", CONF_SRC_FLAG, NULL), VG_OK);
    assert_int_equal(c.max_decode_work, 5000);
    conf_deinit(&c);
}

static void test_every_row_has_default_and_help(void **state)
{
    (void)state;
    size_t n;
    const conf_def *t = conf_table(&n);
    assert_true(n >= 25);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(t[i].help);
        assert_true(strlen(t[i].help) > 5);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(t[i].name, t[j].name);
    }
}

static void test_file_text(void **state)
{
    (void)state;
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    const char *txt = "# comment\n"
                      "\n"
                      "listen = 0.0.0.0:9000   # trailing comment\n"
                      "data-dir = \"/tmp/with # hash\"\n"
                      "max_body_bytes=4MiB\r\n"
                      "  store_images = yes\n"
                      "log_level = debug\n"
                      "face_threshold = 0.5\n"
                      "header_timeout = 2s";
    assert_int_equal(conf_load_text(&c, txt, strlen(txt), "t.conf"), VG_OK);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_string_equal(c.data_dir, "/tmp/with # hash");
    assert_int_equal(c.max_body_bytes, 4u << 20);
    assert_int_equal(c.store_images, 1);
    assert_int_equal(c.log_level, CONF_LOG_DEBUG);
    assert_true(c.face_threshold == 0.5);
    assert_int_equal(c.header_timeout_ms, 2000);
    assert_int_equal(c.source[0], CONF_SRC_FILE);
    conf_deinit(&c);
}

static void expect_file_error(const char *txt, int code, const char *needle)
{
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    char *before = vg_strdup(c.listen);
    vg_err_clear();
    int rc = conf_load_text(&c, txt, strlen(txt), "bad.conf");
    assert_int_equal(rc, code);
    if (!strstr(vg_err_msg(), needle))
        fail_msg("message '%s' lacks '%s'", vg_err_msg(), needle);
    assert_string_equal(c.listen, before);
    vg_free(before);
    conf_deinit(&c);
}

static void test_file_errors_name_the_key(void **state)
{
    (void)state;
    expect_file_error("nope = 1\n", VG_ENOTFOUND, "'nope'");
    expect_file_error("listen = x:1\nhttp_threads = many\n", VG_EINVAL, "http_threads");
    expect_file_error("http_threads = many\n", VG_EINVAL, "bad.conf:1");
    expect_file_error("pdq_threshold = 300\n", VG_EINVAL, "pdq_threshold");
    expect_file_error("store_images = maybe\n", VG_EINVAL, "store_images");
    expect_file_error("log_level = loud\n", VG_EINVAL, "debug|info|warn|error|off");
    expect_file_error("max_body_bytes = 12 parsecs\n", VG_EINVAL, "max_body_bytes");
    expect_file_error("header_timeout = soon\n", VG_EINVAL, "header_timeout");
    expect_file_error("face_threshold = nan\n", VG_EINVAL, "face_threshold");
    expect_file_error("face_threshold = 9\n", VG_EINVAL, "face_threshold");
    expect_file_error("just words\n", VG_EINVAL, "bad.conf:1");
    expect_file_error("listen = \"open\n", VG_EINVAL, "unterminated");
    expect_file_error(" = 3\n", VG_EINVAL, "missing key");
}

static void test_layering(void **state)
{
    (void)state;
    char dir[] = "/tmp/vigil-conf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/vigil.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("listen = 127.0.0.1:1111\ndata_dir = /from/file\nhttp_threads = 3\n", f);
    fclose(f);

    char *envp[] = {"PATH=/bin", "VIGIL_DATA_DIR=/from/env", "VIGIL_HTTP_THREADS=5",
                    "VIGIL_UNRELATED_THING=1", NULL};
    char *argv[] = {"serve",          "--config",         path, "--http-threads", "7",
                    "--store-images", "--log-level=warn", NULL};
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    assert_int_equal(conf_load_all(&c, 7, argv, envp), VG_OK);
    assert_string_equal(c.listen, "127.0.0.1:1111"); /* file */
    assert_string_equal(c.data_dir, "/from/env");    /* env over file */
    assert_int_equal(c.http_threads, 7);             /* flag over env */
    assert_int_equal(c.store_images, 1);             /* bare bool flag */
    assert_int_equal(c.log_level, CONF_LOG_WARN);
    conf_deinit(&c);

    /* VIGIL_CONFIG names the file when no flag does */
    char cfg[300];
    snprintf(cfg, sizeof(cfg), "VIGIL_CONFIG=%s", path);
    char *envp2[] = {cfg, NULL};
    char *argv2[] = {"serve", NULL};
    assert_int_equal(conf_init(&c), VG_OK);
    assert_int_equal(conf_load_all(&c, 1, argv2, envp2), VG_OK);
    assert_int_equal(c.http_threads, 3);
    conf_deinit(&c);
    unlink(path);
    rmdir(dir);
}

static void test_flag_and_env_errors(void **state)
{
    (void)state;
    conf_settings c;
    assert_int_equal(conf_init(&c), VG_OK);
    char *a1[] = {"serve", "--bogus", "1", NULL};
    assert_int_equal(conf_load_args(&c, 3, a1), VG_ENOTFOUND);
    assert_non_null(strstr(vg_err_msg(), "--bogus"));
    char *a2[] = {"serve", "--listen", NULL};
    assert_int_equal(conf_load_args(&c, 2, a2), VG_EINVAL);
    char *a3[] = {"serve", "stray", NULL};
    assert_int_equal(conf_load_args(&c, 2, a3), VG_EINVAL);
    char *e1[] = {"VIGIL_MAX_CONNECTIONS=-4", NULL};
    assert_int_equal(conf_load_env(&c, e1), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "max_connections"));
    assert_non_null(strstr(vg_err_msg(), "VIGIL_MAX_CONNECTIONS"));
    char *a4[] = {"serve", "--config", "/nonexistent/vigil.conf", NULL};
    assert_int_equal(conf_load_all(&c, 3, a4, NULL), VG_EIO);
    conf_deinit(&c);
}

static void test_names_and_listen(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(conf_env_name("max_body_bytes", buf, sizeof(buf)), "VIGIL_MAX_BODY_BYTES");
    assert_string_equal(conf_flag_name("max_body_bytes", buf, sizeof(buf)), "--max-body-bytes");
    char host[64];
    uint16_t port;
    assert_int_equal(conf_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), VG_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(conf_parse_listen("[::1]:0", host, sizeof(host), &port), VG_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(conf_parse_listen("localhost", host, sizeof(host), &port), VG_EINVAL);
    assert_int_equal(conf_parse_listen("h:70000", host, sizeof(host), &port), VG_EINVAL);
    assert_int_equal(conf_parse_listen(":80", host, sizeof(host), &port), VG_EINVAL);
}

static void test_help_lists_every_setting(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    conf_print_help(f);
    fclose(f);
    size_t n;
    const conf_def *t = conf_table(&n);
    for (size_t i = 0; i < n; i++) {
        char flag[80], env[80];
        conf_flag_name(t[i].name, flag, sizeof(flag));
        conf_env_name(t[i].name, env, sizeof(env));
        assert_non_null(strstr(buf, flag));
        assert_non_null(strstr(buf, env));
    }
    assert_non_null(strstr(buf, "default: 127.0.0.1:8080"));
    assert_non_null(strstr(buf, "VIGIL_ADMIN_KEY"));
    free(buf);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    for (long k = 1; k < 12; k++) {
        conf_settings c;
        vg_alloc_fail_after(k);
        int rc = conf_init(&c);
        vg_alloc_fail_after(0);
        if (rc == VG_OK)
            conf_deinit(&c);
        else
            assert_int_equal(rc, VG_ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_image_limit_defaults),
        cmocka_unit_test(test_every_row_has_default_and_help),
        cmocka_unit_test(test_file_text),
        cmocka_unit_test(test_file_errors_name_the_key),
        cmocka_unit_test(test_layering),
        cmocka_unit_test(test_flag_and_env_errors),
        cmocka_unit_test(test_names_and_listen),
        cmocka_unit_test(test_help_lists_every_setting),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
