/*
 * rel: what the reliability tools (rel_kill9, rel_httpfuzz, rel_soak) share. A keep-alive HTTP/1.1
 * client over one loopback connection, `vigil serve` as a child process on a data directory the
 * tool owns (so a restart after kill -9 finds the same files), a seeded random generator, and
 * /proc readings of the server (VmRSS, open descriptors).
 *
 * Every tool sends traffic to 127.0.0.1 only, and every loop it runs is bounded by a count and a
 * wall-clock limit. Nothing here is on a production path: it favours being obviously right.
 *
 * Thread-safety: a rel_conn belongs to one thread; rel_server functions are called by the thread
 * that started the server.
 */
#ifndef VG_REL_H
#define VG_REL_H

#include "bench/lib/bench.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- random ---------------------------------------------------------------------------------- */

/* xorshift64*: deterministic from its seed, so a run (and a failure) is reproducible. */
typedef struct rel_rng {
    uint64_t s;
} rel_rng;

void rel_rng_seed(rel_rng *r, uint64_t seed);
uint64_t rel_rng_next(rel_rng *r);
/* Uniform in [0, n) (n > 0). */
uint64_t rel_rng_below(rel_rng *r, uint64_t n);

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* One keep-alive connection to 127.0.0.1:port, reopened on the next call after any failure or
 * after the server said Connection: close. Caller-allocated: rel_conn_init / rel_conn_deinit. */
typedef struct rel_conn {
    uint16_t port;
    int fd; /* -1: not connected */
    bench_buf req, resp;
    bench_http_parser parser;
    char carry[16384]; /* bytes received after a complete response (none expected) */
    size_t carry_len;
} rel_conn;

void rel_conn_init(rel_conn *c, uint16_t port);
void rel_conn_deinit(rel_conn *c);
/* Closes the connection (the next call opens a new one); port may change (a restarted server). */
void rel_conn_reset(rel_conn *c, uint16_t port);

/* One request; the answer's status in *status and its body in c->resp (NUL-terminated). ctype and
 * bearer may be NULL. VG_EIO when the server cannot be reached or closed the connection before a
 * whole answer (the request may or may not have been applied), VG_ETIMEDOUT after timeout_ms,
 * VG_ECORRUPT for a malformed answer. */
int rel_call(rel_conn *c, const char *method, const char *path, const char *bearer,
             const char *ctype, const void *body, size_t len, uint32_t timeout_ms, int *status);

/* Sends raw bytes as they are and reads until one whole answer, the server's close, or
 * timeout_ms. Returns VG_OK with *status of the answer (0 when the server closed without a whole
 * answer), VG_ETIMEDOUT when neither came in time (a hang), VG_EIO when the connection could not
 * be made. Always closes the connection afterwards. */
int rel_raw(rel_conn *c, const void *bytes, size_t len, uint32_t timeout_ms, int *status);

/* The answer body as JSON (owned, json_decref) or NULL. */
json_t *rel_json(const rel_conn *c);
/* A string field of the answer's JSON object copied into out ("" when absent). */
void rel_json_str(const rel_conn *c, const char *field, char *out, size_t outlen);

/* ---- the server ------------------------------------------------------------------------------ */

#define REL_MAX_ARGS 48

typedef struct rel_server {
    pid_t pid; /* -1: not running */
    uint16_t port;
    char vigil[512];
    char data_dir[512];
    char log_path[600]; /* stdout and stderr of every start, appended */
    char admin_key[80];
    const char *extra[REL_MAX_ARGS]; /* borrowed, NULL-terminated */
    long log_start;                  /* log size when the current start began */
} rel_server;

/* Fills s (no process yet). extra: further `serve` flags, NULL-terminated, borrowed for the life
 * of s; may be NULL. */
void rel_server_init(rel_server *s, const char *vigil, const char *data_dir,
                     const char *const *extra);
/* Starts `vigil serve` on 127.0.0.1:0 and waits up to timeout_ms for its "listening on" line.
 * VG_EIO (with a message) when it exits or never says so. */
int rel_server_start(rel_server *s, uint32_t timeout_ms);
/* Sends sig and waits up to timeout_ms (then SIGKILL). Returns the exit status, or -signal. */
int rel_server_stop(rel_server *s, int sig, uint32_t timeout_ms);
/* 1 while the child runs; reaps it (and sets pid = -1) when it has exited, *status then
 * holds the wait status. */
int rel_server_alive(rel_server *s, int *status);
/* Text the current start wrote to the log (owned, vg_free), at most max_bytes from its start. */
char *rel_server_log(const rel_server *s, size_t max_bytes);

/* VmRSS in KiB and the number of open descriptors of a process. */
int rel_proc_rss_fds(pid_t pid, uint64_t *rss_kb, unsigned *fds);

/* Reads a whole file (owned, vg_free). */
int rel_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* Wall-clock time, for reports: "2026-12-07T12:30:00Z". */
void rel_utc_now(char *out, size_t outlen);

#endif /* VG_REL_H */
