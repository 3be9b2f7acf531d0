#include "cli/client/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "core/util.h"
#include "engine/contract.h"

/* Both absent/null, or equal JSON. */
static bool same_value(const json_t *a, const json_t *b)
{
    bool a_null = a == NULL || json_is_null(a), b_null = b == NULL || json_is_null(b);
    if (a_null || b_null)
        return a_null && b_null;
    return json_equal((json_t *)a, (json_t *)b);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of an object, sorted (the array points into the object). */
static const char **sorted_keys(const json_t *object, size_t *count)
{
    *count = 0;
    const char **keys = calloc(json_object_size(object) + 1, sizeof *keys);
    const char *key;
    json_t *value;
    if (keys == NULL)
        return NULL;
    json_object_foreach((json_t *)object, key, value)
        keys[(*count)++] = key;
    qsort(keys, *count, sizeof *keys, compare_strings);
    return keys;
}

static bool in_array(const json_t *array, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            return true;
    return false;
}

/* [[name, type], ..] from the catalog, or NULL when it cannot be asked. */
static json_t *catalog_columns(const client *c, const char *id)
{
    char path[300];
    json_t *detail = NULL, *columns = NULL;
    agnes_error err;
    if (!contract_is_identifier(id))
        return NULL;
    snprintf(path, sizeof path, "/api/catalog/tables/%s", id);
    if (client_call_json(c, "GET", path, NULL, &detail, &err) != AGNES_OK)
        return NULL;
    columns = json_array();
    size_t i;
    json_t *column;
    json_array_foreach(json_object_get(detail, "columns"), i, column)
        json_array_append_new(columns, json_pack("[s, s]", client_text(column, "name"), client_text(column, "type")));
    json_decref(detail);
    return columns;
}

/* One table's snapshot; columns come from the previous snapshot when the
 * manifest entry did not change, else from the catalog. */
static json_t *table_snapshot(const client *c, const char *id, const json_t *entry, const json_t *previous)
{
    json_t *rows = json_object_get(entry, "rows"), *updated = json_object_get(entry, "updated"),
           *hash = json_object_get(entry, "hash"), *columns = NULL;
    if (previous != NULL && same_value(json_object_get(previous, "rows"), rows) &&
        same_value(json_object_get(previous, "updated"), updated) &&
        same_value(json_object_get(previous, "hash"), hash) && json_is_array(json_object_get(previous, "columns")))
        columns = json_deep_copy(json_object_get(previous, "columns"));
    else
        columns = catalog_columns(c, id);
    return json_pack("{s:O?, s:O?, s:O?, s:O?, s:o?}", "rows", rows, "updated", updated, "hash", hash, "query_mode",
                     json_object_get(entry, "query_mode"), "columns", columns);
}

/* The caller's table grants and admin flag; false when they cannot be asked. */
static bool current_access(const client *c, json_t **granted, json_t **via, bool *is_admin)
{
    json_t *access = NULL;
    agnes_error err;
    *granted = NULL;
    *via = NULL;
    if (client_call_json(c, "GET", "/api/me/effective-access", NULL, &access, &err) != AGNES_OK)
        return false;
    *granted = json_array();
    *via = json_object();
    *is_admin = json_is_true(json_object_get(access, "is_admin"));
    size_t i, j;
    json_t *item, *group;
    json_array_foreach(json_object_get(access, "items"), i, item) {
        if (strcmp(client_text(item, "resource_type"), "table") != 0)
            continue;
        const char *id = client_text(item, "resource_id");
        json_array_append_new(*granted, json_string(id));
        strbuf groups;
        strbuf_init(&groups);
        json_array_foreach(json_object_get(item, "via_groups"), j, group)
            strbuf_appendf(&groups, "%s%s", j ? ", " : "", client_text(group, "group_name"));
        json_object_set_new(*via, id, json_string(groups.data ? groups.data : ""));
        strbuf_free(&groups);
    }
    json_decref(access);
    return true;
}

static long long rows_of(const json_t *table)
{
    return (long long)json_integer_value(json_object_get(table, "rows"));
}

/* "added `a` (INT); removed `b`; `c` INT -> BIGINT" for one table, or nothing. */
static void column_changes(const json_t *before, const json_t *after, strbuf *out)
{
    size_t i, j, changes = 0;
    json_t *a, *b;
    json_array_foreach(after, i, a) {
        const char *name = json_string_value(json_array_get(a, 0)), *type = json_string_value(json_array_get(a, 1));
        const char *old_type = NULL;
        json_array_foreach(before, j, b)
            if (strcmp(json_string_value(json_array_get(b, 0)), name) == 0)
                old_type = json_string_value(json_array_get(b, 1));
        if (old_type == NULL)
            strbuf_appendf(out, "%sadded `%s` (%s)", changes++ ? "; " : "", name, type);
        else if (strcmp(old_type, type) != 0)
            strbuf_appendf(out, "%s`%s` %s → %s", changes++ ? "; " : "", name, old_type, type);
    }
    json_array_foreach(before, j, b) {
        const char *name = json_string_value(json_array_get(b, 0));
        bool kept = false;
        json_array_foreach(after, i, a)
            kept = kept || strcmp(json_string_value(json_array_get(a, 0)), name) == 0;
        if (!kept)
            strbuf_appendf(out, "%sremoved `%s`", changes++ ? "; " : "", name);
    }
}

typedef struct sections {
    strbuf added, removed, gained, lost, columns, rows, notes;
    size_t changes;
} sections;

static void line(strbuf *section, size_t *changes, const char *fmt, const char *id, const char *detail)
{
    strbuf_appendf(section, fmt, id, detail);
    (*changes)++;
}

static void compare(const json_t *before, const json_t *after, const json_t *via, sections *s)
{
    const json_t *old_tables = json_object_get(before, "tables"), *new_tables = json_object_get(after, "tables");
    const json_t *old_granted = json_object_get(before, "granted"), *new_granted = json_object_get(after, "granted");
    bool grants_known = json_is_array(old_granted) && json_is_array(new_granted);
    size_t count = 0;
    char detail[600];
    const char **keys = sorted_keys(new_tables, &count);
    for (size_t i = 0; keys != NULL && i < count; i++) {
        const char *id = keys[i];
        const json_t *now = json_object_get(new_tables, id), *then = json_object_get(old_tables, id);
        if (then == NULL) {
            /* New to this user: a grant they gained, or a table new on the server. */
            if (grants_known && !json_is_true(json_object_get(after, "is_admin")) && !in_array(old_granted, id) &&
                in_array(new_granted, id)) {
                snprintf(detail, sizeof detail, "%lld rows, through %s", rows_of(now),
                         json_string_value(json_object_get(via, id)) ? json_string_value(json_object_get(via, id))
                                                                     : "a group");
                line(&s->gained, &s->changes, "- `%s` (%s)\n", id, detail);
            } else {
                snprintf(detail, sizeof detail, "%lld rows, %s", rows_of(now),
                         json_string_value(json_object_get(now, "query_mode")) ? json_string_value(json_object_get(now, "query_mode")) : "local");
                line(&s->added, &s->changes, "- `%s` (%s)\n", id, detail);
            }
            continue;
        }
        const json_t *old_columns = json_object_get(then, "columns"), *new_columns = json_object_get(now, "columns");
        if (json_is_array(old_columns) && json_is_array(new_columns)) {
            strbuf changed;
            strbuf_init(&changed);
            column_changes(old_columns, new_columns, &changed);
            if (changed.len > 0)
                line(&s->columns, &s->changes, "- `%s`: %s\n", id, changed.data);
            strbuf_free(&changed);
        }
        long long old_rows = rows_of(then), new_rows = rows_of(now);
        if (old_rows != new_rows) {
            snprintf(detail, sizeof detail, "%lld → %lld (%+lld)", old_rows, new_rows, new_rows - old_rows);
            line(&s->rows, &s->changes, "- `%s`: %s\n", id, detail);
        }
    }
    free(keys);
    keys = sorted_keys(old_tables, &count);
    for (size_t i = 0; keys != NULL && i < count; i++) {
        const char *id = keys[i];
        if (json_object_get(new_tables, id) != NULL)
            continue;
        if (grants_known && in_array(old_granted, id) && !in_array(new_granted, id))
            line(&s->lost, &s->changes, "- `%s`%s (its local copy was removed)\n", id, "");
        else
            line(&s->removed, &s->changes, "- `%s`%s (no longer on the server; its local copy was removed)\n", id, "");
    }
    free(keys);
    bool was_admin = json_is_true(json_object_get(before, "is_admin")),
         is_admin = json_is_true(json_object_get(after, "is_admin"));
    if (json_is_array(new_granted) && json_is_array(old_granted) && was_admin != is_admin)
        line(&s->gained, &s->changes, "- %s%s\n", is_admin ? "you are now an admin: you see every table" :
                                                              "you are no longer an admin", "");
}

static void section(strbuf *out, const char *title, const strbuf *body)
{
    if (body->len > 0)
        strbuf_appendf(out, "\n## %s\n\n%s", title, body->data);
}

int digest_update(const client *c, workspace *ws, const json_t *manifest, const char *now, agnes_error *err)
{
    json_t *before = json_object_get(ws->state, "digest");
    json_t *old_tables = json_object_get(before, "tables"), *tables = json_object(), *granted = NULL, *via = NULL;
    const json_t *listed = json_object_get(manifest, "tables");
    const char *id;
    json_t *entry;
    bool set_changed = !json_is_object(before) || json_object_size(old_tables) != json_object_size(listed);
    json_object_foreach((json_t *)listed, id, entry) {
        set_changed = set_changed || json_object_get(old_tables, id) == NULL;
        json_object_set_new(tables, id, table_snapshot(c, id, entry, json_object_get(old_tables, id)));
    }
    bool is_admin = json_is_true(json_object_get(before, "is_admin"));
    if (set_changed || !json_is_array(json_object_get(before, "granted"))) {
        if (!current_access(c, &granted, &via, &is_admin))
            granted = json_null(); /* unknown: additions and removals are not classified */
    } else {
        granted = json_deep_copy(json_object_get(before, "granted"));
    }
    json_t *after = json_pack("{s:o, s:o, s:b, s:s}", "tables", tables, "granted", granted, "is_admin", is_admin,
                              "pulled_at", now);
    sections s;
    memset(&s, 0, sizeof s);
    strbuf *all[] = {&s.added, &s.removed, &s.gained, &s.lost, &s.columns, &s.rows, &s.notes};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        strbuf_init(all[i]);
    strbuf text;
    strbuf_init(&text);
    size_t unknown_columns = 0;
    json_object_foreach(tables, id, entry)
        unknown_columns += json_is_array(json_object_get(entry, "columns")) ? 0 : 1;
    if (!json_is_object(before)) {
        strbuf_appendf(&text,
                       "# Agnes: first pull of this workspace\n\nPulled %s from %s: %zu tables you may read. "
                       "From the next pull on, this file lists what changed on the server since the pull before "
                       "(tables, columns, row counts, your access).\n",
                       now, c->server, json_object_size(tables));
    } else {
        compare(before, after, via, &s);
        strbuf_appendf(&text, "# Agnes: changes since the previous pull\n\nPulled %s from %s; previous pull %s.\n",
                       now, c->server, client_text(before, "pulled_at"));
        if (s.changes == 0)
            strbuf_appendf(&text, "\nNo changes: the same %zu tables, columns, row counts and access.\n",
                           json_object_size(tables));
        section(&text, "Tables added", &s.added);
        section(&text, "Tables removed", &s.removed);
        section(&text, "Access gained", &s.gained);
        section(&text, "Access lost", &s.lost);
        section(&text, "Columns changed", &s.columns);
        section(&text, "Row counts changed", &s.rows);
        if (json_is_null(granted))
            strbuf_append_str(&text, "\n(Your access could not be read this time, so new and removed tables are not "
                                     "told apart from gained and lost access.)\n");
    }
    if (unknown_columns > 0)
        strbuf_appendf(&text, "\n(The columns of %zu table%s could not be read from the catalog; they are compared "
                              "from the next pull on.)\n", unknown_columns, unknown_columns == 1 ? "" : "s");
    char path[AGNES_PATH_MAX + 32];
    int rc = util_mkdir_p(ws->state_dir, 0755, err);
    if (rc == AGNES_OK && (rc = util_format(path, sizeof path, err, "%s/changes.md", ws->state_dir)) == AGNES_OK)
        rc = strbuf_failed(&text) || after == NULL ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                                   : util_write_file_atomic(path, text.data, text.len, 0644, err);
    if (rc == AGNES_OK)
        json_object_set(ws->state, "digest", after);
    json_decref(after);
    json_decref(via);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        strbuf_free(all[i]);
    strbuf_free(&text);
    return rc;
}

void digest_print(const char *workspace_dir, bool pull_failed)
{
    char path[AGNES_PATH_MAX + 32], *text = NULL;
    size_t len = 0;
    agnes_error ignored;
    workspace ws;
    if (workspace_open(&ws, workspace_dir, &ignored) != AGNES_OK)
        return;
    snprintf(path, sizeof path, "%s/changes.md", ws.state_dir);
    workspace_close(&ws);
    if (!util_file_exists(path) || util_read_file(path, 4 << 20, &text, &len, &ignored) != AGNES_OK)
        return;
    if (pull_failed)
        printf("(The pull at the start of this session failed - see the message above - so this is what the last "
               "successful pull found.)\n\n");
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    free(text);
}
