/*
 * bench_copyhash: where the balanced analysis's decode + PDQ time goes, stage by stage, per size
 * class (issue 13). Each image is decoded as analyze__prepare does at the balanced level (RGB,
 * DCT-scaled to a long side of at least 832 px), then every step of the hashing is timed on its
 * own: the luma plane, the whole-image hash on the 512 grid, bar finding, each copy region's
 * hash (the rectangles pdq_copy_hashes uses), and pdq_copy_hashes itself (all of them together,
 * as the server calls it).
 *
 *   bench_copyhash [--reps N] [--decode-long PX] [FILE...]
 *
 * Default: bench/images/{S,M,L,HD}.jpg, 30 reps, decoded to a long side of at least 832 px
 * (--decode-long 416: the DCT scale the detector's input alone would need).
 *
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), medians over the reps: what a
 * shared, busy machine distorts least. `--reps 1` under `valgrind --tool=callgrind` gives
 * instruction counts per function.
 */
#include "core/core.h"
#include "img/img.h"
#include "pdq/pdq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_STAGES 11
#define MAX_REPS 10000
#define BALANCED_DECODE_LONG_PX 832 /* fo.input_size 416 x ANALYZE_DECODE_DETECTOR_MULT */

static uint32_t decode_long_px = BALANCED_DECODE_LONG_PX; /* --decode-long PX */

static const char *const stage_names[N_STAGES] = {"decode",  "luma",   "whole",   "bars",
                                                  "trimmed", "flip",   "c90",     "c80",
                                                  "top",     "bottom", "copy_all"};

static double thread_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One region's hash as pdq_copy_hashes computes it; returns its CPU ms (0 when not hashed). */
static double region(pdq_ctx *ctx, const uint8_t *g, uint32_t w, uint32_t h, uint32_t x, uint32_t y,
                     uint32_t cw, uint32_t ch, unsigned flags)
{
    if (cw < PDQ_MIN_SIDE_PX || ch < PDQ_MIN_SIDE_PX || x + cw > w || y + ch > h)
        return 0;
    pdq_result r;
    double t = thread_ms();
    pdq_hash_gray8(ctx, g + (size_t)y * w + x, cw, ch, w, flags, &r);
    return thread_ms() - t;
}

static int run_file(const char *path, int reps)
{
    size_t len;
    uint8_t *buf = NULL;
    if (vg_read_file(path, (size_t)64 << 20, &buf, &len) != VG_OK) {
        fprintf(stderr, "bench_copyhash: cannot read %s: %s\n", path, vg_err_msg());
        return 1;
    }
    pdq_ctx *ctx = pdq_ctx_new();
    double *t = calloc((size_t)N_STAGES * (size_t)reps, sizeof *t);
    uint8_t *gray = NULL, *mirror = NULL;
    img_image im = {0};
    int rc = ctx && t ? 0 : 1;
    for (int rep = 0; rep < reps + 1 && !rc; rep++) { /* rep 0 warms up */
        double *s = t + (size_t)(rep ? rep - 1 : 0) * N_STAGES;
        img_decode_opts o;
        img_decode_opts_default(&o);
        img_info info;
        if (img_probe(buf, len, &o.limits, &info)) {
            rc = 1;
            break;
        }
        if (info.w >= info.h)
            o.min_w = decode_long_px;
        else
            o.min_h = decode_long_px;
        double t0 = thread_ms();
        if (img_decode(buf, len, &o, &im)) {
            rc = 1;
            break;
        }
        s[0] = thread_ms() - t0;
        const uint32_t w = im.w, h = im.h;
        const size_t npix = (size_t)w * h;
        if (!gray && (!(gray = malloc(npix)) || !(mirror = malloc(npix)))) {
            rc = 1;
            break;
        }
        t0 = thread_ms();
        for (size_t i = 0; i < npix; i++) {
            const uint8_t *p = im.px + 3 * i;
            gray[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
        }
        s[1] = thread_ms() - t0;
        pdq_image_result pr;
        t0 = thread_ms();
        pdq_hash_decoded(ctx, &im, PDQ_WANT_DIHEDRAL, &pr);
        s[2] = thread_ms() - t0;
        uint32_t tr[4];
        t0 = thread_ms();
        int bars = pdq_copy_find_bars(gray, w, h, w, tr);
        s[3] = thread_ms() - t0;
        s[4] = bars ? region(ctx, gray, w, h, tr[0], tr[1], w - tr[0] - tr[2], h - tr[1] - tr[3],
                             PDQ_WANT_DIHEDRAL)
                    : 0;
        if (VG_MAX(im.src_w, im.src_h) <= PDQ_COPY_FLIP_MAX_SIDE_PX) {
            t0 = thread_ms();
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    mirror[(size_t)y * w + x] = gray[(size_t)y * w + (w - 1 - x)];
            s[5] = thread_ms() - t0 + region(ctx, mirror, w, h, 0, 0, w, h, PDQ_WANT_DIHEDRAL);
        }
        s[6] = region(ctx, gray, w, h, w / 20, h / 20, w - 2 * (w / 20), h - 2 * (h / 20),
                      PDQ_WANT_DIHEDRAL);
        s[7] = region(ctx, gray, w, h, w / 10, h / 10, w - 2 * (w / 10), h - 2 * (h / 10),
                      PDQ_WANT_DIHEDRAL);
        s[8] = region(ctx, gray, w, h, 0, 0, w, h / 2, 0);
        s[9] = region(ctx, gray, w, h, 0, h / 2, w, h - h / 2, 0);
        pdq_copy_set cs;
        t0 = thread_ms();
        pdq_copy_hashes(ctx, &im,
                        PDQ_COPY_TRIM | PDQ_COPY_FLIP | PDQ_COPY_REGIONS | PDQ_COPY_HALVES, &cs);
        s[10] = thread_ms() - t0;
        if (rep == reps) {
            const char *base = strrchr(path, '/');
            printf("| %s | %ux%u | %zu |", base ? base + 1 : path, w, h, cs.n);
        }
        img_image_free(&im);
    }
    if (!rc) {
        double col[MAX_REPS];
        for (int k = 0; k < N_STAGES; k++) {
            for (int r = 0; r < reps; r++)
                col[r] = t[(size_t)r * N_STAGES + k];
            qsort(col, (size_t)reps, sizeof *col, cmp_double);
            printf(" %.3f |", col[reps / 2]);
        }
        printf("\n");
    }
    free(gray);
    free(mirror);
    free(t);
    pdq_ctx_free(ctx);
    vg_free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = 30, first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--decode-long") && i + 1 < argc) {
            decode_long_px = (uint32_t)atoi(argv[++i]);
        } else {
            first = i;
            break;
        }
    }
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_copyhash: --reps 1..%d\n", MAX_REPS);
        return 2;
    }
    printf("| image | decoded | copy hashes |");
    for (int k = 0; k < N_STAGES; k++)
        printf(" %s ms |", stage_names[k]);
    printf("\n|---|---|---|");
    for (int k = 0; k < N_STAGES; k++)
        printf("---|");
    printf("\n");
    int rc = 0;
    if (first < argc) {
        for (int i = first; i < argc; i++)
            rc |= run_file(argv[i], reps);
    } else {
        static const char *const def[] = {"S", "M", "L", "HD"};
        for (int i = 0; i < 4; i++) {
            char p[1024];
            snprintf(p, sizeof p, "%s/bench/images/%s.jpg", VG_SOURCE_DIR, def[i]);
            rc |= run_file(p, reps);
        }
    }
    return rc;
}
