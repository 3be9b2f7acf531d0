#include "http/results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mcp.h"
#include "core/util.h"
#include "engine/query.h"
#include "engine/query_guard.h"
#include "engine/result_handle.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/json_body.h"

/* As many rows as POST /api/query may return: the handle keeps the whole result. */
#define RESULTS_MAX_ROWS 1000000000LL

static unsigned status_of(int rc)
{
    switch (rc) {
    case AGNES_ERR_INVALID: return 400;
    case AGNES_ERR_FORBIDDEN: return 403;
    case AGNES_ERR_NOT_FOUND: return 404;
    case AGNES_ERR_TIMEOUT: return 408;
    case AGNES_ERR_BUSY: return 429;
    case AGNES_ERR_STATE: return 503;
    default: return 500;
    }
}

static void budget(http_context *ctx, long long *limit, long long *max_chars)
{
    if (*limit <= 0)
        *limit = config_get_int(&ctx->runtime->config, CFG_RESULT_MAX_ROWS);
    if (*max_chars <= 0)
        *max_chars = config_get_int(&ctx->runtime->config, CFG_RESULT_MAX_CHARS);
}

static ssize_t read_run(void *cls, char *buf, size_t max, agnes_error *err)
{
    return query_run_read(cls, buf, max, err);
}

/* Run sql (at most `rows` rows) into a new handle: *record on success.
 * The run ends here whatever happens, so a copy stopped at a bound also
 * stops the worker (query_run_free kills a half-read one). */
static int run_into_handle(http_context *ctx, const auth_identity *who, const char *sql, const json_t *visible,
                           long long rows, bool transient, json_t **record, bool *over_cap, bool *cut_by_rows,
                           agnes_error *err)
{
    char request_id[48], unique[RESULT_HANDLE_LEN + 1];
    query_run *run = NULL;
    result_handle_new(unique);
    snprintf(request_id, sizeof request_id, "result-%s", unique);
    /* The query runs in a worker behind the same walls as /api/query
     * (engine/query.h); `exact` has it record what Parquet would not keep
     * exactly (types, repeated names), restored on reading. */
    query_request request = {
        .caller = {.user_id = who->user_id, .is_admin = who->is_admin, .visible = visible},
        .sql = sql,
        .limit = rows,
        .format = QUERY_FORMAT_PARQUET,
        .request_id = request_id,
        .exact = true,
    };
    *record = NULL;
    *over_cap = false;
    result_bound which;
    request.max_bytes = result_store_room(ctx->results, who->user_id, &which);
    if (request.max_bytes == 0) {
        *over_cap = which == RESULT_BOUND_USER;
        return result_store_bound_error(ctx->results, which, err);
    }
    int rc = query_run_start(ctx->queries, &request, &run, err);
    if (rc == AGNES_ERR_INVALID && strncmp(err->message, QUERY_OVER_MAX_BYTES, strlen(QUERY_OVER_MAX_BYTES)) == 0) {
        /* The worker's own copy of the result passed the room: say which bound, by its setting. */
        *over_cap = which == RESULT_BOUND_USER;
        rc = result_store_bound_error(ctx->results, which, err);
    }
    if (rc == AGNES_OK) {
        result_owner owner = {.user_id = who->user_id, .is_admin = who->is_admin, .visible = visible, .sql = sql,
                              .shape = query_run_shape(run), .transient = transient};
        rc = result_store_keep(ctx->results, &owner, read_run, run, record, over_cap, err);
        *cut_by_rows = rc == AGNES_OK && query_run_truncated_final(run);
    }
    /* The worker goes back before the page is read: paging needs no catalog connection. */
    query_run_free(run);
    return rc;
}

int results_run(http_context *ctx, const auth_identity *who, const char *sql, long long limit, long long max_chars,
                strbuf *text, unsigned *status, agnes_error *err)
{
    json_t *visible = NULL, *record = NULL;
    char path[AGNES_PATH_MAX + 64];
    result_page page_storage = {0}, *page = &page_storage;
    bool over_cap = false, cut_by_rows = false, first_page_only = false;
    budget(ctx, &limit, &max_chars);
    /* Every caller's grant set goes with the handle: paging re-checks it. */
    int rc = catalog_visible_ids(ctx, who, &visible, err);
    if (rc == AGNES_OK)
        rc = run_into_handle(ctx, who, sql, visible, RESULTS_MAX_ROWS, false, &record, &over_cap, &cut_by_rows, err);
    if (rc != AGNES_OK && over_cap) {
        /* Over the user's disk budget: the copy stopped at the cap (never
         * writing past it).  The caller still gets the first page, from a
         * second run cut to that many rows - bounded by the same cap. */
        log_info("msg=\"result over the user's cap\" user=%s bytes=%lld", who->email,
                 config_get_int(&ctx->runtime->config, CFG_RESULT_MAX_BYTES_PER_USER));
        first_page_only = true;
        rc = run_into_handle(ctx, who, sql, visible, limit, true, &record, &over_cap, &cut_by_rows, err);
    }
    const char *handle = json_string_value(json_object_get(record, "handle"));
    if (rc == AGNES_OK) {
        snprintf(path, sizeof path, "%s/%s.parquet", ctx->results->dir, handle);
        rc = result_store_page(ctx->results, path, record, 0, limit, max_chars, page, err);
    }
    if (rc == AGNES_OK && first_page_only) {
        /* Only the first rows were run: the total is known only when the run was not cut. */
        if (cut_by_rows) {
            json_object_set_new(page->meta, "total_rows", json_null());
            json_object_set_new(page->meta, "truncated", json_true());
        }
        json_object_set_new(page->meta, "next_offset", json_null());
    }
    if (rc == AGNES_OK) {
        /* Kept when rows remain or values were cut, and only within the user's disk budget. */
        bool rest = json_is_true(json_object_get(page->meta, "truncated"));
        bool cut = json_integer_value(json_object_get(page->meta, "cut_values")) > 0;
        bool keep = (rest || cut) && !json_is_true(json_object_get(record, "oversize"));
        if (!keep) {
            agnes_error ignored;
            result_store_delete(ctx->results, handle, who->user_id, &ignored);
        }
        result_page_describe(page, keep ? handle : NULL,
                             (int64_t)json_integer_value(json_object_get(record, "expires_unix")));
        rc = result_page_text(page, text, err);
        if (keep)
            log_info("msg=\"result kept\" user=%s handle=%s rows=%lld bytes=%lld", who->email, handle,
                     (long long)json_integer_value(json_object_get(record, "total_rows")),
                     (long long)json_integer_value(json_object_get(record, "size_bytes")));
    } else if (handle != NULL) {
        agnes_error ignored;
        result_store_delete(ctx->results, handle, who->user_id, &ignored);
    }
    *status = rc == AGNES_OK ? 200 : status_of(rc);
    result_page_free(page);
    json_decref(record);
    json_decref(visible);
    return rc;
}

/* The caller's handle: its record and Parquet path. */
static int open_handle(http_context *ctx, const auth_identity *who, const char *handle, json_t **record, char *path,
                       size_t size, agnes_error *err)
{
    json_t *visible = NULL;
    int rc = catalog_visible_ids(ctx, who, &visible, err);
    if (rc == AGNES_OK)
        rc = result_store_open(ctx->results, handle, who->user_id, who->is_admin, visible, record, path, size, err);
    json_decref(visible);
    return rc;
}

int results_fetch(http_context *ctx, const auth_identity *who, const char *handle, long long offset, long long limit,
                  long long max_chars, strbuf *text, unsigned *status, agnes_error *err)
{
    json_t *record = NULL;
    char path[AGNES_PATH_MAX + 64];
    result_page page = {0};
    budget(ctx, &limit, &max_chars);
    int rc = open_handle(ctx, who, handle, &record, path, sizeof path, err);
    if (rc == AGNES_OK)
        rc = result_store_page(ctx->results, path, record, offset, limit, max_chars, &page, err);
    if (rc == AGNES_OK) {
        result_page_describe(&page, handle, (int64_t)json_integer_value(json_object_get(record, "expires_unix")));
        rc = result_page_text(&page, text, err);
    }
    *status = rc == AGNES_OK ? 200 : status_of(rc);
    result_page_free(&page);
    json_decref(record);
    return rc;
}

/* Answer with a page's text (the buffer is handed to the response). */
static void respond_page(http_response *resp, strbuf *text)
{
    http_respond_raw(resp, 200, "application/json", text->data, text->len);
    strbuf_init(text);
}

static void respond_failure(http_response *resp, const http_request *req, unsigned status, const agnes_error *err)
{
    if (status == 500) {
        http_respond_internal(resp, req, err);
        return;
    }
    http_respond_error(resp, status, err->message, NULL);
    if (status == 429)
        http_response_add_header(resp, "Retry-After", "1");
}

void results_handle_create(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    strbuf page;
    strbuf_init(&page);
    const char *sql = NULL;
    long long limit = 0, max_chars = 0;
    enum json_field_presence presence;
    agnes_error err;
    unsigned status;
    if (body == NULL || json_body_string(body, "sql", true, QUERY_GUARD_MAX_SQL, &sql, resp) ||
        json_body_optional_int(body, "limit", 1, MCP_PAGE_MAX_ROWS, &presence, &limit, resp) ||
        json_body_optional_int(body, "max_chars", 100, MCP_PAGE_MAX_CHARS, &presence, &max_chars, resp))
        goto done;
    if (results_run(ctx, req->identity, sql, limit, max_chars, &page, &status, &err) != AGNES_OK)
        respond_failure(resp, req, status, &err);
    else
        respond_page(resp, &page);
done:
    strbuf_free(&page);
    json_decref(body);
}

void results_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *mine = result_store_list(ctx->results, req->identity->user_id);
    agnes_config *config = &ctx->runtime->config;
    http_respond_json(resp, 200,
                      json_pack("{s:o, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}}", "results", mine, "count",
                                (json_int_t)json_array_size(mine), "limits", "max_rows",
                                (json_int_t)config_get_int(config, CFG_RESULT_MAX_ROWS), "max_chars",
                                (json_int_t)config_get_int(config, CFG_RESULT_MAX_CHARS), "ttl_seconds",
                                (json_int_t)config_get_int(config, CFG_RESULT_TTL), "max_bytes_per_user",
                                (json_int_t)config_get_int(config, CFG_RESULT_MAX_BYTES_PER_USER), "page_max_rows",
                                (json_int_t)MCP_PAGE_MAX_ROWS, "page_max_chars", (json_int_t)MCP_PAGE_MAX_CHARS));
}

/* A query parameter as a whole number in [min, max]; false (resp: 422) otherwise. */
static bool query_int(const http_request *req, http_response *resp, const char *name, long long min, long long max,
                      long long *out)
{
    const char *text = http_request_query(req, name);
    if (text == NULL)
        return true;
    if (!util_parse_long(text, out) || *out < min || *out > max) {
        char detail[200];
        snprintf(detail, sizeof detail, "Query parameter %s must be a whole number from %lld to %lld.", name, min,
                 max);
        http_respond_error(resp, 422, detail, NULL);
        return false;
    }
    return true;
}

void results_handle_rows(http_context *ctx, const http_request *req, http_response *resp)
{
    long long offset = 0, limit = 0, max_chars = 0;
    strbuf page;
    strbuf_init(&page);
    agnes_error err;
    unsigned status;
    if (!query_int(req, resp, "offset", 0, RESULTS_MAX_ROWS, &offset) ||
        !query_int(req, resp, "limit", 1, MCP_PAGE_MAX_ROWS, &limit) ||
        !query_int(req, resp, "max_chars", 100, MCP_PAGE_MAX_CHARS, &max_chars))
        return;
    if (results_fetch(ctx, req->identity, http_request_param(req, "handle"), offset, limit, max_chars, &page, &status,
                      &err) != AGNES_OK)
        respond_failure(resp, req, status, &err);
    else
        respond_page(resp, &page);
    strbuf_free(&page);
}

static ssize_t csv_read(void *cls, char *buf, size_t max)
{
    agnes_error err;
    ssize_t n = result_csv_read(cls, buf, max, &err);
    if (n < 0)
        log_warn("msg=\"result download cut off\" detail=\"%s\"", err.message);
    return n;
}

static void csv_release(void *cls)
{
    result_csv_free(cls);
}

void results_handle_download(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *handle = http_request_param(req, "handle"), *format = http_request_query(req, "format");
    json_t *record = NULL;
    char path[AGNES_PATH_MAX + 64], value[200];
    agnes_error err;
    if (format == NULL)
        format = "parquet";
    if (strcmp(format, "parquet") != 0 && strcmp(format, "csv") != 0) {
        http_respond_error(resp, 422, "Query parameter format must be \"parquet\" or \"csv\".", NULL);
        return;
    }
    int rc = open_handle(ctx, req->identity, handle, &record, path, sizeof path, &err);
    if (rc != AGNES_OK) {
        json_decref(record);
        respond_failure(resp, req, status_of(rc), &err);
        return;
    }
    snprintf(value, sizeof value, "attachment; filename=\"result-%s.%s\"", handle, format);
    http_response_add_header(resp, "Content-Disposition", value);
    if (strcmp(format, "csv") == 0) {
        result_csv *csv = NULL;
        rc = result_csv_open(ctx->results, path, record, &csv, &err);
        json_decref(record);
        if (rc != AGNES_OK) {
            respond_failure(resp, req, status_of(err.code), &err);
            return;
        }
        http_respond_stream(resp, 200, "text/csv; charset=utf-8",
                            (http_stream){.read = csv_read, .release = csv_release, .cls = csv});
        return;
    }
    json_decref(record);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { /* swept between the check and here */
        if (fd >= 0)
            close(fd);
        http_respond_error(resp, 404, "That result has just expired. Run the query again.", NULL);
        return;
    }
    http_respond_file(resp, 200, "application/vnd.apache.parquet", fd, 0, (int64_t)st.st_size);
}

void results_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    agnes_error err;
    if (result_store_delete(ctx->results, http_request_param(req, "handle"), req->identity->user_id, &err) !=
        AGNES_OK) {
        http_respond_error(resp, 404, err.message, NULL);
        return;
    }
    http_respond_raw(resp, 204, "application/json", NULL, 0);
}
