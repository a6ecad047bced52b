/* Router: routes are parsed once into segments (literal or {param}); a match walks the path's
 * segments against each route. The API has a few dozen routes, so a linear scan over
 * pre-split patterns (no allocation, no string building) costs well under a microsecond and keeps
 * 405 detection trivial: every route whose path matches contributes its method to Allow. */
#include "http/http_int.h"

#include <string.h>

#define HTTP_MAX_ROUTES 256

typedef struct http_segment {
    const char *text; /* literal text, or the parameter name */
    size_t len;
    int is_param;
} http_segment;

struct http_route {
    const char *method;
    const char *pattern;
    http_auth auth;
    unsigned flags;
    http_handler_fn fn;
    void *ud;
    size_t n_segments;
    http_segment seg[HTTP_MAX_SEGMENTS];
};

struct http_router {
    size_t n;
    http_route routes[HTTP_MAX_ROUTES];
};

int http_router_new(http_router **out)
{
    http_router *r = vg_calloc(1, sizeof(*r));
    if (!r)
        return VG_ENOMEM;
    *out = r;
    return VG_OK;
}

void http_router_free(http_router *r)
{
    vg_free(r);
}

static int method_known(const char *m)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < VG_ARRAY_LEN(methods); i++)
        if (strcmp(m, methods[i]) == 0)
            return 1;
    return 0;
}

/* Splits "/a/{id}/b" into segments; VG_EINVAL for anything that is not a clean pattern. */
static int parse_pattern(const char *pattern, http_route *rt)
{
    if (pattern[0] != '/')
        return vg_err_set(VG_EINVAL, "route '%s' must start with '/'", pattern);
    size_t n = 0, params = 0;
    const char *p = pattern + 1;
    if (*p == 0) {
        rt->n_segments = 0; /* "/" */
        return VG_OK;
    }
    while (1) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            return vg_err_set(VG_EINVAL, "route '%s' has an empty segment", pattern);
        if (n >= HTTP_MAX_SEGMENTS)
            return vg_err_set(VG_EINVAL, "route '%s' has too many segments", pattern);
        http_segment *s = &rt->seg[n++];
        if (p[0] == '{') {
            if (len < 3 || p[len - 1] != '}' || memchr(p + 1, '{', len - 2) ||
                memchr(p + 1, '}', len - 2))
                return vg_err_set(VG_EINVAL, "route '%s': bad parameter segment", pattern);
            if (++params > HTTP_MAX_PARAMS)
                return vg_err_set(VG_EINVAL, "route '%s' has too many parameters", pattern);
            s->text = p + 1;
            s->len = len - 2;
            s->is_param = 1;
        } else {
            if (memchr(p, '{', len) || memchr(p, '}', len))
                return vg_err_set(VG_EINVAL, "route '%s': braces inside a segment", pattern);
            s->text = p;
            s->len = len;
            s->is_param = 0;
        }
        if (!end)
            break;
        p = end + 1;
    }
    rt->n_segments = n;
    return VG_OK;
}

int http_router_add(http_router *r, const char *method, const char *pattern, http_auth auth,
                    unsigned flags, http_handler_fn fn, void *ud)
{
    if (!method || !method_known(method) || !pattern || !fn)
        return vg_err_set(VG_EINVAL, "route %s %s: bad method or handler",
                          method ? method : "(null)", pattern ? pattern : "(null)");
    if (r->n >= HTTP_MAX_ROUTES)
        return vg_err_set(VG_ETOOBIG, "more than %d routes", HTTP_MAX_ROUTES);
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->routes[i].method, method) == 0 && strcmp(r->routes[i].pattern, pattern) == 0)
            return vg_err_set(VG_EEXIST, "route %s %s added twice", method, pattern);
    http_route rt;
    memset(&rt, 0, sizeof(rt));
    int rc = parse_pattern(pattern, &rt);
    if (rc != VG_OK)
        return rc;
    rt.method = method;
    rt.pattern = pattern;
    rt.auth = auth;
    rt.flags = flags;
    rt.fn = fn;
    rt.ud = ud;
    r->routes[r->n++] = rt;
    return VG_OK;
}

/* Splits path into at most HTTP_MAX_SEGMENTS segments; returns -1 when the path cannot match any
 * route (not absolute, empty segment, too deep). */
static int split_path(const char *path, const char **seg, size_t *len, size_t *n)
{
    if (!path || path[0] != '/')
        return -1;
    *n = 0;
    const char *p = path + 1;
    if (*p == 0)
        return 0;
    while (1) {
        const char *end = strchr(p, '/');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == 0 || *n >= HTTP_MAX_SEGMENTS)
            return -1;
        seg[*n] = p;
        len[*n] = l;
        (*n)++;
        if (!end)
            return 0;
        p = end + 1;
    }
}

static int route_matches(const http_route *rt, const char *const *seg, const size_t *len, size_t n)
{
    if (rt->n_segments != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const http_segment *s = &rt->seg[i];
        if (s->is_param)
            continue;
        if (s->len != len[i] || memcmp(s->text, seg[i], len[i]) != 0)
            return 0;
    }
    return 1;
}

void http_router_match(const http_router *r, const char *method, const char *path, http_match *m)
{
    memset(m, 0, sizeof(*m));
    m->status = 404;
    const char *seg[HTTP_MAX_SEGMENTS];
    size_t len[HTTP_MAX_SEGMENTS], n;
    if (split_path(path, seg, len, &n) != 0)
        return;
    const char *want = method && strcmp(method, "HEAD") == 0 ? "GET" : method;
    const http_route *hit = NULL;
    size_t allow_len = 0;
    for (size_t i = 0; i < r->n; i++) {
        const http_route *rt = &r->routes[i];
        if (!route_matches(rt, seg, len, n))
            continue;
        if (want && strcmp(rt->method, want) == 0) {
            /* Literal routes were added before parameter routes of the same shape by
             * convention; the first match wins. */
            if (!hit)
                hit = rt;
            continue;
        }
        size_t ml = strlen(rt->method);
        if (!strstr(m->allow, rt->method) && allow_len + ml + 2 < sizeof(m->allow)) {
            if (allow_len) {
                memcpy(m->allow + allow_len, ", ", 2);
                allow_len += 2;
            }
            memcpy(m->allow + allow_len, rt->method, ml);
            allow_len += ml;
            m->allow[allow_len] = 0;
        }
    }
    if (hit) {
        m->status = 200;
        m->route = hit;
        for (size_t i = 0; i < n; i++) {
            if (!hit->seg[i].is_param)
                continue;
            m->param_name[m->n_params] = hit->seg[i].text;
            m->param_name_len[m->n_params] = hit->seg[i].len;
            m->param_value[m->n_params] = seg[i];
            m->param_len[m->n_params] = len[i];
            m->n_params++;
        }
        m->allow[0] = 0;
    } else if (allow_len) {
        m->status = 405;
    }
}

size_t http_router_count(const http_router *r)
{
    return r->n;
}

const http_route *http_router_at(const http_router *r, size_t i)
{
    return i < r->n ? &r->routes[i] : NULL;
}

const char *http_route_method(const http_route *rt)
{
    return rt->method;
}

const char *http_route_pattern(const http_route *rt)
{
    return rt->pattern;
}

http_auth http_route_auth(const http_route *rt)
{
    return rt->auth;
}

unsigned http_route_flags(const http_route *rt)
{
    return rt->flags;
}

void http__route_call(const http_route *rt, http_req *req)
{
    rt->fn(req, rt->ud);
}
