/* index: pinned views. A shard's arrays are described by its current view; queries pin it, and
 * writers (write_mutex held) replace it to grow the arrays, install multi-index tables or a
 * compacted copy. The view a new one replaces is retired and keeps the arrays its successor
 * no longer uses (its garbage) until no query pins it or an older view. See index_int.h for the
 * design and its invariants.
 */
#include "index/index_int.h"

#include "core/core.h"

#include <string.h>

size_t index__view_bytes(const index__view *v)
{
    return sizeof *v + v->pdq_cap * INDEX__PDQ_ENTRY_BYTES + v->face_cap * INDEX__FACE_ENTRY_BYTES +
           v->profiles_cap * sizeof(index__profile) + index__mih_bytes(v->mih);
}

/* Frees a view with every array it owns (a current or never published view). */
void index__view_free_all(index__view *v)
{
    if (!v)
        return;
    vg_free(v->pdq_rows);
    vg_free(v->pdq_ref);
    vg_free(v->pdq_quality);
    vg_free(v->pdq_tag);
    vg_free(v->face_rows);
    vg_free(v->face_ref);
    vg_free(v->face_alive);
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

void index__views_free(index__shard *sh)
{
    while (sh->retired_head) {
        index__view *v = sh->retired_head;
        sh->retired_head = v->next_retired;
        view_free_retired(v);
    }
    index__view_free_all(sh->cur);
    sh->cur = NULL;
}

/* A new view over the same arrays (field by field: queries update v->pins concurrently). */
index__view *index__view_clone(const index__view *v)
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
    n->pdq_tag = v->pdq_tag;
    n->face_rows = v->face_rows;
    n->face_ref = v->face_ref;
    n->face_alive = v->face_alive;
    n->profiles = v->profiles;
    n->pdq_cap = v->pdq_cap;
    n->face_cap = v->face_cap;
    n->profiles_cap = v->profiles_cap;
    n->mih = v->mih;
    return n;
}

/* Frees retired views from the oldest while nothing pins them. write_mutex held. */
void index__reclaim(index__shard *sh)
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
void index__view_publish(index__shard *sh, index__view *nv, void **garbage, size_t n_garbage,
                         size_t garbage_bytes, index__mih *garbage_mih, index__map *new_profiles)
{
    index__map old_profiles = {0};
    index__wrlock(sh);
    index__view *old = sh->cur;
    sh->cur = nv;
    if (new_profiles) {
        old_profiles = sh->profile_map;
        sh->profile_map = *new_profiles;
    }
    index__unlock(sh);
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
    index__reclaim(sh);
}

/* ---- pins ----------------------------------------------------------------------------------- */

void index__pin_take(index__shard *sh, const char *profile_id, index__pin *p)
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
                                     index__profile_key, p->v);
        p->unknown_profile = p->profile == INDEX__NONE;
    }
    pthread_rwlock_unlock(&sh->lock);
}

void index__pin_release(index__pin *p)
{
    if (atomic_fetch_sub_explicit(&p->v->pins, 1, memory_order_acq_rel) != 1)
        return;
    /* Last user of a retired view: free what can be freed now unless a writer is busy (it
     * reclaims before it returns). */
    if (pthread_mutex_trylock(&p->sh->write_mutex) == 0) {
        index__reclaim(p->sh);
        pthread_mutex_unlock(&p->sh->write_mutex);
    }
}

/* ---- growth --------------------------------------------------------------------------------- */

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

int index__pdq_arrays_alloc(index__view *v, size_t cap)
{
    v->pdq_rows = index__alloc_big(index__pdq_row_bytes(cap));
    v->pdq_ref = index__alloc_big(cap * sizeof(uint64_t));
    v->pdq_quality = index__alloc_big(cap);
    v->pdq_tag = index__alloc_big(cap);
    v->pdq_cap = cap;
    if (v->pdq_rows && v->pdq_ref && v->pdq_quality && v->pdq_tag)
        return VG_OK;
    index__pdq_arrays_free(v);
    return vg_err_set(VG_ENOMEM, "PDQ index of %zu entries", cap);
}

void index__pdq_arrays_free(index__view *v)
{
    vg_free(v->pdq_rows);
    vg_free(v->pdq_ref);
    vg_free(v->pdq_quality);
    vg_free(v->pdq_tag);
    v->pdq_rows = NULL;
    v->pdq_ref = NULL;
    v->pdq_quality = v->pdq_tag = NULL;
    v->pdq_cap = 0;
}

int index__face_arrays_alloc(index__view *v, size_t cap)
{
    size_t bytes;
    if (vg_mul_size(cap, VG_DESCRIPTOR_DIM * sizeof(float), &bytes))
        return vg_err_set(VG_ETOOBIG, "face index of %zu entries", cap);
    v->face_rows = index__alloc_big(bytes);
    v->face_ref = vg_malloc(cap * sizeof(uint64_t));
    v->face_alive = vg_malloc(cap);
    v->face_cap = cap;
    if (v->face_rows && v->face_ref && v->face_alive)
        return VG_OK;
    index__face_arrays_free(v);
    return vg_err_set(VG_ENOMEM, "face index of %zu entries", cap);
}

void index__face_arrays_free(index__view *v)
{
    vg_free(v->face_rows);
    vg_free(v->face_ref);
    vg_free(v->face_alive);
    v->face_rows = NULL;
    v->face_ref = NULL;
    v->face_alive = NULL;
    v->face_cap = 0;
}

int index__grow_pdq(index__shard *sh, size_t need)
{
    index__view *v = sh->cur;
    if (need <= v->pdq_cap)
        return VG_OK;
    size_t cap = 0;
    int rc = next_cap(v->pdq_cap, need, INDEX__PDQ_MIN_CAP, &cap);
    if (rc)
        return rc;
    index__view *nv = index__view_clone(v);
    if (!nv)
        return vg_err_set(VG_ENOMEM, "index view");
    if ((rc = index__pdq_arrays_alloc(nv, cap))) {
        vg_free(nv);
        return rc;
    }
    /* Rows past pdq_n stay uninitialised: kernels only see whole groups of published rows. */
    size_t n = sh->pdq_n;
    if (n) {
        memcpy(nv->pdq_rows, v->pdq_rows, index__pdq_row_bytes(n));
        memcpy(nv->pdq_ref, v->pdq_ref, n * sizeof(uint64_t));
        /* dead marks are only written under write_mutex, which the caller holds */
        memcpy(nv->pdq_quality, v->pdq_quality, n);
        memcpy(nv->pdq_tag, v->pdq_tag, n);
    }
    void *garbage[] = {v->pdq_rows, v->pdq_ref, v->pdq_quality, v->pdq_tag};
    index__view_publish(sh, nv, garbage, 4, v->pdq_cap * INDEX__PDQ_ENTRY_BYTES, NULL, NULL);
    return VG_OK;
}

int index__grow_face(index__shard *sh, size_t need)
{
    index__view *v = sh->cur;
    if (need <= v->face_cap)
        return VG_OK;
    size_t cap = 0;
    int rc = next_cap(v->face_cap, need, INDEX__FACE_MIN_CAP, &cap);
    if (rc)
        return rc;
    index__view *nv = index__view_clone(v);
    if (!nv)
        return vg_err_set(VG_ENOMEM, "index view");
    if ((rc = index__face_arrays_alloc(nv, cap))) {
        vg_free(nv);
        return rc;
    }
    size_t n = sh->face_n;
    if (n) {
        memcpy(nv->face_rows, v->face_rows, index__face_row_bytes(n));
        memcpy(nv->face_ref, v->face_ref, n * sizeof(uint64_t));
        memcpy(nv->face_alive, v->face_alive, n);
    }
    void *garbage[] = {v->face_rows, v->face_ref, v->face_alive};
    index__view_publish(sh, nv, garbage, 3, v->face_cap * INDEX__FACE_ENTRY_BYTES, NULL, NULL);
    return VG_OK;
}

int index__grow_profiles(index__shard *sh)
{
    index__view *v = sh->cur;
    if (sh->n_profiles + 1 <= v->profiles_cap)
        return VG_OK;
    size_t pcap = 0;
    int rc = next_cap(v->profiles_cap, sh->n_profiles + 1, INDEX__RECORD_MIN_CAP, &pcap);
    if (rc)
        return rc;
    index__view *nv = index__view_clone(v);
    index__profile *p = vg_malloc(pcap * sizeof *p);
    if (!nv || !p) {
        vg_free(nv);
        vg_free(p);
        return vg_err_set(VG_ENOMEM, "index profiles");
    }
    if (sh->n_profiles)
        memcpy(p, v->profiles, sh->n_profiles * sizeof *p);
    void *garbage[] = {v->profiles};
    nv->profiles = p;
    nv->profiles_cap = pcap;
    index__view_publish(sh, nv, garbage, 1, v->profiles_cap * sizeof *p, NULL, NULL);
    return VG_OK;
}
