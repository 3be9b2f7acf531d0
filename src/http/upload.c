/*
 * POST /api/upload/tables (admin): register or replace a table of the
 * `local` source from a CSV, TSV, Parquet, JSON or NDJSON file.
 *
 *   curl -F file=@sales.csv -F name=sales  .../api/upload/tables
 *   curl --data-binary @sales.csv '.../api/upload/tables?name=sales&format=csv'
 *
 * The body arrives on disk (server.c streams ROUTE_UPLOAD bodies into a
 * file), is converted and checked by sync/local_files.c, and the catalog is
 * rebuilt so the table answers queries when this returns.  A table name
 * another source already owns is refused: the first owner keeps a name.
 */
#include "http/upload.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "http/auth.h"
#include "http/catalog_admin.h"
#include "http/upload_body.h"
#include "store/sync_state.h"
#include "store/users.h"
#include "sync/local_files.h"

/* A field from the form, else from the query string; NULL when neither. */
static const char *field(const http_request *req, const char *form_value, const char *name)
{
    if (form_value != NULL && form_value[0] != '\0')
        return form_value;
    return http_request_query(req, name);
}

/* "Sales 2024.csv" -> "sales_2024": the name a file suggests. */
static void name_from_filename(const char *filename, char *out, size_t out_size)
{
    size_t n = 0;
    for (const char *p = filename; *p != '\0' && *p != '.' && n + 1 < out_size; p++)
        out[n++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    out[n] = '\0';
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

static void respond_imported(http_response *resp, const char *table, const local_import_result *result)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:O}, s:b}", "table", "id", table, "name", table,
                             "source_type", LOCAL_SOURCE_NAME, "query_mode", "local", "format", result->format, "rows",
                             (json_int_t)result->rows, "size_bytes", (json_int_t)result->size_bytes, "columns",
                             result->columns, "replaced", result->replaced);
    http_respond_json(resp, result->replaced ? 200 : 201, body);
}

void upload_handle_table(http_context *ctx, const http_request *req, http_response *resp)
{
    const http_upload *upload = req->upload;
    char derived[128] = "";
    if (upload->multipart && !upload->has_file) {
        http_respond_error(resp, 422,
                           "The form has no part named \"file\". Send the file as -F file=@data.csv (or the raw file "
                           "as the body).",
                           NULL);
        return;
    }
    const char *table = field(req, upload->name, "name");
    if ((table == NULL || table[0] == '\0') && upload->filename[0] != '\0') {
        name_from_filename(upload->filename, derived, sizeof derived);
        table = derived;
    }
    char lowered[UPLOAD_FIELD_MAX];
    if (table != NULL && table != derived) { /* names are case-insensitive: store them in lower case */
        size_t n = 0;
        for (; table[n] != '\0' && n + 1 < sizeof lowered; n++)
            lowered[n] = (char)tolower((unsigned char)table[n]);
        lowered[n] = '\0';
        table = lowered;
    }
    if (table == NULL || table[0] == '\0') {
        http_respond_error(resp, 422,
                           "Say which table this is: add ?name=<table> (or a form field \"name\"), e.g. ?name=sales.",
                           NULL);
        return;
    }
    if (owned_elsewhere(ctx, req, table, resp))
        return;
    local_import in = {
        .table = table,
        .format = field(req, upload->format, "format"),
        .filename = upload->filename,
        .description = field(req, upload->description, "description"),
        .file = upload->path,
    };
    local_import_result result;
    agnes_error err;
    json_t *report = NULL;
    pthread_mutex_lock(&ctx->upload_lock); /* one writer of extracts/local at a time */
    int rc = local_files_import(&ctx->runtime->paths, &in, &result, &err);
    if (rc == AGNES_OK)
        rc = catalog_rebuild(ctx, false, &report, &err);
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
        respond_imported(resp, table, &result);
    }
    json_decref(result.columns);
}
