/*
 * `agnes catalog [TABLE]` and `agnes query "SQL" [--local]` - look and ask.
 *
 * query runs on the server (POST /api/query) or, with --local, on the
 * workspace's agnes.duckdb; both answers go through the same value mapping
 * (engine/result_format.h), so the two print the same thing for the same
 * data.  --format table (default on a terminal), csv, or json.
 */
#include <duckdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "cli/client/workspace.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/result_format.h"
#include "store/duck.h"

/* A JSON value as a table/CSV cell: strings bare, the rest as JSON. */
static char *cell_text(const json_t *value)
{
    if (json_is_null(value))
        return strdup("");
    if (json_is_string(value))
        return strdup(json_string_value(value));
    return json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
}

static void print_csv(const json_t *answer)
{
    strbuf line;
    strbuf_init(&line);
    size_t i, j;
    json_t *column, *row, *value;
    json_array_foreach(json_object_get(answer, "columns"), i, column) {
        if (i)
            strbuf_append_char(&line, ',');
        result_format_csv_text(&line, json_string_value(column), json_string_length(column));
    }
    printf("%s\n", line.data ? line.data : "");
    json_array_foreach(json_object_get(answer, "rows"), i, row) {
        strbuf_reset(&line);
        json_array_foreach(row, j, value) {
            char *text = cell_text(value);
            if (j)
                strbuf_append_char(&line, ',');
            if (text)
                result_format_csv_text(&line, text, strlen(text));
            free(text);
        }
        printf("%s\n", line.data ? line.data : "");
    }
    strbuf_free(&line);
}

static void print_table(const json_t *answer)
{
    const json_t *columns = json_object_get(answer, "columns"), *rows = json_object_get(answer, "rows");
    size_t n = json_array_size(columns), widths[256] = {0}, i, j;
    json_t *row, *value;
    for (i = 0; i < n && i < 256; i++)
        widths[i] = json_string_length(json_array_get(columns, i));
    json_array_foreach(rows, i, row) {
        json_array_foreach(row, j, value) {
            char *text = cell_text(value);
            if (j < 256 && text && strlen(text) > widths[j])
                widths[j] = strlen(text) > 60 ? 60 : strlen(text);
            free(text);
        }
    }
    for (i = 0; i < n && i < 256; i++)
        printf("%s%-*s", i ? " | " : "", (int)widths[i], json_string_value(json_array_get(columns, i)));
    printf("\n");
    for (i = 0; i < n && i < 256; i++)
        printf("%s%.*s", i ? "-+-" : "", (int)widths[i],
               "------------------------------------------------------------");
    printf("\n");
    json_array_foreach(rows, i, row) {
        json_array_foreach(row, j, value) {
            char *text = cell_text(value);
            printf("%s%-*.*s", j ? " | " : "", (int)(j < 256 ? widths[j] : 0), 60, text ? text : "");
            free(text);
        }
        printf("\n");
    }
    printf("(%zu row%s%s)\n", json_array_size(rows), json_array_size(rows) == 1 ? "" : "s",
           json_is_true(json_object_get(answer, "truncated")) ? ", truncated at the limit" : "");
}

static void print_answer(const json_t *answer, const char *format)
{
    if (strcmp(format, "json") == 0) {
        json_dumpf(answer, stdout, JSON_INDENT(2));
        printf("\n");
    } else if (strcmp(format, "csv") == 0) {
        print_csv(answer);
    } else {
        print_table(answer);
    }
}

/* A local query's error, in the analyst's terms (exit 1, not the usage
 * code 2).  For a table that is not there, DuckDB's "Did you mean" picks
 * from its internal catalog as well (`customers` suggested
 * "pg_prepared_statements"): a suggestion is kept only when it is one of
 * this workspace's tables, and the workspace's tables are listed. */
static int local_query_error(duckdb_connection conn, duckdb_result *result, agnes_error *err)
{
    const char *message = duckdb_result_error(result);
    if (duckdb_result_error_type(result) != DUCKDB_ERROR_CATALOG || strstr(message, "does not exist") == NULL)
        return agnes_error_set(err, AGNES_ERR_DB, "Query error: %s", message);
    json_t *rows = NULL;
    agnes_error ignored;
    duck_query_json(conn,
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
                    " AND table_schema = 'main' ORDER BY table_name",
                    NULL, 0, &rows, &ignored);
    strbuf names;
    strbuf_init(&names);
    char suggestion[200] = "";
    const char *mean = strstr(message, "Did you mean \"");
    const char *quote_end = mean ? strchr(mean + 14, '"') : NULL;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *name = json_string_value(json_object_get(row, "table_name"));
        strbuf_appendf(&names, "%s%s", i ? ", " : "", name);
        if (quote_end != NULL && strlen(name) == (size_t)(quote_end - mean - 14) &&
            strncmp(name, mean + 14, strlen(name)) == 0)
            snprintf(suggestion, sizeof suggestion, " Did you mean \"%s\"?", name);
    }
    size_t first_line = strcspn(message, "\n");
    agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                    "Query error: %.*s%s This workspace has %s%s. `agnes catalog` lists the tables you may read; "
                    "`agnes pull` fetches them.",
                    (int)first_line, message, suggestion, json_array_size(rows) ? "these tables: " : "no tables",
                    names.data ? names.data : "");
    strbuf_free(&names);
    json_decref(rows);
    return err->code;
}

/* Run sql on the workspace's agnes.duckdb: {columns, types, rows, row_count, truncated}. */
static int local_query(const char *workspace_dir, const char *sql, long long limit, json_t **answer,
                       agnes_error *err)
{
    workspace ws;
    duck_session session;
    duckdb_result result;
    strbuf text;
    *answer = NULL;
    if (workspace_open(&ws, workspace_dir, err))
        return err->code;
    if (!util_file_exists(ws.database)) {
        workspace_close(&ws);
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "%s does not exist yet: run `agnes pull` first", ws.database);
    }
    int rc = duck_session_open(&session, ws.database, true, err);
    workspace_close(&ws);
    if (rc != AGNES_OK)
        return rc;
    if (duckdb_query(session.connection, sql, &result) != DuckDBSuccess) {
        rc = local_query_error(session.connection, &result, err);
        duckdb_destroy_result(&result);
        duck_session_close(&session);
        return rc;
    }
    strbuf_init(&text);
    idx_t columns = duckdb_column_count(&result);
    json_t *names = json_array(), *types = json_array();
    for (idx_t c = 0; c < columns; c++) {
        duckdb_logical_type type = duckdb_column_logical_type(&result, c);
        strbuf name;
        strbuf_init(&name);
        result_format_type_name(type, &name);
        json_array_append_new(names, json_string(duckdb_column_name(&result, c)));
        json_array_append_new(types, json_string(name.data ? name.data : "?"));
        strbuf_free(&name);
        if (rc == AGNES_OK)
            rc = result_format_supported(type, duckdb_column_name(&result, c), err);
        duckdb_destroy_logical_type(&type);
    }
    long long count = 0;
    bool truncated = false;
    strbuf_append_char(&text, '[');
    duckdb_data_chunk chunk;
    while (rc == AGNES_OK && !truncated && (chunk = duckdb_fetch_chunk(result)) != NULL) {
        idx_t size = duckdb_data_chunk_get_size(chunk);
        for (idx_t r = 0; r < size && !truncated; r++) {
            if (count == limit) {
                truncated = true;
                break;
            }
            strbuf_append_str(&text, count++ ? ",[" : "[");
            for (idx_t c = 0; c < columns; c++) {
                duckdb_logical_type type = duckdb_column_logical_type(&result, c);
                if (c)
                    strbuf_append_char(&text, ',');
                result_format_json(&text, duckdb_data_chunk_get_vector(chunk, c), type, r);
                duckdb_destroy_logical_type(&type);
            }
            strbuf_append_char(&text, ']');
        }
        duckdb_destroy_data_chunk(&chunk);
    }
    strbuf_append_char(&text, ']');
    json_t *rows = rc == AGNES_OK && !strbuf_failed(&text) ? json_loadb(text.data, text.len, 0, NULL) : NULL;
    if (rc == AGNES_OK && rows == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot read the result back");
    if (rc == AGNES_OK)
        *answer = json_pack("{s:o, s:o, s:o, s:I, s:b}", "columns", names, "types", types, "rows", rows, "row_count",
                            (json_int_t)count, "truncated", truncated);
    else
        json_decref(names), json_decref(types);
    strbuf_free(&text);
    duckdb_destroy_result(&result);
    duck_session_close(&session);
    return rc;
}

int command_query(int argc, char **argv)
{
    const char *sql = NULL, *format = isatty(STDOUT_FILENO) ? "table" : "csv", *workspace_dir = NULL;
    bool local = false;
    long long limit = 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--local") == 0)
            local = true;
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            format = "json";
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc && util_parse_long(argv[i + 1], &limit) && limit > 0)
            i++;
        else if (strcmp(argv[i], "--workspace") == 0 && i + 1 < argc)
            workspace_dir = argv[++i];
        else if (argv[i][0] != '-' && sql == NULL)
            sql = argv[i];
        else
            sql = NULL, i = argc;
    }
    if (sql == NULL || (strcmp(format, "table") != 0 && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)) {
        fprintf(stderr, "usage: agnes query \"SQL\" [--local] [--format table|csv|json] [--limit N] [--workspace DIR]\n"
                        "  Run one SELECT on the server, or with --local on the workspace's agnes.duckdb.\n");
        return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
    }
    json_t *answer = NULL;
    agnes_error err;
    int rc;
    if (local) {
        rc = local_query(workspace_dir, sql, limit, &answer, &err);
    } else {
        client c;
        json_t *body = json_pack("{s:s, s:I}", "sql", sql, "limit", (json_int_t)limit);
        char *text = json_dumps(body, JSON_COMPACT);
        rc = client_load(&c, NULL, &err);
        if (rc == AGNES_OK)
            rc = client_require_login(&c, &err);
        if (rc == AGNES_OK)
            rc = client_call_json(&c, "POST", "/api/query", text, &answer, &err);
        free(text);
        json_decref(body);
    }
    if (rc != AGNES_OK)
        return client_fail("query", &err);
    print_answer(answer, format);
    /* Never silently short: a script reading stdout cannot see "truncated". */
    if (json_is_true(json_object_get(answer, "truncated")))
        fprintf(stderr,
                "agnes query: warning: the result was cut at %lld rows (the limit); there are more. Raise --limit "
                "or narrow the query.\n",
                (long long)json_integer_value(json_object_get(answer, "row_count")));
    json_decref(answer);
    return 0;
}

int command_catalog(int argc, char **argv)
{
    const char *table = NULL;
    bool json_output = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json_output = true;
        else if (argv[i][0] != '-' && table == NULL)
            table = argv[i];
        else {
            fprintf(stderr, "usage: agnes catalog [TABLE] [--json]\n"
                            "  The tables you may read, or one table with its columns.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
        }
    }
    client c;
    agnes_error err;
    json_t *answer = NULL;
    char path[300];
    snprintf(path, sizeof path, "/api/catalog/tables%s%s", table ? "/" : "", table ? table : "");
    if (table != NULL && !contract_is_identifier(table)) {
        fprintf(stderr, "agnes catalog: '%s' is not a table id (letters, digits and _)\n", table);
        return CLIENT_EXIT_USAGE;
    }
    int rc = client_load(&c, NULL, &err);
    if (rc == AGNES_OK)
        rc = client_require_login(&c, &err);
    if (rc == AGNES_OK)
        rc = client_call_json(&c, "GET", path, NULL, &answer, &err);
    if (rc != AGNES_OK)
        return client_fail("catalog", &err);
    if (json_output) {
        json_object_set_new(answer, "sql_dialect", json_string(CLIENT_SQL_DIALECT));
        json_object_set_new(answer, "sql_dialect_note", json_string(CLIENT_SQL_DIALECT_NOTE));
        json_dumpf(answer, stdout, JSON_INDENT(2));
        printf("\n");
    } else if (table != NULL) {
        long long rows = (long long)json_integer_value(json_object_get(answer, "rows"));
        char count[48] = "row count unknown";
        if (json_is_integer(json_object_get(answer, "rows")))
            snprintf(count, sizeof count, "%lld row%s", rows, client_plural(rows));
        printf("%s (%s, %s): %s\n", json_string_value(json_object_get(answer, "id")),
               json_string_value(json_object_get(answer, "query_mode")), count, client_text(answer, "description"));
        size_t i;
        json_t *column;
        json_array_foreach(json_object_get(answer, "columns"), i, column)
            printf("  %-32s %s\n", json_string_value(json_object_get(column, "name")),
                   json_string_value(json_object_get(column, "type")));
    } else {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(answer, "tables"), i, t) {
            char rows[32] = "?"; /* a remote table's count is the source's: unknown here */
            if (json_is_integer(json_object_get(t, "rows")))
                snprintf(rows, sizeof rows, "%lld", (long long)json_integer_value(json_object_get(t, "rows")));
            printf("%-32s %-7s %12s rows  %s\n", json_string_value(json_object_get(t, "id")),
                   json_string_value(json_object_get(t, "query_mode")), rows, client_text(t, "description"));
        }
    }
    if (!json_output)
        printf("\n%s\n", CLIENT_SQL_DIALECT_NOTE);
    json_decref(answer);
    return 0;
}
