#include "store/sync_state.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/duck.h"

int view_ownership_owner(duckdb_connection conn, const char *view_name, char *owner, size_t owner_size,
                         agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {view_name};
    owner[0] = '\0';
    if (duck_query_params(conn, "SELECT source_name FROM view_ownership WHERE lower(view_name) = lower($1)", params, 1, &result,
                          err))
        return err->code;
    if (duckdb_row_count(&result) > 0)
        duck_result_text(&result, 0, 0, owner, owner_size);
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int view_ownership_claim(duckdb_connection conn, const char *view_name, const char *source, agnes_error *err)
{
    const char *params[] = {view_name, source};
    return duck_exec_params(conn,
                            "INSERT INTO view_ownership (view_name, source_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            params, 2, err);
}

int view_ownership_reconcile(duckdb_connection conn, const char *published_json, agnes_error *err)
{
    const char *params[] = {published_json};
    return duck_exec_params(conn,
                            "DELETE FROM view_ownership WHERE (view_name, source_name) NOT IN ("
                            " SELECT (p->>'view', p->>'source') FROM (SELECT unnest(from_json($1::JSON, '[\"JSON\"]')) AS p))",
                            params, 1, err);
}

int sync_state_record(duckdb_connection conn, const char *table_id, long long rows, long long size_bytes,
                      const char *hash, const char *status, const char *error, agnes_error *err)
{
    char rows_text[24], size_text[24], id[37];
    snprintf(rows_text, sizeof rows_text, "%lld", rows);
    snprintf(size_text, sizeof size_text, "%lld", size_bytes);
    util_uuid4(id);
    const char *state[] = {table_id, rows_text, size_text, hash, status, error};
    const char *history[] = {id, table_id, rows_text, status, error};
    /* A rebuild republishes every table; only new data is news.  An
     * unchanged table keeps its state - including a failed last sync,
     * which must not be papered over by republishing the old data. */
    const char *lookup[] = {table_id, hash};
    long long same = 0;
    duckdb_result result;
    if (duck_query_params(conn, "SELECT count(*) FROM sync_state WHERE table_id = $1 AND hash = $2", lookup, 2,
                          &result, err) != AGNES_OK)
        return err->code;
    same = duckdb_value_int64(&result, 0, 0);
    duckdb_destroy_result(&result);
    if (same > 0 && hash[0] != '\0')
        return AGNES_OK;
    if (duck_exec_params(conn,
                         "INSERT INTO sync_state (table_id, last_sync, rows, file_size_bytes, hash, status, error)"
                         " VALUES ($1, current_timestamp, CAST($2 AS BIGINT), CAST($3 AS BIGINT), $4, $5, $6)"
                         " ON CONFLICT (table_id) DO UPDATE SET last_sync = excluded.last_sync, rows = excluded.rows,"
                         " file_size_bytes = excluded.file_size_bytes, hash = excluded.hash,"
                         " status = excluded.status, error = excluded.error",
                         state, 6, err))
        return err->code;
    return duck_exec_params(conn,
                            "INSERT INTO sync_history (id, table_id, synced_at, rows, status, error)"
                            " VALUES ($1, $2, current_timestamp, CAST($3 AS BIGINT), $4, $5)",
                            history, 5, err);
}

int sync_state_list_json(duckdb_connection conn, json_t **rows, agnes_error *err)
{
    return duck_query_json(conn,
                           "SELECT table_id, last_sync, rows, file_size_bytes AS size_bytes, status AS state, error"
                           " FROM sync_state ORDER BY table_id",
                           NULL, 0, rows, err);
}

int sync_state_record_failure(duckdb_connection conn, const char *table_id, const char *error, agnes_error *err)
{
    char id[37];
    util_uuid4(id);
    const char *state[] = {table_id, error};
    const char *history[] = {id, table_id, error};
    if (duck_exec_params(conn,
                         "INSERT INTO sync_state (table_id, status, error) VALUES ($1, 'error', $2)"
                         " ON CONFLICT (table_id) DO UPDATE SET status = 'error', error = excluded.error",
                         state, 2, err))
        return err->code;
    return duck_exec_params(conn,
                            "INSERT INTO sync_history (id, table_id, synced_at, status, error)"
                            " VALUES ($1, $2, current_timestamp, 'error', $3)",
                            history, 3, err);
}

int sync_state_record_success(duckdb_connection conn, const char *table_id, long long rows, long long size_bytes,
                              agnes_error *err)
{
    char rows_text[24], size_text[24], id[37];
    snprintf(rows_text, sizeof rows_text, "%lld", rows);
    snprintf(size_text, sizeof size_text, "%lld", size_bytes);
    util_uuid4(id);
    const char *state[] = {table_id, rows_text, size_text};
    const char *history[] = {id, table_id, rows_text};
    if (duck_exec_params(conn,
                         "INSERT INTO sync_state (table_id, last_sync, rows, file_size_bytes, status, error)"
                         " VALUES ($1, current_timestamp, nullif(CAST($2 AS BIGINT), -1),"
                         " nullif(CAST($3 AS BIGINT), -1), 'ok', NULL)"
                         " ON CONFLICT (table_id) DO UPDATE SET last_sync = excluded.last_sync,"
                         " rows = coalesce(excluded.rows, sync_state.rows),"
                         " file_size_bytes = coalesce(excluded.file_size_bytes, sync_state.file_size_bytes),"
                         " status = 'ok', error = NULL",
                         state, 3, err))
        return err->code;
    return duck_exec_params(conn,
                            "INSERT INTO sync_history (id, table_id, synced_at, rows, status)"
                            " VALUES ($1, $2, current_timestamp, nullif(CAST($3 AS BIGINT), -1), 'ok')",
                            history, 3, err);
}

int sync_state_schedule_facts_json(duckdb_connection conn, json_t **rows, agnes_error *err)
{
    /* 'running' rows are start markers of runs in progress, not attempts. */
    return duck_query_json(conn,
                           "WITH h AS (SELECT table_id, synced_at, status FROM sync_history WHERE status <> 'running'),"
                           " t AS (SELECT table_id FROM sync_state UNION SELECT table_id FROM h)"
                           " SELECT t.table_id, epoch(s.last_sync)::BIGINT AS last_success,"
                           " (SELECT epoch(max(h.synced_at))::BIGINT FROM h WHERE h.table_id = t.table_id)"
                           "  AS last_attempt,"
                           " (SELECT count(*) FROM h WHERE h.table_id = t.table_id AND h.status = 'error'"
                           "  AND (s.last_sync IS NULL OR h.synced_at > s.last_sync)) AS failures"
                           " FROM t LEFT JOIN sync_state s ON s.table_id = t.table_id ORDER BY t.table_id",
                           NULL, 0, rows, err);
}

int sync_state_run_started(duckdb_connection conn, const char *table_id, const char *run_id, agnes_error *err)
{
    char id[37];
    util_uuid4(id);
    const char *params[] = {id, table_id, run_id};
    return duck_exec_params(conn,
                            "INSERT INTO sync_history (id, table_id, synced_at, status, error)"
                            " VALUES ($1, $2, current_timestamp, 'running', $3)",
                            params, 3, err);
}

int sync_state_run_finished(duckdb_connection conn, const char *run_id, agnes_error *err)
{
    const char *params[] = {run_id};
    return duck_exec_params(conn, "DELETE FROM sync_history WHERE status = 'running' AND error = $1", params, 1, err);
}

int sync_state_fail_interrupted(duckdb_connection conn, long long *count, agnes_error *err)
{
    json_t *rows = NULL;
    *count = 0;
    if (duck_query_json(conn, "SELECT DISTINCT table_id, error AS run_id FROM sync_history WHERE status = 'running'",
                        NULL, 0, &rows, err) != AGNES_OK)
        return err->code;
    size_t i;
    json_t *row;
    int rc = AGNES_OK;
    json_array_foreach(rows, i, row) {
        char message[200];
        snprintf(message, sizeof message,
                 "sync run %s was interrupted: the server stopped before it finished; the table keeps its last good "
                 "data (trigger it again)",
                 json_string_value(json_object_get(row, "run_id")));
        if ((rc = sync_state_record_failure(conn, json_string_value(json_object_get(row, "table_id")), message, err)))
            break;
        (*count)++;
    }
    json_decref(rows);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "DELETE FROM sync_history WHERE status = 'running'", err);
    return rc;
}
