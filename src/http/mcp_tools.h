/*
 * mcp_tools.h - the MCP tools (core/mcp.h) on the server, for /mcp.
 *
 * Each tool runs the same code as its REST endpoint, with the caller's
 * identity: list_tables, describe_table, sync_status, registry and
 * sync_trigger call the endpoint's own handler (so grants, shapes and
 * errors cannot drift), query and fetch_result call http/results.h.  A
 * failure comes back as the endpoint's sentence.
 */
#ifndef AGNES_HTTP_MCP_TOOLS_H
#define AGNES_HTTP_MCP_TOOLS_H

#include "core/mcp.h"
#include "http/http.h"

/* The tool host for one /mcp request (cls points at the pair). */
typedef struct mcp_http_call {
    http_context *ctx;
    const http_request *req;
} mcp_http_call;

/* Fill host for call (which must outlive it). */
void mcp_tools_host(mcp_http_call *call, mcp_host *host);

#endif
