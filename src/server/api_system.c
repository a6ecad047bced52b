/* System routes: health (readiness), liveness, the OpenAPI document. */
#include "server/server_int.h"

#if VG_SERVER_HAVE_OBS
#include "obs/obs.h"
#endif

#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#if !VG_SERVER_HAVE_OBS
/* Below this much free space under the data directory, writes are about to fail: not ready. */
#define SERVER_MIN_FREE_DISK_BYTES (64ull << 20)

/* Below this much available memory the next large upload may fail: not ready. */
#define SERVER_MIN_FREE_MEMORY_BYTES (64ull << 20)

/* MemAvailable from /proc/meminfo (Linux). */
static int mem_available(uint64_t *out)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    char line[256];
    int rc = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *out = (uint64_t)kb * 1024;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Same shape as the obs health report, so clients see one format either way. */
static void component(json_t *comps, const char *name, int ok, const char *detail, int *all_ok)
{
    json_t *c =
        json_pack("{s:s,s:s}", "status", ok ? "ok" : "failing", "message", detail ? detail : "ok");
    json_object_set_new(comps, name, c);
    if (!ok)
        *all_ok = 0;
}

#endif

#if VG_SERVER_HAVE_OBS

/* Readiness from the obs health registry: 200 unless a component is failing (degraded is still
 * ready), 503 naming the failing components otherwise. */
void api_health(http_req *req, void *ud)
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

void api_metrics(http_req *req, void *ud)
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

#else

void api_health(http_req *req, void *ud)
{
    server *s = ud;
    json_t *comps = json_object();
    int ok = 1;
    component(comps, "api", 1, NULL, &ok);
    vg_err_clear();
    int rc = store_ping(s->st);
    component(comps, "database", rc == VG_OK, rc == VG_OK ? NULL : vg_err_msg(), &ok);
    char detail[128];
    snprintf(detail, sizeof(detail), "%llu references",
             (unsigned long long)srv_index_references(s));
    component(comps, "index", s->ix != NULL, detail, &ok);
    component(comps, "analysis", s->an != NULL,
              s->an ? NULL : "the analysis pipeline is not built into this server", &ok);
    if (s->cfg->faces)
        component(comps, "models", s->models != NULL,
                  s->models ? NULL : (s->models_error[0] ? s->models_error : "not loaded"), &ok);
    else
        component(comps, "models", 1, "face analysis is off (faces = false)", &ok);
    if (s->an)
        component(comps, "cache", s->cache != NULL, NULL, &ok);
    uint64_t avail = 0;
    if (mem_available(&avail) == 0) {
        snprintf(detail, sizeof(detail), "%llu MiB available", (unsigned long long)(avail >> 20));
        component(comps, "memory", avail >= SERVER_MIN_FREE_MEMORY_BYTES, detail, &ok);
    }
    struct statvfs vfs;
    if (statvfs(s->cfg->data_dir, &vfs) == 0) {
        unsigned long long free_b = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        snprintf(detail, sizeof(detail), "%llu MiB free", free_b >> 20);
        component(comps, "disk", free_b >= SERVER_MIN_FREE_DISK_BYTES, detail, &ok);
    } else {
        component(comps, "disk", 0, "cannot stat the data directory", &ok);
    }
    json_t *failing = json_array();
    const char *name;
    json_t *c;
    json_object_foreach(comps, name, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "status")), "ok") != 0)
            json_array_append_new(failing, json_string(name));
    }
    char now[32];
    json_t *body = json_pack("{s:s,s:s,s:o,s:o}", "status", ok ? "ok" : "failing", "checked_at",
                             vg_format_time(vg_wall_ms(), now, sizeof(now)), "failing", failing,
                             "components", comps);
    http_reply_json(req, ok ? 200 : 503, body);
}

#endif

void api_live(http_req *req, void *ud)
{
    (void)ud;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

void api_openapi(http_req *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *doc = http_openapi_json(&len);
    http_reply_static(req, 200, "application/json", doc, len);
}
