#include "core/mcp.h"

#include "core/audience.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

/* Newest first: an initialize asking for something else gets the first. */
static const char *const versions[] = {MCP_LATEST_VERSION, "2025-06-18", "2025-03-26", "2024-11-05"};

bool mcp_version_supported(const char *version)
{
    for (size_t i = 0; version != NULL && i < sizeof versions / sizeof versions[0]; i++)
        if (strcmp(version, versions[i]) == 0)
            return true;
    return false;
}

const char *mcp_negotiate(const char *requested)
{
    return mcp_version_supported(requested) ? requested : versions[0];
}

/* structuredContent and tool titles arrived in 2025-06-18. */
static bool has_structured_output(const char *version)
{
    return strcmp(version, "2025-06-18") >= 0;
}

/* How many table names a description lists before "and N more". */
#define NAMED_TABLES 60

enum tool_flags {
    TOOL_READ_ONLY = 0x1,
    TOOL_ADMIN = 0x2,      /* listed and callable for admins only */
    TOOL_DESTRUCTIVE = 0x4,
};

typedef struct tool_spec {
    const char *name;
    const char *title;
    const char *schema; /* the input JSON Schema */
    unsigned flags;
} tool_spec;

/* The tool catalog: the same names, schemas and flags on both transports.
 * The descriptions are composed in describe() because they name tables. */
static const tool_spec tools[] = {
    {"list_tables", "List tables", "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
     TOOL_READ_ONLY},
    {"describe_table", "Describe a table",
     "{\"type\":\"object\",\"properties\":{\"table\":{\"type\":\"string\",\"description\":\"The table id, as "
     "list_tables gives it\"},\"sample_rows\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":20,\"default\":5,"
     "\"description\":\"How many sample rows to include\"}},\"required\":[\"table\"],\"additionalProperties\":false}",
     TOOL_READ_ONLY},
    {"query", "Run a DuckDB SELECT",
     "{\"type\":\"object\",\"properties\":{\"sql\":{\"type\":\"string\",\"description\":\"One SELECT statement in "
     "DuckDB's SQL dialect\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100000,\"description\":"
     "\"Rows to return inline (the rest stays behind the result handle)\"},\"max_chars\":{\"type\":\"integer\","
     "\"minimum\":100,\"maximum\":10000000,\"description\":\"Characters of row JSON to return inline\"},"
     "\"local\":{\"type\":\"boolean\",\"default\":false,\"description\":\"Run on the pulled workspace's agnes.duckdb "
     "instead of the server (stdio only)\"}},\"required\":[\"sql\"],\"additionalProperties\":false}",
     TOOL_READ_ONLY},
    {"fetch_result", "Page through a result",
     "{\"type\":\"object\",\"properties\":{\"handle\":{\"type\":\"string\",\"description\":\"The handle a truncated "
     "query returned\"},\"offset\":{\"type\":\"integer\",\"minimum\":0,\"default\":0,\"description\":\"First row "
     "to return (0-based); next_offset of the previous page\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,"
     "\"maximum\":100000},\"max_chars\":{\"type\":\"integer\",\"minimum\":100,\"maximum\":10000000}},"
     "\"required\":[\"handle\"],\"additionalProperties\":false}",
     TOOL_READ_ONLY},
    {"sync_status", "Sync status and freshness", "{\"type\":\"object\",\"properties\":{},"
                                                 "\"additionalProperties\":false}",
     TOOL_READ_ONLY},
    {"pull", "Pull tables into the workspace",
     "{\"type\":\"object\",\"properties\":{\"tables\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
     "\"description\":\"Only these table ids (default: every table you may read)\"},\"result\":{\"type\":\"string\","
     "\"description\":\"A result handle to download instead of tables\"}},\"additionalProperties\":false}",
     0},
    {"sync_trigger", "Start a sync (admin)",
     "{\"type\":\"object\",\"properties\":{\"tables\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
     "\"description\":\"Registered table ids (default: every registered table)\"}},\"additionalProperties\":false}",
     TOOL_ADMIN},
    {"registry", "Registered tables (admin)", "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
     TOOL_ADMIN | TOOL_READ_ONLY},
};

static const tool_spec *find_tool(const char *name, bool is_admin)
{
    for (size_t i = 0; name != NULL && i < sizeof tools / sizeof tools[0]; i++)
        if (strcmp(tools[i].name, name) == 0 && (is_admin || !(tools[i].flags & TOOL_ADMIN)))
            return &tools[i];
    return NULL;
}

/* "a, b, c" or "a, b, ... and 12 more (list_tables has them all)". */
static void table_list(strbuf *out, const json_t *tables)
{
    if (tables == NULL) {
        strbuf_append_str(out, "(call list_tables for the tables you may use)");
        return;
    }
    if (json_array_size(tables) == 0) {
        strbuf_append_str(out, "none yet (an admin has to grant your group a table)");
        return;
    }
    size_t i;
    json_t *id;
    json_array_foreach(tables, i, id) {
        if (i == NAMED_TABLES) {
            strbuf_appendf(out, " and %zu more (list_tables has them all)", json_array_size(tables) - i);
            break;
        }
        strbuf_appendf(out, "%s%s", i ? ", " : "", json_string_value(id));
    }
}

static void budget_text(strbuf *out, const mcp_host *host)
{
    if (host->max_rows > 0 && host->max_chars > 0)
        strbuf_appendf(out, " (default %lld rows and %lld characters)", host->max_rows, host->max_chars);
}

static void ttl_text(strbuf *out, const mcp_host *host)
{
    if (host->ttl_seconds >= 3600 && host->ttl_seconds % 3600 == 0)
        strbuf_appendf(out, "%lld hour%s", host->ttl_seconds / 3600, host->ttl_seconds == 3600 ? "" : "s");
    else if (host->ttl_seconds > 0)
        strbuf_appendf(out, "%lld minutes", host->ttl_seconds / 60);
    else
        strbuf_append_str(out, "a limited time");
}

#define DIALECT                                                                                                       \
    "The SQL dialect is DuckDB's - not PostgreSQL's or BigQuery's: date_trunc('month', ts), strftime(ts, '%Y-%m'), " \
    "QUALIFY, ILIKE, list and struct types, and x::TYPE casts."

static void describe(const tool_spec *tool, const mcp_host *host, const json_t *tables, strbuf *out)
{
    bool stdio = strcmp(host->transport, "stdio") == 0;
    if (strcmp(tool->name, "list_tables") == 0) {
        strbuf_append_str(out, "List the tables you may query, each with its description, row count, query mode "
                               "(local: also in a pulled workspace; remote: queried on its warehouse) and freshness "
                               "(last_sync). Tables: ");
        table_list(out, tables);
        strbuf_append_char(out, '.');
    } else if (strcmp(tool->name, "describe_table") == 0) {
        strbuf_append_str(out, "One table's columns (name, DuckDB type, nullable, description), row count, freshness "
                               "and a few sample rows. Use it before writing SQL against a table. Tables: ");
        table_list(out, tables);
        strbuf_append_char(out, '.');
    } else if (strcmp(tool->name, "query") == 0) {
        strbuf_append_str(out, "Run one read-only SELECT. " DIALECT " Tables you may use: ");
        table_list(out, tables);
        strbuf_append_str(out, ". Other tables do not exist for you and are refused.");
        if (stdio)
            strbuf_append_str(out, " With local: true it runs on the pulled workspace's agnes.duckdb (offline, data as "
                                   "of the last pull) instead of the server.");
        else
            strbuf_append_str(out, " (local is for the stdio server, `agnes mcp`; here queries run on the server.)");
        strbuf_append_str(out, " Rows come back inline up to limit and max_chars");
        budget_text(out, host);
        strbuf_append_str(out, "; a larger result returns its first rows with truncated: true, total_rows and a "
                               "handle - page the rest with fetch_result rather than running the query again, and "
                               "aggregate in SQL rather than fetching many rows.");
    } else if (strcmp(tool->name, "fetch_result") == 0) {
        strbuf_append_str(out, "Page through a result that query truncated: rows offset .. offset+limit of the full "
                               "result behind the handle, which is yours alone and kept for ");
        ttl_text(out, host);
        strbuf_append_str(out, ". Continue from next_offset; it is null after the last row.");
    } else if (strcmp(tool->name, "sync_status") == 0) {
        strbuf_append_str(out, "How fresh the data is: per table rows, bytes, sync state, last sync time and the last "
                               "error; catalog name collisions.");
    } else if (strcmp(tool->name, "pull") == 0) {
        if (stdio)
            strbuf_append_str(out, "Mirror the tables you may read into the local workspace (data/<table>.parquet and "
                                   "agnes.duckdb, for query with local: true), downloading only what changed, and "
                                   "return what changed on the server since the previous pull. With result: "
                                   "<handle>, download that query result as Parquet into the workspace's results/ "
                                   "directory instead.");
        else
            strbuf_append_str(out, "What a pull would download: each table you may read with its content hash, size, "
                                   "rows and download URL (GET it with your token). The server cannot write to your "
                                   "machine: to mirror the tables run `agnes pull`, or use the stdio server "
                                   "(`agnes mcp`). With result: <handle>, the download URLs of that query result.");
    } else if (strcmp(tool->name, "sync_trigger") == 0) {
        strbuf_append_str(out, "Admin only: start a sync of every registered table, or of the given table ids. "
                               "Returns the run id at once; follow progress with sync_status.");
    } else if (strcmp(tool->name, "registry") == 0) {
        strbuf_append_str(out, "Admin only: every registered table with its source, query mode, schedule and last "
                               "sync error.");
    }
}

static json_t *tool_entry(const tool_spec *tool, const mcp_host *host, const json_t *tables, const char *version)
{
    strbuf text;
    strbuf_init(&text);
    describe(tool, host, tables, &text);
    json_t *schema = json_loads(tool->schema, 0, NULL);
    json_t *entry = json_pack("{s:s, s:s%, s:o?}", "name", tool->name, "description", text.data ? text.data : "",
                              text.len, "inputSchema", schema);
    strbuf_free(&text);
    if (entry != NULL && has_structured_output(version)) {
        json_object_set_new(entry, "title", json_string(tool->title));
        json_object_set_new(entry, "annotations",
                            json_pack("{s:s, s:b, s:b, s:b}", "title", tool->title, "readOnlyHint",
                                      (tool->flags & TOOL_READ_ONLY) != 0, "destructiveHint",
                                      (tool->flags & TOOL_DESTRUCTIVE) != 0, "openWorldHint", 0));
    }
    return entry;
}

static json_t *instructions(const mcp_host *host, const json_t *tables)
{
    strbuf text;
    strbuf_init(&text);
    strbuf_append_str(&text, "Agnes serves this team's data as read-only SQL, with exactly the access your account "
                             "has. " DIALECT " Tables you may use: ");
    table_list(&text, tables);
    strbuf_append_str(&text, ". Start with list_tables and describe_table; query runs one SELECT. Results are cut to "
                             "a budget");
    budget_text(&text, host);
    strbuf_append_str(&text, " and never silently: a larger result says truncated: true with total_rows and a handle "
                             "that fetch_result pages through. sync_status tells how fresh the data is.");
    if (strcmp(host->transport, "stdio") == 0)
        strbuf_append_str(&text, " pull mirrors the tables into the local workspace and reports what changed since "
                                 "the previous pull; query with local: true then runs offline on that copy.");
    json_t *out = json_stringn(text.data ? text.data : "", text.len);
    strbuf_free(&text);
    return out;
}

json_t *mcp_error_response(const json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O?, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", "code", code,
                     "message", message);
}

char *mcp_json_text(json_t *value, agnes_error *err)
{
    char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    if (text == NULL)
        agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    return text;
}

/* Print a response built with jansson, consuming it. */
static char *print(json_t *response)
{
    char *text = response ? json_dumps(response, JSON_COMPACT) : NULL;
    json_decref(response);
    return text;
}

static char *error_text(const json_t *id, int code, const char *message)
{
    return print(mcp_error_response(id, code, message));
}

static char *result_text(const json_t *id, json_t *result)
{
    return result ? print(json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result))
                  : error_text(id, MCP_INTERNAL_ERROR, "out of memory");
}

bool mcp_is_request(const json_t *message)
{
    json_t *id = json_object_get(message, "id");
    return json_is_string(json_object_get(message, "method")) && id != NULL && !json_is_null(id);
}

static char *handle_initialize(const mcp_host *host, mcp_session *session, const json_t *id, const json_t *params)
{
    const char *requested = json_string_value(json_object_get(params, "protocolVersion"));
    if (requested == NULL)
        return error_text(id, MCP_INVALID_PARAMS, "initialize needs params.protocolVersion (a string)");
    snprintf(session->version, sizeof session->version, "%s", mcp_negotiate(requested));
    json_t *tables = host->tables(host->cls);
    json_t *result = json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:o}", "protocolVersion", session->version,
                               "capabilities", "tools", "listChanged", 0, "serverInfo", "name", "agnes", "title",
                               "Agnes", "version", host->server_version, "instructions", instructions(host, tables));
    json_decref(tables);
    return result_text(id, result);
}

static char *handle_tools_list(const mcp_host *host, const mcp_session *session, const json_t *id)
{
    json_t *tables = host->tables(host->cls), *list = json_array();
    bool is_admin = host->is_admin(host->cls);
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        if (is_admin || !(tools[i].flags & TOOL_ADMIN))
            json_array_append_new(list, tool_entry(&tools[i], host, tables, session->version));
    json_decref(tables);
    return result_text(id, json_pack("{s:o}", "tools", list));
}

/* {"jsonrpc":"2.0","id":ID,"result":{"content":[{"type":"text","text":"<value>"}],"structuredContent":<value>}}
 * spliced as text: value may be megabytes of rows, never parsed here. */
static char *tool_result_text(const json_t *id, const char *value, bool structured)
{
    char *id_text = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t len = strlen(value);
    strbuf out;
    strbuf_init(&out);
    strbuf_appendf(&out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":",
                   id_text ? id_text : "null");
    strbuf_append_json_string(&out, value, len);
    strbuf_append_str(&out, "}]");
    if (structured) {
        strbuf_append_str(&out, ",\"structuredContent\":");
        strbuf_append(&out, value, len);
    }
    strbuf_append_str(&out, "}}");
    free(id_text);
    if (id_text == NULL || strbuf_failed(&out)) {
        strbuf_free(&out);
        return NULL;
    }
    return out.data;
}

static char *handle_tools_call(const mcp_host *host, const mcp_session *session, const json_t *id,
                               const json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *arguments = json_object_get(params, "arguments");
    char message[300];
    if (name == NULL)
        return error_text(id, MCP_INVALID_PARAMS, "tools/call needs params.name (a string)");
    if (find_tool(name, host->is_admin(host->cls)) == NULL) {
        snprintf(message, sizeof message, "Unknown tool: %.100s (tools/list has the tools you may call)", name);
        return error_text(id, MCP_INVALID_PARAMS, message);
    }
    if (arguments != NULL && !json_is_object(arguments) && !json_is_null(arguments))
        return error_text(id, MCP_INVALID_PARAMS, "tools/call params.arguments must be an object");
    json_t *empty = json_object();
    agnes_error err;
    agnes_error_clear(&err);
    char *value = host->call(host->cls, name, json_is_object(arguments) ? arguments : empty, &err);
    json_decref(empty);
    if (value == NULL) {
        char said[sizeof err.message + 256]; /* an agent calls tools, not routes */
        audience_translate(AUDIENCE_MCP, err.message[0] ? err.message : "The tool failed without saying why.",
                           said, sizeof said);
        return result_text(id, json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", said,
                                         "isError", 1));
    }
    /* structuredContent must be an object; every tool returns one. */
    char *text = tool_result_text(id, value, has_structured_output(session->version) && value[0] == '{');
    free(value);
    return text;
}

char *mcp_handle_message(const mcp_host *host, mcp_session *session, const json_t *message, bool *failed)
{
    char *out = NULL;
    *failed = false;
    if (!json_is_object(message) || !json_is_string(json_object_get(message, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(message, "jsonrpc")), "2.0") != 0) {
        out = error_text(json_object_get(message, "id"), MCP_INVALID_REQUEST,
                         "not a JSON-RPC 2.0 message (it needs \"jsonrpc\": \"2.0\")");
        goto done;
    }
    const char *method = json_string_value(json_object_get(message, "method"));
    const json_t *id = json_object_get(message, "id"), *params = json_object_get(message, "params");
    if (method == NULL) {
        if (json_object_get(message, "result") != NULL || json_object_get(message, "error") != NULL)
            return NULL; /* a response to a request we never send: nothing to answer */
        out = error_text(id, MCP_INVALID_REQUEST, "a JSON-RPC request needs a \"method\"");
        goto done;
    }
    if (id == NULL || json_is_null(id))
        return NULL; /* notifications (initialized, cancelled, ...) need no answer */
    if (!json_is_string(id) && !json_is_integer(id)) {
        out = error_text(NULL, MCP_INVALID_REQUEST, "a JSON-RPC id must be a string or an integer");
        goto done;
    }
    if (strcmp(method, "initialize") == 0) {
        out = handle_initialize(host, session, id, params);
        goto done;
    }
    if (strcmp(method, "ping") == 0) {
        out = result_text(id, json_object());
        goto done;
    }
    if (session->version[0] == '\0') /* tools before initialize: the client skipped the lifecycle */
        snprintf(session->version, sizeof session->version, "%s", "2025-03-26");
    if (strcmp(method, "tools/list") == 0) {
        out = handle_tools_list(host, session, id);
    } else if (strcmp(method, "tools/call") == 0) {
        out = handle_tools_call(host, session, id, params);
    } else {
        char text[200];
        snprintf(text, sizeof text, "Method not found: %.100s (this server offers tools only)", method);
        out = error_text(id, MCP_METHOD_NOT_FOUND, text);
    }
done:
    *failed = out == NULL;
    return out;
}

int mcp_arg_string(const json_t *arguments, const char *name, bool required, const char **out, agnes_error *err)
{
    json_t *value = json_object_get(arguments, name);
    if (value == NULL || json_is_null(value)) {
        if (required)
            return agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"%s\" is required.", name);
        return AGNES_OK;
    }
    if (!json_is_string(value) || json_string_length(value) == 0 ||
        strlen(json_string_value(value)) != json_string_length(value))
        return agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"%s\" must be a non-empty string.", name);
    *out = json_string_value(value);
    return AGNES_OK;
}

int mcp_arg_int(const json_t *arguments, const char *name, long long min, long long max, long long *out,
                agnes_error *err)
{
    json_t *value = json_object_get(arguments, name);
    if (value == NULL || json_is_null(value))
        return AGNES_OK;
    if (!json_is_integer(value) || json_integer_value(value) < min || json_integer_value(value) > max)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"%s\" must be a whole number from %lld to %lld.",
                               name, min, max);
    *out = (long long)json_integer_value(value);
    return AGNES_OK;
}

int mcp_arg_bool(const json_t *arguments, const char *name, bool *out, agnes_error *err)
{
    json_t *value = json_object_get(arguments, name);
    if (value == NULL || json_is_null(value))
        return AGNES_OK;
    if (!json_is_boolean(value))
        return agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"%s\" must be true or false.", name);
    *out = json_is_true(value);
    return AGNES_OK;
}
