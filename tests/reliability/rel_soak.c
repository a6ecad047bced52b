/*
 * rel_soak: long runs of the mixed API against `vigil serve` (release build), two modes.
 *
 *   rel_soak --vigil PATH [--requests N] [--threads T] [--seed S] [--max-seconds T]
 *       Soak: N requests (default 10^6) of the mixed API over keep-alive connections: profiles
 *       created, read, listed, renamed and deleted, references uploaded and deleted, analyses
 *       (cached and recorded), notices drafted and moved on, scans/matches/notices listed,
 *       health and metrics. The server's VmRSS and open descriptors (/proc/PID) are sampled
 *       every 1% of the run; after the warm-up (the first 10%) RSS must grow by less than 1% and
 *       the descriptor count must not grow. Any 5xx or lost connection fails the run too.
 *
 *   rel_soak --vigil PATH --overload [--seconds S] [--factor F] [--seed S]
 *       Overload: measures the analysis capacity (uncached images, closed loop, 10 s), then
 *       offers F x capacity (default 3) open-loop for S seconds (default 60) and stops. Every
 *       answer must be 2xx, or 503/429 with Retry-After; the P99 latency of admitted requests
 *       must stay within the server's --request-deadline (2 s); after the load stops, a single
 *       client's latency must be back within 2x the unloaded P50 in under 5 s.
 *
 * Traffic goes to 127.0.0.1 only; every loop is bounded by a count and --max-seconds.
 */
#include "rel.h"

#include "core/core.h"

#include <pthread.h>
#include <signal.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SK_MAX_THREADS 512
#define SK_CALL_TIMEOUT_MS 30000u
#define SK_START_TIMEOUT_MS 60000u
#define SK_SAMPLES 100         /* RSS / fd samples over the run */
#define SK_WARMUP_PCT 10       /* samples before this share of the run are warm-up */
#define SK_RSS_GROWTH_PCT 1.0  /* target */
#define SK_KEEP_PROFILES 32    /* profiles a soak thread keeps before deleting the oldest */
#define OV_CALIBRATE_MS 10000u /* capacity measurement */
#define OV_DEADLINE_MS 2000.0  /* --request-deadline default */
#define OV_RECOVERY_TARGET_S 5.0
#define OV_RECOVERY_MAX_S 60.0
#define OV_PROBE_MS 100u

static rel_server g_srv;
static char g_key[160], g_profile[64], g_match[64];
static uint8_t *g_img;
static size_t g_img_len;
static uint64_t g_seed = 1;

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int setup_tenant(void)
{
    rel_conn c;
    rel_conn_init(&c, g_srv.port);
    int st = 0, ok = 1;
    char id[64], path[256];
    const char *tb = "{\"name\":\"soak\",\"kind\":\"agency\"}";
    ok &= rel_call(&c, "POST", "/api/v1/tenants", g_srv.admin_key, "application/json", tb,
                   strlen(tb), 10000, &st) == VG_OK &&
          st == 201;
    rel_json_str(&c, "id", id, sizeof id);
    snprintf(path, sizeof path, "/api/v1/tenants/%s/keys", id);
    ok &= rel_call(&c, "POST", path, g_srv.admin_key, "application/json", "{}", 2, 10000, &st) ==
              VG_OK &&
          st == 201;
    rel_json_str(&c, "key", g_key, sizeof g_key);
    const char *pb = "{\"name\":\"Soak\",\"legal_name\":\"Soak Ltd\",\"email\":\"l@example.com\"}";
    ok &= rel_call(&c, "POST", "/api/v1/profiles", g_key, "application/json", pb, strlen(pb), 10000,
                   &st) == VG_OK &&
          st == 201;
    rel_json_str(&c, "id", g_profile, sizeof g_profile);
    uint8_t *ref = NULL;
    size_t rl = 0;
    if (rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-256x256.jpg", 1 << 24, &ref, &rl) !=
        VG_OK)
        return -1;
    snprintf(path, sizeof path, "/api/v1/profiles/%s/references?kind=work&title=soak", g_profile);
    ok &=
        rel_call(&c, "POST", path, g_key, "image/jpeg", ref, rl, 60000, &st) == VG_OK && st == 201;
    vg_free(ref);
    ok &= rel_call(&c, "POST", "/api/v1/analyze?source_url=https://x.example/s.jpg", g_key,
                   "image/jpeg", g_img, g_img_len, 60000, &st) == VG_OK &&
          st == 201;
    json_t *j = rel_json(&c);
    const char *m = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "matches"), 0), "match_id"));
    snprintf(g_match, sizeof g_match, "%s", m ? m : "");
    json_decref(j);
    rel_conn_deinit(&c);
    return ok && g_match[0] ? 0 : -1;
}

/* ---- soak ------------------------------------------------------------------------------------ */

typedef struct soak_thread {
    int index;
    rel_rng rng;
    char profiles[SK_KEEP_PROFILES][48];
    unsigned np;
    char notice[48];
    int notice_step;
    uint64_t done, s2xx, s4xx, s5xx, conn_err;
} soak_thread;

static _Atomic uint64_t g_next, g_total;
static _Atomic uint64_t g_end_ns;

static const char *const steps[] = {"sent", "acknowledged", "removed"};

static int soak_op(soak_thread *t, rel_conn *c, uint64_t seq)
{
    char path[256], body[512], id[48];
    int st = 0, rc;
    unsigned d = (unsigned)rel_rng_below(&t->rng, 100);
    const char *J = "application/json";
    if (d < 12 || t->np == 0) {
        snprintf(body, sizeof body, "{\"name\":\"soak-%llu\",\"email\":\"s@example.com\"}",
                 (unsigned long long)seq);
        rc = rel_call(c, "POST", "/api/v1/profiles", g_key, J, body, strlen(body),
                      SK_CALL_TIMEOUT_MS, &st);
        if (rc == VG_OK && st == 201) {
            rel_json_str(c, "id", id, sizeof id);
            if (t->np == SK_KEEP_PROFILES) { /* bounded: the oldest goes */
                snprintf(path, sizeof path, "/api/v1/profiles/%s", t->profiles[0]);
                memmove(t->profiles[0], t->profiles[1], sizeof t->profiles[0] * (t->np - 1));
                t->np--;
                int st2 = 0;
                t->done++;
                if (rel_call(c, "DELETE", path, g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st2) ||
                    st2 >= 500)
                    t->s5xx++;
            }
            snprintf(t->profiles[t->np++], sizeof t->profiles[0], "%s", id);
        }
    } else if (d < 30) {
        snprintf(path, sizeof path, "/api/v1/profiles/%s",
                 t->profiles[rel_rng_below(&t->rng, t->np)]);
        rc = rel_call(c, "GET", path, g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 38) {
        snprintf(path, sizeof path, "/api/v1/profiles/%s",
                 t->profiles[rel_rng_below(&t->rng, t->np)]);
        snprintf(body, sizeof body, "{\"notes\":\"n%llu\"}", (unsigned long long)seq);
        rc = rel_call(c, "PATCH", path, g_key, J, body, strlen(body), SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 46) {
        rc = rel_call(c, "GET", "/api/v1/profiles?limit=20", g_key, NULL, NULL, 0,
                      SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 52) {
        /* a reference on one of this thread's profiles, deleted again at once */
        snprintf(path, sizeof path, "/api/v1/profiles/%s/references?kind=work&title=r%llu",
                 t->profiles[rel_rng_below(&t->rng, t->np)], (unsigned long long)seq);
        rc = rel_call(c, "POST", path, g_key, "image/jpeg", g_img, g_img_len, SK_CALL_TIMEOUT_MS,
                      &st);
        if (rc == VG_OK && st == 201) {
            rel_json_str(c, "id", id, sizeof id);
            snprintf(path, sizeof path, "/api/v1/references/%s", id);
            t->done++; /* the upload; the delete is counted below */
            t->s2xx++;
            rc = rel_call(c, "DELETE", path, g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
        }
    } else if (d < 64) {
        /* analysis: the same image (cache hit), recorded as a scan one time in four */
        snprintf(path, sizeof path, "/api/v1/analyze?profile_id=%s%s", g_profile,
                 seq % 4 ? "&store=false" : "");
        rc = rel_call(c, "POST", path, g_key, "image/jpeg", g_img, g_img_len, SK_CALL_TIMEOUT_MS,
                      &st);
    } else if (d < 70) {
        if (!t->notice[0] || t->notice_step >= 3) {
            snprintf(body, sizeof body,
                     "{\"match_id\":\"%s\",\"infringing_url\":\"https://x.example/%llu\","
                     "\"recipient\":{\"name\":\"Abuse\",\"email\":\"a@x.example\"}}",
                     g_match, (unsigned long long)seq);
            rc = rel_call(c, "POST", "/api/v1/notices", g_key, J, body, strlen(body),
                          SK_CALL_TIMEOUT_MS, &st);
            if (rc == VG_OK && st == 201) {
                rel_json_str(c, "id", t->notice, sizeof t->notice);
                t->notice_step = 0;
            }
        } else {
            snprintf(path, sizeof path, "/api/v1/notices/%s/status", t->notice);
            snprintf(body, sizeof body, "{\"status\":\"%s\"}", steps[t->notice_step++]);
            rc = rel_call(c, "POST", path, g_key, J, body, strlen(body), SK_CALL_TIMEOUT_MS, &st);
        }
    } else if (d < 76) {
        rc = rel_call(c, "GET",
                      t->notice[0] && d % 2 ? "/api/v1/notices?limit=10"
                                            : "/api/v1/matches?limit=10",
                      g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 82) {
        rc = rel_call(c, "GET", "/api/v1/scans?limit=10", g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS,
                      &st);
    } else if (d < 86) {
        if (t->notice[0]) {
            snprintf(path, sizeof path, "/api/v1/notices/%s?format=%s", t->notice,
                     d % 2 ? "html" : "text");
            rc = rel_call(c, "GET", path, g_key, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
        } else {
            rc = rel_call(c, "GET", "/api/v1/health/live", NULL, NULL, NULL, 0, SK_CALL_TIMEOUT_MS,
                          &st);
        }
    } else if (d < 90) {
        rc = rel_call(c, "GET", "/api/v1/health", NULL, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 93) {
        rc = rel_call(c, "GET", "/metrics", NULL, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 97) {
        /* errors are part of the mix: unknown id, bad JSON, no key */
        rc = rel_call(c, "GET", "/api/v1/profiles/prf_nope", g_key, NULL, NULL, 0,
                      SK_CALL_TIMEOUT_MS, &st);
    } else if (d < 99) {
        rc = rel_call(c, "POST", "/api/v1/profiles", g_key, J, "{\"name\":", 8, SK_CALL_TIMEOUT_MS,
                      &st);
    } else {
        rc = rel_call(c, "GET", "/api/v1/profiles", NULL, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st);
    }
    t->done++;
    if (rc != VG_OK) {
        t->conn_err++;
        return -1;
    }
    if (st < 300)
        t->s2xx++;
    else if (st < 500)
        t->s4xx++;
    else {
        t->s5xx++;
        static _Atomic int shown;
        if (atomic_fetch_add(&shown, 1) < 5) /* the first few, so a failed run says why */
            fprintf(stderr, "rel_soak: %d answer: %.300s\n", st, c->resp.data);
    }
    return 0;
}

static void *soak_run(void *arg)
{
    soak_thread *t = arg;
    rel_conn c;
    rel_conn_init(&c, g_srv.port);
    for (;;) {
        uint64_t seq = atomic_fetch_add(&g_next, 1);
        if (seq >= atomic_load(&g_total) || vg_now_ns() > atomic_load(&g_end_ns))
            break;
        if (soak_op(t, &c, seq) < 0 && t->conn_err > 100)
            break;
    }
    rel_conn_deinit(&c);
    return NULL;
}

/* vigil_store_sqlite_memory_bytes from /metrics, in KiB; 0 when it cannot be read. */
static uint64_t sqlite_kib(rel_conn *c)
{
    int st = 0;
    if (rel_call(c, "GET", "/metrics", NULL, NULL, NULL, 0, SK_CALL_TIMEOUT_MS, &st) != VG_OK ||
        st != 200)
        return 0;
    static const char name[] = "\nvigil_store_sqlite_memory_bytes ";
    const char *at = strstr(c->resp.data, name);
    return at ? (uint64_t)strtoull(at + sizeof(name) - 1, NULL, 10) / 1024 : 0;
}

/* sqlite_kib, asked again when a loaded server let the scrape time out (0 = still unknown). */
static uint64_t sqlite_kib_retry(rel_conn *c)
{
    uint64_t v = 0;
    for (int i = 0; i < 3 && !v; i++)
        v = sqlite_kib(c);
    return v;
}

static int run_soak(unsigned nthreads, uint64_t total, uint64_t max_s)
{
    atomic_store(&g_total, total);
    uint64_t t0 = vg_now_ns();
    uint64_t rss0 = 0;
    unsigned fd0 = 0;
    rel_proc_rss_fds(g_srv.pid, &rss0, &fd0);
    atomic_store(&g_end_ns, t0 + max_s * 1000000000ull);
    soak_thread *ts = calloc(nthreads, sizeof *ts);
    pthread_t *th = calloc(nthreads, sizeof *th);
    for (unsigned i = 0; i < nthreads; i++) {
        ts[i].index = (int)i;
        rel_rng_seed(&ts[i].rng, g_seed * 7919 + i);
        pthread_create(&th[i], NULL, soak_run, &ts[i]);
    }
    uint64_t rss[SK_SAMPLES + 2] = {0}, sqlm[SK_SAMPLES + 2] = {0};
    unsigned fds[SK_SAMPLES + 2] = {0};
    rel_conn mc; /* reads vigil_store_sqlite_memory_bytes beside each RSS sample */
    rel_conn_init(&mc, g_srv.port);
    uint64_t at[SK_SAMPLES + 2] = {0};
    unsigned ns = 0;
    uint64_t step = total / SK_SAMPLES;
    if (!step)
        step = 1;
    printf("rel_soak: sample  requests   VmRSS_KiB  sqlite_KiB  fds  elapsed_s\n");
    for (;;) {
        sleep_ns(50000000ull);
        uint64_t n = atomic_load(&g_next);
        int finished = n >= total + nthreads || vg_now_ns() > atomic_load(&g_end_ns);
        if ((n >= (uint64_t)ns * step && ns <= SK_SAMPLES) || finished) {
            if (rel_proc_rss_fds(g_srv.pid, &rss[ns], &fds[ns]) != VG_OK)
                break; /* the server is gone */
            at[ns] = n < total ? n : total;
            sqlm[ns] = sqlite_kib_retry(&mc);
            printf("rel_soak: %6u %9llu %11llu %11llu %4u %9.1f\n", ns, (unsigned long long)at[ns],
                   (unsigned long long)rss[ns], (unsigned long long)sqlm[ns], fds[ns],
                   (double)(vg_now_ns() - t0) / 1e9);
            fflush(stdout);
            ns++;
        }
        if (finished || ns > SK_SAMPLES)
            break;
    }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    /* once more at rest: every client connection closed (the sampler's too: it would be counted
     * among the server's descriptors), a second for the server to see it */
    rel_conn_reset(&mc, g_srv.port);
    sleep_ns(1000000000ull);
    uint64_t rss_rest = 0;
    unsigned fd_rest = 0;
    if (rel_proc_rss_fds(g_srv.pid, &rss_rest, &fd_rest) == VG_OK && ns < SK_SAMPLES + 2) {
        rss[ns] = rss_rest;
        sqlm[ns] = sqlite_kib_retry(&mc);
        fds[ns] = fd_rest;
        at[ns] = total;
        ns++;
    }
    uint64_t ops = atomic_load(&g_next) < total ? atomic_load(&g_next) : total;
    double secs = (double)(vg_now_ns() - t0) / 1e9;
    uint64_t done = 0, ok = 0, c4 = 0, c5 = 0, ce = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        done += ts[i].done;
        ok += ts[i].s2xx;
        c4 += ts[i].s4xx;
        c5 += ts[i].s5xx;
        ce += ts[i].conn_err;
    }
    unsigned w = ns * SK_WARMUP_PCT / 100 + 1; /* first sample after the warm-up */
    if (w >= ns)
        w = ns ? ns - 1 : 0;
    uint64_t rss_w = rss[w], rss_end = rss[ns - 1], rss_max = 0;
    unsigned fd_max = 0;
    for (unsigned i = w; i < ns; i++) {
        if (rss[i] > rss_max)
            rss_max = rss[i];
        if (fds[i] > fd_max)
            fd_max = fds[i];
    }
    double growth = rss_w ? 100.0 * ((double)rss_end - (double)rss_w) / (double)rss_w : 0;
    /* The same without SQLite's heap, whose page caches fill towards their bound as the
     * database grows: what is left is Vigil's own memory. Reported beside, not instead. */
    double own_w = (double)rss_w - (double)sqlm[w],
           own_end = (double)rss_end - (double)sqlm[ns - 1];
    double growth_own = own_w > 0 && sqlm[w] && sqlm[ns - 1]
                            ? 100.0 * (own_end - own_w) / own_w
                            : NAN; /* a scrape failed: unknown, not zero */
    rel_conn_deinit(&mc);
    double growth_max = rss_w ? 100.0 * ((double)rss_max - (double)rss_w) / (double)rss_w : 0;
    /* descriptors: at rest the same as before the load; under load at most one per client and
     * one for the sampler */
    int fail = ops < total || c5 || ce || growth >= SK_RSS_GROWTH_PCT || fd_rest > fd0 ||
               fd_max > fd0 + nthreads + 1; /* + the sampler's connection */
    printf("rel_soak: %s: %llu/%llu operations (%llu HTTP requests) in %.1f s (%.0f requests/s), "
           "%u threads: %llu 2xx, %llu 4xx, %llu 5xx, %llu connection errors; VmRSS after warm-up "
           "(%llu operations) %llu KiB, at the end %llu KiB (%+.2f%%), peak after warm-up %llu "
           "KiB (%+.2f%%); SQLite heap after warm-up %llu KiB, at the end %llu KiB; VmRSS less "
           "SQLite's heap %+.2f%%; open fds at rest before %u and after %u, peak under load %u\n",
           fail ? "FAIL" : "PASS", (unsigned long long)ops, (unsigned long long)total,
           (unsigned long long)done, secs, (double)done / secs, nthreads, (unsigned long long)ok,
           (unsigned long long)c4, (unsigned long long)c5, (unsigned long long)ce,
           (unsigned long long)at[w], (unsigned long long)rss_w, (unsigned long long)rss_end,
           growth, (unsigned long long)rss_max, growth_max, (unsigned long long)sqlm[w],
           (unsigned long long)sqlm[ns - 1], growth_own, fd0, fd_rest, fd_max);
    free(ts);
    free(th);
    return fail;
}

/* ---- overload -------------------------------------------------------------------------------- */

/* An uncached analysis: the image with 8 distinct bytes after its end (JPEG decoders stop at
 * EOI), so its SHA-256, the cache key, is new each time. */
static void unique_image(uint8_t *buf, uint64_t n)
{
    memcpy(buf, g_img, g_img_len);
    memcpy(buf + g_img_len, &n, sizeof n);
}

typedef struct ov_shared {
    double rate; /* offered requests per second (open loop); 0: closed loop */
    uint64_t t0, end;
    _Atomic uint64_t next; /* ticket */
    _Atomic uint64_t n2xx, n503, n429, n_noretry, n_other, n_err;
    bench_samples *lat[SK_MAX_THREADS]; /* admitted latency per thread, ns */
} ov_shared;

typedef struct ov_thread {
    ov_shared *s;
    unsigned index;
} ov_thread;

static _Atomic uint64_t g_uniq = 1;

static void *ov_run(void *arg)
{
    ov_thread *t = arg;
    ov_shared *s = t->s;
    rel_conn c;
    rel_conn_init(&c, g_srv.port);
    uint8_t *img = vg_malloc(g_img_len + 8);
    for (;;) {
        uint64_t k = atomic_fetch_add(&s->next, 1);
        uint64_t due = s->rate > 0 ? s->t0 + (uint64_t)((double)k * 1e9 / s->rate) : vg_now_ns();
        if (due >= s->end)
            break;
        uint64_t now = vg_now_ns();
        if (due > now)
            sleep_ns(due - now);
        unique_image(img, atomic_fetch_add(&g_uniq, 1) + g_seed * 1000000000ull);
        int st = 0;
        int rc = rel_call(&c, "POST", "/api/v1/analyze?store=false", g_key, "image/jpeg", img,
                          g_img_len + 8, SK_CALL_TIMEOUT_MS, &st);
        uint64_t lat = vg_now_ns() - due; /* from the scheduled time: queueing counts */
        if (rc != VG_OK) {
            atomic_fetch_add(&s->n_err, 1);
            continue;
        }
        if (st >= 200 && st < 300) {
            atomic_fetch_add(&s->n2xx, 1);
            bench_samples_add(s->lat[t->index], lat);
        } else if (st == 503 || st == 429) {
            atomic_fetch_add(st == 503 ? &s->n503 : &s->n429, 1);
            if (!strstr(c.parser.hdr, "Retry-After:") && !strstr(c.parser.hdr, "retry-after:"))
                atomic_fetch_add(&s->n_noretry, 1);
        } else {
            atomic_fetch_add(&s->n_other, 1);
        }
    }
    vg_free(img);
    rel_conn_deinit(&c);
    return NULL;
}

static void ov_phase(ov_shared *s, unsigned nthreads, double rate, uint64_t ms, bench_summary *sum)
{
    memset(s, 0, sizeof *s);
    s->rate = rate;
    s->t0 = vg_now_ns();
    s->end = s->t0 + ms * 1000000ull;
    ov_thread *ts = calloc(nthreads, sizeof *ts);
    pthread_t *th = calloc(nthreads, sizeof *th);
    for (unsigned i = 0; i < nthreads; i++) {
        bench_samples_new(4096, &s->lat[i]);
        ts[i] = (ov_thread){s, i};
        pthread_create(&th[i], NULL, ov_run, &ts[i]);
    }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 1; i < nthreads; i++) {
        bench_samples_merge(s->lat[0], s->lat[i]);
        bench_samples_free(s->lat[i]);
    }
    bench_samples_summarize(s->lat[0], sum);
    bench_samples_free(s->lat[0]);
    free(ts);
    free(th);
}

static int run_overload(double factor, unsigned seconds)
{
    ov_shared *s = calloc(1, sizeof *s);
    bench_summary cal, ov;
    /* capacity: closed loop with enough connections to keep every worker busy */
    ov_phase(s, 8, 0, OV_CALIBRATE_MS, &cal);
    double cap = (double)s->n2xx / (OV_CALIBRATE_MS / 1000.0);
    /* unloaded latency: one client */
    bench_summary one;
    ov_phase(s, 1, 0, 3000, &one);
    double normal_ms = one.p50 / 1e6;
    printf("rel_soak: overload: capacity %.1f analyses/s (closed loop, 8 clients, p50 %.0f ms); "
           "unloaded p50 %.0f ms\n",
           cap, cal.p50 / 1e6, normal_ms);
    fflush(stdout);
    double rate = cap * factor;
    unsigned nthreads = SK_MAX_THREADS; /* enough to keep the open loop open */
    ov_phase(s, nthreads, rate, (uint64_t)seconds * 1000, &ov);
    uint64_t n = s->n2xx + s->n503 + s->n429 + s->n_other + s->n_err;
    printf("rel_soak: overload: offered %.1f/s for %u s: %llu requests: %llu 2xx, %llu 503, %llu "
           "429, %llu without Retry-After, %llu other statuses, %llu connection errors; admitted "
           "latency p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
           rate, seconds, (unsigned long long)n, (unsigned long long)s->n2xx,
           (unsigned long long)s->n503, (unsigned long long)s->n429,
           (unsigned long long)s->n_noretry, (unsigned long long)s->n_other,
           (unsigned long long)s->n_err, ov.p50 / 1e6, ov.p99 / 1e6, ov.max / 1e6);
    int bad = s->n_other || s->n_err || s->n_noretry || ov.p99 / 1e6 > OV_DEADLINE_MS;
    /* recovery: one client, one request at a time, until three in a row are within 2x normal */
    uint64_t stop = vg_now_ns();
    rel_conn c;
    rel_conn_init(&c, g_srv.port);
    uint8_t *img = vg_malloc(g_img_len + 8);
    double rec_s = -1;
    int good = 0;
    while ((double)(vg_now_ns() - stop) / 1e9 < OV_RECOVERY_MAX_S) {
        unique_image(img, atomic_fetch_add(&g_uniq, 1) + g_seed * 1000000000ull);
        uint64_t a = vg_now_ns();
        int st = 0;
        int rc = rel_call(&c, "POST", "/api/v1/analyze?store=false", g_key, "image/jpeg", img,
                          g_img_len + 8, SK_CALL_TIMEOUT_MS, &st);
        double ms = (double)(vg_now_ns() - a) / 1e6;
        if (rc == VG_OK && st < 300 && ms <= 2 * normal_ms + 5) {
            if (++good == 3) {
                rec_s = (double)(vg_now_ns() - stop) / 1e9;
                break;
            }
        } else {
            good = 0;
        }
        sleep_ns(OV_PROBE_MS * 1000000ull);
    }
    vg_free(img);
    rel_conn_deinit(&c);
    if (rec_s < 0 || rec_s > OV_RECOVERY_TARGET_S)
        bad = 1;
    printf("rel_soak: overload: %s: back to normal latency (3 probes within 2x %.0f ms) %s%.1f s "
           "after the load stopped (target < %.0f s); admitted p99 %.0f ms (target <= %.0f ms)\n",
           bad ? "FAIL" : "PASS", normal_ms, rec_s < 0 ? "not within " : "",
           rec_s < 0 ? OV_RECOVERY_MAX_S : rec_s, OV_RECOVERY_TARGET_S, ov.p99 / 1e6,
           OV_DEADLINE_MS);
    free(s);
    return bad;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: rel_soak --vigil PATH [--requests N] [--threads T] [--seed S]\n"
                    "                [--max-seconds T]\n"
                    "       rel_soak --vigil PATH --overload [--seconds S] [--factor F]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *vigil = NULL;
    uint64_t total = 1000000, max_s = 7200;
    unsigned nthreads = 8, seconds = 60;
    double factor = 3.0;
    int overload = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--overload")) {
            overload = 1;
            i--;
            continue;
        }
        if (!v)
            usage();
        if (!strcmp(a, "--vigil"))
            vigil = v;
        else if (!strcmp(a, "--requests"))
            total = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            nthreads = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            g_seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--max-seconds"))
            max_s = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seconds"))
            seconds = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--factor"))
            factor = atof(v);
        else
            usage();
    }
    if (!vigil || nthreads < 1 || nthreads > SK_MAX_THREADS || total < 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-128x128.jpg", 1 << 24, &g_img,
                      &g_img_len) != VG_OK) {
        fprintf(stderr, "rel_soak: test image missing\n");
        return 2;
    }
    char dir[] = "/tmp/vigil-soak-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    /* The overload generator is one address standing for many users, as a load balancer in
     * front of a node is: the per-address connection limit (which would close its connections
     * past 256 and count them as connection errors) is off, as it is behind a load balancer. */
    static const char *const overload_args[] = {"--max-connections-per-ip", "0", NULL};
    rel_server_init(&g_srv, vigil, data, overload ? overload_args : NULL);
    char when[32];
    rel_utc_now(when, sizeof when);
    printf("rel_soak: %s, seed %llu, server %s, %s\n", overload ? "overload" : "soak",
           (unsigned long long)g_seed, vigil, when);
    fflush(stdout);
    if (rel_server_start(&g_srv, SK_START_TIMEOUT_MS) || setup_tenant()) {
        fprintf(stderr, "rel_soak: could not start the server or set up: %s\n", vg_err_msg());
        rel_server_stop(&g_srv, SIGKILL, 1000);
        return 1;
    }
    int fail = overload ? run_overload(factor, seconds) : run_soak(nthreads, total, max_s);
    int st = rel_server_stop(&g_srv, SIGTERM, 30000);
    if (st != 0) {
        char *log = rel_server_log(&g_srv, 8192);
        fprintf(stderr, "rel_soak: server exit %d: %s\n", st, log ? log : "");
        vg_free(log);
        fail = 1;
    }
    vg_free(g_img);
    if (!fail)
        bench_rmtree(dir);
    else
        printf("rel_soak: server data and log kept in %s\n", dir);
    return fail;
}
