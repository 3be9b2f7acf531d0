/*
 * postgres_types.h - PostgreSQL columns as DuckDB columns, faithfully.
 *
 * Rows cross from PostgreSQL to DuckDB as text (COPY ... TO STDOUT for
 * syncs, single-row results for remote queries), so each column has two
 * halves: an expression PostgreSQL evaluates to produce text DuckDB can
 * parse, and a DuckDB expression that turns that text back into the typed
 * value.  Keeping both here means a table synced to Parquet and the same
 * table queried remotely have identical types.
 *
 *   PostgreSQL                    DuckDB          via
 *   int2 / int4 / int8 / oid      SMALLINT / INTEGER / BIGINT / BIGINT
 *   float4 / float8               FLOAT / DOUBLE  (NaN and infinities kept)
 *   numeric(p,s), p <= 38         DECIMAL(p,s)    a column whose synced rows hold NaN or
 *                                                 ±Infinity (DECIMAL cannot) becomes DOUBLE,
 *                                                 which keeps them; the run says so.  A
 *                                                 remote query meeting one fails with a
 *                                                 sentence, never a silent NULL
 *   numeric (no or wider typmod)  DECIMAL(38,s)   s = the largest scale in the data, when every
 *                                                 value fits 38 digits (measured once per sync,
 *                                                 postgres_settle_numerics); else VARCHAR, the
 *                                                 exact text.  Never DOUBLE: it rounds past 15
 *                                                 digits.  A remote query meeting a value with
 *                                                 more decimal places fails with a sentence
 *   bool                          BOOLEAN
 *   date / timestamp / time       DATE / TIMESTAMP / TIME
 *   timestamptz / timetz          TIMESTAMPTZ / TIMETZ (session TimeZone=UTC)
 *   interval                      VARCHAR         "-1 days 02:00:00": CAST(x AS INTERVAL)
 *                                                 reads it; Parquet cannot hold negative
 *                                                 intervals, and local and remote agree
 *   json / jsonb                  JSON
 *   uuid                          UUID
 *   bytea                         BLOB            encode(hex) -> unhex()
 *   arrays                        <element>[]...  to_json() -> from_json_strict(): as many
 *                                                 [] as the data's dimensions (array_ndims,
 *                                                 asked once per sync), so {{1,2},{3,4}}
 *                                                 is [[1, 2], [3, 4]]; arrays of different
 *                                                 dimensions in one column: JSON text, and
 *                                                 the run says so.  Never NULLs for values
 *   anything else (enum, inet…)   VARCHAR         its text form
 */
#ifndef AGNES_ENGINE_POSTGRES_TYPES_H
#define AGNES_ENGINE_POSTGRES_TYPES_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/strbuf.h"

typedef struct postgres_column {
    char name[256];        /* as PostgreSQL reports it */
    char pg_type[128];     /* format_type(): "numeric(12,2)", "text[]" */
    char duckdb_type[128]; /* "DECIMAL(12,2)", "VARCHAR[]", "INTEGER[][]" */
    int kind;              /* internal: how the value travels as text */
    char element_type[100]; /* arrays: the DuckDB type of one element */
    int array_dims;        /* arrays: the nesting depth duckdb_type has (1 until settled) */
    bool bounded_numeric;  /* numeric(p,s) as DECIMAL: NaN and ±Infinity do not fit */
    int guard_scale;       /* measured unbounded numeric: its DECIMAL(38,s) scale, -1 otherwise */
} postgres_column;

/* Marker in the DuckDB error a bounded numeric column raises at a NaN or
 * ±Infinity, so a sync can tell it from other failures and retry the
 * table with that column as DOUBLE (postgres_find_nonfinite). */
#define POSTGRES_NONFINITE_MARKER "holds NaN or Infinity"

/* Describe the result columns of `sql` without running it (PQprepare +
 * PQdescribePrepared, then pg_type for each).  *columns is malloc'd. */
int postgres_describe(PGconn *conn, const char *sql, postgres_column **columns, size_t *count, agnes_error *err);

/* Ask the data how deep each array column's values are (one aggregate over
 * sql): one depth -> that many [] in duckdb_type; several -> the column
 * becomes JSON text.  A sentence per changed column is appended to notes
 * (may be NULL).  No query when there is no array column. */
int postgres_settle_arrays(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                           agnes_error *err);

/* Measure the numeric columns without a usable precision (one aggregate
 * over sql): values with at most 38 digits and s decimal places make the
 * column DECIMAL(38,s); no values, NaN/Infinity or more digits make it
 * VARCHAR (the exact text).  A sentence per column in notes (may be NULL).
 * No query when there is no such column. */
int postgres_settle_numerics(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                             agnes_error *err);

/* Which numeric(p,s) columns hold NaN or ±Infinity (one aggregate over
 * sql): those become DOUBLE, with a sentence each in notes.  *changed
 * counts them. */
int postgres_find_nonfinite(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                            int *changed, agnes_error *err);

/* SELECT <text expressions> FROM (<sql>) AS agnes_source: what PostgreSQL
 * runs, each column as text DuckDB can parse. */
void postgres_append_text_select(strbuf *out, const char *sql, const postgres_column *columns, size_t count);

/* <DuckDB expression over c<i>> AS "<name>", ...: the typed columns, read
 * from a relation whose columns are c0..c<n-1>, all VARCHAR. */
void postgres_append_typed_columns(strbuf *out, const postgres_column *columns, size_t count);

/* A connection for a sync or a remote query: connect_timeout, UTC, ISO
 * dates, full float precision, read-only transactions, a statement
 * timeout.  The message never repeats the connection string. */
int postgres_connect(const char *dsn, int statement_timeout_seconds, PGconn **out, agnes_error *err);

#endif
