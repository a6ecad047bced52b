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
    int status = overall == OBS_HEALTH_FAILING ? 503 : 200;
    /* The node's place in the shared change log, as numbers (the index_sync component says
     * the same in words and turns failing past index_max_lag). */
    json_t *root = s->cat ? json_loadb(json, len, 0, NULL) : NULL;
    if (root && json_is_object(root)) {
        catalog_sync_stats ss;
        catalog_sync_stats_get(s->cat, &ss);
        json_t *o = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I}", "applied_seq", (json_int_t)ss.applied_seq, "head_seq",
            (json_int_t)ss.head_seq, "lag_entries",
            (json_int_t)(ss.head_seq > ss.applied_seq ? ss.head_seq - ss.applied_seq : 0), "lag_ms",
            (json_int_t)ss.lag_ms, "last_poll_ms_ago", (json_int_t)ss.since_poll_ms, "max_lag_ms",
            (json_int_t)s->cfg->index_max_lag_ms);
        if (o && json_object_set_new(root, "index_sync", o) == 0) {
            vg_free(json);
            http_reply_json(req, status, root);
            return;
        }
    }
    json_decref(root);
    http_reply_data(req, status, "application/json", json, len);
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
