/*
 * The 14 ThreatExchange sample videos of tests/data/vpdq (header-only, like vgt_random.h): their
 * names in the order the vPDQ tests index them, and the families tests/data/vpdq/README.md
 * says match (every edit of a family matches its original; no family matches another), and the
 * check that the vPDQ index agrees with comparing every pair.
 */
#ifndef VGT_VPDQ_H
#define VGT_VPDQ_H

#include <string.h>

#define VGT_VPDQ_N 14
#define VGT_VPDQ_CHAIR_ORIG 6   /* chair-orig-22-sd-bar */
#define VGT_VPDQ_PATTERN_ORIG 8 /* pattern-hd-no-bar */

static const char *const vgt_vpdq_names[VGT_VPDQ_N] = {"chair-19-sd-bar",
                                                       "chair-20-sd-bar",
                                                       "chair-22-sd-grey-bar",
                                                       "chair-22-sd-sepia-bar",
                                                       "chair-22-with-large-logo-bar",
                                                       "chair-22-with-small-logo-bar",
                                                       "chair-orig-22-sd-bar",
                                                       "doorknob-hd-no-bar",
                                                       "pattern-hd-no-bar",
                                                       "pattern-longer-no-bar",
                                                       "pattern-sd-grey-bar",
                                                       "pattern-sd-with-large-logo-bar",
                                                       "pattern-sd-with-small-logo-bar",
                                                       "test-padded-dimensions"};

/* 0 chair, 1 pattern, 2 doorknob, 3 padded: the README's families. */
static inline int vgt_vpdq_family(int i)
{
    if (strncmp(vgt_vpdq_names[i], "chair", 5) == 0)
        return 0;
    if (strncmp(vgt_vpdq_names[i], "pattern", 7) == 0)
        return 1;
    return strncmp(vgt_vpdq_names[i], "doorknob", 8) == 0 ? 2 : 3;
}

/* video_compare of sample videos i and j (q, c: their hashes) into *a, checked against comparing
 * every pair (video__compare_brute): the index finds exactly the frames that rule finds. Needs
 * cmocka.h and video/video_int.h included before this header. */
static inline void vgt_vpdq_compare_exact(const video_hash *q, const video_hash *c,
                                          const video_match_opts *mo, int i, int j, video_match *a)
{
    video_match b;
    assert_int_equal(video_compare(q, c, mo, a), VG_OK);
    assert_int_equal(video__compare_brute(q, c, mo, &b), VG_OK);
    if (a->query_matched != b.query_matched || a->compared_matched != b.compared_matched ||
        a->query_frames != b.query_frames || a->compared_frames != b.compared_frames)
        fail_msg("%s vs %s: index %u/%u of %u/%u, all pairs %u/%u of %u/%u", vgt_vpdq_names[i],
                 vgt_vpdq_names[j], a->query_matched, a->compared_matched, a->query_frames,
                 a->compared_frames, b.query_matched, b.compared_matched, b.query_frames,
                 b.compared_frames);
}

/* The searches of ix (its word tables) and flat (the same videos added, never built: every
 * entry scanned, no table read) give the same result for q under mo, field by field: which
 * videos, both percentages, how each frame met (by_mech), every segment. The index may only
 * find faster what the scan finds, never something else. Needs cmocka.h before this header. */
static inline void vgt_vpdq_same_as_flat(const video_index *ix, const video_index *flat,
                                         const video_hash *q, const video_match_opts *mo)
{
    video_result a, b;
    assert_int_equal(video_index_search(ix, q, mo, &a), VG_OK);
    assert_int_equal(video_index_search(flat, q, mo, &b), VG_OK);
    assert_int_equal(a.n, b.n);
    assert_int_equal(a.query_frames, b.query_frames);
    for (size_t k = 0; k < a.n; k++) {
        const video_match *x = &a.matches[k], *y = &b.matches[k];
        assert_int_equal(x->video, y->video);
        assert_int_equal(x->query_matched, y->query_matched);
        assert_int_equal(x->compared_matched, y->compared_matched);
        assert_int_equal(x->compared_frames, y->compared_frames);
        assert_int_equal(x->match, y->match);
        assert_int_equal(x->clip_match, y->clip_match);
        assert_memory_equal(x->by_mech, y->by_mech, sizeof x->by_mech);
        assert_memory_equal(&x->clip, &y->clip, sizeof x->clip);
        assert_int_equal(x->n_segments, y->n_segments);
        if (x->n_segments)
            assert_memory_equal(x->segments, y->segments, x->n_segments * sizeof *x->segments);
    }
    video_result_free(&a);
    video_result_free(&b);
}

#endif /* VGT_VPDQ_H */
