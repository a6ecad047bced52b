/*
 * bench: sections 2 (batch throughput), 3 (HTTP concurrency sweep), 5 (memory stability) and 6
 * (optimisation levels side by side, with accuracy against the face-api f32 reference).
 *
 * "Mixed" means the four size classes S, M, L, HD in turn. "Uncached" means every image carries
 * bytes never sent before (a unique JPEG comment), so the server computes its features.
 */
#include "bench/lib/bench_int.h"

#include "analyze/analyze.h"
#include "cache/cache.h"
#include "core/core.h"
#include "face/face.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- section 2: batch throughput ------------------------------------------------------------ */

typedef struct burst_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned left, failed;
} burst_wait;

static void burst_done(void *arg, int status, const char *detail)
{
    (void)detail;
    burst_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    if (status)
        w->failed++;
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Submits k images (mixed classes) at once and waits for all; wall time in *secs. */
static int inproc_burst(suite *s, analyze_ctx *ctx, unsigned k, double *secs, unsigned *failed)
{
    analyze_request *rq = vg_calloc(k, sizeof *rq);
    analyze_result *res = vg_calloc(k, sizeof *res);
    if (!rq || !res) {
        vg_free(rq);
        vg_free(res);
        return VG_ENOMEM;
    }
    burst_wait w = {.left = k};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    uint64_t t0 = vg_now_ns();
    int rc = VG_OK;
    for (unsigned i = 0; i < k; i++) {
        const bench_img *im = &s->img[i % BENCH_N_CLASSES];
        rq[i] = (analyze_request){
            .bytes = im->bytes, .len = im->len, .tenant_id = "bench", .level = VG_LEVEL_BALANCED};
        int r = analyze_submit(ctx, &rq[i], 0, &res[i], burst_done, &w);
        if (r) {
            pthread_mutex_lock(&w.mu);
            w.failed++;
            w.left--;
            pthread_mutex_unlock(&w.mu);
            if (r != VG_EBUSY)
                rc = r;
        }
    }
    pthread_mutex_lock(&w.mu);
    while (w.left)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    *secs = (double)(vg_now_ns() - t0) / 1e9;
    *failed = w.failed;
    for (unsigned i = 0; i < k; i++)
        analyze_result_free(&res[i]);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    vg_free(rq);
    vg_free(res);
    return rc;
}

static const unsigned batch_sizes[] = {1, 2, 4, 8, 16, 32};
#define N_BATCH (sizeof batch_sizes / sizeof batch_sizes[0])

int bench__sec_batch(suite *s)
{
    bench_buf *md = &s->md;
    unsigned k = bench__iters(s, 64, 32), rounds = s->o->quick || s->o->iterations ? 2 : 4;
    unsigned secs = s->o->quick ? 3 : 8;
    if (s->o->iterations)
        secs = 1;
    bench_buf_printf(md,
                     "\n## 2. Batch throughput\n\nIn process: an analysis context with "
                     "`max_batch` = 1..32 (images per inference batch), %u mixed-size images "
                     "submitted at once, %u rounds (the first is a warm-up), balanced level, no "
                     "cache. Over HTTP: `POST /api/v1/analyze/batch` with N unique mixed-size "
                     "images per request (`store=false`), 2 connections for %u s after 1 s of "
                     "warm-up, default server settings (`--batch-max-size 32`).\n\n",
                     k, rounds, secs);
    json_t *rows = json_array();
    json_object_set_new(s->sections, "batch", rows);
    double x[N_BATCH], y_in[N_BATCH], y_http[N_BATCH];
    double avg_batch[N_BATCH];
    int rc = VG_OK;
    for (size_t b = 0; b < N_BATCH && rc == VG_OK; b++) {
        bench__progress(s, "batch: in process max_batch %u", batch_sizes[b]);
        analyze_ctx *ctx = NULL;
        if ((rc = bench__ctx(s, NULL, batch_sizes[b], &ctx)))
            break;
        double total = 0;
        unsigned failed = 0, done = 0;
        for (unsigned r = 0; r < rounds && rc == VG_OK; r++) {
            double sec = 0;
            unsigned f = 0;
            rc = inproc_burst(s, ctx, k, &sec, &f);
            if (r && rc == VG_OK) {
                total += sec;
                failed += f;
                done += k;
            }
        }
        analyze_stats st;
        analyze_stats_get(ctx, &st);
        analyze_ctx_free(ctx);
        x[b] = batch_sizes[b];
        y_in[b] = total > 0 ? (double)(done - failed) / total : NAN;
        avg_batch[b] = st.batches ? (double)st.batch_images / (double)st.batches : NAN;
        json_array_append_new(rows, json_pack("{s:s,s:I,s:f,s:I,s:f}", "mode", "inproc",
                                              "max_batch", (json_int_t)batch_sizes[b],
                                              "images_per_s", y_in[b], "failed", (json_int_t)failed,
                                              "mean_batch_formed", avg_batch[b]));
    }
    if (rc)
        return rc;
    bench_server *srv = NULL;
    int http_ok = bench__server(s, NULL, &srv) == VG_OK;
    uint64_t errs[N_BATCH] = {0};
    for (size_t b = 0; b < N_BATCH; b++) {
        y_http[b] = NAN;
        if (!http_ok)
            continue;
        bench__progress(s, "batch: HTTP %u images per request", batch_sizes[b]);
        /* four requests starting at S, M, L, HD in turn, so a batch smaller than four is as
         * mixed over the run as a larger one */
        bench_req rq[BENCH_N_CLASSES];
        int made = 0;
        for (int c = 0; c < BENCH_N_CLASSES; c++) {
            rc = bench__req_batch(&rq[c], s, (unsigned)c, batch_sizes[b],
                                  bench_server_tenant_key(srv), 1);
            if (rc)
                break;
            made++;
        }
        if (rc) {
            for (int c = 0; c < made; c++)
                bench__req_deinit(&rq[c]);
            break;
        }
        bench_rr rr = {rq, BENCH_N_CLASSES, bench__new_run(s)};
        bench_load_opts lo = {.port = bench_server_port(srv),
                              .connections = 2,
                              .threads = 1,
                              .duration_ms = secs * 1000ull,
                              .warmup_ms = 1000,
                              .timeout_ms = BENCH_HTTP_TIMEOUT_MS,
                              .next = bench__rr_next,
                              .arg = &rr};
        bench_load_result r;
        rc = bench_load_run(&lo, &r);
        for (int c = 0; c < BENCH_N_CLASSES; c++)
            bench__req_deinit(&rq[c]);
        if (rc)
            break;
        y_http[b] = r.ok_per_s * batch_sizes[b];
        errs[b] = bench_load_errors(&r);
        json_array_append_new(
            rows, json_pack("{s:s,s:I,s:f,s:I,s:I}", "mode", "http", "batch_images",
                            (json_int_t)batch_sizes[b], "images_per_s", y_http[b], "requests",
                            (json_int_t)r.completed, "errors", (json_int_t)errs[b]));
        bench_load_result_free(&r);
    }
    bench_server_stop(srv);
    if (rc)
        return rc;
    bench_buf_puts(md, "| batch size | in process images/s | mean batch formed | HTTP images/s | "
                       "HTTP errors |\n|---|---|---|---|---|\n");
    for (size_t b = 0; b < N_BATCH; b++) {
        char c[3][32];
        bench_buf_printf(md, "| %u | %s | %s | %s | %llu |\n", batch_sizes[b],
                         bench__fmt(c[0], 32, y_in[b], 1), bench__fmt(c[1], 32, avg_batch[b], 1),
                         bench__fmt(c[2], 32, y_http[b], 1), (unsigned long long)errs[b]);
    }
    bench_series se[2] = {{"in process (max_batch)", x, y_in, N_BATCH},
                          {"HTTP /analyze/batch", x, y_http, N_BATCH}};
    bench_chart ch = {
        "Batch throughput (mixed S/M/L/HD, balanced)", "batch size", "images/s", 1, 0, se, 2};
    bench_buf svg;
    bench_buf_init(&svg);
    if (bench_svg_lines(&ch, &svg) == VG_OK)
        bench__chart(s, "batch.svg", "batch throughput", &svg);
    bench_buf_deinit(&svg);
    return VG_OK;
}

/* ---- section 3: HTTP concurrency sweep ------------------------------------------------------ */

typedef struct sweep_row {
    unsigned conns;
    uint64_t think_ms; /* 0: closed loop */
    bench_load_result r;
    bench_summary lat;
    uint64_t rss_kb, hwm_kb;
    double cpu_ms_per_req; /* server CPU time over the whole run / responses (warm-up too) */
} sweep_row;

static int sweep_point(suite *s, bench_server *srv, const bench_req *reqs, size_t n, unsigned conns,
                       uint64_t think_ms, unsigned secs, sweep_row *row)

{
    bench_rr rr = {reqs, n, bench__new_run(s)};
    bench_load_opts lo = {.port = bench_server_port(srv),
                          .connections = conns,
                          .threads = conns > 2000 ? 2 : 1,
                          .duration_ms = secs * 1000ull,
                          /* big counts: open every connection first (about 1 ms each on
                           * this machine), then settle, then measure */
                          .warmup_ms = conns > 1000 ? 2000 + conns : 1000,
                          .connect_first = conns > 1000,
                          .think_ms = think_ms,
                          .timeout_ms = BENCH_HTTP_TIMEOUT_MS,
                          .next = bench__rr_next,
                          .arg = &rr};
    if (think_ms && lo.duration_ms < 2 * think_ms + 2000)
        lo.duration_ms = 2 * think_ms + 2000; /* every connection sends at least twice */
    memset(row, 0, sizeof *row);
    row->conns = conns;
    row->think_ms = think_ms;
    double cpu0 = NAN, cpu1 = NAN;
    bench_proc_cpu_s(bench_server_pid(srv), &cpu0);
    int rc = bench_load_run(&lo, &row->r);
    if (rc)
        return rc;
    bench_proc_cpu_s(bench_server_pid(srv), &cpu1);
    row->cpu_ms_per_req =
        row->r.completed_all ? (cpu1 - cpu0) * 1000.0 / (double)row->r.completed_all : NAN;
    bench_samples_summarize(row->r.latency_ns, &row->lat);
    bench_proc_rss_kb(bench_server_pid(srv), &row->rss_kb, &row->hwm_kb);
    return VG_OK;
}

static void sweep_table(suite *s, const char *title, sweep_row *rows, size_t n, json_t *arr,
                        const char *kind)
{
    bench_buf *md = &s->md;
    bench_buf_printf(md,
                     "\n%s\n\n| connections | think | held (peak) | requests/s | P50 ms | P95 "
                     "ms | P99 ms | 4xx | 5xx (503) | conn errors | timeouts | server RSS MB | "
                     "server CPU ms per request |\n"
                     "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                     title);
    for (size_t i = 0; i < n; i++) {
        sweep_row *w = &rows[i];
        bench_buf_printf(
            md,
            "| %u | %.1f s | %llu | %.0f | %.2f | %.2f | %.2f | %llu | %llu (%llu) | "
            "%llu | %llu | %.0f | %.2f |\n",
            w->conns, (double)w->think_ms / 1000.0, (unsigned long long)w->r.connected_peak,
            w->r.ok_per_s, bench__ms(w->lat.p50), bench__ms(w->lat.p95), bench__ms(w->lat.p99),
            (unsigned long long)w->r.status_4xx, (unsigned long long)w->r.status_5xx,
            (unsigned long long)w->r.status_503, (unsigned long long)w->r.conn_errors,
            (unsigned long long)w->r.timeouts, (double)w->rss_kb / 1024.0, w->cpu_ms_per_req);
        json_t *o = json_pack(
            "{s:s,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "kind", kind, "connections",
            (json_int_t)w->conns, "connected_peak", (json_int_t)w->r.connected_peak, "ok_per_s",
            w->r.ok_per_s, "ok", (json_int_t)w->r.ok, "status_4xx", (json_int_t)w->r.status_4xx,
            "status_5xx", (json_int_t)w->r.status_5xx, "status_503", (json_int_t)w->r.status_503,
            "conn_errors", (json_int_t)w->r.conn_errors, "timeouts", (json_int_t)w->r.timeouts,
            "reconnects", (json_int_t)w->r.reconnects, "server_rss_kb", (json_int_t)w->rss_kb);
        json_object_set_new(o, "latency_ms", bench__summary_json(&w->lat, 1e-6));
        json_object_set_new(o, "think_ms", json_integer((json_int_t)w->think_ms));
        json_object_set_new(o, "server_cpu_ms_per_request", json_real(w->cpu_ms_per_req));
        json_array_append_new(arr, o);
    }
}

#define SWEEP_PACED_THINK_MS 6000

int bench__sec_sweep(suite *s)
{
    static const unsigned unc_full[] = {1, 2, 4, 8, 16, 32, 64, 128};
    static const unsigned unc_quick[] = {1, 4, 16};
    static const unsigned hot_full[] = {1, 8, 64, 256, 1200, 2400, 4800, 12000};
    static const unsigned hot_quick[] = {1, 64, 1200, 12000};
    int q = s->o->quick || s->o->iterations;
    const unsigned *unc = q ? unc_quick : unc_full, *hot = q ? hot_quick : hot_full;
    size_t n_unc = q ? VG_ARRAY_LEN(unc_quick) : VG_ARRAY_LEN(unc_full);
    size_t n_hot = q ? VG_ARRAY_LEN(hot_quick) : VG_ARRAY_LEN(hot_full);
    unsigned secs = s->o->iterations ? 1 : q ? 3 : 10;
    bench_buf *md = &s->md;
    bench_buf_printf(md,
                     "\n## 3. HTTP concurrency sweep\n\nOur epoll load generator (closed loop: "
                     "each connection keeps one request in flight, HTTP/1.1 keep-alive) against "
                     "one `vigil serve` with default settings, %u s per point after a warm-up. "
                     "Uncached: `POST /api/v1/analyze?store=false` with unique mixed-size images "
                     "(S, M, L, HD in turn): the server computes every one. Cached: the M image "
                     "(104 KB) again and again, answered from L1 (upload, SHA-256, cache, JSON). "
                     "\"held\" is the most connections open at once; errors are any non-2xx "
                     "answer, failed or reset connection, or an answer later than %d s.\n",
                     secs, BENCH_HTTP_TIMEOUT_MS / 1000);
    json_t *arr = json_array();
    json_object_set_new(s->sections, "sweep", arr);
    bench_server *srv = NULL;
    int rc = bench__server(s, NULL, &srv);
    if (rc)
        return rc;
    sweep_row ru[VG_ARRAY_LEN(unc_full)], rh[VG_ARRAY_LEN(hot_full) + 1];
    size_t du = 0, dh = 0;
    bench_req unq[BENCH_N_CLASSES], one;
    int made = 0;
    for (int k = 0; k < BENCH_N_CLASSES && rc == VG_OK; k++, made++)
        rc =
            bench__req_analyze(&unq[k], &s->img[k], bench_server_tenant_key(srv), "store=false", 1);
    if (rc == VG_OK)
        rc = bench__req_analyze(&one, &s->img[1], bench_server_tenant_key(srv), "store=false", 0);
    if (rc) {
        for (int k = 0; k < made; k++)
            bench__req_deinit(&unq[k]);
        bench_server_stop(srv);
        return rc;
    }
    for (size_t i = 0; i < n_unc && rc == VG_OK; i++) {
        bench__progress(s, "sweep: uncached, %u connections", unc[i]);
        rc = sweep_point(s, srv, unq, BENCH_N_CLASSES, unc[i], 0, secs, &ru[i]);
        if (rc == VG_OK && bench_load_errors(&ru[i].r) == 0 &&
            (!isfinite(s->t.best_uncached_rps) || ru[i].r.ok_per_s > s->t.best_uncached_rps)) {
            s->t.best_uncached_rps = ru[i].r.ok_per_s;
            s->t.best_uncached_conns = unc[i];
            s->t.best_uncached_cpu_ms = ru[i].cpu_ms_per_req;
        }
        if (rc == VG_OK)
            du++;
    }
    /* closed loop at every count, then 12,000 users pacing themselves: one request every
     * SWEEP_PACED_THINK_MS each (2,000 requests/s offered), the "held" check of issue 5 */
    for (size_t i = 0; i <= n_hot && rc == VG_OK; i++) {
        int paced = i == n_hot;
        unsigned conns = paced ? 12000 : hot[i];
        uint64_t think = paced ? SWEEP_PACED_THINK_MS : 0;
        bench__progress(s, "sweep: cached, %u connections%s", conns, paced ? ", paced" : "");
        rc = sweep_point(s, srv, &one, 1, conns, think, secs, &rh[dh]);
        if (rc)
            break;
        if (paced) {
            s->t.conns_12k_connected = (double)rh[dh].r.connected_peak;
            s->t.conns_12k_errors = (double)bench_load_errors(&rh[dh].r);
            s->t.conns_12k_rps = rh[dh].r.ok_per_s;
            s->t.conns_12k_p95_ms = bench__ms(rh[dh].lat.p95);
        }
        dh++;
    }
    if (rc)
        bench_buf_printf(md, "\n**The sweep stopped early: %s.**\n", vg_err_msg());
    sweep_table(s, "Uncached, mixed sizes:", ru, du, arr, "uncached");
    sweep_table(s,
                "Cached (L1), M image; closed loop, then (last row) 12,000 connections each "
                "sending one request every 6 s:",
                rh, dh, arr, "cached");

    double xu[VG_ARRAY_LEN(unc_full)], yu[VG_ARRAY_LEN(unc_full)], pu[VG_ARRAY_LEN(unc_full)];
    double xh[VG_ARRAY_LEN(hot_full)], yh[VG_ARRAY_LEN(hot_full)], ph[VG_ARRAY_LEN(hot_full)];
    size_t dh_closed = dh > n_hot ? n_hot : dh; /* the paced row is not on the curves */
    for (size_t i = 0; i < du; i++) {
        xu[i] = ru[i].conns;
        yu[i] = ru[i].r.ok_per_s;
        pu[i] = bench__ms(ru[i].lat.p95);
    }
    for (size_t i = 0; i < dh_closed; i++) {
        xh[i] = rh[i].conns;
        yh[i] = rh[i].r.ok_per_s;
        ph[i] = bench__ms(rh[i].lat.p95);
    }
    bench_series st[2] = {{"uncached, mixed", xu, yu, du}, {"cached, M", xh, yh, dh_closed}};
    bench_chart ct = {"Throughput vs connections", "connections", "requests/s", 1, 1, st, 2};
    bench_buf svg;
    bench_buf_init(&svg);
    if (bench_svg_lines(&ct, &svg) == VG_OK)
        bench__chart(s, "sweep_throughput.svg", "throughput vs connections", &svg);
    bench_buf_reset(&svg);
    bench_series sp[2] = {{"uncached, mixed", xu, pu, du}, {"cached, M", xh, ph, dh_closed}};
    bench_chart cp = {"P95 latency vs connections", "connections", "P95 ms", 1, 1, sp, 2};
    if (bench_svg_lines(&cp, &svg) == VG_OK)
        bench__chart(s, "sweep_p95.svg", "P95 vs connections", &svg);
    bench_buf_deinit(&svg);
    for (size_t i = 0; i < du; i++)
        bench_load_result_free(&ru[i].r);
    for (size_t i = 0; i < dh; i++)
        bench_load_result_free(&rh[i].r);
    for (int k = 0; k < BENCH_N_CLASSES; k++)
        bench__req_deinit(&unq[k]);
    bench__req_deinit(&one);
    bench_server_stop(srv);
    return rc;
}

/* ---- section 5: memory stability ------------------------------------------------------------ */

typedef struct mem_arg {
    bench_req cached[BENCH_N_CLASSES], unique[BENCH_N_CLASSES];
    uint64_t run;
    pid_t pid;
    /* RSS samples, written only by the generator's single thread (threads = 1) */
    double *x, *rss_mb;
    size_t n, cap;
} mem_arg;

/* One request in ten is uncached (a new image of the next class), the others cycle through the
 * four cached images. */
static const uint8_t *mem_next(void *arg, uint64_t seq, bench_buf *scratch, size_t *len)
{
    mem_arg *m = arg;
    if (seq % 10 == 0)
        return bench__req_get(&m->unique[(seq / 10) % BENCH_N_CLASSES], m->run, seq, scratch, len);
    return bench__req_get(&m->cached[seq % BENCH_N_CLASSES], m->run, seq, scratch, len);
}

static void mem_progress(void *arg, uint64_t done)
{
    mem_arg *m = arg;
    uint64_t rss = 0;
    if (m->n < m->cap && bench_proc_rss_kb(m->pid, &rss, NULL) == VG_OK) {
        m->x[m->n] = (double)done;
        m->rss_mb[m->n] = (double)rss / 1024.0;
        m->n++;
    }
}

/* RSS at the sample nearest to request n. */
static double rss_at(const mem_arg *m, uint64_t n)
{
    double best = NAN, bd = INFINITY;
    for (size_t i = 0; i < m->n; i++) {
        double d = fabs(m->x[i] - (double)n);
        if (d < bd) {
            bd = d;
            best = m->rss_mb[i];
        }
    }
    return best;
}

int bench__sec_memory(suite *s)
{
    int q = s->o->quick || s->o->iterations;
    uint64_t total = s->o->iterations ? 2000 : q ? 10000 : 100000;
    uint64_t from = total / 10, every = total / 100;
    bench_buf *md = &s->md;
    bench_buf_printf(md,
                     "\n## 5. Memory stability\n\n%llu requests on 8 keep-alive connections "
                     "against one `vigil serve` (default settings, scans recorded: `store` is "
                     "the API default): 9 in 10 cached (the four size classes in turn), 1 in 10 "
                     "uncached (a new image each time). The server's RSS (VmRSS) is read every "
                     "%llu requests; growth is measured between request %llu and request "
                     "%llu.\n\n",
                     (unsigned long long)total, (unsigned long long)every, (unsigned long long)from,
                     (unsigned long long)total);
    bench_server *srv = NULL;
    int rc = bench__server(s, NULL, &srv);
    if (rc)
        return rc;
    mem_arg *m = vg_calloc(1, sizeof *m);
    if (!m) {
        bench_server_stop(srv);
        return VG_ENOMEM;
    }
    m->cap = (size_t)(total / every) + 8;
    m->x = vg_calloc(m->cap, sizeof(double));
    m->rss_mb = vg_calloc(m->cap, sizeof(double));
    m->pid = bench_server_pid(srv);
    m->run = bench__new_run(s);
    int made_c = 0, made_u = 0;
    rc = m->x && m->rss_mb ? VG_OK : VG_ENOMEM;
    for (int k = 0; k < BENCH_N_CLASSES && rc == VG_OK; k++) {
        rc = bench__req_analyze(&m->cached[k], &s->img[k], bench_server_tenant_key(srv),
                                "level=balanced", 0);
        made_c += rc == VG_OK;
        if (rc == VG_OK) {
            rc = bench__req_analyze(&m->unique[k], &s->img[k], bench_server_tenant_key(srv),
                                    "level=balanced", 1);
            made_u += rc == VG_OK;
        }
    }
    bench_load_result r = {0};
    uint64_t rss0 = 0;
    if (rc == VG_OK) {
        bench_proc_rss_kb(m->pid, &rss0, NULL);
        bench__progress(s, "memory: %llu requests", (unsigned long long)total);
        bench_load_opts lo = {.port = bench_server_port(srv),
                              .connections = 8,
                              .threads = 1,
                              .max_requests = total,
                              .timeout_ms = BENCH_HTTP_TIMEOUT_MS,
                              .next = mem_next,
                              .arg = m,
                              .progress = mem_progress,
                              .progress_every = every};
        rc = bench_load_run(&lo, &r);
    }
    if (rc == VG_OK) {
        double a = rss_at(m, from), b = rss_at(m, total);
        uint64_t hwm = 0, rss_end = 0;
        bench_proc_rss_kb(m->pid, &rss_end, &hwm);
        double growth = isfinite(a) && a > 0 ? (b - a) / a * 100.0 : NAN;
        s->t.rss_growth_pct = growth;
        s->t.rss_from_req = from;
        s->t.rss_to_req = total;
        bench_summary lat;
        bench_samples_summarize(r.latency_ns, &lat);
        char c[2][32];
        bench_buf_printf(md,
                         "| RSS at start | at request %llu | at request %llu | growth | peak "
                         "(VmHWM) | requests/s | P50 ms | P95 ms | errors |\n|---|---|---|---|"
                         "---|---|---|---|---|\n| %.1f MB | %s MB | %.1f MB | %s%% | %.1f MB | "
                         "%.0f | %.2f | %.2f | %llu |\n",
                         (unsigned long long)from, (unsigned long long)total, (double)rss0 / 1024.0,
                         bench__fmt(c[0], 32, a, 1), b, bench__fmt(c[1], 32, growth, 2),
                         (double)hwm / 1024.0, r.ok_per_s, bench__ms(lat.p50), bench__ms(lat.p95),
                         (unsigned long long)bench_load_errors(&r));
        json_t *xs = json_array(), *ys = json_array();
        for (size_t i = 0; i < m->n; i++) {
            json_array_append_new(xs, json_integer((json_int_t)m->x[i]));
            json_array_append_new(ys, json_real(m->rss_mb[i]));
        }
        json_t *o = json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:o,s:o}", "requests",
                              (json_int_t)total, "from_request", (json_int_t)from, "rss_start_kb",
                              (json_int_t)rss0, "rss_from_mb", a, "rss_to_mb", b, "growth_pct",
                              growth, "hwm_mb", (double)hwm / 1024.0, "ok_per_s", r.ok_per_s,
                              "errors", (json_int_t)bench_load_errors(&r), "samples_requests", xs,
                              "samples_rss_mb", ys);
        json_object_set_new(o, "latency_ms", bench__summary_json(&lat, 1e-6));
        json_object_set_new(s->sections, "memory", o);
        bench_series se = {"server RSS", m->x, m->rss_mb, m->n};
        bench_chart ch = {"Server RSS over requests", "requests", "RSS MB", 0, 0, &se, 1};
        bench_buf svg;
        bench_buf_init(&svg);
        if (bench_svg_lines(&ch, &svg) == VG_OK)
            bench__chart(s, "memory_rss.svg", "RSS over requests", &svg);
        bench_buf_deinit(&svg);
    }
    bench_load_result_free(&r);
    for (int k = 0; k < made_c; k++)
        bench__req_deinit(&m->cached[k]);
    for (int k = 0; k < made_u; k++)
        bench__req_deinit(&m->unique[k]);
    vg_free(m->x);
    vg_free(m->rss_mb);
    vg_free(m);
    bench_server_stop(srv);
    return rc;
}

/* ---- section 6: optimisation levels --------------------------------------------------------- */

typedef struct accuracy {
    unsigned images, ref_faces, our_faces, matched;
    double iou_sum, iou_min, lm_sum, l2_sum, l2_max;
    unsigned pairs, agree;
    int ok;
} accuracy;

static double box_iou(const float a[4], double bx, double by, double bw, double bh)
{
    double x0 = fmax(a[0], bx), y0 = fmax(a[1], by);
    double x1 = fmin(a[0] + a[2], bx + bw), y1 = fmin(a[1] + a[3], by + bh);
    double inter = x1 > x0 && y1 > y0 ? (x1 - x0) * (y1 - y0) : 0;
    double uni = (double)a[2] * a[3] + bw * bh - inter;
    return uni > 0 ? inter / uni : 0;
}

static double l2(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return sqrt(s);
}

#define ACC_MAX_PAIRS 256  /* matched faces kept for the same/different verdicts */
#define ACC_MAX_LM_ERR 0.1 /* mean landmark distance / reference box width, to pair two faces */

/* The reference box of this level's detector that overlaps ours most: face-api's tiny boxes
 * (at 416) for the tiny detector, its SSD boxes for SSD; the two detectors draw boxes of other
 * shapes around the same face, so each is compared with its own kind. */
static double ref_box_iou(json_t *entry, json_t *tiny_face, int ssd, const float box[4])
{
    if (!ssd) {
        json_t *b = json_object_get(json_object_get(tiny_face, "detection"), "box");
        return box_iou(box, json_number_value(json_object_get(b, "x")),
                       json_number_value(json_object_get(b, "y")),
                       json_number_value(json_object_get(b, "width")),
                       json_number_value(json_object_get(b, "height")));
    }
    double best = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(entry, "ssdMobilenetv1"), i, d)
    {
        json_t *b = json_object_get(d, "box");
        best = fmax(best, box_iou(box, json_number_value(json_object_get(b, "x")),
                                  json_number_value(json_object_get(b, "y")),
                                  json_number_value(json_object_get(b, "width")),
                                  json_number_value(json_object_get(b, "height"))));
    }
    return best;
}

/* Runs every fixture image at a level and compares with results.json (face-api, f32, tiny 416).
 * A reference face is paired with the face of ours whose 68 landmarks lie closest to its own
 * (mean distance under a tenth of the face's width): landmarks, unlike boxes, mean the same thing
 * whichever detector found the face, and they are what the descriptor's alignment uses. For
 * paired faces the box IoU (against the reference boxes of the level's own detector) and the
 * descriptor L2 distance to the reference are averaged, and every pair of paired faces gets a
 * same/different verdict (L2 < 0.6) from both sides. */
static int level_accuracy(suite *s, analyze_ctx *ctx, vg_level level, int ssd, accuracy *acc)
{
    memset(acc, 0, sizeof *acc);
    acc->iou_min = INFINITY;
    char path[1024];
    snprintf(path, sizeof path, "%s/results.json", s->o->faces_dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    if (!ref)
        return vg_err_set(VG_EIO, "%s: %s", path, je.text);
    float(*ours)[VG_DESCRIPTOR_DIM] = vg_calloc(ACC_MAX_PAIRS, sizeof *ours);
    float(*theirs)[VG_DESCRIPTOR_DIM] = vg_calloc(ACC_MAX_PAIRS, sizeof *theirs);
    int rc = ours && theirs ? VG_OK : VG_ENOMEM;
    unsigned np = 0;
    const char *name;
    json_t *entry;
    json_object_foreach(ref, name, entry)
    {
        if (rc)
            break;
        json_t *faces = json_object_get(entry, "faces");
        if (!json_is_array(faces))
            continue;
        snprintf(path, sizeof path, "%s/images/%s", s->o->faces_dir, name);
        uint8_t *bytes = NULL;
        size_t len = 0;
        if ((rc = vg_read_file(path, 64u << 20, &bytes, &len)))
            break;
        analyze_request rq = {.bytes = bytes, .len = len, .tenant_id = "bench", .level = level};
        analyze_features f;
        rc = analyze_features_compute(ctx, &rq, &f, NULL);
        vg_free(bytes);
        if (rc)
            break;
        acc->images++;
        acc->our_faces += (unsigned)f.n_faces;
        unsigned char used[256] = {0};
        size_t i;
        json_t *rf;
        json_array_foreach(faces, i, rf)
        {
            acc->ref_faces++;
            json_t *box = json_object_get(json_object_get(rf, "detection"), "box");
            json_t *desc = json_object_get(rf, "descriptor");
            json_t *lms = json_object_get(rf, "landmarks68");
            double bw = json_number_value(json_object_get(box, "width"));
            if (json_array_size(lms) != 68 || json_array_size(desc) != VG_DESCRIPTOR_DIM ||
                !(bw > 0))
                continue;
            double best = INFINITY;
            size_t bi = SIZE_MAX;
            for (size_t j = 0; j < f.n_faces && j < sizeof used; j++) {
                if (used[j])
                    continue;
                double e = 0;
                for (size_t k = 0; k < 68; k++) {
                    json_t *pt = json_array_get(lms, k);
                    e += hypot(
                        f.faces[j].landmarks[k][0] - json_number_value(json_array_get(pt, 0)),
                        f.faces[j].landmarks[k][1] - json_number_value(json_array_get(pt, 1)));
                }
                e /= 68 * bw;
                if (e < best) {
                    best = e;
                    bi = j;
                }
            }
            if (bi == SIZE_MAX || best >= ACC_MAX_LM_ERR)
                continue;
            used[bi] = 1;
            float rd[VG_DESCRIPTOR_DIM];
            for (int d = 0; d < VG_DESCRIPTOR_DIM; d++)
                rd[d] = (float)json_number_value(json_array_get(desc, (size_t)d));
            double dist = l2(f.faces[bi].descriptor, rd);
            double iou = ref_box_iou(entry, rf, ssd, f.faces[bi].box);
            acc->matched++;
            acc->iou_sum += iou;
            acc->iou_min = fmin(acc->iou_min, iou);
            acc->lm_sum += best;
            acc->l2_sum += dist;
            acc->l2_max = fmax(acc->l2_max, dist);
            if (np < ACC_MAX_PAIRS) {
                memcpy(ours[np], f.faces[bi].descriptor, sizeof ours[np]);
                memcpy(theirs[np], rd, sizeof theirs[np]);
                np++;
            }
        }
        analyze_features_free(&f);
    }
    for (unsigned a = 0; a < np; a++)
        for (unsigned b = a + 1; b < np; b++) {
            int same_ref = l2(theirs[a], theirs[b]) < ANALYZE_DEFAULT_FACE_THRESHOLD;
            int same_our = l2(ours[a], ours[b]) < ANALYZE_DEFAULT_FACE_THRESHOLD;
            acc->pairs++;
            acc->agree += same_ref == same_our;
        }
    vg_free(ours);
    vg_free(theirs);
    json_decref(ref);
    acc->ok = rc == VG_OK;
    return rc;
}

int bench__sec_levels(suite *s)
{
    bench_buf *md = &s->md;
    int q = s->o->quick || s->o->iterations;
    unsigned n_lat = bench__iters(s, 40, 10), secs = s->o->iterations ? 1 : q ? 3 : 10;
    bench_buf_printf(md,
                     "\n## 6. Optimisation levels side by side\n\nFor each level a fresh `vigil "
                     "serve --default-level <level>`: latency of the M image one request at a "
                     "time (%u, unique bytes, `store=false`), then throughput of unique "
                     "mixed-size images on 8 connections for %u s, then the server's RSS and "
                     "peak RSS. Accuracy in process (no cache) on the %s fixtures against the "
                     "face-api reference (`results.json`: TinyFaceDetector 416, f32, tfjs): a "
                     "reference face is paired with ours when their 68 landmarks lie within "
                     "%.2f of the face's width of each other on average (landmarks mean the "
                     "same thing whichever detector found the face); box IoU against face-api's "
                     "boxes from the level's own detector (tiny or SSD: their boxes differ in "
                     "shape); landmark error (mean distance / face width); descriptor L2 "
                     "distance to the reference; agreement of the same/different verdict "
                     "(L2 < %.1f) over every pair of paired faces.\n\n",
                     n_lat, secs, s->o->faces_dir, ACC_MAX_LM_ERR,
                     (double)ANALYZE_DEFAULT_FACE_THRESHOLD);
    face_models *models = bench__models(s);
    if (!models) {
        bench_buf_printf(md, "Skipped: %s.\n", s->models_err);
        return VG_OK;
    }
    json_t *rows = json_array();
    json_object_set_new(s->sections, "levels", rows);
    bench_buf_puts(md, "| level | detector / recogniser | M P50 ms | M P95 ms | mixed images/s | "
                       "server CPU ms per image | errors | RSS MB | peak RSS MB | faces paired / "
                       "reference (found) | box "
                       "IoU mean (min) | landmark error mean | descriptor L2 mean / max | "
                       "verdict agreement |\n"
                       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    analyze_ctx *ctx = NULL;
    int rc = bench__ctx(s, NULL, 0, &ctx);
    for (int lv = 0; lv < BENCH_N_LEVELS && rc == VG_OK; lv++) {
        const char *lname = vg_level_name((vg_level)lv);
        bench__progress(s, "levels: %s", lname);
        face_opts fo;
        face_opts_for_level((vg_level)lv, &fo);
        char what[128];
        if (fo.detector == FACE_DET_SSD && !face_models_has_ssd(models))
            snprintf(what, sizeof what, "tiny 608 %s (no SSD weights) / %s",
                     nn_precision_name(fo.detector_precision), nn_precision_name(fo.precision));
        else
            snprintf(what, sizeof what, "%s %d %s / %s",
                     fo.detector == FACE_DET_SSD ? "ssd" : "tiny", fo.input_size,
                     nn_precision_name(fo.detector_precision), nn_precision_name(fo.precision));
        const char *args[] = {"--default-level", lname, NULL};
        bench_server *srv = NULL;
        bench_summary lat = {0};
        uint64_t lat_err = 0, rss = 0, hwm = 0;
        bench_load_result r = {0};
        double cpu_ms = NAN;
        int http_ok = bench__server(s, args, &srv) == VG_OK;
        if (http_ok) {
            bench_req one, mix[BENCH_N_CLASSES];
            int made = 0;
            rc = bench__req_analyze(&one, &s->img[1], bench_server_tenant_key(srv), "store=false",
                                    1);
            for (int k = 0; k < BENCH_N_CLASSES && rc == VG_OK; k++, made++)
                rc = bench__req_analyze(&mix[k], &s->img[k], bench_server_tenant_key(srv),
                                        "store=false", 1);
            if (rc == VG_OK)
                rc = bench__http_seq(s, bench_server_port(srv), &one, 1, 3, n_lat, &lat, &lat_err);
            if (rc == VG_OK) {
                bench_rr rr = {mix, BENCH_N_CLASSES, bench__new_run(s)};
                bench_load_opts lo = {.port = bench_server_port(srv),
                                      .connections = 8,
                                      .threads = 1,
                                      .duration_ms = secs * 1000ull,
                                      .warmup_ms = 1000,
                                      .timeout_ms = BENCH_HTTP_TIMEOUT_MS,
                                      .next = bench__rr_next,
                                      .arg = &rr};
                double c0 = NAN, c1 = NAN;
                bench_proc_cpu_s(bench_server_pid(srv), &c0);
                rc = bench_load_run(&lo, &r);
                bench_proc_cpu_s(bench_server_pid(srv), &c1);
                if (rc == VG_OK && r.completed_all)
                    cpu_ms = (c1 - c0) * 1000.0 / (double)r.completed_all;
            }
            bench_proc_rss_kb(bench_server_pid(srv), &rss, &hwm);
            bench__req_deinit(&one);
            for (int k = 0; k < made; k++)
                bench__req_deinit(&mix[k]);
            bench_server_stop(srv);
            if (rc)
                break;
        }
        accuracy acc;
        if ((rc = level_accuracy(s, ctx, (vg_level)lv,
                                 fo.detector == FACE_DET_SSD && face_models_has_ssd(models), &acc)))
            break;
        char c[13][40];
        double lm_mean = acc.matched ? acc.lm_sum / acc.matched : NAN;
        double iou_mean = acc.matched ? acc.iou_sum / acc.matched : NAN;
        double l2_mean = acc.matched ? acc.l2_sum / acc.matched : NAN;
        double agree = acc.pairs ? 100.0 * acc.agree / acc.pairs : NAN;
        bench_buf_printf(
            md,
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %u / %u (%u) | %s (%s) | %s | %s / %s "
            "| %s%% of %u |\n",
            lname, what, bench__fmt(c[0], 40, http_ok ? bench__ms(lat.p50) : NAN, 2),
            bench__fmt(c[1], 40, http_ok ? bench__ms(lat.p95) : NAN, 2),
            bench__fmt(c[2], 40, http_ok ? r.ok_per_s : NAN, 1), bench__fmt(c[11], 40, cpu_ms, 2),
            bench__fmt(c[3], 40, http_ok ? (double)(bench_load_errors(&r) + lat_err) : NAN, 0),
            bench__fmt(c[4], 40, http_ok ? (double)rss / 1024.0 : NAN, 0),
            bench__fmt(c[5], 40, http_ok ? (double)hwm / 1024.0 : NAN, 0), acc.matched,
            acc.ref_faces, acc.our_faces, bench__fmt(c[6], 40, iou_mean, 3),
            bench__fmt(c[7], 40, acc.matched ? acc.iou_min : NAN, 3),
            bench__fmt(c[12], 40, lm_mean, 4), bench__fmt(c[8], 40, l2_mean, 4),
            bench__fmt(c[9], 40, acc.matched ? acc.l2_max : NAN, 4),
            bench__fmt(c[10], 40, agree, 1), acc.pairs);
        json_t *o =
            json_pack("{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:I}", "level", lname,
                      "models", what, "images_per_s", http_ok ? r.ok_per_s : NAN, "errors",
                      (json_int_t)(bench_load_errors(&r) + lat_err), "rss_kb", (json_int_t)rss,
                      "hwm_kb", (json_int_t)hwm, "faces_reference", (json_int_t)acc.ref_faces,
                      "faces_paired", (json_int_t)acc.matched, "iou_mean", iou_mean, "iou_min",
                      acc.matched ? acc.iou_min : NAN, "l2_mean", l2_mean, "l2_max",
                      acc.matched ? acc.l2_max : NAN, "verdict_pairs", (json_int_t)acc.pairs,
                      "verdict_agree", (json_int_t)acc.agree);
        json_object_set_new(o, "faces_found", json_integer(acc.our_faces));
        json_object_set_new(o, "landmark_error_mean", json_real(lm_mean));
        json_object_set_new(o, "server_cpu_ms_per_image", json_real(cpu_ms));
        if (http_ok)
            json_object_set_new(o, "m_latency_ms", bench__summary_json(&lat, 1e-6));
        json_array_append_new(rows, o);
        bench_load_result_free(&r);
    }
    analyze_ctx_free(ctx);
    return rc;
}
