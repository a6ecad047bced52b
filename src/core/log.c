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

void vg_log(vg_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level) || level >= VG_LOG_OFF)
        return;
    char line[2048];
    char ts[32];
    vg_format_time(vg_wall_ms(), ts, sizeof ts);
    int n =
        snprintf(line, sizeof line, "%s %s [%s] ", ts, level_names[level], module ? module : "-");
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nothing sensible to do if stderr is gone */
}
