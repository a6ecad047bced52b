/* `vigil vcompare QUERY COMPARED`: the vPDQ verdict for two videos (or their vhash listings). */
#include "cli/cli.h"
#include "core/core.h"
#include "video/video.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_EXIT_DIFFERENT 3

static void usage(FILE *f)
{
    video_match_opts m;
    video_match_opts_default(&m);
    fprintf(f,
            "usage: vigil vcompare [options] QUERY COMPARED\n\n"
            "vPDQ comparison of a query video with a compared (protected) one. Each argument\n"
            "is a video file or a file of `vigil vhash` lines (frame,quality,hash,timestamp).\n"
            "Prints the share of each side's unique frames with a counterpart, the verdict\n"
            "and the matched segments (query seconds = compared seconds).\n\n"
            "  --distance D      a frame matches within D bits (default %d)\n"
            "  --quality Q       frames below quality Q are not compared (default %d)\n"
            "  --compared-pct P  match needs P%% of the compared video's frames (default %g)\n"
            "  --query-pct P     ... and P%% of the query's (default %g)\n"
            "  --clip-pct P      clip rule: P%% of the query's frames inside one contiguous\n"
            "                    segment of the compared video, at least %u frames\n"
            "                    (default %g; over 100 turns it off)\n"
            "  --rate R          sampling rate for video arguments (default %g frames/s)\n"
            "  --every-frame     hash video arguments frame by frame (whole frames only)\n"
            "  --whole-only      frames meet by their whole hashes only (the reference's\n"
            "                    rule), not also by trimmed content or halves\n"
            "  --json            one JSON object: query_match_percent,\n"
            "                    compared_match_percent, match, frame counts, segments,\n"
            "                    matched_by (query frames per mechanism: whole, trimmed, half)\n\n"
            "exit status: 0 match (either rule), 3 no match, 1 error, 2 usage\n",
            m.distance, m.min_quality, m.compared_pct, m.query_pct, m.clip_min_frames, m.clip_pct,
            VIDEO_DEFAULT_RATE);
}

/* A video's hash from a vhash listing or, failing that, from the video itself. */
static int load(const char *path, const video_hash_opts *o, video_hash *out)
{
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, o->limits.max_input_bytes, &buf, &len);
    if (rc != VG_OK)
        return rc;
    int text = len > 0 && memchr(buf, 0, len) == NULL &&
               ((buf[0] >= '0' && buf[0] <= '9') || buf[0] == '#' || buf[0] == '\n');
    if (text)
        rc = video_hash_parse((const char *)buf, len, out);
    else
        rc = video_hash_buffer(buf, len, o, out);
    vg_free(buf);
    return rc;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int run(int argc, char **argv)
{
    video_hash_opts ho;
    video_hash_opts_default(&ho);
    video_match_opts mo;
    video_match_opts_default(&mo);
    int json = 0;
    const char *paths[2];
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--whole-only") == 0) {
            mo.regions = 0;
        } else if (strcmp(a, "--every-frame") == 0) {
            ho.every_frame = 1;
        } else if (strcmp(a, "--distance") == 0 || strcmp(a, "--quality") == 0 ||
                   strcmp(a, "--compared-pct") == 0 || strcmp(a, "--query-pct") == 0 ||
                   strcmp(a, "--clip-pct") == 0 || strcmp(a, "--rate") == 0) {
            double hi = strcmp(a, "--distance") == 0   ? 256
                        : strcmp(a, "--rate") == 0     ? VIDEO_MAX_RATE
                        : strcmp(a, "--clip-pct") == 0 ? 101
                                                       : 100;
            double lo = strcmp(a, "--rate") == 0 ? 1e-6 : 0;
            if (i + 1 >= argc || parse_num(argv[i + 1], lo, hi, &v) != 0) {
                fprintf(stderr, "vigil vcompare: %s needs a number in [%g, %g]\n", a, lo, hi);
                return CLI_EXIT_USAGE;
            }
            if (strcmp(a, "--distance") == 0)
                mo.distance = (int)v;
            else if (strcmp(a, "--quality") == 0)
                mo.min_quality = (int)v;
            else if (strcmp(a, "--compared-pct") == 0)
                mo.compared_pct = v;
            else if (strcmp(a, "--query-pct") == 0)
                mo.query_pct = v;
            else if (strcmp(a, "--clip-pct") == 0)
                mo.clip_pct = v;
            else
                ho.rate = v;
            i++;
        } else if (a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "vigil vcompare: unknown option '%s' (see vigil vcompare --help)\n", a);
            return CLI_EXIT_USAGE;
        } else if (np < 2) {
            paths[np++] = a;
        } else {
            fprintf(stderr, "vigil vcompare: expected two files, QUERY and COMPARED\n");
            return CLI_EXIT_USAGE;
        }
    }
    if (np != 2) {
        fprintf(stderr, "vigil vcompare: expected two files, QUERY and COMPARED\n");
        return CLI_EXIT_USAGE;
    }
    video_hash h[2];
    for (int k = 0; k < 2; k++) {
        vg_err_clear();
        if (load(paths[k], &ho, &h[k]) != VG_OK) {
            fprintf(stderr, "vigil vcompare: %s: %s\n", paths[k], vg_err_msg());
            if (k)
                video_hash_free(&h[0]);
            return CLI_EXIT_FAILED;
        }
    }
    video_match m;
    int rc = video_compare(&h[0], &h[1], &mo, &m);
    video_hash_free(&h[0]);
    video_hash_free(&h[1]);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil vcompare: %s\n", vg_err_msg());
        return CLI_EXIT_FAILED;
    }
    if (json) {
        printf("{\"query_match_percent\":%.2f,\"compared_match_percent\":%.2f,\"match\":%s,"
               "\"query_frames\":%u,\"query_matched\":%u,\"compared_frames\":%u,"
               "\"compared_matched\":%u,\"clip_match_percent\":%.2f,\"clip_match\":%s,"
               "\"clip\":{\"query_start\":%.3f,\"query_end\":%.3f,\"compared_start\":%.3f,"
               "\"compared_end\":%.3f,\"frames\":%u},\"segments\":[",
               m.query_match_pct, m.compared_match_pct, m.match ? "true" : "false", m.query_frames,
               m.query_matched, m.compared_frames, m.compared_matched, m.clip_match_pct,
               m.clip_match ? "true" : "false", m.clip.q_start, m.clip.q_end, m.clip.c_start,
               m.clip.c_end, m.clip.frames);
        for (size_t i = 0; i < m.n_segments; i++) {
            const video_segment *s = &m.segments[i];
            printf("%s{\"query_start\":%.3f,\"query_end\":%.3f,\"compared_start\":%.3f,"
                   "\"compared_end\":%.3f,\"frames\":%u,\"matched_by\":{\"whole\":%u,"
                   "\"trimmed\":%u,\"half\":%u}}",
                   i ? "," : "", s->q_start, s->q_end, s->c_start, s->c_end, s->frames,
                   s->by_mech[VIDEO_MECH_WHOLE], s->by_mech[VIDEO_MECH_TRIMMED],
                   s->by_mech[VIDEO_MECH_HALF]);
        }
        printf("],\"matched_by\":{\"whole\":%u,\"trimmed\":%u,\"half\":%u}}\n",
               m.by_mech[VIDEO_MECH_WHOLE], m.by_mech[VIDEO_MECH_TRIMMED],
               m.by_mech[VIDEO_MECH_HALF]);
    } else {
        printf("%.2f Percentage Query Video match (%u of %u unique frames)\n", m.query_match_pct,
               m.query_matched, m.query_frames);
        printf("%.2f Percentage Compared Video match (%u of %u unique frames)\n",
               m.compared_match_pct, m.compared_matched, m.compared_frames);
        printf("match: %s\n", m.match ? "yes" : "no");
        printf("clip: %s (%.2f%% of the query in compared %.3f-%.3f s)\n",
               m.clip_match ? "yes" : "no", m.clip_match_pct, m.clip.c_start, m.clip.c_end);
        for (size_t i = 0; i < m.n_segments; i++) {
            const video_segment *s = &m.segments[i];
            printf("segment: query %.3f-%.3f s = compared %.3f-%.3f s (%u frames)\n", s->q_start,
                   s->q_end, s->c_start, s->c_end, s->frames);
        }
    }
    int match = m.match || m.clip_match;
    video_match_free(&m);
    if (fflush(stdout) != 0)
        return CLI_EXIT_FAILED;
    return match ? CLI_EXIT_OK : CLI_EXIT_DIFFERENT;
}

const cli_command cli_cmd_vcompare = {"vcompare", "vPDQ verdict for two videos or vhash files",
                                      run};
