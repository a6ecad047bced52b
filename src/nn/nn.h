/*
 * nn: a small neural-network engine for the face-api networks.
 *
 * Three layers, bottom up:
 *
 *   1. Tensors and weights. Activations are NHWC float32 (nn_shape). Weights come from tfjs
 *      model files (a JSON manifest of shard groups + binary shards, optional uint8/uint16
 *      quantisation `q*scale+min`), checked against models/SHA256SUMS before anything is parsed,
 *      and decoded into one allocation per model (nn_weights).
 *
 *   2. Reference kernels (nn_ref_*): plain C, one loop nest per op, written to be obviously
 *      correct rather than fast. Tests and the reference backend use them.
 *
 *   3. Graphs and plans. A network is described once as an nn_graph (a list of ops on tensor ids,
 *      built top to bottom by the face module). An nn_plan compiles a graph for one batch size,
 *      one backend and one precision: the reference backend runs the nn_ref_* kernels op by op;
 *      the oneDNN backend creates every primitive once (bias, per-channel scale folded into the
 *      weights, activation and residual sum fused as post-ops, blocked layouts chosen by oneDNN,
 *      reorders only at the network's input and outputs) and reuses them for every run.
 *
 * Threading: nn_weights and nn_graph are immutable after construction and may be shared by any
 * number of threads. An nn_plan owns its scratch memory and is used by one thread at a time.
 * The oneDNN backend runs on libgomp: each call uses as many threads as the calling thread's
 * OpenMP setting allows (omp_get_max_threads()). To run N independent single-threaded replicas
 * on N threads, each replica thread calls nn_set_threads(1) once before its first run (or the
 * process sets OMP_NUM_THREADS=1); see docs/ARCHITECTURE.md.
 */
#ifndef VG_NN_H
#define VG_NN_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits --------------------------------------------------------------------------------- */

#define NN_MAX_MANIFEST_BYTES ((size_t)4 << 20) /* a manifest is a few KiB */
#define NN_MAX_WEIGHT_BYTES ((size_t)512 << 20) /* all shards of one model */
#define NN_MAX_TENSORS 8192                     /* tensors in one manifest */
#define NN_MAX_RANK 4
#define NN_MAX_BATCH 64 /* inputs per plan run */

/* ---- tensors -------------------------------------------------------------------------------- */

/* Shape of an NHWC tensor. Vectors are 1x1xC. */
typedef struct nn_shape {
    int n, h, w, c;
} nn_shape;

/* Number of elements (n*h*w*c), 0 for a negative or overflowing shape. */
size_t nn_shape_count(nn_shape s);

/* ---- weights -------------------------------------------------------------------------------- */

typedef enum { NN_DT_F32 = 0, NN_DT_I32 = 1 } nn_dtype;

/* One decoded tensor of a model. Pointers are owned by the nn_weights they came from. */
typedef struct nn_param {
    const char *name;
    int rank;
    int dims[NN_MAX_RANK];
    size_t count;
    nn_dtype dtype;
    const float *f;   /* NN_DT_F32 values, else NULL */
    const int32_t *i; /* NN_DT_I32 values, else NULL */
} nn_param;

typedef struct nn_weights nn_weights;

/* Opens model `name` (e.g. "face_recognition_model") from models_dir: reads
 * models_dir/SHA256SUMS, checks `<name>-weights_manifest.json` and every shard it names against
 * it, then decodes the tensors. Returns owned (free with nn_weights_free).
 * Errors (the detail names the file): VG_ENOTFOUND (missing file or not listed in SHA256SUMS),
 * VG_ECHECKSUM (contents differ from the pinned sum: truncated or altered), VG_EFORMAT /
 * VG_ECORRUPT (manifest invalid or shards inconsistent with it), VG_ETOOBIG, VG_ENOMEM. */
int nn_weights_open(const char *models_dir, const char *name, nn_weights **out);

/* Decodes a manifest and the concatenation of all its shards (groups in manifest order, paths
 * in group order) without any checksum: used by nn_weights_open after verification, by tests
 * and by the fuzzer. Borrowed inputs; returns owned. The shards must be consumed exactly. */
int nn_weights_parse(const char *manifest, size_t manifest_len, const uint8_t *bin, size_t bin_len,
                     nn_weights **out);

void nn_weights_free(nn_weights *w);

/* Tensor by name, or NULL. Borrowed from w. */
const nn_param *nn_weights_find(const nn_weights *w, const char *name);
/* Tensor by name with the expected float32 shape (rank dims); NULL dims skips the shape check.
 * Returns VG_ENOTFOUND or VG_EFORMAT with a detail naming the tensor. *out borrowed from w. */
int nn_weights_get_f32(const nn_weights *w, const char *name, int rank, const int *dims,
                       const float **out);
size_t nn_weights_count(const nn_weights *w);
const nn_param *nn_weights_at(const nn_weights *w, size_t i);
/* Bytes of the model's single allocation. */
size_t nn_weights_bytes(const nn_weights *w);

/* Checks every file listed in models_dir/SHA256SUMS. Calls report (may be NULL) once per file
 * with its status (0, VG_ENOTFOUND or VG_ECHECKSUM). Returns 0 if all match, else the first
 * error. */
int nn_models_verify(const char *models_dir,
                     void (*report)(void *ctx, const char *file, int status), void *ctx);

/* ---- reference kernels ---------------------------------------------------------------------- */
/* All tensors NHWC float32, batch n. Padding is explicit (top, left, bottom, right); use
 * nn_same_pad() for TensorFlow's SAME. Output shapes are the caller's to compute
 * (nn_conv_out_size) and the output buffers the caller's to provide. */

/* TensorFlow SAME padding: out = ceil(in/stride); total pad split with the extra pixel at the
 * end. */
void nn_same_pad(int in, int k, int stride, int *out, int *pad_before, int *pad_after);
/* (in + pad_before + pad_after - k) / stride + 1, or 0 if the window does not fit. */
int nn_conv_out_size(int in, int k, int stride, int pad_before, int pad_after);

/* out[n,oy,ox,co] = sum over ky,kx,ci of in[n, oy*s+ky-pt, ox*s+kx-pl, ci] * w[ky,kx,ci,co];
 * w is HWIO [kh,kw,in.c,cout]; zero padding. out is (n, oh, ow, cout). */
void nn_ref_conv2d(const float *in, nn_shape is, const float *w, int kh, int kw, int cout,
                   int stride, int pt, int pl, float *out, nn_shape os);
/* Depthwise: w is [kh,kw,c,1], out channel c uses input channel c only. */
void nn_ref_depthwise2d(const float *in, nn_shape is, const float *w, int kh, int kw, int stride,
                        int pt, int pl, float *out, nn_shape os);
/* x[..., c] += b[c] over n elements of c channels (n = count / c). */
void nn_ref_bias(float *x, size_t count, int c, const float *b);
/* x[..., c] = x*scale[c] + shift[c] (shift may be NULL). */
void nn_ref_scale(float *x, size_t count, int c, const float *scale, const float *shift);
void nn_ref_relu(float *x, size_t count);
/* max(x, alpha*x), i.e. f(x) = x for x >= 0 else alpha*x (0 < alpha < 1). */
void nn_ref_leaky_relu(float *x, size_t count, float alpha);
/* min(max(x, lo), hi). */
void nn_ref_clip(float *x, size_t count, float lo, float hi);
/* Max pool k x k, stride s; padded positions are ignored (TensorFlow). */
void nn_ref_maxpool(const float *in, nn_shape is, int k, int s, int pt, int pl, float *out,
                    nn_shape os);
/* Average pool k x k, stride s; the divisor counts only positions inside the input. */
void nn_ref_avgpool(const float *in, nn_shape is, int k, int s, int pt, int pl, float *out,
                    nn_shape os);
/* out = a + b elementwise (out may alias a or b). */
void nn_ref_add(const float *a, const float *b, float *out, size_t count);
/* Zero padding: in placed at (pt, pl) of out, channel c of in at channel c of out; every other
 * element of out is zero (covers spatial padding and concatenation of zero channels). out's h,
 * w, c must be >= in's plus the offsets. */
void nn_ref_pad(const float *in, nn_shape is, int pt, int pl, float *out, nn_shape os);
/* Spatial mean: out[n,0,0,c] = mean over h,w of in[n,h,w,c]. */
void nn_ref_mean(const float *in, nn_shape is, float *out);
/* Fully connected: out[n,j] = sum_i in[n,i]*w[i,j] (+ b[j] if b). w is [cin,cout]. */
void nn_ref_fc(const float *in, int n, int cin, const float *w, const float *b, int cout,
               float *out);

/* ---- graphs --------------------------------------------------------------------------------- */

typedef enum {
    NN_ACT_NONE = 0,
    NN_ACT_RELU,
    NN_ACT_LEAKY, /* alpha */
    NN_ACT_CLIP,  /* clip to [0, hi]: relu6 with hi = 6 */
} nn_act_kind;

typedef struct nn_act {
    nn_act_kind kind;
    float param; /* leaky: alpha; clip: upper bound */
} nn_act;

typedef enum { NN_PAD_VALID = 0, NN_PAD_SAME, NN_PAD_EXPLICIT } nn_pad_mode;

typedef struct nn_pad {
    nn_pad_mode mode;
    int t, l, b, r; /* NN_PAD_EXPLICIT only */
} nn_pad;

/* A convolution and what follows it, in this order:
 *   y = conv(x, weights) [+ bias] [* scale + shift] [+ sum tensor] -> activation.
 * Pointers are borrowed and must outlive every graph and plan built from them (they normally
 * point into an nn_weights). */
typedef struct nn_conv {
    int kh, kw, cout;
    int stride;
    int depthwise; /* 1: weights [kh,kw,c,1] and cout == input channels */
    nn_pad pad;
    const float *weights; /* HWIO [kh,kw,cin,cout], or [kh,kw,c,1] when depthwise */
    const float *bias;    /* [cout] or NULL */
    const float *scale;   /* [cout] or NULL: per-channel affine after the bias */
    const float *shift;   /* [cout] or NULL (only with scale) */
    int sum;              /* tensor id added before the activation (same shape as y), or -1 */
    nn_act act;
} nn_conv;

typedef enum { NN_POOL_MAX = 0, NN_POOL_AVG } nn_pool_kind;

typedef struct nn_graph nn_graph;

/* A graph is built by calls that return tensor ids (>= 0). Errors are sticky: once a call fails
 * it returns -1 and so do all later ones, and nn_graph_finish reports the first error with its
 * detail, so a network reads as a straight list of layers with a single check at the end. */
int nn_graph_new(const char *name, nn_graph **out); /* returns owned */
void nn_graph_free(nn_graph *g);
/* The batch-1 input (1,h,w,c). One input per graph, created first. */
int nn_graph_input(nn_graph *g, int h, int w, int c);
int nn_graph_conv(nn_graph *g, int x, const nn_conv *p);
int nn_graph_pool(nn_graph *g, int x, nn_pool_kind kind, int k, int stride, nn_pad pad);
/* act(a + b), a and b the same shape. */
int nn_graph_add(nn_graph *g, int a, int b, nn_act act);
/* act(pad(a) + pad(b)): the output has the largest h, w, c of the two and each input is
 * extended with zeros at the bottom, the right and in the last channels (the recognition
 * network's residualDown shortcut). */
int nn_graph_add_padded(nn_graph *g, int a, int b, nn_act act);
/* act(x) as its own op (when the pre-activation value is needed too). */
int nn_graph_act(nn_graph *g, int x, nn_act act);
/* Spatial mean -> (1,1,c). */
int nn_graph_mean(nn_graph *g, int x);
/* Fully connected on a (1,1,cin) tensor: w [cin,cout] borrowed, b [cout] or NULL. */
int nn_graph_fc(nn_graph *g, int x, const float *w, int cout, const float *b);
/* Marks a tensor as an output (in call order; up to NN_MAX_OUTPUTS). */
#define NN_MAX_OUTPUTS 16
int nn_graph_output(nn_graph *g, int x);
/* Validates and freezes the graph. Returns the first build error (VG_EINVAL + detail) if any. */
int nn_graph_finish(nn_graph *g);

const char *nn_graph_name(const nn_graph *g);
nn_shape nn_graph_input_shape(const nn_graph *g);
int nn_graph_n_outputs(const nn_graph *g);
nn_shape nn_graph_output_shape(const nn_graph *g, int i);
int nn_graph_n_tensors(const nn_graph *g);
nn_shape nn_graph_tensor_shape(const nn_graph *g, int id);
/* Multiply-accumulates of one batch-1 pass (for GFLOP/s reports: FLOPs = 2*MACs). */
uint64_t nn_graph_macs(const nn_graph *g);

/* ---- plans ---------------------------------------------------------------------------------- */

typedef enum { NN_BACKEND_REF = 0, NN_BACKEND_DNNL } nn_backend;
typedef enum { NN_PREC_F32 = 0, NN_PREC_BF16, NN_PREC_INT8 } nn_precision;

const char *nn_precision_name(nn_precision p); /* "f32" | "bf16" | "int8" */
int nn_precision_parse(const char *s, nn_precision *out);
/* VG_EUNSUPPORTED with a clear detail when this CPU (or VIGIL_CPU_MASK) lacks the ISA. */
int nn_precision_check(nn_precision p);

/* Activation ranges for int8: max |value| of every tensor of a graph over calibration inputs.
 * Owned by whoever creates it; immutable once filled; shared read-only by plans. */
typedef struct nn_calib {
    int n;       /* number of tensors (nn_graph_n_tensors) */
    float *amax; /* [n] */
    /* [n] or NULL: 1 where the op producing tensor id runs in f32 inside an int8 or bf16 plan
     * (its input converted, its output stored f32): mixed precision, the layers whose reduced
     * precision moved the network's answers kept exact. */
    unsigned char *f32_ops;
} nn_calib;

/* Reads/writes a calibration file (text: "# comments", then "tensors N", then "t<id> <amax>"
 * lines, then optional "f32 t<id>" lines naming the ops kept in f32). Load returns VG_ENOTFOUND
 * if the file is missing, VG_EFORMAT if it does not match n_tensors. */
int nn_calib_load(const char *path, int n_tensors, nn_calib *out);
int nn_calib_save(const char *path, const nn_calib *c, const char *header_comment);
void nn_calib_deinit(nn_calib *c);

/* Per-model cache of weights reordered for oneDNN, shared by every plan of one graph (so the
 * replicas of a pool hold one copy). Thread-safe. Owned by the caller; must outlive its plans. */
typedef struct nn_wcache nn_wcache;
int nn_wcache_new(nn_wcache **out);
void nn_wcache_free(nn_wcache *c);
size_t nn_wcache_bytes(const nn_wcache *c);

typedef struct nn_plan_opts {
    nn_backend backend;
    nn_precision precision;
    int batch;             /* 1..NN_MAX_BATCH */
    const nn_calib *calib; /* borrowed; required for NN_PREC_INT8; bf16 uses its f32_ops */
    nn_wcache *wcache;     /* borrowed; optional (NULL: the plan keeps its own weights) */
} nn_plan_opts;

typedef struct nn_plan nn_plan;

/* Compiles g (borrowed; must outlive the plan) for one batch size, backend and precision.
 * Returns owned. Errors: VG_EINVAL, VG_EUNSUPPORTED (precision), VG_ENOMEM, VG_EINTERNAL
 * (oneDNN refused a primitive; the detail says which layer). */
int nn_plan_new(const nn_graph *g, const nn_plan_opts *opts, nn_plan **out);
void nn_plan_free(nn_plan *p);
/* Runs batch n (1..the plan's batch) of NHWC float32 inputs (n * input count floats, borrowed)
 * and writes every output i to outs[i] (n * output count floats each, caller-provided). Not
 * thread-safe per plan. Returns 0, VG_EINVAL, or VG_EINTERNAL. */
int nn_plan_run(nn_plan *p, const float *in, int n, float *const *outs);
/* Like nn_plan_run, and also records max |value| of every tensor into amax[n_tensors]
 * (running max; reference backend only, f32). */
int nn_plan_run_observe(nn_plan *p, const float *in, int n, float *const *outs, float *amax);
/* Scratch bytes (activations, primitive workspaces) the plan holds, excluding shared weights. */
size_t nn_plan_scratch_bytes(const nn_plan *p);
/* Weight bytes the plan holds itself (0 when they live in a shared wcache). */
size_t nn_plan_weight_bytes(const nn_plan *p);
/* One line naming the oneDNN implementations used (e.g. "brgconv:avx512_core x12,
 * jit:avx512_core x3"); "reference" for the reference backend. Borrowed from p. */
const char *nn_plan_impl(const nn_plan *p);

/* ---- runtime -------------------------------------------------------------------------------- */

/* Sets the OpenMP thread count of the calling thread (what oneDNN uses for calls made from it).
 * 0 leaves it alone. Returns the previous value. */
int nn_set_threads(int n);
int nn_get_threads(void);
/* oneDNN's version and the highest ISA it will use on this CPU ("avx512_core_bf16"), for logs. */
const char *nn_dnnl_describe(void);
/* The machine's practical convolution peak for precision p on the calling thread's OpenMP
 * threads: a large oneDNN convolution (batch 1, 256 -> 256 channels, 3x3, 56x56, 1.85 GMAC;
 * u8 x s8 for int8) run repeatedly for about `seconds`. *gops receives the median GFLOP/s
 * (2 ops per multiply-accumulate), *gops_best (may be NULL) that of the fastest run, and impl
 * (impl_len bytes, may be NULL) oneDNN's
 * implementation name, so a network's throughput can be shown next to what the hardware does.
 * cpu_time = 1 times each run by the calling thread's CPU time instead of the wall clock (for
 * one thread on a shared machine: preemption does not count). For benchmarks; slow.
 * Errors: VG_EUNSUPPORTED (precision), VG_ENOMEM, VG_EINTERNAL. */
int nn_peak_conv(nn_precision p, double seconds, int cpu_time, double *gops, double *gops_best,
                 char *impl, size_t impl_len);
/* Turns oneDNN's own verbose trace (one line per primitive creation/execution) on or off. */
void nn_set_dnnl_verbose(int level);

#endif /* VG_NN_H */
