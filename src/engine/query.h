/*
 * query.h - run one caller's SELECT and produce its result as a byte stream.
 *
 * query_run_start() checks the SQL (query_guard), prepares and starts it,
 * and fetches the first chunk, so every error a caller can cause - parse,
 * bind, permission, an unsupported column type - is known before a status
 * line is sent.  query_run_read() then produces the body a slice at a time,
 * formatting one DuckDB chunk (2048 rows) at a time, so memory stays flat
 * however many rows stream.
 *
 *   json     {"columns", "types", "rows", "row_count", "truncated", "elapsed_ms"}
 *   ndjson   one {"column": value} object per line
 *   csv      a header line, then RFC 4180 rows
 *   parquet  DuckDB writes the file into DATA_DIR/tmp; it is streamed from
 *            an unlinked descriptor, so nothing is left behind
 *   arrow    an Arrow IPC stream: the schema, one record batch per chunk
 *            (engine/arrow_ipc.h)
 *
 * `limit` caps the rows of every format; only json can say it cut
 * ("truncated"), the streamed formats simply stop at the limit.
 */
#ifndef AGNES_ENGINE_QUERY_H
#define AGNES_ENGINE_QUERY_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/paths.h"
#include "engine/query_guard.h"
#include "engine/query_pool.h"

typedef enum query_format {
    QUERY_FORMAT_JSON,
    QUERY_FORMAT_NDJSON,
    QUERY_FORMAT_CSV,
    QUERY_FORMAT_PARQUET,
    QUERY_FORMAT_ARROW,
} query_format;

/* "json", "ndjson", "csv", "parquet", "arrow"; false for anything else. */
bool query_format_parse(const char *name, query_format *out);
const char *query_format_content_type(query_format format);

typedef struct query_request {
    const char *sql;
    long long limit; /* >= 1 */
    query_format format;
    const query_guard_policy *policy;
    const char *tmp_dir; /* DATA_DIR/tmp, for parquet results */
    const char *request_id; /* names the temporary file */
} query_request;

typedef struct query_run query_run;

/* Start the query on slot's connection.  Errors: AGNES_ERR_INVALID (400),
 * AGNES_ERR_FORBIDDEN (403), AGNES_ERR_TIMEOUT (408), others (500). */
int query_run_start(query_pool *pool, query_slot *slot, const query_request *request, query_run **out,
                    agnes_error *err);

/* Copy up to `max` bytes of the body into buf: the count, 0 at the end,
 * -1 on failure (err set; the response must be cut off, not completed). */
ssize_t query_run_read(query_run *run, char *buf, size_t max, agnes_error *err);

/* Rows produced so far (for the access log). */
long long query_run_rows(const query_run *run);

void query_run_free(query_run *run);

/* Remove Parquet results a killed server left in DATA_DIR/tmp (run at start). */
void query_sweep_results(const agnes_paths *paths);

#endif
