/* Internal interfaces of the video module (not for other modules). */
#ifndef VG_VIDEO_INT_H
#define VG_VIDEO_INT_H

#include "video/video.h"

/* Sets the calling thread's last limit and the error detail; returns code. */
int video__fail(int code, video_limit_kind limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void video__set_last_limit(video_limit_kind k);

/* Decodes and hashes in the calling process (video_av.c: the one file that calls libav). The
 * caller has checked len against max_input_bytes. Same contract as video_hash_buffer. */
int video__decode(const uint8_t *buf, size_t len, const video_hash_opts *o, video_hash *out);

/* Runs video__decode in a forked, resource-limited child (video_child.c). */
int video__decode_child(const uint8_t *buf, size_t len, const video_hash_opts *o, video_hash *out);

/* Appends a frame to h (amortised growth). VG_ENOMEM. */
int video__push(video_hash *h, size_t *cap, const video_frame *f);

/* The vPDQ rule by comparing every pair (tests check the index against it). Fills the counts
 * and percentages of *out; no segments. */
int video__compare_brute(const video_hash *q, const video_hash *c, const video_match_opts *o,
                         video_match *out);

#endif
