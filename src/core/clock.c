/* Clocks: monotonic for durations, realtime for timestamps; the latency histogram over them. */
#include "core/core.h"

#include <stdio.h>
#include <time.h>

uint64_t vg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t vg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *vg_format_time(int64_t wall_ms, char *buf, size_t buflen)
{
    time_t secs = (time_t)(wall_ms / 1000);
    int ms = (int)(wall_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

void vg_lat_record(vg_lat_hist *h, uint64_t ns)
{
    if (!h)
        return;
    unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    if (b >= VG_LAT_BUCKETS)
        b = VG_LAT_BUCKETS - 1;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void vg_lat_read(const vg_lat_hist *h, vg_lat_snapshot *out)
{
    if (!h)
        return;
    for (int i = 0; i < VG_LAT_BUCKETS; i++) {
        uint64_t n = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        out->buckets[i] += n;
        out->count += n;
    }
    out->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
