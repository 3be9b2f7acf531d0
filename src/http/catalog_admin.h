/* catalog_admin.h - POST /api/admin/rebuild, DELETE /api/admin/demo (see catalog_admin.c). */
#ifndef AGNES_HTTP_CATALOG_ADMIN_H
#define AGNES_HTTP_CATALOG_ADMIN_H

#include "http/http.h"

/* Rebuild the catalog under ctx->rebuild_lock; *report as orchestrator_rebuild.
 * only_if_changed skips the work (report NULL) when no extract changed. */
int catalog_rebuild(http_context *ctx, bool only_if_changed, json_t **report, agnes_error *err);

void catalog_handle_rebuild(http_context *ctx, const http_request *req, http_response *resp);

/* DELETE /api/admin/demo: remove the demo source for good (engine/demo.h);
 * 200 {removed, tables, message}, 404 when there is none. */
void catalog_handle_remove_demo(http_context *ctx, const http_request *req, http_response *resp);

#endif
