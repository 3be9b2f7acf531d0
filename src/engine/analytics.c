#include "engine/analytics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/orchestrator.h"
#include "store/duck.h"

int analytics_init(analytics *a, agnes_error *err)
{
    memset(a, 0, sizeof *a);
    if (pthread_mutex_init(&a->lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    return AGNES_OK;
}

/* ATTACH every extract under its source name; a failure skips that source. */
static void attach_sources(duckdb_connection conn, const agnes_paths *paths)
{
    json_t *sources = NULL;
    agnes_error err;
    if (orchestrator_list_sources(paths, &sources, &err) != AGNES_OK) {
        log_warn("msg=\"cannot list sources\" detail=\"%s\"", err.message);
        return;
    }
    size_t i;
    json_t *name;
    json_array_foreach(sources, i, name) {
        char path[AGNES_PATH_MAX];
        orchestrator_extract_path(paths, json_string_value(name), path, sizeof path);
        if (duck_attach_read_only(conn, path, json_string_value(name), &err) != AGNES_OK)
            log_warn("msg=\"cannot attach source\" source=%s detail=\"%s\"", json_string_value(name), err.message);
    }
    json_decref(sources);
}

static void close_snapshot(analytics_snapshot *snapshot)
{
    duckdb_close(&snapshot->database);
    free(snapshot);
}

int analytics_reload(analytics *a, const agnes_paths *paths, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    if (paths_data_file(paths, DATA_ANALYTICS_DIR, path, sizeof path, err))
        return err->code;
    strncat(path, "/server.duckdb", sizeof path - strlen(path) - 1);
    analytics_snapshot *fresh = NULL;
    if (util_file_exists(path)) {
        if ((fresh = calloc(1, sizeof *fresh)) == NULL)
            return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        duckdb_connection conn = NULL;
        if (duck_open(path, true, &fresh->database, err) != AGNES_OK) {
            free(fresh);
            return err->code;
        }
        if (duckdb_connect(fresh->database, &conn) != DuckDBSuccess) {
            close_snapshot(fresh);
            return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", path);
        }
        attach_sources(conn, paths);
        duckdb_disconnect(&conn);
        fresh->users = 1; /* the reference held by being current */
    }
    pthread_mutex_lock(&a->lock);
    analytics_snapshot *old = a->current;
    a->current = fresh;
    bool close_old = old != NULL && --old->users == 0;
    pthread_mutex_unlock(&a->lock);
    if (close_old)
        close_snapshot(old);
    return AGNES_OK;
}

analytics_snapshot *analytics_acquire(analytics *a)
{
    pthread_mutex_lock(&a->lock);
    analytics_snapshot *snapshot = a->current;
    if (snapshot != NULL)
        snapshot->users++;
    pthread_mutex_unlock(&a->lock);
    return snapshot;
}

void analytics_release(analytics *a, analytics_snapshot *snapshot)
{
    if (snapshot == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    bool last = --snapshot->users == 0;
    pthread_mutex_unlock(&a->lock);
    if (last)
        close_snapshot(snapshot);
}

void analytics_free(analytics *a)
{
    if (a->current != NULL && --a->current->users == 0)
        close_snapshot(a->current);
    a->current = NULL;
    pthread_mutex_destroy(&a->lock);
}
