/*
 * GET /api/catalog/tables (SPEC §8): the tables the caller may see.  The
 * list comes from the catalog's own description (agnes.tables, written by
 * the orchestrator together with the views), filtered by the caller's table
 * grants; admins see everything.
 */
#include "http/catalog.h"

#include <string.h>

#include "engine/analytics.h"
#include "http/auth.h"
#include "store/duck.h"
#include "store/groups.h"

int catalog_visible_ids(http_context *ctx, const auth_identity *who, json_t **ids, agnes_error *err)
{
    *ids = NULL;
    if (who->is_admin)
        return AGNES_OK;
    duckdb_connection conn = NULL;
    if (system_db_connect_reader(ctx->db, &conn, err))
        return err->code;
    int rc = grants_table_ids_json(conn, who->user_id, ids, err);
    duckdb_disconnect(&conn);
    return rc;
}

static bool contains(json_t *ids, const char *id)
{
    size_t i;
    json_t *value;
    json_array_foreach(ids, i, value) {
        if (strcmp(json_string_value(value), id) == 0)
            return true;
    }
    return false;
}

/* Every table of the current catalog (new reference; empty before the first build). */
static json_t *all_tables(http_context *ctx)
{
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    json_t *tables = snapshot ? json_deep_copy(snapshot->tables) : json_array();
    analytics_release(ctx->analytics, snapshot);
    return tables;
}

void catalog_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *tables = all_tables(ctx), *ids = NULL, *visible = json_array();
    agnes_error err;
    if (tables == NULL || visible == NULL) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory");
        http_respond_internal(resp, req, &err);
        goto done;
    }
    if (catalog_visible_ids(ctx, req->identity, &ids, &err)) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table) {
        if (ids == NULL || contains(ids, json_string_value(json_object_get(table, "id"))))
            json_array_append(visible, table);
    }
    http_respond_json(resp, 200, json_pack("{s:O, s:I}", "tables", visible, "count", (json_int_t)json_array_size(visible)));
done:
    json_decref(visible);
    json_decref(tables);
    json_decref(ids);
}
