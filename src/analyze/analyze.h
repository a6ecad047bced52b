/*
 * analyze: the one pipeline every image goes through, for the server (analyze endpoints and
 * reference uploads) and the CLI.
 *
 *   bytes -> sha256 -> feature cache (L1/L2/L3) --hit--------------------------> features
 *                                  \--miss--> img decode -> pdq (+ dihedral)
 *                                                       -> faces (detect, landmarks, descriptors)
 *                                             -> cache fill
 *   features -> index (tenant-scoped PDQ + face search) -> matches
 *
 * bytes -> features -> matches, and nothing more: analyze never writes anything durable. What a
 * tenant registers and what was found are recorded by the catalog module (catalog_scan_record
 * fills analyze_result.scan_id and each match_id), so the store and the index meet in one place.
 *
 * Features are cached, never matches: matching always runs against the current index, so a
 * cached result can never hide a newly protected work. Nothing here knows about HTTP; tenants
 * appear only as the opaque scope string that the index and the cache filter on.
 *
 * Ownership: an analyze_ctx is created once by the server, borrows the index, cache and face
 * models it is given (they outlive it), and is thread-safe: any thread may call
 * analyze_run / analyze_features concurrently. Results are caller-allocated structs whose
 * internal arrays are owned by the struct; release with analyze_result_free /
 * analyze_features_free.
 */
#ifndef VG_ANALYZE_H
#define VG_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/vg_types.h"
#include "img/img.h"

typedef struct analyze_face {
    float box[4]; /* x, y, w, h in pixels of the (oriented) image */
    float score;  /* detector confidence 0..1 */
    float landmarks[68][2];
    float descriptor[VG_DESCRIPTOR_DIM];
} analyze_face;

/* Extra PDQ hash sets of an image besides the whole one, for copy detection (docs/MATCHING.md):
 * the content with bars, frames and caption strips trimmed off, the mirrored pixels of a small
 * image, the central 90% and 80%, and the top and bottom halves (variant 0 only). Every image
 * gets them (the same features serve a reference upload and a query); a query searches its
 * trimmed and mirrored sets, and each half against the same half only; a work reference
 * indexes its trimmed content, centre crops and halves (catalog). */
#define ANALYZE_MAX_COPY_HASHES 8
typedef struct analyze_copy_hash {
    int region;              /* pdq_region: PDQ_REGION_TRIMMED, _FLIP, _CENTRE90, _CENTRE80,
                              * _TOP or _BOTTOM */
    int quality;             /* 0..100, as pdq_quality */
    vg_pdq_hash dihedral[8]; /* [0] is the part's hash */
} analyze_copy_hash;

/* What an image is, independent of who asks: the cacheable part. */
typedef struct analyze_features {
    uint8_t sha256[32];
    uint32_t width, height; /* oriented size of the decoded image */
    char format[8];         /* "jpeg" | "png" | "webp" */
    int has_pdq;
    vg_pdq_hash pdq; /* PDQ hash, pdq module byte order */
    int pdq_quality; /* 0..100; < 50 is unreliable and not used for matching */
    vg_pdq_hash pdq_dihedral[8];
    size_t n_copies; /* 0..ANALYZE_MAX_COPY_HASHES (0 without PDQ) */
    analyze_copy_hash copies[ANALYZE_MAX_COPY_HASHES];
    int faces_enabled; /* 0 when the server runs without face models */
    size_t n_faces;
    analyze_face *faces; /* owned, n_faces entries */
} analyze_features;

/* Timestamps a photo-in-video match reports (the frames nearest the photo, of a video that
 * shows it for a while: one per second at 1 frame/s). */
#define ANALYZE_MAX_VIDEO_TIMES 8
typedef struct analyze_match {
    char profile_id[VG_ID_MAX];
    char reference_id[VG_ID_MAX];
    uint64_t reference_key; /* the index's name for the reference (analyze_resolve_fn) */
    vg_match_kind kind;
    double distance;   /* 0 for exact; Hamming bits for pdq; L2 for face */
    double confidence; /* 0..1 */
    int dihedral;      /* pdq: which of the 8 variants matched (0 = as is); else -1 */
    /* pdq: the pdq_region of the query's hash set and of the reference's entry that gave the
     * best distance (whole, trimmed, flip, centre90, centre80; top and bottom meet only the
     * same half); else -1 */
    int query_region, ref_region;
    int face_index;           /* face: index into features.faces; else -1 */
    char match_id[VG_ID_MAX]; /* "" from analyze; set by catalog_scan_record */
    /* pdq, cross-media (catalog_video_frame_match): the image is a frame of a protected video
     * (a thumbnail, a screenshot). video_frames counts that video's frames within the
     * threshold; the closest ones' timestamps (seconds) and distances, nearest first. 0 for
     * every other match. */
    uint32_t video_frames;
    uint32_t n_video_ts;
    double video_ts[ANALYZE_MAX_VIDEO_TIMES];
    int video_ts_distance[ANALYZE_MAX_VIDEO_TIMES];
} analyze_match;

/* How a PDQ match was found, in words that go into answers, evidence and notices: "video_frame"
 * (the image is a frame of a protected video: video_frames > 0), "whole" (the
 * whole images), "trimmed" (bars, frames or a caption strip trimmed off either image), "flip"
 * (the mirrored pixels of a small image) or "region" (the copy is a crop, or one of its halves
 * was altered: it met a part of the reference, whose name, "centre90", "centre80", "top" or
 * "bottom", goes to *region). A crop wins over a flip, a flip over
 * trimming. NULL (and *region NULL) when m is not a PDQ match. region may be NULL. Static
 * strings. */
const char *analyze_match_mechanism(const analyze_match *m, const char **region);

typedef struct analyze_timings {
    uint64_t cache_us, decode_us, pdq_us, detect_us, landmarks_us, descriptors_us, match_us,
        store_us, total_us; /* store_us: catalog_scan_record's, which adds it to total_us */
    const char *cache_tier; /* static: "l1" | "l2" | "l3" | "miss" | "off" */
    int pdq_beside_faces;   /* 1: pdq_us ran on the lone-split helper during the face stages */
} analyze_timings;

typedef struct analyze_request {
    const uint8_t *bytes; /* borrowed image bytes */
    size_t len;
    const char *tenant_id;  /* borrowed; matching scope (required for analyze_run) */
    const char *profile_id; /* borrowed; optional: match only this profile */
    vg_level level;
    uint64_t deadline_ns; /* vg_now_ns() deadline; 0 = none. Past it: VG_ETIMEDOUT */
    /* 1: on a cache hit, matching and done run on the calling thread, inside analyze_submit
     * (which returns 0 after done returned). A hit then costs no hand-off to a finisher and
     * back (two thread wake-ups, most of a hit's time over HTTP besides the hash). Only for a
     * done that neither blocks nor waits (no evidence write): it delays the calling thread. */
    int inline_hit;
} analyze_request;

typedef struct analyze_result {
    analyze_features features;
    size_t n_matches;
    analyze_match *matches; /* owned, sorted: exact, then pdq by distance, then face */
    analyze_timings timings;
    char scan_id[VG_ID_MAX]; /* "" from analyze; set by catalog_scan_record */
} analyze_result;

typedef struct analyze_ctx analyze_ctx;

/* ---- context -------------------------------------------------------------------------------- */

#define ANALYZE_DEFAULT_PDQ_THRESHOLD 31    /* Hamming bits, inclusive */
#define ANALYZE_DEFAULT_PDQ_MIN_QUALITY 50  /* below: unreliable, not matched */
#define ANALYZE_DEFAULT_FACE_THRESHOLD 0.6f /* L2, strict */
#define ANALYZE_DEFAULT_MAX_FACES 64        /* faces described per image */
#define ANALYZE_DEFAULT_FINISHERS 4         /* threads for cache fill, matching, callbacks */
#define ANALYZE_DEFAULT_MAX_BATCH 8         /* images per inference batch */
#define ANALYZE_DEFAULT_MAX_DELAY_US 200    /* how long a lone image may wait for a batch */
#define ANALYZE_DEFAULT_QUEUE 256           /* images waiting for a worker before 503 */
#define ANALYZE_LONE_THREADS_MAX 4u         /* a lone request's share of a large host */
#define ANALYZE_DEFAULT_DEADLINE_MS 2000    /* per request; the reference product's timeout */
/* tenant_quota 0: a tenant may have this share of queue_capacity queued or running (at least 1),
 * so one tenant never takes the whole queue and at least two always fit. */
#define ANALYZE_DEFAULT_TENANT_QUOTA_DIVISOR 2

typedef struct analyze_config {
    vg_level default_level;
    int pdq_threshold;
    int pdq_min_quality;
    float face_threshold;
    size_t max_faces;
    unsigned min_workers, max_workers; /* inference replicas (0 = 1 .. CPUs) */
    unsigned max_batch;                /* images per batch */
    uint32_t max_delay_us;
    unsigned queue_capacity;
    unsigned tenant_quota; /* images one tenant may have queued or running (0: capacity / 2) */
    uint32_t deadline_ms;  /* used when a request has none */
    unsigned finishers;
    /* 0 (default): feature-cache keys include the request's tenant, so one tenant's uploads are
     * never answered from (and never reveal themselves through) another tenant's entries.
     * 1: one scope for everyone (single-tenant deployments: a hit is shared, nothing leaks). */
    int cache_global;
    size_t max_input_bytes; /* img limits (img_limits); 0 = img defaults */
    uint64_t max_pixels;
    uint32_t max_dimension;
    uint32_t max_jpeg_scans;
    uint64_t max_lossless_pixels;
    uint64_t max_decode_work; /* work units, see img.h */
    uint32_t max_decode_ratio;
    /* 1: a batch of one image that finds nothing else queued or running hashes its image
     * (PDQ, copy regions) on a helper thread while its worker runs the face networks, so a
     * lone request uses a second core; under load every core already has a worker and batches
     * run as before. 0 (default): never; on the 2-vCPU VM measured, both threads slowed by
     * about 1.5x when run together and the lone request got no faster (docs/BENCHMARKS.md). */
    int lone_split;
    /* OpenMP threads of the face networks for a lone batch (one image, nothing else queued or
     * running, and no lone split): the detector alone gets ~2-4 ms faster on a second core.
     * Other batches run their networks on one thread, since every core has a worker then and
     * more threads would only oversubscribe them. 0 (default): the CPU count, at most
     * ANALYZE_LONE_THREADS_MAX; 1: always one thread. */
    unsigned lone_threads;
    /* Test-only fault injection (the end-to-end tests of alerts and self-healing drive real
     * failures and slow stages with them; never set in production): fault_error_rate is the
     * share of computed images (0..1) failed with VG_EINTERNAL after decoding, spread evenly
     * (deterministic, not random); fault_stage_delay_ms sleeps that long before each computed
     * image's decode. 0 = off. */
    double fault_error_rate;
    uint32_t fault_stage_delay_ms;
} analyze_config;

/* Fills the defaults above (balanced level). */
void analyze_config_default(analyze_config *cfg);

/* A reference the index named by its key, as the caller's store holds it: its id, and the
 * SHA-256 of its image bytes, which tells a byte-identical copy (kind exact) from a PDQ match.
 * found 0: no such live reference (removed since the search). */
typedef struct analyze_ref {
    int found;
    char id[VG_ID_MAX];
    uint8_t sha256[32];
} analyze_ref;

/* Resolves keys[0..n) of a tenant's references into out[0..n): the index keeps no ids or
 * SHA-256s (at 10M hashes those were half of its memory), so the few references a search
 * returns are looked up, once per analysis with matches (catalog_resolve: one store query).
 * VG_OK, or a store error that fails the analysis. */
typedef int (*analyze_resolve_fn)(void *arg, const char *tenant_id, const uint64_t *keys, size_t n,
                                  analyze_ref *out);

/* Borrowed collaborators; each must outlive the context. Any may be NULL, except that an index
 * needs a resolver:
 *   index NULL   -> no matching (features only);
 *   cache NULL   -> every request computes its features;
 *   models NULL  -> no face analysis (features.faces_enabled = 0). */
struct index_db;
struct cache;
struct face_models;
typedef struct analyze_deps {
    struct index_db *index;
    struct cache *cache;
    struct face_models *models;
    analyze_resolve_fn resolve; /* required with index */
    void *resolve_arg;
} analyze_deps;

/* Starts the inference workers (each with its own face engine when models are given) and the
 * finisher threads. cfg may be NULL for defaults. Returns owned (analyze_ctx_free). Errors:
 * VG_EINVAL (bad config, with detail), VG_ENOMEM, a face engine error. */
int analyze_ctx_new(const analyze_config *cfg, const analyze_deps *deps, analyze_ctx **out);
/* Stops accepting work (analyze_submit answers VG_ECANCELED), completes every queued request
 * with VG_ECANCELED ("server shutting down") at once and waits for the batches already running;
 * the callbacks of all of them run (on the finisher threads, which keep going until
 * analyze_ctx_free). For a bounded shutdown: call when the grace period is over. Idempotent. */
void analyze_shutdown(analyze_ctx *ctx);
/* analyze_shutdown, then waits for every callback and frees. NULL no-op. */
void analyze_ctx_free(analyze_ctx *ctx);
/* The model version string that goes into cache keys (pdq pipeline, face weights, calibration). */
const char *analyze_model_version(const analyze_ctx *ctx);

/* Completion of an asynchronous request, called exactly once from an analyze thread (never from
 * inside analyze_submit, except for a cache hit of a request with inline_hit) with 0 or a VG_E*
 * code; the result struct given to analyze_submit is
 * filled on success and zeroed on error. detail is NULL on success; on error it names the
 * reason for the reply (the deadline passed while queued, "server shutting down", the img limit
 * hit with its value, the decoder's damage report, ...): borrowed, valid during the call only.
 * It is passed explicitly, not left in vg_err_msg(), so nothing the callback or the thread did
 * before can replace it. arg is the caller's. */
typedef void (*analyze_done_fn)(void *arg, int status, const char *detail);

/* Queues a request. req and everything it points to (bytes, strings) and out stay borrowed until
 * done runs. features_only = 1 computes features without matching (reference uploads). Requests
 * that need inference are queued fairly per req->tenant_id (NULL: one anonymous tenant) and count
 * against its tenant_quota; cache hits do not queue. Returns 0 (done will be called), VG_EQUOTA
 * (the tenant has tenant_quota images in: answer 429 + Retry-After), VG_EBUSY (overloaded: answer
 * 503 + Retry-After), VG_ECANCELED (shutting down: 503), VG_EINVAL; on error done is not called and
 * vg_err_msg() says why (on the calling thread: it returned). */
int analyze_submit(analyze_ctx *ctx, const analyze_request *req, int features_only,
                   analyze_result *out, analyze_done_fn done, void *arg);

/* Erasure: removes from every cache tier the features of the image whose SHA-256 is given
 * (borrowed), as analysed for tenant_id (borrowed; NULL = only the global scope) at every level,
 * in both the tenant's scope and the global one, under the current model version. Called when a
 * reference or profile is deleted so its face descriptors do not outlive it in the cache. Waits
 * for a queued background write of those keys. Best effort (a tier that is down keeps its copy
 * until the TTL); a no-op without a cache. */
void analyze_cache_purge(analyze_ctx *ctx, const char *tenant_id, const uint8_t sha256[32]);

/* Counters for metrics: requests by outcome, cache tiers, queue. failed includes expired
 * (deadline passed while queued) and canceled (shutdown); rejected (queue full) and
 * quota_rejected (tenant over its quota) were never accepted. */
typedef struct analyze_stats {
    uint64_t requests, ok, failed, rejected, quota_rejected, expired, canceled;
    uint64_t cache_hits[4]; /* by cache tier: miss, l1, l2, l3 */
    uint64_t faces_described;
    uint64_t batches, batch_images;
    unsigned queue_depth, workers, workers_busy;
    uint64_t img_limit_hits[IMG_LIMIT_COUNT]; /* images refused by each img limit */
    uint64_t lone_splits; /* batches hashed on the helper thread beside their face networks */
} analyze_stats;
void analyze_stats_get(analyze_ctx *ctx, analyze_stats *out);
/* The inference scheduler's own snapshot (one kind, "image": queue, admission, deadlines, batch
 * size and wait histograms, replicas), for metrics. out is a struct sched_stats (sched/sched.h). */
struct sched_stats;
void analyze_sched_stats_get(analyze_ctx *ctx, struct sched_stats *out);

/* Features only (reference uploads, `vigil analyze --features`): decode, hash, faces, through
 * the cache. Errors: img errors (VG_EFORMAT, VG_ETRUNC, VG_ECORRUPT, VG_ETOOBIG, VG_EPIXELS,
 * VG_EDIM), VG_ETIMEDOUT, VG_EBUSY (overloaded), VG_ENOMEM. */
int analyze_features_compute(analyze_ctx *ctx, const analyze_request *req, analyze_features *out,
                             analyze_timings *timings);
void analyze_features_free(analyze_features *f);

/* The whole pipeline, blocking (analyze_submit + wait). On error *out is zeroed and vg_err_msg()
 * on the calling thread holds the done callback's detail. */
int analyze_run(analyze_ctx *ctx, const analyze_request *req, analyze_result *out);
void analyze_result_free(analyze_result *r);

/* ---- run-time knobs (self-healing) ---------------------------------------------------------
 * Pass-throughs to the cache and the scheduler the context owns, so the server can act on them
 * without reaching inside. All thread-safe. */

/* L1 of the feature cache: new bounds (shrinking evicts at once), current bounds, clear.
 * VG_EUNSUPPORTED without a cache or without L1. */
int analyze_cache_l1_set_capacity(analyze_ctx *ctx, size_t max_entries, size_t max_bytes);
void analyze_cache_l1_capacity(analyze_ctx *ctx, size_t *max_entries, size_t *max_bytes);
uint64_t analyze_cache_l1_clear(analyze_ctx *ctx);
/* Loads L2's n most recently used entries into L1 (cache_warm_l1_from_l2). */
int analyze_cache_warm(analyze_ctx *ctx, size_t n, size_t *loaded);
/* Batching of the inference queue: max images per batch (1..the configured max_batch) and max
 * delay; and the current values. VG_EINVAL. */
int analyze_batching_tune(analyze_ctx *ctx, unsigned max_batch, uint32_t max_delay_us);
void analyze_batching(analyze_ctx *ctx, unsigned *max_batch, uint32_t *max_delay_us);
/* One more inference replica, kept (sched_add_replica): VG_ECONFLICT at max_workers. */
int analyze_add_replica(analyze_ctx *ctx);
/* Fresh replica for the one whose batches failed min_streak times in a row (VG_ENOTFOUND). */
int analyze_replace_failing_replica(analyze_ctx *ctx, unsigned min_streak, unsigned *index);
typedef struct analyze_replica_info {
    unsigned current, min, max, busy;
    unsigned worst_fail_streak; /* consecutive failed batches of the worst live replica */
    uint64_t replaced, batch_failures;
} analyze_replica_info;
void analyze_replicas(analyze_ctx *ctx, analyze_replica_info *out);

#endif /* VG_ANALYZE_H */
