/* configure.h - headless configuration: GET|POST /api/admin/configure,
 * GET /api/admin/discover-tables and POST /api/admin/discover-and-register
 * (admin only; see configure.c). */
#ifndef AGNES_HTTP_CONFIGURE_H
#define AGNES_HTTP_CONFIGURE_H

#include "http/http.h"

void configure_handle_post(http_context *ctx, const http_request *req, http_response *resp);
void configure_handle_discover(http_context *ctx, const http_request *req, http_response *resp);
/* GET /api/admin/configure: the sources this build can configure, and the current one. */
void configure_handle_get(http_context *ctx, const http_request *req, http_response *resp);
/* GET /api/admin/discover-tables: the configured source's tables, nothing registered. */
void configure_handle_discover_list(http_context *ctx, const http_request *req, http_response *resp);

#endif
