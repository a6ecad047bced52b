/*
 * analyze: matching features against the tenant's protected references (recording them as
 * evidence is the catalog's: catalog_scan_record).
 *
 * Confidence (0..1) is a monotone map of the distance, chosen so that the default threshold sits
 * at about one half and an identical image is 1:
 *   exact (same SHA-256):  1 (found through the PDQ search and the resolver: see match_pdq)
 *   pdq:   1 - d / 64      (d in bits; unrelated images sit near 128 +- 8, so anything <= 31 is
 *                           far outside chance; 31 -> 0.52)
 *   face:  1 - d / 1.2     (L2; dlib's same-person threshold 0.6 -> 0.5)
 */
#include "analyze/analyze_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* Grows out->matches by one slot; NULL on out of memory. cap is the caller's capacity. */
static analyze_match *push(analyze_result *out, size_t *cap)
{
    if (out->n_matches == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        analyze_match *nm = vg_realloc(out->matches, ncap * sizeof *nm);
        if (!nm)
            return NULL;
        out->matches = nm;
        *cap = ncap;
    }
    analyze_match *m = &out->matches[out->n_matches++];
    memset(m, 0, sizeof *m);
    m->dihedral = -1;
    m->face_index = -1;
    m->query_region = m->ref_region = -1;
    return m;
}

const char *analyze_match_mechanism(const analyze_match *m, const char **region)
{
    if (region)
        *region = NULL;
    if (!m || m->kind != VG_MATCH_PDQ)
        return NULL;
    if (m->video_frames)
        return "video_frame";
    if (m->ref_region == PDQ_REGION_CENTRE90 || m->ref_region == PDQ_REGION_CENTRE80 ||
        m->ref_region == PDQ_REGION_TOP || m->ref_region == PDQ_REGION_BOTTOM) {
        if (region)
            *region = pdq_region_name((pdq_region)m->ref_region);
        return "region";
    }
    if (m->query_region == PDQ_REGION_FLIP || m->ref_region == PDQ_REGION_FLIP)
        return "flip";
    if (m->query_region == PDQ_REGION_TRIMMED || m->ref_region == PDQ_REGION_TRIMMED)
        return "trimmed";
    return "whole";
}

/* Variants of one query: every hash set's variants back to back, and for each, the set's region
 * and its index within the set. */
typedef struct pdq_variants {
    vg_pdq_hash h[INDEX_PDQ_MAX_VARIANTS];
    int region[INDEX_PDQ_MAX_VARIANTS];
    int dihedral[INDEX_PDQ_MAX_VARIANTS];
    size_t n;
} pdq_variants;

static void add_set(pdq_variants *v, const vg_pdq_hash *h, size_t n, int region)
{
    for (size_t i = 0; i < n && v->n < INDEX_PDQ_MAX_VARIANTS; i++, v->n++) {
        memcpy(v->h[v->n], h[i], sizeof v->h[v->n]);
        v->region[v->n] = region;
        v->dihedral[v->n] = (int)i;
    }
}

/* The query's copy-detection sets: the trimmed content with its 8 variants (a framed copy may
 * be rotated or mirrored too), and the true mirror of a small image as is (it stands in for the
 * derived mirror variants, which are off on small images; its own variants would duplicate the
 * whole set's). Centre crops of a query are not searched: a query is the copy, not the original,
 * and the reference's crops cover the query that is a crop. Only sets over the quality gate. */
static void add_copy_sets(pdq_variants *v, const analyze_features *f, int min_quality)
{
    int trimmed = 0;
    for (size_t i = 0; i < f->n_copies; i++) {
        const analyze_copy_hash *c = &f->copies[i];
        if (c->quality < min_quality)
            continue;
        /* the first trimmed set (the bars' content) with its 8 variants; the strict and caption
         * candidates after it as they are (a framed copy that is also rotated is met by the
         * first; 8 more variants each would take a query past the index's variant limit) */
        if (c->region == PDQ_REGION_TRIMMED)
            add_set(v, c->dihedral, trimmed++ ? 1 : 8, c->region);
        else if (c->region == PDQ_REGION_FLIP)
            add_set(v, c->dihedral, 1, c->region);
    }
}

/* Keeps one match per reference and kind, the best: m replaces an earlier match of its reference
 * at a larger distance; returns 1 when m is to be appended. (An exact candidate and a PDQ match
 * of one reference both stay until resolve_matches knows whether the candidate is exact.) */
static int merge_into(analyze_result *out, size_t first, const analyze_match *m)
{
    for (size_t i = first; i < out->n_matches; i++) {
        analyze_match *o = &out->matches[i];
        if (o->reference_key != m->reference_key || o->kind != m->kind)
            continue;
        int better = m->kind == VG_MATCH_EXACT
                         ? o->kind != VG_MATCH_EXACT
                         : o->kind != VG_MATCH_EXACT && m->distance < o->distance;
        if (better)
            *o = *m;
        return 0;
    }
    return 1;
}

/* One pass of the index over the variants v; matches merged into out from index first on. */
static int search_pdq(analyze_ctx *ctx, analyze_job *job, const pdq_variants *v, int threshold,
                      int min_quality, int exact_only, uint64_t tags, size_t first, size_t *cap)
{
    analyze_result *out = job->out;
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[VG_PDQ_BYTES])v->h;
    q.n_variants = v->n;
    q.threshold = threshold;
    q.profile_id = job->req.profile_id;
    q.min_quality = min_quality;
    q.tags = tags;
    index_pdq_result r;
    int rc = index_pdq_search(ctx->deps.index, job->req.tenant_id, &q, &r);
    if (rc)
        return rc;
    for (size_t i = 0; i < r.n; i++) {
        const index_pdq_match *im = &r.matches[i];
        analyze_match m;
        memset(&m, 0, sizeof m);
        m.face_index = -1;
        m.dihedral = m.query_region = m.ref_region = -1;
        snprintf(m.profile_id, sizeof m.profile_id, "%s", im->profile_id);
        m.reference_key = im->reference;
        if (exact_only) { /* a candidate: resolve_matches keeps it only if the bytes match */
            m.kind = VG_MATCH_EXACT;
            m.distance = 0;
            m.confidence = 1;
        } else {
            m.kind = VG_MATCH_PDQ;
            m.distance = im->distance;
            m.confidence = clamp01(1.0 - im->distance / 64.0);
            m.dihedral = v->dihedral[im->dihedral];
            m.query_region = v->region[im->dihedral];
            m.ref_region = im->tag;
        }
        if (!merge_into(out, first, &m))
            continue;
        analyze_match *slot = push(out, cap);
        if (!slot) {
            index_pdq_result_free(&r);
            return VG_ENOMEM;
        }
        *slot = m;
    }
    index_pdq_result_free(&r);
    return VG_OK;
}

/* PDQ matches, and exact copies: identical bytes hash identically, so every exact copy is a PDQ
 * hit at distance 0, which resolve_matches flags by comparing SHA-256s. The whole image's variants
 * and the copy-detection sets (trimmed, mirrored) go to the index as one query, so it is one pass
 * over the tenant's entries (the reference's parts included: each entry carries its region as its
 * tag) and one best match per reference. A whole hash under the quality gate is reported but not
 * matched (a flat image is near every other flat image); it is still searched at distance 0 so
 * that an exact copy of a flat work is found, and then the copy sets over the gate (a photo on a
 * large flat canvas) get a pass of their own, merged per reference. */
static int match_pdq(analyze_ctx *ctx, analyze_job *job, size_t *cap)
{
    const analyze_features *f = &job->out->features;
    if (!f->has_pdq)
        return VG_OK;
    const int gate = ctx->cfg.pdq_min_quality, thr = ctx->cfg.pdq_threshold;
    const int reliable = f->pdq_quality >= gate;
    const size_t first = job->out->n_matches;
    const uint64_t shared = PDQ_REGION_SHARED_MASK;
    pdq_variants v = {.n = 0};
    add_set(&v, (const vg_pdq_hash *)f->pdq_dihedral, 8, PDQ_REGION_WHOLE);
    int rc;
    if (reliable) {
        add_copy_sets(&v, f, gate);
        rc = search_pdq(ctx, job, &v, thr, gate, 0, shared, first, cap);
    } else {
        rc = search_pdq(ctx, job, &v, 0, 0, 1, shared, first, cap);
        pdq_variants c = {.n = 0};
        add_copy_sets(&c, f, gate);
        if (!rc && c.n)
            rc = search_pdq(ctx, job, &c, thr, gate, 0, shared, first, cap);
    }
    /* Each half (a logo in a corner or a caption across the bottom leaves the other intact)
     * meets only the same half of the references: against every entry a half, a smaller
     * picture than the whole, would meet more strangers. One variant, a pass of its own. */
    for (size_t i = 0; !rc && i < f->n_copies; i++) {
        const analyze_copy_hash *h = &f->copies[i];
        if ((h->region != PDQ_REGION_TOP && h->region != PDQ_REGION_BOTTOM) || h->quality < gate)
            continue;
        pdq_variants c = {.n = 0};
        add_set(&c, h->dihedral, 1, h->region);
        rc = search_pdq(ctx, job, &c, thr, gate, 0, (uint64_t)1 << h->region, first, cap);
    }
    return rc;
}

static int match_faces(analyze_ctx *ctx, analyze_job *job, size_t *cap)
{
    analyze_result *out = job->out;
    const analyze_features *f = &out->features;
    for (size_t i = 0; i < f->n_faces; i++) {
        index_face_query q = {.descriptor = f->faces[i].descriptor,
                              .threshold = ctx->cfg.face_threshold,
                              .top_k = INDEX_FACE_TOP_K_DEFAULT,
                              .profile_id = job->req.profile_id};
        index_face_result r;
        int rc = index_face_search(ctx->deps.index, job->req.tenant_id, &q, &r);
        if (rc)
            return rc;
        for (size_t k = 0; k < r.n; k++) {
            analyze_match *m = push(out, cap);
            if (!m) {
                index_face_result_free(&r);
                return VG_ENOMEM;
            }
            snprintf(m->profile_id, sizeof m->profile_id, "%s", r.matches[k].profile_id);
            m->reference_key = r.matches[k].reference;
            m->kind = VG_MATCH_FACE;
            m->distance = r.matches[k].distance;
            m->confidence = clamp01(1.0 - r.matches[k].distance / 1.2);
            m->face_index = (int)i;
        }
        index_face_result_free(&r);
    }
    return VG_OK;
}

static int match_order(const void *pa, const void *pb)
{
    const analyze_match *a = pa, *b = pb;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->distance != b->distance)
        return a->distance < b->distance ? -1 : 1;
    if (a->face_index != b->face_index)
        return a->face_index < b->face_index ? -1 : 1;
    return strcmp(a->reference_id, b->reference_id);
}

static int key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* m is worse than an earlier o of its reference (same kind group: PDQ and exact vs face)? */
static int supersedes(const analyze_match *o, const analyze_match *m)
{
    if ((o->kind == VG_MATCH_FACE) != (m->kind == VG_MATCH_FACE))
        return 0;
    if (o->kind == VG_MATCH_FACE) /* one per reference and face of the query */
        return o->face_index == m->face_index;
    if (o->kind != m->kind)
        return o->kind == VG_MATCH_EXACT;
    return o->distance <= m->distance;
}

/* The matches' references by key -> their ids (a match whose reference is gone since the
 * search is dropped) and SHA-256s: a PDQ match of the query's bytes becomes exact, an exact
 * candidate of other bytes is dropped; then one PDQ-or-exact match per reference, the best. */
static int resolve_matches(analyze_ctx *ctx, analyze_job *job)
{
    analyze_result *out = job->out;
    size_t n = out->n_matches;
    if (!n)
        return VG_OK;
    uint64_t *keys = vg_malloc(n * sizeof *keys);
    analyze_ref *refs = vg_malloc(n * sizeof *refs);
    if (!keys || !refs) {
        vg_free(keys);
        vg_free(refs);
        return vg_err_set(VG_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = out->matches[i].reference_key;
    qsort(keys, n, sizeof *keys, key_cmp);
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        if (nk == 0 || keys[nk - 1] != keys[i])
            keys[nk++] = keys[i];
    int rc = ctx->deps.resolve(ctx->deps.resolve_arg, job->req.tenant_id, keys, nk, refs);
    size_t kept = 0;
    for (size_t i = 0; rc == VG_OK && i < n; i++) {
        analyze_match m = out->matches[i];
        const uint64_t *at = bsearch(&m.reference_key, keys, nk, sizeof *keys, key_cmp);
        const analyze_ref *r = &refs[at - keys];
        if (!r->found)
            continue;
        snprintf(m.reference_id, sizeof m.reference_id, "%s", r->id);
        int same = memcmp(r->sha256, out->features.sha256, VG_SHA256_BYTES) == 0;
        if (m.kind == VG_MATCH_EXACT && !same)
            continue;
        if (m.kind == VG_MATCH_PDQ && same) {
            m.kind = VG_MATCH_EXACT;
            m.distance = 0;
            m.confidence = 1;
            m.dihedral = m.query_region = m.ref_region = -1;
        }
        size_t j = 0;
        while (j < kept &&
               !(out->matches[j].reference_key == m.reference_key &&
                 (supersedes(&out->matches[j], &m) || supersedes(&m, &out->matches[j]))))
            j++;
        if (j < kept) { /* the same reference twice: keep the better */
            if (!supersedes(&out->matches[j], &m))
                out->matches[j] = m;
            continue;
        }
        out->matches[kept++] = m;
    }
    if (rc == VG_OK)
        out->n_matches = kept;
    vg_free(keys);
    vg_free(refs);
    return rc;
}

int analyze__match(analyze_ctx *ctx, analyze_job *job)
{
    if (!ctx->deps.index)
        return VG_OK;
    uint64_t t = vg_now_ns();
    size_t cap = 0;
    int rc = match_pdq(ctx, job, &cap);
    if (!rc)
        rc = match_faces(ctx, job, &cap);
    if (!rc)
        rc = resolve_matches(ctx, job);
    if (rc)
        return rc;
    if (job->out->n_matches > 1) /* matches is NULL when there are none (qsort: UB) */
        qsort(job->out->matches, job->out->n_matches, sizeof *job->out->matches, match_order);
    job->out->timings.match_us = (vg_now_ns() - t) / 1000;
    return VG_OK;
}
