#include "store/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/duck.h"

/* Editable columns, in the order they are bound ($2.. after the id). */
static const char *const editable[] = {"name",        "source_type",   "bucket",   "source_table",
                                       "source_query", "sync_strategy", "query_mode", "sync_schedule",
                                       "profile_after_sync", "primary_key", "folder",  "description",
                                       "incremental_window_days", "where_filters", "partition_by",
                                       "partition_granularity", "initial_load_chunk_days"};
#define EDITABLE_COUNT (sizeof editable / sizeof editable[0])

/* primary_key is read with TRY_CAST: versions before 2026.05 cut a long
 * key at 1,023 bytes when storing it, and one such row must not make the
 * registry unreadable (it reads as null and can be fixed or deleted). */
static const char select_columns[] =
    "SELECT id, name, source_type, bucket, source_table, source_query, sync_strategy, query_mode, sync_schedule,"
    " profile_after_sync, TRY_CAST(primary_key AS JSON) AS primary_key, folder, description, registered_by,"
    " registered_at, incremental_window_days, CAST(where_filters AS JSON) AS where_filters, partition_by,"
    " partition_granularity, initial_load_chunk_days FROM table_registry";

/* The row's value for a column as bound text: NULL for absent/null, the
 * string itself, or (*owned, caller frees) the JSON text of anything else,
 * whole: a value is stored as sent or not at all (a where_filters list can
 * be long: no fixed buffer truncates it). */
static const char *text_of(const json_t *row, const char *key, char **owned)
{
    const json_t *value = json_object_get(row, key);
    *owned = NULL;
    if (value == NULL || json_is_null(value))
        return NULL;
    if (json_is_string(value))
        return json_string_value(value);
    if (json_is_boolean(value))
        return json_is_true(value) ? "true" : "false";
    return *owned = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int bind_and_run(duckdb_connection conn, const char *sql, const char *id, const json_t *row,
                        const char *registered_by, agnes_error *err)
{
    const char *params[EDITABLE_COUNT + 2];
    char *owned[EDITABLE_COUNT];
    int rc = AGNES_OK;
    params[0] = id;
    for (size_t i = 0; i < EDITABLE_COUNT; i++) {
        params[i + 1] = text_of(row, editable[i], &owned[i]);
        if (params[i + 1] == NULL && json_object_get(row, editable[i]) != NULL &&
            !json_is_null(json_object_get(row, editable[i])))
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    params[EDITABLE_COUNT + 1] = registered_by;
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn, sql, params, registered_by ? EDITABLE_COUNT + 2 : EDITABLE_COUNT + 1, err);
    for (size_t i = 0; i < EDITABLE_COUNT; i++)
        free(owned[i]);
    return rc;
}

int registry_insert(duckdb_connection conn, const json_t *row, agnes_error *err)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    json_t *existing = NULL;
    if (registry_get_json(conn, id, &existing, err) == AGNES_OK) {
        json_decref(existing);
        return agnes_error_set(err, AGNES_ERR_INVALID, "Table '%s' already registered", id);
    }
    if (err->code != AGNES_ERR_NOT_FOUND)
        return err->code;
    return bind_and_run(conn,
                        "INSERT INTO table_registry (id, name, source_type, bucket, source_table, source_query,"
                        " sync_strategy, query_mode, sync_schedule, profile_after_sync, primary_key, folder,"
                        " description, incremental_window_days, where_filters, partition_by, partition_granularity,"
                        " initial_load_chunk_days, registered_by) VALUES ($1, $2, $3, $4, $5, $6,"
                        " coalesce($7, 'full_refresh'), $8, $9, coalesce(CAST($10 AS BOOLEAN), true), $11, $12, $13,"
                        " CAST($14 AS INTEGER), $15, $16, $17, CAST($18 AS INTEGER), $19)",
                        id, row, json_string_value(json_object_get(row, "registered_by")), err);
}

int registry_update(duckdb_connection conn, const char *id, const json_t *row, agnes_error *err)
{
    json_t *existing = NULL;
    if (registry_get_json(conn, id, &existing, err) != AGNES_OK)
        return err->code;
    json_decref(existing);
    return bind_and_run(conn,
                        "UPDATE table_registry SET name = $2, source_type = $3, bucket = $4, source_table = $5,"
                        " source_query = $6, sync_strategy = coalesce($7, 'full_refresh'), query_mode = $8,"
                        " sync_schedule = $9, profile_after_sync = coalesce(CAST($10 AS BOOLEAN), true),"
                        " primary_key = $11, folder = $12, description = $13,"
                        " incremental_window_days = CAST($14 AS INTEGER), where_filters = $15, partition_by = $16,"
                        " partition_granularity = $17, initial_load_chunk_days = CAST($18 AS INTEGER) WHERE id = $1",
                        id, row, NULL, err);
}

int registry_get_json(duckdb_connection conn, const char *id, json_t **row, agnes_error *err)
{
    char sql[sizeof select_columns + 32];
    snprintf(sql, sizeof sql, "%s WHERE id = $1", select_columns);
    const char *params[] = {id};
    json_t *rows = NULL;
    *row = NULL;
    if (duck_query_json(conn, sql, params, 1, &rows, err) != AGNES_OK)
        return err->code;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "Table not found");
    }
    *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return AGNES_OK;
}

int registry_list_json(duckdb_connection conn, json_t **rows, agnes_error *err)
{
    char sql[sizeof select_columns + 400];
    snprintf(sql, sizeof sql,
             "SELECT r.*, CASE WHEN s.status = 'ok' THEN NULL ELSE s.error END AS last_sync_error,"
             " (SELECT max(h.synced_at) FROM sync_history h WHERE h.table_id = r.id) AS last_sync_attempt"
             " FROM (%s) r LEFT JOIN sync_state s ON s.table_id = r.id ORDER BY r.name, r.id",
             select_columns);
    return duck_query_json(conn, sql, NULL, 0, rows, err);
}

int registry_delete(duckdb_connection conn, const char *id, agnes_error *err)
{
    json_t *existing = NULL;
    if (registry_get_json(conn, id, &existing, err) != AGNES_OK)
        return err->code;
    json_decref(existing);
    const char *params[] = {id};
    if (duck_exec(conn, "BEGIN TRANSACTION", err))
        return err->code;
    int rc = duck_exec_params(conn, "DELETE FROM table_registry WHERE id = $1", params, 1, err);
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn, "DELETE FROM sync_state WHERE table_id = $1", params, 1, err);
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn, "DELETE FROM sync_history WHERE table_id = $1", params, 1, err);
    if (rc == AGNES_OK)
        return duck_exec(conn, "COMMIT", err);
    agnes_error ignored;
    duck_exec(conn, "ROLLBACK", &ignored);
    return rc;
}
