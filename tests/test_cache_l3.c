/* cache L3 against a real redis-server: round trips, TTL, corrupt values, async puts, tier fill,
 * and Redis stopped mid-test (requests still succeed, the breaker opens, latency stays bounded)
 * then started again (the cache reconnects). Also a "hung Redis" (a socket that accepts and never
 * answers) for the command timeout.
 *
 * Which Redis: `make test` exports VIGIL_TEST_REDIS_URL and VIGIL_TEST_REDIS_CTL (stop|start).
 * Without them this test starts its own redis-server on a free loopback port, or skips with a
 * message when redis-server is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache/cache_int.h"
#include "core/core.h"

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Test-process state, owned by the main thread. */
typedef struct redis_env {
    char url[512];
    char host[256];
    int port;
    const char *ctl; /* VIGIL_TEST_REDIS_CTL, or NULL when we run our own */
    pid_t own_pid;   /* our redis-server, 0 if none */
    char prefix[64]; /* per-process key prefix: runs never see each other's keys */
    int stopped;     /* we stopped it and have not started it again */
} redis_env;

static redis_env env;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0) {
        close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

static int redis_ping(void)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout(env.host, env.port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static int own_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", env.port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    env.own_pid = pid;
    for (int i = 0; i < 100; i++) {
        if (redis_ping())
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            env.own_pid = 0;
            return -1;
        }
        sleep_ms(50);
    }
    return -1;
}

static void own_stop(void)
{
    if (env.own_pid > 0) {
        kill(env.own_pid, SIGTERM);
        waitpid(env.own_pid, NULL, 0);
        env.own_pid = 0;
    }
}

static void redis_stop(void)
{
    env.stopped = 1;
    if (env.ctl) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s stop", env.ctl);
        assert_int_equal(system(cmd), 0);
    } else {
        own_stop();
    }
}

static void redis_start(void)
{
    env.stopped = 0;
    if (env.ctl) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s start", env.ctl);
        assert_int_equal(system(cmd), 0);
    } else {
        assert_int_equal(own_start(), 0);
    }
}

static int have_redis_server(void)
{
    return system("command -v redis-server >/dev/null 2>&1") == 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(env.prefix, sizeof env.prefix, "vigil:test:%d:", (int)getpid());
    const char *url = getenv("VIGIL_TEST_REDIS_URL");
    if (url && *url) {
        cache_l3_url u;
        if (cache__l3_parse_url(url, &u) != VG_OK)
            return -1;
        snprintf(env.url, sizeof env.url, "%s", url);
        snprintf(env.host, sizeof env.host, "%s", u.host);
        env.port = u.port;
        env.ctl = getenv("VIGIL_TEST_REDIS_CTL");
        if (env.ctl && !*env.ctl)
            env.ctl = NULL;
        if (!env.ctl) {
            fprintf(stderr,
                    "test_cache_l3: VIGIL_TEST_REDIS_CTL not set, outage tests will skip\n");
        }
        return 0;
    }
    if (!have_redis_server()) {
        fprintf(stderr, "test_cache_l3: SKIPPED: no VIGIL_TEST_REDIS_URL and redis-server is not "
                        "installed\n");
        return 0;
    }
    snprintf(env.host, sizeof env.host, "127.0.0.1");
    env.port = free_port();
    snprintf(env.url, sizeof env.url, "redis://127.0.0.1:%d", env.port);
    if (own_start() != 0) {
        fprintf(stderr, "test_cache_l3: could not start redis-server on port %d\n", env.port);
        return -1;
    }
    fprintf(stderr, "test_cache_l3: started redis-server on port %d\n", env.port);
    return 0;
}

/* A failed assertion leaves the test early: never leave the shared Redis stopped for the tests
 * that run after this one. */
static int restart_if_stopped(void **state)
{
    (void)state;
    if (env.stopped)
        redis_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    own_stop();
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!env.url[0])                                                                           \
            skip();                                                                                \
    } while (0)

static cache_key key_n(uint32_t n)
{
    uint8_t sha[32] = {0};
    memcpy(sha, &n, sizeof n);
    cache_key k;
    assert_int_equal(cache_key_make(sha, "l3-test", 2, &k), VG_OK);
    return k;
}

static void l3_config(cache_config *cfg)
{
    cache_config_init(cfg);
    cfg->l1_max_entries = 0;
    cfg->l3_url = env.url;
    cfg->l3_prefix = env.prefix;
    cfg->l3_breaker_failures = 3;
    cfg->l3_breaker_backoff_ms = 200;
    cfg->l3_breaker_backoff_max_ms = 400;
    /* Generous timeouts: tests of what L3 stores must not see a miss because a loaded CI
     * machine let a reply take longer than the production 20 ms (seen: test_corrupt_value_dropped
     * counted 1 corrupt value of 2 under load average 6). Tests of the timeouts set their own. */
    cfg->l3_connect_timeout_ms = 2000;
    cfg->l3_command_timeout_ms = 2000;
}

/* Raw hiredis access for checks from the outside. */
static redisReply *raw(const char *fmt, const char *key)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout(env.host, env.port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, fmt, key);
    redisFree(c);
    return r;
}

static void full_key(const cache_key *k, char *out, size_t n)
{
    char hex[65];
    cache_key_hex(k, hex);
    snprintf(out, n, "%s%s", env.prefix, hex);
}

/* ---- no Redis needed ------------------------------------------------------------------------ */

static void test_parse_url(void **state)
{
    (void)state;
    cache_l3_url u;
    assert_int_equal(cache__l3_parse_url("redis://127.0.0.1:6380/2", &u), VG_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.password, "");
    assert_int_equal(cache__l3_parse_url("redis://cachehost", &u), VG_OK);
    assert_string_equal(u.host, "cachehost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(cache__l3_parse_url("redis://:s3cr@t@h:1/", &u), VG_OK);
    assert_string_equal(u.password, "s3cr@t");
    assert_string_equal(u.user, "");
    assert_string_equal(u.host, "h");
    assert_int_equal(cache__l3_parse_url("redis://alice:pw@h", &u), VG_OK);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "pw");
    assert_int_equal(cache__l3_parse_url("redis://pw@h", &u), VG_OK);
    assert_string_equal(u.password, "pw");
    assert_int_equal(cache__l3_parse_url("redis://[::1]:7000", &u), VG_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    const char *bad[] = {"rediss://h",      "http://h",      "redis://",    "redis://h:0",
                         "redis://h:99999", "redis://h:12x", "redis://h/x", "redis://[::1",
                         "redis://[::1]x",  "redis://:pw@",  NULL,          "redis://h:"};
    for (size_t i = 0; i < VG_ARRAY_LEN(bad); i++)
        assert_int_equal(cache__l3_parse_url(bad[i], &u), VG_EINVAL);
}

/* A hung Redis: the kernel completes the handshake into the backlog, nobody ever answers. Every
 * call costs at most the command timeout until the breaker opens; then calls cost nothing. */
static void test_hung_redis_times_out(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 64), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));

    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l1_max_entries = 0;
    cfg.l3_url = url;
    cfg.l3_async_put = 0;
    cfg.l3_breaker_failures = 3;
    cfg.l3_breaker_backoff_ms = 60000; /* stays open for the rest of this test */
    cfg.l3_breaker_backoff_max_ms = 60000;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(1);
    uint64_t worst = 0;
    for (int i = 0; i < 3; i++) {
        cache_val *v = NULL;
        uint64_t t0 = vg_now_ns();
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
        uint64_t dt = vg_now_ns() - t0;
        worst = dt > worst ? dt : worst;
    }
    /* Each call waited about the command timeout (20 ms), never much more. Loose bound: the
     * machine is shared, and ASan slows everything. */
    assert_true(worst >= 15 * 1000000ull);
    assert_true(worst < 500 * 1000000ull);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.l3_breaker, CACHE_BREAKER_OPEN);
    assert_int_equal(st.l3_breaker_opens, 1);
    assert_int_equal(st.tier[CACHE_TIER_L3].errors, 3);

    /* Open breaker: a hundred calls cost far less than one timeout. */
    uint64_t t0 = vg_now_ns();
    for (int i = 0; i < 100; i++) {
        cache_val *v = NULL;
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
        assert_int_equal(cache_put(c, &k, "x", 1), VG_OK);
    }
    assert_true(vg_now_ns() - t0 < 20 * 1000000ull);
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L3].skipped, 200);
    cache_close(c);

    /* Async puts against the hung Redis: the writer is stuck in its timeouts, yet puts return at
     * once; what does not fit the writer's queue is dropped and counted. */
    cfg.l3_async_put = 1;
    cfg.async_queue = 2;
    cfg.l3_breaker_failures = 1000;
    cfg.l3_command_timeout_ms = 200;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    uint64_t put_worst = 0;
    for (uint32_t i = 0; i < 10; i++) {
        cache_key kk = key_n(50 + i);
        uint64_t p0 = vg_now_ns();
        assert_int_equal(cache_put(c, &kk, "v", 1), VG_OK);
        uint64_t dt = vg_now_ns() - p0;
        put_worst = dt > put_worst ? dt : put_worst;
    }
    assert_true(put_worst < 100 * 1000000ull); /* never the 200 ms command timeout */
    cache_stats_get(c, &st);
    assert_true(st.tier[CACHE_TIER_L3].dropped >= 5); /* 1 in the writer, 2 queued, rest dropped */
    assert_true(st.async_pending >= 1);
    cache_close(c); /* drains: the queued writes time out one by one */
    close(s);
}

/* Nothing listening at all: connection refused is immediate, same breaker behaviour. */
static void test_refused_redis(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
    cache_config cfg;
    cache_config_init(&cfg);
    cfg.l3_url = url;
    cfg.l3_breaker_failures = 2;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(2);
    for (int i = 0; i < 5; i++) {
        cache_val *v;
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
    }
    /* The put is served by L1 though Redis is down. */
    assert_int_equal(cache_put(c, &k, "abc", 3), VG_OK);
    cache_val *v;
    cache_tier tier;
    assert_int_equal(cache_get(c, &k, &v, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L1);
    cache_val_unref(v);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.l3_breaker, CACHE_BREAKER_OPEN);
    assert_int_equal(st.tier[CACHE_TIER_L3].errors, 2);
    assert_true(st.tier[CACHE_TIER_L3].skipped >= 3);
    cache_close(c);
}

/* ---- against redis-server ------------------------------------------------------------------- */

static void test_roundtrip_ttl_sync(void **state)
{
    (void)state;
    NEED_REDIS();
    cache_config cfg;
    l3_config(&cfg);
    cfg.l3_async_put = 0;
    cfg.l3_ttl_s = 120;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(10);
    uint8_t buf[70000]; /* a features blob with many faces */
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    cache_val *v = NULL;
    cache_tier tier;
    assert_int_equal(cache_get(c, &k, &v, &tier), VG_ENOTFOUND);
    assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
    assert_int_equal(cache_get(c, &k, &v, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L3);
    assert_int_equal(cache_val_len(v), sizeof buf);
    assert_memory_equal(cache_val_data(v), buf, sizeof buf);
    cache_val_unref(v);

    char fk[160];
    full_key(&k, fk, sizeof fk);
    redisReply *r = raw("TTL %s", fk);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 0 && r->integer <= 120);
    freeReplyObject(r);

    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L3].hits, 1);
    assert_int_equal(st.tier[CACHE_TIER_L3].misses, 1);
    assert_int_equal(st.tier[CACHE_TIER_L3].puts, 1);
    assert_int_equal(st.l3_breaker, CACHE_BREAKER_CLOSED);

    cache_remove(c, &k);
    assert_int_equal(cache_get(c, &k, &v, &tier), VG_ENOTFOUND);
    cache_close(c);
}

static void test_corrupt_value_dropped(void **state)
{
    (void)state;
    NEED_REDIS();
    cache_config cfg;
    l3_config(&cfg);
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(11);
    char fk[160];
    full_key(&k, fk, sizeof fk);
    /* Garbage under our key (another writer, a bad version, a bit flip). */
    redisReply *r = raw("SET %s garbage-not-an-entry", fk);
    freeReplyObject(r);
    cache_val *v = NULL;
    assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
    assert_null(v);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L3].corrupt, 1);
    r = raw("EXISTS %s", fk);
    assert_int_equal(r->integer, 0); /* deleted */
    freeReplyObject(r);

    /* A valid entry for another key copied under ours is refused too. */
    cache_key other = key_n(12);
    cfg.l3_async_put = 0;
    cache *c2;
    assert_int_equal(cache_open(&cfg, &c2), VG_OK);
    assert_int_equal(cache_put(c2, &other, "other", 5), VG_OK);
    char fo[160];
    full_key(&other, fo, sizeof fo);
    struct timeval tv = {1, 0};
    redisContext *rc = redisConnectWithTimeout(env.host, env.port, tv);
    r = redisCommand(rc, "COPY %s %s REPLACE", fo, fk);
    freeReplyObject(r);
    redisFree(rc);
    assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L3].corrupt, 2);
    cache_remove(c2, &other);
    cache_close(c2);
    cache_close(c);
}

static void test_async_put_and_fill(void **state)
{
    (void)state;
    NEED_REDIS();
    cache_config cfg;
    l3_config(&cfg);
    cfg.l1_max_entries = 100; /* L1 + L3 */
    cache *writer, *reader;
    assert_int_equal(cache_open(&cfg, &writer), VG_OK);
    assert_int_equal(cache_open(&cfg, &reader), VG_OK); /* another node sharing Redis */
    enum { N = 50 };
    for (uint32_t i = 0; i < N; i++) {
        char val[32];
        int n = snprintf(val, sizeof val, "value-%u", (unsigned)i);
        cache_key k = key_n(100 + i);
        assert_int_equal(cache_put(writer, &k, val, (size_t)n), VG_OK);
    }
    /* cache_close drains the writer; flush through the internals is not public, so close. */
    cache_close(writer);
    for (uint32_t i = 0; i < N; i++) {
        cache_key k = key_n(100 + i);
        cache_val *v;
        cache_tier tier;
        assert_int_equal(cache_get(reader, &k, &v, &tier), VG_OK);
        assert_int_equal(tier, CACHE_TIER_L3);
        char want[32];
        int n = snprintf(want, sizeof want, "value-%u", (unsigned)i);
        assert_int_equal(cache_val_len(v), (size_t)n);
        assert_memory_equal(cache_val_data(v), want, (size_t)n);
        cache_val_unref(v);
        /* The hit filled L1. */
        assert_int_equal(cache_get(reader, &k, &v, &tier), VG_OK);
        assert_int_equal(tier, CACHE_TIER_L1);
        cache_val_unref(v);
        cache_remove(reader, &k);
    }
    cache_close(reader);
}

/* Redis stopped mid-test: every request still succeeds (a miss from L3, L1 still serves), no call
 * costs more than the timeouts, the breaker opens and stops paying them; Redis started again: the
 * cache reconnects by itself. */
static void test_outage_and_recovery(void **state)
{
    (void)state;
    NEED_REDIS();
    if (!env.ctl && env.own_pid == 0) {
        fprintf(stderr, "test_cache_l3: cannot stop this Redis (no VIGIL_TEST_REDIS_CTL)\n");
        skip();
    }
    cache_config cfg;
    l3_config(&cfg);
    cfg.l1_max_entries = 100;
    cfg.l3_connect_timeout_ms = CACHE_DEFAULT_L3_CONNECT_TIMEOUT_MS; /* the bounds checked below */
    cfg.l3_command_timeout_ms = CACHE_DEFAULT_L3_COMMAND_TIMEOUT_MS;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_key k = key_n(20), k2 = key_n(21);
    assert_int_equal(cache_put(c, &k, "before", 6), VG_OK);
    cache_close(c); /* drains the async writer */
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    cache_val *v;
    cache_tier tier;
    assert_int_equal(cache_get(c, &k, &v, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L3);
    cache_val_unref(v);

    redis_stop();

    uint64_t worst = 0;
    for (int i = 0; i < 40; i++) {
        cache_key kk = key_n(1000 + (uint32_t)i);
        uint64_t t0 = vg_now_ns();
        assert_int_equal(cache_get(c, &kk, &v, &tier), VG_ENOTFOUND);
        assert_int_equal(cache_put(c, &kk, "x", 1), VG_OK);
        uint64_t dt = vg_now_ns() - t0;
        worst = dt > worst ? dt : worst;
        /* L1 keeps serving what it has. */
        assert_int_equal(cache_get(c, &k, &v, &tier), VG_OK);
        assert_int_equal(tier, CACHE_TIER_L1);
        cache_val_unref(v);
    }
    /* connect (50 ms) + command (20 ms) timeouts bound any call; loose for a shared machine. */
    assert_true(worst < 400 * 1000000ull);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_not_equal(st.l3_breaker, CACHE_BREAKER_CLOSED);
    assert_true(st.l3_breaker_opens >= 1);
    assert_true(st.tier[CACHE_TIER_L3].errors >= 3);
    assert_true(st.tier[CACHE_TIER_L3].skipped >= 20); /* the breaker spared most calls */
    uint64_t reconnects_before = st.l3_reconnects;

    redis_start();

    /* Back-off is 200..400 ms here: within a few seconds L3 works again. */
    int back = 0;
    for (int i = 0; i < 200 && !back; i++) {
        /* k2 is in no tier: each get reaches L3 (or is skipped while the breaker is open). */
        assert_int_equal(cache_get(c, &k2, &v, &tier), VG_ENOTFOUND);
        sleep_ms(25);
        cache_stats_get(c, &st);
        back = st.l3_breaker == CACHE_BREAKER_CLOSED && st.l3_reconnects > reconnects_before;
    }
    assert_true(back);
    /* A fresh round trip through Redis works. */
    cache_key k3 = key_n(22);
    cache_config cfg2 = cfg;
    cfg2.l1_max_entries = 0;
    cfg2.l3_async_put = 0;
    cache *c2;
    assert_int_equal(cache_open(&cfg2, &c2), VG_OK);
    assert_int_equal(cache_put(c2, &k3, "again", 5), VG_OK);
    assert_int_equal(cache_get(c, &k3, &v, &tier), VG_OK);
    assert_int_equal(tier, CACHE_TIER_L3);
    assert_memory_equal(cache_val_data(v), "again", 5);
    cache_val_unref(v);
    cache_remove(c2, &k3);
    cache_remove(c2, &k);
    cache_close(c2);
    cache_close(c);
}

/* Erasure: cache_remove takes a value out of every tier, Redis included, also when its
 * background writes were still queued (they must not land after the removal). */
static void test_remove_erases_every_tier(void **state)
{
    (void)state;
    NEED_REDIS();
    char dir[] = "/tmp/vigil-test-l3-erase.XXXXXX";
    assert_non_null(mkdtemp(dir));
    cache_config cfg;
    l3_config(&cfg);
    cfg.l1_max_entries = 100;
    cfg.l2_dir = dir;
    cache *c;
    assert_int_equal(cache_open(&cfg, &c), VG_OK);
    uint8_t buf[3000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 13 + 5);
    for (uint32_t n = 0; n < 20; n++) {
        cache_key k = key_n(700 + n);
        assert_int_equal(cache_put(c, &k, buf, sizeof buf), VG_OK);
        if (n % 2)
            cache_flush(c); /* odd keys: every tier has it; even keys: writes still queued */
        cache_remove(c, &k);
    }
    cache_flush(c);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.tier[CACHE_TIER_L1].entries, 0);
    assert_int_equal(st.tier[CACHE_TIER_L2].entries, 0);
    for (uint32_t n = 0; n < 20; n++) {
        cache_key k = key_n(700 + n);
        char fk[160];
        full_key(&k, fk, sizeof fk);
        redisReply *r = raw("EXISTS %s", fk);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        if (r->integer != 0)
            fail_msg("key %u is still in Redis after cache_remove", (unsigned)n);
        freeReplyObject(r);
        cache_val *v;
        assert_int_equal(cache_get(c, &k, &v, NULL), VG_ENOTFOUND);
    }
    cache_close(c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_hung_redis_times_out),
        cmocka_unit_test(test_refused_redis),
        cmocka_unit_test(test_roundtrip_ttl_sync),
        cmocka_unit_test(test_corrupt_value_dropped),
        cmocka_unit_test(test_async_put_and_fill),
        cmocka_unit_test(test_remove_erases_every_tier),
        cmocka_unit_test_teardown(test_outage_and_recovery, restart_if_stopped),
    };
    vg_log_set_level(VG_LOG_WARN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
