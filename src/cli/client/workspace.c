#include "cli/client/workspace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "core/util.h"
#include "store/duck.h"

int workspace_open(workspace *ws, const char *dir_flag, agnes_error *err)
{
    memset(ws, 0, sizeof *ws);
    const char *dir = dir_flag ? dir_flag : getenv("AGNES_WORKSPACE");
    char cwd[AGNES_PATH_MAX];
    if (dir == NULL || dir[0] == '\0') {
        if (getcwd(cwd, sizeof cwd) == NULL)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot read the current directory");
        dir = cwd;
    }
    if (realpath(dir, ws->dir) == NULL) {
        if (util_mkdir_p(dir, 0755, err) || realpath(dir, ws->dir) == NULL)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot use %s as the workspace", dir);
    }
    snprintf(ws->data_dir, sizeof ws->data_dir, "%s/data", ws->dir);
    snprintf(ws->state_dir, sizeof ws->state_dir, "%s/.agnes", ws->dir);
    snprintf(ws->database, sizeof ws->database, "%s/agnes.duckdb", ws->dir);
    char state_path[AGNES_PATH_MAX + 32];
    snprintf(state_path, sizeof state_path, "%s/state.json", ws->state_dir);
    ws->state = util_file_exists(state_path) ? json_load_file(state_path, 0, NULL) : NULL;
    if (!json_is_object(ws->state)) {
        json_decref(ws->state);
        ws->state = json_pack("{s:{}, s:[]}", "tables", "views");
    }
    if (!json_is_object(json_object_get(ws->state, "tables")))
        json_object_set_new(ws->state, "tables", json_object());
    if (!json_is_array(json_object_get(ws->state, "views")))
        json_object_set_new(ws->state, "views", json_array());
    return AGNES_OK;
}

int workspace_save(workspace *ws, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 32];
    if (util_mkdir_p(ws->state_dir, 0755, err))
        return err->code;
    snprintf(path, sizeof path, "%s/state.json", ws->state_dir);
    char *text = json_dumps(ws->state, JSON_INDENT(2) | JSON_SORT_KEYS);
    int rc = text ? util_write_file_atomic(path, text, strlen(text), 0644, err)
                  : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    free(text);
    return rc;
}

void workspace_close(workspace *ws)
{
    json_decref(ws->state);
    ws->state = NULL;
}

void workspace_table_path(const workspace *ws, const char *id, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.parquet", ws->data_dir, id);
}

static bool owned_view(const workspace *ws, const char *id)
{
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(ws->state, "views"), i, name)
        if (strcmp(json_string_value(name), id) == 0)
            return true;
    return false;
}

int workspace_write_views(workspace *ws, const json_t *removed, agnes_error *err)
{
    duck_session session;
    if (duck_session_open(&session, ws->database, false, err))
        return err->code;
    strbuf sql;
    strbuf_init(&sql);
    json_t *views = json_array();
    int rc = AGNES_OK;
    size_t i;
    json_t *id;
    json_array_foreach(removed, i, id) {
        if (!owned_view(ws, json_string_value(id)))
            continue; /* an analyst's own view of that name stays */
        strbuf_reset(&sql);
        strbuf_append_str(&sql, "DROP VIEW IF EXISTS ");
        duck_append_identifier(&sql, json_string_value(id));
        duck_exec(session.connection, sql.data, err);
    }
    const char *table;
    json_t *entry;
    json_object_foreach(json_object_get(ws->state, "tables"), table, entry) {
        char path[AGNES_PATH_MAX + 200];
        workspace_table_path(ws, table, path, sizeof path);
        if (!util_file_exists(path))
            continue;
        strbuf_reset(&sql);
        strbuf_append_str(&sql, "CREATE OR REPLACE VIEW ");
        duck_append_identifier(&sql, table);
        strbuf_append_str(&sql, " AS SELECT * FROM read_parquet(");
        duck_append_literal(&sql, path);
        strbuf_append_char(&sql, ')');
        if ((rc = duck_exec(session.connection, sql.data, err)) != AGNES_OK)
            break;
        json_array_append_new(views, json_string(table));
    }
    strbuf_free(&sql);
    duck_session_close(&session);
    if (rc == AGNES_OK)
        json_object_set_new(ws->state, "views", views);
    else
        json_decref(views);
    return rc;
}
