/*
 * video: options, limits, the entry points that choose between the child and the calling
 * process, and the text form of a hash (the reference's vpdq-hash-video lines).
 */
#include "video/video_int.h"

#include "core/core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local video_limit_kind video__last_limit = VIDEO_LIMIT_NONE;

void video_limits_default(video_limits *l)
{
    l->max_input_bytes = VIDEO_DEFAULT_MAX_INPUT_BYTES;
    l->max_duration_ms = VIDEO_DEFAULT_MAX_DURATION_MS;
    l->max_dimension = VIDEO_DEFAULT_MAX_DIMENSION;
    l->max_pixels = VIDEO_DEFAULT_MAX_PIXELS;
    l->max_frames = VIDEO_DEFAULT_MAX_FRAMES;
    l->child_mem_bytes = VIDEO_DEFAULT_CHILD_MEM_BYTES;
    l->child_cpu_s = VIDEO_DEFAULT_CHILD_CPU_S;
    l->wall_ms = VIDEO_DEFAULT_WALL_MS;
}

void video_hash_opts_default(video_hash_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rate = VIDEO_DEFAULT_RATE;
    o->min_quality = PDQ_MIN_RELIABLE_QUALITY;
    o->prune_distance = VIDEO_DEFAULT_PRUNE_DISTANCE;
    o->face_side_px = VIDEO_DEFAULT_FACE_SIDE_PX;
    o->face_max_frames = VIDEO_DEFAULT_FACE_MAX_FRAMES;
    o->regions = 1;
    /* o->fast stays 0 (exact): VIDEO_FAST_SKIP_LOOP passes the 14x14 matrix and
     * tests/video_robustness.py, but moves some kept frames' hashes by up to 22 bits (median 2):
     * too much of the 31-bit budget for a default (docs/BENCHMARKS.md "Video"). */
    video_limits_default(&o->limits);
}

const char *video_region_name(video_region r)
{
    static const char *const names[VIDEO_REGION_COUNT] = {"trimmed", "top", "bottom"};
    return (unsigned)r < VIDEO_REGION_COUNT ? names[r] : "unknown";
}

const char *video_mechanism_name(video_mechanism m)
{
    static const char *const names[VIDEO_MECH_COUNT] = {"whole", "trimmed", "half"};
    return (unsigned)m < VIDEO_MECH_COUNT ? names[m] : "unknown";
}

video_limit_kind video_last_limit(void)
{
    return video__last_limit;
}

void video__set_last_limit(video_limit_kind k)
{
    video__last_limit = k;
}

const char *video_limit_name(video_limit_kind k)
{
    static const char *const names[VIDEO_LIMIT_COUNT] = {
        "input_bytes",  "duration",  "dimension", "pixels",    "frames",
        "child_memory", "child_cpu", "wall",      "container", "codec"};
    return k >= 0 && k < VIDEO_LIMIT_COUNT ? names[k] : "none";
}

int video__fail(int code, video_limit_kind limit, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    video__last_limit = limit;
    return vg_err_set(code, "%s", msg);
}

int video__push(video_hash *h, size_t *cap, const video_frame *f)
{
    if (h->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        video_frame *nf = vg_realloc(h->frames, ncap * sizeof *nf);
        if (!nf)
            return vg_err_set(VG_ENOMEM, "no memory for %zu frame hashes", ncap);
        h->frames = nf;
        *cap = ncap;
    }
    h->frames[h->n++] = *f;
    return VG_OK;
}

void video_hash_free(video_hash *h)
{
    if (!h)
        return;
    vg_free(h->frames);
    for (size_t i = 0; h->images && i < h->n_images; i++)
        vg_free(h->images[i].rgb);
    vg_free(h->images);
    memset(h, 0, sizeof *h);
}

static int video__check_opts(const video_hash_opts *o)
{
    if (!o->every_frame && !(o->rate > 0 && o->rate <= VIDEO_MAX_RATE))
        return vg_err_set(VG_EINVAL, "rate %g is outside (0, %g] frames per second", o->rate,
                          VIDEO_MAX_RATE);
    if (!(o->keyframe_tolerance_s >= 0 && o->keyframe_tolerance_s <= 3600))
        return vg_err_set(VG_EINVAL, "key frame tolerance %g s is outside [0, 3600]",
                          o->keyframe_tolerance_s);
    if (o->prune_distance < -1 || o->prune_distance > PDQ_HASH_BITS)
        return vg_err_set(VG_EINVAL, "prune distance %d is outside -1..256", o->prune_distance);
    if (o->face_rate != 0 && (o->every_frame || !(o->face_rate > 0 && o->face_rate <= o->rate) ||
                              o->face_side_px < 16 || o->face_side_px > VIDEO_MAX_FACE_SIDE_PX))
        return vg_err_set(VG_EINVAL,
                          "face rate %g must be in (0, rate %g] in sampled mode, with a side in "
                          "16..%u px (%u)",
                          o->face_rate, o->rate, VIDEO_MAX_FACE_SIDE_PX, o->face_side_px);
    return VG_OK;
}

int video_hash_buffer(const uint8_t *buf, size_t len, const video_hash_opts *opts, video_hash *out)
{
    video_hash_opts def;
    if (!opts) {
        video_hash_opts_default(&def);
        opts = &def;
    }
    video__last_limit = VIDEO_LIMIT_NONE;
    if (!buf || !out)
        return vg_err_set(VG_EINVAL, "video_hash_buffer: NULL argument");
    int rc = video__check_opts(opts);
    if (rc != VG_OK)
        return rc;
    if (len > opts->limits.max_input_bytes)
        return video__fail(VG_ETOOBIG, VIDEO_LIMIT_INPUT_BYTES,
                           "video is %zu bytes, max_input_bytes is %zu", len,
                           opts->limits.max_input_bytes);
    return opts->in_process ? video__decode(buf, len, opts, out)
                            : video__decode_child(buf, len, opts, out);
}

int video_hash_file(const char *path, const video_hash_opts *opts, video_hash *out)
{
    video_hash_opts def;
    if (!opts) {
        video_hash_opts_default(&def);
        opts = &def;
    }
    video__last_limit = VIDEO_LIMIT_NONE;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = vg_read_file(path, opts->limits.max_input_bytes, &buf, &len);
    if (rc == VG_ETOOBIG)
        video__last_limit = VIDEO_LIMIT_INPUT_BYTES;
    if (rc != VG_OK)
        return rc;
    rc = video_hash_buffer(buf, len, opts, out);
    vg_free(buf);
    return rc;
}

int video_hash_write_ex(const video_hash *h, void *file, int regions)
{
    FILE *f = file;
    char hex[PDQ_HEX_BYTES];
    for (size_t i = 0; i < h->n; i++) {
        const video_frame *v = &h->frames[i];
        if (fprintf(f, "%u,%d,%s,%.3f", v->frame, v->quality, pdq_hash_to_hex(&v->hash, hex),
                    v->ts) < 0)
            return vg_err_set(VG_EIO, "write: %s", strerror(errno));
        for (int r = 0; regions && r < VIDEO_REGION_COUNT; r++)
            if ((v->regions >> r & 1u) &&
                fprintf(f, ",%s:%u:%s", video_region_name((video_region)r),
                        (unsigned)v->region_quality[r], pdq_hash_to_hex(&v->region[r], hex)) < 0)
                return vg_err_set(VG_EIO, "write: %s", strerror(errno));
        if (fputc('\n', f) == EOF)
            return vg_err_set(VG_EIO, "write: %s", strerror(errno));
    }
    return VG_OK;
}

int video_hash_write(const video_hash *h, void *file)
{
    return video_hash_write_ex(h, file, 0);
}

/* A region field "name:quality:<64 hex>" into f. */
static int video__parse_region(char *t, video_frame *f)
{
    char *q = strchr(t, ':'), *hx = q ? strchr(q + 1, ':') : NULL;
    if (!hx)
        return VG_EINVAL;
    *q = 0;
    int r = 0;
    while (r < VIDEO_REGION_COUNT && strcmp(t, video_region_name((video_region)r)) != 0)
        r++;
    char *end;
    long qv = strtol(q + 1, &end, 10);
    if (r == VIDEO_REGION_COUNT || end != hx || end == q + 1 || qv < 0 || qv > 100 ||
        pdq_hash_from_hex(hx + 1, &f->region[r]) != VG_OK)
        return VG_EINVAL;
    f->regions |= (uint8_t)(1u << r);
    f->region_quality[r] = (uint8_t)qv;
    return VG_OK;
}

/* One line "frame,quality,hash,timestamp" (the timestamp may be missing: older listings), then
 * the region fields of `vigil vhash --regions` ("trimmed:quality:hash", ...) if any. */
static int video__parse_line(const char *s, size_t n, video_frame *f)
{
    char line[512];
    memset(f, 0, sizeof *f);
    if (n >= sizeof line)
        return VG_EINVAL;
    memcpy(line, s, n);
    line[n] = 0;
    char *fields[4 + VIDEO_REGION_COUNT] = {0};
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, ",", &save); t && k < 4 + VIDEO_REGION_COUNT;
         t = strtok_r(NULL, ",", &save))
        fields[k++] = t;
    if (k < 3 || strtok_r(NULL, ",", &save))
        return VG_EINVAL;
    for (int r = 4; r < k; r++)
        if (video__parse_region(fields[r], f) != VG_OK)
            return VG_EINVAL;
    k = k > 4 ? 4 : k;
    char *end;
    errno = 0;
    unsigned long fr = strtoul(fields[0], &end, 10);
    if (errno || *end || end == fields[0] || fr > UINT32_MAX || fields[0][0] == '-')
        return VG_EINVAL;
    long q = strtol(fields[1], &end, 10);
    if (*end || end == fields[1] || q < 0 || q > 100)
        return VG_EINVAL;
    char *hx = fields[2];
    while (*hx == ' ')
        hx++;
    if (pdq_hash_from_hex(hx, &f->hash) != VG_OK)
        return VG_EINVAL;
    double ts = 0;
    if (k == 4) {
        ts = strtod(fields[3], &end);
        while (*end == ' ' || *end == '\r')
            end++;
        if (*end || end == fields[3] || !(ts >= 0 && ts < 1e9))
            return VG_EINVAL;
    }
    f->frame = (uint32_t)fr;
    f->quality = (int)q;
    f->ts = ts;
    return VG_OK;
}

int video_hash_parse(const char *text, size_t len, video_hash *out)
{
    video_hash h;
    memset(&h, 0, sizeof h);
    h.sampling.prune_distance = -1;
    size_t cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(le - p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
            n--;
        if (n && p[0] != '#') {
            video_frame f;
            if (video__parse_line(p, n, &f) != VG_OK) {
                video_hash_free(&h);
                return vg_err_set(VG_EINVAL, "line %zu is not 'frame,quality,<64 hex>,timestamp'",
                                  lineno);
            }
            if (video__push(&h, &cap, &f) != VG_OK) {
                video_hash_free(&h);
                return VG_ENOMEM;
            }
            if (f.ts > h.duration_s)
                h.duration_s = f.ts;
        }
        p = nl ? nl + 1 : end;
    }
    *out = h;
    return VG_OK;
}
