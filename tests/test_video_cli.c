/* `vigil vhash` and `vigil vcompare`, run as a user would: output formats, video or listing
 * arguments, bad input (one stderr line, non-zero exit), usage errors. */
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
#include <unistd.h>

#define VIGIL VG_BINARY_DIR "/src/cli/vigil"
#define DATA VG_TEST_DATA_DIR "/vpdq/"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vigil-video-cli-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static vgt_run_result run_vigil(const char *args)
{
    return vgt_run(dir, "", VIGIL, args, 4 << 20);
}

static void test_vhash_every_frame(void **state)
{
    (void)state;
    vgt_run_result r = run_vigil("vhash --every-frame '" DATA "fixtures/small-h264.mp4'");
    assert_int_equal(r.status, 0);
    assert_int_equal(count_lines(r.out), 20); /* 2 s at 10 frames/s */
    unsigned fr;
    int q;
    char hex[65];
    double ts;
    assert_int_equal(sscanf(r.out, "%u,%d,%64[0-9a-f],%lf", &fr, &q, hex, &ts), 4);
    assert_int_equal(fr, 0);
    assert_int_equal(strlen(hex), 64);
    assert_string_equal(r.err, "");
    vgt_run_result s = run_vigil("vhash --rate 2 '" DATA "fixtures/small-h264.mp4'");
    assert_int_equal(s.status, 0);
    assert_true(count_lines(s.out) >= 1 && count_lines(s.out) <= 4);
    vgt_run_free(&s);
    vgt_run_free(&r);
}

static void test_vhash_bad_input(void **state)
{
    (void)state;
    char junk[128];
    snprintf(junk, sizeof junk, "%s/junk.mp4", dir);
    FILE *f = fopen(junk, "w");
    fputs("not a video\n", f);
    fclose(f);
    char args[512];
    snprintf(args, sizeof args,
             "vhash '%s' '" DATA "fixtures/small-vp8.webm' '" DATA "fixtures/mpeg4-in-mp4.mp4'",
             junk);
    vgt_run_result r = run_vigil(args);
    assert_int_equal(r.status, 1);
    assert_int_equal(count_lines(r.err), 2); /* one line per failed file */
    assert_non_null(strstr(r.err, "junk.mp4"));
    assert_non_null(strstr(r.err, "allow-list"));
    assert_non_null(strstr(r.out, "# " DATA "fixtures/small-vp8.webm")); /* the good one */
    vgt_run_free(&r);
    r = run_vigil("vhash --rate 0 x.mp4");
    assert_int_equal(r.status, 2);
    vgt_run_free(&r);
    r = run_vigil("vhash");
    assert_int_equal(r.status, 2);
    vgt_run_free(&r);
}

static void test_vcompare(void **state)
{
    (void)state;
    /* listing vs listing (the reference's own hashes): an edit of the original */
    vgt_run_result r = run_vigil("vcompare --json '" DATA "hashes/chair-19-sd-bar.txt' '" DATA
                                 "hashes/chair-orig-22-sd-bar.txt'");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"query_match_percent\":100.00"));
    assert_non_null(strstr(r.out, "\"compared_match_percent\":"));
    assert_non_null(strstr(r.out, "\"match\":true"));
    assert_non_null(strstr(r.out, "\"segments\":[{"));
    vgt_run_free(&r);
    /* video vs listing, across families: no match, exit 3 */
    r = run_vigil("vcompare --every-frame '" DATA "videos/doorknob-hd-no-bar.mp4' '" DATA
                  "hashes/pattern-hd-no-bar.txt'");
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.out, "match: no"));
    vgt_run_free(&r);
    /* a video against its own listing made by vhash */
    char listing[128], args[512];
    snprintf(listing, sizeof listing, "%s/door.txt", dir);
    r = run_vigil("vhash '" DATA "videos/doorknob-hd-no-bar.mp4'");
    assert_int_equal(r.status, 0);
    FILE *f = fopen(listing, "w");
    fputs(r.out, f);
    fclose(f);
    vgt_run_free(&r);
    snprintf(args, sizeof args, "vcompare '" DATA "videos/doorknob-hd-no-bar.mp4' '%s'", listing);
    r = run_vigil(args);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "100.00 Percentage Compared Video match"));
    vgt_run_free(&r);
    /* bad input: one line, exit 1; usage: exit 2 */
    r = run_vigil("vcompare '" DATA "fixtures/h264-in-avi.avi' '" DATA
                  "hashes/pattern-hd-no-bar.txt'");
    assert_int_equal(r.status, 1);
    assert_int_equal(count_lines(r.err), 1);
    vgt_run_free(&r);
    r = run_vigil("vcompare only-one.txt");
    assert_int_equal(r.status, 2);
    vgt_run_free(&r);
}

/* Regions (docs/VIDEO.md "Regions"): the large-logo edit matches its original at the default
 * 1 frame/s through its halves (matched_by says so), not by whole hashes (--whole-only); the
 * pillarboxed pattern edit with a logo through the halves of its trimmed content. vhash
 * --regions lists the region hashes, and vcompare reads them back from the listing. */
static void test_vcompare_regions(void **state)
{
    (void)state;
    vgt_run_result r =
        run_vigil("vcompare --json '" DATA "videos/chair-22-with-large-logo-bar.mp4' '" DATA
                  "videos/chair-orig-22-sd-bar.mp4'");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"match\":true"));
    const char *mb = strstr(r.out, "],\"matched_by\":{\"whole\":");
    assert_non_null(mb);
    unsigned whole = 0, trimmed = 0, half = 0;
    assert_int_equal(sscanf(mb, "],\"matched_by\":{\"whole\":%u,\"trimmed\":%u,\"half\":%u", &whole,
                            &trimmed, &half),
                     3);
    assert_true(half > whole);
    vgt_run_free(&r);
    r = run_vigil("vcompare --whole-only '" DATA "videos/chair-22-with-large-logo-bar.mp4' '" DATA
                  "videos/chair-orig-22-sd-bar.mp4'");
    assert_int_equal(r.status, 3);
    vgt_run_free(&r);
    char listing[128], args[512];
    snprintf(listing, sizeof listing, "%s/pattern.txt", dir);
    r = run_vigil("vhash --regions '" DATA "videos/pattern-sd-with-large-logo-bar.mp4'");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, ",trimmed:"));
    assert_non_null(strstr(r.out, ",bottom:"));
    FILE *f = fopen(listing, "w");
    fputs(r.out, f);
    fclose(f);
    vgt_run_free(&r);
    snprintf(args, sizeof args, "vcompare '%s' '" DATA "videos/pattern-hd-no-bar.mp4'", listing);
    r = run_vigil(args);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "match: yes"));
    vgt_run_free(&r);
    r = run_vigil("vhash '" DATA "videos/pattern-sd-with-large-logo-bar.mp4'");
    assert_null(strstr(r.out, "trimmed:")); /* the plain listing is unchanged */
    vgt_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vhash_every_frame),
        cmocka_unit_test(test_vhash_bad_input),
        cmocka_unit_test(test_vcompare),
        cmocka_unit_test(test_vcompare_regions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
