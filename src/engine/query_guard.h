/*
 * query_guard.h - decide whether a caller's SQL may run (SPEC §8), on what
 * the statement will actually read after binding.
 *
 * Wall (a) of query_sandbox.h.  The decision never rests on names in the
 * text (the old guard trusted any name that matched a CTE somewhere in the
 * statement, and a file path named like a CTE read ungranted rows):
 *
 *   statements  DuckDB's parser counts them: exactly one, or the statements
 *               DuckDB itself makes of one PIVOT (CREATE TYPE ... then the
 *               SELECT); the prepared statement must be a SELECT.
 *   reads       the statement is bound in the probe - the catalog's shape
 *               without data, each view a stand-in reading
 *               __agnes_table('<name>') - and every LOGICAL_GET of the plan
 *               must be a stand-in of a table the caller may read, or
 *               range / generate_series / unnest.  Views are expanded, CTEs
 *               and aliases resolved in their scopes, table functions and
 *               macros bound, by DuckDB's own binder.
 *   functions   functions that answer about the server rather than the
 *               data (current_setting, json_serialize_plan,
 *               current_database, ...) are refused; metadata table
 *               functions (duckdb_*, pragma_*, information_schema and
 *               pg_catalog views, sqlite_master) never pass the reads rule.
 *
 * A table that does not exist and a table the caller may not read get the
 * same answer, byte for byte but the name, with no "did you mean"
 * suggestions: existence is not an oracle.  When binding in the probe fails,
 * the sentence the caller sees comes from their own sandbox, which knows
 * only what they may read.
 */
#ifndef AGNES_ENGINE_QUERY_GUARD_H
#define AGNES_ENGINE_QUERY_GUARD_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "engine/query_sandbox.h"

/* Longest SQL text accepted; longer is a 400, before any parsing. */
#define QUERY_GUARD_MAX_SQL 100000

typedef struct query_guard_policy {
    const json_t *visible;    /* ids the caller may read */
    const json_t *unservable; /* {id: reason} visible tables their sandbox cannot hold */
} query_guard_policy;

/* The statements of one request as DuckDB splits them. */
typedef struct query_statements {
    duckdb_extracted_statements extracted;
    idx_t count;
    bool pivot; /* count > 1: a PIVOT's CREATE TYPE statements, then its SELECT */
} query_statements;

/* Split sql on conn.  AGNES_ERR_INVALID (400) for an empty text, a parse
 * error, or several statements that are not one PIVOT.  The shape check of
 * a PIVOT prepares its CREATE statements on conn, which must be a fresh
 * connection of the engine that will run them (temporary types). */
int query_guard_split(duckdb_connection conn, const char *sql, query_statements *out, agnes_error *err);
void query_guard_statements_free(query_statements *statements);

/* Wall (a): may the caller run sql?  probe must be built from the same
 * catalog description as the caller's sandbox.  AGNES_OK, or
 * AGNES_ERR_FORBIDDEN (403) / AGNES_ERR_INVALID (400) with the sentence to
 * show; AGNES_ERR_DB when the probe failed for no reason of the caller's
 * (*explain is then set: ask query_guard_explain on the sandbox). */
int query_guard_check(query_probe *probe, const char *sql, bool pivot, const query_guard_policy *policy,
                      bool *explain, agnes_error *err);

/* The sentence for a statement that does not bind, derived on the
 * caller's own engine (conn: a connection to their sandbox), so it can name
 * nothing they may not read: a missing table is always "does not exist or
 * you have no access".  Returns the status to answer with. */
int query_guard_explain(duckdb_connection conn, const char *sql, const char *fallback, agnes_error *err);

/* The same for one PIVOT (the statements DuckDB splits it into): each is
 * prepared, and the type statements run, on conn - which must be a fresh
 * connection to the caller's sandbox, dropped afterwards (they create
 * temporary types) - and the first that fails gives the sentence.  Returns
 * the status to answer with; a PIVOT that binds there after all gets a
 * generic 400 (never the probe's message, which may name other tables). */
int query_guard_explain_pivot(duckdb_connection conn, const char *sql, agnes_error *err);

/* The statement-type half, on an already prepared statement: SELECT only. */
int query_guard_check_prepared(duckdb_prepared_statement statement, agnes_error *err);

/* The table name in a DuckDB "does not exist" message, if it is one. */
bool query_guard_missing_name(const char *message, char *out, size_t out_size);

/* The sentence for a table the caller may not read, or that does not exist. */
int query_guard_missing(const char *name, agnes_error *err);

/* Parse JSON that DuckDB wrote with bare NaN / Infinity / -Infinity tokens
 * (json_serialize_plan of `SELECT 1e309`): they become null.  Big integers
 * are read as reals.  *out is a new reference. */
int query_guard_load_tree(const char *text, json_t **out, agnes_error *err);

#endif
