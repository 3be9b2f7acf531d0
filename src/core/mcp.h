/*
 * mcp.h - the Model Context Protocol as Agnes speaks it (SPEC §17): the
 * JSON-RPC 2.0 layer, the lifecycle, and the tool catalog, shared by both
 * transports:
 *
 *   stdio            `agnes mcp` (cli/mcp.c): the analyst's CLI login, the
 *                    server's REST API, and the local workspace
 *   streamable HTTP  POST /mcp on the server (http/mcp.c): a bearer token,
 *                    the same functions as the REST API behind it
 *
 * Each transport supplies an mcp_host: what the caller may see and how a
 * tool runs.  This module owns everything the two must say alike: the
 * protocol versions (the client's when we speak it, else our newest - the
 * specification's negotiation rule), the instructions and tool descriptions
 * (the dialect is DuckDB's; the tables the caller may use are named), the
 * input schemas, and the result shape (content text + structuredContent;
 * a failure is a tool result with isError and the server's sentence, which
 * the model reads and can act on).  Unknown methods and tools are JSON-RPC
 * errors (-32601, -32602), as the specification asks.
 *
 * Facts from the MCP specification (modelcontextprotocol.io, revisions
 * 2024-11-05 .. 2025-11-25): lifecycle (initialize -> result with
 * protocolVersion, capabilities, serverInfo, instructions; then the client's
 * notifications/initialized), tools/list, tools/call, ping; structured tool
 * output (structuredContent) from 2025-06-18 on.
 */
#ifndef AGNES_CORE_MCP_H
#define AGNES_CORE_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* The newest revision we speak, and the longest version string. */
#define MCP_LATEST_VERSION "2025-11-25"
#define MCP_VERSION_MAX 16

/* JSON-RPC error codes. */
#define MCP_PARSE_ERROR -32700
#define MCP_INVALID_REQUEST -32600
#define MCP_METHOD_NOT_FOUND -32601
#define MCP_INVALID_PARAMS -32602
#define MCP_INTERNAL_ERROR -32603

/* Page sizes a caller may ask for: rows per page and characters of row
 * JSON per page.  The defaults (results.max_rows, results.max_chars) are
 * sized for a model's context; these caps bound one response. */
#define MCP_PAGE_MAX_ROWS 100000
#define MCP_PAGE_MAX_CHARS 10000000

/* True for a protocol revision this build speaks. */
bool mcp_version_supported(const char *version);

/* The revision to answer an initialize that asked for `requested`. */
const char *mcp_negotiate(const char *requested);

typedef struct mcp_host {
    void *cls;
    const char *transport; /* "stdio" or "http": tools whose wording differs per transport */
    const char *server_version;
    /* The result budget the descriptions quote (results.max_rows,
     * results.max_chars, results.ttl_seconds); 0 when unknown. */
    long long max_rows, max_chars, ttl_seconds;
    /* The caller's queryable tables as an array of ids (new reference), or
     * NULL when that cannot be learnt now (the text then says to call
     * list_tables).  Called for initialize and tools/list. */
    json_t *(*tables)(void *cls);
    /* Admin-only tools (sync_trigger, registry) are listed and callable
     * only when this is true. */
    bool (*is_admin)(void *cls);
    /* Run a tool the catalog lists, with arguments as given (an object).
     * Return the result as the text of one JSON object (malloc'd; the
     * caller frees it) - text, because result pages are megabytes of rows
     * that are never parsed on the way - or NULL with err set: err->message
     * becomes the tool error's text, so it must be the sentence the caller
     * can act on. */
    char *(*call)(void *cls, const char *tool, const json_t *arguments, agnes_error *err);
} mcp_host;

/* Per-connection state: the negotiated revision ("" until initialize). */
typedef struct mcp_session {
    char version[MCP_VERSION_MAX + 1];
} mcp_session;

/* Handle one parsed JSON-RPC message.  Returns the response as JSON text
 * (malloc'd, no newline), or NULL when none is due (a notification or a
 * response) - and also, with *failed set, when memory ran out.  A message
 * that is not a JSON-RPC request gets an error response with id null.  A
 * batch (array, 2025-03-26) is handled by the transports with this per
 * element. */
char *mcp_handle_message(const mcp_host *host, mcp_session *session, const json_t *message, bool *failed);

/* A JSON-RPC error response (new reference). */
json_t *mcp_error_response(const json_t *id, int code, const char *message);

/* value as compact JSON text (malloc'd), consuming the reference; NULL
 * with err set (AGNES_ERR_NOMEM) when value is NULL or cannot be printed.
 * For tool implementations that build their result with jansson. */
char *mcp_json_text(json_t *value, agnes_error *err);

/* True when message is a request (has a method and an id). */
bool mcp_is_request(const json_t *message);

/* Argument helpers for tool implementations: AGNES_ERR_INVALID with a
 * sentence naming the argument when it is present with the wrong type or
 * out of range.  Absent (or null) leaves *out at its default. */
int mcp_arg_string(const json_t *arguments, const char *name, bool required, const char **out, agnes_error *err);
int mcp_arg_int(const json_t *arguments, const char *name, long long min, long long max, long long *out,
                agnes_error *err);
int mcp_arg_bool(const json_t *arguments, const char *name, bool *out, agnes_error *err);

#endif
