/* `vigil serve`: loads the settings (file < env < flags), then runs the server until SIGTERM or
 * SIGINT. Exit status: 0 after a clean shutdown (analyses still queued when the grace period ends
 * are answered 503 first, see server_run), 1 when start-up failed or a request was still
 * unanswered after the grace period, 2 for a usage error. */
#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "server/server.h"

#include <stdio.h>
#include <string.h>

extern char **environ;

static int serve_run(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            conf_print_help(stdout);
            return CLI_EXIT_OK;
        }
    }
    conf_settings cfg;
    if (conf_init(&cfg) != VG_OK) {
        fprintf(stderr, "vigil serve: out of memory\n");
        return CLI_EXIT_FAILED;
    }
#ifdef VG_DEFAULT_MODELS_DIR
    conf_set(&cfg, "models_dir", VG_DEFAULT_MODELS_DIR, CONF_SRC_DEFAULT, "build");
#endif
    vg_err_clear();
    int rc = conf_load_all(&cfg, argc, argv, environ);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil serve: %s\n", vg_err_msg());
        conf_deinit(&cfg);
        return rc == VG_EIO ? CLI_EXIT_FAILED : CLI_EXIT_USAGE;
    }
    vg_log_set_level((vg_log_level)cfg.log_level);
    conf_log_settings(&cfg);
    /* before any thread exists, so every thread inherits the mask and only sigwait sees them */
    server_block_signals();
    server *s = NULL;
    vg_err_clear();
    rc = server_open(&cfg, &s);
    if (rc != VG_OK) {
        fprintf(stderr, "vigil serve: cannot start: %s\n", vg_err_msg());
        conf_deinit(&cfg);
        return CLI_EXIT_FAILED;
    }
    rc = server_run(s);
    server_close(s);
    conf_deinit(&cfg);
    return rc == VG_OK ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

const cli_command cli_cmd_serve = {"serve", "run the HTTP API server (see vigil serve --help)",
                                   serve_run};
