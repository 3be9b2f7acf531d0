/*
 * query_pool.h - the query worker processes /api/query runs in, and the
 * limits on them.
 *
 * A slot is a right to run one query; the pool has query.max_concurrent of
 * them.  Each slot may keep a worker process (query_worker.h) between
 * queries: a worker is built for one engine - the admin engine, or the
 * sandbox of one grant set - on one catalog snapshot, and is reused by the
 * next query that needs the same engine.  The pool is the one place that
 * sees every running query, so the limits live here:
 *
 *   per-user cap   a user may hold at most max_per_user slots (429 at once)
 *   server cap     slot_count queries in all; a query waits up to 5 s for a
 *                  slot before it is told 429
 *   deadline       the watchdog SIGKILLs the worker of a slot whose deadline
 *                  passed (checked every 50 ms, so a query ends within a
 *                  tick of its deadline, in whatever stage: parse, bind,
 *                  execution or streaming).  The deadline covers the whole
 *                  response from the moment the query's engine is ready;
 *                  building an engine (a new worker) has its own bound of
 *                  QUERY_WORKER_START_SECONDS, as it depends on the catalog,
 *                  not on the caller's SQL.
 *   memory         each worker caps its own data segment (RLIMIT_DATA) at
 *                  the memory limit plus QUERY_WORKER_DATA_MARGIN, and the
 *                  watchdog SIGKILLs a worker whose RSS passes the memory
 *                  limit plus the same margin, so the queries together hold
 *                  at most slot_count x (limit + margin)
 *   freshness      an admin worker made on an older catalog snapshot is
 *                  replaced on its next use and dropped when idle; an
 *                  analyst's is keyed by a digest of what its sandbox holds,
 *                  so a rebuild replaces it only when their tables changed;
 *                  idle workers exit after QUERY_WORKER_IDLE_SECONDS
 *
 * Invariants: a slot's worker is read and written only by the thread that
 * acquired the slot; every worker the pool started is reaped by the pool
 * (waitpid on its pid, never on -1); a worker is reused only after it
 * finished its last query cleanly.
 */
#ifndef AGNES_ENGINE_QUERY_POOL_H
#define AGNES_ENGINE_QUERY_POOL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/credentials.h"
#include "core/error.h"
#include "core/paths.h"
#include "engine/analytics.h"

#define QUERY_WORKER_IDLE_SECONDS 120
/* Longest a worker may take to build its engine (at least the query timeout). */
#define QUERY_WORKER_START_SECONDS 30

typedef struct query_worker_handle {
    pid_t pid; /* 0: none */
    int fd;    /* the server's end of the channel */
    unsigned long long generation; /* admin: the catalog snapshot it opened; 0 otherwise */
    char *key; /* the engine: "admin@<generation>" or "analyst:<digest>" */
} query_worker_handle;

typedef struct query_slot {
    query_worker_handle worker;
    bool busy;
    bool timed_out;     /* the watchdog killed the worker at the deadline */
    bool out_of_memory; /* ... or for its RSS */
    bool starting;      /* its worker is building its engine */
    double deadline_ms; /* util_monotonic_ms() clock */
    double last_used_ms;
    long long peak_rss_bytes; /* of the current query's worker */
    char user_id[64];
} query_slot;

typedef struct query_pool_options {
    size_t slot_count;
    int max_per_user;
    double timeout_seconds;
    const char *memory_limit; /* DuckDB syntax: "2GB", "512MB" */
    int threads;              /* DuckDB threads per worker; 0: DuckDB's default */
    int remote_timeout_seconds;
    const char *log_level;
} query_pool_options;

/* Grant sets remembered between queries (see query_pool_grants_get). */
#define QUERY_GRANT_CACHE_SLOTS 128

typedef struct query_grant_entry {
    bool used;
    unsigned generation;
    char user_id[64];
    json_t *visible;
} query_grant_entry;

typedef struct query_pool {
    pthread_mutex_t lock;      /* guards every slot field and `stopping` */
    pthread_cond_t wake;       /* stops the watchdog */
    pthread_cond_t slot_freed; /* a slot became idle */
    pthread_t watchdog;
    bool watchdog_started;
    bool stopping;
    analytics *analytics;
    credentials *credentials;
    const agnes_paths *paths;
    query_slot *slots;
    size_t slot_count;
    int max_per_user;
    double timeout_ms;
    char memory_limit[32];
    long long memory_limit_bytes;
    long long rss_cap_bytes;
    int threads;
    int remote_timeout_seconds;
    char log_level[16];
    char exe[AGNES_PATH_MAX]; /* this program, which workers run */
    query_grant_entry grants[QUERY_GRANT_CACHE_SLOTS]; /* guarded by lock */
} query_pool;

/* Who runs a query, and what they may read (NULL visible: nothing). */
typedef struct query_caller {
    const char *user_id;
    bool is_admin; /* the admin engine: the whole catalog */
    const json_t *visible;
} query_caller;

int query_pool_init(query_pool *pool, analytics *catalog, credentials *store, const agnes_paths *paths,
                    const query_pool_options *options, agnes_error *err);

/* A slot for the caller whose worker is ready for the caller's engine.
 * AGNES_ERR_BUSY when the user or the server is at its limit,
 * AGNES_ERR_STATE when there is no catalog yet, AGNES_ERR_TIMEOUT when the
 * worker could not start before the deadline, AGNES_ERR_DB when it failed. */
int query_pool_acquire(query_pool *pool, const query_caller *caller, query_slot **out, agnes_error *err);

/* Give the slot back; keep its worker only when `reusable` (it finished a
 * query cleanly and nobody killed it). */
void query_pool_release(query_pool *pool, query_slot *slot, bool reusable);

/* Why the slot's worker vanished: AGNES_ERR_TIMEOUT or AGNES_ERR_INVALID
 * (memory) with the sentence to show, else AGNES_ERR_DB. */
int query_pool_why_ended(query_pool *pool, const query_slot *slot, agnes_error *err);

/* A caller's grant set as it was read at `generation` (system.duckdb's
 * write generation, store/system_db.h), or NULL: a new reference.  Reading
 * grants costs a DuckDB connection and a join per query - more than the
 * rest of a small query - and any write (a grant, a membership, a user)
 * moves the generation on, so a remembered set is never stale. */
json_t *query_pool_grants_get(query_pool *pool, const char *user_id, unsigned generation);
void query_pool_grants_put(query_pool *pool, const char *user_id, unsigned generation, json_t *visible);

/* The INIT message (query_protocol.h) of the caller's engine on snapshot:
 * what a worker builds its engine from.  New reference, NULL on failure. */
json_t *query_pool_init_message(const query_pool *pool, const analytics_snapshot *snapshot,
                                const query_caller *caller);

/* Queries running now (for health). */
size_t query_pool_running(query_pool *pool);

/* Stop the watchdog, end every worker (no slot may be busy). */
void query_pool_free(query_pool *pool);

/* Parse a DuckDB memory size ("2GB", "512MB", "1.5GiB", "80%" of RAM) into
 * bytes; false when it is not one. */
bool query_pool_parse_memory(const char *text, long long *bytes);

/* Remove what killed workers left in DATA_DIR/tmp (run at start). */
void query_pool_sweep(const agnes_paths *paths);

#endif
