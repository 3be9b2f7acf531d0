/*
 * data.c - the manifest and table downloads (SPEC §10).
 *
 * GET /api/sync/manifest lists the tables the caller may read, each with
 * the SHA-256 of its Parquet file's content (store/table_files.h): the
 * client downloads a table only when that hash differs from its own copy.
 *
 * GET|HEAD /api/data/{id}/download sends that file: looked up by the
 * table's id in table_files (never a path from the request), after the
 * same visibility check as the catalog; sendfile through libmicrohttpd;
 * ETag = the hash, If-None-Match -> 304, one Range -> 206 (resume), with
 * If-Range so a resumed download never mixes two versions of a file.
 */
#include "http/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "engine/analytics.h"
#include "engine/contract.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/instance.h"
#include "store/table_files.h"

/* True for a table queried at its source: it has no file to download, whatever
 * table_files still remembers from when it was local. */
static bool is_remote(const json_t *table)
{
    const char *mode = json_string_value(json_object_get(table, "query_mode"));
    return mode != NULL && strcmp(mode, "remote") == 0;
}

/* A manifest entry; file is the table's table_files row, or NULL (remote
 * tables, views over several files): not downloadable.  A table switched
 * from local to remote kept its old Parquet's row: the manifest said remote,
 * downloadable, with the old hash, and `agnes pull` kept the stale rows. */
static json_t *manifest_entry(const json_t *table, const json_t *file)
{
    const char *hash = is_remote(table) ? NULL : json_string_value(json_object_get(file, "sha256"));
    return json_pack("{s:s, s:I, s:O, s:O, s:O, s:O, s:b}", "hash", hash ? hash : "", "size_bytes",
                     (json_int_t)(hash ? json_integer_value(json_object_get(file, "size_bytes")) : 0), "rows",
                     json_object_get(table, "rows"), "updated", json_object_get(table, "last_sync"), "query_mode",
                     json_object_get(table, "query_mode"), "source_type", json_object_get(table, "source_type"),
                     "downloadable", hash != NULL);
}

void data_handle_manifest(http_context *ctx, const http_request *req, http_response *resp)
{
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    json_t *tables = snapshot ? json_deep_copy(snapshot->tables) : json_array(), *ids = NULL, *files = NULL,
           *entries = json_object();
    analytics_release(ctx->analytics, snapshot);
    duckdb_connection conn = NULL;
    agnes_error err;
    if (catalog_visible_ids(ctx, req->identity, &ids, &err) != AGNES_OK ||
        system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        table_files_map_json(conn, &files, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table) {
        const char *id = json_string_value(json_object_get(table, "id"));
        if (catalog_id_visible(ids, id))
            json_object_set_new(entries, id, manifest_entry(table, json_object_get(files, id)));
    }
    char now[32];
    util_utc_now_iso(now);
    instance_record_pull(ctx, req, json_object_size(entries)); /* the dashboard's "your last pull" */
    http_respond_json(resp, 200, json_pack("{s:O, s:I, s:s}", "tables", entries, "count",
                                           (json_int_t)json_object_size(entries), "server_time", now));
done:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(files);
    json_decref(entries);
    json_decref(ids);
    json_decref(tables);
}

/* One "bytes=A-B", "bytes=A-" or "bytes=-N" range of a size-byte file.
 * 1: a satisfiable range in *start and *length; 0: no usable Range header
 * (send the whole file); -1: unsatisfiable (416). */
static int parse_range(const char *header, int64_t size, int64_t *start, int64_t *length)
{
    long long first = -1, last = -1;
    char tail;
    if (header == NULL || strncmp(header, "bytes=", 6) != 0 || strchr(header, ',') != NULL)
        return 0;
    const char *spec = header + 6;
    if (spec[0] == '-') {
        if (sscanf(spec + 1, "%lld%c", &last, &tail) != 1 || last <= 0)
            return 0;
        *start = last >= size ? 0 : size - last;
        *length = size - *start;
        return size > 0 ? 1 : -1;
    }
    int fields = sscanf(spec, "%lld-%lld%c", &first, &last, &tail);
    if (fields < 1 || first < 0 || (fields == 2 && last < first) || fields == 3)
        return 0;
    if (first >= size)
        return -1;
    *start = first;
    *length = (fields == 2 && last < size ? last + 1 : size) - first;
    return 1;
}

void data_handle_download(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    char detail[400], etag[80], value[128];
    agnes_error err;
    table_file file;
    /* Never a path: ids are view names, checked as such by catalog_readable_table. */
    json_t *table = catalog_readable_table(ctx, req, resp);
    if (table == NULL)
        return;
    bool remote = is_remote(table);
    json_decref(table);
    if (remote) {
        snprintf(detail, sizeof detail,
                 "Table '%s' is remote: it is queried at its source with POST /api/query (or `agnes query`) and has "
                 "no file to download.", id);
        http_respond_error(resp, 404, detail, NULL);
        return;
    }
    duckdb_connection conn = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = table_files_get(conn, id, &file, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (rc == AGNES_ERR_NOT_FOUND) {
        snprintf(detail, sizeof detail,
                 "Table '%s' has no file to download (remote tables are queried with POST /api/query).", id);
        http_respond_error(resp, 404, detail, NULL);
        return;
    }
    if (rc != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return;
    }
    int fd = open(file.path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (int64_t)st.st_ino != file.inode || (int64_t)st.st_size != file.size_bytes) {
        if (fd >= 0)
            close(fd);
        /* Replaced since the catalog hashed it: a rebuild is about to publish the new version. */
        http_response_add_header(resp, "Retry-After", "2");
        snprintf(detail, sizeof detail, "Table '%s' is being updated; retry in a few seconds.", id);
        http_respond_error(resp, 503, detail, NULL);
        return;
    }
    snprintf(etag, sizeof etag, "\"%s\"", file.sha256);
    http_response_add_header(resp, "ETag", etag);
    http_response_add_header(resp, "Accept-Ranges", "bytes");
    snprintf(value, sizeof value, "attachment; filename=\"%s.parquet\"", id);
    http_response_add_header(resp, "Content-Disposition", value);
    const char *if_none_match = http_request_header(req, "If-None-Match");
    if (if_none_match != NULL && (strcmp(if_none_match, etag) == 0 || strcmp(if_none_match, "*") == 0)) {
        close(fd);
        http_respond_raw(resp, 304, "application/vnd.apache.parquet", NULL, 0);
        return;
    }
    const char *if_range = http_request_header(req, "If-Range");
    int64_t start = 0, length = file.size_bytes;
    int range = (if_range == NULL || strcmp(if_range, etag) == 0)
                    ? parse_range(http_request_header(req, "Range"), file.size_bytes, &start, &length)
                    : 0;
    if (range < 0) {
        close(fd);
        snprintf(value, sizeof value, "bytes */%lld", (long long)file.size_bytes);
        http_response_add_header(resp, "Content-Range", value);
        http_respond_error(resp, 416, "The requested range starts beyond the end of the file.", NULL);
        return;
    }
    if (range > 0) {
        snprintf(value, sizeof value, "bytes %lld-%lld/%lld", (long long)start, (long long)(start + length - 1),
                 (long long)file.size_bytes);
        http_response_add_header(resp, "Content-Range", value);
    }
    http_respond_file(resp, range > 0 ? 206 : 200, "application/vnd.apache.parquet", fd, start, length);
}
