/* access.h - groups, members, grants, effective access, audit (see access.c). */
#ifndef AGNES_HTTP_ACCESS_H
#define AGNES_HTTP_ACCESS_H

#include "http/http.h"

void groups_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void groups_handle_get(http_context *ctx, const http_request *req, http_response *resp);
void groups_handle_create(http_context *ctx, const http_request *req, http_response *resp);
void groups_handle_update(http_context *ctx, const http_request *req, http_response *resp);
void groups_handle_delete(http_context *ctx, const http_request *req, http_response *resp);
void members_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void members_handle_add(http_context *ctx, const http_request *req, http_response *resp);
void members_handle_remove(http_context *ctx, const http_request *req, http_response *resp);
void grants_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void grants_handle_create(http_context *ctx, const http_request *req, http_response *resp);
void grants_handle_delete(http_context *ctx, const http_request *req, http_response *resp);
void access_handle_user_effective(http_context *ctx, const http_request *req, http_response *resp);
void access_handle_me_effective(http_context *ctx, const http_request *req, http_response *resp);
void audit_handle_list(http_context *ctx, const http_request *req, http_response *resp);

#endif
