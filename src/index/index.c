/* index: lifecycle, tenants, reference and profile records, the add protocol both kinds share,
 * and stats. See index.h for the contract and index_int.h for the file layout, the storage
 * layout, the concurrency design (pinned views) and its invariants.
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

/* Map keys are read from the records of the view the map belongs with. */
const char *index__ref_key(const void *ctx, uint32_t h)
{
    return ((const index__view *)ctx)->refs[h].id;
}

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
    index__map_free(&sh->ref_map);
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

/* Finds or prepares the reference for an add: on success *ref_out is an existing live handle, or
 * INDEX__NONE with records and maps reserved so that the commit cannot fail. */
static int add_prepare(index_db *ix, index__shard *sh, const char *profile, const char *reference,
                       uint32_t rhash, uint32_t *ref_out)
{
    size_t live = (sh->pdq_n - sh->dead_pdq) + (sh->face_n - sh->dead_face);
    if (live >= ix->cfg.max_entries_per_tenant || sh->pdq_n + sh->face_n >= MAX_ENTRIES_LIMIT * 2)
        return vg_err_set(VG_ETOOBIG, "tenant %s holds %zu entries (max_entries_per_tenant)",
                          sh->id, live);
    index__view *v = sh->cur;
    uint32_t r = index__map_find(&sh->ref_map, reference, rhash, index__ref_key, v);
    if (r != INDEX__NONE) {
        const char *owner = v->profiles[v->refs[r].profile].id;
        if (strcmp(owner, profile) != 0)
            return vg_err_set(VG_ECONFLICT, "reference %s belongs to profile %s, not %s", reference,
                              owner, profile);
        *ref_out = r;
        return VG_OK;
    }
    if (sh->n_refs >= INDEX__NONE - 1 || sh->n_profiles >= INDEX__NONE - 1)
        return vg_err_set(VG_ETOOBIG, "too many references in tenant %s", sh->id);
    int rc = index__grow_records(sh);
    if (!rc)
        rc = index__map_reserve(&sh->ref_map, 1);
    if (!rc) {
        index__wrlock(sh); /* a rehash moves slots queries may be probing */
        rc = index__map_reserve(&sh->profile_map, 1);
        index__unlock(sh);
    }
    if (rc)
        return rc;
    *ref_out = INDEX__NONE;
    return VG_OK;
}

/* Writes a new reference (and profile) record past the published ones. Returns the reference
 * handle and whether a profile was created (*new_profile, its hash in *phash). */
static uint32_t add_write_ref(index__shard *sh, const char *profile, const char *reference,
                              int *new_profile, uint32_t *phash)
{
    index__view *v = sh->cur;
    *phash = index__hash_str(profile);
    uint32_t p = index__map_find(&sh->profile_map, profile, *phash, index__profile_key, v);
    *new_profile = p == INDEX__NONE;
    if (*new_profile) {
        p = (uint32_t)sh->n_profiles;
        index__profile *x = &v->profiles[p];
        memset(x, 0, sizeof *x);
        strcpy(x->id, profile);
        x->first_ref = INDEX__NONE;
        x->alive = 1;
    }
    uint32_t ref = (uint32_t)sh->n_refs;
    index__ref *x = &v->refs[ref];
    memset(x, 0, sizeof *x);
    strcpy(x->id, reference);
    x->profile = p;
    atomic_init(&x->alive, 1);
    atomic_init(&x->has_sha, 0);
    x->prev = INDEX__NONE;
    x->next = INDEX__NONE;
    return ref;
}

/* After publishing: the writer-only bookkeeping of a new reference. */
static void add_link_ref(index__shard *sh, uint32_t ref, uint32_t rhash, int new_profile)
{
    index__view *v = sh->cur;
    index__ref *x = &v->refs[ref];
    index__profile *p = &v->profiles[x->profile];
    if (new_profile) {
        sh->n_profiles++;
        sh->live_profiles++;
    }
    x->next = p->first_ref;
    if (x->next != INDEX__NONE)
        v->refs[x->next].prev = ref;
    p->first_ref = ref;
    p->n_refs++;
    index__map_insert(&sh->ref_map, rhash, ref);
    sh->n_refs++;
    sh->live_refs++;
}

int index__check_add_ids(const char *tenant, const char *profile, const char *reference)
{
    int rc = index__check_id("tenant", tenant);
    if (!rc)
        rc = index__check_id("profile", profile);
    if (!rc)
        rc = index__check_id("reference", reference);
    return rc;
}

int index__add_begin(index_db *ix, const char *tenant, const char *profile, const char *reference,
                     index__kind kind, index__add *a)
{
    memset(a, 0, sizeof *a);
    index__shard *sh = NULL;
    int rc = shard_get_or_create(ix, tenant, &sh);
    if (rc)
        return rc;
    pthread_mutex_lock(&sh->write_mutex);
    index__reclaim(sh);
    uint32_t ref = INDEX__NONE;
    a->rhash = index__hash_str(reference);
    rc = add_prepare(ix, sh, profile, reference, a->rhash, &ref);
    if (!rc)
        rc = kind == INDEX__KIND_PDQ ? index__grow_pdq(sh, sh->pdq_n + 1)
                                     : index__grow_face(sh, sh->face_n + 1);
    if (rc) {
        pthread_mutex_unlock(&sh->write_mutex);
        return rc;
    }
    a->sh = sh;
    a->created = ref == INDEX__NONE;
    if (a->created)
        ref = add_write_ref(sh, profile, reference, &a->new_profile, &a->phash);
    a->ref = ref;
    return VG_OK;
}

void index__add_publish(index__add *a)
{
    index__shard *sh = a->sh;
    index__view *v = sh->cur;
    index__wrlock(sh); /* publish: the records and the row become visible together */
    if (a->new_profile)
        index__map_insert(&sh->profile_map, a->phash, v->refs[a->ref].profile);
    v->pdq_n = sh->pdq_n;
    v->face_n = sh->face_n;
    index__unlock(sh);
    if (a->created)
        add_link_ref(sh, a->ref, a->rhash, a->new_profile);
}

int index_set_sha256(index_db *ix, const char *tenant, const char *reference,
                     const uint8_t sha256[32])
{
    int rc = index__check_id("tenant", tenant);
    if (!rc)
        rc = index__check_id("reference", reference);
    if (rc)
        return rc;
    if (!sha256)
        return vg_err_set(VG_EINVAL, "no SHA-256");
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "no reference %s in tenant %s", reference, tenant);
    pthread_mutex_lock(&sh->write_mutex);
    index__view *v = sh->cur;
    uint32_t r =
        index__map_find(&sh->ref_map, reference, index__hash_str(reference), index__ref_key, v);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "no reference %s in tenant %s", reference, tenant);
    } else if (atomic_load_explicit(&v->refs[r].has_sha, memory_order_relaxed)) {
        /* Queries read the bytes without a lock once the flag is set, so they never change. */
        if (memcmp(v->refs[r].sha256, sha256, 32) != 0)
            rc = vg_err_set(VG_ECONFLICT, "reference %s already has another SHA-256", reference);
    } else {
        memcpy(v->refs[r].sha256, sha256, 32);
        index__wrlock(sh);
        atomic_store_explicit(&v->refs[r].has_sha, 1, memory_order_release);
        index__unlock(sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_has_reference(index_db *ix, const char *tenant, const char *reference)
{
    if (index__check_id("tenant", tenant) || index__check_id("reference", reference))
        return 0;
    index__shard *sh = index__shard_find(ix, tenant);
    if (!sh)
        return 0;
    pthread_mutex_lock(&sh->write_mutex);
    index__view *v = sh->cur;
    uint32_t r =
        index__map_find(&sh->ref_map, reference, index__hash_str(reference), index__ref_key, v);
    int alive = r != INDEX__NONE && index__ref_alive(&v->refs[r]);
    pthread_mutex_unlock(&sh->write_mutex);
    return alive;
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
                index__map_bytes(&sh->ref_map) + index__map_bytes(&sh->profile_map);
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
