/* pages.h - HTML page routes (see pages.c). */
#ifndef AGNES_HTTP_PAGES_H
#define AGNES_HTTP_PAGES_H

#include "http/http.h"

void pages_handle_setup(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_login(http_context *ctx, const http_request *req, http_response *resp);

#endif
