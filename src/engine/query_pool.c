#include "engine/query_pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "store/duck.h"

#define WATCHDOG_TICK_MS 50
/* How long a query waits for a free slot before the server says 429. */
#define SLOT_WAIT_MS 5000

/* Drop the slot's connection and its snapshot reference.  Pool lock held. */
static void slot_disconnect(query_pool *pool, query_slot *slot)
{
    if (slot->connection != NULL)
        duckdb_disconnect(&slot->connection);
    analytics_release(pool->analytics, slot->snapshot);
    slot->snapshot = NULL;
}

/* Point an idle slot at the current snapshot.  Pool lock held. */
static int slot_refresh(query_pool *pool, query_slot *slot, agnes_error *err)
{
    analytics_snapshot *current = analytics_acquire(pool->analytics);
    if (current == NULL) {
        slot_disconnect(pool, slot);
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "There is no catalog yet. An admin can build it with POST /api/admin/rebuild (or "
                               "`agnes rebuild`).");
    }
    if (current == slot->snapshot && slot->connection != NULL) {
        analytics_release(pool->analytics, current); /* the slot already holds one */
        return AGNES_OK;
    }
    slot_disconnect(pool, slot);
    slot->snapshot = current;
    if (duckdb_connect(current->database, &slot->connection) != DuckDBSuccess) {
        slot->connection = NULL;
        slot_disconnect(pool, slot);
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the catalog snapshot");
    }
    return AGNES_OK;
}

static void watchdog_tick(query_pool *pool)
{
    double now = util_monotonic_ms();
    analytics_snapshot *current = analytics_acquire(pool->analytics);
    for (size_t i = 0; i < pool->slot_count; i++) {
        query_slot *slot = &pool->slots[i];
        if (slot->busy && !slot->timed_out && now >= slot->deadline_ms) {
            slot->timed_out = true;
            duckdb_interrupt(slot->connection);
        } else if (!slot->busy && slot->snapshot != NULL && slot->snapshot != current) {
            slot_disconnect(pool, slot);
        }
    }
    analytics_release(pool->analytics, current);
}

static struct timespec deadline_after_ms(long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

static void *watchdog_main(void *arg)
{
    query_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    while (!pool->stopping) {
        struct timespec until = deadline_after_ms(WATCHDOG_TICK_MS);
        int rc = pthread_cond_timedwait(&pool->wake, &pool->lock, &until);
        if (rc == ETIMEDOUT || rc == 0)
            watchdog_tick(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* The parser database and the slot's connection to it, made on first use:
 * opening a DuckDB costs ~15 ms, which a start should not pay for queries
 * that may never come.  Pool lock held. */
static int ensure_parser(query_pool *pool, query_slot *slot, agnes_error *err)
{
    if (pool->parser_db == NULL) {
        duckdb_database db = NULL;
        duckdb_connection conn = NULL;
        if (duck_open(NULL, false, &db, err) != AGNES_OK)
            return err->code;
        int rc = duckdb_connect(db, &conn) == DuckDBSuccess
                     ? duck_exec(conn, "SET threads = 1; SET enable_external_access = false; SET lock_configuration = true",
                                 err)
                     : agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the parser database");
        if (conn != NULL)
            duckdb_disconnect(&conn);
        if (rc != AGNES_OK) {
            duckdb_close(&db);
            return rc;
        }
        pool->parser_db = db;
    }
    if (slot->parser == NULL && duckdb_connect(pool->parser_db, &slot->parser) != DuckDBSuccess) {
        slot->parser = NULL;
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the parser database");
    }
    return AGNES_OK;
}

int query_pool_init(query_pool *pool, analytics *catalog, size_t slot_count, int max_per_user, double timeout_seconds,
                    agnes_error *err)
{
    memset(pool, 0, sizeof *pool);
    pool->analytics = catalog;
    pool->slot_count = slot_count;
    pool->max_per_user = max_per_user;
    pool->timeout_ms = timeout_seconds * 1000.0;
    if ((pool->slots = calloc(slot_count, sizeof *pool->slots)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&pool->lock, NULL) != 0 || pthread_cond_init(&pool->wake, NULL) != 0 ||
        pthread_cond_init(&pool->slot_freed, NULL) != 0) {
        free(pool->slots);
        pool->slots = NULL;
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create the query pool's lock");
    }
    if (pthread_create(&pool->watchdog, NULL, watchdog_main, pool) != 0) {
        query_pool_free(pool);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the query watchdog thread");
    }
    pool->watchdog_started = true;
    return AGNES_OK;
}

/* The user's running count and the first idle slot.  Pool lock held. */
static query_slot *scan_slots(query_pool *pool, const char *user_id, int *mine)
{
    query_slot *idle = NULL;
    *mine = 0;
    for (size_t i = 0; i < pool->slot_count; i++) {
        query_slot *slot = &pool->slots[i];
        if (slot->busy && strcmp(slot->user_id, user_id) == 0)
            (*mine)++;
        else if (!slot->busy && idle == NULL)
            idle = slot;
    }
    return idle;
}

int query_pool_acquire(query_pool *pool, const char *user_id, query_slot **out, agnes_error *err)
{
    int rc = AGNES_OK;
    int mine = 0;
    *out = NULL;
    pthread_mutex_lock(&pool->lock);
    query_slot *slot = scan_slots(pool, user_id, &mine);
    /* A full server is nobody's fault: wait a little for a slot.  A user
     * over their own cap is told at once. */
    struct timespec until = deadline_after_ms(SLOT_WAIT_MS);
    while (slot == NULL && mine < pool->max_per_user &&
           pthread_cond_timedwait(&pool->slot_freed, &pool->lock, &until) == 0)
        slot = scan_slots(pool, user_id, &mine);
    if (mine >= pool->max_per_user)
        rc = agnes_error_set(err, AGNES_ERR_BUSY,
                             "You already have %d queries running, the most one user may run at once. Wait for one "
                             "to finish, then retry.",
                             mine);
    else if (slot == NULL)
        rc = agnes_error_set(err, AGNES_ERR_BUSY,
                             "The server is running its maximum of %zu queries. Retry in a few seconds.",
                             pool->slot_count);
    else if ((rc = ensure_parser(pool, slot, err)) == AGNES_OK && (rc = slot_refresh(pool, slot, err)) == AGNES_OK) {
        slot->busy = true;
        slot->timed_out = false;
        slot->deadline_ms = util_monotonic_ms() + pool->timeout_ms;
        snprintf(slot->user_id, sizeof slot->user_id, "%s", user_id);
        *out = slot;
    }
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

void query_pool_release(query_pool *pool, query_slot *slot)
{
    if (slot == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    /* An interrupt that raced the query's end would hit the next query:
     * a fresh connection is cheaper than reasoning about that. */
    if (slot->timed_out)
        slot_disconnect(pool, slot);
    slot->busy = false;
    slot->user_id[0] = '\0';
    pthread_cond_broadcast(&pool->slot_freed);
    pthread_mutex_unlock(&pool->lock);
}

bool query_pool_timed_out(query_pool *pool, const query_slot *slot)
{
    pthread_mutex_lock(&pool->lock);
    bool timed_out = slot->timed_out;
    pthread_mutex_unlock(&pool->lock);
    return timed_out;
}

size_t query_pool_running(query_pool *pool)
{
    size_t running = 0;
    pthread_mutex_lock(&pool->lock);
    for (size_t i = 0; i < pool->slot_count; i++)
        running += pool->slots[i].busy ? 1 : 0;
    pthread_mutex_unlock(&pool->lock);
    return running;
}

void query_pool_free(query_pool *pool)
{
    if (pool->slots == NULL)
        return;
    if (pool->watchdog_started) {
        pthread_mutex_lock(&pool->lock);
        pool->stopping = true;
        pthread_cond_signal(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
        pthread_join(pool->watchdog, NULL);
    }
    for (size_t i = 0; i < pool->slot_count; i++) {
        slot_disconnect(pool, &pool->slots[i]);
        if (pool->slots[i].parser != NULL)
            duckdb_disconnect(&pool->slots[i].parser);
    }
    if (pool->parser_db != NULL)
        duckdb_close(&pool->parser_db);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->slot_freed);
    pthread_mutex_destroy(&pool->lock);
    free(pool->slots);
    pool->slots = NULL;
}
