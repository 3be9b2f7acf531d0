/*
 * GET /api/catalog/tables[/{id}[/sample]] (SPEC §8): the tables the caller
 * may see.  The list comes from the catalog's own description
 * (agnes.tables, written by the orchestrator together with the views and
 * read once per snapshot), filtered by the caller's table grants; admins
 * see everything.
 */
#include "http/catalog.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "engine/analytics.h"
#include "engine/contract.h"
#include "http/auth.h"
#include "store/column_metadata.h"
#include "http/query.h"
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

bool catalog_id_visible(const json_t *ids, const char *id)
{
    if (ids == NULL)
        return true; /* admins */
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
        if (catalog_id_visible(ids, json_string_value(json_object_get(table, "id"))))
            json_array_append(visible, table);
    }
    http_respond_json(resp, 200, json_pack("{s:O, s:I}", "tables", visible, "count", (json_int_t)json_array_size(visible)));
done:
    json_decref(visible);
    json_decref(tables);
    json_decref(ids);
}

#define SAMPLE_DEFAULT_ROWS 10
#define SAMPLE_MAX_ROWS 100

/* The catalog entry of {id} when the caller may read it (new reference);
 * otherwise NULL with resp holding the 404.  A table the caller may not read
 * gets exactly the answer of a table that does not exist - same status, same
 * sentence, same work done (the grants are read either way) - so the answer
 * is no oracle for which names exist. */
json_t *catalog_readable_table(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    json_t *tables = all_tables(ctx), *ids = NULL, *found = NULL;
    agnes_error err;
    char detail[512];
    /* Table ids are identifiers (the contract's rule): anything else names
     * no table (so the answer says nothing about any), and is not echoed. */
    if (!contract_is_identifier(id)) {
        http_respond_error(resp, 404,
                           "Table not found: table ids are letters, digits and _. GET /api/catalog/tables lists the "
                           "tables you can read.",
                           NULL);
        json_decref(tables);
        return NULL;
    }
    if (catalog_visible_ids(ctx, req->identity, &ids, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        json_decref(tables);
        return NULL;
    }
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table) {
        const char *name = json_string_value(json_object_get(table, "id"));
        if (found == NULL && name != NULL && strcmp(name, id) == 0 && catalog_id_visible(ids, name))
            found = json_incref(table);
    }
    if (found == NULL) {
        snprintf(detail, sizeof detail,
                 "Table '%s' not found, or you may not read it. GET /api/catalog/tables lists the tables you can "
                 "read; an admin can grant one of your groups access to another.",
                 id);
        http_respond_error(resp, 404, detail, NULL);
    }
    json_decref(ids);
    json_decref(tables);
    return found;
}

/* [{name, type, nullable, description}] of a catalog view. */
static int table_columns(http_context *ctx, const char *id, json_t **columns, agnes_error *err)
{
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    duckdb_connection conn = NULL;
    int rc;
    const char *params[] = {id};
    *columns = NULL;
    if (snapshot == NULL)
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "no catalog");
    if (duckdb_connect(snapshot->database, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the catalog");
    else
        rc = duck_query_json(conn,
                             "SELECT column_name AS name, data_type AS type, is_nullable AS nullable,"
                             " coalesce(comment, '') AS description FROM duckdb_columns()"
                             " WHERE database_name = current_database() AND schema_name = 'main' AND table_name = $1"
                             " ORDER BY column_index",
                             params, 1, columns, err);
    if (conn)
        duckdb_disconnect(&conn);
    analytics_release(ctx->analytics, snapshot);
    /* A view's columns are always nullable and bare: what the source says (NOT NULL, comments) is in
     * column_metadata, kept current by every sync. */
    duckdb_connection reader = NULL;
    if (rc == AGNES_OK && (rc = system_db_connect_reader(ctx->db, &reader, err)) == AGNES_OK)
        rc = column_metadata_merge(reader, id, *columns, err);
    if (reader)
        duckdb_disconnect(&reader);
    return rc;
}

void catalog_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *table = catalog_readable_table(ctx, req, resp), *columns = NULL;
    agnes_error err;
    if (table == NULL)
        return;
    if (table_columns(ctx, http_request_param(req, "id"), &columns, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
    } else {
        json_object_set_new(table, "columns", columns);
        json_object_set_new(table, "column_count", json_integer((json_int_t)json_array_size(columns)));
        http_respond_json(resp, 200, json_incref(table));
    }
    json_decref(table);
}

void catalog_handle_sample(http_context *ctx, const http_request *req, http_response *resp)
{
    long long rows = SAMPLE_DEFAULT_ROWS;
    const char *n = http_request_query(req, "n");
    if (n != NULL && (!util_parse_long(n, &rows) || rows < 1 || rows > SAMPLE_MAX_ROWS)) {
        http_respond_error(resp, 422, "Query parameter n must be a whole number from 1 to 100.", NULL);
        return;
    }
    json_t *table = catalog_readable_table(ctx, req, resp);
    if (table == NULL)
        return;
    /* The id is a catalog view name (an identifier by the contract), so quoting it is enough. */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", json_string_value(json_object_get(table, "id")));
    json_decref(table);
    query_respond(ctx, req, resp, sql, rows, QUERY_FORMAT_JSON, true);
}
