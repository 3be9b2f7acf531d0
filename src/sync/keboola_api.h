/*
 * keboola_api.h - a client of the Keboola Storage API (v2), over libcurl.
 *
 * Wire facts it follows (Keboola's Storage API documentation, apiary
 * "Storage API", and the official PHP/Python/Go clients' behaviour):
 *   - every call is {stack}/v2/storage/..., authenticated by the header
 *     X-StorageApi-Token; lists are bare JSON arrays, everything else an
 *     object; ids are strings in some places and numbers in others; an
 *     empty map is serialised as [];
 *   - errors are {"error": "...", "code": "<dotted>" | <number>,
 *     "exceptionId"?}; a 503 during maintenance carries Retry-After;
 *   - the token is echoed by tokens/verify, so it never reaches a log, an
 *     error or a response of ours: every message this client builds passes
 *     through keboola_redact().
 *
 * Retries: transport errors, 429 and 5xx except 501 are retried (6 tries),
 * waiting Retry-After when the answer has one (at most 60 s per wait), else
 * 1, 2, 4, 8, 16 s.  Every wait and transfer stops soon after *cancel.
 *
 * Error codes (the sync runner and the HTTP layer map them):
 *   AGNES_ERR_CONFIG     401: the token is wrong, revoked, or another stack's
 *   AGNES_ERR_FORBIDDEN  403: the token may not read this
 *   AGNES_ERR_NOT_FOUND  404 with a Keboola error body
 *   AGNES_ERR_INVALID    another 4xx, or an answer that is not the Storage
 *                        API's JSON (a wrong URL)
 *   AGNES_ERR_NETWORK    unreachable, or 429/5xx after the retries
 * The first four are the admin's to fix (400-class in our API), the last
 * is transient (retried by the runner, 502 in our API).
 */
#ifndef AGNES_SYNC_KEBOOLA_API_H
#define AGNES_SYNC_KEBOOLA_API_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/outbound.h"

/* What the last call saw, for callers that tell failures apart (configure). */
typedef struct keboola_answer {
    long status;        /* HTTP status, 0 when no answer came */
    bool storage_error; /* the body was a Keboola error object */
    char code[96];      /* its "code" (string or number as text) */
} keboola_answer;

typedef struct keboola_client {
    char base[512];     /* the stack URL, no trailing slash */
    const char *token;  /* borrowed; never copied into messages */
    outbound net;
    outbound_request request;
    CURL *curl;         /* reused, so calls share connections */
    const atomic_bool *cancel;
    int attempts;
    int max_wait_seconds;
    keboola_answer last;
} keboola_client;

/* base_url: https://..., a trailing "/" tolerated.  token and cancel (may
 * be NULL) are borrowed and must outlive the client. */
int keboola_client_open(keboola_client *kc, const char *base_url, const char *token, const outbound_policy *policy,
                        const atomic_bool *cancel, agnes_error *err);
void keboola_client_close(keboola_client *kc);

/* GET {base}/v2/storage/{path} (path without the leading "/v2/storage/",
 * query included).  *out: the parsed JSON (new reference). */
int keboola_get(keboola_client *kc, const char *path, json_t **out, agnes_error *err);

/* POST a JSON body to {base}/v2/storage/{path}. */
int keboola_post(keboola_client *kc, const char *path, const json_t *body, json_t **out, agnes_error *err);

/* GET an absolute, already signed URL (a file or manifest in cloud
 * storage), no Keboola header.  *body (malloc'd, NUL-terminated) at most
 * max_bytes.  401/403 give AGNES_ERR_FORBIDDEN (the signature expired). */
int keboola_get_signed(keboola_client *kc, const char *url, size_t max_bytes, char **body, size_t *len,
                       agnes_error *err);

/* Replace every occurrence of token (and of its secret part after the last
 * '-', when long enough to be one) in text with "[redacted]", in place. */
void keboola_redact(char *text, size_t size, const char *token);

/* A Keboola id (string or number) as text; "" when neither. */
const char *keboola_id_text(const json_t *value, char *buf, size_t size);

/* Sleep up to seconds, waking early on *cancel.  False when cancelled. */
bool keboola_pause(double seconds, const atomic_bool *cancel);

#endif
