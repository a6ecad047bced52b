/* index: face descriptors. Adds, and searches by a flat SIMD scan of squared L2 distances
 * against the squared threshold (strict), then the best descriptor per reference and the top_k
 * best references (index_topk.c).
 */
#include "index/index_int.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

/* ---- adds ----------------------------------------------------------------------------------- */

int index_face_add(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                   const float descriptor[VG_DESCRIPTOR_DIM])
{
    int rc = index__check_add(tenant, profile, ref);
    if (rc)
        return rc;
    if (!descriptor)
        return vg_err_set(VG_EINVAL, "no face descriptor");
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++)
        if (!isfinite(descriptor[i]))
            return vg_err_set(VG_EINVAL, "face descriptor component %d is not finite", i);
    index__add a;
    if ((rc = index__add_begin(ix, tenant, profile, ref, INDEX__KIND_FACE, &a)))
        return rc;
    index__shard *sh = a.sh;
    index__view *v = sh->cur;
    size_t p = sh->face_n;
    memcpy(v->face_rows + p * VG_DESCRIPTOR_DIM, descriptor, VG_DESCRIPTOR_DIM * sizeof(float));
    v->face_ref[p] = index__ref_word(ref, a.profile);
    v->face_alive[p] = 1;
    index__add_end(&a, INDEX__KIND_FACE, ref);
    pthread_mutex_unlock(&sh->write_mutex);
    return VG_OK;
}

/* ---- search -------------------------------------------------------------------------------- */

static int face_search_pinned(const index_db *ix, const index__pin *pn, const float *qv, float t2,
                              size_t top_k, index_face_result *out)
{
    const index__view *v = pn->v;
    if (pn->unknown_profile)
        return VG_OK;
    enum { CHUNK = 1024 };
    float d2[CHUNK];
    index__cands c = {0};
    for (size_t b = 0; b < pn->face_n; b += CHUNK) {
        size_t n = VG_MIN((size_t)CHUNK, pn->face_n - b);
        ix->face_dist(v->face_rows + b * VG_DESCRIPTOR_DIM, n, qv, d2);
        for (size_t i = 0; i < n; i++) {
            if (!(d2[i] < t2))
                continue;
            size_t p = b + i;
            if (!index__face_live(v->face_alive, p) ||
                (pn->profile != INDEX__NONE && index__ref_profile(v->face_ref[p]) != pn->profile))
                continue;
            if (index__cands_push(&c, (index__cand){index__ref_key(v->face_ref[p]), d2[i], 0, 0,
                                                    index__ref_profile(v->face_ref[p])})) {
                vg_free(c.v);
                return vg_err_set(VG_ENOMEM, "face candidates");
            }
        }
    }
    int rc = VG_OK;
    if (c.n) {
        size_t n = index__topk(c.v, c.n, top_k, NULL);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "face results");
        } else {
            for (size_t i = 0; i < n; i++) {
                out->matches[i].reference = c.v[i].ref;
                memcpy(out->matches[i].profile_id, v->profiles[c.v[i].profile].id, VG_ID_MAX);
                out->matches[i].distance = sqrtf(c.v[i].dist);
            }
            out->n = n;
        }
    }
    vg_free(c.v);
    return rc;
}

int index_face_search(index_db *ix, const char *tenant, const index_face_query *q,
                      index_face_result *out)
{
    memset(out, 0, sizeof *out);
    int rc = index__check_id("tenant", tenant);
    if (rc)
        return rc;
    if (!q || !q->descriptor)
        return vg_err_set(VG_EINVAL, "face query without descriptor");
    if (q->profile_id && (rc = index__check_id("profile", q->profile_id)))
        return rc;
    float thr = q->threshold > 0 ? q->threshold : INDEX_FACE_THRESHOLD_DEFAULT;
    if (!isfinite(thr))
        return vg_err_set(VG_EINVAL, "face threshold is not finite");
    size_t top_k = q->top_k ? q->top_k : INDEX_FACE_TOP_K_DEFAULT;
    if (top_k > INDEX_FACE_TOP_K_MAX)
        return vg_err_set(VG_EINVAL, "top_k %zu > %d", top_k, INDEX_FACE_TOP_K_MAX);
    _Alignas(64) float qv[VG_DESCRIPTOR_DIM];
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++) {
        if (!isfinite(q->descriptor[i]))
            return vg_err_set(VG_EINVAL, "face descriptor component %d is not finite", i);
        qv[i] = q->descriptor[i];
    }
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return VG_OK;
    uint64_t t0 = vg_now_ns();
    index__pin pn;
    index__pin_take(sh, q->profile_id, &pn);
    rc = face_search_pinned(ix, &pn, qv, thr * thr, top_k, out);
    index__pin_release(&pn);
    vg_lat_record(&ix->face_search_latency, vg_now_ns() - t0);
    atomic_fetch_add_explicit(&sh->face_searches, 1, memory_order_relaxed);
    if (rc)
        index_face_result_free(out);
    return rc;
}

void index_face_result_free(index_face_result *r)
{
    if (!r)
        return;
    vg_free(r->matches);
    memset(r, 0, sizeof *r);
}
