#include "sync/slice_download.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

enum transfer_state { WAITING, RUNNING, DONE };

typedef struct transfer {
    enum transfer_state state;
    int attempts;
    double not_before_ms; /* backoff: not restarted before this monotonic time */
    CURL *curl;
    FILE *file;
    struct curl_slist *headers;
    outbound_request request;
    char curl_message[CURL_ERROR_SIZE];
} transfer;

typedef struct download {
    slice *slices;
    size_t count;
    transfer *transfers;
    slice_credentials *creds;
    const slice_download_options *options;
    CURLM *multi;
    size_t running;
    bool need_refresh; /* a slice saw expired credentials: settle, refresh, go on */
    int refreshes;
} download;

static size_t write_slice(char *data, size_t size, size_t count, void *userdata)
{
    FILE *file = userdata;
    return fwrite(data, size, count, file) * size;
}

static int stop_on_cancel(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    const atomic_bool *cancel = data;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return cancel != NULL && atomic_load(cancel) ? 1 : 0;
}

static void end_transfer(download *d, transfer *t)
{
    if (t->curl != NULL) {
        curl_multi_remove_handle(d->multi, t->curl);
        curl_easy_cleanup(t->curl);
        t->curl = NULL;
    }
    if (t->file != NULL)
        fclose(t->file);
    t->file = NULL;
    curl_slist_free_all(t->headers);
    t->headers = NULL;
}

static int start_transfer(download *d, size_t i, agnes_error *err)
{
    transfer *t = &d->transfers[i];
    slice *s = &d->slices[i];
    const slice_credentials *creds = d->creds;
    t->file = fopen(s->path, "wb");
    if (t->file == NULL)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", s->path, strerror(errno));
    t->curl = curl_easy_init();
    if (t->curl == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start an HTTP client");
    CURL *c = t->curl;
    outbound_apply(d->options->net, c, &t->request);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL); /* the bytes as stored: DuckDB gunzips */
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_slice);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t->file);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->curl_message);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)d->options->stall_seconds);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, stop_on_cancel);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)d->options->cancel);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (void *)(uintptr_t)i);
    char header[4200];
    if (creds->auth == SLICE_AUTH_AWS_SIGV4) {
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, creds->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERPWD, creds->aws_user);
        /* S3 wants the payload hash as a header; a GET has no payload */
        t->headers = curl_slist_append(t->headers,
                                       "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        if (creds->aws_session_token[0] != '\0') {
            snprintf(header, sizeof header, "x-amz-security-token: %s", creds->aws_session_token);
            t->headers = curl_slist_append(t->headers, header);
        }
    } else if (creds->auth == SLICE_AUTH_BEARER) {
        snprintf(header, sizeof header, "Authorization: Bearer %s", creds->bearer);
        t->headers = curl_slist_append(t->headers, header);
    }
    explicit_bzero(header, sizeof header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->headers);
    if (curl_multi_add_handle(d->multi, c) != CURLM_OK)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start a download");
    t->state = RUNNING;
    t->attempts++;
    t->curl_message[0] = '\0';
    d->running++;
    return AGNES_OK;
}

/* The first bytes a failed slice wrote (an S3/GCS/Azure error document). */
static void error_excerpt(const char *path, char *out, size_t out_size)
{
    char raw[400];
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        n = fread(raw, 1, sizeof raw - 1, f);
        fclose(f);
    }
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < out_size; i++)
        out[k++] = raw[i] >= 32 && raw[i] < 127 ? raw[i] : ' ';
    out[k] = '\0';
}

static bool credentials_expired(long status, const char *excerpt)
{
    return status == 401 || status == 403 ||
           (status == 400 && (strstr(excerpt, "ExpiredToken") != NULL || strstr(excerpt, "TokenRefreshRequired")));
}

/* One finished transfer: done, queued again, or the whole download fails. */
static int settle(download *d, size_t i, CURLcode code, agnes_error *err)
{
    transfer *t = &d->transfers[i];
    slice *s = &d->slices[i];
    long status = 0;
    curl_off_t received = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->curl, CURLINFO_SIZE_DOWNLOAD_T, &received);
    char problem[600];
    outbound_describe_failure(&t->request, code, t->curl_message, problem, sizeof problem);
    bool blocked = t->request.blocked[0] != '\0';
    bool file_ok = t->file != NULL && fflush(t->file) == 0 && !ferror(t->file);
    end_transfer(d, t);
    d->running--;
    t->state = WAITING;
    if (code == CURLE_ABORTED_BY_CALLBACK)
        return agnes_error_set(err, AGNES_ERR_NETWORK, "the sync was stopped");
    if (code == CURLE_WRITE_ERROR || (code == CURLE_OK && !file_ok))
        return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s (disk full?)", s->path);
    if (code == CURLE_OK && status >= 200 && status < 300) {
        t->state = DONE;
        s->bytes = (long long)received;
        return AGNES_OK;
    }
    char excerpt[300] = "";
    if (code == CURLE_OK)
        error_excerpt(s->path, excerpt, sizeof excerpt);
    if (code == CURLE_OK && credentials_expired(status, excerpt)) {
        if (d->options->refresh == NULL || d->refreshes >= d->options->max_refreshes)
            return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                   "the file storage refused slice %zu of %zu with %ld even with fresh credentials (%s)",
                                   i + 1, d->count, status, excerpt);
        d->need_refresh = true;
        t->attempts--; /* not the slice's fault */
        return AGNES_OK;
    }
    bool transient = !blocked && (code != CURLE_OK || status == 429 || (status >= 500 && status != 501));
    if (!transient || t->attempts >= d->options->attempts) {
        if (code != CURLE_OK)
            return agnes_error_set(err, AGNES_ERR_NETWORK, "slice %zu of %zu could not be downloaded after %d tries: %s",
                                   i + 1, d->count, t->attempts, problem);
        return agnes_error_set(err, AGNES_ERR_NETWORK,
                               "the file storage answered %ld for slice %zu of %zu (after %d tries): %s", status, i + 1,
                               d->count, t->attempts, excerpt);
    }
    double wait_ms = 1000.0 * (double)(1 << (t->attempts - 1));
    t->not_before_ms = util_monotonic_ms() + (wait_ms > 30000 ? 30000 : wait_ms);
    log_warn("msg=\"slice download failed, retrying\" slice=%zu status=%ld attempt=%d detail=\"%s\"", i + 1, status,
             t->attempts, code != CURLE_OK ? problem : excerpt);
    return AGNES_OK;
}

/* Start what may start now; *all_done when nothing is left. */
static int fill(download *d, bool *all_done, double *next_start_ms, agnes_error *err)
{
    double now = util_monotonic_ms();
    *all_done = true;
    *next_start_ms = 0;
    for (size_t i = 0; i < d->count; i++) {
        transfer *t = &d->transfers[i];
        if (t->state != DONE)
            *all_done = false;
        if (t->state != WAITING || d->need_refresh || d->running >= (size_t)d->options->parallel)
            continue;
        if (t->not_before_ms > now) {
            if (*next_start_ms == 0 || t->not_before_ms < *next_start_ms)
                *next_start_ms = t->not_before_ms;
            continue;
        }
        if (start_transfer(d, i, err))
            return err->code;
    }
    return AGNES_OK;
}

int slice_download_all(slice *slices, size_t count, slice_credentials *creds, const slice_download_options *options,
                       agnes_error *err)
{
    download d = {.slices = slices, .count = count, .creds = creds, .options = options};
    int rc = AGNES_OK;
    if (count == 0)
        return AGNES_OK;
    d.transfers = calloc(count, sizeof *d.transfers);
    d.multi = curl_multi_init();
    if (d.transfers == NULL || d.multi == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        bool all_done;
        double next_start_ms;
        if ((rc = fill(&d, &all_done, &next_start_ms, err)) != AGNES_OK)
            goto done;
        if (all_done)
            break;
        if (d.need_refresh && d.running == 0) {
            d.refreshes++;
            log_info("msg=\"file storage credentials expired, asking Keboola for new ones\" renewal=%d", d.refreshes);
            if ((rc = options->refresh(options->refresh_context, slices, count, creds, err)) != AGNES_OK)
                goto done;
            d.need_refresh = false;
            continue;
        }
        if (options->cancel != NULL && atomic_load(options->cancel)) {
            rc = agnes_error_set(err, AGNES_ERR_NETWORK, "the sync was stopped");
            goto done;
        }
        int still_running = 0;
        if (curl_multi_perform(d.multi, &still_running) != CURLM_OK) {
            rc = agnes_error_set(err, AGNES_ERR_NETWORK, "the download loop failed");
            goto done;
        }
        CURLMsg *message;
        int queued;
        while ((message = curl_multi_info_read(d.multi, &queued)) != NULL) {
            if (message->msg != CURLMSG_DONE)
                continue;
            void *private_data = NULL;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &private_data);
            if ((rc = settle(&d, (size_t)(uintptr_t)private_data, message->data.result, err)) != AGNES_OK)
                goto done;
        }
        int timeout_ms = 200;
        if (d.running == 0 && next_start_ms > 0) {
            double wait = next_start_ms - util_monotonic_ms();
            timeout_ms = wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
        }
        curl_multi_poll(d.multi, NULL, 0, timeout_ms, NULL);
    }
done:
    if (d.transfers != NULL)
        for (size_t i = 0; i < count; i++)
            end_transfer(&d, &d.transfers[i]);
    if (d.multi != NULL)
        curl_multi_cleanup(d.multi);
    free(d.transfers);
    return rc;
}

void slice_free_urls(slice *slices, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(slices[i].url);
        slices[i].url = NULL;
    }
}
