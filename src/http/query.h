/* query.h - POST /api/query: guarded, streamed SQL on the catalog (see query.c). */
#ifndef AGNES_HTTP_QUERY_H
#define AGNES_HTTP_QUERY_H

#include <stdbool.h>

#include "engine/query.h"
#include "http/http.h"

/* Run `sql` for the caller and answer with its streamed result, or the
 * 4xx that says why not.  trusted: the server composed the SQL for a table
 * whose access it already checked, so the guard's table rules are skipped
 * (the statement rules and the locked-down connection still apply). */
void query_respond(http_context *ctx, const http_request *req, http_response *resp, const char *sql,
                   long long limit, query_format format, bool trusted);

void query_handle_post(http_context *ctx, const http_request *req, http_response *resp);

#endif
