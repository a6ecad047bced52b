/* Whole-file reads with a size cap, atomic writes (temp + fsync + rename + dir fsync), mkdir -p,
 * and the size/duration parsers used by configuration. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vg_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vg_err_set(errno == ENOENT ? VG_ENOTFOUND : VG_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 64 * 1024, len = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > max_bytes) {
            if (fd != STDIN_FILENO)
                close(fd);
            return vg_err_set(VG_ETOOBIG, "%s: %lld bytes exceeds the limit of %zu bytes", path,
                              (long long)st.st_size, max_bytes);
        }
        cap = (size_t)st.st_size + 1;
    }
    uint8_t *buf = vg_malloc(cap);
    int rc = VG_OK;
    if (!buf) {
        rc = VG_ENOMEM;
        goto done;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max_bytes + 1) {
                rc = vg_err_set(VG_ETOOBIG, "%s: input exceeds the limit of %zu bytes", path,
                                max_bytes);
                goto done;
            }
            size_t ncap = cap * 2;
            uint8_t *nb = vg_realloc(buf, ncap);
            if (!nb) {
                rc = VG_ENOMEM;
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = vg_err_set(VG_EIO, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max_bytes) {
            rc =
                vg_err_set(VG_ETOOBIG, "%s: input exceeds the limit of %zu bytes", path, max_bytes);
            goto done;
        }
    }
    buf[len] = '\0';
done:
    if (fd != STDIN_FILENO)
        close(fd);
    if (rc != VG_OK) {
        vg_free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return VG_OK;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return VG_EIO;
    int rc = fsync(fd) == 0 ? VG_OK : VG_EIO;
    close(fd);
    return rc;
}

int vg_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    uint32_t rnd = 0;
    vg_random_bytes(&rnd, sizeof rnd);
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%d.%08x", path, (int)getpid(), rnd);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return vg_err_set(VG_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return vg_err_set(VG_EIO, "%s: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return vg_err_set(VG_EIO, "%s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return vg_err_set(VG_EIO, "%s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vg_err_set(VG_EIO, "rename to %s: %s", path, strerror(e));
    }
    return fsync_dir_of(path);
}

int vg_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return vg_err_set(VG_EINVAL, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return vg_err_set(VG_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return vg_err_set(VG_EIO, "mkdir %s: %s", buf, strerror(errno));
    return VG_OK;
}

int vg_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return vg_err_set(VG_EINVAL, "empty size");
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return vg_err_set(VG_EINVAL, "bad size '%s'", s);
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {{"", 0},     {"b", 0},   {"k", 10},   {"kb", 10}, {"kib", 10},
                 {"m", 20},   {"mb", 20}, {"mib", 20}, {"g", 30},  {"gb", 30},
                 {"gib", 30}, {"t", 40},  {"tb", 40},  {"tib", 40}};
    char suf[8];
    size_t i = 0;
    for (; end[i] && i < sizeof suf - 1; i++)
        suf[i] = (char)(end[i] >= 'A' && end[i] <= 'Z' ? end[i] + 32 : end[i]);
    if (end[i])
        return vg_err_set(VG_EINVAL, "bad size '%s'", s);
    suf[i] = '\0';
    for (size_t u = 0; u < VG_ARRAY_LEN(units); u++) {
        if (strcmp(suf, units[u].suffix) != 0)
            continue;
        if (units[u].shift && v > (UINT64_MAX >> units[u].shift))
            return vg_err_set(VG_EINVAL, "size '%s' overflows", s);
        *out = (uint64_t)v << units[u].shift;
        return VG_OK;
    }
    return vg_err_set(VG_EINVAL, "bad size unit in '%s' (use k, M, G, T)", s);
}

int vg_parse_duration_ms(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return vg_err_set(VG_EINVAL, "empty duration");
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return vg_err_set(VG_EINVAL, "bad duration '%s'", s);
    uint64_t mult;
    if (!*end || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return vg_err_set(VG_EINVAL, "bad duration unit in '%s' (ms, s, m, h)", s);
    if (v > UINT64_MAX / mult)
        return vg_err_set(VG_EINVAL, "duration '%s' overflows", s);
    *out = v * mult;
    return VG_OK;
}
