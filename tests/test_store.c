/* store: migrations, every CRUD and list path, pagination, tenant isolation, soft deletion,
 * group commit, error paths (disk quota, locks, allocation failures) and kill -9 durability.
 * Each test gets a fresh database in its own temporary directory.
 *
 * The same suite runs against PostgreSQL as test_store_pg (`test_store --pg`): each test then
 * gets a fresh database on the server VIGIL_TEST_PG_URL names (scripts/pg-tmp.sh starts one for
 * `make test`); without it the run says SKIPPED and passes. Tests of SQLite's own machinery
 * (WAL checkpoints, the file size quota, I/O errors on the files) skip themselves there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct fx {
    char dir[64];
    char path[160];  /* a file, or a postgresql:// URL under --pg */
    char dbname[32]; /* --pg: the test's database */
    store *st;
    vg_arena *a;
    char t1[STORE_ID_MAX], t2[STORE_ID_MAX]; /* two tenants */
} fx;

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* --pg: the server's URL up to the database name ("postgresql://vigil@127.0.0.1:5432/"). */
static int g_pg;
static char g_pg_base[80];
static unsigned g_pg_seq;

#define SKIP_ON_PG(why)                                                                            \
    do {                                                                                           \
        if (g_pg) {                                                                                \
            print_message("skipped on PostgreSQL: %s\n", why);                                     \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Runs sql on the server's maintenance database (CREATE / DROP DATABASE). */
static int pg_admin(const char *sql)
{
    char url[256];
    snprintf(url, sizeof url, "%spostgres", g_pg_base);
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "pg_admin %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* The test's database: a fresh file name in f->dir, or a fresh PostgreSQL database. */
static int fx_db_new(fx *f)
{
    if (!g_pg) {
        snprintf(f->path, sizeof f->path, "%s/vigil.db", f->dir);
        return 0;
    }
    snprintf(f->dbname, sizeof f->dbname, "vt_%d_%u", (int)getpid(), g_pg_seq++);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->dbname);
    snprintf(f->path, sizeof f->path, "%s%s", g_pg_base, f->dbname);
    return pg_admin(sql);
}

static void fx_db_drop(fx *f)
{
    if (g_pg && f->dbname[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
        pg_admin(sql);
    }
}

/* Runs sql on the test database directly, not through the store: 0 when it succeeded. */
static int raw_exec(fx *f, const char *sql)
{
    if (!g_pg) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open(f->path, &db);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
        return rc == SQLITE_OK ? 0 : -1;
    }
    PGconn *c = PQconnectdb(f->path);
    PGresult *r = PQexec(c, sql);
    int st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* The integer at (row 0, column col) of sql's result on the test database; -1 if none. */
static long raw_long(fx *f, const char *sql, int col)
{
    long v = -1;
    if (!g_pg) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        if (sqlite3_open(f->path, &db) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
            v = (long)sqlite3_column_int64(q, col);
        sqlite3_finalize(q);
        sqlite3_close(db);
        return v;
    }
    PGconn *c = PQconnectdb(f->path);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, col)) {
        const char *t = PQgetvalue(r, 0, col);
        v = !strcmp(t, "t") ? 1 : !strcmp(t, "f") ? 0 : strtol(t, NULL, 10);
    }
    PQclear(r);
    PQfinish(c);
    return v;
}

/* Another client holding the write lock on `table` until raw_unlock (SQLite: the database's). */
typedef struct raw_lock {
    sqlite3 *lite;
    PGconn *pg;
} raw_lock;

static void raw_lock_take(fx *f, const char *table, raw_lock *l)
{
    memset(l, 0, sizeof *l);
    if (!g_pg) {
        assert_int_equal(sqlite3_open(f->path, &l->lite), SQLITE_OK);
        assert_int_equal(sqlite3_exec(l->lite, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        return;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "BEGIN; LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", table);
    l->pg = PQconnectdb(f->path);
    PGresult *r = PQexec(l->pg, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

static void raw_lock_release(raw_lock *l)
{
    if (l->lite) {
        assert_int_equal(sqlite3_exec(l->lite, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(l->lite);
    }
    if (l->pg) {
        PGresult *r = PQexec(l->pg, "COMMIT");
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        PQfinish(l->pg);
    }
}

/* 32 zero bytes as an SQL literal in the backend's dialect. */
static const char *zeroblob32(void)
{
    return g_pg ? "decode(repeat('00', 32), 'hex')" : "zeroblob(32)";
}

static void fx_config(fx *f, store_config *c)
{
    store_config_default(c);
    c->path = f->path;
    /* The tests are about behaviour, not power loss: NORMAL keeps them fast under ASan. The
     * durability test opens its own store with FULL. */
    c->synchronous = STORE_SYNC_NORMAL;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vigil-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (fx_db_new(f))
        return -1;
    store_config c;
    fx_config(f, &c);
    if (store_open(&c, &f->st) != 0) {
        fprintf(stderr, "store_open: %s\n", vg_err_msg());
        return -1;
    }
    f->a = vg_arena_new(0);
    if (store_tenant_create(f->st, "Agency One", STORE_TENANT_AGENCY, f->t1) ||
        store_tenant_create(f->st, "Creator Two", STORE_TENANT_CREATOR, f->t2))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->st);
    vg_arena_free(f->a);
    fx_db_drop(f);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* A bare directory for tests that open stores themselves. */
static int setup_dir(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vigil-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (fx_db_new(f))
        return -1;
    f->a = vg_arena_new(0);
    *state = f;
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 3));
}

static void make_profile(fx *f, const char *tenant, const char *name, char id[STORE_ID_MAX])
{
    store_profile_fields pf = {.name = name,
                               .legal_name = "Jane Q. Public",
                               .email = "jane@example.com",
                               .address = "1 Main St\nSpringfield"};
    assert_int_equal(store_profile_create(f->st, tenant, &pf, id), 0);
}

/* A work reference with PDQ + dihedral; seed makes the sha256 distinct. */
static void make_work(fx *f, const char *tenant, const char *profile, unsigned seed,
                      char id[STORE_ID_MAX])
{
    uint8_t sha[32], pdq[32], dih[8][32];
    fill(sha, 32, seed);
    fill(pdq, 32, seed + 1);
    fill(&dih[0][0], sizeof dih, seed + 2);
    store_reference_new r = {.profile_id = profile,
                             .kind = STORE_REF_WORK,
                             .title = "Sunset",
                             .original_url = "https://example.com/sunset.jpg",
                             .copyright_holder = "Jane Q. Public",
                             .sha256 = sha,
                             .pdq = pdq,
                             .pdq_quality = 90,
                             .pdq_dihedral = (const uint8_t(*)[32])dih};
    assert_int_equal(store_reference_create(f->st, tenant, &r, id, NULL), 0);
}

/* A scan of `tenant` with one pdq match on (profile, ref) and one exact match. */
static void make_scan(fx *f, const char *tenant, const char *profile, const char *ref,
                      unsigned seed, char scan_id[STORE_ID_MAX], char (*mids)[STORE_ID_MAX])
{
    uint8_t sha[32], pdq[32];
    fill(sha, 32, seed);
    fill(pdq, 32, seed + 5);
    store_match_new m[2] = {
        {profile, ref, VG_MATCH_PDQ, 12.0, 0.9, 3, -1, NULL, NULL, NULL},
        {profile, ref, VG_MATCH_EXACT, 0.0, 1.0, -1, -1, NULL, NULL, NULL},
    };
    store_scan_new s = {.sha256 = sha,
                        .source_url = "https://bad.example/x.jpg",
                        .pdq = pdq,
                        .pdq_quality = 80,
                        .faces_json = "[]",
                        .timings_json = "{\"total_us\":1}",
                        .level = "balanced",
                        .n_matches = ref ? 2 : 0,
                        .matches = m};
    assert_int_equal(store_scan_insert(f->st, tenant, &s, scan_id, mids), 0);
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

/* ---- migrations and open -------------------------------------------------------------------- */

static void test_migrate_empty_and_reopen(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    size_t n;
    store__migrations(&n);
    assert_int_equal(store_schema_version(st), (int)n);
    assert_int_equal(store_ping(st), 0);
    char t[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "x", STORE_TENANT_AGENCY, t), 0);
    store_close(st);

    assert_int_equal(store_open(&c, &st), 0); /* re-open: nothing to apply, data kept */
    assert_int_equal(store_schema_version(st), (int)n);
    store_tenant tt;
    assert_int_equal(store_tenant_get(st, t, f->a, &tt), 0);
    assert_string_equal(tt.name, "x");
    store_close(st);

    assert_int_equal(raw_long(f, "SELECT count(*), max(version) FROM schema_migrations", 0),
                     (long)n);
    assert_int_equal(raw_long(f, "SELECT count(*), max(version) FROM schema_migrations", 1),
                     (long)n);
    if (g_pg) {
        assert_int_equal(raw_long(f, "SELECT version FROM schema_version", 0), (long)n);
        return;
    }
    sqlite3 *db = raw_open(f->path);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static int keep_first_ref(void *ctx, const store_reference *r)
{
    store_reference *out = ctx;
    if (out->id[0] == '\0' || strcmp(r->id, out->id) == 0)
        *out = *r; /* borrowed pointers are not used after the walk */
    return 0;
}

/* Schema 4 (copy detection): a reference and a match stored before it load with no PDQ regions
 * and no mechanism; new ones keep theirs, in the full read and in the index walk. */
static void test_migrate_v4_pdq_regions_and_mechanism(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store__open_at(&c, 3, &st), 0);
    char t[STORE_ID_MAX], p[STORE_ID_MAX], old_ref[STORE_ID_MAX], scan[STORE_ID_MAX];
    char old_match[1][STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "old", STORE_TENANT_CREATOR, t), 0);
    store_profile_fields pf = {.name = "Old Profile"};
    assert_int_equal(store_profile_create(st, t, &pf, p), 0);
    store_close(st);
    /* rows as a version-3 build wrote them (its INSERTs, without the new columns) */
    snprintf(old_ref, sizeof old_ref, "ref_00000000000000000000000001");
    snprintf(scan, sizeof scan, "scn_00000000000000000000000001");
    snprintf(old_match[0], sizeof old_match[0], "mat_00000000000000000000000001");
    char sql[1200];
    snprintf(sql, sizeof sql,
             "INSERT INTO refs(id, tenant_id, profile_id, kind, sha256, pdq, pdq_quality, "
             "created_ms) VALUES('%s', '%s', '%s', 'work', %s, %s, 90, 1);"
             "INSERT INTO scans(id, tenant_id, created_ms, sha256, n_matches) "
             "VALUES('%s', '%s', 1, %s, 1);"
             "INSERT INTO matches(id, scan_id, tenant_id, profile_id, reference_id, kind, "
             "distance, confidence, dihedral, face_index, created_ms) "
             "VALUES('%s', '%s', '%s', '%s', '%s', 'pdq', 12, 0.8, 0, -1, 1);",
             old_ref, t, p, zeroblob32(), zeroblob32(), scan, t, zeroblob32(), old_match[0], scan,
             t, p, old_ref);
    assert_int_equal(raw_exec(f, sql), 0);
    uint8_t sha[32] = {1}, pdq[32] = {2};
    store_reference_new nr = {
        .profile_id = p, .kind = STORE_REF_WORK, .sha256 = sha, .pdq = pdq, .pdq_quality = 90};
    store_scan_new sc = {.sha256 = sha};

    assert_int_equal(store_open(&c, &st), 0);
    assert_true(store_schema_version(st) >= 4);
    store_reference r;
    assert_int_equal(store_reference_get(st, t, old_ref, f->a, &r), 0);
    assert_true(r.has_pdq);
    assert_int_equal(r.n_pdq_regions, 0);
    store_match sm;
    assert_int_equal(store_match_get(st, t, old_match[0], f->a, &sm), 0);
    assert_string_equal(sm.mechanism, "");
    assert_string_equal(sm.region, "");

    store_pdq_region g[2] = {{.region = 1, .quality = 80}, {.region = 4, .quality = 70}};
    memset(g[0].hash, 0x11, 32);
    memset(g[1].hash, 0x44, 32);
    uint8_t sha2[32] = {3};
    nr.sha256 = sha2;
    nr.n_pdq_regions = 2;
    nr.pdq_regions = g;
    char new_ref[STORE_ID_MAX];
    assert_int_equal(store_reference_create(st, t, &nr, new_ref, NULL), 0);
    assert_int_equal(store_reference_get(st, t, new_ref, f->a, &r), 0);
    assert_int_equal(r.n_pdq_regions, 2);
    assert_int_equal(r.pdq_regions[0].region, 1);
    assert_int_equal(r.pdq_regions[0].quality, 80);
    assert_memory_equal(r.pdq_regions[0].hash, g[0].hash, 32);
    assert_int_equal(r.pdq_regions[1].region, 4);
    assert_memory_equal(r.pdq_regions[1].hash, g[1].hash, 32);
    store_reference w;
    memset(&w, 0, sizeof w);
    snprintf(w.id, sizeof w.id, "%s", new_ref);
    assert_int_equal(store_reference_foreach_index(st, t, keep_first_ref, &w), 0);
    assert_string_equal(w.id, new_ref);
    assert_int_equal(w.n_pdq_regions, 2);
    assert_int_equal(w.pdq_regions[1].quality, 70);
    memset(&w, 0, sizeof w);
    snprintf(w.id, sizeof w.id, "%s", old_ref);
    assert_int_equal(store_reference_foreach_index(st, t, keep_first_ref, &w), 0);
    assert_int_equal(w.n_pdq_regions, 0);

    /* bad regions are refused, nothing stored */
    uint8_t sha3[32] = {4};
    nr.sha256 = sha3;
    g[0].region = 0;
    assert_int_equal(store_reference_create(st, t, &nr, new_ref, NULL), VG_EINVAL);
    g[0].region = 1;
    nr.n_pdq_regions = STORE_MAX_PDQ_REGIONS + 1;
    assert_int_equal(store_reference_create(st, t, &nr, new_ref, NULL), VG_EINVAL);

    store_match_new m2 = {p, old_ref, VG_MATCH_PDQ, 9, 0.85, 0, -1, "region", "centre80", NULL};
    sc.matches = &m2;
    sc.n_matches = 1;
    assert_int_equal(store_scan_insert(st, t, &sc, scan, old_match), 0);
    assert_int_equal(store_match_get(st, t, old_match[0], f->a, &sm), 0);
    assert_string_equal(sm.mechanism, "region");
    assert_string_equal(sm.region, "centre80");
    m2.mechanism = "sideways"; /* the schema keeps the set closed */
    assert_int_not_equal(store_scan_insert(st, t, &sc, scan, old_match), 0);
    store_close(st);
}

static int count_videos(void *ctx, const char *tenant, const char *profile, const char *ref,
                        const uint8_t *frames, size_t len)
{
    (void)tenant, (void)profile, (void)ref;
    size_t *n = ctx;
    assert_int_equal(len, 3);
    assert_memory_equal(frames, "abc", 3);
    (*n)++;
    return 0;
}

/* Schema 5 (video): a version-4 database with a reference and a match opens; they read back as
 * an image reference and an image match; a video reference and a video match written afterwards
 * keep their frames and details, and the video walk sees only the live video references. */
static void test_migrate_v5_video(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store__open_at(&c, 4, &st), 0);
    char t[STORE_ID_MAX], p[STORE_ID_MAX], old_ref[STORE_ID_MAX], scan[STORE_ID_MAX];
    char mids[1][STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "old", STORE_TENANT_CREATOR, t), 0);
    store_profile_fields pf = {.name = "Old Profile"};
    assert_int_equal(store_profile_create(st, t, &pf, p), 0);
    uint8_t sha[32] = {1}, pdq[32] = {2};
    store_reference_new nr = {
        .profile_id = p, .kind = STORE_REF_WORK, .sha256 = sha, .pdq = pdq, .pdq_quality = 90};
    assert_int_equal(store_reference_create(st, t, &nr, old_ref, NULL), 0);
    store_close(st);
    /* a match as a version-4 build wrote it (without the video column) */
    snprintf(scan, sizeof scan, "scn_00000000000000000000000001");
    snprintf(mids[0], sizeof mids[0], "mat_00000000000000000000000001");
    char sql[1200];
    snprintf(sql, sizeof sql,
             "INSERT INTO scans(id, tenant_id, created_ms, sha256, n_matches) "
             "VALUES('%s', '%s', 1, %s, 1);"
             "INSERT INTO matches(id, scan_id, tenant_id, profile_id, reference_id, kind, "
             "distance, confidence, dihedral, face_index, created_ms, mechanism) "
             "VALUES('%s', '%s', '%s', '%s', '%s', 'pdq', 12, 0.8, 0, -1, 1, 'whole');",
             scan, t, zeroblob32(), mids[0], scan, t, p, old_ref);
    assert_int_equal(raw_exec(f, sql), 0);
    store_match_new m = {p, old_ref, VG_MATCH_PDQ, 9, 0.85, 0, -1, NULL, NULL, NULL};
    store_scan_new sc = {.sha256 = sha, .n_matches = 1, .matches = &m};

    assert_int_equal(store_open(&c, &st), 0);
    assert_true(store_schema_version(st) >= 5);
    store_reference r;
    assert_int_equal(store_reference_get(st, t, old_ref, f->a, &r), 0);
    assert_false(r.is_video);
    store_match sm;
    assert_int_equal(store_match_get(st, t, mids[0], f->a, &sm), 0);
    assert_null(sm.video_json);

    uint8_t sha2[32] = {3};
    store_reference_new vr = {.profile_id = p,
                              .kind = STORE_REF_WORK,
                              .sha256 = sha2,
                              .video_frames = (const uint8_t *)"abc",
                              .video_frames_len = 3,
                              .video_n_frames = 1,
                              .video_duration_s = 22.5};
    char vref[STORE_ID_MAX];
    assert_int_equal(store_reference_create(st, t, &vr, vref, NULL), 0);
    assert_int_equal(store_reference_get(st, t, vref, f->a, &r), 0);
    assert_true(r.is_video);
    assert_int_equal(r.video_n_frames, 1);
    assert_true(r.video_duration_s == 22.5);
    size_t n = 0;
    assert_int_equal(store_reference_video_foreach(st, t, count_videos, &n), 0);
    assert_int_equal(n, 1);
    m.reference_id = vref;
    m.video_json = "{\"segments\":[]}";
    assert_int_equal(store_scan_insert(st, t, &sc, scan, mids), 0);
    assert_int_equal(store_match_get(st, t, mids[0], f->a, &sm), 0);
    assert_string_equal(sm.video_json, "{\"segments\":[]}");
    /* a deleted video reference leaves the walk */
    assert_int_equal(store_reference_delete(st, t, vref), 0);
    n = 0;
    assert_int_equal(store_reference_video_foreach(st, t, count_videos, &n), 0);
    assert_int_equal(n, 0);
    store_close(st);
}

/* Video jobs: created queued, started once (a second start is a conflict), progress, finish;
 * tenant-scoped reads; a job left running by a dead server is re-queued at the next start and,
 * once it has used its attempts, failed with the reason instead of running again. */
static void test_video_jobs(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char t[STORE_ID_MAX], t2[STORE_ID_MAX], j1[STORE_ID_MAX], j2[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "a", STORE_TENANT_CREATOR, t), 0);
    assert_int_equal(store_tenant_create(st, "b", STORE_TENANT_CREATOR, t2), 0);
    const int64_t L = 60000; /* a lease no step of this test outlives */
    assert_int_equal(store_job_create(st, t, "{}", "jobs/x.video", 10, "n1", L, j1), 0);
    assert_int_equal(store_job_create(st, t, "{}", "jobs/y.video", 20, "n1", L, j2), 0);
    assert_int_equal(store_job_create(st, t, NULL, "f", 1, "n1", L, j2), VG_EINVAL);
    assert_int_equal(store_job_create(st, t, "{}", "f", 1, NULL, L, j2), VG_EINVAL);
    store_job j;
    assert_int_equal(store_job_get(st, t, j1, f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_QUEUED);
    assert_string_equal(j.file, "jobs/x.video");
    assert_int_equal(j.bytes, 10);
    assert_int_equal(store_job_get(st, t2, j1, f->a, &j), VG_ENOTFOUND);
    assert_int_equal(store_job_get(st, t, "job_nope", f->a, &j), VG_ENOTFOUND);
    char(*ids)[STORE_ID_MAX];
    size_t n;
    assert_int_equal(store_job_queued(st, "n1", 10, f->a, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], j1);
    assert_string_equal(j.owner, "n1");
    assert_int_equal(store_job_queued(st, "n2", 10, f->a, &ids, &n), 0);
    assert_int_equal(n, 0);

    int started = 0;
    assert_int_equal(store_job_start(st, j1, "n2", L, 3, &started), VG_ECONFLICT); /* n1's */
    assert_int_equal(store_job_start(st, j1, "n1", L, 3, &started), 0);
    assert_true(started);
    assert_int_equal(store_job_start(st, j1, "n1", L, 3, &started), VG_ECONFLICT);
    assert_int_equal(store_job_progress(st, j1, "n1", 0.5), 0);
    assert_int_equal(store_job_progress(st, j1, "n1", 1.5), VG_EINVAL);
    assert_int_equal(store_job_progress(st, j1, "n2", 0.5), VG_ECONFLICT);
    assert_int_equal(store_job_finish(st, j1, "n1", STORE_JOB_DONE, "{\"ok\":1}", NULL, 0), 0);
    assert_int_equal(store_job_get(st, t, j1, f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_DONE);
    assert_int_equal(j.attempts, 1);
    assert_true(j.progress == 1.0);
    assert_string_equal(j.result, "{\"ok\":1}");
    assert_int_equal(store_job_finish(st, j1, "n1", STORE_JOB_FAILED, NULL, "x", 500),
                     VG_ECONFLICT);

    /* j2 dies running twice (max 2 attempts): n1 restarted takes it back (own) and re-queues it
     * once, then fails it with the reason */
    size_t rq = 9, fl = 9;
    char got[4][STORE_ID_MAX];
    assert_int_equal(store_job_start(st, j2, "n1", L, 2, &started), 0);
    store_close(st);
    assert_int_equal(store_open(&c, &st), 0);
    assert_int_equal(store_job_takeover(st, "n1", L, 2, 0, got, 4, &rq, &fl), 0);
    assert_int_equal(rq, 0); /* its lease runs: not taken without own */
    assert_int_equal(store_job_takeover(st, "n1", L, 2, 1, got, 4, &rq, &fl), 0);
    assert_int_equal(rq, 1);
    assert_int_equal(fl, 0);
    assert_string_equal(got[0], j2);
    assert_int_equal(store_job_get(st, t, j2, f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_QUEUED);
    assert_int_equal(store_job_start(st, j2, "n1", L, 2, &started), 0);
    assert_true(started);
    assert_int_equal(store_job_takeover(st, "n1", L, 2, 1, got, 4, &rq, &fl), 0);
    assert_int_equal(rq, 0);
    assert_int_equal(fl, 1);
    assert_int_equal(store_job_get(st, t, j2, f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_FAILED);
    assert_int_equal(j.attempts, 2);
    assert_int_equal(j.error_status, 500);
    assert_non_null(strstr(j.error, "stopped 2 times"));
    /* a queued job over its attempts fails at start instead of running */
    char j3[STORE_ID_MAX];
    assert_int_equal(store_job_create(st, t, "{}", "z", 1, "n1", L, j3), 0);
    assert_int_equal(store_job_start(st, j3, "n1", L, 0, &started), 0);
    assert_false(started);
    assert_int_equal(store_job_get(st, t, j3, f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_FAILED);
    store_close(st);
}

/* Two nodes race to take over the same expired jobs, each on its own store (its own database
 * connections, as two processes would be). */
#define LEASE_JOBS 6
typedef struct lease_claimer {
    store *st;
    const char *node;
    char ids[LEASE_JOBS][STORE_ID_MAX];
    size_t n, failed;
    int rc;
} lease_claimer;

static void *lease_claim_main(void *arg)
{
    lease_claimer *c = arg;
    c->rc = store_job_takeover(c->st, c->node, 60000, 3, 0, c->ids, LEASE_JOBS, &c->n, &c->failed);
    return NULL;
}

/* Node-aware jobs (docs/SCALING.md "Video jobs"): a job under a live lease is never taken by
 * another node; once its owner stops renewing (renew with lease 0 ends it now, no sleeping), two
 * competing nodes take every job exactly once between them, and the old owner can no longer
 * progress or finish the job it lost. */
static void test_video_job_lease(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL, *st2 = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    assert_int_equal(store_open(&c, &st2), 0);
    char t[STORE_ID_MAX], ids[LEASE_JOBS][STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "a", STORE_TENANT_CREATOR, t), 0);
    for (int i = 0; i < LEASE_JOBS; i++)
        assert_int_equal(store_job_create(st, t, "{}", "f", 1, "A", 60000, ids[i]), 0);
    int started = 0;
    assert_int_equal(store_job_start(st, ids[0], "A", 60000, 3, &started), 0);
    assert_true(started);

    /* live lease: not taken, not startable by B */
    char got[LEASE_JOBS][STORE_ID_MAX];
    size_t n = 9, failed = 9;
    assert_int_equal(store_job_takeover(st2, "B", 60000, 3, 0, got, LEASE_JOBS, &n, &failed), 0);
    assert_int_equal(n, 0);
    assert_int_equal(failed, 0);
    assert_int_equal(store_job_start(st2, ids[1], "B", 60000, 3, &started), VG_ECONFLICT);
    store_job j;
    assert_int_equal(store_job_get(st, NULL, ids[0], f->a, &j), 0);
    assert_int_equal(j.state, STORE_JOB_RUNNING);
    assert_string_equal(j.owner, "A");

    /* A stops renewing: every lease ends now */
    assert_int_equal(store_job_renew(st, "A", 0, &n), 0);
    assert_int_equal(n, LEASE_JOBS);
    lease_claimer cl[2] = {{.st = st, .node = "B"}, {.st = st2, .node = "C"}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, lease_claim_main, &cl[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(cl[0].rc, 0);
    assert_int_equal(cl[1].rc, 0);
    assert_int_equal(cl[0].n + cl[1].n, LEASE_JOBS);
    assert_int_equal(cl[0].failed + cl[1].failed, 0);
    for (int i = 0; i < LEASE_JOBS; i++) {
        int times = 0;
        const char *by = NULL;
        for (int k = 0; k < 2; k++)
            for (size_t m = 0; m < cl[k].n; m++)
                if (strcmp(cl[k].ids[m], ids[i]) == 0) {
                    times++;
                    by = cl[k].node;
                }
        assert_int_equal(times, 1);
        assert_int_equal(store_job_get(st, NULL, ids[i], f->a, &j), 0);
        assert_int_equal(j.state, STORE_JOB_QUEUED);
        assert_string_equal(j.owner, by);
    }
    /* taken again by nobody: the takers' leases are live */
    assert_int_equal(store_job_takeover(st, "D", 60000, 3, 0, got, LEASE_JOBS, &n, &failed), 0);
    assert_int_equal(n, 0);
    /* At most max of another node's jobs per call, oldest first, each listed; the next call
     * takes the rest (none is left taken but unlisted, which no worker would queue). */
    assert_int_equal(store_job_renew(st, "B", 0, &n), 0);
    assert_int_equal(store_job_renew(st, "C", 0, &n), 0);
    char few[4][STORE_ID_MAX];
    assert_int_equal(store_job_takeover(st, "E", 60000, 3, 0, few, 4, &n, &failed), 0);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) { /* the 4 oldest, in any order */
        int in = 0;
        for (int k = 0; k < 4; k++)
            in |= strcmp(few[k], ids[i]) == 0;
        assert_true(in);
    }
    assert_int_equal(store_job_takeover(st2, "F", 60000, 3, 0, few, 4, &n, &failed), 0);
    assert_int_equal(n, LEASE_JOBS - 4);
    for (int i = 0; i < LEASE_JOBS; i++) {
        assert_int_equal(store_job_get(st, NULL, ids[i], f->a, &j), 0);
        assert_string_equal(j.owner, i < 4 ? "E" : "F");
    }
    /* A lost the job it was running: its progress and end are refused */
    assert_int_equal(store_job_progress(st, ids[0], "A", 0.5), VG_ECONFLICT);
    assert_int_equal(store_job_finish(st, ids[0], "A", STORE_JOB_DONE, "{}", NULL, 0),
                     VG_ECONFLICT);
    assert_int_equal(store_job_get(st, NULL, ids[0], f->a, &j), 0);
    assert_int_equal(store_job_start(st, ids[0], j.owner, 60000, 3, &started), 0);
    assert_true(started);
    assert_int_equal(store_job_get(st, NULL, ids[0], f->a, &j), 0);
    assert_int_equal(j.attempts, 2);
    store_close(st2);
    store_close(st);
}

static void test_migrate_stepwise_keeps_data(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store__open_at(&c, 1, &st), 0);
    assert_int_equal(store_schema_version(st), 1);
    char t[STORE_ID_MAX], p[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "old", STORE_TENANT_CREATOR, t), 0);
    store_profile_fields pf = {.name = "Old Profile"};
    assert_int_equal(store_profile_create(st, t, &pf, p), 0);
    store_close(st);

    assert_int_equal(store_open(&c, &st), 0);
    size_t n;
    store__migrations(&n);
    assert_int_equal(store_schema_version(st), (int)n);
    store_profile pr;
    assert_int_equal(store_profile_get(st, t, p, f->a, &pr), 0);
    assert_string_equal(pr.f.name, "Old Profile");
    char scan[STORE_ID_MAX];
    uint8_t sha[32] = {1};
    store_scan_new s = {.sha256 = sha};
    assert_int_equal(store_scan_insert(st, t, &s, scan, NULL), 0); /* v2 tables exist now */
    store_close(st);
}

static void test_refuse_newer_schema(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    store_close(st);
    assert_int_equal(
        raw_exec(f, g_pg ? "UPDATE schema_version SET version = 999" : "PRAGMA user_version=999"),
        0);
    st = NULL;
    assert_int_equal(store_open(&c, &st), VG_EUNSUPPORTED);
    assert_null(st);
    assert_non_null(strstr(vg_err_msg(), "newer"));
}

static void test_refuse_foreign_files(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    /* A database that is not ours. */
    assert_int_equal(raw_exec(f, "CREATE TABLE foo(x INTEGER)"), 0);
    assert_int_equal(store_open(&c, &st), VG_ESTORE);
    assert_non_null(strstr(vg_err_msg(), "not a Vigil database"));
    if (g_pg) {
        /* A database that does not exist, a server that does not answer. */
        char url[300];
        snprintf(url, sizeof url, "%sno_such_db", g_pg_base);
        c.path = url;
        assert_int_equal(store_open(&c, &st), VG_ESTORE);
        assert_non_null(strstr(vg_err_msg(), "cannot connect"));
        c.path = "postgresql://vigil@127.0.0.1:1/x";
        assert_int_equal(store_open(&c, &st), VG_ESTORE);
        assert_null(st);
        return;
    }
    /* Not a database at all. */
    unlink(f->path);
    FILE *fp = fopen(f->path, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not an sqlite database, just text. ", fp);
    fclose(fp);
    assert_int_equal(store_open(&c, &st), VG_ESTORE);
    /* No path. */
    c.path = NULL;
    assert_int_equal(store_open(&c, &st), VG_EINVAL);
    /* A directory that does not exist. */
    c.path = "/nonexistent-dir/vigil.db";
    assert_int_equal(store_open(&c, &st), VG_ESTORE);
    assert_null(st);
}

static void test_open_alloc_failures(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    c.read_connections = 2;
    /* Fail our own allocations one by one (SQLite's are its own): each failure must come back as
     * an error with nothing leaked (ASan checks), and the file must stay openable. */
    int saw_fail = 0;
    for (long n = 1; n < 200; n++) {
        store *st = NULL;
        vg_alloc_fail_after(n);
        int rc = store_open(&c, &st);
        vg_alloc_fail_after(0);
        if (rc == 0) {
            store_close(st);
            break;
        }
        saw_fail = 1;
        assert_int_equal(rc, VG_ENOMEM);
        assert_null(st);
    }
    assert_true(saw_fail);
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char t[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, t), 0);
    /* A list whose page buffer cannot be allocated fails cleanly. */
    store_list_opts o = {0};
    store_tenant *items;
    store_page pg;
    vg_alloc_fail_after(1);
    int rc = store_tenant_list(st, &o, f->a, &items, &pg);
    vg_alloc_fail_after(0);
    assert_int_equal(rc, VG_ENOMEM);
    assert_int_equal(store_tenant_list(st, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    store_close(st);
}

/* ---- ids ------------------------------------------------------------------------------------ */

static void test_ids_ordered_and_validated(void **state)
{
    fx *f = *state;
    char prev[STORE_ID_MAX] = "";
    for (int i = 0; i < 50; i++) {
        char id[STORE_ID_MAX];
        assert_int_equal(store_tenant_create(f->st, "t", STORE_TENANT_AGENCY, id), 0);
        assert_int_equal(strlen(id), 30);
        assert_true(store__id_valid(id, "tnt"));
        assert_false(store__id_valid(id, "prf"));
        assert_true(strcmp(prev, id) < 0);
        strcpy(prev, id);
    }
    assert_false(store__id_valid("tnt_", "tnt"));
    assert_false(store__id_valid("tnt_0000000000000000000000000i", "tnt"));  /* no i in base32 */
    assert_false(store__id_valid("tnt_00000000000000000000000000x", "tnt")); /* too long */
    assert_false(store__id_valid("tnt_80000000000000000000000000", "tnt"));  /* > 128 bits */
    assert_false(store__id_valid(NULL, "tnt"));
    /* Floors sort by time. */
    char a[STORE_ID_MAX], b[STORE_ID_MAX];
    store__id_floor("scn", 1000, a);
    store__id_floor("scn", 1001, b);
    assert_true(strcmp(a, b) < 0);
    assert_true(store__id_valid(a, "scn"));
    /* Malformed ids are "not found", never an error about the database. */
    store_tenant t;
    assert_int_equal(store_tenant_get(f->st, "nope", f->a, &t), VG_ENOTFOUND);
    assert_int_equal(store_tenant_get(f->st, "tnt_zzzzzzzzzzzzzzzzzzzzzzzzzz", f->a, &t),
                     VG_ENOTFOUND);
    store_profile p;
    assert_int_equal(store_profile_get(f->st, f->t1, "prf_' OR 1=1 --", f->a, &p), VG_ENOTFOUND);
}

/* ---- tenants and keys ----------------------------------------------------------------------- */

static void test_tenants(void **state)
{
    fx *f = *state;
    store_tenant t;
    assert_int_equal(store_tenant_get(f->st, f->t2, f->a, &t), 0);
    assert_string_equal(t.name, "Creator Two");
    assert_int_equal(t.kind, STORE_TENANT_CREATOR);
    assert_true(t.created_ms > 0);
    char id[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(f->st, "", STORE_TENANT_AGENCY, id), VG_EINVAL);
    assert_int_equal(store_tenant_create(f->st, "x", (store_tenant_kind)7, id), VG_EINVAL);
    char longname[STORE_NAME_MAX_BYTES + 1];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(store_tenant_create(f->st, longname, STORE_TENANT_AGENCY, id), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "name"));
    store_tenant_kind k;
    assert_int_equal(store_tenant_kind_parse("creator", &k), 0);
    assert_int_equal(k, STORE_TENANT_CREATOR);
    assert_int_equal(store_tenant_kind_parse("bank", &k), VG_EINVAL);

    store_list_opts o = {.limit = 1};
    store_tenant *items;
    store_page pg;
    assert_int_equal(store_tenant_list(f->st, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(items[0].id, f->t2); /* newest first */
    assert_string_not_equal(pg.next_cursor, "");
    o.cursor = pg.next_cursor;
    char cur[STORE_ID_MAX];
    strcpy(cur, pg.next_cursor);
    o.cursor = cur;
    assert_int_equal(store_tenant_list(f->st, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(items[0].id, f->t1);
    assert_string_equal(pg.next_cursor, "");
    o.cursor = "garbage";
    assert_int_equal(store_tenant_list(f->st, &o, f->a, &items, &pg), VG_EINVAL);
}

static void test_keys(void **state)
{
    fx *f = *state;
    uint8_t h1[32], h2[32], h3[32];
    fill(h1, 32, 1);
    fill(h2, 32, 2);
    fill(h3, 32, 3);
    char k1[STORE_ID_MAX], k2[STORE_ID_MAX];
    assert_int_equal(store_key_create(f->st, f->t1, "crawler", h1, k1), 0);
    assert_int_equal(store_key_create(f->st, f->t2, "laptop", h2, k2), 0);
    assert_int_equal(store_key_create(f->st, f->t1, "dup", h1, k2), VG_EEXIST);
    assert_int_equal(store_key_create(f->st, "tnt_00000000000000000000000000", "x", h3, k2),
                     VG_ENOTFOUND);

    store_key k;
    assert_int_equal(store_key_authenticate(f->st, h1, f->a, &k), 0);
    assert_string_equal(k.id, k1);
    assert_string_equal(k.tenant_id, f->t1);
    assert_int_equal(k.role, STORE_ROLE_TENANT);
    assert_string_equal(k.name, "crawler");
    assert_true(k.last_used_ms > 0); /* first use recorded */
    assert_int_equal(store_key_authenticate(f->st, h3, f->a, &k), VG_EPERM);

    /* Another tenant cannot revoke it; its own tenant can; revoking twice is fine. */
    assert_int_equal(store_key_revoke(f->st, f->t2, k1), VG_ENOTFOUND);
    assert_int_equal(store_key_revoke(f->st, f->t1, k1), 0);
    assert_int_equal(store_key_revoke(f->st, f->t1, k1), 0);
    assert_int_equal(store_key_authenticate(f->st, h1, f->a, &k), VG_EPERM);

    store_list_opts o = {0};
    store_key *items;
    store_page pg;
    assert_int_equal(store_key_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_true(items[0].revoked_ms > 0);
    assert_int_equal(store_key_list(f->st, NULL, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 2);

    /* Admin key: none, set, idempotent, replaced, restored. */
    int exists = 1;
    assert_int_equal(store_admin_key_exists(f->st, &exists), 0);
    assert_false(exists);
    char a1[STORE_ID_MAX], a1b[STORE_ID_MAX], a2[STORE_ID_MAX];
    assert_int_equal(store_admin_key_set(f->st, h3, a1), 0);
    assert_int_equal(store_admin_key_exists(f->st, &exists), 0);
    assert_true(exists);
    assert_int_equal(store_admin_key_set(f->st, h3, a1b), 0);
    assert_string_equal(a1, a1b);
    uint8_t live[32];
    assert_int_equal(store_admin_key_hash(f->st, live), 0);
    assert_memory_equal(live, h3, 32);
    int64_t head0 = 0, head1 = 0;
    assert_int_equal(store_changes_head(f->st, &head0), 0); /* set and re-set: no rotation */
    assert_int_equal(store_key_authenticate(f->st, h3, f->a, &k), 0);
    assert_int_equal(k.role, STORE_ROLE_ADMIN);
    assert_string_equal(k.tenant_id, "");
    uint8_t h4[32];
    fill(h4, 32, 4);
    assert_int_equal(store_admin_key_set(f->st, h4, a2), 0);
    assert_string_not_equal(a1, a2);
    /* a rotation is in the change log for the other nodes (tenant "", object "admin") */
    store_change ch[4];
    size_t nch = 0;
    assert_int_equal(store_changes_read(f->st, head0, ch, 4, &nch), 0);
    assert_int_equal(nch, 1);
    assert_int_equal(ch[0].kind, STORE_CHANGE_KEY);
    assert_true(ch[0].remove);
    assert_string_equal(ch[0].tenant_id, "");
    assert_string_equal(ch[0].object_id, "admin");
    assert_int_equal(store_admin_key_hash(f->st, live), 0);
    assert_memory_equal(live, h4, 32);
    assert_int_equal(store_admin_key_set(f->st, h4, NULL), 0); /* idempotent: no row */
    assert_int_equal(store_changes_head(f->st, &head1), 0);
    assert_int_equal(head1, ch[0].seq);
    assert_int_equal(store_key_authenticate(f->st, h3, f->a, &k), VG_EPERM); /* replaced */
    assert_int_equal(store_key_authenticate(f->st, h4, f->a, &k), 0);
    assert_int_equal(store_admin_key_set(f->st, h3, a1b), 0); /* back to the first one */
    assert_string_equal(a1, a1b);
    assert_int_equal(store_key_authenticate(f->st, h4, f->a, &k), VG_EPERM);
    assert_int_equal(store_key_authenticate(f->st, h3, f->a, &k), 0);
    /* The admin key cannot be a tenant's key, nor be revoked as one. */
    assert_int_equal(store_admin_key_set(f->st, h2, NULL), VG_EEXIST);
    assert_int_equal(store_key_revoke(f->st, NULL, a1), VG_ENOTFOUND);
    /* Admin keys are not listed with tenant keys. */
    assert_int_equal(store_key_list(f->st, NULL, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 2);
}

/* ---- profiles ------------------------------------------------------------------------------- */

static void test_profiles_crud(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX];
    store_profile_fields pf = {.name = "Jane",
                               .legal_name = "Jane Q. Public",
                               .email = "j@x.org",
                               .address = "1 Main St\nSpringfield",
                               .phone = "+1 555 0100",
                               .notes = "VIP"};
    assert_int_equal(store_profile_create(f->st, f->t1, &pf, p), 0);
    store_profile r;
    assert_int_equal(store_profile_get(f->st, f->t1, p, f->a, &r), 0);
    assert_string_equal(r.f.name, "Jane");
    assert_string_equal(r.f.legal_name, "Jane Q. Public");
    assert_string_equal(r.f.address, "1 Main St\nSpringfield");
    assert_string_equal(r.f.phone, "+1 555 0100");
    assert_string_equal(r.tenant_id, f->t1);
    assert_int_equal(r.deleted_ms, 0);
    int64_t created = r.created_ms;

    /* Partial update: NULL keeps, "" clears. */
    store_profile_fields up = {.email = "new@x.org", .notes = ""};
    assert_int_equal(store_profile_update(f->st, f->t1, p, &up), 0);
    assert_int_equal(store_profile_get(f->st, NULL, p, f->a, &r), 0); /* admin scope */
    assert_string_equal(r.f.name, "Jane");
    assert_string_equal(r.f.email, "new@x.org");
    assert_null(r.f.notes);
    assert_true(r.updated_ms >= created);
    store_profile_fields bad = {.name = ""};
    assert_int_equal(store_profile_update(f->st, f->t1, p, &bad), VG_EINVAL);

    /* Validation. */
    store_profile_fields noname = {.email = "x"};
    assert_int_equal(store_profile_create(f->st, f->t1, &noname, p), VG_EINVAL);
    assert_int_equal(store_profile_create(f->st, NULL, &pf, p), VG_EINVAL);
    assert_int_equal(store_profile_create(f->st, "tnt_00000000000000000000000000", &pf, p),
                     VG_ENOTFOUND);

    /* Delete: gone from get/update/list, second delete is not found. */
    assert_int_equal(store_profile_delete(f->st, f->t1, r.id, NULL, NULL, NULL), 0);
    assert_int_equal(store_profile_get(f->st, f->t1, r.id, f->a, &r), VG_ENOTFOUND);
    assert_int_equal(store_profile_update(f->st, f->t1, p, &up), VG_ENOTFOUND);
    assert_int_equal(store_profile_delete(f->st, f->t1, p, NULL, NULL, NULL), VG_ENOTFOUND);
    store_list_opts o = {0};
    store_profile *items;
    store_page pg;
    assert_int_equal(store_profile_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 0);
}

static void test_profiles_pagination(void **state)
{
    fx *f = *state;
    enum { N = 23 };
    char ids[N][STORE_ID_MAX];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        make_profile(f, i % 3 ? f->t1 : f->t2, name, ids[i]);
    }
    /* Walk t1's profiles 4 at a time: newest first, each once. */
    store_list_opts o = {.limit = 4};
    char cursor[STORE_ID_MAX] = "";
    int seen = 0, pages = 0;
    int expect = N - 1;
    for (;;) {
        store_profile *items;
        store_page pg;
        o.cursor = cursor[0] ? cursor : NULL;
        assert_int_equal(store_profile_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
        pages++;
        for (size_t i = 0; i < pg.n; i++) {
            while (expect >= 0 && expect % 3 == 0)
                expect--;
            assert_string_equal(items[i].id, ids[expect]);
            assert_string_equal(items[i].tenant_id, f->t1);
            expect--;
            seen++;
        }
        if (!pg.next_cursor[0])
            break;
        strcpy(cursor, pg.next_cursor);
    }
    assert_int_equal(seen, 15); /* i % 3 != 0 for i in 0..22 */
    assert_int_equal(pages, 4);
    /* Admin sees all; the limit is capped. */
    store_list_opts all = {.limit = 100000};
    store_profile *items;
    store_page pg;
    assert_int_equal(store_profile_list(f->st, NULL, &all, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, N);
    /* Since/until bounds. */
    store_profile mid;
    assert_int_equal(store_profile_get(f->st, NULL, ids[10], f->a, &mid), 0);
    store_list_opts since = {.since_ms = mid.created_ms + 100000};
    assert_int_equal(store_profile_list(f->st, NULL, &since, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 0);
    store_list_opts until = {.until_ms = mid.created_ms - 100000};
    assert_int_equal(store_profile_list(f->st, NULL, &until, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 0);
    store_list_opts window = {.since_ms = mid.created_ms, .until_ms = mid.created_ms + 1};
    assert_int_equal(store_profile_list(f->st, NULL, &window, f->a, &items, &pg), 0);
    assert_true(pg.n >= 1);
    for (size_t i = 0; i < pg.n; i++)
        assert_int_equal(items[i].created_ms, mid.created_ms);
}

/* ---- references ----------------------------------------------------------------------------- */

static void test_references(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], w[STORE_ID_MAX], l[STORE_ID_MAX], x[STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 10, w);

    /* A likeness with two faces and stored image bytes. */
    float desc[2 * VG_DESCRIPTOR_DIM], boxes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 2 * VG_DESCRIPTOR_DIM; i++)
        desc[i] = (float)sin(i * 0.1);
    uint8_t sha[32], img[1000];
    fill(sha, 32, 77);
    fill(img, sizeof img, 78);
    store_reference_new ln = {.profile_id = p,
                              .kind = STORE_REF_LIKENESS,
                              .sha256 = sha,
                              .n_faces = 2,
                              .descriptors = desc,
                              .boxes = boxes,
                              .image = img,
                              .image_len = sizeof img};
    assert_int_equal(store_reference_create(f->st, NULL, &ln, l, NULL),
                     0); /* admin: profile's tenant */

    store_reference r;
    assert_int_equal(store_reference_get(f->st, f->t1, l, f->a, &r), 0);
    assert_string_equal(r.tenant_id, f->t1);
    assert_string_equal(r.profile_id, p);
    assert_int_equal(r.kind, STORE_REF_LIKENESS);
    assert_null(r.title);
    assert_memory_equal(r.sha256, sha, 32);
    assert_false(r.has_pdq);
    assert_int_equal(r.n_faces, 2);
    assert_memory_equal(r.descriptors, desc, sizeof desc);
    assert_memory_equal(r.boxes, boxes, sizeof boxes);
    assert_true(r.has_image);
    assert_int_equal(r.image_len, sizeof img);
    const uint8_t *bytes;
    size_t len;
    assert_int_equal(store_reference_image_get(f->st, f->t1, l, f->a, &bytes, &len), 0);
    assert_int_equal(len, sizeof img);
    assert_memory_equal(bytes, img, len);
    assert_int_equal(store_reference_image_get(f->st, f->t1, w, f->a, &bytes, &len), VG_ENOTFOUND);

    assert_int_equal(store_reference_get(f->st, f->t1, w, f->a, &r), 0);
    assert_string_equal(r.title, "Sunset");
    assert_string_equal(r.copyright_holder, "Jane Q. Public");
    assert_true(r.has_pdq);
    assert_int_equal(r.pdq_quality, 90);
    assert_true(r.has_dihedral);
    uint8_t dih[8][32];
    fill(&dih[0][0], sizeof dih, 12);
    assert_memory_equal(r.pdq_dihedral, dih, sizeof dih);
    assert_int_equal(r.n_faces, 0);
    assert_null(r.descriptors);

    /* Rules: same image twice in one profile; work fields on a likeness; bad descriptors. */
    ln.image = NULL;
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_EEXIST);
    ln.title = "x";
    fill(sha, 32, 79);
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_EINVAL);
    ln.title = NULL;
    float keep = desc[5];
    desc[5] = NAN;
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_EINVAL);
    desc[5] = keep;
    ln.n_faces = STORE_MAX_FACES_PER_REF + 1;
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_EINVAL);
    ln.n_faces = 1;
    ln.sha256 = NULL;
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_EINVAL);
    ln.sha256 = sha;
    ln.profile_id = "prf_00000000000000000000000000";
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), VG_ENOTFOUND);

    /* List by profile; count. */
    char p2[STORE_ID_MAX], w2[STORE_ID_MAX];
    make_profile(f, f->t1, "Other", p2);
    make_work(f, f->t1, p2, 20, w2);
    store_list_opts o = {.profile_id = p};
    store_reference *items;
    store_page pg;
    assert_int_equal(store_reference_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 2);
    assert_string_equal(items[0].id, l);
    assert_int_equal(items[0].n_faces, 2);
    assert_memory_equal(items[0].descriptors, desc, VG_DESCRIPTOR_DIM * sizeof(float));
    assert_string_equal(items[1].id, w);
    size_t n = 0;
    assert_int_equal(store_reference_count(f->st, f->t1, &n), 0);
    assert_int_equal(n, 3);

    /* Delete: out of get/list/count, descriptors and image erased, second delete not found. */
    assert_int_equal(store_reference_delete(f->st, f->t1, l), 0);
    assert_int_equal(store_reference_get(f->st, f->t1, l, f->a, &r), VG_ENOTFOUND);
    assert_int_equal(store_reference_image_get(f->st, f->t1, l, f->a, &bytes, &len), VG_ENOTFOUND);
    assert_int_equal(store_reference_delete(f->st, f->t1, l), VG_ENOTFOUND);
    assert_int_equal(store_reference_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_int_equal(store_reference_count(f->st, NULL, &n), 0);
    assert_int_equal(n, 2);
    char q[300];
    snprintf(q, sizeof q,
             "SELECT descriptors IS NULL, n_faces, deleted_ms IS NOT NULL, (SELECT count(*) FROM "
             "ref_images) FROM refs WHERE id = '%s'",
             l);
    assert_int_equal(raw_long(f, q, 0), 1);
    assert_int_equal(raw_long(f, q, 1), 0);
    assert_int_equal(raw_long(f, q, 2), 1);
    assert_int_equal(raw_long(f, q, 3), 0);

    /* The same image can be added again once the old reference is deleted. */
    fill(sha, 32, 77);
    ln.profile_id = p;
    ln.n_faces = 2;
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, x, NULL), 0);
}

typedef struct walk {
    int n;
    char seen[16][STORE_ID_MAX];
    store_reference got[16]; /* the fixed-size fields the index is built from */
    size_t faces;
    int stop_after;
} walk;

static int walk_cb(void *ctx, const store_reference *r)
{
    walk *w = ctx;
    if (w->n < 16) {
        strcpy(w->seen[w->n], r->id);
        w->got[w->n] = *r;
    }
    w->n++;
    w->faces += r->n_faces;
    if (r->n_faces && r->descriptors[0] != 0.5f)
        return VG_ECORRUPT;
    return w->stop_after && w->n == w->stop_after ? 42 : 0;
}

typedef int (*walk_fn_t)(store *, const char *, int (*)(void *, const store_reference *), void *);

/* Runs a walk; with sort, orders what it saw by id (id order for time-ordered ids). */
static int do_walk(fx *f, walk_fn_t fn, const char *tenant, walk *w, int sort)
{
    int rc = fn(f->st, tenant, walk_cb, w);
    int n = w->n < 16 ? w->n : 16;
    for (int a = 1; sort && a < n; a++)
        for (int b = a; b > 0 && strcmp(w->seen[b - 1], w->seen[b]) > 0; b--) {
            char t[STORE_ID_MAX];
            store_reference x = w->got[b];
            strcpy(t, w->seen[b]);
            strcpy(w->seen[b], w->seen[b - 1]);
            strcpy(w->seen[b - 1], t);
            w->got[b] = w->got[b - 1];
            w->got[b - 1] = x;
        }
    return rc;
}

/* walk_fn is store_reference_foreach (id order) or store_reference_foreach_index (any order, so
 * sorted here): the same references, and the fields the index needs as stored. */
static void check_reference_walk(fx *f, walk_fn_t walk_fn, int sort)
{
    char p1[STORE_ID_MAX], p2[STORE_ID_MAX], p3[STORE_ID_MAX], r[6][STORE_ID_MAX];
    make_profile(f, f->t1, "a", p1);
    make_profile(f, f->t1, "b", p2);
    make_profile(f, f->t2, "c", p3);
    make_work(f, f->t1, p1, 1, r[0]);
    make_work(f, f->t1, p2, 2, r[1]);
    make_work(f, f->t2, p3, 3, r[2]);
    float d[VG_DESCRIPTOR_DIM];
    for (int i = 0; i < VG_DESCRIPTOR_DIM; i++)
        d[i] = 0.5f;
    uint8_t sha[32];
    fill(sha, 32, 4);
    store_reference_new ln = {.profile_id = p1,
                              .kind = STORE_REF_LIKENESS,
                              .sha256 = sha,
                              .n_faces = 1,
                              .descriptors = d};
    assert_int_equal(store_reference_create(f->st, f->t1, &ln, r[3], NULL), 0);
    make_work(f, f->t1, p1, 5, r[4]);
    assert_int_equal(store_reference_delete(f->st, f->t1, r[4]), 0);

    walk w = {0};
    assert_int_equal(do_walk(f, walk_fn, NULL, &w, sort), 0);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.faces, 1);
    assert_string_equal(w.seen[0], r[0]); /* id order */
    assert_string_equal(w.seen[3], r[3]);
    for (int i = 0; i < 4; i++) { /* what the index needs, as stored */
        store_reference x;
        assert_int_equal(store_reference_get(f->st, NULL, w.seen[i], f->a, &x), 0);
        assert_string_equal(w.got[i].tenant_id, x.tenant_id);
        assert_string_equal(w.got[i].profile_id, x.profile_id);
        assert_int_equal(w.got[i].key, x.key);
        if (walk_fn == store_reference_foreach) { /* the index's walk reads neither */
            assert_int_equal(w.got[i].kind, x.kind);
            assert_memory_equal(w.got[i].sha256, x.sha256, 32);
        }
        assert_int_equal(w.got[i].has_pdq, x.has_pdq);
        assert_memory_equal(w.got[i].pdq, x.pdq, 32);
        assert_int_equal(w.got[i].pdq_quality, x.pdq_quality);
        assert_int_equal(w.got[i].n_faces, x.n_faces);
    }

    memset(&w, 0, sizeof w);
    assert_int_equal(do_walk(f, walk_fn, f->t2, &w, sort), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.seen[0], r[2]);

    /* Deleting a profile takes its references out of the walk and reports them. */
    char(*gone)[STORE_ID_MAX] = NULL;
    size_t ngone = 0;
    assert_int_equal(store_profile_delete(f->st, f->t1, p1, f->a, &gone, &ngone), 0);
    assert_int_equal(ngone, 2);
    assert_string_equal(gone[0], r[0]);
    assert_string_equal(gone[1], r[3]);
    memset(&w, 0, sizeof w);
    assert_int_equal(do_walk(f, walk_fn, f->t1, &w, sort), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.seen[0], r[1]);
    assert_int_equal(store_reference_get(f->st, f->t1, r[0], f->a, &(store_reference){0}),
                     VG_ENOTFOUND);

    /* A callback stops the walk with its own value. */
    memset(&w, 0, sizeof w);
    w.stop_after = 1;
    assert_int_equal(do_walk(f, walk_fn, NULL, &w, sort), 42);
    assert_int_equal(w.n, 1);
    /* The connection of the stopped walk takes the next statements (PostgreSQL streams a walk:
     * what was left of it is read and dropped at release). */
    for (int i = 0; i < 8; i++)
        assert_int_equal(store_ping(f->st), 0);
}

static void test_reference_foreach(void **state)
{
    check_reference_walk(*state, store_reference_foreach, 0);
}

static void test_reference_foreach_index(void **state)
{
    check_reference_walk(*state, store_reference_foreach_index, 1);
}

/* ---- reference keys ------------------------------------------------------------------------- */

/* A work of `tenant` under `profile` whose sha256 is seed's; returns its key. */
static int64_t make_keyed(fx *f, store *st, const char *tenant, const char *profile, unsigned seed,
                          char id[STORE_ID_MAX])
{
    uint8_t sha[32];
    fill(sha, 32, seed);
    store_reference_new r = {.profile_id = profile, .kind = STORE_REF_WORK, .sha256 = sha};
    int64_t key = -1;
    assert_int_equal(store_reference_create(st ? st : f->st, tenant, &r, id, &key), 0);
    return key;
}

/* Keys are > 0 and increase with every create, a deleted reference's key is not handed out
 * again, and every read path (get, list, both walks) carries the key create returned. */
static void test_reference_keys(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], q[STORE_ID_MAX], ids[5][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_profile(f, f->t2, "Other", q);
    int64_t k[5];
    k[0] = make_keyed(f, NULL, f->t1, p, 1, ids[0]);
    k[1] = make_keyed(f, NULL, f->t2, q, 2, ids[1]);
    k[2] = make_keyed(f, NULL, f->t1, p, 3, ids[2]);
    assert_true(k[0] > 0);
    assert_true(k[1] > k[0]);
    assert_true(k[2] > k[1]);
    /* a create that fails (same image twice) gets no key and takes none from the next */
    uint8_t sha[32];
    fill(sha, 32, 3);
    store_reference_new dup = {.profile_id = p, .kind = STORE_REF_WORK, .sha256 = sha};
    int64_t kd = -7;
    assert_int_equal(store_reference_create(f->st, f->t1, &dup, ids[3], &kd), VG_EEXIST);
    assert_int_equal(kd, -7);
    /* the newest reference deleted: its key is still never reused */
    assert_int_equal(store_reference_delete(f->st, f->t1, ids[2]), 0);
    k[3] = make_keyed(f, NULL, f->t1, p, 4, ids[3]);
    assert_true(k[3] > k[2]);
    k[4] = make_keyed(f, NULL, f->t1, p, 5, ids[4]);
    assert_true(k[4] > k[3]);

    store_reference r;
    assert_int_equal(store_reference_get(f->st, f->t1, ids[0], f->a, &r), 0);
    assert_int_equal(r.key, k[0]);
    assert_int_equal(store_reference_get(f->st, f->t2, ids[1], f->a, &r), 0);
    assert_int_equal(r.key, k[1]);
    store_list_opts o = {.limit = 10};
    store_reference *items;
    store_page pg;
    assert_int_equal(store_reference_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 3); /* newest first: ids[4], ids[3], ids[0] */
    assert_int_equal(items[0].key, k[4]);
    assert_int_equal(items[1].key, k[3]);
    assert_int_equal(items[2].key, k[0]);
    for (int i = 0; i < 5; i++) {
        if (i == 2)
            continue; /* deleted: not in the walks */
        store_reference w;
        memset(&w, 0, sizeof w);
        snprintf(w.id, sizeof w.id, "%s", ids[i]);
        assert_int_equal(store_reference_foreach(f->st, NULL, keep_first_ref, &w), 0);
        assert_int_equal(w.key, k[i]);
        memset(&w, 0, sizeof w);
        snprintf(w.id, sizeof w.id, "%s", ids[i]);
        assert_int_equal(store_reference_foreach_index(f->st, NULL, keep_first_ref, &w), 0);
        assert_string_equal(w.id, ids[i]);
        assert_int_equal(w.key, k[i]);
    }

    /* key_get: live references of the tenant (or any, admin) only */
    int64_t key = 0;
    assert_int_equal(store_reference_key_get(f->st, f->t1, ids[0], &key), 0);
    assert_int_equal(key, k[0]);
    assert_int_equal(store_reference_key_get(f->st, NULL, ids[1], &key), 0);
    assert_int_equal(key, k[1]);
    key = -1;
    assert_int_equal(store_reference_key_get(f->st, f->t1, ids[1], &key), VG_ENOTFOUND);
    assert_int_equal(store_reference_key_get(f->st, f->t1, ids[2], &key), VG_ENOTFOUND);
    assert_int_equal(store_reference_key_get(f->st, f->t1, "ref_nope", &key), VG_ENOTFOUND);
    assert_int_equal(key, -1);
}

static void assert_brief(const store_ref_brief *b, int64_t key, const char *id, const char *profile,
                         unsigned seed)
{
    assert_int_equal(b->key, key);
    assert_int_equal(b->found, 1);
    assert_string_equal(b->id, id);
    assert_string_equal(b->profile_id, profile);
    uint8_t sha[32];
    fill(sha, 32, seed);
    assert_memory_equal(b->sha256, sha, 32);
}

static void assert_not_found(const store_ref_brief *b, int64_t key)
{
    static const store_ref_brief zero;
    assert_int_equal(b->key, key);
    assert_int_equal(b->found, 0);
    assert_memory_equal(b->id, zero.id, sizeof zero.id);
    assert_memory_equal(b->sha256, zero.sha256, 32);
}

/* resolve: the tenant's live references by key, in the caller's order, repeats answered; an
 * unknown key, a deleted reference (alone or with its profile) and another tenant's are not
 * found; n = 0 is a no-op; n over the maximum and a bad tenant are refused. */
static void test_reference_resolve(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], p2[STORE_ID_MAX], q[STORE_ID_MAX], ids[6][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_profile(f, f->t1, "Gone", p2);
    make_profile(f, f->t2, "Other", q);
    int64_t k[6];
    k[0] = make_keyed(f, NULL, f->t1, p, 10, ids[0]);
    k[1] = make_keyed(f, NULL, f->t1, p, 11, ids[1]);
    k[2] = make_keyed(f, NULL, f->t2, q, 12, ids[2]);
    k[3] = make_keyed(f, NULL, f->t1, p, 13, ids[3]);
    k[4] = make_keyed(f, NULL, f->t1, p2, 14, ids[4]);
    k[5] = make_keyed(f, NULL, f->t1, p, 15, ids[5]);
    assert_int_equal(store_reference_delete(f->st, f->t1, ids[3]), 0);
    assert_int_equal(store_profile_delete(f->st, f->t1, p2, NULL, NULL, NULL), 0);

    int64_t keys[8] = {k[5], k[2], k[0], 987654321, k[3], k[4], k[0], k[1]};
    store_ref_brief out[8];
    memset(out, 0x5a, sizeof out);
    assert_int_equal(store_reference_resolve(f->st, f->t1, keys, 8, out), 0);
    assert_brief(&out[0], k[5], ids[5], p, 15);
    assert_not_found(&out[1], k[2]); /* another tenant's */
    assert_brief(&out[2], k[0], ids[0], p, 10);
    assert_not_found(&out[3], 987654321);
    assert_not_found(&out[4], k[3]); /* deleted */
    assert_not_found(&out[5], k[4]); /* its profile deleted */
    assert_brief(&out[6], k[0], ids[0], p, 10);
    assert_brief(&out[7], k[1], ids[1], p, 11);
    /* the other tenant sees its own */
    assert_int_equal(store_reference_resolve(f->st, f->t2, &keys[1], 2, out), 0);
    assert_brief(&out[0], k[2], ids[2], q, 12);
    assert_not_found(&out[1], k[0]);

    /* n = 0: nothing read or written */
    memset(out, 0x5a, sizeof out);
    assert_int_equal(store_reference_resolve(f->st, f->t1, keys, 0, out), 0);
    assert_int_equal(out[0].found, 0x5a5a5a5a);
    /* the most keys one call takes, then one too many; a bad tenant */
    int64_t *many = calloc(STORE_RESOLVE_MAX + 1, sizeof *many);
    store_ref_brief *mo = calloc(STORE_RESOLVE_MAX + 1, sizeof *mo);
    for (int i = 0; i < STORE_RESOLVE_MAX + 1; i++)
        many[i] = i % 3 == 0 ? k[1] : 1000000 + i;
    assert_int_equal(store_reference_resolve(f->st, f->t1, many, STORE_RESOLVE_MAX, mo), 0);
    for (int i = 0; i < STORE_RESOLVE_MAX; i++) {
        if (i % 3 == 0)
            assert_brief(&mo[i], k[1], ids[1], p, 11);
        else
            assert_not_found(&mo[i], 1000000 + i);
    }
    assert_int_equal(store_reference_resolve(f->st, f->t1, many, STORE_RESOLVE_MAX + 1, mo),
                     VG_EINVAL);
    free(many);
    free(mo);
    assert_int_equal(store_reference_resolve(f->st, NULL, keys, 1, out), VG_EINVAL);
    assert_int_equal(store_reference_resolve(f->st, "tnt_nope", keys, 1, out), VG_EINVAL);
    assert_int_equal(store_reference_resolve(f->st, ids[0], keys, 1, out), VG_EINVAL);
}

/* Schema 8 on a version-7 database: every existing reference, live or deleted, gets a distinct
 * key > 0 (the migrated live one resolves), old change-log rows read object_key 0, and a
 * reference created afterwards gets a key above all of them. */
static void test_migrate_v8_keys(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store__open_at(&c, 7, &st), 0);
    char t[STORE_ID_MAX], p[STORE_ID_MAX], ids[4][STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "old", STORE_TENANT_CREATOR, t), 0);
    store_profile_fields pf = {.name = "Old Profile"};
    assert_int_equal(store_profile_create(st, t, &pf, p), 0);
    assert_int_equal(make_keyed(f, st, t, p, 1, ids[0]), 0); /* no keys before 8 */
    assert_int_equal(make_keyed(f, st, t, p, 2, ids[1]), 0);
    assert_int_equal(make_keyed(f, st, t, p, 3, ids[2]), 0);
    assert_int_equal(store_reference_delete(st, t, ids[1]), 0);
    store_close(st);

    assert_int_equal(store_open(&c, &st), 0);
    assert_true(store_schema_version(st) >= 8);
    assert_int_equal(raw_long(f, "SELECT count(*) FROM refs WHERE ikey IS NULL OR ikey <= 0", 0),
                     0);
    assert_int_equal(raw_long(f, "SELECT count(DISTINCT ikey) FROM refs", 0), 3);
    int64_t k0 = 0, k2 = 0;
    assert_int_equal(store_reference_key_get(st, t, ids[0], &k0), 0);
    assert_int_equal(store_reference_key_get(st, t, ids[2], &k2), 0);
    assert_true(k0 > 0 && k2 > 0 && k0 != k2);
    store_reference r;
    assert_int_equal(store_reference_get(st, t, ids[2], f->a, &r), 0);
    assert_int_equal(r.key, k2);
    store_ref_brief b[2];
    int64_t keys[2] = {k2, k0};
    assert_int_equal(store_reference_resolve(st, t, keys, 2, b), 0);
    assert_brief(&b[0], k2, ids[2], p, 3);
    assert_brief(&b[1], k0, ids[0], p, 1);

    store_change ch[8];
    size_t n = 0;
    assert_int_equal(store_changes_read(st, 0, ch, 8, &n), 0);
    assert_int_equal(n, 4); /* three adds, one remove, written at version 7 */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ch[i].object_key, 0);

    char nid[STORE_ID_MAX];
    int64_t kn = make_keyed(f, st, t, p, 4, nid);
    assert_true(
        kn > raw_long(f, "SELECT max(ikey) FROM refs WHERE id <> (SELECT max(id) FROM refs)", 0));
    assert_int_equal(store_changes_read(st, ch[3].seq, ch, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ch[0].object_key, kn);
    store_close(st);
}

/* ---- scans and matches ---------------------------------------------------------------------- */

static void test_scans_and_matches(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s1[STORE_ID_MAX], s2[STORE_ID_MAX], s3[STORE_ID_MAX];
    char m1[2][STORE_ID_MAX], m2[2][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    make_scan(f, f->t1, p, r, 100, s1, m1);
    make_scan(f, f->t1, p, r, 200, s2, m2);
    make_scan(f, f->t1, NULL, NULL, 100, s3, NULL); /* same image as s1, no match */
    assert_true(strcmp(s1, s2) < 0 && strcmp(m1[1], m2[0]) < 0 && strcmp(m1[0], m1[1]) < 0);

    store_scan sc;
    assert_int_equal(store_scan_get(f->st, f->t1, s1, f->a, &sc), 0);
    uint8_t sha[32];
    fill(sha, 32, 100);
    assert_memory_equal(sc.sha256, sha, 32);
    assert_string_equal(sc.source_url, "https://bad.example/x.jpg");
    assert_true(sc.has_pdq);
    assert_int_equal(sc.pdq_quality, 80);
    assert_string_equal(sc.faces_json, "[]");
    assert_string_equal(sc.timings_json, "{\"total_us\":1}");
    assert_string_equal(sc.level, "balanced");
    assert_int_equal(sc.n_matches, 2);
    assert_string_equal(sc.matches[0].id, m1[0]);
    assert_int_equal(sc.matches[0].kind, VG_MATCH_PDQ);
    assert_true(sc.matches[0].distance == 12.0);
    assert_int_equal(sc.matches[0].dihedral, 3);
    assert_int_equal(sc.matches[1].kind, VG_MATCH_EXACT);
    assert_int_equal(sc.matches[1].face_index, -1);
    assert_int_equal(sc.matches[0].created_ms, sc.created_ms);
    assert_string_equal(sc.matches[0].reference_id, r);
    assert_string_equal(sc.matches[0].profile_id, p);

    store_match m;
    assert_int_equal(store_match_get(f->st, f->t1, m2[1], f->a, &m), 0);
    assert_string_equal(m.scan_id, s2);
    assert_string_equal(m.scan_source_url, "https://bad.example/x.jpg");
    fill(sha, 32, 200);
    assert_memory_equal(m.scan_sha256, sha, 32);

    /* Scan list: all, by sha256, by time. */
    store_list_opts o = {0};
    store_scan *scans;
    store_page pg;
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &scans, &pg), 0);
    assert_int_equal(pg.n, 3);
    assert_string_equal(scans[0].id, s3);
    assert_null(scans[0].matches);
    assert_int_equal(scans[1].n_matches, 2);
    fill(sha, 32, 100);
    o.sha256 = sha;
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &scans, &pg), 0);
    assert_int_equal(pg.n, 2);
    assert_string_equal(scans[0].id, s3);
    assert_string_equal(scans[1].id, s1);
    o.sha256 = NULL;
    o.since_ms = sc.created_ms + 3600000;
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &scans, &pg), 0);
    assert_int_equal(pg.n, 0);

    /* Match list: filters. */
    store_list_opts mo = {.profile_id = p};
    store_match *ms;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 4);
    assert_string_equal(ms[0].id, m2[1]);
    mo.kinds = 1u << VG_MATCH_PDQ;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 2);
    for (size_t i = 0; i < pg.n; i++)
        assert_int_equal(ms[i].kind, VG_MATCH_PDQ);
    mo.kinds = 1u << VG_MATCH_FACE;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 0);
    mo.kinds = 1u << 9;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), VG_EINVAL);
    store_list_opts so = {.scan_id = s1, .limit = 1};
    assert_int_equal(store_match_list(f->st, f->t1, &so, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(ms[0].id, m1[1]);
    assert_string_equal(pg.next_cursor, m1[1]);
    so.cursor = m1[1];
    assert_int_equal(store_match_list(f->st, f->t1, &so, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(ms[0].id, m1[0]);
    assert_string_equal(pg.next_cursor, "");

    /* Validation, and a match on another profile's reference is refused with nothing stored. */
    char p2[STORE_ID_MAX], scan[STORE_ID_MAX];
    make_profile(f, f->t1, "Other", p2);
    store_match_new bad = {p2, r, VG_MATCH_PDQ, 3, 0.9, 0, -1, NULL, NULL, NULL};
    store_scan_new s = {.sha256 = sha, .n_matches = 1, .matches = &bad};
    assert_int_equal(store_scan_insert(f->st, f->t1, &s, scan, NULL), VG_ENOTFOUND);
    bad.profile_id = p;
    bad.confidence = 1.5;
    assert_int_equal(store_scan_insert(f->st, f->t1, &s, scan, NULL), VG_EINVAL);
    bad.confidence = 0.5;
    bad.distance = NAN;
    assert_int_equal(store_scan_insert(f->st, f->t1, &s, scan, NULL), VG_EINVAL);
    bad.distance = 1;
    bad.dihedral = 8;
    assert_int_equal(store_scan_insert(f->st, f->t1, &s, scan, NULL), VG_EINVAL);
    bad.dihedral = 0;
    s.sha256 = NULL;
    assert_int_equal(store_scan_insert(f->st, f->t1, &s, scan, NULL), VG_EINVAL);
    assert_int_equal(store_scan_insert(f->st, NULL, &s, scan, NULL), VG_EINVAL);
    o.since_ms = 0;
    assert_int_equal(store_scan_list(f->st, NULL, &o, f->a, &scans, &pg), 0);
    assert_int_equal(pg.n, 3);
    store_stats stt;
    store_stats_get(f->st, &stt);
    assert_int_equal(stt.scans_inserted, 3);
}

static void test_evidence_is_immutable(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    make_scan(f, f->t1, p, r, 1, s, NULL);
    assert_int_not_equal(raw_exec(f, "UPDATE scans SET source_url = 'x'"), 0);
    assert_int_not_equal(raw_exec(f, "DELETE FROM matches"), 0);
    assert_int_not_equal(raw_exec(f, "DELETE FROM scans"), 0);
    store_scan sc;
    assert_int_equal(store_scan_get(f->st, f->t1, s, f->a, &sc), 0);
    assert_int_equal(sc.n_matches, 2);
}

/* ---- soft delete keeps evidence ------------------------------------------------------------- */

static void test_soft_delete_keeps_evidence(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX], m[2][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    make_scan(f, f->t1, p, r, 1, s, m);
    assert_int_equal(store_reference_delete(f->st, f->t1, r), 0);
    assert_int_equal(store_profile_delete(f->st, f->t1, p, NULL, NULL, NULL), 0);

    store_scan sc;
    assert_int_equal(store_scan_get(f->st, f->t1, s, f->a, &sc), 0);
    assert_int_equal(sc.n_matches, 2);
    store_match mt;
    assert_int_equal(store_match_get(f->st, f->t1, m[0], f->a, &mt), 0);
    store_list_opts o = {.profile_id = p};
    store_match *ms;
    store_page pg;
    assert_int_equal(store_match_list(f->st, f->t1, &o, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 2);

    /* A notice can still be drafted from it: the source resolves the deleted rows. */
    store_notice_source src;
    assert_int_equal(store_notice_source_get(f->st, f->t1, m[0], f->a, &src), 0);
    assert_string_equal(src.reference.title, "Sunset");
    assert_true(src.reference.deleted_ms > 0);
    assert_string_equal(src.profile.f.legal_name, "Jane Q. Public");
    assert_true(src.profile.deleted_ms > 0);
    assert_string_equal(src.scan.id, s);
    assert_int_equal(src.match.kind, VG_MATCH_PDQ);

    /* A scan may still record a match on a reference deleted since it was matched. */
    char s2[STORE_ID_MAX];
    make_scan(f, f->t1, p, r, 2, s2, NULL);
}

/* ---- notices (storage side; the rule table is tested in test_dmca) -------------------------- */

static void notice_new(store_notice_new *n, const char *match_id)
{
    memset(n, 0, sizeof *n);
    n->match_id = match_id;
    n->infringing_url = "https://bad.example/x.jpg";
    n->recipient.name = "Designated Agent";
    n->recipient.email = "dmca@bad.example";
    n->claimant.name = "Jane Q. Public";
    n->claimant.email = "jane@example.com";
    n->signature = "/s/ Jane Q. Public";
    n->text = "NOTICE TEXT";
    n->html = "<p>NOTICE</p>";
}

static void test_notices(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX], m[2][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    make_scan(f, f->t1, p, r, 1, s, m);
    store_notice_new nn;
    notice_new(&nn, m[0]);
    char n1[STORE_ID_MAX], n2[STORE_ID_MAX];
    assert_int_equal(store_notice_create(f->st, f->t1, &nn, n1), 0);
    nn.match_id = m[1];
    assert_int_equal(store_notice_create(f->st, NULL, &nn, n2), 0); /* admin: match's tenant */

    store_notice n;
    assert_int_equal(store_notice_get(f->st, f->t1, n1, f->a, &n), 0);
    assert_int_equal(n.status, STORE_NOTICE_DRAFT);
    assert_string_equal(n.match_id, m[0]);
    assert_string_equal(n.profile_id, p);
    assert_string_equal(n.reference_id, r);
    assert_string_equal(n.text, "NOTICE TEXT");
    assert_string_equal(n.html, "<p>NOTICE</p>");
    assert_string_equal(n.recipient.email, "dmca@bad.example");
    assert_null(n.recipient.address);
    assert_int_equal(n.n_events, 1);
    assert_false(n.events[0].has_from);
    assert_int_equal(n.events[0].to, STORE_NOTICE_DRAFT);

    /* The store applies the given allowed-from set atomically. */
    store_notice_status from;
    assert_int_equal(store_notice_set_status(f->st, f->t1, n1, STORE_NOTICE_SENT,
                                             1u << STORE_NOTICE_DRAFT, "emailed", &from),
                     0);
    assert_int_equal(from, STORE_NOTICE_DRAFT);
    assert_int_equal(store_notice_set_status(f->st, f->t1, n1, STORE_NOTICE_SENT,
                                             1u << STORE_NOTICE_DRAFT, NULL, NULL),
                     VG_ECONFLICT);
    assert_non_null(strstr(vg_err_msg(), "'sent'"));
    assert_int_equal(
        store_notice_set_status(f->st, f->t1, n1, (store_notice_status)17, ~0u, NULL, NULL),
        VG_EINVAL);
    assert_int_equal(store_notice_get(f->st, f->t1, n1, f->a, &n), 0);
    assert_int_equal(n.status, STORE_NOTICE_SENT);
    assert_int_equal(n.n_events, 2);
    assert_true(n.events[1].has_from);
    assert_int_equal(n.events[1].from, STORE_NOTICE_DRAFT);
    assert_int_equal(n.events[1].to, STORE_NOTICE_SENT);
    assert_string_equal(n.events[1].note, "emailed");

    /* Lists: text not loaded; filter by status and profile. */
    store_list_opts o = {.statuses = 1u << STORE_NOTICE_SENT};
    store_notice *items;
    store_page pg;
    assert_int_equal(store_notice_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(items[0].id, n1);
    assert_null(items[0].text);
    o.statuses = 0;
    o.profile_id = p;
    assert_int_equal(store_notice_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 2);
    o.statuses = 1u << 12;
    assert_int_equal(store_notice_list(f->st, f->t1, &o, f->a, &items, &pg), VG_EINVAL);

    /* Frozen: the schema refuses edits of the drafted text and deletion of history. */
    assert_int_not_equal(raw_exec(f, "UPDATE notices SET body_text = 'x'"), 0);
    assert_int_not_equal(raw_exec(f, "DELETE FROM notice_events"), 0);
    assert_int_not_equal(raw_exec(f, "UPDATE notice_events SET note = 'x'"), 0);

    /* Validation. */
    notice_new(&nn, m[0]);
    nn.recipient.name = NULL;
    assert_int_equal(store_notice_create(f->st, f->t1, &nn, n2), VG_EINVAL);
    assert_non_null(strstr(vg_err_msg(), "recipient.name"));
    notice_new(&nn, "mat_00000000000000000000000000");
    assert_int_equal(store_notice_create(f->st, f->t1, &nn, n2), VG_ENOTFOUND);
}

/* ---- tenant isolation ----------------------------------------------------------------------- */

static void test_tenant_isolation(void **state)
{
    fx *f = *state;
    const char *A = f->t1, *B = f->t2;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX], m[2][STORE_ID_MAX], n[STORE_ID_MAX];
    char k[STORE_ID_MAX], x[STORE_ID_MAX];
    make_profile(f, A, "Jane", p);
    make_work(f, A, p, 1, r);
    make_scan(f, A, p, r, 1, s, m);
    store_notice_new nn;
    notice_new(&nn, m[0]);
    assert_int_equal(store_notice_create(f->st, A, &nn, n), 0);
    uint8_t h[32];
    fill(h, 32, 9);
    assert_int_equal(store_key_create(f->st, A, "k", h, k), 0);
    vg_arena *a = f->a;

    /* Reads by B: not found, never data. */
    store_profile pr;
    store_reference rf;
    store_scan sc;
    store_match mt;
    store_notice nt;
    store_notice_source src;
    const uint8_t *bytes;
    size_t len;
    assert_int_equal(store_profile_get(f->st, B, p, a, &pr), VG_ENOTFOUND);
    assert_int_equal(store_reference_get(f->st, B, r, a, &rf), VG_ENOTFOUND);
    assert_int_equal(store_reference_image_get(f->st, B, r, a, &bytes, &len), VG_ENOTFOUND);
    assert_int_equal(store_scan_get(f->st, B, s, a, &sc), VG_ENOTFOUND);
    assert_int_equal(store_match_get(f->st, B, m[0], a, &mt), VG_ENOTFOUND);
    assert_int_equal(store_notice_get(f->st, B, n, a, &nt), VG_ENOTFOUND);
    assert_int_equal(store_notice_source_get(f->st, B, m[0], a, &src), VG_ENOTFOUND);

    /* Writes by B on A's rows: not found, and nothing changed. */
    store_profile_fields up = {.name = "pwned"};
    assert_int_equal(store_profile_update(f->st, B, p, &up), VG_ENOTFOUND);
    assert_int_equal(store_profile_delete(f->st, B, p, NULL, NULL, NULL), VG_ENOTFOUND);
    assert_int_equal(store_reference_delete(f->st, B, r), VG_ENOTFOUND);
    assert_int_equal(store_key_revoke(f->st, B, k), VG_ENOTFOUND);
    assert_int_equal(store_notice_set_status(f->st, B, n, STORE_NOTICE_SENT, ~0u, NULL, NULL),
                     VG_ENOTFOUND);
    nn.match_id = m[0];
    assert_int_equal(store_notice_create(f->st, B, &nn, x), VG_ENOTFOUND);
    uint8_t sha[32] = {7};
    store_reference_new rn = {.profile_id = p, .kind = STORE_REF_WORK, .sha256 = sha};
    assert_int_equal(store_reference_create(f->st, B, &rn, x, NULL), VG_ENOTFOUND);
    store_match_new mn = {p, r, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL};
    store_scan_new sn = {.sha256 = sha, .n_matches = 1, .matches = &mn};
    assert_int_equal(store_scan_insert(f->st, B, &sn, x, NULL), VG_ENOTFOUND);

    assert_int_equal(store_profile_get(f->st, A, p, a, &pr), 0);
    assert_string_equal(pr.f.name, "Jane");
    assert_int_equal(store_reference_get(f->st, A, r, a, &rf), 0);
    assert_int_equal(store_notice_get(f->st, A, n, a, &nt), 0);
    assert_int_equal(nt.status, STORE_NOTICE_DRAFT);
    store_key key;
    assert_int_equal(store_key_authenticate(f->st, h, a, &key), 0);

    /* Lists by B are empty, including with A's ids as filters or cursors. */
    store_list_opts o = {0};
    store_page pg;
    void *items;
    assert_int_equal(store_profile_list(f->st, B, &o, a, (store_profile **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_reference_list(f->st, B, &o, a, (store_reference **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_scan_list(f->st, B, &o, a, (store_scan **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_match_list(f->st, B, &o, a, (store_match **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_notice_list(f->st, B, &o, a, (store_notice **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_key_list(f->st, B, &o, a, (store_key **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    o.profile_id = p;
    assert_int_equal(store_match_list(f->st, B, &o, a, (store_match **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    assert_int_equal(store_reference_list(f->st, B, &o, a, (store_reference **)&items, &pg), 0);
    assert_int_equal(pg.n, 0);
    size_t cnt = 9;
    assert_int_equal(store_reference_count(f->st, B, &cnt), 0);
    assert_int_equal(cnt, 0);
    walk w = {0};
    assert_int_equal(store_reference_foreach(f->st, B, walk_cb, &w), 0);
    assert_int_equal(w.n, 0);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

typedef struct writer_ctx {
    fx *f;
    const char *tenant, *profile, *ref;
    int n, base;
    int errors;
    volatile int *stop;
} writer_ctx;

static void *writer_main(void *arg)
{
    writer_ctx *w = arg;
    for (int i = 0; i < w->n && !(w->stop && *w->stop); i++) {
        uint8_t sha[32];
        fill(sha, 32, (unsigned)(w->base + i));
        store_match_new m[2] = {
            {w->profile, w->ref, VG_MATCH_PDQ, 10, 0.9, 0, -1, NULL, NULL, NULL},
            {w->profile, w->ref, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL}};
        store_scan_new s = {.sha256 = sha, .n_matches = 2, .matches = m, .level = "speed"};
        char id[STORE_ID_MAX], mids[2][STORE_ID_MAX];
        if (store_scan_insert(w->f->st, w->tenant, &s, id, mids) != 0)
            w->errors++;
    }
    return NULL;
}

static void test_group_commit_concurrent_writers(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    enum { T = 8, PER = 40 };
    pthread_t th[T];
    writer_ctx w[T];
    store_stats before;
    store_stats_get(f->st, &before);
    for (int i = 0; i < T; i++) {
        w[i] = (writer_ctx){f, f->t1, p, r, PER, i * 1000, 0, NULL};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    store_stats after;
    store_stats_get(f->st, &after);
    assert_int_equal(after.scans_inserted - before.scans_inserted, T * PER);
    assert_int_equal(after.write_ops - before.write_ops, T * PER);
    assert_true(after.commits - before.commits <= T * PER);
    store_list_opts o = {.limit = 1000};
    store_scan *items;
    store_page pg;
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, T * PER);
    for (size_t i = 1; i < pg.n; i++)
        assert_true(strcmp(items[i - 1].id, items[i].id) > 0);
    store_list_opts mo = {.limit = 1000};
    store_match *ms;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 2 * T * PER);
}

/* Mixed group: one op of a group fails (bad reference), the others commit. */
typedef struct mixed_ctx {
    fx *f;
    const char *profile, *ref;
    int rc;
    int tries; /* inserts to attempt; 0 = 20 */
} mixed_ctx;

static void *mixed_main(void *arg)
{
    mixed_ctx *c = arg;
    uint8_t sha[32] = {1};
    store_match_new m = {c->profile, c->ref, VG_MATCH_EXACT, 0, 1, -1, -1, NULL, NULL, NULL};
    store_scan_new s = {.sha256 = sha, .n_matches = 1, .matches = &m};
    char id[STORE_ID_MAX];
    c->rc = 0;
    for (int i = 0; i < (c->tries ? c->tries : 20) && !c->rc; i++)
        c->rc = store_scan_insert(c->f->st, c->f->t1, &s, id, NULL);
    return NULL;
}

static void test_group_commit_isolates_failures(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    enum { T = 6 };
    pthread_t th[T];
    mixed_ctx c[T];
    for (int i = 0; i < T; i++) {
        c[i] = (mixed_ctx){f, p, i % 2 ? r : "ref_00000000000000000000000000", 0, 0};
        pthread_create(&th[i], NULL, mixed_main, &c[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++)
        assert_int_equal(c[i].rc, i % 2 ? 0 : VG_ENOTFOUND);
    store_list_opts o = {.limit = 1000};
    store_scan *items;
    store_page pg;
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 3 * 20); /* the failing callers stopped at their first try */

    /* Now force one group: another connection holds the write lock, so the first leader waits
     * in BEGIN while every other caller queues behind it; once the lock goes, the next leader
     * commits all of them in one transaction, good and bad mixed. */
    store_stats before, after;
    store_stats_get(f->st, &before);
    raw_lock lk;
    raw_lock_take(f, "scans", &lk);
    enum { G = 8 };
    pthread_t tg[G];
    mixed_ctx g[G];
    for (int i = 0; i < G; i++) {
        g[i] = (mixed_ctx){f, p, i % 2 ? r : "ref_00000000000000000000000000", 0, 1};
        pthread_create(&tg[i], NULL, mixed_main, &g[i]);
    }
    usleep(500000);
    raw_lock_release(&lk);
    for (int i = 0; i < G; i++)
        pthread_join(tg[i], NULL);
    for (int i = 0; i < G; i++)
        assert_int_equal(g[i].rc, i % 2 ? 0 : VG_ENOTFOUND);
    store_stats_get(f->st, &after);
    assert_int_equal(after.write_ops - before.write_ops, G / 2);
    /* Typically 2 (the first leader alone, then one group of 7); fewer commits than good
     * writes in any case, or no group ever formed. */
    assert_true(after.commits - before.commits < G / 2);
    assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 3 * 20 + G / 2);
    for (size_t i = 0; i < pg.n; i++)
        assert_int_equal(items[i].n_matches, 1);
    store_list_opts mo = {.limit = 1000};
    store_match *ms;
    assert_int_equal(store_match_list(f->st, f->t1, &mo, f->a, &ms, &pg), 0);
    assert_int_equal(pg.n, 3 * 20 + G / 2);
}

static void test_cursor_stable_under_concurrent_inserts(void **state)
{
    fx *f = *state;
    char p[STORE_ID_MAX], r[STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    enum { PRE = 120 };
    writer_ctx pre = {f, f->t1, p, r, PRE, 0, 0, NULL};
    writer_main(&pre);
    assert_int_equal(pre.errors, 0);

    volatile int stop = 0;
    writer_ctx bg = {f, f->t1, p, r, 100000, 50000, 0, &stop};
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &bg);

    /* Page through while the writer inserts: every pre-existing scan exactly once, strictly
     * decreasing ids, and nothing newer than the first page's first row after page one. */
    store_list_opts o = {.limit = 7};
    char cursor[STORE_ID_MAX] = "", first[STORE_ID_MAX] = "", last[STORE_ID_MAX] = "";
    int total = 0;
    for (;;) {
        store_scan *items;
        store_page pg;
        o.cursor = cursor[0] ? cursor : NULL;
        assert_int_equal(store_scan_list(f->st, f->t1, &o, f->a, &items, &pg), 0);
        for (size_t i = 0; i < pg.n; i++) {
            if (!first[0])
                strcpy(first, items[i].id);
            if (last[0])
                assert_true(strcmp(items[i].id, last) < 0);
            strcpy(last, items[i].id);
            total++;
        }
        vg_arena_reset(f->a);
        if (!pg.next_cursor[0])
            break;
        strcpy(cursor, pg.next_cursor);
        usleep(500);
    }
    stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(bg.errors, 0);
    /* Everything at or below the first row seen: the PRE rows plus those the writer had
     * committed before the first page. Count them now and compare. */
    store_list_opts c = {.limit = 1000};
    char after_first[STORE_ID_MAX];
    snprintf(after_first, sizeof after_first, "%s", first);
    int expect = 1; /* the first row itself */
    c.cursor = after_first;
    for (;;) {
        store_scan *items;
        store_page pg;
        assert_int_equal(store_scan_list(f->st, f->t1, &c, f->a, &items, &pg), 0);
        expect += (int)pg.n;
        if (!pg.next_cursor[0])
            break;
        strcpy(after_first, pg.next_cursor);
        c.cursor = after_first;
    }
    assert_int_equal(total, expect);
    assert_true(total >= PRE);
}

static void test_background_checkpoints(void **state)
{
    fx *f = *state;
    SKIP_ON_PG("WAL checkpoints are SQLite's; PostgreSQL checkpoints by itself");
    store_config c;
    fx_config(f, &c);
    c.checkpoint_pages = 16;
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char t[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, t), 0);
    static char json[3000];
    memset(json, 'j', sizeof json - 1);
    for (int i = 0; i < 200; i++) {
        uint8_t sha[32];
        fill(sha, 32, (unsigned)i);
        store_scan_new s = {.sha256 = sha, .faces_json = json};
        char id[STORE_ID_MAX];
        assert_int_equal(store_scan_insert(st, t, &s, id, NULL), 0);
    }
    /* The checkpointer runs on its own thread: give it a moment. */
    store_stats stt;
    for (int i = 0; i < 200; i++) {
        store_stats_get(st, &stt);
        if (stt.checkpoints >= 2)
            break;
        usleep(10000);
    }
    assert_true(stt.checkpoints >= 2);
    store_close(st);
    /* Clean close: the WAL is folded back and removed. */
    char wal[192];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_not_equal(access(wal, F_OK), 0);
    assert_int_equal(store_open(&c, &st), 0);
    store_list_opts o = {.limit = 1000};
    store_scan *items;
    store_page pg;
    assert_int_equal(store_scan_list(st, t, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 200);
    store_close(st);
}

/* More distinct list queries than one connection caches: the extra ones are prepared per call
 * and finalized (ASan would see a leak), and every answer stays right. */
static void test_statement_cache_bound(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    c.read_connections = 1;
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    store_close(f->st);
    f->st = st;
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX], m[2][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    make_scan(f, f->t1, p, r, 1, s, m);
    int calls = 0;
    for (int round = 0; round < 2; round++) {
        for (unsigned bits = 0; bits < 128; bits++) {
            for (unsigned kinds = 0; kinds < 8; kinds++) {
                store_list_opts o = {.kinds = kinds};
                o.profile_id = bits & 1 ? p : NULL;
                o.scan_id = bits & 2 ? s : NULL;
                o.cursor = bits & 4 ? "mat_7zzzzzzzzzzzzzzzzzzzzzzzzz" : NULL; /* max id */
                o.since_ms = bits & 8 ? 1 : 0;
                o.until_ms = bits & 16 ? (int64_t)1 << 46 : 0;
                o.limit = bits & 32 ? 1 : 0;
                const char *tenant = bits & 64 ? NULL : f->t1;
                store_match *ms;
                store_page pg;
                assert_int_equal(store_match_list(st, tenant, &o, f->a, &ms, &pg), 0);
                /* Two matches, one pdq and one exact; the other filters let both through. */
                size_t want = (size_t)(!kinds || (kinds & 1)) + (size_t)(!kinds || (kinds & 2));
                if (o.limit == 1 && want > 1)
                    want = 1;
                assert_int_equal(pg.n, want);
                vg_arena_reset(f->a);
                calls++;
            }
        }
    }
    assert_int_equal(calls, 2048);
}

/* ---- error paths ---------------------------------------------------------------------------- */

static void test_disk_full(void **state)
{
    fx *f = *state;
    SKIP_ON_PG("the size quota (max_db_bytes) is SQLite's max_page_count");
    store_config c;
    fx_config(f, &c);
    c.max_db_bytes = 1 << 20; /* 256 pages of 4 KiB */
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char t[STORE_ID_MAX], p[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, t), 0);
    store_profile_fields pf = {.name = "p"};
    assert_int_equal(store_profile_create(st, t, &pf, p), 0);
    static char big[100000];
    memset(big, 'x', sizeof big - 1);
    int rc = 0, ok = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        uint8_t sha[32];
        fill(sha, 32, (unsigned)i);
        store_scan_new s = {.sha256 = sha, .faces_json = big};
        char id[STORE_ID_MAX];
        rc = store_scan_insert(st, t, &s, id, NULL);
        ok += rc == 0;
    }
    assert_int_equal(rc, VG_ENOSPC); /* answered 503 + Retry-After, never 500 */
    assert_true(ok >= 1);
    store_stats stt;
    store_stats_get(st, &stt);
    assert_true(stt.errors >= 1);
    assert_non_null(strstr(stt.last_error, "full"));
    assert_true(stt.last_error_ms > 0);
    /* The store goes on: reads work, committed data is intact, small writes still fit. */
    store_list_opts o = {.limit = 1000};
    store_scan *items;
    store_page pg;
    assert_int_equal(store_scan_list(st, t, &o, f->a, &items, &pg), 0);
    assert_int_equal((int)pg.n, ok);
    store_profile pr;
    assert_int_equal(store_profile_get(st, t, p, f->a, &pr), 0);
    assert_int_equal(store_ping(st), 0);
    store_close(st);
}

/* An I/O error mid-operation: the WAL file is made immutable (chattr +i, which stops root too)
 * so the next commit's write fails. The write reports VG_ESTORE, the counters record it, reads
 * go on, and once the file is writable again so do writes. Skipped where chattr is not allowed
 * (no CAP_LINUX_IMMUTABLE, or a filesystem without the attribute). */
static void test_io_error_and_recovery(void **state)
{
    fx *f = *state;
    SKIP_ON_PG("I/O errors on the database files are the server's on PostgreSQL");
    store_config c;
    fx_config(f, &c);
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char t[STORE_ID_MAX], t2[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "before", STORE_TENANT_AGENCY, t), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chattr +i %s-wal 2>/dev/null", f->path);
    if (system(cmd) != 0) {
        store_close(st);
        skip();
    }
    /* Some filesystems (tmpfs) refuse new opens of an immutable file but let writes through a
     * descriptor opened before, as SQLite's is: probe that on a scratch file beside the WAL. */
    char probe_path[200];
    snprintf(probe_path, sizeof probe_path, "%s.probe", f->path);
    int probe = open(probe_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(probe >= 0);
    snprintf(cmd, sizeof cmd, "chattr +i %s 2>/dev/null", probe_path);
    int enforced = system(cmd) == 0 && write(probe, "x", 1) < 0;
    close(probe);
    snprintf(cmd, sizeof cmd, "chattr -i %s 2>/dev/null", probe_path);
    (void)!system(cmd);
    unlink(probe_path);
    if (!enforced) {
        snprintf(cmd, sizeof cmd, "chattr -i %s-wal", f->path);
        assert_int_equal(system(cmd), 0);
        store_close(st);
        skip();
    }
    int rc = store_tenant_create(st, "during", STORE_TENANT_AGENCY, t2);
    store_stats stt;
    store_stats_get(st, &stt);
    int ping = store_ping(st);
    snprintf(cmd, sizeof cmd, "chattr -i %s-wal", f->path);
    int undo = system(cmd);
    assert_int_equal(undo, 0);
    assert_int_equal(rc, VG_ESTORE);
    assert_true(stt.errors >= 1);
    assert_true(stt.last_error[0] != 0);
    assert_int_equal(ping, 0);
    assert_int_equal(store_tenant_create(st, "after", STORE_TENANT_AGENCY, t2), 0);
    store_tenant tt;
    assert_int_equal(store_tenant_get(st, t, f->a, &tt), 0);
    assert_int_equal(store_tenant_get(st, t2, f->a, &tt), 0);
    assert_string_equal(tt.name, "after");
    store_list_opts o = {0};
    store_tenant *items;
    store_page pg;
    assert_int_equal(store_tenant_list(st, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, 2); /* "during" was never committed */
    store_close(st);
}

static void test_locked_database_is_busy(void **state)
{
    fx *f = *state;
    store_config c;
    fx_config(f, &c);
    c.busy_timeout_ms = 150;
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    raw_lock lk;
    raw_lock_take(f, "tenants", &lk);
    char t[STORE_ID_MAX];
    uint64_t t0 = vg_now_ns();
    assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, t), VG_EBUSY);
    uint64_t waited_ms = (vg_now_ns() - t0) / 1000000;
    assert_true(waited_ms >= 100);
    store_stats stt;
    store_stats_get(st, &stt);
    assert_true(stt.busy_retries >= 1);
    assert_true(stt.errors >= 1);
    assert_non_null(strstr(stt.last_error, "locked"));
    /* Readers are not blocked by a writer in WAL mode. */
    assert_int_equal(store_ping(st), 0);
    raw_lock_release(&lk);
    assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, t), 0);
    store_close(st);
}

/* ---- durability: kill -9 during a stream of writes ------------------------------------------ */

typedef struct dur_ctx {
    store *st;
    const char *tenant;
    int fd;
    pthread_mutex_t *mu;
    unsigned seed;
} dur_ctx;

static void *dur_writer(void *arg)
{
    dur_ctx *d = arg;
    for (unsigned i = 0;; i++) {
        uint8_t sha[32];
        fill(sha, 32, d->seed + i);
        store_scan_new s = {.sha256 = sha, .source_url = "https://x.example/a.jpg"};
        char id[STORE_ID_MAX + 1];
        if (store_scan_insert(d->st, d->tenant, &s, id, NULL) != 0)
            _exit(3);
        /* Reported only after the commit returned: this is the acknowledgement. */
        size_t n = strlen(id);
        id[n] = '\n';
        pthread_mutex_lock(d->mu);
        ssize_t wr = write(d->fd, id, n + 1);
        pthread_mutex_unlock(d->mu);
        if (wr != (ssize_t)(n + 1))
            _exit(4);
    }
    return NULL;
}

static void test_durability_kill9(void **state)
{
    fx *f = *state;
    store_config c;
    store_config_default(&c);
    c.path = f->path;
    c.synchronous = STORE_SYNC_FULL;
    char tenant[STORE_ID_MAX];
    {
        store *st = NULL;
        assert_int_equal(store_open(&c, &st), 0);
        assert_int_equal(store_tenant_create(st, "t", STORE_TENANT_AGENCY, tenant), 0);
        store_close(st);
    }
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        store *st = NULL;
        if (store_open(&c, &st) != 0)
            _exit(2);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        enum { T = 4 };
        dur_ctx d[T];
        pthread_t th[T];
        for (int i = 0; i < T; i++) {
            d[i] = (dur_ctx){st, tenant, pfd[1], &mu, (unsigned)i * 100000u};
            pthread_create(&th[i], NULL, dur_writer, &d[i]);
        }
        for (;;)
            pause();
    }
    close(pfd[1]);
    /* Read acknowledgements until we have enough, then kill -9 mid-stream. */
    enum { WANT = 300, MAXIDS = 100000 };
    static char ids[MAXIDS][STORE_ID_MAX];
    int n = 0;
    char buf[4096], line[64];
    size_t ll = 0;
    int killed = 0;
    for (;;) {
        ssize_t r = read(pfd[0], buf, sizeof buf);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                line[ll] = 0;
                if (n < MAXIDS && ll < STORE_ID_MAX)
                    strcpy(ids[n++], line);
                ll = 0;
            } else if (ll < sizeof line - 1) {
                line[ll++] = buf[i];
            }
        }
        if (n >= WANT && !killed) {
            kill(pid, SIGKILL);
            killed = 1; /* keep draining what was acknowledged before the kill */
        }
    }
    close(pfd[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_true(n >= WANT);

    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    for (int i = 0; i < n; i++) {
        store_scan sc;
        int rc = store_scan_get(st, tenant, ids[i], f->a, &sc);
        if (rc != 0)
            fail_msg("acknowledged scan %s (%d of %d) lost after kill -9", ids[i], i, n);
        vg_arena_reset(f->a);
    }
    store_close(st);
}

/* The change log (docs/SCALING.md): one row per committed change, in the change's own
 * transaction (a refused write leaves none), in seq order, readable after any seq, pruned by age.
 */
static void test_change_log(void **state)
{
    fx *f = *state;
    int64_t head = -1;
    assert_int_equal(store_changes_head(f->st, &head), 0);
    assert_int_equal(head, 0);
    char p[STORE_ID_MAX], r1[STORE_ID_MAX], r2[STORE_ID_MAX], r3[STORE_ID_MAX];
    store_profile_fields pf = {.name = "P"};
    assert_int_equal(store_profile_create(f->st, f->t1, &pf, p), 0);
    uint8_t s1[32] = {1}, s2[32] = {2}, s3[32] = {3};
    int64_t k1 = 0, k2 = 0, k3 = 0;
    store_reference_new nr = {.profile_id = p, .kind = STORE_REF_WORK, .sha256 = s1};
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r1, &k1), 0);
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r1, NULL), VG_EEXIST); /* no row */
    nr.sha256 = s2;
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r2, &k2), 0);
    nr.sha256 = s3;
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r3, &k3), 0);
    assert_true(k1 > 0 && k2 > k1 && k3 > k2);
    assert_int_equal(store_reference_delete(f->st, f->t1, r1), 0);
    assert_int_equal(store_reference_delete(f->st, f->t2, r2), VG_ENOTFOUND); /* no row */
    assert_int_equal(store_profile_delete(f->st, f->t1, p, NULL, NULL, NULL), 0);
    char key[STORE_ID_MAX];
    uint8_t kh[VG_SHA256_BYTES] = {9};
    assert_int_equal(store_key_create(f->st, f->t1, "k", kh, key), 0);
    assert_int_equal(store_key_revoke(f->st, f->t1, key), 0);
    assert_int_equal(store_key_revoke(f->st, f->t1, key), 0); /* already revoked: no row */

    store_change ch[16];
    size_t n = 0;
    assert_int_equal(store_changes_read(f->st, 0, ch, 16, &n), 0);
    assert_int_equal(n, 8);
    /* Reference rows carry the reference's key (the profile delete's too), others 0. */
    struct {
        store_change_kind kind;
        const char *id;
        int64_t key;
        int remove;
        const uint8_t *sha;
    } want[8] = {{STORE_CHANGE_REFERENCE, r1, k1, 0, s1}, {STORE_CHANGE_REFERENCE, r2, k2, 0, s2},
                 {STORE_CHANGE_REFERENCE, r3, k3, 0, s3}, {STORE_CHANGE_REFERENCE, r1, k1, 1, s1},
                 {STORE_CHANGE_REFERENCE, r2, k2, 1, s2}, {STORE_CHANGE_REFERENCE, r3, k3, 1, s3},
                 {STORE_CHANGE_PROFILE, p, 0, 1, NULL},   {STORE_CHANGE_KEY, key, 0, 1, NULL}};
    for (size_t i = 0; i < n; i++) {
        assert_true(i == 0 || ch[i].seq > ch[i - 1].seq);
        assert_string_equal(ch[i].tenant_id, f->t1);
        assert_int_equal(ch[i].kind, want[i].kind);
        assert_string_equal(ch[i].object_id, want[i].id);
        assert_int_equal(ch[i].object_key, want[i].key);
        assert_int_equal(ch[i].remove, want[i].remove);
        assert_int_equal(ch[i].has_sha256, want[i].sha != NULL);
        if (want[i].sha)
            assert_memory_equal(ch[i].sha256, want[i].sha, 32);
        assert_true(ch[i].created_ms > 0);
    }
    assert_int_equal(store_changes_head(f->st, &head), 0);
    assert_int_equal(head, ch[7].seq);
    /* After a seq, and a page at a time. */
    assert_int_equal(store_changes_read(f->st, ch[5].seq, ch, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ch[0].kind, STORE_CHANGE_PROFILE);
    assert_int_equal(store_changes_read(f->st, head, ch, 16, &n), 0);
    assert_int_equal(n, 0);
    /* Pruning by age keeps the head: seqs are never reused. */
    size_t pruned = 0;
    assert_int_equal(store_changes_prune(f->st, vg_wall_ms() + 1, &pruned), 0);
    assert_int_equal(pruned, 8);
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r3, NULL),
                     VG_ENOTFOUND); /* profile gone */
    assert_int_equal(store_profile_create(f->st, f->t1, &pf, p), 0);
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r3, NULL), 0);
    assert_int_equal(store_changes_read(f->st, 0, ch, 16, &n), 0);
    assert_int_equal(n, 1);
    assert_true(ch[0].seq > head);
}

/* ---- several nodes on one database ---------------------------------------------------------- */

typedef struct node_ctx {
    store *st;
    const char *tenant, *profile;
    int id, n_ok;
    int rc;
    char err[256];
} node_ctx;

static void *node_writer(void *arg)
{
    node_ctx *c = arg;
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "node %d write %d", c->id, i);
        store_profile_fields pf = {.name = name};
        /* Every node rewrites the same row: on PostgreSQL concurrent SERIALIZABLE transactions
         * conflict (40001) and are run again; on SQLite the second writer waits for the lock. */
        int rc = store_profile_update(c->st, c->tenant, c->profile, &pf);
        if (rc) {
            c->rc = rc;
            snprintf(c->err, sizeof c->err, "%s", vg_err_msg());
            return NULL;
        }
        uint8_t sha[32] = {0};
        uint32_t u = (uint32_t)(c->id * 1000 + i);
        memcpy(sha, &u, sizeof u);
        store_scan_new s = {.sha256 = sha};
        char id[STORE_ID_MAX];
        if ((rc = store_scan_insert(c->st, c->tenant, &s, id, NULL)) != 0) {
            c->rc = rc;
            snprintf(c->err, sizeof c->err, "%s", vg_err_msg());
            return NULL;
        }
        c->n_ok++;
    }
    return NULL;
}

typedef struct node_open {
    store_config c;
    store *st;
    int rc;
} node_open;

static void *node_open_main(void *arg)
{
    node_open *o = arg;
    o->rc = store_open(&o->c, &o->st);
    return NULL;
}

/* Two nodes (two store objects) start at once on one new database: both migrate it without
 * tripping over each other (SQLite: BEGIN IMMEDIATE; PostgreSQL: the migration advisory lock),
 * then both write the same rows concurrently, two threads each: every write succeeds (PostgreSQL
 * runs a transaction that lost a serialization conflict again) and all of them are there. */
static void test_two_nodes_one_database(void **state)
{
    fx *f = *state;
    enum { NODES = 2, THREADS = 2 };
    node_open no[NODES];
    pthread_t th[NODES * THREADS];
    for (int i = 0; i < NODES; i++) {
        fx_config(f, &no[i].c);
        pthread_create(&th[i], NULL, node_open_main, &no[i]);
    }
    for (int i = 0; i < NODES; i++) {
        pthread_join(th[i], NULL);
        if (no[i].rc)
            fail_msg("node %d did not open: %d", i, no[i].rc);
    }
    size_t nm;
    store__migrations(&nm);
    assert_int_equal(store_schema_version(no[0].st), (int)nm);
    assert_int_equal(store_schema_version(no[1].st), (int)nm);
    char t[STORE_ID_MAX], p[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(no[0].st, "t", STORE_TENANT_AGENCY, t), 0);
    store_profile_fields pf = {.name = "shared"};
    assert_int_equal(store_profile_create(no[1].st, t, &pf, p), 0);
    node_ctx c[NODES * THREADS];
    for (int i = 0; i < NODES * THREADS; i++) {
        c[i] = (node_ctx){no[i % NODES].st, t, p, i, 0, 0, ""};
        pthread_create(&th[i], NULL, node_writer, &c[i]);
    }
    for (int i = 0; i < NODES * THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NODES * THREADS; i++) {
        if (c[i].rc)
            fail_msg("writer %d failed after %d writes: %d %s", i, c[i].n_ok, c[i].rc, c[i].err);
    }
    store_list_opts o = {.limit = 1000};
    store_scan *items;
    store_page pg;
    assert_int_equal(store_scan_list(no[0].st, t, &o, f->a, &items, &pg), 0);
    assert_int_equal(pg.n, NODES * THREADS * 100);
    store_stats s0, s1;
    store_stats_get(no[0].st, &s0);
    store_stats_get(no[1].st, &s1);
    print_message("two nodes: %llu + %llu transactions run again after a conflict\n",
                  (unsigned long long)s0.txn_retries, (unsigned long long)s1.txn_retries);
    for (int i = 0; i < NODES; i++)
        store_close(no[i].st);
}

/* ---- PostgreSQL sessions killed under the store --------------------------------------------- */

/* The database goes away for good (its sessions terminated and new ones refused: ALLOW_CONNECTIONS
 * false, an outage of this test's database only, so parallel tests keep their server): the first
 * call waits out reconnect_timeout_ms and fails VG_EUNAVAIL; from then on reads and writes fail
 * at once with "database unavailable" (well under half the reconnect timeout: a generous bound,
 * the point being that no call waits out its own reconnect) and the stats say so. Once the
 * database takes connections again a call after the backoff reconnects and the write
 * acknowledged before the outage is there. */
static void test_pg_unavailable_fails_fast(void **state)
{
    fx *f = *state;
    if (!g_pg) {
        print_message("skipped on SQLite: takes the PostgreSQL database away\n");
        skip();
    }
    store_config c;
    fx_config(f, &c);
    c.reconnect_timeout_ms = 2000;
    c.retry_max_ms = 200;
    store *st = NULL;
    assert_int_equal(store_open(&c, &st), 0);
    char acked[STORE_ID_MAX], t[STORE_ID_MAX];
    assert_int_equal(store_tenant_create(st, "acked", STORE_TENANT_CREATOR, acked), 0);
    char sql[300];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", f->dbname);
    assert_int_equal(pg_admin(sql), 0);
    snprintf(sql, sizeof sql,
             "DO $$BEGIN PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname "
             "= '%s'; END$$",
             f->dbname);
    assert_int_equal(pg_admin(sql), 0);

    assert_int_equal(store_tenant_create(st, "lost", STORE_TENANT_CREATOR, t), VG_EUNAVAIL);
    store_stats ss;
    store_stats_get(st, &ss);
    assert_true(ss.unavailable_since_ms > 0);
    uint64_t t0 = vg_now_ns();
    for (int i = 0; i < 5; i++) {
        assert_int_equal(store_ping(st), VG_EUNAVAIL);
        assert_non_null(strstr(vg_err_msg(), "database unavailable"));
        assert_int_equal(store_tenant_create(st, "lost", STORE_TENANT_CREATOR, t), VG_EUNAVAIL);
    }
    uint64_t ms = (vg_now_ns() - t0) / 1000000;
    print_message("10 calls while the database was down took %llu ms in all\n",
                  (unsigned long long)ms);
    assert_true(ms < c.reconnect_timeout_ms / 2);
    store_stats_get(st, &ss);
    assert_true(ss.unavailable_fails >= 5);

    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", f->dbname);
    assert_int_equal(pg_admin(sql), 0);
    int rc = -1;
    for (int i = 0; i < 300 && rc != 0; i++) { /* a bound on a hung test, not a timing check */
        rc = store_ping(st);
        if (rc)
            usleep(20000);
    }
    assert_int_equal(rc, 0);
    store_stats_get(st, &ss);
    assert_int_equal(ss.unavailable_since_ms, 0);
    store_tenant tn;
    assert_int_equal(store_tenant_get(st, acked, f->a, &tn), 0);
    assert_int_equal(store_tenant_create(st, "after", STORE_TENANT_CREATOR, t), 0);
    store_close(st);
}

/* Every session of the store is terminated by the server (pg_terminate_backend, what an
 * operator or a failover does): the next writes and reads, single statements and the
 * multi-statement read of a notice source, succeed on new sessions without any call to the
 * store, twice in a row. */
static void test_pg_sessions_killed(void **state)
{
    fx *f = *state;
    if (!g_pg) {
        print_message("skipped on SQLite: terminates PostgreSQL sessions\n");
        skip();
    }
    char p[STORE_ID_MAX], r[STORE_ID_MAX], s[STORE_ID_MAX], m[2][STORE_ID_MAX];
    make_profile(f, f->t1, "Jane", p);
    make_work(f, f->t1, p, 1, r);
    for (int round = 0; round < 2; round++) {
        make_scan(f, f->t1, p, r, 10u + (unsigned)round, s, m);
        for (int i = 0; i < 8; i++) { /* every reader of the pool has a session */
            store_scan sc;
            assert_int_equal(store_scan_get(f->st, f->t1, s, f->a, &sc), 0);
        }
        long killed = raw_long(f,
                               "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = 'vigil' AND datname = current_database()",
                               0);
        assert_true(killed >= 2); /* the writer and at least one reader */
        for (int i = 0; i < 8; i++) {
            store_notice_source src;
            assert_int_equal(store_notice_source_get(f->st, f->t1, m[0], f->a, &src), 0);
            assert_string_equal(src.match.id, m[0]);
            store_scan sc;
            assert_int_equal(store_scan_get(f->st, f->t1, s, f->a, &sc), 0);
            vg_arena_reset(f->a);
        }
        char s2[STORE_ID_MAX], m2[2][STORE_ID_MAX];
        make_scan(f, f->t1, p, r, 20u + (unsigned)round, s2, m2);
    }
    store_stats stt;
    store_stats_get(f->st, &stt);
    assert_true(stt.reconnects >= 2);
}

/* ---- PostgreSQL: LISTEN wakes the change-log reader ------------------------------------------ */

static _Atomic unsigned g_wakes;

static void count_wake(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_wakes, 1);
}

/* Waits (up to about 10 s; no timing is asserted) until the hook has been called more than
 * `than` times; returns the count. */
static unsigned wakes_above(unsigned than)
{
    for (int i = 0; i < 1000 && atomic_load(&g_wakes) <= than; i++)
        usleep(10 * 1000);
    return atomic_load(&g_wakes);
}

/* A change committed through another store object on the same database (another node) calls
 * this store's wake hook; after the LISTEN session is terminated by the server the hook is
 * called once the session is back, and later changes wake it again. */
static void test_pg_listen_wakes(void **state)
{
    fx *f = *state;
    if (!g_pg) {
        print_message("skipped on SQLite: LISTEN/NOTIFY is PostgreSQL's\n");
        skip();
    }
    atomic_store(&g_wakes, 0);
    store_set_wake_hook(f->st, count_wake, NULL);
    unsigned w = wakes_above(0); /* the call after the first connect: LISTEN is in place */
    assert_true(w >= 1);
    store_config c;
    fx_config(f, &c);
    store *other = NULL;
    assert_int_equal(store_open(&c, &other), 0);
    char p[STORE_ID_MAX], r[STORE_ID_MAX];
    store_profile_fields pf = {.name = "Woken"};
    assert_int_equal(store_profile_create(other, f->t1, &pf, p), 0);
    uint8_t sha[32] = {7};
    store_reference_new nr = {.profile_id = p, .kind = STORE_REF_WORK, .sha256 = sha};
    assert_int_equal(store_reference_create(other, f->t1, &nr, r, NULL), 0); /* a change */
    w = wakes_above(w);
    store_stats stt;
    store_stats_get(f->st, &stt);
    assert_true(stt.change_notifies >= 1);
    uint64_t reconnects = stt.reconnects;

    long killed = raw_long(f,
                           "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                           "WHERE application_name = 'vigil-listen' "
                           "AND datname = current_database()",
                           0);
    assert_int_equal(killed, 1); /* only f->st has a hook */
    w = wakes_above(w);          /* the call after the reconnect */
    store_stats_get(f->st, &stt);
    assert_true(stt.reconnects > reconnects);
    uint64_t notifies = stt.change_notifies;
    assert_int_equal(store_reference_delete(other, f->t1, r), 0);
    w = wakes_above(w);
    store_stats_get(f->st, &stt);
    assert_true(stt.change_notifies > notifies);
    store_close(other);
    store_set_wake_hook(f->st, NULL, NULL); /* stops the thread: no call after this */
    unsigned after = atomic_load(&g_wakes);
    assert_int_equal(store_reference_create(f->st, f->t1, &nr, r, NULL), 0);
    usleep(200 * 1000);
    assert_int_equal(atomic_load(&g_wakes), after);
}

/* ---- PostgreSQL: the session dies at COMMIT ------------------------------------------------- */

typedef struct commit_kill {
    fx *f;
    int armed, fired;
} commit_kill;

/* Terminates the writer's session (and waits until it is gone) right before its COMMIT. */
static void kill_before_commit(store *st, sq_db *w, void *ctx)
{
    (void)st;
    commit_kill *k = ctx;
    if (!k->armed)
        return;
    k->armed = 0;
    sq_stmt *s = NULL;
    assert_int_equal(store__query(w, "SELECT pg_backend_pid()", &s, ""), 0);
    assert_int_equal(store__sq_step(s), SQ_ROW);
    long pid = (long)store__sq_col_int64(s, 0);
    store__sq_release(s);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld, 5000)", pid);
    k->fired = raw_long(k->f, sql, 0) == 1;
}

/* The writer's session is terminated after the transaction's last statement, before COMMIT: the
 * COMMIT fails with the connection gone, the store reconnects, asks the server what became of
 * the transaction (txid_status: aborted, it never committed) and runs it again. The write is
 * acknowledged once and stored once. */
static void test_pg_commit_connection_lost(void **state)
{
    fx *f = *state;
    if (!g_pg) {
        print_message("skipped on SQLite: terminates a PostgreSQL session\n");
        skip();
    }
    commit_kill k = {f, 1, 0};
    f->st->test_before_commit = kill_before_commit;
    f->st->test_ctx = &k;
    store_stats before, after;
    store_stats_get(f->st, &before);
    char p[STORE_ID_MAX];
    store_profile_fields pf = {.name = "once"};
    assert_int_equal(store_profile_create(f->st, f->t1, &pf, p), 0);
    f->st->test_before_commit = NULL;
    assert_true(k.fired);
    store_stats_get(f->st, &after);
    assert_true(after.reconnects > before.reconnects);
    assert_true(after.txn_retries > before.txn_retries);
    assert_int_equal(raw_long(f, "SELECT count(*) FROM profiles WHERE name = 'once'", 0), 1);
    store_profile pr;
    assert_int_equal(store_profile_get(f->st, f->t1, p, f->a, &pr), 0);
}

/* ---- PostgreSQL restart mid-stream ---------------------------------------------------------- */

typedef struct rs_ctx {
    store *st;
    const char *tenant, *profile;
    unsigned seed;
    atomic_int *stop;
    char (*ids)[STORE_ID_MAX]; /* acknowledged scans and references, in order */
    _Atomic int n;             /* read by the main thread while the writer runs */
    int cap, failed;
    char last_err[256];
} rs_ctx;

static void *rs_writer(void *arg)
{
    rs_ctx *c = arg;
    for (unsigned i = 0; !atomic_load(c->stop) && c->n < c->cap; i++) {
        uint8_t sha[32], pdq[32];
        fill(sha, 32, c->seed + i);
        fill(pdq, 32, c->seed + i + 7);
        uint32_t u = c->seed + i; /* distinct images: fill() alone repeats every 256 seeds */
        memcpy(sha, &u, sizeof u);
        char id[STORE_ID_MAX];
        int rc;
        if (i % 4 == 3) {
            store_reference_new r = {.profile_id = c->profile,
                                     .kind = STORE_REF_WORK,
                                     .title = "stream",
                                     .sha256 = sha,
                                     .pdq = pdq,
                                     .pdq_quality = 90};
            rc = store_reference_create(c->st, c->tenant, &r, id, NULL);
        } else {
            store_scan_new s = {.sha256 = sha, .source_url = "https://x.example/a.jpg"};
            rc = store_scan_insert(c->st, c->tenant, &s, id, NULL);
        }
        if (rc == 0) {
            memcpy(c->ids[atomic_load(&c->n)], id, STORE_ID_MAX); /* acknowledged */
            atomic_fetch_add(&c->n, 1);
        } else {
            c->failed++;
            snprintf(c->last_err, sizeof c->last_err, "%s", vg_err_msg());
        }
    }
    return NULL;
}

static int rs_acked(rs_ctx *c, int n)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        total += c[i].n;
    return total;
}

/* `pg_ctl restart -m fast` while four threads write scans and references: every write that
 * returned success is there afterwards, the store reconnected by itself (writer and readers),
 * and no write failed (a transaction cut by the restart runs again on a new connection; one
 * whose COMMIT answer was lost is looked up by its transaction id). */
static void test_pg_restart_mid_stream(void **state)
{
    fx *f = *state;
    if (!g_pg) {
        print_message("skipped on SQLite: restarts the PostgreSQL server\n");
        skip();
    }
    const char *ctl = getenv("VIGIL_TEST_PG_CTL");
    if (!ctl || !*ctl) {
        print_message("skipped: no VIGIL_TEST_PG_CTL to restart the server with\n");
        skip();
    }
    char p[STORE_ID_MAX];
    make_profile(f, f->t1, "Stream", p);
    enum { T = 4, CAP = 20000 };
    static char ids[T][CAP][STORE_ID_MAX];
    rs_ctx c[T];
    pthread_t th[T];
    atomic_int stop = 0;
    for (int i = 0; i < T; i++) {
        c[i] = (rs_ctx){f->st, f->t1, p, (unsigned)i * 1000000u, &stop, NULL, 0, CAP, 0, ""};
        c[i].ids = ids[i];
        pthread_create(&th[i], NULL, rs_writer, &c[i]);
    }
    while (rs_acked(c, T) < 200)
        usleep(10000);
    int before = rs_acked(c, T);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s restart", ctl);
    assert_int_equal(system(cmd), 0);
    /* Keep writing until well after the restart. */
    for (int i = 0; i < 3000 && rs_acked(c, T) < before + 400; i++)
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    int after = rs_acked(c, T);
    assert_true(after >= before + 400); /* writes went on after the restart */

    store_stats stt;
    store_stats_get(f->st, &stt);
    assert_true(stt.reconnects >= 1);
    print_message("restart: %d writes acknowledged before it, %d in all; %llu reconnects, %llu "
                  "transactions run again\n",
                  before, after, (unsigned long long)stt.reconnects,
                  (unsigned long long)stt.txn_retries);
    for (int i = 0; i < T; i++) {
        if (c[i].failed)
            fail_msg("writer %d: %d writes failed across the restart, last: %s", i, c[i].failed,
                     c[i].last_err);
        for (int k = 0; k < c[i].n; k++) {
            int rc;
            if (strncmp(c[i].ids[k], "scn_", 4) == 0) {
                store_scan sc;
                rc = store_scan_get(f->st, f->t1, c[i].ids[k], f->a, &sc);
            } else {
                store_reference r;
                rc = store_reference_get(f->st, f->t1, c[i].ids[k], f->a, &r);
            }
            if (rc != 0)
                fail_msg("acknowledged %s (%d of %d) missing after the restart: %s", c[i].ids[k], k,
                         c[i].n, vg_err_msg());
            vg_arena_reset(f->a);
        }
    }
    assert_int_equal(store_ping(f->st), 0);
}

int main(int argc, char **argv)
{
    vg_log_set_level(VG_LOG_WARN);
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
        const char *url = getenv("VIGIL_TEST_PG_URL");
        if (!url || !*url) {
            printf("test_store --pg: SKIPPED: no VIGIL_TEST_PG_URL (scripts/pg-tmp.sh starts a "
                   "throwaway PostgreSQL; `make test` does)\n");
            return 0;
        }
        const char *slash = strrchr(url, '/');
        if (!slash || slash - url < 14 || (size_t)(slash - url) + 1 >= sizeof g_pg_base) {
            fprintf(stderr, "VIGIL_TEST_PG_URL must be postgresql://user@host:port/db\n");
            return 1;
        }
        memcpy(g_pg_base, url, (size_t)(slash - url) + 1);
        g_pg = 1;
    }
    if (getenv("VIGIL_TEST_FILTER")) /* one test by name while debugging */
        cmocka_set_test_filter(getenv("VIGIL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_empty_and_reopen, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_stepwise_keeps_data, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v5_video, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_change_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_video_jobs, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_video_job_lease, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v4_pdq_regions_and_mechanism, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuse_newer_schema, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_foreign_files, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_open_alloc_failures, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_ids_ordered_and_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profiles_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profiles_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_foreach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_foreach_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v8_keys, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_scans_and_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evidence_is_immutable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_delete_keeps_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_isolates_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_stable_under_concurrent_inserts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_checkpoints, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_io_error_and_recovery, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_locked_database_is_busy, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_durability_kill9, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes_one_database, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_pg_sessions_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_commit_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_listen_wakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_restart_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_unavailable_fails_fast, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
