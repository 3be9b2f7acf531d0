/* configure.h - headless configuration: POST /api/admin/configure and
 * POST /api/admin/discover-and-register (admin only; see configure.c). */
#ifndef AGNES_HTTP_CONFIGURE_H
#define AGNES_HTTP_CONFIGURE_H

#include "http/http.h"

void configure_handle_post(http_context *ctx, const http_request *req, http_response *resp);
void configure_handle_discover(http_context *ctx, const http_request *req, http_response *resp);

#endif
