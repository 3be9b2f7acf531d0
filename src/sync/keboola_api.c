#include "sync/keboola_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/strbuf.h"

#define KEBOOLA_ATTEMPTS 6
#define KEBOOLA_MAX_WAIT_SECONDS 60
#define KEBOOLA_MAX_ANSWER_BYTES (256u * 1024 * 1024)

void keboola_redact(char *text, size_t size, const char *token)
{
    if (text == NULL || token == NULL || token[0] == '\0')
        return;
    const char *secret = strrchr(token, '-');
    const char *needles[] = {token, secret != NULL && strlen(secret + 1) >= 16 ? secret + 1 : NULL};
    static const char mask[] = "[redacted]";
    for (size_t n = 0; n < 2; n++) {
        const char *needle = needles[n];
        if (needle == NULL)
            continue;
        size_t needle_len = strlen(needle);
        char *at;
        while ((at = strstr(text, needle)) != NULL) {
            size_t tail = strlen(at + needle_len);
            size_t mask_len = sizeof mask - 1;
            /* the mask is shorter than any real token; if not, cut the tail */
            if ((size_t)(at - text) + mask_len + tail + 1 > size)
                tail = size - (size_t)(at - text) - mask_len - 1;
            memmove(at + mask_len, at + needle_len, tail);
            memcpy(at, mask, mask_len);
            at[mask_len + tail] = '\0';
        }
    }
}

const char *keboola_id_text(const json_t *value, char *buf, size_t size)
{
    if (json_is_string(value))
        snprintf(buf, size, "%s", json_string_value(value));
    else if (json_is_integer(value))
        snprintf(buf, size, "%lld", (long long)json_integer_value(value));
    else
        buf[0] = '\0';
    return buf;
}

bool keboola_pause(double seconds, const atomic_bool *cancel)
{
    while (seconds > 0) {
        if (cancel != NULL && atomic_load(cancel))
            return false;
        double step = seconds < 0.1 ? seconds : 0.1;
        struct timespec pause = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
        nanosleep(&pause, NULL);
        seconds -= step;
    }
    return cancel == NULL || !atomic_load(cancel);
}

static int fail(keboola_client *kc, agnes_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Every error of this client goes through here: the token never leaves. */
static int fail(keboola_client *kc, agnes_error *err, int code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    keboola_redact(err->message, sizeof err->message, kc->token);
    return code;
}

int keboola_client_open(keboola_client *kc, const char *base_url, const char *token, const outbound_policy *policy,
                        const atomic_bool *cancel, agnes_error *err)
{
    memset(kc, 0, sizeof *kc);
    kc->token = token;
    kc->cancel = cancel;
    kc->attempts = KEBOOLA_ATTEMPTS;
    kc->max_wait_seconds = KEBOOLA_MAX_WAIT_SECONDS;
    if (strncmp(base_url, "https://", 8) != 0)
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "the Keboola stack URL must start with https:// (e.g. https://connection.keboola.com)");
    snprintf(kc->base, sizeof kc->base, "%s", base_url);
    size_t len = strlen(kc->base);
    while (len > 0 && kc->base[len - 1] == '/')
        kc->base[--len] = '\0';
    if (outbound_init(&kc->net, policy, err))
        return err->code;
    kc->curl = curl_easy_init();
    if (kc->curl == NULL) {
        outbound_free(&kc->net);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start an HTTP client");
    }
    return AGNES_OK;
}

void keboola_client_close(keboola_client *kc)
{
    if (kc->curl != NULL)
        curl_easy_cleanup(kc->curl);
    kc->curl = NULL;
    outbound_free(&kc->net);
}

typedef struct answer_buffer {
    strbuf body;
    size_t max;
    bool too_large;
} answer_buffer;

static size_t collect(char *data, size_t size, size_t count, void *userdata)
{
    answer_buffer *buf = userdata;
    size_t n = size * count;
    if (buf->body.len + n > buf->max) {
        buf->too_large = true;
        return 0;
    }
    strbuf_append(&buf->body, data, n);
    return strbuf_failed(&buf->body) ? 0 : n;
}

static int stop_on_cancel(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    const atomic_bool *cancel = data;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return cancel != NULL && atomic_load(cancel) ? 1 : 0;
}

/* One transfer; *status 0 when nothing came back.  *retry_after seconds
 * (-1 when the answer had none). */
static CURLcode perform_once(keboola_client *kc, const char *url, const char *post_body, bool with_token,
                             answer_buffer *buf, long *status, long *retry_after, char *curl_message)
{
    CURL *curl = kc->curl;
    struct curl_slist *headers = NULL;
    char token_header[128 + 4096];
    curl_easy_reset(curl);
    outbound_apply(&kc->net, curl, &kc->request);
    headers = curl_slist_append(headers, "Accept: application/json");
    if (with_token) {
        snprintf(token_header, sizeof token_header, "X-StorageApi-Token: %s", kc->token);
        headers = curl_slist_append(headers, token_header);
        explicit_bzero(token_header, sizeof token_header);
    }
    if (post_body != NULL) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_message);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    /* Storage may think a while before the first byte of a large listing */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 300L);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, stop_on_cancel);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)kc->cancel);
    curl_message[0] = '\0';
    CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    *status = 0;
    *retry_after = -1;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    curl_off_t after = -1;
    if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
        *retry_after = (long)after;
    return code;
}

/* The Keboola error object's sentence: "code: message" (+ maintenance reason). */
static void describe_error_body(keboola_client *kc, const char *body, char *out, size_t out_size)
{
    json_error_t parse_error;
    json_t *doc = body ? json_loads(body, 0, &parse_error) : NULL;
    char code[96] = "";
    out[0] = '\0';
    kc->last.storage_error = false;
    kc->last.code[0] = '\0';
    if (json_is_object(doc)) {
        keboola_id_text(json_object_get(doc, "code"), code, sizeof code);
        const char *message = json_string_value(json_object_get(doc, "error"));
        const char *reason = json_string_value(json_object_get(doc, "reason"));
        const char *state = json_string_value(json_object_get(doc, "status"));
        if (message != NULL || code[0] != '\0') {
            kc->last.storage_error = true;
            snprintf(kc->last.code, sizeof kc->last.code, "%s", code);
            snprintf(out, out_size, "%s%s\"%s\"", code, code[0] ? ": " : "", message ? message : "");
        } else if (state != NULL && strcmp(state, "maintenance") == 0) {
            kc->last.storage_error = true;
            snprintf(kc->last.code, sizeof kc->last.code, "maintenance");
            snprintf(out, out_size, "maintenance: \"%s\"", reason ? reason : "");
        }
    }
    if (out[0] == '\0' && body != NULL) { /* a proxy's or a wrong server's page: a short, printable excerpt */
        size_t n = 0;
        for (const char *p = body; *p && n + 1 < out_size && n < 160; p++)
            out[n++] = (*p >= 32 && *p < 127 && *p != '"') ? *p : ' ';
        out[n] = '\0';
    }
    json_decref(doc);
}

static bool retryable(CURLcode code, long status)
{
    if (code == CURLE_ABORTED_BY_CALLBACK || code == CURLE_WRITE_ERROR || code == CURLE_UNSUPPORTED_PROTOCOL ||
        code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE || code == CURLE_URL_MALFORMAT)
        return false;
    if (code != CURLE_OK)
        return true;
    return status == 429 || (status >= 500 && status != 501);
}

/* The request loop shared by every call.  *out_body owns the answer. */
static int request(keboola_client *kc, const char *url, const char *post_body, bool with_token, size_t max_bytes,
                   const char *what, strbuf *out_body, agnes_error *err)
{
    char curl_message[CURL_ERROR_SIZE], problem[AGNES_ERROR_MESSAGE_MAX];
    memset(&kc->last, 0, sizeof kc->last);
    for (int attempt = 1;; attempt++) {
        answer_buffer buf = {.max = max_bytes};
        strbuf_init(&buf.body);
        long status = 0, retry_after = -1;
        CURLcode code = perform_once(kc, url, post_body, with_token, &buf, &status, &retry_after, curl_message);
        kc->last.status = code == CURLE_OK ? status : 0;
        if (code == CURLE_ABORTED_BY_CALLBACK) {
            strbuf_free(&buf.body);
            return fail(kc, err, AGNES_ERR_NETWORK, "the sync was stopped");
        }
        if (buf.too_large || strbuf_failed(&buf.body)) {
            strbuf_free(&buf.body);
            return fail(kc, err, AGNES_ERR_NETWORK, "%s: the answer is larger than %zu bytes", what, max_bytes);
        }
        if (code == CURLE_OK && status >= 200 && status < 300) {
            *out_body = buf.body;
            return AGNES_OK;
        }
        if (code != CURLE_OK)
            outbound_describe_failure(&kc->request, code, curl_message, problem, sizeof problem);
        else
            describe_error_body(kc, buf.body.data, problem, sizeof problem);
        strbuf_free(&buf.body);
        if (!retryable(code, status) || attempt >= kc->attempts || kc->request.blocked[0] != '\0') {
            if (code != CURLE_OK && kc->request.blocked[0] != '\0') /* the admin's to allow, not a network fault */
                return fail(kc, err, AGNES_ERR_FORBIDDEN, "%s: cannot reach Keboola at %s: %s", what, kc->base,
                            problem);
            if (code != CURLE_OK)
                return fail(kc, err, AGNES_ERR_NETWORK, "%s: cannot reach Keboola at %s: %s", what, kc->base, problem);
            if (retryable(code, status))
                return fail(kc, err, AGNES_ERR_NETWORK, "%s: Keboola answered %ld (%s) %d times; it is busy or in "
                            "maintenance, try again later", what, status, problem, attempt);
            if (!with_token) /* a signed URL of the file storage */
                return fail(kc, err, status == 401 || status == 403 || strstr(problem, "ExpiredToken") != NULL
                                         ? AGNES_ERR_FORBIDDEN
                                         : AGNES_ERR_INVALID,
                            "%s: the file storage answered %ld (%s)", what, status, problem);
            if (status == 401)
                return fail(kc, err, AGNES_ERR_CONFIG,
                            "%s: Keboola rejected the Storage API token (401 %s). The token is wrong, revoked or "
                            "expired, or belongs to another stack than %s: create a token in the project's "
                            "Settings > API Tokens on that stack and configure it again (POST /api/admin/configure "
                            "or KEBOOLA_STORAGE_TOKEN)", what, problem, kc->base);
            if (status == 403)
                return fail(kc, err, AGNES_ERR_FORBIDDEN,
                            "%s: Keboola refused access (403 %s): give the token read access to the bucket "
                            "(Settings > API Tokens in Keboola) or use a token that can read all buckets",
                            what, problem);
            if (status == 404 && kc->last.storage_error)
                return fail(kc, err, AGNES_ERR_NOT_FOUND, "%s: Keboola answered 404 (%s)", what, problem);
            if (!kc->last.storage_error)
                return fail(kc, err, AGNES_ERR_INVALID,
                            "%s: %s answered %ld and is not a Keboola Storage API (%s): check the stack URL, "
                            "e.g. https://connection.keboola.com or https://connection.eu-central-1.keboola.com",
                            what, kc->base, status, problem);
            return fail(kc, err, AGNES_ERR_INVALID, "%s: Keboola refused the request (%ld %s)", what, status, problem);
        }
        double wait = retry_after > 0 ? (double)retry_after : (double)(1 << (attempt - 1));
        if (wait > kc->max_wait_seconds)
            wait = kc->max_wait_seconds;
        char logged[AGNES_ERROR_MESSAGE_MAX];
        snprintf(logged, sizeof logged, "%s", problem);
        keboola_redact(logged, sizeof logged, kc->token);
        log_warn("msg=\"Keboola call failed, retrying\" call=\"%s\" status=%ld attempt=%d wait_s=%.0f detail=\"%s\"",
                 what, status, attempt, wait, logged);
        if (!keboola_pause(wait, kc->cancel))
            return fail(kc, err, AGNES_ERR_NETWORK, "the sync was stopped");
    }
}

static int parse_answer(keboola_client *kc, strbuf *body, const char *what, json_t **out, agnes_error *err)
{
    json_error_t parse_error;
    *out = body->data != NULL ? json_loadb(body->data, body->len, 0, &parse_error) : NULL;
    strbuf_free(body);
    if (*out == NULL)
        return fail(kc, err, AGNES_ERR_INVALID,
                    "%s: %s answered with something that is not JSON; it is not a Keboola Storage API: check the "
                    "stack URL (e.g. https://connection.keboola.com)", what, kc->base);
    return AGNES_OK;
}

static int storage_call(keboola_client *kc, const char *path, const json_t *body, json_t **out, agnes_error *err)
{
    char url[2048], what[160];
    strbuf answer;
    *out = NULL;
    snprintf(url, sizeof url, "%s/v2/storage/%s", kc->base, path);
    snprintf(what, sizeof what, "%s /v2/storage/%.*s", body ? "POST" : "GET", (int)strcspn(path, "?"), path);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body != NULL && text == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = request(kc, url, text, true, KEBOOLA_MAX_ANSWER_BYTES, what, &answer, err);
    free(text);
    return rc == AGNES_OK ? parse_answer(kc, &answer, what, out, err) : rc;
}

int keboola_get(keboola_client *kc, const char *path, json_t **out, agnes_error *err)
{
    return storage_call(kc, path, NULL, out, err);
}

int keboola_post(keboola_client *kc, const char *path, const json_t *body, json_t **out, agnes_error *err)
{
    return storage_call(kc, path, body, out, err);
}

int keboola_get_signed(keboola_client *kc, const char *url, size_t max_bytes, char **body, size_t *len,
                       agnes_error *err)
{
    strbuf answer;
    *body = NULL;
    *len = 0;
    int rc = request(kc, url, NULL, false, max_bytes, "downloading the export's manifest", &answer, err);
    if (rc != AGNES_OK)
        return rc;
    *len = answer.len;
    *body = answer.data != NULL ? answer.data : calloc(1, 1); /* the strbuf's buffer, NUL-terminated */
    return *body != NULL ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}
