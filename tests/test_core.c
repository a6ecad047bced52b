/* core: error codes and details, allocator fault injection, arena, hex/sha256, parsers, files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_strerror_and_detail(void **state)
{
    (void)state;
    assert_string_equal(vg_strerror(VG_ETRUNC), "truncated input");
    assert_string_equal(vg_errname(VG_EPIXELS), "VG_EPIXELS");
    assert_string_equal(vg_strerror(-9999), "unknown error");
    vg_err_clear();
    int rc = vg_err_set(VG_EDIM, "width %u > max_dimension %u", 70000u, 65000u);
    assert_int_equal(rc, VG_EDIM);
    assert_string_equal(vg_err_msg(), "width 70000 > max_dimension 65000");
    vg_err_clear();
    assert_string_equal(vg_err_msg(), "ok");
}

static void test_alloc_fail_after(void **state)
{
    (void)state;
    vg_alloc_fail_after(2);
    void *a = vg_malloc(10);
    void *b = vg_malloc(10);
    void *c = vg_calloc(1, 10);
    vg_alloc_fail_after(0);
    assert_non_null(a);
    assert_null(b);
    assert_null(c);
    vg_free(a);
    vg_free(NULL);
}

static void test_size_overflow(void **state)
{
    (void)state;
    size_t r;
    assert_int_equal(vg_mul_size(SIZE_MAX / 2, 3, &r), VG_ETOOBIG);
    assert_int_equal(vg_mul_size(1000, 1000, &r), VG_OK);
    assert_int_equal(r, 1000000);
    assert_int_equal(vg_add_size(SIZE_MAX, 1, &r), VG_ETOOBIG);
}

static void test_arena(void **state)
{
    (void)state;
    vg_arena *a = vg_arena_new(256);
    assert_non_null(a);
    char *p = vg_arena_alloc(a, 10);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    char *big = vg_arena_alloc(a, 10000); /* larger than a block */
    assert_non_null(big);
    memset(big, 1, 10000);
    for (int i = 0; i < 100; i++)
        assert_non_null(vg_arena_alloc(a, 100));
    assert_true(vg_arena_bytes_used(a) >= 10000 + 100 * 100);
    vg_arena_reset(a);
    assert_int_equal(vg_arena_bytes_used(a), 0);
    assert_string_equal(vg_arena_strdup(a, "hello"), "hello");
    vg_arena_free(a);
    vg_arena_free(NULL);
}

static void test_sha256_and_hex(void **state)
{
    (void)state;
    uint8_t d[VG_SHA256_BYTES];
    char hex[VG_SHA256_HEX_BYTES];
    assert_int_equal(vg_sha256("abc", 3, d), VG_OK);
    vg_hex_encode(d, sizeof d, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    uint8_t back[VG_SHA256_BYTES];
    assert_int_equal(vg_hex_decode(hex, back, sizeof back), VG_OK);
    assert_memory_equal(back, d, sizeof d);
    assert_int_equal(vg_hex_decode("abc", back, 2), VG_EINVAL);    /* too short */
    assert_int_equal(vg_hex_decode("zz", back, 1), VG_EINVAL);     /* bad digit */
    assert_int_equal(vg_hex_decode("ABCD", back, 2), VG_OK);       /* upper case */
    assert_int_equal(vg_hex_decode("abcdef", back, 2), VG_EINVAL); /* too long */
    assert_true(vg_ct_equal("abcd", "abcd", 4));
    assert_false(vg_ct_equal("abcd", "abce", 4));
}

/* vg_sha256 from several threads at once (the fetched implementation is shared): FIPS 180-2's
 * one-million-'a' vector, many blocks long, on each. */
static void *sha_million_a(void *arg)
{
    static const char want[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    uint8_t d[VG_SHA256_BYTES];
    char hex[VG_SHA256_HEX_BYTES];
    int ok = vg_sha256(a, n, d) == VG_OK;
    vg_hex_encode(d, sizeof d, hex);
    *(int *)arg = ok && strcmp(hex, want) == 0;
    free(a);
    return NULL;
}

static void test_sha256_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    int ok[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sha_million_a, &ok[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(ok[i]);
    }
}

static void test_parse_size_and_duration(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(vg_parse_size("512", &v), VG_OK);
    assert_int_equal(v, 512);
    assert_int_equal(vg_parse_size("64MiB", &v), VG_OK);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(vg_parse_size("1G", &v), VG_OK);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(vg_parse_size("12x", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("-1", &v), VG_EINVAL);
    assert_int_equal(vg_parse_size("99999999999999T", &v), VG_EINVAL);
    assert_int_equal(vg_parse_duration_ms("2s", &v), VG_OK);
    assert_int_equal(v, 2000);
    assert_int_equal(vg_parse_duration_ms("250", &v), VG_OK);
    assert_int_equal(v, 250);
    assert_int_equal(vg_parse_duration_ms("1h", &v), VG_OK);
    assert_int_equal(v, 3600000);
    assert_int_equal(vg_parse_duration_ms("5d", &v), VG_EINVAL);
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/vg_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    assert_int_equal(vg_mkdir_p(path), VG_OK);
    snprintf(path, sizeof path, "%s/a/b/c/file.bin", dir);
    assert_int_equal(vg_write_file_atomic(path, "hello", 5), VG_OK);
    uint8_t *buf;
    size_t len;
    assert_int_equal(vg_read_file(path, 100, &buf, &len), VG_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(buf[5], 0);
    vg_free(buf);
    assert_int_equal(vg_read_file(path, 4, &buf, &len), VG_ETOOBIG);
    assert_non_null(strstr(vg_err_msg(), "limit of 4 bytes"));
    assert_int_equal(vg_read_file("/nonexistent/x", 4, &buf, &len), VG_ENOTFOUND);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_cpu(void **state)
{
    (void)state;
    unsigned f = vg_cpu_features();
    assert_non_null(vg_cpu_describe());
    assert_true(vg_cpu_count() >= 1);
    /* AVX-512 implies AVX2 on every real CPU; a detection bug would break dispatch. */
    if (f & VG_CPU_AVX512F)
        assert_true(f & VG_CPU_AVX2);
}

static void test_time_format(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(vg_format_time(0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(vg_format_time(1795735201123LL, buf, sizeof buf),
                        "2026-11-26T23:20:01.123Z");
    uint64_t a = vg_now_ns(), b = vg_now_ns();
    assert_true(b >= a);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(vg_utf8_valid("plain", 5));
    assert_true(vg_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_false(vg_utf8_valid("\xc5", 1));             /* truncated */
    assert_false(vg_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(vg_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(vg_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(vg_utf8_valid("\x8b", 1));             /* lone continuation */
    char out[32];
    const char bad[] = "b\\\xc5\x8b\x8d/e"; /* the fuzzer's input: U+014B then a stray byte */
    assert_string_equal(vg_utf8_sanitize(bad, strlen(bad), out, sizeof out), "b\\\xc5\x8b?/e");
    assert_true(vg_utf8_valid(out, strlen(out)));
    /* truncation keeps whole characters */
    assert_string_equal(vg_utf8_sanitize("ab\xc3\xa9", 4, out, 4), "ab");
}

/* Log output captured: stderr goes to a temp file at a given level until log_capture_end, which
 * restores both and reads what was written into buf (NUL-terminated); returns its length. */
typedef struct log_capture {
    char path[32];
    int fd, saved;
    vg_log_level lvl;
} log_capture;

static void log_capture_begin(log_capture *c, vg_log_level level)
{
    snprintf(c->path, sizeof c->path, "/tmp/vigil-test-log.XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
    c->lvl = vg_log_get_level();
    vg_log_set_level(level);
}

static ssize_t log_capture_end(log_capture *c, char *buf, size_t cap)
{
    vg_log_set_level(c->lvl);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    ssize_t n = pread(c->fd, buf, cap - 1, 0);
    close(c->fd);
    unlink(c->path);
    assert_true(n > 0);
    buf[n] = 0;
    return n;
}

/* Log injection: an attacker's newline in a logged path must not start a line of its own. */
static void test_log_escapes_untrusted_text(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(vg_log_escape("a\nb\r\t\"\\\x01\x7f", 9, out, sizeof out), 20);
    assert_string_equal(out, "a\\nb\\r\\t\\\"\\\\\\x01\\x7f");
    /* An escape that does not fit is left out whole, never cut in half. */
    assert_int_equal(vg_log_escape("ab\n", 3, out, 4), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(vg_log_escape("plain UTF-8 \xc3\xa9", 14, out, sizeof out), 14);
    assert_string_equal(out, "plain UTF-8 \xc3\xa9");

    /* Through vg_log itself: stderr into a file, one line out for one call. */
    log_capture cap;
    log_capture_begin(&cap, VG_LOG_DEBUG);
    const char *path_from_client = "/x\n2026-12-07T00:00:00.000Z ERROR [server] forged \"line\"";
    VG_DEBUG("http", "GET %s 404", path_from_client);
    char buf[1024];
    ssize_t n = log_capture_end(&cap, buf, sizeof buf);
    assert_non_null(strstr(buf, "GET /x\\n2026-12-07T00:00:00.000Z ERROR [server] forged "
                                "\\\"line\\\" 404\n"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* exactly one line */
}

/* A flood of one line (a refusal per connection) writes VG_LOG_BURST_LINES lines per window;
 * the first line of a later window reports how many were dropped, through vg_log_limited too. */
static void test_log_rate_limit(void **state)
{
    (void)state;
    static vg_log_limit lim;
    const uint64_t win = (uint64_t)VG_LOG_WINDOW_MS * 1000000u;
    uint64_t t0 = 7 * win + 5;
    uint64_t total0 = vg_log_dropped_total();
    uint32_t dropped = 99;
    int admitted = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t d = 0;
        if (vg_log_limit_admit(&lim, t0 + (uint64_t)i, &d)) {
            admitted++;
            assert_int_equal(d, 0);
        }
    }
    assert_int_equal(admitted, VG_LOG_BURST_LINES);
    assert_int_equal(vg_log_dropped_total() - total0, 100 - VG_LOG_BURST_LINES);
    /* The next window: a fresh budget, and the first line carries the count. */
    assert_true(vg_log_limit_admit(&lim, t0 + win, &dropped));
    assert_int_equal(dropped, 100 - VG_LOG_BURST_LINES);
    assert_true(vg_log_limit_admit(&lim, t0 + win + 1, &dropped));
    assert_int_equal(dropped, 0);

    /* Through the macro: 50 calls from one site write 10 lines, none with a count yet. */
    log_capture cap;
    log_capture_begin(&cap, VG_LOG_INFO);
    for (int i = 0; i < 50; i++)
        VG_WARN_LIMITED("http", "refused connection %d", i);
    char buf[8192];
    log_capture_end(&cap, buf, sizeof buf);
    int lines = 0;
    for (char *p = buf; (p = strchr(p, '\n')); p++)
        lines++;
    /* A window boundary may fall inside the loop: then a second burst and one count line. */
    assert_true(lines == VG_LOG_BURST_LINES || lines == 2 * VG_LOG_BURST_LINES);
    assert_non_null(strstr(buf, "refused connection 0\n"));
    if (lines == VG_LOG_BURST_LINES)
        assert_null(strstr(buf, "refused connection 10"));
}

/* The module latency histogram: [2^i, 2^(i+1)) ns buckets, 0 in the first, the rest in the last;
 * reads add into the snapshot so several histograms merge. */
static void test_lat_hist(void **state)
{
    (void)state;
    static vg_lat_hist h; /* zero-initialised, as the contract asks */
    const uint64_t ns[] = {0, 1, 2, 3, 4, 1023, 1024, 1ull << 39, UINT64_MAX / 2};
    for (size_t i = 0; i < VG_ARRAY_LEN(ns); i++)
        vg_lat_record(&h, ns[i]);
    vg_lat_record(NULL, 5); /* no-op */
    vg_lat_snapshot s = {0};
    vg_lat_read(&h, &s);
    assert_int_equal(s.count, 9);
    assert_int_equal(s.buckets[0], 2);  /* 0, 1 */
    assert_int_equal(s.buckets[1], 2);  /* 2, 3 */
    assert_int_equal(s.buckets[2], 1);  /* 4 */
    assert_int_equal(s.buckets[9], 1);  /* 1023 */
    assert_int_equal(s.buckets[10], 1); /* 1024 */
    assert_int_equal(s.buckets[VG_LAT_BUCKETS - 1], 2);
    assert_int_equal(s.sum_ns, 0 + 1 + 2 + 3 + 4 + 1023 + 1024 + (1ull << 39) + UINT64_MAX / 2);
    vg_lat_read(&h, &s);
    assert_int_equal(s.count, 18);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_and_detail),
        cmocka_unit_test(test_alloc_fail_after),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_sha256_and_hex),
        cmocka_unit_test(test_sha256_threads),
        cmocka_unit_test(test_parse_size_and_duration),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_log_escapes_untrusted_text),
        cmocka_unit_test(test_log_rate_limit),
        cmocka_unit_test(test_lat_hist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
