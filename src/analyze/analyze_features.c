/*
 * analyze: computing an image's features on an inference worker, and the cache blob.
 *
 * Decode policy. One decode serves PDQ and the face networks. Without face models the PDQ fast
 * pipeline decodes straight to a small grey image. With them, JPEGs are decoded at the
 * smallest power-of-two DCT scale whose long side is still at least twice the detector's
 * input (832 px at the balanced level's 416): the detector sees the same pixels it would at
 * full size (it downsamples to 416 anyway), faces keep about twice the resolution the detector
 * needs, and an HD photo decodes at 1/4 of its pixels. The accuracy level decodes at full size.
 * Boxes and landmarks are scaled back to the full image's coordinates.
 */
#include "analyze/analyze_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Long side to decode to, as a multiple of the detector's input size. */
#define ANALYZE_DECODE_DETECTOR_MULT 2

static void fill_pdq(analyze_features *f, const pdq_result *r)
{
    f->has_pdq = 1;
    f->pdq_quality = r->quality;
    memcpy(f->pdq, r->hash.w, 32);
    for (int i = 0; i < 8; i++)
        memcpy(f->pdq_dihedral[i], r->dihedral[i].w, 32);
}

_Static_assert(ANALYZE_MAX_COPY_HASHES == PDQ_COPY_MAX_HASHES, "one copy hash per pdq slot");

static void fill_copies(analyze_features *f, const pdq_copy_set *cs)
{
    f->n_copies = cs->n;
    for (size_t i = 0; i < cs->n; i++) {
        f->copies[i].region = (int)cs->h[i].region;
        f->copies[i].quality = cs->h[i].quality;
        for (int k = 0; k < 8; k++)
            memcpy(f->copies[i].dihedral[k], cs->h[i].dihedral[k].w, 32);
    }
}

static void copy_format(analyze_features *f, img_format fmt)
{
    snprintf(f->format, sizeof f->format, "%s", img_format_name(fmt));
}

/* PDQ only: the pdq module's fast pipeline straight from the bytes. */
static int compute_pdq_only(analyze_ctx *ctx, analyze_replica *rep, analyze_job *job)
{
    analyze_features *f = &job->out->features;
    pdq_image_opts po;
    pdq_image_opts_default(&po);
    po.flags = PDQ_WANT_DIHEDRAL;
    po.limits = ctx->limits;
    pdq_image_result pr;
    pdq_copy_set cs;
    int rc = pdq_hash_image_copies(rep->h.pdq, job->req.bytes, job->req.len, &po, ANALYZE_COPY_WHAT,
                                   &pr, &cs);
    if (rc)
        return rc;
    f->width = pr.width;
    f->height = pr.height;
    copy_format(f, pr.format);
    fill_pdq(f, &pr.r);
    fill_copies(f, &cs);
    job->out->timings.decode_us = pr.decode_ns / 1000;
    job->out->timings.pdq_us = pr.hash_ns / 1000;
    return VG_OK;
}

static void level_face_opts(analyze_ctx *ctx, vg_level level, face_opts *fo)
{
    face_opts_for_level(level, fo);
    if (fo->detector == FACE_DET_SSD && !face_models_has_ssd(ctx->deps.models)) {
        /* Accuracy without the SSD weights loaded: the tiny detector at its largest size. */
        fo->detector = FACE_DET_TINY;
        fo->input_size = 608;
    }
    fo->max_faces = ctx->cfg.max_faces;
}

int analyze__warm(analyze_ctx *ctx, analyze_replica *rep)
{
    if (!rep->fe)
        return VG_OK;
    face_opts fo;
    level_face_opts(ctx, ctx->cfg.default_level, &fo);
    const face_net det = fo.detector == FACE_DET_SSD ? FACE_NET_SSD : FACE_NET_TINY;
    const int size = fo.detector == FACE_DET_SSD ? FACE_SSD_SIZE : fo.input_size;
    const struct {
        face_net net;
        int size;
        nn_precision prec;
    } runs[] = {{det, size, fo.detector_precision},
                {FACE_NET_LANDMARKS, 0, fo.landmarks_precision},
                {FACE_NET_RECOG, 0, fo.precision}};
    size_t in_n = 0, out_n = 0;
    for (size_t i = 0; i < VG_ARRAY_LEN(runs); i++) {
        in_n = VG_MAX(in_n, face_net_input_floats(runs[i].net, runs[i].size));
        out_n = VG_MAX(out_n, face_net_output_floats(runs[i].net, runs[i].size));
    }
    float *in = vg_calloc(in_n, sizeof *in), *out = vg_malloc(out_n * sizeof *out);
    int rc = (!in || !out) ? VG_ENOMEM : VG_OK;
    for (size_t i = 0; !rc && i < VG_ARRAY_LEN(runs); i++)
        rc = face_engine_run(rep->fe, runs[i].net, runs[i].size, runs[i].prec, in, 1, out);
    vg_free(in);
    vg_free(out);
    return rc;
}

int analyze__prepare(analyze_ctx *ctx, analyze_replica *rep, analyze_job *job, img_image *im,
                     int defer_hash)
{
    memset(im, 0, sizeof *im);
    if (!ctx->deps.models)
        return compute_pdq_only(ctx, rep, job);

    analyze_features *f = &job->out->features;
    analyze_timings *tm = &job->out->timings;
    face_opts fo;
    level_face_opts(ctx, job->req.level, &fo);

    uint64_t t = vg_now_ns();
    img_info info;
    int rc = img_probe(job->req.bytes, job->req.len, &ctx->limits, &info);
    if (rc)
        return rc;
    uint32_t ow = info.w, oh = info.h; /* oriented full size */
    if (info.orientation >= 5) {
        ow = info.h;
        oh = info.w;
    }
    img_decode_opts o;
    img_decode_opts_default(&o);
    o.limits = ctx->limits;
    if (job->req.level != VG_LEVEL_ACCURACY) {
        uint32_t target = (uint32_t)fo.input_size * ANALYZE_DECODE_DETECTOR_MULT;
        if (ow >= oh)
            o.min_w = target;
        else
            o.min_h = target;
    }
    rc = img_decode(job->req.bytes, job->req.len, &o, im);
    if (rc)
        return rc;
    tm->decode_us = (vg_now_ns() - t) / 1000;
    f->width = ow;
    f->height = oh;
    copy_format(f, im->format);

    if (defer_hash)
        return VG_OK;
    rc = analyze__hash(&rep->h, job, im);
    if (rc)
        img_image_free(im);
    return rc;
}

void analyze__hasher_free(analyze_hasher *h)
{
    pdq_ctx_free(h->pdq);
    vg_free(h->luma);
    memset(h, 0, sizeof *h);
}

int analyze__hash(analyze_hasher *h, analyze_job *job, const img_image *im)
{
    /* The same hashing step as `vigil hash` (fast), on the decode shared with the detector: one
     * luma plane for the whole-image hash and every copy region (each used to convert the RGB
     * decode on its own), which gives the same bytes and so the same hashes. */
    const uint64_t t = vg_now_ns();
    img_image gray = *im;
    if (im->channels == 3) {
        const size_t npix = (size_t)im->w * im->h;
        if (npix > h->luma_cap) {
            uint8_t *p = vg_malloc(npix);
            if (!p)
                return vg_err_set(VG_ENOMEM, "analysis: no memory for a %zu px luma plane", npix);
            vg_free(h->luma);
            h->luma = p;
            h->luma_cap = npix;
        }
        pdq_rgb_to_luma8(im->px, npix, h->luma);
        gray.px = h->luma;
        gray.channels = 1;
    }
    pdq_image_result pr;
    int rc = pdq_hash_decoded(h->pdq, &gray, PDQ_WANT_DIHEDRAL, &pr);
    pdq_copy_set cs;
    if (!rc)
        rc = pdq_copy_hashes(h->pdq, &gray, ANALYZE_COPY_WHAT, &cs);
    if (rc)
        return rc;
    analyze_features *f = &job->out->features;
    fill_pdq(f, &pr.r);
    fill_copies(f, &cs);
    job->out->timings.pdq_us = (vg_now_ns() - t) / 1000;
    return VG_OK;
}

/* Copies one image's faces into its features, scaled back to the full image's coordinates. */
static int take_faces(analyze_features *f, const img_image *im, const face_result *fr)
{
    f->faces_enabled = 1;
    if (fr->n && !(f->faces = vg_calloc(fr->n, sizeof *f->faces)))
        return VG_ENOMEM;
    double sx = (double)f->width / im->w, sy = (double)f->height / im->h;
    for (size_t i = 0; i < fr->n; i++) {
        const face_face *src = &fr->faces[i];
        if (!src->has_descriptor)
            continue; /* a face whose aligned crop fell outside the image: not describable */
        analyze_face *d = &f->faces[f->n_faces++];
        d->box[0] = (float)(src->box.x * sx);
        d->box[1] = (float)(src->box.y * sy);
        d->box[2] = (float)(src->box.w * sx);
        d->box[3] = (float)(src->box.h * sy);
        d->score = src->score;
        for (int k = 0; k < FACE_LANDMARKS; k++) {
            d->landmarks[k][0] = (float)(src->landmarks[k][0] * sx);
            d->landmarks[k][1] = (float)(src->landmarks[k][1] * sy);
        }
        memcpy(d->descriptor, src->descriptor, sizeof d->descriptor);
    }
    return VG_OK;
}

int analyze__faces(analyze_ctx *ctx, analyze_replica *rep, vg_level level, analyze_job *const *jobs,
                   const img_image *ims, size_t n, int *status)
{
    face_opts fo;
    level_face_opts(ctx, level, &fo);
    face_image *fi = vg_calloc(n, sizeof *fi);
    face_result *fr = vg_calloc(n, sizeof *fr);
    int rc = (!fi || !fr) ? VG_ENOMEM : VG_OK;
    for (size_t i = 0; !rc && i < n; i++)
        fi[i] = (face_image){.rgb = ims[i].px, .w = ims[i].w, .h = ims[i].h};
    face_stage_ns ns;
    if (!rc)
        rc = face_analyze_batch(rep->fe, fi, n, &fo, fr, &ns);
    for (size_t i = 0; i < n; i++) {
        analyze_job *job = jobs[i];
        if (rc) {
            status[i] = rc;
            continue;
        }
        /* Stage times are the batch's: every image of it waited for all of them. */
        job->out->timings.detect_us = ns.detect / 1000;
        job->out->timings.landmarks_us = ns.landmarks / 1000;
        job->out->timings.descriptors_us = ns.describe / 1000;
        status[i] = take_faces(&job->out->features, &ims[i], &fr[i]);
        face_result_free(&fr[i]);
    }
    vg_free(fi);
    vg_free(fr);
    return rc;
}

/* ---- cache blob ----------------------------------------------------------------------------
 *
 *   "VGF1" | u32 version | sha256[32] | u32 w | u32 h | char format[8] | u8 has_pdq |
 *   i32 quality | pdq[32] | dihedral[8][32] |
 *   u8 n_copies | n_copies x (u8 region | i32 quality | dihedral[8][32]) |   (version 2)
 *   u8 faces_enabled | u32 n_faces |
 *   n_faces x (f32 box[4] | f32 score | f32 landmarks[136] | f32 descriptor[128])
 *
 * Native little-endian floats and integers: the blob is a cache entry, read back only by the
 * same build on the same architecture (the version in the cache key changes with the layout).
 */

#define BLOB_MAGIC "VGF1"
#define BLOB_HEAD_BYTES (4 + 4 + 32 + 4 + 4 + 8 + 1 + 4 + 32 + 256 + 1 + 1 + 4)
#define BLOB_COPY_BYTES (1 + 4 + 256)
#define BLOB_FACE_BYTES ((4 + 1 + 136 + 128) * 4)

static uint8_t *put(uint8_t *p, const void *v, size_t n)
{
    memcpy(p, v, n);
    return p + n;
}

int analyze__features_encode(const analyze_features *f, uint8_t **out, size_t *out_len)
{
    size_t len = BLOB_HEAD_BYTES + f->n_copies * BLOB_COPY_BYTES + f->n_faces * BLOB_FACE_BYTES;
    uint8_t *buf = vg_malloc(len);
    if (!buf)
        return VG_ENOMEM;
    uint32_t version = ANALYZE_FEATURES_VERSION, n = (uint32_t)f->n_faces;
    int32_t q = f->pdq_quality;
    uint8_t has_pdq = (uint8_t)f->has_pdq, faces_enabled = (uint8_t)f->faces_enabled;
    uint8_t *p = buf;
    p = put(p, BLOB_MAGIC, 4);
    p = put(p, &version, 4);
    p = put(p, f->sha256, 32);
    p = put(p, &f->width, 4);
    p = put(p, &f->height, 4);
    p = put(p, f->format, 8);
    p = put(p, &has_pdq, 1);
    p = put(p, &q, 4);
    p = put(p, f->pdq, 32);
    p = put(p, f->pdq_dihedral, 256);
    uint8_t n_copies = (uint8_t)f->n_copies;
    p = put(p, &n_copies, 1);
    for (size_t i = 0; i < f->n_copies; i++) {
        uint8_t region = (uint8_t)f->copies[i].region;
        int32_t cq = f->copies[i].quality;
        p = put(p, &region, 1);
        p = put(p, &cq, 4);
        p = put(p, f->copies[i].dihedral, 256);
    }
    p = put(p, &faces_enabled, 1);
    p = put(p, &n, 4);
    for (size_t i = 0; i < f->n_faces; i++) {
        const analyze_face *fc = &f->faces[i];
        p = put(p, fc->box, 16);
        p = put(p, &fc->score, 4);
        p = put(p, fc->landmarks, 136 * 4);
        p = put(p, fc->descriptor, 128 * 4);
    }
    *out = buf;
    *out_len = len;
    return VG_OK;
}

static const uint8_t *get(const uint8_t *p, void *v, size_t n)
{
    memcpy(v, p, n);
    return p + n;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

int analyze__features_decode(const uint8_t *buf, size_t len, analyze_features *out)
{
    if (len < BLOB_HEAD_BYTES || memcmp(buf, BLOB_MAGIC, 4) != 0)
        return vg_err_set(VG_ECORRUPT, "feature blob: bad header");
    analyze_features f;
    memset(&f, 0, sizeof f);
    uint32_t version, n;
    int32_t q;
    uint8_t has_pdq, faces_enabled, n_copies;
    const uint8_t *p = buf + 4;
    p = get(p, &version, 4);
    p = get(p, f.sha256, 32);
    p = get(p, &f.width, 4);
    p = get(p, &f.height, 4);
    p = get(p, f.format, 8);
    p = get(p, &has_pdq, 1);
    p = get(p, &q, 4);
    p = get(p, f.pdq, 32);
    p = get(p, f.pdq_dihedral, 256);
    p = get(p, &n_copies, 1);
    if (version != ANALYZE_FEATURES_VERSION || n_copies > ANALYZE_MAX_COPY_HASHES ||
        len < BLOB_HEAD_BYTES + (size_t)n_copies * BLOB_COPY_BYTES)
        return vg_err_set(VG_ECORRUPT, "feature blob: bad fields");
    for (size_t i = 0; i < n_copies; i++) {
        uint8_t region;
        int32_t cq;
        p = get(p, &region, 1);
        p = get(p, &cq, 4);
        p = get(p, f.copies[i].dihedral, 256);
        if (region == PDQ_REGION_WHOLE || region >= PDQ_REGION_COUNT || cq < 0 || cq > 100)
            return vg_err_set(VG_ECORRUPT, "feature blob: bad copy hash");
        f.copies[i].region = region;
        f.copies[i].quality = cq;
    }
    f.n_copies = n_copies;
    p = get(p, &faces_enabled, 1);
    p = get(p, &n, 4);
    if (has_pdq > 1 || faces_enabled > 1 || q < 0 || q > 100 || f.format[7] != '\0' ||
        n > FACE_DEFAULT_MAX_FACES ||
        len != BLOB_HEAD_BYTES + (size_t)n_copies * BLOB_COPY_BYTES + (size_t)n * BLOB_FACE_BYTES)
        return vg_err_set(VG_ECORRUPT, "feature blob: bad fields");
    f.has_pdq = has_pdq;
    f.pdq_quality = q;
    f.faces_enabled = faces_enabled;
    if (n) {
        f.faces = vg_calloc(n, sizeof *f.faces);
        if (!f.faces)
            return VG_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        analyze_face *fc = &f.faces[i];
        p = get(p, fc->box, 16);
        p = get(p, &fc->score, 4);
        p = get(p, fc->landmarks, 136 * 4);
        p = get(p, fc->descriptor, 128 * 4);
        if (!all_finite(fc->box, 4) || !all_finite(&fc->score, 1) ||
            !all_finite(&fc->landmarks[0][0], 136) || !all_finite(fc->descriptor, 128)) {
            vg_free(f.faces);
            return vg_err_set(VG_ECORRUPT, "feature blob: non-finite values");
        }
    }
    f.n_faces = n;
    *out = f;
    return VG_OK;
}
