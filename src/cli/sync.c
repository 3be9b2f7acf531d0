/*
 * `agnes sync [--json] [TABLE_ID ...]` - what POST /api/sync/trigger does,
 * from the shell and in the foreground: every registered table (or the
 * ones named) is synced source by source, then the catalog is rebuilt.
 * It needs system.duckdb to itself; with a server running, use the API
 * (the error says so).  Exit 0 when every table synced, 1 otherwise.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/runtime.h"
#include "engine/orchestrator.h"
#include "store/migrations.h"
#include "store/registry.h"
#include "sync/runner.h"

/* The registry rows to sync, grouped by source: {source: [rows]}. */
static int choose(system_db *db, char **ids, int id_count, json_t **by_source, agnes_error *err)
{
    duckdb_connection conn = NULL;
    json_t *rows = NULL;
    *by_source = json_object();
    if (system_db_connect_reader(db, &conn, err) != AGNES_OK || registry_list_json(conn, &rows, err) != AGNES_OK) {
        if (conn)
            duckdb_disconnect(&conn);
        return err->code;
    }
    duckdb_disconnect(&conn);
    for (int i = 0; i < id_count; i++) {
        bool found = false;
        size_t j;
        json_t *row;
        json_array_foreach(rows, j, row)
            found = found || strcmp(json_string_value(json_object_get(row, "id")), ids[i]) == 0;
        if (!found) {
            json_decref(rows);
            return agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                                   "table '%s' is not registered (POST /api/admin/register-table registers it)", ids[i]);
        }
    }
    size_t j;
    json_t *row;
    json_array_foreach(rows, j, row) {
        bool wanted = id_count == 0;
        for (int i = 0; i < id_count; i++)
            wanted = wanted || strcmp(json_string_value(json_object_get(row, "id")), ids[i]) == 0;
        const char *source = json_string_value(json_object_get(row, "source_type"));
        if (!wanted)
            continue;
        if (json_object_get(*by_source, source) == NULL)
            json_object_set_new(*by_source, source, json_array());
        json_array_append(json_object_get(*by_source, source), row);
    }
    json_decref(rows);
    return AGNES_OK;
}

static bool print_outcome(const json_t *outcome, bool as_json)
{
    bool ok = true;
    size_t i;
    json_t *table;
    json_array_foreach(json_object_get(outcome, "tables"), i, table) {
        const char *state = json_string_value(json_object_get(table, "state"));
        const char *error = json_string_value(json_object_get(table, "error"));
        ok = ok && strcmp(state, "failed") != 0;
        if (!as_json)
            printf("%-32s %-8s %s\n", json_string_value(json_object_get(table, "table_id")), state,
                   error ? error : "");
    }
    return ok;
}

int command_sync(int argc, char **argv)
{
    bool as_json = argc > 1 && strcmp(argv[1], "--json") == 0;
    char **ids = argv + 1 + (as_json ? 1 : 0);
    int id_count = argc - 1 - (as_json ? 1 : 0);
    for (int i = 0; i < id_count; i++) {
        if (ids[i][0] == '-') {
            fprintf(stderr, "usage: agnes sync [--json] [TABLE_ID ...]\n");
            return EXIT_USAGE;
        }
    }
    agnes_runtime rt = {0};
    system_db db = {0};
    agnes_error err;
    migration_report migrated;
    char path[AGNES_PATH_MAX], run_id[40];
    json_t *by_source = NULL, *outcomes = json_array(), *report = NULL;
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    int exit_code = 1;
    if (runtime_load(&rt, &err) || runtime_prepare_state(&rt, &err) || migrations_run(&rt.paths, 0, &migrated, &err) ||
        paths_state_file(&rt.paths, STATE_SYSTEM_DB, path, sizeof path, &err) ||
        system_db_open(&db, path, migrations_latest(), &err) || choose(&db, ids, id_count, &by_source, &err)) {
        fprintf(stderr, "agnes sync: %s%s\n", err.message,
                err.code == AGNES_ERR_STATE ? " (with the server running, use POST /api/sync/trigger)" : "");
        goto done;
    }
    sync_new_run_id(run_id, sizeof run_id);
    bool all_ok = true;
    const char *source;
    json_t *rows;
    json_object_foreach(by_source, source, rows)
        json_array_append_new(outcomes, sync_run_source(&rt, &db, run_id, source, rows, NULL));
    if (orchestrator_rebuild(&rt.paths, &db, &allow, &report, &err) != AGNES_OK) {
        fprintf(stderr, "agnes sync: the catalog rebuild failed: %s\n", err.message);
        goto done;
    }
    /* Tables the catalog refused to publish (a name another source owns) failed, as in the server's runs. */
    size_t i;
    json_t *outcome;
    json_array_foreach(outcomes, i, outcome) {
        sync_apply_rebuild_report(&db, outcome, report);
        all_ok = print_outcome(outcome, as_json) && all_ok;
    }
    if (as_json) {
        json_t *doc = json_pack("{s:s, s:O, s:O}", "run_id", run_id, "sources", outcomes, "catalog", report);
        char *text = json_dumps(doc, JSON_INDENT(2));
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(doc);
    } else {
        printf("run %s: %s; catalog rebuilt\n", run_id, all_ok ? "every table synced" : "some tables failed");
    }
    exit_code = all_ok ? 0 : 1;
done:
    json_decref(report);
    json_decref(outcomes);
    json_decref(by_source);
    system_db_close(&db);
    runtime_free(&rt);
    return exit_code;
}
