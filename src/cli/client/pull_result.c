#include "cli/client/pull_result.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client/client.h"
#include "cli/client/workspace.h"
#include "core/util.h"
#include "engine/result_handle.h"

typedef struct download {
    FILE *out;
    CURL *curl;
    strbuf error_body; /* a non-200 answer is a sentence, not file bytes */
    long long bytes;
} download;

static size_t write_body(char *data, size_t size, size_t count, void *userdata)
{
    download *d = userdata;
    long status = 0;
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        strbuf_append(&d->error_body, data, size * count);
        return size * count;
    }
    d->bytes += (long long)(size * count);
    return fwrite(data, size, count, d->out) * size;
}

int pull_result(const char *handle, const char *format, const char *workspace_dir, bool json, bool quiet)
{
    client c;
    workspace ws = {0};
    agnes_error err;
    download d = {0};
    struct curl_slist *headers = NULL;
    char dir[AGNES_PATH_MAX + 16], path[AGNES_PATH_MAX + 80], part[AGNES_PATH_MAX + 90] = "", url[200];
    strbuf_init(&d.error_body);
    int rc = AGNES_OK;
    if (strcmp(format, "parquet") != 0 && strcmp(format, "csv") != 0) {
        fprintf(stderr, "agnes pull: --format must be parquet or csv\n");
        return CLIENT_EXIT_USAGE;
    }
    if (strncmp(handle, "local-", 6) == 0) {
        fprintf(stderr, "agnes pull: %s is a local result: it is already in this workspace, as "
                        ".agnes/results/%s.parquet\n", handle, handle);
        return CLIENT_EXIT_USAGE;
    }
    if (!result_handle_valid(handle)) {
        fprintf(stderr, "agnes pull: '%s' is not a result handle (32 hex characters, as the query tool or POST "
                        "/api/results returned it)\n", handle);
        return CLIENT_EXIT_USAGE;
    }
    if ((rc = client_load(&c, NULL, &err)) || (rc = client_require_login(&c, &err)) ||
        (rc = workspace_open(&ws, workspace_dir, &err)))
        goto done;
    snprintf(dir, sizeof dir, "%s/results", ws.dir);
    snprintf(path, sizeof path, "%s/%s.%s", dir, handle, format);
    snprintf(part, sizeof part, "%s.part", path);
    if ((rc = util_mkdir_p(dir, 0755, &err)))
        goto done;
    if ((d.out = fopen(part, "wb")) == NULL) {
        rc = agnes_error_set(&err, AGNES_ERR_IO, "cannot write %s: %s", part, strerror(errno));
        goto done;
    }
    snprintf(url, sizeof url, "/api/results/%s?format=%s", handle, format);
    if ((d.curl = client_easy_open(&c, url, &headers)) == NULL) {
        rc = agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot start libcurl");
        goto done;
    }
    curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_TIME, 60L);
    CURLcode code = curl_easy_perform(d.curl);
    long status = 0;
    curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &status);
    bool flushed = fclose(d.out) == 0;
    d.out = NULL;
    if (code != CURLE_OK) {
        rc = agnes_error_set(&err, AGNES_ERR_NETWORK, "cannot download the result from %s: %s", c.server,
                             curl_easy_strerror(code));
    } else if (status != 200) {
        strbuf_append_char(&d.error_body, '\0');
        json_t *body = json_loads(d.error_body.data ? d.error_body.data : "", 0, NULL);
        const char *detail = json_string_value(json_object_get(body, "detail"));
        rc = agnes_error_set(&err, status == 401 || status == 403 ? AGNES_ERR_FORBIDDEN : AGNES_ERR_DB, "%s",
                             detail ? detail : "the server refused the download");
        json_decref(body);
    } else if (!flushed) {
        rc = agnes_error_set(&err, AGNES_ERR_IO, "cannot write %s (is the disk full?)", part);
    } else if (rename(part, path) != 0) {
        rc = agnes_error_set(&err, AGNES_ERR_IO, "cannot move %s into place: %s", part, strerror(errno));
    }
done:
    if (d.out != NULL)
        fclose(d.out);
    if (rc != AGNES_OK && part[0])
        unlink(part);
    if (d.curl != NULL)
        curl_easy_cleanup(d.curl);
    curl_slist_free_all(headers);
    strbuf_free(&d.error_body);
    workspace_close(&ws);
    if (rc != AGNES_OK)
        return client_fail("pull", &err);
    if (json) {
        json_t *summary = json_pack("{s:s, s:s, s:s, s:I}", "result", handle, "path", path, "format", format, "bytes",
                                    (json_int_t)d.bytes);
        json_dumpf(summary, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(summary);
    } else if (!quiet) {
        printf("Result %s: %.1f MB in %s\n", handle, (double)d.bytes / 1e6, path);
    }
    return 0;
}
