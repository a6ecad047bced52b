/*
 * video: untrusted video bytes -> vPDQ hashes, and vPDQ matching through an index.
 *
 * vPDQ (Meta, facebook/ThreatExchange vpdq/) hashes a video as the PDQ hashes of frames sampled
 * from it, each with its frame number, timestamp and quality. Two videos match when enough of
 * their unique frames have a counterpart within a PDQ distance (see video_match_opts).
 *
 * Decoding (libavformat/libavcodec/libswscale, reached only from video_av.c):
 *   - the container is sniffed from magic bytes (MP4/MOV, Matroska/WebM) and opened with that
 *     one demuxer; no other demuxer ever probes the bytes, and no protocol is reachable (the
 *     bytes are read through our own in-memory I/O);
 *   - the codec must be on an allow-list (H.264, HEVC, VP8, VP9, AV1);
 *   - resolution, pixels, duration and frame count are checked from the headers before the
 *     first packet is decoded, and again while decoding (a stream may lie in its header);
 *   - by default it all runs in a forked child with an address-space limit (RLIMIT_AS), a CPU
 *     time limit (RLIMIT_CPU), no file writes (RLIMIT_FSIZE 0), every inherited descriptor but
 *     the result pipe closed, and a wall deadline after which the parent kills it. A crash,
 *     hang or memory blow-up of the decoder costs the child only; the caller gets an error.
 *
 * Sampling: frames are kept by timestamp at `rate` per second (the first frame at or after each
 * k/rate). Decoded frames that are not kept are dropped without colour conversion; non-reference
 * frames before the next sample time are not even decoded (AVDISCARD_NONREF, which changes no
 * other frame). keyframes_only decodes key frames alone. every_frame hashes every frame the way
 * the reference's vpdq-hash-video does (full-size RGB24 through swscale's area filter, PDQ of the
 * whole frame), for comparisons with its output; sampled frames go to swscale once, straight to
 * 8-bit luma at most VIDEO_HASH_SIDE_PX on a side (the size PDQ's 64x64 decimation needs).
 *
 * Errors, each with a detail naming the limit (vg_err_msg) and the limit in video_last_limit():
 *   VG_EFORMAT   container or codec not on the allow-list, no video stream
 *   VG_ETOOBIG   input bytes, duration, frame count, decoder memory (child address space)
 *   VG_EDIM      a side of zero or over max_dimension
 *   VG_EPIXELS   width x height over max_pixels
 *   VG_ETIMEDOUT the child's CPU time or wall deadline
 *   VG_ECORRUPT  undecodable data, or the decoder child crashed (the signal in the detail)
 *   VG_ETRUNC    the container ends early
 *   VG_ENOMEM, VG_EINTERNAL (fork/pipe failures), VG_EINVAL
 * The server maps VG_ETOOBIG to 413 and the others to 422.
 *
 * Thread-safety: hashing calls are reentrant (each call has its own decoder, and its own child);
 * a video_index is built by one thread, then searched by any number at once.
 */
#ifndef VG_VIDEO_H
#define VG_VIDEO_H

#include <stddef.h>
#include <stdint.h>

#include "pdq/pdq.h"

/* ---- limits --------------------------------------------------------------------------------- */

#define VIDEO_DEFAULT_MAX_INPUT_BYTES ((size_t)1 << 30)           /* 1 GiB of encoded video */
#define VIDEO_DEFAULT_MAX_DURATION_MS ((uint64_t)4 * 3600 * 1000) /* 4 h */
#define VIDEO_DEFAULT_MAX_DIMENSION ((uint32_t)8192)       /* px, either side (8K UHD is 7680) */
#define VIDEO_DEFAULT_MAX_PIXELS ((uint64_t)8192 * 4320)   /* per frame: 8K UHD */
#define VIDEO_DEFAULT_MAX_FRAMES ((uint64_t)4 * 3600 * 60) /* 4 h at 60 frames/s */
/* Address space the decoder child may map beyond what it inherits: an 8K frame is 50 MiB of YUV
 * 4:2:0, and H.264/HEVC keep up to 16 reference frames plus the libraries (~150 MiB mapped before
 * the first frame). */
#define VIDEO_DEFAULT_CHILD_MEM_BYTES ((uint64_t)2 << 30) /* 2 GiB */
#define VIDEO_DEFAULT_CHILD_CPU_S ((uint32_t)600)         /* CPU seconds of one decode */
#define VIDEO_DEFAULT_WALL_MS ((uint32_t)900 * 1000)      /* wall time of one decode */

/* Largest side of the luma image a sampled frame is scaled to before PDQ (PDQ decimates to
 * 64x64 with a tent window of side/128: 512 px keeps the reference's window of 4). */
#define VIDEO_HASH_SIDE_PX 512u
#define VIDEO_DEFAULT_RATE 1.0         /* sampled frames per second */
#define VIDEO_MAX_RATE 240.0           /* frames per second */
#define VIDEO_DEFAULT_PRUNE_DISTANCE 0 /* bits: 0 prunes exact repeats (no effect on matching) */
/* Faces in video (video_hash_opts.face_*): the largest side of a frame kept for the face
 * detector (the balanced level's tiny detector runs at 416 px, so more buys nothing there), and
 * how many are kept per video: each is at most 416x416x3 bytes (~510 KiB), so 240 bound one
 * result at ~120 MiB (8 minutes at 0.5 frames/s). */
#define VIDEO_DEFAULT_FACE_SIDE_PX 416u
#define VIDEO_DEFAULT_FACE_MAX_FRAMES 240u
#define VIDEO_MAX_FACE_SIDE_PX 1024u /* px: face_side_px above it is refused */

typedef struct video_limits {
    size_t max_input_bytes;
    uint64_t max_duration_ms;
    uint32_t max_dimension;
    uint64_t max_pixels;
    uint64_t max_frames;      /* frames in the stream (all of them, not only sampled ones) */
    uint64_t child_mem_bytes; /* RLIMIT_AS of the decoder child; 0 = unlimited */
    uint32_t child_cpu_s;     /* RLIMIT_CPU of the decoder child; 0 = unlimited */
    uint32_t wall_ms;         /* the child is killed after this; 0 = unlimited */
} video_limits;

void video_limits_default(video_limits *l);

typedef enum {
    VIDEO_LIMIT_NONE = -1,
    VIDEO_LIMIT_INPUT_BYTES = 0,
    VIDEO_LIMIT_DURATION,
    VIDEO_LIMIT_DIMENSION,
    VIDEO_LIMIT_PIXELS,
    VIDEO_LIMIT_FRAMES,
    VIDEO_LIMIT_CHILD_MEMORY,
    VIDEO_LIMIT_CHILD_CPU,
    VIDEO_LIMIT_WALL,
    VIDEO_LIMIT_CONTAINER, /* not on the allow-list */
    VIDEO_LIMIT_CODEC,     /* not on the allow-list */
    VIDEO_LIMIT_COUNT
} video_limit_kind;

/* The limit that refused the calling thread's last hash, VIDEO_LIMIT_NONE otherwise. */
video_limit_kind video_last_limit(void);
/* "input_bytes", "duration", "dimension", "pixels", "frames", "child_memory", "child_cpu",
 * "wall", "container", "codec"; "none" otherwise. Static. */
const char *video_limit_name(video_limit_kind k);

/* ---- hashing -------------------------------------------------------------------------------- */

/* Decoder shortcuts for sampled mode (ignored with every_frame), trading exactness of the kept
 * frames' pixels for speed; docs/BENCHMARKS.md "Video" has the measured drift and gain.
 *   SKIP_LOOP  frames decoded only because later ones reference them skip the deblocking loop
 *              filter (H.264, HEVC); the kept frames predict from those un-deblocked pixels,
 *              so their hashes drift (sample videos: median 2, p95 6, max 22 bits; 1080p
 *              H.264: median 4, max 10) for 15-20% less CPU. Off by default.
 * Measured and left out: AV_CODEC_FLAG2_FAST (no gain on H.264), lowres (no allow-listed
 * decoder supports it: H.264, HEVC, VP8, VP9, AV1 all have max_lowres 0). */
#define VIDEO_FAST_SKIP_LOOP 1

typedef struct video_hash_opts {
    double rate;        /* sampled frames per second, (0, VIDEO_MAX_RATE]; default 1 */
    int every_frame;    /* 1: every frame, the reference's way (rate, min_quality, prune unused) */
    int keyframes_only; /* 1: key frames only (rate still applies among them) */
    int min_quality; /* sampled frames below this are dropped; default PDQ_MIN_RELIABLE_QUALITY */
    int prune_distance; /* a sampled frame within this many bits of the last kept one is dropped;
                           -1 keeps every frame; default VIDEO_DEFAULT_PRUNE_DISTANCE */
    int fast;           /* VIDEO_FAST_* bits: decoder shortcuts; default 0 (exact) */
    double keyframe_tolerance_s; /* sampled mode: a sample time with a key frame within this many
                                    seconds keeps that key frame instead (no other frame of its
                                    group decoded); 0 (default) keeps the exact frame; capped
                                    under half a sampling period */
    int in_process;              /* 1: decode in the calling process (fuzzing, tests); default 0 */
    int test_child_signal;       /* tests only: the child raises this signal before decoding (0) */
    int test_child_spin;         /* tests only: 1 the child spins on the CPU before decoding */
    int test_no_plan; /* tests only: 1 decode sequentially, without the planning pass; 2 plan,
                         then act as if seeking back failed (reopen, decode sequentially) */
    /* Faces in video: sampled mode keeps an RGB copy of the first sampled frame at or after
     * each k/face_rate seconds (face_rate <= rate: they are among the frames sampled for
     * hashing, before the quality filter and pruning), at most face_side_px on a side, for a
     * face detector. 0 (default) keeps none. At most face_max_frames are kept: past it,
     * video_hash.images_capped is set and later frames are not kept. */
    double face_rate; /* frames per second; 0 off */
    int regions;      /* sampled mode: 1 (default) also hashes each frame's regions (video_frame
                         .regions); 0 the whole frame only. every_frame hashes no regions */
    uint32_t face_side_px;    /* default VIDEO_DEFAULT_FACE_SIDE_PX */
    uint32_t face_max_frames; /* default VIDEO_DEFAULT_FACE_MAX_FRAMES */
    video_limits limits;
} video_hash_opts;

void video_hash_opts_default(video_hash_opts *o);

/* Region hashes of a frame (docs/VIDEO.md "Regions"), beside the whole-frame hash: what a bar
 * (letterbox, pillarbox, a caption strip) or a logo changes in the whole-frame hash, the
 * content inside the bars or a half away from the logo keeps. The image side's rules (src/pdq
 * pdq_copy.c, docs/MATCHING.md): bars found by pdq_copy_find_bars on the frame's luma, halves by
 * pdq_copy_parts on the content (the trimmed rectangle when there are bars, else the frame). */
typedef enum {
    VIDEO_REGION_TRIMMED = 0, /* the content inside bars; only when bars were found */
    VIDEO_REGION_TOP,         /* the top half of the content */
    VIDEO_REGION_BOTTOM,      /* the bottom half of the content */
    VIDEO_REGION_COUNT
} video_region;

/* "trimmed", "top", "bottom"; "unknown" otherwise. Static. */
const char *video_region_name(video_region r);

/* One kept frame. */
typedef struct video_frame {
    uint32_t frame; /* 0-based frame number in display order */
    int quality;    /* PDQ quality 0..100 */
    double ts;      /* seconds from the stream's start */
    pdq_hash hash;
    /* Regions (sampled mode, video_hash_opts.regions): bit 1 << VIDEO_REGION_* set when that
     * region was hashed with a quality of at least video_hash_opts.min_quality; zero when none
     * (every_frame, parsed text, frames stored before regions). */
    uint8_t regions;
    uint8_t region_quality[VIDEO_REGION_COUNT];
    pdq_hash region[VIDEO_REGION_COUNT];
} video_frame;

/* How frames were chosen: recorded with every hash, since results depend on it. */
typedef struct video_sampling {
    double rate; /* 0 when every_frame */
    int every_frame;
    int keyframes_only;
    int min_quality;
    int prune_distance;
} video_sampling;

/* A sampled frame kept as pixels (faces in video). */
typedef struct video_image {
    double ts;      /* seconds from the stream's start */
    uint32_t frame; /* frame number, as video_frame's */
    uint32_t w, h;  /* at most face_side_px on a side */
    uint8_t *rgb;   /* w*h*3 bytes, rows of w*3; owned by the video_hash */
} video_image;

/* A video's vPDQ hash. frames owned; release with video_hash_free. */
typedef struct video_hash {
    video_frame *frames;
    size_t n;
    video_sampling sampling;
    uint32_t width, height;  /* from the stream header (0 when parsed from text) */
    double duration_s;       /* last frame's timestamp (decoded), or the header's */
    uint64_t frames_decoded; /* frames that came out of the decoder */
    char container[16];      /* "mp4" | "matroska" | "" */
    char codec[16];          /* "h264", "hevc", "vp8", "vp9", "av1" | "" */
    video_image *images;     /* face_rate > 0: frames kept as pixels, in time order; owned */
    size_t n_images;
    int images_capped; /* 1: face_max_frames was reached; later frames were not kept */
} video_hash;

/* Frees the frames and zeroes *h. NULL is a no-op. */
void video_hash_free(video_hash *h);

/* Hashes the video in buf (borrowed, len bytes). opts borrowed, NULL = defaults. *out is
 * written only on success (release with video_hash_free). Errors: see the top of this file. */
int video_hash_buffer(const uint8_t *buf, size_t len, const video_hash_opts *opts, video_hash *out);
/* The same for a file (read whole, up to limits.max_input_bytes). VG_ENOTFOUND, VG_EIO too. */
int video_hash_file(const char *path, const video_hash_opts *opts, video_hash *out);

/* ---- text form: the reference's `frame,quality,hash,timestamp` lines ------------------------ */

/* Writes one line per frame ("%u,%d,<64 hex>,%.3f\n"). h, f borrowed. VG_EIO on write error. */
int video_hash_write(const video_hash *h, void *file /* FILE * */);
/* The same, with regions 1: each line followed by the frame's regions, ",name:quality:<64 hex>"
 * per region hashed (`vigil vhash --regions`; video_hash_parse reads them back). */
int video_hash_write_ex(const video_hash *h, void *file /* FILE * */, int regions);
/* Parses such lines (blank lines and lines starting with '#' skipped). text borrowed.
 * VG_EINVAL with the line number in the detail; *out written only on success. */
int video_hash_parse(const char *text, size_t len, video_hash *out);

/* ---- matching ------------------------------------------------------------------------------- */

#define VIDEO_DEFAULT_MATCH_DISTANCE 31       /* bits: a frame matches within this */
#define VIDEO_DEFAULT_COMPARED_MATCH_PCT 80.0 /* of the compared (protected) video's frames */
#define VIDEO_DEFAULT_QUERY_MATCH_PCT 0.0     /* of the query's frames */
#define VIDEO_DEFAULT_SEGMENT_GAP_MS 3000u    /* a matched run breaks at a larger jump */
#define VIDEO_MAX_SEGMENTS 64                 /* per matched video, the longest kept */
/* The clip rule (issue 12, "clips inside longer videos"): a query that is a clip of a longer
 * protected video shows only a part of it, so the reference rule (a share of the compared
 * video's frames) cannot match it. A clip matches when this share of the query's unique frames
 * falls in one contiguous segment of the compared video, and the query has at least
 * VIDEO_DEFAULT_CLIP_MIN_FRAMES unique frames there (a one-frame query would otherwise be a
 * "clip" of anything that shows that frame). */
#define VIDEO_DEFAULT_CLIP_MATCH_PCT 80.0 /* of the query's unique frames, in one segment */
#define VIDEO_DEFAULT_CLIP_MIN_FRAMES 5u  /* query frames in that segment (5 s at 1 frame/s) */

typedef struct video_match_opts {
    int distance;        /* 0..256, default 31 */
    int min_quality;     /* frames below it are not compared; default 50 */
    double compared_pct; /* default 80 */
    double query_pct;    /* default 0 */
    uint32_t segment_gap_ms;
    double clip_pct;          /* clip rule: share of the query in one segment; default 80;
                                 over 100 turns the clip rule off */
    uint32_t clip_min_frames; /* clip rule: query frames in that segment; default 5 */
    int only_matches;         /* 1: report only videos that match by either rule (default); 0: every
                                 video with a matched frame, with its percentages */
    int regions; /* 1 (default): frames also meet through their region hashes (trimmed against
                    whole or trimmed, a half against the same half); 0: whole hashes only, the
                    reference's rule */
} video_match_opts;

void video_match_opts_default(video_match_opts *o);

/* How a query frame met a compared frame (its best pair: the first mechanism in this order
 * that meets it, then the lowest distance). */
typedef enum {
    VIDEO_MECH_WHOLE = 0, /* whole frame against whole frame (the reference's rule) */
    VIDEO_MECH_TRIMMED,   /* the content inside bars on either side, against whole or trimmed */
    VIDEO_MECH_HALF,      /* a top (bottom) half against the compared frame's top (bottom) half */
    VIDEO_MECH_COUNT
} video_mechanism;

/* "whole", "trimmed", "half"; "unknown" otherwise. Static. */
const char *video_mechanism_name(video_mechanism m);

/* A run of matched frames: the query's [q_start, q_end] shows the compared video's
 * [c_start, c_end] (seconds). */
typedef struct video_segment {
    double q_start, q_end, c_start, c_end;
    uint32_t frames;                    /* query frames in the run */
    uint32_t by_mech[VIDEO_MECH_COUNT]; /* of them, matched by each mechanism */
} video_segment;

typedef struct video_match {
    size_t video;              /* index of the compared video (video_index_add's return) */
    const char *id;            /* borrowed from the index: the id given to video_index_add */
    double query_match_pct;    /* query's unique frames with a counterpart, 0..100 */
    double compared_match_pct; /* compared video's unique frames with a counterpart, 0..100 */
    int match;                 /* reference rule: both percentages at or over their thresholds */
    double clip_match_pct;     /* query's unique frames in the best segment (clip), 0..100 */
    int clip_match;            /* clip rule: clip_match_pct >= clip_pct, >= clip_min_frames */
    video_segment clip;        /* the best segment (most query frames); zero when none */
    uint32_t query_frames, query_matched, compared_frames, compared_matched;
    uint32_t by_mech[VIDEO_MECH_COUNT]; /* matched query frames by their best pair's mechanism */
    video_segment *segments;            /* owned by the result; by query start */
    size_t n_segments;
} video_match;

typedef struct video_result {
    video_match *matches; /* owned; by descending compared_match_pct, then video */
    size_t n;
    uint32_t query_frames; /* unique query frames compared (quality-filtered) */
} video_result;

void video_result_free(video_result *r);

/* An index of the unique, quality-filtered frames of many videos, tagged by (video, frame):
 * multi-index hashing over the 16 16-bit words of each hash (a pair within 16(r+1)-1 bits
 * agrees within r bits on at least one word), so a query looks at a few buckets per frame,
 * never at every pair. Distances over 47 bits fall back to a scan of every frame. A frame's
 * region hashes are entries of their own, tagged by region; a lookup verifies only entries of
 * the tags its hash may meet (video_match_opts.regions). */
typedef struct video_index video_index;

/* min_quality: frames below it are not indexed (the match rule's quality filter). Returns owned
 * (video_index_free), NULL on out of memory. */
video_index *video_index_new(int min_quality);
void video_index_free(video_index *ix);
/* Adds a video (id and h borrowed, copied); *video_out (may be NULL) receives its number.
 * Visible to searches after the next video_index_build. VG_EINVAL, VG_ENOMEM, VG_ETOOBIG
 * (over 2^31 frames). Not concurrent with anything else on ix. */
int video_index_add(video_index *ix, const char *id, const video_hash *h, size_t *video_out);
/* (Re)builds the word tables over everything added. VG_ENOMEM. Not concurrent. */
int video_index_build(video_index *ix);
size_t video_index_videos(const video_index *ix);
size_t video_index_frames(const video_index *ix);
size_t video_index_entries(const video_index *ix); /* frames and their region hashes */
size_t video_index_bytes(const video_index *ix);

/* Matches a query video against every indexed video by the vPDQ rule. ix, q, o borrowed (o NULL
 * = defaults). *out overwritten (video_result_free). VG_EINVAL, VG_ENOMEM. Reentrant. */
int video_index_search(const video_index *ix, const video_hash *q, const video_match_opts *o,
                       video_result *out);

/* One indexed frame near a still image's hash (cross-media: a photo that is a frame of a
 * protected video, a thumbnail). */
typedef struct video_frame_hit {
    size_t video;   /* the video's number (video_index_add's) */
    uint32_t entry; /* the frame's number in the index (one per unique frame) */
    double ts;      /* the frame's timestamp in that video, seconds */
    int distance;   /* bits, the smallest over the query hashes */
    uint32_t query; /* which query hash gave it */
} video_frame_hit;

/* Every indexed frame within distance bits of any of the nq hashes q (one still image: its
 * hash and variants) by its whole or trimmed hash (never a half), each frame once, sorted by video,
 * then distance, then timestamp. Same multi-index lookup as video_index_search. ix, q borrowed;
 * *out owned (vg_free), NULL with *n_out 0 when nothing is near. VG_EINVAL, VG_ENOMEM. Reentrant.
 */
int video_index_frame_search(const video_index *ix, const pdq_hash *q, size_t nq, int distance,
                             video_frame_hit **out, size_t *n_out);

/* Compares two videos (query, compared): an index of one video searched with the other. The
 * result is filled whatever the verdict (only_matches ignored). */
int video_compare(const video_hash *q, const video_hash *c, const video_match_opts *o,
                  video_match *out);
/* Frees what video_compare wrote into m. */
void video_match_free(video_match *m);

#endif /* VG_VIDEO_H */
