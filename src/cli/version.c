/* `agnes --version` and `agnes help`. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/version.h"
#include "store/migrations.h"

int command_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    agnes_version v;
    version_baked(&v);
    printf("agnes %s (channel %s, commit %s, built %s, schema %d)\n", v.version, v.channel, v.commit_sha, v.built_at,
           migrations_latest());
    return 0;
}

/* Every command and its flags, for `agnes help --json`: the CLI's interface
 * that scripts/breaking-check guards (a removed command or flag breaks the
 * scripts and hooks that use it).  A test checks each flag appears in the
 * command's own --help. */
static const struct {
    const char *command;
    const char *flags[8];
} interface[] = {
    {"serve", {NULL}},
    {"migrate", {"--to", NULL}},
    {"doctor", {"--json", "--server", "--client", NULL}},
    {"routes", {"--json", NULL}},
    {"rebuild", {"--json", NULL}},
    {"sync", {"--json", NULL}},
    {"sql", {NULL}},
    {"openapi", {NULL}},
    {"schema", {NULL}},
    {"backup", {"--output", "--verify", "--json", NULL}},
    {"restore", {"--state-dir", "--force", "--json", NULL}},
    {"contract", {"--json", NULL}},
    {"login", {"--server", "--token", "--email", NULL}},
    {"logout", {NULL}},
    {"status", {"--json", "--workspace", NULL}},
    {"catalog", {"--json", NULL}},
    {"query", {"--local", "--format", "--limit", "--workspace", NULL}},
    {"pull", {"--quiet", "--json", "--workspace", "--print-changes", "--result", "--format", NULL}},
    {"push", {"--quiet", "--workspace", NULL}},
    {"init", {NULL}},
    {"mcp", {"--workspace", NULL}},
    {"admin", {"--json", "--wait", NULL}},
    {"version", {NULL}},
    {"help", {"--json", NULL}},
};

static int print_interface(void)
{
    json_t *commands = json_object();
    for (size_t i = 0; i < sizeof interface / sizeof interface[0]; i++) {
        json_t *flags = json_array();
        for (int f = 0; f < 8 && interface[i].flags[f] != NULL; f++)
            json_array_append_new(flags, json_string(interface[i].flags[f]));
        json_object_set_new(commands, interface[i].command, json_pack("{s:o}", "flags", flags));
    }
    json_t *doc = json_pack("{s:o}", "commands", commands);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    return text ? 0 : 1;
}

int command_help(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--json") == 0)
        return print_interface();
    printf("agnes - data distribution for AI analysts\n"
           "\n"
           "usage: agnes <command> [options]\n"
           "\n"
           "server commands:\n"
           "  serve                 run the HTTP server (configured by environment; see `agnes doctor`)\n"
           "  migrate [--to N]      bring STATE_DIR/system.duckdb up to date without serving\n"
           "  doctor [--json]       show the merged configuration, where each value came from,\n"
           "                        and check the state tier (read-only)\n"
           "  routes [--json]       list every HTTP endpoint and who may call it\n"
           "  rebuild [--json]      rebuild the analytics catalog from every extract (server stopped)\n"
           "  sync [--json] [ID..]  sync registered tables now, then rebuild (server stopped)\n"
           "  sql FILE SQL          run SQL on a DuckDB file (custom connectors write extract.duckdb with it)\n"
           "  openapi               print the API description (openapi.json)\n"
           "  schema dump           print system.duckdb's tables and columns as this build creates them\n"
           "  backup [--output FILE|-] [--json]\n"
           "                        archive the state tier (system.duckdb, secrets, overlays, certs), verified;\n"
           "                        a running server on STATE_DIR takes the snapshot itself\n"
           "  backup --verify FILE  check an archive: every SHA-256, the database opens, its schema\n"
           "  restore FILE [--state-dir DIR] [--force]\n"
           "                        put an archive back into an empty STATE_DIR (server stopped)\n"
           "  contract check PATH [--json]\n"
           "                        validate an extract.duckdb against the extract contract (contracts/)\n"
           "\n"
           "analyst commands (a server elsewhere; AGNES_SERVER / AGNES_TOKEN override the stored login):\n"
           "  login [--server URL] [--token PAT | --email E]   log in; the token goes to ~/.config/agnes (0600)\n"
           "  logout                forget the token\n"
           "  status [--json]       server, user, version, this workspace's last pull\n"
           "  catalog [TABLE] [--json]   the tables you may read, or one with its columns\n"
           "  query \"SQL\" [--local] [--format table|csv|json]   on the server, or on the workspace\n"
           "  pull [--quiet] [--json] [--print-changes] [TABLE..]   download what changed into ./data, refresh\n"
           "                        ./agnes.duckdb, write .agnes/changes.md (what changed since the last pull)\n"
           "  pull --result HANDLE [--format parquet|csv]   a query result kept behind a handle, into ./results\n"
           "  push [--quiet] [FILE..]   send session logs and notes (.agnes/outbox/) to the server\n"
           "  init [DIR]            CLAUDE.md with every table and its columns, hooks that pull and push,\n"
           "                        .mcp.json for `agnes mcp`\n"
           "  mcp [--workspace DIR] the MCP server for AI agents on stdio (tools: list_tables, describe_table,\n"
           "                        query, fetch_result, sync_status, pull); `agnes init` writes .mcp.json for it\n"
           "  exit codes: 0 ok, 1 failed, 2 usage, 3 auth, 4 network, 5 server error, 6 partial\n"
           "\n"
           "other:\n"
           "  --version, version    print version, channel, commit and schema version\n"
           "  help [--json]         this text; --json: every command and its flags\n"
           "\n"
           "Directories: DATA_DIR (default ./data), STATE_DIR (default $DATA_DIR/state), CONFIG_DIR (default ./config).\n"
           "Every configuration key is documented in config/instance.yaml.example.\n");
    return 0;
}
