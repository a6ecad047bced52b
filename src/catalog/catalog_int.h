/* catalog internals shared by catalog.c and catalog_video.c. */
#ifndef VG_CATALOG_INT_H
#define VG_CATALOG_INT_H

#include "catalog/catalog.h"

#include <pthread.h>

/* Every tenant's video index (catalog_video.c). Thread-safe; see catalog.h "video". */
typedef struct catalog__videos catalog__videos;

/* Builds every tenant's video index from the store's live video references. *out owned. */
int catalog__videos_open(store *st, catalog__videos **out);
void catalog__videos_close(catalog__videos *v); /* NULL is a no-op */
/* Adds one stored video reference to its tenant's index (searchable on return). */
int catalog__videos_add(catalog__videos *v, const char *tenant_id, const char *profile_id,
                        const char *reference_id, const video_hash *h);
/* Rebuilds one tenant's index from the store (after a removal). */
int catalog__videos_rebuild(catalog__videos *v, store *st, const char *tenant_id);
/* 1 when the tenant's video index holds this reference (the change-log sync skips it). */
int catalog__videos_has(catalog__videos *v, const char *tenant_id, const char *reference_id);
/* catalog__videos_rebuild for a tenant that may not have had a video yet (another node added
 * its first). */
int catalog__videos_reload(catalog__videos *v, store *st, const char *tenant_id);
/* The stored form of a video's frames (CATALOG__VIDEO_FRAME_BYTES each), from arena a. */
int catalog__video_encode(const video_hash *h, vg_arena *a, uint8_t **out, size_t *len);

/* catalog_video_frame_json as text: owned (vg_free), NULL on out of memory. */
char *catalog__frame_match_text(const analyze_match *m);
catalog__videos *catalog__videos_of(catalog *c);
store *catalog__store_of(catalog *c);

/* ---- catalog.c, for catalog_sync.c -------------------------------------------------------- */

struct index_db *catalog__index_of(catalog *c);
/* The tenant's write stripe (see catalog.c "Locks"): adds take it shared, removals and the
 * change-log sync's applies exclusively. */
pthread_rwlock_t *catalog__stripe(catalog *c, const char *tenant_id);
/* Adds a stored reference's hashes and descriptors to the index, exactly as the store holds
 * them (r as store_reference_get returns it). */
int catalog__index_add(struct index_db *ix, const store_reference *r);
/* Calls the erase hook, if any. */
void catalog__erase(catalog *c, const char *tenant_id, const uint8_t sha256[32]);
/* The change-log sync state (catalog_sync.c), opened by catalog_open at the log head it read
 * before building the index, stopped and freed by catalog_close. */
typedef struct catalog__sync catalog__sync;
int catalog__sync_new(catalog *c, int64_t from_seq, catalog__sync **out);
void catalog__sync_free(catalog__sync *s);
catalog__sync *catalog__sync_of(catalog *c);

#endif /* VG_CATALOG_INT_H */
