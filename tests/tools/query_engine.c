/*
 * query_engine GRANTS - run SQL on an analyst's query engine in-process,
 * with the guard (wall a) switched off, so tests can prove that the
 * sandbox (wall b) alone returns no ungranted row, name, path or setting.
 *
 * GRANTS is a comma-separated list of table ids ("" for none); the catalog
 * is the one under DATA_DIR (the environment, as for `agnes serve`).  stdin
 * is a JSON array of SQL strings; stdout a JSON array with one object per
 * statement: {"sql", "frames": [{"type", "payload"}...]} where payload is
 * the frame's JSON (ERROR, HEAD, END, ABORT) or its text (DATA).
 *
 * QUERY_ENGINE_GUARD=1 runs the guard too (to time what it costs).
 * QUERY_ENGINE_WALL=a proves the other wall alone: the guard on, in front
 * of the admin engine (the whole catalog) instead of the sandbox.
 *
 * A test tool only: the server cannot switch the guard off - the worker
 * protocol has no way to ask for it.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/runtime.h"
#include "engine/analytics.h"
#include "engine/query_pool.h"
#include "engine/query_protocol.h"
#include "engine/query_worker.h"

static json_t *read_frames(FILE *file)
{
    json_t *frames = json_array();
    strbuf payload;
    agnes_error err;
    char type;
    strbuf_init(&payload);
    rewind(file);
    while (query_frame_read(fileno(file), &type, &payload, &err) == AGNES_OK) {
        char name[2] = {type, '\0'};
        json_t *value = type == QUERY_FRAME_DATA ? json_stringn_nocheck(payload.data ? payload.data : "", payload.len)
                                                 : query_frame_json(&payload);
        json_array_append_new(frames, json_pack("{s:s, s:o*}", "type", name, "payload", value));
    }
    strbuf_free(&payload);
    return frames;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: query_engine GRANTS < sql.json\n");
        return 2;
    }
    agnes_runtime rt = {0};
    analytics catalog;
    query_pool pool;
    agnes_error err;
    json_error_t parse_error;
    json_t *statements = json_loadf(stdin, 0, &parse_error), *visible = json_array(), *results = json_array();
    if (!json_is_array(statements)) {
        fprintf(stderr, "query_engine: stdin must be a JSON array of SQL strings: %s\n", parse_error.text);
        return 2;
    }
    char grants[4096];
    snprintf(grants, sizeof grants, "%s", argv[1]);
    for (char *save = NULL, *id = strtok_r(grants, ",", &save); id; id = strtok_r(NULL, ",", &save))
        json_array_append_new(visible, json_string(id));
    query_pool_options options = {.slot_count = 1, .max_per_user = 1, .timeout_seconds = 60, .memory_limit = "1GB"};
    if (runtime_load(&rt, &err) || analytics_init(&catalog, "1GB", &rt.credentials, 30, &err) ||
        analytics_reload(&catalog, &rt.paths, &err) || query_pool_init(&pool, &catalog, &rt.credentials, &rt.paths,
                                                                       &options, &err)) {
        fprintf(stderr, "query_engine: %s\n", err.message);
        return 1;
    }
    analytics_snapshot *snapshot = analytics_acquire(&catalog);
    query_caller caller = {.user_id = "test", .is_admin = false, .visible = visible};
    json_t *init = snapshot ? query_pool_init_message(&pool, snapshot, &caller) : NULL;
    query_engine *engine = NULL;
    const char *wall = getenv("QUERY_ENGINE_WALL");
    bool wall_a = wall != NULL && strcmp(wall, "a") == 0;
    query_caller admin = {.user_id = "test-admin", .is_admin = true};
    json_t *admin_init = wall_a && snapshot ? query_pool_init_message(&pool, snapshot, &admin) : NULL;
    if (init == NULL ||
        (wall_a ? query_engine_open_guard_only(init, admin_init, &engine, &err)
                : query_engine_open(init, &engine, &err)) != AGNES_OK) {
        fprintf(stderr, "query_engine: %s\n", init ? err.message : "no catalog");
        return 1;
    }
    size_t i;
    json_t *sql;
    json_array_foreach(statements, i, sql) {
        FILE *frames = tmpfile();
        json_t *query = json_pack("{s:O, s:i, s:s}", "sql", sql, "limit", 1000, "format", "json");
        bool guard = wall_a || (getenv("QUERY_ENGINE_GUARD") != NULL && strcmp(getenv("QUERY_ENGINE_GUARD"), "1") == 0);
        if (frames == NULL || query == NULL || query_engine_run(engine, query, guard, fileno(frames), &err)) {
            fprintf(stderr, "query_engine: %s\n", frames ? err.message : "no temporary file");
            return 1;
        }
        json_array_append_new(results, json_pack("{s:O, s:o}", "sql", sql, "frames", read_frames(frames)));
        json_decref(query);
        fclose(frames);
    }
    json_dumpf(results, stdout, JSON_INDENT(1));
    printf("\n");
    query_engine_close(engine);
    json_decref(init);
    json_decref(admin_init);
    analytics_release(&catalog, snapshot);
    query_pool_free(&pool);
    analytics_free(&catalog);
    json_decref(results);
    json_decref(statements);
    json_decref(visible);
    runtime_free(&rt);
    return 0;
}
