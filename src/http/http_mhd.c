/*
 * The libmicrohttpd wrapper: the only file that includes <microhttpd.h> (STYLE rule 14).
 *
 * Threads: MHD runs its internal epoll loop on a pool of threads; a connection stays on one of
 * them, and so does each of its requests (HTTP/1.1 requests on a connection are sequential).
 *
 * Memory: every TCP connection owns an arena (created at its first request, kept across its
 * keep-alive requests, reset after each one), and the request struct, its copies of method, path
 * and parameters, and handler scratch all come from it, so a request costs no malloc beyond the
 * body buffer and the response. The body buffer grows geometrically up to the route's limit and
 * is never sized from Content-Length alone (a header is cheap to send, memory is not).
 *
 * Hardening (each refusal counted by kind, see http_refusal): the first access call checks the
 * request's framing (one Content-Length or one "Transfer-Encoding: chunked", never both, one Host
 * on HTTP/1.1) before routing, so no body byte of an ambiguous request is ever read, and answers
 * 400 with "Connection: close". A watchdog thread bounds the request head (request line and
 * headers) as a whole: connections are armed when they open and after each request, disarmed at
 * the first access call, and shut down (shutdown(2) on their socket, which makes MHD close them
 * on its own thread) past head_deadline. Bodies being received reserve their bytes from one
 * server-wide budget (503 past it). Where libmicrohttpd would not let us queue a reply at all
 * (too many query parameters, a chunked body far past its limit, a Content-Length MHD refuses
 * itself), the JSON error is written to the socket directly and its write side shut down
 * (raw_reply).
 *
 * Async: a handler may defer. After it returns, the network thread suspends the connection
 * under the request's mutex, unless the reply was already resumed from another thread in the
 * meantime, in which case it is sent at once. http_req_resume flags the request under the same
 * mutex and calls MHD_resume_connection after unlocking, so the resuming thread never touches
 * the request after MHD may have completed and freed it.
 */
#include "http/http_int.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_NOBODY_MAX_BYTES (64u * 1024) /* routes without HTTP_ROUTE_BODY */
/* public routes without HTTP_ROUTE_BODY: nobody has shown a key, so a connection may not park
 * more than this in our memory */
#define HTTP_PUBLIC_BODY_MAX_BYTES 1024u
#define HTTP_WATCHDOG_TICK_MS 100     /* how often the head watchdog looks (its resolution) */
#define HTTP_RAW_REPLY_MAX_BYTES 1024 /* a reply written straight to the socket */
#define HTTP_BODY_INITIAL_BYTES (64u * 1024) /* first body buffer, grown from there */
#define HTTP_BODY_PREALLOC_MAX (1u << 20)    /* most we trust Content-Length up front */
#define HTTP_CONN_ARENA_BYTES (8u * 1024)    /* per-connection arena block */
#define HTTP_TOKEN_MAX_BYTES 512             /* bearer tokens longer than this are 401 */
#define HTTP_LISTEN_BACKLOG 4096
/* libmicrohttpd's per-connection pool (request line, headers, read buffer). Its default, 32 KiB,
 * is touched in full and cost ~38 KiB RSS per idle keep-alive connection (459 MB at 12,000);
 * 16 KiB still holds any sane header block and halves that. */
#define HTTP_CONN_MEMORY_BYTES (16u * 1024)
#define HTTP_DRAIN_POLL_MS 5
/* JSON bodies up to this size are parsed on the network thread (microseconds); larger ones go to
 * the JSON workers, so a client posting bodies at --max-json-body-bytes (~20 ms of parsing each
 * at 256 KiB) cannot hold the network threads that every other connection needs. */
#define HTTP_INLINE_JSON_MAX_BYTES (8u * 1024)
#define HTTP_JSON_WORKERS 2

typedef struct http_server_cfg {
    http_config c;
    char host[256];
} http_server_cfg;

struct http_server {
    struct MHD_Daemon *d;
    http_server_cfg cfg;
    const http_router *router;
    uint16_t port;
    unsigned header_timeout_s, body_timeout_s;
    uint64_t body_deadline_ns; /* 0 = none */
    char retry_after[24];
    _Atomic size_t inflight;
    _Atomic size_t deferred;
    _Atomic int quiescing;
    size_t json_limit;  /* HTTP_ROUTE_JSON bodies */
    size_t body_budget; /* all bodies together; 0 = none */
    _Atomic size_t body_reserved;
    unsigned max_query_params;
    uint64_t head_deadline_ns; /* 0 = no watchdog */
    _Atomic uint64_t refused[HTTP_REFUSE__COUNT];
    /* head watchdog: armed connections, under wd_mu */
    pthread_mutex_t wd_mu;
    pthread_cond_t wd_cv;
    struct http_conn *wd_head;
    pthread_t wd_thread;
    int wd_running, wd_stop;
    /* JSON workers: requests with large JSON bodies, handed over by run_handler, under jw_mu */
    pthread_mutex_t jw_mu;
    pthread_cond_t jw_cv;
    struct http_req *jw_head, *jw_tail;
    pthread_t jw_thread[HTTP_JSON_WORKERS];
    unsigned jw_running;
    int jw_stop;
};

/* Per TCP connection; owned by the connection's network thread, except the wd_* fields and
 * head_expired, which belong to srv->wd_mu. */
typedef struct http_conn {
    vg_arena *arena;
    int fd;
    struct http_conn *wd_prev, *wd_next;
    int wd_linked;
    uint64_t head_start_ns;
    int head_expired; /* the watchdog shut the socket down */
    int url_nul;      /* the current request's URL has %00 (set at its request line) */
    int refused;      /* answered with raw_reply: drop the connection at the next call */
} http_conn;

typedef enum {
    REQ_RECEIVING = 0, /* headers seen, body (if any) arriving */
    REQ_DEFERRED,      /* handler deferred; waiting for http_req_resume */
    REQ_QUEUED,        /* response handed to MHD */
} req_state;

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    vg_arena *arena;
    int own_arena; /* no connection context (should not happen): arena freed with the request */
    const char *method;
    const char *path;
    const http_route *route;
    const char *route_name;
    size_t n_params;
    const char *pname[HTTP_MAX_PARAMS];
    const char *pvalue[HTTP_MAX_PARAMS];
    http_principal principal;
    uint64_t start_ns;
    req_state state;
    /* body */
    size_t limit;
    uint8_t *body;
    size_t body_len, body_cap;
    int overflow;
    int budget_fail;          /* the body budget ran out while a chunked body arrived */
    int raw_answered;         /* a 413 went out with raw_reply; the rest is discarded */
    int close;                /* reply with "Connection: close" */
    int late;                 /* its head completed after shutdown began: answered 503, never run */
    struct http_req *jw_next; /* JSON worker queue link (srv->jw_mu) */
    size_t declared;          /* Content-Length, 0 when none */
    size_t reserved;          /* bytes held in srv->body_reserved */
    size_t discarded;
    int body_timeout_set;
    /* async */
    pthread_mutex_t mu;
    int deferred, suspended, resumed;
    /* reply */
    int has_reply;
    int status;
    const char *ctype;
    char *resp;
    size_t resp_len;
    void (*resp_free)(void *);
    size_t n_hdr;
    const char *hdr_name[HTTP_MAX_HEADERS];
    const char *hdr_value[HTTP_MAX_HEADERS];
    int sent_status;
};

/* ---- replies -------------------------------------------------------------------------------- */

static void reply_reset(http_req *req)
{
    if (req->resp && req->resp_free)
        req->resp_free(req->resp);
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_free = NULL;
}

static void jansson_free(void *p)
{
    json_free_t f;
    json_get_alloc_funcs(NULL, &f);
    f(p);
}

void http_reply_json(http_req *req, int status, json_t *body)
{
    reply_reset(req);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        req->status = 500;
        req->resp = (char *)oom;
        req->resp_len = sizeof(oom) - 1;
        req->ctype = "application/json";
        req->has_reply = 1;
        return;
    }
    req->status = status;
    req->resp = text;
    req->resp_len = strlen(text);
    req->resp_free = jansson_free;
    req->ctype = "application/json";
    req->has_reply = 1;
}

void http_reply_error(http_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_json(req, status, http_error_body(code ? code : http_status_code(status), msg));
}

void http_reply_vg(http_req *req, int vg_code, const char *what)
{
    int status = http_status_of(vg_code);
    const char *msg = vg_err_msg();
    /* vg_err_msg falls back to the generic text of the last code; prefer the caller's words
     * unless a detail is present. */
    if (!msg || !*msg || strcmp(msg, vg_strerror(vg_code)) == 0 || strcmp(msg, "ok") == 0)
        msg = what ? what : vg_strerror(vg_code);
    if (status == 500)
        VG_ERROR("http", "%s %s: %s (%s)", req->method, req->path, msg, vg_errname(vg_code));
    const char *code = NULL;
    switch (vg_code) {
    case VG_EINVAL:
        code = "invalid_field";
        break;
    case VG_ENOFACE:
        code = "no_face";
        break;
    case VG_ETRUNC:
    case VG_ECORRUPT:
    case VG_EPIXELS:
    case VG_EDIM:
        code = "undecodable_image";
        break;
    case VG_EFORMAT:
        code = "unsupported_media_type";
        break;
    default:
        break;
    }
    /* Internal failures keep their details in the log, not in the answer. */
    http_reply_error(req, status, code, "%s", status == 500 ? "internal error" : msg);
}

void http_reply_data(http_req *req, int status, const char *content_type, const void *data,
                     size_t len)
{
    reply_reset(req);
    char *copy = vg_malloc(len ? len : 1);
    if (!copy) {
        http_reply_json(req, 500, NULL);
        return;
    }
    if (len)
        memcpy(copy, data, len);
    req->status = status;
    req->resp = copy;
    req->resp_len = len;
    req->resp_free = vg_free;
    req->ctype = content_type;
    req->has_reply = 1;
}

void http_reply_static(http_req *req, int status, const char *content_type, const void *data,
                       size_t len)
{
    reply_reset(req);
    req->status = status;
    req->resp = (char *)data;
    req->resp_len = len;
    req->ctype = content_type;
    req->has_reply = 1;
}

int http_reply_header(http_req *req, const char *name, const char *value)
{
    if (req->n_hdr >= HTTP_MAX_HEADERS)
        return vg_err_set(VG_ETOOBIG, "more than %d response headers", HTTP_MAX_HEADERS);
    char *n = vg_arena_strdup(req->arena, name);
    char *v = vg_arena_strdup(req->arena, value);
    if (!n || !v)
        return VG_ENOMEM;
    req->hdr_name[req->n_hdr] = n;
    req->hdr_value[req->n_hdr] = v;
    req->n_hdr++;
    return VG_OK;
}

static int has_header(const http_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_hdr; i++)
        if (strcasecmp(req->hdr_name[i], name) == 0)
            return 1;
    return 0;
}

/* Hands the reply to MHD. */
static enum MHD_Result send_reply(http_req *req)
{
    if (!req->has_reply) {
        VG_ERROR("http", "%s %s: handler returned without a reply", req->method, req->path);
        http_reply_error(req, 500, "internal", "internal error");
    }
    struct MHD_Response *r;
    if (req->resp_free) {
        r = MHD_create_response_from_buffer_with_free_callback(req->resp_len, req->resp,
                                                               req->resp_free);
        if (r) {
            req->resp = NULL; /* MHD owns it now */
            req->resp_free = NULL;
        }
    } else {
        r = MHD_create_response_from_buffer(req->resp_len, req->resp, MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, req->ctype);
    for (size_t i = 0; i < req->n_hdr; i++)
        MHD_add_response_header(r, req->hdr_name[i], req->hdr_value[i]);
    if ((req->status == 429 || req->status == 503) && !has_header(req, "Retry-After"))
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, req->srv->retry_after);
    if (req->close || atomic_load(&req->srv->quiescing))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)req->status, r);
    MHD_destroy_response(r);
    req->state = REQ_QUEUED;
    req->sent_status = req->status;
    return ret;
}

/* The connection whose request line this network thread parsed last, and whether the MHD error
 * being logged on it was answered already. libmicrohttpd's logger has no connection argument, and
 * it is the only callback between the end of the headers and MHD's own refusal of a bad
 * Content-Length (see mhd_bad_length); a thread-local is the only link, since each connection
 * is served by one network thread. Cleared when that connection closes. */
static _Thread_local struct MHD_Connection *tl_conn;
static _Thread_local int tl_answered;

/* ---- refusals ------------------------------------------------------------------------------- */

static const char *const refusal_names[HTTP_REFUSE__COUNT] = {
    "framing",     "host",       "nul",    "query_params",     "head_deadline",
    "body_budget", "body_limit", "libmhd", "connection_limit",
};

const char *http_refusal_name(http_refusal r)
{
    return (unsigned)r < HTTP_REFUSE__COUNT ? refusal_names[r] : "unknown";
}

void http_server_refusals(const http_server *s, uint64_t *out)
{
    for (size_t i = 0; i < HTTP_REFUSE__COUNT; i++)
        out[i] = atomic_load(&s->refused[i]);
}

static void refuse(http_server *s, http_refusal r)
{
    atomic_fetch_add(&s->refused[r], 1);
}

/* Writes a whole JSON error reply straight to the socket and shuts its write side, for the cases
 * where libmicrohttpd has no place for a reply of ours (it is parsing the request line, or the
 * body is still arriving). Only on the connection's own thread, and only while MHD is not
 * sending anything on it (it sends nothing before a request is complete). The socket is
 * non-blocking and the reply small, so it fits the send buffer of any sane socket; if it does
 * not, the client gets a cut reply, then the close. */
static void raw_reply(int fd, int status, const char *code, const char *msg)
{
    if (fd < 0)
        return;
    char body[HTTP_RAW_REPLY_MAX_BYTES / 2];
    json_t *j = http_error_body(code ? code : http_status_code(status), msg);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    snprintf(body, sizeof(body), "%s", text ? text : "{}");
    if (text)
        jansson_free(text);
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    char buf[HTTP_RAW_REPLY_MAX_BYTES];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason && *reason ? reason : "Error", strlen(body), body);
    if (n > 0 && (size_t)n < sizeof(buf))
        (void)!send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
}

/* ---- head watchdog ------------------------------------------------------------------------- */

static void wd_unlink(http_server *s, http_conn *hc)
{
    if (!hc->wd_linked)
        return;
    if (hc->wd_prev)
        hc->wd_prev->wd_next = hc->wd_next;
    else
        s->wd_head = hc->wd_next;
    if (hc->wd_next)
        hc->wd_next->wd_prev = hc->wd_prev;
    hc->wd_prev = hc->wd_next = NULL;
    hc->wd_linked = 0;
}

/* A request head is due on hc from now on. Network thread of hc. */
static void wd_arm(http_server *s, http_conn *hc)
{
    if (!s->head_deadline_ns || !hc)
        return;
    pthread_mutex_lock(&s->wd_mu);
    hc->head_start_ns = vg_now_ns();
    if (!hc->wd_linked && !hc->head_expired) {
        hc->wd_next = s->wd_head;
        hc->wd_prev = NULL;
        if (s->wd_head)
            s->wd_head->wd_prev = hc;
        s->wd_head = hc;
        hc->wd_linked = 1;
    }
    pthread_mutex_unlock(&s->wd_mu);
}

/* The head arrived (or the connection closes). Returns whether the watchdog already cut it. */
static int wd_disarm(http_server *s, http_conn *hc)
{
    if (!s->head_deadline_ns || !hc)
        return 0;
    pthread_mutex_lock(&s->wd_mu);
    wd_unlink(s, hc);
    int expired = hc->head_expired;
    pthread_mutex_unlock(&s->wd_mu);
    return expired;
}

static void *wd_main(void *arg)
{
    http_server *s = arg;
    pthread_mutex_lock(&s->wd_mu);
    while (!s->wd_stop) {
        uint64_t now = vg_now_ns();
        for (http_conn *hc = s->wd_head, *next; hc; hc = next) {
            next = hc->wd_next;
            if (now - hc->head_start_ns <= s->head_deadline_ns)
                continue;
            /* The connection cannot be freed meanwhile: its CLOSED notification disarms it
             * under this mutex before MHD closes the socket. Counted before the cut, so that
             * whoever sees the connection close also sees the count. */
            refuse(s, HTTP_REFUSE_HEAD_DEADLINE);
            hc->head_expired = 1;
            wd_unlink(s, hc);
            shutdown(hc->fd, SHUT_RDWR);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)HTTP_WATCHDOG_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wd_cv, &s->wd_mu, &ts);
    }
    pthread_mutex_unlock(&s->wd_mu);
    return NULL;
}

/* ---- body budget ----------------------------------------------------------------------------- */

/* Raises the request's share of the server-wide body budget to `total` bytes. 0 or VG_EBUSY. */
static int budget_reserve(http_req *req, size_t total)
{
    http_server *s = req->srv;
    if (!s->body_budget || total <= req->reserved)
        return VG_OK;
    size_t add = total - req->reserved;
    size_t prev = atomic_fetch_add(&s->body_reserved, add);
    if (prev + add > s->body_budget || prev + add < prev) {
        atomic_fetch_sub(&s->body_reserved, add);
        return VG_EBUSY;
    }
    req->reserved = total;
    return VG_OK;
}

static void budget_release(http_req *req)
{
    if (req->reserved)
        atomic_fetch_sub(&req->srv->body_reserved, req->reserved);
    req->reserved = 0;
}

/* ---- request accessors ---------------------------------------------------------------------- */

const char *http_req_method(const http_req *req)
{
    return req->method;
}

const char *http_req_path(const http_req *req)
{
    return req->path;
}

const char *http_req_route(const http_req *req)
{
    return req->route_name;
}

const char *http_req_param(const http_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_params; i++)
        if (strcmp(req->pname[i], name) == 0)
            return req->pvalue[i];
    return NULL;
}

const char *http_req_query(http_req *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (v)
        return v;
    /* "?flag" without "=" is present with a NULL value in MHD; report it as "". */
    const char *key = NULL;
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
                                      NULL) == MHD_YES)
        key = "";
    return key;
}

const char *http_req_header(http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const uint8_t *http_req_body(const http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : (const uint8_t *)"";
}

const http_principal *http_req_principal(const http_req *req)
{
    return &req->principal;
}

vg_arena *http_req_arena(http_req *req)
{
    return req->arena;
}

uint64_t http_req_start_ns(const http_req *req)
{
    return req->start_ns;
}

/* ---- async ---------------------------------------------------------------------------------- */

void http_req_defer(http_req *req)
{
    pthread_mutex_lock(&req->mu);
    if (!req->deferred) {
        req->deferred = 1;
        atomic_fetch_add(&req->srv->deferred, 1);
    }
    pthread_mutex_unlock(&req->mu);
}

void http_req_resume(http_req *req)
{
    http_server *srv = req->srv;
    struct MHD_Connection *conn = req->conn;
    pthread_mutex_lock(&req->mu);
    req->resumed = 1;
    int suspended = req->suspended;
    pthread_mutex_unlock(&req->mu);
    /* From here on req may be completed and freed by the network thread. */
    atomic_fetch_sub(&srv->deferred, 1);
    if (suspended)
        MHD_resume_connection(conn);
}

/* ---- request lifecycle ---------------------------------------------------------------------- */

static char *arena_strndup(vg_arena *a, const char *s, size_t n)
{
    char *p = vg_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static http_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (http_conn *)ci->socket_context : NULL;
}

static http_req *req_begin(http_server *s, struct MHD_Connection *conn, const char *url,
                           const char *method)
{
    http_conn *hc = conn_of(conn);
    vg_arena *arena;
    int own = 0;
    if (hc) {
        if (!hc->arena)
            hc->arena = vg_arena_new(HTTP_CONN_ARENA_BYTES);
        arena = hc->arena;
    } else {
        arena = vg_arena_new(HTTP_CONN_ARENA_BYTES);
        own = 1;
    }
    if (!arena)
        return NULL;
    http_req *req = vg_arena_alloc(arena, sizeof(*req));
    if (!req) {
        if (own)
            vg_arena_free(arena);
        return NULL;
    }
    memset(req, 0, sizeof(*req));
    req->srv = s;
    req->conn = conn;
    req->arena = arena;
    req->own_arena = own;
    req->start_ns = vg_now_ns();
    req->late = atomic_load(&s->quiescing);
    req->method = vg_arena_strdup(arena, method);
    req->path = vg_arena_strdup(arena, url);
    req->route_name = "unmatched";
    pthread_mutex_init(&req->mu, NULL);
    atomic_fetch_add(&s->inflight, 1);
    if (!req->method || !req->path) {
        req->method = req->method ? req->method : "?";
        req->path = req->path ? req->path : "?";
        http_reply_error(req, 500, "internal", "out of memory");
    }
    return req;
}

static void req_end(http_req *req)
{
    http_server *s = req->srv;
    reply_reset(req);
    vg_free(req->body);
    req->body = NULL;
    budget_release(req);
    pthread_mutex_destroy(&req->mu);
    vg_arena *a = req->arena;
    int own = req->own_arena;
    atomic_fetch_sub(&s->inflight, 1);
    if (own)
        vg_arena_free(a);
    else
        vg_arena_reset(a);
}

static int ci_prefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Authenticates per the route; returns 1 when a reply (401/403/503) was set. */
static int check_auth(http_req *req)
{
    http_auth need = http_route_auth(req->route);
    if (need == HTTP_AUTH_PUBLIC)
        return 0;
    http_server *s = req->srv;
    const char *h =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || !ci_prefix(h, "Bearer ")) {
        http_reply_header(req, "WWW-Authenticate", "Bearer");
        http_reply_error(req, 401, NULL, "missing 'Authorization: Bearer <key>' header");
        return 1;
    }
    const char *token = h + 7;
    while (*token == ' ' || *token == '\t')
        token++;
    size_t tl = strlen(token);
    while (tl && (token[tl - 1] == ' ' || token[tl - 1] == '\t')) /* OWS, RFC 9110 5.5 */
        tl--;
    /* token68 (RFC 9110 11.2): a key is never anything else, so a control byte or a space
     * inside is refused rather than looked up */
    int bad = 0;
    for (size_t i = 0; i < tl && !bad; i++) {
        unsigned char c = (unsigned char)token[i];
        bad = !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=');
    }
    if (tl == 0 || tl > HTTP_TOKEN_MAX_BYTES || bad) {
        http_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_reply_error(req, 401, NULL, "invalid API key");
        return 1;
    }
    if (!s->cfg.c.auth) {
        http_reply_error(req, 503, NULL, "authentication is not available");
        return 1;
    }
    char *tok = arena_strndup(req->arena, token, tl);
    if (!tok) {
        http_reply_error(req, 503, NULL, "out of memory");
        return 1;
    }
    vg_err_clear();
    int rc = s->cfg.c.auth(s->cfg.c.auth_ud, tok, &req->principal);
    if (rc == VG_ENOTFOUND) {
        memset(&req->principal, 0, sizeof(req->principal));
        http_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_reply_error(req, 401, NULL, "unknown or revoked API key");
        return 1;
    }
    if (rc != VG_OK) {
        memset(&req->principal, 0, sizeof(req->principal));
        VG_WARN_LIMITED("http", "auth lookup failed: %s", vg_err_msg());
        http_reply_error(req, 503, NULL, "authentication is temporarily unavailable");
        return 1;
    }
    http_role role = req->principal.role;
    if ((need == HTTP_AUTH_ADMIN && role != HTTP_ROLE_ADMIN) ||
        (need == HTTP_AUTH_TENANT && role != HTTP_ROLE_TENANT) ||
        (need == HTTP_AUTH_ANY && role == HTTP_ROLE_NONE)) {
        http_reply_error(req, 403, NULL, "%s",
                         need == HTTP_AUTH_ADMIN ? "this route needs the admin key"
                                                 : "this route needs a tenant key");
        return 1;
    }
    return 0;
}

typedef struct head_counts {
    unsigned host, cl, te;
    const char *cl_value, *te_value;
} head_counts;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    head_counts *h = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        h->host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        h->cl++;
        h->cl_value = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->te++;
        h->te_value = value;
    }
    return MHD_YES;
}

static int refuse_reply(http_req *req, http_refusal r, const char *msg)
{
    refuse(req->srv, r);
    req->close = 1;
    http_reply_error(req, 400, NULL, "%s", msg);
    return 1;
}

/* The request's framing and Host, before anything else (RFC 9112 6.1-6.3, 3.2): a request whose
 * body length two parties could read differently is refused, never guessed at, and the
 * connection closed, since what follows it on the wire cannot be trusted to be a request.
 * Returns 1 when a reply is ready. */
static int check_head(http_req *req, const char *version, const http_conn *hc)
{
    if (hc && hc->url_nul)
        return refuse_reply(req, HTTP_REFUSE_NUL, "NUL byte (%00) in the URL");
    head_counts h = {0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &h);
    if (h.cl > 1)
        return refuse_reply(req, HTTP_REFUSE_FRAMING, "more than one Content-Length header");
    if (h.te > 1)
        return refuse_reply(req, HTTP_REFUSE_FRAMING, "more than one Transfer-Encoding header");
    if (h.cl && h.te)
        return refuse_reply(req, HTTP_REFUSE_FRAMING, "both Content-Length and Transfer-Encoding");
    /* exactly what libmicrohttpd 0.9.75 takes for chunked (it compares the whole value, no
     * whitespace trimmed); anything else it would read as a body of unknown length */
    if (h.te && strcasecmp(h.te_value, "chunked") != 0)
        return refuse_reply(req, HTTP_REFUSE_FRAMING,
                            "Transfer-Encoding other than 'chunked' is not supported");
    if (h.cl) {
        const char *v = h.cl_value;
        size_t i = 0;
        while (v[i] >= '0' && v[i] <= '9')
            i++;
        if (i == 0 || v[i])
            return refuse_reply(req, HTTP_REFUSE_FRAMING, "bad Content-Length");
    }
    /* HTTP/1.1 and the later 1.x MHD serves as 1.1 need Host (RFC 9112 3.2) */
    int v11 = version && strncmp(version, "HTTP/1.", 7) == 0 &&
              strcmp(version, MHD_HTTP_VERSION_1_0) != 0;
    if (h.host > 1 || (h.host == 0 && v11))
        return refuse_reply(req, HTTP_REFUSE_HOST, "an HTTP/1.1 request needs one Host header");
    return 0;
}

/* Route, auth and size checks on the first call; returns 1 when a reply is ready. */
static int req_precheck(http_req *req, const char *version, const http_conn *hc)
{
    if (req->has_reply)
        return 1;
    if (check_head(req, version, hc))
        return 1;
    http_server *s = req->srv;
    http_match m;
    http_router_match(s->router, req->method, req->path, &m);
    if (m.status == 404) {
        http_reply_error(req, 404, NULL, "no route for %s %s", req->method, req->path);
        return 1;
    }
    if (m.status == 405) {
        http_reply_header(req, "Allow", m.allow);
        http_reply_error(req, 405, NULL, "%s is not allowed on %s (allowed: %s)", req->method,
                         req->path, m.allow);
        return 1;
    }
    req->route = m.route;
    req->route_name = http_route_pattern(m.route);
    for (size_t i = 0; i < m.n_params; i++) {
        req->pname[i] = arena_strndup(req->arena, m.param_name[i], m.param_name_len[i]);
        req->pvalue[i] = arena_strndup(req->arena, m.param_value[i], m.param_len[i]);
        if (!req->pname[i] || !req->pvalue[i]) {
            http_reply_error(req, 500, "internal", "out of memory");
            return 1;
        }
    }
    req->n_params = m.n_params;
    if (check_auth(req))
        return 1;
    unsigned fl = http_route_flags(m.route);
    if (fl & HTTP_ROUTE_BODY)
        req->limit = (fl & HTTP_ROUTE_JSON) ? VG_MIN(s->json_limit, s->cfg.c.max_body_bytes)
                                            : s->cfg.c.max_body_bytes;
    else
        req->limit = http_route_auth(m.route) == HTTP_AUTH_PUBLIC ? HTTP_PUBLIC_BODY_MAX_BYTES
                                                                  : HTTP_NOBODY_MAX_BYTES;
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || *end) {
            http_reply_error(req, 400, NULL, "bad Content-Length");
            return 1;
        }
        if (n > req->limit) {
            refuse(s, HTTP_REFUSE_BODY_LIMIT);
            http_reply_error(req, 413, NULL, "body of %llu bytes is over the limit of %zu bytes", n,
                             req->limit);
            return 1;
        }
        req->declared = (size_t)n;
        if (budget_reserve(req, (size_t)n) != VG_OK) {
            refuse(s, HTTP_REFUSE_BODY_BUDGET);
            req->close = 1;
            http_reply_error(req, 503, NULL,
                             "the server is receiving as many request bodies as it can hold");
            return 1;
        }
        if (n > 0) {
            /* Trust the header for a first buffer, but not beyond a small bound. */
            size_t first = (size_t)VG_MIN(n, (unsigned long long)HTTP_BODY_PREALLOC_MAX);
            req->body = vg_malloc(first + 1);
            if (!req->body) {
                http_reply_error(req, 503, NULL, "out of memory for the request body");
                return 1;
            }
            req->body_cap = first;
        }
    }
    if ((cl && strcmp(cl, "0") != 0) || te) {
        if (s->body_timeout_s != s->header_timeout_s) {
            MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, s->body_timeout_s);
            req->body_timeout_set = 1;
        }
    }
    return 0;
}

/* Appends a body chunk. Returns -1 to drop the connection (a chunked body far past its limit). */
static void body_drop(http_req *req, size_t n)
{
    req->discarded = n;
    vg_free(req->body);
    req->body = NULL;
    req->body_len = req->body_cap = 0;
    budget_release(req);
}

static int req_append(http_req *req, const char *data, size_t n)
{
    if (req->overflow || req->budget_fail) {
        /* Keep reading (and dropping) so the client sees the answer rather than a reset. Past
         * another limit's worth the 413 goes out at once on the socket (MHD takes no reply while
         * a body arrives); past two more, the connection is dropped. */
        req->discarded += n;
        if (req->overflow && !req->raw_answered && req->discarded > req->limit) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            char msg[96];
            snprintf(msg, sizeof(msg), "body is over the limit of %zu bytes", req->limit);
            raw_reply(ci ? ci->connect_fd : -1, 413, NULL, msg);
            req->raw_answered = 1;
            req->sent_status = 413;
        }
        return req->discarded / 3 > req->limit ? -1 : 0;
    }
    size_t need;
    if (vg_add_size(req->body_len, n, &need) != VG_OK || need > req->limit) {
        refuse(req->srv, HTTP_REFUSE_BODY_LIMIT);
        req->overflow = 1;
        body_drop(req, n);
        return 0;
    }
    if (need > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : HTTP_BODY_INITIAL_BYTES;
        while (cap < need)
            cap = cap > req->limit / 2 ? req->limit : cap * 2;
        if (req->declared && cap > req->declared) /* MHD never passes more than declared */
            cap = VG_MAX(req->declared, need);
        if (budget_reserve(req, cap) != VG_OK) {
            refuse(req->srv, HTTP_REFUSE_BODY_BUDGET);
            req->budget_fail = 1;
            body_drop(req, n);
            return 0;
        }
        uint8_t *nb = vg_realloc(req->body, cap + 1);
        if (!nb)
            return -1;
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len = need;
    req->body[need] = 0;
    return 0;
}

/* A JSON worker: runs the handler of each queued request (JSON routes reply synchronously; see
 * HTTP_ROUTE_JSON in http.h), then resumes it so its network thread sends the reply. */
static void *jw_main(void *arg)
{
    http_server *s = arg;
    pthread_setname_np(pthread_self(), HTTP_JSON_WORKER_NAME); /* for top -H, gdb, tests */
    pthread_mutex_lock(&s->jw_mu);
    for (;;) {
        while (!s->jw_head && !s->jw_stop)
            pthread_cond_wait(&s->jw_cv, &s->jw_mu);
        if (!s->jw_head)
            break; /* stopping, and nothing left */
        http_req *req = s->jw_head;
        s->jw_head = req->jw_next;
        if (!s->jw_head)
            s->jw_tail = NULL;
        pthread_mutex_unlock(&s->jw_mu);
        http__route_call(req->route, req);
        http_req_resume(req);
        pthread_mutex_lock(&s->jw_mu);
    }
    pthread_mutex_unlock(&s->jw_mu);
    return NULL;
}

/* Hands req to the JSON workers; 0 when queued (the request is deferred), -1 when there are none.
 */
static int jw_submit(http_req *req)
{
    http_server *s = req->srv;
    if (!s->jw_running)
        return -1;
    http_req_defer(req);
    req->jw_next = NULL;
    pthread_mutex_lock(&s->jw_mu);
    if (s->jw_tail)
        s->jw_tail->jw_next = req;
    else
        s->jw_head = req;
    s->jw_tail = req;
    pthread_cond_signal(&s->jw_cv);
    pthread_mutex_unlock(&s->jw_mu);
    return 0;
}

static enum MHD_Result run_handler(http_req *req)
{
    if (req->body)
        req->body[req->body_len] = 0;
    if (req->late) {
        /* A request whose head arrived on a kept-alive connection after shutdown began is not
         * started: what the handlers use (analysis, store) is torn down once the requests in
         * flight at SIGTERM are answered, and the client can retry elsewhere at once. */
        req->close = 1;
        http_reply_error(req, 503, NULL, "server shutting down");
        return send_reply(req);
    }
    if (!((http_route_flags(req->route) & HTTP_ROUTE_JSON) &&
          req->body_len > HTTP_INLINE_JSON_MAX_BYTES && jw_submit(req) == 0))
        http__route_call(req->route, req);
    pthread_mutex_lock(&req->mu);
    if (req->deferred && !req->resumed) {
        req->state = REQ_DEFERRED;
        req->suspended = 1;
        MHD_suspend_connection(req->conn);
        pthread_mutex_unlock(&req->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&req->mu);
    return send_reply(req);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_req *req = *con_cls;
    if (!req) {
        http_conn *hc = conn_of(conn);
        if (wd_disarm(s, hc) || (hc && hc->refused))
            return MHD_NO; /* already cut or answered on the socket */
        req = req_begin(s, conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        if (req_precheck(req, version, hc))
            return send_reply(req);
        return MHD_YES;
    }
    switch (req->state) {
    case REQ_RECEIVING:
        if (*upload_data_size && s->body_deadline_ns &&
            vg_now_ns() - req->start_ns > s->body_deadline_ns) {
            /* Dropped, not answered: a client this slow would take as long to read a reply. */
            VG_INFO_LIMITED("http", "%s %s: body still arriving after %llu ms, connection closed",
                            req->method, req->path,
                            (unsigned long long)(s->body_deadline_ns / 1000000u));
            return MHD_NO;
        }
        if (*upload_data_size) {
            int rc = req_append(req, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return rc == 0 ? MHD_YES : MHD_NO;
        }
        if (req->raw_answered)
            return MHD_NO; /* the 413 went out on the socket already */
        if (req->overflow) {
            http_reply_error(req, 413, NULL, "body is over the limit of %zu bytes", req->limit);
            return send_reply(req);
        }
        if (req->budget_fail) {
            req->close = 1;
            http_reply_error(req, 503, NULL,
                             "the server is receiving as many request bodies as it can hold");
            return send_reply(req);
        }
        return run_handler(req);
    case REQ_DEFERRED:
        return send_reply(req);
    case REQ_QUEUED:
    default:
        *upload_data_size = 0;
        return MHD_YES;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_req *req = *con_cls;
    /* the next request's head is due from now (keep-alive) */
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        wd_arm(s, conn_of(conn));
    if (!req)
        return;
    *con_cls = NULL;
    uint64_t ns = vg_now_ns() - req->start_ns;
    int status = req->state == REQ_QUEUED || req->raw_answered ? req->sent_status : 0;
    if (s->cfg.c.observe)
        s->cfg.c.observe(s->cfg.c.observe_ud, req->method, req->route_name, status, ns);
    if (vg_log_get_level() <= VG_LOG_DEBUG)
        VG_DEBUG("http", "%s %s %d %.3f ms%s", req->method, req->path, status, (double)ns / 1e6,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    if (req->body_timeout_set)
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, s->header_timeout_s);
    req_end(req);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        http_conn *hc = vg_calloc(1, sizeof(http_conn)); /* NULL: requests use own arenas */
        *socket_context = hc;
        if (hc) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            hc->fd = ci ? ci->connect_fd : -1;
            if (hc->fd >= 0)
                wd_arm(s, hc);
        }
        return;
    }
    if (tl_conn == conn)
        tl_conn = NULL;
    http_conn *hc = *socket_context;
    if (hc) {
        wd_disarm(s, hc); /* before MHD closes the socket the watchdog may shut down */
        vg_arena_free(hc->arena);
        vg_free(hc);
        *socket_context = NULL;
    }
}

/* At the request line, before MHD parses the query or reads a header: the only hook there is.
 * Refuses what MHD 0.9.75 cannot be trusted with: more query parameters than the limit (each
 * costs MHD pool memory, and running out there left the request unanswered until the idle
 * timeout) are answered on the socket; %00 (a NUL that would silently cut a path id or value
 * short) is flagged and answered at the first access call. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *s = cls;
    http_conn *hc = conn_of(conn);
    tl_conn = conn;
    tl_answered = 0;
    if (!hc || !uri)
        return NULL;
    hc->url_nul = strstr(uri, "%00") != NULL;
    const char *q = strchr(uri, '?');
    if (q && q[1]) {
        unsigned n = 1;
        for (const char *p = q + 1; *p; p++)
            n += *p == '&';
        if (n > s->max_query_params) {
            char msg[96];
            snprintf(msg, sizeof(msg), "more than %u query parameters", s->max_query_params);
            refuse(s, HTTP_REFUSE_QUERY_PARAMS);
            raw_reply(hc->fd, 400, NULL, msg);
            hc->refused = 1;
        }
    }
    return NULL;
}

/* libmicrohttpd 0.9.75 answers a Content-Length it cannot parse itself, before any access call,
 * and sends its status line and headers twice (parse_connection_headers queues the error, then
 * the state machine builds the header block again; fixed in 1.0.0). It logs the refusal first,
 * on the connection's thread: if the connection whose request line this thread parsed last has
 * such a Content-Length, our JSON answer goes out on the socket before MHD's, whose send then
 * fails on the shut write side. A thread that has since parsed another connection's request
 * line finds that one's headers unparsed (no Content-Length) and leaves MHD's answer alone. */
static void mhd_bad_length(http_server *s)
{
    struct MHD_Connection *conn = tl_conn;
    if (!conn)
        return;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    http_conn *hc = conn_of(conn);
    if (!cl || !hc)
        return;
    size_t i = 0;
    while (cl[i] >= '0' && cl[i] <= '9')
        i++;
    int too_large = 0;
    if (i > 0 && !cl[i]) {
        errno = 0;
        (void)strtoull(cl, NULL, 10);
        if (errno != ERANGE)
            return; /* a valid length: not the request MHD is refusing */
        too_large = 1;
    }
    refuse(s, too_large ? HTTP_REFUSE_BODY_LIMIT : HTTP_REFUSE_FRAMING);
    raw_reply(hc->fd, too_large ? 413 : 400, NULL,
              too_large ? "Content-Length does not fit 64 bits" : "bad Content-Length");
    hc->refused = 1;
    tl_answered = 1;
    tl_conn = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    http_server *s = cls;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* MHD's own refusals have no hook but this line (see docs/API.md for which they are) */
    if (strstr(buf, "Content-Length' header"))
        mhd_bad_length(s);
    else if (strstr(buf, "Error processing request") && !tl_answered)
        refuse(s, HTTP_REFUSE_LIBMHD);
    else if (strstr(buf, "reached connection limit"))
        refuse(s, HTTP_REFUSE_CONN_LIMIT);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    VG_WARN_LIMITED("http", "libmicrohttpd: %s", buf);
}

/* ---- server --------------------------------------------------------------------------------- */

static unsigned ms_to_s(unsigned ms)
{
    return ms == 0 ? 0 : (ms + 999) / 1000;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, int *v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *v6 = 0;
        return VG_OK;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *v6 = 1;
        return VG_OK;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return vg_err_set(VG_EINVAL, "cannot resolve listen host '%s': %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    if (*v6)
        a6->sin6_port = htons(port);
    else
        a4->sin_port = htons(port);
    freeaddrinfo(res);
    return VG_OK;
}

/* Stops the watchdog and frees s (its daemon stopped or never started). */
static void server_free(http_server *s)
{
    if (s->wd_running) {
        pthread_mutex_lock(&s->wd_mu);
        s->wd_stop = 1;
        pthread_cond_signal(&s->wd_cv);
        pthread_mutex_unlock(&s->wd_mu);
        pthread_join(s->wd_thread, NULL);
    }
    pthread_mutex_destroy(&s->wd_mu);
    pthread_cond_destroy(&s->wd_cv);
    pthread_mutex_lock(&s->jw_mu);
    s->jw_stop = 1;
    pthread_cond_broadcast(&s->jw_cv);
    pthread_mutex_unlock(&s->jw_mu);
    for (unsigned i = 0; i < s->jw_running; i++)
        pthread_join(s->jw_thread[i], NULL);
    pthread_mutex_destroy(&s->jw_mu);
    pthread_cond_destroy(&s->jw_cv);
    vg_free(s);
}

/* MHD's accept policy: once shutdown began, a new connection is closed as soon as it is
 * accepted. This replaces MHD_quiesce_daemon, which in 0.9.75 races its own epoll worker threads
 * for the removal of the listening socket from their epoll sets and aborts the process
 * (MHD_PANIC "Failed to remove listen FD from epoll set" on ENOENT; seen in 1 of 5 ASan
 * it_server runs, about one shutdown in 65). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    http_server *s = cls;
    return atomic_load(&s->quiescing) ? MHD_NO : MHD_YES;
}

int http_server_open(const http_config *cfg, const http_router *router, http_server **out)
{
    if (!cfg || !router || !cfg->host)
        return vg_err_set(VG_EINVAL, "http_server_open: missing config or router");
    http_server *s = vg_calloc(1, sizeof(*s));
    if (!s)
        return VG_ENOMEM;
    s->cfg.c = *cfg;
    snprintf(s->cfg.host, sizeof(s->cfg.host), "%s", cfg->host);
    s->cfg.c.host = s->cfg.host;
    s->router = router;
    if (s->cfg.c.max_body_bytes == 0)
        s->cfg.c.max_body_bytes = HTTP_NOBODY_MAX_BYTES;
    s->header_timeout_s = ms_to_s(cfg->header_timeout_ms);
    s->body_timeout_s = ms_to_s(cfg->body_timeout_ms);
    s->body_deadline_ns = (uint64_t)cfg->body_deadline_ms * 1000000u;
    if (s->body_timeout_s == 0)
        s->body_timeout_s = s->header_timeout_s;
    s->json_limit =
        cfg->max_json_body_bytes ? cfg->max_json_body_bytes : HTTP_JSON_BODY_DEFAULT_BYTES;
    s->body_budget = cfg->max_inflight_body_bytes;
    s->max_query_params = cfg->max_query_params ? cfg->max_query_params : HTTP_QUERY_PARAMS_DEFAULT;
    s->head_deadline_ns = (uint64_t)cfg->head_deadline_ms * 1000000u;
    unsigned ra = ms_to_s(cfg->retry_after_ms);
    snprintf(s->retry_after, sizeof(s->retry_after), "%u", ra ? ra : 1);
    unsigned threads = cfg->threads ? cfg->threads : (unsigned)vg_cpu_count();

    struct sockaddr_storage ss;
    int v6 = 0;
    int rc = resolve(s->cfg.host, cfg->port, &ss, &v6);
    if (rc != VG_OK) {
        vg_free(s);
        return rc;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[16];
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    if (threads > 1)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                        cfg->max_connections ? cfg->max_connections : 1024, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->header_timeout_s, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, HTTP_LISTEN_BACKLOG, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONN_MEMORY_BYTES, NULL};
    if (cfg->max_connections_per_ip)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            cfg->max_connections_per_ip, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    pthread_mutex_init(&s->wd_mu, NULL);
    pthread_cond_init(&s->wd_cv, NULL);
    pthread_mutex_init(&s->jw_mu, NULL);
    pthread_cond_init(&s->jw_cv, NULL);
    for (unsigned i = 0; i < HTTP_JSON_WORKERS; i++) {
        if (pthread_create(&s->jw_thread[i], NULL, jw_main, s) != 0) {
            server_free(s);
            return vg_err_set(VG_ENOMEM, "cannot start the JSON worker threads");
        }
        s->jw_running++;
    }
    if (s->head_deadline_ns) {
        if (pthread_create(&s->wd_thread, NULL, wd_main, s) != 0) {
            server_free(s);
            return vg_err_set(VG_ENOMEM, "cannot start the request-head watchdog thread");
        }
        s->wd_running = 1;
    }
    errno = 0;
    s->d =
        MHD_start_daemon(flags, cfg->port, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER,
                         on_mhd_log, s, MHD_OPTION_ARRAY, opts, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        server_free(s);
        return vg_err_set(VG_EIO, "cannot listen on %s:%u: %s", cfg->host, (unsigned)cfg->port,
                          e ? strerror(e) : "libmicrohttpd refused the settings");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : cfg->port;
    *out = s;
    return VG_OK;
}

uint16_t http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_quiesce(http_server *s)
{
    if (!s)
        return;
    atomic_store(&s->quiescing, 1);
}

size_t http_server_inflight(const http_server *s)
{
    return atomic_load(&s->inflight);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int http_server_drain(http_server *s, uint64_t grace_ms)
{
    uint64_t deadline = vg_now_ns() + grace_ms * 1000000ull;
    while (atomic_load(&s->inflight) > 0) {
        if (vg_now_ns() >= deadline)
            return vg_err_set(VG_ETIMEDOUT, "%zu requests still in flight after %llu ms",
                              atomic_load(&s->inflight), (unsigned long long)grace_ms);
        sleep_ms(HTTP_DRAIN_POLL_MS);
    }
    return VG_OK;
}

void http_server_close(http_server *s)
{
    if (!s)
        return;
    size_t left = atomic_load(&s->deferred);
    if (left) {
        /* Stopping MHD under suspended connections is undefined behaviour; leak instead. */
        VG_ERROR("http", "%zu deferred requests were never resumed; leaving the server running",
                 left);
        return;
    }
    MHD_stop_daemon(s->d);
    server_free(s);
}
