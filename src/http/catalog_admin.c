/*
 * Catalog administration over HTTP: POST /api/admin/rebuild runs the
 * orchestrator now and answers with its report (sources, views, collisions);
 * DELETE /api/admin/demo removes the demo source `make run` seeds.
 */
#include "http/catalog_admin.h"

#include "engine/analytics.h"
#include "engine/demo.h"
#include "engine/orchestrator.h"
#include "http/auth.h"
#include "store/users.h"

int catalog_rebuild(http_context *ctx, bool only_if_changed, json_t **report, agnes_error *err)
{
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    pthread_mutex_lock(&ctx->rebuild_lock);
    atomic_fetch_add(&ctx->rebuild_sequence, 1);
    int rc = only_if_changed ? orchestrator_rebuild_if_changed(&ctx->runtime->paths, ctx->db, &allow, report, err)
                             : orchestrator_rebuild(&ctx->runtime->paths, ctx->db, &allow, report, err);
    /* Readers move to the new catalog; queries in flight keep the old one. */
    if (rc == AGNES_OK && ctx->analytics != NULL && (*report != NULL || ctx->analytics->current == NULL))
        rc = analytics_reload(ctx->analytics, &ctx->runtime->paths, err);
    atomic_fetch_add(&ctx->rebuild_sequence, 1);
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

void catalog_handle_remove_demo(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *tables = NULL, *report = NULL;
    agnes_error err;
    pthread_mutex_lock(&ctx->rebuild_lock); /* no rebuild reads the demo while it goes */
    int rc = demo_retire(&ctx->runtime->paths, ctx->db, &tables, &err);
    pthread_mutex_unlock(&ctx->rebuild_lock);
    if (rc == AGNES_ERR_NOT_FOUND) {
        http_respond_error(resp, 404, err.message, "GET /api/catalog/tables lists what is published.");
        goto done;
    }
    if (rc != AGNES_OK || catalog_rebuild(ctx, false, &report, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    duckdb_connection writer = system_db_writer_acquire(ctx->db);
    audit_log_write(writer, req->identity->user_id, "demo.remove", "demo", NULL, "ok");
    system_db_writer_release(ctx->db);
    http_respond_json(resp, 200,
                      json_pack("{s:b, s:O, s:s}", "removed", 1, "tables", tables, "message",
                                "The demo source is gone and will not be seeded again; its table names are free for "
                                "your sources."));
done:
    json_decref(tables);
    json_decref(report);
}
