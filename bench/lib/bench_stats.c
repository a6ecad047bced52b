/* bench: text buffer, samples, percentiles and histograms. */
#include "bench/lib/bench.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text buffer ---------------------------------------------------------------------------- */

void bench_buf_init(bench_buf *b)
{
    memset(b, 0, sizeof *b);
}

void bench_buf_deinit(bench_buf *b)
{
    if (!b)
        return;
    vg_free(b->data);
    memset(b, 0, sizeof *b);
}

void bench_buf_reset(bench_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

static int buf_reserve(bench_buf *b, size_t extra)
{
    if (b->failed)
        return VG_ENOMEM;
    size_t need;
    if (vg_add_size(b->len, extra, &need) || vg_add_size(need, 1, &need)) {
        b->failed = 1;
        return VG_ENOMEM;
    }
    if (need <= b->cap)
        return VG_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = vg_realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return VG_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return VG_OK;
}

int bench_buf_append(bench_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len))
        return VG_ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return VG_OK;
}

int bench_buf_puts(bench_buf *b, const char *s)
{
    return bench_buf_append(b, s, strlen(s));
}

int bench_buf_printf(bench_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return VG_EINVAL;
    if ((size_t)n < sizeof small)
        return bench_buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n))
        return VG_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return VG_OK;
}

int bench_buf_xml(bench_buf *b, const char *s)
{
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '&':
            e = "&amp;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&apos;";
            break;
        default:
            break;
        }
        int rc = e ? bench_buf_puts(b, e) : bench_buf_append(b, s, 1);
        if (rc)
            return rc;
    }
    return VG_OK;
}

/* ---- samples -------------------------------------------------------------------------------- */

struct bench_samples {
    uint64_t *v; /* owned */
    size_t n, cap;
};

int bench_samples_new(size_t hint, bench_samples **out)
{
    bench_samples *s = vg_calloc(1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    if (hint) {
        size_t bytes;
        if (vg_mul_size(hint, sizeof(uint64_t), &bytes) || !(s->v = vg_malloc(bytes))) {
            vg_free(s);
            return VG_ENOMEM;
        }
        s->cap = hint;
    }
    *out = s;
    return VG_OK;
}

void bench_samples_free(bench_samples *s)
{
    if (!s)
        return;
    vg_free(s->v);
    vg_free(s);
}

static int samples_reserve(bench_samples *s, size_t extra)
{
    size_t need;
    if (vg_add_size(s->n, extra, &need))
        return VG_ENOMEM;
    if (need <= s->cap)
        return VG_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    size_t bytes;
    if (vg_mul_size(cap, sizeof(uint64_t), &bytes))
        return VG_ENOMEM;
    uint64_t *p = vg_realloc(s->v, bytes);
    if (!p)
        return VG_ENOMEM;
    s->v = p;
    s->cap = cap;
    return VG_OK;
}

int bench_samples_add(bench_samples *s, uint64_t v)
{
    if (s->n == s->cap && samples_reserve(s, 1))
        return VG_ENOMEM;
    s->v[s->n++] = v;
    return VG_OK;
}

int bench_samples_merge(bench_samples *dst, const bench_samples *src)
{
    if (!src || !src->n)
        return VG_OK;
    if (samples_reserve(dst, src->n))
        return VG_ENOMEM;
    memcpy(dst->v + dst->n, src->v, src->n * sizeof(uint64_t));
    dst->n += src->n;
    return VG_OK;
}

size_t bench_samples_count(const bench_samples *s)
{
    return s ? s->n : 0;
}

const uint64_t *bench_samples_data(const bench_samples *s)
{
    return s->v;
}

void bench_samples_clear(bench_samples *s)
{
    s->n = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(const uint64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    if (!(q > 0))
        return (double)sorted[0];
    if (q >= 1)
        return (double)sorted[n - 1];
    double rank = q * (double)(n - 1);
    size_t lo = (size_t)rank;
    double frac = rank - (double)lo;
    if (lo + 1 >= n)
        return (double)sorted[n - 1];
    return (double)sorted[lo] + frac * ((double)sorted[lo + 1] - (double)sorted[lo]);
}

void bench_samples_summarize(bench_samples *s, bench_summary *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !s->n)
        return;
    qsort(s->v, s->n, sizeof(uint64_t), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += (double)s->v[i];
    out->n = s->n;
    out->min = (double)s->v[0];
    out->max = (double)s->v[s->n - 1];
    out->mean = sum / (double)s->n;
    out->p50 = bench_percentile(s->v, s->n, 0.50);
    out->p95 = bench_percentile(s->v, s->n, 0.95);
    out->p99 = bench_percentile(s->v, s->n, 0.99);
}

/* ---- histogram ------------------------------------------------------------------------------ */

int bench_histogram_log(const uint64_t *values, size_t n, double lo, double hi, unsigned nbins,
                        uint64_t *counts)
{
    if (!(lo >= 1) || !(hi > lo) || nbins == 0 || !counts)
        return vg_err_set(VG_EINVAL, "histogram: need 1 <= lo < hi and bins > 0");
    memset(counts, 0, nbins * sizeof *counts);
    double span = log(hi / lo);
    for (size_t i = 0; i < n; i++) {
        double v = (double)values[i];
        unsigned b;
        if (v < lo)
            b = 0;
        else if (v >= hi)
            b = nbins - 1;
        else {
            double f = log(v / lo) / span * nbins;
            b = f >= nbins ? nbins - 1 : (unsigned)f;
        }
        counts[b]++;
    }
    return VG_OK;
}

double bench_histogram_edge(double lo, double hi, unsigned nbins, unsigned i)
{
    if (i >= nbins)
        return hi;
    return lo * pow(hi / lo, (double)i / nbins);
}
