/*
 * keboola_export.c - one table export, from the job to local files.
 *
 * Storage facts (Keboola's Storage API documentation and its official
 * clients, see keboola_api.h): POST tables/{id}/export-async answers 202
 * with a job; GET jobs/{id} moves waiting -> processing -> success | error;
 * a successful tableExport's results.file.id names the file, and
 * GET files/{id}?federationToken=1 adds the cloud credentials to read it.
 * A sliced file's url is a signed manifest {"entries": [{"url": ...}]}
 * whose entries are s3://, gs:// or azure:// addresses of header-less
 * slices; the clients do not trust the manifest's order and sort the
 * slices by the numbers in their names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "sync/keboola.h"
#include "sync/slice_download.h"

#define MANIFEST_MAX_BYTES (64u * 1024 * 1024)
#define CREDENTIAL_RENEWALS 3
#define SLICE_ATTEMPTS 4

typedef struct file_plan {
    slice_credentials creds;
    bool sliced;
    char file_type[16];
    size_t count;
    char **urls;
} file_plan;

static void plan_free(file_plan *plan)
{
    for (size_t i = 0; i < plan->count; i++)
        free(plan->urls[i]);
    free(plan->urls);
    explicit_bzero(&plan->creds, sizeof plan->creds);
    memset(plan, 0, sizeof *plan);
}

/* Percent-encode a key for a URL path; '/' kept unless encode_slash. */
static void append_encoded(strbuf *out, const char *key, bool encode_slash)
{
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~' || (*p == '/' && !encode_slash))
            strbuf_append_char(out, (char)*p);
        else
            strbuf_appendf(out, "%%%02X", *p);
    }
}

static bool isdigit_c(char c)
{
    return c >= '0' && c <= '9';
}

/* Natural order: digit runs compare as numbers ("part_10" after "part_9"). */
static int natural_compare(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    while (*x && *y) {
        if (isdigit_c(*x) && isdigit_c(*y)) {
            while (*x == '0')
                x++;
            while (*y == '0')
                y++;
            size_t lx = 0, ly = 0;
            while (isdigit_c(x[lx]))
                lx++;
            while (isdigit_c(y[ly]))
                ly++;
            if (lx != ly)
                return lx < ly ? -1 : 1;
            int c = strncmp(x, y, lx);
            if (c != 0)
                return c;
            x += lx;
            y += ly;
        } else {
            if (*x != *y)
                return (unsigned char)*x < (unsigned char)*y ? -1 : 1;
            x++;
            y++;
        }
    }
    return *x ? 1 : *y ? -1 : 0;
}

/* "scheme://host/rest": host and rest (without the leading '/'). */
static bool split_address(const char *address, const char *scheme, char *host, size_t host_size, const char **rest)
{
    size_t scheme_len = strlen(scheme);
    if (strncmp(address, scheme, scheme_len) != 0)
        return false;
    const char *start = address + scheme_len;
    const char *slash = strchr(start, '/');
    if (slash == NULL || slash == start || (size_t)(slash - start) >= host_size || slash[1] == '\0')
        return false;
    snprintf(host, host_size, "%.*s", (int)(slash - start), start);
    *rest = slash + 1;
    return true;
}

/* The https URL of one manifest entry, checked against the file's own
 * storage location (a slice elsewhere is refused, not fetched). */
static int entry_url(const json_t *detail, const char *provider, const char *entry, const char *sas, strbuf *url,
                     agnes_error *err)
{
    char host[256];
    const char *rest = NULL;
    if (strcmp(provider, "aws") == 0) {
        const char *bucket = json_string_value(json_object_get(json_object_get(detail, "s3Path"), "bucket"));
        const char *region = json_string_value(json_object_get(detail, "region"));
        if (!split_address(entry, "s3://", host, sizeof host, &rest) || bucket == NULL || strcmp(host, bucket) != 0)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the export's manifest lists '%.200s', which is not in the file's bucket '%s'",
                                   entry, bucket ? bucket : "?");
        if (region == NULL || region[0] == '\0')
            return agnes_error_set(err, AGNES_ERR_INVALID, "the file detail has no region to reach its S3 bucket");
        strbuf_appendf(url, "https://%s.s3.%s.amazonaws.com/", bucket, region);
        append_encoded(url, rest, false);
    } else if (strcmp(provider, "gcp") == 0) {
        const char *bucket = json_string_value(json_object_get(json_object_get(detail, "gcsPath"), "bucket"));
        if (!split_address(entry, "gs://", host, sizeof host, &rest) || bucket == NULL || strcmp(host, bucket) != 0)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the export's manifest lists '%.200s', which is not in the file's bucket '%s'",
                                   entry, bucket ? bucket : "?");
        strbuf_appendf(url, "https://storage.googleapis.com/storage/v1/b/%s/o/", bucket);
        append_encoded(url, rest, true);
        strbuf_append_str(url, "?alt=media");
    } else { /* azure */
        const char *container = json_string_value(json_object_get(json_object_get(detail, "absPath"), "container"));
        size_t container_len = container ? strlen(container) : 0;
        if (!split_address(entry, "azure://", host, sizeof host, &rest) || container == NULL ||
            strncmp(rest, container, container_len) != 0 || rest[container_len] != '/')
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the export's manifest lists '%.200s', which is not in the file's container '%s'",
                                   entry, container ? container : "?");
        strbuf_appendf(url, "https://%s/", host);
        append_encoded(url, rest, false);
        strbuf_appendf(url, "?%s", sas);
    }
    return strbuf_failed(url) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

/* The SharedAccessSignature of an Azure connection string
 * "BlobEndpoint=https://...;SharedAccessSignature=sv=...&sig=...". */
static bool azure_sas(const char *connection, char *out, size_t out_size)
{
    const char *at = connection ? strstr(connection, "SharedAccessSignature=") : NULL;
    if (at == NULL)
        return false;
    at += strlen("SharedAccessSignature=");
    size_t len = strcspn(at, ";");
    if (len == 0 || len >= out_size)
        return false;
    snprintf(out, out_size, "%.*s", (int)len, at);
    return true;
}

static int read_credentials(const json_t *detail, const char *provider, file_plan *plan, char *sas, size_t sas_size,
                            agnes_error *err)
{
    slice_credentials *creds = &plan->creds;
    if (!plan->sliced) { /* the url is signed: nothing else to send */
        creds->auth = SLICE_AUTH_NONE;
        return AGNES_OK;
    }
    if (strcmp(provider, "aws") == 0) {
        const json_t *c = json_object_get(detail, "credentials");
        const char *key = json_string_value(json_object_get(c, "AccessKeyId"));
        const char *secret = json_string_value(json_object_get(c, "SecretAccessKey"));
        const char *session = json_string_value(json_object_get(c, "SessionToken"));
        const char *region = json_string_value(json_object_get(detail, "region"));
        if (key == NULL || secret == NULL || region == NULL)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the file detail has no S3 credentials (asked with federationToken=1); the token "
                                   "may lack access to file uploads (canReadAllFileUploads)");
        creds->auth = SLICE_AUTH_AWS_SIGV4;
        snprintf(creds->aws_sigv4, sizeof creds->aws_sigv4, "aws:amz:%s:s3", region);
        snprintf(creds->aws_user, sizeof creds->aws_user, "%s:%s", key, secret);
        snprintf(creds->aws_session_token, sizeof creds->aws_session_token, "%s", session ? session : "");
    } else if (strcmp(provider, "gcp") == 0) {
        const char *token =
            json_string_value(json_object_get(json_object_get(detail, "gcsCredentials"), "access_token"));
        if (token == NULL)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the file detail has no GCS credentials (asked with federationToken=1)");
        creds->auth = SLICE_AUTH_BEARER;
        snprintf(creds->bearer, sizeof creds->bearer, "%s", token);
    } else {
        const char *connection =
            json_string_value(json_object_get(json_object_get(detail, "absCredentials"), "SASConnectionString"));
        if (!azure_sas(connection, sas, sas_size))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the file detail has no Azure SAS connection string (asked with federationToken=1)");
        creds->auth = SLICE_AUTH_NONE; /* the SAS travels in each URL */
    }
    return AGNES_OK;
}

/* Manifest entries as https URLs, in natural order. */
static int plan_slices(keboola_client *kc, const json_t *detail, const char *provider, const char *sas, file_plan *plan,
                       agnes_error *err)
{
    char *text = NULL;
    size_t len = 0;
    json_error_t parse_error;
    const char *manifest_url = json_string_value(json_object_get(detail, "url"));
    if (manifest_url == NULL)
        return agnes_error_set(err, AGNES_ERR_INVALID, "the file detail has no url");
    int rc = keboola_get_signed(kc, manifest_url, MANIFEST_MAX_BYTES, &text, &len, err);
    if (rc != AGNES_OK)
        return rc;
    json_t *manifest = json_loadb(text, len, 0, &parse_error);
    free(text);
    const json_t *entries = json_object_get(manifest, "entries");
    if (!json_is_array(entries)) {
        json_decref(manifest);
        return agnes_error_set(err, AGNES_ERR_INVALID, "the export's manifest is not {\"entries\": [...]}");
    }
    size_t count = json_array_size(entries);
    const char **addresses = calloc(count + 1, sizeof *addresses);
    plan->urls = calloc(count + 1, sizeof *plan->urls);
    if (addresses == NULL || plan->urls == NULL) {
        free(addresses);
        json_decref(manifest);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count && rc == AGNES_OK; i++) {
        addresses[i] = json_string_value(json_object_get(json_array_get(entries, i), "url"));
        if (addresses[i] == NULL)
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "entry %zu of the export's manifest has no url", i + 1);
    }
    if (rc == AGNES_OK)
        qsort(addresses, count, sizeof *addresses, natural_compare);
    for (size_t i = 0; i < count && rc == AGNES_OK; i++) {
        strbuf url;
        strbuf_init(&url);
        rc = entry_url(detail, provider, addresses[i], sas, &url, err);
        if (rc == AGNES_OK) {
            plan->urls[i] = url.data;
            plan->count++;
        } else {
            strbuf_free(&url);
        }
    }
    free(addresses);
    json_decref(manifest);
    return rc;
}

static int read_file_plan(keboola_client *kc, const char *file_id, file_plan *plan, agnes_error *err)
{
    char path[128], sas[4096] = "";
    json_t *detail = NULL;
    memset(plan, 0, sizeof *plan);
    snprintf(path, sizeof path, "files/%s?federationToken=1", file_id);
    int rc = keboola_get(kc, path, &detail, err);
    if (rc != AGNES_OK)
        return agnes_error_wrap(err, "reading the export's file %s", file_id);
    const char *provider = json_string_value(json_object_get(detail, "provider"));
    const char *type = json_string_value(json_object_get(detail, "fileType"));
    const char *name = json_string_value(json_object_get(detail, "name"));
    plan->sliced = json_is_true(json_object_get(detail, "isSliced"));
    snprintf(plan->file_type, sizeof plan->file_type, "%s",
             (type != NULL && strcmp(type, "parquet") == 0) || (name != NULL && strstr(name, ".parquet")) ? "parquet"
                                                                                                          : "csv");
    if (provider == NULL || (strcmp(provider, "aws") != 0 && strcmp(provider, "gcp") != 0 && strcmp(provider, "azure")))
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "the export's file is on provider '%s'; known: aws, gcp, azure",
                             provider ? provider : "?");
    if (rc == AGNES_OK)
        rc = read_credentials(detail, provider, plan, sas, sizeof sas, err);
    if (rc == AGNES_OK && plan->sliced) {
        rc = plan_slices(kc, detail, provider, sas, plan, err);
    } else if (rc == AGNES_OK) {
        const char *url = json_string_value(json_object_get(detail, "url"));
        plan->urls = calloc(1, sizeof *plan->urls);
        if (url == NULL || strncmp(url, "https://", 8) != 0)
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "the export's file has no https url");
        else if (plan->urls == NULL || (plan->urls[0] = util_strdup(url)) == NULL)
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        else
            plan->count = 1;
    }
    explicit_bzero(sas, sizeof sas);
    json_decref(detail);
    if (rc != AGNES_OK)
        plan_free(plan);
    return rc;
}

typedef struct refresh_context {
    keboola_client *kc;
    const char *file_id;
} refresh_context;

/* Signed URLs and STS credentials expire (an hour): read the file detail
 * again and continue with what it says now. */
static int refresh_plan(void *context, slice *slices, size_t count, slice_credentials *creds, agnes_error *err)
{
    refresh_context *r = context;
    file_plan plan;
    int rc = read_file_plan(r->kc, r->file_id, &plan, err);
    if (rc != AGNES_OK)
        return rc;
    if (plan.count != count) {
        plan_free(&plan);
        return agnes_error_set(err, AGNES_ERR_INVALID, "the export's file changed while it was downloaded");
    }
    for (size_t i = 0; i < count; i++) {
        free(slices[i].url);
        slices[i].url = plan.urls[i];
        plan.urls[i] = NULL;
    }
    *creds = plan.creds;
    plan_free(&plan);
    return AGNES_OK;
}

/* gzip starts with 1f 8b: the name DuckDB reads it by says so. */
static bool is_gzip(const char *path)
{
    unsigned char magic[2] = {0, 0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(magic, 1, 2, f) : 0;
    if (f)
        fclose(f);
    return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

static int wait_for_job(keboola_client *kc, const json_t *job, int timeout_seconds, json_t **finished,
                        agnes_error *err)
{
    char id[64], path[96];
    keboola_id_text(json_object_get(job, "id"), id, sizeof id);
    if (id[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_INVALID, "Keboola accepted the export but returned no job id");
    snprintf(path, sizeof path, "jobs/%s", id);
    double deadline = util_monotonic_ms() + timeout_seconds * 1000.0, delay = 0.1;
    json_t *current = json_incref((json_t *)job);
    for (;;) {
        const char *status = json_string_value(json_object_get(current, "status"));
        if (status != NULL && strcmp(status, "success") == 0) {
            *finished = current;
            return AGNES_OK;
        }
        if (status != NULL && strcmp(status, "error") == 0) {
            const json_t *error = json_object_get(current, "error");
            const char *message = json_string_value(json_object_get(error, "message"));
            char code[96];
            keboola_id_text(json_object_get(error, "code"), code, sizeof code);
            if (message == NULL)
                message = json_string_value(error);
            agnes_error_set(err, AGNES_ERR_INVALID, "Keboola's export job %s failed: %s%s%s%s", id,
                            message ? message : "(no message)", code[0] ? " (" : "", code, code[0] ? ")" : "");
            keboola_redact(err->message, sizeof err->message, kc->token);
            json_decref(current);
            return err->code;
        }
        if (status != NULL && strcmp(status, "waiting") != 0 && strcmp(status, "processing") != 0) {
            json_decref(current);
            return agnes_error_set(err, AGNES_ERR_INVALID, "Keboola's export job %s is in an unknown state '%s'", id,
                                   status);
        }
        if (util_monotonic_ms() + delay * 1000.0 > deadline) {
            json_decref(current);
            return agnes_error_set(err, AGNES_ERR_TIMEOUT,
                                   "Keboola's export job %s did not finish within %d s (still %s); raise "
                                   "data_source.keboola.export_timeout_seconds (AGNES_KEBOOLA_EXPORT_TIMEOUT) or sync "
                                   "again later",
                                   id, timeout_seconds, status ? status : "unknown");
        }
        if (!keboola_pause(delay, kc->cancel)) {
            json_decref(current);
            return agnes_error_set(err, AGNES_ERR_NETWORK, "the sync was stopped");
        }
        delay = delay * 2 > 5 ? 5 : delay * 2; /* a quick export is seen at once, a long one polled gently */
        json_decref(current);
        current = NULL;
        if (keboola_get(kc, path, &current, err) != AGNES_OK)
            return agnes_error_wrap(err, "following export job %s", id);
    }
}

static int download(keboola_client *kc, const char *file_id, file_plan *plan, const keboola_export_options *options,
                    keboola_export *out, agnes_error *err)
{
    slice *slices = calloc(plan->count + 1, sizeof *slices);
    out->paths = calloc(plan->count + 1, sizeof *out->paths);
    if (slices == NULL || out->paths == NULL) {
        free(slices);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    const char *ext = strcmp(plan->file_type, "parquet") == 0 ? "parquet" : "csv";
    for (size_t i = 0; i < plan->count; i++) {
        slices[i].url = plan->urls[i];
        plan->urls[i] = NULL;
        snprintf(slices[i].path, sizeof slices[i].path, "%s/slice_%05zu.%s", options->dir, i, ext);
    }
    outbound net;
    int rc = outbound_init(&net, &kc->net.policy, err);
    if (rc == AGNES_OK) {
        refresh_context context = {.kc = kc, .file_id = file_id};
        slice_download_options download_options = {
            .net = &net, .parallel = options->parallel_downloads, .attempts = SLICE_ATTEMPTS,
            .stall_seconds = options->stall_seconds, .max_refreshes = CREDENTIAL_RENEWALS, .cancel = kc->cancel,
            .refresh = refresh_plan, .refresh_context = &context};
        rc = slice_download_all(slices, plan->count, &plan->creds, &download_options, err);
        outbound_free(&net);
    }
    for (size_t i = 0; i < plan->count; i++) { /* the files exist now (or are removed by the caller) */
        char final[AGNES_PATH_MAX + 8];
        snprintf(final, sizeof final, "%s", slices[i].path);
        if (rc == AGNES_OK && strcmp(ext, "csv") == 0 && is_gzip(slices[i].path)) {
            snprintf(final, sizeof final, "%s.gz", slices[i].path);
            if (rename(slices[i].path, final) != 0)
                rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s: %s", slices[i].path, strerror(errno));
        }
        out->paths[out->count] = util_strdup(final);
        if (out->paths[out->count] == NULL && rc == AGNES_OK)
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        if (out->paths[out->count] != NULL)
            out->count++;
    }
    slice_free_urls(slices, plan->count);
    free(slices);
    return rc;
}

int keboola_export_table(keboola_client *kc, const char *table_id, const json_t *params,
                         const keboola_export_options *options, keboola_export *out, agnes_error *err)
{
    json_t *body = json_deep_copy(params), *job = NULL, *finished = NULL;
    file_plan plan = {0};
    char path[700], file_id[64] = "";
    strbuf encoded;
    strbuf_init(&encoded);
    memset(out, 0, sizeof *out);
    if (body == NULL)
        body = json_object();
    const char *type = json_string_value(json_object_get(body, "fileType"));
    if (type == NULL)
        json_object_set_new(body, "fileType", json_string("csv"));
    if (type == NULL || strcmp(type, "csv") == 0)
        json_object_set_new(body, "gzip", json_true()); /* a fifth of the bytes to move */
    append_encoded(&encoded, table_id, true);
    snprintf(path, sizeof path, "tables/%s/export-async", encoded.data ? encoded.data : "");
    strbuf_free(&encoded);
    int rc = util_mkdir_p(options->dir, 0700, err);
    int64_t asked_at = util_unix_now();
    if (rc == AGNES_OK && (rc = keboola_post(kc, path, body, &job, err)) != AGNES_OK)
        agnes_error_wrap(err, "exporting %s", table_id);
    if (rc == AGNES_OK)
        rc = wait_for_job(kc, job, options->timeout_seconds, &finished, err);
    if (rc == AGNES_OK) {
        int64_t created = keboola_parse_time(json_string_value(json_object_get(finished, "createdTime")));
        out->started_at = created > 0 ? created : asked_at;
        const json_t *results = json_object_get(finished, "results");
        const json_t *file = json_object_get(json_object_get(results, "file"), "id");
        keboola_id_text(file ? file : json_object_get(results, "fileId"), file_id, sizeof file_id);
        if (file_id[0] == '\0')
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Keboola's export of %s finished without a file id", table_id);
        out->file_id = atoll(file_id);
    }
    if (rc == AGNES_OK)
        rc = read_file_plan(kc, file_id, &plan, err);
    if (rc == AGNES_OK) {
        snprintf(out->file_type, sizeof out->file_type, "%s", plan.file_type);
        out->sliced = plan.sliced;
        rc = download(kc, file_id, &plan, options, out, err);
        if (rc != AGNES_OK)
            agnes_error_wrap(err, "downloading the export of %s", table_id);
    }
    plan_free(&plan);
    json_decref(body);
    json_decref(job);
    json_decref(finished);
    if (rc != AGNES_OK)
        keboola_export_free(out);
    return rc;
}

void keboola_export_free(keboola_export *export)
{
    for (size_t i = 0; i < export->count; i++) {
        if (export->paths[i] != NULL)
            unlink(export->paths[i]);
        free(export->paths[i]);
    }
    free(export->paths);
    export->paths = NULL;
    export->count = 0;
}
