/*
 * cli: the `vigil` command. Each subcommand lives in its own cmd_<name>.c and defines
 *     const cli_command cli_cmd_<name> = {"name", "one-line summary", run};
 * The build generates the command table from the cmd_*.c files, so adding a command never edits
 * main.c. Conventions for every command:
 *   - `vigil <cmd> --help` prints usage to stdout and exits 0;
 *   - a usage error prints one line to stderr and exits CLI_EXIT_USAGE;
 *   - a failed input prints one line "vigil <cmd>: <what>: <why>" to stderr; the command goes on
 *     with the other inputs and exits CLI_EXIT_FAILED at the end.
 */
#ifndef VG_CLI_H
#define VG_CLI_H

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1
#define CLI_EXIT_USAGE 2

typedef struct cli_command {
    const char *name;
    const char *summary;
    /* argv[0] is the command name; returns the process exit status. */
    int (*run)(int argc, char **argv);
} cli_command;

#endif
