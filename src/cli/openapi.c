/*
 * `agnes openapi` - print the API description (http/openapi.h); the
 * repository's openapi.json is this output.
 * `agnes schema dump` - print system.duckdb's tables and columns as every
 * migration leaves them (a scratch database; the real one is not opened);
 * the repository's contracts/system_schema.json is this output.
 * Both feed scripts/breaking-check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "http/openapi.h"
#include "store/duck.h"
#include "store/migrations.h"

static int print_json(json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (text == NULL)
        return 1;
    printf("%s\n", text);
    free(text);
    return 0;
}

int command_openapi(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: agnes openapi\n  Print the OpenAPI description of every endpoint (openapi.json).\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : EXIT_USAGE;
    }
    return print_json(openapi_document());
}

int command_schema(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "dump") != 0) {
        fprintf(stderr, "usage: agnes schema dump\n"
                        "  Print system.duckdb's tables and columns as this build's migrations create them.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : EXIT_USAGE;
    }
    agnes_error err;
    json_t *rows = NULL;
    duck_session session;
    int rc = duck_session_open(&session, ":memory:", false, &err);
    if (rc == AGNES_OK) {
        rc = migrations_apply_range(session.connection, 0, migrations_latest(), &err);
        if (rc == AGNES_OK)
            rc = duck_query_json(session.connection,
                                 "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
                                 " WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
                                 NULL, 0, &rows, &err);
        duck_session_close(&session);
    }
    if (rc != AGNES_OK) {
        fprintf(stderr, "agnes schema: %s\n", err.message);
        return 1;
    }
    json_t *tables = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *table = json_string_value(json_object_get(row, "table_name"));
        json_t *columns = json_object_get(tables, table);
        if (columns == NULL)
            json_object_set_new(tables, table, columns = json_array());
        json_array_append_new(columns, json_pack("{s:O, s:O, s:b}", "name", json_object_get(row, "column_name"), "type",
                                                 json_object_get(row, "data_type"), "nullable",
                                                 strcmp(json_string_value(json_object_get(row, "is_nullable")), "YES") == 0));
    }
    json_decref(rows);
    return print_json(json_pack("{s:i, s:o}", "schema_version", migrations_latest(), "tables", tables));
}
