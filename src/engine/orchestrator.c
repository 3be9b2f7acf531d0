#include "engine/orchestrator.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "engine/demo.h"
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

/* Which version of an extract was checked: a writer renames a new file in,
 * so a rewrite changes the inode, and anything else the size or mtime. */
typedef struct file_identity {
    long long size, mtime_ns, inode;
} file_identity;

static bool identity_of(const char *path, file_identity *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    if (stat(path, &st) != 0)
        return false;
    id->size = (long long)st.st_size;
    id->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    id->inode = (long long)st.st_ino;
    return true;
}

static bool same_identity(const file_identity *a, const file_identity *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->inode == b->inode;
}

/* One line of the sources fingerprint: "name size mtime_ns inode". */
static void append_identity(strbuf *out, const char *source, const file_identity *id)
{
    strbuf_appendf(out, "%s %lld %lld %lld\n", source, id->size, id->mtime_ns, id->inode);
}

static void catalog_side_file(const agnes_paths *paths, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%s/analytics/server.duckdb.%s", paths->data_dir, suffix);
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
    /* The seeded demo never claims a name: uploads, registrations and discovery may take any of its names, and
     * the demo makes way at the next rebuild (engine/demo.h). */
    bool claims = strcmp(source, DEMO_SOURCE_NAME) != 0 || !demo_present(rb->paths);
    duckdb_connection writer = system_db_writer_acquire(rb->db);
    int rc = view_ownership_owner(writer, table, owner, sizeof owner, &err);
    if (rc == AGNES_OK && owner[0] == '\0' && (!claims || (rc = view_ownership_claim(writer, table, source, &err)) == AGNES_OK))
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

static void publish_source(rebuild *rb, const char *source, const char *path, const file_identity *checked,
                           json_t *entry)
{
    char sql[600];
    agnes_error err;
    file_identity now;
    /* Only the file the child checked is opened here: one renamed in since
     * waits for the next rebuild (which the changed fingerprint triggers). */
    if (!identity_of(path, &now) || !same_identity(&now, checked)) {
        source_error(entry, "error", "extract.duckdb was replaced after it was checked; the next rebuild checks "
                                     "and publishes the new file");
        return;
    }
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

enum vetting { VET_USABLE, VET_SKIPPED, VET_QUARANTINED };

/* The violation saying the check itself crashed or hung, or NULL. */
static const contract_violation *engine_failure(const contract_report *report)
{
    for (size_t i = 0; i < report->count; i++)
        if (strcmp(report->items[i].rule, CONTRACT_RULE_ENGINE_CRASH) == 0 ||
            strcmp(report->items[i].rule, CONTRACT_RULE_ENGINE_TIMEOUT) == 0)
            return &report->items[i];
    return NULL;
}

#define QUARANTINE_SUFFIX ".quarantined"
#define QUARANTINE_REASON_SUFFIX ".quarantined.reason"

/* An extract that crashed (or hung) the engine in its check is moved aside
 * as extract.duckdb.quarantined, with the reason beside it: nothing lists,
 * attaches or re-checks it again, so it cannot crash the server at any
 * later rebuild or start.  The connector's next extract replaces it. */
static void quarantine(const char *path, const char *source, const contract_violation *why, json_t *entry)
{
    char target[AGNES_PATH_MAX + 32], note[AGNES_PATH_MAX + 40], sentence[1600];
    agnes_error err;
    snprintf(target, sizeof target, "%s" QUARANTINE_SUFFIX, path);
    snprintf(note, sizeof note, "%s" QUARANTINE_REASON_SUFFIX, path);
    bool moved = rename(path, target) == 0;
    snprintf(sentence, sizeof sentence,
             "quarantined: %s. %s; its tables are not served, every other source is. Fix: %s. A new "
             "extract.duckdb from the connector replaces it",
             why->message,
             moved ? "The file was moved to extract.duckdb" QUARANTINE_SUFFIX : "The file could not be moved aside",
             why->fix);
    json_object_set_new(entry, "status", json_string("quarantined"));
    json_array_append_new(json_object_get(entry, "errors"), json_string(sentence));
    if (moved && util_write_file_atomic(note, sentence, strlen(sentence), 0600, &err) != AGNES_OK)
        log_warn("msg=\"cannot record why an extract was quarantined\" path=\"%s\" detail=\"%s\"", note,
                 err.message);
    log_error("msg=\"extract quarantined\" source=%s path=\"%s\" moved=%s detail=\"%s\"", source, path,
              moved ? "true" : "false", why->message);
}

/* The verdicts of the last rebuild (analytics/server.duckdb.checks):
 * {"allowlists": "...", "sources": {name: {"identity": "...", "report": {...}}}}.
 * A check costs a process and a DuckDB start (~0.2 s of CPU); a rebuild
 * after one source synced must not pay it again for every unchanged one. */
static json_t *load_checks(const agnes_paths *paths, const contract_allowlists *allow)
{
    char path[AGNES_PATH_MAX + 64], key[2 * CONTRACT_ALLOWLIST_MAX + 2];
    catalog_side_file(paths, "checks", path, sizeof path);
    snprintf(key, sizeof key, "%s|%s", allow->extensions, allow->token_envs);
    json_t *doc = json_load_file(path, 0, NULL);
    const char *stored = json_string_value(json_object_get(doc, "allowlists"));
    json_t *sources = stored && strcmp(stored, key) == 0 ? json_incref(json_object_get(doc, "sources")) : NULL;
    json_decref(doc);
    return json_is_object(sources) ? sources : (json_decref(sources), json_object());
}

static void save_checks(const agnes_paths *paths, const contract_allowlists *allow, json_t *sources)
{
    char path[AGNES_PATH_MAX + 64], key[2 * CONTRACT_ALLOWLIST_MAX + 2];
    agnes_error err;
    catalog_side_file(paths, "checks", path, sizeof path);
    snprintf(key, sizeof key, "%s|%s", allow->extensions, allow->token_envs);
    json_t *doc = json_pack("{s:s, s:O}", "allowlists", key, "sources", sources);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text == NULL || util_write_file_atomic(path, text, strlen(text), 0600, &err) != AGNES_OK) {
        log_warn("msg=\"cannot record the extract checks\" file=%s", path);
        unlink(path);
    }
    free(text);
    json_decref(doc);
}

static void identity_text(const file_identity *id, char *out, size_t size)
{
    snprintf(out, size, "%lld %lld %lld", id->size, id->mtime_ns, id->inode);
}

/* Contract-check one source in a child process (contract_check), or reuse
 * the last rebuild's verdict on this very file version: skipped whole on a
 * file-level violation, quarantined when it crashed the engine; row-level
 * problems are noted in entry.  *checked is the file version that was
 * checked; its published names go to `published`, its verdict to `checks`. */
static enum vetting vet_source(const char *path, const char *source, const contract_allowlists *allow, json_t *entry,
                               json_t *published, file_identity *checked, const json_t *previous, json_t *checks)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        file_identity before, after;
        contract_report report;
        agnes_error err;
        char identity[96];
        identity_of(path, &before);
        identity_text(&before, identity, sizeof identity);
        const json_t *known = json_object_get(previous, source);
        const char *known_identity = json_string_value(json_object_get(known, "identity"));
        if (known_identity != NULL && strcmp(known_identity, identity) == 0 &&
            contract_report_from_json(json_object_get(known, "report"), &report, &err) == AGNES_OK) {
            after = before;
        } else {
            if (contract_check(path, allow, &report, &err) != AGNES_OK) {
                source_error(entry, "error", err.message);
                return VET_SKIPPED;
            }
            identity_of(path, &after);
        }
        if (!same_identity(&before, &after)) { /* rewritten while checked: check what is there now */
            contract_report_free(&report);
            continue;
        }
        *checked = after;
        if (engine_failure(&report) != NULL) {
            /* Confirm before moving a file away: a second check in a fresh
             * process tells a damaged file (it fails again) from a child the
             * host killed once (memory pressure); the second verdict stands. */
            contract_report again;
            if (contract_check(path, allow, &again, &err) == AGNES_OK && engine_failure(&again) == NULL) {
                contract_report_free(&report);
                report = again;
            } else {
                contract_report_free(&again);
                quarantine(path, source, engine_failure(&report), entry);
                contract_report_free(&report);
                return VET_QUARANTINED;
            }
        }
        json_object_set_new(checks, source, json_pack("{s:s, s:o}", "identity", identity, "report",
                                                      contract_report_json(path, &report)));
        bool usable = true;
        for (size_t i = 0; i < report.count; i++) {
            bool fatal = is_source_level(report.items[i].rule);
            usable = usable && !fatal;
            source_error(entry, fatal ? "error" : "partial", report.items[i].message);
        }
        size_t i;
        json_t *name;
        json_array_foreach(usable ? report.names : NULL, i, name)
            json_array_append_new(published, json_pack("{s:O, s:s}", "view", name, "source", source));
        contract_report_free(&report);
        return usable ? VET_USABLE : VET_SKIPPED;
    }
    source_error(entry, "error",
                 "extract.duckdb was rewritten three times while it was being checked; the next rebuild checks the "
                 "settled file");
    return VET_SKIPPED;
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

/* Sources whose extract sits in quarantine with no new extract yet: they
 * stay in every report (and so in health) until a new file replaces them. */
static void add_quarantined(const agnes_paths *paths, json_t *entries)
{
    char dir[AGNES_PATH_MAX];
    agnes_error ignored;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, dir, sizeof dir, &ignored))
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        char moved[AGNES_PATH_MAX + 320], note[AGNES_PATH_MAX + 320], current[AGNES_PATH_MAX + 320];
        if (!contract_is_identifier(e->d_name))
            continue;
        snprintf(current, sizeof current, "%s/%s/extract.duckdb", dir, e->d_name);
        snprintf(moved, sizeof moved, "%s" QUARANTINE_SUFFIX, current);
        snprintf(note, sizeof note, "%s" QUARANTINE_REASON_SUFFIX, current);
        if (util_file_exists(current) || !util_file_exists(moved))
            continue;
        char *reason = NULL;
        if (util_read_file(note, 64 * 1024, &reason, NULL, &ignored) != AGNES_OK)
            reason = NULL;
        json_t *entry = new_source_entry(e->d_name);
        json_object_set_new(entry, "status", json_string("quarantined"));
        json_array_append_new(json_object_get(entry, "errors"),
                              json_string(reason ? reason : "quarantined: extract.duckdb crashed the engine when "
                                                            "checked; a new extract from the connector replaces it"));
        json_array_append_new(entries, entry);
        free(reason);
    }
    closedir(d);
}

/* analytics/server.duckdb.sources (every checked extract) and .vetted (the
 * usable ones), "name size mtime_ns inode" per line: the first says whether a
 * rebuild is due, the second which files a catalog reader may attach. */
static void record_fingerprints(const agnes_paths *paths, const strbuf *checked, const strbuf *vetted)
{
    char path[AGNES_PATH_MAX + 64];
    agnes_error err;
    const struct {
        const char *suffix;
        const strbuf *text;
    } files[] = {{"vetted", vetted}, {"sources", checked}};
    for (size_t i = 0; i < 2; i++) {
        catalog_side_file(paths, files[i].suffix, path, sizeof path);
        const char *text = files[i].text->len ? files[i].text->data : "";
        if (strbuf_failed(files[i].text) ||
            util_write_file_atomic(path, text, strlen(text), 0600, &err) != AGNES_OK) {
            log_warn("msg=\"cannot record the catalog fingerprint\" file=%s detail=\"%s\"", path,
                     strbuf_failed(files[i].text) ? "out of memory" : err.message);
            unlink(path); /* no stale list: the next watch rebuilds */
        }
    }
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
    size_t quarantined = 0;
    strbuf checked, vetted;
    strbuf_init(&checked);
    strbuf_init(&vetted);
    file_identity *identities = NULL;
    json_t *previous_checks = load_checks(paths, allow), *checks = json_object();
    *report = NULL;
    demo_yield_to_real_sources(paths, db); /* real tables take the demo's names in this same rebuild */
    if (orchestrator_list_sources(paths, &names, err) || paths_data_file(paths, DATA_ANALYTICS_DIR, dir, sizeof dir, err) ||
        util_mkdir_p(dir, 0755, err))
        goto fail;
    identities = calloc(json_array_size(names) + 1, sizeof *identities);
    if (identities == NULL) {
        agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto fail;
    }
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
    /* Vet every source first (each in a child process: an extract is
     * untrusted input), so names an owner stopped publishing are released
     * before anyone publishes in this same rebuild. */
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        const char *source = json_string_value(name);
        json_t *entry = new_source_entry(source);
        char path[AGNES_PATH_MAX];
        orchestrator_extract_path(paths, source, path, sizeof path);
        enum vetting verdict =
            vet_source(path, source, allow, entry, published, &identities[i], previous_checks, checks);
        all_readable = all_readable && verdict == VET_USABLE;
        if (verdict == VET_QUARANTINED)
            quarantined++;
        else
            append_identity(&checked, source, &identities[i]);
        json_object_set_new(entry, "_usable", json_boolean(verdict == VET_USABLE));
        json_array_append_new(entries, entry);
    }
    reconcile(&rb, published, all_readable);
    json_t *entry;
    json_array_foreach(entries, i, entry) {
        const char *source = json_string_value(json_object_get(entry, "name"));
        char path[AGNES_PATH_MAX];
        orchestrator_extract_path(paths, source, path, sizeof path);
        if (json_is_true(json_object_get(entry, "_usable")))
            publish_source(&rb, source, path, &identities[i], entry);
        json_object_del(entry, "_usable");
        const char *status = json_string_value(json_object_get(entry, "status"));
        if (strcmp(status, "ok") == 0 || strcmp(status, "partial") == 0)
            append_identity(&vetted, source, &identities[i]);
        if (strcmp(status, "ok") != 0)
            log_warn("msg=\"source not fully published\" source=%s status=%s", source, status);
    }
    add_quarantined(paths, entries);
    if (record_report(rb.catalog, entries, rb.collisions, rb.views, err) ||
        duck_exec(session.connection, "CHECKPOINT", err))
        goto fail;
    duck_session_close(&session);
    if (swap_in(tmp, final, err))
        goto fail;
    save_checks(paths, allow, checks);
    record_fingerprints(paths, &checked, &vetted);
    *report = json_pack("{s:o, s:o, s:i, s:f}", "sources", entries, "collisions", rb.collisions, "views", rb.views,
                        "elapsed_ms", util_monotonic_ms() - started);
    log_info("msg=\"catalog rebuilt\" sources=%zu views=%d collisions=%zu quarantined=%zu", json_array_size(names),
             rb.views, json_array_size(rb.collisions), quarantined);
    json_decref(names);
    json_decref(published);
    free(identities);
    strbuf_free(&checked);
    strbuf_free(&vetted);
    json_decref(previous_checks);
    json_decref(checks);
    return *report ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
fail:
    duck_session_close(&session);
    unlink(tmp);
    json_decref(names);
    json_decref(entries);
    json_decref(published);
    json_decref(rb.collisions);
    free(identities);
    strbuf_free(&checked);
    strbuf_free(&vetted);
    json_decref(previous_checks);
    json_decref(checks);
    return err->code;
}

/* The fingerprint of the extracts there now, in record_fingerprints' format. */
static int sources_fingerprint(const agnes_paths *paths, strbuf *out, agnes_error *err)
{
    json_t *names = NULL;
    if (orchestrator_list_sources(paths, &names, err))
        return err->code;
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        char path[AGNES_PATH_MAX];
        file_identity id;
        orchestrator_extract_path(paths, json_string_value(name), path, sizeof path);
        identity_of(path, &id);
        append_identity(out, json_string_value(name), &id);
    }
    json_decref(names);
    return strbuf_failed(out) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

int orchestrator_rebuild_if_changed(const agnes_paths *paths, system_db *db, const contract_allowlists *allow,
                                    json_t **report, agnes_error *err)
{
    char catalog[AGNES_PATH_MAX + 64], stamp[AGNES_PATH_MAX + 64], vetted[AGNES_PATH_MAX + 64];
    char *previous = NULL;
    strbuf current;
    strbuf_init(&current);
    *report = NULL;
    demo_yield_to_real_sources(paths, db); /* before the fingerprint, which would change under it */
    catalog_side_file(paths, "sources", stamp, sizeof stamp);
    catalog_side_file(paths, "vetted", vetted, sizeof vetted);
    snprintf(catalog, sizeof catalog, "%s/analytics/server.duckdb", paths->data_dir);
    if (sources_fingerprint(paths, &current, err)) {
        strbuf_free(&current);
        return err->code;
    }
    agnes_error ignored;
    bool unchanged = util_file_exists(catalog) && util_file_exists(vetted) &&
                     util_read_file(stamp, 1 << 20, &previous, NULL, &ignored) == AGNES_OK &&
                     strcmp(previous, current.len ? current.data : "") == 0;
    int rc = unchanged ? AGNES_OK : orchestrator_rebuild(paths, db, allow, report, err);
    strbuf_free(&current);
    free(previous);
    return rc;
}

int orchestrator_list_vetted_sources(const agnes_paths *paths, json_t **sources, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 64];
    char *text = NULL;
    *sources = json_array();
    if (*sources == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    catalog_side_file(paths, "vetted", path, sizeof path);
    agnes_error ignored;
    if (util_read_file(path, 1 << 20, &text, NULL, &ignored) != AGNES_OK)
        return AGNES_OK; /* none vetted yet: attach nothing */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char source[80], extract[AGNES_PATH_MAX];
        file_identity recorded, now;
        if (sscanf(line, "%79s %lld %lld %lld", source, &recorded.size, &recorded.mtime_ns, &recorded.inode) != 4 ||
            !contract_is_identifier(source))
            continue;
        orchestrator_extract_path(paths, source, extract, sizeof extract);
        if (identity_of(extract, &now) && same_identity(&now, &recorded))
            json_array_append_new(*sources, json_string(source));
        else
            log_warn("msg=\"extract changed since it was checked; not attached until the next rebuild\" source=%s",
                     source);
    }
    free(text);
    return AGNES_OK;
}
