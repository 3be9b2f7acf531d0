/*
 * query.h - the query engine's entry point: who asks, what they may read,
 * the SQL, a row limit and a format in; a byte stream out.
 *
 * Every caller of the engine - POST /api/query, the catalog's sample
 * endpoint, and later the MCP server and result handles - goes through
 * these four calls, so the walls and limits hold for all of them:
 *
 *   query_run_start()  take a slot and a worker for the caller's engine
 *                      (query_pool.h), send the query, and wait for its
 *                      first answer: an error (4xx sentence) or HEAD
 *   query_run_read()   the body, as the worker produces it
 *   query_run_free()   give the slot back (a half-read worker is killed)
 *
 * Formats and values: query_exec.h and result_format.h.  Whether the limit
 * cut the result: query_run_truncated() is "true"/"false" when the worker
 * knew it before the first byte (every result up to ~1 MiB after the
 * limit), else NULL until query_run_read() has returned 0, after which
 * query_run_truncated_final() says it.
 */
#ifndef AGNES_ENGINE_QUERY_H
#define AGNES_ENGINE_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/paths.h"
#include "engine/query_exec.h"
#include "engine/query_pool.h"

typedef struct query_request {
    query_caller caller;
    const char *sql;
    long long limit; /* >= 1 */
    query_format format;
    const char *request_id; /* for the log */
    /* Parquet only (result handles): columns Parquet would not keep exactly
     * (HUGEINT, TIMETZ, ...) are written as text and repeated names kept;
     * query_run_shape() then says how to read the file back. */
    bool exact;
    /* Parquet only: the most bytes the worker may write for it, result and
     * spill files each (0: no bound); see QUERY_OVER_MAX_BYTES. */
    long long max_bytes;
} query_request;

typedef struct query_run query_run;

/* Errors: AGNES_ERR_INVALID (400), AGNES_ERR_FORBIDDEN (403),
 * AGNES_ERR_TIMEOUT (408), AGNES_ERR_BUSY (429), AGNES_ERR_STATE (503, no
 * catalog), others (500). */
int query_run_start(query_pool *pool, const query_request *request, query_run **out, agnes_error *err);

/* Copy up to `max` bytes of the body into buf: the count, 0 at the end,
 * -1 on failure (err set; the response must be cut off, not completed). */
ssize_t query_run_read(query_run *run, char *buf, size_t max, agnes_error *err);

/* A small answer arrives whole with its first frame (query_protocol.h,
 * HEAD `complete`); its slot is already given back.  Then this hands over
 * the body (malloc'd, *len bytes; the caller frees it) so the response can
 * be sent in one piece with a Content-Length; NULL when the answer is a
 * stream (read it with query_run_read), empty, or was already read.
 * query_run_truncated() is known and query_run_rows() final either way. */
char *query_run_take_body(query_run *run, size_t *len);

/* "true" / "false" when known before the body, else NULL. */
const char *query_run_truncated(const query_run *run);

/* After the end of the body: whether the limit cut it. */
bool query_run_truncated_final(const query_run *run);

/* Rows produced (known at the end). */
long long query_run_rows(const query_run *run);

/* With request->exact: the result's shape for engine/result_handle.h
 * ({columns, restore?}), borrowed from the run; NULL otherwise. */
const json_t *query_run_shape(const query_run *run);

void query_run_free(query_run *run);

#endif
