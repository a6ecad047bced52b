/*
 * analyze: matching features against the tenant's protected references (recording them as
 * evidence is the catalog's: catalog_scan_record).
 *
 * Confidence (0..1) is a monotone map of the distance, chosen so that the default threshold sits
 * at about one half and an identical image is 1:
 *   exact (same SHA-256):  1 (found through the PDQ search: see match_pdq)
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
    return m;
}

/* PDQ matches, and exact copies: identical bytes hash identically, so every exact copy is a PDQ
 * hit at distance 0 that the index flags by comparing SHA-256s. A hash under the quality gate is
 * reported but not matched (a flat image is near every other flat image); it is still searched at
 * distance 0 so that an exact copy of a flat work is found. */
static int match_pdq(analyze_ctx *ctx, analyze_job *job, size_t *cap)
{
    analyze_result *out = job->out;
    const analyze_features *f = &out->features;
    if (!f->has_pdq)
        return VG_OK;
    int reliable = f->pdq_quality >= ctx->cfg.pdq_min_quality;
    index_pdq_query q = index_pdq_query_defaults();
    q.variants = (const uint8_t(*)[VG_PDQ_BYTES])f->pdq_dihedral;
    q.n_variants = 8;
    q.threshold = reliable ? ctx->cfg.pdq_threshold : 0;
    q.profile_id = job->req.profile_id;
    q.min_quality = reliable ? ctx->cfg.pdq_min_quality : 0;
    q.sha256 = f->sha256;
    index_pdq_result r;
    int rc = index_pdq_search(ctx->deps.index, job->req.tenant_id, &q, &r);
    if (rc)
        return rc;
    for (size_t i = 0; i < r.n; i++) {
        const index_pdq_match *im = &r.matches[i];
        if (!im->exact && !reliable)
            continue;
        analyze_match *m = push(out, cap);
        if (!m) {
            index_pdq_result_free(&r);
            return VG_ENOMEM;
        }
        snprintf(m->profile_id, sizeof m->profile_id, "%s", im->profile_id);
        snprintf(m->reference_id, sizeof m->reference_id, "%s", im->reference_id);
        if (im->exact) {
            m->kind = VG_MATCH_EXACT;
            m->distance = 0;
            m->confidence = 1;
        } else {
            m->kind = VG_MATCH_PDQ;
            m->distance = im->distance;
            m->confidence = clamp01(1.0 - im->distance / 64.0);
            m->dihedral = im->dihedral;
        }
    }
    index_pdq_result_free(&r);
    return VG_OK;
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
            snprintf(m->reference_id, sizeof m->reference_id, "%s", r.matches[k].reference_id);
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

int analyze__match(analyze_ctx *ctx, analyze_job *job)
{
    if (!ctx->deps.index)
        return VG_OK;
    uint64_t t = vg_now_ns();
    size_t cap = 0;
    int rc = match_pdq(ctx, job, &cap);
    if (!rc)
        rc = match_faces(ctx, job, &cap);
    if (rc)
        return rc;
    if (job->out->n_matches > 1) /* matches is NULL when there are none (qsort: UB) */
        qsort(job->out->matches, job->out->n_matches, sizeof *job->out->matches, match_order);
    job->out->timings.match_us = (vg_now_ns() - t) / 1000;
    return VG_OK;
}
