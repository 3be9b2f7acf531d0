/*
 * The table registry API (SPEC §9, reference §1.8), admin only:
 *
 *   POST   /api/admin/register-table            201 {id, name, status: "registered"}
 *   POST   /api/admin/register-table/precheck   {ok, table}: the same validation, nothing stored
 *   GET    /api/admin/registry                  {tables: [row + last_sync_error], count}
 *   PUT    /api/admin/registry/{id}             partial update -> {id, updated: [fields]}
 *   DELETE /api/admin/registry/{id}             204; the table's state and materialized file go too
 *
 * A table's id is its name lower-cased with spaces as "_", and must be a
 * valid view name (SPEC §7: the id is the view name everywhere).  Rules:
 * query_mode is local | materialized | remote; source_query only for
 * materialized, which needs one; sync_schedule per core/schedule.h;
 * source_type a built-in connector or an executable in CONNECTORS_DIR.
 */
#include "http/registry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/schedule.h"
#include "core/util.h"
#include "engine/contract.h"
#include "http/auth.h"
#include "http/json_body.h"
#include "store/registry.h"
#include "store/sync_state.h"
#include "store/users.h"
#include "core/log.h"
#include "http/catalog_admin.h"
#include "sync/builtin_sync.h"
#include "sync/connector.h"
#include "sync/source_settings.h"

#define SOURCE_QUERY_MAX 100000
#define PRIMARY_KEY_COLUMNS_MAX 32
#define COLUMN_NAME_MAX 256

static const char *const builtin_sources[] = {"local", "postgres", "keboola", "bigquery", "jira"};

static int unprocessable(http_response *resp, const char *fmt, const char *value)
{
    char detail[600];
    snprintf(detail, sizeof detail, fmt, value);
    http_respond_error(resp, 422, detail, NULL);
    return -1;
}

/* A custom connector is a directory of CONNECTORS_DIR with an executable `extract`. */
static bool custom_connector_exists(http_context *ctx, const char *name)
{
    char path[AGNES_PATH_MAX + 80];
    if (!contract_is_identifier(name))
        return false;
    snprintf(path, sizeof path, "%s/%s/extract", ctx->runtime->paths.connectors_dir, name);
    return access(path, X_OK) == 0;
}

static int check_source_type(http_context *ctx, const char *source_type, http_response *resp)
{
    for (size_t i = 0; i < sizeof builtin_sources / sizeof builtin_sources[0]; i++)
        if (strcmp(source_type, builtin_sources[i]) == 0)
            return 0;
    if (custom_connector_exists(ctx, source_type))
        return 0;
    char detail[AGNES_PATH_MAX + 300];
    snprintf(detail, sizeof detail,
             "source_type '%s' is not a connector here: use local, postgres, keboola, bigquery, jira, or the name "
             "of a custom connector with an executable %s/<name>/extract.",
             source_type, ctx->runtime->paths.connectors_dir);
    http_respond_error(resp, 422, detail, NULL);
    return -1;
}

/* A string field that may hold line breaks (SQL): 1..max bytes, no NUL. */
static int text_field(json_t *body, const char *field, size_t max, const char **out, http_response *resp)
{
    json_t *value = json_object_get(body, field);
    *out = NULL;
    if (value == NULL || json_is_null(value))
        return 0;
    if (!json_is_string(value) || json_string_length(value) == 0 || json_string_length(value) > max ||
        strlen(json_string_value(value)) != json_string_length(value))
        return unprocessable(resp, "Field \"%s\" must be a non-empty string (at most 100000 characters).", field);
    *out = json_string_value(value);
    return 0;
}

/* primary_key: a list of column names, or one name (kept as a list).
 * Every name is checked like any other string field, and the list is
 * bounded, so what is stored is exactly what was sent. */
static int primary_key_field(json_t *body, json_t **out, http_response *resp)
{
    json_t *value = json_object_get(body, "primary_key");
    *out = NULL;
    if (value == NULL || json_is_null(value))
        return 0;
    json_t *list = json_is_string(value) ? json_pack("[O]", value) : json_incref(value);
    size_t i;
    json_t *item;
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > PRIMARY_KEY_COLUMNS_MAX) {
        json_decref(list);
        return unprocessable(resp,
                             "Field \"%s\" must be a column name or a list of 1 to 32 column names, e.g. "
                             "[\"order_id\", \"line\"].",
                             "primary_key");
    }
    json_array_foreach(list, i, item) {
        json_t *holder = json_pack("{s:O}", "primary_key", item);
        const char *name = NULL;
        int bad = holder == NULL || json_body_string(holder, "primary_key", true, COLUMN_NAME_MAX, &name, resp);
        json_decref(holder);
        if (bad) {
            json_decref(list);
            return holder == NULL ? unprocessable(resp, "Field \"%s\" could not be read.", "primary_key") : -1;
        }
    }
    *out = list;
    return 0;
}

/* The id a name becomes: trimmed, lower-cased, spaces as "_". */
static bool id_from_name(const char *name, char *id, size_t id_size)
{
    while (*name == ' ')
        name++;
    size_t n = 0, len = strlen(name);
    while (len > 0 && name[len - 1] == ' ')
        len--;
    for (size_t i = 0; i < len && n + 1 < id_size; i++)
        id[n++] = name[i] == ' ' ? '_' : (char)tolower((unsigned char)name[i]);
    id[n] = '\0';
    return n == len && contract_is_identifier(id);
}

/* Cross-field rules on a complete row (after defaults and merges). */
static int check_row(http_context *ctx, json_t *row, http_response *resp)
{
    const char *mode = json_string_value(json_object_get(row, "query_mode"));
    const char *query = json_string_value(json_object_get(row, "source_query"));
    const char *schedule_text = json_string_value(json_object_get(row, "sync_schedule"));
    if (mode == NULL || json_string_value(json_object_get(row, "source_type")) == NULL) /* merge_fields refuses nulls */
        return unprocessable(resp, "%s", "query_mode and source_type must be strings.");
    if (strcmp(mode, "local") != 0 && strcmp(mode, "materialized") != 0 && strcmp(mode, "remote") != 0)
        return unprocessable(resp, "query_mode '%s' is not one of local, materialized, remote.", mode);
    if (query != NULL && strcmp(mode, "materialized") != 0)
        return unprocessable(resp, "source_query is only for query_mode 'materialized' (this table is '%s').", mode);
    if (query == NULL && strcmp(mode, "materialized") == 0)
        return unprocessable(resp, "query_mode 'materialized' needs a source_query: the SQL whose result %s.",
                             "is stored as the table");
    if (schedule_text != NULL) {
        schedule parsed;
        agnes_error err;
        if (schedule_parse(schedule_text, &parsed, &err) != AGNES_OK)
            return unprocessable(resp, "%s", err.message);
    }
    if (check_source_type(ctx, json_string_value(json_object_get(row, "source_type")), resp))
        return -1;
    /* A built-in connector's own rules (strategies, filters, export specs). */
    const connector_ops *ops = connector_find(json_string_value(json_object_get(row, "source_type")));
    agnes_error err;
    if (ops != NULL && ops->check_row != NULL && ops->check_row(row, &err) != AGNES_OK) {
        http_respond_error(resp, 422, err.message, NULL);
        return -1;
    }
    return 0;
}

/* The per-table sync settings (the Keboola connector reads them; its
 * check_row says what they may be): two day counts and where_filters, a
 * list of Storage whereFilters. */
static int merge_strategy_fields(json_t *body, json_t *row, json_t *updated, http_response *resp)
{
    static const char *const days[] = {"incremental_window_days", "initial_load_chunk_days"};
    for (size_t i = 0; i < 2; i++) {
        enum json_field_presence presence;
        long long value = 0;
        if (json_body_optional_int(body, days[i], i == 0 ? 0 : 1, 3650, &presence, &value, resp))
            return -1;
        if (presence == JSON_FIELD_ABSENT)
            continue;
        json_object_set_new(row, days[i], presence == JSON_FIELD_SET ? json_integer(value) : json_null());
        json_array_append_new(updated, json_string(days[i]));
    }
    json_t *filters = json_object_get(body, "where_filters");
    if (filters != NULL) {
        if (!json_is_null(filters) && !json_is_array(filters))
            return unprocessable(resp, "Field \"%s\" must be a list of filters {column, operator, values} or null.",
                                 "where_filters");
        json_object_set(row, "where_filters", json_array_size(filters) > 0 ? filters : json_null());
        json_array_append_new(updated, json_string("where_filters"));
    }
    return 0;
}

/* Copy the request's optional fields into row (absent = untouched, null = cleared). */
static int merge_fields(json_t *body, json_t *row, json_t *updated, http_response *resp)
{
    /* `instead` is set for fields that always have a value (a null there
     * is refused with what to send); the others are cleared by null. */
    static const struct {
        const char *name;
        size_t max;
        const char *instead;
    } strings[] = {{"source_type", 64, "a connector name such as postgres"},
                   {"bucket", 256, NULL},
                   {"source_table", 256, NULL},
                   {"sync_strategy", 64, NULL},
                   {"query_mode", 32, "one of local, materialized, remote"},
                   {"sync_schedule", 200, NULL},
                   {"folder", 256, NULL},
                   {"description", 4000, NULL},
                   {"partition_by", 256, NULL},
                   {"partition_granularity", 16, NULL}};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        json_t *value = json_object_get(body, strings[i].name);
        const char *text = NULL;
        if (value == NULL)
            continue;
        if (strings[i].instead != NULL
                ? json_body_string_not_null(body, strings[i].name, strings[i].max, strings[i].instead, &text, resp)
                : json_body_string(body, strings[i].name, false, strings[i].max, &text, resp))
            return -1;
        json_object_set_new(row, strings[i].name, text ? json_string(text) : json_null());
        json_array_append_new(updated, json_string(strings[i].name));
    }
    const char *query = NULL;
    if (json_object_get(body, "source_query") != NULL) {
        if (text_field(body, "source_query", SOURCE_QUERY_MAX, &query, resp))
            return -1;
        json_object_set_new(row, "source_query", query ? json_string(query) : json_null());
        json_array_append_new(updated, json_string("source_query"));
    }
    json_t *key = NULL;
    if (json_object_get(body, "primary_key") != NULL) {
        if (primary_key_field(body, &key, resp))
            return -1;
        json_object_set_new(row, "primary_key", key ? key : json_null());
        json_array_append_new(updated, json_string("primary_key"));
    }
    if (merge_strategy_fields(body, row, updated, resp))
        return -1;
    enum json_field_presence presence;
    bool profile = true;
    if (json_body_optional_bool(body, "profile_after_sync", &presence, &profile, resp))
        return -1;
    if (presence == JSON_FIELD_SET)
        json_object_set_new(row, "profile_after_sync", json_boolean(profile));
    return 0;
}

/* A validated new row from a RegisterTableRequest, or NULL (resp filled). */
static json_t *row_from_request(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp), *row = NULL, *updated = json_array();
    const char *name = NULL;
    char id[128];
    if (body == NULL || json_body_string(body, "name", true, 256, &name, resp))
        goto done;
    char why[300], detail[500];
    if (!id_from_name(name, id, sizeof id)) {
        unprocessable(resp,
                      "Table name \"%s\" does not make a valid id: use letters, digits, _ and spaces, starting "
                      "with a letter or _, at most 64 characters (the id is the name in lower case, spaces as _).",
                      name);
        goto done;
    }
    if (!contract_table_name_ok(id, why, sizeof why)) { /* the same rule as uploads, discovery and the checker */
        snprintf(detail, sizeof detail, "Table id \"%s\" %s.", id, why);
        http_respond_error(resp, 422, detail, NULL);
        goto done;
    }
    row = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", id, "name", name, "source_type", "local", "query_mode",
                    "local", "profile_after_sync", true);
    if (merge_fields(body, row, updated, resp) != 0 || check_row(ctx, row, resp) != 0) {
        json_decref(row);
        row = NULL;
    }
done:
    json_decref(updated);
    json_decref(body);
    return row;
}

/* 409 when the id's view name belongs to a different source. */
static bool name_taken(duckdb_connection conn, json_t *row, const http_request *req, http_response *resp)
{
    char owner[128] = "", detail[400];
    agnes_error err;
    const char *id = json_string_value(json_object_get(row, "id"));
    if (view_ownership_owner(conn, id, owner, sizeof owner, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return true;
    }
    if (owner[0] == '\0' || strcmp(owner, json_string_value(json_object_get(row, "source_type"))) == 0)
        return false;
    snprintf(detail, sizeof detail, "View name '%s' is already in use by source '%s'. Register it under another name.",
             id, owner);
    http_respond_error(resp, 409, detail, NULL);
    return true;
}

void registry_handle_register(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *row = row_from_request(ctx, req, resp);
    if (row == NULL)
        return;
    json_object_set_new(row, "registered_by", json_string(req->identity->email));
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    agnes_error err;
    if (!name_taken(conn, row, req, resp)) {
        const char *id = json_string_value(json_object_get(row, "id"));
        int rc = registry_insert(conn, row, &err);
        if (!http_respond_failure(resp, req, rc, &err, "Table not found")) {
            audit_log_write(conn, req->identity->user_id, "table.register", id, NULL, "ok");
            http_respond_json(resp, 201, json_pack("{s:s, s:O, s:s}", "id", id, "name", json_object_get(row, "name"),
                                                   "status", "registered"));
        }
    }
    system_db_writer_release(ctx->db);
    json_decref(row);
}

/* Built-in sources that can describe a table check it exists and list its
 * columns; 400 with the source's own words when it cannot be read. */
static int describe_at_source(http_context *ctx, const json_t *row, json_t *table, http_response *resp)
{
    const char *source = json_string_value(json_object_get(row, "source_type"));
    const connector_ops *ops = connector_find(source);
    connector_settings settings;
    json_t *columns = NULL;
    agnes_error err;
    if (ops == NULL || ops->describe == NULL)
        return 0;
    if (source_settings_load(ctx->runtime, source, &settings, &err) != AGNES_OK)
        return 0; /* not configured yet: registering is still allowed, there is nothing to ask */
    int rc = ops->describe(&settings, row, &columns, &err);
    explicit_bzero(settings.secret, sizeof settings.secret);
    if (rc != AGNES_OK) {
        /* Name the fields the source was asked with: "relation public.nope
         * does not exist" alone does not say which of them to change. */
        const char *mode = json_string_value(json_object_get(row, "query_mode"));
        const char *bucket = json_string_value(json_object_get(row, "bucket"));
        const char *table_name = json_string_value(json_object_get(row, "source_table"));
        char asked[700];
        if (mode != NULL && strcmp(mode, "materialized") == 0)
            snprintf(asked, sizeof asked, " It was asked with source_query (the SQL of a materialized table): fix "
                     "that query.");
        else
            snprintf(asked, sizeof asked,
                     " It was asked for bucket \"%.200s\" (the schema%s) and source_table \"%.200s\" (the table or "
                     "view%s): fix those fields. GET /api/admin/discover-tables lists what the source has.",
                     bucket && bucket[0] ? bucket : "public", bucket && bucket[0] ? "" : ", default public",
                     table_name && table_name[0] ? table_name : json_string_value(json_object_get(row, "name")),
                     table_name && table_name[0] ? "" : ", default the name");
        char detail[AGNES_ERROR_MESSAGE_MAX + 800];
        snprintf(detail, sizeof detail, "The table cannot be read at the source: %s.%s", err.message, asked);
        http_respond_error(resp, 400, detail, NULL);
        return -1;
    }
    json_object_set_new(table, "column_count", json_integer((json_int_t)json_array_size(columns)));
    json_object_set_new(table, "columns", columns);
    json_object_set_new(table, "note", json_string("Valid: the source answered with these columns."));
    return 0;
}

void registry_handle_precheck(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *row = row_from_request(ctx, req, resp);
    if (row == NULL)
        return;
    json_t *table = json_pack("{s:O, s:O, s:O, s:O, s:n, s:n, s:[], s:s}", "name", json_object_get(row, "name"),
                              "source_type", json_object_get(row, "source_type"), "bucket",
                              json_object_get(row, "bucket") ? json_object_get(row, "bucket") : json_null(),
                              "source_table",
                              json_object_get(row, "source_table") ? json_object_get(row, "source_table") : json_null(),
                              "rows", "size_bytes", "columns", "note",
                              "Valid. Rows and columns are known after the first sync.");
    json_object_set(table, "id", json_object_get(row, "id"));
    if (describe_at_source(ctx, row, table, resp) != 0) {
        json_decref(table);
        json_decref(row);
        return;
    }
    http_respond_json(resp, 200, json_pack("{s:b, s:o}", "ok", true, "table", table));
    json_decref(row);
}

void registry_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    duckdb_connection conn = NULL;
    json_t *rows = NULL;
    agnes_error err;
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        registry_list_json(conn, &rows, &err) != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else
        http_respond_json(resp, 200, json_pack("{s:O, s:I}", "tables", rows, "count", (json_int_t)json_array_size(rows)));
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(rows);
}

void registry_handle_update(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    json_t *body = json_body_parse_object(req, resp), *row = NULL, *updated = json_array();
    agnes_error err;
    if (body == NULL)
        goto done;
    if (json_object_get(body, "name") != NULL && !json_is_null(json_object_get(body, "name"))) {
        http_respond_error(resp, 422, "A table's name is its id and cannot change; register a new table instead.",
                           NULL);
        goto done;
    }
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = registry_get_json(conn, id, &row, &err);
    if (!http_respond_failure(resp, req, rc, &err, "Table not found") && merge_fields(body, row, updated, resp) == 0) {
        /* Leaving materialized drops its query, as in the original. */
        if (strcmp(json_string_value(json_object_get(row, "query_mode")), "materialized") != 0 &&
            json_object_get(body, "source_query") == NULL)
            json_object_set_new(row, "source_query", json_null());
        if (check_row(ctx, row, resp) == 0 && !name_taken(conn, row, req, resp)) {
            rc = registry_update(conn, id, row, &err);
            if (!http_respond_failure(resp, req, rc, &err, "Table not found")) {
                audit_log_write(conn, req->identity->user_id, "table.update", id, NULL, "ok");
                json_t *answer = json_pack("{s:s, s:O}", "id", id, "updated", updated);
                /* What analysts query only changes when the table is synced
                 * again; answering just "updated" let an admin believe the
                 * switch was done while the old copy kept serving. */
                static const char *const data_fields[] = {"query_mode", "source_query", "bucket", "source_table",
                                                          "source_type"};
                bool needs_sync = false;
                size_t i;
                json_t *field;
                json_array_foreach(updated, i, field)
                    for (size_t f = 0; f < sizeof data_fields / sizeof data_fields[0]; f++)
                        needs_sync = needs_sync || strcmp(json_string_value(field), data_fields[f]) == 0;
                json_object_set_new(answer, "sync_needed", json_boolean(needs_sync));
                if (needs_sync)
                    json_object_set_new(answer, "note",
                                        json_sprintf("Saved. The catalog keeps serving the table as it was until it is "
                                                     "synced again: run POST /api/sync/trigger with the body "
                                                     "[\"%s\"] (or `agnes admin sync %s`, or Sync now on "
                                                     "/admin/tables).", id, id));
                http_respond_json(resp, 200, answer);
            }
        }
    }
    system_db_writer_release(ctx->db);
done:
    json_decref(updated);
    json_decref(row);
    json_decref(body);
}

/* A materialized table has no _meta row: its file is all there is. */
/* The files an unregistered table leaves: a materialized table's Parquet
 * (the original's rule) and, for built-in connectors, whatever the runner
 * wrote for it.  Built-in sources then republish their extract without it
 * and the catalog is rebuilt, so the table is gone from queries at once. */
static void remove_table_files(http_context *ctx, const json_t *row)
{
    const char *mode = json_string_value(json_object_get(row, "query_mode"));
    const char *source = json_string_value(json_object_get(row, "source_type"));
    const char *id = json_string_value(json_object_get(row, "id"));
    const connector_ops *builtin = connector_find(source);
    char extracts[AGNES_PATH_MAX], path[AGNES_PATH_MAX + 300];
    agnes_error err;
    if ((strcmp(mode, "materialized") != 0 && builtin == NULL) || !contract_is_identifier(source) ||
        paths_data_file(&ctx->runtime->paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, &err) != AGNES_OK)
        return;
    snprintf(path, sizeof path, "%s/%s/data/%s.parquet", extracts, source, id);
    unlink(path);
    strncat(path, ".tmp", sizeof path - strlen(path) - 1);
    unlink(path);
}

static void republish(http_context *ctx, const json_t *row)
{
    const char *source = json_string_value(json_object_get(row, "source_type"));
    const connector_ops *builtin = connector_find(source);
    json_t *report = NULL;
    agnes_error err;
    if (builtin == NULL)
        return;
    int rc = builtin_republish_source(ctx->runtime, ctx->db, builtin, source, &err);
    if (rc != AGNES_OK && rc != AGNES_ERR_BUSY)
        log_warn("msg=\"cannot republish the source after an unregister\" source=%s detail=\"%s\"", source,
                 err.message);
    if (rc == AGNES_OK && catalog_rebuild(ctx, false, &report, &err) != AGNES_OK)
        log_warn("msg=\"catalog rebuild after an unregister failed\" detail=\"%s\"", err.message);
    json_decref(report);
}

void registry_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    json_t *row = NULL;
    agnes_error err;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = registry_get_json(conn, id, &row, &err);
    if (rc == AGNES_OK)
        rc = registry_delete(conn, id, &err);
    if (!http_respond_failure(resp, req, rc, &err, "Table not found")) {
        remove_table_files(ctx, row);
        audit_log_write(conn, req->identity->user_id, "table.unregister", id, NULL, "ok");
        http_respond_raw(resp, 204, NULL, NULL, 0);
    }
    system_db_writer_release(ctx->db);
    if (rc == AGNES_OK)
        republish(ctx, row);
    json_decref(row);
}
