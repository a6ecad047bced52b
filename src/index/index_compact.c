/* index: removals and compaction (writers: write_mutex held). A removal kills references (their
 * alive flag, cleared under the write lock) and leaves their entries as tombstones that searches
 * skip; once tombstones reach a quarter of a tenant's entries, the live ones are copied into a
 * compacted view (references and profiles renumbered) that replaces the current one.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

/* ---- compaction ----------------------------------------------------------------------------- */

static size_t round_up_group(size_t n)
{
    return (n + INDEX__GROUP - 1) / INDEX__GROUP * INDEX__GROUP;
}

/* Builds a compacted view and maps from the current ones: live entries in their order,
 * references and profiles renumbered. Counts go to the out-parameters. */
typedef struct compacted {
    index__view *v;
    index__map ref_map, profile_map;
    size_t n_refs, n_profiles;
} compacted;

static int compact_build(const index_db *ix, const index__shard *sh, compacted *out)
{
    const index__view *v = sh->cur;
    memset(out, 0, sizeof *out);
    uint32_t *ref_new = vg_malloc((sh->n_refs + 1) * sizeof(uint32_t)); /* +1: never 0 bytes */
    uint32_t *prof_new = vg_malloc((sh->n_profiles + 1) * sizeof(uint32_t));
    index__view *nv = vg_calloc(1, sizeof *nv);
    if (!ref_new || !prof_new || !nv)
        goto fail;
    atomic_init(&nv->pins, 1);
    out->v = nv;
    size_t live_pdq = sh->pdq_n - sh->dead_pdq, live_face = sh->face_n - sh->dead_face;
    nv->pdq_cap = round_up_group(VG_MAX(live_pdq + live_pdq / 4, (size_t)INDEX__PDQ_MIN_CAP));
    nv->face_cap = VG_MAX(live_face + live_face / 4, (size_t)INDEX__FACE_MIN_CAP);
    nv->refs_cap = VG_MAX(sh->live_refs + sh->live_refs / 4, (size_t)INDEX__RECORD_MIN_CAP);
    nv->profiles_cap =
        VG_MAX(sh->live_profiles + sh->live_profiles / 4, (size_t)INDEX__RECORD_MIN_CAP);
    nv->pdq_rows = index__alloc_big(index__pdq_row_bytes(nv->pdq_cap));
    nv->pdq_ref = vg_malloc(nv->pdq_cap * sizeof(uint32_t));
    nv->pdq_quality = vg_malloc(nv->pdq_cap);
    nv->pdq_tag = vg_malloc(nv->pdq_cap);
    nv->face_rows = index__alloc_big(index__face_row_bytes(nv->face_cap));
    nv->face_ref = vg_malloc(nv->face_cap * sizeof(uint32_t));
    nv->refs = vg_malloc(nv->refs_cap * sizeof(index__ref));
    nv->profiles = vg_malloc(nv->profiles_cap * sizeof(index__profile));
    if (!nv->pdq_rows || !nv->pdq_ref || !nv->pdq_quality || !nv->pdq_tag || !nv->face_rows ||
        !nv->face_ref || !nv->refs || !nv->profiles)
        goto fail;
    if (index__map_reserve(&out->ref_map, sh->live_refs) ||
        index__map_reserve(&out->profile_map, sh->live_profiles))
        goto fail;

    size_t np = 0, nr = 0;
    for (size_t p = 0; p < sh->n_profiles; p++) {
        prof_new[p] = INDEX__NONE;
        if (!v->profiles[p].alive)
            continue;
        prof_new[p] = (uint32_t)np;
        nv->profiles[np++] = v->profiles[p];
    }
    for (size_t r = 0; r < sh->n_refs; r++) {
        ref_new[r] = INDEX__NONE;
        if (!index__ref_alive(&v->refs[r]))
            continue;
        ref_new[r] = (uint32_t)nr;
        memcpy(&nv->refs[nr], &v->refs[r], sizeof nv->refs[nr]);
        nv->refs[nr].profile = prof_new[v->refs[r].profile];
        nr++;
    }
    for (size_t r = 0; r < nr; r++) {
        index__ref *x = &nv->refs[r];
        x->prev = x->prev == INDEX__NONE ? INDEX__NONE : ref_new[x->prev];
        x->next = x->next == INDEX__NONE ? INDEX__NONE : ref_new[x->next];
        index__map_insert(&out->ref_map, index__hash_str(x->id), (uint32_t)r);
    }
    for (size_t p = 0; p < np; p++) {
        index__profile *x = &nv->profiles[p];
        x->first_ref = ref_new[x->first_ref];
        index__map_insert(&out->profile_map, index__hash_str(x->id), (uint32_t)p);
    }
    out->n_refs = nr;
    out->n_profiles = np;

    for (size_t p = 0; p < sh->pdq_n; p++) {
        uint32_t r = ref_new[v->pdq_ref[p]];
        if (r == INDEX__NONE)
            continue;
        size_t q = nv->pdq_n++;
        memcpy(nv->pdq_rows + q * 4, index__row(v->pdq_rows, p), 4 * sizeof(uint64_t));
        nv->pdq_ref[q] = r;
        nv->pdq_quality[q] = v->pdq_quality[p];
        nv->pdq_tag[q] = v->pdq_tag[p];
    }
    for (size_t p = 0; p < sh->face_n; p++) {
        uint32_t r = ref_new[v->face_ref[p]];
        if (r == INDEX__NONE)
            continue;
        size_t q = nv->face_n++;
        memcpy(nv->face_rows + q * VG_DESCRIPTOR_DIM, v->face_rows + p * VG_DESCRIPTOR_DIM,
               VG_DESCRIPTOR_DIM * sizeof(float));
        nv->face_ref[q] = r;
    }
    if (index__want_mih(ix, nv->pdq_n) && index__mih_build(nv->pdq_rows, nv->pdq_n, &nv->mih))
        goto fail;
    vg_free(ref_new);
    vg_free(prof_new);
    return VG_OK;
fail:
    vg_free(ref_new);
    vg_free(prof_new);
    index__view_free_all(out->v ? out->v : nv);
    index__map_free(&out->ref_map);
    index__map_free(&out->profile_map);
    memset(out, 0, sizeof *out);
    return vg_err_set(VG_ENOMEM, "index compaction");
}

/* Installs a compacted (or empty) view: every array of the old view becomes garbage. */
static void install(index__shard *sh, compacted *c)
{
    index__view *old = sh->cur;
    void *garbage[INDEX__VIEW_ARRAYS] = {old->pdq_rows, old->pdq_ref,   old->pdq_quality,
                                         old->pdq_tag,  old->face_rows, old->face_ref,
                                         old->refs,     old->profiles};
    atomic_store(&c->v->pins, 1);
    index__view_publish(sh, c->v, garbage, INDEX__VIEW_ARRAYS, index__view_bytes(old) - sizeof *old,
                        old->mih, &c->profile_map);
    index__map_free(&sh->ref_map);
    sh->ref_map = c->ref_map;
    sh->pdq_n = c->v->pdq_n;
    sh->face_n = c->v->face_n;
    sh->dead_pdq = sh->dead_face = 0;
    sh->n_refs = sh->live_refs = c->n_refs;
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

/* Under the write lock: kills a live reference and unlinks it from its profile, killing the
 * profile with its last reference. */
static void kill_ref(index__shard *sh, uint32_t r)
{
    index__view *v = sh->cur;
    index__ref *x = &v->refs[r];
    index__profile *p = &v->profiles[x->profile];
    index__map_remove(&sh->ref_map, x->id, index__hash_str(x->id), index__ref_key, v);
    atomic_store_explicit(&x->alive, 0, memory_order_relaxed);
    if (x->prev != INDEX__NONE)
        v->refs[x->prev].next = x->next;
    else
        p->first_ref = x->next;
    if (x->next != INDEX__NONE)
        v->refs[x->next].prev = x->prev;
    sh->dead_pdq += x->n_pdq;
    sh->dead_face += x->n_face;
    sh->live_refs--;
    if (--p->n_refs == 0) {
        index__map_remove(&sh->profile_map, p->id, index__hash_str(p->id), index__profile_key, v);
        p->alive = 0;
        sh->live_profiles--;
    }
}

/* The start of every removal: checks the ids (what and id NULL for a tenant), finds the shard,
 * takes its write_mutex (the caller unlocks it) and reclaims retired views. */
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

int index_remove_reference(index_db *ix, const char *tenant, const char *reference)
{
    index__shard *sh;
    int rc = removal_begin(ix, tenant, "reference", reference, &sh);
    if (rc)
        return rc;
    uint32_t r = index__map_find(&sh->ref_map, reference, index__hash_str(reference),
                                 index__ref_key, sh->cur);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "reference %s not in the index", reference);
    } else {
        index__wrlock(sh);
        kill_ref(sh, r);
        index__unlock(sh);
        maybe_compact(ix, sh);
    }
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
        index__wrlock(sh);
        while (v->profiles[p].alive)
            kill_ref(sh, v->profiles[p].first_ref);
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
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}
