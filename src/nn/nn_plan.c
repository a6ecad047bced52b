/*
 * Plans: a graph compiled for one batch size, backend and precision. This file holds the
 * dispatcher, the reference backend (the nn_ref_* kernels op by op, unfused, exactly in the
 * order the graph describes), int8 calibration files and the OpenMP thread helpers. The oneDNN
 * backend is nn_dnnl.c.
 */
#include "nn/nn_int.h"

#include "core/core.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nn_precision_name(nn_precision p)
{
    switch (p) {
    case NN_PREC_F32:
        return "f32";
    case NN_PREC_BF16:
        return "bf16";
    case NN_PREC_INT8:
        return "int8";
    }
    return "?";
}

int nn_precision_parse(const char *s, nn_precision *out)
{
    if (!s)
        return VG_EINVAL;
    if (strcmp(s, "f32") == 0)
        *out = NN_PREC_F32;
    else if (strcmp(s, "bf16") == 0)
        *out = NN_PREC_BF16;
    else if (strcmp(s, "int8") == 0)
        *out = NN_PREC_INT8;
    else
        return vg_err_set(VG_EINVAL, "precision '%s' is not f32, bf16 or int8", s);
    return 0;
}

int nn_precision_check(nn_precision p)
{
    unsigned f = vg_cpu_features();
    if (p == NN_PREC_BF16 && !(f & VG_CPU_AVX512BF16))
        return vg_err_set(VG_EUNSUPPORTED,
                          "bf16 needs AVX512_BF16, which this CPU lacks (or VIGIL_CPU_MASK hides); "
                          "use f32 or int8");
    if (p == NN_PREC_INT8 && !(f & (VG_CPU_AVX512VNNI | VG_CPU_AVXVNNI)))
        return vg_err_set(VG_EUNSUPPORTED,
                          "int8 needs AVX512_VNNI or AVX_VNNI, which this CPU lacks (or "
                          "VIGIL_CPU_MASK hides); use f32");
    return 0;
}

float nn__int8_scale(float amax, int is_unsigned)
{
    if (!(amax > 1e-20f))
        amax = 1e-20f;
    return (is_unsigned ? 255.0f : 127.0f) / amax;
}

/* ---- reference backend ---------------------------------------------------------------------- */

static void apply_act(float *x, size_t count, nn_act act)
{
    switch (act.kind) {
    case NN_ACT_NONE:
        break;
    case NN_ACT_RELU:
        nn_ref_relu(x, count);
        break;
    case NN_ACT_LEAKY:
        nn_ref_leaky_relu(x, count, act.param);
        break;
    case NN_ACT_CLIP:
        nn_ref_clip(x, count, 0.0f, act.param);
        break;
    }
}

static nn_shape with_n(nn_shape s, int n)
{
    s.n = n;
    return s;
}

static int ref_new(nn_plan *p)
{
    const nn_graph *g = p->g;
    p->ref_buf = vg_calloc((size_t)g->n + 1, sizeof *p->ref_buf);
    if (!p->ref_buf)
        return vg_err_set(VG_ENOMEM, "plan: out of memory");
    size_t maxc = 0;
    for (int i = 0; i <= g->n; i++) {
        size_t c = i < g->n ? nn_shape_count(with_n(g->ops[i].shape, p->opts.batch)) : maxc;
        maxc = VG_MAX(maxc, c);
        /* the extra last buffer is scratch for add_padded */
        p->ref_buf[i] = vg_aligned_alloc(64, (c ? c : 1) * sizeof(float));
        if (!p->ref_buf[i])
            return vg_err_set(VG_ENOMEM, "plan %s: cannot allocate activations", g->name);
        p->ref_bytes += c * sizeof(float);
    }
    snprintf(p->impl, sizeof p->impl, "reference");
    return 0;
}

static void ref_free(nn_plan *p)
{
    if (!p->ref_buf)
        return;
    for (int i = 0; i <= p->g->n; i++)
        vg_free(p->ref_buf[i]);
    vg_free(p->ref_buf);
}

static void ref_run(nn_plan *p, const float *in, int n, float *amax)
{
    const nn_graph *g = p->g;
    for (int i = 0; i < g->n; i++) {
        const nn_op *op = &g->ops[i];
        nn_shape os = with_n(op->shape, n);
        size_t cnt = nn_shape_count(os);
        float *out = p->ref_buf[i];
        const float *x = op->in0 >= 0 ? p->ref_buf[op->in0] : NULL;
        nn_shape is = op->in0 >= 0 ? with_n(g->ops[op->in0].shape, n) : os;
        switch (op->kind) {
        case NN_OP_INPUT:
            memcpy(out, in, cnt * sizeof(float));
            break;
        case NN_OP_CONV: {
            const nn_conv *c = &op->conv;
            if (c->depthwise)
                nn_ref_depthwise2d(x, is, c->weights, c->kh, c->kw, c->stride, op->pt, op->pl, out,
                                   os);
            else
                nn_ref_conv2d(x, is, c->weights, c->kh, c->kw, c->cout, c->stride, op->pt, op->pl,
                              out, os);
            if (c->bias)
                nn_ref_bias(out, cnt, os.c, c->bias);
            if (c->scale)
                nn_ref_scale(out, cnt, os.c, c->scale, c->shift);
            if (op->in1 >= 0)
                nn_ref_add(out, p->ref_buf[op->in1], out, cnt);
            apply_act(out, cnt, op->act);
            break;
        }
        case NN_OP_POOL:
            if (op->pool == NN_POOL_MAX)
                nn_ref_maxpool(x, is, op->k, op->stride, op->pt, op->pl, out, os);
            else
                nn_ref_avgpool(x, is, op->k, op->stride, op->pt, op->pl, out, os);
            break;
        case NN_OP_ADD:
            nn_ref_add(x, p->ref_buf[op->in1], out, cnt);
            apply_act(out, cnt, op->act);
            break;
        case NN_OP_ADD_PADDED: {
            float *tmp = p->ref_buf[g->n];
            nn_ref_pad(x, is, 0, 0, out, os);
            nn_ref_pad(p->ref_buf[op->in1], with_n(g->ops[op->in1].shape, n), 0, 0, tmp, os);
            nn_ref_add(out, tmp, out, cnt);
            apply_act(out, cnt, op->act);
            break;
        }
        case NN_OP_ACT:
            memcpy(out, x, cnt * sizeof(float));
            apply_act(out, cnt, op->act);
            break;
        case NN_OP_MEAN:
            nn_ref_mean(x, is, out);
            break;
        case NN_OP_FC:
            nn_ref_fc(x, n, is.c, op->fc_w, op->fc_b, op->shape.c, out);
            break;
        }
        if (amax) {
            float m = amax[i];
            for (size_t k = 0; k < cnt; k++)
                m = fabsf(out[k]) > m ? fabsf(out[k]) : m;
            amax[i] = m;
        }
    }
}

/* ---- dispatcher ----------------------------------------------------------------------------- */

int nn_plan_new(const nn_graph *g, const nn_plan_opts *opts, nn_plan **out)
{
    if (!g || !opts || !out || !g->finished)
        return vg_err_set(VG_EINVAL, "nn_plan_new: graph missing or not finished");
    if (opts->batch < 1 || opts->batch > NN_MAX_BATCH)
        return vg_err_set(VG_EINVAL, "batch %d outside 1..%d", opts->batch, NN_MAX_BATCH);
    if (opts->backend == NN_BACKEND_REF && opts->precision != NN_PREC_F32)
        return vg_err_set(VG_EINVAL, "the reference backend computes in f32 only");
    if (opts->precision != NN_PREC_F32) {
        int rc = nn_precision_check(opts->precision);
        if (rc)
            return rc;
    }
    if (opts->precision == NN_PREC_INT8 && (!opts->calib || opts->calib->n != g->n))
        return vg_err_set(VG_EINVAL, "%s: int8 needs calibration for its %d tensors", g->name,
                          g->n);
    nn_plan *p = vg_calloc(1, sizeof *p);
    if (!p)
        return vg_err_set(VG_ENOMEM, "plan: out of memory");
    p->g = g;
    p->opts = *opts;
    int rc = opts->backend == NN_BACKEND_REF ? ref_new(p) : nn__dnnl_plan_new(p);
    if (rc) {
        nn_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void nn_plan_free(nn_plan *p)
{
    if (!p)
        return;
    ref_free(p);
    nn__dnnl_plan_free(p->dnnl);
    vg_free(p);
}

int nn_plan_run(nn_plan *p, const float *in, int n, float *const *outs)
{
    if (!p || !in || !outs || n < 1 || n > p->opts.batch)
        return vg_err_set(VG_EINVAL, "nn_plan_run: batch %d outside 1..%d", n,
                          p ? p->opts.batch : 0);
    if (p->opts.backend == NN_BACKEND_DNNL)
        return nn__dnnl_plan_run(p, in, n, outs);
    ref_run(p, in, n, NULL);
    for (int k = 0; k < p->g->n_out; k++) {
        int id = p->g->outputs[k];
        memcpy(outs[k], p->ref_buf[id],
               nn_shape_count(with_n(p->g->ops[id].shape, n)) * sizeof(float));
    }
    return 0;
}

int nn_plan_run_observe(nn_plan *p, const float *in, int n, float *const *outs, float *amax)
{
    if (!p || p->opts.backend != NN_BACKEND_REF || !amax)
        return vg_err_set(VG_EINVAL, "nn_plan_run_observe: reference plans only");
    if (!in || !outs || n < 1 || n > p->opts.batch)
        return vg_err_set(VG_EINVAL, "nn_plan_run_observe: bad batch");
    ref_run(p, in, n, amax);
    for (int k = 0; k < p->g->n_out; k++) {
        int id = p->g->outputs[k];
        memcpy(outs[k], p->ref_buf[id],
               nn_shape_count(with_n(p->g->ops[id].shape, n)) * sizeof(float));
    }
    return 0;
}

size_t nn_plan_scratch_bytes(const nn_plan *p)
{
    if (!p)
        return 0;
    return p->dnnl ? nn__dnnl_plan_scratch_bytes(p->dnnl) : p->ref_bytes;
}

size_t nn_plan_weight_bytes(const nn_plan *p)
{
    return (p && p->dnnl) ? nn__dnnl_plan_weight_bytes(p->dnnl) : 0;
}

const char *nn_plan_impl(const nn_plan *p)
{
    return p ? p->impl : "";
}

/* ---- calibration files ---------------------------------------------------------------------- */

int nn_calib_load(const char *path, int n_tensors, nn_calib *out)
{
    uint8_t *buf;
    size_t len;
    int rc = vg_read_file(path, (size_t)1 << 20, &buf, &len);
    if (rc)
        return vg_err_set(VG_ENOTFOUND,
                          "%s: cannot read int8 calibration (%s); run `vigil "
                          "models calibrate`",
                          path, vg_strerror(rc));
    float *amax = vg_calloc((size_t)(n_tensors > 0 ? n_tensors : 1), sizeof *amax);
    char *seen = vg_calloc((size_t)(n_tensors > 0 ? n_tensors : 1), 1);
    unsigned char *f32_ops = NULL;
    if (!amax || !seen) {
        vg_free(buf);
        vg_free(amax);
        vg_free(seen);
        return vg_err_set(VG_ENOMEM, "out of memory");
    }
    int declared = -1, count = 0;
    char *save = NULL;
    rc = 0;
    for (char *line = strtok_r((char *)buf, "\n", &save); line && !rc;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        int id;
        float v;
        if (sscanf(line, "tensors %d", &declared) == 1)
            continue;
        if (strncmp(line, "f32 ", 4) == 0) {
            char end = 0;
            if (sscanf(line, "f32 t%d%c", &id, &end) != 1 || id < 0 || id >= n_tensors) {
                rc = vg_err_set(VG_EFORMAT, "%s: bad line '%.40s'", path, line);
                break;
            }
            if (!f32_ops && !(f32_ops = vg_calloc((size_t)n_tensors, 1))) {
                rc = vg_err_set(VG_ENOMEM, "out of memory");
                break;
            }
            f32_ops[id] = 1;
            continue;
        }
        if (sscanf(line, "t%d %f", &id, &v) != 2 || id < 0 || id >= n_tensors || seen[id] ||
            !(v >= 0.0f) || !isfinite(v)) {
            rc = vg_err_set(VG_EFORMAT, "%s: bad line '%.40s'", path, line);
            break;
        }
        amax[id] = v;
        seen[id] = 1;
        count++;
    }
    vg_free(buf);
    vg_free(seen);
    if (!rc && (declared != n_tensors || count != n_tensors))
        rc = vg_err_set(VG_EFORMAT, "%s: calibrates %d tensors, the network has %d (stale file?)",
                        path, declared, n_tensors);
    if (rc) {
        vg_free(amax);
        vg_free(f32_ops);
        return rc;
    }
    out->n = n_tensors;
    out->amax = amax;
    out->f32_ops = f32_ops;
    return 0;
}

int nn_calib_save(const char *path, const nn_calib *c, const char *header_comment)
{
    size_t cap = 256 + (header_comment ? strlen(header_comment) * 2 : 0) + (size_t)c->n * 48;
    char *buf = vg_malloc(cap);
    if (!buf)
        return vg_err_set(VG_ENOMEM, "out of memory");
    size_t len = 0;
    if (header_comment) {
        const char *s = header_comment;
        while (*s) {
            const char *e = strchr(s, '\n');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            len += (size_t)snprintf(buf + len, cap - len, "# %.*s\n", (int)l, s);
            s += l + (e ? 1 : 0);
        }
    }
    len += (size_t)snprintf(buf + len, cap - len, "tensors %d\n", c->n);
    for (int i = 0; i < c->n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "t%d %.9g\n", i, (double)c->amax[i]);
    for (int i = 0; c->f32_ops && i < c->n; i++)
        if (c->f32_ops[i])
            len += (size_t)snprintf(buf + len, cap - len, "f32 t%d\n", i);
    int rc = vg_write_file_atomic(path, buf, len);
    vg_free(buf);
    if (rc)
        return vg_err_set(rc, "%s: cannot write calibration", path);
    return 0;
}

void nn_calib_deinit(nn_calib *c)
{
    if (!c)
        return;
    vg_free(c->amax);
    vg_free(c->f32_ops);
    c->amax = NULL;
    c->f32_ops = NULL;
    c->n = 0;
}

/* ---- threads -------------------------------------------------------------------------------- */

/* oneDNN here is built on libgomp, which it loads; the OpenMP entry points are looked up at run
 * time so that this module does not have to link an OpenMP runtime itself (clang and gcc name
 * theirs differently) and keeps working with a sequential oneDNN build, where they are absent. */
typedef void (*omp_set_fn)(int);
typedef int (*omp_get_fn)(void);

int nn_get_threads(void)
{
    omp_get_fn get = (omp_get_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    return get ? get() : 1;
}

int nn_set_threads(int n)
{
    int prev = nn_get_threads();
    omp_set_fn set = (omp_set_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (n > 0 && set)
        set(n);
    return prev;
}
