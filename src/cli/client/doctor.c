/*
 * The client half of `agnes doctor`: is the server reachable, is the token
 * good, is this workspace consistent with what its state says?  Read-only;
 * every failed check says what to run.  Exit 1 when a check failed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "cli/client/workspace.h"
#include "core/util.h"
#include "store/duck.h"

static void add(json_t *checks, const char *name, const char *status, const char *detail)
{
    json_array_append_new(checks, json_pack("{s:s, s:s, s:s}", "name", name, "status", status, "detail", detail));
}

static void check_workspace(workspace *ws, json_t *checks)
{
    char detail[AGNES_PATH_MAX + 300];
    size_t missing = 0, wrong_size = 0;
    const char *id;
    json_t *entry;
    json_object_foreach(json_object_get(ws->state, "tables"), id, entry) {
        char path[AGNES_PATH_MAX + 200];
        struct stat st;
        workspace_table_path(ws, id, path, sizeof path);
        if (stat(path, &st) != 0)
            missing++;
        else if ((long long)st.st_size != (long long)json_integer_value(json_object_get(entry, "size_bytes")))
            wrong_size++;
    }
    size_t tables = json_object_size(json_object_get(ws->state, "tables"));
    if (missing + wrong_size > 0) {
        snprintf(detail, sizeof detail, "%zu of %zu table files are missing and %zu differ from the last pull; run "
                                        "`agnes pull` (delete .agnes/state.json first to fetch everything again)",
                 missing, tables, wrong_size);
        add(checks, "workspace_files", "error", detail);
    } else {
        snprintf(detail, sizeof detail, "%zu table file%s in %s match%s the last pull", tables,
                 client_plural((long long)tables), ws->data_dir, tables == 1 ? "es" : "");
        add(checks, "workspace_files", "ok", detail);
    }
    if (tables == 0)
        return;
    duck_session session;
    agnes_error err;
    long long views = 0;
    bool found = false;
    if (duck_session_open(&session, ws->database, true, &err) == AGNES_OK) {
        duck_query_int(session.connection, "SELECT count(*) FROM duckdb_views() WHERE NOT internal", &views, &found,
                       &err);
        duck_session_close(&session);
    }
    snprintf(detail, sizeof detail, "%s has %lld view%s for %zu table%s%s", ws->database, views, client_plural(views),
             tables, client_plural((long long)tables), views >= (long long)tables ? "" : "; run `agnes pull` to recreate them");
    add(checks, "workspace_views", views >= (long long)tables ? "ok" : "error", detail);
}

int client_doctor(bool as_json, const char *mode_reason)
{
    client c;
    workspace ws = {0};
    agnes_error err;
    json_t *checks = json_array(), *health = NULL, *me = NULL;
    char detail[1400];
    if (client_load(&c, NULL, &err) != AGNES_OK) {
        json_decref(checks);
        return client_fail("doctor", &err);
    }
    snprintf(detail, sizeof detail, "%s (from %s)", c.server[0] ? c.server : "none", c.server_from);
    add(checks, "server_configured", c.server[0] ? "ok" : "error",
        c.server[0] ? detail : "no server: run `agnes login --server URL`");
    if (c.server[0] && client_call_json(&c, "GET", "/api/health", NULL, &health, &err) != AGNES_OK &&
        err.code == AGNES_ERR_NETWORK) {
        add(checks, "server_reachable", "error", err.message);
    } else if (c.server[0]) {
        snprintf(detail, sizeof detail, "reachable; health %s",
                 health ? json_string_value(json_object_get(health, "status")) : "not ok");
        add(checks, "server_reachable", "ok", detail);
        if (client_require_login(&c, &err) != AGNES_OK || client_call_json(&c, "GET", "/api/me", NULL, &me, &err))
            add(checks, "token", "error", err.message);
        else {
            snprintf(detail, sizeof detail, "valid for %s", json_string_value(json_object_get(me, "email")));
            add(checks, "token", "ok", detail);
        }
    }
    if (workspace_open(&ws, NULL, &err) == AGNES_OK)
        check_workspace(&ws, checks);
    size_t failures = 0, i;
    json_t *check;
    json_array_foreach(checks, i, check)
        failures += strcmp(json_string_value(json_object_get(check, "status")), "error") == 0;
    if (as_json) {
        json_t *doc = json_pack("{s:s, s:s, s:O, s:b}", "mode", "client", "mode_reason", mode_reason, "checks", checks,
                                "ok", failures == 0);
        json_dumpf(doc, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(doc);
    } else {
        printf("agnes doctor: client mode - %s\n", mode_reason);
        json_array_foreach(checks, i, check)
            printf("%-6s %-18s %s\n", json_string_value(json_object_get(check, "status")),
                   json_string_value(json_object_get(check, "name")),
                   json_string_value(json_object_get(check, "detail")));
    }
    json_decref(checks);
    json_decref(health);
    json_decref(me);
    workspace_close(&ws);
    return failures == 0 ? 0 : 1;
}
