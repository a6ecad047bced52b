/*
 * bench: the open-loop load generator (issue 13). Requests are due at a fixed rate whatever the
 * server does: request i is due at t0 + i / rate and goes to connection i mod N, where it waits
 * behind that connection's earlier requests (one in flight per connection, no pipelining).
 * Latency is counted from the due time, not from the send, so a slow answer makes the requests
 * queued behind it late and that lateness is measured instead of hidden (the closed loop of
 * bench_load.c and wrk sends the next request only after the answer: coordinated omission).
 *
 * Invariants: every due request ends exactly once, as ok (2xx) or as one error kind: connect
 * (its connection could not be opened), timeout (not answered within timeout_ms of its due
 * time, sent or not), io (reset or closed mid-response, malformed response) or status (a
 * non-2xx answer, counted by code); so due = ok + errors after bench_ol_run. One thread, one
 * epoll set, a timerfd armed at the next due time (so sends are not rounded to milliseconds).
 * Connections are closed with SO_LINGER 0 so a run leaves no TIME_WAIT behind.
 */
#include "bench/lib/bench.h"
#include "bench/lib/bench_int.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define OL_RECV_BYTES (256 * 1024)
#define OL_SCAN_NS 5000000ull            /* timeouts and reconnects checked every 5 ms */
#define OL_RETRY_NS 100000000ull         /* a connection that failed is reopened after 100 ms */
#define OL_CONNECT_WAIT_NS 5000000000ull /* before t0: at most 5 s to open the connections */
#define OL_MAX_EVENTS 256
#define OL_TIMER_TAG UINT64_MAX /* epoll data of the timerfd */

/* ---- histogram -------------------------------------------------------------------------- */

/* Bucket of v: values below 2^SUB_BITS exactly, then 2^SUB_BITS sub-buckets per power of two
 * (relative width at most 2^-SUB_BITS, 0.8%), HdrHistogram's layout. */
static unsigned hist_index(uint64_t v)
{
    const unsigned sub = 1u << BENCH_HIST_SUB_BITS;
    if (v < sub)
        return (unsigned)v;
    const unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned idx = (e - BENCH_HIST_SUB_BITS + 1) * sub +
                   (unsigned)((v >> (e - BENCH_HIST_SUB_BITS)) & (sub - 1));
    return idx < BENCH_HIST_BUCKETS ? idx : BENCH_HIST_BUCKETS - 1;
}

/* Middle of bucket idx (the value reported for it). */
static uint64_t hist_value(unsigned idx)
{
    const unsigned sub = 1u << BENCH_HIST_SUB_BITS;
    if (idx < sub)
        return idx;
    const unsigned e = idx / sub - 1 + BENCH_HIST_SUB_BITS, s = idx % sub;
    const uint64_t lo = ((uint64_t)(sub + s)) << (e - BENCH_HIST_SUB_BITS);
    const uint64_t width = 1ull << (e - BENCH_HIST_SUB_BITS);
    return lo + width / 2;
}

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

void bench_hist_add(bench_hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_percentile(const bench_hist *h, double q)
{
    if (!h->n)
        return 0;
    if (q >= 1.0)
        return h->max;
    /* the smallest value with at least ceil(q n) values at or below it */
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            const uint64_t v = hist_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- the generator ------------------------------------------------------------------------ */

enum { C_DOWN = 0, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct ol_conn {
    int fd;
    int state;
    int want_out;      /* EPOLLOUT registered */
    uint64_t due_k;    /* requests handed to this connection so far */
    uint64_t next_k;   /* the next of them to send (or to fail) */
    uint64_t cur_i;    /* global index of the request in flight (C_BUSY) */
    int cur_cls;       /* its class */
    bench_ol_req req;  /* its bytes (borrowed from the build callback) and patch */
    size_t off;        /* bytes of it sent so far */
    uint64_t open_ns;  /* C_CONNECTING: since when */
    uint64_t retry_ns; /* C_DOWN: reopen at this time */
    bench_http_parser parser;
} ol_conn;

typedef struct ol_run {
    const bench_ol_opts *o;
    bench_ol_result *r;
    ol_conn *c;
    int ep, tfd;
    uint64_t t0, total, dispatched, done;
    double ns_per_req;
    unsigned wsum; /* sum of the mix weights */
} ol_run;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t due_ns(const ol_run *u, uint64_t i)
{
    return u->t0 + (uint64_t)((double)i * u->ns_per_req);
}

/* splitmix64: the class of request i is a fixed function of i, so runs are repeatable. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int bench_ol_class_of(const unsigned weights[BENCH_OL_CLASSES], uint64_t i)
{
    unsigned sum = 0;
    for (int k = 0; k < BENCH_OL_CLASSES; k++)
        sum += weights[k];
    if (!sum)
        return 0;
    uint64_t x = mix64(i) % sum;
    for (int k = 0; k < BENCH_OL_CLASSES; k++) {
        if (x < weights[k])
            return k;
        x -= weights[k];
    }
    return BENCH_OL_CLASSES - 1;
}

/* One request finished: exactly one of these per due request. */
static void finish(ol_run *u, int cls, int kind, int status, uint64_t latency_ns)
{
    bench_ol_counts *t = &u->r->total, *k = &u->r->cls[cls];
    t->due++;
    k->due++;
    switch (kind) {
    case BENCH_OL_OK:
        t->ok++;
        k->ok++;
        bench_hist_add(&u->r->lat, latency_ns);
        bench_hist_add(&u->r->cls_lat[cls], latency_ns);
        break;
    case BENCH_OL_ERR_CONNECT:
        t->err_connect++;
        k->err_connect++;
        break;
    case BENCH_OL_ERR_TIMEOUT:
        t->err_timeout++;
        k->err_timeout++;
        break;
    case BENCH_OL_ERR_IO:
        t->err_io++;
        k->err_io++;
        break;
    default:
        t->err_status++;
        k->err_status++;
        if (status >= 100 && status < 600)
            u->r->status[status]++;
        break;
    }
    u->done++;
}

static void set_out(ol_run *u, ol_conn *c, unsigned idx, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.u64 = idx};
    epoll_ctl(u->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void close_conn(ol_run *u, ol_conn *c)
{
    if (c->fd >= 0) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        epoll_ctl(u->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->want_out = 0;
}

/* Fails every request queued on c (not the one in flight) with kind. */
static void fail_queued(ol_run *u, ol_conn *c, unsigned idx, int kind)
{
    const unsigned n = u->o->connections;
    for (; c->next_k < c->due_k; c->next_k++) {
        const uint64_t i = idx + c->next_k * n;
        finish(u, bench_ol_class_of(u->o->weights, i), kind, 0, 0);
    }
}

static int open_conn(ol_run *u, ol_conn *c, unsigned idx);

/* The connection is gone: the request in flight ends with kind, queued ones wait for the reopen
 * (reconnect after a close) or fail as connect errors (when it could not be opened). */
static void conn_down(ol_run *u, ol_conn *c, unsigned idx, int busy_kind, int connect_failed,
                      uint64_t now)
{
    if (c->state == C_BUSY)
        finish(u, c->cur_cls, busy_kind, 0, 0);
    close_conn(u, c);
    c->state = C_DOWN;
    if (connect_failed) {
        u->r->connect_failures++;
        fail_queued(u, c, idx, BENCH_OL_ERR_CONNECT);
        c->retry_ns = now + OL_RETRY_NS;
    } else if (open_conn(u, c, idx) != 0) { /* reopen at once; its queue waits for it */
        u->r->connect_failures++;
        fail_queued(u, c, idx, BENCH_OL_ERR_CONNECT);
        c->retry_ns = now + OL_RETRY_NS;
    }
}

static int open_conn(ol_run *u, ol_conn *c, unsigned idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(u->o->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = idx};
    if (epoll_ctl(u->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->want_out = 1;
    c->state = C_CONNECTING;
    c->open_ns = mono_ns();
    u->r->connects++;
    return 0;
}

/* Writes what the socket takes of c's request: the template with the patch bytes in place of
 * its own at patch_off (three pieces, no copy of a large body per connection). Returns 0, or -1
 * when the connection failed. */
static int send_some(ol_conn *c)
{
    const bench_ol_req *q = &c->req;
    while (c->off < q->len) {
        const size_t po = q->patch_len ? q->patch_off : q->len;
        const size_t pe = po + q->patch_len;
        struct iovec iov[3];
        int n = 0;
        if (c->off < po)
            iov[n++] = (struct iovec){(void *)(q->data + c->off), po - c->off};
        if (c->off < pe) {
            const size_t from = c->off > po ? c->off - po : 0;
            iov[n++] = (struct iovec){(void *)(q->patch + from), q->patch_len - from};
        }
        const size_t rest = c->off > pe ? c->off : pe;
        if (rest < q->len)
            iov[n++] = (struct iovec){(void *)(q->data + rest), q->len - rest};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            c->off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    return 0;
}

/* Sends c's next queued request when it is idle; requests already past the timeout when their
 * turn comes are failed without being sent (the client would have given up on them). */
static void pump(ol_run *u, ol_conn *c, unsigned idx, uint64_t now)
{
    const unsigned n = u->o->connections;
    const uint64_t timeout_ns = (uint64_t)u->o->timeout_ms * 1000000ull;
    while (c->state == C_IDLE && c->next_k < c->due_k) {
        const uint64_t i = idx + c->next_k * n;
        const int cls = bench_ol_class_of(u->o->weights, i);
        c->next_k++;
        if (now > due_ns(u, i) + timeout_ns) {
            finish(u, cls, BENCH_OL_ERR_TIMEOUT, 0, 0);
            continue;
        }
        memset(&c->req, 0, sizeof c->req);
        if (u->o->build(u->o->arg, cls, i, &c->req) != VG_OK || !c->req.data ||
            c->req.patch_len > BENCH_OL_PATCH_BYTES ||
            (c->req.patch_len && c->req.patch_off + c->req.patch_len > c->req.len)) {
            finish(u, cls, BENCH_OL_ERR_IO, 0, 0);
            continue;
        }
        c->off = 0;
        c->cur_i = i;
        c->cur_cls = cls;
        c->state = C_BUSY;
        bench_http_parser_init(&c->parser, NULL);
        u->r->sent++;
        const uint64_t late = now > due_ns(u, i) ? now - due_ns(u, i) : 0;
        if (late > u->r->max_send_lag_ns)
            u->r->max_send_lag_ns = late;
        if (c->next_k < c->due_k && c->due_k - c->next_k > u->r->max_queue)
            u->r->max_queue = c->due_k - c->next_k;
        if (send_some(c) != 0) {
            conn_down(u, c, idx, BENCH_OL_ERR_IO, 0, now);
            return;
        }
        set_out(u, c, idx, c->off < c->req.len);
    }
}

static void on_event(ol_run *u, unsigned idx, uint32_t events, char *rbuf, uint64_t now)
{
    ol_conn *c = &u->c[idx];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            conn_down(u, c, idx, BENCH_OL_ERR_CONNECT, 1, now);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = C_IDLE;
        set_out(u, c, idx, 0);
        pump(u, c, idx, now);
        return;
    }
    if (c->state == C_BUSY && (events & EPOLLOUT) && c->off < c->req.len) {
        if (send_some(c) != 0) {
            conn_down(u, c, idx, BENCH_OL_ERR_IO, 0, now);
            return;
        }
        set_out(u, c, idx, c->off < c->req.len);
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        ssize_t got = recv(c->fd, rbuf, OL_RECV_BYTES, 0);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (got <= 0) { /* closed or reset: mid-response (busy) is an error, idle is not */
            conn_down(u, c, idx, BENCH_OL_ERR_IO, 0, now);
            return;
        }
        if (c->state != C_BUSY) /* bytes nobody asked for */
            continue;
        long used = bench_http_parser_feed(&c->parser, rbuf, (size_t)got);
        if (used < 0) {
            conn_down(u, c, idx, BENCH_OL_ERR_IO, 0, now);
            return;
        }
        if (!c->parser.done)
            continue;
        const uint64_t t = mono_ns(), d = due_ns(u, c->cur_i);
        const int st = c->parser.status;
        finish(u, c->cur_cls, st >= 200 && st < 300 ? BENCH_OL_OK : BENCH_OL_ERR_STATUS, st,
               t > d ? t - d : 0);
        c->state = C_IDLE;
        if (c->parser.close) {
            u->r->reconnects++;
            conn_down(u, c, idx, BENCH_OL_ERR_IO, 0, now);
            return;
        }
        pump(u, c, idx, t);
        if (c->state != C_BUSY)
            return;
    }
}

/* Every 5 ms: requests in flight past their timeout, connections due for a reopen. */
static void scan(ol_run *u, uint64_t now)
{
    const uint64_t timeout_ns = (uint64_t)u->o->timeout_ms * 1000000ull;
    for (unsigned idx = 0; idx < u->o->connections; idx++) {
        ol_conn *c = &u->c[idx];
        if (c->state == C_BUSY && now > due_ns(u, c->cur_i) + timeout_ns) {
            conn_down(u, c, idx, BENCH_OL_ERR_TIMEOUT, 0, now);
            u->r->reconnects++;
        }
        if (c->state == C_CONNECTING && now > c->open_ns + timeout_ns)
            conn_down(u, c, idx, BENCH_OL_ERR_CONNECT, 1, now); /* never accepted */
        if (c->state == C_DOWN && now >= c->retry_ns &&
            (c->next_k < c->due_k || u->dispatched < u->total)) {
            if (open_conn(u, c, idx) != 0) {
                u->r->connect_failures++;
                fail_queued(u, c, idx, BENCH_OL_ERR_CONNECT);
                c->retry_ns = now + OL_RETRY_NS;
            }
        }
    }
}

/* Hands every request due by now to its connection. A request for a connection that is down
 * waiting for a retry fails as a connect error at once. */
static void dispatch(ol_run *u, uint64_t now)
{
    const unsigned n = u->o->connections;
    while (u->dispatched < u->total && due_ns(u, u->dispatched) <= now) {
        const uint64_t i = u->dispatched++;
        const unsigned idx = (unsigned)(i % n);
        ol_conn *c = &u->c[idx];
        c->due_k++;
        if (c->state == C_DOWN && c->retry_ns > now)
            fail_queued(u, c, idx, BENCH_OL_ERR_CONNECT);
        else
            pump(u, c, idx, now);
    }
}

static void arm_timer(ol_run *u)
{
    struct itimerspec its = {0};
    if (u->dispatched < u->total) {
        const uint64_t t = due_ns(u, u->dispatched);
        its.it_value.tv_sec = (time_t)(t / 1000000000ull);
        its.it_value.tv_nsec = (long)(t % 1000000000ull);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(u->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

uint64_t bench_ol_errors(const bench_ol_counts *k)
{
    return k->err_connect + k->err_timeout + k->err_io + k->err_status;
}

int bench_ol_run(const bench_ol_opts *o, bench_ol_result *out)
{
    if (!o || !out || !o->build || !o->connections || !o->timeout_ms || !(o->rate > 0) ||
        !o->duration_ms)
        return vg_err_set(VG_EINVAL, "bench_ol_run: bad options");
    if (o->connections > BENCH_OL_MAX_CONNECTIONS)
        return vg_err_set(VG_EINVAL, "bench_ol_run: at most %d connections",
                          BENCH_OL_MAX_CONNECTIONS);
    int rc = bench__raise_nofile(o->connections);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    ol_run u = {.o = o, .r = out, .ep = -1, .tfd = -1};
    u.total = (uint64_t)(o->rate * (double)o->duration_ms / 1000.0);
    u.ns_per_req = 1e9 / o->rate;
    char *rbuf = vg_malloc(OL_RECV_BYTES);
    u.c = vg_calloc(o->connections, sizeof *u.c);
    u.ep = epoll_create1(EPOLL_CLOEXEC);
    u.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!rbuf || !u.c || u.ep < 0 || u.tfd < 0) {
        rc = vg_err_set(VG_ENOMEM, "bench_ol_run: cannot set up");
        goto out;
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = OL_TIMER_TAG};
    epoll_ctl(u.ep, EPOLL_CTL_ADD, u.tfd, &tev);
    for (unsigned i = 0; i < o->connections; i++) {
        u.c[i].fd = -1;
    }

    /* Open every connection before t0 (those that fail are retried during the run, and their
     * requests counted as connect errors), so the first second does not measure connects. */
    uint64_t now = mono_ns();
    const uint64_t wait_end = now + OL_CONNECT_WAIT_NS;
    unsigned pending = 0;
    for (unsigned i = 0; i < o->connections; i++) {
        if (open_conn(&u, &u.c[i], i) == 0) {
            pending++;
        } else {
            u.c[i].state = C_DOWN;
            u.c[i].retry_ns = 0;
            out->connect_failures++;
        }
    }
    struct epoll_event evs[OL_MAX_EVENTS];
    while (pending && now < wait_end) {
        int ne = epoll_wait(u.ep, evs, OL_MAX_EVENTS, 10);
        now = mono_ns();
        for (int e = 0; e < ne; e++) {
            if (evs[e].data.u64 == OL_TIMER_TAG)
                continue;
            ol_conn *c = &u.c[evs[e].data.u64];
            if (c->state != C_CONNECTING)
                continue;
            on_event(&u, (unsigned)evs[e].data.u64, evs[e].events, rbuf, now);
            pending--;
        }
    }
    /* t0: connections still opening (or down) simply take the first requests late (or fail) */
    for (unsigned i = 0; i < o->connections; i++)
        if (u.c[i].state == C_DOWN)
            u.c[i].retry_ns = 0;
    u.t0 = mono_ns() + 1000000ull;
    const uint64_t end_ns = due_ns(&u, u.total);
    const uint64_t drain_end = end_ns + (uint64_t)o->timeout_ms * 1000000ull + OL_SCAN_NS;
    uint64_t next_scan = 0;
    arm_timer(&u);
    for (;;) {
        now = mono_ns();
        dispatch(&u, now);
        if (now >= next_scan) {
            scan(&u, now);
            next_scan = now + OL_SCAN_NS;
        }
        if (u.done >= u.total)
            break;
        if (now > drain_end)
            break;
        arm_timer(&u);
        int ne = epoll_wait(u.ep, evs, OL_MAX_EVENTS, (int)(OL_SCAN_NS / 1000000ull));
        now = mono_ns();
        for (int e = 0; e < ne; e++) {
            if (evs[e].data.u64 == OL_TIMER_TAG) {
                uint64_t ticks;
                if (read(u.tfd, &ticks, sizeof ticks) < 0) { /* nothing: spurious wake */
                }
                continue;
            }
            on_event(&u, (unsigned)evs[e].data.u64, evs[e].events, rbuf, now);
        }
    }
    /* Whatever is left (in flight or queued past the drain) timed out; nothing due is lost. */
    now = mono_ns();
    for (unsigned idx = 0; idx < o->connections; idx++) {
        ol_conn *c = &u.c[idx];
        if (c->state == C_BUSY) {
            finish(&u, c->cur_cls, BENCH_OL_ERR_TIMEOUT, 0, 0);
            c->state = C_IDLE;
        }
        fail_queued(&u, c, idx, BENCH_OL_ERR_TIMEOUT);
    }
    while (u.dispatched < u.total) { /* never dispatched: only when the loop stopped early */
        finish(&u, bench_ol_class_of(o->weights, u.dispatched), BENCH_OL_ERR_TIMEOUT, 0, 0);
        u.dispatched++;
    }
    out->offered_rate = o->rate;
    out->duration_s = (double)(end_ns - u.t0) / 1e9;
    out->elapsed_s = (double)(now - u.t0) / 1e9;
    out->ok_rate = out->duration_s > 0 ? (double)out->total.ok / out->duration_s : 0;
    rc = VG_OK;
out:
    if (u.c) {
        for (unsigned i = 0; i < o->connections; i++) {
            close_conn(&u, &u.c[i]);
        }
    }
    vg_free(u.c);
    vg_free(rbuf);
    if (u.tfd >= 0)
        close(u.tfd);
    if (u.ep >= 0)
        close(u.ep);
    return rc;
}
