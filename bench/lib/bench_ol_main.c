/*
 * bench: `vigil bench openloop`, the open-loop load test of issue 13 (generator in
 * bench_openloop.c). Against a running server on 127.0.0.1:PORT: sets up a tenant, key,
 * profile, work reference, one stored match and one notice (with --admin-key) or takes a tenant
 * key and profile (--key, --profile); primes the cached images; then offers each rate of --rates
 * for --duration seconds over --connections keep-alive connections with the --mix of
 *   api:    GET profiles list, one profile, matches list, notices list (round robin);
 *   cached: POST /api/v1/analyze of the same few images (feature-cache hits after priming);
 *   new:    the same images made unique (a JPEG comment with a fresh tag: new bytes and SHA-256,
 *           so every one is a cache miss and runs the whole analysis).
 * Prints one table row per rate and writes the JSON report (--json). A rate "holds" when its
 * P95 is within --target-p95-ms and nothing failed; the report names the highest that holds.
 */
#include "bench/lib/bench_int.h"
#include "core/core.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OL_MAX_RATES 64
#define OL_MAX_IMAGES 8
#define OL_N_API 4
#define OL_SETUP_TIMEOUT_MS 60000
#define OL_DEFAULT_CONNECTIONS 64
#define OL_DEFAULT_DURATION_S 10
#define OL_DEFAULT_TIMEOUT_MS 10000
#define OL_DEFAULT_PAUSE_MS 2000 /* between rates: the queue of the last one drains */
#define OL_DEFAULT_TARGET_P95_MS 50.0

static const char *const class_names[BENCH_OL_CLASSES] = {"api", "cached", "new"};

typedef struct ol_cli {
    uint16_t port;
    const char *admin_key, *key_arg, *profile_arg, *query, *json_path, *label;
    double rates[OL_MAX_RATES];
    unsigned n_rates;
    unsigned connections, weights[BENCH_OL_CLASSES];
    uint64_t duration_ms, pause_ms;
    uint32_t timeout_ms;
    double target_p95_ms;
    int quiet;
    char images_arg[2048];
    /* set up */
    char key[128], profile[64];
    bench_img img[OL_MAX_IMAGES];
    char img_names[OL_MAX_IMAGES][16];
    unsigned n_img;
    bench_buf api[OL_N_API];
    bench_req cached[OL_MAX_IMAGES], fresh[OL_MAX_IMAGES];
    uint64_t run; /* high bits of the unique tags, new for each rate */
} ol_cli;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vigil bench openloop --port PORT (--admin-key KEY | --key KEY [--profile ID])\n"
            "         [--rates R1,R2,...] [--duration S] [--connections N]\n"
            "         [--mix api=W,cached=W,new=W] [--timeout-ms MS] [--pause-ms MS]\n"
            "         [--images A.jpg,B.jpg] [--query Q] [--target-p95-ms MS] [--json FILE]\n"
            "         [--label TEXT] [--quiet]\n"
            "Open-loop load against a vigil serve on 127.0.0.1:PORT: requests due at a fixed\n"
            "rate over N keep-alive connections, latency from each request's due time.\n"
            "  --admin-key KEY  set up a tenant, key, profile, reference, match and notice\n"
            "  --key, --profile use this tenant key (and profile) instead\n"
            "  --rates          requests per second, one step each (default 100,200,500)\n"
            "  --duration S     seconds per rate (default %d)\n"
            "  --connections N  (default %d)\n"
            "  --mix            weights of API reads, cached and new-image analyses\n"
            "                   (default api=45,cached=45,new=10)\n"
            "  --timeout-ms MS  a request unanswered this long after its due time fails\n"
            "                   (default %d)\n"
            "  --images LIST    JPEGs for the analyses (default bench/images/{S,M,L}.jpg)\n"
            "  --query Q        analyze query string (default store=false)\n"
            "  --target-p95-ms  the P95 a rate must hold, with no errors (default 50)\n"
            "  --json FILE      the report as JSON\n",
            OL_DEFAULT_DURATION_S, OL_DEFAULT_CONNECTIONS, OL_DEFAULT_TIMEOUT_MS);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *e;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &e, 10);
    if (*e || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_rates(ol_cli *c, const char *s)
{
    c->n_rates = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *e;
        double r = strtod(t, &e);
        if (*e || !(r > 0) || r > 1e7 || c->n_rates >= OL_MAX_RATES)
            return -1;
        c->rates[c->n_rates++] = r;
    }
    return c->n_rates ? 0 : -1;
}

static int parse_mix(ol_cli *c, const char *s)
{
    unsigned w[BENCH_OL_CLASSES] = {0};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq)
            return -1;
        *eq = 0;
        uint64_t v;
        if (parse_u64(eq + 1, 0, 1000000, &v))
            return -1;
        int k = 0;
        while (k < BENCH_OL_CLASSES && strcmp(t, class_names[k]))
            k++;
        if (k == BENCH_OL_CLASSES)
            return -1;
        w[k] = (unsigned)v;
    }
    if (!w[0] && !w[1] && !w[2])
        return -1;
    memcpy(c->weights, w, sizeof w);
    return 0;
}

static int load_images(ol_cli *c)
{
    char buf[sizeof c->images_arg];
    snprintf(buf, sizeof buf, "%s", c->images_arg);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (c->n_img >= OL_MAX_IMAGES)
            return vg_err_set(VG_EINVAL, "at most %d images", OL_MAX_IMAGES);
        bench_img *im = &c->img[c->n_img];
        vg_err_clear();
        int rc = vg_read_file(t, 64u << 20, &im->bytes, &im->len);
        if (rc)
            return vg_err_set(rc, "%s: %s", t, vg_err_msg());
        const char *base = strrchr(t, '/');
        snprintf(c->img_names[c->n_img], sizeof c->img_names[0], "%s", base ? base + 1 : t);
        im->name = c->img_names[c->n_img];
        c->n_img++;
    }
    return c->n_img ? VG_OK : vg_err_set(VG_EINVAL, "no images");
}

/* One setup call; the answer's JSON (owned) in *out when out is not NULL. */
static int call(ol_cli *c, const char *method, const char *path, const char *bearer,
                const char *ctype, const void *body, size_t len, json_t **out)
{
    bench_buf resp;
    bench_buf_init(&resp);
    int status = 0;
    vg_err_clear();
    int rc = bench_http_call(c->port, method, path, bearer, ctype, body, len, OL_SETUP_TIMEOUT_MS,
                             &status, &resp);
    if (rc == VG_OK && (status < 200 || status > 299))
        rc = vg_err_set(VG_EIO, "%s %s: HTTP %d: %.200s", method, path, status,
                        resp.data ? resp.data : "");
    else if (rc) {
        char why[256]; /* vg_err_set writes the buffer vg_err_msg reads */
        snprintf(why, sizeof why, "%s", vg_err_msg());
        rc = vg_err_set(rc, "%s %s: %s", method, path, why);
    }
    if (rc == VG_OK && out) {
        *out = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
        if (!*out)
            rc = vg_err_set(VG_ECORRUPT, "%s %s: answer is not JSON", method, path);
    }
    bench_buf_deinit(&resp);
    return rc;
}

static int call_id(ol_cli *c, const char *method, const char *path, const char *bearer,
                   const char *json_body, const char *field, char *out, size_t n)
{
    json_t *j = NULL;
    int rc = call(c, method, path, bearer, json_body ? "application/json" : NULL, json_body,
                  json_body ? strlen(json_body) : 0, &j);
    if (rc)
        return rc;
    const char *v = json_string_value(json_object_get(j, field));
    if (v)
        snprintf(out, n, "%s", v);
    else
        rc = vg_err_set(VG_ECORRUPT, "%s %s: no '%s' in the answer", method, path, field);
    json_decref(j);
    return rc;
}

/* Tenant, key, profile, a work reference (the first image), one stored analysis of a variant of
 * it (a pdq match) and a notice from that match, so that every list the API class reads has
 * rows. */
static int setup_tenant(ol_cli *c)
{
    char tenant[64], path[256];
    int rc = call_id(c, "POST", "/api/v1/tenants", c->admin_key,
                     "{\"name\":\"openloop\",\"kind\":\"agency\"}", "id", tenant, sizeof tenant);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/keys", tenant);
    if (!rc)
        rc = call_id(c, "POST", path, c->admin_key, "{\"name\":\"openloop\"}", "key", c->key,
                     sizeof c->key);
    if (!rc)
        rc = call_id(c, "POST", "/api/v1/profiles", c->key,
                     "{\"name\":\"Open Loop\",\"legal_name\":\"Open Loop Ltd\","
                     "\"email\":\"legal@example.com\",\"address\":\"1 Main St\"}",
                     "id", c->profile, sizeof c->profile);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "/api/v1/profiles/%s/references?kind=work&title=openloop",
             c->profile);
    rc = call(c, "POST", path, c->key, "image/jpeg", c->img[0].bytes, c->img[0].len, NULL);
    if (rc)
        return rc;
    bench_buf v;
    bench_buf_init(&v);
    rc = bench__unique_jpeg(&c->img[0], (uint64_t)time(NULL), &v);
    json_t *j = NULL;
    if (!rc)
        rc = call(c, "POST", "/api/v1/analyze?source_url=https://example.com/openloop.jpg", c->key,
                  "image/jpeg", v.data, v.len, &j);
    bench_buf_deinit(&v);
    json_decref(j);
    if (rc)
        return rc;
    char match[64] = "";
    j = NULL;
    if (call(c, "GET", "/api/v1/matches", c->key, NULL, NULL, 0, &j) == VG_OK) {
        const char *m = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "items"), 0), "id"));
        if (m)
            snprintf(match, sizeof match, "%s", m);
    }
    json_decref(j);
    if (match[0]) { /* best effort: the lists still work without a notice */
        char body[512], id[64];
        snprintf(body, sizeof body,
                 "{\"match_id\":\"%s\",\"infringing_url\":\"https://example.com/openloop.jpg\","
                 "\"recipient\":{\"name\":\"Abuse Desk\",\"email\":\"abuse@example.com\"},"
                 "\"signer_name\":\"Open Loop\"}",
                 match);
        call_id(c, "POST", "/api/v1/notices", c->key, body, "id", id, sizeof id);
    }
    return VG_OK;
}

static int build_requests(ol_cli *c)
{
    char path[256];
    const char *const gets[OL_N_API] = {"/api/v1/profiles", NULL, "/api/v1/matches",
                                        "/api/v1/notices"};
    for (int k = 0; k < OL_N_API; k++) {
        bench_buf_init(&c->api[k]);
        if (gets[k])
            snprintf(path, sizeof path, "%s", gets[k]);
        else if (c->profile[0])
            snprintf(path, sizeof path, "/api/v1/profiles/%s", c->profile);
        else
            snprintf(path, sizeof path, "/api/v1/profiles?limit=1");
        if (bench_http_request(&c->api[k], "GET", path, c->key, NULL, NULL, NULL, 0))
            return VG_ENOMEM;
    }
    for (unsigned k = 0; k < c->n_img; k++) {
        int rc = bench__req_analyze(&c->cached[k], &c->img[k], c->key, c->query, 0);
        if (!rc)
            rc = bench__req_analyze(&c->fresh[k], &c->img[k], c->key, c->query, 1);
        if (rc)
            return rc;
    }
    return VG_OK;
}

static int build(void *arg, int cls, uint64_t i, bench_ol_req *out)
{
    ol_cli *c = arg;
    const bench_buf *b;
    if (cls == BENCH_OL_API)
        b = &c->api[i % OL_N_API];
    else if (cls == BENCH_OL_CACHED)
        b = &c->cached[i % c->n_img].buf;
    else {
        const bench_req *r = &c->fresh[i % c->n_img];
        b = &r->buf;
        /* the tag bench__req_get writes: image 0 | run | sequence */
        char hex[BENCH_UNIQUE_TAG_BYTES + 1];
        snprintf(hex, sizeof hex, "%02x%04llx%010llx", 0, (unsigned long long)(c->run & 0xFFFF),
                 (unsigned long long)(i & 0xFFFFFFFFFFull));
        memcpy(out->patch, hex, BENCH_UNIQUE_TAG_BYTES);
        out->patch_off = r->patch_off[0];
        out->patch_len = BENCH_UNIQUE_TAG_BYTES;
    }
    out->data = (const uint8_t *)b->data;
    out->len = b->len;
    return VG_OK;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static json_t *latency_json(const bench_hist *h)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "p50", ms(bench_hist_percentile(h, 0.50)), "p95",
                     ms(bench_hist_percentile(h, 0.95)), "p99", ms(bench_hist_percentile(h, 0.99)),
                     "p999", ms(bench_hist_percentile(h, 0.999)), "max", ms(h->max), "mean",
                     h->n ? ms(h->sum / h->n) : 0.0);
}

static json_t *counts_json(const bench_ol_counts *k)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "due", (json_int_t)k->due, "ok",
                     (json_int_t)k->ok, "errors", (json_int_t)bench_ol_errors(k), "connect",
                     (json_int_t)k->err_connect, "timeout", (json_int_t)k->err_timeout, "io",
                     (json_int_t)k->err_io, "status", (json_int_t)k->err_status);
}

static json_t *step_json(const ol_cli *c, const bench_ol_result *r, int holds)
{
    json_t *by_status = json_object();
    for (int s = 100; s < 600; s++) {
        if (r->status[s]) {
            char code[8];
            snprintf(code, sizeof code, "%d", s);
            json_object_set_new(by_status, code, json_integer((json_int_t)r->status[s]));
        }
    }
    json_t *classes = json_object();
    for (int k = 0; k < BENCH_OL_CLASSES; k++) {
        if (!c->weights[k])
            continue;
        json_t *o = counts_json(&r->cls[k]);
        json_object_set_new(o, "latency_ms", latency_json(&r->cls_lat[k]));
        json_object_set_new(classes, class_names[k], o);
    }
    json_t *s = counts_json(&r->total);
    json_object_set_new(s, "rate", json_real(r->offered_rate));
    json_object_set_new(s, "ok_per_s", json_real(r->ok_rate));
    json_object_set_new(s, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(s, "duration_s", json_real(r->duration_s));
    json_object_set_new(s, "elapsed_s", json_real(r->elapsed_s));
    json_object_set_new(s, "status_codes", by_status);
    json_object_set_new(s, "latency_ms", latency_json(&r->lat));
    json_object_set_new(s, "classes", classes);
    json_object_set_new(s, "connects", json_integer((json_int_t)r->connects));
    json_object_set_new(s, "connect_failures", json_integer((json_int_t)r->connect_failures));
    json_object_set_new(s, "reconnects", json_integer((json_int_t)r->reconnects));
    json_object_set_new(s, "max_queue", json_integer((json_int_t)r->max_queue));
    json_object_set_new(s, "max_send_lag_ms", json_real(ms(r->max_send_lag_ns)));
    json_object_set_new(s, "holds_target", json_boolean(holds));
    return s;
}

static int parse_args(ol_cli *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--quiet")) {
            c->quiet = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "vigil bench openloop: unknown or incomplete argument '%s'\n", a);
            return -1;
        }
        int bad = 0;
        if (!strcmp(a, "--port"))
            bad = parse_u64(v, 1, 65535, &n) || !(c->port = (uint16_t)n);
        else if (!strcmp(a, "--admin-key"))
            c->admin_key = v;
        else if (!strcmp(a, "--key"))
            c->key_arg = v;
        else if (!strcmp(a, "--profile"))
            c->profile_arg = v;
        else if (!strcmp(a, "--rates"))
            bad = parse_rates(c, v);
        else if (!strcmp(a, "--duration"))
            bad = parse_u64(v, 1, 86400, &n) || !(c->duration_ms = n * 1000);
        else if (!strcmp(a, "--connections"))
            bad = parse_u64(v, 1, BENCH_OL_MAX_CONNECTIONS, &n) || !(c->connections = (unsigned)n);
        else if (!strcmp(a, "--mix"))
            bad = parse_mix(c, v);
        else if (!strcmp(a, "--timeout-ms"))
            bad = parse_u64(v, 1, 3600000, &n) || !(c->timeout_ms = (uint32_t)n);
        else if (!strcmp(a, "--pause-ms"))
            bad = parse_u64(v, 0, 3600000, &c->pause_ms);
        else if (!strcmp(a, "--images"))
            snprintf(c->images_arg, sizeof c->images_arg, "%s", v);
        else if (!strcmp(a, "--query"))
            c->query = v;
        else if (!strcmp(a, "--target-p95-ms"))
            bad = parse_u64(v, 1, 3600000, &n) || !(c->target_p95_ms = (double)n);
        else if (!strcmp(a, "--json"))
            c->json_path = v;
        else if (!strcmp(a, "--label"))
            c->label = v;
        else {
            fprintf(stderr, "vigil bench openloop: unknown argument '%s'\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "vigil bench openloop: bad value for %s: '%s'\n", a, v);
            return -1;
        }
        i++;
    }
    if (!c->port || (!c->admin_key && !c->key_arg) || (c->admin_key && c->key_arg)) {
        fprintf(stderr, "vigil bench openloop: needs --port and one of --admin-key, --key "
                        "(see --help)\n");
        return -1;
    }
    return 0;
}

static void free_cli(ol_cli *c)
{
    for (int k = 0; k < OL_N_API; k++)
        bench_buf_deinit(&c->api[k]);
    for (unsigned k = 0; k < c->n_img; k++) {
        bench__req_deinit(&c->cached[k]);
        bench__req_deinit(&c->fresh[k]);
        vg_free(c->img[k].bytes);
    }
}

int bench_openloop_main(int argc, char **argv, const char *source_dir)
{
    ol_cli *c = vg_calloc(1, sizeof *c);
    bench_ol_result *r = vg_malloc(sizeof *r);
    if (!c || !r) {
        vg_free(c);
        vg_free(r);
        fprintf(stderr, "vigil bench openloop: out of memory\n");
        return 1;
    }
    c->connections = OL_DEFAULT_CONNECTIONS;
    c->duration_ms = OL_DEFAULT_DURATION_S * 1000ull;
    c->timeout_ms = OL_DEFAULT_TIMEOUT_MS;
    c->pause_ms = OL_DEFAULT_PAUSE_MS;
    c->target_p95_ms = OL_DEFAULT_TARGET_P95_MS;
    c->query = "store=false";
    c->weights[BENCH_OL_API] = 45;
    c->weights[BENCH_OL_CACHED] = 45;
    c->weights[BENCH_OL_NEW] = 10;
    parse_rates(c, "100,200,500");
    snprintf(c->images_arg, sizeof c->images_arg,
             "%s/bench/images/S.jpg,%s/bench/images/M.jpg,%s/bench/images/L.jpg", source_dir,
             source_dir, source_dir);
    int rc = parse_args(c, argc, argv), exit_code = 2;
    if (rc) {
        exit_code = rc > 0 ? 0 : 2;
        goto done;
    }
    exit_code = 1;
    vg_err_clear();
    rc = load_images(c);
    if (!rc && c->admin_key) {
        rc = setup_tenant(c);
    } else if (!rc) {
        snprintf(c->key, sizeof c->key, "%s", c->key_arg);
        snprintf(c->profile, sizeof c->profile, "%s", c->profile_arg ? c->profile_arg : "");
    }
    if (!rc)
        rc = build_requests(c);
    /* prime: each cached image analysed once, so the cached class hits the feature cache */
    for (unsigned k = 0; !rc && c->weights[BENCH_OL_CACHED] && k < c->n_img; k++)
        rc = call(c, "POST", "/api/v1/analyze?store=false", c->key, "image/jpeg", c->img[k].bytes,
                  c->img[k].len, NULL);
    if (rc) {
        /* Set up by us: nothing to measure without it. With --key the run still goes on and
         * shows what the server does (an unreachable port: every request a connect error). */
        fprintf(stderr, "vigil bench openloop: setup: %s\n", vg_err_msg());
        if (c->admin_key || !c->api[0].len)
            goto done;
    }
    json_t *steps = json_array();
    double best = 0;
    if (!c->quiet)
        printf("%-10s %10s %9s %9s %9s %9s %9s %8s %8s %8s %8s %8s %6s\n", "rate/s", "ok/s",
               "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "connect", "timeout",
               "io", "status", "queue");
    uint64_t base = ((uint64_t)time(NULL) ^ (uint64_t)getpid()) & 0xFFF0u;
    for (unsigned s = 0; s < c->n_rates; s++) {
        c->run = base + s;
        bench_ol_opts o = {.port = c->port,
                           .connections = c->connections,
                           .rate = c->rates[s],
                           .duration_ms = c->duration_ms,
                           .timeout_ms = c->timeout_ms,
                           .build = build,
                           .arg = c};
        memcpy(o.weights, c->weights, sizeof o.weights);
        vg_err_clear();
        if (bench_ol_run(&o, r) != VG_OK) {
            fprintf(stderr, "vigil bench openloop: rate %g: %s\n", c->rates[s], vg_err_msg());
            json_decref(steps);
            goto done;
        }
        const double p95 = ms(bench_hist_percentile(&r->lat, 0.95));
        const int holds = bench_ol_errors(&r->total) == 0 && r->total.ok && p95 <= c->target_p95_ms;
        if (holds && c->rates[s] > best)
            best = c->rates[s];
        json_array_append_new(steps, step_json(c, r, holds));
        if (!c->quiet) {
            printf("%-10g %10.1f %9.2f %9.2f %9.2f %9.2f %9.2f %8llu %8llu %8llu %8llu %8llu "
                   "%6llu\n",
                   c->rates[s], r->ok_rate, ms(bench_hist_percentile(&r->lat, 0.5)), p95,
                   ms(bench_hist_percentile(&r->lat, 0.99)),
                   ms(bench_hist_percentile(&r->lat, 0.999)), ms(r->lat.max),
                   (unsigned long long)bench_ol_errors(&r->total),
                   (unsigned long long)r->total.err_connect,
                   (unsigned long long)r->total.err_timeout, (unsigned long long)r->total.err_io,
                   (unsigned long long)r->total.err_status, (unsigned long long)r->max_queue);
            fflush(stdout);
        }
        if (s + 1 < c->n_rates && c->pause_ms) {
            struct timespec ts = {(time_t)(c->pause_ms / 1000),
                                  (long)(c->pause_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    json_t *mix = json_object();
    for (int k = 0; k < BENCH_OL_CLASSES; k++)
        json_object_set_new(mix, class_names[k], json_integer(c->weights[k]));
    json_t *root = json_pack(
        "{s:s,s:s,s:i,s:f,s:i,s:o,s:s,s:o,s:f,s:f}", "tool", "vigil bench openloop", "label",
        c->label ? c->label : "", "connections", (int)c->connections, "duration_s",
        (double)c->duration_ms / 1000.0, "timeout_ms", (int)c->timeout_ms, "mix", mix, "query",
        c->query, "steps", steps, "target_p95_ms", c->target_p95_ms, "best_rate_holding", best);
    if (!c->quiet)
        printf("highest rate holding P95 <= %g ms with 0 errors: %g/s\n", c->target_p95_ms, best);
    exit_code = 0;
    if (c->json_path &&
        json_dump_file(root, c->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(6))) {
        fprintf(stderr, "vigil bench openloop: cannot write %s\n", c->json_path);
        exit_code = 1;
    }
    json_decref(root);
done:
    free_cli(c);
    vg_free(c);
    vg_free(r);
    return exit_code;
}
