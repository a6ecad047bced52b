/* fuzz_obs: arbitrary label values, help text and gauge values through both renderers. Checks
 * that the JSON parses and carries the (UTF-8 cleaned) label values unchanged, and that the
 * Prometheus sample line unescapes back to them, so no input can break out of a quoted label
 * value or produce a line a scraper would misread.
 * Input: <value a> \0 <value b> \0 <help> \0 <8 bytes of gauge value>. */
#include "core/core.h"
#include "obs/obs.h"
#include "obs/obs_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *next_part(const uint8_t **p, const uint8_t *end, char *buf, size_t cap)
{
    size_t n = 0;
    while (*p < end && **p != 0 && n + 1 < cap)
        buf[n++] = (char)*(*p)++;
    buf[n] = '\0';
    while (*p < end && **p != 0)
        (*p)++;
    if (*p < end)
        (*p)++;
    return buf;
}

/* Unescapes a Prometheus label value starting after the opening quote; returns the position
 * after the closing quote or NULL. */
static const char *prom_unescape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && *s != '"'; s++) {
        char c = *s;
        if (c == '\n')
            return NULL; /* a raw newline would split the sample */
        if (c == '\\') {
            s++;
            c = *s == 'n' ? '\n' : *s;
            if (*s != 'n' && *s != '\\' && *s != '"')
                return NULL;
        }
        if (n + 1 >= cap)
            return NULL;
        out[n++] = c;
    }
    out[n] = '\0';
    return *s == '"' ? s + 1 : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char a[512], b[512], help[1100];
    next_part(&p, end, a, sizeof a);
    next_part(&p, end, b, sizeof b);
    next_part(&p, end, help, sizeof help);
    double gv = 0;
    if (end - p >= 8)
        memcpy(&gv, p, 8);

    obs_config cfg = {.max_series = 4, .no_process_metrics = 1};
    obs_registry *r;
    if (obs_registry_new(&cfg, &r))
        abort();
    obs_metric *c, *g;
    int rc = obs_counter_register(r, "fz_total", help, "a,b", &c);
    if (strlen(help) >= OBS_HELP_MAX_BYTES) {
        /* over the documented bound: refused, and the registry stays usable */
        if (rc != VG_EINVAL || obs_gauge_register(r, "fz_gauge", "g", NULL, &g))
            abort();
        obs_registry_free(r);
        return 0;
    }
    if (rc || obs_gauge_register(r, "fz_gauge", "g", NULL, &g))
        abort();
    obs_inc(c, OBS_LABELS(a, b));
    obs_set(g, NULL, gv);

    char ca[OBS_LABEL_VALUE_MAX_BYTES], cb[OBS_LABEL_VALUE_MAX_BYTES];
    obs__utf8_clean(a, ca, sizeof ca);
    obs__utf8_clean(b, cb, sizeof cb);

    char *text;
    size_t len;
    if (obs_render_prometheus(r, &text, &len))
        abort();
    if (strlen(text) != len)
        abort();
    /* The sample line of fz_total: exactly one, at the start of a line. */
    const char *line = strstr(text, "\nfz_total{a=\"");
    if (!line || strstr(line + 1, "\nfz_total{"))
        abort();
    char ua[OBS_LABEL_VALUE_MAX_BYTES], ub[OBS_LABEL_VALUE_MAX_BYTES];
    const char *q = prom_unescape(line + strlen("\nfz_total{a=\""), ua, sizeof ua);
    if (!q || strncmp(q, ",b=\"", 4))
        abort();
    q = prom_unescape(q + 4, ub, sizeof ub);
    if (!q || strncmp(q, "} 1\n", 4) || strcmp(ua, ca) || strcmp(ub, cb))
        abort();
    /* Every line is a comment or a sample: no help text can inject a line. */
    for (const char *l = text; *l; l = strchr(l, '\n') + 1)
        if (strncmp(l, "# HELP ", 7) && strncmp(l, "# TYPE ", 7) && strncmp(l, "fz_", 3) &&
            strncmp(l, "vigil_obs_", 10))
            abort();
    vg_free(text);

    if (obs_render_json(r, &text, &len))
        abort();
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    if (!root)
        abort();
    json_t *m0 = json_array_get(json_object_get(root, "metrics"), 0);
    json_t *labels = json_object_get(json_array_get(json_object_get(m0, "series"), 0), "labels");
    if (strcmp(json_string_value(json_object_get(labels, "a")), ca) ||
        strcmp(json_string_value(json_object_get(labels, "b")), cb))
        abort();
    json_decref(root);
    vg_free(text);
    obs_registry_free(r);
    return 0;
}
