/*
 * EXIF orientation: a small bounded parser of the TIFF structure inside a JPEG APP1 "Exif"
 * segment. We read exactly one thing, IFD0 tag 0x0112 (Orientation), so there is no reason to
 * pull in a general EXIF library and its attack surface.
 *
 * Invariants: every offset read from the data is checked against len before use, in size_t
 * arithmetic that cannot overflow (offsets are compared with len minus the bytes needed, never
 * added first). Malformed data is not an error: the image is still decodable, so we report
 * orientation 1 (as stored), the same thing a viewer that ignores EXIF would show.
 */
#include "img/img_int.h"

#define IMG_EXIF_TAG_ORIENTATION 0x0112
#define IMG_TIFF_TYPE_SHORT 3
#define IMG_TIFF_TYPE_LONG 4
#define IMG_TIFF_HEADER_BYTES 8
#define IMG_TIFF_ENTRY_BYTES 12

int img__exif_orientation(const uint8_t *tiff, size_t len)
{
    if (!tiff || len < IMG_TIFF_HEADER_BYTES)
        return 1;
    int big;
    if (tiff[0] == 'I' && tiff[1] == 'I')
        big = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M')
        big = 1;
    else
        return 1;
    if (img__rd16(tiff + 2, big) != 42)
        return 1;
    size_t ifd = img__rd32(tiff + 4, big);
    if (ifd < IMG_TIFF_HEADER_BYTES || ifd > len - 2)
        return 1;
    size_t count = img__rd16(tiff + ifd, big);
    size_t pos = ifd + 2;
    for (size_t i = 0; i < count; i++) {
        if (len < IMG_TIFF_ENTRY_BYTES || pos > len - IMG_TIFF_ENTRY_BYTES)
            return 1; /* entry table runs past the segment */
        const uint8_t *e = tiff + pos;
        if (img__rd16(e, big) == IMG_EXIF_TAG_ORIENTATION) {
            uint32_t type = img__rd16(e + 2, big);
            uint32_t n = img__rd32(e + 4, big);
            uint32_t v;
            if (n < 1)
                return 1;
            /* A value of at most 4 bytes sits in the entry itself, left-justified. */
            if (type == IMG_TIFF_TYPE_SHORT)
                v = img__rd16(e + 8, big);
            else if (type == IMG_TIFF_TYPE_LONG)
                v = img__rd32(e + 8, big);
            else
                return 1;
            return (v >= 1 && v <= 8) ? (int)v : 1;
        }
        pos += IMG_TIFF_ENTRY_BYTES;
    }
    return 1;
}
