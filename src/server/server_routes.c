/* The route table: every API route, its auth, and its handler. The OpenAPI document
 * (openapi.json beside this file) describes exactly these routes; tests/test_server.c checks
 * both ways. */
#include "server/server_int.h"

typedef struct route_def {
    const char *method;
    const char *pattern;
    http_auth auth;
    unsigned flags;
    http_handler_fn fn;
} route_def;

#define B HTTP_ROUTE_BODY
#define J (HTTP_ROUTE_BODY | HTTP_ROUTE_JSON) /* a JSON body: --max-json-body-bytes */
#define PUB HTTP_AUTH_PUBLIC
#define ADM HTTP_AUTH_ADMIN
#define TEN HTTP_AUTH_TENANT

/* clang-format off */
static const route_def routes[] = {
    {"GET",    "/api/v1/health",                               PUB, 0, server__api_health},
    {"GET",    "/api/v1/health/live",                          PUB, 0, server__api_live},
    {"GET",    "/api/v1/openapi.json",                         PUB, 0, server__api_openapi},
    {"GET",    "/metrics",                                     PUB, 0, server__api_metrics},
    {"GET",    "/dashboard",                                   PUB, 0, server__api_dashboard},
    {"GET",    "/api/v1/ops/actions",                          ADM, 0, server__api_ops_actions},
    {"GET",    "/api/v1/metrics/performance",                  ADM, 0, server__api_metrics_performance},
    {"GET",    "/api/v1/metrics/sla",                          ADM, 0, server__api_metrics_sla},

    {"POST",   "/api/v1/tenants",                              ADM, J, server__api_tenant_create},
    {"GET",    "/api/v1/tenants",                              ADM, 0, server__api_tenant_list},
    {"GET",    "/api/v1/tenants/{tenant_id}",                  ADM, 0, server__api_tenant_get},
    {"POST",   "/api/v1/tenants/{tenant_id}/keys",             ADM, J, server__api_key_create},
    {"GET",    "/api/v1/tenants/{tenant_id}/keys",             ADM, 0, server__api_key_list},
    {"DELETE", "/api/v1/tenants/{tenant_id}/keys/{key_id}",    ADM, 0, server__api_key_revoke},

    {"POST",   "/api/v1/profiles",                             TEN, J, server__api_profile_create},
    {"GET",    "/api/v1/profiles",                             TEN, 0, server__api_profile_list},
    {"GET",    "/api/v1/profiles/{profile_id}",                TEN, 0, server__api_profile_get},
    {"PATCH",  "/api/v1/profiles/{profile_id}",                TEN, J, server__api_profile_update},
    {"DELETE", "/api/v1/profiles/{profile_id}",                TEN, 0, server__api_profile_delete},
    {"POST",   "/api/v1/profiles/{profile_id}/references",     TEN, B, server__api_reference_create},
    {"GET",    "/api/v1/profiles/{profile_id}/references",     TEN, 0, server__api_reference_list},
    {"GET",    "/api/v1/references/{reference_id}",            TEN, 0, server__api_reference_get},
    {"GET",    "/api/v1/references/{reference_id}/image",      TEN, 0, server__api_reference_image},
    {"DELETE", "/api/v1/references/{reference_id}",            TEN, 0, server__api_reference_delete},

    {"POST",   "/api/v1/analyze",                              TEN, B, server__api_analyze},
    {"POST",   "/api/v1/analyze/batch",                        TEN, B, server__api_analyze_batch},
    {"GET",    "/api/v1/scans",                                TEN, 0, server__api_scan_list},
    {"GET",    "/api/v1/scans/{scan_id}",                      TEN, 0, server__api_scan_get},
    {"GET",    "/api/v1/matches",                              TEN, 0, server__api_match_list},
    {"GET",    "/api/v1/matches/{match_id}",                   TEN, 0, server__api_match_get},
    {"GET",    "/api/v1/jobs/{job_id}",                        TEN, 0, server__api_job_get},

    {"POST",   "/api/v1/notices",                              TEN, J, server__api_notice_create},
    {"GET",    "/api/v1/notices",                              TEN, 0, server__api_notice_list},
    {"GET",    "/api/v1/notices/{notice_id}",                  TEN, 0, server__api_notice_get},
    {"POST",   "/api/v1/notices/{notice_id}/status",           TEN, J, server__api_notice_status},
    {"GET",    "/api/v1/notices/{notice_id}/events",           TEN, 0, server__api_notice_events},

    {"GET",    "/api/v1/alerts",                               ADM, 0, server__api_alerts},
    {"POST",   "/api/v1/alerts/{alert_id}/ack",                ADM, 0, server__api_alert_ack},
    {"GET",    "/api/v1/alerts/silences",                      ADM, 0, server__api_silence_list},
    {"POST",   "/api/v1/alerts/silences",                      ADM, J, server__api_silence_create},
    {"DELETE", "/api/v1/alerts/silences/{silence_id}",         ADM, 0, server__api_silence_delete},
};
/* clang-format on */

int server_add_routes(server *s, http_router *r)
{
    for (size_t i = 0; i < VG_ARRAY_LEN(routes); i++) {
        const route_def *d = &routes[i];
        int rc = http_router_add(r, d->method, d->pattern, d->auth, d->flags, d->fn, s);
        if (rc != VG_OK)
            return rc;
    }
    return VG_OK;
}
