/*
 * bench_analyze_one: one balanced analysis at a time, in process (analyze_run, no cache), per
 * image: median wall time, the analyze_timings stages and the process CPU time per analysis
 * (issue 13). Built against an older tree too (-DBENCH_NO_LONE_SPLIT) for side-by-side runs.
 *
 *   bench_analyze_one [--reps N] [--split 0|1] [--models DIR] [FILE...]
 *
 * Default files: bench/images/{S,M,L,HD}.jpg; 40 reps after 3 warm-up runs. `--reps 1` under
 * `valgrind --tool=callgrind --toggle-collect=analyze__prepare` (or analyze__faces,
 * analyze__hash) counts one stage's instructions.
 */
#include "analyze/analyze.h"
#include "core/core.h"
#include "face/face.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_REPS 10000
#define WARM_RUNS 3

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int run_file(analyze_ctx *ctx, const char *path, int reps)
{
    size_t len;
    uint8_t *buf = NULL;
    if (vg_read_file(path, (size_t)64 << 20, &buf, &len) != VG_OK) {
        fprintf(stderr, "bench_analyze_one: cannot read %s: %s\n", path, vg_err_msg());
        return 1;
    }
    double *v = calloc((size_t)reps * 6, sizeof *v);
    double c0 = 0;
    int rc = v ? 0 : 1;
    for (int i = 0; i < WARM_RUNS + reps && !rc; i++) {
        if (i == WARM_RUNS)
            c0 = cpu_ms();
        analyze_request rq = {
            .bytes = buf, .len = len, .tenant_id = "bench", .level = VG_LEVEL_BALANCED};
        analyze_result res;
        const uint64_t t0 = vg_now_ns();
        rc = analyze_run(ctx, &rq, &res);
        const double ms = (double)(vg_now_ns() - t0) / 1e6;
        if (rc) {
            fprintf(stderr, "%s: %s\n", path, vg_err_msg());
            break;
        }
        if (i >= WARM_RUNS) {
            const int k = i - WARM_RUNS;
            const analyze_timings *t = &res.timings;
            v[k] = ms;
            v[reps + k] = (double)t->decode_us / 1e3;
            v[2 * reps + k] = (double)t->pdq_us / 1e3;
            v[3 * reps + k] = (double)t->detect_us / 1e3;
            v[4 * reps + k] = (double)t->landmarks_us / 1e3;
            v[5 * reps + k] = (double)t->descriptors_us / 1e3;
        }
        analyze_result_free(&res);
    }
    if (!rc) {
        const double cpu = (cpu_ms() - c0) / reps;
        const char *base = strrchr(path, '/');
        printf("| %s | %.2f |", base ? base + 1 : path, median(v, reps));
        for (int s = 1; s < 6; s++)
            printf(" %.2f |", median(v + (size_t)s * reps, reps));
        printf(" %.2f |\n", cpu);
    }
    free(v);
    vg_free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = 40, split = -1, first = argc;
    const char *models_dir = VG_MODELS_DIR;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--split") && i + 1 < argc)
            split = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--models") && i + 1 < argc)
            models_dir = argv[++i];
        else {
            first = i;
            break;
        }
    }
    if (reps < 1 || reps > MAX_REPS)
        return 2;
    face_models *models = NULL;
    if (face_models_open(models_dir, NULL, &models) != VG_OK) {
        fprintf(stderr, "models in %s: %s\n", models_dir, vg_err_msg());
        return 1;
    }
    analyze_config ac;
    analyze_config_default(&ac);
#ifndef BENCH_NO_LONE_SPLIT
    if (split >= 0)
        ac.lone_split = split;
#else
    (void)split;
#endif
    analyze_deps deps = {.models = models};
    analyze_ctx *ctx;
    if (analyze_ctx_new(&ac, &deps, &ctx) != VG_OK) {
        fprintf(stderr, "analysis context: %s\n", vg_err_msg());
        return 1;
    }
    printf("| image | wall ms | decode | pdq | detect | landmarks | descriptors | CPU ms |\n"
           "|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    if (first < argc) {
        for (int i = first; i < argc; i++)
            rc |= run_file(ctx, argv[i], reps);
    } else {
        static const char *const def[] = {"S", "M", "L", "HD"};
        for (int i = 0; i < 4; i++) {
            char p[1024];
            snprintf(p, sizeof p, "%s/bench/images/%s.jpg", VG_SOURCE_DIR, def[i]);
            rc |= run_file(ctx, p, reps);
        }
    }
    analyze_ctx_free(ctx);
    face_models_free(models);
    return rc;
}
