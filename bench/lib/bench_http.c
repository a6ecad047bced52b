/* bench: an HTTP/1.1 response parser (just enough of RFC 9112 for a load generator: status,
 * Content-Length, chunked bodies, Connection: close), request building, and a blocking one-shot
 * client for setting up the server under test. */
#include "bench/lib/bench.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    P_HEADERS = 0,
    P_BODY_LEN,   /* content_left bytes of body */
    P_CHUNK_SIZE, /* a chunk-size line, in hdr */
    P_CHUNK_DATA, /* content_left bytes of chunk */
    P_CHUNK_CRLF, /* the CRLF after chunk data, in hdr */
    P_TRAILERS,   /* trailer lines until an empty one, in hdr */
};

void bench_http_parser_init(bench_http_parser *p, bench_buf *body)
{
    p->state = P_HEADERS;
    p->status = 0;
    p->close = 0;
    p->done = 0;
    p->content_left = 0;
    p->chunked = 0;
    p->hlen = 0;
    p->body = body;
    if (body)
        bench_buf_reset(body);
}

/* Case-insensitive: does the header block contain "name: ...token..." ? Returns the value of the
 * first header called name (NUL-terminated copy in val), or 0. */
static int header_value(const char *h, const char *name, char *val, size_t vlen)
{
    size_t nl = strlen(name);
    const char *line = strstr(h, "\r\n");
    while (line && line[2]) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *e = strstr(v, "\r\n");
            if (!e)
                e = v + strlen(v);
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t n = (size_t)(e - v) < vlen - 1 ? (size_t)(e - v) : vlen - 1;
            memcpy(val, v, n);
            val[n] = 0;
            return 1;
        }
        line = strstr(line, "\r\n");
    }
    return 0;
}

static int parse_headers(bench_http_parser *p)
{
    char *h = p->hdr;
    if (strncmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') || h[8] != ' ')
        return vg_err_set(VG_ECORRUPT, "not an HTTP/1.x status line");
    char *end;
    long st = strtol(h + 9, &end, 10);
    if (st < 100 || st > 999 || end != h + 12)
        return vg_err_set(VG_ECORRUPT, "bad status code");
    p->status = (int)st;
    p->close = h[7] == '0'; /* HTTP/1.0 closes unless told otherwise; we never ask it to */
    char v[128];
    if (header_value(h, "Connection", v, sizeof v) && strcasestr(v, "close"))
        p->close = 1;
    int has_len = 0;
    if (header_value(h, "Transfer-Encoding", v, sizeof v) && strcasestr(v, "chunked")) {
        p->chunked = 1;
    } else if (header_value(h, "Content-Length", v, sizeof v)) {
        char *e;
        errno = 0;
        unsigned long long n = strtoull(v, &e, 10);
        if (errno || e == v || *e || v[0] == '-')
            return vg_err_set(VG_ECORRUPT, "bad Content-Length");
        p->content_left = n;
        has_len = 1;
    }
    p->hlen = 0;
    if (st < 200 || st == 204 || st == 304) {
        if (st < 200) { /* an interim response (100 Continue): the real one follows */
            p->state = P_HEADERS;
            return VG_OK;
        }
        p->done = 1;
        return VG_OK;
    }
    if (p->chunked) {
        p->state = P_CHUNK_SIZE;
    } else if (has_len) {
        p->state = P_BODY_LEN;
        if (p->content_left == 0)
            p->done = 1;
    } else {
        /* Body delimited by the close: never produced by our server; refuse rather than guess. */
        return vg_err_set(VG_ECORRUPT, "response without Content-Length or chunked encoding");
    }
    return VG_OK;
}

/* Appends bytes to hdr until the terminator is seen; returns consumed count, sets *found. */
static long line_feed(bench_http_parser *p, const char *d, size_t n, const char *term, int *found)
{
    size_t tl = strlen(term);
    *found = 0;
    size_t i = 0;
    while (i < n) {
        if (p->hlen + 1 >= sizeof p->hdr)
            return vg_err_set(VG_ETOOBIG, "response headers over %d bytes",
                              BENCH_HTTP_MAX_HEADER_BYTES);
        p->hdr[p->hlen++] = d[i++];
        if (p->hlen >= tl && memcmp(p->hdr + p->hlen - tl, term, tl) == 0) {
            p->hdr[p->hlen] = 0;
            *found = 1;
            break;
        }
    }
    return (long)i;
}

static int body_take(bench_http_parser *p, const char *d, size_t n)
{
    return p->body ? bench_buf_append(p->body, d, n) : VG_OK;
}

long bench_http_parser_feed(bench_http_parser *p, const char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !p->done) {
        const char *d = data + used;
        size_t n = len - used;
        int found;
        long k;
        switch (p->state) {
        case P_HEADERS:
            k = line_feed(p, d, n, "\r\n\r\n", &found);
            if (k < 0)
                return k;
            used += (size_t)k;
            if (found) {
                int rc = parse_headers(p);
                if (rc)
                    return rc;
            }
            break;
        case P_BODY_LEN:
        case P_CHUNK_DATA: {
            size_t take = n < p->content_left ? n : (size_t)p->content_left;
            if (body_take(p, d, take))
                return VG_ENOMEM;
            used += take;
            p->content_left -= take;
            if (p->content_left == 0) {
                if (p->state == P_BODY_LEN)
                    p->done = 1;
                else {
                    p->state = P_CHUNK_CRLF;
                    p->hlen = 0;
                }
            }
            break;
        }
        case P_CHUNK_CRLF:
            /* exactly CR LF, checked byte by byte so garbage fails at once */
            if (d[0] != (p->hlen == 0 ? '\r' : '\n'))
                return vg_err_set(VG_ECORRUPT, "chunk data not followed by CRLF");
            used++;
            if (++p->hlen == 2) {
                p->hlen = 0;
                p->state = P_CHUNK_SIZE;
            }
            break;
        case P_CHUNK_SIZE:
        case P_TRAILERS:
            k = line_feed(p, d, n, "\r\n", &found);
            if (k < 0)
                return k;
            used += (size_t)k;
            if (!found)
                break;
            if (p->state == P_CHUNK_SIZE) {
                char *e;
                errno = 0;
                unsigned long long sz = strtoull(p->hdr, &e, 16);
                if (errno || e == p->hdr || (*e != '\r' && *e != ';' && *e != ' '))
                    return vg_err_set(VG_ECORRUPT, "bad chunk size");
                p->content_left = sz;
                p->state = sz ? P_CHUNK_DATA : P_TRAILERS;
            } else if (p->hlen == 2) {
                p->done = 1; /* the empty line after the trailers */
            }
            p->hlen = 0;
            break;
        default:
            return vg_err_set(VG_EINTERNAL, "parser state");
        }
    }
    return (long)used;
}

int bench_http_request(bench_buf *out, const char *method, const char *path, const char *bearer,
                       const char *content_type, const char *extra_headers, const void *body,
                       size_t len)
{
    bench_buf_printf(out, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
    if (bearer)
        bench_buf_printf(out, "Authorization: Bearer %s\r\n", bearer);
    if (content_type)
        bench_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (extra_headers)
        bench_buf_puts(out, extra_headers);
    if (len || strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0)
        bench_buf_printf(out, "Content-Length: %zu\r\n", len);
    bench_buf_puts(out, "\r\n");
    if (len)
        bench_buf_append(out, body, len);
    return out->failed ? VG_ENOMEM : VG_OK;
}

static int wait_fd(int fd, short ev, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = vg_now_ns();
        if (now >= deadline_ns)
            return vg_err_set(VG_ETIMEDOUT, "HTTP call timed out");
        struct pollfd pf = {fd, ev, 0};
        int ms = (int)((deadline_ns - now) / 1000000) + 1;
        int r = poll(&pf, 1, ms);
        if (r > 0)
            return VG_OK;
        if (r < 0 && errno != EINTR)
            return vg_err_set(VG_EIO, "poll: %s", strerror(errno));
    }
}

int bench_http_call(uint16_t port, const char *method, const char *path, const char *bearer,
                    const char *content_type, const void *body, size_t len, uint32_t timeout_ms,
                    int *status, bench_buf *resp)
{
    uint64_t deadline = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    bench_buf req;
    bench_buf_init(&req);
    int rc = bench_http_request(&req, method, path, bearer, content_type, NULL, body, len);
    if (rc) {
        bench_buf_deinit(&req);
        return rc;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        bench_buf_deinit(&req);
        return vg_err_set(VG_EIO, "socket: %s", strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bench_http_parser *p = vg_malloc(sizeof *p);
    if (!p) {
        rc = VG_ENOMEM;
        goto out;
    }
    bench_http_parser_init(p, resp);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        rc = vg_err_set(VG_EIO, "connect to port %u: %s", port, strerror(errno));
        goto out;
    }
    if ((rc = wait_fd(fd, POLLOUT, deadline)))
        goto out;
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        rc = vg_err_set(VG_EIO, "connect to port %u: %s", port, strerror(err));
        goto out;
    }
    for (size_t off = 0; off < req.len;) {
        ssize_t w = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if ((rc = wait_fd(fd, POLLOUT, deadline)))
                goto out;
        } else {
            rc = vg_err_set(VG_EIO, "send: %s", strerror(errno));
            goto out;
        }
    }
    char buf[16384];
    while (!p->done) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
            long k = bench_http_parser_feed(p, buf, (size_t)r);
            if (k < 0) {
                rc = (int)k;
                goto out;
            }
        } else if (r == 0) {
            rc = vg_err_set(VG_EIO, "connection closed before a whole response");
            goto out;
        } else if (errno == EAGAIN || errno == EINTR) {
            if ((rc = wait_fd(fd, POLLIN, deadline)))
                goto out;
        } else {
            rc = vg_err_set(VG_EIO, "recv: %s", strerror(errno));
            goto out;
        }
    }
    *status = p->status;
out:
    close(fd);
    vg_free(p);
    bench_buf_deinit(&req);
    return rc;
}
