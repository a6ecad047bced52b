/*
 * bench_ops: what the ops record path costs a request. ns per ops_record_request (and per
 * ops_record_analysis) on 1..T threads hammering the same current slot, the worst case for its
 * shared atomics, with the tick thread running at scale 60 (a slot change every 16.7 ms) so the
 * hot path also crosses slot switches. Baseline: the same loop calling an empty function.
 *
 *   bench_ops [--iters N] [--threads T]
 *
 * Writes Markdown to stdout.
 */
#include "core/core.h"
#include "ops/ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    ops *o;
    uint64_t iters;
    int kind; /* 0 request, 1 analysis, 2 empty */
    uint64_t ns;
} job;

__attribute__((noinline)) static void empty(ops *o, ops_class c, int st, uint64_t ns)
{
    __asm__ volatile("" ::"r"(o), "r"(c), "r"(st), "r"(ns) : "memory");
}

static void *run(void *arg)
{
    job *j = arg;
    uint64_t x = 88172645463325252ull, t0 = vg_now_ns();
    static const uint64_t stages[OPS_STAGES] = {1000000, 200000, 3000000, 0, 0, 50000, 900000};
    for (uint64_t i = 0; i < j->iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t d = 20000 + (x & 0xffffff); /* 20 us .. 17 ms */
        if (j->kind == 0)
            ops_record_request(j->o, (ops_class)(i & 1), (i & 63) ? 200 : 503, d);
        else if (j->kind == 1)
            ops_record_analysis(j->o, 1, 1, stages, (ops_tier)(i & 1));
        else
            empty(j->o, (ops_class)(i & 1), 200, d);
    }
    j->ns = vg_now_ns() - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t iters = 20000000;
    int threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--iters"))
            iters = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
    }
    ops_config c = {.time_scale = 60};
    ops *o;
    if (ops_new(&c, &o) != VG_OK || ops_start(o) != VG_OK)
        return 1;
    printf("| call | threads | ns/call (mean over threads) |\n|---|---|---|\n");
    static const char *const names[3] = {"ops_record_request", "ops_record_analysis",
                                         "empty call (loop baseline)"};
    for (int kind = 0; kind < 3; kind++)
        for (int t = 1; t <= threads; t++) {
            pthread_t th[64];
            job jobs[64];
            for (int i = 0; i < t; i++) {
                jobs[i] = (job){o, iters, kind, 0};
                pthread_create(&th[i], NULL, run, &jobs[i]);
            }
            double sum = 0;
            for (int i = 0; i < t; i++) {
                pthread_join(th[i], NULL);
                sum += (double)jobs[i].ns / (double)iters;
            }
            printf("| %s | %d | %.1f |\n", names[kind], t, sum / t);
        }
    ops_free(o);
    return 0;
}
