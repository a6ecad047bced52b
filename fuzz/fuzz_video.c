/* libFuzzer target: the container/codec path on untrusted bytes. Runs the decoder in process
 * (libFuzzer needs the coverage; the child process adds isolation, not parsing) with small
 * limits so the fuzzer stays inside its memory and time budget: 640x480, 300 frames, 60 s.
 * The first byte picks every-frame or sampled hashing and key frames only. Invariants: a
 * success has frames in timestamp order with quality 0..100 and at most one hash per frame
 * the stream holds; the same input hashes the same twice. */
#include "core/core.h"
#include "video/video.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names the broken invariant on stderr before aborting, so a CI log says which one failed even
 * when the reproducer is lost with the machine. */
static void fuzz__fail(const char *what, size_t i)
{
    fprintf(stderr, "fuzz_video: invariant broken: %s (frame %zu)\n", what, i);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > ((size_t)2 << 20))
        return 0;
    video_hash_opts o;
    video_hash_opts_default(&o);
    o.in_process = 1;
    o.every_frame = data[0] & 1;
    o.keyframes_only = (data[0] >> 1) & 1;
    o.rate = (data[0] & 4) ? 10.0 : 1.0;
    o.limits.max_dimension = 640;
    o.limits.max_pixels = 640 * 480;
    o.limits.max_frames = 300;
    o.limits.max_duration_ms = 60 * 1000;
    video_hash a, b;
    if (video_hash_buffer(data + 1, size - 1, &o, &a) != VG_OK)
        return 0;
    if (a.n > a.frames_decoded)
        fuzz__fail("more hashes than decoded frames", a.n);
    for (size_t i = 0; i < a.n; i++) {
        if (a.frames[i].quality < 0 || a.frames[i].quality > 100)
            fuzz__fail("quality outside 0..100", i);
        if (i && !o.every_frame && a.frames[i].ts < a.frames[i - 1].ts)
            fuzz__fail("sampled frames out of time order", i);
    }
    int rc = video_hash_buffer(data + 1, size - 1, &o, &b);
    if (rc != VG_OK)
        fuzz__fail("second hash of the same input failed", 0);
    if (b.n != a.n)
        fuzz__fail("second hash kept a different number of frames", b.n);
    for (size_t i = 0; i < a.n; i++)
        if (memcmp(&a.frames[i], &b.frames[i], sizeof a.frames[i]) != 0)
            fuzz__fail("second hash differs", i);
    video_hash_free(&a);
    video_hash_free(&b);
    return 0;
}
