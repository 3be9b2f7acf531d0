#include "http/mcp_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "engine/analytics.h"
#include "engine/contract.h"
#include "engine/result_handle.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/cli_dist.h"
#include "http/data.h"
#include "http/registry.h"
#include "http/results.h"
#include "http/router.h"
#include "http/sync.h"
#include "http/sync_status.h"

/* The error code a REST status stands for. */
static int code_of(long status)
{
    switch (status) {
    case 400:
    case 409:
    case 422: return AGNES_ERR_INVALID;
    case 401:
    case 403: return AGNES_ERR_FORBIDDEN;
    case 404: return AGNES_ERR_NOT_FOUND;
    case 408: return AGNES_ERR_TIMEOUT;
    case 429: return AGNES_ERR_BUSY;
    case 503: return AGNES_ERR_STATE;
    default: return AGNES_ERR_DB;
    }
}

/* Run an endpoint's handler as the caller, with {param} and body as given,
 * and return its JSON (new reference) - or NULL with its sentence in err. */
static json_t *call_endpoint(mcp_http_call *call, route_handler handler, const char *param, const char *value,
                             const char *body, agnes_error *err)
{
    http_request req = *call->req; /* identity, connection, request id */
    req.param_count = 0;
    if (param != NULL) {
        req.params[0].name = param;
        req.params[0].name_len = strlen(param);
        snprintf(req.params[0].value, sizeof req.params[0].value, "%s", value);
        req.param_count = 1;
    }
    req.body = body ? body : "";
    req.body_len = strlen(req.body);
    http_response resp;
    memset(&resp, 0, sizeof resp);
    resp.file_fd = -1;
    handler(call->ctx, &req, &resp);
    strbuf text;
    strbuf_init(&text);
    bool cut = false;
    if (resp.stream.read != NULL) { /* a streamed answer (the sample): read it whole, it is small */
        char buffer[16384];
        for (;;) {
            ssize_t n = resp.stream.read(resp.stream.cls, buffer, sizeof buffer);
            if (n < 0)
                cut = true;
            if (n <= 0)
                break;
            strbuf_append(&text, buffer, (size_t)n);
        }
        if (resp.stream.release)
            resp.stream.release(resp.stream.cls);
    } else if (resp.body != NULL) {
        strbuf_append(&text, resp.body, resp.body_len);
    }
    if (resp.has_file && resp.file_fd >= 0)
        close(resp.file_fd);
    free(resp.body);
    json_t *json = text.len ? json_loadb(text.data, text.len, 0, NULL) : json_object();
    strbuf_free(&text);
    if (cut || json == NULL) {
        json_decref(json);
        agnes_error_set(err, AGNES_ERR_DB, "The server could not complete the answer; try again.");
        return NULL;
    }
    if (resp.status >= 400) {
        const char *detail = json_string_value(json_object_get(json, "detail"));
        agnes_error_set(err, code_of(resp.status), "%s", detail ? detail : "The request failed.");
        json_decref(json);
        return NULL;
    }
    return json;
}

static json_t *tool_list_tables(mcp_http_call *call, agnes_error *err)
{
    return call_endpoint(call, catalog_handle_list, NULL, NULL, NULL, err);
}

static json_t *tool_describe_table(mcp_http_call *call, const json_t *args, agnes_error *err)
{
    const char *table = NULL;
    long long sample_rows = 5;
    if (mcp_arg_string(args, "table", true, &table, err) || mcp_arg_int(args, "sample_rows", 0, 20, &sample_rows, err))
        return NULL;
    if (!contract_is_identifier(table)) {
        agnes_error_set(err, AGNES_ERR_INVALID,
                        "'%.100s' is not a table id (letters, digits and _); list_tables gives the ids.", table);
        return NULL;
    }
    json_t *detail = call_endpoint(call, catalog_handle_get, "id", table, NULL, err);
    if (detail == NULL || sample_rows == 0)
        return detail;
    json_t *sample = call_endpoint(call, catalog_handle_sample, "id", table, NULL, err);
    if (sample == NULL) {
        json_decref(detail);
        return NULL;
    }
    json_t *rows = json_object_get(sample, "rows");
    while (json_array_size(rows) > (size_t)sample_rows)
        json_array_remove(rows, json_array_size(rows) - 1);
    json_object_set_new(detail, "sample", json_pack("{s:O, s:O}", "columns", json_object_get(sample, "columns"),
                                                    "rows", rows));
    json_decref(sample);
    return detail;
}

static int page_arguments(const json_t *args, long long *limit, long long *max_chars, agnes_error *err)
{
    if (mcp_arg_int(args, "limit", 1, MCP_PAGE_MAX_ROWS, limit, err) ||
        mcp_arg_int(args, "max_chars", 100, MCP_PAGE_MAX_CHARS, max_chars, err))
        return err->code;
    return AGNES_OK;
}

static char *tool_query(mcp_http_call *call, const json_t *args, agnes_error *err)
{
    const char *sql = NULL;
    long long limit = 0, max_chars = 0;
    bool local = false;
    unsigned status;
    strbuf page;
    strbuf_init(&page);
    if (mcp_arg_string(args, "sql", true, &sql, err) || page_arguments(args, &limit, &max_chars, err) ||
        mcp_arg_bool(args, "local", &local, err))
        return NULL;
    if (local) {
        agnes_error_set(err, AGNES_ERR_INVALID,
                        "local: true queries a pulled workspace, which only the stdio server (`agnes mcp`) has; "
                        "over HTTP the query runs on the server - leave local out.");
        return NULL;
    }
    if (results_run(call->ctx, call->req->identity, sql, limit, max_chars, &page, &status, err) != AGNES_OK) {
        strbuf_free(&page);
        return NULL;
    }
    return page.data;
}

static char *tool_fetch_result(mcp_http_call *call, const json_t *args, agnes_error *err)
{
    const char *handle = NULL;
    long long offset = 0, limit = 0, max_chars = 0;
    unsigned status;
    strbuf page;
    strbuf_init(&page);
    if (mcp_arg_string(args, "handle", true, &handle, err) ||
        mcp_arg_int(args, "offset", 0, 1000000000LL, &offset, err) || page_arguments(args, &limit, &max_chars, err))
        return NULL;
    if (results_fetch(call->ctx, call->req->identity, handle, offset, limit, max_chars, &page, &status, err) !=
        AGNES_OK) {
        strbuf_free(&page);
        return NULL;
    }
    return page.data;
}

/* The string ids of an optional "tables" argument (new reference; NULL: not given). */
static int table_ids(const json_t *args, json_t **out, agnes_error *err)
{
    json_t *tables = json_object_get(args, "tables");
    *out = NULL;
    if (tables == NULL || json_is_null(tables))
        return AGNES_OK;
    size_t i;
    json_t *id;
    if (!json_is_array(tables))
        return agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"tables\" must be an array of table ids.");
    json_array_foreach(tables, i, id)
        if (!json_is_string(id) || !contract_is_identifier(json_string_value(id)))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "Argument \"tables\" must hold table ids (letters, digits and _).");
    *out = json_incref(tables);
    return AGNES_OK;
}

static json_t *tool_pull(mcp_http_call *call, const json_t *args, agnes_error *err)
{
    const char *handle = NULL;
    char base[400], url[700];
    json_t *wanted = NULL;
    if (mcp_arg_string(args, "result", false, &handle, err) || table_ids(args, &wanted, err))
        return NULL;
    if (!http_public_url(call->ctx, call->req, base, sizeof base))
        base[0] = '\0';
    if (handle != NULL) {
        unsigned status;
        strbuf first;
        strbuf_init(&first);
        json_decref(wanted);
        int rc = results_fetch(call->ctx, call->req->identity, handle, 0, 1, 100, &first, &status, err);
        json_t *page = rc == AGNES_OK ? json_loadb(first.data, first.len, 0, NULL) : NULL;
        strbuf_free(&first);
        if (page == NULL)
            return NULL;
        char parquet[700], csv[700];
        snprintf(parquet, sizeof parquet, "%s/api/results/%s?format=parquet", base, handle);
        snprintf(csv, sizeof csv, "%s/api/results/%s?format=csv", base, handle);
        json_t *out = json_pack("{s:s, s:O, s:O, s:{s:s, s:s}, s:s}", "handle", handle, "total_rows",
                                json_object_get(page, "total_rows"), "expires_at", json_object_get(page, "expires_at"),
                                "downloads", "parquet", parquet, "csv", csv, "hint",
                                "GET these with your token (Authorization: Bearer), or run `agnes pull --result "
                                "HANDLE` in a workspace.");
        json_decref(page);
        return out;
    }
    json_t *manifest = call_endpoint(call, data_handle_manifest, NULL, NULL, NULL, err);
    if (manifest == NULL) {
        json_decref(wanted);
        return NULL;
    }
    json_t *tables = json_array();
    const char *id;
    json_t *entry;
    size_t i;
    json_t *name;
    json_array_foreach(wanted, i, name) {
        if (json_object_get(json_object_get(manifest, "tables"), json_string_value(name)) == NULL) {
            agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                            "Table '%s' is not among the tables you may read (list_tables lists them).",
                            json_string_value(name));
            json_decref(tables);
            json_decref(manifest);
            json_decref(wanted);
            return NULL;
        }
    }
    json_object_foreach(json_object_get(manifest, "tables"), id, entry) {
        bool listed = wanted == NULL;
        json_array_foreach(wanted, i, name)
            listed = listed || strcmp(json_string_value(name), id) == 0;
        if (!listed)
            continue;
        json_t *item = json_deep_copy(entry);
        json_object_set_new(item, "id", json_string(id));
        if (json_is_true(json_object_get(entry, "downloadable"))) {
            snprintf(url, sizeof url, "%s/api/data/%s/download", base, id);
            json_object_set_new(item, "download_url", json_string(url));
        }
        json_array_append_new(tables, item);
    }
    json_decref(manifest);
    json_decref(wanted);
    return json_pack("{s:o, s:I, s:s}", "tables", tables, "count", (json_int_t)json_array_size(tables), "hint",
                     "The server cannot write to your machine. To mirror these tables into a workspace run "
                     "`agnes pull` there (or use the stdio MCP server, `agnes mcp`); or GET each download_url with "
                     "your token (Authorization: Bearer; ETag and Range are supported).");
}

static json_t *tool_sync_trigger(mcp_http_call *call, const json_t *args, agnes_error *err)
{
    json_t *wanted = NULL;
    if (table_ids(args, &wanted, err) != AGNES_OK)
        return NULL;
    char *body = wanted ? json_dumps(wanted, JSON_COMPACT) : NULL;
    json_decref(wanted);
    json_t *out = call_endpoint(call, sync_handle_trigger, NULL, NULL, body, err);
    free(body);
    return out;
}

/* A tool built with jansson, as text; NULL stays NULL (err already set). */
static char *text_of(json_t *value, agnes_error *err)
{
    return value ? mcp_json_text(value, err) : NULL;
}

/* A tool's failure as the caller may read it: the sentences REST gives
 * for 4xx/503 pass unchanged; anything REST answers with a 500 (DuckDB's
 * text about the server's files, IO errors naming paths, worker internals)
 * becomes REST's own 500 sentence with the request id, its detail logged
 * - exactly what POST /api/query or /api/results would have answered. */
static void public_error(mcp_http_call *call, const char *tool, agnes_error *err)
{
    switch (err->code) {
    case AGNES_ERR_INVALID:
    case AGNES_ERR_FORBIDDEN:
    case AGNES_ERR_NOT_FOUND:
    case AGNES_ERR_TIMEOUT:
    case AGNES_ERR_BUSY:
    case AGNES_ERR_STATE: return;
    default: break;
    }
    log_error("msg=\"internal error\" request_id=%s path=\"/mcp\" tool=%s error=%s detail=\"%s\"",
              call->req->request_id, tool, agnes_status_name(err->code), err->message);
    agnes_error_set(err, err->code, "Internal server error; quote the request_id when reporting it (request_id %s).",
                    call->req->request_id);
}

static char *call_tool_unchecked(mcp_http_call *call, const char *tool, const json_t *args, agnes_error *err);

static char *call_tool(void *cls, const char *tool, const json_t *args, agnes_error *err)
{
    mcp_http_call *call = cls;
    char *text = call_tool_unchecked(call, tool, args, err);
    if (text == NULL)
        public_error(call, tool, err);
    return text;
}

static char *call_tool_unchecked(mcp_http_call *call, const char *tool, const json_t *args, agnes_error *err)
{
    if (strcmp(tool, "query") == 0)
        return tool_query(call, args, err);
    if (strcmp(tool, "fetch_result") == 0)
        return tool_fetch_result(call, args, err);
    if (strcmp(tool, "list_tables") == 0)
        return text_of(tool_list_tables(call, err), err);
    if (strcmp(tool, "describe_table") == 0)
        return text_of(tool_describe_table(call, args, err), err);
    if (strcmp(tool, "sync_status") == 0)
        return text_of(call_endpoint(call, sync_status_handle_get, NULL, NULL, NULL, err), err);
    if (strcmp(tool, "pull") == 0)
        return text_of(tool_pull(call, args, err), err);
    /* core/mcp.c lets the two below through for admins only; the endpoints check again. */
    if (strcmp(tool, "sync_trigger") == 0)
        return text_of(tool_sync_trigger(call, args, err), err);
    if (strcmp(tool, "registry") == 0)
        return text_of(call_endpoint(call, registry_handle_list, NULL, NULL, NULL, err), err);
    agnes_error_set(err, AGNES_ERR_INVALID, "Unknown tool %s.", tool);
    return NULL;
}

/* The ids the caller may query: their grants, or the whole catalog for admins. */
static json_t *tables(void *cls)
{
    mcp_http_call *call = cls;
    json_t *ids = NULL;
    agnes_error err;
    if (catalog_visible_ids(call->ctx, call->req->identity, &ids, &err) != AGNES_OK)
        return NULL;
    if (ids != NULL)
        return ids;
    analytics_snapshot *snapshot = analytics_acquire(call->ctx->analytics);
    ids = snapshot ? json_deep_copy(snapshot->table_names) : json_array();
    analytics_release(call->ctx->analytics, snapshot);
    return ids;
}

static bool is_admin(void *cls)
{
    mcp_http_call *call = cls;
    return call->req->identity->is_admin;
}

void mcp_tools_host(mcp_http_call *call, mcp_host *host)
{
    agnes_config *config = &call->ctx->runtime->config;
    *host = (mcp_host){
        .cls = call,
        .transport = "http",
        .server_version = call->ctx->runtime->version.version,
        .max_rows = config_get_int(config, CFG_RESULT_MAX_ROWS),
        .max_chars = config_get_int(config, CFG_RESULT_MAX_CHARS),
        .ttl_seconds = config_get_int(config, CFG_RESULT_TTL),
        .tables = tables,
        .is_admin = is_admin,
        .call = call_tool,
    };
}
