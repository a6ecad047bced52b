/* Fuzzes the cache entry parser (L2 files and L3 values are attacker-reachable if the disk or the
 * Redis instance is shared). Properties checked beyond "no crash": a parsed entry re-encodes to
 * exactly the input bytes, and parsing with the wrong expected key always fails. */
#include "cache/cache_int.h"
#include "core/core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cache_key key;
    const uint8_t *value;
    size_t vlen;
    if (cache__entry_parse(data, size, NULL, &key, &value, &vlen) != VG_OK)
        return 0;
    if (vlen != size - CACHE_ENTRY_HEADER_BYTES || value != data + CACHE_ENTRY_HEADER_BYTES)
        abort();
    uint8_t hdr[CACHE_ENTRY_HEADER_BYTES];
    cache__entry_header_encode(&key, value, vlen, hdr);
    if (memcmp(hdr, data, CACHE_ENTRY_HEADER_BYTES) != 0)
        abort(); /* two encodings of one entry: the format is not canonical */
    cache_key wrong = key;
    wrong.bytes[0] ^= 1;
    if (cache__entry_parse(data, size, &wrong, NULL, &value, &vlen) == VG_OK)
        abort();
    if (cache__entry_parse(data, size, &key, NULL, &value, &vlen) != VG_OK)
        abort();
    return 0;
}
