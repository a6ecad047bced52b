/*
 * bench_hash: PDQ decode + hash timings per size class, single thread, both pipelines, next to
 * libjpeg-turbo's own `tjbench FILE -scale 1/8` on the same file (the entropy-decoding floor).
 *
 *   bench_hash [--min-time S] [--min-side PX] [--mode fast|compat|both] [--tjbench PATH|none]
 *              [FILE...]
 *
 * Without files it runs bench/images/{S,M,L,HD}.jpg. For each file and mode it decodes and hashes
 * the in-memory bytes repeatedly (after a warm-up) for at least --min-time seconds (default 2)
 * and at least 20 times, and prints one Markdown row: median and P95 of decode (including any
 * resize) and of hash separately, of their sum, and the median of this thread's CPU time per
 * decode + hash (what a busy shared machine distorts least). tjbench runs right after ours on
 * the same file; each mode's ratio is its median total over tjbench's per-frame time.
 */
#include "core/core.h"
#include "pdq/pdq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RUNS 100000

typedef struct {
    double decode_ms[2], hash_ms[2], total_ms[2]; /* [0] median, [1] P95 */
    double cpu_ms[2]; /* this thread's CPU time per decode + hash: robust to a busy machine */
    int runs;
    uint32_t hashed_w, hashed_h;
} timing;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median and P95 (nearest rank) of v[0..n-1], sorting v. */
static void stats(double *v, int n, double out[2])
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    out[0] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    int r = (int)(0.95 * n + 0.999999);
    out[1] = v[(r < 1 ? 1 : r) - 1];
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int run_mode(pdq_ctx *ctx, const uint8_t *buf, size_t len, pdq_mode mode, uint32_t min_side,
                    double min_time_s, timing *t, char hex[PDQ_HEX_BYTES])
{
    pdq_image_opts o;
    pdq_image_opts_default(&o);
    o.mode = mode;
    o.fast_min_side = min_side;
    pdq_image_result r;
    for (int i = 0; i < 3; i++) { /* warm-up: caches, scratch growth, page faults */
        int rc = pdq_hash_image(ctx, buf, len, &o, &r);
        if (rc != VG_OK)
            return rc;
    }
    double *dec = malloc(MAX_RUNS * sizeof *dec), *hsh = malloc(MAX_RUNS * sizeof *hsh),
           *tot = malloc(MAX_RUNS * sizeof *tot), *cpu = malloc(MAX_RUNS * sizeof *cpu);
    if (!dec || !hsh || !tot || !cpu) {
        free(dec);
        free(hsh);
        free(tot);
        free(cpu);
        return VG_ENOMEM;
    }
    const uint64_t start = vg_now_ns();
    int n = 0;
    while (n < MAX_RUNS && (n < 20 || (double)(vg_now_ns() - start) < min_time_s * 1e9)) {
        const double c0 = thread_cpu_ms();
        int rc = pdq_hash_image(ctx, buf, len, &o, &r);
        cpu[n] = thread_cpu_ms() - c0;
        if (rc != VG_OK) {
            free(dec);
            free(hsh);
            free(tot);
            free(cpu);
            return rc;
        }
        dec[n] = (double)r.decode_ns / 1e6;
        hsh[n] = (double)r.hash_ns / 1e6;
        tot[n] = dec[n] + hsh[n];
        n++;
    }
    stats(dec, n, t->decode_ms);
    stats(hsh, n, t->hash_ms);
    stats(tot, n, t->total_ms);
    stats(cpu, n, t->cpu_ms);
    t->runs = n;
    t->hashed_w = r.hashed_w;
    t->hashed_h = r.hashed_h;
    pdq_hash_to_hex(&r.r.hash, hex);
    free(dec);
    free(hsh);
    free(tot);
    free(cpu);
    return VG_OK;
}

/* ms per frame from `tjbench FILE -scale 1/8`, or -1 when tjbench is unavailable. */
static double tjbench_ms(const char *tjbench, const char *file, double min_time_s)
{
    if (!tjbench || strcmp(tjbench, "none") == 0)
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s' -scale 1/8 -benchtime %.1f -warmup 0.5 2>&1", tjbench,
             file, min_time_s);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    double fps = -1;
    while (fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "Frame rate:");
        if (s)
            fps = strtod(s + strlen("Frame rate:"), NULL);
    }
    pclose(p);
    return fps > 0 ? 1000.0 / fps : -1;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int main(int argc, char **argv)
{
    double min_time_s = 2.0;
    uint32_t min_side = 0;
    const char *tjbench = "tjbench";
    int first_mode = 0, last_mode = 1; /* 0 fast, 1 compat */
    const char *files[64];
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc)
            min_time_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--min-side") == 0 && i + 1 < argc)
            min_side = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            const char *m = argv[++i];
            first_mode = strcmp(m, "compat") == 0;
            last_mode = strcmp(m, "fast") != 0;
        } else if (strcmp(argv[i], "--tjbench") == 0 && i + 1 < argc)
            tjbench = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_hash [--min-time S] [--min-side PX] "
                            "[--mode fast|compat|both] [--tjbench PATH|none] [FILE...]\n");
            return 2;
        } else if (nfiles < 64)
            files[nfiles++] = argv[i];
    }
    static const char *defaults[] = {
        VG_SOURCE_DIR "/bench/images/S.jpg", VG_SOURCE_DIR "/bench/images/M.jpg",
        VG_SOURCE_DIR "/bench/images/L.jpg", VG_SOURCE_DIR "/bench/images/HD.jpg"};
    if (nfiles == 0)
        for (size_t i = 0; i < VG_ARRAY_LEN(defaults); i++)
            files[nfiles++] = defaults[i];

    pdq_ctx *ctx = pdq_ctx_new();
    if (!ctx)
        return 1;
    printf("cpu features: %s; pdq kernels: %s; fast min side: %u px%s\n\n", vg_cpu_describe(),
           pdq_ctx_impl(ctx) == PDQ_IMPL_AVX2 ? "avx2" : "portable", min_side,
           min_side ? "" : " (full resolution)");
    printf("| file | mode | hashed | runs | decode median | decode P95 | hash median | hash P95 "
           "| total median | total P95 | CPU median | tjbench 1/8 | ratio |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int status = 0;
    for (int f = 0; f < nfiles; f++) {
        uint8_t *buf;
        size_t len;
        if (vg_read_file(files[f], (size_t)1 << 30, &buf, &len) != VG_OK) {
            fprintf(stderr, "bench_hash: %s: %s\n", files[f], vg_err_msg());
            status = 1;
            continue;
        }
        timing t[2];
        char hex[2][PDQ_HEX_BYTES];
        int ok = 1;
        memset(hex, 0, sizeof hex);
        for (int m = first_mode; m <= last_mode; m++) {
            if (run_mode(ctx, buf, len, m ? PDQ_MODE_COMPAT : PDQ_MODE_FAST, min_side, min_time_s,
                         &t[m], hex[m]) != VG_OK) {
                fprintf(stderr, "bench_hash: %s: %s\n", files[f], vg_err_msg());
                ok = 0;
                status = 1;
                break;
            }
        }
        vg_free(buf);
        if (!ok)
            continue;
        double tj = tjbench_ms(tjbench, files[f], min_time_s);
        for (int m = first_mode; m <= last_mode; m++) {
            printf("| %s | %s | %ux%u | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |",
                   base_name(files[f]), m ? "compat" : "fast", t[m].hashed_w, t[m].hashed_h,
                   t[m].runs, t[m].decode_ms[0], t[m].decode_ms[1], t[m].hash_ms[0],
                   t[m].hash_ms[1], t[m].total_ms[0], t[m].total_ms[1], t[m].cpu_ms[0]);
            if (tj > 0)
                printf(" %.3f | %.2fx |\n", tj, t[m].total_ms[0] / tj);
            else
                printf(" n/a | n/a |\n");
        }
        pdq_hash hf, hc;
        if (pdq_hash_from_hex(hex[0], &hf) != VG_OK || pdq_hash_from_hex(hex[1], &hc) != VG_OK)
            continue; /* one mode only */
        fprintf(stderr, "%s: fast %s, compat %s, distance %d\n", base_name(files[f]), hex[0],
                hex[1], pdq_distance(&hf, &hc));
    }
    pdq_ctx_free(ctx);
    return status;
}
