/* libFuzzer target: the img module's JPEG path (libturbojpeg wrapper, marker walk, EXIF parser,
 * CMYK conversion, orientation). See fuzz_img_common.h. */
#include "fuzz_img_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_img_magic soi = {"\xFF\xD8\xFF", 0, 3}, none = {NULL, 0, 0};
    return fuzz_img_run(data, size, soi, none);
}
