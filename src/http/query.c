/*
 * POST /api/query {sql, limit?=1000, format?="json"} (SPEC §8).
 *
 * The handler validates the body and starts the run (engine/query.h) -
 * which takes a slot and a worker, checks the SQL and reads ahead, so every
 * caller error is a 4xx with a sentence - and then answers with a stream
 * relayed from the worker while the client reads.  The slot is held until
 * the body is complete, so a slow reader counts against its own user's cap.
 *
 * A small answer (engine/query.h, query_run_take_body) is sent in one
 * piece with a Content-Length instead: its slot is already free, and what
 * a slow reader holds is that body (at most QUERY_DATA_FRAME bytes), not a
 * worker.
 *
 * Truncation is never silent, in any format: `Agnes-Truncated: true|false`
 * is a response header when the worker knew it before the first byte, and
 * otherwise an HTTP trailer (announced by `Trailer: Agnes-Truncated`) at
 * the end of the chunked body.  `Agnes-Row-Limit` is the limit applied.
 */
#include "http/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engine/analytics.h"
#include "engine/query.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/json_body.h"
#include "store/system_db.h"

#define QUERY_DEFAULT_LIMIT 1000
#define QUERY_MAX_LIMIT 1000000000LL

typedef struct query_stream {
    query_run *run;
    bool trailer; /* Agnes-Truncated goes in the trailer: unknown at the head */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
} query_stream;

static ssize_t stream_read(void *cls, char *buf, size_t max)
{
    query_stream *s = cls;
    agnes_error err;
    if (s->run == NULL)
        return 0;
    ssize_t n = query_run_read(s->run, buf, max, &err);
    if (n < 0)
        log_warn("msg=\"query stream cut off\" request_id=%s detail=\"%s\"", s->request_id, err.message);
    return n;
}

/* The trailer of a body whose truncation was unknown when it started. */
static int stream_trailers(void *cls, http_header *out, int max)
{
    query_stream *s = cls;
    if (!s->trailer || s->run == NULL || max < 1)
        return 0;
    snprintf(out[0].name, sizeof out[0].name, "Agnes-Truncated");
    snprintf(out[0].value, sizeof out[0].value, "%s", query_run_truncated_final(s->run) ? "true" : "false");
    return 1;
}

static void stream_release(void *cls)
{
    query_stream *s = cls;
    query_run_free(s->run);
    free(s);
}

typedef struct query_body {
    const char *sql;
    long long limit;
    query_format format;
} query_body;

/* Field-by-field validation; on failure resp holds the 4xx. */
static int parse_body(json_t *body, query_body *out, http_response *resp)
{
    json_t *sql = json_object_get(body, "sql");
    if (!json_is_string(sql) || json_string_length(sql) == 0) {
        http_respond_error(resp, 422, "Field \"sql\" is required: one SELECT statement as a string.", NULL);
        return -1;
    }
    out->sql = json_string_value(sql);
    if (strlen(out->sql) != json_string_length(sql)) {
        http_respond_error(resp, 422, "Field \"sql\" contains a NUL character; remove it.", NULL);
        return -1;
    }
    enum json_field_presence presence;
    out->limit = QUERY_DEFAULT_LIMIT;
    if (json_body_optional_int(body, "limit", 1, QUERY_MAX_LIMIT, &presence, &out->limit, resp) != 0)
        return -1;
    if (presence != JSON_FIELD_SET)
        out->limit = QUERY_DEFAULT_LIMIT;
    out->format = QUERY_FORMAT_JSON;
    json_t *format = json_object_get(body, "format");
    if (format != NULL && !json_is_null(format) &&
        (!json_is_string(format) || !query_format_parse(json_string_value(format), &out->format))) {
        http_respond_error(resp, 422,
                           "Field \"format\" must be one of \"json\", \"ndjson\", \"csv\", \"parquet\", \"arrow\".", NULL);
        return -1;
    }
    return 0;
}

static void respond_run_error(http_response *resp, const http_request *req, int rc, const agnes_error *err)
{
    switch (rc) {
    case AGNES_ERR_INVALID: http_respond_error(resp, 400, err->message, NULL); break;
    case AGNES_ERR_FORBIDDEN: http_respond_error(resp, 403, err->message, NULL); break;
    case AGNES_ERR_TIMEOUT: http_respond_error(resp, 408, err->message, NULL); break;
    case AGNES_ERR_BUSY:
        http_respond_error(resp, 429, err->message, NULL);
        http_response_add_header(resp, "Retry-After", "1");
        break;
    case AGNES_ERR_STATE: http_respond_error(resp, 503, err->message, NULL); break;
    default: http_respond_internal(resp, req, err);
    }
}

void query_respond(http_context *ctx, const http_request *req, http_response *resp, const char *sql,
                   long long limit, query_format format, bool trusted)
{
    const auth_identity *who = req->identity;
    json_t *visible = NULL;
    query_run *run = NULL;
    query_stream *stream = NULL;
    agnes_error err;
    int rc = AGNES_OK;
    if (!trusted && !who->is_admin) {
        unsigned generation = system_db_write_generation(ctx->db); /* read before the grants */
        visible = query_pool_grants_get(ctx->queries, who->user_id, generation);
        if (visible == NULL && (rc = catalog_visible_ids(ctx, who, &visible, &err)) != AGNES_OK) {
            respond_run_error(resp, req, rc, &err);
            goto done;
        }
        query_pool_grants_put(ctx->queries, who->user_id, generation, visible);
    }
    query_request request = {
        .caller = {.user_id = who->user_id, .is_admin = who->is_admin || trusted, .visible = visible},
        .sql = sql,
        .limit = limit,
        .format = format,
        .request_id = req->request_id,
    };
    if ((rc = query_run_start(ctx->queries, &request, &run, &err)) != AGNES_OK) {
        if (rc == AGNES_ERR_FORBIDDEN || rc == AGNES_ERR_TIMEOUT)
            log_info("msg=\"query refused\" request_id=%s user=%s reason=%s detail=\"%s\"", req->request_id,
                     who->email, agnes_status_name(rc), err.message);
        respond_run_error(resp, req, rc, &err);
        goto done;
    }
    size_t body_len = 0;
    char *body = query_run_take_body(run, &body_len);
    if (body != NULL) {
        /* A small answer came whole: one response with a Content-Length. */
        http_respond_raw(resp, 200, query_format_content_type(format), body, body_len);
        http_response_add_header(resp, "Agnes-Truncated", query_run_truncated_final(run) ? "true" : "false");
        goto headers;
    }
    if ((stream = calloc(1, sizeof *stream)) == NULL) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory");
        http_respond_internal(resp, req, &err);
        goto done;
    }
    *stream = (query_stream){.run = run, .trailer = query_run_truncated(run) == NULL};
    snprintf(stream->request_id, sizeof stream->request_id, "%s", req->request_id);
    http_respond_stream(resp, 200, query_format_content_type(format),
                        (http_stream){.read = stream_read, .release = stream_release, .trailers = stream_trailers,
                                      .cls = stream});
    /* Truncation is never silent: a header when the worker knew it before
     * the first byte, else a trailer announced here (RFC 9110 6.5). */
    if (query_run_truncated(run) != NULL)
        http_response_add_header(resp, "Agnes-Truncated", query_run_truncated(run));
    else
        http_response_add_header(resp, "Trailer", "Agnes-Truncated");
    run = NULL; /* the stream owns it now */
headers:;
    char limit_text[32];
    snprintf(limit_text, sizeof limit_text, "%lld", limit);
    http_response_add_header(resp, "Agnes-Row-Limit", limit_text);
done:
    query_run_free(run);
    json_decref(visible);
}

void query_handle_post(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    query_body q;
    if (body != NULL && parse_body(body, &q, resp) == 0)
        query_respond(ctx, req, resp, q.sql, q.limit, q.format, false);
    json_decref(body);
}
