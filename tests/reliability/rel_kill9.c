/*
 * rel_kill9: kill -9 soak. `vigil serve` runs a mixed write load (profiles created, renamed and
 * deleted, references uploaded and deleted, analyses that record scans and matches, notices drafted
 * and moved through their workflow) from several client threads; at a random moment it is killed
 * with SIGKILL, restarted on the same data directory, and every write it had acknowledged (a 2xx
 * answer) is read back: created objects exist with their last acknowledged state, deleted ones stay
 * deleted. Repeated N times in a row on one data directory.
 *
 *   rel_kill9 --vigil PATH [--cycles N] [--seed S] [--workers W] [--kill-ms MIN,MAX]
 *             [--full-every K] [--max-seconds T] [--dir DIR] [--self-test-drop-wal 1]
 *   rel_kill9 --check-db DATA_DIR      (PRAGMA integrity_check of DATA_DIR/vigil.db; exit 0 if ok)
 *
 * A request that got no answer (the kill came first) or a 5xx may or may not have been applied:
 * its object is marked uncertain and the restart adopts whatever the server then says, as long as
 * it is one of the two states. Each cycle checks every object touched in that cycle plus a random
 * sample of the older ones; every K cycles and at the end it checks all of them and runs SQLite's
 * integrity_check on the database. Exit 0 when nothing acknowledged was lost or came back and the
 * server started cleanly every time; 1 otherwise (the first violations are printed).
 * --self-test-drop-wal 1 deletes the SQLite WAL after each kill, losing acknowledged writes on
 * purpose: the run must then fail (the CTest test rel_kill9_selftest checks that it does).
 */
#include "rel.h"

#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define K9_MAX_WORKERS 8
#define K9_CALL_TIMEOUT_MS 15000u /* one request; far above any answer on an idle machine */
#define K9_START_TIMEOUT_MS 60000u
#define K9_SAMPLE_OLD 240 /* older objects re-read per cycle (besides the ones touched) */
#define K9_MAX_REPORTED 20

enum { O_PROFILE, O_REFERENCE, O_SCAN, O_MATCH, O_NOTICE };
static const char *const obj_name[] = {"profile", "reference", "scan", "match", "notice"};
static const char *const obj_path[] = {"/api/v1/profiles/", "/api/v1/references/", "/api/v1/scans/",
                                       "/api/v1/matches/", "/api/v1/notices/"};
/* notice workflow, in order; index 0 is draft */
static const char *const notice_steps[] = {"draft", "sent", "acknowledged", "removed"};
#define K9_NOTICE_LAST 3

typedef struct obj {
    int type;
    char id[48];
    int deleted;      /* acknowledged deleted */
    int uncertain;    /* a change got no answer: the next check adopts what the server says */
    int alt_deleted;  /* the uncertain change would delete it */
    int state;        /* profile: name version; notice: workflow step */
    int alt_state;    /* the uncertain change's value */
    int profile;      /* index of the owning profile (references), or -1 */
    unsigned touched; /* cycle of the last change, for the per-cycle check */
} obj;

typedef struct worker {
    int index;
    char key[160];
    rel_rng rng;
    obj *objs;
    size_t n, cap;
    uint64_t seq;
    /* this cycle */
    uint16_t port;
    unsigned cycle;
    _Atomic int stop;
    uint64_t acked, sent, uncertain_ops, errors_alive;
} worker;

static const uint8_t *g_ref_img, *g_scan_img;
static size_t g_ref_len, g_scan_len;
static rel_server g_srv;
static _Atomic int g_server_up;

static size_t obj_add(worker *w, int type, const char *id, int profile)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 256;
        w->objs = realloc(w->objs, w->cap * sizeof *w->objs);
        if (!w->objs) {
            fprintf(stderr, "rel_kill9: out of memory\n");
            exit(2);
        }
    }
    obj *o = &w->objs[w->n];
    memset(o, 0, sizeof *o);
    o->type = type;
    snprintf(o->id, sizeof o->id, "%s", id);
    o->profile = profile;
    o->touched = w->cycle;
    return w->n++;
}

/* A random live object of a type (not acknowledged deleted, not uncertain), or -1. */
static long pick(worker *w, int type, int (*ok)(const obj *))
{
    if (!w->n)
        return -1;
    for (int tries = 0; tries < 32; tries++) {
        size_t i = (size_t)rel_rng_below(&w->rng, w->n);
        /* favour recent objects: half of the picks come from the newest 64 */
        if (tries % 2 == 0 && w->n > 64)
            i = w->n - 1 - (size_t)rel_rng_below(&w->rng, 64);
        obj *o = &w->objs[i];
        if (o->type == type && !o->deleted && !o->uncertain && (!ok || ok(o)))
            return (long)i;
    }
    return -1;
}

static int notice_open(const obj *o)
{
    return o->state < K9_NOTICE_LAST;
}

/* Outcome of a state-changing call: 1 applied (2xx), 0 refused (4xx), -1 unknown. */
static int outcome(int rc, int status)
{
    if (rc != VG_OK)
        return -1;
    if (status >= 200 && status < 300)
        return 1;
    if (status >= 400 && status < 500)
        return 0;
    return -1;
}

static void profile_name(char *out, size_t len, const worker *w, const obj *o, int version)
{
    snprintf(out, len, "k9-w%d-%s-v%d", w->index, o->id, version);
}

/* One random operation. Returns 0 to go on, -1 when the server is unreachable. */
static int one_op(worker *w, rel_conn *c)
{
    char path[256], body[512], id[48];
    int status = 0, rc = VG_OK, r;
    unsigned dice = (unsigned)rel_rng_below(&w->rng, 100);
    w->seq++;
    w->sent++;
    long i;
    if (dice < 18 || w->n == 0) { /* create a profile */
        snprintf(body, sizeof body,
                 "{\"name\":\"k9-new-%d-%llu\",\"legal_name\":\"Kill Nine Ltd\","
                 "\"email\":\"legal@example.com\"}",
                 w->index, (unsigned long long)w->seq);
        rc = rel_call(c, "POST", "/api/v1/profiles", w->key, "application/json", body, strlen(body),
                      K9_CALL_TIMEOUT_MS, &status);
        if (outcome(rc, status) == 1) {
            rel_json_str(c, "id", id, sizeof id);
            obj_add(w, O_PROFILE, id, -1);
            w->acked++;
        }
    } else if (dice < 28 && (i = pick(w, O_PROFILE, NULL)) >= 0) { /* rename */
        obj *o = &w->objs[i];
        char name[128];
        profile_name(name, sizeof name, w, o, o->state + 1);
        snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
        snprintf(path, sizeof path, "/api/v1/profiles/%s", o->id);
        rc = rel_call(c, "PATCH", path, w->key, "application/json", body, strlen(body),
                      K9_CALL_TIMEOUT_MS, &status);
        r = outcome(rc, status);
        o->touched = w->cycle;
        if (r == 1) {
            o->state++;
            w->acked++;
        } else if (r < 0) {
            o->uncertain = 1;
            o->alt_state = o->state + 1;
        }
    } else if (dice < 43 && (i = pick(w, O_PROFILE, NULL)) >= 0) { /* upload a reference */
        snprintf(path, sizeof path, "/api/v1/profiles/%s/references?kind=work&title=k9-%llu",
                 w->objs[i].id, (unsigned long long)w->seq);
        rc = rel_call(c, "POST", path, w->key, "image/jpeg", g_ref_img, g_ref_len,
                      K9_CALL_TIMEOUT_MS, &status);
        if (outcome(rc, status) == 1) {
            rel_json_str(c, "id", id, sizeof id);
            obj_add(w, O_REFERENCE, id, (int)i);
            w->acked++;
        }
    } else if (dice < 65 && (i = pick(w, O_REFERENCE, NULL)) >= 0) { /* analyze: scan + match */
        snprintf(path, sizeof path,
                 "/api/v1/analyze?profile_id=%s&source_url=https://copies.example/k9/%d/%llu",
                 w->objs[w->objs[i].profile].id, w->index, (unsigned long long)w->seq);
        rc = rel_call(c, "POST", path, w->key, "image/jpeg", g_scan_img, g_scan_len,
                      K9_CALL_TIMEOUT_MS, &status);
        if (outcome(rc, status) == 1) {
            json_t *j = rel_json(c);
            const char *sid = json_string_value(json_object_get(j, "scan_id"));
            if (sid)
                obj_add(w, O_SCAN, sid, -1);
            json_t *m = json_object_get(j, "matches");
            for (size_t k = 0; k < json_array_size(m); k++) {
                const char *mid =
                    json_string_value(json_object_get(json_array_get(m, k), "match_id"));
                if (mid)
                    obj_add(w, O_MATCH, mid, -1);
            }
            json_decref(j);
            w->acked++;
        }
    } else if (dice < 75 && (i = pick(w, O_MATCH, NULL)) >= 0) { /* draft a notice */
        snprintf(body, sizeof body,
                 "{\"match_id\":\"%s\",\"infringing_url\":\"https://copies.example/k9/%llu\","
                 "\"recipient\":{\"name\":\"Abuse desk\",\"email\":\"abuse@copies.example\"},"
                 "\"signer_name\":\"K. Nine\"}",
                 w->objs[i].id, (unsigned long long)w->seq);
        rc = rel_call(c, "POST", "/api/v1/notices", w->key, "application/json", body, strlen(body),
                      K9_CALL_TIMEOUT_MS, &status);
        if (outcome(rc, status) == 1) {
            rel_json_str(c, "id", id, sizeof id);
            obj_add(w, O_NOTICE, id, -1);
            w->acked++;
        }
    } else if (dice < 88 && (i = pick(w, O_NOTICE, notice_open)) >= 0) { /* next status */
        obj *o = &w->objs[i];
        snprintf(body, sizeof body, "{\"status\":\"%s\",\"note\":\"k9 %llu\"}",
                 notice_steps[o->state + 1], (unsigned long long)w->seq);
        snprintf(path, sizeof path, "/api/v1/notices/%s/status", o->id);
        rc = rel_call(c, "POST", path, w->key, "application/json", body, strlen(body),
                      K9_CALL_TIMEOUT_MS, &status);
        r = outcome(rc, status);
        o->touched = w->cycle;
        if (r == 1) {
            o->state++;
            w->acked++;
        } else if (r < 0) {
            o->uncertain = 1;
            o->alt_state = o->state + 1;
        }
    } else if (dice < 96 && (i = pick(w, O_REFERENCE, NULL)) >= 0) { /* delete a reference */
        obj *o = &w->objs[i];
        snprintf(path, sizeof path, "/api/v1/references/%s", o->id);
        rc = rel_call(c, "DELETE", path, w->key, NULL, NULL, 0, K9_CALL_TIMEOUT_MS, &status);
        r = outcome(rc, status);
        o->touched = w->cycle;
        if (r == 1) {
            o->deleted = 1;
            w->acked++;
        } else if (r < 0) {
            o->uncertain = 1;
            o->alt_deleted = 1;
            o->alt_state = o->state;
        }
    } else if ((i = pick(w, O_PROFILE, NULL)) >= 0) { /* delete a profile and its references */
        obj *o = &w->objs[i];
        snprintf(path, sizeof path, "/api/v1/profiles/%s", o->id);
        rc = rel_call(c, "DELETE", path, w->key, NULL, NULL, 0, K9_CALL_TIMEOUT_MS, &status);
        r = outcome(rc, status);
        for (size_t k = 0; k < w->n && r != 0; k++) {
            obj *x = &w->objs[k];
            if ((size_t)k != (size_t)i && !(x->type == O_REFERENCE && x->profile == (int)i))
                continue;
            if (x->deleted)
                continue;
            x->touched = w->cycle;
            if (r == 1) {
                x->deleted = 1;
            } else if (!x->uncertain) {
                x->uncertain = 1;
                x->alt_deleted = 1;
                x->alt_state = x->state;
            }
        }
        if (r == 1)
            w->acked++;
    } else {
        w->sent--;
        return 0;
    }
    if (rc != VG_OK) {
        if (atomic_load(&g_server_up))
            w->errors_alive++;
        w->uncertain_ops++;
        return -1;
    }
    if (status >= 500)
        w->uncertain_ops++;
    return 0;
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    rel_conn c;
    rel_conn_init(&c, w->port);
    while (!atomic_load(&w->stop))
        if (one_op(w, &c) < 0)
            break;
    rel_conn_deinit(&c);
    return NULL;
}

/* ---- verification ---------------------------------------------------------------------------- */

typedef struct verify_stats {
    uint64_t checked, lost, resurrected, wrong_state, errors;
} verify_stats;

static int g_reported;

static void violation(const char *what, const worker *w, const obj *o, int status, const char *body)
{
    if (g_reported++ < K9_MAX_REPORTED)
        fprintf(stderr,
                "rel_kill9: %s: worker %d %s %s (status %d, deleted %d, state %d): %.300s\n", what,
                w->index, obj_name[o->type], o->id, status, o->deleted, o->state, body ? body : "");
}

/* Reads one object back; adopts the server's state when the object was uncertain. */
static void verify_one(worker *w, obj *o, rel_conn *c, verify_stats *vs)
{
    char path[160];
    snprintf(path, sizeof path, "%s%s", obj_path[o->type], o->id);
    int status = 0;
    int rc = rel_call(c, "GET", path, w->key, NULL, NULL, 0, K9_CALL_TIMEOUT_MS, &status);
    vs->checked++;
    if (rc != VG_OK || (status != 200 && status != 404)) {
        vs->errors++;
        violation("read failed", w, o, rc != VG_OK ? rc : status, c->resp.data);
        return;
    }
    int exists = status == 200;
    int state = -1;
    if (exists && (o->type == O_PROFILE || o->type == O_NOTICE)) {
        json_t *j = rel_json(c);
        if (o->type == O_NOTICE) {
            const char *s = json_string_value(json_object_get(j, "status"));
            for (int k = 0; s && k <= K9_NOTICE_LAST; k++)
                if (strcmp(s, notice_steps[k]) == 0)
                    state = k;
        } else {
            const char *s = json_string_value(json_object_get(j, "name"));
            /* names are k9-new-... (version 0) or k9-w<i>-<id>-v<n> */
            const char *v = s ? strrchr(s, 'v') : NULL;
            state = s && strncmp(s, "k9-new-", 7) == 0 ? 0 : v ? atoi(v + 1) : -1;
        }
        json_decref(j);
    } else if (exists) {
        state = o->state;
    }
    if (o->uncertain) {
        int ok_a = o->deleted ? !exists : (exists && state == o->state);
        int ok_b = o->alt_deleted ? !exists : (exists && state == o->alt_state);
        if (ok_a || ok_b) {
            o->deleted = !exists;
            if (exists)
                o->state = state;
            o->uncertain = o->alt_deleted = 0;
            return;
        }
    } else if (o->deleted ? !exists : (exists && state == o->state)) {
        return;
    }
    if (o->deleted && exists) {
        vs->resurrected++;
        violation("acknowledged delete came back", w, o, status, c->resp.data);
    } else if (!exists) {
        vs->lost++;
        violation("acknowledged write lost", w, o, status, c->resp.data);
    } else {
        vs->wrong_state++;
        violation("acknowledged change lost", w, o, status, c->resp.data);
    }
}

static void verify(worker *ws, int nw, unsigned cycle, int all, rel_rng *rng, verify_stats *vs)
{
    rel_conn c;
    rel_conn_init(&c, g_srv.port);
    for (int k = 0; k < nw; k++) {
        worker *w = &ws[k];
        for (size_t i = 0; i < w->n; i++)
            if (all || w->objs[i].touched == cycle || w->objs[i].uncertain)
                verify_one(w, &w->objs[i], &c, vs);
        for (int s = 0; !all && w->n && s < K9_SAMPLE_OLD / nw; s++)
            verify_one(w, &w->objs[rel_rng_below(rng, w->n)], &c, vs);
    }
    rel_conn_deinit(&c);
}

static int integrity_check(const char *data_dir, char *msg, size_t msglen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vigil.db", data_dir);
    sqlite3 *db = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(st, 0);
            snprintf(msg, msglen, "%s", r ? r : "(null)");
            ok = r && strcmp(r, "ok") == 0;
        } else {
            snprintf(msg, msglen, "%s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
    } else {
        snprintf(msg, msglen, "cannot open vigil.db: %s", db ? sqlite3_errmsg(db) : "no memory");
    }
    sqlite3_close(db);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: rel_kill9 --vigil PATH [--cycles N] [--seed S] [--workers W]\n"
                    "                 [--kill-ms MIN,MAX] [--full-every K] [--max-seconds T]\n"
                    "                 [--dir DIR] [--self-test-drop-wal 1]\n");
    exit(2);
}

static int make_tenant(worker *w, uint16_t port, const char *admin)
{
    rel_conn c;
    rel_conn_init(&c, port);
    char body[128], id[64], path[128];
    int status = 0;
    snprintf(body, sizeof body, "{\"name\":\"kill9-%d\",\"kind\":\"agency\"}", w->index);
    int rc = rel_call(&c, "POST", "/api/v1/tenants", admin, "application/json", body, strlen(body),
                      K9_CALL_TIMEOUT_MS, &status);
    if (rc == VG_OK && status == 201) {
        rel_json_str(&c, "id", id, sizeof id);
        snprintf(path, sizeof path, "/api/v1/tenants/%s/keys", id);
        rc = rel_call(&c, "POST", path, admin, "application/json", "{\"name\":\"k9\"}", 13,
                      K9_CALL_TIMEOUT_MS, &status);
        rel_json_str(&c, "key", w->key, sizeof w->key);
    }
    rel_conn_deinit(&c);
    return rc == VG_OK && status == 201 && w->key[0] ? 0 : -1;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int main(int argc, char **argv)
{
    const char *vigil = NULL, *dir_arg = NULL;
    unsigned cycles = 1000, nw = 3, full_every = 500;
    int drop_wal = 0; /* self-test: lose the WAL at each kill; the run must then FAIL */
    uint64_t seed = 1, kill_min = 150, kill_max = 1200, max_s = 7200;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--vigil"))
            vigil = v;
        else if (!strcmp(a, "--cycles"))
            cycles = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--workers"))
            nw = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--kill-ms"))
            sscanf(v, "%lu,%lu", (unsigned long *)&kill_min, (unsigned long *)&kill_max);
        else if (!strcmp(a, "--full-every"))
            full_every = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--max-seconds"))
            max_s = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dir"))
            dir_arg = v;
        else if (!strcmp(a, "--self-test-drop-wal"))
            drop_wal = atoi(v);
        else if (!strcmp(a, "--check-db")) {
            /* integrity_check of a data dir's database alone (scripts/diskfull.sh uses it, so the
             * sqlite3 shell need not be installed) */
            char msg[256];
            int ok = integrity_check(v, msg, sizeof msg);
            printf("%s\n", msg);
            return ok ? 0 : 1;
        } else
            usage();
    }
    if (!vigil || nw < 1 || nw > K9_MAX_WORKERS || kill_max < kill_min || !full_every)
        usage();
    signal(SIGPIPE, SIG_IGN);
    uint8_t *ref = NULL, *scan = NULL;
    if (rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-256x256.jpg", 1 << 24, &ref,
                      &g_ref_len) ||
        rel_read_file(VG_TEST_DATA_DIR "/pdq/bridge-mods/square-128x128.jpg", 1 << 24, &scan,
                      &g_scan_len)) {
        fprintf(stderr, "rel_kill9: test images missing under " VG_TEST_DATA_DIR "\n");
        return 2;
    }
    g_ref_img = ref;
    g_scan_img = scan;
    char dir[512];
    if (dir_arg) {
        snprintf(dir, sizeof dir, "%s", dir_arg);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            perror(dir);
            return 2;
        }
    } else {
        snprintf(dir, sizeof dir, "/tmp/vigil-kill9-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 2;
        }
    }
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    rel_server_init(&g_srv, vigil, data, NULL);
    uint64_t t0 = vg_now_ns();
    char when[32];
    rel_utc_now(when, sizeof when);
    printf("rel_kill9: %u cycles, %u workers, seed %llu, kill after %llu..%llu ms, dir %s, %s\n",
           cycles, nw, (unsigned long long)seed, (unsigned long long)kill_min,
           (unsigned long long)kill_max, dir, when);
    fflush(stdout);
    if (rel_server_start(&g_srv, K9_START_TIMEOUT_MS)) {
        fprintf(stderr, "rel_kill9: %s\n", vg_err_msg());
        return 1;
    }
    atomic_store(&g_server_up, 1);
    worker ws[K9_MAX_WORKERS];
    memset(ws, 0, sizeof ws);
    for (unsigned k = 0; k < nw; k++) {
        ws[k].index = (int)k;
        rel_rng_seed(&ws[k].rng, seed * 1000 + k);
        if (make_tenant(&ws[k], g_srv.port, g_srv.admin_key)) {
            fprintf(stderr, "rel_kill9: could not create a tenant\n");
            rel_server_stop(&g_srv, SIGKILL, 1000);
            return 1;
        }
    }
    rel_rng rng;
    rel_rng_seed(&rng, seed);
    verify_stats vs = {0};
    unsigned done = 0, start_failures = 0, integrity_failures = 0, integrity_runs = 0;
    double start_max_s = 0;
    int failed = 0, timed_out = 0;
    for (unsigned cycle = 1; cycle <= cycles; cycle++) {
        if (vg_now_ns() - t0 > max_s * 1000000000ull) {
            timed_out = 1;
            break;
        }
        pthread_t th[K9_MAX_WORKERS];
        for (unsigned k = 0; k < nw; k++) {
            ws[k].port = g_srv.port;
            ws[k].cycle = cycle;
            atomic_store(&ws[k].stop, 0);
            pthread_create(&th[k], NULL, worker_run, &ws[k]);
        }
        sleep_ms(kill_min + rel_rng_below(&rng, kill_max - kill_min + 1));
        atomic_store(&g_server_up, 0);
        int st = rel_server_stop(&g_srv, SIGKILL, 10000);
        for (unsigned k = 0; k < nw; k++) {
            atomic_store(&ws[k].stop, 1);
            pthread_join(th[k], NULL);
        }
        if (st != -SIGKILL) {
            char *log = rel_server_log(&g_srv, 8192);
            fprintf(stderr, "rel_kill9: cycle %u: the server had already exited (%d): %s\n", cycle,
                    st, log ? log : "");
            vg_free(log);
            failed = 1;
        }
        if (drop_wal) {
            char wal[700];
            snprintf(wal, sizeof wal, "%s/vigil.db-wal", data);
            unlink(wal);
            snprintf(wal, sizeof wal, "%s/vigil.db-shm", data);
            unlink(wal);
        }
        uint64_t ts = vg_now_ns();
        if (rel_server_start(&g_srv, K9_START_TIMEOUT_MS)) {
            fprintf(stderr, "rel_kill9: cycle %u: restart failed: %s\n", cycle, vg_err_msg());
            char *log = rel_server_log(&g_srv, 8192);
            fprintf(stderr, "%s\n", log ? log : "");
            vg_free(log);
            start_failures++;
            failed = 1;
            break;
        }
        double sdur = (double)(vg_now_ns() - ts) / 1e9;
        if (sdur > start_max_s)
            start_max_s = sdur;
        atomic_store(&g_server_up, 1);
        int all = cycle % full_every == 0 || cycle == cycles;
        verify(ws, (int)nw, cycle, all, &rng, &vs);
        /* readiness after the restart: every component, the database first */
        rel_conn c;
        rel_conn_init(&c, g_srv.port);
        int hs = 0;
        if (rel_call(&c, "GET", "/api/v1/health", NULL, NULL, NULL, 0, K9_CALL_TIMEOUT_MS, &hs) ||
            hs != 200) {
            fprintf(stderr, "rel_kill9: cycle %u: health %d after restart: %s\n", cycle, hs,
                    c.resp.data ? c.resp.data : "");
            failed = 1;
        }
        rel_conn_deinit(&c);
        char *log = rel_server_log(&g_srv, 1 << 16);
        if (log && (strstr(log, "AddressSanitizer") || strstr(log, "runtime error"))) {
            fprintf(stderr, "rel_kill9: cycle %u: sanitizer report:\n%s\n", cycle, log);
            failed = 1;
        }
        vg_free(log);
        if (all) {
            char msg[256];
            integrity_runs++;
            if (!integrity_check(data, msg, sizeof msg)) {
                fprintf(stderr, "rel_kill9: cycle %u: integrity_check: %s\n", cycle, msg);
                integrity_failures++;
                failed = 1;
            }
        }
        done = cycle;
        if (vs.lost || vs.resurrected || vs.wrong_state || vs.errors)
            failed = 1;
        if (failed)
            break;
        if (cycle % 50 == 0 || cycle == cycles) {
            uint64_t acked = 0, nobj = 0;
            for (unsigned k = 0; k < nw; k++) {
                acked += ws[k].acked;
                nobj += ws[k].n;
            }
            printf("rel_kill9: cycle %u/%u: %llu acknowledged writes, %llu objects, %llu reads "
                   "checked, %.0f s\n",
                   cycle, cycles, (unsigned long long)acked, (unsigned long long)nobj,
                   (unsigned long long)vs.checked, (double)(vg_now_ns() - t0) / 1e9);
            fflush(stdout);
        }
    }
    rel_server_stop(&g_srv, SIGTERM, 20000);
    uint64_t acked = 0, sent = 0, unc = 0, nobj = 0, err_alive = 0, by_type[5] = {0};
    for (unsigned k = 0; k < nw; k++) {
        for (size_t i = 0; i < ws[k].n; i++)
            by_type[ws[k].objs[i].type]++;
        acked += ws[k].acked;
        sent += ws[k].sent;
        unc += ws[k].uncertain_ops;
        nobj += ws[k].n;
        err_alive += ws[k].errors_alive;
        free(ws[k].objs);
    }
    printf("rel_kill9: %s: %u/%u kill -9 cycles in %.1f s; %llu requests sent, %llu writes "
           "acknowledged, %llu unanswered at a kill; %llu objects; %llu read-backs: %llu lost, "
           "%llu resurrected, %llu wrong state, %llu read errors; restarts: %u failed, slowest "
           "%.2f s; integrity_check: %u runs, %u failed; connection errors while the server was "
           "up: %llu\n",
           failed || timed_out ? "FAIL" : "PASS", done, cycles, (double)(vg_now_ns() - t0) / 1e9,
           (unsigned long long)sent, (unsigned long long)acked, (unsigned long long)unc,
           (unsigned long long)nobj, (unsigned long long)vs.checked, (unsigned long long)vs.lost,
           (unsigned long long)vs.resurrected, (unsigned long long)vs.wrong_state,
           (unsigned long long)vs.errors, start_failures, start_max_s, integrity_runs,
           integrity_failures, (unsigned long long)err_alive);
    printf("rel_kill9: objects: %llu profiles, %llu references, %llu scans, %llu matches, "
           "%llu notices\n",
           (unsigned long long)by_type[O_PROFILE], (unsigned long long)by_type[O_REFERENCE],
           (unsigned long long)by_type[O_SCAN], (unsigned long long)by_type[O_MATCH],
           (unsigned long long)by_type[O_NOTICE]);
    if (timed_out)
        printf("rel_kill9: stopped at --max-seconds %llu\n", (unsigned long long)max_s);
    vg_free(ref);
    vg_free(scan);
    /* a failed run keeps its data for a look, except the self-test's, which fails on purpose */
    if ((drop_wal || (!failed && !timed_out)) && !dir_arg)
        bench_rmtree(dir);
    else if (!dir_arg)
        printf("rel_kill9: data and server log kept in %s\n", dir);
    return failed || timed_out ? 1 : 0;
}
