/*
 * img internals shared by the per-library wrappers (img_jpeg.c, img_png.c, img_webp.c) and the
 * dispatcher (img.c). Not part of the public API.
 *
 * Contract of every img__<fmt>_probe / img__<fmt>_decode:
 *   - buf/len are borrowed, already sniffed as that format and already checked against
 *     limits->max_input_bytes;
 *   - dimensions are checked with img__check_dims() before any pixel buffer is allocated;
 *   - on success *out holds a complete image (px owned by *out, allocated with vg_malloc);
 *     on error nothing is left allocated, *out is untouched and a vg_err_set() detail is set.
 */
#ifndef VG_IMG_INT_H
#define VG_IMG_INT_H

#include "img/img.h"

/* Checks a header's stored size against the limits: zero sides (VG_EDIM), width*height over
 * max_pixels (VG_EPIXELS), either side over max_dimension (VG_EDIM). The detail names the limit.
 * fmt is the format name for the message (borrowed). */
int img__check_dims(const char *fmt, uint32_t w, uint32_t h, const img_limits *limits);

/* Sets a vg_err detail and the thread's img_last_limit() to k; returns code. */
int img__limit_fail(img_limit_kind k, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A decode's cost as estimated from the headers (see img_limits). */
typedef struct img_cost {
    uint64_t work; /* work units */
    uint64_t mem;  /* bytes */
} img_cost;

/* Checks a decode's cost against max_decode_work and, for an input of len bytes,
 * max_decode_ratio (VG_EPIXELS naming the limit). fmt is the format name (borrowed). */
int img__check_cost(const char *fmt, img_cost cost, size_t len, const img_limits *limits);

/* Bytes of an 8-bit interleaved image, overflow-checked (VG_ETOOBIG on overflow). */
int img__image_bytes(uint32_t w, uint32_t h, int channels, size_t *out);

/* Fixed-point BT.601 luma, the same weights and rounding as libjpeg's RGB->gray conversion:
 * (19595 R + 38470 G + 7471 B + 32768) >> 16, weights summing to 65536. */
static inline uint8_t img__luma8(uint32_t r, uint32_t g, uint32_t b)
{
    return (uint8_t)((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
}

/* Writes the EXIF-oriented copy of src (sw x sh, channels 1..4) into dst, which must hold the
 * same number of bytes; dst is (sh x sw) for orientations 5..8. Borrowed buffers, not aliased. */
void img__orient_copy(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, int orientation,
                      uint8_t *dst);

/* Unsigned 16/32-bit reads in either byte order (big = 1: big-endian), for the container and
 * EXIF walks: PNG chunks are big-endian, RIFF (WebP) little-endian, TIFF either. */
static inline uint32_t img__rd16(const uint8_t *p, int big)
{
    return big ? ((uint32_t)p[0] << 8 | p[1]) : ((uint32_t)p[1] << 8 | p[0]);
}

static inline uint32_t img__rd32(const uint8_t *p, int big)
{
    return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
               : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

/* EXIF orientation (1..8) from a TIFF-structured EXIF block (the APP1 payload after
 * "Exif\0\0"), borrowed. Malformed or absent data gives 1; never fails. */
int img__exif_orientation(const uint8_t *tiff, size_t len);
/* EXIF orientation of a PNG (its eXIf chunk) or a WebP (its EXIF chunk, with or without the
 * "Exif\0\0" prefix some writers keep), by a bounded walk over the container's chunks; 1 when
 * absent or malformed (the decoder judges the file itself). buf borrowed. */
int img__png_orientation(const uint8_t *buf, size_t len);
int img__webp_orientation(const uint8_t *buf, size_t len);

int img__jpeg_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out);
int img__jpeg_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out);
int img__png_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out);
int img__png_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out);
int img__webp_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out);
int img__webp_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out);

#endif /* VG_IMG_INT_H */
