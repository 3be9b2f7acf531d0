/*
 * `agnes rebuild [--json]` - rebuild analytics/server.duckdb from every
 * extract without serving.  It needs system.duckdb to itself, so with a
 * server running use POST /api/admin/rebuild instead (the error says so).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/runtime.h"
#include "engine/orchestrator.h"
#include "store/migrations.h"

static void print_human(json_t *report)
{
    size_t i;
    json_t *source;
    json_array_foreach(json_object_get(report, "sources"), i, source) {
        printf("%-24s %-8s %zu views\n", json_string_value(json_object_get(source, "name")),
               json_string_value(json_object_get(source, "status")), json_array_size(json_object_get(source, "views")));
        size_t j;
        json_t *problem;
        json_array_foreach(json_object_get(source, "errors"), j, problem)
            printf("    - %s\n", json_string_value(problem));
    }
    json_t *collision;
    json_array_foreach(json_object_get(report, "collisions"), i, collision)
        printf("collision: view %s is owned by %s; not published from %s\n",
               json_string_value(json_object_get(collision, "view")), json_string_value(json_object_get(collision, "owner")),
               json_string_value(json_object_get(collision, "skipped_source")));
    printf("%lld views in the catalog\n", (long long)json_integer_value(json_object_get(report, "views")));
}

int command_rebuild(int argc, char **argv)
{
    bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !as_json)) {
        fprintf(stderr, "usage: agnes rebuild [--json]\n");
        return EXIT_USAGE;
    }
    agnes_runtime rt = {0};
    system_db db = {0};
    agnes_error err;
    json_t *report = NULL;
    migration_report migrated;
    char path[AGNES_PATH_MAX];
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    int exit_code = 1;
    if (runtime_load(&rt, &err) || runtime_prepare_state(&rt, &err) || migrations_run(&rt.paths, 0, &migrated, &err) ||
        paths_state_file(&rt.paths, STATE_SYSTEM_DB, path, sizeof path, &err) ||
        system_db_open(&db, path, migrations_latest(), &err) ||
        orchestrator_rebuild(&rt.paths, &db, &allow, &report, &err)) {
        fprintf(stderr, "agnes rebuild: %s%s\n", err.message,
                err.code == AGNES_ERR_STATE ? " (with the server running, use POST /api/admin/rebuild)" : "");
        goto done;
    }
    if (as_json) {
        char *text = json_dumps(report, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else {
        print_human(report);
    }
    exit_code = 0;
done:
    json_decref(report);
    system_db_close(&db);
    runtime_free(&rt);
    return exit_code;
}
