/*
 * query_guard.h - decide whether a caller's SQL may run (SPEC §8).
 *
 * The decision uses DuckDB's own parser, never substring lists (the
 * original's list rejected `SELECT 'a;b'` and let `FROM "orders"` through
 * a word-boundary check): the text must be exactly one statement, and the
 * statement's syntax tree - json_serialize_sql() - is walked for every
 * table and table function it names.
 *
 *   tables           must be catalog views the caller may read.  A name
 *                    qualified with another schema or catalog (a raw
 *                    source, agnes.tables, information_schema) is refused
 *                    for non-admins; so is an unknown name, with the same
 *                    sentence whether it is missing or hidden.
 *   table functions  non-admins get range, generate_series and unnest
 *                    only: no file readers, no catalog functions.
 *   CTEs             a CTE may not reuse the name of a view the caller
 *                    cannot read; otherwise CTE names are allowed.
 *
 * This is the first of two walls.  The connection the query runs on is
 * itself locked down (analytics.c: no external access outside the
 * extracts tree, configuration locked), so a hole here still cannot read
 * /etc/passwd or ATTACH anything.
 */
#ifndef AGNES_ENGINE_QUERY_GUARD_H
#define AGNES_ENGINE_QUERY_GUARD_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"

/* Longest SQL text accepted; longer is a 400, before any parsing. */
#define QUERY_GUARD_MAX_SQL 100000

typedef struct query_guard_policy {
    bool is_admin;         /* admins skip the table and function rules */
    const json_t *catalog; /* array of every view name in the catalog */
    const json_t *visible; /* array of the names the caller may read */
} query_guard_policy;

/* Check `sql` against `policy`, parsing it on `conn`.  AGNES_OK when it may
 * run; AGNES_ERR_INVALID (answer 400) or AGNES_ERR_FORBIDDEN (answer 403)
 * with a sentence naming the statement, table or function and what to do;
 * AGNES_ERR_DB when the parser itself could not be run. */
int query_guard_check(duckdb_connection conn, const char *sql, const query_guard_policy *policy, agnes_error *err);

/* The statement-type half, on an already prepared statement: SELECT only. */
int query_guard_check_prepared(duckdb_prepared_statement statement, agnes_error *err);

#endif
