/* index: PDQ hashes. Adds (with multi-index rebuilds as the tenant grows) and searches: a flat
 * scan of the rows with the chosen kernel, or the multi-index tables plus a flat scan of the
 * tail they do not cover yet; then the best match per reference and the max_results best
 * (index_topk.c).
 */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

#define SCAN_CHUNK 4096           /* entries per kernel call (hit buffer on the stack) */
#define MIH_AUTO_MAX_THRESHOLD 31 /* 16 chunks at radius 1; above, radius 2 probes 8x more */

int index__hits_push(index__hits *h, uint32_t pos, int distance, int variant)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        index__hit *v = vg_realloc(h->v, cap * sizeof *v);
        if (!v)
            return VG_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = (index__hit){pos, (uint16_t)distance, (uint16_t)variant};
    return VG_OK;
}

/* ---- multi-index tables (writer, write_mutex held) ------------------------------------------ */

int index__want_mih(const index_db *ix, size_t live_pdq)
{
    switch (ix->cfg.pdq_search) {
    case INDEX_SEARCH_FLAT:
        return 0;
    case INDEX_SEARCH_MIH:
        return live_pdq > 0;
    default:
        return live_pdq >= ix->cfg.mih_min_entries;
    }
}

/* Rebuilds the multi-index when the flat tail has grown past max(mih_tail_min, pdq_n / 8), or
 * (force) when there is any tail at all. Not during a bulk load. Failure only means the tail
 * stays longer, so it is logged; the error code is returned for index_bulk_end. */
static int maybe_rebuild_mih(index_db *ix, index__shard *sh, int force)
{
    index__view *v = sh->cur;
    if (!index__want_mih(ix, sh->pdq_n - sh->dead_pdq))
        return VG_OK;
    size_t covered = v->mih ? v->mih->n : 0;
    size_t tail = sh->pdq_n - covered;
    if (force ? tail == 0
              : atomic_load_explicit(&ix->bulk, memory_order_relaxed) ||
                    tail <= VG_MAX(ix->cfg.mih_tail_min, sh->pdq_n / 8))
        return VG_OK;
    index__mih *m = NULL;
    index__view *nv = index__view_clone(v);
    int rc =
        nv ? index__mih_build(v->pdq_rows, sh->pdq_n, &m) : vg_err_set(VG_ENOMEM, "index view");
    if (rc) {
        vg_free(nv);
        VG_WARN("index", "tenant %s: multi-index rebuild failed (%s); tail of %zu stays flat",
                sh->id, vg_err_msg(), tail);
        return rc;
    }
    nv->mih = m;
    index__view_publish(sh, nv, NULL, 0, index__mih_bytes(v->mih), v->mih, NULL);
    return VG_OK;
}

void index_bulk_begin(index_db *ix)
{
    atomic_store(&ix->bulk, 1);
}

int index_bulk_end(index_db *ix)
{
    atomic_store(&ix->bulk, 0);
    int rc = VG_OK;
    pthread_rwlock_rdlock(&ix->tenants_lock);
    size_t n = ix->n_shards;
    pthread_rwlock_unlock(&ix->tenants_lock);
    /* Shards are never freed before index_free and only appended: the first n stay valid. */
    for (size_t i = 0; i < n; i++) {
        pthread_rwlock_rdlock(&ix->tenants_lock);
        index__shard *sh = ix->shards[i];
        pthread_rwlock_unlock(&ix->tenants_lock);
        pthread_mutex_lock(&sh->write_mutex);
        index__reclaim(sh);
        int r = index__keys_catch_up(sh);
        if (!r)
            r = maybe_rebuild_mih(ix, sh, 1);
        pthread_mutex_unlock(&sh->write_mutex);
        if (r && !rc)
            rc = r;
    }
    return rc;
}

/* ---- adds ----------------------------------------------------------------------------------- */

int index_pdq_add(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                  const uint8_t hash[VG_PDQ_BYTES], int quality, int tag)
{
    int rc = index__check_add(tenant, profile, ref);
    if (rc)
        return rc;
    if (!hash)
        return vg_err_set(VG_EINVAL, "no PDQ hash");
    if (quality < 0 || quality > 100)
        return vg_err_set(VG_EINVAL, "PDQ quality %d outside 0..100", quality);
    if (tag < 0 || tag > INDEX_PDQ_MAX_TAG)
        return vg_err_set(VG_EINVAL, "PDQ tag %d outside 0..%d", tag, INDEX_PDQ_MAX_TAG);
    index__add a;
    if ((rc = index__add_begin(ix, tenant, profile, ref, INDEX__KIND_PDQ, &a)))
        return rc;
    index__shard *sh = a.sh;
    index__view *v = sh->cur;
    size_t p = sh->pdq_n;
    uint64_t w[4];
    index__pdq_words(hash, w);
    memcpy(v->pdq_rows + p * 4, w, sizeof w);
    v->pdq_ref[p] = index__ref_word(ref, a.profile);
    v->pdq_quality[p] = (uint8_t)quality;
    v->pdq_tag[p] = (uint8_t)tag;
    index__add_end(&a, INDEX__KIND_PDQ, ref);
    maybe_rebuild_mih(ix, sh, 0);
    pthread_mutex_unlock(&sh->write_mutex);
    return VG_OK;
}

/* ---- search -------------------------------------------------------------------------------- */

index_pdq_query index_pdq_query_defaults(void)
{
    return (index_pdq_query){.threshold = INDEX_PDQ_THRESHOLD_DEFAULT};
}

static void pdq_best(const uint64_t *rows, size_t p, const uint64_t (*q)[4], size_t nv, int *dist,
                     int *variant)
{
    int best = 1000, bv = 0;
    for (size_t v = 0; v < nv; v++) {
        int d = 0;
        for (int w = 0; w < 4; w++)
            d += __builtin_popcountll(index__row(rows, p)[w] ^ q[v][w]);
        if (d < best) {
            best = d;
            bv = (int)v;
        }
    }
    *dist = best;
    *variant = bv;
}

/* Flat scan of [begin, end): kernel hits, then the exact best variant of each. The SIMD kernel
 * reads whole groups, so the last partial group goes to the scalar kernel: rows past `end` may
 * be being written by an add. */
static int pdq_flat(const index_db *ix, const index__view *v, size_t begin, size_t end,
                    const uint64_t (*q)[4], size_t nv, int threshold, index__hits *hits)
{
    uint32_t buf[SCAN_CHUNK];
    size_t full = end / INDEX__GROUP * INDEX__GROUP;
    for (size_t c = begin / INDEX__GROUP * INDEX__GROUP; c < end; c += SCAN_CHUNK) {
        size_t e = VG_MIN(end, c + SCAN_CHUNK);
        size_t n = 0;
        if (c < full)
            n = ix->pdq_scan(v->pdq_rows, c, VG_MIN(e, full), q, nv, threshold, buf);
        if (e > full)
            n += ix->pdq_scan_scalar(v->pdq_rows, VG_MAX(c, full), e, q, nv, threshold, buf + n);
        for (size_t i = 0; i < n; i++) {
            if (buf[i] < begin)
                continue;
            int d, vv;
            pdq_best(v->pdq_rows, buf[i], q, nv, &d, &vv);
            if (index__hits_push(hits, buf[i], d, vv))
                return vg_err_set(VG_ENOMEM, "PDQ candidates");
        }
    }
    return VG_OK;
}

/* Multi-index probe cost grows with the variant count while the flat scan's barely does (it is
 * memory-bound and shares each row load among the variants), so in AUTO mode a query with v
 * variants uses the tables only from mih_min_entries * max(1, min(v, 8)^2 / 2) live entries: 32k
 * for 1 variant, 262k for 4, 1M for 8 and more with the default, the crossovers measured in
 * bench/results/index.md (up to 8) and by bench_copy --scale (17). */
static int use_mih(const index_db *ix, const index__view *v, size_t live, int threshold, size_t nv)
{
    if (!v->mih || ix->cfg.pdq_search == INDEX_SEARCH_FLAT)
        return 0;
    if (ix->cfg.pdq_search == INDEX_SEARCH_MIH)
        return threshold <= index__mih_max_threshold(v->mih);
    /* Past 8 variants (several hash sets in one query) the flat scan stops sharing each row's
     * load among the variants for free: it turns compute-bound and grows with nv like the
     * probes do, so the crossover stays at 8 variants' (bench_copy --scale: 1.05M entries, 17
     * variants: 4.3 ms flat, 2.0 ms multi-index; 3.18M: 10.6 ms, 4.3 ms). */
    size_t nvc = VG_MIN(nv, (size_t)8), need;
    if (vg_mul_size(ix->cfg.mih_min_entries, VG_MAX((size_t)1, nvc * nvc / 2), &need))
        return 0;
    return threshold <= MIH_AUTO_MAX_THRESHOLD && threshold <= index__mih_max_threshold(v->mih) &&
           live >= need;
}

static int pdq_search_pinned(const index_db *ix, const index__pin *pn, const index_pdq_query *q,
                             const uint64_t (*qw)[4], int *used_mih, index_pdq_result *out)
{
    const index__view *v = pn->v;
    if (pn->unknown_profile)
        return VG_OK;
    index__hits hits = {0};
    int rc;
    /* The live count is approximate here (tombstones are counted by writers); it only picks
     * the faster path. */
    *used_mih = use_mih(ix, v, pn->pdq_n, q->threshold, q->n_variants);
    if (*used_mih) {
        rc = index__mih_search(v->mih, v->pdq_rows, qw, q->n_variants, q->threshold, ix->mih_popcnt,
                               &hits);
        if (!rc)
            rc = pdq_flat(ix, v, v->mih->n, pn->pdq_n, qw, q->n_variants, q->threshold, &hits);
    } else {
        rc = pdq_flat(ix, v, 0, pn->pdq_n, qw, q->n_variants, q->threshold, &hits);
    }
    index__cand *c = NULL;
    size_t nc = 0;
    if (!rc && hits.n) {
        c = vg_malloc(hits.n * sizeof *c);
        if (!c)
            rc = vg_err_set(VG_ENOMEM, "PDQ candidates");
    }
    for (size_t i = 0; !rc && i < hits.n; i++) {
        uint32_t p = hits.v[i].pos;
        uint8_t quality = __atomic_load_n(&v->pdq_quality[p], __ATOMIC_RELAXED);
        if (quality == INDEX__DEAD ||
            (pn->profile != INDEX__NONE && index__ref_profile(v->pdq_ref[p]) != pn->profile) ||
            quality < q->min_quality ||
            (q->tags && (v->pdq_tag[p] >= 64 || !(q->tags >> v->pdq_tag[p] & 1))))
            continue;
        c[nc++] = (index__cand){index__ref_key(v->pdq_ref[p]), (float)hits.v[i].distance,
                                hits.v[i].variant, (uint16_t)(quality | v->pdq_tag[p] << 8),
                                index__ref_profile(v->pdq_ref[p])};
    }
    vg_free(hits.v);
    if (!rc && nc) {
        size_t max = q->max_results ? q->max_results : INDEX_PDQ_MAX_RESULTS_DEFAULT, n_refs;
        size_t n = index__topk(c, nc, max, &n_refs);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "PDQ results");
        } else {
            for (size_t i = 0; i < n; i++) {
                index_pdq_match *m = &out->matches[i];
                m->reference = c[i].ref;
                memcpy(m->profile_id, v->profiles[c[i].profile].id, VG_ID_MAX);
                m->distance = (int)c[i].dist;
                m->dihedral = c[i].tie;
                m->quality = c[i].aux & 0xff;
                m->tag = c[i].aux >> 8;
            }
            out->n = n;
            out->truncated = n_refs > n;
        }
    }
    vg_free(c);
    return rc;
}

int index_pdq_search(index_db *ix, const char *tenant, const index_pdq_query *q,
                     index_pdq_result *out)
{
    memset(out, 0, sizeof *out);
    int rc = index__check_id("tenant", tenant);
    if (rc)
        return rc;
    if (!q || !q->variants || q->n_variants < 1 || q->n_variants > INDEX_PDQ_MAX_VARIANTS)
        return vg_err_set(VG_EINVAL, "PDQ query needs 1..%d hashes", INDEX_PDQ_MAX_VARIANTS);
    if (q->threshold < 0 || q->threshold > 256)
        return vg_err_set(VG_EINVAL, "PDQ threshold %d outside 0..256", q->threshold);
    if (q->profile_id && (rc = index__check_id("profile", q->profile_id)))
        return rc;
    uint64_t qw[INDEX_PDQ_MAX_VARIANTS][4];
    for (size_t v = 0; v < q->n_variants; v++)
        index__pdq_words(q->variants[v], qw[v]);
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return VG_OK;
    uint64_t t0 = vg_now_ns();
    index__pin pn;
    index__pin_take(sh, q->profile_id, &pn);
    int used_mih = 0;
    rc = pdq_search_pinned(ix, &pn, q, (const uint64_t(*)[4])qw, &used_mih, out);
    index__pin_release(&pn);
    vg_lat_record(&ix->pdq_search_latency, vg_now_ns() - t0);
    atomic_fetch_add_explicit(used_mih ? &sh->pdq_mih_searches : &sh->pdq_flat_searches, 1,
                              memory_order_relaxed);
    if (rc)
        index_pdq_result_free(out);
    return rc;
}

void index_pdq_result_free(index_pdq_result *r)
{
    if (!r)
        return;
    vg_free(r->matches);
    memset(r, 0, sizeof *r);
}
