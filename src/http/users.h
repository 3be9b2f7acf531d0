/* users.h - admin user management: /api/users... (see users.c). */
#ifndef AGNES_HTTP_USERS_H
#define AGNES_HTTP_USERS_H

#include "http/http.h"

void users_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_get(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_create(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_update(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_delete(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_set_password(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_deactivate(http_context *ctx, const http_request *req, http_response *resp);
void users_handle_activate(http_context *ctx, const http_request *req, http_response *resp);

#endif
