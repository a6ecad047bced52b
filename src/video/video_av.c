/*
 * video_av: the one file that calls libavformat/libavcodec/libswscale (house rule 14). Decodes
 * a video from memory with an allow-listed demuxer and decoder, checks the limits from the
 * headers before the first packet and again while decoding, samples frames by timestamp and
 * hashes them with pdq. Runs wherever it is called: video_child.c calls it in a forked child.
 */
#include "video/video_int.h"

#include "core/core.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VIDEO__IO_BUF_BYTES 32768

/* The reader behind our AVIOContext: the whole input is in memory. */
typedef struct video__mem {
    const uint8_t *buf;
    size_t len, pos;
} video__mem;

static int video__mem_read(void *opaque, uint8_t *dst, int n)
{
    video__mem *m = opaque;
    if (m->pos >= m->len)
        return AVERROR_EOF;
    size_t k = m->len - m->pos;
    if (k > (size_t)n)
        k = (size_t)n;
    memcpy(dst, m->buf + m->pos, k);
    m->pos += k;
    return (int)k;
}

static int64_t video__mem_seek(void *opaque, int64_t off, int whence)
{
    video__mem *m = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE:
        return (int64_t)m->len;
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = (int64_t)m->pos;
        break;
    case SEEK_END:
        base = (int64_t)m->len;
        break;
    default:
        return AVERROR(EINVAL);
    }
    if (off > INT64_MAX - base)
        return AVERROR(EINVAL);
    int64_t p = base + off;
    if (p < 0 || (uint64_t)p > m->len)
        return AVERROR(EINVAL);
    m->pos = (size_t)p;
    return p;
}

/* Container from magic bytes only: ISO BMFF (MP4/MOV) starts with a box whose type is one of
 * the top-level boxes; Matroska/WebM with the EBML magic. Returns the demuxer name or NULL. */
static const char *video__sniff(const uint8_t *b, size_t len, const char **label)
{
    if (len >= 4 && b[0] == 0x1a && b[1] == 0x45 && b[2] == 0xdf && b[3] == 0xa3) {
        *label = "matroska";
        return "matroska";
    }
    static const char *const boxes[] = {"ftyp", "moov", "mdat", "free", "skip", "wide"};
    if (len >= 8)
        for (size_t i = 0; i < VG_ARRAY_LEN(boxes); i++)
            if (memcmp(b + 4, boxes[i], 4) == 0) {
                *label = "mp4";
                return "mov";
            }
    return NULL;
}

/* The decoders we accept: the video codecs of MP4 and WebM that browsers and phones write. */
static const char *video__codec_allowed(enum AVCodecID id)
{
    switch (id) {
    case AV_CODEC_ID_H264:
        return "h264";
    case AV_CODEC_ID_HEVC:
        return "hevc";
    case AV_CODEC_ID_VP8:
        return "vp8";
    case AV_CODEC_ID_VP9:
        return "vp9";
    case AV_CODEC_ID_AV1:
        return "av1";
    default:
        return NULL;
    }
}

static int video__check_dims(const video_limits *l, int w, int h)
{
    if (w <= 0 || h <= 0 || (uint32_t)w > l->max_dimension || (uint32_t)h > l->max_dimension)
        return video__fail(VG_EDIM, VIDEO_LIMIT_DIMENSION,
                           "video is %d x %d px, max_dimension is %u", w, h, l->max_dimension);
    if ((uint64_t)w * (uint64_t)h > l->max_pixels)
        return video__fail(VG_EPIXELS, VIDEO_LIMIT_PIXELS,
                           "video frame is %d x %d = %llu px, max_pixels is %llu", w, h,
                           (unsigned long long)((uint64_t)w * (uint64_t)h),
                           (unsigned long long)l->max_pixels);
    return VG_OK;
}

/* Everything one decode holds, released by video__state_close. */
/* One packet of the video stream, from the planning pass (decode order). */
typedef struct video__pkt {
    int64_t pts;
    uint8_t key;    /* a key (sync) packet: decoding may start here */
    uint8_t need;   /* sent to the decoder */
    uint8_t target; /* its frame is kept */
} video__pkt;

typedef struct video__state {
    video__mem mem;
    AVIOContext *io;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    struct SwsContext *sws_face; /* faces in video: to RGB24 at most face_side_px */
    double next_face_s;          /* the next frame kept as pixels is the first at or after */
    size_t images_cap;
    uint8_t *px; /* converted pixels (RGB24 full size, or luma at most 512 on a side) */
    size_t px_cap;
    pdq_ctx *pdq;
    const video_hash_opts *o;
    int stream;
    AVRational tb;
    int64_t start_pts;
    double fps;           /* 0 when unknown */
    double next_sample_s; /* sampled mode: the next frame kept is the first at or after this */
    uint64_t packets, out_frames;
    video_hash h;
    size_t cap;
    int have_last;
    pdq_hash last;
    /* The plan (sampled mode): which packets are decoded and which frames are kept, made from
     * a demux-only pass over the packets' timestamps before any decoding. */
    video__pkt *plan;
    size_t plan_n;
    int planned;         /* 0: no plan (a packet without pts, keyframes_only, every_frame) */
    int64_t *want;       /* the kept frames' pts, ascending, unique */
    uint8_t *want_used;  /* want[i]'s frame came out already */
    double last_kept_ts; /* the last kept frame's timestamp (s) */
    size_t n_want;
    uint8_t *region_px; /* regions: the content rectangle copied out for pdq_copy_parts */
    size_t region_cap;
} video__state;

/* Frees the container and decoder side of s (video__open allocates them again). */
static void video__av_close(video__state *s)
{
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    if (s->io) {
        av_freep(&s->io->buffer);
        avio_context_free(&s->io);
    }
    pdq_ctx_free(s->pdq);
    s->pdq = NULL;
}

static void video__state_close(video__state *s)
{
    sws_freeContext(s->sws);
    sws_freeContext(s->sws_face);
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    if (s->io) {
        av_freep(&s->io->buffer);
        avio_context_free(&s->io);
    }
    vg_free(s->px);
    vg_free(s->plan);
    vg_free(s->want);
    vg_free(s->want_used);
    vg_free(s->region_px);
    pdq_ctx_free(s->pdq);
    video_hash_free(&s->h);
}

static int video__px_reserve(video__state *s, size_t n)
{
    if (n <= s->px_cap)
        return VG_OK;
    uint8_t *p = vg_realloc(s->px, n);
    if (!p)
        return vg_err_set(VG_ENOMEM, "no memory for a %zu-byte frame", n);
    s->px = p;
    s->px_cap = n;
    return VG_OK;
}

/* Faces in video: keeps a sampled frame as RGB24 at most face_side_px on a side when it is the
 * first at or after the next face sample time (before the quality filter and pruning: a face
 * may be on a frame PDQ finds flat, or on a repeat). */
static int video__keep_image(video__state *s, const AVFrame *f, uint32_t number, double ts)
{
    const video_hash_opts *o = s->o;
    if (!(o->face_rate > 0) || ts + 1e-9 < s->next_face_s)
        return VG_OK;
    s->next_face_s = (floor(ts * o->face_rate + 1e-9) + 1.0) / o->face_rate;
    if (s->h.n_images >= o->face_max_frames) {
        s->h.images_capped = 1;
        return VG_OK;
    }
    int w = f->width, h = f->height, tw = w, th = h, side = w > h ? w : h;
    if (side > (int)o->face_side_px) {
        tw = (int)lround((double)w * o->face_side_px / side);
        th = (int)lround((double)h * o->face_side_px / side);
        tw = tw < 1 ? 1 : tw;
        th = th < 1 ? 1 : th;
    }
    s->sws_face = sws_getCachedContext(s->sws_face, w, h, f->format, tw, th, AV_PIX_FMT_RGB24,
                                       SWS_AREA, NULL, NULL, NULL);
    if (!s->sws_face)
        return vg_err_set(VG_ECORRUPT, "no conversion from pixel format %d", f->format);
    if (s->h.n_images == s->images_cap) {
        size_t nc = s->images_cap ? s->images_cap * 2 : 16;
        video_image *ni = vg_realloc(s->h.images, nc * sizeof *ni);
        if (!ni)
            return vg_err_set(VG_ENOMEM, "no memory for %zu face frames", nc);
        s->h.images = ni;
        s->images_cap = nc;
    }
    uint8_t *rgb = vg_malloc((size_t)tw * (size_t)th * 3);
    if (!rgb)
        return vg_err_set(VG_ENOMEM, "no memory for a %dx%d face frame", tw, th);
    uint8_t *dst[4] = {rgb, NULL, NULL, NULL};
    int dst_stride[4] = {tw * 3, 0, 0, 0};
    sws_scale(s->sws_face, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
    s->h.images[s->h.n_images++] =
        (video_image){.ts = ts, .frame = number, .w = (uint32_t)tw, .h = (uint32_t)th, .rgb = rgb};
    return VG_OK;
}

/* The region hashes of one sampled frame (video_frame.regions, docs/VIDEO.md "Regions"), from
 * its luma (w x h, stride bytes per row): bars found as the image side finds them, the content
 * inside them hashed when there are any, and the content's top and bottom halves by
 * pdq_copy_parts (the image side's halves, so a frame's half is what a photo's half is). Each
 * is kept when its quality reaches min_quality: a flat half (a sky, a bar left over) says
 * nothing and would meet every other flat half. */
static int video__hash_regions(video__state *s, const uint8_t *gray, uint32_t w, uint32_t h,
                               size_t stride, video_frame *vf)
{
    const int min_q = s->o->min_quality;
    uint32_t t[4], x0 = 0, y0 = 0, cw = w, ch = h;
    int rc;
    if (pdq_copy_find_bars(gray, w, h, stride, t)) {
        x0 = t[0];
        y0 = t[1];
        cw = w - t[0] - t[2];
        ch = h - t[1] - t[3];
        pdq_result r;
        rc = pdq_hash_gray8(s->pdq, gray + (size_t)y0 * stride + x0, cw, ch, stride, 0, &r);
        if (rc != VG_OK)
            return rc;
        if (r.quality >= min_q) {
            vf->regions |= 1u << VIDEO_REGION_TRIMMED;
            vf->region_quality[VIDEO_REGION_TRIMMED] = (uint8_t)r.quality;
            vf->region[VIDEO_REGION_TRIMMED] = r.hash;
        }
    }
    /* pdq_copy_parts takes a packed image: the content rectangle copied out (at most
     * VIDEO_HASH_SIDE_PX squared, 256 KiB), into one buffer kept for the whole decode (a
     * malloc and free per frame of that size is an mmap and munmap each) */
    const size_t need = (size_t)cw * ch;
    if (need > s->region_cap) {
        uint8_t *p = vg_realloc(s->region_px, need);
        if (!p)
            return vg_err_set(VG_ENOMEM, "no memory for a %ux%u frame region", cw, ch);
        s->region_px = p;
        s->region_cap = need;
    }
    uint8_t *crop = s->region_px;
    for (uint32_t y = 0; y < ch; y++)
        memcpy(crop + (size_t)y * cw, gray + (size_t)(y0 + y) * stride + x0, cw);
    img_image view = {.px = crop, .w = cw, .h = ch, .channels = 1, .src_w = cw, .src_h = ch};
    pdq_part_set parts;
    rc = pdq_copy_parts(s->pdq, &view, &parts);
    if (rc != VG_OK)
        return rc;
    static const struct {
        pdq_part part;
        video_region region;
    } halves[] = {{PDQ_PART_TOP, VIDEO_REGION_TOP}, {PDQ_PART_BOTTOM, VIDEO_REGION_BOTTOM}};
    for (size_t k = 0; k < sizeof halves / sizeof *halves; k++) {
        const int q = parts.quality[halves[k].part];
        if (q < min_q || q < 1) /* 0: the part was too small to hash */
            continue;
        vf->regions |= (uint8_t)(1u << halves[k].region);
        vf->region_quality[halves[k].region] = (uint8_t)q;
        vf->region[halves[k].region] = parts.h[halves[k].part];
    }
    return VG_OK;
}

/* Converts and hashes one decoded frame that sampling kept. */
static int video__hash_frame(video__state *s, const AVFrame *f, uint32_t number, double ts)
{
    const video_hash_opts *o = s->o;
    int w = f->width, h = f->height, rc;
    if ((rc = video__check_dims(&o->limits, w, h)) != VG_OK)
        return rc;
    if (!o->every_frame && (rc = video__keep_image(s, f, number, ts)) != VG_OK)
        return rc;
    pdq_result r;
    const uint8_t *gray = NULL; /* sampled mode: the luma hashed, for the regions */
    uint32_t gw = 0, gh = 0;
    size_t gstride = 0;
    if (o->every_frame) {
        /* The reference's conversion: full-size RGB24 through swscale's area filter. */
        s->sws = sws_getCachedContext(s->sws, w, h, f->format, w, h, AV_PIX_FMT_RGB24, SWS_AREA,
                                      NULL, NULL, NULL);
        size_t stride = (size_t)w * 3;
        if (!s->sws)
            return vg_err_set(VG_ECORRUPT, "no conversion from pixel format %d", f->format);
        if ((rc = video__px_reserve(s, stride * (size_t)h + 64)) != VG_OK)
            return rc;
        uint8_t *dst[4] = {s->px, NULL, NULL, NULL};
        int dst_stride[4] = {(int)stride, 0, 0, 0};
        sws_scale(s->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
        rc = pdq_hash_rgb8(s->pdq, s->px, (uint32_t)w, (uint32_t)h, stride, 0, &r);
    } else {
        /* Straight to luma at most VIDEO_HASH_SIDE_PX on a side: the frame is converted once,
         * at the size PDQ's decimation needs. */
        int tw = w, th = h;
        int side = w > h ? w : h;
        if (side > (int)VIDEO_HASH_SIDE_PX) {
            tw = (int)lround((double)w * VIDEO_HASH_SIDE_PX / side);
            th = (int)lround((double)h * VIDEO_HASH_SIDE_PX / side);
            if (tw < 1)
                tw = 1;
            if (th < 1)
                th = 1;
        }
        s->sws = sws_getCachedContext(s->sws, w, h, f->format, tw, th, AV_PIX_FMT_GRAY8, SWS_AREA,
                                      NULL, NULL, NULL);
        if (!s->sws)
            return vg_err_set(VG_ECORRUPT, "no conversion from pixel format %d", f->format);
        size_t stride = ((size_t)tw + 63) & ~(size_t)63;
        if ((rc = video__px_reserve(s, stride * (size_t)th + 64)) != VG_OK)
            return rc;
        uint8_t *dst[4] = {s->px, NULL, NULL, NULL};
        int dst_stride[4] = {(int)stride, 0, 0, 0};
        sws_scale(s->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
        rc = pdq_hash_gray8(s->pdq, s->px, (uint32_t)tw, (uint32_t)th, stride, 0, &r);
        gray = s->px;
        gw = (uint32_t)tw;
        gh = (uint32_t)th;
        gstride = stride;
    }
    if (rc != VG_OK)
        return rc;
    if (!o->every_frame) {
        if (r.quality < o->min_quality)
            return VG_OK;
        if (o->prune_distance >= 0 && s->have_last &&
            pdq_distance(&r.hash, &s->last) <= o->prune_distance)
            return VG_OK;
    }
    s->last = r.hash;
    s->have_last = 1;
    video_frame vf = {.frame = number, .quality = r.quality, .ts = ts, .hash = r.hash};
    if (gray && o->regions && (rc = video__hash_regions(s, gray, gw, gh, gstride, &vf)) != VG_OK)
        return rc;
    return video__push(&s->h, &s->cap, &vf);
}

static int video__av_fail(int averr, const char *what);

static int video__cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* 1 when a frame with this pts is to be kept: the first one out with it (each pts once). */
static int video__wanted(video__state *s, int64_t pts)
{
    int64_t *w = bsearch(&pts, s->want, s->n_want, sizeof *s->want, video__cmp_i64);
    if (!w || s->want_used[w - s->want])
        return 0;
    s->want_used[w - s->want] = 1;
    return 1;
}

/* Display order of the plan: (pts, index) pairs sorted by pts. */
typedef struct video__ord {
    int64_t pts;
    size_t i;
} video__ord;

static int video__ord_cmp(const void *a, const void *b)
{
    const video__ord *x = a, *y = b;
    if (x->pts != y->pts)
        return x->pts < y->pts ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Marks the packets a kept frame at decode index t needs: everything from its group's key
 * packet up to it (non-reference ones are skipped by the decoder anyway), and the previous
 * group too when it is a leading picture (shown before its key frame: open-GOP B-frames,
 * HEVC RASL) that may reference it. gop[i] is packet i's group start. */
static void video__need(video__pkt *p, const size_t *gop, size_t t)
{
    size_t g = gop[t];
    for (size_t j = t + 1; j-- > g && !p[j].need;)
        p[j].need = 1;
    if (g > 0 && p[t].pts < p[g].pts)
        for (size_t j = g; j-- > gop[g - 1] && !p[j].need;)
            p[j].need = 1;
}

/* The planning pass: reads every packet's timestamp and key flag (no decoding), chooses the
 * frames to keep and the packets to decode, then seeks back to the start. Kept frames: for each
 * sample time k/rate, the key frame nearest it when one is within keyframe_tolerance_s (no
 * other frame of its group is then needed), else the first frame at or after it (the exact
 * mode's frame). A group's packets after its last kept frame, in decode order, are never sent
 * to the decoder: nothing shown later depends on them. Without a plan (a packet without a
 * timestamp, a failed seek) decoding falls back to the sequential rule in video__run. */
static int video__open(video__state *s, const uint8_t *buf, size_t len);

/* No plan after all: the decode pass starts again from the first packet, in a freshly opened
 * container (a demuxer that cannot seek back, or packets without timestamps). */
static int video__unplanned(video__state *s, const uint8_t *buf, size_t len)
{
    s->planned = 0;
    s->plan_n = 0;
    video__av_close(s);
    return video__open(s, buf, len);
}

static int video__plan(video__state *s, const uint8_t *buf, size_t len)
{
    const video_hash_opts *o = s->o;
    size_t cap = 0;
    int e;
    int64_t first_dts = AV_NOPTS_VALUE;
    while ((e = av_read_frame(s->fmt, s->pkt)) >= 0) {
        int mine = s->pkt->stream_index == s->stream;
        int64_t pts = s->pkt->pts, dts = s->pkt->dts;
        int key = (s->pkt->flags & AV_PKT_FLAG_KEY) != 0;
        av_packet_unref(s->pkt);
        if (!mine)
            continue;
        if (s->plan_n >= o->limits.max_frames)
            return video__fail(VG_ETOOBIG, VIDEO_LIMIT_FRAMES,
                               "video has over %llu frames (max_frames)",
                               (unsigned long long)o->limits.max_frames);
        if (pts == AV_NOPTS_VALUE)
            return video__unplanned(s, buf, len);
        if (first_dts == AV_NOPTS_VALUE)
            first_dts = dts != AV_NOPTS_VALUE ? dts : pts;
        if (s->plan_n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            video__pkt *np = vg_realloc(s->plan, nc * sizeof *np);
            if (!np)
                return vg_err_set(VG_ENOMEM, "no memory to plan %zu packets", nc);
            s->plan = np;
            cap = nc;
        }
        s->plan[s->plan_n++] = (video__pkt){pts, (uint8_t)key, 0, 0};
    }
    if (e != AVERROR_EOF)
        return video__av_fail(e, "reading the container");
    if (s->plan_n == 0 || o->test_no_plan == 2 ||
        av_seek_frame(s->fmt, s->stream, first_dts, AVSEEK_FLAG_BACKWARD) < 0)
        return video__unplanned(s, buf, len); /* an empty stream is the decode pass's to report */
    size_t n = s->plan_n;
    video__ord *ord = vg_malloc(n * sizeof *ord);
    size_t *gop = vg_malloc(n * sizeof *gop);
    video__ord *keys = vg_malloc(n * sizeof *keys);
    s->want = vg_malloc(n * sizeof *s->want);
    s->want_used = vg_calloc(n, 1);
    if (!ord || !gop || !keys || !s->want || !s->want_used) {
        vg_free(ord);
        vg_free(gop);
        vg_free(keys);
        return vg_err_set(VG_ENOMEM, "no memory to plan %zu packets", n);
    }
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        ord[i] = (video__ord){s->plan[i].pts, i};
        gop[i] = s->plan[i].key || i == 0 ? i : gop[i - 1];
        if (s->plan[i].key)
            keys[nk++] = ord[i];
    }
    qsort(ord, n, sizeof *ord, video__ord_cmp);
    qsort(keys, nk, sizeof *keys, video__ord_cmp);
    int64_t start = ord[0].pts;
    double tb = av_q2d(s->tb), period = 1.0 / o->rate;
    /* the frames after the last kept one are not decoded: the duration comes from here */
    s->h.duration_s = (double)(ord[n - 1].pts - start) * tb;
    /* Under half a period, so one key frame never serves two sample times. */
    double tol = o->keyframe_tolerance_s;
    if (tol > 0.49 * period)
        tol = 0.49 * period;
    size_t oi = 0, ki = 0;
    double last_ts = (double)(ord[n - 1].pts - start) * tb;
    for (double k = 0; k * period <= last_ts + 1e-9;) {
        double t = k * period;
        if (tol > 0) {
            while (ki + 1 < nk && (double)(keys[ki + 1].pts - start) * tb <= t)
                ki++;
            size_t best = SIZE_MAX;
            double bd = tol + 1e-9;
            for (size_t c = ki; c < nk && c <= ki + 1; c++) {
                double d = fabs((double)(keys[c].pts - start) * tb - t);
                if (d <= bd && !s->plan[keys[c].i].target) {
                    bd = d;
                    best = keys[c].i;
                }
            }
            if (best != SIZE_MAX) {
                s->plan[best].target = 1;
                video__need(s->plan, gop, best);
                k += 1;
                continue;
            }
        }
        while (oi < n && (double)(ord[oi].pts - start) * tb + 1e-9 < t)
            oi++;
        if (oi == n)
            break;
        double ts = (double)(ord[oi].pts - start) * tb;
        /* every packet with this pts: one of them may be a frame that is never shown (a VP8
         * alt-ref), and the first frame out with it is the one kept (video__wanted) */
        for (size_t j = oi; j < n && ord[j].pts == ord[oi].pts; j++)
            if (!s->plan[ord[j].i].target) {
                s->plan[ord[j].i].target = 1;
                video__need(s->plan, gop, ord[j].i);
            }
        k = floor(ts * o->rate + 1e-9) + 1.0;
    }
    for (size_t i = 0; i < n; i++)
        if (s->plan[i].target)
            s->want[s->n_want++] = s->plan[i].pts;
    qsort(s->want, s->n_want, sizeof *s->want, video__cmp_i64);
    size_t u = 0; /* one entry per pts */
    for (size_t i = 0; i < s->n_want; i++)
        if (u == 0 || s->want[u - 1] != s->want[i])
            s->want[u++] = s->want[i];
    s->n_want = u;
    vg_free(ord);
    vg_free(gop);
    vg_free(keys);
    s->planned = 1;
    return VG_OK;
}

/* One frame out of the decoder: number it, sample it, maybe hash it. */
static int video__on_frame(video__state *s, const AVFrame *f)
{
    const video_hash_opts *o = s->o;
    int64_t pts = f->best_effort_timestamp;
    double ts;
    if (pts != AV_NOPTS_VALUE) {
        if (s->start_pts == AV_NOPTS_VALUE)
            s->start_pts = pts;
        ts = (double)(pts - s->start_pts) * av_q2d(s->tb);
    } else {
        ts = s->fps > 0 ? (double)s->out_frames / s->fps : 0.0;
    }
    if (ts < 0)
        ts = 0;
    if (ts * 1000.0 > (double)o->limits.max_duration_ms)
        return video__fail(VG_ETOOBIG, VIDEO_LIMIT_DURATION,
                           "video runs past %.1f s, max_duration is %.1f s", ts,
                           (double)o->limits.max_duration_ms / 1000.0);
    /* every_frame numbers frames as they come out, like the reference; otherwise frames may
     * have been skipped, and the number comes from the timestamp. */
    uint32_t number = (uint32_t)s->out_frames;
    if (!o->every_frame && s->fps > 0)
        number = (uint32_t)llround(ts * s->fps);
    s->out_frames++;
    if (ts > s->h.duration_s)
        s->h.duration_s = ts;
    if (s->planned) {
        /* Kept frames stay in time order even when a hostile stream's decoder output is not
         * (the sequential rule gets that from its growing sample time). */
        if (pts == AV_NOPTS_VALUE || ts < s->last_kept_ts || !video__wanted(s, pts))
            return VG_OK;
        s->last_kept_ts = ts;
        /* A stream whose packets stop following the plan is decoded by the sequential rule
         * from there on (video__run): it must go on after this frame, not from time 0. */
        s->next_sample_s = (floor(ts * o->rate + 1e-9) + 1.0) / o->rate;
    } else if (!o->every_frame) {
        if (ts + 1e-9 < s->next_sample_s)
            return VG_OK;
        s->next_sample_s = (floor(ts * o->rate + 1e-9) + 1.0) / o->rate;
    }
    return video__hash_frame(s, f, number, ts);
}

static int video__av_fail(int averr, const char *what)
{
    char msg[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, msg, sizeof msg);
    if (averr == AVERROR(ENOMEM))
        return video__fail(VG_ETOOBIG, VIDEO_LIMIT_CHILD_MEMORY,
                           "%s: out of memory (child_mem_bytes)", what);
    return vg_err_set(VG_ECORRUPT, "%s: %s", what, msg);
}

static int video__drain(video__state *s)
{
    for (;;) {
        int e = avcodec_receive_frame(s->dec, s->frame);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
            return VG_OK;
        if (e < 0)
            return video__av_fail(e, "decoding");
        int rc = video__on_frame(s, s->frame);
        av_frame_unref(s->frame);
        if (rc != VG_OK)
            return rc;
    }
}

/* Opens the container and the decoder and checks every header limit. */
static int video__open(video__state *s, const uint8_t *buf, size_t len)
{
    const video_hash_opts *o = s->o;
    const video_limits *l = &o->limits;
    const char *label = NULL;
    const char *demux = video__sniff(buf, len, &label);
    if (!demux)
        return video__fail(VG_EFORMAT, VIDEO_LIMIT_CONTAINER,
                           "not an MP4/MOV or Matroska/WebM file (container allow-list)");
    snprintf(s->h.container, sizeof s->h.container, "%s", label);
    const AVInputFormat *ifmt = av_find_input_format(demux);
    if (!ifmt)
        return vg_err_set(VG_EUNSUPPORTED, "this libavformat has no %s demuxer", demux);

    s->mem = (video__mem){buf, len, 0};
    uint8_t *iobuf = av_malloc(VIDEO__IO_BUF_BYTES);
    if (!iobuf)
        return vg_err_set(VG_ENOMEM, "no memory for the I/O buffer");
    s->io = avio_alloc_context(iobuf, VIDEO__IO_BUF_BYTES, 0, &s->mem, video__mem_read, NULL,
                               video__mem_seek);
    if (!s->io) {
        av_free(iobuf);
        return vg_err_set(VG_ENOMEM, "no memory for the I/O context");
    }
    s->fmt = avformat_alloc_context();
    if (!s->fmt)
        return vg_err_set(VG_ENOMEM, "no memory for the format context");
    s->fmt->pb = s->io;
    s->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    /* Defence in depth: even if something asked, only these demuxers/decoders may open. */
    s->fmt->format_whitelist = av_strdup("mov,matroska");
    s->fmt->codec_whitelist = av_strdup("h264,hevc,vp8,vp9,av1,libdav1d,libvpx,libvpx-vp9");
    if (!s->fmt->format_whitelist || !s->fmt->codec_whitelist)
        return vg_err_set(VG_ENOMEM, "no memory for the allow-lists");
    int e = avformat_open_input(&s->fmt, "", ifmt, NULL);
    if (e < 0) {
        s->fmt = NULL; /* freed by libavformat on failure */
        if (e == AVERROR_EOF)
            return vg_err_set(VG_ETRUNC, "%s container ends early", label);
        return video__av_fail(e, "reading the container");
    }

    s->stream = -1;
    for (unsigned i = 0; i < s->fmt->nb_streams; i++)
        if (s->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
            s->stream = (int)i;
            break;
        }
    if (s->stream < 0)
        return vg_err_set(VG_EFORMAT, "%s file has no video stream", label);
    AVStream *st = s->fmt->streams[s->stream];
    for (unsigned i = 0; i < s->fmt->nb_streams; i++)
        if ((int)i != s->stream)
            s->fmt->streams[i]->discard = AVDISCARD_ALL;
    const AVCodecParameters *par = st->codecpar;
    const char *cname = video__codec_allowed(par->codec_id);
    if (!cname)
        return video__fail(VG_EFORMAT, VIDEO_LIMIT_CODEC,
                           "video codec '%s' is not on the allow-list (h264, hevc, vp8, vp9, av1)",
                           avcodec_get_name(par->codec_id));
    snprintf(s->h.codec, sizeof s->h.codec, "%s", cname);
    int rc = video__check_dims(l, par->width, par->height);
    if (rc != VG_OK)
        return rc;
    s->h.width = (uint32_t)par->width;
    s->h.height = (uint32_t)par->height;

    s->tb = st->time_base;
    if (s->tb.num <= 0 || s->tb.den <= 0)
        return vg_err_set(VG_ECORRUPT, "video stream has no time base");
    AVRational fr = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? st->avg_frame_rate
                                                                             : st->r_frame_rate;
    s->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0.0;
    if (!(s->fps > 0 && s->fps < 1000))
        s->fps = 0;
    double dur_s = -1;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
        dur_s = (double)st->duration * av_q2d(s->tb);
    else if (s->fmt->duration != AV_NOPTS_VALUE && s->fmt->duration > 0)
        dur_s = (double)s->fmt->duration / AV_TIME_BASE;
    if (dur_s * 1000.0 > (double)l->max_duration_ms)
        return video__fail(VG_ETOOBIG, VIDEO_LIMIT_DURATION,
                           "video is %.1f s long, max_duration is %.1f s", dur_s,
                           (double)l->max_duration_ms / 1000.0);
    uint64_t frames = st->nb_frames > 0 ? (uint64_t)st->nb_frames : 0;
    if (!frames && dur_s > 0 && s->fps > 0)
        frames = (uint64_t)(dur_s * s->fps);
    if (frames > l->max_frames)
        return video__fail(VG_ETOOBIG, VIDEO_LIMIT_FRAMES,
                           "video has %llu frames, max_frames is %llu", (unsigned long long)frames,
                           (unsigned long long)l->max_frames);

    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return video__fail(VG_EFORMAT, VIDEO_LIMIT_CODEC, "this libavcodec cannot decode %s",
                           cname);
    s->dec = avcodec_alloc_context3(codec);
    if (!s->dec)
        return vg_err_set(VG_ENOMEM, "no memory for the decoder");
    if ((e = avcodec_parameters_to_context(s->dec, par)) < 0)
        return video__av_fail(e, "decoder parameters");
    s->dec->thread_count = 1; /* one core per decode: the server runs several at once */
    s->dec->max_pixels = (int64_t)l->max_pixels;
    s->dec->pkt_timebase = s->tb;
    if (o->keyframes_only)
        s->dec->skip_frame = AVDISCARD_NONKEY;
    if ((e = avcodec_open2(s->dec, codec, NULL)) < 0)
        return video__av_fail(e, "opening the decoder");
    s->pkt = av_packet_alloc();
    s->frame = av_frame_alloc();
    s->pdq = pdq_ctx_new();
    if (!s->pkt || !s->frame || !s->pdq)
        return vg_err_set(VG_ENOMEM, "no memory for the decoder state");
    return VG_OK;
}

static int video__run(video__state *s)
{
    const video_hash_opts *o = s->o;
    int rc, e;
    while ((e = av_read_frame(s->fmt, s->pkt)) >= 0) {
        if (s->pkt->stream_index != s->stream) {
            av_packet_unref(s->pkt);
            continue;
        }
        if (++s->packets > o->limits.max_frames) {
            av_packet_unref(s->pkt);
            return video__fail(VG_ETOOBIG, VIDEO_LIMIT_FRAMES,
                               "video has over %llu frames (max_frames)",
                               (unsigned long long)o->limits.max_frames);
        }
        if (o->keyframes_only && !(s->pkt->flags & AV_PKT_FLAG_KEY)) {
            av_packet_unref(s->pkt);
            continue;
        }
        if (s->planned) {
            /* The plan's packets come back in the same order after the seek; a stream that
             * does not is decoded without it from here on. */
            size_t i = (size_t)(s->packets - 1);
            if (i < s->plan_n && s->plan[i].pts == s->pkt->pts) {
                const video__pkt *pp = &s->plan[i];
                if (!pp->need) {
                    av_packet_unref(s->pkt);
                    continue;
                }
                /* A frame that is not kept is decoded only as a reference: a non-reference
                 * one is dropped by the decoder, the others may skip the loop filter. */
                s->dec->skip_frame = pp->target ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
                if (o->fast & VIDEO_FAST_SKIP_LOOP)
                    s->dec->skip_loop_filter = pp->target ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
            } else {
                s->planned = 0;
                s->dec->skip_frame = AVDISCARD_DEFAULT;
                s->dec->skip_loop_filter = AVDISCARD_DEFAULT;
            }
        } else if (!o->every_frame) {
            /* A non-reference frame shown before the next sample time is never kept and no
             * other frame needs it: the decoder may skip it. The sample time only grows, so
             * this never skips a frame that would be kept. */
            int64_t p = s->pkt->pts;
            int early = 0;
            if (p != AV_NOPTS_VALUE && s->start_pts != AV_NOPTS_VALUE)
                early = (double)(p - s->start_pts) * av_q2d(s->tb) + 1e-9 < s->next_sample_s;
            s->dec->skip_frame = early ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
            if (o->fast & VIDEO_FAST_SKIP_LOOP)
                s->dec->skip_loop_filter = early ? AVDISCARD_ALL : AVDISCARD_DEFAULT;
        }
        e = avcodec_send_packet(s->dec, s->pkt);
        av_packet_unref(s->pkt);
        if (e < 0 && e != AVERROR(EAGAIN))
            return video__av_fail(e, "decoding");
        if ((rc = video__drain(s)) != VG_OK)
            return rc;
    }
    if (e != AVERROR_EOF)
        return video__av_fail(e, "reading the container");
    /* The container's sample table promised more frames than the bytes hold: a cut file. */
    int64_t promised = s->fmt->streams[s->stream]->nb_frames;
    if (promised > 0 && s->packets < (uint64_t)promised)
        return vg_err_set(VG_ETRUNC, "video ends after %llu of its %lld frames",
                          (unsigned long long)s->packets, (long long)promised);
    s->dec->skip_frame = o->keyframes_only ? AVDISCARD_NONKEY : AVDISCARD_DEFAULT;
    s->dec->skip_loop_filter = AVDISCARD_DEFAULT;
    if ((e = avcodec_send_packet(s->dec, NULL)) < 0 && e != AVERROR_EOF)
        return video__av_fail(e, "flushing the decoder");
    return video__drain(s);
}

int video__decode(const uint8_t *buf, size_t len, const video_hash_opts *o, video_hash *out)
{
    video__set_last_limit(VIDEO_LIMIT_NONE);
    av_log_set_level(AV_LOG_QUIET); /* errors come back as codes; the log would be noise */
    video__state s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.start_pts = AV_NOPTS_VALUE;
    s.h.sampling = (video_sampling){.rate = o->every_frame ? 0 : o->rate,
                                    .every_frame = o->every_frame,
                                    .keyframes_only = o->keyframes_only,
                                    .min_quality = o->every_frame ? 0 : o->min_quality,
                                    .prune_distance = o->every_frame ? -1 : o->prune_distance};
    int rc = video__open(&s, buf, len);
    if (rc == VG_OK && !o->every_frame && !o->keyframes_only && o->test_no_plan != 1)
        rc = video__plan(&s, buf, len);
    if (rc == VG_OK)
        rc = video__run(&s);
    if (rc == VG_OK) {
        s.h.frames_decoded = s.out_frames;
        *out = s.h;
        memset(&s.h, 0, sizeof s.h);
    }
    video__state_close(&s);
    return rc;
}
