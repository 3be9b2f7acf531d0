#include "http/json_body.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

json_t *json_body_parse_object(const http_request *req, http_response *resp)
{
    json_error_t jerr;
    if (req->body_len == 0) {
        http_respond_error(resp, 400, "Request body is empty; send a JSON object with Content-Type: application/json.",
                           NULL);
        return NULL;
    }
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        char detail[400];
        snprintf(detail, sizeof detail, "Request body is not valid JSON: %s (line %d, column %d).", jerr.text,
                 jerr.line, jerr.column);
        http_respond_error(resp, 400, detail, NULL);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        http_respond_error(resp, 400, "Request body must be a JSON object ({...}).", NULL);
        return NULL;
    }
    return body;
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool has_control_characters(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static int field_error(http_response *resp, const char *field, const char *what)
{
    char detail[300];
    snprintf(detail, sizeof detail, "Field '%s' %s.", field, what);
    http_respond_error(resp, 422, detail, NULL);
    return -1;
}

int json_body_string(json_t *body, const char *field, bool required, size_t max_len, const char **out,
                     http_response *resp)
{
    json_t *value = json_object_get(body, field);
    *out = NULL;
    if (value == NULL || json_is_null(value))
        return required ? field_error(resp, field, "is required") : 0;
    if (!json_is_string(value))
        return field_error(resp, field, "must be a string");
    const char *text = json_string_value(value);
    size_t bytes = json_string_length(value);
    if (bytes == 0)
        return field_error(resp, field, "must not be empty");
    if (strlen(text) != bytes || has_control_characters(text, bytes))
        return field_error(resp, field, "must not contain control characters");
    if (utf8_length(text) > max_len) {
        char what[80];
        snprintf(what, sizeof what, "must be at most %zu characters", max_len);
        return field_error(resp, field, what);
    }
    *out = text;
    return 0;
}

int json_body_string_not_null(json_t *body, const char *field, size_t max_len, const char *instead,
                              const char **out, http_response *resp)
{
    json_t *value = json_object_get(body, field);
    *out = NULL;
    if (value != NULL && json_is_null(value)) {
        char what[300];
        snprintf(what, sizeof what, "cannot be null: send %s, or leave the field out", instead);
        return field_error(resp, field, what);
    }
    return json_body_string(body, field, false, max_len, out, resp);
}

int json_body_email(json_t *body, const char *field, char *out, size_t out_size, http_response *resp)
{
    const char *text = NULL;
    if (json_body_string(body, field, true, 254, &text, resp))
        return -1;
    const char *at = strchr(text, '@');
    const char *dot = at ? strchr(at, '.') : NULL;
    bool spaces = strpbrk(text, " \t") != NULL;
    if (at == NULL || at == text || strchr(at + 1, '@') || dot == NULL || dot == at + 1 || dot[1] == '\0' || spaces ||
        strlen(text) >= out_size)
        return field_error(resp, field, "must be an email address like name@example.com");
    size_t i = 0;
    for (; text[i]; i++)
        out[i] = (char)tolower((unsigned char)text[i]);
    out[i] = '\0';
    return 0;
}

int json_body_optional_int(json_t *body, const char *field, long long min, long long max,
                           enum json_field_presence *presence, long long *out, http_response *resp)
{
    json_t *value = json_object_get(body, field);
    *presence = value == NULL ? JSON_FIELD_ABSENT : json_is_null(value) ? JSON_FIELD_NULL : JSON_FIELD_SET;
    if (*presence != JSON_FIELD_SET)
        return 0;
    if (!json_is_integer(value) || json_integer_value(value) < min || json_integer_value(value) > max) {
        char what[120];
        snprintf(what, sizeof what, "must be a whole number from %lld to %lld", min, max);
        return field_error(resp, field, what);
    }
    *out = json_integer_value(value);
    return 0;
}

int json_body_optional_bool(json_t *body, const char *field, enum json_field_presence *presence, bool *out,
                            http_response *resp)
{
    json_t *value = json_object_get(body, field);
    *presence = value == NULL ? JSON_FIELD_ABSENT : json_is_null(value) ? JSON_FIELD_NULL : JSON_FIELD_SET;
    if (*presence != JSON_FIELD_SET)
        return 0;
    if (!json_is_boolean(value))
        return field_error(resp, field, "must be true or false");
    *out = json_is_true(value);
    return 0;
}
