/* setup.h - the first-run wizard's and /admin/sources' read endpoints (see setup.c). */
#ifndef AGNES_HTTP_SETUP_H
#define AGNES_HTTP_SETUP_H

#include "http/http.h"

void setup_handle_sources(http_context *ctx, const http_request *req, http_response *resp);
void setup_handle_state(http_context *ctx, const http_request *req, http_response *resp);

#endif
