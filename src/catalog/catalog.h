/*
 * catalog: what a tenant has registered (profiles and their references) and what was found
 * (scans and their matches), over the store (durable) and the match index (in memory).
 *
 * This module is the one place where store writes and index updates meet. Everything that
 * changes what the index must hold goes through it, so the two cannot drift apart:
 *
 *   catalog_open           store -> index: every live reference, at start
 *   catalog_reference_add  store create, then index add; an index failure rolls the store back
 *   catalog_reference_remove, catalog_profile_remove
 *                          store delete, then index remove, then the erase hook (feature cache)
 *   catalog_scan_record    store only (evidence never enters the index), with the one encoder of
 *                          the JSON stored with a scan (catalog_faces_json, catalog_timings_json)
 *
 * Contract: a failed store write leaves the index untouched; a failed index update leaves the
 * store as it was (a reference whose index insert failed is deleted again before the error is
 * returned). Writes of one tenant that change the index are ordered against each other here
 * (a profile delete never interleaves with a reference add of the same tenant), so the index is
 * what the store says after every call returns.
 *
 * Several nodes, one database (docs/SCALING.md): the store writes a change-log row in the
 * transaction of every reference add or remove, profile remove and key revoke, and each node
 * applies the rows after the last one it applied (catalog_sync_*: index update + erase hook,
 * key hook), woken by the store or polling. Applying is idempotent, so a node's own writes,
 * already applied by the calls above, are skipped when their rows come by. This is why nothing
 * else may write references or update the index.
 *
 * Ownership: catalog_open borrows the store and the index (they outlive the catalog). A catalog
 * is shared by all threads; every call is thread-safe. Ids and strings are borrowed. tenant_id
 * is required everywhere (VG_EINVAL without): the index is scoped by tenant, so the catalog has
 * no admin scope.
 */
#ifndef VG_CATALOG_H
#define VG_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "analyze/analyze.h"
#include "core/core.h"
#include "store/store.h"
#include "video/video.h"

struct index_db;
typedef struct catalog catalog;

/* Builds the index (which should be empty) from every live reference of every tenant in the
 * store, in one read snapshot, then returns the catalog (owned: catalog_close). Errors: the
 * store's, the index's (VG_ENOMEM, VG_ETOOBIG: a tenant past the index's entry limit), VG_ENOMEM.
 * On error the index may hold part of the references: free it. */
int catalog_open(store *st, struct index_db *ix, catalog **out);
/* No other call may be running. NULL is a no-op. */
void catalog_close(catalog *c);

/* Called after a reference left the store and the index, with the SHA-256 of its image (each
 * reference of a deleted profile gets its own call): the server erases the features cached under
 * it, so face descriptors do not outlive the reference in any cache tier. Runs on the deleting
 * thread. Set once, before the catalog is shared between threads; fn NULL clears it. */
typedef void (*catalog_erase_fn)(void *arg, const char *tenant_id, const uint8_t sha256[32]);
void catalog_set_erase_hook(catalog *c, catalog_erase_fn fn, void *arg);

/* ---- several nodes: the change-log sync ------------------------------------------------------ */

/* Called when a change-log row says a key of tenant_id was revoked (on any node, this one
 * included): the server forgets the tenant's cached keys. Runs on the sync thread. Set once,
 * before catalog_sync_start; fn NULL clears it. */
typedef void (*catalog_key_fn)(void *arg, const char *tenant_id, const char *key_id);
void catalog_set_key_hook(catalog *c, catalog_key_fn fn, void *arg);

/* Least and default poll interval of the sync thread. */
#define CATALOG_SYNC_MIN_INTERVAL_MS 10
#define CATALOG_SYNC_DEFAULT_INTERVAL_MS 100

/* Applies every change-log row after the last applied one, in seq order, now, on the calling
 * thread (polls are serialised with the sync thread's). Rows of this node's own writes are
 * skipped (already applied); a reference added and removed before the poll is skipped too.
 * *n_applied (may be NULL) gets the rows read. On a store error (VG_EBUSY, VG_ESTORE ...) the
 * rows before the failing one stay applied and the next poll retries from there. Thread-safe. */
int catalog_sync_poll(catalog *c, size_t *n_applied);
/* Read-your-writes across nodes: reads the log's head (one indexed read) and, when this node
 * has not applied it yet, polls (catalog_sync_poll) before returning, so a search that starts
 * afterwards sees every change any node committed before the call. Errors as the poll's; the
 * caller may go on with the index as it is. Thread-safe. */
int catalog_sync_catch_up(catalog *c);
/* Starts the sync thread: a poll every interval_ms (>= CATALOG_SYNC_MIN_INTERVAL_MS) and at
 * each catalog_sync_wake. Stopped by catalog_close. VG_EINVAL when already started. */
int catalog_sync_start(catalog *c, uint64_t interval_ms);
/* Stops and joins the sync thread (hooks are called no more once it returns); it cannot be
 * started again. A no-op when not running. catalog_close calls it. */
void catalog_sync_stop(catalog *c);
/* Wakes the sync thread for a poll now (the store's wake hook: store_set_wake_hook(st,
 * catalog_sync_wake, c)). Safe from any thread; a no-op before catalog_sync_start. */
void catalog_sync_wake(void *catalog);

typedef struct catalog_sync_stats {
    int64_t applied_seq; /* last change-log row applied */
    int64_t head_seq;    /* last row in the log at the latest poll */
    uint64_t applied;    /* rows applied (own writes skipped included) */
    uint64_t skipped;    /* of those, rows already applied on this node */
    uint64_t polls, wakeups;
    uint64_t errors;       /* polls that stopped on a store or index error */
    uint64_t catch_ups;    /* catalog_sync_catch_up calls that found the node behind */
    int64_t lag_ms;        /* age of the oldest row known and not applied yet; 0 if none */
    int64_t since_poll_ms; /* since the last poll that reached the head (or catalog_open) */
} catalog_sync_stats;
/* A consistent copy of the counters. Thread-safe. */
void catalog_sync_stats_get(catalog *c, catalog_sync_stats *out);

/* ---- references ---------------------------------------------------------------------------- */

/* A reference to register: the tenant's description and the features analyze computed. All
 * pointers borrowed. */
typedef struct catalog_reference_new {
    const char *profile_id; /* a live profile of the tenant */
    store_ref_kind kind;
    /* Work metadata (see store_reference_new: NULL for a likeness). */
    const char *title, *description, *original_url, *copyright_holder;
    const analyze_features *features; /* required */
    const uint8_t *image;             /* the image bytes to keep, or NULL (not kept) */
    size_t image_len;
    /* A video work: its vPDQ hash (features then carries only the SHA-256 of the video bytes).
     * Stored with the reference and added to the tenant's video index. NULL for an image. */
    const video_hash *video;
} catalog_reference_new;

/* Registers a reference: stored (faces beyond STORE_MAX_FACES_PER_REF are not kept), then its
 * PDQ hash, face descriptors and SHA-256 indexed, so the next analysis matches against it.
 * *out (may be NULL) gets the stored record, strings in arena a (required with out).
 * Errors: VG_ENOFACE (a likeness whose photo shows no face, or faces are off: nothing written),
 * the store's (VG_ENOTFOUND no such live profile, VG_EEXIST same image twice in the profile,
 * VG_EINVAL, VG_EBUSY, VG_ENOSPC, VG_ESTORE ...: the index is untouched), the index's
 * (VG_ENOMEM, VG_ETOOBIG ...: the stored reference is deleted again; if even that fails the
 * reference is indexed at the next start, and the log says so). The detail names the cause. */
int catalog_reference_add(catalog *c, const char *tenant_id, const catalog_reference_new *r,
                          vg_arena *a, store_reference *out);
/* Deletes one live reference (store soft delete: descriptors and image erased), removes it from
 * the index and calls the erase hook. Errors are the store's (VG_ENOTFOUND for an unknown id or
 * another tenant's); then nothing was changed. */
int catalog_reference_remove(catalog *c, const char *tenant_id, const char *reference_id);
/* Deletes a live profile and all its references, removes them from the index and calls the
 * erase hook for each reference. *n_refs (may be NULL) gets how many references were deleted.
 * Errors are the store's; then nothing was changed. */
int catalog_profile_remove(catalog *c, const char *tenant_id, const char *profile_id,
                           size_t *n_refs);

/* The analysis's reference resolver (analyze_resolve_fn; arg: the catalog): the index names
 * references by their store key (refs.ikey), and the few a search returns are looked up in the
 * store, STORE_RESOLVE_MAX at a time (one query each). A key of a reference deleted since the
 * search comes back found = 0. Errors are the store's. */
int catalog_resolve(void *catalog, const char *tenant_id, const uint64_t *keys, size_t n,
                    analyze_ref *out);

/* ---- video ---------------------------------------------------------------------------------- */

/* Each tenant's video works are held in a video_index (src/video: frames tagged by video, found
 * through multi-index hashing, never all pairs), built from the store at catalog_open and kept
 * in step by catalog_reference_add / _remove / catalog_profile_remove (a removal rebuilds that
 * tenant's video index from the store). Searches of one tenant run concurrently with each
 * other; an add or a rebuild of that tenant waits for them. */

/* One protected video a query matched (ids copied; segments owned by the result). */
typedef struct catalog_video_match {
    char profile_id[STORE_ID_MAX];
    char reference_id[STORE_ID_MAX];
    char match_id[STORE_ID_MAX]; /* after catalog_video_scan_record; "" otherwise */
    double query_match_pct, compared_match_pct;
    uint32_t query_frames, query_matched, compared_frames, compared_matched;
    uint32_t by_mech[VIDEO_MECH_COUNT]; /* matched query frames by mechanism (whole, trimmed,
                                           half: video_mechanism) */
    video_segment *segments;            /* query start-end vs reference start-end, seconds */
    size_t n_segments;
    /* Cross-media, video -> photo (catalog_video_photo_search): the reference is an image the
     * query video shows. Then distance is the best frame's Hamming distance, the segments are
     * time ranges of the query alone (c_start, c_end 0), query_matched counts its frames near
     * the image, and the compared_* fields are 0. */
    int ref_image;
    double distance;
    /* Faces in video (catalog_video_face_search): with ref_image, the reference is a likeness
     * photo whose person the video shows; distance is then the nearest face descriptor's L2,
     * query_frames the frames searched for faces and query_matched those showing the person. */
    int face;
} catalog_video_match;

typedef struct catalog_video_result {
    catalog_video_match *matches; /* by descending compared_match_pct */
    size_t n;
    uint32_t query_frames;
    char scan_id[STORE_ID_MAX]; /* after catalog_video_scan_record */
} catalog_video_result;

/* Frees what a search wrote and zeroes *r. NULL is a no-op. */
void catalog_video_result_free(catalog_video_result *r);

/* Matches a query video against the tenant's protected videos by the vPDQ rule (o NULL =
 * defaults); profile_id (may be NULL) keeps only that profile's. *out overwritten (free it).
 * VG_EINVAL, VG_ENOMEM. Thread-safe. */
int catalog_video_search(catalog *c, const char *tenant_id, const char *profile_id,
                         const video_hash *q, const video_match_opts *o, catalog_video_result *out);
/* Cross-media, video -> photo: each of the query's sampled frames of quality >= min_quality is
 * looked up in the tenant's image index (as an image analysis would be, threshold bits, every
 * hash a work reference is indexed with), and every image reference found is appended to *out
 * (after what is there: call after catalog_video_search) as one match (ref_image) whose
 * segments are the query's time ranges showing it: a frame covers its time up to the next kept
 * frame (exact repeats are pruned when hashing, so a still shown for 3 s is one frame), and
 * ranges closer than gap_ms merge (at most VIDEO_MAX_SEGMENTS, the earliest). profile_id may be
 * NULL. On error *out keeps what it had. VG_EINVAL, VG_ENOMEM. Thread-safe. */
int catalog_video_photo_search(catalog *c, const char *tenant_id, const char *profile_id,
                               const video_hash *q, int threshold, int min_quality, uint32_t gap_ms,
                               catalog_video_result *out);
/* One face found on a frame of a query video (faces in video). descriptor borrowed. */
typedef struct catalog_video_face {
    double ts;               /* the frame's time, seconds */
    const float *descriptor; /* VG_DESCRIPTOR_DIM floats */
} catalog_video_face;

/* Faces in video: each face's descriptor is searched among the tenant's face references (as an
 * analysed image's faces are: L2 below threshold, profile_id may be NULL), and every reference
 * found is appended to *out as one match (ref_image, face) tracked over the video: its frames
 * grouped into time ranges of the query (first to last frame showing the person; frames closer
 * than gap_ms form one range; at most VIDEO_MAX_SEGMENTS, the earliest). faces in time order;
 * n_frames: the frames searched (query_frames). On error *out keeps what it had. VG_EINVAL,
 * VG_ENOMEM. Thread-safe. */
int catalog_video_face_search(catalog *c, const char *tenant_id, const char *profile_id,
                              const catalog_video_face *faces, size_t n, uint32_t n_frames,
                              float threshold, uint32_t gap_ms, catalog_video_result *out);
/* Records a video analysis as one scan (sha256 of the video bytes; timings_json optional) with
 * one PDQ match per matched video whose details (percentages, segments) are its video JSON.
 * Fills res->scan_id and each match_id. Errors: the store's, VG_ENOMEM. */
int catalog_video_scan_record(catalog *c, const char *tenant_id, const char *source_url,
                              vg_level level, const uint8_t sha256[32], const char *timings_json,
                              catalog_video_result *res);
/* A video match's details as stored with it and answered by the API: {"media":"video",
 * "query_match_percent", "compared_match_percent", the four frame counts, "segments":
 * [{"query_start","query_end","reference_start","reference_end","frames"}]}; a photo in the
 * video (ref_image), or its person (face): {"media":"video", "reference_media":"image",
 * "query_match_percent", "query_frames", "query_matched", "segments": [{"query_start",
 * "query_end","frames"}]}. New reference. */
json_t *catalog_video_match_json(const catalog_video_match *m);
/* Videos and frames indexed for a tenant (0, 0 when it has none). */
void catalog_video_stats(catalog *c, const char *tenant_id, size_t *videos, size_t *frames);

/* Cross-media, photo -> video: appends to res->matches one PDQ match per protected video of the
 * tenant (profile_id, may be NULL: only that profile's) with a frame within threshold bits of
 * the analysed image's hash or one of its dihedral variants: a thumbnail or screenshot of the
 * video. Each says how many frames matched and the nearest ones' timestamps (analyze_match
 * video_*; mechanism "video_frame"). An image under min_quality is not searched. Call after
 * analyze, before catalog_scan_record (which stores the timestamps with the match). res
 * borrowed; on error it holds what was appended so far. VG_EINVAL, VG_ENOMEM. Thread-safe. */
int catalog_video_frame_match(catalog *c, const char *tenant_id, const char *profile_id,
                              int threshold, int min_quality, analyze_result *res);
/* A photo-in-video match's details, as stored with it (store_match.video_json; its mechanism
 * column says "whole") and answered: {"mechanism":"video_frame", "reference_media":"video",
 * "video_frames_matched", "video_frames": [{"timestamp" (s), "distance"}]}. New reference. */
json_t *catalog_video_frame_json(const analyze_match *m);

/* ---- evidence ------------------------------------------------------------------------------- */

/* Records an analysis and its matches as one scan (one transaction, grouped with concurrent
 * writers; returns after the commit). source_url borrowed, optional (< STORE_URL_MAX_BYTES).
 * On success fills res->scan_id and each res->matches[i].match_id, sets res->timings.store_us
 * and adds it to total_us. On error res is unchanged and nothing was stored. Errors: the
 * store's (VG_ENOSPC, VG_EBUSY, VG_ESTORE, VG_EINVAL ...), VG_ENOMEM. */
int catalog_scan_record(catalog *c, const char *tenant_id, const char *source_url, vg_level level,
                        analyze_result *res);

/* The JSON stored with a scan, written here and nowhere else. Faces: [{"box":[x,y,w,h],
 * "score":s}, ...] with boxes rounded to 0.1 px and scores to 1e-4. Timings: {"cache_us",
 * "decode_us", "pdq_us", "faces_us", "match_us"} (no cache tier: evidence is read back by the
 * tenant, and the tier would tell it whether anyone sent the same bytes before). Each returns
 * owned text (vg_free) or NULL on out of memory. */
char *catalog_faces_json(const analyze_features *f);
char *catalog_timings_json(const analyze_timings *t);
/* Stored scan JSON (store_scan.faces_json, timings_json) back as JSON for an answer: a new
 * reference, JSON null when absent or unreadable (a row written by hand or damaged). */
json_t *catalog_stored_json(const char *text);

#endif /* VG_CATALOG_H */
