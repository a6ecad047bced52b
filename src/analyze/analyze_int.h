/* analyze internals shared by analyze.c (threads, lifecycle), analyze_features.c (decode, PDQ,
 * faces, the cache blob) and analyze_match.c (index queries, evidence). Not public. */
#ifndef VG_ANALYZE_INT_H
#define VG_ANALYZE_INT_H

#include "analyze/analyze.h"
#include "cache/cache.h"
#include "core/core.h"
#include "face/face.h"
#include "img/img.h"
#include "index/index.h"
#include "pdq/pdq.h"
#include "sched/sched.h"

#include <pthread.h>
#include <stdatomic.h>

/* Bump when the meaning of cached features changes (decode policy, PDQ pipeline, blob layout):
 * the version is part of every cache key, so old entries simply stop being found. */
#define ANALYZE_FEATURES_VERSION                                                                   \
    4 /* 2: copy-detection hash sets; 3: top and bottom halves; 4: regions hashed as uploads,      \
         strict and caption trims */
/* What every image's features carry beyond the whole-image hash. */
#define ANALYZE_COPY_WHAT (PDQ_COPY_TRIM | PDQ_COPY_FLIP | PDQ_COPY_REGIONS | PDQ_COPY_HALVES)

/* One request on its way through the pipeline. Owned by the context from analyze_submit until
 * its done callback has returned. */
typedef struct analyze_job {
    analyze_ctx *ctx;
    analyze_request req; /* shallow copy: the pointers inside stay borrowed from the caller */
    int features_only;
    analyze_result *out;
    analyze_done_fn done;
    void *arg;
    int status;
    int cached; /* features came from the cache: nothing to fill */
    cache_key key;
    int have_key;
    uint64_t t0_ns;   /* submit time */
    char errmsg[256]; /* detail of a failure on another thread, carried to the callback's */
    struct analyze_job *next;
} analyze_job;

/* One inference worker's private state (a sched replica). */
typedef struct analyze_replica {
    face_engine *fe; /* NULL without models */
    pdq_ctx *pdq;
} analyze_replica;

struct analyze_ctx {
    analyze_config cfg;
    analyze_deps deps;
    img_limits limits;
    sched *sch;
    char model_version[128];

    /* finisher pool: jobs whose features are known wait here for cache fill, matching and their
     * callback (which may record the evidence: catalog_scan_record waits for a commit) */
    pthread_mutex_t fmu;
    pthread_cond_t fcv;
    analyze_job *fhead, *ftail;
    int fstop;
    pthread_t *fthreads;
    unsigned nfthreads;

    _Atomic uint64_t n_requests, n_ok, n_failed, n_rejected, n_quota, n_expired, n_canceled,
        n_faces;
    _Atomic uint64_t n_cache[4];
    _Atomic uint64_t n_img_limit[IMG_LIMIT_COUNT]; /* by img_limit_kind */
    _Atomic uint64_t fault_seq;                    /* computed images seen by the fault injection */
};

/* analyze_features.c */

/* Compiles the default level's network plans (batch 1) on a new replica, so the first request
 * does not pay oneDNN's primitive creation (hundreds of ms). */
int analyze__warm(analyze_ctx *ctx, analyze_replica *rep);
/* Decodes one job's image and hashes it (PDQ + dihedral) on a worker, filling its features and
 * decode/pdq timings. With face models, the decoded RGB image is left in *im (owned by the
 * caller, img_image_free) for analyze__faces; without, *im stays empty. */
int analyze__prepare(analyze_ctx *ctx, analyze_replica *rep, analyze_job *job, img_image *im);
/* Faces of n prepared jobs of one level, in one face_analyze_batch call (detector inputs and
 * face crops of all the images share network calls). status[i] receives each job's result. */
int analyze__faces(analyze_ctx *ctx, analyze_replica *rep, vg_level level, analyze_job *const *jobs,
                   const img_image *ims, size_t n, int *status);
/* Cache blob <-> features. Encode returns owned bytes (vg_free). Decode validates every length
 * (the blob is treated as untrusted even though the cache checksums it). */
int analyze__features_encode(const analyze_features *f, uint8_t **out, size_t *out_len);
int analyze__features_decode(const uint8_t *buf, size_t len, analyze_features *out);

/* analyze_match.c */

/* Matches the features against the index (exact, PDQ, faces) into out->matches. */
int analyze__match(analyze_ctx *ctx, analyze_job *job);

#endif /* VG_ANALYZE_INT_H */
