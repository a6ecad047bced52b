/* Operations routes (admin): the performance KPIs and the SLA report, both rendered by src/ops
 * (docs/OPERATIONS.md describes every field). */
#include "server/server_int.h"

#include "ops/ops.h"

static void reply(http_req *req, server *s, int (*render)(ops *, int64_t, json_t **))
{
    if (!s->ops) {
        server__unavailable(req, "ops");
        return;
    }
    json_t *j = NULL;
    if (render(s->ops, vg_wall_ms(), &j) != VG_OK) {
        http_reply_error(req, 503, NULL, "out of memory rendering the report");
        return;
    }
    http_reply_json(req, 200, j);
}

void server__api_metrics_performance(http_req *req, void *ud)
{
    reply(req, ud, ops_performance_json);
}

void server__api_metrics_sla(http_req *req, void *ud)
{
    reply(req, ud, ops_sla_json);
}
