#include "engine/analytics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/orchestrator.h"
#include "engine/postgres_query.h"
#include "engine/query_sandbox.h"
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

/* Every extract to attach, as [{source, path}].  Only extracts the last
 * rebuild checked, unchanged since: opening an unchecked (possibly damaged)
 * extract can crash the process that opens it. */
json_t *analytics_extract_list(const agnes_paths *paths)
{
    json_t *sources = NULL, *out = json_array();
    agnes_error err;
    if (orchestrator_list_vetted_sources(paths, &sources, &err) != AGNES_OK) {
        log_warn("msg=\"cannot list sources\" detail=\"%s\"", err.message);
        return out;
    }
    size_t i;
    json_t *name;
    json_array_foreach(sources, i, name) {
        char path[AGNES_PATH_MAX];
        orchestrator_extract_path(paths, json_string_value(name), path, sizeof path);
        json_array_append_new(out, json_pack("{s:O, s:s}", "source", name, "path", path));
    }
    json_decref(sources);
    return out;
}

/* ATTACH every extract under its source name; a failure skips that source. */
static void attach_sources(duckdb_connection conn, const json_t *extracts)
{
    agnes_error err;
    size_t i;
    json_t *extract;
    json_array_foreach(extracts, i, extract) {
        const char *source = json_string_value(json_object_get(extract, "source"));
        const char *path = json_string_value(json_object_get(extract, "path"));
        if (source != NULL && path != NULL && duck_attach_read_only(conn, path, source, &err) != AGNES_OK)
            log_warn("msg=\"cannot attach source\" source=%s detail=\"%s\"", source, err.message);
    }
}

static void close_snapshot(analytics_snapshot *snapshot)
{
    duckdb_close(&snapshot->database);
    json_decref(snapshot->tables);
    json_decref(snapshot->table_names);
    json_decref(snapshot->rebuild);
    json_decref(snapshot->description);
    free(snapshot);
}

/* dir with exactly one trailing slash, as allowed_directories wants it. */
static void directory_literal(strbuf *sql, const char *dir)
{
    char with_slash[AGNES_PATH_MAX + 2];
    size_t n = strlen(dir);
    snprintf(with_slash, sizeof with_slash, "%s%s", dir, n > 0 && dir[n - 1] == '/' ? "" : "/");
    duck_append_literal(sql, with_slash);
}

static int lock_down(duckdb_connection conn, const analytics_engine_options *options, agnes_error *err)
{
    char spill[AGNES_PATH_MAX + 16];
    snprintf(spill, sizeof spill, "%s/duckdb_spill", options->work_dir);
    strbuf sql;
    strbuf_init(&sql);
    /* temp_directory is set explicitly: DuckDB's default is
     * "<database>.tmp", the very name the orchestrator builds into. */
    strbuf_append_str(&sql, "SET temp_directory=");
    duck_append_literal(&sql, spill);
    strbuf_append_str(&sql, "; SET allowed_directories=[");
    directory_literal(&sql, options->extracts_dir);
    strbuf_append_char(&sql, ',');
    directory_literal(&sql, options->work_dir);
    strbuf_append_str(&sql, "]; SET enable_external_access=false; SET memory_limit=");
    duck_append_literal(&sql, options->memory_limit);
    strbuf_append_str(&sql, "; SET lock_configuration=true;");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_exec(conn, sql.data, err);
    strbuf_free(&sql);
    return rc;
}

int analytics_open_engine(const analytics_engine_options *options, duckdb_database *out, agnes_error *err)
{
    duckdb_connection conn = NULL;
    duckdb_config config = NULL;
    char *open_error = NULL, threads[16];
    *out = NULL;
    if (duckdb_create_config(&config) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a DuckDB configuration");
    duckdb_set_config(config, "access_mode", "READ_ONLY");
    duckdb_set_config(config, "autoinstall_known_extensions", "false");
    duckdb_set_config(config, "autoload_known_extensions", "false");
    if (options->threads > 0) {
        snprintf(threads, sizeof threads, "%d", options->threads);
        duckdb_set_config(config, "threads", threads);
    }
    int rc = duckdb_open_ext(options->catalog_path, out, config, &open_error) == DuckDBSuccess
                 ? AGNES_OK
                 : agnes_error_set(err, AGNES_ERR_DB, "cannot open %s: %s", options->catalog_path,
                                   open_error ? open_error : "unknown DuckDB error");
    duckdb_free(open_error);
    duckdb_destroy_config(&config);
    if (rc != AGNES_OK)
        return rc;
    if (duckdb_connect(*out, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", options->catalog_path);
    if (rc == AGNES_OK)
        rc = postgres_query_register(conn, options->credentials, options->remote_timeout_seconds,
                                     options->token_envs, err);
    if (rc == AGNES_OK) {
        attach_sources(conn, options->extracts);
        rc = lock_down(conn, options, err);
    }
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK)
        duckdb_close(out);
    return rc;
}

static int load_tables(duckdb_connection conn, analytics_snapshot *snapshot, agnes_error *err)
{
    if (duck_query_json(conn,
                        "SELECT table_name AS id, table_name AS name, description, source AS source_type,"
                        /* a remote table's rows live at the source: unknown, never a misleading 0 */
                        " query_mode, CASE WHEN query_mode = 'remote' THEN NULL ELSE rows END AS rows,"
                        " CASE WHEN query_mode = 'remote' THEN NULL ELSE size_bytes END AS size_bytes,"
                        " published_at AS last_sync FROM agnes.tables"
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
static int open_snapshot(analytics *a, const char *path, const agnes_paths *paths, analytics_snapshot **out,
                         agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX];
    analytics_snapshot *fresh = calloc(1, sizeof *fresh);
    duckdb_connection conn = NULL;
    json_t *sources = NULL;
    *out = NULL;
    if (fresh == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, err)) {
        free(fresh);
        return err->code;
    }
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    sources = analytics_extract_list(paths);
    analytics_engine_options options = {
        .catalog_path = path,
        .extracts = sources,
        .extracts_dir = extracts,
        .work_dir = tmp,
        .memory_limit = a->memory_limit,
        .credentials = a->credentials,
        .remote_timeout_seconds = a->remote_timeout_seconds,
        .token_envs = allow.token_envs,
    };
    int rc = analytics_open_engine(&options, &fresh->database, err);
    json_decref(sources);
    if (rc != AGNES_OK) {
        free(fresh);
        return rc;
    }
    if (duckdb_connect(fresh->database, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", path);
    if (rc == AGNES_OK)
        rc = load_tables(conn, fresh, err);
    if (rc == AGNES_OK)
        rc = query_sandbox_describe(conn, fresh->tables, &fresh->description, err);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK) {
        close_snapshot(fresh);
        return rc;
    }
    fresh->users = 1; /* the reference held by being current */
    pthread_mutex_lock(&a->lock);
    fresh->generation = ++a->generations;
    pthread_mutex_unlock(&a->lock);
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
