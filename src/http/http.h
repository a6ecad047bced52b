/*
 * http: Vigil's HTTP layer. A thin wrapper around libmicrohttpd (http_mhd.c is the only file that
 * includes it), a router with path parameters and method matching, per-request arenas, bounded
 * body accumulation, a multipart/form-data parser, JSON helpers on jansson, bearer-key
 * authentication with an in-memory key cache, and the one error body every failure answers with:
 *
 *     {"error":{"code":"not_found","message":"no profile 'p_123'"}}
 *
 * Nothing here knows about tenants' data: handlers (in the server module) get a request, read its
 * parameters, body and principal, and answer with one http_reply_* call.
 *
 * Threads: the server runs libmicrohttpd's internal epoll loops on a pool of threads; a
 * connection (and so each of its requests) belongs to one of them. A handler runs on that thread.
 * Work that must run elsewhere (analysis on the inference workers) uses the async path: the
 * handler calls http_req_defer() and returns; any thread later fills the reply and calls
 * http_req_resume(), and the network thread sends it. The network threads never block on it.
 *
 * Request flow, in order (each step may answer at once, before the body is read):
 *   request line: too many query parameters (400, written to the socket)
 *   -> framing and Host (400 + close)  ->  route (404 / 405 + Allow)  ->  auth (401 / 403)
 *   -> Content-Length > limit (413)  ->  body budget (503 + close)
 *   -> body accumulated (chunked bodies checked while streaming: 413)  ->  handler.
 * The request head as a whole has a deadline (head_deadline_ms) and one client address a
 * connection limit (max_connections_per_ip). docs/API.md lists what libmicrohttpd answers itself.
 */
#ifndef VG_HTTP_H
#define VG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "core/core.h"

#define HTTP_MAX_PARAMS 4    /* path parameters in one route */
#define HTTP_MAX_SEGMENTS 12 /* path segments in a route pattern */
#define HTTP_MAX_HEADERS 8   /* extra response headers */

typedef struct http_server http_server;
typedef struct http_router http_router;
typedef struct http_route http_route;
typedef struct http_req http_req;

/* ---- principals and auth ------------------------------------------------------------------ */

typedef enum { HTTP_ROLE_NONE = 0, HTTP_ROLE_TENANT, HTTP_ROLE_ADMIN } http_role;

/* Who a route admits. PUBLIC needs no key; TENANT needs a tenant key (an admin key is 403: admins
 * manage tenants, they do not own evidence); ADMIN needs the admin key (a tenant key is 403);
 * ANY accepts either. */
typedef enum { HTTP_AUTH_PUBLIC = 0, HTTP_AUTH_TENANT, HTTP_AUTH_ADMIN, HTTP_AUTH_ANY } http_auth;

typedef struct http_principal {
    http_role role;
    char tenant_id[VG_ID_MAX]; /* "" for admin */
    char key_id[VG_ID_MAX];    /* "admin" for the admin key */
} http_principal;

/* Looks a bearer token up: 0 and *out filled, VG_ENOTFOUND for an unknown or revoked key, other
 * codes for failures (answered 503). Called on network threads: must be thread-safe. */
typedef int (*http_auth_fn)(void *ud, const char *token, http_principal *out);

/* ---- key cache: SHA-256(key) -> principal, so auth costs no database query per request ----- */

typedef struct http_keycache http_keycache;

/* Fills *out for a key hash or answers VG_ENOTFOUND (unknown or revoked); the cache calls it on a
 * miss. Must be thread-safe. */
typedef int (*http_key_lookup_fn)(void *ud, const uint8_t hash[VG_SHA256_BYTES],
                                  http_principal *out);

/* Returns owned (free with http_keycache_free). lookup/ud are borrowed and must outlive the cache.
 * max_entries bounds memory: past it the cache starts over (keys are few; lookups refill it). */
int http_keycache_new(http_key_lookup_fn lookup, void *ud, size_t max_entries, http_keycache **out);
void http_keycache_free(http_keycache *kc);
/* Sets the admin key's hash (compared in constant time before any lookup). */
void http_keycache_set_admin(http_keycache *kc, const uint8_t hash[VG_SHA256_BYTES]);
/* An http_auth_fn: hashes the token, checks the admin hash, then the cache, then lookup. */
int http_keycache_auth(void *kc, const char *token, http_principal *out);
/* Invalidation after a revoke: one key, every key of one tenant, or everything. Thread-safe. */
void http_keycache_forget_key(http_keycache *kc, const uint8_t hash[VG_SHA256_BYTES]);
void http_keycache_forget_tenant(http_keycache *kc, const char *tenant_id);
void http_keycache_clear(http_keycache *kc);
/* Entries now cached, and lookups served from memory / sent to lookup (for tests and metrics). */
size_t http_keycache_size(http_keycache *kc);
void http_keycache_stats(http_keycache *kc, uint64_t *hits, uint64_t *misses);

/* ---- router ------------------------------------------------------------------------------- */

/* A handler answers with exactly one http_reply_* call, or defers (http_req_defer). A handler
 * that does neither is answered 500 and logged. ud is the pointer given to http_router_add. */
typedef void (*http_handler_fn)(http_req *req, void *ud);

/* Name of the threads that run handlers of large JSON bodies (HTTP_ROUTE_JSON). */
#define HTTP_JSON_WORKER_NAME "vigil-json"

/* Flags of a route. */
enum {
    HTTP_ROUTE_BODY = 1u << 0, /* reads a request body (others refuse one above 64 KiB) */
    /* with HTTP_ROUTE_BODY: the body is a JSON document, held to http_config.max_json_body_bytes
     * instead of max_body_bytes. A body over 8 KiB runs its handler on a JSON worker thread, not
     * the network thread, so such handlers must reply synchronously (never http_req_defer). */
    HTTP_ROUTE_JSON = 1u << 1,
};

/* Returns owned (free with http_router_free). Not thread-safe while routes are added; read-only
 * and shareable once the server runs. */
int http_router_new(http_router **out);
void http_router_free(http_router *r);
/* Adds a route. method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"; pattern: "/a/{id}/b",
 * literal segments or whole-segment parameters, at most HTTP_MAX_PARAMS of them (both strings
 * borrowed, static). VG_EINVAL for a bad pattern, VG_EEXIST for a duplicate method+pattern. */
int http_router_add(http_router *r, const char *method, const char *pattern, http_auth auth,
                    unsigned flags, http_handler_fn fn, void *ud);

typedef struct http_match {
    int status;              /* 200 matched, 404 no such path, 405 path without this method */
    const http_route *route; /* when 200 */
    char allow[64];          /* when 405: "GET, DELETE" */
    size_t n_params;
    const char *param_name[HTTP_MAX_PARAMS]; /* borrowed from the route (not NUL-terminated) */
    size_t param_name_len[HTTP_MAX_PARAMS];
    const char *param_value[HTTP_MAX_PARAMS]; /* point into path (not NUL-terminated) */
    size_t param_len[HTTP_MAX_PARAMS];
} http_match;

/* Matches a method and a decoded path (borrowed). HEAD matches GET routes. Never fails. */
void http_router_match(const http_router *r, const char *method, const char *path, http_match *m);

/* Route introspection (OpenAPI test, metrics labels). */
size_t http_router_count(const http_router *r);
const http_route *http_router_at(const http_router *r, size_t i);
const char *http_route_method(const http_route *rt);
const char *http_route_pattern(const http_route *rt);
http_auth http_route_auth(const http_route *rt);
unsigned http_route_flags(const http_route *rt);

/* ---- server ------------------------------------------------------------------------------- */

/* Called once per finished request on the network thread (metrics, access log). route is the
 * pattern ("/api/v1/profiles/{id}") or "unmatched"; all strings borrowed. */
typedef void (*http_observe_fn)(void *ud, const char *method, const char *route, int status,
                                uint64_t duration_ns);

typedef struct http_config {
    const char *host; /* borrowed: "127.0.0.1", "0.0.0.0", "::1", "localhost" */
    uint16_t port;    /* 0 = any free port (see http_server_port) */
    unsigned threads; /* network threads; 0 = one per CPU */
    unsigned max_connections;
    size_t max_body_bytes;
    unsigned header_timeout_ms; /* idle while waiting for a request (rounded up to seconds) */
    unsigned body_timeout_ms;   /* idle while a body is arriving */
    /* the whole body, from the end of the headers: a client trickling a byte now and then
     * never trips the idle timeout, so it gets this bound too (0 = none) */
    unsigned body_deadline_ms;
    unsigned retry_after_ms; /* Retry-After on 429/503 that set none */
    /* hardening against slow and greedy clients (0 = the default noted) */
    unsigned max_connections_per_ip; /* 0 = no per-address limit */
    /* the whole request head (request line and headers) from the connection's start or the end
     * of its previous request: a client sending a header line now and then never trips the
     * idle timeout, so the head gets a deadline too (0 = none) */
    unsigned head_deadline_ms;
    size_t max_json_body_bytes;     /* HTTP_ROUTE_JSON routes; 0 = HTTP_JSON_BODY_DEFAULT_BYTES */
    size_t max_inflight_body_bytes; /* all bodies being received together; 0 = no bound */
    unsigned max_query_params;      /* 0 = HTTP_QUERY_PARAMS_DEFAULT */
    http_auth_fn auth;              /* required for non-public routes; NULL makes them 503 */
    void *auth_ud;
    http_observe_fn observe; /* optional */
    void *observe_ud;
} http_config;

#define HTTP_JSON_BODY_DEFAULT_BYTES (256u * 1024) /* JSON bodies, when the config names none */
#define HTTP_QUERY_PARAMS_DEFAULT 64 /* query parameters, when the config names none */

/* Requests the server refused (or connections it cut) by kind, for metrics. */
typedef enum {
    HTTP_REFUSE_FRAMING = 0,   /* ambiguous body framing: duplicate Content-Length, CL + TE,
                                * a Transfer-Encoding other than "chunked" (400, closed) */
    HTTP_REFUSE_HOST,          /* HTTP/1.1 without exactly one Host (400) */
    HTTP_REFUSE_NUL,           /* %00 in the path or query (400) */
    HTTP_REFUSE_QUERY_PARAMS,  /* more query parameters than max_query_params (400) */
    HTTP_REFUSE_HEAD_DEADLINE, /* request head not complete within head_deadline_ms (cut) */
    HTTP_REFUSE_BODY_BUDGET,   /* max_inflight_body_bytes reached (503) */
    HTTP_REFUSE_BODY_LIMIT,    /* body over the route's limit (413) */
    HTTP_REFUSE_LIBMHD,        /* answered by libmicrohttpd itself (malformed request line,
                                * header or Content-Length, head too large) */
    HTTP_REFUSE_CONN_LIMIT,    /* connection refused: max_connections or the per-address limit */
    HTTP_REFUSE__COUNT
} http_refusal;

/* "framing", "host", ... (static), for metric labels. */
const char *http_refusal_name(http_refusal r);

/* Starts listening and serving. cfg is copied; router and the callbacks' ud are borrowed and must
 * outlive the server. Returns owned (close with http_server_close). VG_EIO when the address
 * cannot be bound (detail says why). */
int http_server_open(const http_config *cfg, const http_router *router, http_server **out);
/* The bound port (useful with port 0). */
uint16_t http_server_port(const http_server *s);
/* Stops accepting new connections (each is closed as soon as it is accepted; the listening
 * socket stays open until http_server_close); existing ones finish their current request and
 * close, and a request whose head arrives after this is answered 503. */
void http_server_quiesce(http_server *s);
/* Requests between their first byte and their completion (gauge). Thread-safe. */
size_t http_server_inflight(const http_server *s);
/* Refusals so far, by http_refusal (out has HTTP_REFUSE__COUNT slots). Thread-safe. */
void http_server_refusals(const http_server *s, uint64_t *out);
/* Waits until no request is in flight or grace_ms passes: VG_OK or VG_ETIMEDOUT. */
int http_server_drain(http_server *s, uint64_t grace_ms);
/* Stops the server and frees it. Every deferred request must have been resumed (the party that
 * deferred them cancels its work first); if some are still deferred the daemon is leaked rather
 * than stopped under them, and an error is logged. NULL is a no-op. */
void http_server_close(http_server *s);

/* ---- requests (valid in the handler; after http_req_defer only body, params, principal,
 *      arena and the reply functions may be used, from any one thread at a time) ------------- */

const char *http_req_method(const http_req *req);
const char *http_req_path(const http_req *req);
/* The matched route's pattern, for logs and metrics. */
const char *http_req_route(const http_req *req);
/* Path parameter by name, NUL-terminated (arena copy), or NULL. */
const char *http_req_param(const http_req *req, const char *name);
/* Query parameter (decoded) or NULL; a parameter given without value is "". Handler thread only. */
const char *http_req_query(http_req *req, const char *name);
/* Request header (case-insensitive) or NULL. Handler thread only. */
const char *http_req_header(http_req *req, const char *name);
/* The whole body (NUL-terminated past len for convenience); len 0 when none. Borrowed. */
const uint8_t *http_req_body(const http_req *req, size_t *len);
const http_principal *http_req_principal(const http_req *req);
/* Scratch memory freed when the request completes. Borrowed. */
vg_arena *http_req_arena(http_req *req);
/* vg_now_ns() when the request's headers arrived. */
uint64_t http_req_start_ns(const http_req *req);

/* ---- replies ------------------------------------------------------------------------------ */

/* JSON reply; takes ownership of body (one reference). A later reply replaces an earlier one. */
void http_reply_json(http_req *req, int status, json_t *body);
/* The error body {"error":{"code","message"}}; code NULL uses http_status_code(status). */
void http_reply_error(http_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a VG_E* code to its status and error code (see http_status_of), message from
 * vg_err_msg() when the failing call set one, else `what`. */
void http_reply_vg(http_req *req, int vg_code, const char *what);
/* Bytes (copied) with a content type (borrowed, static). */
void http_reply_data(http_req *req, int status, const char *content_type, const void *data,
                     size_t len);
/* Bytes that outlive the server (borrowed, not copied): compiled-in documents. */
void http_reply_static(http_req *req, int status, const char *content_type, const void *data,
                       size_t len);
/* Adds a response header (both copied). VG_ETOOBIG past HTTP_MAX_HEADERS. */
int http_reply_header(http_req *req, const char *name, const char *value);

/* ---- async -------------------------------------------------------------------------------- */

/* In a handler: the reply will come later, from any thread. The connection is suspended (it
 * neither times out nor reads) until http_req_resume. */
void http_req_defer(http_req *req);
/* From any thread, once, after an http_reply_* call on a deferred request: sends the reply. The
 * request must not be touched afterwards. */
void http_req_resume(http_req *req);

/* ---- errors and JSON helpers --------------------------------------------------------------- */

/* "bad_request", "unauthorized", ... for a status; "error" for unknown ones. Static. */
const char *http_status_code(int status);
/* HTTP status for a VG_E* code: EINVAL 422, ENOTFOUND 404, EEXIST/ECONFLICT 409, EFORMAT 415,
 * ETRUNC/ECORRUPT/EPIXELS/EDIM/ENOFACE 422, ETOOBIG 413, EPERM 403, EQUOTA 429,
 * EBUSY/ETIMEDOUT/EUNAVAIL/ECANCELED/ENOSPC 503, everything else 500. */
int http_status_of(int vg_code);
/* {"error":{"code":code,"message":message}}; returns owned (json_decref); NULL on OOM. */
json_t *http_error_body(const char *code, const char *message);

#define HTTP_JSON_MAX_DEPTH 32

/* Parses a request body as one JSON object. VG_EINVAL with a detail ("line 1 column 9: ...") for
 * anything else, or when nesting exceeds HTTP_JSON_MAX_DEPTH. Returns owned in *out. */
int http_json_parse_object(const uint8_t *data, size_t len, json_t **out);
/* VG_EINVAL naming the first key of obj (borrowed) not in allowed (NULL-terminated). */
int http_json_only(const json_t *obj, const char *const *allowed);
/* Field getters: absent and not required leaves *out untouched and returns 0; wrong type,
 * out of range or too long is VG_EINVAL naming the field. Strings are borrowed from obj, must be
 * valid UTF-8 without NUL (jansson guarantees) and 1..max_len bytes. */
int http_json_string(const json_t *obj, const char *key, int required, size_t max_len,
                     const char **out);
int http_json_int(const json_t *obj, const char *key, int required, int64_t min, int64_t max,
                  int64_t *out);
int http_json_bool(const json_t *obj, const char *key, int required, int *out);

/* ---- multipart/form-data ------------------------------------------------------------------- */

#define HTTP_MULTIPART_MAX_HEADER_BYTES 8192 /* header block of one part */
#define HTTP_MULTIPART_MAX_BOUNDARY 70       /* RFC 2046 */

typedef struct http_part {
    const char *name;         /* form field name (arena) */
    const char *filename;     /* or NULL (arena) */
    const char *content_type; /* or NULL (arena) */
    const uint8_t *data;      /* points into the body (borrowed) */
    size_t len;
} http_part;

/* Value of a parameter of a header value ("multipart/form-data; boundary=x" -> "x"), unquoted,
 * written to buf. VG_ENOTFOUND when absent, VG_ETOOBIG when longer than buflen-1. */
int http_header_param(const char *header, const char *param, char *buf, size_t buflen);
/* Whether a Content-Type header's media type is `type` (case-insensitive, parameters ignored). */
int http_content_type_is(const char *header, const char *type);

/* Parses a whole multipart/form-data body (borrowed; part data points into it). content_type is
 * the request's Content-Type (borrowed). Part array and strings come from arena. At most
 * max_parts parts (VG_ETOOBIG beyond); malformed input is VG_EINVAL with a detail. */
int http_multipart_parse(const uint8_t *body, size_t len, const char *content_type, vg_arena *arena,
                         size_t max_parts, http_part **parts, size_t *n_parts);
/* First part with this name, or NULL. */
const http_part *http_multipart_find(const http_part *parts, size_t n, const char *name);

#endif /* VG_HTTP_H */
