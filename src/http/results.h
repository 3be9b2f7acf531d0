/*
 * results.h - query results behind handles, over HTTP (SPEC §17):
 *
 *   POST   /api/results {sql, limit?, max_chars?}   run a SELECT; the first page, and a
 *                                                   handle when the result is larger
 *   GET    /api/results                             the caller's live handles and the budget
 *   GET    /api/results/{handle}?format=parquet|csv the whole result (download)
 *   GET    /api/results/{handle}/rows?offset=&limit=&max_chars=   one page
 *   DELETE /api/results/{handle}                    drop it before it expires
 *
 * The MCP tools query and fetch_result (both transports) are these same
 * functions.  The SQL goes through the same guard, grants, pool and limits
 * as POST /api/query; the result is written whole as Parquet by the query
 * engine and kept by engine/result_handle.
 */
#ifndef AGNES_HTTP_RESULTS_H
#define AGNES_HTTP_RESULTS_H

#include <jansson.h>

#include "core/strbuf.h"
#include "http/http.h"

struct auth_identity;

/* Run sql for who and append the first page's JSON text to page (see
 * engine/result_handle.h), with its handle when rows remain; limit /
 * max_chars <= 0 take the configured budget.  Errors carry the HTTP status
 * to answer in *status (400, 403, 408, 429, 503, 500) and the sentence in
 * err. */
int results_run(http_context *ctx, const struct auth_identity *who, const char *sql, long long limit,
                long long max_chars, strbuf *page, unsigned *status, agnes_error *err);

/* One page of who's handle; same conventions (404 for a handle that is
 * not theirs or not there any more). */
int results_fetch(http_context *ctx, const struct auth_identity *who, const char *handle, long long offset,
                  long long limit, long long max_chars, strbuf *page, unsigned *status, agnes_error *err);

void results_handle_create(http_context *ctx, const http_request *req, http_response *resp);
void results_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void results_handle_download(http_context *ctx, const http_request *req, http_response *resp);
void results_handle_rows(http_context *ctx, const http_request *req, http_response *resp);
void results_handle_delete(http_context *ctx, const http_request *req, http_response *resp);

#endif
