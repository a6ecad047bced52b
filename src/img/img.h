/*
 * img: untrusted image bytes -> pixels, safely and fast.
 *
 * Owns: format sniffing (magic bytes only), decoding of JPEG (libturbojpeg, with DCT-domain
 * scaling), PNG (libspng) and WebP (libwebp, first frame of animations), EXIF orientation,
 * limits checked from the header before any pixel buffer is allocated, and the pixel operations
 * other modules share (resizes, colour conversion, crops).
 *
 * Invariants:
 *   - every decode either returns VG_OK with a complete image, or an error code with nothing
 *     allocated; a partial or damaged decode is never passed on as good;
 *   - output is always 8-bit, interleaved, top-left origin, tightly packed (stride = w*channels),
 *     already rotated/flipped by the EXIF orientation unless the caller opted out;
 *   - alpha is composited over opts->background (default white), so callers never see alpha.
 *
 * Thread-safety: all functions are reentrant; no global state besides libjpeg-turbo's own.
 */
#ifndef VG_IMG_H
#define VG_IMG_H

#include <stddef.h>
#include <stdint.h>

#define IMG_DEFAULT_MAX_INPUT_BYTES ((size_t)64 << 20) /* 64 MiB */
/* 64 Mpx (8192 x 8192): every phone and most cameras (a 64 MP sensor's 9248 x 6936 frame fits);
 * bounds any decode's output to 192 MiB of RGB. */
#define IMG_DEFAULT_MAX_PIXELS ((uint64_t)8192 * 8192)
#define IMG_DEFAULT_MAX_DIMENSION ((uint32_t)65500) /* px, either side (JPEG's own max) */
/* Scans (SOS segments) in one JPEG. Encoders write 1 (baseline), 3 (non-interleaved) or about
 * 10 (progressive: libjpeg's and mozjpeg's scripts); each progressive scan is one more pass over
 * the whole coefficient buffer, which is how a 240 KB file asked 9.4 s of a worker. */
#define IMG_DEFAULT_MAX_JPEG_SCANS ((uint32_t)64)
/* Lossless WebP keeps the whole image as 4-byte ARGB inside libwebp besides our output, and its
 * entropy codes may spend zero bits per pixel (a 38-byte file can say 10000 x 10000): 16 Mpx
 * (4096 x 4096) covers 5K screenshots and bounds libwebp's buffer to 64 MiB. */
#define IMG_DEFAULT_MAX_LOSSLESS_PIXELS ((uint64_t)4096 * 4096)
/* Decode work budget in work units (see img_limits.max_decode_work): 2e9 admits a full-size
 * 64 Mpx 4:4:4 progressive JPEG with libjpeg's 10-scan script (about 1.2e9) and any PNG or WebP
 * within the pixel limits; a 499-scan 8192 x 8192 JPEG needs 3.4e10. */
#define IMG_DEFAULT_MAX_DECODE_WORK ((uint64_t)2000000000)
/* Decode memory per encoded byte (see img_limits.max_decode_ratio). A photo needs 10 to 100
 * bytes of pixels per byte of JPEG; a 12 KB PNG asking for 192 MiB of RGB needs 16000. */
#define IMG_DEFAULT_MAX_DECODE_RATIO ((uint32_t)1024)
/* Decode memory any image may use whatever its size: a 4000 x 3000 phone photo is 36 MiB of RGB
 * (72 MiB with the copy an EXIF rotation makes), so no ordinary image meets the ratio rule,
 * however well it compresses; the most a tiny file can ask is this. */
#define IMG_DECODE_FREE_BYTES ((uint64_t)128 << 20)

typedef enum { IMG_FMT_UNKNOWN = 0, IMG_FMT_JPEG, IMG_FMT_PNG, IMG_FMT_WEBP } img_format;

typedef enum { IMG_RGB = 3, IMG_GRAY = 1 } img_pixfmt;

/* Limits an operator may configure. Each check names its limit in the error detail, and all
 * are checked from the headers (and, for JPEG, a walk over its markers) before the library
 * decodes anything, so a refused image costs a header parse, not a decode.
 *
 * Decode work is counted in deterministic work units, not time: one unit is one sample (one
 * component of one pixel) going through one decoder pass. The decoders' cost is a function of
 * what the headers say, so the whole budget is charged before the first pixel:
 *   JPEG: for each scan, the samples of the components it codes (progressive files pass over the
 *         whole coefficient buffer once per scan), plus the output samples;
 *   PNG:  the inflated bytes (height x (1 + row bytes)), plus w*h*4 for the expansion to 8-bit
 *         RGB(A) (8 for 16-bit), plus the output samples;
 *   WebP: w*h*1.5 (lossy YUV 4:2:0) or w*h*4 (lossless ARGB), plus w*h*4 for the RGB(A)
 *         conversion, plus the output samples.
 * Nothing later in the stream can add work: every JPEG scan is counted before decoding, PNG
 * IDAT data beyond the image is not decoded and ancillary chunks are bounded by their own limit,
 * and WebP has no per-image repetition.
 *
 * Decode memory is estimated from the headers the same way (a full-size RGB decode: output,
 * a progressive JPEG's 2-byte coefficients, a CMYK or RGBA intermediate, libwebp's lossless
 * ARGB or animation canvases, the copy an EXIF rotation makes). Beyond IMG_DECODE_FREE_BYTES
 * it may not exceed max_decode_ratio bytes per encoded byte: a tiny file promising hundreds of
 * MiB of pixels (a 12 KB 1-bit PNG of 8192 x 8192) is a decompression bomb, not a photo. */
typedef struct img_limits {
    size_t max_input_bytes;       /* encoded bytes */
    uint64_t max_pixels;          /* width*height as stored in the file, before any scaling */
    uint32_t max_dimension;       /* width and height, each */
    uint32_t max_jpeg_scans;      /* SOS segments in a JPEG */
    uint64_t max_lossless_pixels; /* width*height of a lossless WebP */
    uint64_t max_decode_work;     /* work units (samples x passes) of one decode */
    uint32_t max_decode_ratio;    /* decode bytes per encoded byte beyond IMG_DECODE_FREE_BYTES;
                                     0 = no ratio rule */
} img_limits;

/* Fills the defaults above. */
void img_limits_default(img_limits *l);

/* Which limit refused an image, for the caller's metrics (img keeps no counters itself). */
typedef enum {
    IMG_LIMIT_NONE = -1,
    IMG_LIMIT_INPUT_BYTES = 0, /* max_input_bytes */
    IMG_LIMIT_PIXELS,          /* max_pixels */
    IMG_LIMIT_DIMENSION,       /* max_dimension */
    IMG_LIMIT_JPEG_SCANS,      /* max_jpeg_scans */
    IMG_LIMIT_LOSSLESS_PIXELS, /* max_lossless_pixels */
    IMG_LIMIT_DECODE_WORK,     /* max_decode_work */
    IMG_LIMIT_PNG_CHUNKS,      /* the ancillary chunk limits (zTXt/iCCP bombs) */
    IMG_LIMIT_DECODE_RATIO,    /* max_decode_ratio */
    IMG_LIMIT_COUNT
} img_limit_kind;

/* The limit that refused the calling thread's last img_probe/img_decode, IMG_LIMIT_NONE when
 * it succeeded or failed for another reason (thread-local, like vg_err_msg()). */
img_limit_kind img_last_limit(void);
/* "input_bytes", "pixels", "dimension", "jpeg_scans", "lossless_pixels", "decode_work",
 * "png_chunks", "decode_ratio"; "none" otherwise. Static. */
const char *img_limit_name(img_limit_kind k);

typedef struct img_decode_opts {
    img_limits limits;
    /* IMG_RGB (default) or IMG_GRAY (luma: 0.299R+0.587G+0.114B). JPEG gray is the decoded Y
     * plane (no chroma IDCT, upsampling or colour conversion: the fast path for hashing);
     * other formats and CMYK JPEGs compute (19595R + 38470G + 7471B + 32768) >> 16 from the
     * (composited) RGB. */
    img_pixfmt pixfmt;
    /* Smallest output wanted, in the oriented frame: JPEG is decoded at the smallest DCT scale
     * (1/8, 1/4, 1/2 or 1) whose result is at least min_w x min_h; a 0 side is unconstrained,
     * 0 x 0 means full resolution; never upscaled. Other formats always decode at full
     * resolution (callers resize). */
    uint32_t min_w, min_h;
    int ignore_exif;       /* 1: do not apply EXIF orientation */
    uint8_t background[3]; /* alpha is composited over this colour */
    /* JPEG only, default 0. 1 trades exactness for speed: libjpeg-turbo's fast integer IDCT
     * (TJFLAG_FASTDCT) and plain chroma upsampling (TJFLAG_FASTUPSAMPLE). Leave it 0 wherever
     * pixels must match a reference decoder (the pdq compat pipeline: libjpeg defaults). */
    int fast_dct;
} img_decode_opts;

/* Defaults: limits as above, IMG_RGB, full size, EXIF applied, white background. */
void img_decode_opts_default(img_decode_opts *o);

/* A decoded image. px is owned by the struct; release with img_image_free(). */
typedef struct img_image {
    uint8_t *px;
    uint32_t w, h;         /* output size (after scaling and orientation) */
    int channels;          /* 3 (RGB) or 1 (gray) */
    uint32_t src_w, src_h; /* size stored in the file (before scaling and orientation) */
    img_format format;
    int orientation; /* EXIF orientation found (1..8; 1 if none) */
    int scale_denom; /* JPEG DCT scale used: output ~ src/scale_denom (1 = none) */
} img_image;

/* Header facts, without decoding pixels. */
typedef struct img_info {
    img_format format;
    uint32_t w, h;   /* as stored */
    int orientation; /* EXIF orientation (1..8; JPEG APP1, PNG eXIf, WebP EXIF), 1 if none */
    int has_alpha;
    int frames;    /* 1, or more for animated WebP / APNG where known */
    uint64_t work; /* decode work units (see img_limits) of a full-size RGB decode: a property
                      of the file, the same bound for scaled and gray decodes */
    uint64_t mem;  /* decode memory estimate in bytes, likewise */
} img_info;

/* Format from the leading bytes only (never from a name or a MIME type). */
img_format img_sniff(const uint8_t *buf, size_t len);
/* "jpeg" | "png" | "webp" | "unknown". */
const char *img_format_name(img_format f);

/* Reads the header. Checks every limit of img_limits. Borrowed buf.
 * Errors: VG_EFORMAT (unknown magic), VG_ETRUNC, VG_ECORRUPT (also: more scans than
 * max_jpeg_scans, PNG ancillary chunks over their limits: hostile rather than large),
 * VG_ETOOBIG (bytes), VG_EPIXELS (max_pixels, max_lossless_pixels, max_decode_work,
 * max_decode_ratio), VG_EDIM
 * (zero or over max_dimension). Details via vg_err_msg(), the limit via img_last_limit(). */
int img_probe(const uint8_t *buf, size_t len, const img_limits *limits, img_info *out);

/* Decodes buf into *out (caller-provided struct; pixels returned owned). opts may be NULL for
 * defaults. Same errors as img_probe, plus VG_ENOMEM. On error *out is zeroed.
 * Truncation is always an error (VG_ETRUNC): a JPEG must reach its EOI marker, a PNG its IEND
 * chunk, a WebP its RIFF size. libjpeg warnings are errors (VG_ECORRUPT) except harmless ones
 * (stray bytes between markers, unknown JFIF version, ...); PNG CRCs and Adler-32 are checked.
 * Alpha compositing, c = colour, a = alpha, bg = background:
 *   8-bit samples:  out = (a*c + (255-a)*bg + 127) / 255
 *   16-bit PNG:     out = round((a*c + (65535-a)*bg*257) / (65535*257))   (one rounding)
 * CMYK/YCCK JPEG: Adobe (APP14) files store inverted CMYK, R = C*K/255 (rounded); files without
 * an Adobe marker are read as plain CMYK, R = (255-C)(255-K)/255. Animated WebP gives its first
 * frame as composited on the canvas; APNG its default image. */
int img_decode(const uint8_t *buf, size_t len, const img_decode_opts *opts, img_image *out);

/* Frees the pixels and zeroes the struct. NULL and an already-freed image are no-ops. */
void img_image_free(img_image *im);

/* ---- pixel operations shared by pdq and face ---------------------------------------------- */

/* Nearest-neighbour resize of interleaved 8-bit pixels (any channel count), the sampling PDQ's
 * reference hasher uses for its 512x512 downscale: src index = floor(dst * src_size / dst_size).
 * dst must hold dw*dh*channels bytes. */
void img_resize_nearest(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, uint8_t *dst,
                        uint32_t dw, uint32_t dh);

/* Luma (0.299R + 0.587G + 0.114B) of RGB pixels as floats, the input PDQ hashes. dst holds n. */
void img_rgb_to_luma_f32(const uint8_t *rgb, size_t n, float *dst);

/* Applies an EXIF orientation (1..8) to an image in place (may swap w and h; reallocates).
 * Returns VG_ENOMEM or VG_EINVAL (orientation out of range). On error *im is unchanged.
 * Mapping, for the displayed image D (W x H) from the stored image S (w x h):
 *   1 D(x,y)=S(x,y)        2 S(w-1-x,y)        3 S(w-1-x,h-1-y)      4 S(x,h-1-y)
 *   5 S(y,x)               6 S(y,h-1-x)        7 S(w-1-y,h-1-x)      8 S(w-1-y,x)
 * (6 = rotate 90 degrees clockwise to display, 8 = counter-clockwise; 5..8 swap W and H). */
int img_apply_orientation(img_image *im, int orientation);

/* Copies the rectangle (x, y, w, h) of src (borrowed) into *out (pixels returned owned; free
 * with img_image_free). Other fields are copied from src. VG_EINVAL when the rectangle is empty
 * or not inside src; VG_ENOMEM. On error *out is untouched. */
int img_crop(const img_image *src, uint32_t x, uint32_t y, uint32_t w, uint32_t h, img_image *out);

/* Bilinear resize of interleaved 8-bit pixels (1..4 channels) to floats, with TensorFlow's
 * resize_bilinear sampling: scale = (float)src/dst per axis; source coordinate s = d*scale, or
 * (d+0.5)*scale-0.5 with half_pixel_centers; taps floor(s) and ceil(s) clamped to [0, size-1];
 * top = a + (b-a)*fx, bottom likewise, out = top + (bottom-top)*fy, all in float.
 * dst holds dw*dh*channels floats. Borrowed buffers. VG_EINVAL, VG_ENOMEM (a dw-entry table). */
int img_resize_bilinear_f32(const uint8_t *src, uint32_t sw, uint32_t sh, int channels, float *dst,
                            uint32_t dw, uint32_t dh, int half_pixel_centers);

#endif /* VG_IMG_H */
