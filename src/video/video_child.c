/*
 * video_child: runs the decoder in a forked child so that whatever a hostile file does to
 * libavcodec (a crash, an endless loop, an allocation storm) costs that child and never the
 * caller. The child gets an address-space limit, a CPU-time limit, no file writes and only the
 * result pipe among its descriptors; the parent reads the result with a wall deadline and kills
 * the child when it passes.
 *
 * Why fork without exec: the input is already in memory and the child needs nothing but this
 * module's code, so a plain fork is the cheapest isolation; glibc's fork takes malloc's locks
 * around the fork, so the child may allocate even when other threads of the parent were inside
 * malloc. The child never touches any other module's locks (no logging) and leaves with _exit.
 *
 * Protocol on the pipe (same binary at both ends): one video__msg, then msg.n video_frame, then
 * msg.meta.n_images times a video_image header followed by its w*h*3 pixels (faces in video).
 */
#include "video/video_int.h"

#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bytes: the child's allocations of this size or more are mmapped (glibc's default before its
 * dynamic adjustment), so they count against RLIMIT_AS. */
#define VIDEO__CHILD_MMAP_THRESHOLD (128 * 1024)

#define VIDEO__MSG_MAGIC 0x76706471u /* "vpdq" */

typedef struct video__msg {
    uint32_t magic;
    int32_t rc;
    int32_t limit;
    uint32_t reserved;
    uint64_t n;
    video_hash meta; /* frames pointer meaningless here */
    char detail[512];
} video__msg;

static int video__write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* hard_extra: RLIMIT_CPU's hard limit must lie beyond the soft one, or the kernel sends
 * SIGKILL (indistinguishable from the OOM killer) instead of SIGXCPU. */
static void video__set_rlimit(int res, uint64_t v, uint64_t hard_extra)
{
    struct rlimit rl = {.rlim_cur = (rlim_t)v, .rlim_max = (rlim_t)(v + hard_extra)};
    (void)setrlimit(res, &rl);
}

#ifndef VG_SANITIZE
/* Bytes of address space the calling process maps now (/proc/self/statm, first field). */
static uint64_t video__mapped_bytes(void)
{
    char b[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t k = read(fd, b, sizeof b - 1);
    close(fd);
    if (k <= 0)
        return 0;
    b[k] = 0;
    return strtoull(b, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
}
#endif

/* The child: limits, decode, write the result, _exit. Never returns. */
static void video__child_main(int wfd, const uint8_t *buf, size_t len, const video_hash_opts *o)
{
    /* Only the pipe stays open (as fd 3); stdin/stdout/stderr are kept (ASan reports). */
    if (wfd != 3) {
        if (dup2(wfd, 3) < 0)
            _exit(120);
        wfd = 3;
    }
    syscall(SYS_close_range, 4u, ~0u, 0u);
    const video_limits *l = &o->limits;
#ifndef VG_SANITIZE
    /* ASan reserves terabytes of shadow address space: an AS limit would kill it at start.
     * The child inherits the parent's mappings (a server's index, models, thread stacks: GBs),
     * so the limit is what it already maps plus child_mem_bytes: the decoder may grow by that. */
    /* What the parent's allocator keeps mapped but free counts as "already mapped": glibc's
     * dynamic thresholds let a parent that once freed a large block keep up to twice its size
     * of free heap (up to 64 MiB), which the decoder would reuse unseen (a 9 MiB PDQ scratch
     * came out of it, past a 1 MiB child_mem_bytes). So the heap's free top is given back and
     * every large block is mapped anew from here on: the limit counts what the child adds. */
    if (l->child_mem_bytes) {
        mallopt(M_MMAP_THRESHOLD, VIDEO__CHILD_MMAP_THRESHOLD);
        malloc_trim(0);
        video__set_rlimit(RLIMIT_AS, video__mapped_bytes() + l->child_mem_bytes, 0);
    }
#endif
    if (l->child_cpu_s)
        video__set_rlimit(RLIMIT_CPU, l->child_cpu_s, 1);
    video__set_rlimit(RLIMIT_FSIZE, 0, 0);
    video__set_rlimit(RLIMIT_CORE, 0, 0);
    /* The parent's handlers (a crash reporter, a test runner's longjmp) must not run here: a
     * fault ends the child, and the parent reads the signal from its status. */
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGXCPU, SIGTERM};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        signal(fatal[i], SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    if (o->test_child_signal)
        raise(o->test_child_signal);
    /* tests only: a decoder stuck in a loop, for RLIMIT_CPU to end */
    for (volatile unsigned long spin = 0; o->test_child_spin; spin++)
        ;

    video__msg m;
    memset(&m, 0, sizeof m);
    m.magic = VIDEO__MSG_MAGIC;
    video_hash h;
    memset(&h, 0, sizeof h);
    vg_err_clear();
    m.rc = video__decode(buf, len, o, &h);
    m.limit = (int32_t)video_last_limit();
    if (m.rc != VG_OK)
        snprintf(m.detail, sizeof m.detail, "%s", vg_err_msg());
    m.n = h.n;
    m.meta = h;
    m.meta.frames = NULL;
    m.meta.images = NULL;
    if (video__write_all(wfd, &m, sizeof m) != 0 ||
        (h.n && video__write_all(wfd, h.frames, h.n * sizeof *h.frames) != 0))
        _exit(121);
    for (size_t i = 0; i < h.n_images; i++) {
        const video_image *im = &h.images[i];
        if (video__write_all(wfd, im, sizeof *im) != 0 ||
            video__write_all(wfd, im->rgb, (size_t)im->w * im->h * 3) != 0)
            _exit(121);
    }
    _exit(0);
}

/* Whether the bytes after the message and frames are exactly meta.n_images face frames, each
 * within the options' side. */
static int video__images_ok(const video_hash_opts *o, const video__msg *m, const uint8_t *data,
                            size_t len)
{
    size_t off = sizeof *m;
    if (m->n > (len - off) / sizeof(video_frame))
        return 0;
    off += (size_t)m->n * sizeof(video_frame);
    if (m->meta.n_images > (o->face_rate > 0 ? o->face_max_frames : 0))
        return 0;
    for (size_t i = 0; i < m->meta.n_images; i++) {
        video_image im;
        if (len - off < sizeof im)
            return 0;
        memcpy(&im, data + off, sizeof im);
        off += sizeof im;
        if (!im.w || !im.h || im.w > o->face_side_px || im.h > o->face_side_px ||
            (size_t)im.w * im.h * 3 > len - off)
            return 0;
        off += (size_t)im.w * im.h * 3;
    }
    return off == len;
}

/* Copies the n face frames at p (checked by video__images_ok) into h. VG_ENOMEM. */
static int video__images_read(video_hash *h, size_t n, const uint8_t *p)
{
    if (!(h->images = vg_calloc(n, sizeof *h->images)))
        return vg_err_set(VG_ENOMEM, "no memory for %zu face frames", n);
    for (size_t i = 0; i < n; i++) {
        video_image im;
        memcpy(&im, p, sizeof im);
        p += sizeof im;
        size_t bytes = (size_t)im.w * im.h * 3;
        if (!(im.rgb = vg_malloc(bytes)))
            return vg_err_set(VG_ENOMEM, "no memory for a face frame");
        memcpy(im.rgb, p, bytes);
        p += bytes;
        h->images[h->n_images++] = im;
    }
    return VG_OK;
}

static uint64_t video__now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

int video__decode_child(const uint8_t *buf, size_t len, const video_hash_opts *o, video_hash *out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return vg_err_set(VG_EINTERNAL, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return vg_err_set(VG_EINTERNAL, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(p[0]);
        video__child_main(p[1], buf, len, o);
    }
    close(p[1]);

    /* Read everything the child writes, bounded: a message and at most one frame per stream
     * frame allowed. */
    size_t max_bytes = sizeof(video__msg);
    size_t frames_bytes;
    if (vg_mul_size(
            (size_t)(o->limits.max_frames < SIZE_MAX / 64 ? o->limits.max_frames : SIZE_MAX / 64),
            sizeof(video_frame), &frames_bytes) == VG_OK)
        max_bytes += frames_bytes;
    else
        max_bytes = SIZE_MAX;
    if (o->face_rate > 0) { /* and the face frames, each at most face_side_px square */
        size_t img_bytes = sizeof(video_image) + (size_t)o->face_side_px * o->face_side_px * 3;
        size_t all;
        if (vg_mul_size(img_bytes, o->face_max_frames, &all) == VG_OK && max_bytes < SIZE_MAX &&
            all < SIZE_MAX - max_bytes)
            max_bytes += all;
        else
            max_bytes = SIZE_MAX;
    }
    uint8_t *data = NULL;
    size_t len_read = 0, cap = 0;
    int rc = VG_OK, killed_wall = 0, too_much = 0;
    uint64_t deadline = o->limits.wall_ms ? video__now_ms() + o->limits.wall_ms : 0;
    for (;;) {
        int timeout = -1;
        if (deadline) {
            uint64_t now = video__now_ms();
            if (now >= deadline) {
                killed_wall = 1;
                break;
            }
            uint64_t left = deadline - now;
            timeout = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pf, 1, timeout);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            rc = vg_err_set(VG_EINTERNAL, "poll: %s", strerror(errno));
            break;
        }
        if (pr == 0)
            continue; /* the deadline check above ends it */
        if (len_read == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > max_bytes)
                ncap = max_bytes;
            if (ncap <= len_read) {
                too_much = 1;
                break;
            }
            uint8_t *nd = vg_realloc(data, ncap);
            if (!nd) {
                rc = vg_err_set(VG_ENOMEM, "no memory for the decoder's result");
                break;
            }
            data = nd;
            cap = ncap;
        }
        ssize_t k = read(p[0], data + len_read, cap - len_read);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* EOF: the child finished or died */
        len_read += (size_t)k;
    }
    close(p[0]);
    if (killed_wall || too_much || rc != VG_OK)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rc == VG_OK) {
        if (killed_wall)
            rc = video__fail(VG_ETIMEDOUT, VIDEO_LIMIT_WALL, "decoding took over %u ms (wall_ms)",
                             o->limits.wall_ms);
        else if (too_much)
            rc = vg_err_set(VG_ECORRUPT, "decoder child wrote more than its frames");
        else if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            if (sig == SIGXCPU || (sig == SIGKILL && o->limits.child_cpu_s))
                rc = video__fail(VG_ETIMEDOUT, VIDEO_LIMIT_CHILD_CPU,
                                 "decoding used over %u s of CPU (child_cpu_s) or was killed",
                                 o->limits.child_cpu_s);
            else
                rc = video__fail(VG_ECORRUPT, VIDEO_LIMIT_NONE,
                                 "decoder crashed on this input (signal %d, %s)", sig,
                                 strsignal(sig));
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
                   len_read < sizeof(video__msg)) {
            rc = video__fail(VG_ECORRUPT, VIDEO_LIMIT_NONE, "decoder child failed (exit status %d)",
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        } else {
            video__msg m;
            memcpy(&m, data, sizeof m);
            m.detail[sizeof m.detail - 1] = 0;
            if (m.magic != VIDEO__MSG_MAGIC ||
                (m.rc != VG_OK && len_read != sizeof m + m.n * sizeof(video_frame)) ||
                (m.rc == VG_OK && !video__images_ok(o, &m, data, len_read))) {
                rc = vg_err_set(VG_ECORRUPT, "decoder child sent a malformed result");
            } else if (m.rc != VG_OK) {
                video_limit_kind lk = m.limit >= 0 && m.limit < VIDEO_LIMIT_COUNT
                                          ? (video_limit_kind)m.limit
                                          : VIDEO_LIMIT_NONE;
                if (m.rc == VG_ENOMEM) /* in the child that is its address-space limit */
                    rc = video__fail(VG_ETOOBIG, VIDEO_LIMIT_CHILD_MEMORY,
                                     "decoding needs over %llu bytes (child_mem_bytes): %s",
                                     (unsigned long long)o->limits.child_mem_bytes, m.detail);
                else
                    rc = video__fail(m.rc, lk, "%s", m.detail);
            } else {
                video_hash h = m.meta;
                h.frames = NULL;
                h.n = 0;
                if (m.n) {
                    h.frames = vg_malloc(m.n * sizeof(video_frame));
                    if (!h.frames) {
                        rc = vg_err_set(VG_ENOMEM, "no memory for %llu frames",
                                        (unsigned long long)m.n);
                    } else {
                        memcpy(h.frames, data + sizeof m, m.n * sizeof(video_frame));
                        h.n = (size_t)m.n;
                    }
                }
                h.images = NULL;
                size_t n_images = h.n_images;
                h.n_images = 0;
                if (rc == VG_OK && n_images &&
                    (rc = video__images_read(&h, n_images,
                                             data + sizeof m + m.n * sizeof(video_frame))) != VG_OK)
                    video_hash_free(&h);
                if (rc == VG_OK)
                    *out = h;
            }
        }
    }
    vg_free(data);
    return rc;
}
