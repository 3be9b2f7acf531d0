/* query.h - POST /api/query: guarded, streamed SQL on the catalog (see query.c). */
#ifndef AGNES_HTTP_QUERY_H
#define AGNES_HTTP_QUERY_H

#include "http/http.h"

void query_handle_post(http_context *ctx, const http_request *req, http_response *resp);

#endif
