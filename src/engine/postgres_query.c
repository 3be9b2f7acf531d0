#include "engine/postgres_query.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/contract.h"
#include "engine/postgres_types.h"

#define DSN_MAX 4096

typedef struct function_context { /* extra info: one per registration */
    credentials *store;
    int statement_timeout_seconds;
    char token_envs[CONTRACT_ALLOWLIST_MAX];
    json_t *allowed; /* [[dsn_env, sql], ...] the only calls that bind, or NULL for any */
} function_context;

static void free_context(void *data)
{
    function_context *context = data;
    json_decref(context->allowed);
    free(context);
}

/* Is (dsn_env, sql) one of the calls this registration may run? */
static bool call_allowed(const function_context *context, const char *dsn_env, const char *sql)
{
    if (context->allowed == NULL)
        return true;
    size_t i;
    json_t *pair;
    json_array_foreach(context->allowed, i, pair) {
        const char *env = json_string_value(json_array_get(pair, 0)), *text = json_string_value(json_array_get(pair, 1));
        if (env != NULL && text != NULL && strcmp(env, dsn_env) == 0 && strcmp(text, sql) == 0)
            return true;
    }
    return false;
}

typedef struct bind_data {
    char dsn[DSN_MAX];
    char *sql;
    idx_t columns;
} bind_data;

typedef struct scan_state {
    PGconn *conn;
    bool done;
} scan_state;

static void free_bind_data(void *data)
{
    bind_data *bind = data;
    explicit_bzero(bind->dsn, sizeof bind->dsn);
    free(bind->sql);
    free(bind);
}

static void free_scan_state(void *data)
{
    scan_state *scan = data;
    if (scan->conn != NULL) {
        PGcancel *cancel = scan->done ? NULL : PQgetCancel(scan->conn); /* stop a query DuckDB no longer reads */
        char ignored[256];
        if (cancel != NULL) {
            PQcancel(cancel, ignored, sizeof ignored);
            PQfreeCancel(cancel);
        }
        PQfinish(scan->conn);
    }
    free(scan);
}

static char *string_parameter(duckdb_bind_info info, idx_t index)
{
    duckdb_value value = duckdb_bind_get_parameter(info, index);
    char *text = value && !duckdb_is_null_value(value) ? duckdb_get_varchar(value) : NULL;
    duckdb_destroy_value(&value);
    return text;
}

/* Result columns from the `columns` parameter; false when it is absent. */
static bool declared_columns(duckdb_bind_info info, idx_t *count)
{
    duckdb_value list = duckdb_bind_get_named_parameter(info, "columns");
    if (list == NULL)
        return false;
    bool present = !duckdb_is_null_value(list);
    duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    *count = present ? duckdb_get_list_size(list) : 0;
    for (idx_t i = 0; i < *count; i++) {
        duckdb_value child = duckdb_get_list_child(list, i);
        char *name = duckdb_get_varchar(child);
        duckdb_bind_add_result_column(info, name ? name : "?", varchar);
        duckdb_free(name);
        duckdb_destroy_value(&child);
    }
    duckdb_destroy_logical_type(&varchar);
    duckdb_destroy_value(&list);
    return present;
}

/* Result columns from PostgreSQL's description of the query. */
static int described_columns(duckdb_bind_info info, const function_context *context, bind_data *bind,
                             agnes_error *err)
{
    PGconn *conn = NULL;
    postgres_column *columns = NULL;
    size_t count = 0;
    if (postgres_connect(bind->dsn, context->statement_timeout_seconds, &conn, err) ||
        postgres_describe(conn, bind->sql, &columns, &count, err)) {
        PQfinish(conn);
        return err->code;
    }
    duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    for (size_t i = 0; i < count; i++)
        duckdb_bind_add_result_column(info, columns[i].name, varchar);
    duckdb_destroy_logical_type(&varchar);
    bind->columns = count;
    free(columns);
    PQfinish(conn);
    return AGNES_OK;
}

static void function_bind(duckdb_bind_info info)
{
    function_context *context = duckdb_bind_get_extra_info(info);
    bind_data *bind = calloc(1, sizeof *bind);
    char *dsn_env = string_parameter(info, 0);
    char message[AGNES_ERROR_MESSAGE_MAX + 100] = "";
    agnes_error err;
    if (bind == NULL) {
        snprintf(message, sizeof message, "out of memory");
        goto done;
    }
    char *sql = string_parameter(info, 1);
    bind->sql = sql ? strdup(sql) : NULL;
    duckdb_free(sql);
    if (dsn_env == NULL || bind->sql == NULL) {
        snprintf(message, sizeof message, "postgres_query(dsn_env, sql) needs both arguments");
    } else if (!call_allowed(context, dsn_env, bind->sql)) {
        /* A sandboxed engine runs only the statements of the remote tables it
         * serves: without this, an analyst could ask the source anything. */
        snprintf(message, sizeof message,
                 "postgres_query is not available in queries: query the remote tables by their names (GET "
                 "/api/catalog/tables lists yours)");
    } else if (!contract_allowlist_contains(context->token_envs, dsn_env)) {
        snprintf(message, sizeof message,
                 "postgres_query: '%s' is not an allowed connection variable (AGNES_REMOTE_ATTACH_TOKEN_ENVS)", dsn_env);
    } else if (declared_columns(info, &bind->columns)) {
        if (context->store != NULL)
            credentials_get(context->store, dsn_env, bind->dsn, sizeof bind->dsn);
    } else if (context->store == NULL || !credentials_get(context->store, dsn_env, bind->dsn, sizeof bind->dsn)) {
        snprintf(message, sizeof message, "postgres_query: the variable %s is not set; configure the source with "
                                          "POST /api/admin/configure", dsn_env);
    } else if (described_columns(info, context, bind, &err) != AGNES_OK) {
        snprintf(message, sizeof message, "postgres_query: %s", err.message);
    }
done:
    duckdb_free(dsn_env);
    if (message[0] != '\0') {
        if (bind != NULL)
            free_bind_data(bind);
        duckdb_bind_set_error(info, message);
        return;
    }
    duckdb_bind_set_bind_data(info, bind, free_bind_data);
}

static void function_init(duckdb_init_info info)
{
    function_context *context = duckdb_init_get_extra_info(info);
    bind_data *bind = duckdb_init_get_bind_data(info);
    scan_state *scan = calloc(1, sizeof *scan);
    agnes_error err;
    char message[AGNES_ERROR_MESSAGE_MAX + 200];
    if (scan == NULL) {
        duckdb_init_set_error(info, "out of memory");
        return;
    }
    duckdb_init_set_init_data(info, scan, free_scan_state);
    if (context->store == NULL || bind->dsn[0] == '\0') {
        duckdb_init_set_error(info, "postgres_query: the source's connection string is not set; configure the "
                                    "source with POST /api/admin/configure");
        return;
    }
    if (postgres_connect(bind->dsn, context->statement_timeout_seconds, &scan->conn, &err) != AGNES_OK) {
        snprintf(message, sizeof message, "remote PostgreSQL table: %s", err.message);
        duckdb_init_set_error(info, message);
        return;
    }
    if (!PQsendQuery(scan->conn, bind->sql) || !PQsetSingleRowMode(scan->conn)) {
        snprintf(message, sizeof message, "remote PostgreSQL table: %s", PQerrorMessage(scan->conn));
        duckdb_init_set_error(info, message);
    }
}

/* Copy one single-row result into row `row` of output. */
static bool copy_row(PGresult *res, duckdb_data_chunk output, idx_t row, idx_t columns, duckdb_function_info info)
{
    if ((idx_t)PQnfields(res) != columns) {
        char message[300];
        snprintf(message, sizeof message,
                 "remote PostgreSQL table: the query now returns %d columns, the view expects %llu; sync the table "
                 "again to pick up the new shape",
                 PQnfields(res), (unsigned long long)columns);
        duckdb_function_set_error(info, message);
        return false;
    }
    for (idx_t c = 0; c < columns; c++) {
        duckdb_vector vector = duckdb_data_chunk_get_vector(output, c);
        if (PQgetisnull(res, 0, (int)c)) {
            duckdb_vector_ensure_validity_writable(vector);
            duckdb_validity_set_row_invalid(duckdb_vector_get_validity(vector), row);
        } else {
            duckdb_vector_assign_string_element_len(vector, row, PQgetvalue(res, 0, (int)c),
                                                    (idx_t)PQgetlength(res, 0, (int)c));
        }
    }
    return true;
}

static void function_scan(duckdb_function_info info, duckdb_data_chunk output)
{
    bind_data *bind = duckdb_function_get_bind_data(info);
    scan_state *scan = duckdb_function_get_init_data(info);
    idx_t row = 0, capacity = duckdb_vector_size();
    while (!scan->done && row < capacity) {
        PGresult *res = PQgetResult(scan->conn);
        if (res == NULL) {
            scan->done = true;
            break;
        }
        ExecStatusType status = PQresultStatus(res);
        if (status == PGRES_SINGLE_TUPLE) {
            if (!copy_row(res, output, row, bind->columns, info))
                scan->done = true;
            row++;
        } else if (status != PGRES_TUPLES_OK) {
            char message[AGNES_ERROR_MESSAGE_MAX];
            snprintf(message, sizeof message, "remote PostgreSQL table: %s", PQresultErrorMessage(res));
            duckdb_function_set_error(info, message);
            scan->done = true;
        }
        PQclear(res);
    }
    duckdb_data_chunk_set_size(output, row);
}

int postgres_query_register(duckdb_connection conn, credentials *store, int statement_timeout_seconds,
                            const char *token_envs, agnes_error *err)
{
    return postgres_query_register_restricted(conn, store, statement_timeout_seconds, token_envs, NULL, err);
}

int postgres_query_register_restricted(duckdb_connection conn, credentials *store, int statement_timeout_seconds,
                                       const char *token_envs, const json_t *allowed, agnes_error *err)
{
    function_context *context = calloc(1, sizeof *context);
    if (context == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (allowed != NULL && (context->allowed = json_deep_copy(allowed)) == NULL) {
        free(context);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    context->store = store;
    context->statement_timeout_seconds = statement_timeout_seconds;
    snprintf(context->token_envs, sizeof context->token_envs, "%s", token_envs);
    duckdb_table_function function = duckdb_create_table_function();
    duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    duckdb_logical_type list = duckdb_create_list_type(varchar);
    duckdb_table_function_set_name(function, "postgres_query");
    duckdb_table_function_add_parameter(function, varchar);
    duckdb_table_function_add_parameter(function, varchar);
    duckdb_table_function_add_named_parameter(function, "columns", list);
    duckdb_table_function_set_extra_info(function, context, free_context);
    duckdb_table_function_set_bind(function, function_bind);
    duckdb_table_function_set_init(function, function_init);
    duckdb_table_function_set_function(function, function_scan);
    int rc = duckdb_register_table_function(conn, function) == DuckDBSuccess
                 ? AGNES_OK
                 : agnes_error_set(err, AGNES_ERR_DB, "cannot register postgres_query");
    duckdb_destroy_table_function(&function);
    duckdb_destroy_logical_type(&list);
    duckdb_destroy_logical_type(&varchar);
    return rc;
}
