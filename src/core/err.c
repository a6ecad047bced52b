/* Error codes and the per-thread detail message (see core.h). */
#include "core/core.h"

#include <stdio.h>

static _Thread_local char err_detail[512];
static _Thread_local int err_code;

const char *vg_strerror(int code)
{
    switch (code) {
#define VG_ERR_CASE(name, value, text)                                                             \
    case value:                                                                                    \
        return text;
        VG_ERRORS(VG_ERR_CASE)
#undef VG_ERR_CASE
    }
    return "unknown error";
}

const char *vg_errname(int code)
{
    switch (code) {
#define VG_ERR_CASE(name, value, text)                                                             \
    case value:                                                                                    \
        return #name;
        VG_ERRORS(VG_ERR_CASE)
#undef VG_ERR_CASE
    }
    return "VG_EUNKNOWN";
}

int vg_err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_detail, sizeof err_detail, fmt, ap);
    va_end(ap);
    err_code = code;
    return code;
}

const char *vg_err_msg(void)
{
    if (err_detail[0])
        return err_detail;
    return vg_strerror(err_code);
}

void vg_err_clear(void)
{
    err_detail[0] = '\0';
    err_code = 0;
}
