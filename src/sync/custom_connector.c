#include "sync/custom_connector.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/contract.h"
#include "core/strbuf.h"
#include "store/duck.h"
#include "sync/connector_process.h"
#include "sync/runner.h"

#define KEEP_LOGS 20

bool custom_connector_path(const agnes_paths *paths, const char *name, char *out, size_t out_size)
{
    if (!contract_is_identifier(name))
        return false;
    snprintf(out, out_size, "%s/%s/extract", paths->connectors_dir, name);
    return access(out, X_OK) == 0;
}

/* Variables the connector asked for in connector.json {"env": [...]}. */
static json_t *requested_env(const agnes_paths *paths, const char *source)
{
    char path[AGNES_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s/connector.json", paths->connectors_dir, source);
    json_t *config = json_load_file(path, 0, NULL);
    json_t *names = json_incref(json_object_get(config, "env"));
    json_decref(config);
    return json_is_array(names) ? names : (json_decref(names), json_array());
}

static json_t *base_result(const char *source, const char *state, const char *error)
{
    return json_pack("{s:s, s:s, s:s?, s:[]}", "source", source, "state", state, "error", error, "tables");
}

/* Every registry table failed with the same sentence. */
static void fail_all(json_t *result, const json_t *tables, const char *error)
{
    size_t i;
    json_t *row;
    json_array_foreach(tables, i, row)
        json_array_append_new(json_object_get(result, "tables"),
                              json_pack("{s:O, s:s, s:n, s:n, s:s}", "table_id", json_object_get(row, "id"), "state",
                                        "failed", "rows", "size_bytes", "error", error));
}

/* The published _meta's rows, to report each registry table's outcome.
 * `carried` names the tables the connector did not write whose last
 * published data was kept (carry_over). */
static void table_outcomes(json_t *result, const json_t *tables, const char *extract, const json_t *carried)
{
    duck_session session;
    json_t *meta = NULL;
    agnes_error err;
    if (duck_session_open(&session, extract, true, &err) == AGNES_OK) {
        duck_query_json(session.connection, "SELECT table_name, rows, size_bytes FROM _meta", NULL, 0, &meta, &err);
        duck_session_close(&session);
    }
    size_t i, j;
    json_t *row, *produced;
    json_array_foreach(tables, i, row) {
        const char *id = json_string_value(json_object_get(row, "id"));
        json_t *entry = NULL;
        bool was_carried = false;
        json_array_foreach(carried, j, produced)
            was_carried = was_carried || strcasecmp(json_string_value(produced), id) == 0;
        json_array_foreach(meta, j, produced) {
            if (!was_carried && strcasecmp(json_string_value(json_object_get(produced, "table_name")), id) == 0)
                entry = json_pack("{s:s, s:s, s:O, s:O, s:n}", "table_id", id, "state", "done", "rows",
                                  json_object_get(produced, "rows"), "size_bytes",
                                  json_object_get(produced, "size_bytes"), "error");
        }
        if (entry == NULL)
            entry = json_pack("{s:s, s:s, s:n, s:n, s:s}", "table_id", id, "state", "failed", "rows", "size_bytes",
                              "error",
                              was_carried ? "the connector's extract has no _meta row for this table; it keeps "
                                            "serving its last published data"
                                          : "the connector's extract has no _meta row for this table");
        json_array_append_new(json_object_get(result, "tables"), entry);
    }
    json_decref(meta);
}

static bool listed(const json_t *names, const char *name)
{
    size_t i;
    json_t *item;
    json_array_foreach(names, i, item)
        if (strcasecmp(json_string_value(item), name) == 0)
            return true;
    return false;
}

/* Copy one table of the attached "previous" extract into the new one: its
 * view's definition (data files stay where they are: sweep_runs keeps the
 * run directories a published view still reads) or its rows. */
static int copy_table(duckdb_connection conn, const char *table, agnes_error *err)
{
    json_t *found = NULL;
    const char *params[] = {table};
    int rc = duck_query_json(conn,
                             "SELECT sql FROM duckdb_views() WHERE database_name = 'previous' AND schema_name = 'main'"
                             " AND lower(view_name) = lower($1)",
                             params, 1, &found, err);
    if (rc == AGNES_OK && json_array_size(found) == 1) {
        rc = duck_exec(conn, json_string_value(json_object_get(json_array_get(found, 0), "sql")), err);
    } else if (rc == AGNES_OK) {
        strbuf sql;
        strbuf_init(&sql);
        strbuf_append_str(&sql, "CREATE TABLE ");
        duck_append_identifier(&sql, table);
        strbuf_append_str(&sql, " AS SELECT * FROM previous.main.");
        duck_append_identifier(&sql, table);
        rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : duck_exec(conn, sql.data, err);
        strbuf_free(&sql);
    }
    json_decref(found);
    if (rc == AGNES_OK)
        rc = duck_exec_params(conn, "INSERT INTO _meta SELECT * FROM previous._meta WHERE table_name = $1", params, 1,
                              err);
    return rc;
}

/* Registered tables of the source that the run's output lacks keep their
 * last published definition: a trigger of some of a connector's tables
 * (the connector gets only those on stdin) used to unpublish the others,
 * and a table a connector failed would vanish instead of serving its last
 * good data (SPEC §9).  Copies each such table's _meta row and view or
 * rows from the published extract into `output`, with the _remote_attach
 * rows it lacks; *carried (new reference) names them.  Tables no longer
 * registered are not carried: a connector that stops writing one drops it. */
static int carry_over(const char *output, const char *published, const json_t *registered, json_t **carried,
                      agnes_error *err)
{
    duck_session session;
    json_t *produced = NULL, *before = NULL;
    *carried = json_array();
    if (json_array_size(registered) == 0 || !util_file_exists(published))
        return AGNES_OK;
    if (duck_session_open(&session, output, false, err) != AGNES_OK)
        return err->code;
    duckdb_connection conn = session.connection;
    int rc = duck_attach_read_only(conn, published, "previous", err);
    if (rc == AGNES_OK)
        rc = duck_query_json(conn, "SELECT table_name FROM main._meta", NULL, 0, &produced, err);
    if (rc == AGNES_OK)
        rc = duck_query_json(conn, "SELECT table_name, query_mode FROM previous._meta", NULL, 0, &before, err);
    json_t *new_names = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(produced, i, row)
        json_array_append(new_names, json_object_get(row, "table_name"));
    bool carried_remote = false;
    json_array_foreach(before, i, row) {
        const char *table = json_string_value(json_object_get(row, "table_name"));
        if (rc != AGNES_OK || table == NULL || listed(new_names, table))
            continue;
        bool is_registered = false;
        size_t j;
        json_t *registry_row;
        json_array_foreach(registered, j, registry_row)
            is_registered = is_registered || strcasecmp(json_string_value(json_object_get(registry_row, "id")), table) == 0;
        if (!is_registered)
            continue;
        if ((rc = copy_table(conn, table, err)) != AGNES_OK) {
            agnes_error_wrap(err, "keeping the last published definition of '%s'", table);
            break;
        }
        json_array_append_new(*carried, json_string(table));
        json_array_append_new(new_names, json_string(table));
        const char *mode = json_string_value(json_object_get(row, "query_mode"));
        carried_remote = carried_remote || (mode != NULL && strcmp(mode, "remote") == 0);
    }
    long long has_attach = 0;
    bool found = false;
    if (rc == AGNES_OK && carried_remote &&
        duck_query_int(conn, "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'previous'"
                             " AND table_name = '_remote_attach'", &has_attach, &found, err) == AGNES_OK &&
        has_attach > 0)
        rc = duck_exec(conn,
                       "CREATE TABLE IF NOT EXISTS main._remote_attach (alias VARCHAR, extension VARCHAR, url VARCHAR,"
                       " token_env VARCHAR);"
                       "INSERT INTO main._remote_attach SELECT * FROM previous._remote_attach p"
                       " WHERE p.alias NOT IN (SELECT alias FROM main._remote_attach)",
                       err);
    agnes_error ignored;
    duck_exec(conn, "DETACH DATABASE IF EXISTS previous", &ignored);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "CHECKPOINT", err);
    duck_session_close(&session);
    json_decref(new_names);
    json_decref(produced);
    json_decref(before);
    return rc;
}

/* Names of the run directories (runs/<name>/) the published extract's
 * views read from, as a JSON array: a table carried over from an earlier
 * run keeps reading that run's files. */
static json_t *referenced_runs(const char *published, const char *runs_dir)
{
    json_t *names = json_array(), *views = NULL;
    duck_session session;
    agnes_error ignored;
    char prefix[AGNES_PATH_MAX + 200];
    snprintf(prefix, sizeof prefix, "%s/", runs_dir);
    if (duck_session_open(&session, published, true, &ignored) != AGNES_OK)
        return names;
    duck_query_json(session.connection, "SELECT sql FROM duckdb_views() WHERE NOT internal", NULL, 0, &views,
                    &ignored);
    duck_session_close(&session);
    size_t i;
    json_t *view;
    json_array_foreach(views, i, view) {
        const char *sql = json_string_value(json_object_get(view, "sql"));
        for (const char *at = sql ? strstr(sql, prefix) : NULL; at != NULL; at = strstr(at + 1, prefix)) {
            const char *name = at + strlen(prefix), *end = name;
            while (*end && *end != '/' && *end != '\'' && *end != '"')
                end++;
            char run[128];
            snprintf(run, sizeof run, "%.*s", (int)(end - name), name);
            if (strncmp(run, "run_", 4) == 0 && !listed(names, run))
                json_array_append_new(names, json_string(run));
        }
    }
    json_decref(views);
    return names;
}

/* Remove run directories other than `keep_a` and `keep_b` (the run just
 * published and the one published before it, which an open catalog
 * snapshot may still read) and those in `keep` (read by the published
 * extract's carried views; may be NULL), and all but the newest KEEP_LOGS
 * logs.  A run killed with the server is none of these, so it goes too. */
static void sweep_runs(const char *runs_dir, const char *keep_a, const char *keep_b, const json_t *keep)
{
    struct dirent **entries = NULL;
    int count = scandir(runs_dir, &entries, NULL, alphasort);
    int logs = 0;
    for (int i = count - 1; i >= 0; i--) {
        const char *name = entries[i]->d_name;
        char path[AGNES_PATH_MAX + 300];
        agnes_error ignored;
        snprintf(path, sizeof path, "%s/%s", runs_dir, name);
        if (strncmp(name, "run_", 4) == 0) {
            bool kept = util_is_directory(path)
                            ? strcmp(name, keep_a) == 0 || strcmp(name, keep_b) == 0 || listed(keep, name)
                            : ++logs <= KEEP_LOGS;
            if (!kept)
                util_remove_tree(path, &ignored);
        }
        free(entries[i]);
    }
    free(entries);
}

/* runs/.published: the published run, then the one published before it. */
static void read_published(const char *runs_dir, char *current, char *previous, size_t size)
{
    char path[AGNES_PATH_MAX + 160], *text = NULL;
    size_t len = 0;
    agnes_error ignored;
    current[0] = previous[0] = '\0';
    snprintf(path, sizeof path, "%s/.published", runs_dir);
    if (util_read_file(path, 256, &text, &len, &ignored) != AGNES_OK)
        return;
    char *newline = strchr(text, '\n');
    if (newline != NULL) {
        *newline = '\0';
        snprintf(previous, size, "%s", util_trim(newline + 1));
    }
    snprintf(current, size, "%s", util_trim(text));
    free(text);
}

static int write_published(const char *runs_dir, const char *run_id, const char *previous, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 160], text[200];
    snprintf(path, sizeof path, "%s/.published", runs_dir);
    snprintf(text, sizeof text, "%s\n%s\n", run_id, previous);
    return util_write_file_atomic(path, text, strlen(text), 0644, err);
}

/* The connector's environment: fixed basics plus what it asked for. */
static void build_env(const agnes_paths *paths, const char *source, const char *run_id, const char *run_dir,
                      char storage[][AGNES_PATH_MAX + 64], const char **env)
{
    int n = 0;
    snprintf(storage[n], sizeof storage[n], "PATH=/usr/local/bin:/usr/bin:/bin");
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "LANG=C.UTF-8");
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "HOME=%s", run_dir);
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "OUTPUT_DIR=%s", run_dir);
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "DATA_DIR=%s", paths->data_dir);
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "SOURCE_NAME=%s", source);
    env[n] = storage[n], n++;
    snprintf(storage[n], sizeof storage[n], "RUN_ID=%s", run_id);
    env[n] = storage[n], n++;
    /* The running binary: connectors write extract.duckdb with `$AGNES_BIN sql` and check it with
     * `$AGNES_BIN contract check`, with no DuckDB of their own. */
    char self[AGNES_PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        snprintf(storage[n], sizeof storage[n], "AGNES_BIN=%s", self);
        env[n] = storage[n], n++;
    }
    json_t *names = requested_env(paths, source);
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        const char *value = json_is_string(name) ? getenv(json_string_value(name)) : NULL;
        if (value == NULL || n + 1 >= CONNECTOR_ENV_MAX)
            continue;
        snprintf(storage[n], sizeof storage[n], "%s=%s", json_string_value(name), value);
        env[n] = storage[n], n++;
    }
    json_decref(names);
    env[n] = NULL;
}

/* Exit code and contract check -> NULL when the output may be published,
 * else the sentence saying why not (in buf). */
static const char *verdict(const connector_outcome *outcome, const char *extract, const char *log_path,
                           double timeout_seconds, char *buf, size_t buf_size, agnes_error *err)
{
    char tail[400];
    if (outcome->cancelled) {
        snprintf(buf, buf_size, "the server shut down while the connector ran; it was stopped");
        return buf;
    }
    if (outcome->timed_out) {
        snprintf(buf, buf_size, "the connector ran longer than %.0f seconds and was stopped", timeout_seconds);
        return buf;
    }
    if (outcome->exit_code != 0 && outcome->exit_code != 2) {
        connector_process_log_tail(log_path, tail, sizeof tail);
        snprintf(buf, buf_size, "the connector exited with %d%s%s", outcome->exit_code, tail[0] ? ": " : "", tail);
        return buf;
    }
    if (!util_file_exists(extract)) {
        snprintf(buf, buf_size, "the connector exited with %d but wrote no extract.duckdb into OUTPUT_DIR",
                 outcome->exit_code);
        return buf;
    }
    char wal[AGNES_PATH_MAX + 320];
    snprintf(wal, sizeof wal, "%s.wal", extract);
    if (util_file_exists(wal)) {
        snprintf(buf, buf_size, "extract.duckdb was left open (extract.duckdb.wal exists); close the database "
                                "(or CHECKPOINT) before the connector exits");
        return buf;
    }
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    contract_report report = {0};
    if (contract_check(extract, &allow, &report, err) != AGNES_OK) {
        snprintf(buf, buf_size, "the contract check could not run: %s", err->message);
    } else if (report.count > 0) {
        snprintf(buf, buf_size, "output rejected by the contract check (%zu violation%s): %s: %s. Fix: %s",
                 report.count, report.count == 1 ? "" : "s", report.items[0].rule, report.items[0].message,
                 report.items[0].fix);
    } else {
        buf[0] = '\0';
    }
    contract_report_free(&report);
    return buf[0] ? buf : NULL;
}

int custom_connector_sync(const agnes_paths *paths, const char *source, const char *run_id, const json_t *tables,
                          const json_t *registered, double timeout_seconds, const atomic_bool *cancel,
                          json_t **result, agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], executable[AGNES_PATH_MAX + 128], runs_dir[AGNES_PATH_MAX + 128],
        run_dir[AGNES_PATH_MAX + 256], log_path[AGNES_PATH_MAX + 256], output[AGNES_PATH_MAX + 300],
        published[AGNES_PATH_MAX + 128], why[1600];
    char env_storage[CONNECTOR_ENV_MAX][AGNES_PATH_MAX + 64];
    *result = NULL;
    if (!custom_connector_path(paths, source, executable, sizeof executable)) {
        *result = base_result(source, "failed", "no executable connector at CONNECTORS_DIR/<source>/extract");
        fail_all(*result, tables, "no executable connector at CONNECTORS_DIR/<source>/extract");
        return AGNES_OK;
    }
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        util_format(runs_dir, sizeof runs_dir, err, "%s/%s/runs", extracts, source) ||
        util_format(run_dir, sizeof run_dir, err, "%s/%s", runs_dir, run_id) ||
        util_format(log_path, sizeof log_path, err, "%s.log", run_dir) ||
        util_format(output, sizeof output, err, "%s/extract.duckdb", run_dir) ||
        util_format(published, sizeof published, err, "%s/%s/extract.duckdb", extracts, source) ||
        util_mkdir_p(runs_dir, 0755, err))
        return err->code;
    char current[128], previous[128];
    read_published(runs_dir, current, previous, sizeof current);
    json_t *still_read = referenced_runs(published, runs_dir);
    sweep_runs(runs_dir, current, previous, still_read); /* what a killed run left, before this one starts */
    if (util_mkdir_p(run_dir, 0755, err)) {
        json_decref(still_read);
        return err->code;
    }
    char *input = json_dumps(tables, JSON_COMPACT);
    connector_command command = {.executable = executable, .working_dir = run_dir, .input = input,
                                 .log_path = log_path, .timeout_seconds = timeout_seconds, .cancel = cancel};
    build_env(paths, source, run_id, run_dir, env_storage, command.env);
    connector_outcome outcome;
    char pid_path[AGNES_PATH_MAX + 300];
    snprintf(pid_path, sizeof pid_path, "%s.pid", run_dir);
    command.pid_file = pid_path;
    int rc = connector_process_run(&command, &outcome, err);
    unlink(pid_path);
    free(input);
    if (rc != AGNES_OK) {
        json_decref(still_read);
        return rc;
    }
    json_t *carried = NULL;
    const char *problem = verdict(&outcome, output, log_path, timeout_seconds, why, sizeof why, err);
    agnes_error carry_err;
    if (problem == NULL && carry_over(output, published, registered, &carried, &carry_err) != AGNES_OK) {
        snprintf(why, sizeof why, "%s", carry_err.message);
        problem = why;
    }
    if (problem == NULL && json_array_size(carried) > 0) { /* what was added passes the same check */
        connector_outcome clean = {0};
        problem = verdict(&clean, output, log_path, timeout_seconds, why, sizeof why, err);
    }
    if (problem == NULL && rename(output, published) != 0)
        problem = strerror(errno);
    if (problem != NULL) {
        agnes_error ignored;
        util_remove_tree(run_dir, &ignored);
        *result = base_result(source, "failed", problem);
        fail_all(*result, tables, problem);
        sweep_runs(runs_dir, current, previous, still_read);
    } else {
        agnes_error ignored;
        util_fsync_parent_dir(published, &ignored);
        if (write_published(runs_dir, run_id, current, &ignored) != AGNES_OK)
            log_warn("msg=\"cannot record the published run\" detail=\"%s\"", ignored.message);
        *result = base_result(source, "done", NULL);
        table_outcomes(*result, tables, published, carried);
        /* exit 2 is partial by the connector's word; a table it did not write is partial by ours */
        const char *state = sync_outcome_state(json_object_get(*result, "tables"));
        if (strcmp(state, "done") == 0 && outcome.exit_code == 2)
            state = "partial";
        json_object_set_new(*result, "state", json_string(state));
        if (strcmp(state, "failed") == 0)
            json_object_set(*result, "error",
                            json_object_get(json_array_get(json_object_get(*result, "tables"), 0), "error"));
        json_decref(still_read);
        still_read = referenced_runs(published, runs_dir);
        sweep_runs(runs_dir, run_id, current, still_read);
    }
    json_decref(carried);
    json_decref(still_read);
    json_object_set_new(*result, "duration_ms", json_real(outcome.elapsed_ms));
    json_object_set_new(*result, "log", json_string(log_path));
    return AGNES_OK;
}

/* True when a process of group pgid has RUN_ID=<run_id> in its environment. */
static bool group_is_run(long pgid, const char *run_id)
{
    char wanted[160];
    snprintf(wanted, sizeof wanted, "RUN_ID=%s", run_id);
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    bool found = false;
    while (!found && proc != NULL && (entry = readdir(proc)) != NULL) {
        char path[300], *text = NULL;
        size_t len = 0;
        agnes_error ignored;
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        if (util_read_file(path, 4096, &text, &len, &ignored) != AGNES_OK)
            continue;
        const char *after_name = strrchr(text, ')'); /* the command name may hold spaces */
        long group = 0;
        char state;
        long parent;
        bool same = after_name && sscanf(after_name + 1, " %c %ld %ld", &state, &parent, &group) == 3 && group == pgid;
        free(text);
        if (!same)
            continue;
        snprintf(path, sizeof path, "/proc/%s/environ", entry->d_name);
        if (util_read_file(path, 1 << 20, &text, &len, &ignored) != AGNES_OK)
            continue;
        for (size_t at = 0; at < len && !found; at += strlen(text + at) + 1)
            found = strcmp(text + at, wanted) == 0;
        free(text);
    }
    if (proc != NULL)
        closedir(proc);
    return found;
}

void custom_connectors_reap(const agnes_paths *paths)
{
    char extracts[AGNES_PATH_MAX], pattern[AGNES_PATH_MAX + 32];
    agnes_error err;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, &err) != AGNES_OK)
        return;
    snprintf(pattern, sizeof pattern, "%s/*/runs/run_*.pid", extracts);
    glob_t found;
    if (glob(pattern, 0, NULL, &found) != 0)
        return;
    for (size_t i = 0; i < found.gl_pathc; i++) {
        const char *pid_path = found.gl_pathv[i];
        char *text = NULL, run_id[128];
        size_t len = 0;
        const char *base = strrchr(pid_path, '/') + 1;
        snprintf(run_id, sizeof run_id, "%.*s", (int)(strlen(base) - 4), base);
        if (util_read_file(pid_path, 64, &text, &len, &err) == AGNES_OK) {
            long pgid = atol(text);
            if (pgid > 1 && group_is_run(pgid, run_id)) {
                kill(-(pid_t)pgid, SIGKILL);
                log_warn("msg=\"stopped a connector a killed server left running\" run_id=%s pgid=%ld", run_id, pgid);
            }
            free(text);
        }
        unlink(pid_path);
    }
    globfree(&found);
}
