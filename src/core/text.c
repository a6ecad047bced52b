/* UTF-8 validation and sanitising: text from the network (query strings, multipart fields,
 * error details quoting the input) must be well-formed before it goes into JSON. */
#include "core/core.h"

#include <string.h>

/* Length of the well-formed UTF-8 sequence at s[0..n) (1..4), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int vg_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

char *vg_utf8_sanitize(const char *s, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        size_t w = k ? k : 1;
        if (o + w >= outlen)
            break;
        if (k)
            memcpy(out + o, p + i, k);
        else
            out[o] = '?';
        o += w;
        i += w;
    }
    out[o] = '\0';
    return out;
}
