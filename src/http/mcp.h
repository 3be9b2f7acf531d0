/*
 * mcp.h - /mcp: the Model Context Protocol over streamable HTTP (SPEC §17).
 *
 *   POST /mcp     one JSON-RPC message (or a batch); answered with
 *                 application/json, or 202 for notifications only
 *   DELETE /mcp   end the session named by Mcp-Session-Id
 *   GET /mcp      405: this server sends nothing unasked, so it offers no
 *                 server-to-client stream (the specification allows 405)
 *
 * Authentication is the Authorization: Bearer header (a personal access
 * token, or a session token): the route is ROUTE_USER, and a request that
 * only carries the web cookie is refused, so a web page cannot drive it.
 * A browser's Origin must be this server's DOMAIN, a loopback origin, or
 * listed in mcp.allowed_origins (403 otherwise: DNS rebinding).
 *
 * Sessions (MCP specification, streamable HTTP): initialize creates one,
 * returned in Mcp-Session-Id and bound to the user; every later request
 * must carry it (400 without, 404 when unknown, ended, expired after 24 h
 * idle, or another user's - the client then initializes again).  A
 * MCP-Protocol-Version header this build does not speak is a 400.
 * Sessions live in memory: a restarted server answers 404 and clients
 * start over, as the specification describes.
 *
 * The tools are those of core/mcp.h, run in http/mcp_tools.c on the same
 * functions as the REST API, with the caller's identity.
 */
#ifndef AGNES_HTTP_MCP_H
#define AGNES_HTTP_MCP_H

#include "http/http.h"

typedef struct mcp_sessions mcp_sessions;

mcp_sessions *mcp_sessions_new(void);
void mcp_sessions_free(mcp_sessions *sessions);

void mcp_handle_post(http_context *ctx, const http_request *req, http_response *resp);
void mcp_handle_delete(http_context *ctx, const http_request *req, http_response *resp);

#endif
