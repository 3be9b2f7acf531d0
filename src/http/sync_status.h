/* sync_status.h - GET /api/sync/status: the state of every table and of the last catalog rebuild. */
#ifndef AGNES_HTTP_SYNC_STATUS_H
#define AGNES_HTTP_SYNC_STATUS_H

#include "http/http.h"

void sync_status_handle_get(http_context *ctx, const http_request *req, http_response *resp);

#endif
