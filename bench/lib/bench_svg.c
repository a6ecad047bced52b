/* bench: small, dependency-free SVG charts for the Markdown report (lines with markers, bars).
 * Every text goes through XML escaping; numbers are printed with %g so the document is plain
 * ASCII and well-formed whatever the data. */
#include "bench/lib/bench.h"
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SVG_W 760
#define SVG_H 420
#define SVG_ML 80  /* left margin: y tick labels */
#define SVG_MR 170 /* right margin: legend */
#define SVG_MT 40
#define SVG_MB 56

static const char *const svg_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

typedef struct axis {
    int log;
    double lo, hi; /* in data units (log: > 0) */
} axis;

static double axis_t(const axis *a, double v) /* 0..1 */
{
    if (a->log)
        return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}

static int point_ok(const axis *a, double v)
{
    return isfinite(v) && (!a->log || v > 0);
}

/* Nice bounds: log axes to whole decades, linear ones to a multiple of a 1/2/5 step from 0 when
 * all values are positive. */
static double nice_step(double span)
{
    double raw = span / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void axis_fix(axis *a)
{
    if (a->log) {
        a->lo = pow(10, floor(log10(a->lo)));
        a->hi = pow(10, ceil(log10(a->hi)));
        if (a->hi <= a->lo)
            a->hi = a->lo * 10;
        return;
    }
    if (a->lo > 0)
        a->lo = 0;
    if (a->hi <= a->lo)
        a->hi = a->lo + 1;
    double step = nice_step(a->hi - a->lo);
    a->lo = floor(a->lo / step) * step;
    a->hi = ceil(a->hi / step) * step;
}

static void fmt_num(char *buf, size_t n, double v)
{
    double av = fabs(v);
    if (av >= 1e6 && fmod(av, 1e6) == 0)
        snprintf(buf, n, "%gM", v / 1e6);
    else if (av >= 1e4 && fmod(av, 1e3) == 0)
        snprintf(buf, n, "%gk", v / 1e3);
    else
        snprintf(buf, n, "%.4g", v);
}

static void svg_head(bench_buf *b, const char *title)
{
    bench_buf_printf(b,
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                     "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                     "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
                     "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">",
                     SVG_W, SVG_H, SVG_W, SVG_H, SVG_W, SVG_H, SVG_ML);
    bench_buf_xml(b, title ? title : "");
    bench_buf_puts(b, "</text>\n");
}

/* Axis lines, grid, ticks and labels for the plot area. */
static void svg_axes(bench_buf *b, const axis *ax, const axis *ay, const char *xlabel,
                     const char *ylabel, int x_ticks)
{
    int pw = SVG_W - SVG_ML - SVG_MR, ph = SVG_H - SVG_MT - SVG_MB;
    char num[32];
    /* y ticks */
    for (int pass = 0; pass < 2; pass++) {
        const axis *a = pass ? ax : ay;
        if (pass && !x_ticks)
            break;
        double ticks[64];
        int nt = 0;
        if (a->log) {
            for (double v = a->lo; v <= a->hi * 1.0001 && nt < 64; v *= 10)
                ticks[nt++] = v;
        } else {
            double step = nice_step(a->hi - a->lo);
            for (double v = a->lo; v <= a->hi + step * 1e-6 && nt < 64; v += step)
                ticks[nt++] = v;
        }
        for (int i = 0; i < nt; i++) {
            double t = axis_t(a, ticks[i]);
            fmt_num(num, sizeof num, ticks[i]);
            if (!pass) {
                double y = SVG_MT + ph * (1 - t);
                bench_buf_printf(b,
                                 "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                                 "stroke=\"#e0e0e0\"/>\n<text x=\"%d\" y=\"%.1f\" "
                                 "text-anchor=\"end\">%s</text>\n",
                                 SVG_ML, y, SVG_ML + pw, y, SVG_ML - 6, y + 4, num);
            } else {
                double x = SVG_ML + pw * t;
                bench_buf_printf(b,
                                 "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                                 "stroke=\"#e0e0e0\"/>\n<text x=\"%.1f\" y=\"%d\" "
                                 "text-anchor=\"middle\">%s</text>\n",
                                 x, SVG_MT, x, SVG_MT + ph, x, SVG_MT + ph + 16, num);
            }
        }
    }
    bench_buf_printf(b,
                     "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n"
                     "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
                     SVG_ML, SVG_MT, SVG_ML, SVG_MT + ph, SVG_ML, SVG_MT + ph, SVG_ML + pw,
                     SVG_MT + ph);
    bench_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", SVG_ML + pw / 2,
                     SVG_H - 12);
    bench_buf_xml(b, xlabel ? xlabel : "");
    bench_buf_printf(b,
                     "</text>\n<text x=\"16\" y=\"%d\" text-anchor=\"middle\" "
                     "transform=\"rotate(-90 16 %d)\">",
                     SVG_MT + ph / 2, SVG_MT + ph / 2);
    bench_buf_xml(b, ylabel ? ylabel : "");
    bench_buf_puts(b, "</text>\n");
}

int bench_svg_lines(const bench_chart *c, bench_buf *out)
{
    axis ax = {c->logx, INFINITY, -INFINITY}, ay = {c->logy, INFINITY, -INFINITY};
    size_t points = 0;
    for (size_t s = 0; s < c->n_series; s++) {
        const bench_series *se = &c->series[s];
        for (size_t i = 0; i < se->n; i++) {
            if (!point_ok(&ax, se->x[i]) || !point_ok(&ay, se->y[i]))
                continue;
            ax.lo = fmin(ax.lo, se->x[i]);
            ax.hi = fmax(ax.hi, se->x[i]);
            ay.lo = fmin(ay.lo, se->y[i]);
            ay.hi = fmax(ay.hi, se->y[i]);
            points++;
        }
    }
    if (!points)
        return vg_err_set(VG_EINVAL, "chart '%s': no point to draw", c->title ? c->title : "");
    if (ax.hi <= ax.lo) { /* one x value: widen around it */
        ax.lo = ax.log ? ax.lo / 2 : ax.lo - 1;
        ax.hi = ax.log ? ax.hi * 2 : ax.hi + 1;
    }
    axis_fix(&ax);
    axis_fix(&ay);
    int pw = SVG_W - SVG_ML - SVG_MR, ph = SVG_H - SVG_MT - SVG_MB;
    svg_head(out, c->title);
    svg_axes(out, &ax, &ay, c->xlabel, c->ylabel, 1);
    for (size_t s = 0; s < c->n_series; s++) {
        const bench_series *se = &c->series[s];
        const char *col = svg_colors[s % VG_ARRAY_LEN(svg_colors)];
        bench_buf_printf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                         col);
        for (size_t i = 0; i < se->n; i++) {
            if (!point_ok(&ax, se->x[i]) || !point_ok(&ay, se->y[i]))
                continue;
            bench_buf_printf(out, "%.1f,%.1f ", SVG_ML + pw * axis_t(&ax, se->x[i]),
                             SVG_MT + ph * (1 - axis_t(&ay, se->y[i])));
        }
        bench_buf_puts(out, "\"/>\n");
        for (size_t i = 0; i < se->n; i++) {
            if (!point_ok(&ax, se->x[i]) || !point_ok(&ay, se->y[i]))
                continue;
            bench_buf_printf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                             SVG_ML + pw * axis_t(&ax, se->x[i]),
                             SVG_MT + ph * (1 - axis_t(&ay, se->y[i])), col);
        }
        int ly = SVG_MT + 10 + (int)s * 18;
        bench_buf_printf(out,
                         "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"4\" fill=\"%s\"/>\n"
                         "<text x=\"%d\" y=\"%d\">",
                         SVG_W - SVG_MR + 12, ly - 4, col, SVG_W - SVG_MR + 32, ly + 1);
        bench_buf_xml(out, se->name ? se->name : "");
        bench_buf_puts(out, "</text>\n");
    }
    bench_buf_puts(out, "</svg>\n");
    return out->failed ? VG_ENOMEM : VG_OK;
}

int bench_svg_bars(const char *title, const char *ylabel, const char *const *labels,
                   const double *values, size_t n, int logy, bench_buf *out)
{
    axis ay = {logy, INFINITY, -INFINITY};
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (!point_ok(&ay, values[i]))
            continue;
        ay.lo = fmin(ay.lo, values[i]);
        ay.hi = fmax(ay.hi, values[i]);
        ok++;
    }
    if (!ok)
        return vg_err_set(VG_EINVAL, "chart '%s': no bar to draw", title ? title : "");
    if (!logy)
        ay.lo = 0;
    axis_fix(&ay);
    axis ax = {0, 0, 1};
    int pw = SVG_W - SVG_ML - SVG_MR, ph = SVG_H - SVG_MT - SVG_MB;
    svg_head(out, title);
    svg_axes(out, &ax, &ay, "", ylabel, 0);
    double slot = (double)pw / (double)n, bw = slot * 0.7;
    for (size_t i = 0; i < n; i++) {
        double x = SVG_ML + slot * (double)i + (slot - bw) / 2;
        if (point_ok(&ay, values[i])) {
            double t = axis_t(&ay, values[i]);
            if (t < 0)
                t = 0;
            double y = SVG_MT + ph * (1 - t);
            bench_buf_printf(out,
                             "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                             "fill=\"%s\"/>\n",
                             x, y, bw, SVG_MT + ph - y, svg_colors[0]);
            char num[32];
            fmt_num(num, sizeof num, values[i]);
            bench_buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                             x + bw / 2, y - 4, num);
        }
        bench_buf_printf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x + bw / 2,
                         SVG_MT + ph + 16);
        bench_buf_xml(out, labels[i] ? labels[i] : "");
        bench_buf_puts(out, "</text>\n");
    }
    bench_buf_puts(out, "</svg>\n");
    return out->failed ? VG_ENOMEM : VG_OK;
}
