/* libFuzzer target: the img module's WebP path (still images via WebPDecode, animations via the
 * demuxer and WebPAnimDecoder, alpha compositing). See fuzz_img_common.h. */
#include "fuzz_img_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_img_magic riff = {"RIFF", 0, 4}, webp = {"WEBP", 8, 4};
    return fuzz_img_run(data, size, riff, webp);
}
