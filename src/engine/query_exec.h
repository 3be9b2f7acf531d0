/*
 * query_exec.h - run one statement on one DuckDB connection and produce
 * its result as bytes, a piece at a time (inside a query worker).
 *
 * query_exec_start() runs the statements DuckDB made of the text (a PIVOT
 * first creates its enum types), prepares and starts the last, and fetches
 * the first chunk, so every error a caller can cause - parse, bind, an
 * unsupported column type - is known before a status line is sent.
 * query_exec_next() then formats one DuckDB chunk (2048 rows) at a time, so
 * memory stays flat however many rows stream.
 *
 *   json     {"columns", "types", "rows", "row_count", "truncated", "elapsed_ms"}
 *   ndjson   one {"column": value} object per line
 *   csv      a header line, then RFC 4180 rows
 *   parquet  DuckDB writes the file (COPY) to the worker's result path,
 *            then its bytes are produced
 *   arrow    an Arrow IPC stream: the schema, one record batch per chunk
 *            (engine/arrow_ipc.h)
 *
 * `limit` caps the rows of every format.  Whether rows were cut is known
 * once the row after the limit was looked for (query_exec_truncated): the
 * json body says it in "truncated", and the worker tells the server, which
 * says it in the Agnes-Truncated header (or trailer) of every format.
 */
#ifndef AGNES_ENGINE_QUERY_EXEC_H
#define AGNES_ENGINE_QUERY_EXEC_H

#include <duckdb.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/strbuf.h"

typedef enum query_format {
    QUERY_FORMAT_JSON,
    QUERY_FORMAT_NDJSON,
    QUERY_FORMAT_CSV,
    QUERY_FORMAT_PARQUET,
    QUERY_FORMAT_ARROW,
} query_format;

/* "json", "ndjson", "csv", "parquet", "arrow"; false for anything else. */
bool query_format_parse(const char *name, query_format *out);
const char *query_format_name(query_format format);
const char *query_format_content_type(query_format format);

typedef struct query_exec_request {
    const char *sql;
    long long limit; /* >= 1 */
    query_format format;
    const char *result_path;     /* parquet: where COPY writes (allowed by the engine) */
    const char *result_cut_path; /* parquet: the copy cut at the limit */
    /* parquet: no file this run writes (the result, the cut, spill) may pass
     * this many bytes (0: no bound); past it the run fails with an error
     * whose sentence starts with QUERY_OVER_MAX_BYTES. */
    long long max_bytes;
    /* Optional: `sql` already split on the same connection (the guard's
     * query_guard_split), so it is not parsed a second time; borrowed.
     * Used by the streaming formats; parquet wraps the SQL and parses it. */
    duckdb_extracted_statements extracted;
    idx_t extracted_count;
} query_exec_request;

/* How the error of a run that passed max_bytes begins (result handles
 * recognise it and answer with their own setting's name). */
#define QUERY_OVER_MAX_BYTES "The result passed the disk bound of its run"


typedef struct query_exec query_exec;

/* Start the statement on conn (a connection of its own: a PIVOT's enum
 * types are temporary objects of it).  Errors: AGNES_ERR_INVALID (400:
 * not a SELECT, unsupported column type), AGNES_ERR_DB with DuckDB's own
 * message (the worker decides how much of it the caller may see),
 * AGNES_ERR_NOMEM / AGNES_ERR_IO. */
int query_exec_start(duckdb_connection conn, const query_exec_request *request, query_exec **out, agnes_error *err);

/* Append the next piece of the body to out: 1 when more may follow, 0 at
 * the end (nothing appended), or a negative AGNES_ERR_* (err set). */
int query_exec_next(query_exec *run, strbuf *out, agnes_error *err);

/* Rows produced so far. */
long long query_exec_rows(const query_exec *run);

/* Whether rows past the limit were cut; *known is false until the row after
 * the limit (or the end of the result) has been looked for. */
bool query_exec_truncated(const query_exec *run, bool *known);

void query_exec_free(query_exec *run);

#endif
