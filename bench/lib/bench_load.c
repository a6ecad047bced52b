/*
 * bench: the load generator. Closed loop: each connection keeps one request in flight (or pauses
 * think_ms between a response and its next request), over HTTP/1.1 keep-alive, all driven by one
 * or two epoll threads so that 12,000 connections cost file descriptors and a few KiB each, not
 * threads. Latency is measured from the first byte sent to the last byte of the response.
 *
 * Invariants: a connection has at most one request outstanding (no pipelining), so a response
 * always belongs to the request the connection sent last; counters are per thread and summed at
 * the end, except the shared request sequence, completion count and connection gauge (atomics).
 * Connections are closed with SO_LINGER 0 at the end of a run so that thousands of them leave no
 * TIME_WAIT entries to exhaust the loopback port range in the next run.
 */
#include "bench/lib/bench.h"
#include "bench/lib/bench_int.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOAD_MAX_THREADS 2
#define LOAD_RECV_BYTES (256 * 1024)
#define LOAD_SCAN_NS 5000000ull         /* timers (think, retry, timeouts) checked every 5 ms */
#define LOAD_RETRY_NS 100000000ull      /* a failed connection is retried after 100 ms */
#define LOAD_DEFAULT_CONNECT_BURST 256u /* connects in progress per thread */

enum { C_CLOSED = 0, C_CONNECTING, C_SENDING, C_RECEIVING, C_THINKING, C_RETRY, C_IDLE };

typedef struct conn {
    int fd;
    int state;
    int want_out; /* EPOLLOUT is registered */
    const uint8_t *req;
    size_t req_len, off;
    uint64_t t_send_ns;
    uint64_t wake_ns; /* THINKING / RETRY */
    bench_buf scratch;
    bench_http_parser parser;
} conn;

/* Shared by the threads of one run. */
typedef struct load_shared {
    const bench_load_opts *o;
    uint64_t t0_ns, start_ns, end_ns; /* end_ns: UINT64_MAX in count mode */
    atomic_uint_fast64_t seq;         /* requests handed out */
    atomic_uint_fast64_t completed;   /* responses, warm-up included */
    atomic_uint_fast64_t connected;   /* established right now */
    atomic_uint_fast64_t connected_peak;
    atomic_int stop; /* set by the first thread that sees the end */
} load_shared;

/* One epoll thread: owns its connections and counters. */
typedef struct load_thread {
    load_shared *sh;
    pthread_t tid;
    unsigned first, n; /* its connections: global indices first..first+n-1 */
    conn *conns;       /* owned, n */
    int ep;
    unsigned connecting;
    unsigned next_open;   /* connections not opened yet start here */
    unsigned established; /* connections open right now */
    int go;               /* requests may be sent (connect_first: all connections are open) */
    uint64_t inflight;
    uint64_t last_done_ns;
    bench_load_result r; /* counters + latency samples (owned) */
    int rc;
} load_thread;

static void set_events(load_thread *t, conn *c, unsigned idx, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = idx};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void conn_close(load_thread *t, conn *c, int reset)
{
    if (c->fd < 0)
        return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->state == C_CONNECTING)
        t->connecting--;
    else if (c->state != C_CLOSED && c->state != C_RETRY) {
        atomic_fetch_sub(&t->sh->connected, 1);
        t->established--;
    }
    if (c->state == C_SENDING || c->state == C_RECEIVING)
        t->inflight--;
    c->state = C_CLOSED;
    c->want_out = 0;
}

static int conn_open(load_thread *t, conn *c, unsigned idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vg_err_set(VG_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(t->sh->o->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        t->r.conn_errors++;
        c->state = C_RETRY;
        c->wake_ns = vg_now_ns() + LOAD_RETRY_NS;
        return VG_OK;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = idx};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return vg_err_set(VG_EIO, "epoll_ctl: %s", strerror(errno));
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->want_out = 1;
    t->connecting++;
    return VG_OK;
}

static int stopping(load_thread *t, uint64_t now)
{
    load_shared *sh = t->sh;
    if (atomic_load(&sh->stop))
        return 1;
    if (now >= sh->end_ns) {
        atomic_store(&sh->stop, 1);
        return 1;
    }
    return 0;
}

/* The connection is established and has nothing in flight: send its next request. */
static void start_request(load_thread *t, conn *c, unsigned idx, uint64_t now)
{
    load_shared *sh = t->sh;
    if (stopping(t, now)) {
        c->state = C_IDLE;
        return;
    }
    uint64_t seq = atomic_fetch_add(&sh->seq, 1);
    if (sh->o->max_requests && seq >= sh->o->max_requests) {
        atomic_store(&sh->stop, 1);
        c->state = C_IDLE;
        return;
    }
    bench_buf_reset(&c->scratch);
    size_t len = 0;
    c->req = sh->o->next(sh->o->arg, seq, &c->scratch, &len);
    if (!c->req || !len) {
        t->r.conn_errors++;
        c->state = C_IDLE;
        return;
    }
    c->req_len = len;
    c->off = 0;
    c->t_send_ns = now;
    c->state = C_SENDING;
    t->inflight++;
    bench_http_parser_init(&c->parser, NULL);
    while (c->off < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->off, c->req_len - c->off, MSG_NOSIGNAL);
        if (w > 0) {
            c->off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            set_events(t, c, idx, 1);
            return;
        }
        t->r.conn_errors++;
        conn_close(t, c, 1);
        c->state = C_RETRY;
        c->wake_ns = now + LOAD_RETRY_NS;
        return;
    }
    c->state = C_RECEIVING;
    set_events(t, c, idx, 0);
}

static void after_response(load_thread *t, conn *c, unsigned idx, uint64_t now)
{
    load_shared *sh = t->sh;
    t->inflight--;
    t->last_done_ns = now;
    int st = c->parser.status;
    if (now >= sh->start_ns && c->t_send_ns <= sh->end_ns) {
        t->r.completed++;
        if (st >= 200 && st < 300) {
            t->r.ok++;
            if (bench_samples_add(t->r.latency_ns, now - c->t_send_ns))
                t->rc = VG_ENOMEM;
        } else if (st >= 500) {
            t->r.status_5xx++;
            if (st == 503)
                t->r.status_503++;
        } else {
            t->r.status_4xx++;
        }
    } else if (!(st >= 200 && st < 300)) {
        /* an error during the warm-up still counts: a run with errors is never clean */
        if (st >= 500)
            t->r.status_5xx++;
        else
            t->r.status_4xx++;
        if (st == 503)
            t->r.status_503++;
    }
    uint64_t done = atomic_fetch_add(&sh->completed, 1) + 1;
    if (sh->o->progress && sh->o->progress_every && done % sh->o->progress_every == 0)
        sh->o->progress(sh->o->arg, done);
    if (c->parser.close) {
        c->state = C_IDLE; /* not in flight any more: conn_close must not count it */
        conn_close(t, c, 0);
        t->r.reconnects++;
        if (!stopping(t, now))
            conn_open(t, c, idx);
        return;
    }
    if (sh->o->think_ms) {
        c->state = C_THINKING;
        c->wake_ns = now + sh->o->think_ms * 1000000ull;
    } else {
        start_request(t, c, idx, now);
    }
}

static void on_readable(load_thread *t, conn *c, unsigned idx, char *buf)
{
    for (;;) {
        ssize_t r = recv(c->fd, buf, LOAD_RECV_BYTES, 0);
        if (r > 0) {
            if (c->state != C_RECEIVING && c->state != C_SENDING) {
                t->r.conn_errors++; /* bytes nobody asked for */
                conn_close(t, c, 1);
                c->state = C_RETRY;
                c->wake_ns = vg_now_ns() + LOAD_RETRY_NS;
                return;
            }
            long k = bench_http_parser_feed(&c->parser, buf, (size_t)r);
            if (k < 0 || (c->parser.done && (size_t)k != (size_t)r)) {
                t->r.conn_errors++; /* malformed, or bytes beyond the one response */
                conn_close(t, c, 1);
                c->state = C_RETRY;
                c->wake_ns = vg_now_ns() + LOAD_RETRY_NS;
                return;
            }
            if (c->parser.done) {
                /* an early answer (413 before the whole body) ends the request too */
                c->state = C_RECEIVING;
                after_response(t, c, idx, vg_now_ns());
                return;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        /* EOF or error */
        int busy = c->state == C_SENDING || c->state == C_RECEIVING;
        if (busy)
            t->r.conn_errors++;
        else
            t->r.reconnects++; /* the server closed an idle keep-alive connection */
        conn_close(t, c, 1);
        uint64_t now = vg_now_ns();
        if (busy) {
            c->state = C_RETRY;
            c->wake_ns = now + LOAD_RETRY_NS;
        } else if (!stopping(t, now)) {
            conn_open(t, c, idx);
        }
        return;
    }
}

static void on_writable(load_thread *t, conn *c, unsigned idx)
{
    uint64_t now = vg_now_ns();
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            t->r.conn_errors++;
            conn_close(t, c, 1);
            c->state = C_RETRY;
            c->wake_ns = now + LOAD_RETRY_NS;
            return;
        }
        t->connecting--;
        t->established++;
        c->state = C_IDLE;
        uint64_t n = atomic_fetch_add(&t->sh->connected, 1) + 1;
        uint64_t peak = atomic_load(&t->sh->connected_peak);
        while (n > peak && !atomic_compare_exchange_weak(&t->sh->connected_peak, &peak, n))
            ;
        set_events(t, c, idx, 0);
        if (!t->go)
            return; /* connect_first: scan() starts it once every connection is open */
        if (t->sh->o->think_ms) {
            /* spread the first requests over one think period */
            c->state = C_THINKING;
            c->wake_ns = now + (idx * 7919ull % (t->sh->o->think_ms * 1000ull)) * 1000ull;
        } else {
            start_request(t, c, idx, now);
        }
        return;
    }
    if (c->state != C_SENDING) {
        set_events(t, c, idx, 0);
        return;
    }
    while (c->off < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->off, c->req_len - c->off, MSG_NOSIGNAL);
        if (w > 0) {
            c->off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        t->r.conn_errors++;
        conn_close(t, c, 1);
        c->state = C_RETRY;
        c->wake_ns = now + LOAD_RETRY_NS;
        return;
    }
    c->state = C_RECEIVING;
    set_events(t, c, idx, 0);
}

/* Timers: retries, think time, request timeouts; and new connects within the burst bound. */
static void scan(load_thread *t, uint64_t now)
{
    const bench_load_opts *o = t->sh->o;
    int stop = stopping(t, now);
    uint64_t tmo = (uint64_t)o->timeout_ms * 1000000ull;
    if (!t->go && (t->established == t->n || now >= t->sh->start_ns))
        t->go = 1;
    for (unsigned i = 0; i < t->next_open; i++) {
        conn *c = &t->conns[i];
        switch (c->state) {
        case C_SENDING:
        case C_RECEIVING:
            if (now - c->t_send_ns > tmo) {
                t->r.timeouts++;
                conn_close(t, c, 1);
                c->state = stop ? C_CLOSED : C_RETRY;
                c->wake_ns = now;
            }
            break;
        case C_THINKING:
            if (stop) {
                c->state = C_IDLE;
            } else if (now >= c->wake_ns) {
                start_request(t, c, i, now);
            }
            break;
        case C_RETRY:
            if (!stop && now >= c->wake_ns && t->connecting < o->connect_burst) {
                c->state = C_CLOSED;
                if (conn_open(t, c, i))
                    t->rc = VG_EIO;
            }
            break;
        case C_IDLE:
            if (!stop && t->go && c->fd >= 0)
                start_request(t, c, i, now);
            break;
        default:
            break;
        }
    }
    while (!stop && t->next_open < t->n && t->connecting < o->connect_burst) {
        unsigned i = t->next_open++;
        if (conn_open(t, &t->conns[i], i)) {
            t->rc = VG_EIO;
            break;
        }
    }
}

static void *load_thread_main(void *arg)
{
    load_thread *t = arg;
    load_shared *sh = t->sh;
    const bench_load_opts *o = sh->o;
    char *buf = vg_malloc(LOAD_RECV_BYTES);
    struct epoll_event *evs = vg_malloc(1024 * sizeof *evs);
    if (!buf || !evs) {
        t->rc = VG_ENOMEM;
        goto out;
    }
    uint64_t last_scan = 0, drain_end = 0;
    for (;;) {
        uint64_t now = vg_now_ns();
        if (now - last_scan >= LOAD_SCAN_NS) {
            scan(t, now);
            last_scan = now;
        }
        if (stopping(t, now)) {
            if (!drain_end)
                drain_end = now + (uint64_t)o->timeout_ms * 1000000ull;
            if (t->inflight == 0 || now >= drain_end)
                break;
        }
        int n = epoll_wait(t->ep, evs, 1024, 2);
        if (n < 0 && errno != EINTR) {
            t->rc = vg_err_set(VG_EIO, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            unsigned idx = evs[i].data.u32;
            conn *c = &t->conns[idx];
            if (c->fd < 0)
                continue;
            uint32_t e = evs[i].events;
            if (c->state == C_CONNECTING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(t, c, idx);
                continue;
            }
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(t, c, idx, buf);
            if (c->fd >= 0 && (e & EPOLLOUT))
                on_writable(t, c, idx);
        }
    }
    /* whatever is still in flight after the drain window never got an answer */
    for (unsigned i = 0; i < t->n; i++) {
        conn *c = &t->conns[i];
        if (c->state == C_SENDING || c->state == C_RECEIVING)
            t->r.timeouts++;
        conn_close(t, c, 1);
    }
out:
    vg_free(buf);
    vg_free(evs);
    return NULL;
}

int bench__raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return vg_err_set(VG_EIO, "getrlimit: %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)need + BENCH_FD_RESERVE > rl.rlim_cur)
        return vg_err_set(VG_EINVAL,
                          "%u connections need more open files than RLIMIT_NOFILE allows (%llu)",
                          need, (unsigned long long)rl.rlim_cur);
    return VG_OK;
}

void bench_load_result_free(bench_load_result *r)
{
    if (!r)
        return;
    bench_samples_free(r->latency_ns);
    r->latency_ns = NULL;
}

uint64_t bench_load_errors(const bench_load_result *r)
{
    return r->status_4xx + r->status_5xx + r->conn_errors + r->timeouts;
}

int bench_load_run(const bench_load_opts *o, bench_load_result *out)
{
    if (!o || !out || !o->next || o->connections == 0 || o->timeout_ms == 0 ||
        (o->duration_ms == 0 && o->max_requests == 0))
        return vg_err_set(VG_EINVAL, "load: need connections, timeout, next, and a duration or "
                                     "a request count");
    int rc = bench__raise_nofile(o->connections);
    if (rc)
        return rc;
    bench_load_opts oo = *o;
    if (!oo.connect_burst)
        oo.connect_burst = LOAD_DEFAULT_CONNECT_BURST;
    unsigned nt = o->threads == 0                 ? 1
                  : o->threads > LOAD_MAX_THREADS ? LOAD_MAX_THREADS
                                                  : o->threads;
    if (nt > o->connections)
        nt = o->connections;
    load_shared sh = {.o = &oo};
    atomic_init(&sh.seq, 0);
    atomic_init(&sh.completed, 0);
    atomic_init(&sh.connected, 0);
    atomic_init(&sh.connected_peak, 0);
    atomic_init(&sh.stop, 0);
    load_thread th[LOAD_MAX_THREADS];
    memset(th, 0, sizeof th);
    rc = VG_OK;
    unsigned made = 0;
    for (unsigned i = 0; i < nt; i++) {
        load_thread *t = &th[i];
        t->sh = &sh;
        t->go = !o->connect_first;
        t->first = o->connections * i / nt;
        t->n = o->connections * (i + 1) / nt - t->first;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->conns = vg_calloc(t->n, sizeof(conn));
        if (t->ep < 0 || !t->conns || bench_samples_new(4096, &t->r.latency_ns)) {
            rc = VG_ENOMEM;
            break;
        }
        for (unsigned k = 0; k < t->n; k++) {
            t->conns[k].fd = -1;
            bench_buf_init(&t->conns[k].scratch);
        }
        made++;
    }
    if (rc == VG_OK) {
        sh.t0_ns = vg_now_ns();
        sh.start_ns = sh.t0_ns + o->warmup_ms * 1000000ull;
        sh.end_ns = o->duration_ms ? sh.start_ns + o->duration_ms * 1000000ull : UINT64_MAX;
        unsigned started = 0;
        for (unsigned i = 0; i < nt; i++) {
            if (pthread_create(&th[i].tid, NULL, load_thread_main, &th[i]) != 0) {
                atomic_store(&sh.stop, 1);
                rc = VG_EINTERNAL;
                break;
            }
            started++;
        }
        for (unsigned i = 0; i < started; i++)
            pthread_join(th[i].tid, NULL);
    }
    uint64_t stop_ns = vg_now_ns();
    bench_load_result r = {0};
    if (rc == VG_OK && bench_samples_new(4096, &r.latency_ns))
        rc = VG_ENOMEM;
    uint64_t last = 0;
    for (unsigned i = 0; i < made; i++) {
        load_thread *t = &th[i];
        if (rc == VG_OK && t->rc)
            rc = t->rc;
        r.completed += t->r.completed;
        r.ok += t->r.ok;
        r.status_4xx += t->r.status_4xx;
        r.status_5xx += t->r.status_5xx;
        r.status_503 += t->r.status_503;
        r.conn_errors += t->r.conn_errors;
        r.timeouts += t->r.timeouts;
        r.reconnects += t->r.reconnects;
        if (t->last_done_ns > last)
            last = t->last_done_ns;
        if (rc == VG_OK && bench_samples_merge(r.latency_ns, t->r.latency_ns))
            rc = VG_ENOMEM;
        bench_samples_free(t->r.latency_ns);
        for (unsigned k = 0; k < t->n; k++)
            bench_buf_deinit(&t->conns[k].scratch);
        vg_free(t->conns);
        if (t->ep >= 0)
            close(t->ep);
    }
    if (rc) {
        bench_samples_free(r.latency_ns);
        return rc;
    }
    r.connected_peak = atomic_load(&sh.connected_peak);
    r.completed_all = atomic_load(&sh.completed);
    uint64_t end = o->duration_ms ? sh.end_ns : last;
    if (end > stop_ns)
        end = stop_ns;
    r.elapsed_s = end > sh.start_ns ? (double)(end - sh.start_ns) / 1e9 : 0;
    r.ok_per_s = r.elapsed_s > 0 ? (double)r.ok / r.elapsed_s : 0;
    *out = r;
    return VG_OK;
}
