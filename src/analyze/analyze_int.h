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

/* What hashing one decoded image needs: a PDQ context and the luma plane that the whole-image
 * hash and every copy region hash share (converted from the RGB decode once). */
typedef struct analyze_hasher {
    pdq_ctx *pdq;
    uint8_t *luma;
    size_t luma_cap; /* bytes */
} analyze_hasher;

/* One inference worker's private state (a sched replica). */
typedef struct analyze_replica {
    face_engine *fe; /* NULL without models */
    analyze_hasher h;
} analyze_replica;

/* The helper thread that hashes a lone request's image while its worker runs the face networks
 * (analyze.c, "lone split"): at most one batch uses it at a time (claimed). */
typedef struct analyze_assist {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop, has_work, done;
    _Atomic int claimed;
    analyze_hasher h;
    analyze_job *job; /* the work: hash this job's decoded image */
    const img_image *im;
    int status; /* its result */
    char errmsg[256];
} analyze_assist;

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
    analyze_assist *assist; /* NULL: lone split off (one CPU, no face models, or configured off) */
    _Atomic uint64_t n_lone_split; /* batches whose hashing ran beside their face networks */
};

/* analyze_features.c */

/* Compiles the default level's network plans (batch 1) on a new replica, so the first request
 * does not pay oneDNN's primitive creation (hundreds of ms). */
int analyze__warm(analyze_ctx *ctx, analyze_replica *rep);
/* Decodes one job's image and hashes it (PDQ + dihedral + copy regions) on a worker, filling its
 * features and decode/pdq timings. With face models, the decoded RGB image is left in *im
 * (owned by the caller, img_image_free) for analyze__faces; without, *im stays empty. With
 * defer_hash (face models only) it decodes only, and the caller runs analyze__hash later or on
 * another thread. */
int analyze__prepare(analyze_ctx *ctx, analyze_replica *rep, analyze_job *job, img_image *im,
                     int defer_hash);
/* The hashing half of analyze__prepare: the whole-image PDQ and the copy hashes of a decoded
 * image, from one luma plane in h. Touches only the job's PDQ fields and pdq_us, so it may run
 * beside analyze__faces on the same job. */
int analyze__hash(analyze_hasher *h, analyze_job *job, const img_image *im);
void analyze__hasher_free(analyze_hasher *h);
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
