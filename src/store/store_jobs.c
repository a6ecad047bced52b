/*
 * store_jobs: video analysis jobs (schema 5, owner and lease schema 7). A job is written before
 * its 202 is sent, so an acknowledged job is never lost; state moves queued -> running -> done |
 * failed, and only here. Every open job has an owner (a node id) and a lease the owner renews
 * (store_job_renew, the node's heartbeat). A node that dies leaves its jobs queued or running with
 * a lease that runs out; store_job_takeover, on a live node (at its start and periodically), takes
 * them in one UPDATE whose WHERE re-checks the expiry inside the write transaction: on SQLite
 * the single writer, on PostgreSQL the row lock (a second UPDATE waits and re-reads the row) or a
 * serialization failure the store retries, so exactly one node gets each job. A running job that
 * has used max_attempts fails with the reason instead, so none is retried without end. A node
 * that lost a lease (it stalled past it) finds its progress and finish refused (owner check).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define JOB_COLS                                                                                   \
    "t.id, t.tenant_id, t.state, t.attempts, t.progress, t.params, t.file, t.bytes, t.result, "    \
    "t.error, t.error_status, t.created_ms, t.updated_ms, t.owner, t.lease_until_ms"

static const char *const JOB_STATES[] = {"queued", "running", "done", "failed"};

const char *store_job_state_name(store_job_state s)
{
    return (unsigned)s < VG_ARRAY_LEN(JOB_STATES) ? JOB_STATES[s] : "unknown";
}

static int read_job(sq_stmt *s, store_copy *c, void *item)
{
    store_job *j = item;
    store__sc_id(s, 0, j->id);
    store__sc_id(s, 1, j->tenant_id);
    const char *st = store__sq_col_text(s, 2);
    j->state = STORE_JOB_FAILED;
    for (size_t i = 0; st && i < VG_ARRAY_LEN(JOB_STATES); i++)
        if (strcmp(st, JOB_STATES[i]) == 0)
            j->state = (store_job_state)i;
    j->attempts = (int)store__sq_col_int64(s, 3);
    j->progress = store__sq_col_double(s, 4);
    j->params = store__sc_text(c, s, 5);
    j->file = store__sc_text(c, s, 6);
    j->bytes = (uint64_t)store__sq_col_int64(s, 7);
    j->result = store__sc_text(c, s, 8);
    j->error = store__sc_text(c, s, 9);
    j->error_status = (int)store__sq_col_int64(s, 10);
    j->created_ms = store__sq_col_int64(s, 11);
    j->updated_ms = store__sq_col_int64(s, 12);
    j->owner = store__sc_text(c, s, 13);
    j->lease_until_ms = store__sq_col_int64(s, 14);
    return 0;
}

typedef struct job_create_args {
    const char *tenant_id, *params, *file, *owner;
    uint64_t bytes;
    int64_t lease_ms;
    char *out_id;
} job_create_args;

static int job_create_op(store *st, sq_db *w, void *arg)
{
    job_create_args *a = arg;
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "job", id, &ms);
    int err = store__run(w,
                         "INSERT INTO video_jobs(id, tenant_id, state, params, file, bytes, "
                         "created_ms, updated_ms, owner, lease_until_ms) "
                         "VALUES(?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                         "ttttiiiti", id, a->tenant_id, a->params, a->file, (int64_t)a->bytes, ms,
                         ms, a->owner, ms + a->lease_ms);
    if (err == VG_ENOTFOUND)
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    if (!err)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

/* The owner every job call names: required, bounded. */
static int check_owner(const char *owner)
{
    return store__check_str("owner", owner, STORE_JOB_OWNER_MAX_BYTES, 1);
}

static int check_lease(int64_t lease_ms)
{
    return lease_ms < 0 ? vg_err_set(VG_EINVAL, "a job lease cannot be negative") : 0;
}

int store_job_create(store *st, const char *tenant_id, const char *params, const char *file,
                     uint64_t bytes, const char *owner, int64_t lease_ms, char out_id[STORE_ID_MAX])
{
    if (!tenant_id)
        return vg_err_set(VG_EINVAL, "a job needs a tenant");
    if (!store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    int err;
    if ((err = store__check_str("params", params, STORE_JOB_PARAMS_MAX_BYTES, 1)) ||
        (err = store__check_str("file", file, STORE_URL_MAX_BYTES, 1)) ||
        (err = check_owner(owner)) || (err = check_lease(lease_ms)))
        return err;
    job_create_args a = {tenant_id, params, file, owner, bytes, lease_ms, out_id};
    return store__write(st, job_create_op, &a);
}

int store_job_get(store *st, const char *tenant_id, const char *id, vg_arena *a, store_job *out)
{
    if (!store__id_valid(id, "job"))
        return vg_err_set(VG_ENOTFOUND, "job not found");
    store_job j;
    int err = store__get_one(st, a, read_job, &j, sizeof j, "job",
                             "SELECT " JOB_COLS " FROM video_jobs t WHERE t.id = ?1 AND "
                             "(?2 IS NULL OR t.tenant_id = ?2)",
                             "tt", id, tenant_id);
    if (!err)
        *out = j;
    return err;
}

typedef struct job_start_args {
    const char *id, *owner;
    int64_t lease_ms;
    int max_attempts;
    int *started;
} job_start_args;

static int job_start_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_start_args *a = arg;
    sq_stmt *s = NULL;
    int err = store__query(w, "SELECT state, attempts, owner FROM video_jobs WHERE id = ?", &s, "t",
                           a->id);
    if (err)
        return err;
    int rc = store__sq_step(s);
    if (rc != SQ_ROW) {
        store__sq_release(s);
        return rc < 0 ? rc : vg_err_set(VG_ENOTFOUND, "job not found");
    }
    const char *state = store__sq_col_text(s, 0);
    int queued = state && strcmp(state, "queued") == 0;
    int64_t attempts = store__sq_col_int64(s, 1);
    const char *owner = store__sq_col_text(s, 2);
    int mine = !owner || strcmp(owner, a->owner) == 0;
    store__sq_release(s);
    if (!queued)
        return vg_err_set(VG_ECONFLICT, "job %s is not queued", a->id);
    if (!mine)
        return vg_err_set(VG_ECONFLICT, "job %s is owned by another node", a->id);
    int64_t now = vg_wall_ms();
    if (attempts >= a->max_attempts) {
        char why[160];
        snprintf(why, sizeof why,
                 "the server stopped %lld times while this job ran; it is not retried again",
                 (long long)attempts);
        *a->started = 0;
        return store__run(w,
                          "UPDATE video_jobs SET state = 'failed', error = ?, error_status = 500, "
                          "updated_ms = ? WHERE id = ?",
                          "tit", why, now, a->id);
    }
    *a->started = 1;
    return store__run(w,
                      "UPDATE video_jobs SET state = 'running', attempts = attempts + 1, "
                      "progress = 0, updated_ms = ?, owner = ?, lease_until_ms = ? WHERE id = ?",
                      "itit", now, a->owner, now + a->lease_ms, a->id);
}

int store_job_start(store *st, const char *id, const char *owner, int64_t lease_ms,
                    int max_attempts, int *out_started)
{
    int err;
    if ((err = check_owner(owner)) || (err = check_lease(lease_ms)))
        return err;
    int started = 0;
    job_start_args a = {id, owner, lease_ms, max_attempts, &started};
    err = store__write(st, job_start_op, &a);
    if (!err && out_started)
        *out_started = started;
    return err;
}

typedef struct job_update_args {
    const char *id, *owner;
    store_job_state state; /* RUNNING: progress only */
    double progress;
    const char *result, *error;
    int error_status;
} job_update_args;

static int job_update_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_update_args *a = arg;
    int64_t now = vg_wall_ms();
    int err;
    if (a->state == STORE_JOB_RUNNING)
        err = store__run(w,
                         "UPDATE video_jobs SET progress = ?, updated_ms = ? WHERE id = ? AND "
                         "state = 'running' AND owner = ?",
                         "ditt", a->progress, now, a->id, a->owner);
    else
        err = store__run(w,
                         "UPDATE video_jobs SET state = ?, progress = ?, result = ?, error = ?, "
                         "error_status = ?, updated_ms = ?, lease_until_ms = 0 WHERE id = ? AND "
                         "state = 'running' AND owner = ?",
                         "tdttiitt", store_job_state_name(a->state),
                         a->state == STORE_JOB_DONE ? 1.0 : a->progress, a->result, a->error,
                         (int64_t)a->error_status, now, a->id, a->owner);
    if (!err && store__sq_changes(w) == 0)
        err = vg_err_set(VG_ECONFLICT, "job %s is not running on this node", a->id);
    return err;
}

int store_job_progress(store *st, const char *id, const char *owner, double progress)
{
    if (!isfinite(progress) || progress < 0 || progress > 1)
        return vg_err_set(VG_EINVAL, "progress must be in 0..1");
    int err = check_owner(owner);
    if (err)
        return err;
    job_update_args a = {id, owner, STORE_JOB_RUNNING, progress, NULL, NULL, 0};
    return store__write(st, job_update_op, &a);
}

int store_job_finish(store *st, const char *id, const char *owner, store_job_state state,
                     const char *result, const char *error, int error_status)
{
    if (state != STORE_JOB_DONE && state != STORE_JOB_FAILED)
        return vg_err_set(VG_EINVAL, "a job finishes done or failed");
    int err;
    if ((err = store__check_str("result", result, STORE_JSON_MAX_BYTES, state == STORE_JOB_DONE)) ||
        (err = store__check_str("error", error, STORE_TEXT_MAX_BYTES, state == STORE_JOB_FAILED)) ||
        (err = check_owner(owner)))
        return err;
    job_update_args a = {id, owner, state, 0, result, error, error_status};
    return store__write(st, job_update_op, &a);
}

typedef struct job_renew_args {
    const char *owner;
    int64_t lease_ms;
    size_t n;
} job_renew_args;

static int job_renew_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_renew_args *a = arg;
    int err = store__run(w,
                         "UPDATE video_jobs SET lease_until_ms = ? WHERE owner = ? AND "
                         "state IN ('queued', 'running')",
                         "it", vg_wall_ms() + a->lease_ms, a->owner);
    if (!err)
        a->n = (size_t)store__sq_changes(w);
    return err;
}

int store_job_renew(store *st, const char *owner, int64_t lease_ms, size_t *out_n)
{
    int err;
    if ((err = check_owner(owner)) || (err = check_lease(lease_ms)))
        return err;
    job_renew_args a = {owner, lease_ms, 0};
    err = store__write(st, job_renew_op, &a);
    if (!err && out_n)
        *out_n = a.n;
    return err;
}

typedef struct job_takeover_args {
    const char *owner;
    int64_t lease_ms;
    int max_attempts, own;
    char (*ids)[STORE_ID_MAX];
    size_t max, n, failed;
} job_takeover_args;

/* Which open jobs are up for taking (parameters ?1 now, ?2 own, ?3 owner): the lease expired and
 * another node (or none) held it, or, with own, any of owner's (its previous process's). A job
 * of owner's own whose lease ran out is left to its heartbeat: one of its workers may be running
 * it, and re-queueing it here would run it twice on this node. */
#define JOB_TAKEABLE                                                                               \
    "((lease_until_ms <= ?1 AND (owner IS NULL OR owner <> ?3)) OR (?2 = 1 AND owner = ?3))"

static int job_takeover_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_takeover_args *a = arg;
    a->n = a->failed = 0; /* the store may run the op again after a serialization failure */
    int64_t now = vg_wall_ms();
    int err = store__run(w,
                         "UPDATE video_jobs SET state = 'failed', error_status = 500, "
                         "error = 'the server stopped ' || attempts || ' times while this job "
                         "ran; it is not retried again', updated_ms = ?1, lease_until_ms = 0 "
                         "WHERE state = 'running' AND attempts >= ?4 AND " JOB_TAKEABLE,
                         "iiti", now, (int64_t)a->own, a->owner, (int64_t)a->max_attempts);
    if (err)
        return err;
    a->failed = (size_t)store__sq_changes(w);
    sq_stmt *s = NULL;
    /* Another node's jobs: at most max, oldest first, so that every job taken is listed and
     * queued by the caller; the rest are taken at its next beat. (Taking them all listed only
     * max, and the others sat owned by the taker, renewed by its heartbeat and never queued,
     * until it restarted.) Its own, at its start: all of them (store_job_queued lists them). */
    if (a->own)
        err = store__query(w,
                           "UPDATE video_jobs SET state = 'queued', owner = ?3, lease_until_ms = "
                           "?4, updated_ms = ?1 WHERE state IN ('queued', 'running') AND "
                           "" JOB_TAKEABLE " RETURNING id",
                           &s, "iiti", now, (int64_t)a->own, a->owner, now + a->lease_ms);
    else
        err = store__query(w,
                           "UPDATE video_jobs SET state = 'queued', owner = ?3, lease_until_ms = "
                           "?4, updated_ms = ?1 WHERE state IN ('queued', 'running') AND "
                           "" JOB_TAKEABLE " AND id IN (SELECT id FROM video_jobs WHERE state IN "
                           "('queued', 'running') AND " JOB_TAKEABLE " ORDER BY id LIMIT ?5) "
                           "RETURNING id",
                           &s, "iitii", now, (int64_t)a->own, a->owner, now + a->lease_ms,
                           (int64_t)a->max);
    while (!err) {
        int rc = store__sq_step(s);
        if (rc <= 0) {
            err = rc;
            break;
        }
        if (a->n < a->max)
            store__sc_id(s, 0, a->ids[a->n++]);
    }
    store__sq_release(s);
    return err;
}

int store_job_takeover(store *st, const char *owner, int64_t lease_ms, int max_attempts, int own,
                       char (*ids)[STORE_ID_MAX], size_t max, size_t *out_n, size_t *out_failed)
{
    int err;
    if ((err = check_owner(owner)) || (err = check_lease(lease_ms)))
        return err;
    job_takeover_args a = {owner, lease_ms, max_attempts, own != 0, ids, ids ? max : 0, 0, 0};
    err = store__write(st, job_takeover_op, &a);
    if (!err) {
        if (out_n)
            *out_n = a.n;
        if (out_failed)
            *out_failed = a.failed;
    }
    return err;
}

int store_job_queued(store *st, const char *owner, size_t max, vg_arena *a,
                     char (**out_ids)[STORE_ID_MAX], size_t *out_n)
{
    int err0 = check_owner(owner);
    if (err0)
        return err0;
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    char(*ids)[STORE_ID_MAX] = NULL;
    size_t n = 0;
    int err =
        store__query(db,
                     "SELECT id FROM video_jobs WHERE state = 'queued' AND owner = ? ORDER BY id "
                     "LIMIT ?",
                     &s, "ti", owner, (int64_t)max);
    if (!err && max && !(ids = vg_arena_alloc(a, max * sizeof *ids)))
        err = vg_err_set(VG_ENOMEM, "store: job ids");
    while (!err && n < max) {
        int rc = store__sq_step(s);
        if (rc <= 0) {
            err = rc;
            break;
        }
        store__sc_id(s, 0, ids[n++]);
    }
    store__sq_release(s);
    store__reader_release(st, db);
    if (!err) {
        *out_ids = ids;
        *out_n = n;
    }
    return err;
}
