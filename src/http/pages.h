/*
 * pages.h - the web pages and GET /assets/{name} (see pages.c).  Which
 * page a route shows is its handler; who may see it is its route's access
 * level, like every endpoint's.
 */
#ifndef AGNES_HTTP_PAGES_H
#define AGNES_HTTP_PAGES_H

#include "http/http.h"

void pages_handle_asset(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_root(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_setup(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_login(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_dashboard(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_catalog(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_catalog_table(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_query(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_tokens(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_sources(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_tables(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_sync(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_users(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_user(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_access(http_context *ctx, const http_request *req, http_response *resp);
void pages_handle_admin_audit(http_context *ctx, const http_request *req, http_response *resp);

/* For the access gate, on page routes: a signed-out browser goes to
 * /login?next=<this path>; a signed-in one without the right gets the
 * "not for you" page with 403. */
void pages_redirect_to_login(const http_request *req, http_response *resp);
void pages_respond_forbidden(const http_request *req, http_response *resp);

#endif
