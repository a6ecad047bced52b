/* index: removals and compaction (writers: write_mutex held). A removal marks a reference's
 * entries dead (under the write lock) and leaves them as tombstones that searches skip; once
 * tombstones reach a quarter of a tenant's entries, the live ones are copied into a compacted
 * view (profiles renumbered, key sets rebuilt) that replaces the current one.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

/* ---- compaction ----------------------------------------------------------------------------- */

static size_t round_up_group(size_t n)
{
    return (n + INDEX__GROUP - 1) / INDEX__GROUP * INDEX__GROUP;
}

/* A compacted view with its profile map and key sets, built from the current ones: live entries
 * in their order (so every reference's runs stay contiguous), profiles renumbered. */
typedef struct compacted {
    index__view *v;
    index__map profile_map;
    index__keyset pdq_keys, face_keys;
    size_t n_profiles;
} compacted;

static void compacted_free(compacted *c)
{
    index__view_free_all(c->v);
    index__map_free(&c->profile_map);
    index__keyset_free(&c->pdq_keys);
    index__keyset_free(&c->face_keys);
    memset(c, 0, sizeof *c);
}

static int compact_build(const index_db *ix, const index__shard *sh, compacted *out)
{
    const index__view *v = sh->cur;
    memset(out, 0, sizeof *out);
    uint32_t *prof_new = vg_malloc((sh->n_profiles + 1) * sizeof(uint32_t)); /* +1: never 0 */
    index__view *nv = vg_calloc(1, sizeof *nv);
    out->v = nv;
    if (!prof_new || !nv)
        goto fail;
    atomic_init(&nv->pins, 1);
    size_t live_pdq = sh->pdq_n - sh->dead_pdq, live_face = sh->face_n - sh->dead_face;
    nv->profiles_cap =
        VG_MAX(sh->live_profiles + sh->live_profiles / 4, (size_t)INDEX__RECORD_MIN_CAP);
    nv->profiles = vg_malloc(nv->profiles_cap * sizeof(index__profile));
    if (!nv->profiles ||
        index__pdq_arrays_alloc(
            nv, round_up_group(VG_MAX(live_pdq + live_pdq / 4, (size_t)INDEX__PDQ_MIN_CAP))) ||
        index__face_arrays_alloc(nv,
                                 VG_MAX(live_face + live_face / 4, (size_t)INDEX__FACE_MIN_CAP)) ||
        index__map_reserve(&out->profile_map, sh->live_profiles))
        goto fail;

    size_t np = 0;
    for (size_t p = 0; p < sh->n_profiles; p++) {
        prof_new[p] = INDEX__NONE;
        if (!v->profiles[p].alive)
            continue;
        prof_new[p] = (uint32_t)np;
        nv->profiles[np] = v->profiles[p];
        index__map_insert(&out->profile_map, index__hash_str(v->profiles[p].id), (uint32_t)np);
        np++;
    }
    out->n_profiles = np;

    for (size_t p = 0; p < sh->pdq_n; p++) {
        if (!index__pdq_live(v->pdq_quality, p))
            continue;
        size_t q = nv->pdq_n++;
        memcpy(nv->pdq_rows + q * 4, index__row(v->pdq_rows, p), 4 * sizeof(uint64_t));
        nv->pdq_ref[q] = index__ref_word(index__ref_key(v->pdq_ref[p]),
                                         prof_new[index__ref_profile(v->pdq_ref[p])]);
        nv->pdq_quality[q] = v->pdq_quality[p];
        nv->pdq_tag[q] = v->pdq_tag[p];
    }
    for (size_t p = 0; p < sh->face_n; p++) {
        if (!index__face_live(v->face_alive, p))
            continue;
        size_t q = nv->face_n++;
        memcpy(nv->face_rows + q * VG_DESCRIPTOR_DIM, v->face_rows + p * VG_DESCRIPTOR_DIM,
               VG_DESCRIPTOR_DIM * sizeof(float));
        nv->face_ref[q] = index__ref_word(index__ref_key(v->face_ref[p]),
                                          prof_new[index__ref_profile(v->face_ref[p])]);
        nv->face_alive[q] = 1;
    }
    size_t pdq_runs = 0, face_runs = 0;
    for (size_t q = 0; q < nv->pdq_n; q++)
        pdq_runs += q == 0 || index__ref_key(nv->pdq_ref[q]) != index__ref_key(nv->pdq_ref[q - 1]);
    for (size_t q = 0; q < nv->face_n; q++)
        face_runs +=
            q == 0 || index__ref_key(nv->face_ref[q]) != index__ref_key(nv->face_ref[q - 1]);
    if (index__keyset_reserve(&out->pdq_keys, pdq_runs, nv->pdq_ref) ||
        index__keyset_reserve(&out->face_keys, face_runs, nv->face_ref))
        goto fail;
    for (size_t q = 0; q < nv->pdq_n; q++)
        if (q == 0 || index__ref_key(nv->pdq_ref[q]) != index__ref_key(nv->pdq_ref[q - 1]))
            index__keyset_insert(&out->pdq_keys, (uint32_t)q, nv->pdq_ref);
    for (size_t q = 0; q < nv->face_n; q++)
        if (q == 0 || index__ref_key(nv->face_ref[q]) != index__ref_key(nv->face_ref[q - 1]))
            index__keyset_insert(&out->face_keys, (uint32_t)q, nv->face_ref);
    if (index__want_mih(ix, nv->pdq_n) && index__mih_build(nv->pdq_rows, nv->pdq_n, &nv->mih))
        goto fail;
    vg_free(prof_new);
    return VG_OK;
fail:
    vg_free(prof_new);
    compacted_free(out);
    return vg_err_set(VG_ENOMEM, "index compaction");
}

/* Installs a compacted (or empty) view: every array of the old view becomes garbage. */
static void install(index__shard *sh, compacted *c)
{
    index__view *old = sh->cur;
    void *garbage[INDEX__VIEW_ARRAYS] = {old->pdq_rows,   old->pdq_ref,   old->pdq_quality,
                                         old->pdq_tag,    old->face_rows, old->face_ref,
                                         old->face_alive, old->profiles};
    atomic_store(&c->v->pins, 1);
    index__view_publish(sh, c->v, garbage, INDEX__VIEW_ARRAYS, index__view_bytes(old) - sizeof *old,
                        old->mih, &c->profile_map);
    index__keyset_free(&sh->pdq_keys);
    index__keyset_free(&sh->face_keys);
    sh->pdq_keys = c->pdq_keys;
    sh->face_keys = c->face_keys;
    sh->pdq_n = sh->pdq_keyed = c->v->pdq_n;
    sh->face_n = sh->face_keyed = c->v->face_n;
    sh->dead_pdq = sh->dead_face = 0;
    sh->n_profiles = sh->live_profiles = c->n_profiles;
}

/* Compacts once tombstones reach a quarter of the entries: each compaction costs O(entries) and
 * follows at least entries/4 deletions, so deletes cost O(1) amortised. On failure the
 * tombstones simply stay (searches skip them), so the error is logged, not returned. */
static void maybe_compact(index_db *ix, index__shard *sh)
{
    size_t dead = sh->dead_pdq + sh->dead_face, total = sh->pdq_n + sh->face_n;
    if (!dead || dead * 4 < total)
        return;
    compacted c;
    if (compact_build(ix, sh, &c)) {
        VG_WARN("index", "tenant %s: compaction failed (%s); %zu tombstones kept", sh->id,
                vg_err_msg(), dead);
        return;
    }
    install(sh, &c);
}

/* ---- removals ------------------------------------------------------------------------------- */

/* Under the write lock: the profile loses n entries, and dies with its last. */
static void profile_lose(index__shard *sh, uint32_t p, size_t n)
{
    index__view *v = sh->cur;
    index__profile *x = &v->profiles[p];
    x->n_live -= n;
    if (x->n_live == 0 && x->alive) {
        index__map_remove(&sh->profile_map, x->id, index__hash_str(x->id), index__profile_key, v);
        x->alive = 0;
        sh->live_profiles--;
    }
}

/* Under the write lock: kills the run of `ref`'s entries of a kind (its key out of the set).
 * Returns 1 when it had any. */
static int kill_run(index__shard *sh, index__kind kind, uint64_t ref)
{
    index__view *v = sh->cur;
    uint32_t pos = index__run_forget(sh, kind, ref);
    if (pos == INDEX__NONE)
        return 0;
    const uint64_t *w = index__kind_refs(v, kind);
    size_t n = 0, end = index__kind_n(sh, kind);
    for (size_t p = pos; p < end && index__ref_key(w[p]) == ref && index__kind_live(v, kind, p);
         p++, n++)
        index__kind_kill(v, kind, p);
    *(kind == INDEX__KIND_PDQ ? &sh->dead_pdq : &sh->dead_face) += n;
    profile_lose(sh, index__ref_profile(w[pos]), n);
    return 1;
}

/* Under the write lock: kills every entry of `ref`; 1 when it was live. */
static int kill_ref(index__shard *sh, uint64_t ref)
{
    int had = kill_run(sh, INDEX__KIND_PDQ, ref);
    had |= kill_run(sh, INDEX__KIND_FACE, ref);
    if (had)
        sh->live_refs--;
    return had;
}

/* The start of every removal: checks the tenant (and `what`'s id when what is not NULL), finds
 * the shard, takes its write_mutex (the caller unlocks it) and reclaims retired views. */
static int removal_begin(index_db *ix, const char *tenant, const char *what, const char *id,
                         index__shard **out)
{
    int rc = index__check_id("tenant", tenant);
    if (!rc && what)
        rc = index__check_id(what, id);
    if (rc)
        return rc;
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "tenant %s has no index entries", tenant);
    pthread_mutex_lock(&sh->write_mutex);
    index__reclaim(sh);
    *out = sh;
    return VG_OK;
}

int index_remove_reference(index_db *ix, const char *tenant, uint64_t ref)
{
    if (ref == 0)
        return vg_err_set(VG_EINVAL, "reference key 0");
    index__shard *sh;
    int rc = removal_begin(ix, tenant, NULL, NULL, &sh);
    if (rc)
        return rc;
    index__wrlock(sh);
    int had = kill_ref(sh, ref);
    index__unlock(sh);
    if (!had)
        rc = vg_err_set(VG_ENOTFOUND, "reference %llu not in the index", (unsigned long long)ref);
    else
        maybe_compact(ix, sh);
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_remove_profile(index_db *ix, const char *tenant, const char *profile)
{
    index__shard *sh;
    int rc = removal_begin(ix, tenant, "profile", profile, &sh);
    if (rc)
        return rc;
    index__view *v = sh->cur;
    uint32_t p =
        index__map_find(&sh->profile_map, profile, index__hash_str(profile), index__profile_key, v);
    if (p == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "profile %s not in the index", profile);
    } else {
        /* No per-profile list of references (it would cost 8 bytes per reference): one pass
         * over the entries finds the first live entry of each of the profile's runs. */
        index__wrlock(sh);
        for (size_t i = 0; i < sh->pdq_n && v->profiles[p].alive; i++)
            if (index__ref_profile(v->pdq_ref[i]) == p && index__pdq_live(v->pdq_quality, i))
                kill_ref(sh, index__ref_key(v->pdq_ref[i]));
        for (size_t i = 0; i < sh->face_n && v->profiles[p].alive; i++)
            if (index__ref_profile(v->face_ref[i]) == p && index__face_live(v->face_alive, i))
                kill_ref(sh, index__ref_key(v->face_ref[i]));
        index__unlock(sh);
        maybe_compact(ix, sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_remove_tenant(index_db *ix, const char *tenant)
{
    index__shard *sh;
    int rc = removal_begin(ix, tenant, NULL, NULL, &sh);
    if (rc)
        return rc;
    compacted c = {0};
    c.v = vg_calloc(1, sizeof *c.v);
    if (!c.v) {
        rc = vg_err_set(VG_ENOMEM, "emptying tenant %s", tenant);
    } else {
        install(sh, &c);
        sh->live_refs = 0;
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}
