#include "sync/runner.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/registry.h"
#include "store/sync_state.h"
#include "sync/builtin_sync.h"
#include "sync/connector.h"
#include "sync/custom_connector.h"
#include "sync/local_files.h"

void sync_new_run_id(char *out, size_t out_size)
{
    char stamp[32], id[37];
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
    util_uuid4(id);
    snprintf(out, out_size, "run_%s_%.8s", stamp, id);
}

/* One writer per source, across processes too (`agnes sync` beside the
 * server): extracts/<source>/.sync.lock, held for the whole run.  The
 * original let two syncs race on the same extract files. */
int sync_source_lock(const agnes_paths *paths, const char *source, bool wait)
{
    char dir[AGNES_PATH_MAX], path[AGNES_PATH_MAX + 100];
    agnes_error err;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, dir, sizeof dir, &err) != AGNES_OK)
        return -1;
    snprintf(path, sizeof path, "%s/%s", dir, source);
    if (util_mkdir_p(path, 0755, &err) != AGNES_OK)
        return -1;
    strncat(path, "/.sync.lock", sizeof path - strlen(path) - 1);
    int fd = util_lock_file(path, 0644, wait, &err);
    if (fd < 0 && err.code != AGNES_ERR_BUSY)
        log_warn("msg=\"cannot lock the source for its sync\" source=%s detail=\"%s\"", source, err.message);
    return fd;
}

/* Every registry row of source (new reference), or NULL when the registry cannot be read. */
static json_t *source_registry_rows(system_db *db, const char *source)
{
    duckdb_connection conn = NULL;
    json_t *all = NULL, *mine = NULL;
    agnes_error err;
    if (system_db_connect_reader(db, &conn, &err) == AGNES_OK && registry_list_json(conn, &all, &err) == AGNES_OK) {
        mine = json_array();
        size_t i;
        json_t *row;
        json_array_foreach(all, i, row) {
            const char *type = json_string_value(json_object_get(row, "source_type"));
            if (type != NULL && strcmp(type, source) == 0)
                json_array_append(mine, row);
        }
    } else {
        log_warn("msg=\"cannot read the registry\" source=%s detail=\"%s\"", source, err.message);
    }
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(all);
    return mine;
}

json_t *sync_run_source(agnes_runtime *rt, system_db *db, const char *run_id, const char *source, const json_t *rows,
                        const atomic_bool *cancel)
{
    json_t *outcome = NULL;
    agnes_error err;
    char executable[AGNES_PATH_MAX + 128];
    if (strcmp(source, LOCAL_SOURCE_NAME) == 0) { /* uploads change these; there is nothing to pull */
        outcome = json_pack("{s:s, s:s, s:[]}", "source", source, "state", "done", "tables");
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
            json_array_append_new(json_object_get(outcome, "tables"),
                                  json_pack("{s:O, s:s, s:s}", "table_id", json_object_get(row, "id"), "state",
                                            "skipped", "note", "local tables change by POST /api/upload/tables"));
        return outcome;
    }
    const connector_ops *builtin = connector_find(source);
    int lock_fd = sync_source_lock(&rt->paths, source, true);
    if (builtin != NULL) {
        if (builtin_sync_source(rt, db, builtin, source, run_id, rows, cancel, &outcome, &err) != AGNES_OK)
            outcome = json_pack("{s:s, s:s, s:s, s:[]}", "source", source, "state", "failed", "error", err.message,
                                "tables");
    } else if (custom_connector_path(&rt->paths, source, executable, sizeof executable)) {
        double timeout = (double)config_get_int(&rt->config, CFG_SYNC_TIMEOUT);
        json_t *registered = source_registry_rows(db, source);
        if (custom_connector_sync(&rt->paths, source, run_id, rows, registered ? registered : rows, timeout, cancel,
                                  &outcome, &err) != AGNES_OK)
            outcome = json_pack("{s:s, s:s, s:s, s:[]}", "source", source, "state", "failed", "error", err.message,
                                "tables");
        json_decref(registered);
    } else {
        char why[300];
        snprintf(why, sizeof why,
                 "source '%s' has no connector that can sync in this build (custom connectors: an executable "
                 "CONNECTORS_DIR/%s/extract)",
                 source, source);
        outcome = json_pack("{s:s, s:s, s:s, s:[]}", "source", source, "state", "failed", "error", why, "tables");
    }
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock */
    if (json_array_size(json_object_get(outcome, "tables")) == 0) { /* failed before any table: all failed */
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
            json_array_append_new(json_object_get(outcome, "tables"),
                                  json_pack("{s:O, s:s, s:O}", "table_id", json_object_get(row, "id"), "state",
                                            "failed", "error", json_object_get(outcome, "error")));
    }
    duckdb_connection writer = system_db_writer_acquire(db);
    size_t i;
    json_t *table;
    json_array_foreach(json_object_get(outcome, "tables"), i, table) {
        const char *state = json_string_value(json_object_get(table, "state"));
        const char *id = json_string_value(json_object_get(table, "table_id"));
        json_t *rows_value = json_object_get(table, "rows"), *size_value = json_object_get(table, "size_bytes");
        if (strcmp(state, "failed") == 0 &&
            sync_state_record_failure(writer, id, json_string_value(json_object_get(table, "error")), &err) != AGNES_OK)
            log_warn("msg=\"cannot record a failed sync\" detail=\"%s\"", err.message);
        /* A success clears an earlier error even when the data is the same (the rebuild then records nothing). */
        if (strcmp(state, "done") == 0 &&
            sync_state_record_success(writer, id, json_is_integer(rows_value) ? json_integer_value(rows_value) : -1,
                                      json_is_integer(size_value) ? json_integer_value(size_value) : -1,
                                      &err) != AGNES_OK)
            log_warn("msg=\"cannot record a successful sync\" detail=\"%s\"", err.message);
    }
    system_db_writer_release(db);
    log_info("msg=\"source synced\" run_id=%s source=%s state=%s", run_id, source,
             json_string_value(json_object_get(outcome, "state")));
    return outcome;
}


const char *sync_outcome_state(const json_t *tables)
{
    size_t i, counted = 0, failed = 0;
    json_t *entry;
    json_array_foreach(tables, i, entry) {
        const char *state = json_string_value(json_object_get(entry, "state"));
        if (state == NULL || strcmp(state, "skipped") == 0)
            continue;
        counted++;
        failed += strcmp(state, "failed") == 0;
    }
    return failed == 0 ? "done" : failed == counted ? "failed" : "partial";
}

/* The rebuild report's entry for source, or NULL. */
static const json_t *report_source(const json_t *report, const char *source)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(report, "sources"), i, entry)
        if (strcmp(json_string_value(json_object_get(entry, "name")), source) == 0)
            return entry;
    return NULL;
}

/* Why the rebuild did not publish table of source, in why; false when it did. */
static bool refused_by_rebuild(const json_t *report, const char *source, const char *table, char *why,
                               size_t why_size)
{
    size_t i;
    json_t *collision;
    json_array_foreach(json_object_get(report, "collisions"), i, collision) {
        const char *skipped = json_string_value(json_object_get(collision, "skipped_source"));
        const char *view = json_string_value(json_object_get(collision, "view"));
        if (skipped && view && strcmp(skipped, source) == 0 && strcasecmp(view, table) == 0) {
            snprintf(why, why_size,
                     "synced, but not published: the table name '%s' already belongs to source '%s' (the first "
                     "source to publish a name keeps it); register this table under another name, or remove it "
                     "from '%s'",
                     table, json_string_value(json_object_get(collision, "owner")),
                     json_string_value(json_object_get(collision, "owner")));
            return true;
        }
    }
    const json_t *entry = report_source(report, source);
    const char *status = json_string_value(json_object_get(entry, "status"));
    if (entry != NULL && status != NULL && strcmp(status, "error") == 0) {
        const char *first = json_string_value(json_array_get(json_object_get(entry, "errors"), 0));
        snprintf(why, why_size, "synced, but the catalog could not publish source '%s': %s", source,
                 first ? first : "its extract was skipped");
        return true;
    }
    return false;
}

int sync_apply_rebuild_report(system_db *db, json_t *outcome, const json_t *report)
{
    const char *source = json_string_value(json_object_get(outcome, "source"));
    int refused = 0;
    if (report == NULL || source == NULL)
        return 0;
    size_t i;
    json_t *table;
    json_array_foreach(json_object_get(outcome, "tables"), i, table) {
        const char *id = json_string_value(json_object_get(table, "table_id"));
        const char *state = json_string_value(json_object_get(table, "state"));
        char why[700];
        if (id == NULL || state == NULL || strcmp(state, "done") != 0 ||
            !refused_by_rebuild(report, source, id, why, sizeof why))
            continue;
        json_object_set_new(table, "state", json_string("failed"));
        json_object_set_new(table, "error", json_string(why));
        agnes_error err;
        duckdb_connection writer = system_db_writer_acquire(db);
        if (sync_state_record_failure(writer, id, why, &err) != AGNES_OK)
            log_warn("msg=\"cannot record a refused table\" detail=\"%s\"", err.message);
        system_db_writer_release(db);
        log_warn("msg=\"table synced but refused by the catalog\" table=%s source=%s", id, source);
        refused++;
    }
    if (refused > 0) {
        const char *state = sync_outcome_state(json_object_get(outcome, "tables"));
        json_object_set_new(outcome, "state", json_string(state));
        if (strcmp(state, "failed") == 0 && json_object_get(outcome, "error") == NULL)
            json_object_set(outcome, "error", json_object_get(json_array_get(json_object_get(outcome, "tables"), 0),
                                                              "error"));
    }
    return refused;
}
