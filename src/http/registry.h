/* registry.h - the table registry API, admin only (see registry.c). */
#ifndef AGNES_HTTP_REGISTRY_H
#define AGNES_HTTP_REGISTRY_H

#include "http/http.h"

void registry_handle_register(http_context *ctx, const http_request *req, http_response *resp);
void registry_handle_precheck(http_context *ctx, const http_request *req, http_response *resp);
void registry_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void registry_handle_update(http_context *ctx, const http_request *req, http_response *resp);
void registry_handle_delete(http_context *ctx, const http_request *req, http_response *resp);

#endif
