#include "engine/orchestrator.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "core/log.h"
#include "core/util.h"
#include "engine/postgres_query.h"
#include "store/duck.h"
#include "store/sync_state.h"
#include "store/table_files.h"

/* Violations that make a whole extract unusable (vs one bad row). */
static bool is_source_level(const char *rule)
{
    static const char *const rules[] = {"open", "meta_missing", "meta_columns", "meta_types", "meta_unreadable"};
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (strcmp(rule, rules[i]) == 0)
            return true;
    return false;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void orchestrator_extract_path(const agnes_paths *paths, const char *source, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/extracts/%s/extract.duckdb", paths->data_dir, source);
}

int orchestrator_list_sources(const agnes_paths *paths, json_t **sources, agnes_error *err)
{
    char dir[AGNES_PATH_MAX], file[AGNES_PATH_MAX];
    *sources = json_array();
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, dir, sizeof dir, err))
        return err->code;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? AGNES_OK : agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    char *names[4096];
    size_t count = 0;
    for (struct dirent *e = readdir(d); e != NULL && count < 4096; e = readdir(d)) {
        if (!contract_is_identifier(e->d_name))
            continue;
        snprintf(file, sizeof file, "%s/%s/extract.duckdb", dir, e->d_name);
        if (util_file_exists(file) && (names[count] = util_strdup(e->d_name)) != NULL)
            count++;
    }
    closedir(d);
    qsort(names, count, sizeof names[0], compare_strings);
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(*sources, json_string(names[i]));
        free(names[i]);
    }
    return AGNES_OK;
}

typedef struct rebuild {
    const agnes_paths *paths;
    system_db *db;
    duckdb_connection catalog; /* the new server.duckdb.tmp */
    json_t *collisions;
    int views;
} rebuild;

static json_t *new_source_entry(const char *name)
{
    return json_pack("{s:s, s:s, s:[], s:[]}", "name", name, "status", "ok", "views", "errors");
}

static void source_error(json_t *entry, const char *status, const char *message)
{
    json_object_set_new(entry, "status", json_string(status));
    json_array_append_new(json_object_get(entry, "errors"), json_string(message));
}

/* Content-change marker: the table's data file when it sits where the
 * built-in writers put it, else the extract itself (custom connectors keep
 * data elsewhere, and republish the extract whenever data changes). */
/* The single Parquet file a table's view reads, for downloads: the
 * conventional extracts/<source>/data/<table>.parquet, else the one
 * absolute path of a `read_parquet('...')` in the view's definition (custom
 * connectors write into their run directory).  False when there is none
 * (remote tables, views over several files). */
static bool locate_file(rebuild *rb, const char *source, const char *table, table_file *file)
{
    memset(file, 0, sizeof *file);
    snprintf(file->table_id, sizeof file->table_id, "%s", table);
    snprintf(file->source, sizeof file->source, "%s", source);
    snprintf(file->path, sizeof file->path, "%s/extracts/%s/data/%s.parquet", rb->paths->data_dir, source, table);
    if (table_file_stat(file))
        return true;
    json_t *rows = NULL;
    agnes_error ignored;
    const char *params[] = {source, table};
    bool found = false;
    if (duck_query_json(rb->catalog,
                        "SELECT sql FROM duckdb_views() WHERE database_name = $1 AND lower(view_name) = lower($2)",
                        params, 2, &rows, &ignored) == AGNES_OK &&
        json_array_size(rows) == 1) {
        const char *sql = json_string_value(json_object_get(json_array_get(rows, 0), "sql"));
        const char *open = sql ? strstr(sql, "read_parquet('") : NULL;
        const char *close = open ? strchr(open + 14, '\'') : NULL;
        if (close != NULL && strstr(close, "read_parquet(") == NULL && (size_t)(close - open - 14) < sizeof file->path) {
            snprintf(file->path, sizeof file->path, "%.*s", (int)(close - open - 14), open + 14);
            char extracts[AGNES_PATH_MAX];
            snprintf(extracts, sizeof extracts, "%s/extracts/", rb->paths->data_dir);
            found = file->path[0] == '/' && strncmp(file->path, extracts, strlen(extracts)) == 0 &&
                    strstr(file->path, "/../") == NULL && strpbrk(file->path, "*?[") == NULL &&
                    table_file_stat(file);
        }
    }
    json_decref(rows);
    return found;
}

/* Fill file->sha256: the recorded hash while the file is the version that
 * was hashed, else hash it now (outside the writer lock: it reads the file). */
static void hash_file(rebuild *rb, table_file *file)
{
    duckdb_connection reader = NULL;
    table_file known;
    agnes_error err;
    if (system_db_connect_reader(rb->db, &reader, &err) == AGNES_OK &&
        table_files_get(reader, file->table_id, &known, &err) == AGNES_OK && strcmp(known.path, file->path) == 0 &&
        known.size_bytes == file->size_bytes && known.mtime_ns == file->mtime_ns && known.inode == file->inode) {
        snprintf(file->sha256, sizeof file->sha256, "%s", known.sha256);
    } else if (table_file_hash(file, &err) != AGNES_OK || !table_file_is_current(file)) {
        file->sha256[0] = '\0'; /* replaced while hashed: the next rebuild hashes the new one */
        log_warn("msg=\"cannot hash a table's file\" table=%s detail=\"%s\"", file->table_id, err.message);
    }
    if (reader)
        duckdb_disconnect(&reader);
}

/* The outcome is kept inside the catalog (agnes.rebuild) so health can show
 * collisions and broken sources after a restart that did not rebuild. */
static int record_report(duckdb_connection catalog, json_t *sources, json_t *collisions, int views,
                         agnes_error *err)
{
    json_t *report = json_pack("{s:O, s:O, s:i}", "sources", sources, "collisions", collisions, "views", views);
    char *text = report ? json_dumps(report, JSON_COMPACT) : NULL;
    json_decref(report);
    if (text == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    const char *params[] = {text};
    int rc = duck_exec_params(catalog, "INSERT INTO agnes.rebuild VALUES (current_timestamp::TIMESTAMP, $1::JSON)",
                              params, 1, err);
    free(text);
    return rc;
}

/* Publish one _meta row of source as a view, honouring ownership. */
static void publish_table(rebuild *rb, const char *source, const char *table, long long rows, long long size,
                          json_t *entry)
{
    char owner[80], sql[300], message[700], hash[17] = "";
    agnes_error err;
    table_file file;
    bool has_file = locate_file(rb, source, table, &file);
    if (has_file)
        hash_file(rb, &file);
    has_file = has_file && file.sha256[0] != '\0';
    duckdb_connection writer = system_db_writer_acquire(rb->db);
    int rc = view_ownership_owner(writer, table, owner, sizeof owner, &err);
    if (rc == AGNES_OK && owner[0] == '\0' && (rc = view_ownership_claim(writer, table, source, &err)) == AGNES_OK)
        snprintf(owner, sizeof owner, "%s", source);
    if (rc == AGNES_OK && strcmp(owner, source) != 0) {
        json_array_append_new(rb->collisions,
                              json_pack("{s:s, s:s, s:s}", "view", table, "owner", owner, "skipped_source", source));
        snprintf(message, sizeof message, "view '%s' is owned by source '%s'; not published from '%s'", table, owner,
                 source);
        source_error(entry, "partial", message);
        system_db_writer_release(rb->db);
        return;
    }
    snprintf(sql, sizeof sql, "CREATE OR REPLACE VIEW \"%s\" AS SELECT * FROM \"%s\".\"%s\"", table, source, table);
    if (rc == AGNES_OK)
        rc = duck_exec(rb->catalog, sql, &err);
    if (rc == AGNES_OK) {
        const char *params[] = {table, source};
        char describe[300];
        snprintf(describe, sizeof describe,
                 "INSERT INTO agnes.tables SELECT table_name, $2, description, rows, size_bytes, extracted_at,"
                 " coalesce(query_mode, 'local'), current_timestamp::TIMESTAMP FROM \"%s\"._meta"
                 " WHERE table_name = $1 LIMIT 1",
                 source);
        rc = duck_exec_params(rb->catalog, describe, params, 2, &err);
    }
    if (rc == AGNES_OK) {
        if (has_file) {
            snprintf(hash, sizeof hash, "%.16s", file.sha256);
            if (table_files_upsert(writer, &file, &err) != AGNES_OK)
                log_warn("msg=\"cannot record a table's file\" table=%s detail=\"%s\"", table, err.message);
        }
        rc = sync_state_record(writer, table, rows, size, hash, "ok", NULL, &err);
        json_array_append_new(json_object_get(entry, "views"), json_string(table));
        rb->views++;
    } else {
        snprintf(message, sizeof message, "table '%s': %s", table, err.message);
        source_error(entry, "partial", message);
        agnes_error ignored;
        sync_state_record(writer, table, rows, size, "", "error", err.message, &ignored);
    }
    system_db_writer_release(rb->db);
}

static void publish_source(rebuild *rb, const char *source, const char *path, json_t *entry)
{
    char sql[600];
    agnes_error err;
    if (duck_attach_read_only(rb->catalog, path, source, &err)) {
        source_error(entry, "error", err.message);
        return;
    }
    snprintf(sql, sizeof sql,
             "SELECT m.table_name, coalesce(m.rows, 0), coalesce(m.size_bytes, 0) FROM \"%s\"._meta m"
             " WHERE m.table_name IN (SELECT table_name FROM duckdb_tables() WHERE database_name = '%s'"
             " UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = '%s')"
             " ORDER BY m.table_name",
             source, source, source);
    duckdb_result rows;
    if (duckdb_query(rb->catalog, sql, &rows) != DuckDBSuccess) {
        source_error(entry, "error", duckdb_result_error(&rows));
        duckdb_destroy_result(&rows);
        return;
    }
    for (idx_t r = 0; r < duckdb_row_count(&rows); r++) {
        char table[256];
        char why[300];
        duck_result_text(&rows, 0, r, table, sizeof table);
        /* A bad or reserved name (it would shadow DuckDB's own object) is
         * skipped alone; vet_source has already reported it. */
        if (contract_table_name_ok(table, why, sizeof why))
            publish_table(rb, source, table, duckdb_value_int64(&rows, 1, r), duckdb_value_int64(&rows, 2, r), entry);
    }
    duckdb_destroy_result(&rows);
}

/* Contract-check one source: false when it must be skipped whole; row-level
 * problems are noted in entry.  Adds its published names to `published`. */
static bool vet_source(const char *path, const char *source, const contract_allowlists *allow, json_t *entry,
                       json_t *published, agnes_error *err)
{
    contract_report report;
    bool usable = true;
    if (contract_check(path, allow, &report, err) != AGNES_OK)
        return false;
    for (size_t i = 0; i < report.count; i++) {
        bool fatal = is_source_level(report.items[i].rule);
        usable = usable && !fatal;
        source_error(entry, fatal ? "error" : "partial", report.items[i].message);
    }
    contract_report_free(&report);
    if (!usable)
        return false;
    duck_session session;
    duckdb_result names;
    if (duck_session_open(&session, path, true, err) != AGNES_OK)
        return false;
    if (duckdb_query(session.connection, "SELECT DISTINCT table_name FROM _meta WHERE table_name IS NOT NULL", &names) ==
        DuckDBSuccess)
        for (idx_t r = 0; r < duckdb_row_count(&names); r++) {
            char table[256];
            duck_result_text(&names, 0, r, table, sizeof table);
            json_array_append_new(published, json_pack("{s:s, s:s}", "view", table, "source", source));
        }
    duckdb_destroy_result(&names);
    duck_session_close(&session);
    return true;
}

/* Release names only when every source was readable: otherwise a source that
 * is briefly broken would lose its names to another. */
static void reconcile(rebuild *rb, json_t *published, bool all_readable)
{
    if (!all_readable)
        return;
    char *text = json_dumps(published, JSON_COMPACT);
    agnes_error err;
    duckdb_connection writer = system_db_writer_acquire(rb->db);
    if (text == NULL || view_ownership_reconcile(writer, text, &err) != AGNES_OK)
        log_warn("msg=\"cannot reconcile view ownership\" detail=\"%s\"", text ? err.message : "out of memory");
    json_t *names = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(published, i, item)
        json_array_append(names, json_object_get(item, "view"));
    char *ids = json_dumps(names, JSON_COMPACT);
    if (ids == NULL || table_files_retain(writer, ids, &err) != AGNES_OK) /* files of tables no longer published */
        log_warn("msg=\"cannot forget unpublished tables' files\" detail=\"%s\"", ids ? err.message : "out of memory");
    system_db_writer_release(rb->db);
    free(ids);
    json_decref(names);
    free(text);
}

/* Move the finished catalog into place; readers keep the old inode. */
static int swap_in(const char *tmp, const char *final, agnes_error *err)
{
    char wal[AGNES_PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s.wal", final);
    if (unlink(wal) != 0 && errno != ENOENT)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot remove %s: %s", wal, strerror(errno));
    if (rename(tmp, final) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    snprintf(wal, sizeof wal, "%s.wal", tmp);
    unlink(wal);
    return util_fsync_parent_dir(final, err);
}

int orchestrator_rebuild(const agnes_paths *paths, system_db *db, const contract_allowlists *allow, json_t **report,
                         agnes_error *err)
{
    char dir[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX], final[AGNES_PATH_MAX], wal[AGNES_PATH_MAX + 8];
    double started = util_monotonic_ms();
    json_t *names = NULL, *entries = json_array(), *published = json_array();
    rebuild rb = {paths, db, NULL, json_array(), 0};
    duck_session session = {0};
    bool all_readable = true;
    *report = NULL;
    if (orchestrator_list_sources(paths, &names, err) || paths_data_file(paths, DATA_ANALYTICS_DIR, dir, sizeof dir, err) ||
        util_mkdir_p(dir, 0755, err))
        goto fail;
    snprintf(tmp, sizeof tmp, "%s/server.duckdb.tmp", dir);
    snprintf(final, sizeof final, "%s/server.duckdb", dir);
    snprintf(wal, sizeof wal, "%s.wal", tmp);
    unlink(tmp); /* left by a killed rebuild */
    unlink(wal);
    if (duck_session_open(&session, tmp, false, err))
        goto fail;
    rb.catalog = session.connection;
    /* Remote PostgreSQL views bind here without connecting (they declare
     * their columns), so no credentials are handed over. */
    if (postgres_query_register(rb.catalog, NULL, 1, allow->token_envs, err))
        goto fail;
    /* The catalog describes itself: one row per published view, in a schema
     * of its own so no source can publish over it. */
    if (duck_exec(rb.catalog,
                  "CREATE SCHEMA agnes; CREATE TABLE agnes.tables (table_name VARCHAR PRIMARY KEY, source VARCHAR,"
                  " description VARCHAR, rows BIGINT, size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR,"
                  " published_at TIMESTAMP);"
                  "CREATE TABLE agnes.rebuild (built_at TIMESTAMP, report JSON)",
                  err))
        goto fail;
    /* Vet every source first, so names an owner stopped publishing are
     * released before anyone publishes in this same rebuild. */
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        const char *source = json_string_value(name);
        json_t *entry = new_source_entry(source);
        char path[AGNES_PATH_MAX];
        agnes_error vet_err;
        orchestrator_extract_path(paths, source, path, sizeof path);
        bool usable = vet_source(path, source, allow, entry, published, &vet_err);
        all_readable = all_readable && usable;
        json_object_set_new(entry, "_usable", json_boolean(usable));
        json_array_append_new(entries, entry);
    }
    reconcile(&rb, published, all_readable);
    json_t *entry;
    json_array_foreach(entries, i, entry) {
        const char *source = json_string_value(json_object_get(entry, "name"));
        char path[AGNES_PATH_MAX];
        orchestrator_extract_path(paths, source, path, sizeof path);
        if (json_is_true(json_object_get(entry, "_usable")))
            publish_source(&rb, source, path, entry);
        json_object_del(entry, "_usable");
        if (strcmp(json_string_value(json_object_get(entry, "status")), "ok") != 0)
            log_warn("msg=\"source not fully published\" source=%s status=%s", source,
                     json_string_value(json_object_get(entry, "status")));
    }
    if (record_report(rb.catalog, entries, rb.collisions, rb.views, err) ||
        duck_exec(session.connection, "CHECKPOINT", err))
        goto fail;
    duck_session_close(&session);
    if (swap_in(tmp, final, err))
        goto fail;
    *report = json_pack("{s:o, s:o, s:i, s:f}", "sources", entries, "collisions", rb.collisions, "views", rb.views,
                        "elapsed_ms", util_monotonic_ms() - started);
    log_info("msg=\"catalog rebuilt\" sources=%zu views=%d collisions=%zu", json_array_size(names), rb.views,
             json_array_size(rb.collisions));
    json_decref(names);
    json_decref(published);
    return *report ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
fail:
    duck_session_close(&session);
    unlink(tmp);
    json_decref(names);
    json_decref(entries);
    json_decref(published);
    json_decref(rb.collisions);
    return err->code;
}

/* "name size mtime_ns" per source, one line each: changes whenever an
 * extract is added, removed or rewritten (writers rename a new file in). */
static char *sources_fingerprint(const agnes_paths *paths, json_t *names)
{
    size_t cap = 64 + json_array_size(names) * 128, len = 0;
    char *text = malloc(cap);
    if (text == NULL)
        return NULL;
    text[0] = '\0';
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        char path[AGNES_PATH_MAX];
        struct stat st;
        orchestrator_extract_path(paths, json_string_value(name), path, sizeof path);
        if (stat(path, &st) != 0)
            memset(&st, 0, sizeof st);
        len += (size_t)snprintf(text + len, cap - len, "%s %lld %lld.%09ld\n", json_string_value(name),
                                (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    }
    return text;
}

int orchestrator_rebuild_if_changed(const agnes_paths *paths, system_db *db, const contract_allowlists *allow,
                                    json_t **report, agnes_error *err)
{
    char catalog[AGNES_PATH_MAX], stamp[AGNES_PATH_MAX + 16];
    json_t *names = NULL;
    char *current = NULL, *previous = NULL;
    *report = NULL;
    if (paths_data_file(paths, DATA_ANALYTICS_DIR, catalog, sizeof catalog, err) ||
        orchestrator_list_sources(paths, &names, err))
        return err->code;
    snprintf(stamp, sizeof stamp, "%s/server.duckdb.sources", catalog);
    strncat(catalog, "/server.duckdb", sizeof catalog - strlen(catalog) - 1);
    current = sources_fingerprint(paths, names);
    json_decref(names);
    if (current == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    agnes_error ignored;
    bool unchanged = util_file_exists(catalog) &&
                     util_read_file(stamp, 1 << 20, &previous, NULL, &ignored) == AGNES_OK &&
                     strcmp(previous, current) == 0;
    int rc = AGNES_OK;
    if (!unchanged && (rc = orchestrator_rebuild(paths, db, allow, report, err)) == AGNES_OK &&
        util_write_file_atomic(stamp, current, strlen(current), 0644, &ignored) != AGNES_OK)
        log_warn("msg=\"cannot record the catalog fingerprint\" detail=\"%s\"", ignored.message);
    free(current);
    free(previous);
    return rc;
}
