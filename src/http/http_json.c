/* Error vocabulary (status <-> code <-> VG_E*) and JSON request-body helpers on jansson. Every
 * field getter names the field in its error, so a client learns exactly what to fix (422). */
#include "http/http_int.h"

#include <string.h>

const char *http_status_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 422:
        return "unprocessable";
    case 429:
        return "too_many_requests";
    case 500:
        return "internal";
    case 503:
        return "unavailable";
    default:
        return "error";
    }
}

int http_status_of(int vg_code)
{
    switch (vg_code) {
    case VG_OK:
        return 200;
    case VG_EINVAL:
    case VG_ETRUNC:
    case VG_ECORRUPT:
    case VG_EPIXELS:
    case VG_EDIM:
    case VG_ENOFACE:
        return 422;
    case VG_ENOTFOUND:
        return 404;
    case VG_EEXIST:
    case VG_ECONFLICT:
        return 409;
    case VG_EFORMAT:
        return 415;
    case VG_ETOOBIG:
        return 413;
    case VG_EPERM:
        return 403;
    case VG_EQUOTA:
        return 429;
    case VG_EBUSY:
    case VG_ETIMEDOUT:
    case VG_EUNAVAIL:
    case VG_ECANCELED: /* work dropped at shutdown: the client should retry elsewhere or later */
    case VG_ENOSPC:    /* the data disk is full: clears when space returns; retry later */
        return 503;
    default:
        return 500;
    }
}

json_t *http_error_body(const char *code, const char *message)
{
    /* A detail may quote the client's bytes (a JSON parse error near an invalid byte): JSON
     * strings must be UTF-8, so anything else is replaced before it goes in. */
    char clean[1024];
    message = message ? message : "";
    if (!vg_utf8_valid(message, strlen(message)))
        message = vg_utf8_sanitize(message, strlen(message), clean, sizeof clean);
    return json_pack("{s:{s:s,s:s}}", "error", "code", code ? code : "error", "message", message);
}

static int depth_ok(const json_t *v, int depth)
{
    if (depth > HTTP_JSON_MAX_DEPTH)
        return 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    }
    return 1;
}

int http_json_parse_object(const uint8_t *data, size_t len, json_t **out)
{
    if (!data || len == 0)
        return vg_err_set(VG_EINVAL, "empty body: expected a JSON object");
    json_error_t err;
    /* jansson's own parser nests up to 2048 levels; the depth check below keeps what handlers
     * walk shallow. */
    json_t *v = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    if (!v)
        return vg_err_set(VG_EINVAL, "malformed JSON at line %d column %d: %s", err.line,
                          err.column, err.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return vg_err_set(VG_EINVAL, "expected a JSON object");
    }
    if (!depth_ok(v, 0)) {
        json_decref(v);
        return vg_err_set(VG_EINVAL, "JSON nested deeper than %d levels", HTTP_JSON_MAX_DEPTH);
    }
    *out = v;
    return VG_OK;
}

int http_json_only(const json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)obj, k, x)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
        if (!ok)
            return vg_err_set(VG_EINVAL, "unknown field '%.64s'", k);
    }
    return VG_OK;
}

int http_json_string(const json_t *obj, const char *key, int required, size_t max_len,
                     const char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return vg_err_set(VG_EINVAL, "field '%s' is required", key);
        return VG_OK;
    }
    if (!json_is_string(v))
        return vg_err_set(VG_EINVAL, "field '%s' must be a string", key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0)
        return vg_err_set(VG_EINVAL, "field '%s' must not be empty", key);
    if (n > max_len)
        return vg_err_set(VG_EINVAL, "field '%s' is longer than %zu bytes", key, max_len);
    if (strlen(s) != n)
        return vg_err_set(VG_EINVAL, "field '%s' contains a NUL character", key);
    *out = s;
    return VG_OK;
}

int http_json_int(const json_t *obj, const char *key, int required, int64_t min, int64_t max,
                  int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return vg_err_set(VG_EINVAL, "field '%s' is required", key);
        return VG_OK;
    }
    if (!json_is_integer(v))
        return vg_err_set(VG_EINVAL, "field '%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return vg_err_set(VG_EINVAL, "field '%s' must be in %lld..%lld", key, (long long)min,
                          (long long)max);
    *out = (int64_t)x;
    return VG_OK;
}

int http_json_bool(const json_t *obj, const char *key, int required, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return vg_err_set(VG_EINVAL, "field '%s' is required", key);
        return VG_OK;
    }
    if (!json_is_boolean(v))
        return vg_err_set(VG_EINVAL, "field '%s' must be true or false", key);
    *out = json_is_true(v);
    return VG_OK;
}
