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
#include "engine/demo.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/sync.h"
#include "store/registry.h"
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

static const json_t *registry_row(const json_t *registry, const char *id)
{
    size_t i;
    json_t *row;
    json_array_foreach(registry, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "id")), id) == 0)
            return row;
    }
    return NULL;
}

static bool collided(const analytics_snapshot *snapshot, const char *id)
{
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(snapshot ? snapshot->rebuild : NULL, "collisions"), i, row) {
        if (strcmp(json_string_value(json_object_get(row, "view")), id) == 0)
            return true;
    }
    return false;
}

/* The sentence of a table whose data is gone: how to bring it back depends
 * on where the data came from (an upload exists nowhere else). */
static json_t *missing_sentence(const char *id, const json_t *registered)
{
    const char *type = json_string_value(json_object_get(registered, "source_type"));
    if (registered == NULL || (type != NULL && strcmp(type, "local") == 0)) /* uploads have no registry row */
        return json_sprintf("The data of uploaded table '%s' is missing from DATA_DIR (a state restore without its "
                            "data, or a deleted extracts/ folder), so it is not in the catalog. Re-upload the file "
                            "(the Upload page, or curl -F file=@FILE -F name=%s .../api/upload/tables), or restore "
                            "DATA_DIR from the same backup.", id, id);
    return json_sprintf("The data of table '%s' is missing from DATA_DIR, so it is not in the catalog. Run a sync "
                        "to fetch it again: POST /api/sync/trigger (the Sync now button on /admin/sync).", id);
}

int sync_status_states(http_context *ctx, const json_t *ids, json_t **out, agnes_error *err)
{
    json_t *states = NULL, *registry = NULL;
    duckdb_connection conn = NULL;
    *out = NULL;
    /* Read before the states: see rebuild_sequence in http.h. */
    unsigned sequence = atomic_load(&ctx->rebuild_sequence);
    if (system_db_connect_reader(ctx->db, &conn, err) != AGNES_OK || sync_state_list_json(conn, &states, err) != AGNES_OK ||
        registry_list_json(conn, &registry, err) != AGNES_OK)
        goto done;
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    /* A table recorded as synced that the snapshot does not hold may be on
     * its way, not missing: a rebuild records states before readers move to
     * its catalog, and a sync run records each source's tables before the
     * one rebuild at its end.  While either overlaps these reads, only a
     * state older than the snapshot (so written before it was built) can
     * be called missing; the next read decides the rest.  A run that ended
     * between the reads ended with a rebuild, so the sequence shows it: the
     * run only needs checking once.  Both times are UTC seconds as
     * "YYYY-MM-DDTHH:MM:SSZ", which compare as strings. */
    bool consistent = sequence % 2 == 0 && atomic_load(&ctx->rebuild_sequence) == sequence &&
                      !sync_runs_any_running(ctx->sync_runs);
    const char *built_at = json_string_value(json_object_get(snapshot ? snapshot->rebuild : NULL, "built_at"));
    json_t *tables = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(states, i, row) {
        const char *id = json_string_value(json_object_get(row, "table_id"));
        if (!catalog_id_visible(ids, id))
            continue;
        const char *source = source_of(snapshot, id);
        const json_t *registered = registry_row(registry, id);
        if (source == NULL && registered == NULL &&
            demo_table_state_is_stale(&ctx->runtime->paths, id, json_string_value(json_object_get(row, "last_sync"))))
            continue; /* the retired demo's, not data anyone lost */
        json_object_set_new(row, "source", source ? json_string(source) : json_null());
        json_object_set_new(row, "published", json_boolean(source != NULL));
        const char *state = json_string_value(json_object_get(row, "state"));
        const char *mode = json_string_value(json_object_get(registered, "query_mode"));
        bool remote = mode != NULL && strcmp(mode, "remote") == 0;
        const char *last_sync = json_string_value(json_object_get(row, "last_sync"));
        bool settled = consistent || (last_sync != NULL && built_at != NULL && strcmp(last_sync, built_at) < 0);
        if (settled && source == NULL && !remote && !collided(snapshot, id) && state != NULL &&
            strcmp(state, "ok") == 0 && snapshot != NULL) {
            json_object_set_new(row, "state", json_string("missing"));
            json_object_set_new(row, "error", missing_sentence(id, registered));
        }
        json_array_append(tables, row);
    }
    analytics_release(ctx->analytics, snapshot);
    *out = tables;
done:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(states);
    json_decref(registry);
    return *out ? AGNES_OK : err->code;
}

void sync_status_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *ids = NULL, *tables = NULL;
    agnes_error err;
    if (catalog_visible_ids(ctx, req->identity, &ids, &err) != AGNES_OK ||
        sync_status_states(ctx, ids, &tables, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    json_t *collisions = json_array();
    size_t i;
    json_t *row;
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
    json_decref(ids);
}
