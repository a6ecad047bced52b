/* `vigil hash`, run as a user would: output formats, stdin, bad files, exit statuses. Runs the
 * built binary (VG_BINARY_DIR/src/cli/vigil) through /bin/sh with files for stdout/stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "support/vgt_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VIGIL VG_BINARY_DIR "/src/cli/vigil"
#define DATA VG_TEST_DATA_DIR "/pdq/"
#define BRIDGE DATA "reg-test-input/dih/bridge-1-original.jpg"
#define BRIDGE_HASH "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"

typedef struct {
    char dir[64];
    char junk[128], empty[128];
} fixture;

/* Runs `vigil <args>` (args is shell text). */
static vgt_run_result run_vigil(const fixture *fx, const char *args)
{
    return vgt_run(fx->dir, "", VIGIL, args, 1 << 20);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/vigil-pdq-cli-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->junk, sizeof fx->junk, "%s/junk.jpg", fx->dir);
    snprintf(fx->empty, sizeof fx->empty, "%s/empty.png", fx->dir);
    FILE *f = fopen(fx->junk, "w");
    fputs("this is not an image at all, whatever its name says\n", f);
    fclose(f);
    f = fopen(fx->empty, "w");
    fclose(f);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void test_help(void **state)
{
    vgt_run_result r = run_vigil(*state, "hash --help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: vigil hash"));
    assert_non_null(strstr(r.out, "--mode"));
    assert_string_equal(r.err, "");
    vgt_run_free(&r);
    r = run_vigil(*state, "--help");
    assert_non_null(strstr(r.out, "hash"));
    vgt_run_free(&r);
}

static void test_usage_errors(void **state)
{
    static const char *cases[] = {"hash",
                                  "hash --json",
                                  "hash --frobnicate " BRIDGE,
                                  "hash --mode " BRIDGE,
                                  "hash --mode slow " BRIDGE,
                                  "hash --min-side big " BRIDGE,
                                  "hash --min-side -1 " BRIDGE,
                                  "hash - - < " BRIDGE};
    for (size_t i = 0; i < VG_ARRAY_LEN(cases); i++) {
        vgt_run_result r = run_vigil(*state, cases[i]);
        assert_int_equal(r.status, 2);
        assert_string_equal(r.out, "");
        assert_int_equal(count_lines(r.err), 1);
        assert_true(strncmp(r.err, "vigil hash: ", 12) == 0);
        vgt_run_free(&r);
    }
}

/* compat prints exactly what pdq-photo-hasher prints. */
static void test_compat_line(void **state)
{
    vgt_run_result r = run_vigil(*state, "hash --mode compat " BRIDGE);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, BRIDGE_HASH ",100," BRIDGE "\n");
    assert_string_equal(r.err, "");
    vgt_run_free(&r);
    r = run_vigil(*state, "hash --mode=compat " BRIDGE);
    assert_string_equal(r.out, BRIDGE_HASH ",100," BRIDGE "\n");
    vgt_run_free(&r);
}

/* --dihedral: pdq-photo-hasher --pdqdih-across's line (8 hashes, quality, name). */
static void test_dihedral_line(void **state)
{
    vgt_run_result r = run_vigil(*state, "hash --dihedral --mode compat " BRIDGE);
    assert_int_equal(r.status, 0);
    uint8_t *ref;
    size_t len;
    assert_int_equal(vg_read_file(DATA "cpp_reference_dihedral_bridge1.txt", 1 << 16, &ref, &len),
                     VG_OK);
    /* the reference's line ends with its own path; compare the 8 hashes and the quality */
    char *cut = strstr((char *)ref, ",100,");
    assert_non_null(cut);
    size_t keep = (size_t)(cut - (char *)ref) + 5;
    assert_int_equal(strncmp(r.out, (char *)ref, keep), 0);
    assert_string_equal(r.out + keep, BRIDGE "\n");
    vg_free(ref);
    vgt_run_free(&r);
}

static void test_stdin(void **state)
{
    vgt_run_result r = run_vigil(*state, "hash --mode compat - < " BRIDGE);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, BRIDGE_HASH ",100,-\n");
    vgt_run_free(&r);
    /* fast (the default) from stdin: same bytes as from the file */
    vgt_run_result a = run_vigil(*state, "hash - < " BRIDGE);
    vgt_run_result b = run_vigil(*state, "hash " BRIDGE);
    assert_int_equal(a.status, 0);
    assert_int_equal(strncmp(a.out, b.out, 64), 0);
    vgt_run_free(&a);
    vgt_run_free(&b);
}

/* A bad file gives one error line; the others are still hashed; exit status 1. */
static void test_bad_files_go_on(void **state)
{
    const fixture *fx = *state;
    char args[1024];
    snprintf(args, sizeof args, "hash --mode compat %s %s/missing.jpg %s %s " BRIDGE, BRIDGE,
             fx->dir, fx->junk, fx->empty);
    vgt_run_result r = run_vigil(fx, args);
    assert_int_equal(r.status, 1);
    assert_int_equal(count_lines(r.out), 2);
    assert_int_equal(count_lines(r.err), 3);
    char want[512];
    snprintf(want, sizeof want, "vigil hash: %s/missing.jpg: ", fx->dir);
    assert_non_null(strstr(r.err, want));
    snprintf(want, sizeof want, "vigil hash: %s: ", fx->junk);
    assert_non_null(strstr(r.err, want));
    snprintf(want, sizeof want, "vigil hash: %s: ", fx->empty);
    assert_non_null(strstr(r.err, want));
    /* the missing file's line names it once, not twice */
    snprintf(want, sizeof want, "%s/missing.jpg: %s/missing.jpg", fx->dir, fx->dir);
    assert_null(strstr(r.err, want));
    vgt_run_free(&r);
}

/* JSON lines: every field, the unreliable flag, the dihedral list. */
static void test_json(void **state)
{
    vgt_run_result r =
        run_vigil(*state, "hash --json --mode compat " BRIDGE " " DATA "misc-images/small.jpg");
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 2);
    char *second = strchr(r.out, '\n') + 1;
    assert_non_null(strstr(r.out, "{\"file\":\"" BRIDGE "\",\"hash\":\"" BRIDGE_HASH
                                  "\",\"quality\":100,\"unreliable\":false,\"width\":1600,"
                                  "\"height\":1004,\"decode_ms\":"));
    assert_non_null(strstr(r.out, "\"hash_ms\":"));
    assert_non_null(strstr(r.out, "\"mode\":\"compat\"}"));
    assert_non_null(
        strstr(second, "\"quality\":0,\"unreliable\":true,\"width\":224,\"height\":399"));
    vgt_run_free(&r);
    r = run_vigil(*state, "hash --json --dihedral " BRIDGE);
    assert_non_null(strstr(r.out, "\"mode\":\"fast\",\"dihedral\":[\""));
    assert_non_null(strstr(r.out, "\"]}\n"));
    vgt_run_free(&r);
}

/* fast (default, and DCT-scaled with --min-side) is within 10 bits of the reference on the
 * bridge photo. */
static void test_fast_default_close(void **state)
{
    static const char *const cmds[] = {"hash " BRIDGE, "hash --min-side 128 " BRIDGE};
    for (size_t k = 0; k < VG_ARRAY_LEN(cmds); k++) {
        vgt_run_result r = run_vigil(*state, cmds[k]);
        assert_int_equal(r.status, 0);
        assert_true(strlen(r.out) > 64 && r.out[64] == ',');
        r.out[64] = '\0';
        int d = 0;
        for (int i = 0; i < 64; i++) {
            char a[2] = {r.out[i], 0}, b[2] = {BRIDGE_HASH[i], 0};
            d += __builtin_popcount((unsigned)(strtol(a, NULL, 16) ^ strtol(b, NULL, 16)));
        }
        assert_true(d <= 10);
        vgt_run_free(&r);
    }
}

int main(void)
{
    if (access(VIGIL, X_OK) != 0) {
        fprintf(stderr, "test_pdq_cli: %s is not built\n", VIGIL);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_compat_line), cmocka_unit_test(test_dihedral_line),
        cmocka_unit_test(test_stdin),       cmocka_unit_test(test_bad_files_go_on),
        cmocka_unit_test(test_json),        cmocka_unit_test(test_fast_default_close),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
