/* libFuzzer target: the img module's PNG path (libspng wrapper with limits, tRNS/16-bit
 * compositing, interlaced rows, APNG frame count, IEND check). See fuzz_img_common.h. */
#include "fuzz_img_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_img_magic sig = {"\x89PNG\r\n\x1a\n", 0, 8}, none = {NULL, 0, 0};
    return fuzz_img_run(data, size, sig, none);
}
