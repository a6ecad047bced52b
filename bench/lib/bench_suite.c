/*
 * bench: the suite's framework (images, requests, servers, report files), section 1 (single-image
 * latency) and section 4 (cache tiers), and the targets table.
 *
 * Every measurement here is wall-clock time of one complete operation: analyze_run for "in
 * process" (submit, queue, worker, finisher, result), first byte sent to last byte received for
 * "HTTP". Cold means the features are computed: in process the context has no cache, over HTTP
 * every request carries image bytes nobody sent before (a unique JPEG comment segment), so no
 * tier can answer. Cached means the same bytes again after one warm-up request.
 */
#include "bench/lib/bench_int.h"

#include "analyze/analyze.h"
#include "cache/cache.h"
#include "core/core.h"
#include "face/face.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const class_names[BENCH_N_CLASSES] = {"S", "M", "L", "HD"};
/* Targets of issue 5 (balanced level, P95, one request at a time). */
static const double target_p95_ms[BENCH_N_CLASSES] = {3, 6, 9, 20};

/* ---- small helpers -------------------------------------------------------------------------- */

void bench__progress(suite *s, const char *fmt, ...)
{
    if (!s->o->verbose)
        return;
    char t[32];
    vg_format_time(vg_wall_ms(), t, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s bench: ", t + 11);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double bench__ms(double ns)
{
    return ns / 1e6;
}

unsigned bench__iters(suite *s, unsigned full, unsigned quick)
{
    if (s->o->iterations)
        return s->o->iterations;
    return s->o->quick ? quick : full;
}

const char *bench__fmt(char *buf, size_t n, double v, int prec)
{
    if (!isfinite(v))
        snprintf(buf, n, "n/a");
    else
        snprintf(buf, n, "%.*f", prec, v);
    return buf;
}

json_t *bench__summary_json(const bench_summary *sm, double scale)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "n", (json_int_t)sm->n, "min",
                     sm->min * scale, "p50", sm->p50 * scale, "p95", sm->p95 * scale, "p99",
                     sm->p99 * scale, "max", sm->max * scale, "mean", sm->mean * scale);
}

void bench__chart(suite *s, const char *file, const char *alt, const bench_buf *svg)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", s->o->out_dir, file);
    if (svg->failed || vg_write_file_atomic(path, svg->data, svg->len) != VG_OK) {
        bench__progress(s, "cannot write %s", path);
        return;
    }
    bench_buf_printf(&s->md, "\n![%s](%s)\n", alt, file);
    s->n_charts++;
}

uint64_t bench__new_run(suite *s)
{
    return atomic_fetch_add(&s->unique_run, 1) + 1;
}

int bench__unique_jpeg(const bench_img *im, uint64_t tag, bench_buf *out)
{
    if (im->len < 4 || im->bytes[0] != 0xFF || im->bytes[1] != 0xD8)
        return vg_err_set(VG_EFORMAT, "%s: not a JPEG", im->name);
    /* SOI, then COM (FF FE, length 2 + 16) holding the tag as hex, then the original segments */
    static const uint8_t com[4] = {0xFF, 0xFE, 0x00, 2 + BENCH_UNIQUE_TAG_BYTES};
    char hex[BENCH_UNIQUE_TAG_BYTES + 1];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tag);
    bench_buf_append(out, im->bytes, 2);
    bench_buf_append(out, com, sizeof com);
    bench_buf_append(out, hex, BENCH_UNIQUE_TAG_BYTES);
    bench_buf_append(out, im->bytes + 2, im->len - 2);
    return out->failed ? VG_ENOMEM : VG_OK;
}

int bench__req_analyze(bench_req *r, const bench_img *im, const char *key, const char *query,
                       int unique)
{
    bench_buf_init(&r->buf);
    r->n_patch = 0;
    bench_buf body;
    bench_buf_init(&body);
    int rc =
        unique ? bench__unique_jpeg(im, 0, &body) : bench_buf_append(&body, im->bytes, im->len);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/analyze%s%s", query && *query ? "?" : "",
             query ? query : "");
    if (rc == VG_OK)
        rc =
            bench_http_request(&r->buf, "POST", path, key, "image/jpeg", NULL, body.data, body.len);
    if (rc == VG_OK && unique) {
        r->patch_off[0] = r->buf.len - body.len + 6; /* after SOI and the COM header */
        r->n_patch = 1;
    }
    bench_buf_deinit(&body);
    return rc;
}

int bench__req_batch(bench_req *r, suite *s, unsigned first, unsigned n, const char *key,
                     int unique)
{
    static const char boundary[] = "vigilbenchboundary7d3f";
    if (unique && n > BENCH_MAX_PATCHES)
        return vg_err_set(VG_EINVAL, "batch of %u: at most %d unique images", n, BENCH_MAX_PATCHES);
    bench_buf_init(&r->buf);
    r->n_patch = 0;
    bench_buf body;
    bench_buf_init(&body);
    bench_buf_printf(&body,
                     "--%s\r\nContent-Disposition: form-data; name=\"store\"\r\n\r\nfalse\r\n"
                     "--%s\r\nContent-Disposition: form-data; name=\"level\"\r\n\r\nbalanced\r\n",
                     boundary, boundary);
    size_t offs[BENCH_MAX_PATCHES];
    int rc = VG_OK;
    for (unsigned i = 0; i < n && rc == VG_OK; i++) {
        const bench_img *im = &s->img[(first + i) % BENCH_N_CLASSES];
        bench_buf_printf(&body,
                         "--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                         "filename=\"%s-%u.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
                         boundary, im->name, i);
        if (unique) {
            offs[i] = body.len + 6;
            rc = bench__unique_jpeg(im, 0, &body);
        } else {
            rc = bench_buf_append(&body, im->bytes, im->len);
        }
        bench_buf_puts(&body, "\r\n");
    }
    bench_buf_printf(&body, "--%s--\r\n", boundary);
    char ct[96];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", boundary);
    if (rc == VG_OK)
        rc = body.failed ? VG_ENOMEM
                         : bench_http_request(&r->buf, "POST", "/api/v1/analyze/batch", key, ct,
                                              NULL, body.data, body.len);
    if (rc == VG_OK && unique) {
        for (unsigned i = 0; i < n; i++)
            r->patch_off[i] = r->buf.len - body.len + offs[i];
        r->n_patch = n;
    }
    bench_buf_deinit(&body);
    return rc;
}

void bench__req_deinit(bench_req *r)
{
    bench_buf_deinit(&r->buf);
}

const uint8_t *bench__req_get(const bench_req *r, uint64_t run, uint64_t seq, bench_buf *scratch,
                              size_t *len)
{
    if (!r->n_patch) {
        *len = r->buf.len;
        return (const uint8_t *)r->buf.data;
    }
    if (bench_buf_append(scratch, r->buf.data, r->buf.len))
        return NULL;
    for (unsigned i = 0; i < r->n_patch; i++) {
        char hex[BENCH_UNIQUE_TAG_BYTES + 1];
        snprintf(hex, sizeof hex, "%02x%04llx%010llx", i & 0xFF, (unsigned long long)(run & 0xFFFF),
                 (unsigned long long)(seq & 0xFFFFFFFFFFull));
        memcpy(scratch->data + r->patch_off[i], hex, BENCH_UNIQUE_TAG_BYTES);
    }
    *len = scratch->len;
    return (const uint8_t *)scratch->data;
}

const uint8_t *bench__rr_next(void *arg, uint64_t seq, bench_buf *scratch, size_t *len)
{
    bench_rr *a = arg;
    return bench__req_get(&a->reqs[seq % a->n], a->run, seq, scratch, len);
}

#define BENCH_MAX_SERVER_ARGS 16

int bench__server(suite *s, const char *const *args, bench_server **out)
{
    /* The servers use the same face models as the in-process measurements: a vigil built in
     * another tree would otherwise look for its own models directory and, not finding it,
     * analyse without faces (PDQ only), which makes every HTTP number meaningless. */
    const char *all[BENCH_MAX_SERVER_ARGS + 3] = {"--models-dir", s->o->models_dir};
    size_t n = 2;
    for (size_t i = 0; args && args[i]; i++) {
        if (n >= BENCH_MAX_SERVER_ARGS + 2)
            return vg_err_set(VG_EINVAL, "too many server arguments");
        all[n++] = args[i];
    }
    all[n] = NULL;
    bench_server_opts so = {.vigil = s->o->vigil, .args = all, .log_path = s->log_path};
    vg_err_clear();
    int rc = bench_server_start(&so, out);
    if (rc)
        bench__progress(s, "server start failed: %s", vg_err_msg());
    return rc;
}

int bench__http_seq(suite *s, uint16_t port, const bench_req *reqs, size_t nreq, unsigned warm,
                    unsigned n, bench_summary *lat, uint64_t *errors)
{
    bench_rr rr = {reqs, nreq, bench__new_run(s)};
    bench_load_opts lo = {.port = port,
                          .connections = 1,
                          .threads = 1,
                          .timeout_ms = BENCH_HTTP_TIMEOUT_MS,
                          .next = bench__rr_next,
                          .arg = &rr};
    bench_load_result r;
    int rc;
    *errors = 0;
    if (warm) {
        lo.max_requests = warm;
        if ((rc = bench_load_run(&lo, &r)))
            return rc;
        *errors += bench_load_errors(&r);
        bench_load_result_free(&r);
    }
    rr.run = bench__new_run(s);
    lo.max_requests = n;
    if ((rc = bench_load_run(&lo, &r)))
        return rc;
    *errors += bench_load_errors(&r);
    bench_samples_summarize(r.latency_ns, lat);
    bench_load_result_free(&r);
    return VG_OK;
}

struct face_models *bench__models(suite *s)
{
    if (!s->models_tried) {
        s->models_tried = 1;
        vg_err_clear();
        /* the SSD detector too, as `vigil serve` loads it: the accuracy level runs it */
        face_models_opts mo = {.load_ssd = 1};
        if (face_models_open(s->o->models_dir, &mo, &s->models) != VG_OK) {
            snprintf(s->models_err, sizeof s->models_err, "face models in %s: %s", s->o->models_dir,
                     vg_err_msg());
            s->models = NULL;
        }
    }
    return s->models;
}

/* CPUs this process may run on (taskset, cgroup cpusets), which can be fewer than the online
 * CPUs that vg_cpu_count() reports. */
static unsigned usable_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return (unsigned)vg_cpu_count();
    int n = CPU_COUNT(&set);
    return n > 0 ? (unsigned)n : 1;
}

/* When the bench is confined to fewer CPUs than the machine has (taskset -c 0,1 on a big host, to
 * measure "2 cores"), the servers it starts are sized to them too: replicas and HTTP threads
 * default to one per online CPU otherwise. Explicit VIGIL_* settings win. */
static void size_children_to_affinity(void)
{
    unsigned n = usable_cpus();
    if ((int)n >= vg_cpu_count())
        return;
    char v[16];
    snprintf(v, sizeof v, "%u", n);
    setenv("VIGIL_REPLICAS_MAX", v, 0);
    setenv("VIGIL_HTTP_THREADS", v, 0);
}

int bench__ctx(suite *s, struct cache *c, unsigned max_batch, struct analyze_ctx **out)
{
    analyze_config ac;
    analyze_config_default(&ac);
    if ((int)usable_cpus() < vg_cpu_count())
        ac.max_workers = usable_cpus();
    if (max_batch)
        ac.max_batch = max_batch;
    analyze_deps deps = {.cache = c, .models = bench__models(s)};
    vg_err_clear();
    int rc = analyze_ctx_new(&ac, &deps, out);
    if (rc)
        bench__progress(s, "analysis context: %s", vg_err_msg());
    return rc;
}

/* analyze_run of one image n times (after warm runs); wall time per call. */
/* Median time per stage (analyze_timings), microseconds: where a cold analysis spends it. */
typedef struct stage_medians {
    double decode_us, pdq_us, faces_us, other_us;
    double detect_us, landmarks_us, descriptors_us; /* the parts of faces_us */
    double cpu_ms; /* this process's CPU time (every thread) per analysis, mean */
} stage_medians;

static double process_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double median_of(double *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++) /* insertion sort: n is small */
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : NAN;
}

static int inproc_latency_stages(analyze_ctx *ctx, const bench_img *im, vg_level level,
                                 unsigned warm, unsigned n, bench_summary *out, const char **tier,
                                 stage_medians *stages)
{
    bench_samples *sm;
    if (bench_samples_new(n, &sm))
        return VG_ENOMEM;
    double *st = stages ? vg_calloc((size_t)n * 7, sizeof(double)) : NULL;
    double cpu0 = process_cpu_s();
    if (stages && !st) {
        bench_samples_free(sm);
        return VG_ENOMEM;
    }
    int rc = VG_OK;
    for (unsigned i = 0; i < warm + n && rc == VG_OK; i++) {
        analyze_request rq = {
            .bytes = im->bytes, .len = im->len, .tenant_id = "bench", .level = level};
        analyze_result res;
        uint64_t t0 = vg_now_ns();
        rc = analyze_run(ctx, &rq, &res);
        uint64_t dt = vg_now_ns() - t0;
        if (rc)
            break;
        if (tier)
            *tier = res.timings.cache_tier;
        if (st && i >= warm) {
            const analyze_timings *tm = &res.timings;
            double faces = (double)(tm->detect_us + tm->landmarks_us + tm->descriptors_us);
            unsigned k = i - warm;
            st[k] = (double)tm->decode_us;
            st[n + k] = (double)tm->pdq_us;
            st[2 * n + k] = faces;
            /* with the lone split, PDQ ran during the face stages: only the longer counts */
            const double hash_faces = tm->pdq_beside_faces ? VG_MAX((double)tm->pdq_us, faces)
                                                           : (double)tm->pdq_us + faces;
            st[3 * n + k] = (double)dt / 1000.0 - (double)tm->decode_us - hash_faces;
            st[4 * n + k] = (double)tm->detect_us;
            st[5 * n + k] = (double)tm->landmarks_us;
            st[6 * n + k] = (double)tm->descriptors_us;
        }
        analyze_result_free(&res);
        if (i >= warm)
            rc = bench_samples_add(sm, dt);
        if (i + 1 == warm)
            cpu0 = process_cpu_s(); /* the CPU count starts with the measured calls */
    }
    bench_samples_summarize(sm, out);
    if (st && rc == VG_OK) {
        stages->cpu_ms = (process_cpu_s() - cpu0) * 1000.0 / n;
        stages->decode_us = median_of(st, n);
        stages->pdq_us = median_of(st + n, n);
        stages->faces_us = median_of(st + 2 * n, n);
        stages->other_us = median_of(st + 3 * n, n);
        stages->detect_us = median_of(st + 4 * n, n);
        stages->landmarks_us = median_of(st + 5 * n, n);
        stages->descriptors_us = median_of(st + 6 * n, n);
    }
    vg_free(st);
    bench_samples_free(sm);
    return rc;
}

static int inproc_latency(analyze_ctx *ctx, const bench_img *im, vg_level level, unsigned warm,
                          unsigned n, bench_summary *out, const char **tier)
{
    return inproc_latency_stages(ctx, im, level, warm, n, out, tier, NULL);
}

/* ---- section 1: single-image latency -------------------------------------------------------- */

int bench__sec_latency(suite *s)
{
    bench_buf *md = &s->md;
    bench_buf_puts(md, "\n## 1. Single-image analysis latency\n\n");
    unsigned n_cold = bench__iters(s, 60, 12), n_hot = bench__iters(s, 500, 100);
    unsigned warm = s->o->iterations ? 1 : 3;
    bench_buf_printf(md,
                     "One request at a time, %u measured after %u warm-up per cell (cached: %u). "
                     "*In process*: `analyze_run` wall time (no store, no index). *HTTP*: "
                     "`POST /api/v1/analyze?store=false&level=...` on a local `vigil serve`, "
                     "first byte sent to last byte received. Cold: no cache in process, unique "
                     "image bytes over HTTP. Times in ms.\n\n",
                     n_cold, warm, n_hot);
    if (!bench__models(s))
        bench_buf_printf(md, "Face models unavailable (%s): PDQ only.\n\n", s->models_err);
    json_t *rows = json_array();
    json_object_set_new(s->sections, "latency", rows);

    analyze_ctx *cold = NULL, *hot = NULL;
    cache *c = NULL;
    cache_config cc;
    cache_config_init(&cc);
    bench_server *srv = NULL;
    int rc = bench__ctx(s, NULL, 0, &cold);
    if (rc == VG_OK && (rc = cache_open(&cc, &c)) == VG_OK)
        rc = bench__ctx(s, c, 0, &hot);
    if (rc)
        goto out;
    int http_ok = bench__server(s, NULL, &srv) == VG_OK;
    if (!http_ok)
        bench_buf_printf(md, "The server did not start (%s): HTTP columns are empty.\n\n",
                         vg_err_msg());

    bench_buf_puts(md, "| level | class | in-process cold P50 / P95 / P99 | HTTP cold P50 / P95 / "
                       "P99 | in-process cached P50 / P95 | HTTP cached P50 / P95 / P99 | HTTP "
                       "errors |\n|---|---|---|---|---|---|---|\n");
    double p95_bal_http[BENCH_N_CLASSES], p95_bal_in[BENCH_N_CLASSES];
    stage_medians stages[BENCH_N_LEVELS][BENCH_N_CLASSES];
    for (int lv = 0; lv < BENCH_N_LEVELS; lv++) {
        for (int k = 0; k < BENCH_N_CLASSES; k++) {
            const bench_img *im = &s->img[k];
            bench__progress(s, "latency: %s %s", vg_level_name((vg_level)lv), im->name);
            bench_summary ic = {0}, ih = {0}, hc = {0}, hh = {0};
            const char *tier = "?";
            stage_medians sg = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
            if ((rc = inproc_latency_stages(cold, im, (vg_level)lv, warm, n_cold, &ic, NULL, &sg)))
                goto out;
            stages[lv][k] = sg;
            if ((rc = inproc_latency(hot, im, (vg_level)lv, 1, n_hot, &ih, &tier)))
                goto out;
            uint64_t err_c = 0, err_h = 0;
            if (http_ok) {
                char q[64];
                snprintf(q, sizeof q, "store=false&level=%s", vg_level_name(lv));
                bench_req rq_c, rq_h;
                rc = bench__req_analyze(&rq_c, im, bench_server_tenant_key(srv), q, 1);
                if (rc == VG_OK)
                    rc = bench__req_analyze(&rq_h, im, bench_server_tenant_key(srv), q, 0);
                if (rc == VG_OK)
                    rc = bench__http_seq(s, bench_server_port(srv), &rq_c, 1, warm, n_cold, &hc,
                                         &err_c);
                if (rc == VG_OK)
                    rc =
                        bench__http_seq(s, bench_server_port(srv), &rq_h, 1, 1, n_hot, &hh, &err_h);
                bench__req_deinit(&rq_c);
                bench__req_deinit(&rq_h);
                if (rc)
                    goto out;
            }
            if (lv == VG_LEVEL_BALANCED) {
                p95_bal_in[k] = bench__ms(ic.p95);
                p95_bal_http[k] = http_ok ? bench__ms(hc.p95) : NAN;
                s->t.p95_inproc_ms[k] = p95_bal_in[k];
                s->t.p95_http_ms[k] = p95_bal_http[k];
                s->t.p95_cached_http_ms[k] = http_ok ? bench__ms(hh.p95) : NAN;
            }
            bench_buf_printf(md, "| %s | %s | %.2f / %.2f / %.2f | ", vg_level_name(lv), im->name,
                             bench__ms(ic.p50), bench__ms(ic.p95), bench__ms(ic.p99));
            if (http_ok)
                bench_buf_printf(md, "%.2f / %.2f / %.2f | ", bench__ms(hc.p50), bench__ms(hc.p95),
                                 bench__ms(hc.p99));
            else
                bench_buf_puts(md, "n/a | ");
            bench_buf_printf(md, "%.3f / %.3f (%s) | ", bench__ms(ih.p50), bench__ms(ih.p95),
                             tier ? tier : "?");
            if (http_ok)
                bench_buf_printf(md, "%.3f / %.3f / %.3f | %llu |\n", bench__ms(hh.p50),
                                 bench__ms(hh.p95), bench__ms(hh.p99),
                                 (unsigned long long)(err_c + err_h));
            else
                bench_buf_puts(md, "n/a | n/a |\n");
            json_t *row =
                json_pack("{s:s,s:s,s:o,s:o,s:s}", "level", vg_level_name(lv), "class", im->name,
                          "inproc_cold_ms", bench__summary_json(&ic, 1e-6), "inproc_cached_ms",
                          bench__summary_json(&ih, 1e-6), "inproc_cached_tier", tier ? tier : "?");
            if (http_ok) {
                json_object_set_new(row, "http_cold_ms", bench__summary_json(&hc, 1e-6));
                json_object_set_new(row, "http_cached_ms", bench__summary_json(&hh, 1e-6));
                json_object_set_new(row, "http_errors", json_integer((json_int_t)(err_c + err_h)));
            }
            json_array_append_new(rows, row);
        }
    }
    /* where the cold in-process time goes */
    bench_buf_puts(
        md, "\nWhere a cold in-process analysis spends its time (medians, ms; "
            "`analyze_timings`: decode, PDQ with its 8 dihedral hashes and the copy "
            "regions (on a helper thread during the face stages when the request is alone: "
            "`batch_lone_split`), faces = "
            "detector + landmarks + descriptors, other = queue, hand-offs, result; CPU = "
            "this process's CPU time per analysis over the measured calls, every "
            "thread: the cost, whatever else the machine runs):\n\n"
            "| level | class | decode | PDQ | faces | (detect | landmarks | descriptors) | other | "
            "CPU |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int lv = 0; lv < BENCH_N_LEVELS; lv++)
        for (int k = 0; k < BENCH_N_CLASSES; k++) {
            stage_medians *g = &stages[lv][k];
            bench_buf_printf(
                md, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                vg_level_name((vg_level)lv), class_names[k], g->decode_us / 1000, g->pdq_us / 1000,
                g->faces_us / 1000, g->detect_us / 1000, g->landmarks_us / 1000,
                g->descriptors_us / 1000, g->other_us / 1000, g->cpu_ms);
            json_t *row = json_array_get(rows, (size_t)(lv * BENCH_N_CLASSES + k));
            if (row)
                json_object_set_new(row, "inproc_cold_stage_medians_ms",
                                    json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "decode",
                                              g->decode_us / 1000, "pdq", g->pdq_us / 1000, "faces",
                                              g->faces_us / 1000, "detect", g->detect_us / 1000,
                                              "landmarks", g->landmarks_us / 1000, "descriptors",
                                              g->descriptors_us / 1000, "other", g->other_us / 1000,
                                              "cpu", g->cpu_ms));
        }
    /* what recording the evidence costs: the same cold request with store=true */
    if (http_ok) {
        bench_req rq;
        bench_summary st = {0};
        uint64_t err = 0;
        rc = bench__req_analyze(&rq, &s->img[1], bench_server_tenant_key(srv), "level=balanced", 1);
        if (rc == VG_OK)
            rc = bench__http_seq(s, bench_server_port(srv), &rq, 1, warm, n_cold, &st, &err);
        bench__req_deinit(&rq);
        if (rc)
            goto out;
        bench_buf_printf(md,
                         "\nWith the scan recorded (`store=true`, the API default: one SQLite "
                         "commit with `synchronous=FULL` per request when requests come one at "
                         "a time), balanced M cold over HTTP: P50 %.2f ms, P95 %.2f ms "
                         "(errors %llu).\n",
                         bench__ms(st.p50), bench__ms(st.p95), (unsigned long long)err);
        json_object_set_new(s->root, "latency_store_true_M_ms", bench__summary_json(&st, 1e-6));
    }
    /* chart: balanced cold P95 per class against the targets */
    {
        const char *labels[BENCH_N_CLASSES * 3];
        double vals[BENCH_N_CLASSES * 3];
        char lab[BENCH_N_CLASSES * 3][24];
        size_t n = 0;
        for (int k = 0; k < BENCH_N_CLASSES; k++) {
            snprintf(lab[n], sizeof lab[n], "%s in-proc", class_names[k]);
            labels[n] = lab[n];
            vals[n++] = p95_bal_in[k];
            snprintf(lab[n], sizeof lab[n], "%s HTTP", class_names[k]);
            labels[n] = lab[n];
            vals[n++] = p95_bal_http[k];
            snprintf(lab[n], sizeof lab[n], "%s target", class_names[k]);
            labels[n] = lab[n];
            vals[n++] = target_p95_ms[k];
        }
        bench_buf svg;
        bench_buf_init(&svg);
        if (bench_svg_bars("Balanced level, cold, P95 per size class (ms)", "ms", labels, vals, n,
                           0, &svg) == VG_OK)
            bench__chart(s, "latency_p95.svg", "balanced cold P95 per class", &svg);
        bench_buf_deinit(&svg);
    }
out:
    bench_server_stop(srv);
    analyze_ctx_free(hot);
    analyze_ctx_free(cold);
    cache_close(c);
    return rc;
}

/* ---- section 4: cache tiers ----------------------------------------------------------------- */

static int cache_http_tier(suite *s, const char *const *args, int unique, unsigned n,
                           bench_summary *out, uint64_t *errors)
{
    bench_server *srv = NULL;
    int rc = bench__server(s, args, &srv);
    if (rc)
        return rc;
    bench_req rq;
    rc = bench__req_analyze(&rq, &s->img[1], bench_server_tenant_key(srv),
                            "store=false&level=balanced", unique);
    if (rc == VG_OK)
        rc = bench__http_seq(s, bench_server_port(srv), &rq, 1, unique ? 3 : 1, n, out, errors);
    bench__req_deinit(&rq);
    bench_server_stop(srv);
    return rc;
}

int bench__sec_cache(suite *s)
{
    bench_buf *md = &s->md;
    bench_buf_puts(md, "\n## 4. Cache tiers\n\n");
    unsigned n_hit = bench__iters(s, 300, 50), n_miss = bench__iters(s, 40, 10);
    bench_buf_printf(md,
                     "The M image (1024x768) at the balanced level, end to end: in process "
                     "`analyze_run` with a cache of only that tier (L1 memory; L2 disk with L1 "
                     "off; L3 Redis with L1 and L2 off; miss: no cache), and over HTTP with a "
                     "server started with the same tiers (`--cache-l1-entries 0`, "
                     "`--cache-l2-bytes 0`, `--redis-url`; miss: unique bytes). %u hits, %u "
                     "misses. Times in ms.\n\n",
                     n_hit, n_miss);
    json_t *rows = json_array();
    json_object_set_new(s->sections, "cache", rows);
    bench_redis *redis = NULL;
    vg_err_clear();
    if (bench_redis_start(&redis) != VG_OK)
        bench_buf_printf(md, "L3 skipped: %s.\n\n", vg_err_msg());
    char l2dir[] = "/tmp/vigil-bench-l2-XXXXXX";
    if (!mkdtemp(l2dir)) {
        bench_redis_stop(redis);
        return vg_err_set(VG_EIO, "mkdtemp: %s", strerror(errno));
    }
    char url[64] = "";
    if (redis)
        snprintf(url, sizeof url, "redis://127.0.0.1:%u/0", bench_redis_port(redis));

    static const char *const tiers[] = {"miss", "L1", "L2", "L3"};
    bench_summary in[4] = {{0}}, ht[4] = {{0}};
    const char *seen[4] = {"", "", "", ""};
    int have_in[4] = {0}, have_ht[4] = {0};
    uint64_t errs[4] = {0};
    int rc = VG_OK;
    for (int t = 0; t < 4 && rc == VG_OK; t++) {
        if (t == 3 && !redis)
            break;
        bench__progress(s, "cache: %s", tiers[t]);
        cache_config cc;
        cache_config_init(&cc);
        cache *c = NULL;
        if (t >= 2)
            cc.l1_max_entries = 0;
        if (t == 2)
            cc.l2_dir = l2dir;
        if (t == 3) {
            cc.l3_url = url;
            cc.l3_async_put = 0; /* the warm-up's put must be in Redis before the first hit */
        }
        if (t > 0 && (rc = cache_open(&cc, &c)) != VG_OK)
            break;
        analyze_ctx *ctx = NULL;
        if ((rc = bench__ctx(s, c, 0, &ctx)) == VG_OK) {
            rc = inproc_latency(ctx, &s->img[1], VG_LEVEL_BALANCED, t ? 1 : 3, t ? n_hit : n_miss,
                                &in[t], &seen[t]);
            have_in[t] = rc == VG_OK;
        }
        analyze_ctx_free(ctx);
        cache_close(c);
        if (rc)
            break;
        const char *a_l1[] = {NULL};
        const char *a_l2[] = {"--cache-l1-entries", "0", NULL};
        const char *a_l3[] = {
            "--cache-l1-entries", "0", "--cache-l2-bytes", "0", "--redis-url", url, NULL};
        const char *const *args = t == 2 ? a_l2 : t == 3 ? a_l3 : a_l1;
        if (cache_http_tier(s, args, t == 0, t ? n_hit : n_miss, &ht[t], &errs[t]) == VG_OK)
            have_ht[t] = 1;
    }
    bench_rmtree(l2dir);
    bench_redis_stop(redis);
    if (rc)
        return rc;

    bench_buf_puts(md, "| tier | in-process P50 | P95 | P99 | speed-up vs miss (P50) | HTTP P50 | "
                       "P95 | P99 | speed-up vs miss (P50) | HTTP errors |\n"
                       "|---|---|---|---|---|---|---|---|---|---|\n");
    const char *labels[8];
    double vals[8];
    char lab[8][24];
    size_t nb = 0;
    for (int t = 0; t < 4; t++) {
        if (!have_in[t] && !have_ht[t])
            continue;
        double su_in = have_in[t] && have_in[0] ? in[0].p50 / in[t].p50 : NAN;
        double su_ht = have_ht[t] && have_ht[0] ? ht[0].p50 / ht[t].p50 : NAN;
        char b[8][32];
        bench_buf_printf(md, "| %s", tiers[t]);
        if (t)
            bench_buf_printf(md, " (served by %s)", seen[t][0] ? seen[t] : "-");
        bench_buf_printf(md, " | %s | %s | %s | %s | %s | %s | %s | %s | %llu |\n",
                         bench__fmt(b[0], 32, have_in[t] ? bench__ms(in[t].p50) : NAN, 3),
                         bench__fmt(b[1], 32, have_in[t] ? bench__ms(in[t].p95) : NAN, 3),
                         bench__fmt(b[2], 32, have_in[t] ? bench__ms(in[t].p99) : NAN, 3),
                         t ? bench__fmt(b[3], 32, su_in, 0) : "1",
                         bench__fmt(b[4], 32, have_ht[t] ? bench__ms(ht[t].p50) : NAN, 3),
                         bench__fmt(b[5], 32, have_ht[t] ? bench__ms(ht[t].p95) : NAN, 3),
                         bench__fmt(b[6], 32, have_ht[t] ? bench__ms(ht[t].p99) : NAN, 3),
                         t ? bench__fmt(b[7], 32, su_ht, 0) : "1", (unsigned long long)errs[t]);
        json_t *row = json_pack("{s:s,s:s}", "tier", tiers[t], "served_by", seen[t]);
        if (have_in[t])
            json_object_set_new(row, "inproc_ms", bench__summary_json(&in[t], 1e-6));
        if (have_ht[t]) {
            json_object_set_new(row, "http_ms", bench__summary_json(&ht[t], 1e-6));
            json_object_set_new(row, "http_errors", json_integer((json_int_t)errs[t]));
        }
        if (t) {
            json_object_set_new(row, "speedup_inproc_p50", json_real(su_in));
            json_object_set_new(row, "speedup_http_p50", json_real(su_ht));
        }
        json_array_append_new(rows, row);
        if (t == 1) {
            s->t.l1_speedup_p50 = su_in;
            s->t.l1_speedup_http_p50 = su_ht;
        }
        if (have_in[t]) {
            snprintf(lab[nb], sizeof lab[nb], "%s in-proc", tiers[t]);
            labels[nb] = lab[nb];
            vals[nb++] = bench__ms(in[t].p50);
        }
        if (have_ht[t]) {
            snprintf(lab[nb], sizeof lab[nb], "%s HTTP", tiers[t]);
            labels[nb] = lab[nb];
            vals[nb++] = bench__ms(ht[t].p50);
        }
    }
    bench_buf svg;
    bench_buf_init(&svg);
    if (nb && bench_svg_bars("Cache tiers: P50 latency, M image (ms, log scale)", "ms", labels,
                             vals, nb, 1, &svg) == VG_OK)
        bench__chart(s, "cache_tiers.svg", "cache tier latency", &svg);
    bench_buf_deinit(&svg);
    return VG_OK;
}

/* ---- the report ----------------------------------------------------------------------------- */

static int load_images(suite *s)
{
    for (int k = 0; k < BENCH_N_CLASSES; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.jpg", s->o->images_dir, class_names[k]);
        s->img[k].name = class_names[k];
        vg_err_clear();
        int rc = vg_read_file(path, 64u << 20, &s->img[k].bytes, &s->img[k].len);
        if (rc)
            return vg_err_set(rc, "%s: %s", path, vg_err_msg());
    }
    return VG_OK;
}

static void cpu_model(char *out, size_t n)
{
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ')
                    v++;
                v[strcspn(v, "\n")] = 0;
                snprintf(out, n, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

/* The first three fields of /proc/loadavg ("1.02 0.98 0.91"): the machine is shared, so every
 * section says how busy it was. */
static void loadavg(char *out, size_t n)
{
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, n, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

static void git_commit(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (!p)
        return;
    if (fgets(out, (int)n, p))
        out[strcspn(out, "\n")] = 0;
    if (pclose(p) != 0 || !out[0])
        snprintf(out, n, "unknown");
}

static const char *verdict(double measured, double target, int higher_is_better)
{
    if (!isfinite(measured))
        return "not measured";
    int ok = higher_is_better ? measured >= target : measured <= target;
    return ok ? "**met**" : "**missed**";
}

static void targets_table(suite *s)
{
    bench_targets *t = &s->t;
    bench_buf *md = &s->md;
    json_t *arr = json_array();
    json_object_set_new(s->root, "targets", arr);
    bench_buf_puts(md,
                   "\n## Targets (issue 5)\n\n| target | measured | verdict |\n|---|---|---|\n");
    char b[4][48];
    for (int k = 0; k < BENCH_N_CLASSES; k++) {
        bench_buf_printf(md,
                         "| balanced P95 %s <= %.0f ms, one request at a time | %s ms in "
                         "process, %s ms over HTTP | %s in process, %s over HTTP |\n",
                         class_names[k], target_p95_ms[k],
                         bench__fmt(b[0], 48, t->p95_inproc_ms[k], 2),
                         bench__fmt(b[1], 48, t->p95_http_ms[k], 2),
                         verdict(t->p95_inproc_ms[k], target_p95_ms[k], 0),
                         verdict(t->p95_http_ms[k], target_p95_ms[k], 0));
        json_array_append_new(arr, json_pack("{s:s,s:f,s:f,s:f}", "target", "p95_balanced_ms",
                                             "target_value", target_p95_ms[k], "inproc",
                                             t->p95_inproc_ms[k], "http", t->p95_http_ms[k]));
        json_object_set_new(json_array_get(arr, json_array_size(arr) - 1), "class",
                            json_string(class_names[k]));
    }
    bench_buf_printf(md,
                     "| >= 250 mixed-size images/s over HTTP, no errors | %s images/s (%u "
                     "connections, uncached; server CPU %s ms per image, so at most %s "
                     "images/s on %u idle CPUs) | %s |\n",
                     bench__fmt(b[0], 48, t->best_uncached_rps, 0), t->best_uncached_conns,
                     bench__fmt(b[1], 48, t->best_uncached_cpu_ms, 2),
                     bench__fmt(b[2], 48, 1000.0 * usable_cpus() / t->best_uncached_cpu_ms, 0),
                     usable_cpus(), verdict(t->best_uncached_rps, 250, 1));
    double worst_cached = NAN;
    for (int k = 0; k < BENCH_N_CLASSES; k++)
        if (isfinite(t->p95_cached_http_ms[k]) &&
            (!isfinite(worst_cached) || t->p95_cached_http_ms[k] > worst_cached))
            worst_cached = t->p95_cached_http_ms[k];
    bench_buf_printf(md,
                     "| cached analysis P95 <= 2 ms over HTTP | S %s, M %s, L %s, HD %s ms | %s "
                     "(worst class) |\n",
                     bench__fmt(b[0], 48, t->p95_cached_http_ms[0], 3),
                     bench__fmt(b[1], 48, t->p95_cached_http_ms[1], 3),
                     bench__fmt(b[2], 48, t->p95_cached_http_ms[2], 3),
                     bench__fmt(b[3], 48, t->p95_cached_http_ms[3], 3),
                     verdict(worst_cached, 2, 0));
    bench_buf_printf(md,
                     "| L1 hit >= 100x faster than a miss | %sx in process, %sx over HTTP "
                     "(P50) | %s in process, %s over HTTP |\n",
                     bench__fmt(b[0], 48, t->l1_speedup_p50, 0),
                     bench__fmt(b[1], 48, t->l1_speedup_http_p50, 0),
                     verdict(t->l1_speedup_p50, 100, 1), verdict(t->l1_speedup_http_p50, 100, 1));
    double held = isfinite(t->conns_12k_connected) && t->conns_12k_errors == 0
                      ? t->conns_12k_connected
                      : (isfinite(t->conns_12k_connected) ? 0 : NAN);
    bench_buf_printf(md,
                     "| 12,000 concurrent keep-alive connections, zero errors | %s held, %s "
                     "errors, %s requests/s, P95 %s ms (each connection one cached request "
                     "every 6 s) | %s |\n",
                     bench__fmt(b[0], 48, t->conns_12k_connected, 0),
                     bench__fmt(b[1], 48, t->conns_12k_errors, 0),
                     bench__fmt(b[2], 48, t->conns_12k_rps, 0),
                     bench__fmt(b[3], 48, t->conns_12k_p95_ms, 1), verdict(held, 12000, 1));
    bench_buf_printf(
        md,
        "| RSS growth < 5%% between the 10,000th and 100,000th request | %s%% "
        "(request %llu to %llu) | %s%s |\n",
        bench__fmt(b[0], 48, t->rss_growth_pct, 2), (unsigned long long)t->rss_from_req,
        (unsigned long long)t->rss_to_req, verdict(t->rss_growth_pct, 5, 0),
        s->o->quick && isfinite(t->rss_growth_pct) ? " (quick run: shorter window)" : "");
    json_array_append_new(arr, json_pack("{s:s,s:f,s:I}", "target", "uncached_images_per_s",
                                         "measured", t->best_uncached_rps, "connections",
                                         (json_int_t)t->best_uncached_conns));
    json_array_append_new(arr, json_pack("{s:s,s:f}", "target", "cached_http_p95_ms_worst",
                                         "measured", worst_cached));
    json_array_append_new(arr, json_pack("{s:s,s:f,s:f}", "target", "l1_speedup", "inproc",
                                         t->l1_speedup_p50, "http", t->l1_speedup_http_p50));
    json_array_append_new(arr,
                          json_pack("{s:s,s:f,s:f}", "target", "connections_12000", "connected",
                                    t->conns_12k_connected, "errors", t->conns_12k_errors));
    json_array_append_new(arr,
                          json_pack("{s:s,s:f,s:I,s:I}", "target", "rss_growth_pct", "measured",
                                    t->rss_growth_pct, "from_request", (json_int_t)t->rss_from_req,
                                    "to_request", (json_int_t)t->rss_to_req));
}

int bench_sections_parse(const char *str, unsigned *out)
{
    static const char *const names[] = {"latency", "batch", "sweep", "cache", "memory", "levels"};
    unsigned set = 0;
    const char *p = str;
    if (!p || !*p)
        return vg_err_set(VG_EINVAL, "no section named");
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        if (n == 3 && strncmp(p, "all", 3) == 0) {
            set |= BENCH_SEC_ALL;
            found = 1;
        }
        for (unsigned i = 0; i < VG_ARRAY_LEN(names) && !found; i++) {
            char num[4];
            snprintf(num, sizeof num, "%u", i + 1);
            if ((strlen(names[i]) == n && strncmp(p, names[i], n) == 0) ||
                (n == 1 && p[0] == num[0])) {
                set |= 1u << i;
                found = 1;
            }
        }
        if (!found)
            return vg_err_set(VG_EINVAL,
                              "unknown section '%.*s' (latency,batch,sweep,cache,memory,levels "
                              "or 1..6 or all)",
                              (int)n, p);
        p += n;
        if (*p == ',')
            p++;
    }
    *out = set;
    return VG_OK;
}

int bench_suite_run(const bench_suite_opts *o)
{
    suite *s = vg_calloc(1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->o = o;
    bench_buf_init(&s->md);
    atomic_init(&s->unique_run, (uint64_t)(vg_wall_ms() & 0xFFFF) << 8);
    bench_targets *t = &s->t;
    for (int k = 0; k < BENCH_N_CLASSES; k++)
        t->p95_inproc_ms[k] = t->p95_http_ms[k] = t->p95_cached_http_ms[k] = NAN;
    t->best_uncached_rps = t->l1_speedup_p50 = t->l1_speedup_http_p50 = NAN;
    t->best_uncached_cpu_ms = NAN;
    t->conns_12k_connected = t->conns_12k_errors = t->conns_12k_rps = t->rss_growth_pct = NAN;
    t->conns_12k_p95_ms = NAN;

    int rc = vg_mkdir_p(o->out_dir);
    if (rc == VG_OK)
        rc = load_images(s);
    if (rc) {
        bench_buf_deinit(&s->md);
        vg_free(s);
        return rc;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", o->out_dir);
    size_children_to_affinity();
    char when[32], cpu[256], commit[64];
    vg_format_time(vg_wall_ms(), when, sizeof when);
    cpu_model(cpu, sizeof cpu);
    git_commit(commit, sizeof commit);
    s->root =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:b,s:s,s:s}", "date", when, "commit", commit, "cpu", cpu,
                  "cpus", (int)usable_cpus(), "cpu_features", vg_cpu_describe(), "quick", o->quick,
                  "command", o->command ? o->command : "vigil bench", "vigil_version", VG_VERSION);
    s->sections = json_object();
    json_object_set_new(s->root, "sections", s->sections);

    bench_buf body;
    bench_buf_init(&body);
    bench_buf *md = &s->md;
    bench_buf_printf(md,
                     "# vigil bench%s\n\n- date: %s\n- commit: %s\n- machine: %s, %u of %d CPUs "
                     "usable (%s)\n- command: `%s`\n- load average at start: ",
                     o->quick ? " --quick" : "", when, commit, cpu, usable_cpus(), vg_cpu_count(),
                     vg_cpu_describe(), o->command ? o->command : "vigil bench");
    char lbuf[64];
    loadavg(lbuf, sizeof lbuf);
    bench_buf_printf(md,
                     "%s\n\nThe load generator runs on the same 2 CPUs as the server: "
                     "throughput figures include its cost.\n",
                     lbuf);
    /* sections append to md; the targets table goes between the header and them */
    size_t header_len = md->len;
    typedef int (*sec_fn)(suite *);
    static const sec_fn fns[] = {bench__sec_latency, bench__sec_batch,  bench__sec_sweep,
                                 bench__sec_cache,   bench__sec_memory, bench__sec_levels};
    static const char *const names[] = {"latency", "batch", "sweep", "cache", "memory", "levels"};
    for (unsigned i = 0; i < VG_ARRAY_LEN(fns); i++) {
        if (!(o->sections & (1u << i)))
            continue;
        bench__progress(s, "section %u: %s", i + 1, names[i]);
        char la0[64], la1[64];
        loadavg(la0, sizeof la0);
        uint64_t t0 = vg_now_ns();
        vg_err_clear();
        int src = fns[i](s);
        if (src) {
            bench_buf_printf(md, "\n**Section %s failed: %s (%s).**\n", names[i], vg_strerror(src),
                             vg_err_msg());
            json_object_set_new(s->sections, names[i], json_pack("{s:s}", "error", vg_err_msg()));
            fprintf(stderr, "vigil bench: section %s: %s\n", names[i], vg_err_msg());
        }
        double took = (double)(vg_now_ns() - t0) / 1e9;
        loadavg(la1, sizeof la1);
        bench_buf_printf(md, "\n_Section %s: %.0f s; load average before: %s, after: %s._\n",
                         names[i], took, la0, la1);
        json_t *meta = json_object_get(s->root, "section_meta");
        if (!meta) {
            meta = json_object();
            json_object_set_new(s->root, "section_meta", meta);
        }
        json_object_set_new(meta, names[i],
                            json_pack("{s:f,s:s,s:s}", "seconds", took, "loadavg_before", la0,
                                      "loadavg_after", la1));
        bench__progress(s, "section %s took %.1f s", names[i], took);
    }
    /* assemble: header, targets, sections */
    bench_buf_append(&body, md->data, header_len);
    bench_buf sections;
    bench_buf_init(&sections);
    bench_buf_append(&sections, md->data + header_len, md->len - header_len);
    md->len = 0;
    targets_table(s);
    bench_buf_append(&body, md->data, md->len);
    bench_buf_append(&body, sections.data, sections.len);
    bench_buf_deinit(&sections);

    char path[1024];
    snprintf(path, sizeof path, "%s/bench.md", o->out_dir);
    rc = body.failed ? VG_ENOMEM : vg_write_file_atomic(path, body.data, body.len);
    if (rc == VG_OK) {
        snprintf(path, sizeof path, "%s/bench.json", o->out_dir);
        char *js = json_dumps(s->root, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
        rc = js ? vg_write_file_atomic(path, js, strlen(js)) : VG_ENOMEM;
        free(js);
    }
    bench_buf_deinit(&body);
    bench_buf_deinit(&s->md);
    json_decref(s->root);
    face_models_free(s->models);
    for (int k = 0; k < BENCH_N_CLASSES; k++)
        vg_free(s->img[k].bytes);
    vg_free(s);
    return rc;
}
