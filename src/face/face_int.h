/* face internals: the network builders (one file each) and shared pre/post-processing. */
#ifndef VG_FACE_INT_H
#define VG_FACE_INT_H

#include "face/face.h"
#include "nn/nn.h"

/* Graph builders: read the named tensors from w (borrowed; must outlive the graph) and return
 * a finished graph (owned). Errors name the missing or misshapen tensor. */
int face__tiny_build(const nn_weights *w, int input_size, nn_graph **out);
int face__landmarks_build(const nn_weights *w, nn_graph **out);
int face__recog_build(const nn_weights *w, nn_graph **out);
/* The SSD's batch-norm constants are computed into bn (caller-owned, FACE_SSD_BN_FLOATS, must
 * outlive the graph). */
#define FACE_SSD_BN_FLOATS (2 * 5120)
int face__ssd_build(const nn_weights *w, float *bn, nn_graph **out);

/* face-api's NetInput.toBatchTensor for one crop (x, y, cw, ch) of img: zero-pad to a square
 * (center: split, the larger half appended after; else all appended), TF legacy bilinear resize
 * to size x size (skipped when the square already has that size), then (v - mean[c]) * scale
 * + offset per channel (mean/255 networks: scale 1/255, offset 0; SSD: v/127.5 - 1). */
void face__to_square_tensor(const face_image *img, int x, int y, int cw, int ch, int size,
                            int center, const float mean[3], float div, float offset, float *dst);

/* Greedy NMS as face-api: by descending score, drop a box whose IoU with a kept one is > iou.
 * dets is sorted and compacted in place; returns the number kept (at most max). */
size_t face__nms(face_detection *dets, size_t n, float iou, size_t max);

/* SSD anchor boxes (Output/extra_dim), [5118][4] as ymin, xmin, ymax, xmax... borrowed. */
int face__ssd_decode(const float *out, const float *anchors, const face_frame *frame,
                     float score_threshold, face_detection *dets, size_t max, size_t *n_out);
int face__tiny_decode(const float *out, const face_frame *frame, float score_threshold,
                      face_detection *dets, size_t max, size_t *n_out);

#endif
