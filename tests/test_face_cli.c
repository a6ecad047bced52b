/* `vigil faces`, `vigil compare` and `vigil models`, run as a user would: JSON output checked
 * against face-api's results, verdicts and exit statuses, odd and bad files, a damaged model
 * directory. Runs the built binary (VG_BINARY_DIR/src/cli/vigil) through /bin/sh with files
 * for stdout and stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "support/vgt_cli.h"

#include <jansson.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VIGIL VG_BINARY_DIR "/src/cli/vigil"
#define IMAGES VG_TEST_DATA_DIR "/faces/images/"
#define MODELS VG_MODELS_DIR

typedef struct {
    char dir[64];
    char junk[128], one[128], wide[128], tall[128], flat[128];
} fixture;

/* Runs `vigil <args>` (args is shell text). */
static vgt_run_result run_vigil(const fixture *fx, const char *args)
{
    /* one OpenMP thread: ctest runs tests side by side (see test_face.c) */
    return vgt_run(fx->dir, "OMP_NUM_THREADS=1 VIGIL_MODELS_DIR='" MODELS "'", VIGIL, args,
                   1 << 22);
}

/* An RGB PNG of one colour (w x h), for the odd sizes. */
static void write_png(const char *path, uint32_t w, uint32_t h, uint8_t v)
{
    size_t n = (size_t)w * h * 3;
    uint8_t *px = malloc(n);
    assert_non_null(px);
    memset(px, v, n);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_png_file(ctx, f);
    struct spng_ihdr ihdr = {
        .width = w, .height = h, .bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    spng_set_ihdr(ctx, &ihdr);
    assert_int_equal(spng_encode_image(ctx, px, n, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
    spng_ctx_free(ctx);
    fclose(f);
    free(px);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/vigil-face-cli-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->junk, sizeof fx->junk, "%s/junk.jpg", fx->dir);
    snprintf(fx->one, sizeof fx->one, "%s/one.png", fx->dir);
    snprintf(fx->wide, sizeof fx->wide, "%s/wide.png", fx->dir);
    snprintf(fx->tall, sizeof fx->tall, "%s/tall.png", fx->dir);
    snprintf(fx->flat, sizeof fx->flat, "%s/flat.png", fx->dir);
    FILE *f = fopen(fx->junk, "w");
    fputs("not an image, whatever its name says\n", f);
    fclose(f);
    write_png(fx->one, 1, 1, 128);
    write_png(fx->wide, 10000, 50, 90);
    write_png(fx->tall, 50, 10000, 90);
    write_png(fx->flat, 640, 480, 200);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static double iou(json_t *box, double x, double y, double w, double h)
{
    double bx = json_number_value(json_array_get(box, 0));
    double by = json_number_value(json_array_get(box, 1));
    double bw = json_number_value(json_array_get(box, 2));
    double bh = json_number_value(json_array_get(box, 3));
    double x0 = fmax(bx, x), y0 = fmax(by, y), x1 = fmin(bx + bw, x + w), y1 = fmin(by + bh, y + h);
    double inter = fmax(0, x1 - x0) * fmax(0, y1 - y0);
    return inter / (bw * bh + w * h - inter);
}

/* --json at face-api's settings (tiny 416, f32): one object per image, every face of
 * results.json with its box (IoU >= 0.95), 68 landmarks and a descriptor within L2 0.01. */
static void test_faces_json_matches_oracle(void **state)
{
    fixture *fx = *state;
    vgt_run_result r =
        run_vigil(fx, "faces --json --precision f32 --detector-precision f32 "
                      "--input-size 416 '" IMAGES "sample1.png' '" IMAGES "astronaut.png'");
    assert_int_equal(r.status, 0);
    json_error_t err;
    json_t *oracle = json_load_file(VG_TEST_DATA_DIR "/faces/results.json", 0, &err);
    assert_non_null(oracle);
    const char *line = r.out;
    const char *names[2] = {"sample1.png", "astronaut.png"};
    for (int k = 0; k < 2; k++) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &err);
        if (!o)
            fail_msg("line %d is not JSON: %s", k, err.text);
        assert_non_null(strstr(json_string_value(json_object_get(o, "file")), names[k]));
        json_t *want = json_object_get(json_object_get(oracle, names[k]), "faces");
        json_t *faces = json_object_get(o, "faces");
        assert_int_equal(json_array_size(faces), json_array_size(want));
        for (size_t i = 0; i < json_array_size(faces); i++) {
            json_t *f = json_array_get(faces, i), *w = json_array_get(want, i);
            json_t *wb = json_object_get(json_object_get(w, "detection"), "box");
            double io = iou(json_object_get(f, "box"), json_number_value(json_object_get(wb, "x")),
                            json_number_value(json_object_get(wb, "y")),
                            json_number_value(json_object_get(wb, "width")),
                            json_number_value(json_object_get(wb, "height")));
            assert_true(io >= 0.95);
            assert_int_equal(json_array_size(json_object_get(f, "landmarks")), 68);
            json_t *d = json_object_get(f, "descriptor"), *wd = json_object_get(w, "descriptor");
            assert_int_equal(json_array_size(d), 128);
            double s = 0;
            for (size_t j = 0; j < 128; j++) {
                double v = json_number_value(json_array_get(d, j)) -
                           json_number_value(json_array_get(wd, j));
                s += v * v;
            }
            if (!(sqrt(s) < 0.01))
                fail_msg("%s face %zu: descriptor L2 %g from face-api's", names[k], i, sqrt(s));
        }
        json_decref(o);
        line = nl + 1;
    }
    assert_int_equal(*line, 0); /* nothing else on stdout */
    json_decref(oracle);
    vgt_run_free(&r);
}

/* Odd images: a 1x1 pixel, a 10000x50 strip, a 50x10000 one and a flat grey picture decode
 * and give zero faces with status 0; the text output says so. */
static void test_faces_odd_sizes(void **state)
{
    fixture *fx = *state;
    char args[1024];
    snprintf(args, sizeof args, "faces --json '%s' '%s' '%s' '%s'", fx->one, fx->wide, fx->tall,
             fx->flat);
    vgt_run_result r = run_vigil(fx, args);
    if (r.status != 0)
        fail_msg("status %d: %s", r.status, r.err);
    const uint32_t dims[4][2] = {{1, 1}, {10000, 50}, {50, 10000}, {640, 480}};
    const char *line = r.out;
    for (int k = 0; k < 4; k++) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &err);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "width")), dims[k][0]);
        assert_int_equal(json_integer_value(json_object_get(o, "height")), dims[k][1]);
        assert_int_equal(json_array_size(json_object_get(o, "faces")), 0);
        json_decref(o);
        line = nl + 1;
    }
    vgt_run_free(&r);
    r = run_vigil(fx, "faces '" IMAGES "vlad_tile1.png'");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "vlad_tile1.png: 1 face ("));
    vgt_run_free(&r);
    /* a file name with a quote, a backslash and a tab still gives valid JSON naming it */
    char odd[256], cmd[1024];
    snprintf(odd, sizeof odd, "%s/a\"b\\c\td.png", fx->dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fx->one, odd);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "faces --json '%s'", odd);
    r = run_vigil(fx, cmd);
    assert_int_equal(r.status, 0);
    json_error_t err;
    json_t *o = json_loads(r.out, 0, &err);
    if (!o)
        fail_msg("not JSON: %s: %s", err.text, r.out);
    assert_string_equal(json_string_value(json_object_get(o, "file")), odd);
    json_decref(o);
    vgt_run_free(&r);
}

/* A bad file among good ones: the good ones are still reported, the bad one is named on stderr,
 * and the status is 1 at the end. A missing file likewise. */
static void test_faces_bad_files(void **state)
{
    fixture *fx = *state;
    char args[1024];
    snprintf(args, sizeof args, "faces --json '%s' '" IMAGES "vlad_tile2.png' '%s/missing.png'",
             fx->junk, fx->dir);
    vgt_run_result r = run_vigil(fx, args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "junk.jpg"));
    assert_non_null(strstr(r.err, "missing.png"));
    assert_non_null(strstr(r.out, "vlad_tile2.png"));
    assert_null(strstr(r.out, "junk.jpg"));
    vgt_run_free(&r);
}

/* Usage errors exit 2 with one line on stderr and nothing on stdout. */
static void test_faces_usage(void **state)
{
    fixture *fx = *state;
    static const char *bad[] = {
        "faces",
        "faces --bogus '" IMAGES "astronaut.png'",
        "faces --precision fp64 '" IMAGES "astronaut.png'",
        "faces --detector-precision fp16 '" IMAGES "astronaut.png'",
        "faces --input-size 100 '" IMAGES "astronaut.png'",
        "faces --level turbo '" IMAGES "astronaut.png'",
        "faces --detector yolo '" IMAGES "astronaut.png'",
        "compare '" IMAGES "astronaut.png'",
        "compare --threshold -1 '" IMAGES "astronaut.png' '" IMAGES "astronaut.png'",
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(bad); i++) {
        vgt_run_result r = run_vigil(fx, bad[i]);
        if (r.status != 2 || r.out[0] || !r.err[0])
            fail_msg("`vigil %s`: status %d, stdout '%s', stderr '%s'", bad[i], r.status, r.out,
                     r.err);
        vgt_run_free(&r);
    }
    vgt_run_result r = run_vigil(fx, "faces --help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--detector-precision"));
    vgt_run_free(&r);
}

/* compare: two photos of the same person (face-api: 0.1687) exit 0, two people (0.6469) exit
 * 3, the distance printed within int8's error of face-api's; a picture without a face is an
 * error (1) that says so. */
static void test_compare_verdicts(void **state)
{
    fixture *fx = *state;
    vgt_run_result r =
        run_vigil(fx, "compare --json '" IMAGES "vlad_tile1.png' '" IMAGES "vlad_tile2.png'");
    assert_int_equal(r.status, 0);
    json_error_t err;
    json_t *o = json_loads(r.out, 0, &err);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "same_person")));
    double d = json_number_value(json_object_get(o, "distance"));
    if (fabs(d - 0.1687) > 0.08)
        fail_msg("distance %.4f, face-api 0.1687", d);
    json_decref(o);
    vgt_run_free(&r);

    r = run_vigil(fx,
                  "compare --precision f32 '" IMAGES "vlad_tile1.png' '" IMAGES "astronaut.png'");
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.out, "different people"));
    double d2 = 0;
    assert_int_equal(sscanf(r.out, "distance %lf", &d2), 1);
    assert_true(fabs(d2 - 0.6469) < 0.01);
    vgt_run_free(&r);

    /* a threshold above the distance turns the verdict */
    r = run_vigil(fx, "compare --threshold 0.9 --precision f32 '" IMAGES "vlad_tile1.png' '" IMAGES
                      "astronaut.png'");
    assert_int_equal(r.status, 0);
    vgt_run_free(&r);

    char args[512];
    snprintf(args, sizeof args, "compare '" IMAGES "vlad_tile1.png' '%s'", fx->flat);
    r = run_vigil(fx, args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "flat.png"));
    assert_non_null(strstr(r.err, "no face"));
    vgt_run_free(&r);
}

/* models verify passes on the real directory; a copy with one byte of one weight file altered
 * is refused by `models verify` and by `faces`, each naming the file. */
static void test_models_damaged(void **state)
{
    fixture *fx = *state;
    vgt_run_result r = run_vigil(fx, "models verify --models '" MODELS "'");
    if (r.status != 0)
        fail_msg("models verify: %d %s %s", r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "face_recognition_model.bin"));
    vgt_run_free(&r);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/m' && cp '" MODELS "'/*.json '" MODELS "'/*.bin '" MODELS
             "/SHA256SUMS' '%s/m/' && printf 'X' | dd of='%s/m/face_landmark_68_model.bin' "
             "bs=1 seek=1000 conv=notrunc 2>/dev/null",
             fx->dir, fx->dir, fx->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "models verify --models '%s/m'", fx->dir);
    r = run_vigil(fx, cmd);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "face_landmark_68_model.bin"));
    vgt_run_free(&r);
    snprintf(cmd, sizeof cmd, "faces --models '%s/m' '" IMAGES "astronaut.png'", fx->dir);
    r = run_vigil(fx, cmd);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "face_landmark_68_model"));
    assert_int_equal(r.out[0], 0);
    vgt_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faces_json_matches_oracle), cmocka_unit_test(test_faces_odd_sizes),
        cmocka_unit_test(test_faces_bad_files),           cmocka_unit_test(test_faces_usage),
        cmocka_unit_test(test_compare_verdicts),          cmocka_unit_test(test_models_damaged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
