/* `vigil models verify | calibrate`: check the pinned model files; recompute int8 scales. */
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
    fprintf(f, "usage: vigil models verify [--models DIR]\n"
               "       vigil models calibrate [--models DIR] [--out DIR] IMAGE...\n\n"
               "verify     checks every file of DIR/SHA256SUMS (missing, truncated, altered)\n"
               "calibrate  recomputes the int8 activation ranges of the face networks from face\n"
               "           images (max |activation| per tensor, reference kernels) and writes\n"
               "           DIR/calibration/*.txt (or --out DIR); commit models/calibration/\n");
}

static void report(void *ctx, const char *file, int status)
{
    int *bad = ctx;
    if (status == 0) {
        printf("ok       %s\n", file);
    } else {
        printf("FAILED   %s: %s\n", file, vg_err_msg());
        (*bad)++;
    }
}

static int run(int argc, char **argv)
{
    const char *models = getenv("VIGIL_MODELS_DIR"), *out = NULL;
    if (!models || !*models)
        models = VG_DEFAULT_MODELS_DIR;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    int i = 2;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "vigil models: %s needs a value\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (strcmp(argv[i], "--models") == 0)
            models = argv[++i];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else {
            fprintf(stderr, "vigil models: unknown option %s\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (strcmp(sub, "verify") == 0) {
        int bad = 0;
        int rc = nn_models_verify(models, report, &bad);
        if (rc && !bad)
            fprintf(stderr, "vigil models: %s\n", vg_err_msg());
        return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    }
    if (strcmp(sub, "calibrate") != 0) {
        fprintf(stderr, "vigil models: unknown subcommand '%s'\n", sub);
        return CLI_EXIT_USAGE;
    }
    if (i >= argc) {
        fprintf(stderr, "vigil models calibrate: no images given\n");
        return CLI_EXIT_USAGE;
    }
    char outdir[4096];
    snprintf(outdir, sizeof outdir, "%s", out ? out : models);
    if (!out)
        snprintf(outdir, sizeof outdir, "%s/calibration", models);
    size_t n = (size_t)(argc - i);
    img_image *ims = calloc(n, sizeof *ims);
    face_image *fis = calloc(n, sizeof *fis);
    char *names = calloc(n, 64);
    int rc = ims && fis && names ? 0 : VG_ENOMEM;
    size_t used = 0, nl = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        const char *path = argv[i + (int)k];
        uint8_t *buf;
        size_t len;
        img_decode_opts o;
        img_decode_opts_default(&o);
        if (vg_read_file(path, IMG_DEFAULT_MAX_INPUT_BYTES, &buf, &len) == 0) {
            int dr = img_decode(buf, len, &o, &ims[used]);
            vg_free(buf);
            if (dr == 0) {
                fis[used] = (face_image){ims[used].px, ims[used].w, ims[used].h};
                used++;
                const char *base = strrchr(path, '/');
                nl += (size_t)snprintf(names + nl, n * 64 - nl, "%s%s", nl ? " " : "",
                                       base ? base + 1 : path);
                continue;
            }
        }
        fprintf(stderr, "vigil models calibrate: %s: %s (skipped)\n", path, vg_err_msg());
    }
    face_models *m = NULL;
    face_models_opts mo = {.load_ssd = 1};
    if (!rc)
        rc = face_models_open(models, &mo, &m);
    if (!rc) {
        char note[8192];
        snprintf(note, sizeof note, "images: %s", names);
        rc = face_calibrate(m, fis, used, outdir, note);
    }
    if (rc)
        fprintf(stderr, "vigil models calibrate: %s\n", vg_err_msg());
    else
        printf("wrote %s/{tiny,landmarks,recognition,ssd}.txt from %zu images\n", outdir, used);
    face_models_free(m);
    for (size_t k = 0; k < used; k++)
        img_image_free(&ims[k]);
    free(ims);
    free(fis);
    free(names);
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

const cli_command cli_cmd_models = {"models", "verify model files; recompute int8 calibration",
                                    run};
