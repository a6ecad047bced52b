/*
 * face: shared models, per-replica engines, the batch runner and the whole-image pipeline.
 *
 * face_models holds everything read-only: the decoded weights (one block per model), the
 * graphs built on them, int8 calibration, and per graph an nn_wcache of oneDNN-reordered
 * weights that every replica's plans share. Tiny-detector graphs are built per input size on
 * first use under a mutex; everything else is immutable after face_models_open.
 *
 * face_engine is one replica: a small table of compiled plans keyed by (network, input size,
 * batch bucket, precision), each with its batch-sized output buffers, and growable scratch for
 * prepared inputs. Batch sizes are rounded up to powers of two so a replica compiles at most
 * seven plans per network and precision.
 */
#include "face/face_int.h"

#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FACE_MAX_TINY_SIZES 8
#define FACE_MAX_PLANS                                                                             \
    96 /* per engine: nets x input sizes x batch buckets x precisions x threads */

static const char *k_model_files[FACE_NET_COUNT] = {
    "tiny_face_detector_model", "face_landmark_68_model", "face_recognition_model",
    "ssd_mobilenetv1_model"};
static const char *k_calib_names[FACE_NET_COUNT] = {"tiny", "landmarks", "recognition", "ssd"};

struct face_models {
    nn_weights *w[FACE_NET_COUNT];
    nn_graph *landmarks, *recog, *ssd;
    float *ssd_bn;
    const float *ssd_anchors; /* [5118][4] in w[SSD] */
    pthread_mutex_t mu;       /* guards tiny[] growth */
    struct {
        int size;
        nn_graph *g;
        nn_wcache *wc;
    } tiny[FACE_MAX_TINY_SIZES];
    int n_tiny;
    nn_wcache *wc[FACE_NET_COUNT]; /* landmarks, recog, ssd (tiny: per size above) */
    nn_calib calib[FACE_NET_COUNT];
    int has_calib[FACE_NET_COUNT];
    /* Inference accounting shared by every engine (atomics: engines run on many threads). */
    vg_lat_hist run_latency[FACE_NET_COUNT][FACE_PRECISIONS];
    _Atomic uint64_t run_items[FACE_NET_COUNT][FACE_PRECISIONS];
};

const char *face_net_name(face_net n)
{
    static const char *names[] = {"tiny", "landmarks", "recognition", "ssd"};
    return (unsigned)n < FACE_NET_COUNT ? names[n] : "?";
}

void face_opts_for_level(vg_level level, face_opts *o)
{
    memset(o, 0, sizeof *o);
    o->detector = FACE_DET_TINY;
    o->score_threshold = 0.5f;
    o->max_faces = FACE_DEFAULT_MAX_FACES;
    o->descriptors = 1;
    o->detector_precision = NN_PREC_F32;
    o->landmarks_precision = NN_PREC_F32;
    unsigned f = vg_cpu_features();
    nn_precision fast = (f & (VG_CPU_AVX512VNNI | VG_CPU_AVXVNNI)) ? NN_PREC_INT8
                        : (f & VG_CPU_AVX512BF16)                  ? NN_PREC_BF16
                                                                   : NN_PREC_F32;
    switch (level) {
    case VG_LEVEL_SPEED:
        o->input_size = 320;
        o->precision = fast;
        /* bf16 keeps the boxes within IoU 0.99 of f32 at half the detector's time; int8 does
         * not hold IoU 0.95 (test_face, docs/BENCHMARKS.md), so no level uses it */
        if (f & VG_CPU_AVX512BF16)
            o->detector_precision = NN_PREC_BF16;
        break;
    case VG_LEVEL_MEMORY:
        o->input_size = 320;
        o->precision = fast;
        break;
    case VG_LEVEL_ACCURACY:
        o->detector = FACE_DET_SSD;
        o->input_size = FACE_SSD_SIZE;
        o->precision = NN_PREC_F32;
        break;
    case VG_LEVEL_BALANCED:
    default:
        o->input_size = 416;
        o->precision = fast;
        break;
    }
}

void face_result_free(face_result *r)
{
    if (!r)
        return;
    vg_free(r->faces);
    r->faces = NULL;
    r->n = 0;
}

float face_distance(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return (float)sqrt(s);
}

/* ---- models --------------------------------------------------------------------------------- */

int face_models_open(const char *models_dir, const face_models_opts *opts, face_models **out)
{
    if (!models_dir || !out)
        return vg_err_set(VG_EINVAL, "face_models_open: NULL argument");
    face_models *m = vg_calloc(1, sizeof *m);
    if (!m)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_mutex_init(&m->mu, NULL);
    int rc = 0;
    int load_ssd = opts && opts->load_ssd;
    for (int i = 0; i < FACE_NET_COUNT && !rc; i++)
        if (i != FACE_NET_SSD || load_ssd)
            rc = nn_weights_open(models_dir, k_model_files[i], &m->w[i]);
    if (!rc)
        rc = face__landmarks_build(m->w[FACE_NET_LANDMARKS], &m->landmarks);
    if (!rc)
        rc = face__recog_build(m->w[FACE_NET_RECOG], &m->recog);
    if (!rc && load_ssd) {
        m->ssd_bn = vg_malloc(FACE_SSD_BN_FLOATS * sizeof(float));
        if (!m->ssd_bn)
            rc = vg_err_set(VG_ENOMEM, "out of memory");
        if (!rc)
            rc = face__ssd_build(m->w[FACE_NET_SSD], m->ssd_bn, &m->ssd);
        if (!rc)
            rc = nn_weights_get_f32(m->w[FACE_NET_SSD], "Output/extra_dim", 3, (int[]){1, 5118, 4},
                                    &m->ssd_anchors);
    }
    for (int i = 1; i < FACE_NET_COUNT && !rc; i++)
        if (i != FACE_NET_SSD || load_ssd)
            rc = nn_wcache_new(&m->wc[i]);
    if (rc) {
        if (rc != VG_ENOMEM && rc != VG_ENOTFOUND && rc != VG_ECHECKSUM && rc != VG_EFORMAT)
            rc = VG_EFORMAT;
        face_models_free(m);
        return rc;
    }
    /* int8 calibration: optional; int8 is refused later if a network has none. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", (opts && opts->calib_dir) ? opts->calib_dir : models_dir);
    if (!(opts && opts->calib_dir))
        snprintf(dir, sizeof dir, "%s/calibration", models_dir);
    for (int i = 0; i < FACE_NET_COUNT; i++) {
        const nn_graph *g = i == FACE_NET_TINY ? face_models_graph(m, FACE_NET_TINY, 416)
                                               : face_models_graph(m, (face_net)i, 0);
        if (!g)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.txt", dir, k_calib_names[i]);
        if (nn_calib_load(path, nn_graph_n_tensors(g), &m->calib[i]) == 0)
            m->has_calib[i] = 1;
        else
            VG_DEBUG("face", "no int8 calibration for %s: %s", face_net_name((face_net)i),
                     vg_err_msg());
    }
    *out = m;
    return 0;
}

void face_models_free(face_models *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_tiny; i++) {
        nn_graph_free(m->tiny[i].g);
        nn_wcache_free(m->tiny[i].wc);
    }
    nn_graph_free(m->landmarks);
    nn_graph_free(m->recog);
    nn_graph_free(m->ssd);
    vg_free(m->ssd_bn);
    for (int i = 0; i < FACE_NET_COUNT; i++) {
        nn_weights_free(m->w[i]);
        nn_wcache_free(m->wc[i]);
        nn_calib_deinit(&m->calib[i]);
    }
    pthread_mutex_destroy(&m->mu);
    vg_free(m);
}

int face_models_has_ssd(const face_models *m)
{
    return m && m->ssd;
}

void face_models_inference_stats(const face_models *m, face_inference_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!m)
        return;
    for (int n = 0; n < FACE_NET_COUNT; n++)
        for (int p = 0; p < FACE_PRECISIONS; p++) {
            vg_lat_read(&m->run_latency[n][p], &out->latency[n][p]);
            out->items[n][p] = atomic_load_explicit(&m->run_items[n][p], memory_order_relaxed);
        }
}

size_t face_models_bytes(const face_models *m)
{
    size_t b = 0;
    for (int i = 0; i < FACE_NET_COUNT; i++)
        b += nn_weights_bytes(m->w[i]) + (m->wc[i] ? nn_wcache_bytes(m->wc[i]) : 0);
    for (int i = 0; i < m->n_tiny; i++)
        b += nn_wcache_bytes(m->tiny[i].wc);
    return b;
}

/* Tiny graph and weight cache for one input size, built on first use. */
static int tiny_slot(face_models *m, int size, nn_graph **g, nn_wcache **wc)
{
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    for (int i = 0; i < m->n_tiny; i++)
        if (m->tiny[i].size == size) {
            *g = m->tiny[i].g;
            *wc = m->tiny[i].wc;
            goto done;
        }
    if (m->n_tiny == FACE_MAX_TINY_SIZES) {
        rc = vg_err_set(VG_EBUSY, "at most %d tiny detector sizes at once", FACE_MAX_TINY_SIZES);
        goto done;
    }
    nn_graph *ng;
    nn_wcache *nwc;
    if ((rc = face__tiny_build(m->w[FACE_NET_TINY], size, &ng)))
        goto done;
    if ((rc = nn_wcache_new(&nwc))) {
        nn_graph_free(ng);
        goto done;
    }
    m->tiny[m->n_tiny].size = size;
    m->tiny[m->n_tiny].g = ng;
    m->tiny[m->n_tiny].wc = nwc;
    m->n_tiny++;
    *g = ng;
    *wc = nwc;
done:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

const nn_graph *face_models_graph(face_models *m, face_net net, int input_size)
{
    nn_graph *g = NULL;
    nn_wcache *wc;
    switch (net) {
    case FACE_NET_TINY:
        if (tiny_slot(m, input_size, &g, &wc))
            return NULL;
        return g;
    case FACE_NET_LANDMARKS:
        return m->landmarks;
    case FACE_NET_RECOG:
        return m->recog;
    case FACE_NET_SSD:
        return m->ssd;
    default:
        return NULL;
    }
}

const nn_calib *face_models_calib(const face_models *m, face_net net)
{
    return ((unsigned)net < FACE_NET_COUNT && m->has_calib[net]) ? &m->calib[net] : NULL;
}

/* ---- engine --------------------------------------------------------------------------------- */

typedef struct plan_slot {
    face_net net;
    int size, batch;
    nn_precision prec;
    int threads; /* the OpenMP maximum the plan was made under (oneDNN keeps it) */
    nn_plan *plan;
    int n_out;
    float *outs[NN_MAX_OUTPUTS];
    size_t out_count[NN_MAX_OUTPUTS]; /* floats per item */
} plan_slot;

struct face_engine {
    face_models *m;
    face_engine_opts o;
    int run_threads; /* face_engine_set_threads; 0 = o.threads */
    plan_slot slots[FACE_MAX_PLANS];
    int n_slots;
    const char *last_impl;
    float *in_buf, *out_buf;
    size_t in_cap, out_cap; /* floats */
};

int face_engine_new(face_models *models, const face_engine_opts *opts, face_engine **out)
{
    if (!models || !out)
        return vg_err_set(VG_EINVAL, "face_engine_new: NULL argument");
    face_engine *e = vg_calloc(1, sizeof *e);
    if (!e)
        return vg_err_set(VG_ENOMEM, "out of memory");
    e->m = models;
    e->o.backend = NN_BACKEND_DNNL;
    if (opts)
        e->o = *opts;
    e->last_impl = "";
    *out = e;
    return 0;
}

static void slot_free(plan_slot *s)
{
    nn_plan_free(s->plan);
    for (int k = 0; k < s->n_out; k++)
        vg_free(s->outs[k]);
}

void face_engine_free(face_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_slots; i++)
        slot_free(&e->slots[i]);
    vg_free(e->in_buf);
    vg_free(e->out_buf);
    vg_free(e);
}

size_t face_engine_memory(const face_engine *e)
{
    size_t b = (e->in_cap + e->out_cap) * sizeof(float);
    for (int i = 0; i < e->n_slots; i++) {
        b += nn_plan_scratch_bytes(e->slots[i].plan) + nn_plan_weight_bytes(e->slots[i].plan);
        for (int k = 0; k < e->slots[i].n_out; k++)
            b += e->slots[i].out_count[k] * e->slots[i].batch * sizeof(float);
    }
    return b;
}

const char *face_engine_impl(const face_engine *e)
{
    return e->last_impl;
}

static int graph_for(face_models *m, face_net net, int size, const nn_graph **g, nn_wcache **wc)
{
    nn_graph *tg = NULL;
    switch (net) {
    case FACE_NET_TINY: {
        int rc = tiny_slot(m, size, &tg, wc);
        *g = tg;
        return rc;
    }
    case FACE_NET_LANDMARKS:
    case FACE_NET_RECOG:
    case FACE_NET_SSD:
        *g = net == FACE_NET_LANDMARKS ? m->landmarks : net == FACE_NET_RECOG ? m->recog : m->ssd;
        *wc = m->wc[net];
        if (!*g)
            return vg_err_set(VG_EINVAL, "the %s network was not loaded", face_net_name(net));
        return 0;
    default:
        return vg_err_set(VG_EINVAL, "unknown network %d", (int)net);
    }
}

static int bucket(int n)
{
    int b = 1;
    while (b < n)
        b *= 2;
    return b;
}

static int get_plan(face_engine *e, face_net net, int size, int n, nn_precision prec, int threads,
                    plan_slot **out)
{
    int b = bucket(n);
    if (net != FACE_NET_TINY)
        size = 0;
    for (int i = 0; i < e->n_slots; i++) {
        plan_slot *s = &e->slots[i];
        if (s->net == net && s->size == size && s->batch == b && s->prec == prec &&
            s->threads == threads) {
            *out = s;
            return 0;
        }
    }
    if (e->n_slots == FACE_MAX_PLANS)
        return vg_err_set(VG_EBUSY, "engine holds %d plans already", FACE_MAX_PLANS);
    const nn_graph *g = NULL;
    nn_wcache *wc = NULL;
    int rc = graph_for(e->m, net, size, &g, &wc);
    if (rc)
        return rc;
    nn_plan_opts po = {.backend = e->o.backend, .precision = prec, .batch = b, .wcache = wc};
    if (prec != NN_PREC_F32) /* int8 scales; the ops kept in f32 (int8 and bf16) */
        po.calib = face_models_calib(e->m, net);
    if (prec == NN_PREC_INT8) {
        if (!po.calib)
            return vg_err_set(VG_EUNSUPPORTED,
                              "no int8 calibration for the %s network (run `vigil models "
                              "calibrate`)",
                              face_net_name(net));
    }
    plan_slot *s = &e->slots[e->n_slots];
    memset(s, 0, sizeof *s);
    s->net = net;
    s->size = size;
    s->batch = b;
    s->prec = prec;
    s->threads = threads;
    if ((rc = nn_plan_new(g, &po, &s->plan)))
        return rc;
    s->n_out = nn_graph_n_outputs(g);
    for (int k = 0; k < s->n_out; k++) {
        s->out_count[k] = nn_shape_count(nn_graph_output_shape(g, k));
        s->outs[k] = vg_malloc(s->out_count[k] * b * sizeof(float));
        if (!s->outs[k]) {
            slot_free(s);
            return vg_err_set(VG_ENOMEM, "out of memory");
        }
    }
    e->n_slots++;
    VG_DEBUG("face", "compiled %s%s batch %d %s: %s", face_net_name(net),
             net == FACE_NET_TINY ? "" : "", b, nn_precision_name(prec), nn_plan_impl(s->plan));
    *out = s;
    return 0;
}

size_t face_net_input_floats(face_net net, int input_size)
{
    int s = net == FACE_NET_TINY        ? input_size
            : net == FACE_NET_LANDMARKS ? FACE_LANDMARK_SIZE
            : net == FACE_NET_RECOG     ? FACE_RECOG_SIZE
                                        : FACE_SSD_SIZE;
    return (size_t)s * s * 3;
}

size_t face_net_output_floats(face_net net, int input_size)
{
    switch (net) {
    case FACE_NET_TINY:
        return (size_t)(input_size / 32) * (input_size / 32) * 25;
    case FACE_NET_LANDMARKS:
        return 136;
    case FACE_NET_RECOG:
        return VG_DESCRIPTOR_DIM;
    case FACE_NET_SSD:
        return 5118 * 7;
    default:
        return 0;
    }
}

void face_engine_set_threads(face_engine *e, int threads)
{
    if (e)
        e->run_threads = threads > 0 ? threads : 0;
}

int face_engine_run(face_engine *e, face_net net, int input_size, nn_precision prec,
                    const float *in, int n, float *out)
{
    if (!e || !in || !out || n < 1 || n > FACE_MAX_BATCH)
        return vg_err_set(VG_EINVAL, "face_engine_run: batch %d outside 1..%d", n, FACE_MAX_BATCH);
    /* Before the plan is made, not only before it runs: oneDNN fixes a primitive's thread count
     * when it creates it (its kernels split work by the maximum at that moment), so a plan made
     * while the calling thread's OpenMP maximum was still the CPU count ran 2 threads on a
     * 1-thread engine, and libgomp's idle worker spun on the other core between runs: ~2x the
     * CPU per analysis (docs/BENCHMARKS.md, "OpenMP threads"). */
    const int threads = e->run_threads > 0 ? e->run_threads : e->o.threads;
    if (threads > 0)
        nn_set_threads(threads);
    plan_slot *s = NULL;
    int rc = get_plan(e, net, input_size, n, prec, threads, &s);
    if (rc)
        return rc;
    uint64_t t0 = vg_now_ns();
    if ((rc = nn_plan_run(s->plan, in, n, s->outs)))
        return rc;
    e->last_impl = nn_plan_impl(s->plan);
    size_t total = 0;
    for (int k = 0; k < s->n_out; k++)
        total += s->out_count[k];
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * total;
        for (int k = 0; k < s->n_out; k++) {
            memcpy(o, s->outs[k] + (size_t)i * s->out_count[k], s->out_count[k] * sizeof(float));
            o += s->out_count[k];
        }
    }
    if ((unsigned)prec < FACE_PRECISIONS && (unsigned)net < FACE_NET_COUNT) {
        vg_lat_record(&e->m->run_latency[net][prec], vg_now_ns() - t0);
        atomic_fetch_add_explicit(&e->m->run_items[net][prec], (uint64_t)n, memory_order_relaxed);
    }
    return 0;
}

/* ---- detection ------------------------------------------------------------------------------ */

static const float k_mean_tiny[3] = {117.001f, 114.697f, 97.404f};
static const float k_zero[3] = {0, 0, 0};

int face_prepare_detector(const face_image *img, face_detector det, int input_size, float *dst,
                          face_frame *frame)
{
    if (!img || !img->rgb || !dst || img->w == 0 || img->h == 0)
        return vg_err_set(VG_EINVAL, "face_prepare_detector: empty image");
    if (det == FACE_DET_SSD)
        input_size = FACE_SSD_SIZE;
    if (input_size < 32 || input_size > 1024 || input_size % 32)
        return vg_err_set(VG_EINVAL, "detector input size %d is not a multiple of 32 in 32..1024",
                          input_size);
    if (det == FACE_DET_SSD)
        face__to_square_tensor(img, 0, 0, (int)img->w, (int)img->h, input_size, 0, k_zero, 127.5f,
                               -1.0f, dst);
    else
        face__to_square_tensor(img, 0, 0, (int)img->w, (int)img->h, input_size, 0, k_mean_tiny,
                               255.0f, 0.0f, dst);
    if (frame)
        *frame = (face_frame){img->w, img->h, input_size};
    return 0;
}

int face_decode_detections(const face_models *m, face_detector det, const float *out,
                           const face_frame *frame, float score_threshold, face_detection *dets,
                           size_t max, size_t *n_out)
{
    if (!out || !frame || !dets || !n_out)
        return vg_err_set(VG_EINVAL, "face_decode_detections: NULL argument");
    if (det == FACE_DET_SSD) {
        if (!m || !m->ssd)
            return vg_err_set(VG_EINVAL, "SSD decoding needs models opened with the SSD");
        return face__ssd_decode(out, m->ssd_anchors, frame, score_threshold, dets, max, n_out);
    }
    return face__tiny_decode(out, frame, score_threshold, dets, max, n_out);
}

/* ---- the whole pipeline --------------------------------------------------------------------- */

static int grow(float **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    float *nb = vg_aligned_alloc(64, need * sizeof(float));
    if (!nb)
        return vg_err_set(VG_ENOMEM, "out of memory (%zu floats)", need);
    vg_free(*buf);
    *buf = nb;
    *cap = need;
    return 0;
}

/* Largest image side accepted; beyond it the detector input would carry no information and the
 * pixel count is bounded by the img module's limits anyway. */
#define FACE_MAX_IMAGE_SIDE 65535u

/* Network calls of face_analyze_batch. The detector runs one image per call: its activations are
 * ~11 MB per image at 416 (conv0 alone is 414x414x16 floats), a plan is kept per batch size, and
 * batching detector inputs gave no CPU gain per image on 2 cores (docs/BENCHMARKS.md), while it
 * tripled the server's resident memory. Face crops (112 and 150 px) are batched across the
 * images, up to 16 per call: ~0.7 MB of activations each. */
#define FACE_DETECT_BATCH 1
#define FACE_CROP_BATCH 16

/* One face of a batch on its way through landmarks and recognition. */
typedef struct batch_face {
    uint32_t img;   /* index into the batch's images */
    uint32_t slot;  /* index into that image's faces */
    face_crop crop; /* landmark crop */
    int alive;      /* 0 once its box or aligned crop fell outside the image */
} batch_face;

static void free_results(face_result *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        face_result_free(&out[i]);
}

/* Detection for images [i0, i0+k): one network call, then decoding per image into out[]. */
static int detect_chunk(face_engine *e, const face_image *imgs, size_t i0, int k,
                        const face_opts *opts, face_detector det, int size, face_net dnet,
                        face_detection *dets, size_t cand, face_result *out)
{
    size_t in_f = face_net_input_floats(dnet, size), out_f = face_net_output_floats(dnet, size);
    face_frame fr[FACE_DETECT_BATCH];
    int rc;
    for (int j = 0; j < k; j++)
        if ((rc = face_prepare_detector(&imgs[i0 + (size_t)j], det, size,
                                        e->in_buf + (size_t)j * in_f, &fr[j])))
            return rc;
    if ((rc = face_engine_run(e, dnet, size, opts->detector_precision, e->in_buf, k, e->out_buf)))
        return rc;
    for (int j = 0; j < k; j++) {
        const float *o = e->out_buf + (size_t)j * out_f;
        size_t nd = 0;
        rc = det == FACE_DET_SSD
                 ? face__ssd_decode(o, e->m->ssd_anchors, &fr[j], opts->score_threshold, dets, cand,
                                    &nd)
                 : face__tiny_decode(o, &fr[j], opts->score_threshold, dets, cand, &nd);
        if (rc)
            return rc;
        nd = VG_MIN(nd, opts->max_faces);
        face_result *r = &out[i0 + (size_t)j];
        if (nd && !(r->faces = vg_calloc(nd, sizeof *r->faces)))
            return vg_err_set(VG_ENOMEM, "out of memory");
        for (size_t d = 0; d < nd; d++) {
            r->faces[d].box = dets[d].box;
            r->faces[d].score = dets[d].score;
        }
        r->n = nd;
    }
    return 0;
}

/* Landmarks or recognition for every live face of the batch, FACE_CROP_BATCH crops per call. */
static int faces_pass(face_engine *e, const face_image *imgs, face_net net, nn_precision prec,
                      batch_face *bf, size_t nbf, face_result *out)
{
    const size_t in_f = face_net_input_floats(net, 0), out_f = face_net_output_floats(net, 0);
    for (size_t i = 0; i < nbf;) {
        int n = 0;
        size_t idx[FACE_CROP_BATCH];
        for (; i < nbf && n < FACE_CROP_BATCH; i++) {
            batch_face *b = &bf[i];
            if (!b->alive)
                continue;
            face_face *f = &out[b->img].faces[b->slot];
            float *dst = e->in_buf + (size_t)n * in_f;
            int prc = net == FACE_NET_LANDMARKS
                          ? face_prepare_landmarks(&imgs[b->img], &f->box, dst, &b->crop)
                          : face_prepare_recognition(&imgs[b->img], (const float(*)[2])f->landmarks,
                                                     dst, &f->recognition_crop);
            if (prc == 0)
                idx[n++] = i;
            else if (net == FACE_NET_LANDMARKS)
                b->alive = 0; /* a box entirely outside the image: dropped */
        }
        if (n == 0)
            continue;
        int rc = face_engine_run(e, net, 0, prec, e->in_buf, n, e->out_buf);
        if (rc)
            return rc;
        for (int k = 0; k < n; k++) {
            batch_face *b = &bf[idx[k]];
            face_face *f = &out[b->img].faces[b->slot];
            const float *o = e->out_buf + (size_t)k * out_f;
            if (net == FACE_NET_LANDMARKS) {
                face_decode_landmarks(o, &b->crop, f->landmarks);
            } else {
                memcpy(f->descriptor, o, sizeof f->descriptor);
                f->has_descriptor = 1;
            }
        }
    }
    return 0;
}

int face_analyze_batch(face_engine *e, const face_image *imgs, size_t n, const face_opts *opts,
                       face_result *out, face_stage_ns *ns)
{
    if (!e || (!imgs && n) || !opts || (!out && n))
        return vg_err_set(VG_EINVAL, "face_analyze_batch: NULL argument");
    if (n)
        memset(out, 0, n * sizeof *out);
    if (ns)
        memset(ns, 0, sizeof *ns);
    for (size_t i = 0; i < n; i++)
        if (!imgs[i].rgb || imgs[i].w == 0 || imgs[i].h == 0 || imgs[i].w > FACE_MAX_IMAGE_SIDE ||
            imgs[i].h > FACE_MAX_IMAGE_SIDE)
            return vg_err_set(VG_EINVAL, "image %ux%u is empty or too large", imgs[i].w, imgs[i].h);
    face_detector det = opts->detector;
    if (det == FACE_DET_SSD && !e->m->ssd)
        return vg_err_set(VG_EINVAL, "the SSD detector was not loaded");
    if (n == 0)
        return 0;
    const int size = det == FACE_DET_SSD ? FACE_SSD_SIZE : opts->input_size;
    const face_net dnet = det == FACE_DET_SSD ? FACE_NET_SSD : FACE_NET_TINY;
    const int chunk = (int)VG_MIN(n, (size_t)FACE_DETECT_BATCH);
    const size_t lm_in = face_net_input_floats(FACE_NET_LANDMARKS, 0);
    const size_t rc_in = face_net_input_floats(FACE_NET_RECOG, 0);
    const size_t in_need = VG_MAX(face_net_input_floats(dnet, size) * (size_t)chunk,
                                  VG_MAX(lm_in, rc_in) * FACE_CROP_BATCH);
    const size_t out_need =
        VG_MAX(face_net_output_floats(dnet, size) * (size_t)chunk, (size_t)136 * FACE_CROP_BATCH);
    int rc;
    if ((rc = grow(&e->in_buf, &e->in_cap, in_need)) ||
        (rc = grow(&e->out_buf, &e->out_cap, out_need)))
        return rc;
    size_t cand = det == FACE_DET_SSD ? 5118 : (size_t)(size / 32) * (size / 32) * 5;
    face_detection *dets = vg_malloc(cand * sizeof *dets);
    if (!dets)
        return vg_err_set(VG_ENOMEM, "out of memory");
    uint64_t t0 = vg_now_ns();
    for (size_t i = 0; i < n && !rc; i += (size_t)chunk) {
        int k = (int)VG_MIN((size_t)chunk, n - i);
        rc = detect_chunk(e, imgs, i, k, opts, det, size, dnet, dets, cand, out);
    }
    vg_free(dets);
    uint64_t t1 = vg_now_ns();
    /* Every face of every image, in image order, for the crop networks. */
    size_t nbf = 0;
    for (size_t i = 0; i < n; i++)
        nbf += out[i].n;
    batch_face *bf = NULL;
    if (!rc && nbf && !(bf = vg_calloc(nbf, sizeof *bf)))
        rc = vg_err_set(VG_ENOMEM, "out of memory");
    for (size_t i = 0, k = 0; !rc && i < n; i++)
        for (size_t j = 0; j < out[i].n; j++, k++)
            bf[k] = (batch_face){.img = (uint32_t)i, .slot = (uint32_t)j, .alive = 1};
    if (!rc)
        rc = faces_pass(e, imgs, FACE_NET_LANDMARKS, opts->landmarks_precision, bf, nbf, out);
    uint64_t t2 = vg_now_ns();
    if (!rc && opts->descriptors)
        rc = faces_pass(e, imgs, FACE_NET_RECOG, opts->precision, bf, nbf, out);
    uint64_t t3 = vg_now_ns();
    if (!rc) {
        /* Drop the faces whose box fell outside the image, keeping order (compaction in place). */
        for (size_t i = 0, k = 0; i < n; i++) {
            size_t kept = 0;
            for (size_t j = 0; j < out[i].n; j++, k++)
                if (bf[k].alive)
                    out[i].faces[kept++] = out[i].faces[j];
            out[i].n = kept;
            if (kept == 0) {
                vg_free(out[i].faces);
                out[i].faces = NULL;
            }
        }
    }
    vg_free(bf);
    if (rc) {
        free_results(out, n);
        return rc;
    }
    if (ns) {
        ns->detect = t1 - t0;
        ns->landmarks = t2 - t1;
        ns->describe = t3 - t2;
    }
    return 0;
}

int face_analyze(face_engine *e, const face_image *img, const face_opts *opts, face_result *out)
{
    if (!e || !img || !opts || !out)
        return vg_err_set(VG_EINVAL, "face_analyze: NULL argument");
    return face_analyze_batch(e, img, 1, opts, out, NULL);
}

/* ---- calibration ---------------------------------------------------------------------------- */

/* Observes one network on one prepared input with the reference backend. */
static int observe(face_models *m, face_net net, int size, const float *in, float *amax)
{
    const nn_graph *g = NULL;
    nn_wcache *wc = NULL;
    int rc = graph_for(m, net, size, &g, &wc);
    if (rc)
        return rc;
    nn_plan *p;
    nn_plan_opts po = {.backend = NN_BACKEND_REF, .precision = NN_PREC_F32, .batch = 1};
    if ((rc = nn_plan_new(g, &po, &p)))
        return rc;
    float *outs[NN_MAX_OUTPUTS] = {0};
    for (int k = 0; k < nn_graph_n_outputs(g) && !rc; k++)
        if (!(outs[k] = vg_malloc(nn_shape_count(nn_graph_output_shape(g, k)) * sizeof(float))))
            rc = vg_err_set(VG_ENOMEM, "out of memory");
    if (!rc)
        rc = nn_plan_run_observe(p, in, 1, outs, amax);
    for (int k = 0; k < NN_MAX_OUTPUTS; k++)
        vg_free(outs[k]);
    nn_plan_free(p);
    return rc;
}

int face_calibrate(face_models *m, const face_image *imgs, size_t n, const char *out_dir,
                   const char *note)
{
    if (!m || (!imgs && n) || !out_dir)
        return vg_err_set(VG_EINVAL, "face_calibrate: NULL argument");
    float *amax[FACE_NET_COUNT] = {0};
    int nt[FACE_NET_COUNT] = {0};
    int rc = 0;
    for (int i = 0; i < FACE_NET_COUNT && !rc; i++) {
        const nn_graph *g = face_models_graph(m, (face_net)i, 416);
        if (!g)
            continue;
        nt[i] = nn_graph_n_tensors(g);
        if (!(amax[i] = vg_calloc((size_t)nt[i], sizeof(float))))
            rc = vg_err_set(VG_ENOMEM, "out of memory");
    }
    face_engine *e = NULL;
    float *buf = vg_malloc(face_net_input_floats(FACE_NET_SSD, 0) * sizeof(float));
    if (!buf && !rc)
        rc = vg_err_set(VG_ENOMEM, "out of memory");
    if (!rc)
        rc = face_engine_new(m, &(face_engine_opts){.backend = NN_BACKEND_DNNL}, &e);
    size_t faces = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        face_frame fr;
        if ((rc = face_prepare_detector(&imgs[k], FACE_DET_TINY, 416, buf, &fr)) ||
            (rc = observe(m, FACE_NET_TINY, 416, buf, amax[FACE_NET_TINY])))
            break;
        if (m->ssd && ((rc = face_prepare_detector(&imgs[k], FACE_DET_SSD, 0, buf, &fr)) ||
                       (rc = observe(m, FACE_NET_SSD, 0, buf, amax[FACE_NET_SSD]))))
            break;
        face_opts o;
        face_opts_for_level(VG_LEVEL_BALANCED, &o);
        o.precision = NN_PREC_F32;
        face_result r;
        if ((rc = face_analyze(e, &imgs[k], &o, &r)))
            break;
        for (size_t f = 0; f < r.n && !rc; f++) {
            face_crop crop;
            if (face_prepare_landmarks(&imgs[k], &r.faces[f].box, buf, &crop) == 0)
                rc = observe(m, FACE_NET_LANDMARKS, 0, buf, amax[FACE_NET_LANDMARKS]);
            if (!rc && face_prepare_recognition(&imgs[k], (const float(*)[2])r.faces[f].landmarks,
                                                buf, NULL) == 0)
                rc = observe(m, FACE_NET_RECOG, 0, buf, amax[FACE_NET_RECOG]);
            faces++;
        }
        face_result_free(&r);
    }
    if (!rc && faces == 0)
        rc = vg_err_set(VG_ENOFACE, "calibration images hold no face");
    if (!rc)
        rc = vg_mkdir_p(out_dir);
    for (int i = 0; i < FACE_NET_COUNT && !rc; i++) {
        if (!amax[i])
            continue;
        char path[4200], head[1024];
        snprintf(path, sizeof path, "%s/%s.txt", out_dir, k_calib_names[i]);
        snprintf(head, sizeof head,
                 "int8 calibration of face-api's %s network for Vigil (written by `vigil models "
                 "calibrate`)\nmethod: max |activation| per tensor over the calibration inputs, "
                 "reference backend, f32\ninputs: %zu images, %zu faces\n%s",
                 face_net_name((face_net)i), n, faces, note ? note : "");
        /* the ops kept in f32 (mixed precision) were chosen by measured error, not by the
         * ranges: they carry over */
        nn_calib c = {nt[i], amax[i], m->has_calib[i] ? m->calib[i].f32_ops : NULL};
        rc = nn_calib_save(path, &c, head);
    }
    /* the new ranges take effect for plans compiled from now on */
    for (int i = 0; i < FACE_NET_COUNT && !rc; i++) {
        if (!amax[i])
            continue;
        unsigned char *keep = m->has_calib[i] ? m->calib[i].f32_ops : NULL;
        m->calib[i].f32_ops = NULL;
        nn_calib_deinit(&m->calib[i]);
        m->calib[i] = (nn_calib){nt[i], amax[i], keep};
        m->has_calib[i] = 1;
        amax[i] = NULL;
    }
    face_engine_free(e);
    vg_free(buf);
    for (int i = 0; i < FACE_NET_COUNT; i++)
        vg_free(amax[i]);
    return rc;
}
