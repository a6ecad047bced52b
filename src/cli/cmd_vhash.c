/* `vigil vhash`: vPDQ hashes of video files, in the output format of Meta's vpdq-hash-video
 * (`frame,quality,hash,timestamp`, one line per kept frame). */
#include "cli/cli.h"
#include "core/core.h"
#include "video/video.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vigil vhash [--every-frame] [--rate R] [--keyframes] [--prune D]\n"
            "                   [--skip-loop-filter] [--keyframe-tolerance S] [--regions]\n"
            "                   FILE...\n\n"
            "vPDQ hash of each video (MP4/MOV or Matroska/WebM; H.264, HEVC, VP8, VP9, AV1):\n"
            "one line frame,quality,hash,timestamp per kept frame, like Meta's\n"
            "vpdq-hash-video. With several files, a '# FILE' line precedes each listing.\n"
            "Decoding runs in a resource-limited child process.\n\n"
            "  --rate R        sampled frames per second (default %g)\n"
            "  --every-frame   every frame, hashed the reference's way (full-size RGB);\n"
            "                  no quality filter, no pruning\n"
            "  --keyframes     decode key frames only (fast; the rate applies among them)\n"
            "  --prune D       drop a frame within D bits of the last kept one (default %d;\n"
            "                  -1 keeps all); frames with quality below %d are dropped\n"
            "  --skip-loop-filter  frames decoded only as references skip the deblocking\n"
            "                  filter: ~20%% less CPU on H.264, kept hashes move a few bits\n"
            "  --keyframe-tolerance S  a sample time with a key frame within S seconds\n"
            "                  keeps that key frame (its group is not decoded further)\n"
            "  --regions       append each sampled frame's region hashes to its line:\n"
            "                  ,trimmed:Q:HASH (content inside bars) ,top:Q:HASH ,bottom:Q:HASH\n"
            "                  (halves of the content); vigil vcompare reads them back\n\n"
            "exit status: 0 all hashed, 1 some file failed (one line each on stderr),\n"
            "2 usage error\n",
            VIDEO_DEFAULT_RATE, VIDEO_DEFAULT_PRUNE_DISTANCE, PDQ_MIN_RELIABLE_QUALITY);
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
    video_hash_opts o;
    video_hash_opts_default(&o);
    int first = argc, regions = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--every-frame") == 0) {
            o.every_frame = 1;
        } else if (strcmp(a, "--regions") == 0) {
            regions = 1;
        } else if (strcmp(a, "--keyframes") == 0) {
            o.keyframes_only = 1;
        } else if (strcmp(a, "--skip-loop-filter") == 0) {
            o.fast |= VIDEO_FAST_SKIP_LOOP;
        } else if (strcmp(a, "--keyframe-tolerance") == 0) {
            if (i + 1 >= argc || parse_num(argv[i + 1], 0, 3600, &v) != 0) {
                fprintf(stderr, "vigil vhash: %s needs seconds in [0, 3600]\n", a);
                return CLI_EXIT_USAGE;
            }
            o.keyframe_tolerance_s = v;
            i++;
        } else if (strcmp(a, "--rate") == 0 || strcmp(a, "--prune") == 0) {
            int is_rate = a[2] == 'r';
            if (i + 1 >= argc || parse_num(argv[i + 1], is_rate ? 1e-6 : -1,
                                           is_rate ? VIDEO_MAX_RATE : 256, &v) != 0) {
                fprintf(stderr, "vigil vhash: %s needs %s\n", a,
                        is_rate ? "a rate in (0, 240] frames per second" : "a distance -1..256");
                return CLI_EXIT_USAGE;
            }
            if (is_rate)
                o.rate = v;
            else
                o.prune_distance = (int)v;
            i++;
        } else if (strcmp(a, "--") == 0) {
            first = i + 1;
            break;
        } else if (a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "vigil vhash: unknown option '%s' (see vigil vhash --help)\n", a);
            return CLI_EXIT_USAGE;
        } else {
            first = i;
            break;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "vigil vhash: no input files (see vigil vhash --help)\n");
        return CLI_EXIT_USAGE;
    }
    int failed = 0, several = argc - first > 1;
    for (int i = first; i < argc; i++) {
        video_hash h;
        vg_err_clear();
        int rc = video_hash_file(argv[i], &o, &h);
        if (rc != VG_OK) {
            fprintf(stderr, "vigil vhash: %s: %s\n", argv[i], vg_err_msg());
            failed = 1;
            continue;
        }
        if (several)
            printf("# %s\n", argv[i]);
        if (video_hash_write_ex(&h, stdout, regions) != VG_OK)
            failed = 1;
        video_hash_free(&h);
    }
    if (fflush(stdout) != 0)
        failed = 1;
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

const cli_command cli_cmd_vhash = {"vhash", "vPDQ hashes of video frames (vpdq-hash-video)", run};
