/* index: lifecycle, tenants, profile records, the add protocol both kinds share, and stats. See
 * index.h for the contract and index_int.h for the file layout, the storage layout, the concurrency
 * design (pinned views) and its invariants.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define MAX_ENTRIES_LIMIT ((size_t)1 << 30) /* positions must fit uint32 with tombstones */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* ---- small helpers -------------------------------------------------------------------------- */

void *index__alloc_big(size_t bytes)
{
    if (bytes < 2 * HUGE_PAGE_BYTES)
        return vg_aligned_alloc(64, bytes);
    size_t rounded;
    if (vg_add_size(bytes, HUGE_PAGE_BYTES - 1, &rounded))
        return NULL;
    rounded &= ~(HUGE_PAGE_BYTES - 1);
    void *p = vg_aligned_alloc(HUGE_PAGE_BYTES, rounded);
    if (p)
        madvise(p, rounded, MADV_HUGEPAGE); /* advisory: failure only costs speed */
    return p;
}

int index__check_id(const char *what, const char *id)
{
    if (!id || !*id)
        return vg_err_set(VG_EINVAL, "%s id is empty", what);
    if (strnlen(id, VG_ID_MAX) >= VG_ID_MAX)
        return vg_err_set(VG_EINVAL, "%s id longer than %d bytes", what, VG_ID_MAX - 1);
    return VG_OK;
}

int index__check_add(const char *tenant, const char *profile, uint64_t ref)
{
    int rc = index__check_id("tenant", tenant);
    if (!rc)
        rc = index__check_id("profile", profile);
    if (!rc && (ref == 0 || ref >> INDEX__KEY_BITS))
        return vg_err_set(VG_EINVAL, "reference key %llu outside 1..2^%d - 1",
                          (unsigned long long)ref, INDEX__KEY_BITS);
    return rc;
}

/* Map keys are read from the records of the view the map belongs with. */
const char *index__profile_key(const void *ctx, uint32_t h)
{
    return ((const index__view *)ctx)->profiles[h].id;
}

static const char *shard_key(const void *ctx, uint32_t h)
{
    return ((const index_db *)ctx)->shards[h]->id;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int index_new(const index_config *cfg, index_db **out)
{
    index_config c = cfg ? *cfg : (index_config){0};
    if (!c.mih_min_entries)
        c.mih_min_entries = INDEX_MIH_MIN_ENTRIES_DEFAULT;
    if (!c.mih_tail_min)
        c.mih_tail_min = INDEX_MIH_TAIL_MIN_DEFAULT;
    if (!c.max_entries_per_tenant)
        c.max_entries_per_tenant = INDEX_MAX_ENTRIES_PER_TENANT_DEFAULT;
    if (c.max_entries_per_tenant > MAX_ENTRIES_LIMIT)
        return vg_err_set(VG_EINVAL, "max_entries_per_tenant %zu > %zu", c.max_entries_per_tenant,
                          MAX_ENTRIES_LIMIT);
    if ((unsigned)c.pdq_search > INDEX_SEARCH_MIH)
        return vg_err_set(VG_EINVAL, "unknown PDQ search mode %d", (int)c.pdq_search);
    if ((unsigned)c.pdq_kernel > INDEX_KERNEL_AVX512 ||
        (unsigned)c.face_kernel > INDEX_KERNEL_AVX512)
        return vg_err_set(VG_EINVAL, "unknown kernel");

    index_db *ix = vg_calloc(1, sizeof *ix);
    if (!ix)
        return vg_err_set(VG_ENOMEM, "index");
    ix->cfg = c;
    int rc = index__pdq_kernel_get(c.pdq_kernel, &ix->pdq_kernel, &ix->pdq_scan);
    if (!rc)
        rc = index__face_kernel_get(c.face_kernel, &ix->face_kernel, &ix->face_dist);
    if (rc) {
        vg_free(ix);
        return rc;
    }
    ix->mih_popcnt = ix->pdq_kernel != INDEX_KERNEL_PORTABLE && (vg_cpu_features() & VG_CPU_POPCNT);
    index_kernel scalar;
    index__pdq_kernel_get(ix->mih_popcnt ? INDEX_KERNEL_POPCNT : INDEX_KERNEL_PORTABLE, &scalar,
                          &ix->pdq_scan_scalar);
    pthread_rwlock_init(&ix->tenants_lock, NULL);
    *out = ix;
    return VG_OK;
}

static void shard_free(index__shard *sh)
{
    index__views_free(sh);
    index__map_free(&sh->profile_map);
    index__keyset_free(&sh->pdq_keys);
    index__keyset_free(&sh->face_keys);
    pthread_rwlock_destroy(&sh->lock);
    pthread_mutex_destroy(&sh->write_mutex);
    vg_free(sh);
}

void index_free(index_db *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n_shards; i++)
        shard_free(ix->shards[i]);
    vg_free(ix->shards);
    index__map_free(&ix->tenant_map);
    pthread_rwlock_destroy(&ix->tenants_lock);
    vg_free(ix);
#if defined(__GLIBC__)
    /* The arrays below glibc's mmap threshold (it rises to 32 MiB as the index frees the
     * arrays it outgrew) go back to malloc's free lists, not to the system; hand those pages
     * back, so that a reload does not keep the old index's memory resident beside the new. */
    malloc_trim(0);
#endif
}

index_kernel index_pdq_kernel(const index_db *ix)
{
    return ix->pdq_kernel;
}

index_kernel index_face_kernel(const index_db *ix)
{
    return ix->face_kernel;
}

/* ---- tenants -------------------------------------------------------------------------------- */

index__shard *index__shard_find(index_db *ix, const char *tenant)
{
    pthread_rwlock_rdlock(&ix->tenants_lock);
    uint32_t h = index__map_find(&ix->tenant_map, tenant, index__hash_str(tenant), shard_key, ix);
    index__shard *sh = h == INDEX__NONE ? NULL : ix->shards[h];
    pthread_rwlock_unlock(&ix->tenants_lock);
    return sh;
}

static int shard_get_or_create(index_db *ix, const char *tenant, index__shard **out)
{
    index__shard *sh = index__shard_find(ix, tenant);
    if (sh) {
        *out = sh;
        return VG_OK;
    }
    uint32_t hash = index__hash_str(tenant);
    int rc = VG_OK;
    pthread_rwlock_wrlock(&ix->tenants_lock);
    uint32_t h = index__map_find(&ix->tenant_map, tenant, hash, shard_key, ix);
    if (h != INDEX__NONE) {
        *out = ix->shards[h];
        goto done;
    }
    if (ix->n_shards >= INDEX__NONE - 1) {
        rc = vg_err_set(VG_ETOOBIG, "too many tenants");
        goto done;
    }
    if (ix->n_shards == ix->shards_cap) {
        size_t cap = ix->shards_cap ? ix->shards_cap * 2 : INDEX__RECORD_MIN_CAP;
        index__shard **v = vg_realloc(ix->shards, cap * sizeof *v);
        if (!v) {
            rc = vg_err_set(VG_ENOMEM, "tenant table");
            goto done;
        }
        ix->shards = v;
        ix->shards_cap = cap;
    }
    if ((rc = index__map_reserve(&ix->tenant_map, 1)))
        goto done;
    sh = vg_calloc(1, sizeof *sh);
    index__view *v = vg_calloc(1, sizeof *v);
    if (!sh || !v) {
        vg_free(sh);
        vg_free(v);
        rc = vg_err_set(VG_ENOMEM, "tenant shard");
        goto done;
    }
    atomic_init(&v->pins, 1);
    sh->cur = v;
    strcpy(sh->id, tenant);
    /* Writer preference keeps a stream of pins from delaying a publish; both are short. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sh->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&sh->write_mutex, NULL);
    ix->shards[ix->n_shards] = sh;
    index__map_insert(&ix->tenant_map, hash, (uint32_t)ix->n_shards);
    ix->n_shards++;
    *out = sh;
done:
    pthread_rwlock_unlock(&ix->tenants_lock);
    return rc;
}

/* ---- adds ----------------------------------------------------------------------------------- */

/* The kind's key set. */
static index__keyset *kind_set(index__shard *sh, index__kind k)
{
    return k == INDEX__KIND_PDQ ? &sh->pdq_keys : &sh->face_keys;
}

static size_t *kind_keyed(index__shard *sh, index__kind k)
{
    return k == INDEX__KIND_PDQ ? &sh->pdq_keyed : &sh->face_keyed;
}

/* The first live entry of ref in the tail [keyed, n), or INDEX__NONE: only when the key sets
 * could not be caught up (out of memory). */
static uint32_t tail_find(index__shard *sh, index__kind kind, uint64_t ref)
{
    const index__view *v = sh->cur;
    const uint64_t *w = index__kind_refs(v, kind);
    size_t n = index__kind_n(sh, kind);
    for (size_t p = *kind_keyed(sh, kind); p < n; p++)
        if (index__ref_key(w[p]) == ref && index__kind_live(v, kind, p))
            return (uint32_t)p;
    return INDEX__NONE;
}

/* A lookup first puts the tail into the key sets: O(tail) once, where a search of the tail per
 * lookup would make a bulk load whose keys come out of order (a PostgreSQL heap after updates)
 * quadratic. */
static int caught_up(index__shard *sh)
{
    return (sh->pdq_keyed == sh->pdq_n && sh->face_keyed == sh->face_n) ||
           index__keys_catch_up(sh) == VG_OK;
}

uint32_t index__run_find(index__shard *sh, index__kind kind, uint64_t ref)
{
    int ok = caught_up(sh);
    uint32_t pos = index__keyset_find(kind_set(sh, kind), ref, index__kind_refs(sh->cur, kind));
    return pos != INDEX__NONE || ok ? pos : tail_find(sh, kind, ref);
}

uint32_t index__run_forget(index__shard *sh, index__kind kind, uint64_t ref)
{
    int ok = caught_up(sh);
    uint32_t pos = index__keyset_remove(kind_set(sh, kind), ref, index__kind_refs(sh->cur, kind));
    return pos != INDEX__NONE || ok ? pos : tail_find(sh, kind, ref);
}

int index__keys_catch_up(index__shard *sh)
{
    for (int k = 0; k < 2; k++) {
        index__kind kind = k ? INDEX__KIND_FACE : INDEX__KIND_PDQ;
        const index__view *v = sh->cur;
        const uint64_t *w = index__kind_refs(v, kind);
        size_t n = index__kind_n(sh, kind), *keyed = kind_keyed(sh, kind);
        size_t starts = 0;
        for (size_t p = *keyed; p < n; p++)
            starts += index__kind_live(v, kind, p) &&
                      (p == 0 || index__ref_key(w[p - 1]) != index__ref_key(w[p]) ||
                       !index__kind_live(v, kind, p - 1));
        if (index__keyset_reserve(kind_set(sh, kind), starts, w))
            return vg_err_set(VG_ENOMEM, "index key set of tenant %s", sh->id);
        for (size_t p = *keyed; p < n; p++)
            if (index__kind_live(v, kind, p) &&
                (p == 0 || index__ref_key(w[p - 1]) != index__ref_key(w[p]) ||
                 !index__kind_live(v, kind, p - 1)))
                index__keyset_insert(kind_set(sh, kind), (uint32_t)p, w);
        *keyed = n;
    }
    return VG_OK;
}

/* Checks `ref` against the kind's entries: new, or the reference of the kind's last entry (its
 * run continues) under the same profile. *new_ref says which; *owner gets the existing profile
 * handle of a known key (of either kind), INDEX__NONE for a new reference. */
static int add_check_ref(index__shard *sh, uint64_t ref, index__kind kind, int *new_ref,
                         uint32_t *owner)
{
    const index__view *v = sh->cur;
    size_t n = index__kind_n(sh, kind);
    *owner = INDEX__NONE;
    /* Two lookups without the sets, which are random reads of up to 64 MiB (11% of a 10M
     * load): the run of the kind's last live entry continues, or the key is above every key
     * the tenant ever had (the store hands them out counting up, and walks them so at start). */
    if (n && index__ref_key(index__kind_refs(v, kind)[n - 1]) == ref &&
        (kind == INDEX__KIND_PDQ ? index__pdq_live(v->pdq_quality, n - 1)
                                 : index__face_live(v->face_alive, n - 1))) {
        *new_ref = 0;
        *owner = index__ref_profile(index__kind_refs(v, kind)[n - 1]);
        return VG_OK;
    }
    if (ref > sh->max_key) {
        *new_ref = 1;
        return VG_OK;
    }
    uint32_t pos = index__run_find(sh, kind, ref);
    *new_ref = pos == INDEX__NONE;
    if (!*new_ref) {
        if (index__ref_key(index__kind_refs(v, kind)[n - 1]) != ref)
            return vg_err_set(VG_ECONFLICT,
                              "reference %llu: its entries must be added one after the other",
                              (unsigned long long)ref);
        *owner = kind == INDEX__KIND_PDQ ? index__ref_profile(v->pdq_ref[pos])
                                         : index__ref_profile(v->face_ref[pos]);
        return VG_OK;
    }
    index__kind other = kind == INDEX__KIND_PDQ ? INDEX__KIND_FACE : INDEX__KIND_PDQ;
    uint32_t opos = index__run_find(sh, other, ref);
    if (opos != INDEX__NONE)
        *owner = other == INDEX__KIND_PDQ ? index__ref_profile(v->pdq_ref[opos])
                                          : index__ref_profile(v->face_ref[opos]);
    return VG_OK;
}

int index__add_begin(index_db *ix, const char *tenant, const char *profile, uint64_t ref,
                     index__kind kind, index__add *a)
{
    memset(a, 0, sizeof *a);
    index__shard *sh = NULL;
    int rc = shard_get_or_create(ix, tenant, &sh);
    if (rc)
        return rc;
    pthread_mutex_lock(&sh->write_mutex);
    index__reclaim(sh);
    size_t live = (sh->pdq_n - sh->dead_pdq) + (sh->face_n - sh->dead_face);
    uint32_t owner = INDEX__NONE;
    if (live >= ix->cfg.max_entries_per_tenant || sh->pdq_n + sh->face_n >= MAX_ENTRIES_LIMIT * 2)
        rc = vg_err_set(VG_ETOOBIG, "tenant %s holds %zu entries (max_entries_per_tenant)", sh->id,
                        live);
    if (!rc)
        rc = add_check_ref(sh, ref, kind, &a->new_ref, &owner);
    uint32_t phash = index__hash_str(profile);
    uint32_t p = index__map_find(&sh->profile_map, profile, phash, index__profile_key, sh->cur);
    if (!rc && owner != INDEX__NONE && owner != p)
        rc = vg_err_set(VG_ECONFLICT, "reference %llu belongs to profile %s, not %s",
                        (unsigned long long)ref, sh->cur->profiles[owner].id, profile);
    if (!rc && p == INDEX__NONE && sh->n_profiles >= ((size_t)1 << INDEX__PROFILE_BITS) - 1)
        rc = vg_err_set(VG_ETOOBIG, "tenant %s has %zu profiles in the index (at most 2^%d - 1)",
                        sh->id, sh->n_profiles, INDEX__PROFILE_BITS);
    if (!rc && p == INDEX__NONE && !(rc = index__grow_profiles(sh))) {
        index__wrlock(sh); /* a rehash moves slots queries may be probing */
        rc = index__map_reserve(&sh->profile_map, 1);
        index__unlock(sh);
    }
    if (!rc)
        rc = kind == INDEX__KIND_PDQ ? index__grow_pdq(sh, sh->pdq_n + 1)
                                     : index__grow_face(sh, sh->face_n + 1);
    /* Read once: room is reserved exactly when index__add_end will insert. */
    a->bulk = atomic_load_explicit(&ix->bulk, memory_order_relaxed) ||
              *kind_keyed(sh, kind) != index__kind_n(sh, kind);
    if (!rc && a->new_ref && !a->bulk)
        rc = index__keyset_reserve(kind_set(sh, kind), 1, index__kind_refs(sh->cur, kind));
    if (rc) {
        pthread_mutex_unlock(&sh->write_mutex);
        return rc;
    }
    a->sh = sh;
    a->counted_ref = a->new_ref && owner == INDEX__NONE;
    a->new_profile = p == INDEX__NONE;
    if (a->new_profile) {
        p = (uint32_t)sh->n_profiles;
        index__profile *x = &sh->cur->profiles[p];
        memset(x, 0, sizeof *x);
        strcpy(x->id, profile);
        x->alive = 1;
        a->phash = phash;
    }
    a->profile = p;
    return VG_OK;
}

void index__add_end(index__add *a, index__kind kind, uint64_t ref)
{
    index__shard *sh = a->sh;
    index__view *v = sh->cur;
    size_t pos = kind == INDEX__KIND_PDQ ? sh->pdq_n++ : sh->face_n++;
    index__wrlock(sh); /* publish: the profile and the row become visible together */
    if (a->new_profile)
        index__map_insert(&sh->profile_map, a->phash, a->profile);
    v->pdq_n = sh->pdq_n;
    v->face_n = sh->face_n;
    index__unlock(sh);
    if (a->new_profile) {
        sh->n_profiles++;
        sh->live_profiles++;
    }
    v->profiles[a->profile].n_live++;
    /* Into the key set while there is no tail and no bulk load (the set has room: add_begin
     * reserved it under the same conditions). */
    size_t *keyed = kind_keyed(sh, kind);
    if (*keyed == pos && !a->bulk) {
        if (a->new_ref)
            index__keyset_insert(kind_set(sh, kind), (uint32_t)pos, index__kind_refs(v, kind));
        *keyed = pos + 1;
    }
    if (a->counted_ref)
        sh->live_refs++;
    if (ref > sh->max_key)
        sh->max_key = ref;
}

int index_has_reference(index_db *ix, const char *tenant, uint64_t ref)
{
    if (index__check_id("tenant", tenant) || ref == 0)
        return 0;
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return 0;
    pthread_mutex_lock(&sh->write_mutex);
    const index__view *v = sh->cur;
    int live = index__run_find(sh, INDEX__KIND_PDQ, ref) != INDEX__NONE ||
               index__run_find(sh, INDEX__KIND_FACE, ref) != INDEX__NONE;
    (void)v;
    pthread_mutex_unlock(&sh->write_mutex);
    return live;
}

/* ---- stats ---------------------------------------------------------------------------------- */

/* Under write_mutex: the writer-side counts are consistent there. */
static void shard_stats(index__shard *sh, index_stats *s)
{
    pthread_mutex_lock(&sh->write_mutex);
    s->tenants++;
    s->pdq_entries += sh->pdq_n - sh->dead_pdq;
    s->face_entries += sh->face_n - sh->dead_face;
    s->references += sh->live_refs;
    s->profiles += sh->live_profiles;
    s->dead_entries += sh->dead_pdq + sh->dead_face;
    s->mih_tenants += sh->cur->mih != NULL;
    s->bytes += sizeof *sh + index__view_bytes(sh->cur) + sh->retired_bytes +
                index__keyset_bytes(&sh->pdq_keys) + index__keyset_bytes(&sh->face_keys) +
                index__map_bytes(&sh->profile_map);
    pthread_mutex_unlock(&sh->write_mutex);
    s->pdq_flat_searches += atomic_load_explicit(&sh->pdq_flat_searches, memory_order_relaxed);
    s->pdq_mih_searches += atomic_load_explicit(&sh->pdq_mih_searches, memory_order_relaxed);
    s->face_searches += atomic_load_explicit(&sh->face_searches, memory_order_relaxed);
}

int index_stats_get(index_db *ix, const char *tenant, index_stats *out)
{
    index_stats s = {0};
    vg_lat_read(&ix->pdq_search_latency, &s.pdq_search_latency);
    vg_lat_read(&ix->face_search_latency, &s.face_search_latency);
    if (tenant) {
        index__shard *sh = index__shard_find(ix, tenant);
        if (!sh)
            return vg_err_set(VG_ENOTFOUND, "tenant %s has no index entries", tenant);
        shard_stats(sh, &s);
    } else {
        pthread_rwlock_rdlock(&ix->tenants_lock);
        s.bytes = sizeof *ix + ix->shards_cap * sizeof(index__shard *) +
                  index__map_bytes(&ix->tenant_map);
        for (size_t i = 0; i < ix->n_shards; i++)
            shard_stats(ix->shards[i], &s);
        pthread_rwlock_unlock(&ix->tenants_lock);
    }
    *out = s;
    return VG_OK;
}
