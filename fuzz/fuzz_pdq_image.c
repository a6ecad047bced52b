/* libFuzzer target: PDQ from untrusted bytes. Runs pdq_hash_image in the mode and with the
 * dihedral flag picked by the first byte, on the rest of the input, with small decoder limits
 * (4 MP) so the fuzzer stays inside its memory budget. Exercises what pdq adds on top of img:
 * the grid sampler on every decoded size, scale and EXIF orientation, the compat resize and
 * grey detection, and the hash of every small or elongated shape. Invariants checked: a
 * success has quality 0..100, unreliable == (quality < 50), a hashed grid of at most 512x512,
 * and the first dihedral hash equal to the hash; the same input hashes the same twice; the
 * 64-hex text round-trips. */
#include "core/core.h"
#include "pdq/pdq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > ((size_t)4 << 20))
        return 0;
    pdq_ctx *ctx = pdq_ctx_new();
    if (!ctx)
        return 0;
    pdq_image_opts o;
    pdq_image_opts_default(&o);
    o.limits.max_pixels = 4000000u;
    o.mode = (data[0] & 1) ? PDQ_MODE_COMPAT : PDQ_MODE_FAST;
    o.flags = (data[0] & 2) ? PDQ_WANT_DIHEDRAL : 0;
    o.fast_min_side = (data[0] & 4) ? 512 : 0;
    pdq_image_result a, b;
    int rc = pdq_hash_image(ctx, data + 1, size - 1, &o, &a);
    if (rc == VG_OK) {
        if (a.r.quality < 0 || a.r.quality > 100 ||
            a.r.unreliable != (a.r.quality < PDQ_MIN_RELIABLE_QUALITY) ||
            a.hashed_w > PDQ_COMPAT_MAX_SIDE_PX || a.hashed_h > PDQ_COMPAT_MAX_SIDE_PX)
            abort();
        if ((o.flags & PDQ_WANT_DIHEDRAL) &&
            (!a.r.has_dihedral || !pdq_hash_equal(&a.r.hash, &a.r.dihedral[PDQ_XF_ORIGINAL])))
            abort();
        if (pdq_hash_image(ctx, data + 1, size - 1, &o, &b) != VG_OK ||
            !pdq_hash_equal(&a.r.hash, &b.r.hash) || a.r.quality != b.r.quality)
            abort();
        char hex[PDQ_HEX_BYTES];
        pdq_hash h;
        if (pdq_hash_from_hex(pdq_hash_to_hex(&a.r.hash, hex), &h) != VG_OK ||
            !pdq_hash_equal(&h, &a.r.hash))
            abort();
    }
    pdq_ctx_free(ctx);
    return 0;
}
