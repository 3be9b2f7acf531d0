/*
 * sessions.c - POST /api/upload/sessions (SPEC §10): what `agnes push`
 * sends at the end of an agent's session - its logs and notes - kept per
 * user in ${DATA_DIR}/user_sessions/<user_id>/<UTC stamp>-<name>, 0600.
 *
 * One file per request (multipart part "file", or the raw body with
 * ?name=), at most upload.max_session_bytes; a user's folder keeps at
 * most SESSION_FILES_KEPT files, the oldest going first, so a looping
 * agent cannot fill the disk.
 */
#include "http/sessions.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "http/auth.h"
#include "http/upload_body.h"

#define SESSION_FILES_KEPT 200

/* A safe file name from the client's: [A-Za-z0-9._-], no leading dot. */
static void clean_name(const char *given, char *out, size_t size)
{
    size_t n = 0;
    const char *base = given ? strrchr(given, '/') : NULL;
    given = base ? base + 1 : given;
    for (const char *p = given ? given : ""; *p != '\0' && n + 1 < size && n < 100; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
                  *p == '_' || *p == '-';
        if (n == 0 && *p == '.')
            continue;
        out[n++] = ok ? *p : '_';
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, size, "session.log");
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Keep the newest SESSION_FILES_KEPT files (names start with a UTC stamp). */
static void trim_folder(const char *dir)
{
    struct dirent **entries = NULL;
    int count = scandir(dir, &entries, NULL, by_name), files = 0;
    for (int i = count - 1; i >= 0; i--) {
        if (entries[i]->d_name[0] != '.' && ++files > SESSION_FILES_KEPT) {
            char path[AGNES_PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", dir, entries[i]->d_name);
            unlink(path);
        }
        free(entries[i]);
    }
    free(entries);
}

void sessions_handle_upload(http_context *ctx, const http_request *req, http_response *resp)
{
    const http_upload *upload = req->upload;
    char sessions[AGNES_PATH_MAX], dir[AGNES_PATH_MAX + 80], name[128], stamp[40], path[AGNES_PATH_MAX + 300];
    agnes_error err;
    if (upload->multipart && !upload->has_file) {
        http_respond_error(resp, 422, "Send the log as a multipart part named \"file\", or as the raw body with ?name=.",
                           NULL);
        return;
    }
    const char *given = upload->name[0] ? upload->name : http_request_query(req, "name");
    clean_name(given && given[0] ? given : upload->filename, name, sizeof name);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
    if (paths_data_file(&ctx->runtime->paths, DATA_SESSIONS_DIR, sessions, sizeof sessions, &err) ||
        util_format(dir, sizeof dir, &err, "%s/%s", sessions, req->identity->user_id) ||
        util_mkdir_p(dir, 0700, &err)) {
        http_respond_internal(resp, req, &err);
        return;
    }
    /* Copied (the spool file goes with the request) under a name nobody
     * has: uploads of one name in the same millisecond get -2, -3, ...,
     * never one over the other. */
    bool taken = true;
    int rc = AGNES_OK;
    for (int n = 1; taken && n <= 100; n++) {
        char suffix[16] = "";
        if (n > 1)
            snprintf(suffix, sizeof suffix, "-%d", n);
        rc = util_format(path, sizeof path, &err, "%s/%s.%03ldZ%s-%s", dir, stamp, now.tv_nsec / 1000000, suffix, name);
        if (rc == AGNES_OK)
            rc = util_copy_file_new(upload->path, path, &taken, &err);
        else
            taken = false;
    }
    if (rc != AGNES_OK || chmod(path, 0600) != 0) {
        http_respond_internal(resp, req, &err);
        return;
    }
    trim_folder(dir);
    const char *stored = strrchr(path, '/') + 1;
    http_respond_json(resp, 201, json_pack("{s:s, s:s, s:I}", "status", "stored", "file", stored, "size_bytes",
                                           (json_int_t)upload->size));
}
