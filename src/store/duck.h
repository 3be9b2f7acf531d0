/*
 * duck.h - thin helpers over DuckDB's C API that turn its results into the
 * Agnes error convention.  They never own connections: whoever opened a
 * connection passes it in and closes it.
 */
#ifndef AGNES_STORE_DUCK_H
#define AGNES_STORE_DUCK_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/strbuf.h"

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

/* ATTACH the DuckDB file at path read-only under alias (an identifier the
 * caller has validated); the path is quoted here, once. */
int duck_attach_read_only(duckdb_connection conn, const char *path, const char *alias, agnes_error *err);

/* Run one or more statements, discarding results. */
int duck_exec(duckdb_connection conn, const char *sql, agnes_error *err);

/* Run a query returning one BIGINT-convertible value in row 0 column 0.
 * *found is false (and *out untouched) when the query returned no rows or NULL. */
int duck_query_int(duckdb_connection conn, const char *sql, long long *out, bool *found, agnes_error *err);

/* Run sql with `count` VARCHAR parameters bound to $1..$n (NULL binds SQL
 * NULL).  Every value that came from a user goes through these, never
 * through string formatting.  duck_query_params fills *result (the caller
 * destroys it) only on success. */
int duck_exec_params(duckdb_connection conn, const char *sql, const char *const *params, size_t count,
                     agnes_error *err);
int duck_query_params(duckdb_connection conn, const char *sql, const char *const *params, size_t count,
                      duckdb_result *result, agnes_error *err);

/* Run a parameter-bound query and return its rows as a JSON array of
 * objects keyed by column name (new reference in *rows).  Types map to
 * JSON naturally: BOOLEAN -> true/false, integers -> numbers, TIMESTAMP ->
 * "YYYY-MM-DDTHH:MM:SSZ" (stored times are UTC), NULL -> null, the rest ->
 * strings.  For list endpoints: the SQL chooses and names the fields. */
int duck_query_json(duckdb_connection conn, const char *sql, const char *const *params, size_t count, json_t **rows,
                    agnes_error *err);

/* Append text as a SQL string literal ('...', quotes doubled).  For the
 * places DuckDB takes no parameter - file paths in COPY, ATTACH, SET -
 * and only for paths the server chose, never for caller text. */
void duck_append_literal(strbuf *out, const char *text);

/* Append name as a quoted SQL identifier ("...", quotes doubled); the same
 * rule holds in DuckDB and PostgreSQL. */
void duck_append_identifier(strbuf *out, const char *name);

/* Copy row/col of a result as text into out ("" for NULL); false if NULL. */
bool duck_result_text(duckdb_result *result, idx_t col, idx_t row, char *out, size_t out_size);

#endif
