/*
 * GET /api/sync/status (SPEC §9): per table, what the last publication
 * recorded (rows, bytes, state, error, when), and what the last catalog
 * rebuild said about sources and name collisions - so a table that is not
 * published because another source owns its name shows up here, next to
 * the tables that are.  Non-admins see the tables they may read and the
 * collisions over those names.  Sync runs join this document when the
 * sync engine lands (issue 5).
 */
#include "http/sync_status.h"

#include <string.h>

#include "engine/analytics.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/sync.h"
#include "store/sync_state.h"

/* The source of each published table, from the catalog snapshot. */
static const char *source_of(const analytics_snapshot *snapshot, const char *id)
{
    size_t i;
    json_t *table;
    json_array_foreach(snapshot ? snapshot->tables : NULL, i, table) {
        if (strcmp(json_string_value(json_object_get(table, "id")), id) == 0)
            return json_string_value(json_object_get(table, "source_type"));
    }
    return NULL;
}

void sync_status_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *ids = NULL, *states = NULL;
    duckdb_connection conn = NULL;
    agnes_error err;
    if (catalog_visible_ids(ctx, req->identity, &ids, &err) != AGNES_OK ||
        system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        sync_state_list_json(conn, &states, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    json_t *tables = json_array(), *collisions = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(states, i, row) {
        const char *id = json_string_value(json_object_get(row, "table_id"));
        if (!catalog_id_visible(ids, id))
            continue;
        const char *source = source_of(snapshot, id);
        json_object_set_new(row, "source", source ? json_string(source) : json_null());
        json_object_set_new(row, "published", json_boolean(source != NULL));
        json_array_append(tables, row);
    }
    const json_t *report = snapshot ? snapshot->rebuild : NULL;
    json_array_foreach(json_object_get(report, "collisions"), i, row) {
        if (catalog_id_visible(ids, json_string_value(json_object_get(row, "view"))))
            json_array_append(collisions, row);
    }
    json_t *built_at = json_object_get(report, "built_at");
    json_t *body = json_pack("{s:o, s:o, s:O}", "tables", tables, "collisions", collisions, "last_rebuild",
                             built_at ? built_at : json_null());
    if (ids == NULL && report != NULL) /* which sources are broken is an operator's business */
        json_object_set(body, "sources", json_object_get(report, "sources"));
    if (ids == NULL)
        json_object_set_new(body, "runs", sync_runs_recent(ctx->sync_runs, 10));
    analytics_release(ctx->analytics, snapshot);
    http_respond_json(resp, 200, body);
done:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(states);
    json_decref(ids);
}
