/* Line-oriented logging to stderr. One write(2) per line so lines from different threads never
 * interleave; the level is an atomic read on the hot path. */
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int log_level = VG_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void vg_log_set_level(vg_log_level level)
{
    atomic_store(&log_level, (int)level);
}

vg_log_level vg_log_get_level(void)
{
    return (vg_log_level)atomic_load(&log_level);
}

int vg_log_parse_level(const char *name, vg_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (size_t i = 0; i < VG_ARRAY_LEN(names); i++) {
        if (name && strcmp(name, names[i]) == 0) {
            *out = (vg_log_level)i;
            return VG_OK;
        }
    }
    return vg_err_set(VG_EINVAL, "unknown log level '%s' (debug|info|warn|error|off)",
                      name ? name : "");
}

#define LOG_LINE_BYTES 2048 /* longer lines are cut */

size_t vg_log_escape(const char *src, size_t n, char *dst, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        char esc[4];
        size_t k = 0;
        if (ch == '\\' || ch == '"') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[k++] = '\\';
            esc[k++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[ch >> 4];
            esc[k++] = hex[ch & 15];
        } else {
            esc[k++] = (char)ch;
        }
        if (o + k >= cap)
            break;
        memcpy(dst + o, esc, k);
        o += k;
    }
    dst[o] = 0;
    return o;
}

void vg_log(vg_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level) || level >= VG_LOG_OFF)
        return;
    char line[LOG_LINE_BYTES];
    char msg[LOG_LINE_BYTES];
    char ts[32];
    vg_format_time(vg_wall_ms(), ts, sizeof ts);
    int n =
        snprintf(line, sizeof line, "%s %s [%s] ", ts, level_names[level], module ? module : "-");
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : VG_MIN((size_t)m, sizeof msg - 1);
    /* Room for the newline after the escaped message. */
    size_t len = (size_t)n + vg_log_escape(msg, mlen, line + n, sizeof line - (size_t)n - 1);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nothing sensible to do if stderr is gone */
}
