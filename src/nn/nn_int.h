/*
 * nn internals shared by the graph builder, the plan dispatcher and the two backends.
 * Not part of the public API.
 */
#ifndef VG_NN_INT_H
#define VG_NN_INT_H

#include "nn/nn.h"

#include <stdint.h>

/* ---- pinned checksums (SHA256SUMS) ---- */
#define NN_MAX_SUMS 64
typedef struct nn_sum_entry {
    uint8_t sha[32];
    char name[256];
} nn_sum_entry;
typedef struct nn_sums {
    int n;
    nn_sum_entry e[NN_MAX_SUMS];
} nn_sums;
int nn__sums_load(const char *models_dir, nn_sums *out);
const uint8_t *nn__sums_find(const nn_sums *s, const char *name);
/* Reads models_dir/name, refusing it unless listed in sums with the same sha256. Returns owned. */
int nn__read_verified(const char *models_dir, const nn_sums *sums, const char *name, uint8_t **out,
                      size_t *out_len);

/* ---- graph ---- */
typedef enum {
    NN_OP_INPUT = 0,
    NN_OP_CONV,
    NN_OP_POOL,
    NN_OP_ADD,
    NN_OP_ADD_PADDED,
    NN_OP_ACT,
    NN_OP_MEAN,
    NN_OP_FC,
} nn_op_kind;

/* One op; its output is the tensor whose id is the op's index. */
typedef struct nn_op {
    nn_op_kind kind;
    int in0, in1;       /* inputs (in1: conv sum tensor, second addend), -1 if none */
    nn_shape shape;     /* output shape, batch 1 */
    nn_conv conv;       /* NN_OP_CONV; pad converted to explicit */
    nn_pool_kind pool;  /* NN_OP_POOL */
    int k, stride;      /* NN_OP_POOL */
    int pt, pl, pb, pr; /* explicit padding (conv, pool) */
    nn_act act;         /* conv, add, add_padded */
    const float *fc_w;  /* NN_OP_FC [cin,cout] */
    const float *fc_b;
} nn_op;

struct nn_graph {
    char name[64];
    nn_op *ops;
    int n, cap;
    int outputs[NN_MAX_OUTPUTS];
    int n_out;
    int err; /* first build error (sticky) */
    char errmsg[256];
    int finished;
    uint64_t macs;
};

/* Last use (op index) of every tensor; outputs live to the end. Returns owned int[n]. */
int *nn__graph_last_use(const nn_graph *g);

/* ---- plans ---- */
typedef struct nn_dnnl_plan nn_dnnl_plan;

struct nn_plan {
    const nn_graph *g;
    nn_plan_opts opts;
    /* reference backend: one buffer per tensor, batch-sized */
    float **ref_buf;
    size_t ref_bytes;
    /* oneDNN backend */
    nn_dnnl_plan *dnnl;
    char impl[512];
};

int nn__dnnl_plan_new(nn_plan *p);
void nn__dnnl_plan_free(nn_dnnl_plan *d);
int nn__dnnl_plan_run(nn_plan *p, const float *in, int n, float *const *outs);
size_t nn__dnnl_plan_scratch_bytes(const nn_dnnl_plan *d);
size_t nn__dnnl_plan_weight_bytes(const nn_dnnl_plan *d);

/* ---- max pooling on NHWC buffers (nn_pool.c) ---- */
typedef enum { NN_EL_F32 = 0, NN_EL_BF16, NN_EL_S8, NN_EL_U8 } nn_elem;
int nn__elem_size(nn_elem t);
/* 1 when the AVX-512BW tier may run (vg_cpu_features, so VIGIL_CPU_MASK can turn it off). */
int nn__maxpool_avx512_ok(void);
/* Max pool k x k, stride s, top/left padding pt/pl (padded positions ignored, as
 * nn_ref_maxpool), of the dense NHWC tensor `in` (is, elements of type t) into `out` (os, the
 * caller computed it with nn_conv_out_size). row_tmp: is.w * is.c elements of scratch. Buffers
 * borrowed. Exact in every type; the AVX-512 tier (use_avx512, only if nn__maxpool_avx512_ok)
 * gives the same values as the portable one. */
void nn__maxpool_nhwc(nn_elem t, const void *in, nn_shape is, int k, int s, int pt, int pl,
                      void *out, nn_shape os, void *row_tmp, int use_avx512);

/* Quantisation scale of a tensor with max |value| amax: q = round(x * scale) fits the type. */
float nn__int8_scale(float amax, int is_unsigned);

#endif /* VG_NN_INT_H */
