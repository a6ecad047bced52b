/* bench_store: scan inserts per second on the analyze hot path (one scan with 2 matches per
 * call), one caller and N concurrent callers, at synchronous=FULL and NORMAL, plus the read
 * paths the API uses most (a scan by id, a page of 50 matches).
 *
 *   bench_store [--dir DIR | --database URL] [--seconds S] [--threads 1,8] [--sync full,normal]
 *   bench_store [--dir DIR | --database URL] --resolve REFS
 *
 * --resolve REFS measures only store_reference_resolve (what every analysis with matches pays
 * to turn the index's reference keys into ids): REFS references in one tenant (created by 8
 * threads), then the median and p99 of resolving n = 1, 10, 100, 1000 random keys of them.
 *
 * Each configuration gets a fresh database in DIR (default: a new directory under /tmp, which
 * must be on a real disk for FULL to mean anything) and runs for S seconds (default 3). Output
 * is a Markdown table on stdout. With --database postgresql://... the store runs on PostgreSQL
 * instead, and each configuration starts from an empty public schema of that database (which
 * the benchmark wipes: give it a database of its own). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/core.h"
#include "store/store.h"

typedef struct worker {
    store *st;
    const char *tenant, *profile, *ref;
    uint64_t deadline_ns;
    unsigned seed;
    size_t n;
    uint64_t *lat_ns; /* per insert, up to cap */
    size_t cap;
    int errors;
} worker;

static void *insert_main(void *arg)
{
    worker *w = arg;
    uint8_t sha[32], pdq[32];
    memset(pdq, 0x5a, sizeof pdq);
    store_match_new m[2] = {{w->profile, w->ref, VG_MATCH_PDQ, 9, 0.93, 0, -1, NULL, NULL, NULL},
                            {w->profile, w->ref, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL}};
    store_scan_new s = {.sha256 = sha,
                        .source_url = "https://cdn.example.com/images/2026/11/abcdef.jpg",
                        .pdq = pdq,
                        .pdq_quality = 92,
                        .faces_json = "[{\"box\":[10,20,64,64],\"score\":0.98}]",
                        .timings_json = "{\"decode_us\":2100,\"pdq_us\":900,\"total_us\":3400}",
                        .level = "balanced",
                        .n_matches = 2,
                        .matches = m};
    while (vg_now_ns() < w->deadline_ns) {
        for (int i = 0; i < 32; i++)
            sha[i] = (uint8_t)((w->seed + w->n) >> (8 * (i % 4)));
        char id[STORE_ID_MAX], mids[2][STORE_ID_MAX];
        uint64_t t0 = vg_now_ns();
        if (store_scan_insert(w->st, w->tenant, &s, id, mids) != 0) {
            w->errors++;
            continue;
        }
        if (w->n < w->cap)
            w->lat_ns[w->n] = vg_now_ns() - t0;
        w->n++;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void rm_db(const char *path)
{
    if (strncmp(path, "postgres", 8) == 0) {
        PGconn *c = PQconnectdb(path);
        PGresult *r = PQexec(c, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
                                "CREATE SCHEMA public");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fprintf(stderr, "bench_store: cannot empty %s: %s", path, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return;
    }
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

typedef struct fixture {
    store *st;
    char tenant[STORE_ID_MAX], profile[STORE_ID_MAX], ref[STORE_ID_MAX];
} fixture;

static int open_fixture(const char *path, store_sync sync, fixture *fx)
{
    rm_db(path);
    store_config c;
    store_config_default(&c);
    c.path = path;
    c.synchronous = sync;
    if (store_open(&c, &fx->st))
        return -1;
    store_profile_fields pf = {.name = "Bench", .email = "b@example.com"};
    uint8_t sha[32] = {1}, pdq[32] = {2};
    store_reference_new r = {
        .kind = STORE_REF_WORK, .title = "t", .sha256 = sha, .pdq = pdq, .pdq_quality = 90};
    if (store_tenant_create(fx->st, "bench", STORE_TENANT_AGENCY, fx->tenant) ||
        store_profile_create(fx->st, fx->tenant, &pf, fx->profile))
        return -1;
    r.profile_id = fx->profile;
    return store_reference_create(fx->st, fx->tenant, &r, fx->ref, NULL);
}

static void run_inserts(const char *path, store_sync sync, int threads, double seconds)
{
    fixture fx;
    if (open_fixture(path, sync, &fx)) {
        fprintf(stderr, "bench_store: %s\n", vg_err_msg());
        exit(1);
    }
    store_stats before;
    store_stats_get(fx.st, &before);
    worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    size_t cap = 2000000;
    uint64_t t0 = vg_now_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){fx.st,
                        fx.tenant,
                        fx.profile,
                        fx.ref,
                        t0 + (uint64_t)(seconds * 1e9),
                        (unsigned)i << 24,
                        0,
                        malloc(cap * sizeof(uint64_t)),
                        cap,
                        0};
        pthread_create(&th[i], NULL, insert_main, &w[i]);
    }
    size_t total = 0, nl = 0;
    int errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double el = (double)(vg_now_ns() - t0) / 1e9;
    store_stats after;
    store_stats_get(fx.st, &after);
    uint64_t *all = malloc(total * sizeof *all);
    for (int i = 0; i < threads; i++) {
        size_t k = w[i].n < cap ? w[i].n : cap;
        memcpy(all + nl, w[i].lat_ns, k * sizeof *all);
        nl += k;
        free(w[i].lat_ns);
    }
    qsort(all, nl, sizeof *all, cmp_u64);
    uint64_t commits = after.commits - before.commits;
    printf("| %s | %d | %zu | %.0f | %.3f | %.3f | %.1f | %d |\n",
           sync == STORE_SYNC_FULL ? "FULL" : "NORMAL", threads, total, (double)total / el,
           nl ? (double)all[nl / 2] / 1e6 : 0.0, nl ? (double)all[nl * 99 / 100] / 1e6 : 0.0,
           commits ? (double)(after.write_ops - before.write_ops) / (double)commits : 0.0, errors);
    fflush(stdout);
    free(all);
    free(w);
    free(th);
    store_close(fx.st);
    rm_db(path);
}

/* Reads: a scan by id (with its 2 matches) and a 50-row page of matches, one thread. */
static void run_reads(const char *path, double seconds)
{
    fixture fx;
    if (open_fixture(path, STORE_SYNC_NORMAL, &fx)) {
        fprintf(stderr, "bench_store: %s\n", vg_err_msg());
        exit(1);
    }
    enum { N = 20000 };
    static char ids[N][STORE_ID_MAX];
    for (int i = 0; i < N; i++) {
        uint8_t sha[32] = {(uint8_t)i, (uint8_t)(i >> 8)};
        store_match_new m[2] = {
            {fx.profile, fx.ref, VG_MATCH_PDQ, 9, 0.93, 0, -1, NULL, NULL, NULL},
            {fx.profile, fx.ref, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL}};
        store_scan_new s = {.sha256 = sha, .n_matches = 2, .matches = m};
        if (store_scan_insert(fx.st, fx.tenant, &s, ids[i], NULL))
            exit(1);
    }
    vg_arena *a = vg_arena_new(0);
    uint64_t t0 = vg_now_ns(), end = t0 + (uint64_t)(seconds * 1e9 / 2);
    size_t n = 0;
    while (vg_now_ns() < end) {
        store_scan sc;
        if (store_scan_get(fx.st, fx.tenant, ids[(n * 7919) % N], a, &sc))
            exit(1);
        vg_arena_reset(a);
        n++;
    }
    double get_us = (double)(vg_now_ns() - t0) / 1e3 / (double)n;
    t0 = vg_now_ns();
    end = t0 + (uint64_t)(seconds * 1e9 / 2);
    size_t pages = 0;
    char cursor[STORE_ID_MAX] = "";
    while (vg_now_ns() < end) {
        store_list_opts o = {.profile_id = fx.profile, .cursor = cursor[0] ? cursor : NULL};
        store_match *items;
        store_page pg;
        if (store_match_list(fx.st, fx.tenant, &o, a, &items, &pg))
            exit(1);
        memcpy(cursor, pg.next_cursor, STORE_ID_MAX);
        vg_arena_reset(a);
        pages++;
    }
    double page_us = (double)(vg_now_ns() - t0) / 1e3 / (double)pages;
    printf("\n| read (1 thread, %d scans stored) | mean us |\n|---|---|\n", N);
    printf("| store_scan_get (scan + 2 matches) | %.1f |\n", get_us);
    printf("| store_match_list (page of 50, by profile, walking the cursor) | %.1f |\n", page_us);
    vg_arena_free(a);
    store_close(fx.st);
    rm_db(path);
}

typedef struct ref_maker {
    store *st;
    const char *tenant, *profile;
    size_t from, to; /* references [from, to) */
    int64_t *keys;   /* keys[i] of reference i */
    int rc;
} ref_maker;

static void *make_refs_main(void *arg)
{
    ref_maker *m = arg;
    for (size_t i = m->from; i < m->to && !m->rc; i++) {
        uint8_t sha[32] = {0}, pdq[32];
        memcpy(sha, &i, sizeof i);
        sha[31] = 0xee; /* not the fixture's reference */
        memset(pdq, (int)(i & 0xff), sizeof pdq);
        store_reference_new r = {.profile_id = m->profile,
                                 .kind = STORE_REF_WORK,
                                 .title = "t",
                                 .sha256 = sha,
                                 .pdq = pdq,
                                 .pdq_quality = 90};
        char id[STORE_ID_MAX];
        m->rc = store_reference_create(m->st, m->tenant, &r, id, &m->keys[i]);
    }
    return NULL;
}

/* store_reference_resolve of n random keys of n_refs references, one thread. */
static void run_resolve(const char *path, size_t n_refs)
{
    fixture fx;
    if (open_fixture(path, STORE_SYNC_NORMAL, &fx)) {
        fprintf(stderr, "bench_store: %s\n", vg_err_msg());
        exit(1);
    }
    enum { MAKERS = 8 };
    int64_t *keys = calloc(n_refs, sizeof *keys);
    ref_maker mk[MAKERS];
    pthread_t th[MAKERS];
    uint64_t t0 = vg_now_ns();
    for (int i = 0; i < MAKERS; i++) {
        mk[i] = (ref_maker){fx.st,
                            fx.tenant,
                            fx.profile,
                            n_refs * (size_t)i / MAKERS,
                            n_refs * (size_t)(i + 1) / MAKERS,
                            keys,
                            0};
        pthread_create(&th[i], NULL, make_refs_main, &mk[i]);
    }
    for (int i = 0; i < MAKERS; i++) {
        pthread_join(th[i], NULL);
        if (mk[i].rc) {
            fprintf(stderr, "bench_store: reference create: %s\n", vg_strerror(mk[i].rc));
            exit(1);
        }
    }
    printf("resolve: %zu references created in %.1f s\n\n", n_refs,
           (double)(vg_now_ns() - t0) / 1e9);
    printf("| keys per call | calls | median us | p99 us | us per key (median) |\n"
           "|---|---|---|---|---|\n");
    static const size_t NS[] = {1, 10, 100, 1000};
    int64_t *q = malloc(STORE_RESOLVE_MAX * sizeof *q);
    store_ref_brief *out = malloc(STORE_RESOLVE_MAX * sizeof *out);
    uint64_t *lat = malloc(2000 * sizeof *lat);
    uint64_t rnd = 88172645463325252ull;
    for (size_t k = 0; k < sizeof NS / sizeof NS[0]; k++) {
        size_t n = NS[k], calls = n >= 1000 ? 500 : 2000;
        for (size_t c = 0; c < calls; c++) {
            for (size_t i = 0; i < n; i++) {
                rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17; /* xorshift64 */
                q[i] = keys[rnd % n_refs];
            }
            uint64_t s0 = vg_now_ns();
            if (store_reference_resolve(fx.st, fx.tenant, q, n, out) || !out[0].found) {
                fprintf(stderr, "bench_store: resolve: %s\n", vg_err_msg());
                exit(1);
            }
            lat[c] = vg_now_ns() - s0;
        }
        qsort(lat, calls, sizeof *lat, cmp_u64);
        printf("| %zu | %zu | %.1f | %.1f | %.2f |\n", n, calls, (double)lat[calls / 2] / 1e3,
               (double)lat[calls * 99 / 100] / 1e3, (double)lat[calls / 2] / 1e3 / (double)n);
    }
    free(q);
    free(out);
    free(lat);
    free(keys);
    store_close(fx.st);
    rm_db(path);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *threads = "1,8", *syncs = "full,normal", *database = NULL;
    double seconds = 3;
    size_t resolve_refs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--database") && i + 1 < argc)
            database = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = argv[++i];
        else if (!strcmp(argv[i], "--sync") && i + 1 < argc)
            syncs = argv[++i];
        else if (!strcmp(argv[i], "--resolve") && i + 1 < argc && atol(argv[i + 1]) > 0)
            resolve_refs = (size_t)atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_store [--dir DIR | --database URL] [--seconds S] "
                            "[--threads 1,8] [--sync full,normal] | [--resolve REFS]\n");
            return 2;
        }
    }
    vg_log_set_level(VG_LOG_WARN);
    char tmp[64];
    if (!dir) {
        snprintf(tmp, sizeof tmp, "/tmp/vigil-bench-store-XXXXXX");
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmp;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/bench.db", dir);
    struct statfs sf;
    const char *fs = "unknown";
    if (database) {
        snprintf(path, sizeof path, "%s", database);
        fs = "PostgreSQL";
    } else if (statfs(dir, &sf) == 0)
        fs = sf.f_type == 0x01021994   ? "tmpfs (fsync is free: FULL numbers are meaningless)"
             : sf.f_type == 0xEF53     ? "ext2/3/4"
             : sf.f_type == 0x58465342 ? "xfs"
                                       : "other";
    if (resolve_refs) {
        printf("bench_store: %s on %s\n", dir, fs);
        run_resolve(path, resolve_refs);
        if (dir == tmp)
            rmdir(tmp);
        return 0;
    }
    printf("bench_store: %s on %s, %.1f s per row, scans with 2 matches each\n\n", dir, fs,
           seconds);
    printf("| synchronous | callers | scans | scans/s | p50 ms | p99 ms | scans per commit | "
           "errors |\n|---|---|---|---|---|---|---|---|\n");
    char sbuf[64], tbuf[64];
    snprintf(sbuf, sizeof sbuf, "%s", syncs);
    for (char *sp = NULL, *s = strtok_r(sbuf, ",", &sp); s; s = strtok_r(NULL, ",", &sp)) {
        store_sync sync = !strcmp(s, "normal") ? STORE_SYNC_NORMAL : STORE_SYNC_FULL;
        snprintf(tbuf, sizeof tbuf, "%s", threads);
        for (char *tp = NULL, *t = strtok_r(tbuf, ",", &tp); t; t = strtok_r(NULL, ",", &tp))
            run_inserts(path, sync, atoi(t), seconds);
    }
    run_reads(path, seconds);
    if (dir == tmp)
        rmdir(tmp);
    return 0;
}
