/*
 * duckdb_time FILE SQL RUNS - time a query in-process, the way bench/ needs
 * a baseline: open FILE read-only (ATTACH statements may lead SQL, split by
 * the last ";"), run the final statement RUNS times fetching every chunk, and
 * print the mean milliseconds per run - or, with DUCKDB_TIME_MEDIAN set, the
 * median run (what bench/ compares with wrk's median latency: a burst of
 * load on a shared machine moves a mean, not a median).
 */
#include <duckdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: duckdb_time FILE SQL RUNS\n");
        return 2;
    }
    duckdb_database db;
    duckdb_connection conn;
    duckdb_config config;
    duckdb_create_config(&config);
    if (getenv("DUCKDB_TIME_READ_WRITE") == NULL)
        duckdb_set_config(config, "access_mode", "READ_ONLY");
    if (duckdb_open_ext(argv[1], &db, config, NULL) != DuckDBSuccess || duckdb_connect(db, &conn) != DuckDBSuccess) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    duckdb_destroy_config(&config);
    char *sql = strdup(argv[2]);
    char *last = strrchr(sql, ';');
    const char *query = sql;
    if (last != NULL) {
        *last = '\0';
        duckdb_result setup;
        if (duckdb_query(conn, sql, &setup) != DuckDBSuccess) {
            fprintf(stderr, "%s\n", duckdb_result_error(&setup));
            return 1;
        }
        duckdb_destroy_result(&setup);
        query = last + 1;
    }
    int runs = atoi(argv[3]);
    if (runs < 1) {
        fprintf(stderr, "RUNS must be a positive number\n");
        return 2;
    }
    double *each = calloc((size_t)runs, sizeof *each);
    if (each == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    double started = now_ms();
    for (int i = 0; i < runs; i++) {
        double run_started = now_ms();
        duckdb_prepared_statement statement;
        duckdb_pending_result pending;
        duckdb_result result;
        if (duckdb_prepare(conn, query, &statement) != DuckDBSuccess) {
            fprintf(stderr, "%s\n", duckdb_prepare_error(statement));
            return 1;
        }
        duckdb_pending_prepared_streaming(statement, &pending);
        duckdb_execute_pending(pending, &result);
        duckdb_data_chunk chunk;
        while ((chunk = duckdb_fetch_chunk(result)) != NULL)
            duckdb_destroy_data_chunk(&chunk);
        duckdb_destroy_result(&result);
        duckdb_destroy_pending(&pending);
        duckdb_destroy_prepare(&statement);
        each[i] = now_ms() - run_started;
    }
    double mean = (now_ms() - started) / runs;
    if (getenv("DUCKDB_TIME_MEDIAN") != NULL) {
        qsort(each, (size_t)runs, sizeof *each, compare_doubles);
        printf("%.4f\n", runs % 2 ? each[runs / 2] : (each[runs / 2 - 1] + each[runs / 2]) / 2);
    } else {
        printf("%.4f\n", mean);
    }
    free(each);
    free(sql);
    duckdb_disconnect(&conn);
    duckdb_close(&db);
    return 0;
}
