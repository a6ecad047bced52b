/*
 * pdq internals shared by the hashing core (pdq_core.c), its SIMD kernels (pdq_avx2.c) and the
 * image pipelines (pdq_image.c). Not part of the public API.
 *
 * Every float kernel here performs, for each output element, exactly the sequence of IEEE
 * single-precision operations the C++ reference performs (same operands, same order, no fused
 * multiply-add: the module is compiled with -ffp-contract=off). SIMD versions only change which
 * elements are computed side by side, never the order of the additions within one element, so
 * every tier produces identical bits.
 */
#ifndef VG_PDQ_INT_H
#define VG_PDQ_INT_H

#include "pdq/pdq.h"

#define PDQ__DCT_N 16 /* coefficients kept per axis */
#define PDQ__DS_N 64  /* side of the decimated image */
#define PDQ__STRIP 16 /* rows per transposed strip in the AVX2 row pass */

struct pdq_ctx {
    float *planes;    /* two planes of plane_cap floats each, 64-byte aligned */
    size_t plane_cap; /* floats per plane */
    float *strip; /* transposed strips for the AVX2 row passes: 16 x w in, 16 x max(w, 64) out */
    size_t strip_cap; /* floats */
    uint8_t *bytes;   /* byte scratch for the image pipelines (resized / reduced pixels) */
    size_t bytes_cap;
    pdq_impl impl;
    /* D[i][k] = sqrt(2/64) cos(pi/128 (i+1)(2k+1)), rounded to float like the reference. */
    float dct[PDQ__DCT_N * PDQ__DS_N];
    float dct_t[PDQ__DS_N * PDQ__DCT_N]; /* its transpose, for the second product */
};

/* Box-filter window for a side of n pixels and a 64-sample output: ceil(n / 128). */
static inline int pdq__window(int n)
{
    return (n + 2 * PDQ__DS_N - 1) / (2 * PDQ__DS_N);
}

/* One 1-D box filter of window win along n elements spaced by stride (in floats): the
 * reference's running sum with shrunken windows at both ends. in and out do not alias. */
void pdq__box_line(const float *in, float *out, int n, ptrdiff_t stride, int win);
/* The same filter computing only the outputs listed in pick (npick indices, non-decreasing):
 * the p-th goes to out[p * out_stride], with the bits pdq__box_line would give it. */
void pdq__box_line_pick(const float *in, int n, ptrdiff_t stride, int win, const int *pick,
                        int npick, float *out, ptrdiff_t out_stride);

/* pdq_hash_luma without the per-value range check, for luma this module computed itself. */
int pdq__hash_f32_trusted(pdq_ctx *ctx, const float *luma, uint32_t w, uint32_t h, unsigned flags,
                          pdq_result *out);

/* Makes sure the context holds `need` bytes of byte scratch (contents not kept). */
int pdq__ctx_bytes(pdq_ctx *ctx, size_t need, uint8_t **out);

/* pdq_copy.c: the rectangle (x, y, cw, ch) of 8-bit grey pixels (stride bytes per row, decoded
 * at 1/k of the file's size) hashed as pdq_hash_decoded would hash an upload of just that
 * rectangle (flags: PDQ_WANT_*). Errors: VG_ENOMEM and pdq_hash_decoded's. */
/* Moves each side of the rectangle r (x0, y0, x1, y1 of gray, stride bytes per row) inwards
 * past up to max_lines lines that are flat across it (as pdq_copy_peel's), so a rectangle
 * scaled from a smaller decode loses the line of frame its rounding left. */
void pdq__refine_rect(const uint8_t *gray, size_t stride, uint32_t r[4], uint32_t max_lines);
int pdq__hash_region_as_upload(pdq_ctx *ctx, const uint8_t *gray, size_t stride, uint32_t x,
                               uint32_t y, uint32_t cw, uint32_t ch, uint32_t k, unsigned flags,
                               pdq_result *out);

#if defined(__x86_64__) || defined(__i386__)
#define PDQ__HAVE_AVX2 1
/* AVX2 kernels (pdq_avx2.c); same contracts and bits as the portable ones in pdq_core.c. */
void pdq__rows_avx2(const float *in, float *out, int h, int w, int win, float *strip);
void pdq__cols_avx2(const float *in, float *out, int h, int w, int win);
/* Third pass kept at the 64 decimation columns (out h x 64) and fourth pass on those, kept at
 * the 64 decimation rows (a64). */
void pdq__rows_pick_avx2(const float *in, float *out, int h, int w, int win, const int *cols,
                         float *strip);
void pdq__cols_pick_avx2(const float *in, float *a64, int h, int win, const int *rows);
/* Grid sampling helper of the fast pipeline: out[x] = top[x] + (bot[x] - top[x]) * fy. */
void pdq__lerp_rows_avx2(const float *top, const float *bot, float fy, float *out, int n);
void pdq__dct_avx2(const float *dct, const float *dct_t, const float *a64, float *b16);
void pdq__rgb_to_f32_avx2(const uint8_t *px, int w, int h, size_t stride, float *out);
void pdq__gray_to_f32_avx2(const uint8_t *px, int w, int h, size_t stride, float *out);
/* lerp_row of the grid sampling (pdq_image.c), row w bytes wide, gw grid columns. */
void pdq__lerp_row_avx2(const uint8_t *row, uint32_t w, const uint32_t *x0, const uint32_t *x1,
                        const float *fx, uint32_t gw, float *out);
/* pdq_rgb_to_luma8, 8 pixels per step (the same integers). */
void pdq__rgb_to_gray8_avx2(const uint8_t *rgb, size_t npix, uint8_t *gray);
#endif

#endif /* VG_PDQ_INT_H */
