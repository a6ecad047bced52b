/* Fuzzes the multipart/form-data parser: the first byte picks a boundary length, the next bytes
 * are the boundary, the rest is the body. Checks every part lies inside the body. */
#include "http/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t blen = (size_t)(data[0] % 72) + 1;
    if (size < 1 + blen)
        return 0;
    char ct[128] = "multipart/form-data; boundary=\"";
    size_t l = strlen(ct);
    for (size_t i = 0; i < blen; i++) {
        char c = (char)data[1 + i];
        ct[l++] = (c == '"' || c == 0) ? 'x' : c;
    }
    ct[l++] = '"';
    ct[l] = 0;
    const uint8_t *body = data + 1 + blen;
    size_t len = size - 1 - blen;
    /* a copy of exactly len bytes, so ASan catches any read past the body */
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    vg_arena *a = vg_arena_new(0);
    http_part *parts = NULL;
    size_t n = 0;
    if (http_multipart_parse(copy, len, ct, a, 64, &parts, &n) == VG_OK) {
        for (size_t i = 0; i < n; i++) {
            if (!parts[i].name || parts[i].data < copy || parts[i].data + parts[i].len > copy + len)
                abort();
        }
    }
    vg_arena_free(a);
    free(copy);
    return 0;
}
