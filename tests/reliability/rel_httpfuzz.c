/*
 * rel_httpfuzz: the whole HTTP server fuzzed through a real listening socket. Requests built from
 * the API's routes (valid keys and ids included, so deep handlers are reached) are mutated at two
 * levels: structurally (request line, headers, Content-Length / chunked framing, multipart
 * boundaries, JSON bodies, image bytes) and then byte by byte (flips, inserts, cuts, splices).
 * Each goes to `vigil serve` (the sanitizer build, normally) on a new connection, which is then
 * half-closed; the server must answer or close within a deadline.
 *
 *   rel_httpfuzz --vigil PATH [--requests N] [--seed S] [--threads T] [--deadline-ms D]
 *                [--max-seconds T] [--crash-dir DIR] [--print I]
 *
 * Findings: a crash (the server exits, or ASan/UBSan writes a report), a hang (no answer and no
 * close within the deadline; /api/v1/health/live is then asked whether the server still answers),
 * a leak (LeakSanitizer's report when the server exits after SIGTERM at the end), a 500 answer
 * (the API promises 500 only for bugs and I/O failures, never for bad input) and a malformed
 * answer. Inputs are saved in the crash directory. Crashes, hangs, leaks and malformed answers fail
 * the run (exit 1); 500s are reported and saved but do not.
 *
 * The server runs with 1 s header and body timeouts: a cut or short-framed request is closed only
 * when they expire (libmicrohttpd does not act on the client's half-close), so 128 client threads
 * (--threads) keep the server busy meanwhile. REL_HTTPFUZZ_SLOW=1 prints requests over 1 s.
 *
 * Request i is generated from (seed, i) alone, so `--print I` writes request I's bytes to stdout
 * (the fixture ids differ between runs; the saved files hold the exact bytes that were sent).
 */
#include "rel.h"

#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HF_MAX_THREADS 128
#define HF_RING 4 /* recent inputs kept per thread (x 128 threads), saved when the server dies */
#define HF_MAX_SAVED 64     /* 500s and malformed answers saved, at most */
#define HF_MAX_RESTARTS 5   /* after a crash the run goes on with a new server, this often */
#define HF_CHECK_EVERY 2000 /* requests between liveness / sanitizer-log checks */
#define HF_MAX_SEEDS 64     /* image seed files */
#define HF_LIVE_TIMEOUT_MS 10000u
#define HF_START_TIMEOUT_MS 120000u

typedef struct blob {
    uint8_t *data;
    size_t len;
    const char *ctype;
} blob;

/* What every request may refer to: keys and ids created at start-up. */
typedef struct fixture {
    char admin[80], key[160], tenant[64], profile[64], reference[64], scan[64], match[64],
        notice[64], key_id[64];
} fixture;

static fixture g_fx;
static blob g_imgs[HF_MAX_SEEDS];
static size_t g_nimgs;
static rel_server g_srv;
static uint64_t g_seed;
static uint32_t g_deadline_ms = 15000;
static char g_crash_dir[512];

typedef struct hf_stats {
    _Atomic uint64_t sent, answered, closed, s2xx, s4xx, s5xx, s500, s503, malformed, hangs,
        conn_fail;
} hf_stats;
static hf_stats g_st;
static _Atomic uint64_t g_s5xx_by[100]; /* 500..599 */
static _Atomic int g_saved;
static _Atomic uint64_t g_next;
static uint64_t g_total;
static _Atomic int g_stop;
static _Atomic int g_down; /* the server is being restarted: threads wait */
static _Atomic uint16_t g_port;
static _Atomic uint64_t g_end_ns;

/* ---- generation ------------------------------------------------------------------------------ */

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}

#define R(n) rel_rng_below(rng, (n))
#define CHANCE(pct) (R(100) < (pct))

static const char *pick_s(rel_rng *rng, const char *const *v, size_t n)
{
    return v[R(n)];
}
#define PICK(arr) pick_s(rng, (arr), sizeof(arr) / sizeof((arr)[0]))

static const char *const weird_ids[] = {
    "",
    "x",
    "prf_",
    "prf_00000000000000000000000000",
    "ref_01m987pk7sey3zpk7gqtv2wtp2",
    "%00",
    "..",
    "%2e%2e",
    "prf_01M987PK7SEY3ZPK7GQTV2WTP2",
    "nt_\xff\xfe",
    "a/b",
    "%ff",
    "0",
    "-1",
};

static const char *an_id(rel_rng *rng, const char *good)
{
    return CHANCE(80) ? good : PICK(weird_ids);
}

static const char *const weird_values[] = {
    "",
    "0",
    "-1",
    "99999999999999999999999",
    "1e308",
    "NaN",
    "%00",
    "%zz",
    "%",
    "\xc3\x28",
    "2026-13-45T99:99:99Z",
    "1700000000000",
    "accuracy",
    "speed",
    "memory",
    "balanced",
    "exact",
    "pdq",
    "face",
    "false",
    "true",
    "draft",
    "text",
    "html",
    "json",
    "work",
    "likeness",
    "https://example.com/a.jpg",
    "javascript:alert(1)",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};
static const char *const query_keys[] = {
    "limit",        "cursor",           "since",      "until", "sha256",
    "kind",         "status",           "format",     "level", "profile_id",
    "store",        "scan_id",          "source_url", "title", "description",
    "original_url", "copyright_holder", "name",       "x",     "",
};

static void add_query(rel_rng *rng, bench_buf *p)
{
    unsigned n = (unsigned)R(4);
    for (unsigned i = 0; i < n; i++) {
        bench_buf_printf(p, "%c%s=%s", (i == 0 && !strchr(p->data, '?')) ? '?' : '&',
                         PICK(query_keys), PICK(weird_values));
    }
}

/* A JSON value, random and sometimes hostile (deep nesting, long strings, odd numbers). */
static void json_value(rel_rng *rng, bench_buf *b, int depth)
{
    switch (R(depth > 3 ? 6 : 9)) {
    case 0:
        bench_buf_printf(b, "\"%s\"", PICK(weird_values));
        break;
    case 1:
        bench_buf_printf(b, "%lld", (long long)rel_rng_next(rng));
        break;
    case 2:
        bench_buf_puts(
            b, PICK(((const char *const[]){"null", "true", "false", "1.5e999", "-0", "0.0000001",
                                           "\"\\u0000\"", "\"\\ud800\"", "\"\\\"\""})));
        break;
    case 3: {
        size_t n = 1 + R(5000);
        bench_buf_puts(b, "\"");
        for (size_t i = 0; i < n; i++)
            bench_buf_append(b, &"a\xc3\xa9<&>"[R(5)], 1);
        bench_buf_puts(b, "\"");
        break;
    }
    case 4: {
        unsigned d = (unsigned)(1 + R(CHANCE(5) ? 100000 : 50));
        for (unsigned i = 0; i < d; i++)
            bench_buf_puts(b, "[");
        for (unsigned i = 0; i < d; i++)
            bench_buf_puts(b, "]");
        break;
    }
    case 5:
        bench_buf_puts(b, "\"ok\"");
        break;
    case 6:
    case 7: {
        bench_buf_puts(b, "{");
        unsigned n = (unsigned)R(5);
        for (unsigned i = 0; i < n; i++) {
            bench_buf_printf(b, "%s\"%s\":", i ? "," : "", PICK(query_keys));
            json_value(rng, b, depth + 1);
        }
        bench_buf_puts(b, "}");
        break;
    }
    default: {
        bench_buf_puts(b, "[");
        unsigned n = (unsigned)R(4);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                bench_buf_puts(b, ",");
            json_value(rng, b, depth + 1);
        }
        bench_buf_puts(b, "]");
    }
    }
}

static const char *const profile_fields[] = {"name",  "legal_name", "email", "address",
                                             "phone", "notes",      "extra"};
static const char *const notice_fields[] = {"match_id",    "infringing_url", "recipient",
                                            "signer_name", "status",         "note"};

/* A JSON object body for a route: mostly right fields with sometimes wrong values. */
static void json_body(rel_rng *rng, bench_buf *b, const char *const *fields, size_t nf)
{
    if (CHANCE(10)) {
        json_value(rng, b, 0);
        return;
    }
    bench_buf_puts(b, "{");
    unsigned n = (unsigned)(1 + R(nf + 1));
    for (unsigned i = 0; i < n; i++) {
        const char *f = fields[R(nf)];
        bench_buf_printf(b, "%s\"%s\":", i ? "," : "", f);
        if (!strcmp(f, "match_id") && CHANCE(70))
            bench_buf_printf(b, "\"%s\"", g_fx.match);
        else if (!strcmp(f, "recipient") && CHANCE(70))
            bench_buf_puts(b, "{\"name\":\"Abuse\",\"email\":\"abuse@example.com\"}");
        else if (!strcmp(f, "status") && CHANCE(70))
            bench_buf_printf(b, "\"%s\"",
                             PICK(((const char *const[]){"draft", "sent", "acknowledged", "removed",
                                                         "rejected", "countered", "bogus"})));
        else if (CHANCE(60))
            bench_buf_printf(b, "\"%s %llu\"", f, (unsigned long long)R(1000000));
        else
            json_value(rng, b, 1);
    }
    if (!CHANCE(95))
        bench_buf_puts(b, ",");
    bench_buf_puts(b, "}");
}

static const blob *an_image(rel_rng *rng)
{
    return &g_imgs[R(g_nimgs)];
}

/* Image bytes, mutated now and then (decoder paths past the header). */
static void image_bytes(rel_rng *rng, bench_buf *b)
{
    const blob *im = an_image(rng);
    size_t at = b->len;
    bench_buf_append(b, im->data, im->len);
    if (CHANCE(50) && !b->failed) {
        unsigned flips = (unsigned)(1 + R(16));
        for (unsigned i = 0; i < flips; i++)
            b->data[at + R(im->len)] = (char)R(256);
    }
    if (CHANCE(10))
        b->len = at + R(im->len + 1); /* truncated */
}

static const char *const part_names[] = {"image", "kind",       "title", "source_url", "level",
                                         "store", "profile_id", "x",     "",           "image"};

static void multipart_body(rel_rng *rng, bench_buf *b, const char *boundary, int batch)
{
    unsigned n = (unsigned)(1 + R(batch ? 6 : 4));
    if (CHANCE(5))
        bench_buf_puts(b, "preamble text\r\n");
    for (unsigned i = 0; i < n; i++) {
        const char *name = (i == 0 || (batch && CHANCE(50))) ? "image" : PICK(part_names);
        bench_buf_printf(b, "--%s\r\n", boundary);
        if (!CHANCE(5))
            bench_buf_printf(b, "Content-Disposition: form-data; name=\"%s\"%s\r\n", name,
                             !strcmp(name, "image") ? "; filename=\"a.jpg\"" : "");
        if (CHANCE(30))
            bench_buf_printf(b, "Content-Type: %s\r\n", an_image(rng)->ctype);
        bench_buf_puts(b, "\r\n");
        if (!strcmp(name, "image"))
            image_bytes(rng, b);
        else if (!strcmp(name, "kind"))
            bench_buf_puts(b, CHANCE(80) ? "work" : PICK(weird_values));
        else
            bench_buf_puts(b, PICK(weird_values));
        bench_buf_puts(b, "\r\n");
    }
    if (!CHANCE(5))
        bench_buf_printf(b, "--%s--\r\n", boundary);
}

typedef struct hreq {
    const char *method;
    bench_buf path, headers, body;
} hreq;

/* The request before framing: method, path, semantic headers and body. */
static void gen_request(rel_rng *rng, hreq *q)
{
    const char *bearer = g_fx.key;
    const char *ctype = NULL;
    int kind = (int)R(100);
    char boundary[96];
    snprintf(boundary, sizeof boundary, "b-%llu", (unsigned long long)R(1000000));
    if (kind < 6) {
        q->method = "GET";
        bench_buf_puts(&q->path,
                       PICK(((const char *const[]){"/api/v1/health", "/api/v1/health/live",
                                                   "/api/v1/openapi.json", "/metrics", "/", "/api",
                                                   "/api/v1/", "/api/v1/health/"})));
        bearer = NULL;
    } else if (kind < 12) {
        bearer = g_fx.admin;
        switch (R(5)) {
        case 0:
            q->method = "POST";
            bench_buf_puts(&q->path, "/api/v1/tenants");
            json_body(rng, &q->body, (const char *const[]){"name", "kind"}, 2);
            ctype = "application/json";
            break;
        case 1:
            q->method = "GET";
            bench_buf_puts(&q->path, "/api/v1/tenants");
            break;
        case 2:
            q->method = "GET";
            bench_buf_printf(&q->path, "/api/v1/tenants/%s", an_id(rng, g_fx.tenant));
            break;
        case 3:
            q->method = CHANCE(50) ? "POST" : "GET";
            bench_buf_printf(&q->path, "/api/v1/tenants/%s/keys", an_id(rng, g_fx.tenant));
            json_body(rng, &q->body, (const char *const[]){"name"}, 1);
            ctype = "application/json";
            break;
        default:
            /* revoking the fixture key would end the run's reach: a random key id only */
            q->method = "DELETE";
            bench_buf_printf(&q->path, "/api/v1/tenants/%s/keys/%s", an_id(rng, g_fx.tenant),
                             PICK(weird_ids));
        }
    } else if (kind < 30) {
        switch (R(5)) {
        case 0:
        case 1:
            q->method = "POST";
            bench_buf_puts(&q->path, "/api/v1/profiles");
            json_body(rng, &q->body, profile_fields, VG_ARRAY_LEN(profile_fields));
            ctype = "application/json";
            break;
        case 2:
            q->method = "PATCH";
            bench_buf_printf(&q->path, "/api/v1/profiles/%s", an_id(rng, g_fx.profile));
            json_body(rng, &q->body, profile_fields, VG_ARRAY_LEN(profile_fields));
            ctype = "application/json";
            break;
        case 3:
            q->method = "GET";
            bench_buf_printf(&q->path, "/api/v1/profiles%s%s", CHANCE(50) ? "/" : "",
                             CHANCE(50) ? g_fx.profile : "");
            break;
        default:
            q->method = "DELETE"; /* never the fixture profile */
            bench_buf_printf(&q->path, "/api/v1/profiles/%s", PICK(weird_ids));
        }
    } else if (kind < 48) {
        /* uploads: references, analyze, batch */
        int route = (int)R(3);
        q->method = "POST";
        if (route == 0)
            bench_buf_printf(&q->path, "/api/v1/profiles/%s/references?kind=%s",
                             an_id(rng, g_fx.profile), CHANCE(80) ? "work" : "likeness");
        else if (route == 1)
            bench_buf_puts(&q->path, "/api/v1/analyze?store=false");
        else
            bench_buf_puts(&q->path, "/api/v1/analyze/batch?store=false");
        if (route != 2 && CHANCE(50)) {
            image_bytes(rng, &q->body);
            ctype = an_image(rng)->ctype;
        } else {
            multipart_body(rng, &q->body, boundary, route == 2);
            ctype = "multipart/form-data";
        }
    } else if (kind < 70) {
        q->method = "GET";
        switch (R(8)) {
        case 0:
            bench_buf_puts(&q->path, "/api/v1/scans");
            break;
        case 1:
            bench_buf_printf(&q->path, "/api/v1/scans/%s", an_id(rng, g_fx.scan));
            break;
        case 2:
            bench_buf_puts(&q->path, "/api/v1/matches");
            break;
        case 3:
            bench_buf_printf(&q->path, "/api/v1/matches/%s", an_id(rng, g_fx.match));
            break;
        case 4:
            bench_buf_puts(&q->path, "/api/v1/notices");
            break;
        case 5:
            bench_buf_printf(&q->path, "/api/v1/notices/%s", an_id(rng, g_fx.notice));
            break;
        case 6:
            bench_buf_printf(&q->path, "/api/v1/notices/%s/events", an_id(rng, g_fx.notice));
            break;
        default:
            bench_buf_printf(&q->path, "/api/v1/references/%s%s", an_id(rng, g_fx.reference),
                             CHANCE(50) ? "/image" : "");
        }
        add_query(rng, &q->path);
    } else if (kind < 85) {
        q->method = "POST";
        if (CHANCE(50)) {
            bench_buf_puts(&q->path, "/api/v1/notices");
        } else {
            bench_buf_printf(&q->path, "/api/v1/notices/%s/status", an_id(rng, g_fx.notice));
        }
        json_body(rng, &q->body, notice_fields, VG_ARRAY_LEN(notice_fields));
        ctype = "application/json";
    } else {
        /* anything: odd methods, odd paths, on real routes */
        q->method =
            PICK(((const char *const[]){"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                        "TRACE", "CONNECT", "get", "G\x01T", "PROPFIND", ""}));
        bench_buf_puts(
            &q->path,
            PICK(((const char *const[]){"/api/v1/profiles", "/api/v1/analyze", "/api/v1/notices",
                                        "/api/v1/tenants", "/api/v1/health", "*", "",
                                        "http://127.0.0.1/api/v1/health", "/api/v1/../v1/health",
                                        "//api//v1//profiles", "/api/v1/profiles/%2F..%2F"})));
        if (CHANCE(30)) {
            size_t n = 1 + R(CHANCE(10) ? 70000 : 2000);
            for (size_t i = 0; i < n; i++)
                bench_buf_append(&q->path, &"a/%.?=&;#"[R(9)], 1);
        }
        add_query(rng, &q->path);
        if (CHANCE(50)) {
            json_body(rng, &q->body, profile_fields, VG_ARRAY_LEN(profile_fields));
            ctype = "application/json";
        }
    }
    /* headers with meaning (framing is added later) */
    if (!CHANCE(3))
        bench_buf_puts(&q->headers, "Host: 127.0.0.1\r\n");
    if (bearer && !CHANCE(5))
        bench_buf_printf(
            &q->headers, "Authorization: Bearer %s\r\n",
            CHANCE(95)
                ? bearer
                : PICK(((const char *const[]){
                      "", "vk_", "va_x", g_fx.admin,
                      "vk_0000000000000000000000000000000000000000000000000000000000000000"})));
    else if (CHANCE(3))
        bench_buf_printf(
            &q->headers, "Authorization: %s\r\n",
            PICK(((const char *const[]){"Basic eDp5", "Bearer", "Bearer  ", "bearer x", ""})));
    if (ctype) {
        if (!strcmp(ctype, "multipart/form-data")) {
            if (CHANCE(90))
                bench_buf_printf(&q->headers,
                                 "Content-Type: multipart/form-data; boundary=%s%s\r\n",
                                 CHANCE(95) ? boundary : "", CHANCE(10) ? "; charset=utf-8" : "");
            else
                bench_buf_printf(&q->headers,
                                 "Content-Type: multipart/form-data; boundary=\"%s\"\r\n",
                                 boundary);
        } else if (!CHANCE(5)) {
            bench_buf_printf(
                &q->headers, "Content-Type: %s%s\r\n",
                CHANCE(95) ? ctype
                           : PICK(((const char *const[]){"text/plain", "application/json",
                                                         "image/gif", "application/octet-stream",
                                                         "", "image/", "multipart/form-data"})),
                CHANCE(10) ? "; charset=utf-8" : "");
        }
    }
}

/* Framing and header-level mutations, then the bytes on the wire. */
static void frame(rel_rng *rng, hreq *q, bench_buf *out)
{
    const char *version =
        CHANCE(96) ? "HTTP/1.1"
                   : PICK(((const char *const[]){"HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "HTTP/1",
                                                 "http/1.1", "", "HTTP/1.1 x"}));
    bench_buf_printf(out, "%s%s%s %s\r\n", q->method, CHANCE(2) ? "  " : " ",
                     q->path.data ? q->path.data : "", version);
    bench_buf_append(out, q->headers.data, q->headers.len);
    unsigned extra = CHANCE(20) ? (unsigned)(1 + R(4)) : 0;
    for (unsigned i = 0; i < extra; i++) {
        switch (R(9)) {
        case 0:
            bench_buf_puts(out, "X-Junk: a\r\n continued line\r\n");
            break;
        case 1:
            bench_buf_puts(out, "NoColonHere\r\n");
            break;
        case 2: {
            size_t n = 1 + R(CHANCE(10) ? 200000 : 8000);
            bench_buf_puts(out, "X-Big: ");
            for (size_t k = 0; k < n; k++)
                bench_buf_append(out, "x", 1);
            bench_buf_puts(out, "\r\n");
            break;
        }
        case 3:
            for (unsigned k = 0; k < 200; k++)
                bench_buf_printf(out, "X-H%u: %u\r\n", k, k);
            break;
        case 4:
            bench_buf_puts(out, "Connection: close\r\n");
            break;
        case 5:
            bench_buf_puts(out, "Expect: 100-continue\r\n");
            break;
        case 6:
            bench_buf_append(out, "X-Nul: a\0b\r\n", 12);
            break;
        case 7:
            bench_buf_puts(out, "Content-Encoding: gzip\r\n");
            break;
        default:
            bench_buf_puts(out, " leading-space: x\r\n");
        }
    }
    size_t blen = q->body.len;
    int mode = (int)R(100);
    if (mode < 70) { /* right Content-Length (or none without a body) */
        if (blen || !strcmp(q->method, "POST") || !strcmp(q->method, "PATCH"))
            bench_buf_printf(out, "Content-Length: %zu\r\n\r\n", blen);
        else
            bench_buf_puts(out, "\r\n");
        bench_buf_append(out, q->body.data, blen);
    } else if (mode < 78) { /* wrong Content-Length */
        const char *cl = PICK(((const char *const[]){"-1", "+5", "0x10", "18446744073709551616",
                                                     "99999999999", " 5", "5 5", "", "1e3", "0"}));
        if (CHANCE(50))
            bench_buf_printf(out, "Content-Length: %zu\r\n\r\n", blen + (R(2) ? 1 : 0) * R(64));
        else if (CHANCE(50) && blen)
            bench_buf_printf(out, "Content-Length: %zu\r\n\r\n", blen - 1 - R(blen));
        else
            bench_buf_printf(out, "Content-Length: %s\r\n\r\n", cl);
        bench_buf_append(out, q->body.data, blen);
    } else if (mode < 82) { /* two Content-Lengths */
        bench_buf_printf(out, "Content-Length: %zu\r\nContent-Length: %zu\r\n\r\n", blen,
                         blen + R(3));
        bench_buf_append(out, q->body.data, blen);
    } else { /* chunked, right or wrong */
        if (CHANCE(15))
            bench_buf_printf(out, "Content-Length: %zu\r\n", blen);
        bench_buf_printf(out, "Transfer-Encoding: %s\r\n\r\n",
                         CHANCE(85)
                             ? "chunked"
                             : PICK(((const char *const[]){"chunked, chunked", "gzip", "identity",
                                                           "Chunked", " chunked", "chunked;x"})));
        size_t off = 0;
        while (off < blen) {
            size_t n = 1 + R(blen - off < 4096 ? blen - off : 4096);
            switch (CHANCE(10) ? R(6) : 99) {
            case 0:
                bench_buf_printf(out, "%zx;ext=1\r\n", n);
                break;
            case 1:
                bench_buf_printf(out, "%zX \r\n", n);
                break;
            case 2:
                bench_buf_puts(out, "fffffffffffffffffff\r\n");
                break;
            case 3:
                bench_buf_printf(out, "-%zx\r\n", n);
                break;
            case 4:
                bench_buf_printf(out, "%zx\n", n);
                break;
            case 5:
                bench_buf_printf(out, "%zx\r\n", n + 3);
                break;
            default:
                bench_buf_printf(out, "%zx\r\n", n);
            }
            bench_buf_append(out, q->body.data + off, n);
            bench_buf_puts(out, CHANCE(97) ? "\r\n" : "\n");
            off += n;
        }
        bench_buf_puts(out, CHANCE(90)   ? "0\r\n\r\n"
                            : CHANCE(50) ? "0\r\nX-Trailer: 1\r\n\r\n"
                                         : "0\r\n");
    }
}

/* Byte-level mutation of the whole request (after framing). */
static void mutate_bytes(rel_rng *rng, bench_buf *b, const bench_buf *other)
{
    if (!b->len || b->failed)
        return;
    switch (R(6)) {
    case 0: { /* flip a few bytes, mostly in the head */
        unsigned n = (unsigned)(1 + R(8));
        size_t head = b->len < 512 ? b->len : 512;
        for (unsigned i = 0; i < n; i++)
            b->data[R(CHANCE(70) ? head : b->len)] = (char)R(256);
        break;
    }
    case 1: { /* insert special bytes */
        static const char *const ins[] = {"\r\n", "\n",       "\r", "\0",   " ",
                                          ":",    "\r\n\r\n", "%",  "\xff", "0\r\n\r\n"};
        const char *s = PICK(ins);
        size_t sl = s[0] ? strlen(s) : 1, at = R(b->len + 1);
        bench_buf_append(b, s, sl); /* grow, then shift */
        if (!b->failed) {
            memmove(b->data + at + sl, b->data + at, b->len - sl - at);
            memcpy(b->data + at, s, sl);
        }
        break;
    }
    case 2: /* cut */
        b->len = R(b->len);
        b->data[b->len] = 0;
        break;
    case 3: { /* delete a range */
        size_t at = R(b->len), n = 1 + R(b->len - at);
        memmove(b->data + at, b->data + at + n, b->len - at - n);
        b->len -= n;
        break;
    }
    case 4: { /* duplicate a range */
        size_t at = R(b->len), n = 1 + R((b->len - at) < 256 ? (b->len - at) : 256);
        char tmp[256];
        memcpy(tmp, b->data + at, n);
        bench_buf_append(b, tmp, n);
        if (!b->failed) {
            memmove(b->data + at + n, b->data + at, b->len - n - at);
            memcpy(b->data + at, tmp, n);
        }
        break;
    }
    default: /* splice: a second request after this one (pipelining) or a prefix of one */
        if (other && other->len)
            bench_buf_append(b, other->data, CHANCE(50) ? other->len : R(other->len));
    }
}

/* Request i of the run (deterministic in (seed, i) and the fixture). */
static void gen(uint64_t i, bench_buf *out)
{
    rel_rng r0;
    rel_rng_seed(&r0, mix(g_seed, i));
    rel_rng *rng = &r0;
    hreq q;
    memset(&q, 0, sizeof q);
    bench_buf_init(&q.path);
    bench_buf_init(&q.headers);
    bench_buf_init(&q.body);
    bench_buf_puts(&q.path, "");
    gen_request(rng, &q);
    bench_buf_reset(out);
    frame(rng, &q, out);
    int mutate = CHANCE(30);
    if (mutate) {
        bench_buf other;
        bench_buf_init(&other);
        if (CHANCE(20)) {
            hreq q2;
            memset(&q2, 0, sizeof q2);
            bench_buf_init(&q2.path);
            bench_buf_init(&q2.headers);
            bench_buf_init(&q2.body);
            bench_buf_puts(&q2.path, "");
            gen_request(rng, &q2);
            frame(rng, &q2, &other);
            bench_buf_deinit(&q2.path);
            bench_buf_deinit(&q2.headers);
            bench_buf_deinit(&q2.body);
        }
        unsigned n = (unsigned)(1 + R(3));
        for (unsigned k = 0; k < n; k++)
            mutate_bytes(rng, out, &other);
        bench_buf_deinit(&other);
    }
    bench_buf_deinit(&q.path);
    bench_buf_deinit(&q.headers);
    bench_buf_deinit(&q.body);
}

/* ---- running --------------------------------------------------------------------------------- */

static void save(const char *kind, uint64_t i, const void *data, size_t len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s-seed%llu-req%llu.http", g_crash_dir, kind,
             (unsigned long long)g_seed, (unsigned long long)i);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

typedef struct ring {
    bench_buf in[HF_RING];
    uint64_t idx[HF_RING];
    unsigned next;
    pthread_mutex_t mu;
} ring;
static ring g_rings[HF_MAX_THREADS];
static unsigned g_threads = 128;

static int live_ok(uint16_t port)
{
    rel_conn c;
    rel_conn_init(&c, port);
    int status = 0;
    int rc = rel_call(&c, "GET", "/api/v1/health/live", NULL, NULL, NULL, 0, HF_LIVE_TIMEOUT_MS,
                      &status);
    rel_conn_deinit(&c);
    return rc == VG_OK && status == 200;
}

static void *fuzz_thread(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    ring *rg = &g_rings[t];
    bench_buf req;
    bench_buf_init(&req);
    rel_conn c;
    rel_conn_init(&c, atomic_load(&g_port));
    while (!atomic_load(&g_stop)) {
        while (atomic_load(&g_down) && !atomic_load(&g_stop)) {
            struct timespec ts = {0, 20000000L};
            nanosleep(&ts, NULL);
        }
        if (vg_now_ns() > atomic_load(&g_end_ns))
            break;
        uint64_t i = atomic_fetch_add(&g_next, 1);
        if (i >= g_total)
            break;
        gen(i, &req);
        pthread_mutex_lock(&rg->mu);
        bench_buf_reset(&rg->in[rg->next]);
        bench_buf_append(&rg->in[rg->next], req.data, req.len);
        rg->idx[rg->next] = i;
        rg->next = (rg->next + 1) % HF_RING;
        pthread_mutex_unlock(&rg->mu);
        rel_conn_reset(&c, atomic_load(&g_port));
        int status = 0;
        atomic_fetch_add(&g_st.sent, 1);
        uint64_t t_req = vg_now_ns();
        int rc = rel_raw(&c, req.data, req.len, g_deadline_ms, &status);
        if (getenv("REL_HTTPFUZZ_SLOW") && vg_now_ns() - t_req > 1000000000ull)
            fprintf(stderr, "rel_httpfuzz: slow request %llu: %.1f s, status %d\n",
                    (unsigned long long)i, (double)(vg_now_ns() - t_req) / 1e9, status);
        if (rc == VG_ETIMEDOUT) {
            atomic_fetch_add(&g_st.hangs, 1);
            save("hang", i, req.data, req.len);
            fprintf(stderr,
                    "rel_httpfuzz: HANG on request %llu (%zu bytes): no answer or close "
                    "within %u ms; health/live %s\n",
                    (unsigned long long)i, req.len, g_deadline_ms,
                    live_ok(atomic_load(&g_port)) ? "still answers" : "DOES NOT ANSWER");
        } else if (rc != VG_OK) {
            atomic_fetch_add(&g_st.conn_fail, 1);
        } else if (status == 0) {
            atomic_fetch_add(&g_st.closed, 1);
        } else if (status < 0) {
            atomic_fetch_add(&g_st.malformed, 1);
            if (atomic_fetch_add(&g_saved, 1) < HF_MAX_SAVED)
                save("malformed", i, req.data, req.len);
        } else {
            atomic_fetch_add(&g_st.answered, 1);
            if (status < 300)
                atomic_fetch_add(&g_st.s2xx, 1);
            else if (status < 500)
                atomic_fetch_add(&g_st.s4xx, 1);
            else {
                atomic_fetch_add(&g_st.s5xx, 1);
                if (status < 600)
                    atomic_fetch_add(&g_s5xx_by[status - 500], 1);
                if (status == 503)
                    atomic_fetch_add(&g_st.s503, 1);
                if (status == 500) {
                    atomic_fetch_add(&g_st.s500, 1);
                    if (atomic_fetch_add(&g_saved, 1) < HF_MAX_SAVED) {
                        save("status500", i, req.data, req.len);
                        fprintf(stderr, "rel_httpfuzz: 500 on request %llu: %.200s\n",
                                (unsigned long long)i, c.resp.data ? c.resp.data : "");
                    }
                }
            }
        }
    }
    rel_conn_deinit(&c);
    bench_buf_deinit(&req);
    return NULL;
}

static int sanitizer_report(const char *log)
{
    return log &&
           (strstr(log, "ERROR: AddressSanitizer") || strstr(log, "runtime error:") ||
            strstr(log, "ERROR: LeakSanitizer") || strstr(log, "SUMMARY: UndefinedBehavior"));
}

static void save_crash(unsigned n)
{
    for (unsigned t = 0; t < g_threads; t++) {
        ring *rg = &g_rings[t];
        pthread_mutex_lock(&rg->mu);
        for (unsigned k = 0; k < HF_RING; k++)
            if (rg->in[k].len) {
                char kind[64];
                snprintf(kind, sizeof kind, "crash%u-recent", n);
                save(kind, rg->idx[k], rg->in[k].data, rg->in[k].len);
            }
        pthread_mutex_unlock(&rg->mu);
    }
    char *log = rel_server_log(&g_srv, 1 << 20);
    char path[700];
    snprintf(path, sizeof path, "%s/crash%u-server.log", g_crash_dir, n);
    FILE *f = fopen(path, "w");
    if (f && log) {
        fputs(log, f);
        fclose(f);
    } else if (f) {
        fclose(f);
    }
    fprintf(stderr, "rel_httpfuzz: CRASH %u; server log:\n%.6000s\n", n, log ? log : "");
    vg_free(log);
}

/* Keys and ids the requests refer to, created through the API. */
static int make_fixture(uint16_t port)
{
    rel_conn c;
    rel_conn_init(&c, port);
    int st = 0, ok = 1;
    snprintf(g_fx.admin, sizeof g_fx.admin, "%s", g_srv.admin_key);
    const char *tb = "{\"name\":\"fuzz\",\"kind\":\"agency\"}";
    ok &= rel_call(&c, "POST", "/api/v1/tenants", g_fx.admin, "application/json", tb, strlen(tb),
                   10000, &st) == VG_OK &&
          st == 201;
    rel_json_str(&c, "id", g_fx.tenant, sizeof g_fx.tenant);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/tenants/%s/keys", g_fx.tenant);
    ok &= rel_call(&c, "POST", path, g_fx.admin, "application/json", "{\"name\":\"f\"}", 12, 10000,
                   &st) == VG_OK &&
          st == 201;
    rel_json_str(&c, "key", g_fx.key, sizeof g_fx.key);
    rel_json_str(&c, "id", g_fx.key_id, sizeof g_fx.key_id);
    const char *pb = "{\"name\":\"Fuzz Profile\",\"legal_name\":\"Fuzz Ltd\","
                     "\"email\":\"legal@example.com\"}";
    ok &= rel_call(&c, "POST", "/api/v1/profiles", g_fx.key, "application/json", pb, strlen(pb),
                   10000, &st) == VG_OK &&
          st == 201;
    rel_json_str(&c, "id", g_fx.profile, sizeof g_fx.profile);
    uint8_t *ref = NULL, *scan = NULL;
    size_t rl = 0, sl = 0;
    if (rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-256x256.jpg", 1 << 24, &ref, &rl) ==
            VG_OK &&
        rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-128x128.jpg", 1 << 24, &scan,
                      &sl) == VG_OK) {
        snprintf(path, sizeof path, "/api/v1/profiles/%s/references?kind=work&title=fuzz",
                 g_fx.profile);
        ok &= rel_call(&c, "POST", path, g_fx.key, "image/jpeg", ref, rl, 60000, &st) == VG_OK &&
              st == 201;
        rel_json_str(&c, "id", g_fx.reference, sizeof g_fx.reference);
        ok &= rel_call(&c, "POST", "/api/v1/analyze?source_url=https://x.example/a.jpg", g_fx.key,
                       "image/jpeg", scan, sl, 60000, &st) == VG_OK &&
              st == 201;
        json_t *j = rel_json(&c);
        const char *s = json_string_value(json_object_get(j, "scan_id"));
        const char *m = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "matches"), 0), "match_id"));
        snprintf(g_fx.scan, sizeof g_fx.scan, "%s", s ? s : "none");
        snprintf(g_fx.match, sizeof g_fx.match, "%s", m ? m : "none");
        json_decref(j);
        char nb[512];
        snprintf(nb, sizeof nb,
                 "{\"match_id\":\"%s\",\"infringing_url\":\"https://x.example/a.jpg\","
                 "\"recipient\":{\"name\":\"Abuse\",\"email\":\"abuse@x.example\"}}",
                 g_fx.match);
        if (rel_call(&c, "POST", "/api/v1/notices", g_fx.key, "application/json", nb, strlen(nb),
                     10000, &st) == VG_OK &&
            st == 201)
            rel_json_str(&c, "id", g_fx.notice, sizeof g_fx.notice);
    } else {
        ok = 0;
    }
    vg_free(ref);
    vg_free(scan);
    rel_conn_deinit(&c);
    if (!g_fx.notice[0])
        snprintf(g_fx.notice, sizeof g_fx.notice, "ntc_none");
    return ok ? 0 : -1;
}

static const char *ctype_of(const char *name)
{
    if (strstr(name, ".png"))
        return "image/png";
    if (strstr(name, ".webp"))
        return "image/webp";
    return "image/jpeg";
}

static void load_images(void)
{
    static const char *const dirs[] = {VG_SOURCE_DIR "/fuzz/corpus/fuzz_img_jpeg",
                                       VG_SOURCE_DIR "/fuzz/corpus/fuzz_img_png",
                                       VG_SOURCE_DIR "/fuzz/corpus/fuzz_img_webp"};
    for (size_t d = 0; d < VG_ARRAY_LEN(dirs); d++) {
        DIR *dh = opendir(dirs[d]);
        if (!dh)
            continue;
        for (struct dirent *e; (e = readdir(dh)) && g_nimgs < HF_MAX_SEEDS;) {
            if (e->d_name[0] == '.')
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            blob *b = &g_imgs[g_nimgs];
            if (rel_read_file(path, 1 << 20, &b->data, &b->len) == VG_OK && b->len) {
                b->ctype = ctype_of(e->d_name);
                g_nimgs++;
            }
        }
        closedir(dh);
    }
    /* sorted, so the generation does not depend on the directory order */
    for (size_t i = 1; i < g_nimgs; i++)
        for (size_t k = i;
             k > 0 && (g_imgs[k].len < g_imgs[k - 1].len ||
                       (g_imgs[k].len == g_imgs[k - 1].len &&
                        memcmp(g_imgs[k].data, g_imgs[k - 1].data, g_imgs[k].len) < 0));
             k--) {
            blob tmp = g_imgs[k];
            g_imgs[k] = g_imgs[k - 1];
            g_imgs[k - 1] = tmp;
        }
}

static void usage(void)
{
    fprintf(stderr, "usage: rel_httpfuzz --vigil PATH [--requests N] [--seed S] [--threads T]\n"
                    "                    [--deadline-ms D] [--max-seconds T] [--crash-dir DIR]\n"
                    "                    [--print I]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *vigil = NULL, *crash_dir = "httpfuzz-crashes";
    uint64_t max_s = 3600;
    long long print_i = -1;
    g_total = 20000;
    g_seed = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--vigil"))
            vigil = v;
        else if (!strcmp(a, "--requests"))
            g_total = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            g_seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            g_threads = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--deadline-ms"))
            g_deadline_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--max-seconds"))
            max_s = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--crash-dir"))
            crash_dir = v;
        else if (!strcmp(a, "--print"))
            print_i = atoll(v);
        else
            usage();
    }
    load_images();
    if (!g_nimgs) {
        fprintf(stderr, "rel_httpfuzz: no image seeds under " VG_SOURCE_DIR "/fuzz/corpus\n");
        return 2;
    }
    if (print_i >= 0) {
        snprintf(g_fx.admin, sizeof g_fx.admin, "va_admin");
        snprintf(g_fx.key, sizeof g_fx.key, "vk_key");
        bench_buf b;
        bench_buf_init(&b);
        gen((uint64_t)print_i, &b);
        fwrite(b.data, 1, b.len, stdout);
        bench_buf_deinit(&b);
        return 0;
    }
    if (!vigil || g_threads < 1 || g_threads > HF_MAX_THREADS)
        usage();
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_crash_dir, sizeof g_crash_dir, "%s", crash_dir);
    mkdir(g_crash_dir, 0755);
    char dir[] = "/tmp/vigil-httpfuzz-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    /* Sanitizer reports go to the server log; leaks are checked at the end. Keep an operator's
     * ASAN_OPTIONS but make sure leak detection is on. */
    const char *ao = getenv("ASAN_OPTIONS");
    char asan[512];
    snprintf(asan, sizeof asan, "%s%sdetect_leaks=1", ao ? ao : "", ao && *ao ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    static const char *const extra[] = {"--header-timeout",
                                        "1s",
                                        "--body-timeout",
                                        "1s",
                                        "--body-deadline",
                                        "5s",
                                        "--log-level",
                                        "error",
                                        "--max-body-bytes",
                                        "4MiB",
                                        "--shutdown-grace",
                                        "5s",
                                        NULL};
    rel_server_init(&g_srv, vigil, data, extra);
    for (unsigned t = 0; t < HF_MAX_THREADS; t++) {
        pthread_mutex_init(&g_rings[t].mu, NULL);
        for (unsigned k = 0; k < HF_RING; k++)
            bench_buf_init(&g_rings[t].in[k]);
    }
    char when[32];
    rel_utc_now(when, sizeof when);
    printf("rel_httpfuzz: %llu requests, seed %llu, %u threads, deadline %u ms, %zu image seeds, "
           "server %s, %s\n",
           (unsigned long long)g_total, (unsigned long long)g_seed, g_threads, g_deadline_ms,
           g_nimgs, vigil, when);
    fflush(stdout);
    uint64_t t0 = vg_now_ns();
    atomic_store(&g_end_ns, t0 + max_s * 1000000000ull);
    if (rel_server_start(&g_srv, HF_START_TIMEOUT_MS) || make_fixture(g_srv.port)) {
        fprintf(stderr, "rel_httpfuzz: could not start the server or create the fixture: %s\n",
                vg_err_msg());
        rel_server_stop(&g_srv, SIGKILL, 1000);
        printf("rel_httpfuzz: server log in %s\n", g_srv.log_path);
        return 1;
    }
    atomic_store(&g_port, g_srv.port);
    pthread_t th[HF_MAX_THREADS];
    for (unsigned t = 0; t < g_threads; t++)
        pthread_create(&th[t], NULL, fuzz_thread, (void *)(uintptr_t)t);
    unsigned crashes = 0, restarts = 0;
    uint64_t last_check = 0, last_print = 0;
    int sanitizer = 0;
    for (;;) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
        uint64_t sent = atomic_load(&g_st.sent);
        int finished =
            atomic_load(&g_next) >= g_total + g_threads || vg_now_ns() > atomic_load(&g_end_ns);
        int st = 0;
        int dead = !rel_server_alive(&g_srv, &st);
        if (!dead && (sent - last_check >= HF_CHECK_EVERY || finished)) {
            last_check = sent;
            char *log = rel_server_log(&g_srv, 1 << 20);
            if (sanitizer_report(log))
                dead = 1;
            vg_free(log);
        }
        if (dead) {
            atomic_store(&g_down, 1);
            crashes++;
            rel_server_stop(&g_srv, SIGKILL, 2000);
            save_crash(crashes);
            if (restarts++ >= HF_MAX_RESTARTS || rel_server_start(&g_srv, HF_START_TIMEOUT_MS) ||
                make_fixture(g_srv.port)) {
                atomic_store(&g_stop, 1);
                break;
            }
            atomic_store(&g_port, g_srv.port);
            atomic_store(&g_down, 0);
        }
        if (sent - last_print >= 100000) {
            last_print = sent;
            printf("rel_httpfuzz: %llu sent, %.0f s\n", (unsigned long long)sent,
                   (double)(vg_now_ns() - t0) / 1e9);
            fflush(stdout);
        }
        /* all threads past the end: every index was taken */
        if (atomic_load(&g_next) >= g_total + g_threads || vg_now_ns() > atomic_load(&g_end_ns))
            break;
    }
    for (unsigned t = 0; t < g_threads; t++)
        pthread_join(th[t], NULL);
    double secs = (double)(vg_now_ns() - t0) / 1e9;
    int live = g_srv.pid > 0 && live_ok(g_srv.port);
    /* leaks: LeakSanitizer reports when the process exits after SIGTERM */
    int exit_st = rel_server_stop(&g_srv, SIGTERM, 60000);
    char *log = rel_server_log(&g_srv, 1 << 20);
    int leak = log && strstr(log, "LeakSanitizer") != NULL;
    sanitizer = sanitizer_report(log);
    if (sanitizer || exit_st != 0) {
        char path[700];
        snprintf(path, sizeof path, "%s/exit-server.log", g_crash_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(log ? log : "", f);
            fclose(f);
        }
        fprintf(stderr, "rel_httpfuzz: server exit %d after SIGTERM; log:\n%.8000s\n", exit_st,
                log ? log : "");
    }
    vg_free(log);
    int fail = crashes || atomic_load(&g_st.hangs) || atomic_load(&g_st.malformed) || leak ||
               sanitizer || !live || exit_st != 0 || atomic_load(&g_st.sent) < g_total;
    printf("rel_httpfuzz: %s: %llu/%llu requests in %.1f s (%.0f/s), seed %llu: %llu answered "
           "(%llu 2xx, %llu 4xx, %llu 5xx of which %llu are 500 and %llu 503), %llu closed "
           "without an answer, %llu connection failures; %u crashes, %llu hangs, %llu malformed "
           "answers, leaks: %s, health/live at the end: %s, exit after SIGTERM: %d\n",
           fail ? "FAIL" : "PASS", (unsigned long long)atomic_load(&g_st.sent),
           (unsigned long long)g_total, secs, (double)atomic_load(&g_st.sent) / secs,
           (unsigned long long)g_seed, (unsigned long long)atomic_load(&g_st.answered),
           (unsigned long long)atomic_load(&g_st.s2xx), (unsigned long long)atomic_load(&g_st.s4xx),
           (unsigned long long)atomic_load(&g_st.s5xx), (unsigned long long)atomic_load(&g_st.s500),
           (unsigned long long)atomic_load(&g_st.s503),
           (unsigned long long)atomic_load(&g_st.closed),
           (unsigned long long)atomic_load(&g_st.conn_fail), crashes,
           (unsigned long long)atomic_load(&g_st.hangs),
           (unsigned long long)atomic_load(&g_st.malformed), leak ? "REPORTED" : "none",
           live ? "200" : "NO ANSWER", exit_st);
    for (int k = 0; k < 100; k++)
        if (atomic_load(&g_s5xx_by[k]))
            printf("rel_httpfuzz: status %d: %llu\n", 500 + k,
                   (unsigned long long)atomic_load(&g_s5xx_by[k]));
    if (!fail)
        bench_rmtree(dir);
    else
        printf("rel_httpfuzz: inputs in %s, server data in %s\n", g_crash_dir, dir);
    for (size_t i = 0; i < g_nimgs; i++)
        vg_free(g_imgs[i].data);
    return fail ? 1 : 0;
}
