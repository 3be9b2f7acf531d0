#include "engine/analytics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/orchestrator.h"
#include "engine/postgres_query.h"
#include "store/duck.h"

int analytics_init(analytics *a, const char *memory_limit, credentials *store, int remote_timeout_seconds,
                   agnes_error *err)
{
    memset(a, 0, sizeof *a);
    a->credentials = store;
    a->remote_timeout_seconds = remote_timeout_seconds;
    if (util_format(a->memory_limit, sizeof a->memory_limit, err, "%s", memory_limit))
        return err->code;
    if (pthread_mutex_init(&a->lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    return AGNES_OK;
}

/* ATTACH every extract under its source name; a failure skips that source.
 * Only extracts the last rebuild checked, unchanged since: opening an
 * unchecked (possibly damaged) extract in the server can crash it. */
static void attach_sources(duckdb_connection conn, const agnes_paths *paths)
{
    json_t *sources = NULL;
    agnes_error err;
    if (orchestrator_list_vetted_sources(paths, &sources, &err) != AGNES_OK) {
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
    json_decref(snapshot->tables);
    json_decref(snapshot->table_names);
    json_decref(snapshot->rebuild);
    free(snapshot);
}

static int lock_down(duckdb_connection conn, const agnes_paths *paths, const char *memory_limit, agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX], spill[AGNES_PATH_MAX + 16];
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, err))
        return err->code;
    snprintf(spill, sizeof spill, "%s/duckdb_spill", tmp);
    strncat(extracts, "/", sizeof extracts - strlen(extracts) - 1);
    strncat(tmp, "/", sizeof tmp - strlen(tmp) - 1);
    strbuf sql;
    strbuf_init(&sql);
    /* temp_directory is set explicitly: DuckDB's default is
     * "<database>.tmp", the very name the orchestrator builds into. */
    strbuf_append_str(&sql, "SET temp_directory=");
    duck_append_literal(&sql, spill);
    strbuf_append_str(&sql, "; SET allowed_directories=[");
    duck_append_literal(&sql, extracts);
    strbuf_append_char(&sql, ',');
    duck_append_literal(&sql, tmp);
    strbuf_append_str(&sql, "]; SET enable_external_access=false; SET memory_limit=");
    duck_append_literal(&sql, memory_limit);
    strbuf_append_str(&sql, "; SET lock_configuration=true;");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_exec(conn, sql.data, err);
    strbuf_free(&sql);
    return rc;
}

static int load_tables(duckdb_connection conn, analytics_snapshot *snapshot, agnes_error *err)
{
    if (duck_query_json(conn,
                        "SELECT table_name AS id, table_name AS name, description, source AS source_type,"
                        " query_mode, rows, size_bytes, published_at AS last_sync FROM agnes.tables"
                        " ORDER BY table_name",
                        NULL, 0, &snapshot->tables, err))
        return err->code;
    if ((snapshot->table_names = json_array()) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    size_t i;
    json_t *table;
    json_array_foreach(snapshot->tables, i, table)
        json_array_append(snapshot->table_names, json_object_get(table, "id"));
    json_t *rows = NULL;
    agnes_error ignored; /* catalogs from before reports were kept have no agnes.rebuild */
    if (duck_query_json(conn, "SELECT built_at, report FROM agnes.rebuild", NULL, 0, &rows, &ignored) == AGNES_OK &&
        json_array_size(rows) == 1) {
        json_t *row = json_array_get(rows, 0);
        snapshot->rebuild = json_deep_copy(json_object_get(row, "report"));
        if (json_is_object(snapshot->rebuild))
            json_object_set(snapshot->rebuild, "built_at", json_object_get(row, "built_at"));
    }
    json_decref(rows);
    return AGNES_OK;
}

/* Open, attach, lock down and describe one snapshot of the file at path. */
static int open_snapshot(const analytics *a, const char *path, const agnes_paths *paths, analytics_snapshot **out,
                         agnes_error *err)
{
    analytics_snapshot *fresh = calloc(1, sizeof *fresh);
    duckdb_connection conn = NULL;
    *out = NULL;
    if (fresh == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (duck_open(path, true, &fresh->database, err) != AGNES_OK) {
        free(fresh);
        return err->code;
    }
    int rc = AGNES_OK;
    if (duckdb_connect(fresh->database, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", path);
    else {
        contract_allowlists allow;
        contract_allowlists_from_env(&allow);
        rc = postgres_query_register(conn, a->credentials, a->remote_timeout_seconds, allow.token_envs, err);
        attach_sources(conn, paths);
        if (rc == AGNES_OK)
            rc = load_tables(conn, fresh, err);
        if (rc == AGNES_OK)
            rc = lock_down(conn, paths, a->memory_limit, err);
        duckdb_disconnect(&conn);
    }
    if (rc != AGNES_OK) {
        close_snapshot(fresh);
        return rc;
    }
    fresh->users = 1; /* the reference held by being current */
    *out = fresh;
    return AGNES_OK;
}

int analytics_reload(analytics *a, const agnes_paths *paths, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    if (paths_data_file(paths, DATA_ANALYTICS_DIR, path, sizeof path, err))
        return err->code;
    strncat(path, "/server.duckdb", sizeof path - strlen(path) - 1);
    analytics_snapshot *fresh = NULL;
    if (util_file_exists(path) && open_snapshot(a, path, paths, &fresh, err) != AGNES_OK)
        return err->code;
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
