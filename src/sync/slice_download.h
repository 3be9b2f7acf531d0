/*
 * slice_download.h - fetch the files of one cloud export in parallel.
 *
 * A Keboola export lands in the project's file storage as one file or as
 * slices listed in a manifest; each cloud has its own way to be read
 * (Keboola's Storage API documentation, "Files", and its official clients):
 *
 *   aws    https://<bucket>.s3.<region>.amazonaws.com/<key>, signed with
 *          AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4) from the STS
 *          credentials the file detail carries; the session token goes in
 *          x-amz-security-token
 *   gcp    https://storage.googleapis.com/storage/v1/b/<bucket>/o/<key>?alt=media
 *          with "Authorization: Bearer <access_token>"
 *   azure  https://<account>.blob.core.windows.net/<container>/<blob>?<SAS>
 *          (the SAS is part of the URL)
 *   plain  an already signed URL (a single-file export)
 *
 * Each slice is written as it arrives to its own file (still compressed:
 * DuckDB reads gzip itself, several files at once), so memory stays flat
 * whatever the export's size.  Up to `parallel` transfers run at once on
 * one curl multi handle.  A slice that fails transiently (no connection,
 * 429, 5xx, or nothing received for stall_seconds) is fetched again, up to
 * `attempts` times with backoff; one answered 401/403 (or S3's
 * ExpiredToken) means the signature or credentials expired - signed URLs
 * live an hour - so `refresh` is asked for new ones once the running
 * transfers settle, and the remaining slices continue with them.
 */
#ifndef AGNES_SYNC_SLICE_DOWNLOAD_H
#define AGNES_SYNC_SLICE_DOWNLOAD_H

#include <stdatomic.h>
#include <stddef.h>

#include "core/error.h"
#include "core/outbound.h"

typedef enum slice_auth { SLICE_AUTH_NONE, SLICE_AUTH_AWS_SIGV4, SLICE_AUTH_BEARER } slice_auth;

typedef struct slice_credentials {
    slice_auth auth;
    char aws_sigv4[128];          /* "aws:amz:<region>:s3" */
    char aws_user[1024];          /* "<AccessKeyId>:<SecretAccessKey>" */
    char aws_session_token[4096]; /* "" when not STS */
    char bearer[4096];            /* GCS access token */
} slice_credentials;

typedef struct slice {
    char *url;                /* https URL (malloc'd; replaced by refresh) */
    char path[AGNES_PATH_MAX]; /* where its bytes go */
    long long bytes;          /* received, when done */
} slice;

/* Re-issue credentials and the slices' URLs after they expired (e.g. read
 * the file detail again).  AGNES_OK when creds and every slices[i].url are
 * fresh. */
typedef int (*slice_refresh_fn)(void *context, slice *slices, size_t count, slice_credentials *creds,
                                agnes_error *err);

typedef struct slice_download_options {
    const outbound *net;
    int parallel;      /* transfers at once, >= 1 */
    int attempts;      /* tries per slice for transient failures, >= 1 */
    int stall_seconds; /* receiving nothing this long restarts the slice */
    int max_refreshes; /* credential renewals per download */
    const atomic_bool *cancel;
    slice_refresh_fn refresh; /* NULL: an expired signature fails the download */
    void *refresh_context;
} slice_download_options;

/* Download every slice to its path.  AGNES_ERR_NETWORK when one still
 * fails after its attempts (the message names the slice and the answer),
 * AGNES_ERR_FORBIDDEN when credentials stay rejected, AGNES_ERR_IO when a
 * file cannot be written. */
int slice_download_all(slice *slices, size_t count, slice_credentials *creds, const slice_download_options *options,
                       agnes_error *err);

/* Free the slices' URLs (not the array). */
void slice_free_urls(slice *slices, size_t count);

#endif
