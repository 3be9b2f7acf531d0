#include "store/column_metadata.h"

#include <stdlib.h>
#include <string.h>

#include "store/duck.h"

int column_metadata_replace(duckdb_connection conn, const char *table_id, const char *source, const json_t *columns,
                            agnes_error *err)
{
    char *text = json_dumps(columns, JSON_COMPACT);
    if (text == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    const char *params[] = {table_id, source, text};
    int rc = duck_exec(conn, "BEGIN TRANSACTION", err);
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn, "DELETE FROM column_metadata WHERE table_id = $1 AND source = $2", params, 2, err);
    /* An admin's row for a column keeps it; the sync adds the others. */
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn,
                              "INSERT INTO column_metadata (table_id, column_name, basetype, description, confidence,"
                              " source, nullable, updated_at)"
                              " SELECT $1, c->>'name', c->>'type', c->>'description', 'source', $2,"
                              " CAST(c->>'nullable' AS BOOLEAN), current_timestamp"
                              " FROM (SELECT unnest(from_json($3::JSON, '[\"JSON\"]')) AS c)"
                              " WHERE c->>'name' IS NOT NULL"
                              " ON CONFLICT (table_id, column_name) DO NOTHING",
                              params, 3, err);
    if (rc == AGNES_OK) {
        rc = duck_exec(conn, "COMMIT", err);
    } else {
        agnes_error ignored;
        duck_exec(conn, "ROLLBACK", &ignored);
    }
    free(text);
    return rc;
}

int column_metadata_merge(duckdb_connection conn, const char *table_id, json_t *columns, agnes_error *err)
{
    json_t *rows = NULL;
    const char *params[] = {table_id};
    if (duck_query_json(conn,
                        "SELECT column_name, nullable, description FROM column_metadata WHERE table_id = $1",
                        params, 1, &rows, err) != AGNES_OK)
        return err->code;
    size_t i, j;
    json_t *column, *row;
    json_array_foreach(columns, i, column) {
        const char *name = json_string_value(json_object_get(column, "name"));
        json_array_foreach(rows, j, row) {
            if (name == NULL || strcmp(name, json_string_value(json_object_get(row, "column_name"))) != 0)
                continue;
            json_t *nullable = json_object_get(row, "nullable");
            const char *description = json_string_value(json_object_get(row, "description"));
            const char *current = json_string_value(json_object_get(column, "description"));
            if (json_is_boolean(nullable))
                json_object_set(column, "nullable", nullable);
            if (description != NULL && description[0] != '\0' && (current == NULL || current[0] == '\0'))
                json_object_set_new(column, "description", json_string(description));
        }
    }
    json_decref(rows);
    return AGNES_OK;
}
