/*
 * bench_face: latency and throughput of the face networks on the oneDNN backend, next to the
 * machine's convolution peak measured in the same run (bench/face.sh writes the report).
 *
 *   1. peak: one large oneDNN convolution per precision (nn_peak_conv), 1 thread;
 *   2. per network and precision, one thread, batch 1: median and P95 latency of
 *      face_engine_run on an input prepared from a real photo, GFLOP/s (2 ops per MAC) and the
 *      share of the peak, oneDNN's implementations;
 *   2b. the calls bench/faceapi/bench.js times in face-api (detection, landmarks, descriptor
 *      with their pre- and post-processing), for the side-by-side table of bench/face.sh;
 *   3. a batch of 32 descriptors, int8: one engine on 2 OpenMP threads, and 2 single-threaded
 *      replicas on 2 threads (the server's layout);
 *   4. the whole pipeline (face_analyze) per photo at each level, one thread.
 *
 * Usage: bench_face [--models DIR] [--images DIR] [--runs N] [--seconds S]
 *                   [--nets tiny320,tiny416,tiny608,landmarks,recognition,ssd]
 *                   [--precisions f32,bf16,int8] [--summary FILE] [--no-peak] [--no-batch]
 *                   [--no-pipeline]
 * Output: Markdown on stdout; --summary writes "vigil KEY PRECISION WALL_MS CPU_MS BEST_CPU_MS"
 * lines (tab-separated, medians) for bench/face.sh. Single-threaded timings are given twice: wall
 * clock and the thread's CPU time. On a shared machine (this one runs several builds at once) the
 * wall clock also counts the time other processes held the core; the CPU time does not (though a
 * loaded host still slows a run through shared caches and, in a VM, steal time). GFLOP/s and the
 * share of the peak come from the best run of each (network and peak alike): the most
 * reproducible figure on a loaded host; the medians are beside them.
 */
#include "core/core.h"
#include "face/face.h"
#include "img/img.h"
#include "nn/nn.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IMAGES 64
#define WARMUP_RUNS 5

typedef struct net_case {
    const char *name;
    face_net net;
    int size;
} net_case;

static const net_case k_cases[] = {
    {"tiny320", FACE_NET_TINY, 320},    {"tiny416", FACE_NET_TINY, 416},
    {"tiny608", FACE_NET_TINY, 608},    {"landmarks", FACE_NET_LANDMARKS, 0},
    {"recognition", FACE_NET_RECOG, 0}, {"ssd", FACE_NET_SSD, 0},
};

typedef struct photo {
    char name[128];
    img_image im;
} photo;

/* CPU time of the calling thread: on a shared machine, what a single-threaded run costs
 * without the time other processes held the core (wall time counts that too). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int in_list(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

static int load_photos(const char *dir, photo *ph, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[MAX_IMAGES];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < max) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".png") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* directory order is arbitrary: sort by name */
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    int got = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        uint8_t *buf;
        size_t len;
        if (vg_read_file(path, (size_t)64 << 20, &buf, &len) == 0) {
            if (img_decode(buf, len, NULL, &ph[got].im) == 0) {
                snprintf(ph[got].name, sizeof ph[got].name, "%s", names[i]);
                got++;
            }
            vg_free(buf);
        }
        free(names[i]);
    }
    return got;
}

static face_image as_face_image(const img_image *im)
{
    return (face_image){im->px, im->w, im->h};
}

/* Median and P95 of t[n] (sorted in place). */
static void stats(double *t, int n, double *med, double *p95)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *med = t[n / 2];
    int k = (int)(0.95 * (n - 1) + 0.5);
    *p95 = t[k];
}

typedef struct batch_job {
    face_engine *e;
    const float *in;
    int n;
    double seconds;
    pthread_barrier_t *start; /* every replica starts timing together, after its warm-up */
    long done;
    double elapsed; /* seconds of this replica's timed loop */
    int rc;
} batch_job;

static void *batch_worker(void *arg)
{
    batch_job *j = arg;
    float *out = malloc((size_t)j->n * VG_DESCRIPTOR_DIM * sizeof(float));
    /* the warm-up compiles the plan (hundreds of ms at batch 32) outside the timed window */
    j->rc =
        out ? face_engine_run(j->e, FACE_NET_RECOG, 0, NN_PREC_INT8, j->in, j->n, out) : VG_ENOMEM;
    pthread_barrier_wait(j->start);
    uint64_t t0 = vg_now_ns(), end = t0 + (uint64_t)(j->seconds * 1e9), now = t0;
    while (!j->rc && now < end) {
        j->rc = face_engine_run(j->e, FACE_NET_RECOG, 0, NN_PREC_INT8, j->in, j->n, out);
        j->done += j->n;
        now = vg_now_ns();
    }
    j->elapsed = (double)(now - t0) * 1e-9;
    free(out);
    return NULL;
}

/* Descriptors/s of `replicas` engines on as many threads, each with `threads` OpenMP threads
 * and running batches of n: the sum of each replica's own rate over its timed loop. */
static int batch_throughput(face_models *m, const float *rec_in, int replicas, int threads, int n,
                            double seconds, double *per_s)
{
    size_t item = face_net_input_floats(FACE_NET_RECOG, 0);
    float *in = malloc((size_t)n * item * sizeof(float));
    if (!in)
        return VG_ENOMEM;
    for (int i = 0; i < n; i++)
        memcpy(in + (size_t)i * item, rec_in, item * sizeof(float));
    batch_job jobs[8] = {{0}};
    pthread_t th[8];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)replicas);
    int rc = 0, made = 0;
    for (; made < replicas && !rc; made++) {
        face_engine_opts eo = {.backend = NN_BACKEND_DNNL, .threads = threads};
        rc = face_engine_new(m, &eo, &jobs[made].e);
        jobs[made].in = in;
        jobs[made].n = n;
        jobs[made].seconds = seconds;
        jobs[made].start = &start;
    }
    if (!rc) {
        for (int r = 0; r < replicas; r++)
            pthread_create(&th[r], NULL, batch_worker, &jobs[r]);
        *per_s = 0;
        for (int r = 0; r < replicas; r++) {
            pthread_join(th[r], NULL);
            if (jobs[r].rc)
                rc = jobs[r].rc;
            else if (jobs[r].elapsed > 0)
                *per_s += (double)jobs[r].done / jobs[r].elapsed;
        }
    }
    for (int r = 0; r < made; r++)
        face_engine_free(jobs[r].e);
    pthread_barrier_destroy(&start);
    free(in);
    return rc;
}

/* The calls bench/faceapi/bench.js times, each with its pre- and post-processing. */
enum { CALL_KINDS = 5 };
static const struct {
    const char *key, *what;
    face_net net;
} k_calls[CALL_KINDS] = {
    {"tiny320", "tiny detector 320 (prepare, run, decode)", FACE_NET_TINY},
    {"tiny416", "tiny detector 416 (prepare, run, decode)", FACE_NET_TINY},
    {"ssd", "SSD MobileNet v1 (prepare, run, decode)", FACE_NET_SSD},
    {"landmarks", "68 landmarks (crop, run, decode)", FACE_NET_LANDMARKS},
    {"descriptor", "descriptor (align, run)", FACE_NET_RECOG},
};

typedef struct call_ctx {
    face_engine *e;
    const face_models *m;
    const face_image *img;
    const face_face *face; /* the reference face: box and landmarks */
    nn_precision prec;
    int kind;
} call_ctx;

static int one_call(call_ctx *c)
{
    static float in[608 * 608 * 3], out[5118 * 7];
    static face_detection dets[5118];
    face_frame fr;
    size_t n;
    int rc;
    switch (c->kind) {
    case 0:
    case 1: {
        int size = c->kind == 0 ? 320 : 416;
        if ((rc = face_prepare_detector(c->img, FACE_DET_TINY, size, in, &fr)) ||
            (rc = face_engine_run(c->e, FACE_NET_TINY, size, c->prec, in, 1, out)))
            return rc;
        return face_decode_detections(NULL, FACE_DET_TINY, out, &fr, 0.5f, dets, 5118, &n);
    }
    case 2:
        if ((rc = face_prepare_detector(c->img, FACE_DET_SSD, FACE_SSD_SIZE, in, &fr)) ||
            (rc = face_engine_run(c->e, FACE_NET_SSD, 0, c->prec, in, 1, out)))
            return rc;
        return face_decode_detections(c->m, FACE_DET_SSD, out, &fr, 0.5f, dets, 5118, &n);
    case 3: {
        face_crop crop;
        float lm[FACE_LANDMARKS][2];
        if ((rc = face_prepare_landmarks(c->img, &c->face->box, in, &crop)) ||
            (rc = face_engine_run(c->e, FACE_NET_LANDMARKS, 0, c->prec, in, 1, out)))
            return rc;
        face_decode_landmarks(out, &crop, lm);
        return 0;
    }
    default: {
        face_box crop;
        if ((rc = face_prepare_recognition(c->img, c->face->landmarks, in, &crop)))
            return rc;
        return face_engine_run(c->e, FACE_NET_RECOG, 0, c->prec, in, 1, out);
    }
    }
}

int main(int argc, char **argv)
{
    const char *models = VG_MODELS_DIR, *images = VG_SOURCE_DIR "/tests/data/faces/images";
    const char *nets = NULL, *precs = NULL, *summary_path = NULL;
    int runs = 50, peak = 1, batch = 1, pipeline = 1;
    double seconds = 3.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc)
            models = argv[++i];
        else if (!strcmp(argv[i], "--images") && i + 1 < argc)
            images = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--nets") && i + 1 < argc)
            nets = argv[++i];
        else if (!strcmp(argv[i], "--precisions") && i + 1 < argc)
            precs = argv[++i];
        else if (!strcmp(argv[i], "--summary") && i + 1 < argc)
            summary_path = argv[++i];
        else if (!strcmp(argv[i], "--no-peak"))
            peak = 0;
        else if (!strcmp(argv[i], "--no-batch"))
            batch = 0;
        else if (!strcmp(argv[i], "--no-pipeline"))
            pipeline = 0;
        else {
            fprintf(stderr,
                    "usage: %s [--models DIR] [--images DIR] [--runs N] [--seconds S] "
                    "[--nets LIST] [--precisions LIST] [--summary FILE] [--no-peak] "
                    "[--no-batch] [--no-pipeline]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 5 || runs > 100000) {
        fprintf(stderr, "--runs must be in 5..100000\n");
        return 2;
    }
    static photo ph[MAX_IMAGES];
    int nph = load_photos(images, ph, MAX_IMAGES);
    if (nph == 0) {
        fprintf(stderr, "no PNG photos in %s\n", images);
        return 1;
    }
    FILE *summary = NULL;
    if (summary_path && !(summary = fopen(summary_path, "w"))) {
        perror(summary_path);
        return 1;
    }
    face_models *m;
    face_models_opts mo = {.load_ssd = 1};
    if (face_models_open(models, &mo, &m)) {
        fprintf(stderr, "models: %s\n", vg_err_msg());
        return 1;
    }
    nn_set_threads(1);
    printf("oneDNN: %s. VIGIL_CPU_MASK=%s.\n\n", nn_dnnl_describe(),
           getenv("VIGIL_CPU_MASK") ? getenv("VIGIL_CPU_MASK") : "(unset)");

    /* ---- 1. peak ---- */
    double peak_gops[3] = {0, 0, 0};
    if (peak) {
        printf("## Machine peak: one large convolution (3x3, 256->256, 56x56), 1 thread, thread "
               "CPU time\n\n");
        printf("| precision | GFLOP/s (GOP/s int8), median run | best run | oneDNN implementation "
               "|\n|---|---|---|---|\n");
        for (int p = 0; p < 3; p++) {
            char impl[128];
            if (nn_precision_check((nn_precision)p)) {
                printf("| %s | unsupported on this CPU | | |\n",
                       nn_precision_name((nn_precision)p));
                continue;
            }
            double med = 0;
            if (nn_peak_conv((nn_precision)p, 2.0, 1, &med, &peak_gops[p], impl, sizeof impl) == 0)
                printf("| %s | %.0f | %.0f | %s |\n", nn_precision_name((nn_precision)p), med,
                       peak_gops[p], impl);
            else
                printf("| %s | failed: %s | | |\n", nn_precision_name((nn_precision)p),
                       vg_err_msg());
        }
        printf("\n");
    }

    /* A reference face from the first photo with one, for the landmark and recognition
     * inputs. */
    face_engine *e;
    face_engine_opts eo = {.backend = NN_BACKEND_DNNL, .threads = 1};
    if (face_engine_new(m, &eo, &e)) {
        fprintf(stderr, "engine: %s\n", vg_err_msg());
        return 1;
    }
    face_opts fo;
    face_opts_for_level(VG_LEVEL_BALANCED, &fo);
    fo.precision = NN_PREC_F32;
    face_result fr = {0};
    int ref = -1;
    for (int i = 0; i < nph && ref < 0; i++) {
        face_image fi = as_face_image(&ph[i].im);
        if (face_analyze(e, &fi, &fo, &fr) == 0 && fr.n > 0)
            ref = i;
        else
            face_result_free(&fr);
    }
    if (ref < 0) {
        fprintf(stderr, "no face found in %s\n", images);
        return 1;
    }
    face_image rfi = as_face_image(&ph[ref].im);
    face_face rface = fr.faces[0];
    float *lm_in = malloc(face_net_input_floats(FACE_NET_LANDMARKS, 0) * sizeof(float));
    float *rec_in = malloc(face_net_input_floats(FACE_NET_RECOG, 0) * sizeof(float));
    face_crop crop;
    face_box rcrop;
    if (!lm_in || !rec_in || face_prepare_landmarks(&rfi, &fr.faces[0].box, lm_in, &crop) ||
        face_prepare_recognition(&rfi, fr.faces[0].landmarks, rec_in, &rcrop)) {
        fprintf(stderr, "cannot prepare the reference face: %s\n", vg_err_msg());
        return 1;
    }
    face_result_free(&fr);

    /* ---- 2. per network and precision ---- */
    printf("## Networks, one thread, batch 1 (%d runs after %d warm-ups; input from %s)\n\n", runs,
           WARMUP_RUNS, ph[ref].name);
    printf("| network | precision | GMAC | median ms | P95 ms | median CPU ms | best CPU ms | "
           "GFLOP/s (best) | %% of peak (best) | implementations |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    double *t = malloc((size_t)runs * sizeof *t), *tc = malloc((size_t)runs * sizeof *tc);
    for (size_t c = 0; c < VG_ARRAY_LEN(k_cases); c++) {
        const net_case *nc = &k_cases[c];
        if (!in_list(nets, nc->name))
            continue;
        size_t nin = face_net_input_floats(nc->net, nc->size);
        size_t nout = face_net_output_floats(nc->net, nc->size);
        float *in = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float));
        face_frame frame;
        if (nc->net == FACE_NET_TINY || nc->net == FACE_NET_SSD)
            face_prepare_detector(&rfi, nc->net == FACE_NET_TINY ? FACE_DET_TINY : FACE_DET_SSD,
                                  nc->net == FACE_NET_TINY ? nc->size : FACE_SSD_SIZE, in, &frame);
        else
            memcpy(in, nc->net == FACE_NET_LANDMARKS ? lm_in : rec_in, nin * sizeof(float));
        const nn_graph *g = face_models_graph(m, nc->net, nc->size);
        double gmac = g ? (double)nn_graph_macs(g) * 1e-9 : 0;
        for (int p = 0; p < 3; p++) {
            nn_precision prec = (nn_precision)p;
            if (!in_list(precs, nn_precision_name(prec)) || nn_precision_check(prec))
                continue;
            if (prec == NN_PREC_INT8 && !face_models_calib(m, nc->net))
                continue;
            int rc = 0;
            for (int k = 0; k < WARMUP_RUNS && !rc; k++)
                rc = face_engine_run(e, nc->net, nc->size, prec, in, 1, out);
            for (int k = 0; k < runs && !rc; k++) {
                uint64_t t0 = vg_now_ns(), c0 = thread_cpu_ns();
                rc = face_engine_run(e, nc->net, nc->size, prec, in, 1, out);
                tc[k] = (double)(thread_cpu_ns() - c0) * 1e-6;
                t[k] = (double)(vg_now_ns() - t0) * 1e-6;
            }
            if (rc) {
                printf("| %s | %s | failed: %s |\n", nc->name, nn_precision_name(prec),
                       vg_err_msg());
                continue;
            }
            double med, p95, cmed, cp95;
            stats(t, runs, &med, &p95);
            stats(tc, runs, &cmed, &cp95);
            double best = tc[0]; /* sorted */
            double gf = 2 * gmac / (best * 1e-3);
            char share[32] = "";
            if (peak_gops[p] > 0)
                snprintf(share, sizeof share, "%.0f%%", 100 * gf / peak_gops[p]);
            printf("| %s | %s | %.3f | %.2f | %.2f | %.2f | %.2f | %.0f | %s | %s |\n", nc->name,
                   nn_precision_name(prec), gmac, med, p95, cmed, best, gf, share,
                   face_engine_impl(e));
            if (summary)
                fprintf(summary, "vigil\tnet-%s\t%s\t%.3f\t%.3f\t%.3f\n", nc->name,
                        nn_precision_name(prec), med, cmed, best);
            fflush(stdout);
        }
        free(in);
        free(out);
    }
    printf("\n");

    /* ---- 2b. the calls face-api's benchmark times, pre- and post-processing included ---- */
    printf("## The calls bench/faceapi times (pre- and post-processing included), one thread\n\n");
    printf("| what | precision | median ms | P95 ms | median CPU ms | best CPU ms |\n"
           "|---|---|---|---|---|---|\n");
    for (int kind = 0; kind < CALL_KINDS; kind++)
        for (int p = 0; p < 3; p++) {
            nn_precision prec = (nn_precision)p;
            if (!in_list(precs, nn_precision_name(prec)) || nn_precision_check(prec))
                continue;
            if (prec == NN_PREC_INT8 && !face_models_calib(m, k_calls[kind].net))
                continue;
            call_ctx cc = {e, m, &rfi, &rface, prec, kind};
            int rc = 0;
            for (int k = 0; k < WARMUP_RUNS && !rc; k++)
                rc = one_call(&cc);
            for (int k = 0; k < runs && !rc; k++) {
                uint64_t t0 = vg_now_ns(), c0 = thread_cpu_ns();
                rc = one_call(&cc);
                tc[k] = (double)(thread_cpu_ns() - c0) * 1e-6;
                t[k] = (double)(vg_now_ns() - t0) * 1e-6;
            }
            if (rc) {
                printf("| %s | %s | failed: %s |\n", k_calls[kind].what, nn_precision_name(prec),
                       vg_err_msg());
                continue;
            }
            double med, p95, cmed, cp95;
            stats(t, runs, &med, &p95);
            stats(tc, runs, &cmed, &cp95);
            printf("| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", k_calls[kind].what,
                   nn_precision_name(prec), med, p95, cmed, tc[0]);
            if (summary)
                fprintf(summary, "vigil\t%s\t%s\t%.3f\t%.3f\t%.3f\n", k_calls[kind].key,
                        nn_precision_name(prec), med, cmed, tc[0]);
            fflush(stdout);
        }
    printf("\n");

    /* ---- 3. batch throughput ---- */
    if (batch && nn_precision_check(NN_PREC_INT8) == 0 && face_models_calib(m, FACE_NET_RECOG)) {
        printf("## Descriptors, int8, batch 32 (%.0f s each)\n\n", seconds);
        printf("| layout | descriptors/s |\n|---|---|\n");
        static const struct {
            const char *what;
            int replicas, threads, n;
        } lay[] = {
            {"1 replica x 1 thread, batch 32", 1, 1, 32},
            {"1 replica x 2 OpenMP threads, batch 32", 1, 2, 32},
            {"2 replicas x 1 thread, batch 32 each", 2, 1, 32},
            {"2 replicas x 1 thread, batch 16 each (32 in flight)", 2, 1, 16},
        };
        for (size_t k = 0; k < VG_ARRAY_LEN(lay); k++) {
            double ps = 0;
            if (batch_throughput(m, rec_in, lay[k].replicas, lay[k].threads, lay[k].n, seconds,
                                 &ps))
                printf("| %s | failed: %s |\n", lay[k].what, vg_err_msg());
            else
                printf("| %s | %.0f |\n", lay[k].what, ps);
            if (summary)
                fprintf(summary, "vigil\tbatch-%dx%d-b%d\tint8\t%.0f\t-\t-\n", lay[k].replicas,
                        lay[k].threads, lay[k].n, ps);
            fflush(stdout);
        }
        printf("\n");
    }

    /* ---- 4. whole pipeline ---- */
    if (pipeline) {
        printf("## Whole pipeline (face_analyze: detect, landmarks, align, describe), one "
               "thread, %d photos, median of 5 runs each\n\n",
               nph);
        printf("| level | detector | precisions (det / landmarks / rec) | faces | median ms per "
               "photo (sum / %d) | CPU ms per photo | slowest photo ms |\n"
               "|---|---|---|---|---|---|---|\n",
               nph);
        /* the three levels, then balanced with f32 everywhere: face-api's arithmetic */
        static const vg_level levels[] = {VG_LEVEL_SPEED, VG_LEVEL_BALANCED, VG_LEVEL_ACCURACY,
                                          VG_LEVEL_BALANCED};
        for (size_t l = 0; l < VG_ARRAY_LEN(levels); l++) {
            face_opts o;
            face_opts_for_level(levels[l], &o);
            int all_f32 = l == VG_ARRAY_LEN(levels) - 1;
            if (all_f32)
                o.precision = o.detector_precision = o.landmarks_precision = NN_PREC_F32;
            double sum = 0, sum_cpu = 0, worst = 0;
            size_t faces = 0;
            int rc = 0;
            for (int i = 0; i < nph && !rc; i++) {
                face_image fi = as_face_image(&ph[i].im);
                double tt[5], ct[5];
                for (int k = 0; k < 6 && !rc; k++) { /* k = 0 warms the plans up */
                    face_result r = {0};
                    uint64_t t0 = vg_now_ns(), c0 = thread_cpu_ns();
                    rc = face_analyze(e, &fi, &o, &r);
                    if (k) {
                        ct[k - 1] = (double)(thread_cpu_ns() - c0) * 1e-6;
                        tt[k - 1] = (double)(vg_now_ns() - t0) * 1e-6;
                    } else {
                        faces += r.n;
                    }
                    face_result_free(&r);
                }
                if (rc)
                    break;
                double med, p95, cmed;
                stats(tt, 5, &med, &p95);
                stats(ct, 5, &cmed, &p95);
                sum += med;
                sum_cpu += cmed;
                if (med > worst)
                    worst = med;
            }
            char det[32];
            snprintf(det, sizeof det, "%s %d", o.detector == FACE_DET_SSD ? "ssd" : "tiny",
                     o.input_size);
            char lname[32];
            snprintf(lname, sizeof lname, "%s%s", vg_level_name(levels[l]),
                     all_f32 ? ", all f32" : "");
            if (rc) {
                printf("| %s | %s | failed: %s |\n", lname, det, vg_err_msg());
            } else {
                printf("| %s | %s | %s / %s / %s | %zu | %.1f | %.1f | %.1f |\n", lname, det,
                       nn_precision_name(o.detector_precision),
                       nn_precision_name(o.landmarks_precision), nn_precision_name(o.precision),
                       faces, sum / nph, sum_cpu / nph, worst);
                if (summary)
                    fprintf(summary, "vigil\tpipeline-%s%s\t-\t%.3f\t%.3f\t-\n",
                            vg_level_name(levels[l]), all_f32 ? "-f32" : "", sum / nph,
                            sum_cpu / nph);
            }
            fflush(stdout);
        }
        printf("\n");
    }
    if (summary)
        fclose(summary);
    free(t);
    free(tc);
    free(lm_in);
    free(rec_in);
    face_engine_free(e);
    face_models_free(m);
    for (int i = 0; i < nph; i++)
        img_image_free(&ph[i].im);
    return 0;
}
