/* index: the best candidate per reference, then the k best references. Both searches report a
 * reference once, with its best distance, ordered by distance and then reference key, and keep
 * the first k (PDQ: max_results; faces: top_k); this is the one place that does it.
 *
 * Candidates are entries that passed the threshold, few next to the entries scanned, so a sort
 * by reference does the per-reference reduction. The k best of the m references are then
 * selected with a bounded max-heap, O(m log k), and only those k are sorted by the full order:
 * a face query with top_k 10 among many close references no longer sorts them all. The order is
 * total (keys are distinct after the reduction), so which k are kept never depends on the input
 * order.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define CANDS_MIN_CAP 64

int index__cands_push(index__cands *c, index__cand x)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : CANDS_MIN_CAP;
        index__cand *v = vg_realloc(c->v, cap * sizeof *v);
        if (!v)
            return VG_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = x;
    return VG_OK;
}

/* A reference's candidates together, its best first. */
static int by_ref(const void *pa, const void *pb)
{
    const index__cand *a = pa, *b = pb;
    if (a->ref != b->ref)
        return a->ref < b->ref ? -1 : 1;
    if (a->dist != b->dist)
        return a->dist < b->dist ? -1 : 1;
    if (a->tie != b->tie)
        return a->tie < b->tie ? -1 : 1;
    /* PDQ: the lowest entry tag (the whole image before its parts), so the choice among a
     * reference's equally good entries never depends on qsort's order */
    return (a->aux > b->aux) - (a->aux < b->aux);
}

/* < 0 when a ranks before b (is the better match). */
static int rank(const index__cand *a, const index__cand *b)
{
    if (a->dist != b->dist)
        return a->dist < b->dist ? -1 : 1;
    return (a->ref > b->ref) - (a->ref < b->ref);
}

static int rank_cmp(const void *a, const void *b)
{
    return rank(a, b);
}

/* Max-heap by rank over h[0..n): the root is the worst candidate kept. */
static void sift_down(index__cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, w = i;
        if (l < n && rank(&h[l], &h[w]) > 0)
            w = l;
        if (l + 1 < n && rank(&h[l + 1], &h[w]) > 0)
            w = l + 1;
        if (w == i)
            return;
        index__cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

size_t index__topk(index__cand *c, size_t n, size_t k, size_t *n_refs)
{
    size_t m = 0;
    if (n) { /* c may be NULL when n is 0 (qsort: UB) */
        qsort(c, n, sizeof *c, by_ref);
        for (size_t i = 0; i < n; i++)
            if (m == 0 || c[m - 1].ref != c[i].ref)
                c[m++] = c[i];
    }
    if (n_refs)
        *n_refs = m;
    size_t kept = VG_MIN(k, m);
    if (!kept)
        return 0;
    if (kept < m) {
        for (size_t i = kept / 2; i-- > 0;)
            sift_down(c, kept, i);
        for (size_t i = kept; i < m; i++) {
            if (rank(&c[i], &c[0]) < 0) {
                c[0] = c[i];
                sift_down(c, kept, 0);
            }
        }
    }
    qsort(c, kept, sizeof *c, rank_cmp);
    return kept;
}
