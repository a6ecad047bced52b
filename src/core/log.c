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

static _Atomic uint64_t log_dropped_total;

/* One line: the escaped message, then the unescaped suffix (ours, never a client's). */
__attribute__((format(printf, 4, 0))) static void
log_line(vg_log_level level, const char *module, const char *suffix, const char *fmt, va_list ap)
{
    char line[LOG_LINE_BYTES];
    char msg[LOG_LINE_BYTES];
    char ts[32];
    vg_format_time(vg_wall_ms(), ts, sizeof ts);
    int n =
        snprintf(line, sizeof line, "%s %s [%s] ", ts, level_names[level], module ? module : "-");
    if (n < 0)
        return;
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : VG_MIN((size_t)m, sizeof msg - 1);
    size_t slen = suffix ? strlen(suffix) : 0;
    /* Room for the suffix and the newline after the escaped message. */
    size_t len = (size_t)n + vg_log_escape(msg, mlen, line + n, sizeof line - (size_t)n - 1 - slen);
    if (slen) {
        memcpy(line + len, suffix, slen);
        len += slen;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nothing sensible to do if stderr is gone */
}

void vg_log(vg_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level) || level >= VG_LOG_OFF)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, module, NULL, fmt, ap);
    va_end(ap);
}

int vg_log_limit_admit(vg_log_limit *lim, uint64_t now_ns, uint32_t *dropped_before)
{
    uint64_t win = now_ns / ((uint64_t)VG_LOG_WINDOW_MS * 1000000u);
    uint64_t cur = atomic_load(&lim->window);
    /* The first caller of a new window resets its budget; racing callers of the same instant
     * see the swap done and share the fresh budget. */
    if (win != cur && atomic_compare_exchange_strong(&lim->window, &cur, win))
        atomic_store(&lim->used, 0);
    if (atomic_fetch_add(&lim->used, 1) >= VG_LOG_BURST_LINES) {
        atomic_fetch_add(&lim->dropped, 1);
        atomic_fetch_add(&log_dropped_total, 1);
        return 0;
    }
    *dropped_before = atomic_exchange(&lim->dropped, 0);
    return 1;
}

void vg_log_limited(vg_log_limit *lim, vg_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level) || level >= VG_LOG_OFF)
        return;
    uint32_t dropped = 0;
    if (!vg_log_limit_admit(lim, vg_now_ns(), &dropped))
        return;
    char suffix[64] = "";
    if (dropped)
        snprintf(suffix, sizeof suffix, " (%u similar lines dropped)", dropped);
    va_list ap;
    va_start(ap, fmt);
    log_line(level, module, suffix, fmt, ap);
    va_end(ap);
}

uint64_t vg_log_dropped_total(void)
{
    return atomic_load(&log_dropped_total);
}
