/* bench_index_scale: the match index at scale (issue 11, section 4), printed as Markdown
 * (bench/index_scale.sh writes it to bench/results/index_scale.md).
 *
 * Targets, for 10 million PDQ hashes in one node: the index loads from the store in <= 10 s
 * (the real path: store_open, index_new, catalog_open walking the SQLite store), holds <= 1 GB
 * of RSS, answers a query (the 8 dihedral hashes of one image, threshold 31, the server's
 * max_results) in <= 5 ms at P99, and its RSS stays flat across 20 full reloads.
 *
 * The store is written once per data set with SQLite directly (one transaction, secondary
 * indexes dropped and rebuilt after the insert): the store's own write path commits one
 * reference per call, which would take hours at 10M, and is not what is measured. Everything
 * measured goes through the public store, index and catalog calls the server makes.
 *
 * Data: hash i is derived from (seed, i) alone, so queries can be made without keeping the hashes.
 * References come in groups of 10: members 1..3 of a group are near-duplicates of member 0
 * (distance 4..31, another photo of the same work), the rest are random. Half of the queries
 * are hits (a stored hash with 0..20 bits flipped, as variant 0 or, every 4th query, as a random
 * variant; the 7 other variants random), half misses (8 random hashes). Every hit query must
 * find the reference it was made from, or the program fails.
 *
 * Usage: bench_index_scale [--hashes N] [--tenants T] [--queries Q] [--reloads R] [--dir D]
 *                          [--keep]
 *   --hashes   references, one PDQ hash each (default 1000000)
 *   --tenants  spread round-robin over T tenants (default 1)
 *   --queries  timed queries (default 2000)
 *   --reloads  full reloads (catalog_close + index_free, index_new + catalog_open; default 20)
 *   --dir      where the database lives (default: a new directory under $TMPDIR or /tmp,
 *              removed at exit); with --keep an existing database of the same N and T is reused
 */
#include "catalog/catalog.h"
#include "core/core.h"
#include "index/index.h"
#include "store/store.h"
#include "../tests/support/vgt_random.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED 0x5ca1ab1eull
#define GROUP 10     /* references per near-duplicate group */
#define GROUP_DUPS 3 /* members 1..GROUP_DUPS are near-duplicates of member 0 */
#define REFS_PER_PROFILE 1000

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_index_scale: %s: %s (%s)\n", what, vg_strerror(rc), vg_err_msg());
    exit(1);
}

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return (double)rss * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t and returns the q-quantile in ms. */
static double pct_ms(uint64_t *t, size_t n, double q)
{
    qsort(t, n, sizeof *t, cmp_u64);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)t[i] / 1e6;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the data set --------------------------------------------------------------------------- */

static void ref_hash(size_t i, uint8_t h[32])
{
    uint64_t s = SEED ^ ((uint64_t)(i - i % GROUP) * 0x9e3779b97f4a7c15ull);
    vgt_rand_hash(&s, h);
    size_t member = i % GROUP;
    if (member >= 1 && member <= GROUP_DUPS) {
        uint8_t base[32];
        memcpy(base, h, 32);
        uint64_t t = SEED + i;
        vgt_flip_bits(&t, base, 4 + (int)(vgt_rng_next(&t) % 28), h);
    } else if (member) {
        uint64_t t = SEED ^ ((uint64_t)i * 0xbf58476d1ce4e5b9ull) ^ 0x1234567ull;
        vgt_rand_hash(&t, h);
    }
}

/* The store's id format: prefix, '_', 26 base32 digits of 128 bits (6 bytes of ms, 10 of
 * counter), so that ids sort in creation order like real ones. */
static void make_id(const char *prefix, uint64_t n, char out[VG_ID_MAX])
{
    static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz";
    uint8_t b[16] = {0};
    uint64_t ms = 1790000000000ull;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (8 * (5 - i)));
    for (int i = 0; i < 8; i++)
        b[15 - i] = (uint8_t)(n >> (8 * i));
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    out[pl] = '_';
    for (int i = 0; i < 26; i++) {
        int bit = i * 5 - 2;
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (b[bit >> 3] >> (7 - (bit & 7))) & 1u;
        }
        out[pl + 1 + i] = b32[v];
    }
    out[pl + 27] = '\0';
}

static void tenant_id(size_t t, char out[VG_ID_MAX])
{
    make_id("tnt", t, out);
}

static void sq_check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_index_scale: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void sq_exec(sqlite3 *db, const char *sql)
{
    sq_check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

/* Writes N references over T tenants into a new database at path (schema by store_open). */
static void build_store(const char *path, size_t n, size_t nt)
{
    store_config cfg;
    store_config_default(&cfg);
    cfg.path = path;
    store *st;
    int rc = store_open(&cfg, &st);
    if (rc)
        die("store_open", rc);
    store_close(st);

    sqlite3 *db;
    sq_check(NULL, sqlite3_open(path, &db), "sqlite3_open");
    sq_exec(db, "PRAGMA synchronous=OFF");
    sq_exec(db, "PRAGMA cache_size=-262144");
    /* Secondary indexes of refs are rebuilt after the insert (a sort instead of 10M B-tree
     * inserts), with their own CREATE statements as the schema wrote them. */
    sqlite3_stmt *s;
    sq_check(db,
             sqlite3_prepare_v2(db,
                                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                                "tbl_name = 'refs' AND sql IS NOT NULL",
                                -1, &s, NULL),
             "indexes");
    char *create[8];
    size_t n_create = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n_create < 8) {
        char drop[256];
        snprintf(drop, sizeof drop, "DROP INDEX %s", (const char *)sqlite3_column_text(s, 0));
        create[n_create++] = strdup((const char *)sqlite3_column_text(s, 1));
        sqlite3_finalize(s);
        sq_exec(db, drop);
        sq_check(db,
                 sqlite3_prepare_v2(db,
                                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 'refs' AND sql IS NOT NULL",
                                    -1, &s, NULL),
                 "indexes");
    }
    sqlite3_finalize(s);

    sq_exec(db, "BEGIN");
    char id[VG_ID_MAX], tid[VG_ID_MAX], pid[VG_ID_MAX];
    sq_check(db,
             sqlite3_prepare_v2(db,
                                "INSERT INTO tenants(id, name, kind, created_ms) VALUES (?1, "
                                "'bench', 'agency', 0)",
                                -1, &s, NULL),
             "tenants");
    for (size_t t = 0; t < nt; t++) {
        tenant_id(t, tid);
        sqlite3_bind_text(s, 1, tid, -1, SQLITE_STATIC);
        sq_check(db, sqlite3_step(s), "tenant insert");
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    size_t per_tenant = (n + nt - 1) / nt;
    size_t np = (per_tenant + REFS_PER_PROFILE - 1) / REFS_PER_PROFILE;
    sq_check(db,
             sqlite3_prepare_v2(db,
                                "INSERT INTO profiles(id, tenant_id, name, created_ms, "
                                "updated_ms) VALUES (?1, ?2, 'bench', 0, 0)",
                                -1, &s, NULL),
             "profiles");
    for (size_t t = 0; t < nt; t++) {
        tenant_id(t, tid);
        for (size_t p = 0; p < np; p++) {
            make_id("prf", t * np + p, pid);
            sqlite3_bind_text(s, 1, pid, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, tid, -1, SQLITE_STATIC);
            sq_check(db, sqlite3_step(s), "profile insert");
            sqlite3_reset(s);
        }
    }
    sqlite3_finalize(s);
    sq_check(db,
             sqlite3_prepare_v2(db,
                                "INSERT INTO refs(id, tenant_id, profile_id, kind, sha256, pdq, "
                                "pdq_quality, n_faces, created_ms, ikey) VALUES (?1, ?2, ?3, "
                                "'work', ?4, ?5, ?6, 0, 0, ?7)",
                                -1, &s, NULL),
             "refs");
    for (size_t i = 0; i < n; i++) {
        size_t t = i % nt, k = i / nt;
        uint8_t h[32], sha[32];
        ref_hash(i, h);
        uint64_t x = SEED ^ (uint64_t)i;
        vgt_rand_hash(&x, sha);
        make_id("ref", i, id);
        tenant_id(t, tid);
        make_id("prf", t * np + k / REFS_PER_PROFILE, pid);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, tid, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, pid, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, sha, 32, SQLITE_STATIC);
        sqlite3_bind_blob(s, 5, h, 32, SQLITE_STATIC);
        sqlite3_bind_int(s, 6, 50 + (int)(i % 51));
        sqlite3_bind_int64(s, 7, (sqlite3_int64)i + 1); /* the store's key: reference i is i + 1 */
        sq_check(db, sqlite3_step(s), "ref insert");
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    for (size_t i = 0; i < n_create; i++) {
        sq_exec(db, create[i]);
        free(create[i]);
    }
    sq_exec(db, "COMMIT");
    sq_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
}

/* ---- queries -------------------------------------------------------------------------------- */

typedef struct query {
    uint8_t v[8][32];
    size_t tenant;
    size_t want; /* the reference a hit must find, or SIZE_MAX for a miss */
} query;

static void make_queries(query *q, size_t nq, size_t n, size_t nt)
{
    uint64_t s = SEED ^ 0x71e51ull;
    for (size_t i = 0; i < nq; i++) {
        for (int v = 0; v < 8; v++)
            vgt_rand_hash(&s, q[i].v[v]);
        q[i].tenant = i % nt;
        q[i].want = SIZE_MAX;
        if (i % 2)
            continue;
        size_t r = vgt_rng_next(&s) % n;
        int v = i % 8 == 0 ? (int)(vgt_rng_next(&s) % 8) : 0;
        uint8_t h[32];
        ref_hash(r, h);
        vgt_flip_bits(&s, h, (int)(vgt_rng_next(&s) % 21), q[i].v[v]);
        q[i].tenant = r % nt;
        q[i].want = r;
    }
}

/* ---- load ----------------------------------------------------------------------------------- */

typedef struct loaded {
    index_db *ix;
    catalog *cat;
    double wall_s, cpu_s;
} loaded;

static void load(store *st, loaded *l)
{
    uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    int rc = index_new(NULL, &l->ix);
    if (rc)
        die("index_new", rc);
    if ((rc = catalog_open(st, l->ix, &l->cat)))
        die("catalog_open", rc);
    l->wall_s = (double)(now_ns(CLOCK_MONOTONIC) - w0) / 1e9;
    l->cpu_s = (double)(now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e9;
}

static void unload(loaded *l)
{
    catalog_close(l->cat);
    index_free(l->ix);
    l->cat = NULL;
    l->ix = NULL;
}

static size_t count_refs(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    sqlite3_stmt *s;
    size_t n = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT tenant_id) FROM refs", -1, &s,
                           NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(s, 0) * 1000 + (size_t)sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nt = 1, nq = 2000, reloads = 20;
    const char *dir = NULL;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--hashes") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--tenants") && i + 1 < argc)
            nt = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            nq = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reloads") && i + 1 < argc)
            reloads = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else {
            fprintf(stderr, "usage: bench_index_scale [--hashes N] [--tenants T] [--queries Q] "
                            "[--reloads R] [--dir D] [--keep]\n");
            return 2;
        }
    }
    if (n < GROUP || nt < 1 || nt > n || nq < 2) {
        fprintf(stderr, "bench_index_scale: need --hashes >= %d, 1 <= --tenants <= hashes\n",
                GROUP);
        return 2;
    }
    char tmpl[256], path[512];
    if (!dir) {
        const char *tmp = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/vigil-index-scale-XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmpl;
        keep = 0;
    }
    snprintf(path, sizeof path, "%s/bench-%zu-%zu.db", dir, n, nt);

    printf("## Index at scale: %zu PDQ hashes, %zu tenant%s\n\n", n, nt, nt > 1 ? "s" : "");
    double la[3] = {0};
    if (getloadavg(la, 3) == 3)
        printf("Load average at start: %.1f %.1f %.1f.\n\n", la[0], la[1], la[2]);
    uint64_t b0 = now_ns(CLOCK_MONOTONIC);
    if (keep && count_refs(path) == n * 1000 + nt) {
        printf("Store: reused %s.\n\n", path);
    } else {
        unlink(path);
        /* In a child: SQLite's 256 MiB write cache would otherwise stay in this process's heap
         * and hide the index's memory in the RSS measured below. */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            build_store(path, n, nt);
            _exit(0);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_index_scale: writing the store failed\n");
            return 1;
        }
        struct stat sb;
        stat(path, &sb);
        printf("Store: written in %.1f s (SQLite directly, one transaction), %.0f MiB.\n\n",
               (double)(now_ns(CLOCK_MONOTONIC) - b0) / 1e9, (double)sb.st_size / 1048576.0);
    }
    fflush(stdout);

    store_config cfg;
    store_config_default(&cfg);
    cfg.path = path;
    store *st;
    int rc = store_open(&cfg, &st);
    if (rc)
        die("store_open", rc);
    double rss0 = rss_mib();
    loaded l;
    load(st, &l);
    double rss1 = rss_mib();
    index_stats is;
    if ((rc = index_stats_get(l.ix, NULL, &is)))
        die("index_stats_get", rc);
    if (is.pdq_entries != n)
        fprintf(stderr, "bench_index_scale: index holds %zu hashes, not %zu\n", is.pdq_entries, n),
            exit(1);

    /* queries: one thread, CPU and wall per query */
    query *qs = malloc(nq * sizeof *qs);
    make_queries(qs, nq, n, nt);
    uint64_t *cpu = malloc(nq * sizeof *cpu), *wall = malloc(nq * sizeof *wall);
    size_t hits = 0, matches = 0, found = 0;
    for (int pass = 0; pass < 2; pass++) { /* pass 0 warms the caches and page tables */
        for (size_t i = 0; i < nq; i++) {
            char tid[VG_ID_MAX];
            tenant_id(qs[i].tenant, tid);
            index_pdq_query q = index_pdq_query_defaults();
            q.variants = (const uint8_t(*)[VG_PDQ_BYTES])qs[i].v;
            q.n_variants = 8;
            index_pdq_result res;
            uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
            if ((rc = index_pdq_search(l.ix, tid, &q, &res)))
                die("index_pdq_search", rc);
            cpu[i] = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
            wall[i] = now_ns(CLOCK_MONOTONIC) - w0;
            if (pass == 1) {
                matches += res.n;
                if (qs[i].want != SIZE_MAX) {
                    hits++; /* reference i's key is i + 1 (written so, or rowid by migration 8) */
                    for (size_t k = 0; k < res.n; k++)
                        found += res.matches[k].reference == (uint64_t)qs[i].want + 1;
                }
            }
            index_pdq_result_free(&res);
        }
    }
    if (found != hits) {
        fprintf(stderr, "bench_index_scale: %zu of %zu hit queries found their reference\n", found,
                hits);
        return 1;
    }
    index_stats is2;
    index_stats_get(l.ix, NULL, &is2);

    printf("| measure | target | measured |\n|---|---|---|\n");
    printf("| load from the store (store open, index_new + catalog_open), wall | <= 10 s | "
           "%.2f s (%.2f s CPU) |\n",
           l.wall_s, l.cpu_s);
    printf("| index bytes (index_stats) | | %.0f MiB |\n", (double)is.bytes / 1048576.0);
    printf("| process RSS growth over the load | <= 1 GB | %.0f MiB (%.0f -> %.0f) |\n",
           rss1 - rss0, rss0, rss1);
    printf("| query, 8 variants, threshold 31, CPU p50 / p95 / p99 / max | p99 <= 5 ms | "
           "%.2f / %.2f / %.2f / %.2f ms |\n",
           pct_ms(cpu, nq, 0.5), pct_ms(cpu, nq, 0.95), pct_ms(cpu, nq, 0.99),
           pct_ms(cpu, nq, 1.0));
    printf("| same, wall | | %.2f / %.2f / %.2f / %.2f ms |\n", pct_ms(wall, nq, 0.5),
           pct_ms(wall, nq, 0.95), pct_ms(wall, nq, 0.99), pct_ms(wall, nq, 1.0));
    printf("| queries | | %zu (%zu hits, all found; %.1f matches per query; %s) |\n", nq, hits,
           (double)matches / (double)nq,
           is2.pdq_mih_searches > is.pdq_mih_searches ? "multi-index" : "flat scan");
    fflush(stdout);

    /* reloads: the index is dropped and rebuilt from the store, the store stays open */
    if (reloads) {
        double *ls = malloc(reloads * sizeof *ls), *rs = malloc(reloads * sizeof *rs);
        double rmin = 1e30, rmax = 0;
        for (size_t r = 0; r < reloads; r++) {
            unload(&l);
            load(st, &l);
            ls[r] = l.wall_s;
            rs[r] = rss_mib();
            rmin = rs[r] < rmin ? rs[r] : rmin;
            rmax = rs[r] > rmax ? rs[r] : rmax;
        }
        printf("| RSS after each of %zu reloads: first / last / min / max | flat | %.0f / %.0f / "
               "%.0f / %.0f MiB |\n",
               reloads, rs[0], rs[reloads - 1], rmin, rmax);
        printf("| reload wall time, median of %zu | | %.2f s |\n", reloads, median(ls, reloads));
        printf("\nRSS after each reload (MiB):");
        for (size_t r = 0; r < reloads; r++)
            printf(" %.0f", rs[r]);
        printf("\n");
        free(ls);
        free(rs);
    }
    unload(&l);
    printf("\nRSS after the last index_free: %.0f MiB (before the first load: %.0f).\n", rss_mib(),
           rss0);
    store_close(st);
    free(qs);
    free(cpu);
    free(wall);
    if (dir == tmpl) {
        unlink(path);
        char p2[600];
        snprintf(p2, sizeof p2, "%s-wal", path);
        unlink(p2);
        snprintf(p2, sizeof p2, "%s-shm", path);
        unlink(p2);
        rmdir(tmpl);
    }
    return 0;
}
