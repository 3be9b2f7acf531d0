/*
 * query_pool.h - the read connections /api/query runs on.
 *
 * One slot per HTTP worker thread, each holding a connection to the
 * catalog snapshot it was made on.  The pool is also where the limits
 * live, because it is the one place that sees every running query:
 *
 *   per-user cap   a user may hold at most max_per_user slots (429 at once)
 *   server cap     slot_count queries in all; a query waits up to 5 s for
 *                  a slot before it is told 429
 *   deadline       a watchdog thread calls duckdb_interrupt() on a slot
 *                  whose deadline passed (408); the deadline covers the
 *                  whole response, streaming included
 *   freshness      a slot made on an older snapshot reconnects on its next
 *                  use, and idle stale slots are dropped by the watchdog,
 *                  so a rebuilt catalog is never served late and an old
 *                  one is closed once no query needs it
 */
#ifndef AGNES_ENGINE_QUERY_POOL_H
#define AGNES_ENGINE_QUERY_POOL_H

#include <duckdb.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/error.h"
#include "engine/analytics.h"

typedef struct query_slot {
    duckdb_connection connection;  /* NULL until first use */
    duckdb_connection parser;      /* on the pool's parser database: for the guard */
    analytics_snapshot *snapshot;  /* the snapshot `connection` belongs to (a reference is held) */
    bool busy;
    bool timed_out;                /* the watchdog interrupted it */
    double deadline_ms;            /* util_monotonic_ms() clock */
    char user_id[64];
} query_slot;

typedef struct query_pool {
    pthread_mutex_t lock; /* guards every slot field and `stopping` */
    pthread_cond_t wake;       /* stops the watchdog */
    pthread_cond_t slot_freed; /* a slot became idle */
    pthread_t watchdog;
    bool watchdog_started;
    bool stopping;
    analytics *analytics;
    /* An empty in-memory DuckDB on one thread, where the guard parses SQL
     * (json_serialize_sql needs no catalog): a tiny query there costs no
     * thread wake-ups on the catalog's scheduler. */
    duckdb_database parser_db;
    query_slot *slots;
    size_t slot_count;
    int max_per_user;
    double timeout_ms;
} query_pool;

int query_pool_init(query_pool *pool, analytics *catalog, size_t slot_count, int max_per_user, double timeout_seconds,
                    agnes_error *err);

/* A slot with a connection to the current snapshot, for `user_id`.
 * AGNES_ERR_BUSY when the user or the server is at its limit,
 * AGNES_ERR_STATE when there is no catalog yet. */
int query_pool_acquire(query_pool *pool, const char *user_id, query_slot **out, agnes_error *err);
void query_pool_release(query_pool *pool, query_slot *slot);

/* True once the watchdog has interrupted the slot's query. */
bool query_pool_timed_out(query_pool *pool, const query_slot *slot);

/* Queries running now (for health). */
size_t query_pool_running(query_pool *pool);

/* Stop the watchdog and close every connection (no slot may be busy). */
void query_pool_free(query_pool *pool);

#endif
