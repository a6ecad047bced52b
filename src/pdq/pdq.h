/*
 * pdq: Meta's PDQ perceptual hash (facebook/ThreatExchange, pdq/), written from its published
 * description, with the reference's exact float arithmetic so that hashes match the C++
 * reference bit for bit when fed the same pixels.
 *
 * The algorithm, top to bottom:
 *   1. luminance Y = 0.299 R + 0.587 G + 0.114 B, in float (grey sources use the grey value);
 *   2. a two-pass Jarosz tent filter: a box filter along rows then along columns, twice, with
 *      window ceil(side / 128) per axis, so each of the 64x64 output samples sees its whole cell;
 *   3. decimation to 64x64 by taking the filtered sample at each cell centre;
 *   4. quality: the sum of quantised gradients of the 64x64 image, /90, capped at 100;
 *   5. 16x16 DCT: coefficients 1..16 of the 64-point DCT-II along each axis (B = D A D^T);
 *   6. one bit per coefficient: 1 if it is above the median of the 256 coefficients.
 * The eight dihedral hashes (rotations and flips of the image) come from the one DCT by sign
 * flips and a transpose of the 16x16 coefficients, without touching the pixels again.
 *
 * Bit order: bit k (0..255) is coefficient (k / 16, k % 16) and lives in w[k / 64] at bit
 * k % 64. The 64-hex text is the 256-bit number written most significant digit first, which is
 * the reference's "16-bit words 15..0, each %04x" format.
 *
 * Two pipelines from encoded bytes (decoding goes through the img module):
 *   - PDQ_MODE_COMPAT: what Meta's pdq-photo-hasher does: full decode, EXIF ignored, images
 *     with a side over 512 px resized to 512x512 by nearest neighbour, then hashed;
 *   - PDQ_MODE_FAST (default): the JPEG's Y plane alone (no chroma, no colour conversion, no
 *     RGB), EXIF applied, sampled at the reference's own 512x512 grid so the tent filter sees
 *     the reference's pixels; within 8 bits of the reference on every image tried, large
 *     photos included (tests/test_pdq_images.c holds it to 10). A DCT-scaled decode
 *     (fast_min_side) is cheaper but averages away the fine detail the reference's
 *     nearest-neighbour grid aliases, up to 70 bits off on fine textures (docs/BENCHMARKS.md).
 *
 * Thread-safety: a pdq_ctx is scratch memory owned by one thread at a time; everything else is
 * reentrant and uses no global state.
 */
#ifndef VG_PDQ_H
#define VG_PDQ_H

#include <stddef.h>
#include <stdint.h>

#include "img/img.h"

#define PDQ_HASH_BITS 256
#define PDQ_HEX_CHARS 64
#define PDQ_HEX_BYTES 65            /* 64 hex digits + NUL */
#define PDQ_MIN_RELIABLE_QUALITY 50 /* below this a hash is flagged unreliable for matching */
#define PDQ_MIN_SIDE_PX 5           /* smaller images hash to all zeros with quality 0 */
#define PDQ_COMPAT_MAX_SIDE_PX 512  /* the reference's resize threshold and target */
/* Default short side pdq_hash_image_copies (the analysis pipeline) DCT-scales a large JPEG down
 * to. pdq_hash_image's fast mode does not scale by default: every pixel the reference's grid
 * picks is decoded exactly (a 1/8-scale decode drifted 12-40 bits on large q80-q100 photos,
 * issue 13); the copy hashes on a full-resolution decode cost 2-4x and find other bars. */
#define PDQ_FAST_MIN_SIDE_PX 128
/* The float scratch of one hash is two planes of max(w, 64) * h floats; larger inputs are
 * refused (the pipelines never get near it: both hash at most 512x512). */
#define PDQ_MAX_HASH_PIXELS ((uint64_t)1 << 25)

/* A 256-bit PDQ hash. Plain value; compare with pdq_hash_equal / pdq_distance. */
typedef struct pdq_hash {
    uint64_t w[4];
} pdq_hash;

/* The eight dihedral transforms of an image, in the reference's output order. Each value names
 * the transform applied to the image whose hash is given. */
typedef enum {
    PDQ_XF_ORIGINAL = 0,
    PDQ_XF_ROTATE90, /* 90 degrees anticlockwise */
    PDQ_XF_ROTATE180,
    PDQ_XF_ROTATE270,
    PDQ_XF_FLIPX,       /* mirrored top to bottom (about the horizontal axis) */
    PDQ_XF_FLIPY,       /* mirrored left to right (about the vertical axis) */
    PDQ_XF_FLIP_PLUS1,  /* transposed about the main diagonal */
    PDQ_XF_FLIP_MINUS1, /* transposed about the anti-diagonal */
    PDQ_NUM_XFORMS
} pdq_xform;

/* Result of one hash. */
typedef struct pdq_result {
    pdq_hash hash;    /* the image's hash (== dihedral[PDQ_XF_ORIGINAL] when computed) */
    int quality;      /* 0..100 */
    int unreliable;   /* 1 when quality < PDQ_MIN_RELIABLE_QUALITY */
    int has_dihedral; /* 1 when dihedral[] was filled */
    pdq_hash dihedral[PDQ_NUM_XFORMS];
} pdq_result;

/* Flags for the hashing calls. */
enum {
    PDQ_WANT_DIHEDRAL = 1u << 0, /* also fill result.dihedral[] */
};

/* ---- hashing context ---------------------------------------------------------------------- */

/* Scratch memory (float planes, DCT matrix) reused across calls so a hash allocates nothing
 * once the context has grown to the largest image seen. One thread at a time. */
typedef struct pdq_ctx pdq_ctx;

/* Returns owned (free with pdq_ctx_free); NULL on out of memory. The SIMD level is chosen from
 * vg_cpu_features() (VIGIL_CPU_MASK=0 forces the portable path). */
pdq_ctx *pdq_ctx_new(void);
/* NULL is a no-op. */
void pdq_ctx_free(pdq_ctx *ctx);
/* Bytes of scratch the context holds now (for memory reports). */
size_t pdq_ctx_scratch_bytes(const pdq_ctx *ctx);

/* Implementation tiers of the float kernels (box filter, DCT). All produce identical bits. */
typedef enum { PDQ_IMPL_PORTABLE = 0, PDQ_IMPL_AVX2 = 1 } pdq_impl;
/* Forces a tier (tests, benchmarks). VG_EUNSUPPORTED if this CPU lacks it; ctx borrowed. */
int pdq_ctx_set_impl(pdq_ctx *ctx, pdq_impl impl);
pdq_impl pdq_ctx_impl(const pdq_ctx *ctx);

/* ---- hashing pixels ----------------------------------------------------------------------- */

/* Hash of 8-bit grey pixels (w x h, row stride in bytes >= w). Luma is the grey value.
 * ctx and px borrowed. Errors: VG_EINVAL (NULL, stride < w), VG_EPIXELS (over
 * PDQ_MAX_HASH_PIXELS), VG_ENOMEM. Images under PDQ_MIN_SIDE_PX on a side give hash 0,
 * quality 0. */
int pdq_hash_gray8(pdq_ctx *ctx, const uint8_t *px, uint32_t w, uint32_t h, size_t stride,
                   unsigned flags, pdq_result *out);
/* Hash of interleaved 8-bit RGB pixels (stride in bytes >= 3w), luma in float with the
 * reference's coefficients. Same contract as pdq_hash_gray8. */
int pdq_hash_rgb8(pdq_ctx *ctx, const uint8_t *px, uint32_t w, uint32_t h, size_t stride,
                  unsigned flags, pdq_result *out);
/* Hash of a float luma plane (w x h, tightly packed, borrowed and not modified). */
int pdq_hash_luma(pdq_ctx *ctx, const float *luma, uint32_t w, uint32_t h, unsigned flags,
                  pdq_result *out);

/* ---- hashing encoded images --------------------------------------------------------------- */

typedef enum { PDQ_MODE_FAST = 0, PDQ_MODE_COMPAT = 1 } pdq_mode;

typedef struct pdq_image_opts {
    pdq_mode mode;
    unsigned flags;    /* PDQ_WANT_* */
    img_limits limits; /* decoder limits (bytes, pixels, dimensions) */
    /* fast mode: a JPEG is DCT-scaled down while both sides stay >= this (0 = the default:
     * full resolution for pdq_hash_image, PDQ_FAST_MIN_SIDE_PX for pdq_hash_image_copies);
     * about half the decode work at 1/8 on a q90 photo, at the price of drift on fine
     * detail; the hashed grid is the reference's whatever the value */
    uint32_t fast_min_side;
} pdq_image_opts;

/* Fast mode, no dihedral hashes, img's default limits. */
void pdq_image_opts_default(pdq_image_opts *o);

typedef struct pdq_image_result {
    pdq_result r;
    uint32_t width, height;      /* the image's size: oriented (fast) or as stored (compat) */
    uint32_t hashed_w, hashed_h; /* size of the pixels that went into the tent filter */
    img_format format;
    uint64_t decode_ns; /* decoding (and any resize to the hashed size) */
    uint64_t hash_ns;   /* hashing proper */
} pdq_image_result;

/* Decodes buf (borrowed, len bytes) with the img module and hashes it; ctx and opts borrowed,
 * opts NULL for the defaults. Errors: every img_decode error (VG_EFORMAT, VG_ETRUNC,
 * VG_ECORRUPT, VG_ETOOBIG, VG_EPIXELS, VG_EDIM, VG_ENOMEM) with its detail, VG_EINVAL.
 * *out is written only on success. */
int pdq_hash_image(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                   pdq_image_result *out);

/* The fast pipeline's hashing step on an image the caller already decoded (gray or RGB, e.g.
 * one decode shared with the face detector): luma, then the reference's 512x512 sampling grid for
 * images with a side over 512 px (the DCT scale in im->scale_denom and the EXIF orientation in
 * im->orientation are taken into account, so im must be decoded with its orientation applied,
 * ignore_exif = 0), then the hash. A JPEG decoded to RGB gives within a
 * bit or two of the gray decode's hash (Y recomputed from RGB). im borrowed. Errors: VG_EINVAL,
 * VG_ENOMEM. res->decode_ns holds only the luma/resampling time. */
int pdq_hash_decoded(pdq_ctx *ctx, const img_image *im, unsigned flags, pdq_image_result *res);

/* The 8-bit luma plane the fast pipeline and the copy hashes take from an RGB decode:
 * (19595 R + 38470 G + 7471 B + 32768) >> 16 (BT.601, as JPEG's Y), npix interleaved pixels to
 * npix bytes (AVX2 when the CPU has it; the same bytes either way). A caller that hashes one RGB
 * decode several times converts it once and passes pdq_hash_decoded and pdq_copy_hashes a
 * 1-channel view of it (the same img_image fields, channels 1, px the plane): the hashes are
 * those of the RGB image, without converting it again in each. */
void pdq_rgb_to_luma8(const uint8_t *rgb, size_t npix, uint8_t *gray);

/* "fast" | "compat"; pdq_mode_parse returns VG_EINVAL for anything else. */
const char *pdq_mode_name(pdq_mode m);
int pdq_mode_parse(const char *s, pdq_mode *out);

/* ---- hashes: text, bits, distance --------------------------------------------------------- */

/* Writes 64 lower-case hex digits and a NUL into out (PDQ_HEX_BYTES). Returns out. */
char *pdq_hash_to_hex(const pdq_hash *h, char out[PDQ_HEX_BYTES]);
/* Parses exactly 64 hex digits (either case), nothing else. VG_EINVAL otherwise (out untouched). */
int pdq_hash_from_hex(const char *hex, pdq_hash *out);

static inline int pdq_hash_get_bit(const pdq_hash *h, unsigned k)
{
    return (int)((h->w[(k & 255u) >> 6] >> (k & 63u)) & 1u);
}

static inline int pdq_hash_equal(const pdq_hash *a, const pdq_hash *b)
{
    return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

/* Number of set bits, 0..256. */
int pdq_hash_norm(const pdq_hash *h);

/* The reference's total order on hashes (its operator<): 16-bit words compared from word 0
 * (the last four hex digits) up. Returns <0, 0, >0. */
int pdq_hash_compare(const pdq_hash *a, const pdq_hash *b);

/* Hamming distance (0..256) with plain C popcounts: when inlined into a function compiled for
 * POPCNT (target("popcnt") or the VPOPCNTDQ kernels) each popcount is one instruction. Use it
 * inside your own SIMD-targeted loops; elsewhere prefer pdq_distance(). */
static inline int pdq_distance_inline(const pdq_hash *a, const pdq_hash *b)
{
    return __builtin_popcountll(a->w[0] ^ b->w[0]) + __builtin_popcountll(a->w[1] ^ b->w[1]) +
           __builtin_popcountll(a->w[2] ^ b->w[2]) + __builtin_popcountll(a->w[3] ^ b->w[3]);
}

/* Hamming distance 0..256, using the POPCNT instruction when the CPU has it. a, b borrowed. */
int pdq_distance(const pdq_hash *a, const pdq_hash *b);

/* out[i] = distance(q, hs[i]) for i < n, with the best popcount this CPU has (AVX-512
 * VPOPCNTDQ, POPCNT, portable). q, hs borrowed; out holds n. */
void pdq_distance_many(const pdq_hash *q, const pdq_hash *hs, size_t n, uint16_t *out);

/* Popcount tiers of pdq_distance_many, for tests and benchmarks. */
typedef enum { PDQ_POPCNT_PORTABLE = 0, PDQ_POPCNT_HW = 1, PDQ_POPCNT_AVX512 = 2 } pdq_popcnt_impl;
/* 1 when this CPU (after VIGIL_CPU_MASK) can run impl. */
int pdq_popcnt_available(pdq_popcnt_impl impl);
/* pdq_distance_many with a forced tier; VG_EUNSUPPORTED when unavailable. */
int pdq_distance_many_impl(pdq_popcnt_impl impl, const pdq_hash *q, const pdq_hash *hs, size_t n,
                           uint16_t *out);

/* ---- copy detection beyond the whole image (docs/MATCHING.md) ------------------------------
 *
 * Hashes of parts and true mirrors of an image, besides its whole-image hash, so that a copy
 * with a frame, a letterbox, a caption bar or a crop, or a mirrored small image, still meets
 * its original. Each extra hash carries its region; the whole-image hash stays what the
 * pipelines above compute (compat stays bit-exact, these are never used there). */

typedef enum {
    PDQ_REGION_WHOLE = 0,    /* the image as is (the pipelines' hash) */
    PDQ_REGION_TRIMMED = 1,  /* uniform bars, frames and caption bars trimmed off */
    PDQ_REGION_FLIP = 2,     /* the mirrored pixels (left to right), hashed anew */
    PDQ_REGION_CENTRE90 = 3, /* central 90% of each side */
    PDQ_REGION_CENTRE80 = 4, /* central 80% of each side */
    PDQ_REGION_TOP = 5,      /* the top half (variant 0 only): compared with top halves only */
    PDQ_REGION_BOTTOM = 6,   /* the bottom half, likewise */
    PDQ_REGION_COUNT
} pdq_region;

/* The regions compared with each other and with the whole image (bit r for region r): every
 * region but the halves, which meet only the same half (docs/MATCHING.md, "Logos and text"). */
#define PDQ_REGION_SHARED_MASK                                                                     \
    ((1u << PDQ_REGION_WHOLE) | (1u << PDQ_REGION_TRIMMED) | (1u << PDQ_REGION_FLIP) |             \
     (1u << PDQ_REGION_CENTRE90) | (1u << PDQ_REGION_CENTRE80))

/* "whole" | "trimmed" | "flip" | "centre90" | "centre80" | "top" | "bottom". */
const char *pdq_region_name(pdq_region r);

/* What pdq_copy_hashes computes. */
enum {
    PDQ_COPY_TRIM = 1u << 0,    /* the trimmed content region, when bars are found */
    PDQ_COPY_FLIP = 1u << 1,    /* the mirrored pixels, when the image is small */
    PDQ_COPY_REGIONS = 1u << 2, /* the centre crops (references) */
    PDQ_COPY_HALVES = 1u << 3,  /* the top and bottom halves, variant 0 only (as pdq_copy_parts) */
};
/* Trimmed sets beside the lenient bars' (pdq_copy_find_bars): the peeled content
 * (pdq_copy_peel) and the caption candidate (pdq_copy_find_content), each kept when it is
 * another rectangle. */
#define PDQ_COPY_TRIM_CANDIDATES 2
#define PDQ_COPY_MAX_HASHES 8
/* A bar is trimmed when it is at least this share of its side (per mille): thinner ones are the
 * ringing of a JPEG edge or a photo's own dark rim, and PDQ does not notice them anyway. */
#define PDQ_COPY_MIN_TRIM_PERMILLE 20
/* What is left after trimming must be at least this share of each side (per mille), else the
 * image is taken as flat and nothing is trimmed on that axis. */
#define PDQ_COPY_MIN_CONTENT_PERMILLE 300
/* Mirrored pixels are hashed when the image's long side is at most this (px): above it the
 * derived dihedral hashes are within a few bits of the true ones. */
#define PDQ_COPY_FLIP_MAX_SIDE_PX 384

typedef struct pdq_copy_hash {
    pdq_region region;
    int quality;
    uint32_t rect[4]; /* the region hashed: x, y, width, height in px of the given image */
    pdq_hash dihedral[PDQ_NUM_XFORMS]; /* [0] is the region's hash; halves: [0] only, the
                                        * others zero (a half of a rotated copy is another half) */
} pdq_copy_hash;

typedef struct pdq_copy_set {
    size_t n;
    pdq_copy_hash h[PDQ_COPY_MAX_HASHES];
    uint32_t trim[4]; /* bars found, in px of the given image: left, top, right, bottom */
} pdq_copy_set;

/* Finds uniform or near-uniform bars (JPEG noise allowed) and caption strips (a bar with text
 * on it) on each side of 8-bit grey pixels (w x h, stride bytes per row; borrowed). Writes the
 * bar widths (left, top, right, bottom) into trim; returns 1 when any bar was found. */
int pdq_copy_find_bars(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride,
                       uint32_t trim[4]);

/* The content left inside strict bars (each line from the edge in as flat as the edge line, in
 * its colour; rows first, then columns across the rows left, round after round), or with
 * caption set, after a caption strip cut at the top and bottom first (from a flat edge line to
 * the farthest flat line within 35% of the height). The same arguments and trim as
 * pdq_copy_find_bars; returns 1 when anything was trimmed. docs/MATCHING.md, "Why framed
 * copies are missed". */
int pdq_copy_find_content(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride, int caption,
                          uint32_t trim[4]);

/* The content left after peeling flat lines (every pixel within 8 levels of the line's median)
 * one at a time from any side, each measured across the rectangle left, until no side's
 * outermost line is flat; the content keeps at least 15% of each side. A frame around an image
 * peels to the image's own peeled content. The same arguments and trim as pdq_copy_find_bars;
 * returns 1 when a side lost at least 2% (PDQ_COPY_MIN_TRIM_PERMILLE). docs/MATCHING.md,
 * "Peeled content". */
int pdq_copy_peel(const uint8_t *gray, uint32_t w, uint32_t h, size_t stride, uint32_t trim[4]);

/* The extra hashes (what: PDQ_COPY_* flags) of a decoded image (gray or RGB, upright, any
 * size; borrowed), each with its 8 dihedral hashes. ctx borrowed. *out is overwritten; regions
 * that do not apply (no bars, not small) are left out. Errors: VG_EINVAL, VG_ENOMEM. */
int pdq_copy_hashes(pdq_ctx *ctx, const img_image *im, unsigned what, pdq_copy_set *out);

/* pdq_hash_image (fast mode only, but a large JPEG DCT-scaled to PDQ_FAST_MIN_SIDE_PX unless
 * fast_min_side says otherwise) plus pdq_copy_hashes(what) on the same decode: what the
 * analysis pipeline computes for copy detection. A large image whose trimmed content came out
 * under fast_min_side on its short side is decoded once more, larger, for the content's hash
 * (letterboxed screenshots; counted in decode_ns). copies borrowed, overwritten. Errors as both. */
int pdq_hash_image_copies(pdq_ctx *ctx, const uint8_t *buf, size_t len, const pdq_image_opts *opts,
                          unsigned what, pdq_image_result *out, pdq_copy_set *copies);

/* Parts of an image that a logo in a corner, a watermark across the middle or a caption on the
 * photo leaves intact: each half of it. A copy's part is compared with the same part of the
 * references only (an index of its own per part, one hash each): a half is a smaller picture
 * than the whole, and matched against every entry it would meet more strangers.
 * docs/MATCHING.md, "Logos and text": on the Debian set, logo 41.7% -> 98.6% and text overlay
 * 47.0% -> 96.9%, no false match added. The server searches the top and bottom halves
 * (pdq_copy_hashes with PDQ_COPY_HALVES: the same hashes as PDQ_PART_TOP / _BOTTOM). */
typedef enum {
    PDQ_PART_TOP = 0, /* the top half */
    PDQ_PART_BOTTOM,  /* the bottom half */
    PDQ_PART_LEFT,    /* the left half */
    PDQ_PART_RIGHT,   /* the right half */
    PDQ_PART_COUNT
} pdq_part;

/* "top" | "bottom" | "left" | "right". */
const char *pdq_part_name(pdq_part p);

typedef struct pdq_part_set {
    pdq_hash h[PDQ_PART_COUNT];  /* variant 0 only: a part of a rotated copy is another part */
    int quality[PDQ_PART_COUNT]; /* 0 where the part is under PDQ_MIN_SIDE_PX (not hashed) */
} pdq_part_set;

/* The parts' hashes of a decoded image (gray or RGB, upright, any size; borrowed), e.g. the
 * decode pdq_hash_image hashes. ctx borrowed; *out overwritten. Errors: VG_EINVAL, VG_ENOMEM. */
int pdq_copy_parts(pdq_ctx *ctx, const img_image *im, pdq_part_set *out);

#endif /* VG_PDQ_H */
