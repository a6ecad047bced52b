/*
 * face: find every face in an image and turn each into the 128-d descriptor that tells one
 * person from another, with face-api 1.7.15's networks and weights (see
 * tests/data/faces/FACE_API_ARCHITECTURE.md), on the nn engine.
 *
 *   image -> detector (tiny YOLOv2 at 320/416/608, or SSD MobileNet v1 at 512) -> boxes
 *         -> 68-point landmarks (112x112 crop of each box)
 *         -> "alignment" (dlib's square crop from eyes and mouth)
 *         -> recognition (ResNet-29 on a 150x150 crop) -> 128-d descriptor
 *
 * Two kinds of objects:
 *   - face_models: the weights, network graphs and int8 calibration, opened once, read-only and
 *     thread-safe; shared by every replica (weights reordered for oneDNN are shared too);
 *   - face_engine: one replica's plans and scratch memory. Not thread-safe: one thread at a time
 *     (the sched module gives each worker thread its own). Its memory is bounded by the batch
 *     sizes it was asked to run and reported by face_engine_memory().
 *
 * Every network takes fixed-size inputs, so besides the whole pipeline for one image
 * (face_analyze) the pieces a batcher needs are public: prepare one input tensor, run a batch
 * of 1..FACE_MAX_BATCH prepared inputs of one network in one call, decode the outputs.
 *
 * Coordinates are pixels of the image given, x right, y down; boxes are x, y, w, h.
 */
#ifndef VG_FACE_H
#define VG_FACE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/vg_types.h"
#include "nn/nn.h"

#define FACE_LANDMARKS 68
#define FACE_MAX_BATCH NN_MAX_BATCH
#define FACE_DEFAULT_MAX_FACES 256    /* faces reported per image (hundreds fit) */
#define FACE_SAME_PERSON_DISTANCE 0.6 /* dlib / face-api threshold on the L2 distance */
#define FACE_LANDMARK_SIZE 112
#define FACE_RECOG_SIZE 150
#define FACE_SSD_SIZE 512

/* An RGB image, 8 bits per channel, rows of w*3 bytes. Borrowed. */
typedef struct face_image {
    const uint8_t *rgb;
    uint32_t w, h;
} face_image;

typedef enum { FACE_DET_TINY = 0, FACE_DET_SSD } face_detector;

typedef enum {
    FACE_NET_TINY = 0, /* input (s,s,3), output (s/32,s/32,25) */
    FACE_NET_LANDMARKS,
    FACE_NET_RECOG,
    FACE_NET_SSD,
    FACE_NET_COUNT
} face_net;

const char *face_net_name(face_net n); /* "tiny" | "landmarks" | "recognition" | "ssd" */

/* What to run for one image. face_opts_for_level fills a level's choices (docs/BENCHMARKS.md);
 * the recogniser's precision is int8 where VNNI exists, else bf16 where AVX512_BF16 does, else
 * f32 ("fast" below); landmarks always run in f32:
 *   speed:    tiny 320, detector bf16 (f32 without AVX512_BF16), recogniser fast
 *   balanced: tiny 416, detector f32, recogniser fast
 *   accuracy: ssd 512, detector f32, recogniser f32
 *   memory:   tiny 320, detector f32, recogniser fast
 * The int8 detector is available but no level uses it: its boxes do not hold IoU 0.95 against
 * face-api (docs/BENCHMARKS.md). Fields may be overridden one by one afterwards. */
typedef struct face_opts {
    face_detector detector;
    int input_size;                  /* tiny: 320 | 416 | 608 (any multiple of 32 in 32..1024) */
    nn_precision precision;          /* the recogniser's precision */
    nn_precision detector_precision; /* the detector's */
    /* Landmarks precision. f32 at every level: a landmark moved by a pixel moves the floored
     * alignment crop, which costs more descriptor accuracy (L2 ~0.1) than int8 recognition
     * itself (~0.04), for 0.4 ms saved. */
    nn_precision landmarks_precision;
    float score_threshold; /* detector confidence, face-api default 0.5 */
    size_t max_faces;      /* most faces reported (highest scores first) */
    int descriptors;       /* 0: stop after landmarks */
} face_opts;
void face_opts_for_level(vg_level level, face_opts *out);

typedef struct face_box {
    float x, y, w, h;
} face_box;

typedef struct face_face {
    face_box box; /* detection, pixels */
    float score;
    float landmarks[FACE_LANDMARKS][2];
    face_box recognition_crop; /* the aligned square fed to recognition (integers) */
    float descriptor[VG_DESCRIPTOR_DIM];
    int has_descriptor;
} face_face;

typedef struct face_result {
    size_t n;
    face_face *faces; /* owned; sorted by descending score */
} face_result;
void face_result_free(face_result *r);

/* ---- models (shared, read-only) ------------------------------------------------------------- */

typedef struct face_models face_models;

typedef struct face_models_opts {
    int load_ssd;          /* 1: also open the SSD MobileNet v1 detector (5.6 M params) */
    const char *calib_dir; /* int8 calibration files; NULL: <models_dir>/calibration */
} face_models_opts;

/* Opens the weights in models_dir (each file checked against models_dir/SHA256SUMS) and builds
 * the network graphs. opts may be NULL (no SSD). Returns owned. Errors: those of
 * nn_weights_open (the detail names the file), VG_EFORMAT for a tensor of the wrong shape.
 * Missing int8 calibration is not an error here: int8 is then refused when asked for. */
int face_models_open(const char *models_dir, const face_models_opts *opts, face_models **out);
void face_models_free(face_models *m);
/* Bytes of weights held (decoded tfjs tensors plus oneDNN-reordered copies made so far). */
size_t face_models_bytes(const face_models *m);
int face_models_has_ssd(const face_models *m);
/* The network graph (tiny: for input_size; others ignore it). Borrowed. NULL if not loaded. */
const nn_graph *face_models_graph(face_models *m, face_net net, int input_size);
/* Int8 calibration of a network, or NULL if none was found. Borrowed. */
const nn_calib *face_models_calib(const face_models *m, face_net net);

/* Network calls made through face_engine_run by every engine of these models, per network and
 * precision (nn_precision: f32, bf16, int8), for metrics: calls, the inputs they carried, and each
 * call's wall time (plan run and output copy; plan compilation on first use excluded). */
#define FACE_PRECISIONS 3
typedef struct face_inference_stats {
    uint64_t items[FACE_NET_COUNT][FACE_PRECISIONS];
    vg_lat_snapshot latency[FACE_NET_COUNT][FACE_PRECISIONS]; /* .count = calls */
} face_inference_stats;
/* m borrowed; *out written. Thread-safe (atomic reads, not one instant). */
void face_models_inference_stats(const face_models *m, face_inference_stats *out);

/* ---- engine (one replica) ------------------------------------------------------------------- */

typedef struct face_engine face_engine;

typedef struct face_engine_opts {
    nn_backend backend; /* NN_BACKEND_DNNL (default) or NN_BACKEND_REF (tests) */
    int threads;        /* OpenMP threads for this engine's calls; 0 = leave as is */
} face_engine_opts;

/* models is borrowed and must outlive the engine. opts may be NULL for defaults. */
/* The OpenMP threads of the engine's next calls (0: back to opts.threads). Each thread count has
 * plans of its own, since oneDNN fixes a primitive's threads when it is made: switching costs a
 * plan build the first time only. The analysis runs a lone image's networks on every core and
 * batches under load on one thread each (analyze_config.lone_threads). */
void face_engine_set_threads(face_engine *e, int threads);
int face_engine_new(face_models *models, const face_engine_opts *opts, face_engine **out);
void face_engine_free(face_engine *e);
/* Scratch bytes of every plan the engine has compiled so far (activations; excludes the shared
 * weights). */
size_t face_engine_memory(const face_engine *e);
/* The oneDNN implementations of the most recently run plan, e.g. "brgconv:avx512_core ...". */
const char *face_engine_impl(const face_engine *e);

/* The whole pipeline for one image: detect, landmarks, align, describe. out is caller-provided,
 * its faces owned (face_result_free). An image with no face gives n = 0 and returns 0.
 * Errors: VG_EINVAL, VG_EUNSUPPORTED (precision), VG_ENOMEM, VG_EINTERNAL. */
int face_analyze(face_engine *e, const face_image *img, const face_opts *opts, face_result *out);

/* Time spent in each stage of a face_analyze_batch call. */
typedef struct face_stage_ns {
    uint64_t detect, landmarks, describe;
} face_stage_ns;

/* The pipeline for n images at once, with one set of options: the detector runs image by image
 * (its activations are large and batching them gained nothing), then landmarks and recognition
 * on up to 16 crops per call drawn from every image of the batch, so concurrent requests share
 * those network calls.
 * out[0..n) are caller-provided (faces owned, face_result_free each); results are identical to n
 * face_analyze calls. ns may be NULL. On error every out[i] is empty. */
int face_analyze_batch(face_engine *e, const face_image *imgs, size_t n, const face_opts *opts,
                       face_result *out, face_stage_ns *ns);

/* ---- pieces for a batcher ------------------------------------------------------------------- */

/* Floats of one prepared input / of one item's outputs (all outputs concatenated). */
size_t face_net_input_floats(face_net net, int input_size);
size_t face_net_output_floats(face_net net, int input_size);

/* How a detector input relates to its image (needed to decode the boxes). */
typedef struct face_frame {
    uint32_t img_w, img_h;
    int input_size;
} face_frame;

/* Detector input: the image zero-padded to a square at the bottom/right, resized to
 * input_size (TF legacy bilinear), minus the network's mean, /255. dst holds
 * face_net_input_floats(net, input_size). */
int face_prepare_detector(const face_image *img, face_detector det, int input_size, float *dst,
                          face_frame *frame);

/* The integer crop a landmark input came from, needed to decode its output. */
typedef struct face_crop {
    int x, y, w, h;     /* floored, clipped to the image */
    float box_x, box_y; /* the detection box's unfloored origin */
} face_crop;

/* Landmark input from an image and a detection box: VG_ENOFACE if the box lies outside. */
int face_prepare_landmarks(const face_image *img, const face_box *box, float *dst, face_crop *crop);
/* Recognition input from an image and a face's 68 landmarks (dlib alignment, no rotation);
 * *crop receives the square used. VG_ENOFACE if it falls outside the image. */
int face_prepare_recognition(const face_image *img, const float landmarks[FACE_LANDMARKS][2],
                             float *dst, face_box *crop);

/* Runs n prepared inputs (n * face_net_input_floats, borrowed) of one network in one call and
 * writes n * face_net_output_floats to out. Plans are compiled on first use per (network,
 * input size, batch bucket, precision) and reused. */
int face_engine_run(face_engine *e, face_net net, int input_size, nn_precision prec,
                    const float *in, int n, float *out);

/* A detection before landmarks. */
typedef struct face_detection {
    face_box box;
    float score;
} face_detection;

/* Decodes one detector output (tiny or SSD) into at most max detections after NMS, sorted by
 * descending score; *n_out receives the count. m (borrowed) holds the SSD's anchor boxes: it
 * may be NULL for the tiny detector only (VG_EINVAL otherwise). */
int face_decode_detections(const face_models *m, face_detector det, const float *out,
                           const face_frame *frame, float score_threshold, face_detection *dets,
                           size_t max, size_t *n_out);
/* Decodes one landmark output (136 floats) into pixel positions. */
void face_decode_landmarks(const float *out, const face_crop *crop,
                           float landmarks[FACE_LANDMARKS][2]);

/* ---- int8 calibration ---------------------------------------------------------------------- */

/* Recomputes the int8 activation ranges of every loaded network from real face images: each
 * image goes through the f32 pipeline (tiny detector at 416; SSD too if loaded), and the
 * reference backend records max |value| of every tensor for the detector inputs, the landmark
 * crops and the aligned recognition crops. Writes <out_dir>/{tiny,landmarks,recognition,ssd}.txt
 * with `note` (which images, method) in their header. imgs borrowed. Returns VG_ENOFACE if the
 * images hold no face at all. */
int face_calibrate(face_models *m, const face_image *imgs, size_t n, const char *out_dir,
                   const char *note);

/* Euclidean distance of two descriptors. */
float face_distance(const float *a, const float *b);

#endif /* VG_FACE_H */
