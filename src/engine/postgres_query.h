/*
 * postgres_query.h - the DuckDB table function behind remote PostgreSQL
 * tables (SPEC §7: DuckDB's own postgres extension cannot be downloaded).
 *
 *   postgres_query(dsn_env, sql [, columns := ['c0', 'c1', ...]])
 *
 * runs `sql` on the PostgreSQL server whose connection string is in the
 * variable dsn_env, at query time, and streams its rows as VARCHAR columns
 * (single-row mode: a chunk at a time, never the whole result).  A remote
 * view in a PostgreSQL extract wraps it with the casts of postgres_types.h,
 * so the catalog sees typed columns.  With `columns` the function binds
 * without connecting - a catalog rebuild never waits for PostgreSQL - and
 * the server's answer must have that many columns.
 *
 * dsn_env must be on the remote-attach token allowlist, so no query can
 * read another variable through it; every transaction is read-only and
 * bounded by a statement timeout.  Analysts cannot call it directly: the
 * query guard allows only range/generate_series/unnest, and the sandbox
 * their queries run in registers it restricted to their remote tables.
 */
#ifndef AGNES_ENGINE_POSTGRES_QUERY_H
#define AGNES_ENGINE_POSTGRES_QUERY_H

#include <duckdb.h>
#include <jansson.h>

#include "core/credentials.h"
#include "core/error.h"

/* Register the function on conn's database.  store (may be NULL: the
 * function then binds but refuses to run, which is all a catalog rebuild
 * needs) must outlive the database.  token_envs: the comma-separated
 * allowlist of variable names. */
int postgres_query_register(duckdb_connection conn, credentials *store, int statement_timeout_seconds,
                            const char *token_envs, agnes_error *err);

/* As postgres_query_register, but only the calls listed in allowed -
 * [[dsn_env, sql], ...], copied - bind; any other is an error.  This is
 * what a query sandbox registers: the exact statements of the remote views
 * it serves, so SQL that calls the function directly reaches nothing else
 * (NULL allowed: any call, as postgres_query_register). */
int postgres_query_register_restricted(duckdb_connection conn, credentials *store, int statement_timeout_seconds,
                                       const char *token_envs, const json_t *allowed, agnes_error *err);

#endif
