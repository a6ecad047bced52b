/* video regions: region hashes of sampled frames (the content inside bars, the top and bottom
 * halves of the content) and the vPDQ rule with them, on the 14 sample videos: the full match
 * matrix of tests/data/vpdq/README.md, the index against comparing every pair, no frame of one
 * family meeting a frame of another, and the text and whole-only forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "video/video.h"
#include "video/video_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/vgt_vpdq.h"

#define DATA VG_TEST_DATA_DIR "/vpdq/"

/* The README's relations: an edit (any other video of a family) and its original. */
static int original_of(int i)
{
    return vgt_vpdq_family(i) == 0   ? VGT_VPDQ_CHAIR_ORIG
           : vgt_vpdq_family(i) == 1 ? VGT_VPDQ_PATTERN_ORIG
                                     : i;
}

/* Sampled-mode hashes with regions at every frame (MATRIX_RATE is at least each video's frame
 * rate), made once: as the reference rule's matrix, the whole video is compared, not every
 * 30th frame (at 1 frame/s the chair videos' fast motion leaves chair-19 vs the original at 9%
 * by any hash: their samples fall on different moments). */
#define MATRIX_RATE 30.0
static video_hash sam[VGT_VPDQ_N];

static int group_setup(void **state)
{
    (void)state;
    video_hash_opts o;
    video_hash_opts_default(&o);
    o.rate = MATRIX_RATE;
    for (int i = 0; i < VGT_VPDQ_N; i++) {
        char path[512];
        snprintf(path, sizeof path, DATA "videos/%s.mp4", vgt_vpdq_names[i]);
        if (video_hash_file(path, &o, &sam[i]) != VG_OK) {
            fprintf(stderr, "%s: %s\n", path, vg_err_msg());
            return -1;
        }
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < VGT_VPDQ_N; i++)
        video_hash_free(&sam[i]);
    return 0;
}

/* Sampled frames carry regions: the chair videos have bars (a trimmed hash), every video has
 * halves on most frames; a video without bars has no trimmed hash. */
static void test_regions_hashed(void **state)
{
    (void)state;
    for (int i = 0; i < VGT_VPDQ_N; i++) {
        size_t n[VIDEO_REGION_COUNT] = {0};
        for (size_t k = 0; k < sam[i].n; k++)
            for (int r = 0; r < VIDEO_REGION_COUNT; r++)
                n[r] += sam[i].frames[k].regions >> r & 1u;
        printf("%-32s %3zu frames: trimmed %3zu, top %3zu, bottom %3zu\n", vgt_vpdq_names[i],
               sam[i].n, n[0], n[1], n[2]);
        if (vgt_vpdq_family(i) == 0)
            assert_true(n[VIDEO_REGION_TRIMMED] * 2 > sam[i].n);
        assert_true(n[VIDEO_REGION_TOP] + n[VIDEO_REGION_BOTTOM] > 0);
    }
    assert_int_equal(sam[VGT_VPDQ_PATTERN_ORIG].frames[0].regions >> VIDEO_REGION_TRIMMED & 1u, 0);
}

/* The full 14x14 matrix of the README with regions: every video matches itself, every edit
 * matches its original both ways (and every other edit of it: they show the same content), no
 * chair video matches a pattern video or the doorknob and the other way round, the doorknob and
 * the padded video match only themselves; the index finds what comparing every pair finds. */
static void test_region_matrix(void **state)
{
    (void)state;
    video_match_opts mo;
    video_match_opts_default(&mo);
    int matches = 0;
    uint32_t by[VIDEO_MECH_COUNT] = {0};
    printf("query \\ compared (compared %%, * match):\n");
    for (int i = 0; i < VGT_VPDQ_N; i++) {
        printf("%-31s", vgt_vpdq_names[i]);
        for (int j = 0; j < VGT_VPDQ_N; j++) {
            video_match a;
            vgt_vpdq_compare_exact(&sam[i], &sam[j], &mo, i, j, &a);
            printf(" %3.0f%c", a.compared_match_pct, a.match ? '*' : ' ');
            uint32_t sum = 0;
            for (int k = 0; k < VIDEO_MECH_COUNT; k++) {
                sum += a.by_mech[k];
                by[k] += a.by_mech[k];
            }
            assert_int_equal(sum, a.query_matched);
            if (i == j)
                assert_true(a.match && a.compared_match_pct == 100.0 &&
                            a.by_mech[VIDEO_MECH_WHOLE] == a.query_matched);
            if (vgt_vpdq_family(i) != vgt_vpdq_family(j) && a.match)
                fail_msg("%s matches %s across families (%.1f%%)", vgt_vpdq_names[i],
                         vgt_vpdq_names[j], a.compared_match_pct);
            if (vgt_vpdq_family(i) != vgt_vpdq_family(j))
                assert_false(a.clip_match);
            if ((j == original_of(i) || i == original_of(j)) && !a.match)
                fail_msg("%s does not match %s (%.1f%% of the compared frames)", vgt_vpdq_names[i],
                         vgt_vpdq_names[j], a.compared_match_pct);
            assert_int_equal(a.match, vgt_vpdq_family(i) == vgt_vpdq_family(j));
            matches += a.match;
            video_match_free(&a);
        }
        printf("\n");
    }
    printf("14x14 matrix with regions: %d matching pairs; matched query frames by whole %u, "
           "trimmed %u, half %u\n",
           matches, by[0], by[1], by[2]);
}

/* The whole-only rule (regions 0) ignores region hashes: the same verdicts as the frames with
 * their regions removed. */
static void test_whole_only(void **state)
{
    (void)state;
    video_match_opts mo;
    video_match_opts_default(&mo);
    mo.regions = 0;
    video_hash bare[VGT_VPDQ_N];
    for (int i = 0; i < VGT_VPDQ_N; i++) {
        bare[i] = sam[i];
        bare[i].frames = malloc(sam[i].n * sizeof *bare[i].frames);
        assert_non_null(bare[i].frames);
        memcpy(bare[i].frames, sam[i].frames, sam[i].n * sizeof *bare[i].frames);
        for (size_t k = 0; k < sam[i].n; k++)
            bare[i].frames[k].regions = 0;
    }
    int large_logo_matches = 0;
    for (int i = 0; i < VGT_VPDQ_N; i++)
        for (int j = 0; j < VGT_VPDQ_N; j++) {
            video_match a, b;
            assert_int_equal(video_compare(&sam[i], &sam[j], &mo, &a), VG_OK);
            video_match_opts def;
            video_match_opts_default(&def);
            assert_int_equal(video_compare(&bare[i], &bare[j], &def, &b), VG_OK);
            assert_int_equal(a.query_matched, b.query_matched);
            assert_int_equal(a.compared_matched, b.compared_matched);
            assert_int_equal(a.match, b.match);
            assert_int_equal(a.by_mech[VIDEO_MECH_WHOLE], a.query_matched);
            large_logo_matches += i == 4 && j == VGT_VPDQ_CHAIR_ORIG && a.match;
            video_match_free(&a);
            video_match_free(&b);
        }
    /* what the regions are for: the large logo does not reach its original by whole hashes */
    assert_int_equal(large_logo_matches, 0);
    for (int i = 0; i < VGT_VPDQ_N; i++)
        free(bare[i].frames);
}

/* No frame of one family meets a frame of another by any of its hashes: every 5th frame of each
 * video against every 5th of the others across families (over 200,000 pairs), counted by the
 * frame rule with regions (the matrix above counts whole videos; this counts single frames). */
#define UNRELATED_STRIDE 5
static void test_unrelated_frames(void **state)
{
    (void)state;
    video_match_opts mo;
    video_match_opts_default(&mo);
    size_t pairs = 0, met = 0;
    for (int i = 0; i < VGT_VPDQ_N; i++)
        for (int j = i + 1; j < VGT_VPDQ_N; j++) {
            if (vgt_vpdq_family(i) == vgt_vpdq_family(j) || vgt_vpdq_family(i) == 3 ||
                vgt_vpdq_family(j) == 3)
                continue;
            for (size_t a = 0; a < sam[i].n; a += UNRELATED_STRIDE)
                for (size_t b = 0; b < sam[j].n; b += UNRELATED_STRIDE) {
                    video_hash qa = {.frames = &sam[i].frames[a], .n = 1};
                    video_hash qb = {.frames = &sam[j].frames[b], .n = 1};
                    video_match m;
                    assert_int_equal(video__compare_brute(&qa, &qb, &mo, &m), VG_OK);
                    pairs += m.query_frames && m.compared_frames;
                    met += m.query_matched;
                }
        }
    printf("%zu frame pairs across families (chair, pattern, doorknob): %zu meet with regions\n",
           pairs, met);
    assert_true(pairs >= 1000);
    assert_int_equal(met, 0);
}

/* The index's word tables find exactly what scanning every entry finds, with regions and
 * without: one index of the 14 sampled videos against the same videos never built (searched
 * by a flat scan), each video as the query, every video with a matched frame reported. */
static void test_index_equals_flat_scan(void **state)
{
    (void)state;
    video_index *ix = video_index_new(PDQ_MIN_RELIABLE_QUALITY);
    video_index *flat = video_index_new(PDQ_MIN_RELIABLE_QUALITY);
    assert_non_null(ix);
    assert_non_null(flat);
    for (int i = 0; i < VGT_VPDQ_N; i++) {
        assert_int_equal(video_index_add(ix, vgt_vpdq_names[i], &sam[i], NULL), VG_OK);
        assert_int_equal(video_index_add(flat, vgt_vpdq_names[i], &sam[i], NULL), VG_OK);
    }
    assert_int_equal(video_index_build(ix), VG_OK);
    video_match_opts mo;
    video_match_opts_default(&mo);
    mo.only_matches = 0;
    for (int regions = 0; regions <= 1; regions++) {
        mo.regions = regions;
        for (int i = 0; i < VGT_VPDQ_N; i++)
            vgt_vpdq_same_as_flat(ix, flat, &sam[i], &mo);
    }
    video_index_free(ix);
    video_index_free(flat);
}

/* `vigil vhash --regions` lines read back with their regions; plain lines without. */
static void test_regions_text(void **state)
{
    (void)state;
    const video_hash *h = &sam[4];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(video_hash_write_ex(h, f, 1), VG_OK);
    fclose(f);
    video_hash p;
    assert_int_equal(video_hash_parse(buf, len, &p), VG_OK);
    assert_int_equal(p.n, h->n);
    for (size_t k = 0; k < h->n; k++) {
        assert_int_equal(p.frames[k].regions, h->frames[k].regions);
        for (int r = 0; r < VIDEO_REGION_COUNT; r++)
            if (h->frames[k].regions >> r & 1u) {
                assert_true(pdq_hash_equal(&p.frames[k].region[r], &h->frames[k].region[r]));
                assert_int_equal(p.frames[k].region_quality[r], h->frames[k].region_quality[r]);
            }
    }
    video_hash_free(&p);
    free(buf);
    assert_int_equal(video_hash_parse("0,90,00,0.0,middle:50:00\n", 25, &p), VG_EINVAL);
    f = open_memstream(&buf, &len);
    assert_int_equal(video_hash_write(h, f), VG_OK);
    fclose(f);
    assert_int_equal(video_hash_parse(buf, len, &p), VG_OK);
    for (size_t k = 0; k < p.n; k++)
        assert_int_equal(p.frames[k].regions, 0);
    video_hash_free(&p);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regions_hashed), cmocka_unit_test(test_region_matrix),
        cmocka_unit_test(test_whole_only),     cmocka_unit_test(test_unrelated_frames),
        cmocka_unit_test(test_regions_text),   cmocka_unit_test(test_index_equals_flat_scan),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
