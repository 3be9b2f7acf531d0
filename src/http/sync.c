#include "http/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/schedule.h"
#include "core/util.h"
#include "http/auth.h"
#include "http/catalog_admin.h"
#include "store/registry.h"
#include "store/sync_state.h"
#include "store/users.h"
#include "sync/connector.h"
#include "sync/discovery.h"
#include "sync/local_files.h"
#include "sync/runner.h"
#include "sync/source_settings.h"

/* ---- the run table (all under runs->lock) ------------------------------ */

int sync_runs_init(sync_runs *runs)
{
    memset(runs, 0, sizeof *runs);
    runs->discovery_attempted_at = -1;
    runs->runs = json_array();
    return runs->runs != NULL && pthread_mutex_init(&runs->lock, NULL) == 0 ? 0 : -1;
}

bool sync_runs_free(sync_runs *runs, double grace_seconds)
{
    if (runs->runs == NULL)
        return true;
    double deadline = util_monotonic_ms() + grace_seconds * 1000.0;
    atomic_store(&runs->stopping, true); /* running connectors are stopped; their tables keep the last good data */
    for (;;) { /* a run thread uses the context: let it finish */
        pthread_mutex_lock(&runs->lock);
        int running = runs->running_threads;
        pthread_mutex_unlock(&runs->lock);
        if (running == 0)
            break;
        if (util_monotonic_ms() >= deadline) {
            log_warn("msg=\"exiting with a sync still running; its tables keep their last good data\" runs=%d",
                     running);
            return false;
        }
        usleep(50 * 1000);
    }
    json_decref(runs->runs);
    runs->runs = NULL;
    pthread_mutex_destroy(&runs->lock);
    return true;
}

static json_t *find_run(sync_runs *runs, const char *run_id)
{
    size_t i;
    json_t *run;
    json_array_foreach(runs->runs, i, run) {
        if (strcmp(json_string_value(json_object_get(run, "run_id")), run_id) == 0)
            return run;
    }
    return NULL;
}

bool sync_runs_any_running(sync_runs *runs)
{
    if (runs == NULL)
        return false;
    pthread_mutex_lock(&runs->lock);
    bool running = runs->running_threads > 0;
    pthread_mutex_unlock(&runs->lock);
    return running;
}

json_t *sync_runs_recent(sync_runs *runs, size_t max)
{
    pthread_mutex_lock(&runs->lock);
    json_t *recent = json_array();
    size_t count = json_array_size(runs->runs);
    for (size_t i = count > max ? count - max : 0; i < count; i++)
        json_array_append_new(recent, json_deep_copy(json_array_get(runs->runs, i)));
    pthread_mutex_unlock(&runs->lock);
    return recent;
}

/* The run currently syncing `source`, or NULL. */
static const char *busy_with(sync_runs *runs, const char *source)
{
    for (int i = 0; i < SYNC_BUSY_MAX; i++)
        if (runs->busy[i][0] != '\0' && strcmp(runs->busy[i], source) == 0)
            return runs->busy_run[i];
    return NULL;
}

static bool claim_source(sync_runs *runs, const char *source, const char *run_id)
{
    for (int i = 0; i < SYNC_BUSY_MAX; i++) {
        if (runs->busy[i][0] == '\0') {
            snprintf(runs->busy[i], sizeof runs->busy[i], "%s", source);
            snprintf(runs->busy_run[i], sizeof runs->busy_run[i], "%s", run_id);
            return true;
        }
    }
    return false;
}

static void release_source(sync_runs *runs, const char *source)
{
    pthread_mutex_lock(&runs->lock);
    for (int i = 0; i < SYNC_BUSY_MAX; i++)
        if (strcmp(runs->busy[i], source) == 0)
            runs->busy[i][0] = runs->busy_run[i][0] = '\0';
    runs->releases++;
    pthread_mutex_unlock(&runs->lock);
}

/* Copy a source's outcome into the run's table entries. */
static void record_outcome(sync_runs *runs, const char *run_id, const json_t *outcome)
{
    pthread_mutex_lock(&runs->lock);
    json_t *run = find_run(runs, run_id);
    size_t i, j;
    json_t *entry, *result;
    json_array_foreach(json_object_get(run, "tables"), i, entry) {
        json_array_foreach(json_object_get(outcome, "tables"), j, result) {
            if (strcmp(json_string_value(json_object_get(entry, "table_id")),
                       json_string_value(json_object_get(result, "table_id"))) == 0) {
                json_object_update(entry, result);
                if (json_object_get(result, "duration_ms") == NULL) /* connectors that time only the whole source */
                    json_object_set(entry, "duration_ms", json_object_get(outcome, "duration_ms"));
            }
        }
    }
    pthread_mutex_unlock(&runs->lock);
}

static void set_source_state(sync_runs *runs, const char *run_id, const char *source, const char *state)
{
    pthread_mutex_lock(&runs->lock);
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(find_run(runs, run_id), "tables"), i, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "source")), source) == 0)
            json_object_set_new(entry, "state", json_string(state));
    }
    pthread_mutex_unlock(&runs->lock);
}

/* ---- running ------------------------------------------------------------ */

typedef struct run_job {
    http_context *ctx;
    char run_id[40];
    json_t *sources; /* {source: [registry rows]} of the sources this run owns */
    char discover_source[64]; /* non-empty: register this source's tables first (nothing was registered) */
} run_job;

/* The first sync of a configured source with an empty registry discovers
 * and registers its tables, then syncs them (the seed's promise). */
static void discover_first(run_job *job)
{
    http_context *ctx = job->ctx;
    discovery_options options = {.registered_by = "auto-discovery"};
    json_t *summary = NULL, *all = NULL, *rows = json_array();
    duckdb_connection conn = NULL;
    agnes_error err;
    int rc = discovery_register(ctx->runtime, ctx->db, &options, &summary, &err);
    if (rc == AGNES_OK)
        rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = registry_list_json(conn, &all, &err);
    if (conn)
        duckdb_disconnect(&conn);
    pthread_mutex_lock(&ctx->sync_runs->lock);
    json_t *run = find_run(ctx->sync_runs, job->run_id);
    if (rc != AGNES_OK) {
        json_object_set_new(run, "error", json_string(err.message));
        log_warn("msg=\"auto-discovery failed\" source=%s detail=\"%s\"", job->discover_source, err.message);
    } else {
        json_object_set(run, "discovered", summary);
        char note[300];
        snprintf(note, sizeof note,
                 "Nothing was registered for the configured source '%s': its tables were discovered, %lld registered "
                 "and synced in this run (auto-discovery).",
                 job->discover_source, (long long)json_integer_value(json_object_get(summary, "registered")));
        json_object_set_new(run, "message", json_string(note));
        size_t i;
        json_t *row;
        json_array_foreach(all, i, row) {
            if (strcmp(json_string_value(json_object_get(row, "source_type")), job->discover_source) != 0)
                continue;
            json_array_append(rows, row);
            json_array_append_new(json_object_get(run, "tables"),
                                  json_pack("{s:O, s:s, s:s}", "table_id", json_object_get(row, "id"), "source",
                                            job->discover_source, "state", "queued"));
        }
    }
    json_object_set_new(job->sources, job->discover_source, rows);
    pthread_mutex_unlock(&ctx->sync_runs->lock);
    json_decref(summary);
    json_decref(all);
}

/* Durable start markers: a run killed with the server shows up as failed at the next start. */
static void mark_started(run_job *job)
{
    agnes_error err;
    duckdb_connection writer = system_db_writer_acquire(job->ctx->db);
    const char *source;
    json_t *rows;
    json_object_foreach(job->sources, source, rows) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            if (sync_state_run_started(writer, json_string_value(json_object_get(row, "id")), job->run_id, &err))
                log_warn("msg=\"cannot mark a table's sync as started\" detail=\"%s\"", err.message);
        }
    }
    system_db_writer_release(job->ctx->db);
}

static void *run_main(void *arg)
{
    run_job *job = arg;
    sync_runs *runs = job->ctx->sync_runs;
    const char *source;
    json_t *rows, *outcomes = json_array();
    if (job->discover_source[0] != '\0')
        discover_first(job);
    mark_started(job);
    json_object_foreach(job->sources, source, rows) {
        set_source_state(runs, job->run_id, source, "running");
        json_t *outcome = sync_run_source(job->ctx->runtime, job->ctx->db, job->run_id, source, rows, &runs->stopping);
        record_outcome(runs, job->run_id, outcome);
        json_array_append_new(outcomes, outcome);
        release_source(runs, source);
    }
    json_t *report = NULL;
    agnes_error err;
    duckdb_connection writer = system_db_writer_acquire(job->ctx->db);
    if (sync_state_run_finished(writer, job->run_id, &err) != AGNES_OK)
        log_warn("msg=\"cannot close the run's start markers\" run_id=%s detail=\"%s\"", job->run_id, err.message);
    system_db_writer_release(job->ctx->db);
    if (catalog_rebuild(job->ctx, false, &report, &err) != AGNES_OK)
        log_warn("msg=\"catalog rebuild after a sync failed\" run_id=%s detail=\"%s\"", job->run_id, err.message);
    /* A table the catalog refused (its name belongs to another source) did not reach anyone: the run says so. */
    bool any_failed = false, any_done = false;
    size_t i;
    json_t *outcome;
    json_array_foreach(outcomes, i, outcome) {
        if (sync_apply_rebuild_report(job->ctx->db, outcome, report) > 0)
            record_outcome(runs, job->run_id, outcome);
        const char *state = json_string_value(json_object_get(outcome, "state"));
        any_failed = any_failed || strcmp(state, "done") != 0;
        any_done = any_done || strcmp(state, "failed") != 0;
    }
    json_decref(report);
    json_decref(outcomes);
    char finished[32];
    util_utc_now_iso(finished);
    pthread_mutex_lock(&runs->lock);
    json_t *run = find_run(runs, job->run_id);
    json_object_set_new(run, "state", json_string(!any_failed ? "done" : any_done ? "partial" : "failed"));
    json_object_set_new(run, "finished_at", json_string(finished));
    runs->running_threads--;
    pthread_mutex_unlock(&runs->lock);
    json_decref(job->sources);
    free(job);
    return NULL;
}

/* ---- HTTP --------------------------------------------------------------- */

/* The registry rows to sync: all, or the ids of a JSON array body. */
static json_t *rows_to_sync(http_context *ctx, const http_request *req, http_response *resp, json_t **requested)
{
    duckdb_connection conn = NULL;
    json_t *all = NULL, *chosen = NULL;
    agnes_error err;
    *requested = NULL;
    if (req->body_len > 0) {
        json_error_t parse_error;
        *requested = json_loads(req->body, 0, &parse_error);
        if (*requested != NULL && json_is_null(*requested)) {
            json_decref(*requested);
            *requested = NULL;
        } else if (!json_is_array(*requested)) {
            http_respond_error(resp, 422, "The body must be a JSON array of table ids, e.g. [\"orders\"], or empty "
                                          "to sync every registered table.", NULL);
            goto fail;
        }
    }
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK || registry_list_json(conn, &all, &err)) {
        http_respond_internal(resp, req, &err);
        goto fail;
    }
    if (*requested == NULL) {
        chosen = json_incref(all);
    } else {
        chosen = json_array();
        size_t i, j;
        json_t *id, *row;
        json_array_foreach(*requested, i, id) {
            json_t *found = NULL;
            json_array_foreach(all, j, row) {
                if (json_is_string(id) && strcmp(json_string_value(json_object_get(row, "id")), json_string_value(id)) == 0)
                    found = row;
            }
            if (found == NULL) {
                char detail[400];
                snprintf(detail, sizeof detail, "Table '%s' is not registered; GET /api/admin/registry lists them.",
                         json_is_string(id) ? json_string_value(id) : "?");
                http_respond_error(resp, 404, detail, NULL);
                json_decref(chosen);
                chosen = NULL;
                goto fail;
            }
            json_array_append(chosen, found);
        }
    }
fail:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(all);
    return chosen;
}


/* Start a run for `rows` (registry rows): claim their sources (a busy
 * source's tables join the run that has it), record the run, start its
 * thread.  run_id receives the new id. */
static int start_run(http_context *ctx, const json_t *rows, const char *discover_source, char run_id[40],
                     agnes_error *err)
{
    sync_runs *runs = ctx->sync_runs;
    run_job *job = calloc(1, sizeof *job);
    char started[32];
    if (job == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    util_utc_now_iso(started);
    job->ctx = ctx;
    job->sources = json_object();
    sync_new_run_id(job->run_id, sizeof job->run_id);
    snprintf(run_id, 40, "%s", job->run_id);
    json_t *entries = json_array();
    pthread_mutex_lock(&runs->lock);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *source = json_string_value(json_object_get(row, "source_type"));
        const char *other = busy_with(runs, source);
        json_t *entry = json_pack("{s:O, s:s, s:s}", "table_id", json_object_get(row, "id"), "source", source, "state",
                                  "queued");
        if (other != NULL && strcmp(other, job->run_id) != 0) {
            json_object_set_new(entry, "state", json_string("joined"));
            json_object_set_new(entry, "joined_run_id", json_string(other));
        } else {
            if (json_object_get(job->sources, source) == NULL) {
                claim_source(runs, source, job->run_id);
                json_object_set_new(job->sources, source, json_array());
            }
            json_array_append(json_object_get(job->sources, source), row);
        }
        json_array_append_new(entries, entry);
    }
    if (discover_source != NULL && busy_with(runs, discover_source) == NULL) {
        snprintf(job->discover_source, sizeof job->discover_source, "%s", discover_source);
        claim_source(runs, discover_source, job->run_id);
        json_object_set_new(job->sources, discover_source, json_array());
    }
    json_array_append_new(runs->runs, json_pack("{s:s, s:s, s:s, s:n, s:o}", "run_id", job->run_id, "state", "running",
                                                "started_at", started, "finished_at", "tables", entries));
    while (json_array_size(runs->runs) > SYNC_RUNS_KEPT)
        json_array_remove(runs->runs, 0);
    runs->running_threads++;
    pthread_mutex_unlock(&runs->lock);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attributes, run_main, job) == 0 ? AGNES_OK
             : agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start a sync thread");
    pthread_attr_destroy(&attributes);
    if (rc != AGNES_OK) {
        const char *source;
        json_t *ignored;
        json_object_foreach(job->sources, source, ignored)
            release_source(runs, source);
        pthread_mutex_lock(&runs->lock);
        runs->running_threads--;
        json_object_set_new(find_run(runs, run_id), "state", json_string("failed"));
        pthread_mutex_unlock(&runs->lock);
        json_decref(job->sources);
        free(job);
    }
    return rc;
}

void sync_handle_trigger(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *requested = NULL, *rows = rows_to_sync(ctx, req, resp, &requested);
    char run_id[40];
    agnes_error err;
    if (rows == NULL) {
        json_decref(requested);
        return;
    }
    char discover[32] = "";
    if (requested != NULL || !discovery_wanted(ctx->runtime, rows, discover, sizeof discover))
        discover[0] = '\0'; /* the configured source has tables registered, or cannot list them */
    if (start_run(ctx, rows, discover[0] ? discover : NULL, run_id, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
    } else {
        json_t *ids = json_array();
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
            json_array_append(ids, json_object_get(row, "id"));
        duckdb_connection writer = system_db_writer_acquire(ctx->db);
        audit_log_write(writer, req->identity->user_id, "sync.trigger", run_id, NULL, "ok");
        system_db_writer_release(ctx->db);
        json_t *reply = json_pack("{s:s, s:s, s:o, s:s}", "status", "triggered", "run_id", run_id, "tables",
                                  requested ? ids : (json_decref(ids), json_string("all")), "message",
                                  "Sync started in the background. Follow it at GET /api/sync/status/<run_id>.");
        if (discover[0] != '\0') {
            json_object_set_new(reply, "discovering", json_string(discover));
            json_object_set_new(reply, "message",
                                json_string("Nothing is registered yet: the configured source's tables are "
                                            "discovered, registered and synced in the background. Follow it at "
                                            "GET /api/sync/status/<run_id>."));
        }
        http_respond_json(resp, 200, reply);
    }
    json_decref(rows);
    json_decref(requested);
}

/* facts[table_id][key] as Unix seconds, -1 when absent or null. */
static int64_t fact_seconds(const json_t *facts, const char *table_id, const char *key)
{
    json_t *value = json_object_get(json_object_get(facts, table_id), key);
    return json_is_integer(value) ? (int64_t)json_integer_value(value) : -1;
}

void sync_schedule_tick(http_context *ctx)
{
    duckdb_connection conn = NULL;
    json_t *rows = NULL, *due = json_array(), *fact_rows = NULL, *facts = json_object();
    agnes_error err;
    const char *fallback = config_get_string(&ctx->runtime->config, CFG_SYNC_DEFAULT_SCHEDULE);
    int64_t first_retry = config_get_int(&ctx->runtime->config, CFG_SYNC_RETRY_SECONDS);
    pthread_mutex_lock(&ctx->sync_runs->lock);
    unsigned long releases = ctx->sync_runs->releases;
    pthread_mutex_unlock(&ctx->sync_runs->lock);
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK || registry_list_json(conn, &rows, &err) ||
        sync_state_schedule_facts_json(conn, &fact_rows, &err)) {
        log_warn("msg=\"scheduler cannot read the registry\" detail=\"%s\"", err.message);
        goto done;
    }
    size_t i;
    json_t *row;
    json_array_foreach(fact_rows, i, row)
        json_object_set(facts, json_string_value(json_object_get(row, "table_id")), row);
    int64_t now = util_unix_now();
    pthread_mutex_lock(&ctx->sync_runs->lock);
    if (ctx->sync_runs->releases != releases) {
        /* A run finished a source after the facts were read: they say its
         * tables never synced, and it is no longer busy, so they would look
         * due and sync a second time.  The next tick reads fresh facts. */
        pthread_mutex_unlock(&ctx->sync_runs->lock);
        goto done;
    }
    json_array_foreach(rows, i, row) {
        const char *text = json_string_value(json_object_get(row, "sync_schedule"));
        const char *source = json_string_value(json_object_get(row, "source_type"));
        const char *id = json_string_value(json_object_get(row, "id"));
        schedule parsed;
        if (text == NULL)
            text = fallback[0] ? fallback : NULL;
        /* Local tables change by upload; a busy source is being synced now. */
        if (text == NULL || strcmp(source, LOCAL_SOURCE_NAME) == 0 || busy_with(ctx->sync_runs, source) != NULL ||
            schedule_parse(text, &parsed, &err) != AGNES_OK)
            continue;
        /* Due since the last success; failures are retried with backoff (core/schedule.h). */
        json_t *failures = json_object_get(json_object_get(facts, id), "failures");
        if (schedule_should_run(&parsed, fact_seconds(facts, id, "last_success"),
                                fact_seconds(facts, id, "last_attempt"),
                                json_is_integer(failures) ? json_integer_value(failures) : 0, first_retry, now))
            json_array_append(due, row);
    }
    /* A configured source with nothing registered: the default schedule's
     * run discovers its tables first (at most once per due period). */
    char discover[32] = "";
    schedule fallback_schedule;
    if (fallback[0] != '\0' && schedule_parse(fallback, &fallback_schedule, &err) == AGNES_OK &&
        discovery_wanted(ctx->runtime, rows, discover, sizeof discover) &&
        busy_with(ctx->sync_runs, discover) == NULL &&
        schedule_is_due(&fallback_schedule, ctx->sync_runs->discovery_attempted_at, now))
        ctx->sync_runs->discovery_attempted_at = now;
    else
        discover[0] = '\0';
    pthread_mutex_unlock(&ctx->sync_runs->lock);
    char run_id[40];
    if (json_array_size(due) > 0 || discover[0] != '\0') {
        if (start_run(ctx, due, discover[0] ? discover : NULL, run_id, &err) != AGNES_OK)
            log_warn("msg=\"scheduler cannot start a run\" detail=\"%s\"", err.message);
        else
            log_info("msg=\"scheduled sync started\" run_id=%s tables=%zu", run_id, json_array_size(due));
    }
done:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(rows);
    json_decref(due);
    json_decref(fact_rows);
    json_decref(facts);
}

void sync_handle_run_status(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *run_id = http_request_param(req, "run_id");
    sync_runs *runs = ctx->sync_runs;
    pthread_mutex_lock(&runs->lock);
    json_t *run = find_run(runs, run_id);
    json_t *copy = run ? json_deep_copy(run) : NULL;
    pthread_mutex_unlock(&runs->lock);
    if (copy == NULL) {
        char detail[200];
        snprintf(detail, sizeof detail, "No sync run '%s' (the server keeps the last %d runs since it started).", run_id,
                 SYNC_RUNS_KEPT);
        http_respond_error(resp, 404, detail, NULL);
        return;
    }
    http_respond_json(resp, 200, copy);
}
