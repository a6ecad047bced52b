/*
 * store_jobs: video analysis jobs (schema 5). A job is written before its 202 is sent, so an
 * acknowledged job is never lost; state moves queued -> running -> done | failed, and only
 * here. A server that dies with a job running leaves it `running`: store_job_recover, at the
 * next start, puts it back in the queue or, after max_attempts starts, fails it with the reason,
 * so no job stays running forever and none is retried without end.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define JOB_COLS                                                                                   \
    "t.id, t.tenant_id, t.state, t.attempts, t.progress, t.params, t.file, t.bytes, t.result, "    \
    "t.error, t.error_status, t.created_ms, t.updated_ms"

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
    return 0;
}

typedef struct job_create_args {
    const char *tenant_id, *params, *file;
    uint64_t bytes;
    char *out_id;
} job_create_args;

static int job_create_op(store *st, sq_db *w, void *arg)
{
    job_create_args *a = arg;
    char id[STORE_ID_MAX];
    int64_t ms;
    store__id_new(st, "job", id, &ms);
    int err =
        store__run(w,
                   "INSERT INTO video_jobs(id, tenant_id, state, params, file, bytes, "
                   "created_ms, updated_ms) VALUES(?, ?, 'queued', ?, ?, ?, ?, ?)",
                   "ttttiii", id, a->tenant_id, a->params, a->file, (int64_t)a->bytes, ms, ms);
    if (err == VG_ENOTFOUND)
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    if (!err)
        memcpy(a->out_id, id, STORE_ID_MAX);
    return err;
}

int store_job_create(store *st, const char *tenant_id, const char *params, const char *file,
                     uint64_t bytes, char out_id[STORE_ID_MAX])
{
    if (!tenant_id)
        return vg_err_set(VG_EINVAL, "a job needs a tenant");
    if (!store__id_valid(tenant_id, "tnt"))
        return vg_err_set(VG_ENOTFOUND, "tenant not found");
    int err;
    if ((err = store__check_str("params", params, STORE_JOB_PARAMS_MAX_BYTES, 1)) ||
        (err = store__check_str("file", file, STORE_URL_MAX_BYTES, 1)))
        return err;
    job_create_args a = {tenant_id, params, file, bytes, out_id};
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
    const char *id;
    int max_attempts;
    int *started;
} job_start_args;

static int job_start_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_start_args *a = arg;
    sq_stmt *s = NULL;
    int err =
        store__query(w, "SELECT state, attempts FROM video_jobs WHERE id = ?", &s, "t", a->id);
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
    store__sq_release(s);
    if (!queued)
        return vg_err_set(VG_ECONFLICT, "job %s is not queued", a->id);
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
                      "progress = 0, updated_ms = ? WHERE id = ?",
                      "it", now, a->id);
}

int store_job_start(store *st, const char *id, int max_attempts, int *out_started)
{
    int started = 0;
    job_start_args a = {id, max_attempts, &started};
    int err = store__write(st, job_start_op, &a);
    if (!err && out_started)
        *out_started = started;
    return err;
}

typedef struct job_update_args {
    const char *id;
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
                         "state = 'running'",
                         "dit", a->progress, now, a->id);
    else
        err = store__run(w,
                         "UPDATE video_jobs SET state = ?, progress = ?, result = ?, error = ?, "
                         "error_status = ?, updated_ms = ? WHERE id = ? AND state = 'running'",
                         "tdttiit", store_job_state_name(a->state),
                         a->state == STORE_JOB_DONE ? 1.0 : a->progress, a->result, a->error,
                         (int64_t)a->error_status, now, a->id);
    if (!err && store__sq_changes(w) == 0)
        err = vg_err_set(VG_ECONFLICT, "job %s is not running", a->id);
    return err;
}

int store_job_progress(store *st, const char *id, double progress)
{
    if (!isfinite(progress) || progress < 0 || progress > 1)
        return vg_err_set(VG_EINVAL, "progress must be in 0..1");
    job_update_args a = {id, STORE_JOB_RUNNING, progress, NULL, NULL, 0};
    return store__write(st, job_update_op, &a);
}

int store_job_finish(store *st, const char *id, store_job_state state, const char *result,
                     const char *error, int error_status)
{
    if (state != STORE_JOB_DONE && state != STORE_JOB_FAILED)
        return vg_err_set(VG_EINVAL, "a job finishes done or failed");
    int err;
    if ((err = store__check_str("result", result, STORE_JSON_MAX_BYTES, state == STORE_JOB_DONE)) ||
        (err = store__check_str("error", error, STORE_TEXT_MAX_BYTES, state == STORE_JOB_FAILED)))
        return err;
    job_update_args a = {id, state, 0, result, error, error_status};
    return store__write(st, job_update_op, &a);
}

typedef struct job_recover_args {
    int max_attempts;
    size_t requeued, failed;
} job_recover_args;

static int job_recover_op(store *st, sq_db *w, void *arg)
{
    (void)st;
    job_recover_args *a = arg;
    int64_t now = vg_wall_ms();
    int err = store__run(w,
                         "UPDATE video_jobs SET state = 'failed', error_status = 500, "
                         "error = 'the server stopped ' || attempts || ' times while this job "
                         "ran; it is not retried again', updated_ms = ? "
                         "WHERE state = 'running' AND attempts >= ?",
                         "ii", now, (int64_t)a->max_attempts);
    if (err)
        return err;
    a->failed = (size_t)store__sq_changes(w);
    err = store__run(w,
                     "UPDATE video_jobs SET state = 'queued', updated_ms = ? "
                     "WHERE state = 'running'",
                     "i", now);
    if (!err)
        a->requeued = (size_t)store__sq_changes(w);
    return err;
}

int store_job_recover(store *st, int max_attempts, size_t *out_requeued, size_t *out_failed)
{
    job_recover_args a = {max_attempts, 0, 0};
    int err = store__write(st, job_recover_op, &a);
    if (!err) {
        if (out_requeued)
            *out_requeued = a.requeued;
        if (out_failed)
            *out_failed = a.failed;
    }
    return err;
}

int store_job_queued(store *st, size_t max, vg_arena *a, char (**out_ids)[STORE_ID_MAX],
                     size_t *out_n)
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    char(*ids)[STORE_ID_MAX] = NULL;
    size_t n = 0;
    int err =
        store__query(db, "SELECT id FROM video_jobs WHERE state = 'queued' ORDER BY id LIMIT ?", &s,
                     "i", (int64_t)max);
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
