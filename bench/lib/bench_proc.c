/* bench: child processes (the server under test, a throwaway redis-server), free ports, RSS,
 * temporary directories. Children get their own temporary directory and a loopback port; they
 * are stopped with SIGTERM (SIGKILL after a grace period) and their directory is removed. */
#include "bench/lib/bench.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROC_STOP_GRACE_MS 15000
#define PROC_DEFAULT_START_MS 60000
#define PROC_MAX_ARGS 64

int bench_free_port(uint16_t *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vg_err_set(VG_EIO, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return vg_err_set(VG_EIO, "bind: %s", strerror(errno));
    }
    close(fd);
    *out = ntohs(sa.sin_port);
    return VG_OK;
}

int bench_proc_cpu_s(pid_t pid, double *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return vg_err_set(VG_EIO, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name (field 2) may hold spaces: fields are counted after its ')' */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return vg_err_set(VG_ECORRUPT, "%s: unexpected format", path);
    long hz = sysconf(_SC_CLK_TCK);
    *out = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
    return VG_OK;
}

int bench_proc_rss_kb(pid_t pid, uint64_t *rss_kb, uint64_t *hwm_kb)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return vg_err_set(VG_EIO, "%s: %s", path, strerror(errno));
    char line[256];
    uint64_t rss = 0, hwm = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
            rss = v;
        else if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
            hwm = v;
    }
    fclose(f);
    if (rss_kb)
        *rss_kb = rss;
    if (hwm_kb)
        *hwm_kb = hwm;
    return rss ? VG_OK : vg_err_set(VG_EIO, "%s: no VmRSS", path);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

int bench_rmtree(const char *path)
{
    if (!path || !*path)
        return VG_EINVAL;
    return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) == 0 ? VG_OK : VG_EIO;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* fork + exec argv with stdout and stderr to log (or /dev/null); the child gets its own
 * process group so a stop can reach anything it starts. */
static int spawn(char *const *argv, const char *log, pid_t *out)
{
    pid_t pid = fork();
    if (pid < 0)
        return vg_err_set(VG_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        _exit(127);
    }
    *out = pid;
    return VG_OK;
}

/* SIGTERM, then SIGKILL after grace_ms; reaps the child. */
static void stop_child(pid_t pid, unsigned grace_ms)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    uint64_t end = vg_now_ns() + (uint64_t)grace_ms * 1000000ull;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return;
        if (vg_now_ns() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return;
        }
        sleep_ms(20);
    }
}

static int child_alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

/* ---- vigil serve ----------------------------------------------------------------------------- */

struct bench_server {
    pid_t pid;
    uint16_t port;
    char dir[256];
    char admin_key[80];
    char tenant_key[160];
};

uint16_t bench_server_port(const bench_server *s)
{
    return s->port;
}

pid_t bench_server_pid(const bench_server *s)
{
    return s->pid;
}

const char *bench_server_tenant_key(const bench_server *s)
{
    return s->tenant_key;
}

const char *bench_server_data_dir(const bench_server *s)
{
    return s->dir;
}

/* POSTs a JSON body and reads one string field of the JSON answer into out. */
static int post_json_field(uint16_t port, const char *path, const char *bearer, const char *body,
                           const char *field, char *out, size_t outlen)
{
    bench_buf resp;
    bench_buf_init(&resp);
    int status = 0;
    int rc = bench_http_call(port, "POST", path, bearer, "application/json", body, strlen(body),
                             10000, &status, &resp);
    if (rc == VG_OK && status != 201 && status != 200)
        rc = vg_err_set(VG_EIO, "POST %s answered %d: %.200s", path, status,
                        resp.data ? resp.data : "");
    if (rc == VG_OK) {
        json_error_t je;
        json_t *j = json_loadb(resp.data, resp.len, 0, &je);
        const char *v = j ? json_string_value(json_object_get(j, field)) : NULL;
        if (v)
            snprintf(out, outlen, "%s", v);
        else
            rc = vg_err_set(VG_ECORRUPT, "POST %s: no '%s' in the answer", path, field);
        json_decref(j);
    }
    bench_buf_deinit(&resp);
    return rc;
}

int bench_server_start(const bench_server_opts *o, bench_server **out)
{
    bench_server *s = vg_calloc(1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->pid = -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/vigil-bench-XXXXXX");
    int rc;
    if (!mkdtemp(s->dir)) {
        rc = vg_err_set(VG_EIO, "mkdtemp: %s", strerror(errno));
        s->dir[0] = 0;
        goto fail;
    }
    uint8_t rnd[32];
    if ((rc = vg_random_bytes(rnd, sizeof rnd)))
        goto fail;
    memcpy(s->admin_key, "va_", 3);
    vg_hex_encode(rnd, sizeof rnd, s->admin_key + 3);
    if ((rc = bench_free_port(&s->port)))
        goto fail;
    char listen[32], datadir[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", s->port);
    snprintf(datadir, sizeof datadir, "%s/data", s->dir);
    char *argv[PROC_MAX_ARGS];
    int n = 0;
    argv[n++] = (char *)o->vigil;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--data-dir";
    argv[n++] = datadir;
    argv[n++] = "--admin-key";
    argv[n++] = s->admin_key;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    /* Every connection of the load generator comes from 127.0.0.1: the per-address cap (a
     * quarter of max_connections by default) would refuse the thousands of users it stands
     * for (the 12,000-connection row held 512-1,949 and counted the rest as errors). */
    argv[n++] = "--max-connections-per-ip";
    argv[n++] = "0";
    for (size_t i = 0; o->args && o->args[i]; i++) {
        if (n >= PROC_MAX_ARGS - 1) {
            rc = vg_err_set(VG_EINVAL, "too many server arguments");
            goto fail;
        }
        argv[n++] = (char *)o->args[i];
    }
    argv[n] = NULL;
    if ((rc = spawn(argv, o->log_path, &s->pid)))
        goto fail;
    uint64_t end =
        vg_now_ns() +
        (uint64_t)(o->start_timeout_ms ? o->start_timeout_ms : PROC_DEFAULT_START_MS) * 1000000ull;
    for (;;) {
        int status = 0;
        if (bench_http_call(s->port, "GET", "/api/v1/health/live", NULL, NULL, NULL, 0, 2000,
                            &status, NULL) == VG_OK &&
            status == 200)
            break;
        if (!child_alive(s->pid)) {
            s->pid = -1;
            rc = vg_err_set(VG_EIO, "vigil serve exited during start-up (see %s)",
                            o->log_path ? o->log_path : "its log");
            goto fail;
        }
        if (vg_now_ns() > end) {
            rc = vg_err_set(VG_ETIMEDOUT, "vigil serve did not answer within the start timeout");
            goto fail;
        }
        sleep_ms(50);
    }
    char tenant[96], path[160];
    if ((rc = post_json_field(s->port, "/api/v1/tenants", s->admin_key,
                              "{\"name\":\"bench\",\"kind\":\"agency\"}", "id", tenant,
                              sizeof tenant)))
        goto fail;
    snprintf(path, sizeof path, "/api/v1/tenants/%s/keys", tenant);
    if ((rc = post_json_field(s->port, path, s->admin_key, "{\"name\":\"bench\"}", "key",
                              s->tenant_key, sizeof s->tenant_key)))
        goto fail;
    *out = s;
    return VG_OK;
fail:
    bench_server_stop(s);
    return rc;
}

void bench_server_stop(bench_server *s)
{
    if (!s)
        return;
    stop_child(s->pid, PROC_STOP_GRACE_MS);
    if (s->dir[0])
        bench_rmtree(s->dir);
    vg_free(s);
}

/* ---- redis-server ---------------------------------------------------------------------------- */

struct bench_redis {
    pid_t pid;
    uint16_t port;
};

static int on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char buf[4096];
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0)
            return 1;
        path += n + (e ? 1 : 0);
    }
    return 0;
}

int bench_redis_start(bench_redis **out)
{
    if (!on_path("redis-server"))
        return vg_err_set(VG_EUNSUPPORTED, "redis-server is not installed");
    bench_redis *r = vg_calloc(1, sizeof *r);
    if (!r)
        return VG_ENOMEM;
    int rc = bench_free_port(&r->port);
    if (rc) {
        vg_free(r);
        return rc;
    }
    char port[16];
    snprintf(port, sizeof port, "%u", r->port);
    char *argv[] = {"redis-server", "--port",     port,           "--bind", "127.0.0.1",
                    "--save",       "",           "--appendonly", "no",     "--daemonize",
                    "no",           "--loglevel", "warning",      NULL};
    if ((rc = spawn(argv, NULL, &r->pid))) {
        vg_free(r);
        return rc;
    }
    uint64_t end = vg_now_ns() + 10000000000ull;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(r->port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            break;
        if (!child_alive(r->pid) || vg_now_ns() > end) {
            bench_redis_stop(r);
            return vg_err_set(VG_EIO, "redis-server did not start on port %u", r->port);
        }
        sleep_ms(20);
    }
    *out = r;
    return VG_OK;
}

void bench_redis_stop(bench_redis *r)
{
    if (!r)
        return;
    stop_child(r->pid, 5000);
    vg_free(r);
}

uint16_t bench_redis_port(const bench_redis *r)
{
    return r->port;
}
