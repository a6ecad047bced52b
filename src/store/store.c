/*
 * store: opening, the connection pool, the write queue with group commit, ids and stats.
 *
 * Concurrency design (why): SQLite allows one writer at a time per database and, in WAL mode,
 * any number of readers that never wait for it. So the store keeps
 *   - a pool of read-only connections (cfg.read_connections); a read call borrows one for its
 *     duration, and a multi-statement read wraps itself in one read transaction (a snapshot);
 *   - ONE writer connection, driven by a queue. A thread that wants to write appends an op to the
 *     queue; the thread at the head becomes the leader, takes every op queued behind it (up to
 *     max_group_ops), runs them in ONE transaction (each in its own SAVEPOINT so one failing op
 *     does not fail the others), commits once, then wakes the followers with their results and
 *     hands leadership to the next head. This is group commit without a dedicated thread (the
 *     LevelDB writer-queue scheme): a lone writer pays no hand-off, and N concurrent writers share
 *     one fsync. Every op returns only after its commit, so an acknowledged write is durable.
 *   Alternatives rejected: one mutex around the writer gives one fsync per write (concurrent
 *   analyze requests would queue on the disk); a dedicated writer thread adds two context
 *   switches per write and a lifecycle to manage, for the same batching.
 *
 * Durability: WAL + synchronous=FULL by default: the WAL is fsync'ed at each commit, so a
 * committed write survives kill -9 and power loss. NORMAL skips that fsync (kill -9 safe, not
 * power-loss safe) and is an operator's choice (see docs/BENCHMARKS.md for the cost).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

#define STORE_DEFAULT_READERS 4
#define STORE_MAX_READERS 64
#define STORE_DEFAULT_BUSY_TIMEOUT_MS 5000
#define STORE_DEFAULT_MAX_GROUP_OPS 256
#define STORE_DEFAULT_CHECKPOINT_PAGES 1000 /* SQLite's own autocheckpoint default */
#define STORE_DEFAULT_TXN_MAX_ATTEMPTS 10   /* PostgreSQL: tries of one write transaction */
#define STORE_TXN_RETRY_MAX_WAIT_MS 100     /* longest wait between two tries (before jitter) */
#define STORE_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define STORE_DEFAULT_STATEMENT_TIMEOUT_MS 30000
#define STORE_DEFAULT_RECONNECT_TIMEOUT_MS 15000
#define STORE_DEFAULT_RETRY_MAX_MS 5000

struct store_wop {
    store_write_fn fn;
    void *arg;
    int rc;
    int done;
    pthread_cond_t cv;
    struct store_wop *next;
    char err[256]; /* the op's vg_err_msg(), carried back to its own thread */
};

/* ---- counters ------------------------------------------------------------------------------- */

void store__counters_error(store_counters *c, const char *msg)
{
    pthread_mutex_lock(&c->err_mu);
    snprintf(c->last_error, sizeof c->last_error, "%s", msg);
    c->last_error_ms = vg_wall_ms();
    pthread_mutex_unlock(&c->err_mu);
}

void store_stats_get(store *st, store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->queries = atomic_load(&st->ctr.queries);
    memset(&out->query_latency, 0, sizeof(out->query_latency));
    vg_lat_read(&st->ctr.query_latency, &out->query_latency);
    out->errors = atomic_load(&st->ctr.errors);
    out->busy_retries = atomic_load(&st->ctr.busy_retries);
    out->commits = atomic_load(&st->ctr.commits);
    out->write_ops = atomic_load(&st->ctr.write_ops);
    out->scans_inserted = atomic_load(&st->ctr.scans_inserted);
    out->checkpoints = atomic_load(&st->ctr.checkpoints);
    out->sqlite_memory_bytes = store__sq_memory_used(st->writer);
    out->txn_retries = atomic_load(&st->ctr.txn_retries);
    out->reconnects = atomic_load(&st->ctr.reconnects);
    out->change_notifies = atomic_load(&st->ctr.change_notifies);
    out->unavailable_since_ms = atomic_load(&st->ctr.db_down_since_ms);
    out->unavailable_fails = atomic_load(&st->ctr.db_fast_fails);
    pthread_mutex_lock(&st->ctr.err_mu);
    memcpy(out->last_error, st->ctr.last_error, sizeof out->last_error);
    out->last_error_ms = st->ctr.last_error_ms;
    pthread_mutex_unlock(&st->ctr.err_mu);
}

/* ---- ids ------------------------------------------------------------------------------------ */

/* Lower-case Crockford base32: ASCII order == numeric order, no I L O U. */
static const char B32[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* 16 bytes big-endian (6 ms + 10 counter) -> 26 chars, the top 2 of 130 bits being zero. */
static void encode_128(const uint8_t b[16], char out[26])
{
    for (int i = 0; i < 26; i++) {
        int bit = i * 5 - 2; /* position of the digit's top bit in the 128-bit string */
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (b[bit >> 3] >> (7 - (bit & 7))) & 1u;
        }
        out[i] = B32[v];
    }
}

static void format_id(const char *prefix, int64_t ms, const uint8_t ctr[10], char out[STORE_ID_MAX])
{
    uint8_t b[16];
    uint64_t m = (uint64_t)ms;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(m >> (8 * (5 - i)));
    memcpy(b + 6, ctr, 10);
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    out[pl] = '_';
    encode_128(b, out + pl + 1);
    out[pl + 27] = '\0';
}

void store__id_new(store *st, const char *prefix, char out[STORE_ID_MAX], int64_t *out_ms)
{
    int64_t now = vg_wall_ms();
    if (now > st->id_ms) {
        st->id_ms = now;
        if (vg_random_bytes(st->id_ctr, sizeof st->id_ctr) != 0)
            memset(st->id_ctr, 0, sizeof st->id_ctr);
        st->id_ctr[0] &= 0x7f; /* leave room to count up within the millisecond */
    } else {
        /* Same millisecond, or the clock stepped back: keep the last millisecond and count up,
         * so ids stay strictly increasing in commit order. */
        for (int i = 9; i >= 0 && ++st->id_ctr[i] == 0; i--)
            ;
    }
    format_id(prefix, st->id_ms, st->id_ctr, out);
    if (out_ms)
        *out_ms = st->id_ms;
}

void store__id_next(store *st, const char *prefix, char out[STORE_ID_MAX])
{
    for (int i = 9; i >= 0 && ++st->id_ctr[i] == 0; i--)
        ;
    format_id(prefix, st->id_ms, st->id_ctr, out);
}

int store__id_valid(const char *id, const char *prefix)
{
    if (!id || !prefix)
        return 0;
    size_t pl = strlen(prefix);
    if (strncmp(id, prefix, pl) != 0 || id[pl] != '_')
        return 0;
    const char *body = id + pl + 1;
    for (int i = 0; i < 26; i++) {
        if (!body[i] || !strchr(B32, body[i]))
            return 0;
    }
    return body[26] == '\0' && body[0] <= '7';
}

void store__id_floor(const char *prefix, int64_t ms, char out[STORE_ID_MAX])
{
    static const uint8_t zero[10] = {0};
    if (ms < 0)
        ms = 0;
    if (ms > (int64_t)0xffffffffffffll)
        ms = (int64_t)0xffffffffffffll;
    format_id(prefix, ms, zero, out);
}

/* ---- read pool ------------------------------------------------------------------------------ */

sq_db *store__reader_acquire(store *st)
{
    pthread_mutex_lock(&st->rp_mu);
    while (st->n_free == 0)
        pthread_cond_wait(&st->rp_cv, &st->rp_mu);
    sq_db *db = st->readers[st->rp_free[--st->n_free]];
    pthread_mutex_unlock(&st->rp_mu);
    return db;
}

void store__reader_release(store *st, sq_db *db)
{
    pthread_mutex_lock(&st->rp_mu);
    for (unsigned i = 0; i < st->n_readers; i++) {
        if (st->readers[i] == db) {
            st->rp_free[st->n_free++] = i;
            break;
        }
    }
    pthread_cond_signal(&st->rp_cv);
    pthread_mutex_unlock(&st->rp_mu);
}

/* ---- write queue ---------------------------------------------------------------------------- */

static void capture_err(store_wop *op)
{
    snprintf(op->err, sizeof op->err, "%s", vg_err_msg());
}

/* How one attempt at a group's transaction ended (run_group_once). */
typedef enum group_end {
    GROUP_DONE,        /* committed, or failed for good: every op's rc is final */
    GROUP_RETRY,       /* PostgreSQL rolled it back (serialization failure, deadlock, or the
                        * connection went away before COMMIT was sent): nothing was committed */
    GROUP_COMMIT_LOST, /* the connection went away while COMMIT was in flight */
} group_end;

static void fail_all(store_wop **ops, size_t n, int err, const char *msg)
{
    for (size_t i = 0; i < n; i++) {
        ops[i]->rc = err;
        snprintf(ops[i]->err, sizeof ops[i]->err, "%s", msg);
    }
}

/* The PostgreSQL end of an attempt: a failure that store__sq_fail classifies as retryable or a
 * lost connection turns the whole attempt into GROUP_RETRY (the transaction is rolled back if
 * the session still has it). */
static int attempt_lost(sq_db *w)
{
    if (store__sq_fail(w) == SQ_FAIL_NONE)
        return 0;
    if (store__sq_fail(w) == SQ_FAIL_RETRY && store__sq_in_txn(w))
        store__sq_exec(w, "ROLLBACK");
    return 1;
}

/* Runs ops[0..n) in one transaction on the writer. Leader only. */
static group_end run_group_once(store *st, store_wop **ops, size_t n, int *committed)
{
    sq_db *w = st->writer;
    *committed = 0;
    store__sq_fail_clear(w);
    for (size_t i = 0; i < n; i++) {
        ops[i]->rc = 0;
        ops[i]->err[0] = '\0';
    }
    int err = store__sq_exec(w, "BEGIN IMMEDIATE");
    if (err) {
        if (attempt_lost(w))
            return GROUP_RETRY;
        for (size_t i = 0; i < n; i++) {
            ops[i]->rc = err;
            capture_err(ops[i]);
        }
        return GROUP_DONE;
    }
    int lost = 0; /* the whole transaction was rolled back under us */
    if (n == 1) {
        ops[0]->rc = ops[0]->fn(st, w, ops[0]->arg);
        if (ops[0]->rc) {
            capture_err(ops[0]);
            if (attempt_lost(w))
                return GROUP_RETRY;
            lost = 1;
        }
    } else {
        for (size_t i = 0; i < n && !lost; i++) {
            err = store__sq_exec(w, "SAVEPOINT op");
            if (!err) {
                err = ops[i]->fn(st, w, ops[i]->arg);
                if (err) {
                    capture_err(ops[i]);
                    if (attempt_lost(w))
                        return GROUP_RETRY;
                    /* Undo this op only; ROLLBACK TO keeps the savepoint, RELEASE pops it. */
                    if (store__sq_in_txn(w) && store__sq_exec(w, "ROLLBACK TO op") == 0)
                        store__sq_exec(w, "RELEASE op");
                }
            } else {
                capture_err(ops[i]);
                if (attempt_lost(w))
                    return GROUP_RETRY;
            }
            ops[i]->rc = err;
            if (!store__sq_in_txn(w)) {
                /* SQLite rolled the whole transaction back (disk full, I/O error): every op of
                 * the group, done or not, is lost and must be told so. */
                for (size_t j = 0; j < n; j++) {
                    if (j != i) {
                        ops[j]->rc = err ? err : VG_ESTORE;
                        snprintf(ops[j]->err, sizeof ops[j]->err, "%s",
                                 err ? ops[i]->err : "transaction rolled back");
                    }
                }
                lost = 1;
                break;
            }
            if (!err && store__sq_exec(w, "RELEASE op") && attempt_lost(w))
                return GROUP_RETRY;
        }
    }
    if (n == 1 && lost) {
        if (store__sq_in_txn(w))
            store__sq_exec(w, "ROLLBACK");
        return GROUP_DONE;
    }
    if (lost)
        return GROUP_DONE;
    if (st->test_before_commit)
        st->test_before_commit(st, w, st->test_ctx);
    err = store__sq_exec(w, "COMMIT");
    if (err) {
        if (store__sq_fail(w) == SQ_FAIL_CONN)
            return GROUP_COMMIT_LOST;
        if (attempt_lost(w))
            return GROUP_RETRY; /* a serialization failure at commit: nothing committed */
        char msg[256];
        snprintf(msg, sizeof msg, "commit failed: %s", vg_err_msg());
        if (store__sq_in_txn(w))
            store__sq_exec(w, "ROLLBACK");
        for (size_t i = 0; i < n; i++) {
            if (ops[i]->rc == 0) {
                ops[i]->rc = err;
                snprintf(ops[i]->err, sizeof ops[i]->err, "%s", msg);
            }
        }
        return GROUP_DONE;
    }
    *committed = 1;
    return GROUP_DONE;
}

static void count_commit(store *st, store_wop **ops, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += ops[i]->rc == 0;
    atomic_fetch_add(&st->ctr.commits, 1);
    atomic_fetch_add(&st->ctr.write_ops, ok);
}

/* Runs the group, again after a PostgreSQL serialization failure, deadlock or lost connection
 * (up to cfg.txn_max_attempts, with a growing wait), so that several nodes can write one
 * database and a database restart costs a pause, not failed requests. A COMMIT whose answer
 * was lost is looked up by its transaction id after reconnecting: committed counts as done,
 * aborted runs again, anything else is VG_ESTORE (the write may or may not be there). On SQLite
 * the first attempt is always the last. */
static void run_group(store *st, store_wop **ops, size_t n)
{
    sq_db *w = st->writer;
    for (unsigned attempt = 1;; attempt++) {
        int committed = 0;
        group_end e = run_group_once(st, ops, n, &committed);
        if (e == GROUP_DONE) {
            if (committed)
                count_commit(st, ops, n);
            return;
        }
        char why[256];
        snprintf(why, sizeof why, "%s", vg_err_msg());
        int conn = store__sq_fail(w) == SQ_FAIL_CONN;
        int64_t txid = store__sq_txid(w);
        if (conn && store__sq_reconnect(w)) {
            fail_all(ops, n, VG_EUNAVAIL, vg_err_msg());
            return;
        }
        if (e == GROUP_COMMIT_LOST) {
            int c = store__sq_txid_committed(w, txid);
            if (c == 1) {
                VG_WARN("store",
                        "commit answer lost with the connection; transaction %lld "
                        "committed",
                        (long long)txid);
                count_commit(st, ops, n);
                return;
            }
            if (c < 0) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "the connection was lost during COMMIT and its outcome is unknown: %s",
                         vg_err_msg());
                for (size_t i = 0; i < n; i++) {
                    if (ops[i]->rc == 0) {
                        ops[i]->rc = VG_ESTORE;
                        snprintf(ops[i]->err, sizeof ops[i]->err, "%s", msg);
                    }
                }
                return;
            }
        }
        if (attempt >= st->cfg.txn_max_attempts) {
            fail_all(ops, n, conn ? VG_EUNAVAIL : VG_EBUSY, why);
            return;
        }
        atomic_fetch_add(&st->ctr.txn_retries, 1);
        /* 1, 2, 4 ... ms up to STORE_TXN_RETRY_MAX_WAIT_MS, with jitter so that nodes that
         * collided do not collide again in step. */
        unsigned wait = 1u << (attempt < 8 ? attempt - 1 : 7);
        if (wait > STORE_TXN_RETRY_MAX_WAIT_MS)
            wait = STORE_TXN_RETRY_MAX_WAIT_MS;
        uint8_t r = 0;
        vg_random_bytes(&r, 1);
        wait += r % (wait + 1);
        struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int store__write(store *st, store_write_fn fn, void *arg)
{
    store_wop op;
    memset(&op, 0, sizeof op);
    op.fn = fn;
    op.arg = arg;
    pthread_cond_init(&op.cv, NULL);

    pthread_mutex_lock(&st->wq_mu);
    if (st->wq_tail)
        st->wq_tail->next = &op;
    else
        st->wq_head = &op;
    st->wq_tail = &op;
    while (!op.done && st->wq_head != &op)
        pthread_cond_wait(&op.cv, &st->wq_mu);
    if (op.done) {
        pthread_mutex_unlock(&st->wq_mu);
        pthread_cond_destroy(&op.cv);
        if (op.rc)
            vg_err_set(op.rc, "%s", op.err);
        return op.rc;
    }

    /* Leader: take the ops queued behind us. Their next pointers up to the last one taken were
     * written under the lock before we read them; later appends only touch the tail. */
    store_wop *batch[64];
    store_wop **ops = batch;
    size_t max = st->cfg.max_group_ops;
    size_t n = 0;
    for (store_wop *p = &op; p && n < max; p = p->next) {
        if (n == VG_ARRAY_LEN(batch) && ops == batch) {
            /* A large group: spill to the heap; if that fails, commit what fits. */
            store_wop **big = vg_malloc(max * sizeof *big);
            if (!big)
                break;
            memcpy(big, batch, sizeof batch);
            ops = big;
        }
        ops[n++] = p;
    }
    pthread_mutex_unlock(&st->wq_mu);

    run_group(st, ops, n);

    pthread_mutex_lock(&st->wq_mu);
    st->wq_head = ops[n - 1]->next;
    if (!st->wq_head)
        st->wq_tail = NULL;
    for (size_t i = 1; i < n; i++) {
        store_wop *p = ops[i];
        p->done = 1;
        pthread_cond_signal(&p->cv); /* p lives on its thread's stack until it sees done */
    }
    if (st->wq_head)
        pthread_cond_signal(&st->wq_head->cv);
    pthread_mutex_unlock(&st->wq_mu);

    if (ops != batch)
        vg_free(ops);
    pthread_cond_destroy(&op.cv);
    if (op.rc)
        vg_err_set(op.rc, "%s", op.err);
    return op.rc;
}

/* ---- checkpointer -------------------------------------------------------------------------- */

/* Why a thread: SQLite's automatic checkpoint runs inside the COMMIT that crosses the
 * threshold, so one analyze request in every few hundred would wait for the whole copy-back
 * and its fsyncs. Here the writer only notes the WAL size (this hook, on the leader's thread,
 * right after a commit) and a thread with its own connection runs PASSIVE checkpoints, which
 * in WAL mode block neither the writer nor the readers. */
static void wal_hook_cb(void *ctx, int wal_pages)
{
    store *st = ctx;
    /* ck_mark is only touched here, i.e. by the current leader. */
    if ((unsigned)wal_pages < st->ck_mark)
        st->ck_mark = 0; /* the WAL was reset after a complete checkpoint */
    if ((unsigned)wal_pages - st->ck_mark < st->cfg.checkpoint_pages)
        return;
    st->ck_mark = (unsigned)wal_pages;
    pthread_mutex_lock(&st->ck_mu);
    st->ck_pending = 1;
    pthread_cond_signal(&st->ck_cv);
    pthread_mutex_unlock(&st->ck_mu);
}

static void *ckpt_main(void *arg)
{
    store *st = arg;
    pthread_mutex_lock(&st->ck_mu);
    for (;;) {
        while (!st->ck_pending && !st->ck_stop)
            pthread_cond_wait(&st->ck_cv, &st->ck_mu);
        if (st->ck_stop)
            break;
        st->ck_pending = 0;
        pthread_mutex_unlock(&st->ck_mu);
        int wal = 0, done = 0;
        int rc = store__sq_checkpoint_passive(st->ckpt_db, &wal, &done);
        if (rc == 0)
            atomic_fetch_add(&st->ctr.checkpoints, 1);
        else if (rc != VG_EBUSY)
            VG_WARN("store", "checkpoint failed: %s", vg_err_msg());
        pthread_mutex_lock(&st->ck_mu);
    }
    pthread_mutex_unlock(&st->ck_mu);
    return NULL;
}

/* ---- open / close --------------------------------------------------------------------------- */

void store_config_default(store_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->read_connections = STORE_DEFAULT_READERS;
    cfg->synchronous = STORE_SYNC_FULL;
    cfg->busy_timeout_ms = STORE_DEFAULT_BUSY_TIMEOUT_MS;
    cfg->max_group_ops = STORE_DEFAULT_MAX_GROUP_OPS;
    cfg->checkpoint_pages = STORE_DEFAULT_CHECKPOINT_PAGES;
    cfg->txn_max_attempts = STORE_DEFAULT_TXN_MAX_ATTEMPTS;
    cfg->connect_timeout_ms = STORE_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->statement_timeout_ms = STORE_DEFAULT_STATEMENT_TIMEOUT_MS;
    cfg->reconnect_timeout_ms = STORE_DEFAULT_RECONNECT_TIMEOUT_MS;
    cfg->retry_max_ms = STORE_DEFAULT_RETRY_MAX_MS;
}

static void store_destroy(store *st)
{
    store__pg_listen_stop(st->listener); /* first: it calls the wake hook */
    if (st->ckpt_started) {
        pthread_mutex_lock(&st->ck_mu);
        st->ck_stop = 1;
        pthread_cond_signal(&st->ck_cv);
        pthread_mutex_unlock(&st->ck_mu);
        pthread_join(st->ckpt_thread, NULL);
    }
    store__sq_close(st->ckpt_db);
    if (st->readers) {
        for (unsigned i = 0; i < st->n_readers; i++)
            store__sq_close(st->readers[i]);
    }
    store__sq_close(st->writer); /* last: it checkpoints the WAL */
    vg_free(st->readers);
    vg_free(st->rp_free);
    pthread_mutex_destroy(&st->rp_mu);
    pthread_cond_destroy(&st->rp_cv);
    pthread_mutex_destroy(&st->wq_mu);
    pthread_mutex_destroy(&st->ctr.err_mu);
    pthread_mutex_destroy(&st->ck_mu);
    pthread_cond_destroy(&st->ck_cv);
    vg_free(st);
}

int store__open_at(const store_config *cfg, int target, store **out)
{
    if (!cfg || !cfg->path || !*cfg->path)
        return vg_err_set(VG_EINVAL, "store: no database path");
    store *st = vg_calloc(1, sizeof *st);
    if (!st)
        return vg_err_set(VG_ENOMEM, "store: open");
    st->cfg = *cfg;
    if (!st->cfg.read_connections)
        st->cfg.read_connections = STORE_DEFAULT_READERS;
    if (st->cfg.read_connections > STORE_MAX_READERS)
        st->cfg.read_connections = STORE_MAX_READERS;
    if (!st->cfg.busy_timeout_ms)
        st->cfg.busy_timeout_ms = STORE_DEFAULT_BUSY_TIMEOUT_MS;
    if (!st->cfg.max_group_ops)
        st->cfg.max_group_ops = STORE_DEFAULT_MAX_GROUP_OPS;
    if (!st->cfg.checkpoint_pages)
        st->cfg.checkpoint_pages = STORE_DEFAULT_CHECKPOINT_PAGES;
    if (!st->cfg.txn_max_attempts)
        st->cfg.txn_max_attempts = STORE_DEFAULT_TXN_MAX_ATTEMPTS;
    if (!st->cfg.connect_timeout_ms)
        st->cfg.connect_timeout_ms = STORE_DEFAULT_CONNECT_TIMEOUT_MS;
    st->ctr.reconnect_timeout_ms = st->cfg.reconnect_timeout_ms
                                       ? st->cfg.reconnect_timeout_ms
                                       : STORE_DEFAULT_RECONNECT_TIMEOUT_MS;
    st->ctr.retry_max_ms = st->cfg.retry_max_ms ? st->cfg.retry_max_ms : STORE_DEFAULT_RETRY_MAX_MS;
    pthread_mutex_init(&st->ck_mu, NULL);
    pthread_cond_init(&st->ck_cv, NULL);
    pthread_mutex_init(&st->rp_mu, NULL);
    pthread_cond_init(&st->rp_cv, NULL);
    pthread_mutex_init(&st->wq_mu, NULL);
    pthread_mutex_init(&st->ctr.err_mu, NULL);

    sq_open_opts o = {
        .path = cfg->path,
        .read_only = 0,
        .sync_full = st->cfg.synchronous != STORE_SYNC_NORMAL,
        .busy_timeout_ms = st->cfg.busy_timeout_ms,
        .max_db_bytes = cfg->max_db_bytes,
        .connect_timeout_ms = st->cfg.connect_timeout_ms,
        .statement_timeout_ms = st->cfg.statement_timeout_ms,
        .ctr = &st->ctr,
    };
    int pg = store__is_pg_url(cfg->path);
    int err = store__sq_open(&o, &st->writer);
    if (!err)
        err = store__migrate(st->writer, target, &st->schema_version);
    if (!err) {
        st->readers = vg_calloc(st->cfg.read_connections, sizeof *st->readers);
        st->rp_free = vg_calloc(st->cfg.read_connections, sizeof *st->rp_free);
        if (!st->readers || !st->rp_free)
            err = vg_err_set(VG_ENOMEM, "store: read pool");
    }
    o.read_only = 1;
    for (unsigned i = 0; !err && i < st->cfg.read_connections; i++) {
        err = store__sq_open(&o, &st->readers[i]);
        if (!err) {
            st->n_readers++;
            st->rp_free[st->n_free++] = i;
        }
    }
    /* The checkpointer: a read-write connection that never writes rows. PostgreSQL
     * checkpoints by itself, server-side: no thread, no connection. */
    o.read_only = 0;
    if (!err && !pg)
        err = store__sq_open(&o, &st->ckpt_db);
    if (!err && !pg)
        err = store__sq_wal_autocheckpoint_off(st->writer);
    if (!err && !pg) {
        if (pthread_create(&st->ckpt_thread, NULL, ckpt_main, st) != 0)
            err = vg_err_set(VG_ENOMEM, "store: cannot start the checkpointer thread");
        else
            st->ckpt_started = 1;
    }
    if (!err && !pg)
        store__sq_wal_hook(st->writer, wal_hook_cb, st);
    if (err) {
        store_destroy(st);
        return err;
    }
    VG_INFO("store", "opened %s (%s %s, schema %d, %u readers, synchronous=%s)",
            pg ? "a postgresql database" : cfg->path, pg ? "postgresql" : "sqlite",
            store__sq_library_version(st->writer), st->schema_version, st->n_readers,
            st->cfg.synchronous == STORE_SYNC_NORMAL ? "normal" : "full");
    *out = st;
    return 0;
}

int store_open(const store_config *cfg, store **out)
{
    size_t n;
    store__migrations(&n);
    return store__open_at(cfg, (int)n, out);
}

void store_close(store *st)
{
    if (!st)
        return;
    store_destroy(st);
}

int store_schema_version(const store *st)
{
    return st->schema_version;
}

int store_ping(store *st)
{
    sq_db *db = store__reader_acquire(st);
    sq_stmt *s = NULL;
    int err = store__sq_prepare(db, "SELECT count(*) FROM tenants", &s);
    if (!err) {
        err = store__sq_step(s);
        err = err == SQ_ROW ? 0 : (err ? err : vg_err_set(VG_ESTORE, "ping returned no row"));
        store__sq_release(s);
    }
    store__reader_release(st, db);
    return err;
}
