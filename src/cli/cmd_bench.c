/* `vigil bench`: the benchmark suite of issue 5 (bench/lib). Writes bench.json, bench.md and SVG
 * charts under --out (default bench/results/suite-<date>/ in the source tree). Exit status 0 when
 * the reports were written (missed targets are findings, not failures), 1 otherwise, 2 for a
 * usage error. */
#include "bench/lib/bench.h"
#include "cli/cli.h"
#include "core/core.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VG_DEFAULT_MODELS_DIR
#define VG_DEFAULT_MODELS_DIR "models"
#endif

static void usage(FILE *f)
{
    fprintf(
        f, "usage: vigil bench [--quick] [--out DIR] [--only SECTIONS] [--images DIR]\n"
           "       vigil bench openloop --help   (open-loop load against a running server)\n"
           "                   [--faces DIR] [--models DIR] [--iterations N] [--quiet]\n"
           "  --quick          reduced counts and durations (a few minutes)\n"
           "  --out DIR        where bench.json, bench.md and the SVG charts go\n"
           "                   (default: bench/results/suite-<date>/ in the source tree)\n"
           "  --only LIST      sections, comma-separated: latency,batch,sweep,cache,memory,levels\n"
           "                   (or 1..6; default all)\n"
           "  --images DIR     S.jpg M.jpg L.jpg HD.jpg (default: bench/images)\n"
           "  --faces DIR      face fixtures with results.json (default: tests/data/faces)\n"
           "  --models DIR     face model weights (default: the build's models/)\n"
           "  --iterations N   override every per-measurement count (smoke runs)\n"
           "  --quiet          no progress lines on stderr\n");
}

/* The source tree: the parent of the build's models directory. */
static void source_dir(char *out, size_t n)
{
    snprintf(out, n, "%s", VG_DEFAULT_MODELS_DIR);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(out, n, ".");
}

static int bench_main(int argc, char **argv)
{
    bench_suite_opts o = {.sections = BENCH_SEC_ALL, .verbose = 1};
    char src[PATH_MAX - 64], images[PATH_MAX], faces[PATH_MAX], out[PATH_MAX], self[PATH_MAX];
    source_dir(src, sizeof src);
    snprintf(images, sizeof images, "%s/bench/images", src);
    snprintf(faces, sizeof faces, "%s/tests/data/faces", src);
    o.images_dir = images;
    o.faces_dir = faces;
    o.models_dir = VG_DEFAULT_MODELS_DIR;
    if (argc > 1 && !strcmp(argv[1], "openloop")) /* issue 13: open-loop load */
        return bench_openloop_main(argc - 1, argv + 1, src);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--quick")) {
            o.quick = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.verbose = 0;
        } else if (v && !strcmp(a, "--out")) {
            o.out_dir = v;
            i++;
        } else if (v && !strcmp(a, "--only")) {
            vg_err_clear();
            if (bench_sections_parse(v, &o.sections) != VG_OK) {
                fprintf(stderr, "vigil bench: --only: %s\n", vg_err_msg());
                return CLI_EXIT_USAGE;
            }
            i++;
        } else if (v && !strcmp(a, "--images")) {
            o.images_dir = v;
            i++;
        } else if (v && !strcmp(a, "--faces")) {
            o.faces_dir = v;
            i++;
        } else if (v && !strcmp(a, "--models")) {
            o.models_dir = v;
            i++;
        } else if (v && !strcmp(a, "--iterations")) {
            char *e;
            long n = strtol(v, &e, 10);
            if (*e || n < 1 || n > 1000000) {
                fprintf(stderr, "vigil bench: --iterations: expected 1..1000000, got '%s'\n", v);
                return CLI_EXIT_USAGE;
            }
            o.iterations = (unsigned)n;
            i++;
        } else {
            fprintf(stderr, "vigil bench: unknown or incomplete argument '%s' (see --help)\n", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!o.out_dir) {
        char when[32];
        vg_format_time(vg_wall_ms(), when, sizeof when);
        when[16] = 0; /* 2026-11-27T12:34 */
        when[13] = when[14];
        when[14] = when[15];
        when[15] = 0;
        snprintf(out, sizeof out, "%s/bench/results/suite-%sZ", src, when);
        o.out_dir = out;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "vigil bench: cannot find the vigil binary (/proc/self/exe)\n");
        return CLI_EXIT_FAILED;
    }
    self[n] = 0;
    o.vigil = self;
    char cmd[1024] = "vigil bench";
    for (int i = 1; i < argc; i++) {
        size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, " %s", argv[i]);
    }
    o.command = cmd;
    vg_err_clear();
    int rc = bench_suite_run(&o);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil bench: %s\n", vg_err_msg());
        return CLI_EXIT_FAILED;
    }
    printf("vigil bench: report in %s/bench.md (and bench.json)\n", o.out_dir);
    return CLI_EXIT_OK;
}

const cli_command cli_cmd_bench = {"bench", "run the benchmark suite (see vigil bench --help)",
                                   bench_main};
