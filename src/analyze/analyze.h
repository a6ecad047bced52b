/*
 * analyze: the one pipeline every image goes through, for the server (analyze endpoints and
 * reference uploads) and the CLI.
 *
 *   bytes -> sha256 -> feature cache (L1/L2/L3) --hit--------------------------> features
 *                                  \--miss--> img decode -> pdq (+ dihedral)
 *                                                       -> faces (detect, landmarks, descriptors)
 *                                             -> cache fill
 *   features -> index (tenant-scoped PDQ + face search) -> matches -> store (scan + matches)
 *
 * Features are cached, never matches: matching always runs against the current index, so a
 * cached result can never hide a newly protected work. Nothing here knows about HTTP; tenants
 * appear only as the opaque scope string that the index and the store filter on.
 *
 * Ownership: an analyze_ctx is created once by the server, borrows the store, index, cache and
 * face models it is given (they outlive it), and is thread-safe: any thread may call
 * analyze_run / analyze_features concurrently. Results are caller-allocated structs whose
 * internal arrays are owned by the struct; release with analyze_result_free /
 * analyze_features_free.
 */
#ifndef VG_ANALYZE_H
#define VG_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#define ANALYZE_ID_MAX 48        /* bytes for an id string incl. NUL (store ids fit) */
#define ANALYZE_DESCRIPTOR_DIM 128

typedef enum {
    ANALYZE_LEVEL_SPEED = 0,
    ANALYZE_LEVEL_BALANCED, /* default */
    ANALYZE_LEVEL_ACCURACY,
    ANALYZE_LEVEL_MEMORY,
} analyze_level;

/* "speed" | "balanced" | "accuracy" | "memory" <-> enum; parse returns VG_EINVAL. */
const char *analyze_level_name(analyze_level l);
int analyze_level_parse(const char *s, analyze_level *out);

typedef struct analyze_face {
    float box[4];          /* x, y, w, h in pixels of the (oriented) image */
    float score;           /* detector confidence 0..1 */
    float landmarks[68][2];
    float descriptor[ANALYZE_DESCRIPTOR_DIM];
} analyze_face;

/* What an image is, independent of who asks: the cacheable part. */
typedef struct analyze_features {
    uint8_t sha256[32];
    uint32_t width, height;   /* oriented size of the decoded image */
    char format[8];           /* "jpeg" | "png" | "webp" */
    int has_pdq;
    uint8_t pdq[32];          /* PDQ hash, pdq module byte order */
    int pdq_quality;          /* 0..100; < 50 is unreliable and not used for matching */
    uint8_t pdq_dihedral[8][32];
    int faces_enabled;        /* 0 when the server runs without face models */
    size_t n_faces;
    analyze_face *faces;      /* owned, n_faces entries */
} analyze_features;

typedef enum { ANALYZE_MATCH_EXACT = 0, ANALYZE_MATCH_PDQ, ANALYZE_MATCH_FACE } analyze_match_kind;
const char *analyze_match_kind_name(analyze_match_kind k); /* "exact" | "pdq" | "face" */

typedef struct analyze_match {
    char profile_id[ANALYZE_ID_MAX];
    char reference_id[ANALYZE_ID_MAX];
    analyze_match_kind kind;
    double distance;          /* 0 for exact; Hamming bits for pdq; L2 for face */
    double confidence;        /* 0..1 */
    int dihedral;             /* pdq: which of the 8 variants matched (0 = as is); else -1 */
    int face_index;           /* face: index into features.faces; else -1 */
    char match_id[ANALYZE_ID_MAX]; /* set when the scan was stored */
} analyze_match;

typedef struct analyze_timings {
    uint64_t cache_us, decode_us, pdq_us, detect_us, landmarks_us, descriptors_us, match_us,
        store_us, total_us;
    const char *cache_tier;   /* static: "l1" | "l2" | "l3" | "miss" | "off" */
} analyze_timings;

typedef struct analyze_request {
    const uint8_t *bytes;     /* borrowed image bytes */
    size_t len;
    const char *tenant_id;    /* borrowed; matching scope (required for analyze_run) */
    const char *profile_id;   /* borrowed; optional: match only this profile */
    const char *source_url;   /* borrowed; optional, stored with the scan */
    analyze_level level;
    int store;                /* 1: record the scan and its matches as evidence */
    uint64_t deadline_ns;     /* vg_now_ns() deadline; 0 = none. Past it: VG_ETIMEDOUT */
} analyze_request;

typedef struct analyze_result {
    analyze_features features;
    size_t n_matches;
    analyze_match *matches;   /* owned, sorted: exact, then pdq by distance, then face */
    analyze_timings timings;
    char scan_id[ANALYZE_ID_MAX]; /* "" unless stored */
} analyze_result;

typedef struct analyze_ctx analyze_ctx;

/* Features only (reference uploads, `vigil analyze --features`): decode, hash, faces, through
 * the cache. Errors: img errors (VG_EFORMAT, VG_ETRUNC, VG_ECORRUPT, VG_ETOOBIG, VG_EPIXELS,
 * VG_EDIM), VG_ETIMEDOUT, VG_EBUSY (overloaded), VG_ENOMEM. */
int analyze_features_compute(analyze_ctx *ctx, const analyze_request *req,
                             analyze_features *out, analyze_timings *timings);
void analyze_features_free(analyze_features *f);

/* The whole pipeline. On error *out is zeroed and nothing was stored. */
int analyze_run(analyze_ctx *ctx, const analyze_request *req, analyze_result *out);
void analyze_result_free(analyze_result *r);

#endif /* VG_ANALYZE_H */
