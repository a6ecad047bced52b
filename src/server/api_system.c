/* System routes: health (readiness), liveness, the OpenAPI document. */
#include "server/server_int.h"

#include "obs/obs.h"

/* Readiness from the obs health registry: 200 unless a component is failing (degraded is still
 * ready), 503 naming the failing components otherwise. */
void server__api_health(http_req *req, void *ud)
{
    server *s = ud;
    obs_health_status overall;
    char *json = NULL;
    size_t len = 0;
    if (obs_health_run(s->health, &overall, &json, &len) != VG_OK) {
        http_reply_error(req, 503, NULL, "cannot run the health checks");
        return;
    }
    http_reply_data(req, overall == OBS_HEALTH_FAILING ? 503 : 200, "application/json", json, len);
    vg_free(json);
}

void server__api_metrics(http_req *req, void *ud)
{
    server *s = ud;
    char *text = NULL;
    size_t len = 0;
    if (obs_render_prometheus(s->reg, &text, &len) != VG_OK) {
        http_reply_error(req, 503, NULL, "out of memory rendering metrics");
        return;
    }
    http_reply_data(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    vg_free(text);
}

void server__api_live(http_req *req, void *ud)
{
    (void)ud;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

void server__api_openapi(http_req *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *doc = server_openapi_json(&len);
    http_reply_static(req, 200, "application/json", doc, len);
}
