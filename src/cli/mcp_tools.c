#include "cli/mcp_tools.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/client/workspace.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/result_handle.h"
#include "store/duck.h"

extern char **environ;

#define LOCAL_PREFIX "local-"
#define DEFAULT_ROWS 200
#define DEFAULT_CHARS 20000
#define DEFAULT_TTL 3600

/* ---- the server --------------------------------------------------------- */

static int need_login(mcp_stdio *state, agnes_error *err)
{
    if (state->logged_in)
        return AGNES_OK;
    *err = state->login_error;
    return err->code;
}

/* The server's sentence for a failed request: its detail, with what to do
 * for a refused token. */
static int server_error(const client_response *r, agnes_error *err)
{
    json_t *body = r->body.len ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
    const char *detail = json_string_value(json_object_get(body, "detail"));
    int rc;
    if (r->status == 401)
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN, "The server refused the stored token (%s): run `agnes login` "
                                                       "again.", detail ? detail : "401");
    else if (detail != NULL)
        rc = agnes_error_set(err, r->status == 403 ? AGNES_ERR_FORBIDDEN : AGNES_ERR_DB, "%s", detail);
    else
        rc = agnes_error_set(err, AGNES_ERR_DB, "The server answered %ld without saying why.", r->status);
    json_decref(body);
    return rc;
}

/* A REST call whose 2xx body (a JSON object) is passed on as text, unparsed:
 * result pages are megabytes. */
static char *rest_text(mcp_stdio *state, const char *method, const char *path, const char *body, agnes_error *err)
{
    client_response r;
    if (need_login(state, err) != AGNES_OK)
        return NULL;
    int rc = client_call(&state->login, method, path, body, &r, err);
    char *out = NULL;
    if (rc == AGNES_OK && (r.status < 200 || r.status >= 300))
        server_error(&r, err);
    else if (rc == AGNES_OK && (r.body.len < 2 || r.body.data[0] != '{' || r.body.data[r.body.len - 1] != '}'))
        agnes_error_set(err, AGNES_ERR_DB, "The server's answer was cut short or is not JSON; try again.");
    else if (rc == AGNES_OK)
        out = r.body.data, r.body.data = NULL;
    client_response_free(&r);
    return out;
}

static json_t *rest_json(mcp_stdio *state, const char *method, const char *path, const char *body,
                         agnes_error *err)
{
    char *text = rest_text(state, method, path, body, err);
    json_t *out = text ? json_loads(text, 0, NULL) : NULL;
    if (text != NULL && out == NULL)
        agnes_error_set(err, AGNES_ERR_DB, "The server's answer is not JSON; try again.");
    free(text);
    return out;
}

/* ---- local results (the workspace) ------------------------------------- */

typedef struct local_paths {
    workspace ws;
    char results[AGNES_PATH_MAX + 32];
} local_paths;

static int open_local(mcp_stdio *state, local_paths *local, agnes_error *err)
{
    if (workspace_open(&local->ws, state->workspace_dir, err) != AGNES_OK)
        return err->code;
    snprintf(local->results, sizeof local->results, "%s/results", local->ws.state_dir);
    return AGNES_OK;
}

static long long ttl(const mcp_stdio *state)
{
    return state->ttl_seconds > 0 ? state->ttl_seconds : DEFAULT_TTL;
}

/* Remove local results older than the TTL. */
static void sweep_local(const mcp_stdio *state, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *entry;
    int64_t now = util_unix_now();
    while (d != NULL && (entry = readdir(d)) != NULL) {
        char path[AGNES_PATH_MAX + 400];
        struct stat st;
        if (strncmp(entry->d_name, LOCAL_PREFIX, strlen(LOCAL_PREFIX)) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (stat(path, &st) == 0 && st.st_mtime < now - ttl(state))
            unlink(path);
    }
    if (d != NULL)
        closedir(d);
}

/* The page's note, for a result kept in the workspace. */
static void local_note(result_page *page, const char *handle, const char *path, int64_t expires)
{
    char until[32], note[1400];
    json_t *next = json_object_get(page->meta, "next_offset");
    util_utc_iso(expires, until);
    json_object_set_new(page->meta, "handle", handle ? json_string(handle) : json_null());
    json_object_set_new(page->meta, "expires_at", handle ? json_string(until) : json_null());
    long long cut = (long long)json_integer_value(json_object_get(page->meta, "cut_values"));
    if (handle != NULL && cut > 0) { /* values cut in the page (engine/result_handle.h): the file has them whole */
        snprintf(note, sizeof note,
                 "%lld value(s) longer than %lld characters were cut (they end in \"...[cut: ...]\"). The whole "
                 "values are in %s (read it with DuckDB: read_parquet).",
                 cut, (long long)json_integer_value(json_object_get(page->meta, "cell_max_chars")), path);
        json_object_set_new(page->meta, "cut_note", json_string(note));
    }
    if (handle == NULL || !json_is_integer(next))
        return;
    long long from = (long long)json_integer_value(json_object_get(page->meta, "offset"));
    long long rows = (long long)json_integer_value(json_object_get(page->meta, "row_count"));
    snprintf(note, sizeof note,
             "Showing rows %lld-%lld of %lld. The full result is kept in this workspace as handle %s (the file %s) "
             "until %s: call fetch_result(handle, offset=%lld) for the next page, or read the file with DuckDB "
             "(read_parquet); or narrow the query (filters, aggregation).",
             from + (rows > 0), from + rows, (long long)json_integer_value(json_object_get(page->meta, "total_rows")),
             handle, path, until, (long long)json_integer_value(next));
    json_object_set_new(page->meta, "note", json_string(note));
}

static char *page_text(result_page *page, agnes_error *err)
{
    strbuf out;
    strbuf_init(&out);
    if (result_page_text(page, &out, err) != AGNES_OK) {
        strbuf_free(&out);
        return NULL;
    }
    return out.data;
}

/* The caller's SQL without trailing semicolons and blanks, to wrap in COPY. */
static char *bare_sql(const char *sql)
{
    char *copy = util_strdup(sql);
    size_t n = copy ? strlen(copy) : 0;
    while (n > 0 && strchr("; \t\r\n", copy[n - 1]) != NULL)
        copy[--n] = '\0';
    return copy;
}

static char *local_query(mcp_stdio *state, const char *sql, long long limit, long long max_chars, agnes_error *err)
{
    local_paths local;
    duck_session session = {0};
    char handle[RESULT_HANDLE_LEN + 8], path[AGNES_PATH_MAX + 100], part[AGNES_PATH_MAX + 110],
        types_path[AGNES_PATH_MAX + 110];
    char *select = NULL, *out = NULL, *exact = NULL;
    json_t *shape = NULL;
    result_page page = {0};
    strbuf copy;
    strbuf_init(&copy);
    if (open_local(state, &local, err) != AGNES_OK)
        return NULL;
    int rc = AGNES_OK;
    if (!util_file_exists(local.ws.database)) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "%s does not exist yet: call the pull tool (or run `agnes pull`) first, or leave out "
                             "local to query the server.",
                             local.ws.database);
        goto done;
    }
    if ((rc = util_mkdir_p(local.results, 0700, err)) != AGNES_OK)
        goto done;
    sweep_local(state, local.results);
    char hex[RESULT_HANDLE_LEN + 1];
    result_handle_new(hex);
    snprintf(handle, sizeof handle, LOCAL_PREFIX "%s", hex);
    snprintf(path, sizeof path, "%s/%s.parquet", local.results, handle);
    snprintf(part, sizeof part, "%s.part", path);
    snprintf(types_path, sizeof types_path, "%s/%s.json", local.results, handle);
    if ((rc = duck_session_open(&session, local.ws.database, true, err)) != AGNES_OK ||
        (rc = result_exact_sql(session.connection, sql, &exact, &shape, err)) != AGNES_OK)
        goto done;
    if ((select = bare_sql(exact ? exact : sql)) == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* Newlines around the SELECT: a trailing "-- comment" cannot eat the ')'. */
    strbuf_appendf(&copy, "COPY (SELECT * FROM (\n%s\n)) TO ", select);
    duck_append_literal(&copy, part);
    strbuf_append_str(&copy, " (FORMAT parquet)");
    if (strbuf_failed(&copy)) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    duckdb_result result;
    if (duckdb_query(session.connection, copy.data, &result) != DuckDBSuccess) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", duckdb_result_error(&result));
        duckdb_destroy_result(&result);
        unlink(part);
        goto done;
    }
    duckdb_destroy_result(&result);
    if (rename(part, path) != 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot keep the result in %s: %s", path, strerror(errno));
        goto done;
    }
    if ((rc = result_page_read(session.connection, path, shape, 0, limit, max_chars, &page, err)) != AGNES_OK) {
        unlink(path);
        goto done;
    }
    /* Kept when rows remain or values were cut: the file is where the whole values are. */
    bool rest = json_is_true(json_object_get(page.meta, "truncated")) ||
                json_integer_value(json_object_get(page.meta, "cut_values")) > 0;
    if (!rest) {
        unlink(path);
    } else if (shape != NULL && json_dump_file(shape, types_path, JSON_COMPACT) != 0) {
        unlink(path); /* without its shape the file would read back wrong */
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s", types_path);
        goto done;
    }
    local_note(&page, rest ? handle : NULL, path, util_unix_now() + ttl(state));
    out = page_text(&page, err);
done:
    result_page_free(&page);
    if (session.database != NULL)
        duck_session_close(&session);
    strbuf_free(&copy);
    free(select);
    free(exact);
    json_decref(shape);
    workspace_close(&local.ws);
    return out;
}

static char *local_fetch(mcp_stdio *state, const char *handle, long long offset, long long limit,
                         long long max_chars, agnes_error *err)
{
    local_paths local;
    char path[AGNES_PATH_MAX + 100], types_path[AGNES_PATH_MAX + 100];
    struct stat st;
    result_page page = {0};
    char *out = NULL;
    duckdb_database db = NULL;
    duckdb_connection conn = NULL;
    if (open_local(state, &local, err) != AGNES_OK)
        return NULL;
    snprintf(path, sizeof path, "%s/%s.parquet", local.results, handle);
    snprintf(types_path, sizeof types_path, "%s/%s.json", local.results, handle);
    workspace_close(&local.ws);
    if (!result_handle_valid(handle + strlen(LOCAL_PREFIX)) || stat(path, &st) != 0 ||
        st.st_mtime < util_unix_now() - ttl(state)) {
        agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                        "No local result with handle %.60s in this workspace (local results are kept for %lld "
                        "minutes). Run the query again.",
                        handle, ttl(state) / 60);
        return NULL;
    }
    int rc = duck_open(NULL, false, &db, err);
    if (rc == AGNES_OK && duckdb_connect(db, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot open DuckDB");
    json_t *shape = util_file_exists(types_path) ? json_load_file(types_path, 0, NULL) : NULL;
    if (rc == AGNES_OK)
        rc = result_page_read(conn, path, shape, offset, limit, max_chars, &page, err);
    json_decref(shape);
    if (rc == AGNES_OK) {
        local_note(&page, handle, path, (int64_t)st.st_mtime + ttl(state));
        out = page_text(&page, err);
    }
    result_page_free(&page);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (db != NULL)
        duckdb_close(&db);
    return out;
}

/* ---- the tools ---------------------------------------------------------- */

static int page_arguments(const mcp_stdio *state, const json_t *args, long long *limit, long long *max_chars,
                          agnes_error *err)
{
    if (mcp_arg_int(args, "limit", 1, MCP_PAGE_MAX_ROWS, limit, err) ||
        mcp_arg_int(args, "max_chars", 100, MCP_PAGE_MAX_CHARS, max_chars, err))
        return err->code;
    (void)state;
    return AGNES_OK;
}

static long long or_default(long long given, long long server, long long fallback)
{
    return given > 0 ? given : server > 0 ? server : fallback;
}

static char *tool_query(mcp_stdio *state, const json_t *args, agnes_error *err)
{
    const char *sql = NULL;
    long long limit = 0, max_chars = 0;
    bool local = false;
    if (mcp_arg_string(args, "sql", true, &sql, err) || page_arguments(state, args, &limit, &max_chars, err) ||
        mcp_arg_bool(args, "local", &local, err))
        return NULL;
    if (local)
        return local_query(state, sql, or_default(limit, state->max_rows, DEFAULT_ROWS),
                           or_default(max_chars, state->max_chars, DEFAULT_CHARS), err);
    json_t *body = json_pack("{s:s}", "sql", sql);
    if (limit > 0)
        json_object_set_new(body, "limit", json_integer(limit));
    if (max_chars > 0)
        json_object_set_new(body, "max_chars", json_integer(max_chars));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *out = text ? rest_text(state, "POST", "/api/results", text, err)
                     : (agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory"), NULL);
    free(text);
    return out;
}

static char *tool_fetch_result(mcp_stdio *state, const json_t *args, agnes_error *err)
{
    const char *handle = NULL;
    long long offset = 0, limit = 0, max_chars = 0;
    char path[300];
    if (mcp_arg_string(args, "handle", true, &handle, err) ||
        mcp_arg_int(args, "offset", 0, 1000000000LL, &offset, err) ||
        page_arguments(state, args, &limit, &max_chars, err))
        return NULL;
    if (strncmp(handle, LOCAL_PREFIX, strlen(LOCAL_PREFIX)) == 0)
        return local_fetch(state, handle, offset, or_default(limit, state->max_rows, DEFAULT_ROWS),
                           or_default(max_chars, state->max_chars, DEFAULT_CHARS), err);
    if (!result_handle_valid(handle)) { /* never put arbitrary text into the URL */
        agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                        "No result with handle %.60s: handles are what query returned (32 hex characters, or "
                        "local-... for local results).",
                        handle);
        return NULL;
    }
    int n = snprintf(path, sizeof path, "/api/results/%s/rows?offset=%lld", handle, offset);
    if (limit > 0)
        n += snprintf(path + n, sizeof path - (size_t)n, "&limit=%lld", limit);
    if (max_chars > 0)
        snprintf(path + n, sizeof path - (size_t)n, "&max_chars=%lld", max_chars);
    return rest_text(state, "GET", path, NULL, err);
}

static char *tool_describe_table(mcp_stdio *state, const json_t *args, agnes_error *err)
{
    const char *table = NULL;
    long long sample_rows = 5;
    char path[200];
    if (mcp_arg_string(args, "table", true, &table, err) || mcp_arg_int(args, "sample_rows", 0, 20, &sample_rows, err))
        return NULL;
    if (!contract_is_identifier(table)) {
        agnes_error_set(err, AGNES_ERR_INVALID,
                        "'%.100s' is not a table id (letters, digits and _); list_tables gives the ids.", table);
        return NULL;
    }
    snprintf(path, sizeof path, "/api/catalog/tables/%s", table);
    json_t *detail = rest_json(state, "GET", path, NULL, err);
    if (detail != NULL && sample_rows > 0) {
        snprintf(path, sizeof path, "/api/catalog/tables/%s/sample?n=%lld", table, sample_rows);
        json_t *sample = rest_json(state, "GET", path, NULL, err);
        if (sample == NULL) {
            json_decref(detail);
            return NULL;
        }
        json_object_set_new(detail, "sample", json_pack("{s:O, s:O}", "columns", json_object_get(sample, "columns"),
                                                        "rows", json_object_get(sample, "rows")));
        json_decref(sample);
    }
    return detail ? mcp_json_text(detail, err) : NULL;
}

/* Read a child's output until it closes both pipes. */
static void drain(int out_fd, int err_fd, strbuf *out, strbuf *errors)
{
    struct pollfd fds[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
    char buffer[8192];
    int open_count = 2;
    while (open_count > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
            if (n > 0) {
                strbuf_append(i == 0 ? out : errors, buffer, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;
                open_count--;
            }
        }
    }
}

/* Run this binary with args (stdin /dev/null: our stdin is the MCP channel). */
static int run_self(char *const args[], strbuf *out, strbuf *errors, int *status, agnes_error *err)
{
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    pid_t pid;
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
        for (int i = 0; i < 2; i++) {
            if (out_pipe[i] >= 0)
                close(out_pipe[i]);
            if (err_pipe[i] >= 0)
                close(err_pipe[i]);
        }
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start agnes pull: %s", strerror(errno));
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
    int spawned = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (spawned == 0)
        drain(out_pipe[0], err_pipe[0], out, errors);
    close(out_pipe[0]);
    close(err_pipe[0]);
    if (spawned != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start agnes pull: %s", strerror(spawned));
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    return AGNES_OK;
}

static char *tool_pull(mcp_stdio *state, const json_t *args, agnes_error *err)
{
    const char *handle = NULL;
    json_t *tables = json_object_get(args, "tables");
    char *argv[64];
    int argc = 0;
    if (mcp_arg_string(args, "result", false, &handle, err) != AGNES_OK)
        return NULL;
    if (tables != NULL && !json_is_null(tables) && (!json_is_array(tables) || json_array_size(tables) > 40)) {
        agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"tables\" must be an array of at most 40 table ids.");
        return NULL;
    }
    argv[argc++] = "agnes";
    argv[argc++] = "pull";
    argv[argc++] = "--json";
    argv[argc++] = "--quiet";
    if (state->workspace_dir != NULL) {
        argv[argc++] = "--workspace";
        argv[argc++] = (char *)state->workspace_dir;
    }
    if (handle != NULL) {
        argv[argc++] = "--result";
        argv[argc++] = (char *)handle;
    }
    size_t i;
    json_t *id;
    json_array_foreach(handle ? NULL : tables, i, id) {
        if (!json_is_string(id) || !contract_is_identifier(json_string_value(id))) {
            agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"tables\" must hold table ids (letters, digits and _).");
            return NULL;
        }
        argv[argc++] = (char *)json_string_value(id);
    }
    argv[argc] = NULL;
    strbuf out, errors;
    strbuf_init(&out);
    strbuf_init(&errors);
    int status = 0;
    char *text = NULL;
    if (run_self(argv, &out, &errors, &status, err) != AGNES_OK)
        goto done;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    json_t *summary = out.len ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    if ((code != 0 && code != CLIENT_EXIT_PARTIAL) || summary == NULL) {
        strbuf_append_char(&errors, '\0');
        const char *message = errors.data ? util_trim(errors.data) : "";
        const char *prefix = "agnes pull: ";
        if (strncmp(message, prefix, strlen(prefix)) == 0)
            message += strlen(prefix);
        agnes_error_set(err, code == CLIENT_EXIT_AUTH ? AGNES_ERR_FORBIDDEN : AGNES_ERR_DB, "%s",
                        message[0] ? message : "agnes pull failed without saying why");
        json_decref(summary);
        goto done;
    }
    json_t *result = json_pack("{s:o}", "pull", summary);
    if (handle == NULL && json_array_size(tables) == 0) { /* a full pull wrote the digest */
        local_paths local;
        agnes_error ignored;
        char path[AGNES_PATH_MAX + 32], *digest = NULL;
        size_t len = 0;
        if (open_local(state, &local, &ignored) == AGNES_OK) {
            snprintf(path, sizeof path, "%s/changes.md", local.ws.state_dir);
            if (util_read_file(path, 1 << 20, &digest, &len, &ignored) == AGNES_OK)
                json_object_set_new(result, "changes", json_stringn(digest, len));
            free(digest);
            workspace_close(&local.ws);
        }
    }
    text = mcp_json_text(result, err);
done:
    strbuf_free(&out);
    strbuf_free(&errors);
    return text;
}

static char *tool_sync_trigger(mcp_stdio *state, const json_t *args, agnes_error *err)
{
    json_t *tables = json_object_get(args, "tables");
    size_t i;
    json_t *id;
    if (tables != NULL && !json_is_null(tables) && !json_is_array(tables)) {
        agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"tables\" must be an array of table ids.");
        return NULL;
    }
    json_array_foreach(tables, i, id)
        if (!json_is_string(id)) {
            agnes_error_set(err, AGNES_ERR_INVALID, "Argument \"tables\" must hold table ids.");
            return NULL;
        }
    char *body = json_is_array(tables) ? json_dumps(tables, JSON_COMPACT) : NULL;
    char *out = rest_text(state, "POST", "/api/sync/trigger", body, err);
    free(body);
    return out;
}

static char *call_tool(void *cls, const char *tool, const json_t *args, agnes_error *err)
{
    mcp_stdio *state = cls;
    if (strcmp(tool, "list_tables") == 0)
        return rest_text(state, "GET", "/api/catalog/tables", NULL, err);
    if (strcmp(tool, "describe_table") == 0)
        return tool_describe_table(state, args, err);
    if (strcmp(tool, "query") == 0)
        return tool_query(state, args, err);
    if (strcmp(tool, "fetch_result") == 0)
        return tool_fetch_result(state, args, err);
    if (strcmp(tool, "sync_status") == 0)
        return rest_text(state, "GET", "/api/sync/status", NULL, err);
    if (strcmp(tool, "pull") == 0)
        return tool_pull(state, args, err);
    if (strcmp(tool, "sync_trigger") == 0)
        return tool_sync_trigger(state, args, err);
    if (strcmp(tool, "registry") == 0)
        return rest_text(state, "GET", "/api/admin/registry", NULL, err);
    agnes_error_set(err, AGNES_ERR_INVALID, "Unknown tool %s.", tool);
    return NULL;
}

static json_t *tables(void *cls)
{
    mcp_stdio *state = cls;
    agnes_error ignored;
    json_t *catalog = state->logged_in ? rest_json(state, "GET", "/api/catalog/tables", NULL, &ignored) : NULL;
    if (catalog == NULL)
        return NULL;
    json_t *ids = json_array();
    size_t i;
    json_t *table;
    json_array_foreach(json_object_get(catalog, "tables"), i, table)
        json_array_append(ids, json_object_get(table, "id"));
    json_decref(catalog);
    return ids;
}

static bool is_admin(void *cls)
{
    mcp_stdio *state = cls;
    if (state->admin < 0 && state->logged_in) {
        agnes_error ignored;
        json_t *me = rest_json(state, "GET", "/api/me", NULL, &ignored);
        if (me != NULL)
            state->admin = json_is_true(json_object_get(me, "is_admin"));
        json_decref(me);
    }
    return state->admin == 1;
}

void mcp_stdio_init(mcp_stdio *state, const char *workspace_dir, mcp_host *host)
{
    memset(state, 0, sizeof *state);
    state->admin = -1;
    state->workspace_dir = workspace_dir;
    agnes_error_clear(&state->login_error);
    state->logged_in = client_load(&state->login, NULL, &state->login_error) == AGNES_OK &&
                       client_require_login(&state->login, &state->login_error) == AGNES_OK;
    if (state->logged_in) {
        agnes_error ignored;
        json_t *results = rest_json(state, "GET", "/api/results", NULL, &ignored);
        json_t *limits = json_object_get(results, "limits");
        state->max_rows = (long long)json_integer_value(json_object_get(limits, "max_rows"));
        state->max_chars = (long long)json_integer_value(json_object_get(limits, "max_chars"));
        state->ttl_seconds = (long long)json_integer_value(json_object_get(limits, "ttl_seconds"));
        json_decref(results);
    }
    *host = (mcp_host){
        .cls = state,
        .transport = "stdio",
        .max_rows = state->max_rows,
        .max_chars = state->max_chars,
        .ttl_seconds = state->ttl_seconds,
        .tables = tables,
        .is_admin = is_admin,
        .call = call_tool,
    };
}
