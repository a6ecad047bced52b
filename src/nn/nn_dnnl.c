/*
 * oneDNN backend (C API, oneDNN 2.6). A plan turns a graph into a list of primitives created
 * once for one batch size and precision:
 *
 *   - conv: bias and per-channel scale/shift folded into the weights and bias at plan time;
 *     the residual sum and the activation fused as post-ops; src/weights/dst in format `any` so
 *     oneDNN picks its blocked layouts; a reorder is inserted only where a tensor's layout or
 *     type differs from what its consumer chose (network input and outputs, and a few
 *     junctions);
 *   - pool, add (binary), activation (eltwise), mean (reduction), fully connected
 *     (inner product), and the zero-extended add of the recognition net's residualDown
 *     (reorders into sub-memories of a zeroed buffer, the second with a sum post-op);
 *   - weights are reordered once into the layout each primitive chose and kept in an
 *     nn_wcache shared by every plan of the same graph (one copy for all replicas);
 *   - activations live in a few buffers reused by liveness, allocated once per plan, plus one
 *     shared scratchpad (scratchpad mode `user`).
 *
 * Precisions: f32; bf16 (activations and weights bf16, accumulation and bias f32); int8
 * (activations u8 after relu-like ops and s8 otherwise, with per-tensor scales from the
 * calibration's max |value|; weights s8 with per-output-channel scales; the real-valued result
 * of each conv is formed by the output scale, then sum and activation act on real values and a
 * final eltwise scale requantises). Mean and fully connected run in f32 in every precision.
 *
 * Thread-safety: a plan is used by one thread at a time; the wcache is locked.
 */
#include "nn/nn_int.h"

#include "core/core.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            rc = vg_err_set(VG_EINTERNAL, "%s: oneDNN %s failed (status %d)", p->g->name, what,    \
                            (int)st_);                                                             \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ---- shared weight cache ------------------------------------------------------------------- */

typedef struct wc_entry {
    int op, which; /* which: 0 weights, 1 bias; + 2*precision */
    dnnl_memory_desc_t md;
    void *data;
    size_t bytes;
} wc_entry;

struct nn_wcache {
    pthread_mutex_t mu;
    wc_entry *e;
    int n, cap;
    size_t bytes;
};

int nn_wcache_new(nn_wcache **out)
{
    nn_wcache *c = vg_calloc(1, sizeof *c);
    if (!c)
        return vg_err_set(VG_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void nn_wcache_free(nn_wcache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        vg_free(c->e[i].data);
    vg_free(c->e);
    pthread_mutex_destroy(&c->mu);
    vg_free(c);
}

size_t nn_wcache_bytes(const nn_wcache *c)
{
    return c ? c->bytes : 0;
}

/* ---- plan ---------------------------------------------------------------------------------- */

#define MAX_ARGS 6

/* A custom max pool step (nn_pool.c) between oneDNN primitives. */
typedef struct pool_step {
    dnnl_memory_t src, dst; /* the tensors' memories (buffers asked for at each run: the
                               network input's changes per run) */
    nn_elem el;
    nn_shape is, os; /* batch-sized */
    int k, s, pt, pl;
} pool_step;

typedef struct step {
    dnnl_primitive_t prim; /* NULL for a custom step */
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
    void *zero; /* memset before the primitive (add_padded) */
    size_t zero_bytes;
    pool_step *pool; /* custom max pool (owned), when prim is NULL */
} step;

/* How a tensor is stored: layout+type, its quantisation scale (1 for f32/bf16) and its buffer
 * slot. */
typedef struct tensor {
    dnnl_memory_desc_t md;
    float scale;  /* stored value = real * scale */
    float qscale; /* the scale this tensor uses when stored as int8 (from calibration) */
    int nonneg;   /* known >= 0 (after relu/clip, pools of such) */
    int slot;
    dnnl_memory_t mem;
} tensor;

typedef struct slot {
    size_t bytes;
    int free_after; /* op index after which the slot is free again; -1 while planning = free */
    uint8_t *buf;
} slot;

struct nn_dnnl_plan {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    tensor *t;
    int nt;
    step *steps;
    int ns, cap;
    slot *slots;
    int nslots, slot_cap;
    /* temporaries (reordered copies) also take slots; their memories are kept here */
    dnnl_memory_t *tmp_mem;
    int *tmp_slot;
    int ntmp, tmp_cap;
    dnnl_memory_t scratch_mem;
    void *scratch;
    size_t scratch_bytes;
    /* user-side staging: batch-sized nhwc f32 input and outputs */
    float *in_stage;
    float *out_stage[NN_MAX_OUTPUTS];
    dnnl_memory_t in_user, out_user[NN_MAX_OUTPUTS];
    dnnl_memory_t in_mem; /* what the caller's input is bound to per run: in_user or t[0] */
    void *pool_tmp;       /* one reduced row for the custom max pools */
    size_t pool_tmp_bytes;
    int pool_avx512;
    nn_wcache *wc;
    int own_wc;
    size_t weight_bytes; /* bytes this plan added to the cache */
    int n_custom_pool;
    int n_inplace_sums; /* residual sums accumulated in the summand's own buffer */
    int n_impl;
    struct {
        char name[64];
        int count;
    } impl[24];
};

static dnnl_data_type_t f32 = dnnl_f32;

static void md_nhwc(dnnl_memory_desc_t *md, int n, nn_shape s, dnnl_data_type_t dt)
{
    dnnl_dims_t d = {n, s.c, s.h, s.w};
    dnnl_memory_desc_init_by_tag(md, 4, d, dt, dnnl_nhwc);
}

static void md_any(dnnl_memory_desc_t *md, int n, nn_shape s, dnnl_data_type_t dt)
{
    dnnl_dims_t d = {n, s.c, s.h, s.w};
    dnnl_memory_desc_init_by_tag(md, 4, d, dt, dnnl_format_tag_any);
}

static void note_impl(nn_dnnl_plan *d, const_dnnl_primitive_desc_t pd)
{
    const char *s = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
        return;
    for (int i = 0; i < d->n_impl; i++)
        if (strcmp(d->impl[i].name, s) == 0) {
            d->impl[i].count++;
            return;
        }
    if (d->n_impl < (int)VG_ARRAY_LEN(d->impl)) {
        snprintf(d->impl[d->n_impl].name, sizeof d->impl[0].name, "%s", s);
        d->impl[d->n_impl++].count = 1;
    }
}

/* Slot allocator: best-fit among free slots, growing one if none is big enough. */
static int slot_take(nn_dnnl_plan *d, size_t bytes, int until)
{
    int best = -1;
    for (int i = 0; i < d->nslots; i++) {
        if (d->slots[i].free_after >= 0)
            continue;
        if (best < 0 || (d->slots[i].bytes >= bytes && (d->slots[best].bytes < bytes ||
                                                        d->slots[i].bytes < d->slots[best].bytes)))
            best = i;
        else if (d->slots[best].bytes < bytes && d->slots[i].bytes > d->slots[best].bytes)
            best = i;
    }
    if (best < 0) {
        if (d->nslots == d->slot_cap) {
            int cap = d->slot_cap ? 2 * d->slot_cap : 16;
            slot *ns = vg_realloc(d->slots, (size_t)cap * sizeof *ns);
            if (!ns)
                return -1;
            d->slots = ns;
            d->slot_cap = cap;
        }
        best = d->nslots++;
        d->slots[best] = (slot){0, -1, NULL};
    }
    if (d->slots[best].bytes < bytes)
        d->slots[best].bytes = bytes;
    d->slots[best].free_after = until;
    return best;
}

/* Frees slots whose owner's last use was op i. */
static void slots_release(nn_dnnl_plan *d, int i)
{
    for (int k = 0; k < d->nslots; k++)
        if (d->slots[k].free_after == i)
            d->slots[k].free_after = -1;
}

static int push_step(nn_dnnl_plan *d, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args)
{
    if (d->ns == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        step *s = vg_realloc(d->steps, (size_t)cap * sizeof *s);
        if (!s) {
            if (prim)
                dnnl_primitive_destroy(prim);
            return vg_err_set(VG_ENOMEM, "out of memory");
        }
        d->steps = s;
        d->cap = cap;
    }
    step *s = &d->steps[d->ns++];
    memset(s, 0, sizeof *s);
    s->prim = prim;
    s->nargs = nargs;
    if (nargs)
        memcpy(s->args, args, (size_t)nargs * sizeof *args);
    return 0;
}

/* A memory bound later (slot buffers are allocated after planning): created with no handle
 * and given its pointer in bind(). Temporaries are recorded with their slot. */
static int new_tmp(nn_dnnl_plan *d, const dnnl_memory_desc_t *md, int until, dnnl_memory_t *out)
{
    if (d->ntmp == d->tmp_cap) {
        int cap = d->tmp_cap ? 2 * d->tmp_cap : 32;
        dnnl_memory_t *m = vg_realloc(d->tmp_mem, (size_t)cap * sizeof *m);
        int *s = m ? vg_realloc(d->tmp_slot, (size_t)cap * sizeof *s) : NULL;
        if (m)
            d->tmp_mem = m;
        if (!s)
            return vg_err_set(VG_ENOMEM, "out of memory");
        d->tmp_slot = s;
        d->tmp_cap = cap;
    }
    int sl = slot_take(d, dnnl_memory_desc_get_size(md), until);
    if (sl < 0)
        return vg_err_set(VG_ENOMEM, "out of memory");
    if (dnnl_memory_create(out, md, d->eng, DNNL_MEMORY_NONE) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
    d->tmp_mem[d->ntmp] = *out;
    d->tmp_slot[d->ntmp++] = sl;
    return 0;
}

/* Records a memory the plan must destroy: code -1 = wraps a fixed (shared) buffer, <= -2 =
 * bound in bind() to the buffer of tensor (-2 - code). */
static int wrap_mem(nn_dnnl_plan *d, dnnl_memory_t m, int code)
{
    if (d->ntmp == d->tmp_cap) {
        int cap = d->tmp_cap ? 2 * d->tmp_cap : 32;
        dnnl_memory_t *nm = vg_realloc(d->tmp_mem, (size_t)cap * sizeof *nm);
        int *ns = nm ? vg_realloc(d->tmp_slot, (size_t)cap * sizeof *ns) : NULL;
        if (nm)
            d->tmp_mem = nm;
        if (!ns) {
            dnnl_memory_destroy(m);
            return vg_err_set(VG_ENOMEM, "out of memory");
        }
        d->tmp_slot = ns;
        d->tmp_cap = cap;
    }
    d->tmp_mem[d->ntmp] = m;
    d->tmp_slot[d->ntmp++] = code;
    return 0;
}

/* The precision op id runs in: the plan's, except an op the calibration keeps in f32 inside an
 * int8 or bf16 plan (mixed precision: its input converted by a reorder, its output stored f32). */
static nn_precision op_prec(const nn_plan *p, int id)
{
    const nn_calib *c = p->opts.calib;
    if (p->opts.precision != NN_PREC_F32 && c && c->f32_ops && id < c->n && c->f32_ops[id])
        return NN_PREC_F32;
    return p->opts.precision;
}

static float quant_scale(const nn_plan *p, int id, int nonneg)
{
    if (p->opts.precision != NN_PREC_INT8)
        return 1.0f;
    return nn__int8_scale(p->opts.calib->amax[id], nonneg);
}

static int dt_is_int8(dnnl_data_type_t dt)
{
    return dt == dnnl_u8 || dt == dnnl_s8;
}

/* Reorder src (memory with md/scale) into a new temporary of md `want` holding values at scale
 * `want_scale`; the temporary lives until op `until`. Adds the step. */
static int reorder_into(nn_plan *p, dnnl_memory_t src, const dnnl_memory_desc_t *src_md,
                        float src_scale, const dnnl_memory_desc_t *want, float want_scale,
                        dnnl_memory_t dst, int sum)
{
    nn_dnnl_plan *d = p->dnnl;
    int rc = 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    CHECK(dnnl_primitive_attr_create(&attr), "attr");
    float s = want_scale / src_scale;
    if (s != 1.0f)
        CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &s), "reorder scales");
    if (sum) {
        CHECK(dnnl_post_ops_create(&po), "post-ops");
        CHECK(dnnl_post_ops_append_sum(po, 1.0f), "sum");
        CHECK(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
    }
    CHECK(dnnl_reorder_primitive_desc_create(&pd, src_md, d->eng, want, d->eng, attr), "reorder");
    note_impl(d, pd);
    CHECK(dnnl_primitive_create(&prim, pd), "reorder primitive");
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    rc = push_step(d, prim, 2, a);
    prim = NULL;
out:
    if (prim)
        dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* Tensor id as memory of md `want` (scale matching want's type): the tensor itself when it is
 * already stored that way, else a reordered temporary valid for op i. */
static int ensure(nn_plan *p, int id, const dnnl_memory_desc_t *want, int i, dnnl_memory_t *out)
{
    nn_dnnl_plan *d = p->dnnl;
    tensor *t = &d->t[id];
    if (dnnl_memory_desc_equal(&t->md, want)) {
        *out = t->mem;
        return 0;
    }
    float ws = dt_is_int8(want->data_type) ? t->qscale : 1.0f;
    int rc = new_tmp(d, want, i, out);
    if (!rc)
        rc = reorder_into(p, t->mem, &t->md, t->scale, want, ws, *out, 0);
    return rc;
}

/* Creates the memory for tensor id with md (taking a slot until its last use). */
static int define_tensor(nn_plan *p, int id, const dnnl_memory_desc_t *md, float scale,
                         int last_use)
{
    nn_dnnl_plan *d = p->dnnl;
    tensor *t = &d->t[id];
    t->md = *md;
    t->scale = scale;
    t->slot = slot_take(d, dnnl_memory_desc_get_size(md), last_use);
    if (t->slot < 0)
        return vg_err_set(VG_ENOMEM, "out of memory");
    if (dnnl_memory_create(&t->mem, md, d->eng, DNNL_MEMORY_NONE) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
    return 0;
}

/* Like define_tensor, but tensor id takes over a slot (the buffer of a tensor whose last use
 * is op id), `sl`, which then lives until last_use. */
static int define_tensor_in_slot(nn_plan *p, int id, const dnnl_memory_desc_t *md, float scale,
                                 int last_use, int sl)
{
    nn_dnnl_plan *d = p->dnnl;
    tensor *t = &d->t[id];
    t->md = *md;
    t->scale = scale;
    t->slot = sl;
    if (d->slots[sl].bytes < dnnl_memory_desc_get_size(md))
        d->slots[sl].bytes = dnnl_memory_desc_get_size(md);
    d->slots[sl].free_after = last_use;
    if (dnnl_memory_create(&t->mem, md, d->eng, DNNL_MEMORY_NONE) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
    return 0;
}

/* Weights reordered into `want` through the cache: `make` fills a plain buffer of md `plain`. */
typedef struct wsrc {
    const dnnl_memory_desc_t *plain;
    void *data; /* plain buffer, owned by the caller */
} wsrc;

static int cached_weights(nn_plan *p, int op, int which, const dnnl_memory_desc_t *want,
                          const wsrc *src, void **out)
{
    nn_dnnl_plan *d = p->dnnl;
    nn_wcache *c = d->wc;
    int key = which + 2 * (int)op_prec(p, op);
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++)
        if (c->e[i].op == op && c->e[i].which == key && dnnl_memory_desc_equal(&c->e[i].md, want)) {
            *out = c->e[i].data;
            goto done;
        }
    size_t bytes = dnnl_memory_desc_get_size(want);
    void *buf = vg_aligned_alloc(64, bytes ? bytes : 64);
    if (!buf) {
        rc = vg_err_set(VG_ENOMEM, "out of memory for weights");
        goto done;
    }
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    if (dnnl_memory_create(&ms, src->plain, d->eng, src->data) != dnnl_success ||
        dnnl_memory_create(&md, want, d->eng, buf) != dnnl_success ||
        dnnl_reorder_primitive_desc_create(&pd, src->plain, d->eng, want, d->eng, NULL) !=
            dnnl_success ||
        dnnl_primitive_create(&prim, pd) != dnnl_success) {
        rc = vg_err_set(VG_EINTERNAL, "%s: weight reorder for op %d failed", p->g->name, op);
    } else {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        if (dnnl_primitive_execute(prim, d->stream, 2, a) != dnnl_success ||
            dnnl_stream_wait(d->stream) != dnnl_success)
            rc = vg_err_set(VG_EINTERNAL, "%s: weight reorder for op %d failed", p->g->name, op);
    }
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md);
    if (!rc && c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        wc_entry *ne = vg_realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne)
            rc = vg_err_set(VG_ENOMEM, "out of memory");
        else
            c->e = ne, c->cap = cap;
    }
    if (rc) {
        vg_free(buf);
        goto done;
    }
    c->e[c->n++] = (wc_entry){op, key, *want, buf, bytes};
    c->bytes += bytes;
    d->weight_bytes += bytes;
    *out = buf;
done:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Post-ops for a conv: [sum] [eltwise act] [requantising scale]. real_scale: the scale of the
 * dst type (1 for f32/bf16, the tensor's int8 scale otherwise). */
static int conv_post_ops(nn_plan *p, dnnl_post_ops_t po, int has_sum, float sum_scale, nn_act act,
                         float dst_scale)
{
    int rc = 0;
    if (has_sum)
        CHECK(dnnl_post_ops_append_sum(po, sum_scale), "sum post-op");
    switch (act.kind) {
    case NN_ACT_RELU:
        CHECK(dnnl_post_ops_append_eltwise(po, dst_scale, dnnl_eltwise_relu, 0.0f, 0.0f), "relu");
        break;
    case NN_ACT_LEAKY:
        CHECK(dnnl_post_ops_append_eltwise(po, dst_scale, dnnl_eltwise_relu, act.param, 0.0f),
              "leaky relu");
        break;
    case NN_ACT_CLIP:
        CHECK(dnnl_post_ops_append_eltwise(po, dst_scale, dnnl_eltwise_clip, 0.0f, act.param),
              "clip");
        break;
    case NN_ACT_NONE:
        if (dst_scale != 1.0f)
            CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, dst_scale, 0.0f),
                  "requantise");
        break;
    }
out:
    return rc;
}

static int is_output(const nn_graph *g, int id)
{
    for (int k = 0; k < g->n_out; k++)
        if (g->outputs[k] == id)
            return 1;
    return 0;
}

/* Activation storage type for tensor id in this precision. */
static dnnl_data_type_t act_dt(const nn_plan *p, int id, int nonneg)
{
    if (is_output(p->g, id))
        return dnnl_f32;
    switch (op_prec(p, id)) {
    case NN_PREC_BF16:
        return dnnl_bf16;
    case NN_PREC_INT8:
        return nonneg ? dnnl_u8 : dnnl_s8;
    default:
        return dnnl_f32;
    }
}

static int act_nonneg(nn_act a)
{
    return a.kind == NN_ACT_RELU || a.kind == NN_ACT_CLIP;
}

static int plan_conv(nn_plan *p, int i, const int *last)
{
    nn_dnnl_plan *d = p->dnnl;
    const nn_op *op = &p->g->ops[i];
    const nn_conv *c = &op->conv;
    int B = p->opts.batch, rc = 0;
    nn_shape is = p->g->ops[op->in0].shape, os = op->shape;
    int cin = is.c, G = c->depthwise ? cin : 1;
    tensor *src = &d->t[op->in0];
    int nonneg = act_nonneg(op->act);
    dnnl_data_type_t ddt = act_dt(p, i, nonneg);
    nn_precision prec = op_prec(p, i);
    dnnl_data_type_t sdt = prec == NN_PREC_BF16   ? dnnl_bf16
                           : prec == NN_PREC_INT8 ? (src->nonneg ? dnnl_u8 : dnnl_s8)
                                                  : dnnl_f32;
    dnnl_data_type_t wdt = prec == NN_PREC_BF16 ? dnnl_bf16 : prec == NN_PREC_INT8 ? dnnl_s8 : f32;
    float s_src = prec == NN_PREC_INT8 ? src->qscale : 1.0f;
    float s_dst = ddt == dnnl_f32 || ddt == dnnl_bf16 ? 1.0f : d->t[i].qscale;

    /* Fold bias and per-channel scale into f32 weights (plain goihw / oihw) and bias. */
    size_t per_oc = (size_t)c->kh * c->kw * (c->depthwise ? 1 : cin);
    size_t nw = per_oc * c->cout;
    float *wf = vg_malloc(nw * sizeof(float));
    float *bf = vg_malloc((size_t)c->cout * sizeof(float));
    float *wsc = vg_malloc((size_t)c->cout * sizeof(float)); /* int8 weight scales */
    int8_t *wq = prec == NN_PREC_INT8 ? vg_malloc(nw) : NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    float *oscale = NULL;
    if (!wf || !bf || !wsc || (prec == NN_PREC_INT8 && !wq)) {
        rc = vg_err_set(VG_ENOMEM, "out of memory");
        goto out;
    }
    for (int o = 0; o < c->cout; o++) {
        float sc = c->scale ? c->scale[o] : 1.0f;
        float b = c->bias ? c->bias[o] : 0.0f;
        bf[o] = c->scale ? b * sc + (c->shift ? c->shift[o] : 0.0f) : b;
        float amax = 0;
        for (int ky = 0; ky < c->kh; ky++)
            for (int kx = 0; kx < c->kw; kx++)
                for (int ci = 0; ci < (c->depthwise ? 1 : cin); ci++) {
                    /* source HWIO [ky][kx][ci][o] (depthwise [ky][kx][o][0]); dest [o][ci][ky][kx]
                     */
                    float v =
                        c->depthwise
                            ? c->weights[((size_t)ky * c->kw + kx) * cin + o]
                            : c->weights[(((size_t)ky * c->kw + kx) * cin + ci) * c->cout + o];
                    v *= sc;
                    wf[(size_t)o * per_oc + ((size_t)ci * c->kh + ky) * c->kw + kx] = v;
                    amax = fmaxf(amax, fabsf(v));
                }
        wsc[o] = amax > 0 ? 127.0f / amax : 1.0f;
    }
    dnnl_memory_desc_t plain_w;
    if (c->depthwise) {
        dnnl_dims_t wd = {G, 1, 1, c->kh, c->kw};
        dnnl_memory_desc_init_by_tag(&plain_w, 5, wd, prec == NN_PREC_INT8 ? dnnl_s8 : f32,
                                     dnnl_goihw);
    } else {
        dnnl_dims_t wd = {c->cout, cin, c->kh, c->kw};
        dnnl_memory_desc_init_by_tag(&plain_w, 4, wd, prec == NN_PREC_INT8 ? dnnl_s8 : f32,
                                     dnnl_oihw);
    }
    if (prec == NN_PREC_INT8) {
        for (int o = 0; o < c->cout; o++)
            for (size_t k = 0; k < per_oc; k++) {
                float q = nearbyintf(wf[(size_t)o * per_oc + k] * wsc[o]);
                wq[(size_t)o * per_oc + k] = (int8_t)fmaxf(-127.0f, fminf(127.0f, q));
            }
        for (int o = 0; o < c->cout; o++)
            bf[o] *= s_src * wsc[o];
    }

    dnnl_memory_desc_t src_md, w_md, b_md, dst_md;
    md_any(&src_md, B, is, sdt);
    if (c->depthwise) {
        dnnl_dims_t wd = {G, 1, 1, c->kh, c->kw};
        dnnl_memory_desc_init_by_tag(&w_md, 5, wd, wdt, dnnl_format_tag_any);
    } else {
        dnnl_dims_t wd = {c->cout, cin, c->kh, c->kw};
        dnnl_memory_desc_init_by_tag(&w_md, 4, wd, wdt, dnnl_format_tag_any);
    }
    dnnl_dims_t bd = {c->cout};
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, f32, dnnl_x);
    md_any(&dst_md, B, os, ddt);
    dnnl_dims_t strides = {c->stride, c->stride}, pl = {op->pt, op->pl}, pr = {op->pb, op->pr};
    dnnl_convolution_desc_t cd;
    CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                             &src_md, &w_md, &b_md, &dst_md, strides, pl, pr),
          "convolution desc");
    CHECK(dnnl_primitive_attr_create(&attr), "attr");
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad");
    if (prec == NN_PREC_INT8) {
        /* conv(src_q, w_q) + bias_q, times s_dst/(s_src*ws[o]), is the value at dst's scale */
        oscale = vg_malloc((size_t)c->cout * sizeof(float));
        if (!oscale) {
            rc = vg_err_set(VG_ENOMEM, "out of memory");
            goto out;
        }
        for (int o = 0; o < c->cout; o++)
            oscale[o] = s_dst / (s_src * wsc[o]);
        CHECK(dnnl_primitive_attr_set_output_scales(attr, c->cout, 2, oscale), "output scales");
    }
    CHECK(dnnl_post_ops_create(&po), "post-ops");
    /* The output scale lands the result directly at dst's scale; the summand is copied into
     * dst at that scale first, and relu/leaky are scale-invariant (clip's bound is scaled). */
    nn_act act = op->act;
    if (act.kind == NN_ACT_CLIP)
        act.param *= s_dst;
    /* int8: the summand keeps its own scale and type in dst's buffer (a copy at dst's scale
     * could saturate where the sum is smaller than the summand), and the sum post-op rescales
     * it: dst = conv + (s_dst / s_sum) * summand. */
    float sum_scale = 1.0f;
    dnnl_data_type_t sum_dt = dnnl_data_type_undef;
    if (op->in1 >= 0 && prec == NN_PREC_INT8 && dt_is_int8(ddt)) {
        tensor *sm = &d->t[op->in1];
        sum_dt = sm->nonneg ? dnnl_u8 : dnnl_s8;
        sum_scale = s_dst / sm->qscale;
    }
    if (op->in1 >= 0 && sum_dt != dnnl_data_type_undef) {
        CHECK(dnnl_post_ops_append_sum_v2(po, sum_scale, sum_dt), "sum post-op");
        if ((rc = conv_post_ops(p, po, 0, 1.0f, act, 1.0f)))
            goto out;
    } else if ((rc = conv_post_ops(p, po, op->in1 >= 0, 1.0f, act, 1.0f))) {
        goto out;
    }
    CHECK(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
    CHECK(dnnl_primitive_desc_create(&pd, &cd, attr, d->eng, NULL), "convolution");
    note_impl(d, pd);
    const dnnl_memory_desc_t *q_src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *q_w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *q_dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    void *wdata, *bdata;
    wsrc ws = {&plain_w, prec == NN_PREC_INT8 ? (void *)wq : (void *)wf};
    if ((rc = cached_weights(p, i, 0, q_w, &ws, &wdata)))
        goto out;
    wsrc bs = {&b_md, bf};
    if ((rc = cached_weights(p, i, 1 + 4 * (prec == NN_PREC_INT8 ? 1 : 0), &b_md, &bs, &bdata)))
        goto out;
    dnnl_memory_t msrc, mw, mb;
    if ((rc = ensure(p, op->in0, q_src, i, &msrc)))
        goto out;
    /* The residual summand is what dst must hold before the sum post-op. When this conv is its
     * last use and it is stored exactly as dst (layout, and type or int8 scale), dst takes its
     * buffer over: no copy (one per residual block otherwise). Never the network input (the
     * caller's buffer) nor the conv's own source. */
    int inplace = 0;
    if (op->in1 > 0 && op->in1 != op->in0 && last[op->in1] == i) {
        tensor *sm = &d->t[op->in1];
        dnnl_memory_desc_t want = *q_dst;
        if (sum_dt != dnnl_data_type_undef)
            want.data_type = sum_dt;
        inplace = dnnl_memory_desc_equal(&sm->md, &want) &&
                  (sum_dt != dnnl_data_type_undef ? sm->scale == sm->qscale : sm->scale == s_dst);
    }
    if (inplace)
        rc = define_tensor_in_slot(p, i, q_dst, s_dst, last[i], d->t[op->in1].slot);
    else
        rc = define_tensor(p, i, q_dst, s_dst, last[i]);
    if (rc)
        goto out;
    d->t[i].nonneg = nonneg;
    if (inplace) {
        d->n_inplace_sums++;
    } else if (op->in1 >= 0 && sum_dt != dnnl_data_type_undef) {
        tensor *sm = &d->t[op->in1];
        dnnl_memory_desc_t pre = *q_dst;
        pre.data_type = sum_dt;
        dnnl_memory_t view;
        CHECK(dnnl_memory_create(&view, &pre, d->eng, DNNL_MEMORY_NONE), "memory");
        if ((rc = wrap_mem(d, view, -2 - i)))
            goto out;
        if ((rc = reorder_into(p, sm->mem, &sm->md, sm->scale, &pre, sm->qscale, view, 0)))
            goto out;
    } else if (op->in1 >= 0) {
        tensor *sm = &d->t[op->in1];
        if ((rc = reorder_into(p, sm->mem, &sm->md, sm->scale, q_dst, s_dst, d->t[i].mem, 0)))
            goto out;
    }
    CHECK(dnnl_memory_create(&mw, q_w, d->eng, wdata), "weights memory");
    if ((rc = wrap_mem(d, mw, -1)))
        goto out;
    CHECK(dnnl_memory_create(&mb, &b_md, d->eng, bdata), "bias memory");
    if ((rc = wrap_mem(d, mb, -1)))
        goto out;
    CHECK(dnnl_primitive_create(&prim, pd), "convolution primitive");
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, msrc},
                            {DNNL_ARG_WEIGHTS, mw},
                            {DNNL_ARG_BIAS, mb},
                            {DNNL_ARG_DST, d->t[i].mem},
                            {DNNL_ARG_SCRATCHPAD, d->scratch_mem}};
    size_t sp =
        dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    d->scratch_bytes = VG_MAX(d->scratch_bytes, sp);
    rc = push_step(d, prim, 5, a);
    prim = NULL;
out:
    if (prim)
        dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    vg_free(wf);
    vg_free(bf);
    vg_free(wsc);
    vg_free(wq);
    vg_free(oscale);
    return rc;
}

/* Generic: a primitive from an op desc with one src (already ensured) and one dst tensor. */
static int simple_prim(nn_plan *p, int i, const void *desc, dnnl_primitive_attr_t attr, int nargs,
                       dnnl_exec_arg_t *args)
{
    nn_dnnl_plan *d = p->dnnl;
    int rc = 0;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    CHECK(dnnl_primitive_desc_create(&pd, desc, attr, d->eng, NULL), "primitive desc");
    note_impl(d, pd);
    CHECK(dnnl_primitive_create(&prim, pd), "primitive");
    size_t sp =
        dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    d->scratch_bytes = VG_MAX(d->scratch_bytes, sp);
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, d->scratch_mem};
    rc = push_step(d, prim, nargs, args);
    prim = NULL;
out:
    VG_UNUSED(i);
    if (prim)
        dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Max pool of a dense nhwc tensor by nn__maxpool_nhwc, into a dense nhwc tensor of the same
 * type and scale. */
static int plan_custom_pool(nn_plan *p, int i, const int *last)
{
    nn_dnnl_plan *d = p->dnnl;
    const nn_op *op = &p->g->ops[i];
    tensor *x = &d->t[op->in0];
    int B = p->opts.batch, rc;
    nn_elem el;
    switch (x->md.data_type) {
    case dnnl_f32:
        el = NN_EL_F32;
        break;
    case dnnl_bf16:
        el = NN_EL_BF16;
        break;
    case dnnl_s8:
        el = NN_EL_S8;
        break;
    case dnnl_u8:
        el = NN_EL_U8;
        break;
    default:
        return vg_err_set(VG_EINTERNAL, "%s: op %d: no max pool for this type", p->g->name, i);
    }
    dnnl_memory_desc_t dst;
    md_nhwc(&dst, B, op->shape, x->md.data_type);
    if ((rc = define_tensor(p, i, &dst, x->scale, last[i])))
        return rc;
    d->t[i].nonneg = x->nonneg;
    d->t[i].qscale = x->qscale; /* the maximum keeps the input's scale */
    pool_step *ps = vg_calloc(1, sizeof *ps);
    if (!ps)
        return vg_err_set(VG_ENOMEM, "out of memory");
    ps->src = x->mem;
    ps->dst = d->t[i].mem;
    ps->el = el;
    ps->is = p->g->ops[op->in0].shape;
    ps->is.n = B;
    ps->os = op->shape;
    ps->os.n = B;
    ps->k = op->k;
    ps->s = op->stride;
    ps->pt = op->pt;
    ps->pl = op->pl;
    size_t row = (size_t)ps->is.w * ps->is.c * (size_t)nn__elem_size(el);
    d->pool_tmp_bytes = VG_MAX(d->pool_tmp_bytes, row);
    if ((rc = push_step(d, NULL, 0, NULL))) {
        vg_free(ps);
        return rc;
    }
    d->steps[d->ns - 1].pool = ps;
    d->n_custom_pool++;
    return 0;
}

static int user_attr(dnnl_primitive_attr_t *attr)
{
    if (dnnl_primitive_attr_create(attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "oneDNN attr failed");
    return 0;
}

static int plan_op(nn_plan *p, int i, const int *last)
{
    nn_dnnl_plan *d = p->dnnl;
    const nn_op *op = &p->g->ops[i];
    int B = p->opts.batch, rc = 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    tensor *x = op->in0 >= 0 ? &d->t[op->in0] : NULL;
    switch (op->kind) {
    case NN_OP_INPUT: {
        /* the network input in the type the first consumer wants is decided lazily: store it
         * as the precision's activation type in nhwc; convs reorder if they prefer another */
        dnnl_memory_desc_t md;
        int nonneg = 0;
        md_nhwc(&md, B, op->shape, act_dt(p, i, nonneg));
        if ((rc = define_tensor(p, i, &md, dt_is_int8(md.data_type) ? d->t[i].qscale : 1.0f,
                                last[i])))
            return rc;
        break;
    }
    case NN_OP_CONV:
        return plan_conv(p, i, last);
    case NN_OP_POOL: {
        dnnl_memory_desc_t dst;
        if (op->pool == NN_POOL_MAX) {
            /* dense nhwc input (what the convs before every max pool choose): the custom
             * kernel, several times faster than oneDNN's at 16-64 channels (nn_pool.c) */
            dnnl_memory_desc_t dense;
            nn_shape is = p->g->ops[op->in0].shape;
            md_nhwc(&dense, B, is, x->md.data_type);
            if (dnnl_memory_desc_equal(&dense, &x->md)) {
                rc = plan_custom_pool(p, i, last);
                break;
            }
        }
        md_any(&dst, B, op->shape, x->md.data_type);
        dnnl_pooling_v2_desc_t pdsc;
        dnnl_dims_t st = {op->stride, op->stride}, k = {op->k, op->k}, dil = {0, 0},
                    pl = {op->pt, op->pl}, pr = {op->pb, op->pr};
        CHECK(dnnl_pooling_v2_forward_desc_init(
                  &pdsc, dnnl_forward_inference,
                  op->pool == NN_POOL_MAX ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding,
                  &x->md, &dst, st, k, dil, pl, pr),
              "pooling desc");
        if ((rc = user_attr(&attr)))
            goto out;
        dnnl_primitive_desc_t pd = NULL;
        CHECK(dnnl_primitive_desc_create(&pd, &pdsc, attr, d->eng, NULL), "pooling");
        dnnl_memory_desc_t q = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        dnnl_primitive_desc_destroy(pd);
        if ((rc = define_tensor(p, i, &q, x->scale, last[i])))
            goto out;
        d->t[i].nonneg = x->nonneg;
        d->t[i].qscale = x->qscale; /* pooling keeps the input's scale */
        CHECK(dnnl_pooling_v2_forward_desc_init(
                  &pdsc, dnnl_forward_inference,
                  op->pool == NN_POOL_MAX ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding,
                  &x->md, &q, st, k, dil, pl, pr),
              "pooling desc");
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, x->mem}, {DNNL_ARG_DST, d->t[i].mem}};
        rc = simple_prim(p, i, &pdsc, attr, 2, a);
        break;
    }
    case NN_OP_ADD:
    case NN_OP_ACT: {
        /* binary add (a + b) or eltwise on x, in x's layout; the result type is x's */
        dnnl_memory_desc_t dst = x->md;
        int nonneg = act_nonneg(op->act) || (op->kind == NN_OP_ACT && x->nonneg);
        if (op->kind == NN_OP_ACT && dt_is_int8(x->md.data_type)) {
            /* oneDNN's int8 eltwise gave wrong results here (2.6); relu is exactly a
             * saturating reorder to u8, anything else runs in f32 */
            dst.data_type = op->act.kind == NN_ACT_RELU ? dnnl_u8 : dnnl_f32;
            float sc = dst.data_type == dnnl_u8 ? x->scale : 1.0f;
            if ((rc = define_tensor(p, i, &dst, sc, last[i])))
                goto out;
            d->t[i].nonneg = nonneg;
            d->t[i].qscale = x->qscale;
            if ((rc = reorder_into(p, x->mem, &x->md, x->scale, &dst, sc, d->t[i].mem, 0)))
                goto out;
            if (dst.data_type == dnnl_u8)
                break;
            x = &d->t[i]; /* eltwise in place on the f32 copy */
            if ((rc = user_attr(&attr)))
                goto out;
            dnnl_eltwise_desc_t ed;
            dnnl_alg_kind_t alg =
                op->act.kind == NN_ACT_CLIP ? dnnl_eltwise_clip : dnnl_eltwise_relu;
            CHECK(
                dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &dst,
                                               op->act.kind == NN_ACT_LEAKY ? op->act.param : 0.0f,
                                               op->act.kind == NN_ACT_CLIP ? op->act.param : 0.0f),
                "eltwise desc");
            dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, x->mem}, {DNNL_ARG_DST, x->mem}};
            rc = simple_prim(p, i, &ed, attr, 2, a);
            break;
        }
        if ((rc = define_tensor(p, i, &dst, x->scale, last[i])))
            goto out;
        d->t[i].nonneg = nonneg;
        d->t[i].qscale = x->qscale;
        if ((rc = user_attr(&attr)))
            goto out;
        if (op->kind == NN_OP_ACT) {
            dnnl_alg_kind_t alg =
                op->act.kind == NN_ACT_CLIP ? dnnl_eltwise_clip : dnnl_eltwise_relu;
            float alpha = op->act.kind == NN_ACT_LEAKY ? op->act.param : 0.0f;
            float beta = op->act.kind == NN_ACT_CLIP ? op->act.param * x->scale : 0.0f;
            if (op->act.kind == NN_ACT_NONE)
                alg = dnnl_eltwise_linear, alpha = 1.0f;
            dnnl_eltwise_desc_t ed;
            CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &x->md, alpha,
                                                 beta),
                  "eltwise desc");
            dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, x->mem}, {DNNL_ARG_DST, d->t[i].mem}};
            rc = simple_prim(p, i, &ed, attr, 2, a);
            break;
        }
        dnnl_memory_t mb;
        if ((rc = ensure(p, op->in1, &x->md, i, &mb)))
            goto out;
        /* in int8 the second addend is at its own scale: bring it to x's */
        float s1 = dt_is_int8(x->md.data_type) ? x->scale / d->t[op->in1].qscale : 1.0f;
        if (s1 != 1.0f)
            CHECK(dnnl_primitive_attr_set_scales(attr, DNNL_ARG_SRC_1, 1, 0, &s1), "scales");
        nn_act act = op->act;
        if (act.kind == NN_ACT_CLIP)
            act.param *= x->scale; /* values are at x's scale */
        CHECK(dnnl_post_ops_create(&po), "post-ops");
        if ((rc = conv_post_ops(p, po, 0, 1.0f, act, 1.0f)))
            goto out;
        CHECK(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
        dnnl_binary_desc_t bd;
        CHECK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &x->md, &x->md, &dst), "binary desc");
        dnnl_exec_arg_t a[4] = {
            {DNNL_ARG_SRC_0, x->mem}, {DNNL_ARG_SRC_1, mb}, {DNNL_ARG_DST, d->t[i].mem}};
        rc = simple_prim(p, i, &bd, attr, 3, a);
        break;
    }
    case NN_OP_ADD_PADDED: {
        /* f32 nhwc: zero it, copy a into its corner, add b into its corner, relu in place */
        dnnl_memory_desc_t dst;
        md_nhwc(&dst, B, op->shape, dnnl_f32);
        if ((rc = define_tensor(p, i, &dst, 1.0f, last[i])))
            goto out;
        d->t[i].nonneg = act_nonneg(op->act);
        int zero_step = d->ns;
        for (int k = 0; k < 2; k++) {
            tensor *s = &d->t[k ? op->in1 : op->in0];
            nn_shape ss = p->g->ops[k ? op->in1 : op->in0].shape;
            dnnl_dims_t sd = {B, ss.c, ss.h, ss.w}, off = {0, 0, 0, 0};
            dnnl_memory_desc_t sub;
            CHECK(dnnl_memory_desc_init_submemory(&sub, &dst, sd, off), "submemory");
            dnnl_memory_t view;
            CHECK(dnnl_memory_create(&view, &sub, d->eng, DNNL_MEMORY_NONE), "memory");
            if ((rc = wrap_mem(d, view, -2 - i))) /* a view of tensor i's buffer */
                goto out;
            if ((rc = reorder_into(p, s->mem, &s->md, s->scale, &sub, 1.0f, view, k)))
                goto out;
        }
        d->steps[zero_step].zero = (void *)(intptr_t)(i + 1); /* resolved in bind() */
        d->steps[zero_step].zero_bytes = dnnl_memory_desc_get_size(&dst);
        if (op->act.kind != NN_ACT_NONE) {
            if ((rc = user_attr(&attr)))
                goto out;
            dnnl_eltwise_desc_t ed;
            dnnl_alg_kind_t alg =
                op->act.kind == NN_ACT_CLIP ? dnnl_eltwise_clip : dnnl_eltwise_relu;
            CHECK(
                dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &dst,
                                               op->act.kind == NN_ACT_LEAKY ? op->act.param : 0.0f,
                                               op->act.kind == NN_ACT_CLIP ? op->act.param : 0.0f),
                "eltwise desc");
            dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, d->t[i].mem}, {DNNL_ARG_DST, d->t[i].mem}};
            rc = simple_prim(p, i, &ed, attr, 2, a);
        }
        break;
    }
    case NN_OP_MEAN: {
        nn_shape is = p->g->ops[op->in0].shape;
        dnnl_memory_desc_t src, dst;
        md_nhwc(&src, B, is, dnnl_f32);
        md_nhwc(&dst, B, op->shape, dnnl_f32);
        dnnl_memory_t ms;
        if ((rc = ensure(p, op->in0, &src, i, &ms)))
            goto out;
        if ((rc = define_tensor(p, i, &dst, 1.0f, last[i])))
            goto out;
        d->t[i].nonneg = x->nonneg;
        if ((rc = user_attr(&attr)))
            goto out;
        dnnl_reduction_desc_t rd;
        CHECK(dnnl_reduction_desc_init(&rd, dnnl_reduction_mean, &src, &dst, 0.0f, 0.0f),
              "reduction desc");
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, d->t[i].mem}};
        rc = simple_prim(p, i, &rd, attr, 2, a);
        break;
    }
    case NN_OP_FC: {
        nn_shape is = p->g->ops[op->in0].shape;
        int cin = is.c, cout = op->shape.c;
        dnnl_memory_desc_t src, w_plain, w_any, b_md, dst;
        md_nhwc(&src, B, is, dnnl_f32);
        dnnl_dims_t wd = {cout, cin, 1, 1}, bd = {cout};
        dnnl_memory_desc_init_by_tag(&w_plain, 4, wd, f32, dnnl_oihw);
        dnnl_memory_desc_init_by_tag(&w_any, 4, wd, f32, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&b_md, 1, bd, f32, dnnl_x);
        md_nhwc(&dst, B, op->shape, dnnl_f32);
        dnnl_dims_t dd = {B, cout};
        dnnl_memory_desc_t dst2;
        dnnl_memory_desc_init_by_tag(&dst2, 2, dd, f32, dnnl_nc);
        dnnl_memory_t ms, mw, mb;
        if ((rc = ensure(p, op->in0, &src, i, &ms)))
            goto out;
        /* the output (n,1,1,cout) nhwc is the inner product's (n,cout) nc, byte for byte */
        if ((rc = define_tensor(p, i, &dst, 1.0f, last[i])))
            goto out;
        if ((rc = user_attr(&attr)))
            goto out;
        dnnl_inner_product_desc_t ipd;
        CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src, &w_any,
                                                   &b_md, &dst2),
              "inner product desc");
        dnnl_primitive_desc_t pd = NULL;
        CHECK(dnnl_primitive_desc_create(&pd, &ipd, attr, d->eng, NULL), "inner product");
        dnnl_memory_desc_t qw = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_primitive_desc_destroy(pd);
        float *wt = vg_malloc((size_t)cin * cout * sizeof(float));
        float *bz = vg_calloc((size_t)cout, sizeof(float));
        if (!wt || !bz) {
            vg_free(wt);
            vg_free(bz);
            rc = vg_err_set(VG_ENOMEM, "out of memory");
            goto out;
        }
        for (int k = 0; k < cin; k++)
            for (int j = 0; j < cout; j++)
                wt[(size_t)j * cin + k] = op->fc_w[(size_t)k * cout + j];
        if (op->fc_b)
            memcpy(bz, op->fc_b, (size_t)cout * sizeof(float));
        void *wdata, *bdata;
        wsrc ws = {&w_plain, wt}, bs = {&b_md, bz};
        rc = cached_weights(p, i, 0, &qw, &ws, &wdata);
        if (!rc)
            rc = cached_weights(p, i, 1, &b_md, &bs, &bdata);
        vg_free(wt);
        vg_free(bz);
        if (rc)
            goto out;
        CHECK(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src, &qw, &b_md,
                                                   &dst2),
              "inner product desc");
        CHECK(dnnl_memory_create(&mw, &qw, d->eng, wdata), "memory");
        if ((rc = wrap_mem(d, mw, -1)))
            goto out;
        CHECK(dnnl_memory_create(&mb, &b_md, d->eng, bdata), "memory");
        if ((rc = wrap_mem(d, mb, -1)))
            goto out;
        dnnl_memory_t mo;
        CHECK(dnnl_memory_create(&mo, &dst2, d->eng, DNNL_MEMORY_NONE), "memory");
        if ((rc = wrap_mem(d, mo, -2 - i))) /* (n,cout) view of tensor i */
            goto out;
        dnnl_exec_arg_t a[5] = {
            {DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, mo}};
        rc = simple_prim(p, i, &ipd, attr, 4, a);
        break;
    }
    }
out:
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* Allocates the slot buffers and points every memory at its buffer. */
static int bind(nn_plan *p)
{
    nn_dnnl_plan *d = p->dnnl;
    for (int k = 0; k < d->nslots; k++) {
        d->slots[k].buf = vg_aligned_alloc(64, d->slots[k].bytes ? d->slots[k].bytes : 64);
        if (!d->slots[k].buf)
            return vg_err_set(VG_ENOMEM, "%s: cannot allocate %zu bytes of activations", p->g->name,
                              d->slots[k].bytes);
    }
    for (int i = 0; i < d->nt; i++)
        if (d->t[i].mem)
            dnnl_memory_set_data_handle(d->t[i].mem, d->slots[d->t[i].slot].buf);
    for (int k = 0; k < d->ntmp; k++) {
        int s = d->tmp_slot[k];
        if (s >= 0)
            dnnl_memory_set_data_handle(d->tmp_mem[k], d->slots[s].buf);
        else if (s <= -2)
            dnnl_memory_set_data_handle(d->tmp_mem[k], d->slots[d->t[-2 - s].slot].buf);
    }
    for (int k = 0; k < d->ns; k++)
        if (d->steps[k].zero) {
            int id = (int)(intptr_t)d->steps[k].zero - 1;
            d->steps[k].zero = d->slots[d->t[id].slot].buf;
        }
    if (d->pool_tmp_bytes) {
        d->pool_tmp = vg_aligned_alloc(64, d->pool_tmp_bytes);
        if (!d->pool_tmp)
            return vg_err_set(VG_ENOMEM, "out of memory for pooling");
        d->pool_avx512 = nn__maxpool_avx512_ok();
    }
    if (d->scratch_bytes) {
        d->scratch = vg_aligned_alloc(64, d->scratch_bytes);
        if (!d->scratch)
            return vg_err_set(VG_ENOMEM, "out of memory for scratchpad");
    }
    dnnl_memory_desc_t smd;
    dnnl_dims_t sd = {(dnnl_dim_t)(d->scratch_bytes ? d->scratch_bytes : 1)};
    dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_x);
    dnnl_memory_set_data_handle(d->scratch_mem, d->scratch);
    return 0;
}

int nn__dnnl_plan_new(nn_plan *p)
{
    const nn_graph *g = p->g;
    int B = p->opts.batch, rc = 0;
    nn_dnnl_plan *d = vg_calloc(1, sizeof *d);
    if (!d)
        return vg_err_set(VG_ENOMEM, "out of memory");
    p->dnnl = d;
    int *last = NULL;
    if (dnnl_engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "%s: oneDNN engine unavailable", g->name);
    if (p->opts.wcache) {
        d->wc = p->opts.wcache;
    } else {
        if ((rc = nn_wcache_new(&d->wc)))
            return rc;
        d->own_wc = 1;
    }
    d->nt = g->n;
    d->t = vg_calloc((size_t)g->n, sizeof *d->t);
    last = nn__graph_last_use(g);
    if (!d->t || !last) {
        vg_free(last);
        return vg_err_set(VG_ENOMEM, "out of memory");
    }
    /* the scratchpad memory object exists from the start so steps can reference it */
    {
        dnnl_memory_desc_t smd;
        dnnl_dims_t sd = {1};
        dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_x);
        if (dnnl_memory_create(&d->scratch_mem, &smd, d->eng, DNNL_MEMORY_NONE) != dnnl_success) {
            vg_free(last);
            return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
        }
    }
    /* int8 scales from the calibration (max |x| per tensor) and sign knowledge */
    for (int i = 0; i < g->n; i++) {
        const nn_op *op = &g->ops[i];
        int nonneg = 0;
        if (op->kind == NN_OP_CONV || op->kind == NN_OP_ADD || op->kind == NN_OP_ADD_PADDED)
            nonneg = act_nonneg(op->act);
        else if (op->kind == NN_OP_POOL || op->kind == NN_OP_MEAN)
            nonneg = d->t[op->in0].nonneg;
        else if (op->kind == NN_OP_ACT)
            nonneg = act_nonneg(op->act) || d->t[op->in0].nonneg;
        d->t[i].nonneg = nonneg;
        d->t[i].qscale = quant_scale(p, i, nonneg);
    }
    for (int i = 0; i < g->n && !rc; i++) {
        rc = plan_op(p, i, last);
        slots_release(d, i);
    }
    vg_free(last);
    if (rc)
        return rc;
    /* user-side staging and the reorders at the edges */
    nn_shape ins = g->ops[0].shape;
    d->in_stage = vg_aligned_alloc(64, nn_shape_count(ins) * B * sizeof(float));
    if (!d->in_stage)
        return vg_err_set(VG_ENOMEM, "out of memory");
    memset(d->in_stage, 0, nn_shape_count(ins) * B * sizeof(float));
    dnnl_memory_desc_t umd;
    md_nhwc(&umd, B, ins, dnnl_f32);
    if (dnnl_memory_create(&d->in_user, &umd, d->eng, d->in_stage) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
    if (dnnl_memory_desc_equal(&umd, &d->t[0].md) && d->t[0].scale == 1.0f) {
        /* f32 nhwc is what the first layer reads: it reads the caller's floats (or the stage)
         * in place, no reorder */
        d->in_mem = d->t[0].mem;
    } else {
        /* the input reorder must run first: build it and rotate it to the front */
        int before = d->ns;
        if ((rc = reorder_into(p, d->in_user, &umd, 1.0f, &d->t[0].md, d->t[0].scale, d->t[0].mem,
                               0)))
            return rc;
        step first = d->steps[before];
        memmove(&d->steps[1], &d->steps[0], (size_t)before * sizeof(step));
        d->steps[0] = first;
        d->in_mem = d->in_user;
    }
    for (int k = 0; k < g->n_out; k++) {
        int id = g->outputs[k];
        nn_shape os = g->ops[id].shape;
        d->out_stage[k] = vg_aligned_alloc(64, nn_shape_count(os) * B * sizeof(float));
        if (!d->out_stage[k])
            return vg_err_set(VG_ENOMEM, "out of memory");
        md_nhwc(&umd, B, os, dnnl_f32);
        if (dnnl_memory_create(&d->out_user[k], &umd, d->eng, d->out_stage[k]) != dnnl_success)
            return vg_err_set(VG_EINTERNAL, "oneDNN memory_create failed");
        if ((rc = reorder_into(p, d->t[id].mem, &d->t[id].md, d->t[id].scale, &umd, 1.0f,
                               d->out_user[k], 0)))
            return rc;
    }
    if ((rc = bind(p)))
        return rc;
    size_t len = 0;
    for (int k = 0; k < d->n_impl && len < sizeof p->impl; k++)
        len += (size_t)snprintf(p->impl + len, sizeof p->impl - len, "%s%s x%d", k ? ", " : "",
                                d->impl[k].name, d->impl[k].count);
    if (d->n_custom_pool && len < sizeof p->impl)
        snprintf(p->impl + len, sizeof p->impl - len, "%svigil maxpool:%s x%d", len ? ", " : "",
                 d->pool_avx512 ? "avx512bw" : "c", d->n_custom_pool);
    return 0;
}

void nn__dnnl_plan_free(nn_dnnl_plan *d)
{
    if (!d)
        return;
    for (int k = 0; k < d->ns; k++) {
        if (d->steps[k].prim)
            dnnl_primitive_destroy(d->steps[k].prim);
        vg_free(d->steps[k].pool);
    }
    vg_free(d->steps);
    vg_free(d->pool_tmp);
    for (int i = 0; i < d->nt; i++)
        dnnl_memory_destroy(d->t[i].mem);
    vg_free(d->t);
    for (int k = 0; k < d->ntmp; k++)
        dnnl_memory_destroy(d->tmp_mem[k]);
    vg_free(d->tmp_mem);
    vg_free(d->tmp_slot);
    for (int k = 0; k < d->nslots; k++)
        vg_free(d->slots[k].buf);
    vg_free(d->slots);
    dnnl_memory_destroy(d->scratch_mem);
    vg_free(d->scratch);
    dnnl_memory_destroy(d->in_user);
    vg_free(d->in_stage);
    for (int k = 0; k < NN_MAX_OUTPUTS; k++) {
        dnnl_memory_destroy(d->out_user[k]);
        vg_free(d->out_stage[k]);
    }
    if (d->own_wc)
        nn_wcache_free(d->wc);
    if (d->stream)
        dnnl_stream_destroy(d->stream);
    if (d->eng)
        dnnl_engine_destroy(d->eng);
    vg_free(d);
}

int nn__dnnl_plan_run(nn_plan *p, const float *in, int n, float *const *outs)
{
    nn_dnnl_plan *d = p->dnnl;
    const nn_graph *g = p->g;
    size_t in_item = nn_shape_count(g->ops[0].shape);
    /* A full batch is read where it lies (oneDNN only reads its source); a partial one is
     * copied into the batch-sized stage, since the primitives read all `batch` items. */
    void *src = (void *)(uintptr_t)in;
    if (n < p->opts.batch) {
        memcpy(d->in_stage, in, (size_t)n * in_item * sizeof(float));
        src = d->in_stage;
    }
    if (dnnl_memory_set_data_handle(d->in_mem, src) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "%s: oneDNN set_data_handle failed", g->name);
    for (int k = 0; k < d->ns; k++) {
        step *s = &d->steps[k];
        if (s->zero)
            memset(s->zero, 0, s->zero_bytes);
        if (s->pool) {
            const pool_step *ps = s->pool;
            void *ps_in = NULL, *ps_out = NULL;
            if (dnnl_memory_get_data_handle(ps->src, &ps_in) != dnnl_success ||
                dnnl_memory_get_data_handle(ps->dst, &ps_out) != dnnl_success)
                return vg_err_set(VG_EINTERNAL, "%s: oneDNN get_data_handle failed", g->name);
            nn__maxpool_nhwc(ps->el, ps_in, ps->is, ps->k, ps->s, ps->pt, ps->pl, ps_out, ps->os,
                             d->pool_tmp, d->pool_avx512);
            continue;
        }
        if (dnnl_primitive_execute(s->prim, d->stream, s->nargs, s->args) != dnnl_success)
            return vg_err_set(VG_EINTERNAL, "%s: oneDNN execution failed at step %d", g->name, k);
    }
    if (dnnl_stream_wait(d->stream) != dnnl_success)
        return vg_err_set(VG_EINTERNAL, "%s: oneDNN stream failed", g->name);
    for (int k = 0; k < g->n_out; k++)
        memcpy(outs[k], d->out_stage[k],
               (size_t)n * nn_shape_count(g->ops[g->outputs[k]].shape) * sizeof(float));
    return 0;
}

size_t nn__dnnl_plan_scratch_bytes(const nn_dnnl_plan *d)
{
    if (!d)
        return 0;
    size_t b = d->scratch_bytes;
    for (int k = 0; k < d->nslots; k++)
        b += d->slots[k].bytes;
    return b;
}

size_t nn__dnnl_plan_weight_bytes(const nn_dnnl_plan *d)
{
    return (d && d->own_wc) ? d->weight_bytes : 0;
}

const char *nn_dnnl_describe(void)
{
    static const struct {
        dnnl_cpu_isa_t isa;
        const char *name;
    } names[] = {
        {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
        {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
        {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
        {dnnl_cpu_isa_avx512_core, "avx512_core"},
        {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
        {dnnl_cpu_isa_avx2, "avx2"},
        {dnnl_cpu_isa_avx, "avx"},
        {dnnl_cpu_isa_sse41, "sse41"},
    };
    const dnnl_version_t *v = dnnl_version();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const char *name = "generic";
    for (size_t i = 0; i < VG_ARRAY_LEN(names); i++)
        if ((isa & names[i].isa) == names[i].isa) {
            name = names[i].name;
            break;
        }
    static __thread char buf[160];
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d, cpu isa %s, %d OpenMP threads", v->major, v->minor,
             v->patch, name, nn_get_threads());
    return buf;
}

void nn_set_dnnl_verbose(int level)
{
    dnnl_set_verbose(level);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Thread CPU time (ns): a run's cost without the time the core was lent to other processes. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int nn_peak_conv(nn_precision prec, double seconds, int cpu_time, double *gops, double *gops_best,
                 char *impl, size_t impl_len)
{
    enum { C = 256, HW = 56, K = 3, MAX_RUNS = 200 };
    int rc = nn_precision_check(prec);
    if (rc)
        return rc;
    dnnl_data_type_t sdt = prec == NN_PREC_INT8 ? dnnl_u8 : prec == NN_PREC_BF16 ? dnnl_bf16 : f32;
    dnnl_data_type_t wdt = prec == NN_PREC_INT8 ? dnnl_s8 : prec == NN_PREC_BF16 ? dnnl_bf16 : f32;
    dnnl_data_type_t ddt = prec == NN_PREC_INT8 ? dnnl_u8 : sdt;
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t m[4] = {NULL, NULL, NULL, NULL};
    void *buf[4] = {NULL, NULL, NULL, NULL};
    double t[MAX_RUNS];
    int n = 0;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success) {
        rc = vg_err_set(VG_EINTERNAL, "peak: oneDNN engine unavailable");
        goto out;
    }
    dnnl_memory_desc_t src, w, b, dst;
    dnnl_dims_t sd = {1, C, HW, HW}, wd = {C, C, K, K}, bd = {C};
    dnnl_memory_desc_init_by_tag(&src, 4, sd, sdt, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&w, 4, wd, wdt, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&b, 1, bd, f32, dnnl_x);
    dnnl_memory_desc_init_by_tag(&dst, 4, sd, ddt, dnnl_format_tag_any);
    dnnl_dims_t st = {1, 1}, pad = {1, 1};
    dnnl_convolution_desc_t cd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                           &src, &w, &b, &dst, st, pad, pad) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL) != dnnl_success ||
        dnnl_primitive_create(&prim, pd) != dnnl_success) {
        rc = vg_err_set(VG_EINTERNAL, "peak: oneDNN refused the %s convolution",
                        nn_precision_name(prec));
        goto out;
    }
    const dnnl_query_t q[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md,
                               dnnl_query_dst_md};
    for (int k = 0; k < 4; k++) {
        const dnnl_memory_desc_t *md = k == 2 ? &b : dnnl_primitive_desc_query_md(pd, q[k], 0);
        size_t bytes = dnnl_memory_desc_get_size(md);
        buf[k] = vg_aligned_alloc(64, bytes);
        if (!buf[k]) {
            rc = vg_err_set(VG_ENOMEM, "peak: out of memory");
            goto out;
        }
        memset(buf[k], 1, bytes); /* small non-zero values in every type */
        if (dnnl_memory_create(&m[k], md, eng, buf[k]) != dnnl_success) {
            rc = vg_err_set(VG_EINTERNAL, "peak: oneDNN memory_create failed");
            goto out;
        }
    }
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, m[0]},
                            {DNNL_ARG_WEIGHTS, m[1]},
                            {DNNL_ARG_BIAS, m[2]},
                            {DNNL_ARG_DST, m[3]}};
    uint64_t end = vg_now_ns() + (uint64_t)(seconds * 1e9);
    for (int k = -2; k < MAX_RUNS; k++) { /* two warm-ups */
        uint64_t t0 = vg_now_ns(), c0 = cpu_time ? thread_cpu_ns() : 0;
        if (dnnl_primitive_execute(prim, stream, 4, a) != dnnl_success ||
            dnnl_stream_wait(stream) != dnnl_success) {
            rc = vg_err_set(VG_EINTERNAL, "peak: oneDNN execution failed");
            goto out;
        }
        uint64_t t1 = vg_now_ns();
        if (k >= 0)
            t[n++] = (double)(cpu_time ? thread_cpu_ns() - c0 : t1 - t0) * 1e-9;
        if (k >= 2 && t1 > end)
            break;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *gops = 2.0 * C * C * K * K * HW * HW / t[n / 2] * 1e-9;
    if (gops_best)
        *gops_best = 2.0 * C * C * K * K * HW * HW / t[0] * 1e-9;
    if (impl && impl_len) {
        const char *s = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
        snprintf(impl, impl_len, "%s", s ? s : "?");
    }
out:
    for (int k = 0; k < 4; k++) {
        dnnl_memory_destroy(m[k]);
        vg_free(buf[k]);
    }
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    if (stream)
        dnnl_stream_destroy(stream);
    if (eng)
        dnnl_engine_destroy(eng);
    return rc;
}
