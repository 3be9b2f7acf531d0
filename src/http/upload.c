/*
 * POST /api/upload/tables (admin): register or replace a table of the
 * `local` source from a CSV, TSV, Parquet, JSON or NDJSON file.
 *
 *   curl -F file=@sales.csv -F name=sales  .../api/upload/tables
 *   curl --data-binary @sales.csv '.../api/upload/tables?name=sales&format=csv'
 *   curl --data-binary @eu.csv '.../api/upload/tables?name=eu&delimiter=%3B&types=account_id:VARCHAR'
 *
 * The body arrives on disk (server.c streams ROUTE_UPLOAD bodies into a
 * file), is converted and checked by sync/local_files.c, and the catalog is
 * rebuilt so the table answers queries when this returns.  A table name
 * another source already owns is refused: the first owner keeps a name.
 *
 * Options come as query parameters or form fields (the table `options`
 * below is the whole list; anything else is refused, so a typo such as
 * ?delimeter= is an error and not silently ignored).
 */
#include "http/upload.h"

#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/utf8.h"
#include "engine/contract.h"
#include "http/auth.h"
#include "http/catalog_admin.h"
#include "http/upload_body.h"
#include "store/sync_state.h"
#include "store/users.h"
#include "sync/local_files.h"

#define DESCRIPTION_MAX 4000

static const char *const options[] = {"name",   "format",            "description", "delimiter", "quote",
                                      "escape", "header",            "decimal_separator", "thousands_separator",
                                      "types",  "all_text",          "sample_size"};
static const char known_options[] = "name, format, description, delimiter, quote, escape, header, decimal_separator, "
                                    "thousands_separator, types, all_text, sample_size";

/* A field from the form, else from the query string; NULL when neither. */
static const char *field(const http_request *req, const char *name)
{
    const http_upload *upload = req->upload;
    const char *form = strcmp(name, "name") == 0          ? upload->name
                       : strcmp(name, "format") == 0      ? upload->format
                       : strcmp(name, "description") == 0 ? upload->description
                                                          : NULL;
    for (size_t i = 0; form == NULL && i < upload->extra_count; i++)
        if (strcmp(upload->extra[i].key, name) == 0)
            form = upload->extra[i].value;
    if (form != NULL && form[0] != '\0')
        return form;
    return http_request_query(req, name);
}

static bool is_option(const char *key)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strcmp(key, options[i]) == 0)
            return true;
    return false;
}

typedef struct unknown_key {
    char key[64];
} unknown_key;

static enum MHD_Result find_unknown(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    unknown_key *found = cls;
    if (key != NULL && !is_option(key)) {
        snprintf(found->key, sizeof found->key, "%s", key);
        utf8_trim_partial(found->key);
        return MHD_NO;
    }
    return MHD_YES;
}

/* 400 naming the first option this endpoint does not know. */
static bool unknown_option(const http_request *req, http_response *resp)
{
    unknown_key found = {""};
    const http_upload *upload = req->upload;
    for (size_t i = 0; found.key[0] == '\0' && i < upload->extra_count; i++)
        if (!is_option(upload->extra[i].key))
            snprintf(found.key, sizeof found.key, "%s", upload->extra[i].key);
    if (found.key[0] == '\0' && upload->extra_dropped)
        snprintf(found.key, sizeof found.key, "(too many form fields)");
    if (found.key[0] == '\0')
        MHD_get_connection_values(req->connection, MHD_GET_ARGUMENT_KIND, find_unknown, &found);
    if (found.key[0] == '\0')
        return false;
    char detail[400];
    snprintf(detail, sizeof detail, "Unknown option \"%s\". This endpoint takes: %s.", found.key, known_options);
    http_respond_error(resp, 400, detail, NULL);
    return true;
}

/* "Sales 2024.csv" -> "sales_2024": the name a file suggests. */
static void name_from_filename(const char *filename, char *out, size_t out_size)
{
    size_t n = 0;
    for (const char *p = filename; *p != '\0' && *p != '.' && n + 1 < out_size; p++)
        out[n++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    out[n] = '\0';
}

static bool refuse(http_response *resp, unsigned status, const char *fmt, const char *a, const char *b)
{
    char detail[700];
    snprintf(detail, sizeof detail, fmt, a, b);
    http_respond_error(resp, status, detail, NULL);
    return false;
}

/* Text from the caller that becomes data: UTF-8, no control characters
 * other than line breaks and tabs, at most max characters. */
static bool check_text(const char *what, const char *text, size_t max, http_response *resp)
{
    size_t len = strlen(text), chars = 0;
    char detail[300];
    bool ok = len < UPLOAD_FIELD_MAX - 1 && utf8_is_valid(text, len);
    for (const unsigned char *p = (const unsigned char *)text; ok && *p; p++) {
        chars += (*p & 0xC0) != 0x80;
        ok = !((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7F);
    }
    if (ok && chars <= max)
        return true;
    snprintf(detail, sizeof detail, "The %s must be UTF-8 text of at most %zu characters, without control characters.",
             what, max);
    http_respond_error(resp, 400, detail, NULL);
    return false;
}

/* One character of a dialect option: the character itself, or a name. */
static int parse_char(const char *value, bool allow_none)
{
    static const struct {
        const char *name;
        int c;
    } names[] = {{"comma", ','}, {"semicolon", ';'}, {"pipe", '|'}, {"tab", '\t'}, {"\\t", '\t'},
                 {"double_quote", '"'}, {"single_quote", '\''}, {"backslash", '\\'}, {"dot", '.'}};
    if (allow_none && strcasecmp(value, "none") == 0)
        return LOCAL_NO_QUOTE;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(value, names[i].name) == 0)
            return names[i].c;
    unsigned char c = (unsigned char)value[0];
    if (value[0] != '\0' && value[1] == '\0' && (c == '\t' || (c > 0x20 && c < 0x7F && !isalnum(c))))
        return c;
    return -2;
}

static int parse_bool(const char *value)
{
    if (strcasecmp(value, "true") == 0 || strcasecmp(value, "yes") == 0 || strcmp(value, "1") == 0)
        return 1;
    if (strcasecmp(value, "false") == 0 || strcasecmp(value, "no") == 0 || strcmp(value, "0") == 0)
        return 0;
    return -1;
}

/* types as JSON ({"a": "VARCHAR"}) or a list a:VARCHAR,b:DECIMAL(38,2). */
static json_t *parse_types(const char *value)
{
    if (value[0] == '{') {
        json_t *types = json_loads(value, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(types) || json_object_size(types) == 0) {
            json_decref(types);
            return NULL;
        }
        return types;
    }
    json_t *types = json_object();
    const char *p = value;
    while (types != NULL && *p) {
        const char *colon = strchr(p, ':');
        int depth = 0;
        const char *end = colon;
        while (end != NULL && *end && (depth > 0 || *end != ',')) {
            depth += *end == '(' ? 1 : *end == ')' ? -1 : 0;
            end++;
        }
        if (colon == NULL || colon == p || end == colon + 1) {
            json_decref(types);
            return NULL;
        }
        char name[256], type[128];
        snprintf(name, sizeof name, "%.*s", (int)(colon - p), p);
        snprintf(type, sizeof type, "%.*s", (int)(end - colon - 1), colon + 1);
        json_object_set_new(types, name, json_string(type));
        p = *end == ',' ? end + 1 : end;
    }
    return types;
}

/* The read options of the request; false (resp filled) when one is wrong.
 * *types_owned is the parsed types (caller decrefs). */
static bool read_options(const http_request *req, local_read_options *o, json_t **types_owned, http_response *resp)
{
    static const char dialect_chars[] = "one character such as , ; | or tab (URL-encode it: %%3B is ;)";
    local_read_options_init(o);
    *types_owned = NULL;
    const char *value;
    struct {
        const char *name;
        int *into;
        bool allow_none;
    } chars[] = {{"delimiter", &o->delimiter, false}, {"quote", &o->quote, true}, {"escape", &o->escape, true}};
    for (size_t i = 0; i < sizeof chars / sizeof chars[0]; i++) {
        if ((value = field(req, chars[i].name)) == NULL || value[0] == '\0')
            continue;
        int c = parse_char(value, chars[i].allow_none);
        if (c == -2)
            return refuse(resp, 400, "%s must be %s.", chars[i].name,
                          chars[i].allow_none ? "one character such as \" or ', or none" : dialect_chars);
        *chars[i].into = c;
    }
    if ((value = field(req, "header")) != NULL && value[0] && (o->header = parse_bool(value)) < 0)
        return refuse(resp, 400, "header must be true or false (whether the first line names the columns)%s.", "",
                      "");
    if ((value = field(req, "decimal_separator")) != NULL && value[0]) {
        int c = parse_char(value, false);
        if (c != '.' && c != ',')
            return refuse(resp, 400, "decimal_separator must be . or , (a decimal comma: 1,5)%s.", "", "");
        o->decimal_separator = c;
    }
    if ((value = field(req, "thousands_separator")) != NULL && value[0]) {
        int c = strcasecmp(value, "none") == 0 ? LOCAL_NO_SEPARATOR
                : strcasecmp(value, "space") == 0 || strcmp(value, " ") == 0 ? ' '
                                                                             : parse_char(value, false);
        if (c != LOCAL_NO_SEPARATOR && c != '.' && c != ',' && c != ' ' && c != '\'')
            return refuse(resp, 400, "thousands_separator must be . , ' space or none (1.234,50 takes "
                                     "thousands_separator=.)%s%s.", "", "");
        o->thousands_separator = c;
    }
    if ((value = field(req, "all_text")) != NULL && value[0]) {
        int b = parse_bool(value);
        if (b < 0)
            return refuse(resp, 400, "all_text must be true or false%s%s.", "", "");
        o->all_text = b == 1;
    }
    if ((value = field(req, "sample_size")) != NULL && value[0]) {
        char *end = NULL;
        errno = 0;
        long long n = strcasecmp(value, "all") == 0 ? -1 : strtoll(value, &end, 10);
        if ((end != NULL && (*end != '\0' || errno != 0)) || n == 0 || n < -1 || n > (1LL << 40))
            return refuse(resp, 400, "sample_size must be a number of rows (1 or more) or -1 (every row)%s%s.", "",
                          "");
        o->sample_size = n;
    }
    if ((value = field(req, "types")) != NULL && value[0]) {
        if (!utf8_is_valid(value, strlen(value)) || (*types_owned = parse_types(value)) == NULL)
            return refuse(resp, 400,
                          "types must name columns and their types, as column:TYPE pairs separated by commas "
                          "(account_id:VARCHAR,amount:DECIMAL(38,2)) or a JSON object (%s)%s.",
                          "{\"account_id\": \"VARCHAR\"}", "");
        if (o->all_text) {
            json_decref(*types_owned);
            *types_owned = NULL;
            return refuse(resp, 400, "Pass types or all_text=true, not both (all_text makes every column %s)%s.",
                          "VARCHAR", "");
        }
        o->types = *types_owned;
    }
    return true;
}

/* 409 when another source owns the name; false when the upload may go on. */
static bool owned_elsewhere(http_context *ctx, const http_request *req, const char *table, http_response *resp)
{
    duckdb_connection conn = NULL;
    char owner[128] = "";
    agnes_error err;
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        view_ownership_owner(conn, table, owner, sizeof owner, &err) != AGNES_OK) {
        if (conn)
            duckdb_disconnect(&conn);
        http_respond_internal(resp, req, &err);
        return true;
    }
    duckdb_disconnect(&conn);
    if (owner[0] == '\0' || strcmp(owner, LOCAL_SOURCE_NAME) == 0)
        return false;
    char detail[512];
    snprintf(detail, sizeof detail,
             "Table '%s' already belongs to source '%s'; a name has one owner. Upload it under another name.", table,
             owner);
    http_respond_error(resp, 409, detail, NULL);
    return true;
}

static void respond_imported(http_response *resp, const char *table, const local_import_result *result,
                             const char *warning)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:O, s:O}, s:b}", "table", "id", table, "name",
                             table, "source_type", LOCAL_SOURCE_NAME, "query_mode", "local", "format", result->format,
                             "rows", (json_int_t)result->rows, "size_bytes", (json_int_t)result->size_bytes, "columns",
                             result->columns, "inference", result->inference, "replaced", result->replaced);
    if (body && result->dialect)
        json_object_set(json_object_get(body, "table"), "dialect", result->dialect);
    if (body && result->renamed) /* tables uploaded before names were checked */
        json_object_set(body, "renamed_tables", result->renamed);
    if (body && warning)
        json_object_set_new(body, "warning", json_string(warning));
    http_respond_json(resp, result->replaced ? 200 : 201, body);
}

/* The table's name: ?name= or the form's, else the file's, lower-cased;
 * false (resp filled) when missing or not a usable name. */
static bool table_name(const http_request *req, char *out, size_t out_size, http_response *resp)
{
    const http_upload *upload = req->upload;
    const char *given = field(req, "name");
    char why[300];
    if (given != NULL && given[0] != '\0') {
        if (!check_text("table name", given, 64, resp))
            return false;
        size_t n = 0;
        for (; given[n] != '\0' && n + 1 < out_size; n++)
            out[n] = (char)tolower((unsigned char)given[n]); /* names are case-insensitive: stored lower case */
        out[n] = '\0';
    } else if (upload->filename[0] != '\0') {
        name_from_filename(upload->filename, out, out_size);
    } else {
        out[0] = '\0';
    }
    if (out[0] == '\0') {
        http_respond_error(resp, 422,
                           "Say which table this is: add ?name=<table> (or a form field \"name\"), e.g. ?name=sales.",
                           NULL);
        return false;
    }
    if (!contract_table_name_ok(out, why, sizeof why))
        return refuse(resp, 400, "Table name \"%s\" %s.", out, why);
    return true;
}

void upload_handle_table(http_context *ctx, const http_request *req, http_response *resp)
{
    const http_upload *upload = req->upload;
    char table[128];
    json_t *types = NULL;
    if (upload->multipart && !upload->has_file) {
        http_respond_error(resp, 422,
                           "The form has no part named \"file\". Send the file as -F file=@data.csv (or the raw file "
                           "as the body).",
                           NULL);
        return;
    }
    const char *description = field(req, "description");
    local_import in = {.format = field(req, "format"), .filename = upload->filename, .file = upload->path};
    if (unknown_option(req, resp) || !table_name(req, table, sizeof table, resp) ||
        (description != NULL && !check_text("description", description, DESCRIPTION_MAX, resp)) ||
        (in.format != NULL && !check_text("format", in.format, 16, resp)) || !read_options(req, &in.options, &types, resp))
        goto done;
    if (owned_elsewhere(ctx, req, table, resp))
        goto done;
    in.table = table;
    in.description = description && description[0] ? description : NULL;
    local_import_result result;
    agnes_error err, rebuild_err;
    json_t *report = NULL;
    pthread_mutex_lock(&ctx->upload_lock); /* one writer of extracts/local at a time */
    int rc = local_files_import(&ctx->runtime->paths, &in, &result, &err);
    /* Committed: the extract names the table.  A failed rebuild does not
     * undo that (the catalog watch retries); it is said, not hidden. */
    bool rebuilt = rc == AGNES_OK && catalog_rebuild(ctx, false, &report, &rebuild_err) == AGNES_OK;
    if (rebuilt)
        local_files_collect(&ctx->runtime->paths, result.published); /* versions no view reads any more */
    pthread_mutex_unlock(&ctx->upload_lock);
    json_decref(report);
    if (rc == AGNES_ERR_INVALID) {
        http_respond_error(resp, 400, err.message, NULL);
    } else if (rc != AGNES_OK) {
        http_respond_internal(resp, req, &err);
    } else {
        duckdb_connection conn = system_db_writer_acquire(ctx->db);
        char params[256];
        snprintf(params, sizeof params, "{\"rows\": %lld, \"format\": \"%s\"}", result.rows, result.format);
        audit_log_write(conn, req->identity->user_id, "table.upload", table, params, "ok");
        system_db_writer_release(ctx->db);
        log_info("msg=\"table uploaded\" table=%s rows=%lld bytes=%lld format=%s replaced=%s", table, result.rows,
                 result.size_bytes, result.format, result.replaced ? "true" : "false");
        if (!rebuilt)
            log_error("msg=\"catalog rebuild after an upload failed\" request_id=%s detail=\"%s\"", req->request_id,
                      rebuild_err.message);
        respond_imported(resp, table, &result,
                         rebuilt ? NULL
                                 : "The table is stored, but the catalog could not be rebuilt now; it answers queries "
                                   "after the next rebuild (POST /api/admin/rebuild, or the catalog watch).");
        local_import_result_free(&result);
    }
done:
    json_decref(types);
}
