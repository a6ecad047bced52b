/* Fuzzes route matching with the server's route shapes: input is "METHOD path". Checks matched
 * parameters lie inside the path and 405 always carries an Allow list. */
#include "http/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void nop(http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static http_router *build(void)
{
    static const char *const routes[][2] = {
        {"GET", "/api/v1/health"},
        {"GET", "/api/v1/health/live"},
        {"GET", "/metrics"},
        {"POST", "/api/v1/tenants"},
        {"GET", "/api/v1/tenants/{tenant_id}"},
        {"POST", "/api/v1/tenants/{tenant_id}/keys"},
        {"DELETE", "/api/v1/tenants/{tenant_id}/keys/{key_id}"},
        {"GET", "/api/v1/profiles"},
        {"POST", "/api/v1/profiles"},
        {"GET", "/api/v1/profiles/{profile_id}"},
        {"PATCH", "/api/v1/profiles/{profile_id}"},
        {"DELETE", "/api/v1/profiles/{profile_id}"},
        {"POST", "/api/v1/profiles/{profile_id}/references"},
        {"POST", "/api/v1/analyze"},
        {"POST", "/api/v1/analyze/batch"},
        {"GET", "/api/v1/notices/{notice_id}/events"},
    };
    http_router *r;
    if (http_router_new(&r) != VG_OK)
        abort();
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (http_router_add(r, routes[i][0], routes[i][1], HTTP_AUTH_PUBLIC, 0, nop, NULL) != 0)
            abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_router *r; /* built once per process; read-only afterwards */
    if (!r)
        r = build();
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    char *sp = strchr(s, ' ');
    const char *method = "GET", *path = s;
    if (sp) {
        *sp = 0;
        method = s;
        path = sp + 1;
    }
    http_match m;
    http_router_match(r, method, path, &m);
    size_t plen = strlen(path);
    if (m.status == 200) {
        for (size_t i = 0; i < m.n_params; i++)
            if (m.param_value[i] < path || m.param_value[i] + m.param_len[i] > path + plen ||
                m.param_len[i] == 0)
                abort();
    } else if (m.status == 405) {
        if (!m.allow[0])
            abort();
    } else if (m.status != 404) {
        abort();
    }
    free(s);
    return 0;
}
