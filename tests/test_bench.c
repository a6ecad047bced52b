/* bench: percentiles, summaries, histograms, SVG well-formedness, the HTTP response parser, the
 * load generator against an in-test HTTP server, section parsing, and a smoke run of
 * `vigil bench --quick` on one small section. No timing assertions: only counts and shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bench/lib/bench.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- statistics ------------------------------------------------------------------------------ */

static void test_percentiles(void **state)
{
    (void)state;
    uint64_t v[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_float_equal(bench_percentile(v, 10, 0.0), 1.0, 1e-9);
    assert_float_equal(bench_percentile(v, 10, 1.0), 10.0, 1e-9);
    assert_float_equal(bench_percentile(v, 10, 0.5), 5.5, 1e-9);   /* mean of 5 and 6 */
    assert_float_equal(bench_percentile(v, 10, 0.95), 9.55, 1e-9); /* rank 8.55 */
    assert_float_equal(bench_percentile(v, 10, 0.99), 9.91, 1e-9);
    uint64_t one = 42;
    assert_float_equal(bench_percentile(&one, 1, 0.95), 42.0, 1e-9);
    assert_float_equal(bench_percentile(v, 0, 0.5), 0.0, 1e-9);
}

static void test_summary_sorts(void **state)
{
    (void)state;
    bench_samples *s;
    assert_int_equal(bench_samples_new(0, &s), VG_OK);
    /* 1..1000 shuffled by a multiplicative permutation (7919 is prime to 1000) */
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(bench_samples_add(s, (i * 7919) % 1000 + 1), VG_OK);
    bench_summary sm;
    bench_samples_summarize(s, &sm);
    assert_int_equal(sm.n, 1000);
    assert_float_equal(sm.min, 1, 1e-9);
    assert_float_equal(sm.max, 1000, 1e-9);
    assert_float_equal(sm.mean, 500.5, 1e-9);
    assert_float_equal(sm.p50, 500.5, 1e-9);
    assert_float_equal(sm.p95, 950.05, 1e-9);
    assert_float_equal(sm.p99, 990.01, 1e-9);
    const uint64_t *d = bench_samples_data(s);
    for (size_t i = 1; i < 1000; i++)
        assert_true(d[i - 1] <= d[i]);

    bench_samples *t;
    assert_int_equal(bench_samples_new(4, &t), VG_OK);
    bench_samples_add(t, 5000);
    assert_int_equal(bench_samples_merge(s, t), VG_OK);
    assert_int_equal(bench_samples_count(s), 1001);
    bench_samples_clear(t);
    bench_summary empty;
    bench_samples_summarize(t, &empty);
    assert_int_equal(empty.n, 0);
    assert_float_equal(empty.p95, 0, 0);
    bench_samples_free(t);
    bench_samples_free(s);
    bench_samples_free(NULL);
}

static void test_histogram(void **state)
{
    (void)state;
    uint64_t v[] = {0, 5, 50, 500, 5000, 1, 10, 999};
    uint64_t c[3];
    assert_int_equal(bench_histogram_log(v, VG_ARRAY_LEN(v), 1, 1000, 3, c), VG_OK);
    /* bins [1,10) [10,100) [100,1000]: 0,5,1 -> 0; 50,10 -> 1; 500,5000,999 -> 2 */
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 2);
    assert_int_equal(c[2], 3);
    assert_float_equal(bench_histogram_edge(1, 1000, 3, 1), 10, 1e-9);
    assert_float_equal(bench_histogram_edge(1, 1000, 3, 2), 100, 1e-9);
    assert_float_equal(bench_histogram_edge(1, 1000, 3, 3), 1000, 1e-9);
    assert_int_equal(bench_histogram_log(v, 1, 0, 10, 3, c), VG_EINVAL);
    assert_int_equal(bench_histogram_log(v, 1, 10, 10, 3, c), VG_EINVAL);
    assert_int_equal(bench_histogram_log(v, 1, 1, 10, 0, c), VG_EINVAL);
}

static void test_buf(void **state)
{
    (void)state;
    bench_buf b;
    bench_buf_init(&b);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(bench_buf_printf(&b, "<%s>", big), VG_OK); /* longer than the fast path */
    assert_int_equal(b.len, 2001);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[2000], '>');
    bench_buf_reset(&b);
    assert_int_equal(bench_buf_xml(&b, "a<b>&\"c'"), VG_OK);
    assert_string_equal(b.data, "a&lt;b&gt;&amp;&quot;c&apos;");
    bench_buf_deinit(&b);
    bench_buf_deinit(&b); /* twice is harmless */
}

/* ---- SVG ------------------------------------------------------------------------------------- */

/* A small XML well-formedness check: balanced, properly nested tags; quoted attribute values
 * without raw '<'; '&' only as an entity; one root element named svg. */
static void assert_well_formed_svg(const char *doc)
{
    const char *stack[64];
    size_t depth = 0, roots = 0;
    const char *p = doc;
    while (*p) {
        if (*p == '&') {
            assert_true(strncmp(p, "&lt;", 4) == 0 || strncmp(p, "&gt;", 4) == 0 ||
                        strncmp(p, "&amp;", 5) == 0 || strncmp(p, "&quot;", 6) == 0 ||
                        strncmp(p, "&apos;", 6) == 0);
            p++;
            continue;
        }
        if (*p != '<') {
            assert_true(*p != '>');
            p++;
            continue;
        }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t nl = strspn(name, "abcdefghijklmnopqrstuvwxyz");
        assert_true(nl > 0);
        const char *q = name + nl;
        /* attributes */
        for (;;) {
            q += strspn(q, " \n\t");
            if (*q == '>' || (*q == '/' && q[1] == '>'))
                break;
            assert_false(closing);
            size_t an =
                strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:");
            assert_true(an > 0);
            q += an;
            assert_int_equal(*q, '=');
            q++;
            assert_int_equal(*q, '"');
            q++;
            while (*q && *q != '"') {
                assert_true(*q != '<');
                q++;
            }
            assert_int_equal(*q, '"');
            q++;
        }
        int self = *q == '/';
        if (closing) {
            assert_true(depth > 0);
            depth--;
            assert_int_equal(strncmp(stack[depth], name, nl), 0);
            assert_true(strspn(stack[depth], "abcdefghijklmnopqrstuvwxyz") == nl);
        } else if (!self) {
            if (depth == 0) {
                roots++;
                assert_int_equal(strncmp(name, "svg", 3), 0);
            }
            assert_true(depth < 64);
            stack[depth++] = name;
        }
        p = q + (self ? 2 : 1);
    }
    assert_int_equal(depth, 0);
    assert_int_equal(roots, 1);
}

static void test_svg_lines(void **state)
{
    (void)state;
    double x[] = {1, 10, 100, 1000, 12000}, y1[] = {5, 50, 500, NAN, 800}, y2[] = {0, 1, 2, 3, 4};
    bench_series se[2] = {{"cached <L1> & co", x, y1, 5}, {"\"uncached\"", x, y2, 5}};
    bench_chart c = {"Throughput & latency <test>", "connections", "req/s", 1, 1, se, 2};
    bench_buf b;
    bench_buf_init(&b);
    assert_int_equal(bench_svg_lines(&c, &b), VG_OK);
    assert_well_formed_svg(b.data);
    assert_non_null(strstr(b.data, "cached &lt;L1&gt; &amp; co"));
    assert_non_null(strstr(b.data, "<polyline"));
    bench_buf_reset(&b);
    c.logx = c.logy = 0;
    assert_int_equal(bench_svg_lines(&c, &b), VG_OK);
    assert_well_formed_svg(b.data);
    /* nothing drawable: only NaN / non-positive on log axes */
    double bad[] = {NAN, -1};
    bench_series sb = {"bad", bad, bad, 2};
    bench_chart cb = {"none", "x", "y", 1, 1, &sb, 1};
    bench_buf_reset(&b);
    assert_int_equal(bench_svg_lines(&cb, &b), VG_EINVAL);
    bench_buf_deinit(&b);
}

static void test_svg_bars(void **state)
{
    (void)state;
    const char *labels[] = {"S", "M & more", "L", "HD"};
    double v[] = {2.5, 0, 9, 19.75};
    bench_buf b;
    bench_buf_init(&b);
    assert_int_equal(bench_svg_bars("P95 <ms>", "ms", labels, v, 4, 0, &b), VG_OK);
    assert_well_formed_svg(b.data);
    bench_buf_reset(&b);
    assert_int_equal(bench_svg_bars("log", "ms", labels, v, 4, 1, &b), VG_OK); /* 0 skipped */
    assert_well_formed_svg(b.data);
    size_t rects = 0;
    for (const char *p = b.data; (p = strstr(p, "<rect")); p++)
        rects++;
    assert_int_equal(rects, 1 + 3); /* background + the three positive bars */
    bench_buf_deinit(&b);
}

/* ---- HTTP parser ----------------------------------------------------------------------------- */

static void feed_bytewise(bench_http_parser *p, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n && !p->done; i++)
        assert_int_equal(bench_http_parser_feed(p, s + i, 1), 1);
}

static void test_http_parser(void **state)
{
    (void)state;
    bench_http_parser *p = malloc(sizeof *p);
    bench_buf body;
    bench_buf_init(&body);

    bench_http_parser_init(p, &body);
    feed_bytewise(p, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     "content-length: 11\r\n\r\n{\"id\":\"x\"}\n");
    assert_true(p->done);
    assert_int_equal(p->status, 201);
    assert_false(p->close);
    assert_int_equal(body.len, 11);
    assert_memory_equal(body.data, "{\"id\":\"x\"}\n", 11);

    /* chunked, with Connection: close, and a second response right behind it */
    const char *two = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
                      "HTTP/1.1 204 No Content\r\n\r\n";
    bench_http_parser_init(p, &body);
    long k = bench_http_parser_feed(p, two, strlen(two));
    assert_true(p->done);
    assert_int_equal(p->status, 200);
    assert_true(p->close);
    assert_int_equal(body.len, 12);
    assert_memory_equal(body.data, "hello, world", 12);
    const char *rest = two + k;
    assert_int_equal(strncmp(rest, "HTTP/1.1 204", 12), 0);
    bench_http_parser_init(p, NULL);
    assert_int_equal(bench_http_parser_feed(p, rest, strlen(rest)), (long)strlen(rest));
    assert_true(p->done);
    assert_int_equal(p->status, 204);

    /* 100 Continue is skipped */
    bench_http_parser_init(p, NULL);
    const char *cont = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
                       "Content-Length: 0\r\n\r\n";
    bench_http_parser_feed(p, cont, strlen(cont));
    assert_true(p->done);
    assert_int_equal(p->status, 503);

    /* malformed */
    static const char *const bad[] = {
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n", /* no length: would need the close to delimit */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    };
    for (size_t i = 0; i < VG_ARRAY_LEN(bad); i++) {
        bench_http_parser_init(p, NULL);
        assert_true(bench_http_parser_feed(p, bad[i], strlen(bad[i])) < 0);
    }
    /* headers over the bound */
    bench_http_parser_init(p, NULL);
    char *huge = malloc(BENCH_HTTP_MAX_HEADER_BYTES + 64);
    memset(huge, 'a', BENCH_HTTP_MAX_HEADER_BYTES + 63);
    huge[BENCH_HTTP_MAX_HEADER_BYTES + 63] = 0;
    memcpy(huge, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(bench_http_parser_feed(p, huge, strlen(huge)), VG_ETOOBIG);
    free(huge);

    bench_buf req;
    bench_buf_init(&req);
    assert_int_equal(
        bench_http_request(&req, "POST", "/a?b=1", "vk_x", "image/jpeg", NULL, "abc", 3), VG_OK);
    assert_non_null(strstr(req.data, "POST /a?b=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(req.data, "Authorization: Bearer vk_x\r\n"));
    assert_non_null(strstr(req.data, "Content-Length: 3\r\n\r\nabc"));
    bench_buf_deinit(&req);
    bench_buf_deinit(&body);
    free(p);
}

/* ---- load generator against a tiny server ------------------------------------------------------
 */

/* Answers every request on a connection (thread per connection); every `close_every`-th answer
 * carries Connection: close and the connection is closed; status is the status to send. */
typedef struct tiny_server {
    int lfd;
    uint16_t port;
    int status;
    int close_every;
    pthread_t tid;
} tiny_server;

typedef struct tiny_conn {
    tiny_server *s;
    int fd;
} tiny_conn;

static void *tiny_conn_main(void *arg)
{
    tiny_conn *c = arg;
    char buf[4096];
    size_t have = 0;
    int answered = 0;
    for (;;) {
        ssize_t r = recv(c->fd, buf + have, sizeof buf - have - 1, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        buf[have] = 0;
        char *end;
        while ((end = strstr(buf, "\r\n\r\n"))) {
            answered++;
            int close_now = c->s->close_every && answered % c->s->close_every == 0;
            char resp[160];
            int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 2\r\n%s\r\nok",
                             c->s->status, close_now ? "Connection: close\r\n" : "");
            if (send(c->fd, resp, (size_t)n, MSG_NOSIGNAL) != n || close_now)
                goto done;
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, buf + used, have - used + 1);
            have -= used;
        }
    }
done:
    close(c->fd);
    free(c);
    return NULL;
}

static void *tiny_accept_main(void *arg)
{
    tiny_server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            break;
        tiny_conn *c = malloc(sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_t t;
        pthread_create(&t, NULL, tiny_conn_main, c);
        pthread_detach(t);
    }
    return NULL;
}

static void tiny_start(tiny_server *s, int status, int close_every)
{
    s->status = status;
    s->close_every = close_every;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 64), 0);
    getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->tid, NULL, tiny_accept_main, s);
}

static void tiny_stop(tiny_server *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    close(s->lfd);
    pthread_join(s->tid, NULL);
}

static const uint8_t *get_next(void *arg, uint64_t seq, bench_buf *scratch, size_t *len)
{
    (void)seq;
    (void)scratch;
    const char *req = arg;
    *len = strlen(req);
    return (const uint8_t *)req;
}

static void test_load_counts(void **state)
{
    (void)state;
    tiny_server s;
    tiny_start(&s, 200, 0);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bench_load_opts o = {.port = s.port,
                         .connections = 4,
                         .threads = 2,
                         .max_requests = 400,
                         .timeout_ms = 10000,
                         .connect_first = 1,
                         .next = get_next,
                         .arg = (void *)req};
    bench_load_result r;
    assert_int_equal(bench_load_run(&o, &r), VG_OK);
    assert_int_equal(r.completed, 400);
    assert_int_equal(r.ok, 400);
    assert_int_equal(bench_load_errors(&r), 0);
    assert_int_equal(bench_samples_count(r.latency_ns), 400);
    /* Each thread opens its 2 connections before sending; on a loaded machine one thread may
     * finish the 400 requests before the other has connected, so the peak is 2..4. */
    assert_true(r.connected_peak >= 2 && r.connected_peak <= 4);
    bench_load_result_free(&r);

    /* the server closes after every 3rd answer: reconnects, no errors */
    tiny_stop(&s);
    tiny_start(&s, 200, 3);
    o.port = s.port;
    o.max_requests = 90;
    o.threads = 1;
    assert_int_equal(bench_load_run(&o, &r), VG_OK);
    assert_int_equal(r.ok, 90);
    assert_int_equal(bench_load_errors(&r), 0);
    assert_true(r.reconnects >= 20);
    bench_load_result_free(&r);

    /* every answer a 503: counted as errors, no latency samples */
    tiny_stop(&s);
    tiny_start(&s, 503, 0);
    o.port = s.port;
    o.max_requests = 50;
    assert_int_equal(bench_load_run(&o, &r), VG_OK);
    assert_int_equal(r.ok, 0);
    assert_int_equal(r.status_503, 50);
    assert_int_equal(bench_load_errors(&r), 50);
    assert_int_equal(bench_samples_count(r.latency_ns), 0);
    bench_load_result_free(&r);
    tiny_stop(&s);

    /* nobody listening: connection errors, and the run still ends on its duration */
    uint16_t port;
    assert_int_equal(bench_free_port(&port), VG_OK);
    o.port = port;
    o.max_requests = 0;
    o.duration_ms = 300;
    assert_int_equal(bench_load_run(&o, &r), VG_OK);
    assert_int_equal(r.ok, 0);
    assert_true(r.conn_errors > 0);
    bench_load_result_free(&r);

    o.connections = 0;
    assert_int_equal(bench_load_run(&o, &r), VG_EINVAL);
}

/* ---- sections and the smoke run ------------------------------------------------------------ */

static void test_sections_parse(void **state)
{
    (void)state;
    unsigned s = 0;
    assert_int_equal(bench_sections_parse("latency,cache", &s), VG_OK);
    assert_int_equal(s, BENCH_SEC_LATENCY | BENCH_SEC_CACHE);
    assert_int_equal(bench_sections_parse("3,6", &s), VG_OK);
    assert_int_equal(s, BENCH_SEC_SWEEP | BENCH_SEC_LEVELS);
    assert_int_equal(bench_sections_parse("all", &s), VG_OK);
    assert_int_equal(s, BENCH_SEC_ALL);
    assert_int_equal(bench_sections_parse("latency,nope", &s), VG_EINVAL);
    assert_int_equal(bench_sections_parse("7", &s), VG_EINVAL);
    assert_int_equal(bench_sections_parse("", &s), VG_EINVAL);
}

static void test_smoke_quick_cache(void **state)
{
    (void)state;
    const char *vigil = VG_BINARY_DIR "/src/cli/vigil";
    if (access(vigil, X_OK) != 0 || access(VG_MODELS_DIR "/SHA256SUMS", R_OK) != 0) {
        print_message("vigil binary or models missing: smoke run skipped\n");
        skip();
    }
    char dir[] = "/tmp/test-bench-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s bench --quick --only cache --iterations 3 --quiet --out %s/out >%s/log 2>&1",
             vigil, dir, dir);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/log", dir);
        (void)system(cmd);
    }
    assert_int_equal(rc, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/out/bench.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    assert_non_null(j);
    json_t *rows = json_object_get(json_object_get(j, "sections"), "cache");
    assert_true(json_is_array(rows));
    assert_true(json_array_size(rows) >= 2); /* miss and L1 at least (L3 needs redis-server) */
    json_t *l1 = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(l1, "tier")), "L1");
    assert_string_equal(json_string_value(json_object_get(l1, "served_by")), "l1");
    json_t *http = json_object_get(l1, "http_ms");
    assert_int_equal(json_integer_value(json_object_get(http, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(l1, "http_errors")), 0);
    assert_true(json_is_array(json_object_get(j, "targets")));
    json_decref(j);

    uint8_t *md;
    size_t len;
    snprintf(path, sizeof path, "%s/out/bench.md", dir);
    assert_int_equal(vg_read_file(path, 1 << 20, &md, &len), VG_OK);
    assert_non_null(strstr((char *)md, "## Targets (issue 5)"));
    assert_non_null(strstr((char *)md, "## 4. Cache tiers"));
    assert_non_null(strstr((char *)md, "](cache_tiers.svg)"));
    vg_free(md);
    uint8_t *svg;
    snprintf(path, sizeof path, "%s/out/cache_tiers.svg", dir);
    assert_int_equal(vg_read_file(path, 1 << 20, &svg, &len), VG_OK);
    assert_well_formed_svg((char *)svg);
    vg_free(svg);
    bench_rmtree(dir);
}

/* The open-loop histogram: exact below 128 ns, within 0.8% above, the maximum exact. */
static void test_hist_precision(void **state)
{
    (void)state;
    bench_hist *h = malloc(sizeof *h);
    assert_non_null(h);
    bench_hist_init(h);
    assert_int_equal(bench_hist_percentile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        bench_hist_add(h, v * 1000); /* 1 us .. 100 ms, uniform */
    assert_int_equal(h->n, 100000);
    assert_int_equal(h->max, 100000000);
    assert_int_equal(bench_hist_percentile(h, 1.0), 100000000);
    const double qs[] = {0.5, 0.95, 0.99, 0.999};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        const double want = qs[i] * 100000 * 1000, got = (double)bench_hist_percentile(h, qs[i]);
        assert_true(fabs(got - want) / want <= 0.008);
    }
    bench_hist_init(h);
    for (uint64_t v = 0; v < 128; v++)
        bench_hist_add(h, v);
    assert_int_equal(bench_hist_percentile(h, 0.5), 63); /* 64th smallest of 0..127 */
    bench_hist_add(h, UINT64_MAX);                       /* clamps into the last bucket */
    assert_int_equal(bench_hist_percentile(h, 1.0), UINT64_MAX);
    bench_hist *g = malloc(sizeof *g);
    assert_non_null(g);
    bench_hist_init(g);
    bench_hist_merge(g, h);
    assert_int_equal(g->n, 129);
    assert_int_equal(bench_hist_percentile(g, 0.5), 64);
    free(g);
    free(h);
}

/* The mix: classes follow the weights, zero weights never come up, the same index always gets
 * the same class. */
static void test_ol_class_mix(void **state)
{
    (void)state;
    const unsigned w[BENCH_OL_CLASSES] = {90, 0, 10};
    unsigned n[BENCH_OL_CLASSES] = {0};
    for (uint64_t i = 0; i < 100000; i++)
        n[bench_ol_class_of(w, i)]++;
    assert_int_equal(n[BENCH_OL_CACHED], 0);
    assert_true(n[BENCH_OL_API] > 89000 && n[BENCH_OL_API] < 91000);
    assert_int_equal(bench_ol_class_of(w, 12345), bench_ol_class_of(w, 12345));
    const unsigned zero[BENCH_OL_CLASSES] = {0};
    assert_int_equal(bench_ol_class_of(zero, 7), BENCH_OL_API);
    bench_ol_opts o = {0};
    bench_ol_result r;
    assert_int_equal(bench_ol_run(&o, &r), VG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles),    cmocka_unit_test(test_summary_sorts),
        cmocka_unit_test(test_hist_precision), cmocka_unit_test(test_ol_class_mix),
        cmocka_unit_test(test_histogram),      cmocka_unit_test(test_buf),
        cmocka_unit_test(test_svg_lines),      cmocka_unit_test(test_svg_bars),
        cmocka_unit_test(test_http_parser),    cmocka_unit_test(test_load_counts),
        cmocka_unit_test(test_sections_parse), cmocka_unit_test(test_smoke_quick_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
