/*
 * sched: the hand-over between request threads (HTTP, CLI) and inference workers.
 *
 *   submitters --sched_submit--> bounded queue per kind --batcher--> worker thread + replica
 *        ^                        (full: VG_EBUSY at once)            run(replica, items[0..n))
 *        '---------------------- done(arg, status), exactly once, from the worker ------'
 *
 * - Kinds: each kind is one batchable operation (e.g. "recognise one aligned face crop"), with
 *   its own queue, batch function and batching limits. A worker picks, among the kinds whose
 *   batch is ready, the one whose oldest item has waited longest.
 * - Admission control: submit never blocks; a full queue answers VG_EBUSY immediately (the server
 *   turns it into 503 + Retry-After) and counts it.
 * - Tenants: each item belongs to a tenant (an opaque string given to sched_submit_for). Within
 *   a kind every tenant has its own FIFO sub-queue, and a batch takes items round-robin across
 *   the tenants that have some queued, one item per turn: a tenant with a backlog of 100 items
 *   delays another tenant's item by at most one turn per batch, never by the backlog. A kind may
 *   cap what one tenant has queued or running (tenant_quota): past it submit answers VG_EQUOTA
 *   at once (the server turns it into 429 + Retry-After), so one tenant cannot take the whole
 *   queue either.
 * - Deadlines: every item has one (default 2,000 ms). A reaper thread completes queued items with
 *   VG_ETIMEDOUT when their deadline passes (within SCHED_REAP_COALESCE_MS), even while every
 *   worker is busy with a long batch; an item a worker finds past its deadline is dropped the same
 *   way. Either way it is never computed. A batch already running is not interrupted.
 * - Dynamic batching: a batch closes when it reaches the kind's preferred size or when its oldest
 *   item has waited max_delay_us, whichever is first, so a lone item waits at most the delay
 *   (given a free replica). The preferred size adapts: the scheduler estimates items/s for each
 *   batch size bucket (1, 2, 4, ..., max; the median of the bucket's last 5 batches, robust to a
 *   preempted batch) and prefers the best one, trying a neighbouring bucket every 8th batch so the
 *   choice follows the measurements (see sched_kind_stats).
 * - Replicas: a pool of worker threads, each owning one replica context made by the caller's
 *   replica_new on that thread (e.g. a face engine: shared read-only weights, private scratch)
 *   and released by replica_free on the same thread. The pool grows (up to max_replicas) when a
 *   worker leaves items queued and no other worker is idle, and shrinks (down to min_replicas)
 *   after a worker has been idle for idle_shrink_ms.
 * - Shutdown completes (drain) or cancels (VG_ECANCELED) everything still queued.
 *
 * Plugging in a network: the caller prepares each input (one fixed-size tensor) before submit,
 * passes a pointer to it as the item, and the kind's batch function copies the n inputs into the
 * replica's batch tensor, runs the network once and scatters the outputs back into the items.
 *
 * Thread-safety: sched_submit(_for) and sched_stats_get may be called from any thread at any time
 * before sched_free; sched_shutdown and sched_free from one thread, once.
 */
#ifndef VG_SCHED_H
#define VG_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define SCHED_MAX_KINDS 8
#define SCHED_MAX_BATCH 256
#define SCHED_MAX_REPLICAS 256
#define SCHED_MAX_QUEUE_CAPACITY (1u << 20)
#define SCHED_SIZE_BUCKETS 10 /* 1, 2, 4, ..., 256 (the last bucket may be max_batch itself) */

#define SCHED_DEFAULT_MAX_BATCH 32
#define SCHED_DEFAULT_MAX_DELAY_US 1000
#define SCHED_DEFAULT_QUEUE_CAPACITY 1024
#define SCHED_DEFAULT_DEADLINE_MS 2000 /* the reference product's inference timeout */
#define SCHED_DEFAULT_IDLE_SHRINK_MS 5000
#define SCHED_DEFAULT_TENANT_QUOTA 0 /* items one tenant may have queued or running; 0 = no cap */
/* The reaper wakes at most once per this many ms: an expired item is answered at most this late,
 * and a burst of deadlines costs one scan of the queue, not one per item. */
#define SCHED_REAP_COALESCE_MS 1

/* Completion: called exactly once per accepted item (sched_submit returned 0), from a worker
 * thread, the reaper thread (expired while queued) or the thread calling sched_shutdown
 * (cancelled items), with 0, the batch function's error, VG_ETIMEDOUT (deadline passed before it
 * started) or VG_ECANCELED (shutdown). arg is the caller's. Keep it short: it runs on an
 * inference thread or holds up other expiries. */
typedef void (*sched_done_fn)(void *arg, int status);

/* Runs one batch on a replica (borrowed; only this worker uses it): items[0..n) are the pointers
 * given to sched_submit, taken round-robin across tenants (each tenant's in submission order),
 * 1 <= n <= max_batch. status[0..n) starts at 0; set an entry to a negative VG_E* code to fail
 * one item. A non-zero return fails the whole batch with that code. kind_user is
 * sched_kind_config.user. */
typedef int (*sched_batch_fn)(void *replica, void *kind_user, void *const *items, size_t n,
                              int *status);

/* Creates the replica context for worker `index` (0..max_replicas-1, reused after a worker
 * exits) on that worker's own thread; *replica returns owned by the worker until replica_free.
 * Returns 0 or a negative VG_E* code. */
typedef int (*sched_replica_new_fn)(void *user, unsigned index, void **replica);
/* Releases a replica (takes ownership), on the thread that created it. */
typedef void (*sched_replica_free_fn)(void *user, void *replica);

typedef struct sched_kind_config {
    const char *name;        /* borrowed, must outlive the scheduler (a string literal) */
    sched_batch_fn run;      /* required */
    void *user;              /* passed to run as kind_user */
    unsigned max_batch;      /* 1..SCHED_MAX_BATCH */
    uint32_t max_delay_us;   /* how long the oldest item may wait for a batch to fill */
    unsigned queue_capacity; /* 1..SCHED_MAX_QUEUE_CAPACITY; beyond it: VG_EBUSY */
    int adaptive;            /* 1: adapt the preferred size; 0: always close at max_batch */
    unsigned tenant_quota;   /* items one tenant may have queued + running; beyond: VG_EQUOTA;
                                0 = no cap */
} sched_kind_config;

typedef struct sched_config {
    const sched_kind_config *kinds; /* borrowed during sched_new; 1..SCHED_MAX_KINDS */
    size_t n_kinds;
    sched_replica_new_fn replica_new; /* NULL: replicas are NULL pointers */
    sched_replica_free_fn replica_free;
    void *replica_user;
    unsigned min_replicas; /* >= 1, started (and checked) by sched_new */
    unsigned max_replicas; /* >= min_replicas, <= SCHED_MAX_REPLICAS */
    uint32_t idle_shrink_ms;
    uint32_t default_deadline_ms; /* used when sched_submit gets deadline 0 */
} sched_config;

/* Defaults: max_batch 32, delay 1000 us, queue 1024, adaptive, no tenant quota. */
void sched_kind_config_init(sched_kind_config *k);
/* Defaults: min 1 replica, max one per CPU, shrink after 5 s idle, deadline 2000 ms; no kinds. */
void sched_config_init(sched_config *cfg);

typedef struct sched sched;

/* Validates cfg, starts min_replicas workers and waits for their replicas. Errors: VG_EINVAL
 * (with a detail), VG_ENOMEM, or the first replica_new error (nothing left running). */
int sched_new(const sched_config *cfg, sched **out);

/* Queues item (borrowed until done runs) for kind on behalf of tenant (borrowed during the call;
 * NULL and "" are the same anonymous tenant; tenants are told apart by a 64-bit hash of the
 * string). deadline_ns is absolute on vg_now_ns()'s clock, 0 for now + default_deadline_ms.
 * Never blocks, never allocates. Returns 0 (done will be called exactly once), VG_EQUOTA (the
 * tenant already has tenant_quota items queued or running), VG_EBUSY (queue full), VG_ECANCELED
 * (shutting down), VG_EINVAL; on any error done is not called. */
int sched_submit_for(sched *s, unsigned kind, const char *tenant, void *item, uint64_t deadline_ns,
                     sched_done_fn done, void *arg);
/* sched_submit_for with the anonymous tenant. */
int sched_submit(sched *s, unsigned kind, void *item, uint64_t deadline_ns, sched_done_fn done,
                 void *arg);

/* Stops accepting work. cancel_pending = 0: workers finish everything queued (deadlines still
 * apply); 1: queued items complete with VG_ECANCELED at once (batches already running finish).
 * Returns when every worker and the reaper have exited (so every accepted item's done has run)
 * and every replica is released. Idempotent. */
void sched_shutdown(sched *s, int cancel_pending);
/* sched_shutdown(s, 1) if not done yet, then frees. NULL is a no-op. */
void sched_free(sched *s);

/* 1 when nothing is queued (any kind) and at most one batch is running (the caller's own, when
 * a batch function asks): the moment a lone item may spread its work over cores that no other
 * worker needs. Takes the scheduler's lock for a few loads. */
int sched_lone(sched *s);

typedef struct sched_kind_stats {
    const char *name;
    uint64_t submitted;      /* accepted */
    uint64_t rejected;       /* VG_EBUSY: queue full (admission control) */
    uint64_t quota_rejected; /* VG_EQUOTA: the tenant had tenant_quota items in */
    uint64_t completed;      /* done with 0 */
    uint64_t failed;         /* done with the batch function's error */
    uint64_t expired;        /* done with VG_ETIMEDOUT, never computed */
    uint64_t reaped;         /* of expired: by the reaper, while still queued */
    uint64_t canceled;       /* done with VG_ECANCELED at shutdown */
    uint64_t batches, batch_items;
    uint64_t queue_depth;              /* now */
    uint64_t tenants;                  /* now: tenants with items queued or running */
    uint64_t wait_ns_sum, wait_ns_max; /* submit -> batch start, computed items */
    uint64_t run_ns_sum;               /* time inside the batch function */
    unsigned max_batch;                /* now (sched_kind_tune may have changed it) */
    uint32_t max_delay_us;             /* now */
    unsigned preferred_batch;          /* current choice of the adaptive batcher */
    /* Per size bucket b (batches of size in [bucket_size[b], bucket_size[b+1])): */
    unsigned n_buckets;
    unsigned bucket_size[SCHED_SIZE_BUCKETS];
    uint64_t bucket_batches[SCHED_SIZE_BUCKETS];
    double bucket_items_per_s[SCHED_SIZE_BUCKETS]; /* median of the last 5; 0 = none yet */
    /* For metrics, fixed whatever max_batch is: batches of size [2^b, 2^(b+1)) (b = 0 is size 1;
     * their sum is `batches`), and each computed item's wait from submit to batch start (sum =
     * wait_ns_sum). */
    uint64_t size_batches[SCHED_SIZE_BUCKETS];
    vg_lat_snapshot wait;
} sched_kind_stats;

typedef struct sched_stats {
    size_t n_kinds;
    sched_kind_stats kinds[SCHED_MAX_KINDS];
    unsigned replicas;      /* workers with a live replica now */
    unsigned replicas_busy; /* running a batch now */
    unsigned replicas_peak;
    unsigned min_replicas, max_replicas;
    uint64_t replicas_started, replicas_stopped, replica_errors;
    uint64_t replicas_replaced; /* fresh replicas made by sched_replace_failing_replica */
    uint64_t batch_failures;    /* batches that failed as a whole (or every item in them) */
    unsigned worst_fail_streak; /* longest run of consecutive failed batches of a live replica */
} sched_stats;

/* A consistent snapshot. An item is counted (completed, failed) before its done callback runs,
 * so a caller that has seen its callbacks also sees them in the counts. */
void sched_stats_get(sched *s, sched_stats *out);

/* ---- run-time knobs (self-healing) --------------------------------------------------------- */

/* Longest max_delay_us sched_kind_tune accepts. */
#define SCHED_MAX_DELAY_US 1000000u

/* New batching limits for a kind while serving: max_batch in 1..the max_batch it was created with
 * (the workers' buffers hold that many), max_delay_us <= SCHED_MAX_DELAY_US. The adaptive batcher
 * starts measuring again over the new sizes. VG_EINVAL. Any thread. */
int sched_kind_tune(sched *s, unsigned kind, unsigned max_batch, uint32_t max_delay_us);
/* Raises or lowers the replica floor (1..max_replicas); raising starts workers at once (without
 * waiting for their replicas), lowering lets idle ones retire after idle_shrink_ms. VG_EINVAL,
 * VG_ECANCELED (shutting down). */
int sched_set_min_replicas(sched *s, unsigned n);
/* Starts one more replica now and keeps it (the floor becomes the current count + 1).
 * VG_ECONFLICT when max_replicas are already running or starting; VG_ECANCELED. */
int sched_add_replica(sched *s);
/* Replaces the replica whose batches kept failing: the live replica with the longest run of
 * consecutive failed batches, if that run is >= min_streak, gets a fresh replica (replica_free,
 * then replica_new on its own worker thread, after its current batch). *index (may be NULL) gets
 * its worker index. VG_ENOTFOUND when no replica has failed min_streak batches in a row. */
int sched_replace_failing_replica(sched *s, unsigned min_streak, unsigned *index);

#endif /* VG_SCHED_H */
