/* tokens.h - personal access token endpoints (see tokens.c). */
#ifndef AGNES_HTTP_TOKENS_H
#define AGNES_HTTP_TOKENS_H

#include "http/http.h"

void tokens_handle_create(http_context *ctx, const http_request *req, http_response *resp);
void tokens_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void tokens_handle_get(http_context *ctx, const http_request *req, http_response *resp);
void tokens_handle_revoke(http_context *ctx, const http_request *req, http_response *resp);
void tokens_handle_admin_list(http_context *ctx, const http_request *req, http_response *resp);
void tokens_handle_admin_revoke(http_context *ctx, const http_request *req, http_response *resp);

#endif
