/*
 * sync.h - sync runs: POST /api/sync/trigger and GET /api/sync/status/{run_id}.
 *
 * A trigger answers at once with a run id; the run works on a thread of its
 * own, one source after another, then rebuilds the catalog.  A source is
 * never synced by two runs at once: a trigger naming a source that is busy
 * joins the running run for it (its tables point at that run id).  Runs
 * are kept in memory (the last SYNC_RUNS_KEPT); every table outcome also
 * lands in sync_state / sync_history, which survive restarts.
 */
#ifndef AGNES_HTTP_SYNC_H
#define AGNES_HTTP_SYNC_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "http/http.h"

#define SYNC_RUNS_KEPT 50
#define SYNC_BUSY_MAX 64

typedef struct sync_runs {
    pthread_mutex_t lock;
    json_t *runs;                      /* newest last: {run_id, state, started_at, finished_at, tables, sources} */
    char busy[SYNC_BUSY_MAX][65];      /* sources being synced now */
    char busy_run[SYNC_BUSY_MAX][40];  /* ... and by which run */
    int running_threads;
    atomic_bool stopping; /* set at shutdown: connectors are stopped */
    int64_t discovery_attempted_at; /* unix seconds of the scheduler's last auto-discovery run, -1 never */
    /* Sources released by finished runs so far.  The scheduler reads the
     * sync facts before it takes the lock; a release in between means those
     * facts predate what the run just recorded (see sync_schedule_tick). */
    unsigned long releases;
} sync_runs;

int sync_runs_init(sync_runs *runs);
/* True while a sync run's thread is working (from its start until after the
 * catalog rebuild that ends it); false for NULL (no server). */
bool sync_runs_any_running(sync_runs *runs);
/* Waits up to grace_seconds for running runs; false (and nothing freed)
 * when one is still running - the process is exiting, leave it be. */
bool sync_runs_free(sync_runs *runs, double grace_seconds);

/* The newest runs (new reference), for GET /api/sync/status. */
json_t *sync_runs_recent(sync_runs *runs, size_t max);

/* The scheduler's check (the serve tick calls it): start one run for every
 * registered table whose sync_schedule (or sync.default_schedule) is due,
 * judged against its last successful sync, failed attempts retried with
 * backoff (core/schedule.h), skipping local tables and busy sources. */
void sync_schedule_tick(http_context *ctx);

void sync_handle_trigger(http_context *ctx, const http_request *req, http_response *resp);
void sync_handle_run_status(http_context *ctx, const http_request *req, http_response *resp);

#endif
