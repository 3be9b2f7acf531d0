/*
 * json_body.h - read a JSON request body field by field.
 *
 * Each helper either yields a valid value or fills the response with a 4xx
 * whose sentence names the field and what it must be, and returns -1; the
 * handler then just returns.  Malformed JSON is 400, a field of the wrong
 * type, length or content is 422.
 */
#ifndef AGNES_HTTP_JSON_BODY_H
#define AGNES_HTTP_JSON_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

/* Parse the body as a JSON object (new reference, caller decrefs). */
json_t *json_body_parse_object(const http_request *req, http_response *resp);

/* A string field: required or optional (absent/null -> *out = NULL), length
 * 1..max_len characters (UTF-8 code points), no control characters. */
int json_body_string(json_t *body, const char *field, bool required, size_t max_len, const char **out,
                     http_response *resp);

/* An email: one '@', non-empty local part and a dotted domain, no spaces,
 * at most 254 bytes; written lower-cased into out. */
int json_body_email(json_t *body, const char *field, char *out, size_t out_size, http_response *resp);

enum json_field_presence { JSON_FIELD_ABSENT, JSON_FIELD_NULL, JSON_FIELD_SET };

/* A string field that has a value whenever it is present: absent leaves
 * *out NULL (the caller keeps its default or the stored value), JSON null is
 * a 422 saying the field cannot be null and what to send instead (`instead`,
 * e.g. "one of local, materialized, remote"), anything else as
 * json_body_string.  For fields that are never allowed to be empty: a null
 * where a string is expected must never reach code that reads the string. */
int json_body_string_not_null(json_t *body, const char *field, size_t max_len, const char *instead,
                              const char **out, http_response *resp);

/* An optional whole-number field in [min, max]; *presence says whether it was
 * absent, an explicit null, or set (then *out holds it). */
int json_body_optional_int(json_t *body, const char *field, long long min, long long max,
                           enum json_field_presence *presence, long long *out, http_response *resp);

/* An optional boolean field; *presence as above. */
int json_body_optional_bool(json_t *body, const char *field, enum json_field_presence *presence, bool *out,
                            http_response *resp);

#endif
