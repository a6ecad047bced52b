/*
 * core: what every other module stands on. Error codes and messages, logging, the allocator
 * hooks (fault injection in tests), clocks, SHA-256, CPU feature detection, bump arenas and a
 * few file helpers. Nothing here knows about images, networks, HTTP or tenants.
 *
 * Conventions used by every module (the house style):
 *   - fallible functions return int: 0 (VG_OK) or a negative VG_E* code; results go through
 *     out-parameters, and on error the out-parameters are left untouched unless a function says
 *     otherwise;
 *   - a function that fails may attach a human-readable detail to the calling thread with
 *     vg_err_set() ("image is 70000 px wide, max_dimension is 65000"); callers that report
 *     errors read it with vg_err_msg(). It is per thread, like errno, and only meaningful right
 *     after a call returned an error;
 *   - memory goes through vg_malloc/vg_calloc/vg_realloc/vg_free so tests can fail the Nth
 *     allocation.
 */
#ifndef VG_CORE_H
#define VG_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define VG_VERSION "0.1.0"

/* ---- error codes ---------------------------------------------------------------------------- */

#define VG_ERRORS(X)                                                                               \
    X(VG_OK, 0, "ok")                                                                              \
    X(VG_ENOMEM, -1, "out of memory")                                                              \
    X(VG_EINVAL, -2, "invalid argument")                                                           \
    X(VG_EIO, -3, "input/output error")                                                            \
    X(VG_ENOTFOUND, -4, "not found")                                                               \
    X(VG_EEXIST, -5, "already exists")                                                             \
    X(VG_EFORMAT, -6, "unsupported format")                                                        \
    X(VG_ETRUNC, -7, "truncated input")                                                            \
    X(VG_ECORRUPT, -8, "corrupt input")                                                            \
    X(VG_ETOOBIG, -9, "input too large")                                                           \
    X(VG_EPIXELS, -10, "too many pixels")                                                          \
    X(VG_EDIM, -11, "dimension out of range")                                                      \
    X(VG_ECHECKSUM, -12, "checksum mismatch")                                                      \
    X(VG_EBUSY, -13, "busy, try again")                                                            \
    X(VG_ETIMEDOUT, -14, "timed out")                                                              \
    X(VG_ECONFLICT, -15, "conflict with current state")                                            \
    X(VG_EPERM, -16, "permission denied")                                                          \
    X(VG_EUNSUPPORTED, -17, "not supported on this machine")                                       \
    X(VG_ENOFACE, -18, "no face found")                                                            \
    X(VG_ESTORE, -19, "storage error")                                                             \
    X(VG_EUNAVAIL, -20, "service unavailable")                                                     \
    X(VG_ECANCELED, -21, "canceled")                                                               \
    X(VG_EINTERNAL, -22, "internal error")                                                         \
    X(VG_EQUOTA, -23, "quota exceeded, slow down")                                                 \
    X(VG_ENOSPC, -24, "no space left on the data disk")

enum {
#define VG_ERR_ENUM(name, value, text) name = value,
    VG_ERRORS(VG_ERR_ENUM)
#undef VG_ERR_ENUM
};

/* Static text for a code ("truncated input"); never NULL. */
const char *vg_strerror(int code);
/* Symbolic name for a code ("VG_ETRUNC"); never NULL. */
const char *vg_errname(int code);

/* Attaches a detail message to the calling thread and returns `code`, so a failure site reads
 * `return vg_err_set(VG_EDIM, "width %u > max_dimension %u", w, max);`. */
int vg_err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last detail, or vg_strerror() of the last code if none was given.
 * Borrowed; valid until the thread's next vg_err_set(). */
const char *vg_err_msg(void);
/* Forget the calling thread's detail (call before an operation whose message you will read). */
void vg_err_clear(void);

/* ---- logging -------------------------------------------------------------------------------- */

typedef enum { VG_LOG_DEBUG = 0, VG_LOG_INFO, VG_LOG_WARN, VG_LOG_ERROR, VG_LOG_OFF } vg_log_level;

/* One line per call to stderr: "2026-11-26T23:40:01.123Z INFO  [img] message". Thread-safe
 * (one write(2) per line). The level threshold is process-wide and set once at start-up.
 * The formatted message is escaped (vg_log_escape): log lines carry request paths, parameters
 * and error details an attacker chose, and a raw newline in one would forge a line. */
void vg_log(vg_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vg_log_set_level(vg_log_level level);
vg_log_level vg_log_get_level(void);
/* "debug" | "info" | "warn" | "error" | "off"; returns VG_EINVAL for anything else. */
int vg_log_parse_level(const char *name, vg_log_level *out);
/* Copies the n bytes of src into dst (cap bytes, NUL-terminated; cap >= 1) with control bytes
 * (0x00-0x1f, 0x7f) written as \n, \r, \t or \xNN and backslash and double quote escaped,
 * so the result is one line that cannot pass for another. Stops before an escape that would not
 * fit. Returns the length written (without the NUL). */
size_t vg_log_escape(const char *src, size_t n, char *dst, size_t cap);

/* Rate limit for a log line that a client can trigger once per request or connection (a
 * refusal, a failed lookup while the database is down): a flood of them would fill the disk
 * and bury every other line. Each call site has its own budget of VG_LOG_BURST_LINES lines per
 * VG_LOG_WINDOW_MS; the lines past it are dropped and counted, and the first line of a later
 * window says how many were dropped. Zero-initialised (a static at the call site). */
#define VG_LOG_BURST_LINES 10u
#define VG_LOG_WINDOW_MS 10000u
typedef struct {
    _Atomic uint64_t window;  /* index of the window the counts below belong to */
    _Atomic uint32_t used;    /* lines admitted in it */
    _Atomic uint32_t dropped; /* lines dropped since the last admitted line reported them */
} vg_log_limit;

/* 1 when a line may be written at time now_ns (then *dropped_before is how many lines of this
 * site were dropped since the last one written), 0 when it is dropped and counted. */
int vg_log_limit_admit(vg_log_limit *lim, uint64_t now_ns, uint32_t *dropped_before);
/* vg_log through lim's budget; an admitted line after drops ends with "(N similar lines
 * dropped)". */
void vg_log_limited(vg_log_limit *lim, vg_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Lines dropped by every limit since start (the vigil_log_lines_dropped_total metric). */
uint64_t vg_log_dropped_total(void);

#define VG_DEBUG(mod, ...) vg_log(VG_LOG_DEBUG, mod, __VA_ARGS__)
#define VG_INFO(mod, ...) vg_log(VG_LOG_INFO, mod, __VA_ARGS__)
#define VG_WARN(mod, ...) vg_log(VG_LOG_WARN, mod, __VA_ARGS__)
#define VG_ERROR(mod, ...) vg_log(VG_LOG_ERROR, mod, __VA_ARGS__)
#define VG_WARN_LIMITED(mod, ...)                                                                  \
    do {                                                                                           \
        static vg_log_limit vg_lim_;                                                               \
        vg_log_limited(&vg_lim_, VG_LOG_WARN, mod, __VA_ARGS__);                                   \
    } while (0)
#define VG_INFO_LIMITED(mod, ...)                                                                  \
    do {                                                                                           \
        static vg_log_limit vg_lim_;                                                               \
        vg_log_limited(&vg_lim_, VG_LOG_INFO, mod, __VA_ARGS__);                                   \
    } while (0)

/* ---- allocation ----------------------------------------------------------------------------- */

/* Same contracts as the libc functions. vg_free(NULL) is a no-op. */
void *vg_malloc(size_t n);
void *vg_calloc(size_t count, size_t size);
void *vg_realloc(void *p, size_t n);
void vg_free(void *p);
char *vg_strdup(const char *s);
/* Process-wide malloc settings for a long-running analysis process, called once by main()
 * before any thread starts. Image and tensor buffers of a few MB are allocated and freed on
 * every request; glibc's defaults return them to the kernel (mmap/munmap, heap trimming) so
 * that each request page-faults them in again, which costs more than the decode on virtual
 * machines with expensive faults. Keeps buffers below VG_MALLOC_MMAP_MAX in the heaps and lets
 * heaps keep up to VG_MALLOC_TRIM_MAX free. No-op when GLIBC_TUNABLES sets malloc options
 * (the operator's choice wins). */
#define VG_MALLOC_MMAP_MAX (32u << 20)
#define VG_MALLOC_TRIM_MAX (64u << 20)
void vg_malloc_tune(void);
/* Returns freed heap memory to the system (glibc malloc_trim(0)): after a cache shrank, the freed
 * entries otherwise stay in the heaps and RSS does not go down. 1 if memory was released. */
int vg_malloc_trim(void);
/* Aligned allocation (alignment a power of two >= sizeof(void*)); free with vg_free. */
void *vg_aligned_alloc(size_t alignment, size_t n);

/* Test hook: the Nth allocation from now (1-based) and every later one fail, until reset with 0.
 * Process-wide; only for single-threaded tests. */
void vg_alloc_fail_after(long n);
/* Number of vg_* allocations made so far (for tests that iterate fail points). */
long vg_alloc_count(void);

/* a*b and a+b with overflow check: return 0 and write *out, or VG_ETOOBIG. */
int vg_mul_size(size_t a, size_t b, size_t *out);
int vg_add_size(size_t a, size_t b, size_t *out);

/* ---- bump arena ----------------------------------------------------------------------------- */

/* A bump allocator for per-request scratch: many small allocations, one reset. Not thread-safe;
 * owned by one thread at a time. Blocks are 64-byte aligned. */
typedef struct vg_arena vg_arena;
/* Returns owned; NULL on out of memory. block_bytes is the chunk size (0 = 64 KiB). */
vg_arena *vg_arena_new(size_t block_bytes);
void vg_arena_free(vg_arena *a);
/* Returns memory owned by the arena (valid until reset/free), 16-byte aligned; NULL on OOM. */
void *vg_arena_alloc(vg_arena *a, size_t n);
char *vg_arena_strdup(vg_arena *a, const char *s);
/* Releases everything allocated since creation, keeping the first block for reuse. */
void vg_arena_reset(vg_arena *a);
size_t vg_arena_bytes_used(const vg_arena *a);

/* ---- clocks --------------------------------------------------------------------------------- */

/* Monotonic nanoseconds (CLOCK_MONOTONIC), for durations. */
uint64_t vg_now_ns(void);
/* Wall clock milliseconds since the Unix epoch (CLOCK_REALTIME), for timestamps. */
int64_t vg_wall_ms(void);
/* Formats wall-clock ms as RFC 3339 UTC with milliseconds ("2026-11-26T23:40:01.123Z").
 * buf must hold at least 25 bytes. Returns buf. */
char *vg_format_time(int64_t wall_ms, char *buf, size_t buflen);

/* A latency histogram kept by a module that must not depend on obs (store, index, sched, face):
 * bucket i counts durations in [2^i, 2^(i+1)) ns (bucket 0 also 0 ns, the last bucket everything
 * longer), the layout cache_tier_stats uses. Recording is two relaxed atomic adds, lock-free;
 * the server turns a snapshot into a Prometheus histogram with power-of-two bounds in seconds
 * (exact, no interpolation). Zero-initialise (static storage or calloc) before use. */
#define VG_LAT_BUCKETS 40
typedef struct vg_lat_hist {
    _Atomic uint64_t buckets[VG_LAT_BUCKETS];
    _Atomic uint64_t sum_ns;
} vg_lat_hist;
/* A plain copy of one, for stats structs. count is the sum of the buckets. */
typedef struct vg_lat_snapshot {
    uint64_t count, sum_ns;
    uint64_t buckets[VG_LAT_BUCKETS];
} vg_lat_snapshot;
/* Records one duration. Thread-safe. h NULL is a no-op. */
void vg_lat_record(vg_lat_hist *h, uint64_t ns);
/* Adds h's current values into *out (so snapshots of several histograms can be merged; zero *out
 * first for a plain copy). Each value read atomically, the set not at one instant. */
void vg_lat_read(const vg_lat_hist *h, vg_lat_snapshot *out);

/* ---- SHA-256 (OpenSSL EVP) ------------------------------------------------------------------ */

#define VG_SHA256_BYTES 32
#define VG_SHA256_HEX_BYTES 65 /* 64 hex digits + NUL */

int vg_sha256(const void *data, size_t len, uint8_t out[VG_SHA256_BYTES]);
/* HMAC-SHA256 of data under key (both borrowed). VG_EINTERNAL if libcrypto fails. */
int vg_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[VG_SHA256_BYTES]);
/* Lower-case hex of any byte string; out must hold 2*len+1 bytes. */
void vg_hex_encode(const uint8_t *bytes, size_t len, char *out);
/* Parses exactly 2*len hex digits (either case). VG_EINVAL on bad length or digit. */
int vg_hex_decode(const char *hex, uint8_t *out, size_t len);
/* Constant-time comparison of two equal-length byte strings: 1 if equal. */
int vg_ct_equal(const void *a, const void *b, size_t len);
/* Fills buf with cryptographically secure random bytes (getrandom). */
int vg_random_bytes(void *buf, size_t len);

/* ---- CPU features --------------------------------------------------------------------------- */

enum {
    VG_CPU_SSE42 = 1u << 0,
    VG_CPU_AVX2 = 1u << 1,
    VG_CPU_FMA = 1u << 2,
    VG_CPU_AVX512F = 1u << 3,
    VG_CPU_AVX512BW = 1u << 4,
    VG_CPU_AVX512VL = 1u << 5,
    VG_CPU_AVX512VNNI = 1u << 6,
    VG_CPU_AVX512BF16 = 1u << 7,
    VG_CPU_AVX512VPOPCNTDQ = 1u << 8,
    VG_CPU_POPCNT = 1u << 9,
    VG_CPU_AVXVNNI = 1u << 10,
};
/* Bit set of VG_CPU_* for this machine (cached after the first call; thread-safe). The
 * environment variable VIGIL_CPU_MASK (hex) masks features off, so tests can force the portable
 * paths on a machine that has the fast ones. */
unsigned vg_cpu_features(void);
/* Space-separated names of the detected features, for logs ("avx2 fma avx512f ..."). */
const char *vg_cpu_describe(void);
/* Number of online CPUs (>= 1). */
int vg_cpu_count(void);

/* ---- files ---------------------------------------------------------------------------------- */

/* Reads a whole file (or stdin when path is "-") into a new buffer (returns owned, free with
 * vg_free) refusing more than max_bytes (VG_ETOOBIG). The buffer gets a NUL after len bytes. */
int vg_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len);
/* Writes a file atomically: temp file in the same directory, fsync, rename, fsync directory. */
int vg_write_file_atomic(const char *path, const void *data, size_t len);
/* mkdir -p with mode 0700 for components it creates. */
int vg_mkdir_p(const char *path);

/* ---- text ----------------------------------------------------------------------------------- */

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), else 0. */
int vg_utf8_valid(const char *s, size_t len);
/* Copies s[0..len) into out (outlen bytes, NUL-terminated, truncated on a character boundary)
 * replacing every byte that is not part of a well-formed UTF-8 sequence with '?', so untrusted
 * bytes can go into JSON. Returns out. */
char *vg_utf8_sanitize(const char *s, size_t len, char *out, size_t outlen);

/* ---- misc ----------------------------------------------------------------------------------- */

#define VG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define VG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VG_UNUSED(x) ((void)(x))

/* Parses a size with an optional unit suffix: "512", "64k", "64KiB", "1M", "1GiB" (binary
 * multiples). VG_EINVAL on anything else or overflow. */
int vg_parse_size(const char *s, uint64_t *out);
/* Parses a duration: "250ms", "2s", "1m", "1h", or a bare number of milliseconds. */
int vg_parse_duration_ms(const char *s, uint64_t *out);

#include "core/vg_types.h"

#endif /* VG_CORE_H */
