/*
 * Catalog administration over HTTP: POST /api/admin/rebuild runs the
 * orchestrator now and answers with its report (sources, views, collisions).
 */
#include "http/catalog_admin.h"

#include "engine/analytics.h"
#include "engine/orchestrator.h"

int catalog_rebuild(http_context *ctx, bool only_if_changed, json_t **report, agnes_error *err)
{
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    pthread_mutex_lock(&ctx->rebuild_lock);
    int rc = only_if_changed ? orchestrator_rebuild_if_changed(&ctx->runtime->paths, ctx->db, &allow, report, err)
                             : orchestrator_rebuild(&ctx->runtime->paths, ctx->db, &allow, report, err);
    /* Readers move to the new catalog; queries in flight keep the old one. */
    if (rc == AGNES_OK && ctx->analytics != NULL && (*report != NULL || ctx->analytics->current == NULL))
        rc = analytics_reload(ctx->analytics, &ctx->runtime->paths, err);
    pthread_mutex_unlock(&ctx->rebuild_lock);
    return rc;
}

void catalog_handle_rebuild(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *report = NULL;
    agnes_error err;
    if (catalog_rebuild(ctx, false, &report, &err) != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else
        http_respond_json(resp, 200, report);
}
