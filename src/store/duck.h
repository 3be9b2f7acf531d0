/*
 * duck.h - thin helpers over DuckDB's C API that turn its results into the
 * Agnes error convention.  They never own connections: whoever opened a
 * connection passes it in and closes it.
 */
#ifndef AGNES_STORE_DUCK_H
#define AGNES_STORE_DUCK_H

#include <duckdb.h>
#include <stdbool.h>

#include "core/error.h"

/* Open a database file; read_only opens without taking the write lock and
 * without modifying the file. */
int duck_open(const char *path, bool read_only, duckdb_database *out, agnes_error *err);

/* A database opened for one short job with one connection: the pattern of
 * migrations and tools that open a file, do one thing and close it. */
typedef struct duck_session {
    duckdb_database database;
    duckdb_connection connection;
} duck_session;

int duck_session_open(duck_session *session, const char *path, bool read_only, agnes_error *err);
void duck_session_close(duck_session *session);

/* Run one or more statements, discarding results. */
int duck_exec(duckdb_connection conn, const char *sql, agnes_error *err);

/* Run a query returning one BIGINT-convertible value in row 0 column 0.
 * *found is false (and *out untouched) when the query returned no rows or NULL. */
int duck_query_int(duckdb_connection conn, const char *sql, long long *out, bool *found, agnes_error *err);

#endif
