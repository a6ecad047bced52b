/*
 * catalog_video: the tenants' video indexes (see catalog.h, "video") and video evidence.
 *
 * A tenant's protected videos live in one video_index (src/video), numbered in the order they
 * were added; two arrays beside it give each number its reference and profile. The index has no
 * removal: a reference or profile delete rebuilds the tenant's index from the store (the truth,
 * as for the image index), which costs a walk of that tenant's video frames. Adds append and
 * rebuild the word tables (video_index_build), which is linear in the tenant's frames.
 *
 * Locks: `mu` guards the list of tenants (entries are never freed before close); each tenant's
 * rwlock is taken shared by searches and exclusively by adds and rebuilds, since a video_index
 * is "built by one thread, then searched by any number at once".
 *
 * Stored frames, little-endian. Version 1 (no header): CATALOG__VIDEO_FRAME_BYTES per kept
 * frame: u32 frame number, u32 timestamp in ms, u8 quality, the PDQ hash's 4 u64 words.
 * Version 2 (frames with region hashes, docs/VIDEO.md "Regions"): u32 CATALOG__VIDEO_BLOB_V2,
 * then per frame the version 1 bytes, u8 region bits (1 << VIDEO_REGION_*) and per bit set, in
 * region order, u8 quality and the region hash's 4 u64 words. The magic is no frame number a
 * version 1 blob can start with (frame numbers stay under video_limits.max_frames, at most
 * 2^31), so blobs stored before read as they were.
 */
#include "catalog/catalog_int.h"
#include "index/index.h"
#include "pdq/pdq.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG__VIDEO_FRAME_BYTES 41
#define CATALOG__VIDEO_BLOB_V2 0xfffffe02u
#define CATALOG__VIDEO_REGION_BYTES 33 /* u8 quality, 32-byte hash */
/* Stored JSON reals: percentages and seconds to 3 decimals print exactly with 10 digits. */
#define CATALOG__VIDEO_JSON_DIGITS 10

typedef struct catalog__vix {
    char tenant[STORE_ID_MAX];
    pthread_rwlock_t lock;
    video_index *ix; /* NULL until the tenant's first video */
    char (*refs)[STORE_ID_MAX];
    char (*profiles)[STORE_ID_MAX];
    size_t n, cap; /* by video number */
} catalog__vix;

struct catalog__videos {
    pthread_mutex_t mu;
    catalog__vix **t;
    size_t n, cap;
};

/* ---- frame encoding ------------------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_hash(uint8_t *e, const pdq_hash *h)
{
    for (int w = 0; w < 4; w++)
        for (int k = 0; k < 8; k++)
            e[w * 8 + k] = (uint8_t)(h->w[w] >> (8 * k));
}

static void get_hash(const uint8_t *e, pdq_hash *h)
{
    for (int w = 0; w < 4; w++) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
            v |= (uint64_t)e[w * 8 + k] << (8 * k);
        h->w[w] = v;
    }
}

/* Region bits a frame stores: the defined ones. */
static unsigned frame_regions(const video_frame *f)
{
    return f->regions & ((1u << VIDEO_REGION_COUNT) - 1u);
}

int catalog__video_encode(const video_hash *h, vg_arena *a, uint8_t **out, size_t *len)
{
    int v2 = 0;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        v2 |= frame_regions(&h->frames[i]) != 0;
    for (size_t i = 0; i < h->n && n <= STORE_VIDEO_MAX_BYTES; i++)
        n += CATALOG__VIDEO_FRAME_BYTES +
             (v2 ? 1 + (size_t)__builtin_popcount(frame_regions(&h->frames[i])) *
                           CATALOG__VIDEO_REGION_BYTES
                 : 0);
    n += v2 ? 4 : 0;
    if (n > STORE_VIDEO_MAX_BYTES)
        return vg_err_set(VG_ETOOBIG, "video: %zu frame hashes take over the %u bytes stored", h->n,
                          STORE_VIDEO_MAX_BYTES);
    uint8_t *b = vg_arena_alloc(a, n ? n : 1);
    if (!b)
        return vg_err_set(VG_ENOMEM, "out of memory");
    uint8_t *e = b;
    if (v2) {
        put_u32(e, CATALOG__VIDEO_BLOB_V2);
        e += 4;
    }
    for (size_t i = 0; i < h->n; i++) {
        const video_frame *f = &h->frames[i];
        double ms = f->ts * 1000.0;
        put_u32(e, f->frame);
        put_u32(e + 4, ms > 0 && ms < 4e9 ? (uint32_t)llround(ms) : 0);
        e[8] = (uint8_t)(f->quality < 0 ? 0 : f->quality > 100 ? 100 : f->quality);
        put_hash(e + 9, &f->hash);
        e += CATALOG__VIDEO_FRAME_BYTES;
        if (!v2)
            continue;
        const unsigned bits = frame_regions(f);
        *e++ = (uint8_t)bits;
        for (int r = 0; r < VIDEO_REGION_COUNT; r++) {
            if (!(bits >> r & 1u))
                continue;
            e[0] = f->region_quality[r];
            put_hash(e + 1, &f->region[r]);
            e += CATALOG__VIDEO_REGION_BYTES;
        }
    }
    *out = b;
    *len = n;
    return VG_OK;
}

/* The stored frames back into a video_hash (frames owned: video_hash_free). */
static int catalog__video_decode(const uint8_t *b, size_t len, video_hash *out)
{
    memset(out, 0, sizeof *out);
    const int v2 = len >= 4 && get_u32(b) == CATALOG__VIDEO_BLOB_V2;
    if (!v2 && len % CATALOG__VIDEO_FRAME_BYTES)
        return vg_err_set(VG_ECORRUPT, "stored video frames: %zu bytes", len);
    /* at most this many frames: every frame is at least its version 1 bytes */
    size_t n = len / CATALOG__VIDEO_FRAME_BYTES;
    out->frames = n ? vg_calloc(n, sizeof *out->frames) : NULL;
    if (n && !out->frames)
        return vg_err_set(VG_ENOMEM, "out of memory");
    const uint8_t *e = b + (v2 ? 4 : 0), *end = b + len;
    size_t k = 0;
    while (e < end) {
        if ((size_t)(end - e) < CATALOG__VIDEO_FRAME_BYTES + (size_t)v2)
            break;
        video_frame *f = &out->frames[k++];
        f->frame = get_u32(e);
        f->ts = get_u32(e + 4) / 1000.0;
        f->quality = e[8];
        get_hash(e + 9, &f->hash);
        e += CATALOG__VIDEO_FRAME_BYTES;
        if (!v2)
            continue;
        const unsigned bits = *e++;
        if (bits >> VIDEO_REGION_COUNT ||
            (size_t)(end - e) < (size_t)__builtin_popcount(bits) * CATALOG__VIDEO_REGION_BYTES)
            break;
        f->regions = (uint8_t)bits;
        for (int r = 0; r < VIDEO_REGION_COUNT; r++) {
            if (!(bits >> r & 1u))
                continue;
            f->region_quality[r] = e[0];
            get_hash(e + 1, &f->region[r]);
            e += CATALOG__VIDEO_REGION_BYTES;
        }
    }
    if (e != end) {
        video_hash_free(out);
        return vg_err_set(VG_ECORRUPT, "stored video frames: %zu bytes, cut at byte %zu", len,
                          (size_t)(e - b));
    }
    out->n = k;
    out->duration_s = n ? out->frames[n - 1].ts : 0;
    return VG_OK;
}

/* ---- tenants -------------------------------------------------------------------------------- */

static catalog__vix *vix_get(catalog__videos *v, const char *tenant, int create)
{
    pthread_mutex_lock(&v->mu);
    catalog__vix *x = NULL;
    for (size_t i = 0; i < v->n && !x; i++)
        if (strcmp(v->t[i]->tenant, tenant) == 0)
            x = v->t[i];
    if (!x && create) {
        if (v->n == v->cap) {
            size_t cap = v->cap ? v->cap * 2 : 8;
            catalog__vix **t = vg_realloc(v->t, cap * sizeof *t);
            if (!t)
                goto out;
            v->t = t;
            v->cap = cap;
        }
        if (!(x = vg_calloc(1, sizeof *x)))
            goto out;
        snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
        pthread_rwlock_init(&x->lock, NULL);
        v->t[v->n++] = x;
    }
out:
    pthread_mutex_unlock(&v->mu);
    return x;
}

static void vix_clear(catalog__vix *x)
{
    video_index_free(x->ix);
    vg_free(x->refs);
    vg_free(x->profiles);
    x->ix = NULL;
    x->refs = x->profiles = NULL;
    x->n = x->cap = 0;
}

/* Appends a video (caller holds x->lock exclusively); the word tables are rebuilt by the caller. */
static int vix_append(catalog__vix *x, const char *profile, const char *ref, const video_hash *h)
{
    if (!x->ix) {
        video_match_opts mo;
        video_match_opts_default(&mo);
        if (!(x->ix = video_index_new(mo.min_quality)))
            return vg_err_set(VG_ENOMEM, "out of memory");
    }
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        char(*r)[STORE_ID_MAX] = vg_realloc(x->refs, cap * sizeof *r);
        if (r)
            x->refs = r;
        char(*p)[STORE_ID_MAX] = r ? vg_realloc(x->profiles, cap * sizeof *p) : NULL;
        if (!p)
            return vg_err_set(VG_ENOMEM, "out of memory");
        x->profiles = p;
        x->cap = cap;
    }
    size_t num = 0;
    int rc = video_index_add(x->ix, ref, h, &num);
    if (rc != VG_OK)
        return rc;
    if (num != x->n) /* numbers are dense from 0: the arrays are indexed by them */
        return vg_err_set(VG_EINTERNAL, "video index numbering");
    snprintf(x->refs[x->n], STORE_ID_MAX, "%s", ref);
    snprintf(x->profiles[x->n], STORE_ID_MAX, "%s", profile);
    x->n++;
    return VG_OK;
}

typedef struct load_ctx {
    catalog__videos *v;
    catalog__vix *only; /* a rebuild: this tenant's entry, whose lock the caller holds */
} load_ctx;

static int load_cb(void *ctx, const char *tenant, const char *profile, const char *ref,
                   const uint8_t *frames, size_t len)
{
    load_ctx *l = ctx;
    video_hash h;
    if (catalog__video_decode(frames, len, &h) != VG_OK) {
        VG_WARN("catalog", "reference %s: %s; not matched", ref, vg_err_msg());
        return 0;
    }
    catalog__vix *x = l->only ? l->only : vix_get(l->v, tenant, 1);
    int rc = x ? vix_append(x, profile, ref, &h) : vg_err_set(VG_ENOMEM, "out of memory");
    video_hash_free(&h);
    return rc;
}

int catalog__videos_open(store *st, catalog__videos **out)
{
    catalog__videos *v = vg_calloc(1, sizeof *v);
    if (!v)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_mutex_init(&v->mu, NULL);
    load_ctx l = {v, NULL};
    int rc = store_reference_video_foreach(st, NULL, load_cb, &l);
    for (size_t i = 0; rc == VG_OK && i < v->n; i++)
        if (v->t[i]->ix)
            rc = video_index_build(v->t[i]->ix);
    if (rc != VG_OK) {
        catalog__videos_close(v);
        return rc;
    }
    *out = v;
    return VG_OK;
}

void catalog__videos_close(catalog__videos *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        vix_clear(v->t[i]);
        pthread_rwlock_destroy(&v->t[i]->lock);
        vg_free(v->t[i]);
    }
    vg_free(v->t);
    pthread_mutex_destroy(&v->mu);
    vg_free(v);
}

int catalog__videos_add(catalog__videos *v, const char *tenant_id, const char *profile_id,
                        const char *reference_id, const video_hash *h)
{
    catalog__vix *x = vix_get(v, tenant_id, 1);
    if (!x)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_rwlock_wrlock(&x->lock);
    int rc = vix_append(x, profile_id, reference_id, h);
    if (rc == VG_OK)
        rc = video_index_build(x->ix);
    pthread_rwlock_unlock(&x->lock);
    return rc;
}

int catalog__videos_has(catalog__videos *v, const char *tenant_id, const char *reference_id)
{
    catalog__vix *x = vix_get(v, tenant_id, 0);
    if (!x)
        return 0;
    int found = 0;
    pthread_rwlock_rdlock(&x->lock);
    for (size_t i = 0; !found && i < x->n; i++)
        found = strcmp(x->refs[i], reference_id) == 0;
    pthread_rwlock_unlock(&x->lock);
    return found;
}

int catalog__videos_reload(catalog__videos *v, store *st, const char *tenant_id)
{
    if (!vix_get(v, tenant_id, 1))
        return vg_err_set(VG_ENOMEM, "out of memory");
    return catalog__videos_rebuild(v, st, tenant_id);
}

int catalog__videos_rebuild(catalog__videos *v, store *st, const char *tenant_id)
{
    catalog__vix *x = vix_get(v, tenant_id, 0);
    if (!x)
        return VG_OK; /* the tenant never had a video */
    pthread_rwlock_wrlock(&x->lock);
    vix_clear(x);
    load_ctx l = {v, x};
    int rc = store_reference_video_foreach(st, tenant_id, load_cb, &l);
    if (rc == VG_OK && x->ix)
        rc = video_index_build(x->ix);
    if (rc != VG_OK) /* matching nothing beats matching deleted works */
        vix_clear(x);
    pthread_rwlock_unlock(&x->lock);
    return rc;
}

/* ---- search --------------------------------------------------------------------------------- */

void catalog_video_result_free(catalog_video_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        vg_free(r->matches[i].segments);
    vg_free(r->matches);
    memset(r, 0, sizeof *r);
}

int catalog_video_search(catalog *c, const char *tenant_id, const char *profile_id,
                         const video_hash *q, const video_match_opts *o, catalog_video_result *out)
{
    if (!c || !tenant_id || !q || !out)
        return vg_err_set(VG_EINVAL, "catalog_video_search: NULL argument");
    memset(out, 0, sizeof *out);
    catalog__vix *x = vix_get(catalog__videos_of(c), tenant_id, 0);
    if (!x)
        return VG_OK;
    pthread_rwlock_rdlock(&x->lock);
    int rc = VG_OK;
    video_result vr = {0};
    if (x->ix && x->n)
        rc = video_index_search(x->ix, q, o, &vr);
    out->query_frames = vr.query_frames;
    if (rc == VG_OK && vr.n && !(out->matches = vg_calloc(vr.n, sizeof *out->matches)))
        rc = vg_err_set(VG_ENOMEM, "out of memory");
    for (size_t i = 0; rc == VG_OK && i < vr.n; i++) {
        const video_match *m = &vr.matches[i];
        if (m->video >= x->n || (profile_id && strcmp(x->profiles[m->video], profile_id) != 0))
            continue;
        catalog_video_match *d = &out->matches[out->n];
        memcpy(d->profile_id, x->profiles[m->video], STORE_ID_MAX);
        memcpy(d->reference_id, x->refs[m->video], STORE_ID_MAX);
        d->query_match_pct = m->query_match_pct;
        d->compared_match_pct = m->compared_match_pct;
        d->query_frames = m->query_frames;
        d->query_matched = m->query_matched;
        d->compared_frames = m->compared_frames;
        d->compared_matched = m->compared_matched;
        memcpy(d->by_mech, m->by_mech, sizeof d->by_mech);
        if (m->n_segments) {
            if (!(d->segments = vg_malloc(m->n_segments * sizeof *d->segments))) {
                rc = vg_err_set(VG_ENOMEM, "out of memory");
                break;
            }
            memcpy(d->segments, m->segments, m->n_segments * sizeof *d->segments);
            d->n_segments = m->n_segments;
        }
        out->n++;
    }
    pthread_rwlock_unlock(&x->lock);
    video_result_free(&vr);
    if (rc != VG_OK)
        catalog_video_result_free(out);
    return rc;
}

/* ---- cross-media: a protected photo shown in a found video -------------------------------- */

/* One (query frame, image reference) pair within the threshold. */
typedef struct photo_hit {
    char profile_id[VG_ID_MAX];   /* the index's ids (no longer than the store's) */
    char reference_id[VG_ID_MAX]; /* resolved from key (resolve_hits) */
    uint64_t key;
    uint32_t frame; /* index in the query's frames (faces: in the faces given) */
    double distance;
    double ts; /* faces: the frame's time */
} photo_hit;

static int photo_hit_push(photo_hit **h, size_t *n, size_t *cap, const char *profile_id,
                          uint64_t key, uint32_t frame, double distance, double ts)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        photo_hit *nh = vg_realloc(*h, nc * sizeof *nh);
        if (!nh)
            return vg_err_set(VG_ENOMEM, "out of memory");
        *h = nh;
        *cap = nc;
    }
    photo_hit *e = &(*h)[(*n)++];
    snprintf(e->profile_id, sizeof e->profile_id, "%s", profile_id);
    e->reference_id[0] = '\0';
    e->key = key;
    e->frame = frame;
    e->distance = distance;
    e->ts = ts;
    return VG_OK;
}

/* A new match slot at the end of out (*m zeroed). VG_ENOMEM. */
static int video_match_slot(catalog_video_result *out, size_t *cap, catalog_video_match **m)
{
    if (out->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        catalog_video_match *nm = vg_realloc(out->matches, nc * sizeof *nm);
        if (!nm)
            return vg_err_set(VG_ENOMEM, "out of memory");
        out->matches = nm;
        *cap = nc;
    }
    *m = &out->matches[out->n];
    memset(*m, 0, sizeof **m);
    return VG_OK;
}

static int photo_hit_cmp(const void *a, const void *b)
{
    const photo_hit *x = a, *y = b;
    int c = strcmp(x->reference_id, y->reference_id);
    if (c)
        return c;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

/* The end of the time frame i of q stands for: up to one sampling period before the next kept
 * frame (repeats in between were pruned as identical), or the video's end for the last. */
static double frame_end(const video_hash *q, size_t i)
{
    double ts = q->frames[i].ts;
    double period = q->sampling.rate > 0 ? 1.0 / q->sampling.rate : 0;
    double end = i + 1 < q->n ? q->frames[i + 1].ts - period : q->duration_s;
    return end > ts ? end : ts;
}

/* Turns the hits h[0..n) of one search into matches: sorts them with cmp (by reference first),
 * hands each reference's run to add, and on error frees what it appended, so out is as the
 * caller had it. Shared by the photo-in-video and the faces-in-video searches. */
typedef int (*hit_run_fn)(const photo_hit *h, size_t n, const void *arg, catalog_video_result *out,
                          size_t *cap);
static int hits_to_matches(photo_hit *h, size_t n, int (*cmp)(const void *, const void *),
                           hit_run_fn add, const void *arg, catalog_video_result *out)
{
    if (n > 1)
        qsort(h, n, sizeof *h, cmp);
    size_t first = out->n, cap = out->n;
    int rc = VG_OK;
    for (size_t i = 0; rc == VG_OK && i < n;) {
        size_t j = i;
        while (j < n && strcmp(h[j].reference_id, h[i].reference_id) == 0)
            j++;
        rc = add(h + i, j - i, arg, out, &cap);
        i = j;
    }
    if (rc != VG_OK) {
        for (size_t i = first; i < out->n; i++)
            vg_free(out->matches[i].segments);
        out->n = first;
    }
    return rc;
}

typedef struct photo_run_arg {
    const video_hash *q;
    uint32_t usable, gap_ms;
} photo_run_arg;

/* Appends one match for the pairs h[0..n) of one reference (sorted by frame). */
static int photo_match_add(const photo_hit *h, size_t n, const void *arg, catalog_video_result *out,
                           size_t *cap)
{
    const photo_run_arg *a = arg;
    const video_hash *q = a->q;
    const uint32_t usable = a->usable, gap_ms = a->gap_ms;
    catalog_video_match *m;
    int rc = video_match_slot(out, cap, &m);
    if (rc != VG_OK)
        return rc;
    memcpy(m->profile_id, h[0].profile_id, STORE_ID_MAX - 1);
    memcpy(m->reference_id, h[0].reference_id, STORE_ID_MAX - 1);
    m->ref_image = 1;
    m->distance = h[0].distance;
    m->query_frames = usable;
    m->query_matched = (uint32_t)n;
    m->query_match_pct = usable ? 100.0 * (double)n / usable : 0;
    if (!(m->segments =
              vg_malloc((n < VIDEO_MAX_SEGMENTS ? n : VIDEO_MAX_SEGMENTS) * sizeof *m->segments)))
        return vg_err_set(VG_ENOMEM, "out of memory");
    const double gap = gap_ms / 1000.0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].distance < m->distance)
            m->distance = h[i].distance;
        double ts = q->frames[h[i].frame].ts, end = frame_end(q, h[i].frame);
        video_segment *g = m->n_segments ? &m->segments[m->n_segments - 1] : NULL;
        if (g && ts - g->q_end <= gap) {
            g->q_end = end > g->q_end ? end : g->q_end;
            g->frames++;
        } else if (m->n_segments < VIDEO_MAX_SEGMENTS) {
            m->segments[m->n_segments++] = (video_segment){ts, end, 0, 0, 1, {0}};
        }
    }
    out->n++;
    return VG_OK;
}

static int hit_key_cmp(const void *a, const void *b)
{
    uint64_t x = ((const photo_hit *)a)->key, y = ((const photo_hit *)b)->key;
    return (x > y) - (x < y);
}

/* The hits' reference ids from their keys (catalog_resolve, once per distinct key: a video that
 * shows one photo for minutes hits it on every sampled frame); hits of references removed since
 * the search are dropped. Leaves h sorted by key. */
static int resolve_hits(catalog *c, const char *tenant_id, photo_hit *h, size_t *n)
{
    if (!*n)
        return VG_OK;
    qsort(h, *n, sizeof *h, hit_key_cmp);
    uint64_t *keys = vg_malloc(*n * sizeof *keys);
    analyze_ref *refs = vg_malloc(*n * sizeof *refs);
    size_t nk = 0;
    int rc = keys && refs ? VG_OK : vg_err_set(VG_ENOMEM, "out of memory");
    for (size_t i = 0; rc == VG_OK && i < *n; i++)
        if (nk == 0 || keys[nk - 1] != h[i].key)
            keys[nk++] = h[i].key;
    if (rc == VG_OK)
        rc = catalog_resolve(c, tenant_id, keys, nk, refs);
    size_t kept = 0;
    for (size_t i = 0, k = 0; rc == VG_OK && i < *n; i++) {
        while (keys[k] != h[i].key)
            k++;
        if (!refs[k].found)
            continue;
        h[kept] = h[i];
        snprintf(h[kept].reference_id, sizeof h[kept].reference_id, "%s", refs[k].id);
        kept++;
    }
    if (rc == VG_OK)
        *n = kept;
    vg_free(keys);
    vg_free(refs);
    return rc;
}

int catalog_video_photo_search(catalog *c, const char *tenant_id, const char *profile_id,
                               const video_hash *q, int threshold, int min_quality, uint32_t gap_ms,
                               catalog_video_result *out)
{
    if (!c || !tenant_id || !q || !out)
        return vg_err_set(VG_EINVAL, "catalog_video_photo_search: NULL argument");
    index_db *ix = catalog__index_of(c);
    if (!ix)
        return VG_OK;
    photo_hit *h = NULL;
    size_t n = 0, hcap = 0;
    uint32_t usable = 0;
    int rc = VG_OK;
    for (size_t i = 0; rc == VG_OK && i < q->n; i++) {
        if (q->frames[i].quality < min_quality)
            continue; /* a flat frame (a fade) is near every flat image */
        usable++;
        uint8_t v[1][VG_PDQ_BYTES];
        memcpy(v[0], q->frames[i].hash.w, VG_PDQ_BYTES);
        index_pdq_query iq = index_pdq_query_defaults();
        iq.variants = (const uint8_t(*)[VG_PDQ_BYTES])v;
        iq.n_variants = 1;
        iq.threshold = threshold;
        iq.profile_id = profile_id;
        iq.min_quality = min_quality;
        iq.tags = PDQ_REGION_SHARED_MASK; /* a frame is a whole picture, never a half */
        index_pdq_result r;
        if ((rc = index_pdq_search(ix, tenant_id, &iq, &r)) != VG_OK)
            break;
        for (size_t k = 0; rc == VG_OK && k < r.n; k++)
            rc = photo_hit_push(&h, &n, &hcap, r.matches[k].profile_id, r.matches[k].reference,
                                (uint32_t)i, r.matches[k].distance, q->frames[i].ts);
        index_pdq_result_free(&r);
    }
    if (rc == VG_OK)
        rc = resolve_hits(c, tenant_id, h, &n);
    if (rc == VG_OK) {
        const photo_run_arg a = {q, usable, gap_ms};
        rc = hits_to_matches(h, n, photo_hit_cmp, photo_match_add, &a, out);
    }
    vg_free(h);
    return rc;
}

/* ---- faces in video -------------------------------------------------------------------------- */

/* One match for the hits h[0..n) of one likeness reference (sorted by time): the person tracked
 * over the frames, ranges broken where frames are more than gap apart. */
typedef struct face_run_arg {
    uint32_t n_frames, gap_ms;
} face_run_arg;

static int face_match_add(const photo_hit *h, size_t n, const void *arg, catalog_video_result *out,
                          size_t *cap)
{
    const face_run_arg *a = arg;
    const uint32_t n_frames = a->n_frames, gap_ms = a->gap_ms;
    catalog_video_match *m;
    int rc = video_match_slot(out, cap, &m);
    if (rc != VG_OK)
        return rc;
    memcpy(m->profile_id, h[0].profile_id, STORE_ID_MAX - 1);
    memcpy(m->reference_id, h[0].reference_id, STORE_ID_MAX - 1);
    m->ref_image = m->face = 1;
    m->distance = h[0].distance;
    m->query_frames = n_frames;
    if (!(m->segments =
              vg_malloc((n < VIDEO_MAX_SEGMENTS ? n : VIDEO_MAX_SEGMENTS) * sizeof *m->segments)))
        return vg_err_set(VG_ENOMEM, "out of memory");
    const double gap = gap_ms / 1000.0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].distance < m->distance)
            m->distance = h[i].distance;
        if (i && h[i].ts == h[i - 1].ts)
            continue; /* two faces of one frame: the person is counted once */
        m->query_matched++;
        video_segment *g = m->n_segments ? &m->segments[m->n_segments - 1] : NULL;
        if (g && h[i].ts - g->q_end <= gap) {
            g->q_end = h[i].ts;
            g->frames++;
        } else if (m->n_segments < VIDEO_MAX_SEGMENTS) {
            m->segments[m->n_segments++] = (video_segment){h[i].ts, h[i].ts, 0, 0, 1, {0}};
        }
    }
    m->query_match_pct = n_frames ? 100.0 * m->query_matched / n_frames : 0;
    out->n++;
    return VG_OK;
}

static int face_hit_cmp(const void *a, const void *b)
{
    const photo_hit *x = a, *y = b;
    int c = strcmp(x->reference_id, y->reference_id);
    if (c)
        return c;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

int catalog_video_face_search(catalog *c, const char *tenant_id, const char *profile_id,
                              const catalog_video_face *faces, size_t n, uint32_t n_frames,
                              float threshold, uint32_t gap_ms, catalog_video_result *out)
{
    if (!c || !tenant_id || (n && !faces) || !out)
        return vg_err_set(VG_EINVAL, "catalog_video_face_search: NULL argument");
    index_db *ix = catalog__index_of(c);
    if (!ix || !n)
        return VG_OK;
    photo_hit *h = NULL;
    size_t nh = 0, hcap = 0;
    int rc = VG_OK;
    for (size_t i = 0; rc == VG_OK && i < n; i++) {
        index_face_query q = {.descriptor = faces[i].descriptor,
                              .threshold = threshold,
                              .top_k = INDEX_FACE_TOP_K_DEFAULT,
                              .profile_id = profile_id};
        index_face_result r;
        if ((rc = index_face_search(ix, tenant_id, &q, &r)) != VG_OK)
            break;
        for (size_t k = 0; rc == VG_OK && k < r.n; k++)
            rc = photo_hit_push(&h, &nh, &hcap, r.matches[k].profile_id, r.matches[k].reference,
                                (uint32_t)i, r.matches[k].distance, faces[i].ts);
        index_face_result_free(&r);
    }
    if (rc == VG_OK)
        rc = resolve_hits(c, tenant_id, h, &nh);
    if (rc == VG_OK) {
        const face_run_arg a = {n_frames, gap_ms};
        rc = hits_to_matches(h, nh, face_hit_cmp, face_match_add, &a, out);
    }
    vg_free(h);
    return rc;
}

void catalog_video_stats(catalog *c, const char *tenant_id, size_t *videos, size_t *frames)
{
    *videos = *frames = 0;
    catalog__vix *x = vix_get(catalog__videos_of(c), tenant_id, 0);
    if (!x)
        return;
    pthread_rwlock_rdlock(&x->lock);
    if (x->ix) {
        *videos = video_index_videos(x->ix);
        *frames = video_index_frames(x->ix);
    }
    pthread_rwlock_unlock(&x->lock);
}

static json_t *catalog__r3(double v);

/* ---- cross-media: a photo that is a frame of a protected video ------------------------------ */

/* A new match slot at the end of res->matches (*m), or *m NULL when the reference already has
 * a match there (a caller that runs this twice). VG_ENOMEM. */
static int frame_match_slot(analyze_result *res, const char *reference_id, analyze_match **m)
{
    *m = NULL;
    for (size_t i = 0; i < res->n_matches; i++)
        if (strcmp(res->matches[i].reference_id, reference_id) == 0)
            return VG_OK;
    analyze_match *nm = vg_realloc(res->matches, (res->n_matches + 1) * sizeof *nm);
    if (!nm)
        return vg_err_set(VG_ENOMEM, "out of memory");
    res->matches = nm;
    *m = &nm[res->n_matches++];
    memset(*m, 0, sizeof **m);
    (*m)->face_index = (*m)->query_region = (*m)->ref_region = -1;
    return VG_OK;
}

int catalog_video_frame_match(catalog *c, const char *tenant_id, const char *profile_id,
                              int threshold, int min_quality, analyze_result *res)
{
    if (!c || !tenant_id || !res)
        return vg_err_set(VG_EINVAL, "catalog_video_frame_match: NULL argument");
    const analyze_features *f = &res->features;
    if (!f->has_pdq || f->pdq_quality < min_quality)
        return VG_OK; /* a flat image is near every flat frame */
    catalog__vix *x = vix_get(catalog__videos_of(c), tenant_id, 0);
    if (!x)
        return VG_OK;
    /* The image as is and its 7 dihedral variants, as the image path searches them (a rotated
     * or mirrored frame grab). */
    pdq_hash q[8];
    for (int i = 0; i < 8; i++)
        memcpy(q[i].w, f->pdq_dihedral[i], sizeof q[i].w);
    video_frame_hit *h = NULL;
    size_t n = 0;
    pthread_rwlock_rdlock(&x->lock);
    int rc = x->ix && x->n ? video_index_frame_search(x->ix, q, 8, threshold, &h, &n) : VG_OK;
    /* Hits come by video, nearest first: one match per video. */
    for (size_t i = 0; rc == VG_OK && i < n;) {
        size_t j = i;
        while (j < n && h[j].video == h[i].video)
            j++;
        size_t v = h[i].video;
        if (v < x->n && !(profile_id && strcmp(x->profiles[v], profile_id) != 0)) {
            analyze_match *m;
            rc = frame_match_slot(res, x->refs[v], &m);
            if (m) {
                snprintf(m->profile_id, sizeof m->profile_id, "%s", x->profiles[v]);
                snprintf(m->reference_id, sizeof m->reference_id, "%s", x->refs[v]);
                m->kind = VG_MATCH_PDQ;
                m->distance = h[i].distance;
                m->confidence = fmin(1.0, fmax(0.0, 1.0 - h[i].distance / 64.0));
                m->dihedral = (int)h[i].query;
                m->video_frames = (uint32_t)(j - i);
                for (size_t k = i; k < j && m->n_video_ts < ANALYZE_MAX_VIDEO_TIMES; k++) {
                    m->video_ts[m->n_video_ts] = h[k].ts;
                    m->video_ts_distance[m->n_video_ts++] = h[k].distance;
                }
            }
        }
        i = j;
    }
    pthread_rwlock_unlock(&x->lock);
    vg_free(h);
    return rc;
}

json_t *catalog_video_frame_json(const analyze_match *m)
{
    json_t *ts = json_array();
    for (uint32_t i = 0; ts && i < m->n_video_ts; i++)
        json_array_append_new(ts, json_pack("{s:o,s:i}", "timestamp", catalog__r3(m->video_ts[i]),
                                            "distance", m->video_ts_distance[i]));
    return ts ? json_pack("{s:s,s:s,s:I,s:o}", "mechanism", "video_frame", "reference_media",
                          "video", "video_frames_matched", (json_int_t)m->video_frames,
                          "video_frames", ts)
              : NULL;
}

char *catalog__frame_match_text(const analyze_match *m)
{
    json_t *o = catalog_video_frame_json(m);
    char *t =
        o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(CATALOG__VIDEO_JSON_DIGITS)) : NULL;
    json_decref(o);
    char *r = t ? vg_strdup(t) : NULL;
    free(t);
    return r;
}

/* ---- evidence ------------------------------------------------------------------------------- */

static json_t *catalog__r3(double v)
{
    return isfinite(v) ? json_real(round(v * 1000.0) / 1000.0) : json_null();
}

static json_t *photo_match_json(const catalog_video_match *m)
{
    json_t *segs = json_array();
    for (size_t i = 0; segs && i < m->n_segments; i++) {
        const video_segment *g = &m->segments[i];
        json_array_append_new(
            segs, json_pack("{s:o,s:o,s:I}", "query_start", catalog__r3(g->q_start), "query_end",
                            catalog__r3(g->q_end), "frames", (json_int_t)g->frames));
    }
    return json_pack("{s:s,s:s,s:o,s:I,s:I,s:o}", "media", "video", "reference_media", "image",
                     "query_match_percent", catalog__r3(m->query_match_pct), "query_frames",
                     (json_int_t)m->query_frames, "query_matched", (json_int_t)m->query_matched,
                     "segments", segs ? segs : json_array());
}

/* {"whole": n, "trimmed": n, "half": n}: matched query frames by mechanism. */
static json_t *by_mech_json(const uint32_t by[VIDEO_MECH_COUNT])
{
    json_t *o = json_object();
    for (int k = 0; o && k < VIDEO_MECH_COUNT; k++)
        json_object_set_new(o, video_mechanism_name((video_mechanism)k),
                            json_integer((json_int_t)by[k]));
    return o;
}

json_t *catalog_video_match_json(const catalog_video_match *m)
{
    if (m->ref_image)
        return photo_match_json(m);
    json_t *segs = json_array();
    for (size_t i = 0; segs && i < m->n_segments; i++) {
        const video_segment *g = &m->segments[i];
        json_array_append_new(segs,
                              json_pack("{s:o,s:o,s:o,s:o,s:I,s:o*}", "query_start",
                                        catalog__r3(g->q_start), "query_end", catalog__r3(g->q_end),
                                        "reference_start", catalog__r3(g->c_start), "reference_end",
                                        catalog__r3(g->c_end), "frames", (json_int_t)g->frames,
                                        "matched_by", by_mech_json(g->by_mech)));
    }
    return json_pack("{s:s,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o*}", "media", "video",
                     "query_match_percent", catalog__r3(m->query_match_pct),
                     "compared_match_percent", catalog__r3(m->compared_match_pct), "query_frames",
                     (json_int_t)m->query_frames, "query_matched", (json_int_t)m->query_matched,
                     "compared_frames", (json_int_t)m->compared_frames, "compared_matched",
                     (json_int_t)m->compared_matched, "segments", segs ? segs : json_array(),
                     "matched_by", by_mech_json(m->by_mech));
}

int catalog_video_scan_record(catalog *c, const char *tenant_id, const char *source_url,
                              vg_level level, const uint8_t sha256[32], const char *timings_json,
                              catalog_video_result *res)
{
    if (!c || !res || !sha256)
        return vg_err_set(VG_EINVAL, "catalog_video_scan_record: NULL argument");
    size_t n = res->n;
    store_match_new *ms = n ? vg_calloc(n, sizeof *ms) : NULL;
    char **texts = n ? vg_calloc(n, sizeof *texts) : NULL;
    char(*ids)[STORE_ID_MAX] = n ? vg_calloc(n, sizeof *ids) : NULL;
    int rc = VG_OK;
    if (n && (!ms || !texts || !ids)) {
        rc = vg_err_set(VG_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const catalog_video_match *m = &res->matches[i];
        json_t *j = catalog_video_match_json(m);
        char *t = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(CATALOG__VIDEO_JSON_DIGITS))
                    : NULL;
        json_decref(j);
        texts[i] = t ? vg_strdup(t) : NULL;
        free(t);
        if (!texts[i]) {
            rc = vg_err_set(VG_ENOMEM, "out of memory");
            goto done;
        }
        ms[i].profile_id = m->profile_id;
        ms[i].reference_id = m->reference_id;
        ms[i].kind = VG_MATCH_PDQ;
        /* A video match has no one Hamming distance: distance is the share of the protected
         * video's frames left unmatched (percent), confidence the matched share. */
        ms[i].distance = fmax(0.0, 100.0 - m->compared_match_pct);
        ms[i].confidence = fmin(1.0, fmax(0.0, m->compared_match_pct / 100.0));
        if (m->ref_image) { /* a photo in the video: its best frame's distance, as for images */
            ms[i].distance = m->distance;
            ms[i].confidence = fmin(1.0, fmax(0.0, 1.0 - m->distance / 64.0));
        }
        if (m->face) { /* its person: the nearest face's L2, as for an image's face */
            ms[i].kind = VG_MATCH_FACE;
            ms[i].confidence = fmin(1.0, fmax(0.0, 1.0 - m->distance / 1.2));
        }
        ms[i].dihedral = -1;
        ms[i].face_index = -1;
        ms[i].video_json = texts[i];
    }
    store_scan_new s = {
        .sha256 = sha256,
        .source_url = source_url,
        .faces_json = "[]",
        .timings_json = timings_json,
        .level = vg_level_name(level),
        .n_matches = n,
        .matches = ms,
    };
    char scan_id[STORE_ID_MAX];
    rc = store_scan_insert(catalog__store_of(c), tenant_id, &s, scan_id, ids);
    if (rc != VG_OK)
        goto done;
    snprintf(res->scan_id, sizeof res->scan_id, "%s", scan_id);
    for (size_t i = 0; i < n; i++)
        snprintf(res->matches[i].match_id, sizeof res->matches[i].match_id, "%s", ids[i]);
done:
    for (size_t i = 0; texts && i < n; i++)
        vg_free(texts[i]);
    vg_free(texts);
    vg_free(ms);
    vg_free(ids);
    return rc;
}
