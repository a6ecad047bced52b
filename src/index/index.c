/* index: tenants, shards, views, updates, searches and compaction. See index.h for the contract
 * and index_int.h for the storage layout.
 *
 * Concurrency design: pinned views.
 *   A shard's arrays (PDQ rows, face rows, entry -> reference maps, reference and profile
 *   records, multi-index tables) are described by a view. A query takes the shard's read lock
 *   only long enough to pin the current view (a reference count) and copy its published entry
 *   counts, then scans without any lock and unpins. Writers (one at a time per shard, under
 *   write_mutex) append rows and records past the published counts, where no query looks, and
 *   publish them by raising the counts under the write lock; deletes clear a reference's atomic
 *   alive flag under the write lock. So the write lock is held for nanoseconds and waits only
 *   for pins in progress, never for a scan: a write is not delayed by long queries, and queries
 *   are not delayed by writes (bench/results/index.md compares this with holding the read lock
 *   for the whole scan). A delete is visible to every query that starts after it returns,
 *   because that query's read lock acquisition is ordered after the delete's write lock release.
 *   Growth, multi-index rebuilds and compaction build new arrays on the side and swap in a new
 *   view; the old view is retired, and its replaced arrays are freed once no query pins it or
 *   any older view (retired views are reclaimed oldest first).
 *
 * Invariants:
 *   - rows and records below the published counts never change while a view is current, except
 *     the atomic alive flag and the once-only SHA-256 of a reference;
 *   - a reference is alive iff it is in ref_map; it has n_pdq + n_face >= 1 entries; its handle
 *     stays valid (dead) until the next compaction renumbers references and profiles;
 *   - a profile is alive iff it is in profile_map, iff it has at least one live reference, which
 *     are linked through index__ref.prev/next from first_ref;
 *   - mih, when present, covers the PDQ entries [0, mih->n); [mih->n, pdq_n) is the flat tail.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PDQ_MIN_CAP 64
#define FACE_MIN_CAP 16
#define RECORD_MIN_CAP 16
#define SCAN_CHUNK 4096                     /* entries per kernel call (hit buffer on the stack) */
#define MAX_ENTRIES_LIMIT ((size_t)1 << 30) /* positions must fit uint32 with tombstones */
#define MIH_AUTO_MAX_THRESHOLD 31           /* radius 1; radius 2 probes 8x more buckets */
#define VIEW_ARRAYS 7                       /* arrays a view owns, besides the multi-index */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

typedef struct index__ref {
    char id[INDEX_ID_MAX];   /* immutable */
    uint32_t profile;        /* immutable */
    uint32_t prev, next;     /* writer only: siblings in the profile's list, INDEX__NONE at ends */
    uint32_t n_pdq, n_face;  /* writer only */
    _Atomic uint8_t alive;   /* cleared under the write lock; scans read it without */
    _Atomic uint8_t has_sha; /* 0 -> 1 once, under the write lock, after sha256 is written */
    uint8_t sha256[32];      /* SHA-256 of the reference's image bytes: exact-copy detection */
} index__ref;

typedef struct index__profile {
    char id[INDEX_ID_MAX]; /* immutable */
    uint32_t first_ref;    /* writer only */
    uint32_t n_refs;       /* writer only: live references */
    uint8_t alive;         /* writer only */
} index__profile;

/* What a query pins. The arrays are owned by the shard's current view; a retired view owns the
 * arrays its successor replaced (garbage) and frees them when reclaimed. */
typedef struct index__view {
    _Atomic long pins;    /* +1 while current, +1 per query using it */
    size_t pdq_n, face_n; /* published counts; changed under the write lock */
    uint64_t *pdq_rows;   /* pdq_cap rows, 64-byte aligned */
    uint32_t *pdq_ref;
    uint8_t *pdq_quality;
    float *face_rows; /* face_cap rows, 64-byte aligned */
    uint32_t *face_ref;
    index__ref *refs;
    index__profile *profiles;
    size_t pdq_cap, face_cap, refs_cap, profiles_cap;
    index__mih *mih;
    void *garbage[VIEW_ARRAYS];
    size_t n_garbage, garbage_bytes;
    index__mih *garbage_mih;
    struct index__view *next_retired;
} index__view;

/* One tenant. Queries: pin under `lock` (shared). Writers: hold write_mutex throughout, which
 * guards every field below `cur` and lets them read the current view's arrays freely; they
 * take `lock` exclusively only to publish (counts, flags, profile_map, cur). Freed only by
 * index_free. */
typedef struct index__shard {
    char id[INDEX_ID_MAX];
    pthread_rwlock_t lock;
    pthread_mutex_t write_mutex;
    index__view *cur;       /* replaced under lock */
    index__map profile_map; /* queries look up under lock (shared); changed under lock */
    index__map ref_map;     /* writer only */
    size_t pdq_n, dead_pdq; /* pdq_n: rows written (== cur->pdq_n between calls) */
    size_t face_n, dead_face;
    size_t n_refs, live_refs; /* records written */
    size_t n_profiles, live_profiles;
    index__view *retired_head, *retired_tail; /* oldest first */
    size_t retired_bytes;
    /* searches by path, for stats; relaxed atomics (queries share the shard) */
    _Atomic uint64_t pdq_flat_searches, pdq_mih_searches, face_searches;
} index__shard;

struct index_db {
    index_config cfg; /* resolved: no zero fields */
    index_kernel pdq_kernel, face_kernel;
    index__pdq_scan_fn pdq_scan;
    index__pdq_scan_fn pdq_scan_scalar; /* for partial groups at the published end */
    index__face_dist_fn face_dist;
    int mih_popcnt;
    pthread_rwlock_t tenants_lock; /* guards shards, n_shards, tenant_map */
    index__shard **shards;
    size_t n_shards, shards_cap;
    index__map tenant_map;
};

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

static int check_id(const char *what, const char *id)
{
    if (!id || !*id)
        return vg_err_set(VG_EINVAL, "%s id is empty", what);
    if (strnlen(id, INDEX_ID_MAX) >= INDEX_ID_MAX)
        return vg_err_set(VG_EINVAL, "%s id longer than %d bytes", what, INDEX_ID_MAX - 1);
    return VG_OK;
}

/* Map keys are read from the records of the view the map belongs with. */
static const char *ref_key(const void *ctx, uint32_t h)
{
    return ((const index__view *)ctx)->refs[h].id;
}

static const char *profile_key(const void *ctx, uint32_t h)
{
    return ((const index__view *)ctx)->profiles[h].id;
}

static const char *shard_key(const void *ctx, uint32_t h)
{
    return ((const index_db *)ctx)->shards[h]->id;
}

static size_t round_up_group(size_t n)
{
    return (n + INDEX__GROUP - 1) / INDEX__GROUP * INDEX__GROUP;
}

static size_t pdq_row_bytes(size_t cap)
{
    return cap * 4 * sizeof(uint64_t);
}

static size_t face_row_bytes(size_t cap)
{
    return cap * INDEX_FACE_DIM * sizeof(float);
}

static void wrlock(index__shard *sh)
{
    pthread_rwlock_wrlock(&sh->lock);
}

static void unlock(index__shard *sh)
{
    pthread_rwlock_unlock(&sh->lock);
}

/* ---- views ---------------------------------------------------------------------------------- */

static size_t view_bytes(const index__view *v)
{
    return sizeof *v + pdq_row_bytes(v->pdq_cap) + v->pdq_cap * (sizeof(uint32_t) + 1) +
           face_row_bytes(v->face_cap) + v->face_cap * sizeof(uint32_t) +
           v->refs_cap * sizeof(index__ref) + v->profiles_cap * sizeof(index__profile) +
           index__mih_bytes(v->mih);
}

/* Frees a view with every array it owns (a current or never published view). */
static void view_free_all(index__view *v)
{
    if (!v)
        return;
    vg_free(v->pdq_rows);
    vg_free(v->pdq_ref);
    vg_free(v->pdq_quality);
    vg_free(v->face_rows);
    vg_free(v->face_ref);
    vg_free(v->refs);
    vg_free(v->profiles);
    index__mih_free(v->mih);
    vg_free(v);
}

/* Frees a retired view and its garbage (the arrays shared with newer views stay). */
static void view_free_retired(index__view *v)
{
    for (size_t i = 0; i < v->n_garbage; i++)
        vg_free(v->garbage[i]);
    index__mih_free(v->garbage_mih);
    vg_free(v);
}

/* A new view over the same arrays (field by field: queries update v->pins concurrently). */
static index__view *view_clone(const index__view *v)
{
    index__view *n = vg_calloc(1, sizeof *n);
    if (!n)
        return NULL;
    atomic_init(&n->pins, 1);
    n->pdq_n = v->pdq_n;
    n->face_n = v->face_n;
    n->pdq_rows = v->pdq_rows;
    n->pdq_ref = v->pdq_ref;
    n->pdq_quality = v->pdq_quality;
    n->face_rows = v->face_rows;
    n->face_ref = v->face_ref;
    n->refs = v->refs;
    n->profiles = v->profiles;
    n->pdq_cap = v->pdq_cap;
    n->face_cap = v->face_cap;
    n->refs_cap = v->refs_cap;
    n->profiles_cap = v->profiles_cap;
    n->mih = v->mih;
    return n;
}

/* Frees retired views from the oldest while nothing pins them. write_mutex held. */
static void reclaim(index__shard *sh)
{
    while (sh->retired_head &&
           atomic_load_explicit(&sh->retired_head->pins, memory_order_acquire) == 0) {
        index__view *v = sh->retired_head;
        sh->retired_head = v->next_retired;
        if (!sh->retired_head)
            sh->retired_tail = NULL;
        sh->retired_bytes -= v->garbage_bytes;
        view_free_retired(v);
    }
}

/* Makes nv current (with new_profiles, if not NULL, as profile_map) and retires the old view,
 * which takes the listed garbage. write_mutex held. */
static void view_publish(index__shard *sh, index__view *nv, void **garbage, size_t n_garbage,
                         size_t garbage_bytes, index__mih *garbage_mih, index__map *new_profiles)
{
    index__map old_profiles = {0};
    wrlock(sh);
    index__view *old = sh->cur;
    sh->cur = nv;
    if (new_profiles) {
        old_profiles = sh->profile_map;
        sh->profile_map = *new_profiles;
    }
    unlock(sh);
    index__map_free(&old_profiles); /* only ever read under the lock: nobody holds it now */
    if (!old)
        return;
    for (size_t i = 0; i < n_garbage; i++)
        old->garbage[i] = garbage[i];
    old->n_garbage = n_garbage;
    old->garbage_bytes = garbage_bytes;
    old->garbage_mih = garbage_mih;
    sh->retired_bytes += garbage_bytes;
    if (sh->retired_tail)
        sh->retired_tail->next_retired = old;
    else
        sh->retired_head = old;
    sh->retired_tail = old;
    atomic_fetch_sub_explicit(&old->pins, 1, memory_order_release); /* no longer current */
    reclaim(sh);
}

/* A query's hold on a shard. */
typedef struct pin {
    index__shard *sh;
    index__view *v;
    size_t pdq_n, face_n;
    uint32_t profile; /* the filter's handle, INDEX__NONE for none */
    int unknown_profile;
} pin;

static void pin_take(index__shard *sh, const char *profile_id, pin *p)
{
    pthread_rwlock_rdlock(&sh->lock);
    p->sh = sh;
    p->v = sh->cur;
    atomic_fetch_add_explicit(&p->v->pins, 1, memory_order_relaxed);
    p->pdq_n = p->v->pdq_n;
    p->face_n = p->v->face_n;
    p->profile = INDEX__NONE;
    p->unknown_profile = 0;
    if (profile_id) {
        p->profile = index__map_find(&sh->profile_map, profile_id, index__hash_str(profile_id),
                                     profile_key, p->v);
        p->unknown_profile = p->profile == INDEX__NONE;
    }
    pthread_rwlock_unlock(&sh->lock);
}

static void pin_release(pin *p)
{
    if (atomic_fetch_sub_explicit(&p->v->pins, 1, memory_order_acq_rel) != 1)
        return;
    /* Last user of a retired view: free what can be freed now unless a writer is busy (it
     * reclaims before it returns). */
    if (pthread_mutex_trylock(&p->sh->write_mutex) == 0) {
        reclaim(p->sh);
        pthread_mutex_unlock(&p->sh->write_mutex);
    }
}

static inline int ref_alive(const index__ref *r)
{
    return atomic_load_explicit(&r->alive, memory_order_relaxed);
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
    while (sh->retired_head) {
        index__view *v = sh->retired_head;
        sh->retired_head = v->next_retired;
        view_free_retired(v);
    }
    view_free_all(sh->cur);
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

static index__shard *shard_find(index_db *ix, const char *tenant)
{
    pthread_rwlock_rdlock(&ix->tenants_lock);
    uint32_t h = index__map_find(&ix->tenant_map, tenant, index__hash_str(tenant), shard_key, ix);
    index__shard *sh = h == INDEX__NONE ? NULL : ix->shards[h];
    pthread_rwlock_unlock(&ix->tenants_lock);
    return sh;
}

static int shard_get_or_create(index_db *ix, const char *tenant, index__shard **out)
{
    index__shard *sh = shard_find(ix, tenant);
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
        size_t cap = ix->shards_cap ? ix->shards_cap * 2 : RECORD_MIN_CAP;
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

/* ---- growth (writer, write_mutex held) ------------------------------------------------------ */

static int next_cap(size_t cap, size_t need, size_t min, size_t *out)
{
    size_t c = cap ? cap : min;
    while (c < need) {
        if (c > SIZE_MAX / 4)
            return vg_err_set(VG_ETOOBIG, "index array of %zu entries", need);
        c *= 2;
    }
    *out = c;
    return VG_OK;
}

/* The arrays are replaced, not realloc'd: queries may be scanning the old ones, which go to the
 * retired view. */
static int grow_pdq(index__shard *sh, size_t need)
{
    index__view *v = sh->cur;
    if (need <= v->pdq_cap)
        return VG_OK;
    size_t cap = 0;
    int rc = next_cap(v->pdq_cap, need, PDQ_MIN_CAP, &cap);
    if (rc)
        return rc;
    index__view *nv = view_clone(v);
    uint64_t *rows = index__alloc_big(pdq_row_bytes(cap));
    uint32_t *ref = vg_malloc(cap * sizeof *ref);
    uint8_t *quality = vg_malloc(cap);
    if (!nv || !rows || !ref || !quality) {
        vg_free(nv);
        vg_free(rows);
        vg_free(ref);
        vg_free(quality);
        return vg_err_set(VG_ENOMEM, "PDQ index of %zu entries", cap);
    }
    size_t used = pdq_row_bytes(sh->pdq_n);
    if (used)
        memcpy(rows, v->pdq_rows, used);
    /* Rows past pdq_n stay uninitialised: kernels only see whole groups of published rows. */
    if (sh->pdq_n) {
        memcpy(ref, v->pdq_ref, sh->pdq_n * sizeof *ref);
        memcpy(quality, v->pdq_quality, sh->pdq_n);
    }
    nv->pdq_rows = rows;
    nv->pdq_ref = ref;
    nv->pdq_quality = quality;
    nv->pdq_cap = cap;
    void *garbage[] = {v->pdq_rows, v->pdq_ref, v->pdq_quality};
    view_publish(sh, nv, garbage, 3, v->pdq_cap * (4 * sizeof(uint64_t) + sizeof(uint32_t) + 1),
                 NULL, NULL);
    return VG_OK;
}

static int grow_face(index__shard *sh, size_t need)
{
    index__view *v = sh->cur;
    if (need <= v->face_cap)
        return VG_OK;
    size_t cap = 0, bytes = 0;
    int rc = next_cap(v->face_cap, need, FACE_MIN_CAP, &cap);
    if (rc || (rc = vg_mul_size(cap, INDEX_FACE_DIM * sizeof(float), &bytes)))
        return rc;
    index__view *nv = view_clone(v);
    float *rows = index__alloc_big(bytes);
    uint32_t *ref = vg_malloc(cap * sizeof *ref);
    if (!nv || !rows || !ref) {
        vg_free(nv);
        vg_free(rows);
        vg_free(ref);
        return vg_err_set(VG_ENOMEM, "face index of %zu entries", cap);
    }
    if (sh->face_n) {
        memcpy(rows, v->face_rows, face_row_bytes(sh->face_n));
        memcpy(ref, v->face_ref, sh->face_n * sizeof *ref);
    }
    nv->face_rows = rows;
    nv->face_ref = ref;
    nv->face_cap = cap;
    void *garbage[] = {v->face_rows, v->face_ref};
    view_publish(sh, nv, garbage, 2, face_row_bytes(v->face_cap) + v->face_cap * sizeof(uint32_t),
                 NULL, NULL);
    return VG_OK;
}

/* Room for one more reference and one more profile record. */
static int grow_records(index__shard *sh)
{
    index__view *v = sh->cur;
    int refs = sh->n_refs + 1 > v->refs_cap, profiles = sh->n_profiles + 1 > v->profiles_cap;
    if (!refs && !profiles)
        return VG_OK;
    size_t rcap = v->refs_cap, pcap = v->profiles_cap;
    int rc = VG_OK;
    if (refs)
        rc = next_cap(v->refs_cap, sh->n_refs + 1, RECORD_MIN_CAP, &rcap);
    if (!rc && profiles)
        rc = next_cap(v->profiles_cap, sh->n_profiles + 1, RECORD_MIN_CAP, &pcap);
    if (rc)
        return rc;
    index__view *nv = view_clone(v);
    index__ref *r = refs ? vg_malloc(rcap * sizeof *r) : v->refs;
    index__profile *p = profiles ? vg_malloc(pcap * sizeof *p) : v->profiles;
    if (!nv || !r || !p) {
        vg_free(nv);
        if (refs)
            vg_free(r);
        if (profiles)
            vg_free(p);
        return vg_err_set(VG_ENOMEM, "index records");
    }
    void *garbage[2];
    size_t ng = 0, gbytes = 0;
    if (refs) {
        if (sh->n_refs)
            memcpy(r, v->refs, sh->n_refs * sizeof *r);
        garbage[ng++] = v->refs;
        gbytes += v->refs_cap * sizeof *r;
        nv->refs = r;
        nv->refs_cap = rcap;
    }
    if (profiles) {
        if (sh->n_profiles)
            memcpy(p, v->profiles, sh->n_profiles * sizeof *p);
        garbage[ng++] = v->profiles;
        gbytes += v->profiles_cap * sizeof *p;
        nv->profiles = p;
        nv->profiles_cap = pcap;
    }
    view_publish(sh, nv, garbage, ng, gbytes, NULL, NULL);
    return VG_OK;
}

/* ---- multi-index and compaction (writer, write_mutex held) ---------------------------------- */

static int want_mih(const index_db *ix, size_t live_pdq)
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

/* Rebuilds the multi-index when the flat tail has grown past max(mih_tail_min, pdq_n / 8).
 * Failure only means the tail stays longer, so it is logged, not returned. */
static void maybe_rebuild_mih(index_db *ix, index__shard *sh)
{
    index__view *v = sh->cur;
    if (!want_mih(ix, sh->pdq_n - sh->dead_pdq))
        return;
    size_t covered = v->mih ? v->mih->n : 0;
    size_t tail = sh->pdq_n - covered;
    if (tail <= VG_MAX(ix->cfg.mih_tail_min, sh->pdq_n / 8))
        return;
    index__mih *m = NULL;
    index__view *nv = view_clone(v);
    if (!nv || index__mih_build(v->pdq_rows, sh->pdq_n, &m)) {
        vg_free(nv);
        VG_WARN("index", "tenant %s: multi-index rebuild failed (%s); tail of %zu stays flat",
                sh->id, vg_err_msg(), tail);
        return;
    }
    nv->mih = m;
    view_publish(sh, nv, NULL, 0, index__mih_bytes(v->mih), v->mih, NULL);
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
    nv->pdq_cap = round_up_group(VG_MAX(live_pdq + live_pdq / 4, (size_t)PDQ_MIN_CAP));
    nv->face_cap = VG_MAX(live_face + live_face / 4, (size_t)FACE_MIN_CAP);
    nv->refs_cap = VG_MAX(sh->live_refs + sh->live_refs / 4, (size_t)RECORD_MIN_CAP);
    nv->profiles_cap = VG_MAX(sh->live_profiles + sh->live_profiles / 4, (size_t)RECORD_MIN_CAP);
    nv->pdq_rows = index__alloc_big(pdq_row_bytes(nv->pdq_cap));
    nv->pdq_ref = vg_malloc(nv->pdq_cap * sizeof(uint32_t));
    nv->pdq_quality = vg_malloc(nv->pdq_cap);
    nv->face_rows = index__alloc_big(face_row_bytes(nv->face_cap));
    nv->face_ref = vg_malloc(nv->face_cap * sizeof(uint32_t));
    nv->refs = vg_malloc(nv->refs_cap * sizeof(index__ref));
    nv->profiles = vg_malloc(nv->profiles_cap * sizeof(index__profile));
    if (!nv->pdq_rows || !nv->pdq_ref || !nv->pdq_quality || !nv->face_rows || !nv->face_ref ||
        !nv->refs || !nv->profiles)
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
        if (!ref_alive(&v->refs[r]))
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
    }
    for (size_t p = 0; p < sh->face_n; p++) {
        uint32_t r = ref_new[v->face_ref[p]];
        if (r == INDEX__NONE)
            continue;
        size_t q = nv->face_n++;
        memcpy(nv->face_rows + q * INDEX_FACE_DIM, v->face_rows + p * INDEX_FACE_DIM,
               INDEX_FACE_DIM * sizeof(float));
        nv->face_ref[q] = r;
    }
    if (want_mih(ix, nv->pdq_n) && index__mih_build(nv->pdq_rows, nv->pdq_n, &nv->mih))
        goto fail;
    vg_free(ref_new);
    vg_free(prof_new);
    return VG_OK;
fail:
    vg_free(ref_new);
    vg_free(prof_new);
    view_free_all(out->v ? out->v : nv);
    index__map_free(&out->ref_map);
    index__map_free(&out->profile_map);
    memset(out, 0, sizeof *out);
    return vg_err_set(VG_ENOMEM, "index compaction");
}

/* Installs a compacted (or empty) view: every array of the old view becomes garbage. */
static void install(index__shard *sh, compacted *c)
{
    index__view *old = sh->cur;
    void *garbage[VIEW_ARRAYS] = {old->pdq_rows, old->pdq_ref, old->pdq_quality, old->face_rows,
                                  old->face_ref, old->refs,    old->profiles};
    atomic_store(&c->v->pins, 1);
    view_publish(sh, c->v, garbage, VIEW_ARRAYS, view_bytes(old) - sizeof *old, old->mih,
                 &c->profile_map);
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

/* ---- adds ----------------------------------------------------------------------------------- */

/* Finds or prepares the reference for an add: on success *ref_out is an existing live handle, or
 * INDEX__NONE with records and maps reserved so that the commit cannot fail. */
static int add_prepare(index_db *ix, index__shard *sh, const char *profile, const char *reference,
                       uint32_t *ref_out)
{
    size_t live = (sh->pdq_n - sh->dead_pdq) + (sh->face_n - sh->dead_face);
    if (live >= ix->cfg.max_entries_per_tenant || sh->pdq_n + sh->face_n >= MAX_ENTRIES_LIMIT * 2)
        return vg_err_set(VG_ETOOBIG, "tenant %s holds %zu entries (max_entries_per_tenant)",
                          sh->id, live);
    index__view *v = sh->cur;
    uint32_t r = index__map_find(&sh->ref_map, reference, index__hash_str(reference), ref_key, v);
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
    int rc = grow_records(sh);
    if (!rc)
        rc = index__map_reserve(&sh->ref_map, 1);
    if (!rc) {
        wrlock(sh); /* a rehash moves slots queries may be probing */
        rc = index__map_reserve(&sh->profile_map, 1);
        unlock(sh);
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
    uint32_t p = index__map_find(&sh->profile_map, profile, *phash, profile_key, v);
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
static void add_link_ref(index__shard *sh, uint32_t ref, int new_profile)
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
    index__map_insert(&sh->ref_map, index__hash_str(x->id), ref);
    sh->n_refs++;
    sh->live_refs++;
}

static int check_add_ids(const char *tenant, const char *profile, const char *reference)
{
    int rc = check_id("tenant", tenant);
    if (!rc)
        rc = check_id("profile", profile);
    if (!rc)
        rc = check_id("reference", reference);
    return rc;
}

/* Shared by both adds: kind 0 = PDQ (hash, quality), 1 = face (descriptor). */
static int add_entry(index_db *ix, const char *tenant, const char *profile, const char *reference,
                     int kind, const uint8_t *hash, int quality, const float *descriptor)
{
    index__shard *sh = NULL;
    int rc = shard_get_or_create(ix, tenant, &sh);
    if (rc)
        return rc;
    pthread_mutex_lock(&sh->write_mutex);
    reclaim(sh);
    uint32_t ref = INDEX__NONE;
    rc = add_prepare(ix, sh, profile, reference, &ref);
    if (!rc)
        rc = kind == 0 ? grow_pdq(sh, sh->pdq_n + 1) : grow_face(sh, sh->face_n + 1);
    if (!rc) {
        int created = ref == INDEX__NONE, new_profile = 0;
        uint32_t phash = 0;
        if (created)
            ref = add_write_ref(sh, profile, reference, &new_profile, &phash);
        index__view *v = sh->cur;
        if (kind == 0) {
            uint64_t w[4];
            index__pdq_words(hash, w);
            memcpy(v->pdq_rows + sh->pdq_n * 4, w, sizeof w);
            v->pdq_ref[sh->pdq_n] = ref;
            v->pdq_quality[sh->pdq_n] = (uint8_t)quality;
            sh->pdq_n++;
            v->refs[ref].n_pdq++;
        } else {
            memcpy(v->face_rows + sh->face_n * INDEX_FACE_DIM, descriptor,
                   INDEX_FACE_DIM * sizeof(float));
            v->face_ref[sh->face_n] = ref;
            sh->face_n++;
            v->refs[ref].n_face++;
        }
        wrlock(sh); /* publish: the records and the row above become visible together */
        if (new_profile)
            index__map_insert(&sh->profile_map, phash, v->refs[ref].profile);
        v->pdq_n = sh->pdq_n;
        v->face_n = sh->face_n;
        unlock(sh);
        if (created)
            add_link_ref(sh, ref, new_profile);
        if (kind == 0)
            maybe_rebuild_mih(ix, sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_pdq_add(index_db *ix, const char *tenant, const char *profile, const char *reference,
                  const uint8_t hash[INDEX_PDQ_BYTES], int quality)
{
    int rc = check_add_ids(tenant, profile, reference);
    if (rc)
        return rc;
    if (!hash)
        return vg_err_set(VG_EINVAL, "no PDQ hash");
    if (quality < 0 || quality > 100)
        return vg_err_set(VG_EINVAL, "PDQ quality %d outside 0..100", quality);
    return add_entry(ix, tenant, profile, reference, 0, hash, quality, NULL);
}

int index_face_add(index_db *ix, const char *tenant, const char *profile, const char *reference,
                   const float descriptor[INDEX_FACE_DIM])
{
    int rc = check_add_ids(tenant, profile, reference);
    if (rc)
        return rc;
    if (!descriptor)
        return vg_err_set(VG_EINVAL, "no face descriptor");
    for (int i = 0; i < INDEX_FACE_DIM; i++)
        if (!isfinite(descriptor[i]))
            return vg_err_set(VG_EINVAL, "face descriptor component %d is not finite", i);
    return add_entry(ix, tenant, profile, reference, 1, NULL, 0, descriptor);
}

int index_set_sha256(index_db *ix, const char *tenant, const char *reference,
                     const uint8_t sha256[32])
{
    int rc = check_id("tenant", tenant);
    if (!rc)
        rc = check_id("reference", reference);
    if (rc)
        return rc;
    if (!sha256)
        return vg_err_set(VG_EINVAL, "no SHA-256");
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "no reference %s in tenant %s", reference, tenant);
    pthread_mutex_lock(&sh->write_mutex);
    index__view *v = sh->cur;
    uint32_t r = index__map_find(&sh->ref_map, reference, index__hash_str(reference), ref_key, v);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "no reference %s in tenant %s", reference, tenant);
    } else if (atomic_load_explicit(&v->refs[r].has_sha, memory_order_relaxed)) {
        /* Queries read the bytes without a lock once the flag is set, so they never change. */
        if (memcmp(v->refs[r].sha256, sha256, 32) != 0)
            rc = vg_err_set(VG_ECONFLICT, "reference %s already has another SHA-256", reference);
    } else {
        memcpy(v->refs[r].sha256, sha256, 32);
        wrlock(sh);
        atomic_store_explicit(&v->refs[r].has_sha, 1, memory_order_release);
        unlock(sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

/* ---- removals ------------------------------------------------------------------------------- */

/* Under the write lock: kills a live reference and unlinks it from its profile, killing the
 * profile with its last reference. */
static void kill_ref(index__shard *sh, uint32_t r)
{
    index__view *v = sh->cur;
    index__ref *x = &v->refs[r];
    index__profile *p = &v->profiles[x->profile];
    index__map_remove(&sh->ref_map, x->id, index__hash_str(x->id), ref_key, v);
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
        index__map_remove(&sh->profile_map, p->id, index__hash_str(p->id), profile_key, v);
        p->alive = 0;
        sh->live_profiles--;
    }
}

int index_remove_reference(index_db *ix, const char *tenant, const char *reference)
{
    int rc = check_id("tenant", tenant);
    if (!rc)
        rc = check_id("reference", reference);
    if (rc)
        return rc;
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "tenant %s has no index entries", tenant);
    pthread_mutex_lock(&sh->write_mutex);
    reclaim(sh);
    uint32_t r =
        index__map_find(&sh->ref_map, reference, index__hash_str(reference), ref_key, sh->cur);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "reference %s not in the index", reference);
    } else {
        wrlock(sh);
        kill_ref(sh, r);
        unlock(sh);
        maybe_compact(ix, sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_remove_profile(index_db *ix, const char *tenant, const char *profile)
{
    int rc = check_id("tenant", tenant);
    if (!rc)
        rc = check_id("profile", profile);
    if (rc)
        return rc;
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "tenant %s has no index entries", tenant);
    pthread_mutex_lock(&sh->write_mutex);
    reclaim(sh);
    index__view *v = sh->cur;
    uint32_t p =
        index__map_find(&sh->profile_map, profile, index__hash_str(profile), profile_key, v);
    if (p == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "profile %s not in the index", profile);
    } else {
        wrlock(sh);
        while (v->profiles[p].alive)
            kill_ref(sh, v->profiles[p].first_ref);
        unlock(sh);
        maybe_compact(ix, sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

int index_remove_tenant(index_db *ix, const char *tenant)
{
    int rc = check_id("tenant", tenant);
    if (rc)
        return rc;
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return vg_err_set(VG_ENOTFOUND, "tenant %s has no index entries", tenant);
    pthread_mutex_lock(&sh->write_mutex);
    reclaim(sh);
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

/* ---- PDQ search ----------------------------------------------------------------------------- */

index_pdq_query index_pdq_query_defaults(void)
{
    return (index_pdq_query){.threshold = INDEX_PDQ_THRESHOLD_DEFAULT};
}

typedef struct cand {
    uint32_t ref;
    uint16_t distance;
    uint8_t variant;
    uint8_t quality;
} cand;

static int cand_by_ref(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->ref != y->ref)
        return x->ref < y->ref ? -1 : 1;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return (x->variant > y->variant) - (x->variant < y->variant);
}

static int cand_by_distance(const void *a, const void *b, void *ctx)
{
    const cand *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    const index__view *v = ctx;
    return strcmp(v->refs[x->ref].id, v->refs[y->ref].id);
}

/* Keeps the first (best) candidate of each reference; cands sorted by cand_by_ref. */
static size_t cand_dedupe(cand *c, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || c[k - 1].ref != c[i].ref)
            c[k++] = c[i];
    return k;
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
 * variants uses the tables only from mih_min_entries * max(1, v^2 / 2) live entries: 32k for
 * 1 variant, 262k for 4, 1M for 8 with the default, the crossovers measured in
 * bench/results/index.md. */
static int use_mih(const index_db *ix, const index__view *v, size_t live, int threshold, size_t nv)
{
    if (!v->mih || ix->cfg.pdq_search == INDEX_SEARCH_FLAT)
        return 0;
    if (ix->cfg.pdq_search == INDEX_SEARCH_MIH)
        return threshold <= INDEX__MIH_SLOTS * (INDEX__MIH_MAX_RADIUS + 1) - 1;
    size_t need;
    if (vg_mul_size(ix->cfg.mih_min_entries, VG_MAX((size_t)1, nv * nv / 2), &need))
        return 0;
    return threshold <= MIH_AUTO_MAX_THRESHOLD && live >= need;
}

static int pdq_search_pinned(const index_db *ix, const pin *pn, const index_pdq_query *q,
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
    cand *c = NULL;
    size_t nc = 0;
    if (!rc && hits.n) {
        c = vg_malloc(hits.n * sizeof *c);
        if (!c)
            rc = vg_err_set(VG_ENOMEM, "PDQ candidates");
    }
    for (size_t i = 0; !rc && i < hits.n; i++) {
        uint32_t p = hits.v[i].pos;
        const index__ref *r = &v->refs[v->pdq_ref[p]];
        if (!ref_alive(r) || (pn->profile != INDEX__NONE && r->profile != pn->profile) ||
            v->pdq_quality[p] < q->min_quality)
            continue;
        c[nc++] = (cand){v->pdq_ref[p], hits.v[i].distance, (uint8_t)hits.v[i].variant,
                         v->pdq_quality[p]};
    }
    vg_free(hits.v);
    if (!rc && nc) {
        qsort(c, nc, sizeof *c, cand_by_ref);
        nc = cand_dedupe(c, nc);
        qsort_r(c, nc, sizeof *c, cand_by_distance, (void *)v);
        size_t max = q->max_results ? q->max_results : INDEX_PDQ_MAX_RESULTS_DEFAULT;
        size_t n = VG_MIN(nc, max);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "PDQ results");
        } else {
            for (size_t i = 0; i < n; i++) {
                index_pdq_match *m = &out->matches[i];
                const index__ref *r = &v->refs[c[i].ref];
                memcpy(m->reference_id, r->id, INDEX_ID_MAX);
                memcpy(m->profile_id, v->profiles[r->profile].id, INDEX_ID_MAX);
                m->distance = c[i].distance;
                m->dihedral = c[i].variant;
                m->quality = c[i].quality;
                m->exact = q->sha256 && atomic_load_explicit(&r->has_sha, memory_order_acquire) &&
                           memcmp(r->sha256, q->sha256, 32) == 0;
            }
            out->n = n;
            out->truncated = nc > n;
        }
    }
    vg_free(c);
    return rc;
}

int index_pdq_search(index_db *ix, const char *tenant, const index_pdq_query *q,
                     index_pdq_result *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_id("tenant", tenant);
    if (rc)
        return rc;
    if (!q || !q->variants || q->n_variants < 1 || q->n_variants > INDEX_PDQ_MAX_VARIANTS)
        return vg_err_set(VG_EINVAL, "PDQ query needs 1..%d hashes", INDEX_PDQ_MAX_VARIANTS);
    if (q->threshold < 0 || q->threshold > 256)
        return vg_err_set(VG_EINVAL, "PDQ threshold %d outside 0..256", q->threshold);
    if (q->profile_id && (rc = check_id("profile", q->profile_id)))
        return rc;
    uint64_t qw[INDEX_PDQ_MAX_VARIANTS][4];
    for (size_t v = 0; v < q->n_variants; v++)
        index__pdq_words(q->variants[v], qw[v]);
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return VG_OK;
    pin pn;
    pin_take(sh, q->profile_id, &pn);
    int used_mih = 0;
    rc = pdq_search_pinned(ix, &pn, q, (const uint64_t(*)[4])qw, &used_mih, out);
    pin_release(&pn);
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

/* ---- face search ---------------------------------------------------------------------------- */

typedef struct fcand {
    uint32_t ref;
    float d2;
} fcand;

static int fcand_by_ref(const void *a, const void *b)
{
    const fcand *x = a, *y = b;
    if (x->ref != y->ref)
        return x->ref < y->ref ? -1 : 1;
    return (x->d2 > y->d2) - (x->d2 < y->d2);
}

static int fcand_by_distance(const void *a, const void *b, void *ctx)
{
    const fcand *x = a, *y = b;
    if (x->d2 != y->d2)
        return x->d2 < y->d2 ? -1 : 1;
    const index__view *v = ctx;
    return strcmp(v->refs[x->ref].id, v->refs[y->ref].id);
}

static int face_search_pinned(const index_db *ix, const pin *pn, const float *qv, float t2,
                              size_t top_k, index_face_result *out)
{
    const index__view *v = pn->v;
    if (pn->unknown_profile)
        return VG_OK;
    enum { CHUNK = 1024 };
    float d2[CHUNK];
    fcand *c = NULL;
    size_t nc = 0, cap = 0;
    for (size_t b = 0; b < pn->face_n; b += CHUNK) {
        size_t n = VG_MIN((size_t)CHUNK, pn->face_n - b);
        ix->face_dist(v->face_rows + b * INDEX_FACE_DIM, n, qv, d2);
        for (size_t i = 0; i < n; i++) {
            if (!(d2[i] < t2))
                continue;
            uint32_t ref = v->face_ref[b + i];
            const index__ref *r = &v->refs[ref];
            if (!ref_alive(r) || (pn->profile != INDEX__NONE && r->profile != pn->profile))
                continue;
            if (nc == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                fcand *nvec = vg_realloc(c, ncap * sizeof *nvec);
                if (!nvec) {
                    vg_free(c);
                    return vg_err_set(VG_ENOMEM, "face candidates");
                }
                c = nvec;
                cap = ncap;
            }
            c[nc++] = (fcand){ref, d2[i]};
        }
    }
    int rc = VG_OK;
    if (nc) {
        qsort(c, nc, sizeof *c, fcand_by_ref);
        size_t k = 0;
        for (size_t i = 0; i < nc; i++)
            if (k == 0 || c[k - 1].ref != c[i].ref)
                c[k++] = c[i];
        qsort_r(c, k, sizeof *c, fcand_by_distance, (void *)v);
        size_t n = VG_MIN(k, top_k);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "face results");
        } else {
            for (size_t i = 0; i < n; i++) {
                const index__ref *r = &v->refs[c[i].ref];
                memcpy(out->matches[i].reference_id, r->id, INDEX_ID_MAX);
                memcpy(out->matches[i].profile_id, v->profiles[r->profile].id, INDEX_ID_MAX);
                out->matches[i].distance = sqrtf(c[i].d2);
            }
            out->n = n;
        }
    }
    vg_free(c);
    return rc;
}

int index_face_search(index_db *ix, const char *tenant, const index_face_query *q,
                      index_face_result *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_id("tenant", tenant);
    if (rc)
        return rc;
    if (!q || !q->descriptor)
        return vg_err_set(VG_EINVAL, "face query without descriptor");
    if (q->profile_id && (rc = check_id("profile", q->profile_id)))
        return rc;
    float thr = q->threshold > 0 ? q->threshold : INDEX_FACE_THRESHOLD_DEFAULT;
    if (!isfinite(thr))
        return vg_err_set(VG_EINVAL, "face threshold is not finite");
    size_t top_k = q->top_k ? q->top_k : INDEX_FACE_TOP_K_DEFAULT;
    if (top_k > INDEX_FACE_TOP_K_MAX)
        return vg_err_set(VG_EINVAL, "top_k %zu > %d", top_k, INDEX_FACE_TOP_K_MAX);
    _Alignas(64) float qv[INDEX_FACE_DIM];
    for (int i = 0; i < INDEX_FACE_DIM; i++) {
        if (!isfinite(q->descriptor[i]))
            return vg_err_set(VG_EINVAL, "face descriptor component %d is not finite", i);
        qv[i] = q->descriptor[i];
    }
    index__shard *sh = shard_find(ix, tenant);
    if (!sh)
        return VG_OK;
    pin pn;
    pin_take(sh, q->profile_id, &pn);
    rc = face_search_pinned(ix, &pn, qv, thr * thr, top_k, out);
    pin_release(&pn);
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
    s->bytes += sizeof *sh + view_bytes(sh->cur) + sh->retired_bytes +
                index__map_bytes(&sh->ref_map) + index__map_bytes(&sh->profile_map);
    pthread_mutex_unlock(&sh->write_mutex);
    s->pdq_flat_searches += atomic_load_explicit(&sh->pdq_flat_searches, memory_order_relaxed);
    s->pdq_mih_searches += atomic_load_explicit(&sh->pdq_mih_searches, memory_order_relaxed);
    s->face_searches += atomic_load_explicit(&sh->face_searches, memory_order_relaxed);
}

int index_stats_get(index_db *ix, const char *tenant, index_stats *out)
{
    index_stats s = {0};
    if (tenant) {
        index__shard *sh = shard_find(ix, tenant);
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
