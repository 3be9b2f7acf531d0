/*
 * query_worker.h - the query worker process (`agnes query-worker`), and the
 * engine it holds.
 *
 * The server starts a worker per engine it needs (query_pool.h) and talks
 * to it over file descriptor 3 (query_protocol.h).  A worker builds one
 * engine from its INIT message and then runs queries on it one at a time:
 *
 *   admin    the whole catalog, locked down (analytics_open_engine)
 *   analyst  the probe (the guard's view of the catalog) and the sandbox of
 *            the caller's grant set (query_sandbox.h); every query is
 *            checked by the guard on the probe, then runs in the sandbox
 *
 * Each query runs on a fresh connection, so nothing one query creates (a
 * PIVOT's temporary enum type) is seen by the next.
 *
 * Limits the worker sets on itself before DuckDB allocates anything:
 * RLIMIT_DATA at the query memory limit plus a margin and 16 MB per DuckDB
 * thread for its stack (an allocation past
 * it fails inside DuckDB with "Out of Memory", answered as a 400), no core
 * files (they would hold query data), and an exit within a second of the
 * server's.  The server watches RSS and the deadline and kills a
 * worker that passes either.
 */
#ifndef AGNES_ENGINE_QUERY_WORKER_H
#define AGNES_ENGINE_QUERY_WORKER_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"

/* RLIMIT_DATA above the DuckDB memory limit: room for thread stacks, the
 * allocator's arenas and the formatted output (measured: an idle worker
 * with 16 threads maps ~200 MB of data). */
#define QUERY_WORKER_DATA_MARGIN (512LL * 1024 * 1024)

typedef struct query_engine query_engine;

/* Build the engine an INIT message describes (query_protocol.h). */
int query_engine_open(const json_t *init, query_engine **out, agnes_error *err);
void query_engine_close(query_engine *engine);

/* For test tools only, to prove wall (a) alone: an analyst's engine whose
 * guard is the analyst's but whose database is the admin engine (the whole
 * catalog), so nothing but the guard stands between a query and every
 * table.  The worker process never builds one. */
int query_engine_open_guard_only(const json_t *analyst_init, const json_t *admin_init, query_engine **out,
                                 agnes_error *err);

/* Run one QUERY message {sql, limit, format, request_id} and write its
 * frames (ERROR, or HEAD DATA* END|ABORT) to fd.  guard=false skips wall
 * (a) so tests can prove wall (b) alone: only test tools pass false (the
 * worker protocol cannot ask for it).  Fails only when fd cannot be
 * written. */
int query_engine_run(query_engine *engine, const json_t *query, bool guard, int fd, agnes_error *err);

/* Make the next query's connection now, while nothing waits for it
 * (query_engine_run does this after each answer; the worker after READY).
 * Failure is silent: the next run connects itself and reports it. */
void query_engine_prepare(query_engine *engine);

/* The worker process: read INIT and QUERY frames from fd until it closes,
 * and exit when the server (process id `server`, its parent) is gone.  The
 * server is named, not inferred: "reparented to pid 1" is no sign of a dead
 * server when the server itself is pid 1, as in a container.  Returns the
 * process exit status. */
int query_worker_main(int fd, pid_t server);

#endif
