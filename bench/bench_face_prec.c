/* Detector precision against face-api (issue 13): for each precision variant of the tiny
 * detector, the balanced pipeline (tiny 416, landmarks f32, recogniser at the balanced level's
 * precision) on the oracle photos of tests/data/faces, compared with face-api 1.7.15's results:
 * faces found, worst box IoU per photo, descriptor L2, and the same/different verdicts (< 0.6)
 * of every pair in distances.json, against face-api's and against the f32 detector's own; then
 * the detector's thread CPU time per call, variants interleaved so they share the noise.
 *
 * Variants: f32, bf16, int8 (the calibration as committed), and int8 with chosen convolutions
 * kept in f32 (mixed precision: "f32 t<id>" lines in a copy of the calibration, written to a
 * temporary folder). --search measures each convolution's own int8 error (it alone in int8,
 * the rest f32: worst IoU and the raw output's max |difference| from f32 on the photos), then
 * makes the convolutions int8 one by one from the least to the most harmful while every photo
 * keeps IoU >= --min-iou, the same faces and no more verdicts unlike face-api's than the f32
 * detector has, and prints the f32 set found. --prec bf16 mixes bf16 with f32 instead.
 *
 * Usage: bench_face_prec [--search] [--prec int8|bf16] [--keep-f32 ID,ID..] [--runs N]
 *        [--min-iou X] [--out DIR] [--verbose]
 * (--out: where the chosen tiny.txt is written, default none). */
#include "core/core.h"
#include "face/face.h"
#include "img/img.h"
#include "nn/nn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DATA VG_SOURCE_DIR "/tests/data/faces"
#define MAX_IMGS 32
#define MAX_IDS 64
#define SIZE 416
/* The tiny detector's convolutions, by tensor id (face_tiny.c): conv0, then each separable
 * block's depthwise and pointwise conv, then conv8 (the output). */
static const int k_convs[] = {1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18};
#define N_CONVS ((int)(sizeof k_convs / sizeof k_convs[0]))

typedef struct photo {
    char name[64];
    img_image im;
    json_t *ref; /* borrowed from results.json */
} photo;

typedef struct variant_result {
    int faces, missing, extra, flips_api, flips_f32;
    double worst_iou, worst_l2, mean_iou;
    double iou[MAX_IMGS];
    char ids[MAX_IDS][48];
    float desc[MAX_IDS][128];
    int n_ids;
    float *raw[MAX_IMGS]; /* detector output per photo */
} variant_result;

static photo g_ph[MAX_IMGS];
static int g_n;
static json_t *g_dist;
static int g_verbose; /* --verbose: name every pair whose verdict differs from face-api's */

static double iou(face_box a, double bx, double by, double bw, double bh)
{
    double x0 = fmax(a.x, bx), y0 = fmax(a.y, by);
    double x1 = fmin(a.x + a.w, bx + bw), y1 = fmin(a.y + a.h, by + bh);
    double inter = fmax(0, x1 - x0) * fmax(0, y1 - y0);
    return inter / (a.w * a.h + bw * bh - inter);
}

static double thread_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Writes models/calibration with tiny.txt's f32 set replaced into dir. */
static int write_calib(face_models *base, const char *dir, const unsigned char *keep)
{
    char path[512];
    const char *names[] = {"tiny", "landmarks", "recognition", "ssd"};
    for (int i = 0; i < FACE_NET_COUNT; i++) {
        const nn_calib *c = face_models_calib(base, (face_net)i);
        if (!c)
            continue;
        nn_calib w = *c;
        if (i == FACE_NET_TINY)
            w.f32_ops = (unsigned char *)keep;
        snprintf(path, sizeof path, "%s/%s.txt", dir, names[i]);
        if (nn_calib_save(path, &w, "bench_face_prec variant"))
            return -1;
    }
    return 0;
}

static int run_variant(face_models *m, nn_precision det, nn_precision rec, variant_result *v,
                       const variant_result *f32)
{
    face_engine *e;
    face_engine_opts eo = {.backend = NN_BACKEND_DNNL, .threads = 1};
    if (face_engine_new(m, &eo, &e))
        return -1;
    memset(v, 0, sizeof *v);
    v->worst_iou = 1;
    size_t nin = face_net_input_floats(FACE_NET_TINY, SIZE);
    size_t nout = face_net_output_floats(FACE_NET_TINY, SIZE);
    float *in = malloc(nin * sizeof *in);
    int paired = 0;
    for (int k = 0; k < g_n; k++) {
        face_image img = {g_ph[k].im.px, g_ph[k].im.w, g_ph[k].im.h};
        face_frame fr;
        v->raw[k] = malloc(nout * sizeof(float));
        face_prepare_detector(&img, FACE_DET_TINY, SIZE, in, &fr);
        if (face_engine_run(e, FACE_NET_TINY, SIZE, det, in, 1, v->raw[k]))
            return -1;
        face_opts o;
        face_opts_for_level(VG_LEVEL_BALANCED, &o);
        o.input_size = SIZE;
        o.precision = rec;
        o.detector_precision = det;
        o.landmarks_precision = NN_PREC_F32;
        face_result r;
        if (face_analyze(e, &img, &o, &r))
            return -1;
        json_t *faces = json_object_get(g_ph[k].ref, "faces");
        size_t nref = json_array_size(faces);
        if (r.n > nref)
            v->extra += (int)(r.n - nref);
        v->iou[k] = 1;
        for (size_t j = 0; j < nref; j++) {
            json_t *f = json_array_get(faces, j);
            json_t *box = json_object_get(json_object_get(f, "detection"), "box");
            double bx = json_real_value(json_object_get(box, "x"));
            double by = json_real_value(json_object_get(box, "y"));
            double bw = json_real_value(json_object_get(box, "width"));
            double bh = json_real_value(json_object_get(box, "height"));
            size_t best = 0;
            double io = 0;
            for (size_t i = 0; i < r.n; i++)
                if (iou(r.faces[i].box, bx, by, bw, bh) > io) {
                    io = iou(r.faces[i].box, bx, by, bw, bh);
                    best = i;
                }
            v->iou[k] = fmin(v->iou[k], io);
            if (io < 0.5) {
                v->missing++;
                continue;
            }
            float ref[128];
            json_t *desc = json_object_get(f, "descriptor");
            for (int d = 0; d < 128; d++)
                ref[d] = (float)json_real_value(json_array_get(desc, (size_t)d));
            v->worst_l2 = fmax(v->worst_l2, face_distance(r.faces[best].descriptor, ref));
            v->mean_iou += io;
            paired++;
            if (v->n_ids < MAX_IDS) {
                snprintf(v->ids[v->n_ids], sizeof v->ids[0], "%.40s#%d", g_ph[k].name,
                         (int)(j % 1000));
                memcpy(v->desc[v->n_ids++], r.faces[best].descriptor, sizeof v->desc[0]);
            }
            v->faces++;
        }
        v->worst_iou = fmin(v->worst_iou, v->iou[k]);
        face_result_free(&r);
    }
    v->mean_iou /= paired ? paired : 1;
    /* verdicts: face-api's, and this pipeline's with the f32 detector */
    json_t *ids = json_object_get(g_dist, "ids"), *mat = json_object_get(g_dist, "matrix");
    for (size_t a = 0; a < json_array_size(ids); a++)
        for (size_t b = a + 1; b < json_array_size(ids); b++) {
            int ia = -1, ib = -1;
            for (int q = 0; q < v->n_ids; q++) {
                if (strcmp(v->ids[q], json_string_value(json_array_get(ids, a))) == 0)
                    ia = q;
                if (strcmp(v->ids[q], json_string_value(json_array_get(ids, b))) == 0)
                    ib = q;
            }
            if (ia < 0 || ib < 0)
                continue;
            double want = json_number_value(json_array_get(json_array_get(mat, a), b));
            double got = face_distance(v->desc[ia], v->desc[ib]);
            if ((want < 0.6) != (got < 0.6)) {
                v->flips_api++;
                if (g_verbose)
                    printf("  %s: %s / %s: face-api %.4f, here %.4f\n", nn_precision_name(det),
                           v->ids[ia], v->ids[ib], want, got);
            }
            if (f32 && ia < f32->n_ids && ib < f32->n_ids &&
                strcmp(f32->ids[ia], v->ids[ia]) == 0 && strcmp(f32->ids[ib], v->ids[ib]) == 0)
                v->flips_f32 += (face_distance(f32->desc[ia], f32->desc[ib]) < 0.6) != (got < 0.6);
        }
    free(in);
    face_engine_free(e);
    return 0;
}

static double raw_diff(const variant_result *a, const variant_result *b)
{
    size_t nout = face_net_output_floats(FACE_NET_TINY, SIZE);
    double d = 0;
    for (int k = 0; k < g_n; k++)
        for (size_t i = 0; i < nout; i++)
            d = fmax(d, fabs((double)a->raw[k][i] - b->raw[k][i]));
    return d;
}

static void free_variant(variant_result *v)
{
    for (int k = 0; k < g_n; k++)
        free(v->raw[k]);
}

static void print_row(const char *name, const variant_result *v)
{
    printf("| %s | %d (%d missing, %d extra) | %.4f | %.4f | %.4f | %d | %d |\n", name, v->faces,
           v->missing, v->extra, v->worst_iou, v->mean_iou, v->worst_l2, v->flips_api,
           v->flips_f32);
}

static int holds(const variant_result *v, const variant_result *f32, double min_iou)
{
    return v->worst_iou >= min_iou && v->missing == 0 && v->extra == 0 &&
           v->flips_api <= f32->flips_api;
}

/* Opens the models with tiny's f32 set `keep` (NULL: the committed calibration). */
static face_models *open_with(face_models *base, const char *tmp, const unsigned char *keep)
{
    face_models_opts mo = {.calib_dir = keep ? tmp : NULL};
    if (keep && write_calib(base, tmp, keep))
        return NULL;
    face_models *m;
    return face_models_open(VG_MODELS_DIR, &mo, &m) ? NULL : m;
}

/* Median thread CPU ms of `runs` detector calls per variant, interleaved call by call. */
static void time_variants(face_models **ms, const nn_precision *precs, const char **names, int nv,
                          int runs)
{
    face_engine *es[8];
    size_t nin = face_net_input_floats(FACE_NET_TINY, SIZE);
    size_t nout = face_net_output_floats(FACE_NET_TINY, SIZE);
    float *in = malloc(nin * sizeof *in), *out = malloc(nout * sizeof *out);
    face_image img = {g_ph[0].im.px, g_ph[0].im.w, g_ph[0].im.h};
    face_frame fr;
    face_prepare_detector(&img, FACE_DET_TINY, SIZE, in, &fr);
    double *t = calloc((size_t)nv * runs, sizeof *t);
    for (int v = 0; v < nv; v++) {
        face_engine_opts eo = {.backend = NN_BACKEND_DNNL, .threads = 1};
        face_engine_new(ms[v], &eo, &es[v]);
        for (int w = 0; w < 5; w++) /* compile and warm */
            face_engine_run(es[v], FACE_NET_TINY, SIZE, precs[v], in, 1, out);
    }
    for (int r = 0; r < runs; r++)
        for (int v = 0; v < nv; v++) {
            double t0 = thread_ms();
            face_engine_run(es[v], FACE_NET_TINY, SIZE, precs[v], in, 1, out);
            t[v * runs + r] = thread_ms() - t0;
        }
    printf("\n| detector 416 variant | median CPU ms | min | vs f32 |\n|---|---|---|---|\n");
    double base = 0;
    for (int v = 0; v < nv; v++) {
        double *x = t + v * runs;
        for (int i = 1; i < runs; i++) /* insertion sort */
            for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
                double s = x[j];
                x[j] = x[j - 1];
                x[j - 1] = s;
            }
        if (v == 0)
            base = x[runs / 2];
        printf("| %s | %.3f | %.3f | %.2fx |\n", names[v], x[runs / 2], x[0], x[runs / 2] / base);
        face_engine_free(es[v]);
    }
    free(t);
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    int search = 0, runs = 200;
    nn_precision sp = NN_PREC_INT8; /* what --search mixes with f32 */
    double min_iou = 0.95;
    const char *keep_arg = NULL, *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--search") == 0)
            search = 1;
        else if (strcmp(argv[i], "--verbose") == 0)
            g_verbose = 1;
        else if (strcmp(argv[i], "--prec") == 0 && i + 1 < argc &&
                 nn_precision_parse(argv[i + 1], &sp) == 0)
            i++;
        else if (strcmp(argv[i], "--keep-f32") == 0 && i + 1 < argc)
            keep_arg = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--min-iou") == 0 && i + 1 < argc)
            min_iou = atof(argv[++i]);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out_dir = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--search] [--prec P] [--keep-f32 ID,..] [--runs N] "
                    "[--min-iou X] [--out DIR] [--verbose]\n",
                    argv[0]);
            return 2;
        }
    }
    nn_set_threads(1);
    json_error_t err;
    json_t *results = json_load_file(DATA "/results.json", 0, &err);
    g_dist = json_load_file(DATA "/distances.json", 0, &err);
    if (!results || !g_dist) {
        fprintf(stderr, "cannot read %s\n", DATA);
        return 1;
    }
    const char *name;
    json_t *entry;
    json_object_foreach(results, name, entry)
    {
        if (g_n == MAX_IMGS)
            break;
        char path[512];
        snprintf(path, sizeof path, "%s/images/%s", DATA, name);
        uint8_t *buf;
        size_t len;
        if (vg_read_file(path, (size_t)64 << 20, &buf, &len)) {
            fprintf(stderr, "%s: cannot read\n", path);
            continue;
        }
        img_decode_opts dop = {0};
        img_limits_default(&dop.limits);
        dop.pixfmt = IMG_RGB;
        if (img_decode(buf, len, &dop, &g_ph[g_n].im) != 0)
            fprintf(stderr, "%s: %s\n", name, vg_err_msg());
        else if (g_ph[g_n].im.channels == 3) {
            snprintf(g_ph[g_n].name, sizeof g_ph[0].name, "%s", name);
            g_ph[g_n++].ref = entry;
        }
        vg_free(buf);
    }
    face_models *base;
    if (face_models_open(VG_MODELS_DIR, NULL, &base)) {
        fprintf(stderr, "models: %s\n", vg_err_msg());
        return 1;
    }
    char tmp[] = "/tmp/bench_face_prec_XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    face_opts lv;
    face_opts_for_level(VG_LEVEL_BALANCED, &lv);
    nn_precision rec = lv.precision;
    printf("%d photos, recogniser %s, landmarks f32, tiny %d; IoU = worst over each photo's "
           "faces\n\n",
           g_n, nn_precision_name(rec), SIZE);
    printf(
        "| detector | faces paired / missing / extra | worst IoU | mean IoU | worst descriptor "
        "L2 | verdicts != face-api | verdicts != f32 detector |\n|---|---|---|---|---|---|---|\n");
    static variant_result vf32, vbf16, vint8, vmix, one;
    run_variant(base, NN_PREC_F32, rec, &vf32, NULL);
    print_row("f32", &vf32);
    if (nn_precision_check(NN_PREC_BF16) == 0) {
        run_variant(base, NN_PREC_BF16, rec, &vbf16, &vf32);
        print_row("bf16", &vbf16);
    }
    run_variant(base, NN_PREC_INT8, rec, &vint8, &vf32);
    print_row("int8 (committed calibration)", &vint8);
    const nn_calib *tc = face_models_calib(base, FACE_NET_TINY);
    int nt = tc ? tc->n : 0;
    unsigned char keep[64] = {0};
    if (nt > 64 || nt == 0)
        return 1;
    char label[256];
    if (tc->f32_ops)
        memcpy(keep, tc->f32_ops, (size_t)nt);
    /* first and last in f32 */
    memset(keep, 0, sizeof keep);
    keep[1] = keep[18] = 1;
    face_models *m = open_with(base, tmp, keep);
    run_variant(m, NN_PREC_INT8, rec, &vmix, &vf32);
    print_row("int8, conv0 and conv8 f32", &vmix);
    free_variant(&vmix);
    face_models_free(m);
    if (keep_arg) {
        memset(keep, 0, sizeof keep);
        for (const char *s = keep_arg; *s;) {
            int id = atoi(s);
            if (id > 0 && id < nt)
                keep[id] = 1;
            s = strchr(s, ',');
            if (!s)
                break;
            s++;
        }
        m = open_with(base, tmp, keep);
        run_variant(m, sp, rec, &vmix, &vf32);
        snprintf(label, sizeof label, "%s, f32 at %s", nn_precision_name(sp), keep_arg);
        print_row(label, &vmix);
        free_variant(&vmix);
        face_models_free(m);
    }
    printf("\nper photo worst IoU: f32 / int8:");
    for (int k = 0; k < g_n; k++)
        printf(" %s %.3f/%.3f", g_ph[k].name, vf32.iou[k], vint8.iou[k]);
    printf("\n");
    if (search) {
        /* each conv alone in the reduced precision */
        double cerr[N_CONVS], wiou[N_CONVS];
        printf("\n| conv (tensor id) alone in %s |", nn_precision_name(sp));
        printf(" worst IoU | max abs(raw - f32) | verdicts != face-api | != f32 detector "
               "|\n|---|---|---|---|---|\n");
        for (int c = 0; c < N_CONVS; c++) {
            memset(keep, 1, (size_t)nt);
            keep[k_convs[c]] = 0;
            m = open_with(base, tmp, keep);
            run_variant(m, sp, rec, &one, &vf32);
            cerr[c] = raw_diff(&one, &vf32);
            wiou[c] = one.worst_iou;
            printf("| t%d | %.4f | %.4f | %d | %d |\n", k_convs[c], one.worst_iou, cerr[c],
                   one.flips_api, one.flips_f32);
            free_variant(&one);
            face_models_free(m);
        }
        int order[N_CONVS];
        for (int c = 0; c < N_CONVS; c++)
            order[c] = c;
        for (int i = 1; i < N_CONVS; i++)
            for (int j = i; j > 0 && cerr[order[j]] < cerr[order[j - 1]]; j--) {
                int s = order[j];
                order[j] = order[j - 1];
                order[j - 1] = s;
            }
        memset(keep, 1, (size_t)nt);
        printf(
            "\ngreedy, least harmful first:\n\n| made %s | kept | worst IoU | faces "
            "missing/extra | verdicts != face-api | != f32 detector |\n|---|---|---|---|---|---|\n",
            nn_precision_name(sp));
        for (int i = 0; i < N_CONVS; i++) {
            int id = k_convs[order[i]];
            keep[id] = 0;
            m = open_with(base, tmp, keep);
            run_variant(m, sp, rec, &one, &vf32);
            int ok = holds(&one, &vf32, min_iou);
            printf("| t%d | %s | %.4f | %d/%d | %d | %d |\n", id, ok ? "yes" : "no (back to f32)",
                   one.worst_iou, one.missing, one.extra, one.flips_api, one.flips_f32);
            if (!ok)
                keep[id] = 1;
            free_variant(&one);
            face_models_free(m);
        }
        int n = 0;
        n += snprintf(label + n, sizeof label - (size_t)n, "%s, f32 at", nn_precision_name(sp));
        for (int i = 0; i < nt; i++)
            if (keep[i])
                n += snprintf(label + n, sizeof label - (size_t)n, " t%d", i);
        m = open_with(base, tmp, keep);
        run_variant(m, sp, rec, &vmix, &vf32);
        printf("\nchosen:\n\n");
        print_row(label, &vmix);
        if (out_dir) {
            char path[512];
            snprintf(path, sizeof path, "%s/tiny.txt", out_dir);
            nn_calib w = *tc;
            w.f32_ops = keep;
            printf("written: %s (%s)\n", path,
                   nn_calib_save(path, &w, "bench_face_prec --search") ? "failed" : "ok");
        }
        face_models *tm[4] = {base, base, base, m};
        nn_precision tp[4] = {NN_PREC_F32, NN_PREC_BF16, NN_PREC_INT8, sp};
        const char *tn[4] = {"f32", "bf16", "int8", label};
        if (runs > 0)
            time_variants(tm, tp, tn, 4, runs);
        free_variant(&vmix);
        face_models_free(m);
        (void)wiou;
    } else if (runs > 0) {
        memset(keep, 0, sizeof keep);
        keep[1] = keep[18] = 1;
        m = open_with(base, tmp, keep);
        face_models *tm[4] = {base, base, base, m};
        nn_precision tp[4] = {NN_PREC_F32, NN_PREC_BF16, NN_PREC_INT8, NN_PREC_INT8};
        const char *tn[4] = {"f32", "bf16", "int8", "int8, conv0 and conv8 f32"};
        time_variants(tm, tp, tn, 4, runs);
        face_models_free(m);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    face_models_free(base);
    for (int k = 0; k < g_n; k++)
        img_image_free(&g_ph[k].im);
    json_decref(results);
    json_decref(g_dist);
    return 0;
}
