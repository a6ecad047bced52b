/*
 * sched: bounded per-kind queues with per-tenant sub-queues, a dynamic batcher, a deadline reaper
 * and an elastic pool of replica workers (the contract is in sched.h).
 *
 * One mutex guards everything shared: the queues, the counters, the pool bookkeeping and the
 * adaptive state. Submitters hold it for a few dozen instructions (no allocation, no system call
 * unless a worker or the reaper must be woken); workers hold it only to pick a batch and to record
 * its outcome, never while running a batch or calling a completion. Everything a queue needs is
 * allocated once at sched_new, so submit never allocates.
 *
 * A kind's queue: a pool of queue_capacity entries (free list), each queued entry linked twice:
 * into the kind's arrival list (oldest first: the batch close timer and the reaper's scan) and
 * into its tenant's FIFO. Tenants with queued items take turns in the `active` round-robin list.
 * A tenant record lives while it has items queued or running (running counts against the quota),
 * found through an open-addressing hash of its 64-bit key; there are queue_capacity +
 * max_replicas * max_batch records, as many as can ever be live, so a lookup never fails.
 *
 * Invariants (under mu):
 *   - an accepted item is in exactly one place: its kind's queue, one worker's batch or expired
 *     list, the reaper's chunk, or the shutdown's cancel list; whoever unlinks it from the queue
 *     completes it, once (the reaper and a worker race only for the mutex, never for an item);
 *   - pending_total == sum of the kinds' counts; a tenant's queued == length of its FIFO;
 *   - a tenant is in the active list iff it has items queued; its record is freed as soon as it
 *     has nothing queued and nothing running;
 *   - live + starting + exiting counts every thread that may still touch the scheduler; the pool
 *     never exceeds max_replicas and, until shutdown, never drops below min_replicas (a worker
 *     decides to retire and leaves `live` in the same critical section).
 *
 * Wake-ups: workers sleep on work_cv, idle (untimed, or timed for the shrink delay) or waiting
 * for a forming batch (timed for its close time). A submit signals only when a worker is idle
 * and either the queue went from empty to non-empty (someone must start the delay timer) or the
 * batch just reached its preferred size. The reaper sleeps on reap_cv until the earliest queued
 * deadline (reap_at); a submit with an earlier deadline moves reap_at and signals it.
 */
#include "sched/sched.h"

#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

/* Throughput estimate per size bucket: the median of its last few batches. Preemption on a busy
 * host only ever makes a batch look slower, in bursts; a median shrugs off a minority of such
 * samples where an average is dragged down by each of them. */
#define SCHED_ADAPT_WINDOW 5
#define SCHED_ADAPT_MIN_SAMPLES 3 /* a bucket needs this many batches before it can win */
#define SCHED_EXPLORE_EVERY 8     /* one batch in this many tries a neighbouring size */
#define SCHED_CANCEL_CHUNK 64
#define SCHED_REAP_CHUNK 64 /* expired items completed per unlock of the reaper */
/* After a replica failed to start, growth pauses this long instead of retrying on every batch. */
#define SCHED_GROW_BACKOFF_NS (1000ull * 1000ull * 1000ull)
#define SCHED_NIL UINT32_MAX /* end of a list of entry or tenant indices */

typedef struct sched_entry {
    void *item;
    sched_done_fn done;
    void *arg;
    uint64_t deadline_ns, enq_ns;
    uint32_t tenant;       /* index of its tenant record */
    uint32_t tprev, tnext; /* its tenant's FIFO */
    uint32_t gprev, gnext; /* the kind's arrival order; gnext also links the free list */
} sched_entry;

/* One tenant of one kind, alive while it has items queued or running. */
typedef struct sched_tenant {
    uint64_t key;                /* hash of the tenant string */
    uint32_t head, tail, queued; /* its FIFO of queued entries */
    uint32_t running;            /* its items in workers' batches now */
    uint32_t next, prev;         /* the active list (next also links the free list) */
} sched_tenant;

typedef struct sched_kind {
    sched_kind_config cfg;  /* max_batch and max_delay_us may change (sched_kind_tune) */
    unsigned max_batch_cap; /* max_batch at sched_new: the buffers and tenant records hold it */
    /* queue */
    sched_entry *pool;
    unsigned cap, count;
    uint32_t free_entry, ghead, gtail;
    sched_tenant *tenants;
    uint32_t n_tenants_max, free_tenant, live_tenants;
    uint32_t *tindex; /* open addressing: tenant index + 1, 0 = empty */
    uint32_t tmask;
    uint32_t active_head, active_tail; /* round-robin order of tenants with queued items */
    /* adaptive batching */
    unsigned n_cand;
    unsigned cand[SCHED_SIZE_BUCKETS];                     /* 1, 2, 4, ..., max_batch */
    double recent[SCHED_SIZE_BUCKETS][SCHED_ADAPT_WINDOW]; /* items/s of the last batches */
    double est[SCHED_SIZE_BUCKETS];                        /* median of recent */
    uint64_t samples[SCHED_SIZE_BUCKETS];
    unsigned pref;
    unsigned explore_tick;
    int explore_up;
    /* statistics */
    uint64_t submitted, rejected, quota_rejected, completed, failed, expired, reaped, canceled;
    uint64_t batches, batch_items, wait_sum, wait_max, run_sum;
    uint64_t size_hist[SCHED_SIZE_BUCKETS]; /* batches of size [2^b, 2^(b+1)) */
    uint64_t wait_hist[VG_LAT_BUCKETS];     /* submit -> batch start: [2^i, 2^(i+1)) ns */
} sched_kind;

/* Index of the power-of-two bucket holding v >= 1 (0 -> 0), capped at n - 1. */
static unsigned sched__log2_bucket(uint64_t v, unsigned n)
{
    unsigned b = v ? 63u - (unsigned)__builtin_clzll(v) : 0;
    return b < n ? b : n - 1;
}

typedef enum { SLOT_FREE = 0, SLOT_TAKEN, SLOT_EXITED } slot_state;

/* One per possible worker, guarded by mu. TAKEN from reservation until the thread marks itself
 * EXITED; the next user of the slot (or the shutdown) joins it. `spawned` says pthread_create has
 * returned and `tid` is valid, so nobody joins a thread id that is still being written. */
typedef struct sched_worker {
    sched *s;
    unsigned index;
    pthread_t tid;
    slot_state state;
    int spawned;
    /* Batch outcomes of the replica in this slot (reset when a fresh replica takes it): a batch
     * fails when the batch function fails or every item in it does. */
    unsigned fail_streak;    /* consecutive failed batches */
    uint64_t batch_failures; /* failed batches since the replica started */
    int replace;             /* sched_replace_failing_replica asked for a fresh replica */
} sched_worker;

struct sched {
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* workers: work may be ready, or shutting down */
    pthread_cond_t state_cv; /* sched_new / shutdown: a worker started or exited */
    pthread_cond_t reap_cv;  /* reaper: an earlier deadline arrived, or stop */
    sched_kind kinds[SCHED_MAX_KINDS];
    size_t n_kinds;
    unsigned batch_cap; /* largest max_batch: size of each worker's buffers */

    sched_replica_new_fn replica_new;
    sched_replica_free_fn replica_free;
    void *replica_user;
    unsigned min_replicas, max_replicas;
    uint64_t idle_shrink_ns, default_deadline_ns;

    sched_worker *workers; /* max_replicas slots */
    unsigned live, starting, exiting, idle, busy, peak;
    unsigned spawning; /* pthread_create calls in flight */
    uint64_t started, stopped, replica_errors;
    uint64_t replaced, batch_failures; /* replicas replaced; failed batches (all replicas) */
    int first_error;                   /* first replica_new failure during sched_new */
    uint64_t grow_after_ns;            /* no growth before this (back-off after a failed start) */
    uint64_t pending_total;
    int stopping, cancel, shut_done;
    /* the deadline reaper */
    pthread_t reaper;
    int reaper_started, reaper_stop;
    uint64_t reap_at; /* when the reaper wakes next; UINT64_MAX: when signalled */
};

/* ---- configuration -------------------------------------------------------------------------- */

void sched_kind_config_init(sched_kind_config *k)
{
    memset(k, 0, sizeof *k);
    k->name = "default";
    k->max_batch = SCHED_DEFAULT_MAX_BATCH;
    k->max_delay_us = SCHED_DEFAULT_MAX_DELAY_US;
    k->queue_capacity = SCHED_DEFAULT_QUEUE_CAPACITY;
    k->adaptive = 1;
    k->tenant_quota = SCHED_DEFAULT_TENANT_QUOTA;
}

void sched_config_init(sched_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->min_replicas = 1;
    int n = vg_cpu_count();
    cfg->max_replicas = (unsigned)(n < 1 ? 1 : n > SCHED_MAX_REPLICAS ? SCHED_MAX_REPLICAS : n);
    cfg->idle_shrink_ms = SCHED_DEFAULT_IDLE_SHRINK_MS;
    cfg->default_deadline_ms = SCHED_DEFAULT_DEADLINE_MS;
}

static int validate(const sched_config *cfg)
{
    if (!cfg->kinds || cfg->n_kinds < 1 || cfg->n_kinds > SCHED_MAX_KINDS)
        return vg_err_set(VG_EINVAL, "sched: 1..%d kinds needed, got %zu", SCHED_MAX_KINDS,
                          cfg->n_kinds);
    if (cfg->min_replicas < 1 || cfg->max_replicas < cfg->min_replicas ||
        cfg->max_replicas > SCHED_MAX_REPLICAS)
        return vg_err_set(VG_EINVAL, "sched: replicas must satisfy 1 <= min (%u) <= max (%u) <= %d",
                          cfg->min_replicas, cfg->max_replicas, SCHED_MAX_REPLICAS);
    if (cfg->default_deadline_ms < 1)
        return vg_err_set(VG_EINVAL, "sched: default deadline must be >= 1 ms");
    for (size_t i = 0; i < cfg->n_kinds; i++) {
        const sched_kind_config *k = &cfg->kinds[i];
        if (!k->run || !k->name)
            return vg_err_set(VG_EINVAL, "sched: kind %zu needs a name and a batch function", i);
        if (k->max_batch < 1 || k->max_batch > SCHED_MAX_BATCH)
            return vg_err_set(VG_EINVAL, "sched: kind %s: max_batch %u not in 1..%d", k->name,
                              k->max_batch, SCHED_MAX_BATCH);
        if (k->queue_capacity < 1 || k->queue_capacity > SCHED_MAX_QUEUE_CAPACITY)
            return vg_err_set(VG_EINVAL, "sched: kind %s: queue_capacity %u not in 1..%u", k->name,
                              k->queue_capacity, SCHED_MAX_QUEUE_CAPACITY);
    }
    return VG_OK;
}

/* ---- adaptive batch size (caller holds mu) -------------------------------------------------- */

static void kind_init_buckets(sched_kind *k)
{
    unsigned n = 0;
    for (unsigned size = 1; size < k->cfg.max_batch && n < SCHED_SIZE_BUCKETS - 1; size *= 2)
        k->cand[n++] = size;
    k->cand[n++] = k->cfg.max_batch;
    k->n_cand = n;
    /* Start at the largest batch (classic dynamic batching); measurements move it from there. */
    k->pref = k->cfg.max_batch;
}

static unsigned bucket_of(const sched_kind *k, unsigned n)
{
    unsigned b = 0;
    while (b + 1 < k->n_cand && k->cand[b + 1] <= n)
        b++;
    return b;
}

static void adapt_record(sched_kind *k, unsigned n, uint64_t run_ns)
{
    unsigned b = bucket_of(k, n);
    double ips = (double)n * 1e9 / (double)(run_ns ? run_ns : 1);
    k->recent[b][k->samples[b] % SCHED_ADAPT_WINDOW] = ips;
    k->samples[b]++;
    unsigned m = k->samples[b] < SCHED_ADAPT_WINDOW ? (unsigned)k->samples[b] : SCHED_ADAPT_WINDOW;
    double v[SCHED_ADAPT_WINDOW];
    memcpy(v, k->recent[b], m * sizeof *v);
    for (unsigned i = 1; i < m; i++) /* insertion sort of at most 5 */
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    k->est[b] = m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
    if (!k->cfg.adaptive)
        return;
    int best = -1;
    for (unsigned j = 0; j < k->n_cand; j++)
        if (k->samples[j] >= SCHED_ADAPT_MIN_SAMPLES && (best < 0 || k->est[j] > k->est[best]))
            best = (int)j;
    if (best >= 0)
        k->pref = k->cand[best];
}

/* How many items this batch may take: the preferred size, or now and then a neighbouring bucket
 * so that sizes other than the current favourite keep being measured. */
static unsigned batch_target(sched_kind *k)
{
    if (!k->cfg.adaptive || k->n_cand < 2)
        return k->pref;
    if (++k->explore_tick % SCHED_EXPLORE_EVERY != 0)
        return k->pref;
    unsigned b = bucket_of(k, k->pref);
    k->explore_up = !k->explore_up;
    if (k->explore_up && b + 1 < k->n_cand && k->count >= k->cand[b + 1])
        return k->cand[b + 1];
    if (!k->explore_up && b > 0)
        return k->cand[b - 1];
    return k->pref;
}

/* ---- queues: entries, tenants, round-robin (caller holds mu) -------------------------------- */

/* FNV-1a: tenant strings are server-made ids, so a plain hash suffices; two tenants whose 64-bit
 * hashes collide would only share a sub-queue and a quota. */
static uint64_t tenant_key(const char *tenant)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)(tenant ? tenant : ""); *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static uint32_t tenant_home(const sched_kind *k, uint64_t key)
{
    key ^= key >> 33; /* FNV's low bits are weak; fold the high ones in */
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & k->tmask;
}

/* The slot of key in tindex, or the empty slot where it would go. */
static uint32_t tenant_slot(const sched_kind *k, uint64_t key)
{
    uint32_t i = tenant_home(k, key);
    while (k->tindex[i] && k->tenants[k->tindex[i] - 1].key != key)
        i = (i + 1) & k->tmask;
    return i;
}

static uint32_t tenant_find(const sched_kind *k, uint64_t key)
{
    uint32_t v = k->tindex[tenant_slot(k, key)];
    return v ? v - 1 : SCHED_NIL;
}

/* Finds or creates the record for key; SCHED_NIL only if the table is full (never, by size). */
static uint32_t tenant_get(sched_kind *k, uint64_t key)
{
    uint32_t i = tenant_slot(k, key);
    if (k->tindex[i])
        return k->tindex[i] - 1;
    uint32_t t = k->free_tenant;
    if (t == SCHED_NIL)
        return SCHED_NIL;
    k->free_tenant = k->tenants[t].next;
    k->tenants[t] = (sched_tenant){key, SCHED_NIL, SCHED_NIL, 0, 0, SCHED_NIL, SCHED_NIL};
    k->tindex[i] = t + 1;
    k->live_tenants++;
    return t;
}

/* Frees a tenant's record once nothing refers to it (linear probing with backward-shift
 * deletion, so lookups never meet a tombstone). */
static void tenant_put(sched_kind *k, uint32_t t)
{
    sched_tenant *tn = &k->tenants[t];
    if (tn->queued || tn->running)
        return;
    uint32_t i = tenant_slot(k, tn->key);
    for (uint32_t j = i;;) {
        j = (j + 1) & k->tmask;
        if (!k->tindex[j])
            break;
        uint32_t h = tenant_home(k, k->tenants[k->tindex[j] - 1].key);
        /* j's entry may move to the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            k->tindex[i] = k->tindex[j];
            i = j;
        }
    }
    k->tindex[i] = 0;
    tn->next = k->free_tenant;
    k->free_tenant = t;
    k->live_tenants--;
}

static void active_push(sched_kind *k, uint32_t t)
{
    k->tenants[t].next = SCHED_NIL;
    k->tenants[t].prev = k->active_tail;
    if (k->active_tail == SCHED_NIL)
        k->active_head = t;
    else
        k->tenants[k->active_tail].next = t;
    k->active_tail = t;
}

static void active_remove(sched_kind *k, uint32_t t)
{
    sched_tenant *tn = &k->tenants[t];
    if (tn->prev == SCHED_NIL)
        k->active_head = tn->next;
    else
        k->tenants[tn->prev].next = tn->next;
    if (tn->next == SCHED_NIL)
        k->active_tail = tn->prev;
    else
        k->tenants[tn->next].prev = tn->prev;
}

/* Appends an entry for tenant t (which the caller checked has room). */
static void queue_push(sched_kind *k, uint32_t t, const sched_entry *in)
{
    uint32_t e = k->free_entry;
    k->free_entry = k->pool[e].gnext;
    sched_entry *en = &k->pool[e];
    *en = *in;
    en->tenant = t;
    en->gnext = SCHED_NIL;
    en->gprev = k->gtail;
    if (k->gtail == SCHED_NIL)
        k->ghead = e;
    else
        k->pool[k->gtail].gnext = e;
    k->gtail = e;
    sched_tenant *tn = &k->tenants[t];
    en->tnext = SCHED_NIL;
    en->tprev = tn->tail;
    if (tn->tail == SCHED_NIL)
        tn->head = e;
    else
        k->pool[tn->tail].tnext = e;
    tn->tail = e;
    if (tn->queued++ == 0)
        active_push(k, t);
    k->count++;
}

/* Takes entry e out of both lists and returns its slot to the pool. The tenant record stays
 * (the caller decides whether it now runs, or tenant_puts it). */
static sched_entry queue_unlink(sched_kind *k, uint32_t e)
{
    sched_entry out = k->pool[e];
    if (out.gprev == SCHED_NIL)
        k->ghead = out.gnext;
    else
        k->pool[out.gprev].gnext = out.gnext;
    if (out.gnext == SCHED_NIL)
        k->gtail = out.gprev;
    else
        k->pool[out.gnext].gprev = out.gprev;
    sched_tenant *tn = &k->tenants[out.tenant];
    if (out.tprev == SCHED_NIL)
        tn->head = out.tnext;
    else
        k->pool[out.tprev].tnext = out.tnext;
    if (out.tnext == SCHED_NIL)
        tn->tail = out.tprev;
    else
        k->pool[out.tnext].tprev = out.tprev;
    if (--tn->queued == 0)
        active_remove(k, out.tenant);
    k->count--;
    k->pool[e].gnext = k->free_entry;
    k->free_entry = e;
    return out;
}

/* The next entry in fair order: the oldest of the tenant whose turn it is, which then goes to
 * the back of the line if it has more. Requires k->count > 0. */
static sched_entry queue_take_fair(sched_kind *k)
{
    uint32_t t = k->active_head;
    sched_entry e = queue_unlink(k, k->tenants[t].head);
    if (k->tenants[t].queued > 0) {
        active_remove(k, t);
        active_push(k, t);
    }
    return e;
}

/* Moves up to max queued entries whose deadline is <= now into out, counted as expired; *next
 * gets the earliest deadline still queued (UINT64_MAX when none). */
static size_t queue_reap(sched *s, uint64_t now, sched_entry *out, size_t max, uint64_t *next)
{
    size_t n = 0;
    uint64_t earliest = UINT64_MAX;
    for (size_t i = 0; i < s->n_kinds; i++) {
        sched_kind *k = &s->kinds[i];
        for (uint32_t e = k->ghead; e != SCHED_NIL;) {
            uint32_t after = k->pool[e].gnext;
            uint64_t d = k->pool[e].deadline_ns;
            if (d <= now && n < max) {
                out[n] = queue_unlink(k, e);
                tenant_put(k, out[n].tenant);
                n++;
                k->expired++;
                k->reaped++;
                s->pending_total--;
            } else if (d < earliest) {
                earliest = d;
            }
            e = after;
        }
    }
    *next = earliest;
    return n;
}

/* ---- picking a batch (caller holds mu) ------------------------------------------------------ */

/* The ready kind whose oldest item waited longest, or -1; *wake_at gets the earliest moment a
 * not-yet-ready kind becomes ready (0 if none is pending). */
static int pick_kind(sched *s, uint64_t now, uint64_t *wake_at)
{
    int best = -1;
    uint64_t best_enq = UINT64_MAX, wake = 0;
    for (size_t i = 0; i < s->n_kinds; i++) {
        sched_kind *k = &s->kinds[i];
        if (k->count == 0)
            continue;
        const sched_entry *h = &k->pool[k->ghead];
        uint64_t close_at = h->enq_ns + (uint64_t)k->cfg.max_delay_us * 1000u;
        if (h->deadline_ns < close_at)
            close_at = h->deadline_ns; /* an expired head is dropped without waiting */
        int ready = s->stopping || k->count >= k->pref || now >= close_at;
        if (ready) {
            if (h->enq_ns < best_enq) {
                best = (int)i;
                best_enq = h->enq_ns;
            }
        } else if (wake == 0 || close_at < wake) {
            wake = close_at;
        }
    }
    *wake_at = wake;
    return best;
}

/* ---- workers -------------------------------------------------------------------------------- */

static void *worker_main(void *arg);

/* Claims a slot for a new worker (caller holds mu). Returns its index or -1; *join is set when
 * the slot's previous thread has exited and must be joined before reuse. */
static int reserve_slot(sched *s, int *join)
{
    for (unsigned i = 0; i < s->max_replicas; i++) {
        sched_worker *w = &s->workers[i];
        if (w->state == SLOT_FREE || (w->state == SLOT_EXITED && w->spawned)) {
            *join = w->state == SLOT_EXITED;
            w->state = SLOT_TAKEN;
            w->spawned = 0;
            s->starting++;
            s->spawning++;
            return (int)i;
        }
    }
    return -1;
}

/* Starts the worker for a reserved slot (caller does not hold mu). */
static void spawn(sched *s, int idx, int join)
{
    sched_worker *w = &s->workers[idx];
    if (join)
        pthread_join(w->tid, NULL);
    pthread_t tid;
    int rc = pthread_create(&tid, NULL, worker_main, w);
    pthread_mutex_lock(&s->mu);
    s->spawning--;
    if (rc != 0) {
        w->state = SLOT_FREE;
        s->starting--;
        s->replica_errors++;
        s->grow_after_ns = vg_now_ns() + SCHED_GROW_BACKOFF_NS;
        if (!s->first_error)
            s->first_error = vg_err_set(VG_ENOMEM, "sched: cannot start a worker thread (%d)", rc);
    } else {
        w->tid = tid;
        w->spawned = 1;
    }
    pthread_cond_broadcast(&s->state_cv);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0)
        VG_WARN("sched", "cannot start a worker thread: %s", strerror(rc));
}

static void abstime(uint64_t mono_ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000u);
    ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

static void complete_all(sched_entry *e, size_t n, int status)
{
    for (size_t i = 0; i < n; i++)
        e[i].done(e[i].arg, status);
}

typedef struct worker_buf {
    sched_entry *batch, *expired;
    void **items;
    int *status;
} worker_buf;

static void worker_buf_free(worker_buf *b)
{
    vg_free(b->batch);
    vg_free(b->expired);
    vg_free(b->items);
    vg_free(b->status);
}

static int worker_buf_alloc(worker_buf *b, unsigned cap)
{
    b->batch = vg_calloc(cap, sizeof *b->batch);
    b->expired = vg_calloc(cap, sizeof *b->expired);
    b->items = vg_calloc(cap, sizeof *b->items);
    b->status = vg_calloc(cap, sizeof *b->status);
    if (!b->batch || !b->expired || !b->items || !b->status) {
        worker_buf_free(b);
        return vg_err_set(VG_ENOMEM, "sched: worker buffers");
    }
    return VG_OK;
}

/* Runs one batch (no lock held); b->status gets each item's result (the batch's own error when run
 * failed as a whole). The caller completes the items after counting them. Returns the time spent
 * in run. */
static uint64_t run_batch(sched_kind *k, void *replica, worker_buf *b, size_t n, int *batch_rc)
{
    for (size_t i = 0; i < n; i++) {
        b->items[i] = b->batch[i].item;
        b->status[i] = 0;
    }
    uint64_t t0 = vg_now_ns();
    int rc = k->cfg.run(replica, k->cfg.user, b->items, n, b->status);
    uint64_t dt = vg_now_ns() - t0;
    *batch_rc = rc;
    for (size_t i = 0; i < n; i++)
        b->status[i] = rc != 0 ? rc : b->status[i];
    return dt;
}

static void *worker_main(void *arg)
{
    sched_worker *w = arg;
    sched *s = w->s;
    worker_buf buf = {0};
    void *replica = NULL;
    int rc = worker_buf_alloc(&buf, s->batch_cap);
    if (rc == VG_OK && s->replica_new) {
        rc = s->replica_new(s->replica_user, w->index, &replica);
        if (rc != VG_OK)
            VG_WARN("sched", "replica %u could not be created: %s", w->index, vg_err_msg());
    }

    pthread_mutex_lock(&s->mu);
    s->starting--;
    if (rc != VG_OK) {
        s->replica_errors++;
        if (!s->first_error)
            s->first_error = rc;
        s->grow_after_ns = vg_now_ns() + SCHED_GROW_BACKOFF_NS;
        w->state = SLOT_EXITED;
        pthread_cond_broadcast(&s->state_cv);
        pthread_mutex_unlock(&s->mu);
        worker_buf_free(&buf);
        return NULL;
    }
    s->live++;
    s->started++;
    if (s->live > s->peak)
        s->peak = s->live;
    pthread_cond_broadcast(&s->state_cv);
    uint64_t idle_since = vg_now_ns();

    for (;;) {
        if (s->stopping && (s->cancel || s->pending_total == 0))
            break;
        if (w->replace && !s->stopping) {
            /* A fresh replica on this same thread (replica_new/free must run on one thread):
             * whatever state made the old one fail goes with it. */
            w->replace = 0;
            s->busy++;
            pthread_mutex_unlock(&s->mu);
            if (s->replica_free && replica)
                s->replica_free(s->replica_user, replica);
            replica = NULL;
            rc = s->replica_new ? s->replica_new(s->replica_user, w->index, &replica) : VG_OK;
            if (rc != VG_OK)
                VG_WARN("sched", "replacement replica %u could not be created: %s", w->index,
                        vg_err_msg());
            pthread_mutex_lock(&s->mu);
            s->busy--;
            w->fail_streak = 0;
            w->batch_failures = 0;
            if (rc != VG_OK) {
                s->replica_errors++;
                s->grow_after_ns = vg_now_ns() + SCHED_GROW_BACKOFF_NS;
                break; /* retire; the pool grows again on demand */
            }
            s->replaced++;
            idle_since = vg_now_ns();
            continue;
        }
        uint64_t now = vg_now_ns(), wake = 0;
        int ki = pick_kind(s, now, &wake);
        if (ki >= 0) {
            sched_kind *k = &s->kinds[ki];
            unsigned target = batch_target(k);
            /* Share the queue with the workers sleeping beside this one: taking all of it left
             * them idle while this worker ran the whole batch serially (16 closed-loop clients:
             * 73 images/s at 58% of 2 CPUs). Each takes ceil(queued / (idle + 1)). */
            if (s->idle > 0) {
                size_t share = (k->count + s->idle) / (s->idle + 1);
                if (share < target)
                    target = share > 0 ? (unsigned)share : 1u;
            }
            size_t n = 0, nexp = 0;
            while (k->count > 0 && n < target && nexp < s->batch_cap) {
                sched_entry e = queue_take_fair(k);
                if (e.deadline_ns <= now) {
                    buf.expired[nexp++] = e;
                    tenant_put(k, e.tenant);
                } else {
                    uint64_t waited = now - e.enq_ns;
                    k->wait_sum += waited;
                    k->wait_hist[sched__log2_bucket(waited, VG_LAT_BUCKETS)]++;
                    if (waited > k->wait_max)
                        k->wait_max = waited;
                    k->tenants[e.tenant].running++;
                    buf.batch[n++] = e;
                }
            }
            s->pending_total -= n + nexp;
            k->expired += nexp;
            if (k->count > 0 && s->idle > 0)
                pthread_cond_signal(&s->work_cv); /* the rest is theirs */
            /* Grow: work is still queued and nobody is free to take it. */
            int grow = -1, join = 0;
            if (!s->stopping && s->pending_total > 0 && s->idle == 0 &&
                s->live + s->starting < s->max_replicas && now >= s->grow_after_ns)
                grow = reserve_slot(s, &join);
            s->busy++;
            pthread_mutex_unlock(&s->mu);

            if (grow >= 0)
                spawn(s, grow, join);
            complete_all(buf.expired, nexp, VG_ETIMEDOUT);
            uint64_t run_ns = 0;
            int batch_rc = 0;
            if (n > 0)
                run_ns = run_batch(k, replica, &buf, n, &batch_rc);

            pthread_mutex_lock(&s->mu);
            s->busy--;
            if (n > 0) {
                k->batches++;
                k->batch_items += n;
                k->size_hist[sched__log2_bucket(n, SCHED_SIZE_BUCKETS)]++;
                k->run_sum += run_ns;
                size_t nfail = 0;
                for (size_t i = 0; i < n; i++) {
                    if (buf.status[i] == 0) {
                        k->completed++;
                    } else {
                        k->failed++;
                        nfail++;
                    }
                    k->tenants[buf.batch[i].tenant].running--;
                    tenant_put(k, buf.batch[i].tenant);
                }
                if (batch_rc == 0)
                    adapt_record(k, (unsigned)n, run_ns);
                if (nfail == n) {
                    w->fail_streak++;
                    w->batch_failures++;
                    s->batch_failures++;
                } else {
                    w->fail_streak = 0;
                }
                /* Completions after the accounting, so that whoever sees its item done also
                 * sees it counted in sched_stats_get. */
                pthread_mutex_unlock(&s->mu);
                for (size_t i = 0; i < n; i++)
                    buf.batch[i].done(buf.batch[i].arg, buf.status[i]);
                pthread_mutex_lock(&s->mu);
            }
            idle_since = vg_now_ns();
            continue;
        }

        /* Nothing ready: wait for a forming batch to close, for new work, or to retire. */
        struct timespec ts;
        s->idle++;
        if (wake) {
            abstime(wake, &ts);
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
        } else if (!s->stopping && s->live > s->min_replicas) {
            uint64_t retire_at = idle_since + s->idle_shrink_ns;
            if (now >= retire_at) {
                s->idle--;
                break; /* shrink: idle long enough and more replicas than the minimum */
            }
            abstime(retire_at, &ts);
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
        } else {
            pthread_cond_wait(&s->work_cv, &s->mu);
        }
        s->idle--;
    }

    /* Retire: leave `live` in the same critical section as the decision. */
    s->live--;
    s->exiting++;
    pthread_mutex_unlock(&s->mu);
    if (s->replica_free && replica)
        s->replica_free(s->replica_user, replica);
    worker_buf_free(&buf);
    pthread_mutex_lock(&s->mu);
    s->exiting--;
    s->stopped++;
    w->state = SLOT_EXITED;
    pthread_cond_broadcast(&s->state_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the deadline reaper -------------------------------------------------------------------- */

/* Completes queued items whose deadline passed, so that a request is answered at its deadline
 * even when every worker is stuck in a long batch (a worker would only notice when it next
 * forms a batch). Runs until sched_shutdown has seen the workers exit. */
static void *reaper_main(void *arg)
{
    sched *s = arg;
    sched_entry chunk[SCHED_REAP_CHUNK];
    pthread_mutex_lock(&s->mu);
    while (!s->reaper_stop) {
        uint64_t now = vg_now_ns(), next;
        size_t n = queue_reap(s, now, chunk, SCHED_REAP_CHUNK, &next);
        if (n > 0) {
            /* Counted before the completions (sched_stats_get's promise); scan again after. */
            s->reap_at = 0;
            pthread_mutex_unlock(&s->mu);
            complete_all(chunk, n, VG_ETIMEDOUT);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (next == UINT64_MAX) {
            s->reap_at = UINT64_MAX;
            pthread_cond_wait(&s->reap_cv, &s->mu);
        } else {
            uint64_t earliest = now + (uint64_t)SCHED_REAP_COALESCE_MS * 1000000u;
            s->reap_at = next > earliest ? next : earliest;
            struct timespec ts;
            abstime(s->reap_at, &ts);
            pthread_cond_timedwait(&s->reap_cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* The kind's entry pool, tenant records and tenant index, all free. */
static int kind_alloc(sched_kind *k, unsigned max_replicas)
{
    k->cap = k->cfg.queue_capacity;
    /* Every live tenant has an item queued or in a worker's batch. */
    k->n_tenants_max = k->cap + max_replicas * k->cfg.max_batch;
    k->tmask = pow2_at_least(2ull * k->n_tenants_max) - 1;
    k->pool = vg_calloc(k->cap, sizeof *k->pool);
    k->tenants = vg_calloc(k->n_tenants_max, sizeof *k->tenants);
    k->tindex = vg_calloc((size_t)k->tmask + 1, sizeof *k->tindex);
    if (!k->pool || !k->tenants || !k->tindex)
        return vg_err_set(VG_ENOMEM, "sched: queue of %u items", k->cap);
    for (uint32_t i = 0; i < k->cap; i++)
        k->pool[i].gnext = i + 1 < k->cap ? i + 1 : SCHED_NIL;
    for (uint32_t i = 0; i < k->n_tenants_max; i++)
        k->tenants[i].next = i + 1 < k->n_tenants_max ? i + 1 : SCHED_NIL;
    k->free_entry = 0;
    k->free_tenant = 0;
    k->ghead = k->gtail = SCHED_NIL;
    k->active_head = k->active_tail = SCHED_NIL;
    return VG_OK;
}

static int cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

int sched_new(const sched_config *cfg, sched **out)
{
    if (!cfg || !out)
        return vg_err_set(VG_EINVAL, "sched_new: NULL argument");
    int rc = validate(cfg);
    if (rc != VG_OK)
        return rc;
    sched *s = vg_calloc(1, sizeof *s);
    if (!s)
        return vg_err_set(VG_ENOMEM, "sched");
    pthread_mutex_init(&s->mu, NULL);
    if (cond_init_monotonic(&s->work_cv) != 0 || cond_init_monotonic(&s->state_cv) != 0 ||
        cond_init_monotonic(&s->reap_cv) != 0) {
        vg_free(s);
        return vg_err_set(VG_ENOMEM, "sched: condition variables");
    }
    s->reap_at = UINT64_MAX;
    s->n_kinds = cfg->n_kinds;
    s->replica_new = cfg->replica_new;
    s->replica_free = cfg->replica_free;
    s->replica_user = cfg->replica_user;
    s->min_replicas = cfg->min_replicas;
    s->max_replicas = cfg->max_replicas;
    s->idle_shrink_ns = (uint64_t)cfg->idle_shrink_ms * 1000000u;
    s->default_deadline_ns = (uint64_t)cfg->default_deadline_ms * 1000000u;
    for (size_t i = 0; i < cfg->n_kinds; i++) {
        sched_kind *k = &s->kinds[i];
        k->cfg = cfg->kinds[i];
        if (rc == VG_OK)
            rc = kind_alloc(k, s->max_replicas);
        k->max_batch_cap = k->cfg.max_batch;
        kind_init_buckets(k);
        if (k->cfg.max_batch > s->batch_cap)
            s->batch_cap = k->cfg.max_batch;
    }
    s->workers = vg_calloc(s->max_replicas, sizeof *s->workers);
    if (!s->workers)
        rc = vg_err_set(VG_ENOMEM, "sched: worker slots");
    if (rc != VG_OK) {
        s->shut_done = 1;
        sched_free(s);
        return rc;
    }
    for (unsigned i = 0; i < s->max_replicas; i++) {
        s->workers[i].s = s;
        s->workers[i].index = i;
    }
    int prc = pthread_create(&s->reaper, NULL, reaper_main, s);
    if (prc != 0) {
        s->shut_done = 1;
        sched_free(s);
        return vg_err_set(VG_ENOMEM, "sched: cannot start the deadline reaper (%d)", prc);
    }
    s->reaper_started = 1;

    for (unsigned i = 0; i < s->min_replicas; i++) {
        int join;
        pthread_mutex_lock(&s->mu);
        int idx = reserve_slot(s, &join);
        pthread_mutex_unlock(&s->mu);
        spawn(s, idx, join);
    }
    pthread_mutex_lock(&s->mu);
    while (s->starting > 0 || s->spawning > 0)
        pthread_cond_wait(&s->state_cv, &s->mu);
    rc = s->first_error;
    pthread_mutex_unlock(&s->mu);
    if (rc != VG_OK) {
        sched_free(s);
        return rc;
    }
    *out = s;
    return VG_OK;
}

int sched_submit_for(sched *s, unsigned kind, const char *tenant, void *item, uint64_t deadline_ns,
                     sched_done_fn done, void *arg)
{
    if (!s || kind >= s->n_kinds || !done)
        return vg_err_set(VG_EINVAL, "sched_submit: bad kind or NULL callback");
    uint64_t now = vg_now_ns();
    if (deadline_ns == 0)
        deadline_ns = now + s->default_deadline_ns;
    uint64_t key = tenant_key(tenant);
    sched_kind *k = &s->kinds[kind];
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return VG_ECANCELED;
    }
    /* The tenant's own cap first: a tenant over it is told so (429) even when the queue is full
     * too, since waiting for the queue would not help it. No detail: overload path, kept cheap. */
    uint32_t t = tenant_find(k, key);
    if (t != SCHED_NIL && k->cfg.tenant_quota &&
        k->tenants[t].queued + k->tenants[t].running >= k->cfg.tenant_quota) {
        k->quota_rejected++;
        pthread_mutex_unlock(&s->mu);
        return VG_EQUOTA;
    }
    if (k->count == k->cap || (t == SCHED_NIL && (t = tenant_get(k, key)) == SCHED_NIL)) {
        k->rejected++;
        pthread_mutex_unlock(&s->mu);
        return VG_EBUSY;
    }
    sched_entry e = {
        .item = item, .done = done, .arg = arg, .deadline_ns = deadline_ns, .enq_ns = now};
    queue_push(k, t, &e);
    k->submitted++;
    s->pending_total++;
    int wake = s->idle > 0 && (k->count == 1 || k->count == k->pref);
    int reap = deadline_ns < s->reap_at;
    if (reap)
        s->reap_at = deadline_ns;
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(&s->work_cv);
    if (reap)
        pthread_cond_signal(&s->reap_cv);
    return VG_OK;
}

int sched_submit(sched *s, unsigned kind, void *item, uint64_t deadline_ns, sched_done_fn done,
                 void *arg)
{
    return sched_submit_for(s, kind, NULL, item, deadline_ns, done, arg);
}

void sched_shutdown(sched *s, int cancel_pending)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->shut_done) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stopping = 1;
    s->cancel = cancel_pending;
    pthread_cond_broadcast(&s->work_cv);
    sched_entry chunk[SCHED_CANCEL_CHUNK];
    for (;;) {
        /* Cancel mode now; drain mode only for what no worker is left to run. */
        if (!cancel_pending) {
            while (s->live > 0 || s->starting > 0 || s->exiting > 0 || s->spawning > 0)
                pthread_cond_wait(&s->state_cv, &s->mu);
        }
        size_t n = 0;
        for (size_t i = 0; i < s->n_kinds && n < SCHED_CANCEL_CHUNK; i++) {
            sched_kind *k = &s->kinds[i];
            while (k->count > 0 && n < SCHED_CANCEL_CHUNK) {
                chunk[n] = queue_unlink(k, k->ghead);
                tenant_put(k, chunk[n++].tenant);
                k->canceled++;
                s->pending_total--;
            }
        }
        if (n == 0)
            break;
        pthread_mutex_unlock(&s->mu);
        complete_all(chunk, n, VG_ECANCELED);
        pthread_mutex_lock(&s->mu);
    }
    while (s->live > 0 || s->starting > 0 || s->exiting > 0 || s->spawning > 0)
        pthread_cond_wait(&s->state_cv, &s->mu);
    /* The reaper last: it kept deadlines during a drain. Whatever it holds it completes first. */
    s->reaper_stop = 1;
    pthread_cond_signal(&s->reap_cv);
    s->shut_done = 1;
    pthread_mutex_unlock(&s->mu);
    if (s->reaper_started)
        pthread_join(s->reaper, NULL);
    s->reaper_started = 0;
    for (unsigned i = 0; i < s->max_replicas; i++) {
        if (s->workers[i].state == SLOT_EXITED)
            pthread_join(s->workers[i].tid, NULL);
        s->workers[i].state = SLOT_FREE;
    }
}

void sched_free(sched *s)
{
    if (!s)
        return;
    if (s->workers)
        sched_shutdown(s, 1);
    for (size_t i = 0; i < s->n_kinds; i++) {
        vg_free(s->kinds[i].pool);
        vg_free(s->kinds[i].tenants);
        vg_free(s->kinds[i].tindex);
    }
    vg_free(s->workers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->state_cv);
    pthread_cond_destroy(&s->reap_cv);
    vg_free(s);
}

int sched_lone(sched *s)
{
    pthread_mutex_lock(&s->mu);
    const int lone = s->pending_total == 0 && s->busy <= 1;
    pthread_mutex_unlock(&s->mu);
    return lone;
}

void sched_stats_get(sched *s, sched_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    out->n_kinds = s->n_kinds;
    for (size_t i = 0; i < s->n_kinds; i++) {
        const sched_kind *k = &s->kinds[i];
        sched_kind_stats *o = &out->kinds[i];
        o->name = k->cfg.name;
        o->submitted = k->submitted;
        o->rejected = k->rejected;
        o->quota_rejected = k->quota_rejected;
        o->reaped = k->reaped;
        o->tenants = k->live_tenants;
        o->completed = k->completed;
        o->failed = k->failed;
        o->expired = k->expired;
        o->canceled = k->canceled;
        o->batches = k->batches;
        o->batch_items = k->batch_items;
        o->queue_depth = k->count;
        o->wait_ns_sum = k->wait_sum;
        o->wait_ns_max = k->wait_max;
        o->wait.count = o->wait.sum_ns = 0;
        for (unsigned b = 0; b < VG_LAT_BUCKETS; b++) {
            o->wait.buckets[b] = k->wait_hist[b];
            o->wait.count += k->wait_hist[b];
        }
        o->wait.sum_ns = k->wait_sum;
        for (unsigned b = 0; b < SCHED_SIZE_BUCKETS; b++)
            o->size_batches[b] = k->size_hist[b];
        o->run_ns_sum = k->run_sum;
        o->max_batch = k->cfg.max_batch;
        o->max_delay_us = k->cfg.max_delay_us;
        o->preferred_batch = k->pref;
        o->n_buckets = k->n_cand;
        for (unsigned b = 0; b < k->n_cand; b++) {
            o->bucket_size[b] = k->cand[b];
            o->bucket_batches[b] = k->samples[b];
            o->bucket_items_per_s[b] = k->est[b];
        }
    }
    out->replicas = s->live;
    out->replicas_busy = s->busy;
    out->replicas_peak = s->peak;
    out->min_replicas = s->min_replicas;
    out->max_replicas = s->max_replicas;
    out->replicas_started = s->started;
    out->replicas_stopped = s->stopped;
    out->replica_errors = s->replica_errors;
    out->replicas_replaced = s->replaced;
    out->batch_failures = s->batch_failures;
    for (unsigned i = 0; i < s->max_replicas; i++)
        if (s->workers[i].state == SLOT_TAKEN && s->workers[i].fail_streak > out->worst_fail_streak)
            out->worst_fail_streak = s->workers[i].fail_streak;
    pthread_mutex_unlock(&s->mu);
}

/* ---- run-time knobs ------------------------------------------------------------------------- */

int sched_kind_tune(sched *s, unsigned kind, unsigned max_batch, uint32_t max_delay_us)
{
    if (!s || kind >= s->n_kinds)
        return vg_err_set(VG_EINVAL, "sched_kind_tune: bad kind");
    sched_kind *k = &s->kinds[kind];
    if (max_batch < 1 || max_batch > k->max_batch_cap)
        return vg_err_set(VG_EINVAL, "sched: kind %s: max_batch %u not in 1..%u", k->cfg.name,
                          max_batch, k->max_batch_cap);
    if (max_delay_us > SCHED_MAX_DELAY_US)
        return vg_err_set(VG_EINVAL, "sched: kind %s: max_delay_us %u above %u", k->cfg.name,
                          max_delay_us, (unsigned)SCHED_MAX_DELAY_US);
    pthread_mutex_lock(&s->mu);
    k->cfg.max_delay_us = max_delay_us;
    if (k->cfg.max_batch != max_batch) {
        /* New size buckets: the old measurements belong to another set of candidates. */
        k->cfg.max_batch = max_batch;
        memset(k->recent, 0, sizeof k->recent);
        memset(k->est, 0, sizeof k->est);
        memset(k->samples, 0, sizeof k->samples);
        k->explore_tick = 0;
        kind_init_buckets(k);
    }
    pthread_mutex_unlock(&s->mu);
    /* A forming batch may be ready under the new limits: let the workers look again. */
    pthread_cond_broadcast(&s->work_cv);
    return VG_OK;
}

/* Starts workers until live + starting reaches min_replicas (caller holds mu; drops it around
 * each spawn). */
static void fill_to_min(sched *s)
{
    while (!s->stopping && s->live + s->starting < s->min_replicas) {
        int join;
        int idx = reserve_slot(s, &join);
        if (idx < 0)
            break;
        pthread_mutex_unlock(&s->mu);
        spawn(s, idx, join);
        pthread_mutex_lock(&s->mu);
    }
}

int sched_set_min_replicas(sched *s, unsigned n)
{
    if (!s)
        return vg_err_set(VG_EINVAL, "sched_set_min_replicas: NULL");
    pthread_mutex_lock(&s->mu);
    if (n < 1 || n > s->max_replicas) {
        unsigned max = s->max_replicas;
        pthread_mutex_unlock(&s->mu);
        return vg_err_set(VG_EINVAL, "sched: min replicas %u not in 1..%u", n, max);
    }
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return VG_ECANCELED;
    }
    s->min_replicas = n;
    fill_to_min(s);
    pthread_mutex_unlock(&s->mu);
    /* Idle workers sleeping untimed (they were at the floor) start their retire timer. */
    pthread_cond_broadcast(&s->work_cv);
    return VG_OK;
}

int sched_add_replica(sched *s)
{
    if (!s)
        return vg_err_set(VG_EINVAL, "sched_add_replica: NULL");
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return VG_ECANCELED;
    }
    unsigned have = s->live + s->starting;
    if (have >= s->max_replicas) {
        unsigned max = s->max_replicas;
        pthread_mutex_unlock(&s->mu);
        return vg_err_set(VG_ECONFLICT, "sched: already at the most replicas (%u)", max);
    }
    if (s->min_replicas < have + 1)
        s->min_replicas = have + 1;
    fill_to_min(s);
    pthread_mutex_unlock(&s->mu);
    return VG_OK;
}

int sched_replace_failing_replica(sched *s, unsigned min_streak, unsigned *index)
{
    if (!s)
        return vg_err_set(VG_EINVAL, "sched_replace_failing_replica: NULL");
    if (min_streak < 1)
        min_streak = 1;
    pthread_mutex_lock(&s->mu);
    int worst = -1;
    for (unsigned i = 0; i < s->max_replicas; i++) {
        sched_worker *w = &s->workers[i];
        if (w->state == SLOT_TAKEN && !w->replace && w->fail_streak >= min_streak &&
            (worst < 0 || w->fail_streak > s->workers[worst].fail_streak))
            worst = (int)i;
    }
    if (worst >= 0 && !s->stopping)
        s->workers[worst].replace = 1;
    pthread_mutex_unlock(&s->mu);
    if (worst < 0 || s->stopping)
        return VG_ENOTFOUND;
    pthread_cond_broadcast(&s->work_cv);
    if (index)
        *index = (unsigned)worst;
    return VG_OK;
}
