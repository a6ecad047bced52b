/*
 * multipart/form-data (RFC 7578 over RFC 2046), parsed from a whole, already bounded body.
 * Zero-copy: part data points into the body; only names and header values are copied (to the
 * request arena). Every loop is bounded by the body length, header blocks by
 * HTTP_MULTIPART_MAX_HEADER_BYTES, and the part count by the caller's max_parts, so hostile input
 * costs at most linear time (memmem is two-way in glibc) and arena memory proportional to it.
 */
#include "http/http_int.h"

#include <ctype.h>
#include <string.h>

#define MP_MAX_HEADER_LINES 16

int http_content_type_is(const char *header, const char *type)
{
    if (!header)
        return 0;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t n = strlen(type);
    if (strncasecmp(header, type, n) != 0)
        return 0;
    char c = header[n];
    return c == 0 || c == ';' || c == ' ' || c == '\t';
}

int http_header_param(const char *header, const char *param, char *buf, size_t buflen)
{
    if (!header)
        return VG_ENOTFOUND;
    size_t plen = strlen(param);
    const char *p = strchr(header, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, param, plen) == 0 && p[plen] == '=') {
            const char *v = p + plen + 1;
            size_t n = 0;
            if (*v == '"') {
                v++;
                const char *close = strchr(v, '"');
                if (!close)
                    return vg_err_set(VG_EINVAL, "unterminated quote in parameter '%s'", param);
                n = (size_t)(close - v);
            } else {
                while (v[n] && v[n] != ';' && v[n] != ' ' && v[n] != '\t')
                    n++;
            }
            if (n + 1 > buflen)
                return VG_ETOOBIG;
            memcpy(buf, v, n);
            buf[n] = 0;
            return VG_OK;
        }
        /* Skip this parameter's value, honouring quotes (a quoted value may contain ';'). */
        while (*p && *p != ';') {
            if (*p == '"') {
                const char *close = strchr(p + 1, '"');
                if (!close)
                    return VG_ENOTFOUND;
                p = close;
            }
            p++;
        }
        p = *p ? p : NULL;
    }
    return VG_ENOTFOUND;
}

static char *arena_copy(vg_arena *a, const char *s, size_t n)
{
    char *p = vg_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Parses one part's header block [h, h+hlen) (lines separated by CRLF). */
static int parse_part_headers(const char *h, size_t hlen, vg_arena *a, http_part *part)
{
    char line[HTTP_MULTIPART_MAX_HEADER_BYTES + 1];
    size_t pos = 0;
    int lines = 0, have_disposition = 0;
    while (pos < hlen) {
        const char *eol = memmem(h + pos, hlen - pos, "\r\n", 2);
        size_t n = eol ? (size_t)(eol - (h + pos)) : hlen - pos;
        if (++lines > MP_MAX_HEADER_LINES)
            return vg_err_set(VG_EINVAL, "multipart: more than %d header lines in a part",
                              MP_MAX_HEADER_LINES);
        memcpy(line, h + pos, n);
        line[n] = 0;
        pos += n + (eol ? 2 : 0);
        if (memchr(line, 0, n))
            return vg_err_set(VG_EINVAL, "multipart: NUL in a part header");
        char *colon = strchr(line, ':');
        if (!colon)
            return vg_err_set(VG_EINVAL, "multipart: part header without ':'");
        *colon = 0;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (strcasecmp(line, "Content-Disposition") == 0) {
            if (strncasecmp(value, "form-data", 9) != 0)
                return vg_err_set(VG_EINVAL, "multipart: Content-Disposition is not form-data");
            char buf[HTTP_MULTIPART_MAX_HEADER_BYTES];
            int rc = http_header_param(value, "name", buf, sizeof(buf));
            if (rc != VG_OK)
                return vg_err_set(VG_EINVAL, "multipart: part without a name");
            part->name = arena_copy(a, buf, strlen(buf));
            rc = http_header_param(value, "filename", buf, sizeof(buf));
            if (rc == VG_OK)
                part->filename = arena_copy(a, buf, strlen(buf));
            else if (rc != VG_ENOTFOUND)
                return vg_err_set(VG_EINVAL, "multipart: bad filename parameter");
            if (!part->name || (rc == VG_OK && !part->filename))
                return VG_ENOMEM;
            have_disposition = 1;
        } else if (strcasecmp(line, "Content-Type") == 0) {
            part->content_type = arena_copy(a, value, strlen(value));
            if (!part->content_type)
                return VG_ENOMEM;
        }
        /* Other part headers (Content-Transfer-Encoding is deprecated by RFC 7578) are ignored. */
    }
    if (!have_disposition)
        return vg_err_set(VG_EINVAL, "multipart: part without Content-Disposition");
    return VG_OK;
}

int http_multipart_parse(const uint8_t *body, size_t len, const char *content_type, vg_arena *arena,
                         size_t max_parts, http_part **parts, size_t *n_parts)
{
    if (!http_content_type_is(content_type, "multipart/form-data"))
        return vg_err_set(VG_EINVAL, "expected Content-Type multipart/form-data");
    char boundary[HTTP_MULTIPART_MAX_BOUNDARY + 1];
    int rc = http_header_param(content_type, "boundary", boundary, sizeof(boundary));
    if (rc != VG_OK || boundary[0] == 0)
        return vg_err_set(VG_EINVAL, "multipart: missing or over-long boundary parameter");
    /* delim = "\r\n--" boundary; the first one may come without the leading CRLF. */
    char delim[HTTP_MULTIPART_MAX_BOUNDARY + 5];
    size_t blen = strlen(boundary);
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    const char *b = (const char *)body;
    size_t pos;
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const char *first = len ? memmem(b, len, delim, dlen) : NULL;
        if (!first)
            return vg_err_set(VG_EINVAL, "multipart: boundary not found in body");
        pos = (size_t)(first - b) + dlen; /* preamble skipped */
    }
    size_t cap = max_parts < 8 ? max_parts : 8, n = 0;
    http_part *out = cap ? vg_arena_alloc(arena, cap * sizeof(*out)) : NULL;
    if (cap && !out)
        return VG_ENOMEM;
    while (1) {
        /* after a delimiter: "--" ends the body, else optional whitespace then CRLF */
        if (len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-')
            break;
        while (pos < len && (b[pos] == ' ' || b[pos] == '\t'))
            pos++;
        if (len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n')
            return vg_err_set(VG_EINVAL, "multipart: malformed delimiter line");
        pos += 2;
        /* header block ends at the first empty line; an immediately empty line = no headers */
        size_t hlen;
        if (len - pos >= 2 && b[pos] == '\r' && b[pos + 1] == '\n') {
            hlen = 0;
        } else {
            size_t window = VG_MIN(len - pos, (size_t)HTTP_MULTIPART_MAX_HEADER_BYTES + 4);
            const char *hend = memmem(b + pos, window, "\r\n\r\n", 4);
            if (!hend)
                return vg_err_set(VG_EINVAL,
                                  "multipart: part headers unterminated or over %d "
                                  "bytes",
                                  HTTP_MULTIPART_MAX_HEADER_BYTES);
            hlen = (size_t)(hend - (b + pos)) + 2; /* keep the last line's CRLF out below */
            hlen -= 2;
        }
        if (n >= max_parts)
            return vg_err_set(VG_ETOOBIG, "multipart: more than %zu parts", max_parts);
        if (n == cap) {
            size_t ncap = VG_MIN(cap * 2, max_parts);
            http_part *grown = vg_arena_alloc(arena, ncap * sizeof(*grown));
            if (!grown)
                return VG_ENOMEM;
            memcpy(grown, out, n * sizeof(*out));
            out = grown;
            cap = ncap;
        }
        http_part *part = &out[n];
        memset(part, 0, sizeof(*part));
        rc = parse_part_headers(b + pos, hlen, arena, part);
        if (rc != VG_OK)
            return rc;
        pos += hlen + (hlen ? 4 : 2);
        const char *next = pos <= len ? memmem(b + pos, len - pos, delim, dlen) : NULL;
        if (!next)
            return vg_err_set(VG_EINVAL, "multipart: body ends inside part '%s'", part->name);
        part->data = body + pos;
        part->len = (size_t)(next - (b + pos));
        n++;
        pos = (size_t)(next - b) + dlen;
    }
    *parts = out;
    *n_parts = n;
    return VG_OK;
}

const http_part *http_multipart_find(const http_part *parts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i].name && strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}
