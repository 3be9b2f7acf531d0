/*
 * duckdb_exec FILE SQL - run SQL against a DuckDB file and print the rows
 * tab-separated.  A test tool: the black-box tests use it to forge
 * system.duckdb states (an older or newer schema) without a DuckDB CLI.
 */
#include <duckdb.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: duckdb_exec FILE SQL\n");
        return 2;
    }
    duckdb_database db;
    duckdb_connection conn;
    duckdb_result result;
    if (duckdb_open(argv[1], &db) != DuckDBSuccess || duckdb_connect(db, &conn) != DuckDBSuccess) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    int rc = 0;
    if (duckdb_query(conn, argv[2], &result) != DuckDBSuccess) {
        fprintf(stderr, "%s\n", duckdb_result_error(&result));
        rc = 1;
    } else {
        for (idx_t r = 0; r < duckdb_row_count(&result); r++) {
            for (idx_t c = 0; c < duckdb_column_count(&result); c++) {
                char *v = duckdb_value_varchar(&result, c, r);
                printf("%s%s", c ? "\t" : "", v ? v : "NULL");
                duckdb_free(v);
            }
            printf("\n");
        }
    }
    duckdb_destroy_result(&result);
    duckdb_disconnect(&conn);
    duckdb_close(&db);
    return rc;
}
