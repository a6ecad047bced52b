/* `vigil compare A B`: descriptor distance between the main faces of two images, and a verdict. */
#include "cli/cli.h"
#include "core/core.h"
#include "face/face.h"
#include "img/img.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil compare [options] A B\n\n"
               "Compares the highest-scoring face of image A with that of image B: the euclidean\n"
               "distance of their descriptors and a same/different verdict.\n\n"
               "  --threshold D   same person when distance < D (default 0.6, dlib/face-api)\n"
               "  --level L       speed | balanced (default) | accuracy | memory\n"
               "  --precision P   f32 | bf16 | int8\n"
               "  --json          one JSON object\n"
               "  --models DIR    model directory\n"
               "exit status: 0 same person, 3 different, 1 error, 2 usage\n");
}

#define CLI_EXIT_DIFFERENT 3

/* Best face's descriptor of one image. */
static int describe(face_engine *e, const char *path, const face_opts *o, float *desc)
{
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, IMG_DEFAULT_MAX_INPUT_BYTES, &buf, &len);
    if (rc)
        return rc;
    img_image im;
    img_decode_opts io;
    img_decode_opts_default(&io);
    rc = img_decode(buf, len, &io, &im);
    vg_free(buf);
    if (rc)
        return rc;
    face_image fi = {im.px, im.w, im.h};
    face_result r;
    rc = face_analyze(e, &fi, o, &r);
    img_image_free(&im);
    if (rc)
        return rc;
    if (r.n == 0 || !r.faces[0].has_descriptor) {
        face_result_free(&r);
        return vg_err_set(VG_ENOFACE, "no face found");
    }
    memcpy(desc, r.faces[0].descriptor, sizeof r.faces[0].descriptor);
    face_result_free(&r);
    return 0;
}

static int run(int argc, char **argv)
{
    double threshold = FACE_SAME_PERSON_DISTANCE;
    vg_level level = VG_LEVEL_BALANCED;
    const char *prec = NULL, *models = getenv("VIGIL_MODELS_DIR");
    int json = 0, i = 1;
    if (!models || !*models)
        models = VG_DEFAULT_MODELS_DIR;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (!v) {
            fprintf(stderr, "vigil compare: %s needs a value\n", a);
            return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--threshold") == 0) {
            threshold = strtod(v, NULL), i++;
        } else if (strcmp(a, "--precision") == 0) {
            prec = v, i++;
        } else if (strcmp(a, "--models") == 0) {
            models = v, i++;
        } else if (strcmp(a, "--level") == 0) {
            if (vg_level_parse(v, &level)) {
                fprintf(stderr, "vigil compare: %s\n", vg_err_msg());
                return CLI_EXIT_USAGE;
            }
            i++;
        } else {
            fprintf(stderr, "vigil compare: unknown option %s\n", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - i != 2 || !(threshold > 0)) {
        fprintf(stderr, "vigil compare: needs exactly two images and a positive threshold\n");
        return CLI_EXIT_USAGE;
    }
    face_opts o;
    face_opts_for_level(level, &o);
    if (prec && nn_precision_parse(prec, &o.precision)) {
        fprintf(stderr, "vigil compare: %s\n", vg_err_msg());
        return CLI_EXIT_USAGE;
    }
    if (o.precision != NN_PREC_F32 && nn_precision_check(o.precision)) {
        VG_WARN("compare", "%s; falling back to f32", vg_err_msg());
        o.precision = NN_PREC_F32;
    }
    face_models *m;
    face_models_opts mo = {.load_ssd = o.detector == FACE_DET_SSD};
    if (face_models_open(models, &mo, &m)) {
        fprintf(stderr, "vigil compare: models: %s\n", vg_err_msg());
        return CLI_EXIT_FAILED;
    }
    face_engine *e = NULL;
    float da[VG_DESCRIPTOR_DIM], db[VG_DESCRIPTOR_DIM];
    int rc = face_engine_new(m, NULL, &e);
    const char *bad = argv[i];
    if (!rc && !(rc = describe(e, argv[i], &o, da)))
        bad = argv[i + 1], rc = describe(e, argv[i + 1], &o, db);
    face_engine_free(e);
    face_models_free(m);
    if (rc) {
        fprintf(stderr, "vigil compare: %s: %s\n", bad, vg_err_msg());
        return CLI_EXIT_FAILED;
    }
    float d = face_distance(da, db);
    int same = d < threshold;
    if (json)
        printf("{\"distance\":%.4f,\"threshold\":%.4f,\"same_person\":%s}\n", d, threshold,
               same ? "true" : "false");
    else
        printf("distance %.4f: %s (threshold %.2f)\n", d, same ? "same person" : "different people",
               threshold);
    return same ? CLI_EXIT_OK : CLI_EXIT_DIFFERENT;
}

const cli_command cli_cmd_compare = {"compare", "face distance of two images, same/different", run};
