/*
 * catalog: registrations and evidence over the store and the index (see catalog.h).
 *
 * Order of every write: the store first, because it is the truth the index is rebuilt from at
 * start and it hands out the ids; the index second, so a store failure never touches it. The
 * only write that can fail after the store committed is an index insert (memory, the tenant's
 * entry limit): the reference is then deleted again, so store and index agree once more and the
 * caller gets the index's error.
 *
 * Locks: writes that change the index take their tenant's stripe (a rwlock chosen by a hash of
 * the tenant id). Reference adds take it shared, so concurrent uploads of one tenant still
 * share a group commit; deletes take it exclusively, so a profile delete cannot slip between a
 * reference's store create and its index insert (which would leave a reference of a deleted
 * profile in the index until the next start). Scans never touch the index and take no lock.
 */
#include "catalog/catalog_int.h"

#include "index/index.h"
#include "pdq/pdq.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tenant stripes: enough that unrelated tenants rarely share one; a stripe costs ~56 bytes. */
#define CATALOG__LOCK_STRIPES 64
/* Significant digits for reals in stored JSON: boxes are rounded to 0.1 px (at most 6 digits
 * for the largest image side img allows) and scores to 1e-4 before encoding; 10 digits print
 * those exactly ("12.3", not "12.300000000000001"). */
#define CATALOG__JSON_REAL_DIGITS 10

struct catalog {
    store *st;              /* borrowed */
    index_db *ix;           /* borrowed */
    catalog_erase_fn erase; /* set before sharing; read-only afterwards */
    void *erase_arg;
    pthread_rwlock_t stripes[CATALOG__LOCK_STRIPES];
    catalog__videos *videos; /* every tenant's video index (catalog_video.c) */
    catalog__sync *sync;     /* change-log sync (catalog_sync.c) */
};

struct catalog__sync *catalog__sync_of(catalog *c)
{
    return c->sync;
}

catalog__videos *catalog__videos_of(catalog *c)
{
    return c->videos;
}

store *catalog__store_of(catalog *c)
{
    return c->st;
}

index_db *catalog__index_of(catalog *c)
{
    return c->ix;
}

/* ---- locks ---------------------------------------------------------------------------------- */

pthread_rwlock_t *catalog__stripe(catalog *c, const char *tenant_id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = tenant_id ? tenant_id : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return &c->stripes[h % CATALOG__LOCK_STRIPES];
}

/* ---- index mirroring ------------------------------------------------------------------------ */

/* Adds a stored reference's hashes and descriptors, exactly as the store holds them, under its
 * store key. Its SHA-256 stays in the store: exact copies are told by catalog_resolve. */
int catalog__index_add(index_db *ix, const store_reference *r)
{
    int rc = VG_OK;
    uint64_t key = (uint64_t)r->key;
    if (r->has_pdq)
        rc = index_pdq_add(ix, r->tenant_id, r->profile_id, key, r->pdq, r->pdq_quality, 0);
    /* the parts and the mirror (copy detection), each tagged with its region, so that a match
     * on one of them says so; a reference stored without them matches on its whole hash */
    for (size_t i = 0; rc == VG_OK && r->has_pdq && i < r->n_pdq_regions; i++)
        rc = index_pdq_add(ix, r->tenant_id, r->profile_id, key, r->pdq_regions[i].hash,
                           r->pdq_regions[i].quality, r->pdq_regions[i].region);
    for (size_t i = 0; rc == VG_OK && i < r->n_faces; i++)
        rc = index_face_add(ix, r->tenant_id, r->profile_id, key,
                            r->descriptors + i * VG_DESCRIPTOR_DIM);
    return rc;
}

int catalog_resolve(void *catalog_, const char *tenant_id, const uint64_t *keys, size_t n,
                    analyze_ref *out)
{
    enum { CHUNK = 64 < STORE_RESOLVE_MAX ? 64 : STORE_RESOLVE_MAX };
    catalog *c = catalog_;
    store_ref_brief b[CHUNK];
    int64_t k[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = VG_MIN((size_t)CHUNK, n - i);
        for (size_t j = 0; j < m; j++)
            k[j] = (int64_t)keys[i + j];
        int rc = store_reference_resolve(c->st, tenant_id, k, m, b);
        if (rc != VG_OK)
            return rc;
        for (size_t j = 0; j < m; j++) {
            analyze_ref *o = &out[i + j];
            o->found = b[j].found;
            snprintf(o->id, sizeof o->id, "%s", b[j].found ? b[j].id : "");
            memcpy(o->sha256, b[j].sha256, sizeof o->sha256);
        }
    }
    return VG_OK;
}

/* ---- the build at start -------------------------------------------------------------------- */

/* catalog_open reads the store on its thread and indexes on a second one: SQLite's decoding
 * and reads (~40% of a 10M-reference load) overlap the index adds instead of preceding each.
 * The walk's rows are only valid during its callback, so the reader copies what the index takes
 * into batches of CATALOG__BUILD_BATCH references, CATALOG__BUILD_SLOTS of them in flight. */
#define CATALOG__BUILD_BATCH 4096 /* references per batch: ~1.4 MiB without faces */
#define CATALOG__BUILD_SLOTS 3    /* batches: one filling, one indexing, one spare */

typedef struct catalog__build_ref {
    char tenant_id[STORE_ID_MAX], profile_id[STORE_ID_MAX];
    int64_t key;
    int has_pdq, pdq_quality;
    vg_pdq_hash pdq;
    size_t n_regions;
    store_pdq_region regions[STORE_MAX_PDQ_REGIONS];
    size_t n_faces, face_at; /* descriptors at face_at in the batch's pool */
} catalog__build_ref;

typedef struct catalog__build_batch {
    catalog__build_ref refs[CATALOG__BUILD_BATCH];
    size_t n;
    float *faces; /* pool of descriptors (vg_malloc, grown) */
    size_t faces_n, faces_cap;
} catalog__build_batch;

typedef struct catalog__build {
    index_db *ix;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    catalog__build_batch *slot[CATALOG__BUILD_SLOTS];
    size_t head, tail; /* batches filled: [tail, head) are ready to index (modulo slots) */
    int done;          /* the reader is finished (no more batches) */
    int rc;            /* the first error of either side */
    char detail[256];  /* the indexer's error text */
} catalog__build;

static int catalog__index_add_built(index_db *ix, const catalog__build_batch *b,
                                    const catalog__build_ref *r)
{
    store_reference sr;
    memset(&sr, 0, sizeof sr);
    memcpy(sr.tenant_id, r->tenant_id, sizeof sr.tenant_id);
    memcpy(sr.profile_id, r->profile_id, sizeof sr.profile_id);
    sr.key = r->key;
    sr.has_pdq = r->has_pdq;
    sr.pdq_quality = r->pdq_quality;
    memcpy(sr.pdq, r->pdq, sizeof sr.pdq);
    sr.n_pdq_regions = r->n_regions;
    memcpy(sr.pdq_regions, r->regions, r->n_regions * sizeof *r->regions);
    sr.n_faces = r->n_faces;
    sr.descriptors = r->n_faces ? b->faces + r->face_at : NULL;
    return catalog__index_add(ix, &sr);
}

static void *catalog__build_indexer(void *arg)
{
    catalog__build *bd = arg;
    pthread_mutex_lock(&bd->mu);
    for (;;) {
        while (bd->tail == bd->head && !bd->done)
            pthread_cond_wait(&bd->cv, &bd->mu);
        if (bd->tail == bd->head)
            break;
        catalog__build_batch *b = bd->slot[bd->tail % CATALOG__BUILD_SLOTS];
        int skip = bd->rc != VG_OK;
        pthread_mutex_unlock(&bd->mu);
        int rc = VG_OK;
        for (size_t i = 0; !skip && rc == VG_OK && i < b->n; i++)
            rc = catalog__index_add_built(bd->ix, b, &b->refs[i]);
        pthread_mutex_lock(&bd->mu);
        if (rc != VG_OK && bd->rc == VG_OK) {
            bd->rc = rc;
            snprintf(bd->detail, sizeof bd->detail, "%s", vg_err_msg());
        }
        bd->tail++;
        pthread_cond_broadcast(&bd->cv);
    }
    pthread_mutex_unlock(&bd->mu);
    return NULL;
}

/* Hands the filling batch to the indexer and waits for a free slot. VG_OK or the first error. */
static int catalog__build_flush(catalog__build *bd)
{
    pthread_mutex_lock(&bd->mu);
    bd->head++;
    pthread_cond_broadcast(&bd->cv);
    while (bd->head - bd->tail >= CATALOG__BUILD_SLOTS)
        pthread_cond_wait(&bd->cv, &bd->mu);
    catalog__build_batch *b = bd->slot[bd->head % CATALOG__BUILD_SLOTS];
    b->n = 0;
    b->faces_n = 0;
    int rc = bd->rc;
    pthread_mutex_unlock(&bd->mu);
    return rc;
}

static int catalog__build_cb(void *ctx, const store_reference *r)
{
    catalog__build *bd = ctx;
    catalog__build_batch *b = bd->slot[bd->head % CATALOG__BUILD_SLOTS]; /* the reader's own */
    if (b->n == CATALOG__BUILD_BATCH) {
        int rc = catalog__build_flush(bd);
        if (rc != VG_OK)
            return rc;
        b = bd->slot[bd->head % CATALOG__BUILD_SLOTS];
    }
    catalog__build_ref *x = &b->refs[b->n];
    memcpy(x->tenant_id, r->tenant_id, sizeof x->tenant_id);
    memcpy(x->profile_id, r->profile_id, sizeof x->profile_id);
    x->key = r->key;
    x->has_pdq = r->has_pdq;
    x->pdq_quality = r->pdq_quality;
    memcpy(x->pdq, r->pdq, sizeof x->pdq);
    x->n_regions = r->has_pdq ? VG_MIN(r->n_pdq_regions, (size_t)STORE_MAX_PDQ_REGIONS) : 0;
    memcpy(x->regions, r->pdq_regions, x->n_regions * sizeof *x->regions);
    x->n_faces = r->n_faces;
    x->face_at = b->faces_n;
    if (r->n_faces) {
        size_t need = b->faces_n + r->n_faces * VG_DESCRIPTOR_DIM;
        if (need > b->faces_cap) {
            size_t cap = VG_MAX(need, b->faces_cap * 2);
            float *f = vg_realloc(b->faces, cap * sizeof *f);
            if (!f)
                return vg_err_set(VG_ENOMEM, "catalog: out of memory building the index");
            b->faces = f;
            b->faces_cap = cap;
        }
        memcpy(b->faces + b->faces_n, r->descriptors,
               r->n_faces * VG_DESCRIPTOR_DIM * sizeof(float));
        b->faces_n = need;
    }
    b->n++;
    return VG_OK;
}

/* Every live reference of the store into the index, reading and indexing on two threads. */
static int catalog__build_all(store *st, index_db *ix)
{
    catalog__build bd = {.ix = ix};
    int rc = VG_OK;
    for (size_t i = 0; i < CATALOG__BUILD_SLOTS; i++)
        if (!(bd.slot[i] = vg_calloc(1, sizeof *bd.slot[i])))
            rc = vg_err_set(VG_ENOMEM, "catalog: out of memory building the index");
    pthread_mutex_init(&bd.mu, NULL);
    pthread_cond_init(&bd.cv, NULL);
    pthread_t th;
    int started = rc == VG_OK && pthread_create(&th, NULL, catalog__build_indexer, &bd) == 0;
    if (rc == VG_OK && !started)
        rc = vg_err_set(VG_ENOMEM, "catalog: no thread to build the index");
    if (rc == VG_OK)
        rc = store_reference_foreach_index(st, NULL, catalog__build_cb, &bd);
    if (started) {
        pthread_mutex_lock(&bd.mu);
        if (rc == VG_OK && bd.slot[bd.head % CATALOG__BUILD_SLOTS]->n)
            bd.head++; /* the last, partly filled batch */
        bd.done = 1;
        pthread_cond_broadcast(&bd.cv);
        pthread_mutex_unlock(&bd.mu);
        pthread_join(th, NULL);
        if (bd.rc != VG_OK && (rc == VG_OK || rc == bd.rc))
            rc = vg_err_set(bd.rc, "%s", bd.detail);
    }
    for (size_t i = 0; i < CATALOG__BUILD_SLOTS; i++) {
        if (bd.slot[i])
            vg_free(bd.slot[i]->faces);
        vg_free(bd.slot[i]);
    }
    pthread_cond_destroy(&bd.cv);
    pthread_mutex_destroy(&bd.mu);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int catalog_open(store *st, index_db *ix, catalog **out)
{
    if (!st || !ix || !out)
        return vg_err_set(VG_EINVAL, "catalog_open: NULL argument");
    catalog *c = vg_calloc(1, sizeof *c);
    if (!c)
        return vg_err_set(VG_ENOMEM, "catalog: out of memory");
    c->st = st;
    c->ix = ix;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A stream of uploads must not starve a delete of its tenant. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (size_t i = 0; i < CATALOG__LOCK_STRIPES; i++)
        pthread_rwlock_init(&c->stripes[i], &attr);
    pthread_rwlockattr_destroy(&attr);
    /* The change log's head before the build: every change after it is applied by the sync
     * (again, for those the build already saw: applying is idempotent), so none falls between
     * the build's snapshot and the first poll. */
    int64_t head = 0;
    int rc = store_changes_head(st, &head);
    if (rc != VG_OK) {
        catalog_close(c);
        return rc;
    }
    /* One multi-index build per tenant at the end instead of one per 1/8 of growth. */
    index_bulk_begin(ix);
    rc = catalog__build_all(st, ix);
    int brc = index_bulk_end(ix);
    if (rc == VG_OK && brc != VG_OK)
        VG_WARN("catalog", "index: %s (searches of that tenant scan flat until its next rebuild)",
                vg_err_msg());
    if (rc == VG_OK)
        rc = catalog__videos_open(st, &c->videos);
    if (rc == VG_OK)
        rc = catalog__sync_new(c, head, &c->sync);
    if (rc != VG_OK) {
        catalog_close(c);
        return rc;
    }
    *out = c;
    return VG_OK;
}

void catalog_close(catalog *c)
{
    if (!c)
        return;
    catalog__sync_free(c->sync); /* its thread applies through everything below */
    for (size_t i = 0; i < CATALOG__LOCK_STRIPES; i++)
        pthread_rwlock_destroy(&c->stripes[i]);
    catalog__videos_close(c->videos);
    vg_free(c);
}

void catalog_set_erase_hook(catalog *c, catalog_erase_fn fn, void *arg)
{
    c->erase = fn;
    c->erase_arg = arg;
}

void catalog__erase(catalog *c, const char *tenant_id, const uint8_t sha256[32])
{
    if (c->erase)
        c->erase(c->erase_arg, tenant_id, sha256);
}

/* ---- references ----------------------------------------------------------------------------- */

/* The store's view of a new reference: its description and the features to keep. Descriptor and
 * box arrays come from arena a. */
static int catalog__reference_new(const catalog_reference_new *r, vg_arena *a,
                                  store_reference_new *nr, store_pdq_region *regions)
{
    const analyze_features *f = r->features;
    memset(nr, 0, sizeof *nr);
    if (r->kind == STORE_REF_LIKENESS && f->n_faces == 0)
        return vg_err_set(VG_ENOFACE, "%s",
                          f->faces_enabled ? "no face was found in this likeness photo"
                                           : "face detection is off on this server, so a "
                                             "likeness photo cannot be checked");
    nr->profile_id = r->profile_id;
    nr->kind = r->kind;
    nr->title = r->title;
    nr->description = r->description;
    nr->original_url = r->original_url;
    nr->copyright_holder = r->copyright_holder;
    nr->sha256 = f->sha256;
    if (f->has_pdq) {
        nr->pdq = f->pdq;
        nr->pdq_quality = f->pdq_quality;
        nr->pdq_dihedral = (const vg_pdq_hash *)f->pdq_dihedral;
        /* A work's copies may be framed or cropped: its trimmed content and centre crops are
         * kept and indexed. Not its mirror: a mirrored copy is met by the query's own mirror
         * (small images) or its derived variants (large ones), while a reference's mirror
         * mostly meets the derived mirror variants of unmirrored copies, labelling them flips.
         * A likeness is matched by its faces; its parts would only add index entries. */
        for (size_t i = 0; r->kind == STORE_REF_WORK && i < f->n_copies; i++) {
            if (f->copies[i].region == PDQ_REGION_FLIP)
                continue;
            if (nr->n_pdq_regions == STORE_MAX_PDQ_REGIONS)
                break;
            store_pdq_region *g = &regions[nr->n_pdq_regions++];
            g->region = f->copies[i].region;
            g->quality = f->copies[i].quality;
            memcpy(g->hash, f->copies[i].dihedral[0], sizeof g->hash);
        }
        nr->pdq_regions = regions;
    }
    size_t nf = VG_MIN(f->n_faces, (size_t)STORE_MAX_FACES_PER_REF);
    if (nf) {
        float *desc = vg_arena_alloc(a, nf * VG_DESCRIPTOR_DIM * sizeof(float));
        float *boxes = vg_arena_alloc(a, nf * 4 * sizeof(float));
        if (!desc || !boxes)
            return vg_err_set(VG_ENOMEM, "out of memory");
        for (size_t i = 0; i < nf; i++) {
            memcpy(desc + i * VG_DESCRIPTOR_DIM, f->faces[i].descriptor,
                   VG_DESCRIPTOR_DIM * sizeof(float));
            memcpy(boxes + i * 4, f->faces[i].box, 4 * sizeof(float));
        }
        nr->descriptors = desc;
        nr->boxes = boxes;
    }
    nr->n_faces = nf;
    nr->image = r->image;
    nr->image_len = r->image ? r->image_len : 0;
    if (r->video) {
        if (r->kind != STORE_REF_WORK)
            return vg_err_set(VG_EINVAL, "a video can only be a work");
        uint8_t *frames;
        size_t len;
        int rc = catalog__video_encode(r->video, a, &frames, &len);
        if (rc != VG_OK)
            return rc;
        nr->video_frames = frames;
        nr->video_frames_len = len;
        nr->video_n_frames = r->video->n;
        nr->video_duration_s = r->video->duration_s >= 0 ? r->video->duration_s : 0;
    }
    return VG_OK;
}

/* Undoes a reference whose index insert (or read-back) failed: out of the index (what was added
 * of it) and out of the store again. Keeps the caller's error and detail. */
static int catalog__rollback(catalog *c, const char *tenant_id, const store_reference *r, int rc)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s", vg_err_msg());
    int irc = r->key ? index_remove_reference(c->ix, r->tenant_id, (uint64_t)r->key) : VG_OK;
    if (irc != VG_OK && irc != VG_ENOTFOUND)
        VG_ERROR("catalog", "rollback: index_remove_reference %s: %s", r->id, vg_err_msg());
    if (store_reference_delete(c->st, tenant_id, r->id) != VG_OK)
        VG_ERROR("catalog",
                 "rollback: reference %s is stored but not indexed (%s); the next start indexes "
                 "it",
                 r->id, vg_err_msg());
    return vg_err_set(rc, "%s", detail);
}

int catalog_reference_add(catalog *c, const char *tenant_id, const catalog_reference_new *r,
                          vg_arena *a, store_reference *out)
{
    if (!c || !r || !r->features || (out && !a))
        return vg_err_set(VG_EINVAL, "catalog_reference_add: NULL argument");
    if (!tenant_id || !*tenant_id)
        return vg_err_set(VG_EINVAL, "catalog_reference_add: a tenant is required");
    vg_arena *own = NULL;
    if (!a && !(a = own = vg_arena_new(0)))
        return vg_err_set(VG_ENOMEM, "out of memory");
    store_reference_new nr;
    store_pdq_region regions[STORE_MAX_PDQ_REGIONS];
    store_reference sr;
    char id[STORE_ID_MAX];
    int rc = catalog__reference_new(r, a, &nr, regions);
    if (rc != VG_OK)
        goto done;
    pthread_rwlock_t *lock = catalog__stripe(c, tenant_id);
    pthread_rwlock_rdlock(lock);
    vg_err_clear();
    rc = store_reference_create(c->st, tenant_id, &nr, id, NULL);
    if (rc == VG_OK) {
        /* Indexed as the store holds it, as at start, so both always say the same. */
        rc = store_reference_get(c->st, tenant_id, id, a, &sr);
        if (rc != VG_OK) {
            store_reference gone = {0}; /* nothing of it was indexed */
            snprintf(gone.id, sizeof gone.id, "%s", id);
            snprintf(gone.tenant_id, sizeof gone.tenant_id, "%s", tenant_id);
            rc = catalog__rollback(c, tenant_id, &gone, rc);
        } else if ((rc = catalog__index_add(c->ix, &sr)) != VG_OK ||
                   (r->video && (rc = catalog__videos_add(c->videos, tenant_id, sr.profile_id,
                                                          sr.id, r->video)) != VG_OK)) {
            rc = catalog__rollback(c, tenant_id, &sr, rc);
            if (r->video) /* what was added of it: the store no longer lists it */
                catalog__videos_rebuild(c->videos, c->st, tenant_id);
        }
    }
    pthread_rwlock_unlock(lock);
    if (rc == VG_OK && out)
        *out = sr;
done:
    vg_arena_free(own);
    return rc;
}

int catalog_reference_remove(catalog *c, const char *tenant_id, const char *reference_id)
{
    if (!c || !tenant_id || !*tenant_id)
        return vg_err_set(VG_EINVAL, "catalog_reference_remove: a tenant is required");
    vg_arena *a = vg_arena_new(0);
    if (!a)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_rwlock_t *lock = catalog__stripe(c, tenant_id);
    pthread_rwlock_wrlock(lock);
    store_reference r; /* its hash names the cache entries that hold its features */
    int rc = store_reference_get(c->st, tenant_id, reference_id, a, &r);
    if (rc == VG_OK)
        rc = store_reference_delete(c->st, tenant_id, reference_id);
    if (rc == VG_OK) {
        /* Out of matching before the caller answers. */
        int irc = index_remove_reference(c->ix, r.tenant_id, (uint64_t)r.key);
        if (irc != VG_OK && irc != VG_ENOTFOUND)
            VG_ERROR("catalog", "index_remove_reference %s: %s", reference_id, vg_err_msg());
        if (r.is_video && catalog__videos_rebuild(c->videos, c->st, tenant_id) != VG_OK)
            VG_ERROR("catalog",
                     "video index of %s: %s (its videos match nothing until the next "
                     "start)",
                     tenant_id, vg_err_msg());
    }
    pthread_rwlock_unlock(lock);
    /* Erasure: the descriptors must not outlive the reference in any cache tier. */
    if (rc == VG_OK)
        catalog__erase(c, tenant_id, r.sha256);
    vg_arena_free(a);
    return rc;
}

/* The image SHA-256s of a profile's live references (*out owned, vg_free), read page by page
 * with a scratch arena so a large profile does not pile its descriptors up in memory. */
static int catalog__profile_ref_hashes(catalog *c, const char *tenant, const char *pid,
                                       vg_pdq_hash **out, size_t *n_out)
{
    vg_pdq_hash *h = NULL;
    size_t n = 0, cap = 0;
    vg_arena *a = vg_arena_new(0);
    if (!a)
        return vg_err_set(VG_ENOMEM, "out of memory");
    store_list_opts o = {.limit = STORE_LIST_MAX_LIMIT, .profile_id = pid};
    char cursor[STORE_ID_MAX] = "";
    int rc;
    for (;;) {
        store_reference *items = NULL;
        store_page page;
        o.cursor = cursor[0] ? cursor : NULL;
        if ((rc = store_reference_list(c->st, tenant, &o, a, &items, &page)) != VG_OK)
            break;
        if (n + page.n > cap) {
            size_t ncap = VG_MAX(cap * 2, n + page.n);
            vg_pdq_hash *nh = vg_realloc(h, ncap * sizeof *h);
            if (!nh) {
                rc = vg_err_set(VG_ENOMEM, "out of memory");
                break;
            }
            h = nh;
            cap = ncap;
        }
        for (size_t i = 0; i < page.n; i++)
            memcpy(h[n++], items[i].sha256, 32);
        if (!page.next_cursor[0])
            break;
        snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
        vg_arena_reset(a);
    }
    vg_arena_free(a);
    if (rc != VG_OK) {
        vg_free(h);
        return rc;
    }
    *out = h;
    *n_out = n;
    return VG_OK;
}

int catalog_profile_remove(catalog *c, const char *tenant_id, const char *profile_id,
                           size_t *n_refs)
{
    if (!c || !tenant_id || !*tenant_id)
        return vg_err_set(VG_EINVAL, "catalog_profile_remove: a tenant is required");
    vg_arena *a = vg_arena_new(0);
    if (!a)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_rwlock_t *lock = catalog__stripe(c, tenant_id);
    pthread_rwlock_wrlock(lock);
    /* The references' hashes first: after the delete the store no longer hands them out, and
     * the cache keys of their features (face descriptors) are made from them. */
    vg_pdq_hash *hashes = NULL;
    size_t nh = 0, n = 0;
    char(*refs)[STORE_ID_MAX] = NULL;
    int rc = catalog__profile_ref_hashes(c, tenant_id, profile_id, &hashes, &nh);
    if (rc == VG_OK)
        rc = store_profile_delete(c->st, tenant_id, profile_id, a, &refs, &n);
    if (rc == VG_OK) {
        /* Out of matching before the caller answers. A profile without indexed entries is not
         * an error. */
        int irc = index_remove_profile(c->ix, tenant_id, profile_id);
        if (irc != VG_OK && irc != VG_ENOTFOUND)
            VG_ERROR("catalog", "index_remove_profile %s: %s", profile_id, vg_err_msg());
        if (catalog__videos_rebuild(c->videos, c->st, tenant_id) != VG_OK)
            VG_ERROR("catalog",
                     "video index of %s: %s (its videos match nothing until the next "
                     "start)",
                     tenant_id, vg_err_msg());
    }
    pthread_rwlock_unlock(lock);
    if (rc == VG_OK) {
        for (size_t i = 0; i < nh; i++)
            catalog__erase(c, tenant_id, hashes[i]);
        if (n_refs)
            *n_refs = n;
    }
    vg_free(hashes);
    vg_arena_free(a);
    return rc;
}

/* ---- evidence ------------------------------------------------------------------------------- */

/* A real for stored JSON, rounded to `scale` steps; null for a value JSON cannot hold. */
static json_t *catalog__real(double v, double scale)
{
    return isfinite(v) ? json_real(round(v * scale) / scale) : json_null();
}

/* json_dumps' text (jansson's allocator) into a vg_malloc'ed copy; takes the value. */
static char *catalog__dump(json_t *v)
{
    if (!v)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(CATALOG__JSON_REAL_DIGITS));
    json_decref(v);
    if (!text)
        return NULL;
    char *copy = vg_strdup(text);
    free(text);
    return copy;
}

char *catalog_faces_json(const analyze_features *f)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < f->n_faces; i++) {
        const analyze_face *fc = &f->faces[i];
        json_t *box = json_array();
        for (int k = 0; box && k < 4; k++)
            if (json_array_append_new(box, catalog__real(fc->box[k], 10)) != 0) {
                json_decref(box);
                box = NULL;
            }
        json_t *o = box ? json_object() : NULL;
        if (!o || json_object_set_new(o, "box", box) != 0 ||
            json_object_set_new(o, "score", catalog__real(fc->score, 10000)) != 0 ||
            json_array_append_new(arr, o) != 0) {
            if (!o)
                json_decref(box);
            json_decref(arr);
            arr = NULL;
        }
    }
    return catalog__dump(arr);
}

char *catalog_timings_json(const analyze_timings *t)
{
    return catalog__dump(json_pack("{s:I,s:I,s:I,s:I,s:I}", "cache_us", (json_int_t)t->cache_us,
                                   "decode_us", (json_int_t)t->decode_us, "pdq_us",
                                   (json_int_t)t->pdq_us, "faces_us",
                                   (json_int_t)(t->detect_us + t->landmarks_us + t->descriptors_us),
                                   "match_us", (json_int_t)t->match_us));
}

json_t *catalog_stored_json(const char *text)
{
    if (!text)
        return json_null();
    json_t *v = json_loads(text, 0, NULL);
    return v ? v : json_null();
}

int catalog_scan_record(catalog *c, const char *tenant_id, const char *source_url, vg_level level,
                        analyze_result *res)
{
    if (!c || !res)
        return vg_err_set(VG_EINVAL, "catalog_scan_record: NULL argument");
    uint64_t t = vg_now_ns();
    size_t n = res->n_matches;
    store_match_new *ms = n ? vg_calloc(n, sizeof *ms) : NULL;
    char(*ids)[STORE_ID_MAX] = n ? vg_calloc(n, sizeof *ids) : NULL;
    char *faces = catalog_faces_json(&res->features);
    char *timings = catalog_timings_json(&res->timings);
    int rc = VG_OK;
    if ((n && (!ms || !ids)) || !faces || !timings) {
        rc = vg_err_set(VG_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const analyze_match *m = &res->matches[i];
        ms[i].profile_id = m->profile_id;
        ms[i].reference_id = m->reference_id;
        ms[i].kind = m->kind;
        ms[i].distance = m->distance;
        ms[i].confidence = m->confidence;
        ms[i].dihedral = m->dihedral;
        ms[i].face_index = m->face_index;
        ms[i].mechanism = analyze_match_mechanism(m, &ms[i].region);
        /* A photo that is a frame of a protected video keeps its timestamps and its mechanism
         * in its video details (catalog_video.c); the mechanism column says "whole" (the
         * whole image met a whole frame), which every schema-4 store accepts. */
        if (m->video_frames) {
            ms[i].mechanism = "whole";
            if (!(ms[i].video_json = catalog__frame_match_text(m))) {
                rc = vg_err_set(VG_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
    store_scan_new s = {
        .sha256 = res->features.sha256,
        .source_url = source_url,
        .pdq = res->features.has_pdq ? res->features.pdq : NULL,
        .pdq_quality = res->features.pdq_quality,
        .faces_json = faces,
        .timings_json = timings,
        .level = vg_level_name(level),
        .n_matches = n,
        .matches = ms,
    };
    char scan_id[STORE_ID_MAX];
    rc = store_scan_insert(c->st, tenant_id, &s, scan_id, ids);
    if (rc != VG_OK)
        goto done;
    snprintf(res->scan_id, sizeof res->scan_id, "%s", scan_id);
    for (size_t i = 0; i < n; i++)
        snprintf(res->matches[i].match_id, sizeof res->matches[i].match_id, "%s", ids[i]);
    res->timings.store_us = (vg_now_ns() - t) / 1000;
    res->timings.total_us += res->timings.store_us;
done:
    for (size_t i = 0; ms && i < n; i++)
        vg_free((char *)ms[i].video_json);
    vg_free(ms);
    vg_free(ids);
    vg_free(faces);
    vg_free(timings);
    return rc;
}
