/* Entry point of the `vigil` binary: dispatches to the subcommands in cmd_*.c. */
#include "cli/cli.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

#include "cli_commands.inc" /* generated: extern declarations and cli_commands[] */

static void usage(FILE *out)
{
    fprintf(out, "usage: vigil <command> [options] [args]\n\n"
                 "Content-protection analysis: PDQ perceptual hashes and face matching.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < VG_ARRAY_LEN(cli_commands); i++)
        if (cli_commands[i])
            fprintf(out, "  %-10s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
    fprintf(out, "\n  vigil <command> --help   options of one command\n"
                 "  vigil --version          version and CPU features\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    vg_malloc_tune();
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("vigil %s (cpu: %s)\n", VG_VERSION, vg_cpu_describe());
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < VG_ARRAY_LEN(cli_commands); i++) {
        if (cli_commands[i] && strcmp(cmd, cli_commands[i]->name) == 0)
            return cli_commands[i]->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "vigil: unknown command '%s' (see vigil --help)\n", cmd);
    return CLI_EXIT_USAGE;
}
