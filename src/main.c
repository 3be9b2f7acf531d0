/*
 * main.c - `agnes <command>`: dispatch only.  Each command lives in
 * src/cli/ and owns its own argument parsing.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/client/commands.h"
#include "cli/commands.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"serve", command_serve},     {"migrate", command_migrate}, {"doctor", command_doctor},   {"routes", command_routes},
    {"contract", command_contract}, {"rebuild", command_rebuild},
    {"sync", command_sync},       {"sql", command_sql},         {"openapi", command_openapi},
    {"schema", command_schema},   {"query-worker", command_query_worker},
    {"backup", command_backup},   {"restore", command_restore},
    {"login", command_login},     {"logout", command_logout},   {"status", command_status},
    {"pull", command_pull},       {"push", command_push},       {"query", command_query},
    {"catalog", command_catalog}, {"init", command_init},       {"admin", command_admin},
    {"mcp", command_mcp},
    {"version", command_version}, {"--version", command_version}, {"-V", command_version},
    {"help", command_help},       {"--help", command_help},     {"-h", command_help},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        command_help(argc, argv);
        return EXIT_USAGE;
    }
    /* Every command writes to pipes or sockets - a connector's stdin, HTTP
     * clients, libcurl's connections, stdout into `| head` - and a reader that
     * goes away must be an EPIPE its writer handles, never a death by SIGPIPE
     * (`agnes sync --json` once exited -13 that way).  Set before any thread
     * starts; connectors get the default back before exec. */
    signal(SIGPIPE, SIG_IGN);
    /* libcurl's global state must be set up before any thread starts. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "agnes: cannot initialise libcurl\n");
        return 1;
    }
    int rc = EXIT_USAGE;
    bool found = false;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            rc = commands[i].run(argc - 1, argv + 1);
            found = true;
            break;
        }
    }
    if (!found)
        fprintf(stderr, "agnes: unknown command '%s'. Run `agnes help` for the list.\n", argv[1]);
    curl_global_cleanup();
    return rc;
}
