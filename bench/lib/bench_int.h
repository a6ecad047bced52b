/* bench: internals shared by the suite's files (bench_suite.c: framework, report, sections 1
 * and 4; bench_sections.c: sections 2, 3, 5 and 6). One suite runs on one thread (the load
 * generator's threads only call the request callbacks, which read immutable templates). */
#ifndef VG_BENCH_INT_H
#define VG_BENCH_INT_H

#include "bench/lib/bench.h"

#include <jansson.h>
#include <stdatomic.h>

#define BENCH_N_CLASSES 4
#define BENCH_N_LEVELS 4
#define BENCH_HTTP_TIMEOUT_MS 30000
#define BENCH_UNIQUE_TAG_BYTES 16 /* hex digits in the JPEG comment that makes bytes unique */
#define BENCH_FD_RESERVE 64       /* descriptors a load generator keeps for everything else */

typedef struct bench_img {
    const char *name; /* "S" | "M" | "L" | "HD" (static) */
    uint8_t *bytes;   /* owned */
    size_t len;
} bench_img;

/* A prebuilt HTTP request; when unique, BENCH_UNIQUE_TAG_BYTES at each patch_off (one per image)
 * are rewritten for each request (in the connection's scratch copy) so every image's bytes, and
 * SHA-256, are new: tag = image index (2 hex) | run (4 hex) | sequence (10 hex). */
#define BENCH_MAX_PATCHES 64 /* images per request that can be made unique */
typedef struct bench_req {
    bench_buf buf;
    unsigned n_patch; /* 0: the same bytes every time */
    size_t patch_off[BENCH_MAX_PATCHES];
} bench_req;

/* Everything the suite measured that the targets table needs (NAN: not measured). */
typedef struct bench_targets {
    double p95_inproc_ms[BENCH_N_CLASSES]; /* balanced, cold, analyze_run */
    double p95_http_ms[BENCH_N_CLASSES];   /* balanced, cold, one request at a time */
    double p95_cached_http_ms[BENCH_N_CLASSES];
    double best_uncached_rps; /* highest clean uncached mixed throughput */
    unsigned best_uncached_conns;
    double best_uncached_cpu_ms; /* server CPU per image at that point */
    double l1_speedup_p50;       /* in process, miss P50 / L1 hit P50 */
    double l1_speedup_http_p50;
    double conns_12k_connected, conns_12k_errors, conns_12k_rps, conns_12k_p95_ms;
    double rss_growth_pct;
    uint64_t rss_from_req, rss_to_req;
} bench_targets;

typedef struct suite {
    const bench_suite_opts *o;
    json_t *root;     /* owned: the JSON report */
    json_t *sections; /* borrowed from root */
    bench_buf md;     /* the Markdown report */
    bench_img img[BENCH_N_CLASSES];
    bench_targets t;
    atomic_uint_fast64_t unique_run; /* high bits of unique tags: never reused in one suite */
    char log_path[512];              /* server logs (in out_dir) */
    int n_charts;
    struct face_models *models; /* owned; opened on first use */
    int models_tried;
    char models_err[256];
} suite;

/* Round robin over prebuilt requests (a bench_load_next_fn argument). */
typedef struct bench_rr {
    const bench_req *reqs; /* borrowed, n */
    size_t n;
    uint64_t run; /* from bench__new_run */
} bench_rr;
const uint8_t *bench__rr_next(void *arg, uint64_t seq, bench_buf *scratch, size_t *len);
/* The face models (NULL with the reason in s->models_err when they cannot be opened). */
struct face_models *bench__models(suite *s);
/* An in-process analysis context: no store, no index, the given cache (may be NULL). */
struct cache;
struct analyze_ctx;
int bench__ctx(suite *s, struct cache *c, unsigned max_batch, struct analyze_ctx **out);
/* Markdown cell helpers: "12.3" for ms values, "n/a" for NAN. */
const char *bench__fmt(char *buf, size_t n, double v, int prec);

/* ---- helpers (bench_suite.c) ---- */
void bench__progress(suite *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes out_dir/<name> (an SVG) and links it from the Markdown; logs and skips on error. */
void bench__chart(suite *s, const char *file, const char *alt, const bench_buf *svg);
json_t *bench__summary_json(const bench_summary *sm, double scale);
/* A JPEG copy of an image with a 20-byte comment segment after SOI holding the tag. */
/* Raises RLIMIT_NOFILE to its hard limit; VG_EINVAL when `need` connections (plus
 * BENCH_FD_RESERVE) still do not fit. Shared by the closed-loop (bench_load.c) and open-loop
 * (bench_openloop.c) generators. */
int bench__raise_nofile(unsigned need);
int bench__unique_jpeg(const bench_img *im, uint64_t tag, bench_buf *out);
/* POST /api/v1/analyze?<query> with the image as the body; unique = a fresh tag per request. */
int bench__req_analyze(bench_req *r, const bench_img *im, const char *key, const char *query,
                       int unique);
/* POST /api/v1/analyze/batch with n images (classes round robin from first), fields as parts. */
int bench__req_batch(bench_req *r, suite *s, unsigned first, unsigned n, const char *key,
                     int unique);
void bench__req_deinit(bench_req *r);
/* The bytes to send for request seq of run `run` (see bench_load_next_fn). */
const uint8_t *bench__req_get(const bench_req *r, uint64_t run, uint64_t seq, bench_buf *scratch,
                              size_t *len);
uint64_t bench__new_run(suite *s);
/* Starts a server with extra flags (NULL-terminated, may be NULL). */
int bench__server(suite *s, const char *const *args, bench_server **out);
/* Sequential requests over one connection: warm-up then n measured. */
int bench__http_seq(suite *s, uint16_t port, const bench_req *reqs, size_t nreq, unsigned warm,
                    unsigned n, bench_summary *lat, uint64_t *errors);
unsigned bench__iters(suite *s, unsigned full, unsigned quick);
double bench__ms(double ns);

/* ---- sections ---- */
int bench__sec_latency(suite *s);
int bench__sec_batch(suite *s);
int bench__sec_sweep(suite *s);
int bench__sec_cache(suite *s);
int bench__sec_memory(suite *s);
int bench__sec_levels(suite *s);

#endif /* VG_BENCH_INT_H */
