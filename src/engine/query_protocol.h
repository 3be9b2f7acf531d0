/*
 * query_protocol.h - how the server talks to a query worker process.
 *
 * Why workers at all: DuckDB cannot stop every query shape in-process.  A
 * statement can hang inside duckdb_prepare() (binding a JSON path forty
 * levels deep), where duckdb_interrupt() does not reach, and some shapes
 * allocate outside the buffer manager's memory_limit (list_transform over
 * range(100000000) took 10 GB with a 2 GB limit).  So every /api/query runs
 * in a separate process the server can kill: exec'd (never forked from the
 * threaded server), with an RLIMIT_DATA cap, watched for its RSS and its
 * deadline by the query pool (query_pool.h).
 *
 * The channel is one AF_UNIX stream socket, inherited by the worker as
 * file descriptor 3.  Everything on it is a frame:
 *
 *     u8 type | u32 length (little-endian) | length bytes of payload
 *
 * with length <= QUERY_FRAME_MAX.  JSON payloads are UTF-8 objects.
 *
 *   server -> worker
 *     'I' INIT   {generation, role: "admin"|"analyst", memory_limit,
 *                 memory_limit_bytes, threads, tmp_dir, remote_timeout,
 *                 token_envs, credentials: {VAR: value}, catalog: {...}}
 *                (query_sandbox.h describes `catalog`); sent once, first.
 *     'Q' QUERY  {sql, limit, format, request_id, exact}  (exact: parquet
 *                for a result handle, engine/result_handle.h)
 *
 *   worker -> server
 *     'R' READY  {}                       INIT done; queries may follow
 *     'F' FAILED {code, message}          INIT failed; the worker exits
 *     'E' ERROR  {code, message}          the query was refused or failed
 *                                         before its first byte
 *     'H' HEAD   {truncated: bool|null, shape?, complete?}  the query
 *                                         runs; the body follows (shape:
 *                                         with exact).  truncated is known
 *                                         when the whole answer (or the row
 *                                         past the limit) was read ahead,
 *                                         else null.  complete: true when
 *                                         the whole body (at most
 *                                         QUERY_DATA_FRAME bytes, one DATA
 *                                         frame or none) and END were
 *                                         written with HEAD, in one write
 *     'D' DATA   body bytes, in order
 *     'Z' END    {rows, truncated}        the body is complete
 *     'X' ABORT  {code, message}          the body failed halfway
 *
 *   code is an agnes_status name ("invalid", "forbidden", "timeout", ...).
 *
 * Invariants:
 *  - A worker runs one query at a time, start to end: after QUERY it sends
 *    exactly one of ERROR, or HEAD DATA* (END | ABORT), then waits for the
 *    next QUERY.  So the server never needs to cancel politely: a query
 *    past its deadline or memory cap is ended by SIGKILL of its worker, and
 *    the server sees end-of-file where it expected a frame.
 *  - A worker serves one engine for its whole life: one role, one catalog
 *    generation, one grant set.  The server keys idle workers by that and
 *    never sends a worker a query for another engine.
 *  - The server reads a worker's output only while it owns the worker's
 *    slot; an unread or half-read worker is killed, never reused.
 *  - Secrets (connection strings) travel only in INIT, never in argv or the
 *    environment, and only those the worker's engine may use.
 */
#ifndef AGNES_ENGINE_QUERY_PROTOCOL_H
#define AGNES_ENGINE_QUERY_PROTOCOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/strbuf.h"

/* The worker's end of the channel. */
#define QUERY_WORKER_FD 3
/* Largest payload of one frame (bigger bodies go in several DATA frames). */
#define QUERY_FRAME_MAX (16u * 1024 * 1024)
/* DATA frames are cut at this size, so the server relays while the worker works. */
#define QUERY_DATA_FRAME (256u * 1024)

enum query_frame_type {
    QUERY_FRAME_INIT = 'I',
    QUERY_FRAME_QUERY = 'Q',
    QUERY_FRAME_READY = 'R',
    QUERY_FRAME_FAILED = 'F',
    QUERY_FRAME_ERROR = 'E',
    QUERY_FRAME_HEAD = 'H',
    QUERY_FRAME_DATA = 'D',
    QUERY_FRAME_END = 'Z',
    QUERY_FRAME_ABORT = 'X',
};

/* Write one frame, all of it (EINTR retried; a closed peer is AGNES_ERR_IO,
 * never SIGPIPE). */
int query_frame_write(int fd, char type, const void *data, size_t len, agnes_error *err);

/* A JSON object as one frame (the object is not consumed). */
int query_frame_write_json(int fd, char type, const json_t *object, agnes_error *err);

/* {code, message} as one frame of `type` (ERROR, ABORT, FAILED). */
int query_frame_write_error(int fd, char type, int code, const char *message, agnes_error *err);

/* Read one frame into payload (reset first).  AGNES_ERR_NOT_FOUND at a
 * clean end-of-file before the frame's first byte; AGNES_ERR_IO otherwise. */
int query_frame_read(int fd, char *type, strbuf *payload, agnes_error *err);

/* Frames gathered to go in one write: a small answer's HEAD, DATA and END
 * reach the server together, so it wakes once instead of three times (on
 * a small virtual machine each wake-up costs more than the query's own
 * formatting).  Append, then send; the batch is reset after a send. */
int query_frame_append(strbuf *batch, char type, const void *data, size_t len, agnes_error *err);
int query_frame_append_json(strbuf *batch, char type, const json_t *object, agnes_error *err);
int query_frame_send(int fd, strbuf *batch, agnes_error *err);

/* The server's reading end of a channel, buffered: one read() takes every
 * frame the worker has written so far, where query_frame_read() would
 * make two calls per frame.  Bytes read ahead belong to the reader, so one
 * reader must be used for all the frames of a query (engine/query.c keeps
 * one per run; the protocol sends nothing between END and the next QUERY). */
typedef struct query_frame_reader {
    int fd;
    char *buffer;
    size_t start, end, capacity;
} query_frame_reader;

void query_frame_reader_init(query_frame_reader *reader, int fd);
void query_frame_reader_free(query_frame_reader *reader);
/* As query_frame_read(). */
int query_frame_reader_next(query_frame_reader *reader, char *type, strbuf *payload, agnes_error *err);
/* Bytes read but not yet handed out as a frame. */
size_t query_frame_reader_pending(const query_frame_reader *reader);

/* A frame's payload as a JSON object (new reference), or NULL. */
json_t *query_frame_json(const strbuf *payload);

/* The agnes_status of a code name sent in a frame (AGNES_ERR_DB when unknown). */
int query_status_from_name(const char *name);

/* Cut text to at most max bytes (max >= 1, room for the NUL included)
 * without splitting a UTF-8 sequence, and drop an incomplete sequence that
 * an earlier cut left at its end, so the result is valid text when the
 * input was. */
void query_utf8_truncate(char *text, size_t max);

/* Replace every byte that is not part of valid UTF-8 with '?', in place:
 * DuckDB's messages can quote a cut multi-byte character ("Unrecognized
 * Regex option \xE8"), and a JSON answer must be valid text. */
void query_utf8_sanitize(char *text);

#endif
