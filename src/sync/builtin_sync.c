#include "sync/builtin_sync.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/postgres_query.h"
#include "store/column_metadata.h"
#include "store/duck.h"
#include "store/registry.h"
#include "sync/runner.h"
#include "sync/source_settings.h"

#define NETWORK_ATTEMPTS 2

typedef struct source_dirs {
    char source_dir[AGNES_PATH_MAX];
    char data_dir[AGNES_PATH_MAX + 8];
    char work_dir[AGNES_PATH_MAX + 128];
    char extract[AGNES_PATH_MAX + 32];
    char extract_tmp[AGNES_PATH_MAX + 96];
} source_dirs;

static const char *row_text(const json_t *row, const char *key)
{
    const char *value = json_string_value(json_object_get(row, key));
    return value ? value : "";
}

/* Remove "*.tmp-run_*" files of source_dir and data_dir: killed runs' leftovers. */
static void sweep_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *entry;
    while (d != NULL && (entry = readdir(d)) != NULL) {
        if (strstr(entry->d_name, ".tmp-run_") == NULL)
            continue;
        char path[AGNES_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (unlink(path) == 0)
            log_info("msg=\"swept a killed sync's temp file\" path=\"%s\"", path);
    }
    if (d != NULL)
        closedir(d);
}

/* The work dirs of killed runs of source in tmp/. */
static void sweep_work_dirs(const char *tmp, const char *source)
{
    DIR *d = opendir(tmp);
    struct dirent *entry;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "sync-%s-run_", source);
    while (d != NULL && (entry = readdir(d)) != NULL) {
        if (strncmp(entry->d_name, prefix, strlen(prefix)) == 0) {
            char path[AGNES_PATH_MAX + 300];
            agnes_error ignored;
            snprintf(path, sizeof path, "%s/%s", tmp, entry->d_name);
            if (util_remove_tree(path, &ignored) == AGNES_OK)
                log_info("msg=\"swept a killed sync's work directory\" path=\"%s\"", path);
        }
    }
    if (d != NULL)
        closedir(d);
}

/* Temp entries in the per-table directories of data/ (partitions). */
static void sweep_table_dirs(const char *data_dir)
{
    DIR *d = opendir(data_dir);
    struct dirent *entry;
    while (d != NULL && (entry = readdir(d)) != NULL) {
        char path[AGNES_PATH_MAX + 300];
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", data_dir, entry->d_name);
        if (!util_is_directory(path))
            continue;
        DIR *inner = opendir(path);
        struct dirent *item;
        while (inner != NULL && (item = readdir(inner)) != NULL) {
            if (strncmp(item->d_name, ".tmp-run_", 9) != 0 && strstr(item->d_name, ".tmp-run_") == NULL)
                continue;
            char victim[AGNES_PATH_MAX + 600];
            agnes_error ignored;
            snprintf(victim, sizeof victim, "%s/%s", path, item->d_name);
            if (util_is_directory(victim) ? util_remove_tree(victim, &ignored) == AGNES_OK : unlink(victim) == 0)
                log_info("msg=\"swept a killed sync's temp file\" path=\"%s\"", victim);
        }
        if (inner != NULL)
            closedir(inner);
    }
    if (d != NULL)
        closedir(d);
}

void builtin_sync_sweep(const agnes_paths *paths)
{
    char extracts[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX];
    agnes_error err;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, &err) ||
        paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, &err))
        return;
    DIR *d = opendir(extracts);
    struct dirent *entry;
    while (d != NULL && (entry = readdir(d)) != NULL) {
        char source_dir[AGNES_PATH_MAX + 300], data_dir[AGNES_PATH_MAX + 310];
        if (entry->d_name[0] == '.' || !contract_is_identifier(entry->d_name))
            continue;
        snprintf(source_dir, sizeof source_dir, "%s/%s", extracts, entry->d_name);
        if (!util_is_directory(source_dir))
            continue;
        int lock = sync_source_lock(paths, entry->d_name, false);
        if (lock < 0) /* an `agnes sync` is running it: its files are live */
            continue;
        snprintf(data_dir, sizeof data_dir, "%s/data", source_dir);
        sweep_dir(source_dir);
        sweep_dir(data_dir);
        sweep_table_dirs(data_dir);
        sweep_work_dirs(tmp, entry->d_name);
        close(lock);
    }
    if (d != NULL)
        closedir(d);
}

static int prepare_dirs(const agnes_paths *paths, const char *source, const char *run_id, source_dirs *dirs,
                        agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX];
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, err) ||
        util_format(dirs->source_dir, sizeof dirs->source_dir, err, "%s/%s", extracts, source) ||
        util_format(dirs->data_dir, sizeof dirs->data_dir, err, "%s/data", dirs->source_dir) ||
        util_format(dirs->work_dir, sizeof dirs->work_dir, err, "%s/sync-%s-%s", tmp, source, run_id) ||
        util_format(dirs->extract, sizeof dirs->extract, err, "%s/extract.duckdb", dirs->source_dir) ||
        util_format(dirs->extract_tmp, sizeof dirs->extract_tmp, err, "%s/extract.duckdb.tmp-%s", dirs->source_dir,
                    run_id) ||
        util_mkdir_p(dirs->data_dir, 0755, err))
        return err->code;
    sweep_dir(dirs->source_dir);
    sweep_dir(dirs->data_dir);
    sweep_table_dirs(dirs->data_dir);
    sweep_work_dirs(tmp, source);
    return util_mkdir_p(dirs->work_dir, 0700, err);
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* One table: connector -> temp file -> rename.  Returns its outcome entry. */
static json_t *sync_table(const connector_ops *ops, const connector_settings *settings, const source_dirs *dirs,
                          const char *run_id, const json_t *row, const atomic_bool *cancel)
{
    const char *id = row_text(row, "id");
    char final[AGNES_PATH_MAX + 200], tmp[AGNES_PATH_MAX + 300];
    snprintf(final, sizeof final, "%s/%s.parquet", dirs->data_dir, id);
    snprintf(tmp, sizeof tmp, "%s.tmp-%s", final, run_id);
    json_t *notes = json_array();
    connector_job job = {.row = row, .parquet_path = tmp, .published_path = final, .run_id = run_id,
                         .work_dir = dirs->work_dir, .cancel = cancel, .notes = notes};
    double started = util_monotonic_ms();
    long long rows = 0;
    agnes_error err;
    int rc = AGNES_ERR_INVALID;
    for (int attempt = 1; attempt <= NETWORK_ATTEMPTS; attempt++) {
        unlink(tmp);
        rc = ops->extract_table(settings, &job, &rows, &err);
        if (rc != AGNES_ERR_NETWORK || (cancel && atomic_load(cancel)))
            break;
        if (attempt < NETWORK_ATTEMPTS)
            log_warn("msg=\"table sync failed, retrying\" table=%s detail=\"%s\"", id, err.message);
    }
    agnes_error io_err;
    if (rc == AGNES_OK && (util_fsync_parent_dir(tmp, &io_err) != AGNES_OK || rename(tmp, final) != 0)) {
        rc = agnes_error_set(&err, AGNES_ERR_IO, "cannot move %s into place: %s", tmp, strerror(errno));
    }
    json_t *entry = json_pack("{s:s, s:s, s:f}", "table_id", id, "state", rc == AGNES_OK ? "done" : "failed",
                              "duration_ms", util_monotonic_ms() - started);
    if (rc == AGNES_OK) {
        util_fsync_parent_dir(final, &io_err);
        json_object_set_new(entry, "rows", json_integer(rows));
        json_object_set_new(entry, "size_bytes", json_integer(file_size(final)));
        json_object_set_new(entry, "error", json_null());
    } else {
        unlink(tmp);
        json_object_set_new(entry, "rows", json_null());
        json_object_set_new(entry, "size_bytes", json_null());
        json_object_set_new(entry, "error", json_string(err.message));
    }
    if (json_array_size(notes) > 0) /* e.g. a column kept as JSON text: said in the run, not only a log */
        json_object_set(entry, "notes", notes);
    json_decref(notes);
    return entry;
}

/* The registry rows of `source`, by id. */
static int source_rows(system_db *db, const char *source, json_t **rows, agnes_error *err)
{
    duckdb_connection conn = NULL;
    json_t *all = NULL;
    *rows = json_array();
    if (system_db_connect_reader(db, &conn, err) || registry_list_json(conn, &all, err)) {
        if (conn)
            duckdb_disconnect(&conn);
        return err->code;
    }
    duckdb_disconnect(&conn);
    size_t i;
    json_t *row;
    json_array_foreach(all, i, row)
        if (strcmp(row_text(row, "source_type"), source) == 0)
            json_array_append(*rows, row);
    json_decref(all);
    return AGNES_OK;
}

static bool is_remote(const json_t *row)
{
    return strcmp(row_text(row, "query_mode"), "remote") == 0;
}

/* The definition a view had in the previous extract (attached as
 * "previous"), to keep serving it when it cannot be regenerated now. */
static bool previous_view_sql(duckdb_connection conn, const char *id, strbuf *out)
{
    json_t *rows = NULL;
    agnes_error ignored;
    const char *params[] = {id};
    bool found = duck_query_json(conn,
                                 "SELECT sql FROM duckdb_views() WHERE database_name = 'previous' AND view_name = $1",
                                 params, 1, &rows, &ignored) == AGNES_OK &&
                 json_array_size(rows) == 1;
    if (found)
        strbuf_append_str(out, json_string_value(json_object_get(json_array_get(rows, 0), "sql")));
    json_decref(rows);
    return found;
}

/* The description the previous extract published for id, or "". */
static void previous_description(duckdb_connection conn, const char *id, char *out, size_t size)
{
    json_t *rows = NULL;
    agnes_error ignored;
    const char *params[] = {id};
    out[0] = '\0';
    if (duck_query_json(conn, "SELECT description FROM previous._meta WHERE table_name = $1", params, 1, &rows,
                        &ignored) == AGNES_OK && json_array_size(rows) == 1) {
        const char *text = json_string_value(json_object_get(json_array_get(rows, 0), "description"));
        snprintf(out, size, "%s", text ? text : "");
    }
    json_decref(rows);
}

/* What _meta says a table is: the admin's words when they wrote some; else
 * what the source says (its comment, asked at each sync, else as the last
 * sync published it); else discovery's words without the row estimate they
 * froze ("about 0 rows" in the catalog after 1,000 rows were synced - the
 * catalog's `rows` is the current count). */
static void meta_description(duckdb_connection conn, const json_t *row, const json_t *facts, char *out, size_t size)
{
    static const char generated_prefix[] = "Discovered in ";
    const char *registry = row_text(row, "description");
    const char *source = json_string_value(json_object_get(facts, "description"));
    bool generated = strncmp(registry, generated_prefix, sizeof generated_prefix - 1) == 0;
    if (registry[0] != '\0' && !generated) {
        snprintf(out, size, "%s", registry);
        return;
    }
    if (source != NULL && source[0] != '\0') {
        snprintf(out, size, "%s", source);
        return;
    }
    if (facts == NULL) {
        previous_description(conn, row_text(row, "id"), out, size);
        if (out[0] != '\0' && strncmp(out, generated_prefix, sizeof generated_prefix - 1) != 0)
            return; /* the source's comment a sync published, for a table not synced now */
    }
    snprintf(out, size, "%s", registry);
    char *estimate = strstr(out, ", about ");
    char *rest = estimate ? strstr(estimate, " rows)") : NULL;
    if (rest != NULL)
        memmove(estimate, rest + 5, strlen(rest + 5) + 1); /* "(table, about 0 rows)" -> "(table)" */
}

static int insert_meta(duckdb_connection conn, const json_t *row, const json_t *facts, long long rows, long long size,
                       const char *extracted_at, const char *mode, agnes_error *err)
{
    char rows_text[32], size_text[32], description[4200];
    snprintf(rows_text, sizeof rows_text, "%lld", rows);
    snprintf(size_text, sizeof size_text, "%lld", size);
    meta_description(conn, row, facts, description, sizeof description);
    const char *params[] = {row_text(row, "id"), description, rows_text, size_text, extracted_at, mode};
    return duck_exec_params(conn,
                            "INSERT INTO _meta VALUES ($1, nullif($2, ''), CAST($3 AS BIGINT), CAST($4 AS BIGINT),"
                            " CAST($5 AS TIMESTAMP), $6)",
                            params, 6, err);
}

/* A synced table's view and _meta row; nothing when it never synced. */
static int publish_local(duckdb_connection conn, const source_dirs *dirs, const json_t *row, const json_t *outcome,
                         const json_t *facts, agnes_error *err)
{
    const char *id = row_text(row, "id");
    char parquet[AGNES_PATH_MAX + 200], stamp[32];
    snprintf(parquet, sizeof parquet, "%s/%s.parquet", dirs->data_dir, id);
    struct stat st;
    if (stat(parquet, &st) != 0)
        return AGNES_OK;
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "CREATE OR REPLACE VIEW ");
    duck_append_identifier(&sql, id);
    strbuf_append_str(&sql, " AS SELECT * FROM read_parquet(");
    duck_append_literal(&sql, parquet);
    strbuf_append_char(&sql, ')');
    long long rows = json_integer_value(json_object_get(outcome, "rows"));
    bool found = json_is_integer(json_object_get(outcome, "rows"));
    int rc = duck_exec(conn, sql.data, err);
    if (rc == AGNES_OK && !found) { /* not synced in this run: Parquet's footer knows */
        strbuf_reset(&sql);
        strbuf_append_str(&sql, "SELECT count(*) FROM ");
        duck_append_identifier(&sql, id);
        rc = duck_query_int(conn, sql.data, &rows, &found, err);
    }
    util_utc_iso((int64_t)st.st_mtime, stamp);
    if (rc == AGNES_OK)
        rc = insert_meta(conn, row, facts, rows, (long long)st.st_size, stamp, "local", err);
    strbuf_free(&sql);
    return rc;
}

/* A remote table's view, regenerated from the source's current shape; the
 * previous definition stays when that fails.  Records the outcome. */
static int publish_remote(duckdb_connection conn, const connector_ops *ops, const connector_settings *settings,
                          const json_t *row, json_t *outcome, const json_t *facts, json_t *attach_rows,
                          agnes_error *err)
{
    strbuf select, sql;
    strbuf_init(&select);
    strbuf_init(&sql);
    json_t *attach = NULL;
    agnes_error why;
    const char *id = row_text(row, "id");
    char now[32];
    util_utc_now_iso(now);
    bool fresh = settings != NULL && ops->remote_view != NULL &&
                 ops->remote_view(settings, row, &select, &attach, &why) == AGNES_OK;
    if (ops->remote_view == NULL)
        snprintf(why.message, sizeof why.message, "this connector has no remote mode; use local or materialized");
    else if (settings == NULL)
        snprintf(why.message, sizeof why.message, "republished without asking the source");
    if (fresh) {
        strbuf_append_str(&sql, "CREATE OR REPLACE VIEW ");
        duck_append_identifier(&sql, id);
        strbuf_append_str(&sql, " AS ");
        strbuf_append_str(&sql, select.data);
        if (json_array_size(attach_rows) == 0)
            json_array_append(attach_rows, attach);
    } else if (previous_view_sql(conn, id, &sql) && json_array_size(attach_rows) == 0) {
        json_t *previous = NULL;
        agnes_error ignored;
        if (duck_query_json(conn, "SELECT alias, extension, url, token_env FROM previous._remote_attach", NULL, 0,
                            &previous, &ignored) == AGNES_OK)
            json_array_extend(attach_rows, previous);
        json_decref(previous);
    }
    json_decref(attach);
    if (outcome != NULL) {
        json_object_set_new(outcome, "state", json_string(fresh ? "done" : "failed"));
        json_object_set_new(outcome, "rows", fresh ? json_integer(0) : json_null());
        json_object_set_new(outcome, "size_bytes", fresh ? json_integer(0) : json_null());
        json_object_set_new(outcome, "error", fresh ? json_null() : json_string(why.message));
    } else if (!fresh && settings != NULL) {
        log_warn("msg=\"remote view not refreshed, previous one kept\" table=%s detail=\"%s\"", id, why.message);
    }
    int rc = AGNES_OK;
    if (sql.len > 0 && (rc = duck_exec(conn, sql.data, err)) == AGNES_OK)
        rc = insert_meta(conn, row, facts, 0, 0, now, "remote", err);
    strbuf_free(&select);
    strbuf_free(&sql);
    return rc;
}

static int write_remote_attach(duckdb_connection conn, const json_t *attach_rows, agnes_error *err)
{
    if (json_array_size(attach_rows) == 0)
        return AGNES_OK;
    if (duck_exec(conn, "CREATE TABLE _remote_attach (alias VARCHAR, extension VARCHAR, url VARCHAR, token_env VARCHAR)",
                  err))
        return err->code;
    size_t i;
    json_t *a;
    json_array_foreach(attach_rows, i, a) {
        const char *params[] = {row_text(a, "alias"), row_text(a, "extension"), row_text(a, "url"),
                                row_text(a, "token_env")};
        if (duck_exec_params(conn, "INSERT INTO _remote_attach VALUES ($1, $2, $3, $4)", params, 4, err))
            return err->code;
    }
    return AGNES_OK;
}

/* Outcome entry of table id in this run, or NULL when it was not due. */
static json_t *outcome_of(json_t *tables, const char *id)
{
    size_t i;
    json_t *entry;
    json_array_foreach(tables, i, entry)
        if (strcmp(row_text(entry, "table_id"), id) == 0)
            return entry;
    return NULL;
}

/* extract.duckdb.tmp-<run> from every registered table of the source. */
static int write_extract(const connector_ops *ops, const connector_settings *settings, const source_dirs *dirs,
                         const json_t *all_rows, json_t *tables, const json_t *facts, agnes_error *err)
{
    duck_session session;
    json_t *attach_rows = json_array();
    unlink(dirs->extract_tmp);
    if (duck_session_open(&session, dirs->extract_tmp, false, err)) {
        json_decref(attach_rows);
        return err->code;
    }
    duckdb_connection conn = session.connection;
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    int rc = postgres_query_register(conn, NULL, 1, allow.token_envs, err);
    if (rc == AGNES_OK && util_file_exists(dirs->extract) && duck_attach_read_only(conn, dirs->extract, "previous", err))
        log_warn("msg=\"previous extract unreadable\" detail=\"%s\"", err->message);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, CONTRACT_META_DDL, err);
    size_t i;
    json_t *row;
    json_array_foreach(all_rows, i, row) {
        if (rc != AGNES_OK)
            break;
        char why_name[300];
        if (!contract_table_name_ok(row_text(row, "id"), why_name, sizeof why_name))
            continue; /* a reserved name would break the extract; its run entry says so */
        json_t *outcome = outcome_of(tables, row_text(row, "id"));
        const json_t *known = json_object_get(facts, row_text(row, "id"));
        rc = is_remote(row) ? publish_remote(conn, ops, settings, row, outcome, known, attach_rows, err)
                            : publish_local(conn, dirs, row, outcome, known, err);
    }
    if (rc == AGNES_OK)
        rc = write_remote_attach(conn, attach_rows, err);
    agnes_error ignored;
    duck_exec(conn, "DETACH DATABASE IF EXISTS previous", &ignored);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "CHECKPOINT", err);
    duck_session_close(&session);
    json_decref(attach_rows);
    return rc;
}

/* Contract-check the new extract and rename it into place. */
static int publish_extract(const source_dirs *dirs, agnes_error *err)
{
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    contract_report report = {0};
    char wal[AGNES_PATH_MAX + 128];
    snprintf(wal, sizeof wal, "%s.wal", dirs->extract_tmp);
    unlink(wal);
    int rc = contract_check(dirs->extract_tmp, &allow, &report, err);
    if (rc == AGNES_OK && report.count > 0)
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "the new extract failed the contract check: %s: %s",
                             report.items[0].rule, report.items[0].message);
    contract_report_free(&report);
    if (rc == AGNES_OK && rename(dirs->extract_tmp, dirs->extract) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot move %s into place: %s", dirs->extract_tmp, strerror(errno));
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(dirs->extract, err);
    return rc;
}

/* A table switched from local to remote keeps no file: its old Parquet
 * would be found by the catalog as the table's download and mirrored by
 * `agnes pull` with stale rows.  Called once the extract without a view
 * over it is published (a query already reading the file keeps its inode). */
static void remove_stale_files(const source_dirs *dirs, const json_t *all_rows)
{
    size_t i;
    json_t *row;
    json_array_foreach(all_rows, i, row) {
        char path[AGNES_PATH_MAX + 200];
        if (!is_remote(row))
            continue;
        snprintf(path, sizeof path, "%s/%s.parquet", dirs->data_dir, row_text(row, "id"));
        if (unlink(path) == 0)
            log_info("msg=\"removed the Parquet of a table that became remote\" table=%s", row_text(row, "id"));
    }
}

/* {id: facts} from the connector for the due tables that synced (and the
 * remote ones, whose view is made now): the catalog's description and
 * column facts, current after each sync.  A table whose facts cannot be
 * had keeps its previous ones (a log line says why). */
static json_t *gather_facts(const connector_ops *ops, const connector_settings *settings, const json_t *due_rows,
                            json_t *tables)
{
    json_t *facts = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(due_rows, i, row) {
        const json_t *entry = outcome_of(tables, row_text(row, "id"));
        json_t *known = NULL;
        agnes_error err;
        if (ops->table_facts == NULL || entry == NULL || strcmp(row_text(entry, "state"), "failed") == 0)
            continue;
        if (ops->table_facts(settings, row, &known, &err) == AGNES_OK)
            json_object_set_new(facts, row_text(row, "id"), known);
        else
            log_warn("msg=\"cannot read a table's column facts\" table=%s detail=\"%s\"", row_text(row, "id"),
                     err.message);
    }
    return facts;
}

static void record_column_facts(system_db *db, const char *source, const json_t *facts)
{
    const char *id;
    json_t *known;
    duckdb_connection writer = system_db_writer_acquire(db);
    json_object_foreach((json_t *)facts, id, known) {
        agnes_error err;
        if (column_metadata_replace(writer, id, source, json_object_get(known, "columns"), &err) != AGNES_OK)
            log_warn("msg=\"cannot record a table's column facts\" table=%s detail=\"%s\"", id, err.message);
    }
    system_db_writer_release(db);
}

static void fail_due(json_t *tables, const json_t *due_rows, const char *message)
{
    size_t i;
    json_t *row;
    json_array_foreach(due_rows, i, row) {
        json_t *entry = outcome_of(tables, row_text(row, "id"));
        if (entry == NULL) {
            entry = json_pack("{s:s}", "table_id", row_text(row, "id"));
            json_array_append_new(tables, entry);
        }
        json_object_set_new(entry, "state", json_string("failed"));
        json_object_set_new(entry, "error", json_string(message));
    }
}

static const char *overall_state(const json_t *tables)
{
    size_t i, failed = 0;
    json_t *entry;
    json_array_foreach(tables, i, entry)
        failed += strcmp(row_text(entry, "state"), "failed") == 0;
    return failed == 0 ? "done" : failed == json_array_size(tables) ? "failed" : "partial";
}

int builtin_sync_source(agnes_runtime *rt, system_db *db, const connector_ops *ops, const char *source,
                        const char *run_id, const json_t *due_rows, const atomic_bool *cancel, json_t **result,
                        agnes_error *err)
{
    source_dirs dirs;
    connector_settings settings;
    json_t *all_rows = NULL, *tables = json_array(), *facts = NULL;
    double started = util_monotonic_ms();
    agnes_error why;
    *result = NULL;
    if (prepare_dirs(&rt->paths, source, run_id, &dirs, err)) {
        json_decref(tables);
        return err->code;
    }
    if (source_settings_load(rt, source, &settings, &why) != AGNES_OK ||
        source_rows(db, source, &all_rows, &why) != AGNES_OK) {
        fail_due(tables, due_rows, why.message);
        goto done;
    }
    size_t i;
    json_t *row;
    json_array_foreach(due_rows, i, row) {
        char why_name[300], message[500];
        if (!contract_table_name_ok(row_text(row, "id"), why_name, sizeof why_name)) {
            /* Registered before names were checked: this table fails alone
             * (write_extract leaves it out) instead of breaking the extract. */
            snprintf(message, sizeof message,
                     "the table id '%s' %s; register it again under another name (source_table keeps the "
                     "source's name) and delete this one",
                     row_text(row, "id"), why_name);
            json_array_append_new(tables, json_pack("{s:s, s:s, s:n, s:n, s:s}", "table_id", row_text(row, "id"),
                                                    "state", "failed", "rows", "size_bytes", "error", message));
        } else if (is_remote(row)) /* its view is made with the extract, below */
            json_array_append_new(tables, json_pack("{s:s, s:s}", "table_id", row_text(row, "id"), "state", "queued"));
        else
            json_array_append_new(tables, sync_table(ops, &settings, &dirs, run_id, row, cancel));
    }
    facts = gather_facts(ops, &settings, due_rows, tables);
    if (write_extract(ops, &settings, &dirs, all_rows, tables, facts, &why) != AGNES_OK ||
        publish_extract(&dirs, &why) != AGNES_OK) {
        /* Parquet already moved into place serves through the old extract's views. */
        unlink(dirs.extract_tmp);
        fail_due(tables, due_rows, why.message);
    } else {
        remove_stale_files(&dirs, all_rows);
        record_column_facts(db, source, facts);
    }
done:
    explicit_bzero(settings.secret, sizeof settings.secret);
    agnes_error ignored;
    util_remove_tree(dirs.work_dir, &ignored);
    const char *state = overall_state(tables);
    *result = json_pack("{s:s, s:s, s:f, s:o}", "source", source, "state", state, "duration_ms",
                        util_monotonic_ms() - started, "tables", tables);
    if (strcmp(state, "failed") == 0) /* the first table's sentence says why */
        json_object_set(*result, "error", json_object_get(json_array_get(tables, 0), "error"));
    json_decref(all_rows);
    json_decref(facts);
    return AGNES_OK;
}

int builtin_republish_source(agnes_runtime *rt, system_db *db, const connector_ops *ops, const char *source,
                             agnes_error *err)
{
    source_dirs dirs;
    char run_id[64];
    json_t *all_rows = NULL, *tables = json_array();
    int lock = sync_source_lock(&rt->paths, source, false);
    if (lock < 0) {
        json_decref(tables);
        return agnes_error_set(err, AGNES_ERR_BUSY, "source '%s' is being synced; that run republishes it", source);
    }
    sync_new_run_id(run_id, sizeof run_id);
    int rc = prepare_dirs(&rt->paths, source, run_id, &dirs, err);
    if (rc == AGNES_OK)
        rc = source_rows(db, source, &all_rows, err);
    if (rc == AGNES_OK)
        rc = write_extract(ops, NULL, &dirs, all_rows, tables, NULL, err);
    if (rc == AGNES_OK)
        rc = publish_extract(&dirs, err);
    if (rc != AGNES_OK)
        unlink(dirs.extract_tmp);
    agnes_error ignored;
    util_remove_tree(dirs.work_dir, &ignored);
    close(lock);
    json_decref(all_rows);
    json_decref(tables);
    return rc;
}
