/*
 * `agnes pull [--quiet] [--json] [--workspace DIR] [TABLE ...]` - mirror the
 * tables the analyst may read into the workspace (workspace.h).
 *
 * The manifest's content hashes decide: a table is downloaded only when its
 * hash differs from the workspace's copy.  Several files move at once (curl
 * multi); each goes to data/.<id>.parquet.part, resumes with Range +
 * If-Range after an interrupted pull, is checked against the manifest's
 * SHA-256 and only then renamed into place.  A part that already holds
 * every byte is verified and renamed without asking the server (it used
 * to get 416, lose the part and exit 4).  Tables no longer visible are
 * deleted (a full pull only).  Then agnes.duckdb gets one view per table.
 *
 * Exit codes (docs/cli.md): 0 all pulled; 6 some tables failed, the others
 * were pulled; when every download failed: 4 only if the server could not
 * be reached, 5 if it answered each with an error, else 1 (e.g. a
 * download that did not match the manifest's hash - never kept).
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/client/claude_md.h"
#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "cli/client/digest.h"
#include "cli/client/pull_result.h"
#include "cli/client/workspace.h"
#include "core/util.h"
#include "store/table_files.h"

#define PARALLEL_DOWNLOADS 4

/* How a transfer failed, for the exit code. */
typedef enum transfer_failure {
    FAILURE_NONE,
    FAILURE_UNREACHABLE, /* no connection to the server at all */
    FAILURE_SERVER,      /* the server answered with an error status */
    FAILURE_OTHER,       /* interrupted, refused by the hash check, local I/O */
} transfer_failure;

typedef struct transfer {
    char id[128];
    char hash[65];
    long long size_bytes; /* the manifest's; -1 when it gave none */
    char part[AGNES_PATH_MAX + 200];
    char final[AGNES_PATH_MAX + 200];
    char hash_note[AGNES_PATH_MAX + 200]; /* which version the part file holds */
    FILE *out;
    CURL *curl;
    struct curl_slist *headers;
    long long resume_from;
    long long received;
    bool checked_status;
    strbuf error_body;
    char error[600];
    transfer_failure failure;
    bool retry_fresh; /* the part file was not this version after all: download again from 0, once */
    int attempts;
    bool finished_locally; /* the part already held the whole file: verified and renamed, nothing downloaded */
} transfer;

typedef struct pull_options {
    bool quiet, json;
    bool print_changes; /* print .agnes/changes.md at the end (the SessionStart hook) */
    const char *result, *format; /* --result HANDLE [--format parquet|csv]: a query result instead */
    const char *workspace_dir;
    char **tables;
    int table_count;
} pull_options;

static size_t write_part(char *data, size_t size, size_t count, void *userdata)
{
    transfer *t = userdata;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 206) { /* an error sentence, not file bytes */
        strbuf_append(&t->error_body, data, size * count);
        return size * count;
    }
    if (!t->checked_status) {
        t->checked_status = true;
        if (status == 200 && t->resume_from > 0) { /* the server sent the whole (new) file */
            if (ftruncate(fileno(t->out), 0) != 0 || fseek(t->out, 0, SEEK_SET) != 0)
                return 0;
            t->resume_from = 0;
        }
    }
    t->received += (long long)(size * count);
    return fwrite(data, size, count, t->out) * size;
}

static bool wants(const pull_options *o, const char *id)
{
    if (o->table_count == 0)
        return true;
    for (int i = 0; i < o->table_count; i++)
        if (strcmp(o->tables[i], id) == 0)
            return true;
    return false;
}

static void fail(transfer *t, transfer_failure failure, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(transfer *t, transfer_failure failure, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, args);
    va_end(args);
    t->failure = failure;
}

/* The part file's bytes against the manifest's hash: true when they match
 * and the file was renamed into place.  A mismatch removes the part (and
 * its note): those bytes are never kept. */
static bool verify_and_place(transfer *t)
{
    table_file file = {0};
    agnes_error err;
    snprintf(file.path, sizeof file.path, "%s", t->part);
    if (table_file_hash(&file, &err) != AGNES_OK) {
        fail(t, FAILURE_OTHER, "cannot read back %s: %s", t->part, err.message);
        return false;
    }
    if (strcmp(file.sha256, t->hash) != 0) {
        fail(t, FAILURE_OTHER,
             "the downloaded file does not match the manifest's hash (it changed on the server meanwhile, or was "
             "damaged on the way); it was not kept - run `agnes pull` again");
        unlink(t->part);
        unlink(t->hash_note);
        return false;
    }
    if (rename(t->part, t->final) != 0) {
        fail(t, FAILURE_OTHER, "cannot move %s into place: %s", t->part, strerror(errno));
        return false;
    }
    unlink(t->hash_note);
    return true;
}

/* Set up one download, resuming a part file that holds this version.  A
 * part that already has every byte is finished here (finished_locally). */
static int start_transfer(const client *c, const workspace *ws, transfer *t, agnes_error *err)
{
    char url[300], note[80] = "", header[200];
    workspace_table_path(ws, t->id, t->final, sizeof t->final);
    snprintf(t->part, sizeof t->part, "%s/.%s.parquet.part", ws->data_dir, t->id);
    snprintf(t->hash_note, sizeof t->hash_note, "%s/.%s.parquet.part.hash", ws->data_dir, t->id);
    strbuf_init(&t->error_body);
    FILE *f = fopen(t->hash_note, "r");
    if (f != NULL) {
        if (fgets(note, sizeof note, f) == NULL)
            note[0] = '\0';
        fclose(f);
    }
    struct stat st;
    t->attempts++;
    bool resume = !t->retry_fresh && strcmp(util_trim(note), t->hash) == 0 && stat(t->part, &st) == 0 &&
                  st.st_size > 0 && (t->size_bytes < 0 || (long long)st.st_size <= t->size_bytes);
    t->retry_fresh = false;
    if (resume && (long long)st.st_size == t->size_bytes) { /* a pull killed after the last byte, before the rename */
        t->finished_locally = true;
        verify_and_place(t);
        return AGNES_OK;
    }
    t->resume_from = resume ? (long long)st.st_size : 0;
    t->out = fopen(t->part, resume ? "ab" : "wb");
    if (t->out == NULL)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s", t->part);
    if (!resume) {
        f = fopen(t->hash_note, "w");
        if (f == NULL || fprintf(f, "%s\n", t->hash) < 0 || fclose(f) != 0)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s", t->hash_note);
    }
    snprintf(url, sizeof url, "/api/data/%s/download", t->id);
    t->curl = client_easy_open(c, url, &t->headers);
    if (t->curl == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start libcurl");
    if (resume) { /* appending keeps the list's head, which the handle holds */
        snprintf(header, sizeof header, "If-Range: \"%s\"", t->hash);
        t->headers = curl_slist_append(t->headers, header);
        snprintf(header, sizeof header, "Range: bytes=%lld-", t->resume_from);
        t->headers = curl_slist_append(t->headers, header);
    }
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, write_part);
    curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->curl, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->curl, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer ends after a minute */
    curl_easy_setopt(t->curl, CURLOPT_LOW_SPEED_TIME, 60L);
    long long limit = 0; /* AGNES_PULL_MAX_BYTES_PER_SECOND: spare a thin link, per file */
    const char *limit_text = getenv("AGNES_PULL_MAX_BYTES_PER_SECOND");
    if (limit_text != NULL && util_parse_long(limit_text, &limit) && limit > 0)
        curl_easy_setopt(t->curl, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)limit);
    return AGNES_OK;
}

/* A finished download: verify the bytes against the manifest, then rename. */
static void finish_transfer(transfer *t, CURLcode code)
{
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    bool flushed = fclose(t->out) == 0;
    t->out = NULL;
    if (code != CURLE_OK) {
        fail(t, client_unreachable(t->curl, code) ? FAILURE_UNREACHABLE : FAILURE_OTHER,
             "download interrupted: %s (run `agnes pull` again to resume)", curl_easy_strerror(code));
        return;
    }
    if (status == 416 && t->resume_from > 0) {
        /* Nothing past what the part holds: it is complete (or longer than this version): check it. */
        if (verify_and_place(t))
            return;
        t->retry_fresh = true; /* not this version's bytes: fetch the whole file once more */
        return;
    }
    if (status != 200 && status != 206) {
        strbuf_append_char(&t->error_body, '\0');
        json_t *body = json_loads(t->error_body.data ? t->error_body.data : "", 0, NULL);
        const char *detail = json_string_value(json_object_get(body, "detail"));
        fail(t, FAILURE_SERVER, "the server answered %ld: %s", status, detail ? detail : "no detail");
        json_decref(body);
        unlink(t->part);
        unlink(t->hash_note);
        return;
    }
    if (!flushed) {
        fail(t, FAILURE_OTHER, "cannot write %s (disk full?)", t->part);
        return;
    }
    verify_and_place(t);
}

static void progress_line(const transfer *all, size_t count, size_t done)
{
    long long bytes = 0;
    for (size_t i = 0; i < count; i++)
        bytes += all[i].received;
    fprintf(stderr, "\ragnes pull: %zu/%zu files, %.1f MB downloaded ", done, count, (double)bytes / 1e6);
    fflush(stderr);
}

/* Run every transfer, PARALLEL_DOWNLOADS at a time. */
static void run_transfers(const client *c, const workspace *ws, transfer *all, size_t count, bool progress)
{
    CURLM *multi = curl_multi_init();
    size_t next = 0, done = 0;
    int running = 0;
    double last_print = 0;
    while (done < count) {
        while (next < count && running < PARALLEL_DOWNLOADS) {
            agnes_error err;
            transfer *t = &all[next++];
            if (start_transfer(c, ws, t, &err) != AGNES_OK) {
                fail(t, FAILURE_OTHER, "%s", err.message);
                if (t->out)
                    fclose(t->out), t->out = NULL;
                done++;
                continue;
            }
            if (t->finished_locally) {
                done++;
                continue;
            }
            curl_multi_add_handle(multi, t->curl);
            running++;
        }
        int still = 0, queued = 0;
        curl_multi_perform(multi, &still);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            transfer *t = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish_transfer(t, msg->data.result);
            curl_multi_remove_handle(multi, t->curl);
            running--;
            if (t->retry_fresh && t->attempts < 2) { /* once more from byte 0, with a new handle */
                agnes_error err;
                t->error[0] = '\0';
                t->failure = FAILURE_NONE;
                curl_easy_cleanup(t->curl);
                curl_slist_free_all(t->headers);
                t->curl = NULL;
                t->headers = NULL;
                t->received = 0;
                t->checked_status = false;
                strbuf_free(&t->error_body);
                if (start_transfer(c, ws, t, &err) == AGNES_OK && !t->finished_locally) {
                    curl_multi_add_handle(multi, t->curl);
                    running++;
                    continue;
                }
                if (t->error[0] == '\0')
                    fail(t, FAILURE_OTHER, "%s", err.message);
            } else if (t->retry_fresh) {
                fail(t, FAILURE_OTHER, "the server sent no usable bytes for %s; run `agnes pull` again", t->id);
            }
            done++;
        }
        if (progress && util_monotonic_ms() - last_print > 200) {
            progress_line(all, count, done);
            last_print = util_monotonic_ms();
        }
        if (still > 0)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    }
    if (progress)
        progress_line(all, count, done), fputc('\n', stderr);
    curl_multi_cleanup(multi);
}

/* The plan: which visible tables need a download, which are unchanged. */
static int plan(const pull_options *o, workspace *ws, const json_t *manifest, transfer **out, size_t *count,
                json_t *unchanged, agnes_error *err)
{
    const json_t *tables = json_object_get(manifest, "tables");
    *out = calloc(json_object_size(tables) + 1, sizeof **out);
    *count = 0;
    if (*out == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (int i = 0; i < o->table_count; i++)
        if (json_object_get(tables, o->tables[i]) == NULL)
            return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                   "table '%s' is not among the tables you may read (`agnes catalog` lists them)",
                                   o->tables[i]);
    const char *id;
    json_t *entry;
    json_object_foreach((json_t *)tables, id, entry) {
        const char *hash = json_string_value(json_object_get(entry, "hash"));
        if (!wants(o, id) || !json_is_true(json_object_get(entry, "downloadable")) || hash == NULL || !hash[0])
            continue;
        json_t *have = json_object_get(json_object_get(ws->state, "tables"), id);
        char path[AGNES_PATH_MAX + 200];
        workspace_table_path(ws, id, path, sizeof path);
        const char *have_hash = json_string_value(json_object_get(have, "hash"));
        if (have_hash != NULL && strcmp(have_hash, hash) == 0 && util_file_exists(path)) {
            json_array_append_new(unchanged, json_string(id));
            continue;
        }
        transfer *t = &(*out)[(*count)++];
        snprintf(t->id, sizeof t->id, "%s", id);
        snprintf(t->hash, sizeof t->hash, "%s", hash);
        json_t *size = json_object_get(entry, "size_bytes");
        t->size_bytes = json_is_integer(size) ? (long long)json_integer_value(size) : -1;
    }
    return AGNES_OK;
}

/* Tables the workspace holds that the manifest no longer lists. */
static json_t *remove_invisible(workspace *ws, const json_t *manifest)
{
    json_t *removed = json_array(), *tables = json_object_get(ws->state, "tables");
    const char *id;
    json_t *entry, *tmp;
    json_object_foreach_safe(tables, tmp, id, entry) {
        json_t *listed = json_object_get(json_object_get(manifest, "tables"), id);
        if (listed != NULL && json_is_true(json_object_get(listed, "downloadable")))
            continue;
        char path[AGNES_PATH_MAX + 200];
        workspace_table_path(ws, id, path, sizeof path);
        unlink(path);
        json_array_append_new(removed, json_string(id));
        json_object_del(tables, id);
    }
    return removed;
}

static void report(const pull_options *o, const workspace *ws, const transfer *all, size_t count,
                   const json_t *unchanged, const json_t *removed, long long bytes)
{
    json_t *downloaded = json_array(), *failed = json_array();
    for (size_t i = 0; i < count; i++) {
        if (all[i].error[0])
            json_array_append_new(failed, json_pack("{s:s, s:s}", "table", all[i].id, "error", all[i].error));
        else
            json_array_append_new(downloaded, json_string(all[i].id));
    }
    if (o->json) {
        json_t *summary = json_pack("{s:s, s:O, s:O, s:O, s:O, s:I}", "workspace", ws->dir, "downloaded", downloaded,
                                    "unchanged", unchanged, "removed", removed, "failed", failed, "bytes_downloaded",
                                    (json_int_t)bytes);
        json_dumpf(summary, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(summary);
    } else {
        for (size_t i = 0; i < json_array_size(failed); i++) {
            json_t *f = json_array_get(failed, i);
            fprintf(stderr, "agnes pull: %s: %s\n", json_string_value(json_object_get(f, "table")),
                    json_string_value(json_object_get(f, "error")));
        }
        if (!o->quiet && json_array_size(downloaded) == 0 && json_array_size(removed) == 0 &&
            json_array_size(failed) == 0)
            printf("Up to date: %zu table%s, nothing downloaded (%s).\n", json_array_size(unchanged),
                   client_plural((long long)json_array_size(unchanged)), ws->dir);
        else if (!o->quiet)
            printf("Pulled %zu table%s (%.1f MB), %zu unchanged, %zu removed, %zu failed (%s).\n",
                   json_array_size(downloaded), json_array_size(downloaded) == 1 ? "" : "s", (double)bytes / 1e6,
                   json_array_size(unchanged), json_array_size(removed), json_array_size(failed), ws->dir);
    }
    json_decref(downloaded);
    json_decref(failed);
}

static int parse_pull_options(int argc, char **argv, pull_options *o)
{
    memset(o, 0, sizeof *o);
    o->tables = calloc((size_t)argc, sizeof *o->tables);
    for (int i = 1; i < argc && o->tables != NULL; i++) {
        if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
            o->quiet = true;
        else if (strcmp(argv[i], "--json") == 0)
            o->json = true;
        else if (strcmp(argv[i], "--print-changes") == 0)
            o->print_changes = true;
        else if (strcmp(argv[i], "--result") == 0 && i + 1 < argc)
            o->result = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            o->format = argv[++i];
        else if (strcmp(argv[i], "--workspace") == 0 && i + 1 < argc)
            o->workspace_dir = argv[++i];
        else if (argv[i][0] == '-')
            return -1;
        else
            o->tables[o->table_count++] = argv[i];
    }
    return o->tables ? 0 : -1;
}

int command_pull(int argc, char **argv)
{
    pull_options o;
    client c;
    workspace ws = {0};
    agnes_error err;
    json_t *manifest = NULL, *unchanged = json_array(), *removed = NULL;
    transfer *all = NULL;
    size_t count = 0;
    int rc = AGNES_OK, exit_code;
    if (parse_pull_options(argc, argv, &o) != 0 || (argc > 1 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "usage: agnes pull [--quiet] [--json] [--print-changes] [--workspace DIR] [TABLE ...]\n"
                        "       agnes pull --result HANDLE [--format parquet|csv] [--json] [--workspace DIR]\n"
                        "  Download the tables you may read that changed since the last pull into DIR/data/,\n"
                        "  remove those you may no longer read, and refresh DIR/agnes.duckdb.\n"
                        "  A full pull writes DIR/.agnes/changes.md: tables, columns, row counts and access changed\n"
                        "  since the previous pull; --print-changes prints it (the SessionStart hook does).\n"
                        "  --result downloads the whole query result behind a handle into DIR/results/.\n");
        free(o.tables);
        json_decref(unchanged);
        return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
    }
    if (o.result != NULL || o.format != NULL) {
        exit_code = o.result == NULL || o.table_count > 0
                        ? (fprintf(stderr, "agnes pull: --format goes with --result HANDLE, which takes no tables\n"),
                           CLIENT_EXIT_USAGE)
                        : pull_result(o.result, o.format ? o.format : "parquet", o.workspace_dir, o.json, o.quiet);
        free(o.tables);
        json_decref(unchanged);
        return exit_code;
    }
    if ((rc = client_load(&c, NULL, &err)) || (rc = client_require_login(&c, &err)) ||
        (rc = workspace_open(&ws, o.workspace_dir, &err)) ||
        (rc = client_call_json(&c, "GET", "/api/sync/manifest", NULL, &manifest, &err)) ||
        (rc = util_mkdir_p(ws.data_dir, 0755, &err)) ||
        (rc = plan(&o, &ws, manifest, &all, &count, unchanged, &err)))
        goto done;
    removed = o.table_count == 0 ? remove_invisible(&ws, manifest) : json_array();
    run_transfers(&c, &ws, all, count, !o.quiet && !o.json && isatty(STDERR_FILENO));
    long long bytes = 0;
    size_t failures = 0, unreachable_count = 0, server_count = 0;
    for (size_t i = 0; i < count; i++) {
        bytes += all[i].received;
        if (all[i].error[0]) {
            failures++;
            unreachable_count += all[i].failure == FAILURE_UNREACHABLE;
            server_count += all[i].failure == FAILURE_SERVER;
            continue;
        }
        json_t *entry = json_object_get(json_object_get(manifest, "tables"), all[i].id);
        json_object_set_new(json_object_get(ws.state, "tables"), all[i].id,
                            json_pack("{s:s, s:O, s:O}", "hash", all[i].hash, "size_bytes",
                                      json_object_get(entry, "size_bytes"), "rows", json_object_get(entry, "rows")));
    }
    char now[32];
    util_utc_now_iso(now);
    json_object_set_new(ws.state, "server", json_string(c.server));
    json_object_set_new(ws.state, "last_pull", json_string(now));
    if ((rc = workspace_write_views(&ws, removed, &err)) != AGNES_OK)
        goto done;
    agnes_error digest_err; /* the data arrived: a digest that cannot be written is a warning */
    if (o.table_count == 0 && digest_update(&c, &ws, manifest, now, &digest_err) != AGNES_OK)
        fprintf(stderr, "agnes pull: cannot write the change digest: %s\n", digest_err.message);
    if ((rc = workspace_save(&ws, &err)))
        goto done;
    agnes_error notes_err; /* like the digest: the data arrived, a stale CLAUDE.md is a warning */
    if (o.table_count == 0 && claude_md_refresh(&c, ws.dir, true, &notes_err))
        fprintf(stderr, "agnes pull: cannot refresh the agnes block of CLAUDE.md (run `agnes init`): %s\n",
                notes_err.message);
    report(&o, &ws, all, count, unchanged, removed, bytes);
    if (failures > 0 && failures < count)
        rc = agnes_error_set(&err, AGNES_ERR_BUSY, "%zu of %zu downloads failed", failures, count);
    else if (failures > 0) /* exit 4 means the server could not be reached, nothing else (docs/cli.md) */
        rc = agnes_error_set(&err,
                             unreachable_count == failures ? AGNES_ERR_NETWORK
                             : server_count == failures    ? CLIENT_ERR_SERVER
                                                           : AGNES_ERR_IO,
                             "every download failed (%zu)", failures);
done:
    exit_code = rc == AGNES_ERR_BUSY ? CLIENT_EXIT_PARTIAL : rc == AGNES_OK ? 0 : client_fail("pull", &err);
    if (o.print_changes)
        digest_print(o.workspace_dir, exit_code != 0);
    for (size_t i = 0; all != NULL && i < count; i++) {
        if (all[i].curl)
            curl_easy_cleanup(all[i].curl);
        curl_slist_free_all(all[i].headers);
        strbuf_free(&all[i].error_body);
    }
    free(all);
    free(o.tables);
    json_decref(manifest);
    json_decref(unchanged);
    json_decref(removed);
    workspace_close(&ws);
    return exit_code;
}
