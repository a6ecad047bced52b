/* obs: the health registry. Components register a check; a run calls each in registration
 * order on the calling thread, times it, and reports the worst status with a JSON body the
 * HTTP layer serves as is (200 unless failing, by its own rule). Built-in checks for free disk
 * space and resident memory. */
#include "obs/obs.h"
#include "obs/obs_int.h"

#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#define COMPONENT_MAX_BYTES 64
#define MESSAGE_MAX_BYTES 256

typedef struct health_comp {
    char name[COMPONENT_MAX_BYTES];
    obs_health_fn fn;
    void *ctx;
    void *owned_ctx; /* built-in checks' state, freed with the registry */
} health_comp;

/* Components and the cached last report; mu serializes registration and runs. */
struct obs_health {
    obs_registry *metrics;
    obs_metric *status_gauge, *seconds_gauge;
    uint64_t cache_ns;
    pthread_mutex_t mu;
    health_comp *comps;
    size_t n, cap;
    int have_last;
    uint64_t last_ns;
    obs_health_status last_status;
    char *last_json;
    size_t last_len;
};

const char *obs_health_status_name(obs_health_status s)
{
    switch (s) {
    case OBS_HEALTH_OK:
        return "ok";
    case OBS_HEALTH_DEGRADED:
        return "degraded";
    default:
        return "failing";
    }
}

int obs_health_new(obs_registry *metrics, uint64_t cache_ms, obs_health **out)
{
    obs_health *h = vg_calloc(1, sizeof *h);
    if (!h)
        return vg_err_set(VG_ENOMEM, "health registry");
    h->metrics = metrics;
    h->cache_ns = cache_ms * 1000000ull;
    pthread_mutex_init(&h->mu, NULL);
    if (metrics) {
        int rc = obs_gauge_register(metrics, "vigil_health_status",
                                    "Last health check result per component: 0 ok, 1 degraded, "
                                    "2 failing.",
                                    "component", &h->status_gauge);
        if (!rc)
            rc = obs_gauge_register(metrics, "vigil_health_check_seconds",
                                    "Duration of the last health check per component.", "component",
                                    &h->seconds_gauge);
        if (rc) {
            obs_health_free(h);
            return rc;
        }
    }
    *out = h;
    return VG_OK;
}

void obs_health_free(obs_health *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        vg_free(h->comps[i].owned_ctx);
    vg_free(h->comps);
    vg_free(h->last_json);
    pthread_mutex_destroy(&h->mu);
    vg_free(h);
}

static int valid_component(const char *s)
{
    if (!s || !*s || strlen(s) >= COMPONENT_MAX_BYTES)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' ||
              *s == '-'))
            return 0;
    return 1;
}

static int add_component(obs_health *h, const char *name, obs_health_fn fn, void *ctx, void *owned)
{
    if (!valid_component(name))
        return vg_err_set(VG_EINVAL, "bad health component name \"%s\"", name ? name : "(null)");
    if (!fn)
        return vg_err_set(VG_EINVAL, "health component %s without a check", name);
    int rc = VG_OK;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->comps[i].name, name)) {
            rc = vg_err_set(VG_EEXIST, "health component %s registered twice", name);
            goto done;
        }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        health_comp *v = vg_realloc(h->comps, cap * sizeof *v);
        if (!v) {
            rc = vg_err_set(VG_ENOMEM, "health components");
            goto done;
        }
        h->comps = v;
        h->cap = cap;
    }
    health_comp *c = &h->comps[h->n++];
    memset(c, 0, sizeof *c);
    strcpy(c->name, name);
    c->fn = fn;
    c->ctx = ctx;
    c->owned_ctx = owned;
    h->have_last = 0; /* the cached report lacks the new component */
done:
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int obs_health_register(obs_health *h, const char *component_name, obs_health_fn fn, void *ctx)
{
    return add_component(h, component_name, fn, ctx, NULL);
}

/* ---- built-in checks ------------------------------------------------------------------------ */

typedef struct disk_ctx {
    uint64_t min_free, warn_free;
    char dir[]; /* flexible: the path */
} disk_ctx;

static void fmt_bytes(uint64_t b, char *out, size_t n)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < VG_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static obs_health_status check_disk(void *ctx, char *msg, size_t n)
{
    const disk_ctx *d = ctx;
    struct statvfs st;
    if (statvfs(d->dir, &st) != 0) {
        snprintf(msg, n, "cannot examine %s", d->dir);
        return OBS_HEALTH_FAILING;
    }
    uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
    uint64_t total = (uint64_t)st.f_blocks * st.f_frsize;
    char a[32], t[32];
    fmt_bytes(avail, a, sizeof a);
    fmt_bytes(total, t, sizeof t);
    snprintf(msg, n, "%s free of %s at %s", a, t, d->dir);
    if (avail < d->min_free)
        return OBS_HEALTH_FAILING;
    return avail < d->warn_free ? OBS_HEALTH_DEGRADED : OBS_HEALTH_OK;
}

int obs_health_add_disk(obs_health *h, const char *component_name, const char *dir,
                        uint64_t min_free_bytes, uint64_t warn_free_bytes)
{
    if (!dir || !*dir || strlen(dir) > 4096)
        return vg_err_set(VG_EINVAL, "disk check without a directory");
    disk_ctx *d = vg_malloc(sizeof *d + strlen(dir) + 1);
    if (!d)
        return vg_err_set(VG_ENOMEM, "disk check");
    d->min_free = min_free_bytes;
    d->warn_free = warn_free_bytes;
    strcpy(d->dir, dir);
    int rc = add_component(h, component_name, check_disk, d, d);
    if (rc)
        vg_free(d);
    return rc;
}

typedef struct mem_ctx {
    uint64_t limit;
    double warn_fraction;
} mem_ctx;

static obs_health_status check_memory(void *ctx, char *msg, size_t n)
{
    const mem_ctx *m = ctx;
    obs_process p;
    if (obs_process_read(&p)) {
        snprintf(msg, n, "cannot read the resident set size");
        return OBS_HEALTH_FAILING;
    }
    char r[32], l[32];
    fmt_bytes(p.resident_bytes, r, sizeof r);
    fmt_bytes(m->limit, l, sizeof l);
    snprintf(msg, n, "resident %s of %s limit", r, l);
    if (p.resident_bytes > m->limit)
        return OBS_HEALTH_FAILING;
    return (double)p.resident_bytes > m->warn_fraction * (double)m->limit ? OBS_HEALTH_DEGRADED
                                                                          : OBS_HEALTH_OK;
}

int obs_health_add_memory(obs_health *h, const char *component_name, uint64_t limit_bytes,
                          double warn_fraction)
{
    if (limit_bytes == 0 || !(warn_fraction > 0 && warn_fraction <= 1))
        return vg_err_set(VG_EINVAL, "memory check needs a limit and 0 < warn_fraction <= 1");
    mem_ctx *m = vg_malloc(sizeof *m);
    if (!m)
        return vg_err_set(VG_ENOMEM, "memory check");
    m->limit = limit_bytes;
    m->warn_fraction = warn_fraction;
    int rc = add_component(h, component_name, check_memory, m, m);
    if (rc)
        vg_free(m);
    return rc;
}

/* ---- runs ----------------------------------------------------------------------------------- */

static int copy_out(const char *json, size_t len, char **out, size_t *out_len)
{
    if (!out)
        return VG_OK;
    char *c = vg_malloc(len + 1);
    if (!c)
        return vg_err_set(VG_ENOMEM, "health report");
    memcpy(c, json, len + 1);
    *out = c;
    if (out_len)
        *out_len = len;
    return VG_OK;
}

int obs_health_run(obs_health *h, obs_health_status *overall, char **json, size_t *json_len)
{
    pthread_mutex_lock(&h->mu);
    uint64_t t0 = vg_now_ns();
    if (h->cache_ns && h->have_last && t0 - h->last_ns < h->cache_ns) {
        int rc = copy_out(h->last_json, h->last_len, json, json_len);
        if (!rc)
            *overall = h->last_status;
        pthread_mutex_unlock(&h->mu);
        return rc;
    }
    obs_health_status worst = OBS_HEALTH_OK;
    obs__buf comps = {0}, failing = {0};
    for (size_t i = 0; i < h->n; i++) {
        health_comp *c = &h->comps[i];
        char raw[MESSAGE_MAX_BYTES] = "", msg[MESSAGE_MAX_BYTES];
        uint64_t a = vg_now_ns();
        obs_health_status s = c->fn(c->ctx, raw, sizeof raw);
        double secs = (double)(vg_now_ns() - a) / 1e9;
        if ((unsigned)s > OBS_HEALTH_FAILING)
            s = OBS_HEALTH_FAILING; /* a check returning garbage is not healthy */
        raw[sizeof raw - 1] = '\0';
        obs__utf8_clean(raw, msg, sizeof msg);
        if (s > worst)
            worst = s;
        if (s == OBS_HEALTH_FAILING) {
            obs__buf_puts(&failing, failing.n ? "," : "");
            obs__buf_json_str(&failing, c->name);
        }
        obs__buf_puts(&comps, i ? "," : "");
        obs__buf_json_str(&comps, c->name);
        obs__buf_printf(&comps, ":{\"status\":\"%s\",\"message\":", obs_health_status_name(s));
        obs__buf_json_str(&comps, msg);
        obs__buf_printf(&comps, ",\"duration_ms\":%.3f}", secs * 1e3);
        obs_set(h->status_gauge, OBS_LABELS(c->name), (double)s);
        obs_set(h->seconds_gauge, OBS_LABELS(c->name), secs);
    }
    char when[32];
    vg_format_time(vg_wall_ms(), when, sizeof when);
    obs__buf b = {0};
    obs__buf_printf(&b,
                    "{\"status\":\"%s\",\"checked_at\":\"%s\",\"duration_ms\":%.3f,"
                    "\"failing\":[",
                    obs_health_status_name(worst), when, (double)(vg_now_ns() - t0) / 1e6);
    if (failing.p)
        obs__buf_put(&b, failing.p, failing.n);
    obs__buf_puts(&b, "],\"components\":{");
    if (comps.p)
        obs__buf_put(&b, comps.p, comps.n);
    obs__buf_puts(&b, "}}");
    b.oom |= comps.oom | failing.oom;
    vg_free(comps.p);
    vg_free(failing.p);
    char *text;
    size_t len;
    int rc = obs__buf_finish(&b, &text, &len);
    if (!rc) {
        rc = copy_out(text, len, json, json_len);
        vg_free(h->last_json);
        h->last_json = text;
        h->last_len = len;
        h->last_status = worst;
        h->last_ns = t0;
        h->have_last = 1;
        if (!rc)
            *overall = worst;
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}
