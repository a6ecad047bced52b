/* obs internals: a growable output buffer with the escaping rules of the two formats, number
 * formatting, and UTF-8 cleaning. Shared by obs.c (metrics) and obs_health.c. */
#ifndef VG_OBS_INT_H
#define VG_OBS_INT_H

#include <stddef.h>

/* Output under construction. An allocation failure sets oom and turns later appends into
 * no-ops, so renderers check once at the end (obs__buf_finish). Owned by one thread. */
typedef struct obs__buf {
    char *p;
    size_t n, cap;
    int oom;
} obs__buf;

void obs__buf_put(obs__buf *b, const char *s, size_t n);
void obs__buf_puts(obs__buf *b, const char *s);
void obs__buf_printf(obs__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal with quotes: ", \ and control characters escaped. s must be UTF-8. */
void obs__buf_json_str(obs__buf *b, const char *s);
/* A JSON number, or null when not finite. */
void obs__buf_json_num(obs__buf *b, double v);
/* On success hands the NUL-terminated text to the caller (*out owned); else VG_ENOMEM and the
 * buffer is freed either way. */
int obs__buf_finish(obs__buf *b, char **out, size_t *len);

/* Shortest of %.15g/%.16g/%.17g that reads back as v; integers below 2^53 without exponent;
 * "NaN", "+Inf", "-Inf". out holds at least 32 bytes. */
void obs__fmt_double(double v, char *out);

/* Copies s into out (cap bytes incl. NUL) replacing invalid UTF-8 sequences by U+FFFD and
 * cutting at a character boundary to fit. */
void obs__utf8_clean(const char *s, char *out, size_t cap);

#endif /* VG_OBS_INT_H */
