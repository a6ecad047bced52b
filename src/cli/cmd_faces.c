/* `vigil faces`: detect faces, 68 landmarks and 128-d descriptors in images (face module). */
#include "cli/cli.h"
#include "core/core.h"
#include "face/face.h"
#include "img/img.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *models_dir_default(void)
{
    const char *e = getenv("VIGIL_MODELS_DIR");
    return e && *e ? e : VG_DEFAULT_MODELS_DIR;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil faces [options] IMAGE...\n\n"
               "Finds every face: box, score, 68 landmarks and the 128-d descriptor\n"
               "(face-api 1.7.15 networks; descriptors closer than 0.6 are the same person).\n\n"
               "  --level L          speed | balanced (default) | accuracy | memory\n"
               "  --detector D       tiny | ssd (overrides the level)\n"
               "  --input-size N     tiny detector input: 320 | 416 | 608 (multiple of 32)\n"
               "  --precision P      recogniser: f32 | bf16 | int8 (overrides the level)\n"
               "  --detector-precision P  detector: f32 | bf16 | int8 (overrides the level)\n"
               "  --threshold T      detector score threshold (default 0.5)\n"
               "  --no-descriptors   stop after landmarks\n"
               "  --json             one JSON object per image (boxes, landmarks, descriptors)\n"
               "  --threads N        OpenMP threads for the networks (default: all)\n"
               "  --models DIR       model directory (default $VIGIL_MODELS_DIR or the build's)\n"
               "  --verbose          log the CPU ISA, the oneDNN implementations and memory\n"
               "  --dnnl-verbose     oneDNN's own per-primitive trace on stderr\n");
}

/* Decodes a file to RGB (returns owned pixels in *im). */
static int load_image(const char *path, img_image *im)
{
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, IMG_DEFAULT_MAX_INPUT_BYTES, &buf, &len);
    if (rc)
        return rc;
    img_decode_opts o;
    img_decode_opts_default(&o);
    rc = img_decode(buf, len, &o, im);
    vg_free(buf);
    return rc;
}

static void print_json(const char *path, const img_image *im, const face_result *r, double ms,
                       int with_desc)
{
    printf("{\"file\":\"");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20) /* a control character in a file name: JSON wants it escaped */
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    printf("\",\"width\":%u,\"height\":%u,\"ms\":%.3f,\"faces\":[", im->w, im->h, ms);
    for (size_t i = 0; i < r->n; i++) {
        const face_face *f = &r->faces[i];
        printf("%s{\"score\":%.4f,\"box\":[%.2f,%.2f,%.2f,%.2f],\"landmarks\":[", i ? "," : "",
               f->score, f->box.x, f->box.y, f->box.w, f->box.h);
        for (int k = 0; k < FACE_LANDMARKS; k++)
            printf("%s[%.2f,%.2f]", k ? "," : "", f->landmarks[k][0], f->landmarks[k][1]);
        printf("]");
        if (with_desc && f->has_descriptor) {
            printf(",\"descriptor\":[");
            for (int k = 0; k < VG_DESCRIPTOR_DIM; k++)
                printf("%s%.7g", k ? "," : "", f->descriptor[k]);
            printf("]");
        }
        printf("}");
    }
    printf("]}\n");
}

static int run(int argc, char **argv)
{
    vg_level level = VG_LEVEL_BALANCED;
    const char *det = NULL, *prec = NULL, *det_prec = NULL, *models = models_dir_default();
    int input_size = 0, json = 0, verbose = 0, threads = 0, no_desc = 0;
    float threshold = -1;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "--dnnl-verbose") == 0) {
            nn_set_dnnl_verbose(1);
        } else if (strcmp(a, "--no-descriptors") == 0) {
            no_desc = 1;
        } else if (!v) {
            fprintf(stderr, "vigil faces: %s needs a value (see --help)\n", a);
            return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--level") == 0) {
            if (vg_level_parse(v, &level)) {
                fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
                return CLI_EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--detector") == 0) {
            det = v, i++;
        } else if (strcmp(a, "--precision") == 0) {
            prec = v, i++;
        } else if (strcmp(a, "--detector-precision") == 0) {
            det_prec = v, i++;
        } else if (strcmp(a, "--models") == 0) {
            models = v, i++;
        } else if (strcmp(a, "--input-size") == 0) {
            input_size = atoi(v), i++;
        } else if (strcmp(a, "--threads") == 0) {
            threads = atoi(v), i++;
        } else if (strcmp(a, "--threshold") == 0) {
            threshold = strtof(v, NULL), i++;
        } else {
            fprintf(stderr, "vigil faces: unknown option %s (see --help)\n", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "vigil faces: no image given (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    face_opts o;
    face_opts_for_level(level, &o);
    if (det) {
        if (strcmp(det, "tiny") == 0) {
            o.detector = FACE_DET_TINY;
            if (o.input_size == FACE_SSD_SIZE)
                o.input_size = 608;
        } else if (strcmp(det, "ssd") == 0) {
            o.detector = FACE_DET_SSD;
        } else {
            fprintf(stderr, "vigil faces: detector '%s' is not tiny or ssd\n", det);
            return CLI_EXIT_USAGE;
        }
    }
    if (input_size) {
        if (input_size < 32 || input_size > 1024 || input_size % 32) {
            fprintf(stderr, "vigil faces: --input-size %d is not a multiple of 32 in 32..1024\n",
                    input_size);
            return CLI_EXIT_USAGE;
        }
        o.input_size = input_size;
    }
    if (prec && nn_precision_parse(prec, &o.precision)) {
        fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
        return CLI_EXIT_USAGE;
    }
    if (o.precision != NN_PREC_F32 && nn_precision_check(o.precision)) {
        if (prec) {
            fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
            return CLI_EXIT_FAILED;
        }
        VG_WARN("faces", "%s; falling back to f32", vg_err_msg());
        o.precision = NN_PREC_F32;
    }
    if (det_prec && nn_precision_parse(det_prec, &o.detector_precision)) {
        fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
        return CLI_EXIT_USAGE;
    }
    if (o.detector_precision != NN_PREC_F32 && nn_precision_check(o.detector_precision)) {
        if (det_prec) {
            fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
            return CLI_EXIT_FAILED;
        }
        o.detector_precision = NN_PREC_F32;
    }
    if (threshold >= 0)
        o.score_threshold = threshold;
    o.descriptors = !no_desc;
    if (threads > 0)
        nn_set_threads(threads);
    face_models *m;
    face_models_opts mo = {.load_ssd = o.detector == FACE_DET_SSD};
    if (face_models_open(models, &mo, &m)) {
        fprintf(stderr, "vigil faces: models: %s\n", vg_err_msg());
        return CLI_EXIT_FAILED;
    }
    face_engine *e;
    if (face_engine_new(m, NULL, &e)) {
        fprintf(stderr, "vigil faces: %s\n", vg_err_msg());
        face_models_free(m);
        return CLI_EXIT_FAILED;
    }
    if (verbose)
        fprintf(stderr, "vigil faces: cpu %s; %s; detector %s %d %s, landmarks %s, recogniser %s\n",
                vg_cpu_describe(), nn_dnnl_describe(), o.detector == FACE_DET_SSD ? "ssd" : "tiny",
                o.detector == FACE_DET_SSD ? FACE_SSD_SIZE : o.input_size,
                nn_precision_name(o.detector_precision), nn_precision_name(o.landmarks_precision),
                nn_precision_name(o.precision));
    int failed = 0;
    for (; i < argc; i++) {
        img_image im;
        int rc = load_image(argv[i], &im);
        if (rc) {
            fprintf(stderr, "vigil faces: %s: %s\n", argv[i], vg_err_msg());
            failed = 1;
            continue;
        }
        face_image fi = {im.px, im.w, im.h};
        face_result r;
        uint64_t t0 = vg_now_ns();
        rc = face_analyze(e, &fi, &o, &r);
        double ms = (double)(vg_now_ns() - t0) / 1e6;
        if (rc) {
            fprintf(stderr, "vigil faces: %s: %s\n", argv[i], vg_err_msg());
            failed = 1;
            img_image_free(&im);
            continue;
        }
        if (json) {
            print_json(argv[i], &im, &r, ms, o.descriptors);
        } else {
            printf("%s: %zu face%s (%ux%u, %.1f ms)\n", argv[i], r.n, r.n == 1 ? "" : "s", im.w,
                   im.h, ms);
            for (size_t k = 0; k < r.n; k++)
                printf("  face %zu: score %.4f box %.1f,%.1f %.1fx%.1f%s\n", k, r.faces[k].score,
                       r.faces[k].box.x, r.faces[k].box.y, r.faces[k].box.w, r.faces[k].box.h,
                       r.faces[k].has_descriptor ? "" : " (no descriptor)");
        }
        if (verbose)
            fprintf(stderr, "vigil faces: %s: oneDNN %s; engine memory %zu KiB, weights %zu KiB\n",
                    argv[i], face_engine_impl(e), face_engine_memory(e) >> 10,
                    face_models_bytes(m) >> 10);
        face_result_free(&r);
        img_image_free(&im);
    }
    face_engine_free(e);
    face_models_free(m);
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

const cli_command cli_cmd_faces = {"faces", "find faces: boxes, landmarks, 128-d descriptors", run};
