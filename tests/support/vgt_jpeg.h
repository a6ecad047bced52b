/*
 * JPEG bytes from pixels for tests (header-only, like vgt_random.h), through TurboJPEG's
 * encoder. Include after cmocka.h: a failure to encode fails the calling test.
 */
#ifndef VGT_JPEG_H
#define VGT_JPEG_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* px: w x h pixels in TurboJPEG format pf; returns a malloc'ed copy of the JPEG (*len bytes). */
static inline uint8_t *vgt_jpeg_make(const uint8_t *px, int w, int h, int pf, int subsamp,
                                     int quality, int flags, size_t *len)
{
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int rc = tjCompress2(tj, px, w, 0, h, pf, &jb, &jl, subsamp, quality, flags);
    if (rc != 0)
        fail_msg("tjCompress2: %s", tjGetErrorStr2(tj));
    uint8_t *out = malloc(jl);
    assert_non_null(out);
    memcpy(out, jb, jl);
    *len = jl;
    tjFree(jb);
    tjDestroy(tj);
    return out;
}

#endif /* VGT_JPEG_H */
