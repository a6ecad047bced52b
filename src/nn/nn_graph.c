/*
 * Graph construction. A network is a straight list of ops; tensor id == index of the op that
 * produces it. Build errors are sticky so the face networks read as plain lists of layers: the
 * first failure is recorded with its detail and nn_graph_finish reports it.
 */
#include "nn/nn_int.h"

#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nn_graph_new(const char *name, nn_graph **out)
{
    nn_graph *g = vg_calloc(1, sizeof *g);
    if (!g)
        return vg_err_set(VG_ENOMEM, "nn_graph_new: out of memory");
    snprintf(g->name, sizeof g->name, "%s", name ? name : "graph");
    *out = g;
    return 0;
}

void nn_graph_free(nn_graph *g)
{
    if (!g)
        return;
    vg_free(g->ops);
    vg_free(g);
}

__attribute__((format(printf, 2, 3))) static int fail(nn_graph *g, const char *fmt, ...)
{
    if (!g->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
        va_end(ap);
        g->err = VG_EINVAL;
    }
    return -1;
}

static int valid_id(const nn_graph *g, int id)
{
    return id >= 0 && id < g->n;
}

/* Appends an op; returns its id or -1 (sticky error). */
static int push(nn_graph *g, const nn_op *op)
{
    if (g->err)
        return -1;
    if (g->finished)
        return fail(g, "%s: graph already finished", g->name);
    if (op->shape.h <= 0 || op->shape.w <= 0 || op->shape.c <= 0)
        return fail(g, "%s: op %d has empty output %dx%dx%d", g->name, g->n, op->shape.h,
                    op->shape.w, op->shape.c);
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        nn_op *ops = vg_realloc(g->ops, (size_t)cap * sizeof *ops);
        if (!ops) {
            g->err = VG_ENOMEM;
            snprintf(g->errmsg, sizeof g->errmsg, "%s: out of memory", g->name);
            return -1;
        }
        g->ops = ops;
        g->cap = cap;
    }
    g->ops[g->n] = *op;
    return g->n++;
}

static nn_op blank(nn_op_kind kind)
{
    nn_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.in0 = op.in1 = -1;
    return op;
}

int nn_graph_input(nn_graph *g, int h, int w, int c)
{
    if (g->err)
        return -1;
    if (g->n != 0)
        return fail(g, "%s: the input must be the first tensor", g->name);
    nn_op op = blank(NN_OP_INPUT);
    op.shape = (nn_shape){1, h, w, c};
    return push(g, &op);
}

/* Resolves a padding mode into explicit pads and the output size for one axis. */
static int resolve_pad(nn_pad pad, int in, int k, int s, int axis, int *o, int *pb, int *pa)
{
    if (pad.mode == NN_PAD_SAME) {
        nn_same_pad(in, k, s, o, pb, pa);
        return 0;
    }
    if (pad.mode == NN_PAD_VALID) {
        *pb = *pa = 0;
    } else {
        *pb = axis ? pad.l : pad.t;
        *pa = axis ? pad.r : pad.b;
        if (*pb < 0 || *pa < 0 || *pb >= k || *pa >= k)
            return -1;
    }
    *o = nn_conv_out_size(in, k, s, *pb, *pa);
    return 0;
}

int nn_graph_conv(nn_graph *g, int x, const nn_conv *p)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x))
        return fail(g, "%s: conv on unknown tensor %d", g->name, x);
    nn_shape is = g->ops[x].shape;
    if (!p->weights || p->kh <= 0 || p->kw <= 0 || p->stride <= 0 || p->cout <= 0 ||
        (p->depthwise && p->cout != is.c) || (p->shift && !p->scale))
        return fail(g, "%s: conv %d: bad parameters", g->name, g->n);
    nn_op op = blank(NN_OP_CONV);
    op.in0 = x;
    op.conv = *p;
    op.act = p->act;
    int oh, ow;
    if (resolve_pad(p->pad, is.h, p->kh, p->stride, 0, &oh, &op.pt, &op.pb) ||
        resolve_pad(p->pad, is.w, p->kw, p->stride, 1, &ow, &op.pl, &op.pr))
        return fail(g, "%s: conv %d: bad padding", g->name, g->n);
    op.shape = (nn_shape){1, oh, ow, p->cout};
    if (p->sum >= 0) {
        if (!valid_id(g, p->sum))
            return fail(g, "%s: conv %d: unknown sum tensor %d", g->name, g->n, p->sum);
        nn_shape ss = g->ops[p->sum].shape;
        if (ss.h != oh || ss.w != ow || ss.c != p->cout)
            return fail(g, "%s: conv %d: sum tensor %dx%dx%d != output %dx%dx%d", g->name, g->n,
                        ss.h, ss.w, ss.c, oh, ow, p->cout);
        op.in1 = p->sum;
    } else {
        op.conv.sum = -1;
    }
    int id = push(g, &op);
    if (id >= 0)
        g->macs += (uint64_t)oh * ow * p->cout * p->kh * p->kw * (p->depthwise ? 1 : is.c);
    return id;
}

int nn_graph_pool(nn_graph *g, int x, nn_pool_kind kind, int k, int stride, nn_pad pad)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x) || k <= 0 || stride <= 0)
        return fail(g, "%s: pool %d: bad parameters", g->name, g->n);
    nn_shape is = g->ops[x].shape;
    nn_op op = blank(NN_OP_POOL);
    op.in0 = x;
    op.pool = kind;
    op.k = k;
    op.stride = stride;
    int oh, ow;
    if (resolve_pad(pad, is.h, k, stride, 0, &oh, &op.pt, &op.pb) ||
        resolve_pad(pad, is.w, k, stride, 1, &ow, &op.pl, &op.pr))
        return fail(g, "%s: pool %d: bad padding", g->name, g->n);
    op.shape = (nn_shape){1, oh, ow, is.c};
    return push(g, &op);
}

int nn_graph_add(nn_graph *g, int a, int b, nn_act act)
{
    if (g->err)
        return -1;
    if (!valid_id(g, a) || !valid_id(g, b))
        return fail(g, "%s: add %d: unknown input", g->name, g->n);
    nn_shape sa = g->ops[a].shape, sb = g->ops[b].shape;
    if (sa.h != sb.h || sa.w != sb.w || sa.c != sb.c)
        return fail(g, "%s: add %d: shapes differ", g->name, g->n);
    nn_op op = blank(NN_OP_ADD);
    op.in0 = a;
    op.in1 = b;
    op.act = act;
    op.shape = sa;
    return push(g, &op);
}

int nn_graph_add_padded(nn_graph *g, int a, int b, nn_act act)
{
    if (g->err)
        return -1;
    if (!valid_id(g, a) || !valid_id(g, b))
        return fail(g, "%s: add_padded %d: unknown input", g->name, g->n);
    nn_shape sa = g->ops[a].shape, sb = g->ops[b].shape;
    nn_op op = blank(NN_OP_ADD_PADDED);
    op.in0 = a;
    op.in1 = b;
    op.act = act;
    op.shape = (nn_shape){1, VG_MAX(sa.h, sb.h), VG_MAX(sa.w, sb.w), VG_MAX(sa.c, sb.c)};
    return push(g, &op);
}

int nn_graph_act(nn_graph *g, int x, nn_act act)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x))
        return fail(g, "%s: act %d: unknown input", g->name, g->n);
    nn_op op = blank(NN_OP_ACT);
    op.in0 = x;
    op.act = act;
    op.shape = g->ops[x].shape;
    return push(g, &op);
}

int nn_graph_mean(nn_graph *g, int x)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x))
        return fail(g, "%s: mean %d: unknown input", g->name, g->n);
    nn_op op = blank(NN_OP_MEAN);
    op.in0 = x;
    op.shape = (nn_shape){1, 1, 1, g->ops[x].shape.c};
    return push(g, &op);
}

int nn_graph_fc(nn_graph *g, int x, const float *w, int cout, const float *b)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x) || !w || cout <= 0)
        return fail(g, "%s: fc %d: bad parameters", g->name, g->n);
    nn_shape is = g->ops[x].shape;
    if (is.h != 1 || is.w != 1)
        return fail(g, "%s: fc %d: input must be 1x1xC", g->name, g->n);
    nn_op op = blank(NN_OP_FC);
    op.in0 = x;
    op.fc_w = w;
    op.fc_b = b;
    op.shape = (nn_shape){1, 1, 1, cout};
    int id = push(g, &op);
    if (id >= 0)
        g->macs += (uint64_t)is.c * cout;
    return id;
}

int nn_graph_output(nn_graph *g, int x)
{
    if (g->err)
        return -1;
    if (!valid_id(g, x) || g->n_out == NN_MAX_OUTPUTS)
        return fail(g, "%s: bad output %d", g->name, x);
    g->outputs[g->n_out++] = x;
    return x;
}

int nn_graph_finish(nn_graph *g)
{
    if (g->err)
        return vg_err_set(g->err, "%s", g->errmsg);
    if (g->n < 2 || g->ops[0].kind != NN_OP_INPUT || g->n_out == 0)
        return vg_err_set(VG_EINVAL, "%s: a graph needs an input, ops and an output", g->name);
    g->finished = 1;
    return 0;
}

const char *nn_graph_name(const nn_graph *g)
{
    return g->name;
}
nn_shape nn_graph_input_shape(const nn_graph *g)
{
    return g->ops[0].shape;
}
int nn_graph_n_outputs(const nn_graph *g)
{
    return g->n_out;
}
nn_shape nn_graph_output_shape(const nn_graph *g, int i)
{
    return g->ops[g->outputs[i]].shape;
}
int nn_graph_n_tensors(const nn_graph *g)
{
    return g->n;
}
nn_shape nn_graph_tensor_shape(const nn_graph *g, int id)
{
    return g->ops[id].shape;
}
uint64_t nn_graph_macs(const nn_graph *g)
{
    return g->macs;
}

int *nn__graph_last_use(const nn_graph *g)
{
    int *last = vg_malloc((size_t)g->n * sizeof *last);
    if (!last)
        return NULL;
    for (int i = 0; i < g->n; i++)
        last[i] = i;
    for (int i = 0; i < g->n; i++) {
        if (g->ops[i].in0 >= 0)
            last[g->ops[i].in0] = i;
        if (g->ops[i].in1 >= 0)
            last[g->ops[i].in1] = i;
    }
    for (int k = 0; k < g->n_out; k++)
        last[g->outputs[k]] = g->n;
    return last;
}
