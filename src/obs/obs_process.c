/* obs: process metrics from /proc/self, getrusage and getrlimit, read at render time (no
 * background thread, nothing cached: a scrape sees the process as it is). Linux only. */
#include "obs/obs.h"

#include "core/core.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Fields 3.. of /proc/self/stat (after the parenthesised command name, which may contain
 * spaces and parentheses, hence the search for the last ')'). */
static int read_stat(uint64_t *threads, uint64_t *start_ticks)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return VG_EIO;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return VG_EIO;
    p++;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 20)
            *threads = strtoull(tok, NULL, 10);
        if (field == 22) {
            *start_ticks = strtoull(tok, NULL, 10);
            return VG_OK;
        }
    }
    return VG_EIO;
}

static int read_btime(uint64_t *btime)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return VG_EIO;
    char line[512];
    int rc = VG_EIO;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "btime ", 6)) {
            *btime = strtoull(line + 6, NULL, 10);
            rc = VG_OK;
            break;
        }
    fclose(f);
    return rc;
}

int obs_process_read(obs_process *out)
{
    obs_process p = {0};
    long page = sysconf(_SC_PAGESIZE);
    long tick = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return vg_err_set(VG_EIO, "cannot read /proc/self/statm");
    unsigned long long size = 0, resident = 0;
    int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
    fclose(f);
    if (!ok)
        return vg_err_set(VG_EIO, "unexpected /proc/self/statm");
    p.virtual_bytes = size * (uint64_t)page;
    p.resident_bytes = resident * (uint64_t)page;

    uint64_t start_ticks = 0, btime = 0;
    if (read_stat(&p.threads, &start_ticks) || read_btime(&btime))
        return vg_err_set(VG_EIO, "cannot read /proc/self/stat or /proc/stat");
    p.start_time_seconds = (double)btime + (double)start_ticks / (double)(tick > 0 ? tick : 100);

    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        p.cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p.max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;

    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return vg_err_set(VG_EIO, "cannot list /proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            p.open_fds++;
    closedir(d);
    if (p.open_fds)
        p.open_fds--; /* the directory stream's own descriptor */
    *out = p;
    return VG_OK;
}
