#include "sync/runner.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
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
        if (custom_connector_sync(&rt->paths, source, run_id, rows, timeout, cancel, &outcome, &err) != AGNES_OK)
            outcome = json_pack("{s:s, s:s, s:s, s:[]}", "source", source, "state", "failed", "error", err.message,
                                "tables");
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
        if (strcmp(json_string_value(json_object_get(table, "state")), "failed") == 0 &&
            sync_state_record_failure(writer, json_string_value(json_object_get(table, "table_id")),
                                      json_string_value(json_object_get(table, "error")), &err) != AGNES_OK)
            log_warn("msg=\"cannot record a failed sync\" detail=\"%s\"", err.message);
    }
    system_db_writer_release(db);
    log_info("msg=\"source synced\" run_id=%s source=%s state=%s", run_id, source,
             json_string_value(json_object_get(outcome, "state")));
    return outcome;
}

