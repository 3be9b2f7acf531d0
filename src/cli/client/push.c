/*
 * `agnes push [--quiet] [--workspace DIR] [FILE ...]` - send an agent
 * session's logs and notes to the server (POST /api/upload/sessions).
 *
 * What goes: the files named; the transcript of a Claude Code session when
 * the SessionEnd hook's JSON ({"transcript_path": ...}) arrives on stdin;
 * and every file in DIR/.agnes/outbox/, moved to outbox/sent/ once stored.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "cli/client/workspace.h"
#include "core/util.h"

static size_t discard(char *data, size_t size, size_t count, void *userdata)
{
    (void)data;
    (void)userdata;
    return size * count;
}

static int upload_file(const client *c, const char *path, agnes_error *err)
{
    const char *slash = strrchr(path, '/');
    struct curl_slist *headers = NULL;
    CURL *curl = client_easy_open(c, "/api/upload/sessions", &headers);
    if (curl == NULL) {
        curl_slist_free_all(headers);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start libcurl");
    }
    curl_mime *mime = curl_mime_init(curl);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filedata(part, path);
    curl_mime_filename(part, slash ? slash + 1 : path);
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    int rc = AGNES_OK;
    if (code != CURLE_OK && client_unreachable(curl, code))
        rc = agnes_error_set(err, AGNES_ERR_NETWORK, "cannot reach %s: %s", c->server, curl_easy_strerror(code));
    else if (code != CURLE_OK)
        rc = agnes_error_set(err, AGNES_ERR_IO, "sending %s to %s failed: %s (run `agnes push` again)", path,
                             c->server, curl_easy_strerror(code));
    else if (status == 401 || status == 403)
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN, "the server refused the token: run `agnes login`");
    else if (status == 413)
        rc = agnes_error_set(err, CLIENT_ERR_SERVER, "%s is larger than the server accepts (upload.max_session_bytes)", path);
    else if (status != 201)
        rc = agnes_error_set(err, CLIENT_ERR_SERVER, "the server answered %ld for %s", status, path);
    curl_slist_free_all(headers);
    curl_mime_free(mime);
    curl_easy_cleanup(curl);
    return rc;
}

/* The transcript path from a Claude Code hook's JSON on stdin, if any. */
static bool hook_transcript(char *out, size_t size)
{
    if (isatty(STDIN_FILENO))
        return false;
    json_t *input = json_loadf(stdin, JSON_DISABLE_EOF_CHECK, NULL);
    const char *path = json_string_value(json_object_get(input, "transcript_path"));
    bool found = path != NULL && util_file_exists(path);
    if (found)
        snprintf(out, size, "%s", path);
    json_decref(input);
    return found;
}

int command_push(int argc, char **argv)
{
    bool quiet = false;
    const char *workspace_dir = NULL;
    json_t *files = json_array();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
            quiet = true;
        else if (strcmp(argv[i], "--workspace") == 0 && i + 1 < argc)
            workspace_dir = argv[++i];
        else if (argv[i][0] != '-')
            json_array_append_new(files, json_string(argv[i]));
        else {
            fprintf(stderr, "usage: agnes push [--quiet] [--workspace DIR] [FILE ...]\n"
                            "  Send session logs and notes to the server: the FILEs, a Claude Code hook's transcript\n"
                            "  (its JSON on stdin), and DIR/.agnes/outbox/* (moved to outbox/sent/ once stored).\n");
            json_decref(files);
            return strcmp(argv[i], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
        }
    }
    client c;
    workspace ws = {0};
    agnes_error err;
    char transcript[AGNES_PATH_MAX], outbox[AGNES_PATH_MAX + 32], sent[AGNES_PATH_MAX + 64];
    int rc = client_load(&c, NULL, &err);
    if (rc == AGNES_OK)
        rc = client_require_login(&c, &err);
    if (rc == AGNES_OK)
        rc = workspace_open(&ws, workspace_dir, &err);
    if (rc != AGNES_OK) {
        json_decref(files);
        return client_fail("push", &err);
    }
    if (hook_transcript(transcript, sizeof transcript))
        json_array_append_new(files, json_string(transcript));
    snprintf(outbox, sizeof outbox, "%s/outbox", ws.state_dir);
    snprintf(sent, sizeof sent, "%s/sent", outbox);
    json_t *queued = json_array();
    DIR *d = opendir(outbox);
    struct dirent *entry;
    while (d != NULL && (entry = readdir(d)) != NULL) {
        char path[AGNES_PATH_MAX + 320];
        snprintf(path, sizeof path, "%s/%s", outbox, entry->d_name);
        if (entry->d_name[0] != '.' && !util_is_directory(path))
            json_array_append_new(queued, json_string(path));
    }
    if (d != NULL)
        closedir(d);
    size_t pushed = 0, i;
    json_t *file;
    json_array_foreach(files, i, file) {
        if ((rc = upload_file(&c, json_string_value(file), &err)) != AGNES_OK)
            break;
        pushed++;
    }
    json_array_foreach(queued, i, file) {
        if (rc != AGNES_OK || (rc = upload_file(&c, json_string_value(file), &err)) != AGNES_OK)
            break;
        char target[AGNES_PATH_MAX + 400];
        snprintf(target, sizeof target, "%s/%s", sent, strrchr(json_string_value(file), '/') + 1);
        if (util_mkdir_p(sent, 0755, &err) == AGNES_OK)
            rename(json_string_value(file), target);
        pushed++;
    }
    json_decref(files);
    json_decref(queued);
    workspace_close(&ws);
    if (rc != AGNES_OK)
        return client_fail("push", &err);
    if (!quiet)
        printf("Pushed %zu file%s to %s.\n", pushed, pushed == 1 ? "" : "s", c.server);
    return 0;
}
