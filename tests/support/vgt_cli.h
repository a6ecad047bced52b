/*
 * Running the `vigil` binary from a cmocka test: the command's exit status, stdout and stderr,
 * as a user at a shell would see them. Header-only (see vgt_random.h); include after cmocka.h
 * and core/core.h.
 */
#ifndef VGT_CLI_H
#define VGT_CLI_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

typedef struct {
    int status;
    char *out, *err; /* owned, NUL-terminated; release with vgt_run_free */
} vgt_run_result;

/* Runs `<env> '<vigil>' <args>` through the shell (env and args are shell text, env may be
 * ""), with stdout and stderr in files under dir, and reads both back (at most max_bytes each).
 * Fails the test if the command could not run or did not exit normally. */
static inline vgt_run_result vgt_run(const char *dir, const char *env, const char *vigil,
                                     const char *args, size_t max_bytes)
{
    char out_path[256], err_path[256], cmd[4096];
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    snprintf(err_path, sizeof err_path, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "%s '%s' %s >'%s' 2>'%s'", env, vigil, args, out_path, err_path);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    vgt_run_result r;
    r.status = WEXITSTATUS(st);
    size_t len;
    assert_int_equal(vg_read_file(out_path, max_bytes, (uint8_t **)&r.out, &len), VG_OK);
    assert_int_equal(vg_read_file(err_path, max_bytes, (uint8_t **)&r.err, &len), VG_OK);
    return r;
}

static inline void vgt_run_free(vgt_run_result *r)
{
    vg_free(r->out);
    vg_free(r->err);
}

#endif
