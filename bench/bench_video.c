/* bench_video: the video module's performance claims, printed as Markdown (bench/video.sh
 * writes it to bench/results/video.md).
 *
 *   hash    vPDQ hash of one video (bench/video.sh makes a 60 s 1080p H.264 file from a sample)
 *           at 1 frame/s, sampled and key-frames-only, decoded in the sandboxed child as in
 *           production: the child's CPU time (RUSAGE_CHILDREN: one thread, one core) against
 *           the video's duration;
 *   match   one 10-minute query (600 frame hashes at 1/s) against an index of N synthetic
 *           reference videos of 60 frames (default 10,000: 600,000 frames), with one planted
 *           edited copy that must be found: index build time, bytes, and per-query CPU time.
 *
 * Usage: bench_video [--video FILE] [--videos N] [--runs R] [--rate R] [--regions]
 *                    [hash|match ...]
 *   --rate R   hash: sampled frames per second (default 1); the default row hashes each
 *              frame's regions, the "whole frame only" row does not: their CPU difference over
 *              the frames kept is the regions' cost per frame
 *   --regions  match: every frame of the index and the query has 3 region hashes too
 * Synthetic hashes are uniform random 256-bit values: real frame hashes cluster more, which
 * puts more candidates in a bucket (see docs/BENCHMARKS.md).
 */
#include "core/core.h"
#include "../tests/support/vgt_random.h"
#include "video/video.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double child_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double self_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Hash distance of each kept frame of h to ref's (exact decode) frame for the same sample time
 * (the same position when both kept as many frames, else the same frame number): median and
 * max; -1 when none. */
static void drift(const video_hash *ref, const video_hash *h, int *med, int *max, size_t *n_out)
{
    int d[4096];
    size_t n = 0;
    if (h->n == ref->n) {
        for (size_t i = 0; i < h->n && n < 4096; i++)
            d[n++] = pdq_distance(&ref->frames[i].hash, &h->frames[i].hash);
    }
    for (size_t i = 0; i < h->n && h->n != ref->n; i++)
        for (size_t j = 0; j < ref->n && n < 4096; j++)
            if (ref->frames[j].frame == h->frames[i].frame) {
                d[n++] = pdq_distance(&ref->frames[j].hash, &h->frames[i].hash);
                break;
            }
    *n_out = n;
    *med = *max = -1;
    if (!n)
        return;
    for (size_t i = 1; i < n; i++) /* insertion sort: a few hundred values */
        for (size_t k = i; k > 0 && d[k] < d[k - 1]; k--) {
            int t = d[k];
            d[k] = d[k - 1];
            d[k - 1] = t;
        }
    *med = d[n / 2];
    *max = d[n - 1];
}

static int bench_hash(const char *path, int runs, double rate)
{
    static const struct {
        const char *name;
        int fast, keyframes, no_plan;
        double key_tol;
        int no_regions;
    } modes[] = {
        {"sequential: non-reference frames before the sample skipped", 0, 0, 1, 0, 0},
        {"planned, exact (default): + group tails after the last sample skipped", 0, 0, 0, 0, 0},
        {"planned, exact, whole frame only (no region hashes)", 0, 0, 0, 0, 1},
        {"planned + skip loop filter on unsampled frames", VIDEO_FAST_SKIP_LOOP, 0, 0, 0, 0},
        {"planned + key frame within 0.49 s of the sample time", 0, 0, 0, 0.49, 0},
        {"planned + key frame within 0.49 s + skip loop filter", VIDEO_FAST_SKIP_LOOP, 0, 0, 0.49,
         0},
        {"key frames only", 0, 1, 0, 0, 0},
    };
    printf("## Hashing one video at %g frame/s (decoder in the sandboxed child)\n\n", rate);
    printf("File: `%s`. Median of %d runs; CPU is the child's (one thread); "
           "per decoded frame: that CPU over the frames decoded (the kept frames' conversion "
           "and hashes, the regions included, are a small share of it). Drift: Hamming "
           "distance of each kept frame's hash to the exact decode's hash of the same frame.\n\n",
           path, runs);
    printf("| mode | frames kept | frames decoded | duration (s) | child CPU (s) | wall (s) | "
           "ms CPU per decoded frame | x real time (CPU) | drift median / max (bits) |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    video_hash exact = {0};
    for (size_t mode = 0; mode < sizeof modes / sizeof *modes; mode++) {
        video_hash_opts o;
        video_hash_opts_default(&o);
        o.keyframes_only = modes[mode].keyframes;
        o.fast = modes[mode].fast;
        o.test_no_plan = modes[mode].no_plan;
        o.keyframe_tolerance_s = modes[mode].key_tol;
        o.regions = !modes[mode].no_regions;
        o.rate = rate;
        double cpu[16], wall[16];
        video_hash h = {0};
        for (int r = 0; r < runs && r < 16; r++) {
            video_hash_free(&h);
            double c0 = child_cpu_s(), w0 = wall_s();
            if (video_hash_file(path, &o, &h) != VG_OK) {
                fprintf(stderr, "bench_video: %s: %s\n", path, vg_err_msg());
                return 1;
            }
            cpu[r] = child_cpu_s() - c0;
            wall[r] = wall_s() - w0;
        }
        int n = runs < 16 ? runs : 16;
        qsort(cpu, (size_t)n, sizeof *cpu, cmp_double);
        qsort(wall, (size_t)n, sizeof *wall, cmp_double);
        double c = cpu[n / 2], w = wall[n / 2];
        int dmed, dmax;
        size_t dn;
        if (mode == 0) {
            exact = h;
            memset(&h, 0, sizeof h);
        }
        drift(&exact, mode == 0 ? &exact : &h, &dmed, &dmax, &dn);
        uint64_t dec = mode == 0 ? exact.frames_decoded : h.frames_decoded;
        printf("| %s | %zu | %llu | %.1f | %.2f | %.2f | %.2f | %.0fx | %d / %d (%zu frames) |\n",
               modes[mode].name, mode == 0 ? exact.n : h.n, (unsigned long long)dec,
               mode == 0 ? exact.duration_s : h.duration_s, c, w, dec ? c * 1e3 / (double)dec : 0,
               c > 0 ? (mode == 0 ? exact.duration_s : h.duration_s) / c : 0, dmed, dmax, dn);
        video_hash_free(&h);
    }
    video_hash_free(&exact);
    printf("\n");
    return 0;
}

/* regions: every frame (indexed and query) also has a trimmed hash and top and bottom halves,
 * random like the whole hash (the worst case: bars found on every frame). */
static void rand_regions(uint64_t *seed, video_frame *f, int regions)
{
    f->regions = 0;
    for (int r = 0; regions && r < VIDEO_REGION_COUNT; r++) {
        vgt_rand_hash(seed, (uint8_t *)&f->region[r]);
        f->region_quality[r] = 100;
        f->regions |= (uint8_t)(1u << r);
    }
}

static int bench_match(size_t nvideos, int runs, int regions)
{
    const size_t per = 60, nq = 600, planted = nvideos / 2;
    uint64_t seed = 42;
    video_index *ix = video_index_new(0);
    video_hash v = {0};
    v.frames = calloc(nq, sizeof *v.frames);
    video_hash planted_h = {0};
    planted_h.frames = calloc(per, sizeof *planted_h.frames);
    double t0 = self_cpu_s();
    for (size_t i = 0; i < nvideos; i++) {
        v.n = per;
        for (size_t k = 0; k < per; k++) {
            vgt_rand_hash(&seed, (uint8_t *)&v.frames[k].hash);
            v.frames[k].frame = (uint32_t)(k * 30);
            v.frames[k].ts = (double)k;
            v.frames[k].quality = 100;
            rand_regions(&seed, &v.frames[k], regions);
        }
        if (i == planted) {
            memcpy(planted_h.frames, v.frames, per * sizeof *v.frames);
            planted_h.n = per;
        }
        char id[32];
        snprintf(id, sizeof id, "ref-%zu", i);
        if (video_index_add(ix, id, &v, NULL) != VG_OK)
            return 1;
    }
    double t_add = self_cpu_s() - t0;
    t0 = self_cpu_s();
    if (video_index_build(ix) != VG_OK)
        return 1;
    double t_build = self_cpu_s() - t0;
    /* The query: 10 minutes at 1/s; minutes 3..4 show the planted reference with up to 12 of
     * 256 bits changed per frame (a re-encode), the rest is unrelated. */
    v.n = nq;
    for (size_t k = 0; k < nq; k++) {
        if (k >= 180 && k < 240)
            vgt_flip_bits(&seed, (const uint8_t *)&planted_h.frames[k - 180].hash,
                          (int)(vgt_rng_next(&seed) % 13), (uint8_t *)&v.frames[k].hash);
        else
            vgt_rand_hash(&seed, (uint8_t *)&v.frames[k].hash);
        v.frames[k].frame = (uint32_t)(k * 30);
        v.frames[k].ts = (double)k;
        v.frames[k].quality = 100;
        rand_regions(&seed, &v.frames[k], regions);
    }
    video_match_opts mo;
    video_match_opts_default(&mo);
    double ms[64];
    int n = runs < 64 ? runs : 64;
    video_result r = {0};
    for (int i = 0; i < n; i++) {
        video_result_free(&r);
        double c0 = self_cpu_s();
        if (video_index_search(ix, &v, &mo, &r) != VG_OK)
            return 1;
        ms[i] = (self_cpu_s() - c0) * 1e3;
    }
    if (r.n != 1 || r.matches[0].video != planted || r.matches[0].compared_match_pct != 100.0 ||
        r.matches[0].n_segments != 1) {
        fprintf(stderr, "bench_video: the planted copy was not found exactly\n");
        return 1;
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("## Matching one 10-minute video against %zu reference videos%s\n\n", nvideos,
           regions ? ", 3 region hashes per frame" : "");
    printf("Index: %zu videos x %zu frames = %zu frame hashes (uniform random), %zu entries "
           "with regions, %.0f MiB; adding them %.2f s, building the 16 word tables %.2f s "
           "(CPU).\n\n",
           nvideos, per, video_index_frames(ix), video_index_entries(ix),
           video_index_bytes(ix) / 1048576.0, t_add, t_build);
    printf("Query: 600 frame hashes, one minute of them an edited copy of one reference "
           "(found: %.0f%% of its frames, query %.0f..%.0f s = reference %.0f..%.0f s).\n\n",
           r.matches[0].compared_match_pct, r.matches[0].segments[0].q_start,
           r.matches[0].segments[0].q_end, r.matches[0].segments[0].c_start,
           r.matches[0].segments[0].c_end);
    printf("| runs | median (ms CPU) | min | max |\n|---|---|---|---|\n");
    printf("| %d | %.2f | %.2f | %.2f |\n\n", n, ms[n / 2], ms[0], ms[n - 1]);
    video_result_free(&r);
    free(v.frames);
    free(planted_h.frames);
    video_index_free(ix);
    return 0;
}

int main(int argc, char **argv)
{
    const char *video = "bench/results/video-1080p.mp4";
    size_t nvideos = 10000;
    int runs = 5, do_hash = 0, do_match = 0, regions = 0;
    double rate = VIDEO_DEFAULT_RATE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--video") == 0 && i + 1 < argc)
            video = argv[++i];
        else if (strcmp(argv[i], "--videos") == 0 && i + 1 < argc)
            nvideos = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--regions") == 0)
            regions = 1;
        else if (strcmp(argv[i], "hash") == 0)
            do_hash = 1;
        else if (strcmp(argv[i], "match") == 0)
            do_match = 1;
        else {
            fprintf(stderr, "usage: bench_video [--video FILE] [--videos N] [--runs R] "
                            "[--rate R] [--regions] [hash|match ...]\n");
            return 2;
        }
    }
    if (!do_hash && !do_match)
        do_hash = do_match = 1;
    if (runs < 1 || nvideos < 2 || !(rate > 0 && rate <= VIDEO_MAX_RATE))
        return 2;
    if (do_hash && bench_hash(video, runs, rate) != 0)
        return 1;
    if (do_match && bench_match(nvideos, runs * 4, regions) != 0)
        return 1;
    return 0;
}
