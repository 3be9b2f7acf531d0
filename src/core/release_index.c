#include "core/release_index.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define RELEASE_INDEX_MAX_BYTES (1024 * 1024)
#define RELEASE_INDEX_TIMEOUT_SECONDS 10L

typedef struct fetch_buffer {
    char *data;
    size_t len;
    bool too_large;
} fetch_buffer;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    fetch_buffer *buf = userdata;
    size_t n = size * nmemb;
    if (buf->len + n > RELEASE_INDEX_MAX_BYTES) {
        buf->too_large = true;
        return 0; /* aborts the transfer */
    }
    char *grown = realloc(buf->data, buf->len + n + 1);
    if (grown == NULL)
        return 0;
    buf->data = grown;
    memcpy(buf->data + buf->len, ptr, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

static char *fetch_url(const char *url, char *problem, size_t problem_size)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(problem, problem_size, "could not start an HTTP client");
        return NULL;
    }
    fetch_buffer buf = {0};
    char curl_error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, RELEASE_INDEX_TIMEOUT_SECONDS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "agnes-release-check");
    CURLcode rc = curl_easy_perform(curl);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK || http_status != 200) {
        if (buf.too_large)
            snprintf(problem, problem_size, "response is larger than %d bytes", RELEASE_INDEX_MAX_BYTES);
        else if (rc != CURLE_OK)
            snprintf(problem, problem_size, "%s", curl_error[0] ? curl_error : curl_easy_strerror(rc));
        else
            snprintf(problem, problem_size, "HTTP status %ld", http_status);
        free(buf.data);
        return NULL;
    }
    if (buf.data == NULL)
        buf.data = util_strdup("");
    return buf.data;
}

void release_index_evaluate(const char *json_text, const char *source, const char *running_version,
                            release_status *status)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        snprintf(status->problem, sizeof status->problem,
                 "release index %s is not a JSON object (line %d: %s)", source, jerr.line,
                 root ? "top level is not an object" : jerr.text);
        json_decref(root);
        return;
    }
    json_t *stable = json_object_get(root, "stable");
    json_t *deprecated = json_object_get(root, "deprecated");
    if (!json_is_string(stable) || (deprecated != NULL && !json_is_array(deprecated))) {
        snprintf(status->problem, sizeof status->problem,
                 "release index %s must have \"stable\" as a string and \"deprecated\" as a list", source);
        json_decref(root);
        return;
    }
    snprintf(status->stable, sizeof status->stable, "%s", json_string_value(stable));
    size_t i;
    json_t *entry;
    json_array_foreach(deprecated, i, entry) {
        const char *version = json_string_value(json_object_get(entry, "version"));
        if (version == NULL || strcmp(version, running_version) != 0)
            continue;
        const char *reason = json_string_value(json_object_get(entry, "reason"));
        const char *until = json_string_value(json_object_get(entry, "until"));
        status->deprecated = true;
        snprintf(status->reason, sizeof status->reason, "%s", reason ? reason : "");
        snprintf(status->until, sizeof status->until, "%s", until ? until : "");
    }
    status->ok = true;
    json_decref(root);
}

void release_index_check(const char *source, const char *running_version, release_status *status)
{
    memset(status, 0, sizeof *status);
    status->checked_at = util_unix_now();
    if (source == NULL || source[0] == '\0')
        return;
    status->configured = true;
    char *text = NULL;
    char problem[512] = "";
    if (util_starts_with(source, "http://") || util_starts_with(source, "https://")) {
        text = fetch_url(source, problem, sizeof problem);
    } else {
        agnes_error err;
        agnes_error_clear(&err);
        if (util_read_file(source, RELEASE_INDEX_MAX_BYTES, &text, NULL, &err) != AGNES_OK)
            snprintf(problem, sizeof problem, "%s", err.message);
    }
    if (text == NULL) {
        snprintf(status->problem, sizeof status->problem, "release index %s is unreachable: %s", source, problem);
        return;
    }
    release_index_evaluate(text, source, running_version, status);
    free(text);
}

void release_index_warning(const release_status *status, const char *running_version, char *out, size_t out_size)
{
    out[0] = '\0';
    if (!status->configured)
        return;
    if (!status->ok)
        snprintf(out, out_size, "%s. Check AGNES_RELEASE_INDEX.", status->problem);
    else if (status->deprecated)
        snprintf(out, out_size, "Running deprecated version %s. Update to stable (%s).", running_version,
                 status->stable);
}
