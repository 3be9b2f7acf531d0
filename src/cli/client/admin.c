/*
 * `agnes admin <what> [--json]` - thin wrappers over the admin API for
 * people and agents who would otherwise write curl lines:
 *
 *   registry                         GET  /api/admin/registry
 *   register-table NAME [--source-type T] [--bucket B] [--source-table S]
 *                  [--query-mode M] [--source-query SQL] [--schedule S]
 *                  [--description D]  POST /api/admin/register-table
 *   sync [ID ...] [--wait]           POST /api/sync/trigger (+ follow the run)
 *   users | groups | grants | tokens GET  the matching list
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "core/util.h"

static const struct {
    const char *name;
    const char *path;
    const char *list_key; /* where the rows are; NULL: the body is the list */
    const char *columns[5];
} lists[] = {
    {"registry", "/api/admin/registry", "tables", {"id", "source_type", "query_mode", "sync_schedule", "last_sync_error"}},
    {"users", "/api/users", NULL, {"id", "email", "role", "active", NULL}},
    {"groups", "/api/admin/groups", NULL, {"id", "name", "member_count", "grant_count", NULL}},
    {"grants", "/api/admin/grants", NULL, {"id", "group_name", "resource_type", "resource_id", NULL}},
    {"tokens", "/auth/admin/tokens", NULL, {"id", "name", "user_email", "expires_at", "revoked_at"}},
};

/* A table for people: a header naming the columns, a line per row; an
 * absent value is blank (it used to print `null`). */
static void print_rows(const json_t *rows, const char *const *columns)
{
    for (int c = 0; c < 5 && columns[c] != NULL; c++)
        printf("%s%-24s", c ? "  " : "", columns[c]);
    printf("\n");
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        for (int c = 0; c < 5 && columns[c] != NULL; c++) {
            json_t *value = json_object_get(row, columns[c]);
            char *text = value == NULL || json_is_null(value) ? NULL
                         : json_is_string(value)              ? strdup(json_string_value(value))
                                                              : json_dumps(value, JSON_ENCODE_ANY);
            printf("%s%-24s", c ? "  " : "", text ? text : "");
            free(text);
        }
        printf("\n");
    }
    if (json_array_size(rows) == 0)
        printf("(none)\n");
}

static int show_list(const client *c, int index, bool json_output, agnes_error *err)
{
    json_t *body = NULL;
    if (client_call_json(c, "GET", lists[index].path, NULL, &body, err))
        return err->code;
    json_t *rows = lists[index].list_key ? json_object_get(body, lists[index].list_key) : body;
    if (json_output) {
        json_dumpf(body, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        print_rows(rows, lists[index].columns);
    }
    json_decref(body);
    return AGNES_OK;
}

static int register_table(const client *c, int argc, char **argv, bool json_output, agnes_error *err)
{
    static const struct {
        const char *flag;
        const char *field;
    } flags[] = {{"--source-type", "source_type"}, {"--bucket", "bucket"},         {"--source-table", "source_table"},
                 {"--query-mode", "query_mode"},   {"--source-query", "source_query"}, {"--schedule", "sync_schedule"},
                 {"--description", "description"}};
    json_t *body = json_object(), *answer = NULL;
    for (int i = 0; i < argc; i++) {
        bool matched = false;
        for (size_t f = 0; f < sizeof flags / sizeof flags[0] && i + 1 < argc; f++)
            if (strcmp(argv[i], flags[f].flag) == 0) {
                json_object_set_new(body, flags[f].field, json_string(argv[++i]));
                matched = true;
                break;
            }
        if (!matched && argv[i][0] != '-' && json_object_get(body, "name") == NULL)
            json_object_set_new(body, "name", json_string(argv[i]));
        else if (!matched) {
            json_decref(body);
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "usage: agnes admin register-table NAME [--source-type T] [--bucket B] "
                                   "[--source-table S] [--query-mode local|materialized|remote] [--source-query SQL] "
                                   "[--schedule 'every 1h'] [--description D]");
        }
    }
    char *text = json_dumps(body, JSON_COMPACT);
    int rc = client_call_json(c, "POST", "/api/admin/register-table", text, &answer, err);
    free(text);
    json_decref(body);
    if (rc == AGNES_OK && json_output) {
        json_dumpf(answer, stdout, JSON_INDENT(2));
        printf("\n");
    } else if (rc == AGNES_OK) {
        printf("Registered %s.\n", json_string_value(json_object_get(answer, "id")));
    }
    json_decref(answer);
    return rc;
}

/* Trigger, and with --wait follow the run: done 0, partial 6, failed 1. */
static int sync_tables(const client *c, int argc, char **argv, bool json_output, int *exit_code, agnes_error *err)
{
    bool wait = false;
    json_t *ids = json_array(), *answer = NULL, *run = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0)
            wait = true;
        else
            json_array_append_new(ids, json_string(argv[i]));
    }
    char *text = json_array_size(ids) ? json_dumps(ids, JSON_COMPACT) : NULL;
    int rc = client_call_json(c, "POST", "/api/sync/trigger", text, &answer, err);
    free(text);
    json_decref(ids);
    if (rc != AGNES_OK)
        return rc;
    char path[200];
    snprintf(path, sizeof path, "/api/sync/status/%s", json_string_value(json_object_get(answer, "run_id")));
    while (wait && rc == AGNES_OK) {
        json_decref(run);
        run = NULL;
        rc = client_call_json(c, "GET", path, NULL, &run, err);
        if (rc != AGNES_OK || strcmp(json_string_value(json_object_get(run, "state")), "running") != 0)
            break;
        struct timespec pause = {0, 300 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (rc == AGNES_OK) {
        const json_t *shown = run ? run : answer;
        const char *state = json_string_value(json_object_get(shown, "state"));
        if (json_output) {
            json_dumpf(shown, stdout, JSON_INDENT(2));
            printf("\n");
        } else if (run == NULL) {
            printf("Sync %s started; follow it with `agnes admin sync --wait` or GET %s.\n",
                   json_string_value(json_object_get(answer, "run_id")), path);
        } else {
            size_t i;
            json_t *t;
            json_array_foreach(json_object_get(run, "tables"), i, t)
                printf("%-32s %-8s %s\n", json_string_value(json_object_get(t, "table_id")),
                       json_string_value(json_object_get(t, "state")),
                       client_text(t, "error"));
            printf("run %s: %s\n", json_string_value(json_object_get(run, "run_id")), state);
        }
        *exit_code = run == NULL || strcmp(state, "done") == 0 ? 0 : strcmp(state, "partial") == 0 ? CLIENT_EXIT_PARTIAL
                                                                                                   : CLIENT_EXIT_FAILED;
    }
    json_decref(run);
    json_decref(answer);
    return rc;
}

int command_admin(int argc, char **argv)
{
    bool json_output = false;
    int kept = 0;
    for (int i = 1; i < argc; i++) { /* --json may go anywhere */
        if (strcmp(argv[i], "--json") == 0)
            json_output = true;
        else
            argv[++kept] = argv[i];
    }
    argc = kept + 1;
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: agnes admin registry | register-table NAME [...] | sync [ID ...] [--wait] | users | "
                        "groups | grants | tokens   [--json]\n");
        return argc >= 2 ? 0 : CLIENT_EXIT_USAGE;
    }
    client c;
    agnes_error err;
    int rc = client_load(&c, NULL, &err), exit_code = 0;
    if (rc == AGNES_OK)
        rc = client_require_login(&c, &err);
    if (rc != AGNES_OK)
        return client_fail("admin", &err);
    const char *what = argv[1];
    bool known = false;
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (strcmp(what, lists[i].name) == 0 && argc == 2) {
            rc = show_list(&c, (int)i, json_output, &err);
            known = true;
        }
    if (strcmp(what, "register-table") == 0) {
        rc = register_table(&c, argc - 2, argv + 2, json_output, &err);
        known = true;
    } else if (strcmp(what, "sync") == 0) {
        rc = sync_tables(&c, argc - 2, argv + 2, json_output, &exit_code, &err);
        known = true;
    }
    if (!known) {
        fprintf(stderr, "agnes admin: unknown '%s'; run `agnes admin --help`\n", what);
        return CLIENT_EXIT_USAGE;
    }
    return rc != AGNES_OK ? client_fail("admin", &err) : exit_code;
}
