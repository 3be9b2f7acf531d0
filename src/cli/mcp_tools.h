/*
 * mcp_tools.h - the MCP tools of `agnes mcp` (stdio): the analyst's CLI
 * login against the server's REST API, and the local workspace.
 *
 *   list_tables, describe_table, sync_status, registry, sync_trigger
 *                      the REST endpoints, with the stored token
 *   query              POST /api/results; with local: true, the workspace's
 *                      agnes.duckdb (the result written to
 *                      .agnes/results/local-<hex>.parquet and paged the same
 *                      way as the server's, engine/result_handle.h)
 *   fetch_result       GET /api/results/{handle}/rows, or the local file
 *   pull               `agnes pull --json` run as a child process (its
 *                      stdout never mixes with the MCP channel), plus
 *                      .agnes/changes.md
 *
 * Errors are the server's own sentence (its "detail"), or the CLI's for
 * login and network problems, so the model reads what a person would.
 */
#ifndef AGNES_CLI_MCP_TOOLS_H
#define AGNES_CLI_MCP_TOOLS_H

#include <stdbool.h>

#include "cli/client/client.h"
#include "core/mcp.h"

typedef struct mcp_stdio {
    client login;
    bool logged_in;
    agnes_error login_error;      /* why not, for every tool call */
    const char *workspace_dir;    /* --workspace, or NULL (AGNES_WORKSPACE / cwd) */
    long long max_rows, max_chars, ttl_seconds; /* the server's result budget (GET /api/results) */
    int admin;                    /* -1 unknown, 0, 1 (GET /api/me, asked once) */
} mcp_stdio;

/* Load the login, ask the server for the result budget, fill host. */
void mcp_stdio_init(mcp_stdio *state, const char *workspace_dir, mcp_host *host);

#endif
