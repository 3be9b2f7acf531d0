/*
 * result_handle.h - query results kept behind a handle (SPEC §17).
 *
 * A result larger than its caller's budget is not cut silently: the whole
 * result is kept as Parquet and the caller gets its first rows, the total
 * row count and a handle to page through (MCP fetch_result, GET
 * /api/results/{handle}/rows) or download (GET /api/results/{handle} as
 * Parquet or CSV, `agnes pull --result`).
 *
 *   DATA_DIR/results/<handle>.parquet   the result, in the query's row order
 *   DATA_DIR/results/<handle>.json      its record: owner, grants at the
 *                                       time, SQL, expiry, rows, bytes
 *
 * Invariants:
 *   - a handle is 32 lower-case hex characters (128 random bits), checked
 *     before it is ever joined into a path;
 *   - a handle belongs to the user who ran the query: anyone else - and an
 *     expired or unknown handle - gets the same "not found", so handles
 *     cannot be probed;
 *   - it is bound to the caller's grants at the time: once the caller has
 *     lost access to any table they could read then (or their admin role),
 *     the handle refuses, so a revoked grant also revokes results made
 *     under it;
 *   - a record is written only after its Parquet file is complete; files
 *     without a record (a killed server) and expired handles are swept;
 *   - per user, results take at most max_bytes_per_user on disk: the
 *     user's oldest handles go first.  A result is never written past a
 *     bound: copying stops (and the query with it) once it passes the
 *     user's cap, the room left under max_bytes_total (all users' results
 *     and the writes in progress), or would leave less than min_free_bytes
 *     free on the results' disk.  A result over the user's cap alone is
 *     answered once from a second run cut to its first page (see
 *     result_owner.transient), never kept;
 *   - cells whose JSON is longer than a page's share of max_chars are cut
 *     in pages (a marker string says so); the handle keeps them whole.
 *
 * The store reads its files through its own in-memory DuckDB, locked to
 * the results directory, never through the catalog's connections, so paging
 * takes no query slot.
 *
 * Queries reach the store as a finished Parquet byte stream (the query
 * engine's `parquet` format): the store is independent of how the engine
 * runs a query.
 */
#ifndef AGNES_ENGINE_RESULT_HANDLE_H
#define AGNES_ENGINE_RESULT_HANDLE_H

#include <duckdb.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/paths.h"
#include "core/strbuf.h"

#define RESULT_HANDLE_LEN 32

/* The fewest characters a cut cell keeps, however many columns share max_chars. */
#define RESULT_CELL_MIN_CHARS 64

/* True for a well-formed handle (32 lower-case hex characters). */
bool result_handle_valid(const char *handle);

/* A fresh random handle. */
void result_handle_new(char out[RESULT_HANDLE_LEN + 1]);

/* Parquet does not hold every DuckDB result exactly: HUGEINT and UHUGEINT
 * are written as DOUBLE (sum() of a BIGINT is a HUGEINT: totals would lose
 * digits), TIME WITH TIME ZONE loses its offset, and repeated column names
 * are renamed (total, total_1).  Measured on DuckDB 1.4.4; ENUM comes back
 * as VARCHAR, ARRAY as LIST and UNION as its STRUCT with the values intact,
 * and those are kept as they come.
 *
 * result_exact_sql prepares sql on conn (the guard must have passed it) and
 * returns in *shape (new reference) what reading the result back needs:
 * {"columns": [the names as the query gives them], "restore": [per column
 * the type to cast back to, or null]} - "restore" only when a column holds
 * such a type anywhere, and then *wrapped is a SELECT over sql that writes
 * those columns as text (malloc'd), to run instead of sql.  Both stay NULL
 * when sql does not prepare: running it reports that error the usual way.
 * The shape goes into the handle's record; the readers below take it. */
int result_exact_sql(duckdb_connection conn, const char *sql, char **wrapped, json_t **shape, agnes_error *err);

/* One page of a result.  The rows stay JSON text: a 100 k-row page is
 * megabytes, and parsing it into jansson values only to print it again
 * cost ten times the read (measured: 550-850 ms against 51 ms in DuckDB). */
typedef struct result_page {
    json_t *meta; /* {columns, types, offset, row_count, total_rows, next_offset, truncated, handle?, expires_at?, note?} */
    strbuf rows;  /* the rows: a JSON array of arrays */
} result_page;

/* Read rows offset .. offset+limit-1 of the Parquet result at parquet_path
 * on conn, fewer when the rows' JSON would pass max_chars characters (at
 * least one row is returned, so paging always advances).  next_offset is
 * null after the last row; truncated says rows remain beyond this page.
 * Values are mapped as in engine/result_format.h, the same as POST
 * /api/query's JSON.  Errors: AGNES_ERR_INVALID (a column type that cannot
 * be shown, named), AGNES_ERR_DB.  Free with result_page_free. */
int result_page_read(duckdb_connection conn, const char *parquet_path, const json_t *shape, long long offset,
                     long long limit, long long max_chars, result_page *page, agnes_error *err);

/* Add what the caller needs to get the rest: handle, expires_at (ISO-8601)
 * and, when rows remain, a note naming fetch_result, the rows endpoint and
 * the download.  handle NULL: the result was not kept (over the per-user
 * cap); the note then says how to get it otherwise. */
void result_page_describe(result_page *page, const char *handle, int64_t expires_at);

/* The page as one JSON object: meta's fields, then "rows".  AGNES_ERR_NOMEM. */
int result_page_text(const result_page *page, strbuf *out, agnes_error *err);

void result_page_free(result_page *page);

typedef struct result_store {
    char dir[AGNES_PATH_MAX];
    long long ttl_seconds;
    long long max_bytes_per_user;
    long long max_bytes_total;   /* all users' results together */
    long long min_free_bytes;    /* writes stop before the disk has less free */
    long long writing;           /* guarded by lock: bytes of copies in progress */
    duckdb_database reader;      /* in-memory, may read only `dir`; opened on first use */
    pthread_mutex_t reader_lock; /* guards opening `reader` */
    pthread_mutex_t lock;        /* keep, evict, delete and sweep change the directory one at a time */
    bool ready;                  /* initialised (result_store_free is safe either way) */
    long long last_created_ns;   /* guarded by lock: records' created_ns strictly increase */
} result_store;

/* What bounds the store: results.ttl_seconds, results.max_bytes_per_user,
 * results.max_bytes_total, results.min_free_bytes (bytes; 0 disables the
 * last two). */
typedef struct result_limits {
    long long ttl_seconds, max_bytes_per_user, max_bytes_total, min_free_bytes;
} result_limits;

/* Open the store on DATA_DIR/results (created 0700: results are user data). */
int result_store_init(result_store *store, const agnes_paths *paths, const result_limits *limits, agnes_error *err);
void result_store_free(result_store *store);

/* Bytes of a finished Parquet result: the count, 0 at the end, -1 on failure (err set). */
typedef ssize_t (*result_source_read)(void *cls, char *buf, size_t max, agnes_error *err);

typedef struct result_owner {
    const char *user_id;
    bool is_admin;
    const json_t *visible; /* ids the caller may read now; NULL for admins (everything) */
    const char *sql;
    const json_t *shape;   /* from result_exact_sql, or NULL */
    /* Kept only to be read once and deleted (the first page of a result
     * over the user's cap): no eviction, record marked oversize. */
    bool transient;
} result_owner;

/* Copy the stream into a new handle owned by owner, evicting the owner's
 * oldest handles to stay within max_bytes_per_user (and the room left
 * under max_bytes_total).  *record (new reference) is {handle, created_at,
 * expires_at, expires_unix, total_rows, size_bytes, oversize, ...};
 * oversize: true for a transient result - read what is needed, then
 * result_store_delete it.
 * Copying stops as soon as a bound is passed (the caller then ends the
 * run, which kills its worker), nothing is kept, and:
 *   *over_cap = true, AGNES_ERR_INVALID: past max_bytes_per_user;
 *   AGNES_ERR_STATE: past max_bytes_total or min_free_bytes (the sentence
 *   names the setting).
 * Other errors: whatever the stream reports (its err), AGNES_ERR_IO. */
int result_store_keep(result_store *store, const result_owner *owner, result_source_read read, void *cls,
                      json_t **record, bool *over_cap, agnes_error *err);

/* Which bound a new result would meet first. */
typedef enum result_bound { RESULT_BOUND_USER, RESULT_BOUND_TOTAL, RESULT_BOUND_DISK } result_bound;

/* Bytes a new result of user_id may take now (>= 0): the least of
 * max_bytes_per_user, what max_bytes_total leaves after other users'
 * results and the writes in progress, and the free disk above
 * min_free_bytes; *which says which one that is.  The query engine is
 * given it (query_request.max_bytes), so not even the worker's own copy of
 * the result passes it. */
long long result_store_room(result_store *store, const char *user_id, result_bound *which);

/* The sentence for a result that passed `which` (naming its setting and
 * what to do): AGNES_ERR_INVALID for the user's cap, AGNES_ERR_STATE for
 * the server-wide ones. */
int result_store_bound_error(const result_store *store, result_bound which, agnes_error *err);

/* The caller's handle: its record (new reference) and Parquet path.
 * AGNES_ERR_NOT_FOUND for a malformed, unknown, expired or someone else's
 * handle (one sentence for all); AGNES_ERR_FORBIDDEN when the caller has
 * lost access since (the sentence names a table). */
int result_store_open(result_store *store, const char *handle, const char *user_id, bool is_admin,
                      const json_t *visible, json_t **record, char *path, size_t path_size, agnes_error *err);

/* result_page_read on the store's own connection; record is the handle's
 * (its "shape").  The read is bounded: rows by limit, cells by the cut
 * above, memory by the reader's memory_limit, and time by a deadline
 * (RESULT_READ_SECONDS, duckdb_interrupt; AGNES_ERR_TIMEOUT). */
#define RESULT_READ_SECONDS 30
int result_store_page(result_store *store, const char *path, const json_t *record, long long offset, long long limit,
                      long long max_chars, result_page *page, agnes_error *err);

/* Remove a handle (the caller's own; AGNES_ERR_NOT_FOUND otherwise). */
int result_store_delete(result_store *store, const char *handle, const char *user_id, agnes_error *err);

/* The user's live handles, newest first: [{handle, created_at, expires_at, total_rows, size_bytes, sql}]. */
json_t *result_store_list(result_store *store, const char *user_id);

/* Remove expired handles and files a killed server left half-written.
 * Cheap (one directory scan); `agnes serve` runs it every minute. */
void result_store_sweep(result_store *store);

/* The whole result as CSV, produced a chunk at a time (for downloads), in
 * the same text as POST /api/query's csv format. */
typedef struct result_csv result_csv;
int result_csv_open(result_store *store, const char *path, const json_t *record, result_csv **out, agnes_error *err);
/* Up to max bytes: the count, 0 at the end, -1 on failure (err set). */
ssize_t result_csv_read(result_csv *csv, char *buf, size_t max, agnes_error *err);
void result_csv_free(result_csv *csv);

#endif
