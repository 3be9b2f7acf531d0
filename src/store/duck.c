#include "store/duck.h"

#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

int duck_open(const char *path, bool read_only, duckdb_database *out, agnes_error *err)
{
    duckdb_config config = NULL;
    char *open_error = NULL;
    if (duckdb_create_config(&config) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a DuckDB configuration");
    if (read_only)
        duckdb_set_config(config, "access_mode", "READ_ONLY");
    /* system.duckdb never needs extensions; never let DuckDB try to download one. */
    duckdb_set_config(config, "autoinstall_known_extensions", "false");
    duckdb_set_config(config, "autoload_known_extensions", "false");
    duckdb_state state = duckdb_open_ext(path, out, config, &open_error);
    duckdb_destroy_config(&config);
    if (state != DuckDBSuccess) {
        int rc;
        if (open_error && strstr(open_error, "lock"))
            rc = agnes_error_set(err, AGNES_ERR_STATE,
                                 "cannot open %s: %s. Another agnes process is using this STATE_DIR; stop it "
                                 "first (only one server may own a state tier)",
                                 path, open_error);
        else
            rc = agnes_error_set(err, AGNES_ERR_DB, "cannot open %s: %s", path,
                                 open_error ? open_error : "unknown DuckDB error");
        duckdb_free(open_error);
        return rc;
    }
    return AGNES_OK;
}

int duck_session_open(duck_session *session, const char *path, bool read_only, agnes_error *err)
{
    session->database = NULL;
    session->connection = NULL;
    if (duck_open(path, read_only, &session->database, err))
        return err->code;
    if (duckdb_connect(session->database, &session->connection) != DuckDBSuccess) {
        duckdb_close(&session->database);
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", path);
    }
    return AGNES_OK;
}

void duck_session_close(duck_session *session)
{
    if (session->connection != NULL)
        duckdb_disconnect(&session->connection);
    if (session->database != NULL)
        duckdb_close(&session->database);
}

int duck_exec(duckdb_connection conn, const char *sql, agnes_error *err)
{
    duckdb_result result;
    if (duckdb_query(conn, sql, &result) != DuckDBSuccess) {
        agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_result_error(&result));
        duckdb_destroy_result(&result);
        return AGNES_ERR_DB;
    }
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int duck_query_int(duckdb_connection conn, const char *sql, long long *out, bool *found, agnes_error *err)
{
    duckdb_result result;
    *found = false;
    if (duckdb_query(conn, sql, &result) != DuckDBSuccess) {
        agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_result_error(&result));
        duckdb_destroy_result(&result);
        return AGNES_ERR_DB;
    }
    if (duckdb_row_count(&result) > 0 && duckdb_column_count(&result) > 0 && !duckdb_value_is_null(&result, 0, 0)) {
        *out = (long long)duckdb_value_int64(&result, 0, 0);
        *found = true;
    }
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

static int prepare_and_bind(duckdb_connection conn, const char *sql, const char *const *params, size_t count,
                            duckdb_prepared_statement *stmt, agnes_error *err)
{
    if (duckdb_prepare(conn, sql, stmt) != DuckDBSuccess) {
        agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_prepare_error(*stmt));
        duckdb_destroy_prepare(stmt);
        return AGNES_ERR_DB;
    }
    for (size_t i = 0; i < count; i++) {
        duckdb_state state = params[i] ? duckdb_bind_varchar(*stmt, i + 1, params[i]) : duckdb_bind_null(*stmt, i + 1);
        if (state != DuckDBSuccess) {
            duckdb_destroy_prepare(stmt);
            /* DuckDB refuses VARCHAR that is not UTF-8; that is the input's
             * fault, not the server's, wherever the text came from. */
            if (params[i] && !utf8_is_valid(params[i], strlen(params[i])))
                return agnes_error_set(err, AGNES_ERR_INVALID,
                                       "A text value (parameter %zu) is not valid UTF-8. Send text as UTF-8.", i + 1);
            return agnes_error_set(err, AGNES_ERR_DB, "cannot bind parameter %zu", i + 1);
        }
    }
    return AGNES_OK;
}

int duck_query_params(duckdb_connection conn, const char *sql, const char *const *params, size_t count,
                      duckdb_result *result, agnes_error *err)
{
    duckdb_prepared_statement stmt;
    if (prepare_and_bind(conn, sql, params, count, &stmt, err))
        return err->code;
    int rc = AGNES_OK;
    if (duckdb_execute_prepared(stmt, result) != DuckDBSuccess) {
        rc = agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_result_error(result));
        duckdb_destroy_result(result);
    }
    duckdb_destroy_prepare(&stmt);
    return rc;
}

int duck_exec_params(duckdb_connection conn, const char *sql, const char *const *params, size_t count,
                     agnes_error *err)
{
    duckdb_result result;
    if (duck_query_params(conn, sql, params, count, &result, err))
        return err->code;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

bool duck_result_text(duckdb_result *result, idx_t col, idx_t row, char *out, size_t out_size)
{
    out[0] = '\0';
    if (duckdb_value_is_null(result, col, row))
        return false;
    char *value = duckdb_value_varchar(result, col, row);
    if (value == NULL)
        return false;
    snprintf(out, out_size, "%s", value);
    duckdb_free(value);
    return true;
}

/* DuckDB's JSON type is VARCHAR with the alias "JSON". */
static bool column_is_json(duckdb_result *result, idx_t col)
{
    duckdb_logical_type type = duckdb_column_logical_type(result, col);
    char *alias = duckdb_logical_type_get_alias(type);
    bool is_json = alias != NULL && strcmp(alias, "JSON") == 0;
    duckdb_free(alias);
    duckdb_destroy_logical_type(&type);
    return is_json;
}

static json_t *cell_to_json(duckdb_result *result, idx_t col, idx_t row)
{
    if (duckdb_value_is_null(result, col, row))
        return json_null();
    switch (duckdb_column_type(result, col)) {
    case DUCKDB_TYPE_BOOLEAN:
        return json_boolean(duckdb_value_boolean(result, col, row));
    case DUCKDB_TYPE_TINYINT:
    case DUCKDB_TYPE_SMALLINT:
    case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_BIGINT:
    case DUCKDB_TYPE_UTINYINT:
    case DUCKDB_TYPE_USMALLINT:
    case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_HUGEINT:
        return json_integer((json_int_t)duckdb_value_int64(result, col, row));
    default:
        break;
    }
    char *text = duckdb_value_varchar(result, col, row);
    if (text == NULL)
        return json_null();
    if (column_is_json(result, col)) {
        json_t *parsed = json_loads(text, JSON_DECODE_ANY, NULL);
        duckdb_free(text);
        return parsed ? parsed : json_null();
    }
    if (duckdb_column_type(result, col) == DUCKDB_TYPE_TIMESTAMP) {
        /* "2026-11-23 03:14:38.123456" -> "2026-11-23T03:14:38Z" */
        char *fraction = strchr(text, '.');
        if (fraction)
            *fraction = '\0';
        char *space = strchr(text, ' ');
        if (space)
            *space = 'T';
        json_t *value = json_sprintf("%sZ", text);
        duckdb_free(text);
        return value;
    }
    json_t *value = json_string(text);
    duckdb_free(text);
    return value ? value : json_null();
}

int duck_query_json(duckdb_connection conn, const char *sql, const char *const *params, size_t count, json_t **rows,
                    agnes_error *err)
{
    duckdb_result result;
    *rows = NULL;
    if (duck_query_params(conn, sql, params, count, &result, err))
        return err->code;
    json_t *array = json_array();
    idx_t columns = duckdb_column_count(&result);
    for (idx_t r = 0; array && r < duckdb_row_count(&result); r++) {
        json_t *object = json_object();
        for (idx_t c = 0; object && c < columns; c++)
            json_object_set_new(object, duckdb_column_name(&result, c), cell_to_json(&result, c, r));
        if (object == NULL || json_array_append_new(array, object) != 0) {
            json_decref(array);
            array = NULL;
        }
    }
    duckdb_destroy_result(&result);
    if (array == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory building a JSON result");
    *rows = array;
    return AGNES_OK;
}

int duck_attach_read_only(duckdb_connection conn, const char *path, const char *alias, agnes_error *err)
{
    char quoted[2 * 4096 + 1], sql[2 * 4096 + 160];
    size_t q = 0;
    for (const char *p = path; *p; p++) {
        if (q + 3 >= sizeof quoted)
            return agnes_error_set(err, AGNES_ERR_INVALID, "path %s is too long to attach", path);
        if (*p == '\'')
            quoted[q++] = '\'';
        quoted[q++] = *p;
    }
    quoted[q] = '\0';
    snprintf(sql, sizeof sql, "ATTACH '%s' AS \"%s\" (READ_ONLY)", quoted, alias);
    return duck_exec(conn, sql, err);
}

void duck_append_literal(strbuf *out, const char *text)
{
    strbuf_append_char(out, '\'');
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '\'')
            strbuf_append_char(out, '\'');
        strbuf_append_char(out, *p);
    }
    strbuf_append_char(out, '\'');
}

void duck_append_identifier(strbuf *out, const char *name)
{
    strbuf_append_char(out, '"');
    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '"')
            strbuf_append_char(out, '"');
        strbuf_append_char(out, *p);
    }
    strbuf_append_char(out, '"');
}
