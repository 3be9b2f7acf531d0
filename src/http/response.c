#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/utf8.h"
#include "http/http.h"

static const char fallback_body[] = "{\"detail\":\"Internal server error: the answer could not be built; see the server log.\"}";

const char *http_request_header(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_request_query(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

/* A path segment that is not UTF-8 (/api/users/%FF) names nothing that can
 * exist - every stored id is UTF-8, and DuckDB will not even bind such
 * text - so it reads as U+FFFD: lookups find nothing (404) and the
 * sentence that quotes it is valid JSON. */
static const char not_text[] = "\xEF\xBF\xBD";

const char *http_request_param(const http_request *req, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < req->param_count; i++)
        if (req->params[i].name_len == len && strncmp(req->params[i].name, name, len) == 0)
            return utf8_is_valid(req->params[i].value, strlen(req->params[i].value)) ? req->params[i].value
                                                                                        : not_text;
    return NULL;
}

void http_respond_raw(http_response *resp, unsigned status, const char *content_type, char *body, size_t len)
{
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len;
}

void http_respond_file(http_response *resp, unsigned status, const char *content_type, int fd, int64_t offset,
                       int64_t length)
{
    resp->status = status;
    resp->content_type = content_type;
    resp->has_file = true;
    resp->file_fd = fd;
    resp->file_offset = offset;
    resp->file_length = length;
    resp->body_len = (size_t)length;
}

void http_respond_stream(http_response *resp, unsigned status, const char *content_type, http_stream stream)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    resp->status = status;
    resp->content_type = content_type;
    resp->stream = stream;
}

void http_respond_json(http_response *resp, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        /* No body: a json_pack of text that is not UTF-8 (a bug: user text
         * goes through json_body/utf8 checks first) or no memory. */
        log_error("msg=\"cannot build a JSON response\" status=%u", status);
        char *copy = malloc(sizeof fallback_body);
        if (copy)
            memcpy(copy, fallback_body, sizeof fallback_body);
        http_respond_raw(resp, 500, "application/json", copy, copy ? sizeof fallback_body - 1 : 0);
        return;
    }
    http_respond_raw(resp, status, "application/json", text, strlen(text));
}

/* A JSON string of any bytes: the text itself when it is UTF-8, else a
 * copy with U+FFFD for each byte that is not.  Error sentences quote what
 * the caller sent (a table name, a URL segment, a line of their file) and
 * are cut at fixed sizes, so they cannot be trusted to encode as they are;
 * an answer must never turn into a 500 because its sentence did not. */
static json_t *json_text(const char *text)
{
    if (text == NULL)
        return NULL;
    json_t *value = json_string(text);
    if (value != NULL)
        return value;
    char *repaired = utf8_sanitize(text);
    value = repaired ? json_string(repaired) : NULL;
    free(repaired);
    return value;
}

void http_respond_error(http_response *resp, unsigned status, const char *detail, const char *hint)
{
    json_t *body = json_object(), *text = json_text(detail ? detail : "");
    if (body == NULL || text == NULL || json_object_set_new(body, "detail", text) != 0) {
        json_decref(body);
        body = NULL;
    }
    if (body && hint)
        json_object_set_new(body, "hint", json_text(hint));
    http_respond_json(resp, status, body);
}

int http_response_add_header(http_response *resp, const char *name, const char *value)
{
    if (resp->header_count >= HTTP_MAX_RESPONSE_HEADERS)
        return -1;
    http_header *h = &resp->headers[resp->header_count++];
    snprintf(h->name, sizeof h->name, "%s", name);
    snprintf(h->value, sizeof h->value, "%s", value);
    return 0;
}

void http_respond_internal(http_response *resp, const http_request *req, const agnes_error *err)
{
    log_error("msg=\"internal error\" request_id=%s path=\"%s\" error=%s detail=\"%s\"", req->request_id, req->path,
              agnes_status_name(err->code), err->message);
    http_respond_json(resp, 500,
                      json_pack("{s:s, s:s}", "detail", "Internal server error; quote the request_id when reporting it.",
                                "request_id", req->request_id));
}

const char *http_request_cookie(const http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_COOKIE_KIND, name);
}

bool http_respond_failure(http_response *resp, const http_request *req, int rc, const agnes_error *err,
                          const char *not_found)
{
    if (rc == AGNES_OK)
        return false;
    if (rc == AGNES_ERR_NOT_FOUND)
        http_respond_error(resp, 404, not_found, NULL);
    else if (rc == AGNES_ERR_INVALID)
        http_respond_error(resp, 409, err->message, NULL);
    else
        http_respond_internal(resp, req, err);
    return true;
}
