/* obs: output buffer, number formatting and UTF-8 cleaning for the renderers. */
#include "obs/obs_int.h"

#include "core/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int buf_reserve(obs__buf *b, size_t more)
{
    if (b->oom)
        return 0;
    size_t need;
    if (vg_add_size(b->n, more, &need) || vg_add_size(need, 1, &need)) {
        b->oom = 1;
        return 0;
    }
    if (need <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = vg_realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void obs__buf_put(obs__buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void obs__buf_puts(obs__buf *b, const char *s)
{
    obs__buf_put(b, s, strlen(s));
}

void obs__buf_printf(obs__buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        obs__buf_put(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void obs__buf_json_str(obs__buf *b, const char *s)
{
    obs__buf_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        obs__buf_put(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"':
            obs__buf_put(b, "\\\"", 2);
            break;
        case '\\':
            obs__buf_put(b, "\\\\", 2);
            break;
        case '\n':
            obs__buf_put(b, "\\n", 2);
            break;
        case '\t':
            obs__buf_put(b, "\\t", 2);
            break;
        default:
            obs__buf_printf(b, "\\u%04x", c);
        }
    }
    obs__buf_put(b, run, (size_t)(s - run));
    obs__buf_put(b, "\"", 1);
}

void obs__buf_json_num(obs__buf *b, double v)
{
    if (!isfinite(v)) {
        obs__buf_puts(b, "null");
        return;
    }
    char tmp[32];
    obs__fmt_double(v, tmp);
    obs__buf_puts(b, tmp);
}

int obs__buf_finish(obs__buf *b, char **out, size_t *len)
{
    if (!b->oom && !b->p)
        buf_reserve(b, 0);
    if (b->oom) {
        vg_free(b->p);
        memset(b, 0, sizeof *b);
        return vg_err_set(VG_ENOMEM, "rendering metrics");
    }
    *out = b->p;
    if (len)
        *len = b->n;
    memset(b, 0, sizeof *b);
    return VG_OK;
}

void obs__fmt_double(double v, char *out)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, 32, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            return;
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid (overlong forms, surrogates
 * and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min, cp;
    if ((c & 0xe0) == 0xc0) {
        n = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void obs__utf8_clean(const char *s, char *out, size_t cap)
{
    static const char repl[] = "\xef\xbf\xbd";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        size_t n = utf8_seq(p);
        const char *src = n ? (const char *)p : repl;
        size_t len = n ? n : 3;
        if (o + len + 1 > cap)
            break;
        memcpy(out + o, src, len);
        o += len;
        p += n ? n : 1;
    }
    out[o] = '\0';
}
