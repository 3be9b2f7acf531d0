/*
 * `agnes sql FILE SQL` - run SQL on a DuckDB file (created when missing)
 * and print the last statement's rows, tab-separated with a header line.
 *
 * For custom connectors: the image has no DuckDB shell and no Python
 * duckdb module, but every connector can reach the agnes binary (it gets
 * AGNES_BIN), so `"$AGNES_BIN" sql "$OUTPUT_DIR/extract.duckdb" "..."`
 * turns CSV into Parquet and writes _meta.  Exit 0 ok, 1 on a SQL error
 * (DuckDB's message on stderr), 2 on usage errors.
 */
#include <duckdb.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "store/duck.h"

static void print_result(duckdb_result *result)
{
    idx_t columns = duckdb_column_count(result), rows = duckdb_row_count(result);
    for (idx_t c = 0; c < columns; c++)
        printf("%s%s", c ? "\t" : "", duckdb_column_name(result, c));
    if (columns > 0)
        printf("\n");
    for (idx_t r = 0; r < rows; r++) {
        for (idx_t c = 0; c < columns; c++) {
            char *text = duckdb_value_is_null(result, c, r) ? NULL : duckdb_value_varchar(result, c, r);
            printf("%s%s", c ? "\t" : "", text ? text : "");
            duckdb_free(text);
        }
        printf("\n");
    }
}

int command_sql(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: agnes sql FILE SQL\n"
                        "  Run SQL (one or more statements) on the DuckDB file FILE, created when missing, and print\n"
                        "  the last statement's rows tab-separated. For custom connectors writing extract.duckdb.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : EXIT_USAGE;
    }
    duck_session session;
    agnes_error err;
    if (duck_session_open(&session, argv[1], false, &err) != AGNES_OK) {
        fprintf(stderr, "agnes sql: %s\n", err.message);
        return 1;
    }
    duckdb_result result;
    int rc = 0;
    if (duckdb_query(session.connection, argv[2], &result) != DuckDBSuccess) {
        fprintf(stderr, "agnes sql: %s\n", duckdb_result_error(&result));
        rc = 1;
    } else {
        print_result(&result);
    }
    duckdb_destroy_result(&result);
    duck_session_close(&session);
    return rc;
}
