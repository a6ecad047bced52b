/*
 * rel: shared pieces of the reliability tools (see rel.h).
 */
#include "rel.h"

#include "core/core.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REL_POLL_MS 10 /* how often a start looks for the "listening on" line */

/* ---- random ---------------------------------------------------------------------------------- */

void rel_rng_seed(rel_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!r->s)
        r->s = 1;
}

uint64_t rel_rng_next(rel_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t rel_rng_below(rel_rng *r, uint64_t n)
{
    return rel_rng_next(r) % n;
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

void rel_conn_init(rel_conn *c, uint16_t port)
{
    memset(c, 0, sizeof *c);
    c->port = port;
    c->fd = -1;
    bench_buf_init(&c->req);
    bench_buf_init(&c->resp);
}

static void conn_close(rel_conn *c)
{
    if (c->fd >= 0) {
        /* RST instead of FIN: a million short connections must not fill TIME_WAIT */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
    }
    c->fd = -1;
    c->carry_len = 0;
}

void rel_conn_deinit(rel_conn *c)
{
    conn_close(c);
    bench_buf_deinit(&c->req);
    bench_buf_deinit(&c->resp);
}

void rel_conn_reset(rel_conn *c, uint16_t port)
{
    conn_close(c);
    c->port = port;
}

static int wait_fd(int fd, short ev, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = vg_now_ns();
        if (now >= deadline_ns)
            return VG_ETIMEDOUT;
        struct pollfd pf = {fd, ev, 0};
        int r = poll(&pf, 1, (int)((deadline_ns - now) / 1000000) + 1);
        if (r > 0)
            return VG_OK;
        if (r < 0 && errno != EINTR)
            return vg_err_set(VG_EIO, "poll: %s", strerror(errno));
    }
}

static int conn_open(rel_conn *c, uint64_t deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vg_err_set(VG_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = fd;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        conn_close(c);
        return vg_err_set(VG_EIO, "connect: %s", strerror(errno));
    }
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc) {
        conn_close(c);
        return rc;
    }
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        conn_close(c);
        return vg_err_set(VG_EIO, "connect: %s", strerror(err));
    }
    return VG_OK;
}

static int send_all(rel_conn *c, const void *data, size_t len, uint64_t deadline)
{
    const char *p = data;
    for (size_t off = 0; off < len;) {
        ssize_t w = send(c->fd, p + off, len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc)
                return rc;
        } else {
            /* the server may answer (413, 400) and close before reading the whole body */
            return vg_err_set(VG_EIO, "send: %s", strerror(errno));
        }
    }
    return VG_OK;
}

/* Reads one answer into c->parser; VG_EIO when the server closed first. */
static int recv_answer(rel_conn *c, uint64_t deadline)
{
    char buf[16384];
    while (!c->parser.done) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0) {
            long k = bench_http_parser_feed(&c->parser, buf, (size_t)r);
            if (k < 0)
                return (int)k;
            if ((size_t)k < (size_t)r) /* extra bytes: an answer nobody asked for */
                return vg_err_set(VG_ECORRUPT, "%zd bytes after the answer", r - k);
        } else if (r == 0) {
            return vg_err_set(VG_EIO, "closed before a whole answer");
        } else if (errno == EAGAIN || errno == EINTR) {
            int rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc)
                return rc;
        } else {
            return vg_err_set(VG_EIO, "recv: %s", strerror(errno));
        }
    }
    return VG_OK;
}

int rel_call(rel_conn *c, const char *method, const char *path, const char *bearer,
             const char *ctype, const void *body, size_t len, uint32_t timeout_ms, int *status)
{
    uint64_t deadline = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    bench_buf_reset(&c->req);
    bench_buf_reset(&c->resp);
    int rc = bench_http_request(&c->req, method, path, bearer, ctype, NULL, body, len);
    if (rc)
        return rc;
    *status = 0;
    if (c->fd < 0 && (rc = conn_open(c, deadline)))
        return rc;
    bench_http_parser_init(&c->parser, &c->resp);
    rc = send_all(c, c->req.data, c->req.len, deadline);
    /* after a failed send an early answer may still be waiting to be read */
    int rc2 = recv_answer(c, deadline);
    if (rc2 == VG_OK) {
        *status = c->parser.status;
        if (c->parser.close)
            conn_close(c);
        bench_buf_puts(&c->resp, ""); /* NUL-terminate */
        return c->resp.failed ? VG_ENOMEM : VG_OK;
    }
    conn_close(c);
    return rc ? rc : rc2;
}

int rel_raw(rel_conn *c, const void *bytes, size_t len, uint32_t timeout_ms, int *status)
{
    uint64_t deadline = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    bench_buf_reset(&c->resp);
    conn_close(c);
    *status = 0;
    int rc = conn_open(c, deadline);
    if (rc)
        return rc == VG_ETIMEDOUT ? VG_EIO : rc;
    bench_http_parser_init(&c->parser, &c->resp);
    rc = send_all(c, bytes, len, deadline);
    if (rc == VG_ETIMEDOUT) {
        conn_close(c);
        return rc; /* the server stopped reading and never answered */
    }
    /* Half-close: a server waiting for more body bytes sees the end and must answer or close. */
    shutdown(c->fd, SHUT_WR);
    char buf[16384];
    for (;;) {
        if (c->parser.done) {
            *status = c->parser.status;
            break;
        }
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r > 0) {
            long k = bench_http_parser_feed(&c->parser, buf, (size_t)r);
            if (k < 0) {
                /* a malformed answer is a server bug too; count it as an answer without status */
                *status = -1;
                break;
            }
        } else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            break; /* closed (or reset) without a whole answer: allowed for garbage */
        } else {
            rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc) {
                conn_close(c);
                return rc;
            }
        }
    }
    conn_close(c);
    return VG_OK;
}

json_t *rel_json(const rel_conn *c)
{
    if (!c->resp.data || !c->resp.len)
        return NULL;
    return json_loadb(c->resp.data, c->resp.len, 0, NULL);
}

void rel_json_str(const rel_conn *c, const char *field, char *out, size_t outlen)
{
    out[0] = 0;
    json_t *j = rel_json(c);
    const char *v = json_string_value(json_object_get(j, field));
    if (v)
        snprintf(out, outlen, "%s", v);
    json_decref(j);
}

/* ---- the server ------------------------------------------------------------------------------ */

void rel_server_init(rel_server *s, const char *vigil, const char *data_dir,
                     const char *const *extra)
{
    memset(s, 0, sizeof *s);
    s->pid = -1;
    snprintf(s->vigil, sizeof s->vigil, "%s", vigil);
    snprintf(s->data_dir, sizeof s->data_dir, "%s", data_dir);
    snprintf(s->log_path, sizeof s->log_path, "%s.log", data_dir);
    snprintf(s->admin_key, sizeof s->admin_key, "va_reliability_admin_key_0123456789");
    size_t n = 0;
    for (; extra && extra[n] && n < REL_MAX_ARGS - 1; n++)
        s->extra[n] = extra[n];
    s->extra[n] = NULL;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

char *rel_server_log(const rel_server *s, size_t max_bytes)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return NULL;
    char *buf = vg_malloc(max_bytes + 1);
    size_t n = 0;
    if (buf && fseek(f, s->log_start, SEEK_SET) == 0)
        n = fread(buf, 1, max_bytes, f);
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

int rel_server_alive(rel_server *s, int *status)
{
    if (s->pid <= 0)
        return 0;
    int st = 0;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (status)
        *status = st;
    s->pid = -1;
    return 0;
}

int rel_server_start(rel_server *s, uint32_t timeout_ms)
{
    s->log_start = file_size(s->log_path);
    const char *argv[REL_MAX_ARGS + 16];
    size_t n = 0;
    argv[n++] = s->vigil;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data-dir";
    argv[n++] = s->data_dir;
    argv[n++] = "--admin-key";
    argv[n++] = s->admin_key;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    for (size_t i = 0; s->extra[i]; i++)
        argv[n++] = s->extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return vg_err_set(VG_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd < 0)
            _exit(126); /* no log: the start would not be observable */
        dup2(fd, 1);
        dup2(fd, 2);
        if (nul >= 0)
            dup2(nul, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    s->port = 0;
    uint64_t end = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    static const char tag[] = "listening on http://127.0.0.1:";
    while (vg_now_ns() < end) {
        char *log = rel_server_log(s, 1 << 16);
        const char *l = log ? strstr(log, tag) : NULL;
        if (l)
            s->port = (uint16_t)atoi(l + strlen(tag));
        vg_free(log);
        if (s->port)
            return VG_OK;
        int st = 0;
        if (!rel_server_alive(s, &st))
            return vg_err_set(VG_EIO, "vigil serve exited during start-up (status %d; see %s)", st,
                              s->log_path);
        struct timespec ts = {0, REL_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = -1;
    return vg_err_set(VG_EIO, "vigil serve did not listen within %u ms (see %s)", timeout_ms,
                      s->log_path);
}

int rel_server_stop(rel_server *s, int sig, uint32_t timeout_ms)
{
    if (s->pid <= 0)
        return 0;
    kill(s->pid, sig);
    uint64_t end = vg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid)
            break;
        if (vg_now_ns() >= end) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    s->pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

int rel_proc_rss_fds(pid_t pid, uint64_t *rss_kb, unsigned *fds)
{
    uint64_t hwm;
    int rc = bench_proc_rss_kb(pid, rss_kb, &hwm);
    if (rc)
        return rc;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return vg_err_set(VG_EIO, "%s: %s", path, strerror(errno));
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    *fds = n;
    return VG_OK;
}

int rel_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    return vg_read_file(path, max, out, len);
}

void rel_utc_now(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
