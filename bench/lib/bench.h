/*
 * bench: the library behind `vigil bench`. Statistics over latency samples (percentiles,
 * histograms), SVG charts and a growable text buffer for the report, an HTTP/1.1 response parser,
 * an epoll load generator (many keep-alive connections from one or two threads), child processes
 * (the server under test, a throwaway redis-server) and the suite's sections.
 *
 * Nothing here is on a production path: the code favours being obviously right and measurable
 * over being clever. It never sends traffic anywhere but the loopback address it is given.
 *
 * Thread-safety: every object belongs to the thread that created it, except where a function
 * says otherwise (bench_load_run runs its own threads and joins them before returning).
 */
#ifndef VG_BENCH_H
#define VG_BENCH_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- text buffer ---------------------------------------------------------------------------- */

/* A growable byte string, always NUL-terminated after len bytes once anything was appended.
 * Caller-allocated: bench_buf_init / bench_buf_deinit. After an allocation failure `failed` is
 * set and further appends are ignored, so a report can be built without checking every call. */
typedef struct bench_buf {
    char *data; /* owned */
    size_t len, cap;
    int failed;
} bench_buf;

void bench_buf_init(bench_buf *b);
void bench_buf_deinit(bench_buf *b);
/* len = 0, keeps the memory. */
void bench_buf_reset(bench_buf *b);
/* data is borrowed. VG_ENOMEM (and failed = 1). */
int bench_buf_append(bench_buf *b, const void *data, size_t len);
int bench_buf_puts(bench_buf *b, const char *s);
int bench_buf_printf(bench_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with the five XML special characters escaped (SVG text and attributes). */
int bench_buf_xml(bench_buf *b, const char *s);

/* ---- samples and statistics ----------------------------------------------------------------- */

/* A growable array of uint64 samples (nanoseconds, bytes, anything). */
typedef struct bench_samples bench_samples;

/* Returns owned (bench_samples_free); hint is the expected count (0: small). VG_ENOMEM. */
int bench_samples_new(size_t hint, bench_samples **out);
void bench_samples_free(bench_samples *s);
int bench_samples_add(bench_samples *s, uint64_t v);
/* Appends every sample of src (borrowed) to dst. */
int bench_samples_merge(bench_samples *dst, const bench_samples *src);
size_t bench_samples_count(const bench_samples *s);
/* Borrowed view of the values, valid until the next add/merge. */
const uint64_t *bench_samples_data(const bench_samples *s);
void bench_samples_clear(bench_samples *s);

/* Percentile q (0..1) of n ascending values, by linear interpolation between closest ranks
 * (rank q*(n-1), the "type 7" definition of R and numpy): q=0 is the minimum, q=1 the maximum,
 * q=0.5 of an even count the mean of the two middle values. n = 0 gives 0. */
double bench_percentile(const uint64_t *sorted, size_t n, double q);

typedef struct bench_summary {
    size_t n;
    double min, p50, p95, p99, max, mean; /* in the samples' unit */
} bench_summary;
/* Sorts the samples in place and summarises them (all zero when empty). */
void bench_samples_summarize(bench_samples *s, bench_summary *out);

/* Log-spaced histogram of n values over [lo, hi) in nbins bins (lo >= 1, hi > lo): bin i covers
 * [lo*r^i, lo*r^(i+1)) with r = (hi/lo)^(1/nbins); values below lo count in bin 0, values at or
 * above hi in the last bin. counts (nbins entries) is overwritten. VG_EINVAL on bad bounds. */
int bench_histogram_log(const uint64_t *values, size_t n, double lo, double hi, unsigned nbins,
                        uint64_t *counts);
/* Lower edge of bin i of the histogram above (i = nbins gives hi). */
double bench_histogram_edge(double lo, double hi, unsigned nbins, unsigned i);

/* ---- SVG charts ----------------------------------------------------------------------------- */

typedef struct bench_series {
    const char *name;    /* borrowed; legend text */
    const double *x, *y; /* borrowed, n points each; non-finite or (log axis) <= 0 skipped */
    size_t n;
} bench_series;

typedef struct bench_chart {
    const char *title, *xlabel, *ylabel; /* borrowed */
    int logx, logy;
    const bench_series *series; /* borrowed */
    size_t n_series;
} bench_chart;

/* A self-contained SVG document (line chart with markers, axes, ticks, legend) appended to out.
 * VG_EINVAL when nothing can be drawn (no finite point), VG_ENOMEM. */
int bench_svg_lines(const bench_chart *c, bench_buf *out);
/* A bar chart: one bar per label (borrowed arrays of n). logy draws bars on a log axis. */
int bench_svg_bars(const char *title, const char *ylabel, const char *const *labels,
                   const double *values, size_t n, int logy, bench_buf *out);

/* ---- HTTP ----------------------------------------------------------------------------------- */

/* Incremental HTTP/1.1 response parser: status line, headers (Content-Length, chunked
 * Transfer-Encoding, Connection: close), body. Caller-allocated; bench_http_parser_init before
 * the first response and after each complete one (keep_body and the buffer survive it). */
#define BENCH_HTTP_MAX_HEADER_BYTES 4096 /* per connection: 12,000 of them fit in 48 MiB */
typedef struct bench_http_parser {
    int state; /* internal */
    int status;
    int close;             /* the server will close the connection after this response */
    int done;              /* a whole response was parsed */
    uint64_t content_left; /* internal */
    int chunked;           /* internal */
    size_t hlen;           /* internal: bytes in hdr */
    char hdr[BENCH_HTTP_MAX_HEADER_BYTES];
    bench_buf *body; /* borrowed; NULL: the body is skipped */
} bench_http_parser;

void bench_http_parser_init(bench_http_parser *p, bench_buf *body);
/* Consumes bytes of data until the response is complete (p->done) or the data runs out; returns
 * the number of bytes consumed (bytes after a complete response belong to the next one), or
 * VG_ECORRUPT for a malformed response, VG_ETOOBIG for headers over the bound. */
long bench_http_parser_feed(bench_http_parser *p, const char *data, size_t len);

/* A keep-alive request with a body (body may be NULL when len is 0; content_type and bearer may
 * be NULL), appended to out. extra_headers: NULL or "Name: value\r\n..." (borrowed). */
int bench_http_request(bench_buf *out, const char *method, const char *path, const char *bearer,
                       const char *content_type, const char *extra_headers, const void *body,
                       size_t len);

/* One blocking request on a new connection to 127.0.0.1:port (timeout_ms for the whole call);
 * *status and the body in resp (may be NULL). VG_EIO (connect/IO), VG_ETIMEDOUT, VG_ECORRUPT. */
int bench_http_call(uint16_t port, const char *method, const char *path, const char *bearer,
                    const char *content_type, const void *body, size_t len, uint32_t timeout_ms,
                    int *status, bench_buf *resp);

/* ---- load generator ------------------------------------------------------------------------- */

/* Produces the next request to send (a complete HTTP/1.1 request). seq is a process-wide counter
 * starting at 0. Return a pointer that stays valid until the response arrives: either into
 * immutable shared memory or into scratch (the connection's own buffer, reset for each call).
 * Called concurrently from the generator's threads. NULL stops the connection (counted as an
 * error). */
typedef const uint8_t *(*bench_load_next_fn)(void *arg, uint64_t seq, bench_buf *scratch,
                                             size_t *len);

typedef struct bench_load_opts {
    uint16_t port;          /* on 127.0.0.1 */
    unsigned connections;   /* kept open, one request in flight each (closed loop) */
    unsigned threads;       /* 1 or 2 epoll threads; connections split between them */
    uint64_t duration_ms;   /* measurement window after the warm-up (0: until max_requests) */
    uint64_t warmup_ms;     /* responses in this window are not measured */
    uint64_t max_requests;  /* stop sending after this many (0: duration only) */
    uint64_t think_ms;      /* pause between a response and the connection's next request */
    uint32_t timeout_ms;    /* a request unanswered this long is an error (connection closed) */
    unsigned connect_burst; /* most connects in progress per thread (0: 256) */
    /* 1: no request is sent until every connection of a thread is established (or the warm-up
     * is over), so a large count is reached before the server gets busy answering; the warm-up
     * must then be long enough to open them all. */
    int connect_first;
    bench_load_next_fn next; /* required */
    void *arg;               /* for next and progress; borrowed */
    /* Optional: called every progress_every completed responses (counting warm-up), from one of
     * the generator's threads, with the running total. */
    void (*progress)(void *arg, uint64_t completed);
    uint64_t progress_every;
} bench_load_opts;

typedef struct bench_load_result {
    uint64_t completed;     /* responses in the measurement window */
    uint64_t completed_all; /* responses in the whole run, warm-up included */
    uint64_t ok;            /* 2xx among them */
    uint64_t status_4xx, status_5xx, status_503;
    uint64_t conn_errors; /* failed connects, resets, closes mid-response */
    uint64_t timeouts;
    uint64_t connected_peak; /* connections established at the same time, at most */
    uint64_t reconnects;     /* connections the server closed (Connection: close) and reopened */
    double elapsed_s;        /* measurement window actually run */
    double ok_per_s;
    bench_samples *latency_ns; /* owned: latency of every 2xx response in the window */
} bench_load_result;

/* Runs the load until duration or max_requests, then waits (up to timeout_ms) for the answers in
 * flight. Raises RLIMIT_NOFILE to its hard limit; VG_EINVAL when it cannot fit the connections.
 * Result owned by the caller (bench_load_result_free). */
int bench_load_run(const bench_load_opts *o, bench_load_result *out);
void bench_load_result_free(bench_load_result *r);
/* Errors of any kind in a result (non-2xx, connection errors, timeouts). */
uint64_t bench_load_errors(const bench_load_result *r);

/* ---- open-loop load (bench_openloop.c) ------------------------------------------------------ */

/* Latency histogram in HdrHistogram's layout: exact below 2^SUB_BITS ns, then 2^SUB_BITS
 * buckets per power of two (0.8% relative precision) up to 2^41 ns (37 minutes; larger values
 * land in the last bucket). Plain value (36 KiB): caller-allocated, bench_hist_init. */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_BUCKETS ((41 - BENCH_HIST_SUB_BITS + 1) * (1 << BENCH_HIST_SUB_BITS))
typedef struct bench_hist {
    uint64_t n, sum, max;
    uint64_t counts[BENCH_HIST_BUCKETS];
} bench_hist;
void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t v);
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/* The value at quantile q (0..1): the middle of the bucket holding the ceil(q n)-th smallest
 * value, capped at the maximum; q >= 1 gives the exact maximum; 0 when empty. */
uint64_t bench_hist_percentile(const bench_hist *h, double q);

/* Request classes of the open-loop mix. */
enum { BENCH_OL_API = 0, BENCH_OL_CACHED = 1, BENCH_OL_NEW = 2, BENCH_OL_CLASSES = 3 };
/* How a due request ended (exactly one per request). */
enum {
    BENCH_OL_OK = 0,      /* 2xx */
    BENCH_OL_ERR_CONNECT, /* its connection could not be opened */
    BENCH_OL_ERR_TIMEOUT, /* no answer within timeout_ms of its due time (sent or not) */
    BENCH_OL_ERR_IO,      /* reset or closed mid-response, malformed response */
    BENCH_OL_ERR_STATUS,  /* a non-2xx answer */
};
#define BENCH_OL_MAX_CONNECTIONS 65536

/* One request: data (len bytes, a complete HTTP/1.1 keep-alive request, borrowed, immutable
 * until its answer arrives) sent with patch_len bytes of patch in place of its own at patch_off
 * (what makes an image's bytes new without a per-connection copy of the body; 0: none). */
#define BENCH_OL_PATCH_BYTES 32
typedef struct bench_ol_req {
    const uint8_t *data;
    size_t len, patch_off, patch_len;
    uint8_t patch[BENCH_OL_PATCH_BYTES];
} bench_ol_req;

/* Fills *out (zeroed) with request i of class cls; called from the generator's thread. A
 * non-zero return fails the request (io). */
typedef int (*bench_ol_build_fn)(void *arg, int cls, uint64_t i, bench_ol_req *out);

typedef struct bench_ol_opts {
    uint16_t port;        /* on 127.0.0.1 */
    unsigned connections; /* keep-alive connections; request i goes to connection i mod N */
    double rate;          /* requests per second offered: request i is due at t0 + i / rate */
    uint64_t duration_ms; /* requests due in this window (rate * duration of them) */
    uint32_t timeout_ms;  /* from the due time; also bounds the drain after the window */
    unsigned weights[BENCH_OL_CLASSES]; /* the mix; request i's class: bench_ol_class_of */
    bench_ol_build_fn build;            /* required */
    void *arg;                          /* for build; borrowed */
} bench_ol_opts;

typedef struct bench_ol_counts {
    uint64_t due; /* == ok + err_* after a run */
    uint64_t ok, err_connect, err_timeout, err_io, err_status;
} bench_ol_counts;

typedef struct bench_ol_result {
    double offered_rate, duration_s, elapsed_s; /* elapsed: the window plus the drain */
    double ok_rate;                             /* ok / duration_s */
    uint64_t sent;                              /* requests written to a socket */
    uint64_t connects, connect_failures, reconnects;
    uint64_t max_queue;       /* most requests waiting on one connection behind one in flight */
    uint64_t max_send_lag_ns; /* latest send after its due time */
    bench_ol_counts total, cls[BENCH_OL_CLASSES];
    uint64_t status[600];                      /* non-2xx answers by code */
    bench_hist lat, cls_lat[BENCH_OL_CLASSES]; /* ok answers, from the due time */
} bench_ol_result;

/* The class (BENCH_OL_*) of request i under the mix weights: a fixed hash of i, so runs are
 * repeatable. All-zero weights give BENCH_OL_API. */
int bench_ol_class_of(const unsigned weights[BENCH_OL_CLASSES], uint64_t i);
/* Opens the connections, then offers the rate for the duration and waits for the answers (up to
 * timeout_ms past the window). *out is overwritten (it is large: 150 KiB; allocate it). Raises
 * RLIMIT_NOFILE to its hard limit. VG_EINVAL (bad options, too many connections for the
 * open-files limit), VG_ENOMEM. Connection failures are results, not errors. */
int bench_ol_run(const bench_ol_opts *o, bench_ol_result *out);
/* err_connect + err_timeout + err_io + err_status. */
uint64_t bench_ol_errors(const bench_ol_counts *k);

/* `vigil bench openloop` (bench_ol_main.c): argv[0] is "openloop"; source_dir (borrowed) holds
 * bench/images. Returns the exit status: 0 ran (missed targets are findings), 1 failed, 2 usage. */
int bench_openloop_main(int argc, char **argv, const char *source_dir);

/* ---- child processes ------------------------------------------------------------------------ */

/* A free TCP port on 127.0.0.1 (bound and released; a race with other programs is possible and
 * shows up as a start failure). */
int bench_free_port(uint16_t *out);
/* CPU time (user + system) a process has used so far, in seconds (/proc/<pid>/stat). */
int bench_proc_cpu_s(pid_t pid, double *out);
/* Resident set size and its peak (VmRSS, VmHWM) of a process, in KiB. */
int bench_proc_rss_kb(pid_t pid, uint64_t *rss_kb, uint64_t *hwm_kb);
/* rm -rf path (borrowed). */
int bench_rmtree(const char *path);

/* `vigil serve` in a child process with a temporary data directory, a random admin key, on a
 * free loopback port, and a tenant with a key created through the API. */
typedef struct bench_server bench_server;
typedef struct bench_server_opts {
    const char *vigil;         /* path of the vigil binary (borrowed) */
    const char *const *args;   /* extra `serve` flags, NULL-terminated (borrowed); may be NULL */
    const char *log_path;      /* server stderr goes here (NULL: /dev/null) */
    uint32_t start_timeout_ms; /* for /api/v1/health/live to answer (0: 60 s) */
} bench_server_opts;
/* Returns owned (bench_server_stop). VG_EIO when the child cannot start or never answers. */
int bench_server_start(const bench_server_opts *o, bench_server **out);
/* SIGTERM, wait (SIGKILL after 15 s), remove the data directory. NULL no-op. */
void bench_server_stop(bench_server *s);
uint16_t bench_server_port(const bench_server *s);
pid_t bench_server_pid(const bench_server *s);
const char *bench_server_tenant_key(const bench_server *s); /* borrowed */
const char *bench_server_data_dir(const bench_server *s);   /* borrowed */

/* redis-server (from PATH) on a free loopback port, no persistence. VG_EUNSUPPORTED when it is
 * not installed. */
typedef struct bench_redis bench_redis;
int bench_redis_start(bench_redis **out);
void bench_redis_stop(bench_redis *r);
uint16_t bench_redis_port(const bench_redis *r);

/* ---- the suite ------------------------------------------------------------------------------ */

enum {
    BENCH_SEC_LATENCY = 1u << 0, /* 1: single-image latency per class and level */
    BENCH_SEC_BATCH = 1u << 1,   /* 2: batch throughput */
    BENCH_SEC_SWEEP = 1u << 2,   /* 3: HTTP concurrency sweep */
    BENCH_SEC_CACHE = 1u << 3,   /* 4: cache tiers */
    BENCH_SEC_MEMORY = 1u << 4,  /* 5: memory stability */
    BENCH_SEC_LEVELS = 1u << 5,  /* 6: optimisation levels */
    BENCH_SEC_ALL = (1u << 6) - 1,
};
/* "latency,batch,sweep,cache,memory,levels" (or the numbers 1..6, or "all") -> bit set.
 * VG_EINVAL naming the unknown word. */
int bench_sections_parse(const char *s, unsigned *out);

typedef struct bench_suite_opts {
    const char *vigil;      /* the vigil binary, for the server sections (borrowed) */
    const char *out_dir;    /* created if absent (borrowed) */
    const char *images_dir; /* S.jpg M.jpg L.jpg HD.jpg (borrowed) */
    const char *faces_dir;  /* tests/data/faces: results.json + images/ (borrowed) */
    const char *models_dir; /* face weights (borrowed) */
    const char *command;    /* the command line, for the report (borrowed) */
    unsigned sections;      /* BENCH_SEC_* */
    int quick;              /* reduced counts and durations: a few minutes in all */
    unsigned iterations;    /* 0: the mode's default; else the per-measurement count (smoke) */
    int verbose;            /* progress lines on stderr */
} bench_suite_opts;

/* Runs the chosen sections and writes out_dir/bench.json, out_dir/bench.md and the SVG charts
 * beside them. A section that cannot run (no models, no redis-server) says why in the report
 * and the others go on. Returns 0 when the reports were written. */
int bench_suite_run(const bench_suite_opts *o);

#endif /* VG_BENCH_H */
