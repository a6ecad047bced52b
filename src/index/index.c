/* index: tenants, shards, updates, searches and compaction. See index.h for the contract and
 * index_int.h for the storage layout.
 *
 * Invariants of a shard's tables (index__tables):
 *   - entries [0, pdq_n) and [0, face_n) are immutable once appended, except that compaction
 *     replaces the whole tables; an entry is live iff its reference is alive;
 *   - a reference is alive iff it is in ref_map; it has n_pdq + n_face >= 1 entries; its handle
 *     stays valid (dead) until the next compaction renumbers references and profiles;
 *   - a profile is alive iff it is in profile_map, iff it has at least one live reference, which
 *     are linked through index__ref.prev/next from first_ref;
 *   - mih, when present, covers the PDQ entries [0, mih->n); [mih->n, pdq_n) is the flat tail.
 * Locking: readers hold the shard's rwlock shared; every change of the tables happens under it
 * exclusively, and the writer that makes it holds write_mutex, which lets it read the tables
 * without the rwlock while it prepares large replacements.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#define PDQ_MIN_CAP 64
#define FACE_MIN_CAP 16
#define RECORD_MIN_CAP 16
#define SCAN_CHUNK 4096                     /* entries per kernel call (hit buffer on the stack) */
#define MAX_ENTRIES_LIMIT ((size_t)1 << 30) /* positions must fit uint32 with tombstones */
#define MIH_AUTO_MAX_THRESHOLD 31           /* radius 1; radius 2 probes 8x more buckets */

typedef struct index__ref {
    char id[INDEX_ID_MAX];
    uint32_t profile;
    uint32_t prev, next; /* siblings in the profile's list, INDEX__NONE at the ends */
    uint32_t n_pdq, n_face;
    uint8_t alive;
    uint8_t has_sha;    /* sha256 set by index_set_sha256 */
    uint8_t sha256[32]; /* SHA-256 of the reference's image bytes: exact-copy detection */
} index__ref;

typedef struct index__profile {
    char id[INDEX_ID_MAX];
    uint32_t first_ref;
    uint32_t n_refs; /* live */
    uint8_t alive;
} index__profile;

typedef struct index__tables {
    uint64_t *pdq_rows; /* pdq_cap rows of 4 words, 64-byte aligned */
    uint32_t *pdq_ref;
    uint8_t *pdq_quality;
    size_t pdq_n, pdq_cap, dead_pdq;
    float *face_rows; /* face_cap rows, 64-byte aligned */
    uint32_t *face_ref;
    size_t face_n, face_cap, dead_face;
    index__ref *refs;
    size_t n_refs, refs_cap, live_refs;
    index__profile *profiles;
    size_t n_profiles, profiles_cap, live_profiles;
    index__map ref_map, profile_map;
    index__mih *mih;
} index__tables;

/* One tenant. Readers: queries and stats (lock shared). Writers: updates, holding write_mutex
 * throughout and lock exclusively while they change the tables. Freed only by index_free. */
typedef struct index__shard {
    char id[INDEX_ID_MAX];
    pthread_rwlock_t lock;
    pthread_mutex_t write_mutex;
    index__tables t;
    /* searches by path, for stats; relaxed atomics (readers share the shard) */
    _Atomic uint64_t pdq_flat_searches, pdq_mih_searches, face_searches;
} index__shard;

struct index_db {
    index_config cfg; /* resolved: no zero fields */
    index_kernel pdq_kernel, face_kernel;
    index__pdq_scan_fn pdq_scan;
    index__face_dist_fn face_dist;
    int mih_popcnt;
    pthread_rwlock_t tenants_lock; /* guards shards, n_shards, tenant_map */
    index__shard **shards;
    size_t n_shards, shards_cap;
    index__map tenant_map;
};

/* ---- small helpers -------------------------------------------------------------------------- */

#define HUGE_PAGE_BYTES ((size_t)2 << 20)

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

static const char *ref_key(const void *ctx, uint32_t h)
{
    return ((const index__tables *)ctx)->refs[h].id;
}

static const char *profile_key(const void *ctx, uint32_t h)
{
    return ((const index__tables *)ctx)->profiles[h].id;
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

static void tables_free(index__tables *t)
{
    vg_free(t->pdq_rows);
    vg_free(t->pdq_ref);
    vg_free(t->pdq_quality);
    vg_free(t->face_rows);
    vg_free(t->face_ref);
    vg_free(t->refs);
    vg_free(t->profiles);
    index__map_free(&t->ref_map);
    index__map_free(&t->profile_map);
    index__mih_free(t->mih);
    memset(t, 0, sizeof *t);
}

static size_t tables_bytes(const index__tables *t)
{
    return pdq_row_bytes(t->pdq_cap) + t->pdq_cap * (sizeof(uint32_t) + 1) +
           t->face_cap * (INDEX_FACE_DIM * sizeof(float) + sizeof(uint32_t)) +
           t->refs_cap * sizeof(index__ref) + t->profiles_cap * sizeof(index__profile) +
           index__map_bytes(&t->ref_map) + index__map_bytes(&t->profile_map) +
           index__mih_bytes(t->mih);
}

static void wrlock(index__shard *sh)
{
    pthread_rwlock_wrlock(&sh->lock);
}

static void unlock(index__shard *sh)
{
    pthread_rwlock_unlock(&sh->lock);
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
    pthread_rwlock_init(&ix->tenants_lock, NULL);
    *out = ix;
    return VG_OK;
}

void index_free(index_db *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n_shards; i++) {
        index__shard *sh = ix->shards[i];
        tables_free(&sh->t);
        pthread_rwlock_destroy(&sh->lock);
        pthread_mutex_destroy(&sh->write_mutex);
        vg_free(sh);
    }
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
    if (!sh) {
        rc = vg_err_set(VG_ENOMEM, "tenant shard");
        goto done;
    }
    strcpy(sh->id, tenant);
    /* Writer preference: queries arrive continuously, and with glibc's default (reader
     * preference) a delete could wait behind them indefinitely. */
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

/* The arrays are replaced, not realloc'd, so that copying runs while queries keep reading the
 * old ones; only the pointer swap takes the write lock. */
static int grow_pdq(index__shard *sh, size_t need)
{
    index__tables *t = &sh->t;
    if (need <= t->pdq_cap)
        return VG_OK;
    size_t cap = 0;
    int rc = next_cap(t->pdq_cap, need, PDQ_MIN_CAP, &cap);
    if (rc)
        return rc;
    uint64_t *rows = index__alloc_big(pdq_row_bytes(cap));
    uint32_t *ref = vg_malloc(cap * sizeof *ref);
    uint8_t *quality = vg_malloc(cap);
    if (!rows || !ref || !quality) {
        vg_free(rows);
        vg_free(ref);
        vg_free(quality);
        return vg_err_set(VG_ENOMEM, "PDQ index of %zu entries", cap);
    }
    size_t old_bytes = pdq_row_bytes(t->pdq_cap);
    if (old_bytes)
        memcpy(rows, t->pdq_rows, old_bytes);
    memset((char *)rows + old_bytes, 0, pdq_row_bytes(cap) - old_bytes);
    if (t->pdq_n) {
        memcpy(ref, t->pdq_ref, t->pdq_n * sizeof *ref);
        memcpy(quality, t->pdq_quality, t->pdq_n);
    }
    uint64_t *old_rows = t->pdq_rows;
    uint32_t *old_ref = t->pdq_ref;
    uint8_t *old_quality = t->pdq_quality;
    wrlock(sh);
    t->pdq_rows = rows;
    t->pdq_ref = ref;
    t->pdq_quality = quality;
    t->pdq_cap = cap;
    unlock(sh);
    vg_free(old_rows);
    vg_free(old_ref);
    vg_free(old_quality);
    return VG_OK;
}

static int grow_face(index__shard *sh, size_t need)
{
    index__tables *t = &sh->t;
    if (need <= t->face_cap)
        return VG_OK;
    size_t cap = 0, bytes = 0;
    int rc = next_cap(t->face_cap, need, FACE_MIN_CAP, &cap);
    if (rc || (rc = vg_mul_size(cap, INDEX_FACE_DIM * sizeof(float), &bytes)))
        return rc;
    float *rows = index__alloc_big(bytes);
    uint32_t *ref = vg_malloc(cap * sizeof *ref);
    if (!rows || !ref) {
        vg_free(rows);
        vg_free(ref);
        return vg_err_set(VG_ENOMEM, "face index of %zu entries", cap);
    }
    if (t->face_n) {
        memcpy(rows, t->face_rows, t->face_n * INDEX_FACE_DIM * sizeof(float));
        memcpy(ref, t->face_ref, t->face_n * sizeof *ref);
    }
    float *old_rows = t->face_rows;
    uint32_t *old_ref = t->face_ref;
    wrlock(sh);
    t->face_rows = rows;
    t->face_ref = ref;
    t->face_cap = cap;
    unlock(sh);
    vg_free(old_rows);
    vg_free(old_ref);
    return VG_OK;
}

/* refs / profiles: one helper for both record arrays. */
static int grow_records(index__shard *sh, void **arr, size_t *cap_io, size_t used, size_t elem,
                        size_t need)
{
    if (need <= *cap_io)
        return VG_OK;
    size_t cap = 0, bytes = 0;
    int rc = next_cap(*cap_io, need, RECORD_MIN_CAP, &cap);
    if (rc || (rc = vg_mul_size(cap, elem, &bytes)))
        return rc;
    void *v = vg_malloc(bytes);
    if (!v)
        return vg_err_set(VG_ENOMEM, "index records");
    if (used)
        memcpy(v, *arr, used * elem);
    void *old = *arr;
    wrlock(sh);
    *arr = v;
    *cap_io = cap;
    unlock(sh);
    vg_free(old);
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
    index__tables *t = &sh->t;
    if (!want_mih(ix, t->pdq_n - t->dead_pdq))
        return;
    size_t covered = t->mih ? t->mih->n : 0;
    size_t tail = t->pdq_n - covered;
    if (tail <= VG_MAX(ix->cfg.mih_tail_min, t->pdq_n / 8))
        return;
    index__mih *m;
    if (index__mih_build(t->pdq_rows, t->pdq_n, &m)) {
        VG_WARN("index", "tenant %s: multi-index rebuild failed (%s); tail of %zu stays flat",
                sh->id, vg_err_msg(), tail);
        return;
    }
    index__mih *old = t->mih;
    wrlock(sh);
    t->mih = m;
    unlock(sh);
    index__mih_free(old);
}

/* Builds compacted copies of the tables in *nt: live entries in their order, references and
 * profiles renumbered, maps rebuilt, multi-index rebuilt if wanted. */
static int tables_compact(const index_db *ix, const index__tables *t, index__tables *nt)
{
    memset(nt, 0, sizeof *nt);
    int rc = VG_ENOMEM;
    uint32_t *ref_new = vg_malloc((t->n_refs + 1) * sizeof(uint32_t)); /* +1: never 0 bytes */
    uint32_t *prof_new = vg_malloc((t->n_profiles + 1) * sizeof(uint32_t));
    if (!ref_new || !prof_new)
        goto fail;

    size_t live_pdq = t->pdq_n - t->dead_pdq, live_face = t->face_n - t->dead_face;
    nt->pdq_cap = round_up_group(VG_MAX(live_pdq + live_pdq / 4, (size_t)PDQ_MIN_CAP));
    nt->face_cap = VG_MAX(live_face + live_face / 4, (size_t)FACE_MIN_CAP);
    nt->refs_cap = VG_MAX(t->live_refs + t->live_refs / 4, (size_t)RECORD_MIN_CAP);
    nt->profiles_cap = VG_MAX(t->live_profiles + t->live_profiles / 4, (size_t)RECORD_MIN_CAP);
    nt->pdq_rows = index__alloc_big(pdq_row_bytes(nt->pdq_cap));
    nt->pdq_ref = vg_malloc(nt->pdq_cap * sizeof(uint32_t));
    nt->pdq_quality = vg_malloc(nt->pdq_cap);
    nt->face_rows = index__alloc_big(nt->face_cap * INDEX_FACE_DIM * sizeof(float));
    nt->face_ref = vg_malloc(nt->face_cap * sizeof(uint32_t));
    nt->refs = vg_malloc(nt->refs_cap * sizeof(index__ref));
    nt->profiles = vg_malloc(nt->profiles_cap * sizeof(index__profile));
    if (!nt->pdq_rows || !nt->pdq_ref || !nt->pdq_quality || !nt->face_rows || !nt->face_ref ||
        !nt->refs || !nt->profiles)
        goto fail;
    if (index__map_reserve(&nt->ref_map, t->live_refs) ||
        index__map_reserve(&nt->profile_map, t->live_profiles))
        goto fail;
    memset(nt->pdq_rows, 0, pdq_row_bytes(nt->pdq_cap));

    for (size_t p = 0; p < t->n_profiles; p++) {
        prof_new[p] = INDEX__NONE;
        if (!t->profiles[p].alive)
            continue;
        prof_new[p] = (uint32_t)nt->n_profiles;
        nt->profiles[nt->n_profiles++] = t->profiles[p];
    }
    for (size_t r = 0; r < t->n_refs; r++) {
        ref_new[r] = INDEX__NONE;
        if (!t->refs[r].alive)
            continue;
        ref_new[r] = (uint32_t)nt->n_refs;
        nt->refs[nt->n_refs] = t->refs[r];
        nt->refs[nt->n_refs].profile = prof_new[t->refs[r].profile];
        nt->n_refs++;
    }
    for (size_t r = 0; r < nt->n_refs; r++) {
        index__ref *x = &nt->refs[r];
        x->prev = x->prev == INDEX__NONE ? INDEX__NONE : ref_new[x->prev];
        x->next = x->next == INDEX__NONE ? INDEX__NONE : ref_new[x->next];
        index__map_insert(&nt->ref_map, index__hash_str(x->id), (uint32_t)r);
    }
    for (size_t p = 0; p < nt->n_profiles; p++) {
        index__profile *x = &nt->profiles[p];
        x->first_ref = ref_new[x->first_ref];
        index__map_insert(&nt->profile_map, index__hash_str(x->id), (uint32_t)p);
    }
    nt->live_refs = nt->n_refs;
    nt->live_profiles = nt->n_profiles;

    for (size_t p = 0; p < t->pdq_n; p++) {
        uint32_t r = ref_new[t->pdq_ref[p]];
        if (r == INDEX__NONE)
            continue;
        size_t q = nt->pdq_n++;
        memcpy(nt->pdq_rows + q * 4, index__row(t->pdq_rows, p), 4 * sizeof(uint64_t));
        nt->pdq_ref[q] = r;
        nt->pdq_quality[q] = t->pdq_quality[p];
    }
    for (size_t p = 0; p < t->face_n; p++) {
        uint32_t r = ref_new[t->face_ref[p]];
        if (r == INDEX__NONE)
            continue;
        size_t q = nt->face_n++;
        memcpy(nt->face_rows + q * INDEX_FACE_DIM, t->face_rows + p * INDEX_FACE_DIM,
               INDEX_FACE_DIM * sizeof(float));
        nt->face_ref[q] = r;
    }
    if (want_mih(ix, nt->pdq_n) && index__mih_build(nt->pdq_rows, nt->pdq_n, &nt->mih))
        goto fail;
    vg_free(ref_new);
    vg_free(prof_new);
    return VG_OK;
fail:
    vg_free(ref_new);
    vg_free(prof_new);
    tables_free(nt);
    return vg_err_set(rc, "index compaction");
}

/* Compacts once tombstones reach a quarter of the entries: each compaction costs O(entries) and
 * follows at least entries/4 deletions, so deletes cost O(1) amortised. On failure the
 * tombstones simply stay (searches skip them), so the error is logged, not returned. */
static void maybe_compact(index_db *ix, index__shard *sh)
{
    index__tables *t = &sh->t;
    size_t dead = t->dead_pdq + t->dead_face, total = t->pdq_n + t->face_n;
    if (!dead || dead * 4 < total)
        return;
    index__tables nt;
    if (tables_compact(ix, t, &nt)) {
        VG_WARN("index", "tenant %s: compaction failed (%s); %zu tombstones kept", sh->id,
                vg_err_msg(), dead);
        return;
    }
    index__tables old = *t;
    wrlock(sh);
    *t = nt;
    unlock(sh);
    tables_free(&old);
}

/* ---- adds ----------------------------------------------------------------------------------- */

/* Finds or prepares the reference for an add: on success *ref_out is an existing live handle, or
 * INDEX__NONE with every array and map reserved so that add_commit cannot fail. */
static int add_prepare(index_db *ix, index__shard *sh, const char *profile, const char *reference,
                       uint32_t *ref_out)
{
    index__tables *t = &sh->t;
    size_t live = (t->pdq_n - t->dead_pdq) + (t->face_n - t->dead_face);
    if (live >= ix->cfg.max_entries_per_tenant || t->pdq_n + t->face_n >= MAX_ENTRIES_LIMIT * 2)
        return vg_err_set(VG_ETOOBIG, "tenant %s holds %zu entries (max_entries_per_tenant)",
                          sh->id, live);
    uint32_t r = index__map_find(&t->ref_map, reference, index__hash_str(reference), ref_key, t);
    if (r != INDEX__NONE) {
        if (strcmp(t->profiles[t->refs[r].profile].id, profile) != 0)
            return vg_err_set(VG_ECONFLICT, "reference %s belongs to profile %s, not %s", reference,
                              t->profiles[t->refs[r].profile].id, profile);
        *ref_out = r;
        return VG_OK;
    }
    int rc = grow_records(sh, (void **)&t->refs, &t->refs_cap, t->n_refs, sizeof(index__ref),
                          t->n_refs + 1);
    if (!rc)
        rc = grow_records(sh, (void **)&t->profiles, &t->profiles_cap, t->n_profiles,
                          sizeof(index__profile), t->n_profiles + 1);
    if (rc)
        return rc;
    if (t->n_refs >= INDEX__NONE - 1 || t->n_profiles >= INDEX__NONE - 1)
        return vg_err_set(VG_ETOOBIG, "too many references in tenant %s", sh->id);
    wrlock(sh);
    rc = index__map_reserve(&t->ref_map, 1);
    if (!rc)
        rc = index__map_reserve(&t->profile_map, 1);
    unlock(sh);
    if (rc)
        return rc;
    *ref_out = INDEX__NONE;
    return VG_OK;
}

/* Under the write lock: creates the reference (and profile) when ref == INDEX__NONE. */
static uint32_t add_commit_ref(index__tables *t, const char *profile, const char *reference,
                               uint32_t ref)
{
    if (ref != INDEX__NONE)
        return ref;
    uint32_t phash = index__hash_str(profile);
    uint32_t p = index__map_find(&t->profile_map, profile, phash, profile_key, t);
    if (p == INDEX__NONE) {
        p = (uint32_t)t->n_profiles++;
        index__profile *x = &t->profiles[p];
        memset(x, 0, sizeof *x);
        strcpy(x->id, profile);
        x->first_ref = INDEX__NONE;
        x->alive = 1;
        index__map_insert(&t->profile_map, phash, p);
        t->live_profiles++;
    }
    ref = (uint32_t)t->n_refs++;
    index__ref *x = &t->refs[ref];
    memset(x, 0, sizeof *x);
    strcpy(x->id, reference);
    x->profile = p;
    x->alive = 1;
    x->prev = INDEX__NONE;
    x->next = t->profiles[p].first_ref;
    if (x->next != INDEX__NONE)
        t->refs[x->next].prev = ref;
    t->profiles[p].first_ref = ref;
    t->profiles[p].n_refs++;
    index__map_insert(&t->ref_map, index__hash_str(reference), ref);
    t->live_refs++;
    return ref;
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
    index__shard *sh;
    if ((rc = shard_get_or_create(ix, tenant, &sh)))
        return rc;
    pthread_mutex_lock(&sh->write_mutex);
    index__tables *t = &sh->t;
    uint32_t ref;
    rc = add_prepare(ix, sh, profile, reference, &ref);
    if (!rc)
        rc = grow_pdq(sh, t->pdq_n + 1);
    if (!rc) {
        uint64_t w[4];
        index__pdq_words(hash, w);
        wrlock(sh);
        ref = add_commit_ref(t, profile, reference, ref);
        size_t p = t->pdq_n;
        memcpy(t->pdq_rows + p * 4, w, sizeof w);
        t->pdq_ref[p] = ref;
        t->pdq_quality[p] = (uint8_t)quality;
        t->pdq_n++;
        t->refs[ref].n_pdq++;
        unlock(sh);
        maybe_rebuild_mih(ix, sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
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
    index__shard *sh;
    if ((rc = shard_get_or_create(ix, tenant, &sh)))
        return rc;
    pthread_mutex_lock(&sh->write_mutex);
    index__tables *t = &sh->t;
    uint32_t ref;
    rc = add_prepare(ix, sh, profile, reference, &ref);
    if (!rc)
        rc = grow_face(sh, t->face_n + 1);
    if (!rc) {
        wrlock(sh);
        ref = add_commit_ref(t, profile, reference, ref);
        memcpy(t->face_rows + t->face_n * INDEX_FACE_DIM, descriptor,
               INDEX_FACE_DIM * sizeof(float));
        t->face_ref[t->face_n++] = ref;
        t->refs[ref].n_face++;
        unlock(sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
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
    index__tables *t = &sh->t;
    uint32_t r = index__map_find(&t->ref_map, reference, index__hash_str(reference), ref_key, t);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "no reference %s in tenant %s", reference, tenant);
    } else {
        wrlock(sh);
        memcpy(t->refs[r].sha256, sha256, 32);
        t->refs[r].has_sha = 1;
        unlock(sh);
    }
    pthread_mutex_unlock(&sh->write_mutex);
    return rc;
}

/* ---- removals ------------------------------------------------------------------------------- */

/* Under the write lock: kills a live reference and unlinks it from its profile, killing the
 * profile with its last reference. */
static void kill_ref(index__tables *t, uint32_t r)
{
    index__ref *x = &t->refs[r];
    index__profile *p = &t->profiles[x->profile];
    index__map_remove(&t->ref_map, x->id, index__hash_str(x->id), ref_key, t);
    x->alive = 0;
    if (x->prev != INDEX__NONE)
        t->refs[x->prev].next = x->next;
    else
        p->first_ref = x->next;
    if (x->next != INDEX__NONE)
        t->refs[x->next].prev = x->prev;
    t->dead_pdq += x->n_pdq;
    t->dead_face += x->n_face;
    t->live_refs--;
    if (--p->n_refs == 0) {
        index__map_remove(&t->profile_map, p->id, index__hash_str(p->id), profile_key, t);
        p->alive = 0;
        t->live_profiles--;
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
    index__tables *t = &sh->t;
    uint32_t r = index__map_find(&t->ref_map, reference, index__hash_str(reference), ref_key, t);
    if (r == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "reference %s not in the index", reference);
    } else {
        wrlock(sh);
        kill_ref(t, r);
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
    index__tables *t = &sh->t;
    uint32_t p =
        index__map_find(&t->profile_map, profile, index__hash_str(profile), profile_key, t);
    if (p == INDEX__NONE) {
        rc = vg_err_set(VG_ENOTFOUND, "profile %s not in the index", profile);
    } else {
        wrlock(sh);
        while (t->profiles[p].alive)
            kill_ref(t, t->profiles[p].first_ref);
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
    index__tables old = sh->t;
    wrlock(sh);
    memset(&sh->t, 0, sizeof sh->t);
    unlock(sh);
    tables_free(&old);
    pthread_mutex_unlock(&sh->write_mutex);
    return VG_OK;
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
    const index__tables *t = ctx;
    return strcmp(t->refs[x->ref].id, t->refs[y->ref].id);
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

/* Flat scan of [begin, end): kernel hits, then the exact best variant of each. */
static int pdq_flat(const index_db *ix, const index__tables *t, size_t begin, size_t end,
                    const uint64_t (*q)[4], size_t nv, int threshold, index__hits *hits)
{
    uint32_t buf[SCAN_CHUNK];
    for (size_t c = begin / INDEX__GROUP * INDEX__GROUP; c < end; c += SCAN_CHUNK) {
        size_t e = VG_MIN(end, c + SCAN_CHUNK);
        size_t n = ix->pdq_scan(t->pdq_rows, c, e, q, nv, threshold, buf);
        for (size_t i = 0; i < n; i++) {
            if (buf[i] < begin)
                continue;
            int d, v;
            pdq_best(t->pdq_rows, buf[i], q, nv, &d, &v);
            if (index__hits_push(hits, buf[i], d, v))
                return vg_err_set(VG_ENOMEM, "PDQ candidates");
        }
    }
    return VG_OK;
}

/* Multi-index probes cost grows with the variant count while the flat scan's barely does
 * (it is memory-bound and shares each row load among the variants), so in AUTO mode a query
 * with v variants uses the tables only from mih_min_entries * max(1, v^2 / 2) live entries:
 * 32k for 1 variant, 262k for 4, 1M for 8 with the default, the crossovers measured in
 * bench/results/index.md. */
static int use_mih(const index_db *ix, const index__tables *t, int threshold, size_t nv)
{
    if (!t->mih || ix->cfg.pdq_search == INDEX_SEARCH_FLAT)
        return 0;
    if (ix->cfg.pdq_search == INDEX_SEARCH_MIH)
        return threshold <= INDEX__MIH_SLOTS * (INDEX__MIH_MAX_RADIUS + 1) - 1;
    size_t need;
    if (vg_mul_size(ix->cfg.mih_min_entries, VG_MAX((size_t)1, nv * nv / 2), &need))
        return 0;
    return threshold <= MIH_AUTO_MAX_THRESHOLD && t->pdq_n - t->dead_pdq >= need;
}

static int pdq_search_locked(const index_db *ix, const index__tables *t, const index_pdq_query *q,
                             int *used_mih, const uint64_t (*qw)[4], index_pdq_result *out)
{
    uint32_t prof = INDEX__NONE;
    if (q->profile_id) {
        prof = index__map_find(&t->profile_map, q->profile_id, index__hash_str(q->profile_id),
                               profile_key, t);
        if (prof == INDEX__NONE)
            return VG_OK;
    }
    index__hits hits = {0};
    int rc;
    *used_mih = use_mih(ix, t, q->threshold, q->n_variants);
    if (*used_mih) {
        rc = index__mih_search(t->mih, t->pdq_rows, qw, q->n_variants, q->threshold, ix->mih_popcnt,
                               &hits);
        if (!rc)
            rc = pdq_flat(ix, t, t->mih->n, t->pdq_n, qw, q->n_variants, q->threshold, &hits);
    } else {
        rc = pdq_flat(ix, t, 0, t->pdq_n, qw, q->n_variants, q->threshold, &hits);
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
        const index__ref *r = &t->refs[t->pdq_ref[p]];
        if (!r->alive || (prof != INDEX__NONE && r->profile != prof) ||
            t->pdq_quality[p] < q->min_quality)
            continue;
        c[nc++] = (cand){t->pdq_ref[p], hits.v[i].distance, (uint8_t)hits.v[i].variant,
                         t->pdq_quality[p]};
    }
    vg_free(hits.v);
    if (!rc && nc) {
        qsort(c, nc, sizeof *c, cand_by_ref);
        nc = cand_dedupe(c, nc);
        qsort_r(c, nc, sizeof *c, cand_by_distance, (void *)t);
        size_t max = q->max_results ? q->max_results : INDEX_PDQ_MAX_RESULTS_DEFAULT;
        size_t n = VG_MIN(nc, max);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "PDQ results");
        } else {
            for (size_t i = 0; i < n; i++) {
                index_pdq_match *m = &out->matches[i];
                const index__ref *r = &t->refs[c[i].ref];
                memcpy(m->reference_id, r->id, INDEX_ID_MAX);
                memcpy(m->profile_id, t->profiles[r->profile].id, INDEX_ID_MAX);
                m->distance = c[i].distance;
                m->dihedral = c[i].variant;
                m->quality = c[i].quality;
                m->exact = q->sha256 && r->has_sha && memcmp(r->sha256, q->sha256, 32) == 0;
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
    pthread_rwlock_rdlock(&sh->lock);
    int used_mih = 0;
    rc = pdq_search_locked(ix, &sh->t, q, &used_mih, (const uint64_t(*)[4])qw, out);
    pthread_rwlock_unlock(&sh->lock);
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
    const index__tables *t = ctx;
    return strcmp(t->refs[x->ref].id, t->refs[y->ref].id);
}

static int face_search_locked(const index_db *ix, const index__tables *t, const index_face_query *q,
                              const float *qv, float t2, size_t top_k, index_face_result *out)
{
    uint32_t prof = INDEX__NONE;
    if (q->profile_id) {
        prof = index__map_find(&t->profile_map, q->profile_id, index__hash_str(q->profile_id),
                               profile_key, t);
        if (prof == INDEX__NONE)
            return VG_OK;
    }
    enum { CHUNK = 1024 };
    float d2[CHUNK];
    fcand *c = NULL;
    size_t nc = 0, cap = 0;
    for (size_t b = 0; b < t->face_n; b += CHUNK) {
        size_t n = VG_MIN((size_t)CHUNK, t->face_n - b);
        ix->face_dist(t->face_rows + b * INDEX_FACE_DIM, n, qv, d2);
        for (size_t i = 0; i < n; i++) {
            if (!(d2[i] < t2))
                continue;
            uint32_t ref = t->face_ref[b + i];
            const index__ref *r = &t->refs[ref];
            if (!r->alive || (prof != INDEX__NONE && r->profile != prof))
                continue;
            if (nc == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                fcand *v = vg_realloc(c, ncap * sizeof *v);
                if (!v) {
                    vg_free(c);
                    return vg_err_set(VG_ENOMEM, "face candidates");
                }
                c = v;
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
        qsort_r(c, k, sizeof *c, fcand_by_distance, (void *)t);
        size_t n = VG_MIN(k, top_k);
        out->matches = vg_malloc(n * sizeof *out->matches);
        if (!out->matches) {
            rc = vg_err_set(VG_ENOMEM, "face results");
        } else {
            for (size_t i = 0; i < n; i++) {
                const index__ref *r = &t->refs[c[i].ref];
                memcpy(out->matches[i].reference_id, r->id, INDEX_ID_MAX);
                memcpy(out->matches[i].profile_id, t->profiles[r->profile].id, INDEX_ID_MAX);
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
    pthread_rwlock_rdlock(&sh->lock);
    rc = face_search_locked(ix, &sh->t, q, qv, thr * thr, top_k, out);
    atomic_fetch_add_explicit(&sh->face_searches, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&sh->lock);
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

static void shard_stats(index__shard *sh, index_stats *s)
{
    pthread_rwlock_rdlock(&sh->lock);
    const index__tables *t = &sh->t;
    s->tenants++;
    s->pdq_entries += t->pdq_n - t->dead_pdq;
    s->face_entries += t->face_n - t->dead_face;
    s->references += t->live_refs;
    s->profiles += t->live_profiles;
    s->dead_entries += t->dead_pdq + t->dead_face;
    s->mih_tenants += t->mih != NULL;
    s->bytes += sizeof *sh + tables_bytes(t);
    s->pdq_flat_searches += atomic_load_explicit(&sh->pdq_flat_searches, memory_order_relaxed);
    s->pdq_mih_searches += atomic_load_explicit(&sh->pdq_mih_searches, memory_order_relaxed);
    s->face_searches += atomic_load_explicit(&sh->face_searches, memory_order_relaxed);
    pthread_rwlock_unlock(&sh->lock);
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
