/* `vigil hash`: PDQ hashes of image files, in the output format of Meta's pdq-photo-hasher
 * (`hash,quality,filename`; with --dihedral its --pdqdih-across line) or as JSON lines. */
#include "cli/cli.h"
#include "core/core.h"
#include "img/img.h"
#include "pdq/pdq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vigil hash [--dihedral] [--mode fast|compat] [--min-side PX] [--json]\n"
            "                  FILE...\n\n"
            "PDQ perceptual hash of each image (JPEG, PNG, WebP); FILE '-' reads stdin.\n"
            "Prints hash,quality,filename per image, like Meta's pdq-photo-hasher. Quality\n"
            "below %d means too little detail for reliable matching.\n\n"
            "  --mode fast     the JPEG's luma plane, EXIF orientation applied (default)\n"
            "  --min-side PX   fast: DCT-scale a large JPEG down while its short side stays\n"
            "                  >= PX (about half the decode work at 1/8, but fine detail\n"
            "                  drifts from the reference; default 0: full resolution)\n"
            "  --mode compat   the reference pipeline exactly: full decode, EXIF ignored,\n"
            "                  512x512 nearest-neighbour resize; bit-identical to\n"
            "                  pdq-photo-hasher\n"
            "  --dihedral      the 8 hashes of the image's rotations and flips (original,\n"
            "                  rot90, rot180, rot270, flipx, flipy, flip+1, flip-1), then\n"
            "                  quality and filename, like pdq-photo-hasher --pdqdih-across\n"
            "  --json          one JSON object per image: file, hash, quality, unreliable,\n"
            "                  width, height, decode_ms, hash_ms, mode (and dihedral)\n\n"
            "exit status: 0 all hashed, 1 some file failed (one line each on stderr),\n"
            "2 usage error\n",
            PDQ_MIN_RELIABLE_QUALITY);
}

/* Writes s as a JSON string body: quotes, backslashes and control characters escaped; other
 * bytes (UTF-8 or not) as they are. */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void print_result(const char *name, const pdq_image_result *r, pdq_mode mode, int json)
{
    char hex[PDQ_HEX_BYTES];
    if (!json) {
        if (r->r.has_dihedral)
            for (int x = 0; x < PDQ_NUM_XFORMS; x++)
                printf("%s,", pdq_hash_to_hex(&r->r.dihedral[x], hex));
        else
            printf("%s,", pdq_hash_to_hex(&r->r.hash, hex));
        printf("%d,%s\n", r->r.quality, name);
        return;
    }
    printf("{\"file\":");
    json_string(stdout, name);
    printf(",\"hash\":\"%s\",\"quality\":%d,\"unreliable\":%s,\"width\":%u,\"height\":%u,"
           "\"decode_ms\":%.3f,\"hash_ms\":%.3f,\"mode\":\"%s\"",
           pdq_hash_to_hex(&r->r.hash, hex), r->r.quality, r->r.unreliable ? "true" : "false",
           r->width, r->height, (double)r->decode_ns / 1e6, (double)r->hash_ns / 1e6,
           pdq_mode_name(mode));
    if (r->r.has_dihedral) {
        printf(",\"dihedral\":[");
        for (int x = 0; x < PDQ_NUM_XFORMS; x++)
            printf("%s\"%s\"", x ? "," : "", pdq_hash_to_hex(&r->r.dihedral[x], hex));
        printf("]");
    }
    printf("}\n");
}

/* The error detail without a leading "<path>: " (vg_read_file's details name the path, which
 * our line already names). */
static const char *detail_for(const char *path)
{
    const char *msg = vg_err_msg();
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
        return msg + n + 2;
    return msg;
}

static int hash_one(pdq_ctx *ctx, const char *path, const pdq_image_opts *o, int json)
{
    vg_err_clear();
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, o->limits.max_input_bytes, &buf, &len);
    if (rc == VG_OK) {
        pdq_image_result r;
        rc = pdq_hash_image(ctx, buf, len, o, &r);
        vg_free(buf);
        if (rc == VG_OK) {
            print_result(path, &r, o->mode, json);
            return VG_OK;
        }
    }
    fflush(stdout); /* keep stdout and stderr lines in input order on a terminal */
    fprintf(stderr, "vigil hash: %s: %s\n", path, detail_for(path));
    return rc;
}

static int run(int argc, char **argv)
{
    pdq_image_opts o;
    pdq_image_opts_default(&o);
    int json = 0, i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-") == 0 || a[0] != '-')
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--dihedral") == 0) {
            o.flags |= PDQ_WANT_DIHEDRAL;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--mode") == 0 || strncmp(a, "--mode=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || pdq_mode_parse(v, &o.mode) != VG_OK) {
                fprintf(stderr,
                        "vigil hash: --mode wants fast or compat (see vigil hash --help)\n");
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(a, "--min-side") == 0 && i + 1 < argc) {
            char *end;
            const unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || end == argv[i] || argv[i][0] == '-' || v > UINT32_MAX) {
                fprintf(stderr, "vigil hash: --min-side wants a number of pixels\n");
                return CLI_EXIT_USAGE;
            }
            o.fast_min_side = (uint32_t)v;
        } else {
            fprintf(stderr, "vigil hash: unknown option '%s' (see vigil hash --help)\n", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "vigil hash: no input files (see vigil hash --help)\n");
        return CLI_EXIT_USAGE;
    }
    int stdin_uses = 0;
    for (int k = i; k < argc; k++)
        stdin_uses += strcmp(argv[k], "-") == 0;
    if (stdin_uses > 1) {
        fprintf(stderr, "vigil hash: '-' (stdin) may be given once\n");
        return CLI_EXIT_USAGE;
    }
    pdq_ctx *ctx = pdq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "vigil hash: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    int failed = 0;
    for (; i < argc; i++)
        failed |= hash_one(ctx, argv[i], &o, json) != VG_OK;
    pdq_ctx_free(ctx);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "vigil hash: cannot write the output\n");
        return CLI_EXIT_FAILED;
    }
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

const cli_command cli_cmd_hash = {"hash", "PDQ perceptual hashes of images", run};
