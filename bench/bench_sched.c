/*
 * bench_sched: what the scheduler costs and what batching buys.
 *
 *   1. overhead: an empty batch function; open loop (submitters push as fast as they can: items/s
 *      and ns per item) and closed loop (each submitter waits for its item before the next, like
 *      a suspended HTTP request: round-trip P50/P99);
 *   2. batching efficiency: a synthetic batch function costing a + b*n (busy loop), closed loop
 *      with 1..32 concurrent submitters: no batching (max 1), fixed dynamic batching (max 32 or
 *      the delay) and adaptive batching (max 32, preferred size from measurements), run side by
 *      side, next to the ideal throughput for the batch sizes achieved.
 *
 *   bench_sched [--seconds S] [--a-us A] [--b-us B] [--replicas R]
 *
 * Writes Markdown to stdout (bench/sched.sh saves it).
 */
#include "core/core.h"
#include "sched/sched.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cost {
    uint64_t a_ns, b_ns;
} cost;

static int batch_fn(void *replica, void *user, void *const *items, size_t n, int *status)
{
    (void)replica;
    (void)items;
    (void)status;
    const cost *c = user;
    uint64_t ns = c->a_ns + c->b_ns * n;
    if (ns) {
        uint64_t end = vg_now_ns() + ns;
        while (vg_now_ns() < end)
            ;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const uint64_t *sorted, size_t n, double q)
{
    return n ? (double)sorted[(size_t)(q * (double)(n - 1) + 0.5)] : 0;
}

static sched *make_sched_ex(cost *c, unsigned max_batch, unsigned replicas, int adaptive)
{
    sched_kind_config k;
    sched_kind_config_init(&k);
    k.name = "bench";
    k.run = batch_fn;
    k.user = c;
    k.max_batch = max_batch;
    k.adaptive = adaptive;
    k.queue_capacity = 4096;
    sched_config cfg;
    sched_config_init(&cfg);
    cfg.kinds = &k;
    cfg.n_kinds = 1;
    cfg.min_replicas = 1;
    cfg.max_replicas = replicas;
    cfg.default_deadline_ms = 60000;
    sched *s = NULL;
    if (sched_new(&cfg, &s) != VG_OK) {
        fprintf(stderr, "sched_new: %s\n", vg_err_msg());
        exit(1);
    }
    return s;
}

static sched *make_sched(cost *c, unsigned max_batch, unsigned replicas)
{
    return make_sched_ex(c, max_batch, replicas, 1);
}

/* ---- open loop ------------------------------------------------------------------------------ */

typedef struct opener {
    sched *s;
    size_t n;
    _Atomic size_t *done;
    uint64_t busy;
} opener;

static void open_done(void *arg, int status)
{
    (void)status;
    atomic_fetch_add_explicit((_Atomic size_t *)arg, 1, memory_order_relaxed);
}

static void *opener_main(void *arg)
{
    opener *o = arg;
    for (size_t i = 0; i < o->n; i++) {
        while (sched_submit(o->s, 0, NULL, 0, open_done, (void *)o->done) == VG_EBUSY) {
            o->busy++;
            sched_yield();
        }
    }
    return NULL;
}

/* ---- closed loop ---------------------------------------------------------------------------- */

typedef struct closer {
    sched *s;
    sem_t sem;
    _Atomic int *stop;
    uint64_t *lat;
    size_t cap, n;
    uint64_t busy;
} closer;

static void closed_done(void *arg, int status)
{
    (void)status;
    sem_post(&((closer *)arg)->sem);
}

static void *closer_main(void *arg)
{
    closer *c = arg;
    while (!atomic_load_explicit(c->stop, memory_order_relaxed) && c->n < c->cap) {
        uint64_t t0 = vg_now_ns();
        int rc;
        while ((rc = sched_submit(c->s, 0, NULL, 0, closed_done, c)) == VG_EBUSY) {
            c->busy++;
            sched_yield();
        }
        if (rc != VG_OK)
            break;
        sem_wait(&c->sem);
        c->lat[c->n++] = vg_now_ns() - t0;
    }
    return NULL;
}

typedef struct closed_result {
    double items_per_s, p50_us, p99_us, mean_batch;
    unsigned preferred, replicas_peak;
} closed_result;

/* Latencies of one configuration, accumulated over its slices. */
typedef struct closed_acc {
    sched *s;
    uint64_t *lat;
    size_t n, cap;
    double busy_s; /* wall time spent in its slices */
} closed_acc;

/* Runs `submitters` closed-loop submitters against acc->s for `seconds`, appending latencies. */
static void closed_slice(closed_acc *acc, int submitters, double seconds)
{
    _Atomic int stop = 0;
    closer *c = calloc((size_t)submitters, sizeof *c);
    pthread_t *t = calloc((size_t)submitters, sizeof *t);
    size_t cap = 200000;
    for (int i = 0; i < submitters; i++) {
        c[i].s = acc->s;
        c[i].stop = &stop;
        c[i].cap = cap;
        c[i].lat = malloc(cap * sizeof(uint64_t));
        sem_init(&c[i].sem, 0, 0);
    }
    uint64_t t0 = vg_now_ns();
    for (int i = 0; i < submitters; i++)
        pthread_create(&t[i], NULL, closer_main, &c[i]);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < submitters; i++)
        pthread_join(t[i], NULL);
    acc->busy_s += (double)(vg_now_ns() - t0) / 1e9;
    for (int i = 0; i < submitters; i++) {
        if (acc->n + c[i].n > acc->cap) {
            acc->cap = (acc->n + c[i].n) * 2;
            acc->lat = realloc(acc->lat, acc->cap * sizeof(uint64_t));
        }
        memcpy(acc->lat + acc->n, c[i].lat, c[i].n * sizeof(uint64_t));
        acc->n += c[i].n;
        free(c[i].lat);
        sem_destroy(&c[i].sem);
    }
    free(c);
    free(t);
}

static closed_result closed_finish(closed_acc *acc)
{
    qsort(acc->lat, acc->n, sizeof *acc->lat, cmp_u64);
    sched_stats st;
    sched_stats_get(acc->s, &st);
    closed_result r = {
        .items_per_s = (double)acc->n / acc->busy_s,
        .p50_us = pct(acc->lat, acc->n, 0.5) / 1e3,
        .p99_us = pct(acc->lat, acc->n, 0.99) / 1e3,
        .mean_batch =
            st.kinds[0].batches ? (double)st.kinds[0].batch_items / (double)st.kinds[0].batches : 0,
        .preferred = st.kinds[0].preferred_batch,
        .replicas_peak = st.replicas_peak,
    };
    sched_free(acc->s);
    free(acc->lat);
    return r;
}

/* Several configurations side by side: their slices alternate, so they share the machine's
 * background load instead of each meeting a different moment of it. */
#define BENCH_SLICES 10
static void run_side_by_side(closed_acc *accs, int n, int submitters, double seconds)
{
    for (int slice = 0; slice < BENCH_SLICES; slice++)
        for (int i = 0; i < n; i++)
            closed_slice(&accs[i], submitters, seconds / BENCH_SLICES);
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    double a_us = 1000, b_us = 200;
    unsigned replicas = (unsigned)vg_cpu_count();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--a-us") && i + 1 < argc)
            a_us = atof(argv[++i]);
        else if (!strcmp(argv[i], "--b-us") && i + 1 < argc)
            b_us = atof(argv[++i]);
        else if (!strcmp(argv[i], "--replicas") && i + 1 < argc)
            replicas = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--a-us A] [--b-us B] [--replicas R]\n",
                    argv[0]);
            return 2;
        }
    }
    if (replicas < 1)
        replicas = 1;
    vg_log_set_level(VG_LOG_WARN);
    const int conc[] = {1, 2, 4, 8, 16, 32};

    /* 1a. open loop, empty work */
    printf("## Scheduler overhead, empty batch function\n\n");
    printf("Open loop: submitters push %s items each as fast as submit accepts them (VG_EBUSY "
           "retried); max batch 32, up to %u replicas.\n\n",
           "200000", replicas);
    printf("| submitters | items/s | ns per item | EBUSY retries |\n|---|---|---|---|\n");
    cost zero = {0, 0};
    for (size_t ci = 0; ci < VG_ARRAY_LEN(conc); ci++) {
        int n = conc[ci];
        sched *s = make_sched(&zero, 32, replicas);
        _Atomic size_t done = 0;
        size_t per = 200000 / (size_t)n;
        opener *o = calloc((size_t)n, sizeof *o);
        pthread_t *t = calloc((size_t)n, sizeof *t);
        uint64_t t0 = vg_now_ns();
        for (int i = 0; i < n; i++) {
            o[i] = (opener){s, per, &done, 0};
            pthread_create(&t[i], NULL, opener_main, &o[i]);
        }
        uint64_t busy = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(t[i], NULL);
            busy += o[i].busy;
        }
        size_t total = per * (size_t)n;
        while (atomic_load(&done) < total)
            sched_yield();
        double wall = (double)(vg_now_ns() - t0) / 1e9;
        printf("| %d | %.0f | %.0f | %llu |\n", n, (double)total / wall, wall * 1e9 / (double)total,
               (unsigned long long)busy);
        sched_free(s);
        free(o);
        free(t);
    }

    /* 1b. closed loop, empty work */
    printf("\nClosed loop: each submitter waits for its item's completion (semaphore) before "
           "submitting the next: the round trip an HTTP request pays to hand work to a replica "
           "and be resumed. %.1f s per row.\n\n",
           seconds);
    printf("| submitters | items/s | P50 us | P99 us | mean batch | preferred batch |\n"
           "|---|---|---|---|---|---|\n");
    for (size_t ci = 0; ci < VG_ARRAY_LEN(conc); ci++) {
        closed_acc acc = {.s = make_sched(&zero, 32, replicas)};
        run_side_by_side(&acc, 1, conc[ci], seconds);
        closed_result r = closed_finish(&acc);
        printf("| %d | %.0f | %.1f | %.1f | %.1f | %u |\n", conc[ci], r.items_per_s, r.p50_us,
               r.p99_us, r.mean_batch, r.preferred);
    }

    /* 2. batching efficiency */
    cost c = {(uint64_t)(a_us * 1e3), (uint64_t)(b_us * 1e3)};
    printf("\n## Batching efficiency, batch cost a + b*n (a = %.0f us, b = %.0f us, busy loop)\n\n",
           a_us, b_us);
    printf("Closed loop, %.1f s per row, the three configurations alternating in %d slices each; "
           "up to %u replicas. Configurations: none (max batch 1), fixed (max 32, closes at 32 "
           "or after 1 ms), adaptive (max 32, preferred size from measured items/s). Ideal = "
           "min(%u x n, submitters) / (a + b*n) for the mean batch n achieved (the CPU share "
           "this process got bounds every row: see the 'none' rows, whose ideal is %.0f "
           "items/s).\n\n",
           seconds, BENCH_SLICES, replicas, replicas, replicas * 1.0 / ((a_us + b_us) / 1e6));
    printf("| submitters | batching | items/s | P50 ms | P99 ms | mean batch | preferred | "
           "ideal items/s | of ideal | vs none |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    static const char *names[3] = {"none", "fixed", "adaptive"};
    for (size_t ci = 0; ci < VG_ARRAY_LEN(conc); ci++) {
        closed_acc acc[3] = {{.s = make_sched_ex(&c, 1, replicas, 0)},
                             {.s = make_sched_ex(&c, 32, replicas, 0)},
                             {.s = make_sched_ex(&c, 32, replicas, 1)}};
        run_side_by_side(acc, 3, conc[ci], seconds);
        closed_result r[3];
        for (int i = 0; i < 3; i++)
            r[i] = closed_finish(&acc[i]);
        for (int i = 0; i < 3; i++) {
            double n = r[i].mean_batch > 0 ? r[i].mean_batch : 1;
            /* At most `submitters` items are in flight: min(replicas * n, submitters) per round. */
            double inflight = replicas * n < conc[ci] ? replicas * n : conc[ci];
            double ideal = inflight / ((a_us + b_us * n) / 1e6);
            printf("| %d | %s | %.0f | %.2f | %.2f | %.1f | %u | %.0f | %.0f%% | %.2fx |\n",
                   conc[ci], names[i], r[i].items_per_s, r[i].p50_us / 1e3, r[i].p99_us / 1e3,
                   r[i].mean_batch, r[i].preferred, ideal, 100.0 * r[i].items_per_s / ideal,
                   r[i].items_per_s / r[0].items_per_s);
        }
    }
    return 0;
}
